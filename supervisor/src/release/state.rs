//! Version files: the anti-rollback floor's second witness, and the highest
//! accepted version as the single-file layout kept it.
//!
//! It encodes, decodes and reads these files: it must not write one on the
//! device itself (the store writes the floor through
//! [`super::durable::replace`]; [`FILE`] is only read).
//!
//! The store keeps the floor in its record ([`super::record::Record::highest`])
//! and, as a second witness that survives the loss of both record copies,
//! in the file [`FLOOR`], which it raises after the record (never lowers)
//! through [`super::durable::replace`]. The old layout's [`FILE`] is read
//! once, when [`super::store::Store::open`] migrates an old data partition,
//! and removed.
//!
//! Both files have one encoding, 20 bytes: magic `BRTV`, the
//! version as u64 little-endian, then the first 8 bytes of SHA-256 over the
//! preceding 12 bytes. Each is replaced atomically: write a temporary file,
//! fsync it, rename it over the old file, fsync the directory. A missing file
//! means no release was accepted yet; a file that fails its checksum is an
//! error the caller must not treat as "nothing stored".

use sha2::{Digest as _, Sha256};
use std::io;
use std::path::Path;

/// The old layout's version file.
pub const FILE: &str = "release-version";
/// The floor witness, next to the record slots.
pub const FLOOR: &str = "floor";
#[cfg(test)]
const TMP: &str = "release-version.tmp";
const MAGIC: [u8; 4] = *b"BRTV";
const LEN: usize = 20;

/// The file contents for `version`.
pub fn encode(version: u64) -> [u8; LEN] {
    let mut out = [0u8; LEN];
    let (head, sum) = out.split_at_mut(12);
    let (magic, v) = head.split_at_mut(4);
    magic.copy_from_slice(&MAGIC);
    v.copy_from_slice(&version.to_le_bytes());
    let d = Sha256::digest(&*head);
    sum.copy_from_slice(d.get(..8).unwrap_or(&[0; 8]));
    out
}

fn decode(bytes: &[u8]) -> Option<u64> {
    let v: [u8; 8] = bytes.get(4..12)?.try_into().ok()?;
    let version = u64::from_le_bytes(v);
    (bytes == encode(version)).then_some(version)
}

/// Atomically record `version` as the highest accepted one (as the old
/// layout did; tests make old data partitions with it).
#[cfg(test)]
pub fn store_highest(dir: &Path, version: u64) -> io::Result<()> {
    let tmp = dir.join(TMP);
    let mut f = std::fs::File::create(&tmp)?;
    std::io::Write::write_all(&mut f, &encode(version))?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, dir.join(FILE))?;
    std::fs::File::open(dir)?.sync_all()
}

/// The highest accepted version, `None` if none was ever stored.
pub fn load_highest(dir: &Path) -> io::Result<Option<u64>> {
    load(dir, FILE)
}

/// The version in `dir/name`, `None` if the file is missing.
pub fn load(dir: &Path, name: &str) -> io::Result<Option<u64>> {
    use std::io::Read;
    let f = match std::fs::File::open(dir.join(name)) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut buf = std::vec::Vec::with_capacity(LEN + 1);
    f.take(LEN as u64 + 1).read_to_end(&mut buf)?;
    decode(&buf).map(Some).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("{name} is corrupt (bad length or checksum)")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_load_and_corruption() {
        let dir = std::env::temp_dir().join(format!("berth-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(load_highest(&dir).unwrap(), None);
        store_highest(&dir, 7).unwrap();
        assert_eq!(load_highest(&dir).unwrap(), Some(7));
        store_highest(&dir, u64::MAX).unwrap();
        assert_eq!(load_highest(&dir).unwrap(), Some(u64::MAX));
        assert!(!dir.join(TMP).exists());
        let good = std::fs::read(dir.join(FILE)).unwrap();
        for i in 0..good.len() * 8 {
            let mut bad = good.clone();
            bad[i / 8] ^= 1 << (i % 8);
            std::fs::write(dir.join(FILE), &bad).unwrap();
            assert_eq!(load_highest(&dir).unwrap_err().kind(), io::ErrorKind::InvalidData, "bit {i}");
        }
        for n in 0..good.len() {
            std::fs::write(dir.join(FILE), &good[..n]).unwrap();
            assert!(load_highest(&dir).is_err(), "truncated at {n}");
        }
        let mut long = good.clone();
        long.push(0);
        std::fs::write(dir.join(FILE), &long).unwrap();
        assert!(load_highest(&dir).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
