//! Handing a descriptor to a child at a fixed number, and taking it over in
//! the child (the stager's report pipe, [`crate::release::stager`]).
//!
//! The child's half must not allocate: it runs between fork and exec.

use std::os::fd::{FromRawFd, OwnedFd};

/// In the child of `cmd`, after its standard streams are set up and before
/// exec, make `fd` (close-on-exec in the parent) descriptor `target`,
/// inherited across the exec.
pub fn pass_fd_in_child(cmd: &mut std::process::Command, fd: i32, target: i32) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the hook runs in the child between fork and exec and only
    // calls dup2 and fcntl on integers, both async-signal-safe; it does not
    // allocate. `fd` is open in the parent until spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            let r = if fd == target { libc::fcntl(fd, libc::F_SETFD, 0) } else { libc::dup2(fd, target) };
            if r < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Take over descriptor `fd`, inherited from the parent, if it is open.
/// Call once per descriptor, at the start of the process, before anything
/// else could have opened or closed that number.
pub fn inherited_fd(fd: i32) -> Option<OwnedFd> {
    // SAFETY: F_GETFD only queries the descriptor table.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return None;
    }
    // SAFETY: the descriptor is open (checked above), was inherited for this
    // purpose, and nothing else in this process owns it (the caller takes it
    // once, at the start).
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // Not to be passed on to anything this process runs.
    // SAFETY: F_SETFD on an open descriptor.
    unsafe {
        libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
    }
    Some(owned)
}
