//! berth: a static PID 1 supervisor for confined containers on embedded Linux.
//!
//! Data flows one way: board config -> plans -> actions -> events. Pure
//! modules (`board`, `mount` plans, `supervise::action_for`) decide; the thin
//! `sys` seam and `nix` act.

pub mod apparmor;
#[cfg(feature = "host")]
pub mod bench;
pub mod blockname;
pub mod board;
pub mod boot;
pub mod budget;
pub mod cgroup;
pub mod console;
pub mod container;
pub mod containers;
pub mod control;
pub mod ctlargs;
pub mod ctlclient;
pub mod ctlsock;
pub mod ctlstatus;
pub mod dhcp;
pub mod harden;
/// Test-only hooks: only in test builds and with the `test-hooks` feature.
#[cfg(any(test, feature = "test-hooks"))]
pub mod hooks;
#[cfg(feature = "host")]
pub mod imageinfo;
pub mod images;
pub mod log;
pub mod logstore;
pub mod logwrites;
pub mod manifest;
pub mod metrics;
pub mod modules;
pub mod mount;
pub mod net;
pub mod notify;
pub mod outcome;
pub mod push;
pub mod release;
pub mod restart;
#[cfg(test)]
mod roottests;
pub mod seccomp;
pub mod stager;
pub mod statusview;
pub mod supervise;
pub mod sys;
pub mod trial;
pub mod verity;
pub mod watchdog;
