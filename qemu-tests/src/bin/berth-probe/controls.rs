//! `--print-controls`: the `controls` container of the `output-controls`
//! scenario. It writes [`qemu_tests::controls::PRINTED`] and a newline to
//! stdout in one `write(2)`, sends [`qemu_tests::controls::STATUS`] as its
//! `STATUS=` with `READY=1` to `$NOTIFY_SOCKET`, says `PROBE controls sent`
//! and sleeps until SIGTERM (exit 0). What berth shows for those bytes is
//! the harness's business.

use qemu_tests::controls::{PRINTED, STATUS};
use std::os::unix::net::UnixDatagram;

pub const USAGE: &str = "--print-controls";

/// The whole of `bytes` on fd 1, or false.
fn put(bytes: &[u8]) -> bool {
    let mut off = 0;
    while let Some(rest) = bytes.get(off..).filter(|r| !r.is_empty()) {
        // SAFETY: `rest` is a valid buffer of its length.
        let n = unsafe { libc::write(1, rest.as_ptr().cast(), rest.len()) };
        if n < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return false;
        }
        off += n as usize;
    }
    true
}

pub fn run() -> ! {
    let line = [PRINTED, b"\n"].concat();
    let printed = put(&line);
    let datagram = [b"STATUS=".as_slice(), STATUS, b"\nREADY=1"].concat();
    let sent = match std::env::var("NOTIFY_SOCKET") {
        Ok(path) => UnixDatagram::unbound().and_then(|s| s.send_to(&datagram, &path)).map(|_| ()).map_err(|e| e.to_string()),
        Err(_) => Err("no NOTIFY_SOCKET".into()),
    };
    match (printed, sent) {
        (true, Ok(())) => super::say("PROBE controls sent"),
        (p, s) => super::say(&format!("PROBE controls error printed={p} notify={}", qemu_tests::event::quote(&format!("{s:?}")))),
    }
    super::lifecycle::run(&["--sleep".to_string()])
}
