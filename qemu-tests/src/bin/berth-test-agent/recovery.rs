//! The `recovery` scenario's side in the guest (`qemu_tests::recovery`):
//! with every release corrupt, berth answers from its recovery state; once
//! the harness has pushed a repair, the repaired release is committed.

use super::{ctl, ctl_code, report};
use std::time::{Duration, Instant};

/// The status file, as berth writes it.
const STATUS_JSON: &str = "/run/berth/status/status.json";
/// How long the repair may take to be committed (push, staging, switch,
/// the 5 s commit window).
const REPAIR_WAIT: Duration = Duration::from_secs(120);

pub fn run() {
    recovery_shown();
    repaired();
}

/// `berthctl release` (text and JSON), `berthctl status --json` and the
/// status file show the recovery state and its reason: the rejected
/// signature; `release` and `status` exit 1 (degraded).
fn recovery_shown() {
    let (code_text, text) = ctl_code(&["release"]);
    let (code_json, json) = ctl_code(&["release", "--json"]);
    let status = wait_for_status("\"phase\":\"recovery\"", Duration::from_secs(10));
    let (code_status, status_ctl) = ctl_code(&["status", "--json"]);
    let shown = "\"release\":{\"version\":0,\"key_id\":\"\",\"phase\":\"recovery\"}";
    let ok = code_text == Some(1)
        && text.starts_with("no release runs (recovery): release signature does not verify with key ")
        && code_json == Some(1)
        && json.contains("\"phase\":\"recovery\"")
        && json.contains("\"recovery\":\"release signature does not verify")
        && status.contains(shown)
        && code_status == Some(1)
        && status_ctl.contains(shown);
    let codes = format!("exit {code_text:?}/{code_json:?}/{code_status:?}");
    report("recovery", ok, &format!("{codes} release: {text} | json: {json} | status: {status} | status --json: {status_ctl}"));
}

/// The status file once it contains `want` (or as last read).
fn wait_for_status(want: &str, limit: Duration) -> String {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(STATUS_JSON).unwrap_or_default();
        if text.contains(want) || start.elapsed() > limit {
            return text;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// After the push: release 2 committed, no recovery field any more.
fn repaired() {
    let start = Instant::now();
    let (ok, text) = loop {
        let (ok, text) = ctl(&["release"]);
        let done = ok && text.starts_with("release 2 signed by key ") && text.contains("\nstate committed");
        if done || start.elapsed() > REPAIR_WAIT {
            break (done, text);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let (_, json) = ctl(&["release", "--json"]);
    let ok = ok && json.contains("\"phase\":\"committed\"") && !json.contains("\"recovery\"");
    report("recovered", ok, &format!("release: {} | json: {json}", text.replace('\n', " | ")));
    super::say("AGENT done");
}
