//! The containers of the accepted release: prepared once, launched as often
//! as their restart policy asks.
//!
//! It must not keep the loop's state: the slots are `supervise`'s.
//!
//! [`prepare_all`] runs once per release, in dependency order: each image must
//! be mounted (verified), each plan is built and each seccomp filter compiled
//! here, never at a restart. [`begin`] then makes the host-side nodes and
//! volumes ([`crate::confine::container::prepare`]), the container's cgroup (limits and
//! device allowlist in force before any of its processes exist; no cgroup, no
//! container) and forks it with its output on a pipe the PID 1 loop reads;
//! the loop finishes the start as the child's pipes say
//! ([`crate::confine::container::start`]).
//! A container whose preparation fails is reported and left out; the others go
//! on.
//!
//! Also once per release: the kernel's Landlock ABI is probed and combined
//! with the board's `landlock` mode ([`landlock::decide`]): a board that
//! requires Landlock on a kernel without it starts no container; one that
//! allows the downgrade starts them without and says so. A board naming an
//! AppArmor profile has its compiled policy loaded ([`crate::confine::apparmor`]);
//! if that fails, no container starts.

use crate::common::files::errno_text;
use crate::common::log::Event;
use crate::confine::apparmor::ExecAttr;
use crate::confine::cgroup::act::CgroupDir;
use crate::confine::cgroup::limits::Limits;
use crate::confine::cgroup::DeviceRule;
use crate::confine::container::landlock::{self, Decision, Ruleset};
use crate::confine::container::plan::Plan;
use crate::confine::container::{plan, prepare, spawn, start};
use crate::confine::seccomp;
use crate::release::board::{Board, CgroupMode};
use crate::release::manifest::{Manifest, Restart};
use crate::release::restart::Backoff;
use crate::release::{current, Release};
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::unistd::Pid;
use std::os::fd::{AsFd, OwnedFd};

/// Where the cgroup hierarchy is mounted.
pub const CGROUP_MOUNT: &str = "/sys/fs/cgroup";

/// Everything needed to (re)start one container, decided once per release.
pub struct Spec {
    pub name: heapless::String<32>,
    pub plan: Box<Plan>,
    pub filter: Vec<libc::sock_filter>,
    pub seccomp_hash: [u8; 32],
    pub rules: Vec<DeviceRule>,
    pub limits: Limits,
    pub policy: Restart,
    pub backoff: Backoff,
    pub cgroup: CgroupMode,
    /// The Landlock ABI's rights (`None`: the board allowed the downgrade).
    pub landlock: Option<Ruleset>,
    /// The board's AppArmor profile and its exec attribute.
    pub apparmor: Option<(crate::release::board::Name, ExecAttr)>,
    /// Its volumes' quotas, applied before each start (empty: none, or
    /// the board allowed starting without them).
    pub quotas: crate::confine::container::quota::Volumes,
    /// Containers that must be ready before this one starts.
    pub after: heapless::Vec<crate::release::manifest::Name, { crate::release::manifest::AFTER_MAX }>,
    pub ready: Ready,
    pub ready_timeout_ms: u32,
    pub health: Option<Health>,
    pub stop_signal: nix::sys::signal::Signal,
    pub stop_grace_ms: u32,
    /// How many output lines are kept (the manifest's `log_rate`).
    pub log_rate: crate::release::manifest::LogRate,
    /// The notify socket, kept across restarts (see [`crate::confine::notify`]).
    pub notify: Option<std::os::unix::net::UnixDatagram>,
    /// The host path of its `update_drop` volume, where berth looks for
    /// bundles it offers (see [`crate::release::inbox::from_drop`]).
    pub drop: Option<String>,
}

/// When a started container counts as ready.
pub enum Ready {
    /// At once.
    Started,
    /// On `READY=1`.
    Notify,
    /// When this command first succeeds inside it.
    Command(Box<crate::confine::container::enter::Command>),
}

/// How a ready container is checked.
pub struct Health {
    pub check: Check,
    pub interval_ms: u32,
    pub timeout_ms: u32,
    pub retries: u32,
}

pub enum Check {
    /// `WATCHDOG=1` at least this often.
    Watchdog(u32),
    Command(Box<crate::confine::container::enter::Command>),
}

impl Spec {
    /// The layers the container's processes get last before execve (its
    /// init, and every command berth runs inside it).
    pub fn confine(&self) -> spawn::Confine<'_> {
        spawn::Confine { seccomp: Some(&self.filter), landlock: self.landlock, apparmor: self.apparmor.as_ref().map(|(_, attr)| attr.as_cstr()) }
    }

    /// The layers in force, for `berthctl status`.
    pub fn layers(&self) -> crate::confine::layers::Layers {
        let h = &self.seccomp_hash;
        let mut seccomp = heapless::String::new();
        let _ = core::fmt::write(&mut seccomp, format_args!("{:02x}{:02x}{:02x}{:02x}", h[0], h[1], h[2], h[3]));
        let mut apparmor = heapless::String::new();
        let _ = apparmor.push_str(self.apparmor.as_ref().map_or("none", |(p, _)| p.as_str()));
        crate::confine::layers::Layers {
            uid_base: self.plan.ids.outside_base,
            seccomp,
            caps: self.plan.caps.effective,
            device_rules: u16::try_from(self.rules.len()).unwrap_or(u16::MAX),
            landlock_abi: self.landlock.map_or(0, |r| u8::try_from(r.abi).unwrap_or(u8::MAX)),
            apparmor,
        }
    }
}

/// The layers every container of the release gets, decided once.
pub struct Layers {
    landlock: Option<Ruleset>,
    apparmor: Option<(crate::release::board::Name, ExecAttr)>,
}

/// Probe Landlock and load AppArmor for the board; `Err` when a layer the
/// board requires cannot be had (logged here: which, and why).
pub fn layers(board: &Board) -> Result<Layers, (&'static str, String)> {
    let mode = board.landlock.name();
    let probe = crate::sys::landlock::abi_version();
    let landlock = match landlock::decide(board.landlock, probe) {
        Decision::Apply(r) => {
            Event::info("landlock").kv("abi", r.abi).kv("kernel_abi", probe.unwrap_or(0)).kv("mode", mode).kv("result", "ok").emit();
            Some(r)
        }
        Decision::Downgrade(why) => {
            Event::warn("landlock").kv("mode", mode).kv("result", "downgrade").kv("reason", why).emit();
            None
        }
        Decision::Refuse(why) => {
            Event::error("landlock").kv("mode", mode).kv("result", "error").kv("error", why).emit();
            return Err(("landlock", format!("the board requires Landlock: {why}")));
        }
    };
    let apparmor = match &board.apparmor {
        None => None,
        Some(a) => match crate::confine::apparmor::load(a) {
            Ok(attr) => {
                Event::info("apparmor.load").kv("profile", &a.profile).kv("policy", &a.policy).kv("result", "ok").emit();
                Some((a.profile.clone(), attr))
            }
            Err(e) => {
                Event::error("apparmor.load").kv("profile", &a.profile).kv("policy", &a.policy).kv("result", "error").kv("error", &e).emit();
                return Err(("apparmor", format!("the board's AppArmor profile {}: {e}", a.profile)));
            }
        },
    };
    Ok(Layers { landlock, apparmor })
}

/// A running container's handles.
pub struct Launched {
    pub pid: Pid,
    pub output: OwnedFd,
    pub cgroup: CgroupDir,
}

/// A container between its fork and its exec ([`begin`]): the handshake,
/// its output pipe and its cgroup.
pub struct Launching {
    pub pending: start::Pending,
    pub output: OwnedFd,
    pub cgroup: CgroupDir,
}

fn start_error(name: &str, step: &str, e: impl core::fmt::Display) {
    Event::error("container.start").kv("name", name).kv("step", step).kv("result", "error").kv("error", e).emit();
}

/// Prepare every container of `release`, in start order; each takes its
/// position in that order as its index (its uid range).
pub fn prepare_all(release: &Release, board: &Board) -> Vec<Spec> {
    let order = match crate::release::manifest::start_order(&release.containers) {
        Ok(o) => o,
        Err(e) => {
            start_error("*", "order", e);
            return Vec::new();
        }
    };
    let names: Vec<&str> = order.iter().filter_map(|&i| release.containers.get(i)).map(|m| m.name.as_str()).collect();
    let mut index_of = |name: &str| names.iter().position(|n| *n == name).unwrap_or(0) as u16;
    prepare_some(release, board, &names, &mut index_of)
}

/// Prepare the containers of `release` named in `wanted`, in start order,
/// with the index `index_of` gives each (an update keeps a running
/// container's index and gives a new one a free index).
pub fn prepare_some(release: &Release, board: &Board, wanted: &[&str], index_of: &mut dyn FnMut(&str) -> u16) -> Vec<Spec> {
    let arch = match seccomp::Arch::running() {
        Ok(a) => a,
        Err(e) => {
            // Fail closed: no filter for this machine, no containers.
            start_error("*", "seccomp", e);
            return Vec::new();
        }
    };
    let layers = match layers(board) {
        Ok(l) => l,
        Err((step, e)) => {
            // Fail closed: every container asked for is refused.
            for m in release.containers.iter().filter(|m| wanted.contains(&m.name.as_str())) {
                start_error(&m.name, step, &e);
            }
            return Vec::new();
        }
    };
    let order = match crate::release::manifest::start_order(&release.containers) {
        Ok(o) => o,
        Err(e) => {
            start_error("*", "order", e);
            return Vec::new();
        }
    };
    let gate = crate::confine::container::quota_act::Gate::for_release(&release.containers, &board.volumes);
    let mut specs = Vec::new();
    for &i in order.iter() {
        let Some(m) = release.containers.get(i) else {
            continue;
        };
        if !wanted.contains(&m.name.as_str()) {
            continue;
        }
        let spec = prepare_one(m, board, index_of(&m.name), arch, &layers).and_then(|mut s| {
            s.quotas = gate.admit(core::mem::take(&mut s.quotas)).map_err(|e| ("volume-quota", e))?;
            Ok(s)
        });
        match spec {
            Ok(s) => specs.push(s),
            Err((step, e)) => start_error(&m.name, step, e),
        }
    }
    specs
}

fn prepare_one(m: &Manifest, board: &Board, index: u16, arch: seccomp::Arch, layers: &Layers) -> Result<Spec, (&'static str, String)> {
    let rootfs = current::mount_path(&m.image);
    if !crate::common::files::is_mountpoint(&rootfs) {
        return Err(("image", format!("image {rootfs} is not mounted")));
    }
    spec(m, board, index, arch, &rootfs, layers)
}

/// Compiled seccomp filters kept, most recent last: containers with the same
/// policy (many share the default profile; an update's changed container
/// mostly keeps its own) share one compile and check, which is most of
/// preparing a container on a slow core. The compile is a pure function of
/// the policy and the architecture, so a kept filter is exactly what a new
/// compile would give.
const FILTERS_KEPT: usize = 8;

type Filter = (seccomp::Policy, seccomp::Arch, Vec<libc::sock_filter>, [u8; 32]);

static FILTERS: std::sync::Mutex<Vec<Filter>> = std::sync::Mutex::new(Vec::new());

/// The filter of `policy` on `arch` and its hash: kept, or compiled (and
/// kept, the oldest dropped past [`FILTERS_KEPT`]).
fn compiled(policy: &seccomp::Policy, arch: seccomp::Arch) -> Result<(Vec<libc::sock_filter>, [u8; 32]), seccomp::SeccompError> {
    let mut kept = FILTERS.lock().ok();
    if let Some(k) = kept.as_deref() {
        if let Some((_, _, filter, hash)) = k.iter().find(|(p, a, _, _)| p == policy && *a == arch) {
            return Ok((filter.clone(), *hash));
        }
    }
    let program = seccomp::compile(policy, arch)?;
    let (filter, hash) = (program.to_sock_filters(), program.hash());
    if let Some(k) = kept.as_deref_mut() {
        if k.len() >= FILTERS_KEPT {
            k.remove(0);
        }
        k.push((policy.clone(), arch, filter.clone(), hash));
    }
    Ok((filter, hash))
}

/// The spec of container `index` whose root filesystem is at `rootfs`: its
/// plan, seccomp filter, device rules, limits and restart policy.
pub fn spec(m: &Manifest, board: &Board, index: u16, arch: seccomp::Arch, rootfs: &str, layers: &Layers) -> Result<Spec, (&'static str, String)> {
    let mut plan = Box::new(plan(m, board, index, rootfs).map_err(|e| ("plan", e.to_string()))?);
    plan.caps.last_cap = crate::confine::container::caps::kernel_last_cap();
    let policy = seccomp::Policy::from_manifest(m);
    if policy.memfd() {
        // Fail closed: a granted memfd must not be executable.
        crate::confine::harden::memfd_grant_here().map_err(|e| ("seccomp", e))?;
    }
    let (filter, seccomp_hash) = compiled(&policy, arch).map_err(|e| ("seccomp", e.to_string()))?;
    let rules = crate::confine::cgroup::rules(&plan.nodes);
    let limits = limits(m, board)?;
    let mut name = heapless::String::new();
    let _ = name.push_str(&m.name);
    let command = |field: &'static str, c| crate::confine::container::enter::Command::new(c).ok_or((field, "command does not fit".to_owned()));
    let ready = match &m.readiness {
        Some(r) if r.notify => Ready::Notify,
        Some(r) if !r.command.is_empty() => Ready::Command(Box::new(command("readiness", &r.command)?)),
        _ => Ready::Started,
    };
    let health = match &m.health {
        None => None,
        Some(h) => Some(Health {
            check: match h.watchdog_ms {
                Some(ms) => Check::Watchdog(ms),
                None => Check::Command(Box::new(command("health", &h.command)?)),
            },
            interval_ms: h.interval_ms,
            timeout_ms: h.timeout_ms,
            retries: h.retries,
        }),
    };
    let notify = if m.uses_notify() { Some(crate::confine::notify::bind(&m.name).map_err(|e| ("notify", e.to_string()))?) } else { None };
    Ok(Spec {
        name,
        filter,
        seccomp_hash,
        rules,
        limits,
        policy: m.restart.unwrap_or(Restart::OnFailure),
        backoff: Backoff::from_spec(m.backoff.as_ref()),
        cgroup: board.cgroup,
        quotas: crate::confine::container::quota::volumes(m, &board.volumes),
        after: m.after.clone(),
        ready,
        ready_timeout_ms: m.readiness.as_ref().map(|r| r.timeout_ms).unwrap_or(0),
        health,
        stop_signal: m.stop.and_then(|s| s.signal).map(crate::release::manifest::StopSignal::signal).unwrap_or(nix::sys::signal::Signal::SIGTERM),
        stop_grace_ms: m.stop.and_then(|s| s.grace_ms).unwrap_or(crate::release::manifest::STOP_GRACE_MS),
        log_rate: m.log_rate.unwrap_or_default(),
        notify,
        drop: m.update_drop.as_ref().and_then(|v| crate::confine::container::mounts::volume_path(&m.name, v)).map(|p| p.as_str().to_string()),
        plan,
        landlock: layers.landlock,
        apparmor: layers.apparmor.clone(),
    })
}

/// The cgroup limits of `m`: always a memory limit (the manifest's, else
/// the board's default, [`crate::confine::budget`]) with `memory.high` below it.
fn limits(m: &Manifest, board: &Board) -> Result<Limits, (&'static str, String)> {
    let max = m.resources.and_then(|r| r.memory_max);
    let memory = crate::confine::budget::resolve(max, &m.mounts, &board.budgets, crate::confine::budget::mem_total_here())?;
    let mut limits = Limits::from_resources(m.resources.as_ref());
    let optional = memory.source == crate::confine::budget::Source::Board && board.budgets.memory_controller == crate::confine::budget::Need::Optional;
    if optional && !crate::confine::budget::memory_controller_here(board.cgroup) {
        // The board allows it: no default limit where the kernel cannot
        // enforce one. Said for each container it concerns.
        Event::warn("memory.budget")
            .kv("name", &m.name)
            .kv("result", "downgrade")
            .kv("reason", "no memory controller for this cgroup mode; the board's memory_controller is optional: started without a memory limit")
            .emit();
        return Ok(limits);
    }
    limits.memory_max = Some(memory.max);
    limits.memory_high = memory.high;
    Ok(limits)
}

/// What [`begin`] did.
pub enum Begun {
    /// Forked: the start is under way.
    Launching(Launching),
    /// Nothing yet: these volumes must be shifted first (off the loop, see
    /// [`crate::confine::container::shift`]); then begin again.
    Shift(Vec<crate::confine::container::shift::Job>),
}

/// Begin starting one container from its spec (PID 1's way): the host
/// preparation, its cgroup, the fork; the rest of the start runs as its
/// pipes become readable ([`start::Pending`]). `hang` is the test hook's
/// step ([`hang_for`]). A failure here leaves nothing behind (the cgroup
/// made for it is empty and removed at once).
pub fn begin(s: &Spec, hang: Option<spawn::Step>) -> Result<Begun, (&'static str, String)> {
    let shifts = prepare::prepare(&s.plan).map_err(|e| ("prepare", e.to_string()))?;
    if !shifts.is_empty() {
        return Ok(Begun::Shift(shifts));
    }
    crate::confine::container::quota_act::apply(&s.name, &s.quotas).map_err(|e| ("volume-quota", e))?;
    let cg = crate::confine::cgroup::act::create(s.cgroup, std::path::Path::new(CGROUP_MOUNT), &s.name, &s.limits, &s.rules)
        .map_err(|e| (if e.busy { "cgroup-busy" } else { "cgroup" }, e.to_string()))?;
    let errno = |step: &'static str| move |e: Errno| (step, errno_text(e).to_string());
    let io = |cg: CgroupDir, step: &'static str, e: String| {
        let _ = crate::confine::cgroup::act::remove_empty(cg);
        (step, e)
    };
    let (out_r, out_w) = match nix::unistd::pipe2(OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => return Err(io(cg, "pipe", errno_text(e).to_string())),
    };
    if let Err(e) = fcntl(std::os::fd::AsRawFd::as_raw_fd(&out_r), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(errno("pipe")) {
        return Err(io(cg, e.0, e.1));
    }
    let null = match std::fs::File::open("/dev/null") {
        Ok(f) => f,
        Err(e) => return Err(io(cg, "stdin", e.to_string())),
    };
    let stdio = spawn::Stdio { stdin: null.as_fd(), stdout: out_w.as_fd(), stderr: out_w.as_fd() };
    match spawn::begin(&s.plan, stdio, s.confine(), cg.fd.as_ref().map(AsFd::as_fd), hang) {
        Ok(pending) => Ok(Begun::Launching(Launching { pending, output: out_r, cgroup: cg })),
        Err(e) => Err(io(cg, "spawn", e.to_string())),
    }
}

/// Say that container `s` started: its init `pid` exec'd, with these
/// layers and this cgroup.
pub fn started_event(s: &Spec, pid: Pid, cg: &CgroupDir) {
    let layers = s.layers();
    Event::info("container.start")
        .kv("name", &s.name)
        .kv("pid", pid)
        .kv("uid_base", layers.uid_base)
        .kv("uid_map", host_uid_map(pid))
        .kv("seccomp", &layers.seccomp)
        .kv("caps", format_args!("{:x}", layers.caps))
        .kv("device_rules", layers.device_rules)
        .kv("landlock", format_args!("{}", layers.landlock()))
        .kv("apparmor", &layers.apparmor)
        .kv("cgroup", cg.path().map(|p| p.display().to_string()).unwrap_or_default())
        .kv("result", "ok")
        .emit();
}

/// Start one container and wait for its exec (tools: `berth bench-start`),
/// its cgroup in the subtree `group` of the hierarchy mounted at `mount`.
pub fn launch_in(s: &Spec, mount: &std::path::Path, group: &str) -> Result<Launched, (&'static str, String)> {
    use crate::confine::container::spawn::stamps::{host as stamp, Host};
    stamp(Host::Launch);
    let never = std::sync::atomic::AtomicBool::new(false);
    stamp(Host::Prepare);
    for job in prepare::prepare(&s.plan).map_err(|e| ("prepare", e.to_string()))? {
        crate::confine::container::shift::run(&job, &never).map_err(|e| ("volume", e))?;
    }
    stamp(Host::Quota);
    crate::confine::container::quota_act::apply(&s.name, &s.quotas).map_err(|e| ("volume-quota", e))?;
    let cg = crate::confine::cgroup::act::create_in(s.cgroup, mount, group, &s.name, &s.limits, &s.rules).map_err(|e| ("cgroup", e.to_string()))?;
    stamp(Host::Stdio);
    let errno = |step: &'static str| move |e: Errno| (step, errno_text(e).to_string());
    let (out_r, out_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(errno("pipe"))?;
    fcntl(std::os::fd::AsRawFd::as_raw_fd(&out_r), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(errno("pipe"))?;
    let null = std::fs::File::open("/dev/null").map_err(|e| ("stdin", e.to_string()))?;
    let stdio = spawn::Stdio { stdin: null.as_fd(), stdout: out_w.as_fd(), stderr: out_w.as_fd() };
    let mut add = |pid| cg.add(pid).map_err(|_| Errno::EIO);
    let mut place = spawn::Place { dir: cg.fd.as_ref().map(AsFd::as_fd), add: &mut add };
    let started = match spawn::spawn(&s.plan, stdio, s.confine(), &mut place) {
        Ok(st) => {
            stamp(Host::Started);
            log_placement(st.placed);
            st
        }
        Err(e) => {
            let _ = crate::confine::cgroup::act::kill_and_remove(cg);
            return Err(("spawn", e.to_string()));
        }
    };
    drop(out_w);
    started_event(s, started.pid, &cg);
    Ok(Launched { pid: started.pid, output: out_r, cgroup: cg })
}

/// The test hook's step for container `name`'s start (`check`: for its
/// readiness and health commands): `berth.hang=NAME:STEP` (or
/// `NAME.check:STEP`, several separated by commas) on the kernel command
/// line. Always `None` without the `test-hooks` feature.
pub fn hang_for(name: &str, check: bool) -> Option<spawn::Step> {
    #[cfg(feature = "test-hooks")]
    {
        static HANG: std::sync::OnceLock<Vec<Hang>> = std::sync::OnceLock::new();
        let all = HANG.get_or_init(|| {
            let text = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
            text.split_ascii_whitespace().filter_map(|t| t.strip_prefix("berth.hang=")).flat_map(parse_hang).collect()
        });
        all.iter().find(|h| h.name == name && h.check == check).map(|h| h.step)
    }
    #[cfg(not(feature = "test-hooks"))]
    {
        let _ = (name, check);
        None
    }
}

/// One `berth.hang=` entry.
#[cfg(any(test, feature = "test-hooks"))]
#[derive(Debug, PartialEq, Eq)]
struct Hang {
    name: String,
    check: bool,
    step: spawn::Step,
}

/// `NAME:STEP[,NAME.check:STEP]...`; entries that do not parse are left out.
#[cfg(any(test, feature = "test-hooks"))]
fn parse_hang(value: &str) -> Vec<Hang> {
    value
        .split(',')
        .filter_map(|e| {
            let (who, step) = e.split_once(':')?;
            let step = spawn::Step::from_slug(step)?;
            let (name, check) = match who.strip_suffix(".check") {
                Some(n) => (n, true),
                None => (who, false),
            };
            (!name.is_empty()).then(|| Hang { name: name.to_owned(), check, step })
        })
        .collect()
}

/// Say how processes get into their cgroups, once, and again only if that
/// changes (the first start that finds the kernel refusing `clone3` into a
/// cgroup).
pub fn log_placement(placed: spawn::Placed) {
    use core::sync::atomic::{AtomicU8, Ordering::Relaxed};
    use spawn::Placed;
    static LOGGED: AtomicU8 = AtomicU8::new(0);
    let (code, how) = match placed {
        Placed::Born => (1, "clone_into_cgroup"),
        Placed::MovedV1 | Placed::MovedRefused(_) => (2, "migrate"),
    };
    if LOGGED.swap(code, Relaxed) == code {
        return;
    }
    let ev = Event::info("cgroup.place").kv("how", how);
    match placed {
        Placed::Born => ev.emit(),
        Placed::MovedV1 => ev.kv("reason", "cgroup v1").emit(),
        Placed::MovedRefused(e) => ev.kv("reason", format_args!("clone3 CLONE_INTO_CGROUP refused: {}", errno_text(e))).emit(),
    }
}

/// The container init's uid map as the host sees it (`inside outside count`).
fn host_uid_map(pid: Pid) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap_or_default();
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Subdirectories left in berth's cgroup subtree (teardown check).
pub fn cgroups_left(mode: CgroupMode) -> usize {
    let dir = match mode {
        CgroupMode::V2 => format!("{CGROUP_MOUNT}/{}", crate::confine::cgroup::act::SUBTREE),
        CgroupMode::V1 => format!("{CGROUP_MOUNT}/devices/{}", crate::confine::cgroup::act::SUBTREE),
    };
    std::fs::read_dir(dir).map(|d| d.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).count()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hang_entries_name_a_container_or_its_checks_and_a_step() {
        use spawn::Step;
        let h = parse_hang("stuck:mount,slow.check:setns,bad:nostep,:exec,x");
        assert_eq!(h, [Hang { name: "stuck".into(), check: false, step: Step::Mount(0) }, Hang { name: "slow".into(), check: true, step: Step::Setns },]);
        #[cfg(not(feature = "test-hooks"))]
        assert_eq!(hang_for("stuck", false), None, "no hooks in a build without the feature");
    }

    #[test]
    fn kept_filters_are_what_a_compile_gives() {
        let arch = seccomp::Arch::running().unwrap();
        let plain = seccomp::Policy::new();
        let mut more = seccomp::Policy::new();
        more.allow("kcmp").unwrap();
        for p in [&plain, &more, &plain, &more] {
            let fresh = seccomp::compile(p, arch).unwrap();
            let (filter, hash) = compiled(p, arch).unwrap();
            assert_eq!(hash, fresh.hash());
            let want = fresh.to_sock_filters();
            assert_eq!(filter.len(), want.len());
            assert!(filter.iter().zip(&want).all(|(a, b)| (a.code, a.jt, a.jf, a.k) == (b.code, b.jt, b.jf, b.k)));
        }
        assert_ne!(compiled(&plain, arch).unwrap().1, compiled(&more, arch).unwrap().1, "one filter per policy");
        for name in ["process_vm_readv", "process_vm_writev", "kcmp", "mbind", "move_pages", "set_mempolicy", "get_mempolicy"] {
            let mut p = seccomp::Policy::new();
            p.allow(name).unwrap();
            compiled(&p, arch).unwrap();
        }
        assert!(FILTERS.lock().unwrap().len() <= FILTERS_KEPT, "bounded");
    }
}
