//! Host services: `berth net` (with its DHCP client), `berth receive` and
//! `berth console`, each a child process of PID 1, never PID 1's loop.

pub mod console;
pub mod dhcp;
pub mod net;
pub mod push;
