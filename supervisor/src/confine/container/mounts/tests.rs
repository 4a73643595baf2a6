//! The container mount sequence's unit tests (moved out of `mounts.rs`).

use super::*;
use crate::release::manifest::Mount;

fn mount(target: &str, size: Option<u64>, volume: Option<&str>) -> Mount {
    Mount {
        target: target.try_into().unwrap(),
        tmpfs_size: size,
        volume: volume.map(|v| v.try_into().unwrap()),
        exec: false,
        volume_size: None,
        volume_inodes: None,
    }
}

fn lines(w: &[Writable], own_net: bool) -> Vec<String> {
    let input = Input { root: "/r", container: "c", own_net, uid: 0, gid: 0, writable: w, nodes: &[], notify: None, status_view: false };
    sequence(&input).unwrap().iter().map(|s| s.to_string()).collect()
}

#[test]
fn tmp_is_noexec_unless_asked() {
    let mut w = writable(&[]).unwrap();
    assert_eq!(w.len(), 1);
    assert!(lines(&w, true).contains(&"mount tmpfs /r/tmp nosuid,nodev,noexec mode=1777,size=1048576,nr_inodes=256".to_string()));
    w[0].exec = true;
    assert!(lines(&w, true).contains(&"mount tmpfs /r/tmp nosuid,nodev mode=1777,size=1048576,nr_inodes=256".to_string()));
    // A manifest /tmp replaces the default, noexec unless it asks.
    let w = writable(&[mount("/tmp", Some(8192), None)]).unwrap();
    assert_eq!(w.len(), 1);
    assert!(!w[0].exec);
    let l = lines(&w, true);
    assert!(l.contains(&"mount tmpfs /r/tmp nosuid,nodev,noexec mode=1777,size=8192,nr_inodes=64".to_string()));
    assert_eq!(l.iter().filter(|s| s.starts_with("mount tmpfs /r/tmp ")).count(), 1, "one /tmp: {l:?}");
    let mut exec = mount("/tmp", Some(8192), None);
    exec.exec = true;
    let w = writable(&[exec]).unwrap();
    assert!(w[0].exec);
    assert!(lines(&w, true).contains(&"mount tmpfs /r/tmp nosuid,nodev mode=1777,size=8192,nr_inodes=64".to_string()));
}

#[test]
fn volumes_bind_their_data_directory_noexec() {
    let w = writable(&[mount("/mnt", None, Some("state"))]).unwrap();
    assert!(!w.iter().any(|w| w.exec));
    let l = lines(&w, true);
    let i = l.iter().position(|s| s == "bind /data/volumes/c/state /r/mnt").unwrap();
    assert_eq!(l[i - 1], "mkdir /r/mnt 755");
    assert_eq!(l[i + 1], "remount /r/mnt nosuid,nodev,noexec");
    let mut exec = mount("/mnt", None, Some("state"));
    exec.exec = true;
    assert_eq!(writable(&[exec]).unwrap_err().0, "mounts[0].exec");
    let e = writable(&[mount("/a", None, Some("v")), mount("/b", None, Some("v"))]).unwrap_err();
    assert_eq!(e.0, "mounts[1].volume");
    assert_eq!(volume_path("web", "state").unwrap().as_str(), "/data/volumes/web/state");
    for (c, v) in [("web", ".."), ("..", "v"), ("web", "a/b"), ("", "v"), ("web", "")] {
        assert!(volume_path(c, v).is_none(), "{c:?} {v:?}");
    }
}

#[test]
fn the_status_view_is_bound_read_only_after_the_writable_mounts() {
    let w = writable(&[mount("/run", Some(4096), None)]).unwrap();
    let input = Input { root: "/r", container: "c", own_net: true, uid: 0, gid: 0, writable: &w, nodes: &[], notify: None, status_view: true };
    let l: Vec<String> = sequence(&input).unwrap().iter().map(|s| s.to_string()).collect();
    let i = l.iter().position(|s| s == "bind /run/berth/status /r/run/berth-status").unwrap();
    assert_eq!(l[i - 1], "mkdir /r/run/berth-status 755");
    assert_eq!(l[i + 1], "remount /r/run/berth-status ro,nosuid,nodev,noexec");
    assert!(l.iter().position(|s| s.starts_with("mount tmpfs /r/run ")).unwrap() < i);
    assert!(!lines(&w, true).iter().any(|s| s.contains("berth-status")));
}

#[test]
fn targets_beneath_a_volume_are_resolved_without_symlinks() {
    let w = writable(&[
        mount("/var/lib/app", None, Some("state")),
        mount("/var/lib/app/cache", Some(4096), None),
        mount("/var/lib/app/sub", None, Some("sub")),
        mount("/var/lib/application", Some(4096), None),
    ])
    .unwrap();
    let l = lines(&w, true);
    // The volume's own target lies in the image: a plain bind.
    assert!(l.contains(&"bind /data/volumes/c/state /r/var/lib/app".to_string()), "{l:?}");
    assert!(l.contains(&"remount /r/var/lib/app nosuid,nodev,noexec".to_string()));
    // Mounts beneath it: every step through openat2 in the root.
    let cache = [
        "mkdir-beneath /r /var/lib/app/cache 755",
        "mount-beneath tmpfs /r /var/lib/app/cache nosuid,nodev,noexec mode=0755,uid=0,gid=0,size=4096,nr_inodes=64",
    ];
    let sub = [
        "mkdir-beneath /r /var/lib/app/sub 755",
        "bind-beneath /data/volumes/c/sub /r /var/lib/app/sub",
        "remount-beneath /r /var/lib/app/sub nosuid,nodev,noexec",
    ];
    for want in cache.iter().chain(sub.iter()) {
        assert!(l.contains(&want.to_string()), "{want}: {l:?}");
    }
    assert!(!l.iter().any(|s| s.contains(" /r/var/lib/app/")), "no plain step beneath the volume: {l:?}");
    // A sibling that only shares a prefix is not beneath it.
    assert!(l.contains(&"mkdir /r/var/lib/application 755".to_string()));
    assert!(beneath_volume("/a/b", &["/a"]) && !beneath_volume("/a", &["/a"]) && !beneath_volume("/ab", &["/a"]));
    // The parent and leaf a step makes its directory with.
    let input = Input { root: "/r", container: "c", own_net: true, uid: 0, gid: 0, writable: &w, nodes: &[], notify: None, status_view: false };
    let steps = sequence(&input).unwrap();
    let Some(Step::Beneath(at)) = steps.iter().find(|s| matches!(s, Step::Beneath(_))) else { panic!() };
    assert_eq!((at.parent.as_str(), at.leaf.as_str()), ("/var/lib/app", "cache"));
}

#[test]
fn parents_are_mounted_before_children() {
    let w = writable(&[mount("/var/lib/a", None, Some("a")), mount("/var", Some(4096), None)]).unwrap();
    let t: Vec<&str> = w.iter().map(|w| w.target.as_str()).collect();
    assert_eq!(t, ["/var", "/tmp", "/var/lib/a"]);
}

#[test]
fn bad_targets_are_errors_naming_the_mount() {
    for t in ["/proc/x", "/dev", "/sys/fs", "relative", "/a/../b", "/a//b", "/"] {
        let e = writable(&[mount("/ok", Some(4096), None), mount(t, Some(4096), None)]).unwrap_err();
        assert_eq!(e.0, "mounts[1].target", "{t}");
    }
    let e = writable(&[mount("/x", Some(4096), Some("v"))]).unwrap_err();
    assert_eq!(e.0, "mounts[0]");
    let e = writable(&[mount("/x", None, Some("../etc"))]).unwrap_err();
    assert_eq!(e.0, "mounts[0]");
    let e = writable(&[mount("/x", Some(4096), None), mount("/x", None, Some("v"))]).unwrap_err();
    assert_eq!(e.0, "mounts[1].target");
}

#[test]
fn host_network_binds_sys_read_only() {
    let w = writable(&[]).unwrap();
    let own = lines(&w, true);
    assert!(own.contains(&"mount sysfs /r/sys ro,nosuid,nodev,noexec".to_string()));
    assert!(!own.iter().any(|l| l.contains("rbind")));
    let host = lines(&w, false);
    assert!(!host.iter().any(|l| l.starts_with("mount sysfs")));
    let i = host.iter().position(|l| l == "rbind /sys /r/sys").unwrap();
    assert_eq!(host[i + 1], "remount-rec /r/sys ro,nosuid,nodev,noexec");
}

#[test]
fn masked_and_read_only_lists_are_complete() {
    let want_ro = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];
    let want_files = ["/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/interrupts"];
    let want_dirs = ["/proc/acpi", "/proc/asound", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap"];
    let l = lines(&writable(&[]).unwrap(), true);
    let pivot = l.iter().position(|s| s.starts_with("pivot_root")).unwrap();
    for p in want_ro {
        let i = l.iter().position(|s| *s == format!("read-only {p}")).unwrap_or_else(|| panic!("{p}"));
        assert!(i > pivot);
    }
    for p in want_files {
        let i = l.iter().position(|s| *s == format!("mask-file {p}")).unwrap_or_else(|| panic!("{p}"));
        assert!(i > pivot);
    }
    for p in want_dirs {
        let i = l.iter().position(|s| *s == format!("mask-dir {p}")).unwrap_or_else(|| panic!("{p}"));
        assert!(i > pivot);
    }
    assert_eq!(l.iter().filter(|s| s.starts_with("read-only")).count(), want_ro.len());
    assert_eq!(l.iter().filter(|s| s.starts_with("mask-")).count(), want_files.len() + want_dirs.len());
    // Read-only paths before masks, and / read-only last.
    let last_ro = l.iter().rposition(|s| s.starts_with("read-only")).unwrap();
    let first_mask = l.iter().position(|s| s.starts_with("mask-")).unwrap();
    assert!(last_ro < first_mask);
    assert_eq!(l.last().unwrap(), "remount / ro,nosuid,nodev");
}

#[test]
fn flags_render() {
    assert_eq!(Flags(MsFlags::empty()).to_string(), "rw");
    assert_eq!(Flags(MsFlags::MS_REC | MsFlags::MS_SLAVE).to_string(), "rec,slave");
}
