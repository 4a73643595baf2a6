//! The crash-replay test hook (only with the `test-hooks` feature): with
//! `berth.logwrites=/dev/vdc` on the kernel command line, the data
//! partition is mounted through a device-mapper `log-writes` target that
//! records every write, flush and FUA the file system sends to the data
//! disk, in order, on the named log disk. The host replays that log onto
//! copies of the starting image to check every state a power cut could have
//! left (xtask's `crashreplay`).
//!
//! It must not change the shipped build: what acts is compiled only with
//! `test-hooks`.
//!
//! - [`at_data`]: before the data partition is mounted, create the target
//!   (`logw-data`, table `log-writes <data> <log>`) and mount it instead of
//!   the board's data device. The board's module list must carry
//!   `dm_log_writes` (the test variant adds it).
//! - [`mark`]: each store write of an update ([`crate::release::durable`])
//!   first puts a mark `step-N-KIND` into the log, in PID 1 and in the
//!   stager alike, so that the host knows how far the update had got at
//!   every point of the log.
//! - [`at_shutdown`]: after the data partition is unmounted, remove the
//!   target, which waits until every logged write is on the log disk.
//!
//! The shipped build has none of this (the parts that act are compiled
//! only with the feature); a failure here is logged and the boot goes on
//! with the board's own data device.

#![cfg_attr(not(feature = "test-hooks"), allow(dead_code, unused_imports))]

use crate::common::log::Event;
use crate::release::board::Board;
use crate::release::verity::{header, Request, DM_IOCTL_LEN};
use crate::sys;
use core::fmt::Write as _;
use nix::errno::Errno;
use std::os::fd::AsFd;
use std::sync::OnceLock;

/// Kernel command line key naming the log disk.
const KEY: &str = "berth.logwrites=";
/// The device-mapper name of the target.
pub const NAME: &str = "logw-data";
/// Tries of the removal at shutdown, 50 ms apart.
const REMOVE_TRIES: u32 = 60;
/// `struct dm_target_spec`.
const SPEC_LEN: usize = 40;

/// `berth.logwrites=/dev/NAME`: a device node path without `..`.
pub fn parse(cmdline: &str) -> Option<&str> {
    cmdline.split_ascii_whitespace().find_map(|t| t.strip_prefix(KEY)).filter(|p| p.starts_with("/dev/") && !p.contains("..") && p.len() < 64)
}

#[cfg(feature = "test-hooks")]
fn cmdline() -> String {
    let raw = crate::common::files::read_bounded("/proc/cmdline", 4096).unwrap_or_default();
    String::from_utf8_lossy(&raw).into_owned()
}

#[cfg(feature = "test-hooks")]
/// Whether this process logs marks (read once from the command line).
fn armed() -> bool {
    static ARMED: OnceLock<bool> = OnceLock::new();
    *ARMED.get_or_init(|| parse(&cmdline()).is_some())
}

/// A table-load request: one `log-writes` target over `sectors`.
pub fn table(sectors: u64, data: &str, log: &str) -> Result<Request, Errno> {
    let mut params: heapless::String<160> = heapless::String::new();
    write!(params, "{data} {log}").map_err(|_| Errno::ENAMETOOLONG)?;
    let plen = (params.len() + 1).next_multiple_of(8);
    let mut b = header(NAME, 0, 1, SPEC_LEN + plen)?;
    let mut spec = [0u8; SPEC_LEN];
    spec[8..16].copy_from_slice(&sectors.to_ne_bytes());
    spec[24..34].copy_from_slice(b"log-writes");
    b.extend_from_slice(&spec).map_err(|_| Errno::E2BIG)?;
    b.extend_from_slice(params.as_bytes()).map_err(|_| Errno::E2BIG)?;
    b.resize(DM_IOCTL_LEN + SPEC_LEN + plen, 0).map_err(|_| Errno::E2BIG)?;
    Ok(b)
}

/// A target-message request `mark TEXT` (a `struct dm_target_msg`: sector 0,
/// then the text).
pub fn mark_request(text: &str) -> Result<Request, Errno> {
    let mut msg: heapless::String<64> = heapless::String::new();
    write!(msg, "mark {text}").map_err(|_| Errno::ENAMETOOLONG)?;
    let len = (8 + msg.len() + 1).next_multiple_of(8);
    let mut b = header(NAME, 0, 0, len)?;
    b.extend_from_slice(&[0u8; 8]).map_err(|_| Errno::E2BIG)?;
    b.extend_from_slice(msg.as_bytes()).map_err(|_| Errno::E2BIG)?;
    b.resize(DM_IOCTL_LEN + len, 0).map_err(|_| Errno::E2BIG)?;
    Ok(b)
}

#[cfg(feature = "test-hooks")]
fn control() -> Result<std::fs::File, Errno> {
    std::fs::OpenOptions::new().read(true).write(true).open("/dev/mapper/control").map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
}

#[cfg(feature = "test-hooks")]
/// 512-byte sectors of a disk, from sysfs.
fn sectors(dev: &str) -> Result<u64, Errno> {
    let name = dev.rsplit('/').next().unwrap_or(dev);
    let text = crate::common::files::read_bounded(&format!("/sys/class/block/{name}/size"), 64).map_err(|_| Errno::ENODEV)?;
    String::from_utf8_lossy(&text).trim().parse().map_err(|_| Errno::EINVAL)
}

#[cfg(feature = "test-hooks")]
/// Create the target; its node (`/dev/dm-N`).
fn create(data: &str, log: &str, wait_ms: u32) -> Result<String, (&'static str, Errno)> {
    for dev in [data, log] {
        crate::common::files::wait_for(dev, wait_ms).map_err(|e| ("wait", e))?;
    }
    let n = sectors(data).map_err(|e| ("size", e))?;
    let ctl = control().map_err(|e| ("control", e))?;
    let mut req = header(NAME, 0, 0, 0).map_err(|e| ("create", e))?;
    sys::dm_ioctl(ctl.as_fd(), sys::DmCmd::DevCreate, &mut req).map_err(|e| ("create", e))?;
    let mut load = table(n, data, log).map_err(|e| ("table", e))?;
    sys::dm_ioctl(ctl.as_fd(), sys::DmCmd::TableLoad, &mut load).map_err(|e| ("load", e))?;
    let mut resume = header(NAME, 0, 0, 0).map_err(|e| ("resume", e))?;
    sys::dm_ioctl(ctl.as_fd(), sys::DmCmd::DevSuspend, &mut resume).map_err(|e| ("resume", e))?;
    let (_, minor) = crate::release::verity::dev_split(crate::release::verity::reply_dev(&resume).unwrap_or(0));
    let path = format!("/dev/dm-{minor}");
    crate::common::files::wait_for(&path, wait_ms).map_err(|e| ("wait", e))?;
    Ok(path)
}

#[cfg(feature = "test-hooks")]
/// With the hook armed, put the data partition on the log-writes target.
pub fn at_data(mut board: Board) -> Board {
    let line = cmdline();
    let Some(log) = parse(&line) else {
        return board;
    };
    let data = board.storage.data.device.to_string();
    match create(&data, log, board.storage.wait_ms) {
        Ok(path) => {
            Event::warn("logwrites.setup").kv("data", &data).kv("log", log).kv("device", &path).emit();
            board.storage.data.device.clear();
            let _ = board.storage.data.device.push_str(&path);
        }
        Err((step, e)) => Event::error("logwrites.setup").kv("step", step).kv("result", "error").kv("error", e).emit(),
    }
    board
}

#[cfg(feature = "test-hooks")]
/// Put `step-N-KIND` into the log (armed processes only; errors ignored:
/// the host finds a missing mark).
pub fn mark(n: u64, kind: &str) {
    if !armed() {
        return;
    }
    let mut text: heapless::String<48> = heapless::String::new();
    let _ = write!(text, "step-{n}-{kind}");
    if let (Ok(ctl), Ok(mut req)) = (control(), mark_request(&text)) {
        let _ = sys::dm_ioctl(ctl.as_fd(), sys::DmCmd::TargetMsg, &mut req);
    }
}

/// Unmount and unmap the images (mounted from files on the data
/// partition, they keep its file system alive after the unmount).
#[cfg(feature = "test-hooks")]
fn release_images() {
    let Ok(dir) = std::fs::read_dir(crate::release::current::MOUNTS) else {
        return;
    };
    for e in dir.flatten() {
        let name = e.file_name();
        let Some(short) = name.to_str() else { continue };
        let _ = nix::mount::umount2(&e.path(), nix::mount::MntFlags::MNT_DETACH);
        let _ = crate::release::verity::remove(&format!("berth-{short}"));
    }
}

#[cfg(feature = "test-hooks")]
/// Remove the target once the data partition is unmounted (the images
/// released first: they hold it): the kernel writes out whatever it has
/// not logged yet first, and the log ends with its own end mark.
pub fn at_shutdown() {
    if !armed() {
        return;
    }
    release_images();
    // With the images gone the data partition unmounts (if the first try
    // found it busy and left it read-only); the file system lets go of the
    // device once the loop devices have cleared themselves.
    let _ = nix::mount::umount2(crate::common::names::DATA, nix::mount::MntFlags::empty());
    let mut r = Err(Errno::EBUSY);
    for _ in 0..REMOVE_TRIES {
        r = control().and_then(|ctl| {
            let mut req = header(NAME, 0, 0, 0)?;
            sys::dm_ioctl(ctl.as_fd(), sys::DmCmd::DevRemove, &mut req)
        });
        if r != Err(Errno::EBUSY) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Event::info("logwrites.remove").result(&r.map_err(crate::common::files::errno_text)).emit();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_names_a_device_node() {
        assert_eq!(parse("quiet berth.logwrites=/dev/vdc x"), Some("/dev/vdc"));
        assert_eq!(parse("berth.logwrites=vdc"), None);
        assert_eq!(parse("berth.logwrites=/dev/../etc"), None);
        assert_eq!(parse("quiet"), None);
    }

    #[test]
    fn requests_are_laid_out_for_the_kernel() {
        let t = table(2048, "/dev/vdb", "/dev/vdc").unwrap();
        assert_eq!(t.len() % 8, 0);
        assert_eq!(u32::from_ne_bytes(t[12..16].try_into().unwrap()) as usize, t.len());
        assert_eq!(u32::from_ne_bytes(t[20..24].try_into().unwrap()), 1, "one target");
        assert_eq!(&t[DM_IOCTL_LEN + 8..DM_IOCTL_LEN + 16], &2048u64.to_ne_bytes());
        assert_eq!(&t[DM_IOCTL_LEN + 24..DM_IOCTL_LEN + 35], b"log-writes\0");
        assert_eq!(&t[DM_IOCTL_LEN + SPEC_LEN..DM_IOCTL_LEN + SPEC_LEN + 18], b"/dev/vdb /dev/vdc\0");
        let m = mark_request("step-3-sync").unwrap();
        assert_eq!(m.len() % 8, 0);
        assert_eq!(&m[DM_IOCTL_LEN..DM_IOCTL_LEN + 8], &[0u8; 8]);
        assert_eq!(&m[DM_IOCTL_LEN + 8..DM_IOCTL_LEN + 25], b"mark step-3-sync\0");
        assert_eq!(&m[48..48 + NAME.len()], NAME.as_bytes());
    }
}
