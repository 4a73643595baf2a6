//! A release's images on the device: mapped (loop + dm-verity) and mounted
//! read-only under [`current::MOUNTS`], and unmapped when the release that
//! needed them does not run after all.
//!
//! It must not decide which release runs (the store does) nor reach into the loop.
//!
//! Mapping happens at boot for the booted release and, for an update, while
//! it is staged (in the stager, [`crate::release::stager`], outside PID 1's loop;
//! loop devices, device-mapper and mounts are global): before the switch, so the switch only stops the old run and
//! starts the new one, and an image that cannot be mapped refuses the update
//! before anything changes. The update's new programs are also read once
//! through their verified mounts then ([`warm`]), so the first exec after
//! the switch finds their blocks checked and cached. Unmapping (an update refused after its images
//! were mapped, a release rolled back) cannot wait for the containers still
//! using the image to end: the mount is detached lazily, the device-mapper
//! device removed deferred (gone when its last user closes it) and its loop
//! device clears itself when device-mapper lets go of it
//! ([`crate::release::verity::remove`]). Nothing is left mapped once those containers
//! are gone.

use crate::common::files::{errno_text, is_mountpoint};
use crate::common::log::Event;
use crate::release::manifest::Digest;
use crate::release::{current, Release};
use crate::sys::mount::{self, SysMounter};
use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};

/// How long a new device node may take to appear.
const NODE_WAIT_MS: u32 = 2_000;

/// What [`map`] did.
#[derive(Debug, Default)]
pub struct Mapped {
    /// Images mapped and mounted by this call (the others were already).
    pub new: Vec<Digest>,
    /// Images that could not be (each logged).
    pub failed: usize,
}

/// Map every image of `release` through dm-verity and mount it read-only,
/// skipping those already mounted (an update keeps the running release's).
/// A failure is logged per image; the others go on.
pub fn map(release: &Release) -> Mapped {
    map_announcing(release, &mut |_| {})
}

/// [`map`], calling `before` with each image it is about to map (the
/// stager tells PID 1, which unmaps them if the stager dies half-way).
pub fn map_announcing(release: &Release, before: &mut dyn FnMut(&Digest)) -> Mapped {
    let mut done = Mapped::default();
    for img in release.images.iter() {
        if is_mountpoint(&current::mount_path(&img.sha256)) {
            continue;
        }
        before(&img.sha256);
        if map_one(img) {
            done.new.push(img.sha256);
        } else {
            done.failed += 1;
        }
    }
    done
}

fn map_one(img: &crate::release::Image) -> bool {
    let file = current::image_path(&img.sha256);
    let name = current::dm_name(&img.sha256);
    if let Err(e) = crate::release::faults::check(crate::release::faults::Kind::Map) {
        Event::error("image.verity").kv("image", &name).kv("step", "fault").result(&Err::<(), _>(e)).emit();
        return false;
    }
    let dev = match crate::release::verity::open(&file, &name, img) {
        Ok(d) => d,
        Err((step, e)) => {
            Event::error("image.verity").kv("image", &name).kv("step", format_args!("{step:?}")).result(&Err::<(), _>(errno_text(e))).emit();
            return false;
        }
    };
    Event::info("image.verity").kv("image", &name).kv("loop", &dev.loop_path).kv("device", &dev.path).kv("result", "ok").emit();
    let target = current::mount_path(&img.sha256);
    let step = mount::MountStep {
        source: mount::text(&dev.path),
        target: mount::text(&target),
        fstype: mount::text("squashfs"),
        flags: MsFlags::MS_RDONLY | MsFlags::MS_NODEV | MsFlags::MS_NOSUID,
        data: mount::Text::new(),
        optional: false,
        retry_data: None,
    };
    let r = crate::common::files::wait_for(&dev.path, NODE_WAIT_MS).map(drop).and_then(|()| create_dirs(&target));
    if let Err(e) = r {
        Event::error("mount").kv("target", &target).result(&Err::<(), _>(errno_text(e))).emit();
        let _ = crate::release::verity::remove(&name);
        return false;
    }
    if mount::apply(core::slice::from_ref(&step), &mut SysMounter) != 0 {
        let _ = crate::release::verity::remove(&name);
        return false;
    }
    true
}

/// `mkdir -p` under /run.
fn create_dirs(path: &str) -> Result<(), Errno> {
    std::fs::create_dir_all(path).map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
}

/// Most bytes of one program [`warm`] reads.
const WARM_MAX: u64 = 32 << 20;

/// Read the programs of `release`'s containers whose image is one of
/// `images` through their verified mounts, so their blocks are checked by
/// dm-verity and cached now, while the update is staged, rather than by the
/// container's first exec after the switch. Only an optimisation: a program
/// that cannot be read is a warning and the update goes on (the container's
/// start meets the same error and reports it). The path resolves inside the
/// image only (symlinks included), and only a regular file is read.
pub fn warm(release: &Release, images: &[Digest]) {
    for m in release.containers.iter().filter(|m| images.contains(&m.image)) {
        let Some(program) = m.entry.argv.first() else {
            continue;
        };
        let name = current::dm_name(&m.image);
        match read_through(&current::mount_path(&m.image), program) {
            Ok(bytes) => Event::info("image.warm").kv("image", &name).kv("path", program).kv("bytes", bytes).kv("result", "ok").emit(),
            Err(e) => Event::warn("image.warm").kv("image", &name).kv("path", program).kv("result", "skipped").kv("reason", errno_text(e)).emit(),
        }
    }
}

/// Read the regular file `path` of the image mounted at `mount`, whole (at
/// most [`WARM_MAX`] bytes); the number of bytes read.
fn read_through(mount: &str, path: &str) -> Result<u64, Errno> {
    use std::io::Read;
    use std::os::fd::AsFd;
    let io = |e: std::io::Error| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
    let root = std::fs::File::open(mount).map_err(io)?;
    let c = std::ffi::CString::new(path).map_err(|_| Errno::EINVAL)?;
    let file = std::fs::File::from(crate::sys::open_in_root(root.as_fd(), &c)?);
    if !file.metadata().map_err(io)?.is_file() {
        return Err(Errno::EINVAL);
    }
    let mut buf = [0u8; 16 * 1024];
    let mut total = 0u64;
    let mut limited = file.take(WARM_MAX);
    loop {
        match limited.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => total = total.saturating_add(n as u64),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io(e)),
        }
    }
}

/// The images of `of` that `keep` does not use.
pub fn not_in(of: &Release, keep: &Release) -> Vec<Digest> {
    of.images.iter().map(|i| i.sha256).filter(|d| !keep.images.iter().any(|k| k.sha256 == *d)).collect()
}

/// Unmount and unmap `images` (see the module docs: containers still using
/// one keep it until they end). Each image is one `image.unmap` event.
pub fn unmap(images: &[Digest]) {
    for d in images {
        let target = current::mount_path(d);
        let name = current::dm_name(d);
        let r = match nix::mount::umount2(target.as_str(), MntFlags::MNT_DETACH) {
            Ok(()) | Err(Errno::EINVAL | Errno::ENOENT) => crate::release::verity::remove(&name),
            Err(e) => Err(e),
        };
        let _ = std::fs::remove_dir(target.as_str());
        Event::info("image.unmap").kv("image", &name).result(&r.map_err(errno_text)).emit();
    }
}
