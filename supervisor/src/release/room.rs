//! Room on the data partition for updates: the reserve that staging and
//! the inbox leave free for the state record and the log store, and the
//! bounds on what may wait in the inbox.
//!
//! It only decides from the numbers it is given: it must not measure the
//! partition or remove a bundle (staging and `berth receive` do).
//!
//! The data partition holds berth's state, the release store, the inbox,
//! the log files and the containers' volumes (each under its own quota).
//! An update must never take the space the record and the logs need to be
//! written: staging refuses a bundle that would leave less than
//! [`RESERVE`] free, and so does `berth receive` for an arriving bundle.
//! While a release is on trial nothing is taken from the inbox, so pushes
//! could pile up: the inbox holds at most [`Limits::bundles`] bundles and
//! [`Limits::mib`] MiB (board settings `[inbox]`), counting bundles being
//! taken as well as fresh ones.
//!
//! Everything here is pure: the callers list the inbox and ask the file
//! system for its free space.

use serde::{Deserialize, Serialize};

/// Bytes every update leaves free on the data partition: the record's
/// slots, the outcome log and the log store's next rotation need far less.
pub const RESERVE: u64 = 8 << 20;

/// How much the inbox may hold (`[inbox]` in the board config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Most bundles waiting, taken ones included (1..=32, default 4).
    pub bundles: u8,
    /// Most bytes waiting, in MiB (1..=4096, default 512: two bundles of
    /// the largest size a push carries).
    pub mib: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { bundles: 4, mib: 512 }
    }
}

impl Limits {
    /// The field that is out of range and why.
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        if !(1..=32).contains(&self.bundles) {
            return Err(("inbox.bundles", "must be between 1 and 32"));
        }
        if !(1..=4096).contains(&self.mib) {
            return Err(("inbox.mib", "must be between 1 and 4096"));
        }
        Ok(())
    }

    /// [`Limits::mib`] in bytes.
    pub fn bytes(&self) -> u64 {
        u64::from(self.mib) << 20
    }
}

/// Why a bundle does not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// As many bundles wait as the board allows.
    Count { waiting: usize, max: u8 },
    /// The bundles waiting and this one are more bytes than the board allows.
    Bytes { waiting: u64, incoming: u64, max: u64 },
    /// It would leave less than [`RESERVE`] free.
    Space { need: u64, free: u64 },
}

impl core::fmt::Display for Full {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Full::Count { waiting, max } => {
                write!(
                    f,
                    "inbox full: {waiting} bundles are waiting and the board allows {max} (they are taken one at a time, none while a release is on trial)"
                )
            }
            Full::Bytes { waiting, incoming, max } => {
                write!(f, "inbox full: {waiting} bytes are waiting, this bundle adds {incoming} and the board allows {max}")
            }
            Full::Space { need, free } => {
                write!(f, "not enough space on the data partition: {need} bytes are needed, {RESERVE} stay reserved for state and logs, {free} are free")
            }
        }
    }
}

/// Whether `need` bytes may be written with `free` bytes free.
pub fn fits(need: u64, free: u64) -> Result<(), Full> {
    if need.checked_add(RESERVE).is_none_or(|n| n > free) {
        return Err(Full::Space { need, free });
    }
    Ok(())
}

/// Whether a bundle of `incoming` bytes may join the inbox, whose waiting
/// bundles have the sizes `waiting`.
pub fn admit(waiting: &[u64], incoming: u64, free: u64, limits: &Limits) -> Result<(), Full> {
    if waiting.len() >= usize::from(limits.bundles) {
        return Err(Full::Count { waiting: waiting.len(), max: limits.bundles });
    }
    let bytes = waiting.iter().fold(0u64, |n, s| n.saturating_add(*s));
    if bytes.saturating_add(incoming) > limits.bytes() {
        return Err(Full::Bytes { waiting: bytes, incoming, max: limits.bytes() });
    }
    fits(incoming, free)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn the_reserve_is_kept() {
        assert_eq!(fits(10 * MIB, 18 * MIB), Ok(()));
        assert_eq!(fits(10 * MIB + 1, 18 * MIB), Err(Full::Space { need: 10 * MIB + 1, free: 18 * MIB }));
        assert_eq!(fits(0, RESERVE - 1), Err(Full::Space { need: 0, free: RESERVE - 1 }));
        assert_eq!(fits(u64::MAX, u64::MAX), Err(Full::Space { need: u64::MAX, free: u64::MAX }));
    }

    #[test]
    fn count_then_bytes_then_space() {
        let l = Limits { bundles: 2, mib: 3 };
        let free = 100 * MIB;
        assert_eq!(admit(&[], MIB, free, &l), Ok(()));
        assert_eq!(admit(&[MIB], 2 * MIB, free, &l), Ok(()));
        assert_eq!(admit(&[MIB, MIB], 1, free, &l), Err(Full::Count { waiting: 2, max: 2 }));
        assert_eq!(admit(&[MIB], 2 * MIB + 1, free, &l), Err(Full::Bytes { waiting: MIB, incoming: 2 * MIB + 1, max: 3 * MIB }));
        assert_eq!(admit(&[], MIB, RESERVE, &l), Err(Full::Space { need: MIB, free: RESERVE }));
        assert_eq!(admit(&[u64::MAX], u64::MAX, u64::MAX, &l), Err(Full::Bytes { waiting: u64::MAX, incoming: u64::MAX, max: 3 * MIB }));
    }

    #[test]
    fn reasons_name_the_numbers() {
        let c = Full::Count { waiting: 4, max: 4 }.to_string();
        assert!(c.starts_with("inbox full: 4 bundles are waiting and the board allows 4"), "{c}");
        let s = Full::Space { need: 5, free: 7 }.to_string();
        assert!(s.contains(&format!("{RESERVE} stay reserved")) && s.contains("7 are free"), "{s}");
    }

    #[test]
    fn limits_are_checked() {
        assert_eq!(Limits::default().validate(), Ok(()));
        assert_eq!(Limits { bundles: 0, mib: 1 }.validate(), Err(("inbox.bundles", "must be between 1 and 32")));
        assert_eq!(Limits { bundles: 1, mib: 0 }.validate(), Err(("inbox.mib", "must be between 1 and 4096")));
        assert_eq!(Limits { bundles: 33, mib: 1 }.validate().unwrap_err().0, "inbox.bundles");
    }
}
