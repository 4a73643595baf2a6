//! Container and service output: read from their pipes, rate-limited per
//! stream, kept in the log store, mirrored to the console if the board says so.
//!
//! It must not let one stream hold the loop or flood the store: reads are
//! bounded per wake-up, and lines past a stream's bucket are counted, not
//! kept.
//!
//! Each output pipe is read at most [`READ_MAX`] bytes per loop wake-up, so a
//! container that writes as fast as it can costs the loop one bounded read
//! per turn and cannot starve the other streams, the timers or the control
//! socket (epoll reports ready descriptors round-robin). Lines longer than
//! [`OUTPUT_LINE_MAX`] bytes are split.
//!
//! Each stream has a token bucket ([`Bucket`]): the manifest's
//! `log_rate = { lines_per_s, burst }`, by default
//! [`crate::release::manifest::LOG_LINES_PER_S`] lines per second with bursts of
//! [`crate::release::manifest::LOG_BURST`] (host services: the default). A line
//! beyond it is dropped and counted; the count is reported as
//! `container.log.limited name= count=` (`service.log.limited` for a
//! service) at most every [`LIMITED_EVERY_S`] seconds per stream, and once
//! more with the rest when the stream closes.
//!
//! A kept line (bytes that are not UTF-8 read as U+FFFD, trailing carriage
//! returns cut) goes to the stream's store ring and file with its arrival
//! time, its active characters escaped ([`crate::common::log::escape_active`]), and,
//! when the board's `container_log_console` is on, to the console as
//! `container.log name= line=` (`service.log`), encoded as every event
//! value is. No path shows a control raw: `berthctl logs` prints the
//! stored text, escaped again. It never goes to the kernel log nor to
//! berth's own stream.

use super::{Kind, Pid1};
use crate::common::log::Event;
use nix::errno::Errno;
use std::sync::atomic::{AtomicBool, Ordering};

/// Longest output line kept whole; longer lines are split.
pub const OUTPUT_LINE_MAX: usize = 200;
/// Most bytes read from one output pipe per loop wake-up.
pub const READ_MAX: usize = 4096;
/// Least time between two `*.log.limited` reports of one stream.
pub const LIMITED_EVERY_S: f64 = 5.0;

/// A token bucket over lines (pure: the caller passes the time).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: f64,
}

impl Bucket {
    /// Full: `burst` lines may pass at once, then `rate` per second.
    pub fn new(rate: u32, burst: u32, now: f64) -> Bucket {
        let burst = f64::from(burst.max(1));
        Bucket { rate: f64::from(rate.max(1)), burst, tokens: burst, last: now }
    }

    /// Whether one more line may pass at `now` (seconds).
    pub fn take(&mut self, now: f64) -> bool {
        if now > self.last {
            self.tokens = (self.tokens + (now - self.last) * self.rate).min(self.burst);
            self.last = now;
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A pipe carrying a container's or service's stdout and stderr, read line by line.
pub struct Output {
    pub name: heapless::String<32>,
    pub kind: Kind,
    pub fd: std::os::fd::OwnedFd,
    buf: heapless::Vec<u8, OUTPUT_LINE_MAX>,
    bucket: Bucket,
    /// Lines dropped by the bucket and not reported yet.
    limited: u64,
    limited_told_at: f64,
    /// Lines dropped by the bucket, all told.
    dropped: u64,
}

impl Output {
    pub fn new(name: &str, kind: Kind, fd: std::os::fd::OwnedFd, rate: crate::release::manifest::LogRate) -> Output {
        let mut n = heapless::String::new();
        for c in name.chars() {
            if n.push(c).is_err() {
                break;
            }
        }
        let now = crate::common::log::now();
        let (per_s, burst) = rate.resolved();
        Output { name: n, kind, fd, buf: heapless::Vec::new(), bucket: Bucket::new(per_s, burst, now), limited: 0, limited_told_at: now, dropped: 0 }
    }

    /// One whole line (without its newline) arrived at `now`.
    fn line(&mut self, now: f64) {
        if self.bucket.take(now) {
            log_line(&self.name, self.kind, &self.buf, now);
        } else {
            self.limited += 1;
            self.dropped += 1;
        }
        self.buf.clear();
        if self.limited > 0 && now - self.limited_told_at >= LIMITED_EVERY_S {
            self.tell_limited(now);
        }
    }

    fn tell_limited(&mut self, now: f64) {
        let n = core::mem::take(&mut self.limited);
        self.limited_told_at = now;
        if n > 0 {
            let ev = match self.kind {
                Kind::Container => "container.log.limited",
                Kind::Service => "service.log.limited",
            };
            Event::warn(ev).kv("name", &self.name).kv("count", n).emit();
        }
    }

    /// Take `bytes` read from the pipe.
    fn take(&mut self, bytes: &[u8], now: f64) {
        for &b in bytes {
            if b == b'\n' {
                self.line(now);
            } else if self.buf.push(b).is_err() {
                self.line(now);
                let _ = self.buf.push(b);
            }
        }
    }

    /// The writer is gone: the partial line and the last count.
    fn close(&mut self, now: f64) {
        if !self.buf.is_empty() {
            self.line(now);
        }
        self.tell_limited(now);
    }
}

/// Whether output lines are mirrored to the console (the board's
/// `container_log_console`).
static MIRROR: AtomicBool = AtomicBool::new(false);

/// Set from the board at boot.
pub fn set_mirror(on: bool) {
    MIRROR.store(on, Ordering::Relaxed);
}

/// A line's text for the store: its active characters escaped, cut at the
/// store's line length before a character or escape that does not fit
/// whole.
fn shown(text: &str) -> heapless::String<{ crate::common::logstore::TEXT_MAX }> {
    let mut shown = heapless::String::new();
    let mut one = [0u8; 4];
    for c in text.chars() {
        // An escape is at most `\uNNNN`.
        let mut piece: heapless::String<8> = heapless::String::new();
        let _ = crate::common::log::escape_active(&mut piece, c.encode_utf8(&mut one));
        if shown.push_str(&piece).is_err() {
            break;
        }
    }
    shown
}

/// Keep one line that passed the bucket. Bytes that are not UTF-8 become
/// U+FFFD (a lone 0x9B is a CSI to some terminals) and trailing carriage
/// returns go; the console's event encodes the rest ([`Event::kv`]).
fn log_line(name: &str, kind: Kind, bytes: &[u8], now: f64) {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim_end_matches('\r');
    let t_ms = (now * 1e3) as u64;
    let shown = shown(text);
    let ev = match kind {
        Kind::Container => {
            crate::common::logstore::with(|s| s.push(name, t_ms, &shown));
            "container.log"
        }
        Kind::Service => {
            let stream = crate::common::logstore::service_stream(name);
            crate::common::logstore::with(|s| s.push(&stream, t_ms, &shown));
            "service.log"
        }
    };
    if MIRROR.load(Ordering::Relaxed) {
        Event::info(ev).kv("name", name).kv("line", text).emit_mirror();
    }
}

impl Pid1 {
    /// Read an output pipe and log each line as `<kind>.log`.
    pub(super) fn watch_output_as(&mut self, fd: std::os::fd::OwnedFd, name: &str, kind: Kind, rate: crate::release::manifest::LogRate) {
        use nix::sys::epoll::{EpollEvent, EpollFlags};
        let out = Output::new(name, kind, fd, rate);
        // Reuse a free slot: output streams come and go with restarts.
        let slot = match self.outputs.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                if self.outputs.push(None).is_err() {
                    Event::warn("watch").kv("output", name).kv("result", "full").emit();
                    return;
                }
                self.outputs.len() - 1
            }
        };
        if let Some(epoll) = &self.epoll {
            if let Err(e) = epoll.add(&out.fd, EpollEvent::new(EpollFlags::EPOLLIN, super::TOKEN_OUTPUT + slot as u64)) {
                Event::error("watch").kv("output", name).result(&Err::<(), _>(crate::common::files::errno_text(e))).emit();
                return;
            }
        }
        if let Some(s) = self.outputs.get_mut(slot) {
            *s = Some(out);
        }
    }

    /// Read what a container wrote (at most [`READ_MAX`] bytes); one line
    /// kept per line that passes its bucket.
    pub(super) fn on_output(&mut self, slot: usize) {
        let Some(Some(out)) = self.outputs.get_mut(slot) else {
            return;
        };
        let mut chunk = [0u8; READ_MAX];
        let n = match nix::unistd::read(std::os::fd::AsRawFd::as_raw_fd(&out.fd), &mut chunk) {
            Ok(n) => n,
            Err(Errno::EINTR | Errno::EAGAIN) => return,
            Err(_) => 0,
        };
        let now = crate::common::log::now();
        let before = out.dropped;
        if n == 0 {
            // Writer gone: flush a partial line and stop watching.
            out.close(now);
            let (name, kind, dropped) = (out.name.clone(), out.kind, out.dropped.saturating_sub(before));
            if let Some(epoll) = &self.epoll {
                let _ = epoll.delete(&out.fd);
            }
            if let Some(s) = self.outputs.get_mut(slot) {
                *s = None;
            }
            self.count_dropped(&name, kind, dropped);
            return;
        }
        out.take(chunk.get(..n).unwrap_or(&[]), now);
        if out.dropped > before {
            let (name, kind, dropped) = (out.name.clone(), out.kind, out.dropped.saturating_sub(before));
            self.count_dropped(&name, kind, dropped);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_passes_a_burst_then_the_rate() {
        let mut b = Bucket::new(8, 5, 100.0);
        let passed = (0..20).filter(|_| b.take(100.0)).count();
        assert_eq!(passed, 5, "the burst");
        // 0.25 s later: 2 tokens, so 2 lines.
        assert_eq!((0..10).filter(|_| b.take(100.25)).count(), 2);
        // Half a token is not a line...
        assert!(!b.take(100.3125));
        // ...but it counts: another half makes one.
        assert!(b.take(100.375));
        assert!(!b.take(100.375));
        // A long silence refills to the burst, never beyond.
        assert_eq!((0..100).filter(|_| b.take(1000.0)).count(), 5);
        // A clock going backwards adds nothing.
        assert!(!b.take(999.0));
    }

    #[test]
    fn a_steady_flood_passes_the_rate_exactly() {
        let mut b = Bucket::new(100, 200, 0.0);
        // 20 s of a line every 0.1 ms.
        let mut passed = 0u32;
        for i in 0..200_000u32 {
            if b.take(f64::from(i) * 1e-4) {
                passed += 1;
            }
        }
        // The burst, then 100 per second for 20 s (less one partial token).
        assert!((2199..=2200).contains(&passed), "{passed}");
    }

    fn output(per_s: u32, burst: u32) -> Output {
        let (r, _w) = nix::unistd::pipe().unwrap();
        let rate = crate::release::manifest::LogRate { lines_per_s: Some(per_s), burst: Some(burst) };
        Output::new("flood", Kind::Container, r, rate)
    }

    #[test]
    fn lines_past_the_bucket_are_counted_and_reported_later() {
        let mut o = output(1, 2);
        let t = o.bucket.last;
        o.take(b"a\nb\nc\nd\ne\n", t);
        assert_eq!(o.limited, 3, "two pass, three are counted");
        o.take(b"f\ng\n", t + 1.0);
        assert_eq!(o.limited, 4);
        // Not reported before LIMITED_EVERY_S...
        assert_eq!(o.limited_told_at, t);
        // ...then the next line reports (and resets) the count.
        o.take(b"h\n", t + LIMITED_EVERY_S);
        assert_eq!((o.limited, o.limited_told_at), (0, t + LIMITED_EVERY_S));
        // The metrics' count is never reset.
        assert_eq!(o.dropped, 4);
        // A partial line is kept until its newline or the close.
        o.take(b"partial", t + 20.0);
        assert_eq!(o.buf.as_slice(), b"partial");
        o.close(t + 20.0);
        assert!(o.buf.is_empty());
    }

    #[test]
    fn long_lines_are_split_and_each_part_counts() {
        let mut o = output(1, 2);
        let t = o.bucket.last;
        o.take(&[b'x'; 2 * OUTPUT_LINE_MAX + 50], t);
        // Two whole parts passed (the burst); the rest waits for its newline.
        assert_eq!((o.limited, o.buf.len()), (0, 50));
        o.take(b"\n", t);
        assert_eq!(o.limited, 1);
    }

    #[test]
    fn controls_reach_neither_the_store_nor_the_console_raw() {
        let raw = b"a\x1b[31mb\xc2\x9bc\x9bd\x1b]0;t\x07e\rf\xe2\x80\xaeg\r\r";
        let text = String::from_utf8_lossy(raw);
        let text = text.trim_end_matches('\r');
        let want = "a\\x1b[31mb\\u009bc\u{fffd}d\\x1b]0;t\\x07e\\x0df\\u202eg";
        assert_eq!(shown(text).as_str(), want);
        let ev = Event::info("container.log").kv("name", "x").kv("line", text);
        assert!(ev.text().ends_with(&format!(" line=\"{want}\"")), "{}", ev.text());
        assert!(!ev.text().chars().any(crate::common::log::is_active));
        // Cut at the store's length, never in the middle of a character.
        let long = "\u{202e}".repeat(100);
        assert_eq!(shown(&long).len(), 252);
    }

    #[test]
    fn zero_rates_are_raised_to_one() {
        let mut b = Bucket::new(0, 0, 0.0);
        assert!(b.take(0.0));
        assert!(!b.take(0.5));
        assert!(b.take(1.0));
    }
}
