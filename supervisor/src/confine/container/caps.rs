//! Capability sets: empty by default, the manifest's grants otherwise.
//!
//! Sequence in the child (hardening notes, step 8), for the act layer:
//! 1. drop every capability in [`Caps::bounding_drop`] with
//!    `PR_CAPBSET_DROP` (the child is still root of its user namespace, so it
//!    holds `CAP_SETPCAP`). The set reaches the running kernel's last
//!    capability, read from `/proc/sys/kernel/cap_last_cap` before fork
//!    ([`kernel_last_cap`], [`Caps::last_cap`]), not this table's: a kernel
//!    newer than berth may know capabilities berth has no name for, and the
//!    container must not keep those either. When the file cannot be read,
//!    every number up to 63 is dropped (`EINVAL` for one the kernel does not
//!    know means there is nothing to drop);
//! 2. `PR_SET_SECUREBITS` with [`Caps::securebits`];
//! 3. `setgroups(0)` is impossible after `setgroups=deny`: skip; then
//!    `setresgid`, `setresuid` (with `SECBIT_NO_SETUID_FIXUP` the switch
//!    does not clear the capability sets, so `SECBIT_KEEP_CAPS` is not needed
//!    and is locked off);
//! 4. `capset` with [`Caps::capset_data`] (version 3 header,
//!    [`CAPSET_VERSION`]);
//! 5. `PR_CAP_AMBIENT_CLEAR_ALL`, then `PR_CAP_AMBIENT_RAISE` for each bit of
//!    [`Caps::ambient`];
//! 6. `PR_SET_NO_NEW_PRIVS` (always), seccomp last.
//!
//! Securebits: `NOROOT` (uid 0 gains nothing at execve),
//! `NO_SETUID_FIXUP`, each with its lock, and `KEEP_CAPS_LOCKED` (keep-caps
//! off and locked). `NO_CAP_AMBIENT_RAISE` and its lock are set only when no
//! ambient capability is granted: locking it before step 5 would make the
//! raise fail, and once the ambient set equals permitted ∩ inheritable
//! (= the grants) it would forbid nothing more.

use crate::release::manifest::{Network, REFUSED_CAPS};

/// The highest capability number this table knows (`CAP_CHECKPOINT_RESTORE`).
pub const CAP_LAST: u32 = 40;

/// Every Linux capability, by number (`linux/capability.h`).
pub const NAMES: [&str; CAP_LAST as usize + 1] = crate::release::manifest::CAP_NAMES;

/// All capabilities this table knows, as a mask.
pub const ALL: u64 = (1u64 << (CAP_LAST + 1)) - 1;

/// The highest capability number a kernel can have (its sets are 64-bit).
pub const CAP_MAX: u32 = 63;

/// Where the kernel says its last capability number.
pub const LAST_CAP_PATH: &str = "/proc/sys/kernel/cap_last_cap";

/// The number in `cap_last_cap`'s text (`"40\n"`), at most [`CAP_MAX`].
pub fn parse_last_cap(text: &str) -> Option<u32> {
    text.trim().parse::<u32>().ok().filter(|n| *n <= CAP_MAX)
}

/// The running kernel's last capability; [`CAP_MAX`] when it cannot be
/// read (dropping numbers the kernel does not know is harmless). Read on
/// the host before fork, when a container's plan is made.
pub fn kernel_last_cap() -> u32 {
    let mut buf = [0u8; 16];
    let n = std::fs::File::open(LAST_CAP_PATH).and_then(|mut f| std::io::Read::read(&mut f, &mut buf)).unwrap_or(0);
    buf.get(..n).and_then(|b| core::str::from_utf8(b).ok()).and_then(parse_last_cap).unwrap_or(CAP_MAX)
}

/// Capabilities `0..=last`, as a mask.
pub fn all_up_to(last: u32) -> u64 {
    match last {
        CAP_MAX.. => u64::MAX,
        n => (1u64 << (n + 1)) - 1,
    }
}

pub const SECBIT_NOROOT: u32 = 1 << 0;
pub const SECBIT_NOROOT_LOCKED: u32 = 1 << 1;
pub const SECBIT_NO_SETUID_FIXUP: u32 = 1 << 2;
pub const SECBIT_NO_SETUID_FIXUP_LOCKED: u32 = 1 << 3;
pub const SECBIT_KEEP_CAPS: u32 = 1 << 4;
pub const SECBIT_KEEP_CAPS_LOCKED: u32 = 1 << 5;
pub const SECBIT_NO_CAP_AMBIENT_RAISE: u32 = 1 << 6;
pub const SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED: u32 = 1 << 7;

/// The kernel's capability structures belong to the syscall seam.
pub use crate::sys::container::{CapData, CAPSET_VERSION};

/// The capability number of a `CAP_*` name.
pub fn number(name: &str) -> Option<u32> {
    NAMES.iter().position(|n| *n == name).and_then(|i| u32::try_from(i).ok())
}

/// The capability state of the container's process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Kept in the bounding set; everything else is dropped.
    pub bounding: u64,
    pub permitted: u64,
    pub effective: u64,
    pub inheritable: u64,
    pub ambient: u64,
    /// Written with `PR_SET_SECUREBITS` before the uid switch.
    pub securebits: u32,
    /// `PR_SET_NO_NEW_PRIVS`: always.
    pub no_new_privs: bool,
    /// The running kernel's last capability ([`kernel_last_cap`]; this
    /// table's [`CAP_LAST`] until the plan's maker reads it).
    pub last_cap: u32,
}

impl Caps {
    /// The state for a set of granted capabilities (a mask).
    pub fn granting(grants: u64) -> Caps {
        let mut securebits = SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP | SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED;
        if grants == 0 {
            securebits |= SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
        }
        Caps {
            bounding: grants,
            permitted: grants,
            effective: grants,
            inheritable: grants,
            ambient: grants,
            securebits,
            no_new_privs: true,
            last_cap: CAP_LAST,
        }
    }

    /// Capabilities to drop from the bounding set: every one up to
    /// [`Caps::last_cap`] that is not granted.
    pub fn bounding_drop(&self) -> u64 {
        all_up_to(self.last_cap) & !self.bounding
    }

    /// The `capset` data: `[low 32 bits, high 32 bits]`.
    pub fn capset_data(&self) -> [CapData; 2] {
        let half = |shift: u32| CapData {
            effective: (self.effective >> shift) as u32,
            permitted: (self.permitted >> shift) as u32,
            inheritable: (self.inheritable >> shift) as u32,
        };
        [half(0), half(32)]
    }
}

/// The capability state from the manifest's names. The error names the
/// offending entry (`capabilities[i]`) and why.
pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>, network: Option<Network>) -> Result<Caps, (std::string::String, std::string::String)> {
    let mut grants = 0u64;
    for (i, name) in names.into_iter().enumerate() {
        let field = format!("capabilities[{i}]");
        // Validation refuses these already; a plan never trusts that.
        if REFUSED_CAPS.contains(&name) {
            return Err((field, format!("{name} is never granted to a container")));
        }
        if name == "CAP_NET_RAW" && network == Some(Network::Host) {
            return Err((field, "CAP_NET_RAW is never granted with network = \"host\"".into()));
        }
        let Some(n) = number(name) else {
            return Err((field, format!("`{name}` is not a capability name")));
        };
        grants |= 1u64 << n;
    }
    Ok(Caps::granting(grants))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_the_kernel_numbers() {
        assert_eq!(number("CAP_CHOWN"), Some(0));
        assert_eq!(number("CAP_NET_BIND_SERVICE"), Some(10));
        assert_eq!(number("CAP_NET_RAW"), Some(13));
        assert_eq!(number("CAP_SYS_ADMIN"), Some(21));
        assert_eq!(number("CAP_MKNOD"), Some(27));
        assert_eq!(number("CAP_SETFCAP"), Some(31));
        assert_eq!(number("CAP_MAC_OVERRIDE"), Some(32));
        assert_eq!(number("CAP_AUDIT_READ"), Some(37));
        assert_eq!(number("CAP_CHECKPOINT_RESTORE"), Some(40));
        assert_eq!(number("CAP_NOPE"), None);
        assert_eq!(ALL.count_ones(), 41);
        for (i, n) in NAMES.iter().enumerate() {
            assert!(!NAMES[..i].contains(n), "{n} twice");
        }
    }

    #[test]
    fn default_is_empty_and_fully_locked() {
        let c = from_names([], None).unwrap();
        assert_eq!((c.bounding, c.permitted, c.effective, c.inheritable, c.ambient), (0, 0, 0, 0, 0));
        assert_eq!(c.bounding_drop(), ALL);
        assert!(c.no_new_privs);
        assert_eq!(c.securebits, 0b1110_1111, "all locks, keep-caps off");
        assert_eq!(c.capset_data(), [CapData::default(); 2]);
    }

    #[test]
    fn grants_fill_every_set_and_split_into_halves() {
        let c = from_names(["CAP_NET_BIND_SERVICE", "CAP_AUDIT_READ"], None).unwrap();
        let want = (1 << 10) | (1 << 37);
        assert_eq!((c.bounding, c.permitted, c.effective, c.inheritable, c.ambient), (want, want, want, want, want));
        assert_eq!(c.bounding_drop(), ALL & !want);
        assert_eq!(c.bounding_drop() & want, 0);
        let d = c.capset_data();
        assert_eq!(d[0], CapData { effective: 1 << 10, permitted: 1 << 10, inheritable: 1 << 10 });
        assert_eq!(d[1], CapData { effective: 1 << 5, permitted: 1 << 5, inheritable: 1 << 5 });
        // Ambient raise must stay possible until the act raises the grants.
        assert_eq!(c.securebits & (SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED), 0);
        assert_eq!(c.securebits & SECBIT_KEEP_CAPS, 0);
        assert_ne!(c.securebits & SECBIT_NOROOT_LOCKED, 0);
    }

    #[test]
    fn the_bounding_drop_reaches_the_kernels_last_capability() {
        let mut c = from_names(["CAP_NET_BIND_SERVICE"], None).unwrap();
        assert_eq!(c.last_cap, CAP_LAST);
        assert_eq!(c.bounding_drop(), ALL & !(1 << 10));
        // A newer kernel with capabilities 41..=43: dropped too.
        c.last_cap = 43;
        assert_eq!(c.bounding_drop(), ((1u64 << 44) - 1) & !(1 << 10));
        assert_ne!(c.bounding_drop() & (1 << 43), 0);
        assert_eq!(c.bounding_drop() & (1 << 44), 0);
        // An older one (5.4: 37).
        c.last_cap = 37;
        assert_eq!(c.bounding_drop(), ((1u64 << 38) - 1) & !(1 << 10));
        c.last_cap = CAP_MAX;
        assert_eq!(c.bounding_drop(), !(1u64 << 10));
        assert_eq!(parse_last_cap("40\n"), Some(40));
        assert_eq!(parse_last_cap("63"), Some(63));
        for bad in ["64", "-1", "", "forty", "4 0"] {
            assert_eq!(parse_last_cap(bad), None, "{bad:?}");
        }
        assert_eq!(all_up_to(0), 1);
        assert_eq!(all_up_to(40), ALL);
        assert_eq!(all_up_to(99), u64::MAX);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_kernels_last_capability_is_read() {
        let text = std::fs::read_to_string(LAST_CAP_PATH).unwrap();
        assert_eq!(kernel_last_cap(), text.trim().parse::<u32>().unwrap());
        assert!(kernel_last_cap() >= 36, "every kernel berth supports knows CAP_WAKE_ALARM");
    }

    #[test]
    fn unknown_refused_and_host_raw_are_errors_naming_the_entry() {
        let e = from_names(["CAP_CHOWN", "CAP_FLY"], None).unwrap_err();
        assert_eq!(e.0, "capabilities[1]");
        assert!(e.1.contains("CAP_FLY"));
        for refused in REFUSED_CAPS {
            let e = from_names([*refused], None).unwrap_err();
            assert!(e.1.contains("never granted"), "{refused}: {e:?}");
        }
        assert!(from_names(["CAP_NET_RAW"], Some(Network::Host)).is_err());
        assert!(from_names(["CAP_NET_RAW"], Some(Network::None)).is_ok());
    }
}
