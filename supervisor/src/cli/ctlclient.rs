//! `berthctl`: the operator's client of berth's control socket. [`run`]
//! parses the command line ([`crate::cli::ctlargs`]), asks berth one request (or
//! a few, to follow or wait) and prints the answer, escaped where it came
//! from the device; the exit code says the outcome ([`code`], documented in
//! docs/berthctl.md). `status` is rendered in [`crate::cli::ctlstatus`].
//!
//! It must not run PID 1's code paths: it only talks over the socket.
//!
//! `update --wait` sends the update (answered once its staging started,
//! with its sequence number), then asks `release` every
//! [`POLL_S`] seconds, each time on a new short connection, until the
//! update has ended ([`crate::supervise::outcome::wait_step`]), and exits with the
//! code of its end ([`crate::supervise::outcome::exit`]). Nothing is held open on
//! berth's side; the wait is bounded there by the staging deadline (15
//! minutes) and the release's trial deadline. A berth that does not answer
//! [`UNANSWERED_MAX`] looks in a row ends the wait with code 1.
//!
//! `logs -f` and `events -f` follow the same way: they ask for the lines
//! after the last one shown every [`FOLLOW_POLL_MS`] ms (at once while
//! replies come back full).
//!
//! Output goes through [`Io::emit`]: a closed stdout (`berthctl logs -f x |
//! head`) ends the command quietly instead of panicking.

use crate::cli::ctlargs::{Cmd, Invocation, Parsed};
use crate::common::log::escaped;
use crate::supervise::control::{Command, ReleaseInfo, Response};
use crate::supervise::outcome::{exit, wait_step, Wait};
use std::io::Write as _;

/// Seconds between two looks.
pub const POLL_S: f64 = 0.25;
/// Looks in a row without an answer before giving up.
pub const UNANSWERED_MAX: u32 = 40;
/// Milliseconds between two looks of `logs -f`.
pub const FOLLOW_POLL_MS: u64 = 300;

/// `berthctl`'s exit codes (but `update --wait`'s: [`crate::supervise::outcome::exit`]).
pub mod code {
    /// Done; for `status`, everything as wanted; for `release`, committed.
    pub const OK: u8 = 0;
    /// `status`/`release`: something failed, or no release runs (recovery).
    pub const DEGRADED: u8 = 1;
    /// berth answered with a refusal (an unknown name, no trial, ...).
    pub const REFUSED: u8 = 1;
    /// The command line is wrong.
    pub const USAGE: u8 = 2;
    /// `status`/`release`: on its way (starting, not ready yet, on trial).
    pub const NOT_READY: u8 = 3;
    /// No usable answer: the control socket could not be connected to, or
    /// the exchange failed (no reply in time, a malformed or unexpected one).
    pub const UNREACHABLE: u8 = 4;
}

/// Where berthctl writes: stdout and stderr (buffers in tests).
pub struct Io<'a> {
    pub out: &'a mut dyn std::io::Write,
    pub err: &'a mut dyn std::io::Write,
}

impl Io<'_> {
    /// Write `text` to the output; false once it is gone (then stop).
    pub fn emit(&mut self, text: &str) -> bool {
        self.out.write_all(text.as_bytes()).and_then(|()| self.out.flush()).is_ok()
    }

    /// A line on the error output (never a panic if it is gone).
    fn warn(&mut self, text: &str) {
        let _ = writeln!(self.err, "{text}");
    }
}

/// `berthctl ARGS...` on stdout and stderr: the process exit code.
pub fn run(args: &[String], socket: &str) -> u8 {
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    run_with(args, socket, &mut Io { out: &mut out, err: &mut err })
}

/// `berthctl ARGS...`, writing to `io`: the process exit code.
pub fn run_with(args: &[String], socket: &str, io: &mut Io<'_>) -> u8 {
    let inv = match crate::cli::ctlargs::parse(args) {
        Parsed::Run(inv) => inv,
        Parsed::Help(text) => {
            io.emit(&text);
            return code::OK;
        }
        Parsed::Version => {
            io.emit(&format!("berth {}\n", crate::common::names::VERSION));
            return code::OK;
        }
        Parsed::Usage(text) => {
            io.warn(&text);
            return code::USAGE;
        }
    };
    let name = |n: &str| crate::supervise::outcome::cut(n);
    match &inv.cmd {
        Cmd::Status => status(io, inv.json, socket),
        Cmd::Release => release(io, inv.json, socket),
        Cmd::Update(path) => update(io, path, inv.wait, socket),
        Cmd::Logs(n) => logs(io, n, &inv, socket),
        Cmd::Events => logs(io, crate::common::logstore::BERTH, &inv, socket),
        Cmd::Start(n) => simple(io, Command::Start(name(n)), socket),
        Cmd::Stop(n) => simple(io, Command::Stop(name(n)), socket),
        Cmd::Restart(n) => simple(io, Command::Restart(name(n)), socket),
        Cmd::Commit => simple(io, Command::Commit, socket),
        Cmd::Rollback => simple(io, Command::Rollback, socket),
        Cmd::Wedge(s) => simple(io, Command::Wedge(*s), socket),
    }
}

/// One request; a failure is said on stderr and becomes its exit code.
fn ask(io: &mut Io<'_>, socket: &str, cmd: Command) -> Result<Response, u8> {
    match crate::supervise::ctlsock::try_call(socket, cmd) {
        Ok(Response::Error(e)) => {
            io.warn(&format!("berthctl: {}", escaped(&e)));
            Err(code::REFUSED)
        }
        Ok(r) => Ok(r),
        Err(e) => {
            let hint = if e.unreachable { " (is berth running, and are you root?)" } else { "" };
            io.warn(&format!("berthctl: {}{hint}", escaped(&e.text)));
            Err(code::UNREACHABLE)
        }
    }
}

/// A reply of the wrong kind (a berth of another build): no usable answer.
fn unexpected(io: &mut Io<'_>) -> u8 {
    io.warn("berthctl: unexpected reply");
    code::UNREACHABLE
}

/// `start`, `stop`, `restart`, `commit`, `rollback`, `debug wedge`.
fn simple(io: &mut Io<'_>, cmd: Command, socket: &str) -> u8 {
    match ask(io, socket, cmd) {
        Ok(Response::Message(m)) => {
            io.emit(&format!("{}\n", escaped(&m)));
            code::OK
        }
        Ok(Response::Done) => code::OK,
        Ok(_) => unexpected(io),
        Err(c) => c,
    }
}

/// `status [--json]`, exit code by state.
fn status(io: &mut Io<'_>, json: bool, socket: &str) -> u8 {
    let reply = match ask(io, socket, Command::Status) {
        Ok(Response::Status(r)) => r,
        Ok(_) => return unexpected(io),
        Err(c) => return c,
    };
    if json {
        io.emit(&String::from_utf8_lossy(&crate::cli::ctlstatus::json(&reply)));
    } else {
        io.emit(&crate::cli::ctlstatus::text(&reply));
    }
    crate::cli::ctlstatus::state_code(&reply)
}

/// `release`'s exit code: degraded in recovery, not ready on trial.
pub fn release_code(r: &ReleaseInfo) -> u8 {
    match r.phase.as_str() {
        "recovery" => code::DEGRADED,
        "trial" => code::NOT_READY,
        _ => code::OK,
    }
}

/// `release [--json]`, exit code by phase.
fn release(io: &mut Io<'_>, json: bool, socket: &str) -> u8 {
    let r = match ask(io, socket, Command::Release) {
        Ok(Response::Release(r)) => r,
        Ok(_) => return unexpected(io),
        Err(c) => return c,
    };
    if json {
        io.emit(&format!("{}\n", release_json(&r)));
    } else {
        io.emit(&release_text(&r));
    }
    release_code(&r)
}

/// `release`'s lines, everything from the device escaped.
pub fn release_text(r: &ReleaseInfo) -> String {
    let mut lines = Vec::new();
    if r.phase == "recovery" {
        lines.push(format!("no release runs (recovery): {}", escaped(&r.recovery)));
    } else {
        lines.push(format!("release {} signed by key {}", r.version, escaped(&r.key_id)));
    }
    if !r.phase.is_empty() {
        match r.previous {
            Some(p) => lines.push(format!("state {} (previous release {p})", escaped(&r.phase))),
            None => lines.push(format!("state {}", escaped(&r.phase))),
        }
    }
    lines.extend(r.rollbacks.iter().map(|rb| escaped(rb)));
    if !r.staging.is_empty() {
        lines.push(escaped(&r.staging));
    }
    lines.extend(r.quarantined.iter().map(|q| escaped(q)));
    if let Some(u) = r.updates.last() {
        lines.push(escaped(&u.line()));
    }
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

/// `berthctl update [--wait] PATH`; the process exit code.
pub fn update(io: &mut Io<'_>, path: &str, wait: bool, socket: &str) -> u8 {
    let mut p = heapless::String::new();
    if p.push_str(path).is_err() {
        io.warn(&format!("berthctl: the bundle path is longer than {} bytes", p.capacity()));
        return exit::USAGE;
    }
    let info = match crate::supervise::ctlsock::try_call(socket, Command::Update(p)) {
        Ok(Response::Update(info)) => info,
        Ok(Response::Error(e)) => {
            io.warn(&format!("berthctl: {}", escaped(&e)));
            return if wait { exit::REFUSED } else { code::REFUSED };
        }
        Ok(_) => {
            io.warn("berthctl: unexpected reply");
            return if wait { exit::OTHER } else { code::UNREACHABLE };
        }
        Err(e) => {
            io.warn(&format!("berthctl: {}", escaped(&e.text)));
            // With --wait, 4 means rolled back.
            return if wait { exit::OTHER } else { code::UNREACHABLE };
        }
    };
    io.emit(&format!("update {} staging {}\n", info.seq, escaped(&info.bundle)));
    if !wait {
        return exit::COMMITTED;
    }
    let mut shown = crate::supervise::outcome::Phase::Staging;
    let mut unanswered = 0;
    loop {
        std::thread::sleep(std::time::Duration::from_secs_f64(POLL_S));
        let kept = match crate::supervise::ctlsock::call(socket, Command::Release) {
            Ok(Response::Release(r)) => r.updates,
            other => {
                unanswered += 1;
                if unanswered >= UNANSWERED_MAX {
                    io.warn(&format!("berthctl: berth stopped answering while update {} was under way: {}", info.seq, escaped(&format!("{other:?}"))));
                    return exit::OTHER;
                }
                continue;
            }
        };
        unanswered = 0;
        let mine = kept.iter().find(|u| u.seq == info.seq);
        match wait_step(&kept, info.seq) {
            Wait::Pending => {
                if let Some(u) = mine.filter(|u| u.phase != shown) {
                    shown = u.phase;
                    io.emit(&format!("{}\n", escaped(&u.line())));
                }
            }
            Wait::Exit(code) => {
                match mine {
                    Some(u) => {
                        io.emit(&format!("{}\n", escaped(&u.line())));
                    }
                    None => io.warn(&format!("berthctl: update {} is no longer known to berth", info.seq)),
                }
                return code;
            }
        }
    }
}

/// `logs NAME` / `events`: the last lines, then with `-f` new ones as they
/// come. Ends when stdout is gone.
fn logs(io: &mut Io<'_>, stream: &str, inv: &Invocation, socket: &str) -> u8 {
    use crate::supervise::control::LOG_LINES_MAX;
    let name: crate::supervise::control::Name = crate::supervise::outcome::cut(stream);
    let mut after = None;
    let mut max = inv.lines;
    let mut told_dropped = 0;
    loop {
        let (lines, next, dropped, boot) = match ask(io, socket, Command::Logs { name: name.clone(), after, max }) {
            Ok(Response::Logs { lines, next, dropped, boot }) => (lines, next, dropped, boot),
            Ok(_) => return unexpected(io),
            Err(c) => return c,
        };
        let boot = boot.as_deref().filter(|b| crate::common::logstore::parse_boot_id(b).is_some());
        // The text form starts as a log store file does: a header naming the boot.
        let mut text = if after.is_none() && !inv.json { crate::common::logstore::header(boot) } else { String::new() };
        for l in lines.iter() {
            text.push_str(&log_line(&name, l, boot, inv.json));
        }
        if !text.is_empty() && !io.emit(&text) {
            return code::OK;
        }
        if dropped > told_dropped {
            io.warn(&format!("berthctl: {} lines of {} could not be kept (log quota or errors)", dropped - told_dropped, escaped(&name)));
            told_dropped = dropped;
        }
        // A full reply may have more behind it: ask again at once.
        let full = lines.len() == usize::from(max) && after.is_some();
        after = Some(next);
        max = LOG_LINES_MAX as u16;
        if !inv.follow {
            return code::OK;
        }
        if !full {
            std::thread::sleep(std::time::Duration::from_millis(FOLLOW_POLL_MS));
        }
    }
}

/// One kept line as `logs` prints it: `SECONDS.MMM WALL TEXT` as in the log
/// store's files (WALL `-` while the clock was not set), or with `--json`
/// an object that also names the boot; newline-terminated.
pub fn log_line(stream: &str, l: &crate::supervise::control::LogLine, boot: Option<&str>, json: bool) -> String {
    // Stored lines are escaped already; a berth of another build may not
    // have done it.
    let text = l.text.trim_end();
    if !json {
        return crate::common::logstore::encode(l.t_ms, l.wall_ms, &escaped(text));
    }
    let s = crate::supervise::statusview::json_string;
    let mut out = Vec::new();
    out.extend_from_slice(b"{\"name\":");
    s(&mut out, stream);
    let _ = write!(out, ",\"seq\":{},\"t_ms\":{},\"wall_ms\":", l.seq, l.t_ms);
    let _ = match l.wall_ms {
        Some(w) => write!(out, "{w}"),
        None => write!(out, "null"),
    };
    out.extend_from_slice(b",\"boot_id\":");
    match boot {
        Some(b) => s(&mut out, b),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"text\":");
    s(&mut out, text);
    out.extend_from_slice(b"}\n");
    String::from_utf8_lossy(&out).into_owned()
}

/// `berthctl release --json`: one JSON object.
pub fn release_json(r: &ReleaseInfo) -> String {
    use std::io::Write as _;
    let s = crate::supervise::statusview::json_string;
    let mut out = Vec::new();
    let _ = write!(out, "{{\"version\":{},\"key_id\":", r.version);
    s(&mut out, &r.key_id);
    out.extend_from_slice(b",\"phase\":");
    s(&mut out, &r.phase);
    if r.phase == "recovery" {
        out.extend_from_slice(b",\"recovery\":");
        s(&mut out, &r.recovery);
    }
    match r.previous {
        Some(p) => {
            let _ = write!(out, ",\"previous\":{p}");
        }
        None => out.extend_from_slice(b",\"previous\":null"),
    }
    let list = |out: &mut Vec<u8>, key: &str, items: &mut dyn Iterator<Item = &str>| {
        let _ = write!(out, ",\"{key}\":[");
        for (i, it) in items.enumerate() {
            if i > 0 {
                out.push(b',');
            }
            s(out, it);
        }
        out.push(b']');
    };
    list(&mut out, "rollbacks", &mut r.rollbacks.iter().map(|l| l.as_str()));
    out.extend_from_slice(b",\"staging\":");
    s(&mut out, &r.staging);
    list(&mut out, "quarantined", &mut r.quarantined.iter().map(|l| l.as_str()));
    out.extend_from_slice(b",\"update\":");
    match r.updates.last() {
        Some(u) => u.json(&mut out),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"updates\":[");
    for (i, u) in r.updates.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        u.json(&mut out);
    }
    out.extend_from_slice(b"]}");
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests;
