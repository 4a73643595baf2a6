//! Signed releases: the one object that says which containers a device runs.
//!
//! Decoding and checking a release are pure: this module must not touch the
//! store or the system (the store keeps releases, [`images`] maps them,
//! supervise runs them).
//!
//! A release holds a monotonically increasing version, the board it is for,
//! the full set of [manifests](crate::release::manifest), and for each image its size,
//! content hash and dm-verity root hash. The host compiles it to postcard and
//! signs it with Ed25519; the device checks it with [`decode_release`].
//!
//! # Wire format (format 1)
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `BRTH` |
//! | 4 | 1 | format, `1` |
//! | 5 | 8 | key id: the first 8 bytes of SHA-256 of the signer's 32-byte public key |
//! | 13 | 4 | payload length `n`, u32 little-endian |
//! | 17 | n | payload: a postcard-encoded [`Release`] |
//! | 17+n | 64 | Ed25519 signature (RFC 8032) over bytes `0 .. 17+n` (header and payload) |
//!
//! The whole object is at most [`OBJECT_MAX`] bytes.
//!
//! # Decoding order
//!
//! Nothing in the payload is looked at before the signature is good:
//! size bounds ([`ReleaseError::TooLarge`], [`ReleaseError::Truncated`]) ->
//! magic -> format -> declared length equals actual ([`ReleaseError::Truncated`],
//! [`ReleaseError::TrailingBytes`]) -> key id in the [`TrustedKeys`] ->
//! strict signature check -> postcard into fixed-capacity types ->
//! semantic validation (manifests, unique names, known dependencies, no cycle,
//! images) -> board -> version. Every rejection is its own [`ReleaseError`]
//! variant. Decoding allocates only within bounds: the container and image
//! lists are one [`BoundedVec`] each (at most [`CONTAINERS_MAX`] elements,
//! refused before allocating when the encoded length is larger), everything
//! else is fixed-capacity (heapless), and error texts are short.
//!
//! # Anti-rollback and the downgrade marker
//!
//! The device keeps an anti-rollback floor: the highest version it ever
//! committed (or found in its store when it had to rebuild its record). The
//! floor only rises; [`record`] and [`store`] own the rules that keep it so.
//! A release is accepted when its version is at least the floor (equal is
//! the release already running, met again at every boot; the signer never
//! signs two different releases with one version). A lower version is
//! refused ([`ReleaseError::Rollback`]) unless the release carries a signed
//! [`Downgrade`] marker `{ floor }` naming the device's floor exactly.
//!
//! The marker is inside the signed payload, so only the key holder can grant
//! it, and it admits exactly the one object that carries it (its digest):
//! other releases of the same or a lower version stay refused, and the floor
//! does not move down. The store pins the admitted digest in its record
//! while the release is kept, and a marker expires: it is dead once the
//! floor is anything but its `floor`, and it is consumed by the first commit
//! of a release it admitted (no second marker for the same floor is taken).
//! Markers are honoured only when an update is installed, never at boot.

pub mod board;
pub mod bootenv;
mod bounded;
pub mod budgets;
pub mod bundle;
pub mod current;
pub mod drops;
pub mod durable;
pub mod faults;
pub mod images;
pub mod inbox;
pub mod installed;
mod keys;
pub mod logwrites;
pub mod manifest;
pub mod pem;
pub mod record;
pub mod restart;
pub mod room;
pub mod slottry;
pub mod slotwrite;
pub mod stager;
pub mod state;
pub mod store;
pub mod system;
pub mod trial;
pub mod verity;
pub mod volumes;

pub use bounded::BoundedVec;
pub use ed25519_dalek::{SigningKey, VerifyingKey};
pub use keys::{file_key_id, key_file, key_id, KeyError, KeyId, TrustedKey, TrustedKeys, KEYS_MAX, KEY_FILE_MAX};
#[cfg(any(feature = "host", test))]
pub use keys::{keygen, signing_key_from_pkcs8_pem, signing_key_from_seed};

use core::fmt;
use ed25519_dalek::{Signature, SIGNATURE_LENGTH};
use serde::{Deserialize, Serialize};

use crate::release::manifest::{Digest, Manifest, ManifestError};

/// Magic bytes at the start of a signed release.
pub const MAGIC: [u8; 4] = *b"BRTH";
/// The wire format this build reads and writes.
pub const FORMAT: u8 = 1;
/// Header length: magic, format, key id, payload length.
pub const HEADER_LEN: usize = 4 + 1 + 8 + 4;
/// Signature length.
pub const SIG_LEN: usize = SIGNATURE_LENGTH;
/// Largest signed object accepted, header and signature included.
pub const OBJECT_MAX: usize = 64 * 1024;
/// Most containers (and images) in a release.
pub const CONTAINERS_MAX: usize = manifest::SET_MAX;

/// A release: what one device runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    /// Monotonically increasing release version.
    pub version: u64,
    /// The board the release is for (the board config's `name`).
    pub board: crate::release::board::Name,
    /// Signed permission to be installed over a higher stored version.
    pub downgrade: Option<Downgrade>,
    /// The containers.
    pub containers: BoundedVec<Manifest, CONTAINERS_MAX>,
    /// Every image a container names, once.
    pub images: BoundedVec<Image, CONTAINERS_MAX>,
    /// After an update, how long every container must run ready and healthy
    /// before the release is committed (1..=86400 s).
    pub commit_window_s: u32,
    /// The switch to this release is a reboot (host side changes).
    pub reboot: bool,
    /// The longest a trial of this release may stay open (seconds from
    /// its start): past it without a commit, it rolls back
    /// (`trial-timeout`). Above `commit_window_s`, at most
    /// [`TRIAL_DEADLINE_MAX_S`]; the release tools fill in
    /// [`trial_deadline_default`] when `release.toml` does not say.
    pub trial_deadline_s: u32,
    /// A system slot payload (kernel, initramfs, system image) written
    /// into the inactive A/B slot and booted on trial ([`system`]).
    #[serde(default)]
    pub system: Option<system::System>,
}

impl Release {
    /// No release: what runs in the recovery state (version 0, no
    /// containers), the starting point a repair switches from.
    pub fn empty(board: crate::release::board::Name) -> Release {
        Release {
            version: 0,
            board,
            downgrade: None,
            containers: BoundedVec::default(),
            images: BoundedVec::default(),
            commit_window_s: COMMIT_WINDOW_S,
            reboot: false,
            trial_deadline_s: trial_deadline_default(COMMIT_WINDOW_S),
            system: None,
        }
    }
}

/// Default commit window.
pub const COMMIT_WINDOW_S: u32 = 120;
/// Longest trial deadline: two days.
pub const TRIAL_DEADLINE_MAX_S: u32 = 172_800;
/// What the default trial deadline adds to the commit window: time for
/// the containers to start and become ready.
pub const TRIAL_START_ALLOWANCE_S: u32 = 600;

/// The trial deadline of a release whose `release.toml` names none: its
/// commit window plus [`TRIAL_START_ALLOWANCE_S`] (12 minutes for the
/// default window).
pub fn trial_deadline_default(commit_window_s: u32) -> u32 {
    commit_window_s.saturating_add(TRIAL_START_ALLOWANCE_S).min(TRIAL_DEADLINE_MAX_S)
}

/// A signed downgrade marker: the release (and no other object) may be
/// installed below the device's anti-rollback floor while that floor is
/// exactly `floor` (above the release's own version).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Downgrade {
    pub floor: u64,
}

/// A container image: its content hash, size and dm-verity root hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Image {
    /// SHA-256 of the whole image file.
    pub sha256: Digest,
    /// Image size in bytes.
    pub size: u64,
    /// dm-verity root hash (SHA-256 hash tree).
    pub verity_root: [u8; 32],
    /// dm-verity salt: images carry no verity superblock, so the device
    /// builds its dm table from the release alone.
    pub verity_salt: [u8; 32],
}

/// A decoded, verified and validated release and the key that signed it.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub key_id: KeyId,
    pub release: Release,
}

/// Why a release was refused. Each check has its own variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseError {
    /// Bigger than [`OBJECT_MAX`] (or, when signing, would be).
    TooLarge {
        len: usize,
    },
    /// Shorter than its header, signature or declared payload.
    Truncated {
        len: usize,
        needed: usize,
    },
    BadMagic,
    UnsupportedFormat {
        format: u8,
    },
    /// Bytes after the signature.
    TrailingBytes {
        extra: usize,
    },
    /// The key id names no trusted key.
    UnknownKey {
        id: KeyId,
    },
    /// The signature does not verify with the named key.
    BadSignature {
        id: KeyId,
    },
    /// The signed payload is not a release (postcard says why).
    Decode {
        reason: &'static str,
    },
    /// The payload decodes but has bytes left over.
    PayloadTrailingBytes {
        extra: usize,
    },
    /// A manifest (or the set of them) is invalid.
    Invalid(ManifestError),
    /// A release-level field is invalid.
    BadField {
        field: std::string::String,
        reason: std::string::String,
    },
    WrongBoard {
        release: std::string::String,
        device: std::string::String,
    },
    /// Older than the stored highest version, with no marker allowing it.
    Rollback {
        release: u64,
        stored: u64,
    },
    /// Signing only: the payload does not encode.
    Encode,
}

impl fmt::Display for ReleaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ReleaseError::*;
        match self {
            TooLarge { len } => write!(f, "release is {len} bytes, more than the {OBJECT_MAX} allowed"),
            Truncated { len, needed } => {
                write!(f, "release is truncated: {len} bytes, needs {needed}")
            }
            BadMagic => write!(f, "not a berth release (bad magic)"),
            UnsupportedFormat { format } => write!(f, "release format {format} is not supported (expected {FORMAT})"),
            TrailingBytes { extra } => write!(f, "release has {extra} bytes after its signature"),
            UnknownKey { id } => write!(f, "release is signed by key {id}, which this device does not trust"),
            BadSignature { id } => write!(f, "release signature does not verify with key {id}"),
            Decode { reason } => write!(f, "signed payload does not decode: {reason}"),
            PayloadTrailingBytes { extra } => {
                write!(f, "signed payload has {extra} bytes after the release")
            }
            Invalid(e) => write!(f, "invalid release: {e}"),
            BadField { field, reason } => write!(f, "invalid release: field {field}: {reason}"),
            WrongBoard { release, device } => {
                write!(f, "release is for board {release}, this device is {device}")
            }
            Rollback { release, stored } => {
                write!(f, "release version {release} is older than the accepted version {stored} and no downgrade marker allows it")
            }
            Encode => write!(f, "release does not encode"),
        }
    }
}

impl std::error::Error for ReleaseError {}

impl From<ManifestError> for ReleaseError {
    fn from(e: ManifestError) -> Self {
        ReleaseError::Invalid(e)
    }
}

fn bad(field: impl Into<std::string::String>, reason: impl Into<std::string::String>) -> ReleaseError {
    ReleaseError::BadField { field: field.into(), reason: reason.into() }
}

impl Release {
    /// Check everything that does not depend on the device: manifests, the
    /// set (names, dependencies, cycles, gates), images, the downgrade marker.
    pub fn validate(&self) -> Result<(), ReleaseError> {
        if !(1..=86_400).contains(&self.commit_window_s) {
            return Err(bad("commit_window_s", "must be between 1 and 86400"));
        }
        if self.trial_deadline_s <= self.commit_window_s || self.trial_deadline_s > TRIAL_DEADLINE_MAX_S {
            return Err(bad("trial_deadline_s", format!("must be above commit_window_s ({}) and at most {TRIAL_DEADLINE_MAX_S}", self.commit_window_s)));
        }
        if self.board.is_empty() || !self.board.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            return Err(bad("board", "must be a board name"));
        }
        if let Some(d) = self.downgrade {
            if d.floor <= self.version {
                return Err(bad("downgrade.floor", "must be above the release's own version"));
            }
        }
        manifest::validate_set(&self.containers)?;
        if let Some(sys) = &self.system {
            sys.validate().map_err(|(field, why)| bad(field, why))?;
            if sys.parts().iter().any(|p| self.image(&p.sha256).is_some()) {
                return Err(bad("system", "a part of the system payload is also a container image"));
            }
        }
        for (i, img) in self.images.iter().enumerate() {
            if img.size == 0 {
                return Err(bad(format!("images[{i}].size"), "must not be zero"));
            }
            if self.images.iter().take(i).any(|o| o.sha256 == img.sha256) {
                return Err(bad(format!("images[{i}].sha256"), format!("{} is listed twice", img.sha256)));
            }
            if !self.containers.iter().any(|c| c.image == img.sha256) {
                return Err(bad(format!("images[{i}].sha256"), format!("{} is used by no container", img.sha256)));
            }
        }
        for c in &self.containers {
            if !self.images.iter().any(|i| i.sha256 == c.image) {
                return Err(ManifestError {
                    manifest: c.name.as_str().into(),
                    field: "image".into(),
                    reason: format!("{} is not in the release's image list", c.image),
                }
                .into());
            }
        }
        Ok(())
    }

    /// The image a container runs.
    pub fn image(&self, digest: &Digest) -> Option<&Image> {
        self.images.iter().find(|i| &i.sha256 == digest)
    }

    /// The size of the file named `digest` the release carries: a
    /// container image or a part of its system payload.
    pub fn carried(&self, digest: &Digest) -> Option<u64> {
        self.image(digest).map(|i| i.size).or_else(|| self.system.as_ref()?.part(digest).map(|b| b.size))
    }

    /// The postcard payload that gets signed.
    pub fn encode_payload(&self) -> Result<std::vec::Vec<u8>, ReleaseError> {
        postcard::to_allocvec(self).map_err(|_| ReleaseError::Encode)
    }
}

/// Anti-rollback: may `release` be installed on a device whose floor is
/// `stored` (`None`: nothing accepted yet)? At or above it, or below it with
/// a marker naming `stored` exactly. Whether that marker was already used is
/// the store's to say ([`store::Store::stage`]).
pub fn check_version(release: &Release, stored: Option<u64>) -> Result<(), ReleaseError> {
    let Some(stored) = stored else { return Ok(()) };
    if release.version >= stored || marker_names(release, stored) {
        return Ok(());
    }
    Err(ReleaseError::Rollback { release: release.version, stored })
}

/// The release carries a downgrade marker for exactly the floor `floor`.
pub fn marker_names(release: &Release, floor: u64) -> bool {
    release.downgrade.is_some_and(|d| d.floor == floor)
}

/// The parts of a signed object: key id, signed bytes, payload, signature.
type Parts<'a> = (KeyId, &'a [u8], &'a [u8], &'a [u8; SIG_LEN]);

/// Check the envelope's bounds and split it; nothing is verified yet.
fn split(bytes: &[u8]) -> Result<Parts<'_>, ReleaseError> {
    let len = bytes.len();
    if len > OBJECT_MAX {
        return Err(ReleaseError::TooLarge { len });
    }
    let Some((header, rest)) = bytes.split_first_chunk::<HEADER_LEN>() else {
        return Err(ReleaseError::Truncated { len, needed: HEADER_LEN + SIG_LEN });
    };
    let (magic, h) = header.split_at(4);
    if magic != MAGIC {
        return Err(ReleaseError::BadMagic);
    }
    let (format, h) = h.split_at(1);
    if format != [FORMAT] {
        return Err(ReleaseError::UnsupportedFormat { format: format.first().copied().unwrap_or(0) });
    }
    let (id, n) = h.split_at(8);
    let mut id_bytes = [0u8; 8];
    id_bytes.copy_from_slice(id);
    let id = KeyId(id_bytes);
    let mut n_bytes = [0u8; 4];
    n_bytes.copy_from_slice(n);
    let declared = u32::from_le_bytes(n_bytes) as usize;
    let needed = HEADER_LEN.saturating_add(declared).saturating_add(SIG_LEN);
    if needed > len {
        return Err(ReleaseError::Truncated { len, needed });
    }
    if needed < len {
        return Err(ReleaseError::TrailingBytes { extra: len - needed });
    }
    let Some((payload, sig)) = rest.split_at_checked(declared) else {
        return Err(ReleaseError::Truncated { len, needed });
    };
    let Ok(sig) = <&[u8; SIG_LEN]>::try_from(sig) else {
        return Err(ReleaseError::Truncated { len, needed });
    };
    let Some(signed) = bytes.get(..HEADER_LEN + declared) else {
        return Err(ReleaseError::Truncated { len, needed });
    };
    Ok((id, signed, payload, sig))
}

/// Check the envelope and the signature; return the signer's id and the
/// (now trusted) payload bytes. Nothing in the payload is read.
pub fn open<'a>(bytes: &'a [u8], keys: &TrustedKeys) -> Result<(KeyId, &'a [u8]), ReleaseError> {
    let (id, signed, payload, sig) = split(bytes)?;
    let Some(key) = keys.get(&id) else {
        return Err(ReleaseError::UnknownKey { id });
    };
    key.verify_strict(signed, &Signature::from_bytes(sig)).map_err(|_| ReleaseError::BadSignature { id })?;
    Ok((id, payload))
}

/// A release object's contents *without* checking its signature: only for
/// the store's bookkeeping of objects it verified when it took them in (which
/// images they use, their versions); never to decide what runs.
pub fn peek(bytes: &[u8]) -> Result<Release, ReleaseError> {
    let (_, _, payload, _) = split(bytes)?;
    decode_payload(payload)
}

/// Decode a trusted payload into a release and validate it (no board or
/// version check). Public for the fuzzers.
pub fn decode_payload(payload: &[u8]) -> Result<Release, ReleaseError> {
    let (release, rest) = postcard::take_from_bytes::<Release>(payload).map_err(|e| ReleaseError::Decode { reason: postcard_reason(&e) })?;
    if !rest.is_empty() {
        return Err(ReleaseError::PayloadTrailingBytes { extra: rest.len() });
    }
    release.validate()?;
    Ok(release)
}

/// The whole device-side check: envelope, key, signature, payload, validity,
/// board, anti-rollback.
pub fn decode_release(bytes: &[u8], keys: &TrustedKeys, device_board: &str, stored: Option<u64>) -> Result<Verified, ReleaseError> {
    let (key_id, payload) = open(bytes, keys)?;
    let release = decode_payload(payload)?;
    if release.board != device_board {
        return Err(ReleaseError::WrongBoard { release: release.board.as_str().into(), device: device_board.into() });
    }
    check_version(&release, stored)?;
    Ok(Verified { key_id, release })
}

fn postcard_reason(e: &postcard::Error) -> &'static str {
    use postcard::Error::*;
    match e {
        DeserializeUnexpectedEnd => "unexpected end of payload",
        DeserializeBadVarint => "bad varint",
        DeserializeBadBool => "bad bool",
        DeserializeBadChar => "bad char",
        DeserializeBadUtf8 => "bad UTF-8",
        DeserializeBadOption => "bad option tag",
        DeserializeBadEnum => "bad enum tag",
        DeserializeBadEncoding => "bad encoding",
        DeserializeBadCrc => "bad crc",
        SerdeDeCustom => "a value is out of range or over capacity",
        _ => "malformed payload",
    }
}

/// Wrap an already-encoded payload: header, payload, signature.
#[cfg(any(feature = "host", test))]
pub fn sign_payload(payload: &[u8], key: &ed25519_dalek::SigningKey) -> Result<std::vec::Vec<u8>, ReleaseError> {
    use ed25519_dalek::Signer;
    let total = HEADER_LEN + payload.len() + SIG_LEN;
    if total > OBJECT_MAX {
        return Err(ReleaseError::TooLarge { len: total });
    }
    let len = u32::try_from(payload.len()).map_err(|_| ReleaseError::TooLarge { len: total })?;
    let mut out = std::vec::Vec::with_capacity(total);
    out.extend_from_slice(&MAGIC);
    out.push(FORMAT);
    out.extend_from_slice(&key_id(&key.verifying_key()).0);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(payload);
    let sig = key.sign(&out);
    out.extend_from_slice(&sig.to_bytes());
    Ok(out)
}

/// Validate, encode and sign a release.
#[cfg(any(feature = "host", test))]
pub fn sign(release: &Release, key: &ed25519_dalek::SigningKey) -> Result<std::vec::Vec<u8>, ReleaseError> {
    release.validate()?;
    sign_payload(&release.encode_payload()?, key)
}

/// Decode lowercase or uppercase hex into `out`; false unless it fills it exactly.
pub(crate) fn hex_decode(hex: &str, out: &mut [u8]) -> bool {
    let h = hex.as_bytes();
    if h.len() != out.len() * 2 {
        return false;
    }
    fn nib(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    for (o, pair) in out.iter_mut().zip(h.chunks_exact(2)) {
        match pair {
            [a, b] => match (nib(*a), nib(*b)) {
                (Some(a), Some(b)) => *o = a << 4 | b,
                _ => return false,
            },
            _ => return false,
        }
    }
    true
}

pub(crate) fn write_hex(f: &mut dyn fmt::Write, bytes: &[u8]) -> fmt::Result {
    bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
}

#[cfg(test)]
pub(crate) mod tests;
