//! The act layer: start one container from a [`Plan`].
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

/// Each setup step of a container start, in order. `Mount` carries the
/// index of the plan step ([`Plan::steps`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Supervisor: argv or environment does not fit the pointer arrays.
    Args,
    /// Supervisor: creating the pipes.
    Pipe,
    /// Supervisor: the first fork.
    Clone,
    /// Intermediate: `setgroups(0)` as host root.
    Groups,
    /// Intermediate: `prlimit64`.
    Rlimit,
    /// Intermediate: `setresgid`/`setresuid` to the container's outside
    /// base id, before the user namespace.
    HostIds,
    /// Intermediate: `unshare(CLONE_NEWUSER)`.
    UserNamespace,
    /// Either side: the up/down handshake over the pipes.
    Sync,
    /// Supervisor: the intermediate's cgroup: born in it (`clone3`), or
    /// moved there (its descendants, the container's processes, are born
    /// there).
    Cgroup,
    /// Supervisor: `/proc/PID/setgroups`.
    SetgroupsDeny,
    /// Supervisor: `/proc/PID/uid_map`.
    UidMap,
    /// Supervisor: `/proc/PID/gid_map`.
    GidMap,
    /// Intermediate: `setresgid(0)`/`setresuid(0)` inside.
    NamespaceRoot,
    /// Intermediate: `unshare` of the other namespaces.
    Unshare,
    /// Intermediate: the fork into the PID namespace.
    PidClone,
    /// Intermediate: reporting the init's pid; supervisor: reaping the
    /// intermediate.
    Intermediate,
    /// Init: `setsid`.
    Setsid,
    /// Init: `PR_SET_PDEATHSIG`.
    Pdeathsig,
    /// Init: stdio onto 0, 1, 2.
    Stdio,
    /// Init: the plan's step at this index.
    Mount(u16),
    /// Init: `chdir` into the working directory.
    Workdir,
    /// Init: `PR_CAPBSET_DROP`.
    BoundingSet,
    /// Init: `PR_SET_SECUREBITS`.
    Securebits,
    /// Init: `setresgid`.
    Setresgid,
    /// Init: `setresuid`.
    Setresuid,
    /// Init: `capset`.
    Capset,
    /// Init: ambient clear and raise.
    Ambient,
    /// Init: `PR_SET_NO_NEW_PRIVS`.
    NoNewPrivs,
    /// Init: the supervisor died during the start.
    ParentGone,
    /// Init: signal dispositions and mask.
    Signals,
    /// Init: `close_range`.
    CloseFds,
    /// Init: writing the AppArmor exec attribute.
    AppArmor,
    /// Init: `landlock_create_ruleset`.
    Landlock,
    /// Init: the Landlock rule at this index of [`Plan::landlock`]: opening
    /// its path or adding it.
    LandlockRule(u16),
    /// Init: `landlock_restrict_self`.
    LandlockRestrict,
    /// Init: seccomp filter.
    Seccomp,
    /// Init: `execve`.
    Exec,
    /// A command entering a running container ([`super::enter`]): `setns`.
    Setns,
    /// A command entering a running container: `PR_SET_DUMPABLE(0)`.
    Dumpable,
    /// Supervisor: a child ended without a record, or sent garbage.
    Lost,
}

const STEPS: [Step; 38] = [
    Step::Args,
    Step::Pipe,
    Step::Clone,
    Step::Groups,
    Step::Rlimit,
    Step::HostIds,
    Step::UserNamespace,
    Step::Sync,
    Step::Cgroup,
    Step::SetgroupsDeny,
    Step::UidMap,
    Step::GidMap,
    Step::NamespaceRoot,
    Step::Unshare,
    Step::PidClone,
    Step::Intermediate,
    Step::Setsid,
    Step::Pdeathsig,
    Step::Stdio,
    Step::Workdir,
    Step::BoundingSet,
    Step::Securebits,
    Step::Setresgid,
    Step::Setresuid,
    Step::Capset,
    Step::Ambient,
    Step::NoNewPrivs,
    Step::ParentGone,
    Step::Signals,
    Step::CloseFds,
    Step::AppArmor,
    Step::Landlock,
    Step::LandlockRestrict,
    Step::Seccomp,
    Step::Exec,
    Step::Setns,
    Step::Dumpable,
    Step::Lost,
];

/// Wire code of [`Step::Mount`].
const MOUNT_CODE: u16 = 100;
/// Wire code of [`Step::LandlockRule`].
const LANDLOCK_RULE_CODE: u16 = 101;

impl Step {
    /// (code, mount index) for the error record.
    fn code(self) -> (u16, u16) {
        match self {
            Step::Mount(i) => (MOUNT_CODE, i),
            Step::LandlockRule(i) => (LANDLOCK_RULE_CODE, i),
            s => (STEPS.iter().position(|x| *x == s).and_then(|p| u16::try_from(p).ok()).unwrap_or(u16::MAX), 0),
        }
    }

    fn from_code(code: u16, index: u16) -> Option<Step> {
        if code == MOUNT_CODE {
            return Some(Step::Mount(index));
        }
        if code == LANDLOCK_RULE_CODE {
            return Some(Step::LandlockRule(index));
        }
        STEPS.get(usize::from(code)).copied()
    }

    /// Short name of the step.
    pub fn name(self) -> &'static str {
        match self {
            Step::Args => "argv/envp arrays",
            Step::Pipe => "pipe",
            Step::Clone => "clone",
            Step::Groups => "setgroups(0)",
            Step::Rlimit => "prlimit",
            Step::HostIds => "switch to the container's outside ids",
            Step::UserNamespace => "unshare user namespace",
            Step::Sync => "sync with the supervisor",
            Step::Cgroup => "place in the container's cgroup",
            Step::SetgroupsDeny => "write setgroups deny",
            Step::UidMap => "write uid_map",
            Step::GidMap => "write gid_map",
            Step::NamespaceRoot => "become root of the user namespace",
            Step::Unshare => "unshare namespaces",
            Step::PidClone => "clone into the pid namespace",
            Step::Intermediate => "intermediate process",
            Step::Setsid => "setsid",
            Step::Pdeathsig => "PR_SET_PDEATHSIG",
            Step::Stdio => "stdio",
            Step::Mount(_) => "mount step",
            Step::Workdir => "chdir workdir",
            Step::BoundingSet => "bounding set drop",
            Step::Securebits => "securebits",
            Step::Setresgid => "setresgid",
            Step::Setresuid => "setresuid",
            Step::Capset => "capset",
            Step::Ambient => "ambient capabilities",
            Step::NoNewPrivs => "PR_SET_NO_NEW_PRIVS",
            Step::ParentGone => "supervisor gone",
            Step::Signals => "signals",
            Step::CloseFds => "close_range",
            Step::AppArmor => "AppArmor exec profile",
            Step::Landlock => "landlock ruleset",
            Step::LandlockRule(_) => "landlock rule",
            Step::LandlockRestrict => "landlock_restrict_self",
            Step::Seccomp => "seccomp",
            Step::Exec => "execve",
            Step::Setns => "setns",
            Step::Dumpable => "PR_SET_DUMPABLE",
            Step::Lost => "child lost",
        }
    }

    /// One word for the step (events' `step=`, the `berth.hang=` test
    /// hook): the name's kind without its index (`mount`, `landlock-rule`).
    pub fn slug(self) -> &'static str {
        match self {
            Step::Args => "args",
            Step::Pipe => "pipe",
            Step::Clone => "clone",
            Step::Groups => "groups",
            Step::Rlimit => "rlimit",
            Step::HostIds => "host-ids",
            Step::UserNamespace => "user-namespace",
            Step::Sync => "sync",
            Step::Cgroup => "cgroup",
            Step::SetgroupsDeny => "setgroups-deny",
            Step::UidMap => "uid-map",
            Step::GidMap => "gid-map",
            Step::NamespaceRoot => "namespace-root",
            Step::Unshare => "unshare",
            Step::PidClone => "pid-clone",
            Step::Intermediate => "intermediate",
            Step::Setsid => "setsid",
            Step::Pdeathsig => "pdeathsig",
            Step::Stdio => "stdio",
            Step::Mount(_) => "mount",
            Step::Workdir => "workdir",
            Step::BoundingSet => "bounding-set",
            Step::Securebits => "securebits",
            Step::Setresgid => "setresgid",
            Step::Setresuid => "setresuid",
            Step::Capset => "capset",
            Step::Ambient => "ambient",
            Step::NoNewPrivs => "no-new-privs",
            Step::ParentGone => "parent-gone",
            Step::Signals => "signals",
            Step::CloseFds => "close-fds",
            Step::AppArmor => "apparmor",
            Step::Landlock => "landlock",
            Step::LandlockRule(_) => "landlock-rule",
            Step::LandlockRestrict => "landlock-restrict",
            Step::Seccomp => "seccomp",
            Step::Exec => "exec",
            Step::Setns => "setns",
            Step::Dumpable => "dumpable",
            Step::Lost => "lost",
        }
    }

    /// The step whose [`Step::slug`] is `slug` (index 0 for `mount` and
    /// `landlock-rule`, which stand for every index).
    pub fn from_slug(slug: &str) -> Option<Step> {
        STEPS.iter().copied().chain([Step::Mount(0), Step::LandlockRule(0)]).find(|s| s.slug() == slug)
    }

    /// The same kind of step (any index of `mount` and `landlock-rule`).
    pub fn same_kind(self, other: Step) -> bool {
        core::mem::discriminant(&self) == core::mem::discriminant(&other)
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Mount(i) => write!(f, "mount step {i}"),
            Step::LandlockRule(i) => write!(f, "landlock rule {i}"),
            s => f.write_str(s.name()),
        }
    }
}

/// A container that did not start: the failed step and its error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpawnError {
    pub step: Step,
    pub errno: Errno,
    /// For [`Step::Mount`]: the plan step rendered (`mount proc /r/proc
    /// nosuid,nodev,noexec`, `pivot_root /r`, `hostname web`).
    pub detail: Option<String>,
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.detail {
            Some(d) => write!(f, "container start failed at {} ({d}): {}", self.step, self.errno.desc())?,
            None => write!(f, "container start failed at {}: {}", self.step, self.errno.desc())?,
        }
        write!(f, " ({:?})", self.errno)
    }
}

impl std::error::Error for SpawnError {}

impl SpawnError {
    pub(super) fn new(step: Step, errno: Errno) -> SpawnError {
        SpawnError { step, errno, detail: None }
    }

    /// `step` rendered with what the plan says of it (`mount step 3 (bind
    /// /a /b)`).
    pub fn at_step(step: Step, plan: &Plan) -> String {
        let e = SpawnError::with_plan(step, Errno::UnknownErrno, plan);
        match e.detail {
            Some(d) => format!("{step} ({d})"),
            None => step.to_string(),
        }
    }

    pub(super) fn with_plan(step: Step, errno: Errno, plan: &Plan) -> SpawnError {
        let detail = match step {
            Step::Mount(i) => plan.steps.get(usize::from(i)).map(|s| s.to_string()),
            Step::LandlockRule(i) => plan.landlock.get(usize::from(i)).map(|r| r.path.to_string()),
            _ => None,
        };
        SpawnError { step, errno, detail }
    }
}

/// Size of one record.
pub(super) const RECORD: usize = 8;

/// Set in a record's code when it says "this step begins" (no errno).
const BEGIN: u16 = 0x8000;

/// What a child says on the error pipe: one 8-byte record each (step
/// `u16`, mount step index `u16`, errno `i32`, native endian), written
/// whole (a pipe never splits a write of up to `PIPE_BUF` bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Record {
    /// The child begins this step (the last one says where a hung start is).
    Begin(Step),
    /// This step failed; the child `_exit`s.
    Failed(Step, Errno),
}

pub(super) fn encode(r: Record) -> [u8; RECORD] {
    let ((code, index), errno) = match r {
        Record::Begin(step) => {
            let (c, i) = step.code();
            ((c | BEGIN, i), 0)
        }
        Record::Failed(step, errno) => (step.code(), errno as i32),
    };
    let mut out = [0u8; RECORD];
    let (a, rest) = out.split_at_mut(2);
    let (b, c) = rest.split_at_mut(2);
    a.copy_from_slice(&code.to_ne_bytes());
    b.copy_from_slice(&index.to_ne_bytes());
    c.copy_from_slice(&errno.to_ne_bytes());
    out
}

pub(super) fn decode(r: &[u8; RECORD]) -> Option<Record> {
    let [a0, a1, b0, b1, c0, c1, c2, c3] = *r;
    let code = u16::from_ne_bytes([a0, a1]);
    let step = Step::from_code(code & !BEGIN, u16::from_ne_bytes([b0, b1]))?;
    if code & BEGIN != 0 {
        return Some(Record::Begin(step));
    }
    Some(Record::Failed(step, Errno::from_raw(i32::from_ne_bytes([c0, c1, c2, c3]))))
}

/// The child's side of the error pipe: each step is announced before it
/// runs ([`Record::Begin`]), so a start that hangs names its step. Nothing
/// here allocates.
#[derive(Clone, Copy)]
pub(super) struct Trace<'a> {
    fd: BorrowedFd<'a>,
    /// The test hook: stop at this step until killed.
    hang: Option<Step>,
}

impl<'a> Trace<'a> {
    pub(super) fn new(fd: BorrowedFd<'a>, hang: Option<Step>) -> Trace<'a> {
        Trace { fd, hang }
    }

    /// The pipe's write end.
    pub(super) fn fd(&self) -> BorrowedFd<'a> {
        self.fd
    }

    /// `step` begins now.
    pub(super) fn begin(&self, step: Step) {
        let _ = write_all(self.fd, &encode(Record::Begin(step)));
        self.hang_at(step);
    }

    #[cfg(feature = "test-hooks")]
    fn hang_at(&self, step: Step) {
        if self.hang.is_some_and(|h| h.same_kind(step)) {
            // Every signal is blocked (inherited from PID 1): only SIGKILL ends this.
            loop {
                nix::unistd::pause();
            }
        }
    }

    #[cfg(not(feature = "test-hooks"))]
    fn hang_at(&self, _: Step) {
        let _ = self.hang;
    }

    /// Report `fail` and end the process.
    pub(super) fn fail(&self, (step, errno): Fail) -> ! {
        let _ = write_all(self.fd, &encode(Record::Failed(step, errno)));
        sys::exit_now(127)
    }
}

pub(super) type Fail = (Step, Errno);

pub(super) trait Ctx<T> {
    fn at(self, step: Step) -> Result<T, Fail>;
}

impl<T> Ctx<T> for Result<T, Errno> {
    fn at(self, step: Step) -> Result<T, Fail> {
        self.map_err(|e| (step, e))
    }
}

/// The real [`Act`]: each plan step's system calls. Runs in the child.
pub struct Mounter;

/// Flags the kernel keeps on a mount (locked in a user namespace), as
/// `MS_*` for a bind remount: access and atime flags from `statfs`.
fn locked_flags(path: &CStr) -> Result<MsFlags, Errno> {
    const ST_RDONLY: u64 = 1;
    const ST_NOSUID: u64 = 2;
    const ST_NODEV: u64 = 4;
    const ST_NOEXEC: u64 = 8;
    const ST_NOATIME: u64 = 1024;
    const ST_NODIRATIME: u64 = 2048;
    const ST_RELATIME: u64 = 4096;
    let st = sys::mount_flags(path)?;
    let mut f = MsFlags::empty();
    for (bit, flag) in [
        (ST_RDONLY, MsFlags::MS_RDONLY),
        (ST_NOSUID, MsFlags::MS_NOSUID),
        (ST_NODEV, MsFlags::MS_NODEV),
        (ST_NOEXEC, MsFlags::MS_NOEXEC),
        (ST_NOATIME, MsFlags::MS_NOATIME),
        (ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if st & bit != 0 {
            f |= flag;
        }
    }
    // Without an atime flag the kernel would default to relatime, which a
    // locked strictatime mount refuses.
    if st & (ST_NOATIME | ST_RELATIME) == 0 {
        f |= MsFlags::MS_STRICTATIME;
    }
    Ok(f)
}

pub(super) fn remount(target: &CStr, flags: MsFlags) -> Result<(), Errno> {
    let all = flags | MsFlags::MS_BIND | MsFlags::MS_REMOUNT | locked_flags(target)?;
    mount(None::<&CStr>, target, None::<&CStr>, all, None::<&CStr>)
}

fn mount_attrs(flags: MsFlags) -> u64 {
    let mut a = 0;
    for (flag, attr) in [
        (MsFlags::MS_RDONLY, sys::MOUNT_ATTR_RDONLY),
        (MsFlags::MS_NOSUID, sys::MOUNT_ATTR_NOSUID),
        (MsFlags::MS_NODEV, sys::MOUNT_ATTR_NODEV),
        (MsFlags::MS_NOEXEC, sys::MOUNT_ATTR_NOEXEC),
    ] {
        if flags.contains(flag) {
            a |= attr;
        }
    }
    a
}

fn absent_ok(r: Result<(), Errno>) -> Result<(), Errno> {
    match r {
        Err(Errno::ENOENT) => Ok(()),
        r => r,
    }
}

fn pivot(new_root: &CStr) -> Result<(), Errno> {
    let old = open(c"/", OFlag::O_DIRECTORY | OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())?;
    let r = (|| {
        unistd::chdir(new_root)?;
        unistd::pivot_root(c".", c".")?;
        unistd::fchdir(old)?;
        mount(None::<&CStr>, c".", None::<&CStr>, MsFlags::MS_SLAVE | MsFlags::MS_REC, None::<&CStr>)?;
        umount2(c".", MntFlags::MNT_DETACH)?;
        unistd::chdir(c"/")
    })();
    let _ = unistd::close(old);
    r
}

impl Act for Mounter {
    type Error = Errno;

    fn act(&mut self, step: &mounts::Step) -> Result<(), Errno> {
        use mounts::Step as S;
        let none = None::<&CStr>;
        match step {
            S::Propagation { target, flags } => mount(none, target.as_cstr(), none, *flags, none),
            S::Bind { source, target, recursive } => {
                let rec = if *recursive { MsFlags::MS_REC } else { MsFlags::empty() };
                mount(Some(source.as_cstr()), target.as_cstr(), none, MsFlags::MS_BIND | rec, none)
            }
            S::BindNode { source, target } => {
                let st = lstat(source.as_cstr())?;
                if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) != SFlag::S_IFCHR {
                    return Err(Errno::ENODEV);
                }
                mount(Some(source.as_cstr()), target.as_cstr(), none, MsFlags::MS_BIND, none)
            }
            S::BindSocket { source, target } => {
                let st = lstat(source.as_cstr())?;
                if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) != SFlag::S_IFSOCK {
                    return Err(Errno::ENOTSOCK);
                }
                mount(Some(source.as_cstr()), target.as_cstr(), none, MsFlags::MS_BIND, none)
            }
            S::BindRemount { target, flags, recursive: false } => remount(target.as_cstr(), *flags),
            S::BindRemount { target, flags, recursive: true } => {
                match sys::mount_setattr_recursive(target.as_cstr(), mount_attrs(*flags)) {
                    // Before Linux 5.12: the top mount only (sub-mounts keep
                    // the host's flags and permissions).
                    Err(Errno::ENOSYS) => remount(target.as_cstr(), *flags),
                    r => r,
                }
            }
            S::Mount { fstype, target, flags, data } => {
                let data = Some(data.as_cstr()).filter(|d| !d.is_empty());
                mount(Some(*fstype), target.as_cstr(), Some(*fstype), *flags, data)
            }
            S::Beneath(at) => super::beneath::act(at),
            S::Mkdir { path, mode } => match unistd::mkdir(path.as_cstr(), Mode::from_bits_truncate(*mode)) {
                Err(Errno::EEXIST) => Ok(()),
                r => r,
            },
            S::Touch { path, mode } => {
                let fd = open(
                    path.as_cstr(),
                    OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(*mode),
                )?;
                unistd::close(fd)
            }
            S::Symlink { target, link } => unistd::symlinkat(*target, None, link.as_cstr()),
            S::PivotRoot { new_root } => pivot(new_root.as_cstr()),
            S::Hostname { name } => unistd::sethostname(OsStr::from_bytes(name.as_bytes())),
            S::ReadOnly { path } => absent_ok((|| {
                mount(Some(*path), *path, none, MsFlags::MS_BIND | MsFlags::MS_REC, none)?;
                remount(path, MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC)
            })()),
            S::MaskFile { path } => absent_ok(mount(Some(MASK_FILE_SOURCE), *path, none, MsFlags::MS_BIND, none)),
            S::MaskDir { path } => absent_ok(mount(
                Some(c"tmpfs"),
                *path,
                Some(c"tmpfs"),
                MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                Some(MASK_DIR_DATA),
            )),
        }
    }
}

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
    let path = plan.argv.first().map(|a| a.as_cstr()).ok_or(SpawnError::new(Step::Args, Errno::EINVAL))?;
    let argv = Argv::new(plan.argv.iter().map(|a| a.as_cstr())).ok_or(SpawnError::new(Step::Args, Errno::E2BIG))?;
    let envp = Envp::new(plan.env.iter().map(|a| a.as_cstr())).ok_or(SpawnError::new(Step::Args, Errno::E2BIG))?;
    let (err_r, err_w) = pipe().map_err(e(Step::Pipe))?;
    let (up_r, up_w) = pipe().map_err(e(Step::Pipe))?;
    let (down_r, down_w) = pipe().map_err(e(Step::Pipe))?;
    // The supervisor's ends never block it (the children use the others).
    for fd in [&err_r, &up_r, &down_w] {
        fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(e(Step::Pipe))?;
    }
    let child = Child {
        plan,
        stdio,
        confine,
        path,
        argv: &argv,
        envp: &envp,
        err: err_w.as_fd(),
        trace: Trace::new(err_w.as_fd(), hang),
        up: up_w.as_fd(),
        down: down_r.as_fd(),
    };
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
    Ok(Pending::new(c1, placed, err_r, up_r, down_w))
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
