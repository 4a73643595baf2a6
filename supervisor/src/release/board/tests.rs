//! Board config parsing, checks and postcard round trips: unit tests (moved out of `board.rs`).

use super::*;

const GOOD: &str = r#"
name = "qemu-aarch64-virt"
arch = "aarch64"
hostname = "gateway"
console = "ttyAMA0"
modules = ["virtio_blk", "squashfs"]

[kernel]
flavour = "cloud-arm64"
cmdline = "loglevel=4"

[storage]
system = { device = "/dev/vda", fstype = "squashfs" }
data = { device = "/dev/vdb", fstype = "ext4" }

[qemu]
binary = "qemu-system-aarch64"
machine = "virt"
cpu = "cortex-a57"
memory_mib = 256
block_device = "virtio-blk-pci"
net_device = "virtio-net-pci"

[[hardware]]
name = "serial1"
kind = "char"
major = 4
minor = 65
path = "/dev/ttyAMA1"
"#;

fn with(old: &str, new: &str) -> String<4096> {
    assert!(GOOD.contains(old), "fixture lacks {old}");
    let mut s = String::new();
    s.push_str(&GOOD.replacen(old, new, 1)).unwrap();
    s
}

#[test]
fn good_config_parses_with_defaults() {
    let b = Board::from_toml(GOOD).unwrap();
    assert_eq!(b.arch, Arch::Aarch64);
    assert_eq!(b.cgroup, CgroupMode::V2);
    assert_eq!(b.shutdown_grace_ms, 5_000);
    assert_eq!(b.storage.system.fstype, FsType::Squashfs);
    assert_eq!(b.node("serial1").map(|n| n.minor), Some(65));
    assert!(b.node("gpio0").is_none());
    assert_eq!(b.landlock, LandlockMode::Required);
    assert_eq!(b.apparmor, None);
}

#[test]
fn landlock_and_apparmor_fields() {
    let b = Board::from_toml(&with("modules = [", "landlock = \"optional\"\nmodules = [")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(b.landlock, LandlockMode::Optional);
    assert!(Board::from_toml(&with("modules = [", "landlock = \"maybe\"\nmodules = [")).is_err());
    let aa = "\n[apparmor]\nprofile = \"berth-container\"\npolicy = \"/etc/berth/apparmor/berth.bin\"\n[qemu]";
    let b = Board::from_toml(&with("\n[qemu]", aa)).unwrap();
    let a = b.apparmor.clone().unwrap();
    assert_eq!((a.profile.as_str(), a.policy.as_str()), ("berth-container", "/etc/berth/apparmor/berth.bin"));
    assert_eq!(Board::from_postcard(&b.to_postcard().unwrap()).unwrap(), b);
    for (old, new, field) in [
        ("\"berth-container\"", "\"two words\"", "apparmor.profile"),
        ("\"berth-container\"", "\"\"", "apparmor.profile"),
        ("\"/etc/berth/apparmor/berth.bin\"", "\"etc/x.bin\"", "apparmor.policy"),
        ("\"/etc/berth/apparmor/berth.bin\"", "\"/etc/../x.bin\"", "apparmor.policy"),
    ] {
        let text = with("\n[qemu]", &aa.replacen(old, new, 1));
        let e = Board::from_toml(&text).unwrap_err();
        assert_eq!(e.field, field, "{new}: {e}");
    }
}

#[test]
fn postcard_round_trip() {
    let b = Board::from_toml(GOOD).unwrap();
    let bytes = b.to_postcard().unwrap();
    assert_eq!(Board::from_postcard(&bytes).unwrap(), b);
    for n in 0..bytes.len() {
        assert!(Board::from_postcard(&bytes[..n]).is_err(), "truncated at {n} decoded");
    }
}

#[test]
fn unknown_field_is_named() {
    let e = Board::from_toml(&with("hostname = \"gateway\"", "hostname = \"gateway\"\nhostnmae = \"x\"")).unwrap_err();
    assert_eq!(e.field, "hostnmae");
    assert!(e.reason.contains("unknown field"), "{e}");
    let e = Board::from_toml(&with("cpu = \"cortex-a57\"", "cpu = \"cortex-a57\"\nsmp = 2")).unwrap_err();
    assert_eq!(e.field, "smp");
}

#[test]
fn missing_field_is_named() {
    let e = Board::from_toml(&with("hostname = \"gateway\"\n", "")).unwrap_err();
    assert_eq!(e.field, "hostname");
}

#[test]
fn bad_values_are_named() {
    let cases: &[(&str, &str, &str)] = &[
        ("hostname = \"gateway\"", "hostname = \"bad host\"", "hostname"),
        ("console = \"ttyAMA0\"", "console = \"/dev/ttyAMA0\"", "console"),
        ("\"squashfs\"]", "\"squash fs\"]", "modules[1]"),
        ("\"squashfs\"]", "\"virtio_blk\"]", "modules[1]"),
        ("cmdline = \"loglevel=4\"", "cmdline = \"console=ttyS0\"", "kernel.cmdline"),
        ("device = \"/dev/vda\"", "device = \"vda\"", "storage.system.device"),
        ("device = \"/dev/vdb\"", "device = \"/dev/vda\"", "storage.data.device"),
        ("fstype = \"ext4\"", "fstype = \"squashfs\"", "storage.data.fstype"),
        ("fstype = \"squashfs\" }", "fstype = \"ext4\" }", "storage.system.fstype"),
        ("memory_mib = 256", "memory_mib = 16", "qemu.memory_mib"),
        ("machine = \"virt\"", "machine = \"\"", "qemu.machine"),
        ("major = 4", "major = 0", "hardware[0].major"),
        ("minor = 65", "minor = 2000000", "hardware[0].minor"),
        ("path = \"/dev/ttyAMA1\"", "path = \"/dev/../mem\"", "hardware[0].path"),
    ];
    for (old, new, field) in cases {
        let e = Board::from_toml(&with(old, new)).unwrap_err();
        assert_eq!(&e.field, field, "{old} -> {new}: {e}");
    }
}

const SERVICES: &str = r#"
[[service]]
name = "net"
argv = ["/sbin/berth", "net"]

[[service]]
name = "agent-2"
argv = ["/usr/bin/agent"]
restart = "always"
backoff = { initial_ms = 50, limit = 10 }

[[network]]
interface = "eth0"
address = "10.0.2.15/24"
gateway = "10.0.2.2"
"#;

fn with_services(old: &str, new: &str) -> std::string::String {
    assert!(SERVICES.contains(old), "fixture lacks {old}");
    format!("{GOOD}{}", SERVICES.replacen(old, new, 1))
}

#[test]
fn services_and_networks_parse() {
    let b = Board::from_toml(&with_services("", "")).unwrap();
    assert_eq!(b.services.len(), 2);
    assert_eq!(b.services[0].restart, crate::release::manifest::Restart::OnFailure);
    assert_eq!(b.services[1].restart, crate::release::manifest::Restart::Always);
    assert_eq!(b.services[1].backoff.and_then(|b| b.limit), Some(10));
    let n = &b.networks[0];
    assert_eq!(n.cidr(), Some(Cidr { addr: [10, 0, 2, 15], prefix: 24 }));
    assert_eq!(n.gateway_ip(), Some([10, 0, 2, 2]));
    assert_eq!(Board::from_postcard(&b.to_postcard().unwrap()).unwrap(), b);
}

#[test]
fn dhcp_networks() {
    let dhcp = with_services("address = \"10.0.2.15/24\"\ngateway = \"10.0.2.2\"", "dhcp = true");
    let b = Board::from_toml(&dhcp).unwrap();
    assert!(b.networks[0].dhcp);
    assert_eq!(b.networks[0].cidr(), None);
    assert_eq!(Board::from_postcard(&b.to_postcard().unwrap()).unwrap(), b);
    // A static interface without a gateway next to a DHCP one.
    let mixed = format!("{dhcp}\n[[network]]\ninterface = \"eth1\"\naddress = \"192.168.7.1/24\"\n");
    let b = Board::from_toml(&mixed).unwrap();
    assert_eq!((b.networks[0].dhcp, b.networks[1].dhcp), (true, false));
    // Two sources of the default route.
    for second in ["dhcp = true", "address = \"192.168.7.1/24\"\ngateway = \"192.168.7.2\""] {
        let e = Board::from_toml(&format!("{dhcp}\n[[network]]\ninterface = \"eth1\"\n{second}\n")).unwrap_err();
        assert_eq!(e.field, "network", "{e}");
    }
}

#[test]
fn bad_services_and_networks_are_named() {
    let cases: &[(&str, &str, &str)] = &[
        ("name = \"net\"", "name = \"Net\"", "service[0].name"),
        ("name = \"agent-2\"", "name = \"net\"", "service[1].name"),
        ("argv = [\"/sbin/berth\", \"net\"]", "argv = []", "service[0].argv"),
        ("argv = [\"/sbin/berth\", \"net\"]", "argv = [\"berth\"]", "service[0].argv[0]"),
        ("argv = [\"/sbin/berth\", \"net\"]", "argv = [\"/sbin/../bin/sh\"]", "service[0].argv[0]"),
        ("limit = 10", "limit = 0", "service[1].backoff.limit"),
        ("initial_ms = 50", "initial_ms = 5", "service[1].backoff.initial_ms"),
        ("restart = \"always\"", "restart = \"sometimes\"", "?"),
        ("interface = \"eth0\"", "interface = \"\"", "network[0].interface"),
        ("interface = \"eth0\"", "interface = \"a/b\"", "network[0].interface"),
        ("address = \"10.0.2.15/24\"", "address = \"10.0.2.15\"", "network[0].address"),
        ("address = \"10.0.2.15/24\"", "address = \"10.0.2.256/24\"", "network[0].address"),
        ("address = \"10.0.2.15/24\"", "address = \"10.0.2.15/33\"", "network[0].address"),
        ("address = \"10.0.2.15/24\"", "dhcp = true", "network[0].gateway"),
        ("address = \"10.0.2.15/24\"", "address = \"10.0.2.15/24\"\ndhcp = true", "network[0].address"),
        ("address = \"10.0.2.15/24\"\ngateway = \"10.0.2.2\"", "", "network[0].address"),
        ("gateway = \"10.0.2.2\"", "gateway = \"10.0.3.2\"", "network[0].gateway"),
        ("gateway = \"10.0.2.2\"", "gateway = \"10.0.2.15\"", "network[0].gateway"),
        ("gateway = \"10.0.2.2\"", "gateway = \"10.0.02.2\"", "network[0].gateway"),
    ];
    for (old, new, field) in cases {
        let e = Board::from_toml(&with_services(old, new)).unwrap_err();
        assert_eq!(&e.field, field, "{old} -> {new}: {e}");
    }
    let nine: std::string::String = (0..=SERVICES_MAX).map(|i| format!("[[service]]\nname = \"s{i}\"\nargv = [\"/x\"]\n")).collect();
    assert!(Board::from_toml(&format!("{GOOD}{nine}")).is_err());
    let long = format!("{GOOD}[[service]]\nname = \"{}\"\nargv = [\"/x\"]\n", "a".repeat(SERVICE_NAME_MAX + 1));
    assert!(Board::from_toml(&long).is_err());
    let long_if = with_services("interface = \"eth0\"", "interface = \"abcdefghijklmnop\"");
    assert!(Board::from_toml(&long_if).is_err());
}

#[test]
fn cidr_arithmetic() {
    let c = parse_cidr("192.168.1.10/20").unwrap();
    assert_eq!(c.netmask(), [255, 255, 240, 0]);
    assert!(c.contains([192, 168, 15, 1]));
    assert!(!c.contains([192, 168, 16, 1]));
    assert_eq!(parse_cidr("1.2.3.4/32").unwrap().netmask(), [255; 4]);
    assert_eq!(parse_cidr("1.2.3.4/1").unwrap().netmask(), [128, 0, 0, 0]);
    for bad in ["1.2.3.4/0", "1.2.3/8", "1.2.3.4.5/8", "1.2.3.4/", "/8", "a.b.c.d/8", "1.2.3.4/x", "+1.2.3.4/8"] {
        assert_eq!(parse_cidr(bad), None, "{bad}");
    }
}

#[test]
fn hardening_defaults_are_secure_and_checked() {
    let b = Board::from_toml(GOOD).unwrap();
    let h = b.hardening;
    assert_eq!(h, Hardening::default());
    assert_eq!((h.kptr_restrict, h.suid_dumpable, h.protected_fifos, h.protected_regular, h.memfd_noexec), (2, 0, 2, 2, 2));
    assert!(h.dmesg_restrict && h.protected_symlinks && h.protected_hardlinks && h.modules_disabled);
    let text = format!("{GOOD}\n[hardening]\nmodules_disabled = false\nkptr_restrict = 1\n");
    let b = Board::from_toml(&text).unwrap();
    assert!(!b.hardening.modules_disabled);
    assert_eq!(b.hardening.kptr_restrict, 1);
    assert_eq!(b.hardening.memfd_noexec, 2, "the rest keep their defaults");
    assert_eq!(Board::from_postcard(&b.to_postcard().unwrap()).unwrap(), b);
    for (line, field) in [
        ("kptr_restrict = 3", "hardening.kptr_restrict"),
        ("protected_fifos = 9", "hardening.protected_fifos"),
        ("protected_regular = 3", "hardening.protected_regular"),
        ("memfd_noexec = 3", "hardening.memfd_noexec"),
        ("suid_dumpable = 1", "hardening.suid_dumpable"),
        ("suid_dumpable = 5", "hardening.suid_dumpable"),
        ("kptr_restric = 2", "kptr_restric"),
    ] {
        let e = Board::from_toml(&format!("{GOOD}\n[hardening]\n{line}\n")).unwrap_err();
        assert_eq!(e.field, field, "{line}: {e}");
    }
    assert!(Board::from_toml(&format!("{GOOD}\n[hardening]\ndmesg_restrict = 1\n")).is_err());
}

#[test]
fn never_granted_hardware_must_be_reserved() {
    let node = |name: &str, major: u32, minor: u32, path: &str| {
        format!("{GOOD}\n[[hardware]]\nname = \"{name}\"\nkind = \"char\"\nmajor = {major}\nminor = {minor}\npath = \"{path}\"\n")
    };
    for (name, major, minor, path, words) in [
        ("flash", 90, 0, "/dev/mtd0", "raw flash"),
        ("sg", 21, 0, "/dev/sg0", "SCSI generic"),
        ("uinput", 10, 223, "/dev/uinput", "uinput"),
        ("loopctl", 10, 237, "/dev/loop-control", "loop-control"),
        ("dm", 10, 236, "/dev/mapper/control", "device-mapper"),
        ("tun", 10, 200, "/dev/net/tun", "tun"),
        ("fuse", 10, 229, "/dev/fuse", "fuse"),
        ("vt1", 4, 1, "/dev/tty1", "virtual console"),
        ("console", 5, 1, "/dev/console", "the console"),
        ("wd", 10, 130, "/dev/watchdog", "watchdog"),
        ("wd0", 249, 0, "/dev/watchdog0", "watchdog"),
        // Right numbers, another name: still refused by number.
        ("sneaky", 10, 200, "/dev/notatun", "tun"),
    ] {
        let e = Board::from_toml(&node(name, major, minor, path)).unwrap_err();
        assert_eq!(e.field, "hardware[1].reserved", "{name}: {e}");
        assert!(e.reason.contains(words) && e.reason.contains(name), "{name}: {e}");
        // Marked reserved, the board may describe it.
        let reserved = format!("{}reserved = true\n", node(name, major, minor, path));
        Board::from_toml(&reserved).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // The board's own watchdog device, wherever it is.
    let wd = with("\n[qemu]", "\n[watchdog]\ndevice = \"/dev/wdt\"\ntimeout_s = 10\n[qemu]");
    let e = Board::from_toml(&format!("{wd}\n[[hardware]]\nname = \"w\"\nkind = \"char\"\nmajor = 250\nminor = 0\npath = \"/dev/wdt\"\n")).unwrap_err();
    assert!(e.reason.contains("the board's watchdog"), "{e}");
    // A serial port next to the virtual consoles' major is fine.
    Board::from_toml(&node("serial2", 4, 66, "/dev/ttyS2")).unwrap();
}

#[test]
fn wrong_type_and_enum_are_rejected() {
    assert!(Board::from_toml(&with("arch = \"aarch64\"", "arch = \"mips\"")).is_err());
    assert!(Board::from_toml(&with("memory_mib = 256", "memory_mib = \"lots\"")).is_err());
}

#[test]
fn over_capacity_is_rejected() {
    let many: std::vec::Vec<std::string::String> = (0..=MODULES_MAX).map(|i| format!("\"m{i}\"")).collect();
    let text = GOOD.replacen("[\"virtio_blk\", \"squashfs\"]", &format!("[{}]", many.join(",")), 1);
    assert!(Board::from_toml(&text).is_err());
}

#[test]
fn shipped_board_configs_are_valid() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../board-configs");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let b = Board::from_toml(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(Some(b.name.as_str()), path.file_stem().and_then(|s| s.to_str()));
        // A shipped console carries berth's events, not container output.
        assert!(!b.container_log_console, "{}", path.display());
        seen += 1;
    }
    assert!(seen >= 3);
}

#[test]
fn bootloader_table() {
    assert_eq!(Board::from_toml(GOOD).unwrap().bootloader, None);
    let t = |table: &str| Board::from_toml(&with("\n[qemu]", &format!("\n[bootloader]\n{table}\n[qemu]")));
    let b = t("kind = \"grub\"\nenv_device = \"PARTLABEL=berth-esp\"\nenv_path = \"/EFI/BOOT/grubenv\"").unwrap();
    let l = b.bootloader.clone().unwrap();
    assert_eq!((l.kind, l.env_device.as_str(), l.env_path.as_str()), (bootloader::Kind::Grub, "PARTLABEL=berth-esp", "/EFI/BOOT/grubenv"));
    assert_eq!(Board::from_postcard(&b.to_postcard().unwrap()).unwrap(), b);
    let e = t("kind = \"grub\"\nenv_device = \"PARTLABEL=berth-esp\"\nenv_path = \"EFI/../grubenv\"").unwrap_err();
    assert_eq!(e.field, "bootloader.env_path");
    let e = t("kind = \"grub\"\nenv_device = \"berth-esp\"\nenv_path = \"/grubenv\"").unwrap_err();
    assert_eq!(e.field, "bootloader.env_device");
    assert_eq!(t("kind = \"uboot\"\nenv_device = \"/dev/mtdblock1\"\nenv_path = \"/env\"").unwrap_err().field, "bootloader.env_device");
    assert_eq!(t("kind = \"grub\"\nenv_device = \"/dev/vda1\"\nenv_path = \"/e\"\nenv_size = 4096").unwrap_err().field, "bootloader.env_addr");
}

#[test]
fn uboot_bootloader_table() {
    let t = |table: &str| Board::from_toml(&with("\n[qemu]", &format!("\n[bootloader]\nkind = \"uboot\"\n{table}\n[qemu]")));
    let b = t("env_addr = 0x4000000\nenv_size = 0x40000\nenv_sector = 0x40000").unwrap();
    let l = b.bootloader.clone().unwrap();
    assert_eq!((l.kind, l.env_addr, l.env_size, l.env_sector), (bootloader::Kind::Uboot, 0x400_0000, 0x4_0000, 0x4_0000));
    assert_eq!(Board::from_postcard(&b.to_postcard().unwrap()).unwrap(), b);
    assert!(t("env_addr = 0x4000000\nenv_size = 0x2000\nenv_sector = 0x40000").is_ok());
    let field = |table: &str| t(table).unwrap_err().field;
    assert_eq!(field("env_addr = 0x4000000\nenv_size = 0x30000\nenv_sector = 0x40000"), "bootloader.env_size");
    assert_eq!(field("env_addr = 0x4000000\nenv_size = 0x800\nenv_sector = 0x40000"), "bootloader.env_size");
    assert_eq!(field("env_addr = 0x4000000\nenv_size = 0x40000\nenv_sector = 0x20000"), "bootloader.env_sector");
    assert_eq!(field("env_addr = 0x4000000\nenv_size = 0x40000\nenv_sector = 0x200000"), "bootloader.env_sector");
    assert_eq!(field("env_addr = 0x4010000\nenv_size = 0x10000\nenv_sector = 0x40000"), "bootloader.env_addr");
    assert_eq!(field("env_size = 0x10000\nenv_sector = 0x40000"), "bootloader.env_addr");
}

#[test]
fn system_verity() {
    let h = "ab".repeat(32);
    let t = |v: &str| {
        Board::from_toml(&with(
            "system = { device = \"/dev/vda\", fstype = \"squashfs\" }",
            &format!("system = {{ device = \"/dev/vda\", fstype = \"squashfs\", verity = {v} }}"),
        ))
    };
    let b = t(&format!("{{ size = {}, root = \"{h}\", salt = \"{h}\" }}", 4096 * 4)).unwrap();
    let img = b.storage.system.verity.as_ref().and_then(|v| v.image()).unwrap();
    // Three data blocks and their one hash block.
    assert_eq!((img.size, img.verity_root), (16384, [0xab; 32]));
    assert_eq!(t(&format!("{{ size = 4097, root = \"{h}\", salt = \"{h}\" }}")).unwrap_err().field, "storage.system.verity.size");
    assert_eq!(t(&format!("{{ size = 16384, root = \"{}\", salt = \"{h}\" }}", "g".repeat(64))).unwrap_err().field, "storage.system.verity");
    let data = with(
        "data = { device = \"/dev/vdb\", fstype = \"ext4\" }",
        &format!("data = {{ device = \"/dev/vdb\", fstype = \"ext4\", verity = {{ size = 8192, root = \"{h}\", salt = \"{h}\" }} }}"),
    );
    assert_eq!(Board::from_toml(&data).unwrap_err().field, "storage.data.verity");
}
