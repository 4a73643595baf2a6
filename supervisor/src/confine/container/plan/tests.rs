use super::*;
use crate::confine::container::{run, Act, Failed, Step};
use crate::release::board::{HardwareNode, NodeKind};
use crate::release::manifest::{DeviceGrant, Digest, Entry, Mount};
use nix::mount::MsFlags;

const ROOT: &str = "/run/berth/c/web/root";

fn board() -> Board {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../board-configs/qemu-aarch64-virt.toml")).unwrap();
    let mut b = Board::from_toml(&text).unwrap();
    b.hardware.clear();
    for (name, kind, major, minor, path, reserved) in [
        ("serial1", NodeKind::Char, 4, 65, "/dev/ttyAMA1", false),
        ("rng0", NodeKind::Char, 10, 183, "/dev/hwrng", false),
        ("watchdog", NodeKind::Char, 10, 130, "/dev/watchdog", true),
        ("disk", NodeKind::Block, 254, 0, "/dev/vda", false),
        ("mem", NodeKind::Char, 1, 1, "/dev/mem", false),
        ("kmsg", NodeKind::Char, 1, 11, "/dev/kmsg", false),
    ] {
        b.hardware.push(HardwareNode { name: name.try_into().unwrap(), kind, major, minor, path: path.try_into().unwrap(), reserved }).unwrap();
    }
    b
}

fn s<const N: usize>(v: &str) -> heapless::String<N> {
    v.try_into().unwrap()
}

/// Bypasses the gates on purpose: the plan must handle every field as data.
fn sample() -> Manifest {
    Manifest {
        name: s("web"),
        version: s("1.0"),
        image: Digest([7; 32]),
        entry: Entry {
            argv: [s("/bin/httpd"), s("-f")].into_iter().collect(),
            env: [s("LANG=C")].into_iter().collect(),
            workdir: s("/srv"),
            uid: Some(1000),
            gid: Some(1000),
        },
        restart: None,
        after: heapless::Vec::new(),
        readiness: None,
        health: None,
        stop: None,
        resources: None,
        mounts: [
            Mount { target: s("/var/lib/web"), tmpfs_size: None, volume: Some(s("state")), exec: false, volume_size: None, volume_inodes: None },
            Mount { target: s("/tmp"), tmpfs_size: Some(2 << 20), volume: None, exec: false, volume_size: None, volume_inodes: None },
        ]
        .into_iter()
        .collect(),
        capabilities: [s("CAP_NET_BIND_SERVICE")].into_iter().collect(),
        seccomp_allow: heapless::Vec::new(),
        devices: [DeviceGrant { node: s("serial1"), access: s("rw") }].into_iter().collect(),
        network: None,
        rlimits: None,
        backoff: None,
        exec_paths: heapless::Vec::new(),
        rw_paths: heapless::Vec::new(),
        status_view: false,
        log_rate: None,
        socket_families: heapless::Vec::new(),
        oneshot: false,
        update_drop: None,
    }
}

/// The smallest manifest: nothing granted.
fn bare() -> Manifest {
    let mut m = sample();
    m.entry.uid = None;
    m.entry.gid = None;
    m.entry.env.clear();
    m.entry.workdir = s("/");
    m.mounts.clear();
    m.capabilities.clear();
    m.devices.clear();
    m
}

/// Renders each step, the rootfs shown as `$R`; can fail at one index.
#[derive(Default)]
struct Recorder {
    lines: Vec<String>,
    fail_at: Option<usize>,
}

impl Act for Recorder {
    type Error = &'static str;
    fn act(&mut self, step: &Step) -> Result<(), &'static str> {
        if self.fail_at == Some(self.lines.len()) {
            return Err("boom");
        }
        self.lines.push(step.to_string().replace(ROOT, "$R"));
        Ok(())
    }
}

fn record(p: &Plan) -> Vec<String> {
    let mut r = Recorder::default();
    run(&p.steps, &mut r).unwrap();
    r.lines
}

#[test]
fn golden_sequence_for_the_sample() {
    let p = plan(&sample(), &board(), 1, ROOT).unwrap();
    let got = record(&p);
    let want = [
        "propagation / rec,slave",
        "bind $R $R",
        "mkdir $R/proc 755",
        "mount proc $R/proc nosuid,nodev,noexec",
        "mkdir $R/dev 755",
        "mount tmpfs $R/dev nosuid,nodev,noexec mode=755,size=65536,nr_inodes=64",
        "mkdir $R/dev/pts 755",
        "mount devpts $R/dev/pts nosuid,noexec newinstance,ptmxmode=0666,mode=0620",
        "mkdir $R/dev/shm 755",
        "mount tmpfs $R/dev/shm nosuid,nodev,noexec mode=1777,size=1048576,nr_inodes=256",
        "mkdir $R/dev/mqueue 755",
        "mount mqueue $R/dev/mqueue nosuid,nodev,noexec",
        "mkdir $R/sys 755",
        "mount sysfs $R/sys ro,nosuid,nodev,noexec",
        "mkdir $R/tmp 755",
        "mount tmpfs $R/tmp nosuid,nodev,noexec mode=1777,size=2097152,nr_inodes=512",
        "mkdir $R/var/lib/web 755",
        "bind /data/volumes/web/state $R/var/lib/web",
        "remount $R/var/lib/web nosuid,nodev,noexec",
        "touch $R/dev/null 666",
        "bind-node /dev/null $R/dev/null",
        "remount $R/dev/null ro,nosuid,noexec",
        "touch $R/dev/zero 666",
        "bind-node /dev/zero $R/dev/zero",
        "remount $R/dev/zero ro,nosuid,noexec",
        "touch $R/dev/full 666",
        "bind-node /dev/full $R/dev/full",
        "remount $R/dev/full ro,nosuid,noexec",
        "touch $R/dev/random 666",
        "bind-node /dev/random $R/dev/random",
        "remount $R/dev/random ro,nosuid,noexec",
        "touch $R/dev/urandom 666",
        "bind-node /dev/urandom $R/dev/urandom",
        "remount $R/dev/urandom ro,nosuid,noexec",
        "touch $R/dev/tty 666",
        "bind-node /dev/tty $R/dev/tty",
        "remount $R/dev/tty ro,nosuid,noexec",
        "touch $R/dev/ttyAMA1 666",
        "bind-node /run/berth/dev/web/serial1 $R/dev/ttyAMA1",
        "remount $R/dev/ttyAMA1 ro,nosuid,noexec",
        "symlink $R/dev/ptmx -> pts/ptmx",
        "symlink $R/dev/fd -> /proc/self/fd",
        "symlink $R/dev/stdin -> /proc/self/fd/0",
        "symlink $R/dev/stdout -> /proc/self/fd/1",
        "symlink $R/dev/stderr -> /proc/self/fd/2",
        "remount $R/dev ro,nosuid,nodev,noexec",
        "pivot_root $R",
        "hostname web",
        "read-only /proc/bus",
        "read-only /proc/fs",
        "read-only /proc/irq",
        "read-only /proc/sys",
        "read-only /proc/sysrq-trigger",
        "mask-dir /proc/acpi",
        "mask-dir /proc/asound",
        "mask-file /proc/kcore",
        "mask-file /proc/keys",
        "mask-file /proc/latency_stats",
        "mask-file /proc/timer_list",
        "mask-file /proc/timer_stats",
        "mask-file /proc/sched_debug",
        "mask-dir /proc/scsi",
        "mask-dir /sys/firmware",
        "mask-file /proc/interrupts",
        "mask-dir /sys/devices/virtual/powercap",
        "remount / ro,nosuid,nodev",
    ];
    assert_eq!(got, want, "\n{}", got.join("\n"));
}

#[test]
fn sample_identity_namespaces_caps_and_exec() {
    let p = plan(&sample(), &board(), 1, ROOT).unwrap();
    assert_eq!(p.ids.uid_map, b"0 165536 65536\n");
    assert_eq!(p.ids.gid_map, b"0 165536 65536\n");
    assert_eq!(p.ids.setgroups, b"deny");
    assert_eq!((p.ids.uid, p.ids.gid), (1000, 1000));
    assert_eq!(p.namespaces.user, libc::CLONE_NEWUSER);
    assert_eq!(
        p.namespaces.rest,
        libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS | libc::CLONE_NEWCGROUP | libc::CLONE_NEWNET
    );
    assert_eq!(p.namespaces.rest & libc::CLONE_NEWUSER, 0, "the user namespace comes alone, first");
    assert_eq!(p.caps.bounding, 1 << 10);
    assert_eq!(p.caps.ambient, 1 << 10);
    assert!(p.caps.no_new_privs);
    let argv: Vec<&[u8]> = p.argv.iter().map(|a| a.as_cstr().to_bytes_with_nul()).collect();
    assert_eq!(argv, [&b"/bin/httpd\0"[..], b"-f\0"]);
    let env: Vec<&str> = p.env.iter().map(|a| a.as_str()).collect();
    assert_eq!(env, ["LANG=C", DEFAULT_PATH]);
    assert_eq!(p.workdir.as_cstr().to_bytes_with_nul(), b"/srv\0");
    assert_eq!(p.umask, 0o022);
    assert_eq!(p.rlimits, RLIMITS);
    assert_eq!(p.rlimits.iter().find(|r| r.resource == Resource::Core).map(|r| (r.soft, r.hard)), Some((0, 0)));
    assert_eq!(p.rlimits.iter().find(|r| r.resource == Resource::Nofile).map(|r| (r.soft, r.hard)), Some((1024, 1024)));
    assert_eq!(Resource::Nofile.raw(), libc::RLIMIT_NOFILE as libc::c_int);
}

#[test]
fn volumes_are_listed_for_the_host_and_exec_reaches_the_mount() {
    let p = plan(&sample(), &board(), 1, ROOT).unwrap();
    assert_eq!(p.volumes.iter().map(|v| v.as_str()).collect::<Vec<_>>(), ["state"]);
    assert!(plan(&bare(), &board(), 1, ROOT).unwrap().volumes.is_empty());
    let mut m = sample();
    m.mounts[1].exec = true;
    let l = record(&plan(&m, &board(), 1, ROOT).unwrap());
    assert!(l.contains(&"mount tmpfs $R/tmp nosuid,nodev mode=1777,size=2097152,nr_inodes=512".to_string()), "{l:?}");
    assert_eq!(l.iter().filter(|l| l.starts_with("mount tmpfs $R/tmp ")).count(), 1, "the manifest's /tmp replaces the default");
    let mut m = sample();
    m.mounts[0].exec = true;
    assert_eq!(plan(&m, &board(), 1, ROOT).unwrap_err().field, "mounts[0].exec");
}

#[test]
fn bare_manifest_defaults() {
    let p = plan(&bare(), &board(), 0, ROOT).unwrap();
    assert_eq!(p.ids.uid_map, b"0 100000 65536\n");
    assert_eq!((p.ids.uid, p.ids.gid), (0, 0));
    assert_eq!(p.caps.bounding, 0);
    assert_eq!(p.caps.bounding_drop(), caps::ALL);
    assert_eq!(p.nodes.len(), 6);
    let l = record(&p);
    assert!(l.contains(&"mount tmpfs $R/tmp nosuid,nodev,noexec mode=1777,size=1048576,nr_inodes=256".to_string()));
    assert!(!l.iter().any(|l| l.contains("/data/volumes")));
    assert!(!l.iter().any(|l| l.contains("ttyAMA1") || l.contains("hwrng")));
    let mut m = bare();
    m.entry.env.push(s("PATH=/bin")).unwrap();
    let p = plan(&m, &board(), 0, ROOT).unwrap();
    let env: Vec<&str> = p.env.iter().map(|a| a.as_str()).collect();
    assert_eq!(env, ["PATH=/bin"], "no default PATH added over the manifest's");
}

#[test]
fn host_network_has_no_net_namespace_and_binds_sys() {
    let mut m = bare();
    m.network = Some(Network::Host);
    let p = plan(&m, &board(), 0, ROOT).unwrap();
    assert_eq!(p.namespaces.rest & libc::CLONE_NEWNET, 0);
    let l = record(&p);
    assert!(l.contains(&"rbind /sys $R/sys".to_string()));
    assert!(l.contains(&"remount-rec $R/sys ro,nosuid,nodev,noexec".to_string()));
    m.network = Some(Network::None);
    assert_ne!(plan(&m, &board(), 0, ROOT).unwrap().namespaces.rest & libc::CLONE_NEWNET, 0);
}

/// Every filesystem the container can write to is nosuid and nodev; the two
/// documented exceptions (devpts, device node binds) lack only nodev.
#[test]
fn nothing_writable_without_nosuid_and_nodev() {
    for net in [None, Some(Network::Host)] {
        let mut m = sample();
        m.network = net;
        m.mounts.push(Mount { target: s("/var/cache"), tmpfs_size: Some(4096), volume: None, exec: false, volume_size: None, volume_inodes: None }).unwrap();
        let p = plan(&m, &board(), 3, ROOT).unwrap();
        let safe = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        let steps = &p.steps;
        let mut checked = 0;
        for (i, st) in steps.iter().enumerate() {
            match st {
                Step::Mount { fstype, flags, .. } if !flags.contains(MsFlags::MS_RDONLY) => {
                    if fstype.to_bytes() == b"devpts" {
                        assert!(flags.contains(MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC), "{st}");
                    } else {
                        assert!(flags.contains(safe), "{st}");
                    }
                    checked += 1;
                }
                Step::Bind { target, .. } => {
                    // The next step remounts the same target with the flags.
                    match steps.get(i + 1) {
                        Some(Step::BindRemount { target: t, flags, .. }) if t == target => {
                            assert!(flags.contains(safe), "{st}: {flags:?}");
                        }
                        other if target.as_str() == ROOT => {
                            // The root bind of the read-only image: made
                            // read-only (nosuid, nodev) as the last step.
                            assert!(other.is_some());
                            assert_eq!(
                                steps.last(),
                                Some(&Step::BindRemount { target: CPath::new("/").unwrap(), flags: MsFlags::MS_RDONLY | safe, recursive: false })
                            );
                        }
                        other => panic!("{st} not followed by its remount: {other:?}"),
                    }
                    checked += 1;
                }
                Step::BindNode { target, .. } => {
                    match steps.get(i + 1) {
                        Some(Step::BindRemount { target: t, flags, .. }) if t == target => {
                            assert!(flags.contains(MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC), "{st}");
                        }
                        other => panic!("{st} not followed by its remount: {other:?}"),
                    }
                    checked += 1;
                }
                _ => {}
            }
        }
        assert!(checked >= 15, "{checked}");
    }
}

#[test]
fn tmp_and_volumes_are_noexec_by_default() {
    let l = record(&plan(&sample(), &board(), 1, ROOT).unwrap());
    for line in l.iter().filter(|l| l.contains("$R/tmp ") || l.contains("$R/var/lib/web ")) {
        if line.starts_with("mount") || line.starts_with("remount") {
            assert!(line.contains("noexec"), "{line}");
        }
    }
}

#[test]
fn granted_nodes_appear_and_others_do_not() {
    let p = plan(&sample(), &board(), 1, ROOT).unwrap();
    let l = record(&p);
    // The granted node is the one berth makes for the container, not the host's.
    assert!(l.contains(&"bind-node /run/berth/dev/web/serial1 $R/dev/ttyAMA1".to_string()));
    assert!(l.contains(&"remount $R/dev/ttyAMA1 ro,nosuid,noexec".to_string()));
    assert!(!l.iter().any(|l| l.starts_with("bind-node /dev/ttyAMA1")));
    assert!(!l.iter().any(|l| l.contains("hwrng") || l.contains("watchdog") || l.contains("vda")));
    let granted: Vec<(u32, u32, u8)> = p.nodes.iter().filter(|n| n.granted).map(|n| (n.major, n.minor, n.access)).collect();
    assert_eq!(granted, [(4, 65, devices::ACC_READ | devices::ACC_WRITE)]);
    assert_eq!(p.nodes.iter().filter(|n| n.granted).map(|n| n.mode).collect::<Vec<_>>(), [0o600]);
    assert!(p.nodes.iter().filter(|n| !n.granted).all(|n| n.host == n.path), "standard nodes are the host's");
    let mut m = sample();
    m.devices[0] = DeviceGrant { node: s("rng0"), access: s("r") };
    let l = record(&plan(&m, &board(), 1, ROOT).unwrap());
    assert!(l.contains(&"bind-node /run/berth/dev/web/rng0 $R/dev/hwrng".to_string()));
    let p = plan(&m, &board(), 1, ROOT).unwrap();
    assert_eq!(
        p.nodes.iter().filter(|n| n.granted).map(|n| n.mode).collect::<Vec<_>>(),
        [0o600],
        "the device controller, not the mode, keeps a read-only grant read-only"
    );
    assert!(!l.iter().any(|l| l.contains("ttyAMA1")));
}

#[test]
fn no_block_device_mem_or_kmsg_is_ever_planned() {
    let b = board();
    for hw in &b.hardware {
        let mut m = bare();
        m.devices.push(DeviceGrant { node: hw.name.as_str().try_into().unwrap(), access: s("rwm") }).unwrap();
        let r = plan(&m, &b, 0, ROOT);
        let forbidden = hw.kind == NodeKind::Block || hw.reserved || [(1, 1), (1, 11)].contains(&(hw.major, hw.minor));
        match r {
            Ok(p) => {
                assert!(!forbidden, "{} was planned", hw.name);
                for st in &p.steps {
                    if let Step::BindNode { source, .. } = st {
                        assert!(!["/dev/mem", "/dev/kmsg", "/dev/vda", "/dev/watchdog"].contains(&source.as_str()), "{st}");
                    }
                }
            }
            Err(e) => {
                assert!(forbidden, "{}: {e}", hw.name);
                assert_eq!((e.container.as_str(), e.field.as_str()), ("web", "devices[0].node"));
                assert!(e.reason.contains(hw.name.as_str()), "{e}");
            }
        }
    }
}

#[test]
fn a_node_the_board_lacks_or_reserves_is_an_error_naming_it() {
    let mut m = bare();
    m.devices.push(DeviceGrant { node: s("gpio7"), access: s("r") }).unwrap();
    let e = plan(&m, &board(), 0, ROOT).unwrap_err();
    assert_eq!(e.field, "devices[0].node");
    assert!(e.reason.contains("gpio7"), "{e}");
    assert_eq!(e.to_string(), format!("container web: field devices[0].node: {}", e.reason));
    m.devices[0].node = s("watchdog");
    let e = plan(&m, &board(), 0, ROOT).unwrap_err();
    assert!(e.reason.contains("watchdog") && e.reason.contains("reserved"), "{e}");
}

#[test]
fn capabilities_unknown_or_refused_are_errors() {
    for (cap, net) in [("CAP_FLY", None), ("CAP_SYS_ADMIN", None), ("CAP_BPF", None), ("CAP_NET_RAW", Some(Network::Host))] {
        let mut m = bare();
        m.network = net;
        m.capabilities.push(s(cap)).unwrap();
        let e = plan(&m, &board(), 0, ROOT).unwrap_err();
        assert_eq!(e.field, "capabilities[0]", "{cap}: {e}");
    }
}

#[test]
fn bad_inputs_are_named() {
    for root in ["", "/", "relative", "/a/../b", "/a//b", &format!("/{}", "x".repeat(80))] {
        assert_eq!(plan(&bare(), &board(), 0, root).unwrap_err().field, "rootfs", "{root:?}");
    }
    // A trailing slash is tolerated.
    let p = plan(&bare(), &board(), 0, "/run/berth/c/web/root/").unwrap();
    assert_eq!(record(&p)[1], "bind $R $R");
    assert_eq!(plan(&bare(), &board(), ids::INDEX_MAX + 1, ROOT).unwrap_err().field, "index");
    let mut m = bare();
    m.entry.uid = Some(70_000);
    assert_eq!(plan(&m, &board(), 0, ROOT).unwrap_err().field, "entry.uid");
    let mut m = bare();
    m.mounts.push(Mount { target: s("/proc/evil"), tmpfs_size: Some(4096), volume: None, exec: false, volume_size: None, volume_inodes: None }).unwrap();
    assert_eq!(plan(&m, &board(), 0, ROOT).unwrap_err().field, "mounts[0].target");
    let mut m = bare();
    m.entry.argv[0] = s("httpd");
    assert_eq!(plan(&m, &board(), 0, ROOT).unwrap_err().field, "entry.argv[0]");
}

#[test]
fn largest_manifest_fits() {
    let mut b = board();
    let mut m = sample();
    m.devices.clear();
    for i in 0..crate::release::manifest::DEVICES_MAX {
        let name = format!("gpio{i}");
        b.hardware
            .push(HardwareNode {
                name: name.as_str().try_into().unwrap(),
                kind: NodeKind::Char,
                major: 254,
                minor: i as u32,
                path: format!("/dev/gpio/bank{i}/chip").as_str().try_into().unwrap(),
                reserved: false,
            })
            .unwrap();
        m.devices.push(DeviceGrant { node: name.as_str().try_into().unwrap(), access: s("rw") }).unwrap();
    }
    m.mounts.clear();
    for i in 0..crate::release::manifest::MOUNTS_MAX {
        let target = format!("/{}/{i}", "d".repeat(100));
        let volume = Some(format!("v{i}").as_str().try_into().unwrap());
        m.mounts
            .push(Mount { target: target.as_str().try_into().unwrap(), tmpfs_size: None, volume, exec: false, volume_size: None, volume_inodes: None })
            .unwrap();
    }
    m.mounts[0].volume = Some(s(&"v".repeat(32)));
    let p = plan(&m, &b, 7, "/run/berth/c/web-with-a-long-name-0123456789/root").unwrap();
    assert!(p.steps.len() <= mounts::STEPS_MAX);
    let l = record(&p);
    assert!(l.contains(&"mkdir $R/dev/gpio 755".to_string()) || l.iter().any(|l| l.ends_with("/dev/gpio 755")));
    assert_eq!(l.iter().filter(|l| l.ends_with("/dev/gpio 755")).count(), 1, "parent made once");
    assert_eq!(l.iter().filter(|l| l.starts_with("bind-node")).count(), 6 + crate::release::manifest::DEVICES_MAX);
    eprintln!("largest plan: {} steps, {} bytes", p.steps.len(), core::mem::size_of::<Plan>());
}

#[test]
fn run_stops_at_the_first_failure() {
    let p = plan(&sample(), &board(), 1, ROOT).unwrap();
    let mut r = Recorder { fail_at: Some(4), ..Default::default() };
    assert_eq!(run(&p.steps, &mut r), Err(Failed { index: 4, error: "boom" }));
    assert_eq!(r.lines.len(), 4);
}

#[test]
fn landlock_rules_follow_the_manifest_mounts_and_paths() {
    use crate::confine::container::landlock::{access::EXECUTE, READ, WRITE_TREE};
    let rule = |p: &Plan, path: &str| p.landlock.iter().find(|r| r.path.as_str() == path).map(|r| r.access);
    let p = plan(&sample(), &board(), 0, ROOT).unwrap();
    assert_eq!(rule(&p, "/"), Some(READ | EXECUTE), "the whole image executes by default");
    assert_eq!(rule(&p, "/var/lib/web"), Some(WRITE_TREE), "the volume");
    assert_eq!(rule(&p, "/tmp"), Some(WRITE_TREE), "the manifest's /tmp");
    // Container paths (after the pivot), never the host's rootfs.
    assert!(p.landlock.iter().all(|r| !r.path.as_str().starts_with(ROOT)));
    let mut m = sample();
    m.exec_paths.push(s("/bin/httpd")).unwrap();
    m.rw_paths.push(s("/run/web")).unwrap();
    let p = plan(&m, &board(), 0, ROOT).unwrap();
    assert_eq!(rule(&p, "/"), Some(READ));
    assert_eq!(rule(&p, "/bin/httpd"), Some(EXECUTE));
    assert_eq!(rule(&p, "/run/web"), Some(WRITE_TREE));
    // The program outside the exec paths: refused when planned.
    m.exec_paths[0] = s("/usr/bin");
    let e = plan(&m, &board(), 0, ROOT).unwrap_err();
    assert_eq!(e.field, "exec_paths", "{e}");
}

#[test]
fn device_ioctls_are_ruled_per_node() {
    use crate::confine::container::landlock::{access::IOCTL_DEV, DEV, DEV_IOCTL};
    let rule = |p: &Plan, path: &str| p.landlock.iter().find(|r| r.path.as_str() == path).map(|r| r.access);
    let mut m = sample();
    m.devices = [DeviceGrant { node: s("serial1"), access: s("rw") }, DeviceGrant { node: s("rng0"), access: s("r") }].into_iter().collect();
    let p = plan(&m, &board(), 0, ROOT).unwrap();
    // `/dev` itself: no ioctls for what lies beneath it.
    assert_eq!(rule(&p, "/dev"), Some(DEV));
    assert_eq!(DEV & IOCTL_DEV, 0);
    // The rw grant and the standard nodes take ioctls; the r grant has no
    // rule of its own, so only `/dev`'s (no ioctls) covers it.
    assert_eq!(rule(&p, "/dev/ttyAMA1"), Some(DEV_IOCTL));
    assert_eq!(rule(&p, "/dev/hwrng"), None);
    for n in ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty", "/dev/pts"] {
        assert_eq!(rule(&p, n), Some(DEV_IOCTL), "{n}");
    }
    let ioctl_on =
        |p: &Plan, path: &str| p.landlock.iter().filter(|r| crate::release::manifest::beneath(path, r.path.as_str())).any(|r| r.access & IOCTL_DEV != 0);
    assert!(!ioctl_on(&p, "/dev/hwrng"));
    assert!(ioctl_on(&p, "/dev/ttyAMA1"));
    // Write-only grants drive their device too; `m` alone does not.
    for (access, ioctl) in [("w", true), ("rw", true), ("r", false), ("rm", false), ("wm", true)] {
        m.devices = [DeviceGrant { node: s("rng0"), access: s(access) }].into_iter().collect();
        let p = plan(&m, &board(), 0, ROOT).unwrap();
        assert_eq!(ioctl_on(&p, "/dev/hwrng"), ioctl, "{access}");
    }
}

#[test]
fn every_tmpfs_has_a_size_and_an_inode_limit() {
    let p = plan(&sample(), &board(), 1, ROOT).unwrap();
    let tmpfs: Vec<String> = record(&p).into_iter().filter(|l| l.starts_with("mount tmpfs ")).collect();
    assert!(tmpfs.len() >= 3, "{tmpfs:?}");
    for l in &tmpfs {
        assert!(l.contains(",size=") && l.contains(",nr_inodes="), "{l}");
    }
    // The masked directories' read-only tmpfs too.
    let mask = crate::confine::container::mounts::MASK_DIR_DATA.to_str().unwrap();
    assert!(mask.contains("size=") && mask.contains("nr_inodes="), "{mask}");
}

#[test]
fn env_adds_the_default_path_then_the_notify_variable() {
    let strings = |entry: &Entry, notify: bool| env(entry, notify).unwrap().iter().map(|c| c.as_str().to_owned()).collect::<Vec<_>>();
    let mut entry = sample().entry;
    assert_eq!(strings(&entry, false), ["LANG=C", DEFAULT_PATH]);
    assert_eq!(strings(&entry, true), ["LANG=C", DEFAULT_PATH, crate::common::names::NOTIFY_ENV]);
    entry.env.push(s("PATH=/bin")).unwrap();
    assert_eq!(strings(&entry, false), ["LANG=C", "PATH=/bin"]);
    entry.env.push(s("=x")).unwrap();
    assert_eq!(env(&entry, false).unwrap_err().0, "entry.env[2]");
}
