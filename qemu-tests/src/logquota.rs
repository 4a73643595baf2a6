//! The log store's rotation and quota on a device (the `logsock` variant,
//! `qemu-tests/manifests/logsock/`, a board with `log_quota_kib` at its
//! least, [`QUOTA_KIB`], and container output kept off the console).
//!
//! Three containers print numbered lines of [`TEXT_LEN`] bytes
//! (`TAG NNNNNN ....`, see [`line`]) from [`START_MS`] of uptime on (so
//! every time stamp of the store has the same width): `quiet` [`QUIET`]
//! lines 100 ms apart while `noisy-a` prints [`NOISY_A`] at once, three
//! files' worth; `noisy-b`, started only once both said they were done
//! (`after`, readiness by notify), prints [`NOISY_B`] at once, more than
//! the quota leaves room for. The store's documented rules (a file is
//! rotated to `.1` when the next record would take it past [`FILE_MAX`];
//! the old `.1` goes; a record that would take all files past the quota is
//! dropped and counted) give, before the run:
//!
//! - `quiet`: one file holding lines 1..=QUIET, nothing dropped: the noisy
//!   neighbour rotating twice meanwhile took none of it;
//! - `noisy-a`: with `n` records to a file (`FILE_MAX / record length`),
//!   the current file holds lines `(NOISY_A-1)/n*n+1 ..= NOISY_A` and `.1`
//!   the `n` before them, each exactly its records' bytes;
//! - `noisy-b`: the lines kept are exactly `1..=k` for some `k < NOISY_B`
//!   (`.1` holding `1..=n` when `k > n`), `berthctl logs` reports exactly
//!   `NOISY_B - k` dropped, and the files' total is at most the quota and
//!   more than the quota less one record (the next line did not fit);
//! - `berthctl logs NAME -n 3` shows each one's last three lines (the ring
//!   keeps what the files could not);
//! - no other file than berth's own and host services' logs.
//!
//! berth's `log.dropped sink=store` (every 10 s at most) must come to
//! count at least noisy-b's loss.
//! The agent reports each file's facts (`AGENT logfile ...`) and each
//! `berthctl logs` (`AGENT ctllogs ...`); the harness judges.

use crate::scenario::Case;
use crate::scenarios::{cases_of, expect_boot, limits, spec, BootSpec, Check, Launch};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// `log-quota` and `ctl-clients` ([`crate::ctlclients`]), x86_64 only: the
/// store and the socket are the same code on every board.
pub fn cases(l: Arc<dyn Launch>) -> Vec<Case> {
    if l.arch() != "x86_64" {
        return Vec::new();
    }
    let table: Vec<(&'static str, Check)> = vec![("log-quota", log_quota), ("ctl-clients", crate::ctlclients::ctl_clients)];
    cases_of(&l, table)
}

/// A log file is rotated when the next record would take it past this
/// (`docs/board-config.md`, `log_quota_kib`).
pub const FILE_MAX: u64 = 64 * 1024;
/// The variant board's `log_quota_kib`.
pub const QUOTA_KIB: u32 = 256;
/// Every printed line's length, without its newline.
pub const TEXT_LEN: usize = 200;
/// Uptime at which the containers start printing: from 100 s to 999 s the
/// store's time stamp (`S.mmm `) has one width.
pub const START_MS: u64 = 100_000;
/// Lines of each container.
pub const QUIET: u64 = 30;
/// Three files' worth of `noisy-a`'s records (`100.000 ` and the 24-byte
/// wall-clock time with their spaces, the text and its newline: 234 bytes;
/// 279 of them after a file's 55-byte header), so that its two kept files
/// are full and `noisy-b` meets the quota before its second rotation.
pub const NOISY_A: u64 = 837;
pub const NOISY_B: u64 = 2000;

/// Line `n` of a container printing with `tag`.
pub fn line(tag: &str, n: u64) -> String {
    let mut s = format!("{tag} {n:06} ");
    while s.len() < TEXT_LEN {
        s.push('.');
    }
    s.truncate(TEXT_LEN);
    s
}

/// How each file's part from one boot begins (`#berth-log 2 boot=ID`).
pub const HEADER_TAG: &str = "#berth-log ";

/// A stored line (`SECONDS.MMM WALL TEXT`, WALL `-` until the clock is
/// set) as the width of its two stamps with their spaces, and its text.
pub fn split_line(l: &str) -> Option<(usize, &str)> {
    let (stamp, rest) = l.split_once(' ')?;
    let (wall, text) = rest.split_once(' ')?;
    Some((stamp.len() + 1 + wall.len() + 1, text))
}

/// The number of a line made by [`line`] with `tag`.
pub fn number(tag: &str, text: &str) -> Option<u64> {
    text.strip_prefix(tag)?.strip_prefix(' ')?.split(' ').next()?.parse().ok()
}

/// What the agent found in one log file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileFacts {
    pub bytes: u64,
    pub lines: u64,
    pub first: u64,
    pub last: u64,
    /// Lines whose number is not one more than the line before.
    pub gaps: u64,
    /// The width of the time stamps and their spaces, when every line has
    /// the same (0 when they differ).
    pub prefix: u64,
    /// The bytes of its header lines (one per boot that wrote to it).
    pub header: u64,
}

/// The expected lines of one file: `(first, last)`.
type Span = (u64, u64);

fn span_check(file: &str, f: Option<&FileFacts>, want: Span, record: u64) -> Result<(), String> {
    let Some(f) = f else {
        return Err(format!("{file}: missing, want lines {}..={}", want.0, want.1));
    };
    let count = want.1 - want.0 + 1;
    if (f.first, f.last, f.lines, f.gaps) != (want.0, want.1, count, 0) {
        return Err(format!(
            "{file}: lines {}..={} ({} lines, {} gaps), want {}..={} ({count} lines, none missing)",
            f.first, f.last, f.lines, f.gaps, want.0, want.1
        ));
    }
    let want_bytes = f.header + count * record;
    if f.bytes != want_bytes || f.bytes > FILE_MAX {
        return Err(format!(
            "{file}: {} bytes, want a {}-byte header and {count} records of {record} bytes = {want_bytes}, at most {FILE_MAX}",
            f.bytes, f.header
        ));
    }
    Ok(())
}

/// Records a file takes (the rotation point) for a record length, after
/// its header (a file is rotated when the next record would take it past
/// [`FILE_MAX`]; the header opens it).
fn per_file(record: u64, header: u64) -> u64 {
    FILE_MAX.saturating_sub(header) / record
}

/// The files of a stream that printed lines `1..=last` with nothing
/// dropped: (current, `.1`).
pub fn rotated(last: u64, n: u64) -> (Span, Option<Span>) {
    let cur_first = (last - 1) / n * n + 1;
    let old = (cur_first > 1).then(|| (cur_first - n, cur_first - 1));
    ((cur_first, last), old)
}

/// The verdict on the agent's facts: the first difference from the
/// expectation.
pub fn judge(files: &BTreeMap<String, FileFacts>, total: u64, ctl: &BTreeMap<String, (u64, u64)>) -> Result<(), String> {
    let quota = u64::from(QUOTA_KIB) * 1024;
    let prefix = files.get("container-quiet.log").map_or(0, |f| f.prefix);
    if prefix == 0 {
        return Err(format!("container-quiet.log: no single time stamp width ({:?})", files.get("container-quiet.log")));
    }
    let record = prefix + TEXT_LEN as u64 + 1;
    // One boot wrote every file: each opens with the same header.
    let header = files.get("container-quiet.log").map_or(0, |f| f.header);
    if header == 0 {
        return Err("container-quiet.log: no header line (`#berth-log 2 boot=ID`)".into());
    }
    if let Some((name, f)) = files.iter().find(|(k, f)| k.starts_with("container-") && f.header != header) {
        return Err(format!("{name}: a {}-byte header, container-quiet.log's {header}", f.header));
    }
    let n = per_file(record, header);
    for (name, f) in files.iter().filter(|(k, _)| k.starts_with("container-")) {
        if f.prefix != prefix {
            return Err(format!("{name}: time stamps {} bytes wide, container-quiet.log's {prefix}", f.prefix));
        }
    }
    // What may be there besides the three containers' files.
    let known = |k: &str| k.starts_with("container-quiet.log") || k.starts_with("container-noisy-a.log") || k.starts_with("container-noisy-b.log");
    if let Some(k) = files.keys().find(|k| !known(k) && !k.starts_with("berth.log") && !k.starts_with("service-")) {
        return Err(format!("an unexpected file in the log store: {k}"));
    }
    if files.contains_key("container-quiet.log.1") {
        return Err("container-quiet.log was rotated: 30 lines fit one file".into());
    }
    span_check("container-quiet.log", files.get("container-quiet.log"), (1, QUIET), record)?;
    let (cur, old) = rotated(NOISY_A, n);
    span_check("container-noisy-a.log", files.get("container-noisy-a.log"), cur, record)?;
    match old {
        Some(o) => span_check("container-noisy-a.log.1", files.get("container-noisy-a.log.1"), o, record)?,
        None if files.contains_key("container-noisy-a.log.1") => return Err("container-noisy-a.log.1 exists, want none".into()),
        None => {}
    }
    // noisy-b: a prefix 1..=k kept, the rest dropped at the quota.
    let b = files.get("container-noisy-b.log").ok_or("container-noisy-b.log is missing")?;
    let k = b.last;
    if k == 0 || k >= NOISY_B {
        return Err(format!("noisy-b: its last kept line is {k}, want one below {NOISY_B} (the quota stops it)"));
    }
    let (bcur, bold) = if k > n { ((n + 1, k), Some((1, n))) } else { ((1, k), None) };
    span_check("container-noisy-b.log", Some(b), bcur, record)?;
    match bold {
        Some(o) => span_check("container-noisy-b.log.1", files.get("container-noisy-b.log.1"), o, record)?,
        None if files.contains_key("container-noisy-b.log.1") => return Err(format!("container-noisy-b.log.1 exists with {k} lines kept, want none")),
        None => {}
    }
    let sum: u64 = files.values().map(|f| f.bytes).sum();
    if sum != total {
        return Err(format!("the agent's total {total} is not the sum of the files' sizes, {sum}"));
    }
    if total > quota || total + record <= quota {
        return Err(format!(
            "the log store holds {total} bytes: want at most the quota {quota} and more than {} (noisy-b's next record did not fit)",
            quota - record
        ));
    }
    // berthctl logs: the last three lines of each, and the dropped counts.
    for (name, last, dropped) in [("quiet", QUIET, 0), ("noisy-a", NOISY_A, 0), ("noisy-b", NOISY_B, NOISY_B - k)] {
        match ctl.get(name) {
            Some(&(l, d)) if (l, d) == (last, dropped) => {}
            got => return Err(format!("berthctl logs {name}: (last line, dropped) {got:?}, want ({last}, {dropped})")),
        }
    }
    Ok(())
}

/// `key=value` of an agent line.
fn field(line: &str, key: &str) -> Option<String> {
    line.split_whitespace().find_map(|w| w.strip_prefix(key)?.strip_prefix('=').map(str::to_string))
}

fn num(line: &str, key: &str) -> u64 {
    field(line, key).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// `log-quota`: boot the `logsock` variant, wait for the agent's facts, judge.
pub fn log_quota(l: &dyn Launch) -> Result<(), String> {
    let lim = limits(l.arch());
    let mut m = l.boot(&BootSpec { variant: "logsock", ..spec("log-quota", "log-quota") })?;
    expect_boot(&mut m, &lim)?;
    let ready = m.cursor();
    // The containers start printing at 100 s of uptime; the agent waits up
    // to 300 s for noisy-b's last line.
    let wait = Duration::from_secs(420) + lim.boot;
    let count: u64 = m.expect_agent_measure("logs_files", wait)?;
    let mut files = BTreeMap::new();
    for _ in 0..count {
        let l = m.expect_line("AGENT logfile ", lim.step)?;
        let f = FileFacts {
            bytes: num(&l, "bytes"),
            lines: num(&l, "lines"),
            first: num(&l, "first"),
            last: num(&l, "last"),
            gaps: num(&l, "gaps"),
            prefix: num(&l, "prefix"),
            header: num(&l, "header"),
        };
        files.insert(field(&l, "name").unwrap_or_default(), f);
    }
    let total = m.expect_agent_measure("logs_total", lim.step)?;
    let mut ctl = BTreeMap::new();
    for _ in 0..3 {
        let l = m.expect_line("AGENT ctllogs ", lim.step)?;
        ctl.insert(field(&l, "name").unwrap_or_default(), (num(&l, "last"), num(&l, "dropped")));
    }
    m.expect_line("AGENT done", lim.step)?;
    judge(&files, total, &ctl)?;
    // The loss is not silent: berth says so, at most every 10 s, as its
    // count grows (its own lines past the quota count too, so at least
    // noisy-b's).
    let k = files.get("container-noisy-b.log").map_or(0, |f| f.last);
    let lines = |e: &crate::event::Event| e.get("lines").and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
    m.set_cursor(ready);
    m.expect_event_where("log.dropped", |e| e.get("sink") == Some("store") && lines(e) >= NOISY_B - k, lim.step)
        .map_err(|e| format!("no log.dropped sink=store counting noisy-b's {} lines: {e}", NOISY_B - k))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `#berth-log 2 boot=` and a 36-character boot id, with its newline.
    const HEADER: u64 = 55;

    fn facts(first: u64, last: u64, record: u64) -> FileFacts {
        let lines = last - first + 1;
        FileFacts { bytes: HEADER + lines * record, lines, first, last, gaps: 0, prefix: record - TEXT_LEN as u64 - 1, header: HEADER }
    }

    #[test]
    fn stored_lines_split_into_stamps_and_text() {
        assert_eq!(split_line("123.456 2026-12-07T23:00:00.000Z A 000001 ...."), Some((33, "A 000001 ....")));
        assert_eq!(split_line("123.456 - A 000001"), Some((10, "A 000001")));
        assert_eq!(split_line("123.456"), None);
    }

    #[test]
    fn the_manifest_prints_what_the_verdict_expects() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/manifests/logsock/noisy-a.toml")).unwrap();
        assert!(text.contains(&format!("\"A\", \"{NOISY_A}\"")), "{text}");
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/manifests/logsock/noisy-b.toml")).unwrap();
        assert!(text.contains(&format!("\"B\", \"{NOISY_B}\"")), "{text}");
    }

    #[test]
    fn lines_are_numbered_and_of_one_length() {
        assert_eq!(line("A", 7).len(), TEXT_LEN);
        assert_eq!(number("A", &line("A", 939)), Some(939));
        assert_eq!(number("B", &line("A", 939)), None);
    }

    #[test]
    fn the_expectation_of_the_current_format() {
        // `123.456 ` + the wall-clock time and a space + 200 + newline.
        let record = 234;
        assert_eq!(per_file(record, HEADER), 279);
        assert_eq!(rotated(NOISY_A, 279), ((559, 837), Some((280, 558))));
        assert_eq!(rotated(279, 279), ((1, 279), None));
        assert_eq!(rotated(280, 279), ((280, 280), Some((1, 279))));
        let k = 500;
        let mut files = BTreeMap::new();
        files.insert("container-quiet.log".to_string(), facts(1, QUIET, record));
        files.insert("container-noisy-a.log".to_string(), facts(559, 837, record));
        files.insert("container-noisy-a.log.1".to_string(), facts(280, 558, record));
        files.insert("container-noisy-b.log".to_string(), facts(280, k, record));
        files.insert("container-noisy-b.log.1".to_string(), facts(1, 279, record));
        let containers: u64 = files.values().map(|f| f.bytes).sum();
        let quota = u64::from(QUOTA_KIB) * 1024;
        files.insert("berth.log".to_string(), FileFacts { bytes: quota - containers - 100, ..FileFacts::default() });
        let total = quota - 100;
        let mut ctl = BTreeMap::new();
        ctl.insert("quiet".to_string(), (QUIET, 0));
        ctl.insert("noisy-a".to_string(), (NOISY_A, 0));
        ctl.insert("noisy-b".to_string(), (NOISY_B, NOISY_B - k));
        assert_eq!(judge(&files, total, &ctl), Ok(()));
        let mut bad = ctl.clone();
        bad.insert("noisy-b".to_string(), (NOISY_B, 1));
        assert!(judge(&files, total, &bad).unwrap_err().starts_with("berthctl logs noisy-b"));
        let mut gap = files.clone();
        gap.insert("container-quiet.log".to_string(), FileFacts { gaps: 1, ..facts(1, QUIET, record) });
        assert!(judge(&gap, total, &ctl).unwrap_err().starts_with("container-quiet.log: lines 1..=30 (30 lines, 1 gaps)"));
        let mut room = files.clone();
        room.insert("berth.log".to_string(), FileFacts { bytes: quota - containers - 300, ..FileFacts::default() });
        assert!(judge(&room, total - 200, &ctl).unwrap_err().contains("noisy-b's next record did not fit"));
        let mut stray = files;
        stray.insert("container-other.log".to_string(), facts(1, 1, record));
        assert!(judge(&stray, total, &ctl).is_err());
    }
}
