//! The fault hook of updates (only with the `test-hooks` feature): a
//! record write of a named kind, or the mapping of an image, fails with
//! EIO, as a failing disk would make it, while the machine stays up. The
//! QEMU fault scenarios use it to show what berth does when the trial, the
//! commit or the rollback cannot be recorded (see `supervise::begin` and
//! `supervise::trial`), or when a switch cannot map an image
//! (`supervise::unprepared`).
//!
//! It must not fail anything in a shipped build: without `test-hooks`,
//! [`check`] always lets the step go on.
//!
//! `berth.fail=KIND:N[,KIND:N]` on the kernel command line (parsed in
//! [`crate::boot::hooks`]): the first N record writes of KIND in this boot fail
//! before anything is written (the record stays as it was). KIND is
//! `trial` ([`super::store::Store::begin_trial`]), `commit`
//! ([`super::store::Store::commit`]) or `rollback`
//! ([`super::store::Store::rollback`]); or `map`: the first N images PID 1
//! maps after the boot ([`crate::release::images`]: a switch's; the boot's own
//! mappings come before the hook is armed, and the stager is a process of
//! its own, never armed). Without the feature [`check`] always lets the
//! step go on.

use std::io;
#[cfg(feature = "test-hooks")]
use std::sync::atomic::{AtomicU32, Ordering};

/// The steps the hook can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Trial,
    Commit,
    Rollback,
    Map,
}

impl Kind {
    /// All of them, in the order of [`Kind::index`].
    pub const ALL: [Kind; 4] = [Kind::Trial, Kind::Commit, Kind::Rollback, Kind::Map];

    /// Its name on the kernel command line and in events.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Trial => "trial",
            Kind::Commit => "commit",
            Kind::Rollback => "rollback",
            Kind::Map => "map",
        }
    }

    #[cfg(feature = "test-hooks")]
    fn index(self) -> usize {
        match self {
            Kind::Trial => 0,
            Kind::Commit => 1,
            Kind::Rollback => 2,
            Kind::Map => 3,
        }
    }
}

/// Writes of each kind still to fail.
#[cfg(feature = "test-hooks")]
static LEFT: [AtomicU32; 4] = [AtomicU32::new(0), AtomicU32::new(0), AtomicU32::new(0), AtomicU32::new(0)];

/// Make the next `n` steps of `kind` fail.
#[cfg(feature = "test-hooks")]
pub fn arm(kind: Kind, n: u32) {
    if let Some(left) = LEFT.get(kind.index()) {
        left.store(n, Ordering::Relaxed);
    }
}

/// Before a step of `kind`: EIO while the hook has steps of that kind left
/// to fail (each failure is logged), otherwise go on.
#[cfg(feature = "test-hooks")]
pub fn check(kind: Kind) -> io::Result<()> {
    let Some(left) = LEFT.get(kind.index()) else {
        return Ok(());
    };
    match take(left) {
        Some(n) => {
            crate::common::log::Event::warn("fault.injected").kv("kind", kind.name()).kv("left", n).emit();
            Err(io::Error::from_raw_os_error(libc::EIO))
        }
        None => Ok(()),
    }
}

/// Take one failure from `left`: how many are left after it, or `None`
/// when none was.
#[cfg(feature = "test-hooks")]
fn take(left: &AtomicU32) -> Option<u32> {
    left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).ok().map(|n| n.saturating_sub(1))
}

/// Without the hook every step goes on.
#[cfg(not(feature = "test-hooks"))]
#[inline]
pub fn check(_kind: Kind) -> io::Result<()> {
    Ok(())
}

/// `KIND:N[,KIND:N]`: each kind with its count (N > 0); `None` if any part
/// is not one.
pub fn parse(value: &str) -> Option<Vec<(Kind, u32)>> {
    let mut out = Vec::new();
    for part in value.split(',') {
        let (kind, n) = part.split_once(':')?;
        let kind = Kind::ALL.into_iter().find(|k| k.name() == kind)?;
        let n: u32 = n.parse().ok().filter(|n| *n > 0)?;
        out.push((kind, n));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_takes_kinds_with_positive_counts() {
        assert_eq!(parse("commit:1"), Some(vec![(Kind::Commit, 1)]));
        assert_eq!(parse("trial:2,rollback:3"), Some(vec![(Kind::Trial, 2), (Kind::Rollback, 3)]));
        assert_eq!(parse("commit:0"), None);
        assert_eq!(parse("map:1"), Some(vec![(Kind::Map, 1)]));
        assert_eq!(parse("boot:1"), None);
        assert_eq!(parse("commit"), None);
        assert_eq!(parse("commit:1,"), None);
    }

    /// The count goes down to nothing (the global hook is left unarmed:
    /// the store's own tests write records meanwhile).
    #[cfg(feature = "test-hooks")]
    #[test]
    fn armed_failures_are_taken_one_by_one() {
        let left = AtomicU32::new(2);
        assert_eq!(take(&left), Some(1));
        assert_eq!(take(&left), Some(0));
        assert_eq!(take(&left), None);
        assert_eq!(take(&left), None);
    }
}
