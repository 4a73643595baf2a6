//! The plan for starting one container, built before fork.
//!
//! It must not act: a plan is checked data, and the child only reads it.
//!
//! Order of the start (hardening notes), and which part of the plan each
//! step reads:
//!
//! | who | step | plan field |
//! |---|---|---|
//! | host | the granted nodes and the volumes, made and owned ([`super::prepare`]) | [`Plan::nodes`], [`Plan::volumes`], [`Plan::ids`] |
//! | host | cgroup + device filter, child born in it | [`Plan::nodes`] (with access bits) |
//! | child | rlimits, before the user namespace | [`Plan::rlimits`] |
//! | child | `setresgid`/`setresuid` to the container's outside base id ([`super::order`]) | [`Ids::outside_base`] |
//! | child | `unshare(CLONE_NEWUSER)` alone | [`Namespaces::user`] |
//! | parent | `setgroups`, `uid_map`, `gid_map` | [`Plan::ids`] |
//! | child | `unshare` of the rest; fork into the PID namespace; `setsid` | [`Namespaces::rest`] |
//! | child | mounts, `/dev`, pivot, hostname, read-only, masks, `/` ro | [`Plan::steps`] (via [`super::run`]) |
//! | child | `umask`, `chdir` | [`Plan::umask`], [`Plan::workdir`] |
//! | child | bounding set, securebits, ids, capset, ambient, no_new_privs | [`Plan::caps`], [`Plan::ids`] |
//! | child | close fds >= 3; AppArmor exec profile (when the board names one) | |
//! | child | Landlock: each path opened `O_PATH`, its rule added, the ruleset enforced | [`Plan::landlock`] |
//! | child | seccomp, `execve` | [`Plan::argv`], [`Plan::env`] |
//!
//! Everything is fixed-capacity and every string is NUL-terminated already:
//! the act layer builds the `argv`/`envp` pointer arrays (fixed arrays of
//! `*const c_char` pointing into this plan, NULL-terminated) *before* fork,
//! and the child neither allocates nor formats. The plan is ~70 KiB: keep it
//! in a `Box` or a static if stack is scarce.

use core::fmt;

use crate::release::board::Board;
use crate::release::manifest::{Entry, Manifest, Name, Network, ARGS_MAX, ENV_MAX};

use super::caps::{self, Caps};
use super::cstr::{CArg, CPath};
use super::devices::{self, Nodes};
use super::ids::{self, Ids};
use super::landlock::{self, Rules};
use super::mounts::{self, Steps};

/// Longest rootfs path the caller may pass (`/run/berth/c/<32>/root` is 44).
pub const ROOTFS_MAX: usize = 64;
/// The child's umask.
pub const UMASK: u32 = 0o022;
/// Added to the environment when the manifest sets no `PATH`.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A plan that cannot be made: which container, which field, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError {
    pub container: std::string::String,
    pub field: std::string::String,
    pub reason: std::string::String,
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "container {}: field {}: {}", self.container, self.field, self.reason)
    }
}

impl std::error::Error for PlanError {}

/// Namespace flags for the two `unshare` calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Namespaces {
    /// First and alone: `CLONE_NEWUSER`.
    pub user: libc::c_int,
    /// Then, owned by that user namespace: mount, PID, IPC, UTS, cgroup, and
    /// network unless the manifest asks for the host's.
    pub rest: libc::c_int,
}

impl Namespaces {
    pub fn for_network(network: Option<Network>) -> Namespaces {
        let mut rest = libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS | libc::CLONE_NEWCGROUP;
        if network != Some(Network::Host) {
            rest |= libc::CLONE_NEWNET;
        }
        Namespaces { user: libc::CLONE_NEWUSER, rest }
    }

    pub fn own_net(&self) -> bool {
        self.rest & libc::CLONE_NEWNET != 0
    }
}

/// Resource limits berth sets. The act maps each to its `RLIMIT_*` and uses
/// `prlimit64` (64-bit values on 32-bit targets too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Nofile,
    Nproc,
    Core,
}

impl Resource {
    /// The `RLIMIT_*` number.
    pub fn raw(self) -> libc::c_int {
        match self {
            Resource::Nofile => libc::RLIMIT_NOFILE as libc::c_int,
            Resource::Nproc => libc::RLIMIT_NPROC as libc::c_int,
            Resource::Core => libc::RLIMIT_CORE as libc::c_int,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    pub resource: Resource,
    pub soft: u64,
    pub hard: u64,
}

/// berth's default limits with the manifest's `rlimits` values put in.
pub fn rlimits(m: Option<&crate::release::manifest::Rlimits>) -> [Rlimit; 3] {
    let mut out = RLIMITS;
    let Some(m) = m else { return out };
    for r in out.iter_mut() {
        let v = match r.resource {
            Resource::Nofile => m.nofile,
            Resource::Nproc => m.nproc,
            Resource::Core => m.core,
        };
        if let Some(v) = v {
            r.soft = u64::from(v);
            r.hard = u64::from(v);
        }
    }
    out
}

/// Default limits. `nproc` counts per (outside) uid, and each container has
/// its own range, so it is a per-container, per-user limit; pids.max in the
/// cgroup is the hard stop. No core dumps by default: they would land in a
/// read-only or tiny filesystem and may hold secrets.
pub const RLIMITS: [Rlimit; 3] = [
    Rlimit { resource: Resource::Nofile, soft: 1024, hard: 1024 },
    Rlimit { resource: Resource::Nproc, soft: 512, hard: 512 },
    Rlimit { resource: Resource::Core, soft: 0, hard: 0 },
];

/// Everything the child does between fork and execve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub name: crate::release::manifest::Name,
    /// The container's index in the release (chooses the id range).
    pub index: u16,
    pub ids: Ids,
    pub namespaces: Namespaces,
    /// The mount sequence, hostname included.
    pub steps: Steps,
    /// The container's `/dev` nodes with their cgroup access bits; the
    /// granted ones are bound from the nodes berth makes before the start.
    pub nodes: Nodes,
    /// The manifest's volumes, by name: berth makes
    /// `/data/volumes/<name>/<volume>` before the start.
    pub volumes: heapless::Vec<crate::release::manifest::Name, { crate::release::manifest::MOUNTS_MAX }>,
    pub caps: Caps,
    pub rlimits: [Rlimit; 3],
    pub argv: heapless::Vec<CArg, ARGS_MAX>,
    /// The manifest's, plus [`DEFAULT_PATH`] when it sets no `PATH`, plus
    /// [`crate::common::names::NOTIFY_ENV`] when the container uses the notify socket.
    pub env: heapless::Vec<CArg, { ENV_MAX + 2 }>,
    /// Inside the container, after the pivot.
    pub workdir: CPath,
    pub umask: u32,
    /// The Landlock rules, with every right berth knows (masked by the
    /// kernel's ABI at the start).
    pub landlock: Rules,
}

fn valid_rootfs(p: &str) -> bool {
    p.len() <= ROOTFS_MAX
        && p.strip_prefix('/').is_some_and(|r| !r.is_empty() && r.split('/').all(|c| !c.is_empty() && c != "." && c != ".."))
        && p.bytes().all(|b| b.is_ascii_graphic())
}

/// A field's error: (field, reason); [`plan`] adds the container.
type FieldError = (std::string::String, std::string::String);

fn field_error(field: &str, reason: &str) -> FieldError {
    (field.to_owned(), reason.to_owned())
}

/// Build the plan for container `index` of a release, whose image is
/// mounted (read-only) at `rootfs` on the host.
pub fn plan(manifest: &Manifest, board: &Board, index: u16, rootfs: &str) -> Result<Plan, PlanError> {
    let name = manifest.name.as_str();
    let e = |(field, reason): FieldError| PlanError { container: name.to_owned(), field, reason };
    let e2 = |field: &str, reason: &str| e(field_error(field, reason));

    // The manifest's own rules (gates aside: the plan handles gated fields
    // as data), checked again here.
    manifest.validate_fields().map_err(|m| e((m.field, m.reason)))?;
    let rootfs = rootfs.strip_suffix('/').unwrap_or(rootfs);
    if !valid_rootfs(rootfs) {
        return Err(e2("rootfs", "must be an absolute path of plain components, at most 64 bytes, not /"));
    }
    if !crate::release::manifest::valid_name(name) || name.len() > crate::release::manifest::NAME_MAX {
        return Err(e2("name", "not a container name"));
    }

    let ids = ids::ids(index, manifest.entry.uid, manifest.entry.gid).map_err(|(f, r)| e2(f, r))?;
    let namespaces = Namespaces::for_network(manifest.network);
    let caps = caps::from_names(manifest.capabilities.iter().map(|c| c.as_str()), manifest.network).map_err(e)?;
    let nodes = devices::nodes(&manifest.devices, board, name).map_err(e)?;
    let writable = mounts::writable(&manifest.mounts).map_err(e)?;
    let volumes = volumes(&writable).map_err(e)?;
    let landlock = landlock_rules(manifest, &writable, &nodes).map_err(e)?;
    let notify = if manifest.uses_notify() {
        Some(CPath::new(&crate::common::names::notify_host_path(name)).ok_or_else(|| e2("readiness", "notify socket path too long"))?)
    } else {
        None
    };
    let steps = mounts::sequence(&mounts::Input {
        root: rootfs,
        container: name,
        own_net: namespaces.own_net(),
        uid: ids.uid,
        gid: ids.gid,
        writable: &writable,
        nodes: &nodes,
        notify: notify.as_ref(),
        status_view: manifest.status_view,
    })
    .map_err(e)?;
    let argv = argv(&manifest.entry).map_err(e)?;
    let env = env(&manifest.entry, notify.is_some()).map_err(e)?;
    let workdir = workdir(&manifest.entry).map_err(e)?;

    Ok(Plan {
        name: manifest.name.clone(),
        index,
        ids,
        namespaces,
        steps,
        nodes,
        volumes,
        caps,
        rlimits: rlimits(manifest.rlimits.as_ref()),
        argv,
        env,
        workdir,
        umask: UMASK,
        landlock,
    })
}

/// The volumes among the writable mounts, by name, in mount order.
fn volumes(writable: &[mounts::Writable]) -> Result<heapless::Vec<Name, { crate::release::manifest::MOUNTS_MAX }>, FieldError> {
    let mut volumes = heapless::Vec::new();
    for w in writable {
        if let mounts::Source::Volume(v) = &w.source {
            volumes.push(v.clone()).map_err(|_| field_error(&w.field, "too many volumes"))?;
        }
    }
    Ok(volumes)
}

/// The Landlock rules: the manifest's paths, the writable mounts (the
/// volumes among them resolved without symlinks) and the nodes that take
/// device ioctls.
fn landlock_rules(manifest: &Manifest, writable: &[mounts::Writable], nodes: &[devices::Node]) -> Result<Rules, FieldError> {
    let targets: std::vec::Vec<&str> = writable.iter().map(|w| w.target.as_str()).collect();
    let volume_targets: std::vec::Vec<&str> = writable.iter().filter(|w| matches!(w.source, mounts::Source::Volume(_))).map(|w| w.target.as_str()).collect();
    let ioctl_nodes: std::vec::Vec<&str> = nodes.iter().filter(|n| devices::takes_ioctls(n)).map(|n| n.path.as_str()).collect();
    landlock::plan_rules(&landlock::Input {
        exec_paths: &manifest.exec_paths,
        rw_paths: &manifest.rw_paths,
        writable: &targets,
        ioctl_nodes: &ioctl_nodes,
        volumes: &volume_targets,
    })
}

/// `entry.argv` as C strings: at least the program, named by an absolute
/// path.
fn argv(entry: &Entry) -> Result<heapless::Vec<CArg, ARGS_MAX>, FieldError> {
    let mut argv = heapless::Vec::new();
    for (i, a) in entry.argv.iter().enumerate() {
        let field = format!("entry.argv[{i}]");
        if i == 0 && !a.starts_with('/') {
            return Err((field, "must be an absolute path".into()));
        }
        let c = CArg::new(a).ok_or_else(|| (field.clone(), "contains NUL or is too long".into()))?;
        argv.push(c).map_err(|_| (field, "too many arguments".into()))?;
    }
    if argv.is_empty() {
        return Err(field_error("entry.argv", "must name the program to run"));
    }
    Ok(argv)
}

/// `entry.env` as C strings (each `KEY=value`), then [`DEFAULT_PATH`] when
/// it sets no `PATH`, then the notify socket's variable when `notify`.
fn env(entry: &Entry, notify: bool) -> Result<heapless::Vec<CArg, { ENV_MAX + 2 }>, FieldError> {
    let mut env = heapless::Vec::new();
    for (i, kv) in entry.env.iter().enumerate() {
        let field = format!("entry.env[{i}]");
        if kv.split_once('=').is_none_or(|(k, _)| k.is_empty()) {
            return Err((field, "must be KEY=value".into()));
        }
        let c = CArg::new(kv).ok_or_else(|| (field.clone(), "contains NUL or is too long".into()))?;
        env.push(c).map_err(|_| (field, "too many environment strings".into()))?;
    }
    if !entry.env.iter().any(|kv| kv.starts_with("PATH=")) {
        let c = CArg::new(DEFAULT_PATH).ok_or_else(|| field_error("entry.env", "default PATH does not fit"))?;
        env.push(c).map_err(|_| field_error("entry.env", "too many environment strings"))?;
    }
    if notify {
        let c = CArg::new(crate::common::names::NOTIFY_ENV).ok_or_else(|| field_error("entry.env", "NOTIFY_SOCKET does not fit"))?;
        env.push(c).map_err(|_| field_error("entry.env", "too many environment strings"))?;
    }
    Ok(env)
}

/// `entry.workdir`: absolute, without `..`.
fn workdir(entry: &Entry) -> Result<CPath, FieldError> {
    let workdir = entry.workdir.as_str();
    if !workdir.starts_with('/') || workdir.split('/').any(|c| c == "..") {
        return Err(field_error("entry.workdir", "must be an absolute path without '..'"));
    }
    CPath::new(workdir).ok_or_else(|| field_error("entry.workdir", "contains NUL or is too long"))
}

#[cfg(test)]
mod rlimit_tests {
    use super::*;

    #[test]
    fn manifest_values_replace_the_defaults() {
        assert_eq!(rlimits(None), RLIMITS);
        let m = crate::release::manifest::Rlimits { nofile: Some(4096), nproc: None, core: Some(0) };
        let r = rlimits(Some(&m));
        assert_eq!((r[0].resource, r[0].soft, r[0].hard), (Resource::Nofile, 4096, 4096));
        assert_eq!((r[1].soft, r[2].soft), (512, 0));
    }
}

#[cfg(test)]
mod tests;
