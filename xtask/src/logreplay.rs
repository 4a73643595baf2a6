//! The log a device-mapper `log-writes` target writes (the kernel's
//! admin-guide/device-mapper/log-writes.rst), and the crash states it
//! implies.
//!
//! # Format (all little-endian)
//!
//! Sector 0 of the log disk (one "sector" being the data disk's logical
//! block size, 512 bytes on virtio) holds the super block: magic
//! `0x6a736677736872`, version 1, the number of entries, the sector size.
//! The entries follow from sector 1, each one sector of header (`sector`,
//! `nr_sectors`, `flags`, `data_len`, in sectors of the data disk) then,
//! unless it is a discard, `nr_sectors` sectors of the data written. A
//! mark carries its text (`data_len` bytes) in its header sector, after
//! the 32 header bytes.
//!
//! # Order and what a crash keeps
//!
//! The target logs a plain write only when a later flush completes (just
//! before that flush's entry), a FUA write and a mark as soon as they
//! complete or arrive. So at any crash, everything up to the last flush
//! entry is on the disk, and so is each FUA write logged since; the plain
//! writes the next flush would have covered may each be there or not.
//! [`plan`] picks the states to check:
//!
//! - every flush entry, the log applied up to and including it;
//! - every mark, with the plain writes since the last flush dropped;
//! - random points between two flushes: half with the plain writes dropped
//!   (a crash at that entry), half keeping a random subset of the plain
//!   writes up to the next flush (a crash some time before it).
//!
//! Each [`Point`] also says which update steps (marks `step-N-KIND`, see
//! berth's `logwrites` hook) it may fall in: the verdicts allowed there are
//! the host model's (`qemu_tests::cutverdict::Plan::in_step`).

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

pub const FLUSH: u64 = 1 << 0;
pub const FUA: u64 = 1 << 1;
pub const DISCARD: u64 = 1 << 2;
pub const MARK: u64 = 1 << 3;
const MAGIC: u64 = 0x6a_7366_7773_6872;
const HEADER: usize = 32;
/// More entries than this is not a log of one update.
const ENTRIES_MAX: u64 = 1 << 22;

/// One entry of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// First sector written (in the log's sector size).
    pub sector: u64,
    pub nr_sectors: u64,
    pub flags: u64,
    /// Where its data starts in the log (bytes).
    pub data_at: u64,
    /// A mark's text.
    pub mark: Option<String>,
}

impl Entry {
    /// A write that is only durable once a flush covers it.
    pub fn plain(&self) -> bool {
        self.flags & (FLUSH | FUA | MARK | DISCARD) == 0 && self.nr_sectors > 0
    }

    /// The update step a `step-N-KIND` mark begins.
    pub fn step(&self) -> Option<u64> {
        self.mark.as_deref()?.strip_prefix("step-")?.split('-').next()?.parse().ok()
    }
}

/// A parsed log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Log {
    pub sector_size: u64,
    pub entries: Vec<Entry>,
}

fn le64(b: &[u8], at: usize) -> Result<u64, String> {
    b.get(at..at + 8).and_then(|s| s.try_into().ok()).map(u64::from_le_bytes).ok_or_else(|| format!("the log ends at byte {at}"))
}

/// Parse a log (the whole log disk's bytes).
pub fn parse(b: &[u8]) -> Result<Log, String> {
    if le64(b, 0)? != MAGIC {
        return Err("not a dm-log-writes log (bad magic)".into());
    }
    if le64(b, 8)? != 1 {
        return Err(format!("log version {}, want 1", le64(b, 8)?));
    }
    let count = le64(b, 16)?;
    let size = u64::from(u32::from_le_bytes(b.get(24..28).and_then(|s| s.try_into().ok()).ok_or("short super block")?));
    if !(512..=4096).contains(&size) || !size.is_power_of_two() {
        return Err(format!("sector size {size}"));
    }
    if count > ENTRIES_MAX {
        return Err(format!("{count} entries"));
    }
    let mut entries = Vec::with_capacity(count as usize);
    let mut at = size;
    for i in 0..count {
        let h = at as usize;
        let (sector, nr_sectors, flags, data_len) = (le64(b, h)?, le64(b, h + 8)?, le64(b, h + 16)?, le64(b, h + 24)?);
        let mark = if flags & MARK != 0 {
            let text = b.get(h + HEADER..h + HEADER + data_len as usize).filter(|_| data_len < size - HEADER as u64);
            Some(String::from_utf8_lossy(text.ok_or_else(|| format!("entry {i}: mark text past its sector"))?).into_owned())
        } else {
            None
        };
        let data = if flags & DISCARD != 0 { 0 } else { nr_sectors.checked_mul(size).ok_or_else(|| format!("entry {i}: size"))? };
        if at + size + data > b.len() as u64 {
            return Err(format!("entry {i} of {count}: its data runs past the end of the log"));
        }
        entries.push(Entry { sector, nr_sectors, flags, data_at: at + size, mark });
        at += size + data;
    }
    Ok(Log { sector_size: size, entries })
}

/// One state to check: the log up to (not including) entry `base`, then
/// the entries `extra` (after `base`, ascending).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Point {
    pub base: usize,
    pub extra: Vec<usize>,
    /// The update steps it may fall in (0: before the first).
    pub steps: (u64, u64),
    /// What kind of point, for the report.
    pub kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Flush,
    Mark,
    Dropped,
    Subset,
}

/// A small deterministic generator (xorshift64*).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The step under way at entry `i`: the last `step-N` mark at or before it.
fn step_at(log: &Log, i: usize) -> u64 {
    log.entries.iter().take(i + 1).rev().find_map(Entry::step).unwrap_or(0)
}

/// The states to check: every flush, every mark, and `random` random points.
pub fn plan(log: &Log, random: usize, rng: &mut Rng) -> Vec<Point> {
    let e = &log.entries;
    let flushes: Vec<usize> = (0..e.len()).filter(|&i| e[i].flags & FLUSH != 0).collect();
    // The prefix a crash at entry `i` keeps, and the FUA writes since.
    let last_flush = |i: usize| flushes.iter().rev().find(|&&f| f < i).map_or(0, |f| f + 1);
    let fuas = |from: usize, to: usize| (from..to).filter(|&j| e[j].flags & FUA != 0).collect::<Vec<_>>();
    let mut out = Vec::new();
    for &f in &flushes {
        let s = step_at(log, f);
        out.push(Point { base: f + 1, extra: vec![], steps: (s, s), kind: Kind::Flush });
    }
    for i in (0..e.len()).filter(|&i| e[i].mark.is_some()) {
        let s = step_at(log, i);
        out.push(Point { base: last_flush(i), extra: fuas(last_flush(i), i), steps: (s, s), kind: Kind::Mark });
    }
    if e.is_empty() {
        return out;
    }
    for n in 0..random {
        let i = rng.below(e.len() as u64) as usize;
        let base = last_flush(i);
        if n % 2 == 0 {
            let s = step_at(log, i);
            out.push(Point { base, extra: fuas(base, i), steps: (s, s), kind: Kind::Dropped });
        } else {
            // Up to the next flush: any of its plain writes may have landed.
            let next = flushes.iter().copied().find(|&f| f >= i).unwrap_or(e.len());
            let extra = (base..next).filter(|&j| e[j].flags & FUA != 0 || (e[j].plain() && rng.below(2) == 0)).collect();
            let lo = if base == 0 { 0 } else { step_at(log, base - 1) };
            out.push(Point { base, extra, steps: (lo, step_at(log, next.min(e.len() - 1))), kind: Kind::Subset });
        }
    }
    out
}

/// Write entry `i`'s data into `img` (discards change nothing: what a
/// discarded range reads is not defined, and nothing may depend on it).
pub fn apply(log_bytes: &[u8], log: &Log, i: usize, img: &mut fs::File) -> Result<(), String> {
    let e = log.entries.get(i).ok_or("no such entry")?;
    if e.flags & (DISCARD | MARK) != 0 || e.nr_sectors == 0 {
        return Ok(());
    }
    let len = (e.nr_sectors * log.sector_size) as usize;
    let data = log_bytes.get(e.data_at as usize..e.data_at as usize + len).ok_or("entry data past the log")?;
    img.seek(SeekFrom::Start(e.sector * log.sector_size)).map_err(|x| x.to_string())?;
    img.write_all(data).map_err(|x| x.to_string())
}

/// Copy `from` to `to` and apply `entries` to the copy.
pub fn build(from: &Path, to: &Path, log_bytes: &[u8], log: &Log, entries: &[usize]) -> Result<(), String> {
    fs::copy(from, to).map_err(|e| format!("{}: {e}", to.display()))?;
    let mut f = fs::OpenOptions::new().write(true).open(to).map_err(|e| format!("{}: {e}", to.display()))?;
    for &i in entries {
        apply(log_bytes, log, i, &mut f)?;
    }
    Ok(())
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A synthetic log in the kernel's layout (512-byte sectors): each
    /// entry is (sector, data sectors filled with `byte`, flags, mark).
    pub fn synth(entries: &[(u64, u64, u8, u64, Option<&str>)]) -> Vec<u8> {
        let mut b = vec![0u8; 512];
        b[..8].copy_from_slice(&MAGIC.to_le_bytes());
        b[8..16].copy_from_slice(&1u64.to_le_bytes());
        b[16..24].copy_from_slice(&(entries.len() as u64).to_le_bytes());
        b[24..28].copy_from_slice(&512u32.to_le_bytes());
        for &(sector, n, byte, flags, mark) in entries {
            let mut h = vec![0u8; 512];
            h[..8].copy_from_slice(&sector.to_le_bytes());
            h[8..16].copy_from_slice(&n.to_le_bytes());
            h[16..24].copy_from_slice(&flags.to_le_bytes());
            let text = mark.unwrap_or("").as_bytes();
            h[24..32].copy_from_slice(&(text.len() as u64).to_le_bytes());
            h[32..32 + text.len()].copy_from_slice(text);
            b.extend_from_slice(&h);
            if flags & DISCARD == 0 {
                b.extend(std::iter::repeat_n(byte, n as usize * 512));
            }
        }
        b
    }

    fn sample() -> Vec<u8> {
        synth(&[
            (8, 2, 0xaa, 0, None),                 // 0 plain
            (0, 0, 0, FLUSH, None),                // 1 flush
            (0, 0, 0, MARK, Some("step-1-mkdir")), // 2
            (16, 1, 0xbb, 0, None),                // 3 plain
            (24, 4, 0, DISCARD, None),             // 4 discard (no data)
            (20, 1, 0xcc, FUA, None),              // 5 fua
            (0, 0, 0, MARK, Some("step-2-sync")),  // 6
            (30, 1, 0xdd, FLUSH | FUA, None),      // 7 flush with data
            (40, 1, 0xee, 0, None),                // 8 plain, never flushed
        ])
    }

    #[test]
    fn parses_the_kernels_layout() {
        let b = sample();
        let log = parse(&b).unwrap();
        assert_eq!(log.sector_size, 512);
        assert_eq!(log.entries.len(), 9);
        assert_eq!(log.entries[2].mark.as_deref(), Some("step-1-mkdir"));
        assert_eq!(log.entries[6].step(), Some(2));
        assert_eq!(log.entries[0].data_at, 1024);
        assert_eq!(log.entries[1].data_at, 1024 + 1024 + 512, "a flush has no data");
        assert_eq!(log.entries[5].data_at, log.entries[4].data_at + 512, "a discard has no data in the log");
        assert!(log.entries[3].plain() && !log.entries[5].plain() && !log.entries[4].plain());
    }

    #[test]
    fn bad_logs_are_refused_with_a_reason() {
        let mut b = sample();
        b[0] ^= 1;
        assert!(parse(&b).unwrap_err().contains("magic"));
        let b = sample();
        assert!(parse(&b[..b.len() - 100]).unwrap_err().contains("entry 8 of 9"));
        let mut b = sample();
        b[24..28].copy_from_slice(&1000u32.to_le_bytes());
        assert!(parse(&b).unwrap_err().contains("sector size"));
    }

    #[test]
    fn flush_and_mark_points_keep_only_what_is_durable() {
        let b = sample();
        let log = parse(&b).unwrap();
        let pts = plan(&log, 0, &mut Rng(1));
        let flush: Vec<&Point> = pts.iter().filter(|p| p.kind == Kind::Flush).collect();
        assert_eq!(flush.len(), 2);
        assert_eq!((flush[0].base, flush[0].steps), (2, (0, 0)));
        assert_eq!((flush[1].base, flush[1].steps), (8, (2, 2)));
        let marks: Vec<&Point> = pts.iter().filter(|p| p.kind == Kind::Mark).collect();
        assert_eq!(marks[0], &Point { base: 2, extra: vec![], steps: (1, 1), kind: Kind::Mark });
        // The FUA write since the flush is kept, the plain one dropped.
        assert_eq!(marks[1], &Point { base: 2, extra: vec![5], steps: (2, 2), kind: Kind::Mark });
    }

    #[test]
    fn random_points_are_reproducible_and_lawful() {
        let b = sample();
        let log = parse(&b).unwrap();
        let a = plan(&log, 300, &mut Rng(7));
        assert_eq!(a, plan(&log, 300, &mut Rng(7)));
        let rand: Vec<&Point> = a.iter().filter(|p| matches!(p.kind, Kind::Dropped | Kind::Subset)).collect();
        assert_eq!(rand.len(), 300);
        for p in &rand {
            assert!(p.base == 0 || log.entries[p.base - 1].flags & FLUSH != 0, "{p:?} starts after a flush");
            assert!(p.extra.iter().all(|&j| j >= p.base && log.entries[j].flags & FLUSH == 0), "{p:?}");
            assert!(p.steps.0 <= p.steps.1);
        }
        // Between the flushes, a subset point keeps the FUA write always and
        // the plain write 3 sometimes.
        let between: Vec<&&Point> = rand.iter().filter(|p| p.kind == Kind::Subset && p.base == 2).collect();
        assert!(between.iter().all(|p| p.extra.contains(&5)));
        assert!(between.iter().any(|p| p.extra.contains(&3)) && between.iter().any(|p| !p.extra.contains(&3)));
        // After the last flush the unflushed plain write may land.
        assert!(rand.iter().any(|p| p.base == 8 && p.extra == vec![8]));
    }

    #[test]
    fn replaying_writes_the_data_where_it_belongs() {
        let b = sample();
        let log = parse(&b).unwrap();
        let dir = std::env::temp_dir().join(format!("berth-logreplay-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let (start, out) = (dir.join("start"), dir.join("out"));
        fs::write(&start, vec![0u8; 64 * 512]).unwrap();
        build(&start, &out, &b, &log, &[0, 1, 2, 4, 5, 7]).unwrap();
        let img = fs::read(&out).unwrap();
        assert!(img[8 * 512..10 * 512].iter().all(|&x| x == 0xaa));
        assert!(img[20 * 512..21 * 512].iter().all(|&x| x == 0xcc));
        assert!(img[30 * 512..31 * 512].iter().all(|&x| x == 0xdd));
        assert!(img[16 * 512..17 * 512].iter().all(|&x| x == 0), "entry 3 was not applied");
        assert!(img[24 * 512..28 * 512].iter().all(|&x| x == 0), "a discard writes nothing");
        fs::remove_dir_all(&dir).unwrap();
    }
}
