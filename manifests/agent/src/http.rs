//! The transport: every request the agent makes goes through [`Http`], with
//! the DDI `Authorization` header, a timeout, and bounded bodies (JSON at
//! most [`JSON_MAX`], downloads at most the configured maximum).
//!
//! TLS is rustls with the ring provider; the server's certificate must
//! chain to one of the Mozilla roots (`webpki-root-certs`) or to one of
//! the board's CA file (`ca_file`), name the host, and be valid at the
//! device's clock. [`crate::config::Config::check_url`] refuses `http://`
//! unless the board allows it. Callers only see URLs, statuses and bodies;
//! a TLS failure is an error naming rustls's reason (`UnknownIssuer`,
//! `NotValidForName`, `Expired`...). This module must not follow redirects
//! or read unbounded bodies.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

/// Largest JSON body read from the server.
pub const JSON_MAX: u64 = 1 << 20;

/// What a download request got back.
pub struct Download {
    /// 200 (the whole file) or 206 (from the asked offset).
    pub status: u16,
    /// `Content-Length`, when the server gave one.
    pub length: Option<u64>,
    pub body: Box<dyn Read + Send>,
}

/// The agent's HTTP client.
pub struct Http {
    json: ureq::Agent,
    download: ureq::Agent,
    auth: Option<String>,
    max_download: u64,
}

/// The TLS settings both agents share: the Mozilla roots plus `extra`
/// (DER certificates from the board's CA file).
// rustls 0.23.48 marks ring's provider deprecated for lacking post-quantum
// key exchange; it is still maintained, and the alternative (aws-lc-rs)
// needs cmake and a large C build for every target.
#[allow(deprecated)]
fn tls(extra: &[Vec<u8>]) -> ureq::tls::TlsConfig {
    let mozilla = webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned());
    let board = extra.iter().map(|der| ureq::tls::Certificate::from_der(der).to_owned());
    let roots: Vec<_> = mozilla.chain(board).collect();
    ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .root_certs(ureq::tls::RootCerts::Specific(Arc::new(roots)))
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .build()
}

fn agent(timeout: Duration, tls: ureq::tls::TlsConfig) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .tls_config(tls)
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        // The artifact's link may point elsewhere, but only where the same
        // URL checks apply: no redirects followed silently.
        .max_redirects(0)
        .build();
    ureq::Agent::new_with_config(config)
}

impl Http {
    pub fn new(cfg: &crate::config::Config) -> Http {
        let tls = tls(&cfg.ca_certs);
        Http {
            json: agent(cfg.request_timeout, tls.clone()),
            download: agent(cfg.download_timeout, tls),
            auth: cfg.auth.header(),
            max_download: cfg.max_download,
        }
    }

    /// GET a JSON resource; any status but 200 is an error naming it.
    pub fn get_json(&self, url: &str) -> Result<serde_json::Value, String> {
        let mut req = self.json.get(url).header("Accept", "application/hal+json, application/json");
        if let Some(a) = &self.auth {
            req = req.header("Authorization", a);
        }
        let mut resp = req.call().map_err(|e| format!("GET {url}: {e}"))?;
        let status = resp.status().as_u16();
        let body = resp.body_mut().with_config().limit(JSON_MAX).read_to_vec().map_err(|e| format!("GET {url}: body: {e}"))?;
        if status != 200 {
            return Err(format!("GET {url}: HTTP {status}: {}", snippet(&body)));
        }
        serde_json::from_slice(&body).map_err(|e| format!("GET {url}: malformed JSON: {e}"))
    }

    /// PUT or POST a JSON body; any status but 2xx is an error naming it.
    pub fn send_json(&self, method: &str, url: &str, value: &serde_json::Value) -> Result<(), String> {
        let body = value.to_string();
        let mut req = match method {
            "PUT" => self.json.put(url),
            _ => self.json.post(url),
        };
        req = req.header("Content-Type", "application/json");
        if let Some(a) = &self.auth {
            req = req.header("Authorization", a);
        }
        let mut resp = req.send(body.as_bytes()).map_err(|e| format!("{method} {url}: {e}"))?;
        let status = resp.status().as_u16();
        let reply = resp.body_mut().with_config().limit(JSON_MAX).read_to_vec().unwrap_or_default();
        if !(200..300).contains(&status) {
            return Err(format!("{method} {url}: HTTP {status}: {}", snippet(&reply)));
        }
        Ok(())
    }

    /// GET an artifact from byte `from` on (a `Range` request when
    /// `from > 0`). The body reads at most the configured maximum.
    pub fn download(&self, url: &str, from: u64) -> Result<Download, String> {
        let mut req = self.download.get(url);
        if let Some(a) = &self.auth {
            req = req.header("Authorization", a);
        }
        if from > 0 {
            req = req.header("Range", format!("bytes={from}-"));
        }
        let resp = req.call().map_err(|e| format!("GET {url}: {e}"))?;
        let status = resp.status().as_u16();
        if status != 200 && status != 206 {
            return Err(format!("GET {url}: HTTP {status}"));
        }
        let length = resp.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
        let body = resp.into_body().into_with_config().limit(self.max_download).reader();
        Ok(Download { status, length, body: Box::new(body) })
    }
}

/// The start of an error body, for a message.
fn snippet(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(&body[..body.len().min(200)]);
    s.chars().filter(|c| !c.is_control()).collect()
}

/// A one-connection-at-a-time HTTP server for the unit tests: each
/// connection gets the next canned reply; the requests are kept.
#[cfg(test)]
pub mod testserver {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    pub struct Server {
        pub base: String,
        pub requests: Arc<Mutex<Vec<String>>>,
    }

    /// Serves `replies` (each a full HTTP response) in order, one per connection.
    pub fn serve(replies: Vec<Vec<u8>>) -> Server {
        serve_with(|_| replies)
    }

    /// As [`serve`], the replies made knowing the server's base URL.
    pub fn serve_with(replies: impl FnOnce(&str) -> Vec<Vec<u8>>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let replies = replies(&base);
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            for reply in replies {
                let Ok((stream, _)) = listener.accept() else { return };
                let mut r = BufReader::new(stream);
                let mut head = String::new();
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    head.push_str(&line);
                }
                let mut body = vec![0; len];
                let _ = r.read_exact(&mut body);
                head.push_str(&String::from_utf8_lossy(&body));
                seen.lock().unwrap().push(head);
                let _ = r.get_mut().write_all(&reply);
            }
        });
        Server { base, requests }
    }

    pub fn reply(status: &str, headers: &str, body: &[u8]) -> Vec<u8> {
        let mut r = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n", body.len()).into_bytes();
        r.extend_from_slice(body);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::testserver::{reply, serve};
    use super::*;

    fn http(max: u64) -> Http {
        let text = format!(
            "server = http://x\ntenant = t\ncontroller_id = c\nauth = GatewayToken g1\nboard = b\ndrop_dir = /d\nstate_dir = /s\nallow_plaintext = true\nmax_download = {max}\nrequest_timeout_s = 5\n"
        );
        Http::new(&crate::config::parse(&text).unwrap())
    }

    #[test]
    fn json_is_read_with_the_auth_header_and_errors_name_the_status() {
        let s = serve(vec![reply("200 OK", "", br#"{"a":1}"#), reply("404 Not Found", "", b"no such device"), reply("200 OK", "", b"{nope")]);
        let h = http(100);
        assert_eq!(h.get_json(&format!("{}/p", s.base)).unwrap()["a"], 1);
        let first = s.requests.lock().unwrap()[0].to_ascii_lowercase();
        assert!(first.contains("authorization: gatewaytoken g1"), "{first}");
        let e = h.get_json(&format!("{}/p", s.base)).unwrap_err();
        assert!(e.contains("HTTP 404: no such device"), "{e}");
        let e = h.get_json(&format!("{}/p", s.base)).unwrap_err();
        assert!(e.contains("malformed JSON"), "{e}");
    }

    /// The root store is Mozilla's list plus the CA file's certificates.
    #[test]
    fn the_roots_are_mozillas_plus_the_ca_file() {
        let extra = vec![vec![0x30, 3, 2, 1, 0]];
        let ureq::tls::RootCerts::Specific(roots) = tls(&extra).root_certs().clone() else { panic!("not a specific root list") };
        assert!(webpki_root_certs::TLS_SERVER_ROOT_CERTS.len() > 100);
        assert_eq!(roots.len(), webpki_root_certs::TLS_SERVER_ROOT_CERTS.len() + 1);
        assert_eq!(roots.last().map(|c| c.der().to_vec()), Some(extra[0].clone()));
    }

    #[test]
    fn an_oversized_json_body_is_refused() {
        let big = vec![b' '; (JSON_MAX + 10) as usize];
        let s = serve(vec![reply("200 OK", "", &big)]);
        let e = http(100).get_json(&format!("{}/p", s.base)).unwrap_err();
        assert!(e.contains("body"), "{e}");
    }

    #[test]
    fn a_download_is_bounded_and_asks_for_a_range() {
        let s = serve(vec![reply("206 Partial Content", "Content-Range: bytes 3-9/10\r\n", b"3456789")]);
        let mut d = http(5).download(&format!("{}/f", s.base), 3).unwrap();
        assert_eq!((d.status, d.length), (206, Some(7)));
        let mut got = Vec::new();
        assert!(d.body.read_to_end(&mut got).is_err(), "read past the 5-byte maximum");
        let req = s.requests.lock().unwrap()[0].to_ascii_lowercase();
        assert!(req.contains("range: bytes=3-"), "{req}");
    }
}
