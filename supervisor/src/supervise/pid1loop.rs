//! The loop itself: set-up of the signalfd, timers and sockets, the
//! dispatch of each epoll token, signals and reaping, the shutdown steps and
//! the final halt. Part of [`Pid1`]; it must not block or panic: PID 1
//! never returns from [`Pid1::run`].

use super::*;

impl Pid1 {
    /// Shutdown: stop each container once no running container depends on
    /// it (reverse dependency order, independent ones together); when none
    /// is left, SIGTERM every other process.
    pub(super) fn shutdown_step(&mut self) {
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
    pub(super) fn arm_deadline(&self) {
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
    pub(super) fn dispatch(&mut self, token: u64, sfd: &SignalFd, timer: &TimerFd) -> stall::Kind {
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
    pub(super) fn measured(&mut self, kind: stall::Kind, start: f64) {
        if let Some(st) = self.stalls.handler(kind, start, crate::common::log::now()) {
            self.report_stall(st);
        }
    }

    pub(super) fn setup(&mut self) -> Result<(SignalFd, TimerFd), Errno> {
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

    pub(super) fn on_ctl_accept(&mut self) {
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

    pub(super) fn on_ctl_conn(&mut self, slot: usize) {
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
    pub(super) fn report_log_loss(&mut self) {
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
    pub(super) fn watch_console(&mut self) {
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
    pub(super) fn fallback(&mut self) -> ! {
        loop {
            match crate::sys::wait_any(false) {
                Ok(Some((pid, status))) => self.report_exit(pid, status),
                Ok(None) | Err(_) => std::thread::sleep(Duration::from_secs(1)),
            }
        }
    }

    pub(super) fn on_signals(&mut self, sfd: &SignalFd, timer: &TimerFd) {
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
    pub(super) fn reap(&mut self) -> bool {
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

    pub(super) fn request(&mut self, halt: Halt, sig: Signal, from: u32, timer: &TimerFd) {
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

    pub(super) fn on_timer(&mut self, timer: &TimerFd) {
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
    pub(super) fn finish(&mut self, halt: Halt) -> ! {
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
            crate::release::logwrites::at_shutdown();
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
