//! The thin seam of raw system calls that no safe wrapper covers.
//!
//! It must not decide anything: which call to make, and with what, is the
//! caller's; each function makes its call and returns the error.
//!
//! Every `unsafe` block of berth's boot path lives here, one small function per
//! call, each with its own error and a SAFETY note. Everything else goes
//! through `nix`'s safe wrappers.

pub mod cgroup;
pub mod container;
mod fds;
pub mod landlock;
pub mod mount;
pub mod net;
pub mod physmem;
pub mod quota;

pub use fds::{inherited_fd, pass_fd_in_child};
pub use net::interface_up;

use nix::errno::Errno;
use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `finit_module(2)` flag: the file is compressed and the kernel decompresses it.
pub const MODULE_INIT_COMPRESSED_FILE: libc::c_uint = 4;

/// Load a kernel module from an open file.
pub fn finit_module(fd: BorrowedFd<'_>, params: &CStr, flags: libc::c_uint) -> Result<(), Errno> {
    // SAFETY: `fd` is a valid open descriptor for the duration of the call and
    // `params` is a NUL-terminated string that outlives it; the kernel reads both.
    let r = unsafe { libc::syscall(libc::SYS_finit_module, fd.as_raw_fd(), params.as_ptr(), flags) };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// Make a command's child start with no signal blocked: PID 1 blocks every
/// signal it reads from its signalfd, and a mask survives fork and exec.
pub fn unblock_signals_in_child(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the hook runs in the child between fork and exec; it only calls
    // pthread_sigmask on a stack value, which is async-signal-safe and does
    // not allocate.
    unsafe {
        cmd.pre_exec(|| nix::sys::signal::SigSet::empty().thread_set_mask().map_err(std::io::Error::from));
    }
}

/// This process's CPU niceness for background work (the stager): the loop
/// and the containers (niceness 0) get about nine tenths of a busy CPU.
pub const BACKGROUND_NICE: i32 = 10;
/// `IOPRIO_CLASS_BE` at its lowest level (7): best effort, after everyone
/// else at the same class, never starved as the idle class could be.
const BACKGROUND_IOPRIO: libc::c_int = (2 << 13) | 7;

/// Lower this process's CPU and I/O priority for work that must not
/// compete with PID 1's loop ([`BACKGROUND_NICE`], best-effort I/O level 7).
pub fn background_priority() -> Result<(), Errno> {
    // SAFETY: setpriority on this process (who 0) with a plain value; no
    // pointer is passed.
    let r = unsafe { libc::setpriority(libc::PRIO_PROCESS as _, 0, BACKGROUND_NICE) };
    Errno::result(r)?;
    // SAFETY: ioprio_set(IOPRIO_WHO_PROCESS = 1, this process, value); plain
    // integers only.
    let r = unsafe { libc::syscall(libc::SYS_ioprio_set, 1 as libc::c_int, 0 as libc::c_int, BACKGROUND_IOPRIO) };
    Errno::result(r).map(drop)
}

/// `LOOP_CTL_GET_FREE` on /dev/loop-control.
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
/// `LOOP_CONFIGURE` (Linux 5.8+): attach and configure in one call.
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
/// `LO_FLAGS_READ_ONLY`.
const LO_FLAGS_READ_ONLY: u32 = 1;
/// `LO_FLAGS_AUTOCLEAR`: detach when the last user closes the device.
const LO_FLAGS_AUTOCLEAR: u32 = 4;

/// `struct loop_info64` from the kernel's UAPI.
#[repr(C)]
struct LoopInfo64 {
    device: u64,
    inode: u64,
    rdevice: u64,
    offset: u64,
    sizelimit: u64,
    number: u32,
    encrypt_type: u32,
    encrypt_key_size: u32,
    flags: u32,
    file_name: [u8; 64],
    crypt_name: [u8; 64],
    encrypt_key: [u8; 32],
    init: [u64; 2],
}

/// `struct loop_config` from the kernel's UAPI.
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

/// The number of a free loop device.
pub fn loop_get_free(ctl: BorrowedFd<'_>) -> Result<u32, Errno> {
    // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a number.
    let r = unsafe { libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_GET_FREE as _) };
    u32::try_from(r).map_err(|_| Errno::last())
}

/// Attach `backing` to the loop device `dev`, read-only, detached by the
/// kernel once its last user (the dm-verity mapping) closes it.
pub fn loop_configure_ro(dev: BorrowedFd<'_>, backing: BorrowedFd<'_>, block_size: u32) -> Result<(), Errno> {
    let fd = u32::try_from(backing.as_raw_fd()).map_err(|_| Errno::EBADF)?;
    // SAFETY: LoopConfig is plain old data; all-zero is valid.
    let mut cfg: LoopConfig = unsafe { core::mem::zeroed() };
    cfg.fd = fd;
    cfg.block_size = block_size;
    cfg.info.flags = LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR;
    // SAFETY: `cfg` is a valid loop_config that outlives the call; the kernel
    // only reads it.
    let r = unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CONFIGURE as _, &cfg) };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// Device-mapper commands berth uses.
#[derive(Debug, Clone, Copy)]
pub enum DmCmd {
    DevCreate = 3,
    DevRemove = 4,
    DevSuspend = 6,
    TableLoad = 9,
    TargetMsg = 14,
}

/// One device-mapper ioctl on /dev/mapper/control. `buf` starts with a
/// `struct dm_ioctl` whose `data_size` equals `buf.len()`; the kernel writes
/// its reply into the same buffer.
pub fn dm_ioctl(ctl: BorrowedFd<'_>, cmd: DmCmd, buf: &mut [u8]) -> Result<(), Errno> {
    // _IOWR(0xfd, cmd, struct dm_ioctl): size 312.
    let req: libc::c_ulong = 0xC138_FD00 | cmd as libc::c_ulong;
    let declared = buf.get(12..16).and_then(|s| s.try_into().ok()).map(u32::from_ne_bytes);
    if buf.len() < 312 || declared != Some(buf.len() as u32) {
        return Err(Errno::EINVAL);
    }
    // SAFETY: `buf` is a valid, writable buffer of exactly the size its header
    // declares, alive across the call; the kernel reads and writes within it.
    let r = unsafe { libc::ioctl(ctl.as_raw_fd(), req as _, buf.as_mut_ptr()) };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// `WDIOC_KEEPALIVE`: `_IOR('W', 5, int)`.
const WDIOC_KEEPALIVE: u32 = 0x8004_5705;
/// `WDIOC_SETTIMEOUT`: `_IOWR('W', 6, int)`.
const WDIOC_SETTIMEOUT: u32 = 0xC004_5706;

/// Set a watchdog's timeout in seconds; the driver may round it: returns
/// the timeout in force.
pub fn watchdog_set_timeout(dev: BorrowedFd<'_>, seconds: i32) -> Result<i32, Errno> {
    let mut t: libc::c_int = seconds;
    // SAFETY: `dev` is an open watchdog device; the kernel reads and writes
    // one int through the pointer, which lives across the call.
    let r = unsafe { libc::ioctl(dev.as_raw_fd(), WDIOC_SETTIMEOUT as _, &mut t) };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(t)
    }
}

/// Pet a watchdog.
pub fn watchdog_keepalive(dev: BorrowedFd<'_>) -> Result<(), Errno> {
    let mut unused: libc::c_int = 0;
    // SAFETY: as above; the argument is an int the kernel may write.
    let r = unsafe { libc::ioctl(dev.as_raw_fd(), WDIOC_KEEPALIVE as _, &mut unused) };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// `struct open_how` of `openat2(2)`.
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// `RESOLVE_NO_XDEV | RESOLVE_NO_MAGICLINKS | RESOLVE_IN_ROOT`.
const RESOLVE_CONFINED: u64 = 0x01 | 0x02 | 0x10;

/// Open `path` read-only (non-blocking, close-on-exec, no controlling
/// terminal) as if `root` were `/`: every component, symlinks included,
/// resolves inside `root`'s mount, never above it or into another mount
/// (`openat2` with `RESOLVE_IN_ROOT | RESOLVE_NO_XDEV |
/// RESOLVE_NO_MAGICLINKS`, Linux 5.6; `ENOSYS` before).
pub fn open_in_root(root: BorrowedFd<'_>, path: &CStr) -> Result<std::os::fd::OwnedFd, Errno> {
    let flags = (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY) as u64;
    openat2(root, path, &OpenHow { flags, mode: 0, resolve: RESOLVE_CONFINED })
}

/// `openat2(root, path, how)`: one system call, no allocation
/// (async-signal-safe).
fn openat2(root: BorrowedFd<'_>, path: &CStr, how: &OpenHow) -> Result<std::os::fd::OwnedFd, Errno> {
    use std::os::fd::FromRawFd;
    // SAFETY: `path` is NUL-terminated and `how` a valid open_how whose size
    // is passed; both outlive the call.
    let r = unsafe { libc::syscall(libc::SYS_openat2, root.as_raw_fd(), path.as_ptr(), how as *const OpenHow, core::mem::size_of::<OpenHow>()) };
    if r < 0 {
        return Err(Errno::last());
    }
    let fd = libc::c_int::try_from(r).map_err(|_| Errno::EBADF)?;
    // SAFETY: openat2 just returned this descriptor; nothing else owns it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// `RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS | RESOLVE_IN_ROOT`.
const RESOLVE_NO_LINKS_IN_ROOT: u64 = 0x02 | 0x04 | 0x10;

/// `openat2(root, path, flags | O_CLOEXEC, mode)` with `RESOLVE_IN_ROOT |
/// RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`: `path` resolves as if
/// `root` were `/` and a symlink in any component (the last included) is
/// `ELOOP`, never followed. Mounts may be crossed. Async-signal-safe: one
/// system call, no allocation (used between fork and exec).
pub fn open_no_links(root: BorrowedFd<'_>, path: &CStr, flags: libc::c_int, mode: u32) -> Result<std::os::fd::OwnedFd, Errno> {
    let how = OpenHow { flags: (flags | libc::O_CLOEXEC) as u64, mode: u64::from(mode), resolve: RESOLVE_NO_LINKS_IN_ROOT };
    openat2(root, path, &how)
}

/// `open(path, O_PATH | O_DIRECTORY | O_CLOEXEC)`. Async-signal-safe.
pub fn open_dir_path(path: &CStr) -> Result<std::os::fd::OwnedFd, Errno> {
    use std::os::fd::FromRawFd;
    // SAFETY: `path` is NUL-terminated and outlives the call.
    let r = unsafe { libc::open(path.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    if r < 0 {
        return Err(Errno::last());
    }
    // SAFETY: open just returned this descriptor; nothing else owns it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(r) })
}

/// `waitpid(-1, WNOHANG)` (or blocking without `nohang`) returning the raw
/// status word: nix's decoder turns a child killed by a signal it has no
/// name for (a real-time signal) into an error after the kernel has already
/// reaped the child, and that exit would be lost. [`crate::supervise::reap`]
/// decodes the word itself. `Ok(None)`: children exist, none has ended.
pub fn wait_any(nohang: bool) -> Result<Option<(nix::unistd::Pid, libc::c_int)>, Errno> {
    let mut status: libc::c_int = 0;
    let flags = if nohang { libc::WNOHANG } else { 0 };
    // SAFETY: `status` is a valid, writable int on our stack for the whole
    // call; waitpid writes at most that one int.
    let pid = unsafe { libc::waitpid(-1, &mut status, flags) };
    match pid {
        p if p < 0 => Err(Errno::last()),
        0 => Ok(None),
        p => Ok(Some((nix::unistd::Pid::from_raw(p), status))),
    }
}
