//! The store's state record: which release runs, which one it replaced,
//! whether the running one is on trial, and why past updates were rolled back.
//!
//! It only encodes and decodes: it must not write a slot (the store does,
//! through [`super::durable`]), and decoding must not accept a slot whose
//! checksum fails.
//!
//! The record is small (at most [`SLOT_MAX`] bytes encoded) and lives in two
//! files, `record.a` and `record.b`, written in turn: each write goes to the
//! slot that does *not* hold the newest good copy, with a generation one
//! higher. A torn, truncated or bit-flipped slot fails its checksum and the
//! other slot, one generation older, is used: a bad write can lose at most the
//! change it was making, never the release the device runs.
//!
//! # Slot format (format 2)
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `BRTS` |
//! | 4 | 1 | format, `2` (format 1, the record without `admitted` and `spent`, is still read) |
//! | 5 | 8 | generation, u64 little-endian, > 0 |
//! | 13 | 2 | payload length `n`, u16 little-endian |
//! | 15 | n | payload: a postcard-encoded [`Record`] |
//! | 15+n | 32 | SHA-256 over bytes `0 .. 15+n` |
//!
//! # Transitions
//!
//! Every change is a pure method returning the new record (unit tested
//! without a file system); [`super::store`] writes it. The rules:
//!
//! - [`Record::begin_trial`]: only from `Committed`; the current release
//!   becomes the previous one, the new one is current and on trial.
//! - [`Record::commit`]: only on trial, after its boot (if it needed one);
//!   the anti-rollback floor ([`Record::highest`]) rises to its version if
//!   that is higher. Committing a release admitted below the floor (by its
//!   downgrade marker) spends the marker's floor ([`Record::spent`]).
//! - [`Record::rollback`]: only on trial with a previous release; the
//!   previous one is current again and committed, and the cause is appended
//!   to the history (the oldest entry goes when [`HISTORY_MAX`] are kept).
//! - [`Record::at_boot`]: a committed release boots as it is: power cuts and
//!   reboots never count against it. A trial whose boot was requested boots
//!   once on trial; any other trial found at boot was interrupted by a reboot
//!   or power cut and is rolled back (`reboot-during-trial`), unless there is
//!   nothing to roll back to.
//! - [`Record::fall_back`]: the chosen release cannot be used at all (its
//!   object is missing, corrupt or refused); the other kept release is taken
//!   and the cause recorded (`release-unusable`). There is no fallback when
//!   only one release is kept. The floor stays: a fallback below it is
//!   admitted by its digest ([`Record::admitted`]), not by lowering it.
//!
//! # The floor only rises
//!
//! No transition lowers [`Record::highest`]. What may boot under it is
//! decided by [`Record::admits`]: a version at or above the floor, or the one
//! digest the record admits below it (a release put on trial through its
//! downgrade marker, or a fallback). The admission lasts while that release
//! is kept (current or previous) and is dropped by the transition that stops
//! keeping it.

use crate::release::manifest::{Digest, Name};
use core::fmt;

mod v1;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// What a try of a system slot settled at boot (see `boot::systry`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemVerdict {
    /// The old slot booted again: roll the trial back with this cause.
    FellBack(Cause),
    /// The tried slot is primary in the bootloader: the trial's commit is
    /// completed.
    Committed,
}

/// Rollback causes kept in the record.
pub const HISTORY_MAX: usize = 8;
/// Largest encoded slot.
pub const SLOT_MAX: usize = 1024;
/// Slot file names.
pub const SLOTS: [&str; 2] = ["record.a", "record.b"];

const MAGIC: [u8; 4] = *b"BRTS";
const FORMAT: u8 = 2;
/// The record before `admitted` and `spent` ([`v1`]).
const FORMAT_V1: u8 = 1;
const HEADER_LEN: usize = 15;
const SUM_LEN: usize = 32;

/// One kept release: the SHA-256 of its signed object and its version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub digest: Digest,
    pub version: u64,
}

/// Whether the current release is committed or still on trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Phase {
    /// Healthy for its commit window (or the only release ever installed).
    #[default]
    Committed,
    /// Switched to but not yet committed. `boot_pending`: the switch asked
    /// for a reboot and the trial's own boot has not happened yet.
    Trial { boot_pending: bool },
}

/// Why a release was rolled back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cause {
    /// The device rebooted or lost power while the release was on trial.
    RebootDuringTrial,
    /// A container hit its crash-loop limit during the trial.
    CrashLoop,
    /// A container's health check failed during the trial.
    HealthCheck,
    /// A container was not ready in time during the trial.
    ReadinessTimeout,
    /// The release object was missing, corrupt or refused at boot.
    ReleaseUnusable,
    /// An operator asked for it.
    Requested,
    /// The trial deadline passed without a commit.
    TrialTimeout,
    /// A container ended for good during the trial, by a failure (non-zero
    /// exit, signal or unhealthy) its restart policy does not restart.
    ContainerFailed,
    /// A container not declared `oneshot` exited 0 during the trial and
    /// its restart policy does not restart it.
    ContainerExited,
    /// A try of the other system slot never reached berth's loop (its
    /// kernel panicked or hung, its berth failed first): the old slot booted.
    SystemNeverStarted,
    /// The tried system slot's berth ran, then the device was reset before
    /// the commit; the old slot booted.
    SystemReset,
}

impl Cause {
    /// The name used in events and by `berthctl release`.
    pub fn name(self) -> &'static str {
        match self {
            Cause::RebootDuringTrial => "reboot-during-trial",
            Cause::CrashLoop => "crash-loop",
            Cause::HealthCheck => "health-check",
            Cause::ReadinessTimeout => "readiness-timeout",
            Cause::ReleaseUnusable => "release-unusable",
            Cause::Requested => "requested",
            Cause::TrialTimeout => "trial-timeout",
            Cause::ContainerFailed => "container-failed",
            Cause::ContainerExited => "container-exited",
            Cause::SystemNeverStarted => "system-never-started",
            Cause::SystemReset => "reset-during-system-trial",
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One rollback, as kept in the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollback {
    pub cause: Cause,
    /// Version rolled back from.
    pub from: u64,
    /// Version rolled back to.
    pub to: u64,
    /// The record's boot count when it happened.
    pub boot: u32,
    /// The container that caused it, when one did.
    pub container: Option<Name>,
}

impl fmt::Display for Rollback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rollback from {} to {} at boot {}: {}", self.from, self.to, self.boot, self.cause)?;
        match &self.container {
            Some(c) => write!(f, " ({c})"),
            None => Ok(()),
        }
    }
}

/// The state record.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Record {
    /// The release that runs (`None`: no release installed).
    pub current: Option<Entry>,
    /// The release it replaced, kept to roll back (or fall back) to.
    pub previous: Option<Entry>,
    pub phase: Phase,
    /// Boots seen by the store (saturating).
    pub boots: u32,
    /// The anti-rollback floor: the highest version committed or booted as
    /// committed (never lowered). `None`: nothing committed yet.
    pub highest: Option<u64>,
    /// Rollbacks, oldest first.
    pub history: heapless::Vec<Rollback, HISTORY_MAX>,
    /// The one release (by digest) that may boot below the floor: put on
    /// trial through its downgrade marker, or fallen back to. Kept only
    /// while that release is current or previous.
    pub admitted: Option<Digest>,
    /// The floor at which a downgrade marker was consumed by a commit: no
    /// other marker for it is taken.
    pub spent: Option<u64>,
}

/// A transition that is not allowed from the record's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransitionError {
    /// begin_trial while a release is on trial.
    TrialInProgress,
    /// commit or rollback with nothing on trial.
    NotOnTrial,
    /// commit before the trial's requested boot.
    BootPending,
    /// rollback with no previous release.
    NothingToRollBackTo,
    /// begin_trial with the release that already runs.
    AlreadyCurrent,
}

impl fmt::Display for TransitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransitionError::TrialInProgress => "a release is already on trial",
            TransitionError::NotOnTrial => "no release is on trial",
            TransitionError::BootPending => "the release on trial has not booted yet",
            TransitionError::NothingToRollBackTo => "there is no previous release to roll back to",
            TransitionError::AlreadyCurrent => "that release is already the current one",
        })
    }
}

/// What the boot does, decided from the record alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootChoice {
    /// No release is installed.
    None,
    /// Boot the committed current release.
    Committed(Entry),
    /// Boot the release on trial (its requested boot).
    Trial(Entry),
    /// The trial was interrupted: boot the previous release instead.
    RolledBack { to: Entry, rollback: Rollback },
}

/// Why a slot was not usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotError {
    Missing,
    Truncated,
    TooLarge,
    BadMagic,
    UnsupportedFormat(u8),
    BadChecksum,
    /// The checksum is good but the payload does not decode.
    Decode,
}

impl fmt::Display for SlotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SlotError::Missing => f.write_str("missing"),
            SlotError::Truncated => f.write_str("truncated"),
            SlotError::TooLarge => write!(f, "larger than {SLOT_MAX} bytes"),
            SlotError::BadMagic => f.write_str("bad magic"),
            SlotError::UnsupportedFormat(v) => {
                write!(f, "format {v} is not supported (expected {FORMAT})")
            }
            SlotError::BadChecksum => f.write_str("bad checksum"),
            SlotError::Decode => f.write_str("payload does not decode"),
        }
    }
}

impl Record {
    /// A device's first record: `entry` installed and committed (factory
    /// images, or a store rebuilt from its release objects).
    pub fn installed(entry: Entry) -> Record {
        Record { current: Some(entry), ..Record::default() }
    }

    /// The releases the store must keep (current, then previous).
    pub fn kept(&self) -> impl Iterator<Item = Entry> + '_ {
        self.current.iter().chain(self.previous.iter()).copied()
    }

    /// Switch to `new` on trial. `boot_pending`: the switch is completed by a
    /// reboot (the trial's first boot must not count as an interruption).
    pub fn begin_trial(&self, new: Entry, boot_pending: bool) -> Result<Record, TransitionError> {
        if self.phase != Phase::Committed {
            return Err(TransitionError::TrialInProgress);
        }
        if self.current.is_some_and(|c| c.digest == new.digest) {
            return Err(TransitionError::AlreadyCurrent);
        }
        let rec = Record { current: Some(new), previous: self.current, phase: Phase::Trial { boot_pending }, ..self.clone() };
        Ok(rec.keep_admission())
    }

    /// The trial was healthy for its window: commit it. The floor rises to
    /// its version, or, for a release admitted below the floor, stays and
    /// is marked spent.
    pub fn commit(&self) -> Result<Record, TransitionError> {
        match (self.phase, self.current) {
            (Phase::Trial { boot_pending: true }, _) => Err(TransitionError::BootPending),
            (Phase::Trial { boot_pending: false }, Some(c)) => {
                let below = self.highest.is_some_and(|f| c.version < f);
                let spent = if below { self.highest } else { self.spent };
                Ok(Record { phase: Phase::Committed, highest: self.raised_to(c.version), spent, ..self.clone() })
            }
            _ => Err(TransitionError::NotOnTrial),
        }
    }

    /// The floor after meeting `version`: the higher of the two.
    pub fn raised_to(&self, version: u64) -> Option<u64> {
        Some(self.highest.map_or(version, |f| f.max(version)))
    }

    /// May `entry` boot under this record? At or above the floor, or the
    /// one digest admitted below it.
    pub fn admits(&self, entry: &Entry) -> bool {
        self.highest.is_none_or(|f| entry.version >= f) || self.admitted == Some(entry.digest)
    }

    /// Drop an admission whose release is no longer kept.
    fn keep_admission(mut self) -> Record {
        let admitted = self.admitted.filter(|d| self.kept().any(|e| &e.digest == d));
        self.admitted = admitted;
        self
    }

    /// Roll the trial back to the previous release for `cause`.
    pub fn rollback(&self, cause: Cause, container: Option<Name>) -> Result<(Record, Rollback), TransitionError> {
        if !matches!(self.phase, Phase::Trial { .. }) {
            return Err(TransitionError::NotOnTrial);
        }
        let (Some(from), Some(to)) = (self.current, self.previous) else {
            return Err(TransitionError::NothingToRollBackTo);
        };
        Ok(self.moved_back(from, to, cause, container))
    }

    /// End a trial that has no previous release to roll back to (a device
    /// repaired from the recovery state): nothing is current any more, the
    /// floor stays, the cause is recorded (`to` 0).
    pub fn abandon(&self, cause: Cause, container: Option<Name>) -> Result<(Record, Rollback), TransitionError> {
        let (Phase::Trial { .. }, Some(from)) = (self.phase, self.current) else {
            return Err(TransitionError::NotOnTrial);
        };
        let rollback = Rollback { cause, from: from.version, to: 0, boot: self.boots, container };
        let mut history = self.history.clone();
        if history.is_full() {
            history.remove(0);
        }
        let _ = history.push(rollback.clone());
        let rec = Record { current: None, previous: None, phase: Phase::Committed, history, ..self.clone() };
        Ok((rec.keep_admission(), rollback))
    }

    /// The recovery state's record: no trial open (the release on trial, if
    /// any, is as unusable as the rest), so that a repair can be staged.
    pub fn recovering(&self) -> Record {
        Record { phase: Phase::Committed, ..self.clone() }
    }

    /// `from` is replaced by `to` (committed); the cause is recorded.
    fn moved_back(&self, from: Entry, to: Entry, cause: Cause, container: Option<Name>) -> (Record, Rollback) {
        let rollback = Rollback { cause, from: from.version, to: to.version, boot: self.boots, container };
        let mut history = self.history.clone();
        if history.is_full() {
            history.remove(0);
        }
        let _ = history.push(rollback.clone());
        let rec = Record { current: Some(to), previous: None, phase: Phase::Committed, history, ..self.clone() };
        (rec.keep_admission(), rollback)
    }

    /// What to boot, and the record to write before booting it (the boot
    /// count raised; an interrupted trial rolled back; a requested trial
    /// boot marked as done).
    pub fn at_boot(&self) -> (Record, BootChoice) {
        let mut rec = self.clone();
        rec.boots = rec.boots.saturating_add(1);
        let Some(current) = rec.current else {
            return (rec, BootChoice::None);
        };
        match (rec.phase, rec.previous) {
            (Phase::Committed, _) => (rec, BootChoice::Committed(current)),
            (Phase::Trial { boot_pending: true }, _) | (Phase::Trial { .. }, None) => {
                rec.phase = Phase::Trial { boot_pending: false };
                (rec, BootChoice::Trial(current))
            }
            (Phase::Trial { boot_pending: false }, Some(previous)) => {
                let (rec, rollback) = rec.moved_back(current, previous, Cause::RebootDuringTrial, None);
                (rec, BootChoice::RolledBack { to: previous, rollback })
            }
        }
    }

    /// At boot after a try of a system slot ([`SystemVerdict`]): a trial
    /// is rolled back with the fall-back's cause, or committed when the
    /// bootloader already has the tried slot primary, whether or not its
    /// own boot had happened. Without a verdict, [`Record::at_boot`].
    pub fn at_boot_after(&self, verdict: Option<SystemVerdict>) -> (Record, BootChoice) {
        let (Some(verdict), Some(current), Phase::Trial { .. }) = (verdict, self.current, self.phase) else { return self.at_boot() };
        let mut rec = self.clone();
        rec.boots = rec.boots.saturating_add(1);
        match (verdict, self.previous) {
            (SystemVerdict::FellBack(cause), Some(previous)) => {
                let (rec, rollback) = rec.moved_back(current, previous, cause, None);
                (rec, BootChoice::RolledBack { to: previous, rollback })
            }
            (SystemVerdict::Committed, _) => {
                rec.phase = Phase::Trial { boot_pending: false };
                match rec.commit() {
                    Ok(done) => (done, BootChoice::Committed(current)),
                    Err(_) => self.at_boot(),
                }
            }
            _ => self.at_boot(),
        }
    }

    /// The release chosen at boot (`failed`, now current) cannot be used:
    /// take the other kept one, if any.
    pub fn fall_back(&self, failed: Entry) -> Option<(Record, Entry, Rollback)> {
        let other = self.kept().find(|e| e.digest != failed.digest)?;
        let (mut rec, rollback) = self.moved_back(failed, other, Cause::ReleaseUnusable, None);
        // The fallback was accepted once: it may run below the floor, which stays.
        if !rec.admits(&other) {
            rec.admitted = Some(other.digest);
        }
        Some((rec, other, rollback))
    }
}

/// Encode a record into a slot of generation `generation`.
pub fn encode_slot(rec: &Record, generation: u64) -> Option<heapless::Vec<u8, SLOT_MAX>> {
    let mut payload = [0u8; SLOT_MAX];
    let n = postcard::to_slice(rec, &mut payload).ok()?.len();
    let len = u16::try_from(n).ok()?;
    let mut out: heapless::Vec<u8, SLOT_MAX> = heapless::Vec::new();
    out.extend_from_slice(&MAGIC).ok()?;
    out.push(FORMAT).ok()?;
    out.extend_from_slice(&generation.to_le_bytes()).ok()?;
    out.extend_from_slice(&len.to_le_bytes()).ok()?;
    out.extend_from_slice(payload.get(..n)?).ok()?;
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum).ok()?;
    Some(out)
}

/// Decode a slot: its generation and record.
pub fn decode_slot(bytes: &[u8]) -> Result<(u64, Record), SlotError> {
    if bytes.len() > SLOT_MAX {
        return Err(SlotError::TooLarge);
    }
    let Some((header, rest)) = bytes.split_first_chunk::<HEADER_LEN>() else {
        return Err(SlotError::Truncated);
    };
    let (magic, h) = header.split_at(4);
    if magic != MAGIC {
        return Err(SlotError::BadMagic);
    }
    let (format, h) = h.split_at(1);
    let format = format.first().copied().unwrap_or(0);
    if format != FORMAT && format != FORMAT_V1 {
        return Err(SlotError::UnsupportedFormat(format));
    }
    let (generation, len) = h.split_at(8);
    let generation = u64::from_le_bytes(generation.try_into().map_err(|_| SlotError::Truncated)?);
    let len = usize::from(u16::from_le_bytes(len.try_into().map_err(|_| SlotError::Truncated)?));
    if rest.len() != len.saturating_add(SUM_LEN) {
        return Err(SlotError::Truncated);
    }
    let (payload, sum) = rest.split_at(len);
    let signed = bytes.get(..HEADER_LEN + len).ok_or(SlotError::Truncated)?;
    if Sha256::digest(signed).as_slice() != sum || generation == 0 {
        return Err(SlotError::BadChecksum);
    }
    if format == FORMAT_V1 {
        return v1::decode(payload).map(|rec| (generation, rec)).ok_or(SlotError::Decode);
    }
    match postcard::take_from_bytes::<Record>(payload) {
        Ok((rec, [])) => Ok((generation, rec)),
        _ => Err(SlotError::Decode),
    }
}

/// Of two decoded slots, the index and contents of the newest good one.
pub fn newest(slots: [&Result<(u64, Record), SlotError>; 2]) -> Option<(usize, u64, Record)> {
    let mut best: Option<(usize, u64, Record)> = None;
    for (i, s) in slots.into_iter().enumerate() {
        if let Ok((g, r)) = s {
            if best.as_ref().is_none_or(|(_, bg, _)| g > bg) {
                best = Some((i, *g, r.clone()));
            }
        }
    }
    best
}

#[cfg(test)]
mod tests;
