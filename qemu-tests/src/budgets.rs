//! Per-container budgets: one container (`hog`, no `memory_max`) exhausts
//! its inotify instances, its message queues and then its memory; its
//! neighbour (`neighbour`, no `memory_max` either), started once `hog` holds
//! its budgets, still gets an inotify instance and a queue of its own and
//! keeps beating; `hog` alone is OOM-killed under the board's default
//! limit, and berth's resident memory and `berthctl status` are unaffected.

use crate::event::Event;
use crate::machine::Machine;
use crate::scenario::{case, Case};
use crate::scenarios::{field_is, limits, spec, BootSpec, Launch};
use std::sync::Arc;
use std::time::Duration;

/// The kernel's `fs.inotify.max_user_instances` (the board leaves it): one
/// container's whole inotify budget, now that each has its own.
const INOTIFY_INSTANCES: u32 = 128;
/// POSIX message queues with default attributes (10 messages of 8 KiB,
/// about 81 KiB each with the kernel's bookkeeping) under the default
/// `RLIMIT_MSGQUEUE` of 819200 bytes: 9 on every architecture.
const MQUEUES: u32 = 9;
/// The board's default memory share (`budgets.container_memory_percent`).
const DEFAULT_PERCENT: u64 = 25;
/// The board's default host reserve (`budgets.host_reserve_kib`).
const RESERVE_KIB: u64 = 16 * 1024;
/// How far below its limit `hog`'s last written MiB may be: its own
/// program, stack, kernel objects and output pipe are charged too.
const GROW_SLACK_MIB: u64 = 12;
/// The most berth's resident memory may change across the OOM kill.
const RSS_SLACK_KIB: u64 = 1024;

pub fn cases(l: Arc<dyn Launch>) -> Vec<Case> {
    let arch = l.arch().to_string();
    vec![case(format!("{arch}/budgets"), move || budgets(l.as_ref()))]
}

fn num(e: &Event, key: &str) -> Result<u64, String> {
    e.get(key).and_then(|v| v.parse().ok()).ok_or_else(|| format!("event {} has no number {key}", e.name))
}

fn word<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace().find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

fn log_of(m: &mut Machine, name: &'static str, prefix: &'static str, t: Duration) -> Result<String, String> {
    let e = m.expect_event_where("container.log", |e| e.get("name") == Some(name) && e.get("line").is_some_and(|l| l.starts_with(prefix)), t)?;
    Ok(e.get("line").unwrap_or("").to_string())
}

/// The agent's next `AGENT budgets` line for which `want` holds: (rss, line).
fn agent(m: &mut Machine, want: impl Fn(&str) -> bool, t: Duration) -> Result<(u64, String), String> {
    let end = std::time::Instant::now() + t;
    loop {
        let left = end.saturating_duration_since(std::time::Instant::now());
        let line = m.expect_line("AGENT budgets ", left)?;
        if want(&line) {
            let rss = word(&line, "rss_kib").and_then(|v| v.parse().ok()).ok_or_else(|| format!("no rss_kib in {line}"))?;
            return Ok((rss, line));
        }
    }
}

fn budgets(l: &dyn Launch) -> Result<(), String> {
    let lim = limits(l.arch());
    let mut m = l.boot(&BootSpec { variant: "budgets", ..spec("budgets", "budgets") })?;
    // The default limit: a quarter of MemTotal, in whole pages.
    let b = m.expect_event("memory.budget", lim.boot)?;
    let (total, default_kib) = (num(&b, "mem_total_kib")?, num(&b, "container_default_kib")?);
    let want = ((total * 1024 * DEFAULT_PERCENT / 100) & !4095) / 1024;
    if total == 0 || default_kib != want {
        return Err(format!("default container memory {default_kib} KiB of MemTotal {total} KiB, want {want}"));
    }
    let r = m.expect_event("memory.reserve", lim.step)?;
    field_is(&r, "result", "ok")?;
    field_is(&r, "min_kib", &RESERVE_KIB.to_string())?;
    let ready = m.expect_event("boot.ready", lim.boot)?;
    let rss_ready = num(&ready, "berth_rss_kib")?;

    // hog holds its whole budgets: the kernel's per-user limits, not less.
    let line = log_of(&mut m, "hog", "PROBE budget ", lim.boot)?;
    let got = |k| word(&line, k).unwrap_or("-").to_string();
    let want_line = [
        ("inotify", INOTIFY_INSTANCES.to_string()),
        ("inotify_error", "EMFILE".into()),
        ("inotify_limit", INOTIFY_INSTANCES.to_string()),
        ("mqueue", MQUEUES.to_string()),
        ("mqueue_error", "EMFILE".into()),
    ];
    for (k, v) in &want_line {
        if got(k) != *v {
            return Err(format!("hog's budgets: {k}={}, want {v}: {line}", got(k)));
        }
    }
    // neighbour, started after that, gets its own (before hog is killed:
    // the OOM kill is looked for after this line).
    let line = log_of(&mut m, "neighbour", "PROBE neighbour inotify=", lim.step)?;
    if word(&line, "inotify") != Some("ok") || word(&line, "mqueue") != Some("ok") {
        return Err(format!("neighbour could not get its own inotify instance and queue: {line}"));
    }
    let at_neighbour = m.cursor();
    let (rss_before, _) = agent(&mut m, |l| l.contains("status=ok") && l.contains("neighbour=running"), lim.step)?;

    m.set_cursor(at_neighbour);
    let oom = m.expect_event_where("container.oom", |e| e.get("name") == Some("hog"), lim.boot)?;
    let rss_oom = num(&oom, "berth_rss_kib")?;
    let at_oom = m.cursor();
    // berth logs the reap, then what memory.events says of it.
    m.set_cursor(at_neighbour);
    let reap = m.expect_event_where("reap", |e| e.get("name") == Some("hog"), lim.step)?;
    field_is(&reap, "how", "signal")?;
    field_is(&reap, "code", "9")?;

    // It grew to its default limit, not beyond and not far short of it.
    let grown: Vec<u64> = m.events()[..]
        .iter()
        .filter(|e| e.name == "container.log" && e.get("name") == Some("hog"))
        .filter_map(|e| e.get("line").and_then(|l| word(l, "mib")).and_then(|v| v.parse().ok()))
        .collect();
    let top = grown.iter().copied().max().unwrap_or(0);
    let limit_mib = default_kib / 1024;
    if top > limit_mib || top + GROW_SLACK_MIB < limit_mib {
        return Err(format!("hog wrote {top} MiB before its OOM kill, want within {GROW_SLACK_MIB} MiB under its {limit_mib} MiB limit"));
    }

    // neighbour keeps beating; berth keeps answering with the same memory.
    m.set_cursor(at_oom);
    log_of(&mut m, "neighbour", "PROBE neighbour beat=", lim.step)?;
    m.set_cursor(at_oom);
    std::thread::sleep(Duration::from_secs(3));
    let (rss_after, line) = agent(&mut m, |l| l.contains("neighbour=running") && !l.contains("hog=running"), lim.step)?;
    if !line.contains("status=ok") {
        return Err(format!("berthctl status after the OOM kill: {line}"));
    }
    if rss_after.abs_diff(rss_before) > RSS_SLACK_KIB || rss_oom.abs_diff(rss_ready) > 4 * RSS_SLACK_KIB {
        return Err(format!("berth's RSS moved: {rss_before} -> {rss_after} KiB (agent), {rss_ready} -> {rss_oom} KiB (boot.ready -> container.oom)"));
    }
    let events = m.events();
    let bad: Vec<&Event> = events[..]
        .iter()
        .filter(|e| (e.name == "container.oom" && e.get("name") != Some("hog")) || (e.name == "reap" && e.get("name") == Some("neighbour")))
        .collect();
    if !bad.is_empty() {
        return Err(format!("the neighbour was hit: {bad:?}"));
    }
    Ok(())
}
