//! Confinement: each container's plan (ids, mounts, devices, capabilities,
//! seccomp, Landlock, AppArmor, cgroup limits, resource budgets) and the
//! start path that applies it. It must not reach into the supervising loop.

pub mod apparmor;
pub mod budget;
pub mod cgroup;
pub mod container;
pub mod containers;
pub mod harden;
pub mod layers;
pub mod notify;
pub mod seccomp;
