//! One run of a container, as a pure state machine over time: readiness,
//! health and stopping. The loop feeds it what happened (started, a notify
//! message, a check's exit code, the clock) and performs what it answers
//! (kill, start a check, mark unhealthy); times are seconds since boot.
//!
//! It must not make a system call or read the clock: it is pure, and the loop
//! acts on its answers.
//!
//! - Readiness: at once, on `READY=1`, or when the readiness command first
//!   exits 0 (tried every [`READY_POLL`] s). Not ready within the manifest's
//!   timeout: unhealthy (`ready-timeout`).
//! - Health, from readiness on: `WATCHDOG=1` at least every `watchdog_ms`
//!   (else unhealthy, `watchdog`), or the health command every `interval_ms`,
//!   killed past `timeout_ms`; `retries` failures in a row: unhealthy
//!   (`check`).
//! - Stop: the stop signal, then SIGKILL of the cgroup after the grace.
//!
//! An unhealthy container is stopped and its exit counts as a failure for
//! its restart policy.

use crate::supervise::notify::Message;
use nix::unistd::Pid;

/// Seconds between tries of a readiness command.
pub const READY_POLL: f64 = 0.5;

/// How readiness is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadyBy {
    Start,
    Notify,
    Command,
}

/// A run's parameters (from the manifest, in seconds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    pub ready: ReadyBy,
    pub ready_timeout: f64,
    /// `Some(seconds)`: keep-alive watchdog; `None`: see `check_interval`.
    pub watchdog: Option<f64>,
    /// Health command period (`None`: no health command).
    pub check_interval: Option<f64>,
    pub check_timeout: f64,
    pub retries: u32,
    pub grace: f64,
}

/// Why a container is declared unhealthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    ReadyTimeout,
    Watchdog,
    Check,
}

impl Reason {
    pub fn name(self) -> &'static str {
        match self {
            Reason::ReadyTimeout => "ready-timeout",
            Reason::Watchdog => "watchdog",
            Reason::Check => "check",
        }
    }
}

/// A check process in flight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CheckRun {
    pub pid: Pid,
    pub kill_at: f64,
    /// A readiness try (else a health check).
    pub for_ready: bool,
}

/// What the clock asks of the loop.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Due {
    /// The stop grace is over: SIGKILL the cgroup.
    pub kill: bool,
    pub unhealthy: Option<Reason>,
    /// A check ran past its timeout: kill it.
    pub kill_check: Option<Pid>,
    /// Start a check now (readiness when not ready yet).
    pub run_check: bool,
}

/// What a check's exit meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckResult {
    /// The readiness command succeeded: the container is ready now.
    Ready,
    Healthy,
    /// Failed, not yet `retries` in a row (or a readiness try: try again).
    Failed {
        fails: u32,
    },
    Unhealthy {
        fails: u32,
    },
    /// Not this run's check.
    Stale,
}

/// The state of one run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Life {
    pub ready: bool,
    ready_by: Option<f64>,
    alive_by: Option<f64>,
    check_due: Option<f64>,
    pub check: Option<CheckRun>,
    fails: u32,
    /// Declared unhealthy: its exit is a failure whatever its status.
    pub unhealthy: bool,
    /// The stop signal was sent.
    pub stopping: bool,
    kill_at: Option<f64>,
}

impl Life {
    /// A run began at `now`. True when it is ready at once.
    pub fn start(p: &Params, now: f64) -> (Life, bool) {
        let mut l = Life::default();
        match p.ready {
            ReadyBy::Start => l.become_ready(p, now),
            ReadyBy::Notify => l.ready_by = Some(now + p.ready_timeout),
            ReadyBy::Command => {
                l.ready_by = Some(now + p.ready_timeout);
                l.check_due = Some(now);
            }
        }
        let ready = l.ready;
        (l, ready)
    }

    fn become_ready(&mut self, p: &Params, now: f64) {
        self.ready = true;
        self.ready_by = None;
        self.fails = 0;
        self.alive_by = p.watchdog.map(|w| now + w);
        self.check_due = p.check_interval.map(|i| now + i);
    }

    /// A notify message. True when it made the container ready.
    pub fn notified(&mut self, p: &Params, m: &Message, now: f64) -> bool {
        if self.stopping || self.unhealthy {
            return false;
        }
        let mut became = false;
        if m.ready && !self.ready && p.ready == ReadyBy::Notify {
            self.become_ready(p, now);
            became = true;
        }
        if m.watchdog && self.ready {
            if let Some(w) = p.watchdog {
                self.alive_by = Some(now + w);
            }
        }
        became
    }

    /// A check process was started.
    pub fn check_started(&mut self, pid: Pid, p: &Params, now: f64) {
        let timeout = if self.ready { p.check_timeout } else { p.ready_timeout.min(p.check_timeout) };
        self.check = Some(CheckRun { pid, kill_at: now + timeout, for_ready: !self.ready });
        self.check_due = None;
    }

    /// A check could not be started: counts as a failed check.
    pub fn check_failed_to_start(&mut self, p: &Params, now: f64) -> CheckResult {
        self.settle(false, p, now)
    }

    /// Check process `pid` ended with `code`.
    pub fn check_ended(&mut self, pid: Pid, code: i32, p: &Params, now: f64) -> CheckResult {
        match self.check {
            Some(c) if c.pid == pid => {
                self.check = None;
                self.settle(code == 0, p, now)
            }
            _ => CheckResult::Stale,
        }
    }

    fn settle(&mut self, ok: bool, p: &Params, now: f64) -> CheckResult {
        if self.stopping || self.unhealthy {
            return CheckResult::Stale;
        }
        if !self.ready {
            if ok {
                self.become_ready(p, now);
                return CheckResult::Ready;
            }
            self.check_due = Some(now + READY_POLL);
            return CheckResult::Failed { fails: 0 };
        }
        self.check_due = p.check_interval.map(|i| now + i);
        if ok {
            self.fails = 0;
            return CheckResult::Healthy;
        }
        self.fails = self.fails.saturating_add(1);
        if self.fails >= p.retries {
            self.unhealthy = true;
            self.check_due = None;
            return CheckResult::Unhealthy { fails: self.fails };
        }
        CheckResult::Failed { fails: self.fails }
    }

    /// Ask the run to stop: the loop sends the stop signal.
    pub fn stop(&mut self, p: &Params, now: f64) {
        if !self.stopping {
            self.stopping = true;
            self.kill_at = Some(now + p.grace);
            self.check_due = None;
            self.alive_by = None;
            self.ready_by = None;
        }
    }

    /// What the clock says at `now`; each deadline fires once.
    pub fn due(&mut self, now: f64) -> Due {
        let mut d = Due::default();
        if self.kill_at.is_some_and(|t| t <= now) {
            self.kill_at = None;
            d.kill = true;
        }
        if let Some(c) = self.check {
            if c.kill_at <= now {
                d.kill_check = Some(c.pid);
            }
        }
        if self.stopping || self.unhealthy {
            return d;
        }
        if self.ready_by.is_some_and(|t| t <= now) {
            d.unhealthy = Some(Reason::ReadyTimeout);
        } else if self.alive_by.is_some_and(|t| t <= now) {
            d.unhealthy = Some(Reason::Watchdog);
        }
        if d.unhealthy.is_some() {
            self.unhealthy = true;
            self.ready_by = None;
            self.alive_by = None;
            self.check_due = None;
            return d;
        }
        if self.check.is_none() && self.check_due.is_some_and(|t| t <= now) {
            self.check_due = None;
            d.run_check = true;
        }
        d
    }

    /// The earliest time [`Life::due`] has something to say.
    pub fn deadline(&self) -> Option<f64> {
        let mut times = [self.kill_at, self.check.map(|c| c.kill_at), None, None, None];
        if !self.stopping && !self.unhealthy {
            times[2] = self.ready_by;
            times[3] = self.alive_by;
            times[4] = if self.check.is_none() { self.check_due } else { None };
        }
        times.into_iter().flatten().reduce(f64::min)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(ready: ReadyBy) -> Params {
        Params { ready, ready_timeout: 5.0, watchdog: None, check_interval: None, check_timeout: 1.0, retries: 3, grace: 2.0 }
    }

    fn msg(ready: bool, watchdog: bool) -> Message {
        Message { ready, watchdog, ..Message::default() }
    }

    #[test]
    fn started_is_ready_at_once_and_has_no_deadline() {
        let (l, ready) = Life::start(&params(ReadyBy::Start), 10.0);
        assert!(ready && l.ready);
        assert_eq!(l.deadline(), None);
    }

    #[test]
    fn notify_readiness_and_its_timeout() {
        let p = params(ReadyBy::Notify);
        let (mut l, ready) = Life::start(&p, 10.0);
        assert!(!ready);
        assert_eq!(l.deadline(), Some(15.0));
        assert!(!l.notified(&p, &msg(false, true), 11.0), "a keep-alive is not readiness");
        assert!(l.notified(&p, &msg(true, false), 12.0));
        assert!(!l.notified(&p, &msg(true, false), 12.5), "ready once");
        assert_eq!(l.due(20.0), Due::default());

        let (mut late, _) = Life::start(&p, 10.0);
        assert_eq!(late.due(14.9), Due::default());
        assert_eq!(late.due(15.0).unhealthy, Some(Reason::ReadyTimeout));
        assert!(late.unhealthy);
        assert!(!late.notified(&p, &msg(true, false), 15.1), "too late");
        assert_eq!(late.due(16.0).unhealthy, None, "reported once");
    }

    #[test]
    fn ready_from_notify_is_ignored_for_other_kinds() {
        let p = params(ReadyBy::Command);
        let (mut l, _) = Life::start(&p, 0.0);
        assert!(!l.notified(&p, &msg(true, false), 1.0));
        assert!(!l.ready);
    }

    #[test]
    fn watchdog_keepalives_hold_off_the_deadline() {
        let p = Params { watchdog: Some(1.0), ..params(ReadyBy::Notify) };
        let (mut l, _) = Life::start(&p, 0.0);
        assert!(l.notified(&p, &msg(true, false), 0.5));
        assert_eq!(l.deadline(), Some(1.5));
        assert!(!l.notified(&p, &msg(false, true), 1.2));
        assert_eq!(l.due(2.1), Due::default());
        assert_eq!(l.due(2.2).unhealthy, Some(Reason::Watchdog));
        assert_eq!(l.deadline(), None);
    }

    #[test]
    fn readiness_command_retries_until_it_succeeds() {
        let p = params(ReadyBy::Command);
        let (mut l, _) = Life::start(&p, 0.0);
        let d = l.due(0.0);
        assert!(d.run_check);
        l.check_started(Pid::from_raw(50), &p, 0.0);
        assert!(!l.due(0.1).run_check, "one check at a time");
        assert_eq!(l.check_ended(Pid::from_raw(50), 1, &p, 0.2), CheckResult::Failed { fails: 0 });
        assert_eq!(l.deadline(), Some(0.2 + READY_POLL));
        assert!(l.due(0.7).run_check);
        l.check_started(Pid::from_raw(51), &p, 0.7);
        assert_eq!(l.check_ended(Pid::from_raw(99), 0, &p, 0.8), CheckResult::Stale);
        assert_eq!(l.check_ended(Pid::from_raw(51), 0, &p, 0.8), CheckResult::Ready);
        assert!(l.ready);
    }

    #[test]
    fn health_command_failures_in_a_row_make_it_unhealthy() {
        let p = Params { check_interval: Some(10.0), ..params(ReadyBy::Start) };
        let (mut l, _) = Life::start(&p, 0.0);
        let mut now = 0.0;
        let mut results = Vec::new();
        for (i, code) in [1, 0, 1, 1, 1].into_iter().enumerate() {
            now += 10.0;
            assert!(l.due(now).run_check, "check {i}");
            l.check_started(Pid::from_raw(100 + i as i32), &p, now);
            results.push(l.check_ended(Pid::from_raw(100 + i as i32), code, &p, now));
        }
        assert_eq!(
            results,
            [
                CheckResult::Failed { fails: 1 },
                CheckResult::Healthy,
                CheckResult::Failed { fails: 1 },
                CheckResult::Failed { fails: 2 },
                CheckResult::Unhealthy { fails: 3 }
            ]
        );
        assert!(l.unhealthy);
        assert_eq!(l.deadline(), None);
    }

    #[test]
    fn a_hung_check_is_killed_at_its_timeout() {
        let p = Params { check_interval: Some(10.0), ..params(ReadyBy::Start) };
        let (mut l, _) = Life::start(&p, 0.0);
        assert!(l.due(10.0).run_check);
        l.check_started(Pid::from_raw(7), &p, 10.0);
        assert_eq!(l.deadline(), Some(11.0));
        assert_eq!(l.due(11.0).kill_check, Some(Pid::from_raw(7)));
    }

    #[test]
    fn stopping_arms_the_kill_and_silences_health() {
        let p = Params { watchdog: Some(1.0), ..params(ReadyBy::Start) };
        let (mut l, _) = Life::start(&p, 0.0);
        l.stop(&p, 0.5);
        l.stop(&p, 1.0);
        assert_eq!(l.deadline(), Some(2.5), "a second stop does not extend the grace");
        let d = l.due(3.0);
        assert!(d.kill);
        assert_eq!(d.unhealthy, None);
        assert_eq!(l.due(4.0), Due::default());
    }
}
