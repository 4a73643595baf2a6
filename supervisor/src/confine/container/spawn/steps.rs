//! The steps of a container start and how the children report them: the
//! [`Step`] list, [`SpawnError`], and the error pipe's 8-byte records. Plain
//! data shared by the parent and the children; it must not make system
//! calls.

use super::*;

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

pub(super) const STEPS: [Step; 38] = [
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
pub(super) const MOUNT_CODE: u16 = 100;
/// Wire code of [`Step::LandlockRule`].
pub(super) const LANDLOCK_RULE_CODE: u16 = 101;

impl Step {
    /// (code, mount index) for the error record.
    pub(super) fn code(self) -> (u16, u16) {
        match self {
            Step::Mount(i) => (MOUNT_CODE, i),
            Step::LandlockRule(i) => (LANDLOCK_RULE_CODE, i),
            s => (STEPS.iter().position(|x| *x == s).and_then(|p| u16::try_from(p).ok()).unwrap_or(u16::MAX), 0),
        }
    }

    pub(super) fn from_code(code: u16, index: u16) -> Option<Step> {
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
    pub(in crate::confine::container) fn new(step: Step, errno: Errno) -> SpawnError {
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

    pub(in crate::confine::container) fn with_plan(step: Step, errno: Errno, plan: &Plan) -> SpawnError {
        let detail = match step {
            Step::Mount(i) => plan.steps.get(usize::from(i)).map(|s| s.to_string()),
            Step::LandlockRule(i) => plan.landlock.get(usize::from(i)).map(|r| r.path.to_string()),
            _ => None,
        };
        SpawnError { step, errno, detail }
    }
}

/// Size of one record.
pub(in crate::confine::container) const RECORD: usize = 8;

/// Set in a record's code when it says "this step begins" (no errno).
pub(super) const BEGIN: u16 = 0x8000;

/// What a child says on the error pipe: one 8-byte record each (step
/// `u16`, mount step index `u16`, errno `i32`, native endian), written
/// whole (a pipe never splits a write of up to `PIPE_BUF` bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::confine::container) enum Record {
    /// The child begins this step (the last one says where a hung start is).
    Begin(Step),
    /// This step failed; the child `_exit`s.
    Failed(Step, Errno),
}

pub(in crate::confine::container) fn encode(r: Record) -> [u8; RECORD] {
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

pub(in crate::confine::container) fn decode(r: &[u8; RECORD]) -> Option<Record> {
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
///
/// With a shared word ([`Trace::with_word`]) a begun step is stored there
/// instead of written to the pipe: the supervisor reads it when it needs it
/// (a start past its deadline) and is not woken once per step; failures
/// still go through the pipe.
#[derive(Clone, Copy)]
pub(in crate::confine::container) struct Trace<'a> {
    fd: BorrowedFd<'a>,
    /// The test hook: stop at this step until killed.
    hang: Option<Step>,
    /// The step begun last ([`word`]), shared with the supervisor.
    word: Option<&'a core::sync::atomic::AtomicU32>,
}

/// A begun step as the shared word holds it (never 0).
pub(in crate::confine::container) fn word(step: Step) -> u32 {
    let (code, index) = step.code();
    (u32::from(code | BEGIN) << 16) | u32::from(index)
}

/// The step in a shared word; `None` while no step was stored.
pub(in crate::confine::container) fn from_word(w: u32) -> Option<Step> {
    let code = u16::try_from(w >> 16).ok()?;
    if code & BEGIN == 0 {
        return None;
    }
    Step::from_code(code & !BEGIN, u16::try_from(w & 0xffff).ok()?)
}

impl<'a> Trace<'a> {
    pub(in crate::confine::container) fn new(fd: BorrowedFd<'a>, hang: Option<Step>) -> Trace<'a> {
        Trace { fd, hang, word: None }
    }

    /// Begun steps go to `word` instead of the pipe.
    pub(in crate::confine::container) fn with_word(fd: BorrowedFd<'a>, hang: Option<Step>, word: &'a core::sync::atomic::AtomicU32) -> Trace<'a> {
        Trace { fd, hang, word: Some(word) }
    }

    /// The pipe's write end.
    pub(in crate::confine::container) fn fd(&self) -> BorrowedFd<'a> {
        self.fd
    }

    /// `step` begins now.
    pub(in crate::confine::container) fn begin(&self, step: Step) {
        super::stamps::step(step);
        match self.word {
            Some(w) => w.store(word(step), core::sync::atomic::Ordering::Release),
            None => {
                let _ = write_all(self.fd, &encode(Record::Begin(step)));
            }
        }
        self.hang_at(step);
    }

    #[cfg(feature = "test-hooks")]
    pub(super) fn hang_at(&self, step: Step) {
        if self.hang.is_some_and(|h| h.same_kind(step)) {
            // Every signal is blocked (inherited from PID 1): only SIGKILL ends this.
            loop {
                nix::unistd::pause();
            }
        }
    }

    #[cfg(not(feature = "test-hooks"))]
    pub(super) fn hang_at(&self, _: Step) {
        let _ = self.hang;
    }

    /// Report `fail` and end the process.
    pub(in crate::confine::container) fn fail(&self, (step, errno): Fail) -> ! {
        let _ = write_all(self.fd, &encode(Record::Failed(step, errno)));
        sys::exit_now(127)
    }
}

pub(in crate::confine::container) type Fail = (Step, Errno);

pub(in crate::confine::container) trait Ctx<T> {
    fn at(self, step: Step) -> Result<T, Fail>;
}

impl<T> Ctx<T> for Result<T, Errno> {
    fn at(self, step: Step) -> Result<T, Fail> {
        self.map_err(|e| (step, e))
    }
}
