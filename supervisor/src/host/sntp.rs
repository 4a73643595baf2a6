//! SNTP (RFC 4330) for `berth time`: the 48-byte client request and the
//! checks and arithmetic of the server's reply. Pure; it owns the packet
//! format and the offset; it must not set the clock or touch a socket
//! (that is `crate::host::time`).
//!
//! A reply is used only if it answers this request (its originate
//! timestamp is the request's transmit timestamp), comes from a server
//! (mode 4) of NTP version 3 or 4, is synchronised (leap indicator not 3)
//! at stratum 1 to 15 (stratum 0 is a "kiss-o'-death": its code, such as
//! `RATE` or `DENY`, is the refusal), and carries non-zero receive and
//! transmit timestamps. Timestamps are NTP's: seconds since 1900 and a
//! binary fraction; one whose top bit is clear is read in the era after
//! 2036, so the arithmetic holds until 2104.

/// Packet size (no extension fields, no authenticator).
pub const LEN: usize = 48;
/// Seconds from 1900-01-01 to 1970-01-01.
const UNIX_EPOCH_NTP: i64 = 2_208_988_800;

/// A time in nanoseconds since the Unix epoch.
pub type Nanos = i128;

/// What is wrong with a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Length(usize),
    /// Not a server's reply (mode), or an NTP version not 3 or 4.
    NotServer {
        mode: u8,
        version: u8,
    },
    Unsynchronised,
    /// Stratum 0: the server's kiss code.
    Kiss(String),
    Stratum(u8),
    /// Not the answer to this request.
    Originate,
    NoTimestamps,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Length(n) => write!(f, "a reply of {n} bytes (want {LEN})"),
            Refusal::NotServer { mode, version } => write!(f, "mode {mode} version {version} is not an NTP v3/v4 server's reply"),
            Refusal::Unsynchronised => write!(f, "the server says its clock is not synchronised"),
            Refusal::Kiss(code) => write!(f, "the server refused (kiss code {code})"),
            Refusal::Stratum(s) => write!(f, "stratum {s} is not 1..15"),
            Refusal::Originate => write!(f, "the reply does not answer this request"),
            Refusal::NoTimestamps => write!(f, "the reply has no receive or transmit time"),
        }
    }
}

/// An NTP timestamp for `t`.
pub fn to_ntp(t: Nanos) -> u64 {
    let secs = t.div_euclid(1_000_000_000) as i64 + UNIX_EPOCH_NTP;
    let frac = ((t.rem_euclid(1_000_000_000) << 32) / 1_000_000_000) as u64;
    ((secs as u64 & 0xFFFF_FFFF) << 32) | frac
}

/// The time an NTP timestamp stands for (see the module docs on eras).
pub fn from_ntp(ts: u64) -> Nanos {
    let secs = (ts >> 32) as i64;
    let secs = if secs & 0x8000_0000 == 0 { secs + (1 << 32) } else { secs };
    let frac = (ts & 0xFFFF_FFFF) as i128;
    i128::from(secs - UNIX_EPOCH_NTP) * 1_000_000_000 + ((frac * 1_000_000_000) >> 32)
}

/// The request sent at `t1` (its transmit timestamp).
pub fn request(t1: Nanos) -> [u8; LEN] {
    let mut p = [0u8; LEN];
    p[0] = 4 << 3 | 3; // leap 0, version 4, mode 3 (client)
    p[40..48].copy_from_slice(&to_ntp(t1).to_be_bytes());
    p
}

/// A usable reply's numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub stratum: u8,
    /// How far the local clock is behind the server's.
    pub offset: Nanos,
    /// The round trip less the server's own time.
    pub delay: Nanos,
}

fn ts(p: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&p[at..at + 8]);
    u64::from_be_bytes(b)
}

/// Check `reply` to the request sent at `t1` (as [`request`] wrote it),
/// received at `t4`.
pub fn judge(reply: &[u8], t1: Nanos, t4: Nanos) -> Result<Sample, Refusal> {
    if reply.len() != LEN {
        return Err(Refusal::Length(reply.len()));
    }
    let (leap, version, mode) = (reply[0] >> 6, (reply[0] >> 3) & 7, reply[0] & 7);
    if mode != 4 || !(3..=4).contains(&version) {
        return Err(Refusal::NotServer { mode, version });
    }
    let stratum = reply[1];
    if stratum == 0 {
        let code: String = reply[12..16].iter().map(|&b| if b.is_ascii_graphic() { b as char } else { '?' }).collect();
        return Err(Refusal::Kiss(code));
    }
    if leap == 3 {
        return Err(Refusal::Unsynchronised);
    }
    if stratum > 15 {
        return Err(Refusal::Stratum(stratum));
    }
    if ts(reply, 24) != to_ntp(t1) {
        return Err(Refusal::Originate);
    }
    let (r2, r3) = (ts(reply, 32), ts(reply, 40));
    if r2 == 0 || r3 == 0 {
        return Err(Refusal::NoTimestamps);
    }
    let (t2, t3) = (from_ntp(r2), from_ntp(r3));
    Ok(Sample { stratum, offset: ((t2 - t1) + (t3 - t4)) / 2, delay: (t4 - t1) - (t3 - t2) })
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Nanos = 1_000_000_000;

    /// A server at `server_t` for a request `req`, answering at once.
    fn reply(req: &[u8; LEN], server_t: Nanos, stratum: u8) -> [u8; LEN] {
        let mut p = [0u8; LEN];
        p[0] = 4 << 3 | 4;
        p[1] = stratum;
        p[24..32].copy_from_slice(&req[40..48]);
        p[32..40].copy_from_slice(&to_ntp(server_t).to_be_bytes());
        p[40..48].copy_from_slice(&to_ntp(server_t).to_be_bytes());
        p
    }

    #[test]
    fn timestamps_round_trip_across_eras() {
        for t in [0, 1_700_000_000 * S + 123_456_789, 2_085_978_496 * S + 5, 3_000_000_000 * S] {
            assert!((from_ntp(to_ntp(t)) - t).abs() <= 1, "{t}");
        }
        assert_eq!(to_ntp(0) >> 32, UNIX_EPOCH_NTP as u64);
    }

    #[test]
    fn a_clock_at_1970_learns_the_servers_time() {
        // The device wakes at the epoch; the server says 2026-12-08 (and 0.2 s of network each way).
        let (t1, server) = (5 * S, 1_796_688_000 * S);
        let req = request(t1);
        assert_eq!(req[0], 0x23);
        let r = reply(&req, server, 2);
        let t4 = t1 + 400_000_000;
        let s = judge(&r, t1, t4).unwrap();
        assert_eq!(s.stratum, 2);
        assert!((s.offset - (server - t1 - 200_000_000)).abs() <= 2, "{}", s.offset);
        assert!((s.delay - 400_000_000).abs() <= 2);
    }

    #[test]
    fn refusals_are_named() {
        let (t1, server) = (5 * S, 1_796_688_000 * S);
        let req = request(t1);
        let good = reply(&req, server, 1);
        assert_eq!(judge(&good[..40], t1, t1), Err(Refusal::Length(40)));
        let mut r = good;
        r[0] = 4 << 3 | 3;
        assert_eq!(judge(&r, t1, t1), Err(Refusal::NotServer { mode: 3, version: 4 }));
        let mut r = good;
        r[1] = 0;
        r[12..16].copy_from_slice(b"RATE");
        assert_eq!(judge(&r, t1, t1), Err(Refusal::Kiss("RATE".into())));
        let mut r = good;
        r[0] |= 3 << 6;
        assert_eq!(judge(&r, t1, t1), Err(Refusal::Unsynchronised));
        let mut r = good;
        r[1] = 16;
        assert_eq!(judge(&r, t1, t1), Err(Refusal::Stratum(16)));
        assert_eq!(judge(&good, t1 + 1, t1), Err(Refusal::Originate));
        let mut r = good;
        r[40..48].fill(0);
        assert_eq!(judge(&r, t1, t1), Err(Refusal::NoTimestamps));
    }
}
