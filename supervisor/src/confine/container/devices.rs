//! The container's `/dev`: which nodes exist, where they come from. It
//! must not plan a node the manifest was not granted.
//!
//! Inside a user namespace `mknod` is impossible, so every node is a host
//! node bind-mounted onto an empty file in the container's `/dev` tmpfs
//! (see [`super::mounts`]). The list is the six standard nodes plus the
//! hardware nodes the manifest is granted from the board table, at their
//! board path. Never planned, whatever the board or manifest says: a block
//! device, and every class of [`NEVER`] (memory and I/O ports, the kernel
//! log, raw flash, SCSI generic, uinput, loop-control, device-mapper,
//! tun, fuse, virtual consoles, the console, watchdogs and the board's
//! watchdog device), by number and by path ([`never_granted`]). The same
//! table refuses such a node when a board config is validated, when a
//! manifest is checked against its board, and once more on the device
//! before berth makes the node, against the kernel's own name for the
//! number ([`parse_uevent`], read from `/sys/dev/char/M:m/uevent` by
//! [`super::prepare`]). The access bits are for the cgroup device filter.
//!
//! The standard nodes are the host's own (`/dev/null` is `0666`). A granted
//! node is not: the host's is usually `0600 root`, and host root is not
//! mapped in the container's user namespace. Before the start, berth makes
//! the container its own node ([`super::prepare`]) at
//! [`store_path`] (`/run/berth/dev/<container>/<node>`, on a tmpfs mounted
//! without `nodev`), owned by the container's outside uid and gid, with the
//! mode its access asks for ([`node_mode`]: `r` 0400, `w` 0200, `rw` 0600),
//! and that node is what the container's `/dev` binds.

use crate::release::board::{Board, NodeKind};
use crate::release::manifest::{DeviceGrant, DEVICES_MAX};

use super::cstr::CPath;

/// cgroup device access bits (`BPF_DEVCG_ACC_*`).
pub const ACC_MKNOD: u8 = 1;
pub const ACC_READ: u8 = 2;
pub const ACC_WRITE: u8 = 4;

/// The standard nodes: name under `/dev`, major, minor. Read and write.
pub const STANDARD: [(&str, u32, u32); 6] = [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)];

/// Character devices never given to a container: mem, kmem, port, kmsg.
pub const FORBIDDEN: [(u32, u32); 4] = [(1, 1), (1, 2), (1, 4), (1, 11)];
/// The same by path.
pub const FORBIDDEN_PATHS: [&str; 4] = ["/dev/mem", "/dev/kmem", "/dev/port", "/dev/kmsg"];

pub use crate::release::board::never::{never_granted, Class, Pat, NEVER};

/// `MAJOR`, `MINOR` and `DEVNAME` of a device's sysfs `uevent`.
pub fn parse_uevent(text: &str) -> Option<(u32, u32, &str)> {
    let field = |key: &str| text.lines().find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')));
    let major = field("MAJOR")?.trim().parse().ok()?;
    let minor = field("MINOR")?.trim().parse().ok()?;
    let name = field("DEVNAME")?.trim();
    let plain = !name.is_empty() && name.split('/').all(|c| !c.is_empty() && c != "." && c != "..");
    plain.then_some((major, minor, name))
}

/// Where the kernel describes character device `major:minor`.
pub fn uevent_path(major: u32, minor: u32) -> std::string::String {
    format!("/sys/dev/char/{major}:{minor}/uevent")
}

/// The check on the device, right before berth makes a granted node: the
/// node's number and path are in no [`NEVER`] class, and neither is the
/// kernel's own name for that number (`uevent`, the text of
/// [`uevent_path`]; `None` when it could not be read). Fails closed: a
/// number the kernel does not describe is refused. The error says why.
pub fn check_on_device(major: u32, minor: u32, path: &str, uevent: Option<&str>) -> Result<(), std::string::String> {
    if let Some(what) = never_granted(major, minor, path, None) {
        return Err(format!("{path} {major}:{minor} is {what}: never granted"));
    }
    let Some(text) = uevent else {
        return Err(format!("{path} {major}:{minor}: the kernel has no such character device (no {})", uevent_path(major, minor)));
    };
    let Some((ma, mi, name)) = parse_uevent(text) else {
        return Err(format!("{path} {major}:{minor}: the kernel's description names no device"));
    };
    if (ma, mi) != (major, minor) {
        return Err(format!("{path} {major}:{minor}: the kernel describes {ma}:{mi} instead"));
    }
    let kernel = format!("/dev/{name}");
    match never_granted(ma, mi, &kernel, None) {
        Some(what) => Err(format!("{path} {major}:{minor} is the kernel's {kernel}, {what}: never granted")),
        None => Ok(()),
    }
}

/// Names berth itself places in the container's `/dev` (nodes, mounts,
/// symlinks): a granted node may not land on or under them.
pub const RESERVED_NAMES: [&str; 14] = ["null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "mqueue", "ptmx", "fd", "stdin", "stdout", "stderr"];

/// Where berth makes the containers' granted nodes: a tmpfs of its own,
/// mounted `nosuid,noexec` but not `nodev` (`/run` is `nodev`).
pub const STORE: &str = "/run/berth/dev";

/// The node made for `container`'s grant of board node `node`:
/// `/run/berth/dev/<container>/<node>`. `None` when a name is not a plain
/// path component.
pub fn store_path(container: &str, node: &str) -> Option<CPath> {
    let plain = |s: &str| !s.is_empty() && s != "." && s != ".." && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !plain(container) || !plain(node) {
        return None;
    }
    CPath::concat(&[STORE, "/", container, "/", node])
}

/// Permission bits of a granted node: 0600 for the container's own uid when
/// it is granted read or write at all. The file mode only keeps other uids
/// out; which of read and write is allowed is the cgroup device controller's
/// decision (a read-only grant cannot be opened for writing even though the
/// mode would allow it), and the node's bind is read-only so the mode cannot
/// be changed.
pub fn node_mode(access: u8) -> u32 {
    if access & (ACC_READ | ACC_WRITE) != 0 {
        0o600
    } else {
        0
    }
}

/// Most nodes in one container's `/dev`.
pub const NODES_MAX: usize = STANDARD.len() + DEVICES_MAX;

/// One node in the container's `/dev`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub major: u32,
    pub minor: u32,
    /// The host node bound onto the container's file: the host's own for a
    /// standard node, the one berth makes ([`store_path`]) for a grant.
    pub host: CPath,
    /// The path inside the container (`/dev/...`), equal to the host path.
    pub path: CPath,
    /// `ACC_*` bits for the cgroup filter.
    pub access: u8,
    /// From the manifest (not a standard node).
    pub granted: bool,
    /// Permission bits of the node berth makes for a grant ([`node_mode`]);
    /// 0 for a standard node (the host's is used as it is).
    pub mode: u32,
}

pub type Nodes = heapless::Vec<Node, NODES_MAX>;

/// Whether a node takes device ioctls in the container (Landlock's
/// `IOCTL_DEV`, per node): every standard node, and a granted node only when
/// it is granted `w`. A read-only grant is for reading: its driver's ioctls
/// (configuration, firmware, modes) are withheld.
pub fn takes_ioctls(n: &Node) -> bool {
    !n.granted || n.access & ACC_WRITE != 0
}

/// Parse `rwm` into `ACC_*` bits.
pub fn access_bits(s: &str) -> Option<u8> {
    let mut bits = 0u8;
    for b in s.bytes() {
        let bit = match b {
            b'r' => ACC_READ,
            b'w' => ACC_WRITE,
            b'm' => ACC_MKNOD,
            _ => return None,
        };
        if bits & bit != 0 {
            return None;
        }
        bits |= bit;
    }
    (bits != 0).then_some(bits)
}

/// A host node path `/dev/a[/b...]` without empty, `.` or `..` components.
fn valid_node_path(p: &str) -> bool {
    match p.strip_prefix("/dev/") {
        Some(rest) => !rest.is_empty() && rest.split('/').all(|c| !c.is_empty() && c != "." && c != "..") && p.bytes().all(|b| b.is_ascii_graphic()),
        None => false,
    }
}

/// Is `path` one of berth's own `/dev` entries, or below one?
fn collides(path: &str) -> bool {
    let first = path.strip_prefix("/dev/").and_then(|r| r.split('/').next()).unwrap_or("");
    RESERVED_NAMES.contains(&first)
}

/// The container's nodes, standard ones first, then the grants in manifest
/// order, each bound from the node berth makes for `container`. The error
/// names the grant (`devices[i].node`/`.access`) and why.
pub fn nodes(grants: &[DeviceGrant], board: &Board, container: &str) -> Result<Nodes, (std::string::String, std::string::String)> {
    let mut out = Nodes::new();
    for (name, major, minor) in STANDARD {
        let path = CPath::concat(&["/dev/", name]).ok_or(("devices".to_owned(), "path too long".to_owned()))?;
        let node = Node { major, minor, host: path.clone(), path, access: ACC_READ | ACC_WRITE, granted: false, mode: 0 };
        out.push(node).map_err(|_| ("devices".to_owned(), "too many nodes".to_owned()))?;
    }
    for (i, g) in grants.iter().enumerate() {
        let field = format!("devices[{i}].node");
        let e = |reason: std::string::String| (field.clone(), reason);
        let n = g.node.as_str();
        let Some(hw) = board.node(n) else {
            return Err(e(format!("board {} has no hardware node `{n}`", board.name)));
        };
        if hw.reserved {
            return Err(e(format!("`{n}` is reserved and never granted")));
        }
        if hw.kind == NodeKind::Block {
            return Err(e(format!("`{n}` is a block device: never granted to a container")));
        }
        let watchdog = board.watchdog.as_ref().map(|w| w.device.as_str());
        if let Some(what) = never_granted(hw.major, hw.minor, &hw.path, watchdog) {
            return Err(e(format!("`{n}` ({} {}:{}) is {what}: never granted to a container", hw.path, hw.major, hw.minor)));
        }
        if !valid_node_path(&hw.path) {
            return Err(e(format!("`{n}` has path `{}`, not a plain path under /dev/", hw.path)));
        }
        if collides(&hw.path) {
            return Err(e(format!("`{n}` at {} would replace one of berth's own /dev entries", hw.path)));
        }
        if out.iter().any(|o| o.path.as_str() == hw.path.as_str()) {
            return Err(e(format!("`{n}` at {} is granted twice", hw.path)));
        }
        let Some(access) = access_bits(&g.access) else {
            return Err((format!("devices[{i}].access"), "must be a combination of r, w and m".into()));
        };
        let path = CPath::new(&hw.path).ok_or_else(|| e("path too long".into()))?;
        let host = store_path(container, n).ok_or_else(|| e(format!("`{n}` cannot name a node under {STORE}")))?;
        let node = Node { major: hw.major, minor: hw.minor, host, path, access, granted: true, mode: node_mode(access) };
        out.push(node).map_err(|_| e("too many nodes".into()))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::board::HardwareNode;

    pub(crate) fn board() -> Board {
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
            ("mem-alias", NodeKind::Char, 1, 1, "/dev/phys", false),
            ("sg0", NodeKind::Char, 21, 0, "/dev/sg0", false),
            ("tun", NodeKind::Char, 10, 200, "/dev/net/tun", false),
            ("tty1", NodeKind::Char, 4, 1, "/dev/tty1", false),
            ("wd-alias", NodeKind::Char, 250, 0, "/dev/watchdog0", false),
            ("gpio0", NodeKind::Char, 254, 0, "/dev/gpio/chip0", false),
            ("nullish", NodeKind::Char, 4, 66, "/dev/null", false),
            ("ptsish", NodeKind::Char, 4, 67, "/dev/pts/9", false),
        ] {
            b.hardware.push(HardwareNode { name: name.try_into().unwrap(), kind, major, minor, path: path.try_into().unwrap(), reserved }).unwrap();
        }
        b
    }

    pub(crate) fn grant(node: &str, access: &str) -> DeviceGrant {
        DeviceGrant { node: node.try_into().unwrap(), access: access.try_into().unwrap() }
    }

    #[test]
    fn standard_nodes_only_by_default() {
        let n = nodes(&[], &board(), "c").unwrap();
        let got: Vec<(String, u32, u32)> = n.iter().map(|n| (n.path.to_string(), n.major, n.minor)).collect();
        assert_eq!(
            got,
            [
                ("/dev/null".into(), 1, 3),
                ("/dev/zero".into(), 1, 5),
                ("/dev/full".into(), 1, 7),
                ("/dev/random".into(), 1, 8),
                ("/dev/urandom".into(), 1, 9),
                ("/dev/tty".into(), 5, 0),
            ]
        );
        assert!(n.iter().all(|n| n.access == ACC_READ | ACC_WRITE && !n.granted && n.host == n.path && n.mode == 0));
    }

    #[test]
    fn granted_nodes_come_from_the_board() {
        let n = nodes(&[grant("serial1", "rw"), grant("gpio0", "r")], &board(), "web").unwrap();
        assert_eq!(n.len(), 8);
        let s = &n[6];
        assert_eq!((s.path.as_str(), s.host.as_str(), s.major, s.minor), ("/dev/ttyAMA1", "/run/berth/dev/web/serial1", 4, 65));
        assert_eq!((s.access, s.mode), (ACC_READ | ACC_WRITE, 0o600));
        assert!(s.granted);
        assert_eq!((n[7].path.as_str(), n[7].host.as_str(), n[7].access, n[7].mode), ("/dev/gpio/chip0", "/run/berth/dev/web/gpio0", ACC_READ, 0o600));
    }

    #[test]
    fn bad_grants_are_errors_naming_the_entry() {
        let b = board();
        for (node, words) in [
            ("nope", "has no hardware node `nope`"),
            ("watchdog", "reserved"),
            ("disk", "block device"),
            ("mem", "never granted"),
            ("kmsg", "never granted"),
            ("mem-alias", "never granted"),
            ("sg0", "SCSI generic"),
            ("tun", "tun/tap"),
            ("tty1", "virtual console"),
            ("wd-alias", "watchdog"),
            ("nullish", "berth's own"),
            ("ptsish", "berth's own"),
        ] {
            let e = nodes(&[grant("rng0", "r"), grant(node, "r")], &b, "c").unwrap_err();
            assert_eq!(e.0, "devices[1].node", "{node}");
            assert!(e.1.contains(words), "{node}: {}", e.1);
            assert!(e.1.contains(node), "the error names {node}: {}", e.1);
        }
        assert_eq!(nodes(&[grant("rng0", "x")], &b, "c").unwrap_err().0, "devices[0].access");
        assert_eq!(nodes(&[grant("rng0", "rr")], &b, "c").unwrap_err().0, "devices[0].access");
        assert_eq!(nodes(&[grant("rng0", "r"), grant("rng0", "w")], &b, "c").unwrap_err().0, "devices[1].node");
    }

    #[test]
    fn never_granted_classes_by_number_and_by_path() {
        let ok = [
            (4, 64, "/dev/ttyS0"),
            (4, 65, "/dev/ttyS1"),
            (204, 65, "/dev/ttyAMA1"),
            (10, 183, "/dev/hwrng"),
            (254, 0, "/dev/gpiochip0"),
            (89, 1, "/dev/i2c-1"),
            (153, 0, "/dev/spidev0.0"),
            (188, 0, "/dev/ttyUSB0"),
            (166, 0, "/dev/ttyACM0"),
        ];
        for (ma, mi, p) in ok {
            assert_eq!(never_granted(ma, mi, p, Some("/dev/watchdog0")), None, "{p}");
        }
        let never = [
            (1, 1, "/dev/x", "memory"),
            (1, 2, "/dev/x", "memory"),
            (1, 4, "/dev/x", "memory"),
            (1, 11, "/dev/x", "kernel log"),
            (90, 0, "/dev/x", "flash"),
            (90, 7, "/dev/x", "flash"),
            (300, 0, "/dev/mtd0", "flash"),
            (300, 0, "/dev/mtdblock2", "flash"),
            (300, 0, "/dev/ubi0", "flash"),
            (300, 0, "/dev/ubi_ctrl", "flash"),
            (21, 3, "/dev/x", "SCSI"),
            (300, 0, "/dev/sg12", "SCSI"),
            (300, 0, "/dev/bsg/0:0:0:0", "SCSI"),
            (10, 223, "/dev/x", "uinput"),
            (300, 0, "/dev/input/uinput", "uinput"),
            (10, 237, "/dev/x", "loop-control"),
            (10, 236, "/dev/x", "device-mapper"),
            (300, 0, "/dev/mapper/control", "device-mapper"),
            (300, 0, "/dev/dm-0", "device-mapper"),
            (10, 200, "/dev/x", "tun"),
            (300, 0, "/dev/net/tun", "tun"),
            (10, 229, "/dev/x", "fuse"),
            (10, 203, "/dev/cuse", "fuse"),
            (4, 0, "/dev/x", "virtual console"),
            (4, 63, "/dev/x", "virtual console"),
            (300, 0, "/dev/tty7", "virtual console"),
            (7, 1, "/dev/x", "virtual console"),
            (300, 0, "/dev/vcsa1", "virtual console"),
            (5, 1, "/dev/x", "the console"),
            (300, 0, "/dev/console", "the console"),
            (10, 130, "/dev/x", "watchdog"),
            (250, 0, "/dev/watchdog1", "watchdog"),
            (250, 0, "/dev/wdt", "the board's watchdog"),
        ];
        for (ma, mi, p, words) in never {
            let what = never_granted(ma, mi, p, Some("/dev/wdt")).unwrap_or_else(|| panic!("{ma}:{mi} {p} granted"));
            assert!(what.contains(words), "{ma}:{mi} {p}: {what}");
        }
        // The serial ports share major 4 with the virtual consoles.
        assert_eq!(never_granted(4, 64, "/dev/x", None), None);
        assert!(Pat::Numbered("/dev/tty").matches("/dev/tty0"));
        assert!(!Pat::Numbered("/dev/tty").matches("/dev/ttyS0"));
        assert!(!Pat::Numbered("/dev/tty").matches("/dev/tty"));
        for (ma, mi) in FORBIDDEN {
            assert!(never_granted(ma, mi, "/dev/x", None).is_some());
        }
        for p in FORBIDDEN_PATHS {
            assert!(never_granted(300, 0, p, None).is_some());
        }
    }

    #[test]
    fn the_device_check_asks_the_kernels_name() {
        let ok = "MAJOR=10\nMINOR=183\nDEVNAME=hwrng\n";
        assert_eq!(check_on_device(10, 183, "/dev/hwrng", Some(ok)), Ok(()));
        // A board that calls the watchdog (dynamic major) something else.
        let wd = "MAJOR=249\nMINOR=0\nDEVNAME=watchdog0\n";
        let e = check_on_device(249, 0, "/dev/sensor", Some(wd)).unwrap_err();
        assert!(e.contains("/dev/watchdog0") && e.contains("watchdog") && e.contains("never granted"), "{e}");
        let ubi = "MAJOR=246\nMINOR=0\nDEVNAME=ubi0\n";
        assert!(check_on_device(246, 0, "/dev/flash", Some(ubi)).unwrap_err().contains("raw flash"));
        // Fail closed: no description, no node.
        let e = check_on_device(10, 183, "/dev/hwrng", None).unwrap_err();
        assert!(e.contains("/sys/dev/char/10:183/uevent"), "{e}");
        assert!(check_on_device(10, 183, "/dev/hwrng", Some("MAJOR=10\n")).is_err());
        assert!(check_on_device(10, 183, "/dev/hwrng", Some("MAJOR=10\nMINOR=184\nDEVNAME=x\n")).is_err());
        // The table itself, before any read.
        assert!(check_on_device(10, 200, "/dev/hwrng", Some(ok)).unwrap_err().contains("tun"));
        assert!(check_on_device(10, 183, "/dev/console", Some(ok)).unwrap_err().contains("console"));
    }

    #[test]
    fn uevents_name_the_device() {
        let t = "MAJOR=4\nMINOR=65\nDEVNAME=ttyS1\n";
        assert_eq!(parse_uevent(t), Some((4, 65, "ttyS1")));
        assert_eq!(parse_uevent("MAJOR=10\nMINOR=200\nDEVNAME=net/tun\nDEVMODE=0666\n"), Some((10, 200, "net/tun")));
        for bad in [
            "MAJOR=4\nMINOR=65\n",
            "MINOR=65\nDEVNAME=x\n",
            "MAJOR=x\nMINOR=1\nDEVNAME=y\n",
            "MAJOR=1\nMINOR=1\nDEVNAME=../mem\n",
            "MAJOR=1\nMINOR=1\nDEVNAME=\n",
        ] {
            assert_eq!(parse_uevent(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn grant_modes_follow_access() {
        for (access, mode) in [("r", 0o600), ("w", 0o600), ("rw", 0o600), ("wr", 0o600), ("rwm", 0o600), ("rm", 0o600), ("m", 0)] {
            assert_eq!(node_mode(access_bits(access).unwrap()), mode, "{access}");
        }
    }

    #[test]
    fn store_paths_are_plain() {
        assert_eq!(store_path("probe", "rng0").unwrap().as_str(), "/run/berth/dev/probe/rng0");
        for (c, n) in [("", "rng0"), ("probe", ""), ("..", "rng0"), ("probe", ".."), ("a/b", "rng0"), ("probe", "x/y")] {
            assert!(store_path(c, n).is_none(), "{c:?} {n:?}");
        }
    }

    #[test]
    fn access_strings() {
        assert_eq!(access_bits("rwm"), Some(7));
        assert_eq!(access_bits("w"), Some(ACC_WRITE));
        assert_eq!(access_bits(""), None);
        assert_eq!(access_bits("rwx"), None);
    }
}
