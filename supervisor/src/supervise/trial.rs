//! The loop's side of an update's trial: each container exit is judged by
//! the rules of [`crate::release::trial`], every tick looks at the containers and
//! the deadline, and the trial ends in a commit or a rollback, also when an
//! operator asks (`berthctl commit`, `berthctl rollback`). Each end is
//! recorded in the update's [`crate::supervise::outcome`] record too.
//!
//! It must not judge by rules of its own: the verdicts are
//! [`crate::release::trial`]'s, and this side feeds it and acts on them.

use super::{Pid1, SlotState};
use crate::common::log::Event;
use crate::release::record::Cause;
use crate::release::restart::{Decision, Exit};
use crate::release::trial::{judge_exit, standing, Seen, Step, Verdict};
use crate::supervise::control::{error, Response};
use crate::supervise::outcome::Phase;

/// Record writes a rollback tries, one after another, before it gives up
/// and reboots (the record still says "trial": the boot rolls back).
pub const ROLLBACK_TRIES: u32 = 3;
/// Seconds between tries of a commit whose record write failed; the
/// trial's deadline ends the retries (with a rollback).
pub const COMMIT_RETRY_S: f64 = 2.0;

impl Pid1 {
    /// Whether container `name` of the running release is a one-shot task.
    fn oneshot(&self, name: &str) -> bool {
        self.updates.as_ref().is_some_and(|u| u.running.containers.iter().any(|m| m.name == name && m.oneshot))
    }

    /// Container `name` ended and its restart policy decided: during a
    /// trial, judge the exit (a failure rolls back at once).
    pub(super) fn trial_exit(&mut self, name: &str, decision: &Decision, exit: Exit) {
        if self.updates.as_ref().is_none_or(|u| u.trial.is_none()) {
            return;
        }
        let verdict = judge_exit(decision, exit, self.oneshot(name));
        let said = match verdict {
            Verdict::Restarts => "restarts",
            Verdict::Done => "done",
            Verdict::Fails(_) => "fails",
        };
        Event::info("trial.exit").kv("name", name).kv("exit", super::commands::last_exit(Some(exit))).kv("verdict", said).emit();
        match verdict {
            Verdict::Fails(cause) => {
                let _ = self.roll_back(cause, Some(name));
            }
            Verdict::Done => self.tick(),
            Verdict::Restarts => {}
        }
    }

    /// Whether every container that counts is all good now (see
    /// [`crate::release::trial::standing`]).
    fn trial_all_good(&self) -> bool {
        let Some(t) = self.updates.as_ref().and_then(|u| u.trial.as_ref()) else {
            return false;
        };
        crate::release::trial::all_good(self.slots.iter().filter(|s| !s.retired).map(|s| {
            standing(Seen {
                up: s.pid.is_some() && s.life.ready && !s.life.stopping,
                held: s.held,
                ended_before: t.ended_before.iter().any(|n| n.as_str() == s.spec.name.as_str()),
                oneshot_done: s.pid.is_none() && s.state == SlotState::Stopped && s.last_exit == Some(Exit::Code(0)) && self.oneshot(&s.spec.name),
            })
        }))
    }

    /// Containers the switch kept unchanged that had already failed or
    /// ended (not counting one-shot tasks that are done, nor ones an
    /// operator stopped): the trial does not wait for them.
    pub(super) fn ended_before_switch(&self) -> Vec<String> {
        self.slots
            .iter()
            .filter(|s| !s.retired && s.replace.is_none() && !s.held && s.pid.is_none())
            .filter(|s| matches!(s.state, SlotState::Failed | SlotState::Stopped))
            .filter(|s| !(s.last_exit == Some(Exit::Code(0)) && self.oneshot(&s.spec.name)))
            .map(|s| s.spec.name.to_string())
            .collect()
    }

    /// One look at the trial: commit after its window, roll back at its
    /// deadline. The next time it wants a look, while it is open.
    pub(super) fn trial_tick(&mut self, now: f64) -> Option<f64> {
        let good = self.trial_all_good();
        let t = self.updates.as_mut()?.trial.as_mut()?;
        if good {
            t.healthy_since.get_or_insert(now);
        } else {
            t.healthy_since = None;
        }
        if t.commit_asked && now < t.deadline {
            if now < t.commit_retry_at {
                return Some(t.commit_retry_at);
            }
            return match self.commit("operator") {
                Ok(_) => None,
                Err(_) => self.updates.as_ref()?.trial.as_ref().map(|t| t.commit_retry_at.min(t.deadline)),
            };
        }
        match crate::release::trial::step(now, t.healthy_since, t.window, t.deadline) {
            Step::Wait { until } => Some(until),
            Step::Commit if now < t.commit_retry_at => Some(t.commit_retry_at.min(t.deadline)),
            // A commit whose record write failed is tried again at its
            // retry time: ask for that tick.
            Step::Commit => match self.commit("window") {
                Ok(_) => None,
                Err(_) => self.updates.as_ref()?.trial.as_ref().map(|t| t.commit_retry_at.min(t.deadline)),
            },
            Step::TimedOut => {
                let _ = self.roll_back(Cause::TrialTimeout, None);
                None
            }
        }
    }

    /// End the trial with a rollback to the previous release, by the same
    /// switch as an update; `(from, to)` on success.
    pub(super) fn roll_back(&mut self, cause: Cause, container: Option<&str>) -> Result<(u64, u64), String> {
        let Some(u) = self.updates.as_mut() else {
            return Err("no release store on this device".into());
        };
        if u.trial.is_none() {
            return Err("no release is on trial".into());
        }
        u.trial = None;
        let name = container.map(|n| {
            let mut s = heapless::String::new();
            let _ = s.push_str(n);
            s
        });
        self.stage.log.end(Phase::RolledBack, cause.name(), container.unwrap_or(""));
        let mut tries = 0;
        let rb = loop {
            tries += 1;
            match u.store.rollback(cause, name.clone()) {
                Ok(rb) => break rb,
                Err(e) if tries < ROLLBACK_TRIES => {
                    Event::warn("release.rollback").kv("cause", cause).kv("try", tries).kv("retry", "now").kv("reason", e).emit();
                }
                Err(e) => {
                    // The record still says "trial": the boot rolls back.
                    Event::error("release.rollback").kv("cause", cause).kv("tries", tries).kv("then", "reboot").result(&Err::<(), _>(e.to_string())).emit();
                    let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGINT);
                    return Err(format!("the rollback could not be recorded ({e}); rebooting, the boot rolls back"));
                }
            }
        };
        let mut ev = Event::warn("release.rollback").kv("cause", rb.cause).kv("from", rb.from).kv("to", rb.to);
        if let Some(n) = container {
            ev = ev.kv("container", n);
        }
        ev.emit();
        if let Some(p) = u.system_try.take() {
            // The release rolled back to lives on the old slot: back to it.
            let r = set_slot(&u.board, |_| crate::release::bootenv::BootState::fall_back(p.from));
            let cleared = crate::release::slottry::clear(&mut crate::release::durable::SysIo, u.store.dir()).map_err(|e| e.to_string());
            let ev = Event::warn("update.system").kv("phase", "rolled-back").kv("slot", p.to.name()).kv("back_to", p.from.name()).kv("cause", rb.cause);
            ev.result(&r.and(cleared)).emit();
            // Whether or not the bootloader took it, this slot's attempt is spent.
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGINT);
            return Ok((rb.from, rb.to));
        }
        if rb.to == 0 {
            self.enter_recovery(&format!("the repair (release {}) failed its trial ({cause}) and nothing came before it", rb.from));
            return Ok((rb.from, rb.to));
        }
        match u.store.verify_current(&u.keys, &u.board.name) {
            Ok(v) => {
                let key_id = v.key_id.to_string();
                let stale = crate::release::images::not_in(&u.running, &v.release);
                self.switch_to(v.release, &key_id, super::switch::Then::Rollback { stale });
                Ok((rb.from, rb.to))
            }
            Err(e) => {
                Event::error("release.rollback").kv("step", "load").result(&Err::<(), _>(e.to_string())).emit();
                self.enter_recovery(&format!("rolled back to release {}, which does not load: {e}", rb.to));
                Err(format!("rolled back, but the previous release does not load: {e}; in the recovery state"))
            }
        }
    }

    /// End the trial with a commit (`by`: `window` or `operator`); the
    /// version committed.
    pub(super) fn commit(&mut self, by: &str) -> Result<u64, String> {
        let Some(u) = self.updates.as_mut() else {
            return Err("no release store on this device".into());
        };
        let Some(mut t) = u.trial.take() else {
            return Err("no release is on trial".into());
        };
        // A try of a system slot: the bootloader makes it primary first, so
        // a reset between the two rolls the trial back on this slot and
        // the boot goes back to the old one (`boot::systry`).
        if let Some(p) = u.system_try {
            if let Err(e) = set_slot(&u.board, |_| crate::release::bootenv::BootState::commit(p.to)) {
                t.commit_retry_at = crate::common::log::now() + COMMIT_RETRY_S;
                t.commit_asked |= by == "operator";
                Event::error("release.commit").kv("version", t.version).kv("step", "bootloader").kv("retry_s", COMMIT_RETRY_S).result(&Err::<(), _>(&e)).emit();
                u.trial = Some(t);
                return Err(format!("the bootloader could not be told to keep slot {}: {e}; tried again in {COMMIT_RETRY_S} s", p.to.name()));
            }
        }
        match u.store.commit() {
            Ok(()) => Event::info("release.commit").kv("version", t.version).kv("window_s", t.window).kv("by", by).emit(),
            Err(e) => {
                // Still on trial: tried again shortly, until its deadline.
                t.commit_retry_at = crate::common::log::now() + COMMIT_RETRY_S;
                t.commit_asked |= by == "operator";
                Event::error("release.commit").kv("version", t.version).kv("retry_s", COMMIT_RETRY_S).result(&Err::<(), _>(e.to_string())).emit();
                u.trial = Some(t);
                return Err(format!("the commit could not be recorded: {e}; it is tried again in {COMMIT_RETRY_S} s"));
            }
        }
        self.stage.log.end(Phase::Committed, "", "");
        if let Some(p) = u.system_try.take() {
            let r = crate::release::slottry::clear(&mut crate::release::durable::SysIo, u.store.dir()).map_err(|e| e.to_string());
            Event::info("update.system").kv("phase", "committed").kv("slot", p.to.name()).kv("version", t.version).result(&r).emit();
        }
        // No rollback can need them in this boot any more.
        crate::release::images::unmap(&t.superseded);
        match u.store.gc() {
            Ok(c) => Event::info("release.gc").kv("images", c.images).kv("releases", c.releases).emit(),
            Err(e) => Event::warn("release.gc").kv("reason", e).emit(),
        }
        // The whole update's store writes: the power-cut tests cut at each.
        // And the loop's worst stall since the staging started.
        let worst = self.stalls.marked;
        Event::info("update.done")
            .kv("version", t.version)
            .kv("store_writes", crate::release::durable::steps())
            .kv("loop_max_ms", format_args!("{:.1}", worst.handler_s * 1e3))
            .kv("loop_max_kind", worst.handler.name())
            .kv("pet_late_max_ms", format_args!("{:.1}", worst.pet_late_s * 1e3))
            .emit();
        Ok(t.version)
    }

    /// Why there is nothing to commit or roll back, if so.
    fn no_trial(&self) -> Option<String> {
        let Some(u) = self.updates.as_ref() else {
            return Some("no release store on this device".into());
        };
        if u.trial.is_some() {
            return None;
        }
        let staging = self.stage.current.as_ref().map_or(String::new(), |s| format!("; {} is being staged", s.bundle));
        Some(format!("no release is on trial (release {} is committed{staging})", u.running.version))
    }

    /// `berthctl commit`.
    pub(super) fn commit_requested(&mut self) -> Response {
        if let Some(why) = self.no_trial() {
            return error(&why);
        }
        Event::info("control.commit").emit();
        match self.commit("operator") {
            Ok(v) => crate::supervise::control::message(&format!("release {v} committed")),
            Err(e) => error(&e),
        }
    }

    /// `berthctl rollback`.
    pub(super) fn rollback_requested(&mut self) -> Response {
        if let Some(why) = self.no_trial() {
            return error(&why);
        }
        Event::info("control.rollback").emit();
        match self.roll_back(Cause::Requested, None) {
            Ok((from, to)) => crate::supervise::control::message(&format!("rolled back from release {from} to {to}")),
            Err(e) => error(&e),
        }
    }
}

/// Change the bootloader's try-boot state of `board` (a small in-place
/// write with an fsync, in the loop like the record write it goes with).
fn set_slot(
    board: &crate::release::board::Board,
    change: impl FnOnce(crate::release::bootenv::BootState) -> crate::release::bootenv::BootState,
) -> Result<(), String> {
    let loader = board.bootloader.as_ref().ok_or("the board has no [bootloader]")?;
    crate::release::slotwrite::set_boot_state(loader, board.storage.wait_ms, change).map(|_| ())
}
