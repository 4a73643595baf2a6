//! The status view: a read-only, narrowly scoped picture of the device for
//! containers that show it (the demo's `status-web`), instead of the
//! root-only control socket, which can also stop, start and update.
//!
//! It must not offer anything that changes the device: the view is read-only.
//!
//! berth writes one small JSON file, [`FILE`] in [`DIR`] (on the `/run`
//! tmpfs), as a temporary name and a rename, so a reader always sees a whole
//! file; beside it, the same numbers and a few more (memory, OOM kills,
//! dropped output lines) as Prometheus text, [`crate::supervise::metrics::FILE`]. A manifest with `status_view = true` gets [`DIR`] bound read-only
//! (`ro,nosuid,nodev,noexec`) at [`INSIDE`]: a directory, not the file,
//! so each rename shows through the bind. The file holds the release
//! (version, signing key id, committed or on trial), berth's version, and for
//! every container and host service its kind, state, readiness, restarts,
//! last exit and when its current run started (`started_ms`, on
//! `CLOCK_MONOTONIC`, which a container shares: a reader computes the uptime
//! itself, so the file does not change as time passes). No pids, no
//! `STATUS=` notes, no paths: nothing a container needs to show a status
//! page (memory is in the metrics file only, sampled every few seconds).
//!
//! Cost: the loop renders the file at most every [`MIN_INTERVAL_S`] (a
//! wake-up sooner defers the render to the end of the interval), and writes
//! it only when the rendered bytes differ from the last written ones; the
//! metrics file likewise, on the same renders.
//!
//! Format (version 1), one line:
//!
//! ```text
//! {"format":1,"berth":"0.1.0","release":{"version":3,"key_id":"..","phase":"committed"},
//!  "containers":[{"name":"sensor","kind":"container","state":"running","ready":true,
//!  "restarts":0,"last_exit":"-","started_ms":5123}, ...]}
//! ```
//!
//! `release` is `null` when no release runs; `phase` is `committed`, `trial`
//! or `unknown` (no release store); `started_ms` is `null` when not running.
//! After the containers: `"loop":{"handler_max_ms":2.1,"handler":"tick",
//! "pet_late_max_ms":0.4}`, the loop's worst stalls since boot (see
//! `supervise::stall`), `"staging":true|false`, whether an update is
//! being staged, and `"update"`, the last update of this boot or `null`:
//! `{"seq":1,"id":"sha256:..","bundle":"..","version":2,"phase":"trial",
//! "result":"pending","cause":null,"detail":""}` (see [`crate::supervise::outcome`]).

use std::io::Write as _;

pub use crate::common::names::STATUS_DIR as DIR;
/// The status file's name.
pub const FILE: &str = "status.json";
pub use crate::common::names::STATUS_INSIDE as INSIDE;
/// Shortest time between two renders.
pub const MIN_INTERVAL_S: f64 = 0.25;
/// The file's format version.
pub const FORMAT: u32 = 1;

/// The running release, as shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release<'a> {
    pub version: u64,
    pub key_id: &'a str,
    pub phase: &'a str,
}

/// One container or host service, as shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    pub name: &'a str,
    pub kind: &'a str,
    pub state: &'a str,
    pub ready: bool,
    pub restarts: u32,
    pub last_exit: &'a str,
    /// `CLOCK_MONOTONIC` milliseconds when the current run started.
    pub started_ms: Option<u64>,
}

/// The loop's worst stalls since boot, as shown.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Loop<'a> {
    pub handler_max_ms: f64,
    pub handler: &'a str,
    pub pet_late_max_ms: f64,
}

/// A JSON string: printable ASCII as is (but `"` and `\`), the rest escaped.
pub fn json_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            ' '..='~' => out.push(c as u8),
            _ => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{u:04x}");
                }
            }
        }
    }
    out.push(b'"');
}

/// Render the file into `out` (cleared first; its capacity is kept).
pub fn render(
    out: &mut Vec<u8>,
    release: Option<&Release<'_>>,
    entries: &[Entry<'_>],
    lp: &Loop<'_>,
    staging: bool,
    update: Option<&crate::supervise::outcome::UpdateInfo>,
) {
    render_as(out, env!("CARGO_PKG_VERSION"), release, entries, lp, staging, update);
}

/// [`render`] for berth version `berth` (`berthctl status --json` renders
/// the document from what berth answered).
pub fn render_as(
    out: &mut Vec<u8>,
    berth: &str,
    release: Option<&Release<'_>>,
    entries: &[Entry<'_>],
    lp: &Loop<'_>,
    staging: bool,
    update: Option<&crate::supervise::outcome::UpdateInfo>,
) {
    out.clear();
    let _ = write!(out, "{{\"format\":{FORMAT},\"berth\":");
    json_string(out, berth);
    out.extend_from_slice(b",\"release\":");
    match release {
        None => out.extend_from_slice(b"null"),
        Some(r) => {
            let _ = write!(out, "{{\"version\":{},\"key_id\":", r.version);
            json_string(out, r.key_id);
            out.extend_from_slice(b",\"phase\":");
            json_string(out, r.phase);
            out.push(b'}');
        }
    }
    out.extend_from_slice(b",\"containers\":[");
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"name\":");
        json_string(out, e.name);
        out.extend_from_slice(b",\"kind\":");
        json_string(out, e.kind);
        out.extend_from_slice(b",\"state\":");
        json_string(out, e.state);
        let _ = write!(out, ",\"ready\":{},\"restarts\":{},\"last_exit\":", e.ready, e.restarts);
        json_string(out, e.last_exit);
        match e.started_ms {
            Some(ms) => {
                let _ = write!(out, ",\"started_ms\":{ms}}}");
            }
            None => out.extend_from_slice(b",\"started_ms\":null}"),
        }
    }
    let _ = write!(out, "],\"loop\":{{\"handler_max_ms\":{:.1},\"handler\":", lp.handler_max_ms);
    json_string(out, lp.handler);
    let _ = write!(out, ",\"pet_late_max_ms\":{:.1}}},\"staging\":{staging},\"update\":", lp.pet_late_max_ms);
    match update {
        Some(u) => u.json(out),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b"}\n");
}

/// When to render: at most every [`MIN_INTERVAL_S`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pacer {
    last: f64,
    /// A render deferred to this time.
    pub due: Option<f64>,
}

impl Default for Pacer {
    fn default() -> Pacer {
        Pacer { last: f64::NEG_INFINITY, due: None }
    }
}

impl Pacer {
    /// Render now? If not, [`Pacer::due`] says when.
    pub fn render_now(&mut self, now: f64) -> bool {
        if now - self.last >= MIN_INTERVAL_S {
            self.last = now;
            self.due = None;
            true
        } else {
            self.due = Some(self.last + MIN_INTERVAL_S);
            false
        }
    }
}

/// Why the status file could not be written.
#[derive(Debug)]
pub enum WriteError {
    /// Making [`DIR`].
    Dir(std::io::Error),
    /// Writing the temporary file for the named file.
    Temp(&'static str, std::io::Error),
    /// Renaming it over the named file.
    Rename(&'static str, std::io::Error),
}

impl core::fmt::Display for WriteError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            WriteError::Dir(e) => write!(f, "mkdir {DIR}: {e}"),
            WriteError::Temp(name, e) => write!(f, "write {DIR}/.{name}.tmp: {e}"),
            WriteError::Rename(name, e) => write!(f, "rename to {DIR}/{name}: {e}"),
        }
    }
}

/// Make the directory (mode 0755: containers' unprivileged host uids bind
/// and read it). Done before any container starts, so the bind finds it.
pub fn make_dir(dir: &std::path::Path) -> Result<(), WriteError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o755).create(dir).map_err(WriteError::Dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).map_err(WriteError::Dir)
}

/// Write `bytes` as `dir/FILE`: a temporary file (mode 0644), then a rename.
/// No fsync: the directory is on a tmpfs.
pub fn write(dir: &std::path::Path, bytes: &[u8]) -> Result<(), WriteError> {
    write_as(dir, FILE, bytes)
}

/// [`write`] for another file of the view (`metrics.prom`).
pub fn write_as(dir: &std::path::Path, name: &'static str, bytes: &[u8]) -> Result<(), WriteError> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)
        .map_err(|e| WriteError::Temp(name, e))?;
    f.write_all(bytes).map_err(|e| WriteError::Temp(name, e))?;
    drop(f);
    std::fs::rename(&tmp, dir.join(name)).map_err(|e| WriteError::Rename(name, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(name: &'a str, state: &'a str, started_ms: Option<u64>) -> Entry<'a> {
        Entry { name, kind: "container", state, ready: started_ms.is_some(), restarts: 2, last_exit: "exit 1", started_ms }
    }

    #[test]
    fn renders_release_and_every_entry() {
        let mut out = Vec::new();
        let r = Release { version: 7, key_id: "0123abcd", phase: "trial" };
        let lp = Loop { handler_max_ms: 12.34, handler: "tick", pet_late_max_ms: 0.0 };
        let mut log = crate::supervise::outcome::Log::default();
        log.begin("/data/v2.bundle");
        render(&mut out, Some(&r), &[entry("sensor", "running", Some(1500)), entry("flaky", "waiting", None)], &lp, true, log.last());
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("{\"format\":1,\"berth\":\""), "{text}");
        assert!(text.contains(",\"release\":{\"version\":7,\"key_id\":\"0123abcd\",\"phase\":\"trial\"},"), "{text}");
        assert!(text.contains(
            "{\"name\":\"sensor\",\"kind\":\"container\",\"state\":\"running\",\"ready\":true,\"restarts\":2,\"last_exit\":\"exit 1\",\"started_ms\":1500}"
        ));
        assert!(text.contains("\"name\":\"flaky\",\"kind\":\"container\",\"state\":\"waiting\",\"ready\":false"));
        assert!(
            text.ends_with(
                "\"started_ms\":null}],\"loop\":{\"handler_max_ms\":12.3,\"handler\":\"tick\",\"pet_late_max_ms\":0.0},\"staging\":true,\
                 \"update\":{\"seq\":1,\"id\":null,\"bundle\":\"/data/v2.bundle\",\"version\":null,\"phase\":\"staging\",\
                 \"result\":\"pending\",\"cause\":null,\"detail\":\"\"}}\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn no_release_and_escapes() {
        let mut out = vec![1, 2, 3];
        render(&mut out, None, &[entry("a\"b\\c\u{1}é", "x", None)], &Loop::default(), false, None);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("\"release\":null"));
        assert!(text.ends_with(",\"update\":null}\n"), "{text}");
        assert!(text.contains(r#""name":"a\"b\\c\u0001\u00e9""#), "{text}");
    }

    #[test]
    fn pacer_defers_renders_inside_the_interval() {
        let mut p = Pacer::default();
        assert!(p.render_now(10.0));
        assert!(!p.render_now(10.1));
        assert_eq!(p.due, Some(10.0 + MIN_INTERVAL_S));
        assert!(!p.render_now(10.2));
        assert!(p.render_now(10.25));
        assert_eq!(p.due, None);
        assert!(p.render_now(11.0));
    }

    #[test]
    fn write_replaces_the_file_whole() {
        let dir = std::env::temp_dir().join(format!("berth-statusview-{}", std::process::id()));
        make_dir(&dir).unwrap();
        write(&dir, b"one").unwrap();
        write(&dir, b"two!").unwrap();
        assert_eq!(std::fs::read(dir.join(FILE)).unwrap(), b"two!");
        assert!(!dir.join(format!(".{FILE}.tmp")).exists());
        write_as(&dir, crate::supervise::metrics::FILE, b"m 1\n").unwrap();
        assert_eq!(std::fs::read(dir.join(crate::supervise::metrics::FILE)).unwrap(), b"m 1\n");
        assert_eq!(std::fs::read(dir.join(FILE)).unwrap(), b"two!");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
