//! Update paths that no other scenario takes, under QEMU (x86_64, the
//! `update` variant; the guest agent drives berthctl and the inbox, berth's
//! events are judged here against one sequence written out before the run,
//! and a failure names the first event that differs).
//!
//! - `add-remove`: release 6 (`qemu-tests/manifests/update/add-remove`,
//!   a 10-minute window) removes `meter` and adds `gauge`; `sensor` is
//!   release 1's. The switch says so (`kept=1 changed= added=gauge
//!   removed=meter`); `meter` is stopped by the update and its cgroup
//!   removed; `gauge` starts and is ready. `berthctl rollback` switches back
//!   the other way (`added=meter removed=gauge`): `gauge` stopped, its
//!   cgroup removed, `meter` started again. Applied again, release 6 is
//!   committed by `berthctl commit`; `sensor` gets no lifecycle event
//!   throughout, and `berthctl status --json` lists `gauge` and `sensor`,
//!   not `meter`.
//! - `inbox-queue`: five entries appear in the inbox at once (the agent
//!   renames a prepared directory into place): `a-unsigned.bundle` (no
//!   signed release), `b-old.bundle` (release 1: not newer once release 2
//!   runs), `c-v2.bundle.taking1` (release 2, its first staging
//!   interrupted), a directory `d-dir.bundle` and `z.partial`. By the
//!   inbox's rules (`docs/updates.md`): the first look quarantines the
//!   directory unopened and takes the interrupted bundle before the fresh
//!   ones (attempt 2); nothing is taken while release 2 is on trial; after
//!   its commit the fresh bundles are taken one per look in name order,
//!   each refused with its reason and removed; `z.partial` is no bundle
//!   name and stays.

use crate::event::{AgentLine, Event};
use crate::machine::Machine;
use crate::scenario::Case;
use crate::scenarios::{agent_pass, expect_boot, expect_poweroff, limits, no_errors, spec, BootSpec, Launch, Limits};
use std::sync::Arc;

pub fn cases(l: Arc<dyn Launch>) -> Vec<Case> {
    use crate::scenarios::Check;
    let arch = l.arch().to_string();
    if arch != "x86_64" {
        return Vec::new();
    }
    let table: [(&str, Check); 2] = [("add-remove", add_remove), ("inbox-queue", inbox_queue)];
    crate::scenarios::cases_of(&l, table.into())
}

/// An event as the keys of it that a scenario judges (those it has, in
/// the order given): `NAME k=v ...`.
pub fn project(e: &Event, keys: &[&str]) -> String {
    let mut s = e.name.clone();
    for k in keys {
        if let Some(v) = e.get(k) {
            s.push_str(&format!(" {k}={v}"));
        }
    }
    s
}

/// `got` must be `want` exactly; otherwise the first difference.
pub fn same_sequence(what: &str, want: &[String], got: &[String]) -> Result<(), String> {
    let n = want.len().max(got.len());
    for i in 0..n {
        let (w, g) = (want.get(i), got.get(i));
        if w != g {
            let show = |x: Option<&String>| x.map_or_else(|| "nothing".to_string(), |s| format!("{s:?}"));
            return Err(format!("{what}: event {} is {}, want {} (got {} events, want {})", i + 1, show(g), show(w), got.len(), want.len()));
        }
    }
    Ok(())
}

/// The containers of a `berthctl status --json` document (host services
/// left out), sorted by name: `NAME:STATE,...`.
pub fn container_states(doc: &str) -> Result<String, String> {
    let v: serde_json::Value = serde_json::from_str(doc).map_err(|e| format!("not JSON: {e}"))?;
    let list = v["containers"].as_array().ok_or("no containers array")?;
    let mut out: Vec<String> = list
        .iter()
        .filter(|c| c["kind"] == "container")
        .map(|c| format!("{}:{}", c["name"].as_str().unwrap_or("?"), c["state"].as_str().unwrap_or("?")))
        .collect();
    out.sort();
    Ok(out.join(","))
}

/// The keys judged of each event the scenarios follow.
fn keys_of(name: &str) -> &'static [&'static str] {
    match name {
        "update.switch" => &["version", "kept", "changed", "added", "removed"],
        "update.inbox" => &["bundle", "attempt", "taking", "removed", "why", "result"],
        "update.quarantine" => &["bundle", "cause", "seq"],
        "update.refused" => &["bundle", "kind", "reason"],
        "update.staged" => &["bundle", "version"],
        "release.trial" => &["version"],
        "release.commit" => &["version", "by"],
        "release.rollback" => &["cause", "from", "to", "container"],
        "cgroup.remove" => &["name", "path", "result"],
        _ => &["name", "by", "result"],
    }
}

/// The events named in `names` before berth's shutdown, projected.
fn followed(events: &[Event], names: &[&str], also: impl Fn(&Event) -> bool) -> Vec<String> {
    events
        .iter()
        .take_while(|e| e.name != "shutdown.begin")
        .filter(|e| names.contains(&e.name.as_str()) && also(e))
        .map(|e| project(e, keys_of(&e.name)))
        .collect()
}

fn lines(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The release-level events of an update.
const RELEASE_EVENTS: [&str; 6] = ["update.staged", "update.switch", "release.trial", "release.commit", "release.rollback", "update.refused"];
/// A container's life events (its cgroup's removal is judged apart: it
/// may be retried on a later tick).
const CONTAINER_EVENTS: [&str; 8] =
    ["container.start", "container.ready", "container.stop", "container.stopped", "container.exit", "container.restart", "container.failed", "container.kill"];

/// What the `add-remove` scenario expects of one container from the update
/// on (before it: release 1's boot): its life events, its cgroup's removals.
pub struct ContainerWant {
    pub name: &'static str,
    pub life: Vec<String>,
    pub cgroup: Vec<String>,
}

/// The `add-remove` scenario's expected events: the release's, then each
/// container's.
pub fn add_remove_expected() -> (Vec<String>, Vec<ContainerWant>) {
    let to_6 = "update.switch version=6 kept=1 changed= added=gauge removed=meter";
    let staged = "update.staged bundle=/data/test/add-remove.bundle version=6";
    let release = lines(&[
        staged,
        to_6,
        "release.trial version=6",
        "release.rollback cause=requested from=6 to=1",
        "update.switch version=1 kept=1 changed= added=meter removed=gauge",
        staged,
        to_6,
        "release.trial version=6",
        "release.commit version=6 by=operator",
    ]);
    let stop = |n: &str| [format!("container.stop name={n} by=update result=ok"), format!("container.stopped name={n} by=update")];
    let start = |n: &str| [format!("container.start name={n} result=ok"), format!("container.ready name={n} by=start")];
    let removed = |n: &str| format!("cgroup.remove name={n} path=/sys/fs/cgroup/berth/{n} result=ok");
    let containers = vec![
        ContainerWant { name: "meter", life: [stop("meter"), start("meter"), stop("meter")].concat(), cgroup: vec![removed("meter"), removed("meter")] },
        ContainerWant { name: "gauge", life: [start("gauge"), stop("gauge"), start("gauge")].concat(), cgroup: vec![removed("gauge")] },
        ContainerWant { name: "sensor", life: Vec::new(), cgroup: Vec::new() },
    ];
    (release, containers)
}

/// An agent check that passed: its detail.
fn agent_detail(m: &mut Machine, check: &str, lim: &Limits) -> Result<String, String> {
    let line = m.expect_line(&format!("AGENT check={check} "), lim.step)?;
    match crate::event::parse_agent_line(&line) {
        Some(AgentLine::Check { passed: true, detail, .. }) => Ok(detail),
        _ => Err(format!("agent check {check} failed: {line}")),
    }
}

fn detail_is(m: &mut Machine, check: &str, want: &str, lim: &Limits) -> Result<(), String> {
    let got = agent_detail(m, check, lim)?;
    if got == want {
        Ok(())
    } else {
        Err(format!("agent check {check}: {got:?}, want {want:?}"))
    }
}

fn add_remove(l: &dyn Launch) -> Result<(), String> {
    let lim = limits(l.arch());
    let mut m = l.boot(&BootSpec { variant: "update", ..spec("add-remove", "add-remove") })?;
    expect_boot(&mut m, &lim)?;
    for check in ["on-trial", "rows-6", "rollback-requested", "rolled-back", "rows-1", "on-trial-again", "rows-6-again", "commit-requested", "committed"] {
        agent_pass(&mut m, check, &lim)?;
    }
    detail_is(&mut m, "status-json", "gauge:running,sensor:running", &lim)?;
    agent_pass(&mut m, "meter-cgroup-gone", &lim)?;
    expect_poweroff(&mut m, "SIGTERM", &lim)?;
    let events = m.events();
    let (want, per_container) = add_remove_expected();
    same_sequence("the update's events", &want, &followed(&events, &RELEASE_EVENTS, |_| true))?;
    let stage = events.iter().position(|e| e.name == "update.stage").ok_or("no update.stage")?;
    let after = events.get(stage..).unwrap_or_default();
    for c in per_container {
        let mine = |e: &Event| e.is("name", c.name);
        same_sequence(&format!("{} from the update on", c.name), &c.life, &followed(after, &CONTAINER_EVENTS, mine))?;
        same_sequence(&format!("{}'s cgroup from the update on", c.name), &c.cgroup, &followed(after, &["cgroup.remove"], mine))?;
    }
    no_errors(&m, &[])
}

/// The inbox's path on the device.
const INBOX: &str = "/data/berth/inbox";

/// The `inbox-queue` scenario's expected events (update and release ones),
/// from the inbox's rules and the entries' names; see the module doc.
pub fn inbox_queue_expected() -> Vec<String> {
    let b = |n: &str| format!("bundle={INBOX}/{n}.bundle");
    let taken = |n: &str, attempt: u8| format!("update.inbox {} attempt={attempt} taking={n}.bundle.taking{attempt}", b(n));
    let removed = |n: &str, attempt: u8, why: &str| format!("update.inbox {} removed={INBOX}/{n}.bundle.taking{attempt} why={why} result=ok", b(n));
    vec![
        // First look: the directory quarantined, the interrupted bundle taken.
        format!("update.quarantine {} cause=not a regular file but a directory; never opened seq=1", b("d-dir")),
        taken("c-v2", 2),
        removed("c-v2", 2, "staged"),
        format!("update.staged {} version=2", b("c-v2")),
        "update.switch version=2 kept=1 changed=sensor added= removed=".to_string(),
        format!("update.inbox {} result=ok", b("c-v2")),
        "release.trial version=2".to_string(),
        "release.commit version=2 by=window".to_string(),
        // After the commit: the fresh ones, one per look, by name.
        taken("a-unsigned", 1),
        removed("a-unsigned", 1, "refused"),
        format!("update.refused {} kind=bundle reason=bundle carries no signed release", b("a-unsigned")),
        taken("b-old", 1),
        removed("b-old", 1, "refused"),
        format!(
            "update.refused {} kind=bundle reason=release version 1 is not newer than the installed version 2 and no downgrade marker allows it",
            b("b-old")
        ),
    ]
}

fn inbox_queue(l: &dyn Launch) -> Result<(), String> {
    let lim = limits(l.arch());
    let mut m = l.boot(&BootSpec { variant: "update", ..spec("inbox-queue", "inbox-queue") })?;
    expect_boot(&mut m, &lim)?;
    agent_pass(&mut m, "inbox-drop", &lim)?;
    detail_is(&mut m, "inbox-left", "z.partial", &lim)?;
    detail_is(&mut m, "quarantine-files", "000001-d-dir.bundle,000001-d-dir.bundle.cause", &lim)?;
    detail_is(&mut m, "quarantined", "quarantined d-dir.bundle: not a regular file but a directory; never opened", &lim)?;
    detail_is(&mut m, "release", "2 committed", &lim)?;
    expect_poweroff(&mut m, "SIGTERM", &lim)?;
    let names =
        ["update.inbox", "update.quarantine", "update.refused", "update.staged", "update.switch", "release.trial", "release.commit", "release.rollback"];
    same_sequence("the inbox's events", &inbox_queue_expected(), &followed(&m.events(), &names, |_| true))?;
    // The two refusals are the rules' own.
    no_errors(&m, &["update.refused"])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(line: &str) -> Event {
        crate::event::parse_line(line).unwrap()
    }

    #[test]
    fn project_keeps_the_judged_keys_in_order() {
        let e = ev("BERTH t=4.0 ev=update.switch version=2 kept=1 changed=sensor added=\"\" removed=\"\"");
        assert_eq!(project(&e, keys_of("update.switch")), "update.switch version=2 kept=1 changed=sensor added= removed=");
        let e = ev("BERTH t=4.0 ev=container.stop name=meter by=update signal=SIGTERM grace_ms=10000 result=ok");
        assert_eq!(project(&e, keys_of(&e.name)), "container.stop name=meter by=update result=ok");
    }

    #[test]
    fn container_states_leaves_out_services() {
        let doc = r#"{"format":1,"containers":[{"name":"sensor","kind":"container","state":"running"},{"name":"agent","kind":"service","state":"running"},{"name":"gauge","kind":"container","state":"starting"}]}"#;
        assert_eq!(container_states(doc), Ok("gauge:starting,sensor:running".to_string()));
        assert!(container_states("{").is_err());
    }

    #[test]
    fn same_sequence_names_the_first_difference() {
        let want = lines(&["a", "b", "c"]);
        assert_eq!(same_sequence("x", &want, &want), Ok(()));
        assert_eq!(same_sequence("x", &want, &lines(&["a", "c"])).unwrap_err(), "x: event 2 is \"c\", want \"b\" (got 2 events, want 3)");
        assert_eq!(same_sequence("x", &want, &lines(&["a", "b", "c", "d"])).unwrap_err(), "x: event 4 is \"d\", want nothing (got 4 events, want 3)");
        assert!(same_sequence("x", &want, &lines(&["a", "b"])).unwrap_err().starts_with("x: event 3 is nothing"));
    }

    /// The release the scenario expects is the one in the release directory.
    #[test]
    fn the_add_remove_release_is_as_expected() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/update");
        let names = |d: &str| {
            let mut v: Vec<String> = std::fs::read_dir(dir.join(d)).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
            v.sort();
            v
        };
        assert_eq!(names("v1"), ["meter.toml", "release.toml", "sensor.toml"]);
        assert_eq!(names("add-remove"), ["gauge.toml", "release.toml", "sensor.toml"]);
        let body =
            |d: &str, f: &str| std::fs::read_to_string(dir.join(d).join(f)).unwrap().lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>().join("\n");
        assert_eq!(body("v1", "sensor.toml"), body("add-remove", "sensor.toml"), "sensor must be kept");
        let release = std::fs::read_to_string(dir.join("add-remove/release.toml")).unwrap();
        assert!(release.lines().any(|l| l == "version = 6"));
        assert!(release.lines().any(|l| l == "commit_window_s = 600"), "committed by request, never by the window");
    }

    #[test]
    fn the_inbox_queue_takes_the_interrupted_one_first() {
        let want = inbox_queue_expected();
        assert_eq!(want.len(), 14);
        assert!(want[0].starts_with("update.quarantine bundle=/data/berth/inbox/d-dir.bundle "));
        assert_eq!(want[1], "update.inbox bundle=/data/berth/inbox/c-v2.bundle attempt=2 taking=c-v2.bundle.taking2");
        assert_eq!(
            want[9],
            "update.inbox bundle=/data/berth/inbox/a-unsigned.bundle removed=/data/berth/inbox/a-unsigned.bundle.taking1 why=refused result=ok"
        );
    }
}
