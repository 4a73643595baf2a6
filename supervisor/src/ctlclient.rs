//! `berthctl`: the operator's client of berth's control socket. [`run`]
//! parses the command line ([`crate::ctlargs`]), asks berth one request (or
//! a few, to follow or wait) and prints the answer, escaped where it came
//! from the device; the exit code says the outcome ([`code`], documented in
//! docs/berthctl.md). `status` is rendered in [`crate::ctlstatus`].
//!
//! `update --wait` sends the update (answered once its staging started,
//! with its sequence number), then asks `release` every
//! [`POLL_S`] seconds, each time on a new short connection, until the
//! update has ended ([`crate::outcome::wait_step`]), and exits with the
//! code of its end ([`crate::outcome::exit`]). Nothing is held open on
//! berth's side; the wait is bounded there by the staging deadline (15
//! minutes) and the release's trial deadline. A berth that does not answer
//! [`UNANSWERED_MAX`] looks in a row ends the wait with code 1.
//!
//! `logs -f` and `events -f` follow the same way: they ask for the lines
//! after the last one shown every [`FOLLOW_POLL_MS`] ms (at once while
//! replies come back full).
//!
//! Output goes through [`emit`]: a closed stdout (`berthctl logs -f x |
//! head`) ends the command quietly instead of panicking.

use crate::control::{Command, ReleaseInfo, Response};
use crate::ctlargs::{Cmd, Invocation, Parsed};
use crate::log::escaped;
use crate::outcome::{exit, wait_step, Wait};
use std::io::Write as _;

/// Seconds between two looks.
pub const POLL_S: f64 = 0.25;
/// Looks in a row without an answer before giving up.
pub const UNANSWERED_MAX: u32 = 40;
/// Milliseconds between two looks of `logs -f`.
pub const FOLLOW_POLL_MS: u64 = 300;

/// `berthctl`'s exit codes (but `update --wait`'s: [`crate::outcome::exit`]).
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

/// Write `text` to stdout; false once stdout is gone (then stop).
pub fn emit(text: &str) -> bool {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).and_then(|()| out.flush()).is_ok()
}

/// A line on stderr (never a panic if stderr is gone).
fn warn(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// `berthctl ARGS...`: the process exit code.
pub fn run(args: &[String], socket: &str) -> u8 {
    let inv = match crate::ctlargs::parse(args) {
        Parsed::Run(inv) => inv,
        Parsed::Help(text) => {
            emit(&text);
            return code::OK;
        }
        Parsed::Version => {
            emit(&format!("berth {}\n", env!("CARGO_PKG_VERSION")));
            return code::OK;
        }
        Parsed::Usage(text) => {
            warn(&text);
            return code::USAGE;
        }
    };
    let name = |n: &str| crate::outcome::cut(n);
    match &inv.cmd {
        Cmd::Status => status(inv.json, socket),
        Cmd::Release => release(inv.json, socket),
        Cmd::Update(path) => update(path, inv.wait, socket),
        Cmd::Logs(n) => logs(n, &inv, socket),
        Cmd::Events => logs(crate::logstore::BERTH, &inv, socket),
        Cmd::Start(n) => simple(Command::Start(name(n)), socket),
        Cmd::Stop(n) => simple(Command::Stop(name(n)), socket),
        Cmd::Restart(n) => simple(Command::Restart(name(n)), socket),
        Cmd::Commit => simple(Command::Commit, socket),
        Cmd::Rollback => simple(Command::Rollback, socket),
        Cmd::Wedge(s) => simple(Command::Wedge(*s), socket),
    }
}

/// One request; a failure is said on stderr and becomes its exit code.
fn ask(socket: &str, cmd: Command) -> Result<Response, u8> {
    match crate::ctlsock::try_call(socket, cmd) {
        Ok(Response::Error(e)) => {
            warn(&format!("berthctl: {}", escaped(&e)));
            Err(code::REFUSED)
        }
        Ok(r) => Ok(r),
        Err(e) => {
            let hint = if e.unreachable { " (is berth running, and are you root?)" } else { "" };
            warn(&format!("berthctl: {}{hint}", escaped(&e.text)));
            Err(code::UNREACHABLE)
        }
    }
}

/// A reply of the wrong kind (a berth of another build): no usable answer.
fn unexpected() -> u8 {
    warn("berthctl: unexpected reply");
    code::UNREACHABLE
}

/// `start`, `stop`, `restart`, `commit`, `rollback`, `debug wedge`.
fn simple(cmd: Command, socket: &str) -> u8 {
    match ask(socket, cmd) {
        Ok(Response::Message(m)) => {
            emit(&format!("{}\n", escaped(&m)));
            code::OK
        }
        Ok(Response::Done) => code::OK,
        Ok(_) => unexpected(),
        Err(c) => c,
    }
}

/// `status [--json]`, exit code by state.
fn status(json: bool, socket: &str) -> u8 {
    let reply = match ask(socket, Command::Status) {
        Ok(Response::Status(r)) => r,
        Ok(_) => return unexpected(),
        Err(c) => return c,
    };
    if json {
        emit(&String::from_utf8_lossy(&crate::ctlstatus::json(&reply)));
    } else {
        emit(&crate::ctlstatus::text(&reply));
    }
    crate::ctlstatus::state_code(&reply)
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
fn release(json: bool, socket: &str) -> u8 {
    let r = match ask(socket, Command::Release) {
        Ok(Response::Release(r)) => r,
        Ok(_) => return unexpected(),
        Err(c) => return c,
    };
    if json {
        emit(&format!("{}\n", release_json(&r)));
    } else {
        emit(&release_text(&r));
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
pub fn update(path: &str, wait: bool, socket: &str) -> u8 {
    let mut p = heapless::String::new();
    if p.push_str(path).is_err() {
        warn(&format!("berthctl: the bundle path is longer than {} bytes", p.capacity()));
        return exit::USAGE;
    }
    let info = match crate::ctlsock::try_call(socket, Command::Update(p)) {
        Ok(Response::Update(info)) => info,
        Ok(Response::Error(e)) => {
            warn(&format!("berthctl: {}", escaped(&e)));
            return if wait { exit::REFUSED } else { code::REFUSED };
        }
        Ok(_) => {
            warn("berthctl: unexpected reply");
            return if wait { exit::OTHER } else { code::UNREACHABLE };
        }
        Err(e) => {
            warn(&format!("berthctl: {}", escaped(&e.text)));
            // With --wait, 4 means rolled back.
            return if wait { exit::OTHER } else { code::UNREACHABLE };
        }
    };
    emit(&format!("update {} staging {}\n", info.seq, escaped(&info.bundle)));
    if !wait {
        return exit::COMMITTED;
    }
    let mut shown = crate::outcome::Phase::Staging;
    let mut unanswered = 0;
    loop {
        std::thread::sleep(std::time::Duration::from_secs_f64(POLL_S));
        let kept = match crate::ctlsock::call(socket, Command::Release) {
            Ok(Response::Release(r)) => r.updates,
            other => {
                unanswered += 1;
                if unanswered >= UNANSWERED_MAX {
                    warn(&format!("berthctl: berth stopped answering while update {} was under way: {}", info.seq, escaped(&format!("{other:?}"))));
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
                    emit(&format!("{}\n", escaped(&u.line())));
                }
            }
            Wait::Exit(code) => {
                match mine {
                    Some(u) => {
                        emit(&format!("{}\n", escaped(&u.line())));
                    }
                    None => warn(&format!("berthctl: update {} is no longer known to berth", info.seq)),
                }
                return code;
            }
        }
    }
}

/// `logs NAME` / `events`: the last lines, then with `-f` new ones as they
/// come. Ends when stdout is gone.
fn logs(stream: &str, inv: &Invocation, socket: &str) -> u8 {
    use crate::control::LOG_LINES_MAX;
    let name: crate::control::Name = crate::outcome::cut(stream);
    let mut after = None;
    let mut max = inv.lines;
    let mut told_dropped = 0;
    loop {
        let (lines, next, dropped) = match ask(socket, Command::Logs { name: name.clone(), after, max }) {
            Ok(Response::Logs { lines, next, dropped }) => (lines, next, dropped),
            Ok(_) => return unexpected(),
            Err(c) => return c,
        };
        let mut text = String::new();
        for l in lines.iter() {
            text.push_str(&log_line(&name, l, inv.json));
        }
        if !text.is_empty() && !emit(&text) {
            return code::OK;
        }
        if dropped > told_dropped {
            warn(&format!("berthctl: {} lines of {} could not be kept (log quota or errors)", dropped - told_dropped, escaped(&name)));
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

/// One kept line as `logs` prints it: `SECONDS.MMM TEXT`, or with `--json`
/// an object; newline-terminated.
pub fn log_line(stream: &str, l: &crate::control::LogLine, json: bool) -> String {
    // Stored lines are escaped already; a berth of another build may not
    // have done it.
    let text = l.text.trim_end();
    if !json {
        return format!("{}.{:03} {}\n", l.t_ms / 1000, l.t_ms % 1000, escaped(text));
    }
    let s = crate::statusview::json_string;
    let mut out = Vec::new();
    out.extend_from_slice(b"{\"name\":");
    s(&mut out, stream);
    let _ = write!(out, ",\"seq\":{},\"t_ms\":{},\"text\":", l.seq, l.t_ms);
    s(&mut out, text);
    out.extend_from_slice(b"}\n");
    String::from_utf8_lossy(&out).into_owned()
}

/// `berthctl release --json`: one JSON object.
pub fn release_json(r: &ReleaseInfo) -> String {
    use std::io::Write as _;
    let s = crate::statusview::json_string;
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
mod tests {
    use super::*;

    #[test]
    fn release_json_carries_the_last_update() {
        let mut r = ReleaseInfo { version: 2, previous: Some(1), ..Default::default() };
        let _ = r.key_id.push_str("d91a539e64c726ab");
        let _ = r.phase.push_str("trial");
        let _ = r.rollbacks.push(crate::outcome::cut("rollback from 3 to 1 at boot 1: crash-loop (meter)"));
        let mut log = crate::outcome::Log::default();
        log.begin("/data/a.bundle");
        log.end(crate::outcome::Phase::Refused, "bundle", "bad magic");
        log.begin("/data/b.bundle");
        for u in log.all() {
            r.updates.push(u.clone()).unwrap();
        }
        let text = release_json(&r);
        assert!(text.starts_with("{\"version\":2,\"key_id\":\"d91a539e64c726ab\",\"phase\":\"trial\",\"previous\":1,\"rollbacks\":[\"rollback from 3 to 1 at boot 1: crash-loop (meter)\"],\"staging\":\"\",\"quarantined\":[],\"update\":{\"seq\":2,"), "{text}");
        assert!(text.contains("\"phase\":\"refused\",\"result\":\"failed\",\"cause\":\"bundle\",\"detail\":\"bad magic\"}"), "{text}");
        assert!(text.ends_with("\"phase\":\"staging\",\"result\":\"pending\",\"cause\":null,\"detail\":\"\"}]}"), "{text}");
        let none = release_json(&ReleaseInfo::default());
        assert!(none.ends_with(",\"update\":null,\"updates\":[]}"), "{none}");
    }

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn exit_codes_without_a_berth() {
        let missing = std::env::temp_dir().join(format!("berth-ctlclient-none-{}", std::process::id()));
        let sock = missing.to_string_lossy().into_owned();
        assert_eq!(run(&args("status"), &sock), code::UNREACHABLE);
        assert_eq!(run(&args("release --json"), &sock), code::UNREACHABLE);
        assert_eq!(run(&args("logs -f sensor"), &sock), code::UNREACHABLE);
        assert_eq!(run(&args("stop sensor"), &sock), code::UNREACHABLE);
        assert_eq!(run(&args("update /x.bundle"), &sock), code::UNREACHABLE);
        // With --wait, 4 is "rolled back": an unreachable berth is "other".
        assert_eq!(run(&args("update --wait /x.bundle"), &sock), exit::OTHER);
        assert_eq!(run(&args("status --jsn"), &sock), code::USAGE);
        assert_eq!(run(&args("status --help"), &sock), code::OK);
    }

    #[test]
    fn release_text_and_code_by_phase() {
        let mut r = ReleaseInfo { version: 2, previous: Some(1), ..Default::default() };
        let _ = r.key_id.push_str("d91a539e64c726ab");
        let _ = r.phase.push_str("trial");
        let _ = r.quarantined.push(crate::outcome::cut("quarantined \u{1b}]0;x\u{7}.bundle: bad magic"));
        assert_eq!(
            release_text(&r),
            "release 2 signed by key d91a539e64c726ab\nstate trial (previous release 1)\nquarantined \\x1b]0;x\\x07.bundle: bad magic\n"
        );
        assert_eq!(release_code(&r), code::NOT_READY);
        r.phase = crate::outcome::cut("committed");
        assert_eq!(release_code(&r), code::OK);
        let rec = ReleaseInfo { phase: crate::outcome::cut("recovery"), recovery: crate::outcome::cut("signature\u{202e}"), ..Default::default() };
        assert_eq!(release_text(&rec), "no release runs (recovery): signature\\u202e\nstate recovery\n");
        assert_eq!(release_code(&rec), code::DEGRADED);
        assert_eq!(release_code(&ReleaseInfo::default()), code::OK);
    }

    #[test]
    fn log_lines_as_text_and_json() {
        let l = crate::control::LogLine { seq: 7, t_ms: 12_345, text: crate::outcome::cut("a \"q\" \u{1b}[2J\u{2066}é\n") };
        assert_eq!(log_line("sensor", &l, false), "12.345 a \"q\" \\x1b[2J\\u2066é\n");
        assert_eq!(log_line("sensor", &l, true), "{\"name\":\"sensor\",\"seq\":7,\"t_ms\":12345,\"text\":\"a \\\"q\\\" \\u001b[2J\\u2066\\u00e9\"}\n");
    }

    /// A stand-in berth: answers each connection with the next of
    /// `answers`, then removes its socket; returns the requests it got.
    fn fake_berth(tag: &str, answers: Vec<Response>) -> (String, std::thread::JoinHandle<Vec<Command>>) {
        use crate::ctlsock::{CtlSocket, Input};
        let path = std::env::temp_dir().join(format!("berth-ctlclient-{}-{tag}", std::process::id())).to_string_lossy().into_owned();
        let mut s = CtlSocket::bind(&path).unwrap();
        let p = path.clone();
        let server = std::thread::spawn(move || {
            let mut got = Vec::new();
            for answer in answers {
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
                let mut slot = None;
                while std::time::Instant::now() < deadline {
                    slot = slot.or_else(|| s.accept(0.0));
                    if let Some(i) = slot {
                        if let Input::Request(c) = s.read(i) {
                            s.reply(i, &answer);
                            got.push(c);
                            break;
                        }
                    }
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
            }
            let _ = std::fs::remove_file(&p);
            got
        });
        (path, server)
    }

    fn status_of(states: &[(&str, &str, bool)], phase: &str) -> Response {
        let release = Some(crate::control::StatusRelease { version: 1, phase: crate::outcome::cut(phase), ..Default::default() });
        let mut r = crate::control::StatusReply { release, ..Default::default() };
        for (name, state, ready) in states {
            let e = crate::control::ContainerStatus {
                name: crate::outcome::cut(name),
                kind: crate::outcome::cut("container"),
                state: crate::outcome::cut(state),
                pid: 0,
                uptime_ms: 0,
                restarts: 0,
                last_exit: crate::outcome::cut("-"),
                ready: *ready,
                memory: 0,
                note: heapless::String::new(),
                layers: crate::control::Layers::default(),
                started_ms: None,
            };
            r.entries.push(e).unwrap();
        }
        Response::Status(Box::new(r))
    }

    #[test]
    fn status_exits_by_the_state_berth_answered() {
        let answers = vec![
            status_of(&[("sensor", "running", true)], "committed"),
            status_of(&[("sensor", "running", true), ("flaky", "failed", false)], "committed"),
            status_of(&[("sensor", "running", true)], "trial"),
            status_of(&[("sensor", "starting", false)], "committed"),
            crate::control::error("no container or service named x"),
            Response::Done,
        ];
        let (sock, server) = fake_berth("status", answers);
        assert_eq!(run(&args("status"), &sock), code::OK);
        assert_eq!(run(&args("status --json"), &sock), code::DEGRADED);
        assert_eq!(run(&args("status"), &sock), code::NOT_READY);
        assert_eq!(run(&args("status --json"), &sock), code::NOT_READY);
        assert_eq!(run(&args("stop x"), &sock), code::REFUSED);
        assert_eq!(run(&args("status"), &sock), code::UNREACHABLE, "an unexpected reply");
        assert_eq!(server.join().unwrap().len(), 6);
    }

    #[test]
    fn logs_follow_asks_after_the_last_line_shown() {
        let line = |seq: u64| crate::control::LogLine { seq, t_ms: seq * 10, text: crate::outcome::cut("tick") };
        let logs = |seqs: &[u64], next: u64| {
            let mut lines = heapless::Vec::new();
            for s in seqs {
                lines.push(line(*s)).unwrap();
            }
            Response::Logs { lines: Box::new(lines), next, dropped: 0 }
        };
        let (sock, server) = fake_berth("follow", vec![logs(&[4, 5], 6), logs(&[6], 7), logs(&[], 7)]);
        // After the third answer the socket is gone: the follow ends there.
        assert_eq!(run(&args("logs -n 2 --follow sensor"), &sock), code::UNREACHABLE);
        let name: crate::control::Name = crate::outcome::cut("sensor");
        let max = crate::control::LOG_LINES_MAX as u16;
        assert_eq!(
            server.join().unwrap(),
            [
                Command::Logs { name: name.clone(), after: None, max: 2 },
                Command::Logs { name: name.clone(), after: Some(6), max },
                Command::Logs { name, after: Some(7), max },
            ]
        );
    }
}
