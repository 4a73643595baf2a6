//! The PID 1 event loop: signals, reaping and orderly shutdown.
//!
//! One thread, one `epoll` over a `signalfd` and a `timerfd`; no handler runs
//! in signal context. All catchable signals are blocked and read from the
//! signalfd, which also keeps PID 1 from ignoring them (the kernel drops
//! default-action signals sent to init unless they are blocked or handled).
//!
//! Signals (documented in the README):
//!
//! | signal | action |
//! |---|---|
//! | SIGTERM, SIGPWR | power off |
//! | SIGINT (also ctrl-alt-del) | reboot |
//! | SIGUSR1 | emit a `status` event |
//! | SIGUSR2 | toggle debug events |
//! | SIGCHLD | reap every exited child, orphans included |
//! | other | logged and ignored |
//!
//! Shutdown: SIGTERM to every process, wait up to the board's grace period
//! (ending early once none is left), SIGKILL the rest, sync, unmount the data
//! partition, `reboot(2)`. A second request while shutting down is logged and
//! ignored. PID 1 never returns from [`run`].

use crate::log::Event;
use crate::mount::{errno_text, DATA};
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::reboot::RebootMode;
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::time::Duration;

/// What the end of the machine's run should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Halt {
    PowerOff,
    Reboot,
}

impl Halt {
    fn name(self) -> &'static str {
        match self {
            Halt::PowerOff => "poweroff",
            Halt::Reboot => "reboot",
        }
    }
}

/// What a signal asks PID 1 to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalAction {
    Shutdown(Halt),
    Status,
    ToggleDebug,
    Reap,
    Ignore,
}

/// The documented signal table.
pub fn action_for(sig: Signal) -> SignalAction {
    match sig {
        Signal::SIGTERM | Signal::SIGPWR => SignalAction::Shutdown(Halt::PowerOff),
        Signal::SIGINT => SignalAction::Shutdown(Halt::Reboot),
        Signal::SIGUSR1 => SignalAction::Status,
        Signal::SIGUSR2 => SignalAction::ToggleDebug,
        Signal::SIGCHLD => SignalAction::Reap,
        _ => SignalAction::Ignore,
    }
}

/// Signals read through the signalfd; the synchronous fault signals stay unblocked.
fn handled_signals() -> SigSet {
    let mut set = SigSet::all();
    for s in [Signal::SIGSEGV, Signal::SIGBUS, Signal::SIGILL, Signal::SIGFPE, Signal::SIGTRAP, Signal::SIGSYS, Signal::SIGABRT] {
        set.remove(s);
    }
    set
}

/// Shutdown progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// SIGTERM sent; waiting for processes to leave or the grace to end.
    Terminating(Halt),
    /// SIGKILL sent; a short wait for the kernel to finish them.
    Killing(Halt),
}

/// A host process berth started and watches.
#[derive(Debug, Clone)]
pub struct Known {
    pub pid: Pid,
    pub name: heapless::String<32>,
}

/// Most host processes and containers berth tracks by name.
pub const KNOWN_MAX: usize = 48;
/// Most output streams berth reads (one per container).
pub const OUTPUTS_MAX: usize = 32;
/// Longest output line kept whole; longer lines are split.
pub const OUTPUT_LINE_MAX: usize = 200;

/// A pipe carrying a container's stdout and stderr, read line by line.
pub struct Output {
    pub name: heapless::String<32>,
    pub fd: std::os::fd::OwnedFd,
    buf: heapless::Vec<u8, OUTPUT_LINE_MAX>,
}

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotState {
    /// Waiting for its (re)start time.
    Waiting,
    Running,
    /// Ended, and its policy does not restart it.
    Stopped,
    /// Crash loop: too many short runs.
    Failed,
}

/// One container of the release and its restart bookkeeping.
struct Slot {
    spec: crate::containers::Spec,
    pid: Option<Pid>,
    started: f64,
    due: Option<f64>,
    restart: crate::restart::State,
    state: SlotState,
    /// Stopped by the operator: no restart until started again.
    held: bool,
    /// Restart requested by the operator: start again as soon as it ends.
    again: bool,
    /// When a SIGTERMed container gets SIGKILL (a pid namespace's init
    /// ignores SIGTERM unless it handles it).
    kill_at: Option<f64>,
    last_exit: Option<crate::restart::Exit>,
}

pub struct Pid1 {
    grace: Duration,
    phase: Phase,
    known: heapless::Vec<Known, KNOWN_MAX>,
    slots: Vec<Slot>,
    epoll: Option<Epoll>,
    restart_timer: Option<TimerFd>,
    ctl: Option<crate::ctlsock::CtlSocket>,
    /// The running release: version and signing key id.
    release: Option<(u64, heapless::String<16>)>,
    /// Each container's cgroup, keyed by its init's pid: removed when it ends.
    cgroups: Vec<(Pid, crate::cgroup::act::CgroupDir)>,
    outputs: heapless::Vec<Option<Output>, OUTPUTS_MAX>,
    data_mounted: bool,
}

const TOKEN_SIGNAL: u64 = 1;
const TOKEN_TIMER: u64 = 2;
const TOKEN_RESTART: u64 = 3;
/// Output streams use tokens from here on (token - base = slot).
const TOKEN_OUTPUT: u64 = 1000;
/// The control socket's listener, then its connections from this base on.
const TOKEN_CTL_LISTEN: u64 = 4;
const TOKEN_CTL_CONN: u64 = 2000;
/// How long a container stopped by the operator gets after SIGTERM.
const STOP_GRACE: f64 = 3.0;
/// How long SIGKILLed processes get to be reaped before the final steps.
const KILL_WAIT: Duration = Duration::from_secs(2);

impl Pid1 {
    pub fn new(grace: Duration, data_mounted: bool) -> Pid1 {
        Pid1 {
            grace,
            phase: Phase::Running,
            known: heapless::Vec::new(),
            slots: Vec::new(),
            epoll: None,
            restart_timer: None,
            ctl: None,
            release: None,
            cgroups: Vec::new(),
            outputs: heapless::Vec::new(),
            data_mounted,
        }
    }

    /// Block the handled signals; call before starting any child so none is lost.
    pub fn block_signals() -> Result<(), Errno> {
        handled_signals().thread_block()
    }

    /// Track a host process so its exit is reported by name.
    pub fn watch(&mut self, pid: Pid, name: &str) {
        let mut n = heapless::String::new();
        for c in name.chars().take(32) {
            let _ = n.push(c);
        }
        if self.known.push(Known { pid, name: n }).is_err() {
            Event::warn("watch").kv("pid", pid).kv("result", "full").emit();
        }
    }

    /// Take charge of a container's cgroup: when its init ends, any process
    /// left is killed, an OOM kill is reported, and the cgroup is removed.
    pub fn own_cgroup(&mut self, pid: Pid, cg: crate::cgroup::act::CgroupDir) {
        self.cgroups.push((pid, cg));
    }

    /// Read a container's output pipe and log each line as `container.log`.
    pub fn watch_output(&mut self, fd: std::os::fd::OwnedFd, name: &str) {
        let mut n = heapless::String::new();
        for c in name.chars().take(32) {
            let _ = n.push(c);
        }
        let out = Output { name: n, fd, buf: heapless::Vec::new() };
        // Reuse a free slot: output streams come and go with restarts.
        let slot = match self.outputs.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                if self.outputs.push(None).is_err() {
                    Event::warn("watch").kv("output", name).kv("result", "full").emit();
                    return;
                }
                self.outputs.len() - 1
            }
        };
        if let Some(epoll) = &self.epoll {
            if let Err(e) = epoll.add(&out.fd, EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_OUTPUT + slot as u64)) {
                Event::error("watch").kv("output", name).result(&Err::<(), _>(errno_text(e))).emit();
                return;
            }
        }
        if let Some(s) = self.outputs.get_mut(slot) {
            *s = Some(out);
        }
    }

    /// The running release, for `berthctl release`.
    pub fn set_release(&mut self, version: u64, key_id: &str) {
        let mut k = heapless::String::new();
        let _ = k.push_str(key_id.get(..16).unwrap_or(key_id));
        self.release = Some((version, k));
    }

    /// Take the release's prepared containers; they start when the loop runs.
    pub fn adopt(&mut self, specs: Vec<crate::containers::Spec>) {
        for spec in specs {
            self.slots.push(Slot {
                spec,
                pid: None,
                started: 0.0,
                due: Some(0.0),
                restart: crate::restart::State::default(),
                state: SlotState::Waiting,
                held: false,
                again: false,
                kill_at: None,
                last_exit: None,
            });
        }
    }

    /// Start every container whose time has come, kill those whose stop
    /// grace is over, then re-arm the timer.
    fn start_due(&mut self) {
        let now = crate::log::now();
        for slot in self.slots.iter_mut() {
            if let (Some(at), Some(pid)) = (slot.kill_at, slot.pid) {
                if at <= now {
                    slot.kill_at = None;
                    let _ = kill(pid, Signal::SIGKILL);
                }
            }
        }
        for i in 0..self.slots.len() {
            let Some(slot) = self.slots.get_mut(i) else { continue };
            if self.phase != Phase::Running || slot.due.is_none_or(|d| d > now) {
                continue;
            }
            slot.due = None;
            match crate::containers::launch(&slot.spec) {
                Ok(l) => {
                    slot.pid = Some(l.pid);
                    slot.started = now;
                    slot.state = SlotState::Running;
                    let name = slot.spec.name.clone();
                    self.watch(l.pid, &name);
                    self.own_cgroup(l.pid, l.cgroup);
                    self.watch_output(l.output, &name);
                }
                Err((step, e)) => {
                    Event::error("container.start").kv("name", &slot.spec.name).kv("step", step).kv("result", "error").kv("error", e).emit();
                    // A start that fails counts as a failed run of no length.
                    self.after_exit(i, crate::restart::Exit::Code(127), 0);
                }
            }
        }
        self.arm_restart();
    }

    /// Apply the restart policy to container `i`, which just ended.
    fn after_exit(&mut self, i: usize, exit: crate::restart::Exit, ran_ms: u64) {
        use crate::restart::{on_exit, Decision};
        if self.phase != Phase::Running {
            return;
        }
        let Some(slot) = self.slots.get_mut(i) else { return };
        slot.last_exit = Some(exit);
        slot.kill_at = None;
        if slot.held {
            slot.state = SlotState::Stopped;
            Event::info("container.stopped").kv("name", &slot.spec.name).kv("by", "operator").emit();
            return;
        }
        if slot.again {
            slot.again = false;
            slot.state = SlotState::Waiting;
            slot.due = Some(crate::log::now());
            Event::info("container.restart").kv("name", &slot.spec.name).kv("by", "operator").kv("after_ms", 0).emit();
            self.arm_restart();
            return;
        }
        match on_exit(slot.spec.policy, &slot.spec.backoff, &mut slot.restart, exit, ran_ms) {
            Decision::Restart { after_ms, attempt } => {
                slot.state = SlotState::Waiting;
                slot.due = Some(crate::log::now() + f64::from(after_ms) / 1e3);
                Event::info("container.restart").kv("name", &slot.spec.name).kv("attempt", attempt).kv("after_ms", after_ms).emit();
            }
            Decision::Stop => {
                slot.state = SlotState::Stopped;
                Event::info("container.stopped").kv("name", &slot.spec.name).emit();
            }
            Decision::Failed { short_runs } => {
                slot.state = SlotState::Failed;
                Event::error("container.failed")
                    .kv("name", &slot.spec.name)
                    .kv("short_runs", short_runs)
                    .kv("restarts", slot.restart.restarts)
                    .emit();
            }
        }
        self.arm_restart();
    }

    /// Arm the restart timer for the earliest pending start.
    fn arm_restart(&self) {
        let Some(timer) = &self.restart_timer else { return };
        let next = self.slots.iter().flat_map(|s| [s.due, s.kill_at]).flatten().fold(f64::INFINITY, f64::min);
        if next.is_finite() {
            let wait = (next - crate::log::now()).max(0.001);
            arm(timer, Duration::from_secs_f64(wait));
        }
    }

    /// The loop. Never returns; if its own setup fails it falls back to a
    /// plain reaping loop so that the machine at least stays alive.
    pub fn run(mut self) -> ! {
        match self.setup() {
            Ok((sfd, timer)) => loop {
                let mut events = [EpollEvent::empty(); 8];
                let waited = match &self.epoll {
                    Some(epoll) => epoll.wait(&mut events, EpollTimeout::NONE),
                    None => Err(Errno::EBADF),
                };
                let n = match waited {
                    Ok(n) => n,
                    Err(Errno::EINTR) => continue,
                    Err(e) => {
                        Event::error("loop").kv("op", "epoll_wait").result(&Err::<(), _>(errno_text(e))).emit();
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                };
                for ev in events.iter().take(n) {
                    match ev.data() {
                        TOKEN_SIGNAL => self.on_signals(&sfd, &timer),
                        TOKEN_TIMER => {
                            let _ = timer.wait();
                            self.on_timer(&timer);
                        }
                        TOKEN_RESTART => {
                            if let Some(t) = &self.restart_timer {
                                let _ = t.wait();
                            }
                            self.start_due();
                        }
                        TOKEN_CTL_LISTEN => self.on_ctl_accept(),
                        t if t >= TOKEN_CTL_CONN => self.on_ctl_conn((t - TOKEN_CTL_CONN) as usize),
                        t if t >= TOKEN_OUTPUT => self.on_output((t - TOKEN_OUTPUT) as usize),
                        _ => {}
                    }
                }
            },
            Err(e) => {
                Event::error("loop").kv("op", "setup").result(&Err::<(), _>(errno_text(e))).emit();
                self.fallback()
            }
        }
    }

    fn setup(&mut self) -> Result<(SignalFd, TimerFd), Errno> {
        let sfd = SignalFd::with_flags(&handled_signals(), SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)?;
        let timer = TimerFd::new(ClockId::CLOCK_MONOTONIC, TimerFlags::TFD_CLOEXEC | TimerFlags::TFD_NONBLOCK)?;
        let restart = TimerFd::new(ClockId::CLOCK_MONOTONIC, TimerFlags::TFD_CLOEXEC | TimerFlags::TFD_NONBLOCK)?;
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        epoll.add(&sfd, EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_SIGNAL))?;
        epoll.add(&timer, EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_TIMER))?;
        epoll.add(&restart, EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_RESTART))?;
        for (slot, out) in self.outputs.iter().enumerate() {
            if let Some(o) = out {
                epoll.add(&o.fd, EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_OUTPUT + slot as u64))?;
            }
        }
        match crate::ctlsock::CtlSocket::bind(crate::control::SOCKET) {
            Ok(ctl) => {
                epoll.add(ctl.listener(), EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_CTL_LISTEN))?;
                Event::info("control.listen").kv("path", crate::control::SOCKET).emit();
                self.ctl = Some(ctl);
            }
            Err(e) => Event::error("control.listen").kv("path", crate::control::SOCKET).kv("result", "error").kv("error", e).emit(),
        }
        self.epoll = Some(epoll);
        self.restart_timer = Some(restart);
        // The release's containers start now, with the loop ready for them.
        self.start_due();
        Ok((sfd, timer))
    }

    fn on_ctl_accept(&mut self) {
        // Several clients may be waiting; each accept is bounded by CONNS_MAX.
        for _ in 0..crate::ctlsock::CONNS_MAX {
            let Some(ctl) = &mut self.ctl else { return };
            let Some(slot) = ctl.accept() else { return };
            if let (Some(epoll), Some(fd)) = (&self.epoll, ctl.conn_fd(slot)) {
                let _ = epoll.add(fd, EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_CTL_CONN + slot as u64));
            }
        }
    }

    fn on_ctl_conn(&mut self, slot: usize) {
        use crate::ctlsock::Input;
        let Some(ctl) = &mut self.ctl else { return };
        // Closing the descriptor removes it from the epoll set.
        let input = ctl.read(slot);
        if let Input::Request(cmd) = input {
            let resp = self.command(cmd);
            if let Some(ctl) = &mut self.ctl {
                ctl.reply(slot, &resp);
            }
        }
    }

    /// Carry out one control command.
    fn command(&mut self, cmd: crate::control::Command) -> crate::control::Response {
        use crate::control::{error, Command, ContainerStatus, Response};
        let now = crate::log::now();
        let find = |slots: &[Slot], name: &str| slots.iter().position(|s| s.spec.name == name);
        match cmd {
            Command::Status => {
                let mut list = heapless::Vec::new();
                for s in &self.slots {
                    let mut state = heapless::String::new();
                    let _ = state.push_str(match s.state {
                        SlotState::Waiting => "waiting",
                        SlotState::Running => "running",
                        SlotState::Stopped => "stopped",
                        SlotState::Failed => "failed",
                    });
                    let mut last = heapless::String::new();
                    let _ = match s.last_exit {
                        None => last.push_str("-"),
                        Some(crate::restart::Exit::Code(c)) => core::fmt::write(&mut last, format_args!("exit {c}")).map_err(|_| ()),
                        Some(crate::restart::Exit::Signal(n)) => core::fmt::write(&mut last, format_args!("signal {n}")).map_err(|_| ()),
                    };
                    let _ = list.push(ContainerStatus {
                        name: s.spec.name.clone(),
                        state,
                        pid: s.pid.map(|p| p.as_raw()).unwrap_or(0),
                        uptime_ms: if s.pid.is_some() { ((now - s.started) * 1e3) as u64 } else { 0 },
                        restarts: s.restart.restarts,
                        last_exit: last,
                        layers: s.spec.layers(),
                    });
                }
                Response::Status(Box::new(list))
            }
            Command::Release => match &self.release {
                Some((version, key_id)) => Response::Release { version: *version, key_id: key_id.clone() },
                None => error("no release is running"),
            },
            Command::Stop(name) | Command::Restart(name) | Command::Start(name) if find(&self.slots, &name).is_none() => {
                error(&format!("no container named {name}"))
            }
            Command::Stop(name) => {
                let Some(s) = find(&self.slots, &name).and_then(|i| self.slots.get_mut(i)) else { return error("gone") };
                s.held = true;
                s.due = None;
                match s.pid {
                    Some(pid) => {
                        let _ = kill(pid, Signal::SIGTERM);
                        s.kill_at = Some(now + STOP_GRACE);
                    }
                    None => s.state = SlotState::Stopped,
                }
                Event::info("control.stop").kv("name", &name).emit();
                self.arm_restart();
                Response::Done
            }
            Command::Start(name) => {
                let Some(s) = find(&self.slots, &name).and_then(|i| self.slots.get_mut(i)) else { return error("gone") };
                if s.pid.is_some() {
                    return error(&format!("{name} is already running"));
                }
                s.held = false;
                s.restart = crate::restart::State::default();
                s.state = SlotState::Waiting;
                s.due = Some(now);
                Event::info("control.start").kv("name", &name).emit();
                self.start_due();
                Response::Done
            }
            Command::Restart(name) => {
                let Some(s) = find(&self.slots, &name).and_then(|i| self.slots.get_mut(i)) else { return error("gone") };
                s.held = false;
                match s.pid {
                    Some(pid) => {
                        s.again = true;
                        let _ = kill(pid, Signal::SIGTERM);
                        s.kill_at = Some(now + STOP_GRACE);
                    }
                    None => {
                        s.state = SlotState::Waiting;
                        s.due = Some(now);
                    }
                }
                Event::info("control.restart").kv("name", &name).emit();
                self.start_due();
                Response::Done
            }
        }
    }

    /// Read what a container wrote; one `container.log` event per line.
    fn on_output(&mut self, slot: usize) {
        let Some(Some(out)) = self.outputs.get_mut(slot) else { return };
        let mut chunk = [0u8; 1024];
        let n = match nix::unistd::read(std::os::fd::AsRawFd::as_raw_fd(&out.fd), &mut chunk) {
            Ok(n) => n,
            Err(Errno::EINTR | Errno::EAGAIN) => return,
            Err(_) => 0,
        };
        if n == 0 {
            // Writer gone: flush a partial line and stop watching.
            if !out.buf.is_empty() {
                log_line(&out.name, &out.buf);
            }
            if let Some(epoll) = &self.epoll {
                let _ = epoll.delete(&out.fd);
            }
            if let Some(s) = self.outputs.get_mut(slot) {
                *s = None;
            }
            return;
        }
        for &b in chunk.get(..n).unwrap_or(&[]) {
            if b == b'\n' {
                log_line(&out.name, &out.buf);
                out.buf.clear();
            } else if out.buf.push(b).is_err() {
                log_line(&out.name, &out.buf);
                out.buf.clear();
                let _ = out.buf.push(b);
            }
        }
    }

    /// Last resort without epoll: reap forever, so zombies never pile up.
    fn fallback(&mut self) -> ! {
        loop {
            match waitpid(Pid::from_raw(-1), None) {
                Ok(st) => self.report_exit(st),
                Err(_) => std::thread::sleep(Duration::from_secs(1)),
            }
        }
    }

    fn on_signals(&mut self, sfd: &SignalFd, timer: &TimerFd) {
        // Bounded per wake-up so a signal storm cannot starve the timer.
        for _ in 0..64 {
            let info = match sfd.read_signal() {
                Ok(Some(info)) => info,
                Ok(None) => break,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    Event::error("signal.read").result(&Err::<(), _>(errno_text(e))).emit();
                    break;
                }
            };
            let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else { continue };
            match action_for(sig) {
                SignalAction::Shutdown(halt) => self.request(halt, sig, info.ssi_pid, timer),
                SignalAction::Status => Event::info("status")
                    .kv("phase", format_args!("{:?}", self.phase))
                    .kv("known", self.known.len())
                    .kv("uptime", format_args!("{:.3}", crate::log::now()))
                    .emit(),
                SignalAction::ToggleDebug => {
                    let on = crate::log::toggle_debug();
                    Event::info("log.debug").kv("on", on as u8).emit();
                }
                SignalAction::Reap => {}
                SignalAction::Ignore => Event::debug("signal").kv("signal", sig.as_str()).kv("result", "ignored").emit(),
            }
        }
        // SIGCHLD coalesces: always reap everything that is ready.
        let none_left = self.reap();
        if none_left {
            match self.phase {
                Phase::Terminating(h) | Phase::Killing(h) => self.finish(h),
                Phase::Running => {}
            }
        }
    }

    /// Reap every exited child. True when PID 1 has no children left at all.
    fn reap(&mut self) -> bool {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => return false,
                Ok(st) => self.report_exit(st),
                Err(Errno::EINTR) => continue,
                Err(Errno::ECHILD) => return true,
                Err(e) => {
                    Event::error("reap").result(&Err::<(), _>(errno_text(e))).emit();
                    return false;
                }
            }
        }
    }

    fn report_exit(&mut self, st: WaitStatus) {
        let (pid, how, code) = match st {
            WaitStatus::Exited(pid, code) => (pid, "exit", code),
            WaitStatus::Signaled(pid, sig, _) => (pid, "signal", sig as i32),
            _ => return,
        };
        let name = match self.known.iter().position(|k| k.pid == pid) {
            Some(i) => self.known.swap_remove(i).name,
            None => {
                let mut s = heapless::String::new();
                let _ = s.push_str("orphan");
                s
            }
        };
        Event::info("reap").kv("pid", pid).kv("name", &name).kv("how", how).kv("code", code).emit();
        if let Some(i) = self.cgroups.iter().position(|(p, _)| *p == pid) {
            let (_, cg) = self.cgroups.swap_remove(i);
            if let Ok(ev) = cg.memory_events() {
                if ev.oom_kill > 0 || ev.oom_group_kill > 0 {
                    Event::warn("container.oom")
                        .kv("name", &name)
                        .kv("oom_kill", ev.oom_kill)
                        .kv("oom", ev.oom)
                        .kv("berth_rss_kib", rss_kib())
                        .emit();
                }
            }
            let path = cg.path().map(|p| p.display().to_string()).unwrap_or_default();
            let version = cg.version;
            let r = crate::cgroup::act::kill_and_remove(cg);
            let mode = match version {
                crate::cgroup::act::Version::V2 => crate::board::CgroupMode::V2,
                crate::cgroup::act::Version::V1 => crate::board::CgroupMode::V1,
            };
            Event::info("cgroup.remove")
                .kv("name", &name)
                .kv("path", path)
                .kv("left", crate::containers::cgroups_left(mode))
                .result(&r)
                .emit();
        }
        if let Some(i) = self.slots.iter().position(|s| s.pid == Some(pid)) {
            let ran_ms = self.slots.get(i).map(|s| ((crate::log::now() - s.started) * 1e3) as u64).unwrap_or(0);
            if let Some(s) = self.slots.get_mut(i) {
                s.pid = None;
            }
            let exit = if how == "exit" { crate::restart::Exit::Code(code) } else { crate::restart::Exit::Signal(code) };
            self.after_exit(i, exit, ran_ms);
        }
    }

    fn request(&mut self, halt: Halt, sig: Signal, from: u32, timer: &TimerFd) {
        if self.phase != Phase::Running {
            Event::warn("shutdown.request").kv("action", halt.name()).kv("signal", sig.as_str()).kv("result", "ignored").emit();
            return;
        }
        Event::info("shutdown.begin")
            .kv("action", halt.name())
            .kv("signal", sig.as_str())
            .kv("from_pid", from)
            .kv("grace_ms", self.grace.as_millis())
            .emit();
        self.phase = Phase::Terminating(halt);
        signal_all(Signal::SIGTERM);
        arm(timer, self.grace);
        // Nothing running at all: no need to wait for the grace period.
        if self.reap() {
            self.finish(halt);
        }
    }

    fn on_timer(&mut self, timer: &TimerFd) {
        match self.phase {
            Phase::Terminating(h) => {
                Event::warn("shutdown.kill").kv("reason", "grace period over").emit();
                self.phase = Phase::Killing(h);
                signal_all(Signal::SIGKILL);
                arm(timer, KILL_WAIT);
                if self.reap() {
                    self.finish(h);
                }
            }
            Phase::Killing(h) => self.finish(h),
            Phase::Running => {}
        }
    }

    /// The end: flush and unmount the data partition, then halt. Never returns.
    fn finish(&mut self, halt: Halt) -> ! {
        nix::unistd::sync();
        Event::info("shutdown.sync").emit();
        if self.data_mounted {
            let mut r = nix::mount::umount2(DATA, nix::mount::MntFlags::empty());
            if r == Err(Errno::EBUSY) {
                // Someone still holds it: make it read-only so nothing more is lost.
                r = nix::mount::mount(
                    None::<&str>,
                    DATA,
                    None::<&str>,
                    nix::mount::MsFlags::MS_REMOUNT | nix::mount::MsFlags::MS_RDONLY,
                    None::<&str>,
                );
            }
            Event::info("shutdown.umount").kv("target", DATA).result(&r.map_err(errno_text)).emit();
        }
        let mode = match halt {
            Halt::PowerOff => RebootMode::RB_POWER_OFF,
            Halt::Reboot => RebootMode::RB_AUTOBOOT,
        };
        Event::info("shutdown.halt").kv("action", halt.name()).emit();
        let err = match nix::sys::reboot::reboot(mode) {
            Err(e) => e,
            Ok(never) => match never {},
        };
        Event::error("shutdown.halt").result(&Err::<(), _>(errno_text(err))).emit();
        // PID 1 must not exit: keep reaping until someone cuts the power.
        self.fallback()
    }
}

/// berth's own resident memory, from /proc/self/statm (0 if unreadable).
pub fn rss_kib() -> u64 {
    let text = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = text.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0);
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).ok().flatten().unwrap_or(4096) as u64;
    pages.saturating_mul(page) / 1024
}

fn log_line(name: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    Event::info("container.log").kv("name", name).kv("line", text.trim_end_matches('\r')).emit();
}

fn signal_all(sig: Signal) {
    // kill(-1) reaches every process but PID 1 itself.
    let r = match kill(Pid::from_raw(-1), sig) {
        Err(Errno::ESRCH) => Ok(()),
        r => r,
    };
    Event::info("signal.all").kv("signal", sig.as_str()).result(&r.map_err(errno_text)).emit();
}

fn arm(timer: &TimerFd, after: Duration) {
    let r = timer.set(Expiration::OneShot(TimeSpec::from_duration(after)), TimerSetTimeFlags::empty());
    if let Err(e) = r {
        Event::error("timer").result(&Err::<(), _>(errno_text(e))).emit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_table() {
        assert_eq!(action_for(Signal::SIGTERM), SignalAction::Shutdown(Halt::PowerOff));
        assert_eq!(action_for(Signal::SIGPWR), SignalAction::Shutdown(Halt::PowerOff));
        assert_eq!(action_for(Signal::SIGINT), SignalAction::Shutdown(Halt::Reboot));
        assert_eq!(action_for(Signal::SIGUSR1), SignalAction::Status);
        assert_eq!(action_for(Signal::SIGUSR2), SignalAction::ToggleDebug);
        assert_eq!(action_for(Signal::SIGCHLD), SignalAction::Reap);
        assert_eq!(action_for(Signal::SIGHUP), SignalAction::Ignore);
    }

    #[test]
    fn fault_signals_are_not_blocked() {
        let set = handled_signals();
        assert!(set.contains(Signal::SIGTERM) && set.contains(Signal::SIGCHLD));
        assert!(!set.contains(Signal::SIGSEGV) && !set.contains(Signal::SIGBUS));
    }
}
