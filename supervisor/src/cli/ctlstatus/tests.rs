//! `status`'s table, document and exit code, from made-up replies.

use super::*;
use crate::supervise::control::{Layers, LoopStalls, StatusRelease};
use crate::supervise::outcome::cut;

fn entry(name: &str, kind: &str, state: &str, ready: bool) -> ContainerStatus {
    let running = state == "running";
    ContainerStatus {
        name: cut(name),
        kind: cut(kind),
        state: cut(state),
        pid: if running { 42 } else { 0 },
        uptime_ms: if running { 1500 } else { 0 },
        restarts: 1,
        last_exit: cut("-"),
        ready,
        memory: if running && kind == "container" { 2 << 20 } else { 0 },
        note: heapless::String::new(),
        layers: if kind == "container" {
            Layers { uid_base: 100_000, seccomp: cut("1a2b3c4d"), caps: 0, device_rules: 9, landlock_abi: 6, apparmor: cut("none") }
        } else {
            Layers::default()
        },
        started_ms: running.then_some(5123),
    }
}

fn reply(entries: &[ContainerStatus], phase: &str) -> StatusReply {
    let mut r = StatusReply {
        berth: cut("0.1.0"),
        release: Some(StatusRelease { version: 3, key_id: cut("d91a539e64c726ab"), phase: cut(phase) }),
        stalls: LoopStalls { handler_us: 2100, handler: cut("tick"), pet_late_us: 400, ..Default::default() },
        ..Default::default()
    };
    for e in entries {
        r.entries.push(e.clone()).unwrap();
    }
    r
}

#[test]
fn exit_code_by_state() {
    let up = entry("sensor", "container", "running", true);
    let net = entry("net", "service", "stopped", false);
    assert_eq!(state_code(&reply(&[up.clone(), net.clone()], "committed")), code::OK);
    assert_eq!(state_code(&reply(std::slice::from_ref(&up), "unknown")), code::OK);
    assert_eq!(state_code(&reply(&[], "committed")), code::OK);
    assert_eq!(state_code(&reply(std::slice::from_ref(&up), "trial")), code::NOT_READY);
    for state in ["waiting", "starting", "updating", "stopping", "something-new"] {
        assert_eq!(state_code(&reply(&[up.clone(), entry("b", "container", state, false)], "committed")), code::NOT_READY, "{state}");
    }
    assert_eq!(state_code(&reply(&[entry("b", "container", "running", false)], "committed")), code::NOT_READY);
    // Degraded wins over not ready, in any order.
    let failed = entry("flaky", "container", "failed", false);
    assert_eq!(state_code(&reply(&[entry("b", "container", "starting", false), failed.clone()], "trial")), code::DEGRADED);
    assert_eq!(state_code(&reply(&[failed, up.clone()], "committed")), code::DEGRADED);
    assert_eq!(state_code(&reply(&[entry("net", "service", "failed", false)], "committed")), code::DEGRADED);
    let mut recovery = reply(&[], "recovery");
    assert_eq!(state_code(&recovery), code::DEGRADED);
    recovery.release = None;
    assert_eq!(state_code(&recovery), code::OK);
}

#[test]
fn services_show_only_what_applies() {
    let text = text(&reply(&[entry("sensor", "container", "running", true), entry("net", "service", "running", true)], "committed"));
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("NAME "), "{text}");
    assert!(lines[1].starts_with("sensor ") && lines[1].contains(" 2048K "), "{text}");
    assert_eq!(lines[2], "  layers: userns=100000 seccomp=1a2b3c4d caps=none device_rules=9 landlock=abi6 apparmor=none");
    assert!(lines[3].starts_with("net ") && lines[3].split_whitespace().nth(7) == Some("-"), "{text}");
    assert!(!text.contains("-K") && !text.contains("seccomp= ") && !text.ends_with("apparmor=\n"), "{text}");
    assert_eq!(lines[4], "release: 3 committed, key d91a539e64c726ab");
    assert!(lines[5].starts_with("loop: longest handler 2.1 ms (tick), watchdog pet late by 0.4 ms"), "{text}");
    assert_eq!(lines.len(), 6);
    // The harness reads rows by whitespace: NAME KIND STATE READY PID.
    let w: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(&w[..5], ["sensor", "container", "running", "yes", "42"]);
    let stopped = text_of_one(entry("flaky", "container", "stopped", false));
    let w: Vec<&str> = stopped.split_whitespace().collect();
    assert_eq!(&w[..9], ["flaky", "container", "stopped", "no", "-", "-", "1", "-", "-"]);
}

fn text_of_one(e: ContainerStatus) -> String {
    text(&reply(&[e], "committed")).lines().nth(1).unwrap_or_default().to_string()
}

#[test]
fn device_text_is_escaped_in_the_table() {
    let mut e = entry("x\u{1b}[31m", "container", "running", true);
    e.note = cut("ok\u{202e}gnp.exe\u{9b}");
    e.layers.apparmor = heapless::String::new();
    let mut r = reply(&[e], "trial");
    r.staging = cut("staging /data/\u{7}a.bundle");
    let text = text(&r);
    assert!(!text.chars().any(|c| crate::common::log::is_active(c) && c != '\n'), "{text:?}");
    assert!(text.contains("x\\x1b[31m ") && text.contains("ok\\u202egnp.exe\\u009b"), "{text}");
    assert!(text.contains("apparmor=-\n") && text.contains("staging /data/\\x07a.bundle\n"), "{text}");
}

#[test]
fn json_is_the_status_files_document() {
    let mut log = crate::supervise::outcome::Log::default();
    log.begin("/data/v2.bundle");
    let mut r = reply(&[entry("sensor", "container", "running", true), entry("flaky", "container", "waiting", false)], "trial");
    r.update = log.last().cloned();
    r.staging = cut("staging");
    let ours = String::from_utf8(json(&r)).unwrap();
    // What berth writes to status.json for the same state.
    use crate::supervise::statusview as sv;
    let entries = [
        sv::Entry { name: "sensor", kind: "container", state: "running", ready: true, restarts: 1, last_exit: "-", started_ms: Some(5123) },
        sv::Entry { name: "flaky", kind: "container", state: "waiting", ready: false, restarts: 1, last_exit: "-", started_ms: None },
    ];
    let lp = sv::Loop { handler_max_ms: 2.1, handler: "tick", pet_late_max_ms: 0.4 };
    let mut file = Vec::new();
    sv::render(&mut file, Some(&sv::Release { version: 3, key_id: "d91a539e64c726ab", phase: "trial" }), &entries, &lp, true, log.last());
    assert_eq!(ours, String::from_utf8(file).unwrap());
    let none = String::from_utf8(json(&StatusReply::default())).unwrap();
    assert!(none.starts_with("{\"format\":1,\"berth\":\"\",\"release\":null,\"containers\":[],"), "{none}");
}

#[test]
fn json_escapes_what_came_from_the_device() {
    let mut e = entry("a\"b\\c\u{1}é\u{202e}", "container", "running", true);
    e.last_exit = cut("\u{85}");
    let text = String::from_utf8(json(&reply(&[e], "committed"))).unwrap();
    assert!(text.contains(r#""name":"a\"b\\c\u0001\u00e9\u202e""#), "{text}");
    assert!(text.contains(r#""last_exit":"\u0085""#), "{text}");
    assert!(text.is_ascii() && !text.trim_end().contains('\n'));
}
