//! The confinement layers of one container as `berthctl status` shows them:
//! a plain record, filled in by [`crate::confine::containers::Spec::layers`]
//! and carried by the control protocol (`crate::supervise::control` re-exports
//! it). It must not hold anything live (no descriptors, no loop state): it is
//! serialised into status answers as it is.

use serde::{Deserialize, Serialize};

/// The confinement layers of one container, as berth applies them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layers {
    /// Host uid that uid 0 inside maps to (its user namespace's range start).
    pub uid_base: u32,
    /// Start of the seccomp program's SHA-256, in hex.
    pub seccomp: heapless::String<8>,
    /// Effective capability set (bit N: capability N).
    pub caps: u64,
    /// Rules of its cgroup device allowlist.
    pub device_rules: u16,
    /// Landlock ABI applied; 0: none (the board allowed the downgrade).
    pub landlock_abi: u8,
    /// AppArmor profile, or `none`.
    pub apparmor: heapless::String<64>,
}

impl Layers {
    /// `abi6` or `none`.
    pub fn landlock(&self) -> heapless::String<8> {
        let mut s = heapless::String::new();
        let _ = match self.landlock_abi {
            0 => s.push_str("none"),
            n => core::fmt::write(&mut s, format_args!("abi{n}")).map_err(|_| ()),
        };
        s
    }

    /// Capability names without `CAP_`, comma-separated, or `none`.
    pub fn cap_names(&self) -> String {
        let names: Vec<&str> = crate::release::manifest::CAP_NAMES
            .iter()
            .enumerate()
            .filter(|(i, _)| u32::try_from(*i).ok().and_then(|i| 1u64.checked_shl(i)).is_some_and(|b| self.caps & b != 0))
            .map(|(_, n)| n.trim_start_matches("CAP_"))
            .collect();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(",")
        }
    }
}
