//! Part 3: boot to ready under QEMU aarch64 (TCG), from berth's own event
//! timestamps (`t=`, seconds since boot on the guest's monotonic clock).
//!
//! The system is `qemu-tests/manifests/bench-boot/`: eight containers from
//! the demo's two images (the demo itself has two). Per boot: the kernel's
//! part is 0 to berth's first event; berth's part is its first event to
//! the last container ready (`container.ready` when every container reports
//! one, else `container.start`, which berth logs once the container's
//! program has exec'd). The guest agent runs in mode `bench` and reports
//! berth's RSS every second; the steady figure is its first reading five
//! seconds after every container started.

use super::stats::Stats;
use super::{Field, Report};
use crate::artifacts::{self, BootOpts, Variant};
use berth::release::board::Arch;
use qemu_tests::event::Event;
use qemu_tests::machine::Machine;
use std::path::Path;
use std::time::{Duration, Instant};

const BOOT_TIMEOUT: Duration = Duration::from_secs(240);
/// How long after the last start berth counts as steady.
pub const SETTLE: Duration = Duration::from_secs(5);

/// One container's bar: launch begins (the previous start ended), its
/// program exec'd, it is ready; milliseconds since boot.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub name: String,
    pub launch_ms: f64,
    pub start_ms: f64,
    pub ready_ms: f64,
}

/// One boot as berth logged it.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    /// berth's first event.
    pub kernel_ms: f64,
    /// berth's boot stages: name, from, to.
    pub stages: Vec<(String, f64, f64)>,
    pub bars: Vec<Bar>,
    /// `container.ready` or `container.start`.
    pub ready_event: &'static str,
    /// berth's memory reserve (`memory.reserve min_kib`, when its result
    /// was ok): the `memory.min` of its host cgroup.
    pub reserve_kib: Option<u64>,
}

impl Timeline {
    pub fn all_ready_ms(&self) -> f64 {
        self.bars.iter().map(|b| b.ready_ms).fold(self.kernel_ms, f64::max)
    }

    pub fn summary(&self) -> String {
        let starts: Vec<f64> = self.bars.iter().map(|b| b.start_ms - b.launch_ms).collect();
        let s = Stats::of(&starts);
        format!(
            "part 3: the picture shows the median boot: kernel {:.0} ms, berth to all {} ready {:.0} ms; \
             each container's start (launch to exec) median {:.1} ms, min {:.1}, max {:.1}; \
             system: qemu-tests/manifests/bench-boot (8 containers from the demo's sensor and flaky images)",
            self.kernel_ms,
            self.bars.len(),
            self.all_ready_ms() - self.kernel_ms,
            s.map_or(f64::NAN, |s| s.median),
            s.map_or(f64::NAN, |s| s.min),
            s.map_or(f64::NAN, |s| s.max),
        )
    }
}

/// Build the timeline of one boot from its events (in console order).
pub fn timeline(events: &[Event], names: &[String]) -> Result<Timeline, String> {
    let first = events.first().ok_or("no event")?;
    let kernel_ms = first.t * 1e3;
    let mut marks: Vec<(String, f64)> = Vec::new();
    for e in events {
        if e.name == "boot.stage" {
            marks.push((e.get("stage").unwrap_or("?").to_string(), e.t * 1e3));
        } else if e.name == "boot.start" && e.is("stage", "system") {
            marks.push(("re-exec".to_string(), e.t * 1e3));
        }
    }
    let mut bars: Vec<Bar> = Vec::new();
    let mut prev = events.iter().find(|e| e.name == "containers.prepared").map(|e| e.t * 1e3);
    for e in events.iter().filter(|e| e.name == "container.start" && e.is("result", "ok")) {
        let name = e.get("name").unwrap_or("?").to_string();
        if bars.iter().any(|b| b.name == name) {
            continue; // a restart
        }
        let start_ms = e.t * 1e3;
        bars.push(Bar { name, launch_ms: prev.unwrap_or(start_ms), start_ms, ready_ms: start_ms });
        prev = Some(start_ms);
    }
    for n in names {
        if !bars.iter().any(|b| &b.name == n) {
            return Err(format!("container {n} never started"));
        }
    }
    let ready: Vec<(String, f64)> =
        events.iter().filter(|e| e.name == "container.ready").filter_map(|e| Some((e.get("name")?.to_string(), e.t * 1e3))).collect();
    let every = bars.iter().all(|b| ready.iter().any(|(n, _)| *n == b.name));
    if every {
        for b in bars.iter_mut() {
            if let Some((_, t)) = ready.iter().find(|(n, _)| *n == b.name) {
                b.ready_ms = *t;
            }
        }
    }
    let end = bars.iter().map(|b| b.ready_ms).fold(kernel_ms, f64::max);
    let stages = marks.iter().enumerate().map(|(i, (n, from))| (n.clone(), *from, marks.get(i + 1).map_or(end, |(_, t)| *t))).collect();
    let reserve_kib = events.iter().find(|e| e.name == "memory.reserve" && e.is("result", "ok")).and_then(|e| e.get("min_kib")?.parse().ok());
    Ok(Timeline { kernel_ms, stages, bars, ready_event: if every { "container.ready" } else { "container.start" }, reserve_kib })
}

/// The boot's timeline, PID 1's VmRSS once settled, and the loop's worst stall (µs).
fn boot_once(art: &artifacts::Artifacts, n: usize, names: &[String]) -> Result<(Timeline, u64, u64), String> {
    let runs = art.dir.join("runs");
    std::fs::create_dir_all(&runs).map_err(|e| e.to_string())?;
    let data = runs.join(format!("bench-boot-{n}.img"));
    artifacts::fresh_data(art, &data)?;
    let opts = BootOpts { agent: true, cmdline: "berth.test=bench".into(), ..Default::default() };
    let (prog, args) = artifacts::qemu_args(art, &data, &opts);
    let mut m = Machine::spawn(&format!("bench-boot-{n}"), &prog, &args)?;
    m.log_to(runs.join(format!("bench-boot-{n}.console.log")))?;
    let t0 = Instant::now();
    let left = || BOOT_TIMEOUT.saturating_sub(t0.elapsed());
    let mut seen: Vec<String> = Vec::new();
    while seen.len() < names.len() {
        let e = m.expect_event("container.start", left())?;
        if !e.is("result", "ok") {
            return Err(format!("a container did not start: {e:?}"));
        }
        if let Some(name) = e.get("name") {
            if !seen.iter().any(|s| s == name) {
                seen.push(name.to_string());
            }
        }
    }
    // The loop's worst stall over the boot: the first reading of its
    // recent record (the last 10 s or more) once everything started.
    let stall_us = m.expect_agent_measure("loop_recent_us", Duration::from_secs(30))?;
    let started = Instant::now();
    let rss = loop {
        let v = m.expect_agent_measure("rss_kib", Duration::from_secs(30))?;
        if started.elapsed() >= SETTLE {
            break v;
        }
    };
    let events = m.events();
    m.kill();
    Ok((timeline(&events, names)?, rss, stall_us))
}

/// Boot `boots` times; fills `boot_*` and `rss_kib_steady`; returns the
/// median boot's timeline.
pub fn run(root: &Path, boots: usize, report: &mut Report) -> Result<Timeline, String> {
    crate::tools::ensure_host_tools(root, &[Arch::Aarch64.rust_target()], true)?;
    let variant = Variant { suffix: "-bench".into(), manifests: Some(root.join("qemu-tests/manifests/bench-boot")), ..Default::default() };
    let art = artifacts::build(root, &artifacts::board_path(root, Arch::Aarch64), &variant)?;
    let names: Vec<String> = art.release.containers.iter().map(|c| c.name.to_string()).collect();
    let mut all = Vec::new();
    let mut rss = Vec::new();
    let mut stalls = Vec::new();
    for n in 0..boots {
        crate::say(&format!("boot benchmark: boot {} of {boots} ({} containers, aarch64 under TCG)", n + 1, names.len()));
        let (t, r, stall_us) = boot_once(&art, n, &names)?;
        all.push(t);
        rss.push(r as f64);
        stalls.push(stall_us as f64 / 1e3);
    }
    let kernel: Vec<f64> = all.iter().map(|t| t.kernel_ms).collect();
    let berth: Vec<f64> = all.iter().map(|t| t.all_ready_ms() - t.kernel_ms).collect();
    let ratio: Vec<f64> = kernel.iter().zip(&berth).map(|(k, b)| b / k).collect();
    let ready = all.first().map_or("container.start", |t| t.ready_event);
    let note = format!("QEMU aarch64 (TCG), {} containers; ready = {ready}; from berth's event timestamps", names.len());
    report.set(Field::from_stats("boot_ms_kernel", "ms", Stats::of(&kernel), "kernel start to berth's first event"));
    report.set(Field::from_stats("boot_ms_berth_to_all_ready", "ms", Stats::of(&berth), &note));
    report.set(Field::from_stats("boot_ratio_berth_vs_kernel", "x", Stats::of(&ratio), "per boot"));
    report.set(Field::from_stats(
        "loop_stall_ms_boot",
        "ms",
        Stats::of(&stalls),
        "aarch64 under TCG; berth's longest loop handler or watchdog pet lateness (berthctl status, recent record) over the boot, per boot",
    ));
    report.set(Field::from_stats(
        "rss_kib_steady",
        "KiB",
        Stats::of(&rss),
        &format!("aarch64, VmRSS of PID 1 {} s after the 8-container system started", SETTLE.as_secs()),
    ));
    report.set(match all.first().and_then(|t| t.reserve_kib) {
        Some(k) => {
            Field::single("memory_reserve_kib", "KiB", k as f64, "memory.min of berth's host cgroup (budgets.host_reserve_kib), from the memory.reserve event")
        }
        None => Field::missing("memory_reserve_kib", "KiB", "no memory.reserve event with result=ok"),
    });
    let mut order: Vec<usize> = (0..all.len()).collect();
    order.sort_by(|a, b| berth.get(*a).unwrap_or(&0.0).total_cmp(berth.get(*b).unwrap_or(&0.0)));
    let mid = order.get(order.len() / 2).copied().unwrap_or(0);
    all.into_iter().nth(mid).ok_or_else(|| "no boot".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use qemu_tests::event::parse_line;

    fn evs(lines: &[&str]) -> Vec<Event> {
        lines.iter().map(|l| parse_line(l).unwrap()).collect()
    }

    const BOOT: &[&str] = &[
        "BERTH t=1.500000 ev=boot.start pid=1 stage=initramfs",
        "BERTH t=1.510000 ev=boot.stage stage=early-mounts",
        "BERTH t=2.000000 ev=boot.start pid=1 stage=system",
        "BERTH t=2.050000 ev=memory.reserve cgroup=/sys/fs/cgroup/host min_kib=16384 result=ok",
        "BERTH t=2.100000 ev=boot.stage stage=containers",
        "BERTH t=2.200000 ev=containers.prepared count=2 of=2",
        "BERTH t=2.300000 ev=container.start name=a result=ok",
        "BERTH t=2.450000 ev=container.start name=b result=ok",
        "BERTH t=3.000000 ev=container.start name=a result=ok",
    ];

    #[test]
    fn the_timeline_follows_the_events() {
        let t = timeline(&evs(BOOT), &["a".into(), "b".into()]).unwrap();
        assert_eq!(t.kernel_ms, 1500.0);
        assert_eq!(t.ready_event, "container.start");
        assert_eq!(t.bars.len(), 2, "a restart is no new bar");
        assert_eq!((t.bars[0].launch_ms, t.bars[0].start_ms), (2200.0, 2300.0));
        assert_eq!((t.bars[1].launch_ms, t.bars[1].start_ms), (2300.0, 2450.0));
        assert_eq!(t.all_ready_ms(), 2450.0);
        assert_eq!(t.reserve_kib, Some(16384));
        let names: Vec<&str> = t.stages.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(names, ["early-mounts", "re-exec", "containers"]);
        assert_eq!(t.stages[2].2, 2450.0, "the last stage ends when all are ready");
    }

    #[test]
    fn ready_events_count_only_when_every_container_has_one() {
        let mut lines = BOOT.to_vec();
        lines.push("BERTH t=2.600000 ev=container.ready name=a");
        let t = timeline(&evs(&lines), &["a".into(), "b".into()]).unwrap();
        assert_eq!(t.ready_event, "container.start");
        lines.push("BERTH t=2.900000 ev=container.ready name=b");
        let t = timeline(&evs(&lines), &["a".into(), "b".into()]).unwrap();
        assert_eq!(t.ready_event, "container.ready");
        assert_eq!(t.all_ready_ms(), 2900.0);
        assert!(timeline(&evs(BOOT), &["a".into(), "c".into()]).is_err(), "a container that never started");
    }
}
