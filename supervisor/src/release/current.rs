//! The device's current release: where it is kept and how it is checked at boot.
//!
//! The signed release lives on the data partition at [`RELEASE`]; the trusted
//! keys on the read-only system image in [`KEYS`]; the highest accepted
//! version in [`STATE`] (see [`super::state`]). A release that fails any check
//! is refused with the decoder's own error text, and nothing is changed.

use super::{decode_release, state, ReleaseError, TrustedKeys, Verified, OBJECT_MAX};
use core::fmt;
use std::path::Path;

/// Trusted public keys, one `<id>.pub` file each.
pub const KEYS: &str = "/etc/berth/keys";
/// Directory of release state on the data partition.
pub const STATE: &str = "/data/berth";
/// The current signed release.
pub const RELEASE: &str = "/data/berth/release.bin";
/// Content-addressed images: `<sha256 hex>.img`.
pub const IMAGES: &str = "/data/berth/images";
/// Where verified images are mounted: `<first 16 hex digits of sha256>`.
pub const MOUNTS: &str = "/run/berth/images";

/// The image file of a content hash.
pub fn image_path(digest: &crate::manifest::Digest) -> heapless::String<128> {
    let mut s = heapless::String::new();
    let _ = core::fmt::write(&mut s, format_args!("{IMAGES}/{digest_hex}.img", digest_hex = Hex(&digest.0)));
    s
}

/// The mount point of a verified image.
pub fn mount_path(digest: &crate::manifest::Digest) -> heapless::String<64> {
    let mut s = heapless::String::new();
    let short = digest.0.get(..8).unwrap_or(&[]);
    let _ = core::fmt::write(&mut s, format_args!("{MOUNTS}/{}", Hex(short)));
    s
}

/// The device-mapper name of a verified image.
pub fn dm_name(digest: &crate::manifest::Digest) -> heapless::String<32> {
    let mut s = heapless::String::new();
    let short = digest.0.get(..8).unwrap_or(&[]);
    let _ = core::fmt::write(&mut s, format_args!("berth-{}", Hex(short)));
    s
}

struct Hex<'a>(&'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// Why no release could be taken at boot.
#[derive(Debug)]
pub enum CurrentError {
    /// No release stored yet.
    Missing,
    /// The trusted key directory is unusable.
    Keys(String),
    /// The release file could not be read.
    Read(std::io::Error),
    /// The stored highest version is unreadable or corrupt.
    State(std::io::Error),
    /// The release failed a check.
    Rejected(ReleaseError),
}

impl fmt::Display for CurrentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CurrentError::Missing => write!(f, "no release at {RELEASE}"),
            CurrentError::Keys(e) => write!(f, "trusted keys in {KEYS}: {e}"),
            CurrentError::Read(e) => write!(f, "{RELEASE}: {e}"),
            CurrentError::State(e) => write!(f, "{STATE}/{}: {e}", state::FILE),
            CurrentError::Rejected(e) => write!(f, "{e}"),
        }
    }
}

fn read_bounded(path: &Path, max: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let f = std::fs::File::open(path)?;
    let mut buf = Vec::new();
    // One byte past the limit, so an oversized file is refused by the decoder.
    f.take(max as u64 + 1).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Check the current release for this board; on success raise the stored
/// highest version when the release is newer (or an accepted downgrade).
/// Returns the release and whether the stored version changed.
pub fn load(keys_dir: &Path, state_dir: &Path, board: &str) -> Result<(Verified, bool), CurrentError> {
    let keys = TrustedKeys::load_dir(keys_dir).map_err(|e| CurrentError::Keys(e.to_string()))?;
    let bytes = match read_bounded(&state_dir.join("release.bin"), OBJECT_MAX) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(CurrentError::Missing),
        Err(e) => return Err(CurrentError::Read(e)),
    };
    let stored = state::load_highest(state_dir).map_err(CurrentError::State)?;
    let v = decode_release(&bytes, &keys, board, stored).map_err(CurrentError::Rejected)?;
    let changed = stored != Some(v.release.version);
    if changed {
        state::store_highest(state_dir, v.release.version).map_err(CurrentError::State)?;
    }
    Ok((v, changed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::{key_file, sign_payload, signing_key_from_seed};

    fn setup(payload_board: &str) -> (std::path::PathBuf, std::path::PathBuf, Vec<u8>) {
        let base = std::env::temp_dir().join(format!("berth-current-{}-{payload_board}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let (keys, st) = (base.join("keys"), base.join("state"));
        std::fs::create_dir_all(&keys).unwrap();
        std::fs::create_dir_all(&st).unwrap();
        let key = signing_key_from_seed(&[7; 32]);
        let (name, text) = key_file(&key.verifying_key());
        std::fs::write(keys.join(name), text).unwrap();
        let mut r = crate::release::tests::small();
        r.board.clear();
        r.board.push_str(payload_board).unwrap();
        let signed = sign_payload(&r.encode_payload().unwrap(), &key).unwrap();
        (keys, st, signed)
    }

    #[test]
    fn image_paths() {
        let d = crate::manifest::Digest([0xab; 32]);
        assert_eq!(image_path(&d).as_str(), format!("/data/berth/images/{}.img", "ab".repeat(32)));
        assert_eq!(mount_path(&d).as_str(), format!("/run/berth/images/{}", "ab".repeat(8)));
        assert_eq!(dm_name(&d).as_str(), format!("berth-{}", "ab".repeat(8)));
    }

    #[test]
    fn missing_good_tampered_and_rollback() {
        let (keys, st, signed) = setup("board-a");
        assert!(matches!(load(&keys, &st, "board-a"), Err(CurrentError::Missing)));
        std::fs::write(st.join("release.bin"), &signed).unwrap();
        let (v, changed) = load(&keys, &st, "board-a").unwrap();
        assert!(changed);
        assert_eq!(state::load_highest(&st).unwrap(), Some(v.release.version));
        // The same release again: accepted, nothing stored anew.
        assert!(!load(&keys, &st, "board-a").unwrap().1);
        // Another board.
        assert!(matches!(load(&keys, &st, "board-b"), Err(CurrentError::Rejected(ReleaseError::WrongBoard { .. }))));
        // A flipped byte.
        let mut bad = signed.clone();
        if let Some(b) = bad.get_mut(30) {
            *b ^= 1;
        }
        std::fs::write(st.join("release.bin"), &bad).unwrap();
        assert!(matches!(load(&keys, &st, "board-a"), Err(CurrentError::Rejected(_))));
        // A newer stored version refuses the (older) release.
        std::fs::write(st.join("release.bin"), &signed).unwrap();
        state::store_highest(&st, v.release.version + 1).unwrap();
        assert!(matches!(load(&keys, &st, "board-a"), Err(CurrentError::Rejected(ReleaseError::Rollback { .. }))));
        // A corrupt state file is an error, not "nothing stored".
        std::fs::write(st.join(state::FILE), b"garbage").unwrap();
        assert!(matches!(load(&keys, &st, "board-a"), Err(CurrentError::State(_))));
    }
}
