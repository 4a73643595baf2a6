//! Container plans: everything the child of a container start does, decided
//! as plain data before fork.
//!
//! The child must not decide, allocate or format anything between fork and
//! execve: all of it is data here, before fork.
//!
//! [`plan::plan`] turns (manifest, board, container index, rootfs path) into a
//! [`plan::Plan`]: identity maps ([`ids`]), namespaces, the mount sequence
//! ([`mounts::Step`], including the `/dev` nodes from [`devices`]),
//! capability sets ([`caps`]), rlimits, argv and environment. The plan has a
//! fixed capacity and holds every path, argument and environment string as a
//! NUL-terminated byte string ([`cstr::CBuf`]), so the child formats and
//! allocates nothing between fork and execve. The act layer ([`spawn`]) is a
//! dumb loop over the steps: [`Act`] and [`run`]. Tests record the steps.
//! Before it, [`prepare`] makes on the host what the plan names there: the
//! granted device nodes and the volumes. [`landlock`] makes the Landlock
//! rules from the manifest, as data too.
//!
//! Order follows `shared/reference/hardening.md`; see [`plan::Plan`] for the
//! whole sequence the act layer runs.

pub mod beneath;
pub mod caps;
pub mod cstr;
pub mod devices;
pub mod enter;
pub mod ids;
pub mod landlock;
pub mod mounts;
pub mod order;
pub mod plan;
pub mod prepare;
pub mod quota;
pub mod quota_act;
pub mod shift;
pub mod spawn;
pub mod start;

pub use cstr::{CArg, CBuf, CPath};
pub use mounts::Step;
pub use plan::{plan, Plan, PlanError};

/// Performs one mount-sequence step. The real implementation makes the
/// syscalls (in the child, after fork: no allocation); tests record.
pub trait Act {
    type Error;
    fn act(&mut self, step: &Step) -> Result<(), Self::Error>;
}

/// A step that failed: its index in the plan's step list and the error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failed<E> {
    pub index: usize,
    pub error: E,
}

/// Run the steps in order, stopping at the first failure (the container is
/// not started on any error; the index tells the supervisor which step).
pub fn run<A: Act>(steps: &[Step], act: &mut A) -> Result<(), Failed<A::Error>> {
    for (index, s) in steps.iter().enumerate() {
        act.act(s).map_err(|error| Failed { index, error })?;
    }
    Ok(())
}
