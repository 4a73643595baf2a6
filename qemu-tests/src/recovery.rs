//! The `recovery` scenario (x86_64; the `recovery` variant): a device
//! whose every release is corrupt is not a dead end.
//!
//! The variant's data partition holds release 1 of the update scenarios
//! with one byte of its signed release object changed after signing, so no
//! release verifies, and runs `berth receive` on a virtio port.
//!
//! 1. The boot rejects release 1 (`release.rejected`, the signature) and
//!    enters the recovery state: `release.recovery` with that reason, then
//!    `boot.ready` with `release=recovery`; no container starts.
//! 2. The loop runs: the agent's `recovery` check finds `berthctl release`
//!    answering phase `recovery`, `berthctl status --json` and the status
//!    file saying so, and both commands exiting 1 (degraded).
//! 3. Release 2's signed bundle is pushed: taken from the inbox, staged,
//!    switched to from nothing (every container of it started), on trial,
//!    committed after its window; `berthctl release` then shows release 2
//!    committed (the agent's `recovered` check).

use crate::event::Event;
use crate::machine::Machine;
use crate::scenario::{case, Case};
use crate::scenarios::{agent_pass, field_is, limits, no_errors, Launch, Limits};
use std::sync::Arc;

pub fn cases(l: Arc<dyn Launch>) -> Vec<Case> {
    let arch = l.arch().to_string();
    if arch != "x86_64" {
        return Vec::new();
    }
    vec![case(format!("{arch}/recovery"), move || recovery(l.as_ref()))]
}

/// The containers of release 2 of the update scenarios.
const RELEASE_2: [&str; 2] = ["meter", "sensor"];

fn recovery(l: &dyn Launch) -> Result<(), String> {
    let lim = limits(l.arch());
    let info = l.updates()?;
    let (mut m, sock) = crate::inboxfull::boot_with_push(l, "recovery", "recovery", "recovery")?;
    let events = m.events();
    let find = |name: &str| events.iter().find(|e| e.name == name).cloned().ok_or_else(|| format!("no {name} event at boot"));
    let rejected: Event = find("release.rejected")?;
    let reason = rejected.get("reason").unwrap_or("").to_string();
    if !reason.starts_with("release signature does not verify") {
        return Err(format!("release 1 was rejected for {reason:?}, want its signature"));
    }
    field_is(&find("release.recovery")?, "reason", &reason)?;
    field_is(&find("boot.ready")?, "release", "recovery")?;
    agent_pass(&mut m, "recovery", &lim)?;
    if let Some(e) = m.events().iter().find(|e| e.name == "container.start") {
        return Err(format!("a container started in the recovery state: {:?}", e.fields));
    }
    push_repair(l, &mut m, &sock, &info.v2_bundle, &lim)?;
    agent_pass(&mut m, "recovered", &Limits { step: lim.step * 3, ..limits(l.arch()) })?;
    let _ = std::fs::remove_file(&sock);
    // Refused, and so in recovery until the repair: by design.
    no_errors(&m, &["release.rejected", "release.recovery"])
}

/// Push release 2 and follow it from the inbox to its commit.
fn push_repair(l: &dyn Launch, m: &mut Machine, sock: &std::path::Path, bundle: &std::path::Path, lim: &Limits) -> Result<(), String> {
    let answer = l.push(sock, bundle, false)?;
    let file = answer.strip_prefix("ok ").ok_or_else(|| format!("release 2's push was answered {answer:?}"))?.to_string();
    let taken = m.expect_event("update.inbox", lim.step * 2)?;
    field_is(&taken, "bundle", &file)?;
    let staged = m.expect_event("update.staged", lim.step * 2)?;
    field_is(&staged, "version", "2")?;
    let switch = m.expect_event("update.switch", lim.step)?;
    field_is(&switch, "version", "2")?;
    field_is(&switch, "added", &RELEASE_2.join(","))?;
    let commit = m.expect_event("release.commit", lim.step * 3)?;
    field_is(&commit, "version", "2")?;
    // Both started (in either order: they start side by side).
    let events = m.events();
    for name in RELEASE_2 {
        let started = events.iter().any(|e| e.name == "container.start" && e.t >= switch.t && e.t <= commit.t && e.is("name", name) && e.is("result", "ok"));
        if !started {
            return Err(format!("{name} of release 2 did not start between the switch and the commit"));
        }
    }
    Ok(())
}
