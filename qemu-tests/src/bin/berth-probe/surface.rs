//! Attempts on the kernel surface a container keeps: code that is in no
//! image (a memfd, a descriptor run by `execveat`), socket families beyond
//! the allow-list, the terminal ioctls, ioctls on a node granted read-only;
//! and the checks that what must still work (the default families, a pty,
//! ioctls on a node granted `rw`, the host's hardening as seen from inside)
//! works.
//!
//! Each attempt is built so that only policy can refuse it: without the
//! seccomp filter or the Landlock rule, the call would succeed or fail with
//! an errno that is not in its accepted set (`EIO`, `ENOTTY`, `EINVAL`,
//! `EAFNOSUPPORT`...), which the probe reports as `error`.

use std::ffi::CStr;
use std::time::Duration;

use libc::{EACCES, EPERM};

use crate::sys::{self, close, errno, errno_name, failed, open, write_all};
use crate::{Attempt, Outcome};

/// What seccomp answers.
const SECCOMP: &[i32] = &[EPERM];
/// A memfd or descriptor exec: seccomp (EPERM) or a noexec rule (EACCES).
const EXEC: &[i32] = &[EPERM, EACCES];
/// Landlock's answer to an ioctl without the device-ioctl right.
const LANDLOCK: &[i32] = &[EACCES];

const TIOCSTI: libc::c_ulong = 0x5412;
const TIOCLINUX: libc::c_ulong = 0x541C;
const TIOCCONS: libc::c_ulong = 0x541D;
const TIOCSETD: libc::c_ulong = 0x5423;
const TCGETS: libc::c_ulong = 0x5401;
const TIOCGPTN: libc::c_ulong = 0x8004_5430;
const TIOCSPTLCK: libc::c_ulong = 0x4004_5431;
/// `TIOCL_GETKMSGREDIRECT`: a read-only `TIOCLINUX` subcode.
const TIOCL_GETKMSGREDIRECT: u8 = 17;
const INNER: Duration = Duration::from_secs(10);

macro_rules! a {
    ($name:expr, $accept:expr, $run:expr) => {
        Attempt { name: $name, run: $run, accept: $accept }
    };
}

/// The attempts, in the order they run.
pub fn table() -> &'static [Attempt] {
    static TABLE: &[Attempt] = &[
        a!("memfd-exec-execveat", EXEC, || memfd_exec(Via::Execveat)),
        a!("memfd-exec-proc-fd", EXEC, || memfd_exec(Via::ProcFd)),
        a!("execveat-empty-path-image", SECCOMP, execveat_image),
        a!("tmpfile-exec-proc-fd", EXEC, tmpfile_exec),
        a!("socket-family-sweep", SECCOMP, socket_sweep),
        a!("tty-ioctl-tiocsti", SECCOMP, || tty_ioctl(TIOCSTI, "TIOCSTI")),
        a!("tty-ioctl-tioclinux", SECCOMP, || tty_ioctl(TIOCLINUX, "TIOCLINUX")),
        a!("tty-ioctl-tiocsetd", SECCOMP, || tty_ioctl(TIOCSETD, "TIOCSETD")),
        a!("tty-ioctl-tioccons", SECCOMP, || tty_ioctl(TIOCCONS, "TIOCCONS")),
        a!("ioctl-read-only-node", LANDLOCK, ioctl_read_only_node),
    ];
    TABLE
}

/// How a descriptor is run.
#[derive(Clone, Copy)]
enum Via {
    /// `execveat(fd, "", ..., AT_EMPTY_PATH)`.
    Execveat,
    /// `execve("/proc/self/fd/N")`.
    ProcFd,
}

/// The probe's own program, to put where it should not run from.
fn own_program() -> Result<Vec<u8>, Outcome> {
    std::fs::read("/proc/self/exe").map_err(|e| Outcome::Error(format!("read /proc/self/exe: {}", sys::io_errno_name(&e))))
}

/// Run descriptor `fd` in a child as `--exit 7`: `Err(Failed)` with the
/// exec's errno, or `Escaped` when it ran.
fn run_fd(fd: libc::c_int, via: Via, label: &str) -> Outcome {
    let (r, w) = match sys::pipe() {
        Ok(p) => p,
        Err(e) => return Outcome::Error(format!("pipe: {}", errno_name(e))),
    };
    let proc_path = sys::cs(&format!("/proc/self/fd/{fd}"));
    let (Some(proc_path), Some(arg0), Some(arg1), Some(arg2)) = (proc_path, sys::cs("berth-probe"), sys::cs("--exit"), sys::cs("7")) else {
        return Outcome::Error("argument strings".into());
    };
    let argv = [arg0.as_ptr(), arg1.as_ptr(), arg2.as_ptr(), std::ptr::null()];
    let envp = [std::ptr::null::<libc::c_char>()];
    // SAFETY: the child only execs and writes its errno to the pipe.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: pointers into live, NUL-terminated buffers; NULL-terminated arrays.
        unsafe {
            match via {
                Via::Execveat => {
                    libc::syscall(libc::SYS_execveat, fd, c"".as_ptr(), argv.as_ptr(), envp.as_ptr(), libc::AT_EMPTY_PATH);
                }
                Via::ProcFd => {
                    libc::execve(proc_path.as_ptr(), argv.as_ptr(), envp.as_ptr());
                }
            }
            let e = errno().to_le_bytes();
            libc::write(w, e.as_ptr() as *const libc::c_void, e.len());
            libc::_exit(127)
        }
    }
    close(w);
    if pid < 0 {
        close(r);
        return Outcome::Error(format!("fork: {}", errno_name(errno())));
    }
    let got = sys::read_some(r, 4);
    close(r);
    let status = sys::wait_timeout(pid, INNER);
    match got {
        Ok(b) if b.len() == 4 => Outcome::Failed { errno: i32::from_le_bytes([b[0], b[1], b[2], b[3]]), what: label.into() },
        Ok(_) => Outcome::Escaped(format!("{label} ran code that is in no image ({})", status.map(sys::describe_status).unwrap_or_else(|| "no exit".into()))),
        Err(e) => Outcome::Error(format!("read the exec pipe: {}", errno_name(e))),
    }
}

/// memfd_create, the probe copied in, then run: refused at `memfd_create`
/// (EPERM), or at the exec.
fn memfd_exec(via: Via) -> Outcome {
    let bytes = match own_program() {
        Ok(b) => b,
        Err(o) => return o,
    };
    // SAFETY: a NUL-terminated name and flags.
    let fd = unsafe { libc::syscall(libc::SYS_memfd_create, c"berth-probe".as_ptr(), libc::MFD_CLOEXEC as libc::c_uint) };
    if fd < 0 {
        return failed("memfd_create");
    }
    let fd = fd as libc::c_int;
    if let Err(e) = write_all(fd, &bytes) {
        close(fd);
        return Outcome::Error(format!("write the memfd: {}", errno_name(e)));
    }
    let label = match via {
        Via::Execveat => "execveat(memfd, AT_EMPTY_PATH)",
        Via::ProcFd => "execve(/proc/self/fd/N of a memfd)",
    };
    let o = run_fd(fd, via, label);
    close(fd);
    o
}

/// execveat(AT_EMPTY_PATH) of the image's own program: the path would be
/// allowed, the descriptor form is not.
fn execveat_image() -> Outcome {
    let fd = open(c"/proc/self/exe", libc::O_RDONLY, 0);
    if fd < 0 {
        return Outcome::Error(format!("open /proc/self/exe: {}", errno_name(errno())));
    }
    let o = run_fd(fd, Via::Execveat, "execveat(image program, AT_EMPTY_PATH)");
    close(fd);
    o
}

/// An unnamed file (O_TMPFILE) in the tmpfs, run through /proc/self/fd:
/// the noexec mount still applies to it (EACCES).
fn tmpfile_exec() -> Outcome {
    let bytes = match own_program() {
        Ok(b) => b,
        Err(o) => return o,
    };
    let fd = open(c"/tmp", libc::O_TMPFILE | libc::O_RDWR, 0o755);
    if fd < 0 {
        return Outcome::Error(format!("open(/tmp, O_TMPFILE): {}", errno_name(errno())));
    }
    // Too large for a small tmpfs: a stub still shows whether exec is
    // refused (noexec: EACCES; else the loader answers ENOEXEC, an error).
    if write_all(fd, &bytes).is_err() {
        // SAFETY: plain calls on our own descriptor.
        let ok = unsafe { libc::ftruncate(fd, 0) == 0 && libc::lseek(fd, 0, libc::SEEK_SET) == 0 };
        if !ok || write_all(fd, &[0x7f, b'E', b'L', b'F', 0, 0, 0, 0]).is_err() {
            close(fd);
            return Outcome::Error(format!("write the O_TMPFILE file: {}", errno_name(errno())));
        }
    }
    let o = run_fd(fd, Via::ProcFd, "execve(/proc/self/fd/N of an O_TMPFILE file)");
    close(fd);
    o
}

/// Families a container may open by default (and `AF_PACKET`, which only
/// `CAP_NET_RAW` gives, is tried by `socket-packet`).
const ALLOWED: [libc::c_int; 4] = [libc::AF_UNIX, libc::AF_INET, libc::AF_INET6, libc::AF_NETLINK];

/// socket() of every other family up to AF_MAX and a few beyond: each must
/// be EPERM (seccomp), never a socket and never EAFNOSUPPORT or another
/// errno the kernel gives once the call reaches it.
fn socket_sweep() -> Outcome {
    let mut refused = 0;
    for family in (0..=47).chain([64, 255, 4096]) {
        if ALLOWED.contains(&family) {
            continue;
        }
        for ty in [libc::SOCK_DGRAM, libc::SOCK_STREAM, libc::SOCK_RAW, libc::SOCK_SEQPACKET] {
            // SAFETY: plain socket call.
            let fd = unsafe { libc::socket(family, ty | libc::SOCK_CLOEXEC, 0) };
            if fd >= 0 {
                close(fd);
                return Outcome::Succeeded(format!("opened a socket of family {family}, type {ty}"));
            }
            let e = errno();
            if e != EPERM {
                return Outcome::Failed { errno: e, what: format!("socket family {family} type {ty}") };
            }
            refused += 1;
        }
    }
    Outcome::Blocked(format!("{refused} sockets of 49 families beyond unix, inet, inet6, netlink: all EPERM"))
}

/// A new pty pair: `(master, slave)`, the slave this process's controlling
/// terminal (a new session; opened without O_NOCTTY).
fn own_pty() -> Result<(libc::c_int, libc::c_int), Outcome> {
    // Closing the master hangs the session up: SIGHUP to this process (the
    // controlling one), which must outlive that to report.
    // SAFETY: SIG_IGN for SIGHUP; no handler runs.
    unsafe { libc::signal(libc::SIGHUP, libc::SIG_IGN) };
    let m = open(c"/dev/ptmx", libc::O_RDWR | libc::O_NOCTTY, 0);
    if m < 0 {
        return Err(Outcome::Error(format!("open /dev/ptmx: {}", errno_name(errno()))));
    }
    let mut unlock: libc::c_int = 0;
    let mut n: libc::c_uint = 0;
    // SAFETY: valid pointers to an int and an unsigned int.
    let ok = unsafe { libc::ioctl(m, TIOCSPTLCK as _, &mut unlock) == 0 && libc::ioctl(m, TIOCGPTN as _, &mut n) == 0 };
    if !ok {
        let e = errno();
        close(m);
        return Err(Outcome::Error(format!("unlock the pty: {}", errno_name(e))));
    }
    // SAFETY: no preconditions (fails only for a process group leader).
    unsafe { libc::setsid() };
    let Some(path) = sys::cs(&format!("/dev/pts/{n}")) else {
        close(m);
        return Err(Outcome::Error("pts path".into()));
    };
    let s = open(&path, libc::O_RDWR, 0);
    if s < 0 {
        let e = errno();
        close(m);
        return Err(Outcome::Error(format!("open /dev/pts/{n}: {}", errno_name(e))));
    }
    Ok((m, s))
}

/// One of the refused terminal requests on the container's own terminal,
/// with a harmless argument: without the filter TIOCSETD (back to N_TTY)
/// succeeds and TIOCSTI, TIOCLINUX answer EIO/EINVAL/ENOTTY from the tty
/// layer; TIOCCONS needs CAP_SYS_ADMIN as well.
fn tty_ioctl(req: libc::c_ulong, name: &str) -> Outcome {
    let (m, s) = match own_pty() {
        Ok(p) => p,
        Err(o) => return o,
    };
    let mut byte: u8 = if req == TIOCLINUX { TIOCL_GETKMSGREDIRECT } else { b'x' };
    let mut ldisc: libc::c_int = 0; // N_TTY
                                    // SAFETY: each request gets a pointer of the type it reads, or none.
    let r = unsafe {
        match req {
            TIOCSETD => libc::ioctl(s, req as _, &mut ldisc),
            TIOCCONS => libc::ioctl(s, req as _),
            _ => libc::ioctl(s, req as _, &mut byte),
        }
    };
    let o = if r == 0 { Outcome::Succeeded(format!("{name} on the container's own terminal")) } else { failed(format!("ioctl {name}")) };
    close(s);
    close(m);
    o
}

/// A driver ioctl on the node granted only `r`: Landlock's EACCES before
/// the driver sees it; ENOTTY would mean the driver was asked.
fn ioctl_read_only_node() -> Outcome {
    let Ok(path) = std::env::var("PROBE_EXPECT_DEVICE_READ_ONLY") else {
        return Outcome::Error("PROBE_EXPECT_DEVICE_READ_ONLY names no node granted r".into());
    };
    let Some(c) = sys::cs(path.trim()) else {
        return Outcome::Error(format!("bad path {path:?}"));
    };
    let fd = open(&c, libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY, 0);
    if fd < 0 {
        return Outcome::Error(format!("open {path} for reading: {}", errno_name(errno())));
    }
    // SAFETY: a zeroed termios the request may fill.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer for TCGETS.
    let r = unsafe { libc::ioctl(fd, TCGETS as _, &mut t) };
    let o = match (r, errno()) {
        (0, _) => Outcome::Succeeded(format!("TCGETS on {path} (granted r) answered")),
        (_, libc::ENOTTY) => Outcome::Escaped(format!("TCGETS on {path} (granted r) reached its driver (ENOTTY)")),
        _ => failed(format!("ioctl TCGETS {path}")),
    };
    close(fd);
    o
}

// ---------------------------------------------------------------- works

/// `(name, works, detail)` of each check of this file.
pub fn works() -> Vec<(String, bool, String)> {
    let (w, d) = default_families();
    let mut out = vec![("socket-default-families".to_string(), w, d)];
    let (w, d) = pty_works();
    out.push(("pty-works".into(), w, d));
    if let Ok(list) = std::env::var("PROBE_EXPECT_WRITABLE_DEVICE") {
        let (w, d) = ioctl_rw_node(&list);
        out.push(("device-ioctl-rw".into(), w, d));
    }
    if std::env::var("PROBE_EXPECT_HARDENING").is_ok() {
        let (w, d) = hardening();
        out.push(("host-hardening".into(), w, d));
    }
    out
}

/// unix, inet, inet6 and netlink sockets open.
fn default_families() -> (bool, String) {
    let tries = [
        (libc::AF_UNIX, libc::SOCK_STREAM, 0, "unix"),
        (libc::AF_INET, libc::SOCK_DGRAM, 0, "inet"),
        (libc::AF_INET6, libc::SOCK_DGRAM, 0, "inet6"),
        (libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE, "netlink"),
    ];
    for (f, ty, proto, name) in tries {
        // SAFETY: plain socket call.
        let fd = unsafe { libc::socket(f, ty | libc::SOCK_CLOEXEC, proto) };
        if fd < 0 {
            return (false, format!("socket {name}: {}", errno_name(errno())));
        }
        close(fd);
    }
    (true, "unix, inet, inet6, netlink sockets open".into())
}

/// A pty pair can be made and its slave answers TCGETS.
fn pty_works() -> (bool, String) {
    let end = sys::run_closure_in_child(
        &|| match own_pty() {
            Ok((m, s)) => {
                // SAFETY: a zeroed termios TCGETS fills.
                let mut t: libc::termios = unsafe { std::mem::zeroed() };
                // SAFETY: valid pointer.
                let r = unsafe { libc::ioctl(s, TCGETS as _, &mut t) };
                let e = errno();
                close(s);
                close(m);
                if r == 0 {
                    "ok".into()
                } else {
                    format!("TCGETS on the pty: {}", errno_name(e))
                }
            }
            Err(o) => format!("{o:?}"),
        },
        INNER,
    );
    match end {
        sys::ChildEnd::Report(t) if t == "ok" => (true, "a pty opened and its slave answered TCGETS".into()),
        other => (false, format!("{other:?}")),
    }
}

/// TCGETS on the serial node granted `rw` works (its ioctl right is kept).
fn ioctl_rw_node(list: &str) -> (bool, String) {
    let Some(path) = list.split(',').map(str::trim).find(|p| std::fs::metadata(p).is_ok()) else {
        return (false, format!("none of {list} exists"));
    };
    let Some(c) = sys::cs(path) else {
        return (false, format!("bad path {path:?}"));
    };
    let fd = open(&c, libc::O_RDWR | libc::O_NONBLOCK | libc::O_NOCTTY, 0);
    if fd < 0 {
        return (false, format!("open {path}: {}", errno_name(errno())));
    }
    // SAFETY: a zeroed termios TCGETS fills.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer.
    let r = unsafe { libc::ioctl(fd, TCGETS as _, &mut t) };
    let e = errno();
    close(fd);
    if r == 0 {
        (true, format!("TCGETS on {path} (granted rw) answered"))
    } else {
        (false, format!("TCGETS on {path}: {}", errno_name(e)))
    }
}

/// The host settings berth wrote at boot, as this container reads them
/// (the `fs.protected_*` ones are root-only and not readable here).
fn hardening() -> (bool, String) {
    let want: [(&CStr, &str); 5] = [
        (c"/proc/sys/kernel/kptr_restrict", "2"),
        (c"/proc/sys/kernel/dmesg_restrict", "1"),
        (c"/proc/sys/kernel/modules_disabled", "1"),
        (c"/proc/sys/fs/suid_dumpable", "0"),
        (c"/proc/sys/vm/memfd_noexec", "2"),
    ];
    let mut seen = Vec::new();
    for (path, value) in want {
        let p = path.to_string_lossy();
        match std::fs::read_to_string(&*p) {
            Ok(t) if t.trim() == value => seen.push(format!("{p}={value}")),
            Ok(t) => return (false, format!("{p} is {:?}, want {value}", t.trim())),
            Err(e) => return (false, format!("read {p}: {}", sys::io_errno_name(&e))),
        }
    }
    (true, seen.join(" "))
}
