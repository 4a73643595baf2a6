//! Host-side preparation before a container starts (act code, runs as host
//! root in the supervisor, before the fork).
//!
//! It must not follow a symlink in a volume's path, nor walk a volume's tree
//! here: a shift is returned for the caller to run off its loop.
//!
//! Two things the container's child cannot do for itself, because its user
//! namespace does not map host root:
//!
//! - **Granted device nodes.** The host's node (often `0600 root`) would give
//!   `EACCES` inside. berth makes the container its own node with `mknod` at
//!   [`devices::store_path`] on a tmpfs of its own ([`devices::STORE`],
//!   mounted `nosuid,noexec` but *not* `nodev`, since `/run` is `nodev`),
//!   owned by the container's outside uid and gid for its inside ids, mode
//!   from the grant ([`devices::node_mode`]). The plan binds that node. A
//!   stale node from an earlier start is replaced. Before it is made, the
//!   node is checked once more against the classes no container is ever
//!   given, by its number and path and by the kernel's own name for the
//!   number ([`devices::check_on_device`]); a number the kernel does not
//!   describe is refused too.
//! - **Volumes.** `/data/volumes/<container>/<volume>`, made when missing
//!   (mode 0700, owned like the nodes) and kept across restarts and reboots.
//!   Every component is opened relative to its parent with `O_NOFOLLOW`: a
//!   symlink anywhere (the volume is writable by the container, and one day
//!   a container's data may be restored from elsewhere) is refused, never
//!   followed. `/data/volumes` and `/data/volumes/<container>` are root's,
//!   mode 0711: the container's child (its namespace root is an unmapped
//!   outside uid) must search them to bind the volume, and may not list them.
//!
//! When the container's outside ids change (a new release may start it at
//! another index, so another id range), the volume's tree is shifted to the
//! new range, keeping each file's inside id; symlinks are re-owned, never
//! followed. The shift walks a tree the container wrote, so it is not done
//! here: [`prepare`] returns it as a [`shift::Job`] (as it does for a new
//! volume, whose marker is still to be written) and the caller runs it off
//! its loop, then prepares again ([`super::shift`]).

use core::fmt;
use std::ffi::OsStr;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{fchmod, fstat, makedev, mkdirat, mknodat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};

use super::devices;
use super::mounts::VOLUMES;
use super::plan::Plan;
use super::shift;

/// Size of the node store: directories and nodes only.
pub const STORE_SIZE: u64 = 64 << 10;
/// Mode of the store and of each container's directory in it.
const DIR_MODE: u32 = 0o755;
/// Mode of `/data/volumes` and `/data/volumes/<container>`: search only.
const VOLUMES_DIR_MODE: u32 = 0o711;
/// Mode of a volume made by berth.
const VOLUME_MODE: u32 = 0o700;

/// A preparation that failed: what, on which path, the error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrepareError {
    pub what: &'static str,
    pub path: String,
    pub errno: Errno,
}

impl fmt::Display for PrepareError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {} ({:?})", self.what, self.path, self.errno.desc(), self.errno)
    }
}

impl std::error::Error for PrepareError {}

fn fail<'a>(what: &'static str, path: &'a str) -> impl Fn(Errno) -> PrepareError + 'a {
    move |errno| PrepareError { what, path: path.to_owned(), errno }
}

/// An open directory, closed on drop.
struct Fd(std::fs::File);

impl Fd {
    fn raw(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// `/proc/self/fd/<fd>/<name>`: a path whose lookup starts at this open
    /// directory, whatever its own path has become.
    fn child(&self, name: &OsStr) -> PathBuf {
        let mut p = PathBuf::from(format!("/proc/self/fd/{}", self.raw()));
        p.push(name);
        p
    }
}

fn io_errno(e: std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// `fchown` of an open directory (`None` leaves that id).
fn fchown(fd: &Fd, uid: Option<u32>, gid: Option<u32>) -> Result<(), Errno> {
    std::os::unix::fs::fchown(&fd.0, uid, gid).map_err(io_errno)
}

/// Change the owner of `name` in the directory `dir`, not following it when
/// it is a symlink (what `fchownat(dir, name, AT_SYMLINK_NOFOLLOW)` does).
fn chown_at(dir: &Fd, name: &OsStr, uid: Option<u32>, gid: Option<u32>) -> Result<(), Errno> {
    std::os::unix::fs::lchown(dir.child(name), uid, gid).map_err(io_errno)
}

/// Open directory `name` under `dir` (or the absolute `name`) without
/// following it when it is a symlink (`ELOOP`/`ENOTDIR` then).
fn open_dir(dir: Option<&Fd>, name: &str) -> Result<Fd, Errno> {
    let path = match dir {
        Some(d) => d.child(OsStr::new(name)),
        None => PathBuf::from(name),
    };
    std::fs::OpenOptions::new().read(true).custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC).open(path).map(Fd).map_err(io_errno)
}

/// `mkdirat` then open it (an existing directory is fine, a symlink is not).
/// A directory made here gets `mode` (not masked by the umask).
fn make_dir(dir: &Fd, name: &str, mode: u32) -> Result<(Fd, bool), Errno> {
    let made = match mkdirat(Some(dir.raw()), name, Mode::from_bits_truncate(mode)) {
        Ok(()) => true,
        Err(Errno::EEXIST) => false,
        Err(e) => return Err(e),
    };
    let fd = open_dir(Some(dir), name)?;
    if made {
        fchmod(fd.raw(), Mode::from_bits_truncate(mode))?;
    }
    Ok((fd, made))
}

/// A directory that must be root's with exactly `mode`.
fn root_dir(dir: &Fd, name: &str, mode: u32) -> Result<Fd, Errno> {
    let (fd, _) = make_dir(dir, name, mode)?;
    let st = fstat(fd.raw())?;
    if st.st_uid != 0 || st.st_gid != 0 {
        fchown(&fd, Some(0), Some(0))?;
    }
    if st.st_mode & 0o7777 != mode {
        fchmod(fd.raw(), Mode::from_bits_truncate(mode))?;
    }
    Ok(fd)
}

/// Mount the node store ([`devices::STORE`]) unless it is mounted: a small
/// tmpfs, `nosuid,noexec`, without `nodev` (its nodes must open).
pub fn mount_dev_store() -> Result<(), PrepareError> {
    let store = devices::STORE;
    if crate::common::files::is_mountpoint(store) {
        return Ok(());
    }
    std::fs::create_dir_all(store).map_err(|e| PrepareError {
        what: "mkdir",
        path: store.into(),
        errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
    })?;
    let mut data: heapless::String<48> = heapless::String::new();
    let _ = fmt::write(&mut data, format_args!("mode={DIR_MODE:o},size={STORE_SIZE}"));
    mount(Some("tmpfs"), store, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC, Some(data.as_str())).map_err(fail("mount tmpfs", store))
}

/// The outside uid and gid of the container's process.
fn outside(plan: &Plan) -> Option<(u32, u32)> {
    let base = plan.ids.outside_base;
    Some((base.checked_add(plan.ids.uid)?, base.checked_add(plan.ids.gid)?))
}

/// Make everything the plan needs on the host: the granted nodes, the
/// volumes. Idempotent: a restart finds what an earlier start made. The
/// volumes whose ids are not marked complete in the container's range are
/// returned: shift them ([`shift::run`]) and prepare again before the start.
pub fn prepare(plan: &Plan) -> Result<Vec<shift::Job>, PrepareError> {
    let name = plan.name.as_str();
    let Some((uid, gid)) = outside(plan) else {
        return Err(PrepareError { what: "ids", path: name.into(), errno: Errno::ERANGE });
    };
    if plan.nodes.iter().any(|n| n.granted) {
        nodes(plan, uid, gid)?;
    }
    let mut jobs = Vec::new();
    for v in &plan.volumes {
        if let Some(j) = volume(plan, v, uid, gid)? {
            jobs.push(j);
        }
    }
    Ok(jobs)
}

fn nodes(plan: &Plan, uid: u32, gid: u32) -> Result<(), PrepareError> {
    let name = plan.name.as_str();
    mount_dev_store()?;
    let store = open_dir(None, devices::STORE).map_err(fail("open", devices::STORE))?;
    let dir = root_dir(&store, name, DIR_MODE).map_err(fail("mkdir", name))?;
    for n in plan.nodes.iter().filter(|n| n.granted) {
        let path = n.host.as_str();
        // The plan names `<store>/<container>/<node>`; make exactly that.
        let leaf = path
            .strip_prefix(devices::STORE)
            .and_then(|r| r.strip_prefix('/'))
            .and_then(|r| r.strip_prefix(name))
            .and_then(|r| r.strip_prefix('/'))
            .filter(|l| !l.is_empty() && !l.contains('/'))
            .ok_or_else(|| PrepareError { what: "node path", path: path.into(), errno: Errno::EINVAL })?;
        match unlinkat(Some(dir.raw()), leaf, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(fail("unlink", path)(e)),
        }
        let uevent = std::fs::read_to_string(devices::uevent_path(n.major, n.minor)).ok();
        devices::check_on_device(n.major, n.minor, n.path.as_str(), uevent.as_deref()).map_err(|why| PrepareError {
            what: "device check",
            path: why,
            errno: Errno::EPERM,
        })?;
        let dev = makedev(u64::from(n.major), u64::from(n.minor));
        // Made 0000, owned, then given its mode: never open to anyone else.
        mknodat(Some(dir.raw()), leaf, SFlag::S_IFCHR, Mode::empty(), dev).map_err(fail("mknod", path))?;
        chown_at(&dir, OsStr::new(leaf), Some(uid), Some(gid)).map_err(fail("chown", path))?;
        nix::sys::stat::fchmodat(Some(dir.raw()), leaf, Mode::from_bits_truncate(n.mode), nix::sys::stat::FchmodatFlags::FollowSymlink)
            .map_err(fail("chmod", path))?;
    }
    Ok(())
}

fn volume(plan: &Plan, v: &str, uid: u32, gid: u32) -> Result<Option<shift::Job>, PrepareError> {
    let name = plan.name.as_str();
    let path =
        super::mounts::volume_path(name, v).ok_or_else(|| PrepareError { what: "volume path", path: format!("{VOLUMES}/{name}/{v}"), errno: Errno::EINVAL })?;
    let path = path.as_str();
    let (parent, leaf) = VOLUMES.rsplit_once('/').unwrap_or(("", VOLUMES));
    let top = open_dir(None, if parent.is_empty() { "/" } else { parent }).map_err(fail("open", parent))?;
    let volumes = root_dir(&top, leaf, VOLUMES_DIR_MODE).map_err(fail("mkdir", VOLUMES))?;
    let dir = root_dir(&volumes, name, VOLUMES_DIR_MODE).map_err(fail("mkdir", path))?;
    let (fd, made) = make_dir(&dir, v, VOLUME_MODE).map_err(fail("open volume", path))?;
    if made {
        fchown(&fd, Some(uid), Some(gid)).map_err(fail("chown", path))?;
    }
    let base = plan.ids.outside_base;
    let container_dir = std::path::Path::new(VOLUMES).join(name);
    if !shift::needed(shift::read_marker(&container_dir, v), base) {
        return Ok(None);
    }
    Ok(Some(shift::Job { dir: container_dir, volume: v.to_owned(), to: base }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_what_and_where() {
        let e = PrepareError { what: "mknod", path: "/run/berth/dev/probe/rng0".into(), errno: Errno::EPERM };
        assert_eq!(e.to_string(), "mknod /run/berth/dev/probe/rng0: Operation not permitted (EPERM)");
    }
}
