//! The containers of the accepted release: prepared once, launched as often
//! as their restart policy asks.
//!
//! [`prepare_all`] runs once per release, in dependency order: each image must
//! be mounted (verified), each plan is built and each seccomp filter compiled
//! here, never at a restart. [`launch`] then makes the host-side nodes and
//! volumes ([`crate::container::prepare`]), the container's cgroup (limits and
//! device allowlist in force before any of its processes exist; no cgroup, no
//! container) and spawns it with its output on a pipe the PID 1 loop reads.
//! A container whose preparation fails is reported and left out; the others go
//! on.

use crate::board::{Board, CgroupMode};
use crate::cgroup::act::CgroupDir;
use crate::cgroup::limits::Limits;
use crate::cgroup::DeviceRule;
use crate::container::plan::Plan;
use crate::container::{plan, prepare, spawn};
use crate::log::Event;
use crate::manifest::{Manifest, Restart};
use crate::mount::errno_text;
use crate::release::{current, Release};
use crate::restart::Backoff;
use crate::seccomp;
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
}

/// A running container's handles.
pub struct Launched {
    pub pid: Pid,
    pub output: OwnedFd,
    pub cgroup: CgroupDir,
}

fn start_error(name: &str, step: &str, e: impl core::fmt::Display) {
    Event::error("container.start").kv("name", name).kv("step", step).kv("result", "error").kv("error", e).emit();
}

/// Prepare every container of `release`, in start order.
pub fn prepare_all(release: &Release, board: &Board) -> Vec<Spec> {
    let arch = match seccomp::Arch::running() {
        Ok(a) => a,
        Err(e) => {
            // Fail closed: no filter for this machine, no containers.
            start_error("*", "seccomp", e);
            return Vec::new();
        }
    };
    let order = match crate::manifest::start_order(&release.containers) {
        Ok(o) => o,
        Err(e) => {
            start_error("*", "order", e);
            return Vec::new();
        }
    };
    let mut specs = Vec::new();
    for (n, &i) in order.iter().enumerate() {
        let Some(m) = release.containers.get(i) else { continue };
        match prepare_one(m, board, n as u16, arch) {
            Ok(s) => specs.push(s),
            Err((step, e)) => start_error(&m.name, step, e),
        }
    }
    specs
}

fn prepare_one(m: &Manifest, board: &Board, index: u16, arch: seccomp::Arch) -> Result<Spec, (&'static str, String)> {
    let rootfs = current::mount_path(&m.image);
    if !crate::mount::is_mountpoint(&rootfs) {
        return Err(("image", format!("image {rootfs} is not mounted")));
    }
    spec(m, board, index, arch, &rootfs)
}

/// The spec of container `index` whose root filesystem is at `rootfs`: its
/// plan, seccomp filter, device rules, limits and restart policy.
pub fn spec(m: &Manifest, board: &Board, index: u16, arch: seccomp::Arch, rootfs: &str) -> Result<Spec, (&'static str, String)> {
    let plan = Box::new(plan(m, board, index, rootfs).map_err(|e| ("plan", e.to_string()))?);
    let program = seccomp::compile(&seccomp::Policy::from_manifest(m), arch).map_err(|e| ("seccomp", e.to_string()))?;
    let rules = crate::cgroup::rules(&plan.nodes);
    let mut name = heapless::String::new();
    let _ = name.push_str(&m.name);
    Ok(Spec {
        name,
        filter: program.to_sock_filters(),
        seccomp_hash: program.hash(),
        rules,
        limits: Limits::from_resources(m.resources.as_ref()),
        policy: m.restart.unwrap_or(Restart::OnFailure),
        backoff: Backoff::from_spec(m.backoff.as_ref()),
        cgroup: board.cgroup,
        plan,
    })
}

/// Start one container from its spec.
pub fn launch(s: &Spec) -> Result<Launched, (&'static str, String)> {
    launch_in(s, std::path::Path::new(CGROUP_MOUNT), crate::cgroup::act::SUBTREE)
}

/// [`launch`] with the container's cgroup in the subtree `group` of the
/// hierarchy mounted at `mount`.
pub fn launch_in(s: &Spec, mount: &std::path::Path, group: &str) -> Result<Launched, (&'static str, String)> {
    prepare::prepare(&s.plan).map_err(|e| ("prepare", e.to_string()))?;
    let cg = crate::cgroup::act::create_in(s.cgroup, mount, group, &s.name, &s.limits, &s.rules)
        .map_err(|e| ("cgroup", e.to_string()))?;
    let errno = |step: &'static str| move |e: Errno| (step, errno_text(e).to_string());
    let (out_r, out_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(errno("pipe"))?;
    fcntl(std::os::fd::AsRawFd::as_raw_fd(&out_r), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(errno("pipe"))?;
    let null = std::fs::File::open("/dev/null").map_err(|e| ("stdin", e.to_string()))?;
    let stdio = spawn::Stdio { stdin: null.as_fd(), stdout: out_w.as_fd(), stderr: out_w.as_fd() };
    let mut place = |pid| cg.add(pid).map_err(|_| Errno::EIO);
    let started = match spawn::spawn(&s.plan, stdio, Some(&s.filter), &mut place) {
        Ok(st) => st,
        Err(e) => {
            let _ = crate::cgroup::act::kill_and_remove(cg);
            return Err(("spawn", e.to_string()));
        }
    };
    drop(out_w);
    let h = &s.seccomp_hash;
    Event::info("container.start")
        .kv("name", &s.name)
        .kv("pid", started.pid)
        .kv("uid_base", s.plan.ids.outside_base)
        .kv("uid_map", host_uid_map(started.pid))
        .kv("seccomp", format_args!("{:02x}{:02x}{:02x}{:02x}", h[0], h[1], h[2], h[3]))
        .kv("device_rules", s.rules.len())
        .kv("cgroup", cg.path().map(|p| p.display().to_string()).unwrap_or_default())
        .kv("result", "ok")
        .emit();
    Ok(Launched { pid: started.pid, output: out_r, cgroup: cg })
}

/// The container init's uid map as the host sees it (`inside outside count`).
fn host_uid_map(pid: Pid) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap_or_default();
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Subdirectories left in berth's cgroup subtree (teardown check).
pub fn cgroups_left(mode: CgroupMode) -> usize {
    let dir = match mode {
        CgroupMode::V2 => format!("{CGROUP_MOUNT}/{}", crate::cgroup::act::SUBTREE),
        CgroupMode::V1 => format!("{CGROUP_MOUNT}/devices/{}", crate::cgroup::act::SUBTREE),
    };
    std::fs::read_dir(dir)
        .map(|d| d.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).count())
        .unwrap_or(0)
}
