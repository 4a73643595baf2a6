//! The PID 1 event loop: signals, reaping and orderly shutdown.
//!
//! It must not block: anything slow (staging, a switch's preparation, a
//! volume's shift) runs in a child process or a helper thread and reports
//! through a descriptor in the epoll set.
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
mod pid1loop;
mod recovery;
mod services;
mod slots;
pub mod stage;
pub mod stall;
mod starting;
pub mod statusview;
mod switch;
mod teardown;
mod trial;
mod unprepared;
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
        // Its output stream goes too: memory stays flat across updates.
        crate::common::logstore::with(|s| s.evict(&gone.spec.name));
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
