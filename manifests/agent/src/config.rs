//! The agent's configuration: a small `key = value` file, one setting a
//! line, `#` starting a comment line. Every error names the file, the line
//! or the field, so a board author can fix it without reading this code.
//!
//! ```text
//! server = https://updates.example      # DDI base URL, no trailing tenant
//! tenant = DEFAULT
//! controller_id = gateway-0042
//! auth = TargetToken 5f3c...              # or GatewayToken ...; optional
//! board = qemu-x86_64
//! drop_dir = /drop                        # berth's inbox, as the container sees it
//! state_dir = /state                      # the agent's own volume
//! status_dir = /run/berth-status          # the read-only status view (default)
//! allow_plaintext = false                 # http:// only when true
//! ca_file = /etc/berth-agent/ca.pem       # extra TLS roots (PEM), beside the Mozilla ones
//! max_download = 268435456                # bytes (default 512 MiB)
//! request_timeout_s = 30                  # each JSON request (default 30)
//! download_timeout_s = 1800               # the whole download (default 1800)
//! result_timeout_s = 1800                 # berth's verdict, after the drop (default 1800)
//! ```
//!
//! This module must not open connections: it only reads the config file
//! and the CA file it names (at most [`CA_FILE_MAX`] bytes, at most
//! [`CA_CERTS_MAX`] certificates).

use std::path::PathBuf;
use std::time::Duration;

/// The DDI authorization header's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    None,
    /// `Authorization: TargetToken <token>`.
    Target(String),
    /// `Authorization: GatewayToken <token>`.
    Gateway(String),
}

impl Auth {
    /// The header value, if any.
    pub fn header(&self) -> Option<String> {
        match self {
            Auth::None => None,
            Auth::Target(t) => Some(format!("TargetToken {t}")),
            Auth::Gateway(t) => Some(format!("GatewayToken {t}")),
        }
    }
}

/// A checked configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// DDI base URL without a trailing `/`.
    pub server: String,
    pub tenant: String,
    pub controller_id: String,
    pub auth: Auth,
    pub board: String,
    pub drop_dir: PathBuf,
    pub state_dir: PathBuf,
    pub status_dir: PathBuf,
    pub allow_plaintext: bool,
    /// `ca_file`: where the extra roots came from, if anywhere.
    pub ca_file: Option<PathBuf>,
    /// The extra TLS roots (DER), read from `ca_file` by [`load`].
    pub ca_certs: Vec<Vec<u8>>,
    pub max_download: u64,
    pub request_timeout: Duration,
    pub download_timeout: Duration,
    pub result_timeout: Duration,
}

pub const DEFAULT_STATUS_DIR: &str = "/run/berth-status";
const DEFAULT_MAX_DOWNLOAD: u64 = 512 << 20;
/// Largest CA file read.
pub const CA_FILE_MAX: u64 = 256 << 10;
/// Most certificates taken from a CA file.
pub const CA_CERTS_MAX: usize = 64;
const KEYS: &[&str] = &[
    "server",
    "tenant",
    "controller_id",
    "auth",
    "board",
    "drop_dir",
    "state_dir",
    "status_dir",
    "allow_plaintext",
    "ca_file",
    "max_download",
    "request_timeout_s",
    "download_timeout_s",
    "result_timeout_s",
];

impl Config {
    /// The polling resource: `{server}/{tenant}/controller/v1/{controller_id}`.
    pub fn poll_url(&self) -> String {
        format!("{}/{}/controller/v1/{}", self.server, self.tenant, self.controller_id)
    }

    /// Whether the agent may fetch `url` under this configuration:
    /// `https://` always, `http://` only with `allow_plaintext`.
    pub fn check_url(&self, url: &str) -> Result<(), String> {
        check_scheme(url, self.allow_plaintext)
    }
}

fn check_scheme(url: &str, allow_plaintext: bool) -> Result<(), String> {
    if url.starts_with("https://") {
        return Ok(());
    }
    if !url.starts_with("http://") {
        return Err(format!("{url}: neither an https:// nor an http:// URL"));
    }
    if !allow_plaintext {
        return Err(format!("{url}: plain http:// is refused unless the config says allow_plaintext = true"));
    }
    Ok(())
}

/// Reads and checks the file at `path`, and the CA file it names.
pub fn load(path: &std::path::Path) -> Result<Config, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("config {}: {e}", path.display()))?;
    let mut cfg = parse(&text).map_err(|e| format!("config {}: {e}", path.display()))?;
    if let Some(ca) = &cfg.ca_file {
        cfg.ca_certs = read_ca_file(ca).map_err(|e| format!("config {}: field `ca_file`: {}: {e}", path.display(), ca.display()))?;
    }
    Ok(cfg)
}

/// The certificates of a PEM file, as DER: at most [`CA_FILE_MAX`] bytes
/// and [`CA_CERTS_MAX`] certificates, at least one; anything but
/// certificates in it is an error (a key in a CA file is a mistake).
pub fn read_ca_file(path: &std::path::Path) -> Result<Vec<Vec<u8>>, String> {
    use std::io::Read as _;
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut pem = Vec::new();
    f.take(CA_FILE_MAX + 1).read_to_end(&mut pem).map_err(|e| e.to_string())?;
    if pem.len() as u64 > CA_FILE_MAX {
        return Err(format!("larger than {CA_FILE_MAX} bytes"));
    }
    parse_ca_pem(&pem)
}

/// The certificates of a PEM text (see [`read_ca_file`]).
pub fn parse_ca_pem(pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        match item.map_err(|e| format!("not valid PEM: {e}"))? {
            ureq::tls::PemItem::Certificate(c) => certs.push(c.der().to_vec()),
            _ => return Err("holds something other than certificates (a private key?)".into()),
        }
        if certs.len() > CA_CERTS_MAX {
            return Err(format!("more than {CA_CERTS_MAX} certificates"));
        }
    }
    if certs.is_empty() {
        return Err("no PEM certificate (-----BEGIN CERTIFICATE-----) in it".into());
    }
    Ok(certs)
}

/// Parses the text of a config file.
pub fn parse(text: &str) -> Result<Config, String> {
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = line.split_once('=').ok_or_else(|| format!("line {}: expected `key = value`, found `{line}`", n + 1))?;
        let (k, v) = (k.trim(), strip_comment(v).trim());
        if !KEYS.contains(&k) {
            return Err(format!("line {}: unknown field `{k}` (known: {})", n + 1, KEYS.join(", ")));
        }
        if pairs.iter().any(|(seen, _)| *seen == k) {
            return Err(format!("line {}: field `{k}` given twice", n + 1));
        }
        pairs.push((k, v));
    }
    let get = |k: &str| pairs.iter().find(|(seen, _)| *seen == k).map(|(_, v)| *v);
    let need = |k: &str| get(k).filter(|v| !v.is_empty()).ok_or_else(|| format!("field `{k}`: missing"));
    let allow_plaintext = match get("allow_plaintext") {
        None | Some("false") => false,
        Some("true") => true,
        Some(v) => return Err(format!("field `allow_plaintext`: `{v}` is neither true nor false")),
    };
    let server = need("server")?.trim_end_matches('/').to_string();
    check_scheme(&server, allow_plaintext).map_err(|e| format!("field `server`: {e}"))?;
    let cfg = Config {
        server,
        tenant: segment("tenant", need("tenant")?)?,
        controller_id: segment("controller_id", need("controller_id")?)?,
        auth: auth(get("auth"))?,
        board: segment("board", need("board")?)?,
        drop_dir: dir("drop_dir", need("drop_dir")?)?,
        state_dir: dir("state_dir", need("state_dir")?)?,
        status_dir: dir("status_dir", get("status_dir").unwrap_or(DEFAULT_STATUS_DIR))?,
        allow_plaintext,
        ca_file: get("ca_file").map(|v| dir("ca_file", v)).transpose()?,
        ca_certs: Vec::new(),
        max_download: number("max_download", get("max_download"), DEFAULT_MAX_DOWNLOAD, 1, u64::MAX)?,
        request_timeout: secs("request_timeout_s", get("request_timeout_s"), 30)?,
        download_timeout: secs("download_timeout_s", get("download_timeout_s"), 1800)?,
        result_timeout: secs("result_timeout_s", get("result_timeout_s"), 1800)?,
    };
    Ok(cfg)
}

/// A value may end in `# comment` (after whitespace).
fn strip_comment(v: &str) -> &str {
    match v.find(" #").or_else(|| v.find("\t#")) {
        Some(i) => &v[..i],
        None => v,
    }
}

/// A URL path segment: letters, digits, `-`, `_`, `.`; nothing to escape.
fn segment(field: &str, v: &str) -> Result<String, String> {
    let ok = !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) && v != "." && v != "..";
    if !ok {
        return Err(format!("field `{field}`: `{v}` must be 1 to 128 letters, digits, '-', '_' or '.'"));
    }
    Ok(v.to_string())
}

fn dir(field: &str, v: &str) -> Result<PathBuf, String> {
    if !v.starts_with('/') {
        return Err(format!("field `{field}`: `{v}` is not an absolute path"));
    }
    Ok(PathBuf::from(v))
}

fn auth(v: Option<&str>) -> Result<Auth, String> {
    let Some(v) = v.filter(|v| !v.is_empty()) else { return Ok(Auth::None) };
    let (kind, token) = v.split_once(' ').map(|(k, t)| (k, t.trim())).unwrap_or((v, ""));
    let token_ok = !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic());
    match kind {
        "TargetToken" | "GatewayToken" if !token_ok => Err(format!("field `auth`: {kind} needs a token (printable ASCII, no spaces)")),
        "TargetToken" => Ok(Auth::Target(token.to_string())),
        "GatewayToken" => Ok(Auth::Gateway(token.to_string())),
        _ => Err(format!("field `auth`: `{kind}` is neither TargetToken nor GatewayToken")),
    }
}

fn number(field: &str, v: Option<&str>, default: u64, min: u64, max: u64) -> Result<u64, String> {
    let Some(v) = v else { return Ok(default) };
    let n: u64 = v.parse().map_err(|_| format!("field `{field}`: `{v}` is not a whole number"))?;
    if n < min || n > max {
        return Err(format!("field `{field}`: {n} is outside {min}..={max}"));
    }
    Ok(n)
}

fn secs(field: &str, v: Option<&str>, default: u64) -> Result<Duration, String> {
    number(field, v, default, 1, 7 * 86_400).map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "# a board's agent\nserver = http://10.0.2.2:8080/\ntenant = DEFAULT\ncontroller_id = dev-1\n\
        auth = TargetToken abc123\nboard = qemu-x86_64\ndrop_dir = /drop\nstate_dir = /state  # own volume\nallow_plaintext = true\n";

    #[test]
    fn a_good_file_with_defaults() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.server, "http://10.0.2.2:8080");
        assert_eq!(c.poll_url(), "http://10.0.2.2:8080/DEFAULT/controller/v1/dev-1");
        assert_eq!(c.auth.header().as_deref(), Some("TargetToken abc123"));
        assert_eq!(c.state_dir, PathBuf::from("/state"));
        assert_eq!(c.status_dir, PathBuf::from(DEFAULT_STATUS_DIR));
        assert_eq!(c.max_download, 512 << 20);
        assert_eq!(c.request_timeout, Duration::from_secs(30));
        assert_eq!(c.result_timeout, Duration::from_secs(1800));
    }

    #[test]
    fn plaintext_is_refused_unless_allowed() {
        let e = parse(&GOOD.replace("allow_plaintext = true", "")).unwrap_err();
        assert!(e.starts_with("field `server`:") && e.contains("allow_plaintext = true"), "{e}");
        let c = parse(&GOOD.replace("http://", "https://").replace("allow_plaintext = true", "")).unwrap();
        assert_eq!((c.server.as_str(), c.allow_plaintext), ("https://10.0.2.2:8080", false));
        assert_eq!(c.check_url("https://cdn.example/a.swu"), Ok(()));
        let e = c.check_url("http://cdn.example/a.swu").unwrap_err();
        assert!(e.contains("refused unless the config says allow_plaintext = true"), "{e}");
        assert!(c.check_url("ftp://x/y").unwrap_err().contains("neither an https:// nor an http:// URL"));
    }

    #[test]
    fn a_ca_file_is_read_and_bad_ones_are_named() {
        let dir = std::env::temp_dir().join(format!("berth-agent-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("agent.conf");
        let ca = dir.join("ca.pem");
        std::fs::write(&conf, format!("{GOOD}ca_file = {}\n", ca.display())).unwrap();
        let e = load(&conf).unwrap_err();
        assert!(e.contains("field `ca_file`") && e.contains("ca.pem"), "{e}");
        // A certificate's PEM armour around any DER: the parse takes it as is.
        let cert = "-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n";
        std::fs::write(&ca, cert).unwrap();
        assert_eq!(load(&conf).unwrap().ca_certs, vec![vec![0x30, 3, 2, 1, 0]]);
        let cases = [
            ("just text\n".to_string(), "no PEM certificate"),
            (format!("{cert}-----BEGIN PRIVATE KEY-----\nMAMCAQA=\n-----END PRIVATE KEY-----\n"), "something other than certificates"),
            (cert.repeat(CA_CERTS_MAX + 1), "more than 64 certificates"),
            ("#".repeat(CA_FILE_MAX as usize + 1), "larger than 262144 bytes"),
        ];
        for (text, want) in cases {
            std::fs::write(&ca, text).unwrap();
            let e = load(&conf).unwrap_err();
            assert!(e.contains("field `ca_file`") && e.contains(want), "want {want:?}, got {e:?}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn each_error_names_its_field_or_line() {
        let cases = [
            (GOOD.replace("tenant = DEFAULT\n", ""), "field `tenant`: missing"),
            (GOOD.replace("dev-1", "dev/1"), "field `controller_id`: `dev/1`"),
            (GOOD.replace("TargetToken abc123", "Bearer x"), "field `auth`: `Bearer`"),
            (GOOD.replace("TargetToken abc123", "GatewayToken"), "field `auth`: GatewayToken needs a token"),
            (GOOD.replace("/drop", "drop"), "field `drop_dir`: `drop` is not an absolute path"),
            (format!("{GOOD}ca_file = ca.pem\n"), "field `ca_file`: `ca.pem` is not an absolute path"),
            (GOOD.replace("= true", "= yes"), "field `allow_plaintext`: `yes`"),
            (format!("{GOOD}max_download = 0\n"), "field `max_download`: 0 is outside"),
            (format!("{GOOD}result_timeout_s = soon\n"), "field `result_timeout_s`: `soon`"),
            (format!("{GOOD}colour = red\n"), "line 10: unknown field `colour`"),
            (format!("{GOOD}board = x\n"), "line 10: field `board` given twice"),
            (format!("{GOOD}just words\n"), "line 10: expected `key = value`"),
        ];
        for (text, want) in cases {
            let e = parse(&text).unwrap_err();
            assert!(e.starts_with(want), "want {want:?}, got {e:?}");
        }
    }
}
