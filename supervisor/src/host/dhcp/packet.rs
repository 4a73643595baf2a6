//! DHCPv4 messages (RFC 2131, options from RFC 2132): the client's
//! DISCOVER and REQUEST built into a fixed buffer, and the server's OFFER,
//! ACK and NAK parsed from untrusted bytes.
//!
//! It must not read past a length it has not checked, nor panic on any input:
//! the reply is untrusted bytes.
//!
//! Parsing reads only the fixed BOOTP header and the options field; every
//! length is checked before a byte is read, and a reply that is cut short,
//! too long, repeats an option berth reads, or lacks the END option is
//! refused with its own [`PacketError`]. Option overload (52, options moved
//! into the `sname`/`file` fields) is ignored: those fields are not read, so
//! a lease that needs them is refused for what it then lacks.

use core::fmt;

pub use super::servers::{Servers, DNS_MAX};

/// Bytes of a message berth sends: the BOOTP minimum (RFC 951's 300).
pub const MSG_LEN: usize = 300;
/// Longest reply accepted: a full Ethernet frame less IP and UDP headers.
pub const PACKET_MAX: usize = 1472;
/// The fixed BOOTP header before the magic cookie.
const HEADER_LEN: usize = 236;
/// Where the options start (after the cookie).
const OPTIONS_AT: usize = HEADER_LEN + 4;
const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
const OP_REQUEST: u8 = 1;
const OP_REPLY: u8 = 2;
const HTYPE_ETHERNET: u8 = 1;
const HLEN_ETHERNET: u8 = 6;
/// The BROADCAST bit of `flags`: the server broadcasts its reply, which a
/// socket on an interface without an address can then receive.
const FLAG_BROADCAST: u16 = 0x8000;

const OPT_PAD: u8 = 0;
const OPT_NETMASK: u8 = 1;
const OPT_ROUTER: u8 = 3;
const OPT_DNS: u8 = 6;
const OPT_REQUESTED_IP: u8 = 50;
const OPT_LEASE_TIME: u8 = 51;
const OPT_MSG_TYPE: u8 = 53;
const OPT_SERVER_ID: u8 = 54;
const OPT_PARAMS: u8 = 55;
const OPT_MAX_SIZE: u8 = 57;
const OPT_RENEWAL_T1: u8 = 58;
const OPT_REBINDING_T2: u8 = 59;
const OPT_CLIENT_ID: u8 = 61;
const OPT_END: u8 = 255;

/// DHCP message types (option 53) berth sends or reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsgType {
    Discover = 1,
    Offer = 2,
    Request = 3,
    Ack = 5,
    Nak = 6,
}

impl MsgType {
    pub fn name(self) -> &'static str {
        match self {
            MsgType::Discover => "discover",
            MsgType::Offer => "offer",
            MsgType::Request => "request",
            MsgType::Ack => "ack",
            MsgType::Nak => "nak",
        }
    }
}

/// A message for the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outgoing {
    pub kind: MsgType,
    pub xid: u32,
    pub mac: [u8; 6],
    /// Seconds since the exchange began.
    pub secs: u16,
    /// The client's address while it holds a lease (renewing, rebinding),
    /// else 0.0.0.0 (and the reply is asked to be broadcast).
    pub ciaddr: [u8; 4],
    /// Option 50: the offered address, when answering an OFFER.
    pub requested: Option<[u8; 4]>,
    /// Option 54: the chosen server, when answering an OFFER.
    pub server: Option<[u8; 4]>,
}

/// Copy `bytes` into `buf` at `*at` and advance; the caller's content is
/// bounded to fit [`MSG_LEN`], and a write past it is dropped, not a panic.
fn put(buf: &mut [u8], at: &mut usize, bytes: &[u8]) {
    let end = at.saturating_add(bytes.len());
    if let Some(dst) = buf.get_mut(*at..end) {
        dst.copy_from_slice(bytes);
        *at = end;
    }
}

/// The wire form of `m`: the header, the cookie, then message type, client
/// id, requested address and server (when set), the parameters asked for,
/// the largest reply accepted, END, and zero padding.
pub fn build(m: &Outgoing) -> [u8; MSG_LEN] {
    let mut b = [0u8; MSG_LEN];
    let mut at = 0;
    put(&mut b, &mut at, &[OP_REQUEST, HTYPE_ETHERNET, HLEN_ETHERNET, 0]);
    put(&mut b, &mut at, &m.xid.to_be_bytes());
    put(&mut b, &mut at, &m.secs.to_be_bytes());
    let flags = if m.ciaddr == [0; 4] { FLAG_BROADCAST } else { 0 };
    put(&mut b, &mut at, &flags.to_be_bytes());
    put(&mut b, &mut at, &m.ciaddr);
    at = 28; // yiaddr, siaddr, giaddr stay zero
    put(&mut b, &mut at, &m.mac);
    at = HEADER_LEN;
    put(&mut b, &mut at, &MAGIC_COOKIE);
    put(&mut b, &mut at, &[OPT_MSG_TYPE, 1, m.kind as u8]);
    put(&mut b, &mut at, &[OPT_CLIENT_ID, 7, HTYPE_ETHERNET]);
    put(&mut b, &mut at, &m.mac);
    if let Some(ip) = m.requested {
        put(&mut b, &mut at, &[OPT_REQUESTED_IP, 4]);
        put(&mut b, &mut at, &ip);
    }
    if let Some(ip) = m.server {
        put(&mut b, &mut at, &[OPT_SERVER_ID, 4]);
        put(&mut b, &mut at, &ip);
    }
    put(&mut b, &mut at, &[OPT_PARAMS, 7, OPT_NETMASK, OPT_ROUTER, OPT_DNS, OPT_LEASE_TIME, OPT_SERVER_ID, OPT_RENEWAL_T1, OPT_REBINDING_T2]);
    put(&mut b, &mut at, &[OPT_MAX_SIZE, 2]);
    put(&mut b, &mut at, &(PACKET_MAX as u16 + 28).to_be_bytes());
    put(&mut b, &mut at, &[OPT_END]);
    b
}

/// A server's reply, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    pub kind: MsgType,
    /// The address offered or acknowledged (0.0.0.0 in a NAK).
    pub yiaddr: [u8; 4],
    /// Option 54 (always set in an OFFER or ACK).
    pub server: Option<[u8; 4]>,
    /// Option 51, seconds (always set, non-zero, in an OFFER or ACK).
    pub lease_s: Option<u32>,
    pub netmask: Option<[u8; 4]>,
    /// The first router of option 3.
    pub router: Option<[u8; 4]>,
    /// The first [`DNS_MAX`] name servers of option 6.
    pub dns: Servers,
    pub t1_s: Option<u32>,
    pub t2_s: Option<u32>,
}

/// Why a received datagram is not a usable reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketError {
    /// Shorter than the BOOTP header and the cookie.
    Short { len: usize },
    /// Longer than [`PACKET_MAX`].
    Long { len: usize },
    /// `op` is not BOOTREPLY.
    NotReply { op: u8 },
    /// Not Ethernet (`htype` 1, `hlen` 6).
    Hardware { htype: u8, hlen: u8 },
    /// Another exchange's transaction id (another client's reply).
    Xid { got: u32 },
    /// Another client's hardware address.
    Chaddr,
    /// No DHCP magic cookie.
    Cookie,
    /// An option's length or value runs past the end of the packet.
    OptionCut { code: u8 },
    /// The options end without the END option.
    NoEnd,
    /// An option berth reads has the wrong length for its kind.
    OptionLength { code: u8, len: u8 },
    /// An option berth reads appears twice.
    Repeated { code: u8 },
    /// No message type option.
    NoType,
    /// A message type other than OFFER, ACK or NAK.
    Type { value: u8 },
    /// An OFFER or ACK without a server identifier.
    NoServer,
    /// An OFFER or ACK without a lease time, or with a zero one.
    NoLease,
    /// The address offered is not a usable host address.
    Address { addr: [u8; 4] },
    /// The netmask is not a run of ones then zeros.
    Netmask { mask: [u8; 4] },
}

impl PacketError {
    /// A well-formed reply meant for another client (on a shared network,
    /// servers broadcast replies to everyone).
    pub fn is_foreign(self) -> bool {
        matches!(self, PacketError::Xid { .. } | PacketError::Chaddr)
    }
}

impl fmt::Display for PacketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::host::net::Quad;
        match *self {
            PacketError::Short { len } => {
                write!(f, "packet of {len} bytes is shorter than a DHCP header")
            }
            PacketError::Long { len } => {
                write!(f, "packet of {len} bytes is longer than {PACKET_MAX}")
            }
            PacketError::NotReply { op } => write!(f, "op {op} is not a reply"),
            PacketError::Hardware { htype, hlen } => {
                write!(f, "hardware type {htype} length {hlen} is not Ethernet")
            }
            PacketError::Xid { got } => write!(f, "transaction id {got:#010x} is not ours"),
            PacketError::Chaddr => f.write_str("client hardware address is not ours"),
            PacketError::Cookie => f.write_str("no DHCP magic cookie"),
            PacketError::OptionCut { code } => {
                write!(f, "option {code} runs past the end of the packet")
            }
            PacketError::NoEnd => f.write_str("options do not end with END"),
            PacketError::OptionLength { code, len } => {
                write!(f, "option {code} has the wrong length {len}")
            }
            PacketError::Repeated { code } => write!(f, "option {code} appears twice"),
            PacketError::NoType => f.write_str("no message type option"),
            PacketError::Type { value } => {
                write!(f, "message type {value} is not OFFER, ACK or NAK")
            }
            PacketError::NoServer => f.write_str("no server identifier"),
            PacketError::NoLease => f.write_str("no lease time, or a zero one"),
            PacketError::Address { addr } => {
                write!(f, "offered address {} is not a host address", Quad(addr))
            }
            PacketError::Netmask { mask } => write!(f, "netmask {} is not contiguous", Quad(mask)),
        }
    }
}

fn quad(b: &[u8]) -> [u8; 4] {
    let mut q = [0; 4];
    for (d, s) in q.iter_mut().zip(b) {
        *d = *s;
    }
    q
}

/// Store an option's value once, refusing a second copy.
fn once<T>(slot: &mut Option<T>, code: u8, v: T) -> Result<(), PacketError> {
    if slot.is_some() {
        return Err(PacketError::Repeated { code });
    }
    *slot = Some(v);
    Ok(())
}

/// A value of exactly `n` bytes.
fn sized(code: u8, v: &[u8], n: usize) -> Result<&[u8], PacketError> {
    if v.len() == n {
        Ok(v)
    } else {
        Err(PacketError::OptionLength { code, len: v.len() as u8 })
    }
}

fn be32(v: &[u8]) -> u32 {
    u32::from_be_bytes(quad(v))
}

/// Whether `a` can be a host's own address (not 0/8, loopback, multicast,
/// reserved or broadcast).
fn host_address(a: [u8; 4]) -> bool {
    !matches!(a[0], 0 | 127 | 224..=255)
}

/// Parse and check a reply to the exchange `xid` of the client `mac`.
pub fn parse(p: &[u8], xid: u32, mac: [u8; 6]) -> Result<Reply, PacketError> {
    let (yiaddr, opts) = header(p, xid, mac)?;
    let mut r = Reply { kind: MsgType::Nak, yiaddr, server: None, lease_s: None, netmask: None, router: None, dns: Servers::default(), t1_s: None, t2_s: None };
    r.kind = match options(opts, &mut r)? {
        None => return Err(PacketError::NoType),
        Some(2) => MsgType::Offer,
        Some(5) => MsgType::Ack,
        Some(6) => MsgType::Nak,
        Some(value) => return Err(PacketError::Type { value }),
    };
    if r.kind != MsgType::Nak {
        check_lease(&r)?;
    }
    Ok(r)
}

/// The fixed header of a reply to the exchange `xid` of the client `mac`,
/// checked: the offered address (`yiaddr`) and the options after the cookie.
fn header(p: &[u8], xid: u32, mac: [u8; 6]) -> Result<([u8; 4], &[u8]), PacketError> {
    if p.len() > PACKET_MAX {
        return Err(PacketError::Long { len: p.len() });
    }
    let (Some(head), Some(opts)) = (p.get(..OPTIONS_AT), p.get(OPTIONS_AT..)) else {
        return Err(PacketError::Short { len: p.len() });
    };
    let byte = |i: usize| head.get(i).copied().unwrap_or(0);
    if byte(0) != OP_REPLY {
        return Err(PacketError::NotReply { op: byte(0) });
    }
    if byte(1) != HTYPE_ETHERNET || byte(2) != HLEN_ETHERNET {
        return Err(PacketError::Hardware { htype: byte(1), hlen: byte(2) });
    }
    let got = be32(head.get(4..8).unwrap_or_default());
    if got != xid {
        return Err(PacketError::Xid { got });
    }
    if head.get(28..34) != Some(&mac[..]) {
        return Err(PacketError::Chaddr);
    }
    if head.get(HEADER_LEN..OPTIONS_AT) != Some(&MAGIC_COOKIE[..]) {
        return Err(PacketError::Cookie);
    }
    Ok((quad(head.get(16..20).unwrap_or_default()), opts))
}

/// Walk the options up to END, storing the ones berth reads in `r` (each at
/// most once, each of its exact length); returns the message type's value.
fn options(opts: &[u8], r: &mut Reply) -> Result<Option<u8>, PacketError> {
    let mut kind = None;
    let mut rest = opts;
    loop {
        let Some((&code, tail)) = rest.split_first() else {
            return Err(PacketError::NoEnd);
        };
        if code == OPT_END {
            return Ok(kind);
        }
        if code == OPT_PAD {
            rest = tail;
            continue;
        }
        let Some((&len, tail)) = tail.split_first() else {
            return Err(PacketError::OptionCut { code });
        };
        let (Some(v), Some(after)) = (tail.get(..usize::from(len)), tail.get(usize::from(len)..)) else {
            return Err(PacketError::OptionCut { code });
        };
        rest = after;
        match code {
            OPT_MSG_TYPE => once(&mut kind, code, sized(code, v, 1)?.first().copied().unwrap_or(0))?,
            OPT_SERVER_ID => once(&mut r.server, code, quad(sized(code, v, 4)?))?,
            OPT_LEASE_TIME => once(&mut r.lease_s, code, be32(sized(code, v, 4)?))?,
            OPT_NETMASK => once(&mut r.netmask, code, quad(sized(code, v, 4)?))?,
            OPT_RENEWAL_T1 => once(&mut r.t1_s, code, be32(sized(code, v, 4)?))?,
            OPT_REBINDING_T2 => once(&mut r.t2_s, code, be32(sized(code, v, 4)?))?,
            OPT_ROUTER => {
                if v.is_empty() || v.len() % 4 != 0 {
                    return Err(PacketError::OptionLength { code, len });
                }
                once(&mut r.router, code, quad(v))?;
            }
            OPT_DNS => {
                if v.is_empty() || v.len() % 4 != 0 {
                    return Err(PacketError::OptionLength { code, len });
                }
                if !r.dns.is_empty() {
                    return Err(PacketError::Repeated { code });
                }
                r.dns = Servers::from_option(v);
            }
            _ => {}
        }
    }
}

/// What an OFFER or ACK must hold: a server, a lease time, a host address,
/// and a contiguous netmask if any.
fn check_lease(r: &Reply) -> Result<(), PacketError> {
    if r.server.is_none() {
        return Err(PacketError::NoServer);
    }
    if r.lease_s.unwrap_or(0) == 0 {
        return Err(PacketError::NoLease);
    }
    if !host_address(r.yiaddr) {
        return Err(PacketError::Address { addr: r.yiaddr });
    }
    match r.netmask {
        Some(mask) if !contiguous(mask) => Err(PacketError::Netmask { mask }),
        _ => Ok(()),
    }
}

/// Whether `mask` is a run of ones then zeros, at least one one.
fn contiguous(mask: [u8; 4]) -> bool {
    let m = u32::from_be_bytes(mask);
    m != 0 && m.leading_ones() + m.trailing_zeros() == 32
}

/// The classful netmask of `a`, for a lease without option 1.
pub fn classful_netmask(a: [u8; 4]) -> [u8; 4] {
    match a[0] {
        0..=127 => [255, 0, 0, 0],
        128..=191 => [255, 255, 0, 0],
        _ => [255, 255, 255, 0],
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
    pub const XID: u32 = 0x1234_5678;

    /// A server's reply as QEMU's user network sends it.
    pub fn reply(kind: MsgType, xid: u32, yiaddr: [u8; 4], lease_s: u32) -> Vec<u8> {
        let mut p = vec![0u8; OPTIONS_AT];
        p[0] = OP_REPLY;
        p[1] = HTYPE_ETHERNET;
        p[2] = HLEN_ETHERNET;
        p[4..8].copy_from_slice(&xid.to_be_bytes());
        p[16..20].copy_from_slice(&yiaddr);
        p[28..34].copy_from_slice(&MAC);
        p[HEADER_LEN..OPTIONS_AT].copy_from_slice(&MAGIC_COOKIE);
        p.extend_from_slice(&[OPT_MSG_TYPE, 1, kind as u8]);
        if kind != MsgType::Nak {
            p.extend_from_slice(&[OPT_SERVER_ID, 4, 10, 0, 2, 2]);
            p.extend_from_slice(&[OPT_LEASE_TIME, 4]);
            p.extend_from_slice(&lease_s.to_be_bytes());
            p.extend_from_slice(&[OPT_NETMASK, 4, 255, 255, 255, 0]);
            p.extend_from_slice(&[OPT_ROUTER, 8, 10, 0, 2, 2, 10, 0, 2, 3]);
            p.extend_from_slice(&[OPT_DNS, 4, 10, 0, 2, 3]);
        }
        p.push(OPT_END);
        p
    }

    fn offer() -> Vec<u8> {
        reply(MsgType::Offer, XID, [10, 0, 2, 15], 86_400)
    }

    /// Replace the options with `opts` (the type comes first unless given).
    fn with_options(opts: &[u8]) -> Vec<u8> {
        let mut p = offer();
        p.truncate(OPTIONS_AT);
        p.extend_from_slice(opts);
        p
    }

    #[test]
    fn build_has_the_wanted_fields() {
        let m = Outgoing { kind: MsgType::Request, xid: XID, mac: MAC, secs: 3, ciaddr: [0; 4], requested: Some([10, 0, 2, 15]), server: Some([10, 0, 2, 2]) };
        let b = build(&m);
        assert_eq!(&b[..4], &[1, 1, 6, 0]);
        assert_eq!(&b[4..8], &XID.to_be_bytes());
        assert_eq!(&b[8..10], &[0, 3]);
        assert_eq!(&b[10..12], &[0x80, 0], "broadcast flag without an address");
        assert_eq!(&b[28..34], &MAC);
        assert_eq!(&b[236..240], &MAGIC_COOKIE);
        let opts = &b[240..];
        assert_eq!(&opts[..3], &[53, 1, 3]);
        assert_eq!(&opts[3..12], &[61, 7, 1, 0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        assert_eq!(&opts[12..18], &[50, 4, 10, 0, 2, 15]);
        assert_eq!(&opts[18..24], &[54, 4, 10, 0, 2, 2]);
        assert_eq!(&opts[24..33], &[55, 7, 1, 3, 6, 51, 54, 58, 59]);
        assert_eq!(&opts[33..37], &[57, 2, 0x05, 0xdc]);
        assert_eq!(opts[37], 255);
        assert!(opts[38..].iter().all(|b| *b == 0));

        let renew = Outgoing { ciaddr: [10, 0, 2, 15], requested: None, server: None, kind: MsgType::Request, ..m };
        let b = build(&renew);
        assert_eq!(&b[10..12], &[0, 0], "no broadcast flag with an address");
        assert_eq!(&b[12..16], &[10, 0, 2, 15]);
        assert_eq!(&b[252..261], &[55, 7, 1, 3, 6, 51, 54, 58, 59]);
    }

    #[test]
    fn name_servers_keep_the_first_three() {
        let mut opts = vec![OPT_MSG_TYPE, 1, MsgType::Offer as u8, OPT_SERVER_ID, 4, 10, 0, 2, 2, OPT_LEASE_TIME, 4, 0, 0, 1, 0];
        opts.extend_from_slice(&[OPT_DNS, 16, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, OPT_END]);
        let r = parse(&with_options(&opts), XID, MAC).unwrap();
        assert_eq!(r.dns.iter().collect::<Vec<_>>(), [[1; 4], [2; 4], [3; 4]]);
        let cut = [OPT_MSG_TYPE, 1, MsgType::Offer as u8, OPT_DNS, 6, 1, 1, 1, 1, 2, 2, OPT_END];
        assert_eq!(parse(&with_options(&cut), XID, MAC), Err(PacketError::OptionLength { code: OPT_DNS, len: 6 }));
        let twice = [OPT_MSG_TYPE, 1, MsgType::Offer as u8, OPT_DNS, 4, 1, 1, 1, 1, OPT_DNS, 4, 2, 2, 2, 2, OPT_END];
        assert_eq!(parse(&with_options(&twice), XID, MAC), Err(PacketError::Repeated { code: OPT_DNS }));
    }

    #[test]
    fn a_good_offer_parses() {
        let r = parse(&offer(), XID, MAC).unwrap();
        assert_eq!(r.kind, MsgType::Offer);
        assert_eq!(r.yiaddr, [10, 0, 2, 15]);
        assert_eq!(r.server, Some([10, 0, 2, 2]));
        assert_eq!(r.lease_s, Some(86_400));
        assert_eq!(r.netmask, Some([255, 255, 255, 0]));
        assert_eq!(r.router, Some([10, 0, 2, 2]));
        assert_eq!(r.dns.iter().collect::<Vec<_>>(), [[10, 0, 2, 3]]);
        assert_eq!((r.t1_s, r.t2_s), (None, None));
        let nak = parse(&reply(MsgType::Nak, XID, [0; 4], 0), XID, MAC).unwrap();
        assert_eq!(nak.kind, MsgType::Nak);
        // Padding before and after END is fine.
        let mut padded = offer();
        padded.insert(OPTIONS_AT, 0);
        padded.extend_from_slice(&[0; 20]);
        assert_eq!(parse(&padded, XID, MAC).unwrap(), r);
    }

    #[test]
    fn every_truncation_of_an_offer_is_refused() {
        let good = offer();
        for n in 0..good.len() {
            let e = parse(&good[..n], XID, MAC).unwrap_err();
            let want_short = n < OPTIONS_AT;
            assert_eq!(matches!(e, PacketError::Short { .. }), want_short, "cut at {n}: {e}");
            if !want_short {
                assert!(matches!(e, PacketError::NoEnd | PacketError::OptionCut { .. }), "cut at {n}: {e}");
            }
        }
    }

    #[test]
    fn flipped_bytes_never_panic() {
        let good = offer();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let mut p = good.clone();
            for _ in 0..3 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = (x as usize) % p.len();
                p[i] = (x >> 32) as u8;
            }
            let cut = (x >> 40) as usize % (p.len() + 1);
            let _ = parse(&p[..cut], XID, MAC);
            let _ = parse(&p, XID, MAC);
        }
    }

    #[test]
    fn each_malformed_reply_has_its_error() {
        let long = [offer(), vec![0; PACKET_MAX]].concat();
        assert_eq!(parse(&long, XID, MAC), Err(PacketError::Long { len: long.len() }));
        let mut p = offer();
        p[0] = 1;
        assert_eq!(parse(&p, XID, MAC), Err(PacketError::NotReply { op: 1 }));
        let mut p = offer();
        p[2] = 16;
        assert_eq!(parse(&p, XID, MAC), Err(PacketError::Hardware { htype: 1, hlen: 16 }));
        assert_eq!(parse(&offer(), XID + 1, MAC), Err(PacketError::Xid { got: XID }));
        assert!(PacketError::Xid { got: 0 }.is_foreign() && PacketError::Chaddr.is_foreign());
        assert_eq!(parse(&offer(), XID, [0; 6]), Err(PacketError::Chaddr));
        let mut p = offer();
        p[239] = 0;
        assert_eq!(parse(&p, XID, MAC), Err(PacketError::Cookie));

        let t = |o: &[u8]| parse(&with_options(o), XID, MAC);
        let ok_tail: &[u8] = &[54, 4, 10, 0, 2, 2, 51, 4, 0, 0, 1, 0, 255];
        assert_eq!(t(&[53, 1, 2, 51, 9]), Err(PacketError::OptionCut { code: 51 }));
        assert_eq!(t(&[53, 1, 2, 51]), Err(PacketError::OptionCut { code: 51 }));
        assert_eq!(t(&[53, 1, 2]), Err(PacketError::NoEnd));
        assert_eq!(t(&[53, 2, 2, 0, 255]), Err(PacketError::OptionLength { code: 53, len: 2 }));
        assert_eq!(t(&[53, 1, 2, 1, 3, 255, 255, 0, 255]), Err(PacketError::OptionLength { code: 1, len: 3 }));
        assert_eq!(t(&[53, 1, 2, 3, 0, 255]), Err(PacketError::OptionLength { code: 3, len: 0 }));
        assert_eq!(t(&[53, 1, 2, 3, 5, 1, 2, 3, 4, 5, 255]), Err(PacketError::OptionLength { code: 3, len: 5 }));
        assert_eq!(t(&[53, 1, 2, 53, 1, 5, 255]), Err(PacketError::Repeated { code: 53 }));
        assert_eq!(t(&[54, 4, 10, 0, 2, 2, 255]), Err(PacketError::NoType));
        assert_eq!(t(&[&[53, 1, 1][..], ok_tail].concat()), Err(PacketError::Type { value: 1 }));
        assert_eq!(t(&[53, 1, 2, 51, 4, 0, 0, 1, 0, 255]), Err(PacketError::NoServer));
        assert_eq!(t(&[53, 1, 5, 54, 4, 10, 0, 2, 2, 255]), Err(PacketError::NoLease));
        assert_eq!(t(&[53, 1, 5, 54, 4, 10, 0, 2, 2, 51, 4, 0, 0, 0, 0, 255]), Err(PacketError::NoLease));
        assert_eq!(t(&[&[53, 1, 2, 1, 4, 255, 0, 255, 0][..], ok_tail].concat()), Err(PacketError::Netmask { mask: [255, 0, 255, 0] }));
        assert!(t(&[&[53, 1, 2, 52, 1, 3][..], ok_tail].concat()).is_ok(), "overload is ignored");
        for bad in [[0, 0, 0, 0], [127, 0, 0, 1], [224, 0, 0, 1], [255, 255, 255, 255]] {
            let p = reply(MsgType::Ack, XID, bad, 60);
            assert_eq!(parse(&p, XID, MAC), Err(PacketError::Address { addr: bad }));
        }
        for e in [PacketError::Short { len: 3 }, PacketError::Netmask { mask: [1, 2, 3, 4] }] {
            assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn netmasks_are_ones_then_zeros() {
        for ok in [[255, 255, 255, 255], [255, 255, 255, 0], [255, 255, 240, 0], [128, 0, 0, 0]] {
            assert!(contiguous(ok), "{ok:?}");
        }
        for bad in [[0, 0, 0, 0], [255, 0, 255, 0], [0, 255, 255, 255], [255, 255, 255, 1]] {
            assert!(!contiguous(bad), "{bad:?}");
        }
    }

    #[test]
    fn classful_masks() {
        assert_eq!(classful_netmask([10, 1, 2, 3]), [255, 0, 0, 0]);
        assert_eq!(classful_netmask([172, 16, 0, 1]), [255, 255, 0, 0]);
        assert_eq!(classful_netmask([192, 168, 1, 1]), [255, 255, 255, 0]);
    }
}
