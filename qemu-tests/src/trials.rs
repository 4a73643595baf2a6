//! Trials that end, under QEMU (the `update` variant; its trial bundles are
//! built by xtask from `qemu-tests/manifests/update/trial-*`, see
//! `xtask/src/trials.rs`). The guest agent drives berthctl; berth's events
//! are judged here.
//!
//! - `trial-judged`: release 2 adds `task`, `restart = "never"`, which exits
//!   1: rolled back at once (`container-failed`, `task`), `update --wait`
//!   exits 4. Release 3's `sensor` is never ready: rolled back with
//!   `trial-timeout` at its `trial_deadline_s` ([`DEADLINE_S`]) after the
//!   trial began, exit 4. Release 4 adds a `oneshot` task that exits 0:
//!   done, committed after the window, exit 0; `release --json` and the
//!   status file carry its id (the bundle's SHA-256, computed by xtask);
//!   `berthctl status --json` lists the status file's entries in the same
//!   states.
//! - `trial-control`: `commit` and `rollback` without a trial are errors;
//!   `update` answers at once; release 5 (a 10-minute window) on trial is
//!   rolled back by `berthctl rollback` (`requested`), applied again and
//!   committed by `berthctl commit` long before its window; `update --wait`
//!   of a bundle that is not newer exits 3.

use crate::event::Event;
use crate::machine::Machine;
use crate::scenario::Case;
use crate::scenarios::{agent_pass, expect_boot, expect_poweroff, field_is, limits, no_errors, spec, BootSpec, Launch, Limits};
use std::sync::Arc;
use std::time::Duration;

/// `trial_deadline_s` of `trial-deadline/release.toml`.
pub const DEADLINE_S: f64 = 15.0;
/// How late after its deadline the rollback may come (the loop's timer,
/// a slow board).
const DEADLINE_SLACK_S: f64 = 1.0;
/// `commit_window_s` of the trial releases that commit by their window.
const WINDOW_S: f64 = 5.0;
/// `commit_window_s` of `trial-window/release.toml`.
const LONG_WINDOW_S: f64 = 600.0;

/// The trial scenarios (x86_64 only: the rules are the same code on every
/// board, and the pure rules are unit tested).
pub fn cases(l: Arc<dyn Launch>) -> Vec<Case> {
    use crate::scenarios::Check;
    let arch = l.arch().to_string();
    if arch != "x86_64" {
        return Vec::new();
    }
    let table: [(&str, Check); 2] = [("trial-judged", trial_judged), ("trial-control", trial_control)];
    crate::scenarios::cases_of(&l, table.into())
}

fn boot(l: &dyn Launch, name: &str, lim: &Limits) -> Result<Machine, String> {
    let mut m = l.boot(&BootSpec { variant: "update", ..spec(name, name) })?;
    expect_boot(&mut m, lim)?;
    Ok(m)
}

fn rollback_is(e: &Event, cause: &str, from: &str, container: Option<&str>) -> Result<(), String> {
    field_is(e, "cause", cause)?;
    field_is(e, "from", from)?;
    field_is(e, "to", "1")?;
    match (container, e.get("container")) {
        (Some(want), _) => field_is(e, "container", want),
        (None, None) => Ok(()),
        (None, Some(c)) => Err(format!("rollback {cause} names container {c}")),
    }
}

/// The `"update":{...}` object's id in a JSON text (the last one).
fn update_id(json: &str) -> Option<&str> {
    let at = json.rfind("\"update\":{\"seq\":")?;
    let rest = json.get(at..)?;
    let id = rest.split("\"id\":\"").nth(1)?;
    id.split('"').next()
}

fn trial_judged(l: &dyn Launch) -> Result<(), String> {
    let lim = limits(l.arch());
    let info = l.updates()?;
    let want_id = info.ids.iter().find(|(p, _)| p.ends_with("/trial-oneshot.bundle")).map(|(_, id)| id.clone()).ok_or("no id for trial-oneshot")?;
    let mut m = boot(l, "trial-judged", &lim)?;
    let ready = m.cursor();
    // A restart = "never" container exits 1: rolled back at once.
    m.expect_event_where("release.trial", |e| e.is("version", "2"), lim.boot)?;
    let ex = m.expect_event_where("trial.exit", |e| e.is("name", "task"), lim.step)?;
    field_is(&ex, "exit", "exit 1")?;
    field_is(&ex, "verdict", "fails")?;
    let rb = m.expect_event("release.rollback", lim.step)?;
    rollback_is(&rb, "container-failed", "2", Some("task"))?;
    if rb.t - ex.t > 1.0 {
        return Err(format!("the rollback came {:.2} s after task's exit, not at once", rb.t - ex.t));
    }
    // Never ready: rolled back at the deadline, computed before the run.
    let trial = m.expect_event_where("release.trial", |e| e.is("version", "3"), lim.step)?;
    let rb = m.expect_event("release.rollback", lim.step + Duration::from_secs_f64(DEADLINE_S))?;
    rollback_is(&rb, "trial-timeout", "3", None)?;
    let due = trial.t + DEADLINE_S;
    if rb.t < due - 0.05 || rb.t > due + DEADLINE_SLACK_S {
        return Err(format!("trial-timeout at {:.3}, want {due:.3} (trial at {:.3} + {DEADLINE_S} s)", rb.t, trial.t));
    }
    // A one-shot task exits 0: done; committed after the window.
    m.expect_event_where("release.trial", |e| e.is("version", "4"), lim.step)?;
    let ex = m.expect_event_where("trial.exit", |e| e.is("name", "task"), lim.step)?;
    field_is(&ex, "exit", "exit 0")?;
    field_is(&ex, "verdict", "done")?;
    let commit = m.expect_event("release.commit", lim.step)?;
    field_is(&commit, "version", "4")?;
    field_is(&commit, "by", "window")?;
    if commit.t - ex.t < WINDOW_S - 0.05 {
        return Err(format!("committed {:.2} s after the task was done, before the {WINDOW_S} s window", commit.t - ex.t));
    }
    m.set_cursor(ready);
    for check in ["wait-rolled-back", "wait-timeout", "wait-committed"] {
        agent_pass(&mut m, check, &lim)?;
    }
    for check in ["release-json", "status-json"] {
        let line = m.expect_line(&format!("AGENT check={check} "), lim.step)?;
        let unquoted = line.replace("\\\"", "\"");
        let got = update_id(&unquoted);
        if !line.contains("result=pass") || got != Some(want_id.as_str()) {
            return Err(format!("{check}: want the update's id {want_id}, got {got:?}: {line}"));
        }
    }
    agent_pass(&mut m, "status-json-ctl", &lim)?;
    expect_poweroff(&mut m, "SIGTERM", &lim)?;
    let events = m.events();
    if events.iter().filter(|e| e.name == "release.commit").count() != 1 {
        return Err("a release other than 4 was committed".into());
    }
    no_errors(&m, &["container.failed:task"])
}

fn trial_control(l: &dyn Launch) -> Result<(), String> {
    let lim = limits(l.arch());
    let mut m = boot(l, "trial-control", &lim)?;
    let ready = m.cursor();
    let trial = m.expect_event_where("release.trial", |e| e.is("version", "5"), lim.boot)?;
    m.expect_event("control.rollback", lim.step)?;
    let rb = m.expect_event("release.rollback", lim.step)?;
    rollback_is(&rb, "requested", "5", None)?;
    let again = m.expect_event_where("release.trial", |e| e.is("version", "5"), lim.step)?;
    m.expect_event("control.commit", lim.step)?;
    let commit = m.expect_event("release.commit", lim.step)?;
    field_is(&commit, "version", "5")?;
    field_is(&commit, "by", "operator")?;
    // Release 5 uses none of release 1's images: each is unmapped at the
    // commit, before the store's gc.
    let done = m.expect_event("update.done", lim.step)?;
    let want = crate::updates::superseded_names(&l.updates()?.known, 5);
    if want.is_empty() {
        return Err("release 1 has no image".into());
    }
    crate::updates::superseded_unmapped(&m.events(), want, commit.t, done.t)?;
    if commit.t - again.t >= LONG_WINDOW_S {
        return Err(format!("committed {:.1} s into the trial: not before the window", commit.t - again.t));
    }
    let refused = m.expect_event_where("update.refused", |e| e.is("bundle", "/data/test/refused/not-newer.bundle"), lim.step)?;
    field_is(&refused, "kind", "bundle")?;
    m.set_cursor(ready);
    for check in [
        "commit-no-trial",
        "rollback-no-trial",
        "update-at-once",
        "on-trial",
        "rollback-requested",
        "rollback-recorded",
        "on-trial-again",
        "commit-requested",
        "commit-recorded",
        "wait-refused",
    ] {
        agent_pass(&mut m, check, &lim)?;
    }
    expect_poweroff(&mut m, "SIGTERM", &lim)?;
    if rb.t - trial.t >= LONG_WINDOW_S {
        return Err("the rollback came after the window".into());
    }
    // The not-newer bundle is refused by design.
    no_errors(&m, &["update.refused"])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The deadline the scenario computes with is the release's.
    #[test]
    fn the_deadline_constant_is_the_releases() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/update");
        let read = |name: &str| std::fs::read_to_string(dir.join(name).join("release.toml")).unwrap();
        assert!(read("trial-deadline").lines().any(|l| l == format!("trial_deadline_s = {DEADLINE_S}")));
        assert!(read("trial-window").lines().any(|l| l == format!("commit_window_s = {LONG_WINDOW_S}")));
        for name in ["trial-fail", "trial-oneshot", "trial-deadline"] {
            assert!(read(name).lines().any(|l| l == format!("commit_window_s = {WINDOW_S}")), "{name}");
        }
    }

    #[test]
    fn update_id_finds_the_last_update_object() {
        let json = r#"{"update":{"seq":3,"id":"sha256:ab","bundle":"x"},"updates":[{"seq":3,"id":"sha256:ab"}]}"#;
        assert_eq!(update_id(json), Some("sha256:ab"));
        assert_eq!(update_id(r#"{"update":null}"#), None);
    }
}
