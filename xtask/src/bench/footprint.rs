//! Part 4: footprint. The stripped static berth per architecture, and
//! berth's RSS before and after many restarts of a crash-looping container.
//!
//! The restart system is `qemu-tests/manifests/bench-restarts/`: the demo's
//! two containers and `crasher`, which exits 1 at once and is restarted after
//! 10 ms (`restart = "always"`, the smallest backoff a manifest allows, the
//! highest crash-loop limit; the guest agent in mode `bench` starts it again
//! whenever the limit marks it failed). It boots x86_64 with KVM when
//! `/dev/kvm` opens and that boot works, else aarch64 under TCG (the notes
//! say which, and why). The RSS before is the agent's first reading five
//! seconds after the three containers started; then the restarts are counted
//! from berth's `container.start name=crasher` events; the RSS after is the
//! agent's next reading.

use super::{Field, Report};
use crate::artifacts::{self, BootOpts, Variant};
use berth::release::board::Arch;
use qemu_tests::machine::Machine;
use std::path::Path;
use std::time::{Duration, Instant};

/// Longest wait for one restart before the run is called stuck.
const RESTART_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a KVM boot may take to reach berth before KVM is given up.
const KVM_PROBE: Duration = Duration::from_secs(30);

/// `try_kvm`: try the x86_64 KVM boot first (off for `--quick`, whose few
/// restarts take seconds under TCG).
pub fn run(root: &Path, restarts: usize, try_kvm: bool, report: &mut Report, notes: &mut Vec<String>) -> Result<(), String> {
    for arch in Arch::ALL {
        crate::tools::ensure_host_tools(root, &[arch.rust_target()], false)?;
        let bin = artifacts::cross_build(root, arch, "berth", "berth")?;
        let size = std::fs::metadata(&bin).map_err(|e| format!("{}: {e}", bin.display()))?.len();
        let note = format!("{}, release profile (size-tuned, stripped, static)", arch.rust_target());
        report.set(Field::single(&format!("size_bytes_{}", arch.name()), "bytes", size as f64, &note));
    }
    restart_run(root, restarts, try_kvm, report, notes)
}

fn kvm_usable() -> bool {
    std::env::consts::ARCH == "x86_64" && std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok()
}

fn restart_run(root: &Path, restarts: usize, try_kvm: bool, report: &mut Report, notes: &mut Vec<String>) -> Result<(), String> {
    if try_kvm && kvm_usable() {
        match boot_restarts(root, true) {
            Ok(m) => return count(m, true, restarts, report, notes),
            Err(e) => {
                let first = e.lines().find(|l| l.contains("error") || l.contains("rror")).unwrap_or(e.lines().next().unwrap_or(""));
                notes.push(format!("part 4: /dev/kvm opens but the x86_64 KVM boot failed ({}); fell back to aarch64 under TCG", first.trim()));
            }
        }
    }
    let m = boot_restarts(root, false)?;
    count(m, false, restarts, report, notes)
}

/// Boot the restart system; returns once its three containers have started.
fn boot_restarts(root: &Path, kvm: bool) -> Result<Machine, String> {
    let arch = if kvm { Arch::X86_64 } else { Arch::Aarch64 };
    crate::tools::ensure_host_tools(root, &[arch.rust_target()], true)?;
    let variant = Variant { suffix: "-bench-restarts".into(), manifests: Some(root.join("qemu-tests/manifests/bench-restarts")), ..Default::default() };
    let art = artifacts::build(root, &artifacts::board_path(root, arch), &variant)?;
    let runs = art.dir.join("runs");
    std::fs::create_dir_all(&runs).map_err(|e| e.to_string())?;
    let data = runs.join("bench-restarts.img");
    artifacts::fresh_data(&art, &data)?;
    let opts = BootOpts { agent: true, kvm, cmdline: "berth.test=bench".into(), ..Default::default() };
    let (prog, args) = artifacts::qemu_args(&art, &data, &opts);
    let mut m = Machine::spawn("bench-restarts", &prog, &args)?;
    m.log_to(runs.join("bench-restarts.console.log"))?;
    let names: Vec<String> = art.release.containers.iter().map(|c| c.name.to_string()).collect();
    if kvm {
        // A KVM that cannot run the guest stalls it rather than ending QEMU.
        m.expect_event("boot.start", KVM_PROBE)?;
    }
    let mut seen: Vec<String> = Vec::new();
    while seen.len() < names.len() {
        let e = m.expect_event("container.start", Duration::from_secs(240))?;
        if let Some(n) = e.get("name").filter(|n| !seen.iter().any(|s| s == n)) {
            seen.push(n.to_string());
        }
    }
    Ok(m)
}

/// Time for sensor's ring to fill: its lines at 50 ms, half as much again.
const RINGS_FULL: Duration = Duration::from_millis(berth::common::logstore::RING_LINES as u64 * 50 * 3 / 2);

fn count(mut m: Machine, kvm: bool, restarts: usize, report: &mut Report, notes: &mut Vec<String>) -> Result<(), String> {
    let started = Instant::now();
    // The first reading once every output ring is full: sensor's (a line
    // every 50 ms) and berth's own (crasher's events), so that what the
    // rings hold at their fullest is not counted as growth.
    let crasher_starts = |m: &Machine| m.events().iter().filter(|e| e.name == "container.start" && e.is("name", "crasher")).count();
    let (before, anon_before) = loop {
        let v = m.expect_agent_measure("rss_kib", Duration::from_secs(30))?;
        let anon = m.expect_agent_measure("rss_anon_kib", Duration::from_secs(30))?;
        if started.elapsed() >= RINGS_FULL.max(super::boot::SETTLE) && crasher_starts(&m) > berth::common::logstore::RING_LINES {
            break (v, anon);
        }
    };
    let earlier = m.events().iter().filter(|e| e.name == "container.start" && e.is("name", "crasher")).count();
    m.set_cursor(m.lines().len());
    let counting_from = m.lines().len();
    let how = if kvm { "x86_64 with KVM" } else { "aarch64 under TCG" };
    crate::say(&format!("restart benchmark ({how}): counting {restarts} restarts of crasher"));
    let t0 = Instant::now();
    let mut done = 0usize;
    while done < restarts {
        m.expect_event_where("container.start", |e| e.is("name", "crasher") && e.is("result", "ok"), RESTART_TIMEOUT)?;
        done += 1;
        if done.is_multiple_of(1000) {
            crate::say(&format!("  {done} restarts, {:.0} s", t0.elapsed().as_secs_f64()));
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    // The loop's worst stall: every reading of its recent record (the last
    // 10 s or more) during the restarts, and the first one after them.
    let stall_lines = m.lines().len();
    let next_stall = m.expect_agent_measure("loop_recent_us", Duration::from_secs(30))?;
    let lines = m.lines();
    let during = worst_measure(lines.get(counting_from..stall_lines).unwrap_or(&[]), "loop_recent_us");
    let stall_ms = during.unwrap_or(0).max(next_stall) as f64 / 1e3;
    let after = m.expect_agent_measure("rss_kib", Duration::from_secs(30))?;
    let anon_after = m.expect_agent_measure("rss_anon_kib", Duration::from_secs(30))?;
    let failed = m.events().iter().filter(|e| e.name == "container.failed").count();
    m.kill();
    let note = format!("{how}; VmRSS of PID 1 after {done} restarts of crasher ({earlier} before the first reading)");
    report.set(Field::single("rss_kib_after_restarts", "KiB", after as f64, &note));
    report.set(Field::single("rss_kib_before_restarts", "KiB", before as f64, &format!("{how}; the same boot, before the counted restarts")));
    let anon = "RssAnon of PID 1 (heap and stack; VmRSS also counts the binary's pages as they are first used)";
    report.set(Field::single("rss_anon_kib_before_restarts", "KiB", anon_before as f64, &format!("{how}; {anon}, before the counted restarts")));
    report.set(Field::single("rss_anon_kib_after_restarts", "KiB", anon_after as f64, &format!("{how}; {anon}, after them")));
    report.set(Field::single("restarts_done", "count", done as f64, "restarts counted between the two readings"));
    report.set(Field::single(
        "loop_stall_ms_restarts",
        "ms",
        stall_ms,
        &format!("{how}; berth's longest loop handler or watchdog pet lateness (berthctl status, recent record) during the restarts"),
    ));
    report.set(Field::single("restarts_seconds", "s", secs, &format!("{how}; {:.1} ms per restart, 10 ms of it the backoff", secs * 1e3 / done.max(1) as f64)));
    notes.push(format!(
        "part 4: {done} restarts in {secs:.0} s ({how}); the crash-loop limit marked crasher failed {failed} times (the agent starts it again each time)"
    ));
    Ok(())
}

/// The largest `AGENT measure=<name>` value among `lines`.
fn worst_measure(lines: &[String], name: &str) -> Option<u64> {
    use qemu_tests::event::{parse_agent_line, AgentLine};
    lines
        .iter()
        .filter_map(|l| match parse_agent_line(l) {
            Some(AgentLine::Measure { name: n, value }) if n == name => Some(value),
            _ => None,
        })
        .max()
}
