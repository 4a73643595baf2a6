//! The DHCP client's state machine (RFC 2131 section 4.4), one per
//! interface. It does no I/O and reads no clock: the caller passes the time
//! (milliseconds on a monotonic clock) and the received bytes, and carries
//! out the [`Action`]s it returns.
//!
//! It must not keep an address past its lease: at expiry the address is
//! removed and the client starts over.
//!
//! ```text
//! INIT -> SELECTING (DISCOVER broadcast) -> REQUESTING (REQUEST broadcast)
//!      -> BOUND -> at T1 RENEWING (REQUEST unicast to the server)
//!               -> at T2 REBINDING (REQUEST broadcast)
//!               -> at expiry: the address is removed, back to INIT
//! NAK in REQUESTING, RENEWING or REBINDING: back to INIT (the address,
//! if any, removed) and DISCOVER again after NAK_DELAY_MS.
//! ```
//!
//! Timings: DISCOVER and REQUEST are sent again after 4 s, doubling up to a
//! ceiling of 64 s, each moved by a random -1..+1 s; after
//! [`REQUEST_TRIES`] unanswered REQUESTs the client starts over. T1 and T2
//! are the server's (options 58 and 59) when 0 < T1 < T2 < lease, else
//! half and seven eighths of the lease. While renewing or rebinding, the
//! REQUEST is repeated after half the time left to T2 (or to expiry), with
//! a floor of [`RENEW_RETRY_MIN_MS`], and never later than that deadline.

use super::packet::{self, classful_netmask, MsgType, Outgoing, PacketError};

/// First retransmission delay of DISCOVER and REQUEST.
pub const RETRY_FIRST_MS: u64 = 4_000;
/// Ceiling of the retransmission delay.
pub const RETRY_MAX_MS: u64 = 64_000;
/// The random shift of each retransmission, either way.
pub const JITTER_MS: u64 = 1_000;
/// REQUESTs sent for an OFFER before starting over with a DISCOVER.
pub const REQUEST_TRIES: u32 = 4;
/// Floor of the retransmission delay while renewing or rebinding.
pub const RENEW_RETRY_MIN_MS: u64 = 60_000;
/// Wait after a NAK before the next DISCOVER (a server that NAKs at once
/// would otherwise make a packet storm).
pub const NAK_DELAY_MS: u64 = 4_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Init,
    Selecting,
    Requesting,
    Bound,
    Renewing,
    Rebinding,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Init => "init",
            State::Selecting => "selecting",
            State::Requesting => "requesting",
            State::Bound => "bound",
            State::Renewing => "renewing",
            State::Rebinding => "rebinding",
        }
    }
}

/// A lease, as applied to the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub address: [u8; 4],
    pub netmask: [u8; 4],
    pub router: Option<[u8; 4]>,
    /// Name servers (option 6), for `resolv.conf`.
    pub dns: super::packet::Servers,
    pub server: [u8; 4],
    pub lease_s: u32,
    pub t1_s: u32,
    pub t2_s: u32,
}

/// Where a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum To {
    /// 255.255.255.255, port 67.
    Broadcast,
    /// The server, port 67.
    Server([u8; 4]),
}

/// What the caller does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Build `msg` ([`packet::build`]) and send it.
    Send { msg: Outgoing, to: To },
    /// Set the address, netmask, up, and the default route via the router.
    Bind(Lease),
    /// Remove the lease's address (which takes its routes with it).
    Unbind(Lease),
}

/// At most two actions follow one input (remove, then start over).
pub type Actions = heapless::Vec<Action, 2>;

/// One interface's client.
#[derive(Debug, Clone)]
pub struct Client {
    mac: [u8; 6],
    state: State,
    xid: u32,
    rng: u64,
    /// Messages sent in this state (for the backoff).
    tries: u32,
    /// When the exchange began (for `secs`).
    started_ms: u64,
    /// When the last REQUEST went out: lease times count from there.
    sent_ms: u64,
    /// When [`Client::on_timer`] has something to do.
    wake_ms: u64,
    /// The OFFER being requested: address and server.
    offered: Option<([u8; 4], [u8; 4])>,
    /// The lease held and when it began.
    lease: Option<(Lease, u64)>,
}

impl Client {
    /// A client in INIT that sends its first DISCOVER at the first timer.
    /// `seed` makes the transaction ids and jitter (any non-zero value).
    pub fn new(mac: [u8; 6], seed: u64) -> Client {
        Client { mac, state: State::Init, xid: 0, rng: seed | 1, tries: 0, started_ms: 0, sent_ms: 0, wake_ms: 0, offered: None, lease: None }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// When to call [`Client::on_timer`] next.
    pub fn wake_ms(&self) -> u64 {
        self.wake_ms
    }

    #[cfg(test)]
    fn lease(&self) -> Option<Lease> {
        self.lease.map(|(l, _)| l)
    }

    fn random(&mut self) -> u64 {
        // xorshift64: unpredictable enough for transaction ids and jitter.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// The delay before the next retransmission of DISCOVER or REQUEST.
    fn backoff(&mut self) -> u64 {
        let base = RETRY_FIRST_MS.checked_shl(self.tries.min(8)).unwrap_or(RETRY_MAX_MS).min(RETRY_MAX_MS);
        let jitter = self.random() % (2 * JITTER_MS + 1);
        base.saturating_sub(JITTER_MS).saturating_add(jitter)
    }

    fn message(&self, kind: MsgType, now: u64, ciaddr: [u8; 4], offered: Option<([u8; 4], [u8; 4])>) -> Outgoing {
        let secs = u16::try_from(now.saturating_sub(self.started_ms) / 1000).unwrap_or(u16::MAX);
        Outgoing { kind, xid: self.xid, mac: self.mac, secs, ciaddr, requested: offered.map(|o| o.0), server: offered.map(|o| o.1) }
    }

    fn send(&mut self, kind: MsgType, now: u64, ciaddr: [u8; 4], offered: Option<([u8; 4], [u8; 4])>, to: To) -> Action {
        self.sent_ms = now;
        self.tries = self.tries.saturating_add(1);
        Action::Send { msg: self.message(kind, now, ciaddr, offered), to }
    }

    /// A new exchange: fresh transaction id, DISCOVER broadcast.
    fn discover(&mut self, now: u64) -> Action {
        self.state = State::Selecting;
        self.xid = self.random() as u32;
        self.started_ms = now;
        self.tries = 0;
        self.offered = None;
        self.wake_ms = now.saturating_add(self.backoff());
        self.send(MsgType::Discover, now, [0; 4], None, To::Broadcast)
    }

    /// The REQUEST for the OFFER being answered.
    fn request_offer(&mut self, now: u64) -> Action {
        self.wake_ms = now.saturating_add(self.backoff());
        self.send(MsgType::Request, now, [0; 4], self.offered, To::Broadcast)
    }

    /// The lease with its T2 and expiry, in milliseconds of the clock (T1
    /// is the wake-up time set when it was bound).
    fn times(&self) -> Option<(Lease, u64, u64)> {
        let (l, start) = self.lease?;
        let at = |s: u32| start.saturating_add(u64::from(s).saturating_mul(1000));
        Some((l, at(l.t2_s), at(l.lease_s)))
    }

    /// A REQUEST to extend the lease held; the next try is after half the
    /// time left to `until`, at least [`RENEW_RETRY_MIN_MS`], at most `until`.
    fn request_extend(&mut self, now: u64, until: u64, to: To) -> Actions {
        let Some((lease, _)) = self.lease else {
            return Actions::new();
        };
        let half = until.saturating_sub(now) / 2;
        self.wake_ms = now.saturating_add(half.max(RENEW_RETRY_MIN_MS)).min(until);
        let mut out = Actions::new();
        let _ = out.push(self.send(MsgType::Request, now, lease.address, None, to));
        out
    }

    /// Start over after losing the lease (or never getting it).
    fn restart(&mut self, now: u64, delay_ms: u64) -> Actions {
        let mut out = Actions::new();
        if let Some((lease, _)) = self.lease.take() {
            let _ = out.push(Action::Unbind(lease));
        }
        self.offered = None;
        self.state = State::Init;
        self.wake_ms = now.saturating_add(delay_ms);
        if delay_ms == 0 {
            let _ = out.push(self.discover(now));
        }
        out
    }

    /// What is due at `now`: a first or repeated message, or the move to
    /// RENEWING, REBINDING or (at expiry) INIT.
    pub fn on_timer(&mut self, now: u64) -> Actions {
        let mut out = Actions::new();
        if now < self.wake_ms {
            return out;
        }
        match self.state {
            State::Init => {
                let _ = out.push(self.discover(now));
            }
            State::Selecting => {
                self.wake_ms = now.saturating_add(self.backoff());
                let _ = out.push(self.send(MsgType::Discover, now, [0; 4], None, To::Broadcast));
            }
            State::Requesting => {
                if self.tries >= REQUEST_TRIES {
                    return self.restart(now, 0);
                }
                let _ = out.push(self.request_offer(now));
            }
            State::Bound | State::Renewing | State::Rebinding => {
                let Some((lease, t2, end)) = self.times() else {
                    return self.restart(now, 0);
                };
                if now >= end {
                    return self.restart(now, 0);
                }
                let (state, until, to) = if now >= t2 { (State::Rebinding, end, To::Broadcast) } else { (State::Renewing, t2, To::Server(lease.server)) };
                if self.state != state {
                    // A new exchange for each of RENEWING and REBINDING.
                    self.xid = self.random() as u32;
                    self.started_ms = now;
                    self.state = state;
                }
                return self.request_extend(now, until, to);
            }
        }
        out
    }

    /// A datagram received on the interface's DHCP socket. A valid reply
    /// that the state does not expect (a second OFFER, an ACK while bound)
    /// changes nothing.
    pub fn on_packet(&mut self, now: u64, bytes: &[u8]) -> Result<Actions, PacketError> {
        let r = packet::parse(bytes, self.xid, self.mac)?;
        let mut out = Actions::new();
        match (self.state, r.kind) {
            (State::Selecting, MsgType::Offer) => {
                let server = r.server.unwrap_or([0; 4]);
                self.offered = Some((r.yiaddr, server));
                self.state = State::Requesting;
                self.tries = 0;
                let _ = out.push(self.request_offer(now));
            }
            (State::Requesting | State::Renewing | State::Rebinding, MsgType::Ack) => {
                let lease_s = r.lease_s.unwrap_or(0);
                let (t1_s, t2_s) = match (r.t1_s, r.t2_s) {
                    (Some(t1), Some(t2)) if 0 < t1 && t1 < t2 && t2 < lease_s => (t1, t2),
                    _ => (lease_s / 2, (u64::from(lease_s) * 7 / 8) as u32),
                };
                let lease = Lease {
                    address: r.yiaddr,
                    netmask: r.netmask.unwrap_or_else(|| classful_netmask(r.yiaddr)),
                    router: r.router,
                    dns: r.dns,
                    server: r.server.unwrap_or([0; 4]),
                    lease_s,
                    t1_s,
                    t2_s,
                };
                if let Some((old, _)) = self.lease {
                    if old.address != lease.address {
                        let _ = out.push(Action::Unbind(old));
                    }
                }
                self.lease = Some((lease, self.sent_ms));
                self.offered = None;
                self.state = State::Bound;
                self.tries = 0;
                self.wake_ms = self.sent_ms.saturating_add(u64::from(t1_s).saturating_mul(1000));
                let _ = out.push(Action::Bind(lease));
            }
            (State::Requesting | State::Renewing | State::Rebinding, MsgType::Nak) => return Ok(self.restart(now, NAK_DELAY_MS)),
            _ => {}
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::dhcp::packet::tests::{reply, MAC};

    const DAY: u32 = 86_400;

    fn sent(a: &Actions) -> Vec<(MsgType, To, u32)> {
        a.iter()
            .filter_map(|x| match x {
                Action::Send { msg, to } => Some((msg.kind, *to, msg.xid)),
                _ => None,
            })
            .collect()
    }

    fn xid(c: &Client) -> u32 {
        c.xid
    }

    /// A client taken to BOUND at time 0 with a lease of `lease_s`.
    fn bound(lease_s: u32) -> Client {
        let mut c = Client::new(MAC, 42);
        let a = c.on_timer(0);
        assert_eq!(sent(&a), [(MsgType::Discover, To::Broadcast, xid(&c))]);
        assert_eq!(c.state(), State::Selecting);
        let a = c.on_packet(10, &reply(MsgType::Offer, xid(&c), [10, 0, 2, 15], lease_s)).unwrap();
        assert_eq!(sent(&a), [(MsgType::Request, To::Broadcast, xid(&c))]);
        let Action::Send { msg, .. } = &a[0] else { panic!() };
        let packet = packet::build(msg);
        // Requested address and server of the OFFER, broadcast flag set.
        assert_eq!(&packet[252..264], &[50, 4, 10, 0, 2, 15, 54, 4, 10, 0, 2, 2]);
        assert_eq!(c.state(), State::Requesting);
        let a = c.on_packet(20, &reply(MsgType::Ack, xid(&c), [10, 0, 2, 15], lease_s)).unwrap();
        assert_eq!(c.state(), State::Bound);
        let lease = Lease {
            address: [10, 0, 2, 15],
            netmask: [255, 255, 255, 0],
            router: Some([10, 0, 2, 2]),
            dns: packet::Servers::from_option(&[10, 0, 2, 3]),
            server: [10, 0, 2, 2],
            lease_s,
            t1_s: lease_s / 2,
            t2_s: lease_s / 8 * 7,
        };
        assert_eq!(a.as_slice(), &[Action::Bind(lease)]);
        c
    }

    #[test]
    fn happy_path_binds_with_rfc_timers() {
        let c = bound(DAY);
        // The lease counts from the REQUEST (sent at 10 ms).
        assert_eq!(c.wake_ms(), 10 + u64::from(DAY / 2) * 1000);
        assert_eq!(c.lease().unwrap().t2_s, 75_600);
    }

    #[test]
    fn server_t1_t2_are_used_only_when_ordered() {
        let ack = |t1: u32, t2: u32| {
            let mut c = Client::new(MAC, 7);
            c.on_timer(0);
            c.on_packet(0, &reply(MsgType::Offer, c.xid, [10, 0, 2, 15], 1000)).unwrap();
            let mut p = reply(MsgType::Ack, c.xid, [10, 0, 2, 15], 1000);
            p.pop();
            p.extend_from_slice(&[58, 4]);
            p.extend_from_slice(&t1.to_be_bytes());
            p.extend_from_slice(&[59, 4]);
            p.extend_from_slice(&t2.to_be_bytes());
            p.push(255);
            c.on_packet(0, &p).unwrap();
            let l = c.lease().unwrap();
            (l.t1_s, l.t2_s)
        };
        assert_eq!(ack(100, 200), (100, 200));
        assert_eq!(ack(300, 200), (500, 875));
        assert_eq!(ack(100, 1000), (500, 875));
        assert_eq!(ack(0, 200), (500, 875));
    }

    #[test]
    fn lost_discovers_back_off_with_bounded_jitter() {
        let mut c = Client::new(MAC, 1234);
        let mut now = 0;
        c.on_timer(now);
        let x = xid(&c);
        let mut delays = Vec::new();
        for _ in 0..8 {
            assert!(c.on_timer(c.wake_ms() - 1).is_empty(), "nothing before the deadline");
            let d = c.wake_ms() - now;
            now = c.wake_ms();
            delays.push(d);
            let a = c.on_timer(now);
            assert_eq!(sent(&a), [(MsgType::Discover, To::Broadcast, x)], "same transaction");
        }
        let nominal = [4_000u64, 8_000, 16_000, 32_000, 64_000, 64_000, 64_000, 64_000];
        for (d, n) in delays.iter().zip(nominal) {
            assert!(d + JITTER_MS >= n && *d <= n + JITTER_MS, "delays {delays:?}");
        }
        assert!(delays.iter().any(|d| d % 1000 != 0), "jitter applied: {delays:?}");
        // secs counts from the first DISCOVER, at 0.
        let at = c.wake_ms();
        let a = c.on_timer(at);
        let Action::Send { msg, .. } = &a[0] else { panic!() };
        let packet = packet::build(msg);
        assert_eq!(u64::from(u16::from_be_bytes([packet[8], packet[9]])), at / 1000);
    }

    #[test]
    fn unanswered_requests_start_over() {
        let mut c = Client::new(MAC, 9);
        c.on_timer(0);
        c.on_packet(0, &reply(MsgType::Offer, c.xid, [10, 0, 2, 15], DAY)).unwrap();
        let first = xid(&c);
        for _ in 1..REQUEST_TRIES {
            let a = c.on_timer(c.wake_ms());
            assert_eq!(sent(&a), [(MsgType::Request, To::Broadcast, first)]);
        }
        let a = c.on_timer(c.wake_ms());
        assert_eq!(c.state(), State::Selecting);
        assert_eq!(sent(&a), [(MsgType::Discover, To::Broadcast, xid(&c))]);
        assert_ne!(xid(&c), first, "a new transaction");
    }

    #[test]
    fn nak_while_requesting_waits_then_discovers() {
        let mut c = Client::new(MAC, 5);
        c.on_timer(0);
        c.on_packet(0, &reply(MsgType::Offer, c.xid, [10, 0, 2, 15], DAY)).unwrap();
        let a = c.on_packet(100, &reply(MsgType::Nak, c.xid, [0; 4], 0)).unwrap();
        assert!(a.is_empty(), "no lease to remove yet");
        assert_eq!(c.state(), State::Init);
        assert_eq!(c.wake_ms(), 100 + NAK_DELAY_MS);
        assert!(c.on_timer(100 + NAK_DELAY_MS - 1).is_empty());
        assert_eq!(sent(&c.on_timer(100 + NAK_DELAY_MS)), [(MsgType::Discover, To::Broadcast, xid(&c))]);
    }

    #[test]
    fn renew_unicasts_at_t1_and_an_ack_extends() {
        let mut c = bound(1000);
        let t1 = 10 + 500_000;
        assert!(c.on_timer(t1 - 1).is_empty());
        let a = c.on_timer(t1);
        assert_eq!(c.state(), State::Renewing);
        assert_eq!(sent(&a), [(MsgType::Request, To::Server([10, 0, 2, 2]), xid(&c))]);
        let Action::Send { msg, .. } = &a[0] else { panic!() };
        let packet = packet::build(msg);
        assert_eq!(&packet[12..16], &[10, 0, 2, 15], "ciaddr is the leased address");
        assert_eq!(&packet[10..12], &[0, 0], "no broadcast flag");
        assert_eq!(packet[252], 55, "no requested address or server id while renewing");
        // T2 is 875 s after the REQUEST at 10: retry after half of 375 s.
        assert_eq!(c.wake_ms(), t1 + 187_500);
        let a = c.on_packet(t1 + 50, &reply(MsgType::Ack, xid(&c), [10, 0, 2, 15], 1000)).unwrap();
        assert_eq!(c.state(), State::Bound);
        assert!(matches!(a.as_slice(), [Action::Bind(l)] if l.address == [10, 0, 2, 15]));
        assert_eq!(c.wake_ms(), t1 + 500_000, "T1 counts from the renewing REQUEST");
    }

    #[test]
    fn rebind_broadcasts_at_t2_and_expiry_unbinds() {
        let mut c = bound(1000);
        let (t1, t2) = (500_010, 875_010);
        c.on_timer(t1);
        let renew_xid = xid(&c);
        let mut now = t1;
        // Renewing retries: half the time left to T2, at least 60 s, never past T2.
        let mut waits = Vec::new();
        while c.state() == State::Renewing {
            now = c.wake_ms();
            waits.push(now);
            c.on_timer(now);
        }
        assert_eq!(waits, [t1 + 187_500, t1 + 187_500 + 93_750, t1 + 187_500 + 93_750 + 60_000, t2]);
        assert_eq!(c.state(), State::Rebinding);
        assert_ne!(xid(&c), renew_xid);
        assert_eq!(now, t2);
        let waits: Vec<u64> = std::iter::from_fn(|| {
            let w = c.wake_ms();
            let a = c.on_timer(w);
            (c.state() == State::Rebinding).then(|| {
                assert_eq!(sent(&a)[0].1, To::Broadcast);
                w
            })
        })
        .collect();
        assert_eq!(waits, [t2 + 62_500, t2 + 62_500 + 60_000]);
        // At expiry: address removed, then a DISCOVER at once.
        assert_eq!(c.state(), State::Selecting);
        assert_eq!(c.lease(), None);
    }

    #[test]
    fn expiry_returns_unbind_then_discover() {
        let mut c = bound(1000);
        let end = 1_000_010;
        let a = c.on_timer(end);
        assert!(matches!(a[0], Action::Unbind(l) if l.address == [10, 0, 2, 15]));
        assert_eq!(sent(&a), [(MsgType::Discover, To::Broadcast, xid(&c))]);
        assert_eq!(c.state(), State::Selecting);
    }

    #[test]
    fn nak_while_renewing_removes_the_address() {
        let mut c = bound(1000);
        c.on_timer(500_010);
        let a = c.on_packet(500_020, &reply(MsgType::Nak, xid(&c), [0; 4], 0)).unwrap();
        assert!(matches!(a.as_slice(), [Action::Unbind(l)] if l.address == [10, 0, 2, 15]));
        assert_eq!((c.state(), c.lease()), (State::Init, None));
    }

    #[test]
    fn a_new_address_on_rebind_replaces_the_old() {
        let mut c = bound(1000);
        c.on_timer(875_010);
        assert_eq!(c.state(), State::Rebinding);
        let a = c.on_packet(875_020, &reply(MsgType::Ack, xid(&c), [10, 0, 2, 16], 1000)).unwrap();
        assert!(matches!(a.as_slice(), [Action::Unbind(o), Action::Bind(n)] if o.address == [10, 0, 2, 15] && n.address == [10, 0, 2, 16]));
    }

    #[test]
    fn unexpected_and_bad_replies_change_nothing() {
        let mut c = bound(DAY);
        let before = (c.state(), c.wake_ms(), c.lease());
        // A late ACK or OFFER while bound.
        assert!(c.on_packet(30, &reply(MsgType::Ack, xid(&c), [10, 0, 2, 15], DAY)).unwrap().is_empty());
        assert!(c.on_packet(30, &reply(MsgType::Offer, xid(&c), [10, 0, 2, 15], DAY)).unwrap().is_empty());
        // Another exchange's reply, and a malformed one.
        assert!(c.on_packet(30, &reply(MsgType::Nak, xid(&c) ^ 1, [0; 4], 0)).unwrap_err().is_foreign());
        let mut cut = reply(MsgType::Nak, xid(&c), [0; 4], 0);
        cut.pop();
        assert_eq!(c.on_packet(30, &cut), Err(PacketError::NoEnd));
        assert_eq!((c.state(), c.wake_ms(), c.lease()), before);
        // An ACK while selecting is not taken.
        let mut s = Client::new(MAC, 3);
        s.on_timer(0);
        assert!(s.on_packet(1, &reply(MsgType::Ack, s.xid, [10, 0, 2, 15], DAY)).unwrap().is_empty());
        assert_eq!(s.state(), State::Selecting);
    }

    #[test]
    fn every_truncated_offer_is_refused_by_the_client() {
        let mut c = Client::new(MAC, 11);
        c.on_timer(0);
        let good = reply(MsgType::Offer, c.xid, [10, 0, 2, 15], DAY);
        for n in 0..good.len() {
            assert!(c.on_packet(5, &good[..n]).is_err(), "cut at {n}");
            assert_eq!(c.state(), State::Selecting);
        }
        assert!(c.on_packet(5, &good).is_ok());
        assert_eq!(c.state(), State::Requesting);
    }
}
