//! The tables of a board config that only xtask reads: the Debian kernel
//! it builds the initramfs from and passes a command line to under QEMU
//! (`[kernel]`), and how QEMU emulates the board (`[qemu]`). Both are
//! optional: a real board's config needs neither (its boot loader passes
//! the command line). The device carries them but never acts on them.
//!
//! berth must not act on them on the device: only xtask reads them.

use super::{err, valid_module, BoardError, Name, CMDLINE_MAX, PATH_MAX, QEMU_ARGS_MAX};
use heapless::{String, Vec};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kernel {
    /// Debian kernel flavour (`cloud-arm64`, `armmp`, `cloud-amd64`).
    pub flavour: Name,
    /// Extra kernel command line (the console argument is added from `console`).
    #[serde(default)]
    pub cmdline: String<CMDLINE_MAX>,
}

impl Kernel {
    pub(super) fn validate(&self) -> Result<(), BoardError> {
        if self.flavour.is_empty() || !valid_module(&self.flavour) {
            return Err(err("kernel.flavour", "must name a Debian kernel flavour such as cloud-arm64"));
        }
        if self.cmdline.contains("console=") {
            return Err(err("kernel.cmdline", "must not set console=; use the `console` field"));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Qemu {
    /// QEMU system emulator (`qemu-system-aarch64`).
    pub binary: Name,
    /// `-M` value.
    pub machine: Name,
    /// `-cpu` value.
    pub cpu: Name,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// QEMU device model for the block devices (`virtio-blk-pci`).
    pub block_device: Name,
    /// QEMU device model for the user-mode network card.
    pub net_device: Name,
    /// Further QEMU arguments, one per element.
    #[serde(default)]
    pub extra_args: Vec<String<PATH_MAX>, QEMU_ARGS_MAX>,
}

impl Qemu {
    pub(super) fn validate(&self) -> Result<(), BoardError> {
        if !(64..=65_536).contains(&self.memory_mib) {
            return Err(err("qemu.memory_mib", "must be between 64 and 65536"));
        }
        for (field, v) in [
            ("qemu.binary", &self.binary),
            ("qemu.machine", &self.machine),
            ("qemu.cpu", &self.cpu),
            ("qemu.block_device", &self.block_device),
            ("qemu.net_device", &self.net_device),
        ] {
            if v.is_empty() || v.bytes().any(|b| b.is_ascii_whitespace()) {
                return Err(err(field, "must be one non-empty word"));
            }
        }
        Ok(())
    }
}
