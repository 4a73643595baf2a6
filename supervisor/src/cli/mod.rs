//! The command lines: `berthctl` (arguments, client, status output) and the
//! host build's `berth inspect`, `berth bench-start` and the guest bench
//! driver (`bench-guest`). They talk to PID 1
//! only through the control socket; they must not run PID 1's code paths.

#[cfg(feature = "host")]
pub mod bench;
#[cfg(feature = "host")]
pub mod benchguest;
pub mod ctlargs;
pub mod ctlclient;
pub mod ctlstatus;
#[cfg(feature = "host")]
pub mod imageinfo;
