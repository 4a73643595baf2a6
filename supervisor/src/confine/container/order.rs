//! The intermediate process's steps (C1 of [`super::spawn`]), in order, as
//! data: the act layer runs [`run_intermediate`] over [`INTERMEDIATE`], and
//! tests record the same loop to check the order.
//!
//! The intermediate must not create the user namespace before it took the
//! container's outside ids, nor drop the groups after: the order below is the
//! only one.
//!
//! Why this order: C1 starts as host root in the host's namespaces. It drops
//! the supplementary groups and sets the container's rlimits while it still
//! may (raising a hard limit needs `CAP_SYS_RESOURCE`; after `setgroups=deny`
//! the groups could never be dropped). Then it becomes the container's own
//! outside uid and gid ([`Step::HostIds`], `setresgid`/`setresuid` to the
//! start of the container's id range), and only then creates the user
//! namespace: the namespace is owned by that uid, so the kernel's per-user
//! counters (inotify instances and watches, message queue bytes, pending
//! signals, locked memory, processes) are charged to that container alone
//! instead of to host root, shared with every other container and berth.
//! The supervisor, root in the parent namespace, still writes the maps
//! from outside. Everything after the switch needs no host privilege: the
//! creator of a user namespace holds every capability inside it, which is
//! what `setresuid(0)` inside, the other namespaces and the fork into the PID
//! namespace use.

use super::spawn::{Fail, Step};

/// C1's steps, in the order they run.
pub const INTERMEDIATE: [Step; 8] =
    [Step::Groups, Step::Rlimit, Step::HostIds, Step::UserNamespace, Step::Sync, Step::NamespaceRoot, Step::Unshare, Step::PidClone];

/// Run `step` for each of [`INTERMEDIATE`] in order, stopping at the first
/// failure.
pub(super) fn run_intermediate(mut step: impl FnMut(Step) -> Result<(), Fail>) -> Result<(), Fail> {
    for s in INTERMEDIATE {
        step(s)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::errno::Errno;

    fn recorded(fail_at: Option<Step>) -> (Vec<Step>, Result<(), Fail>) {
        let mut seen = Vec::new();
        let r = run_intermediate(|s| {
            seen.push(s);
            match fail_at {
                Some(f) if f == s => Err((s, Errno::EPERM)),
                _ => Ok(()),
            }
        });
        (seen, r)
    }

    fn at(seen: &[Step], s: Step) -> usize {
        seen.iter().position(|x| *x == s).unwrap()
    }

    #[test]
    fn the_credential_switch_comes_before_the_user_namespace() {
        let (seen, r) = recorded(None);
        assert_eq!(r, Ok(()));
        assert_eq!(seen, INTERMEDIATE);
        // Host-root work first, then the switch, then the namespace.
        assert!(at(&seen, Step::Groups) < at(&seen, Step::HostIds));
        assert!(at(&seen, Step::Rlimit) < at(&seen, Step::HostIds));
        assert_eq!(at(&seen, Step::HostIds) + 1, at(&seen, Step::UserNamespace));
        // The maps are written (sync) before C1 becomes root inside, then the rest.
        assert!(at(&seen, Step::UserNamespace) < at(&seen, Step::Sync));
        assert!(at(&seen, Step::Sync) < at(&seen, Step::NamespaceRoot));
        assert!(at(&seen, Step::NamespaceRoot) < at(&seen, Step::Unshare));
        assert_eq!(seen.last(), Some(&Step::PidClone));
    }

    #[test]
    fn a_failed_switch_creates_no_namespace() {
        let (seen, r) = recorded(Some(Step::HostIds));
        assert_eq!(r, Err((Step::HostIds, Errno::EPERM)));
        assert_eq!(seen, [Step::Groups, Step::Rlimit, Step::HostIds]);
    }
}
