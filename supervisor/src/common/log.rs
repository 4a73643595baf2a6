//! Event lines: berth's log, for people and for machines at once.
//!
//! Part of `common`: it must not use any other group, and writing an event must not block the loop.
//!
//! Every record is one line, written to the console, to the kernel log
//! (`/dev/kmsg`) and to the log store's `berth` stream from the first instant
//! of the boot:
//!
//! ```text
//! BERTH t=<seconds since boot, CLOCK_MONOTONIC, 6 decimals> ev=<name> key=value key="quoted value" ...
//! ```
//!
//! A value is written bare when it is non-empty and only holds
//! `[A-Za-z0-9._/:+,@%-]`; otherwise it is double-quoted with `\"`, `\\`, `\n`,
//! `\xNN` (other C0 controls and DEL) and `\uNNNN` escapes (C1 controls
//! U+0080..U+009F and the bidirectional marks, embeddings, overrides and
//! isolates U+061C, U+200E, U+200F, U+202A..U+202E, U+2066..U+2069, which
//! a terminal would act on). Keys are `[a-z0-9_.]+`. Tests and operators
//! parse these lines; nothing relies on free text. Lines are built in a
//! fixed buffer (no allocation) and cut at [`LINE_MAX`] bytes, ending with
//! ` trunc=1` when cut. A warning ends with ` level=warn`, an error (any
//! event with `result=error` among them) with ` level=error`, always, so
//! that a reader can tell everything that went wrong by its level alone;
//! informational lines carry no level.
//!
//! Neither sink may block PID 1: the console goes through a bounded ring
//! drained when the console is writable ([`console`]), the kernel log
//! through a bounded queue written by a helper thread ([`kmsg`]). Both drop
//! and count rather than wait. Container and service output lines are
//! events too, but they reach the console only when the board mirrors them
//! ([`Event::emit_mirror`]) and never the kernel log or berth's stream (the
//! log store keeps them in the container's own stream).

pub mod console;
pub mod kmsg;
pub mod ring;

use core::fmt::{self, Write as _};
use std::sync::atomic::{AtomicBool, Ordering};

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

static DEBUG: AtomicBool = AtomicBool::new(false);

/// Open `/dev/kmsg` and start the helper thread that writes it, once per
/// process image (a re-executed berth starts its own). Failure leaves the
/// console and the store as the sinks; the caller logs it.
pub fn open_kmsg() -> std::io::Result<()> {
    kmsg::start()
}

/// Wait up to `max` for the console and the kernel log to take what is
/// queued for them: before re-executing or halting, when PID 1 has nothing
/// else left to do.
pub fn flush(max: std::time::Duration) {
    console::flush(max);
    kmsg::flush(max);
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
/// Room every line keeps for what [`Event::finish`] appends.
const LINE_TAIL: usize = " trunc=1 level=error\n".len();

struct Line {
    buf: heapless::String<LINE_MAX>,
    cut: bool,
}

impl fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            // Keep room for " trunc=1 level=error\n".
            if self.buf.len() + c.len_utf8() > LINE_MAX - LINE_TAIL || self.buf.push(c).is_err() {
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

/// A character a terminal acts on instead of showing it: C0 controls, DEL,
/// C1 controls and the bidirectional formatting characters.
pub fn is_active(c: char) -> bool {
    matches!(c as u32, 0..=0x1f | 0x7f..=0x9f | 0x61c | 0x200e | 0x200f | 0x202a..=0x202e | 0x2066..=0x2069)
}

/// Write `c` as its escape: `\xNN` below U+0080, `\uNNNN` above.
fn escape_char(out: &mut impl fmt::Write, c: char) -> fmt::Result {
    if (c as u32) < 0x80 {
        write!(out, "\\x{:02x}", c as u32)
    } else {
        write!(out, "\\u{:04x}", c as u32)
    }
}

/// Write `text` with every [`is_active`] character but the tab escaped (for
/// output lines shown to people: the log store, `berthctl logs`). A
/// backslash stays as it is.
pub fn escape_active(out: &mut impl fmt::Write, text: &str) -> fmt::Result {
    for c in text.chars() {
        if is_active(c) && c != '\t' {
            escape_char(out, c)?;
        } else {
            out.write_char(c)?;
        }
    }
    Ok(())
}

/// [`escape_active`] into a new string (host and CLI side).
pub fn escaped(text: &str) -> String {
    let mut s = String::with_capacity(text.len());
    let _ = escape_active(&mut s, text);
    s
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
            c if is_active(c) => escape_char(out, c)?,
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
}

impl Event {
    pub fn new(level: Level, name: &str) -> Event {
        let mut line = Line { buf: heapless::String::new(), cut: false };
        let _ = write!(line, "BERTH t={:.6} ev={}", now(), name);
        Event { level, line }
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

    /// Finish the line; false when its level is off.
    fn finish(&mut self) -> bool {
        if self.level == Level::Debug && !DEBUG.load(Ordering::Relaxed) {
            return false;
        }
        if self.line.cut {
            let _ = self.line.buf.push_str(" trunc=1");
        }
        let _ = self.line.buf.push_str(match self.level {
            Level::Error => " level=error",
            Level::Warn => " level=warn",
            Level::Info | Level::Debug => "",
        });
        let _ = self.line.buf.push('\n');
        true
    }

    /// Write the line to the console, the kernel log and berth's stream of
    /// the log store.
    pub fn emit(mut self) {
        if !self.finish() {
            return;
        }
        write_console(&self.line.buf);
        kmsg::send(self.level.priority(), self.line.buf.as_bytes());
        let t_ms = (now() * 1e3) as u64;
        crate::common::logstore::with(|s| s.push(crate::common::logstore::BERTH, t_ms, &self.line.buf));
    }

    /// Write the line to the console only: a container's or service's
    /// output line mirrored there (the store keeps it in its own stream).
    pub fn emit_mirror(mut self) {
        if self.finish() {
            write_console(&self.line.buf);
        }
    }
}

fn write_console(line: &str) {
    if cfg!(test) {
        // Through print! so the test harness captures it.
        print!("{line}");
        return;
    }
    console::write(line.as_bytes());
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
    fn finished_lines_name_warnings_and_errors_even_when_cut() {
        let bad: Result<(), &str> = Err("EIO");
        let mut e = Event::info("x").result(&bad);
        assert!(e.finish());
        assert!(e.text().ends_with(" error=EIO level=error\n"), "{}", e.text());
        let mut w = Event::warn("w").kv("k", "v");
        assert!(w.finish());
        assert!(w.text().ends_with(" k=v level=warn\n"));
        let mut i = Event::info("i");
        assert!(i.finish());
        assert!(!i.text().contains("level="));
        let long = "y".repeat(VALUE_MAX);
        let mut cut = (0..LINE_MAX / VALUE_MAX + 2).fold(Event::error("c"), |e, _| e.kv("v", &long));
        assert!(cut.finish());
        assert!(cut.text().ends_with(" trunc=1 level=error\n"), "{}", cut.text());
        assert!(cut.text().len() <= LINE_MAX);
    }

    #[test]
    fn c1_controls_and_bidi_marks_are_escaped() {
        let line = "a\u{9b}31mb\u{85}c\u{202e}d\u{2066}e\u{200f}f\u{61c}g\u{7f}\u{1b}[0m\té\u{a0}";
        let e = Event::info("x").kv("line", line);
        assert_eq!(fields(&e), " ev=x line=\"a\\u009b31mb\\u0085c\\u202ed\\u2066e\\u200ff\\u061cg\\x7f\\x1b[0m\\x09é\u{a0}\"");
        assert!(!e.text().chars().any(is_active));
        // For people: the same, but a tab stays and a backslash is kept.
        assert_eq!(escaped(line), "a\\u009b31mb\\u0085c\\u202ed\\u2066e\\u200ff\\u061cg\\x7f\\x1b[0m\té\u{a0}");
        assert_eq!(escaped("C:\\dir plain"), "C:\\dir plain");
        for c in ['\u{80}', '\u{9f}', '\u{202a}', '\u{2069}', '\u{200e}', '\0', '\u{1f}'] {
            assert!(is_active(c), "{c:?}");
        }
        for c in ['\u{a0}', '\u{2029}', '\u{202f}', '\u{2065}', '\u{206a}', '\u{200d}', ' ', '~'] {
            assert!(!is_active(c), "{c:?}");
        }
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
