//! The control socket under more clients than it has slots, and a client
//! that never reads its reply (`ctl-clients`, x86_64, on the `logsock`
//! variant; the agent's part is `berth-test-agent/logsock.rs`).
//!
//! - Ten clients connect at once and say nothing: exactly berth's four
//!   slots' clients are answered when they then ask for the status, and
//!   exactly six are turned away at once with `busy: too many control
//!   clients` (`ctl-concurrent`).
//! - A client connects while berth's side of its connection gets a socket
//!   buffer smaller than its reply (`net.core.wmem_default` lowered for
//!   that connect only), asks for 64 lines of `noisy-a` (about 14 KB) and
//!   never reads. berth writes what fits, gives up after its write timeout
//!   (one `control.reply result=error`) and closes: the client finds part
//!   of the frame, then the end. Meanwhile ten `berthctl status` are
//!   answered (each under 2 s); the loop's worst handler of the last 10 s
//!   is that `control` request, at least [`WRITE_TIMEOUT_MS`] (the path
//!   was taken) and under [`STALL_BOUND_MS`]; no `loop.stall`; ten clients
//!   at once again get exactly four answers and six `busy` (the slot is
//!   free again); berth answers at the end (`ctl-nonreader`, `ctl-after`).

use crate::scenarios::{agent_pass, expect_boot, limits, spec, BootSpec, Launch};
use std::time::Duration;

/// berth's write timeout for a reply (`ctlsock::send`), less a little for
/// the clock's grain.
pub const WRITE_TIMEOUT_MS: u64 = 190;
/// The longest the non-reader may hold the loop: two write timeouts and
/// room for the emulator.
pub const STALL_BOUND_MS: u64 = 1000;

pub fn ctl_clients(l: &dyn Launch) -> Result<(), String> {
    let lim = limits(l.arch());
    let mut m = l.boot(&BootSpec { variant: "logsock", ..spec("ctl-clients", "ctl-clients") })?;
    expect_boot(&mut m, &lim)?;
    let ready = m.cursor();
    // noisy-a is done after 100 s of uptime.
    let wait = Duration::from_secs(300) + lim.boot;
    agent_pass(&mut m, "ctl-concurrent", &crate::scenarios::Limits { step: wait, ..limits(l.arch()) })?;
    let ms = m.expect_agent_measure("ctl_nonreader_loop_ms", lim.step * 2)?;
    agent_pass(&mut m, "ctl-nonreader", &lim)?;
    agent_pass(&mut m, "ctl-after", &lim)?;
    m.expect_line("AGENT done", lim.step)?;
    if !(WRITE_TIMEOUT_MS..STALL_BOUND_MS).contains(&ms) {
        return Err(format!("the non-reader's request held the loop {ms} ms, want {WRITE_TIMEOUT_MS} to {STALL_BOUND_MS}"));
    }
    m.set_cursor(ready);
    let events = m.events();
    let count = |name: &str| events.iter().filter(|e| e.name == name).count();
    let failed_replies: Vec<_> = events.iter().filter(|e| e.name == "control.reply").map(|e| e.fields.clone()).collect();
    if failed_replies.len() != 1 || events.iter().any(|e| e.name == "control.reply" && e.get("result") != Some("error")) {
        return Err(format!("want exactly one control.reply result=error (the non-reader), got {failed_replies:?}"));
    }
    if count("loop.stall") != 0 || count("control.timeout") != 0 {
        return Err(format!("{} loop.stall and {} control.timeout events, want none", count("loop.stall"), count("control.timeout")));
    }
    Ok(())
}
