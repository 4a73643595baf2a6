//! Manifest parsing and checks: unit tests (moved out of `manifest.rs`).

use super::*;
use crate::release::board::Board;

/// Realistic manifests for a small gateway: (file stem, TOML).
pub(crate) const EXAMPLES: &[(&str, &str)] = &[
    (
        "sensor",
        r#"
name = "sensor"
version = "1.4.2"
image = "sha256:1111111111111111111111111111111111111111111111111111111111111111"

[entry]
argv = ["/usr/bin/sensord", "--interval", "5s"]
env = ["RUST_LOG=info", "SENSOR_BUS=i2c-1"]
workdir = "/var/lib/sensor"
"#,
    ),
    (
        "collector",
        r#"
name = "collector"
version = "0.9.0+build.7"
image = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
after = ["sensor"]
network = "none"

[entry]
argv = ["/usr/bin/collector"]
"#,
    ),
    (
        "uplink",
        r#"
name = "uplink"
version = "2.0.0"
image = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
after = ["collector", "sensor"]
log_rate = { lines_per_s = 20, burst = 50 }

[entry]
argv = ["/usr/bin/collector", "--uplink"]
env = ["UPLINK_URL=mqtts://broker.example:8883"]
"#,
    ),
];

pub(crate) fn examples() -> std::vec::Vec<Manifest> {
    EXAMPLES.iter().map(|(stem, text)| Manifest::from_toml(stem, text).unwrap()).collect()
}

fn sensor_with(old: &str, new: &str) -> std::string::String {
    let text = EXAMPLES[0].1;
    assert!(text.contains(old), "fixture lacks {old}");
    text.replacen(old, new, 1)
}

fn parse(text: &str) -> Result<Manifest, ManifestError> {
    Manifest::from_toml("sensor", text)
}

const ENTRY: &str = "[entry]\n";

#[test]
fn examples_parse_with_defaults() {
    let ms = examples();
    assert_eq!(ms[0].entry.argv.len(), 3);
    assert_eq!(ms[1].entry.workdir.as_str(), "/");
    assert_eq!(ms[1].network, Some(Network::None));
    assert_eq!(ms[0].network, None);
    assert_eq!(ms[0].image.to_string(), format!("sha256:{}", "1".repeat(64)));
    validate_set(&ms).unwrap();
    let order = start_order(&ms).unwrap();
    assert_eq!(order.as_slice(), &[0, 1, 2]);
}

#[test]
fn display_names_manifest_field_and_reason() {
    let e = parse(&sensor_with("\"/usr/bin/sensord\"", "\"sensord\"")).unwrap_err();
    assert_eq!(e.to_string(), "manifest sensor: field entry.argv[0]: must be an absolute path");
}

#[test]
fn unknown_and_missing_fields_are_named() {
    let e = parse(&sensor_with("version =", "colour = \"red\"\nversion =")).unwrap_err();
    assert_eq!((e.manifest.as_str(), e.field.as_str()), ("sensor", "colour"));
    let e = parse(&sensor_with(ENTRY, "[entry]\nshell = true\n")).unwrap_err();
    assert_eq!(e.field, "shell");
    let e = parse(&sensor_with("version = \"1.4.2\"\n", "")).unwrap_err();
    assert_eq!(e.field, "version");
    let e = Manifest::from_toml("other", EXAMPLES[0].1).unwrap_err();
    assert_eq!(e.field, "name");
}

#[test]
fn bad_values_are_named() {
    let cases: &[(&str, &str, &str)] = &[
        ("name = \"sensor\"", "name = \"Sensor\"", "name"),
        ("version = \"1.4.2\"", "version = \"1 4\"", "version"),
        ("version = \"1.4.2\"", "version = \"\"", "version"),
        ("argv = [\"/usr/bin/sensord\", ", "argv = [\"/usr/bin/sensord\", \"a\\u0000b\", ", "entry.argv[1]"),
        ("\"RUST_LOG=info\"", "\"RUST_LOG\"", "entry.env[0]"),
        ("\"RUST_LOG=info\"", "\"1X=info\"", "entry.env[0]"),
        ("\"SENSOR_BUS=i2c-1\"", "\"RUST_LOG=debug\"", "entry.env[1]"),
        ("workdir = \"/var/lib/sensor\"", "workdir = \"var\"", "entry.workdir"),
        ("workdir = \"/var/lib/sensor\"", "workdir = \"/var/../etc\"", "entry.workdir"),
        (ENTRY, "[entry]\nuid = 65536\n", "entry.uid"),
        (ENTRY, "[entry]\ngid = 70000\n", "entry.gid"),
        (ENTRY, "after = [\"sensor\"]\n[entry]\n", "after[0]"),
        (ENTRY, "after = [\"a\", \"a\"]\n[entry]\n", "after[1]"),
        (ENTRY, "after = [\"A\"]\n[entry]\n", "after[0]"),
        (ENTRY, "readiness = { command = [\"check\"] }\n[entry]\n", "readiness.command[0]"),
        (ENTRY, "readiness = { notify = true, timeout_ms = 5 }\n[entry]\n", "readiness.timeout_ms"),
        (ENTRY, "readiness = { notify = true, command = [\"/c\"] }\n[entry]\n", "readiness"),
        (ENTRY, "health = { interval_ms = 1000 }\n[entry]\n", "health"),
        (ENTRY, "health = { command = [\"/c\"], watchdog_ms = 1000 }\n[entry]\n", "health"),
        (ENTRY, "health = { watchdog_ms = 10 }\n[entry]\n", "health.watchdog_ms"),
        (ENTRY, "health = { command = [\"/c\"], interval_ms = 5 }\n[entry]\n", "health.interval_ms"),
        (ENTRY, "health = { command = [\"/c\"], timeout_ms = 5 }\n[entry]\n", "health.timeout_ms"),
        (ENTRY, "health = { command = [\"/c\"], retries = 0 }\n[entry]\n", "health.retries"),
        (ENTRY, "health = { command = [\"c\"] }\n[entry]\n", "health.command[0]"),
        (ENTRY, "stop = { grace_ms = 1 }\n[entry]\n", "stop.grace_ms"),
        (ENTRY, "stop = { signal = \"SIGKILL\" }\n[entry]\n", "stop"),
        (ENTRY, "rlimits = { nofile = 8 }\n[entry]\n", "rlimits.nofile"),
        (ENTRY, "backoff = { factor = 0 }\n[entry]\n", "backoff.factor"),
        (ENTRY, "backoff = { limit = 0 }\n[entry]\n", "backoff.limit"),
        (ENTRY, "rlimits = { nproc = 0 }\n[entry]\n", "rlimits.nproc"),
        (ENTRY, "rlimits = { core = 2000000000 }\n[entry]\n", "rlimits.core"),
        (ENTRY, "resources = { memory_max = 1000 }\n[entry]\n", "resources.memory_max"),
        (ENTRY, "resources = { cpu_weight = 0 }\n[entry]\n", "resources.cpu_weight"),
        (ENTRY, "resources = { cpu_weight = 10001 }\n[entry]\n", "resources.cpu_weight"),
        (ENTRY, "resources = { pids_max = 0 }\n[entry]\n", "resources.pids_max"),
        (ENTRY, "mounts = [{ target = \"/\", tmpfs_size = 4096 }]\n[entry]\n", "mounts[0].target"),
        (ENTRY, "mounts = [{ target = \"/t\", tmpfs_size = 10 }]\n[entry]\n", "mounts[0].tmpfs_size"),
        (ENTRY, "resources = { memory_max = 4194304 }\nmounts = [{ target = \"/t\", tmpfs_size = 4194304 }]\n[entry]\n", "resources.memory_max"),
        (ENTRY, "mounts = [{ target = \"/t\", volume = \"V\" }]\n[entry]\n", "mounts[0].volume"),
        (ENTRY, "mounts = [{ target = \"/t\" }]\n[entry]\n", "mounts[0]"),
        (ENTRY, "mounts = [{ target = \"/t\", volume = \"v\", exec = true }]\n[entry]\n", "mounts[0].exec"),
        (ENTRY, "mounts = [{ target = \"/a\", volume = \"v\" }, { target = \"/b\", volume = \"v\" }]\n[entry]\n", "mounts[1].volume"),
        (ENTRY, "mounts = [{ target = \"/proc/x\", tmpfs_size = 4096 }]\n[entry]\n", "mounts[0].target"),
        (ENTRY, "mounts = [{ target = \"/dev\", tmpfs_size = 4096 }]\n[entry]\n", "mounts[0].target"),
        (ENTRY, "mounts = [{ target = \"/t\", volume = \"v\", tmpfs_size = 4096 }]\n[entry]\n", "mounts[0]"),
        (ENTRY, "mounts = [{ target = \"/t\", volume = \"v\" }, { target = \"/t\", volume = \"w\" }]\n[entry]\n", "mounts[1].target"),
        (ENTRY, "capabilities = [\"CAP_FLY\"]\n[entry]\n", "capabilities[0]"),
        (ENTRY, "capabilities = [\"NET_BIND_SERVICE\"]\n[entry]\n", "capabilities[0]"),
        (ENTRY, "capabilities = [\"CAP_KILL\", \"CAP_KILL\"]\n[entry]\n", "capabilities[1]"),
        (ENTRY, "network = \"host\"\ncapabilities = [\"CAP_NET_RAW\"]\n[entry]\n", "capabilities[0]"),
        (ENTRY, "seccomp_allow = [\"Open\"]\n[entry]\n", "seccomp_allow[0]"),
        (ENTRY, "seccomp_allow = [\"ioctl\", \"ioctl\"]\n[entry]\n", "seccomp_allow[1]"),
        (ENTRY, "socket_families = [\"inet\"]\n[entry]\n", "socket_families[0]"),
        (ENTRY, "socket_families = [\"can\", \"packet\"]\n[entry]\n", "socket_families[1]"),
        (ENTRY, "socket_families = [\"alg\"]\n[entry]\n", "socket_families[0]"),
        (ENTRY, "socket_families = [\"vsock\"]\n[entry]\n", "socket_families[0]"),
        (ENTRY, "socket_families = [\"CAN\"]\n[entry]\n", "socket_families[0]"),
        (ENTRY, "socket_families = [\"can\", \"can\"]\n[entry]\n", "socket_families[1]"),
        (ENTRY, "devices = [{ node = \"/dev/x\", access = \"r\" }]\n[entry]\n", "devices[0].node"),
        (ENTRY, "devices = [{ node = \"serial1\", access = \"rr\" }]\n[entry]\n", "devices[0].access"),
        (ENTRY, "devices = [{ node = \"serial1\", access = \"x\" }]\n[entry]\n", "devices[0].access"),
        (ENTRY, "devices = [{ node = \"serial1\", access = \"\" }]\n[entry]\n", "devices[0].access"),
        (ENTRY, "exec_paths = [\"usr/bin\"]\n[entry]\n", "exec_paths[0]"),
        (ENTRY, "exec_paths = [\"/usr/../bin\"]\n[entry]\n", "exec_paths[0]"),
        (ENTRY, "exec_paths = [\"/usr/bin/\"]\n[entry]\n", "exec_paths[0]"),
        (ENTRY, "exec_paths = [\"/usr/bin\", \"/usr/bin\"]\n[entry]\n", "exec_paths[1]"),
        (ENTRY, "exec_paths = [\"/opt\"]\n[entry]\n", "exec_paths"),
        (ENTRY, "exec_paths = [\"/usr/bin/sensor\"]\n[entry]\n", "exec_paths"),
        (ENTRY, "rw_paths = [\"/\"]\n[entry]\n", "rw_paths[0]"),
        (ENTRY, "rw_paths = [\"/var//lib\"]\n[entry]\n", "rw_paths[0]"),
        (ENTRY, "rw_paths = [\"/run\", \"/run\"]\n[entry]\n", "rw_paths[1]"),
        (ENTRY, "log_rate = { lines_per_s = 0 }\n[entry]\n", "log_rate.lines_per_s"),
        (ENTRY, "log_rate = { lines_per_s = 10001 }\n[entry]\n", "log_rate.lines_per_s"),
        (ENTRY, "log_rate = { burst = 0 }\n[entry]\n", "log_rate.burst"),
        (ENTRY, "log_rate = { burst = 100001 }\n[entry]\n", "log_rate.burst"),
    ];
    for (old, new, field) in cases {
        let e = parse(&sensor_with(old, new)).unwrap_err();
        assert_eq!(&e.field, field, "{old} -> {new}: {e}");
        assert!(!e.reason.contains("not supported"), "{old} -> {new}: value error expected, got {e}");
    }
}

#[test]
fn wrong_types_and_enums_are_rejected() {
    for (old, new) in [
        ("version = \"1.4.2\"", "version = 1"),
        (ENTRY, "restart = \"sometimes\"\n[entry]\n"),
        (ENTRY, "network = \"bridge\"\n[entry]\n"),
        ("image = \"sha256:1111", "image = \"sha512:1111"),
        ("image = \"sha256:1111", "image = \"sha256:111"),
        ("image = \"sha256:1111", "image = \"sha256:xx11"),
    ] {
        assert!(parse(&sensor_with(old, new)).is_err(), "{old} -> {new}");
    }
}

#[test]
fn over_capacity_strings_and_lists_are_rejected() {
    let long = "a".repeat(ARG_MAX + 1);
    let e = parse(&sensor_with("\"--interval\"", &format!("\"{long}\""))).unwrap_err();
    assert_eq!(e.field, "entry.argv", "{e}");
    assert!(e.reason.contains("no more than 128 bytes"), "{e}");
    let e = parse(&sensor_with("version = \"1.4.2\"", &format!("version = \"{}\"", "1".repeat(33)))).unwrap_err();
    assert_eq!(e.field, "version", "{e}");
    let ok = "a".repeat(ARG_MAX);
    parse(&sensor_with("\"--interval\"", &format!("\"{ok}\""))).unwrap();
    let args: std::vec::Vec<_> = (0..ARGS_MAX).map(|i| format!("\"a{i}\"")).collect();
    let at = sensor_with("\"--interval\", \"5s\"", &args[1..].join(", "));
    assert_eq!(parse(&at).unwrap().entry.argv.len(), ARGS_MAX);
    let past = sensor_with("\"--interval\", \"5s\"", &args.join(", "));
    assert!(parse(&past).is_err());
}

#[test]
fn every_gated_field_is_refused_as_not_supported_yet() {
    let cases: &[(&str, &str)] = &[];
    let mut seen = std::vec::Vec::new();
    for (new, field) in cases {
        let e = parse(&sensor_with(ENTRY, new)).unwrap_err();
        assert_eq!(&e.field, field, "{new}: {e}");
        assert!(e.reason.starts_with("not supported yet"), "{e}");
        assert!(e.to_string().starts_with("manifest sensor: field "), "{e}");
        seen.push(*field);
    }
    // The gate list and the test agree: a field enforced later leaves both.
    let mut gated = GATED.to_vec();
    gated.sort_unstable();
    seen.sort_unstable();
    assert_eq!(gated, seen);
}

#[test]
fn log_rate_defaults_and_bounds() {
    let m = parse(&sensor_with(ENTRY, ENTRY)).unwrap();
    assert_eq!(m.log_rate, None);
    assert_eq!(m.log_rate.unwrap_or_default().resolved(), (LOG_LINES_PER_S, LOG_BURST));
    let m = parse(&sensor_with(ENTRY, "log_rate = { lines_per_s = 10000, burst = 100000 }\n[entry]\n")).unwrap();
    assert_eq!(m.log_rate.unwrap().resolved(), (10_000, 100_000));
    let m = parse(&sensor_with(ENTRY, "log_rate = { burst = 1 }\n[entry]\n")).unwrap();
    assert_eq!(m.log_rate.unwrap().resolved(), (LOG_LINES_PER_S, 1));
    let e = parse(&sensor_with(ENTRY, "log_rate = { lines = 5 }\n[entry]\n")).unwrap_err();
    assert!(e.to_string().contains("lines"), "{e}");
}

#[test]
fn oneshot_is_off_by_default_and_never_with_restart_always() {
    assert!(!parse(&sensor_with(ENTRY, ENTRY)).unwrap().oneshot);
    for restart in ["never", "on-failure"] {
        let m = parse(&sensor_with(ENTRY, &format!("oneshot = true\nrestart = \"{restart}\"\n[entry]\n"))).unwrap();
        assert!(m.oneshot, "{restart}");
    }
    // The default policy (on-failure) allows it.
    assert!(parse(&sensor_with(ENTRY, "oneshot = true\n[entry]\n")).unwrap().oneshot);
    let e = parse(&sensor_with(ENTRY, "oneshot = true\nrestart = \"always\"\n[entry]\n")).unwrap_err();
    assert_eq!(e.field, "oneshot", "{e}");
    assert!(parse(&sensor_with(ENTRY, "oneshot = \"yes\"\n[entry]\n")).is_err());
}

#[test]
fn status_view_is_off_by_default_and_keeps_mounts_off_its_path() {
    assert!(!parse(&sensor_with(ENTRY, ENTRY)).unwrap().status_view);
    let on = parse(&sensor_with(ENTRY, "status_view = true\n[entry]\n")).unwrap();
    assert!(on.status_view);
    for target in ["/run/berth-status", "/run/berth-status/x"] {
        let text = sensor_with(ENTRY, &format!("status_view = true\nmounts = [{{ target = \"{target}\", tmpfs_size = 4096 }}]\n[entry]\n"));
        assert_eq!(parse(&text).unwrap_err().field, "mounts[0].target", "{target}");
    }
    // A tmpfs over /run is fine: the view is bound after it.
    let text = sensor_with(ENTRY, "status_view = true\nmounts = [{ target = \"/run\", tmpfs_size = 4096 }]\n[entry]\n");
    assert!(parse(&text).is_ok());
    assert!(parse(&sensor_with(ENTRY, "status_view = 1\n[entry]\n")).is_err());
}

#[test]
fn update_drop_names_one_of_its_volumes() {
    assert_eq!(parse(&sensor_with(ENTRY, ENTRY)).unwrap().update_drop, None);
    let text = sensor_with(ENTRY, "update_drop = \"drop\"\nmounts = [{ target = \"/drop\", volume = \"drop\" }]\n[entry]\n");
    assert_eq!(parse(&text).unwrap().update_drop.as_deref(), Some("drop"));
    let text = sensor_with(ENTRY, "update_drop = \"drop\"\nmounts = [{ target = \"/tmp\", tmpfs_size = 4096 }]\n[entry]\n");
    let e = parse(&text).unwrap_err();
    assert_eq!((e.field.as_str(), e.reason.as_str()), ("update_drop", "`drop` is not the volume of any of its mounts"));
    assert!(parse(&sensor_with(ENTRY, "update_drop = \"Bad Name\"\n[entry]\n")).is_err());
}

#[test]
fn landlock_paths_are_accepted_with_the_program_beneath() {
    for list in ["[\"/usr/bin/sensord\"]", "[\"/usr\"]", "[\"/\"]", "[\"/opt\", \"/usr/bin\"]"] {
        let m = parse(&sensor_with(ENTRY, &format!("exec_paths = {list}\nrw_paths = [\"/run\"]\n[entry]\n"))).unwrap_or_else(|e| panic!("{list}: {e}"));
        assert!(!m.exec_paths.is_empty());
        assert_eq!(m.rw_paths[0].as_str(), "/run");
    }
    let many: std::vec::Vec<_> = (0..=LANDLOCK_PATHS_MAX).map(|i| format!("\"/r{i}\"")).collect();
    assert!(parse(&sensor_with(ENTRY, &format!("rw_paths = [{}]\n[entry]\n", many.join(",")))).is_err());
    assert!(beneath("/usr/bin/x", "/usr") && beneath("/usr", "/usr") && beneath("/x", "/"));
    assert!(!beneath("/usrx/y", "/usr") && !beneath("/us", "/usr"));
}

#[test]
fn readiness_health_and_stop_are_accepted() {
    let m = parse(&sensor_with(
        ENTRY,
        "readiness = { notify = true, timeout_ms = 5000 }\n\
             health = { watchdog_ms = 2000 }\n\
             stop = { signal = \"SIGINT\", grace_ms = 500 }\n[entry]\n",
    ))
    .unwrap();
    assert!(m.uses_notify());
    assert_eq!(m.readiness.as_ref().map(|r| r.timeout_ms), Some(5000));
    let h = m.health.as_ref().unwrap();
    assert_eq!((h.watchdog_ms, h.interval_ms, h.retries), (Some(2000), 10_000, 3));
    assert_eq!(m.stop.and_then(|s| s.signal).map(StopSignal::signal), Some(nix::sys::signal::Signal::SIGINT));
    let m = parse(&sensor_with(ENTRY, "health = { command = [\"/bin/check\", \"-q\"], retries = 2 }\n[entry]\n")).unwrap();
    assert!(!m.uses_notify());
    assert_eq!(m.health.unwrap().command.len(), 2);
    assert!(!examples()[0].uses_notify());
}

#[test]
fn socket_families_are_granted_by_name() {
    let m = parse(&sensor_with("[entry]", "socket_families = [\"can\", \"bluetooth\"]\n[entry]")).unwrap();
    assert_eq!(m.socket_families, ["can", "bluetooth"]);
    assert!(m.fields_set().any(|f| f == "socket_families"));
    let e = parse(&sensor_with("[entry]", "socket_families = [\"packet\"]\n[entry]")).unwrap_err();
    assert!(e.reason.contains("CAP_NET_RAW"), "{e}");
    let nine: std::vec::Vec<std::string::String> = (0..=FAMILIES_MAX).map(|_| "\"can\"".into()).collect();
    assert!(parse(&sensor_with("[entry]", &format!("socket_families = [{}]\n[entry]", nine.join(",")))).is_err());
    let long = parse(&sensor_with("[entry]", "socket_families = [\"ieee802154ieee\"]\n[entry]")).unwrap_err();
    assert_eq!(long.field, "socket_families", "{long}");
}

#[test]
fn mounts_and_devices_are_accepted() {
    let m = parse(&sensor_with(
        ENTRY,
        "mounts = [{ target = \"/tmp\", tmpfs_size = 65536, exec = true }, { target = \"/var/lib/sensor\", volume = \"state\" }]\n\
             devices = [{ node = \"serial1\", access = \"rw\" }]\n[entry]\n",
    ))
    .unwrap();
    assert_eq!(m.mounts.len(), 2);
    assert!(m.mounts[0].exec);
    assert!(!m.mounts[1].exec, "noexec by default");
    assert_eq!(m.mounts[1].volume.as_deref(), Some("state"));
    assert_eq!(m.devices[0].access.as_str(), "rw");
    for f in m.fields_set() {
        assert!(!GATED.contains(&f), "{f} is still gated");
    }
}

#[test]
fn refused_capabilities_are_refused_before_anything_else() {
    for cap in REFUSED_CAPS {
        assert!(CAP_NAMES.contains(cap));
        // Even with another bad field and a gate, the refusal wins.
        let text = sensor_with(ENTRY, &format!("capabilities = [\"CAP_KILL\", \"{cap}\"]\n[entry]\nuid = 1\n"))
            .replace("version = \"1.4.2\"", "version = \"bad version\"");
        let e = parse(&text).unwrap_err();
        assert_eq!(e.field, "capabilities[1]", "{cap}: {e}");
        assert!(e.reason.contains("never granted"), "{e}");
    }
}

#[test]
fn set_rules_duplicates_unknown_dependencies_and_cycles() {
    let mut ms = examples();
    ms[0].name = ms[2].name.clone();
    let e = validate_set(&ms).unwrap_err();
    assert_eq!((e.manifest.as_str(), e.field.as_str()), ("uplink", "name"));

    let mut ms = examples();
    ms[1].after[0] = Name::try_from("ghost").unwrap();
    let e = validate_set(&ms).unwrap_err();
    assert_eq!((e.manifest.as_str(), e.field.as_str()), ("collector", "after[0]"));
    assert!(e.reason.contains("ghost"));

    // sensor -> uplink -> collector -> sensor
    let mut ms = examples();
    ms[0].after.push(Name::try_from("uplink").unwrap()).unwrap();
    let e = validate_set(&ms).unwrap_err();
    assert_eq!(e.field, "after");
    assert!(e.reason.contains("dependency cycle: sensor -> uplink -> collector -> sensor"), "{e}");
}

#[test]
fn devices_are_checked_against_the_board() {
    let board_text = include_str!("../../../../board-configs/qemu-aarch64-virt.toml");
    let board = Board::from_toml(board_text).unwrap();
    let mut m = examples().remove(0);
    m.devices.push(DeviceGrant { node: "nosuch".try_into().unwrap(), access: "r".try_into().unwrap() }).unwrap();
    let e = m.check_devices(&board).unwrap_err();
    assert_eq!(e.field, "devices[0].node");
    if let Some(reserved) = board.hardware.iter().find(|n| n.reserved) {
        m.devices[0].node = reserved.name.as_str().try_into().unwrap();
        assert!(m.check_devices(&board).unwrap_err().reason.contains("reserved"));
    }
    let mut with_block = board.clone();
    if let Some(n) = with_block.hardware.first_mut() {
        n.kind = crate::release::board::NodeKind::Block;
        n.reserved = false;
        m.devices[0].node = n.name.as_str().try_into().unwrap();
        assert!(m.check_devices(&with_block).unwrap_err().reason.contains("block device"));
    }
    if let Some(free) = board.hardware.iter().find(|n| !n.reserved) {
        m.devices[0].node = free.name.as_str().try_into().unwrap();
        m.check_devices(&board).unwrap();
    }
    // A board that skipped validation (or an old compiled one) still
    // cannot hand out a never-granted class: by number, by path, or the
    // board's own watchdog.
    for (major, minor, path, words) in [(10, 200, "/dev/ttyX", "tun/tap"), (300, 0, "/dev/mtd3", "raw flash"), (251, 0, "/dev/watchdog0", "watchdog")] {
        let mut b = board.clone();
        let n = &mut b.hardware[0];
        (n.major, n.minor, n.path, n.reserved) = (major, minor, path.try_into().unwrap(), false);
        m.devices[0].node = n.name.as_str().try_into().unwrap();
        let e = m.check_devices(&b).unwrap_err();
        assert_eq!(e.field, "devices[0].node");
        assert!(e.reason.contains(words) && e.reason.contains("never granted"), "{e}");
    }
}
