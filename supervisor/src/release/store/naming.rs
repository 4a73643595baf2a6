//! How the store names what it keeps: objects and images by the hex of
//! their SHA-256. Pure; no file is touched here.
//!
//! It must not change a name's form: objects already on data partitions are
//! found by it.

use crate::release::manifest::Digest;
use sha2::{Digest as _, Sha256};

/// The file name of a release object.
pub fn release_name(digest: &Digest) -> String {
    format!("{}.bin", hex(digest))
}

/// The file name of an image.
pub fn image_name(digest: &Digest) -> String {
    format!("{}.img", hex(digest))
}

pub(super) fn hex(d: &Digest) -> String {
    let mut s = String::with_capacity(64);
    let _ = crate::release::write_hex(&mut s, &d.0);
    s
}

pub(super) fn sha256(bytes: &[u8]) -> Digest {
    Digest(Sha256::digest(bytes).into())
}

pub(super) fn parse_hex(s: &str) -> Option<Digest> {
    let mut out = [0u8; 32];
    crate::release::hex_decode(s, &mut out).then_some(Digest(out))
}
