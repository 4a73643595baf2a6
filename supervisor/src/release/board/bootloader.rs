//! The board's `[bootloader]` table: where the bootloader keeps the A/B
//! try-boot state berth reads and marks at boot
//! ([`crate::release::bootenv`]). Optional: a board without it boots one
//! system, as before. It owns the table and its checks; it must not touch
//! the environment itself (that is `boot::slot`, at boot).
//!
//! Only GRUB's environment file (`grubenv`, on a FAT partition the firmware
//! reads) is supported on the device so far; U-Boot's environment block is
//! decoded by [`crate::release::bootenv::ubootenv`] but a board naming it
//! is refused until berth writes it on a device.

use super::{err, BoardError, Path};
use serde::{Deserialize, Serialize};

/// Which bootloader keeps the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Grub,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bootloader {
    pub kind: Kind,
    /// The partition holding the environment: a node or `PARTLABEL=`.
    pub env_device: Path,
    /// The environment file's path on that (FAT) partition.
    pub env_path: Path,
}

/// Where berth mounts the environment's partition while it reads and
/// marks it (and unmounts it again).
pub const MOUNT_AT: &str = "/run/berth/bootenv";

impl Bootloader {
    pub(super) fn validate(&self) -> Result<(), BoardError> {
        if let Err(why) = crate::common::blockname::parse(&self.env_device) {
            return Err(err("bootloader.env_device", why));
        }
        let p = self.env_path.as_str();
        if !p.starts_with('/') || p.len() < 2 || p.split('/').any(|c| c == ".." || c == ".") || p.contains("//") {
            return Err(err("bootloader.env_path", "must be an absolute path on the partition, without `.`, `..` or `//`"));
        }
        Ok(())
    }
}
