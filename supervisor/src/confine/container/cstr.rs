//! Bounded, NUL-terminated byte strings, checked when the plan is built so
//! the child only borrows them as `&CStr`.
//!
//! They must not be built or grown in the child: [`CBuf::new`] and
//! [`CBuf::concat`] check length and NUL before fork, and the child must not
//! allocate.

use core::ffi::CStr;
use core::fmt;

/// A string of at most `N - 1` bytes plus its trailing NUL, without interior
/// NULs (checked at construction).
#[derive(Clone, PartialEq, Eq)]
pub struct CBuf<const N: usize> {
    bytes: heapless::Vec<u8, N>,
}

/// Longest path in a plan, NUL included: a 64-byte rootfs prefix plus a
/// 128-byte manifest mount target fits.
pub const CPATH_MAX: usize = 200;
/// A path (host-side before the pivot, container-side after).
pub type CPath = CBuf<CPATH_MAX>;
/// One argv or environment string (manifest limit plus the NUL).
pub type CArg = CBuf<{ crate::release::manifest::ARG_MAX + 1 }>;
/// Mount data (`mode=1777,size=1048576`).
pub type CData = CBuf<80>;

impl<const N: usize> CBuf<N> {
    /// The concatenation of `parts`, or `None` when it holds a NUL or does
    /// not fit.
    pub fn concat(parts: &[&str]) -> Option<Self> {
        let mut bytes = heapless::Vec::new();
        for p in parts {
            if p.bytes().any(|b| b == 0) {
                return None;
            }
            bytes.extend_from_slice(p.as_bytes()).ok()?;
        }
        bytes.push(0).ok()?;
        Some(CBuf { bytes })
    }

    /// One string.
    pub fn new(s: &str) -> Option<Self> {
        Self::concat(&[s])
    }

    /// The bytes with their trailing NUL, as the kernel takes them.
    pub fn as_cstr(&self) -> &CStr {
        // Construction guarantees one trailing NUL and no other.
        CStr::from_bytes_with_nul(&self.bytes).unwrap_or(c"")
    }

    /// The bytes without the NUL (for `sethostname`, `write`).
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.split_last().map_or(&[], |(_, rest)| rest)
    }

    /// The text (it was built from `&str`).
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(self.as_bytes()).unwrap_or("?")
    }
}

impl<const N: usize> fmt::Debug for CBuf<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<const N: usize> fmt::Display for CBuf<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_terminated_and_checked() {
        let p = CPath::concat(&["/run/x", "/proc"]).unwrap();
        assert_eq!(p.as_cstr().to_bytes_with_nul(), b"/run/x/proc\0");
        assert_eq!(p.as_bytes(), b"/run/x/proc");
        assert!(CPath::new("a\0b").is_none());
        assert!(CBuf::<4>::new("abc").is_some());
        assert!(CBuf::<4>::new("abcd").is_none(), "no room for the NUL");
    }
}
