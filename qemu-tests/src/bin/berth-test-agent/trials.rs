//! The trial scenarios' side in the guest (`qemu_tests::trials`): drive
//! `berthctl update [--wait]`, `commit` and `rollback` with the trial
//! bundles under `/data/test/`, and report what berthctl says and exits
//! with; the harness judges berth's events and the ids.

use super::{act, apply_to_trial, apply_wait, ctl, ctl_code, has_rollback, report, running_rows, wait_release, BUNDLES};

/// The status file, as berth writes it.
const STATUS_JSON: &str = "/run/berth/status/status.json";

pub fn run(mode: &str) {
    running_rows();
    if mode == "trial-judged" {
        judged();
    } else {
        control();
    }
    act("poweroff", libc::SIGTERM);
}

/// The last line of berthctl's output (`update N phase=...`).
fn last(text: &str) -> &str {
    text.lines().last().unwrap_or("")
}

/// Three updates, each waited for: a one-shot failure (rolled back, 4), a
/// trial that never commits (rolled back at its deadline, 4), a one-shot
/// task that succeeds (committed, 0); then `release --json` and the status
/// file carry the last one, and `berthctl status --json` lists the same
/// entries in the same states as the status file.
fn judged() {
    let (code, text) = apply_wait("trial-fail");
    let l = last(&text);
    let ok = code == Some(4) && l.contains(" phase=rolled-back result=failed release=2 cause=container-failed ") && l.ends_with(" detail=task");
    report("wait-rolled-back", ok, &format!("exit {code:?}: {}", text.replace('\n', " | ")));
    let (code, text) = apply_wait("trial-deadline");
    let l = last(&text);
    let ok = code == Some(4) && l.contains(" phase=rolled-back result=failed release=3 cause=trial-timeout ");
    report("wait-timeout", ok, &format!("exit {code:?}: {}", text.replace('\n', " | ")));
    let (code, text) = apply_wait("trial-oneshot");
    let ok = code == Some(0) && last(&text).contains(" phase=committed result=ok release=4 ");
    report("wait-committed", ok, &format!("exit {code:?}: {}", text.replace('\n', " | ")));
    let (ok, json) = ctl(&["release", "--json"]);
    report("release-json", ok && json.contains("\"phase\":\"committed\",\"result\":\"ok\""), &json);
    // The status file is rendered at most every 0.25 s: give it a moment.
    std::thread::sleep(std::time::Duration::from_millis(600));
    match std::fs::read_to_string(STATUS_JSON) {
        Ok(s) => report("status-json", s.contains("\"phase\":\"committed\",\"result\":\"ok\""), s.trim_end()),
        Err(e) => report("status-json", false, &format!("{STATUS_JSON}: {e}")),
    }
    let (pass, detail) = super::status_json_matches();
    report("status-json-ctl", pass, &detail);
}

/// `commit` and `rollback` without a trial (errors), `update` answered at
/// once, `rollback` and `commit` of a release on trial (its window is 10
/// minutes), and `update --wait` of a bundle that is refused (3).
fn control() {
    for cmd in ["commit", "rollback"] {
        let (code, text) = ctl_code(&[cmd]);
        let ok = code == Some(1) && text.starts_with("berthctl: no release is on trial (release 1 is committed");
        report(&format!("{cmd}-no-trial"), ok, &format!("exit {code:?}: {text}"));
    }
    let bundle = format!("{BUNDLES}/trial-window.bundle");
    let (code, text) = ctl_code(&["update", &bundle]);
    report("update-at-once", code == Some(0) && text == format!("update 1 staging {bundle}"), &format!("exit {code:?}: {text}"));
    let (ok, text) = wait_release(|r| r.version == 5 && r.state == "trial");
    report("on-trial", ok, &text);
    let (ok, text) = ctl(&["rollback"]);
    report("rollback-requested", ok && text == "rolled back from release 5 to 1", &text);
    let (ok, text) = wait_release(|r| r.version == 1 && r.state == "committed" && has_rollback(r, "from 5 to 1", "requested"));
    report("rollback-recorded", ok, &text);
    let (ok, text) = apply_to_trial("trial-window");
    report("on-trial-again", ok, &text);
    let (ok, text) = ctl(&["commit"]);
    report("commit-requested", ok && text == "release 5 committed", &text);
    let (ok, text) = wait_release(|r| r.version == 5 && r.state == "committed");
    report("commit-recorded", ok && text.contains(" phase=committed result=ok release=5 "), &text);
    let (code, text) = ctl_code(&["update", "--wait", &format!("{BUNDLES}/refused/not-newer.bundle")]);
    let ok = code == Some(3) && last(&text).contains(" phase=refused result=failed release=- cause=bundle ");
    report("wait-refused", ok, &format!("exit {code:?}: {}", text.replace('\n', " | ")));
}
