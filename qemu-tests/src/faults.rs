//! Update error paths under QEMU (x86_64, the `update` variant): a record
//! write that fails, and a trial that fails its readiness or its health.
//! The record writes fail through berth's test hook `berth.fail=KIND:N`
//! (`supervisor/src/release/faults.rs`): the first N record writes of KIND
//! (`trial`, `commit`, `rollback`) fail with EIO, the record left as it
//! was; `map:N` fails the first N images PID 1 maps after its boot. Each case writes out berth's whole update sequence before the run
//! and names the first event that differs; the guest agent reports what
//! berthctl answers and that both containers run and are ready at the end.
//!
//! The record's two copies alternate: the data partition is made with
//! `record.a`, the boot writes `record.b`, so an update's trial goes to
//! `record.a` and its commit or rollback to `record.b` (a failed write
//! does not move on to the other copy).
//!
//! - `fault-trial-write` (`berth.fail=trial:1`): release 5 staged, its
//!   trial's record write fails: refused (`kind=device`, the write's
//!   error), `update --wait` exits 3, release 1 runs on with the same
//!   processes. Applied again it goes on trial and `berthctl commit`
//!   commits it.
//! - `fault-commit-operator` (`berth.fail=commit:1`): `berthctl commit` of
//!   release 5 (a 10-minute window) fails, the operator is told it is tried
//!   again in 2 s, and it is (`by=operator`), not when the window ends;
//! - `fault-commit-write` (`berth.fail=commit:1`): release 2's commit by its
//!   window fails (`release.commit result=error retry_s=2`) and is tried
//!   again 2 s later ([`COMMIT_RETRY_S`]), which commits it;
//!   `update --wait` exits 0.
//! - `fault-rollback-write` (`berth.fail=rollback:1`): `berthctl rollback`
//!   of release 5: the first write fails (`try=1 retry=now`), the second
//!   records the rollback, and release 1 is switched back to.
//! - `fault-rollback-reboot` (`berth.fail=rollback:3`): all three writes
//!   fail; berthctl is told so and berth reboots, the record still saying
//!   "trial"; the next boot rolls back (`reboot-during-trial`) to release 1.
//! - `fault-map-rollback` (`berth.fail=map:1`): release 9 switches by
//!   rebooting (its boot maps only its own image); rolled back by request,
//!   the switch back cannot map release 1's image (`image.verity
//!   step=fault`), so neither container has a spec: berth says so
//!   (`update.switch result=error missing=meter,sensor then=reboot`) and
//!   reboots rather than leave release 9's containers running as release
//!   1; the third boot runs release 1 with the rollback recorded.
//! - `trial-unready`: release 7's `sensor` never notifies; its readiness
//!   timeout (3 s, [`UNREADY_S`]) makes it unhealthy (`ready-timeout`) and
//!   rolls back at once (`readiness-timeout`, sensor); `update --wait`
//!   exits 4 naming the cause.
//! - `trial-unhealthy`: release 8's `sensor` fails its health command twice
//!   in a row, 0.5 s apart ([`HEALTH_S`]): unhealthy (`check`), rolled
//!   back (`health-check`, sensor).

use crate::event::Event;
use crate::machine::Machine;
use crate::releasepaths::{project, same_sequence};
use crate::scenario::Case;
use crate::scenarios::{agent_pass, expect_boot, expect_poweroff, limits, no_errors, BootSpec, Launch, Limits};
use std::sync::Arc;

/// berth's seconds between tries of a commit whose write failed
/// (`supervise::trial::COMMIT_RETRY_S`).
pub const COMMIT_RETRY_S: f64 = 2.0;
/// `trial-unready`'s `sensor` readiness timeout.
pub const UNREADY_S: f64 = 3.0;
/// `trial-unhealthy`'s `sensor`: two failed checks, 0.5 s apart, the first
/// 0.5 s after its start.
pub const HEALTH_S: f64 = 1.0;
/// How late a timed step may come (the loop's timer, a busy host).
const SLACK_S: f64 = 1.5;

/// EIO as berth on the device says it (musl's text).
const EIO: &str = "I/O error (os error 5)";

/// What a failed write says (EIO), by record copy.
fn eio(slot: &str) -> String {
    format!("write /data/berth/record.{slot}: {EIO}")
}

pub fn cases(l: Arc<dyn Launch>) -> Vec<Case> {
    use crate::scenarios::Check;
    let arch = l.arch().to_string();
    if arch != "x86_64" {
        return Vec::new();
    }
    let table: [(&str, Check); 8] = [
        ("fault-trial-write", trial_write),
        ("fault-commit-write", commit_write),
        ("fault-commit-operator", commit_operator),
        ("fault-rollback-write", rollback_write),
        ("fault-rollback-reboot", rollback_reboot),
        ("fault-map-rollback", map_rollback),
        ("trial-unready", trial_unready),
        ("trial-unhealthy", trial_unhealthy),
    ];
    crate::scenarios::cases_of(&l, table.into())
}

/// The events followed, with the keys judged of each.
fn keys_of(name: &str) -> Option<&'static [&'static str]> {
    Some(match name {
        "fault.injected" => &["kind", "left"],
        "update.refused" => &["bundle", "kind", "reason"],
        "update.staged" => &["bundle", "version"],
        "update.switch" => &["version", "kept", "changed", "added", "removed", "result", "missing", "then"],
        "update.reboot" => &["version"],
        "image.verity" => &["step", "result", "error"],
        "release.trial" => &["version"],
        "release.commit" => &["version", "by", "retry_s", "result", "error"],
        "release.rollback" => &["cause", "from", "to", "container", "try", "tries", "retry", "then", "reason", "result", "error"],
        "container.unhealthy" => &["name", "reason"],
        "container.check" => &["name", "fails", "result"],
        "shutdown.begin" => &["action"],
        _ => return None,
    })
}

/// Every followed event of the run (all boots), projected; of the
/// mappings, only those that failed.
fn followed(events: &[Event]) -> Vec<String> {
    let mapped = |e: &&Event| e.name == "image.verity" && e.is("result", "ok");
    events.iter().filter(|e| !mapped(e)).filter_map(|e| keys_of(&e.name).map(|k| project(e, k))).collect()
}

fn owned(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn staged(bundle: &str, version: u64) -> String {
    format!("update.staged bundle=/data/test/{bundle}.bundle version={version}")
}

/// Release 5 (`trial-window`: both containers on new images), and back.
const TO_5: &str = "update.switch version=5 kept=0 changed=meter,sensor added= removed=";
const BACK_FROM_5: &str = "update.switch version=1 kept=0 changed=meter,sensor added= removed=";

/// `fault-trial-write`'s sequence.
pub fn trial_write_expected() -> Vec<String> {
    vec![
        "fault.injected kind=trial left=0".into(),
        format!("update.refused bundle=/data/test/trial-window.bundle kind=device reason={}", eio("a")),
        staged("trial-window", 5),
        TO_5.into(),
        "release.trial version=5".into(),
        "release.commit version=5 by=operator".into(),
        "shutdown.begin action=poweroff".into(),
    ]
}

/// `fault-commit-operator`'s sequence: the operator's commit fails and is
/// tried again 2 s later, by the operator's request, not the window's.
pub fn commit_operator_expected() -> Vec<String> {
    vec![
        staged("trial-window", 5),
        TO_5.into(),
        "release.trial version=5".into(),
        "fault.injected kind=commit left=0".into(),
        format!("release.commit version=5 retry_s={COMMIT_RETRY_S} result=error error={}", eio("b")),
        "release.commit version=5 by=operator".into(),
        "shutdown.begin action=poweroff".into(),
    ]
}

/// `fault-commit-write`'s sequence.
pub fn commit_write_expected() -> Vec<String> {
    vec![
        staged("v2", 2),
        "update.switch version=2 kept=1 changed=sensor added= removed=".into(),
        "release.trial version=2".into(),
        "fault.injected kind=commit left=0".into(),
        format!("release.commit version=2 retry_s={COMMIT_RETRY_S} result=error error={}", eio("b")),
        "release.commit version=2 by=window".into(),
        "shutdown.begin action=poweroff".into(),
    ]
}

/// `fault-rollback-write`'s sequence.
pub fn rollback_write_expected() -> Vec<String> {
    vec![
        staged("trial-window", 5),
        TO_5.into(),
        "release.trial version=5".into(),
        "fault.injected kind=rollback left=0".into(),
        format!("release.rollback cause=requested try=1 retry=now reason={}", eio("b")),
        "release.rollback cause=requested from=5 to=1".into(),
        BACK_FROM_5.into(),
        "shutdown.begin action=poweroff".into(),
    ]
}

/// `fault-rollback-reboot`'s sequence, over its two boots.
pub fn rollback_reboot_expected() -> Vec<String> {
    let mut v = vec![staged("trial-window", 5), TO_5.into(), "release.trial version=5".into()];
    for (try_, left) in [(1, 2), (2, 1)] {
        v.push(format!("fault.injected kind=rollback left={left}"));
        v.push(format!("release.rollback cause=requested try={try_} retry=now reason={}", eio("b")));
    }
    v.push("fault.injected kind=rollback left=0".into());
    v.push(format!("release.rollback cause=requested tries=3 then=reboot result=error error={}", eio("b")));
    v.extend(owned(&["shutdown.begin action=reboot", "release.rollback cause=reboot-during-trial from=5 to=1", "shutdown.begin action=poweroff"]));
    v
}

/// `fault-map-rollback`'s sequence over its three boots (release 1's
/// containers `meter` and `sensor` share its one image).
pub fn map_rollback_expected() -> Vec<String> {
    vec![
        staged("reboot-swap", 9),
        "update.reboot version=9".into(),
        "shutdown.begin action=reboot".into(),
        // Its boot is its trial's.
        "release.trial version=9".into(),
        "release.rollback cause=requested from=9 to=1".into(),
        "update.switch version=1 kept=0 changed=meter,sensor added= removed=".into(),
        "fault.injected kind=map left=0".into(),
        format!("image.verity step=fault result=error error={EIO}"),
        "update.switch version=1 result=error missing=meter,sensor then=reboot".into(),
        "shutdown.begin action=reboot".into(),
        "shutdown.begin action=poweroff".into(),
    ]
}

/// A trial that fails by `sensor`'s `reason` (the container's verdict)
/// and `cause` (the rollback's), with the checks before it.
pub fn trial_failed_expected(bundle: &str, version: u64, checks: &[&str], reason: &str, cause: &str) -> Vec<String> {
    let mut v = vec![
        staged(bundle, version),
        format!("update.switch version={version} kept=1 changed=sensor added= removed="),
        format!("release.trial version={version}"),
    ];
    v.extend(owned(checks));
    v.push(format!("container.unhealthy name=sensor reason={reason}"));
    v.push(format!("release.rollback cause={cause} from={version} to=1 container=sensor"));
    v.push("update.switch version=1 kept=1 changed=sensor added= removed=".into());
    v.push("shutdown.begin action=poweroff".into());
    v
}

fn boot(l: &dyn Launch, name: &str, cmdline: &str, allow_reboot: bool, lim: &Limits) -> Result<Machine, String> {
    let spec = BootSpec { allow_reboot, cmdline: cmdline.to_string(), ..crate::updates::update_spec(name, name) };
    let mut m = l.boot(&spec)?;
    expect_boot(&mut m, lim)?;
    Ok(m)
}

/// Boot, let the agent pass `checks`, power off; then the whole sequence.
fn run(l: &dyn Launch, name: &str, cmdline: &str, checks: &[&str], want: &[String]) -> Result<Machine, String> {
    let lim = limits(l.arch());
    let mut m = boot(l, name, cmdline, false, &lim)?;
    for check in checks {
        agent_pass(&mut m, check, &lim)?;
    }
    expect_poweroff(&mut m, "SIGTERM", &lim)?;
    same_sequence(&format!("{name}'s events"), want, &followed(&m.events()))?;
    Ok(m)
}

fn trial_write(l: &dyn Launch) -> Result<(), String> {
    let m =
        run(l, "fault-trial-write", "berth.fail=trial:1", &["refused", "release-1", "kept-running", "on-trial", "commit-requested"], &trial_write_expected())?;
    no_errors(&m, &["update.refused"])
}

fn commit_operator(l: &dyn Launch) -> Result<(), String> {
    let m = run(l, "fault-commit-operator", "berth.fail=commit:1", &["on-trial", "commit-failed", "committed"], &commit_operator_expected())?;
    retried_in_time(&m)
}

fn commit_write(l: &dyn Launch) -> Result<(), String> {
    let m = run(l, "fault-commit-write", "berth.fail=commit:1", &["committed", "serving"], &commit_write_expected())?;
    retried_in_time(&m)
}

/// The failed commit and the one that recorded it, [`COMMIT_RETRY_S`] apart.
fn retried_in_time(m: &Machine) -> Result<(), String> {
    let events = m.events();
    let commits: Vec<&Event> = events.iter().filter(|e| e.name == "release.commit").collect();
    if let [failed, done] = commits.as_slice() {
        let gap = done.t - failed.t;
        if !(COMMIT_RETRY_S - 0.05..=COMMIT_RETRY_S + SLACK_S).contains(&gap) {
            return Err(format!("the commit was tried again {gap:.2} s after it failed, want {COMMIT_RETRY_S} s"));
        }
    }
    no_errors(m, &["release.commit"])
}

fn rollback_write(l: &dyn Launch) -> Result<(), String> {
    let m = run(l, "fault-rollback-write", "berth.fail=rollback:1", &["on-trial", "rollback-requested", "rolled-back", "serving"], &rollback_write_expected())?;
    no_errors(&m, &[])
}

fn rollback_reboot(l: &dyn Launch) -> Result<(), String> {
    let lim = limits(l.arch());
    let mut m = boot(l, "fault-rollback-reboot", "berth.fail=rollback:3", true, &lim)?;
    let before = m.cursor();
    for check in ["on-trial", "rollback-refused"] {
        agent_pass(&mut m, check, &lim)?;
    }
    // berth's reboot may begin before the agent's last line.
    m.set_cursor(before);
    m.expect_event_where("shutdown.begin", |e| e.is("action", "reboot"), lim.step)?;
    expect_boot(&mut m, &lim)?;
    for check in ["rolled-back-by-boot", "serving"] {
        agent_pass(&mut m, check, &lim)?;
    }
    expect_poweroff(&mut m, "SIGTERM", &lim)?;
    same_sequence("fault-rollback-reboot's events", &rollback_reboot_expected(), &followed(&m.events()))?;
    no_errors(&m, &["release.rollback"])
}

fn map_rollback(l: &dyn Launch) -> Result<(), String> {
    // The expected sequence has one mapping fail for both containers.
    let info = l.updates()?;
    let v1 = info.known.iter().find(|k| k.version == 1).ok_or("release 1 is not known")?;
    if v1.images.len() != 1 {
        return Err(format!("release 1 has {} images; the case is written for one, shared by meter and sensor", v1.images.len()));
    }
    let lim = limits(l.arch());
    let mut m = boot(l, "fault-map-rollback", "berth.fail=map:1", true, &lim)?;
    agent_pass(&mut m, "update-requested", &lim)?;
    m.expect_event_where("shutdown.begin", |e| e.is("action", "reboot"), lim.step)?;
    expect_boot(&mut m, &lim)?;
    let before = m.cursor();
    for check in ["on-trial", "rollback-requested"] {
        agent_pass(&mut m, check, &lim)?;
    }
    m.set_cursor(before);
    m.expect_event_where("shutdown.begin", |e| e.is("action", "reboot"), lim.step)?;
    expect_boot(&mut m, &lim)?;
    for check in ["rolled-back", "serving"] {
        agent_pass(&mut m, check, &lim)?;
    }
    expect_poweroff(&mut m, "SIGTERM", &lim)?;
    same_sequence("fault-map-rollback's events", &map_rollback_expected(), &followed(&m.events()))?;
    // The failed mapping, the two containers it leaves without a spec and
    // the switch that says so are this case's errors.
    no_errors(&m, &["image.verity", "container.start:meter", "container.start:sensor", "update.switch"])
}

/// The time from `sensor`'s start in the trial to `container.unhealthy`.
fn unhealthy_after(events: &[Event], version: u64) -> Result<f64, String> {
    let trial = events.iter().position(|e| e.name == "release.trial" && e.is("version", &version.to_string())).ok_or("no trial")?;
    let rest = events.get(trial..).unwrap_or_default();
    let start = rest.iter().find(|e| e.name == "container.start" && e.is("name", "sensor")).ok_or("sensor did not start in the trial")?;
    let bad = rest.iter().find(|e| e.name == "container.unhealthy").ok_or("no container.unhealthy")?;
    Ok(bad.t - start.t)
}

fn in_time(what: &str, got: f64, want: f64) -> Result<(), String> {
    if !(want - 0.05..=want + SLACK_S).contains(&got) {
        return Err(format!("{what} {got:.2} s after sensor's start, want {want} s"));
    }
    Ok(())
}

fn trial_unready(l: &dyn Launch) -> Result<(), String> {
    let want = trial_failed_expected("trial-unready", 7, &[], "ready-timeout", "readiness-timeout");
    let m = run(l, "trial-unready", "", &["rolled-back", "release-1", "serving"], &want)?;
    in_time("unhealthy (not ready)", unhealthy_after(&m.events(), 7)?, UNREADY_S)?;
    no_errors(&m, &[])
}

fn trial_unhealthy(l: &dyn Launch) -> Result<(), String> {
    let checks = ["container.check name=sensor fails=1 result=failed", "container.check name=sensor fails=2 result=failed"];
    let want = trial_failed_expected("trial-unhealthy", 8, &checks, "check", "health-check");
    let m = run(l, "trial-unhealthy", "", &["rolled-back", "release-1", "serving"], &want)?;
    in_time("unhealthy (health check)", unhealthy_after(&m.events(), 8)?, HEALTH_S)?;
    no_errors(&m, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values the cases compute with are the releases' own.
    #[test]
    fn the_timing_constants_are_the_releases() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/update");
        let read = |d: &str, f: &str| std::fs::read_to_string(dir.join(d).join(f)).unwrap();
        let ms = |s: f64| (s * 1000.0) as u64;
        assert!(read("trial-unready", "sensor.toml").contains(&format!("timeout_ms = {}", ms(UNREADY_S))));
        assert!(read("trial-unhealthy", "sensor.toml").contains(&format!("interval_ms = {}, timeout_ms = 2000, retries = 2", ms(HEALTH_S / 2.0))));
        assert!(read("trial-unready", "release.toml").lines().any(|l| l == "version = 7"));
        assert!(read("trial-unhealthy", "release.toml").lines().any(|l| l == "version = 8"));
    }

    #[test]
    fn the_reboot_case_tries_three_times_and_boots_back() {
        let want = rollback_reboot_expected();
        assert_eq!(want.len(), 12);
        assert_eq!(want[9], "shutdown.begin action=reboot");
        assert!(want[8].starts_with("release.rollback cause=requested tries=3 then=reboot result=error error=write /data/berth/record.b: "));
    }

    #[test]
    fn projection_follows_the_keys_judged() {
        let e = crate::event::parse_line("BERTH t=9.0 ev=release.commit version=2 retry_s=2 result=error error=\"x y\"").unwrap();
        assert_eq!(followed(&[e]), ["release.commit version=2 retry_s=2 result=error error=x y"]);
    }
}
