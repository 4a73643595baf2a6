//! Raw system calls of a container start that `nix` does not wrap safely.
//!
//! It must not decide what a container gets (confine plans that), and
//! nothing here may allocate: see below.
//!
//! Everything here may run in a child between fork and execve: no function
//! allocates, formats or takes a lock. The credential calls are raw system
//! calls on purpose: the child is a raw `clone` of a possibly multithreaded
//! supervisor, and the C library's `setresuid`/`setgroups` wrappers
//! synchronise every thread the library *believes* exists (a lock another
//! thread may have held at fork time). The kernel calls change the calling
//! thread only, which is the whole process in the child.

use core::ffi::{c_char, c_int, c_ulong, CStr};
use core::marker::PhantomData;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd};

use nix::errno::Errno;
use nix::unistd::Pid;

fn check(r: libc::c_long) -> Result<libc::c_long, Errno> {
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(r)
    }
}

/// Fork with `clone(flags | SIGCHLD)` and no new stack: the child runs on a
/// copy-on-write copy of the caller's stack, as with `fork`. `Ok(None)` in
/// the child, `Ok(Some(pid))` in the parent.
///
/// Only the flags word is passed; the pointer arguments are all zero, so the
/// per-architecture argument order of `clone` (x86_64 puts `child_tid`
/// before `tls`, arm and aarch64 the other way round) does not matter.
///
/// # Safety
/// The C library is not told about this fork (no `atfork` handlers, its
/// thread list and locks are copied as they are). Until it calls execve or
/// `_exit`, the child must only make async-signal-safe calls: no
/// allocation, no locks, no stdio, no thread functions, and it must never
/// return into code that assumes it is the parent.
pub unsafe fn clone_fork(flags: c_int) -> Result<Option<Pid>, Errno> {
    let word = (flags | libc::SIGCHLD) as c_ulong;
    // SAFETY: a stackless clone duplicates the caller like fork; the caller
    // upholds the child's restrictions (see above). The zero pointers mean
    // "no tid/tls handling".
    let r = unsafe { libc::syscall(libc::SYS_clone, word, 0usize, 0usize, 0usize, 0usize) };
    match check(r)? {
        0 => Ok(None),
        pid => Ok(Some(Pid::from_raw(pid as libc::pid_t))),
    }
}

/// `CLONE_INTO_CGROUP` (Linux 5.7): the child starts in the cgroup v2
/// directory `clone_args.cgroup` names.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `struct clone_args` through `cgroup` (`CLONE_ARGS_SIZE_VER2`, 88 bytes;
/// every field is 64-bit on every target).
#[repr(C)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const _: () = assert!(core::mem::size_of::<CloneArgs>() == 88);

/// Fork with `clone3(CLONE_INTO_CGROUP)`: the child is born in the cgroup v2
/// directory `cgroup` (any descriptor of it, `O_PATH` too), so it never has
/// to be moved there (a move takes the kernel's cgroup thread-group lock for
/// writing, which may wait for an RCU grace period). No new stack: the child
/// runs on a copy-on-write copy of the caller's, as with `fork`; its exit
/// signal is `SIGCHLD`. `Ok(None)` in the child, `Ok(Some(pid))` in the
/// parent.
///
/// A kernel without `clone3` says `ENOSYS`, one without `CLONE_INTO_CGROUP`
/// `E2BIG` (the larger struct) or `EINVAL`; a directory that is not a cgroup
/// v2 one `EBADF`.
///
/// # Safety
/// As [`clone_fork`]: the child may only make async-signal-safe calls until
/// it calls execve or `_exit`, and must never return into code that assumes
/// it is the parent.
pub unsafe fn clone_into_cgroup(cgroup: BorrowedFd<'_>) -> Result<Option<Pid>, Errno> {
    let dir = u64::try_from(cgroup.as_raw_fd()).map_err(|_| Errno::EBADF)?;
    let args = CloneArgs {
        flags: CLONE_INTO_CGROUP,
        pidfd: 0,
        child_tid: 0,
        parent_tid: 0,
        exit_signal: libc::SIGCHLD as u64,
        stack: 0,
        stack_size: 0,
        tls: 0,
        set_tid: 0,
        set_tid_size: 0,
        cgroup: dir,
    };
    // SAFETY: `args` is a valid clone_args of the size passed, alive across
    // the call (the kernel copies it before the child exists). With no stack
    // the call duplicates the caller like fork; the caller upholds the
    // child's restrictions (see above).
    let r = unsafe { libc::syscall(libc::SYS_clone3, &args as *const CloneArgs, core::mem::size_of::<CloneArgs>()) };
    match check(r)? {
        0 => Ok(None),
        pid => Ok(Some(Pid::from_raw(pid as libc::pid_t))),
    }
}

/// How a child got into its cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    /// Born in it (`clone3` with `CLONE_INTO_CGROUP`).
    Born,
    /// Not placed: the caller moves it (cgroup v1, no directory given).
    MovedV1,
    /// Not placed: the kernel refused `clone3` with `CLONE_INTO_CGROUP`
    /// with this error (remembered for the process's lifetime: later forks
    /// do not try again).
    MovedRefused(Errno),
}

/// What the kernel said to `CLONE_INTO_CGROUP` so far: 0 not tried, else
/// the refusing errno (positive), or -1 when it worked.
static INTO_CGROUP: core::sync::atomic::AtomicI32 = core::sync::atomic::AtomicI32::new(0);
const INTO_CGROUP_WORKS: i32 = -1;

/// Fork, born in the cgroup v2 directory `dir` when one is given and the
/// kernel allows it ([`clone_into_cgroup`]), else a plain fork
/// ([`clone_fork`]) whose child the caller must move. A refusal that means
/// "this kernel cannot" (`ENOSYS`, `E2BIG`, `EINVAL`, the first time) falls
/// back to the plain fork; any other `clone3` error is the cgroup's and is
/// returned with `true` (a failed plain fork with `false`).
///
/// # Safety
/// As [`clone_fork`].
pub unsafe fn fork_placed(dir: Option<BorrowedFd<'_>>) -> Result<(Option<Pid>, Placed), (bool, Errno)> {
    use core::sync::atomic::Ordering::Relaxed;
    let plain = |placed| {
        // SAFETY: passed on to the caller.
        unsafe { clone_fork(0) }.map(|r| (r, placed)).map_err(|e| (false, e))
    };
    let Some(dir) = dir else {
        return plain(Placed::MovedV1);
    };
    let known = INTO_CGROUP.load(Relaxed);
    if known > 0 {
        return plain(Placed::MovedRefused(Errno::from_raw(known)));
    }
    // SAFETY: passed on to the caller.
    match unsafe { clone_into_cgroup(dir) } {
        Ok(r) => {
            // Only the parent's copy matters; a store is async-signal-safe.
            INTO_CGROUP.store(INTO_CGROUP_WORKS, Relaxed);
            Ok((r, Placed::Born))
        }
        Err(e @ (Errno::ENOSYS | Errno::E2BIG | Errno::EINVAL)) if known == 0 => {
            INTO_CGROUP.store(e as i32, Relaxed);
            plain(Placed::MovedRefused(e))
        }
        Err(e) => Err((true, e)),
    }
}

/// `prlimit64(0, resource, {soft, hard}, NULL)`: 64-bit limits on 32-bit
/// targets too.
pub fn set_rlimit(resource: c_int, soft: u64, hard: u64) -> Result<(), Errno> {
    let new: [u64; 2] = [soft, hard];
    // SAFETY: `new` has the layout of `struct rlimit64` and lives across the
    // call; the old-value pointer is NULL.
    let r = unsafe { libc::syscall(libc::SYS_prlimit64, 0 as libc::pid_t, resource, new.as_ptr(), core::ptr::null_mut::<u64>()) };
    check(r).map(drop)
}

#[cfg(target_arch = "arm")]
const SYS_SETGROUPS: libc::c_long = libc::SYS_setgroups32;
#[cfg(not(target_arch = "arm"))]
const SYS_SETGROUPS: libc::c_long = libc::SYS_setgroups;
#[cfg(target_arch = "arm")]
const SYS_SETRESUID: libc::c_long = libc::SYS_setresuid32;
#[cfg(not(target_arch = "arm"))]
const SYS_SETRESUID: libc::c_long = libc::SYS_setresuid;
#[cfg(target_arch = "arm")]
const SYS_SETRESGID: libc::c_long = libc::SYS_setresgid32;
#[cfg(not(target_arch = "arm"))]
const SYS_SETRESGID: libc::c_long = libc::SYS_setresgid;

/// `setgroups(0, NULL)`: no supplementary groups (this thread only).
pub fn clear_groups() -> Result<(), Errno> {
    // SAFETY: a zero-length list; the pointer is not read.
    let r = unsafe { libc::syscall(SYS_SETGROUPS, 0 as c_int, core::ptr::null::<libc::gid_t>()) };
    check(r).map(drop)
}

/// `setresuid(uid, uid, uid)` (the 32-bit-id call on arm).
pub fn setresuid(uid: u32) -> Result<(), Errno> {
    // SAFETY: plain integer arguments.
    let r = unsafe { libc::syscall(SYS_SETRESUID, uid as libc::uid_t, uid as libc::uid_t, uid as libc::uid_t) };
    check(r).map(drop)
}

/// `setresgid(gid, gid, gid)` (the 32-bit-id call on arm).
pub fn setresgid(gid: u32) -> Result<(), Errno> {
    // SAFETY: plain integer arguments.
    let r = unsafe { libc::syscall(SYS_SETRESGID, gid as libc::gid_t, gid as libc::gid_t, gid as libc::gid_t) };
    check(r).map(drop)
}

fn prctl(option: c_int, a: c_ulong, b: c_ulong) -> Result<c_int, Errno> {
    // SAFETY: every option used here takes integer arguments only.
    let r = unsafe { libc::prctl(option, a, b, 0 as c_ulong, 0 as c_ulong) };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(r)
    }
}

/// `PR_CAPBSET_DROP`: remove one capability from the bounding set.
pub fn capbset_drop(cap: u32) -> Result<(), Errno> {
    prctl(libc::PR_CAPBSET_DROP, c_ulong::from(cap), 0).map(drop)
}

/// `PR_SET_SECUREBITS`.
pub fn set_securebits(bits: u32) -> Result<(), Errno> {
    prctl(libc::PR_SET_SECUREBITS, c_ulong::from(bits), 0).map(drop)
}

/// `PR_CAP_AMBIENT_CLEAR_ALL`.
pub fn ambient_clear_all() -> Result<(), Errno> {
    prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as c_ulong, 0).map(drop)
}

/// `PR_CAP_AMBIENT_RAISE` of one capability.
pub fn ambient_raise(cap: u32) -> Result<(), Errno> {
    prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_RAISE as c_ulong, c_ulong::from(cap)).map(drop)
}

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit sets as two 32-bit halves.
pub const CAPSET_VERSION: u32 = 0x2008_0522;

/// One half of the sets, as `struct __user_cap_data_struct`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CapData {
    pub effective: u32,
    pub permitted: u32,
    pub inheritable: u32,
}

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: c_int,
}

/// `capset` of the calling thread's effective, permitted and inheritable
/// sets (version 3: two 32-bit halves).
pub fn capset(data: &[CapData; 2]) -> Result<(), Errno> {
    let header = CapHeader { version: CAPSET_VERSION, pid: 0 };
    // SAFETY: `header` and `data` are valid `repr(C)` values with the kernel's
    // layout (version 3 reads two data structs), alive across the call.
    let r = unsafe { libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) };
    check(r).map(drop)
}

/// `capget` of a process (0: the caller).
pub fn capget(pid: libc::pid_t) -> Result<[CapData; 2], Errno> {
    let mut header = CapHeader { version: CAPSET_VERSION, pid };
    let mut data = [CapData::default(); 2];
    // SAFETY: as for capset; the kernel writes two data structs into `data`.
    let r = unsafe { libc::syscall(libc::SYS_capget, &mut header as *mut CapHeader, data.as_mut_ptr()) };
    check(r).map(|_| data)
}

/// `MOUNT_ATTR_*` bits of `mount_setattr(2)`.
pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub const MOUNT_ATTR_NODEV: u64 = 0x4;
pub const MOUNT_ATTR_NOEXEC: u64 = 0x8;

/// `struct mount_attr` (MOUNT_ATTR_SIZE_VER0).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `mount_setattr(AT_FDCWD, path, AT_RECURSIVE, {attr_set})` (Linux 5.12):
/// set attributes on a mount and every mount below it. Nothing is cleared,
/// so locked flags stay as they are.
pub fn mount_setattr_recursive(path: &CStr, attr_set: u64) -> Result<(), Errno> {
    let attr = MountAttr { attr_set, attr_clr: 0, propagation: 0, userns_fd: 0 };
    // SAFETY: `path` is NUL-terminated and `attr` a valid mount_attr whose
    // size is passed; both outlive the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::AT_RECURSIVE as libc::c_uint,
            &attr as *const MountAttr,
            core::mem::size_of::<MountAttr>(),
        )
    };
    check(r).map(drop)
}

/// The `ST_*` mount flags of the mount holding `path` (`ST_RDONLY` 1,
/// `ST_NOSUID` 2, `ST_NODEV` 4, `ST_NOEXEC` 8, `ST_NOATIME` 1024,
/// `ST_NODIRATIME` 2048, `ST_RELATIME` 4096), from `statvfs`. Read raw:
/// nix's `FsFlags` drops bits it has no name for on musl (`ST_RELATIME`).
/// Both C libraries fill `f_flag` from the kernel's `statfs` flags without
/// allocating.
pub fn mount_flags(path: &CStr) -> Result<u64, Errno> {
    // SAFETY: statvfs is plain old data; all-zero is a valid value.
    let mut buf: libc::statvfs = unsafe { core::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated, `buf` is writable and sized for the
    // call; both outlive it.
    let r = unsafe { libc::statvfs(path.as_ptr(), &mut buf) };
    if r < 0 {
        return Err(Errno::last());
    }
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    Ok(buf.f_flag as u64)
}

/// `close_range(first, last, flags)` (Linux 5.9; `CLOSE_RANGE_CLOEXEC`
/// 5.11).
pub fn close_range(first: u32, last: u32, flags: u32) -> Result<(), Errno> {
    // SAFETY: integer arguments; closing descriptors is what the caller asks.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, last, flags) };
    check(r).map(drop)
}

/// Has the reader of this pipe gone? (`poll` reports `POLLERR` on a write
/// end whose read end is closed everywhere.)
pub fn pipe_reader_gone(fd: BorrowedFd<'_>) -> bool {
    let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLOUT, revents: 0 };
    // SAFETY: one valid pollfd, alive across the call; zero timeout.
    let r = unsafe { libc::poll(&mut p, 1, 0) };
    r > 0 && p.revents & (libc::POLLERR | libc::POLLHUP) != 0
}

/// Every signal disposition back to `SIG_DFL`, the C library's reserved
/// real-time signals included (handlers are reset by execve anyway; ignored
/// signals, such as the `SIGPIPE` Rust programs ignore, would survive it).
pub fn reset_signal_handlers() -> Result<(), Errno> {
    // A kernel `struct sigaction` with SIG_DFL (0), no flags, no restorer and
    // an empty mask is all zeros on every architecture; 32 bytes cover the
    // largest layout (64-bit: handler, flags, restorer, 8-byte mask).
    let dfl = [0u64; 4];
    // The kernel's sigset size (64 signals).
    const SIGSET: usize = 8;
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: `dfl` is a zeroed kernel sigaction readable for the call;
        // no old action is requested.
        let r = unsafe { libc::syscall(libc::SYS_rt_sigaction, sig, dfl.as_ptr(), core::ptr::null_mut::<u64>(), SIGSET) };
        check(r)?;
    }
    Ok(())
}

/// A NULL-terminated array of at most `N - 1` string pointers borrowed from
/// `'a`, as execve takes `argv` and `envp`. Built before fork.
pub struct CPtrs<'a, const N: usize> {
    ptrs: [*const c_char; N],
    _borrow: PhantomData<&'a CStr>,
}

impl<'a, const N: usize> CPtrs<'a, N> {
    /// `None` when the strings do not fit with the trailing NULL.
    pub fn new<I: IntoIterator<Item = &'a CStr>>(strings: I) -> Option<Self> {
        let mut ptrs = [core::ptr::null::<c_char>(); N];
        let mut slots = ptrs.iter_mut();
        for s in strings {
            *slots.next()? = s.as_ptr();
        }
        // At least one slot must stay NULL.
        slots.next()?;
        Some(CPtrs { ptrs, _borrow: PhantomData })
    }
}

/// `execve(path, argv, envp)`. Returns only on failure.
pub fn execve<const A: usize, const E: usize>(path: &CStr, argv: &CPtrs<'_, A>, envp: &CPtrs<'_, E>) -> Errno {
    // SAFETY: `path` is NUL-terminated; `CPtrs` guarantees NULL-terminated
    // arrays of pointers to NUL-terminated strings borrowed for as long as
    // the arrays live, which covers the call.
    unsafe { libc::execve(path.as_ptr(), argv.ptrs.as_ptr(), envp.ptrs.as_ptr()) };
    Errno::last()
}

/// No seccomp filter flags (see [`install_filter`]).
pub const SECCOMP_FILTER_FLAG_NONE: libc::c_uint = 0;

/// Install a classic-BPF seccomp program on the calling thread.
///
/// The hook for the filter compiler in `crate::confine::seccomp`: it must be the last
/// step before execve, after `PR_SET_NO_NEW_PRIVS`, which is checked here
/// (`EPERM` when unset: the kernel would demand CAP_SYS_ADMIN instead).
/// No `SECCOMP_FILTER_FLAG_TSYNC`: the child of a container start has one
/// thread, and TSYNC changes the error convention (it returns a thread id).
/// An empty or longer-than-`u16` program is `EINVAL`.
pub fn install_filter(prog: &[libc::sock_filter]) -> Result<(), Errno> {
    // SAFETY: PR_GET_NO_NEW_PRIVS takes no pointer.
    let nnp = unsafe { libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0 as c_ulong, 0 as c_ulong, 0 as c_ulong, 0 as c_ulong) };
    if nnp != 1 {
        return Err(Errno::EPERM);
    }
    let len = u16::try_from(prog.len()).map_err(|_| Errno::EINVAL)?;
    if len == 0 {
        return Err(Errno::EINVAL);
    }
    let fprog = libc::sock_fprog { len: len as libc::c_ushort, filter: prog.as_ptr() as *mut libc::sock_filter };
    // SAFETY: `fprog` points at `prog`, `len` instructions long, both alive
    // across the call; the kernel copies the program.
    let r = unsafe { libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NONE, &fprog as *const libc::sock_fprog) };
    check(r).map(drop)
}

/// Open `path` write-only and write all of `bytes` in one `write` (a
/// `/proc` attribute takes its value whole), then close it.
pub fn write_once(path: &CStr, bytes: &[u8]) -> Result<(), Errno> {
    use nix::fcntl::{open, OFlag};
    let raw = open(path, OFlag::O_WRONLY | OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty())?;
    // SAFETY: `open` just returned this descriptor; nothing else owns it.
    let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
    match nix::unistd::write(&fd, bytes)? {
        n if n == bytes.len() => Ok(()),
        _ => Err(Errno::EIO),
    }
}

/// `_exit(code)`: end the process at once, without exit handlers or
/// destructors (the only way out of a forked child).
pub fn exit_now(code: c_int) -> ! {
    // SAFETY: _exit takes an integer and never returns; skipping handlers
    // and destructors is the point.
    unsafe { libc::_exit(code) }
}

/// One 32-bit word in a shared anonymous page: written by a start's
/// children (it stays shared across their forks), read by the supervisor.
/// Gone from a child at its `execve`, like every mapping.
#[derive(Debug)]
pub struct SharedWord {
    ptr: core::ptr::NonNull<core::sync::atomic::AtomicU32>,
}

/// Bytes of the mapping (one page on every supported architecture).
const SHARED_LEN: usize = 4096;

impl SharedWord {
    /// A new zeroed word.
    pub fn new() -> Result<SharedWord, Errno> {
        // SAFETY: a fresh anonymous mapping at an address the kernel picks;
        // nothing else refers to it.
        let p = unsafe { libc::mmap(core::ptr::null_mut(), SHARED_LEN, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1, 0) };
        if p == libc::MAP_FAILED {
            return Err(Errno::last());
        }
        let ptr = core::ptr::NonNull::new(p.cast::<core::sync::atomic::AtomicU32>()).ok_or(Errno::ENOMEM)?;
        Ok(SharedWord { ptr })
    }

    /// The word.
    pub fn word(&self) -> &core::sync::atomic::AtomicU32 {
        // SAFETY: the mapping is page-aligned, zero-filled (a valid
        // AtomicU32), and lives until `drop`; only atomic accesses touch it.
        unsafe { self.ptr.as_ref() }
    }
}

impl Drop for SharedWord {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once; no reference
        // from `word` outlives `self`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), SHARED_LEN) };
    }
}

// SAFETY: the word is only accessed atomically; the mapping is owned.
unsafe impl Send for SharedWord {}
// SAFETY: as above.
unsafe impl Sync for SharedWord {}
