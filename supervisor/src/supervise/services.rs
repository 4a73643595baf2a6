//! Host services: the board's privileged programs (`[[service]]`), such as
//! `berth net`. They come from the read-only system image and run in the
//! host namespaces, unconfined: with berth, the only such processes.
//!
//! At shutdown it must not stop a service before every container is down, nor
//! restart one.
//!
//! They start when the loop is set up, before any container, with the
//! environment cleared but for `PATH`, stdin on /dev/null and stdout/stderr
//! on a pipe logged like a container's output (`service.log`, stream
//! `service:<name>`). Their restart policy and backoff work as a
//! container's (`crate::release::restart`). At shutdown they are stopped once every
//! container is down, and never restarted. `berthctl stop|start|restart`
//! works on them (SIGTERM, SIGKILL after [`STOP_GRACE`] s).
//!
//! [`Service`] is the bookkeeping, pure and unit tested; the `Pid1` methods
//! below spawn and signal.

use super::{Kind, Pid1, SlotState};
use crate::common::files::errno_text;
use crate::common::log::Event;
use crate::release::restart::{on_exit, Backoff, Decision, Exit};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Seconds between an operator's or shutdown's SIGTERM and SIGKILL.
pub const STOP_GRACE: f64 = 3.0;
/// `PATH` of a service.
const PATH: &str = "/sbin:/bin:/usr/sbin:/usr/bin";

/// One service and its restart bookkeeping.
#[derive(Debug)]
pub struct Service {
    pub spec: crate::release::board::Service,
    backoff: Backoff,
    pub pid: Option<Pid>,
    pub started: f64,
    /// When to (re)start it.
    pub due: Option<f64>,
    pub restart: crate::release::restart::State,
    pub state: SlotState,
    /// Stopped by the operator: not restarted until started again.
    held: bool,
    /// Restart asked by the operator: start again as soon as it ends.
    again: bool,
    /// SIGKILL deadline of a stop in progress.
    pub kill_at: Option<f64>,
    pub last_exit: Option<Exit>,
}

/// What the loop does after a service ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Shutting down: it stays down.
    Shutdown,
    /// The operator stopped it.
    Held,
    /// The operator asked for a restart: at once.
    Again,
    /// Its policy's verdict.
    Policy(Decision),
}

impl Service {
    pub fn new(spec: crate::release::board::Service) -> Service {
        Service {
            backoff: Backoff::from_spec(spec.backoff.as_ref()),
            spec,
            pid: None,
            started: 0.0,
            due: Some(0.0),
            restart: crate::release::restart::State::default(),
            state: SlotState::Waiting,
            held: false,
            again: false,
            kill_at: None,
            last_exit: None,
        }
    }

    pub fn running(&mut self, pid: Pid, now: f64) {
        self.pid = Some(pid);
        self.started = now;
        self.due = None;
        self.state = SlotState::Running;
    }

    /// Its run ended at `now`: decide what comes next.
    pub fn ended(&mut self, exit: Exit, now: f64, shutting_down: bool) -> Ended {
        let ran_ms = ((now - self.started) * 1e3).max(0.0) as u64;
        self.pid = None;
        self.kill_at = None;
        self.last_exit = Some(exit);
        self.state = SlotState::Stopped;
        if shutting_down {
            return Ended::Shutdown;
        }
        if self.held {
            return Ended::Held;
        }
        if self.again {
            self.again = false;
            self.state = SlotState::Waiting;
            self.due = Some(now);
            return Ended::Again;
        }
        let d = on_exit(self.spec.restart, &self.backoff, &mut self.restart, exit, ran_ms);
        match d {
            Decision::Restart { after_ms, .. } => {
                self.state = SlotState::Waiting;
                self.due = Some(now + f64::from(after_ms) / 1e3);
            }
            Decision::Failed { .. } => self.state = SlotState::Failed,
            Decision::Stop => {}
        }
        Ended::Policy(d)
    }

    /// A start that failed counts as a failed run of no length.
    pub fn start_failed(&mut self, now: f64, shutting_down: bool) -> Ended {
        self.started = now;
        self.ended(Exit::Code(127), now, shutting_down)
    }

    /// The operator's stop: no restart until started again.
    pub fn hold(&mut self) {
        self.held = true;
        self.due = None;
        if self.pid.is_none() {
            self.state = SlotState::Stopped;
        }
    }

    /// The operator's start: backoff reset, due now.
    pub fn release(&mut self, now: f64) {
        self.held = false;
        self.restart = crate::release::restart::State::default();
        self.state = SlotState::Waiting;
        self.due = Some(now);
    }

    /// The operator's restart: again once it ended, or now if it is down.
    pub fn restart_now(&mut self, now: f64) {
        self.held = false;
        if self.pid.is_some() {
            self.again = true;
        } else {
            self.state = SlotState::Waiting;
            self.due = Some(now);
        }
    }

    /// Its next deadline: a start or a kill.
    pub fn deadline(&self) -> Option<f64> {
        match (self.due, self.kill_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Start one service: plain fork/exec from the system image, in berth's
/// namespaces, stdout/stderr on a pipe.
fn spawn(s: &crate::release::board::Service) -> Result<(Pid, std::os::fd::OwnedFd), (&'static str, String)> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    use std::process::{Command, Stdio};
    let Some((prog, args)) = s.argv.split_first() else {
        return Err(("argv", "empty".into()));
    };
    let errno = |step: &'static str| move |e: nix::errno::Errno| (step, errno_text(e).to_string());
    let (out_r, out_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(errno("pipe"))?;
    fcntl(std::os::fd::AsRawFd::as_raw_fd(&out_r), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(errno("pipe"))?;
    let err_w = out_w.try_clone().map_err(|e| ("pipe", e.to_string()))?;
    let mut cmd = Command::new(prog.as_str());
    cmd.args(args.iter().map(|a| a.as_str()))
        .env_clear()
        .env("PATH", PATH)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::from(out_w))
        .stderr(Stdio::from(err_w));
    crate::sys::unblock_signals_in_child(&mut cmd);
    // The Child is dropped without waiting: the loop reaps every process.
    let child = cmd.spawn().map_err(|e| ("exec", e.to_string()))?;
    let pid = i32::try_from(child.id()).map_err(|_| ("exec", "pid out of range".to_string()))?;
    Ok((Pid::from_raw(pid), out_r))
}

impl Pid1 {
    /// Take the board's services; they start when the loop is set up.
    pub fn adopt_services(&mut self, specs: &[crate::release::board::Service]) {
        for spec in specs {
            self.services.push(Service::new(spec.clone()));
        }
    }

    /// Start every service whose time has come; kill those whose stop grace
    /// is over. Called from the loop's tick, before the containers.
    pub(super) fn tick_services(&mut self, now: f64) {
        let running = self.phase == super::Phase::Running;
        for i in 0..self.services.len() {
            let Some(s) = self.services.get_mut(i) else {
                continue;
            };
            if let (Some(pid), Some(at)) = (s.pid, s.kill_at) {
                if at <= now {
                    s.kill_at = None;
                    let r = kill(pid, Signal::SIGKILL);
                    Event::warn("service.kill").kv("name", &s.spec.name).kv("reason", "stop grace over").result(&r.map_err(errno_text)).emit();
                }
            }
            if running && s.pid.is_none() && s.due.is_some_and(|d| d <= now) {
                self.start_service(i, now);
            }
        }
    }

    fn start_service(&mut self, i: usize, now: f64) {
        let shutting_down = self.phase != super::Phase::Running;
        let Some(s) = self.services.get_mut(i) else {
            return;
        };
        match spawn(&s.spec) {
            Ok((pid, out)) => {
                s.running(pid, now);
                let name = s.spec.name.clone();
                let path = s.spec.argv.first().cloned().unwrap_or_default();
                Event::info("service.start").kv("name", &name).kv("path", &path).kv("pid", pid).kv("result", "ok").emit();
                self.watch(pid, &name);
                self.watch_output_as(out, &name, Kind::Service, crate::release::manifest::LogRate::default());
            }
            Err((step, e)) => {
                Event::error("service.start").kv("name", &s.spec.name).kv("step", step).kv("result", "error").kv("error", e).emit();
                let ended = s.start_failed(now, shutting_down);
                self.report_service(i, ended);
            }
        }
    }

    /// A reaped process: if it was a service, apply its policy. True if so.
    pub(super) fn service_exited(&mut self, pid: Pid, exit: Exit) -> bool {
        let Some(i) = self.services.iter().position(|s| s.pid == Some(pid)) else {
            return false;
        };
        let shutting_down = self.phase != super::Phase::Running;
        let Some(s) = self.services.get_mut(i) else {
            return false;
        };
        let ended = s.ended(exit, crate::common::log::now(), shutting_down);
        self.report_service(i, ended);
        self.shutdown_step();
        true
    }

    fn report_service(&mut self, i: usize, ended: Ended) {
        let Some(s) = self.services.get(i) else {
            return;
        };
        let name = &s.spec.name;
        match ended {
            Ended::Shutdown => Event::info("service.stopped").kv("name", name).kv("by", "shutdown").emit(),
            Ended::Held => Event::info("service.stopped").kv("name", name).kv("by", "operator").emit(),
            Ended::Again => Event::info("service.restart").kv("name", name).kv("by", "operator").kv("after_ms", 0).emit(),
            Ended::Policy(Decision::Restart { after_ms, attempt }) => {
                Event::info("service.restart").kv("name", name).kv("attempt", attempt).kv("after_ms", after_ms).emit()
            }
            Ended::Policy(Decision::Stop) => Event::info("service.stopped").kv("name", name).emit(),
            Ended::Policy(Decision::Failed { short_runs }) => {
                Event::error("service.failed").kv("name", name).kv("short_runs", short_runs).kv("restarts", s.restart.restarts).emit()
            }
        }
        self.arm_deadline();
    }

    /// SIGTERM to service `i`; SIGKILL after [`STOP_GRACE`].
    pub(super) fn stop_service(&mut self, i: usize, by: &str) {
        let now = crate::common::log::now();
        let Some(s) = self.services.get_mut(i) else {
            return;
        };
        let Some(pid) = s.pid else { return };
        if s.kill_at.is_some() {
            return;
        }
        s.kill_at = Some(now + STOP_GRACE);
        let r = kill(pid, Signal::SIGTERM);
        Event::info("service.stop")
            .kv("name", &s.spec.name)
            .kv("by", by)
            .kv("signal", "SIGTERM")
            .kv("grace_ms", (STOP_GRACE * 1e3) as u32)
            .result(&r.map_err(errno_text))
            .emit();
        self.arm_deadline();
    }

    /// Shutdown, once every container is down: stop every service.
    pub(super) fn stop_services(&mut self) {
        for i in 0..self.services.len() {
            self.stop_service(i, "shutdown");
        }
    }

    /// The earliest service deadline.
    pub(super) fn services_deadline(&self) -> Option<f64> {
        self.services.iter().filter_map(Service::deadline).reduce(f64::min)
    }

    pub(super) fn service_index(&self, name: &str) -> Option<usize> {
        self.services.iter().position(|s| s.spec.name == name)
    }

    /// `berthctl stop|start|restart` on service `i`.
    pub(super) fn service_command(&mut self, i: usize, cmd: &crate::supervise::control::Command) -> crate::supervise::control::Response {
        use crate::supervise::control::{error, Command, Response};
        let now = crate::common::log::now();
        let Some(s) = self.services.get_mut(i) else {
            return error("gone");
        };
        let name = s.spec.name.clone();
        match cmd {
            Command::Stop(_) => {
                s.hold();
                Event::info("control.stop").kv("name", &name).kv("kind", "service").emit();
                self.stop_service(i, "operator");
            }
            Command::Start(_) => {
                if s.pid.is_some() {
                    return error(&format!("{name} is already running"));
                }
                s.release(now);
                Event::info("control.start").kv("name", &name).kv("kind", "service").emit();
                self.tick();
            }
            Command::Restart(_) => {
                s.restart_now(now);
                Event::info("control.restart").kv("name", &name).kv("kind", "service").emit();
                if s.pid.is_some() {
                    self.stop_service(i, "operator");
                } else {
                    self.tick();
                }
            }
            _ => return error("not a service command"),
        }
        Response::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::manifest::{BackoffSpec, Restart};

    fn service(restart: Restart, backoff: Option<BackoffSpec>) -> Service {
        let spec = crate::release::board::Service {
            name: "net".try_into().unwrap(),
            argv: heapless::Vec::from_slice(&["/sbin/berth".try_into().unwrap()]).unwrap(),
            restart,
            backoff,
        };
        Service::new(spec)
    }

    #[test]
    fn a_crash_looping_service_backs_off_then_fails() {
        let b = BackoffSpec { initial_ms: Some(100), factor: Some(2), cap_ms: Some(300), stable_ms: Some(5_000), limit: Some(4) };
        let mut s = service(Restart::OnFailure, Some(b));
        let mut now = 10.0;
        let mut delays = Vec::new();
        loop {
            s.running(Pid::from_raw(42), now);
            now += 0.05;
            match s.ended(Exit::Code(1), now, false) {
                Ended::Policy(Decision::Restart { after_ms, .. }) => {
                    delays.push(after_ms);
                    assert_eq!(s.state, SlotState::Waiting);
                    assert_eq!(s.due, Some(now + f64::from(after_ms) / 1e3));
                    now = s.due.unwrap();
                }
                Ended::Policy(Decision::Failed { short_runs }) => {
                    assert_eq!(short_runs, 4);
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(delays, [100, 200, 300, 300]);
        assert_eq!(s.state, SlotState::Failed);
        assert_eq!(s.deadline(), None);
    }

    #[test]
    fn a_clean_exit_ends_an_on_failure_service() {
        let mut s = service(Restart::OnFailure, None);
        s.running(Pid::from_raw(7), 1.0);
        assert_eq!(s.ended(Exit::Code(0), 1.2, false), Ended::Policy(Decision::Stop));
        assert_eq!((s.state, s.pid, s.last_exit), (SlotState::Stopped, None, Some(Exit::Code(0))));
    }

    #[test]
    fn no_restart_during_shutdown_even_for_always() {
        let mut s = service(Restart::Always, None);
        s.running(Pid::from_raw(7), 1.0);
        assert_eq!(s.ended(Exit::Signal(15), 2.0, true), Ended::Shutdown);
        assert_eq!((s.state, s.due), (SlotState::Stopped, None));
        assert_eq!(s.start_failed(3.0, true), Ended::Shutdown);
        assert_eq!(s.deadline(), None);
    }

    #[test]
    fn operator_stop_start_and_restart() {
        let mut s = service(Restart::Always, None);
        s.running(Pid::from_raw(7), 1.0);
        s.hold();
        assert_eq!(s.ended(Exit::Signal(15), 2.0, false), Ended::Held);
        assert_eq!(s.deadline(), None);
        s.release(3.0);
        assert_eq!((s.state, s.due), (SlotState::Waiting, Some(3.0)));
        s.running(Pid::from_raw(8), 3.0);
        s.restart_now(4.0);
        assert_eq!(s.ended(Exit::Signal(15), 4.1, false), Ended::Again);
        assert_eq!(s.due, Some(4.1));
        assert_eq!(s.restart.restarts, 0);
    }

    #[test]
    fn a_failed_start_counts_as_a_failed_run() {
        let mut s = service(Restart::OnFailure, None);
        assert_eq!(s.start_failed(1.0, false), Ended::Policy(Decision::Restart { after_ms: 1_000, attempt: 1 }));
        assert_eq!(s.last_exit, Some(Exit::Code(127)));
    }
}
