//! The socket families a manifest may name in `socket_families`: the
//! table of names and numbers ([`FAMILIES`]), how each may be had
//! ([`Grant`]) and why a name is refused ([`family_refusal`]).
//!
//! It only names families and says which may be granted: it must not build
//! or install a filter (confine's `seccomp::args` turns the granted
//! numbers into the socket family allow-list, re-exporting this table).

/// Socket families with special treatment.
pub const AF_UNIX: u32 = 1;
pub const AF_INET: u32 = 2;
pub const AF_INET6: u32 = 10;
pub const AF_NETLINK: u32 = 16;
pub const AF_PACKET: u32 = 17;
pub const AF_ALG: u32 = 38;
pub const AF_VSOCK: u32 = 40;

/// How a socket family may be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// Every container.
    Default,
    /// With `CAP_NET_RAW` granted, never by name.
    NetRaw,
    /// By name, in the manifest's `socket_families`.
    ByName,
    /// Never, and why.
    Never(&'static str),
}

/// The socket families berth knows by name.
pub const FAMILIES: &[(&str, u32, Grant)] = &[
    ("unix", AF_UNIX, Grant::Default),
    ("inet", AF_INET, Grant::Default),
    ("inet6", AF_INET6, Grant::Default),
    ("netlink", AF_NETLINK, Grant::Default),
    ("packet", AF_PACKET, Grant::NetRaw),
    ("ax25", 3, Grant::ByName),
    ("appletalk", 5, Grant::ByName),
    ("netrom", 6, Grant::ByName),
    ("atmpvc", 8, Grant::ByName),
    ("x25", 9, Grant::ByName),
    ("rose", 11, Grant::ByName),
    ("key", 15, Grant::Never("manages the kernel's IPsec keys, which are shared with the host")),
    ("atmsvc", 20, Grant::ByName),
    ("rds", 21, Grant::ByName),
    ("pppox", 24, Grant::ByName),
    ("llc", 26, Grant::ByName),
    ("ib", 27, Grant::ByName),
    ("mpls", 28, Grant::ByName),
    ("can", 29, Grant::ByName),
    ("tipc", 30, Grant::ByName),
    ("bluetooth", 31, Grant::ByName),
    ("rxrpc", 33, Grant::ByName),
    ("isdn", 34, Grant::ByName),
    ("phonet", 35, Grant::ByName),
    ("ieee802154", 36, Grant::ByName),
    ("caif", 37, Grant::ByName),
    ("alg", AF_ALG, Grant::Never("exposes the kernel's crypto code, a long source of kernel bugs")),
    ("nfc", 39, Grant::ByName),
    ("vsock", AF_VSOCK, Grant::Never("reaches the hypervisor or host outside the device's network")),
    ("kcm", 41, Grant::ByName),
    ("qipcrtr", 42, Grant::ByName),
    ("smc", 43, Grant::ByName),
    ("xdp", 44, Grant::ByName),
    ("mctp", 45, Grant::ByName),
];

/// Longest family name (`ieee802154`).
pub const FAMILY_NAME_MAX: usize = 12;

/// A family by name: its number and how it may be had.
pub fn family(name: &str) -> Option<(u32, Grant)> {
    FAMILIES.iter().find(|(n, _, _)| *n == name).map(|(_, nr, g)| (*nr, *g))
}

/// Why `name` may not be listed in `socket_families`, if it may not.
pub fn family_refusal(name: &str) -> Option<&'static str> {
    match family(name) {
        None => Some("is not a socket family berth knows (unix, inet, can, bluetooth, ...)"),
        Some((_, Grant::Default)) => Some("is allowed to every container already"),
        Some((_, Grant::NetRaw)) => Some("comes with CAP_NET_RAW in `capabilities`, never by name"),
        Some((_, Grant::Never(why))) => Some(why),
        Some((_, Grant::ByName)) => None,
    }
}
