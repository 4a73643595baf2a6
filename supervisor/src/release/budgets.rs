//! Resource budgets as the board declares them (`[budgets]`, [`Budgets`])
//! and the arithmetic that resolves a container's memory limit from them.
//!
//! It only decides, as data: it must not write to cgroups, `/proc/sys` or
//! any other file (confine's `budget` applies what it decides at boot and at
//! each start), and it must not read the running machine (the caller passes
//! `MemTotal`).
//!
//! [`resolve`] turns a manifest's `resources.memory_max` (or, when it names
//! none, the board's default: a share of `MemTotal`, or a fixed byte count)
//! into `memory.max` and `memory.high`, after checking that the container's
//! tmpfs mounts ([`tmpfs_total`], with berth's own `/dev`, `/dev/shm` and
//! default `/tmp` sizes, [`DEV_SIZE`], [`SHM_SIZE`], [`TMP_SIZE`]) fit under
//! it; [`tmpfs_inodes`] sizes every tmpfs's `nr_inodes`;
//! [`inotify_settings`] lists the sysctls the board raises. The manifest
//! check uses the same [`resolve`] so that a release is refused on the host
//! for what a start would refuse on the device.

use serde::{Deserialize, Serialize};

use crate::release::manifest::Mount;

/// `/tmp` when the manifest does not size it: 1 MiB, enough for lock files
/// and sockets; a container that needs scratch space asks for it.
pub const TMP_SIZE: u64 = 1 << 20;
/// `/dev/shm`: 1 MiB (POSIX shared memory and semaphores of small services).
pub const SHM_SIZE: u64 = 1 << 20;
/// `/dev`: only nodes, directories and symlinks.
pub const DEV_SIZE: u64 = 64 << 10;
/// One `nr_inodes` per this many bytes of a tmpfs's size.
pub const TMPFS_BYTES_PER_INODE: u64 = 4096;
/// The fewest inodes a tmpfs gets (`/dev` holds its nodes and symlinks).
pub const TMPFS_INODES_MIN: u64 = 64;
/// Smallest and largest memory limit (the manifest's bounds).
pub const MEMORY_MIN: u64 = 1 << 20;
pub const MEMORY_MAX: u64 = 1 << 40;

/// The board's `[budgets]` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Budgets {
    /// `memory.max` of a container whose manifest names no
    /// `resources.memory_max`, as a percentage of `MemTotal` (1..=100,
    /// default 25: four such containers fill the memory at most).
    pub container_memory_percent: u8,
    /// The same default as bytes (1 MiB..=1 TiB); when set, it replaces
    /// the percentage.
    pub container_memory_max: Option<u64>,
    /// `memory.high` as a percentage of `memory.max` (50..=100, default 90:
    /// the kernel throttles and reclaims before the OOM kill); 100 writes
    /// no `memory.high`.
    pub memory_high_percent: u8,
    /// `memory.min` of the host cgroup (`/sys/fs/cgroup/host`) in KiB (default 16384; 0: none).
    pub host_reserve_kib: u32,
    /// `fs.inotify.max_user_instances` written at boot (default: the
    /// kernel's value is kept). Each container's budget.
    pub inotify_max_user_instances: Option<u32>,
    /// `fs.inotify.max_user_watches` written at boot (default: kept).
    pub inotify_max_user_watches: Option<u32>,
    /// Where the kernel has no memory controller for the board's cgroup
    /// mode (a kernel built without v1 memcg, booted on v1): `required`
    /// (default) refuses every container; `optional` starts a container
    /// whose manifest names no `memory_max` without a memory limit, with a
    /// warning (one whose manifest names one is still refused).
    pub memory_controller: Need,
}

/// Whether the board needs a facility the kernel may lack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Need {
    #[default]
    Required,
    Optional,
}

impl Need {
    pub fn name(self) -> &'static str {
        match self {
            Need::Required => "required",
            Need::Optional => "optional",
        }
    }
}

impl Default for Budgets {
    fn default() -> Budgets {
        Budgets {
            container_memory_percent: 25,
            container_memory_max: None,
            memory_high_percent: 90,
            host_reserve_kib: 16 * 1024,
            inotify_max_user_instances: None,
            inotify_max_user_watches: None,
            memory_controller: Need::Required,
        }
    }
}

impl Budgets {
    /// Each value within its range; the error is (field, reason).
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        if !(1..=100).contains(&self.container_memory_percent) {
            return Err(("budgets.container_memory_percent", "must be between 1 and 100"));
        }
        if self.container_memory_max.is_some_and(|v| !(MEMORY_MIN..=MEMORY_MAX).contains(&v)) {
            return Err(("budgets.container_memory_max", "must be between 1 MiB and 1 TiB (in bytes)"));
        }
        if !(50..=100).contains(&self.memory_high_percent) {
            return Err(("budgets.memory_high_percent", "must be between 50 and 100"));
        }
        if self.host_reserve_kib > 1 << 30 {
            return Err(("budgets.host_reserve_kib", "must be at most 1 TiB (in KiB)"));
        }
        if self.inotify_max_user_instances.is_some_and(|v| !(1..=1 << 20).contains(&v)) {
            return Err(("budgets.inotify_max_user_instances", "must be between 1 and 1048576"));
        }
        if self.inotify_max_user_watches.is_some_and(|v| !(1..=1 << 24).contains(&v)) {
            return Err(("budgets.inotify_max_user_watches", "must be between 1 and 16777216"));
        }
        Ok(())
    }

    /// The default `memory.max` in bytes on a machine with `mem_total_kib`.
    pub fn container_default(&self, mem_total_kib: u64) -> u64 {
        match self.container_memory_max {
            Some(b) => b,
            None => {
                let share = percent_of(mem_total_kib.saturating_mul(1024), self.container_memory_percent);
                share.clamp(MEMORY_MIN, MEMORY_MAX)
            }
        }
    }
}

/// `pct` % of `bytes`, rounded down to a 4 KiB page.
fn percent_of(bytes: u64, pct: u8) -> u64 {
    let v = u128::from(bytes) * u128::from(pct) / 100;
    u64::try_from(v).unwrap_or(u64::MAX) & !4095
}

/// `MemTotal` in KiB from the text of `/proc/meminfo`.
pub fn mem_total_kib(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut f = line.split_whitespace().skip(1);
    let v: u64 = f.next()?.parse().ok()?;
    (f.next() == Some("kB")).then_some(v)
}

/// `nr_inodes` of a tmpfs of `size` bytes.
pub fn tmpfs_inodes(size: u64) -> u64 {
    (size / TMPFS_BYTES_PER_INODE).max(TMPFS_INODES_MIN)
}

/// The most a container's tmpfs mounts hold: the manifest's `tmpfs_size`s
/// plus berth's own `/dev`, `/dev/shm` and (unless the manifest mounts
/// `/tmp`) the default `/tmp`.
pub fn tmpfs_total(mounts: &[Mount]) -> u64 {
    let own: u64 = mounts.iter().filter_map(|m| m.tmpfs_size).fold(0, u64::saturating_add);
    let tmp = if mounts.iter().any(|m| m.target.as_str() == "/tmp") { 0 } else { TMP_SIZE };
    own.saturating_add(DEV_SIZE).saturating_add(SHM_SIZE).saturating_add(tmp)
}

/// Where a container's memory limit comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Manifest,
    Board,
}

/// A container's memory limits, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    pub max: u64,
    /// `None` when the board's `memory_high_percent` is 100.
    pub high: Option<u64>,
    pub source: Source,
}

/// The memory limits of a container whose manifest asks `memory_max` and
/// mounts `mounts`, on a machine with `mem_total_kib`. The error (field,
/// reason) when its tmpfs mounts could hold more than the limit.
pub fn resolve(memory_max: Option<u64>, mounts: &[Mount], b: &Budgets, mem_total_kib: u64) -> Result<Memory, (&'static str, String)> {
    let (max, source) = match memory_max {
        Some(m) => (m, Source::Manifest),
        None => (b.container_default(mem_total_kib), Source::Board),
    };
    let tmpfs = tmpfs_total(mounts);
    if tmpfs > max {
        let what = "its tmpfs mounts (each mounts[].tmpfs_size, plus /dev, /dev/shm and the default /tmp) hold up to";
        return Err(match source {
            Source::Manifest => ("resources.memory_max", format!("{what} {tmpfs} bytes, more than memory_max {max}: tmpfs pages count against the limit")),
            Source::Board => ("mounts", format!("{what} {tmpfs} bytes, more than the board's default memory limit {max} (budgets): set resources.memory_max")),
        });
    }
    let high = (b.memory_high_percent < 100).then(|| percent_of(max, b.memory_high_percent));
    Ok(Memory { max, high, source })
}

/// One sysctl the board asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sysctl {
    pub key: &'static str,
    pub path: &'static str,
    pub value: u32,
}

/// The inotify sysctls the board raises (none by default).
pub fn inotify_settings(b: &Budgets) -> Vec<Sysctl> {
    let mut out = Vec::new();
    if let Some(v) = b.inotify_max_user_instances {
        out.push(Sysctl { key: "fs.inotify.max_user_instances", path: "/proc/sys/fs/inotify/max_user_instances", value: v });
    }
    if let Some(v) = b.inotify_max_user_watches {
        out.push(Sysctl { key: "fs.inotify.max_user_watches", path: "/proc/sys/fs/inotify/max_user_watches", value: v });
    }
    out
}

#[cfg(test)]
mod tests;
