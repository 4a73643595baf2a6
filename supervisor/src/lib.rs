//! berth: a static PID 1 supervisor for confined containers on embedded Linux.
//!
//! Data flows one way: board config -> plans -> actions -> events. Pure
//! modules (`board`, `mount` plans, `supervise::action_for`) decide; the thin
//! `sys` seam and `nix` act.

#[cfg(feature = "host")]
pub mod bench;
pub mod board;
pub mod apparmor;
pub mod boot;
pub mod budget;
pub mod cgroup;
pub mod container;
pub mod console;
pub mod containers;
pub mod dhcp;
/// Test-only hooks: only in test builds and with the `test-hooks` feature.
#[cfg(any(test, feature = "test-hooks"))]
pub mod hooks;
pub mod logwrites;
pub mod harden;
pub mod control;
#[cfg(feature = "host")]
pub mod imageinfo;
pub mod images;
pub mod ctlsock;
pub mod ctlclient;
pub mod manifest;
pub mod release;
pub mod restart;
pub mod seccomp;
pub mod stager;
pub mod statusview;
pub mod log;
pub mod logstore;
pub mod modules;
pub mod mount;
pub mod net;
pub mod notify;
pub mod push;
pub mod supervise;
pub mod trial;
pub mod outcome;
pub mod sys;
pub mod verity;
pub mod watchdog;
