//! The board's `[hardening]` table: kernel settings berth writes once at
//! boot, each with a secure default, and their ranges.
//!
//! It only declares and checks values: it must not write a sysctl (confine's
//! `harden` does, at boot), and a default must not be weaker than the
//! kernel's own.

use serde::{Deserialize, Serialize};

use super::{err, BoardError};

/// Host hardening: kernel settings berth writes once at boot, before any
/// container starts, each logged as a `harden` event ([`crate::confine::harden`]).
/// Every field has a secure default; a board weakens one only by saying so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Hardening {
    /// `kernel.kptr_restrict` (0..=2, default 2: kernel addresses hidden
    /// from everyone, which keeps them from exploits).
    pub kptr_restrict: u8,
    /// `kernel.dmesg_restrict` (default true: the kernel log for
    /// `CAP_SYSLOG` only).
    pub dmesg_restrict: bool,
    /// `fs.suid_dumpable` (0 or 2, default 0: a process that changed
    /// credentials never dumps core).
    pub suid_dumpable: u8,
    /// `fs.protected_symlinks` (default true).
    pub protected_symlinks: bool,
    /// `fs.protected_hardlinks` (default true).
    pub protected_hardlinks: bool,
    /// `fs.protected_fifos` (0..=2, default 2).
    pub protected_fifos: u8,
    /// `fs.protected_regular` (0..=2, default 2).
    pub protected_regular: u8,
    /// `kernel.modules_disabled` (default true: no module is loaded after
    /// the board's own, neither by a request nor on demand by the kernel).
    pub modules_disabled: bool,
    /// `vm.memfd_noexec` (0..=2, default 2: no memfd is ever executable;
    /// written on kernels that have it, 6.3 and later).
    pub memfd_noexec: u8,
}

impl Default for Hardening {
    fn default() -> Hardening {
        Hardening {
            kptr_restrict: 2,
            dmesg_restrict: true,
            suid_dumpable: 0,
            protected_symlinks: true,
            protected_hardlinks: true,
            protected_fifos: 2,
            protected_regular: 2,
            modules_disabled: true,
            memfd_noexec: 2,
        }
    }
}

impl Hardening {
    /// Each value within its sysctl's range; the error names the field.
    pub fn validate(&self) -> Result<(), BoardError> {
        for (field, v) in [
            ("hardening.kptr_restrict", self.kptr_restrict),
            ("hardening.protected_fifos", self.protected_fifos),
            ("hardening.protected_regular", self.protected_regular),
            ("hardening.memfd_noexec", self.memfd_noexec),
        ] {
            if v > 2 {
                return Err(err(field, "must be 0, 1 or 2"));
            }
        }
        if self.suid_dumpable == 1 {
            return Err(err("hardening.suid_dumpable", "must be 0 or 2 (1 dumps setuid processes' memory readable by their user)"));
        }
        if self.suid_dumpable > 2 {
            return Err(err("hardening.suid_dumpable", "must be 0 or 2"));
        }
        Ok(())
    }
}
