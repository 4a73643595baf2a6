//! berthctl against no berth and against a stand-in one: exit codes,
//! what it prints, how it follows.

use super::*;

#[test]
fn release_json_carries_the_last_update() {
    let mut r = ReleaseInfo { version: 2, previous: Some(1), ..Default::default() };
    let _ = r.key_id.push_str("d91a539e64c726ab");
    let _ = r.phase.push_str("trial");
    let _ = r.rollbacks.push(crate::supervise::outcome::cut("rollback from 3 to 1 at boot 1: crash-loop (meter)"));
    let mut log = crate::supervise::outcome::Log::default();
    log.begin("/data/a.bundle");
    log.end(crate::supervise::outcome::Phase::Refused, "bundle", "bad magic");
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

/// `berthctl LINE` against `sock`: exit code, stdout, stderr.
fn ctl(line: &str, sock: &str) -> (u8, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run_with(&args(line), sock, &mut Io { out: &mut out, err: &mut err });
    (code, String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
}

fn code_of(line: &str, sock: &str) -> u8 {
    ctl(line, sock).0
}

#[test]
fn exit_codes_without_a_berth() {
    let missing = std::env::temp_dir().join(format!("berth-ctlclient-none-{}", std::process::id()));
    let sock = missing.to_string_lossy().into_owned();
    assert_eq!(code_of("status", &sock), code::UNREACHABLE);
    assert_eq!(code_of("release --json", &sock), code::UNREACHABLE);
    assert_eq!(code_of("logs -f sensor", &sock), code::UNREACHABLE);
    assert_eq!(code_of("stop sensor", &sock), code::UNREACHABLE);
    assert_eq!(code_of("update /x.bundle", &sock), code::UNREACHABLE);
    // With --wait, 4 is "rolled back": an unreachable berth is "other".
    assert_eq!(code_of("update --wait /x.bundle", &sock), exit::OTHER);
    let (c, out, err) = ctl("status", &sock);
    assert_eq!((c, out.as_str()), (code::UNREACHABLE, ""));
    assert!(err.starts_with("berthctl: ") && err.ends_with("(is berth running, and are you root?)\n"), "{err}");
    let (c, out, err) = ctl("status --jsn", &sock);
    assert_eq!((c, out.as_str(), err.as_str()), (code::USAGE, "", "berthctl status: unknown option '--jsn'\n(see `berthctl status --help`)\n"));
    // Help goes to stdout, exit 0.
    let (c, out, err) = ctl("status --help", &sock);
    assert!(c == code::OK && out.starts_with("usage: berthctl status [--json]\n") && err.is_empty(), "{out}");
    let (c, out, _) = ctl("help", &sock);
    assert!(c == code::OK && out.starts_with("usage: berthctl COMMAND"), "{out}");
    let (c, out, _) = ctl("--version", &sock);
    assert_eq!((c, out), (code::OK, format!("berth {}\n", env!("CARGO_PKG_VERSION"))));
}

#[test]
fn release_text_and_code_by_phase() {
    let mut r = ReleaseInfo { version: 2, previous: Some(1), ..Default::default() };
    let _ = r.key_id.push_str("d91a539e64c726ab");
    let _ = r.phase.push_str("trial");
    let _ = r.quarantined.push(crate::supervise::outcome::cut("quarantined \u{1b}]0;x\u{7}.bundle: bad magic"));
    assert_eq!(release_text(&r), "release 2 signed by key d91a539e64c726ab\nstate trial (previous release 1)\nquarantined \\x1b]0;x\\x07.bundle: bad magic\n");
    assert_eq!(release_code(&r), code::NOT_READY);
    r.phase = crate::supervise::outcome::cut("committed");
    assert_eq!(release_code(&r), code::OK);
    let rec =
        ReleaseInfo { phase: crate::supervise::outcome::cut("recovery"), recovery: crate::supervise::outcome::cut("signature\u{202e}"), ..Default::default() };
    assert_eq!(release_text(&rec), "no release runs (recovery): signature\\u202e\nstate recovery\n");
    assert_eq!(release_code(&rec), code::DEGRADED);
    assert_eq!(release_code(&ReleaseInfo::default()), code::OK);
}

#[test]
fn log_lines_as_text_and_json() {
    let mut l =
        crate::supervise::control::LogLine { seq: 7, t_ms: 12_345, wall_ms: None, text: crate::supervise::outcome::cut("a \"q\" \u{1b}[2J\u{2066}é\n") };
    assert_eq!(log_line("sensor", &l, None, false), "12.345 - a \"q\" \\x1b[2J\\u2066é\n");
    assert_eq!(
        log_line("sensor", &l, None, true),
        "{\"name\":\"sensor\",\"seq\":7,\"t_ms\":12345,\"wall_ms\":null,\"boot_id\":null,\"text\":\"a \\\"q\\\" \\u001b[2J\\u2066\\u00e9\"}\n"
    );
    l.wall_ms = Some(1_765_143_273_123);
    let boot = Some("0f6c3c2e-5a1b-4c3d-9e8f-0123456789ab");
    assert_eq!(log_line("sensor", &l, boot, false), "12.345 2025-12-07T21:34:33.123Z a \"q\" \\x1b[2J\\u2066é\n");
    assert_eq!(
        log_line("sensor", &l, boot, true),
        "{\"name\":\"sensor\",\"seq\":7,\"t_ms\":12345,\"wall_ms\":1765143273123,\"boot_id\":\"0f6c3c2e-5a1b-4c3d-9e8f-0123456789ab\",\"text\":\"a \\\"q\\\" \\u001b[2J\\u2066\\u00e9\"}\n"
    );
}

/// A stand-in berth: answers each connection with the next of
/// `answers`, then removes its socket; returns the requests it got.
fn fake_berth(tag: &str, answers: Vec<Response>) -> (String, std::thread::JoinHandle<Vec<Command>>) {
    use crate::supervise::ctlsock::{CtlSocket, Input};
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
    let release = Some(crate::supervise::control::StatusRelease { version: 1, phase: crate::supervise::outcome::cut(phase), ..Default::default() });
    let mut r = crate::supervise::control::StatusReply { release, ..Default::default() };
    for (name, state, ready) in states {
        let e = crate::supervise::control::ContainerStatus {
            name: crate::supervise::outcome::cut(name),
            kind: crate::supervise::outcome::cut("container"),
            state: crate::supervise::outcome::cut(state),
            pid: 0,
            uptime_ms: 0,
            restarts: 0,
            last_exit: crate::supervise::outcome::cut("-"),
            ready: *ready,
            memory: 0,
            note: heapless::String::new(),
            layers: crate::supervise::control::Layers::default(),
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
        crate::supervise::control::error("no container or service named x"),
        Response::Done,
    ];
    let (sock, server) = fake_berth("status", answers);
    let (c, out, _) = ctl("status", &sock);
    assert!(c == code::OK && out.starts_with("NAME ") && out.contains("\nsensor "), "{out}");
    let (c, out, _) = ctl("status --json", &sock);
    assert!(
        c == code::DEGRADED && out.starts_with("{\"format\":1,") && out.contains("\"name\":\"flaky\",\"kind\":\"container\",\"state\":\"failed\""),
        "{out}"
    );
    assert_eq!(code_of("status", &sock), code::NOT_READY);
    assert_eq!(code_of("status --json", &sock), code::NOT_READY);
    let (c, out, err) = ctl("stop x", &sock);
    assert_eq!((c, out.as_str(), err.as_str()), (code::REFUSED, "", "berthctl: no container or service named x\n"));
    assert_eq!(code_of("status", &sock), code::UNREACHABLE, "an unexpected reply");
    assert_eq!(server.join().unwrap().len(), 6);
}

#[test]
fn logs_follow_asks_after_the_last_line_shown() {
    let line = |seq: u64| crate::supervise::control::LogLine { seq, t_ms: seq * 10, wall_ms: None, text: crate::supervise::outcome::cut("tick") };
    let logs = |seqs: &[u64], next: u64| {
        let mut lines = heapless::Vec::new();
        for s in seqs {
            lines.push(line(*s)).unwrap();
        }
        Response::Logs { lines: Box::new(lines), next, dropped: 0, boot: crate::common::logstore::parse_boot_id("0f6c3c2e-5a1b-4c3d-9e8f-0123456789ab") }
    };
    let (sock, server) = fake_berth("follow", vec![logs(&[4, 5], 6), logs(&[6], 7), logs(&[], 7)]);
    // After the third answer the socket is gone: the follow ends there.
    let (c, out, _) = ctl("logs -n 2 --follow sensor", &sock);
    assert_eq!((c, out.as_str()), (code::UNREACHABLE, "#berth-log 2 boot=0f6c3c2e-5a1b-4c3d-9e8f-0123456789ab\n0.040 - tick\n0.050 - tick\n0.060 - tick\n"));
    let name: crate::supervise::control::Name = crate::supervise::outcome::cut("sensor");
    let max = crate::supervise::control::LOG_LINES_MAX as u16;
    assert_eq!(
        server.join().unwrap(),
        [
            Command::Logs { name: name.clone(), after: None, max: 2 },
            Command::Logs { name: name.clone(), after: Some(6), max },
            Command::Logs { name, after: Some(7), max },
        ]
    );
}

/// An output whose reader is gone (a closed pipe).
struct Gone;

impl std::io::Write for Gone {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        Err(std::io::ErrorKind::BrokenPipe.into())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Err(std::io::ErrorKind::BrokenPipe.into())
    }
}

#[test]
fn a_closed_output_ends_a_follow_quietly() {
    let mut lines = heapless::Vec::new();
    lines.push(crate::supervise::control::LogLine { seq: 1, t_ms: 1, wall_ms: None, text: crate::supervise::outcome::cut("x") }).unwrap();
    let (sock, server) = fake_berth("gone", vec![Response::Logs { lines: Box::new(lines), next: 2, dropped: 0, boot: None }]);
    let mut err = Vec::new();
    let code = run_with(&args("events -f"), &sock, &mut Io { out: &mut Gone, err: &mut err });
    assert_eq!((code, err.len()), (code::OK, 0));
    assert_eq!(server.join().unwrap().len(), 1);
}
