//! The real [`Act`] of the spawn path: each plan step's mount, remount and
//! `pivot_root` system calls, run in the container's init before `execve`.
//! It must not allocate or log: it runs in the child after the fork.

use super::*;

/// The real [`Act`]: each plan step's system calls. Runs in the child.
pub struct Mounter;

/// Flags the kernel keeps on a mount (locked in a user namespace), as
/// `MS_*` for a bind remount: access and atime flags from `statfs`.
pub(super) fn locked_flags(path: &CStr) -> Result<MsFlags, Errno> {
    pub(super) const ST_RDONLY: u64 = 1;
    pub(super) const ST_NOSUID: u64 = 2;
    pub(super) const ST_NODEV: u64 = 4;
    pub(super) const ST_NOEXEC: u64 = 8;
    pub(super) const ST_NOATIME: u64 = 1024;
    pub(super) const ST_NODIRATIME: u64 = 2048;
    pub(super) const ST_RELATIME: u64 = 4096;
    let st = sys::mount_flags(path)?;
    let mut f = MsFlags::empty();
    for (bit, flag) in [
        (ST_RDONLY, MsFlags::MS_RDONLY),
        (ST_NOSUID, MsFlags::MS_NOSUID),
        (ST_NODEV, MsFlags::MS_NODEV),
        (ST_NOEXEC, MsFlags::MS_NOEXEC),
        (ST_NOATIME, MsFlags::MS_NOATIME),
        (ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if st & bit != 0 {
            f |= flag;
        }
    }
    // Without an atime flag the kernel would default to relatime, which a
    // locked strictatime mount refuses.
    if st & (ST_NOATIME | ST_RELATIME) == 0 {
        f |= MsFlags::MS_STRICTATIME;
    }
    Ok(f)
}

pub(in crate::confine::container) fn remount(target: &CStr, flags: MsFlags) -> Result<(), Errno> {
    let all = flags | MsFlags::MS_BIND | MsFlags::MS_REMOUNT | locked_flags(target)?;
    mount(None::<&CStr>, target, None::<&CStr>, all, None::<&CStr>)
}

pub(super) fn mount_attrs(flags: MsFlags) -> u64 {
    let mut a = 0;
    for (flag, attr) in [
        (MsFlags::MS_RDONLY, sys::MOUNT_ATTR_RDONLY),
        (MsFlags::MS_NOSUID, sys::MOUNT_ATTR_NOSUID),
        (MsFlags::MS_NODEV, sys::MOUNT_ATTR_NODEV),
        (MsFlags::MS_NOEXEC, sys::MOUNT_ATTR_NOEXEC),
    ] {
        if flags.contains(flag) {
            a |= attr;
        }
    }
    a
}

pub(super) fn absent_ok(r: Result<(), Errno>) -> Result<(), Errno> {
    match r {
        Err(Errno::ENOENT) => Ok(()),
        r => r,
    }
}

pub(super) fn pivot(new_root: &CStr) -> Result<(), Errno> {
    let old = open(c"/", OFlag::O_DIRECTORY | OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())?;
    let r = (|| {
        unistd::chdir(new_root)?;
        unistd::pivot_root(c".", c".")?;
        unistd::fchdir(old)?;
        mount(None::<&CStr>, c".", None::<&CStr>, MsFlags::MS_SLAVE | MsFlags::MS_REC, None::<&CStr>)?;
        umount2(c".", MntFlags::MNT_DETACH)?;
        unistd::chdir(c"/")
    })();
    let _ = unistd::close(old);
    r
}

impl Act for Mounter {
    type Error = Errno;

    fn act(&mut self, step: &mounts::Step) -> Result<(), Errno> {
        use mounts::Step as S;
        let none = None::<&CStr>;
        match step {
            S::Propagation { target, flags } => mount(none, target.as_cstr(), none, *flags, none),
            S::Bind { source, target, recursive } => {
                let rec = if *recursive { MsFlags::MS_REC } else { MsFlags::empty() };
                mount(Some(source.as_cstr()), target.as_cstr(), none, MsFlags::MS_BIND | rec, none)
            }
            S::BindNode { source, target } => {
                let st = lstat(source.as_cstr())?;
                if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) != SFlag::S_IFCHR {
                    return Err(Errno::ENODEV);
                }
                mount(Some(source.as_cstr()), target.as_cstr(), none, MsFlags::MS_BIND, none)
            }
            S::BindSocket { source, target } => {
                let st = lstat(source.as_cstr())?;
                if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) != SFlag::S_IFSOCK {
                    return Err(Errno::ENOTSOCK);
                }
                mount(Some(source.as_cstr()), target.as_cstr(), none, MsFlags::MS_BIND, none)
            }
            S::BindRemount { target, flags, recursive: false } => remount(target.as_cstr(), *flags),
            S::BindRemount { target, flags, recursive: true } => {
                match sys::mount_setattr_recursive(target.as_cstr(), mount_attrs(*flags)) {
                    // Before Linux 5.12: the top mount only (sub-mounts keep
                    // the host's flags and permissions).
                    Err(Errno::ENOSYS) => remount(target.as_cstr(), *flags),
                    r => r,
                }
            }
            S::Mount { fstype, target, flags, data } => {
                let data = Some(data.as_cstr()).filter(|d| !d.is_empty());
                mount(Some(*fstype), target.as_cstr(), Some(*fstype), *flags, data)
            }
            S::Beneath(at) => crate::confine::container::beneath::act(at),
            S::Mkdir { path, mode } => match unistd::mkdir(path.as_cstr(), Mode::from_bits_truncate(*mode)) {
                Err(Errno::EEXIST) => Ok(()),
                r => r,
            },
            S::Touch { path, mode } => {
                let fd = open(
                    path.as_cstr(),
                    OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(*mode),
                )?;
                unistd::close(fd)
            }
            S::Symlink { target, link } => unistd::symlinkat(*target, None, link.as_cstr()),
            S::PivotRoot { new_root } => pivot(new_root.as_cstr()),
            S::Hostname { name } => unistd::sethostname(OsStr::from_bytes(name.as_bytes())),
            S::ReadOnly { path } => absent_ok((|| {
                mount(Some(*path), *path, none, MsFlags::MS_BIND | MsFlags::MS_REC, none)?;
                remount(path, MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC)
            })()),
            S::MaskFile { path } => absent_ok(mount(Some(MASK_FILE_SOURCE), *path, none, MsFlags::MS_BIND, none)),
            S::MaskDir { path } => absent_ok(mount(
                Some(c"tmpfs"),
                *path,
                Some(c"tmpfs"),
                MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                Some(MASK_DIR_DATA),
            )),
        }
    }
}
