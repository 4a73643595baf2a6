//! The containers' lives inside the loop: the dependency gate, the start
//! passes of each tick, readiness (notify and checks), health, stops and
//! kills, and what follows an exit (restart, backoff, crash loop). Part of
//! [`Pid1`]; it must not block: every check and start runs as a child.

use super::*;

impl Pid1 {
    pub(super) fn watch_notify_sockets(&self) {
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
    pub(super) fn deps_ready(&self, i: usize) -> Result<(), heapless::String<32>> {
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
    pub(super) fn tick(&mut self) {
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
    pub(super) fn start_pass(&mut self, now: f64) {
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
    pub(super) fn became_ready(&mut self, i: usize, by: &str) {
        let Some(slot) = self.slots.get(i) else {
            return;
        };
        let after_ms = ((crate::common::log::now() - slot.started) * 1e3) as u64;
        Event::info("container.ready").kv("name", &slot.spec.name).kv("by", by).kv("after_ms", after_ms).emit();
        self.tick();
    }

    /// A readiness or health verdict against container `i`: stop it; its
    /// exit counts as a failure.
    pub(super) fn unhealthy(&mut self, i: usize, reason: life::Reason) {
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
    pub(super) fn stop_container(&mut self, i: usize, by: &str) {
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
    pub(super) fn kill_container(&mut self, i: usize) {
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
    pub(super) fn run_check(&mut self, i: usize, now: f64) {
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
    pub(super) fn check_ended(&mut self, pid: Pid, code: i32) -> bool {
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

    pub(super) fn on_check_result(&mut self, i: usize, r: life::CheckResult, code: i32) {
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
    pub(super) fn on_notify(&mut self, i: usize) {
        let now = crate::common::log::now();
        let Some(slot) = self.slots.get_mut(i) else {
            return;
        };
        let Some(sock) = &slot.spec.notify else {
            return;
        };
        let m = crate::supervise::notify::drain(sock);
        if slot.pid.is_none() {
            // Said between the fork and the loop seeing the exec: kept for
            // when the start completes, never lost.
            if let Some(st) = slot.starting.as_mut() {
                st.early.merge(m);
            }
            return;
        }
        self.apply_notify(i, m, now);
    }

    /// Apply what container `i`'s running init said.
    pub(super) fn apply_notify(&mut self, i: usize, m: crate::supervise::notify::Message, now: f64) {
        let Some(slot) = self.slots.get_mut(i) else {
            return;
        };
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
    pub(super) fn after_exit(&mut self, i: usize, exit: crate::release::restart::Exit, ran_ms: u64) {
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
}
