//! A try of the other system slot, at boot: reading the try an update
//! recorded on the data partition ([`crate::release::slottry`]), telling the
//! release store a fall-back's cause, and settling the record once the
//! store has chosen what runs. It owns those boot steps; it must not run in
//! the loop, and must not decide what a boot is (that is
//! [`crate::release::bootenv::at_boot`], through `boot::slot`).
//!
//! After the store's boot:
//! - a **fall-back** (the old slot is up): the store rolled the trial back
//!   with the slot's cause; the try's record is removed.
//! - a **try the bootloader already committed** (its trial's commit was
//!   cut between the bootloader's write and the data partition's): the
//!   store completes the commit; the try's record is removed. The
//!   bootloader's write is the commit point.
//! - a **try** whose release is on trial: the record says the tried slot's
//!   berth reached its loop (a reset from here is a `reset-during-system-trial`),
//!   and the trial's commit or rollback settles the bootloader
//!   (`supervise::trial`).
//! - a **try** whose trial did not survive the boot (the store rolled it
//!   back: a reset during it): the bootloader falls back to the old slot
//!   and the device reboots into it, which runs the release rolled back to.

use std::path::Path;

use crate::common::log::Event;
use crate::release::bootenv::{Booted, FallBackCause, PendingTry, Slot};
use crate::release::durable::SysIo;
use crate::release::record::{Cause, SystemVerdict};
use crate::release::slottry;

/// The slot step of the boot (`boot::slot`) with the try recorded in
/// `dir`: what this boot is, and the try.
pub fn at_boot(board: &crate::release::board::Board, data_mounted: bool, dir: &Path) -> (Option<Booted>, Option<PendingTry>) {
    let cmdline = crate::common::files::read_bounded("/proc/cmdline", 4096).unwrap_or_default();
    let named = crate::release::bootenv::slot_from_cmdline(&String::from_utf8_lossy(&cmdline)).ok().flatten();
    let pending = if data_mounted && board.bootloader.is_some() { read_pending(dir, named) } else { None };
    let booted = super::slot::at_boot(board.bootloader.as_ref(), board.storage.wait_ms, pending).and_then(|(_, b)| b);
    (booted, pending)
}

/// The try recorded in the store's directory `dir`. A garbled record is
/// taken as a try of the other slot that came back after it ran: the slot
/// that booted stays, any trial is rolled back, nothing is committed.
pub fn read_pending(dir: &Path, booted: Option<Slot>) -> Option<PendingTry> {
    match slottry::read(dir) {
        Ok(p) => p,
        Err(why) => {
            Event::error("boot.slot").kv("step", "try-record").kv("result", "error").kv("reason", &why).emit();
            booted.map(|s| PendingTry { from: s, to: s.other(), reached: true })
        }
    }
}

/// What the store must do with a trial after this boot: roll a
/// fall-back's back with its cause, complete a commit the bootloader has.
pub fn verdict(booted: Option<Booted>) -> Option<SystemVerdict> {
    match booted? {
        Booted::FellBack { cause: FallBackCause::NeverStarted, .. } => Some(SystemVerdict::FellBack(Cause::SystemNeverStarted)),
        Booted::FellBack { cause: FallBackCause::ResetDuringTrial, .. } => Some(SystemVerdict::FellBack(Cause::SystemReset)),
        Booted::TryCommitted(_) => Some(SystemVerdict::Committed),
        _ => None,
    }
}

/// What follows the store's boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// No try is open.
    Nothing,
    /// The release on trial is a try of this slot: its end settles the
    /// bootloader.
    Trying(PendingTry),
    /// Back to the old slot: reboot.
    Reboot,
}

/// Settle the try after the store's boot (`on_trial`: the store's release
/// is on trial).
pub fn settle(
    dir: &Path,
    booted: Option<Booted>,
    pending: Option<PendingTry>,
    on_trial: bool,
    loader: Option<&crate::release::board::bootloader::Bootloader>,
    wait_ms: u32,
) -> Settled {
    let (Some(booted), Some(p)) = (booted, pending) else { return Settled::Nothing };
    match booted {
        Booted::Normal(_) => Settled::Nothing,
        Booted::FellBack { from, to, cause } => {
            let r = slottry::clear(&mut SysIo, dir).map_err(|e| e.to_string());
            Event::warn("update.system").kv("phase", "fell-back").kv("tried", from.name()).kv("slot", to.name()).kv("cause", cause.name()).emit();
            if let Err(e) = r {
                Event::error("boot.slot").kv("step", "try-record").kv("result", "error").kv("reason", e).emit();
            }
            Settled::Nothing
        }
        Booted::TryCommitted(slot) => {
            let r = slottry::clear(&mut SysIo, dir).map_err(|e| e.to_string());
            Event::info("update.system").kv("phase", "committed").kv("slot", slot.name()).kv("at", "boot").result(&r).emit();
            Settled::Nothing
        }
        Booted::Trying(slot) if on_trial => {
            let reached = PendingTry { reached: true, ..p };
            if let Err(e) = slottry::write(&mut SysIo, dir, &reached) {
                Event::error("boot.slot").kv("step", "try-record").kv("result", "error").kv("reason", e.to_string()).emit();
            }
            Event::info("update.system").kv("phase", "trying").kv("slot", slot.name()).kv("from", p.from.name()).emit();
            Settled::Trying(reached)
        }
        Booted::Trying(slot) => {
            let Some(loader) = loader else { return Settled::Nothing };
            let r = crate::release::slotwrite::set_boot_state(loader, wait_ms, |_| crate::release::bootenv::BootState::fall_back(p.from));
            let ev = Event::warn("update.system").kv("phase", "abandoned").kv("slot", slot.name()).kv("back_to", p.from.name());
            ev.kv("reason", "its trial did not survive a reset").result(&r.as_ref().map(|_| ()).map_err(|e| e.clone())).emit();
            if r.is_err() {
                return Settled::Nothing;
            }
            if let Err(e) = slottry::clear(&mut SysIo, dir) {
                Event::error("boot.slot").kv("step", "try-record").kv("result", "error").kv("reason", e.to_string()).emit();
            }
            Settled::Reboot
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_of_a_try() {
        let fb = |cause| Some(Booted::FellBack { from: Slot::B, to: Slot::A, cause });
        assert_eq!(verdict(fb(FallBackCause::NeverStarted)), Some(SystemVerdict::FellBack(Cause::SystemNeverStarted)));
        assert_eq!(verdict(fb(FallBackCause::ResetDuringTrial)), Some(SystemVerdict::FellBack(Cause::SystemReset)));
        assert_eq!(verdict(Some(Booted::TryCommitted(Slot::B))), Some(SystemVerdict::Committed));
        assert_eq!(verdict(Some(Booted::Trying(Slot::B))), None);
        assert_eq!(verdict(None), None);
    }

    #[test]
    fn a_try_on_trial_is_marked_reached_and_a_fall_back_clears_it() {
        let d = std::env::temp_dir().join(format!("berth-systry-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let p = PendingTry { from: Slot::A, to: Slot::B, reached: false };
        slottry::write(&mut SysIo, &d, &p).unwrap();
        assert_eq!(read_pending(&d, Some(Slot::B)), Some(p));
        let s = settle(&d, Some(Booted::Trying(Slot::B)), Some(p), true, None, 0);
        assert_eq!(s, Settled::Trying(PendingTry { reached: true, ..p }));
        assert_eq!(slottry::read(&d).unwrap(), Some(PendingTry { reached: true, ..p }));
        let fb = Booted::FellBack { from: Slot::B, to: Slot::A, cause: FallBackCause::ResetDuringTrial };
        assert_eq!(settle(&d, Some(fb), Some(p), false, None, 0), Settled::Nothing);
        assert_eq!(slottry::read(&d).unwrap(), None);
        std::fs::write(d.join(slottry::FILE), "junk").unwrap();
        assert_eq!(read_pending(&d, Some(Slot::A)), Some(PendingTry { from: Slot::A, to: Slot::B, reached: true }));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
