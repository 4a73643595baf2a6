//! Starting the containers of the accepted release.
//!
//! For each container, in dependency order: its image must be mounted
//! (verified), its plan is built and its seccomp filter compiled before any
//! fork, its granted device nodes and volumes are made on the host
//! ([`crate::container::prepare`]), then it is spawned with its output on a pipe that the PID 1 loop
//! reads. A container whose plan, filter or spawn fails is not started and the
//! event says which step failed; the others still start.

use crate::board::Board;
use crate::container::{plan, prepare, spawn};
use crate::log::Event;
use crate::mount::errno_text;
use crate::release::{current, Release};
use crate::seccomp;
use crate::supervise::Pid1;
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use std::os::fd::AsFd;

/// Where the cgroup hierarchy is mounted.
pub const CGROUP_MOUNT: &str = "/sys/fs/cgroup";

/// Start every container of `release`; returns how many started.
pub fn start_all(release: &Release, board: &Board, pid1: &mut Pid1) -> usize {
    let arch = match seccomp::Arch::running() {
        Ok(a) => a,
        Err(e) => {
            // Fail closed: no filter for this machine, no containers.
            Event::error("container.start").kv("name", "*").kv("step", "seccomp").kv("result", "error").kv("error", e).emit();
            return 0;
        }
    };
    let order = match crate::manifest::start_order(&release.containers) {
        Ok(o) => o,
        Err(e) => {
            Event::error("container.start").kv("name", "*").kv("step", "order").kv("result", "error").kv("error", e).emit();
            return 0;
        }
    };
    let mut started = 0;
    for (n, &i) in order.iter().enumerate() {
        let Some(m) = release.containers.get(i) else { continue };
        match start_one(m, board, n as u16, arch, pid1) {
            Ok(()) => started += 1,
            Err((step, e)) => Event::error("container.start")
                .kv("name", &m.name)
                .kv("step", step)
                .kv("result", "error")
                .kv("error", e)
                .emit(),
        }
    }
    started
}

fn start_one(
    m: &crate::manifest::Manifest,
    board: &Board,
    index: u16,
    arch: seccomp::Arch,
    pid1: &mut Pid1,
) -> Result<(), (&'static str, String)> {
    let rootfs = current::mount_path(&m.image);
    if !crate::mount::is_mountpoint(&rootfs) {
        return Err(("image", format!("image {rootfs} is not mounted")));
    }
    let plan = Box::new(plan(m, board, index, &rootfs).map_err(|e| ("plan", e.to_string()))?);
    let policy = seccomp::Policy::from_manifest(m);
    let program = seccomp::compile(&policy, arch).map_err(|e| ("seccomp", e.to_string()))?;
    let filter = program.to_sock_filters();
    prepare::prepare(&plan).map_err(|e| ("prepare", e.to_string()))?;
    // The cgroup comes first: limits and the device allowlist are in force
    // before any process of the container exists. No cgroup, no container.
    let rules = crate::cgroup::rules(&plan.nodes);
    let limits = crate::cgroup::limits::Limits::from_resources(m.resources.as_ref());
    let cg = crate::cgroup::act::create(board.cgroup, std::path::Path::new(CGROUP_MOUNT), &m.name, &limits, &rules)
        .map_err(|e| ("cgroup", e.to_string()))?;

    let errno = |step: &'static str| move |e: Errno| (step, errno_text(e).to_string());
    let (out_r, out_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(errno("pipe"))?;
    fcntl(std::os::fd::AsRawFd::as_raw_fd(&out_r), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(errno("pipe"))?;
    let null = std::fs::File::open("/dev/null").map_err(|e| ("stdin", e.to_string()))?;
    let stdio = spawn::Stdio { stdin: null.as_fd(), stdout: out_w.as_fd(), stderr: out_w.as_fd() };
    let mut place = |pid| cg.add(pid).map_err(|_| Errno::EIO);
    let started = match spawn::spawn(&plan, stdio, Some(&filter), &mut place) {
        Ok(s) => s,
        Err(e) => {
            let _ = crate::cgroup::act::kill_and_remove(cg);
            return Err(("spawn", e.to_string()));
        }
    };
    drop(out_w);
    let hash = program.hash();
    Event::info("container.start")
        .kv("name", &m.name)
        .kv("pid", started.pid)
        .kv("uid_base", plan.ids.outside_base)
        .kv("seccomp", format_args!("{:02x}{:02x}{:02x}{:02x}", hash[0], hash[1], hash[2], hash[3]))
        .kv("device_rules", rules.len())
        .kv("cgroup", cg.path().map(|p| p.display().to_string()).unwrap_or_default())
        .kv("result", "ok")
        .emit();
    pid1.watch(started.pid, &m.name);
    pid1.own_cgroup(started.pid, cg);
    pid1.watch_output(out_r, &m.name);
    Ok(())
}
