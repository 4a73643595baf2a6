//! Interface and route ioctls for `berth net`: one call each, on an
//! `AF_INET` datagram socket, with the kernel's classic `ifreq` and
//! `rtentry` structures.
//!
//! It must not decide addresses or routes: its callers take them from the
//! board config and the DHCP lease.

use nix::errno::Errno;
use std::os::fd::{AsRawFd, BorrowedFd};

/// A `sockaddr` holding an IPv4 address and port 0, built without unsafe:
/// `sa_data` is the port (2 bytes) then the address (4 bytes).
fn sockaddr_v4(ip: [u8; 4]) -> libc::sockaddr {
    let mut data = [0 as libc::c_char; 14];
    for (d, b) in data.iter_mut().skip(2).zip(ip) {
        *d = b as libc::c_char;
    }
    libc::sockaddr { sa_family: libc::AF_INET as libc::sa_family_t, sa_data: data }
}

/// An `ifreq` naming `name` (at most IFNAMSIZ - 1 bytes).
fn ifreq(name: &str) -> Result<libc::ifreq, Errno> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ {
        return Err(Errno::EINVAL);
    }
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { core::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    Ok(req)
}

/// Set IFF_UP on a network interface through `SIOCGIFFLAGS`/`SIOCSIFFLAGS`.
pub fn interface_up(sock: BorrowedFd<'_>, name: &str) -> Result<(), Errno> {
    let mut req = ifreq(name)?;
    // SAFETY: `sock` is an open socket and `req` is a valid, NUL-terminated
    // ifreq that lives across the call; SIOCGIFFLAGS fills ifru_flags.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut req) } < 0 {
        return Err(Errno::last());
    }
    // SAFETY: the kernel just wrote ifru_flags, the active member for these ioctls.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: as above; SIOCSIFFLAGS reads ifru_flags.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS as _, &req) } < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

/// `SIOCSIFADDR` or `SIOCSIFNETMASK`: both take an address in `ifru_addr`.
fn set_ifaddr(sock: BorrowedFd<'_>, name: &str, request: libc::c_ulong, ip: [u8; 4]) -> Result<(), Errno> {
    let mut req = ifreq(name)?;
    req.ifr_ifru.ifru_addr = sockaddr_v4(ip);
    // SAFETY: `sock` is an open socket and `req` a valid, NUL-terminated
    // ifreq whose address member is set; it lives across the call and the
    // kernel only reads it.
    if unsafe { libc::ioctl(sock.as_raw_fd(), request as _, &req) } < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

/// Set an interface's IPv4 address (`SIOCSIFADDR`).
pub fn set_address(sock: BorrowedFd<'_>, name: &str, ip: [u8; 4]) -> Result<(), Errno> {
    set_ifaddr(sock, name, libc::SIOCSIFADDR as libc::c_ulong, ip)
}

/// Set an interface's IPv4 netmask (`SIOCSIFNETMASK`).
pub fn set_netmask(sock: BorrowedFd<'_>, name: &str, mask: [u8; 4]) -> Result<(), Errno> {
    set_ifaddr(sock, name, libc::SIOCSIFNETMASK as libc::c_ulong, mask)
}

/// Remove an interface's IPv4 address: `SIOCSIFADDR` with 0.0.0.0 deletes
/// it, and with the last address go the routes through the interface.
pub fn clear_address(sock: BorrowedFd<'_>, name: &str) -> Result<(), Errno> {
    set_address(sock, name, [0; 4])
}

/// An Ethernet interface's hardware address (`SIOCGIFHWADDR`); another
/// link type is EAFNOSUPPORT.
pub fn hardware_address(sock: BorrowedFd<'_>, name: &str) -> Result<[u8; 6], Errno> {
    let mut req = ifreq(name)?;
    // SAFETY: `sock` is an open socket and `req` a valid, NUL-terminated
    // ifreq that lives across the call; SIOCGIFHWADDR fills ifru_hwaddr.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFHWADDR as _, &mut req) } < 0 {
        return Err(Errno::last());
    }
    // SAFETY: the kernel just wrote ifru_hwaddr, the active member.
    let sa = unsafe { req.ifr_ifru.ifru_hwaddr };
    if sa.sa_family != libc::ARPHRD_ETHER {
        return Err(Errno::EAFNOSUPPORT);
    }
    let mut mac = [0u8; 6];
    for (d, s) in mac.iter_mut().zip(sa.sa_data) {
        *d = s as u8;
    }
    Ok(mac)
}

/// Add the default route via `gateway` on interface `name` (`SIOCADDRT`).
/// EEXIST means the route is already there.
pub fn add_default_route(sock: BorrowedFd<'_>, name: &str, gateway: [u8; 4]) -> Result<(), Errno> {
    let mut dev = [0 as libc::c_char; libc::IFNAMSIZ];
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(Errno::EINVAL);
    }
    for (d, b) in dev.iter_mut().zip(name.as_bytes()) {
        *d = *b as libc::c_char;
    }
    // SAFETY: rtentry is plain old data (the one pointer is set below);
    // all-zero is a valid value.
    let mut rt: libc::rtentry = unsafe { core::mem::zeroed() };
    rt.rt_dst = sockaddr_v4([0; 4]);
    rt.rt_genmask = sockaddr_v4([0; 4]);
    rt.rt_gateway = sockaddr_v4(gateway);
    rt.rt_flags = libc::RTF_UP | libc::RTF_GATEWAY;
    rt.rt_dev = dev.as_mut_ptr();
    // SAFETY: `rt` is a valid rtentry whose `rt_dev` points at a
    // NUL-terminated name in `dev`; both live across the call, and the
    // kernel only reads them.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCADDRT as _, &rt) } < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddr_layout_matches_sockaddr_in() {
        let sa = sockaddr_v4([10, 0, 2, 15]);
        let bytes: Vec<u8> = sa.sa_data.iter().map(|b| *b as u8).collect();
        assert_eq!(sa.sa_family, libc::AF_INET as libc::sa_family_t);
        assert_eq!(&bytes[..6], &[0, 0, 10, 0, 2, 15]);
        assert!(bytes[6..].iter().all(|b| *b == 0));
        assert_eq!(core::mem::size_of::<libc::sockaddr>(), core::mem::size_of::<libc::sockaddr_in>());
    }

    #[test]
    fn interface_names_are_bounded() {
        assert!(ifreq("").is_err());
        assert!(ifreq("abcdefghijklmnop").is_err());
        assert!(ifreq("eth0").is_ok());
    }
}
