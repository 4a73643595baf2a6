//! The classes of character device no container is ever given, by number
//! and by path ([`NEVER`], [`never_granted`]): the vocabulary a board
//! config and a manifest are checked against, and that confine checks once
//! more on the device before it makes a node.
//!
//! It only names and matches devices: it must not read `/dev` or sysfs, nor
//! make or bind a node (confine's `container::devices` and
//! `container::prepare` do, with this same table).

/// Largest minor number (20 bits).
const MINOR_MAX: u32 = (1 << 20) - 1;

/// How a class's node paths look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pat {
    /// This path.
    Exact(&'static str),
    /// This path and anything longer that starts with it.
    Prefix(&'static str),
    /// This path followed by a decimal number (`/dev/tty` + `0`..).
    Numbered(&'static str),
}

impl Pat {
    pub fn matches(self, path: &str) -> bool {
        match self {
            Pat::Exact(p) => path == p,
            Pat::Prefix(p) => path.starts_with(p),
            Pat::Numbered(p) => path.strip_prefix(p).is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())),
        }
    }
}

/// A class of character device never given to a container.
#[derive(Debug, Clone, Copy)]
pub struct Class {
    /// What it is, for errors.
    pub what: &'static str,
    /// `(major, first minor, last minor)`.
    pub numbers: &'static [(u32, u32, u32)],
    pub paths: &'static [Pat],
}

/// Every class of device no container is ever given: each would let it
/// act on the host (its memory, kernel log, flash, disks, input, block
/// devices, network, filesystems, consoles) or reset the board.
pub const NEVER: &[Class] = &[
    Class {
        what: "physical memory or I/O ports",
        numbers: &[(1, 1, 2), (1, 4, 4)],
        paths: &[Pat::Exact("/dev/mem"), Pat::Exact("/dev/kmem"), Pat::Exact("/dev/port")],
    },
    Class { what: "the kernel log", numbers: &[(1, 11, 11)], paths: &[Pat::Exact("/dev/kmsg")] },
    Class { what: "raw flash (MTD or UBI)", numbers: &[(90, 0, MINOR_MAX), (31, 0, MINOR_MAX)], paths: &[Pat::Prefix("/dev/mtd"), Pat::Prefix("/dev/ubi")] },
    Class { what: "SCSI generic", numbers: &[(21, 0, MINOR_MAX)], paths: &[Pat::Numbered("/dev/sg"), Pat::Prefix("/dev/bsg/")] },
    Class { what: "uinput (injects input events)", numbers: &[(10, 223, 223)], paths: &[Pat::Exact("/dev/uinput"), Pat::Exact("/dev/input/uinput")] },
    Class { what: "loop-control", numbers: &[(10, 237, 237)], paths: &[Pat::Exact("/dev/loop-control")] },
    Class { what: "device-mapper", numbers: &[(10, 236, 236)], paths: &[Pat::Prefix("/dev/mapper/"), Pat::Prefix("/dev/dm-")] },
    Class { what: "tun/tap", numbers: &[(10, 200, 200)], paths: &[Pat::Exact("/dev/net/tun")] },
    Class { what: "fuse", numbers: &[(10, 229, 229), (10, 203, 203)], paths: &[Pat::Exact("/dev/fuse"), Pat::Exact("/dev/cuse")] },
    Class { what: "a virtual console", numbers: &[(4, 0, 63), (7, 0, MINOR_MAX)], paths: &[Pat::Numbered("/dev/tty"), Pat::Prefix("/dev/vcs")] },
    Class { what: "the console", numbers: &[(5, 1, 1)], paths: &[Pat::Exact("/dev/console")] },
    Class { what: "a watchdog", numbers: &[(10, 130, 130)], paths: &[Pat::Prefix("/dev/watchdog")] },
];

/// The class a character device (by number, or by path) belongs to when it
/// is never granted; `watchdog` is the board's watchdog device, if any.
pub fn never_granted(major: u32, minor: u32, path: &str, watchdog: Option<&str>) -> Option<&'static str> {
    if watchdog == Some(path) {
        return Some("the board's watchdog");
    }
    NEVER
        .iter()
        .find(|c| c.numbers.iter().any(|&(ma, lo, hi)| ma == major && (lo..=hi).contains(&minor)) || c.paths.iter().any(|p| p.matches(path)))
        .map(|c| c.what)
}
