//! Volume quotas as the board and the manifests declare them: the board's
//! `[volumes]` table ([`Settings`], with its [`Mode`]) and the bounds of a
//! volume's size and inode count ([`SIZE_MIN`]..=[`SIZE_MAX`],
//! [`INODES_MIN`]..=[`INODES_MAX`]) that both the board and a manifest's
//! `mounts[].volume_size` / `volume_inodes` are checked against.
//!
//! It only declares and checks values: it must not compute project ids,
//! touch the data partition or set a quota (confine's
//! `container::quota` plans them, `sys::quota` makes the calls).

use serde::{Deserialize, Serialize};

/// Whether containers with volumes need enforced project quotas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// No container with a volume starts without them.
    Required,
    /// Volumes of the default size start unlimited; logged.
    Optional,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Required => "required",
            Mode::Optional => "optional",
        }
    }
}

/// The board's `[volumes]` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// See [`Mode`] (default `required`).
    pub quota: Mode,
    /// A volume's size when its mount gives none, MiB (default 16).
    pub default_size_mib: u32,
    /// A volume's inode count when its mount gives none (default 4096).
    pub default_inodes: u32,
    /// Space of the partition no volume quota may claim, MiB (default 32).
    pub reserve_mib: u32,
    /// Inodes no volume quota may claim (default 1024).
    pub reserve_inodes: u32,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings { quota: Mode::Required, default_size_mib: 16, default_inodes: 4096, reserve_mib: 32, reserve_inodes: 1024 }
    }
}

/// Bounds of a volume's size (bytes) and inode count, manifest and board.
pub const SIZE_MIN: u64 = 1 << 20;
pub const SIZE_MAX: u64 = 1 << 40;
pub const INODES_MIN: u64 = 16;
pub const INODES_MAX: u64 = 1 << 32;

impl Settings {
    /// Each value within bounds; the error is (field, reason).
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        if !(SIZE_MIN..=SIZE_MAX).contains(&(u64::from(self.default_size_mib) << 20)) {
            return Err(("volumes.default_size_mib", "must be between 1 and 1048576"));
        }
        if !(INODES_MIN..=INODES_MAX).contains(&u64::from(self.default_inodes)) {
            return Err(("volumes.default_inodes", "must be at least 16"));
        }
        if self.reserve_mib < 1 || self.reserve_mib > 1 << 20 {
            return Err(("volumes.reserve_mib", "must be between 1 and 1048576"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked() {
        assert!(Settings::default().validate().is_ok());
        assert_eq!(Settings { default_size_mib: 0, ..Settings::default() }.validate().unwrap_err().0, "volumes.default_size_mib");
        assert_eq!(Settings { default_inodes: 1, ..Settings::default() }.validate().unwrap_err().0, "volumes.default_inodes");
        assert_eq!(Settings { reserve_mib: 0, ..Settings::default() }.validate().unwrap_err().0, "volumes.reserve_mib");
    }
}
