//! The log store: every container's output and berth's own event lines,
//! kept in a bounded ring per stream and written to files on the data
//! partition with rotation and a total quota.
//!
//! Part of `common`: it must not use any other group (its limits come from `common::names`).
//!
//! | limit | value |
//! |---|---|
//! | streams | [`STREAMS_MAX`] (berth's own, one per container, one per host service) |
//! | ring | the last [`RING_LINES`] lines of each stream, each at most [`TEXT_MAX`] bytes |
//! | file | `<dir>/container-<name>.log`, `<dir>/service-<name>.log` and `<dir>/berth.log`, rotated to `.1` past [`FILE_MAX`] bytes |
//! | quota | all files together at most the board's `log_quota_kib` |
//!
//! A line that cannot be kept (quota reached, a write error, no room for
//! another stream) is counted in its stream's `dropped`, reported by
//! `berthctl logs` and as a `log.dropped` event: loss is never silent.
//! Until the data partition is mounted lines live only in the rings; they
//! are written out when the store's directory is set.
//!
//! The store never emits events itself (berth's events are one of its
//! streams): errors become counts.
//!
//! Each file says which boot wrote it and each line when, since boot and
//! (once the clock is set) in wall-clock time: the format, versioned, is
//! [`record`]'s.

mod record;

pub use record::{boot_id, decode, encode, header, parse_boot_id, rfc3339, BootId, Record, CLOCK_SET_AFTER_S};

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Lines kept in memory per stream.
pub const RING_LINES: usize = 128;
/// Longest line kept (longer ones are cut).
pub const TEXT_MAX: usize = 256;
/// Streams: berth's own, one per container and one per host service.
pub const STREAMS_MAX: usize = 33 + crate::common::names::SERVICES_MAX;
/// A file is rotated past this size.
pub const FILE_MAX: u64 = 64 * 1024;
/// Where the files go.
pub const DIR: &str = "/data/berth/logs";
/// berth's own stream.
pub const BERTH: &str = "berth";
/// A host service's stream is this prefix and its name (container names
/// cannot hold ':').
pub const SERVICE_PREFIX: &str = "service:";

/// The stream of host service `name`.
pub fn service_stream(name: &str) -> heapless::String<32> {
    let mut s = heapless::String::new();
    let _ = s.push_str(SERVICE_PREFIX);
    for c in name.chars() {
        if s.push(c).is_err() {
            break;
        }
    }
    s
}

/// One stored line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Per stream, from 1, never reused.
    pub seq: u64,
    /// Milliseconds since boot.
    pub t_ms: u64,
    /// Milliseconds since 1970 (CLOCK_REALTIME), when the clock was set.
    pub wall_ms: Option<u64>,
    pub text: String,
}

impl Line {
    /// A line whose buffer holds [`TEXT_MAX`] bytes without growing.
    fn empty() -> Line {
        Line { seq: 0, t_ms: 0, wall_ms: None, text: String::with_capacity(TEXT_MAX) }
    }
}

struct Stream {
    name: heapless::String<32>,
    ring: VecDeque<Line>,
    next_seq: u64,
    /// Lines not written (or not kept) since boot.
    dropped: u64,
    /// Lines already written to the file (rings fill before the directory is set).
    written: u64,
    file: Option<File>,
    file_bytes: u64,
}

/// The store. One instance lives in [`STORE`].
pub struct Store {
    streams: Vec<Stream>,
    dir: Option<PathBuf>,
    quota: u64,
    /// Bytes of every file in `dir`.
    total: u64,
    /// Lines dropped for want of a stream slot.
    unplaced: u64,
    /// The boot id the files' headers name.
    boot: Option<BootId>,
}

fn file_name(stream: &str) -> String {
    if stream == BERTH {
        "berth.log".into()
    } else if let Some(service) = stream.strip_prefix(SERVICE_PREFIX) {
        format!("service-{service}.log")
    } else {
        format!("container-{stream}.log")
    }
}

impl Store {
    pub fn new(quota_bytes: u64) -> Store {
        Store { streams: Vec::new(), dir: None, quota: quota_bytes, total: 0, unplaced: 0, boot: None }
    }

    fn stream(&mut self, name: &str) -> Option<usize> {
        if let Some(i) = self.streams.iter().position(|s| s.name == name) {
            return Some(i);
        }
        if self.streams.len() >= STREAMS_MAX {
            return None;
        }
        let mut n = heapless::String::new();
        n.push_str(name).ok()?;
        // The ring at its final size from the start (see `push_at`).
        self.streams.push(Stream { name: n, ring: VecDeque::with_capacity(RING_LINES), next_seq: 1, dropped: 0, written: 0, file: None, file_bytes: 0 });
        Some(self.streams.len() - 1)
    }

    /// Write to `dir` from now on, the files naming this boot's id.
    pub fn set_dir(&mut self, dir: &Path) -> std::io::Result<()> {
        self.set_dir_as(dir, boot_id())
    }

    /// Write to `dir` from now on, the files naming `boot`: measure what is
    /// there, then write out what the rings hold.
    pub fn set_dir_as(&mut self, dir: &Path, boot: Option<BootId>) -> std::io::Result<()> {
        self.boot = boot;
        std::fs::create_dir_all(dir)?;
        self.total = std::fs::read_dir(dir)?.flatten().filter_map(|e| e.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum();
        self.dir = Some(dir.to_path_buf());
        for i in 0..self.streams.len() {
            let pending: Vec<Line> = match self.streams.get(i) {
                Some(s) => s.ring.iter().filter(|l| l.seq > s.written).cloned().collect(),
                None => continue,
            };
            for l in pending {
                self.write(i, l.seq, l.t_ms, l.wall_ms, &l.text);
            }
        }
        Ok(())
    }

    /// Stop writing files (shutdown: the data partition is about to be
    /// unmounted); lines from now on stay in the rings.
    /// Forget `stream` (a container an update removed): its ring and slot
    /// are freed, its file closed and kept. A stream of the name made later
    /// starts afresh (its `seq` from 1).
    pub fn evict(&mut self, stream: &str) {
        if let Some(i) = self.streams.iter().position(|s| s.name == stream) {
            let s = self.streams.remove(i);
            if let Some(f) = s.file {
                let _ = f.sync_all();
            }
        }
    }

    pub fn close(&mut self) {
        for s in &mut self.streams {
            if let Some(f) = s.file.take() {
                let _ = f.sync_all();
            }
        }
        self.dir = None;
    }

    /// Keep one line of `stream`, with the wall-clock time if the clock is set.
    pub fn push(&mut self, stream: &str, t_ms: u64, text: &str) {
        self.push_at(stream, t_ms, record::wall_now(), text);
    }

    /// Keep one line of `stream` of these times.
    pub fn push_at(&mut self, stream: &str, t_ms: u64, wall_ms: Option<u64>, text: &str) {
        let Some(i) = self.stream(stream) else {
            self.unplaced += 1;
            return;
        };
        let mut cut = text.trim_end_matches(['\n', '\r']);
        if cut.len() > TEXT_MAX {
            let mut end = TEXT_MAX;
            while !cut.is_char_boundary(end) {
                end -= 1;
            }
            cut = cut.get(..end).unwrap_or("");
        }
        let Some(s) = self.streams.get_mut(i) else {
            return;
        };
        let seq = s.next_seq;
        s.next_seq += 1;
        // A full ring reuses its oldest line's buffer: once full, keeping a
        // line allocates nothing (every buffer holds TEXT_MAX from the start).
        let mut line = match s.ring.len() >= RING_LINES {
            true => s.ring.pop_front().unwrap_or_else(Line::empty),
            false => Line::empty(),
        };
        line.seq = seq;
        line.t_ms = t_ms;
        line.wall_ms = wall_ms;
        line.text.clear();
        line.text.push_str(cut);
        s.ring.push_back(line);
        if self.dir.is_some() {
            self.write(i, seq, t_ms, wall_ms, cut);
        }
    }

    fn write(&mut self, i: usize, seq: u64, t_ms: u64, wall_ms: Option<u64>, text: &str) {
        let Some(dir) = self.dir.clone() else { return };
        let mut record = record::encode(t_ms, wall_ms, text);
        let header = record::header(self.boot.as_deref());
        let Some(s) = self.streams.get_mut(i) else {
            return;
        };
        s.written = seq;
        let path = dir.join(file_name(&s.name));
        if s.file.is_some() && s.file_bytes + record.len() as u64 > FILE_MAX {
            // Rotate: the old `.1` goes, the current file becomes `.1`.
            s.file = None;
            let old = dir.join(format!("{}.1", file_name(&s.name)));
            if let Ok(m) = std::fs::metadata(&old) {
                if std::fs::remove_file(&old).is_ok() {
                    self.total = self.total.saturating_sub(m.len());
                }
            }
            if std::fs::rename(&path, &old).is_err() {
                s.dropped += 1;
                return;
            }
            s.file_bytes = 0;
        }
        // A file opened (each boot's first line, and after a rotation)
        // starts its part with the header.
        if s.file.is_none() {
            record.insert_str(0, &header);
        }
        let len = record.len() as u64;
        if self.total + len > self.quota {
            s.dropped += 1;
            return;
        }
        if s.file.is_none() {
            match OpenOptions::new().create(true).append(true).open(&path) {
                Ok(f) => {
                    s.file_bytes = f.metadata().map(|m| m.len()).unwrap_or(0);
                    s.file = Some(f);
                }
                Err(_) => {
                    s.dropped += 1;
                    return;
                }
            }
        }
        match s.file.as_mut().map(|f| f.write_all(record.as_bytes())) {
            Some(Ok(())) => {
                s.file_bytes += len;
                self.total += len;
            }
            _ => {
                s.dropped += 1;
                s.file = None;
            }
        }
    }

    /// Lines of `stream` after `after` (all kept ones when `None`), at most
    /// the last `max`; the next `after` to ask with; the dropped count.
    pub fn read(&self, stream: &str, after: Option<u64>, max: usize) -> Option<(Vec<Line>, u64, u64)> {
        let s = self.streams.iter().find(|s| s.name == stream)?;
        let newer: Vec<&Line> = s.ring.iter().filter(|l| after.is_none_or(|a| l.seq > a)).collect();
        let skip = newer.len().saturating_sub(max);
        let lines: Vec<Line> = newer.into_iter().skip(skip).cloned().collect();
        Some((lines, s.next_seq - 1, s.dropped))
    }

    /// Every stream's dropped count plus the unplaced lines.
    pub fn dropped(&self) -> u64 {
        self.streams.iter().map(|s| s.dropped).sum::<u64>() + self.unplaced
    }
}

/// berth's one store (the loop is single-threaded; the lock is never
/// contended, and a re-entrant use is skipped rather than waited for).
pub static STORE: Mutex<Option<Store>> = Mutex::new(None);

/// Use the store, unless it is busy (re-entrant) or not made yet.
pub fn with<R>(f: impl FnOnce(&mut Store) -> R) -> Option<R> {
    let mut guard = STORE.try_lock().ok()?;
    guard.as_mut().map(f)
}

/// Make the store (once, at boot).
pub fn init(quota_bytes: u64) {
    if let Ok(mut g) = STORE.lock() {
        if g.is_none() {
            *g = Some(Store::new(quota_bytes));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("berth-logs-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn the_ring_keeps_the_last_lines_and_reads_follow_on() {
        let mut s = Store::new(1 << 20);
        for i in 0..(RING_LINES + 10) {
            s.push("sensor", i as u64, &format!("line {i}\n"));
        }
        let (all, next, dropped) = s.read("sensor", None, usize::MAX).unwrap();
        assert_eq!(all.len(), RING_LINES);
        assert_eq!(all[0].text, "line 10");
        assert_eq!(next, (RING_LINES + 10) as u64);
        assert_eq!(dropped, 0);
        let (last, _, _) = s.read("sensor", None, 3).unwrap();
        assert_eq!(last.iter().map(|l| l.text.as_str()).collect::<Vec<_>>(), ["line 135", "line 136", "line 137"]);
        s.push("sensor", 999, "new");
        let (more, next2, _) = s.read("sensor", Some(next), 100).unwrap();
        assert_eq!((more.len(), more[0].text.as_str(), next2), (1, "new", next + 1));
        assert!(s.read("nobody", None, 10).is_none());
    }

    #[test]
    fn a_full_ring_reuses_its_buffers_and_an_evicted_stream_is_gone() {
        let mut s = Store::new(1 << 20);
        s.push("sensor", 0, "first");
        let ring = |s: &Store| {
            s.streams.iter().find(|x| x.name == "sensor").map(|x| (x.ring.capacity(), x.ring.iter().map(|l| l.text.as_ptr() as usize).collect::<Vec<_>>()))
        };
        let (cap, _) = ring(&s).unwrap();
        assert!(cap >= RING_LINES);
        for i in 1..RING_LINES {
            s.push("sensor", i as u64, &"x".repeat(i % TEXT_MAX));
        }
        let (_, full) = ring(&s).unwrap();
        // Past full, every line goes into a buffer the ring already had.
        for i in 0..3 * RING_LINES {
            s.push("sensor", i as u64, &"y".repeat(TEXT_MAX));
        }
        let (cap_after, buffers) = ring(&s).unwrap();
        assert_eq!(cap_after, cap);
        let mut a = full.clone();
        let mut b = buffers.clone();
        a.sort_unstable();
        b.sort_unstable();
        assert_eq!(a, b, "the ring's line buffers were replaced");
        s.push("other", 0, "o");
        s.evict("sensor");
        assert!(s.read("sensor", None, 10).is_none());
        assert_eq!(s.read("other", None, 10).map(|r| r.0.len()), Some(1));
        s.push("sensor", 1, "again");
        assert_eq!(s.read("sensor", None, 10).map(|r| r.1), Some(1));
    }

    #[test]
    fn long_lines_are_cut_on_a_char_boundary() {
        let mut s = Store::new(1 << 20);
        s.push("a", 0, &"é".repeat(TEXT_MAX));
        let (l, _, _) = s.read("a", None, 1).unwrap();
        assert!(l[0].text.len() <= TEXT_MAX && l[0].text.chars().all(|c| c == 'é'));
    }

    #[test]
    fn files_rotate_and_the_quota_drops_and_counts() {
        let dir = tmp("rotate");
        let mut s = Store::new(3 * FILE_MAX);
        s.push(BERTH, 1, "before the data partition");
        s.set_dir(&dir).unwrap();
        let text = "x".repeat(200);
        for i in 0..2000 {
            s.push("flaky", i, &text);
        }
        let cur = std::fs::metadata(dir.join("container-flaky.log")).unwrap().len();
        let old = std::fs::metadata(dir.join("container-flaky.log.1")).unwrap().len();
        assert!(cur <= FILE_MAX && old <= FILE_MAX && old > FILE_MAX / 2, "{cur} {old}");
        assert_eq!(s.dropped(), 0, "two files of one stream fit the quota");
        let berth = decode(&std::fs::read_to_string(dir.join("berth.log")).unwrap());
        assert_eq!(berth.first().map(|r| (r.t_ms, r.text.as_str())), Some((1, "before the data partition")));
        for i in 0..2000 {
            s.push("sensor", i, &text);
        }
        for i in 0..2000 {
            s.push("other", i, &text);
        }
        s.close();
        s.push("other", 1, "after close: ring only");
        let total: u64 = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
        assert!(total <= 3 * FILE_MAX, "{total}");
        assert!(s.dropped() > 0, "past the quota lines are dropped and counted");
        let (_, _, d) = s.read("other", None, 1).unwrap();
        assert!(d > 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn files_name_the_boot_and_lines_their_wall_clock_time() {
        let dir = tmp("boot");
        let (a, b) = (parse_boot_id("11111111-2222-4333-8444-555555555555"), parse_boot_id("66666666-7777-4888-9999-aaaaaaaaaaaa"));
        let mut s = Store::new(1 << 20);
        s.push_at("app", 1_500, None, "clock not set");
        s.set_dir_as(&dir, a.clone()).unwrap();
        s.push_at("app", 2_000, Some(1_765_143_273_123), "clock set");
        s.close();
        // The next boot appends to the same file.
        let mut s = Store::new(1 << 20);
        s.set_dir_as(&dir, b.clone()).unwrap();
        s.push_at("app", 3, None, "next boot");
        s.close();
        let text = std::fs::read_to_string(dir.join("container-app.log")).unwrap();
        assert_eq!(
            text,
            "#berth-log 2 boot=11111111-2222-4333-8444-555555555555\n1.500 - clock not set\n2.000 2025-12-07T21:34:33.123Z clock set\n\
             #berth-log 2 boot=66666666-7777-4888-9999-aaaaaaaaaaaa\n0.003 - next boot\n"
        );
        let r = |boot: &Option<BootId>, t_ms, wall_ms, text: &str| Record { boot: boot.clone(), t_ms, wall_ms, text: text.into() };
        assert_eq!(decode(&text), [r(&a, 1_500, None, "clock not set"), r(&a, 2_000, Some(1_765_143_273_123), "clock set"), r(&b, 3, None, "next boot")]);
        let (lines, _, _) = s.read("app", None, 10).unwrap();
        assert_eq!(lines.iter().map(|l| l.wall_ms).collect::<Vec<_>>(), [None], "the ring keeps the time too");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn streams_are_bounded() {
        let mut s = Store::new(1 << 20);
        for i in 0..STREAMS_MAX + 5 {
            s.push(&format!("c{i}"), 0, "x");
        }
        assert_eq!(s.streams.len(), STREAMS_MAX);
        assert_eq!(s.dropped(), 5);
    }
}
