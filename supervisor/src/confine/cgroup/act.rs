//! Creating, filling and removing a container's cgroup: `std::fs` for the
//! files, [`crate::sys::cgroup`] for the device program. Every step's error
//! names the file (or directory) it was about.
//!
//! It must not wait in PID 1, nor leave half a cgroup behind: removal is one
//! non-blocking pass at a time, and a creation that fails removes what it
//! made.
//!
//! v2 (`create_v2`): enable the controllers the limits need top-down (the
//! parent of berth's subtree, then the subtree itself), create the
//! container's directory, write the limits, load the generated device
//! program (or take the same program kept loaded) and attach it with
//! `BPF_F_ALLOW_MULTI`. v1 (`create_v1`): one
//! directory per hierarchy (`devices` always, plus the limits' controllers),
//! the limits, then `a` to `devices.deny`, the allow lines, and the
//! `devices.list` read-back. Any failure after a directory was made removes
//! what was made. A directory of the same name left from an earlier run is
//! killed and removed before the `mkdir`, in one pass; if it cannot be
//! removed yet the error says `busy` and the caller retries later.
//!
//! Removal in PID 1 never waits ([`remove_step`]): each pass kills what runs
//! in the cgroup and `rmdir`s what is empty; the loop repeats passes on its
//! timer ([`retry_delay`]) until the directories are gone or it gives up
//! ([`REMOVE_TRIES`], about 10 s) and reports the cgroup it could not remove.

use core::fmt;
use std::ffi::CStr;
use std::fs;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::limits::{check_available, controllers, enable_line, plan_v1, plan_v2, Limits, MemoryEvents, Setting};
use super::{ebpf, v1, DeviceRule};
use crate::release::board::CgroupMode;
use crate::sys::cgroup as sys;

/// The license the device program is loaded under. It calls no helper, so
/// the kernel needs no GPL-compatible license.
const LICENSE: &CStr = c"Apache-2.0 OR MIT";
/// The name the program shows in `bpftool prog`.
const PROG_NAME: &str = "berth_devices";

/// Attempts (and the pause between them) at emptying and removing a cgroup.
const KILL_ROUNDS: u32 = 200;
const PAUSE: Duration = Duration::from_millis(5);

/// A failed step: what was done to which file, and why it failed.
#[derive(Debug)]
pub struct CgroupError {
    pub file: PathBuf,
    pub step: &'static str,
    pub reason: String,
    /// The directory exists, left from an earlier run that could not be
    /// removed yet: try again later.
    pub busy: bool,
}

impl fmt::Display for CgroupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cgroup: {} {}: {}", self.step, self.file.display(), self.reason)
    }
}

impl std::error::Error for CgroupError {}

fn err(file: &Path, step: &'static str, reason: impl fmt::Display) -> CgroupError {
    CgroupError { file: file.to_owned(), step, reason: reason.to_string(), busy: false }
}

/// Read a cgroup file.
pub fn read(file: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(file).map_err(|e| err(file, "read", e))
}

/// Write one value to an existing cgroup file (never created: a missing
/// file is `ENOENT`, not a confusing `EACCES` from cgroupfs).
pub fn write(file: &Path, value: &str) -> Result<(), CgroupError> {
    use std::io::Write;
    fs::OpenOptions::new().write(true).open(file).and_then(|mut f| f.write_all(value.as_bytes())).map_err(|e| err(file, "write", format!("`{value}`: {e}")))
}

/// `mkdir` of a container's cgroup. One left from an earlier run (a removal
/// still under way, or one given up) is killed and removed first, in one
/// pass that never waits; if it is still there, the error is `busy`.
fn mkdir(dir: &Path) -> Result<(), CgroupError> {
    match fs::create_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let cleared = kill_once(dir).and_then(|()| fs::remove_dir(dir).map_err(|e| err(dir, "remove the stale", e)));
            if let Err(e) = cleared {
                return Err(CgroupError { busy: true, ..e });
            }
            fs::create_dir(dir).map_err(|e| err(dir, "create", e))
        }
        r => r.map_err(|e| err(dir, "create", e)),
    }
}

/// `mkdir`, fine if it is already there (berth's own subtree).
fn ensure_dir(dir: &Path) -> Result<(), CgroupError> {
    match fs::create_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(err(dir, "create", e)),
        _ => Ok(()),
    }
}

/// berth's own subtree: `<mount>/berth` on v2, `<mount>/<controller>/berth`
/// on v1.
pub const SUBTREE: &str = "berth";

/// Create the container's cgroup `name` in berth's subtree of the hierarchy
/// the board uses, under the cgroup mount `mount` (`/sys/fs/cgroup`).
pub fn create(mode: CgroupMode, mount: &Path, name: &str, limits: &Limits, rules: &[DeviceRule]) -> Result<CgroupDir, CgroupError> {
    create_in(mode, mount, SUBTREE, name, limits, rules)
}

/// [`create`] in the subtree `group` instead of berth's own (the start
/// benchmark keeps its cgroups apart from a supervisor's).
pub fn create_in(mode: CgroupMode, mount: &Path, group: &str, name: &str, limits: &Limits, rules: &[DeviceRule]) -> Result<CgroupDir, CgroupError> {
    match mode {
        CgroupMode::V2 => create_v2(&mount.join(group), name, limits, rules),
        CgroupMode::V1 => create_v1(mount, group, name, limits, rules),
    }
}

/// Which hierarchy a cgroup lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// A container's cgroup: one directory on v2, one per hierarchy on v1
/// (`devices` first).
#[derive(Debug)]
pub struct CgroupDir {
    pub version: Version,
    pub dirs: Vec<PathBuf>,
    /// The attached device program (v2), kept for a later `BPF_F_REPLACE`.
    pub program: Option<OwnedFd>,
    /// The directory, open (v2): processes are born in it with `clone3`
    /// ([`crate::confine::container::spawn::Place`]).
    pub fd: Option<OwnedFd>,
}

impl CgroupDir {
    /// The directory whose `cgroup.procs` places a process (v2), or the
    /// first (`devices`) hierarchy's on v1.
    pub fn path(&self) -> Option<&Path> {
        self.dirs.first().map(PathBuf::as_path)
    }

    /// Put a process into the cgroup (every hierarchy on v1).
    pub fn add(&self, pid: Pid) -> Result<(), CgroupError> {
        for d in &self.dirs {
            write(&d.join("cgroup.procs"), &pid.as_raw().to_string())?;
        }
        Ok(())
    }

    /// A memory controller file: `v2` in the cgroup (v2), `v1` in the
    /// cgroup of the memory hierarchy (v1).
    fn memory_file(&self, v2: &str, v1: &str) -> Result<PathBuf, CgroupError> {
        match self.version {
            Version::V2 => self.path().map(|d| d.join(v2)),
            Version::V1 => self.dirs.iter().find(|d| d.parent().and_then(Path::parent).is_some_and(|h| h.ends_with("memory"))).map(|d| d.join(v1)),
        }
        .ok_or_else(|| err(Path::new("memory"), "find", "the cgroup has no memory hierarchy"))
    }

    /// The memory counters: `memory.events` on v2, `memory.oom_control` on v1.
    pub fn memory_events(&self) -> Result<MemoryEvents, CgroupError> {
        let file = self.memory_file("memory.events", "memory.oom_control")?;
        MemoryEvents::parse(&read(&file)?).map_err(|e| err(&file, "parse", e))
    }

    /// Bytes of memory in use: `memory.current` (v2), `memory.usage_in_bytes` (v1).
    pub fn memory_current(&self) -> Result<u64, CgroupError> {
        let file = self.memory_file("memory.current", "memory.usage_in_bytes")?;
        read(&file)?.trim().parse().map_err(|_| err(&file, "parse", "not a number"))
    }
}

/// Enable the controllers `plan` needs in `dir`'s children: check them in
/// `dir/cgroup.controllers`, then write `dir/cgroup.subtree_control`.
pub fn enable_controllers(dir: &Path, plan: &[Setting]) -> Result<(), CgroupError> {
    let list = dir.join("cgroup.controllers");
    check_available(plan, &read(&list)?).map_err(|e| err(&list, "check", e))?;
    let line = enable_line(&controllers(plan));
    if line.is_empty() {
        return Ok(());
    }
    write(&dir.join("cgroup.subtree_control"), &line)
}

/// Write each setting into `dir` (v2).
pub fn write_settings(dir: &Path, plan: &[Setting]) -> Result<(), CgroupError> {
    plan.iter().try_for_each(|s| write(&dir.join(s.file), &s.value))
}

/// Generate, load and attach (`BPF_F_ALLOW_MULTI`) the device program of
/// `rules` to the v2 cgroup `dir`. The returned descriptor keeps a handle on
/// the program; the attachment holds its own reference.
pub fn attach_device_filter(dir: &Path, rules: &[DeviceRule]) -> Result<OwnedFd, CgroupError> {
    let d = fs::File::open(dir).map_err(|e| err(dir, "open", e))?;
    attach_device_filter_to(dir, d.as_fd(), rules)
}

/// [`attach_device_filter`] to the directory `dir`, open as `d`.
fn attach_device_filter_to(dir: &Path, d: BorrowedFd<'_>, rules: &[DeviceRule]) -> Result<OwnedFd, CgroupError> {
    let prog = ebpf::generate(rules).map_err(|e| err(dir, "generate the device program for", e))?;
    let fd = loaded(&prog.to_bytes()).map_err(|e| err(dir, "load the device program for", e))?;
    sys::prog_attach(d, fd.as_fd(), sys::BPF_CGROUP_DEVICE, sys::BPF_F_ALLOW_MULTI, None).map_err(|e| err(dir, "attach the device program to", e))?;
    Ok(fd)
}

/// Device programs kept loaded, most recent last: containers with the same
/// allowlist (every container without granted devices has the standard
/// one) and restarts attach the program already loaded instead of loading
/// and verifying the same instructions again. A kept program is the same
/// bytes a new load would get.
const PROGRAMS_KEPT: usize = 8;

static PROGRAMS: std::sync::Mutex<Vec<(Vec<u8>, OwnedFd)>> = std::sync::Mutex::new(Vec::new());

/// A descriptor of the program `insns`: kept, or loaded (and kept, the
/// oldest closed past [`PROGRAMS_KEPT`]).
fn loaded(insns: &[u8]) -> Result<OwnedFd, sys::LoadError> {
    let io = |e: io::Error| sys::LoadError { errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EBADF)), log: String::new() };
    let mut kept = PROGRAMS.lock().ok();
    if let Some((_, fd)) = kept.as_deref().and_then(|k| k.iter().find(|(b, _)| b.as_slice() == insns)) {
        return fd.try_clone().map_err(io);
    }
    let fd = sys::prog_load(sys::BPF_PROG_TYPE_CGROUP_DEVICE, insns, LICENSE, PROG_NAME)?;
    if let Some(k) = kept.as_deref_mut() {
        if k.len() >= PROGRAMS_KEPT {
            k.remove(0);
        }
        k.push((insns.to_vec(), fd.try_clone().map_err(io)?));
    }
    Ok(fd)
}

/// Remove a directory this module just made, after a later step failed.
/// The first error is the one reported; this one is dropped on purpose.
fn undo(dirs: &[PathBuf]) {
    for d in dirs.iter().rev() {
        let _ = fs::remove_dir(d);
    }
}

/// Create the v2 cgroup `root/name` (`root` is berth's subtree, e.g.
/// `/sys/fs/cgroup/berth`, made if missing), with the limits and the device
/// program of `rules`. A missing controller, an existing `root/name`, or any
/// failed write is an error naming the file; nothing is left behind then.
pub fn create_v2(root: &Path, name: &str, limits: &Limits, rules: &[DeviceRule]) -> Result<CgroupDir, CgroupError> {
    // Decide everything before touching the hierarchy.
    use crate::confine::container::spawn::stamps::{host as stamp, Host};
    stamp(Host::CgroupParent);
    let plan = plan_v2(limits);
    ebpf::generate(rules).map_err(|e| err(root, "generate the device program for", e))?;
    let parent = root.parent().ok_or_else(|| err(root, "find the parent of", "no parent directory"))?;
    enable_controllers(parent, &plan)?;
    ensure_dir(root)?;
    enable_controllers(root, &plan)?;
    let dir = root.join(name);
    stamp(Host::CgroupMkdir);
    mkdir(&dir)?;
    stamp(Host::CgroupLimits);
    let filled = write_settings(&dir, &plan).and_then(|()| {
        stamp(Host::CgroupDevices);
        let d = OwnedFd::from(fs::File::open(&dir).map_err(|e| err(&dir, "open", e))?);
        attach_device_filter_to(&dir, d.as_fd(), rules).map(|prog| (prog, d))
    });
    match filled {
        Ok((prog, d)) => Ok(CgroupDir { version: Version::V2, dirs: vec![dir], program: Some(prog), fd: Some(d) }),
        Err(e) => {
            undo(&[dir]);
            Err(e)
        }
    }
}

/// Write the v1 device allowlist into the devices cgroup `dir` and check it
/// by reading `devices.list` back.
pub fn write_devices_v1(dir: &Path, rules: &[DeviceRule]) -> Result<(), CgroupError> {
    super::check_rules(rules).map_err(|e| err(dir, "check the device rules for", e))?;
    write(&dir.join("devices.deny"), v1::DENY_ALL)?;
    let allow = dir.join("devices.allow");
    for line in v1::allow_lines(rules) {
        write(&allow, &line)?;
    }
    let list = dir.join("devices.list");
    v1::check_list(rules, &read(&list)?).map_err(|e| err(&list, "check", e))
}

/// Create the v1 cgroup `group/name` in every hierarchy it needs under
/// `mount` (e.g. `/sys/fs/cgroup`): `devices`, then one per controller of the
/// limits. A missing hierarchy is an error naming it and the limit files.
pub fn create_v1(mount: &Path, group: &str, name: &str, limits: &Limits, rules: &[DeviceRule]) -> Result<CgroupDir, CgroupError> {
    let plan = plan_v1(limits);
    super::check_rules(rules).map_err(|e| err(mount, "check the device rules for", e))?;
    let mut hierarchies: Vec<(&str, Vec<&Setting>)> = vec![("devices", Vec::new())];
    for c in controllers(&plan) {
        hierarchies.push((c.v1_dir(), plan.iter().filter(|s| s.controller == c).collect()));
    }
    for (h, settings) in &hierarchies {
        let top = mount.join(h);
        if !top.join("cgroup.procs").exists() {
            let files: Vec<&str> = settings.iter().map(|s| s.file).collect();
            let why = if files.is_empty() { "the device allowlist".to_owned() } else { files.join(", ") };
            return Err(err(&top, "find the hierarchy", format!("the {h} controller is not mounted (needed for {why})")));
        }
    }
    let mut made: Vec<PathBuf> = Vec::new();
    let mut dirs = Vec::new();
    let result = (|| {
        for (h, settings) in &hierarchies {
            ensure_dir(&mount.join(h).join(group))?;
            let dir = mount.join(h).join(group).join(name);
            mkdir(&dir)?;
            made.push(dir.clone());
            for s in settings {
                write(&dir.join(s.file), &s.value)?;
            }
            if *h == "devices" {
                write_devices_v1(&dir, rules)?;
            }
            dirs.push(dir);
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok(CgroupDir { version: Version::V1, dirs, program: None, fd: None }),
        Err(e) => {
            undo(&made);
            Err(e)
        }
    }
}

/// The pids in `dir/cgroup.procs`.
pub fn procs(dir: &Path) -> Result<Vec<Pid>, CgroupError> {
    let file = dir.join("cgroup.procs");
    read(&file)?.lines().map(|l| l.trim().parse::<i32>().map(Pid::from_raw).map_err(|_| err(&file, "parse", format!("`{l}` is not a pid")))).collect()
}

/// Kill every process of `dir`: `cgroup.kill` where the kernel has it (5.14+),
/// else SIGKILL to each pid of `cgroup.procs` until it stays empty. Bounded,
/// but it waits between rounds: tools and tests only (PID 1: [`kill_once`]).
pub fn kill_all(dir: &Path) -> Result<(), CgroupError> {
    let kill_file = dir.join("cgroup.kill");
    let has_kill = kill_file.exists();
    if has_kill {
        write(&kill_file, "1")?;
    }
    for _ in 0..KILL_ROUNDS {
        let pids = procs(dir)?;
        if pids.is_empty() {
            return Ok(());
        }
        if !has_kill {
            for p in pids {
                match kill(p, Signal::SIGKILL) {
                    Ok(()) | Err(Errno::ESRCH) => {}
                    Err(e) => return Err(err(&dir.join("cgroup.procs"), "kill a process of", format!("pid {p}: {e}"))),
                }
            }
        }
        std::thread::sleep(PAUSE);
    }
    Err(err(&dir.join("cgroup.procs"), "empty", format!("processes remain after {KILL_ROUNDS} rounds")))
}

/// One pass at killing every process of `dir`, without waiting:
/// `cgroup.kill` where the kernel has it (5.14+), else SIGKILL to each pid
/// of `cgroup.procs` (a process forked meanwhile is caught by the next pass).
pub fn kill_once(dir: &Path) -> Result<(), CgroupError> {
    let kill_file = dir.join("cgroup.kill");
    if kill_file.exists() {
        return write(&kill_file, "1");
    }
    for p in procs(dir)? {
        match kill(p, Signal::SIGKILL) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(e) => return Err(err(&dir.join("cgroup.procs"), "kill a process of", format!("pid {p}: {e}"))),
        }
    }
    Ok(())
}

/// Most passes of [`remove_step`] before a removal is given up, and the
/// pause before each next pass ([`retry_delay`]): 5 ms doubling to 500 ms,
/// about 10 s in all.
pub const REMOVE_TRIES: u32 = 28;

/// The pause after pass `tries` (1 for the first) of a removal, `None` once
/// it is given up.
pub fn retry_delay(tries: u32) -> Option<Duration> {
    if tries >= REMOVE_TRIES {
        return None;
    }
    let ms = 5u64.saturating_mul(1u64 << tries.saturating_sub(1).min(16));
    Some(Duration::from_millis(ms.min(500)))
}

/// One pass at removing a cgroup, never waiting: kill what runs in each of
/// its directories, `rmdir` it; the directories still there (busy: tasks
/// still exiting) stay in `cg` for the next pass. `Ok(true)` once none is
/// left; an error other than busy names the directory (it stays too).
pub fn remove_step(cg: &mut CgroupDir) -> Result<bool, CgroupError> {
    let mut first = None;
    let dirs = std::mem::take(&mut cg.dirs);
    for d in dirs {
        let r = kill_once(&d).and_then(|()| match fs::remove_dir(&d) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Ok(false),
            Err(e) => Err(err(&d, "remove", e)),
        });
        match r {
            Ok(true) => {}
            Ok(false) => cg.dirs.push(d),
            // Gone meanwhile: nothing to remove.
            Err(_) if !d.exists() => {}
            Err(e) => {
                first.get_or_insert(e);
                cg.dirs.push(d);
            }
        }
    }
    if cg.dirs.is_empty() {
        cg.program = None;
        cg.fd = None;
    }
    first.map_or(Ok(cg.dirs.is_empty()), Err)
}

/// Remove a cgroup no process ever entered (a start that failed before its
/// fork): one `rmdir` each, never waiting.
pub fn remove_empty(cg: CgroupDir) -> Result<(), CgroupError> {
    let mut first = None;
    for d in cg.dirs.iter().rev() {
        match fs::remove_dir(d) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                first.get_or_insert(err(d, "remove", e));
            }
            _ => {}
        }
    }
    first.map_or(Ok(()), Err)
}

/// `rmdir`, retried while the kernel still counts exiting tasks (`EBUSY`).
fn remove_dir(dir: &Path) -> Result<(), CgroupError> {
    let mut last = None;
    for _ in 0..KILL_ROUNDS {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => last = Some(e),
            Err(e) => return Err(err(dir, "remove", e)),
        }
        std::thread::sleep(PAUSE);
    }
    Err(err(dir, "remove", last.map_or("busy".to_owned(), |e| e.to_string())))
}

/// Kill whatever still runs in the cgroup and remove its directories, even
/// when processes linger, waiting for them (tools and tests; PID 1 uses
/// [`remove_step`]). Every directory is tried; the first error returns.
pub fn kill_and_remove(cg: CgroupDir) -> Result<(), CgroupError> {
    let mut first = None;
    for d in cg.dirs.iter().filter(|d| d.exists()) {
        if let Err(e) = kill_all(d).and_then(|()| remove_dir(d)) {
            first.get_or_insert(e);
        }
    }
    drop(cg.program);
    drop(cg.fd);
    first.map_or(Ok(()), Err)
}
