//! The console and output scenarios: a console whose reader stops, a
//! container flooding its output beside a heartbeat, and a container
//! printing terminal controls.
//!
//! - `console-stall`: the console is a socket the harness stops reading for
//!   [`STALL`] once the agent says `AGENT stall-ready` (a container's output
//!   is mirrored there, so the console has more to take than it can). berth
//!   must go on supervising: the agent's `berthctl status` calls are all
//!   answered, the crash-looping `crasher` is restarted meanwhile, the
//!   watchdog (armed, 10 s or less) never resets the machine (QEMU runs with
//!   `-no-reboot`: a reset would end it); once the reader is back the
//!   console shows `log.dropped sink=console count=N` with N > 0.
//! - `flood`: `flood` prints as fast as it can for 20 s beside `heartbeat`
//!   (a line every 100 ms carrying CLOCK_MONOTONIC), on a board that keeps
//!   output off the console (the shipped default). From the log store's
//!   files (the agent reads them): the heartbeat's lines were stored less
//!   than [`HEARTBEAT_P99_MS`] after they were written (p99); the flood's
//!   stored lines in its steady part are at most the default rate
//!   (`manifest::LOG_LINES_PER_S`) and at least half of it; every line it
//!   wrote was either stored or counted in `container.log.limited`.
//! - `output-controls`: `controls` prints one line of terminal controls
//!   (ESC, 7- and 8-bit CSI, OSC, a carriage return, U+202E; see
//!   [`crate::controls`]) and sends controls as its `STATUS=`. The raw
//!   console bytes of every line holding its mark carry none of them and
//!   show the escaped line; so do the bytes of `berthctl logs controls`
//!   and of the log store's file (both the same escaped text after the
//!   time), and `controls`' line of `berthctl status` ends with the note
//!   berth kept, the controls left out. The agent passes on those bytes as
//!   hex; the harness judges them ([`crate::controls`]).

use crate::controls::{self as ctl, MARK};
use crate::machine::Machine;
use crate::scenario::{case, Case};
use crate::scenarios::{expect_boot, field_is, limits, spec, BootSpec, Launch};
use std::sync::Arc;
use std::time::Duration;

/// How long the harness stops reading the console.
pub const STALL: Duration = Duration::from_secs(30);
/// The heartbeat's p99 storage delay must be below this.
pub const HEARTBEAT_P99_MS: u64 = 500;
/// The default output rate (`manifest::LOG_LINES_PER_S`) and burst.
pub const RATE: u64 = 100;
pub const BURST: u64 = 200;

pub fn cases(l: Arc<dyn Launch>) -> Vec<Case> {
    let arch = l.arch().to_string();
    let l2 = Arc::clone(&l);
    let l3 = Arc::clone(&l);
    let mut cases = vec![case(format!("{arch}/flood"), move || flood(l2.as_ref())), case(format!("{arch}/output-controls"), move || controls(l3.as_ref()))];
    // x86_64 only: there the console is a 16550 UART, whose kernel console
    // driver gives up on a character after a bounded wait. The ARM boards'
    // PL011 console driver spins without a bound while its FIFO is full, and
    // QEMU's PL011 never drains while the socket is not read (real hardware
    // drains at its baud rate): any kernel message then holds the guest's
    // CPU until the watchdog fires, whatever berth does.
    if arch == "x86_64" {
        cases.insert(0, case(format!("{arch}/console-stall"), move || console_stall(l.as_ref())));
    }
    cases
}

fn measure(m: &mut Machine, name: &str, timeout: Duration) -> Result<u64, String> {
    m.expect_agent_measure(name, timeout)
}

fn console_stall(l: &dyn Launch) -> Result<(), String> {
    let lim = limits(l.arch());
    let mut m = l.boot(&BootSpec { variant: "console-stall", console_socket: true, ..spec("console-stall", "console-stall") })?;
    expect_boot(&mut m, &lim)?;
    m.set_cursor(0);
    let open = m.expect_event("watchdog.open", lim.step)?;
    field_is(&open, "result", "ok")?;
    let timeout: f64 = open.get("timeout_s").and_then(|v| v.parse().ok()).ok_or("watchdog.open has no timeout_s")?;
    if timeout >= STALL.as_secs_f64() {
        return Err(format!("the watchdog's timeout ({timeout} s) is not shorter than the stall"));
    }
    m.expect_line("AGENT stall-ready", lim.boot)?;
    m.pause_console(true)?;
    std::thread::sleep(STALL);
    if let Some(st) = m.exit_status() {
        return Err(format!("QEMU ended during the stall ({st}): the watchdog reset the machine?"));
    }
    m.pause_console(false)?;
    let resumed = m.cursor();
    let dropped = m.expect_event_where("log.dropped", |e| e.get("sink") == Some("console"), lim.step)?;
    let count: u64 = dropped.get("count").and_then(|c| c.parse().ok()).unwrap_or(0);
    if count == 0 {
        return Err(format!("log.dropped sink=console says count={:?}, want more than 0", dropped.get("count")));
    }
    m.set_cursor(resumed);
    let watch = Duration::from_secs(45) + lim.step;
    let answered = measure(&mut m, "stall_status_answered", watch)?;
    let unanswered = measure(&mut m, "stall_status_unanswered", lim.step)?;
    let worst = measure(&mut m, "stall_status_worst_ms", lim.step)?;
    let restarts = measure(&mut m, "stall_crasher_restarts", lim.step)?;
    m.expect_line("AGENT done", lim.step)?;
    // 45 s of a call every 0.5 s plus its own time.
    if unanswered > 0 || answered < 20 {
        return Err(format!("berthctl status during the stall: {answered} answered, {unanswered} not (in 10 s)"));
    }
    if worst > 2000 {
        return Err(format!("berthctl status took up to {worst} ms during the stall"));
    }
    // A run of 1 s and a 0.5 s delay: about 30 restarts in 45 s.
    if restarts < 10 {
        return Err(format!("crasher was restarted {restarts} times during the stall, want at least 10"));
    }
    let boots = m.events().iter().filter(|e| e.name == "boot.start" && e.get("stage") == Some("initramfs")).count();
    if boots != 1 || m.exit_status().is_some() {
        return Err(format!("{boots} boots seen, QEMU {:?}: the machine was reset", m.exit_status()));
    }
    Ok(())
}

fn flood(l: &dyn Launch) -> Result<(), String> {
    let lim = limits(l.arch());
    let mut m = l.boot(&BootSpec { variant: "flood", ..spec("flood", "flood") })?;
    expect_boot(&mut m, &lim)?;
    let ready = m.cursor();
    let wait = Duration::from_secs(180) + lim.boot;
    let hb_lines = measure(&mut m, "flood_heartbeat_lines", wait)?;
    let p99 = measure(&mut m, "flood_heartbeat_p99_ms", lim.step)?;
    let max = measure(&mut m, "flood_heartbeat_max_ms", lim.step)?;
    let wrote = measure(&mut m, "flood_wrote", lim.step)?;
    let stored = measure(&mut m, "flood_stored", lim.step)?;
    let steady = measure(&mut m, "flood_steady_lines", lim.step)?;
    let steady_ms = measure(&mut m, "flood_steady_ms", lim.step)?;
    m.expect_line("AGENT done", lim.step)?;
    // The output of the flood was never mirrored: the board keeps it off.
    m.set_cursor(ready);
    if let Some(e) = m.events().iter().find(|e| e.name == "container.log") {
        return Err(format!("a container line reached the console on a board that keeps them off: {:?}", e.fields));
    }
    // 20 s at one line per 100 ms, less the emulator's hiccups.
    if hb_lines < 100 {
        return Err(format!("only {hb_lines} heartbeat lines were stored during the flood"));
    }
    if p99 >= HEARTBEAT_P99_MS {
        return Err(format!("heartbeat lines were stored {p99} ms after they were written (p99; max {max} ms), want under {HEARTBEAT_P99_MS}"));
    }
    // The flood's loss is counted: what it wrote was stored or counted.
    let limited: u64 = m
        .events()
        .iter()
        .filter(|e| e.name == "container.log.limited" && e.get("name") == Some("flood"))
        .filter_map(|e| e.get("count")?.parse::<u64>().ok())
        .sum();
    if limited == 0 || stored + limited != wrote {
        return Err(format!("flood wrote {wrote} lines: {stored} stored + {limited} counted as limited"));
    }
    // The steady rate is the default's, and the flood is not starved either.
    let secs = steady_ms as f64 / 1e3;
    let rate = steady as f64 / secs.max(1.0);
    if secs < 10.0 || rate > RATE as f64 * 1.02 + 1.0 / secs || rate < RATE as f64 / 2.0 {
        return Err(format!("flood: {steady} lines stored in {secs:.1} s of steady flooding ({rate:.1}/s), want at most {RATE}/s"));
    }
    if stored > BURST + RATE * 25 {
        return Err(format!("flood: {stored} lines stored in all, more than the burst and 25 s at the default rate"));
    }
    Ok(())
}

/// The bytes the agent passed on from `source` (`AGENT raw source=...`).
fn agent_raw(m: &mut Machine, source: &str, timeout: Duration) -> Result<Vec<u8>, String> {
    let head = format!("AGENT raw source={source} ");
    let line = m.expect_line(&head, timeout)?;
    let rest = line.split_once(&head).map(|(_, r)| r.trim()).unwrap_or("");
    match rest.strip_prefix("hex=") {
        Some(h) => ctl::unhex(h).ok_or_else(|| format!("the agent's {source} bytes are not hex: {}", ctl::visible(h.as_bytes()))),
        None => Err(format!("the agent found no {source} line: {}", ctl::visible(rest.as_bytes()))),
    }
}

fn controls(l: &dyn Launch) -> Result<(), String> {
    let lim = limits(l.arch());
    let mut m = l.boot(&BootSpec { variant: "controls", ..spec("output-controls", "controls") })?;
    expect_boot(&mut m, &lim)?;
    // The agent waits up to 120 s for each source.
    let wait = Duration::from_secs(120) + lim.step;
    let logs = agent_raw(&mut m, "logs", wait)?;
    let store = agent_raw(&mut m, "store", wait)?;
    let status = agent_raw(&mut m, "status", wait)?;
    m.expect_line("AGENT done", lim.step)?;
    // The console's copy, found by its mark whatever else the line holds.
    m.set_cursor(0);
    m.expect_line(MARK, lim.step)?;
    let verdicts = [
        ctl::check_console(&m.raw_lines()).map(|_| ()),
        ctl::check_stored("berthctl logs controls", &logs),
        ctl::check_stored("the log store's file", &store),
        ctl::check_note(&status),
    ];
    let failed: Vec<String> = verdicts.into_iter().filter_map(Result::err).collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("\n"))
    }
}
