//! `berth stage`: an update bundle's staging, run as a child process of PID 1
//! so that PID 1's loop never copies, hashes or verity-checks anything.
//!
//! It must not run inside PID 1, and it must not change the store's record (PID 1 decides what runs).
//!
//! # Why a separate program (an exec of berth), not a bare fork
//!
//! The staging takes seconds to minutes (a 100 MiB image is copied, hashed
//! and its dm-verity tree checked, then mapped and its programs pre-read).
//! A fork of PID 1 would run on a copy of the loop's whole state: its log
//! store, its console buffer, its control socket and epoll set. A fresh
//! process image shares none of it (every descriptor of PID 1 is
//! close-on-exec), logs like any other berth process (its event lines go to
//! the console and the kernel log), and can only touch what it is handed.
//! The exec costs a few milliseconds, once per update.
//!
//! # Interface
//!
//! PID 1 starts `/proc/self/exe stage [cut=N]` ([`ARG`]) with the bundle
//! open on standard input (PID 1 opened it without blocking and checked it
//! is a regular file), stdout and stderr on the console, and the write end
//! of a pipe as descriptor [`RESULT_FD`]. The child opens the store, stages
//! ([`crate::release::store::Store::stage`]), maps the new images and reads
//! their programs once ([`crate::release::images`]), and reports on the pipe as a
//! sequence of [`Msg`] frames: a [`Msg::Mapping`] before each image it maps
//! (so that PID 1 can unmap it again if the child dies or is killed before
//! it reports), then one [`Msg::Done`] with the [`Report`]. Then it exits.
//! The child never changes the store's record: what runs is decided by PID
//! 1 from the report (`begin_trial`, switch).
//!
//! The child runs at a lower CPU and I/O priority
//! ([`crate::sys::background_priority`]): a slow board's single core stays
//! with the loop and `berthctl` while a big image is hashed.
//!
//! # Frames and limits
//!
//! A frame is a 2-byte little-endian length and that many bytes of postcard;
//! a frame is at most [`FRAME_MAX`] bytes, a whole report stream at most
//! [`STREAM_MAX`] (at most [`MESSAGES_MAX`] messages: one mapping per image
//! of a release, then the report). The refusal text is cut to
//! [`REASON_MAX`] bytes. Anything else on the pipe (an oversized or
//! malformed frame, bytes after the report, a stream that ends inside a
//! frame) is an error PID 1 reports as such: the update is refused.
//!
//! `cut=N` carries the power-cut test hook ([`crate::release::durable`]) to
//! the child: the N-th store write of the update, counted from the start of
//! its staging, resets the machine. The child's write count goes back in
//! [`Report::store_writes`], so PID 1's `update.done store_writes=` counts
//! the whole update.

use crate::release::manifest::Digest;
use crate::release::CONTAINERS_MAX;
use serde::{Deserialize, Serialize};

/// The subcommand.
pub const ARG: &str = "stage";
/// The descriptor the child writes its report to.
pub const RESULT_FD: i32 = 3;
/// Longest refusal text carried (longer ones are cut at a character boundary).
pub const REASON_MAX: usize = 240;
/// Largest frame body.
pub const FRAME_MAX: usize = 2048;
/// Most messages in one stream: a mapping per image, then the report.
pub const MESSAGES_MAX: usize = CONTAINERS_MAX + 1;
/// Largest whole stream (what PID 1 buffers).
pub const STREAM_MAX: usize = 4096;

/// What kind of refusal: the bundle itself, or the device could not take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    /// The bundle is bad (signature, board, version, table, an image's hash
    /// or tree, truncation): it is no use trying it again.
    Bundle,
    /// The device could not take it (no space, store error, an image that
    /// cannot be mapped, no board or keys): the bundle may be fine.
    Device,
}

impl Refusal {
    pub fn name(self) -> &'static str {
        match self {
            Refusal::Bundle => "bundle",
            Refusal::Device => "device",
        }
    }
}

/// A release taken into the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Staged {
    /// SHA-256 of the release object now in the store.
    pub release: Digest,
    pub version: u64,
    pub images_added: u32,
    /// Bytes the bundle added to the store.
    pub bytes: u64,
    /// The images this staging mapped (the others were already).
    pub mapped: heapless::Vec<Digest, CONTAINERS_MAX>,
    /// The slot its system payload was written into (and verified): the
    /// switch is a try of that slot through the bootloader.
    pub system: Option<crate::release::bootenv::Slot>,
}

/// How the staging ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
// One per update, moved once: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Outcome {
    Staged(Staged),
    Refused { kind: Refusal, reason: heapless::String<REASON_MAX> },
}

/// The child's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub outcome: Outcome,
    /// Store writes the staging made.
    pub store_writes: u64,
    /// SHA-256 of the whole bundle file (the update's id): hashed as it is
    /// read, a refused one read on to its end for it; `None` when reading
    /// it failed.
    pub bundle: Option<Digest>,
}

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Msg {
    /// About to map this image.
    Mapping(Digest),
    Done(Box<Report>),
}

/// Why the stream from the child is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamError {
    /// A frame announces more than [`FRAME_MAX`] bytes.
    FrameTooLarge(usize),
    /// More than [`STREAM_MAX`] bytes or [`MESSAGES_MAX`] messages.
    TooLong,
    /// A frame's body does not decode.
    Malformed,
    /// Bytes after the report.
    AfterReport,
    /// The stream ended inside a frame.
    Truncated,
}

impl core::fmt::Display for StreamError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StreamError::FrameTooLarge(n) => write!(f, "the stager sent a frame of {n} bytes (at most {FRAME_MAX})"),
            StreamError::TooLong => write!(f, "the stager sent more than {STREAM_MAX} bytes or {MESSAGES_MAX} messages"),
            StreamError::Malformed => write!(f, "the stager sent a malformed message"),
            StreamError::AfterReport => write!(f, "the stager sent bytes after its report"),
            StreamError::Truncated => write!(f, "the stager's stream ended inside a message"),
        }
    }
}

/// A text cut to `N` bytes at a character boundary.
pub fn cut<const N: usize>(s: &str) -> heapless::String<N> {
    let mut out = heapless::String::new();
    for c in s.chars() {
        if out.push(c).is_err() {
            break;
        }
    }
    out
}

/// One frame for `msg`.
pub fn encode(msg: &Msg) -> Result<Vec<u8>, StreamError> {
    let body = postcard::to_allocvec(msg).map_err(|_| StreamError::Malformed)?;
    let len = u16::try_from(body.len()).ok().filter(|l| usize::from(*l) <= FRAME_MAX).ok_or(StreamError::FrameTooLarge(body.len()))?;
    let mut out = Vec::with_capacity(2 + body.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// PID 1's side of the stream: bytes in as they arrive, messages out.
#[derive(Debug, Default)]
pub struct Reader {
    buf: Vec<u8>,
    /// Bytes of `buf` already decoded.
    done: usize,
    messages: usize,
    /// The report came.
    reported: bool,
}

impl Reader {
    /// Room left for bytes (read at most this much).
    pub fn room(&self) -> usize {
        STREAM_MAX.saturating_sub(self.buf.len())
    }

    /// Add bytes read from the pipe; decode every whole frame among them.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Msg>, StreamError> {
        if bytes.len() > self.room() {
            return Err(StreamError::TooLong);
        }
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        loop {
            let rest = self.buf.get(self.done..).unwrap_or(&[]);
            let Some(prefix) = rest.get(..2) else { break };
            let len = usize::from(u16::from_le_bytes([prefix[0], prefix[1]]));
            if len > FRAME_MAX {
                return Err(StreamError::FrameTooLarge(len));
            }
            let Some(body) = rest.get(2..2 + len) else {
                break;
            };
            if self.reported {
                return Err(StreamError::AfterReport);
            }
            let msg: Msg = crate::common::frame::decode(body).map_err(|_| StreamError::Malformed)?;
            self.messages += 1;
            if self.messages > MESSAGES_MAX {
                return Err(StreamError::TooLong);
            }
            self.reported = matches!(msg, Msg::Done(_));
            self.done += 2 + len;
            out.push(msg);
        }
        if self.reported && self.buf.len() > self.done {
            return Err(StreamError::AfterReport);
        }
        Ok(out)
    }

    /// The stream ended: an error if it ended inside a frame.
    pub fn end(&self) -> Result<(), StreamError> {
        if self.buf.len() > self.done {
            Err(StreamError::Truncated)
        } else {
            Ok(())
        }
    }
}

/// The child's main: `berth stage [cut=N]`. Exits 0 once its report is
/// written (whatever it says), 1 when it could not write one.
pub fn run(args: &[String]) -> std::process::ExitCode {
    let _ = crate::common::log::open_kmsg();
    // Staging is background work: PID 1's loop, `berthctl` and the
    // containers come first on a busy CPU and disk.
    if let Err(e) = crate::sys::background_priority() {
        crate::common::log::Event::warn("update.stage").kv("step", "priority").kv("error", e.desc()).emit();
    }
    let cut_at = args.iter().find_map(|a| a.strip_prefix("cut=")?.parse::<u64>().ok());
    let Some(fd) = crate::sys::inherited_fd(RESULT_FD) else {
        crate::common::log::Event::error("update.stage").kv("reason", format_args!("no report descriptor {RESULT_FD}")).emit();
        return std::process::ExitCode::FAILURE;
    };
    let mut out = std::fs::File::from(fd);
    let mut bundle = Hashing::new(std::io::stdin().lock());
    let mut report = stage(&mut out, cut_at, &mut bundle);
    report.bundle = bundle.finish();
    match encode(&Msg::Done(Box::new(report))).map_err(|e| e.to_string()).and_then(|f| std::io::Write::write_all(&mut out, &f).map_err(|e| e.to_string())) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            crate::common::log::Event::error("update.stage").kv("reason", format_args!("report: {e}")).emit();
            std::process::ExitCode::FAILURE
        }
    }
}

fn refused(kind: Refusal, reason: &str) -> Report {
    Report { outcome: Outcome::Refused { kind, reason: cut(reason) }, store_writes: crate::release::durable::steps(), bundle: None }
}

/// A reader that hashes what passes through it.
struct Hashing<R> {
    inner: R,
    hash: sha2::Sha256,
    failed: bool,
}

impl<R: std::io::Read> Hashing<R> {
    fn new(inner: R) -> Self {
        Hashing { inner, hash: sha2::Digest::new(), failed: false }
    }

    /// Read the rest (a refused bundle was left part read) and return the
    /// SHA-256 of all of it; `None` if a read failed.
    fn finish(mut self) -> Option<Digest> {
        if std::io::copy(&mut self, &mut std::io::sink()).is_err() || self.failed {
            return None;
        }
        Some(Digest(sha2::Digest::finalize(self.hash).into()))
    }
}

impl<R: std::io::Read> std::io::Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                sha2::Digest::update(&mut self.hash, buf.get(..n).unwrap_or(&[]));
                Ok(n)
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }
}

/// Stage the bundle on standard input; map its new images, announcing each
/// on `out` first.
fn stage(out: &mut std::fs::File, cut_at: Option<u64>, bundle: &mut impl std::io::Read) -> Report {
    use crate::release::store::{StageError, Store};
    use crate::release::{current, durable, TrustedKeys};
    use std::path::Path;
    #[cfg(feature = "test-hooks")]
    if let Some(n) = cut_at {
        durable::arm_cut(n);
    }
    #[cfg(not(feature = "test-hooks"))]
    let _ = cut_at;
    let board = match crate::release::installed::load_board() {
        Ok(b) => b,
        Err(e) => return refused(Refusal::Device, &format!("board: {e}")),
    };
    let keys = match TrustedKeys::load_dir(Path::new(current::KEYS)) {
        Ok(k) => k,
        Err(e) => return refused(Refusal::Device, &format!("trusted keys in {}: {e}", current::KEYS)),
    };
    let mut store = match Store::open(Path::new(current::STATE)) {
        Ok((s, _)) => s,
        Err(e) => return refused(Refusal::Device, &format!("release store {}: {e}", current::STATE)),
    };
    store.set_system_floor(board.release_floor);
    // The update's writes count from here, as PID 1 counted them before.
    durable::start_counting();
    let staged = match store.stage(bundle, &keys, &board.name) {
        Ok(s) => s,
        Err(e @ (StageError::Bundle(_) | StageError::MissingImage(_))) => return refused(Refusal::Bundle, &e.to_string()),
        Err(e) => return refused(Refusal::Device, &e.to_string()),
    };
    let release = &staged.verified.release;
    let system = match write_system(&store, release, &board) {
        Ok(s) => s,
        Err(why) => return refused(Refusal::Device, &why),
    };
    // A release that switches by rebooting is mapped by its boot.
    let mapped = if release.reboot || system.is_some() {
        crate::release::images::Mapped::default()
    } else {
        crate::release::images::map_announcing(release, &mut |d| {
            if let Ok(f) = encode(&Msg::Mapping(*d)) {
                let _ = std::io::Write::write_all(out, &f);
            }
        })
    };
    if mapped.failed > 0 {
        crate::release::images::unmap(&mapped.new);
        return refused(Refusal::Device, &format!("{} of its images could not be mapped (see image.verity)", mapped.failed));
    }
    crate::release::images::warm(release, &mapped.new);
    let staged = Staged {
        release: staged.entry.digest,
        version: release.version,
        images_added: u32::try_from(staged.images_added).unwrap_or(u32::MAX),
        bytes: staged.bytes,
        mapped: mapped.new.iter().copied().take(CONTAINERS_MAX).collect(),
        system,
    };
    Report { outcome: Outcome::Staged(staged), store_writes: durable::steps(), bundle: None }
}

/// Write `release`'s system payload into the slot not running, when it
/// changes the running system; the slot written.
fn write_system(
    store: &crate::release::store::Store,
    release: &crate::release::Release,
    board: &crate::release::board::Board,
) -> Result<Option<crate::release::bootenv::Slot>, String> {
    let Some(sys) = &release.system else { return Ok(None) };
    let running_root = board.storage.system.verity.as_ref().and_then(|v| v.image()).map(|i| i.verity_root);
    if !sys.changes(running_root) {
        crate::common::log::Event::info("update.system").kv("phase", "written").kv("version", release.version).kv("changed", 0).emit();
        return Ok(None);
    }
    let Some(loader) = board.bootloader.as_ref() else {
        return Err(format!("release {} carries a system payload; board {} has no [bootloader] with A/B slots", release.version, board.name));
    };
    let cmdline = crate::common::files::read_bounded("/proc/cmdline", 4096).unwrap_or_default();
    let running = crate::release::bootenv::slot_from_cmdline(&String::from_utf8_lossy(&cmdline))?;
    let Some(running) = running else {
        return Err(format!("release {} carries a system payload; this boot did not come through the bootloader's slots (no berth.slot=)", release.version));
    };
    let to = running.other();
    let images = store.dir().join(crate::release::store::IMAGES);
    let w = crate::release::slotwrite::write(&images, sys, loader, to, board.storage.wait_ms).map_err(|e| format!("writing slot {}: {e}", to.name()))?;
    crate::common::log::Event::info("update.system")
        .kv("phase", "written")
        .kv("version", release.version)
        .kv("changed", 1)
        .kv("slot", to.name())
        .kv("bytes", w.bytes)
        .kv("write_ms", w.ms)
        .kv("result", "ok")
        .emit();
    Ok(Some(to))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundle_is_hashed_whole_even_when_read_in_part() {
        use std::io::Read as _;
        let bytes: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let want = Digest(sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(&bytes)).into());
        for part in [0, 1, 4096, 10_000] {
            let mut h = Hashing::new(&bytes[..]);
            let mut buf = vec![0u8; part];
            h.read_exact(&mut buf).unwrap();
            assert_eq!(h.finish(), Some(want), "read {part} bytes first");
        }
    }

    fn staged(n: usize) -> Report {
        let mapped = (0..n).map(|i| Digest([i as u8; 32])).collect();
        Report {
            outcome: Outcome::Staged(Staged {
                release: Digest([7; 32]),
                version: 9,
                images_added: 3,
                bytes: u64::MAX,
                mapped,
                system: Some(crate::release::bootenv::Slot::B),
            }),
            store_writes: 41,
            bundle: Some(Digest([9; 32])),
        }
    }

    #[test]
    fn a_stream_round_trips_in_any_pieces() {
        let msgs = vec![Msg::Mapping(Digest([1; 32])), Msg::Mapping(Digest([2; 32])), Msg::Done(Box::new(staged(2)))];
        let bytes: Vec<u8> = msgs.iter().flat_map(|m| encode(m).unwrap()).collect();
        for piece in [1, 3, 64, bytes.len()] {
            let mut r = Reader::default();
            let mut got = Vec::new();
            for chunk in bytes.chunks(piece) {
                got.extend(r.push(chunk).unwrap());
            }
            r.end().unwrap();
            assert_eq!(got, msgs, "pieces of {piece}");
        }
    }

    #[test]
    fn the_largest_report_fits_its_limits() {
        let mut msgs: Vec<Msg> = (0..CONTAINERS_MAX).map(|i| Msg::Mapping(Digest([i as u8; 32]))).collect();
        let reason = "é".repeat(REASON_MAX);
        msgs.push(Msg::Done(Box::new(staged(CONTAINERS_MAX))));
        let refusal = Msg::Done(Box::new(Report {
            outcome: Outcome::Refused { kind: Refusal::Device, reason: cut(&reason) },
            store_writes: u64::MAX,
            bundle: Some(Digest([0xff; 32])),
        }));
        assert!(encode(&refusal).unwrap().len() <= FRAME_MAX + 2);
        assert_eq!(cut::<REASON_MAX>(&reason).len(), REASON_MAX, "cut at a character boundary");
        let bytes: Vec<u8> = msgs.iter().flat_map(|m| encode(m).unwrap()).collect();
        assert!(bytes.len() <= STREAM_MAX, "{} bytes", bytes.len());
        let mut r = Reader::default();
        assert_eq!(r.push(&bytes).unwrap().len(), MESSAGES_MAX);
    }

    #[test]
    fn bad_streams_are_errors() {
        let done = encode(&Msg::Done(Box::new(staged(0)))).unwrap();
        // A frame announcing too much.
        let mut r = Reader::default();
        assert_eq!(r.push(&[0xff, 0xff]), Err(StreamError::FrameTooLarge(0xffff)));
        // Garbage of a valid length.
        let mut r = Reader::default();
        assert_eq!(r.push(&[3, 0, 0xff, 0xff, 0xff]), Err(StreamError::Malformed));
        // Bytes after the report.
        let mut r = Reader::default();
        let mut two = done.clone();
        two.extend_from_slice(&done);
        assert_eq!(r.push(&two), Err(StreamError::AfterReport));
        // Ends inside a frame.
        let mut r = Reader::default();
        assert_eq!(r.push(&done[..done.len() - 1]).unwrap(), []);
        assert_eq!(r.end(), Err(StreamError::Truncated));
        // Too many messages or bytes.
        let mut r = Reader::default();
        let one = encode(&Msg::Mapping(Digest([0; 32]))).unwrap();
        let many: Vec<u8> = (0..=MESSAGES_MAX).flat_map(|_| one.clone()).collect();
        assert_eq!(r.push(&many), Err(StreamError::TooLong));
        let mut r = Reader::default();
        assert_eq!(r.push(&vec![0; STREAM_MAX + 1]), Err(StreamError::TooLong));
    }
}
