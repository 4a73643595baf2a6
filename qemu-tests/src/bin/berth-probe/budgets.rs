//! Modes of the `budgets` scenario: one container exhausts its per-user
//! kernel budgets and its memory, its neighbour must still get its own.
//!
//! - `--exhaust PAUSE_MS`: open inotify instances until `inotify_init1`
//!   fails, then POSIX message queues (default attributes) until `mq_open`
//!   fails, keeping all of them open, and print
//!   `PROBE budget inotify=N inotify_error=E inotify_limit=L mqueue=M mqueue_error=E`
//!   (`L`: `fs.inotify.max_user_instances` as the container reads it); then
//!   `READY=1` on the notify socket; wait PAUSE_MS (the neighbour, started
//!   once this one is ready, takes its own); then grow: 1 MiB at a time,
//!   alternately into a memfd and into `/tmp/fill` (a tmpfs; once it is
//!   full, the memfd only), printing `PROBE grow mib=N` after each, until
//!   the kernel kills it.
//! - `--neighbour BEAT_MS`: one inotify instance and one message queue,
//!   `PROBE neighbour inotify=ok|ERRNO mqueue=ok|ERRNO`, then
//!   `PROBE neighbour beat=N` every BEAT_MS, forever.

use std::time::Duration;

use super::sys::errno_name;

pub const USAGE: &str = "--exhaust PAUSE_MS, --neighbour BEAT_MS";

/// Most instances or queues tried (far above any default budget).
const TRY_MAX: u32 = 100_000;

pub fn run(args: &[String]) -> ! {
    let ms = args.get(1).and_then(|v| v.parse::<u64>().ok());
    match (args.first().map(String::as_str), ms) {
        (Some("--exhaust"), Some(ms)) => exhaust(ms),
        (Some("--neighbour"), Some(ms)) => neighbour(ms),
        _ => {
            eprintln!("berth-probe: usage: {USAGE}");
            std::process::exit(2)
        }
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// One inotify instance: Ok(fd) or the errno.
fn inotify() -> Result<i32, i32> {
    // SAFETY: plain integer flags.
    let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
    if fd < 0 {
        Err(errno())
    } else {
        Ok(fd)
    }
}

/// One message queue named `name` (no leading '/': the raw call takes the
/// name the C library would pass), default attributes.
fn mqueue(name: &str) -> Result<i64, i32> {
    let Ok(c) = std::ffi::CString::new(name) else {
        return Err(libc::EINVAL);
    };
    let flags = libc::O_CREAT | libc::O_RDWR | libc::O_CLOEXEC;
    // SAFETY: a NUL-terminated name, integer flags and mode, no attributes.
    let fd = unsafe { libc::syscall(libc::SYS_mq_open, c.as_ptr(), flags, 0o600 as libc::c_uint, core::ptr::null::<u8>()) };
    if fd < 0 {
        Err(errno())
    } else {
        Ok(fd as i64)
    }
}

/// Call `open` until it fails: (how many worked, the failure's errno).
fn until_failure<T>(mut open: impl FnMut(u32) -> Result<T, i32>, kept: &mut Vec<T>) -> (u32, i32) {
    for i in 0..TRY_MAX {
        match open(i) {
            Ok(v) => kept.push(v),
            Err(e) => return (i, e),
        }
    }
    (TRY_MAX, 0)
}

fn exhaust(pause_ms: u64) -> ! {
    let mut fds: Vec<i32> = Vec::new();
    let mut queues: Vec<i64> = Vec::new();
    let (n, ie) = until_failure(|_| inotify(), &mut fds);
    let pid = std::process::id();
    let (q, qe) = until_failure(|i| mqueue(&format!("budget-{pid}-{i}")), &mut queues);
    let limit = std::fs::read_to_string("/proc/sys/fs/inotify/max_user_instances").map(|s| s.trim().to_string()).unwrap_or_else(|_| "-".into());
    super::say(&format!("PROBE budget inotify={n} inotify_error={} inotify_limit={limit} mqueue={q} mqueue_error={}", errno_name(ie), errno_name(qe)));
    super::lifecycle::notify("READY=1");
    std::thread::sleep(Duration::from_millis(pause_ms));
    grow()
}

/// 1 MiB into a memfd or the tmpfs file, alternately, until killed.
fn grow() -> ! {
    // SAFETY: a NUL-terminated name and integer flags.
    let memfd = unsafe { libc::syscall(libc::SYS_memfd_create, c"budget".as_ptr(), libc::MFD_CLOEXEC | 0x0008) } as i32;
    if memfd < 0 {
        super::say(&format!("PROBE grow error=memfd_create:{}", errno_name(errno())));
    }
    let path = c"/tmp/fill";
    // SAFETY: a NUL-terminated path, integer flags and mode.
    let mut file = unsafe { libc::open(path.as_ptr(), libc::O_CREAT | libc::O_WRONLY | libc::O_APPEND | libc::O_CLOEXEC, 0o600) };
    let chunk = vec![0x5au8; 1 << 20];
    let (mut mib, mut turn) = (0u32, 0u32);
    loop {
        turn += 1;
        let fd = if file >= 0 && turn % 2 == 0 { file } else { memfd };
        if fd < 0 {
            super::say("PROBE grow error=nothing-to-write");
            std::thread::sleep(Duration::from_secs(3600));
            continue;
        }
        if write_all(fd, &chunk) {
            mib += 1;
            super::say(&format!("PROBE grow mib={mib}"));
        } else if fd == file {
            super::say(&format!("PROBE grow tmpfs-full mib={mib} error={}", errno_name(errno())));
            file = -1;
        } else {
            super::say(&format!("PROBE grow error=write:{}", errno_name(errno())));
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn write_all(fd: i32, mut buf: &[u8]) -> bool {
    while !buf.is_empty() {
        // SAFETY: a valid buffer and its length.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n <= 0 {
            return false;
        }
        buf = buf.get(n as usize..).unwrap_or(&[]);
    }
    true
}

fn neighbour(beat_ms: u64) -> ! {
    let word = |r: Result<i64, i32>| match r {
        Ok(_) => "ok".to_string(),
        Err(e) => errno_name(e),
    };
    let i = inotify().map(i64::from);
    let q = mqueue(&format!("neighbour-{}", std::process::id()));
    super::say(&format!("PROBE neighbour inotify={} mqueue={}", word(i), word(q)));
    for beat in 1u64.. {
        std::thread::sleep(Duration::from_millis(beat_ms));
        super::say(&format!("PROBE neighbour beat={beat}"));
    }
    std::process::exit(0)
}
