//! The command lines: `berthctl` (arguments, client, status output) and the
//! host build's `berth inspect` and `berth bench-start`. They talk to PID 1
//! only through the control socket; they must not run PID 1's code paths.

#[cfg(feature = "host")]
pub mod bench;
pub mod ctlargs;
pub mod ctlclient;
pub mod ctlstatus;
#[cfg(feature = "host")]
pub mod imageinfo;
