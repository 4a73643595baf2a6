//! The name servers of a DHCP lease (option 6), bounded. It owns only the
//! list; it must not resolve names or write `resolv.conf` (that is
//! `crate::host::resolv`).

/// Most name servers kept from a lease (as many as a C library's resolver
/// reads from `resolv.conf`).
pub const DNS_MAX: usize = 3;

/// Up to [`DNS_MAX`] IPv4 name servers, in the server's order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Servers {
    n: u8,
    a: [[u8; 4]; DNS_MAX],
}

impl Servers {
    /// The first [`DNS_MAX`] addresses of an option 6 value (a multiple of
    /// four bytes).
    pub fn from_option(v: &[u8]) -> Servers {
        let mut s = Servers::default();
        for q in v.chunks_exact(4).take(DNS_MAX) {
            s.a[usize::from(s.n)] = [q[0], q[1], q[2], q[3]];
            s.n += 1;
        }
        s
    }
    pub fn iter(&self) -> impl Iterator<Item = [u8; 4]> + '_ {
        self.a.iter().take(usize::from(self.n)).copied()
    }
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }
}
