//! `berthctl status`: its table, its JSON document and its exit code, all
//! from berth's [`StatusReply`] (pure, so every output is tested without a
//! socket).
//!
//! It must not touch the socket.
//!
//! - The table shows only what applies: a host service has no memory
//!   figure and no confinement layers, so its MEMORY is `-` and it has no
//!   `layers:` line. Everything that came from the device (names, states,
//!   notes, the staging line) is printed through [`crate::common::log::escaped`]:
//!   a terminal never receives a control character or bidi override from it.
//! - `--json` is the status file's document ([`crate::supervise::statusview::render`],
//!   format 1), rendered from the reply, so a script reads `status.json` and
//!   `berthctl status --json` with one parser.
//! - The exit code says the state, like `systemctl is-system-running`
//!   ([`state_code`]; the table is in docs/berthctl.md).

use crate::cli::ctlclient::code;
use crate::common::log::escaped;
use crate::supervise::control::{ContainerStatus, StatusReply};
use std::fmt::Write as _;

/// What one entry says about the whole: [`code::OK`], [`code::DEGRADED`]
/// or [`code::NOT_READY`].
pub fn entry_code(c: &ContainerStatus) -> u8 {
    match c.state.as_str() {
        "failed" => code::DEGRADED,
        "running" if c.ready => code::OK,
        // On purpose: stopped by the operator, or a one-shot that ended.
        "stopped" => code::OK,
        // running but not ready, waiting, starting, updating, stopping, and
        // any state a berth of another build may name.
        _ => code::NOT_READY,
    }
}

/// The exit code of `berthctl status`: degraded if anything failed or no
/// release runs (recovery); else not ready while anything is on its way or
/// the release is on trial; else OK.
pub fn state_code(r: &StatusReply) -> u8 {
    let phase = r.release.as_ref().map(|r| r.phase.as_str()).unwrap_or_default();
    let codes = r.entries.iter().map(entry_code).chain(core::iter::once(match phase {
        "recovery" => code::DEGRADED,
        "trial" => code::NOT_READY,
        _ => code::OK,
    }));
    let mut worst = code::OK;
    for c in codes {
        if c == code::DEGRADED {
            return c;
        }
        worst = worst.max(c);
    }
    worst
}

/// The table, one string of lines (each ending in a newline).
pub fn text(r: &StatusReply) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<20} {:<9} {:<8} {:<5} {:>6} {:>10} {:>8} {:>9}  {:<12} NOTE",
        "NAME", "KIND", "STATE", "READY", "PID", "UPTIME", "RESTARTS", "MEMORY", "LAST EXIT"
    );
    for c in r.entries.iter() {
        row(&mut out, c);
    }
    if let Some(rel) = &r.release {
        match rel.phase.as_str() {
            "recovery" => out.push_str("release: none runs (recovery; see `berthctl release`)\n"),
            phase => {
                let _ = writeln!(out, "release: {} {}, key {}", rel.version, escaped(phase), escaped(&rel.key_id));
            }
        }
    }
    let st = &r.stalls;
    let ms = |us: u64| us as f64 / 1e3;
    let _ = writeln!(
        out,
        "loop: longest handler {:.1} ms ({}), watchdog pet late by {:.1} ms at most; recently (10 s or more): {:.1} ms ({}), pet late {:.1} ms",
        ms(st.handler_us),
        escaped(&st.handler),
        ms(st.pet_late_us),
        ms(st.recent_handler_us),
        escaped(&st.recent_handler),
        ms(st.recent_pet_late_us)
    );
    if !r.staging.is_empty() {
        let _ = writeln!(out, "{}", escaped(&r.staging));
    }
    out
}

/// One entry's row, and for a container its layers line.
fn row(out: &mut String, c: &ContainerStatus) {
    let service = c.kind.as_str() == "service";
    let dash = |s: &str| if s.is_empty() { "-".to_string() } else { escaped(s) };
    let uptime = if c.pid > 0 { format!("{:.1}s", c.uptime_ms as f64 / 1e3) } else { "-".into() };
    let memory = if c.memory > 0 && !service { format!("{}K", c.memory / 1024) } else { "-".into() };
    let _ = writeln!(
        out,
        "{:<20} {:<9} {:<8} {:<5} {:>6} {:>10} {:>8} {:>9}  {:<12} {}",
        dash(&c.name),
        dash(&c.kind),
        dash(&c.state),
        if c.ready { "yes" } else { "no" },
        if c.pid > 0 { c.pid.to_string() } else { "-".into() },
        uptime,
        c.restarts,
        memory,
        dash(&c.last_exit),
        // A container's STATUS= text: berth keeps no active characters in
        // it; a berth of another build may have.
        escaped(&c.note)
    );
    if service {
        return;
    }
    let l = &c.layers;
    let _ = writeln!(
        out,
        "  layers: userns={} seccomp={} caps={} device_rules={} landlock={} apparmor={}",
        l.uid_base,
        dash(&l.seccomp),
        l.cap_names(),
        l.device_rules,
        l.landlock(),
        dash(&l.apparmor)
    );
}

/// `berthctl status --json`: the status file's document, from the reply.
pub fn json(r: &StatusReply) -> Vec<u8> {
    use crate::supervise::statusview as sv;
    let release = r.release.as_ref().map(|rel| sv::Release { version: rel.version, key_id: &rel.key_id, phase: &rel.phase });
    let entries: Vec<sv::Entry<'_>> = r
        .entries
        .iter()
        .map(|c| sv::Entry {
            name: &c.name,
            kind: &c.kind,
            state: &c.state,
            ready: c.ready,
            restarts: c.restarts,
            last_exit: &c.last_exit,
            started_ms: c.started_ms,
        })
        .collect();
    let lp = sv::Loop { handler_max_ms: r.stalls.handler_us as f64 / 1e3, handler: &r.stalls.handler, pet_late_max_ms: r.stalls.pet_late_us as f64 / 1e3 };
    let mut out = Vec::new();
    sv::render_as(&mut out, &r.berth, release.as_ref(), &entries, &lp, !r.staging.is_empty(), r.update.as_ref());
    out
}

#[cfg(test)]
mod tests;
