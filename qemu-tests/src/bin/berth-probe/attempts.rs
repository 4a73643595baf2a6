//! The escape attempts. Each runs in its own forked child, so it may change
//! its process state freely (credentials, root, personality). Every call is
//! made with valid arguments, so that only policy (seccomp, capabilities,
//! read-only/nodev/noexec mounts, absent or masked paths) can refuse it.
//! Where a call could do harm if it were ever allowed, it is made
//! harmless: writes are only opens for writing (nothing is written),
//! interface changes re-set the current value, time is set to now,
//! kexec only unloads, the sysrq trigger is only opened.

use std::ffi::CStr;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use libc::{c_long, EACCES, ENODEV, ENOENT, ENOSYS, ENXIO, EPERM, EROFS};

use crate::sys::{self, ck, cki, close, cs, errno, errno_name, failed, open, unlink, write_file};
use crate::{decode_outcome, encode_outcome, parse_whoami, works, Attempt, Outcome};

/// A capability check or a seccomp errno; ENOSYS when the kernel (or the
/// filter) has no such call.
const CAP: &[i32] = &[EPERM, ENOSYS];
const PERM: &[i32] = &[EPERM];
/// Opening a device node: absent (ENOENT/ENXIO/ENODEV) or refused.
const DEV: &[i32] = &[ENOENT, ENXIO, ENODEV, EPERM, EACCES];
/// Opening a kernel file for writing: read-only mount, not ours, or
/// absent/masked.
const WRITE_KERNEL: &[i32] = &[EROFS, EACCES, EPERM, ENOENT];
/// Reading a kernel file: refused, or absent/masked.
const READ_KERNEL: &[i32] = &[EPERM, EACCES, ENOENT];
/// A host path seen from inside: absent or refused.
const HOST_PATH: &[i32] = &[ENOENT, EACCES, EPERM];
/// A node in the tmpfs: no CAP_MKNOD (EPERM); opening it on nodev (EACCES).
const MKNOD: &[i32] = &[EPERM, EACCES];
/// Writing the read-only root.
const ROOT_RO: &[i32] = &[EROFS, EACCES, EPERM];
/// Socket families/types the container may not open.
const SOCK: &[i32] = &[EPERM, EACCES];
const PTRACE: &[i32] = &[EPERM];
/// Executing from a noexec mount.
const NOEXEC: &[i32] = &[EACCES, EPERM];
/// Joining pid 1's namespace: opening its ns file or setns refused.
const SETNS: &[i32] = &[EPERM, EACCES];

/// Paths used in the tmpfs.
const TMP_SDA: &CStr = c"/tmp/.berth-probe-sda";
const TMP_MEM: &CStr = c"/tmp/.berth-probe-mem";
const TMP_NULL: &CStr = c"/tmp/.berth-probe-null";
const TMP_MNT: &CStr = c"/tmp/.berth-probe-mnt";
const TMP_MOD: &CStr = c"/tmp/.berth-probe-mod.ko";
const TMP_EXE: &CStr = c"/tmp/.berth-probe-exe";
const TMP_ACCT: &CStr = c"/tmp/.berth-probe-acct";
const TMP_SWAP: &CStr = c"/tmp/.berth-probe-swap";
const TMP_HANDLE: &CStr = c"/tmp/.berth-probe-handle";
const SUID_PROBE: &CStr = c"/bin/suid-probe";
/// A uid that is not 0 inside, for the setuid-root attempt.
const NON_ROOT: libc::uid_t = 1000;
/// More visible processes than this means another pid namespace's.
const MAX_OWN_PROCS: usize = 16;
const INNER_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg(target_arch = "x86_64")]
const SYS_KEXEC_FILE_LOAD: c_long = 320;
#[cfg(target_arch = "aarch64")]
const SYS_KEXEC_FILE_LOAD: c_long = 294;
#[cfg(target_arch = "arm")]
const SYS_KEXEC_FILE_LOAD: c_long = 401;

macro_rules! a {
    ($name:expr, $accept:expr, $run:expr) => {
        Attempt { name: $name, run: $run, accept: $accept }
    };
}

/// Every attempt, in the order they run. The two that could disturb the
/// probe's own view if they ever succeeded (umount /proc, pivot_root) come
/// last.
pub fn table() -> &'static [Attempt] {
    static TABLE: &[Attempt] = &[
        // Device nodes.
        a!("mknod-block-8-0", MKNOD, || mknod(TMP_SDA, libc::S_IFBLK, 8, 0, "block 8:0")),
        a!("mknod-char-mem-1-1", MKNOD, || mknod(TMP_MEM, libc::S_IFCHR, 1, 1, "char 1:1 (/dev/mem)")),
        a!("mknod-tmpfs-open", MKNOD, mknod_tmpfs_open),
        a!("open-dev-mem", DEV, || open_dev(c"/dev/mem")),
        a!("open-dev-port", DEV, || open_dev(c"/dev/port")),
        a!("open-dev-kmsg", DEV, || open_dev(c"/dev/kmsg")),
        a!("open-dev-vda", DEV, || open_dev(c"/dev/vda")),
        a!("open-dev-sda", DEV, || open_dev(c"/dev/sda")),
        a!("open-dev-mmcblk0", DEV, || open_dev(c"/dev/mmcblk0")),
        // Mounts and roots.
        a!("mount-tmpfs", CAP, mount_tmpfs),
        a!("remount-root-rw", CAP, remount_root_rw),
        a!("chroot-escape", PERM, chroot_escape),
        // Namespaces.
        a!("unshare-user", PERM, || unshare(libc::CLONE_NEWUSER, "CLONE_NEWUSER")),
        a!("unshare-mount", PERM, || unshare(libc::CLONE_NEWNS, "CLONE_NEWNS")),
        a!("unshare-net", PERM, || unshare(libc::CLONE_NEWNET, "CLONE_NEWNET")),
        a!("unshare-pid", PERM, || unshare(libc::CLONE_NEWPID, "CLONE_NEWPID")),
        a!("unshare-uts", PERM, || unshare(libc::CLONE_NEWUTS, "CLONE_NEWUTS")),
        a!("unshare-ipc", PERM, || unshare(libc::CLONE_NEWIPC, "CLONE_NEWIPC")),
        a!("unshare-cgroup", PERM, || unshare(libc::CLONE_NEWCGROUP, "CLONE_NEWCGROUP")),
        a!("setns-pid1-net", SETNS, || setns_pid1(c"/proc/1/ns/net", libc::CLONE_NEWNET)),
        a!("setns-pid1-mnt", SETNS, || setns_pid1(c"/proc/1/ns/mnt", libc::CLONE_NEWNS)),
        a!("clone-newuser", PERM, || raw_clone(libc::CLONE_NEWUSER, "CLONE_NEWUSER")),
        a!("clone-newns", PERM, || raw_clone(libc::CLONE_NEWNS, "CLONE_NEWNS")),
        a!("clone3-newuser", &[ENOSYS, EPERM], clone3_newuser),
        // Kernel.
        a!("init-module", CAP, init_module),
        a!("finit-module", CAP, finit_module),
        a!("kexec-load", CAP, kexec_load),
        a!("kexec-file-load", CAP, kexec_file_load),
        a!("reboot", PERM, reboot),
        a!("proc-sysrq-trigger-write", WRITE_KERNEL, || open_write(c"/proc/sysrq-trigger")),
        a!("proc-sys-hostname-write", WRITE_KERNEL, || open_write(c"/proc/sys/kernel/hostname")),
        a!("proc-sys-panic-write", WRITE_KERNEL, || open_write(c"/proc/sys/kernel/panic")),
        a!("proc-sys-core-pattern-write", WRITE_KERNEL, || open_write(c"/proc/sys/kernel/core_pattern")),
        a!("proc-sys-modprobe-write", WRITE_KERNEL, || open_write(c"/proc/sys/kernel/modprobe")),
        a!("sys-lo-mtu-write", WRITE_KERNEL, || open_write(c"/sys/class/net/lo/mtu")),
        a!("sys-uevent-helper-write", WRITE_KERNEL, || open_write(c"/sys/kernel/uevent_helper")),
        a!("sys-cgroup-procs-write", WRITE_KERNEL, || open_write(c"/sys/fs/cgroup/cgroup.procs")),
        a!("read-proc-kcore", READ_KERNEL, || read_kernel(c"/proc/kcore")),
        a!("read-proc-keys", READ_KERNEL, || read_kernel(c"/proc/keys")),
        a!("read-proc-timer-list", READ_KERNEL, || read_kernel(c"/proc/timer_list")),
        a!("syslog-read-all", CAP, syslog_read_all),
        a!("bpf-prog-load", CAP, bpf_prog_load),
        a!("perf-event-open", &[EPERM, EACCES, ENOSYS], perf_event_open),
        a!("userfaultfd", CAP, userfaultfd),
        a!("io-uring-setup", CAP, io_uring_setup),
        a!("keyctl-join-session", CAP, keyctl_join),
        a!("add-key", CAP, add_key),
        a!("personality-addr-no-randomize", PERM, personality),
        a!("acct", CAP, acct),
        a!("swapon", CAP, swapon),
        a!("settimeofday", PERM, settimeofday),
        a!("clock-settime", PERM, clock_settime),
        #[cfg(target_arch = "x86_64")]
        a!("ioperm", CAP, ioperm),
        // Processes and privileges.
        a!("ptrace-attach-sibling", PTRACE, ptrace_sibling),
        a!("ptrace-seize-pid1", PTRACE, ptrace_pid1),
        a!("ptrace-traceme", PTRACE, ptrace_traceme),
        a!("suid-root-exec", NOEXEC, suid_root_exec),
        a!("capset-sys-admin", PERM, capset_sys_admin),
        a!("ambient-raise-net-admin", PERM, ambient_raise),
        a!("open-by-handle-at", &[EPERM, EACCES, ENOSYS], open_by_handle),
        // Network.
        a!("socket-raw-icmp", SOCK, || socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP, "AF_INET SOCK_RAW ICMP")),
        a!("socket-packet", SOCK, || socket(libc::AF_PACKET, libc::SOCK_RAW, (libc::ETH_P_ALL as u16).to_be() as i32, "AF_PACKET SOCK_RAW ETH_P_ALL")),
        a!("socket-alg", SOCK, || socket(libc::AF_ALG, libc::SOCK_SEQPACKET, 0, "AF_ALG SOCK_SEQPACKET")),
        a!("socket-vsock", SOCK, || socket(libc::AF_VSOCK, libc::SOCK_STREAM, 0, "AF_VSOCK SOCK_STREAM")),
        a!("sethostname", PERM, sethostname),
        a!("setdomainname", PERM, setdomainname),
        a!("net-lo-set-flags", PERM, lo_set_flags),
        a!("net-lo-set-mtu", PERM, lo_set_mtu),
        // Files and other containers.
        a!("rootfs-create-file", ROOT_RO, rootfs_create),
        a!("rootfs-mkdir", ROOT_RO, rootfs_mkdir),
        a!("exec-from-tmpfs", NOEXEC, exec_tmpfs),
        a!("see-other-processes", &[], see_processes),
        a!("see-host-volumes", HOST_PATH, || host_path(c"/data/volumes")),
        a!("see-host-run-berth", HOST_PATH, || host_path(c"/run/berth")),
        a!("see-host-berth-binary", HOST_PATH, || host_path(c"/sbin/berth")),
        a!("proc1-exe", HOST_PATH, proc1_exe),
        a!("proc1-root", HOST_PATH, proc1_root),
        // Last: these would change the probe's own view if they succeeded.
        a!("umount-proc", CAP, umount_proc),
        a!("pivot-root", CAP, pivot_root),
    ];
    TABLE
}

fn lossy(p: &CStr) -> String {
    p.to_string_lossy().into_owned()
}

fn syscall_ok(r: c_long, what: &str, ok: impl FnOnce(c_long) -> String) -> Outcome {
    match ck(r, what) {
        Ok(v) => Outcome::Succeeded(ok(v)),
        Err(o) => o,
    }
}

// ---------------------------------------------------------------- devices

fn mknod(path: &CStr, kind: libc::mode_t, major: u32, minor: u32, label: &str) -> Outcome {
    unlink(path);
    // SAFETY: path is NUL-terminated.
    let r = unsafe { libc::mknodat(libc::AT_FDCWD, path.as_ptr(), kind | 0o600, libc::makedev(major, minor)) };
    if r != 0 {
        return failed(format!("mknodat {} {label}", lossy(path)));
    }
    unlink(path);
    Outcome::Succeeded(format!("created {label} node {}", lossy(path)))
}

/// mknod c 1:3 in the tmpfs, then open it: EPERM from mknod (no
/// CAP_MKNOD) or EACCES from the open (nodev) both block.
fn mknod_tmpfs_open() -> Outcome {
    unlink(TMP_NULL);
    // SAFETY: path is NUL-terminated.
    let r = unsafe { libc::mknodat(libc::AT_FDCWD, TMP_NULL.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) };
    if r != 0 {
        return failed("mknodat /tmp/.berth-probe-null char 1:3");
    }
    let fd = open(TMP_NULL, libc::O_RDWR, 0);
    let e = errno();
    unlink(TMP_NULL);
    if fd < 0 {
        return Outcome::Failed { errno: e, what: "mknod succeeded; open of the node".into() };
    }
    close(fd);
    Outcome::Succeeded("created char 1:3 in /tmp and opened it".into())
}

fn open_dev(path: &CStr) -> Outcome {
    let fd = open(path, libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY, 0);
    if fd < 0 {
        return failed(format!("open {}", lossy(path)));
    }
    close(fd);
    Outcome::Succeeded(format!("opened {} for reading", lossy(path)))
}

// ---------------------------------------------------------------- mounts

fn mkdir(path: &CStr) {
    // SAFETY: path is NUL-terminated.
    unsafe {
        libc::mkdirat(libc::AT_FDCWD, path.as_ptr(), 0o755);
    }
}

fn mount_tmpfs() -> Outcome {
    mkdir(TMP_MNT);
    // SAFETY: all strings are NUL-terminated.
    let r = unsafe {
        libc::mount(
            c"none".as_ptr(),
            TMP_MNT.as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            c"size=64k".as_ptr() as *const libc::c_void,
        )
    };
    if r != 0 {
        return failed("mount tmpfs on /tmp/.berth-probe-mnt");
    }
    // SAFETY: as above.
    unsafe {
        libc::umount2(TMP_MNT.as_ptr(), libc::MNT_DETACH);
    }
    Outcome::Succeeded("mounted a tmpfs".into())
}

/// Clear MS_RDONLY on the root by a bind remount.
fn remount_root_rw() -> Outcome {
    // SAFETY: strings are NUL-terminated; null data is allowed.
    let r = unsafe { libc::mount(std::ptr::null(), c"/".as_ptr(), std::ptr::null(), libc::MS_REMOUNT | libc::MS_BIND, std::ptr::null()) };
    if r != 0 {
        return failed("mount(/, MS_REMOUNT|MS_BIND) without MS_RDONLY");
    }
    Outcome::Succeeded("remounted / read-write".into())
}

fn stat_id(path: &CStr) -> Option<(u64, u64)> {
    // SAFETY: st is a valid out buffer.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::stat(path.as_ptr(), &mut st) != 0 {
            return None;
        }
        Some((st.st_dev as u64, st.st_ino as u64))
    }
}

/// chroot("/tmp"): containers get no CAP_SYS_CHROOT, so success alone is
/// reported as escaped (with whether the classic `..` breakout then
/// reached the original root).
fn chroot_escape() -> Outcome {
    let before = stat_id(c"/");
    // SAFETY: strings are NUL-terminated.
    unsafe {
        if libc::chroot(c"/tmp".as_ptr()) != 0 {
            return failed("chroot /tmp");
        }
        // Classic breakout: chroot deeper, walk up past it, chroot there.
        libc::mkdirat(libc::AT_FDCWD, c"/.berth-probe-jail".as_ptr(), 0o755);
        libc::chroot(c"/.berth-probe-jail".as_ptr());
        for _ in 0..64 {
            libc::chdir(c"..".as_ptr());
        }
        libc::chroot(c".".as_ptr());
    }
    let after = stat_id(c"/");
    let reached = before.is_some() && before == after;
    Outcome::Succeeded(format!("chroot /tmp succeeded; '..' breakout {} the original root", if reached { "reached" } else { "did not reach" }))
}

/// Try to get a private copy of the mount namespace so an attempt that
/// succeeds does not disturb the probe itself. Returns a note.
fn isolate_mounts() -> &'static str {
    // SAFETY: plain unshare.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } == 0 {
        " (in a private mount namespace)"
    } else {
        ""
    }
}

fn umount_proc() -> Outcome {
    let note = isolate_mounts();
    // SAFETY: string is NUL-terminated.
    let r = unsafe { libc::umount2(c"/proc".as_ptr(), libc::MNT_DETACH) };
    if r != 0 {
        return failed(format!("umount2 /proc{note}"));
    }
    Outcome::Succeeded(format!("unmounted /proc{note}"))
}

/// pivot_root(".", ".") in /tmp (a mount point other than the root).
fn pivot_root() -> Outcome {
    let note = isolate_mounts();
    // SAFETY: strings are NUL-terminated.
    unsafe {
        if libc::chdir(c"/tmp".as_ptr()) != 0 {
            return Outcome::Error(format!("chdir /tmp: {}", errno_name(errno())));
        }
        let r = libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr());
        syscall_ok(r as c_long, &format!("pivot_root(/tmp, /tmp){note}"), |_| format!("pivot_root into /tmp succeeded{note}"))
    }
}

// ---------------------------------------------------------------- namespaces

fn unshare(flag: libc::c_int, label: &str) -> Outcome {
    // SAFETY: plain unshare.
    let r = unsafe { libc::unshare(flag) };
    if r != 0 {
        return failed(format!("unshare {label}"));
    }
    Outcome::Succeeded(format!("unshare {label} succeeded"))
}

fn setns_pid1(path: &CStr, nstype: libc::c_int) -> Outcome {
    let fd = open(path, libc::O_RDONLY, 0);
    if fd < 0 {
        return failed(format!("open {}", lossy(path)));
    }
    // SAFETY: fd is a namespace descriptor we own.
    let r = unsafe { libc::setns(fd, nstype) };
    let e = errno();
    close(fd);
    if r != 0 {
        return Outcome::Failed { errno: e, what: format!("setns {}", lossy(path)) };
    }
    Outcome::Succeeded(format!("joined {}", lossy(path)))
}

/// The raw clone syscall with a namespace flag. Only flags and the exit
/// signal are set; stack, parent_tid, child_tid and tls are all 0, so the
/// per-architecture order of those four (x86_64: stack, ptid, ctid, tls;
/// arm/aarch64: stack, ptid, tls, ctid) does not change the call.
fn raw_clone(flag: libc::c_int, label: &str) -> Outcome {
    let flags = (flag | libc::SIGCHLD) as libc::c_ulong;
    // SAFETY: fork-like clone (no CLONE_VM); the child leaves at once.
    let r = unsafe {
        #[cfg(target_arch = "x86_64")]
        let r = libc::syscall(libc::SYS_clone, flags, 0usize /* stack */, 0usize /* ptid */, 0usize /* ctid */, 0usize /* tls */);
        #[cfg(any(target_arch = "aarch64", target_arch = "arm"))]
        let r = libc::syscall(libc::SYS_clone, flags, 0usize /* stack */, 0usize /* ptid */, 0usize /* tls */, 0usize /* ctid */);
        if r == 0 {
            libc::_exit(0);
        }
        r
    };
    if r < 0 {
        return failed(format!("clone {label}|SIGCHLD"));
    }
    let _ = sys::wait_blocking(r as libc::pid_t);
    Outcome::Succeeded(format!("clone {label} created child {r}"))
}

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
}

fn clone3_newuser() -> Outcome {
    let args = CloneArgs { flags: libc::CLONE_NEWUSER as u64, exit_signal: libc::SIGCHLD as u64, ..Default::default() };
    // SAFETY: fork-like clone3 (no CLONE_VM, no stack); the child leaves at once.
    let r = unsafe {
        let r = libc::syscall(libc::SYS_clone3, &args as *const CloneArgs, std::mem::size_of::<CloneArgs>());
        if r == 0 {
            libc::_exit(0);
        }
        r
    };
    if r < 0 {
        return failed("clone3 CLONE_NEWUSER");
    }
    let _ = sys::wait_blocking(r as libc::pid_t);
    Outcome::Succeeded(format!("clone3 CLONE_NEWUSER created child {r}"))
}

// ---------------------------------------------------------------- kernel

/// An ELF header's start: the loader never gets this far without
/// CAP_SYS_MODULE (it would answer ENOEXEC: an `error`).
const FAKE_MODULE: [u8; 64] = {
    let mut b = [0u8; 64];
    b[0] = 0x7f;
    b[1] = b'E';
    b[2] = b'L';
    b[3] = b'F';
    b
};

fn init_module() -> Outcome {
    // SAFETY: the image and the parameter string are valid for the call.
    let r = unsafe { libc::syscall(libc::SYS_init_module, FAKE_MODULE.as_ptr(), FAKE_MODULE.len() as libc::c_ulong, c"".as_ptr()) };
    syscall_ok(r as c_long, "init_module", |_| "init_module accepted an image".into())
}

fn finit_module() -> Outcome {
    if let Err(o) = write_file(TMP_MOD, &FAKE_MODULE) {
        return o;
    }
    let fd = open(TMP_MOD, libc::O_RDONLY, 0);
    if fd < 0 {
        let o = Outcome::Error(format!("open {}: {}", lossy(TMP_MOD), errno_name(errno())));
        unlink(TMP_MOD);
        return o;
    }
    // SAFETY: fd is ours, the string is NUL-terminated.
    let r = unsafe { libc::syscall(libc::SYS_finit_module, fd, c"".as_ptr(), 0 as libc::c_int) };
    let o = syscall_ok(r as c_long, "finit_module", |_| "finit_module accepted a file".into());
    close(fd);
    unlink(TMP_MOD);
    o
}

/// kexec_load with no segments (which would only unload an image).
fn kexec_load() -> Outcome {
    // SAFETY: zero segments, null segment list.
    let r = unsafe { libc::syscall(libc::SYS_kexec_load, 0 as libc::c_ulong, 0 as libc::c_ulong, std::ptr::null::<libc::c_void>(), 0 as libc::c_ulong) };
    syscall_ok(r as c_long, "kexec_load(no segments)", |_| "kexec_load accepted".into())
}

/// kexec_file_load with KEXEC_FILE_UNLOAD (descriptors are then unused).
fn kexec_file_load() -> Outcome {
    const KEXEC_FILE_UNLOAD: libc::c_ulong = 1;
    // SAFETY: no buffers are read with KEXEC_FILE_UNLOAD; cmdline is valid.
    let r = unsafe { libc::syscall(SYS_KEXEC_FILE_LOAD, -1 as libc::c_int, -1 as libc::c_int, 0 as libc::c_ulong, c"".as_ptr(), KEXEC_FILE_UNLOAD) };
    syscall_ok(r as c_long, "kexec_file_load(KEXEC_FILE_UNLOAD)", |_| "kexec_file_load accepted".into())
}

/// reboot(RESTART). Never called with CAP_SYS_BOOT in the effective set:
/// holding it is already the escape (in a child pid namespace a permitted
/// reboot kills the namespace's init, i.e. the whole container and the
/// probe's report). Without it the kernel must answer EPERM; the host
/// cannot reboot because the probe refuses to run in the initial user
/// namespace with privileges.
fn reboot() -> Outcome {
    let Some(eff) = works::cap_eff() else {
        return Outcome::Error("cannot read CapEff: reboot not attempted".into());
    };
    if eff & (1 << 22) != 0 {
        return Outcome::Escaped(format!("CAP_SYS_BOOT is in the effective set (CapEff={eff:016x}); reboot not called"));
    }
    // SAFETY: the magic numbers and command are valid; the argument is unused.
    let r = unsafe {
        libc::syscall(
            libc::SYS_reboot,
            libc::LINUX_REBOOT_MAGIC1 as libc::c_int,
            libc::LINUX_REBOOT_MAGIC2 as libc::c_int,
            libc::LINUX_REBOOT_CMD_RESTART as libc::c_int,
            std::ptr::null::<libc::c_void>(),
        )
    };
    syscall_ok(r as c_long, "reboot(LINUX_REBOOT_CMD_RESTART)", |_| "reboot returned success".into())
}

/// Opening a kernel file for writing is the escape; nothing is written.
fn open_write(path: &CStr) -> Outcome {
    let fd = open(path, libc::O_WRONLY | libc::O_NOCTTY, 0);
    if fd < 0 {
        return failed(format!("open {} for writing", lossy(path)));
    }
    close(fd);
    Outcome::Succeeded(format!("opened {} for writing (nothing written)", lossy(path)))
}

/// A masked file is /dev/null bound over it (char 1:3): blocked.
fn read_kernel(path: &CStr) -> Outcome {
    let fd = open(path, libc::O_RDONLY, 0);
    if fd < 0 {
        return failed(format!("open {}", lossy(path)));
    }
    // SAFETY: st is a valid out buffer; fd is ours.
    let masked = unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        libc::fstat(fd, &mut st) == 0 && (st.st_mode & libc::S_IFMT) == libc::S_IFCHR && st.st_rdev == libc::makedev(1, 3)
    };
    if masked {
        close(fd);
        return Outcome::Blocked(format!("{} is masked (/dev/null)", lossy(path)));
    }
    let r = sys::read_some(fd, 256);
    close(fd);
    match r {
        Ok(b) => Outcome::Succeeded(format!("{} not masked: read {} bytes", lossy(path), b.len())),
        Err(e) => Outcome::Failed { errno: e, what: format!("read {}", lossy(path)) },
    }
}

fn syslog_read_all() -> Outcome {
    let mut buf = vec![0u8; 4096];
    // SAFETY: buf is valid for its length.
    let r = unsafe { libc::syscall(libc::SYS_syslog, 3 as libc::c_int, buf.as_mut_ptr(), buf.len() as libc::c_int) };
    syscall_ok(r as c_long, "syslog(SYSLOG_ACTION_READ_ALL)", |n| format!("read {n} bytes of the kernel log"))
}

#[repr(C)]
struct BpfInsn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

#[repr(C)]
struct BpfProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// BPF_PROG_LOAD of a valid socket filter: `r0 = 0; exit`.
fn bpf_prog_load() -> Outcome {
    let insns = [BpfInsn { code: 0xb7, regs: 0, off: 0, imm: 0 }, BpfInsn { code: 0x95, regs: 0, off: 0, imm: 0 }];
    let attr = BpfProgLoad {
        prog_type: 1, // BPF_PROG_TYPE_SOCKET_FILTER
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as usize as u64,
        license: c"GPL".as_ptr() as usize as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        kern_version: 0,
        prog_flags: 0,
        prog_name: [0; 16],
        prog_ifindex: 0,
        expected_attach_type: 0,
    };
    // SAFETY: attr and the buffers it points to outlive the call.
    let r = unsafe { libc::syscall(libc::SYS_bpf, 5 as libc::c_int, &attr as *const BpfProgLoad, std::mem::size_of::<BpfProgLoad>() as libc::c_uint) };
    let o = syscall_ok(r as c_long, "bpf(BPF_PROG_LOAD socket filter)", |fd| format!("loaded a socket filter (fd {fd})"));
    if r >= 0 {
        close(r as libc::c_int);
    }
    o
}

/// `perf_event_attr`, PERF_ATTR_SIZE_VER0 (64 bytes).
#[repr(C)]
struct PerfAttr {
    type_: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
}

/// A software CPU clock on this process, user space only.
fn perf_event_open() -> Outcome {
    let attr = PerfAttr {
        type_: 1, // PERF_TYPE_SOFTWARE
        size: std::mem::size_of::<PerfAttr>() as u32,
        config: 0, // PERF_COUNT_SW_CPU_CLOCK
        sample_period: 0,
        sample_type: 0,
        read_format: 0,
        flags: 1 | (1 << 5) | (1 << 6), // disabled, exclude_kernel, exclude_hv
        wakeup_events: 0,
        bp_type: 0,
        config1: 0,
    };
    // SAFETY: attr is valid for the call.
    let r = unsafe {
        libc::syscall(libc::SYS_perf_event_open, &attr as *const PerfAttr, 0 as libc::pid_t, -1 as libc::c_int, -1 as libc::c_int, 8 as libc::c_ulong)
    };
    let o = syscall_ok(r as c_long, "perf_event_open(software cpu-clock, self)", |fd| format!("opened a perf event (fd {fd})"));
    if r >= 0 {
        close(r as libc::c_int);
    }
    o
}

fn userfaultfd() -> Outcome {
    // SAFETY: flags only.
    let r = unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC | libc::O_NONBLOCK) };
    let o = syscall_ok(r as c_long, "userfaultfd", |fd| format!("got a userfaultfd (fd {fd})"));
    if r >= 0 {
        close(r as libc::c_int);
    }
    o
}

fn io_uring_setup() -> Outcome {
    let mut params = [0u32; 30]; // struct io_uring_params, 120 bytes
                                 // SAFETY: params is valid and writable for the call.
    let r = unsafe { libc::syscall(libc::SYS_io_uring_setup, 4 as libc::c_uint, params.as_mut_ptr()) };
    let o = syscall_ok(r as c_long, "io_uring_setup(4 entries)", |fd| format!("created an io_uring (fd {fd})"));
    if r >= 0 {
        close(r as libc::c_int);
    }
    o
}

fn keyctl_join() -> Outcome {
    // SAFETY: the name is NUL-terminated.
    let r = unsafe {
        libc::syscall(libc::SYS_keyctl, 1 as libc::c_int /* KEYCTL_JOIN_SESSION_KEYRING */, c"berth-probe".as_ptr())
    };
    syscall_ok(r as c_long, "keyctl(KEYCTL_JOIN_SESSION_KEYRING)", |k| format!("joined a new session keyring {k}"))
}

fn add_key() -> Outcome {
    let payload = b"x";
    // SAFETY: strings are NUL-terminated, the payload valid for its length.
    let r = unsafe {
        libc::syscall(
            libc::SYS_add_key,
            c"user".as_ptr(),
            c"berth-probe".as_ptr(),
            payload.as_ptr(),
            payload.len(),
            -2 as libc::c_int, // KEY_SPEC_PROCESS_KEYRING
        )
    };
    syscall_ok(r as c_long, "add_key(user, process keyring)", |k| format!("added key {k}"))
}

fn personality() -> Outcome {
    // SAFETY: plain call.
    let r = unsafe { libc::syscall(libc::SYS_personality, 0x0040000 as libc::c_ulong) };
    syscall_ok(r as c_long, "personality(ADDR_NO_RANDOMIZE)", |_| "set ADDR_NO_RANDOMIZE".into())
}

fn acct() -> Outcome {
    if let Err(o) = write_file(TMP_ACCT, b"") {
        return o;
    }
    // SAFETY: the path is NUL-terminated.
    let r = unsafe { libc::syscall(libc::SYS_acct, TMP_ACCT.as_ptr()) };
    let o = syscall_ok(r as c_long, "acct /tmp/.berth-probe-acct", |_| "process accounting switched on".into());
    if r == 0 {
        // SAFETY: null turns accounting off.
        unsafe {
            libc::syscall(libc::SYS_acct, std::ptr::null::<libc::c_char>());
        }
    }
    unlink(TMP_ACCT);
    o
}

fn swapon() -> Outcome {
    if let Err(o) = write_file(TMP_SWAP, &[0u8; 4096]) {
        return o;
    }
    // SAFETY: the path is NUL-terminated.
    let r = unsafe { libc::syscall(libc::SYS_swapon, TMP_SWAP.as_ptr(), 0 as libc::c_int) };
    let o = syscall_ok(r as c_long, "swapon /tmp/.berth-probe-swap", |_| "swap enabled".into());
    if r == 0 {
        // SAFETY: as above.
        unsafe {
            libc::syscall(libc::SYS_swapoff, TMP_SWAP.as_ptr());
        }
    }
    unlink(TMP_SWAP);
    o
}

/// Set the clock to the time it already shows.
fn settimeofday() -> Outcome {
    // SAFETY: tv is a valid buffer.
    unsafe {
        let mut tv: libc::timeval = std::mem::zeroed();
        if libc::gettimeofday(&mut tv, std::ptr::null_mut()) != 0 {
            return Outcome::Error(format!("gettimeofday: {}", errno_name(errno())));
        }
        if libc::settimeofday(&tv, std::ptr::null()) != 0 {
            return failed("settimeofday(now)");
        }
    }
    Outcome::Succeeded("settimeofday(now) succeeded".into())
}

fn clock_settime() -> Outcome {
    // SAFETY: ts is a valid buffer.
    unsafe {
        let mut ts: libc::timespec = std::mem::zeroed();
        if libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) != 0 {
            return Outcome::Error(format!("clock_gettime: {}", errno_name(errno())));
        }
        if libc::clock_settime(libc::CLOCK_REALTIME, &ts) != 0 {
            return failed("clock_settime(CLOCK_REALTIME, now)");
        }
    }
    Outcome::Succeeded("clock_settime(now) succeeded".into())
}

#[cfg(target_arch = "x86_64")]
fn ioperm() -> Outcome {
    // SAFETY: asks for access to one port.
    let r = unsafe { libc::syscall(libc::SYS_ioperm, 0x80 as libc::c_ulong, 1 as libc::c_ulong, 1 as libc::c_int) };
    syscall_ok(r as c_long, "ioperm(0x80)", |_| "got I/O port access".into())
}

// ---------------------------------------------------------------- processes

fn ptrace(req: libc::c_int, pid: libc::pid_t) -> c_long {
    // SAFETY: attach/seize/traceme/detach take no buffers.
    unsafe { libc::syscall(libc::SYS_ptrace, req as c_long, pid as c_long, 0 as c_long, 0 as c_long) as c_long }
}

/// Fork a target that only sleeps, then from a second child (its
/// sibling, not its parent) PTRACE_ATTACH to it.
fn ptrace_sibling() -> Outcome {
    let _ = std::io::Write::flush(&mut std::io::stdout());
    // SAFETY: the target child only sleeps until killed.
    let target = unsafe { libc::fork() };
    if target < 0 {
        return Outcome::Error(format!("fork: {}", errno_name(errno())));
    }
    if target == 0 {
        loop {
            // SAFETY: pause has no preconditions.
            unsafe {
                libc::pause();
            }
        }
    }
    let end = sys::run_closure_in_child(
        &|| {
            let r = ptrace(libc::PTRACE_ATTACH as libc::c_int, target);
            let o = if r < 0 {
                failed(format!("ptrace(PTRACE_ATTACH, sibling {target})"))
            } else {
                let _ = sys::wait_timeout(target, Duration::from_secs(2));
                Outcome::Succeeded(format!("attached to sibling {target}"))
            };
            encode_outcome(&o)
        },
        INNER_TIMEOUT,
    );
    sys::kill_and_reap(target);
    inner_outcome(end)
}

/// PTRACE_SEIZE (same permission checks as ATTACH, but the tracee is not
/// stopped, so the probe cannot be left stopped if pid 1 is the probe).
fn ptrace_pid1() -> Outcome {
    let r = ptrace(libc::PTRACE_SEIZE as libc::c_int, 1);
    syscall_ok(r, "ptrace(PTRACE_SEIZE, 1)", |_| "seized pid 1".into())
}

fn ptrace_traceme() -> Outcome {
    let end = sys::run_closure_in_child(
        &|| {
            let r = ptrace(libc::PTRACE_TRACEME as libc::c_int, 0);
            encode_outcome(&syscall_ok(r, "ptrace(PTRACE_TRACEME)", |_| "PTRACE_TRACEME accepted".into()))
        },
        INNER_TIMEOUT,
    );
    inner_outcome(end)
}

/// A nested child's end as an outcome (its signal death counts the same
/// way as an attempt's: SIGSYS/SIGKILL are policy).
fn inner_outcome(end: sys::ChildEnd) -> Outcome {
    match end {
        sys::ChildEnd::Report(t) => decode_outcome(&t).unwrap_or_else(|| Outcome::Error(format!("unreadable inner report {t:?}"))),
        sys::ChildEnd::Signaled(s) if s == libc::SIGSYS || s == libc::SIGKILL => Outcome::Blocked(format!("inner child killed by {}", sys::signal_name(s))),
        sys::ChildEnd::Signaled(s) => Outcome::Error(format!("inner child killed by {}", sys::signal_name(s))),
        sys::ChildEnd::Exited(c) => Outcome::Error(format!("inner child exited {c} without a report")),
        sys::ChildEnd::TimedOut => Outcome::Error("inner child timed out".into()),
        sys::ChildEnd::Failed(w) => Outcome::Error(w),
    }
}

/// Run `path args...` with stdout captured; `Ok((status, output))`, or
/// `Err(errno)` when execve itself failed.
fn exec_capture(path: &CStr, arg: &CStr) -> Result<(libc::c_int, String), Outcome> {
    let (rfd, wfd) = sys::pipe().map_err(|e| Outcome::Error(format!("pipe: {}", errno_name(e))))?;
    let (erfd, ewfd) = sys::pipe().map_err(|e| Outcome::Error(format!("pipe: {}", errno_name(e))))?;
    let argv = [path.as_ptr(), arg.as_ptr(), std::ptr::null()];
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    let _ = std::io::Write::flush(&mut std::io::stdout());
    // SAFETY: the child only dup2s, execs, and on failure writes errno.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(Outcome::Error(format!("fork: {}", errno_name(errno()))));
    }
    if pid == 0 {
        // SAFETY: descriptors are ours; argv/envp are NUL-terminated arrays.
        unsafe {
            libc::dup2(wfd, 1);
            libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr());
            let e = errno().to_ne_bytes();
            libc::write(ewfd, e.as_ptr() as *const libc::c_void, e.len());
            libc::_exit(127);
        }
    }
    close(wfd);
    close(ewfd);
    let mut out = Vec::new();
    while let Ok(b) = sys::read_some(rfd, 4096) {
        if b.is_empty() || out.len() > 64 * 1024 {
            break;
        }
        out.extend(b);
    }
    let ebytes = sys::read_some(erfd, 4).unwrap_or_default();
    close(rfd);
    close(erfd);
    let st = sys::wait_timeout(pid, INNER_TIMEOUT).ok_or_else(|| Outcome::Error("exec'd child did not end".into()))?;
    if ebytes.len() == 4 {
        let e = i32::from_ne_bytes([ebytes[0], ebytes[1], ebytes[2], ebytes[3]]);
        return Err(Outcome::Failed { errno: e, what: format!("execve {}", lossy(path)) });
    }
    Ok((st, String::from_utf8_lossy(&out).into_owned()))
}

/// Gain euid 0 through the image's setuid-root copy of the probe while
/// running as a non-root uid: drop to uid 1000 (needs CAP_SETUID/SETGID,
/// or the container already runs as non-root), exec `/bin/suid-probe
/// --whoami`, and require its euid to stay non-zero (nosuid mount or
/// no_new_privs). When the drop is impossible (uid 0 without CAP_SETUID,
/// the default container), the exec still must not gain capabilities.
fn suid_root_exec() -> Outcome {
    let meta = match fs::metadata("/bin/suid-probe") {
        Ok(m) => m,
        Err(e) if e.raw_os_error() == Some(ENOENT) => return Outcome::Error("no /bin/suid-probe".into()),
        Err(e) => return Outcome::Error(format!("stat /bin/suid-probe: {}", sys::io_errno_name(&e))),
    };
    // Host root owns the image's files; inside a user namespace that maps no
    // host root they show as the overflow uid. Either is "setuid root" here:
    // the owner berth's image builder gave it.
    let overflow = fs::read_to_string("/proc/sys/kernel/overflowuid").ok().and_then(|s| s.trim().parse::<u32>().ok()).unwrap_or(65534);
    let owner = meta.uid();
    if (owner != 0 && owner != overflow) || meta.mode() & 0o4000 == 0 {
        return Outcome::Error(format!("/bin/suid-probe is not setuid root (uid {owner}, mode {:o})", meta.mode() & 0o7777));
    }
    // SAFETY: credential calls with no pointers.
    let (uid, dropped) = unsafe {
        if libc::getuid() == 0 {
            let g = libc::setresgid(NON_ROOT, NON_ROOT, NON_ROOT);
            let u = libc::setresuid(NON_ROOT, NON_ROOT, NON_ROOT);
            (libc::getuid(), g == 0 && u == 0)
        } else {
            (libc::getuid(), true)
        }
    };
    let drop_err = if dropped { String::new() } else { errno_name(errno()) };
    let my_caps = works::cap_eff().unwrap_or(0);
    let (st, out) = match exec_capture(SUID_PROBE, c"--whoami") {
        Ok(v) => v,
        Err(o) => return o,
    };
    let Some((euid, caps)) = parse_whoami(&out) else {
        return Outcome::Error(format!("no whoami line from /bin/suid-probe ({}): {:?}", sys::describe_status(st), out.trim()));
    };
    let caps = caps.unwrap_or(u64::MAX);
    let gained = caps & !my_caps;
    if dropped {
        if euid == 0 || euid == owner {
            Outcome::Escaped(format!("ran as uid {uid}; /bin/suid-probe had euid {euid}, its owner's (CapEff={caps:016x})"))
        } else if gained != 0 {
            Outcome::Escaped(format!("ran as uid {uid}; /bin/suid-probe euid {euid} but gained capabilities {gained:016x}"))
        } else {
            Outcome::Blocked(format!("ran as uid {uid}; /bin/suid-probe kept euid {euid} (nosuid/no_new_privs)"))
        }
    } else if gained != 0 {
        Outcome::Escaped(format!("as uid 0, /bin/suid-probe gained capabilities {gained:016x}"))
    } else {
        Outcome::Blocked(format!(
            "could not drop to uid {NON_ROOT} ({drop_err}; CAP_SETUID/CAP_SETGID missing or uid unmapped); as uid 0 the setuid-root exec gained no capabilities (CapEff={caps:016x}). Run the probe as a non-root uid or with CAP_SETUID+CAP_SETGID for the euid test"
        ))
    }
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// capset: add CAP_SYS_ADMIN to the effective and permitted sets.
fn capset_sys_admin() -> Outcome {
    let mut hdr = CapHeader { version: 0x2008_0522, pid: 0 };
    let mut data = [CapData::default(); 2];
    // SAFETY: header and two data structs, as _LINUX_CAPABILITY_VERSION_3 wants.
    let r = unsafe { libc::syscall(libc::SYS_capget, &mut hdr as *mut CapHeader, data.as_mut_ptr()) };
    if let Err(o) = ck(r as c_long, "capget") {
        return o;
    }
    let bit = 1u32 << 21; // CAP_SYS_ADMIN
    let had = data[0].effective & bit != 0;
    data[0].effective |= bit;
    data[0].permitted |= bit;
    let mut hdr = CapHeader { version: 0x2008_0522, pid: 0 };
    // SAFETY: as above.
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) };
    syscall_ok(r as c_long, "capset(+CAP_SYS_ADMIN effective,permitted)", |_| {
        format!("CAP_SYS_ADMIN raised{}", if had { " (it was already effective)" } else { "" })
    })
}

fn ambient_raise() -> Outcome {
    // SAFETY: plain prctl.
    let r =
        unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong, 12 as libc::c_ulong, 0 as libc::c_ulong, 0 as libc::c_ulong) };
    match cki(r, "prctl(PR_CAP_AMBIENT_RAISE, CAP_NET_ADMIN)") {
        Ok(_) => Outcome::Succeeded("CAP_NET_ADMIN raised into the ambient set".into()),
        Err(o) => o,
    }
}

#[repr(C)]
struct FileHandle {
    handle_bytes: u32,
    handle_type: libc::c_int,
    f_handle: [u8; 128],
}

/// The "shocker" route: a handle for a file in the tmpfs, opened again by
/// handle (needs CAP_DAC_READ_SEARCH in the initial namespace).
fn open_by_handle() -> Outcome {
    if let Err(o) = write_file(TMP_HANDLE, b"h") {
        return o;
    }
    let mut fh = FileHandle { handle_bytes: 128, handle_type: 0, f_handle: [0; 128] };
    let mut mount_id: libc::c_int = 0;
    // SAFETY: fh has room for 128 handle bytes; mount_id is an out int.
    let r = unsafe {
        libc::syscall(
            libc::SYS_name_to_handle_at,
            libc::AT_FDCWD,
            TMP_HANDLE.as_ptr(),
            &mut fh as *mut FileHandle,
            &mut mount_id as *mut libc::c_int,
            0 as libc::c_int,
        )
    };
    unlink(TMP_HANDLE);
    if let Err(o) = ck(r as c_long, "name_to_handle_at /tmp file") {
        return o;
    }
    let mfd = open(c"/tmp", libc::O_RDONLY | libc::O_DIRECTORY, 0);
    if mfd < 0 {
        return Outcome::Error(format!("open /tmp: {}", errno_name(errno())));
    }
    // SAFETY: mfd is ours; fh was filled by the kernel.
    let r = unsafe { libc::syscall(libc::SYS_open_by_handle_at, mfd, &mut fh as *mut FileHandle, libc::O_RDONLY | libc::O_CLOEXEC) };
    let e = errno();
    close(mfd);
    if r < 0 {
        // The file was unlinked: ESTALE would mean the permission check passed.
        return Outcome::Failed { errno: e, what: "open_by_handle_at".into() };
    }
    close(r as libc::c_int);
    Outcome::Succeeded("opened a file by handle".into())
}

// ---------------------------------------------------------------- network

fn socket(family: libc::c_int, ty: libc::c_int, proto: libc::c_int, label: &str) -> Outcome {
    // SAFETY: plain socket call.
    let fd = unsafe { libc::socket(family, ty | libc::SOCK_CLOEXEC, proto) };
    if fd < 0 {
        return failed(format!("socket {label}"));
    }
    close(fd);
    Outcome::Succeeded(format!("opened socket {label}"))
}

fn uname() -> Result<libc::utsname, Outcome> {
    // SAFETY: u is a valid out buffer.
    unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) != 0 {
            return Err(Outcome::Error(format!("uname: {}", errno_name(errno()))));
        }
        Ok(u)
    }
}

fn field_len(f: &[libc::c_char]) -> usize {
    f.iter().position(|c| *c == 0).unwrap_or(f.len())
}

/// sethostname to the name it already has. The container owns its UTS
/// namespace, so a success would not rename the host, but the probe cannot
/// verify that from inside: any success is reported as escaped, and
/// berth's seccomp profile must deny sethostname.
fn sethostname() -> Outcome {
    let u = match uname() {
        Ok(u) => u,
        Err(o) => return o,
    };
    let n = field_len(&u.nodename);
    // SAFETY: nodename is valid for n bytes.
    let r = unsafe { libc::sethostname(u.nodename.as_ptr(), n) };
    match cki(r, "sethostname(current name)") {
        Ok(_) => Outcome::Succeeded("sethostname succeeded (own UTS namespace; not verifiable from inside)".into()),
        Err(o) => o,
    }
}

fn setdomainname() -> Outcome {
    let u = match uname() {
        Ok(u) => u,
        Err(o) => return o,
    };
    let n = field_len(&u.domainname);
    // SAFETY: domainname is valid for n bytes.
    let r = unsafe { libc::syscall(libc::SYS_setdomainname, u.domainname.as_ptr(), n) };
    syscall_ok(r as c_long, "setdomainname(current name)", |_| "setdomainname succeeded".into())
}

#[repr(C)]
struct IfReq {
    name: [u8; 16],
    data: [u8; 24],
}

fn lo_req() -> IfReq {
    let mut r = IfReq { name: [0; 16], data: [0; 24] };
    r.name[..2].copy_from_slice(b"lo");
    r
}

/// Re-set lo's current flags (SIOCSIFFLAGS needs CAP_NET_ADMIN over the
/// network namespace; the values do not change).
fn lo_set_flags() -> Outcome {
    lo_set(libc::SIOCGIFFLAGS as libc::c_ulong, libc::SIOCSIFFLAGS as libc::c_ulong, "flags")
}

fn lo_set_mtu() -> Outcome {
    lo_set(libc::SIOCGIFMTU as libc::c_ulong, libc::SIOCSIFMTU as libc::c_ulong, "mtu")
}

fn lo_set(get: libc::c_ulong, set: libc::c_ulong, what: &str) -> Outcome {
    // SAFETY: plain socket call.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Outcome::Error(format!("socket AF_INET SOCK_DGRAM: {}", errno_name(errno())));
    }
    let mut req = lo_req();
    // SAFETY: req is a full ifreq (40 bytes, at least the kernel's size).
    let r = unsafe { libc::ioctl(fd, get as _, &mut req as *mut IfReq) };
    if r != 0 {
        let o = Outcome::Error(format!("read lo {what}: {}", errno_name(errno())));
        close(fd);
        return o;
    }
    // SAFETY: as above.
    let r = unsafe { libc::ioctl(fd, set as _, &mut req as *mut IfReq) };
    let e = errno();
    close(fd);
    if r != 0 {
        return Outcome::Failed { errno: e, what: format!("set lo {what} (unchanged value)") };
    }
    Outcome::Succeeded(format!("set lo {what}"))
}

// ---------------------------------------------------------------- files

fn rootfs_create() -> Outcome {
    let p = c"/.berth-probe-write";
    let fd = open(p, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL, 0o644);
    if fd < 0 {
        return failed("create /.berth-probe-write");
    }
    close(fd);
    unlink(p);
    Outcome::Succeeded("created a file in /".into())
}

fn rootfs_mkdir() -> Outcome {
    let p = c"/.berth-probe-dir";
    // SAFETY: path is NUL-terminated.
    if unsafe { libc::mkdirat(libc::AT_FDCWD, p.as_ptr(), 0o755) } != 0 {
        return failed("mkdir /.berth-probe-dir");
    }
    // SAFETY: as above.
    unsafe {
        libc::unlinkat(libc::AT_FDCWD, p.as_ptr(), libc::AT_REMOVEDIR);
    }
    Outcome::Succeeded("created a directory in /".into())
}

/// Copy the probe into the tmpfs (or, when it does not fit, a 64-byte
/// non-executable file: with noexec the content is never looked at),
/// chmod 755, exec it. EACCES (noexec) blocks; ENOEXEC means the loader
/// was reached, i.e. the mount is not noexec.
fn exec_tmpfs() -> Outcome {
    unlink(TMP_EXE);
    let copied = match fs::read("/proc/self/exe") {
        Ok(b) => write_file(TMP_EXE, &b).is_ok(),
        Err(_) => false,
    };
    if !copied {
        if let Err(o) = write_file(TMP_EXE, &[0u8; 64]) {
            return o;
        }
    }
    let Some(p) = cs("/tmp/.berth-probe-exe") else {
        return Outcome::Error("path".into());
    };
    // SAFETY: path is NUL-terminated.
    if unsafe { libc::fchmodat(libc::AT_FDCWD, p.as_ptr(), 0o755, 0) } != 0 {
        let o = Outcome::Error(format!("chmod 755 {}: {}", lossy(TMP_EXE), errno_name(errno())));
        unlink(TMP_EXE);
        return o;
    }
    let r = exec_capture(TMP_EXE, c"--whoami");
    unlink(TMP_EXE);
    match r {
        Ok((_, out)) => Outcome::Escaped(format!("executed {} from /tmp: {:?}", if copied { "a copy of the probe" } else { "a stub" }, out.trim())),
        Err(Outcome::Failed { errno, .. }) if errno == libc::ENOEXEC => {
            Outcome::Escaped("execve from /tmp reached the loader (ENOEXEC): /tmp is not noexec".into())
        }
        Err(o) => o,
    }
}

/// Count the processes this pid namespace shows; more than a container's
/// own few, or berth itself, means another pid namespace is visible.
fn see_processes() -> Outcome {
    let dir = match fs::read_dir("/proc") {
        Ok(d) => d,
        Err(e) => return Outcome::Error(format!("read /proc: {}", sys::io_errno_name(&e))),
    };
    let mut seen = Vec::new();
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.is_empty() || !name.bytes().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let comm = fs::read_to_string(format!("/proc/{name}/comm")).map(|s| s.trim().to_string()).unwrap_or_else(|_| "?".into());
        seen.push(format!("{name}:{comm}"));
    }
    let list = seen.join(" ");
    if seen.iter().any(|s| s.ends_with(":berth")) {
        return Outcome::Escaped(format!("berth is visible: {list}"));
    }
    if seen.len() > MAX_OWN_PROCS {
        return Outcome::Escaped(format!("{} processes visible (more than {MAX_OWN_PROCS}): {list}", seen.len()));
    }
    Outcome::Blocked(format!("{} processes visible, all the container's: {list}", seen.len()))
}

fn host_path(path: &CStr) -> Outcome {
    match stat_id(path) {
        Some(_) => Outcome::Succeeded(format!("{} is visible", lossy(path))),
        None => failed(format!("stat {}", lossy(path))),
    }
}

/// /proc/1/exe must be the container's own init (or the probe), never
/// berth.
fn proc1_exe() -> Outcome {
    let exe = match fs::read_link("/proc/1/exe") {
        Ok(p) => p.to_string_lossy().into_owned(),
        Err(e) => return Outcome::Failed { errno: e.raw_os_error().unwrap_or(0), what: "readlink /proc/1/exe".into() },
    };
    let comm = fs::read_to_string("/proc/1/comm").map(|s| s.trim().to_string()).unwrap_or_default();
    if exe.ends_with("/berth") || comm == "berth" {
        return Outcome::Escaped(format!("pid 1 is berth: exe={exe} comm={comm}"));
    }
    Outcome::Blocked(format!("pid 1 is the container's own: exe={exe} comm={comm}"))
}

/// /proc/1/root must be the container's own root.
fn proc1_root() -> Outcome {
    let Some(theirs) = stat_id(c"/proc/1/root/") else {
        return failed("stat /proc/1/root");
    };
    let ours = stat_id(c"/");
    if ours != Some(theirs) {
        return Outcome::Escaped("pid 1's root is not the container's root".into());
    }
    for p in [c"/proc/1/root/sbin/berth", c"/proc/1/root/run/berth"] {
        if stat_id(p).is_some() {
            return Outcome::Escaped(format!("{} is reachable", lossy(p)));
        }
    }
    Outcome::Blocked("pid 1's root is the container's own root".into())
}
