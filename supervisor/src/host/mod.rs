//! Host services: `berth net` (with its DHCP client), `berth receive` and
//! `berth console`, each a child process of PID 1, never PID 1's loop.
//!
//! They must not run inside PID 1's loop: each is its own child process,
//! started and restarted by the loop as a board service (`[[service]]`).

pub mod console;
pub mod dhcp;
pub mod net;
pub mod push;
pub mod resolv;
pub mod sntp;
pub mod time;
