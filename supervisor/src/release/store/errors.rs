//! The store's errors: a failed operation ([`StoreError`]), a refused or
//! failed staging ([`StageError`]), an unusable kept release
//! ([`ObjectError`]) and a boot with nothing to run ([`BootError`]), each
//! with the text berth logs.
//!
//! It only describes failures: it must not decide what berth does about them
//! (the callers do).

use super::state;
use crate::release::bundle::BundleError;
use crate::release::manifest::Digest;
use crate::release::record::TransitionError;
use crate::release::ReleaseError;
use core::fmt;
use std::io;
use std::path::PathBuf;

/// A store operation that failed.
#[derive(Debug)]
pub enum StoreError {
    /// A file system step failed.
    Io { step: &'static str, path: PathBuf, error: io::Error },
    /// The old single-file store's version file is corrupt.
    LegacyState(io::Error),
    /// The record does not allow the change.
    Transition(TransitionError),
    /// The record does not fit a slot.
    Encode,
    /// A kept release's object cannot be read, so what it uses is unknown.
    Kept { digest: Digest, error: ObjectError },
    /// Both record copies are unreadable and the boot has not rebuilt the
    /// record yet.
    Unread,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Io { step, path, error } => write!(f, "{step} {}: {error}", path.display()),
            StoreError::LegacyState(e) => write!(f, "{}: {e}", state::FILE),
            StoreError::Transition(e) => write!(f, "{e}"),
            StoreError::Encode => write!(f, "the state record does not encode"),
            StoreError::Kept { digest, error } => write!(f, "kept release {digest}: {error}"),
            StoreError::Unread => write!(f, "the state record is unreadable; the next boot rebuilds it"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<TransitionError> for StoreError {
    fn from(e: TransitionError) -> Self {
        StoreError::Transition(e)
    }
}

/// Why a staging was refused or failed. The running release is untouched
/// either way.
#[derive(Debug)]
pub enum StageError {
    /// The bundle is refused (its own text).
    Bundle(BundleError),
    /// An update is on trial; it must commit or roll back first.
    TrialInProgress,
    /// Not enough free space on the data partition for what the bundle adds
    /// and the reserve ([`crate::release::room::RESERVE`]).
    NoSpace { need: u64, free: u64 },
    /// An image of the release is neither in the bundle nor on the device.
    MissingImage(Digest),
    /// Writing to the store failed.
    Store(StoreError),
}

impl fmt::Display for StageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StageError::Bundle(e) => write!(f, "{e}"),
            StageError::TrialInProgress => write!(f, "an update is on trial; it must commit or roll back first"),
            StageError::NoSpace { need, free } => {
                let reserve = crate::release::room::RESERVE;
                write!(
                    f,
                    "not enough space on the data partition: the update needs {need} bytes and {reserve} stay reserved for state and logs, {free} are free"
                )
            }
            StageError::MissingImage(d) => {
                write!(f, "image {d} is neither in the bundle nor on the device")
            }
            StageError::Store(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StageError {}

impl From<BundleError> for StageError {
    fn from(e: BundleError) -> Self {
        StageError::Bundle(e)
    }
}

impl From<StoreError> for StageError {
    fn from(e: StoreError) -> Self {
        StageError::Store(e)
    }
}

/// Why a kept release cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectError {
    /// Its object file cannot be read.
    Read(io::ErrorKind),
    /// Its object's bytes do not hash to its name.
    Corrupt,
    /// The release is refused (signature, board, version...).
    Rejected(ReleaseError),
    /// An image it uses is missing or has the wrong size.
    Image(Digest),
    /// Staged by another process, but not installable under this record
    /// (anti-rollback, a spent downgrade marker).
    Refused(BundleError),
}

impl fmt::Display for ObjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ObjectError::Read(k) => write!(f, "release object unreadable: {k}"),
            ObjectError::Corrupt => write!(f, "release object does not match its hash (corrupt)"),
            ObjectError::Rejected(e) => write!(f, "{e}"),
            ObjectError::Image(d) => write!(f, "image {d} is missing or has the wrong size"),
            ObjectError::Refused(e) => write!(f, "{e}"),
        }
    }
}

/// Why no release could be booted.
#[derive(Debug)]
pub enum BootError {
    /// No release is installed.
    None,
    /// No kept release is usable; the first one's reason.
    Unusable(ObjectError),
}

impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootError::None => write!(f, "no release installed"),
            BootError::Unusable(e) => write!(f, "{e}"),
        }
    }
}
