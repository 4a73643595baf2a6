//! Mount plans: what berth mounts at boot, decided as plain data.
//!
//! It must not plan container mounts (those are in `confine::container::mounts`).
//!
//! The plan is pure (built from the board config, testable without root); the
//! act is [`crate::sys::mount`]'s ([`Mounter`], re-exported here). Tests
//! record the calls a plan makes; the device runs them through [`SysMounter`].

use crate::release::board::{Board, CgroupMode};
use nix::mount::MsFlags;

pub use crate::common::files::{errno_text, is_mountpoint};
pub use crate::common::names::DATA;
pub use crate::sys::mount::{apply, flags_text, text, MountStep, Mounter, SysMounter, Text};

/// Where the system image is mounted before the switch of root.
pub const NEW_ROOT: &str = "/sysroot";
/// API filesystems moved from the initramfs into the new root.
pub const MOVED: [&str; 4] = ["/dev", "/proc", "/sys", "/run"];
/// Most steps in one plan.
pub const PLAN_MAX: usize = 16;

pub type Plan = heapless::Vec<MountStep, PLAN_MAX>;

fn step(source: &str, target: &str, fstype: &str, flags: MsFlags, data: &str) -> MountStep {
    MountStep { source: text(source), target: text(target), fstype: text(fstype), flags, data: text(data), optional: false, retry_data: None }
}

const SAFE: MsFlags = MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV).union(MsFlags::MS_NOEXEC);

/// The API filesystems every boot needs, in order.
pub fn early(board: &Board) -> Plan {
    let mut p = Plan::new();
    let steps = [
        step("proc", "/proc", "proc", SAFE, ""),
        step("sysfs", "/sys", "sysfs", SAFE, ""),
        step("devtmpfs", "/dev", "devtmpfs", MsFlags::MS_NOSUID, "mode=0755"),
        step("devpts", "/dev/pts", "devpts", MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC), "mode=0620,ptmxmode=0666,gid=5"),
        step("tmpfs", "/dev/shm", "tmpfs", SAFE, "mode=1777,size=4m"),
        step("tmpfs", "/run", "tmpfs", MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV), "mode=0755,size=8m"),
    ];
    for s in steps {
        let _ = p.push(s);
    }
    match board.cgroup {
        CgroupMode::V2 => {
            // favordynmods (Linux 6.0): moving a process between cgroups
            // (a `cgroup.procs` write) then no longer waits for an RCU grace
            // period, at a small cost to every fork and exit.
            let mut cg = step("cgroup2", "/sys/fs/cgroup", "cgroup2", SAFE, "nsdelegate,favordynmods");
            cg.retry_data = Some(text("nsdelegate"));
            let _ = p.push(cg);
        }
        CgroupMode::V1 => {
            let _ = p.push(step("tmpfs", "/sys/fs/cgroup", "tmpfs", SAFE, "mode=0755,size=64k"));
        }
    }
    p
}

/// cgroup v1: one hierarchy per controller group the kernel offers
/// (`controllers` as listed enabled in /proc/cgroups).
pub fn cgroup_v1(controllers: &[&str]) -> Plan {
    // Groups co-mounted the way distributions do, so tools find them.
    const GROUPS: [&[&str]; 7] = [&["cpu", "cpuacct"], &["memory"], &["devices"], &["pids"], &["freezer"], &["blkio"], &["cpuset"]];
    let mut p = Plan::new();
    for group in GROUPS {
        let present: heapless::Vec<&str, 2> = group.iter().copied().filter(|c| controllers.contains(c)).collect();
        if present.is_empty() {
            continue;
        }
        let mut name = Text::new();
        let mut opts = Text::new();
        for (i, c) in present.iter().enumerate() {
            if i > 0 {
                let _ = name.push(',');
                let _ = opts.push(',');
            }
            let _ = name.push_str(c);
            let _ = opts.push_str(c);
        }
        let mut target = text("/sys/fs/cgroup/");
        let _ = target.push_str(&name);
        // As on v2: moving a process no longer waits for an RCU grace
        // period (Linux 6.0; the setting is the kernel's, one hierarchy is
        // enough, each asks).
        let mut favor = opts.clone();
        let _ = favor.push_str(",favordynmods");
        // Listed in /proc/cgroups is not enough: recent kernels may build a
        // controller for v2 only (memory without CONFIG_MEMCG_V1, say).
        let _ = p.push(MountStep { source: text("cgroup"), target, fstype: text("cgroup"), flags: SAFE, data: favor, optional: true, retry_data: Some(opts) });
    }
    p
}

/// The read-only system image, mounted at [`NEW_ROOT`] before the switch.
pub fn system_root(board: &Board) -> MountStep {
    let sys = &board.storage.system;
    step(&sys.device, NEW_ROOT, sys.fstype.name(), MsFlags::MS_RDONLY | MsFlags::MS_NODEV | MsFlags::MS_NOSUID, "")
}

/// The writable data partition: never a place to run programs from. With
/// project quotas enforced (`prjquota`, see [`crate::confine::container::quota`]);
/// a filesystem without the `project` feature refuses that (EINVAL) and is
/// mounted without, logged as `mount result=refused`.
pub fn data(board: &Board) -> MountStep {
    let d = &board.storage.data;
    let mut s = step(&d.device, DATA, d.fstype.name(), SAFE | MsFlags::MS_NOATIME, DATA_OPTIONS);
    s.retry_data = Some(text(""));
    s
}

/// The bootloader environment's FAT partition (the board's
/// `[bootloader]`), at [`crate::release::board::bootloader::MOUNT_AT`]:
/// codepage and character set named, so exactly the board's `nls_cp437`
/// and `nls_ascii` modules serve, whatever the kernel's defaults.
pub fn bootenv(b: &crate::release::board::bootloader::Bootloader) -> MountStep {
    b.mount_step(&b.env_device)
}

pub use crate::release::board::bootloader::BOOTENV_OPTIONS;

/// Mount options of the data partition.
pub const DATA_OPTIONS: &str = "prjquota";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::board::Board;
    use nix::errno::Errno;

    pub(crate) fn board(cgroup: &str) -> Board {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../board-configs/qemu-aarch64-virt.toml")).unwrap();
        let mut b = Board::from_toml(&text).unwrap();
        b.cgroup = if cgroup == "v1" { CgroupMode::V1 } else { CgroupMode::V2 };
        b
    }

    /// Records every call; `mounted` pretends those targets already exist.
    #[derive(Default)]
    struct Recorder {
        calls: Vec<String>,
        mounted: Vec<String>,
        fail: Option<String>,
        /// Mount options the kernel "does not know" (EINVAL).
        unknown: Option<&'static str>,
    }

    impl Mounter for Recorder {
        fn is_mounted(&mut self, target: &str) -> bool {
            self.mounted.iter().any(|m| m == target)
        }
        fn ensure_dir(&mut self, target: &str) -> Result<(), Errno> {
            self.calls.push(format!("mkdir {target}"));
            Ok(())
        }
        fn mount(&mut self, s: &MountStep) -> Result<(), Errno> {
            self.calls.push(format!("mount {} {} {} {} {}", s.source, s.target, s.fstype, flags_text(s.flags), s.data));
            if self.fail.as_deref() == Some(s.target.as_str()) {
                return Err(Errno::ENODEV);
            }
            if self.unknown.is_some_and(|o| s.data.split(',').any(|d| d == o)) {
                return Err(Errno::EINVAL);
            }
            Ok(())
        }
    }

    #[test]
    fn early_plan_v2_in_order() {
        let mut r = Recorder::default();
        assert_eq!(apply(&early(&board("v2")), &mut r), 0);
        let mounts: Vec<&String> = r.calls.iter().filter(|c| c.starts_with("mount")).collect();
        assert_eq!(
            mounts,
            [
                "mount proc /proc proc nosuid,nodev,noexec ",
                "mount sysfs /sys sysfs nosuid,nodev,noexec ",
                "mount devtmpfs /dev devtmpfs nosuid mode=0755",
                "mount devpts /dev/pts devpts nosuid,noexec mode=0620,ptmxmode=0666,gid=5",
                "mount tmpfs /dev/shm tmpfs nosuid,nodev,noexec mode=1777,size=4m",
                "mount tmpfs /run tmpfs nosuid,nodev mode=0755,size=8m",
                "mount cgroup2 /sys/fs/cgroup cgroup2 nosuid,nodev,noexec nsdelegate,favordynmods",
            ]
        );
        // Every mount point is made before its mount.
        assert_eq!(r.calls.len(), 14);
    }

    #[test]
    fn cgroup2_without_favordynmods_on_older_kernels() {
        let mut r = Recorder { unknown: Some("favordynmods"), ..Default::default() };
        assert_eq!(apply(&early(&board("v2")), &mut r), 0, "the retry succeeds");
        let cg: Vec<&String> = r.calls.iter().filter(|c| c.starts_with("mount cgroup2")).collect();
        assert_eq!(
            cg,
            [
                "mount cgroup2 /sys/fs/cgroup cgroup2 nosuid,nodev,noexec nsdelegate,favordynmods",
                "mount cgroup2 /sys/fs/cgroup cgroup2 nosuid,nodev,noexec nsdelegate",
            ]
        );
        // Another refused option is not retried: the step fails.
        let mut r = Recorder { unknown: Some("nsdelegate"), ..Default::default() };
        assert_eq!(apply(&early(&board("v2")), &mut r), 1);
        assert_eq!(r.calls.iter().filter(|c| c.starts_with("mount cgroup2")).count(), 2);
    }

    #[test]
    fn already_mounted_targets_are_skipped() {
        let mut r = Recorder { mounted: vec!["/proc".into(), "/dev".into()], ..Default::default() };
        apply(&early(&board("v2")), &mut r);
        assert!(!r.calls.iter().any(|c| c.contains(" /proc ") || c.contains(" /dev ")));
        assert!(r.calls.iter().any(|c| c.contains(" /dev/pts ")));
    }

    #[test]
    fn a_failed_step_is_counted_and_the_rest_still_run() {
        let mut r = Recorder { fail: Some("/sys".into()), ..Default::default() };
        assert_eq!(apply(&early(&board("v2")), &mut r), 1);
        assert!(r.calls.iter().any(|c| c.contains(" /run ")));
    }

    #[test]
    fn v1_mounts_a_tmpfs_then_each_present_controller() {
        let e = early(&board("v1"));
        let last = e.last().unwrap();
        assert_eq!((last.fstype.as_str(), last.target.as_str()), ("tmpfs", "/sys/fs/cgroup"));
        let p = cgroup_v1(&["cpu", "cpuacct", "memory", "devices", "pids"]);
        let got: Vec<(&str, &str)> = p.iter().map(|s| (s.target.as_str(), s.data.as_str())).collect();
        assert_eq!(
            got,
            [
                ("/sys/fs/cgroup/cpu,cpuacct", "cpu,cpuacct,favordynmods"),
                ("/sys/fs/cgroup/memory", "memory,favordynmods"),
                ("/sys/fs/cgroup/devices", "devices,favordynmods"),
                ("/sys/fs/cgroup/pids", "pids,favordynmods"),
            ]
        );
        assert!(p.iter().all(|s| s.flags.contains(SAFE) && s.fstype == "cgroup"));
        // A kernel without favordynmods mounts them without.
        let mut r = Recorder { unknown: Some("favordynmods"), ..Default::default() };
        assert_eq!(apply(&p, &mut r), 0);
        let second: Vec<&String> = r.calls.iter().filter(|c| c.starts_with("mount") && !c.contains("favordynmods")).collect();
        assert_eq!(second.len(), 4, "{:?}", r.calls);
        assert!(second.iter().any(|c| c.ends_with(" cpu,cpuacct")), "{second:?}");
    }

    #[test]
    fn an_optional_step_the_kernel_lacks_is_not_a_failure() {
        let mut r = Recorder { fail: Some("/sys/fs/cgroup/memory".into()), ..Default::default() };
        assert_eq!(apply(&cgroup_v1(&["memory", "pids"]), &mut r), 0);
        assert!(r.calls.iter().any(|c| c.contains(" /sys/fs/cgroup/pids ")));
        let mut r = Recorder { fail: Some("/sys".into()), ..Default::default() };
        assert_eq!(apply(&early(&board("v2")), &mut r), 1, "required steps still count");
    }

    #[test]
    fn system_root_is_read_only_and_data_cannot_run_programs() {
        let b = board("v2");
        let s = system_root(&b);
        assert_eq!((s.source.as_str(), s.target.as_str(), s.fstype.as_str()), ("/dev/vda", NEW_ROOT, "squashfs"));
        assert!(s.flags.contains(MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV));
        assert!(!s.flags.contains(MsFlags::MS_NOEXEC), "berth runs from the system image");
        let d = data(&b);
        assert_eq!((d.source.as_str(), d.target.as_str(), d.fstype.as_str()), ("/dev/vdb", DATA, "ext4"));
        assert_eq!((d.data.as_str(), d.retry_data.as_deref()), ("prjquota", Some("")), "project quotas, else without");
        assert!(d.flags.contains(SAFE));
        assert!(!d.flags.contains(MsFlags::MS_RDONLY));
    }
}
