//! The store's side of the anti-rollback floor: what an install must be
//! newer than, when a downgrade marker may still be used, the floor witness
//! file, and the record's two ways of coming about without a readable slot
//! (migrating the single-file layout, rebuilding from verified objects).
//!
//! It must not lower the floor: each rule below keeps it or raises it.
//!
//! The rules, all of which keep the floor from going down:
//!
//! - An install must be newer than [`installed`] (the higher of the floor
//!   and the running release), or carry a signed marker naming exactly that
//!   floor ([`super::super::check_version`]) which no commit has spent
//!   ([`check_marker`]).
//! - The witness `floor` follows the record: written after each record write
//!   that raised the floor, never lowered, read at open and taken when it is
//!   higher than the record's.
//! - A rebuild takes as floor the highest of the witness and the versions
//!   of the objects whose signatures verify, keeps only releases at or above
//!   it and admits nothing below it.

use super::{io_err, parse_hex, read_bounded, sha256, Note, Store, StoreError, LEGACY_RELEASE, RELEASES};
use crate::release::bundle::BundleError;
use crate::release::durable::{replace, Io};
use crate::release::record::{Entry, Record};
use crate::release::{decode_release, state, Release, TrustedKeys, OBJECT_MAX};
use std::io;

/// Release objects a rebuild looks at, at most.
const OBJECTS_MAX: usize = 256;

/// The version an install must exceed (unless a marker names it): the
/// higher of the record's floor and its current release.
pub(super) fn installed(rec: &Record) -> Option<u64> {
    match (rec.current.map(|c| c.version), rec.highest) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// A release that installs below [`installed`] does so through its marker;
/// refuse it when a commit already spent a marker at that floor.
pub(super) fn check_marker(rec: &Record, release: &Release) -> Result<(), BundleError> {
    match installed(rec) {
        Some(floor) if release.version < floor && rec.spent == Some(floor) => Err(BundleError::MarkerSpent { release: release.version, floor }),
        _ => Ok(()),
    }
}

impl<I: Io> Store<I> {
    /// Raise the witness to the record's floor, if it is below it.
    pub(super) fn write_witness(&mut self) -> Result<(), StoreError> {
        let Some(floor) = self.record.highest else {
            return Ok(());
        };
        if self.witness.is_some_and(|w| w >= floor) {
            return Ok(());
        }
        replace(&mut self.io, &self.dir, state::FLOOR, &state::encode(floor)).map_err(io_err("write", &self.dir.join(state::FLOOR)))?;
        self.witness = Some(floor);
        Ok(())
    }

    /// Move the single-file layout's release into the store, with its floor.
    pub(super) fn migrate(&mut self) -> Result<Note, StoreError> {
        let legacy = self.dir.join(LEGACY_RELEASE);
        let bytes = read_bounded(&legacy, OBJECT_MAX).map_err(io_err("read", &legacy))?;
        let highest = state::load_highest(&self.dir).map_err(StoreError::LegacyState)?;
        let digest = sha256(&bytes);
        let version = crate::release::peek(&bytes).map(|r| r.version).unwrap_or(0);
        let releases = self.dir.join(RELEASES);
        replace(&mut self.io, &releases, &super::release_name(&digest), &bytes).map_err(io_err("write", &releases))?;
        let rec = Record { highest, ..Record::installed(Entry { digest, version }) };
        self.write_record(rec)?;
        for old in [legacy, self.dir.join(state::FILE)] {
            match self.io.remove_file(&old) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err("remove", &old)(e)),
                _ => {}
            }
        }
        self.io.sync_dir(&self.dir).map_err(io_err("fsync", &self.dir))?;
        Ok(Note::Migrated { version })
    }

    /// Whether `releases/` holds anything a rebuild could look at.
    pub(super) fn has_objects(&self) -> bool {
        std::fs::read_dir(self.dir.join(RELEASES)).is_ok_and(|mut d| d.next().is_some())
    }

    /// Release objects whose bytes match their names and whose signatures,
    /// contents and board verify, newest first.
    fn verified_objects(&self, keys: &TrustedKeys, board: &str) -> Vec<Entry> {
        let mut out: Vec<Entry> = Vec::new();
        let Ok(dir) = std::fs::read_dir(self.dir.join(RELEASES)) else {
            return out;
        };
        for e in dir.flatten().take(OBJECTS_MAX) {
            let name = e.file_name();
            let Some(digest) = name.to_str().and_then(|n| n.strip_suffix(".bin")).and_then(parse_hex) else {
                continue;
            };
            let Ok(bytes) = read_bounded(&e.path(), OBJECT_MAX) else {
                continue;
            };
            if sha256(&bytes) != digest {
                continue;
            }
            if let Ok(v) = decode_release(&bytes, keys, board, None) {
                out.push(Entry { digest, version: v.release.version });
            }
        }
        out.sort_by(|a, b| b.version.cmp(&a.version).then(a.digest.cmp(&b.digest)));
        out
    }

    /// Both record copies are unreadable: make the record from the verified
    /// objects and the witness (written by the boot that follows).
    pub(super) fn rebuild(&mut self, keys: &TrustedKeys, board: &str) -> Vec<Note> {
        let objects = self.verified_objects(keys, board);
        let floor = objects.first().map(|e| e.version).max(self.witness);
        let (kept, below): (Vec<Entry>, Vec<Entry>) = objects.iter().partition(|e| floor.is_none_or(|f| e.version >= f));
        let rec = Record { current: kept.first().copied(), previous: kept.get(1).copied(), highest: floor, ..Record::default() };
        self.record = rec;
        self.unread = false;
        let mut notes = vec![Note::Rebuilt { releases: objects.len(), floor }];
        if let Some(floor) = floor {
            notes.extend(below.iter().map(|e| Note::BelowFloor { version: e.version, digest: e.digest, floor }));
        }
        notes
    }
}
