use super::*;

fn mount(target: &str, tmpfs: Option<u64>, volume: Option<&str>) -> Mount {
    Mount {
        target: target.try_into().unwrap(),
        tmpfs_size: tmpfs,
        volume: volume.map(|v| v.try_into().unwrap()),
        exec: false,
        volume_size: None,
        volume_inodes: None,
    }
}

const MEMINFO: &str = "MemTotal:         246000 kB\nMemFree:          200000 kB\n";

#[test]
fn mem_total_is_read_in_kib() {
    assert_eq!(mem_total_kib(MEMINFO), Some(246_000));
    assert_eq!(mem_total_kib("MemFree: 1 kB\n"), None);
    assert_eq!(mem_total_kib("MemTotal: x kB\n"), None);
    assert_eq!(mem_total_kib("MemTotal: 5 MB\n"), None);
}

#[test]
fn the_default_limit_is_a_share_of_ram_or_the_boards_bytes() {
    let b = Budgets::default();
    assert_eq!((b.container_memory_percent, b.memory_high_percent, b.host_reserve_kib), (25, 90, 16384));
    // 25 % of 256 MiB.
    assert_eq!(b.container_default(256 * 1024), 64 << 20);
    // Never under 1 MiB, even on an unreadable MemTotal.
    assert_eq!(b.container_default(0), MEMORY_MIN);
    let fixed = Budgets { container_memory_max: Some(32 << 20), ..b };
    assert_eq!(fixed.container_default(256 * 1024), 32 << 20);
}

#[test]
fn limits_resolve_manifest_first_then_board_with_high_below() {
    let b = Budgets::default();
    let m = resolve(Some(16 << 20), &[], &b, 256 * 1024).unwrap();
    assert_eq!(m, Memory { max: 16 << 20, high: Some(((16u64 << 20) * 90 / 100) & !4095), source: Source::Manifest });
    let d = resolve(None, &[], &b, 256 * 1024).unwrap();
    assert_eq!((d.max, d.source), (64 << 20, Source::Board));
    assert!(d.high.unwrap() < d.max);
    let no_high = Budgets { memory_high_percent: 100, ..b };
    assert_eq!(resolve(None, &[], &no_high, 256 * 1024).unwrap().high, None);
}

#[test]
fn tmpfs_sizes_count_against_the_limit() {
    // /dev 64 KiB + /dev/shm 1 MiB + default /tmp 1 MiB.
    assert_eq!(tmpfs_total(&[]), (64 << 10) + (2 << 20));
    let own_tmp = [mount("/tmp", Some(8 << 20), None), mount("/var/lib/x", None, Some("state"))];
    assert_eq!(tmpfs_total(&own_tmp), (64 << 10) + (1 << 20) + (8 << 20));
    let b = Budgets::default();
    let big = [mount("/scratch", Some(15 << 20), None)];
    let (field, why) = resolve(Some(16 << 20), &big, &b, 256 * 1024).unwrap_err();
    assert_eq!(field, "resources.memory_max");
    assert!(why.contains("more than memory_max 16777216"), "{why}");
    // Within the board's default it fits; over it, the error names the mounts.
    assert!(resolve(None, &big, &b, 256 * 1024).is_ok());
    let (field, why) = resolve(None, &big, &b, 64 * 1024).unwrap_err();
    assert_eq!(field, "mounts");
    assert!(why.contains("set resources.memory_max"), "{why}");
    // Exactly at the limit is fine.
    let exact = (16 << 20) - tmpfs_total(&[]) + (1 << 20);
    assert!(resolve(Some(16 << 20), &[mount("/tmp", Some(exact), None)], &b, 0).is_ok());
    assert!(resolve(Some(16 << 20), &[mount("/tmp", Some(exact + 1), None)], &b, 0).is_err());
}

#[test]
fn every_tmpfs_gets_an_inode_limit() {
    assert_eq!(tmpfs_inodes(64 << 10), TMPFS_INODES_MIN);
    assert_eq!(tmpfs_inodes(1 << 20), 256);
    assert_eq!(tmpfs_inodes(1 << 32), 1 << 20);
}

#[test]
fn board_values_are_checked_by_field() {
    assert_eq!(Budgets::default().validate(), Ok(()));
    let bad = [
        (Budgets { container_memory_percent: 0, ..Default::default() }, "budgets.container_memory_percent"),
        (Budgets { container_memory_percent: 101, ..Default::default() }, "budgets.container_memory_percent"),
        (Budgets { container_memory_max: Some(1000), ..Default::default() }, "budgets.container_memory_max"),
        (Budgets { memory_high_percent: 10, ..Default::default() }, "budgets.memory_high_percent"),
        (Budgets { inotify_max_user_instances: Some(0), ..Default::default() }, "budgets.inotify_max_user_instances"),
        (Budgets { inotify_max_user_watches: Some(u32::MAX), ..Default::default() }, "budgets.inotify_max_user_watches"),
    ];
    for (b, field) in bad {
        assert_eq!(b.validate().unwrap_err().0, field);
    }
}

#[test]
fn inotify_is_left_alone_unless_the_board_says() {
    assert!(inotify_settings(&Budgets::default()).is_empty());
    let b = Budgets { inotify_max_user_instances: Some(512), ..Default::default() };
    let s = inotify_settings(&b);
    assert_eq!(s.len(), 1);
    assert_eq!((s[0].key, s[0].path, s[0].value), ("fs.inotify.max_user_instances", "/proc/sys/fs/inotify/max_user_instances", 512));
}

#[test]
fn memory_controller_is_required_unless_the_board_says_optional() {
    assert_eq!(Budgets::default().memory_controller, Need::Required);
    let b: Budgets = toml::from_str("memory_controller = \"optional\"").unwrap();
    assert_eq!((b.memory_controller, b.container_memory_percent), (Need::Optional, 25));
    assert!(toml::from_str::<Budgets>("memory_controller = \"maybe\"").is_err());
    assert_eq!(Need::Optional.name(), "optional");
}
