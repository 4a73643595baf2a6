//! The act layer: start one container from a [`Plan`].
//!
//! The children must not allocate or format between fork and exec, and the
//! container must not start on any error (see below).
//!
//! # Design: fork, user namespace alone, then a `CLONE_PARENT` fork into the PID namespace
//!
//! Three processes take part: the supervisor (S), an intermediate child
//! (C1) and the container's init (C2).
//!
//! | who | step |
//! |---|---|
//! | S | argv/envp pointer arrays, three `O_CLOEXEC` pipes (error, up, down) |
//! | S | `clone3(CLONE_INTO_CGROUP)` -> C1 (host root, host namespaces), born in the container's cgroup (v2); on v1, or a kernel without it, `clone(SIGCHLD)` and C1 is moved there after step `u` |
//! | C1 | `setgroups(0)` (drop the supervisor's supplementary groups while still allowed) |
//! | C1 | rlimits (`prlimit64`): before the user namespace, as host root |
//! | C1 | `setresgid`, `setresuid` to the container's outside base id: the user namespace is owned by the container's own uid, so per-user kernel budgets are per container ([`super::order`]) |
//! | C1 | `unshare(CLONE_NEWUSER)` alone, then `u` on the up pipe |
//! | S | `/proc/C1/setgroups` = `deny`, `uid_map`, `gid_map` (one write each), then `g` on the down pipe |
//! | C1 | `setresgid(0)`, `setresuid(0)`: become the namespace's root (mapped, keeps its capabilities) |
//! | C1 | `unshare(rest)` in one call: owned by the new user namespace |
//! | C1 | `clone(CLONE_PARENT)` -> C2, PID 1 of the new PID namespace and a direct child of S |
//! | C1 | C2's host pid on the up pipe, `_exit(0)`; S reaps C1 |
//! | C2 | `setsid`, `PR_SET_PDEATHSIG` |
//! | C2 | stdio onto 0, 1, 2 |
//! | C2 | the plan's steps (each through [`Mounter`]): propagation, root bind, API filesystems, writable mounts, `/dev`, `pivot_root`, hostname, read-only paths, masked paths, `/` read-only |
//! | C2 | `umask`, `chdir(workdir)` |
//! | C2 | bounding set drop, securebits, `setresgid`, `setresuid`, `capset`, ambient clear + raise |
//! | C2 | `PR_SET_NO_NEW_PRIVS`; `PR_SET_PDEATHSIG` re-armed, the supervisor checked alive |
//! | C2 | every signal handler to `SIG_DFL`, the signal mask emptied |
//! | C2 | every fd >= 3 `CLOEXEC` (`close_range`), the error pipe included |
//! | C2 | AppArmor: `exec <profile>` to `/proc/self/attr/apparmor/exec` (when the board names one) |
//! | C2 | Landlock (when the kernel has it): ruleset created, each rule's path opened `O_PATH` and added, `landlock_restrict_self` |
//! | C2 | seccomp (when a filter is given), last |
//! | C2 | `execve`: the error pipe closes, S reads EOF: started |
//!
//! Why two forks instead of one `clone(CLONE_NEWUSER | ...)`: C1 starts as
//! real root in the host's namespaces, so it can drop the supplementary
//! groups and lower its rlimits *before* the user namespace exists (after
//! `setgroups=deny` the groups could never be dropped), exactly in the notes'
//! order. `CLONE_PARENT` makes C2 the supervisor's own child, so S waits for
//! the container's init like any other child, without being PID 1 or a
//! subreaper.
//!
//! Progress and failure: C1 and C2 announce each step on the error pipe as it
//! begins, and a step that fails writes its errno there and `_exit(127)`s
//! (one 8-byte [`Record`] each: step `u16`, mount step index `u16`, errno
//! `i32`, native endian). S's side is [`super::start`]: [`begin`] forks and
//! returns at once; the handshake moves on as the pipes become readable, a
//! failure becomes a [`SpawnError`] naming the step, and a start that runs
//! past its deadline is killed naming the step it began last. The container
//! is not started on any error. [`spawn`] runs it all at once (tools, tests).
//!
//! Between fork and exec nothing allocates or formats: the plan holds every
//! string NUL-terminated, the pointer arrays are built before the fork, and
//! the children only make system calls (credential changes as raw calls:
//! see [`crate::sys::container`]).
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that started the container
//! exits: call [`spawn`] from a thread that lives as long as the container
//! (berth's main thread).

use core::ffi::CStr;
use core::fmt;
use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use nix::fcntl::{fcntl, open, FcntlArg, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::stat::{lstat, Mode, SFlag};
use nix::unistd::{self, Pid};

use crate::release::manifest::{ARGS_MAX, ENV_MAX};
use crate::sys::container as sys;
use crate::sys::landlock as landlock_sys;

use super::caps::CAP_LAST;
use super::landlock::Ruleset;
use super::mounts::{self, MASK_DIR_DATA, MASK_FILE_SOURCE};
use super::plan::Plan;
use super::start::Pending;
use super::Act;

mod mounter;
pub mod stamps;
mod steps;

pub use mounter::*;
pub use steps::*;

/// The container's standard input, output and error (duplicated onto 0, 1
/// and 2 in the child): pipe ends berth reads, `/dev/null`, a console.
#[derive(Debug, Clone, Copy)]
pub struct Stdio<'a> {
    pub stdin: BorrowedFd<'a>,
    pub stdout: BorrowedFd<'a>,
    pub stderr: BorrowedFd<'a>,
}

/// The security layers applied last in the init, each optional: decided
/// once per release by the supervisor.
#[derive(Debug, Clone, Copy, Default)]
pub struct Confine<'a> {
    /// The seccomp program, installed right before execve.
    pub seccomp: Option<&'a [libc::sock_filter]>,
    /// The Landlock ABI's rights; the rules are the plan's.
    pub landlock: Option<Ruleset>,
    /// `exec <profile>` for the AppArmor exec attribute.
    pub apparmor: Option<&'a CStr>,
}

/// A started container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Started {
    /// Host pid of the container's init (PID 1 inside), a direct child of
    /// the caller: wait for it with `waitpid`.
    pub pid: Pid,
    /// Host pid of the intermediate process (already reaped).
    pub intermediate: Pid,
    /// How it got into the container's cgroup.
    pub placed: Placed,
}

/// How the first child of a start gets into the container's cgroup.
pub struct Place<'a> {
    /// The container's cgroup v2 directory: the child is born in it
    /// (`clone3` with `CLONE_INTO_CGROUP`), so no process is ever moved.
    /// `None` on cgroup v1.
    pub dir: Option<BorrowedFd<'a>>,
    /// Move a process into the cgroup (`cgroup.procs`): on v1, and on a
    /// kernel that refuses the `clone3` way.
    pub add: &'a mut dyn FnMut(Pid) -> Result<(), Errno>,
}

pub use sys::Placed;

/// Pointer arrays for execve: argv (manifest limit) and environment (plus
/// the default `PATH` and `NOTIFY_SOCKET`), each with its NULL.
pub(super) type Argv<'a> = sys::CPtrs<'a, { ARGS_MAX + 1 }>;
pub(super) type Envp<'a> = sys::CPtrs<'a, { ENV_MAX + 3 }>;

/// What the children read; everything prepared before the fork.
struct Child<'a> {
    plan: &'a Plan,
    stdio: Stdio<'a>,
    confine: Confine<'a>,
    path: &'a CStr,
    argv: &'a Argv<'a>,
    envp: &'a Envp<'a>,
    err: BorrowedFd<'a>,
    trace: Trace<'a>,
    up: BorrowedFd<'a>,
    down: BorrowedFd<'a>,
}

/// Write all of `buf` (one record or a few bytes: a pipe takes them whole).
pub(super) fn write_all(fd: BorrowedFd<'_>, buf: &[u8]) -> Result<(), Errno> {
    let mut at = 0;
    while let Some(rest) = buf.get(at..).filter(|r| !r.is_empty()) {
        match unistd::write(fd, rest) {
            Ok(0) => return Err(Errno::EPIPE),
            Ok(n) => at += n,
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Read exactly `buf.len()` bytes; `Ok(false)` on EOF before the first one.
fn read_exact(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<bool, Errno> {
    let mut at = 0;
    while let Some(rest) = buf.get_mut(at..).filter(|r| !r.is_empty()) {
        match unistd::read(fd.as_raw_fd(), rest) {
            Ok(0) if at == 0 => return Ok(false),
            Ok(0) => return Err(Errno::EPIPE),
            Ok(n) => at += n,
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

impl Child<'_> {
    /// C1: host root in the host's namespaces until `unshare`.
    fn intermediate(&self) -> ! {
        match self.intermediate_steps() {
            Ok(never) => match never {},
            Err(f) => self.trace.fail(f),
        }
    }

    fn intermediate_steps(&self) -> Result<core::convert::Infallible, Fail> {
        super::order::run_intermediate(|step| {
            self.trace.begin(step);
            self.intermediate_step(step)
        })?;
        // PidClone never returns Ok: the child became the init, C1 exited.
        Err((Step::PidClone, Errno::EINVAL))
    }

    /// One step of [`super::order::INTERMEDIATE`].
    fn intermediate_step(&self, step: Step) -> Result<(), Fail> {
        let plan = self.plan;
        match step {
            Step::Groups => sys::clear_groups().at(step),
            Step::Rlimit => {
                for r in &plan.rlimits {
                    sys::set_rlimit(r.resource.raw(), r.soft, r.hard).at(step)?;
                }
                Ok(())
            }
            Step::HostIds => {
                // gid first: after setresuid the process may no longer change it.
                sys::setresgid(plan.ids.outside_base).at(step)?;
                sys::setresuid(plan.ids.outside_base).at(step)
            }
            Step::UserNamespace => nix::sched::unshare(CloneFlags::from_bits_retain(plan.namespaces.user)).at(step),
            Step::Sync => {
                write_all(self.up, b"u").at(step)?;
                let mut go = [0u8; 1];
                match read_exact(self.down, &mut go) {
                    Ok(true) if go == *b"g" => Ok(()),
                    // The supervisor gave up (it reports its own error): leave.
                    Ok(_) => sys::exit_now(127),
                    Err(e) => Err((step, e)),
                }
            }
            Step::NamespaceRoot => {
                sys::setresgid(0).at(step)?;
                sys::setresuid(0).at(step)
            }
            Step::Unshare => nix::sched::unshare(CloneFlags::from_bits_retain(plan.namespaces.rest)).at(step),
            Step::PidClone => {
                // SAFETY: the child runs only `init`, which makes system calls on
                // data prepared before the first fork and ends in execve or _exit.
                match unsafe { sys::clone_fork(libc::CLONE_PARENT) }.at(step)? {
                    None => self.init(),
                    Some(pid) => {
                        write_all(self.up, &pid.as_raw().to_ne_bytes()).at(Step::Intermediate)?;
                        sys::exit_now(0)
                    }
                }
            }
            other => Err((other, Errno::EINVAL)),
        }
    }

    /// C2: PID 1 of the container.
    fn init(&self) -> ! {
        match self.init_steps() {
            Ok(never) => match never {},
            Err(f) => self.trace.fail(f),
        }
    }

    fn stdio(&self) -> Result<(), Errno> {
        let fds = [self.stdio.stdin, self.stdio.stdout, self.stdio.stderr];
        // Copies above 2 first, so no target overwrites a later source.
        let mut tmp = [0; 3];
        for (t, fd) in tmp.iter_mut().zip(fds) {
            *t = fcntl(fd.as_raw_fd(), FcntlArg::F_DUPFD_CLOEXEC(3))?;
        }
        for (target, t) in (0..).zip(tmp) {
            unistd::dup2(t, target)?;
        }
        Ok(())
    }

    fn init_steps(&self) -> Result<core::convert::Infallible, Fail> {
        let (plan, t) = (self.plan, &self.trace);
        t.begin(Step::Setsid);
        unistd::setsid().at(Step::Setsid)?;
        t.begin(Step::Pdeathsig);
        nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).at(Step::Pdeathsig)?;
        t.begin(Step::Stdio);
        self.stdio().at(Step::Stdio)?;
        for (i, s) in plan.steps.iter().enumerate() {
            let step = Step::Mount(u16::try_from(i).unwrap_or(u16::MAX));
            t.begin(step);
            Mounter.act(s).at(step)?;
        }
        t.begin(Step::Workdir);
        nix::sys::stat::umask(Mode::from_bits_truncate(plan.umask));
        unistd::chdir(plan.workdir.as_cstr()).at(Step::Workdir)?;
        drop_privileges(plan, t)?;
        if plan.caps.no_new_privs {
            t.begin(Step::NoNewPrivs);
            nix::sys::prctl::set_no_new_privs().at(Step::NoNewPrivs)?;
        }
        // Credentials changed: the death signal is cleared by some of those
        // changes. Re-arm, then make sure the supervisor is still there (a
        // PID namespace's init always sees getppid() == 0, so the error
        // pipe's reader stands for the parent).
        t.begin(Step::Pdeathsig);
        nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).at(Step::Pdeathsig)?;
        if sys::pipe_reader_gone(self.err) {
            return Err((Step::ParentGone, Errno::ESRCH));
        }
        t.begin(Step::Signals);
        sys::reset_signal_handlers().at(Step::Signals)?;
        sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None).at(Step::Signals)?;
        t.begin(Step::CloseFds);
        close_fds(self.err).at(Step::CloseFds)?;
        confine_last(self.plan, &self.confine, t)?;
        t.begin(Step::Exec);
        Err((Step::Exec, sys::execve(self.path, self.argv, self.envp)))
    }
}

/// The last layers before execve, in order: the AppArmor exec profile, the
/// Landlock ruleset, the seccomp filter. Also used by [`super::enter`].
pub(super) fn confine_last(plan: &Plan, confine: &Confine<'_>, t: &Trace<'_>) -> Result<(), Fail> {
    if let Some(attr) = confine.apparmor {
        t.begin(Step::AppArmor);
        apparmor_exec(attr).at(Step::AppArmor)?;
    }
    if let Some(ruleset) = confine.landlock {
        landlock(plan, &ruleset, t)?;
    }
    if let Some(prog) = confine.seccomp {
        t.begin(Step::Seccomp);
        sys::install_filter(prog).at(Step::Seccomp)?;
    }
    Ok(())
}

/// Every rule's path, opened after the pivot (a path that is missing fails
/// the start), then the ruleset enforced.
fn landlock(plan: &Plan, ruleset: &Ruleset, t: &Trace<'_>) -> Result<(), Fail> {
    t.begin(Step::Landlock);
    let fd = landlock_sys::create_ruleset(ruleset.handled_fs, ruleset.scoped).at(Step::Landlock)?;
    for (i, rule) in plan.landlock.iter().enumerate() {
        let step = Step::LandlockRule(u16::try_from(i).unwrap_or(u16::MAX));
        t.begin(step);
        let open = if rule.no_links { landlock_sys::open_path_no_links } else { landlock_sys::open_path };
        let (path, is_dir) = open(rule.path.as_cstr()).at(step)?;
        landlock_sys::add_path_rule(fd.as_fd(), path.as_fd(), ruleset.allowed(rule.access, is_dir)).at(step)?;
    }
    t.begin(Step::LandlockRestrict);
    landlock_sys::restrict_self(fd.as_fd()).at(Step::LandlockRestrict)
}

/// Write the AppArmor exec attribute: the program execve starts runs in the
/// profile. The per-LSM file first, the legacy one on older kernels.
fn apparmor_exec(attr: &CStr) -> Result<(), Errno> {
    match sys::write_once(crate::confine::apparmor::EXEC_ATTR, attr.to_bytes()) {
        Err(Errno::ENOENT) => sys::write_once(crate::confine::apparmor::EXEC_ATTR_LEGACY, attr.to_bytes()),
        r => r,
    }
}

/// The credential steps of the plan: bounding set, securebits, ids,
/// capabilities, ambient set. Also used by [`super::enter`].
pub(super) fn drop_privileges(plan: &Plan, t: &Trace<'_>) -> Result<(), Fail> {
    let caps = &plan.caps;
    let ids = &plan.ids;
    let drop = caps.bounding_drop();
    t.begin(Step::BoundingSet);
    for cap in 0..=caps.last_cap.min(super::caps::CAP_MAX) {
        if drop & (1u64 << cap) != 0 {
            match sys::capbset_drop(cap) {
                // A capability this kernel does not know.
                Err(Errno::EINVAL) => {}
                r => r.at(Step::BoundingSet)?,
            }
        }
    }
    t.begin(Step::Securebits);
    sys::set_securebits(caps.securebits).at(Step::Securebits)?;
    // setgroups is denied in the namespace; C1 dropped the groups as
    // host root.
    t.begin(Step::Setresgid);
    sys::setresgid(ids.gid).at(Step::Setresgid)?;
    t.begin(Step::Setresuid);
    sys::setresuid(ids.uid).at(Step::Setresuid)?;
    t.begin(Step::Capset);
    sys::capset(&caps.capset_data()).at(Step::Capset)?;
    t.begin(Step::Ambient);
    sys::ambient_clear_all().at(Step::Ambient)?;
    for cap in 0..=CAP_LAST {
        if caps.ambient & (1u64 << cap) != 0 {
            sys::ambient_raise(cap).at(Step::Ambient)?;
        }
    }
    Ok(())
}

/// Every fd >= 3 but `keep` close-on-exec (or closed, before Linux 5.11).
pub(super) fn close_fds(keep: BorrowedFd<'_>) -> Result<(), Errno> {
    match sys::close_range(3, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) {
        // Before Linux 5.11: close all but the error pipe (CLOEXEC).
        Err(Errno::EINVAL) => {
            let err = u32::try_from(keep.as_raw_fd()).map_err(|_| Errno::EBADF)?;
            if err > 3 {
                sys::close_range(3, err - 1, 0)?;
            }
            sys::close_range(err.saturating_add(1), u32::MAX, 0)
        }
        r => r,
    }
}

pub(super) fn write_proc(pid: Pid, file: &str, data: &[u8]) -> Result<(), Errno> {
    use std::io::Write;
    let errno = |e: std::io::Error| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
    let mut f = std::fs::OpenOptions::new().write(true).open(format!("/proc/{pid}/{file}")).map_err(errno)?;
    // One write: the kernel takes a map in a single write(2) only.
    match f.write(data).map_err(errno)? {
        n if n == data.len() => Ok(()),
        _ => Err(Errno::EIO),
    }
}

/// Fork the start of the container `plan` describes, with `stdio` as its
/// descriptors 0, 1 and 2 and `confine`'s layers applied last (seccomp
/// right before execve). The intermediate process is born in the cgroup
/// `dir` when one is given and the kernel allows it (else the handshake
/// moves it, see [`Pending::advance`]). Returns at once: the rest of the
/// handshake runs as the child's pipes become readable ([`Pending`]), or
/// all at once in [`spawn`]. `hang` is the test hook's step (always `None`
/// without the `test-hooks` feature, and then ignored).
pub fn begin(plan: &Plan, stdio: Stdio<'_>, confine: Confine<'_>, dir: Option<BorrowedFd<'_>>, hang: Option<Step>) -> Result<Pending, SpawnError> {
    let e = |step| move |errno| SpawnError::new(step, errno);
    stamps::step(Step::Args);
    let path = plan.argv.first().map(|a| a.as_cstr()).ok_or(SpawnError::new(Step::Args, Errno::EINVAL))?;
    let argv = Argv::new(plan.argv.iter().map(|a| a.as_cstr())).ok_or(SpawnError::new(Step::Args, Errno::E2BIG))?;
    let envp = Envp::new(plan.env.iter().map(|a| a.as_cstr())).ok_or(SpawnError::new(Step::Args, Errno::E2BIG))?;
    stamps::step(Step::Pipe);
    let (err_r, err_w) = pipe().map_err(e(Step::Pipe))?;
    let (up_r, up_w) = pipe().map_err(e(Step::Pipe))?;
    let (down_r, down_w) = pipe().map_err(e(Step::Pipe))?;
    // The supervisor's ends never block it (the children use the others).
    for fd in [&err_r, &up_r, &down_w] {
        fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(e(Step::Pipe))?;
    }
    // Where the children say which step they began (the supervisor is not
    // woken once per step; see `Trace`).
    let shared = sys::SharedWord::new().map_err(e(Step::Pipe))?;
    let child = Child {
        plan,
        stdio,
        confine,
        path,
        argv: &argv,
        envp: &envp,
        err: err_w.as_fd(),
        trace: Trace::with_word(err_w.as_fd(), hang, shared.word()),
        up: up_w.as_fd(),
        down: down_r.as_fd(),
    };
    stamps::step(Step::Clone);
    // SAFETY: the child runs only `Child::intermediate`: system calls on data
    // prepared above, ending in execve or _exit; it never returns here.
    let (c1, placed) = match unsafe { sys::fork_placed(dir) } {
        Err((true, errno)) => return Err(SpawnError::new(Step::Cgroup, errno)),
        Err((false, errno)) => return Err(SpawnError::new(Step::Clone, errno)),
        Ok((None, _)) => child.intermediate(),
        Ok((Some(pid), placed)) => (pid, placed),
    };
    drop(err_w);
    drop(up_w);
    drop(down_r);
    Ok(Pending::new(c1, placed, err_r, up_r, down_w).with_word(shared))
}

/// [`begin`], then the whole handshake, waiting on the pipes (for tools and
/// tests, never PID 1's loop): on success the container's init has exec'd
/// its program; on any error nothing of it is left running. `place` puts
/// the intermediate process into the container's cgroup: born there (v2),
/// or moved there while it waits, before any of the container's own
/// processes exist.
pub fn spawn(plan: &Plan, stdio: Stdio<'_>, confine: Confine<'_>, place: &mut Place<'_>) -> Result<Started, SpawnError> {
    use super::start::Poll;
    let mut p = begin(plan, stdio, confine, place.dir, None)?;
    loop {
        match p.advance(plan, place.add) {
            Poll::Waiting => p.wait_readable(),
            Poll::Started(st) => {
                p.reap_blocking(Some(st.pid));
                return Ok(st);
            }
            Poll::Failed(err) => {
                p.kill();
                p.reap_blocking(None);
                return Err(err);
            }
        }
    }
}

/// An `O_CLOEXEC` pipe whose ends are both above 2 (the init duplicates its
/// stdio onto 0..=2 while it still needs the error pipe).
fn pipe() -> Result<(OwnedFd, OwnedFd), Errno> {
    let (r, w) = unistd::pipe2(OFlag::O_CLOEXEC)?;
    let high = |fd: OwnedFd| -> Result<OwnedFd, Errno> {
        if fd.as_raw_fd() > 2 {
            return Ok(fd);
        }
        // std duplicates with F_DUPFD_CLOEXEC from 3.
        fd.try_clone().map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EBADF)))
    };
    Ok((high(r)?, high(w)?))
}

#[cfg(test)]
mod tests;
