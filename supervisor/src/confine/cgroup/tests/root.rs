//! Real cgroups on this host: root only, with `BERTH_ROOT_TESTS=1`. Each test
//! works in its own `berth-test-<pid>-...` directories and removes them.

use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::super::act::{self, CgroupDir, Version};
use super::super::limits::Limits;
use super::super::*;
use crate::sys::cgroup as sys;

fn on(name: &str) -> bool {
    crate::common::roottests::enabled(name)
}

/// The v2 hierarchy: `/sys/fs/cgroup/unified` on a hybrid host, else
/// `/sys/fs/cgroup` when that is v2.
fn v2_root() -> Option<PathBuf> {
    ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"].iter().map(PathBuf::from).find(|p| p.join("cgroup.subtree_control").exists())
}

fn unique(tag: &str) -> String {
    format!("berth-test-{}-{tag}", std::process::id())
}

/// Standard nodes, but urandom read-only: the access bits matter.
fn test_rules() -> Vec<DeviceRule> {
    let mut r = rules(&crate::confine::container::devices::nodes(&[], &super::board(), "app").unwrap());
    for x in &mut r {
        if x.minor == Minor::Exact(9) && x.major == 1 {
            x.access = ACC_READ;
        }
    }
    r
}

/// Stands for a `/dev/mem` (char 1:1) of our own, made per probe, since
/// hosts may lack one: the device number is what the filter sees.
const MEM: &str = "(mem 1:1)";

const PROBES: [(&str, libc::c_int); 6] = [
    ("/dev/null", libc::O_RDWR),
    ("/dev/zero", libc::O_RDONLY),
    ("/dev/urandom", libc::O_RDONLY),
    ("/dev/urandom", libc::O_WRONLY),
    (MEM, libc::O_RDONLY),
    ("/dev/kmsg", libc::O_RDONLY),
];

/// Make a unique char 1:1 node under /dev (devtmpfs: not `nodev`).
fn make_mem() -> PathBuf {
    use nix::sys::stat::{makedev, mknod, Mode, SFlag};
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let p = PathBuf::from(format!("/dev/{}-mem", unique(&N.fetch_add(1, Ordering::Relaxed).to_string())));
    mknod(&p, SFlag::S_IFCHR, Mode::from_bits_truncate(0o600), makedev(1, 1)).unwrap();
    p
}

/// Start a child that joins every `procs` file (writes `0`: itself), then
/// opens each probe; returns the errno of each open (0: opened).
fn probe(procs: &[PathBuf]) -> Vec<i32> {
    let mem = make_mem();
    let procs: Vec<CString> = procs.iter().map(|p| CString::new(p.to_str().unwrap()).unwrap()).collect();
    let probes: Vec<(CString, libc::c_int)> =
        PROBES.iter().map(|(p, f)| (CString::new(if *p == MEM { mem.to_str().unwrap() } else { p }).unwrap(), *f)).collect();
    let (rd, wr): (OwnedFd, OwnedFd) = nix::unistd::pipe().unwrap();
    let wfd = wr.as_raw_fd();
    let mut cmd = Command::new("/bin/true");
    // SAFETY: the hook runs between fork and exec and makes only
    // async-signal-safe calls (open, write, close) on data prepared before.
    unsafe {
        cmd.pre_exec(move || {
            for p in &procs {
                let fd = libc::open(p.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(fd);
            }
            for (p, flags) in &probes {
                let fd = libc::open(p.as_ptr(), *flags | libc::O_CLOEXEC);
                let code: u8 = if fd >= 0 {
                    libc::close(fd);
                    0
                } else {
                    nix::errno::Errno::last_raw() as u8
                };
                libc::write(wfd, (&code as *const u8).cast(), 1);
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    drop(wr);
    let mut out = Vec::new();
    std::fs::File::from(rd).read_to_end(&mut out).unwrap();
    let ok = child.wait().unwrap().success();
    std::fs::remove_file(&mem).unwrap();
    assert!(ok);
    out.into_iter().map(i32::from).collect()
}

fn show(res: &[i32]) -> String {
    PROBES
        .iter()
        .zip(res)
        .map(|((p, f), e)| {
            let mode = if *f == libc::O_RDONLY {
                "r"
            } else if *f == libc::O_WRONLY {
                "w"
            } else {
                "rw"
            };
            format!("{p}({mode})={}", if *e == 0 { "ok".to_owned() } else { nix::errno::Errno::from_raw(*e).to_string() })
        })
        .collect::<Vec<_>>()
        .join(" ")
}

const EXPECTED: [i32; 6] = [0, 0, 0, libc::EPERM, libc::EPERM, libc::EPERM];

#[test]
fn root_device_program_loads_and_bad_one_reports_the_verifier() {
    if !on("root_device_program_loads_and_bad_one_reports_the_verifier") {
        return;
    }
    let p = ebpf::generate(&test_rules()).unwrap();
    let fd = sys::prog_load(sys::BPF_PROG_TYPE_CGROUP_DEVICE, &p.to_bytes(), c"Apache-2.0 OR MIT", "berth_test");
    assert!(fd.is_ok(), "{:?}", fd.err());
    // r0 never set: the verifier refuses and says why.
    let bad = ebpf::exit().to_le_bytes();
    let e = sys::prog_load(sys::BPF_PROG_TYPE_CGROUP_DEVICE, &bad, c"Apache-2.0 OR MIT", "berth_bad").unwrap_err();
    eprintln!("refused as expected: {e}");
    assert_eq!(e.errno, nix::errno::Errno::EACCES);
    assert!(e.log.contains("R0"), "{e}");
}

#[test]
fn root_v2_device_filter_denies_open() {
    if !on("root_v2_device_filter_denies_open") {
        return;
    }
    let Some(base) = v2_root() else {
        eprintln!("no cgroup v2 hierarchy here");
        return;
    };
    let control = probe(&[]);
    eprintln!("outside: {}", show(&control));
    let dir = base.join(unique("v2"));
    std::fs::create_dir(&dir).unwrap();
    let fd = act::attach_device_filter(&dir, &test_rules());
    let cg = CgroupDir { version: Version::V2, dirs: vec![dir.clone()], program: fd.ok(), fd: None };
    let attached = std::fs::File::open(&dir).map(|d| sys::prog_query(std::os::fd::AsFd::as_fd(&d), sys::BPF_CGROUP_DEVICE, 8));
    let inside = if cg.program.is_some() { probe(&[dir.join("cgroup.procs")]) } else { Vec::new() };
    eprintln!("inside: {}", show(&inside));
    // A process that lingers: cgroup.kill (or SIGKILL) takes it on removal.
    let sleeper = sleeper(&[dir.join("cgroup.procs")]);
    let removed = act::kill_and_remove(cg);
    let status = reap(sleeper);
    assert!(removed.is_ok(), "{:?}", removed.err());
    assert!(!dir.exists());
    let attached = attached.unwrap().unwrap();
    eprintln!("query: {attached:?}");
    assert_eq!(attached.count, 1);
    assert_eq!(attached.flags, sys::BPF_F_ALLOW_MULTI);
    assert_eq!(inside, EXPECTED, "{}", show(&inside));
    assert_eq!(status, Some(libc::SIGKILL));
    // Outside the cgroup root opens the write-only urandom and kmsg, and
    // mem is not refused for permission: the program is what denies.
    assert_eq!(control[3], 0, "{}", show(&control));
    assert_ne!(control[4], libc::EPERM, "{}", show(&control));
    assert_eq!(control[5], 0, "{}", show(&control));
}

#[test]
fn root_v2_missing_controller_is_an_error() {
    if !on("root_v2_missing_controller_is_an_error") {
        return;
    }
    let Some(base) = v2_root() else { return };
    let available = std::fs::read_to_string(base.join("cgroup.controllers")).unwrap();
    if available.contains("pids") {
        eprintln!("pids is available here; nothing to show");
        return;
    }
    let root = base.join(unique("missing"));
    let e = act::create_v2(&root, "c1", &Limits::from_resources(None), &test_rules()).unwrap_err();
    eprintln!("{e}");
    assert!(e.to_string().contains("pids") && e.to_string().contains("cgroup.controllers"), "{e}");
    assert!(!root.exists());
}

/// A `sleep` joined to `procs` before it runs.
fn sleeper(procs: &[PathBuf]) -> std::process::Child {
    let procs: Vec<CString> = procs.iter().map(|p| CString::new(p.to_str().unwrap()).unwrap()).collect();
    let mut cmd = Command::new("sleep");
    cmd.arg("1000");
    // SAFETY: as in `probe`: open, write, close only.
    unsafe {
        cmd.pre_exec(move || {
            for p in &procs {
                let fd = libc::open(p.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(fd);
            }
            Ok(())
        });
    }
    cmd.spawn().unwrap()
}

fn reap(mut c: std::process::Child) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    let _ = c.kill();
    c.wait().unwrap().signal()
}

#[test]
fn root_v1_devices_limits_and_removal() {
    if !on("root_v1_devices_limits_and_removal") {
        return;
    }
    let mount = Path::new("/sys/fs/cgroup");
    if !mount.join("devices/devices.list").exists() {
        eprintln!("no v1 devices hierarchy here");
        return;
    }
    let group = unique("v1");
    let mut limits = Limits::from_resources(None);
    limits.pids_max = 16;
    limits.memory_max = Some(64 << 20);
    let cg = act::create_v1(mount, &group, "c1", &limits, &test_rules());
    let cleanup = |group: &str| {
        for h in ["devices", "pids", "memory"] {
            let _ = std::fs::remove_dir(mount.join(h).join(group));
        }
    };
    let cg = match cg {
        Ok(cg) => cg,
        Err(e) => {
            cleanup(&group);
            panic!("{e}");
        }
    };
    eprintln!("dirs: {:?}", cg.dirs);
    let list = std::fs::read_to_string(cg.dirs[0].join("devices.list")).unwrap_or_default();
    eprintln!("devices.list:\n{list}");
    let pids = std::fs::read_to_string(mount.join("pids").join(&group).join("c1/pids.max")).unwrap_or_default();
    let mem = std::fs::read_to_string(mount.join("memory").join(&group).join("c1/memory.limit_in_bytes")).unwrap_or_default();
    let inside = probe(&cg.dirs.iter().map(|d| d.join("cgroup.procs")).collect::<Vec<_>>());
    eprintln!("inside: {}", show(&inside));
    let events = cg.memory_events();
    let sleeper = sleeper(&cg.dirs.iter().map(|d| d.join("cgroup.procs")).collect::<Vec<_>>());
    let dirs = cg.dirs.clone();
    let removed = act::kill_and_remove(cg);
    let status = reap(sleeper);
    cleanup(&group);
    assert!(removed.is_ok(), "{:?}", removed.err());
    assert!(dirs.iter().all(|d| !d.exists()));
    assert!(!mount.join("devices").join(&group).exists());
    assert_eq!(pids.trim(), "16");
    assert_eq!(mem.trim(), (64u64 << 20).to_string());
    assert_eq!(inside, EXPECTED, "{}", show(&inside));
    assert_eq!(status, Some(libc::SIGKILL));
    let events = events.unwrap();
    assert_eq!(events.oom_kill, 0);
    // A v1 write the kernel refuses is an error naming the file.
    let e = act::write(&mount.join("devices/no-such-group/devices.deny"), "a").unwrap_err();
    assert!(e.to_string().contains("devices.deny"), "{e}");
}
