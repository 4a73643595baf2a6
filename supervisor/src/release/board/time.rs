//! The board's `[time]` table: the SNTP server `berth time` sets the clock
//! from (`crate::host::time`). Optional: without it nothing sets the
//! clock (a board with a battery-backed RTC may not need it). It owns the
//! table and its checks; it must not reach the network.
//!
//! The server is an IPv4 address: `berth time` resolves no names (the
//! host has no resolver; a DHCP lease's name servers are for containers).

use super::{err, BoardError};
use serde::{Deserialize, Serialize};

/// Longest server text (`255.255.255.255`).
pub const SERVER_MAX: usize = 15;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeSync {
    /// The SNTP server's IPv4 address.
    pub server: heapless::String<SERVER_MAX>,
    /// Its UDP port (default 123).
    #[serde(default = "default_port")]
    pub port: u16,
    /// Seconds between two synchronisations once one has succeeded
    /// (64..=86400, default 1024).
    #[serde(default = "default_poll")]
    pub poll_s: u32,
}

fn default_port() -> u16 {
    123
}

fn default_poll() -> u32 {
    1024
}

impl TimeSync {
    /// The server's address.
    pub fn address(&self) -> Option<std::net::Ipv4Addr> {
        self.server.parse().ok()
    }

    pub(super) fn validate(&self) -> Result<(), BoardError> {
        match self.address() {
            Some(a) if !a.is_unspecified() && !a.is_broadcast() && !a.is_multicast() => {}
            _ => return Err(err("time.server", "must be a unicast IPv4 address such as 192.168.1.1 (no names: the host resolves none)")),
        }
        if self.port == 0 {
            return Err(err("time.port", "must be 1..65535"));
        }
        if !(64..=86_400).contains(&self.poll_s) {
            return Err(err("time.poll_s", "must be between 64 and 86400"));
        }
        Ok(())
    }
}
