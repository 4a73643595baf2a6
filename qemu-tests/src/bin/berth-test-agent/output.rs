//! The agent's modes for the console and output scenarios.
//!
//! - `console-stall`: once the `crasher` container has been restarted, say
//!   `AGENT stall-ready` (the harness then stops reading the console for
//!   30 s) and, for [`STALL_WATCH`], ask `berthctl status` every 0.5 s
//!   without writing anything to the console (a write would wait for the
//!   stalled console: the agent shares berth's blocking console). Then
//!   report what it saw as measures.
//! - `flood`: once the `flood` container has said `FLOOD done` and stopped,
//!   read the log store's files of `flood` and `heartbeat` and report as
//!   measures how late the heartbeat's lines were stored and how many of
//!   the flood's were kept.
//!
//! The harness decides pass or fail from the measures.

use std::fs;
use std::time::{Duration, Instant};

/// How long the stall mode watches berth after `AGENT stall-ready`.
pub const STALL_WATCH: Duration = Duration::from_secs(45);
/// Longest a `berthctl status` may take before it counts as unanswered.
const CTL_TIMEOUT: Duration = Duration::from_secs(10);
const LOGS: &str = "/data/berth/logs";

fn measure(name: &str, value: u64) {
    super::say(&format!("AGENT measure={name} value={value}"));
}

/// `berthctl status`, killed past `CTL_TIMEOUT`: its text, or `None`.
fn timed_status() -> Option<String> {
    let mut child =
        std::process::Command::new("/sbin/berthctl").arg("status").stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null()).spawn().ok()?;
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(st)) => {
                let out = child.wait_with_output().ok()?;
                return super::answered(&["status"], st.code(), &out.stdout).then(|| String::from_utf8_lossy(&out.stdout).into_owned());
            }
            Ok(None) if start.elapsed() < CTL_TIMEOUT => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// The RESTARTS column of container `name` in `berthctl status`.
fn restarts(status: &str, name: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.split_whitespace().next() == Some(name))?;
    line.split_whitespace().nth(6)?.parse().ok()
}

pub fn console_stall() {
    let wait = Instant::now();
    let first = loop {
        let r = timed_status().and_then(|s| restarts(&s, "crasher"));
        if r.is_some_and(|r| r >= 1) || wait.elapsed() > Duration::from_secs(120) {
            break r;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let Some(before) = first else {
        super::report("console-stall", false, "crasher never restarted before the stall");
        return;
    };
    super::say("AGENT stall-ready");
    let start = Instant::now();
    let (mut answered, mut unanswered, mut worst_ms, mut after) = (0u64, 0u64, 0u64, before);
    while start.elapsed() < STALL_WATCH {
        let t = Instant::now();
        match timed_status() {
            Some(text) => {
                answered += 1;
                worst_ms = worst_ms.max(t.elapsed().as_millis() as u64);
                after = restarts(&text, "crasher").unwrap_or(after);
            }
            None => unanswered += 1,
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    measure("stall_status_answered", answered);
    measure("stall_status_unanswered", unanswered);
    measure("stall_status_worst_ms", worst_ms);
    measure("stall_crasher_restarts", after.saturating_sub(before));
}

/// The records of a stored log (`<dir>/<file>.1` first, then `<file>`):
/// (arrival ms, text). A record is `<s>.<ms> <wall-clock time or -> <text>`;
/// the header lines (`#berth-log ...`) are skipped.
fn stored(file: &str) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    for path in [format!("{LOGS}/{file}.1"), format!("{LOGS}/{file}")] {
        for line in fs::read_to_string(path).unwrap_or_default().lines() {
            let Some((t, text)) = line.split_once(' ').and_then(|(t, rest)| Some((t, rest.split_once(' ')?.1))) else {
                continue;
            };
            let Some((s, ms)) = t.split_once('.') else {
                continue;
            };
            if let (Ok(s), Ok(ms)) = (s.parse::<u64>(), ms.parse::<u64>()) {
                out.push((s * 1000 + ms, text.to_string()));
            }
        }
    }
    out
}

fn field(text: &str, key: &str) -> Option<u64> {
    text.split_whitespace().find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

pub fn flood() {
    let wait = Instant::now();
    let mut flood = Vec::new();
    while wait.elapsed() < Duration::from_secs(180) {
        flood = stored("container-flood.log");
        let done = flood.iter().any(|(_, t)| t.starts_with("FLOOD done"));
        let stopped = timed_status().is_some_and(|s| s.lines().any(|l| l.starts_with("flood ") && l.contains(" stopped ")));
        if done && stopped {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let mono = |prefix: &str| flood.iter().find(|(_, t)| t.starts_with(prefix)).and_then(|(_, t)| field(t, "mono_ms"));
    let (Some(t0), Some(t1)) = (mono("FLOOD start"), mono("FLOOD done")) else {
        super::report("flood", false, &format!("no FLOOD start/done in the store ({} lines)", flood.len()));
        return;
    };
    let wrote = flood.iter().find(|(_, t)| t.starts_with("FLOOD done")).and_then(|(_, t)| field(t, "wrote")).unwrap_or(0);
    // The flood ran from t0 to two quiet seconds before t1.
    let end = t1.saturating_sub(2000);
    let mut late: Vec<u64> = stored("container-heartbeat.log")
        .iter()
        .filter_map(|(at, t)| field(t, "mono_ms").filter(|m| (t0..=end).contains(m)).map(|m| at.saturating_sub(m)))
        .collect();
    late.sort_unstable();
    let p99 = late.get((late.len() * 99).div_ceil(100).saturating_sub(1)).copied().unwrap_or(u64::MAX);
    // The steady part: from 5 s in (the burst is spent) to the flood's end.
    let (from, to) = (t0 + 5000, end);
    let steady = flood.iter().filter(|(at, t)| t.starts_with("F ") && (from..=to).contains(at)).count();
    measure("flood_heartbeat_lines", late.len() as u64);
    measure("flood_heartbeat_p99_ms", p99);
    measure("flood_heartbeat_max_ms", late.last().copied().unwrap_or(u64::MAX));
    measure("flood_wrote", wrote);
    measure("flood_stored", flood.len() as u64);
    measure("flood_steady_lines", steady as u64);
    measure("flood_steady_ms", to.saturating_sub(from));
}
