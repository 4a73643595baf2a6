//! The PID 1 event loop: signals, reaping and orderly shutdown.
//!
//! One thread, one `epoll` over a `signalfd` and a `timerfd`; no handler runs
//! in signal context. All catchable signals are blocked and read from the
//! signalfd, which also keeps PID 1 from ignoring them (the kernel drops
//! default-action signals sent to init unless they are blocked or handled).
//!
//! Signals (documented in docs/architecture.md, "PID 1 duties and signals"):
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
//! Shutdown: the containers (reverse dependency order), then the host
//! services (`services`), then SIGTERM to every process, wait up to the board's grace period
//! (ending early once none is left), SIGKILL the rest, sync, unmount the data
//! partition, `reboot(2)`. A second request while shutting down is logged and
//! ignored. PID 1 never returns from [`run`].

mod begin;
mod commands;
pub mod control;
pub mod ctlsock;
pub mod life;
pub mod metrics;
pub mod notify;
pub mod outcome;
pub mod output;
mod recovery;
mod services;
pub mod stage;
pub mod stall;
mod starting;
pub mod statusview;
mod switch;
mod teardown;
mod trial;
pub mod update;
mod view;
pub mod watchdog;

use crate::common::log::Event;
use crate::common::{files::errno_text, names::DATA};
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::reboot::RebootMode;
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
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
pub const KNOWN_MAX: usize = 56;
/// Most output streams berth reads (one per container and per service).
pub const OUTPUTS_MAX: usize = 32 + crate::common::names::SERVICES_MAX;
pub use output::{set_mirror, Output, OUTPUT_LINE_MAX};

/// What berth supervises: a release's container or a board's host service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Container,
    Service,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Container => "container",
            Kind::Service => "service",
        }
    }
}

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotState {
    /// Waiting for its (re)start time.
    Waiting,
    /// Forked, not yet exec'd (see `starting`).
    Starting,
    Running,
    /// Ended, and its policy does not restart it.
    Stopped,
    /// Crash loop: too many short runs.
    Failed,
}

/// One container of the release and its restart bookkeeping.
struct Slot {
    spec: crate::confine::containers::Spec,
    params: life::Params,
    pid: Option<Pid>,
    started: f64,
    due: Option<f64>,
    restart: crate::release::restart::State,
    state: SlotState,
    /// Stopped by the operator: no restart until started again.
    held: bool,
    /// Restart requested by the operator: start again as soon as it ends.
    again: bool,
    /// The current run's readiness, health and stop deadlines.
    life: life::Life,
    last_exit: Option<crate::release::restart::Exit>,
    /// `STATUS=` text from the notify socket.
    status: Option<heapless::String<{ crate::supervise::notify::STATUS_MAX }>>,
    /// A `container.waiting` event was emitted for the current wait.
    told_waiting: bool,
    /// Its time to start has come and a dependency is not ready: its `due`
    /// is left out of the loop's timer until a dependency becomes ready.
    dep_wait: bool,
    /// Not in the running release any more (an update removed it): never
    /// restarted, not shown.
    retired: bool,
    /// An update's new spec, taken once the running container has ended.
    replace: Option<Box<crate::confine::containers::Spec>>,
    /// The start under way (forked, not yet exec'd).
    starting: Option<Box<starting::Starting>>,
    /// Its volumes' ids being shifted before its start.
    preparing: Option<Box<starting::Preparing>>,
    /// A volume shift just completed for the next start.
    shifted: bool,
    /// Tries of a start waiting for its old cgroup's removal.
    deferred: u32,
    /// The running check's trail (where its setup is).
    check_trail: Option<std::os::fd::OwnedFd>,
    /// What the metrics file counts for it.
    counts: view::Counts,
}

impl Slot {
    /// A run is under way: started (or starting) and not yet reaped.
    fn busy(&self) -> bool {
        self.pid.is_some() || self.starting.is_some() || self.preparing.is_some()
    }
}

impl Slot {
    fn new(spec: crate::confine::containers::Spec) -> Slot {
        Slot {
            params: params(&spec),
            spec,
            pid: None,
            started: 0.0,
            due: Some(0.0),
            restart: crate::release::restart::State::default(),
            state: SlotState::Waiting,
            held: false,
            again: false,
            life: life::Life::default(),
            last_exit: None,
            status: None,
            told_waiting: false,
            dep_wait: false,
            retired: false,
            replace: None,
            starting: None,
            preparing: None,
            shifted: false,
            deferred: 0,
            check_trail: None,
            counts: view::Counts::default(),
        }
    }
}

/// The run parameters of a spec, in seconds.
fn params(s: &crate::confine::containers::Spec) -> life::Params {
    use crate::confine::containers::{Check, Ready};
    let ms = |v: u32| f64::from(v) / 1e3;
    let h = s.health.as_ref();
    life::Params {
        ready: match s.ready {
            Ready::Started => life::ReadyBy::Start,
            Ready::Notify => life::ReadyBy::Notify,
            Ready::Command(_) => life::ReadyBy::Command,
        },
        ready_timeout: ms(s.ready_timeout_ms),
        watchdog: h.and_then(|h| match h.check {
            Check::Watchdog(w) => Some(ms(w)),
            Check::Command(_) => None,
        }),
        check_interval: h.and_then(|h| match h.check {
            Check::Command(_) => Some(ms(h.interval_ms)),
            Check::Watchdog(_) => None,
        }),
        check_timeout: h.map(|h| ms(h.timeout_ms)).unwrap_or(5.0),
        retries: h.map(|h| h.retries).unwrap_or(1),
        grace: ms(s.stop_grace_ms),
    }
}

pub struct Pid1 {
    grace: Duration,
    phase: Phase,
    known: heapless::Vec<Known, KNOWN_MAX>,
    slots: Vec<Slot>,
    /// The board's host services.
    services: Vec<services::Service>,
    epoll: Option<Epoll>,
    restart_timer: Option<TimerFd>,
    ctl: Option<crate::supervise::ctlsock::CtlSocket>,
    /// The running release: version and signing key id.
    release: Option<(u64, heapless::String<16>)>,
    /// Each container's cgroup, keyed by its init's pid: removed when it ends.
    cgroups: Vec<(Pid, crate::confine::cgroup::act::CgroupDir)>,
    /// Ended containers' cgroups being removed.
    removals: Vec<teardown::Removal>,
    /// Processes of ended starts, reaped without a `reap` event.
    quiet: heapless::Vec<Pid, { starting::QUIET_MAX }>,
    outputs: heapless::Vec<Option<Output>, OUTPUTS_MAX>,
    data_mounted: bool,
    /// Shutdown: the containers are down and every other process got SIGTERM.
    host_signalled: bool,
    /// The hardware watchdog and the loop's timer that pets it.
    watchdog: Option<crate::supervise::watchdog::Watchdog>,
    pet_timer: Option<TimerFd>,
    /// Lines the log store and the kernel log queue dropped, as last
    /// reported, and when.
    loss_told: u64,
    kmsg_loss_told: u64,
    loss_told_at: f64,
    /// The console's descriptor is in the epoll set for writability.
    console_watched: bool,
    /// The release store, for updates (absent without a data partition).
    updates: Option<update::Updates>,
    /// When the update machinery wants the next tick (trial window, inbox).
    update_due: Option<f64>,
    /// The status file containers may be granted a view of.
    view: Option<view::View>,
    /// The staging in progress and the inbox's quarantine.
    stage: stage::State,
    /// The loop's worst stalls.
    stalls: stall::Stalls,
    /// A release switch whose specs are being prepared off the loop.
    switch: Option<Box<switch::Switching>>,
    /// A staged release being verified and put on trial off the loop.
    begin: Option<Box<begin::Beginning>>,
    /// When the watchdog's next pet is due.
    pet_due: f64,
}

const TOKEN_SIGNAL: u64 = 1;
const TOKEN_TIMER: u64 = 2;
const TOKEN_RESTART: u64 = 3;
const TOKEN_PET: u64 = 5;
/// berth's console description, watched for writability while its ring holds bytes.
const TOKEN_CONSOLE: u64 = 9;
/// The stager's report pipe.
const TOKEN_STAGE: u64 = 6;
/// Output streams use tokens from here on (token - base = slot).
const TOKEN_OUTPUT: u64 = 1000;
/// The control socket's listener, then its connections from this base on.
const TOKEN_CTL_LISTEN: u64 = 4;
const TOKEN_CTL_CONN: u64 = 2000;
/// Notify sockets from here on (token - base = slot).
const TOKEN_NOTIFY: u64 = 3000;
/// `container.restart` carries `berth_rss_kib` every this many attempts.
const RSS_EVERY: u32 = 50;
/// How long SIGKILLed processes get to be reaped before the final steps.
const KILL_WAIT: Duration = Duration::from_secs(2);
/// How long the halt waits for the console and the kernel log to take the
/// last lines.
const FLUSH_WAIT: Duration = Duration::from_secs(2);

impl Pid1 {
    pub fn new(grace: Duration, data_mounted: bool) -> Pid1 {
        Pid1 {
            grace,
            phase: Phase::Running,
            known: heapless::Vec::new(),
            slots: Vec::new(),
            services: Vec::new(),
            epoll: None,
            restart_timer: None,
            ctl: None,
            release: None,
            cgroups: Vec::new(),
            removals: Vec::new(),
            quiet: heapless::Vec::new(),
            outputs: heapless::Vec::new(),
            data_mounted,
            host_signalled: false,
            watchdog: None,
            pet_timer: None,
            loss_told: 0,
            kmsg_loss_told: 0,
            loss_told_at: f64::NEG_INFINITY,
            console_watched: false,
            updates: None,
            update_due: None,
            view: None,
            stage: stage::State::default(),
            stalls: stall::Stalls::new(stall::threshold(None)),
            switch: None,
            begin: None,
            pet_due: f64::INFINITY,
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
    pub fn own_cgroup(&mut self, pid: Pid, cg: crate::confine::cgroup::act::CgroupDir) {
        self.cgroups.push((pid, cg));
    }

    /// Read a container's output pipe and log each line as `container.log`,
    /// at most `rate` lines.
    pub fn watch_output(&mut self, fd: std::os::fd::OwnedFd, name: &str, rate: crate::release::manifest::LogRate) {
        self.watch_output_as(fd, name, Kind::Container, rate);
    }

    /// Pet this watchdog from the loop.
    pub fn set_watchdog(&mut self, w: crate::supervise::watchdog::Watchdog) {
        self.stalls = stall::Stalls::new(stall::threshold(Some(w.timeout_s)));
        self.watchdog = Some(w);
    }

    fn on_pet(&mut self) {
        if let Some(t) = &self.pet_timer {
            let _ = t.wait();
        }
        self.pet_watchdog();
    }

    /// Pet the hardware watchdog now: from its timer in the loop, and once
    /// after the boot's slow steps (preparing every container) and before
    /// the loop's first tick starts them.
    pub fn pet_watchdog(&mut self) {
        let now = crate::common::log::now();
        if let Some(w) = &self.watchdog {
            if let Err(e) = w.pet() {
                Event::error("watchdog.pet").result(&Err::<(), _>(e)).emit();
            }
        }
        let due = self.pet_due;
        self.pet_due = self.next_pet(now);
        if due.is_finite() {
            if let Some(st) = self.stalls.pet(due, now) {
                self.report_stall(st);
            }
        }
    }

    /// When the pet timer fires next (it runs on a fixed interval).
    fn next_pet(&self, now: f64) -> f64 {
        let left = match self.pet_timer.as_ref().map(TimerFd::get) {
            Some(Ok(Some(Expiration::Interval(left) | Expiration::IntervalDelayed(left, _) | Expiration::OneShot(left)))) => Duration::from(left).as_secs_f64(),
            _ => return f64::INFINITY,
        };
        now + left
    }

    /// A stall over the threshold: say so at once.
    fn report_stall(&self, st: stall::Stall) {
        let threshold_ms = (self.stalls.threshold_s() * 1e3) as u64;
        match st {
            stall::Stall::Handler { kind, s } => {
                Event::warn("loop.stall").kv("what", "handler").kv("kind", kind.name()).kv("ms", (s * 1e3) as u64).kv("threshold_ms", threshold_ms).emit()
            }
            stall::Stall::Pet { late_s } => {
                Event::warn("loop.stall").kv("what", "watchdog-pet").kv("ms", (late_s * 1e3) as u64).kv("threshold_ms", threshold_ms).emit()
            }
        }
    }

    /// The watchdog test trigger (only with the `test-hooks` feature):
    /// block the loop for `seconds`, so nothing pets the watchdog (nor
    /// reaps, nor answers). Root only, through the control socket.
    #[cfg(feature = "test-hooks")]
    pub(super) fn wedge(&mut self, seconds: u16) {
        Event::warn("debug.wedge").kv("seconds", seconds).kv("watchdog", self.watchdog.is_some() as u8).emit();
        std::thread::sleep(Duration::from_secs(seconds.into()));
        Event::warn("debug.unwedged").emit();
    }

    /// The running release, for `berthctl release`.
    pub fn set_release(&mut self, version: u64, key_id: &str) {
        let mut k = heapless::String::new();
        let _ = k.push_str(key_id.get(..16).unwrap_or(key_id));
        self.release = Some((version, k));
    }

    /// Take the release's prepared containers; they start when the loop runs.
    pub fn adopt(&mut self, specs: Vec<crate::confine::containers::Spec>) {
        for spec in specs {
            self.slots.push(Slot::new(spec));
        }
        self.watch_notify_sockets();
    }

    /// Forget slot `i` (a retired container that has ended): its spec and
    /// notify socket are freed. Notify and start tokens are slot indices,
    /// so the notify sockets and pending starts' pipes of the slots after
    /// it are registered again under their new index (a start left under
    /// its old token was never seen and hung until its start timeout).
    pub(super) fn drop_slot(&mut self, i: usize) {
        if i >= self.slots.len() {
            return;
        }
        let gone = self.slots.remove(i);
        if let (Some(epoll), Some(sock)) = (&self.epoll, &gone.spec.notify) {
            let _ = epoll.delete(sock);
        }
        drop(gone);
        let Some(epoll) = &self.epoll else { return };
        for (j, slot) in self.slots.iter().enumerate().skip(i) {
            if let Some(sock) = &slot.spec.notify {
                let mut ev = EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_NOTIFY + j as u64);
                if let Err(e) = epoll.modify(sock, &mut ev) {
                    Event::error("notify.watch").kv("name", &slot.spec.name).result(&Err::<(), _>(errno_text(e))).emit();
                }
            }
        }
        for j in i..self.slots.len() {
            self.rewatch_start(j);
        }
    }

    fn watch_notify_sockets(&self) {
        let Some(epoll) = &self.epoll else { return };
        for (i, slot) in self.slots.iter().enumerate() {
            if let Some(sock) = &slot.spec.notify {
                let r = epoll.add(sock, EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_NOTIFY + i as u64));
                if let Err(e) = r.or_else(|e| if e == Errno::EEXIST { Ok(()) } else { Err(e) }) {
                    Event::error("notify.watch").kv("name", &slot.spec.name).result(&Err::<(), _>(errno_text(e))).emit();
                }
            }
        }
    }

    /// Whether every container `i` starts after is running and ready.
    fn deps_ready(&self, i: usize) -> Result<(), heapless::String<32>> {
        let Some(slot) = self.slots.get(i) else {
            return Ok(());
        };
        for dep in &slot.spec.after {
            let ready = self.slots.iter().any(|o| &o.spec.name == dep && o.pid.is_some() && o.life.ready && !o.life.stopping);
            // A dependency that is not in the release (left out because its
            // preparation failed) can never be ready: wait for it forever,
            // said once.
            if !ready {
                return Err(dep.clone());
            }
        }
        Ok(())
    }

    /// Act on every deadline that has come: kills, health verdicts, checks,
    /// then start every container whose time has come and whose
    /// dependencies are ready; then re-arm the timer.
    fn tick(&mut self) {
        let now = crate::common::log::now();
        if let Some(ctl) = &mut self.ctl {
            ctl.expire(now);
        }
        self.check_staging_deadline(now);
        // Host services first: at setup they start before any container.
        self.tick_services(now);
        self.tick_removals(now);
        self.expire_starts(now);
        for i in 0..self.slots.len() {
            let Some(slot) = self.slots.get_mut(i) else {
                continue;
            };
            let due = slot.life.due(now);
            if due.kill {
                self.kill_container(i);
            }
            if let Some(pid) = due.kill_check {
                self.check_timeout(i, pid);
            }
            if let Some(reason) = due.unhealthy {
                self.unhealthy(i, reason);
            }
            if due.run_check {
                self.run_check(i, now);
            }
        }
        // A start is asynchronous: one ready at its start ticks again
        // (`became_ready`), so a dependent listed before it never waits.
        self.start_pass(now);
        // Fresh time: starting containers above took a while, and a trial's
        // window must not begin before they ran.
        self.update_due = self.update_tick(crate::common::log::now());
        self.arm_deadline();
    }

    /// Start every container whose time has come and whose dependencies
    /// are ready. One waiting on a dependency is said once and then left
    /// out of the deadline timer ([`Slot::dep_wait`]): a dependency that
    /// becomes ready ticks again.
    fn start_pass(&mut self, now: f64) {
        for i in 0..self.slots.len() {
            let Some(slot) = self.slots.get(i) else {
                continue;
            };
            if self.phase != Phase::Running || slot.due.is_none_or(|d| d > now) {
                continue;
            }
            if let Err(dep) = self.deps_ready(i) {
                if let Some(slot) = self.slots.get_mut(i) {
                    slot.dep_wait = true;
                    if !slot.told_waiting {
                        slot.told_waiting = true;
                        Event::info("container.waiting").kv("name", &slot.spec.name).kv("for", &dep).emit();
                    }
                }
                continue;
            }
            if let Some(slot) = self.slots.get_mut(i) {
                slot.dep_wait = false;
            }
            self.begin_start(i, now);
        }
    }

    /// Container `i` became ready: its dependents may start.
    fn became_ready(&mut self, i: usize, by: &str) {
        let Some(slot) = self.slots.get(i) else {
            return;
        };
        let after_ms = ((crate::common::log::now() - slot.started) * 1e3) as u64;
        Event::info("container.ready").kv("name", &slot.spec.name).kv("by", by).kv("after_ms", after_ms).emit();
        self.tick();
    }

    /// A readiness or health verdict against container `i`: stop it; its
    /// exit counts as a failure.
    fn unhealthy(&mut self, i: usize, reason: life::Reason) {
        let Some(slot) = self.slots.get_mut(i) else {
            return;
        };
        slot.life.unhealthy = true;
        let name = slot.spec.name.clone();
        Event::warn("container.unhealthy").kv("name", &name).kv("reason", reason.name()).emit();
        self.stop_container(i, "health");
        let _ = self.roll_back(update::cause_of(reason), Some(&name));
    }

    /// Send container `i` its stop signal; SIGKILL of its cgroup follows
    /// after its grace.
    fn stop_container(&mut self, i: usize, by: &str) {
        let now = crate::common::log::now();
        if self.cancel_start(i, by) {
            return;
        }
        let Some(slot) = self.slots.get_mut(i) else {
            return;
        };
        let Some(pid) = slot.pid else { return };
        if slot.life.stopping {
            return;
        }
        slot.life.stop(&slot.params, now);
        let sig = slot.spec.stop_signal;
        let r = kill(pid, sig);
        Event::info("container.stop")
            .kv("name", &slot.spec.name)
            .kv("by", by)
            .kv("signal", sig.as_str())
            .kv("grace_ms", slot.spec.stop_grace_ms)
            .result(&r.map_err(errno_text))
            .emit();
        self.arm_deadline();
    }

    /// The grace is over: SIGKILL every process of container `i`'s cgroup.
    fn kill_container(&mut self, i: usize) {
        let Some(slot) = self.slots.get(i) else {
            return;
        };
        let Some(pid) = slot.pid else { return };
        let r = match self.cgroups.iter().find(|(p, _)| *p == pid).and_then(|(_, cg)| cg.path()) {
            Some(dir) => crate::confine::cgroup::act::kill_once(dir).map_err(|e| e.to_string()),
            None => kill(pid, Signal::SIGKILL).map_err(|e| errno_text(e).to_string()),
        };
        Event::warn("container.kill").kv("name", &slot.spec.name).kv("reason", "stop grace over").result(&r).emit();
    }

    /// Start container `i`'s readiness or health command.
    fn run_check(&mut self, i: usize, now: f64) {
        use crate::confine::containers::{Check, Ready};
        let Some(slot) = self.slots.get(i) else {
            return;
        };
        let Some(pid) = slot.pid else { return };
        let cmd = match (&slot.spec.ready, slot.spec.health.as_ref().map(|h| &h.check)) {
            (Ready::Command(c), _) if !slot.life.ready => c,
            (_, Some(Check::Command(c))) if slot.life.ready => c,
            _ => return,
        };
        let cg = self.cgroups.iter().find(|(p, _)| *p == pid).map(|(_, cg)| cg);
        let mut add = |w| match cg {
            Some(cg) => cg.add(w).map_err(|_| Errno::EIO),
            None => Err(Errno::ENOENT),
        };
        let dir = cg.and_then(|cg| cg.fd.as_ref()).map(std::os::fd::AsFd::as_fd);
        let mut place = crate::confine::container::spawn::Place { dir, add: &mut add };
        let hang = crate::confine::containers::hang_for(&slot.spec.name, true);
        let started = crate::confine::container::enter::enter(&slot.spec.plan, pid, cmd, slot.spec.confine(), &mut place, hang);
        let name = slot.spec.name.clone();
        match started {
            Ok(entered) => {
                let w = entered.pid;
                let mut tag: heapless::String<40> = heapless::String::new();
                let _ = core::fmt::write(&mut tag, format_args!("check:{name}"));
                self.watch(w, &tag);
                if let Some(slot) = self.slots.get_mut(i) {
                    slot.life.check_started(w, &slot.params, now);
                    slot.check_trail = Some(entered.trail);
                }
            }
            Err(e) => {
                if let Some(left) = e.left {
                    self.reap_quietly(left);
                }
                Event::error("container.check").kv("name", &name).kv("result", "error").kv("error", errno_text(e.errno)).emit();
                if let Some(slot) = self.slots.get_mut(i) {
                    let r = slot.life.check_failed_to_start(&slot.params, now);
                    self.on_check_result(i, r, -1);
                }
            }
        }
    }

    /// A check process ended: match it to its container.
    fn check_ended(&mut self, pid: Pid, code: i32) -> bool {
        let now = crate::common::log::now();
        let Some(i) = self.slots.iter().position(|s| s.life.check.is_some_and(|c| c.pid == pid)) else {
            return false;
        };
        let Some(slot) = self.slots.get_mut(i) else {
            return false;
        };
        slot.check_trail = None;
        let r = slot.life.check_ended(pid, code, &slot.params, now);
        self.on_check_result(i, r, code);
        true
    }

    fn on_check_result(&mut self, i: usize, r: life::CheckResult, code: i32) {
        use life::CheckResult as R;
        let Some(slot) = self.slots.get(i) else {
            return;
        };
        let name = slot.spec.name.clone();
        match r {
            R::Ready => self.became_ready(i, "command"),
            R::Healthy => Event::debug("container.check").kv("name", &name).kv("result", "ok").emit(),
            R::Failed { fails } => Event::info("container.check")
                .kv("name", &name)
                .kv("ready", slot.life.ready as u8)
                .kv("code", code)
                .kv("fails", fails)
                .kv("result", "failed")
                .emit(),
            R::Unhealthy { fails } => {
                Event::warn("container.check").kv("name", &name).kv("code", code).kv("fails", fails).kv("result", "failed").emit();
                self.unhealthy(i, life::Reason::Check);
            }
            R::Stale => {}
        }
        self.arm_deadline();
    }

    /// Messages on container `i`'s notify socket.
    fn on_notify(&mut self, i: usize) {
        let now = crate::common::log::now();
        let Some(slot) = self.slots.get_mut(i) else {
            return;
        };
        let Some(sock) = &slot.spec.notify else {
            return;
        };
        let m = crate::supervise::notify::drain(sock);
        if slot.pid.is_none() {
            return;
        }
        if let Some(st) = &m.status {
            slot.status = Some(st.clone());
        }
        if m.stopping {
            Event::info("container.notify").kv("name", &slot.spec.name).kv("stopping", 1).emit();
        }
        let became = slot.life.notified(&slot.params, &m, now);
        if became {
            self.became_ready(i, "notify");
        } else {
            self.arm_deadline();
        }
    }

    /// Apply the restart policy to container `i`, which just ended.
    fn after_exit(&mut self, i: usize, exit: crate::release::restart::Exit, ran_ms: u64) {
        use crate::release::restart::{on_exit, Decision};
        let Some(slot) = self.slots.get_mut(i) else {
            return;
        };
        let exit = if slot.life.unhealthy { crate::release::restart::Exit::Unhealthy } else { exit };
        slot.last_exit = Some(exit);
        slot.check_trail = None;
        if let Some(c) = slot.life.check.take() {
            let _ = kill(c.pid, Signal::SIGKILL);
        }
        slot.life = life::Life::default();
        if self.phase != Phase::Running {
            slot.state = SlotState::Stopped;
            self.shutdown_step();
            return;
        }
        if slot.retired {
            Event::info("container.stopped").kv("name", &slot.spec.name).kv("by", "update").emit();
            self.drop_slot(i);
            return;
        }
        if slot.replace.is_some() {
            // The new spec starts on the next timer wake-up (its slot is
            // due now): the reap and the start are two short handlers.
            self.take_replacement(i);
            self.arm_deadline();
            return;
        }
        if slot.held {
            slot.state = SlotState::Stopped;
            Event::info("container.stopped").kv("name", &slot.spec.name).kv("by", "operator").emit();
            return;
        }
        if slot.again {
            slot.again = false;
            slot.state = SlotState::Waiting;
            slot.due = Some(crate::common::log::now());
            Event::info("container.restart").kv("name", &slot.spec.name).kv("by", "operator").kv("after_ms", 0).emit();
            self.arm_deadline();
            return;
        }
        let decision = on_exit(slot.spec.policy, &slot.spec.backoff, &mut slot.restart, exit, ran_ms);
        let name = slot.spec.name.clone();
        match decision {
            Decision::Restart { after_ms, attempt } => {
                slot.state = SlotState::Waiting;
                slot.due = Some(crate::common::log::now() + f64::from(after_ms) / 1e3);
                let mut ev = Event::info("container.restart").kv("name", &slot.spec.name).kv("attempt", attempt).kv("after_ms", after_ms);
                // berth's own memory, now and then: it must stay flat across restarts.
                if attempt % RSS_EVERY == 0 {
                    ev = ev.kv("berth_rss_kib", rss_kib());
                }
                ev.emit();
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
                    .kv("berth_rss_kib", rss_kib())
                    .emit();
            }
        }
        self.trial_exit(&name, &decision, exit);
        self.arm_deadline();
    }

    /// Shutdown: stop each container once no running container depends on
    /// it (reverse dependency order, independent ones together); when none
    /// is left, SIGTERM every other process.
    fn shutdown_step(&mut self) {
        if !matches!(self.phase, Phase::Terminating(_)) {
            return;
        }
        let mut to_stop: heapless::Vec<usize, 64> = heapless::Vec::new();
        for (i, s) in self.slots.iter().enumerate() {
            if !s.busy() || s.life.stopping {
                continue;
            }
            let needed = self.slots.iter().any(|o| o.pid.is_some() && o.spec.after.contains(&s.spec.name));
            if !needed {
                let _ = to_stop.push(i);
            }
        }
        for i in to_stop {
            self.stop_container(i, "shutdown");
        }
        if self.host_signalled || self.slots.iter().any(Slot::busy) {
            return;
        }
        // Containers down: the host services next, then everything else.
        self.stop_services();
        if self.services.iter().all(|s| s.pid.is_none()) {
            self.host_signalled = true;
            signal_all(Signal::SIGTERM);
        }
    }

    /// Arm the deadline timer for the earliest pending start or deadline.
    fn arm_deadline(&self) {
        let Some(timer) = &self.restart_timer else {
            return;
        };
        let next = self
            .slots
            .iter()
            // A start waiting on a dependency has no deadline of its own.
            .flat_map(|s| [s.due.filter(|_| !s.dep_wait), s.life.deadline()])
            .flatten()
            .chain(self.update_due)
            .chain(self.starts_deadline())
            .chain(self.removals_deadline())
            .chain(self.view.as_ref().and_then(view::View::due))
            .chain(self.services_deadline())
            .chain(self.ctl.as_ref().and_then(crate::supervise::ctlsock::CtlSocket::deadline))
            .chain(self.staging_deadline())
            .fold(f64::INFINITY, f64::min);
        if next.is_finite() {
            let wait = (next - crate::common::log::now()).max(0.001);
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
                    let start = crate::common::log::now();
                    let kind = self.dispatch(ev.data(), &sfd, &timer);
                    self.measured(kind, start);
                }
                let start = crate::common::log::now();
                self.refresh_view();
                self.report_log_loss();
                self.watch_console();
                self.measured(stall::Kind::View, start);
            },
            Err(e) => {
                Event::error("loop").kv("op", "setup").result(&Err::<(), _>(errno_text(e))).emit();
                self.fallback()
            }
        }
    }

    /// Handle one event; what kind it was.
    fn dispatch(&mut self, token: u64, sfd: &SignalFd, timer: &TimerFd) -> stall::Kind {
        use stall::Kind;
        match token {
            TOKEN_SIGNAL => {
                self.on_signals(sfd, timer);
                Kind::Signal
            }
            TOKEN_TIMER => {
                let _ = timer.wait();
                self.on_timer(timer);
                Kind::Shutdown
            }
            TOKEN_RESTART => {
                if let Some(t) = &self.restart_timer {
                    let _ = t.wait();
                }
                self.tick();
                Kind::Tick
            }
            TOKEN_PET => {
                self.on_pet();
                Kind::Pet
            }
            TOKEN_CTL_LISTEN => {
                self.on_ctl_accept();
                Kind::Accept
            }
            TOKEN_STAGE => {
                self.on_stage();
                Kind::Stage
            }
            switch::TOKEN_SWITCH => {
                self.on_switch();
                Kind::Switch
            }
            begin::TOKEN_BEGIN => {
                self.on_begin();
                Kind::Begin
            }
            TOKEN_CONSOLE => {
                crate::common::log::console::drain();
                Kind::Console
            }
            t if t >= starting::TOKEN_START => {
                self.on_start_io(t - starting::TOKEN_START);
                Kind::Start
            }
            t if t >= TOKEN_NOTIFY => {
                self.on_notify((t - TOKEN_NOTIFY) as usize);
                Kind::Notify
            }
            t if t >= TOKEN_CTL_CONN => {
                self.on_ctl_conn((t - TOKEN_CTL_CONN) as usize);
                Kind::Control
            }
            t if t >= TOKEN_OUTPUT => {
                self.on_output((t - TOKEN_OUTPUT) as usize);
                Kind::Output
            }
            _ => Kind::None,
        }
    }

    /// A handler of `kind` ran since `start`: book it, report a stall.
    fn measured(&mut self, kind: stall::Kind, start: f64) {
        if let Some(st) = self.stalls.handler(kind, start, crate::common::log::now()) {
            self.report_stall(st);
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
        match crate::supervise::ctlsock::CtlSocket::bind(crate::supervise::control::SOCKET) {
            Ok(ctl) => {
                epoll.add(ctl.listener(), EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_CTL_LISTEN))?;
                Event::info("control.listen").kv("path", crate::supervise::control::SOCKET).emit();
                self.ctl = Some(ctl);
            }
            Err(e) => Event::error("control.listen").kv("path", crate::supervise::control::SOCKET).kv("result", "error").kv("error", e).emit(),
        }
        if let Some(w) = &self.watchdog {
            let pet = TimerFd::new(ClockId::CLOCK_MONOTONIC, TimerFlags::TFD_CLOEXEC | TimerFlags::TFD_NONBLOCK)?;
            let every = TimeSpec::from_duration(crate::supervise::watchdog::pet_interval(w.timeout_s));
            pet.set(Expiration::Interval(every), TimerSetTimeFlags::empty())?;
            epoll.add(&pet, EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_PET))?;
            self.pet_timer = Some(pet);
            self.pet_due = self.next_pet(crate::common::log::now());
        }
        self.epoll = Some(epoll);
        self.restart_timer = Some(restart);
        self.watch_notify_sockets();
        // Before any container: those granted the status view bind its directory.
        self.view = view::View::new();
        self.refresh_view();
        // The release's containers start now, with the loop ready for them
        // and the watchdog's period all theirs.
        self.pet_watchdog();
        self.tick();
        Ok((sfd, timer))
    }

    fn on_ctl_accept(&mut self) {
        // Several clients may be waiting; each accept is bounded by CONNS_MAX.
        for _ in 0..crate::supervise::ctlsock::CONNS_MAX {
            let Some(ctl) = &mut self.ctl else { break };
            let Some(slot) = ctl.accept(crate::common::log::now()) else {
                break;
            };
            if let (Some(epoll), Some(fd)) = (&self.epoll, ctl.conn_fd(slot)) {
                let _ = epoll.add(fd, EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_CTL_CONN + slot as u64));
            }
        }
        // The new clients' time limits.
        self.arm_deadline();
    }

    fn on_ctl_conn(&mut self, slot: usize) {
        use crate::supervise::ctlsock::Input;
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

    /// Report lines the log store could not keep and event records the
    /// kernel log queue dropped, at most every 10 s (the report is itself
    /// a line of the store and a record of the queue).
    fn report_log_loss(&mut self) {
        let now = crate::common::log::now();
        if now - self.loss_told_at < 10.0 {
            return;
        }
        let kmsg = crate::common::log::kmsg::dropped();
        if kmsg > self.kmsg_loss_told {
            let n = kmsg - self.kmsg_loss_told;
            self.kmsg_loss_told = kmsg;
            self.loss_told_at = now;
            Event::warn("log.dropped").kv("sink", "kmsg").kv("count", n).emit();
        }
        let Some(dropped) = crate::common::logstore::with(|s| s.dropped()) else {
            return;
        };
        if dropped > self.loss_told {
            self.loss_told = dropped;
            self.loss_told_at = now;
            Event::warn("log.dropped").kv("sink", "store").kv("lines", dropped).emit();
        }
    }

    /// Watch the console for writability exactly while it has bytes to take.
    fn watch_console(&mut self) {
        let want = crate::common::log::console::pending();
        if want == self.console_watched {
            return;
        }
        let Some(epoll) = &self.epoll else { return };
        let r = crate::common::log::console::with_fd(
            |fd| if want { epoll.add(fd, EpollEvent::new(EpollFlags::EPOLLOUT, TOKEN_CONSOLE)) } else { epoll.delete(fd) },
        );
        match r {
            Some(Ok(())) => self.console_watched = want,
            Some(Err(e)) => {
                Event::error("console.watch").result(&Err::<(), _>(errno_text(e))).emit();
            }
            None => {}
        }
    }

    /// Last resort without epoll: reap forever, so zombies never pile up.
    fn fallback(&mut self) -> ! {
        loop {
            match crate::sys::wait_any(false) {
                Ok(Some((pid, status))) => self.report_exit(pid, status),
                Ok(None) | Err(_) => std::thread::sleep(Duration::from_secs(1)),
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
            let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
                continue;
            };
            match action_for(sig) {
                SignalAction::Shutdown(halt) => self.request(halt, sig, info.ssi_pid, timer),
                SignalAction::Status => Event::info("status")
                    .kv("phase", format_args!("{:?}", self.phase))
                    .kv("known", self.known.len())
                    .kv("uptime", format_args!("{:.3}", crate::common::log::now()))
                    .emit(),
                SignalAction::ToggleDebug => {
                    let on = crate::common::log::toggle_debug();
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
            match crate::sys::wait_any(true) {
                Ok(None) => return false,
                Ok(Some((pid, status))) => self.report_exit(pid, status),
                Err(Errno::EINTR) => continue,
                Err(Errno::ECHILD) => return true,
                Err(e) => {
                    Event::error("reap").result(&Err::<(), _>(errno_text(e))).emit();
                    return false;
                }
            }
        }
    }

    /// A child ended with the raw wait status `status` (decoded here, so a
    /// real-time signal's number is kept: see [`crate::sys::wait_any`]).
    pub(super) fn report_exit(&mut self, pid: Pid, status: i32) {
        let (how, code) = match crate::release::restart::Exit::from_wait_status(status) {
            Some(crate::release::restart::Exit::Code(c)) => ("exit", c),
            Some(crate::release::restart::Exit::Signal(s)) => ("signal", s),
            _ => return,
        };
        if self.start_reaped(pid, status) {
            Event::debug("reap").kv("pid", pid).kv("name", "start").kv("how", how).kv("code", code).emit();
            return;
        }
        let name = match self.known.iter().position(|k| k.pid == pid) {
            Some(i) => self.known.swap_remove(i).name,
            None => {
                let mut s = heapless::String::new();
                let _ = s.push_str("orphan");
                s
            }
        };
        let check_code = if how == "exit" { code } else { 128 + code };
        if self.check_ended(pid, check_code) {
            Event::debug("reap").kv("pid", pid).kv("name", &name).kv("how", how).kv("code", code).emit();
            return;
        }
        Event::info("reap").kv("pid", pid).kv("name", &name).kv("how", how).kv("code", code).emit();
        if let Some(i) = self.cgroups.iter().position(|(p, _)| *p == pid) {
            let (_, cg) = self.cgroups.swap_remove(i);
            if let Ok(ev) = cg.memory_events() {
                self.count_oom_kills(pid, ev.oom_kill);
                if ev.oom_kill > 0 || ev.oom_group_kill > 0 {
                    Event::warn("container.oom").kv("name", &name).kv("oom_kill", ev.oom_kill).kv("oom", ev.oom).kv("berth_rss_kib", rss_kib()).emit();
                }
            }
            self.remove_cgroup(&name, cg);
        }
        let exit = if how == "exit" { crate::release::restart::Exit::Code(code) } else { crate::release::restart::Exit::Signal(code) };
        if self.service_exited(pid, exit) {
            return;
        }
        if let Some(i) = self.slots.iter().position(|s| s.pid == Some(pid)) {
            let ran_ms = self.slots.get(i).map(|s| ((crate::common::log::now() - s.started) * 1e3) as u64).unwrap_or(0);
            if let Some(s) = self.slots.get_mut(i) {
                s.pid = None;
            }
            self.after_exit(i, exit, ran_ms);
        }
    }

    fn request(&mut self, halt: Halt, sig: Signal, from: u32, timer: &TimerFd) {
        if self.phase != Phase::Running {
            Event::warn("shutdown.request").kv("action", halt.name()).kv("signal", sig.as_str()).kv("result", "ignored").emit();
            return;
        }
        Event::info("shutdown.begin").kv("action", halt.name()).kv("signal", sig.as_str()).kv("from_pid", from).kv("grace_ms", self.grace.as_millis()).emit();
        self.abort_staging();
        self.phase = Phase::Terminating(halt);
        arm(timer, self.grace);
        self.shutdown_step();
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
        // The log files are the last thing berth holds open on /data.
        crate::common::logstore::with(|s| s.close());
        nix::unistd::sync();
        Event::info("shutdown.sync").emit();
        if self.data_mounted {
            let mut r = nix::mount::umount2(DATA, nix::mount::MntFlags::empty());
            if r == Err(Errno::EBUSY) {
                // Someone still holds it: make it read-only so nothing more is lost.
                r = nix::mount::mount(None::<&str>, DATA, None::<&str>, nix::mount::MsFlags::MS_REMOUNT | nix::mount::MsFlags::MS_RDONLY, None::<&str>);
            }
            Event::info("shutdown.umount").kv("target", DATA).result(&r.map_err(errno_text)).emit();
            #[cfg(feature = "test-hooks")]
            crate::boot::logwrites::at_shutdown();
        }
        let mode = match halt {
            Halt::PowerOff => RebootMode::RB_POWER_OFF,
            Halt::Reboot => RebootMode::RB_AUTOBOOT,
        };
        Event::info("shutdown.halt").kv("action", halt.name()).emit();
        // The last lines reach the console and the kernel log before the end.
        crate::common::log::flush(FLUSH_WAIT);
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
