//! Project quotas on the data partition: the raw calls.
//!
//! It must not choose an id or a limit: it makes the calls it is given.
//!
//! A volume's directory is tagged with its project id and the inherit flag
//! (`FS_IOC_FSSETXATTR`: every file and directory made beneath it later
//! takes the same id), and the project gets its block and inode limits
//! (`quotactl_fd(Q_SETQUOTA, PRJQUOTA)`, Linux 5.14: any descriptor on the
//! filesystem names it, no block device path needed). The decisions (which
//! id, which limits, whether they fit) are [`crate::confine::container::quota`]'s.

use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;

/// `struct fsxattr` (linux/fs.h).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct FsXattr {
    xflags: u32,
    extsize: u32,
    nextents: u32,
    projid: u32,
    cowextsize: u32,
    pad: [u8; 8],
}

/// `_IOR('X', 31, struct fsxattr)`.
const FS_IOC_FSGETXATTR: u32 = 0x801C_581F;
/// `_IOW('X', 32, struct fsxattr)`.
const FS_IOC_FSSETXATTR: u32 = 0x401C_5820;
/// `FS_XFLAG_PROJINHERIT`: new entries take the directory's project id.
pub const FS_XFLAG_PROJINHERIT: u32 = 0x0000_0200;

/// `PRJQUOTA`.
const PRJQUOTA: u32 = 2;
const Q_GETINFO: u32 = 0x80_0005;
const Q_GETQUOTA: u32 = 0x80_0007;
const Q_SETQUOTA: u32 = 0x80_0008;
/// `QIF_BLIMITS | QIF_ILIMITS`.
const QIF_LIMITS: u32 = 1 | 4;
/// Units of `dqb_bhardlimit` (`QIF_DQBLKSIZE`).
pub const QUOTA_BLOCK: u64 = 1024;

/// `struct if_dqblk` (linux/quota.h).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct IfDqblk {
    bhardlimit: u64,
    bsoftlimit: u64,
    curspace: u64,
    ihardlimit: u64,
    isoftlimit: u64,
    curinodes: u64,
    btime: u64,
    itime: u64,
    valid: u32,
}

/// `struct if_dqinfo`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct IfDqinfo {
    bgrace: u64,
    igrace: u64,
    flags: u32,
    valid: u32,
}

fn qcmd(cmd: u32) -> u32 {
    (cmd << 8) | PRJQUOTA
}

/// `quotactl_fd(fd, QCMD(cmd, PRJQUOTA), id, addr)`.
fn quotactl_fd<T>(fs: BorrowedFd<'_>, cmd: u32, id: u32, addr: &mut T) -> Result<(), Errno> {
    // SAFETY: `fs` is an open descriptor; `addr` points to a live, writable
    // value of the struct type the command reads or writes (if_dqblk or
    // if_dqinfo, `repr(C)` as in the UAPI), which outlives the call.
    let r = unsafe { libc::syscall(libc::SYS_quotactl_fd, fs.as_raw_fd(), qcmd(cmd), id, addr as *mut T) };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// Is project quota accounting on for the filesystem of `fs`? `ESRCH`:
/// off; `ENOSYS`: a kernel before 5.14.
pub fn project_quota_on(fs: BorrowedFd<'_>) -> Result<(), Errno> {
    let mut info = IfDqinfo::default();
    quotactl_fd(fs, Q_GETINFO, 0, &mut info)
}

/// Set project `id`'s hard (and soft) limits: `blocks` of [`QUOTA_BLOCK`]
/// bytes and `inodes`.
pub fn set_project_limits(fs: BorrowedFd<'_>, id: u32, blocks: u64, inodes: u64) -> Result<(), Errno> {
    let mut q = IfDqblk { bhardlimit: blocks, bsoftlimit: blocks, ihardlimit: inodes, isoftlimit: inodes, valid: QIF_LIMITS, ..Default::default() };
    quotactl_fd(fs, Q_SETQUOTA, id, &mut q)
}

/// Project `id`'s usage and hard limits: (bytes used, inodes used, block
/// limit in [`QUOTA_BLOCK`]s, inode limit).
pub fn project_usage(fs: BorrowedFd<'_>, id: u32) -> Result<(u64, u64, u64, u64), Errno> {
    let mut q = IfDqblk::default();
    quotactl_fd(fs, Q_GETQUOTA, id, &mut q)?;
    Ok((q.curspace, q.curinodes, q.bhardlimit, q.ihardlimit))
}

fn fsxattr(dir: BorrowedFd<'_>) -> Result<FsXattr, Errno> {
    let mut x = FsXattr::default();
    // SAFETY: FS_IOC_FSGETXATTR writes one `struct fsxattr` (28 bytes, the
    // size encoded in the request) into `x`, which lives across the call.
    let r = unsafe { libc::ioctl(dir.as_raw_fd(), FS_IOC_FSGETXATTR as _, &mut x as *mut FsXattr) };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(x)
    }
}

/// The project id and flags of the open file `dir`.
pub fn project_of(dir: BorrowedFd<'_>) -> Result<(u32, u32), Errno> {
    fsxattr(dir).map(|x| (x.projid, x.xflags))
}

/// Give the open directory `dir` project `id` and the inherit flag (its
/// other attributes kept).
pub fn set_project(dir: BorrowedFd<'_>, id: u32) -> Result<(), Errno> {
    let mut x = fsxattr(dir)?;
    x.projid = id;
    x.xflags |= FS_XFLAG_PROJINHERIT;
    // SAFETY: FS_IOC_FSSETXATTR reads one `struct fsxattr` from `x`, which
    // lives across the call.
    let r = unsafe { libc::ioctl(dir.as_raw_fd(), FS_IOC_FSSETXATTR as _, &x as *const FsXattr) };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structs_and_requests_match_the_uapi() {
        assert_eq!(core::mem::size_of::<FsXattr>(), 28);
        assert_eq!(FS_IOC_FSGETXATTR >> 16 & 0x3fff, 28);
        assert_eq!(core::mem::size_of::<IfDqblk>(), 72);
        assert_eq!(core::mem::size_of::<IfDqinfo>(), 24);
        assert_eq!(qcmd(Q_SETQUOTA), 0x8000_0802);
    }
}
