//! Part 5: an update of a running system under QEMU aarch64 (TCG), from
//! berth's own event timestamps.
//!
//! The system is the `update` test variant (`qemu-tests/manifests/update/`:
//! `sensor` and `meter`; release 2 changes `sensor` only). The guest agent
//! runs in mode `update` and applies `/data/test/v2.bundle`; each boot ends
//! at `update.done` (after the commit window).
//!
//! Per boot:
//! - the update: `update.staged` to the new `sensor`'s `container.ready`
//!   (the trial record, mapping the new image, stopping the old run,
//!   preparing and starting the new one);
//! - the cold start: the same container's start at boot, from the moment
//!   berth turns to it (`containers.prepared`, or the previous container's
//!   `container.start` when one started before it) to its first
//!   `container.ready`. Measured from `boot.stage stage=containers` instead
//!   (as `qemu_tests::updates::measure_update` does) it would also count
//!   preparing and starting the other container, flattering the ratio;
//! - unchanged containers started or stopped between `update.staged` and
//!   `release.commit` (from `measure_update`);
//! - the loop's worst stall over the update, from the start of its staging
//!   to the commit (`update.done loop_max_ms`, `pet_late_max_ms`).

use super::stats::Stats;
use super::{Field, Report};
use crate::artifacts::{self, BootOpts};
use berth::release::board::Arch;
use qemu_tests::event::Event;
use qemu_tests::machine::Machine;
use std::path::Path;
use std::time::Duration;

/// The container release 2 changes.
const CHANGED: &str = "sensor";
const BOOT_TIMEOUT: Duration = Duration::from_secs(240);
/// Staging to `update.done`: the switch and the 5 s commit window, under TCG.
const UPDATE_TIMEOUT: Duration = Duration::from_secs(180);

/// One boot's figures, in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Run {
    pub update_s: f64,
    pub cold_s: f64,
    pub unchanged_restarted: usize,
}

/// The cold start of `name` at boot: from when berth turns to it (the
/// later of `containers.prepared` and the last `container.start` before its
/// own: berth starts containers one at a time) to its first
/// `container.ready`.
pub fn cold_start(events: &[Event], name: &str) -> Result<f64, String> {
    let prepared = events.iter().position(|e| e.name == "containers.prepared").ok_or("no containers.prepared event")?;
    let after = || events.iter().skip(prepared);
    let mut turn = None;
    for e in after() {
        if e.name == "containers.prepared" || e.name == "container.start" {
            if e.is("name", name) && e.is("result", "ok") {
                let ready = after().find(|r| r.name == "container.ready" && r.is("name", name)).ok_or_else(|| format!("{name} never became ready at boot"))?;
                return turn.map(|t| ready.t - t).ok_or_else(|| "no containers.prepared event".to_string());
            }
            turn = Some(e.t);
        }
    }
    Err(format!("{name} never started at boot"))
}

/// One boot's figures from its events.
pub fn measure(events: &[Event]) -> Result<Run, String> {
    let t = qemu_tests::updates::measure_update(events, CHANGED)?;
    Ok(Run { update_s: t.staged_to_ready_s, cold_s: cold_start(events, CHANGED)?, unchanged_restarted: t.unchanged_restarted })
}

fn update_once(art: &artifacts::Artifacts, n: usize) -> Result<(Run, f64), String> {
    let runs = art.dir.join("runs");
    std::fs::create_dir_all(&runs).map_err(|e| e.to_string())?;
    let data = runs.join(format!("bench-update-{n}.img"));
    artifacts::fresh_data(art, &data)?;
    let opts = BootOpts { agent: true, cmdline: "berth.test=update".into(), ..Default::default() };
    let (prog, args) = artifacts::qemu_args(art, &data, &opts);
    let mut m = Machine::spawn(&format!("bench-update-{n}"), &prog, &args)?;
    m.log_to(runs.join(format!("bench-update-{n}.console.log")))?;
    let staged = m.expect_event("update.staged", BOOT_TIMEOUT)?;
    if !staged.is("version", "2") {
        return Err(format!("staged the wrong release: {staged:?}"));
    }
    m.expect_event("release.commit", UPDATE_TIMEOUT)?;
    let done = m.expect_event("update.done", UPDATE_TIMEOUT)?;
    let events = m.events();
    m.kill();
    Ok((measure(&events)?, stall_ms(&done)?))
}

/// The loop's worst stall over an update, ms: the longer of its longest
/// handler and its latest watchdog pet (`update.done`).
pub fn stall_ms(done: &Event) -> Result<f64, String> {
    let ms = |k: &str| done.get(k).and_then(|v| v.parse::<f64>().ok()).ok_or_else(|| format!("update.done has no {k}: {:?}", done.fields));
    Ok(ms("loop_max_ms")?.max(ms("pet_late_max_ms")?))
}

/// Boot `boots` times; fills `update_*`. Returns a note.
pub fn run(root: &Path, boots: usize, report: &mut Report) -> Result<String, String> {
    crate::tools::ensure_host_tools(root, &[Arch::Aarch64.rust_target()], true)?;
    let variant = crate::variants(root).into_iter().find(|(n, _)| *n == "update").map(|(_, v)| v).ok_or("no `update` variant")?;
    let art = artifacts::build(root, &artifacts::board_path(root, Arch::Aarch64), &variant)?;
    let mut all = Vec::new();
    let mut stalls = Vec::new();
    for n in 0..boots {
        crate::say(&format!("update benchmark: boot {} of {boots} (release 1 to 2, aarch64 under TCG)", n + 1));
        let (run, stall) = update_once(&art, n)?;
        all.push(run);
        stalls.push(stall);
    }
    let worst = stalls.iter().copied().fold(0.0, f64::max);
    report.set(Field {
        name: "loop_stall_ms_update".into(),
        unit: "ms",
        value: Some(worst),
        min: stalls.iter().copied().reduce(f64::min),
        max: Some(worst),
        runs: stalls.len(),
        note: "the most over the boots: berth's longest loop handler or watchdog pet lateness from the start of the staging to the commit (update.done)".into(),
    });
    let ms = |f: fn(&Run) -> f64| -> Vec<f64> { all.iter().map(|r| f(r) * 1e3).collect() };
    let ratio: Vec<f64> = all.iter().map(|r| r.update_s / r.cold_s).collect();
    report.set(Field::from_stats(
        "update_ratio_vs_cold_start",
        "x",
        Stats::of(&ratio),
        "per boot: update.staged to the new sensor's container.ready, over sensor's cold start at boot \
         (berth turning to it to its container.ready); QEMU aarch64 (TCG), qemu-tests/manifests/update",
    ));
    let restarted: Vec<f64> = all.iter().map(|r| r.unchanged_restarted as f64).collect();
    let worst = restarted.iter().copied().fold(0.0, f64::max);
    report.set(Field {
        name: "update_unchanged_restarted".into(),
        unit: "count",
        value: Some(worst),
        min: restarted.iter().copied().reduce(f64::min),
        max: Some(worst),
        runs: all.len(),
        note: "the most over the boots: containers other than sensor started or stopped from update.staged to release.commit".into(),
    });
    report.set(Field::from_stats("update_ms_staged_to_ready", "ms", Stats::of(&ms(|r| r.update_s)), "update.staged to the new sensor's container.ready"));
    report.set(Field::from_stats("update_ms_cold_start", "ms", Stats::of(&ms(|r| r.cold_s)), "sensor at boot: berth turning to it to its container.ready"));
    Ok(format!(
        "part 5: {} boots of the `update` variant on aarch64 (TCG); the cold start excludes mapping the images \
         (done for all at boot before the containers stage), the update includes mapping the new one and stopping the old run",
        all.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use qemu_tests::event::parse_line;

    fn evs(lines: &[&str]) -> Vec<Event> {
        lines.iter().map(|l| parse_line(l).unwrap()).collect()
    }

    const BOOT: &[&str] = &[
        "BERTH t=5.0 ev=boot.stage stage=containers",
        "BERTH t=5.1 ev=containers.prepared count=2 of=2",
        "BERTH t=5.3 ev=container.start name=meter result=ok",
        "BERTH t=5.45 ev=container.start name=sensor result=ok",
        "BERTH t=5.5 ev=container.ready name=sensor by=start",
        "BERTH t=6.0 ev=update.staged version=2",
        "BERTH t=6.1 ev=container.stop name=sensor by=update",
        "BERTH t=6.3 ev=container.start name=sensor result=ok",
        "BERTH t=6.32 ev=container.ready name=sensor by=start",
        "BERTH t=11.4 ev=release.commit version=2",
    ];

    #[test]
    fn the_update_stall_is_the_worse_of_handler_and_pet() {
        let done = parse_line("BERTH t=9.0 ev=update.done version=2 store_writes=19 loop_max_ms=12.5 loop_max_kind=tick pet_late_max_ms=30.1").unwrap();
        assert_eq!(stall_ms(&done), Ok(30.1));
        assert!(stall_ms(&parse_line("BERTH t=9.0 ev=update.done version=2").unwrap()).is_err());
    }

    #[test]
    fn the_cold_start_counts_only_the_container_itself() {
        let r = measure(&evs(BOOT)).unwrap();
        assert!((r.cold_s - 0.2).abs() < 1e-9, "from meter's start, not from the stage: {r:?}");
        assert!((r.update_s - 0.32).abs() < 1e-9, "{r:?}");
        assert_eq!(r.unchanged_restarted, 0);
    }

    #[test]
    fn the_first_container_counts_from_the_preparation() {
        let mut lines = BOOT.to_vec();
        lines.remove(2);
        assert!((cold_start(&evs(&lines), "sensor").unwrap() - 0.4).abs() < 1e-9);
        assert!(cold_start(&evs(&BOOT[..4]), "sensor").is_err(), "never ready");
        assert!(cold_start(&evs(&BOOT[..3]), "sensor").is_err(), "never started");
        assert!(cold_start(&evs(&BOOT[2..]), "sensor").is_err(), "no preparation");
    }

    #[test]
    fn a_failed_start_before_it_is_berth_busy() {
        let mut lines = BOOT.to_vec();
        lines.insert(3, "BERTH t=5.4 ev=container.start name=meter result=error step=spawn");
        assert!((cold_start(&evs(&lines), "sensor").unwrap() - 0.1).abs() < 1e-9);
    }
}
