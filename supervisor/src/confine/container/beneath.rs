//! The act of a [`Step::Beneath`](super::mounts::Step::Beneath): a mount
//! step whose target lies beneath a persistent volume.
//!
//! It must not follow a symlink, nor allocate: it runs between fork and exec.
//!
//! A volume is the container's to write, and it keeps what the container
//! left there from one run to the next: a symlink planted at a later mount
//! target (`/var/lib/app/cache -> /etc`, or a host path: the steps run
//! before `pivot_root`, in host paths) would otherwise redirect that mount
//! at the next start. So each such target is resolved with `openat2` in the
//! container's root (`RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS |
//! RESOLVE_NO_MAGICLINKS`): a symlink in any component is `ELOOP` and the
//! start fails at that step (`container.start result=error step=mount
//! error="... ELOOP"`); nothing is followed, nothing is made outside. The
//! mount itself goes through the descriptor (`/proc/self/fd/N`), so it
//! lands on exactly the directory that was checked.
//!
//! Runs in the container's init between fork and exec: system calls on the
//! plan's strings and stack buffers only, no allocation.

use core::ffi::CStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{lstat, mkdirat, Mode, SFlag};

use super::cstr::CPath;
use super::mounts::{At, Beneath};
use crate::sys::open_no_links;

/// `/proc/self/fd/` plus up to 10 digits and the NUL.
pub(super) struct FdPath([u8; 32]);

impl FdPath {
    /// `/proc/self/fd/<fd>`.
    pub(super) fn new(fd: BorrowedFd<'_>) -> FdPath {
        let mut buf = [0u8; 32];
        let prefix = b"/proc/self/fd/";
        buf[..prefix.len()].copy_from_slice(prefix);
        let mut digits = [0u8; 10];
        let mut n = u32::try_from(fd.as_raw_fd()).unwrap_or(0);
        let mut len = 0;
        loop {
            digits[len] = b'0' + (n % 10) as u8;
            len += 1;
            n /= 10;
            if n == 0 || len == digits.len() {
                break;
            }
        }
        for (i, d) in digits[..len].iter().rev().enumerate() {
            buf[prefix.len() + i] = *d;
        }
        FdPath(buf)
    }

    pub(super) fn as_cstr(&self) -> &CStr {
        CStr::from_bytes_until_nul(&self.0).unwrap_or(c"")
    }
}

/// The container's root (berth's own path to the image: no symlink).
fn open_root(root: &CPath) -> Result<OwnedFd, Errno> {
    crate::sys::open_dir_path(root.as_cstr())
}

/// Resolve `path` in `root`, never following a symlink.
fn resolve(root: &OwnedFd, path: &CPath, dir: bool) -> Result<OwnedFd, Errno> {
    let flags = libc::O_PATH | if dir { libc::O_DIRECTORY } else { 0 };
    open_no_links(root.as_fd(), path.as_cstr(), flags, 0)
}

/// The step's calls (see the module doc).
pub(super) fn act(at: &At) -> Result<(), Errno> {
    let At { root, path, parent, leaf, op } = at;
    let none = None::<&CStr>;
    let root = open_root(root)?;
    match op {
        Beneath::Mkdir { mode } => {
            let dir = open_no_links(root.as_fd(), parent.as_cstr(), libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
            match mkdirat(Some(dir.as_raw_fd()), leaf.as_cstr(), Mode::from_bits_truncate(*mode)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(e),
            }
            // What is there now must be a directory, not a symlink.
            resolve(&root, path, true).map(drop)
        }
        Beneath::Bind { source } => {
            let target = resolve(&root, path, true)?;
            mount(Some(source.as_cstr()), FdPath::new(target.as_fd()).as_cstr(), none, MsFlags::MS_BIND, none)
        }
        Beneath::Mount { fstype, flags, data } => {
            let target = resolve(&root, path, true)?;
            let data = Some(data.as_cstr()).filter(|d| !d.is_empty());
            mount(Some(*fstype), FdPath::new(target.as_fd()).as_cstr(), Some(*fstype), *flags, data)
        }
        Beneath::Remount { flags } => {
            let target = resolve(&root, path, true)?;
            super::spawn::remount(FdPath::new(target.as_fd()).as_cstr(), *flags)
        }
        Beneath::Touch { mode } => {
            let dir = open_no_links(root.as_fd(), parent.as_cstr(), libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
            let flags = libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_WRONLY;
            open_no_links(dir.as_fd(), leaf.as_cstr(), flags, *mode).map(drop)
        }
        Beneath::BindSocket { source } => {
            let st = lstat(source.as_cstr())?;
            if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) != SFlag::S_IFSOCK {
                return Err(Errno::ENOTSOCK);
            }
            let target = resolve(&root, path, false)?;
            mount(Some(source.as_cstr()), FdPath::new(target.as_fd()).as_cstr(), none, MsFlags::MS_BIND, none)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_paths_are_formatted_without_allocation() {
        use std::os::fd::AsFd;
        let f = std::fs::File::open("/").unwrap();
        let raw = f.as_raw_fd();
        assert_eq!(FdPath::new(f.as_fd()).as_cstr().to_str().unwrap(), format!("/proc/self/fd/{raw}"));
    }
}
