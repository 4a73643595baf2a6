//! The fleet update scenarios' judgement of berth's side (the `agent`
//! variant; the cases themselves, which start gooseBit on the host and
//! boot the guest, are xtask's `fleet` module, since they need its server
//! launcher and bundles; this module must not start either).
//!
//! The guest runs `berth-agent` in a container with an update drop. What
//! berth must log, computed before the run from the offered bundle
//! ([`expected`]), in this order:
//!
//! - `update.drop name=berth-agent bundle=B inbox=berth-agent.B result=ok`:
//!   berth moved the agent's finished bundle into its inbox;
//! - `update.inbox bundle=/data/berth/inbox/berth-agent.B`: it takes it;
//! - then, for release 2: `update.staged version=2`, `update.switch
//!   version=2 changed=sensor`, `release.trial version=2`, `release.commit
//!   version=2`, `update.done`;
//! - or, for a bundle berth must refuse: `update.refused` for that inbox
//!   file, `kind=bundle`, with the refusal text;
//! - or, for release 3 whose `meter` crash-loops: `update.staged
//!   version=3`, `update.switch version=3 changed=meter`, `release.trial
//!   version=3`, `container.failed name=meter`, `release.rollback
//!   cause=crash-loop from=3 to=1 container=meter`, `update.switch
//!   version=1 changed=meter`.

use crate::machine::Machine;
use crate::scenarios::{expect_boot, field_is, limits, no_errors};
use std::time::Duration;

/// The container that runs the agent, and whose drop berth empties.
pub const AGENT: &str = "berth-agent";
/// berth's inbox on the device.
const INBOX: &str = "/data/berth/inbox";

/// What the offered bundle must lead to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Staged, tried and committed as this release version, which changes
    /// these containers.
    Committed { version: u64, changed: String },
    /// Refused by staging with this text.
    Refused { reason: String },
    /// Staged and tried as `version`, which changes `changed`; that
    /// container crash-loops and berth rolls back to release `to`.
    RolledBack { version: u64, changed: String, to: u64 },
}

/// One event berth must log: its name and fields that must have these values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub event: &'static str,
    pub fields: Vec<(&'static str, String)>,
}

fn step(event: &'static str, fields: &[(&'static str, &str)]) -> Step {
    Step { event, fields: fields.iter().map(|(k, v)| (*k, v.to_string())).collect() }
}

/// berth's events, in order, for the agent's drop of bundle file `bundle`.
pub fn expected(bundle: &str, outcome: &Outcome) -> Vec<Step> {
    let inbox = format!("{AGENT}.{bundle}");
    let path = format!("{INBOX}/{inbox}");
    let mut steps =
        vec![step("update.drop", &[("name", AGENT), ("bundle", bundle), ("inbox", &inbox), ("result", "ok")]), step("update.inbox", &[("bundle", &path)])];
    match outcome {
        Outcome::Committed { version, changed } => {
            let v = version.to_string();
            steps.extend([
                step("update.staged", &[("version", &v)]),
                step("update.switch", &[("version", &v), ("changed", changed)]),
                step("release.trial", &[("version", &v)]),
                step("release.commit", &[("version", &v)]),
                step("update.done", &[]),
            ]);
        }
        Outcome::Refused { reason } => steps.push(step("update.refused", &[("bundle", &path), ("kind", "bundle"), ("reason", reason)])),
        Outcome::RolledBack { version, changed, to } => {
            let (v, to) = (version.to_string(), to.to_string());
            steps.extend([
                step("update.staged", &[("version", &v)]),
                step("update.switch", &[("version", &v), ("changed", changed)]),
                step("release.trial", &[("version", &v)]),
                step("container.failed", &[("name", changed)]),
                step("release.rollback", &[("cause", "crash-loop"), ("from", &v), ("to", &to), ("container", changed)]),
                step("update.switch", &[("version", &to), ("changed", changed)]),
            ]);
        }
    }
    steps
}

/// The boot up to `boot.ready`.
pub fn boot(m: &mut Machine, arch: &str) -> Result<(), String> {
    expect_boot(m, &limits(arch))
}

/// Each of `steps` in order: the first event of its name after the one
/// before must carry its fields. `first` is how long the first may take
/// (the agent's polls and download come before it).
pub fn follow(m: &mut Machine, arch: &str, steps: &[Step], first: Duration) -> Result<(), String> {
    let lim = limits(arch);
    for (i, s) in steps.iter().enumerate() {
        let timeout = if i == 0 { first } else { lim.step };
        let e = m.expect_event(s.event, timeout).map_err(|e| format!("step {} of {} ({}): {e}", i + 1, steps.len(), s.event))?;
        for (k, v) in &s.fields {
            field_is(&e, k, v).map_err(|e| format!("step {} of {}: {e}", i + 1, steps.len()))?;
        }
    }
    Ok(())
}

/// The agent's output (berth's `container.log` lines for [`AGENT`], on the
/// console) holds each of `said`, in this order, somewhere after `from`
/// (a cursor). Everything has arrived by then: no waiting.
pub fn agent_said(m: &mut Machine, from: usize, said: &[String]) -> Result<(), String> {
    m.set_cursor(from);
    for text in said {
        let found = m.expect_event_where("container.log", |e| e.is("name", AGENT) && e.get("line").is_some_and(|l| l.contains(text.as_str())), Duration::ZERO);
        found.map_err(|_| format!("the agent never said `{text}` (in this order)"))?;
    }
    Ok(())
}

/// What the agent's `--self-check` must log (`self-check: LINE`, in this
/// order) in the `agent` releases' confinement: every write refused but in
/// its drop and state volumes (the data partition, ext4) and the private
/// tmpfs berth gives every container (`/tmp`, `/dev/shm`: memory charged
/// to its cgroup, gone when it stops); `/data` absent; no capabilities in
/// any set.
pub fn self_check_expected() -> Vec<String> {
    let writes = [
        ("/", "EROFS"),
        ("/bin", "EROFS"),
        ("/etc", "EROFS"),
        ("/dev", "EROFS"),
        ("/sys", "EROFS"),
        ("/data", "ENOENT"),
        ("/tmp", "ok tmpfs"),
        ("/dev/shm", "ok tmpfs"),
        ("/run/berth-status", "EROFS"),
        ("/drop", "ok ext4"),
        ("/state", "ok ext4"),
    ];
    let mut out: Vec<String> = writes.iter().map(|(d, r)| format!("write {d} -> {r}")).collect();
    out.push("caps inh=0 prm=0 eff=0 bnd=0 amb=0".into());
    out.push("done".into());
    out
}

/// The agent's `self-check:` lines after the cursor, up to `done`
/// (waiting up to `timeout` for them), against `want`: all of them, exactly.
pub fn self_check(m: &mut Machine, want: &[String], timeout: Duration) -> Result<(), String> {
    let tag = "self-check: ";
    let mut got = Vec::new();
    while got.last().map(String::as_str) != Some("done") {
        let wait = if got.is_empty() { timeout } else { Duration::from_secs(5) };
        let e = m.expect_event_where("container.log", |e| e.is("name", AGENT) && e.get("line").is_some_and(|l| l.contains(tag)), wait);
        let e = e.map_err(|e| format!("the agent's self-check stopped after {got:?}: {e}"))?;
        got.push(e.get("line").and_then(|l| l.split_once(tag)).map(|(_, r)| r.to_string()).unwrap_or_default());
        if got.len() > want.len() + 4 {
            break;
        }
    }
    if got != want {
        return Err(format!("the agent's confinement differs:\n got: {got:#?}\nwant: {want:#?}"));
    }
    Ok(())
}

/// No error-level event at all (a case where nothing reaches berth).
pub fn no_errors_at_all(m: &Machine) -> Result<(), String> {
    no_errors(m, &[])
}

/// No error-level event but those the outcome calls for.
pub fn no_other_errors(m: &Machine, outcome: &Outcome) -> Result<(), String> {
    match outcome {
        Outcome::Committed { .. } => no_errors(m, &[]),
        Outcome::Refused { .. } => no_errors(m, &["update.refused"]),
        Outcome::RolledBack { changed, .. } => no_errors(m, &[&format!("container.failed:{changed}")]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expected_sequences() {
        let ok = expected("b-2.bundle", &Outcome::Committed { version: 2, changed: "sensor".into() });
        let names: Vec<&str> = ok.iter().map(|s| s.event).collect();
        assert_eq!(names, ["update.drop", "update.inbox", "update.staged", "update.switch", "release.trial", "release.commit", "update.done"]);
        assert_eq!(ok[0].fields[2], ("inbox", "berth-agent.b-2.bundle".to_string()));
        assert_eq!(ok[1].fields[0], ("bundle", "/data/berth/inbox/berth-agent.b-2.bundle".to_string()));
        let bad = expected("b-2.bundle", &Outcome::Refused { reason: "untrusted".into() });
        assert_eq!(bad.len(), 3);
        assert_eq!(bad[2].fields[2], ("reason", "untrusted".to_string()));
        let back = expected("b-3.bundle", &Outcome::RolledBack { version: 3, changed: "meter".into(), to: 1 });
        let names: Vec<&str> = back.iter().map(|s| s.event).collect();
        assert_eq!(
            names,
            ["update.drop", "update.inbox", "update.staged", "update.switch", "release.trial", "container.failed", "release.rollback", "update.switch"]
        );
        assert_eq!(back[6].fields, [("cause", "crash-loop".to_string()), ("from", "3".into()), ("to", "1".into()), ("container", "meter".into())]);
        assert_eq!(back[7].fields, [("version", "1".to_string()), ("changed", "meter".into())]);
        let check = self_check_expected();
        assert_eq!(check.iter().filter(|l| l.contains("-> ok ")).count(), 4, "{check:?}");
        assert_eq!(check.last().map(String::as_str), Some("done"));
    }
}
