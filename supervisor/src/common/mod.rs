//! Common: what every group shares: shared names and limits, small file
//! helpers, wire framing, the event log and the log store it writes into.
//! A leaf: it must not use any other group of the crate.

pub mod blockname;
pub mod files;
pub mod frame;
pub mod log;
pub mod logstore;
pub mod names;
#[cfg(test)]
pub(crate) mod roottests;
