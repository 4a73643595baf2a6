//! berth: a static PID 1 supervisor for confined containers on embedded Linux.
//!
//! A group must not use a group after it in the order below: the structure
//! check (xtask) fails on such an edge.
//!
//! Data flows one way: board config -> plans -> actions -> events. Pure
//! modules (`release::board`, `boot::mount` plans, `supervise::action_for`)
//! decide; the thin `sys` seam and `nix` act.
//!
//! The modules are grouped by that flow (see `docs/architecture.md`):
//! `common` (shared names and the event log), `sys`, `release`, `confine`,
//! `supervise`, `host`, `boot` and `cli`.

pub mod boot;
pub mod cli;
pub mod common;
pub mod confine;
pub mod host;
pub mod release;
pub mod supervise;
pub mod sys;
