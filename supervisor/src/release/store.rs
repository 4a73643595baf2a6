//! The release store on the data partition: content-addressed release objects
//! and images, and the state record that says which release runs.
//!
//! It must not change the data partition except through its
//! [`super::durable::Io`] (so the power-cut tests see every write), and it
//! must not run containers or map images.
//!
//! # Layout (under `/data/berth`)
//!
//! | path | what |
//! |---|---|
//! | `record.a`, `record.b` | the state record, two alternating copies ([`super::record`]) |
//! | `floor` | the anti-rollback floor's second witness ([`super::state`]) |
//! | `releases/<sha256 hex>.bin` | signed release objects, named by the SHA-256 of their bytes |
//! | `images/<sha256 hex>.img` | container images (squashfs + dm-verity tree), named by their SHA-256 |
//! | `staging/` | a staging in progress; whatever is found here at [`Store::open`] is deleted |
//!
//! # Power cuts
//!
//! Every change is made with [`Io`] calls in an order where each prefix leaves
//! a usable store: files are written under a temporary name, fsynced, renamed
//! into place, and their directory fsynced before anything refers to them; the
//! record is changed last, in one slot, the other slot keeping the state
//! before. Objects and images the record does not (yet, or any more) refer to
//! are garbage that [`Store::gc`] removes. The tests cut the power after every
//! single step and check that the store reopens on one complete, verified
//! release with a consistent record.
//!
//! # Use
//!
//! ```text
//! let (mut store, notes) = Store::open(dir)?;     // at boot, and whenever needed
//! let booted = store.boot(&keys, board)?;          // once per boot: decides, verifies, records
//! let staged = store.stage(&mut bundle, &keys, board)?;   // verify and take in an update (the stager)
//! let staged = store.staged(entry, &keys, board, n, bytes)?;  // PID 1: what the stager staged
//! store.begin_trial(&staged, needs_reboot)?;       // after (or, with needs_reboot, before) the switch
//! store.commit()?;                                 // healthy for the commit window
//! store.rollback(Cause::CrashLoop, Some(name))?;   // unhealthy during the trial
//! store.gc()?;                                     // drop what no kept release uses
//! ```
//!
//! Staging never changes the record, so it never changes what runs; a failed
//! staging removes what it wrote. Only [`Store::begin_trial`],
//! [`Store::commit`], [`Store::rollback`] and [`Store::boot`] write the
//! record, each through the pure transitions of [`Record`].
//!
//! # Migration
//!
//! A data partition from before the store holds `release.bin` and
//! `release-version` (the anti-rollback floor). With no record slot present,
//! [`Store::open`] moves the release into `releases/`, writes a record with it
//! committed and the old floor, then removes the two files. Images were
//! already content-addressed in `images/`.
//!
//! # The anti-rollback floor
//!
//! The floor ([`Record::highest`]) never goes down (see [`floor`] for the
//! rules): a commit or a boot raises it, a fallback or a rollback leaves it,
//! and a release below it boots only as the record's one admitted digest.
//! After every record write that raises it, the floor is also written to the
//! witness file `floor`; [`Store::open`] takes the higher of the two.
//!
//! A store whose two record slots are both unreadable is rebuilt by the next
//! [`Store::boot`] (it needs the trusted keys) rather than left with no
//! release: the floor becomes the highest of the witness and the versions of
//! the release objects whose signatures verify; the newest verified release
//! at or above it is current, and releases below it are refused
//! ([`Note::BelowFloor`]), so a lost record never lets an older release
//! boot. Until then nothing is staged, recorded or collected.

use super::bundle::{self, BundleError, CopyError, Header};
use super::durable::{replace, Io, SysIo};
use super::record::{self, BootChoice, Cause, Entry, Phase, Record, Rollback, SlotError};
use super::{decode_release, state, ReleaseError, TrustedKeys, Verified, OBJECT_MAX};
use crate::release::manifest::{Digest, Name};
use core::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Release objects.
pub const RELEASES: &str = "releases";
/// Images.
pub const IMAGES: &str = "images";
/// Staging area.
pub const STAGING: &str = "staging";
/// The release of a store from before the record (migrated).
pub const LEGACY_RELEASE: &str = "release.bin";

/// Something [`Store::open`] found and dealt with; the boot logs each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// A record slot was present but unusable; the other one was used.
    SlotBad { slot: &'static str, error: SlotError },
    /// An interrupted staging was removed.
    StagingRemoved,
    /// A single-file release was moved into the store.
    Migrated { version: u64 },
    /// No record slot was usable; the record was rebuilt from the verified
    /// release objects, with this floor.
    Rebuilt { releases: usize, floor: Option<u64> },
    /// A verified release object below the floor, not kept by a rebuild.
    BelowFloor { version: u64, digest: Digest, floor: u64 },
    /// The floor witness cannot be read (the record's floor stands).
    FloorUnreadable(io::ErrorKind),
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Note::SlotBad { slot, error } => write!(f, "record slot {slot} is unusable ({error}); using the other copy"),
            Note::StagingRemoved => write!(f, "removed an interrupted staging"),
            Note::Migrated { version } => {
                write!(f, "moved the single-file release {version} into the store")
            }
            Note::Rebuilt { releases, floor: Some(floor) } => {
                write!(f, "no record copy was usable; rebuilt it from {releases} verified release objects, anti-rollback floor {floor}")
            }
            Note::Rebuilt { releases, floor: None } => write!(f, "no record copy was usable; rebuilt it from {releases} verified release objects"),
            Note::BelowFloor { version, digest, floor } => {
                write!(f, "release {version} ({digest}) is below the anti-rollback floor {floor}; refused")
            }
            Note::FloorUnreadable(k) => write!(f, "the floor witness {} is unreadable ({k}); using the record's floor", state::FLOOR),
        }
    }
}

fn io_err<'a>(step: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |error| StoreError::Io { step, path: path.to_path_buf(), error }
}

/// A verified release taken into the store (not yet running).
#[derive(Debug, Clone, PartialEq)]
pub struct Staged {
    pub entry: Entry,
    pub verified: Verified,
    /// Images the bundle added.
    pub images_added: usize,
    /// Bytes the bundle added.
    pub bytes: u64,
}

/// What [`Store::boot`] booted.
#[derive(Debug, Clone, PartialEq)]
pub struct Booted {
    pub entry: Entry,
    pub verified: Verified,
    /// The release is on trial (its requested boot, or nothing to roll back to).
    pub trial: bool,
    /// The anti-rollback floor was changed to this release's version.
    pub raised: bool,
    /// Rollbacks made on the way, with the reason the release rolled back
    /// from was unusable (`None`: an interrupted trial).
    pub rollbacks: Vec<(Rollback, Option<ObjectError>)>,
    /// The record could not be written: the release boots all the same (the
    /// next boot decides the same way from the old record), and this says why.
    pub unrecorded: Option<String>,
    /// The anti-rollback floor after this boot.
    pub floor: Option<u64>,
    /// What rebuilding an unreadable record found (empty: it was readable).
    pub notes: Vec<Note>,
}

/// What [`Store::gc`] removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Collected {
    pub images: usize,
    pub releases: usize,
}

/// The store. A clone is a second handle on the same directory: the
/// loop hands one to a helper thread for a durable write and adopts it
/// back (see `supervise::begin`); only one of them may write at a time.
#[derive(Debug, Clone)]
pub struct Store<I: Io = SysIo> {
    dir: PathBuf,
    io: I,
    record: Record,
    /// Generation of the record as last read or written (0: none).
    generation: u64,
    /// The slot the next write goes to.
    next_slot: usize,
    /// The floor witness as last read or written.
    witness: Option<u64>,
    /// Both record copies are unreadable: [`Store::boot`] rebuilds.
    unread: bool,
    /// The running system's own floor (its board's `release_floor`): no
    /// release below it is staged or booted, whatever the record says.
    system_floor: u64,
}

fn read_bounded(path: &Path, max: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::fs::File::open(path)?.take(max as u64 + 1).read_to_end(&mut buf)?;
    Ok(buf)
}

impl Store<SysIo> {
    /// Open the store in `dir` on the real file system.
    pub fn open(dir: &Path) -> Result<(Store<SysIo>, Vec<Note>), StoreError> {
        Store::open_with(dir, SysIo)
    }
}

impl<I: Io> Store<I> {
    /// Open (creating the directories if needed), remove an interrupted
    /// staging, read the record (migrating or rebuilding it if needed).
    pub fn open_with(dir: &Path, mut io: I) -> Result<(Store<I>, Vec<Note>), StoreError> {
        let mut notes = Vec::new();
        for d in [dir.to_path_buf(), dir.join(RELEASES), dir.join(IMAGES)] {
            if !d.is_dir() {
                io.create_dir(&d).map_err(io_err("mkdir", &d))?;
                if let Some(parent) = d.parent() {
                    io.sync_dir(parent).map_err(io_err("fsync", parent))?;
                }
            }
        }
        let staging = dir.join(STAGING);
        if staging.exists() {
            io.remove_dir_all(&staging).map_err(io_err("remove", &staging))?;
            io.sync_dir(dir).map_err(io_err("fsync", dir))?;
            notes.push(Note::StagingRemoved);
        }
        let slots = record::SLOTS.map(|name| match read_bounded(&dir.join(name), record::SLOT_MAX) {
            Ok(b) => record::decode_slot(&b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(SlotError::Missing),
            Err(_) => Err(SlotError::Truncated),
        });
        for (name, s) in record::SLOTS.iter().zip(&slots) {
            if let Err(error) = s {
                if *error != SlotError::Missing {
                    notes.push(Note::SlotBad { slot: name, error: *error });
                }
            }
        }
        let witness = match state::load(dir, state::FLOOR) {
            Ok(w) => w,
            Err(e) => {
                notes.push(Note::FloorUnreadable(e.kind()));
                None
            }
        };
        let mut store = Store { dir: dir.to_path_buf(), io, record: Record::default(), generation: 0, next_slot: 0, witness, unread: false, system_floor: 0 };
        if let Some((i, generation, mut rec)) = record::newest([&slots[0], &slots[1]]) {
            // The record lost a raise the witness saw: the higher one stands.
            if let Some(w) = witness {
                rec.highest = rec.raised_to(w);
            }
            store.record = rec;
            store.generation = generation;
            store.next_slot = usize::from(i == 0);
            return Ok((store, notes));
        }
        let none_present = slots.iter().all(|s| matches!(s, Err(SlotError::Missing)));
        if none_present && dir.join(LEGACY_RELEASE).exists() {
            notes.push(store.migrate()?);
        } else {
            store.unread = !none_present || witness.is_some() || store.has_objects();
        }
        Ok((store, notes))
    }

    /// The directory of the store.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The state record as last read or written.
    pub fn record(&self) -> &Record {
        &self.record
    }

    /// The record's generation (0: never written).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The path of a release object.
    pub fn release_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(RELEASES).join(release_name(digest))
    }

    /// Take the running system's own release floor (its board's
    /// `release_floor`): releases below it are neither staged nor booted.
    pub fn set_system_floor(&mut self, floor: u64) {
        self.system_floor = floor;
    }

    /// The path of an image.
    pub fn image_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(IMAGES).join(image_name(digest))
    }

    fn write_record(&mut self, rec: Record) -> Result<(), StoreError> {
        if self.unread {
            return Err(StoreError::Unread);
        }
        let generation = self.generation.saturating_add(1);
        let bytes = record::encode_slot(&rec, generation).ok_or(StoreError::Encode)?;
        let name = record::SLOTS.get(self.next_slot).copied().unwrap_or(record::SLOTS[0]);
        replace(&mut self.io, &self.dir, name, &bytes).map_err(io_err("write", &self.dir.join(name)))?;
        self.record = rec;
        self.generation = generation;
        self.next_slot = 1 - self.next_slot.min(1);
        Ok(())
    }

    /// [`Store::write_record`] of an update's `kind` (the test hook of
    /// [`super::faults`] may fail it first).
    fn write_record_of(&mut self, kind: super::faults::Kind, rec: Record) -> Result<(), StoreError> {
        let name = record::SLOTS.get(self.next_slot).copied().unwrap_or(record::SLOTS[0]);
        super::faults::check(kind).map_err(io_err("write", &self.dir.join(name)))?;
        self.write_record(rec)
    }

    fn has_image(&self, digest: &Digest, size: u64) -> bool {
        std::fs::metadata(self.image_path(digest)).is_ok_and(|m| m.is_file() && m.len() == size)
    }

    /// Read a kept release's object and check it against its name.
    fn object(&self, entry: &Entry) -> Result<Vec<u8>, ObjectError> {
        let bytes = read_bounded(&self.release_path(&entry.digest), OBJECT_MAX).map_err(|e| ObjectError::Read(e.kind()))?;
        if sha256(&bytes) != entry.digest {
            return Err(ObjectError::Corrupt);
        }
        Ok(bytes)
    }

    /// Verify a kept release for booting: object, signature, board, its
    /// images present, and (with `rec`) admitted under that record's floor.
    fn usable(&self, entry: &Entry, keys: &TrustedKeys, board: &str, rec: Option<&Record>) -> Result<Verified, ObjectError> {
        let bytes = self.object(entry)?;
        let v = decode_release(&bytes, keys, board, None).map_err(ObjectError::Rejected)?;
        if v.release.version < self.system_floor {
            return Err(ObjectError::Rejected(ReleaseError::Rollback { release: v.release.version, stored: self.system_floor }));
        }
        if let (Some(rec), Some(floor)) = (rec, rec.and_then(|r| r.highest)) {
            if !rec.admits(&Entry { digest: entry.digest, version: v.release.version }) {
                return Err(ObjectError::Rejected(ReleaseError::Rollback { release: v.release.version, stored: floor }));
            }
        }
        if let Some(img) = v.release.images.iter().find(|i| !self.has_image(&i.sha256, i.size)) {
            return Err(ObjectError::Image(img.sha256));
        }
        Ok(v)
    }

    /// The current release, verified as at boot (after a rollback, to load
    /// the release rolled back to).
    pub fn verify_current(&self, keys: &TrustedKeys, board: &str) -> Result<Verified, ObjectError> {
        let entry = self.record.current.ok_or(ObjectError::Read(io::ErrorKind::NotFound))?;
        self.usable(&entry, keys, board, Some(&self.record))
    }

    /// Decide what this boot runs, verify it (falling back to the other
    /// kept release if it is unusable), and record the boot. Call once per
    /// boot, before anything starts.
    pub fn boot(&mut self, keys: &TrustedKeys, board: &str) -> Result<Booted, BootError> {
        self.boot_after(keys, board, None)
    }

    /// [`Store::boot`] after a try of a system slot settled `verdict`
    /// ([`Record::at_boot_after`]).
    pub fn boot_after(&mut self, keys: &TrustedKeys, board: &str, verdict: Option<crate::release::record::SystemVerdict>) -> Result<Booted, BootError> {
        let notes = if self.unread { self.rebuild(keys, board) } else { Vec::new() };
        let (mut rec, choice) = self.record.at_boot_after(verdict);
        let mut rollbacks = Vec::new();
        let (mut entry, trial) = match choice {
            BootChoice::None => return Err(BootError::None),
            BootChoice::Committed(e) => (e, false),
            BootChoice::Trial(e) => (e, true),
            BootChoice::RolledBack { to, rollback } => {
                rollbacks.push((rollback, None));
                (to, false)
            }
        };
        let mut first_error = None;
        let verified = loop {
            match self.usable(&entry, keys, board, Some(&rec)) {
                Ok(v) => break v,
                Err(e) => {
                    // A kept release was accepted before: the fallback
                    // admits it below the floor, which stays.
                    let Some((next, other, rollback)) = rec.fall_back(entry) else {
                        return Err(BootError::Unusable(first_error.unwrap_or(e)));
                    };
                    rollbacks.push((rollback, Some(e.clone())));
                    first_error.get_or_insert(e);
                    (rec, entry) = (next, other);
                }
            }
        };
        let trial = trial && rollbacks.is_empty();
        let raised = rec.phase == Phase::Committed && rec.highest.is_none_or(|f| verified.release.version > f);
        if raised {
            rec.highest = rec.raised_to(verified.release.version);
        }
        let floor = rec.highest;
        let unrecorded = self.write_record(rec).and_then(|()| self.write_witness()).err().map(|e| e.to_string());
        Ok(Booted { entry, verified, trial, raised, rollbacks, unrecorded, floor, notes })
    }

    /// Verify an update bundle and take its release and new images into
    /// the store. Nothing that runs changes; on error, what was written is
    /// removed again.
    pub fn stage(&mut self, bundle: &mut impl Read, keys: &TrustedKeys, board: &str) -> Result<Staged, StageError> {
        if self.unread {
            return Err(StageError::Store(StoreError::Unread));
        }
        if self.record.phase != Phase::Committed {
            return Err(StageError::TrialInProgress);
        }
        let header = bundle::read_header(bundle)?;
        let new = |e: &&bundle::TableEntry| !self.has_image(&e.sha256, e.size);
        let need = header.images.iter().filter(new).fold(header.release.len() as u64, |n, e| n.saturating_add(e.size));
        let free = self.io.free_bytes(&self.dir).map_err(io_err("statvfs", &self.dir))?;
        if crate::release::room::fits(need, free).is_err() {
            return Err(StageError::NoSpace { need, free });
        }
        let verified = bundle::check_release(&header.release, keys, Some(board), floor::installed(&self.record))?;
        floor::check_marker(&self.record, &verified.release)?;
        if verified.release.version < self.system_floor {
            return Err(BundleError::Release(ReleaseError::Rollback { release: verified.release.version, stored: self.system_floor }).into());
        }
        bundle::check_table(&header, &verified.release)?;
        let sys = verified.release.system.iter().flat_map(|s| s.parts());
        let all = verified.release.images.iter().map(|i| (i.sha256, i.size)).chain(sys.map(|b| (b.sha256, b.size)));
        let missing = all.into_iter().find(|(d, size)| !header.images.iter().any(|e| e.sha256 == *d) && !self.has_image(d, *size));
        if let Some((d, _)) = missing {
            return Err(StageError::MissingImage(d));
        }
        let staging = self.dir.join(STAGING);
        let staged = self.stage_images(bundle, &header, &verified, &staging);
        let installed = staged.and_then(|added| self.install(&header, &staging, &added).map(|()| added.len()));
        match installed {
            Ok(images_added) => {
                Ok(Staged { entry: Entry { digest: sha256(&header.release), version: verified.release.version }, verified, images_added, bytes: need })
            }
            Err(e) => {
                if staging.exists() {
                    let _ = self.io.remove_dir_all(&staging);
                    let _ = self.io.sync_dir(&self.dir);
                }
                Err(e)
            }
        }
    }

    /// Copy the images the store lacks into `staging/`, checking each one;
    /// skip over the others. Returns the digests staged.
    fn stage_images(&mut self, bundle: &mut impl Read, header: &Header, v: &Verified, staging: &Path) -> Result<Vec<Digest>, StageError> {
        if staging.exists() {
            self.io.remove_dir_all(staging).map_err(io_err("remove", staging))?;
        }
        self.io.create_dir(staging).map_err(io_err("mkdir", staging))?;
        let mut buf = vec![0u8; bundle::CHUNK];
        let mut added = Vec::new();
        for e in &header.images {
            if self.has_image(&e.sha256, e.size) {
                bundle::copy_image(bundle, &mut io::sink(), e, &mut buf).map_err(|c| copy_error(c, staging))?;
                continue;
            }
            let path = staging.join(image_name(&e.sha256));
            let mut f = self.io.create(&path).map_err(io_err("create", &path))?;
            bundle::copy_image(bundle, &mut f, e, &mut buf).map_err(|c| copy_error(c, &path))?;
            self.io.sync(&mut f).map_err(io_err("fsync", &path))?;
            drop(f);
            // A container image or the system image: its hash tree too (a
            // kernel or an initramfs is checked by its SHA-256 alone).
            let sys = v.release.system.as_ref().map(|s| s.image).filter(|i| i.sha256 == e.sha256);
            if let Some(img) = v.release.image(&e.sha256).copied().or(sys) {
                let file = std::fs::File::open(&path).map_err(io_err("open", &path))?;
                bundle::check_image(&file, 0, &img)?;
            } else if v.release.carried(&e.sha256).is_none() {
                return Err(BundleError::ImageNotInRelease(e.sha256).into());
            }
            added.push(e.sha256);
        }
        bundle::check_end(bundle)?;
        Ok(added)
    }

    /// Move staged images into place, then write the release object.
    fn install(&mut self, header: &Header, staging: &Path, added: &[Digest]) -> Result<(), StageError> {
        let images = self.dir.join(IMAGES);
        for d in added {
            let (from, to) = (staging.join(image_name(d)), images.join(image_name(d)));
            self.io.rename(&from, &to).map_err(io_err("rename", &from))?;
        }
        // No rename, nothing to make durable (docs/updates.md).
        if !added.is_empty() {
            self.io.sync_dir(&images).map_err(io_err("fsync", &images))?;
        }
        let releases = self.dir.join(RELEASES);
        let name = release_name(&sha256(&header.release));
        replace(&mut self.io, &releases, &name, &header.release).map_err(io_err("write", &releases.join(&name)))?;
        self.io.remove_dir_all(staging).map_err(io_err("remove", staging))?;
        self.io.sync_dir(&self.dir).map_err(io_err("fsync", &self.dir))?;
        Ok(())
    }

    /// A release another process staged (the stager, [`crate::release::stager`]),
    /// as [`Store::stage`] would have returned it: its object read back
    /// (small) and checked against its name, verified (signature, board,
    /// contents) and its images present with their sizes. No image is read.
    pub fn staged(&self, entry: Entry, keys: &TrustedKeys, board: &str, images_added: usize, bytes: u64) -> Result<Staged, ObjectError> {
        let verified = self.usable(&entry, keys, board, None)?;
        if verified.release.version != entry.version {
            return Err(ObjectError::Corrupt);
        }
        // What the stager checked, checked again against this record.
        let installed = floor::installed(&self.record);
        bundle::check_release(&self.object(&entry)?, keys, Some(board), installed).map_err(ObjectError::Refused)?;
        floor::check_marker(&self.record, &verified.release).map_err(ObjectError::Refused)?;
        Ok(Staged { entry, verified, images_added, bytes })
    }

    /// Put a staged release on trial: it becomes current, the running one
    /// previous. Call right before switching (`boot_pending`: the switch is
    /// a reboot, whose boot must run the trial rather than roll it back).
    pub fn begin_trial(&mut self, staged: &Staged, boot_pending: bool) -> Result<(), StoreError> {
        let mut rec = self.record.begin_trial(staged.entry, boot_pending)?;
        // Staging took it below the floor only through its marker: admit
        // exactly this digest.
        if !rec.admits(&staged.entry) {
            rec.admitted = Some(staged.entry.digest);
        }
        // Only what is durably in place may be referred to.
        let object = self.release_path(&staged.entry.digest);
        std::fs::metadata(&object).map_err(io_err("stat", &object))?;
        for img in staged.verified.release.images.iter() {
            if !self.has_image(&img.sha256, img.size) {
                let path = self.image_path(&img.sha256);
                return Err(io_err("stat", &path)(io::Error::from(io::ErrorKind::NotFound)));
            }
        }
        self.write_record_of(super::faults::Kind::Trial, rec)
    }

    /// The release on trial was healthy for its commit window.
    pub fn commit(&mut self) -> Result<(), StoreError> {
        let rec = self.record.commit()?;
        self.write_record_of(super::faults::Kind::Commit, rec)?;
        // The record is durable: a witness that fails to follow lags as after
        // a power cut between the two writes, and the next boot writes it.
        let _ = self.write_witness();
        Ok(())
    }

    /// Roll the release on trial back to the previous one, recording why.
    /// With no previous one (a repair from the recovery state) the trial is
    /// abandoned: nothing is current (`to` is 0) and the device is back in
    /// the recovery state.
    pub fn rollback(&mut self, cause: Cause, container: Option<Name>) -> Result<Rollback, StoreError> {
        let (rec, rollback) = match self.record.rollback(cause, container.clone()) {
            Err(record::TransitionError::NothingToRollBackTo) => self.record.abandon(cause, container)?,
            other => other?,
        };
        self.write_record_of(super::faults::Kind::Rollback, rec)?;
        Ok(rollback)
    }

    /// No release could be booted: open the recovery state's record (no
    /// trial open) so that a repair can be staged. Writes only if it
    /// changes.
    pub fn enter_recovery(&mut self) -> Result<(), StoreError> {
        let rec = self.record.recovering();
        if rec == self.record {
            return Ok(());
        }
        self.write_record(rec)
    }
}

fn copy_error(c: CopyError, path: &Path) -> StageError {
    match c {
        CopyError::Bundle(b) => StageError::Bundle(b),
        CopyError::Write(error) => StageError::Store(StoreError::Io { step: "write", path: path.to_path_buf(), error }),
    }
}

mod errors;
mod floor;
mod gc;
mod naming;

pub use naming::{image_name, release_name};
use naming::{parse_hex, sha256};

pub use errors::{BootError, ObjectError, StageError, StoreError};
#[cfg(test)]
mod tests;
