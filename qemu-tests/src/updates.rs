//! Updates of a running system under QEMU: the `update` variant's data
//! partition holds release 1 and bundles under `/data/test/` (built by xtask,
//! see `qemu-tests/manifests/update/`); the guest agent applies them with
//! `berthctl update` and reports what `berthctl` shows.
//!
//! - `update`: release 2 changes one container; only it restarts, the new
//!   version runs, the release commits after its window.
//! - `update-rollback`: release 3 crash-loops; it rolls back by itself, the
//!   old containers run again, release 3's image is unmapped again (no dm or
//!   loop device left), the cause is recorded and survives a reboot.
//! - `update-refused`: each bad bundle is refused with its own error; the
//!   running release, containers and image mappings are untouched.
//! - `update-reboot`: a reboot during the trial rolls back; after the
//!   commit it does not.
//! - `update-floor`: after release 2 commits, both record copies are
//!   garbled; the next boot rebuilds the record with the floor (2), refuses
//!   release 1 below it and runs release 2.
//! - `power-cut/*`: the update is cut at each of its store writes
//!   (`berth.cut=N`) and at spread instants (the harness kills QEMU); the
//!   next boot on the same data partition must run one complete, verified
//!   release with a consistent record and no stray files. After a step cut
//!   it must be exactly what the host model predicts for that write
//!   (release, phase, rollback, store notes, gc: [`crate::cutverdict`]);
//!   after a timed cut, what the phase the update had reached allows.
//!
//! The pure parts (parsing `berthctl` output, judging the store listing) are
//! shared with the guest agent and unit tested here.

use crate::cutverdict::Verdict;
use crate::event::Event;
use crate::machine::Machine;
use crate::scenario::Case;
use crate::scenarios::{agent_pass, expect_boot, expect_poweroff, field_is, limits, no_errors, release_events, spec, BootSpec, Launch, Limits};
use std::sync::Arc;
use std::time::Duration;

/// A bundle staging must refuse, and the error text it must give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Its path on the device.
    pub bundle: String,
    /// The device's error text (`update.refused reason=`).
    pub reason: String,
    /// The text is exact; otherwise a prefix (the free space varies).
    pub exact: bool,
}

/// A release the data partition may hold, as files of the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    pub version: u64,
    /// Its object's file name under `releases/`.
    pub release: String,
    /// Its images' file names under `images/` and sizes.
    pub images: Vec<(String, u64)>,
}

/// What the `update` variant's data partition carries (built by xtask).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateInfo {
    /// Store writes of the whole update to release 2 (stage, trial,
    /// commit, gc), counted by running the device's store code on the host.
    pub writes: u64,
    /// The store writes of that update as the store format in
    /// `docs/updates.md` calls for them (`OP KIND`, write 1 first), derived
    /// from the two releases without berth's store code; the host model's
    /// writes are checked against them when the bundles are built.
    pub format_writes: Vec<String>,
    /// The bundles under `/data/test/refused/`, in name order.
    pub refused: Vec<Refusal>,
    /// Releases 1 and 2 as store files.
    pub known: Vec<Known>,
    /// Where the bundle of release 2 is on the host.
    pub v2_bundle: std::path::PathBuf,
    /// The trial scenarios' bundles: device path and id (`sha256:<hex>` of
    /// the bundle file).
    pub ids: Vec<(String, String)>,
    /// The host model: what the boot after a cut at each write must find.
    pub plan: crate::cutverdict::Plan,
}

/// The device's `update.done store_writes=` against the writes the store
/// format calls for (`want`, `OP KIND` each): a difference names the first
/// write the count leaves out, or says it made more.
pub fn check_store_writes(want: &[String], device: Option<&str>) -> Result<(), String> {
    let n = want.len();
    let Some(got) = device.and_then(|d| d.parse::<usize>().ok()) else {
        return Err(format!("update.done has no store_writes count ({device:?}), the store format calls for {n}"));
    };
    match want.get(got) {
        _ if got == n => Ok(()),
        Some(w) => Err(format!("the device made {got} store writes, the store format calls for {n}: the first it did not make is write {} ({w})", got + 1)),
        None => Err(format!(
            "the device made {got} store writes, the store format calls for {n}: {} more after the last ({})",
            got - n,
            want.last().map_or("none", String::as_str)
        )),
    }
}

/// One container row of `berthctl status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub name: String,
    pub state: String,
    pub ready: bool,
    pub pid: Option<u32>,
}

/// The container rows of `berthctl status` (`NAME KIND STATE READY PID ...`;
/// the header, the `layers:` lines and host services are skipped).
pub fn parse_status(text: &str) -> Vec<Row> {
    text.lines()
        .filter(|l| !l.starts_with(' ') && !l.starts_with("NAME "))
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let (name, kind, state, ready, pid) = (w.next()?, w.next()?, w.next()?, w.next()?, w.next()?);
            (kind == "container").then(|| Row { name: name.into(), state: state.into(), ready: ready == "yes", pid: pid.parse().ok() })
        })
        .collect()
}

/// What `berthctl release` prints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReleaseView {
    pub version: u64,
    /// `committed` or `trial`.
    pub state: String,
    pub previous: Option<u64>,
    /// One line per rollback: `rollback from 3 to 2 at boot 1: crash-loop (flaky)`.
    pub rollbacks: Vec<String>,
    /// One line per quarantined bundle: `quarantined NAME.bundle: cause`.
    pub quarantined: Vec<String>,
}

/// Parse `berthctl release`; `None` when the first two lines are not there.
pub fn parse_release(text: &str) -> Option<ReleaseView> {
    let mut lines = text.lines();
    let version = lines.next()?.strip_prefix("release ")?.split(' ').next()?.parse().ok()?;
    let state_line = lines.next()?.strip_prefix("state ")?;
    let state = state_line.split(' ').next()?.to_string();
    let previous = state_line.split("(previous release ").nth(1).and_then(|r| r.trim_end_matches(')').parse().ok());
    let rest: Vec<&str> = lines.collect();
    let with = |p: &str| rest.iter().filter(|l| l.starts_with(p)).map(|l| l.to_string()).collect();
    Some(ReleaseView { version, state, previous, rollbacks: with("rollback "), quarantined: with("quarantined ") })
}

/// The image mappings as the agent sees them on the device: berth's
/// device-mapper devices (`/sys/block/dm-*/dm/name`), the loop devices with
/// a backing file, and the mounts under `/run/berth/images`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mappings {
    /// Device-mapper names starting `berth-`, sorted.
    pub dm: Vec<String>,
    /// Attached loop devices.
    pub loops: usize,
    /// Mount point names under `/run/berth/images`, sorted.
    pub mounts: Vec<String>,
}

impl Mappings {
    /// One dm device and one loop device per mounted image, nothing else.
    pub fn consistent(&self) -> bool {
        let names: Vec<&str> = self.dm.iter().map(|n| n.strip_prefix("berth-").unwrap_or(n)).collect();
        names == self.mounts.iter().map(String::as_str).collect::<Vec<_>>() && self.loops == self.dm.len()
    }

    /// The agent's one-line form.
    pub fn to_detail(&self) -> String {
        format!("dm={} loops={} mounts={}", self.dm.join(","), self.loops, self.mounts.join(","))
    }
}

/// The store as the agent lists it: `staging=absent|present
/// stray=<names|none> releases=<a.bin,...> images=<x.img:size,...>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    pub staging: bool,
    /// Temporary or unexpected names anywhere in the store.
    pub stray: Vec<String>,
    pub releases: Vec<String>,
    pub images: Vec<(String, u64)>,
}

impl Listing {
    /// The agent's one-line form.
    pub fn to_detail(&self) -> String {
        let list = |v: Vec<String>| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(",")
            }
        };
        format!(
            "staging={} stray={} releases={} images={}",
            if self.staging { "present" } else { "absent" },
            list(self.stray.clone()),
            list(self.releases.clone()),
            list(self.images.iter().map(|(n, s)| format!("{n}:{s}")).collect()),
        )
    }

    /// Parse [`Listing::to_detail`].
    pub fn from_detail(text: &str) -> Option<Listing> {
        let mut l = Listing::default();
        let items = |v: &str| -> Vec<String> {
            if v == "none" {
                Vec::new()
            } else {
                v.split(',').map(String::from).collect()
            }
        };
        for word in text.split_whitespace() {
            let (k, v) = word.split_once('=')?;
            match k {
                "staging" => l.staging = v == "present",
                "stray" => l.stray = items(v),
                "releases" => l.releases = items(v),
                "images" => {
                    for i in items(v) {
                        let (n, s) = i.split_once(':')?;
                        l.images.push((n.to_string(), s.parse().ok()?));
                    }
                }
                _ => return None,
            }
        }
        Some(l)
    }

    /// What the guest can judge alone: no staging, no stray file, some
    /// release (the harness checks the rest against what it built).
    pub fn clean(&self) -> bool {
        !self.staging && self.stray.is_empty() && !self.releases.is_empty()
    }

    /// The store after a boot must hold no staging, no stray file, only
    /// files of known releases (with their sizes), and everything the
    /// running `version` needs.
    pub fn judge(&self, known: &[Known], version: u64) -> Result<(), String> {
        if self.staging {
            return Err("staging/ was left behind".into());
        }
        if !self.stray.is_empty() {
            return Err(format!("stray files in the store: {:?}", self.stray));
        }
        for r in &self.releases {
            if !known.iter().any(|k| &k.release == r) {
                return Err(format!("unknown release object {r}"));
            }
        }
        for (name, size) in &self.images {
            match known.iter().flat_map(|k| k.images.iter()).find(|(n, _)| n == name) {
                Some((_, s)) if s == size => {}
                Some((_, s)) => return Err(format!("image {name} is {size} bytes, want {s} (half-written)")),
                None => return Err(format!("unknown image {name}")),
            }
        }
        let k = known.iter().find(|k| k.version == version).ok_or_else(|| format!("release {version} is not one the update knows"))?;
        if !self.releases.contains(&k.release) {
            return Err(format!("the running release {version}'s object {} is missing", k.release));
        }
        if let Some((n, _)) = k.images.iter().find(|i| !self.images.contains(i)) {
            return Err(format!("the running release {version}'s image {n} is missing"));
        }
        Ok(())
    }
}

/// Every update scenario for one architecture. The power-cut runs are
/// x86_64 only: each cut point costs two boots, and the three boards run the
/// same store code (the store's unit tests cut at every step on the host).
pub fn cases(l: Arc<dyn Launch>) -> Vec<Case> {
    use crate::scenarios::Check;
    let arch = l.arch().to_string();
    let mut table: Vec<(&str, Check)> = vec![
        ("update", update),
        ("update-rollback", update_rollback),
        ("update-refused", update_refused),
        ("update-reboot", update_reboot),
        ("update-floor", crate::floor::update_floor),
        ("push", push),
    ];
    if arch == "x86_64" {
        table.push(("power-cut/steps-odd", |l| power_cut_steps(l, 1)));
        table.push(("power-cut/steps-even", |l| power_cut_steps(l, 0)));
        table.push(("power-cut/timed", power_cut_timed));
    }
    crate::scenarios::cases_of(&l, table)
}

/// `cargo xtask push` into a running release 1 (the `push` variant runs
/// `berth receive` on a virtio port): a push with a wrong hash is refused,
/// naming it, and leaves the inbox alone; release 2's bundle is answered
/// `ok` with its inbox file, which berth takes, switches to and commits.
fn push(l: &dyn Launch) -> Result<(), String> {
    let lim = limits(l.arch());
    let info = l.updates()?;
    let (mut m, sock) = crate::inboxfull::boot_with_push(l, "push", "push", "none")?;
    // The receiver is a host service: its event lines come in its output.
    let from_receive = |m: &mut Machine, ev: &str| crate::inboxfull::from_receive(m, ev, &lim);
    let listen = from_receive(&mut m, "push.listen")?;
    field_is(&listen, "port", "berth.push")?;
    let bad = l.push(&sock, &info.v2_bundle, true)?;
    if !(bad.starts_with("refused ") && bad.contains("SHA-256")) {
        return Err(format!("a push with a wrong hash was answered {bad:?}"));
    }
    let at_refused = m.cursor();
    from_receive(&mut m, "push.refused")?;
    let good = l.push(&sock, &info.v2_bundle, false)?;
    let file = good.strip_prefix("ok ").ok_or_else(|| format!("release 2's push was answered {good:?}"))?.to_string();
    if !(file.starts_with("/data/berth/inbox/push-") && file.ends_with(".bundle")) {
        return Err(format!("the pushed bundle went to {file}, not into the inbox"));
    }
    let received = from_receive(&mut m, "push.received")?;
    field_is(&received, "file", &file)?;
    m.set_cursor(at_refused);
    let taken = m.expect_event("update.inbox", lim.step)?;
    field_is(&taken, "bundle", &file)?;
    let staged = m.expect_event("update.staged", lim.step)?;
    field_is(&staged, "version", "2")?;
    m.expect_event_where("update.switch", |e| e.is("changed", "sensor"), lim.step)?;
    let commit = m.expect_event("release.commit", lim.step * 2)?;
    field_is(&commit, "version", "2")?;
    let _ = std::fs::remove_file(&sock);
    no_errors(&m, &[])
}

/// The device-mapper names (`berth-<first 16 hex digits>`) of the images
/// release 1 uses and release `new` does not (all of release 1's when
/// `new` is not among `known`).
pub fn superseded_names(known: &[Known], new: u64) -> Vec<String> {
    let of = |v: u64| known.iter().find(|k| k.version == v).map(|k| k.images.iter().map(|(f, _)| f.clone()).collect::<Vec<_>>()).unwrap_or_default();
    let (v1, v2) = (of(1), of(new));
    v1.iter().filter(|f| !v2.contains(f)).map(|f| format!("berth-{}", f.get(..16).unwrap_or(f))).collect()
}

/// Between a commit (`from`) and its `update.done` (`to`): exactly the
/// images `want` are unmapped, each `ok` (so the store's gc frees them).
pub fn superseded_unmapped(events: &[Event], mut want: Vec<String>, from: f64, to: f64) -> Result<(), String> {
    want.sort();
    let unmaps: Vec<&Event> = events.iter().filter(|e| e.name == "image.unmap" && e.t >= from && e.t <= to).collect();
    let mut got: Vec<String> = unmaps.iter().filter_map(|e| e.get("image").map(str::to_string)).collect();
    got.sort();
    if got != want || unmaps.iter().any(|e| !e.is("result", "ok")) {
        let seen: Vec<String> = unmaps.iter().map(|e| format!("{:?}", e.fields)).collect();
        return Err(format!("after the commit, want {want:?} unmapped (ok), saw {seen:?}"));
    }
    Ok(())
}

pub(crate) fn update_spec(name: &str, mode: &str) -> BootSpec {
    BootSpec { variant: "update", ..spec(name, mode) }
}

/// The event's index in `events`, for ordering checks.
fn index_of(events: &[Event], pred: impl Fn(&Event) -> bool) -> Result<usize, String> {
    events.iter().position(pred).ok_or_else(|| "event not found".to_string())
}

/// Lifecycle events of container `name` from index `from` on.
fn touched(events: &[Event], from: usize, name: &str) -> Vec<String> {
    events
        .iter()
        .skip(from)
        .filter(|e| ["container.start", "container.stop", "container.restart", "reap", "container.kill"].contains(&e.name.as_str()))
        .filter(|e| e.get("name") == Some(name))
        .map(|e| format!("{} {:?}", e.name, e.fields))
        .collect()
}

/// Release 2 changes `sensor` only: `meter` keeps running untouched (no
/// lifecycle event, same pid before and after), `sensor` is stopped and
/// started from the new release, whose arguments it runs with; after the
/// commit window `release.commit` comes and `berthctl release` shows
/// release 2 committed. The update's store writes are the count xtask made
/// with the same store code.
fn update(l: &dyn Launch) -> Result<(), String> {
    let lim = limits(l.arch());
    let info = l.updates()?;
    let mut m = l.boot(&update_spec("update", "update"))?;
    expect_boot(&mut m, &lim)?;
    let ready = m.cursor();
    let staged = m.expect_event("update.staged", lim.boot)?;
    field_is(&staged, "version", "2")?;
    field_is(&staged, "images_added", "1")?;
    let sw = m.expect_event("update.switch", lim.step)?;
    for (k, v) in [("version", "2"), ("kept", "1"), ("changed", "sensor"), ("added", ""), ("removed", "")] {
        field_is(&sw, k, v)?;
    }
    let trial = m.expect_event("release.trial", lim.step)?;
    field_is(&trial, "version", "2")?;
    let at_trial = m.cursor();
    m.expect_event_where("container.log", |e| e.is("name", "sensor") && e.get("line").is_some_and(|l| l.contains("device=/dev/zero")), lim.step)?;
    m.set_cursor(at_trial);
    let ready_again = m.expect_event_where("container.ready", |e| e.is("name", "sensor"), lim.step)?;
    let commit = m.expect_event("release.commit", lim.step)?;
    field_is(&commit, "version", "2")?;
    field_is(&commit, "window_s", "5")?;
    if commit.t - ready_again.t < 5.0 {
        return Err(format!("committed {:.2} s after the new sensor was ready, before the 5 s window", commit.t - ready_again.t));
    }
    let done = m.expect_event("update.done", lim.step)?;
    check_store_writes(&info.format_writes, done.get("store_writes"))?;
    // Release 2 keeps release 1's only image (meter and the old sensor
    // share it): nothing is unmapped at its commit.
    superseded_unmapped(&m.events(), superseded_names(&info.known, 2), commit.t, done.t)?;
    let timing = measure_update(&m.events(), "sensor")?;
    eprintln!(
        "  update: sensor back {:.3} s after staging (cold start {:.3} s), {} unchanged containers restarted",
        timing.staged_to_ready_s, timing.cold_start_s, timing.unchanged_restarted
    );
    if timing.unchanged_restarted != 0 {
        return Err(format!("{} unchanged containers were restarted", timing.unchanged_restarted));
    }
    m.set_cursor(ready);
    for check in ["update-v2", "update-commit", "update-kept"] {
        agent_pass(&mut m, check, &lim)?;
    }
    expect_poweroff(&mut m, "SIGTERM", &lim)?;
    let events = m.events();
    let from = index_of(&events, |e| e.name == "update.staged")?;
    let upto = index_of(&events, |e| e.name == "shutdown.begin")?;
    let meter: Vec<String> = touched(&events[..upto], from, "meter");
    if !meter.is_empty() {
        return Err(format!("the unchanged meter was touched by the update: {meter:?}"));
    }
    let stop = index_of(&events, |e| e.name == "container.stop" && e.is("name", "sensor") && e.is("by", "update"))?;
    let restarted = events.iter().skip(stop).find(|e| e.name == "container.start" && e.is("name", "sensor"));
    if !restarted.is_some_and(|e| e.is("result", "ok")) {
        return Err(format!("sensor was not started again after its update stop: {restarted:?}"));
    }
    no_errors(&m, &[])
}

/// Release 3 crash-loops `meter`: during its trial `container.failed` rolls
/// it back at once (`release.rollback cause=crash-loop`), the switch back
/// starts release 1's meter again (its readings come), `sensor` is never
/// touched; `berthctl release` shows release 1 committed with the rollback
/// line, and still does after a reboot.
fn update_rollback(l: &dyn Launch) -> Result<(), String> {
    let lim = limits(l.arch());
    let mut m = l.boot(&BootSpec { allow_reboot: true, ..update_spec("update-rollback", "update-rollback") })?;
    expect_boot(&mut m, &lim)?;
    let ready = m.cursor();
    let trial = m.expect_event("release.trial", lim.boot)?;
    field_is(&trial, "version", "3")?;
    m.expect_event_where("container.failed", |e| e.is("name", "meter"), lim.step)?;
    let rb = m.expect_event("release.rollback", lim.step)?;
    for (k, v) in [("cause", "crash-loop"), ("from", "3"), ("to", "1"), ("container", "meter")] {
        field_is(&rb, k, v)?;
    }
    let sw = m.expect_event("update.switch", lim.step)?;
    for (k, v) in [("version", "1"), ("kept", "1"), ("changed", "meter")] {
        field_is(&sw, k, v)?;
    }
    let start = m.expect_event_where("container.start", |e| e.is("name", "meter"), lim.step)?;
    field_is(&start, "result", "ok")?;
    m.expect_event_where("container.log", |e| e.is("name", "meter") && e.get("line").is_some_and(|l| l.contains("device=/dev/urandom")), lim.step)?;
    m.set_cursor(ready);
    agent_pass(&mut m, "update-v3", &lim)?;
    agent_pass(&mut m, "rollback-recorded", &lim)?;
    agent_pass(&mut m, "rollback-running", &lim)?;
    agent_pass(&mut m, "rollback-unmapped", &lim)?;
    m.expect_line("AGENT action=reboot", lim.step)?;
    let b = m.expect_event("shutdown.begin", lim.step)?;
    field_is(&b, "action", "reboot")?;
    let first_boot = m.events();
    expect_boot(&mut m, &lim)?;
    let second = m.events().len();
    agent_pass(&mut m, "rollback-kept", &lim)?;
    expect_poweroff(&mut m, "SIGTERM", &lim)?;
    let events = m.events();
    let from = index_of(&first_boot, |e| e.name == "update.staged")?;
    let upto = index_of(&first_boot, |e| e.name == "shutdown.begin")?;
    let sensor = touched(&first_boot[..upto], from, "sensor");
    if !sensor.is_empty() {
        return Err(format!("sensor, unchanged by release 3, was touched: {sensor:?}"));
    }
    let after: Vec<&Event> = events.iter().skip(second.saturating_sub(5)).filter(|e| e.name.starts_with("release.")).collect();
    if after.iter().any(|e| e.name == "release.rollback" || e.name == "release.trial") {
        return Err(format!("the boot after the rollback rolled back or tried again: {:?}", release_events(&events)));
    }
    match events.iter().filter(|e| e.name == "release.accepted").nth(1) {
        Some(e) => field_is(e, "version", "1")?,
        None => return Err("the second boot accepted no release".into()),
    }
    if events.iter().any(|e| e.name == "release.commit") {
        return Err("the bad release was committed".into());
    }
    // meter's own failures are the point; nothing else may fail.
    no_errors(&m, &["container.failed:meter"])
}

/// Each bad bundle is refused with its own error (the text the device's
/// code gives, computed on the host); nothing is staged or switched, no
/// container is stopped or started, and the agent sees the same release,
/// pids and store files afterwards.
fn update_refused(l: &dyn Launch) -> Result<(), String> {
    let lim = limits(l.arch());
    let info = l.updates()?;
    let mut m = l.boot(&update_spec("update-refused", "update-refused"))?;
    expect_boot(&mut m, &lim)?;
    for r in &info.refused {
        let e = m.expect_event_where("update.refused", |e| e.is("bundle", &r.bundle), lim.step)?;
        let got = e.get("reason").unwrap_or("");
        if (r.exact && got != r.reason) || !got.starts_with(&r.reason) {
            return Err(format!("{} refused with {got:?}, want {}{:?}", r.bundle, if r.exact { "" } else { "a text starting " }, r.reason));
        }
        let stem = r.bundle.rsplit('/').next().unwrap_or("").trim_end_matches(".bundle");
        agent_pass(&mut m, &format!("refused-{stem}"), &lim)?;
    }
    agent_pass(&mut m, "refused-untouched", &lim)?;
    expect_poweroff(&mut m, "SIGTERM", &lim)?;
    let events = m.events();
    let refused = events.iter().filter(|e| e.name == "update.refused").count();
    if refused != info.refused.len() {
        return Err(format!("{refused} bundles refused, want {}", info.refused.len()));
    }
    let from = index_of(&events, |e| e.name == "update.refused")?;
    let upto = index_of(&events, |e| e.name == "shutdown.begin")?;
    let bad: Vec<String> = events[..upto]
        .iter()
        .skip(from)
        .filter(|e| ["update.staged", "update.switch", "release.trial", "container.stop", "container.start", "container.restart"].contains(&e.name.as_str()))
        .map(|e| format!("{} {:?}", e.name, e.fields))
        .collect();
    if !bad.is_empty() {
        return Err(format!("a refused bundle changed something: {bad:?}"));
    }
    let errors: Vec<String> = events
        .iter()
        .filter(|e| (e.get("result") == Some("error") || e.name == "boot.failed") && e.name != "update.refused")
        .map(|e| format!("{} {:?}", e.name, e.fields))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!("unexpected error events: {errors:?}"))
    }
}

/// A reboot during release 2's trial rolls it back at the next boot
/// (`cause=reboot-during-trial`); applied again (through the inbox, which
/// takes the bundle and removes it) and committed, a reboot keeps it.
fn update_reboot(l: &dyn Launch) -> Result<(), String> {
    let lim = limits(l.arch());
    let mut m = l.boot(&BootSpec { allow_reboot: true, ..update_spec("update-reboot", "update-reboot") })?;
    expect_boot(&mut m, &lim)?;
    // The record says trial from the switch on (`update.switch`); the
    // agent reboots once `berthctl release` says so, which may come before
    // the switch has landed (`release.trial`): both orders are the same
    // device state, so each is looked for from here.
    let switch = m.cursor();
    field_is(&m.expect_event("update.switch", lim.boot)?, "version", "2")?;
    m.set_cursor(switch);
    agent_pass(&mut m, "update-v2", &lim)?;
    m.expect_line("AGENT action=reboot", lim.step)?;
    field_is(&m.expect_event("shutdown.begin", lim.step)?, "action", "reboot")?;
    // Second boot: the interrupted trial rolls back.
    m.expect_event_where("boot.start", |e| e.is("stage", "initramfs"), lim.boot)?;
    let rb = m.expect_event("release.rollback", lim.boot)?;
    for (k, v) in [("cause", "reboot-during-trial"), ("from", "2"), ("to", "1")] {
        field_is(&rb, k, v)?;
    }
    field_is(&m.expect_event("release.accepted", lim.step)?, "version", "1")?;
    m.expect_event("boot.ready", lim.step)?;
    agent_pass(&mut m, "reboot-rolled-back", &lim)?;
    // Applied again through the inbox this time: taken, staged, removed
    // (the inbox's result comes once the switch is made).
    let again = m.cursor();
    let inbox = m.expect_event_where("update.inbox", |e| e.get("result").is_some(), lim.step)?;
    field_is(&inbox, "bundle", "/data/berth/inbox/v2.bundle")?;
    field_is(&inbox, "result", "ok")?;
    m.set_cursor(again);
    field_is(&m.expect_event("release.trial", lim.step)?, "version", "2")?;
    field_is(&m.expect_event("release.commit", lim.step)?, "version", "2")?;
    agent_pass(&mut m, "update-commit", &lim)?;
    m.expect_line("AGENT action=reboot", lim.step)?;
    field_is(&m.expect_event("shutdown.begin", lim.step)?, "action", "reboot")?;
    // Third boot: the committed release stays.
    m.expect_event_where("boot.start", |e| e.is("stage", "initramfs"), lim.boot)?;
    field_is(&m.expect_event("release.accepted", lim.boot)?, "version", "2")?;
    m.expect_event("boot.ready", lim.step)?;
    agent_pass(&mut m, "commit-kept", &lim)?;
    expect_poweroff(&mut m, "SIGTERM", &lim)?;
    let rollbacks: Vec<Event> = m.events().into_iter().filter(|e| e.name == "release.rollback").collect();
    if rollbacks.len() != 1 {
        return Err(format!("want one rollback (the interrupted trial), saw {:?}", rollbacks.iter().map(|e| &e.fields).collect::<Vec<_>>()));
    }
    no_errors(&m, &[])
}

/// How long an update took to bring its changed container back, against a
/// cold start of the same container, from one boot's events (for the
/// benchmark; the `update` scenario prints it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UpdateTiming {
    /// From `update.staged` to the changed container's `container.ready`
    /// (the switch: stop the old run, map the new image, start, ready).
    pub staged_to_ready_s: f64,
    /// A cold start at boot: from `boot.stage stage=containers` to the same
    /// container's first `container.ready`.
    pub cold_start_s: f64,
    /// Other containers started or stopped between `update.staged` and
    /// `release.commit` (0 when only the changed one restarts).
    pub unchanged_restarted: usize,
}

/// Measure [`UpdateTiming`] for container `changed` in a boot's events.
pub fn measure_update(events: &[Event], changed: &str) -> Result<UpdateTiming, String> {
    let find = |from: usize, pred: &dyn Fn(&Event) -> bool| events.iter().enumerate().skip(from).find(|(_, e)| pred(e));
    let ready_of = |e: &Event| e.name == "container.ready" && e.is("name", changed);
    let (boot, containers) = find(0, &|e| e.name == "boot.stage" && e.is("stage", "containers")).ok_or("no boot.stage containers event")?;
    let (_, cold) = find(boot, &ready_of).ok_or_else(|| format!("{changed} never became ready at boot"))?;
    let (staged, st) = find(boot, &|e| e.name == "update.staged").ok_or("no update.staged event")?;
    let (_, hot) = find(staged, &ready_of).ok_or_else(|| format!("{changed} never became ready after the update"))?;
    let end = find(staged, &|e| e.name == "release.commit").map_or(events.len(), |(i, _)| i);
    let mut others: Vec<&str> = events[staged..end]
        .iter()
        .filter(|e| e.name == "container.start" || e.name == "container.stop")
        .filter_map(|e| e.get("name"))
        .filter(|n| *n != changed)
        .collect();
    others.sort_unstable();
    others.dedup();
    Ok(UpdateTiming { staged_to_ready_s: hot.t - st.t, cold_start_s: cold.t - containers.t, unchanged_restarted: others.len() })
}

/// Where a power cut falls.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cut {
    /// berth resets the machine at the update's N-th store write.
    Step(u64),
    /// The harness kills QEMU this long after the agent starts the update.
    After(Duration),
}

/// What the boot after a cut found.
#[derive(Debug, Clone, PartialEq)]
pub struct CutOutcome {
    pub cut: Cut,
    /// The last update event before the cut (or the operation cut, for a step).
    pub at: String,
    /// The release the next boot ran.
    pub version: u64,
    /// `release.rollback` cause at that boot, if any.
    pub rollback: Option<String>,
    /// `release.store` notes at that boot.
    pub notes: Vec<String>,
    /// The whole observed verdict.
    pub verdict: Verdict,
}

impl std::fmt::Display for CutOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.cut {
            Cut::Step(n) => write!(f, "cut at write {n} ({})", self.at)?,
            Cut::After(d) => write!(f, "cut {:.2} s in ({})", d.as_secs_f64(), self.at)?,
        }
        write!(f, " -> release {}", self.version)?;
        if let Some(c) = &self.rollback {
            write!(f, ", rolled back ({c})")?;
        }
        for n in &self.notes {
            write!(f, ", note: {n}")?;
        }
        Ok(())
    }
}

/// The update events, in order, that say how far an update got.
const PROGRESS: [&str; 6] = ["update.staged", "update.switch", "release.trial", "release.commit", "release.gc", "update.done"];

/// Cut one update (boot 1, mode `update-cut`), then boot the same data
/// partition again and check it (mode `store-check`): exactly one release
/// accepted, never refused; the record consistent (`berthctl release` shows
/// that release in the phase it booted in); no staging, no stray or
/// half-written file, everything the release needs present; its
/// containers run (sensor reads `/dev/zero` in release 2, `/dev/urandom`
/// in 1) and no error is logged. The boot's verdict (release, phase,
/// rollbacks, store notes, gc) must be one the host model allows
/// ([`allowed_after`]).
pub fn power_cut_once(l: &dyn Launch, info: &UpdateInfo, cut: Cut, tag: &str) -> Result<CutOutcome, String> {
    let lim = limits(l.arch());
    let cmdline = match cut {
        Cut::Step(n) => format!("berth.cut={n}"),
        Cut::After(_) => String::new(),
    };
    let mut m = l.boot(&BootSpec { cmdline, direct_data: true, ..update_spec(&format!("power-cut-{tag}"), "update-cut") })?;
    let (at, allowed) = match cut {
        Cut::Step(n) => {
            let e = m.expect_event_where("power.cut", |e| e.get("step").is_some(), lim.boot + lim.step)?;
            field_is(&e, "step", &n.to_string())?;
            let st = m.wait_exit(lim.halt)?;
            if !st.success() {
                return Err(format!("QEMU ended with {st} at the cut"));
            }
            let before = e.get("before").unwrap_or("?").to_string();
            let want = info.plan.kinds.get((n as usize).wrapping_sub(1)).map_or("?", String::as_str);
            if before != want {
                return Err(format!("write {n} is a {before} on the device, a {want} in the host model"));
            }
            (before, info.plan.at_cut(n))
        }
        Cut::After(d) => {
            m.expect_line("AGENT action=update", lim.boot)?;
            std::thread::sleep(d);
            m.kill();
            let events = m.events();
            let last = events.iter().rev().find(|e| PROGRESS.contains(&e.name.as_str())).map(|e| e.name.clone());
            let at = last.as_ref().map_or_else(|| "before staged".to_string(), |e| format!("after {e}"));
            (at, allowed_after(&info.plan, last.as_deref()))
        }
    };
    if let (Cut::Step(_), Some(done)) = (cut, m.events().iter().find(|e| e.name == "update.done")) {
        return Err(format!("the update finished before the cut: {:?}", done.fields));
    }
    if allowed.is_empty() {
        return Err(format!("the host model allows nothing at {at}"));
    }
    let data = m.data_image().map(std::path::Path::to_path_buf).ok_or("the first boot has no data image")?;
    drop(m);
    let mut m = l.boot(&BootSpec { data: Some(data.clone()), direct_data: true, ..update_spec(&format!("power-cut-{tag}-after"), "store-check") })?;
    let outcome = check_after_cut(&mut m, info, &lim).and_then(|verdict| {
        if !allowed.contains(&verdict) {
            let want: Vec<String> = allowed.iter().map(|v| v.to_string()).collect();
            return Err(format!("the boot after the cut ({at}) found {verdict}; the host model predicts {}", want.join(" | ")));
        }
        let (version, rollback, notes) = (verdict.version, verdict.rollbacks.first().cloned(), verdict.notes.clone());
        Ok(CutOutcome { cut, at, version, rollback, notes, verdict })
    });
    m.kill();
    if outcome.is_ok() {
        let _ = std::fs::remove_file(&data);
    }
    outcome
}

/// What a timed cut allows, from the last update event seen before the
/// kill: the operation it reports had returned (its promise holds); the
/// device may have gone further than the console showed.
pub fn allowed_after(plan: &crate::cutverdict::Plan, last: Option<&str>) -> Vec<Verdict> {
    let returned = match last {
        None => None,
        Some("update.staged") => Some(0),
        Some("update.switch" | "release.trial") => Some(1),
        Some("release.commit") => Some(2),
        Some(_) => Some(3),
    };
    let from = returned.and_then(|i| plan.op_ends.get(i)).map_or(0, |e| e + 1);
    let mut v: Vec<Verdict> = (from..=plan.writes()).flat_map(|n| plan.in_step(n)).collect();
    if from > plan.writes() {
        v.extend(plan.after_all().cloned());
    }
    v.sort();
    v.dedup();
    v
}

fn check_after_cut(m: &mut Machine, info: &UpdateInfo, lim: &Limits) -> Result<Verdict, String> {
    let acc = m.expect_event("release.accepted", lim.boot)?;
    let version: u64 = acc.get("version").and_then(|v| v.parse().ok()).ok_or("release.accepted has no version")?;
    m.expect_event("boot.ready", lim.step)?;
    let ready = m.cursor();
    let device = if version == 2 { "device=/dev/zero" } else { "device=/dev/urandom" };
    m.set_cursor(0);
    m.expect_event_where("container.log", |e| e.is("name", "sensor") && e.get("line").is_some_and(|l| l.contains("reading=") && l.contains(device)), lim.step)?;
    m.set_cursor(0);
    m.expect_event_where("container.log", |e| e.is("name", "meter") && e.get("line").is_some_and(|l| l.contains("reading=")), lim.step)?;
    m.set_cursor(ready);
    let files = m.expect_line("AGENT check=store-files ", lim.step)?;
    let detail = crate::event::parse_agent_line(&files);
    let Some(crate::event::AgentLine::Check { detail, .. }) = detail else {
        return Err(format!("unreadable agent line {files}"));
    };
    let listing = Listing::from_detail(&detail).ok_or_else(|| format!("unreadable store listing {detail:?}"))?;
    listing.judge(&info.known, version)?;
    agent_pass(m, "store-release", lim)?;
    let events = m.events();
    let boot_end = events.iter().position(|e| e.name == "boot.ready").unwrap_or(events.len());
    let at_boot = &events[..boot_end];
    let trial = at_boot.iter().any(|e| e.name == "release.trial");
    let line = m.lines().into_iter().rev().find(|l| l.contains("AGENT check=store-release ")).unwrap_or_default();
    let phase = if trial { "state trial" } else { "state committed" };
    if !line.contains(&format!("release {version} ")) || !line.contains(phase) {
        return Err(format!("berthctl release does not show release {version} in {phase}: {line}"));
    }
    let bad: Vec<String> = events
        .iter()
        .filter(|e| e.name == "release.rejected" || e.name == "release.none" || e.get("result") == Some("error") || e.name == "boot.failed")
        .map(|e| format!("{} {:?}", e.name, e.fields))
        .collect();
    if !bad.is_empty() {
        return Err(format!("errors after the cut: {bad:?}"));
    }
    if events.iter().filter(|e| e.name == "release.accepted").count() != 1 {
        return Err(format!("more than one release accepted: {:?}", release_events(&events)));
    }
    let rollbacks = at_boot.iter().filter(|e| e.name == "release.rollback").map(|e| e.get("cause").unwrap_or("?").to_string()).collect();
    let notes = at_boot.iter().filter(|e| e.name == "release.store").filter_map(|e| e.get("note").map(String::from)).collect();
    let count = |e: &Event, k: &str| e.get(k).and_then(|v| v.parse().ok()).unwrap_or(usize::MAX);
    let gc = at_boot.iter().find(|e| e.name == "release.gc").map_or((0, 0), |e| (count(e, "images"), count(e, "releases")));
    Ok(Verdict { version, trial, rollbacks, notes, gc })
}

fn report(outcomes: &[CutOutcome]) {
    for o in outcomes {
        eprintln!("  {o}");
    }
}

/// Every store write of the update with the given parity (two cases share
/// the work), then the boot after.
fn power_cut_steps(l: &dyn Launch, parity: u64) -> Result<(), String> {
    let info = l.updates()?;
    if info.writes < 10 {
        return Err(format!("the update makes only {} store writes", info.writes));
    }
    let mut outcomes = Vec::new();
    for n in (1..=info.writes).filter(|n| n % 2 == parity) {
        outcomes.push(power_cut_once(l, &info, Cut::Step(n), &format!("step-{n}")).map_err(|e| format!("cut at write {n}: {e}"))?);
    }
    report(&outcomes);
    let cut: Vec<u64> = (1..=info.writes).filter(|n| n % 2 == parity).collect();
    let exact = cut.iter().filter(|n| info.plan.at_cut(**n).len() == 1).count();
    eprintln!("  {} of these {} writes (of {}) allow exactly one verdict", exact, cut.len(), info.writes);
    Ok(())
}

/// Timed cuts: enough that with the step cuts there are at least 30 cut
/// points, spread from the start of staging to the end of the 5 s commit
/// window (about 5.5 s after the update starts), and two after the commit.
fn power_cut_timed(l: &dyn Launch) -> Result<(), String> {
    let info = l.updates()?;
    let during = 30u64.saturating_sub(info.writes).max(11);
    let span = 5.5;
    let mut cuts: Vec<Duration> = (0..during).map(|k| Duration::from_secs_f64(span * k as f64 / during as f64)).collect();
    cuts.extend([Duration::from_secs_f64(6.5), Duration::from_secs_f64(7.5)]);
    let mut outcomes = Vec::new();
    for (k, d) in cuts.into_iter().enumerate() {
        outcomes.push(power_cut_once(l, &info, Cut::After(d), &format!("timed-{k}")).map_err(|e| format!("cut {:.2} s in: {e}", d.as_secs_f64()))?);
    }
    report(&outcomes);
    if !outcomes.iter().any(|o| o.version == 2) {
        return Err("no cut came after the commit: the timed cuts do not span the whole update".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_write_count_names_the_first_missing_write() {
        let want: Vec<String> = ["stage mkdir", "trial create", "commit sync"].iter().map(|s| s.to_string()).collect();
        assert_eq!(check_store_writes(&want, Some("3")), Ok(()));
        assert_eq!(
            check_store_writes(&want, Some("1")).unwrap_err(),
            "the device made 1 store writes, the store format calls for 3: the first it did not make is write 2 (trial create)"
        );
        assert!(check_store_writes(&want, Some("5")).unwrap_err().contains("2 more after the last (commit sync)"));
        assert!(check_store_writes(&want, None).is_err());
    }

    #[test]
    fn mappings_must_match_one_to_one() {
        let m = |dm: &[&str], loops, mounts: &[&str]| Mappings {
            dm: dm.iter().map(|s| s.to_string()).collect(),
            loops,
            mounts: mounts.iter().map(|s| s.to_string()).collect(),
        };
        assert!(m(&["berth-aa", "berth-bb"], 2, &["aa", "bb"]).consistent());
        assert!(m(&[], 0, &[]).consistent());
        assert!(!m(&["berth-aa", "berth-bb"], 2, &["aa"]).consistent(), "a mapping left without its mount");
        assert!(!m(&["berth-aa"], 2, &["aa"]).consistent(), "a loop device left");
        assert!(!m(&["berth-aa"], 1, &["aa", "cc"]).consistent(), "a mount without its mapping");
        assert_eq!(m(&["berth-aa"], 1, &["aa"]).to_detail(), "dm=berth-aa loops=1 mounts=aa");
    }

    #[test]
    fn update_timing_from_events() {
        let lines = [
            "BERTH t=5.0 ev=boot.stage stage=containers",
            "BERTH t=5.2 ev=container.start name=meter result=ok",
            "BERTH t=5.4 ev=container.ready name=sensor by=start",
            "BERTH t=6.0 ev=update.staged version=2",
            "BERTH t=6.1 ev=container.stop name=sensor by=update",
            "BERTH t=6.3 ev=container.start name=sensor result=ok",
            "BERTH t=6.35 ev=container.ready name=sensor by=start",
            "BERTH t=11.4 ev=release.commit version=2",
            "BERTH t=12.0 ev=container.stop name=meter by=shutdown",
        ];
        let events: Vec<Event> = lines.iter().filter_map(|l| crate::event::parse_line(l)).collect();
        let t = measure_update(&events, "sensor").unwrap();
        assert!((t.staged_to_ready_s - 0.35).abs() < 1e-9 && (t.cold_start_s - 0.4).abs() < 1e-9);
        assert_eq!(t.unchanged_restarted, 0);
        let mut more = events.clone();
        more.insert(5, crate::event::parse_line("BERTH t=6.2 ev=container.start name=meter result=ok").unwrap());
        assert_eq!(measure_update(&more, "sensor").unwrap().unchanged_restarted, 1);
        assert!(measure_update(&events[..3], "sensor").is_err());
    }

    #[test]
    fn status_rows_parse() {
        let text = "NAME                 KIND      STATE    READY    PID     UPTIME RESTARTS    MEMORY  LAST EXIT    NOTE\n\
sensor               container running  yes      123       2.0s        0      120K  -            \n  layers: userns=100000 seccomp=x\n\
meter                container waiting  no         -       0.0s        1         -  exit 1       backoff\n\
net                  service   stopped  no         -       0.0s        0         -  exit 0\n";
        let rows = parse_status(text);
        assert_eq!(rows.len(), 2, "host services are not container rows");
        assert_eq!(rows[0], Row { name: "sensor".into(), state: "running".into(), ready: true, pid: Some(123) });
        assert_eq!(rows[1].pid, None);
        assert!(!rows[1].ready);
    }

    #[test]
    fn release_view_parses() {
        let v =
            parse_release("release 1 signed by key abcd\nstate committed (previous release 3)\nrollback from 3 to 1 at boot 1: crash-loop (meter)\n").unwrap();
        assert_eq!(v.version, 1);
        assert_eq!(v.state, "committed");
        assert_eq!(v.previous, Some(3));
        assert_eq!(v.rollbacks, ["rollback from 3 to 1 at boot 1: crash-loop (meter)"]);
        assert!(v.quarantined.is_empty());
        let q = parse_release("release 1 signed by key k\nstate committed\nquarantined big.bundle: staging was interrupted 2 times\n").unwrap();
        assert_eq!(q.quarantined, ["quarantined big.bundle: staging was interrupted 2 times"]);
        assert_eq!(parse_release("release 2 signed by key k\nstate trial\n").unwrap().previous, None);
        assert!(parse_release("nonsense").is_none());
    }

    #[test]
    fn listing_round_trips_and_judges() {
        let known = vec![
            Known { version: 1, release: "a.bin".into(), images: vec![("x.img".into(), 10)] },
            Known { version: 2, release: "b.bin".into(), images: vec![("x.img".into(), 10), ("y.img".into(), 20)] },
        ];
        let good = Listing { staging: false, stray: vec![], releases: vec!["a.bin".into()], images: vec![("x.img".into(), 10)] };
        assert_eq!(Listing::from_detail(&good.to_detail()), Some(good.clone()));
        assert_eq!(good.judge(&known, 1), Ok(()));
        assert!(good.judge(&known, 2).unwrap_err().contains("b.bin"));
        let half = Listing { images: vec![("x.img".into(), 10), ("y.img".into(), 7)], ..good.clone() };
        assert!(half.judge(&known, 1).unwrap_err().contains("half-written"));
        let stray = Listing { stray: vec![".record.a.tmp".into()], ..good.clone() };
        assert!(Listing::from_detail(&stray.to_detail()).unwrap().judge(&known, 1).is_err());
        assert!(Listing { staging: true, ..good.clone() }.judge(&known, 1).is_err());
        assert!(Listing { releases: vec!["c.bin".into()], ..good }.judge(&known, 1).is_err());
    }
}
