//! The thin seam of raw system calls that no safe wrapper covers.
//!
//! Every `unsafe` block of berth's boot path lives here, one small function per
//! call, each with its own error and a SAFETY note. Everything else goes
//! through `nix`'s safe wrappers.

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

/// Set IFF_UP on a network interface through `SIOCGIFFLAGS`/`SIOCSIFFLAGS`.
pub fn interface_up(sock: BorrowedFd<'_>, name: &str) -> Result<(), Errno> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ {
        return Err(Errno::EINVAL);
    }
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { core::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: `sock` is an open socket and `req` is a valid, NUL-terminated
    // ifreq that lives across the call; SIOCGIFFLAGS fills ifru_flags.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut req) } < 0 {
        return Err(Errno::last());
    }
    // SAFETY: the kernel just wrote ifru_flags, the active member for these ioctls.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: as above; SIOCSIFFLAGS reads ifru_flags.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS as _, &req) } < 0 {
        return Err(Errno::last());
    }
    Ok(())
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
