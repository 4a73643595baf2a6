//! The host side of a container's notify socket (the protocol is
//! `crate::supervise::notify`'s): made once per container when its spec is
//! prepared, kept across restarts, and bound into the container at
//! `/dev/notify`. It must not read the socket: the datagrams are the loop's,
//! which drains them without blocking.

use crate::common::names::{notify_host_path, NOTIFY_DIR};
use std::os::unix::net::UnixDatagram;

/// Make (or make again) a container's socket: non-blocking, close-on-exec.
pub fn bind(name: &str) -> std::io::Result<UnixDatagram> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o711).create(NOTIFY_DIR)?;
    std::fs::set_permissions(NOTIFY_DIR, std::fs::Permissions::from_mode(0o711))?;
    let path = notify_host_path(name);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let sock = UnixDatagram::bind(&path)?;
    sock.set_nonblocking(true)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))?;
    Ok(sock)
}
