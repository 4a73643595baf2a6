//! A switch that could not prepare every container it changes or adds
//! (an image that cannot be mapped, a plan that does not build): the slot
//! of such a container still holds the run of the release switched away
//! from, which must not go on as if it were the new release's.
//!
//! - Switching to a release on trial: the trial rolls back at once
//!   (`release-unusable`, naming the first such container); the rollback
//!   switches every container back.
//! - Switching back on a rollback (the record already names the previous
//!   release): berth reboots, and the boot maps and starts that release as
//!   any boot does.

use super::switch::Then;
use super::update::Diff;
use super::Pid1;
use crate::common::log::Event;
use crate::release::record::Cause;

/// The containers `d` changes or adds that have no prepared spec.
pub(super) fn missing(d: &Diff, specs: &[crate::confine::containers::Spec]) -> Vec<String> {
    d.changed.iter().chain(d.added.iter()).filter(|n| !specs.iter().any(|s| s.name.as_str() == n.as_str())).cloned().collect()
}

/// What a landed switch does about `missing` (see the module docs);
/// `then` is what the switch was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum For {
    Trial,
    Rollback,
    Recovery,
}

impl For {
    pub(super) fn of(then: &Then) -> For {
        match then {
            Then::Trial(_) => For::Trial,
            Then::Rollback { .. } => For::Rollback,
            Then::Recovery { .. } => For::Recovery,
        }
    }
}

impl Pid1 {
    /// The switch to `version` landed without specs for `missing`.
    pub(super) fn unprepared(&mut self, version: u64, missing: &[String], was: For) {
        let Some(first) = missing.first() else {
            return;
        };
        let ev = Event::error("update.switch").kv("version", version).kv("result", "error").kv("missing", missing.join(","));
        match was {
            For::Trial => {
                ev.kv("then", "rollback").emit();
                let _ = self.roll_back(Cause::ReleaseUnusable, Some(first));
            }
            For::Rollback => {
                ev.kv("then", "reboot").emit();
                let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGINT);
            }
            For::Recovery => ev.emit(),
        }
    }
}
