//! The guest side of `qemu_tests::releasepaths`: `add-remove` applies
//! release 6, rolls it back, applies and commits it again, and reports what
//! berthctl shows at each step; `inbox-queue` puts
//! several entries into the inbox at once and reports what is left once
//! berth has gone through them. The harness judges berth's events.

use super::{act, all_running, apply_to_trial, ctl, errno_desc, has_rollback, report, rows_text, running_rows, wait_release, wait_rows, BUNDLES, DATA, INBOX};
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

/// The removed container's cgroup (the board's cgroup root).
const METER_CGROUP: &str = "/sys/fs/cgroup/berth/meter";
/// Where berth moves bundles that must not be tried again.
const QUARANTINE: &str = "/data/berth/quarantine";
/// How long berth may take for the whole inbox: staging, a 5 s window,
/// a look every 5 s.
const QUEUE_WAIT: Duration = Duration::from_secs(90);

pub fn run(mode: &str) {
    running_rows();
    if mode == "add-remove" {
        add_remove();
    } else {
        inbox_queue();
    }
    act("poweroff", libc::SIGTERM);
}

/// Running and ready: exactly `names`.
fn only(rows: &[qemu_tests::updates::Row], names: &[&str]) -> bool {
    rows.len() == names.len() && all_running(rows, names)
}

/// The containers as berthctl shows them once they are exactly `names`
/// (running and ready).
fn report_rows(check: &str, names: &[&str]) {
    let rows = wait_rows(|rows| only(rows, names));
    report(check, only(&rows, names), &rows_text(&rows));
}

/// Release 6 on trial (gauge ready, meter gone), rolled back by request
/// (meter back, gauge gone), applied again and committed by request.
fn add_remove() {
    let (ok, text) = apply_to_trial("add-remove");
    report("on-trial", ok, &text);
    report_rows("rows-6", &["gauge", "sensor"]);
    let (ok, text) = ctl(&["rollback"]);
    report("rollback-requested", ok && text == "rolled back from release 6 to 1", &text);
    let (ok, text) = wait_release(|r| r.version == 1 && r.state == "committed" && has_rollback(r, "from 6 to 1", "requested"));
    report("rolled-back", ok, &text);
    report_rows("rows-1", &["meter", "sensor"]);
    let (ok, text) = apply_to_trial("add-remove");
    report("on-trial-again", ok, &text);
    report_rows("rows-6-again", &["gauge", "sensor"]);
    let (ok, text) = ctl(&["commit"]);
    report("commit-requested", ok && text == "release 6 committed", &text);
    let (ok, text) = wait_release(|r| r.version == 6 && r.state == "committed");
    report("committed", ok, &text);
    match std::process::Command::new("/sbin/berthctl").args(["status", "--json"]).output() {
        Ok(o) => match qemu_tests::releasepaths::container_states(&String::from_utf8_lossy(&o.stdout)) {
            Ok(s) => report("status-json", true, &s),
            Err(e) => report("status-json", false, &format!("exit {:?}: {e}", o.status.code())),
        },
        Err(e) => report("status-json", false, &format!("berthctl: {}", errno_desc(&e))),
    }
    let gone = !Path::new(METER_CGROUP).exists();
    report("meter-cgroup-gone", gone, &format!("{METER_CGROUP} {}", if gone { "absent" } else { "still there" }));
}

/// The names in `dir`, sorted.
fn names(dir: &str) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir).map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()).unwrap_or_default();
    v.sort();
    v
}

/// Prepare the entries in a directory on the same file system, then rename it
/// into place: berth sees all of them at its next look, or none.
fn drop_all() -> Result<String, String> {
    let prep = format!("{DATA}/inbox-queue.new");
    let copy =
        |from: &str, to: &str| fs::copy(format!("{BUNDLES}/{from}"), format!("{prep}/{to}")).map(|_| ()).map_err(|e| format!("{to}: {}", errno_desc(&e)));
    fs::create_dir_all(&prep).map_err(|e| format!("{prep}: {}", errno_desc(&e)))?;
    copy("refused/unsigned.bundle", "a-unsigned.bundle")?;
    copy("refused/not-newer.bundle", "b-old.bundle")?;
    copy("v2.bundle", "c-v2.bundle.taking1")?;
    fs::create_dir(format!("{prep}/d-dir.bundle")).map_err(|e| format!("d-dir.bundle: {}", errno_desc(&e)))?;
    fs::write(format!("{prep}/z.partial"), b"not a bundle name\n").map_err(|e| format!("z.partial: {}", errno_desc(&e)))?;
    // Onto an empty inbox directory, if berth made one.
    fs::rename(&prep, INBOX).map_err(|e| format!("rename {prep} to {INBOX}: {}", errno_desc(&e)))?;
    Ok(names(INBOX).join(","))
}

fn inbox_queue() {
    match drop_all() {
        Ok(listing) => report("inbox-drop", true, &listing),
        Err(e) => {
            report("inbox-drop", false, &e);
            return;
        }
    }
    // Done when only what no rule takes is left and release 2 runs.
    let start = Instant::now();
    while names(INBOX) != ["z.partial"] && start.elapsed() < QUEUE_WAIT {
        std::thread::sleep(Duration::from_millis(250));
    }
    let left = names(INBOX);
    report("inbox-left", left == ["z.partial"], &left.join(","));
    report("quarantine-files", true, &names(QUARANTINE).join(","));
    let (ok, text) = wait_release(|r| r.version == 2 && r.state == "committed");
    let view = qemu_tests::updates::parse_release(&text.replace(" | ", "\n"));
    report("quarantined", ok, &view.as_ref().map(|v| v.quarantined.join(" | ")).unwrap_or_default());
    report("release", ok, &view.map(|v| format!("{} {}", v.version, v.state)).unwrap_or(text));
}
