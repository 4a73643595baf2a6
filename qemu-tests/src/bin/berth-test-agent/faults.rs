//! The guest side of `qemu_tests::faults`: each mode drives one update
//! whose record write fails (the kernel command line arms berth's
//! `berth.fail=` hook) or whose trial fails its readiness or health, and
//! reports what berthctl answers and what runs afterwards. The harness
//! judges berth's events.

use super::{act, apply_to_trial, apply_wait, ctl, ctl_code, has_rollback, pid_of, report, rows_text, running_rows, wait_release, wait_rows};
use std::path::Path;

/// The rollback-reboot mode's mark that its first boot is over.
const REBOOTED: &str = "/data/.agent-fault-rebooted";
/// The containers of release 1 (and of every release here).
const NAMES: [&str; 2] = ["meter", "sensor"];

pub fn run(mode: &str) {
    if mode == "fault-map-rollback" {
        return map_rollback();
    }
    if mode == "fault-rollback-reboot" && Path::new(REBOOTED).exists() {
        rolled_back_by_boot();
        act("poweroff", libc::SIGTERM);
        return;
    }
    let before = running_rows();
    match mode {
        "fault-trial-write" => trial_write(&before),
        "fault-commit-write" => commit_write(),
        "fault-commit-operator" => commit_operator(),
        "fault-rollback-write" => rollback_write(),
        "fault-rollback-reboot" => return rollback_reboot(),
        "trial-unready" => judged("trial-unready", 7, "readiness-timeout"),
        _ => judged("trial-unhealthy", 8, "health-check"),
    }
    act("poweroff", libc::SIGTERM);
}

/// The last line of berthctl's output.
fn last(text: &str) -> &str {
    text.lines().last().unwrap_or("")
}

/// Both containers running and ready: the rows' text (`NAME:STATE:PID`),
/// and whether they are.
fn serving() -> (bool, String) {
    let rows = wait_rows(|rows| rows.len() == NAMES.len() && super::all_running(rows, &NAMES));
    (rows.len() == NAMES.len() && super::all_running(&rows, &NAMES), rows_text(&rows))
}

/// The trial's record write fails: the update is refused (exit 3), release
/// 1 runs on with the same processes; applied again, it goes on trial and
/// is committed by request.
fn trial_write(before: &[qemu_tests::updates::Row]) {
    let (code, text) = apply_wait("trial-window");
    let ok = code == Some(3) && last(&text).contains(" phase=refused result=failed ") && last(&text).contains(" cause=device ");
    report("refused", ok, &format!("exit {code:?}: {}", text.replace('\n', " | ")));
    let (ok, text) = wait_release(|r| r.version == 1 && r.state == "committed");
    report("release-1", ok, &text);
    let (up, rows) = serving();
    let after = wait_rows(|_| true);
    let same = NAMES.iter().all(|n| pid_of(before, n).is_some() && pid_of(before, n) == pid_of(&after, n));
    report("kept-running", up && same, &format!("before: {} after: {rows}", rows_text(before)));
    let (ok, text) = apply_to_trial("trial-window");
    report("on-trial", ok, &text);
    let (ok, text) = ctl(&["commit"]);
    report("commit-requested", ok && text == "release 5 committed", &text);
}

/// `berthctl commit` on a release with a 10-minute window, whose record
/// write fails once: the operator is told it is tried again in 2 s, and
/// it is, long before the window would commit it.
fn commit_operator() {
    let (ok, text) = apply_to_trial("trial-window");
    report("on-trial", ok, &text);
    let (ok, text) = ctl(&["commit"]);
    let told = !ok && text.contains("the commit could not be recorded: ") && text.contains("; it is tried again in 2 s");
    report("commit-failed", told, &text);
    let (ok, text) = wait_release(|r| r.version == 5 && r.state == "committed");
    report("committed", ok, &text);
}

/// The commit's record write fails once: tried again by the window, and
/// `update --wait` sees it committed (exit 0).
fn commit_write() {
    let (code, text) = apply_wait("v2");
    report(
        "committed",
        code == Some(0) && last(&text).contains(" phase=committed result=ok release=2 "),
        &format!("exit {code:?}: {}", text.replace('\n', " | ")),
    );
    let (ok, rows) = serving();
    report("serving", ok, &rows);
}

/// The rollback's record write fails once: tried again at once, and the
/// operator's rollback succeeds.
fn rollback_write() {
    let (ok, text) = apply_to_trial("trial-window");
    report("on-trial", ok, &text);
    let (ok, text) = ctl(&["rollback"]);
    report("rollback-requested", ok && text == "rolled back from release 5 to 1", &text);
    let (ok, text) = wait_release(|r| r.version == 1 && r.state == "committed" && has_rollback(r, "from 5 to 1", "requested"));
    report("rolled-back", ok, &text);
    let (ok, rows) = serving();
    report("serving", ok, &rows);
}

/// Every rollback write fails: berth says so and reboots (the agent marks
/// the boot first; the reboot comes from berth).
fn rollback_reboot() {
    let (ok, text) = apply_to_trial("trial-window");
    report("on-trial", ok, &text);
    let marked = super::write_synced(REBOOTED, b"1").and_then(|()| std::fs::File::open(super::DATA).and_then(|d| d.sync_all()).map_err(|e| e.to_string()));
    if let Err(e) = marked {
        report("mark", false, &format!("{REBOOTED}: {e}"));
    }
    let (code, text) = ctl_code(&["rollback"]);
    let ok = code == Some(1) && text.starts_with("berthctl: the rollback could not be recorded (") && text.ends_with("); rebooting, the boot rolls back");
    report("rollback-refused", ok, &format!("exit {code:?}: {text}"));
    // berth reboots; if it does not, the harness's wait for the reboot
    // fails the case.
}

/// The boot after: release 1, committed, the rollback recorded by the boot.
fn rolled_back_by_boot() {
    let (ok, text) = wait_release(|r| r.version == 1 && r.state == "committed" && has_rollback(r, "from 5 to 1", "reboot-during-trial"));
    report("rolled-back-by-boot", ok, &text);
    let (ok, rows) = serving();
    report("serving", ok, &rows);
}

/// The map-rollback mode's progress across its three boots.
const MAP_STAGE: &str = "/data/.agent-fault-map-stage";

/// Mark the next boot's stage, durably.
fn mark(stage: &str) {
    let marked =
        super::write_synced(MAP_STAGE, stage.as_bytes()).and_then(|()| std::fs::File::open(super::DATA).and_then(|d| d.sync_all()).map_err(|e| e.to_string()));
    if let Err(e) = marked {
        report("mark", false, &format!("{MAP_STAGE}: {e}"));
    }
}

/// Release 9 switches by rebooting; on trial in the next boot it is rolled
/// back by request, and the switch back cannot map release 1's image:
/// berth reboots; the third boot runs release 1 with the rollback recorded.
fn map_rollback() {
    match std::fs::read_to_string(MAP_STAGE).unwrap_or_default().trim() {
        "" => {
            mark("1");
            let (ok, text) = ctl(&["update", &format!("{}/reboot-swap.bundle", super::BUNDLES)]);
            report("update-requested", ok, &text);
            // berth reboots into release 9.
        }
        "1" => {
            let (ok, text) = wait_release(|r| r.version == 9 && r.state == "trial");
            report("on-trial", ok, &text);
            mark("2");
            let (ok, text) = ctl(&["rollback"]);
            report("rollback-requested", ok && text == "rolled back from release 9 to 1", &text);
            // berth reboots: release 1's image cannot be mapped.
        }
        _ => {
            let (ok, text) = wait_release(|r| r.version == 1 && r.state == "committed" && has_rollback(r, "from 9 to 1", "requested"));
            report("rolled-back", ok, &text);
            let (ok, rows) = serving();
            report("serving", ok, &rows);
            act("poweroff", libc::SIGTERM);
        }
    }
}

/// A release whose changed `sensor` fails its trial by `cause`:
/// `update --wait` exits 4 naming it, and release 1 serves again.
fn judged(bundle: &str, version: u64, cause: &str) {
    let (code, text) = apply_wait(bundle);
    let l = last(&text);
    let ok = code == Some(4) && l.contains(&format!(" phase=rolled-back result=failed release={version} cause={cause} ")) && l.ends_with(" detail=sensor");
    report("rolled-back", ok, &format!("exit {code:?}: {}", text.replace('\n', " | ")));
    let (ok, text) =
        wait_release(|r| r.version == 1 && r.state == "committed" && has_rollback(r, &format!("from {version} to 1"), &format!("{cause} (sensor)")));
    report("release-1", ok, &text);
    let (ok, rows) = serving();
    report("serving", ok, &rows);
}
