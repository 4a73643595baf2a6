//! Where the device keeps its release state, and the names derived from it.
//!
//! It only names paths: it must not open, create or remove anything (the
//! store and the image mapping do).
//!
//! The trusted keys are on the read-only system image in [`KEYS`]; releases,
//! images and the state record on the data partition in [`STATE`] (see
//! [`super::store`]); verified images are mounted under [`MOUNTS`].

use core::fmt;

/// Trusted public keys, one `<id>.pub` file each.
pub const KEYS: &str = "/etc/berth/keys";
/// The release store on the data partition.
pub const STATE: &str = "/data/berth";
/// Content-addressed images: `<sha256 hex>.img` (the store's `images/`).
pub const IMAGES: &str = "/data/berth/images";
/// Where verified images are mounted: `<first 16 hex digits of sha256>`.
pub const MOUNTS: &str = "/run/berth/images";

/// The image file of a content hash.
pub fn image_path(digest: &crate::release::manifest::Digest) -> heapless::String<128> {
    let mut s = heapless::String::new();
    let _ = core::fmt::write(&mut s, format_args!("{IMAGES}/{digest_hex}.img", digest_hex = Hex(&digest.0)));
    s
}

/// The mount point of a verified image.
pub fn mount_path(digest: &crate::release::manifest::Digest) -> heapless::String<64> {
    let mut s = heapless::String::new();
    let short = digest.0.get(..8).unwrap_or(&[]);
    let _ = core::fmt::write(&mut s, format_args!("{MOUNTS}/{}", Hex(short)));
    s
}

/// The device-mapper name of a verified image.
pub fn dm_name(digest: &crate::release::manifest::Digest) -> heapless::String<32> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_paths() {
        let d = crate::release::manifest::Digest([0xab; 32]);
        assert_eq!(image_path(&d).as_str(), format!("/data/berth/images/{}.img", "ab".repeat(32)));
        assert_eq!(mount_path(&d).as_str(), format!("/run/berth/images/{}", "ab".repeat(8)));
        assert_eq!(dm_name(&d).as_str(), format!("berth-{}", "ab".repeat(8)));
    }
}
