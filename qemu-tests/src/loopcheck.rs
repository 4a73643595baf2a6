//! Scenarios about PID 1's loop itself: it sleeps while nothing is due (a
//! container waiting on a dependency that never becomes ready arms no
//! timer), and it reaps a child ended by any signal, real-time ones too.

use crate::scenario::{case, Case};
use crate::scenarios::{agent_pass, expect_boot, expect_poweroff, field_is, limits, spec, BootSpec, Launch};
use std::sync::Arc;
use std::time::Duration;

/// The agent's CPU window (30 s) plus its wait for the containers to settle.
const IDLE_CHECK: Duration = Duration::from_secs(120);

/// The loop scenarios of one architecture (the 30 s idle measurement is not
/// repeated on armv7, the slowest board; the reap check runs with the
/// `services` scenario everywhere).
pub fn cases(l: Arc<dyn Launch>) -> Vec<Case> {
    let arch = l.arch().to_string();
    if arch == "armv7" {
        return Vec::new();
    }
    vec![case(format!("{arch}/waiting"), move || waiting(l.as_ref()))]
}

/// `blocked` waits for `never`, which runs but never says READY=1: the
/// wait is said once, `blocked` never starts, and PID 1 uses under 1 % of
/// a CPU over 30 s (the agent measures /proc/1/stat).
fn waiting(l: &dyn Launch) -> Result<(), String> {
    let lim = limits(l.arch());
    let mut m = l.boot(&BootSpec { variant: "waiting", ..spec("waiting", "idle-cpu") })?;
    expect_boot(&mut m, &lim)?;
    let w = m.expect_event_where("container.waiting", |e| e.get("name") == Some("blocked"), lim.step)?;
    field_is(&w, "for", "never")?;
    agent_pass(&mut m, "pid1-idle", &crate::scenarios::Limits { step: IDLE_CHECK, ..limits(l.arch()) })?;
    expect_poweroff(&mut m, "SIGTERM", &lim)?;
    let events = m.events();
    let said = events.iter().filter(|e| e.name == "container.waiting" && e.get("name") == Some("blocked")).count();
    if said != 1 {
        return Err(format!("container.waiting for blocked said {said} times, want once"));
    }
    if events.iter().any(|e| e.name == "container.start" && e.get("name") == Some("blocked")) {
        return Err("blocked started although never was never ready".into());
    }
    if events.iter().any(|e| e.name == "container.ready" && e.get("name") == Some("never")) {
        return Err("never became ready: the scenario tests nothing".into());
    }
    Ok(())
}
