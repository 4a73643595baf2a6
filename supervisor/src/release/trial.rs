//! How an update's trial is judged: the pure rules (the loop applies them
//! in `supervise::trial`).
//!
//! Pure: it must not do I/O.
//!
//! A trial ends in one of four ways, whichever comes first:
//!
//! - **Commit**: every container that [counts](Standing) has been running
//!   and ready, without a break, for the release's `commit_window_s`
//!   (a one-shot task counts once it has exited 0, see below).
//! - **Rollback by a container** ([`judge_exit`]): an exit its restart
//!   policy does not restart ends the trial at once: a failure (non-zero
//!   exit, signal, failed health or readiness) is `container-failed`, an
//!   exit 0 of a container not declared `oneshot` is `container-exited`
//!   (a service that ends is not a working release); a crash loop is
//!   `crash-loop`. An exit the policy restarts (`always`, or `on-failure`
//!   after a failure) counts against the release differently: the commit
//!   window starts over, and the runs count towards the crash-loop limit.
//! - **Rollback at the deadline** ([`deadline`]): the release's
//!   `trial_deadline_s` after the trial began, without a commit, it rolls
//!   back with `trial-timeout` (a slow crash loop, a container never ready,
//!   a one-shot task that never ends).
//! - **An operator** decides: `berthctl commit` or `berthctl rollback`
//!   (`requested`).
//!
//! Two kinds of containers are not waited for ([`Standing`]): one an
//! operator stopped (`berthctl stop`) before or during the trial, until it
//! is started again; and one the update kept unchanged that had already
//! failed or ended before the switch (the new release did not cause it; it
//! stays as it was, for the whole trial). Neither counts against the
//! release while down; once running again, its exits are judged like any
//! other's.

use crate::release::record::Cause;
use crate::release::restart::{Decision, Exit};

/// What one container's exit during a trial means for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Its restart policy runs it again: the commit window starts over.
    Restarts,
    /// A one-shot task finished (exit 0): it counts as done.
    Done,
    /// The trial fails at once.
    Fails(Cause),
}

/// Judge an exit during a trial, given what the restart policy decided
/// for it and whether the manifest declares a one-shot task.
pub fn judge_exit(decision: &Decision, exit: Exit, oneshot: bool) -> Verdict {
    match decision {
        Decision::Restart { .. } => Verdict::Restarts,
        Decision::Failed { .. } => Verdict::Fails(Cause::CrashLoop),
        Decision::Stop => match exit {
            Exit::Code(0) if oneshot => Verdict::Done,
            Exit::Code(0) => Verdict::Fails(Cause::ContainerExited),
            Exit::Code(_) | Exit::Signal(_) | Exit::Unhealthy => Verdict::Fails(Cause::ContainerFailed),
        },
    }
}

/// Where a container stands for the commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Running and ready (and not being stopped).
    Up,
    /// Not (yet) running and ready: the commit waits.
    Down,
    /// A one-shot task that exited 0.
    Done,
    /// Not waited for: stopped by an operator, or already failed or ended
    /// before the update and kept unchanged by it.
    Excused,
}

/// What the loop knows of one container, for [`standing`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Seen {
    /// Running and ready, not stopping.
    pub up: bool,
    /// Held stopped by an operator.
    pub held: bool,
    /// Failed or ended before the update, kept unchanged by it.
    pub ended_before: bool,
    /// Declared `oneshot` and ended with exit 0 (not running now).
    pub oneshot_done: bool,
}

/// The standing of one container.
pub fn standing(s: Seen) -> Standing {
    if s.up {
        Standing::Up
    } else if s.oneshot_done {
        Standing::Done
    } else if s.held || s.ended_before {
        Standing::Excused
    } else {
        Standing::Down
    }
}

/// Whether the trial may count towards its commit: no container is down.
pub fn all_good(standings: impl IntoIterator<Item = Standing>) -> bool {
    standings.into_iter().all(|s| s != Standing::Down)
}

/// A trial's course from the loop's point of view.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step {
    /// Commit now.
    Commit,
    /// Roll back now: the deadline passed.
    TimedOut,
    /// Nothing yet; look again at this time (the window's end or the
    /// deadline, whichever is sooner).
    Wait { until: f64 },
}

/// The deadline of a trial that began at `began` (monotonic seconds).
pub fn deadline(began: f64, trial_deadline_s: u32) -> f64 {
    began + f64::from(trial_deadline_s)
}

/// One look at a trial at `now`: `healthy_since` is when every counting
/// container was last seen all good without a break (`None`: not now).
/// The commit wins when both are due at once.
pub fn step(now: f64, healthy_since: Option<f64>, window_s: f64, deadline: f64) -> Step {
    if let Some(since) = healthy_since {
        if now - since >= window_s {
            return Step::Commit;
        }
    }
    if now >= deadline {
        return Step::TimedOut;
    }
    let until = healthy_since.map_or(deadline, |since| (since + window_s).min(deadline));
    Step::Wait { until }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESTART: Decision = Decision::Restart { after_ms: 100, attempt: 1 };

    #[test]
    fn exits_the_policy_does_not_restart_end_the_trial() {
        let failed = Decision::Failed { short_runs: 5 };
        // restart = "never" exiting 1: the stranded trial.
        assert_eq!(judge_exit(&Decision::Stop, Exit::Code(1), false), Verdict::Fails(Cause::ContainerFailed));
        assert_eq!(judge_exit(&Decision::Stop, Exit::Code(1), true), Verdict::Fails(Cause::ContainerFailed));
        assert_eq!(judge_exit(&Decision::Stop, Exit::Signal(9), true), Verdict::Fails(Cause::ContainerFailed));
        assert_eq!(judge_exit(&Decision::Stop, Exit::Unhealthy, false), Verdict::Fails(Cause::ContainerFailed));
        // Exit 0: done for a one-shot task, against the release otherwise.
        assert_eq!(judge_exit(&Decision::Stop, Exit::Code(0), true), Verdict::Done);
        assert_eq!(judge_exit(&Decision::Stop, Exit::Code(0), false), Verdict::Fails(Cause::ContainerExited));
        // Restarted: the window starts over; the crash-loop limit ends it.
        assert_eq!(judge_exit(&RESTART, Exit::Code(1), false), Verdict::Restarts);
        assert_eq!(judge_exit(&RESTART, Exit::Code(0), false), Verdict::Restarts);
        assert_eq!(judge_exit(&failed, Exit::Code(1), true), Verdict::Fails(Cause::CrashLoop));
    }

    #[test]
    fn the_policies_and_judgement_agree_end_to_end() {
        use crate::release::manifest::Restart;
        use crate::release::restart::{on_exit, Backoff, State};
        let b = Backoff::default();
        let judge = |policy, exit, oneshot| {
            let mut st = State::default();
            judge_exit(&on_exit(policy, &b, &mut st, exit, 50_000), exit, oneshot)
        };
        assert_eq!(judge(Restart::Never, Exit::Code(1), false), Verdict::Fails(Cause::ContainerFailed));
        assert_eq!(judge(Restart::Never, Exit::Code(0), true), Verdict::Done);
        assert_eq!(judge(Restart::Never, Exit::Code(0), false), Verdict::Fails(Cause::ContainerExited));
        assert_eq!(judge(Restart::OnFailure, Exit::Code(0), true), Verdict::Done);
        assert_eq!(judge(Restart::OnFailure, Exit::Code(0), false), Verdict::Fails(Cause::ContainerExited));
        assert_eq!(judge(Restart::OnFailure, Exit::Code(3), false), Verdict::Restarts);
        assert_eq!(judge(Restart::Always, Exit::Code(0), false), Verdict::Restarts);
    }

    #[test]
    fn standing_excuses_operator_stops_and_earlier_failures_only() {
        let s = |up, held, ended_before, oneshot_done| standing(Seen { up, held, ended_before, oneshot_done });
        assert_eq!(s(true, false, false, false), Standing::Up);
        assert_eq!(s(false, false, false, false), Standing::Down);
        assert_eq!(s(false, false, false, true), Standing::Done);
        assert_eq!(s(false, true, false, false), Standing::Excused);
        assert_eq!(s(false, false, true, false), Standing::Excused);
        // Running again (started by the operator): it counts as up.
        assert_eq!(s(true, false, true, false), Standing::Up);
        assert!(all_good([Standing::Up, Standing::Done, Standing::Excused]));
        assert!(!all_good([Standing::Up, Standing::Down]));
        assert!(all_good([]));
    }

    #[test]
    fn the_deadline_bounds_every_trial_and_the_commit_wins_a_tie() {
        let d = deadline(100.0, 30);
        assert_eq!(d, 130.0);
        // Never healthy: wait for the deadline, then time out.
        assert_eq!(step(100.0, None, 5.0, d), Step::Wait { until: 130.0 });
        assert_eq!(step(129.9, None, 5.0, d), Step::Wait { until: 130.0 });
        assert_eq!(step(130.0, None, 5.0, d), Step::TimedOut);
        // Healthy since 110: the window ends at 115.
        assert_eq!(step(112.0, Some(110.0), 5.0, d), Step::Wait { until: 115.0 });
        assert_eq!(step(115.0, Some(110.0), 5.0, d), Step::Commit);
        // A window that would end past the deadline: the deadline is next.
        assert_eq!(step(128.0, Some(127.0), 5.0, d), Step::Wait { until: 130.0 });
        assert_eq!(step(130.0, Some(127.0), 5.0, d), Step::TimedOut);
        assert_eq!(step(130.0, Some(125.0), 5.0, d), Step::Commit);
    }
}
