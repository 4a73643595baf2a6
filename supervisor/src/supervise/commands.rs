//! The control commands, carried out by the loop.
//!
//! It must not block the loop: each command changes the loop's state and is
//! answered at once (a stop signals, and the exit comes later as any exit
//! does; an update is answered once its staging started). A retired container
//! is no longer the operator's.

use super::{Pid1, Slot, SlotState};
use crate::common::log::Event;
use crate::supervise::control::{error, Command, ContainerStatus, Response};

impl Pid1 {
    /// Carry out one control command.
    pub(super) fn command(&mut self, cmd: Command) -> Response {
        match cmd {
            Command::Status => Response::Status(Box::new(self.status())),
            Command::Release => self.release_info(),
            // Answered once its staging started; `berthctl update --wait`
            // then polls `Release` for its end.
            Command::Update(path) => match self.update_path(&path) {
                Ok(info) => Response::Update(Box::new(info)),
                Err(e) => error(&e),
            },
            Command::Commit => self.commit_requested(),
            Command::Rollback => self.rollback_requested(),
            Command::Logs { name, after, max } => self.logs(name, after, max),
            #[cfg(feature = "test-hooks")]
            Command::Wedge(seconds) if !(1..=600).contains(&seconds) => error("wedge takes 1 to 600 seconds"),
            #[cfg(feature = "test-hooks")]
            Command::Wedge(seconds) => {
                self.wedge(seconds);
                Response::Done
            }
            #[cfg(not(feature = "test-hooks"))]
            Command::Wedge(_) => error("this berth is built without test hooks"),
            Command::Stop(ref name) | Command::Restart(ref name) | Command::Start(ref name) if operated(&self.slots, name).is_none() => {
                // Container names come first; then the board's services.
                match self.service_index(name) {
                    Some(i) => self.service_command(i, &cmd),
                    None => error(&format!("no container or service named {name}")),
                }
            }
            Command::Stop(name) => self.operator_stop(&name),
            Command::Start(name) => self.operator_start(&name),
            Command::Restart(name) => self.operator_restart(&name),
        }
    }

    /// `stop NAME`: held until the operator starts it again.
    fn operator_stop(&mut self, name: &str) -> Response {
        let Some(i) = operated(&self.slots, name) else {
            return error("gone");
        };
        let Some(s) = self.slots.get_mut(i) else {
            return error("gone");
        };
        s.held = true;
        s.due = None;
        if s.pid.is_none() {
            s.state = SlotState::Stopped;
        }
        Event::info("control.stop").kv("name", name).emit();
        self.stop_container(i, "operator");
        Response::Done
    }

    /// `start NAME`: released from a hold with a fresh restart record, and
    /// started now unless it already runs.
    fn operator_start(&mut self, name: &str) -> Response {
        let Some(s) = operated(&self.slots, name).and_then(|i| self.slots.get_mut(i)) else {
            return error("gone");
        };
        if s.busy() {
            return error(&format!("{name} is already running"));
        }
        s.held = false;
        s.restart = crate::release::restart::State::default();
        s.state = SlotState::Waiting;
        s.due = Some(crate::common::log::now());
        Event::info("control.start").kv("name", name).emit();
        self.tick();
        Response::Done
    }

    /// `restart NAME`: a running container is stopped and started again
    /// once it exited; a stopped one is started now.
    fn operator_restart(&mut self, name: &str) -> Response {
        let Some(i) = operated(&self.slots, name) else {
            return error("gone");
        };
        let Some(s) = self.slots.get_mut(i) else {
            return error("gone");
        };
        s.held = false;
        Event::info("control.restart").kv("name", name).emit();
        if s.busy() {
            s.again = true;
            self.stop_container(i, "operator");
        } else {
            s.state = SlotState::Waiting;
            s.due = Some(crate::common::log::now());
            self.tick();
        }
        Response::Done
    }

    /// `logs NAME`: up to `max` kept lines of a container's (or a host
    /// service's) stream after `after`.
    fn logs(&mut self, name: crate::supervise::control::Name, after: Option<u64>, max: u16) -> Response {
        let max = usize::from(max).min(crate::supervise::control::LOG_LINES_MAX);
        match crate::common::logstore::with(|s| s.read(&name, after, max)) {
            Some(Some((lines, next, dropped))) => {
                let mut out = heapless::Vec::new();
                for l in lines {
                    let mut text = heapless::String::new();
                    for c in l.text.chars() {
                        if text.push(c).is_err() {
                            break;
                        }
                    }
                    let _ = out.push(crate::supervise::control::LogLine { seq: l.seq, t_ms: l.t_ms, wall_ms: l.wall_ms, text });
                }
                Response::Logs { lines: Box::new(out), next, dropped, boot: crate::common::logstore::boot_id() }
            }
            Some(None) if self.slots.iter().any(|s| !s.retired && s.spec.name == name) => {
                Response::Logs { lines: Box::default(), next: 0, dropped: 0, boot: crate::common::logstore::boot_id() }
            }
            // A service's stream, by the service's name.
            Some(None) if self.service_index(&name).is_some() => {
                let stream = crate::common::logstore::service_stream(&name);
                self.command(Command::Logs { name: stream, after, max: max as u16 })
            }
            Some(None) => error(&format!("no logs for {name}")),
            None => error("the log store is not available"),
        }
    }

    fn release_info(&self) -> Response {
        let mut info = match (&self.release, self.recovering()) {
            (Some((version, key_id)), _) => crate::supervise::control::ReleaseInfo { version: *version, key_id: key_id.clone(), ..Default::default() },
            (None, Some(why)) => crate::supervise::control::ReleaseInfo { recovery: crate::release::stager::cut(why), ..Default::default() },
            (None, None) => return error("no release is running"),
        };
        if let Some(u) = &self.updates {
            let rec = u.store.record();
            let _ = info.phase.push_str(self.release_phase());
            info.previous = rec.previous.map(|p| p.version);
            for rb in rec.history.iter() {
                let mut line = heapless::String::new();
                let _ = core::fmt::write(&mut line, format_args!("{rb}"));
                let _ = info.rollbacks.push(line);
            }
        }
        info.staging = self.staging_note();
        for q in self.stage.quarantined.iter().rev().take(crate::release::inbox::QUARANTINE_KEEP).rev() {
            let _ = info.quarantined.push(crate::release::stager::cut(&q.to_string()));
        }
        for u in self.stage.log.all() {
            let _ = info.updates.push(u.clone());
        }
        Response::Release(Box::new(info))
    }

    fn staging_note(&self) -> crate::supervise::control::Note {
        let now = crate::common::log::now();
        self.stage.current.as_ref().map(|s| crate::release::stager::cut(&super::stage::describe(s, now))).unwrap_or_default()
    }

    fn status(&self) -> crate::supervise::control::StatusReply {
        let now = crate::common::log::now();
        let us = |s: f64| (s * 1e6) as u64;
        let name = |k: super::stall::Kind| crate::release::stager::cut(k.name());
        let (boot, recent) = (self.stalls.boot, self.stalls.recent(now));
        let stalls = crate::supervise::control::LoopStalls {
            handler_us: us(boot.handler_s),
            handler: name(boot.handler),
            pet_late_us: us(boot.pet_late_s),
            recent_handler_us: us(recent.handler_s),
            recent_handler: name(recent.handler),
            recent_pet_late_us: us(recent.pet_late_s),
        };
        let release = self.view_release().map(|r| crate::supervise::control::StatusRelease {
            version: r.version,
            key_id: crate::supervise::outcome::cut(r.key_id),
            phase: crate::supervise::outcome::cut(r.phase),
        });
        crate::supervise::control::StatusReply {
            berth: crate::supervise::outcome::cut(env!("CARGO_PKG_VERSION")),
            release,
            entries: self.entries(),
            stalls,
            staging: self.staging_note(),
            update: self.stage.log.last().cloned(),
        }
    }

    fn entries(&self) -> heapless::Vec<ContainerStatus, { crate::supervise::control::STATUS_MAX }> {
        let now = crate::common::log::now();
        let mut list = heapless::Vec::new();
        for s in &self.slots {
            if s.retired {
                continue;
            }
            let mut state = heapless::String::new();
            let _ = state.push_str(super::update::state_name(s));
            let last = last_exit(s.last_exit);
            let memory = s.pid.and_then(|pid| self.cgroups.iter().find(|(p, _)| *p == pid)).and_then(|(_, cg)| cg.memory_current().ok()).unwrap_or(0);
            let _ = list.push(ContainerStatus {
                name: s.spec.name.clone(),
                kind: kind(super::Kind::Container),
                state,
                pid: s.pid.map(|p| p.as_raw()).unwrap_or(0),
                uptime_ms: if s.pid.is_some() { ((now - s.started) * 1e3) as u64 } else { 0 },
                restarts: s.restart.restarts,
                last_exit: last,
                ready: s.pid.is_some() && s.life.ready,
                memory,
                note: s.status.clone().unwrap_or_default(),
                layers: s.spec.layers(),
                started_ms: s.pid.map(|_| started_ms(s.started)),
            });
        }
        for s in &self.services {
            let mut name = heapless::String::new();
            let _ = name.push_str(&s.spec.name);
            let _ = list.push(ContainerStatus {
                name,
                kind: kind(super::Kind::Service),
                state: state_name(s.state, s.kill_at.is_some()),
                pid: s.pid.map(|p| p.as_raw()).unwrap_or(0),
                uptime_ms: if s.pid.is_some() { ((now - s.started) * 1e3) as u64 } else { 0 },
                restarts: s.restart.restarts,
                last_exit: last_exit(s.last_exit),
                // As the status file has it.
                ready: s.pid.is_some() && s.state == SlotState::Running,
                memory: 0,
                note: heapless::String::new(),
                layers: crate::supervise::control::Layers::default(),
                started_ms: s.pid.map(|_| started_ms(s.started)),
            });
        }
        list
    }
}

/// The slot of the container `name` the operator may start, stop or
/// restart: a retired one (removed by an update, still stopping) is no
/// longer the operator's.
fn operated(slots: &[Slot], name: &str) -> Option<usize> {
    slots.iter().position(|s| !s.retired && s.spec.name == name)
}

/// A run's start (seconds on `CLOCK_MONOTONIC`) as the status file shows it.
pub(super) fn started_ms(started: f64) -> u64 {
    (started * 1e3) as u64
}

pub(super) fn kind(k: super::Kind) -> heapless::String<10> {
    let mut s = heapless::String::new();
    let _ = s.push_str(k.name());
    s
}

pub(super) fn state_name(st: SlotState, stopping: bool) -> heapless::String<16> {
    let mut state = heapless::String::new();
    let _ = state.push_str(match st {
        SlotState::Waiting => "waiting",
        SlotState::Starting => "starting",
        SlotState::Running if stopping => "stopping",
        SlotState::Running => "running",
        SlotState::Stopped => "stopped",
        SlotState::Failed => "failed",
    });
    state
}

pub(super) fn last_exit(e: Option<crate::release::restart::Exit>) -> heapless::String<24> {
    let mut last = heapless::String::new();
    let _ = match e {
        None => last.push_str("-"),
        Some(crate::release::restart::Exit::Code(c)) => core::fmt::write(&mut last, format_args!("exit {c}")).map_err(|_| ()),
        Some(crate::release::restart::Exit::Signal(n)) => core::fmt::write(&mut last, format_args!("signal {n}")).map_err(|_| ()),
        Some(crate::release::restart::Exit::Unhealthy) => last.push_str("unhealthy"),
    };
    last
}
