//! Run a command inside a running container: readiness and health checks.
//!
//! It must not give the command more than the container has, nor wait for
//! it: the caller bounds it by the check's timeout and reaps it as any child.
//!
//! The command gets exactly the container's confinement, because it runs
//! with the container's authority: its namespaces (joined with `setns`, the
//! user namespace first), its cgroup (device filter and limits), its ids,
//! capabilities, no_new_privs, AppArmor profile, Landlock ruleset and
//! seccomp filter, from the same [`Plan`] and [`Confine`].
//! Its stdio is `/dev/null`; only its exit status counts.
//!
//! | who | step |
//! |---|---|
//! | S | open the init's `/proc/PID/ns/*` files, `/dev/null`, two pipes (go, trail); argv/envp arrays |
//! | S | fork -> W (the waiter), see [`super::spawn::Place`] |
//! | S | W is born in the container's cgroup (v2, `clone3`), or moved there; then `g` on the pipe |
//! | W | `setns` user, then mount, IPC, UTS, cgroup, network (when its own), PID |
//! | W | fork -> X (in the PID namespace: `setns` of a PID namespace applies to children) |
//! | W | wait for X; `_exit` with X's code (signals as 128 + number) |
//! | X | `PR_SET_PDEATHSIG`, stdio, `chdir(workdir)`, the plan's credential steps, no_new_privs, signals reset, fds closed, AppArmor, Landlock, seccomp, `execve` |
//!
//! Failure in W or X before the exec is `_exit(`[`SETUP_FAILED`]`)`; a failed
//! exec is 127. S only ever sees W: killing W (a check past its timeout)
//! takes X with it through the death signal. As in [`super::spawn`],
//! nothing is allocated or formatted after the fork.
//!
//! Nothing here waits: the caller bounds the whole command, setup included,
//! by the check's timeout and reaps W as any child. W and X announce each
//! setup step on the trail pipe ([`super::spawn::Record::Begin`]); its
//! write end closes at X's exec. A check killed at its timeout is named by
//! [`trail`]: the setup step it hung in, or the command itself.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sched::CloneFlags;
use nix::sys::signal::{kill, sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{self, Pid};
use std::os::fd::BorrowedFd;

use super::spawn::{confine_last, decode, drop_privileges, Argv, Confine, Envp, Place, Placed, Record, Step, Trace, RECORD};
use super::{CArg, Plan};
use crate::release::manifest::COMMAND_MAX;
use crate::sys::container as sys;

/// Exit code of a check whose setup failed before its exec.
pub const SETUP_FAILED: i32 = 126;

/// A command prepared once per release: NUL-terminated, bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    argv: heapless::Vec<CArg, COMMAND_MAX>,
}

impl Command {
    /// `None` when the manifest gave no command or a string does not fit.
    pub fn new(cmd: &crate::release::manifest::Command) -> Option<Command> {
        let mut argv = heapless::Vec::new();
        for a in cmd {
            argv.push(CArg::new(a)?).ok()?;
        }
        (!argv.is_empty()).then_some(Command { argv })
    }
}

/// Namespaces joined, in this order (the user namespace first gives the
/// capabilities the others need).
const NAMESPACES: [(&str, CloneFlags); 7] = [
    ("user", CloneFlags::CLONE_NEWUSER),
    ("mnt", CloneFlags::CLONE_NEWNS),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
];

/// A command started inside a container.
#[derive(Debug)]
pub struct Entered {
    /// W: its exit code is the command's.
    pub pid: Pid,
    /// The read end of the trail pipe (non-blocking): see [`trail`].
    pub trail: OwnedFd,
}

/// A command that could not be started; `left` is a process that was
/// forked and killed, still to be reaped by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnterError {
    pub errno: Errno,
    pub left: Option<Pid>,
}

impl From<Errno> for EnterError {
    fn from(errno: Errno) -> EnterError {
        EnterError { errno, left: None }
    }
}

/// Start `cmd` inside the container whose init is `init`. `place` puts the
/// waiter into the container's cgroup (born there, or moved). `hang` is the
/// test hook's step (`None` without the `test-hooks` feature). Never waits
/// for a child.
pub fn enter(plan: &Plan, init: Pid, cmd: &Command, confine: Confine<'_>, place: &mut Place<'_>, hang: Option<Step>) -> Result<Entered, EnterError> {
    let io = |e: std::io::Error| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
    let mut ns: heapless::Vec<(OwnedFd, CloneFlags), 7> = heapless::Vec::new();
    for (name, flag) in NAMESPACES {
        if flag == CloneFlags::CLONE_NEWNET && !plan.namespaces.own_net() {
            continue;
        }
        let f = File::open(format!("/proc/{init}/ns/{name}")).map_err(io)?;
        ns.push((OwnedFd::from(f), flag)).map_err(|_| Errno::E2BIG)?;
    }
    let null = File::open("/dev/null").map_err(io)?;
    let path = cmd.argv.first().map(|a| a.as_cstr()).ok_or(Errno::EINVAL)?;
    let argv = Argv::new(cmd.argv.iter().map(|a| a.as_cstr())).ok_or(Errno::E2BIG)?;
    let envp = Envp::new(plan.env.iter().map(|a| a.as_cstr())).ok_or(Errno::E2BIG)?;
    let (go_r, go_w) = unistd::pipe2(OFlag::O_CLOEXEC)?;
    let (trail_r, trail_w) = unistd::pipe2(OFlag::O_CLOEXEC)?;
    fcntl(trail_r.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
    fcntl(go_w.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;

    // SAFETY: the child runs only `waiter`: system calls on data prepared
    // above, ending in `_exit`; it never returns here.
    let (w, placed) = match unsafe { sys::fork_placed(place.dir) }.map_err(|(_, e)| e)? {
        (None, _) => {
            drop(go_w);
            let trace = Trace::new(trail_w.as_fd(), hang);
            let code = waiter(plan, &ns, go_r.as_fd(), null.as_fd(), &trace, &confine, path, &argv, &envp);
            sys::exit_now(code)
        }
        (Some(pid), placed) => (pid, placed),
    };
    drop(go_r);
    drop(trail_w);
    let failed = |errno| {
        let _ = kill(w, Signal::SIGKILL);
        EnterError { errno, left: Some(w) }
    };
    if placed != Placed::Born {
        (place.add)(w).map_err(failed)?;
    }
    // An empty pipe takes the byte at once.
    if unistd::write(go_w.as_fd(), b"g") != Ok(1) {
        return Err(failed(Errno::EPIPE));
    }
    Ok(Entered { pid: w, trail: trail_r })
}

/// Where a command's setup is, from its trail (read without waiting):
/// `None` once the command runs (the trail ended at its exec, or every
/// writer is gone), else the step its processes began last.
pub fn trail(fd: BorrowedFd<'_>) -> Option<Step> {
    let mut last = Step::Clone;
    let mut buf = [0u8; 16 * RECORD];
    // Bounded: a check's setup announces a few dozen steps at most.
    for _ in 0..8 {
        let n = match unistd::read(fd.as_raw_fd(), &mut buf) {
            Ok(0) => return None,
            Ok(n) => n,
            Err(_) => return Some(last),
        };
        for rec in buf.get(..n).unwrap_or(&[]).chunks_exact(RECORD) {
            if let Some(Record::Begin(step)) = rec.try_into().ok().and_then(decode) {
                last = step;
            }
        }
    }
    Some(last)
}

/// W's setup, in order: not dumpable and every berth descriptor but its
/// own closed before anything else, then the go-ahead, the death signal,
/// the container's rlimits (as host root, before the user namespace, as
/// the container's own start sets them), the namespaces, X.
pub const WAITER_STEPS: [Step; 7] = [Step::Dumpable, Step::CloseFds, Step::Sync, Step::Pdeathsig, Step::Rlimit, Step::Setns, Step::PidClone];

/// X's setup, in order: not dumpable first (a process the container could
/// otherwise read through `/proc/PID/mem` or `ptrace` while it holds
/// berth's memory and descriptors), the death signal, stdio, every
/// descriptor but the trail closed, then the container's credential steps
/// (from `BoundingSet` on, [`drop_privileges`]), not dumpable again (the
/// id change resets the flag to `fs.suid_dumpable`, which must not decide
/// it), no_new_privs, the death signal re-armed, signals, and the last
/// layers ([`confine_last`], from `AppArmor` on).
pub const INSIDE_STEPS: [Step; 11] = [
    Step::Dumpable,
    Step::Pdeathsig,
    Step::Stdio,
    Step::CloseFds,
    Step::Workdir,
    Step::BoundingSet,
    Step::Dumpable,
    Step::NoNewPrivs,
    Step::Pdeathsig,
    Step::Signals,
    Step::AppArmor,
];

/// Most descriptors W keeps: the namespaces, go, null, trail.
const KEEP_MAX: usize = NAMESPACES.len() + 3;

/// The ranges of descriptors from 3 up that are none of `keep` (sorted,
/// ascending): what [`close_all_but`] closes.
pub fn gaps(keep: &[i32]) -> heapless::Vec<(u32, u32), { KEEP_MAX + 1 }> {
    let mut out = heapless::Vec::new();
    let mut from: u32 = 3;
    for &k in keep {
        let Ok(k) = u32::try_from(k) else { continue };
        if k < from {
            continue;
        }
        if k > from {
            let _ = out.push((from, k - 1));
        }
        from = k.saturating_add(1);
    }
    let _ = out.push((from, u32::MAX));
    out
}

/// Close every descriptor from 3 up but `keep` (at most [`KEEP_MAX`]).
/// No allocation.
fn close_all_but(keep: &[BorrowedFd<'_>]) -> Result<(), Errno> {
    let mut raw: heapless::Vec<i32, KEEP_MAX> = heapless::Vec::new();
    for fd in keep {
        raw.push(fd.as_raw_fd()).map_err(|_| Errno::E2BIG)?;
    }
    raw.sort_unstable();
    for (first, last) in gaps(&raw) {
        sys::close_range(first, last, 0)?;
    }
    Ok(())
}

/// W: join, fork X, pass on its exit code.
#[allow(clippy::too_many_arguments)]
fn waiter(
    plan: &Plan,
    ns: &[(OwnedFd, CloneFlags)],
    go: std::os::fd::BorrowedFd<'_>,
    null: std::os::fd::BorrowedFd<'_>,
    trace: &Trace<'_>,
    confine: &Confine<'_>,
    path: &core::ffi::CStr,
    argv: &Argv<'_>,
    envp: &Envp<'_>,
) -> i32 {
    for step in WAITER_STEPS {
        trace.begin(step);
        let r = match step {
            Step::Dumpable => nix::sys::prctl::set_dumpable(false),
            Step::CloseFds => {
                let mut keep: heapless::Vec<BorrowedFd<'_>, KEEP_MAX> = heapless::Vec::new();
                let _ = keep.extend_from_slice(&[go, null, trace.fd()]);
                for (fd, _) in ns {
                    let _ = keep.push(fd.as_fd());
                }
                close_all_but(&keep)
            }
            Step::Sync => {
                let mut b = [0u8; 1];
                if unistd::read(go.as_raw_fd(), &mut b) == Ok(1) {
                    Ok(())
                } else {
                    Err(Errno::EPIPE)
                }
            }
            Step::Pdeathsig => nix::sys::prctl::set_pdeathsig(Signal::SIGKILL),
            Step::Rlimit => plan.rlimits.iter().try_for_each(|r| sys::set_rlimit(r.resource.raw(), r.soft, r.hard)),
            Step::Setns => ns.iter().try_for_each(|(fd, flag)| nix::sched::setns(fd, *flag)),
            _ => Ok(()),
        };
        if r.is_err() {
            return SETUP_FAILED;
        }
    }
    // SAFETY: the child runs only `inside`, ending in execve or `_exit`.
    let x = match unsafe { sys::clone_fork(0) } {
        Err(_) => return SETUP_FAILED,
        Ok(None) => {
            let e = inside(plan, null, trace, confine, path, argv, envp);
            sys::exit_now(if e == Errno::UnknownErrno { SETUP_FAILED } else { 127 })
        }
        Ok(Some(pid)) => pid,
    };
    // W's copy of the trail closes: the trail ends at X's exec.
    let _ = unistd::close(trace.fd().as_raw_fd());
    loop {
        match waitpid(x, None) {
            Err(Errno::EINTR) => {}
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
            Ok(_) => {}
            Err(_) => return SETUP_FAILED,
        }
    }
}

/// One of X's [`INSIDE_STEPS`].
fn inside_step(step: Step, plan: &Plan, null: BorrowedFd<'_>, t: &Trace<'_>, confine: &Confine<'_>) -> Result<(), Errno> {
    match step {
        Step::Dumpable => nix::sys::prctl::set_dumpable(false),
        Step::Pdeathsig => nix::sys::prctl::set_pdeathsig(Signal::SIGKILL),
        Step::Stdio => {
            for target in 0..3 {
                unistd::dup2(null.as_raw_fd(), target)?;
            }
            Ok(())
        }
        // Only the trail stays open (close-on-exec): it ends at the exec.
        Step::CloseFds => close_all_but(&[t.fd()]),
        Step::Workdir => {
            nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(plan.umask));
            unistd::chdir(plan.workdir.as_cstr())
        }
        Step::BoundingSet => drop_privileges(plan, t).map_err(|(_, e)| e),
        Step::NoNewPrivs if plan.caps.no_new_privs => nix::sys::prctl::set_no_new_privs(),
        Step::Signals => {
            sys::reset_signal_handlers()?;
            sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        }
        Step::AppArmor => confine_last(plan, confine, t).map_err(|(_, e)| e),
        _ => Ok(()),
    }
}

/// X: [`INSIDE_STEPS`], then exec. Returns the exec's error, or
/// `UnknownErrno` when a step before it failed.
fn inside(
    plan: &Plan,
    null: std::os::fd::BorrowedFd<'_>,
    t: &Trace<'_>,
    confine: &Confine<'_>,
    path: &core::ffi::CStr,
    argv: &Argv<'_>,
    envp: &Envp<'_>,
) -> Errno {
    for step in INSIDE_STEPS {
        // The grouped steps announce their own parts.
        if !matches!(step, Step::BoundingSet | Step::AppArmor) {
            t.begin(step);
        }
        if inside_step(step, plan, null, t, confine).is_err() {
            return Errno::UnknownErrno;
        }
    }
    t.begin(Step::Exec);
    sys::execve(path, argv, envp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_bounded_and_checked() {
        let mut c = crate::release::manifest::Command::new();
        assert!(Command::new(&c).is_none());
        c.push("/bin/check".try_into().unwrap()).unwrap();
        c.push("--quick".try_into().unwrap()).unwrap();
        let cmd = Command::new(&c).unwrap();
        assert_eq!(cmd.argv.len(), 2);
        assert_eq!(cmd.argv[0].as_cstr(), c"/bin/check");
        let mut bad = crate::release::manifest::Command::new();
        bad.push("/bin/a\0b".try_into().unwrap()).unwrap();
        assert!(Command::new(&bad).is_none());
    }

    #[test]
    fn checks_are_not_dumpable_and_hold_no_berth_descriptor_before_anything_else() {
        assert_eq!(WAITER_STEPS[..2], [Step::Dumpable, Step::CloseFds]);
        assert_eq!(INSIDE_STEPS[0], Step::Dumpable);
        // And again once the ids have changed (that resets the flag).
        let again = INSIDE_STEPS.iter().rposition(|x| *x == Step::Dumpable).unwrap();
        assert_eq!(INSIDE_STEPS.get(again - 1), Some(&Step::BoundingSet));
        let pos = |s: Step| INSIDE_STEPS.iter().position(|x| *x == s).unwrap();
        // Descriptors closed before the first step that touches the
        // container's files; the rlimits before the user namespace.
        assert!(pos(Step::CloseFds) < pos(Step::Workdir));
        let w = |s: Step| WAITER_STEPS.iter().position(|x| *x == s).unwrap();
        assert!(w(Step::Rlimit) < w(Step::Setns) && w(Step::Setns) < w(Step::PidClone));
        // The last layers last, after the credentials and no_new_privs.
        assert_eq!(INSIDE_STEPS.last(), Some(&Step::AppArmor));
        assert!(pos(Step::BoundingSet) < pos(Step::NoNewPrivs));
    }

    #[test]
    fn the_descriptors_closed_are_the_gaps_between_those_kept() {
        assert_eq!(gaps(&[]).as_slice(), [(3, u32::MAX)]);
        assert_eq!(gaps(&[3, 4, 9]).as_slice(), [(5, 8), (10, u32::MAX)]);
        assert_eq!(gaps(&[0, 5, 5, 7]).as_slice(), [(3, 4), (6, 6), (8, u32::MAX)]);
    }

    #[test]
    fn the_user_namespace_is_joined_first_and_pid_last() {
        assert_eq!(NAMESPACES[0].1, CloneFlags::CLONE_NEWUSER);
        assert_eq!(NAMESPACES[6].1, CloneFlags::CLONE_NEWPID);
    }
}
