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
    /// Slot A's and slot B's system partitions (nodes or `PARTLABEL=`):
    /// the initramfs maps the booted slot's, an update with a system
    /// payload writes the other one (`release::slotwrite`). Without them
    /// the board boots `storage.system` and takes no system payload.
    #[serde(default)]
    pub slot_devices: Option<[Path; 2]>,
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
        if let Some([a, b]) = &self.slot_devices {
            for (field, d) in [("bootloader.slot_devices[0]", a), ("bootloader.slot_devices[1]", b)] {
                if let Err(why) = crate::common::blockname::parse(d) {
                    return Err(err(field, why));
                }
            }
            if a == b {
                return Err(err("bootloader.slot_devices", "slot A and slot B must be two different partitions"));
            }
        }
        Ok(())
    }

    /// The system partition of `slot`, if the board names the slots'.
    pub fn slot_device(&self, slot: crate::release::bootenv::Slot) -> Option<&str> {
        let [a, b] = self.slot_devices.as_ref()?;
        Some(match slot {
            crate::release::bootenv::Slot::A => a.as_str(),
            crate::release::bootenv::Slot::B => b.as_str(),
        })
    }

    /// The mount of the environment's partition (the node `node`, FAT) at
    /// [`MOUNT_AT`]: codepage and character set named, so exactly the
    /// board's `nls_cp437` and `nls_ascii` modules serve, whatever the
    /// kernel's defaults.
    pub fn mount_step(&self, node: &str) -> crate::sys::mount::MountStep {
        use crate::sys::mount::text;
        use nix::mount::MsFlags;
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_NOATIME;
        crate::sys::mount::MountStep {
            source: text(node),
            target: text(MOUNT_AT),
            fstype: text("vfat"),
            flags,
            data: text(BOOTENV_OPTIONS),
            optional: false,
            retry_data: None,
        }
    }
}

/// Mount options of the bootloader environment's partition.
pub const BOOTENV_OPTIONS: &str = "codepage=437,iocharset=ascii";

/// The system image's dm-verity parameters, carried by the boot artifact
/// (the slot's initramfs: in a signed FIT on U-Boot boards), never read
/// from a writable partition: the image on `storage.system` is its data
/// then its hash tree, `size` bytes in all, and berth mounts it through
/// dm-verity with `root` and `salt` (64 hex digits each), reading it whole
/// once at boot so that an altered byte anywhere refuses the boot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemVerity {
    pub size: u64,
    pub root: heapless::String<64>,
    pub salt: heapless::String<64>,
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if s.len() != 64 {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl SystemVerity {
    /// The image as the release's images are described.
    pub fn image(&self) -> Option<crate::release::Image> {
        Some(crate::release::Image {
            sha256: crate::release::manifest::Digest([0; 32]),
            size: self.size,
            verity_root: hex32(&self.root)?,
            verity_salt: hex32(&self.salt)?,
        })
    }

    pub(super) fn validate(&self) -> Result<(), BoardError> {
        if crate::release::verity::data_blocks(self.size).is_none() {
            return Err(err("storage.system.verity.size", "must be an image's size with its hash tree (whole 4 KiB blocks)"));
        }
        if hex32(&self.root).is_none() || hex32(&self.salt).is_none() {
            return Err(err("storage.system.verity", "root and salt must be 64 hex digits each"));
        }
        Ok(())
    }
}
