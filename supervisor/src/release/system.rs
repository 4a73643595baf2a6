//! A release's system slot payload: the kernel, the initramfs and the
//! read-only system image (berth, the board config, modules, keys) that an
//! update writes into the inactive A/B slot. It owns the payload's
//! description and its checks, and decides whether a release changes the
//! running system; it must not read or write a slot itself (the stager's
//! child does, [`crate::release::slotwrite`]).
//!
//! The parts travel in the bundle like container images, named by their
//! SHA-256 and size; the system image also carries its dm-verity
//! parameters, which must match the ones the initramfs's board config
//! holds (the initramfs is the boot artifact that verifies the image at
//! boot, see `boot::sysverity`). A release whose system image has the
//! running slot's verity root changes no system: it updates containers as
//! any other release does, with no reboot.

use serde::{Deserialize, Serialize};

use crate::release::manifest::Digest;
use crate::release::Image;

/// Largest kernel or initramfs a payload may carry (64 MiB each).
pub const BOOT_FILE_MAX: u64 = 64 << 20;

/// A file written as it is (kernel, initramfs): its hash and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Blob {
    pub sha256: Digest,
    pub size: u64,
}

/// The payload of one system slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct System {
    /// The kernel the bootloader loads (`/<slot>/vmlinuz` on the boot
    /// partition).
    pub kernel: Blob,
    /// The initramfs (`/<slot>/initramfs`), holding the board config with
    /// the system image's verity parameters.
    pub initramfs: Blob,
    /// The system image with its hash tree appended, written to the slot's
    /// system partition from its first byte.
    pub image: Image,
}

impl System {
    /// Every part as (SHA-256, size), in the order they are written.
    pub fn parts(&self) -> [Blob; 3] {
        [self.kernel, self.initramfs, Blob { sha256: self.image.sha256, size: self.image.size }]
    }

    /// The part named `digest`, if any.
    pub fn part(&self, digest: &Digest) -> Option<Blob> {
        self.parts().into_iter().find(|p| &p.sha256 == digest)
    }

    /// Field-level checks: sizes, distinct parts.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        for (field, b) in [("system.kernel", self.kernel), ("system.initramfs", self.initramfs)] {
            if b.size == 0 || b.size > BOOT_FILE_MAX {
                return Err((field, format!("size must be 1 to {BOOT_FILE_MAX} bytes, not {}", b.size)));
            }
        }
        if crate::release::verity::data_blocks(self.image.size).is_none() {
            return Err(("system.image.size", "must be an image's size with its hash tree (whole 4 KiB blocks)".into()));
        }
        let p = self.parts();
        if p[0].sha256 == p[1].sha256 || p[0].sha256 == p[2].sha256 || p[1].sha256 == p[2].sha256 {
            return Err(("system", "kernel, initramfs and image must be three different files".into()));
        }
        Ok(())
    }

    /// Whether this payload differs from the running system, whose image
    /// has the verity root `running` (none: the device was not booted
    /// through a verified system slot, so any payload changes it).
    pub fn changes(&self, running: Option<[u8; 32]>) -> bool {
        running != Some(self.image.verity_root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 200 data blocks and their two-level hash tree.
    const SIZE: u64 = 4096 * 203;

    fn sys() -> System {
        System {
            kernel: Blob { sha256: Digest([1; 32]), size: 10 },
            initramfs: Blob { sha256: Digest([2; 32]), size: 20 },
            image: Image { sha256: Digest([3; 32]), size: SIZE, verity_root: [9; 32], verity_salt: [8; 32] },
        }
    }

    #[test]
    fn parts_and_checks() {
        let s = sys();
        assert_eq!(s.part(&Digest([2; 32])), Some(s.initramfs));
        assert_eq!(s.part(&Digest([3; 32])).map(|b| b.size), Some(SIZE));
        assert_eq!(s.part(&Digest([4; 32])), None);
        assert_eq!(s.validate(), Ok(()));
        let mut bad = sys();
        bad.kernel.size = 0;
        assert_eq!(bad.validate().unwrap_err().0, "system.kernel");
        let mut bad = sys();
        bad.initramfs.sha256 = bad.kernel.sha256;
        assert_eq!(bad.validate().unwrap_err().0, "system");
        let mut bad = sys();
        bad.image.size = 4095;
        assert_eq!(bad.validate().unwrap_err().0, "system.image.size");
    }

    #[test]
    fn a_payload_with_the_running_root_changes_nothing() {
        assert!(!sys().changes(Some([9; 32])));
        assert!(sys().changes(Some([7; 32])));
        assert!(sys().changes(None));
    }
}
