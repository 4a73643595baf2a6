//! The DHCP client's I/O: one UDP socket per interface, the clock, and the
//! ioctls that apply a lease. Everything it does is decided by
//! [`Client`]; this loop only waits for the next deadline or datagram and
//! carries out the actions, one `net.dhcp` event line each.
//!
//! It must not decide what to send or when ([`Client`] does), nor go on with
//! a lease it could not apply: that ends the run.
//!
//! The socket is an ordinary `AF_INET` datagram socket bound to port 68 with
//! `SO_BINDTODEVICE` and `SO_BROADCAST`: messages sent before the interface
//! has an address go out from 0.0.0.0 to 255.255.255.255, and since they
//! carry the BROADCAST flag the server broadcasts its reply, which the
//! socket receives without an address (no packet socket needed).
//!
//! A lease that cannot be applied, or an address that cannot be removed,
//! ends the run with an error: berth restarts the service by its policy and
//! the client starts over. A send that fails is logged and sent again at
//! the next retransmission.

use super::client::{Action, Actions, Client, Lease, To};
use super::packet::PACKET_MAX;
use crate::common::files::errno_text;
use crate::common::log::Event;
use crate::host::net::Quad;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{bind, recv, sendto, setsockopt, socket, sockopt, AddressFamily, MsgFlags, SockFlag, SockType, SockaddrIn};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

const SERVER_PORT: u16 = 67;
const CLIENT_PORT: u16 = 68;
/// Longest sleep between looks at the clock.
const POLL_MAX_MS: u16 = 60_000;

/// One interface under DHCP.
struct Iface<'a> {
    name: &'a str,
    sock: OwnedFd,
    client: Client,
}

/// Milliseconds on `CLOCK_BOOTTIME` (lease times run on while suspended).
fn now_ms() -> Result<u64, String> {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).map_err(|e| format!("clock: {}", errno_text(e)))?;
    let secs = u64::try_from(ts.tv_sec()).unwrap_or(0);
    let ms = u64::try_from(ts.tv_nsec()).unwrap_or(0) / 1_000_000;
    Ok(secs.saturating_mul(1000).saturating_add(ms))
}

/// A seed for transaction ids and jitter: the kernel's random bytes, or
/// (logged) the hardware address mixed with the clock.
fn seed(name: &str, mac: [u8; 6], now: u64) -> u64 {
    use std::io::Read;
    let mut b = [0u8; 8];
    match std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)) {
        Ok(()) => u64::from_ne_bytes(b),
        Err(e) => {
            Event::warn("net.dhcp").kv("interface", name).kv("step", "seed").kv("reason", format!("/dev/urandom: {e}")).emit();
            let mut m = [0u8; 8];
            for (d, s) in m.iter_mut().zip(mac) {
                *d = s;
            }
            u64::from_ne_bytes(m) ^ now.rotate_left(24)
        }
    }
}

/// Bring the interface up and open its DHCP socket.
fn open<'a>(ctl: BorrowedFd<'_>, name: &'a str, now: u64) -> Result<Iface<'a>, String> {
    let fail = |what: &str, e: Errno| format!("{name}: {what}: {}", errno_text(e));
    crate::sys::net::interface_up(ctl, name).map_err(|e| fail("up", e))?;
    let mac = crate::sys::net::hardware_address(ctl, name).map_err(|e| fail("hardware address", e))?;
    let sock = socket(AddressFamily::Inet, SockType::Datagram, SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK, None).map_err(|e| fail("socket", e))?;
    setsockopt(&sock, sockopt::ReuseAddr, &true).map_err(|e| fail("SO_REUSEADDR", e))?;
    setsockopt(&sock, sockopt::Broadcast, &true).map_err(|e| fail("SO_BROADCAST", e))?;
    setsockopt(&sock, sockopt::BindToDevice, &std::ffi::OsString::from(name)).map_err(|e| fail("SO_BINDTODEVICE", e))?;
    bind(sock.as_raw_fd(), &SockaddrIn::new(0, 0, 0, 0, CLIENT_PORT)).map_err(|e| fail("bind port 68", e))?;
    let [a, b, c, d, e, f] = mac;
    let mac_text = format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}");
    Event::info("net.dhcp").kv("interface", name).kv("state", "init").kv("step", "start").kv("mac", mac_text).emit();
    Ok(Iface { name, sock, client: Client::new(mac, seed(name, mac, now)) })
}

fn lease_event(name: &str, state: &str, l: &Lease) -> Event {
    let ev = Event::info("net.dhcp").kv("interface", name).kv("state", state).kv("address", Quad(l.address)).kv("netmask", Quad(l.netmask));
    let ev = match l.router {
        Some(r) => ev.kv("router", Quad(r)),
        None => ev.kv("router", "none"),
    };
    let mut dns = String::new();
    for (n, a) in l.dns.iter().enumerate() {
        dns.push_str(&format!("{}{}", if n == 0 { "" } else { "," }, Quad(a)));
    }
    let ev = ev.kv("dns", if dns.is_empty() { "none".to_string() } else { dns });
    ev.kv("lease_s", l.lease_s).kv("t1_s", l.t1_s).kv("t2_s", l.t2_s).kv("server", Quad(l.server))
}

/// Carry out a client's actions.
fn act(ctl: BorrowedFd<'_>, i: &Iface<'_>, actions: Actions) -> Result<(), String> {
    for a in actions {
        match a {
            Action::Send { msg, to } => {
                let ip = match to {
                    To::Broadcast => [255; 4],
                    To::Server(ip) => ip,
                };
                let [a, b, c, d] = ip;
                let r = sendto(i.sock.as_raw_fd(), &super::packet::build(&msg), &SockaddrIn::new(a, b, c, d, SERVER_PORT), MsgFlags::empty());
                let ev = Event::info("net.dhcp").kv("interface", i.name).kv("state", i.client.state().name()).kv("step", msg.kind.name()).kv("to", Quad(ip));
                match r {
                    Ok(_) => ev.kv("result", "ok").emit(),
                    Err(e) => ev.kv("result", "error").kv("reason", errno_text(e)).emit(),
                }
            }
            Action::Bind(lease) => {
                let steps = crate::host::net::lease_steps(i.name, &lease);
                if let Err(e) = crate::host::net::apply(ctl, &steps) {
                    lease_event(i.name, "bound", &lease).kv("result", "error").kv("reason", &e).emit();
                    return Err(e);
                }
                lease_event(i.name, "bound", &lease).kv("result", "ok").emit();
                name_servers(i.name, crate::host::resolv::render(&lease.dns, i.name).as_deref());
            }
            Action::Unbind(lease) => {
                let r = crate::sys::net::clear_address(ctl, i.name);
                let ev = Event::info("net.dhcp").kv("interface", i.name).kv("state", "init").kv("step", "unbind").kv("address", Quad(lease.address));
                if let Err(e) = r {
                    ev.kv("result", "error").kv("reason", errno_text(e)).emit();
                    return Err(format!("{}: remove address {}: {}", i.name, Quad(lease.address), errno_text(e)));
                }
                ev.kv("result", "ok").emit();
                name_servers(i.name, None);
            }
        }
    }
    Ok(())
}

/// Write (or remove) `resolv.conf` in the status directory; a failure is
/// logged, and the lease stands (names then do not resolve; addresses do).
fn name_servers(name: &str, text: Option<&str>) {
    let r = crate::host::resolv::store(std::path::Path::new(crate::common::names::STATUS_DIR), text);
    let servers = text.map_or(0, |t| t.matches("nameserver ").count());
    match r {
        Ok(()) => Event::info("net.dns").kv("interface", name).kv("servers", servers).kv("result", "ok").emit(),
        Err(e) => Event::error("net.dns").kv("interface", name).kv("servers", servers).kv("result", "error").kv("reason", e.to_string()).emit(),
    }
}

/// Read every datagram waiting on an interface's socket.
fn receive(ctl: BorrowedFd<'_>, i: &mut Iface<'_>, now: u64, buf: &mut [u8; PACKET_MAX + 1]) -> Result<(), String> {
    loop {
        let n = match recv(i.sock.as_raw_fd(), buf, MsgFlags::MSG_DONTWAIT) {
            Ok(n) => n,
            Err(Errno::EAGAIN | Errno::EINTR) => return Ok(()),
            Err(e) => {
                Event::error("net.dhcp").kv("interface", i.name).kv("step", "receive").kv("result", "error").kv("reason", errno_text(e)).emit();
                return Ok(());
            }
        };
        let bytes = buf.get(..n).unwrap_or_default();
        match i.client.on_packet(now, bytes) {
            Ok(actions) => act(ctl, i, actions)?,
            Err(e) => {
                let ev = if e.is_foreign() { Event::debug("net.dhcp") } else { Event::error("net.dhcp") };
                ev.kv("interface", i.name).kv("state", i.client.state().name()).kv("step", "receive").kv("result", "error").kv("reason", e).emit();
            }
        }
    }
}

/// Run the clients of `interfaces` until something fails; only an error
/// returns (the caller exits non-zero and berth restarts the service).
pub fn run(interfaces: &[&str]) -> Result<core::convert::Infallible, String> {
    let ctl = crate::host::net::ioctl_socket()?;
    let ctl = ctl.as_fd();
    let now = now_ms()?;
    let mut ifs = Vec::new();
    for name in interfaces {
        ifs.push(open(ctl, name, now)?);
    }
    let mut buf = [0u8; PACKET_MAX + 1];
    loop {
        let now = now_ms()?;
        for i in &mut ifs {
            let actions = i.client.on_timer(now);
            act(ctl, i, actions)?;
        }
        let wake = ifs.iter().map(|i| i.client.wake_ms()).min().unwrap_or(u64::MAX);
        let wait = u16::try_from(wake.saturating_sub(now)).unwrap_or(POLL_MAX_MS).min(POLL_MAX_MS);
        let mut fds: Vec<PollFd<'_>> = ifs.iter().map(|i| PollFd::new(i.sock.as_fd(), PollFlags::POLLIN)).collect();
        match poll(&mut fds, PollTimeout::from(wait)) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(format!("poll: {}", errno_text(e))),
        }
        let ready: Vec<bool> = fds.iter().map(|f| f.revents().is_some_and(|r| r.intersects(PollFlags::POLLIN))).collect();
        drop(fds);
        let now = now_ms()?;
        for (i, r) in ifs.iter_mut().zip(ready) {
            if r {
                receive(ctl, i, now, &mut buf)?;
            }
        }
    }
}
