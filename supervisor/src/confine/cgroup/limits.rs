//! Resource limits: which controller files get which values, on both
//! hierarchies, and the `memory.events` counters.
//!
//! It must not touch the cgroup filesystem (that is [`super::act`]'s), nor
//! skip a limit it cannot set.
//!
//! Everything here is pure. [`Limits::from_resources`] fills in the defaults;
//! [`plan_v2`] and [`plan_v1`] list the writes in order; [`controllers`]
//! lists the controllers they need, which [`check_available`] compares with a
//! `cgroup.controllers` file: a limit whose controller is missing is an error
//! naming it, never skipped. `pids.max` always applies ([`DEFAULT_PIDS_MAX`]
//! when the manifest gives none), so every container needs `pids`.

use core::fmt;

use crate::release::manifest::Resources;

/// `pids.max` of a container whose manifest sets none: enough for a service
/// with a few worker processes and threads, small enough that a fork bomb
/// stops long before the board runs out of tasks.
pub const DEFAULT_PIDS_MAX: u32 = 512;

/// The default `cpu.max` period (the kernel's) in microseconds.
pub const CPU_PERIOD_US: u64 = 100_000;

/// A controller berth uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Controller {
    Memory,
    Cpu,
    Io,
    Pids,
}

impl Controller {
    /// Name on cgroup v2 (`cgroup.controllers`, `cgroup.subtree_control`).
    pub fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Cpu => "cpu",
            Controller::Io => "io",
            Controller::Pids => "pids",
        }
    }

    /// The v1 hierarchy's directory under the cgroup mount.
    pub fn v1_dir(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Cpu => "cpu",
            Controller::Io => "blkio",
            Controller::Pids => "pids",
        }
    }
}

/// A CPU bandwidth cap: `quota_us` of every `period_us`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuMax {
    pub quota_us: u64,
    pub period_us: u64,
}

/// The limits of one container, defaults applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Hard memory limit in bytes (`memory.max`).
    pub memory_max: Option<u64>,
    /// Reclaim threshold in bytes (`memory.high`).
    pub memory_high: Option<u64>,
    /// 1..=10000 (`cpu.weight`).
    pub cpu_weight: Option<u16>,
    pub cpu_max: Option<CpuMax>,
    /// Always set.
    pub pids_max: u32,
    /// 1..=10000 (`io.weight`).
    pub io_weight: Option<u16>,
}

impl Limits {
    /// The limits a manifest's `resources` ask for, with [`DEFAULT_PIDS_MAX`]
    /// when it names no `pids_max`. The manifest has no `memory_high`,
    /// `cpu_max` or `io_weight` fields yet; callers may set them here.
    pub fn from_resources(r: Option<&Resources>) -> Limits {
        let r = r.copied().unwrap_or_default();
        Limits {
            memory_max: r.memory_max,
            memory_high: None,
            cpu_weight: r.cpu_weight,
            cpu_max: None,
            pids_max: r.pids_max.unwrap_or(DEFAULT_PIDS_MAX),
            io_weight: None,
        }
    }
}

/// One write: `value` into `file` of the container's cgroup (on v1, in the
/// controller's hierarchy, [`Controller::v1_dir`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub controller: Controller,
    pub file: &'static str,
    pub value: String,
}

fn set(out: &mut Vec<Setting>, controller: Controller, file: &'static str, value: String) {
    out.push(Setting { controller, file, value });
}

/// The v2 writes, in order. With a memory limit (every container has one:
/// the manifest's or the board's default, [`crate::confine::budget::resolve`]),
/// `memory.oom.group` is set so an OOM kill takes the whole container (and
/// only it), never leaving a half-killed service behind.
pub fn plan_v2(l: &Limits) -> Vec<Setting> {
    let mut out = Vec::new();
    if let Some(m) = l.memory_max {
        set(&mut out, Controller::Memory, "memory.max", m.to_string());
    }
    if let Some(h) = l.memory_high {
        set(&mut out, Controller::Memory, "memory.high", h.to_string());
    }
    if l.memory_max.is_some() || l.memory_high.is_some() {
        set(&mut out, Controller::Memory, "memory.oom.group", "1".to_owned());
    }
    if let Some(w) = l.cpu_weight {
        set(&mut out, Controller::Cpu, "cpu.weight", w.to_string());
    }
    if let Some(c) = l.cpu_max {
        set(&mut out, Controller::Cpu, "cpu.max", format!("{} {}", c.quota_us, c.period_us));
    }
    if let Some(w) = l.io_weight {
        set(&mut out, Controller::Io, "io.weight", format!("default {w}"));
    }
    set(&mut out, Controller::Pids, "pids.max", l.pids_max.to_string());
    out
}

/// v2 `cpu.weight` (1..=10000) as v1 `cpu.shares` (2..=262144), the inverse
/// of the conversion the OCI runtimes use the other way.
pub fn weight_to_shares(w: u16) -> u64 {
    let w = u64::from(w.clamp(1, 10_000));
    2 + (w - 1) * 262_142 / 9_999
}

/// v2 `io.weight` (1..=10000) as v1 `blkio.weight` (10..=1000).
pub fn weight_to_blkio(w: u16) -> u64 {
    let w = u64::from(w.clamp(1, 10_000));
    10 + (w - 1) * 990 / 9_999
}

/// The v1 writes, in order. `memory.high` has no v1 twin; the closest,
/// `memory.soft_limit_in_bytes`, stands in. The period goes before the quota
/// (the kernel checks the quota against the period in force).
pub fn plan_v1(l: &Limits) -> Vec<Setting> {
    let mut out = Vec::new();
    if let Some(m) = l.memory_max {
        set(&mut out, Controller::Memory, "memory.limit_in_bytes", m.to_string());
    }
    if let Some(h) = l.memory_high {
        set(&mut out, Controller::Memory, "memory.soft_limit_in_bytes", h.to_string());
    }
    if let Some(w) = l.cpu_weight {
        set(&mut out, Controller::Cpu, "cpu.shares", weight_to_shares(w).to_string());
    }
    if let Some(c) = l.cpu_max {
        set(&mut out, Controller::Cpu, "cpu.cfs_period_us", c.period_us.to_string());
        set(&mut out, Controller::Cpu, "cpu.cfs_quota_us", c.quota_us.to_string());
    }
    if let Some(w) = l.io_weight {
        set(&mut out, Controller::Io, "blkio.weight", weight_to_blkio(w).to_string());
    }
    set(&mut out, Controller::Pids, "pids.max", l.pids_max.to_string());
    out
}

/// The controllers a plan writes to, each once, in a fixed order.
pub fn controllers(plan: &[Setting]) -> Vec<Controller> {
    let mut c: Vec<Controller> = plan.iter().map(|s| s.controller).collect();
    c.sort();
    c.dedup();
    c
}

/// The line for `cgroup.subtree_control`: `+memory +cpu +pids`.
pub fn enable_line(controllers: &[Controller]) -> String {
    controllers.iter().map(|c| format!("+{}", c.name())).collect::<Vec<_>>().join(" ")
}

/// A controller a limit needs is not available where it is needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingController {
    pub controller: &'static str,
    /// The files that would have carried the limit.
    pub files: Vec<&'static str>,
}

impl fmt::Display for MissingController {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the {} controller is not available (needed for {})", self.controller, self.files.join(", "))
    }
}

/// Check every controller `plan` needs against the text of a
/// `cgroup.controllers` file (space-separated names).
pub fn check_available(plan: &[Setting], available: &str) -> Result<(), MissingController> {
    let have: Vec<&str> = available.split_ascii_whitespace().collect();
    for c in controllers(plan) {
        if !have.contains(&c.name()) {
            let files = plan.iter().filter(|s| s.controller == c).map(|s| s.file).collect();
            return Err(MissingController { controller: c.name(), files });
        }
    }
    Ok(())
}

/// The counters of a v2 `memory.events` file (or, on v1, the `oom_kill`
/// counter and `under_oom` flag of `memory.oom_control`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryEvents {
    pub low: u64,
    pub high: u64,
    pub max: u64,
    /// Times the cgroup hit its limit and the OOM killer was invoked.
    pub oom: u64,
    /// Processes of the cgroup killed by the OOM killer.
    pub oom_kill: u64,
    pub oom_group_kill: u64,
}

impl MemoryEvents {
    /// Parse `key value` lines. Unknown keys (later kernels add some) are
    /// skipped; a line that is not `key number` is an error naming it.
    pub fn parse(text: &str) -> Result<MemoryEvents, String> {
        let mut m = MemoryEvents::default();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let e = || format!("memory.events: cannot read line `{line}`");
            let (k, v) = line.split_once(' ').ok_or_else(e)?;
            let v: u64 = v.trim().parse().map_err(|_| e())?;
            match k {
                "low" => m.low = v,
                "high" => m.high = v,
                "max" => m.max = v,
                "oom" | "under_oom" => m.oom = v,
                "oom_kill" => m.oom_kill = v,
                "oom_group_kill" => m.oom_group_kill = v,
                _ => {}
            }
        }
        Ok(m)
    }

    /// Did anything OOM-related happen since `before`?
    pub fn oom_since(&self, before: &MemoryEvents) -> bool {
        self.oom > before.oom || self.oom_kill > before.oom_kill || self.oom_group_kill > before.oom_group_kill
    }
}
