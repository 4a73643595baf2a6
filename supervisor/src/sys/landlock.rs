//! Landlock's three system calls (Linux 5.13), raw: no C library wraps them.
//!
//! It must not decide the rules (confine does), and it must not allocate: it
//! may run between fork and execve.
//!
//! Everything here may run in a container's init between fork and execve:
//! no allocation, no formatting. The rules themselves are decided in
//! [`crate::confine::container::landlock`].

use core::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;

/// `LANDLOCK_CREATE_RULESET_VERSION`: ask for the ABI instead of a ruleset.
const CREATE_RULESET_VERSION: libc::c_uint = 1;
/// `LANDLOCK_RULE_PATH_BENEATH`.
const RULE_PATH_BENEATH: libc::c_int = 1;

/// `struct landlock_ruleset_attr` up to ABI 6. Its size is passed; a kernel
/// that knows fewer fields accepts it as long as those it lacks are zero.
#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

/// `struct landlock_path_beneath_attr` (packed: 12 bytes).
#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

fn check(r: libc::c_long) -> Result<libc::c_long, Errno> {
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(r)
    }
}

/// The Landlock ABI the running kernel offers: `EOPNOTSUPP` when it is
/// built in but disabled at boot, `ENOSYS` when it is not built.
pub fn abi_version() -> Result<u32, Errno> {
    // SAFETY: with the VERSION flag the attribute pointer must be NULL and
    // the size 0; nothing is read or written.
    let r = unsafe { libc::syscall(libc::SYS_landlock_create_ruleset, core::ptr::null::<RulesetAttr>(), 0usize, CREATE_RULESET_VERSION) };
    check(r).map(|v| u32::try_from(v).unwrap_or(0))
}

/// A new ruleset handling these rights (no network rights: berth does not
/// restrict TCP ports).
pub fn create_ruleset(handled_fs: u64, scoped: u64) -> Result<OwnedFd, Errno> {
    let attr = RulesetAttr { handled_access_fs: handled_fs, handled_access_net: 0, scoped };
    // SAFETY: `attr` is a valid ruleset attribute whose size is passed and
    // which outlives the call; the kernel only reads it.
    let r = unsafe { libc::syscall(libc::SYS_landlock_create_ruleset, &attr as *const RulesetAttr, core::mem::size_of::<RulesetAttr>(), 0 as libc::c_uint) };
    let fd = check(r)?;
    let fd = i32::try_from(fd).map_err(|_| Errno::EBADF)?;
    // SAFETY: the kernel just returned this new descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Allow `access` beneath the file or directory `parent` is open on.
pub fn add_path_rule(ruleset: BorrowedFd<'_>, parent: BorrowedFd<'_>, access: u64) -> Result<(), Errno> {
    let attr = PathBeneathAttr { allowed_access: access, parent_fd: parent.as_raw_fd() };
    // SAFETY: `attr` is a valid path-beneath attribute that outlives the
    // call; both descriptors are open; the flags must be 0.
    let r = unsafe { libc::syscall(libc::SYS_landlock_add_rule, ruleset.as_raw_fd(), RULE_PATH_BENEATH, &attr as *const PathBeneathAttr, 0 as libc::c_uint) };
    check(r).map(drop)
}

/// Enforce the ruleset on the calling thread (the whole container init) and
/// everything it starts. Needs `no_new_privs` (or CAP_SYS_ADMIN).
pub fn restrict_self(ruleset: BorrowedFd<'_>) -> Result<(), Errno> {
    // SAFETY: an open descriptor and flags 0.
    let r = unsafe { libc::syscall(libc::SYS_landlock_restrict_self, ruleset.as_raw_fd(), 0 as libc::c_uint) };
    check(r).map(drop)
}

/// `open(path, O_PATH | O_CLOEXEC)`, and whether it is a directory.
pub fn open_path(path: &CStr) -> Result<(OwnedFd, bool), Errno> {
    use nix::fcntl::{open, OFlag};
    use nix::sys::stat::{fstat, Mode, SFlag};
    let raw = open(path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())?;
    // SAFETY: `open` just returned this descriptor; nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let st = fstat(fd.as_raw_fd())?;
    let dir = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFDIR;
    Ok((fd, dir))
}

/// Like [`open_path`], but `path` resolves in the process's root without
/// following a symlink in any component (`ELOOP`): for rule paths beneath
/// a persistent volume, where the container may have left symlinks.
pub fn open_path_no_links(path: &CStr) -> Result<(OwnedFd, bool), Errno> {
    use nix::sys::stat::{fstat, SFlag};
    let root = super::open_dir_path(c"/")?;
    let fd = super::open_no_links(std::os::fd::AsFd::as_fd(&root), path, libc::O_PATH, 0)?;
    let st = fstat(fd.as_raw_fd())?;
    let dir = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFDIR;
    Ok((fd, dir))
}
