//! What must work inside the container: its image is readable, its tmpfs
//! and volume writable, its granted capability and device usable, its uid 0 mapped
//! to an unprivileged outside uid, its own pid namespace.

use std::fs;

use crate::sys::{self, close, errno, errno_name, io_errno_name, open};
use crate::{parse_id_map, root_outside, status_cap};

/// Highest pid the probe may have and still count as "in its own pid
/// namespace" (PID 1, or a child of a small container init).
const LOW_PID: i32 = 16;

pub fn cap_eff() -> Option<u64> {
    status_cap(&fs::read_to_string("/proc/self/status").ok()?, "CapEff:")
}

pub fn cap_prm() -> Option<u64> {
    status_cap(&fs::read_to_string("/proc/self/status").ok()?, "CapPrm:")
}

/// `(name, works, detail)` for every check, in order.
pub fn run_all() -> Vec<(String, bool, String)> {
    let mut out = Vec::new();
    let (w, d) = read_image();
    out.push(("image-read".to_string(), w, d));
    let (w, d) = tmp_rw();
    out.push(("tmp-rw".to_string(), w, d));
    let (w, d) = uid_map();
    out.push(("uid-map".to_string(), w, d));
    let (w, d) = own_pid_ns();
    out.push(("pid-ns".to_string(), w, d));
    if let Ok(cap) = std::env::var("PROBE_EXPECT_CAP") {
        let (w, d) = granted_cap(cap.trim());
        out.push(("granted-cap".to_string(), w, d));
    }
    if let Ok(dev) = std::env::var("PROBE_EXPECT_DEVICE") {
        let (w, d) = granted_device(dev.trim());
        out.push(("granted-device".to_string(), w, d));
    }
    if let Ok(dir) = std::env::var("PROBE_EXPECT_VOLUME") {
        let (w, d) = volume_rw(dir.trim());
        out.push(("volume".to_string(), w, d));
    }
    if let Ok(dev) = std::env::var("PROBE_EXPECT_DEVICE_READ_ONLY") {
        let (w, d) = read_only_device(dev.trim());
        out.push(("device-write-denied".to_string(), w, d));
    }
    if let Ok(list) = std::env::var("PROBE_EXPECT_WRITABLE_DEVICE") {
        let (w, d) = writable_device(&list);
        out.push(("granted-device-write".to_string(), w, d));
    }
    if let Ok(list) = std::env::var("PROBE_EXPECT_ABSENT_DEVICES") {
        let (w, d) = absent_devices(&list);
        out.push(("ungranted-absent".to_string(), w, d));
    }
    if let Ok(n) = std::env::var("PROBE_EXPECT_NOFILE") {
        let (w, d) = rlimits(n.trim());
        out.push(("rlimits".to_string(), w, d));
    }
    let (w, d) = apparmor_label();
    out.push(("apparmor-label".to_string(), w, d));
    if std::env::var("PROBE_EXPECT_LANDLOCK").is_ok() {
        let (w, d) = landlock_active();
        out.push(("landlock-active".to_string(), w, d));
    }
    if let Ok(path) = std::env::var("PROBE_EXPECT_EXEC_DENIED") {
        let (w, d) = exec_denied(path.trim());
        out.push(("exec-denied".to_string(), w, d));
    }
    if let Ok(path) = std::env::var("PROBE_EXPECT_EXEC_WORKS") {
        let (w, d) = exec_works(path.trim());
        out.push(("exec-works".to_string(), w, d));
    }
    out.extend(crate::surface::works());
    out
}

/// The AppArmor label the probe runs under (the per-LSM attribute, or the
/// legacy one), as `label="..."`: the scenario knows which it wants.
fn apparmor_label() -> (bool, String) {
    let text = fs::read_to_string("/proc/self/attr/apparmor/current").or_else(|_| fs::read_to_string("/proc/self/attr/current"));
    match text {
        Ok(t) => (true, format!("label={}", t.trim_end_matches(['\n', '\0']).replace(' ', "_"))),
        Err(e) => (false, format!("read /proc/self/attr/apparmor/current: {}", io_errno_name(&e))),
    }
}

/// Landlock is in force: `/proc/self/comm` is the probe's own file, on a
/// read-write /proc, and its mode lets its owner write, so only Landlock
/// (which leaves /proc read-only) can refuse opening it for writing, with
/// EACCES.
fn landlock_active() -> (bool, String) {
    use std::os::unix::fs::MetadataExt;
    let path = c"/proc/self/comm";
    let meta = match fs::metadata("/proc/self/comm") {
        Ok(m) => m,
        Err(e) => return (false, format!("stat /proc/self/comm: {}", io_errno_name(&e))),
    };
    let euid = sys::geteuid();
    if meta.uid() != euid || meta.mode() & 0o200 == 0 {
        return (false, format!("/proc/self/comm is uid {} mode {:o}, not writable by uid {euid}", meta.uid(), meta.mode()));
    }
    // SAFETY: statvfs fills a struct we own; the path is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return (false, format!("statvfs /proc: {}", errno_name(errno())));
    }
    #[allow(clippy::unnecessary_cast)]
    if st.f_flag as u64 & libc::ST_RDONLY as u64 != 0 {
        return (false, "/proc is mounted read-only: the check would prove nothing".into());
    }
    let fd = open(path, libc::O_WRONLY | libc::O_CLOEXEC, 0);
    if fd >= 0 {
        close(fd);
        return (false, "opened /proc/self/comm for writing: no Landlock ruleset in force".into());
    }
    match errno() {
        libc::EACCES => (true, "own /proc/self/comm (rw mount, owner-writable) refused with EACCES".into()),
        e => (false, format!("open /proc/self/comm for writing: {} (want EACCES)", errno_name(e))),
    }
}

/// Run `path --exit 0` and say how it went: `Ok(exit code)` or the errno
/// of its execve.
fn run_exit0(path: &str) -> Result<i32, i32> {
    std::process::Command::new(path)
        .args(["--exit", "0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|st| st.code().unwrap_or(-1))
        .map_err(|e| e.raw_os_error().unwrap_or(-1))
}

/// A program of the image outside `exec_paths` does not run: EACCES.
fn exec_denied(path: &str) -> (bool, String) {
    match run_exit0(path) {
        Err(libc::EACCES) => (true, format!("execve {path}: EACCES")),
        Err(e) => (false, format!("execve {path}: {} (want EACCES)", errno_name(e))),
        Ok(code) => (false, format!("{path} ran (exit {code})")),
    }
}

/// Without `exec_paths`, the same program runs.
fn exec_works(path: &str) -> (bool, String) {
    match run_exit0(path) {
        Ok(0) => (true, format!("{path} ran and exited 0")),
        Ok(code) => (false, format!("{path} exited {code}")),
        Err(e) => (false, format!("execve {path}: {}", errno_name(e))),
    }
}

/// RLIMIT_NOFILE is what the manifest asked for, and core dumps are off.
fn rlimits(want: &str) -> (bool, String) {
    let get = |r| {
        let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes one rlimit struct we own.
        let ok = unsafe { libc::getrlimit(r, &mut l) } == 0;
        // rlim_t is 32-bit on armv7 glibc, 64-bit elsewhere.
        #[allow(clippy::unnecessary_cast)]
        let v = (l.rlim_cur as u64, l.rlim_max as u64);
        ok.then_some(v)
    };
    let (Some(nofile), Some(core)) = (get(libc::RLIMIT_NOFILE), get(libc::RLIMIT_CORE)) else {
        return (false, "getrlimit failed".into());
    };
    let want: u64 = want.parse().unwrap_or(0);
    let ok = nofile == (want, want) && core == (0, 0);
    (ok, format!("nofile={}/{} core={}/{}", nofile.0, nofile.1, core.0, core.1))
}

/// The persistent volume takes a file, keeps it through fsync, and gives
/// it back.
fn volume_rw(dir: &str) -> (bool, String) {
    use std::io::Write;
    let path = format!("{dir}/.berth-probe-volume");
    let data = b"berth-probe volume check\n";
    let written = fs::File::create(&path).and_then(|mut f| {
        f.write_all(data)?;
        f.sync_all()
    });
    if let Err(e) = written {
        return (false, format!("write {path}: {}", io_errno_name(&e)));
    }
    let r = fs::read(&path);
    let _ = fs::remove_file(&path);
    match r {
        Ok(b) if b == data => (true, format!("wrote, synced and read back {} bytes in {dir}", data.len())),
        Ok(b) => (false, format!("read back {} bytes that differ", b.len())),
        Err(e) => (false, format!("read {path}: {}", io_errno_name(&e))),
    }
}

/// The probe's own executable (part of the image) starts with the ELF
/// magic; so does a second read through its path, when the image has it.
fn read_image() -> (bool, String) {
    match fs::File::open("/proc/self/exe").and_then(|mut f| {
        let mut b = [0u8; 4];
        std::io::Read::read_exact(&mut f, &mut b).map(|_| b)
    }) {
        Ok(b) if &b == b"\x7fELF" => {
            let exe = fs::read_link("/proc/self/exe").map(|p| p.to_string_lossy().into_owned()).unwrap_or_else(|_| "?".into());
            (true, format!("read ELF header of {exe}"))
        }
        Ok(b) => (false, format!("/proc/self/exe starts with {b:02x?}, not ELF")),
        Err(e) => (false, format!("read /proc/self/exe: {}", io_errno_name(&e))),
    }
}

fn tmp_rw() -> (bool, String) {
    let path = "/tmp/.berth-probe-rw";
    let data = b"berth-probe tmpfs check\n";
    if let Err(e) = fs::write(path, data) {
        return (false, format!("write {path}: {}", io_errno_name(&e)));
    }
    let r = fs::read(path);
    let _ = fs::remove_file(path);
    match r {
        Ok(b) if b == data => (true, format!("wrote and read back {} bytes in /tmp", data.len())),
        Ok(b) => (false, format!("read back {} bytes that differ", b.len())),
        Err(e) => (false, format!("read {path}: {}", io_errno_name(&e))),
    }
}

fn uid_map() -> (bool, String) {
    let text = match fs::read_to_string("/proc/self/uid_map") {
        Ok(t) => t,
        Err(e) => return (false, format!("read /proc/self/uid_map: {}", io_errno_name(&e))),
    };
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match parse_id_map(&text).as_deref().map(root_outside) {
        Some(Some(o)) if o != 0 => (true, format!("outside={o} uid_map=\"{flat}\"")),
        Some(Some(_)) => (false, format!("uid 0 maps to outside uid 0: uid_map=\"{flat}\"")),
        Some(None) => (false, format!("no mapping for uid 0: uid_map=\"{flat}\"")),
        None => (false, format!("unparsable uid_map=\"{flat}\"")),
    }
}

fn own_pid_ns() -> (bool, String) {
    // SAFETY: no preconditions.
    let pid = unsafe { libc::getpid() };
    (pid <= LOW_PID, format!("pid={pid}"))
}

/// Capability numbers the probe knows by name.
pub fn cap_number(name: &str) -> Option<u32> {
    let n = name.trim().to_ascii_uppercase();
    let n = n.strip_prefix("CAP_").unwrap_or(&n);
    let table: &[(&str, u32)] = &[
        ("CHOWN", 0),
        ("DAC_OVERRIDE", 1),
        ("DAC_READ_SEARCH", 2),
        ("FOWNER", 3),
        ("FSETID", 4),
        ("KILL", 5),
        ("SETGID", 6),
        ("SETUID", 7),
        ("SETPCAP", 8),
        ("LINUX_IMMUTABLE", 9),
        ("NET_BIND_SERVICE", 10),
        ("NET_BROADCAST", 11),
        ("NET_ADMIN", 12),
        ("NET_RAW", 13),
        ("IPC_LOCK", 14),
        ("IPC_OWNER", 15),
        ("SYS_MODULE", 16),
        ("SYS_RAWIO", 17),
        ("SYS_CHROOT", 18),
        ("SYS_PTRACE", 19),
        ("SYS_PACCT", 20),
        ("SYS_ADMIN", 21),
        ("SYS_BOOT", 22),
        ("SYS_NICE", 23),
        ("SYS_RESOURCE", 24),
        ("SYS_TIME", 25),
        ("SYS_TTY_CONFIG", 26),
        ("MKNOD", 27),
        ("LEASE", 28),
        ("AUDIT_WRITE", 29),
        ("AUDIT_CONTROL", 30),
        ("SETFCAP", 31),
        ("MAC_OVERRIDE", 32),
        ("MAC_ADMIN", 33),
        ("SYSLOG", 34),
        ("WAKE_ALARM", 35),
        ("BLOCK_SUSPEND", 36),
        ("AUDIT_READ", 37),
        ("PERFMON", 38),
        ("BPF", 39),
        ("CHECKPOINT_RESTORE", 40),
    ];
    table.iter().find(|(k, _)| *k == n).map(|(_, v)| *v)
}

/// The capability is in the effective set and, for the ones with an easy
/// functional test, actually works.
fn granted_cap(name: &str) -> (bool, String) {
    let Some(bit) = cap_number(name) else {
        return (false, format!("unknown capability {name:?}"));
    };
    let eff = match cap_eff() {
        Some(e) => e,
        None => return (false, "cannot read CapEff from /proc/self/status".into()),
    };
    let held = eff & (1u64 << bit) != 0;
    let base = format!("{name} bit {bit} {} CapEff={eff:016x}", if held { "in" } else { "not in" });
    if !held {
        return (false, base);
    }
    match bit {
        10 => match bind_low_port() {
            Ok(()) => (true, format!("{base}; bound TCP 0.0.0.0:80")),
            Err(e) => (false, format!("{base}; bind TCP port 80: {}", errno_name(e))),
        },
        13 => {
            // SAFETY: plain socket call.
            let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::IPPROTO_ICMP) };
            if fd < 0 {
                return (false, format!("{base}; raw ICMP socket: {}", errno_name(errno())));
            }
            close(fd);
            (true, format!("{base}; opened a raw ICMP socket"))
        }
        _ => (true, format!("{base} (no functional test for this one)")),
    }
}

/// Bind a TCP socket to port 80 on any address (the loopback of a fresh
/// network namespace may be down, so not 127.0.0.1).
fn bind_low_port() -> Result<(), i32> {
    // SAFETY: plain socket calls on a zeroed sockaddr_in.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(errno());
        }
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        sa.sin_port = 80u16.to_be();
        sa.sin_addr.s_addr = 0;
        let r = libc::bind(fd, &sa as *const libc::sockaddr_in as *const libc::sockaddr, std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t);
        let e = errno();
        close(fd);
        if r != 0 {
            return Err(e);
        }
    }
    Ok(())
}

fn granted_device(path: &str) -> (bool, String) {
    let Some(c) = sys::cs(path) else {
        return (false, format!("bad device path {path:?}"));
    };
    let fd = open(&c, libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY, 0);
    if fd < 0 {
        return (false, format!("open {path}: {}", errno_name(errno())));
    }
    let r = sys::read_some(fd, 16);
    close(fd);
    match r {
        Ok(b) => (true, format!("opened {path}, read {} bytes", b.len())),
        Err(e) if e == libc::EAGAIN => (true, format!("opened {path}, no data ready (EAGAIN)")),
        Err(e) => (false, format!("opened {path}, read: {}", errno_name(e))),
    }
}

/// The first node of a comma-separated list that exists (boards name their
/// serial ports differently) opens for writing.
fn writable_device(list: &str) -> (bool, String) {
    let Some(path) = list.split(',').map(str::trim).find(|p| fs::metadata(p).is_ok()) else {
        return (false, format!("none of {list} exists"));
    };
    let Some(c) = sys::cs(path) else {
        return (false, format!("bad device path {path:?}"));
    };
    let fd = open(&c, libc::O_WRONLY | libc::O_NONBLOCK | libc::O_NOCTTY, 0);
    if fd < 0 {
        return (false, format!("open {path} for writing: {}", errno_name(errno())));
    }
    close(fd);
    (true, format!("opened {path} for writing"))
}

/// None of these nodes is in this container's /dev, and none can be made
/// (`major:minor` of each is tried with mknod in /tmp).
fn absent_devices(list: &str) -> (bool, String) {
    use std::os::unix::fs::FileTypeExt;
    let mut seen = Vec::new();
    for p in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Ok(m) = fs::metadata(p) {
            seen.push(format!("{p} exists ({})", if m.file_type().is_char_device() { "char" } else { "other" }));
        }
    }
    for (major, minor) in [(204u32, 65u32), (4, 65), (10, 183)] {
        let path = format!("/tmp/.berth-probe-node-{major}-{minor}");
        let Some(c) = sys::cs(&path) else { continue };
        // SAFETY: mknod on a NUL-terminated path we own.
        let r = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(major, minor)) };
        if r == 0 {
            let _ = fs::remove_file(&path);
            seen.push(format!("mknod {major}:{minor} succeeded"));
        } else if errno() != libc::EPERM {
            seen.push(format!("mknod {major}:{minor}: {} (not EPERM)", errno_name(errno())));
        }
    }
    if seen.is_empty() {
        (true, format!("absent and not creatable: {list}"))
    } else {
        (false, seen.join("; "))
    }
}

/// A node granted read-only: its file mode lets this uid write, yet opening
/// it for writing fails with EPERM: the cgroup device controller, not the
/// mode, stops it.
fn read_only_device(path: &str) -> (bool, String) {
    use std::os::unix::fs::MetadataExt;
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) => return (false, format!("stat {path}: {}", io_errno_name(&e))),
    };
    let euid = sys::geteuid();
    if meta.uid() != euid || meta.mode() & 0o200 == 0 {
        return (false, format!("{path} is uid {} mode {:o}: its mode already forbids writing to uid {euid}", meta.uid(), meta.mode() & 0o7777));
    }
    let Some(c) = sys::cs(path) else {
        return (false, format!("bad device path {path:?}"));
    };
    let fd = open(&c, libc::O_WRONLY | libc::O_NONBLOCK | libc::O_NOCTTY, 0);
    if fd >= 0 {
        close(fd);
        return (false, format!("opened {path} for writing"));
    }
    let e = errno();
    let ok = e == libc::EPERM;
    (ok, format!("mode {:o} owner {euid}, open for write: {}", meta.mode() & 0o7777, errno_name(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_names() {
        assert_eq!(cap_number("CAP_NET_BIND_SERVICE"), Some(10));
        assert_eq!(cap_number("net_raw"), Some(13));
        assert_eq!(cap_number("CAP_SYS_BOOT"), Some(22));
        assert_eq!(cap_number("CAP_NOPE"), None);
    }
}
