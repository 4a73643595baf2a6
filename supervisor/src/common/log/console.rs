//! berth's own console writes, which never block PID 1.
//!
//! A serial console that stops reading (XOFF, a USB gadget console with no
//! reader, a slow baud rate) must not stall the loop. So PID 1 writes its
//! lines through a file description of its own, opened non-blocking, and
//! keeps what the console has not taken yet in a ring of [`RING_BYTES`]
//! bytes. The loop asks for writability while the ring holds bytes
//! ([`pending`]) and drains it then ([`drain`]). A line that does not fit
//! is dropped whole and counted; once half the ring is free again, the
//! first line written is `log.dropped sink=console count=N`.
//!
//! The description: `/proc/self/fd/1` reopened (the same console, a new
//! open file), else `/dev/console` when that is what fd 1 is (the
//! initramfs has no /proc yet). Processes that share berth's fd 1 (the
//! `berth.run` program) keep their blocking description. If neither can be
//! opened, fd 1 itself is made non-blocking (`mode=shared`): PID 1 not
//! blocking comes first.
//!
//! Other berth processes (`berth net`, `berth receive`, the CLI) never call
//! [`init`] and write to their stdout directly and blocking, as any program.

use super::ring::{Push, Ring};
use nix::errno::Errno;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Bytes of console output kept while the console is not taking them (about
/// 5.7 s of a 115200 baud line; 128 to 500 event lines).
pub const RING_BYTES: usize = 64 * 1024;

/// How berth's console description was obtained (the `console` key of
/// `boot.start`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Not PID 1: plain blocking writes to stdout.
    Direct,
    /// A description of berth's own, non-blocking.
    Own,
    /// fd 1 itself made non-blocking.
    Shared,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Direct => "direct",
            Mode::Own => "own",
            Mode::Shared => "shared",
        }
    }
}

struct Sink {
    /// berth's own description, or a duplicate of fd 1 (`shared`).
    out: OwnedFd,
    mode: Mode,
    ring: Box<Ring<RING_BYTES>>,
    /// A write failed for good (the console hung up): nothing more is
    /// written, every line counts as dropped. The errno, until reported.
    broken: Option<Option<Errno>>,
}

impl Sink {
    fn fd(&self) -> BorrowedFd<'_> {
        self.out.as_fd()
    }

    /// Write what the console takes. False when it failed for good.
    fn drain(&mut self) -> bool {
        if self.broken.is_some() {
            return false;
        }
        // At most the ring's size per call: bounded.
        for _ in 0..=RING_BYTES {
            let front = self.ring.front();
            if front.is_empty() {
                return true;
            }
            match nix::unistd::write(self.fd(), front) {
                Ok(0) => return true,
                Ok(n) => self.ring.consume(n),
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return true,
                Err(e) => {
                    self.ring.discard();
                    self.broken = Some(Some(e));
                    return false;
                }
            }
        }
        true
    }
}

static SINK: Mutex<Option<Sink>> = Mutex::new(None);

fn lock() -> std::sync::MutexGuard<'static, Option<Sink>> {
    SINK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Switch to non-blocking console writes (PID 1, once per process image).
pub fn init() -> Mode {
    let mut g = lock();
    if let Some(s) = g.as_ref() {
        return s.mode;
    }
    let (out, mode) = match open_own() {
        Some(f) => (OwnedFd::from(f), Mode::Own),
        None => {
            let Ok(fd) = std::io::stdout().as_fd().try_clone_to_owned() else {
                return Mode::Direct;
            };
            let flags = nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL).unwrap_or(0);
            let nb = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
            if nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(nb)).is_err() {
                return Mode::Direct;
            }
            (fd, Mode::Shared)
        }
    };
    *g = Some(Sink { out, mode, ring: Box::new(Ring::new()), broken: None });
    mode
}

fn open_own() -> Option<File> {
    let open = |path: &str| std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC).open(path).ok();
    if let Some(f) = open("/proc/self/fd/1") {
        return Some(f);
    }
    // No /proc yet: /dev/console, if fd 1 is that very device.
    let ours = nix::sys::stat::fstat(std::io::stdout().as_fd().as_raw_fd()).ok()?;
    let console = std::fs::metadata("/dev/console").ok()?;
    (console.file_type().is_char_device() && console.rdev() == ours.st_rdev as u64).then(|| open("/dev/console")).flatten()
}

/// Write one whole line (newline included). Without [`init`], a blocking
/// write to stdout.
pub fn write(line: &[u8]) {
    let mut g = lock();
    let Some(sink) = g.as_mut() else {
        drop(g);
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(line);
        let _ = out.flush();
        return;
    };
    if sink.broken.is_some() {
        return;
    }
    // Room may have come since the last write.
    sink.drain();
    match sink.ring.push(line) {
        Push::Kept | Push::Dropped => {}
        Push::Report => {
            let n = sink.ring.resume();
            drop(g);
            // Through the event path (kmsg, the store); it comes back here
            // and is kept, since the ring is no longer dropping.
            super::Event::warn("log.dropped").kv("sink", "console").kv("count", n).emit();
            let mut g = lock();
            if let Some(sink) = g.as_mut() {
                let _ = sink.ring.push(line);
                sink.drain();
            }
            return;
        }
    }
    sink.drain();
}

/// Use the descriptor to watch for writability while [`pending`] (`None`
/// without [`init`]). `f` must not emit events.
pub fn with_fd<R>(f: impl FnOnce(BorrowedFd<'_>) -> R) -> Option<R> {
    lock().as_ref().map(|s| f(s.fd()))
}

/// Whether bytes wait for the console (or a loss waits to be reported).
pub fn pending() -> bool {
    lock().as_ref().is_some_and(|s| match s.broken {
        // A failure not reported yet: the next turn reports it.
        Some(unreported) => unreported.is_some(),
        None => !s.ring.is_empty() || s.ring.should_report(),
    })
}

/// The console is writable: write what it takes, and report a loss once
/// there is room. A console that failed for good is reported once
/// (`console.failed`, in the kernel log and the store) and left alone.
pub fn drain() {
    let (report, failed) = {
        let mut g = lock();
        let Some(sink) = g.as_mut() else { return };
        sink.drain();
        let failed = sink.broken.as_mut().and_then(Option::take);
        (sink.ring.should_report().then(|| sink.ring.resume()).filter(|_| sink.broken.is_none()), failed)
    };
    if let Some(n) = report {
        super::Event::warn("log.dropped").kv("sink", "console").kv("count", n).emit();
    }
    if let Some(e) = failed {
        super::Event::error("console.failed").kv("error", e.desc()).emit();
    }
}

/// Wait up to `max` for the console to take what the ring holds (before
/// re-executing or halting, when nothing else is left to do).
pub fn flush(max: Duration) {
    let end = Instant::now() + max;
    loop {
        drain();
        let g = lock();
        let Some(sink) = g.as_ref() else { return };
        if sink.ring.is_empty() {
            return;
        }
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        let ms = u16::try_from(left.as_millis().min(100)).unwrap_or(100);
        let mut fds = [nix::poll::PollFd::new(sink.fd(), nix::poll::PollFlags::POLLOUT)];
        let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// A sink on a non-blocking pipe whose reader the test controls.
    fn sink() -> (Sink, File) {
        let (r, w) = nix::unistd::pipe().unwrap();
        let flags = nix::fcntl::fcntl(w.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL).unwrap();
        let nb = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(w.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(nb)).unwrap();
        (Sink { out: w, mode: Mode::Own, ring: Box::new(Ring::new()), broken: None }, File::from(r))
    }

    #[test]
    fn a_reader_that_stops_costs_lines_not_time_and_the_rest_follows_in_order() {
        let (mut s, mut reader) = sink();
        let line = |i: u32| format!("line {i:06} {}\n", "x".repeat(80));
        let start = Instant::now();
        let mut kept = 0u32;
        let mut dropped = 0u32;
        for i in 0..4000u32 {
            s.drain();
            match s.ring.push(line(i).as_bytes()) {
                Push::Kept => kept += 1,
                Push::Dropped => dropped += 1,
                Push::Report => unreachable!("the reader never read"),
            }
            s.drain();
        }
        // Nothing waited for the reader.
        assert!(start.elapsed() < Duration::from_secs(2), "{:?}", start.elapsed());
        // The pipe and the ring took what they could hold, whole lines only.
        assert!(dropped > 0 && kept > 0, "{kept} {dropped}");
        assert!(s.ring.len() > RING_BYTES / 2);
        // The reader comes back: what was kept comes out whole and in order.
        let mut got = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        while !s.ring.is_empty() {
            let n = reader.read(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
            s.drain();
        }
        assert!(s.ring.should_report());
        assert_eq!(s.ring.resume(), u64::from(dropped));
        loop {
            match nix::unistd::read(reader.as_raw_fd(), &mut buf) {
                Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
                _ => break,
            }
            // The write end is still open: stop once the pipe is empty.
            let mut fds = [nix::poll::PollFd::new(reader.as_fd(), nix::poll::PollFlags::POLLIN)];
            if nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO).unwrap() == 0 {
                break;
            }
        }
        let text = String::from_utf8(got).unwrap();
        let want: String = (0..kept).map(line).collect();
        assert_eq!(text.len(), want.len());
        assert!(text == want, "kept lines come out whole and in order");
    }

    #[test]
    fn a_console_that_fails_is_left_alone() {
        let (mut s, reader) = sink();
        drop(reader);
        assert_eq!(s.ring.push(b"one\n"), Push::Kept);
        // EPIPE: the line is counted as dropped and nothing is tried again.
        assert!(!s.drain());
        assert!(s.ring.is_empty() && matches!(s.broken, Some(Some(Errno::EPIPE))));
        assert!(!s.drain());
        assert_eq!(s.ring.resume(), 1);
    }
}
