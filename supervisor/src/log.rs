//! Event lines: berth's log, for people and for machines at once.
//!
//! Every record is one line, written to the console and to the kernel log
//! (`/dev/kmsg`) from the first instant of the boot:
//!
//! ```text
//! BERTH t=<seconds since boot, CLOCK_MONOTONIC, 6 decimals> ev=<name> key=value key="quoted value" ...
//! ```
//!
//! A value is written bare when it is non-empty and only holds
//! `[A-Za-z0-9._/:+,@%-]`; otherwise it is double-quoted with `\"`, `\\`, `\n`
//! and `\xNN` escapes. Keys are `[a-z0-9_.]+`. Tests and operators parse these
//! lines; nothing relies on free text. Lines are built in a fixed buffer (no
//! allocation) and cut at [`LINE_MAX`] bytes, ending with ` trunc=1` when cut.

use core::fmt::{self, Write as _};
use std::fs::File;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

/// Longest event line, including the kmsg prefix.
pub const LINE_MAX: usize = 512;
/// Longest single value before it is cut.
const VALUE_MAX: usize = 256;

/// Severity, as the kernel log knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error = 3,
    Warn = 4,
    Info = 6,
    Debug = 7,
}

impl Level {
    /// The kernel log priority (the discriminant).
    pub fn priority(self) -> u8 {
        self as u8
    }
}

static KMSG: OnceLock<File> = OnceLock::new();
static DEBUG: AtomicBool = AtomicBool::new(false);

/// Open `/dev/kmsg` for writing, once per process image (the descriptor is
/// close-on-exec, so a re-executed berth opens it again). Failure leaves the
/// console as the only sink; the caller logs it.
pub fn open_kmsg() -> std::io::Result<()> {
    if KMSG.get().is_none() {
        let f = std::fs::OpenOptions::new().write(true).open("/dev/kmsg")?;
        let _ = KMSG.set(f);
    }
    Ok(())
}

/// Toggle debug-level events (SIGUSR2).
pub fn toggle_debug() -> bool {
    !DEBUG.fetch_xor(true, Ordering::SeqCst)
}

/// Seconds since boot on the monotonic clock.
pub fn now() -> f64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(ts) => ts.tv_sec() as f64 + ts.tv_nsec() as f64 / 1e9,
        Err(_) => 0.0,
    }
}

/// A bounded line writer: writes past the end set `cut` instead of failing.
struct Line {
    buf: heapless::String<LINE_MAX>,
    cut: bool,
}

impl fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            // Keep room for " trunc=1\n".
            if self.buf.len() + c.len_utf8() > LINE_MAX - 10 || self.buf.push(c).is_err() {
                self.cut = true;
                break;
            }
        }
        Ok(())
    }
}

/// A value collected before it is encoded.
struct Value(heapless::String<VALUE_MAX>);

impl fmt::Write for Value {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            if self.0.push(c).is_err() {
                break;
            }
        }
        Ok(())
    }
}

fn is_bare(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"._/:+,@%-".contains(&b)
}

/// Write `v` to `out` bare or quoted, per the format above.
fn encode(out: &mut impl fmt::Write, v: &str) -> fmt::Result {
    if !v.is_empty() && v.bytes().all(is_bare) {
        return out.write_str(v);
    }
    out.write_char('"')?;
    for c in v.chars() {
        match c {
            '"' => out.write_str("\\\"")?,
            '\\' => out.write_str("\\\\")?,
            '\n' => out.write_str("\\n")?,
            c if (c as u32) < 0x20 || c as u32 == 0x7f => write!(out, "\\x{:02x}", c as u32)?,
            c => out.write_char(c)?,
        }
    }
    out.write_char('"')
}

/// One event being built: `Event::new(Level::Info, "mount").kv("target", "/proc").emit()`.
#[must_use = "an event does nothing until emitted"]
pub struct Event {
    level: Level,
    line: Line,
    /// The kernel log priority (0..=7), when not the level's own.
    kmsg: Option<u8>,
}

impl Event {
    pub fn new(level: Level, name: &str) -> Event {
        let mut line = Line { buf: heapless::String::new(), cut: false };
        let _ = write!(line, "BERTH t={:.6} ev={}", now(), name);
        Event { level, line, kmsg: None }
    }

    /// Copy the line to the kernel log at this priority (0..=7) instead of
    /// the level's (container output, at the board's `container_log_kmsg`).
    pub fn kmsg_priority(mut self, priority: u8) -> Event {
        self.kmsg = Some(priority.min(7));
        self
    }

    pub fn info(name: &str) -> Event {
        Event::new(Level::Info, name)
    }

    pub fn warn(name: &str) -> Event {
        Event::new(Level::Warn, name)
    }

    pub fn error(name: &str) -> Event {
        Event::new(Level::Error, name)
    }

    pub fn debug(name: &str) -> Event {
        Event::new(Level::Debug, name)
    }

    /// Add `key=value`; the value is anything `Display`.
    pub fn kv(mut self, key: &str, value: impl fmt::Display) -> Event {
        let mut v = Value(heapless::String::new());
        let _ = write!(v, "{value}");
        let _ = write!(self.line, " {key}=");
        let _ = encode(&mut self.line, &v.0);
        self
    }

    /// Add `result=ok` or `result=error error="..."`.
    pub fn result<E: fmt::Display>(self, r: &Result<(), E>) -> Event {
        match r {
            Ok(()) => self.kv("result", "ok"),
            Err(e) => {
                let mut ev = self.kv("result", "error").kv("error", e);
                if ev.level as u8 > Level::Error as u8 {
                    ev.level = Level::Error;
                }
                ev
            }
        }
    }

    /// The finished line, without a newline.
    pub fn text(&self) -> &str {
        &self.line.buf
    }

    /// Write the line to the console and the kernel log.
    pub fn emit(mut self) {
        if self.level == Level::Debug && !DEBUG.load(Ordering::Relaxed) {
            return;
        }
        if self.line.cut {
            let _ = self.line.buf.push_str(" trunc=1");
        }
        let _ = self.line.buf.push('\n');
        write_console(&self.line.buf);
        write_kmsg(self.kmsg.unwrap_or(self.level.priority()), self.line.buf.as_bytes());
        let t_ms = (now() * 1e3) as u64;
        crate::logstore::with(|s| s.push(crate::logstore::BERTH, t_ms, &self.line.buf));
    }
}

fn write_console(line: &str) {
    if cfg!(test) {
        // Through print! so the test harness captures it.
        print!("{line}");
        return;
    }
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(line.as_bytes());
    let _ = out.flush();
}

fn write_kmsg(priority: u8, bytes: &[u8]) {
    let Some(mut kmsg) = KMSG.get() else { return };
    let mut rec: heapless::Vec<u8, { LINE_MAX + 16 }> = heapless::Vec::new();
    let digits = [b'0', b'1', b'2', b'3', b'4', b'5', b'6', b'7'];
    let p = digits.get(usize::from(priority)).copied().unwrap_or(b'6');
    let prefix: &[u8] = &[b'<', p, b'>', b'b', b'e', b'r', b't', b'h', b':', b' '];
    let _ = rec.extend_from_slice(prefix);
    let _ = rec.extend_from_slice(bytes);
    // One write per record: /dev/kmsg takes a record per write(2).
    let _ = kmsg.write(&rec);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(e: &Event) -> &str {
        let t = e.text();
        &t[t.find(" ev=").unwrap()..]
    }

    #[test]
    fn bare_and_quoted_values() {
        let e = Event::info("mount").kv("target", "/proc").kv("opts", "a b").kv("q", "x\"y\\z\n\x01").kv("e", "");
        assert_eq!(fields(&e), " ev=mount target=/proc opts=\"a b\" q=\"x\\\"y\\\\z\\n\\x01\" e=\"\"");
        assert!(e.text().starts_with("BERTH t="));
    }

    #[test]
    fn result_marks_errors() {
        let ok: Result<(), &str> = Ok(());
        let bad: Result<(), &str> = Err("ENOENT: no file");
        assert_eq!(fields(&Event::info("x").result(&ok)), " ev=x result=ok");
        let e = Event::info("x").result(&bad);
        assert_eq!(fields(&e), " ev=x result=error error=\"ENOENT: no file\"");
        assert_eq!(e.level, Level::Error);
    }

    #[test]
    fn long_lines_are_cut_not_overflowed() {
        let big = "y".repeat(10_000);
        let mut e = Event::info("big");
        for i in 0..10 {
            e = e.kv(&format!("k{i}"), &big);
        }
        assert!(e.line.cut);
        assert!(e.text().len() <= LINE_MAX - 10);
    }
}
