//! The `recovery` scenario's side in the guest (`qemu_tests::recovery`):
//! with every release corrupt, berth answers from its recovery state; once
//! the harness has pushed a repair, the repaired release is committed.

use super::{ctl, report};
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

/// `berthctl release` (text and JSON) and the status file show the
/// recovery state and its reason: the rejected signature.
fn recovery_shown() {
    let (ok_text, text) = ctl(&["release"]);
    let (ok_json, json) = ctl(&["release", "--json"]);
    let status = wait_for_status("\"phase\":\"recovery\"", Duration::from_secs(10));
    let ok = ok_text
        && text.starts_with("no release runs (recovery): release signature does not verify with key ")
        && ok_json
        && json.contains("\"phase\":\"recovery\"")
        && json.contains("\"recovery\":\"release signature does not verify")
        && status.contains("\"release\":{\"version\":0,\"key_id\":\"\",\"phase\":\"recovery\"}");
    report("recovery", ok, &format!("release: {text} | json: {json} | status: {status}"));
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
