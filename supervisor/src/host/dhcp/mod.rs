//! A DHCPv4 client for `berth net`: interfaces with `dhcp = true` get their
//! address, netmask and default route from a lease, which berth keeps
//! renewing for as long as the `net` service runs.
//!
//! The pure parts must not do I/O or read the clock: the sockets and the
//! clock are [`run`]'s alone.
//!
//! Split like the rest of berth: [`packet`] builds and parses messages and
//! [`client`] decides what to send and when (both pure, unit tested with
//! the time passed in); [`run`] owns the sockets and the clock and applies
//! leases through the ioctls in `crate::sys::net`. There is no DNS resolver
//! file, no DHCPDECLINE (no ARP probe of the offered address) and no IPv6.

pub mod client;
pub mod packet;
pub mod run;
pub mod servers;
