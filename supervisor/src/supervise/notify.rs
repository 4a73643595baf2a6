//! The notify protocol (systemd's `sd_notify`): how a container says it is
//! ready and still alive.
//!
//! It must not block: every socket is non-blocking and read by the loop.
//!
//! A container whose manifest asks for it (`readiness.notify` or
//! `health.watchdog_ms`) gets `NOTIFY_SOCKET=/dev/notify` in its
//! environment. That path is a bind of a datagram socket berth made on the
//! host at `/run/berth/notify/<name>`, one per container and kept across
//! restarts, so a message can only ever come from the container the socket
//! belongs to: no credential checks on the message are needed to tell
//! containers apart. The host directory is searchable but not listable
//! (0711): the start of a container binds the socket from inside its user
//! namespace, as an unprivileged host uid; the socket itself is mode 0666
//! because the container's users are unprivileged host uids too.
//!
//! A datagram is newline-separated `KEY=value` assignments. berth acts on
//! `READY=1`, `WATCHDOG=1`, `STOPPING=1` and keeps `STATUS=` text (at most
//! [`STATUS_MAX`] bytes, without the characters a terminal acts on,
//! [`crate::common::log::is_active`]: `berthctl status` shows it); anything else is
//! ignored, as systemd does. Datagrams longer than [`DATAGRAM_MAX`]
//! are cut there.

use std::os::unix::net::UnixDatagram;

pub use crate::common::names::{notify_host_path as host_path, NOTIFY_DIR as DIR, NOTIFY_ENV as ENV, NOTIFY_INSIDE as INSIDE};
/// The socket is made where the container is prepared.
pub use crate::confine::notify::bind;
/// Longest datagram read.
pub const DATAGRAM_MAX: usize = 1024;
/// Longest `STATUS=` text kept.
pub const STATUS_MAX: usize = 64;

/// What one datagram said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    pub ready: bool,
    pub watchdog: bool,
    pub stopping: bool,
    pub status: Option<heapless::String<STATUS_MAX>>,
}

/// Parse one datagram (pure).
pub fn parse(datagram: &[u8]) -> Message {
    let mut m = Message::default();
    for line in datagram.split(|&b| b == b'\n') {
        match line {
            b"READY=1" => m.ready = true,
            b"WATCHDOG=1" => m.watchdog = true,
            b"STOPPING=1" => m.stopping = true,
            _ => {
                if let Some(text) = line.strip_prefix(b"STATUS=") {
                    let mut s = heapless::String::new();
                    // Shown by `berthctl status`: nothing a terminal acts on
                    // (controls, and the bidirectional marks too).
                    for c in String::from_utf8_lossy(text).chars().filter(|c| !crate::common::log::is_active(*c)) {
                        if s.push(c).is_err() {
                            break;
                        }
                    }
                    m.status = Some(s);
                }
            }
        }
    }
    m
}

/// Read every waiting datagram, merged into one message.
pub fn drain(sock: &UnixDatagram) -> Message {
    let mut all = Message::default();
    let mut buf = [0u8; DATAGRAM_MAX];
    // Bounded: a flooding container cannot hold the loop.
    for _ in 0..64 {
        let Ok(n) = sock.recv(&mut buf) else { break };
        all.merge(parse(buf.get(..n).unwrap_or(&[])));
    }
    all
}

impl Message {
    /// Fold a later message into this one: flags accumulate, the newest
    /// `STATUS=` wins.
    pub fn merge(&mut self, later: Message) {
        self.ready |= later.ready;
        self.watchdog |= later.watchdog;
        self.stopping |= later.stopping;
        if later.status.is_some() {
            self.status = later.status;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_are_read_line_by_line() {
        let m = parse(b"STATUS=warming up\nREADY=1\nMAINPID=7");
        assert!(m.ready && !m.watchdog && !m.stopping);
        assert_eq!(m.status.as_deref(), Some("warming up"));
        assert!(parse(b"WATCHDOG=1").watchdog);
        assert!(parse(b"STOPPING=1\n").stopping);
    }

    #[test]
    fn merge_keeps_every_flag_and_the_newest_status() {
        let mut early = parse(b"READY=1\nSTATUS=one");
        early.merge(parse(b"WATCHDOG=1"));
        early.merge(parse(b"STATUS=two"));
        assert!(early.ready && early.watchdog && !early.stopping);
        assert_eq!(early.status.as_deref(), Some("two"));
    }

    #[test]
    fn near_misses_do_nothing() {
        for d in [&b"READY=0"[..], b"READY=11", b" READY=1", b"ready=1", b"", b"\n\n", b"WATCHDOG=trigger"] {
            assert_eq!(parse(d), Message::default(), "{:?}", String::from_utf8_lossy(d));
        }
    }

    #[test]
    fn status_is_bounded_and_printable() {
        let long = format!("STATUS={}\u{7}", "x".repeat(200));
        let m = parse(long.as_bytes());
        assert_eq!(m.status.as_ref().map(|s| s.len()), Some(STATUS_MAX));
        assert!(m.status.unwrap().chars().all(|c| c == 'x'));
        assert_eq!(parse(b"STATUS=\xff\x01ok").status.as_deref(), Some("\u{fffd}ok"));
        let active = "STATUS=a\u{1b}[31m\u{9b}1m\u{202e}b\u{2066}c\u{200f}\rd\u{7f}e\u{85}\u{61c}";
        assert_eq!(parse(active.as_bytes()).status.as_deref(), Some("a[31m1mbcde"));
    }

    #[test]
    fn a_socket_round_trip() {
        let dir = std::env::temp_dir().join(format!("berth-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s");
        let server = UnixDatagram::bind(&path).unwrap();
        server.set_nonblocking(true).unwrap();
        assert_eq!(drain(&server), Message::default());
        let client = UnixDatagram::unbound().unwrap();
        client.send_to(b"READY=1", &path).unwrap();
        client.send_to(b"WATCHDOG=1\nSTATUS=fine", &path).unwrap();
        let m = drain(&server);
        assert!(m.ready && m.watchdog);
        assert_eq!(m.status.as_deref(), Some("fine"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
