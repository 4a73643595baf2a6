//! berth-test-agent: runs inside the QEMU guest, started by berth once the
//! boot is ready (an ordinary host process: real root, host namespaces,
//! stdout/stderr on the console). It checks PID 1's duties from the outside
//! and reports one line per check:
//!
//! ```text
//! AGENT check=<name> result=pass|fail detail="..."
//! ```
//!
//! in this order: `pid1`, `rootfs-ro`, `data-mount`, `orphan-reaped`,
//! `berthctl` (status and release over the control socket). Then it
//! performs the action named by the kernel command line token
//! `berth.test=<mode>` (`none` when absent): `none`, `poweroff` (SIGTERM to
//! PID 1), `poweroff-after-<secs>` (the same, that many seconds later),
//! `wedge-after-<secs>` (first boot: wait, then `berthctl debug wedge`;
//! after the watchdog's reset, remembered on /data: power off),
//! `reboot` (SIGINT to PID 1), `reboot-once` (reboot the first time,
//! remembered by `/data/.agent-rebooted`, power off the next). Actions are
//! announced as `AGENT action=<x>`; `AGENT done` comes before the signal.
//! Then it waits for berth's shutdown SIGTERM and exits 0. Mode `bench`
//! skips the checks: see [`bench`]. Mode `idle-cpu` skips them too and
//! measures PID 1's CPU time while a container waits (see [`loopcheck`]).
//! Mode `controls` passes on what berth shows of a container's terminal
//! controls (see [`controls`]); `check-window` only says `AGENT done`.
//! Modes `log-quota` and `ctl-clients` (see [`logsock`]) report the log
//! store's files and drive the control socket with many clients.
//!
//! The update modes skip the checks above and drive `berthctl update` with
//! the bundles under `/data/test/` (see `qemu_tests::updates`): `update`,
//! `update-rollback`, `update-refused`, `update-reboot` (rebooting between
//! steps, remembered on /data), `update-cut` (an update the harness cuts
//! short), `store-check` (the store's files and record after a cut),
//! `update-big` (a 100 MiB image staged while `berthctl status` is timed)
//! and `stage-interrupt` (a big bundle dropped into the inbox, its staging
//! cut by the harness; later boots wait for its quarantine). The trial
//! modes `trial-judged` and `trial-control` drive `update --wait`, `commit`
//! and `rollback` (see `qemu_tests::trials`); `add-remove` (a release that
//! adds and removes a container) and `inbox-queue` (several entries in the
//! inbox at once) those of `qemu_tests::releasepaths`.
//! Mode `bootloader` prints `AGENT slot=<berth.slot= of the command line>`
//! and powers off (see `qemu_tests::bootloader`); `slot-update` waits for
//! a system update and its trial (see `qemu_tests::slotupdate`).
//!
//! Static, std + libc only; it must never panic on anything the guest can do.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use qemu_tests::event::quote;

#[path = "berth-test-agent/budgets.rs"]
mod budgets;
#[path = "berth-test-agent/controls.rs"]
mod controls;
/// The fault modes (`qemu_tests::faults`).
#[path = "berth-test-agent/faults.rs"]
mod faults;
/// The log store and control socket modes (`qemu_tests::logquota`).
#[path = "berth-test-agent/logsock.rs"]
mod logsock;
#[path = "berth-test-agent/loopcheck.rs"]
mod loopcheck;
#[path = "berth-test-agent/output.rs"]
mod output;
/// The recovery scenario's mode (`qemu_tests::recovery`).
#[path = "berth-test-agent/recovery.rs"]
mod recovery;
/// The add-remove and inbox-queue modes (`qemu_tests::releasepaths`).
#[path = "berth-test-agent/releasepaths.rs"]
mod releasepaths;
/// The trial scenarios' modes (`qemu_tests::trials`).
/// The system slot update scenarios' mode (`qemu_tests::slotupdate`).
#[path = "berth-test-agent/slots.rs"]
mod slots;
#[path = "berth-test-agent/trials.rs"]
mod trials;
#[path = "berth-test-agent/volumes.rs"]
mod volumes;

const WRITE_PROBE: &str = "/.berth-agent-write";
const DIR_PROBE: &str = "/.berth-agent-dir";
const DATA: &str = "/data";
const DATA_PROBE: &str = "/data/.berth-agent-probe";
const REBOOT_MARKER: &str = "/data/.agent-rebooted";
const ORPHAN_WAIT: Duration = Duration::from_secs(5);

fn main() {
    install_sigterm_exit();
    if fs::read_to_string("/proc/cmdline").is_ok_and(|c| parse_mode(&c) == "bench") {
        bench();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        // Host service modes (test boards only): exit at once with a code,
        // or run until SIGTERM.
        Some("--service-exit") => {
            let code: i32 = args.get(1).and_then(|c| c.parse().ok()).unwrap_or(1);
            say(&format!("AGENT service exit code={code}"));
            std::process::exit(code);
        }
        Some("--service-sleep") => {
            say("AGENT service sleeping");
            loop {
                // SAFETY: pause has no preconditions.
                unsafe {
                    libc::pause();
                }
            }
        }
        _ => {}
    }

    let mode = match fs::read_to_string("/proc/cmdline") {
        Ok(cmdline) => parse_mode(&cmdline),
        Err(e) => {
            report("mode", false, &format!("cannot read /proc/cmdline: {}", errno_desc(&e)));
            "none".to_string()
        }
    };
    if mode == "budgets" {
        // Its release runs only the two budget containers: no general checks.
        budgets::run();
    } else if mode == "idle-cpu" {
        // The `waiting` scenario's board runs no demo container: no general checks.
        let (pass, detail) = loopcheck::idle_while_waiting();
        report("pid1-idle", pass, &detail);
        act("poweroff", libc::SIGTERM);
    } else if mode == "console-stall" || mode == "flood" {
        // Their releases have none of the demo's containers: no general checks.
        if mode == "flood" {
            output::flood();
        } else {
            output::console_stall();
        }
        say("AGENT done");
    } else if mode == "log-quota" || mode == "ctl-clients" {
        // The logsock release has none of the demo's containers.
        if mode == "log-quota" {
            logsock::log_quota();
        } else {
            logsock::ctl_clients();
        }
        say("AGENT done");
    } else if mode == "controls" || mode == "check-window" || mode == "fleet" {
        // Their releases have none of the demo's containers: no general
        // checks. The check window's verdict comes from its probe, the
        // fleet update's from berth's events and the server.
        if mode == "controls" {
            controls::run();
        }
        say("AGENT done");
    } else if mode == "volumes" {
        // The volume scenario's own release: no general checks.
        volumes::run();
    } else if mode == "recovery" {
        // No release runs: no general checks.
        recovery::run();
    } else if mode == "slot-update" {
        slots::run();
    } else if mode == "bootloader" {
        // The bootloader case: which slot the boot script booted, as the
        // kernel got it (`qemu_tests::bootloader`), then power off.
        let cmdline = fs::read_to_string("/proc/cmdline").unwrap_or_default();
        say(&format!("AGENT slot={}", token(&cmdline, "berth.slot").unwrap_or("none")));
        act("poweroff", libc::SIGTERM);
    } else if UPDATE_MODES.contains(&mode.as_str()) {
        // The update scenarios skip the general checks (the boot scenario
        // makes them) and start at once.
        update_mode(&mode);
    } else {
        let (pass, detail) = check_pid1();
        report("pid1", pass, &detail);
        let (pass, detail) = check_rootfs_ro();
        report("rootfs-ro", pass, &detail);
        let (pass, detail) = check_data_mount();
        report("data-mount", pass, &detail);
        let (pass, detail) = check_orphan_reaped();
        report("orphan-reaped", pass, &detail);

        let (pass, detail) = check_berthctl();
        report("berthctl", pass, &detail);
        let (pass, detail) = check_berthctl_stop_start();
        report("berthctl-stop-start", pass, &detail);
        let (pass, detail) = check_berthctl_logs();
        report("berthctl-logs", pass, &detail);
        let (pass, detail) = check_berthctl_restart();
        report("berthctl-restart", pass, &detail);

        let cmdline = fs::read_to_string("/proc/cmdline").unwrap_or_default();
        if let Some(port) = token(&cmdline, "berth.test.net-port").and_then(|p| p.parse::<u16>().ok()) {
            let (pass, detail) = check_net(port);
            report("net", pass, &detail);
            // With DHCP, net keeps running to renew: no clean exit to restart.
            if let Some(ip) = token(&cmdline, "berth.test.dhcp-static") {
                let got = if_address("eth1").map(|a| a.map(|b| b.to_string()).join("."));
                report("net-static", got.as_deref() == Ok(ip), &format!("eth1 {got:?}, want {ip}"));
            } else {
                let (pass, detail) = check_berthctl_service();
                report("berthctl-service", pass, &detail);
                let (pass, detail) = loopcheck::rt_signal_service();
                report("service-rt-signal", pass, &detail);
            }
        }
        if token(&cmdline, "berth.test.fuzz").is_some() {
            let (pass, detail) = check_ctl_fuzz();
            report("ctl-fuzz", pass, &detail);
        }
        match mode.as_str() {
            "none" => say("AGENT done"),
            "poweroff" => act("poweroff", libc::SIGTERM),
            "reboot" => act("reboot", libc::SIGINT),
            m if m.starts_with("wedge-after-") => {
                if Path::new(REBOOT_MARKER).exists() {
                    say("AGENT action=after-reset");
                    act("poweroff", libc::SIGTERM);
                } else if let (Ok(secs), Ok(())) = (m.trim_start_matches("wedge-after-").parse::<u64>(), create_marker(REBOOT_MARKER)) {
                    std::thread::sleep(Duration::from_secs(secs));
                    say("AGENT action=wedge");
                    let r = std::process::Command::new("/sbin/berthctl").args(["debug", "wedge", "600"]).status();
                    report("wedge", false, &format!("berthctl debug wedge returned: {r:?}"));
                } else {
                    report("mode", false, &format!("bad mode {m} or no marker"));
                    say("AGENT done");
                }
            }
            m if m.starts_with("poweroff-after-") => match m.trim_start_matches("poweroff-after-").parse::<u64>() {
                Ok(secs) => {
                    std::thread::sleep(Duration::from_secs(secs));
                    act("poweroff", libc::SIGTERM);
                }
                Err(_) => {
                    report("mode", false, &format!("bad mode {m}"));
                    say("AGENT done");
                }
            },
            "reboot-once" => {
                if Path::new(REBOOT_MARKER).exists() {
                    act("poweroff", libc::SIGTERM);
                } else {
                    match create_marker(REBOOT_MARKER) {
                        Ok(()) => act("reboot", libc::SIGINT),
                        Err(e) => {
                            // Never reboot without the marker: that would loop.
                            report("reboot-once", false, &format!("cannot create {REBOOT_MARKER}: {e}"));
                            act("poweroff", libc::SIGTERM);
                        }
                    }
                }
            }
            other => {
                report("mode", false, &format!("unknown mode {other}"));
                say("AGENT done");
            }
        }
    }
    // berth's shutdown sends SIGTERM, whose handler exits 0.
    loop {
        // SAFETY: pause has no preconditions.
        unsafe {
            libc::pause();
        }
    }
}

/// Mode `bench` (for `cargo xtask bench`, no checks): every second, PID 1's
/// resident memory as `AGENT measure=rss_kib value=N`, then the anonymous
/// part of it (heap and stack, not the binary's pages) as
/// `AGENT measure=rss_anon_kib value=N`, and `berthctl start`
/// for every container the crash-loop limit marked failed, so a crash loop
/// goes on for as many restarts as the benchmark wants. Ends on SIGTERM.
fn bench() -> ! {
    loop {
        match (pid1_status_kib("VmRSS:"), pid1_status_kib("RssAnon:")) {
            (Some(kib), Some(anon)) => {
                say(&format!("AGENT measure=rss_kib value={kib}"));
                say(&format!("AGENT measure=rss_anon_kib value={anon}"));
            }
            _ => report("rss", false, "no VmRSS or RssAnon in /proc/1/status"),
        }
        let status = std::process::Command::new("/sbin/berthctl").arg("status").output();
        let text = status.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
        if let Some(us) = text.lines().find_map(recent_stall_us) {
            say(&format!("AGENT measure=loop_recent_us value={us}"));
        }
        for line in text.lines().skip(1) {
            let mut cols = line.split_whitespace();
            if let (Some(name), Some("container"), Some("failed")) = (cols.next(), cols.next(), cols.next()) {
                let _ = std::process::Command::new("/sbin/berthctl").args(["start", name]).output();
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// From `berthctl status`'s `loop:` line, the worst of the recent handler
/// and the recent watchdog pet lateness, in microseconds.
fn recent_stall_us(line: &str) -> Option<u64> {
    let recent = line.strip_prefix("loop: ")?.split("recently").nth(1)?;
    let ms: Vec<f64> = recent.split_whitespace().filter_map(|w| w.parse::<f64>().ok()).collect();
    let worst = ms.iter().copied().fold(f64::NAN, f64::max);
    worst.is_finite().then_some((worst * 1e3) as u64)
}

/// A KiB figure of PID 1's `/proc/1/status` (`key` with its colon).
fn pid1_status_kib(key: &str) -> Option<u64> {
    let text = fs::read_to_string("/proc/1/status").ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Print one whole line on the console; errors are ignored (there is
/// nowhere else to report them).
fn say(line: &str) {
    let mut out = io::stdout().lock();
    let mut buf = String::with_capacity(line.len() + 1);
    buf.push_str(line);
    buf.push('\n');
    let _ = out.write_all(buf.as_bytes());
    let _ = out.flush();
}

fn report(check: &str, pass: bool, detail: &str) {
    say(&check_line(check, pass, detail));
}

fn check_line(check: &str, pass: bool, detail: &str) -> String {
    format!("AGENT check={check} result={} detail={}", if pass { "pass" } else { "fail" }, quote(detail))
}

/// Announce the action, then `AGENT done`, then signal PID 1.
fn act(action: &str, sig: libc::c_int) {
    say(&format!("AGENT action={action}"));
    say("AGENT done");
    // SAFETY: kill has no memory-safety preconditions.
    if unsafe { libc::kill(1, sig) } != 0 {
        let e = io::Error::last_os_error();
        report("action", false, &format!("kill(1, {}): {}", signal_name(sig), errno_desc(&e)));
    }
}

extern "C" fn on_sigterm(_sig: libc::c_int) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(0) }
}

fn install_sigterm_exit() {
    let handler: extern "C" fn(libc::c_int) = on_sigterm;
    // SAFETY: the handler only calls _exit.
    unsafe {
        libc::signal(libc::SIGTERM, handler as libc::sighandler_t);
    }
}

// ---------------------------------------------------------------- updates

/// The modes of the update scenarios (see `qemu_tests::updates`).
const UPDATE_MODES: [&str; 21] = [
    "update",
    "update-floor",
    "update-rollback",
    "update-refused",
    "update-reboot",
    "update-cut",
    "store-check",
    "update-big",
    "stage-interrupt",
    "trial-judged",
    "trial-control",
    "add-remove",
    "inbox-queue",
    "fault-trial-write",
    "fault-commit-write",
    "fault-commit-operator",
    "fault-rollback-write",
    "fault-rollback-reboot",
    "fault-map-rollback",
    "trial-unready",
    "trial-unhealthy",
];
/// Where the update variant's bundles are.
const BUNDLES: &str = "/data/test";
/// The update-reboot scenario's progress across its boots.
const STAGE_FILE: &str = "/data/.agent-update-stage";
/// The store on the data partition.
const STORE: &str = "/data/berth";
/// berth's inbox for bundles.
const INBOX: &str = "/data/berth/inbox";
/// How long a release may take to commit (its 5 s window, slow boards).
const COMMIT_WAIT: Duration = Duration::from_secs(90);

fn update_mode(mode: &str) {
    match mode {
        "update" => {
            let before = running_rows();
            let (ok, text) = apply("v2");
            report("update-v2", ok, &text);
            let (ok, text) = wait_release(|r| r.version == 2 && r.state == "committed");
            report("update-commit", ok, &text);
            let after = wait_rows(|rows| all_running(rows, &["sensor", "meter"]));
            let same = pid_of(&before, "meter").is_some() && pid_of(&before, "meter") == pid_of(&after, "meter");
            let new = pid_of(&after, "sensor").is_some() && pid_of(&before, "sensor") != pid_of(&after, "sensor");
            report("update-kept", same && new, &format!("before: {} after: {}", rows_text(&before), rows_text(&after)));
            act("poweroff", libc::SIGTERM);
        }
        "update-rollback" if Path::new(REBOOT_MARKER).exists() => {
            let (ok, text) = wait_release(|r| r.version == 1 && r.state == "committed" && has_rollback(r, "from 3 to 1", "crash-loop (meter)"));
            report("rollback-kept", ok, &text);
            act("poweroff", libc::SIGTERM);
        }
        "update-rollback" => {
            let before = running_rows();
            let mapped = mappings();
            // Switched to, then rolled back: `update --wait` exits 4.
            let (code, text) = apply_wait("v3-bad");
            report("update-v3", code == Some(4), &text);
            let (ok, text) = wait_release(|r| r.version == 1 && r.state == "committed" && has_rollback(r, "from 3 to 1", "crash-loop (meter)"));
            report("rollback-recorded", ok, &text);
            let after = wait_rows(|rows| all_running(rows, &["sensor", "meter"]));
            let kept = pid_of(&before, "sensor").is_some() && pid_of(&before, "sensor") == pid_of(&after, "sensor");
            report(
                "rollback-running",
                kept && all_running(&after, &["sensor", "meter"]),
                &format!("before: {} after: {}", rows_text(&before), rows_text(&after)),
            );
            // Release 3's image goes once its containers have ended.
            let start = Instant::now();
            let mut now = mappings();
            while now != mapped && start.elapsed() < UNMAP_WAIT {
                std::thread::sleep(Duration::from_millis(250));
                now = mappings();
            }
            let pass = now == mapped && mapped.consistent() && !mapped.dm.is_empty();
            report("rollback-unmapped", pass, &format!("before: {} after: {}", mapped.to_detail(), now.to_detail()));
            reboot_once_more(REBOOT_MARKER, "1");
        }
        "update-refused" => refuse_all(),
        "update-big" => {
            running_rows();
            let (ok, text, samples) = update_timing_status("big");
            report("update-big", ok, &text);
            let (pass, detail) = judge_status_samples(&samples);
            report("status-while-staging", pass, &detail);
            let (ok, text) = wait_release(|r| r.version == 2 && r.state == "committed");
            report("update-commit", ok, &text);
            act("poweroff", libc::SIGTERM);
        }
        "stage-interrupt" => stage_interrupt(),
        "update-floor" => floor_mode(),
        "trial-judged" | "trial-control" => trials::run(mode),
        "add-remove" | "inbox-queue" => releasepaths::run(mode),
        "fault-trial-write"
        | "fault-commit-write"
        | "fault-commit-operator"
        | "fault-rollback-write"
        | "fault-rollback-reboot"
        | "fault-map-rollback"
        | "trial-unready"
        | "trial-unhealthy" => faults::run(mode),
        "update-reboot" => match fs::read_to_string(STAGE_FILE).unwrap_or_default().trim() {
            "" => {
                let (ok, text) = apply_to_trial("v2");
                report("update-v2", ok, &text);
                // Reboot in the middle of the trial.
                reboot_once_more(STAGE_FILE, "1");
            }
            "1" => {
                let (ok, text) = wait_release(|r| r.version == 1 && r.state == "committed" && has_rollback(r, "from 2 to 1", "reboot-during-trial"));
                report("reboot-rolled-back", ok, &text);
                // This time through the inbox.
                let (ok, text) = drop_in_inbox("v2");
                report("update-v2-inbox", ok, &text);
                let (ok, text) = wait_release(|r| r.version == 2 && r.state == "committed");
                let left = fs::read_dir(INBOX).map(|d| d.count()).unwrap_or(0);
                report("update-commit", ok && left == 0, &format!("{text} | inbox files left: {left}"));
                reboot_once_more(STAGE_FILE, "2");
            }
            _ => {
                let (ok, text) = wait_release(|r| r.version == 2 && r.state == "committed" && r.rollbacks.len() == 1);
                report("commit-kept", ok, &text);
                act("poweroff", libc::SIGTERM);
            }
        },
        "update-cut" => {
            // The harness (or berth.cut) cuts the power somewhere in here.
            say("AGENT action=update");
            let (ok, text) = apply("v2");
            report("update-v2", ok, &text);
            let (ok, text) = wait_release(|r| r.version == 2 && r.state == "committed");
            report("update-commit", ok, &text);
            say("AGENT done");
        }
        _ => {
            // store-check: the boot after a cut.
            let listing = list_store();
            report("store-files", listing.clean(), &listing.to_detail());
            let (ok, text) = ctl(&["release"]);
            let consistent = ok && qemu_tests::updates::parse_release(&text).is_some_and(|r| r.state == "committed");
            report("store-release", consistent, &text.replace('\n', " | "));
            say("AGENT done");
        }
    }
}

/// The update-floor scenario: release 2 committed, then both record copies
/// garbled and a reboot; the boot after it must run release 2 alone.
fn floor_mode() {
    const MARK: &str = "/data/.agent-floor";
    if Path::new(MARK).exists() {
        let (ok, text) = wait_release(|r| r.version == 2 && r.state == "committed" && r.previous.is_none());
        report("floor-kept", ok, &text);
        act("poweroff", libc::SIGTERM);
        return;
    }
    let (ok, text) = apply("v2");
    report("update-v2", ok, &text);
    let (ok, text) = wait_release(|r| r.version == 2 && r.state == "committed");
    report("update-commit", ok, &text);
    let garbled: Result<(), String> = ["record.a", "record.b"].iter().try_for_each(|s| write_synced(&format!("{STORE}/{s}"), b"garbled"));
    report("floor-garbled", garbled.is_ok(), &garbled.err().unwrap_or_default());
    reboot_once_more(MARK, "1");
}

/// One `berthctl status` while an update ran: when it started (monotonic
/// seconds, berth's event clock), how long it took, and whether berth said
/// a staging was in progress.
struct Sample {
    at: f64,
    ms: u64,
    staging: bool,
}

/// The monotonic clock berth stamps its events with.
fn monotonic() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec it is given.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// `berthctl update /data/test/<name>.bundle` in a thread; meanwhile
/// `berthctl status` every 200 ms, timed.
fn update_timing_status(name: &str) -> (bool, String, Vec<Sample>) {
    let name = name.to_string();
    let update = std::thread::spawn(move || apply(&name));
    let mut samples = Vec::new();
    while !update.is_finished() {
        let at = monotonic();
        let (ok, text) = ctl(&["status"]);
        let ms = ((monotonic() - at) * 1e3) as u64;
        samples.push(Sample { at, ms, staging: ok && text.lines().any(|l| l.starts_with("staging ")) });
        std::thread::sleep(Duration::from_millis(200));
    }
    let (ok, text) = update.join().unwrap_or((false, "the update thread panicked".into()));
    (ok, text, samples)
}

/// The status calls made while berth was staging: at least 3, each
/// answered within 500 ms.
fn judge_status_samples(samples: &[Sample]) -> (bool, String) {
    let during: Vec<&Sample> = samples.iter().filter(|s| s.staging).collect();
    let max = during.iter().map(|s| s.ms).max().unwrap_or(0);
    let first = during.first().map_or(0.0, |s| s.at);
    let last = during.last().map_or(0.0, |s| s.at + s.ms as f64 / 1e3);
    let detail = format!("samples={} max_ms={max} first_t={first:.3} last_t={last:.3} calls={}", during.len(), samples.len());
    (during.len() >= 3 && max < 500, detail)
}

/// First boot: move the big bundle into the inbox (a rename on /data) and
/// wait for the harness to cut the staging. Later boots: wait until
/// `berthctl release` shows it quarantined, release 1 still committed and
/// the inbox empty.
fn stage_interrupt() {
    let big = format!("{BUNDLES}/big.bundle");
    if Path::new(&big).exists() {
        let r = fs::create_dir_all(INBOX).and_then(|()| fs::rename(&big, format!("{INBOX}/big.bundle")));
        report("inbox-drop", r.is_ok(), &r.map_or_else(|e| errno_desc(&e), |()| format!("{INBOX}/big.bundle")));
        say("AGENT action=staging");
        return;
    }
    let (ok, text) = wait_release(|r| r.version == 1 && r.state == "committed" && r.quarantined.iter().any(|q| q.starts_with("quarantined big.bundle: ")));
    report("quarantined", ok, &text);
    let left: Vec<String> = fs::read_dir(INBOX).map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()).unwrap_or_default();
    report("inbox-empty", left.is_empty(), &format!("inbox: {left:?}"));
    act("poweroff", libc::SIGTERM);
}

/// Mark the stage (fsynced), then reboot; never reboot without the mark.
fn reboot_once_more(file: &str, stage: &str) {
    let marked = write_synced(file, stage.as_bytes()).and_then(|()| {
        let dir = File::open(DATA).map_err(|e| errno_desc(&e))?;
        dir.sync_all().map_err(|e| errno_desc(&e))
    });
    match marked {
        Ok(()) => act("reboot", libc::SIGINT),
        Err(e) => {
            report("mark", false, &format!("cannot write {file}: {e}"));
            act("poweroff", libc::SIGTERM);
        }
    }
}

/// Whether berthctl answered: exit 0; for `status` and `release`, which
/// exit by state (docs/berthctl.md), also 1 (degraded) or 3 (not ready)
/// with their output on stdout.
fn answered(args: &[&str], code: Option<i32>, stdout: &[u8]) -> bool {
    match code {
        Some(0) => true,
        Some(1 | 3) => matches!(args.first(), Some(&"status" | &"release")) && !stdout.is_empty(),
        _ => false,
    }
}

/// Run berthctl; (answered, stdout and stderr).
fn ctl(args: &[&str]) -> (bool, String) {
    match std::process::Command::new("/sbin/berthctl").args(args).output() {
        Ok(out) => (answered(args, out.status.code(), &out.stdout), both(&out)),
        Err(e) => (false, format!("berthctl: {}", errno_desc(&e))),
    }
}

/// Run berthctl; (its exit code, stdout and stderr).
fn ctl_code(args: &[&str]) -> (Option<i32>, String) {
    match std::process::Command::new("/sbin/berthctl").args(args).output() {
        Ok(out) => (out.status.code(), both(&out)),
        Err(e) => (None, format!("berthctl: {}", errno_desc(&e))),
    }
}

/// Stdout then stderr, trailing whitespace trimmed.
fn both(out: &std::process::Output) -> String {
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    text.trim_end().to_string()
}

/// `berthctl status --json` parses and lists the same entries in the same
/// states as the status file (rendered at most every 0.25 s: asked again
/// for up to 3 s until both agree).
fn status_json_matches() -> (bool, String) {
    let start = Instant::now();
    loop {
        let out = std::process::Command::new("/sbin/berthctl").args(["status", "--json"]).output();
        let file = fs::read_to_string("/run/berth/status/status.json").unwrap_or_default();
        let (ok, detail) = match out {
            Ok(o) if answered(&["status"], o.status.code(), &o.stdout) => {
                match qemu_tests::statusjson::same_entries(&String::from_utf8_lossy(&o.stdout), &file) {
                    Ok(n) => (true, format!("{n} entries agree, exit {:?}", o.status.code())),
                    Err(e) => (false, e),
                }
            }
            Ok(o) => (false, format!("berthctl status --json: {} {}", o.status, both(&o))),
            Err(e) => (false, format!("berthctl: {}", errno_desc(&e))),
        };
        if ok || start.elapsed() > Duration::from_secs(3) {
            return (ok, detail);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `berthctl update --wait /data/test/<name>.bundle`: committed (exit 0).
fn apply(name: &str) -> (bool, String) {
    let (code, text) = apply_wait(name);
    (code == Some(0), text)
}

/// `berthctl update --wait /data/test/<name>.bundle`: its exit code.
fn apply_wait(name: &str) -> (Option<i32>, String) {
    ctl_code(&["update", "--wait", &format!("{BUNDLES}/{name}.bundle")])
}

/// `berthctl update /data/test/<name>.bundle` (answered at once), then
/// wait until the release is on trial.
fn apply_to_trial(name: &str) -> (bool, String) {
    let (ok, text) = ctl(&["update", &format!("{BUNDLES}/{name}.bundle")]);
    if !ok {
        return (false, text);
    }
    let (ok, view) = wait_release(|r| r.state == "trial");
    (ok, format!("{text} | {view}"))
}

/// `berthctl release` without its `update ...` line (which an update,
/// refused or not, changes).
fn release_without_update(text: &str) -> String {
    text.lines().filter(|l| !l.starts_with("update ")).collect::<Vec<_>>().join("\n")
}

/// Copy a bundle into berth's inbox under a name it ignores, then rename
/// it to `.bundle`, so berth never sees half of it.
fn drop_in_inbox(name: &str) -> (bool, String) {
    let (tmp, dest) = (format!("{INBOX}/{name}.partial"), format!("{INBOX}/{name}.bundle"));
    let r = fs::create_dir_all(INBOX).and_then(|()| fs::copy(format!("{BUNDLES}/{name}.bundle"), &tmp)).and_then(|_| fs::rename(&tmp, &dest));
    match r {
        Ok(()) => (true, format!("{dest} in place")),
        Err(e) => (false, format!("{dest}: {}", errno_desc(&e))),
    }
}

/// Poll `berthctl release` until `want` holds (or the wait ends).
fn wait_release(want: impl Fn(&qemu_tests::updates::ReleaseView) -> bool) -> (bool, String) {
    let start = Instant::now();
    loop {
        let (ok, text) = ctl(&["release"]);
        let view = qemu_tests::updates::parse_release(&text);
        if ok && view.as_ref().is_some_and(&want) {
            return (true, text.replace('\n', " | "));
        }
        if start.elapsed() > COMMIT_WAIT {
            return (false, format!("after {} s: {}", COMMIT_WAIT.as_secs(), text.replace('\n', " | ")));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn has_rollback(r: &qemu_tests::updates::ReleaseView, versions: &str, cause: &str) -> bool {
    r.rollbacks.iter().any(|l| l.contains(versions) && l.ends_with(cause))
}

fn status_rows() -> Vec<qemu_tests::updates::Row> {
    let (ok, text) = ctl(&["status"]);
    if ok {
        qemu_tests::updates::parse_status(&text)
    } else {
        Vec::new()
    }
}

/// Poll `berthctl status` until `want` holds (the last rows either way).
fn wait_rows(want: impl Fn(&[qemu_tests::updates::Row]) -> bool) -> Vec<qemu_tests::updates::Row> {
    let start = Instant::now();
    loop {
        let rows = status_rows();
        if want(&rows) || start.elapsed() > COMMIT_WAIT {
            return rows;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The rows once every container runs and is ready.
fn running_rows() -> Vec<qemu_tests::updates::Row> {
    wait_rows(|rows| !rows.is_empty() && rows.iter().all(|r| r.state == "running" && r.ready))
}

fn all_running(rows: &[qemu_tests::updates::Row], names: &[&str]) -> bool {
    names.iter().all(|n| rows.iter().any(|r| r.name == *n && r.state == "running" && r.ready))
}

fn pid_of(rows: &[qemu_tests::updates::Row], name: &str) -> Option<u32> {
    rows.iter().find(|r| r.name == name).and_then(|r| r.pid)
}

fn rows_text(rows: &[qemu_tests::updates::Row]) -> String {
    let v: Vec<String> = rows.iter().map(|r| format!("{}:{}:{}", r.name, r.state, r.pid.map_or("-".into(), |p| p.to_string()))).collect();
    v.join(",")
}

/// Each bundle under `refused/`, in name order, must be refused (berthctl
/// exits 1 with the error); afterwards the release, the containers' pids
/// and the store's files are what they were.
fn refuse_all() {
    let rows = running_rows();
    let (_, release) = ctl(&["release"]);
    let release = release_without_update(&release);
    let files = list_store();
    let mapped = mappings();
    let mut bundles: Vec<String> = match fs::read_dir(format!("{BUNDLES}/refused")) {
        Ok(d) => d.flatten().map(|e| e.path().display().to_string()).filter(|p| p.ends_with(".bundle")).collect(),
        Err(e) => {
            report("refused", false, &format!("{BUNDLES}/refused: {}", errno_desc(&e)));
            Vec::new()
        }
    };
    bundles.sort();
    for b in &bundles {
        // Refused: `update --wait` exits 3, after the refusal's line.
        let (code, text) = ctl_code(&["update", "--wait", b]);
        let stem = b.rsplit('/').next().unwrap_or("").trim_end_matches(".bundle");
        let said = text.lines().last().is_some_and(|l| l.contains(" phase=refused result=failed ") || l.starts_with("berthctl: "));
        report(&format!("refused-{stem}"), code == Some(3) && said, &text);
    }
    let (_, release_after) = ctl(&["release"]);
    let release_after = release_without_update(&release_after);
    let rows_after = status_rows();
    let files_after = list_store();
    let mapped_after = mappings();
    let same = !bundles.is_empty()
        && release == release_after
        && rows == rows_after
        && files == files_after
        && !files.staging
        && mapped == mapped_after
        && mapped.consistent();
    report(
        "refused-untouched",
        same,
        &format!("release: {release_after:?} containers: {} store: {} images: {}", rows_text(&rows_after), files_after.to_detail(), mapped_after.to_detail()),
    );
    act("poweroff", libc::SIGTERM);
}

/// How long a rolled-back release's images may take to be unmapped (its
/// containers must end first).
const UNMAP_WAIT: Duration = Duration::from_secs(20);

/// berth's image mappings: dm devices, attached loop devices, image mounts.
fn mappings() -> qemu_tests::updates::Mappings {
    let mut m = qemu_tests::updates::Mappings::default();
    for e in fs::read_dir("/sys/block").into_iter().flatten().flatten() {
        let dev = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("dm-") {
            let dm = fs::read_to_string(dev.join("dm/name")).unwrap_or_default().trim().to_string();
            if dm.starts_with("berth-") {
                m.dm.push(dm);
            }
        } else if name.starts_with("loop") && dev.join("loop/backing_file").exists() {
            m.loops += 1;
        }
    }
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for line in mountinfo.lines() {
        if let Some(name) = line.split(' ').nth(4).and_then(|p| p.strip_prefix("/run/berth/images/")) {
            m.mounts.push(name.to_string());
        }
    }
    m.dm.sort();
    m.mounts.sort();
    m
}

/// The store's files: staging, stray names, release objects, images.
fn list_store() -> qemu_tests::updates::Listing {
    let mut l = qemu_tests::updates::Listing { staging: Path::new(&format!("{STORE}/staging")).exists(), ..Default::default() };
    let entries = |dir: &str| -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = match fs::read_dir(dir) {
            Ok(d) => d.flatten().map(|e| (e.file_name().to_string_lossy().into_owned(), e.metadata().map(|m| m.len()).unwrap_or(0))).collect(),
            Err(_) => Vec::new(),
        };
        v.sort();
        v
    };
    for (name, _) in entries(STORE) {
        if name.ends_with(".tmp") || name.ends_with(".partial") {
            l.stray.push(name);
        }
    }
    for (name, _) in entries(&format!("{STORE}/releases")) {
        if is_object_name(&name, ".bin") {
            l.releases.push(name);
        } else {
            l.stray.push(format!("releases/{name}"));
        }
    }
    for (name, size) in entries(&format!("{STORE}/images")) {
        if is_object_name(&name, ".img") {
            l.images.push((name, size));
        } else {
            l.stray.push(format!("images/{name}"));
        }
    }
    l
}

/// `<64 hex digits><ext>`: a store object, not a temporary.
fn is_object_name(name: &str, ext: &str) -> bool {
    name.strip_suffix(ext).is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

// ---------------------------------------------------------------- checks

fn check_pid1() -> (bool, String) {
    let comm = fs::read_to_string("/proc/1/comm").map(|s| s.trim_end_matches('\n').to_string());
    let exe = fs::read_link("/proc/1/exe").map(|p| p.to_string_lossy().into_owned());
    let comm_s = match &comm {
        Ok(c) => c.clone(),
        Err(e) => format!("<{}>", errno_desc(e)),
    };
    let exe_s = match &exe {
        Ok(x) => x.clone(),
        Err(e) => format!("<{}>", errno_desc(e)),
    };
    let pass = pid1_ok(comm.as_deref().ok(), exe.as_deref().ok());
    (pass, format!("comm={comm_s} exe={exe_s}"))
}

fn pid1_ok(comm: Option<&str>, exe: Option<&str>) -> bool {
    comm == Some("berth") && exe.is_some_and(|x| x.ends_with("/berth"))
}

fn check_rootfs_ro() -> (bool, String) {
    let open = OpenOptions::new().write(true).create(true).truncate(false).mode(0o644).open(WRITE_PROBE);
    let (open_ok, open_s) = match open {
        Ok(_) => {
            let _ = fs::remove_file(WRITE_PROBE);
            (false, "created".to_string())
        }
        Err(e) => (e.raw_os_error() == Some(libc::EROFS), errno_desc(&e)),
    };
    let (mkdir_ok, mkdir_s) = match fs::create_dir(DIR_PROBE) {
        Ok(()) => {
            let _ = fs::remove_dir(DIR_PROBE);
            (false, "created".to_string())
        }
        Err(e) => (e.raw_os_error() == Some(libc::EROFS), errno_desc(&e)),
    };
    (open_ok && mkdir_ok, format!("open={open_s} mkdir={mkdir_s}"))
}

fn check_data_mount() -> (bool, String) {
    let text = match fs::read_to_string("/proc/self/mountinfo") {
        Ok(t) => t,
        Err(e) => return (false, format!("cannot read /proc/self/mountinfo: {}", errno_desc(&e))),
    };
    let Some(m) = find_mount(&text, DATA) else {
        return (false, format!("no mount at {DATA}"));
    };
    let missing = missing_options(&m.mount_opts, &["rw", "nosuid", "nodev", "noexec"]);
    let write = match write_probe(DATA_PROBE) {
        Ok(()) => "ok".to_string(),
        Err(e) => e,
    };
    let mut detail = format!("opts={} fstype={} super={} write={write}", m.mount_opts.join(","), m.fstype, m.super_opts);
    if !missing.is_empty() {
        detail.push_str(&format!(" missing={}", missing.join(",")));
    }
    (missing.is_empty() && write == "ok", detail)
}

/// Create, write and fsync a file, then remove it.
fn write_probe(path: &str) -> Result<(), String> {
    write_synced(path, b"berth-test-agent\n")?;
    fs::remove_file(path).map_err(|e| format!("unlink:{}", errno_desc(&e)))
}

/// Create (or truncate) a file with `bytes` and fsync it.
fn write_synced(path: &str, bytes: &[u8]) -> Result<(), String> {
    let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(0o644).open(path).map_err(|e| format!("open: {}", errno_desc(&e)))?;
    f.write_all(bytes).map_err(|e| format!("write: {}", errno_desc(&e)))?;
    f.sync_all().map_err(|e| format!("fsync: {}", errno_desc(&e)))
}

fn create_marker(path: &str) -> Result<(), String> {
    write_synced(path, b"rebooted once by berth-test-agent\n")?;
    let dir = File::open(DATA).map_err(|e| format!("open {DATA}: {}", errno_desc(&e)))?;
    dir.sync_all().map_err(|e| format!("fsync {DATA}: {}", errno_desc(&e)))
}

/// Fork A; A forks B and exits at once, so B is re-parented to PID 1; B
/// sends its pid, sleeps 300 ms and exits. PID 1 must reap it.
/// `berthctl status` and `berthctl release` answer over the control socket.
fn check_berthctl() -> (bool, String) {
    let run = |args: &[&str]| -> Result<String, String> {
        let out = std::process::Command::new("/sbin/berthctl").args(args).output().map_err(|e| format!("berthctl: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if answered(args, out.status.code(), &out.stdout) {
            Ok(text)
        } else {
            Err(format!("berthctl {args:?}: {} {}", out.status, String::from_utf8_lossy(&out.stderr).trim()))
        }
    };
    // Containers start asynchronously after boot.ready: with the demo's
    // release (every container of it runs), wait (bounded) for every one to
    // run before taking the reading the scenario checks. Other releases
    // (hung starts, failing checks) are read at once.
    let containers = |status: &str| -> Vec<(String, String)> {
        status
            .lines()
            .skip(1)
            .filter_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                (w.get(1) == Some(&"container")).then(|| (w[0].to_string(), w.get(2).copied().unwrap_or("").to_string()))
            })
            .collect()
    };
    let demo_running = |status: &str| {
        let c = containers(status);
        !c.iter().any(|(n, _)| n == "flaky") || c.iter().all(|(_, st)| st == "running")
    };
    for _ in 0..100 {
        if run(&["status"]).is_ok_and(|s| demo_running(&s)) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    match (run(&["status"]), run(&["release"])) {
        (Ok(status), Ok(release)) => {
            let lines: Vec<&str> = status.lines().chain(release.lines()).map(str::trim_end).collect();
            (status.starts_with("NAME") && release.starts_with("release "), lines.join(" | "))
        }
        (Err(e), _) | (_, Err(e)) => (false, e),
    }
}

/// `berthctl stop flaky` takes it down and keeps it down; `berthctl start
/// flaky` brings it back.
fn check_berthctl_stop_start() -> (bool, String) {
    let run = |args: &[&str]| -> Option<String> {
        let out = std::process::Command::new("/sbin/berthctl").args(args).output().ok()?;
        answered(args, out.status.code(), &out.stdout).then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let state = |name: &str| -> String {
        run(&["status"])
            .and_then(|s| s.lines().find(|l| l.split_whitespace().next() == Some(name)).map(str::to_string))
            .and_then(|l| l.split_whitespace().nth(2).map(str::to_string))
            .unwrap_or_default()
    };
    let wait_for = |want: &str| -> bool {
        (0..100).any(|_| {
            if state("flaky") == want {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
            false
        })
    };
    if run(&["stop", "flaky"]).is_none() {
        return (false, "berthctl stop flaky failed".into());
    }
    if !wait_for("stopped") {
        return (false, format!("flaky did not stop: {}", state("flaky")));
    }
    if run(&["stop", "nosuch"]).is_some() {
        return (false, "berthctl stop of an unknown container succeeded".into());
    }
    if run(&["start", "flaky"]).is_none() {
        return (false, "berthctl start flaky failed".into());
    }
    if !wait_for("running") {
        return (false, format!("flaky did not start again: {}", state("flaky")));
    }
    (true, "flaky: running -> stopped -> running".into())
}

/// Run berthctl: its stdout if it answered ([`answered`]).
fn berthctl(args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("/sbin/berthctl").args(args).output().ok()?;
    answered(args, out.status.code(), &out.stdout).then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The boot id a log store header line (`#berth-log 2 boot=ID`) names.
fn header_boot(line: &str) -> Option<&str> {
    line.strip_prefix("#berth-log 2 boot=")
}

/// A boot id's shape: `8-4-4-4-12` lower-case hex digits.
fn well_formed_boot_id(id: &str) -> bool {
    id.split('-').map(str::len).eq([8, 4, 4, 4, 12]) && id.bytes().all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `berthctl logs sensor -n 3` and `berthctl events -n 5` answer from the
/// rings, each headed by the boot id, which is the kernel's
/// (`/proc/sys/kernel/random/boot_id`; well-formed when that cannot be
/// read); `--json` and the files on the data partition name the same boot
/// and hold the same lines; an unknown name is an error.
fn check_berthctl_logs() -> (bool, String) {
    let Some(logs) = berthctl(&["logs", "sensor", "-n", "3"]) else {
        return (false, "berthctl logs sensor failed".into());
    };
    let kernel = fs::read_to_string("/proc/sys/kernel/random/boot_id").ok().map(|s| s.trim().to_string());
    let Some(boot) = logs.lines().next().and_then(header_boot).map(str::to_string) else {
        return (false, format!("berthctl logs sensor does not start with a header naming the boot: {logs:?}"));
    };
    let boot_ok = match &kernel {
        Some(k) => *k == boot,
        None => well_formed_boot_id(&boot),
    };
    if !boot_ok {
        return (false, format!("berthctl logs names boot {boot:?}, the kernel's boot_id is {kernel:?}"));
    }
    let lines: Vec<&str> = logs.lines().skip(1).collect();
    if lines.is_empty() || lines.len() > 3 || !lines.iter().all(|l| l.contains("sensor: reading=")) {
        return (false, format!("berthctl logs sensor -n 3 printed {lines:?}"));
    }
    let json = berthctl(&["logs", "sensor", "-n", "1", "--json"]).unwrap_or_default();
    if !json.contains(&format!("\"boot_id\":\"{boot}\"")) || !json.contains("\"wall_ms\":") {
        return (false, format!("berthctl logs --json does not name boot {boot} and a wall_ms: {json:?}"));
    }
    let Some(events) = berthctl(&["events", "-n", "5"]) else {
        return (false, "berthctl events failed".into());
    };
    let records: Vec<&str> = events.lines().filter(|l| !l.starts_with('#')).collect();
    if records.len() != 5 || !records.iter().all(|l| l.contains("BERTH t=")) {
        return (false, format!("berthctl events -n 5 printed {events:?}"));
    }
    if berthctl(&["logs", "nosuch"]).is_some() {
        return (false, "berthctl logs of an unknown container succeeded".into());
    }
    let file = |name: &str| fs::read_to_string(format!("/data/berth/logs/{name}")).unwrap_or_default();
    let sensor = file("container-sensor.log");
    if !sensor.contains("sensor: reading=") {
        return (false, "container-sensor.log lacks the sensor's lines".into());
    }
    // This boot's part of the file: after its last header.
    if sensor.lines().filter_map(header_boot).next_back() != Some(boot.as_str()) {
        return (false, format!("container-sensor.log's last header does not name boot {boot}"));
    }
    if !file("berth.log").contains("ev=boot.ready") {
        return (false, "berth.log lacks berth's own events".into());
    }
    let source = if kernel.is_some() { "the kernel's" } else { "well-formed" };
    (true, format!("{} sensor lines, 5 events, files on /data, boot id {boot} ({source})", lines.len()))
}

/// `berthctl restart flaky` ends the running flaky and starts a new one.
fn check_berthctl_restart() -> (bool, String) {
    let pid = || -> Option<String> {
        let status = berthctl(&["status"])?;
        let line = status.lines().find(|l| l.split_whitespace().next() == Some("flaky"))?.to_string();
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.get(2) == Some(&"running")).then(|| f.get(4).map(|p| p.to_string())).flatten()
    };
    let Some(before) = pid() else {
        return (false, "flaky is not running".into());
    };
    if berthctl(&["restart", "flaky"]).is_none() {
        return (false, "berthctl restart flaky failed".into());
    }
    for _ in 0..150 {
        if let Some(now) = pid() {
            if now != before {
                return (true, format!("flaky pid {before} -> {now}"));
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    (false, format!("flaky still pid {before} or not running"))
}

fn check_orphan_reaped() -> (bool, String) {
    let mut fds: [libc::c_int; 2] = [-1, -1];
    // SAFETY: fds has room for two descriptors.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return (false, format!("pipe: {}", errno_desc(&io::Error::last_os_error())));
    }
    let (rfd, wfd) = (fds[0], fds[1]);
    // Nothing may sit in stdout's buffer across fork (it is flushed per line).
    let _ = io::stdout().lock().flush();
    // SAFETY: the agent is single-threaded; the children only make system
    // calls and leave with _exit.
    let a = unsafe { libc::fork() };
    if a < 0 {
        let e = io::Error::last_os_error();
        close_fd(rfd);
        close_fd(wfd);
        return (false, format!("fork: {}", errno_desc(&e)));
    }
    if a == 0 {
        orphan_child(rfd, wfd);
    }
    close_fd(wfd);
    let a_status = wait_child(a);
    let got = read_all_fd(rfd);
    close_fd(rfd);
    match a_status {
        Some(0) => {}
        Some(st) => return (false, format!("child A failed (wait status {st:#x}): could not fork the orphan")),
        None => return (false, format!("waitpid(A): {}", errno_desc(&io::Error::last_os_error()))),
    }
    let Some(b) = parse_pid_message(&got) else {
        return (false, format!("no pid from the orphan (read {:?})", String::from_utf8_lossy(&got)));
    };
    let b_stat_path = format!("/proc/{b}/stat");
    let parent_note = match fs::read_to_string(&b_stat_path).ok().as_deref().and_then(parse_stat) {
        Some(st) => format!("ppid={}", st.ppid),
        None => "ppid=?".to_string(),
    };

    let start = Instant::now();
    let deadline = start + ORPHAN_WAIT;
    let mut reaped_after = None;
    let mut zombies;
    loop {
        let b_gone = !Path::new(&format!("/proc/{b}")).exists();
        if b_gone && reaped_after.is_none() {
            reaped_after = Some(start.elapsed());
        }
        zombies = zombies_of_pid1();
        if (b_gone && zombies.is_empty()) || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let zlist = if zombies.is_empty() { String::new() } else { format!("; zombies with ppid 1: {}", zombies.join(" ")) };
    match reaped_after {
        Some(t) => {
            let detail = format!("orphan pid={b} {parent_note} reaped after {:.2}s{zlist}", t.as_secs_f64());
            (zombies.is_empty(), detail)
        }
        None => {
            let st = fs::read_to_string(&b_stat_path).ok().as_deref().and_then(parse_stat);
            let detail = match st {
                Some(s) if s.state == 'Z' => {
                    format!("zombie: orphan pid={b} still in state Z after {:.1}s (ppid {}){zlist}", ORPHAN_WAIT.as_secs_f64(), s.ppid)
                }
                Some(s) => format!("orphan pid={b} still present after {:.1}s (state {} ppid {}){zlist}", ORPHAN_WAIT.as_secs_f64(), s.state, s.ppid),
                None => format!("orphan pid={b} not reaped in {:.1}s{zlist}", ORPHAN_WAIT.as_secs_f64()),
            };
            (false, detail)
        }
    }
}

/// Child A of the orphan check. Never returns.
fn orphan_child(rfd: libc::c_int, wfd: libc::c_int) -> ! {
    // SAFETY: plain system calls on descriptors this process owns.
    unsafe {
        libc::close(rfd);
        let b = libc::fork();
        if b == 0 {
            let mut buf = [0u8; 24];
            let n = format_pid(libc::getpid(), &mut buf);
            let _ = libc::write(wfd, buf.as_ptr() as *const libc::c_void, n);
            libc::close(wfd);
            let ts = Duration::from_millis(300);
            std::thread::sleep(ts);
            libc::_exit(0);
        }
        libc::_exit(if b < 0 { 1 } else { 0 });
    }
}

fn close_fd(fd: libc::c_int) {
    // SAFETY: closing a descriptor this process owns.
    unsafe {
        libc::close(fd);
    }
}

/// waitpid, retried on EINTR; the raw wait status.
fn wait_child(pid: libc::pid_t) -> Option<libc::c_int> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: status is a valid out pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            return Some(status);
        }
        if r < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        return None;
    }
}

/// Read until EOF (all writers closed) or a newline; at most 64 bytes.
fn read_all_fd(fd: libc::c_int) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 64];
    while out.len() < 64 && !out.contains(&b'\n') {
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
        if n > 0 {
            out.extend_from_slice(&buf[..n as usize]);
        } else if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        } else {
            break;
        }
    }
    out
}

/// Zombies whose parent is PID 1, as `pid(comm)`.
fn zombies_of_pid1() -> Vec<String> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.is_empty() || !name.bytes().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let Ok(text) = fs::read_to_string(format!("/proc/{name}/stat")) else {
            continue;
        };
        if let Some(st) = parse_stat(&text) {
            if st.state == 'Z' && st.ppid == 1 {
                found.push(format!("{}({})", st.pid, st.comm));
            }
        }
    }
    found
}

/// The value of `key=value` on the kernel command line.
fn token<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    cmdline.split_whitespace().find_map(|t| t.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

const GUEST_IP: [u8; 4] = [10, 0, 2, 15];
const GATEWAY_IP: [u8; 4] = [10, 0, 2, 2];

/// An interface's IPv4 address (`SIOCGIFADDR`).
fn if_address(name: &str) -> Result<[u8; 4], String> {
    // SAFETY: socket has no memory preconditions.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(format!("socket: {}", errno_desc(&io::Error::last_os_error())));
    }
    // SAFETY: ifreq is plain old data; all-zero is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().take(libc::IFNAMSIZ - 1).zip(name.as_bytes()) {
        *d = *s as libc::c_char;
    }
    // SAFETY: fd is an open socket; req is a valid ifreq the kernel fills.
    let r = unsafe { libc::ioctl(fd, libc::SIOCGIFADDR as _, &mut req) };
    let e = io::Error::last_os_error();
    close_fd(fd);
    if r < 0 {
        return Err(format!("SIOCGIFADDR {name}: {}", errno_desc(&e)));
    }
    // SAFETY: SIOCGIFADDR wrote ifru_addr, an AF_INET sockaddr.
    let sa = unsafe { req.ifr_ifru.ifru_addr };
    let d: Vec<u8> = sa.sa_data.iter().map(|b| *b as u8).collect();
    Ok([d[2], d[3], d[4], d[5]])
}

/// The default route's interface and gateway from /proc/net/route.
fn default_route(text: &str) -> Option<(String, [u8; 4])> {
    text.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 4 || f[1] != "00000000" {
            return None;
        }
        // The gateway is the address's bytes as a host-order (little-endian) hex word.
        let gw = u32::from_str_radix(f[2], 16).ok()?.to_le_bytes();
        let flags = u32::from_str_radix(f[3], 16).ok()?;
        (flags & 0x3 == 0x3).then(|| (f[0].to_string(), gw))
    })
}

/// `berth net` set eth0 up: its address, the default route (and an
/// off-subnet destination routes through it), and a TCP exchange with the
/// harness through QEMU's gateway (10.0.2.2 is the host's loopback).
fn check_net(port: u16) -> (bool, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let addr = if_address("eth0");
        let route = fs::read_to_string("/proc/net/route").ok().and_then(|t| default_route(&t));
        if let (Ok(a), Some((dev, gw))) = (&addr, &route) {
            if *a == GUEST_IP && dev == "eth0" && *gw == GATEWAY_IP {
                break;
            }
        }
        if Instant::now() > deadline {
            return (false, format!("eth0 address {addr:?}, default route {route:?}"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // Off-subnet: only the default route makes this connect (no packet is sent).
    let udp = std::net::UdpSocket::bind("0.0.0.0:0").and_then(|u| u.connect("192.0.2.1:9").map(|()| u));
    let src = match udp.and_then(|u| u.local_addr()) {
        Ok(a) => a.ip().to_string(),
        Err(e) => return (false, format!("UDP connect to 192.0.2.1 (via the default route): {}", errno_desc(&e))),
    };
    if src != "10.0.2.15" {
        return (false, format!("192.0.2.1 is routed from {src}, not 10.0.2.15"));
    }
    let talk = || -> Result<String, String> {
        use std::io::{BufRead, BufReader};
        let to = std::net::SocketAddr::from((GATEWAY_IP, port));
        let mut s = std::net::TcpStream::connect_timeout(&to, Duration::from_secs(10)).map_err(|e| format!("connect {to}: {}", errno_desc(&e)))?;
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        let me = s.local_addr().map(|a| a.ip().to_string()).unwrap_or_default();
        s.write_all(format!("berth-agent from {me}\n").as_bytes()).map_err(|e| format!("write: {}", errno_desc(&e)))?;
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).map_err(|e| format!("read: {}", errno_desc(&e)))?;
        Ok(line.trim_end().to_string())
    };
    match talk() {
        Ok(reply) if reply == "berth-harness ok" => {
            (true, format!("eth0 10.0.2.15, default via 10.0.2.2, off-subnet source {src}, tcp 10.0.2.2:{port} answered"))
        }
        Ok(reply) => (false, format!("tcp 10.0.2.2:{port} answered {reply:?}")),
        Err(e) => (false, e),
    }
}

/// `berthctl status` lists the `net` service (kind, stopped, exit 0), and
/// `berthctl restart net` runs it again to a clean exit.
fn check_berthctl_service() -> (bool, String) {
    let line = || -> Option<Vec<String>> {
        let st = berthctl(&["status"])?;
        let l = st.lines().find(|l| l.split_whitespace().next() == Some("net"))?;
        Some(l.split_whitespace().map(str::to_string).collect())
    };
    let settled =
        |f: &[String]| f.get(1).map(String::as_str) == Some("service") && f.get(2).map(String::as_str) == Some("stopped") && f.join(" ").contains("exit 0");
    let wait = || {
        (0..100).find_map(|_| match line() {
            Some(f) if settled(&f) => Some(f),
            _ => {
                std::thread::sleep(Duration::from_millis(100));
                None
            }
        })
    };
    let Some(before) = wait() else {
        return (false, format!("net not listed as a stopped service with exit 0: {:?}", line()));
    };
    if berthctl(&["restart", "net"]).is_none() {
        return (false, "berthctl restart net failed".into());
    }
    std::thread::sleep(Duration::from_millis(300));
    match wait() {
        Some(after) => (true, format!("{} -> restarted -> {}", before.join(" "), after.join(" "))),
        None => (false, format!("net did not end cleanly after its restart: {:?}", line())),
    }
}

/// PID 1's start time (field 22 of /proc/1/stat): the same value means the
/// same process.
fn pid1_start() -> Option<u64> {
    let text = fs::read_to_string("/proc/1/stat").ok()?;
    text.get(text.rfind(')')? + 1..)?.split_whitespace().nth(19)?.parse().ok()
}

/// One fuzz frame: random bytes, oversized or truncated frames, a wrong
/// version, a random body of the announced length, a cut length prefix.
fn fuzz_frame(x: &mut u64, i: usize) -> Vec<u8> {
    let mut next = || {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x
    };
    let len = (next() % 600) as usize;
    let random: Vec<u8> = (0..len).map(|_| next() as u8).collect();
    match i % 6 {
        0 => random,
        1 => {
            let big = 513 + (next() % (u32::MAX as u64 - 513)) as u32;
            let mut f = big.to_le_bytes().to_vec();
            f.extend_from_slice(&random[..random.len().min(64)]);
            f
        }
        2 => {
            let mut f = 200u32.to_le_bytes().to_vec();
            f.extend_from_slice(&random[..random.len().min(199)]);
            f
        }
        // Request { version: 2 or 200, command: Status }: postcard varints.
        3 => {
            if next() % 2 == 0 {
                vec![2, 0, 0, 0, 2, 0]
            } else {
                vec![3, 0, 0, 0, 0xc8, 0x01, 0]
            }
        }
        4 => {
            let n = random.len().min(512);
            let mut f = (n as u32).to_le_bytes().to_vec();
            f.extend_from_slice(&random[..n]);
            // Never the current version: a random body must not happen to
            // be a real command (`debug wedge` would stall the test).
            if f.get(4) == Some(&3) {
                f[4] = 4;
            }
            f
        }
        _ => random[..random.len().min(3)].to_vec(),
    }
}

/// A few hundred malformed frames on the control socket, with an idle
/// client holding a connection; `berthctl status` keeps answering, a
/// wrong version gets an error reply, and PID 1 is the same process.
fn check_ctl_fuzz() -> (bool, String) {
    use std::io::Read;
    use std::os::unix::net::UnixStream;
    const SOCK: &str = "/run/berth/control";
    let Some(start) = pid1_start() else {
        return (false, "cannot read /proc/1/stat".into());
    };
    let idle = match UnixStream::connect(SOCK) {
        Ok(s) => s,
        Err(e) => return (false, format!("connect {SOCK}: {}", errno_desc(&e))),
    };
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let (mut sent, mut replies, mut version_errors, mut statuses) = (0, 0, 0, 0);
    for i in 0..360 {
        let frame = fuzz_frame(&mut x, i);
        let mut s = match UnixStream::connect(SOCK) {
            Ok(s) => s,
            Err(e) => return (false, format!("connect {SOCK} for frame {i}: {}", errno_desc(&e))),
        };
        let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = s.write_all(&frame);
        let _ = s.shutdown(std::net::Shutdown::Write);
        sent += 1;
        let mut reply = Vec::new();
        let _ = s.take(64 * 1024).read_to_end(&mut reply);
        if !reply.is_empty() {
            replies += 1;
        }
        // Response::Error is variant 4 (after Status, Release, Message,
        // Done); its text names the version.
        if i % 6 == 3 && reply.get(4) == Some(&4) && String::from_utf8_lossy(&reply).contains("version") {
            version_errors += 1;
        }
        if i % 40 == 39 {
            match berthctl(&["status"]) {
                Some(st) if st.starts_with("NAME") => statuses += 1,
                other => return (false, format!("berthctl status failed after {sent} frames: {other:?}")),
            }
        }
    }
    drop(idle);
    // Clients that connect and say nothing fill every slot (4): they are
    // dropped with a timeout reply, and berthctl gets through meanwhile.
    let mut silent: Vec<UnixStream> = (0..4).filter_map(|_| UnixStream::connect(SOCK).ok()).collect();
    // A fifth client meanwhile is turned away at once: an error reply
    // saying busy.
    std::thread::sleep(Duration::from_millis(200));
    let busy = match UnixStream::connect(SOCK) {
        Ok(s) => {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut reply = Vec::new();
            let _ = s.take(4096).read_to_end(&mut reply);
            reply.get(4) == Some(&4) && String::from_utf8_lossy(&reply).contains("busy: too many control clients")
        }
        Err(_) => false,
    };
    let t = std::time::Instant::now();
    let through = berthctl(&["status"]).is_some_and(|s| s.starts_with("NAME"));
    let waited = t.elapsed().as_secs_f64();
    let mut timed_out = 0;
    for s in &mut silent {
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let mut reply = Vec::new();
        let _ = s.take(4096).read_to_end(&mut reply);
        if reply.get(4) == Some(&4) && String::from_utf8_lossy(&reply).contains("timeout") {
            timed_out += 1;
        }
    }
    let after = pid1_start();
    let status_ok = berthctl(&["status"]).is_some_and(|s| s.starts_with("NAME"));
    let detail = format!(
        "busy={busy}, {sent} frames, {replies} replies, {version_errors}/60 wrong-version errors, {statuses} status answers during, status after={status_ok}, {} silent clients: {timed_out} timed out, berthctl through={through} after {waited:.1} s, pid1 start {start} -> {after:?}",
        silent.len()
    );
    let silent_ok = silent.len() == 4 && timed_out == 4 && through && busy;
    (status_ok && silent_ok && sent == 360 && statuses == 9 && version_errors == 60 && after == Some(start), detail)
}

// ---------------------------------------------------------------- pure parts

/// The mode from a kernel command line: the value of the last
/// `berth.test=<mode>` token (surrounding double quotes removed), `none`
/// when there is none.
fn parse_mode(cmdline: &str) -> String {
    let mut mode = None;
    for tok in cmdline.split_whitespace() {
        if let Some(v) = tok.strip_prefix("berth.test=") {
            let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v);
            mode = Some(v.to_string());
        }
    }
    mode.unwrap_or_else(|| "none".to_string())
}

/// One line of `/proc/<pid>/mountinfo`.
#[derive(Debug, Clone, PartialEq)]
struct MountEntry {
    mount_point: String,
    /// Per-mount options (field 6), e.g. `rw,nosuid,nodev,noexec,relatime`.
    mount_opts: Vec<String>,
    fstype: String,
    source: String,
    super_opts: String,
}

fn parse_mountinfo_line(line: &str) -> Option<MountEntry> {
    let toks: Vec<&str> = line.split(' ').collect();
    if toks.len() < 10 {
        return None;
    }
    // Optional fields run from index 6 up to the lone "-".
    let sep = toks.iter().skip(6).position(|t| *t == "-")? + 6;
    if toks.len() < sep + 4 {
        return None;
    }
    Some(MountEntry {
        mount_point: unescape_octal(toks[4]),
        mount_opts: toks[5].split(',').filter(|o| !o.is_empty()).map(str::to_string).collect(),
        fstype: toks[sep + 1].to_string(),
        source: unescape_octal(toks[sep + 2]),
        super_opts: toks[sep + 3].to_string(),
    })
}

/// The mount visible at `mount_point`: the last matching line (a later mount
/// stacks on top of an earlier one).
fn find_mount(mountinfo: &str, mount_point: &str) -> Option<MountEntry> {
    mountinfo.lines().rev().filter_map(parse_mountinfo_line).find(|m| m.mount_point == mount_point)
}

fn missing_options(have: &[String], want: &[&str]) -> Vec<String> {
    want.iter().filter(|w| !have.iter().any(|h| h == *w)).map(|w| w.to_string()).collect()
}

/// Undo the kernel's `\ooo` escapes (space, tab, newline, backslash).
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = (b[i + 1] - b'0') as u32 * 64 + (b[i + 2] - b'0') as u32 * 8 + (b[i + 3] - b'0') as u32;
            if v <= 0xff {
                out.push(v as u8);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The parts of `/proc/<pid>/stat` the agent needs.
#[derive(Debug, Clone, PartialEq)]
struct ProcStat {
    pid: i64,
    comm: String,
    state: char,
    ppid: i64,
}

/// Parse `pid (comm) state ppid ...`; comm may hold spaces and parentheses,
/// so it ends at the last `)`.
fn parse_stat(text: &str) -> Option<ProcStat> {
    let open = text.find(" (")?;
    let close = text.rfind(')')?;
    if close < open + 2 {
        return None;
    }
    let pid = text[..open].trim().parse().ok()?;
    let comm = text[open + 2..close].to_string();
    let mut rest = text[close + 1..].split_whitespace();
    let state_tok = rest.next()?;
    let mut chars = state_tok.chars();
    let state = chars.next()?;
    if chars.next().is_some() {
        return None;
    }
    let ppid = rest.next()?.parse().ok()?;
    Some(ProcStat { pid, comm, state, ppid })
}

/// Parse the decimal pid B sends, `123\n`.
fn parse_pid_message(bytes: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(bytes).ok()?;
    let v: i64 = s.trim().parse().ok()?;
    if v > 1 {
        Some(v)
    } else {
        None
    }
}

/// Write `pid` and a newline into `buf` without allocating; returns the length.
fn format_pid(pid: libc::pid_t, buf: &mut [u8; 24]) -> usize {
    let mut digits = [0u8; 20];
    let mut n = 0;
    let mut v = if pid < 0 { 0u64 } else { pid as u64 };
    loop {
        digits[n] = b'0' + (v % 10) as u8;
        n += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for i in 0..n {
        buf[i] = digits[n - 1 - i];
    }
    buf[n] = b'\n';
    n + 1
}

fn signal_name(sig: libc::c_int) -> &'static str {
    match sig {
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        _ => "signal",
    }
}

/// The errno's symbolic name, e.g. `EROFS`, or the error text.
fn errno_desc(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => match errno_name(code) {
            Some(name) => name.to_string(),
            None => format!("errno {code}"),
        },
        None => e.to_string(),
    }
}

fn errno_name(code: libc::c_int) -> Option<&'static str> {
    qemu_tests::errno::name(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use qemu_tests::event::{parse_agent_line, AgentLine};

    #[test]
    fn mode_from_cmdline() {
        assert_eq!(parse_mode("console=ttyS0 quiet\n"), "none");
        assert_eq!(parse_mode(""), "none");
        assert_eq!(parse_mode("console=ttyAMA0 berth.test=poweroff rdinit=/berth\n"), "poweroff");
        assert_eq!(parse_mode("berth.test=reboot-once"), "reboot-once");
        assert_eq!(parse_mode("berth.test=\"reboot\" x"), "reboot");
        assert_eq!(parse_mode("berth.test=none berth.test=reboot"), "reboot");
        assert_eq!(parse_mode("xberth.test=reboot berth.testing=1"), "none");
        assert_eq!(parse_mode("berth.test="), "");
    }

    const MOUNTINFO: &str = "\
22 1 254:0 / / ro,relatime - squashfs /dev/vda ro,errors=continue
23 22 0:5 / /proc rw,nosuid,nodev,noexec,relatime shared:2 - proc proc rw
30 22 254:16 / /data rw,relatime shared:7 - ext4 /dev/vdb rw
31 22 254:16 / /data rw,nosuid,nodev,noexec,relatime shared:8 master:1 - ext4 /dev/vdb rw,errors=remount-ro
32 22 0:30 / /mnt/with\\040space rw - tmpfs none rw
";

    #[test]
    fn mountinfo_parsing() {
        let m = find_mount(MOUNTINFO, "/data").unwrap();
        assert_eq!(m.mount_opts, ["rw", "nosuid", "nodev", "noexec", "relatime"]);
        assert_eq!(m.fstype, "ext4");
        assert_eq!(m.source, "/dev/vdb");
        assert_eq!(m.super_opts, "rw,errors=remount-ro");
        assert!(missing_options(&m.mount_opts, &["rw", "nosuid", "nodev", "noexec"]).is_empty());
        let root = find_mount(MOUNTINFO, "/").unwrap();
        assert_eq!(missing_options(&root.mount_opts, &["rw", "nosuid"]), ["rw", "nosuid"]);
        assert_eq!(find_mount(MOUNTINFO, "/mnt/with space").unwrap().fstype, "tmpfs");
        assert_eq!(find_mount(MOUNTINFO, "/nope"), None);
        for bad in ["", "1 2 3", "1 2 3:4 / /x rw a b c d", "1 2 3:4 / /x rw - ext4"] {
            assert_eq!(parse_mountinfo_line(bad), None, "{bad:?}");
        }
        assert_eq!(unescape_octal("a\\134b\\011c\\"), "a\\b\tc\\");
        assert_eq!(unescape_octal("\\12x"), "\\12x");
    }

    #[test]
    fn stat_parsing() {
        let st = parse_stat("1234 (sleep) Z 1 1234 1234 0 -1 4194560 ...").unwrap();
        assert_eq!(st, ProcStat { pid: 1234, comm: "sleep".into(), state: 'Z', ppid: 1 });
        let st = parse_stat("77 (we (ird) ) S 12 77 77 0\n").unwrap();
        assert_eq!((st.comm.as_str(), st.state, st.ppid), ("we (ird) ", 'S', 12));
        let st = parse_stat("5 () R 0 0").unwrap();
        assert_eq!((st.comm.as_str(), st.ppid), ("", 0));
        for bad in ["", "12", "12 (x", "12 (x) ", "12 (x) SS 1", "12 (x) S", "12 (x) S y", "x (y) S 1", ")( S 1"] {
            assert_eq!(parse_stat(bad), None, "{bad:?}");
        }
        // This process's own stat parses.
        let me = fs::read_to_string("/proc/self/stat").unwrap();
        let st = parse_stat(&me).unwrap();
        assert_eq!(st.pid, std::process::id() as i64);
        assert!(st.state == 'R' || st.state == 'S');
    }

    #[test]
    fn pid_message_and_format() {
        let mut buf = [0u8; 24];
        let n = format_pid(4321, &mut buf);
        assert_eq!(&buf[..n], b"4321\n");
        assert_eq!(parse_pid_message(&buf[..n]), Some(4321));
        let n = format_pid(0, &mut buf);
        assert_eq!(&buf[..n], b"0\n");
        let n = format_pid(libc::pid_t::MAX, &mut buf);
        assert_eq!(parse_pid_message(&buf[..n]), Some(libc::pid_t::MAX as i64));
        assert_eq!(parse_pid_message(b""), None);
        assert_eq!(parse_pid_message(b"1\n"), None);
        assert_eq!(parse_pid_message(b"12x"), None);
    }

    #[test]
    fn pid1_rule() {
        assert!(pid1_ok(Some("berth"), Some("/sbin/berth")));
        assert!(!pid1_ok(Some("berth"), Some("/sbin/berthx")));
        assert!(!pid1_ok(Some("berth"), Some("/sbin/berth (deleted)")));
        assert!(!pid1_ok(Some("init"), Some("/sbin/berth")));
        assert!(!pid1_ok(None, Some("/berth")));
        assert!(!pid1_ok(Some("berth"), None));
    }

    #[test]
    fn check_lines_parse_back() {
        let line = check_line("rootfs-ro", false, "open=created mkdir=\"EEXIST\"\n");
        assert_eq!(
            parse_agent_line(&line),
            Some(AgentLine::Check { name: "rootfs-ro".into(), passed: false, detail: "open=created mkdir=\"EEXIST\"\n".into() })
        );
        assert!(check_line("pid1", true, "x").starts_with("AGENT check=pid1 result=pass detail=\"x\""));
    }

    #[test]
    fn route_and_tokens() {
        let route = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n\
eth0\t0002000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\n\
eth0\t00000000\t0202000A\t0003\t0\t0\t0\t00000000\n";
        assert_eq!(default_route(route), Some(("eth0".into(), [10, 0, 2, 2])));
        assert_eq!(default_route("Iface\n"), None);
        assert_eq!(token("a berth.test.net-port=4242 b", "berth.test.net-port"), Some("4242"));
        assert_eq!(token("berth.test.fuzz=1", "berth.test"), None);
        let mut x = 1;
        let frames: Vec<Vec<u8>> = (0..12).map(|i| fuzz_frame(&mut x, i)).collect();
        assert!(u32::from_le_bytes(frames[1][..4].try_into().unwrap()) > 512);
        assert!(frames[5].len() <= 3);
    }

    #[test]
    fn errno_names() {
        assert_eq!(errno_desc(&io::Error::from_raw_os_error(libc::EROFS)), "EROFS");
        assert_eq!(errno_desc(&io::Error::from_raw_os_error(9999)), "errno 9999");
        assert_eq!(errno_desc(&io::Error::other("boom")), "boom");
    }
}
