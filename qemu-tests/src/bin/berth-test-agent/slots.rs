//! The system slot update scenarios' side in the guest
//! (`qemu_tests::slotupdate`): say which slot booted; on the first boot
//! wait for the harness's push (berth reboots into the tried slot); on
//! every later boot wait until no release is on trial, report `berthctl
//! release` and power off.

use super::{act, say, token, wait_release};
use std::fs;
use std::path::Path;

/// Remembers on /data that the first boot happened.
const MARKER: &str = "/data/.agent-slot-update";

pub fn run() {
    let cmdline = fs::read_to_string("/proc/cmdline").unwrap_or_default();
    say(&format!("AGENT slot={}", token(&cmdline, "berth.slot").unwrap_or("none")));
    if !Path::new(MARKER).exists() {
        let _ = fs::write(MARKER, b"1\n");
        say("AGENT waiting=push");
        // berth's reboot into the tried slot ends this run (SIGTERM).
        loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }
    let (ok, text) = wait_release(|r| r.state == "committed");
    say(&format!("AGENT release committed={} text={}", u8::from(ok), qemu_tests::event::quote(&text)));
    act("poweroff", libc::SIGTERM);
}
