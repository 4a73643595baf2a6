//! The board's `[[network]]` entries (a static IPv4 address or DHCP per
//! interface) and the IPv4 address and prefix parsing they use.
//!
//! It only parses and declares: it must not configure an interface or send
//! a packet (`berth net`, a host service, applies them).

use heapless::String;
use serde::{Deserialize, Serialize};

use super::IFNAME_MAX;

/// One interface's IPv4 set-up: a static address, or DHCP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// Interface name (`eth0`), at most [`IFNAME_MAX`] bytes.
    pub interface: String<IFNAME_MAX>,
    /// Address and prefix length, `10.0.2.15/24`.
    #[serde(default)]
    pub address: Option<String<18>>,
    /// Default gateway; must be inside the interface's subnet.
    #[serde(default)]
    pub gateway: Option<String<15>>,
    /// Take the address, netmask and default route from a DHCP lease
    /// (kept and renewed by `berth net`) instead of `address`/`gateway`:
    /// exactly one of `dhcp = true` or `address` is given.
    #[serde(default)]
    pub dhcp: bool,
}

/// An IPv4 address with its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: [u8; 4],
    pub prefix: u8,
}

impl Cidr {
    /// The netmask of the prefix.
    pub fn netmask(self) -> [u8; 4] {
        let bits = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
        bits.to_be_bytes()
    }

    /// Whether `ip` is in this subnet.
    pub fn contains(self, ip: [u8; 4]) -> bool {
        let m = u32::from_be_bytes(self.netmask());
        u32::from_be_bytes(self.addr) & m == u32::from_be_bytes(ip) & m
    }
}

/// A dotted-quad IPv4 address.
pub fn parse_ipv4(s: &str) -> Option<[u8; 4]> {
    let mut out = [0u8; 4];
    let mut parts = s.split('.');
    for o in out.iter_mut() {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) || (p.len() > 1 && p.starts_with('0')) {
            return None;
        }
        *o = p.parse().ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// `a.b.c.d/n` with `n` in 1..=32.
pub fn parse_cidr(s: &str) -> Option<Cidr> {
    let (ip, prefix) = s.split_once('/')?;
    let prefix: u8 = prefix.parse().ok().filter(|p| (1..=32).contains(p))?;
    Some(Cidr { addr: parse_ipv4(ip)?, prefix })
}

impl Network {
    /// The address, once validated.
    pub fn cidr(&self) -> Option<Cidr> {
        self.address.as_deref().and_then(parse_cidr)
    }

    /// The gateway, once validated.
    pub fn gateway_ip(&self) -> Option<[u8; 4]> {
        self.gateway.as_deref().and_then(parse_ipv4)
    }
}
