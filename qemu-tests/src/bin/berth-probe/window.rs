//! `--check-window`: what a container can reach of a readiness or health
//! command that berth starts inside it, while that command is still a copy
//! of berth: forked from PID 1, joined to the container's namespaces, not
//! yet replaced by its exec.
//!
//! The `check-window` scenario holds the `window` container's health
//! command at its `signals` setup step (the test hook
//! `berth.hang=window.check:signals`): it has taken the container's ids and
//! capabilities but still holds berth's memory. Inside the container it
//! shows with parent 0 (its parent, berth's waiter, is outside the PID
//! namespace). Each attempt finds it ([`held_check`]) and then:
//!
//! | attempt | refused when |
//! |---|---|
//! | `check-window-dumpable` | its `/proc/PID/environ` belongs to the overflow uid, not to the command's own uid |
//! | `check-window-proc-mem` | opening `/proc/PID/mem` fails with EACCES or EPERM |
//! | `check-window-proc-environ` | opening `/proc/PID/environ` fails with EACCES or EPERM |
//! | `check-window-ptrace` | `PTRACE_ATTACH` fails with EPERM (or seccomp kills) |
//!
//! The first is exact about the command's dumpable flag: the kernel gives
//! a process's `/proc` files to its effective uid while it is dumpable, and
//! to root of its memory's user namespace while it is not. Its memory is
//! berth's, made in the initial namespace, whose root is unmapped here:
//! the overflow uid. The other three are refused by several layers at once
//! (the flag, Landlock's ptrace scoping, seccomp): they show that the
//! command cannot be read or traced, not which layer refused.
//!
//! Then `PROBE done ...` as in the default mode, and sleep until SIGTERM.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use libc::{EACCES, EPERM};

use crate::sys::{self, close, failed, open};
use crate::{Attempt, Counts, Outcome};

pub const USAGE: &str = "--check-window";

/// How long an attempt looks for the held command.
const FIND_WAIT: Duration = Duration::from_secs(15);
/// Between two looks for it.
const LOOK_EVERY: Duration = Duration::from_millis(200);
/// The kernel's overflow uid when its sysctl cannot be read.
const OVERFLOW_DEFAULT: u32 = 65534;

/// The attempts, in the order they run.
pub fn table() -> &'static [Attempt] {
    static TABLE: &[Attempt] = &[
        Attempt { name: "check-window-dumpable", run: dumpable, accept: &[] },
        Attempt { name: "check-window-proc-mem", run: || open_proc("mem"), accept: &[EACCES, EPERM] },
        Attempt { name: "check-window-proc-environ", run: || open_proc("environ"), accept: &[EACCES, EPERM] },
        Attempt { name: "check-window-ptrace", run: ptrace_attach, accept: &[EPERM] },
    ];
    TABLE
}

pub fn run(timeout: Duration) -> ! {
    let mut counts = Counts::default();
    for a in table() {
        let (v, detail) = crate::run_attempt(a, timeout);
        counts.add(v);
        crate::say(&crate::result_line(a.name, v, &detail));
        sys::reap_orphans();
    }
    crate::say(&crate::summary_line(&counts));
    crate::lifecycle::run(&["--sleep".to_string()])
}

/// A `Name:` line of a status file, its fields joined by spaces.
fn status_field(status: &str, name: &str) -> Option<String> {
    let line = status.lines().find(|l| l.starts_with(name))?;
    Some(line.get(name.len()..)?.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// A held command: parent 0, not PID 1, past its credential steps (its
/// `Uid:` and `Gid:` lines are the probe's own). `(pid, euid)`.
fn find_once(own_uid: &str, own_gid: &str) -> Option<(u32, u32)> {
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if pid == 1 {
            continue;
        }
        let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        let ids = (status_field(&status, "Uid:"), status_field(&status, "Gid:"));
        if status_field(&status, "PPid:").as_deref() == Some("0") && ids.0.as_deref() == Some(own_uid) && ids.1.as_deref() == Some(own_gid) {
            let euid = own_uid.split(' ').nth(1)?.parse().ok()?;
            return Some((pid, euid));
        }
    }
    None
}

/// Wait up to [`FIND_WAIT`] for the held command: the same one found on
/// two looks [`LOOK_EVERY`] apart (it has stopped in its setup, not just
/// passing through).
fn held_check() -> Result<(u32, u32), Outcome> {
    let own = fs::read_to_string("/proc/self/status").map_err(|e| Outcome::Error(format!("read /proc/self/status: {}", sys::io_errno_name(&e))))?;
    let (Some(uid), Some(gid)) = (status_field(&own, "Uid:"), status_field(&own, "Gid:")) else {
        return Err(Outcome::Error("no Uid:/Gid: in /proc/self/status".into()));
    };
    let start = Instant::now();
    let mut last = None;
    loop {
        let found = find_once(&uid, &gid);
        if found.is_some() && found == last {
            return found.ok_or_else(|| Outcome::Error("lost the held check".into()));
        }
        last = found;
        if start.elapsed() > FIND_WAIT {
            return Err(Outcome::Error(format!("no held check (parent 0, ids {uid} / {gid}) in {}s", FIND_WAIT.as_secs())));
        }
        std::thread::sleep(LOOK_EVERY);
    }
}

fn dumpable() -> Outcome {
    let (pid, euid) = match held_check() {
        Ok(f) => f,
        Err(o) => return o,
    };
    let path = format!("/proc/{pid}/environ");
    let owner = match fs::metadata(&path) {
        Ok(m) => m.uid(),
        Err(e) => return Outcome::Error(format!("stat {path}: {}", sys::io_errno_name(&e))),
    };
    let overflow = fs::read_to_string("/proc/sys/kernel/overflowuid").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(OVERFLOW_DEFAULT);
    if owner == euid && owner != overflow {
        Outcome::Escaped(format!("dumpable: {path} belongs to uid {owner}, the command's own"))
    } else if owner == overflow && euid != overflow {
        Outcome::Blocked(format!("not dumpable: {path} belongs to uid {owner} (the overflow uid: root outside), the command runs as uid {euid}"))
    } else {
        Outcome::Error(format!("{path} belongs to uid {owner}; the command runs as uid {euid}, the overflow uid is {overflow}"))
    }
}

fn open_proc(file: &str) -> Outcome {
    let pid = match held_check() {
        Ok((pid, _)) => pid,
        Err(o) => return o,
    };
    let path = format!("/proc/{pid}/{file}");
    let Some(c) = sys::cs(&path) else {
        return Outcome::Error(format!("bad path {path}"));
    };
    let fd = open(&c, libc::O_RDONLY | libc::O_CLOEXEC, 0);
    if fd < 0 {
        return failed(format!("open {path}"));
    }
    close(fd);
    Outcome::Succeeded(format!("opened {path} of the held check"))
}

fn ptrace_attach() -> Outcome {
    let pid = match held_check() {
        Ok((pid, _)) => pid,
        Err(o) => return o,
    };
    // SAFETY: PTRACE_ATTACH and PTRACE_DETACH take no buffers.
    let r = unsafe { libc::syscall(libc::SYS_ptrace, libc::PTRACE_ATTACH as libc::c_long, pid as libc::c_long, 0 as libc::c_long, 0 as libc::c_long) };
    if r < 0 {
        return failed(format!("ptrace(PTRACE_ATTACH, held check {pid})"));
    }
    // SAFETY: as above.
    unsafe {
        libc::syscall(libc::SYS_ptrace, libc::PTRACE_DETACH as libc::c_long, pid as libc::c_long, 0 as libc::c_long, 0 as libc::c_long);
    }
    Outcome::Succeeded(format!("attached to the held check {pid}"))
}
