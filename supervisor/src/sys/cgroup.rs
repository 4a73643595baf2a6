//! Raw `bpf(2)` for the cgroup v2 device filter: load a
//! `BPF_PROG_TYPE_CGROUP_DEVICE` program, attach it to a cgroup directory,
//! detach it, and list what is attached. No libbpf.
//!
//! It must not decide what a filter allows: `confine::cgroup` builds the
//! program; this module only loads, attaches, detaches and lists it.
//!
//! libc has no `union bpf_attr`: each command gets its own `#[repr(C)]`
//! prefix of it, zeroed, with explicit padding, and the kernel is told that
//! prefix's size (it treats the rest as zero). Pointers travel as `u64` on
//! every target, so the layout is the same on 32-bit arm.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;

/// `bpf(2)` commands.
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_DETACH: libc::c_int = 9;
const BPF_PROG_QUERY: libc::c_int = 16;

/// `BPF_PROG_TYPE_CGROUP_DEVICE`.
pub const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
/// `BPF_CGROUP_DEVICE` attach type.
pub const BPF_CGROUP_DEVICE: u32 = 6;
/// Attach flags.
pub const BPF_F_ALLOW_OVERRIDE: u32 = 1;
pub const BPF_F_ALLOW_MULTI: u32 = 2;
pub const BPF_F_REPLACE: u32 = 4;

/// The verifier log berth asks for when a load fails.
const LOG_SIZE: usize = 64 * 1024;

/// The `BPF_PROG_LOAD` part of `union bpf_attr` (through
/// `expected_attach_type`).
#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The `BPF_PROG_ATTACH`/`BPF_PROG_DETACH` part.
#[repr(C)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

/// The `BPF_PROG_QUERY` part (through `prog_cnt`, padded to 8).
#[repr(C)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    pad: u32,
}

const _: () = assert!(core::mem::size_of::<ProgLoadAttr>() == 72);
const _: () = assert!(core::mem::size_of::<AttachAttr>() == 20);
const _: () = assert!(core::mem::size_of::<QueryAttr>() == 32);

fn ptr_u64<T>(p: *const T) -> u64 {
    p as usize as u64
}

fn fd_u32(fd: BorrowedFd<'_>) -> Result<u32, Errno> {
    u32::try_from(fd.as_raw_fd()).map_err(|_| Errno::EBADF)
}

/// `bpf(cmd, attr, sizeof *attr)`.
///
/// # Safety
/// `attr` must be the kernel's layout of `cmd`'s part of `union bpf_attr`,
/// and every pointer in it valid for what the kernel does with it during the
/// call (read the instructions and license, write the log and id buffers).
unsafe fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> Result<libc::c_long, Errno> {
    // SAFETY: the caller vouches for the attribute; its size is passed.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, core::mem::size_of::<T>() as libc::c_uint) };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(r)
    }
}

/// A refused `BPF_PROG_LOAD`: the error and the verifier's log (empty when
/// the kernel wrote none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub errno: Errno,
    pub log: String,
}

impl core::fmt::Display for LoadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "BPF_PROG_LOAD: {}", self.errno)?;
        if !self.log.is_empty() {
            write!(f, "; verifier: {}", self.log.trim_end())?;
        }
        Ok(())
    }
}

fn prog_load_once(prog_type: u32, insns: &[u8], license: &CStr, name: &str, log: Option<&mut [u8]>) -> Result<OwnedFd, Errno> {
    if insns.is_empty() || !insns.len().is_multiple_of(8) {
        return Err(Errno::EINVAL);
    }
    let insn_cnt = u32::try_from(insns.len() / 8).map_err(|_| Errno::E2BIG)?;
    let mut prog_name = [0u8; 16];
    for (d, s) in prog_name.iter_mut().take(15).zip(name.bytes()) {
        *d = s;
    }
    let (log_level, log_size, log_buf) = match log {
        Some(buf) => (1, u32::try_from(buf.len()).map_err(|_| Errno::EINVAL)?, ptr_u64(buf.as_mut_ptr())),
        None => (0, 0, 0),
    };
    let mut attr = ProgLoadAttr {
        prog_type,
        insn_cnt,
        insns: ptr_u64(insns.as_ptr()),
        license: ptr_u64(license.as_ptr()),
        log_level,
        log_size,
        log_buf,
        kern_version: 0,
        prog_flags: 0,
        prog_name,
        prog_ifindex: 0,
        expected_attach_type: 0,
    };
    // SAFETY: `attr` has the kernel's layout; `insns` (insn_cnt * 8 bytes),
    // `license` (NUL-terminated) and the log buffer (log_size bytes, writable)
    // outlive the call.
    let fd = unsafe { bpf(BPF_PROG_LOAD, &mut attr)? };
    let fd = libc::c_int::try_from(fd).map_err(|_| Errno::EBADF)?;
    // SAFETY: on success BPF_PROG_LOAD returns a new descriptor we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `BPF_PROG_LOAD` of `insns` (the `struct bpf_insn` wire form) as a program
/// of `prog_type`, named `name` (first 15 bytes). On failure the load is
/// repeated with a log buffer so the error carries the verifier's message.
pub fn prog_load(prog_type: u32, insns: &[u8], license: &CStr, name: &str) -> Result<OwnedFd, LoadError> {
    match prog_load_once(prog_type, insns, license, name, None) {
        Ok(fd) => Ok(fd),
        Err(first) => {
            let mut buf = vec![0u8; LOG_SIZE];
            match prog_load_once(prog_type, insns, license, name, Some(&mut buf)) {
                // Loaded the second time: the first failure was transient.
                Ok(fd) => Ok(fd),
                Err(errno) => {
                    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
                    let log = String::from_utf8_lossy(buf.get(..end).unwrap_or_default()).into_owned();
                    // ENOSPC means the log did not fit; the first error is the real one.
                    let errno = if errno == Errno::ENOSPC { first } else { errno };
                    Err(LoadError { errno, log })
                }
            }
        }
    }
}

/// `BPF_PROG_ATTACH` of `prog` to the cgroup directory `cgroup`. With
/// [`BPF_F_REPLACE`], `replace` is the program swapped out atomically.
pub fn prog_attach(cgroup: BorrowedFd<'_>, prog: BorrowedFd<'_>, attach_type: u32, flags: u32, replace: Option<BorrowedFd<'_>>) -> Result<(), Errno> {
    let mut attr = AttachAttr {
        target_fd: fd_u32(cgroup)?,
        attach_bpf_fd: fd_u32(prog)?,
        attach_type,
        attach_flags: flags,
        replace_bpf_fd: replace.map(fd_u32).transpose()?.unwrap_or(0),
    };
    // SAFETY: `attr` has the kernel's layout and holds no pointers.
    unsafe { bpf(BPF_PROG_ATTACH, &mut attr) }.map(drop)
}

/// `BPF_PROG_DETACH` of `prog` from the cgroup directory `cgroup`.
pub fn prog_detach(cgroup: BorrowedFd<'_>, prog: BorrowedFd<'_>, attach_type: u32) -> Result<(), Errno> {
    let mut attr = AttachAttr { target_fd: fd_u32(cgroup)?, attach_bpf_fd: fd_u32(prog)?, attach_type, attach_flags: 0, replace_bpf_fd: 0 };
    // SAFETY: `attr` has the kernel's layout and holds no pointers.
    unsafe { bpf(BPF_PROG_DETACH, &mut attr) }.map(drop)
}

/// What `BPF_PROG_QUERY` reports for one cgroup and attach type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    /// The cgroup's attach flags (`BPF_F_ALLOW_*`).
    pub flags: u32,
    /// Ids of the programs attached to this cgroup itself (not inherited),
    /// at most the capacity asked for.
    pub ids: Vec<u32>,
    /// How many there are in all.
    pub count: u32,
}

/// `BPF_PROG_QUERY`: the programs of `attach_type` attached to `cgroup`,
/// up to `max` ids.
pub fn prog_query(cgroup: BorrowedFd<'_>, attach_type: u32, max: u32) -> Result<Attached, Errno> {
    let mut ids = vec![0u32; max as usize];
    let mut attr = QueryAttr {
        target_fd: fd_u32(cgroup)?,
        attach_type,
        query_flags: 0,
        attach_flags: 0,
        prog_ids: if max == 0 { 0 } else { ptr_u64(ids.as_mut_ptr()) },
        prog_cnt: max,
        pad: 0,
    };
    // SAFETY: `attr` has the kernel's layout; `prog_ids` points at `max`
    // writable u32s (or is NULL with a count of 0), alive across the call.
    unsafe { bpf(BPF_PROG_QUERY, &mut attr)? };
    ids.truncate(attr.prog_cnt.min(max) as usize);
    Ok(Attached { flags: attr.attach_flags, ids, count: attr.prog_cnt })
}
