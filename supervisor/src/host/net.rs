//! `berth net`: the board's IPv4 set-up, run by berth as a host service
//! (so it is restarted by its policy when an interface is not there yet,
//! and its output lands in the log store).
//!
//! A child process of PID 1: it must not run inside the loop.
//!
//! For each static `[[network]]` entry, in order: set the address, set the netmask,
//! bring the interface up, and (with a gateway) add the default route. The
//! steps are decided by [`plan`] (pure, unit tested) and carried out by
//! [`run`] through the ioctls in `crate::sys::net`. Each step prints one
//! event line; an address or route that is already there (EEXIST) counts
//! as done, so a restart is harmless. The first failure ends the run with
//! a non-zero exit naming the interface and the step. Entries with
//! `dhcp = true` are left to `crate::host::dhcp`, which applies each lease
//! with the same steps ([`lease_steps`], [`apply`]).

use crate::common::files::errno_text;
use crate::common::log::Event;
use crate::release::board::Network;
use nix::errno::Errno;

/// One step of the set-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Address([u8; 4]),
    Netmask([u8; 4]),
    Up,
    DefaultRoute([u8; 4]),
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Address(_) => "address",
            Op::Netmask(_) => "netmask",
            Op::Up => "up",
            Op::DefaultRoute(_) => "route",
        }
    }
}

/// A step on one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step<'a> {
    pub interface: &'a str,
    pub op: Op,
}

/// A dotted quad for event lines.
pub struct Quad(pub [u8; 4]);

impl core::fmt::Display for Quad {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let [a, b, c, d] = self.0;
        write!(f, "{a}.{b}.{c}.{d}")
    }
}

/// The steps for a validated board's networks. An entry without a parsable
/// address (validation refuses those) gets no steps.
pub fn plan(networks: &[Network]) -> Vec<Step<'_>> {
    let mut steps = Vec::new();
    for n in networks {
        let Some(cidr) = n.cidr() else { continue };
        let interface = n.interface.as_str();
        steps.push(Step { interface, op: Op::Address(cidr.addr) });
        steps.push(Step { interface, op: Op::Netmask(cidr.netmask()) });
        steps.push(Step { interface, op: Op::Up });
        if let Some(gw) = n.gateway_ip() {
            steps.push(Step { interface, op: Op::DefaultRoute(gw) });
        }
    }
    steps
}

/// Whether an error of `op` still leaves the wanted state in place.
pub fn already_done(op: Op, e: Errno) -> bool {
    matches!(op, Op::Address(_) | Op::DefaultRoute(_)) && e == Errno::EEXIST
}

/// The steps that put a DHCP lease on `interface`: the same as a static
/// entry's, with the lease's router as the gateway.
pub fn lease_steps<'a>(interface: &'a str, lease: &crate::host::dhcp::client::Lease) -> Vec<Step<'a>> {
    let mut ops = vec![Op::Address(lease.address), Op::Netmask(lease.netmask), Op::Up];
    ops.extend(lease.router.map(Op::DefaultRoute));
    ops.into_iter().map(|op| Step { interface, op }).collect()
}

/// An `AF_INET` datagram socket for the interface ioctls.
pub fn ioctl_socket() -> Result<std::os::fd::OwnedFd, String> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    socket(AddressFamily::Inet, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None).map_err(|e| format!("socket: {}", errno_text(e)))
}

/// Carry out `steps`, one event line each. `Err` names the interface and
/// the step that failed; the steps after it are not tried.
pub fn apply(fd: std::os::fd::BorrowedFd<'_>, steps: &[Step<'_>]) -> Result<(), String> {
    for s in steps {
        let r = match s.op {
            Op::Address(ip) => crate::sys::net::set_address(fd, s.interface, ip),
            Op::Netmask(m) => crate::sys::net::set_netmask(fd, s.interface, m),
            Op::Up => crate::sys::net::interface_up(fd, s.interface),
            Op::DefaultRoute(gw) => crate::sys::net::add_default_route(fd, s.interface, gw),
        };
        let r = match r {
            Err(e) if already_done(s.op, e) => Ok("present"),
            r => r.map(|()| "ok"),
        };
        let mut ev = Event::info("net.step").kv("interface", s.interface).kv("step", s.op.name());
        ev = match s.op {
            Op::Address(ip) | Op::Netmask(ip) => ev.kv("value", Quad(ip)),
            Op::DefaultRoute(gw) => ev.kv("gateway", Quad(gw)),
            Op::Up => ev,
        };
        match r {
            Ok(how) => ev.kv("result", how).emit(),
            Err(e) => {
                ev.result(&Err::<(), _>(errno_text(e))).emit();
                return Err(format!("{}: {}: {}", s.interface, s.op.name(), errno_text(e)));
            }
        }
    }
    Ok(())
}

/// Carry out the board's static plan. `Err` names the interface and step.
pub fn run(networks: &[Network]) -> Result<usize, String> {
    let steps = plan(networks);
    let sock = ioctl_socket()?;
    apply(std::os::fd::AsFd::as_fd(&sock), &steps)?;
    Ok(steps.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(interface: &str, address: &str, gateway: Option<&str>) -> Network {
        let s = |v: &str| v.try_into().unwrap();
        Network { interface: s(interface), address: Some(address.try_into().unwrap()), gateway: gateway.map(s), dhcp: false }
    }

    #[test]
    fn steps_in_order_with_route_last() {
        let nets = [net("eth0", "10.0.2.15/24", Some("10.0.2.2")), net("eth1", "192.168.7.1/16", None)];
        let got: Vec<(&str, Op)> = plan(&nets).into_iter().map(|s| (s.interface, s.op)).collect();
        assert_eq!(
            got,
            [
                ("eth0", Op::Address([10, 0, 2, 15])),
                ("eth0", Op::Netmask([255, 255, 255, 0])),
                ("eth0", Op::Up),
                ("eth0", Op::DefaultRoute([10, 0, 2, 2])),
                ("eth1", Op::Address([192, 168, 7, 1])),
                ("eth1", Op::Netmask([255, 255, 0, 0])),
                ("eth1", Op::Up),
            ]
        );
        assert!(plan(&[]).is_empty());
    }

    #[test]
    fn dhcp_entries_get_no_static_steps_and_leases_the_same_steps() {
        let mut dhcp = net("eth0", "10.0.2.15/24", None);
        dhcp.address = None;
        dhcp.dhcp = true;
        let nets = [dhcp, net("eth1", "192.168.7.1/24", None)];
        let got: Vec<&str> = plan(&nets).into_iter().map(|s| s.interface).collect();
        assert_eq!(got, ["eth1", "eth1", "eth1"]);
        let mut lease = crate::host::dhcp::client::Lease {
            address: [10, 0, 2, 15],
            netmask: [255, 255, 255, 0],
            router: Some([10, 0, 2, 2]),
            dns: Default::default(),
            server: [10, 0, 2, 2],
            lease_s: 86_400,
            t1_s: 43_200,
            t2_s: 75_600,
        };
        let ops: Vec<Op> = lease_steps("eth0", &lease).into_iter().map(|s| s.op).collect();
        assert_eq!(ops, [Op::Address([10, 0, 2, 15]), Op::Netmask([255, 255, 255, 0]), Op::Up, Op::DefaultRoute([10, 0, 2, 2])]);
        lease.router = None;
        assert_eq!(lease_steps("eth0", &lease).len(), 3);
    }

    #[test]
    fn eexist_is_done_only_for_address_and_route() {
        assert!(already_done(Op::Address([1; 4]), Errno::EEXIST));
        assert!(already_done(Op::DefaultRoute([1; 4]), Errno::EEXIST));
        assert!(!already_done(Op::Up, Errno::EEXIST));
        assert!(!already_done(Op::DefaultRoute([1; 4]), Errno::ENETUNREACH));
    }

    #[test]
    fn quads_print() {
        assert_eq!(Quad([10, 0, 2, 255]).to_string(), "10.0.2.255");
    }
}
