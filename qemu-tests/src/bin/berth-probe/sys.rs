//! System-call plumbing for the probe: errno names, the forked-child
//! runner, small wrappers.

use std::ffi::{CStr, CString};
use std::io::{self, Write};
use std::time::{Duration, Instant};

use crate::{encode_outcome, Outcome};

pub fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

pub fn geteuid() -> u32 {
    // SAFETY: no preconditions.
    unsafe { libc::geteuid() }
}

/// `Failed` with the current errno.
pub fn failed(what: impl Into<String>) -> Outcome {
    Outcome::Failed { errno: errno(), what: what.into() }
}

/// A path or string as a C string; `None` when it holds a NUL.
pub fn cs(s: &str) -> Option<CString> {
    CString::new(s).ok()
}

/// A raw syscall result: `Ok(value)` or `Err(Failed)` naming `what`.
pub fn ck(r: libc::c_long, what: &str) -> Result<libc::c_long, Outcome> {
    if r < 0 {
        Err(failed(what))
    } else {
        Ok(r)
    }
}

/// libc-style `int` result.
pub fn cki(r: libc::c_int, what: &str) -> Result<libc::c_int, Outcome> {
    if r < 0 {
        Err(failed(what))
    } else {
        Ok(r)
    }
}

/// `open(path, flags, mode)` via openat.
pub fn open(path: &CStr, flags: libc::c_int, mode: libc::mode_t) -> libc::c_int {
    // SAFETY: path is NUL-terminated.
    unsafe { libc::openat(libc::AT_FDCWD, path.as_ptr(), flags | libc::O_CLOEXEC, mode as libc::c_uint) }
}

pub fn close(fd: libc::c_int) {
    if fd >= 0 {
        // SAFETY: closing a descriptor this process owns.
        unsafe {
            libc::close(fd);
        }
    }
}

pub fn unlink(path: &CStr) {
    // SAFETY: path is NUL-terminated.
    unsafe {
        libc::unlinkat(libc::AT_FDCWD, path.as_ptr(), 0);
    }
}

/// Write `bytes` to a new file (mode 0644), replacing it.
pub fn write_file(path: &CStr, bytes: &[u8]) -> Result<(), Outcome> {
    let what = format!("create {}", path.to_string_lossy());
    let fd = cki(open(path, libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC, 0o644), &what)?;
    let r = write_all(fd, bytes);
    close(fd);
    r.map_err(|e| Outcome::Failed { errno: e, what: format!("write {}", path.to_string_lossy()) })
}

pub fn write_all(fd: libc::c_int, mut bytes: &[u8]) -> Result<(), i32> {
    while !bytes.is_empty() {
        // SAFETY: bytes is valid for its length.
        let n = unsafe { libc::write(fd, bytes.as_ptr() as *const libc::c_void, bytes.len()) };
        if n < 0 {
            let e = errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(libc::EIO);
        }
        bytes = &bytes[n as usize..];
    }
    Ok(())
}

/// Read up to `max` bytes (one read call, EINTR retried).
pub fn read_some(fd: libc::c_int, max: usize) -> Result<Vec<u8>, i32> {
    let mut buf = vec![0u8; max];
    loop {
        // SAFETY: buf is valid for max bytes.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr() as *mut libc::c_void, max) };
        if n < 0 {
            let e = errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        buf.truncate(n as usize);
        return Ok(buf);
    }
}

/// Read until EOF, non-blocking (the descriptor must be O_NONBLOCK), at
/// most `max` bytes.
fn drain(fd: libc::c_int, max: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 512];
    while out.len() < max {
        // SAFETY: buf is valid for its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
        if n > 0 {
            out.extend_from_slice(&buf[..n as usize]);
        } else if n < 0 && errno() == libc::EINTR {
            continue;
        } else {
            break;
        }
    }
    out
}

pub fn pipe() -> Result<(libc::c_int, libc::c_int), i32> {
    let mut fds = [-1; 2];
    // SAFETY: fds has room for two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(errno());
    }
    Ok((fds[0], fds[1]))
}

/// How a forked child ended.
#[derive(Debug)]
pub enum ChildEnd {
    /// It wrote a report (its exit status is then irrelevant).
    Report(String),
    Signaled(i32),
    Exited(i32),
    TimedOut,
    Failed(String),
}

/// Fork; the child runs `f`, writes the encoded outcome on a pipe and
/// `_exit`s. The parent waits up to `timeout` (then SIGKILLs it).
pub fn run_in_child(f: fn() -> Outcome, timeout: Duration) -> ChildEnd {
    run_closure_in_child(&|| encode_outcome(&f()), timeout)
}

/// Fork; the child runs `f` and writes its string on a pipe.
pub fn run_closure_in_child(f: &dyn Fn() -> String, timeout: Duration) -> ChildEnd {
    let (rfd, wfd) = match pipe() {
        Ok(p) => p,
        Err(e) => return ChildEnd::Failed(format!("pipe: {}", errno_name(e))),
    };
    let _ = io::stdout().lock().flush();
    let _ = io::stderr().lock().flush();
    // SAFETY: the probe is single-threaded; the child only runs the
    // attempt and leaves with _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        let e = errno();
        close(rfd);
        close(wfd);
        return ChildEnd::Failed(format!("fork: {}", errno_name(e)));
    }
    if pid == 0 {
        close(rfd);
        let text = f();
        let _ = write_all(wfd, text.as_bytes());
        close(wfd);
        // SAFETY: leaving the child without running the parent's atexit.
        unsafe { libc::_exit(0) }
    }
    close(wfd);
    // Non-blocking: a grandchild may still hold the write end.
    // SAFETY: fcntl on our own descriptor.
    unsafe {
        let fl = libc::fcntl(rfd, libc::F_GETFL);
        libc::fcntl(rfd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let end = loop {
        got.extend(drain(rfd, 64 * 1024));
        match try_wait(pid) {
            Some(Ok(st)) => break Some(st),
            Some(Err(e)) => {
                close(rfd);
                return ChildEnd::Failed(format!("waitpid: {}", errno_name(e)));
            }
            None => {}
        }
        if Instant::now() >= deadline {
            // SAFETY: pid is our child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
            let _ = wait_blocking(pid);
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    got.extend(drain(rfd, 64 * 1024));
    close(rfd);
    let Some(st) = end else {
        return ChildEnd::TimedOut;
    };
    if !got.is_empty() {
        return ChildEnd::Report(String::from_utf8_lossy(&got).into_owned());
    }
    if libc::WIFSIGNALED(st) {
        ChildEnd::Signaled(libc::WTERMSIG(st))
    } else if libc::WIFEXITED(st) {
        ChildEnd::Exited(libc::WEXITSTATUS(st))
    } else {
        ChildEnd::Failed(format!("odd wait status {st:#x}"))
    }
}

/// `None` while running; `Some(Ok(status))` once it ended.
fn try_wait(pid: libc::pid_t) -> Option<Result<libc::c_int, i32>> {
    let mut st = 0;
    // SAFETY: st is a valid out pointer.
    let r = unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) };
    if r == pid {
        if libc::WIFEXITED(st) || libc::WIFSIGNALED(st) {
            return Some(Ok(st));
        }
        return None; // stopped/continued: keep waiting
    }
    if r == 0 {
        return None;
    }
    let e = errno();
    if e == libc::EINTR {
        return None;
    }
    Some(Err(e))
}

/// waitpid until the child ended; its status.
pub fn wait_blocking(pid: libc::pid_t) -> Result<libc::c_int, i32> {
    loop {
        let mut st = 0;
        // SAFETY: st is a valid out pointer.
        let r = unsafe { libc::waitpid(pid, &mut st, 0) };
        if r == pid {
            if libc::WIFEXITED(st) || libc::WIFSIGNALED(st) {
                return Ok(st);
            }
            continue;
        }
        let e = errno();
        if e != libc::EINTR {
            return Err(e);
        }
    }
}

/// Wait for `pid` up to `timeout`; SIGKILL it after. `None` on timeout.
pub fn wait_timeout(pid: libc::pid_t, timeout: Duration) -> Option<libc::c_int> {
    let deadline = Instant::now() + timeout;
    loop {
        match try_wait(pid) {
            Some(Ok(st)) => return Some(st),
            Some(Err(_)) => return None,
            None => {}
        }
        if Instant::now() >= deadline {
            kill_and_reap(pid);
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn kill_and_reap(pid: libc::pid_t) {
    if pid > 0 {
        // SAFETY: pid is our child.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
        let _ = wait_blocking(pid);
    }
}

/// As PID 1 of a pid namespace the probe inherits orphans: reap them.
pub fn reap_orphans() {
    loop {
        let mut st = 0;
        // SAFETY: st is a valid out pointer.
        let r = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
        if r <= 0 {
            break;
        }
    }
}

pub fn describe_status(st: libc::c_int) -> String {
    if libc::WIFSIGNALED(st) {
        format!("killed by {}", signal_name(libc::WTERMSIG(st)))
    } else if libc::WIFEXITED(st) {
        format!("exit {}", libc::WEXITSTATUS(st))
    } else {
        format!("status {st:#x}")
    }
}

pub fn io_errno_name(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(c) => errno_name(c),
        None => e.to_string(),
    }
}

pub fn errno_name(code: i32) -> String {
    qemu_tests::errno::name(code).map(str::to_string).unwrap_or_else(|| format!("errno {code}"))
}

pub fn signal_name(sig: i32) -> String {
    let names: &[(i32, &str)] = &[
        (libc::SIGHUP, "SIGHUP"),
        (libc::SIGINT, "SIGINT"),
        (libc::SIGQUIT, "SIGQUIT"),
        (libc::SIGILL, "SIGILL"),
        (libc::SIGTRAP, "SIGTRAP"),
        (libc::SIGABRT, "SIGABRT"),
        (libc::SIGBUS, "SIGBUS"),
        (libc::SIGFPE, "SIGFPE"),
        (libc::SIGKILL, "SIGKILL"),
        (libc::SIGSEGV, "SIGSEGV"),
        (libc::SIGPIPE, "SIGPIPE"),
        (libc::SIGALRM, "SIGALRM"),
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGSYS, "SIGSYS"),
        (libc::SIGSTOP, "SIGSTOP"),
    ];
    match names.iter().find(|(c, _)| *c == sig) {
        Some((_, n)) => n.to_string(),
        None => format!("signal {sig}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(errno_name(libc::EROFS), "EROFS");
        assert_eq!(errno_name(9999), "errno 9999");
        assert_eq!(signal_name(libc::SIGSYS), "SIGSYS");
        assert_eq!(signal_name(99), "signal 99");
    }

    #[test]
    fn child_runner() {
        let t = Duration::from_secs(5);
        match run_closure_in_child(&|| "S 0 hello".to_string(), t) {
            ChildEnd::Report(s) => assert_eq!(s, "S 0 hello"),
            other => panic!("{other:?}"),
        }
        match run_closure_in_child(
            &|| {
                // SAFETY: raising a signal in the test's own child.
                unsafe { libc::raise(libc::SIGSYS) };
                String::new()
            },
            t,
        ) {
            ChildEnd::Signaled(s) => assert_eq!(s, libc::SIGSYS),
            other => panic!("{other:?}"),
        }
        match run_closure_in_child(&String::new, t) {
            ChildEnd::Exited(0) => {}
            other => panic!("{other:?}"),
        }
        match run_closure_in_child(
            &|| {
                std::thread::sleep(Duration::from_secs(30));
                String::new()
            },
            Duration::from_millis(200),
        ) {
            ChildEnd::TimedOut => {}
            other => panic!("{other:?}"),
        }
    }
}
