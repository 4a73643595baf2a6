//! The supervisor's side of a container start, as a handshake that never
//! waits: [`super::spawn::begin`] forks and returns a [`Pending`] start; the
//! caller watches its pipes (readable: call [`Pending::advance`]) and its
//! deadline ([`START_TIMEOUT`]); PID 1's loop does both through epoll and its
//! deadline timer, so a child that hangs before its exec never holds the loop.
//!
//! It must not block PID 1's loop on a child: the loop advances a start only
//! when a pipe is readable or the deadline passed (`wait_readable`, which
//! blocks, is for tools and tests).
//!
//! | stage | waits for | then the supervisor |
//! |---|---|---|
//! | `User` | `u` on the up pipe (C1 made its user namespace) | moves C1 into the cgroup (unless born there), writes `setgroups`, `uid_map`, `gid_map`, sends `g` |
//! | `Init` | the init's pid (4 bytes) on the up pipe | records it (C1 then exits: the caller reaps it) |
//! | `Exec` | EOF on the error pipe (every write end closed: C1 gone, the init exec'd) | the start is done |
//!
//! Throughout, the error pipe carries the children's records: the step that
//! failed ([`super::spawn::Record`]); each step begun is stored in a word
//! shared with the children (older callers: announced on the pipe too).
//! The last step begun is where a start that runs past its deadline hung
//! ([`Pending::at`]). A failure record, or a pipe that ends too early, fails
//! the start; the caller then kills what is left ([`Pending::kill`]) and
//! reaps it as it reaps every child (PID 1: through SIGCHLD, never a blocking
//! `waitpid`; [`Pending::reaped`] tells it which pids were the start's).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{self, Pid};

use super::plan::Plan;
use super::spawn::{decode, from_word, write_all, write_proc, Placed, Record, SpawnError, Started, Step, RECORD};

/// How long a container's start may take from the fork to its program's
/// exec before it is killed (`container.exit reason=start-timeout`). Far
/// above a start's usual few milliseconds (tens under emulation), so only a
/// start that hangs reaches it.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Most bytes of records read per [`Pending::advance`] (more wait for the
/// next readiness).
const CHUNK: usize = 64 * RECORD;

/// Where the handshake is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Waiting for C1's user namespace (`u`).
    User,
    /// Waiting for the init's pid.
    Init,
    /// Waiting for the exec (EOF on the error pipe).
    Exec,
}

/// What [`Pending::advance`] found.
#[derive(Debug)]
pub enum Poll {
    /// Not done: wait for the pipes again.
    Waiting,
    Started(Started),
    Failed(SpawnError),
}

/// A start between its fork and its exec.
#[derive(Debug)]
pub struct Pending {
    c1: Pid,
    c1_alive: bool,
    init: Option<Pid>,
    init_alive: bool,
    placed: Placed,
    err: OwnedFd,
    up: Option<OwnedFd>,
    down: Option<OwnedFd>,
    stage: Stage,
    at: Option<Step>,
    rec: [u8; RECORD],
    rec_len: usize,
    pid: [u8; 4],
    pid_len: usize,
    err_eof: bool,
    /// The step the children began last, when they store it there
    /// instead of on the error pipe.
    word: Option<crate::sys::container::SharedWord>,
}

impl Pending {
    pub(super) fn new(c1: Pid, placed: Placed, err: OwnedFd, up: OwnedFd, down: OwnedFd) -> Pending {
        Pending {
            c1,
            c1_alive: true,
            init: None,
            init_alive: false,
            placed,
            err,
            up: Some(up),
            down: Some(down),
            stage: Stage::User,
            at: None,
            rec: [0; RECORD],
            rec_len: 0,
            pid: [0; 4],
            pid_len: 0,
            err_eof: false,
            word: None,
        }
    }

    /// The children store the step they begin in `word`.
    pub(super) fn with_word(mut self, word: crate::sys::container::SharedWord) -> Pending {
        self.word = Some(word);
        self
    }

    /// The error pipe: watch it for readability until the start ends.
    pub fn err_fd(&self) -> BorrowedFd<'_> {
        self.err.as_fd()
    }

    /// The up pipe, while the handshake still needs it (stop watching it
    /// once this is `None`).
    pub fn up_fd(&self) -> Option<BorrowedFd<'_>> {
        match self.stage {
            Stage::User | Stage::Init => self.up.as_ref().map(AsFd::as_fd),
            Stage::Exec => None,
        }
    }

    /// The up pipe while this start holds it, needed or not (to take it
    /// out of an epoll set).
    pub fn up_raw(&self) -> Option<BorrowedFd<'_>> {
        self.up.as_ref().map(AsFd::as_fd)
    }

    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// The step the children began last: where a start that does not end
    /// hangs. Before the first record, the fork itself.
    pub fn at(&self) -> Step {
        let stored = self.word.as_ref().and_then(|w| from_word(w.word().load(core::sync::atomic::Ordering::Acquire)));
        stored.or(self.at).unwrap_or(Step::Clone)
    }

    /// The intermediate's pid.
    pub fn intermediate(&self) -> Pid {
        self.c1
    }

    /// The container's init, once the intermediate has reported it.
    pub fn init(&self) -> Option<Pid> {
        self.init
    }

    /// The start's processes not yet reaped.
    pub fn alive(&self) -> impl Iterator<Item = Pid> + '_ {
        let c1 = self.c1_alive.then_some(self.c1);
        let init = self.init.filter(|_| self.init_alive);
        c1.into_iter().chain(init)
    }

    /// `pid` was reaped: true when it was one of this start's.
    pub fn reaped(&mut self, pid: Pid) -> bool {
        if self.c1_alive && pid == self.c1 {
            self.c1_alive = false;
            return true;
        }
        if self.init_alive && self.init == Some(pid) {
            self.init_alive = false;
            return true;
        }
        false
    }

    /// SIGKILL every process of the start not yet reaped (the init takes
    /// its PID namespace with it). The caller still reaps them.
    pub fn kill(&self) {
        for pid in self.alive() {
            let _ = kill(pid, Signal::SIGKILL);
        }
    }

    /// Read what the pipes hold and move the handshake on. `add` moves a
    /// process into the container's cgroup (when C1 was not born there).
    pub fn advance(&mut self, plan: &Plan, add: &mut dyn FnMut(Pid) -> Result<(), Errno>) -> Poll {
        if let Some(e) = self.read_records(plan) {
            return Poll::Failed(e);
        }
        if let Err(e) = self.read_up(plan, add) {
            return Poll::Failed(e);
        }
        if !self.err_eof {
            return Poll::Waiting;
        }
        match (self.stage, self.init) {
            (Stage::Exec, Some(pid)) => Poll::Started(Started { pid, intermediate: self.c1, placed: self.placed }),
            // Every child gone before the exec, without saying why.
            _ => Poll::Failed(SpawnError::new(Step::Lost, Errno::ECHILD)),
        }
    }

    /// One chunk of the error pipe: progress, a failure, or EOF.
    fn read_records(&mut self, plan: &Plan) -> Option<SpawnError> {
        let mut chunk = [0u8; CHUNK];
        let n = match unistd::read(self.err.as_raw_fd(), &mut chunk) {
            Ok(0) => {
                self.err_eof = true;
                return None;
            }
            Ok(n) => n,
            Err(Errno::EAGAIN | Errno::EINTR) => return None,
            Err(e) => return Some(SpawnError::new(Step::Lost, e)),
        };
        for &b in chunk.get(..n).unwrap_or(&[]) {
            if let Some(slot) = self.rec.get_mut(self.rec_len) {
                *slot = b;
                self.rec_len += 1;
            }
            if self.rec_len < RECORD {
                continue;
            }
            self.rec_len = 0;
            match decode(&self.rec) {
                Some(Record::Begin(step)) => self.at = Some(step),
                Some(Record::Failed(step, errno)) => return Some(SpawnError::with_plan(step, errno, plan)),
                None => return Some(SpawnError::new(Step::Lost, Errno::EPROTO)),
            }
        }
        None
    }

    /// The up pipe's stages.
    fn read_up(&mut self, plan: &Plan, add: &mut dyn FnMut(Pid) -> Result<(), Errno>) -> Result<(), SpawnError> {
        let Some(up) = &self.up else { return Ok(()) };
        let up = up.as_raw_fd();
        loop {
            let want = match self.stage {
                Stage::User => 1,
                Stage::Init => 4,
                Stage::Exec => return Ok(()),
            };
            let mut b = [0u8; 4];
            let have = if self.stage == Stage::Init { self.pid_len } else { 0 };
            let n = match unistd::read(up, b.get_mut(..want - have).unwrap_or(&mut [])) {
                // C1 is gone: its error record (if any) and EOF follow on
                // the error pipe.
                Ok(0) => {
                    self.up = None;
                    return Ok(());
                }
                Ok(n) => n,
                Err(Errno::EAGAIN | Errno::EINTR) => return Ok(()),
                Err(e) => return Err(SpawnError::new(Step::Sync, e)),
            };
            match self.stage {
                Stage::User if b.first() == Some(&b'u') => {
                    self.handshake(plan, add)?;
                    self.stage = Stage::Init;
                }
                Stage::User => return Err(SpawnError::new(Step::Sync, Errno::EPROTO)),
                _ => {
                    for &x in b.get(..n).unwrap_or(&[]) {
                        if let Some(slot) = self.pid.get_mut(self.pid_len) {
                            *slot = x;
                            self.pid_len += 1;
                        }
                    }
                    if self.pid_len == 4 {
                        let pid = Pid::from_raw(i32::from_ne_bytes(self.pid));
                        if pid.as_raw() <= 0 {
                            return Err(SpawnError::new(Step::Intermediate, Errno::EPROTO));
                        }
                        self.init = Some(pid);
                        self.init_alive = true;
                        self.stage = Stage::Exec;
                    }
                }
            }
        }
    }

    /// C1 made its user namespace: its cgroup (unless born there), its
    /// maps, then `g`.
    fn handshake(&mut self, plan: &Plan, add: &mut dyn FnMut(Pid) -> Result<(), Errno>) -> Result<(), SpawnError> {
        let e = |step| move |errno| SpawnError::new(step, errno);
        if self.placed != Placed::Born {
            add(self.c1).map_err(e(Step::Cgroup))?;
        }
        let ids = &plan.ids;
        super::spawn::stamps::step(Step::SetgroupsDeny);
        write_proc(self.c1, "setgroups", ids.setgroups).map_err(e(Step::SetgroupsDeny))?;
        super::spawn::stamps::step(Step::UidMap);
        write_proc(self.c1, "uid_map", &ids.uid_map).map_err(e(Step::UidMap))?;
        super::spawn::stamps::step(Step::GidMap);
        write_proc(self.c1, "gid_map", &ids.gid_map).map_err(e(Step::GidMap))?;
        // An empty pipe takes one byte at once; closing it after is fine
        // (C1 reads the byte before the EOF).
        let down = self.down.take().ok_or(SpawnError::new(Step::Sync, Errno::EBADF))?;
        write_all(down.as_fd(), b"g").map_err(e(Step::Sync))
    }

    /// Wait until a pipe the handshake needs is readable (tools and tests:
    /// a blocking wait, bounded by [`START_TIMEOUT`]).
    pub(super) fn wait_readable(&self) {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut fds = heapless::Vec::<PollFd<'_>, 2>::new();
        let _ = fds.push(PollFd::new(self.err.as_fd(), PollFlags::POLLIN));
        if let Some(up) = self.up_fd() {
            let _ = fds.push(PollFd::new(up, PollFlags::POLLIN));
        }
        let ms = u16::try_from(START_TIMEOUT.as_millis()).unwrap_or(u16::MAX);
        let _ = poll(&mut fds, PollTimeout::from(ms));
    }

    /// Reap what is left of the start but `keep` (a started init), waiting
    /// (tools and tests only).
    pub(super) fn reap_blocking(&mut self, keep: Option<Pid>) {
        let pids: heapless::Vec<Pid, 2> = self.alive().filter(|p| Some(*p) != keep).collect();
        for pid in pids {
            while let Err(Errno::EINTR) = waitpid(pid, None) {}
            self.reaped(pid);
        }
    }
}

/// A start's deadline bookkeeping, in seconds since boot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Deadline {
    pub began: f64,
    pub by: f64,
}

impl Deadline {
    /// A start that began at `now`.
    pub fn new(now: f64) -> Deadline {
        Deadline { began: now, by: now + START_TIMEOUT.as_secs_f64() }
    }

    /// Past its deadline at `now`.
    pub fn expired(&self, now: f64) -> bool {
        now >= self.by
    }

    /// Milliseconds since the start began.
    pub fn elapsed_ms(&self, now: f64) -> u64 {
        ((now - self.began).max(0.0) * 1e3) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::super::spawn::encode;
    use super::*;
    use nix::fcntl::OFlag;

    fn plan() -> Plan {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../board-configs/qemu-x86_64.toml")).unwrap();
        let board = crate::release::board::Board::from_toml(&text).unwrap();
        let m: crate::release::manifest::Manifest =
            toml::from_str(&format!("name = \"t\"\nversion = \"1\"\nimage = \"sha256:{}\"\n[entry]\nargv = [\"/bin/true\"]\n", "0".repeat(64))).unwrap();
        super::super::plan(&m, &board, 0, "/nonexistent").unwrap()
    }

    /// A pending start over real pipes, without a child: the test writes
    /// what the children would.
    struct Fake {
        p: Pending,
        err: Option<OwnedFd>,
        up: Option<OwnedFd>,
        down: OwnedFd,
    }

    fn fake(placed: Placed) -> Fake {
        let pipe = || {
            let (r, w) = unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).unwrap();
            (r, w)
        };
        let (err_r, err_w) = pipe();
        let (up_r, up_w) = pipe();
        let (down_r, down_w) = pipe();
        // A pid that is surely not ours: the maps are never written here.
        let p = Pending::new(Pid::from_raw(i32::MAX), placed, err_r, up_r, down_w);
        Fake { p, err: Some(err_w), up: Some(up_w), down: down_r }
    }

    fn write(fd: &Option<OwnedFd>, b: &[u8]) {
        write_all(fd.as_ref().unwrap().as_fd(), b).unwrap();
    }

    #[test]
    fn progress_names_the_step_and_a_failure_ends_it() {
        let plan = plan();
        let mut f = fake(Placed::Born);
        let mut add = |_| Ok(());
        assert!(matches!(f.p.advance(&plan, &mut add), Poll::Waiting));
        assert_eq!(f.p.at(), Step::Clone, "nothing said yet: the fork");
        write(&f.err, &encode(Record::Begin(Step::Groups)));
        write(&f.err, &encode(Record::Begin(Step::UserNamespace)));
        assert!(matches!(f.p.advance(&plan, &mut add), Poll::Waiting));
        assert_eq!(f.p.at(), Step::UserNamespace);
        assert_eq!(f.p.stage(), Stage::User);
        write(&f.err, &encode(Record::Failed(Step::UserNamespace, Errno::EPERM)));
        match f.p.advance(&plan, &mut add) {
            Poll::Failed(e) => assert_eq!((e.step, e.errno), (Step::UserNamespace, Errno::EPERM)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_handshake_moves_through_its_stages_to_the_exec() {
        let plan = plan();
        let mut f = fake(Placed::Born);
        let mut add = |_| Ok(());
        write(&f.up, b"u");
        // The maps go to a pid that does not exist: the step is named.
        match f.p.advance(&plan, &mut add) {
            Poll::Failed(e) => assert_eq!(e.step, Step::SetgroupsDeny),
            other => panic!("{other:?}"),
        }
        // Past the maps (as if written), the pid then the exec.
        let mut f = fake(Placed::Born);
        f.p.stage = Stage::Init;
        write(&f.up, &1234i32.to_ne_bytes()[..2]);
        assert!(matches!(f.p.advance(&plan, &mut add), Poll::Waiting));
        assert!(f.p.up_fd().is_some(), "half a pid: still reading");
        write(&f.up, &1234i32.to_ne_bytes()[2..]);
        write(&f.err, &encode(Record::Begin(Step::Mount(3))));
        assert!(matches!(f.p.advance(&plan, &mut add), Poll::Waiting));
        assert_eq!(f.p.stage(), Stage::Exec);
        assert!(f.p.up_fd().is_none(), "the up pipe is done");
        assert_eq!(f.p.at(), Step::Mount(3));
        assert_eq!(f.p.alive().collect::<Vec<_>>(), [Pid::from_raw(i32::MAX), Pid::from_raw(1234)]);
        assert!(f.p.reaped(Pid::from_raw(i32::MAX)));
        assert!(!f.p.reaped(Pid::from_raw(i32::MAX)), "once");
        f.err = None;
        f.up = None;
        match f.p.advance(&plan, &mut add) {
            Poll::Started(s) => assert_eq!(s.pid, Pid::from_raw(1234)),
            other => panic!("{other:?}"),
        }
        let _ = &f.down;
    }

    #[test]
    fn children_gone_without_a_word_are_lost() {
        let plan = plan();
        let mut f = fake(Placed::Born);
        let mut add = |_| Ok(());
        f.up = None;
        f.err = None;
        match f.p.advance(&plan, &mut add) {
            Poll::Failed(e) => assert_eq!((e.step, e.errno), (Step::Lost, Errno::ECHILD)),
            other => panic!("{other:?}"),
        }
        let mut f = fake(Placed::Born);
        write(&f.err, &[0xff; RECORD]);
        assert!(matches!(f.p.advance(&plan, &mut add), Poll::Failed(SpawnError { step: Step::Lost, errno: Errno::EPROTO, .. })));
    }

    #[test]
    fn a_start_not_born_in_its_cgroup_is_moved_before_the_maps() {
        let plan = plan();
        let mut f = fake(Placed::MovedV1);
        let mut moved = Vec::new();
        let mut add = |p| {
            moved.push(p);
            Err(Errno::EACCES)
        };
        write(&f.up, b"u");
        match f.p.advance(&plan, &mut add) {
            Poll::Failed(e) => assert_eq!((e.step, e.errno), (Step::Cgroup, Errno::EACCES)),
            other => panic!("{other:?}"),
        }
        assert_eq!(moved, [Pid::from_raw(i32::MAX)]);
    }

    #[test]
    fn deadlines_expire_after_the_start_timeout() {
        let d = Deadline::new(100.0);
        assert!(!d.expired(100.0 + START_TIMEOUT.as_secs_f64() - 0.001));
        assert!(d.expired(100.0 + START_TIMEOUT.as_secs_f64()));
        assert_eq!(d.elapsed_ms(101.5), 1500);
        assert_eq!(d.elapsed_ms(99.0), 0);
    }
}
