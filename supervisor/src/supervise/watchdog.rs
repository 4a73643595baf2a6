//! The board's hardware watchdog: the last line of defence when PID 1
//! itself stops working.
//!
//! It must not be petted from anywhere but the loop, so that a wedged loop resets the device.
//!
//! berth opens the device named by the board config once its system stage
//! runs, sets the timeout, and pets it from the main loop's own timer every
//! [`pet_interval`]. Petting is the loop's proof of life: if the loop
//! wedges (a system call that never returns, an endless loop), nobody else
//! pets and the hardware resets the board once the timeout runs out. The
//! device is never closed with the magic `V`: a watchdog berth opened stays
//! armed until the machine goes down, so a shutdown that hangs is reset too.
//!
//! For tests, `berthctl debug wedge SECONDS` (root only, over the control
//! socket) blocks the loop on purpose; see `supervise`.

use crate::common::files::errno_text;
use crate::common::log::Event;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

/// How often to pet for a timeout: a third of it, so one late wake-up
/// never costs a reset.
pub fn pet_interval(timeout_s: u32) -> Duration {
    Duration::from_millis(u64::from(timeout_s) * 1000 / 3)
}

/// An open, armed watchdog.
pub struct Watchdog {
    fd: OwnedFd,
    pub timeout_s: u32,
}

impl Watchdog {
    /// Open and arm the board's watchdog; logged either way.
    pub fn open(cfg: &crate::release::board::Watchdog) -> Option<Watchdog> {
        let fd = match std::fs::OpenOptions::new().write(true).open(cfg.device.as_str()) {
            Ok(f) => OwnedFd::from(f),
            Err(e) => {
                Event::error("watchdog.open").kv("device", &cfg.device).kv("result", "error").kv("error", e).emit();
                return None;
            }
        };
        let asked = i32::try_from(cfg.timeout_s).unwrap_or(i32::MAX);
        let timeout_s = match crate::sys::watchdog_set_timeout(fd.as_fd(), asked) {
            Ok(t) => u32::try_from(t).unwrap_or(cfg.timeout_s),
            Err(e) => {
                // The driver's own timeout stays; pet as if it were the board's.
                Event::warn("watchdog.timeout").kv("device", &cfg.device).result(&Err::<(), _>(errno_text(e))).emit();
                cfg.timeout_s
            }
        };
        let w = Watchdog { fd, timeout_s };
        let r = w.pet();
        Event::info("watchdog.open").kv("device", &cfg.device).kv("timeout_s", timeout_s).kv("pet_ms", pet_interval(timeout_s).as_millis()).result(&r).emit();
        Some(w)
    }

    /// One keep-alive.
    pub fn pet(&self) -> Result<(), heapless::String<96>> {
        crate::sys::watchdog_keepalive(self.fd.as_fd()).map_err(errno_text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn petting_is_three_times_per_timeout() {
        assert_eq!(pet_interval(10), Duration::from_millis(3333));
        assert_eq!(pet_interval(2), Duration::from_millis(666));
        assert!(pet_interval(600) * 3 <= Duration::from_secs(600));
    }
}
