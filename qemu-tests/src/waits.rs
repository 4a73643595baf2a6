//! Bounded waits: nothing a container does during its start holds berth's
//! loop. Booted with the `berth.hang=` test hook (the `hang` variant, a
//! `test-hooks` build of berth; see `qemu-tests/manifests/hang/`).

use crate::event::Event;
use crate::scenario::{case, Case};
use crate::scenarios::{expect_poweroff, field_is, limits, no_errors, spec, BootSpec, Launch};
use std::sync::Arc;

/// berth's start deadline (`START_TIMEOUT`), in ms.
const START_TIMEOUT_MS: u64 = 10_000;

pub fn cases(l: Arc<dyn Launch>) -> Vec<Case> {
    let arch = l.arch().to_string();
    vec![case(format!("{arch}/hang"), move || hang(l.as_ref()))]
}

fn named<'a>(events: &'a [Event], ev: &str, name: &str) -> Vec<&'a Event> {
    events.iter().filter(|e| e.name == ev && e.get("name") == Some(name)).collect()
}

fn ms(e: &Event, key: &str) -> Result<u64, String> {
    e.get(key).and_then(|v| v.parse().ok()).ok_or_else(|| format!("event {} lacks a number {key}", e.name))
}

/// `hung` stops at its first mount step: killed at the start deadline with
/// `container.exit reason=start-timeout step=mount`, never started, then
/// restarted by its policy. `steady` (after it in start order) starts and
/// is ready long before that deadline. `slowcheck`'s readiness command
/// stops at `setns`: each try is killed at its 2 s timeout naming that
/// step, and it is declared unhealthy at its 5 s readiness timeout. All the
/// while the loop runs: the watchdog (10 s) never resets the machine (one
/// boot), and the power-off is clean.
fn hang(l: &dyn Launch) -> Result<(), String> {
    let lim = limits(l.arch());
    let mut m = l.boot(&BootSpec { variant: "hang", ..spec("hang", "poweroff-after-30") })?;
    field_is(&m.expect_event("watchdog.open", lim.boot)?, "result", "ok")?;
    m.expect_event("boot.ready", lim.step)?;
    let ready = m.cursor();
    m.expect_event_where("container.exit", |e| e.get("name") == Some("hung"), lim.boot)?;
    m.set_cursor(ready);
    m.expect_event_where("container.unhealthy", |e| e.get("name") == Some("slowcheck"), lim.boot)?;
    m.set_cursor(ready);
    expect_poweroff(&mut m, "SIGTERM", &lim)?;
    let events = m.events();

    let exit = *named(&events, "container.exit", "hung").first().ok_or("no container.exit for hung")?;
    field_is(exit, "reason", "start-timeout")?;
    field_is(exit, "step", "mount")?;
    if !exit.get("at").is_some_and(|a| a.starts_with("mount step ")) {
        return Err(format!("container.exit at={:?}, want the mount step it hung in", exit.get("at")));
    }
    let after = ms(exit, "after_ms")?;
    if !(START_TIMEOUT_MS..START_TIMEOUT_MS + 2000).contains(&after) {
        return Err(format!("hung was killed {after} ms into its start, want its {START_TIMEOUT_MS} ms deadline"));
    }
    if named(&events, "container.start", "hung").iter().any(|e| e.get("result") == Some("ok")) {
        return Err("hung was reported started".into());
    }
    if !named(&events, "container.restart", "hung").iter().any(|e| e.t >= exit.t) {
        return Err("hung was not restarted after its start timed out".into());
    }
    if !named(&events, "cgroup.remove", "hung").iter().any(|e| e.t >= exit.t && e.get("result") == Some("ok")) {
        return Err("hung's cgroup was not removed after its start timed out".into());
    }

    let start = *named(&events, "container.start", "steady").first().ok_or("steady never started")?;
    field_is(start, "result", "ok")?;
    let ready = *named(&events, "container.ready", "steady").first().ok_or("steady was never ready")?;
    field_is(ready, "by", "notify")?;
    if ready.t >= exit.t || ready.t - start.t > 5.0 {
        return Err(format!("steady ready at {:.3} ({:.3} s after its start), want well before hung's deadline at {:.3}", ready.t, ready.t - start.t, exit.t));
    }

    let timeouts = named(&events, "container.check", "slowcheck");
    let timeouts: Vec<&&Event> = timeouts.iter().filter(|e| e.get("result") == Some("timeout")).collect();
    if timeouts.is_empty() || timeouts.iter().any(|e| e.get("step") != Some("setns")) {
        let steps: Vec<Option<&str>> = timeouts.iter().map(|e| e.get("step")).collect();
        return Err(format!("slowcheck's check timeouts named {steps:?}, want setns (at least one)"));
    }
    let bad = *named(&events, "container.unhealthy", "slowcheck").first().ok_or("slowcheck never unhealthy")?;
    field_is(bad, "reason", "ready-timeout")?;

    let boots = events.iter().filter(|e| e.name == "boot.start" && e.get("stage") == Some("initramfs")).count();
    if boots != 1 {
        return Err(format!("{boots} boots: the watchdog reset the machine"));
    }
    // hung's starts time out by design.
    no_errors(&m, &["container.exit:hung"])
}
