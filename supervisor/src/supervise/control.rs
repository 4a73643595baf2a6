//! The control protocol between `berthctl` and berth, over a root-only Unix
//! stream socket on /run. It owns the message types and their bounds; it
//! must not act on a request (that is `supervise::commands`) nor read a
//! socket (that is `supervise::ctlsock`).
//!
//! Each message is a frame: a 4-byte little-endian length, then that many
//! bytes of postcard. A request is at most [`REQUEST_MAX`] bytes and a
//! response at most [`RESPONSE_MAX`]; a frame announcing more is refused before
//! anything is read into memory. Every request carries the protocol
//! [`VERSION`]; a mismatch is answered with [`Response::Error`]. Malformed
//! input gets an error reply and never reaches any other state.

use serde::{Deserialize, Serialize};

/// The confinement layers in a container's status: defined beside the
/// confinement that fills them in.
pub use crate::confine::layers::Layers;

/// Protocol version; raised on any incompatible change.
pub const VERSION: u16 = 7;
/// Largest request frame body.
pub const REQUEST_MAX: usize = 512;
/// Largest response frame body.
pub const RESPONSE_MAX: usize = 32 * 1024;
/// Where berth listens.
pub const SOCKET: &str = "/run/berth/control";

pub type Name = heapless::String<32>;

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    Status,
    Release,
    Start(Name),
    Stop(Name),
    Restart(Name),
    /// Lines of a container's output (`berth` for berth's own events) after
    /// sequence number `after` (all kept ones when `None`), the last `max`
    /// of them (at most [`LOG_LINES_MAX`]).
    Logs {
        name: Name,
        after: Option<u64>,
        max: u16,
    },
    /// Stage the bundle at this path on the device, then switch to it;
    /// answered as soon as the staging started ([`Response::Update`]).
    Update(heapless::String<128>),
    /// Test trigger: block berth's loop this many seconds (1..=600), so the
    /// hardware watchdog is not petted.
    Wedge(u16),
    /// Commit the release on trial now.
    Commit,
    /// Roll the release on trial back now (cause `requested`).
    Rollback,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub version: u16,
    pub command: Command,
}

/// One container's or host service's state, for `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStatus {
    pub name: Name,
    /// `container` or `service`.
    pub kind: heapless::String<10>,
    pub state: heapless::String<16>,
    pub pid: i32,
    pub uptime_ms: u64,
    pub restarts: u32,
    pub last_exit: heapless::String<24>,
    /// Ready (see the manifest's `readiness`).
    pub ready: bool,
    /// The cgroup's memory use in bytes (0 when unknown).
    pub memory: u64,
    /// The container's own `STATUS=` text (notify protocol).
    pub note: heapless::String<64>,
    pub layers: Layers,
    /// `CLOCK_MONOTONIC` milliseconds when the current run started (`None`
    /// when not running), as the status file shows it.
    pub started_ms: Option<u64>,
}

/// The running release, for `berthctl release`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseInfo {
    pub version: u64,
    pub key_id: heapless::String<16>,
    /// `committed`, `trial` or `recovery` (empty without a store).
    pub phase: heapless::String<16>,
    /// In the recovery state, why no release runs (else empty).
    pub recovery: Note,
    pub previous: Option<u64>,
    /// The rollback history, oldest first, one line each.
    pub rollbacks: heapless::Vec<heapless::String<96>, { crate::release::record::HISTORY_MAX }>,
    /// The staging in progress, if any (empty: none).
    pub staging: Note,
    /// Bundles the inbox quarantined, oldest first, one line each
    /// (`quarantined NAME: cause`).
    pub quarantined: heapless::Vec<heapless::String<{ QUARANTINE_LINE_MAX }>, { crate::release::inbox::QUARANTINE_KEEP }>,
    /// The updates of this boot, the last [`crate::supervise::outcome::KEPT`], oldest
    /// first.
    pub updates: heapless::Vec<crate::supervise::outcome::UpdateInfo, { crate::supervise::outcome::KEPT }>,
}

/// A line of status text.
pub type Note = heapless::String<160>;
/// Longest quarantine line.
pub const QUARANTINE_LINE_MAX: usize = 24 + crate::release::inbox::NAME_MAX + crate::release::inbox::CAUSE_MAX;

/// The loop's worst stalls (see `supervise::stall`), in microseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoopStalls {
    /// Since boot: the longest handler and its kind, the latest watchdog pet.
    pub handler_us: u64,
    pub handler: heapless::String<16>,
    pub pet_late_us: u64,
    /// The same over the recent past (at least the last 10 s).
    pub recent_handler_us: u64,
    pub recent_handler: heapless::String<16>,
    pub recent_pet_late_us: u64,
}

/// The running release as `status` shows it (the status file's `release`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusRelease {
    /// 0 in the recovery state.
    pub version: u64,
    pub key_id: heapless::String<16>,
    /// `committed`, `trial`, `recovery` or `unknown` (no release store).
    pub phase: heapless::String<16>,
}

/// What `status` answers: everything the status file holds (so `berthctl
/// status --json` renders the same document), and what only root sees.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReply {
    /// berth's version.
    pub berth: heapless::String<16>,
    /// `None` when no release runs and berth is not in recovery.
    pub release: Option<StatusRelease>,
    /// The release's containers, then the board's host services.
    pub entries: heapless::Vec<ContainerStatus, STATUS_MAX>,
    pub stalls: LoopStalls,
    /// The staging in progress, if any (empty: none).
    pub staging: Note,
    /// The last update of this boot.
    pub update: Option<crate::supervise::outcome::UpdateInfo>,
}

/// A success reply with text.
pub fn message(msg: &str) -> Response {
    Response::Message(text(msg))
}

/// Most entries in a status reply: every container and every service.
pub const STATUS_MAX: usize = 32 + crate::common::names::SERVICES_MAX;

/// Most lines in one [`Response::Logs`].
pub const LOG_LINES_MAX: usize = 64;

/// One stored log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    pub seq: u64,
    pub t_ms: u64,
    /// Milliseconds since 1970, when the clock was set as it was kept.
    pub wall_ms: Option<u64>,
    pub text: heapless::String<{ crate::common::logstore::TEXT_MAX }>,
}

/// What berth answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Status(Box<StatusReply>),
    Release(Box<ReleaseInfo>),
    /// Success, with what was done.
    Message(heapless::String<128>),
    Done,
    Error(heapless::String<128>),
    /// Lines, the sequence number to follow on from, lines dropped so far,
    /// this boot's id.
    Logs {
        lines: Box<heapless::Vec<LogLine, LOG_LINES_MAX>>,
        next: u64,
        dropped: u64,
        boot: Option<crate::common::logstore::BootId>,
    },
    /// An update's staging started: its record (phase `staging`).
    Update(Box<crate::supervise::outcome::UpdateInfo>),
}

pub use crate::common::frame::{body_len, decode, encode, FrameError};

fn text<const N: usize>(s: &str) -> heapless::String<N> {
    let mut t = heapless::String::new();
    for c in s.chars() {
        if t.push(c).is_err() {
            break;
        }
    }
    t
}

/// An error reply.
pub fn error(msg: &str) -> Response {
    Response::Error(text(msg))
}

/// Check a request body: decodes, right version. The error is the text of
/// the error reply.
pub fn parse_request(body: &[u8]) -> Result<Command, String> {
    let req: Request = decode(body).map_err(|e| e.to_string())?;
    if req.version != VERSION {
        return Err(format!("protocol version {} is not {VERSION}", req.version));
    }
    Ok(req.command)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        text(s)
    }

    #[test]
    fn round_trip() {
        for cmd in [Command::Status, Command::Release, Command::Restart(name("sensor")), Command::Stop(name("flaky")), Command::Commit, Command::Rollback] {
            let frame = encode(&Request { version: VERSION, command: cmd.clone() }, REQUEST_MAX).unwrap();
            let len = body_len(&frame, REQUEST_MAX).unwrap();
            assert_eq!(len, frame.len() - 4);
            assert_eq!(parse_request(&frame[4..]).unwrap(), cmd);
        }
    }

    #[test]
    fn oversized_short_and_garbage_frames_are_refused() {
        assert_eq!(body_len(&[1, 2], REQUEST_MAX), Err(FrameError::Short));
        assert_eq!(body_len(&u32::MAX.to_le_bytes(), REQUEST_MAX), Err(FrameError::TooLarge { len: u32::MAX as usize, max: REQUEST_MAX }));
        assert!(parse_request(&[0xff, 0xff, 0xff]).is_err());
        let mut frame = encode(&Request { version: VERSION, command: Command::Status }, REQUEST_MAX).unwrap();
        frame.push(0);
        assert!(matches!(parse_request(&frame[4..]), Err(e) if e.contains("after")));
        let old = encode(&Request { version: VERSION + 1, command: Command::Status }, REQUEST_MAX).unwrap();
        assert!(matches!(parse_request(&old[4..]), Err(e) if e.contains("version")));
    }

    #[test]
    fn random_bodies_never_panic() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 40) as usize;
            let body: Vec<u8> = (0..len).map(|i| (x >> (i % 8 * 8)) as u8).collect();
            let _ = parse_request(&body);
            let _ = decode::<Response>(&body);
        }
    }

    #[test]
    fn a_full_logs_reply_fits_a_response_frame() {
        let mut lines = heapless::Vec::new();
        for i in 0..LOG_LINES_MAX {
            lines.push(LogLine { seq: u64::MAX - i as u64, t_ms: u64::MAX, wall_ms: Some(u64::MAX), text: text(&"é".repeat(200)) }).unwrap();
        }
        let frame = encode(
            &Response::Logs { lines: Box::new(lines), next: u64::MAX, dropped: u64::MAX, boot: crate::common::logstore::parse_boot_id(&"f".repeat(36)) },
            RESPONSE_MAX,
        )
        .unwrap();
        assert!(frame.len() <= RESPONSE_MAX + 4);
    }

    #[test]
    fn a_full_release_reply_fits_a_response_frame() {
        let mut info =
            ReleaseInfo { version: u64::MAX, key_id: text(&"k".repeat(16)), phase: text("committed"), previous: Some(u64::MAX), ..Default::default() };
        while info.rollbacks.push(text(&"r".repeat(96))).is_ok() {}
        while info.quarantined.push(text(&"é".repeat(QUARANTINE_LINE_MAX))).is_ok() {}
        info.staging = text(&"s".repeat(160));
        let mut log = crate::supervise::outcome::Log::default();
        for _ in 0..crate::supervise::outcome::KEPT {
            log.begin(&"é".repeat(200));
            log.end(crate::supervise::outcome::Phase::Refused, &"c".repeat(40), &"é".repeat(200));
        }
        for u in log.all() {
            let mut u = u.clone();
            u.id = Some(crate::release::manifest::Digest([0xff; 32]));
            u.version = Some(u64::MAX);
            info.updates.push(u).unwrap();
        }
        let frame = encode(&Response::Release(Box::new(info)), RESPONSE_MAX).unwrap();
        assert!(frame.len() <= RESPONSE_MAX + 4);
    }

    #[test]
    fn layers_render_for_status() {
        let mut l = Layers { uid_base: 100_000, seccomp: text("1a2b3c4d"), caps: 0, device_rules: 9, landlock_abi: 6, apparmor: text("none") };
        assert_eq!((l.landlock().as_str(), l.cap_names().as_str()), ("abi6", "none"));
        l.caps = 1 << 10 | 1 << 1;
        l.landlock_abi = 0;
        assert_eq!((l.landlock().as_str(), l.cap_names().as_str()), ("none", "DAC_OVERRIDE,NET_BIND_SERVICE"));
    }

    #[test]
    fn a_full_status_fits_a_response_frame() {
        let mut list = heapless::Vec::new();
        for i in 0..STATUS_MAX {
            let s = ContainerStatus {
                name: text(&format!("container-{i:02}-{}", "x".repeat(20))),
                kind: text("container"),
                state: text("running"),
                pid: i32::MAX,
                uptime_ms: u64::MAX,
                restarts: u32::MAX,
                last_exit: text("signal 9 (SIGKILL)"),
                ready: true,
                memory: u64::MAX,
                note: text(&"n".repeat(64)),
                layers: Layers {
                    uid_base: u32::MAX,
                    seccomp: text("ffffffff"),
                    caps: u64::MAX,
                    device_rules: u16::MAX,
                    landlock_abi: u8::MAX,
                    apparmor: text(&"p".repeat(64)),
                },
                started_ms: Some(u64::MAX),
            };
            list.push(s).unwrap();
        }
        let stalls = LoopStalls {
            handler_us: u64::MAX,
            handler: text(&"h".repeat(16)),
            pet_late_us: u64::MAX,
            recent_handler_us: u64::MAX,
            recent_handler: text(&"h".repeat(16)),
            recent_pet_late_us: u64::MAX,
        };
        let release = Some(StatusRelease { version: u64::MAX, key_id: text(&"k".repeat(16)), phase: text("committed") });
        let mut log = crate::supervise::outcome::Log::default();
        log.begin(&"é".repeat(200));
        log.end(crate::supervise::outcome::Phase::Refused, &"c".repeat(40), &"é".repeat(200));
        let mut update = log.last().cloned();
        if let Some(u) = update.as_mut() {
            u.id = Some(crate::release::manifest::Digest([0xff; 32]));
            u.version = Some(u64::MAX);
        }
        let reply = StatusReply { berth: text(&"v".repeat(16)), release, entries: list, stalls, staging: text(&"s".repeat(160)), update };
        let frame = encode(&Response::Status(Box::new(reply)), RESPONSE_MAX).unwrap();
        assert!(frame.len() <= RESPONSE_MAX + 4);
    }
}
