//! What to do when a container exits: restart policy, exponential backoff and
//! the crash-loop limit, as a pure state machine (the loop only asks it).
//!
//! Pure: it must not do I/O; it sits beside the trial rules that use it, below the plan and the loop.
//!
//! - `never`: the container stays down.
//! - `on-failure`: restarted after a non-zero exit or a signal; a zero exit
//!   ends it.
//! - `always`: restarted after any exit.
//!
//! Each restart waits `initial`, then `initial * factor`, ... up to `cap`. A run
//! that lasted at least `stable` resets the delay and the count. After `limit`
//! consecutive short runs the container is marked failed (the update issue
//! rolls back on that) and not restarted again.

use crate::release::manifest::Restart;

/// Backoff parameters. Defaults: 1 s, x2, capped at 60 s, stable after 30 s,
/// failed after 5 consecutive short runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial_ms: u32,
    pub factor: u32,
    pub cap_ms: u32,
    pub stable_ms: u32,
    pub limit: u32,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff { initial_ms: 1_000, factor: 2, cap_ms: 60_000, stable_ms: 30_000, limit: 5 }
    }
}

impl Backoff {
    /// The defaults with a manifest's values put in.
    pub fn from_spec(spec: Option<&crate::release::manifest::BackoffSpec>) -> Backoff {
        let d = Backoff::default();
        let Some(s) = spec else { return d };
        Backoff {
            initial_ms: s.initial_ms.unwrap_or(d.initial_ms),
            factor: s.factor.unwrap_or(d.factor),
            cap_ms: s.cap_ms.unwrap_or(d.cap_ms),
            stable_ms: s.stable_ms.unwrap_or(d.stable_ms),
            limit: s.limit.unwrap_or(d.limit),
        }
    }
}

/// How a container's init ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
    /// Stopped by berth for a failed readiness or health check: a failure
    /// whatever the exit status was.
    Unhealthy,
}

impl Exit {
    pub fn failed(self) -> bool {
        self != Exit::Code(0)
    }

    /// Decode a raw `waitpid` status word: an exit code or the number of the
    /// signal that ended the process, any signal (real-time ones included).
    /// `None` for a stop or continue report (berth asks for neither).
    pub fn from_wait_status(status: i32) -> Option<Exit> {
        if libc::WIFEXITED(status) {
            Some(Exit::Code(libc::WEXITSTATUS(status)))
        } else if libc::WIFSIGNALED(status) {
            Some(Exit::Signal(libc::WTERMSIG(status)))
        } else {
            None
        }
    }
}

/// The verdict for one exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Start it again after this many milliseconds.
    Restart { after_ms: u32, attempt: u32 },
    /// The policy says it stays down.
    Stop,
    /// Crash loop: too many short runs in a row.
    Failed { short_runs: u32 },
}

/// Per-container restart bookkeeping.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct State {
    /// Consecutive runs shorter than `stable`.
    pub short_runs: u32,
    /// Restarts so far (reported, never reset).
    pub restarts: u32,
}

/// Decide after an exit of a run that lasted `ran_ms`.
pub fn on_exit(policy: Restart, b: &Backoff, st: &mut State, exit: Exit, ran_ms: u64) -> Decision {
    let wanted = match policy {
        Restart::Never => false,
        Restart::OnFailure => exit.failed(),
        Restart::Always => true,
    };
    if !wanted {
        return Decision::Stop;
    }
    if ran_ms >= u64::from(b.stable_ms) {
        st.short_runs = 0;
    }
    st.short_runs = st.short_runs.saturating_add(1);
    if st.short_runs > b.limit {
        return Decision::Failed { short_runs: st.short_runs - 1 };
    }
    st.restarts = st.restarts.saturating_add(1);
    let mut delay = u64::from(b.initial_ms);
    for _ in 1..st.short_runs {
        delay = delay.saturating_mul(u64::from(b.factor.max(1)));
        if delay >= u64::from(b.cap_ms) {
            break;
        }
    }
    let after_ms = delay.min(u64::from(b.cap_ms)) as u32;
    Decision::Restart { after_ms, attempt: st.restarts }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Backoff = Backoff { initial_ms: 100, factor: 2, cap_ms: 500, stable_ms: 1_000, limit: 4 };

    #[test]
    fn wait_status_words_decode_every_signal() {
        // Exit codes live in bits 8..16, a terminating signal in bits 0..7
        // (0x80 marks a core dump), 0x7f in the low byte is a stop.
        assert_eq!(Exit::from_wait_status(0), Some(Exit::Code(0)));
        assert_eq!(Exit::from_wait_status(3 << 8), Some(Exit::Code(3)));
        assert_eq!(Exit::from_wait_status(255 << 8), Some(Exit::Code(255)));
        assert_eq!(Exit::from_wait_status(libc::SIGKILL), Some(Exit::Signal(9)));
        assert_eq!(Exit::from_wait_status(libc::SIGSEGV | 0x80), Some(Exit::Signal(11)));
        // Real-time signals (SIGRTMIN+3 is 37 with glibc and musl; the
        // kernel's range is 32..=64): nix has no name for them.
        for sig in 32..=64 {
            assert_eq!(Exit::from_wait_status(sig), Some(Exit::Signal(sig)), "signal {sig}");
        }
        assert_eq!(Exit::from_wait_status((libc::SIGSTOP << 8) | 0x7f), None);
        assert_eq!(Exit::from_wait_status(0xffff), None);
    }

    #[test]
    fn never_and_on_failure_after_success_stay_down() {
        let mut st = State::default();
        assert_eq!(on_exit(Restart::Never, &B, &mut st, Exit::Code(1), 10), Decision::Stop);
        assert_eq!(on_exit(Restart::OnFailure, &B, &mut st, Exit::Code(0), 10), Decision::Stop);
        assert_eq!(st, State::default());
    }

    #[test]
    fn delays_grow_to_the_cap_then_the_loop_fails() {
        let mut st = State::default();
        let mut delays = Vec::new();
        loop {
            match on_exit(Restart::OnFailure, &B, &mut st, Exit::Signal(9), 10) {
                Decision::Restart { after_ms, .. } => delays.push(after_ms),
                Decision::Failed { short_runs } => {
                    assert_eq!(short_runs, 4);
                    break;
                }
                Decision::Stop => panic!("stopped"),
            }
        }
        assert_eq!(delays, [100, 200, 400, 500]);
        assert_eq!(st.restarts, 4);
    }

    #[test]
    fn a_stable_run_resets_the_backoff() {
        let mut st = State::default();
        for _ in 0..3 {
            on_exit(Restart::Always, &B, &mut st, Exit::Code(1), 10);
        }
        assert_eq!(on_exit(Restart::Always, &B, &mut st, Exit::Code(1), 5_000), Decision::Restart { after_ms: 100, attempt: 4 });
        assert_eq!(st.short_runs, 1);
    }

    #[test]
    fn always_restarts_after_a_zero_exit() {
        let mut st = State::default();
        assert_eq!(on_exit(Restart::Always, &B, &mut st, Exit::Code(0), 10), Decision::Restart { after_ms: 100, attempt: 1 });
    }

    #[test]
    fn the_defaults_are_sane() {
        let d = Backoff::default();
        assert!(d.initial_ms <= d.cap_ms && d.stable_ms > d.initial_ms && d.limit >= 1);
    }
}
