//! Resource budgets: the memory limit every container runs under, what its
//! tmpfs mounts may hold, the memory berth keeps for itself, and the
//! per-user inotify limits of the initial namespace.
//!
//! It must not reach into the loop: the plan and the boot path ask it.
//!
//! The board's `[budgets]` table ([`Budgets`]) holds the settings; the pure
//! part that decides from them ([`resolve`], [`tmpfs_total`],
//! [`tmpfs_inodes`], [`inotify_settings`]) is [`crate::release::budgets`],
//! beside the board and the manifest that declare them, and is re-exported
//! here. This module reads the running machine (`MemTotal` from
//! `/proc/meminfo`, [`mem_total_here`]) and acts: [`apply_at_boot`] runs
//! once in the system stage, before any host service or container starts.
//!
//! # Why a protected cgroup and not `mlockall`
//!
//! berth (PID 1) and the host services it starts live in their own cgroup,
//! [`HOST_CGROUP`], whose `memory.min` is the board's
//! `budgets.host_reserve_kib`. Memory under `memory.min` is never reclaimed
//! for anyone else: page cache (the log store, release files), kernel
//! memory charged to berth (pipes, sockets, epoll) and anonymous memory
//! alike, and it covers what berth allocates *later* (a staged release, a
//! burst of log lines), up to the reserve. `mlockall(MCL_CURRENT |
//! MCL_FUTURE)` would pin only berth's own mappings, would pin all of them
//! (the whole binary and every heap page, forever, raising the RSS the
//! bench measures), would do nothing for the host services, and makes every
//! later `mmap` fail outright when it cannot be locked: the very failure the
//! reserve exists to prevent. With every container under a memory limit
//! (`memory.oom.group = 1`), a container that runs out is OOM-killed inside
//! its own cgroup; PID 1 is never an OOM-killer victim.
//!
//! cgroup v1 has no `memory.min`: there berth logs `memory.reserve
//! result=unsupported` and relies on the per-container limits alone.
//!
//! # Per-user kernel budgets
//!
//! Each container's user namespace is created by that container's own
//! outside uid ([`crate::confine::container::spawn`]), so the kernel's per-user
//! counters (inotify instances and watches, POSIX message queue bytes,
//! pending signals, locked memory, processes) are charged per container.
//! The initial namespace's `fs.inotify.max_user_instances` and
//! `max_user_watches` are then each container's budget; berth leaves the
//! kernel's values unless the board names others.

use crate::common::log::Event;

pub use crate::release::budgets::{
    inotify_settings, mem_total_kib, resolve, tmpfs_inodes, tmpfs_total, Budgets, Memory, Need, Source, Sysctl, MEMORY_MAX, MEMORY_MIN, TMPFS_BYTES_PER_INODE,
    TMPFS_INODES_MIN,
};

/// The cgroup (v2) of berth and the host services.
pub const HOST_CGROUP: &str = "/sys/fs/cgroup/host";

/// `MemTotal` of the running machine (0 when unreadable: then the default
/// limit is the smallest, [`MEMORY_MIN`], and the start says why).
pub fn mem_total_here() -> u64 {
    let text = crate::common::files::read_bounded("/proc/meminfo", 16 * 1024).unwrap_or_default();
    mem_total_kib(&String::from_utf8_lossy(&text)).unwrap_or(0)
}

/// Whether the memory controller is there for containers: on v1 its
/// hierarchy is mounted, on v2 the root lists it.
pub fn memory_controller_here(mode: crate::release::board::CgroupMode) -> bool {
    match mode {
        crate::release::board::CgroupMode::V1 => crate::common::files::is_mountpoint("/sys/fs/cgroup/memory"),
        crate::release::board::CgroupMode::V2 => {
            let text = crate::common::files::read_bounded("/sys/fs/cgroup/cgroup.controllers", 4096).unwrap_or_default();
            String::from_utf8_lossy(&text).split_whitespace().any(|c| c == "memory")
        }
    }
}

/// What the reserve step does on each hierarchy, in order: (file under
/// [`HOST_CGROUP`]'s parent or the group itself, value).
pub fn reserve_plan(reserve_kib: u32) -> Vec<(&'static str, String)> {
    let mut out = vec![("cgroup.subtree_control", "+memory".to_owned())];
    if reserve_kib > 0 {
        out.push(("host/memory.min", (u64::from(reserve_kib) * 1024).to_string()));
    }
    // "0": the writing process, PID 1 (its later children are born there).
    out.push(("host/cgroup.procs", "0".to_owned()));
    out
}

/// Boot: the memory budget event, the host reserve, the inotify sysctls.
pub fn apply_at_boot(b: &Budgets, mode: crate::release::board::CgroupMode) {
    let total = mem_total_here();
    Event::info("memory.budget")
        .kv("mem_total_kib", total)
        .kv("container_default_kib", b.container_default(total) / 1024)
        .kv("memory_high_percent", b.memory_high_percent)
        .emit();
    match mode {
        crate::release::board::CgroupMode::V2 => {
            let r = reserve(b.host_reserve_kib);
            Event::info("memory.reserve").kv("cgroup", HOST_CGROUP).kv("min_kib", b.host_reserve_kib).result(&r).emit();
        }
        crate::release::board::CgroupMode::V1 => Event::warn("memory.reserve")
            .kv("min_kib", 0)
            .kv("result", "unsupported")
            .kv("reason", "cgroup v1 has no memory.min: berth relies on each container's memory limit")
            .emit(),
    }
    for s in inotify_settings(b) {
        let r = std::fs::write(s.path, format!("{}\n", s.value)).map_err(|e| e.to_string());
        Event::info("inotify.limit").kv("key", s.key).kv("value", s.value).result(&r).emit();
    }
}

/// Make [`HOST_CGROUP`], give it the reserve and move PID 1 into it.
fn reserve(reserve_kib: u32) -> Result<(), String> {
    let base = std::path::Path::new(HOST_CGROUP).parent().unwrap_or(std::path::Path::new("/sys/fs/cgroup"));
    match std::fs::create_dir(HOST_CGROUP) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(format!("create {HOST_CGROUP}: {e}")),
        _ => {}
    }
    for (file, value) in reserve_plan(reserve_kib) {
        let path = base.join(file);
        crate::confine::cgroup::act::write(&path, &value).map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
