//! Filter contents per architecture, run in the interpreter.

use super::interp::{trace, Action, SeccompData};
use super::profile::{self, On};
use super::*;

const DENY: Action = Action::Errno(EPERM);

fn nr(arch: Arch, name: &str) -> u32 {
    arch.number(name).unwrap_or_else(|| panic!("{name} not on {arch}"))
}

fn call(p: &Program, name: &str, args: &[u64]) -> Action {
    p.run(&SeccompData::new(p.arch().audit(), nr(p.arch(), name), args)).unwrap()
}

fn default(arch: Arch) -> Program {
    compile(&Policy::new(), arch).unwrap_or_else(|e| panic!("{e}"))
}

fn with_net_raw(arch: Arch) -> Program {
    let mut p = Policy::new();
    p.set_net_raw(true);
    compile(&p, arch).unwrap()
}

/// A name that exists on `arch` for each role, whatever the ABI calls it.
fn mmap_name(arch: Arch) -> &'static str {
    if arch == Arch::Arm {
        "mmap2"
    } else {
        "mmap"
    }
}

#[test]
fn tables_have_unique_sorted_numbers_and_names() {
    for arch in Arch::ALL {
        let t = arch.table();
        assert!(t.len() > 300, "{arch}: {}", t.len());
        for w in t.windows(2) {
            assert!(w[0].1 < w[1].1, "{arch}: {:?} then {:?}", w[0], w[1]);
        }
        for (i, (name, _)) in t.iter().enumerate() {
            assert!(!t[..i].iter().any(|(n, _)| n == name), "{arch}: {name} twice");
            assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'), "{name}");
        }
    }
    // Spot checks against the kernel's tables.
    assert_eq!(Arch::X86_64.number("read"), Some(0));
    assert_eq!(Arch::X86_64.number("clone3"), Some(435));
    assert_eq!(Arch::Aarch64.number("openat"), Some(56));
    assert_eq!(Arch::Aarch64.number("open"), None);
    assert_eq!(Arch::Arm.number("clock_gettime64"), Some(403));
    assert_eq!(Arch::Arm.number("set_tls"), Some(0x0f_0005));
    assert_eq!(Arch::Arm.number("socket"), Some(281));
    assert_eq!(Arch::Arm.syscall_name(120), Some("clone"));
}

/// The x86_64 table agrees with libc's constants for this host.
#[cfg(target_arch = "x86_64")]
#[test]
fn x86_64_table_agrees_with_libc() {
    let sample: &[(&str, libc::c_long)] = &[
        ("read", libc::SYS_read),
        ("write", libc::SYS_write),
        ("open", libc::SYS_open),
        ("openat", libc::SYS_openat),
        ("mmap", libc::SYS_mmap),
        ("clone", libc::SYS_clone),
        ("clone3", libc::SYS_clone3),
        ("socket", libc::SYS_socket),
        ("personality", libc::SYS_personality),
        ("futex", libc::SYS_futex),
        ("epoll_pwait", libc::SYS_epoll_pwait),
        ("exit_group", libc::SYS_exit_group),
        ("mount", libc::SYS_mount),
        ("umount2", libc::SYS_umount2),
        ("pivot_root", libc::SYS_pivot_root),
        ("unshare", libc::SYS_unshare),
        ("setns", libc::SYS_setns),
        ("kexec_file_load", libc::SYS_kexec_file_load),
        ("bpf", libc::SYS_bpf),
        ("ptrace", libc::SYS_ptrace),
        ("io_uring_setup", libc::SYS_io_uring_setup),
        ("userfaultfd", libc::SYS_userfaultfd),
        ("statx", libc::SYS_statx),
        ("rseq", libc::SYS_rseq),
        ("arch_prctl", libc::SYS_arch_prctl),
        ("newfstatat", libc::SYS_newfstatat),
        ("futex_waitv", libc::SYS_futex_waitv),
        ("mseal", libc::SYS_mseal),
    ];
    for (name, n) in sample {
        assert_eq!(Arch::X86_64.number(name).map(i64::from), Some(*n), "{name}");
    }
}

#[test]
fn profile_declarations_match_the_tables_exactly() {
    for (kind, groups) in [("allow", profile::ALLOW), ("deny", profile::DENY)] {
        for (on, names) in groups {
            for name in *names {
                for arch in Arch::ALL {
                    assert_eq!(
                        arch.number(name).is_some(),
                        on.has(arch),
                        "{kind} `{name}` is declared {on:?} but {arch} {}",
                        if on.has(arch) { "lacks it" } else { "has it" }
                    );
                }
            }
        }
    }
    for (name, _) in profile::SPECIAL {
        for arch in Arch::ALL {
            assert!(arch.number(name).is_some(), "{name} on {arch}");
        }
    }
    // No name is both allowed and denied, or listed twice.
    let mut seen = std::collections::BTreeSet::new();
    let all = profile::ALLOW.iter().chain(profile::DENY).flat_map(|(_, n)| n.iter());
    for name in all.chain(profile::SPECIAL.iter().map(|(n, _)| n)) {
        assert!(seen.insert(*name), "{name} listed twice");
    }
    // Whatever may not be granted is denied (or specially filtered) by default.
    for (names, _) in profile::NOT_GRANTABLE {
        for name in *names {
            assert!(Arch::ALL.iter().any(|a| a.number(name).is_some()), "{name}");
            let special = profile::SPECIAL.iter().any(|(n, _)| n == name);
            let denied = profile::DENY.iter().any(|(_, n)| n.contains(name));
            assert!(special || denied, "{name} is not grantable but not denied");
        }
    }
    assert!(Arch::ALL.iter().all(|a| On::ALL.has(*a)));
}

#[test]
fn common_syscalls_are_allowed_on_every_arch() {
    for arch in Arch::ALL {
        let p = default(arch);
        let mut names = vec![
            "read", "write", "openat", "close", "exit_group", "exit", "futex", "epoll_pwait", "epoll_ctl",
            "clock_gettime", "nanosleep", "rt_sigaction", "rt_sigreturn", "execve", "wait4", "getrandom",
            "brk", "munmap", "mprotect", "set_tid_address", "set_robust_list", "rseq", "prlimit64", "statx",
            "getdents64", "pipe2", "dup3", "fcntl", "ioctl", "accept4", "connect", "sendmsg", "recvmsg",
            "getpid", "gettid", "tgkill", "uname", "madvise", "sched_getaffinity", "eventfd2", "ppoll",
        ];
        names.push(mmap_name(arch));
        match arch {
            Arch::X86_64 => names.extend(["arch_prctl", "open", "stat", "epoll_wait", "poll", "newfstatat", "fork"]),
            Arch::Aarch64 => names.extend(["newfstatat", "fadvise64"]),
            Arch::Arm => names.extend([
                "set_tls", "cacheflush", "clock_gettime64", "futex_time64", "fstatat64", "_llseek", "open",
                "epoll_wait", "ugetrlimit", "getuid32",
            ]),
        }
        for name in names {
            assert_eq!(call(&p, name, &[]), Action::Allow, "{name} on {arch}");
        }
        // Every profile entry, not just the sample.
        for name in profile::allowed_on(arch) {
            assert_eq!(call(&p, name, &[]), Action::Allow, "{name} on {arch}");
        }
    }
}

#[test]
fn escape_syscalls_are_denied_with_eperm() {
    let must_deny = [
        "mount", "umount2", "pivot_root", "chroot", "unshare", "setns", "init_module", "finit_module",
        "delete_module", "kexec_load", "kexec_file_load", "reboot", "bpf", "keyctl", "add_key", "request_key",
        "perf_event_open", "userfaultfd", "ptrace", "process_vm_readv", "process_vm_writev", "open_by_handle_at",
        "name_to_handle_at", "swapon", "swapoff", "acct", "settimeofday", "clock_settime", "adjtimex",
        "clock_adjtime", "sethostname", "setdomainname", "lookup_dcookie", "quotactl", "syslog", "vhangup",
        "mknodat", "fanotify_init", "io_uring_setup", "io_uring_enter", "io_uring_register", "fsopen",
        "open_tree", "move_mount",
    ];
    for arch in Arch::ALL {
        let p = default(arch);
        for name in must_deny.iter().copied().chain(profile::denied_on(arch)) {
            assert_eq!(call(&p, name, &[]), DENY, "{name} on {arch}");
        }
        if arch != Arch::Aarch64 {
            assert_eq!(call(&p, "mknod", &[]), DENY, "{arch}");
        }
        if arch == Arch::X86_64 {
            for name in ["iopl", "ioperm", "modify_ldt"] {
                assert_eq!(call(&p, name, &[]), DENY, "{name}");
            }
        }
        assert_eq!(call(&p, "memfd_create", &[0, 0]), DENY, "{arch}");
        assert_eq!(call(&p, "execveat", &[3, 0, 0, 0, u64::from(args::AT_EMPTY_PATH)]), DENY, "{arch}");
        assert_eq!(call(&p, "clone3", &[]), Action::Errno(ENOSYS), "{arch}");
        // Numbers nothing uses are denied too, not allowed.
        for n in [1000, 0xffff, 0x0f_0000, 0x3fff_ffff] {
            let got = p.run(&SeccompData::new(arch.audit(), n, &[])).unwrap();
            assert_eq!(got, DENY, "{n:#x} on {arch}");
        }
    }
}

#[test]
fn clone_may_not_create_namespaces() {
    const CLONE_VM: u64 = 0x100;
    const THREAD: u64 = CLONE_VM | 0x200 | 0x400 | 0x800 | 0x10000 | 0x40000 | 0x80000 | 0x100000 | 0x200000;
    const SIGCHLD: u64 = 17;
    let new = [
        ("NEWNS", 0x0002_0000u64),
        ("NEWCGROUP", 0x0200_0000),
        ("NEWUTS", 0x0400_0000),
        ("NEWIPC", 0x0800_0000),
        ("NEWUSER", 0x1000_0000),
        ("NEWPID", 0x2000_0000),
        ("NEWNET", 0x4000_0000),
    ];
    assert_eq!(new.iter().fold(0, |m, (_, f)| m | f), u64::from(CLONE_NEW_MASK));
    assert_eq!(CLONE_NEW_MASK, 0x7E02_0000);
    for arch in Arch::ALL {
        let p = default(arch);
        assert_eq!(call(&p, "clone", &[THREAD]), Action::Allow, "{arch}");
        assert_eq!(call(&p, "clone", &[SIGCHLD]), Action::Allow, "{arch}");
        assert_eq!(call(&p, "clone", &[CLONE_VM | 0x4000 | SIGCHLD]), Action::Allow, "{arch} vfork-like");
        for (flag, bit) in new {
            assert_eq!(call(&p, "clone", &[SIGCHLD | bit]), DENY, "{flag} on {arch}");
            assert_eq!(call(&p, "clone", &[THREAD | bit]), DENY, "{flag} on {arch}");
        }
        // Other arguments do not matter.
        assert_eq!(call(&p, "clone", &[SIGCHLD, u64::MAX, u64::MAX, u64::MAX, u64::MAX]), Action::Allow);
    }
}

#[cfg(target_os = "linux")]
#[test]
fn clone_flags_match_libc() {
    let m = libc::CLONE_NEWNS
        | libc::CLONE_NEWCGROUP
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUSER
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWNET;
    assert_eq!(m as u32, CLONE_NEW_MASK);
    assert_eq!(
        (libc::AF_PACKET, libc::AF_ALG, libc::AF_VSOCK),
        (AF_PACKET as i32, AF_ALG as i32, AF_VSOCK as i32)
    );
    assert_eq!((libc::EPERM, libc::ENOSYS), (i32::from(EPERM), i32::from(ENOSYS)));
}

#[test]
fn socket_families_are_an_allow_list() {
    const SOCK_STREAM: u64 = 1;
    const SOCK_RAW: u64 = 3;
    let mut granted = Policy::new();
    granted.allow_family("can").unwrap();
    granted.allow_family("bluetooth").unwrap();
    for arch in Arch::ALL {
        for (p, net_raw, extra) in
            [(default(arch), false, &[][..]), (with_net_raw(arch), true, &[][..]), (compile(&granted, arch).unwrap(), false, &[29u64, 31][..])]
        {
            for call_name in ["socket", "socketpair"] {
                for family in 0..=u64::from(args::AF_MAX) + 4 {
                    let want = match family {
                        1 | 2 | 10 | 16 => Action::Allow,
                        17 if net_raw => Action::Allow,
                        f if extra.contains(&f) => Action::Allow,
                        _ => DENY,
                    };
                    assert_eq!(call(&p, call_name, &[family, SOCK_STREAM, 0]), want, "{call_name} {family} on {arch}");
                }
                // Never, whatever else is granted.
                for family in [AF_ALG, AF_VSOCK, 15, 0, 255, u32::MAX] {
                    assert_eq!(call(&p, call_name, &[u64::from(family), SOCK_STREAM, 0]), DENY, "{family} on {arch}");
                }
                let packet = call(&p, call_name, &[u64::from(AF_PACKET), SOCK_RAW, 0]);
                assert_eq!(packet, if net_raw { Action::Allow } else { DENY }, "AF_PACKET on {arch}, net_raw {net_raw}");
                // The kernel reads an int: high bits cannot hide the family.
                assert_eq!(call(&p, call_name, &[(1 << 32) | u64::from(AF_ALG), 0, 0]), DENY, "{arch}");
                assert_eq!(call(&p, call_name, &[(1 << 32) | 2, 0, 0]), Action::Allow, "{arch}");
            }
        }
    }
}

#[test]
fn socket_family_grants_are_checked() {
    for (name, words) in [
        ("unix", "every container already"),
        ("inet6", "every container already"),
        ("packet", "CAP_NET_RAW"),
        ("alg", "crypto"),
        ("vsock", "hypervisor"),
        ("key", "IPsec"),
        ("ipx2", "not a socket family"),
    ] {
        let mut pol = Policy::new();
        pol.allow_family(name).unwrap();
        for arch in Arch::ALL {
            let e = compile(&pol, arch).unwrap_err();
            assert!(matches!(e, SeccompError::Family { .. }), "{name}: {e}");
            let text = e.to_string();
            assert!(text.starts_with(&format!("socket_families: `{name}`")) && text.contains(words), "{text}");
        }
    }
    let mut pol = Policy::new();
    for f in args::FAMILIES.iter().filter(|f| f.2 == args::Grant::ByName).take(crate::release::manifest::FAMILIES_MAX) {
        pol.allow_family(f.0).unwrap();
    }
    assert!(pol.allow_family("can").is_err(), "bounded");
    // Every name in the table is unique, and so is every number.
    for (i, (name, nr, _)) in args::FAMILIES.iter().enumerate() {
        assert!(name.len() <= args::FAMILY_NAME_MAX, "{name}");
        assert!(*nr < args::AF_MAX, "{name}");
        assert!(!args::FAMILIES[..i].iter().any(|(n, r, _)| n == name || r == nr), "{name}");
    }
}

#[test]
fn terminal_ioctls_are_refused_on_any_fd() {
    const TCGETS: u64 = 0x5401;
    const FIONREAD: u64 = 0x541B;
    let names: Vec<&str> = args::TTY_IOCTLS.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["TIOCSTI", "TIOCLINUX", "TIOCCONS", "TIOCSETD"]);
    for arch in Arch::ALL {
        for p in [default(arch), with_net_raw(arch)] {
            for fd in [0u64, 1, 2, 3, 1023, u64::from(u32::MAX)] {
                for (name, req) in args::TTY_IOCTLS {
                    assert_eq!(call(&p, "ioctl", &[fd, u64::from(req), 0]), DENY, "{name} on fd {fd}, {arch}");
                    // The kernel's `cmd` is an unsigned int.
                    assert_eq!(call(&p, "ioctl", &[fd, (0xdead << 32) | u64::from(req), 0]), DENY, "{name} {arch}");
                }
                for ok in [TCGETS, FIONREAD, 0x5413 /* TIOCGWINSZ */, 0x8913 /* SIOCGIFFLAGS */, 0] {
                    assert_eq!(call(&p, "ioctl", &[fd, ok, 0]), Action::Allow, "{ok:#x} on {arch}");
                }
            }
        }
    }
}

#[cfg(target_os = "linux")]
#[test]
fn filtered_constants_match_libc() {
    let tty = [libc::TIOCSTI, libc::TIOCLINUX, libc::TIOCCONS, libc::TIOCSETD];
    for ((name, req), want) in args::TTY_IOCTLS.iter().zip(tty) {
        assert_eq!(u64::from(*req), want, "{name}");
    }
    assert_eq!(args::AT_EMPTY_PATH, libc::AT_EMPTY_PATH as u32);
    assert_eq!((args::AF_UNIX, args::AF_INET, args::AF_INET6, args::AF_NETLINK), (1, 2, 10, 16));
    for (name, nr) in [("can", libc::AF_CAN), ("bluetooth", libc::AF_BLUETOOTH), ("xdp", libc::AF_XDP), ("key", libc::AF_KEY)] {
        assert_eq!(args::family(name).map(|f| f.0), Some(nr as u32), "{name}");
    }
}

#[test]
fn execveat_may_not_run_a_descriptor() {
    const AT_SYMLINK_NOFOLLOW: u64 = 0x100;
    for arch in Arch::ALL {
        for p in [default(arch), with_net_raw(arch)] {
            let empty = u64::from(args::AT_EMPTY_PATH);
            for fd in [3u64, 100, (-100i64) as u64] {
                assert_eq!(call(&p, "execveat", &[fd, 0, 0, 0, empty]), DENY, "{arch}");
                assert_eq!(call(&p, "execveat", &[fd, 0, 0, 0, empty | AT_SYMLINK_NOFOLLOW]), DENY, "{arch}");
                assert_eq!(call(&p, "execveat", &[fd, 0, 0, 0, 0]), Action::Allow, "{arch}");
                assert_eq!(call(&p, "execveat", &[fd, 0, 0, 0, AT_SYMLINK_NOFOLLOW]), Action::Allow, "{arch}");
            }
            assert_eq!(call(&p, "execve", &[]), Action::Allow, "{arch}");
        }
        // Not even a manifest gets it back.
        let mut pol = Policy::new();
        pol.allow("execveat").unwrap();
        assert!(matches!(compile(&pol, arch), Err(SeccompError::NotGrantable { .. })), "{arch}");
    }
}

#[test]
fn memfd_create_only_when_granted_and_never_executable() {
    const MFD_CLOEXEC: u64 = 1;
    const MFD_NOEXEC_SEAL: u64 = 8;
    let mfd_exec = u64::from(args::MFD_EXEC);
    let mut granted = Policy::new();
    granted.allow("memfd_create").unwrap();
    assert!(granted.memfd() && !Policy::new().memfd());
    for arch in Arch::ALL {
        let p = default(arch);
        for flags in [0, MFD_CLOEXEC, MFD_NOEXEC_SEAL, mfd_exec] {
            assert_eq!(call(&p, "memfd_create", &[0, flags]), DENY, "{flags:#x} on {arch}");
        }
        let g = compile(&granted, arch).unwrap();
        for flags in [0, MFD_CLOEXEC, MFD_NOEXEC_SEAL, MFD_CLOEXEC | MFD_NOEXEC_SEAL] {
            assert_eq!(call(&g, "memfd_create", &[0, flags]), Action::Allow, "{flags:#x} on {arch}");
        }
        for flags in [mfd_exec, mfd_exec | MFD_CLOEXEC] {
            assert_eq!(call(&g, "memfd_create", &[0, flags]), DENY, "{flags:#x} on {arch}");
        }
        assert_ne!(g.hash(), p.hash());
        // The grant opens nothing else.
        assert_eq!(call(&g, "execveat", &[3, 0, 0, 0, u64::from(args::AT_EMPTY_PATH)]), DENY);
        if arch != Arch::Arm {
            assert_eq!(call(&g, "memfd_secret", &[0]), DENY);
        }
    }
}

#[test]
fn personality_is_limited_to_dockers_values() {
    for arch in Arch::ALL {
        let p = default(arch);
        for v in [0u64, 8, 0x2_0000, 0x2_0008, 0xffff_ffff] {
            assert_eq!(call(&p, "personality", &[v]), Action::Allow, "{v:#x} on {arch}");
        }
        // ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC, PER_BSD, MMAP_PAGE_ZERO.
        for v in [0x0004_0000u64, 0x0040_0000, 0x0006, 0x0010_0000, 0x0004_0008] {
            assert_eq!(call(&p, "personality", &[v]), DENY, "{v:#x} on {arch}");
        }
    }
}

#[test]
fn foreign_architectures_and_x32_are_killed() {
    for arch in Arch::ALL {
        let p = default(arch);
        for other in [0u32, 0x4000_0003 /* i386 */, 0xC000_0028, 0x8000_00B7 /* aarch64_be */]
            .into_iter()
            .chain(Arch::ALL.iter().map(|a| a.audit()))
            .filter(|a| *a != arch.audit())
        {
            let read = nr(arch, "read");
            assert_eq!(p.run(&SeccompData::new(other, read, &[])).unwrap(), Action::KillProcess, "{other:#x} on {arch}");
        }
    }
    let p = default(Arch::X86_64);
    for n in [0x4000_0000u32, 0x4000_0001, 0x4000_0000 + 435, 0x7fff_ffff, 0x8000_0000] {
        assert_eq!(p.run(&SeccompData::new(Arch::X86_64.audit(), n, &[])).unwrap(), Action::KillProcess, "{n:#x}");
    }
    // -1 (a tracer skipping a call) is denied, not killed.
    assert_eq!(p.run(&SeccompData::new(Arch::X86_64.audit(), u32::MAX, &[])).unwrap(), DENY);
    // On the other ABIs large numbers are simply unknown.
    for arch in [Arch::Aarch64, Arch::Arm] {
        let p = default(arch);
        assert_eq!(p.run(&SeccompData::new(arch.audit(), 0x4000_0000, &[])).unwrap(), DENY);
        assert_eq!(p.run(&SeccompData::new(arch.audit(), u32::MAX, &[])).unwrap(), DENY);
    }
}

#[test]
fn manifest_additions_are_allowed_and_checked() {
    for arch in Arch::ALL {
        let mut pol = Policy::new();
        pol.allow("kcmp").unwrap();
        pol.allow("mknodat").unwrap();
        pol.allow("read").unwrap(); // already allowed: harmless
        let p = compile(&pol, arch).unwrap();
        assert_eq!(call(&p, "kcmp", &[]), Action::Allow, "{arch}");
        assert_eq!(call(&p, "mknodat", &[]), Action::Allow, "{arch}");
        assert_eq!(call(&p, "read", &[]), Action::Allow, "{arch}");
        assert_eq!(call(&p, "mount", &[]), DENY, "{arch}");
        assert_ne!(p.hash(), default(arch).hash());
    }
    // A name the architecture lacks names both.
    let mut pol = Policy::new();
    pol.allow("open").unwrap();
    assert!(compile(&pol, Arch::X86_64).is_ok());
    let e = compile(&pol, Arch::Aarch64).unwrap_err();
    assert_eq!(e, SeccompError::UnknownSyscall { name: owned("open"), arch: Arch::Aarch64 });
    assert_eq!(e.to_string(), "seccomp_allow: `open` is not a syscall on aarch64");
    let mut pol = Policy::new();
    pol.allow("frobnicate").unwrap();
    let e = compile(&pol, Arch::Arm).unwrap_err().to_string();
    assert!(e.contains("`frobnicate`") && e.contains("arm"), "{e}");

    for name in [
        "mount", "clone", "socket", "socketpair", "clone3", "kexec_load", "keyctl", "io_uring_setup", "setns", "ioctl",
        "execveat", "ptrace", "userfaultfd", "modify_ldt", "vhangup",
    ] {
        let mut pol = Policy::new();
        pol.allow(name).unwrap();
        for arch in Arch::ALL {
            let e = compile(&pol, arch).unwrap_err();
            assert!(matches!(e, SeccompError::NotGrantable { .. }), "{name}: {e}");
            assert!(e.to_string().contains(&format!("`{name}`")), "{e}");
        }
    }

    let mut pol = Policy::new();
    for i in 0..SYSCALLS_MAX {
        pol.allow(&format!("s{i}")).unwrap();
    }
    let e = pol.allow("one_more").unwrap_err();
    assert!(e.to_string().contains("`one_more`"), "{e}");
}

#[test]
fn policy_comes_from_the_manifest() {
    let mut m = crate::release::manifest::tests::examples().remove(0);
    m.seccomp_allow.clear();
    m.capabilities.clear();
    m.socket_families.clear();
    assert_eq!(Policy::from_manifest(&m), Policy::new());
    m.seccomp_allow.push("kcmp".try_into().unwrap()).unwrap();
    m.seccomp_allow.push("memfd_create".try_into().unwrap()).unwrap();
    m.capabilities.push("CAP_NET_RAW".try_into().unwrap()).unwrap();
    m.socket_families.push("can".try_into().unwrap()).unwrap();
    let pol = Policy::from_manifest(&m);
    assert!(pol.net_raw() && pol.memfd());
    assert_eq!(pol.extra(), ["kcmp", "memfd_create"]);
    assert_eq!(pol.families().collect::<Vec<_>>(), ["can"]);
    for arch in Arch::ALL {
        let p = compile(&pol, arch).unwrap();
        assert_eq!(call(&p, "kcmp", &[]), Action::Allow);
        assert_eq!(call(&p, "memfd_create", &[0, 1]), Action::Allow);
        assert_eq!(call(&p, "socket", &[u64::from(AF_PACKET)]), Action::Allow);
        assert_eq!(call(&p, "socket", &[29]), Action::Allow);
        assert_eq!(call(&p, "socket", &[31]), DENY);
    }
}

#[test]
fn programs_are_small_shallow_and_stable() {
    for arch in Arch::ALL {
        for p in [default(arch), with_net_raw(arch)] {
            assert!(p.len() < 600, "{arch}: {} instructions", p.len());
            assert_eq!(p.to_bytes().len(), 8 * p.len());
            assert_eq!(p.to_sock_filters().len(), p.len());
            // The longest path any syscall takes through the filter.
            let deepest = arch
                .table()
                .iter()
                .map(|(_, n)| {
                    let d = SeccompData::new(arch.audit(), *n, &[]);
                    trace(p.instructions(), &d).unwrap().1
                })
                .max()
                .unwrap();
            assert!(deepest <= 20, "{arch}: {deepest} instructions on the longest path");
            let ja = p.instructions().iter().filter(|i| i.code == bpf::JMP | bpf::JA).count();
            eprintln!("{arch}: {} instructions ({ja} ja), longest path {deepest}", p.len());
        }
        // The largest policy a manifest can ask for stays far below the limit.
        let mut big = Policy::new();
        big.set_net_raw(true);
        for f in args::FAMILIES.iter().filter(|f| f.2 == args::Grant::ByName).take(crate::release::manifest::FAMILIES_MAX) {
            big.allow_family(f.0).unwrap();
        }
        let grantable = [
            "memfd_create", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
            "process_madvise", "mknodat", "sethostname", "setdomainname", "name_to_handle_at",
            "fanotify_mark", "mbind", "set_mempolicy", "get_mempolicy", "move_pages", "memfd_secret",
            "remap_file_pages", "mseal", "statmount", "listmount", "lsm_get_self_attr", "lsm_list_modules",
            "setxattrat", "getxattrat", "listxattrat", "removexattrat", "set_mempolicy_home_node",
            "lsm_set_self_attr", "mknod", "migrate_pages", "set_thread_area", "get_thread_area", "fanotify_mark",
            "uselib", "ustat", "sysfs",
        ];
        for name in grantable.iter().filter(|n| arch.number(n).is_some()).take(SYSCALLS_MAX) {
            big.allow(name).unwrap();
        }
        assert!(big.extra().len() >= 28, "{arch}: {}", big.extra().len());
        let p = compile(&big, arch).unwrap();
        assert!(p.len() < 700, "{arch}: {} instructions", p.len());
        for name in big.extra().iter().filter(|n| n.as_str() != "memfd_create") {
            assert_eq!(call(&p, name, &[]), Action::Allow, "{name} on {arch}");
        }
        eprintln!("{arch}: largest manifest policy {} instructions", p.len());
        // Same policy, same program and hash; different arch, different hash.
        assert_eq!(default(arch), default(arch));
        assert_eq!(default(arch).hash(), default(arch).hash());
        assert_ne!(default(arch).hash(), with_net_raw(arch).hash());
    }
    assert_ne!(default(Arch::X86_64).hash(), default(Arch::Aarch64).hash());
    // The filter starts with the arch check.
    let p = default(Arch::Arm);
    assert_eq!(p.instructions()[0], bpf::Insn::stmt(bpf::LD | bpf::W | bpf::ABS, 4));
    assert_eq!(p.instructions()[1].k, 0x4000_0028);
}

#[test]
fn self_check_catches_a_wrong_program() {
    let pol = Policy::new();
    let arch = Arch::Aarch64;
    let good = default(arch);
    let rules = rules(&pol, arch).unwrap();
    assert!(self_check(&good, &pol, &rules).is_ok());
    // Turn each allowing return into a denial, one at a time: every one is noticed.
    let allows: Vec<usize> = (0..good.len()).filter(|i| good.insns[*i].k == RET_ALLOW).collect();
    assert!(allows.len() > 10);
    for i in allows {
        let mut bad = good.clone();
        bad.insns[i].k = RET_DENY;
        assert!(matches!(self_check(&bad, &pol, &rules), Err(SeccompError::SelfCheck { .. })), "{i}");
    }
    // A filter built for another policy is caught too.
    let raw = with_net_raw(arch);
    let e = self_check(&raw, &pol, &rules).unwrap_err();
    assert!(e.to_string().contains("socket"), "{e}");
    // And one whose ioctl leaf lets a terminal request through.
    let mut bad = good.clone();
    let tiocsti = bad.insns.iter().position(|i| i.k == 0x5412).unwrap();
    bad.insns[tiocsti].k = 0x5499;
    let e = self_check(&bad, &pol, &rules).unwrap_err();
    assert!(e.to_string().contains("ioctl"), "{e}");
}

#[test]
fn runs_partition_the_number_line() {
    let r = [(0, Outcome::Allow), (1, Outcome::Allow), (3, Outcome::Special(Special::Clone)), (4, Outcome::Allow)];
    assert_eq!(
        runs(&r),
        [
            (0, Outcome::Allow),
            (2, Outcome::Deny),
            (3, Outcome::Special(Special::Clone)),
            (4, Outcome::Allow),
            (5, Outcome::Deny)
        ]
    );
    assert_eq!(runs(&[(u32::MAX, Outcome::Allow)]), [(0, Outcome::Deny), (u32::MAX, Outcome::Allow)]);
    assert_eq!(runs(&[]), [(0, Outcome::Deny)]);
}

#[test]
fn native_arch_and_board_names() {
    #[cfg(target_arch = "x86_64")]
    assert_eq!(Arch::native(), Some(Arch::X86_64));
    assert_eq!(Arch::running().ok(), Arch::native());
    assert_eq!(Arch::from(crate::release::board::Arch::Armv7), Arch::Arm);
    assert_eq!(Arch::from(crate::release::board::Arch::Aarch64), Arch::Aarch64);
    assert_eq!(Arch::from(crate::release::board::Arch::X86_64), Arch::X86_64);
    assert!(SeccompError::UnsupportedArch.to_string().contains("architecture"));
    if let Some(a) = Arch::native() {
        assert_eq!(compile_native(&Policy::new()).unwrap().arch(), a);
    }
}
