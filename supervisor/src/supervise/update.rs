//! Updates of the running system: stage a bundle, switch to its release,
//! hold it on trial, commit it or roll it back.
//!
//! The loop must not do the slow parts itself: staging runs in a child
//! process, a switch's preparation in a helper thread.
//!
//! - Stage ([`crate::release::store::Store::stage`]): every check before
//!   anything changes; a refused bundle leaves the device as it was. Its
//!   new images are mapped then too ([`crate::release::images`]), and unmapped again
//!   if the update is refused after all. All of it runs in the stager, a
//!   child process ([`crate::release::stager`], followed by [`super::stage`]); the
//!   loop only reads back the small release object and switches.
//! - Switch: containers whose manifest (image included) is unchanged keep
//!   running untouched; changed ones are stopped and started from the new
//!   release; removed ones are stopped; new ones start, each after its
//!   dependencies are ready. Their specs are prepared in a helper thread
//!   ([`super::switch`]); the switch lands when it reports. A release with `reboot = true` switches by
//!   rebooting instead (its boot is the trial's).
//! - Trial: committed once every container has been running and ready for
//!   the release's `commit_window_s` without a break; rolled back at once by
//!   a crash loop, a failed health check or readiness timeout, a container
//!   that ends for good, at the release's `trial_deadline_s`, or on request
//!   (the rules: [`crate::release::trial`]; the loop's side: [`super::trial`]). A
//!   rollback switches back the same way; a reboot or power cut during the
//!   trial rolls back at the next boot (the store's record decides). A
//!   rollback unmaps the failed release's images.
//! - After a commit, the images the release before it used and it does
//!   not are unmapped, and images no kept release uses are removed (their
//!   space is free at once).
//!
//! Bundles come from `berthctl update PATH` or appear in [`INBOX`], which is
//! looked at every [`INBOX_EVERY`] seconds; an inbox bundle is renamed to a
//! `taking` name before its staging and removed as soon as it is staged or
//! refused, before anything switches; one whose staging was interrupted
//! twice is quarantined ([`crate::release::inbox`]).

use super::{life, Pid1, Slot, SlotState};
use crate::common::log::Event;
use crate::release::record::Cause;
use crate::release::store::Store;
use crate::release::{inbox, Release, TrustedKeys};
use std::path::Path;

/// Where bundles dropped on the data partition are picked up.
pub const INBOX: &str = inbox::INBOX;
/// Seconds between looks into the inbox.
pub const INBOX_EVERY: f64 = 5.0;

/// The release store and what the loop needs to switch releases.
pub struct Updates {
    pub store: Store,
    pub keys: TrustedKeys,
    pub board: crate::release::board::Board,
    pub running: Release,
    pub trial: Option<Trial>,
    pub inbox_due: f64,
    /// Why no release runs, in the recovery state (see [`super::recovery`]):
    /// the loop, the inbox, `berth receive` and the control socket run
    /// with no container, so that a signed bundle repairs the device.
    pub recovery: Option<String>,
    /// The release on trial is a try of this system slot: its commit makes
    /// the slot primary in the bootloader, its rollback goes back to the
    /// old slot by a reboot (`boot::systry`).
    pub system_try: Option<crate::release::bootenv::PendingTry>,
}

/// A release on trial (judged by the rules of [`crate::release::trial`], applied in
/// [`super::trial`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Trial {
    pub version: u64,
    pub window: f64,
    /// Since when every container that counts has been all good.
    pub healthy_since: Option<f64>,
    /// When it rolls back without a commit (monotonic seconds).
    pub deadline: f64,
    /// Containers the update kept unchanged that had already failed or
    /// ended before the switch: not waited for.
    pub ended_before: Vec<String>,
    /// A commit whose record write failed is not tried again before this
    /// (monotonic seconds; 0: no failure).
    pub commit_retry_at: f64,
    /// An operator's commit whose record write failed: tried again at
    /// `commit_retry_at` whether or not the window has passed (the
    /// operator was told so), until it is recorded or the deadline.
    pub commit_asked: bool,
    /// Images the release before it used and it does not: unmapped at the
    /// commit, so that the store's gc frees their space at once.
    pub superseded: Vec<crate::release::manifest::Digest>,
}

impl Trial {
    /// A trial that begins now.
    pub fn new(r: &Release) -> Trial {
        let deadline = crate::release::trial::deadline(crate::common::log::now(), r.trial_deadline_s);
        Trial {
            version: r.version,
            window: f64::from(r.commit_window_s),
            healthy_since: None,
            deadline,
            ended_before: Vec::new(),
            commit_retry_at: 0.0,
            commit_asked: false,
            superseded: Vec::new(),
        }
    }
}

/// What changes between the running release and a new one.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Diff {
    pub kept: Vec<String>,
    pub changed: Vec<String>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

/// Compare two releases container by container (pure).
pub fn diff(old: &Release, new: &Release) -> Diff {
    let mut d = Diff::default();
    for m in new.containers.iter() {
        match old.containers.iter().find(|o| o.name == m.name) {
            Some(o) if o == m => d.kept.push(m.name.to_string()),
            Some(_) => d.changed.push(m.name.to_string()),
            None => d.added.push(m.name.to_string()),
        }
    }
    for o in old.containers.iter() {
        if !new.containers.iter().any(|m| m.name == o.name) {
            d.removed.push(o.name.to_string());
        }
    }
    d
}

impl Pid1 {
    /// Take charge of the store at boot (with the trial of the booted
    /// release, if it is on one).
    pub fn set_updates(&mut self, u: Updates) {
        self.updates = Some(u);
        self.stage.quarantined = inbox::load(Path::new(inbox::QUARANTINE));
    }

    /// A slot whose container ended and that has a new spec waiting: swap it
    /// in and start afresh.
    pub(super) fn take_replacement(&mut self, i: usize) {
        let Some(s) = self.slots.get_mut(i) else {
            return;
        };
        let Some(spec) = s.replace.take() else { return };
        *s = Slot::new(*spec);
        self.watch_notify_sockets();
    }

    /// Every tick: judge the trial (see [`super::trial`]); look into the
    /// inbox. Returns the next time this wants a tick.
    pub(super) fn update_tick(&mut self, now: f64) -> Option<f64> {
        let next = self.trial_tick(now);
        let mut inbox = false;
        let mut due = None;
        if let Some(u) = self.updates.as_mut() {
            if now >= u.inbox_due {
                u.inbox_due = now + INBOX_EVERY;
                inbox = true;
            }
            due = Some(u.inbox_due);
        }
        if inbox {
            self.look_in_inbox();
        }
        match (next, due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Look into the inbox: quarantine what must not be tried (again),
    /// then take one bundle (see [`crate::release::inbox`]) and start its
    /// staging. Nothing is taken while a staging runs or a release is on
    /// trial: the bundle waits for a later look.
    fn look_in_inbox(&mut self) {
        if self.may_stage().is_err() {
            return;
        }
        self.collect_drops();
        let dir = Path::new(INBOX);
        let Ok(entries) = inbox::list(dir) else {
            return;
        };
        for p in inbox::pick(&entries) {
            match p {
                inbox::Pick::Quarantine { name, base, cause } => self.quarantine(&name, &base, &cause.to_string()),
                inbox::Pick::Stage { from, to, base, attempt } => self.take_from_inbox(&from, &to, &base, attempt),
            }
        }
    }

    /// Move the bundles containers finished in their update drops into the
    /// inbox (see [`crate::release::drops`]), one `update.drop` line each.
    fn collect_drops(&mut self) {
        for s in self.slots.iter().filter(|s| !s.retired) {
            let Some(dir) = s.spec.drop.as_deref() else { continue };
            let moved = match crate::release::drops::collect(Path::new(dir), &s.spec.name, Path::new(INBOX)) {
                Ok(m) => m,
                // Not made yet (the container never started) or unreadable.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    Event::error("update.drop").kv("name", &s.spec.name).kv("step", "list").result(&Err::<(), _>(e)).emit();
                    continue;
                }
            };
            for m in moved {
                let ev = match &m.result {
                    Ok(()) => Event::info("update.drop"),
                    Err(_) => Event::error("update.drop"),
                };
                ev.kv("name", &s.spec.name).kv("bundle", &m.from).kv("inbox", &m.to).result(&m.result).emit();
            }
        }
    }

    /// Take `from` as `to` (attempt `attempt`) and start staging it.
    fn take_from_inbox(&mut self, from: &str, to: &str, base: &str, attempt: u8) {
        let dir = Path::new(INBOX);
        let bundle = dir.join(base).display().to_string();
        Event::info("update.inbox").kv("bundle", &bundle).kv("attempt", attempt).kv("taking", to).emit();
        if let Err(e) = inbox::rename(dir, from, to) {
            Event::error("update.inbox").kv("bundle", &bundle).kv("step", "rename").result(&Err::<(), _>(e)).emit();
            return;
        }
        let file = match super::stage::open_bundle(&dir.join(to)) {
            Ok(f) => f,
            Err(why) => return self.quarantine(to, base, &why),
        };
        let origin = super::stage::Origin::Inbox { base: base.to_string(), taking: to.to_string(), attempt };
        if let Err(why) = self.start_staging(file, &bundle, origin, Some(dir.join(to))) {
            // Left taken: the next look tries it again, as after a crash.
            self.refused(&bundle, "device", &why);
        }
    }

    /// Move an inbox entry into the quarantine with its cause.
    fn quarantine(&mut self, name: &str, base: &str, cause: &str) {
        let bundle = Path::new(INBOX).join(base).display().to_string();
        match inbox::quarantine(Path::new(INBOX), Path::new(inbox::QUARANTINE), name, base, cause) {
            Ok(q) => {
                Event::warn("update.quarantine").kv("bundle", &bundle).kv("cause", cause).kv("seq", q.seq).emit();
                self.stage.quarantined = inbox::load(Path::new(inbox::QUARANTINE));
            }
            Err(e) => Event::error("update.quarantine").kv("bundle", &bundle).kv("cause", cause).result(&Err::<(), _>(e)).emit(),
        }
    }
}

/// The state name for a slot (status).
pub(super) fn state_name(s: &Slot) -> &'static str {
    match s.state {
        SlotState::Waiting if s.replace.is_some() => "updating",
        SlotState::Waiting => "waiting",
        SlotState::Starting => "starting",
        SlotState::Running if s.life.stopping => "stopping",
        SlotState::Running => "running",
        SlotState::Stopped => "stopped",
        SlotState::Failed => "failed",
    }
}

/// The trial cause for an unhealthy verdict.
pub(super) fn cause_of(reason: life::Reason) -> Cause {
    match reason {
        life::Reason::ReadyTimeout => Cause::ReadinessTimeout,
        life::Reason::Watchdog | life::Reason::Check => Cause::HealthCheck,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(names: &[(&str, &str)]) -> Release {
        let mut r = crate::release::tests::small();
        r.containers = Default::default();
        for (name, arg) in names {
            let mut m = crate::release::manifest::tests::examples()[0].clone();
            m.name = (*name).try_into().unwrap();
            m.entry.argv[0] = (*arg).try_into().unwrap();
            r.containers.push(m).unwrap();
        }
        r
    }

    #[test]
    fn diff_sorts_containers_into_kept_changed_added_removed() {
        let old = release(&[("a", "/bin/a"), ("b", "/bin/b"), ("c", "/bin/c")]);
        let new = release(&[("a", "/bin/a"), ("b", "/bin/b2"), ("d", "/bin/d")]);
        let d = diff(&old, &new);
        assert_eq!(d.kept, ["a"]);
        assert_eq!(d.changed, ["b"]);
        assert_eq!(d.added, ["d"]);
        assert_eq!(d.removed, ["c"]);
        assert_eq!(diff(&new, &new).kept.len(), 3);
    }
}
