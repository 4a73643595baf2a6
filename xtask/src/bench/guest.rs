//! Part 6: container start latency on cgroup v2, inside a QEMU x86_64
//! guest booted by berth (TCG: KVM is not used, it is not everywhere and
//! nested KVM fails on the board's CPU model): berth's
//! own start path (`berth bench-start --cgroup v2`, where a container's
//! process is born in its cgroup with `CLONE_INTO_CGROUP`), `crun run` from
//! Debian's package for the guest's architecture, and the floor
//! (`berth-floor`), interleaved round by round by the guest driver
//! (`berth::cli::benchguest`), which prints a line per round.
//!
//! It must not measure anything on the host: every figure comes from the
//! guest's lines. The root filesystem, crun's `config.json` and the floor
//! are those of parts 1-2 ([`super::host`], [`super::oci`]); crun's shared
//! libraries are the closure of its `NEEDED` entries ([`super::elfdeps`]).

use super::stats::Stats;
use super::{elfdeps, host, oci, Field, Report};
use crate::artifacts::{self, BootOpts, ReleaseData, Variant};
use berth::cli::benchguest::{CRUN_CGROUP, DIR, NAME, PLAN_KEY, PREFIX};
use berth::release::board::{Arch, CgroupMode};
use qemu_tests::machine::Machine;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How much to run.
pub struct Plan {
    pub warmup: usize,
    pub rounds: usize,
}

/// One result line of the guest driver.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    Place(String),
    /// What a `mount-<i>` step of the breakdown is: `mount-3 bind ...`.
    Step(String),
    Round {
        berth_us: u64,
        crun_us: u64,
        floor_us: u64,
        berth_exec_us: u64,
        steps: Vec<(String, u64)>,
    },
    Done(usize),
    Error(String),
}

/// A console line as a driver line (`None`: not one).
pub fn parse_line(line: &str) -> Option<Result<Line, String>> {
    let at = line.find(PREFIX)?;
    let rest = line.get(at + PREFIX.len()..)?.trim_end();
    let field = |k: &str| rest.split_whitespace().find_map(|w| w.strip_prefix(k)).and_then(|v| v.parse::<u64>().ok());
    let bad = || Err(format!("bad driver line `{rest}`"));
    Some(if let Some(e) = rest.strip_prefix("error ") {
        Ok(Line::Error(e.to_string()))
    } else if let Some(how) = rest.strip_prefix("place how=") {
        Ok(Line::Place(how.to_string()))
    } else if let Some(step) = rest.strip_prefix("step ") {
        Ok(Line::Step(step.to_string()))
    } else if rest.starts_with("done ") {
        field("rounds=").map_or_else(bad, |n| Ok(Line::Done(n as usize)))
    } else if rest.starts_with("round=") {
        match (field("berth_us="), field("crun_us="), field("floor_us="), field("berth_exec_us=")) {
            (Some(b), Some(c), Some(f), Some(x)) if b > 0 && c > 0 && f > 0 && x <= b => match steps(rest) {
                Some(steps) => Ok(Line::Round { berth_us: b, crun_us: c, floor_us: f, berth_exec_us: x, steps }),
                None => bad(),
            },
            _ => bad(),
        }
    } else {
        bad()
    })
}

/// `berth_steps=<step>:<us>,...` of a round line (empty when absent or
/// empty); `None` when malformed.
fn steps(rest: &str) -> Option<Vec<(String, u64)>> {
    let Some(list) = rest.split_whitespace().find_map(|w| w.strip_prefix("berth_steps=")) else { return Some(Vec::new()) };
    list.split(',').filter(|p| !p.is_empty()).map(|p| p.split_once(':').and_then(|(k, v)| Some((k.to_string(), v.parse().ok()?)))).collect()
}

/// What a boot measured, in milliseconds per round.
#[derive(Debug, Clone, PartialEq)]
pub struct Results {
    pub place: String,
    pub berth: Vec<f64>,
    pub crun: Vec<f64>,
    pub floor: Vec<f64>,
    /// berth's own clock: launch until the program exec'd.
    pub berth_exec: Vec<f64>,
    /// That time step by step: per step (in order of first appearance), its
    /// microseconds in each round that had it.
    pub steps: Vec<(String, Vec<f64>)>,
    /// What each `mount-<i>` step is.
    pub legend: Vec<String>,
}

impl Results {
    /// Fold the driver's lines of one boot; `rounds` were asked for.
    pub fn of(lines: &[Line], rounds: usize) -> Result<Results, String> {
        let mut r = Results {
            place: String::new(),
            berth: Vec::new(),
            crun: Vec::new(),
            floor: Vec::new(),
            berth_exec: Vec::new(),
            steps: Vec::new(),
            legend: Vec::new(),
        };
        let mut done = None;
        for l in lines {
            match l {
                Line::Error(e) => return Err(format!("the guest driver failed: {e}")),
                Line::Place(how) => r.place = how.clone(),
                Line::Step(what) => r.legend.push(what.clone()),
                Line::Round { berth_us, crun_us, floor_us, berth_exec_us, steps } => {
                    for (name, us) in steps {
                        match r.steps.iter_mut().find(|(n, _)| n == name) {
                            Some((_, v)) => v.push(*us as f64),
                            None => r.steps.push((name.clone(), vec![*us as f64])),
                        }
                    }
                    r.berth_exec.push(*berth_exec_us as f64 / 1e3);
                    r.berth.push(*berth_us as f64 / 1e3);
                    r.crun.push(*crun_us as f64 / 1e3);
                    r.floor.push(*floor_us as f64 / 1e3);
                }
                Line::Done(n) => done = Some(*n),
            }
        }
        match done {
            Some(n) if n == rounds && r.berth.len() == rounds => Ok(r),
            Some(n) => Err(format!("the guest driver reported {n} rounds and printed {} of the {rounds} asked for", r.berth.len())),
            None => Err(format!("the guest driver did not finish ({} of {rounds} rounds)", r.berth.len())),
        }
    }

    /// Per-round ratios of berth to `other`.
    pub fn ratios(&self, other: &[f64]) -> Vec<f64> {
        self.berth.iter().zip(other).map(|(b, o)| b / o).collect()
    }
}

fn copy_exec(from: &Path, to: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(d) = to.parent() {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    std::fs::copy(from, to).map_err(|e| format!("copy {} -> {}: {e}", from.display(), to.display()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755)).map_err(|e| format!("{}: {e}", to.display()))
}

/// The tree added to the guest's test system image: the bench directory
/// and crun's interpreter. Returns what crun is (for the notes).
fn stage(root: &Path, stage: &Path, arch: Arch) -> Result<String, String> {
    let _ = std::fs::remove_dir_all(stage);
    let bench = stage.join(DIR.trim_start_matches('/'));
    std::fs::create_dir_all(bench.join("crun-bundle")).map_err(|e| format!("{}: {e}", bench.display()))?;
    let berth_host = artifacts::cross_build_with(root, arch, "berth", "berth", Some("host"))?;
    copy_exec(&berth_host, &bench.join("berth"))?;
    std::os::unix::fs::symlink("berth", bench.join(NAME)).map_err(|e| format!("{}: {e}", bench.display()))?;
    copy_exec(&artifacts::cross_build(root, arch, "qemu-tests", "berth-floor")?, &bench.join("berth-floor"))?;

    let debarch = arch.debian();
    let (crun_tree, version) = crate::kernel::ensure_package(root, debarch, "crun")?;
    let crun = crun_tree.join("usr/bin/crun");
    let triplet = format!("{}-linux-gnu", arch.rust_target().split('-').next().unwrap_or(""));
    let mut trees = vec![crun_tree];
    let (interp, libs) = elfdeps::closure(&crun, &mut trees, &triplet, &mut |soname| {
        let package = elfdeps::debian_package(soname)?;
        crate::kernel::ensure_package(root, debarch, &package).map(|(t, _)| t).map_err(|e| format!("{soname}: {e}"))
    })?;
    copy_exec(&crun, &bench.join("crun"))?;
    for (soname, file) in &libs {
        copy_exec(file, &bench.join("lib").join(soname))?;
    }
    let (path, file) = interp.ok_or("crun has no ELF interpreter")?;
    copy_exec(&file, &stage.join(path.trim_start_matches('/')))?;

    let rootfs = bench.join("rootfs");
    host::make_rootfs(&rootfs)?;
    let board_file = artifacts::board_path(root, arch);
    std::fs::copy(&board_file, bench.join("board.toml")).map_err(|e| format!("{}: {e}", board_file.display()))?;
    let board = artifacts::load_board(&board_file)?;
    let config = oci::config(&board, &format!("{DIR}/rootfs"), "/bin/true", 5_000_000, CRUN_CGROUP)?;
    std::fs::write(bench.join("crun-bundle/config.json"), config).map_err(|e| format!("{}: {e}", bench.display()))?;
    let names: Vec<&str> = libs.iter().map(|(n, _)| n.as_str()).collect();
    Ok(format!("crun {version} ({debarch}) with {} libraries from its NEEDED closure ({})", libs.len(), names.join(", ")))
}

/// Boot once and collect the driver's lines.
fn boot(art: &artifacts::Artifacts, plan: &Plan) -> Result<Vec<Line>, String> {
    let runs = art.dir.join("runs");
    std::fs::create_dir_all(&runs).map_err(|e| e.to_string())?;
    let data = runs.join("bench-v2.img");
    artifacts::fresh_data(art, &data)?;
    let opts = BootOpts { agent: true, cmdline: format!("{PLAN_KEY}{},{}", plan.warmup, plan.rounds), ..Default::default() };
    let (prog, args) = artifacts::qemu_args(art, &data, &opts);
    let mut m = Machine::spawn("bench-v2", &prog, &args)?;
    m.log_to(runs.join("bench-v2.console.log"))?;
    let timeout = Duration::from_secs(180 + 3 * (plan.warmup + plan.rounds) as u64);
    let t0 = Instant::now();
    let mut lines = Vec::new();
    loop {
        let text = m.expect_line(PREFIX, timeout.saturating_sub(t0.elapsed()))?;
        let Some(l) = parse_line(&text) else { continue };
        let l = l?;
        let end = matches!(l, Line::Done(_) | Line::Error(_));
        lines.push(l);
        if end {
            break;
        }
    }
    m.kill();
    Ok(lines)
}

/// Part 6; fills the `start_*_v2` fields.
pub fn run(root: &Path, plan: &Plan, report: &mut Report, notes: &mut Vec<String>) -> Result<(), String> {
    let arch = Arch::X86_64;
    crate::tools::ensure_host_tools(root, &[arch.rust_target()], true)?;
    let dir = root.join("target").join("bench").join("v2-stage");
    let crun_note = stage(root, &dir, arch)?;
    // The variant's kernel command line comes before the agent's
    // `berth.run=`, and berth starts the first one: the driver.
    let variant = Variant {
        suffix: "-bench-v2".into(),
        cgroup: Some(CgroupMode::V2),
        release: ReleaseData::Absent,
        cmdline: Some(format!("berth.run={DIR}/{NAME}")),
        system_extra: Some(PathBuf::from(&dir)),
        ..Default::default()
    };
    let art = artifacts::build(root, &artifacts::board_path(root, arch), &variant)?;
    crate::say(&format!("start latency on cgroup v2: {} warm-up and {} measured rounds in the x86_64 guest (TCG)", plan.warmup, plan.rounds));
    let load_before = host::loadavg();
    let r = Results::of(&boot(&art, plan)?, plan.rounds)?;
    notes.push(format!(
        "part 6: the host's load average (1, 5, 15 min) {load_before} before the guest's boot and {} after its rounds, on {} CPUs: a shared machine; the guest has 1 CPU",
        host::loadavg(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    ));
    let note = "x86_64 guest under QEMU (TCG, 1 CPU), cgroup v2; same root and confinement as parts 1-2; started, waited for and torn down";
    for (name, v) in [("berth", &r.berth), ("crun", &r.crun), ("floor", &r.floor)] {
        report.set(Field::from_stats(&format!("start_ms_{name}_v2"), "ms", Stats::of(v), note));
    }
    report.set(Field::from_stats(
        "start_ms_berth_to_exec_v2",
        "ms",
        Stats::of(&r.berth_exec),
        "berth's own clock in the guest: launch until the program exec'd (cgroup, host preparation, spawn); the rest of start_ms_berth_v2 is the wait for the exit, the teardown and the pipe",
    ));
    if r.steps.is_empty() {
        report.set(Field::missing("start_step_us_v2", "us", "not measured: berth's rounds carried no step breakdown"));
    }
    for (name, v) in &r.steps {
        let note = "median over the rounds of the time from this step's start-path stamp (CLOCK_MONOTONIC, host build only) to the next one, in the guest; the steps add up to start_ms_berth_to_exec_v2";
        report.set(Field::from_stats(&format!("start_step_us_v2_{}", name.replace('-', "_")), "us", Stats::of(v), note));
    }
    if !r.legend.is_empty() {
        notes.push(format!("part 6: berth's mount steps in the breakdown: {}", r.legend.join("; ")));
    }
    report.set(Field::from_stats("start_ratio_berth_vs_crun_v2", "x", Stats::of(&r.ratios(&r.crun)), "per-round ratio, same rounds, in the guest"));
    report.set(Field::from_stats("start_ratio_berth_vs_floor_v2", "x", Stats::of(&r.ratios(&r.floor)), "per-round ratio, same rounds, in the guest"));
    notes.push(format!("part 6: berth's containers joined their cgroups by {}; {crun_note}", r.place));
    if r.place != "clone_into_cgroup" {
        return Err(format!("berth's start in the guest placed its process by `{}`, not clone_into_cgroup", r.place));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_lines_are_parsed_amid_console_noise() {
        assert_eq!(
            parse_line("[  1.2] BENCHV2 round=0 berth_us=900 crun_us=4000 floor_us=450 berth_exec_us=600"),
            Some(Ok(Line::Round { berth_us: 900, crun_us: 4000, floor_us: 450, berth_exec_us: 600, steps: vec![] }))
        );
        assert_eq!(
            parse_line("BENCHV2 round=0 berth_us=900 crun_us=4000 floor_us=450 berth_exec_us=600 berth_steps=launch:10,mount-3:200"),
            Some(Ok(Line::Round {
                berth_us: 900,
                crun_us: 4000,
                floor_us: 450,
                berth_exec_us: 600,
                steps: vec![("launch".into(), 10), ("mount-3".into(), 200)]
            }))
        );
        assert!(parse_line("BENCHV2 round=0 berth_us=900 crun_us=4000 floor_us=450 berth_exec_us=600 berth_steps=launch:x").unwrap().is_err());
        assert_eq!(parse_line("BENCHV2 step mount-0 bind /a /b"), Some(Ok(Line::Step("mount-0 bind /a /b".into()))));
        assert!(parse_line("BENCHV2 round=0 berth_us=900 crun_us=4000 floor_us=450").unwrap().is_err(), "no exec time");
        assert!(parse_line("BENCHV2 round=0 berth_us=900 crun_us=4000 floor_us=450 berth_exec_us=901").unwrap().is_err(), "exec after the end");
        assert_eq!(parse_line("BENCHV2 place how=clone_into_cgroup"), Some(Ok(Line::Place("clone_into_cgroup".into()))));
        assert_eq!(parse_line("BENCHV2 done rounds=5\r"), Some(Ok(Line::Done(5))));
        assert_eq!(parse_line("BENCHV2 error crun run: exit status: 1: oops"), Some(Ok(Line::Error("crun run: exit status: 1: oops".into()))));
        assert_eq!(parse_line("BERTH t=1.0 ev=boot.ready"), None);
        assert!(parse_line("BENCHV2 round=1 berth_us=9 crun_us=x floor_us=4 berth_exec_us=1").unwrap().is_err());
        assert!(parse_line("BENCHV2 round=1 berth_us=0 crun_us=1 floor_us=4 berth_exec_us=0").unwrap().is_err(), "a zero time is no measurement");
        assert!(parse_line("BENCHV2 nonsense").unwrap().is_err());
    }

    #[test]
    fn results_need_every_round_and_the_end() {
        let round = |b, c, f| Line::Round { berth_us: b, crun_us: c, floor_us: f, berth_exec_us: b / 2, steps: vec![("clone".into(), b / 10)] };
        let lines = vec![Line::Place("clone_into_cgroup".into()), round(1000, 4000, 500), round(2000, 5000, 1000), Line::Done(2)];
        let r = Results::of(&lines, 2).unwrap();
        assert_eq!(r.place, "clone_into_cgroup");
        assert_eq!(r.berth, [1.0, 2.0]);
        assert_eq!(r.berth_exec, [0.5, 1.0]);
        assert_eq!(r.steps, [("clone".to_string(), vec![100.0, 200.0])]);
        assert_eq!(r.ratios(&r.crun), [0.25, 0.4]);
        assert_eq!(r.ratios(&r.floor), [2.0, 2.0]);
        assert!(Results::of(&lines, 3).unwrap_err().contains("printed 2 of the 3"));
        assert!(Results::of(&lines[..3], 2).unwrap_err().contains("did not finish"));
        let failed = vec![round(1, 1, 1), Line::Error("crun: boom".into())];
        assert_eq!(Results::of(&failed, 1).unwrap_err(), "the guest driver failed: crun: boom");
    }
}
