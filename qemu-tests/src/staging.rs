//! Staging off PID 1's loop, under QEMU: the `update-big` variant's data
//! partition holds release 1 and `/data/test/big.bundle`, release 2 whose
//! `sensor` image carries 100 MiB of incompressible bytes
//! (`qemu-tests/manifests/update/v2-big/`).
//!
//! - `update-big` (armv7, aarch64): `berthctl update` of the big bundle with
//!   the board's 10 s watchdog armed. It is staged, switched to and
//!   committed without a reset (one boot); `berthctl status`, timed by the
//!   agent while berth says a staging is in progress, answers every time
//!   within 500 ms (at least 3 calls); the loop's worst stall over the
//!   update (`update.done loop_max_ms`, `pet_late_max_ms`) is under 100 ms,
//!   and no `loop.stall` is reported.
//! - `stage-interrupted` (x86_64): the big bundle is dropped into the inbox;
//!   its staging is cut by killing QEMU (a reset), on the same data
//!   partition twice (attempts 1 and 2). The third boot does not stage it
//!   again: it quarantines it with its cause, `berthctl release` shows it,
//!   the inbox is empty, and release 1 runs on.

use crate::event::Event;
use crate::machine::Machine;
use crate::scenario::Case;
use crate::scenarios::{agent_pass, expect_boot, expect_poweroff, field_is, limits, no_errors, spec, BootSpec, Launch};
use std::sync::Arc;
use std::time::Duration;

/// Longest the big bundle's staging may take under TCG (armv7 is slowest).
const BIG_STAGING: Duration = Duration::from_secs(600);
/// How long after the staging starts the harness cuts it.
const CUT_AFTER: Duration = Duration::from_millis(1500);
/// The loop's worst stall over an update, in ms.
const STALL_MAX_MS: f64 = 100.0;
/// The slowest `berthctl status` allowed while staging, in ms.
const STATUS_MAX_MS: u64 = 500;

/// The staging scenarios for one architecture.
pub fn cases(l: Arc<dyn Launch>) -> Vec<Case> {
    use crate::scenarios::Check;
    let arch = l.arch().to_string();
    let mut table: Vec<(&str, Check)> = Vec::new();
    if arch == "armv7" || arch == "aarch64" {
        table.push(("update-big", update_big));
    }
    if arch == "x86_64" {
        table.push(("stage-interrupted", stage_interrupted));
    }
    crate::scenarios::cases_of(&l, table)
}

fn big_spec(name: &str, mode: &str) -> BootSpec {
    BootSpec { variant: "update-big", ..spec(name, mode) }
}

/// A number field of an event.
fn number(e: &Event, key: &str) -> Result<f64, String> {
    e.get(key).and_then(|v| v.parse().ok()).ok_or_else(|| format!("event {} has no number {key}: {:?}", e.name, e.fields))
}

/// The agent's `status-while-staging` detail: (samples, max_ms).
pub fn parse_status_detail(line: &str) -> Option<(u64, u64)> {
    let field = |k: &str| line.split_whitespace().find_map(|w| w.trim_start_matches("detail=").trim_matches('"').strip_prefix(k)?.parse().ok());
    Some((field("samples=")?, field("max_ms=")?))
}

fn update_big(l: &dyn Launch) -> Result<(), String> {
    let lim = limits(l.arch());
    let mut m = l.boot(&big_spec("update-big", "update-big"))?;
    expect_boot(&mut m, &lim)?;
    let wd = m.events().into_iter().find(|e| e.name == "watchdog.open").ok_or("no watchdog.open: the board's watchdog is not armed")?;
    field_is(&wd, "timeout_s", "10")?;
    field_is(&wd, "result", "ok")?;
    let stage = m.expect_event("update.stage", lim.boot)?;
    field_is(&stage, "bundle", "/data/test/big.bundle")?;
    let staged = m.expect_event("update.staged", BIG_STAGING)?;
    field_is(&staged, "version", "2")?;
    eprintln!("  update-big: staged in {:.1} s", staged.t - stage.t);
    let at_staged = m.cursor();
    agent_pass(&mut m, "update-big", &lim)?;
    agent_pass(&mut m, "status-while-staging", &lim).map_err(|e| format!("{e} (want at least 3 samples, each under {STATUS_MAX_MS} ms)"))?;
    let line = m.lines().into_iter().rev().find(|l| l.contains("AGENT check=status-while-staging ")).unwrap_or_default();
    let (samples, max_ms) = parse_status_detail(&line).ok_or_else(|| format!("unreadable status samples: {line}"))?;
    if samples < 3 || max_ms >= STATUS_MAX_MS {
        return Err(format!("berthctl status while staging: {samples} samples, slowest {max_ms} ms"));
    }
    eprintln!("  update-big: {samples} berthctl status calls while staging, slowest {max_ms} ms");
    m.set_cursor(at_staged);
    field_is(&m.expect_event("release.commit", lim.step)?, "version", "2")?;
    let done = m.expect_event("update.done", lim.step)?;
    let (handler, pet) = (number(&done, "loop_max_ms")?, number(&done, "pet_late_max_ms")?);
    eprintln!("  update-big: worst loop stall over the update {handler:.1} ms ({}), watchdog pet late {pet:.1} ms", done.get("loop_max_kind").unwrap_or("?"));
    if handler >= STALL_MAX_MS || pet >= STALL_MAX_MS {
        return Err(format!("the loop stalled during the update: handler {handler} ms, pet late {pet} ms (want under {STALL_MAX_MS})"));
    }
    agent_pass(&mut m, "update-commit", &lim)?;
    expect_poweroff(&mut m, "SIGTERM", &lim)?;
    let events = m.events();
    let boots = events.iter().filter(|e| e.name == "boot.start" && e.is("stage", "initramfs")).count();
    if boots != 1 {
        return Err(format!("{boots} boots: the watchdog reset the board"));
    }
    let stalls: Vec<&Event> = events.iter().filter(|e| e.name == "loop.stall").collect();
    if !stalls.is_empty() {
        return Err(format!("loop.stall reported: {:?}", stalls.iter().map(|e| &e.fields).collect::<Vec<_>>()));
    }
    no_errors(&m, &[])
}

/// Cut one boot's staging of the big bundle (attempt `attempt`) by killing
/// QEMU while it runs; the data image it leaves.
fn cut_staging(l: &dyn Launch, data: Option<std::path::PathBuf>, attempt: u8) -> Result<std::path::PathBuf, String> {
    let lim = limits(l.arch());
    let mut m = l.boot(&BootSpec { data, ..big_spec(&format!("stage-interrupted-{attempt}"), "stage-interrupt") })?;
    expect_boot(&mut m, &lim)?;
    if attempt == 1 {
        agent_pass(&mut m, "inbox-drop", &lim)?;
    }
    let st = m.expect_event_where("update.stage", |e| e.get("attempt").is_some(), lim.step * 2)?;
    field_is(&st, "bundle", "/data/berth/inbox/big.bundle")?;
    field_is(&st, "attempt", &attempt.to_string())?;
    field_is(&st, "taking", &format!("big.bundle.taking{attempt}"))?;
    std::thread::sleep(CUT_AFTER);
    m.poll();
    m.kill();
    let late: Vec<String> =
        m.events().iter().filter(|e| ["update.staged", "update.refused"].contains(&e.name.as_str())).map(|e| format!("{} {:?}", e.name, e.fields)).collect();
    if !late.is_empty() {
        return Err(format!("the staging ended before the cut ({late:?}): nothing was interrupted"));
    }
    m.data_image().map(std::path::Path::to_path_buf).ok_or_else(|| "the boot has no data image".to_string())
}

fn stage_interrupted(l: &dyn Launch) -> Result<(), String> {
    let lim = limits(l.arch());
    let data = cut_staging(l, None, 1)?;
    let data = cut_staging(l, Some(data), 2)?;
    let mut m: Machine = l.boot(&BootSpec { data: Some(data.clone()), ..big_spec("stage-interrupted-3", "stage-interrupt") })?;
    expect_boot(&mut m, &lim)?;
    let q = m.expect_event("update.quarantine", lim.step)?;
    field_is(&q, "bundle", "/data/berth/inbox/big.bundle")?;
    let cause = q.get("cause").unwrap_or("");
    if !cause.contains("interrupted 2 times") {
        return Err(format!("quarantined with cause {cause:?}, want the two interrupted stagings"));
    }
    agent_pass(&mut m, "quarantined", &lim)?;
    agent_pass(&mut m, "inbox-empty", &lim)?;
    expect_poweroff(&mut m, "SIGTERM", &lim)?;
    let events = m.events();
    if let Some(e) = events.iter().find(|e| e.name == "update.stage" || e.name == "update.staged") {
        return Err(format!("the third boot staged the bundle again: {} {:?}", e.name, e.fields));
    }
    let accepted: Vec<&Event> = events.iter().filter(|e| e.name == "release.accepted").collect();
    match accepted.as_slice() {
        [one] => field_is(one, "version", "1")?,
        other => return Err(format!("want release 1 accepted once, saw {:?}", other.iter().map(|e| &e.fields).collect::<Vec<_>>())),
    }
    let _ = std::fs::remove_file(&data);
    no_errors(&m, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_samples_parse() {
        let line = "AGENT check=status-while-staging result=pass detail=\"samples=12 max_ms=87 first_t=20.1 last_t=31.0 calls=14\"";
        assert_eq!(parse_status_detail(line), Some((12, 87)));
        assert_eq!(parse_status_detail("AGENT check=x detail=\"nothing\""), None);
    }
}
