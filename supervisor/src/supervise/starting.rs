//! Container starts in the loop, never waiting on a child.
//!
//! It must not wait on a child, nor start a container whose old cgroup is
//! still being removed.
//!
//! A start forks ([`crate::confine::containers::begin`]) and leaves the slot
//! `starting` with its handshake ([`crate::confine::container::start::Pending`]): the
//! loop watches the child's pipes in epoll (tokens from [`TOKEN_START`]) and
//! moves the handshake on when they are readable; its deadline
//! ([`crate::confine::container::start::START_TIMEOUT`]) is one of the loop's timers.
//! Other containers start, run and get ready meanwhile.
//!
//! - Exec'd: the slot runs (`container.start result=ok`), as before.
//! - A step failed: `container.start result=error step=spawn error=...`.
//! - Past the deadline: `container.exit reason=start-timeout step=<step>`
//!   names the step the children began last ([`Step::slug`]).
//! - Stopped meanwhile (operator, update, shutdown): the start is cancelled.
//!
//! In each of the last three, the start's processes are SIGKILLed (and its
//! cgroup killed and removed without waiting, see [`super::teardown`]), reaped
//! through SIGCHLD like every child ([`Pid1::start_reaped`]), and the restart
//! policy applies as to a run that failed at once.
//!
//! A container whose volumes must have their ids shifted first (a new id
//! range, a shift cut short, a new volume's marker) waits for a helper
//! thread to do it (`volume.shift`), then starts.
//!
//! The start of a container whose cgroup from an earlier run is still being
//! removed waits for it (`container.waiting for=cgroup`), retried every
//! [`DEFER`] s up to [`DEFER_MAX`] times; then the start fails.

use super::{Pid1, SlotState};
use crate::common::files::errno_text;
use crate::common::log::Event;
use crate::confine::container::spawn::Step;
use crate::confine::container::start::{Deadline, Poll};
use nix::errno::Errno;
use nix::sys::epoll::{EpollEvent, EpollFlags};
use nix::unistd::Pid;

/// Pending starts' pipes use tokens from here on ([`TOKENS`] per slot:
/// error pipe, up pipe, volume shift).
pub(super) const TOKEN_START: u64 = 4000;
const TOKENS: u64 = 3;
/// Seconds between tries of a start that waits for its old cgroup.
pub(super) const DEFER: f64 = 0.1;
/// Tries before such a start fails.
pub(super) const DEFER_MAX: u32 = 120;
/// Most processes of ended starts waiting to be reaped quietly.
pub(super) const QUIET_MAX: usize = 64;

/// A slot's start between its fork and its exec.
pub(super) struct Starting {
    pub(super) launching: crate::confine::containers::Launching,
    pub(super) deadline: Deadline,
    /// The up pipe is in the epoll set.
    up_watched: bool,
    /// The init's raw wait status, when it ended (and was reaped) before
    /// the loop read the handshake's end: replayed once it is started.
    init_ended: Option<i32>,
    /// What the new run said on its notify socket before the loop saw its
    /// exec (its `READY=1` may come first): applied once it is started.
    pub(super) early: crate::supervise::notify::Message,
}

/// A slot's volume shift before its start (see [`crate::confine::container::shift`]).
pub(super) struct Preparing {
    wake: std::os::fd::OwnedFd,
    report: std::sync::mpsc::Receiver<crate::confine::container::shift::Report>,
    cancel: std::sync::Arc<std::sync::atomic::AtomicBool>,
    began: f64,
}

impl Starting {
    pub(super) fn deadline(&self) -> f64 {
        self.deadline.by
    }
}

impl Pid1 {
    /// Begin starting container `i` (its time has come, its dependencies
    /// are ready).
    pub(super) fn begin_start(&mut self, i: usize, now: f64) {
        let Some(slot) = self.slots.get_mut(i) else {
            return;
        };
        slot.due = None;
        if let Some(sock) = &slot.spec.notify {
            // Nothing an earlier run sent counts for this one. Drained before
            // the start: the new run may say READY=1 before its exec is seen.
            let _ = crate::supervise::notify::drain(sock);
        }
        let name = slot.spec.name.clone();
        let removing = self.removal_pending(&name);
        let Some(slot) = self.slots.get_mut(i) else {
            return;
        };
        let begun = if removing {
            Err(("cgroup-busy", String::new()))
        } else {
            crate::confine::containers::begin(&slot.spec, crate::confine::containers::hang_for(&name, false))
        };
        match begun {
            Ok(crate::confine::containers::Begun::Shift(_)) if slot.shifted => {
                slot.shifted = false;
                Event::error("container.start")
                    .kv("name", &name)
                    .kv("step", "volume")
                    .kv("result", "error")
                    .kv("error", "still not marked shifted after a shift")
                    .emit();
                self.after_exit(i, crate::release::restart::Exit::Code(127), 0);
            }
            Ok(crate::confine::containers::Begun::Shift(jobs)) => self.begin_shift(i, jobs, now),
            Ok(crate::confine::containers::Begun::Launching(launching)) => {
                slot.shifted = false;
                slot.told_waiting = false;
                slot.deferred = 0;
                slot.state = SlotState::Starting;
                let mut st = Starting { launching, deadline: Deadline::new(now), up_watched: false, init_ended: None, early: Default::default() };
                if let Some(epoll) = &self.epoll {
                    let token = TOKEN_START + TOKENS * i as u64;
                    let p = &st.launching.pending;
                    let r = epoll.add(p.err_fd(), EpollEvent::new(EpollFlags::EPOLLIN, token));
                    if let Err(e) = r {
                        Event::error("container.start").kv("name", &name).kv("step", "watch").result(&Err::<(), _>(errno_text(e))).emit();
                    }
                    if let Some(up) = p.up_fd() {
                        st.up_watched = epoll.add(up, EpollEvent::new(EpollFlags::EPOLLIN, token + 1)).is_ok();
                    }
                }
                slot.starting = Some(Box::new(st));
            }
            Err(("cgroup-busy", e)) if slot.deferred < DEFER_MAX => {
                slot.deferred += 1;
                slot.due = Some(now + DEFER);
                if !slot.told_waiting {
                    slot.told_waiting = true;
                    let mut ev = Event::info("container.waiting").kv("name", &name).kv("for", "cgroup");
                    if !e.is_empty() {
                        ev = ev.kv("reason", e);
                    }
                    ev.emit();
                }
            }
            Err((step, e)) => {
                slot.told_waiting = false;
                slot.deferred = 0;
                Event::error("container.start").kv("name", &name).kv("step", step).kv("result", "error").kv("error", e).emit();
                // A start that fails counts as a failed run of no length.
                self.after_exit(i, crate::release::restart::Exit::Code(127), 0);
            }
        }
    }

    /// A pending start's pipe is readable (token `t` - [`TOKEN_START`]).
    pub(super) fn on_start_io(&mut self, t: u64) {
        let i = (t / TOKENS) as usize;
        if t % TOKENS == 2 {
            return self.on_shift_done(i);
        }
        let Some(slot) = self.slots.get_mut(i) else {
            return;
        };
        let Some(st) = slot.starting.as_mut() else {
            return;
        };
        let crate::confine::containers::Launching { pending, cgroup, .. } = &mut st.launching;
        let mut add = |pid| cgroup.add(pid).map_err(|_| Errno::EIO);
        let poll = pending.advance(&slot.spec.plan, &mut add);
        if st.up_watched && pending.up_fd().is_none() {
            st.up_watched = false;
            if let (Some(epoll), Some(up)) = (&self.epoll, pending.up_raw()) {
                let _ = epoll.delete(up);
            }
        }
        match poll {
            Poll::Waiting => {}
            Poll::Started(s) => self.start_done(i, s),
            Poll::Failed(e) => {
                if !self.end_start(i) {
                    return;
                }
                let name = self.slots.get(i).map(|s| s.spec.name.clone()).unwrap_or_default();
                Event::error("container.start").kv("name", &name).kv("step", "spawn").kv("result", "error").kv("error", e).emit();
                self.after_exit(i, crate::release::restart::Exit::Code(127), 0);
            }
        }
    }

    /// Take container `i`'s pending start out of the loop: unwatched, its
    /// processes killed (to be reaped quietly) and its cgroup on its way
    /// out. False when it had none.
    fn end_start(&mut self, i: usize) -> bool {
        let Some(slot) = self.slots.get_mut(i) else {
            return false;
        };
        let Some(st) = slot.starting.take() else {
            return false;
        };
        let name = slot.spec.name.clone();
        self.unwatch_start(&st);
        let Starting { launching, .. } = *st;
        let crate::confine::containers::Launching { pending, output, cgroup } = launching;
        pending.kill();
        let alive: heapless::Vec<Pid, 2> = pending.alive().collect();
        for pid in alive {
            self.reap_quietly(pid);
        }
        drop((pending, output));
        self.remove_cgroup(&name, cgroup);
        true
    }

    fn unwatch_start(&self, st: &Starting) {
        let Some(epoll) = &self.epoll else { return };
        let p = &st.launching.pending;
        let _ = epoll.delete(p.err_fd());
        if st.up_watched {
            if let Some(up) = p.up_raw() {
                let _ = epoll.delete(up);
            }
        }
    }

    /// Container `i`'s init exec'd: it runs.
    fn start_done(&mut self, i: usize, started: crate::confine::container::spawn::Started) {
        let now = crate::common::log::now();
        let Some(slot) = self.slots.get_mut(i) else {
            return;
        };
        let Some(st) = slot.starting.take() else {
            return;
        };
        self.unwatch_start(&st);
        let Starting { launching, init_ended, early, .. } = *st;
        let crate::confine::containers::Launching { pending, output, cgroup } = launching;
        // The intermediate has exited (its end of the error pipe closed);
        // its exit may not be read yet.
        let c1: heapless::Vec<Pid, 2> = pending.alive().filter(|p| *p != started.pid).collect();
        for pid in c1 {
            self.reap_quietly(pid);
        }
        drop(pending);
        crate::confine::containers::log_placement(started.placed);
        let Some(slot) = self.slots.get_mut(i) else {
            return;
        };
        crate::confine::containers::started_event(&slot.spec, started.pid, &cgroup);
        slot.pid = Some(started.pid);
        slot.started = now;
        slot.state = SlotState::Running;
        slot.status = None;
        let (life, ready) = super::life::Life::start(&slot.params, now);
        slot.life = life;
        let name = slot.spec.name.clone();
        let rate = slot.spec.log_rate;
        self.watch(started.pid, &name);
        self.own_cgroup(started.pid, cgroup);
        self.watch_output(output, &name, rate);
        if ready {
            // Its dependents may start now.
            self.became_ready(i, "start");
        } else {
            self.apply_notify(i, early, now);
        }
        if let Some(status) = init_ended {
            // It ran and ended before the loop saw it start (its exit came
            // first in the same wake-up): its exit, now that it is known.
            self.report_exit(started.pid, status);
        }
    }

    /// Every pending start past its deadline at `now` is killed, naming the
    /// step it hung in.
    pub(super) fn expire_starts(&mut self, now: f64) {
        for i in 0..self.slots.len() {
            let Some(slot) = self.slots.get(i) else {
                continue;
            };
            let Some(st) = &slot.starting else { continue };
            if !st.deadline.expired(now) {
                continue;
            }
            let step = st.launching.pending.at();
            let after_ms = st.deadline.elapsed_ms(now);
            let name = slot.spec.name.clone();
            let at = crate::confine::container::spawn::SpawnError::at_step(step, &slot.spec.plan);
            self.end_start(i);
            start_timeout_event(&name, step, &at, after_ms);
            self.after_exit(i, crate::release::restart::Exit::Signal(KILLED), 0);
        }
    }

    /// Cancel container `i`'s pending start (stopped by `by`); true when
    /// there was one. Its end counts as a killed run of no length.
    pub(super) fn cancel_start(&mut self, i: usize, by: &str) -> bool {
        if !self.end_start(i) && !self.end_shift(i) {
            return false;
        }
        let name = self.slots.get(i).map(|s| s.spec.name.clone()).unwrap_or_default();
        Event::info("container.stop").kv("name", &name).kv("by", by).kv("signal", "SIGKILL").kv("starting", 1).emit();
        self.after_exit(i, crate::release::restart::Exit::Signal(KILLED), 0);
        true
    }

    /// Check `pid` of container `i` ran past its timeout: kill it, saying
    /// where it was (a setup step, or the command itself) once.
    pub(super) fn check_timeout(&mut self, i: usize, pid: Pid) {
        if let Some(slot) = self.slots.get_mut(i) {
            if let Some(trail) = slot.check_trail.take() {
                let step = crate::confine::container::enter::trail(std::os::fd::AsFd::as_fd(&trail));
                Event::warn("container.check")
                    .kv("name", &slot.spec.name)
                    .kv("ready", slot.life.ready as u8)
                    .kv("result", "timeout")
                    .kv("step", step.map_or("command", Step::slug))
                    .emit();
            }
        }
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    }

    /// Container `i`'s volumes must be shifted before it starts: a helper
    /// thread does it; the slot waits (`starting`) for its report.
    fn begin_shift(&mut self, i: usize, jobs: Vec<crate::confine::container::shift::Job>, now: f64) {
        let Some(slot) = self.slots.get_mut(i) else {
            return;
        };
        let name = slot.spec.name.clone();
        let cancel = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let volumes: Vec<String> = jobs.iter().map(|j| j.volume.clone()).collect();
        let to = jobs.first().map_or(0, |j| j.to);
        let spawned = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)
            .map_err(|e| errno_text(e).to_string())
            .and_then(|(r, w)| crate::confine::container::shift::spawn(jobs, w, cancel.clone()).map(|rx| (r, rx)).map_err(|e| e.to_string()));
        let (wake, report) = match spawned {
            Ok(x) => x,
            Err(e) => {
                Event::error("container.start").kv("name", &name).kv("step", "volume").kv("result", "error").kv("error", e).emit();
                return self.after_exit(i, crate::release::restart::Exit::Code(127), 0);
            }
        };
        if let Some(epoll) = &self.epoll {
            let token = TOKEN_START + TOKENS * i as u64 + 2;
            if let Err(e) = epoll.add(&wake, EpollEvent::new(EpollFlags::EPOLLIN, token)) {
                Event::error("volume.shift").kv("name", &name).kv("step", "watch").result(&Err::<(), _>(errno_text(e))).emit();
            }
        }
        Event::info("volume.shift").kv("name", &name).kv("volumes", volumes.join(",")).kv("to", to).emit();
        slot.state = SlotState::Starting;
        slot.preparing = Some(Box::new(Preparing { wake, report, cancel, began: now }));
    }

    /// Slot `j` moved to index `j` (a slot before it was dropped): its
    /// pending start's pipes, or its volume shift's wake pipe, are watched
    /// under the tokens of that index.
    pub(super) fn rewatch_start(&self, j: usize) {
        let (Some(epoll), Some(slot)) = (&self.epoll, self.slots.get(j)) else {
            return;
        };
        let token = TOKEN_START + TOKENS * j as u64;
        let mut fds = Vec::new();
        if let Some(st) = &slot.starting {
            let p = &st.launching.pending;
            fds.push((p.err_fd(), token));
            if let Some(up) = p.up_fd().filter(|_| st.up_watched) {
                fds.push((up, token + 1));
            }
        }
        if let Some(pr) = &slot.preparing {
            fds.push((std::os::fd::AsFd::as_fd(&pr.wake), token + 2));
        }
        for (fd, t) in fds {
            if let Err(e) = epoll.modify(fd, &mut EpollEvent::new(EpollFlags::EPOLLIN, t)) {
                Event::error("container.start").kv("name", &slot.spec.name).kv("step", "watch").result(&Err::<(), _>(errno_text(e))).emit();
            }
        }
    }

    /// The helper thread of container `i`'s volume shift reported.
    fn on_shift_done(&mut self, i: usize) {
        let now = crate::common::log::now();
        let Some(slot) = self.slots.get_mut(i) else {
            return;
        };
        let Some(p) = &slot.preparing else { return };
        let report = match p.report.try_recv() {
            Ok(r) => r,
            Err(std::sync::mpsc::TryRecvError::Empty) => return,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => Err("the shift ended without a report".to_owned()),
        };
        let ms = ((now - p.began).max(0.0) * 1e3) as u64;
        let name = slot.spec.name.clone();
        self.end_shift(i);
        match report {
            Ok(entries) => {
                Event::info("volume.shift").kv("name", &name).kv("entries", entries).kv("ms", ms).kv("result", "ok").emit();
                if let Some(slot) = self.slots.get_mut(i) {
                    slot.shifted = true;
                }
                self.begin_start(i, now);
            }
            Err(e) => {
                Event::error("volume.shift").kv("name", &name).kv("ms", ms).kv("result", "error").kv("error", &e).emit();
                Event::error("container.start").kv("name", &name).kv("step", "volume").kv("result", "error").kv("error", e).emit();
                self.after_exit(i, crate::release::restart::Exit::Code(127), 0);
            }
        }
    }

    /// Take container `i`'s volume shift out of the loop (a running helper
    /// stops at its next entry; its marker says the shift is unfinished).
    fn end_shift(&mut self, i: usize) -> bool {
        let Some(slot) = self.slots.get_mut(i) else {
            return false;
        };
        let Some(p) = slot.preparing.take() else {
            return false;
        };
        p.cancel.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(epoll) = &self.epoll {
            let _ = epoll.delete(&p.wake);
        }
        true
    }

    /// Reap `pid` without a `reap` event (an ended start's process).
    pub(super) fn reap_quietly(&mut self, pid: Pid) {
        if !self.quiet.contains(&pid) && self.quiet.push(pid).is_err() {
            Event::debug("reap").kv("pid", pid).kv("quiet", "full").emit();
        }
    }

    /// `pid` ended: true when it was a start's process (pending or ended),
    /// which says nothing of its own.
    pub(super) fn start_reaped(&mut self, pid: Pid, status: i32) -> bool {
        if let Some(i) = self.quiet.iter().position(|p| *p == pid) {
            self.quiet.swap_remove(i);
            return true;
        }
        for st in self.slots.iter_mut().filter_map(|s| s.starting.as_mut()) {
            if st.launching.pending.reaped(pid) {
                if st.launching.pending.init() == Some(pid) {
                    st.init_ended = Some(status);
                }
                return true;
            }
        }
        false
    }

    /// The earliest pending start's deadline.
    pub(super) fn starts_deadline(&self) -> Option<f64> {
        self.slots.iter().filter_map(|s| s.starting.as_ref()).map(|st| st.deadline()).reduce(f64::min)
    }
}

/// How an ended start's processes end, for [`crate::release::restart::Exit::Signal`].
const KILLED: i32 = nix::sys::signal::Signal::SIGKILL as i32;

fn start_timeout_event(name: &str, step: Step, at: &str, after_ms: u64) {
    Event::error("container.exit").kv("name", name).kv("reason", "start-timeout").kv("step", step.slug()).kv("at", at).kv("after_ms", after_ms).emit();
}
