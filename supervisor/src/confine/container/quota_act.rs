//! Volume quotas, the act: probe the data partition once per release,
//! gate the release's containers by [`quota::decide`] and
//! [`quota::plan_release`], and tag and limit each volume before its
//! container starts. The decisions are [`quota`]'s; the calls are
//! [`crate::sys::quota`]'s.
//!
//! It must not decide anything itself: whether a container may start without
//! its quota is [`quota`]'s decision, acted on as given.

use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;

use super::quota::{self, Decision, Partition, Volumes};
use crate::common::log::Event;
use crate::common::{files::errno_text, names::DATA};
use crate::release::manifest::Manifest;

fn io(e: std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// `/data`, for `quotactl_fd`.
fn open_data() -> Result<OwnedFd, Errno> {
    std::fs::File::open(DATA).map(OwnedFd::from).map_err(io)
}

/// `/`, `O_PATH`: the root [`crate::sys::open_no_links`] resolves in.
fn open_root() -> Result<OwnedFd, Errno> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().read(true).custom_flags(libc::O_PATH | libc::O_DIRECTORY).open("/").map(OwnedFd::from).map_err(io)
}

/// Whether the data partition enforces project quotas (`Err`: why not),
/// and its size.
#[allow(clippy::useless_conversion)] // `c_ulong` is 32 bits on armv7
fn probe() -> (Result<(), String>, Option<Partition>) {
    let part = nix::sys::statvfs::statvfs(DATA)
        .ok()
        .map(|s| Partition { bytes: u64::from(s.blocks()).saturating_mul(u64::from(s.fragment_size())), inodes: u64::from(s.files()) });
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    if !quota::mounted_with_prjquota(&mountinfo, DATA) {
        return (Err(format!("{DATA} is not mounted with prjquota (the filesystem lacks the project and quota features?)")), part);
    }
    let on = open_data().and_then(|fd| crate::sys::quota::project_quota_on(fd.as_fd()));
    match on {
        Ok(()) => (Ok(()), part),
        Err(Errno::ENOSYS) => (Err("the kernel has no quotactl_fd (Linux 5.14)".into()), part),
        Err(e) => (Err(format!("project quota accounting is off on {DATA}: {}", errno_text(e))), part),
    }
}

/// The verdict for the containers of one release.
pub struct Gate {
    decision: Decision,
    /// Why the volumes do not fit (with enforcement only).
    fit: Option<String>,
}

impl Gate {
    /// Probe the partition and plan the whole release; one `volume.quota`
    /// event says what holds.
    pub fn for_release(manifests: &[Manifest], settings: &quota::Settings) -> Gate {
        let (probe, part) = probe();
        let mode = settings.quota.name();
        let decision = quota::decide(settings.quota, probe);
        let mut fit = None;
        match &decision {
            Decision::Enforce => {
                let part = part.unwrap_or(Partition { bytes: 0, inodes: 0 });
                match quota::plan_release(manifests, settings, part) {
                    Ok(c) => Event::info("volume.quota")
                        .kv("mode", mode)
                        .kv("volumes", c.volumes)
                        .kv("quota_mib", c.bytes >> 20)
                        .kv("inodes", c.inodes)
                        .kv("reserve_mib", settings.reserve_mib)
                        .kv("partition_mib", part.bytes >> 20)
                        .kv("result", "ok")
                        .emit(),
                    Err(e) => {
                        Event::error("volume.quota").kv("mode", mode).kv("result", "error").kv("error", &e).emit();
                        fit = Some(e);
                    }
                }
            }
            Decision::Downgrade(why) => Event::warn("volume.quota").kv("mode", mode).kv("result", "downgrade").kv("reason", why).emit(),
            Decision::Refuse(why) => Event::error("volume.quota").kv("mode", mode).kv("result", "error").kv("error", why).emit(),
        }
        Gate { decision, fit }
    }

    /// The quotas a container starts with, or why it may not start. With a
    /// downgrade, volumes of the default size start unlimited (empty).
    pub fn admit(&self, volumes: Volumes) -> Result<Volumes, String> {
        if volumes.is_empty() {
            return Ok(volumes);
        }
        match (&self.decision, &self.fit) {
            (Decision::Enforce, None) => Ok(volumes),
            (Decision::Enforce, Some(e)) => Err(e.clone()),
            (Decision::Refuse(why), _) => Err(format!("the board requires volume quotas: {why}")),
            (Decision::Downgrade(why), _) => match volumes.iter().find(|v| v.explicit) {
                Some(v) => Err(format!("volume {} sets a size, and quotas are unavailable: {why}", v.volume)),
                None => Ok(Volumes::new()),
            },
        }
    }
}

/// Tag each volume of `container` with its project id (and the inherit
/// flag) and set its limits. The volumes exist ([`super::prepare`] made
/// them); each is opened without following a symlink.
pub fn apply(container: &str, volumes: &Volumes) -> Result<(), String> {
    if volumes.is_empty() {
        return Ok(());
    }
    let fs = open_data().map_err(|e| format!("open {DATA}: {}", errno_text(e)))?;
    let root = open_root().map_err(|e| format!("open /: {}", errno_text(e)))?;
    for q in volumes {
        let path = super::mounts::volume_path(container, &q.volume).ok_or_else(|| format!("volume {} has no valid path", q.volume))?;
        let shown = path.as_str();
        let fail = |what: &str, e: Errno| format!("{what} {shown}: {}", errno_text(e));
        let dir = crate::sys::open_no_links(root.as_fd(), path.as_cstr(), libc::O_RDONLY | libc::O_DIRECTORY, 0).map_err(|e| fail("open", e))?;
        let (projid, flags) = crate::sys::quota::project_of(dir.as_fd()).map_err(|e| fail("project of", e))?;
        if projid != q.projid || flags & crate::sys::quota::FS_XFLAG_PROJINHERIT == 0 {
            crate::sys::quota::set_project(dir.as_fd(), q.projid).map_err(|e| fail("set project", e))?;
        }
        let blocks = q.bytes / crate::sys::quota::QUOTA_BLOCK;
        crate::sys::quota::set_project_limits(fs.as_fd(), q.projid, blocks, q.inodes).map_err(|e| fail("set quota", e))?;
        let used = crate::sys::quota::project_usage(fs.as_fd(), q.projid).map(|u| u.0).unwrap_or(0);
        Event::info("volume.quota")
            .kv("name", container)
            .kv("volume", &q.volume)
            .kv("projid", q.projid)
            .kv("bytes", q.bytes)
            .kv("inodes", q.inodes)
            .kv("used", used)
            .kv("result", "ok")
            .emit();
    }
    Ok(())
}
