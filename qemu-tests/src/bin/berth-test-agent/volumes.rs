//! The agent's mode for the volume scenario (`qemu-tests/src/volumes.rs`):
//!
//! 1. wait until `berthctl logs volfill` shows its `VOLFILL full` line (it
//!    filled its volume until the quota stopped it): `volume-full`;
//! 2. drop release 2's bundle into the inbox and wait for its commit:
//!    `update-v2-inbox`, `update-commit`;
//! 3. the log store still takes lines: a `VOLFILL alive` line newer than
//!    any seen before the commit comes through `berthctl logs volfill`, and
//!    berth's own log file holds the commit: `log-after-commit`;
//! 4. apply release 3 (volfill mounts a tmpfs where its earlier run planted
//!    a symlink) and wait for the rollback to release 2: `update-v3`,
//!    `rollback`;
//!
//! then power off.

use std::time::{Duration, Instant};

/// How long volfill may take to fill its volume (slow boards).
const FILL_WAIT: Duration = Duration::from_secs(90);
/// How long a new line may take to reach the log store.
const LINE_WAIT: Duration = Duration::from_secs(20);

/// The highest `n` of the `VOLFILL alive n=` lines in `text`.
fn last_alive(text: &str) -> Option<u64> {
    text.lines().filter_map(|l| l.split("VOLFILL alive n=").nth(1)).filter_map(|n| n.trim().parse().ok()).max()
}

fn logs() -> String {
    super::ctl(&["logs", "volfill"]).1
}

/// Poll `berthctl logs volfill` until `want` holds or `wait` passes.
fn wait_logs(wait: Duration, want: impl Fn(&str) -> bool) -> (bool, String) {
    let start = Instant::now();
    loop {
        let text = logs();
        if want(&text) {
            return (true, text);
        }
        if start.elapsed() > wait {
            return (false, text);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

pub fn run() {
    let (ok, text) = wait_logs(FILL_WAIT, |t| t.contains("VOLFILL full"));
    let line = text.lines().find(|l| l.contains("VOLFILL full")).unwrap_or("no VOLFILL full line").to_string();
    super::report("volume-full", ok, &line);

    let (ok, text) = super::drop_in_inbox("v2");
    super::report("update-v2-inbox", ok, &text);
    let (ok, text) = super::wait_release(|r| r.version == 2 && r.state == "committed");
    super::report("update-commit", ok, &text);

    let before = last_alive(&logs()).unwrap_or(0);
    let (newer, text) = wait_logs(LINE_WAIT, |t| last_alive(t).is_some_and(|n| n > before));
    let own = std::fs::read_to_string("/data/berth/logs/berth.log").unwrap_or_default();
    let committed = own.lines().any(|l| l.contains("ev=release.commit") && l.contains("version=2"));
    let detail = format!("alive before {before}, now {:?}; berth.log has the commit: {committed}", last_alive(&text));
    super::report("log-after-commit", newer && committed, &detail);

    // Switched to, then rolled back: `update --wait` exits 4 and names
    // the cause and the container.
    let (code, text) = super::apply_wait("v3-bad");
    let last = text.lines().last().unwrap_or("");
    let ok = code == Some(4) && last.contains(" phase=rolled-back result=failed release=3 cause=crash-loop ") && last.ends_with(" detail=volfill");
    super::report("update-v3", ok, &format!("exit {code:?}: {}", text.replace('\n', " | ")));
    let (ok, text) = super::wait_release(|r| r.version == 2 && r.state == "committed" && super::has_rollback(r, "from 3 to 2", "(volfill)"));
    super::report("rollback", ok, &text);
    super::act("poweroff", libc::SIGTERM);
}
