//! Common: what every group shares: the event log and the log store it
//! writes into. A leaf: it must not use any other group of the crate.

pub mod log;
pub mod logstore;
#[cfg(test)]
pub(crate) mod roottests;
