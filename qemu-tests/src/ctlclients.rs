//! The control socket under more clients than it has slots, and a client
//! that never reads its reply (`ctl-clients`, x86_64, on the `logsock`
//! variant; the agent's part is `berth-test-agent/logsock.rs`).
//!
//! - Ten clients connect at once and say nothing: exactly berth's four
//!   slots' clients are answered when they then ask for the status, and
//!   exactly six are turned away at once with `busy: too many control
//!   clients` (`ctl-concurrent`).
//! - A client connects while the system's default socket buffer is
//!   smaller than its reply (`net.core.wmem_default` lowered to its least
//!   for that connect only), asks for 64 lines of `noisy-a` (about 13 KB)
//!   and never reads. berth's side of each connection has room for a whole
//!   reply whatever that default: the write does not wait, berth closes,
//!   and the client finds its whole reply, then the end; no
//!   `control.reply` error. Meanwhile ten `berthctl status` are answered
//!   (each under 2 s); the loop's worst handler of the last 10 s stays
//!   under [`WRITE_TIMEOUT_MS`] (berth never waited on the write); no
//!   `loop.stall`, no `control.timeout`; ten clients at once again get
//!   exactly four answers and six `busy` (the slot is free again); berth
//!   answers at the end (`ctl-nonreader`, `ctl-after`). Before berth sized
//!   the buffer, that request held the loop 411 ms (two write timeouts)
//!   and the client got 4480 of its 13257 bytes.

/// berth's control protocol version (`berth::supervise::control::VERSION`,
/// one postcard byte), which the agent's hand-made frames carry; xtask's
/// unit test holds the two equal.
pub const PROTOCOL_VERSION: u8 = 7;

use crate::scenarios::{agent_pass, expect_boot, limits, spec, BootSpec, Launch};
use std::time::Duration;

/// berth's write timeout for a reply (`ctlsock::send`), less a little for
/// the clock's grain: a handler that waited on a write took longer.
pub const WRITE_TIMEOUT_MS: u64 = 190;

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
    if ms >= WRITE_TIMEOUT_MS {
        return Err(format!("the loop's worst handler around the non-reader took {ms} ms, want under {WRITE_TIMEOUT_MS} (no wait on its write)"));
    }
    m.set_cursor(ready);
    let events = m.events();
    let count = |name: &str| events.iter().filter(|e| e.name == name).count();
    let failed_replies: Vec<_> = events.iter().filter(|e| e.name == "control.reply").map(|e| e.fields.clone()).collect();
    if !failed_replies.is_empty() {
        return Err(format!("want no control.reply error (every reply fits its connection's buffer), got {failed_replies:?}"));
    }
    if count("loop.stall") != 0 || count("control.timeout") != 0 {
        return Err(format!("{} loop.stall and {} control.timeout events, want none", count("loop.stall"), count("control.timeout")));
    }
    Ok(())
}
