//! The board's `[bootloader]` table: where the bootloader keeps the A/B
//! try-boot state berth reads and marks at boot
//! ([`crate::release::bootenv`]). Optional: a board without it boots one
//! system, as before. It owns the table and its checks; it must not touch
//! the environment itself (that is `boot::slot`, at boot).
//!
//! Two kinds: GRUB's environment file (`grubenv`, on a FAT partition the
//! firmware reads: `env_device` and `env_path`), and U-Boot's environment
//! block in a memory-mapped CFI NOR flash (`env_addr`, `env_size` and
//! `env_sector`: the board's `CONFIG_ENV_ADDR`, `CONFIG_ENV_SIZE` and
//! `CONFIG_ENV_SECT_SIZE`; not redundant, on a 32-bit flash bus).

use super::{err, BoardError, Path};
use serde::{Deserialize, Serialize};

/// Which bootloader keeps the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Grub,
    Uboot,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bootloader {
    pub kind: Kind,
    /// GRUB: the partition holding the environment: a node or `PARTLABEL=`.
    #[serde(default)]
    pub env_device: Path,
    /// GRUB: the environment file's path on that (FAT) partition.
    #[serde(default)]
    pub env_path: Path,
    /// U-Boot: the environment's physical address in the flash
    /// (`CONFIG_ENV_ADDR`), at the start of an erase sector.
    #[serde(default)]
    pub env_addr: u64,
    /// U-Boot: the environment block's size (`CONFIG_ENV_SIZE`).
    #[serde(default)]
    pub env_size: u32,
    /// U-Boot: the flash's erase sector holding it (`CONFIG_ENV_SECT_SIZE`);
    /// the rest of the sector past the block is kept as it was.
    #[serde(default)]
    pub env_sector: u32,
    /// Slot A's and slot B's system partitions (nodes or `PARTLABEL=`):
    /// the initramfs maps the booted slot's, an update with a system
    /// payload writes the other one (`release::slotwrite`). Without them
    /// the board boots `storage.system` and takes no system payload.
    #[serde(default)]
    pub slot_devices: Option<[Path; 2]>,
}

/// Smallest and largest U-Boot environment block and erase sector.
pub const UBOOT_ENV_MIN: u32 = 4 * 1024;
pub const UBOOT_SECTOR_MAX: u32 = 1024 * 1024;

/// Where berth mounts the environment's partition while it reads and
/// marks it (and unmounts it again).
pub const MOUNT_AT: &str = "/run/berth/bootenv";

impl Bootloader {
    pub(super) fn validate(&self) -> Result<(), BoardError> {
        match self.kind {
            Kind::Grub => self.validate_grub(),
            Kind::Uboot => self.validate_uboot(),
        }
    }

    fn validate_uboot(&self) -> Result<(), BoardError> {
        if !self.env_device.is_empty() || !self.env_path.is_empty() {
            return Err(err("bootloader.env_device", "is GRUB's: a U-Boot environment is named by env_addr, env_size and env_sector"));
        }
        let (size, sector) = (self.env_size, self.env_sector);
        if !size.is_power_of_two() || !(UBOOT_ENV_MIN..=UBOOT_SECTOR_MAX).contains(&size) {
            return Err(err("bootloader.env_size", format!("must be a power of two from {UBOOT_ENV_MIN} to {UBOOT_SECTOR_MAX} (U-Boot's CONFIG_ENV_SIZE)")));
        }
        if !sector.is_power_of_two() || !(size..=UBOOT_SECTOR_MAX).contains(&sector) {
            return Err(err(
                "bootloader.env_sector",
                format!("must be a power of two from env_size to {UBOOT_SECTOR_MAX} (the flash's erase sector, U-Boot's CONFIG_ENV_SECT_SIZE)"),
            ));
        }
        if self.env_addr == 0 || !self.env_addr.is_multiple_of(u64::from(sector)) || self.env_addr.checked_add(u64::from(sector)).is_none() {
            return Err(err("bootloader.env_addr", "must be a non-zero physical address at the start of an erase sector (U-Boot's CONFIG_ENV_ADDR)"));
        }
        Ok(())
    }

    fn validate_grub(&self) -> Result<(), BoardError> {
        if self.env_addr != 0 || self.env_size != 0 || self.env_sector != 0 {
            return Err(err("bootloader.env_addr", "is U-Boot's: GRUB's environment is named by env_device and env_path"));
        }
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
