//! `resolv.conf` from a DHCP lease's name servers, written by `berth net`
//! into the status view's directory ([`crate::common::names::STATUS_DIR`]),
//! which containers with `status_view = true` see read-only: a container
//! that resolves names (an update agent reaching its server) points its
//! resolver there. It owns that one file; it must not touch the host's own
//! `/etc` (the system image is read-only) nor any other file in the
//! directory, which PID 1 owns.
//!
//! The file (mode 0644; no fsync, the directory is a tmpfs) is written
//! whole, as a temporary name then a rename, so a
//! reader never sees half of it; a lease without name servers, or the lease's
//! end, removes it (a stale server is worse than none: the resolver then
//! fails at once). With several interfaces under DHCP, the last lease bound
//! wins.

use super::dhcp::packet::Servers;
use super::net::Quad;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

/// The file's name in the status directory.
pub const FILE: &str = "resolv.conf";

/// The file's text for `servers`, `None` when there are none.
pub fn render(servers: &Servers, interface: &str) -> Option<String> {
    if servers.is_empty() {
        return None;
    }
    let mut s = format!("# written by berth net from the DHCP lease on {interface}\n");
    for a in servers.iter() {
        s.push_str(&format!("nameserver {}\n", Quad(a)));
    }
    Some(s)
}

/// Write (or, for `None`, remove) the file in `dir`.
pub fn store(dir: &Path, text: Option<&str>) -> std::io::Result<()> {
    let path = dir.join(FILE);
    let Some(text) = text else {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            r => r,
        };
    };
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(".resolv.conf.new");
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o644).open(&tmp)?;
    f.write_all(text.as_bytes())?;
    drop(f);
    std::fs::rename(&tmp, &path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_each_server_in_order() {
        let s = Servers::from_option(&[10, 0, 2, 3, 192, 168, 1, 1]);
        assert_eq!(render(&s, "eth0").unwrap(), "# written by berth net from the DHCP lease on eth0\nnameserver 10.0.2.3\nnameserver 192.168.1.1\n");
        assert_eq!(render(&Servers::default(), "eth0"), None);
    }

    #[test]
    fn stores_whole_and_removes() {
        let dir = std::env::temp_dir().join(format!("berth-resolv-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        store(&dir, Some("nameserver 10.0.2.3\n")).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join(FILE)).unwrap(), "nameserver 10.0.2.3\n");
        assert!(!dir.join(".resolv.conf.new").exists());
        store(&dir, None).unwrap();
        assert!(!dir.join(FILE).exists());
        store(&dir, None).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
