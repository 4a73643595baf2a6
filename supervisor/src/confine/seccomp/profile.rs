//! berth's default seccomp profile, as data.
//!
//! It must not number a syscall: the profile names each one with the ABIs it
//! exists on, and [`super::tables`] numbers it.
//!
//! Modelled on Docker's default profile and stricter where a confined embedded
//! container has no business (see the module docs of [`super`] for the
//! differences). Syscalls are named, never numbered: the numbers come from each
//! ABI's table in [`super::tables`]. Every name carries the set of ABIs it
//! exists on ([`On`]): asm-generic (aarch64) dropped the old path-based calls
//! such as `open` and `stat`, 32-bit ARM has `*64`/`*32`/`*_time64` variants,
//! and x86_64 keeps a few of its own. The tests check each declaration against
//! the tables in both directions, so a name absent where it is declared
//! present, or present where it is declared absent, fails.

use super::Arch;

/// The set of ABIs a syscall name exists on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct On(u8);

impl On {
    pub const X86_64: On = On(0b001);
    pub const AARCH64: On = On(0b010);
    pub const ARM: On = On(0b100);
    pub const ALL: On = On(0b111);
    /// Old calls the generic table (aarch64) dropped.
    pub const LEGACY: On = On(0b101);
    /// 64-bit ABIs; 32-bit ARM names these differently (`mmap2`, `ugetrlimit`...).
    pub const LP64: On = On(0b011);

    pub const fn has(self, arch: Arch) -> bool {
        let bit = match arch {
            Arch::X86_64 => 0b001,
            Arch::Aarch64 => 0b010,
            Arch::Arm => 0b100,
        };
        self.0 & bit != 0
    }
}

/// Allowed unconditionally, grouped by where they exist.
pub const ALLOW: &[(On, &[&str])] = &[
    (On::ALL, ALLOW_ALL),
    (On::LEGACY, ALLOW_LEGACY),
    (On::LP64, ALLOW_LP64),
    (On::X86_64, ALLOW_X86_64),
    (On::ARM, ALLOW_ARM),
];

const ALLOW_ALL: &[&str] = &[
    // Process lifetime, identity, limits.
    "execve", "exit", "exit_group", "wait4", "waitid", "kill", "tkill", "tgkill",
    "getpid", "getppid", "gettid", "getpgid", "setpgid", "getsid", "setsid",
    "getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid", "getgroups",
    "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setgroups",
    "setfsuid", "setfsgid", "capget", "capset", "prctl", "seccomp", "prlimit64", "setrlimit",
    "getrusage", "getpriority", "setpriority", "ioprio_get", "ioprio_set", "uname", "sysinfo",
    "getrandom", "times", "umask", "set_tid_address", "set_robust_list", "get_robust_list", "rseq",
    "restart_syscall", "pidfd_open", "pidfd_send_signal", "process_mrelease",
    "landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self",
    // Scheduling.
    "sched_yield", "sched_getaffinity", "sched_setaffinity", "sched_getattr", "sched_setattr",
    "sched_getparam", "sched_setparam", "sched_getscheduler", "sched_setscheduler",
    "sched_get_priority_max", "sched_get_priority_min", "sched_rr_get_interval", "getcpu",
    // Memory.
    "brk", "mprotect", "munmap", "mremap", "madvise", "mincore", "msync", "mlock", "mlock2",
    "munlock", "mlockall", "munlockall", "membarrier", "pkey_alloc", "pkey_free",
    "pkey_mprotect",
    // Files and directories (the *at family).
    "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "preadv2",
    "pwritev2", "lseek", "openat", "openat2", "close", "close_range", "dup", "dup3", "fcntl",
    "flock", "fsync", "fdatasync", "sync", "syncfs", "truncate", "ftruncate", "fallocate",
    "readahead", "fstat", "statx", "statfs", "fstatfs", "getdents64", "getcwd", "chdir", "fchdir",
    "faccessat", "faccessat2", "fchmod", "fchmodat", "fchmodat2", "fchown", "fchownat",
    "mkdirat", "unlinkat", "renameat", "renameat2", "linkat", "symlinkat", "readlinkat",
    "utimensat", "sendfile", "splice", "tee", "vmsplice", "copy_file_range", "cachestat",
    "getxattr", "lgetxattr", "fgetxattr", "setxattr", "lsetxattr", "fsetxattr", "listxattr",
    "llistxattr", "flistxattr", "removexattr", "lremovexattr", "fremovexattr",
    "inotify_init1", "inotify_add_watch", "inotify_rm_watch", "pipe2",
    // Asynchronous I/O (not io_uring: see the module docs).
    "io_setup", "io_destroy", "io_submit", "io_cancel", "io_getevents",
    // Waiting, events, time.
    "futex", "futex_waitv", "futex_wake", "futex_wait", "futex_requeue", "ppoll", "pselect6",
    "epoll_create1", "epoll_ctl", "epoll_pwait", "epoll_pwait2", "eventfd2", "signalfd4",
    "timerfd_create", "timerfd_settime", "timerfd_gettime", "timer_create", "timer_settime",
    "timer_gettime", "timer_getoverrun", "timer_delete", "getitimer", "setitimer",
    "clock_gettime", "clock_getres", "clock_nanosleep", "nanosleep", "gettimeofday",
    // Signals.
    "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigpending", "rt_sigsuspend",
    "rt_sigtimedwait", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "sigaltstack",
    // Sockets (socket and socketpair are argument-filtered).
    "bind", "connect", "listen", "accept", "accept4", "getsockname", "getpeername",
    "sendto", "recvfrom", "sendmsg", "recvmsg", "sendmmsg", "recvmmsg", "shutdown",
    "setsockopt", "getsockopt",
    // System V and POSIX IPC (namespaced by the container's IPC namespace).
    "msgget", "msgsnd", "msgrcv", "msgctl", "semget", "semop", "semtimedop", "semctl",
    "shmget", "shmat", "shmdt", "shmctl", "mq_open", "mq_unlink", "mq_timedsend",
    "mq_timedreceive", "mq_notify", "mq_getsetattr",
];

const ALLOW_LEGACY: &[&str] = &[
    "open", "creat", "stat", "lstat", "access", "chmod", "chown", "lchown", "mkdir", "rmdir",
    "unlink", "rename", "link", "symlink", "readlink", "utimes", "futimesat", "getdents", "pipe",
    "dup2", "poll", "epoll_create", "epoll_wait", "eventfd", "signalfd", "inotify_init",
    "fork", "vfork", "pause", "getpgrp",
];

const ALLOW_LP64: &[&str] = &["mmap", "newfstatat", "fadvise64", "sync_file_range", "getrlimit", "io_pgetevents"];

const ALLOW_X86_64: &[&str] = &["arch_prctl", "map_shadow_stack", "alarm", "time", "select", "utime"];

const ALLOW_ARM: &[&str] = &[
    // 64-bit file offsets and 32-bit ids on a 32-bit ABI.
    "mmap2", "_llseek", "stat64", "lstat64", "fstat64", "fstatat64", "statfs64", "fstatfs64",
    "truncate64", "ftruncate64", "fcntl64", "sendfile64", "arm_fadvise64_64", "arm_sync_file_range",
    "ugetrlimit", "chown32", "fchown32", "lchown32", "getuid32", "geteuid32", "getgid32",
    "getegid32", "getresuid32", "getresgid32", "getgroups32", "setuid32", "setgid32",
    "setreuid32", "setregid32", "setresuid32", "setresgid32", "setgroups32", "setfsuid32",
    "setfsgid32", "_newselect", "send", "recv", "nice",
    "sigaction", "sigprocmask", "sigpending", "sigsuspend", "sigreturn",
    // 64-bit time on a 32-bit ABI (glibc >= 2.34 and musl >= 1.2 call these first).
    "clock_gettime64", "clock_getres_time64", "clock_nanosleep_time64", "timer_gettime64",
    "timer_settime64", "timerfd_gettime64", "timerfd_settime64", "utimensat_time64",
    "pselect6_time64", "ppoll_time64", "io_pgetevents_time64", "recvmmsg_time64",
    "mq_timedsend_time64", "mq_timedreceive_time64", "semtimedop_time64",
    "rt_sigtimedwait_time64", "futex_time64", "sched_rr_get_interval_time64",
    // ARM private calls: thread pointer (glibc's TLS setup), cache flush (JITs), breakpoint.
    "set_tls", "cacheflush", "breakpoint",
];

/// Syscalls allowed only with some arguments, or answered specially. They
/// exist on all three ABIs; [`super::args`] has what each allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    /// `clone`: only without `CLONE_NEW*` flags.
    Clone,
    /// `clone3`: `ENOSYS`, so that libc falls back to the filterable `clone`.
    Clone3,
    /// `socket`, `socketpair`: an allow-list of families.
    Socket,
    /// `personality`: only the values Docker allows.
    Personality,
    /// `ioctl`: never the terminal requests of [`super::args::TTY_IOCTLS`].
    Ioctl,
    /// `execveat`: never with `AT_EMPTY_PATH` (running a descriptor, such
    /// as a memfd, that no path and so no exec rule covers).
    Execveat,
    /// `memfd_create`: only when granted, and then never `MFD_EXEC`.
    MemfdCreate,
}

pub const SPECIAL: &[(&str, Special)] = &[
    ("clone", Special::Clone),
    ("clone3", Special::Clone3),
    ("socket", Special::Socket),
    ("socketpair", Special::Socket),
    ("personality", Special::Personality),
    ("ioctl", Special::Ioctl),
    ("execveat", Special::Execveat),
    ("memfd_create", Special::MemfdCreate),
];

/// Denied by default and named here so that the tests prove it (everything not
/// allowed is denied; these are the ones that matter for escaping).
pub const DENY: &[(On, &[&str])] = &[
    (On::ALL, DENY_ALL),
    (On::LEGACY, &["mknod"]),
    // Secret memory exists on the 64-bit ABIs only (ARM leaves 447 unused).
    (On::LP64, &["memfd_secret"]),
    (On::X86_64, &["iopl", "ioperm", "modify_ldt"]),
    (On::ARM, &["clock_settime64", "clock_adjtime64"]),
];

const DENY_ALL: &[&str] = &[
    // Mounts and namespaces.
    "mount", "umount2", "pivot_root", "chroot", "unshare", "setns", "fsopen", "fsconfig",
    "fsmount", "fspick", "open_tree", "move_mount", "mount_setattr",
    // Kernel code, power, swap, accounting, quotas, logs.
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "reboot",
    "swapon", "swapoff", "acct", "quotactl", "quotactl_fd", "syslog", "lookup_dcookie", "vhangup",
    // Kernel facilities with a history of escapes or shared with the host.
    "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key",
    "io_uring_setup", "io_uring_enter", "io_uring_register", "fanotify_init", "fanotify_mark",
    // Other processes' memory and files by handle.
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd", "process_madvise",
    "open_by_handle_at", "name_to_handle_at",
    // Clocks and names of the host.
    "settimeofday", "clock_settime", "adjtimex", "clock_adjtime", "sethostname", "setdomainname",
    // Device nodes come from berth.
    "mknodat",
    // NUMA policy and odd memory calls.
    "mbind", "set_mempolicy", "get_mempolicy", "move_pages", "remap_file_pages",
];

/// Syscalls a manifest may not add with `seccomp_allow`, and why. Everything
/// else (including the rest of [`DENY`]) may be added by name.
pub const NOT_GRANTABLE: &[(&[&str], &str)] = &[
    (
        &["clone", "clone3", "socket", "socketpair", "personality", "ioctl", "execveat"],
        "is argument-filtered by the default profile (socket families come from `socket_families` and CAP_NET_RAW)",
    ),
    (
        &[
            "mount", "umount2", "pivot_root", "chroot", "unshare", "setns", "fsopen", "fsconfig",
            "fsmount", "fspick", "open_tree", "move_mount", "mount_setattr",
        ],
        "would change the container's mounts or namespaces",
    ),
    (
        &[
            "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "reboot",
            "swapon", "swapoff", "acct", "quotactl", "quotactl_fd", "syslog", "lookup_dcookie",
            "bpf", "perf_event_open", "fanotify_init", "open_by_handle_at", "settimeofday",
            "clock_settime", "clock_settime64", "adjtimex", "clock_adjtime", "clock_adjtime64",
            "iopl", "ioperm",
        ],
        "acts on the host kernel (it needs a capability no container is granted)",
    ),
    (&["keyctl", "add_key", "request_key"], "reaches kernel keyrings, which are not per container"),
    (
        &["io_uring_setup", "io_uring_enter", "io_uring_register"],
        "runs operations the seccomp filter cannot see",
    ),
    (&["ptrace"], "reads and rewrites other processes' memory and registers"),
    (
        &["userfaultfd"],
        "lets a process stall the kernel at will while it copies from user memory, a staple of kernel exploits",
    ),
    (&["modify_ldt"], "rewrites the x86 segment table: old kernel bugs, and no use in a modern program"),
    (&["vhangup"], "hangs up the terminal other processes hold"),
];

/// Why `name` may not be granted, if it may not.
pub fn not_grantable(name: &str) -> Option<&'static str> {
    NOT_GRANTABLE.iter().find(|(names, _)| names.contains(&name)).map(|(_, why)| *why)
}

/// The unconditionally allowed names on `arch`.
pub fn allowed_on(arch: Arch) -> impl Iterator<Item = &'static str> {
    ALLOW.iter().filter(move |(on, _)| on.has(arch)).flat_map(|(_, names)| names.iter().copied())
}

/// The named denials on `arch`.
pub fn denied_on(arch: Arch) -> impl Iterator<Item = &'static str> {
    DENY.iter().filter(move |(on, _)| on.has(arch)).flat_map(|(_, names)| names.iter().copied())
}
