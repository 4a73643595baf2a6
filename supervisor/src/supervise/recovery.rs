//! The recovery state: no release is usable, yet berth runs its loop with
//! the release store, the inbox, `berth receive` and the control socket,
//! so that a signed bundle repairs the device. No container runs.
//!
//! It must not start any container: only a repair's switch ends the state.
//!
//! It is entered at boot when no kept release verifies (the trial one
//! included, see [`crate::release::store::Store::boot`]), and in the loop
//! when a rollback's release does not load or a repair's trial fails with
//! nothing before it. It is shown as the release phase `recovery` in
//! `berthctl release` and the status file, and as a `release.recovery`
//! event on the console. A bundle is staged as in any update (signature,
//! board and anti-rollback floor checked) and goes on trial from nothing;
//! its switch ends the recovery state.

use super::Pid1;
use crate::common::log::Event;

impl Pid1 {
    /// Why the device is in the recovery state, if it is.
    pub(super) fn recovering(&self) -> Option<&str> {
        self.updates.as_ref().and_then(|u| u.recovery.as_deref())
    }

    /// The phase the status file and `berthctl release` show.
    pub(super) fn release_phase(&self) -> &'static str {
        match &self.updates {
            None => "unknown",
            Some(u) if u.recovery.is_some() => "recovery",
            Some(u) => match u.store.record().phase {
                crate::release::record::Phase::Committed => "committed",
                crate::release::record::Phase::Trial { .. } => "trial",
            },
        }
    }

    /// Enter the recovery state from a running release: every container
    /// is stopped (a switch to no release), the failed release's images
    /// are unmapped once it lands.
    pub(super) fn enter_recovery(&mut self, reason: &str) {
        let Some(u) = self.updates.as_mut() else {
            return;
        };
        if let Err(e) = u.store.enter_recovery() {
            Event::error("release.store").kv("step", "recovery").result(&Err::<(), _>(e.to_string())).emit();
        }
        u.recovery = Some(reason.to_string());
        Event::error("release.recovery").kv("reason", reason).kv("floor", u.store.record().highest.unwrap_or(0)).emit();
        let empty = crate::release::Release::empty(u.board.name.clone());
        let stale = crate::release::images::not_in(&u.running, &empty);
        self.switch_to(empty, "", super::switch::Then::Recovery { stale });
    }
}
