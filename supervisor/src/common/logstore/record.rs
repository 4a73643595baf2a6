//! The log store's file format, the boot id and the wall-clock rule.
//!
//! It only formats and parses: it must not open, write or rotate a log file
//! (the log store does).
//!
//! Format version 2 (this one): every time berth opens a file to append
//! (its first line of a boot, and after each rotation) it writes a header
//! line naming the format and the boot, then one record per kept line:
//!
//! ```text
//! #berth-log 2 boot=<boot id, or ->
//! <seconds since boot>.<ms> <wall-clock time, or -> <text>
//! ```
//!
//! The time since boot is CLOCK_MONOTONIC; the wall-clock time is
//! CLOCK_REALTIME in UTC as `YYYY-MM-DDTHH:MM:SS.mmmZ`, written only when the
//! clock is set, which berth takes to mean later than [`CLOCK_SET_AFTER_S`]
//! (a board without a battery-backed clock starts at 1970 or at its build
//! date until something sets it). The boot id is the kernel's
//! (`/proc/sys/kernel/random/boot_id`), read once.
//!
//! Version 1 (before the header existed) had records `<seconds>.<ms> <text>`
//! and no header: lines before a file's first header are read as that.
//! Lines after a header of another version are skipped, not misread.

use std::sync::OnceLock;

/// The format this berth writes.
pub const VERSION: u32 = 2;
/// The header line's first word.
pub const HEADER: &str = "#berth-log";
/// The clock counts as set past 2025-01-01T00:00:00Z (seconds since 1970).
pub const CLOCK_SET_AFTER_S: u64 = 1_735_689_600;
/// Where the kernel says which boot this is.
pub const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";
/// A boot id's text: 36 characters, `8-4-4-4-12` lower-case hex.
pub const BOOT_ID_LEN: usize = 36;

/// The kernel's boot id, well-formed.
pub type BootId = heapless::String<BOOT_ID_LEN>;

/// `text` as a boot id (surrounding whitespace ignored), if it is one.
pub fn parse_boot_id(text: &str) -> Option<BootId> {
    let t = text.trim();
    let groups: Vec<&str> = t.split('-').collect();
    let shape = groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12]);
    if !shape || !groups.iter().all(|g| g.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))) {
        return None;
    }
    BootId::try_from(t).ok()
}

/// This boot's id, read once (64 bytes at most); `None` when the file is
/// absent or not a boot id.
pub fn boot_id() -> Option<BootId> {
    static ID: OnceLock<Option<BootId>> = OnceLock::new();
    ID.get_or_init(|| {
        let raw = crate::common::files::read_bounded(BOOT_ID_PATH, 64).ok()?;
        parse_boot_id(std::str::from_utf8(&raw).ok()?)
    })
    .clone()
}

/// Milliseconds since 1970 when `realtime_ms` counts as a set clock.
pub fn if_set(realtime_ms: u64) -> Option<u64> {
    (realtime_ms / 1000 > CLOCK_SET_AFTER_S).then_some(realtime_ms)
}

/// CLOCK_REALTIME now, when the clock is set.
pub fn wall_now() -> Option<u64> {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?;
    if_set(u64::try_from(d.as_millis()).ok()?)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01: (year, month, day).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Milliseconds since 1970 as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    format!("{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", s / 3600, s / 60 % 60, s % 60, ms % 1000)
}

/// The inverse of [`rfc3339`] (exactly that shape, nothing else).
pub fn parse_rfc3339(t: &str) -> Option<u64> {
    let b = t.as_bytes();
    let shape = b.len() == 24 && b.get(4) == Some(&b'-') && b.get(7) == Some(&b'-') && b.get(10) == Some(&b'T');
    if !shape || b.get(13) != Some(&b':') || b.get(16) != Some(&b':') || b.get(19) != Some(&b'.') || b.get(23) != Some(&b'Z') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| t.get(r).filter(|s| s.bytes().all(|c| c.is_ascii_digit())).and_then(|s| s.parse::<u32>().ok());
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s, ms) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 59 {
        return None;
    }
    let days = u64::try_from(days_from_civil(i64::from(y), mo, d)).ok()?;
    Some(((days * 86_400 + u64::from(h) * 3600 + u64::from(mi) * 60 + u64::from(s)) * 1000) + u64::from(ms))
}

/// The header line berth writes when it opens a file.
pub fn header(boot: Option<&str>) -> String {
    format!("{HEADER} {VERSION} boot={}\n", boot.unwrap_or("-"))
}

/// One record line.
pub fn encode(t_ms: u64, wall_ms: Option<u64>, text: &str) -> String {
    let wall = wall_ms.map(rfc3339).unwrap_or_else(|| "-".into());
    format!("{}.{:03} {wall} {text}\n", t_ms / 1000, t_ms % 1000)
}

/// A record read back from a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The boot it was written in (`None`: version 1, or unknown).
    pub boot: Option<BootId>,
    pub t_ms: u64,
    pub wall_ms: Option<u64>,
    pub text: String,
}

/// `SECONDS.MMM` as milliseconds.
fn parse_mono(t: &str) -> Option<u64> {
    let (s, ms) = t.split_once('.')?;
    if ms.len() != 3 {
        return None;
    }
    s.parse::<u64>().ok()?.checked_mul(1000)?.checked_add(ms.parse::<u64>().ok()?)
}

/// A version 2 record line.
fn record_v2(line: &str, boot: &Option<BootId>) -> Option<Record> {
    let (t, rest) = line.split_once(' ')?;
    let (wall, text) = rest.split_once(' ').unwrap_or((rest, ""));
    let wall_ms = if wall == "-" { None } else { Some(parse_rfc3339(wall)?) };
    Some(Record { boot: boot.clone(), t_ms: parse_mono(t)?, wall_ms, text: text.into() })
}

/// Every record of a file's text, of either version; lines that are not
/// records are skipped.
pub fn decode(file: &str) -> Vec<Record> {
    // `None`: before any header (version 1); `Some(None)`: an unknown version.
    let mut section: Option<Option<Option<BootId>>> = None;
    let mut out = Vec::new();
    for line in file.lines() {
        if let Some(rest) = line.strip_prefix(HEADER).and_then(|r| r.strip_prefix(' ')) {
            let mut words = rest.split(' ');
            let known = words.next() == Some("2");
            let boot = words.find_map(|w| w.strip_prefix("boot=")).and_then(parse_boot_id);
            section = Some(known.then_some(boot));
            continue;
        }
        let rec = match &section {
            None => line.split_once(' ').and_then(|(t, text)| Some(Record { boot: None, t_ms: parse_mono(t)?, wall_ms: None, text: text.into() })),
            Some(Some(boot)) => record_v2(line, boot),
            Some(None) => None,
        };
        out.extend(rec);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0f6c3c2e-5a1b-4c3d-9e8f-0123456789ab";

    #[test]
    fn the_clock_counts_as_set_only_past_the_fixed_date() {
        assert_eq!(if_set(0), None, "a board without a clock starts at 1970");
        assert_eq!(if_set(CLOCK_SET_AFTER_S * 1000 + 999), None, "the constant's second itself is not past it");
        assert_eq!(if_set((CLOCK_SET_AFTER_S + 1) * 1000), Some((CLOCK_SET_AFTER_S + 1) * 1000));
        assert_eq!(rfc3339(CLOCK_SET_AFTER_S * 1000), "2025-01-01T00:00:00.000Z", "the constant is the documented date");
    }

    #[test]
    fn wall_clock_times_are_rfc3339_utc_both_ways() {
        for (ms, text) in [
            (0, "1970-01-01T00:00:00.000Z"),
            (951_782_400_000, "2000-02-29T00:00:00.000Z"),
            (1_765_143_273_123, "2025-12-07T21:34:33.123Z"),
            (4_107_542_399_999, "2100-02-28T23:59:59.999Z"),
        ] {
            assert_eq!(rfc3339(ms), text);
            assert_eq!(parse_rfc3339(text), Some(ms), "{text}");
        }
        for bad in ["2025-13-01T00:00:00.000Z", "2025-12-07 21:34:33.123Z", "2025-12-07T21:34:33Z", "-", "2025-12-07T2a:34:33.123Z"] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn boot_ids_must_be_well_formed() {
        assert_eq!(parse_boot_id(&format!("{ID}\n")).as_deref(), Some(ID));
        for bad in ["", "-", "0F6C3C2E-5A1B-4C3D-9E8F-0123456789AB", "0f6c3c2e5a1b4c3d9e8f0123456789ab", "0f6c3c2e-5a1b-4c3d-9e8f-0123456789abc"] {
            assert_eq!(parse_boot_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn records_round_trip_and_older_files_still_read() {
        let mut file = String::from("12.345 a version 1 line\n7.000 another\n");
        file.push_str(&header(Some(ID)));
        file.push_str(&encode(1_234, None, "before the clock was set"));
        file.push_str(&encode(61_000, Some(1_765_143_273_123), "after  it, two  spaces"));
        file.push_str(&encode(62_000, Some(1_765_143_274_000), ""));
        file.push_str(&header(None));
        file.push_str(&encode(5, None, "a boot without an id"));
        file.push_str("#berth-log 3 boot=x\n9.000 - a later format's line\n");
        file.push_str(&header(Some(ID)));
        file.push_str("18446744073709551.999 - past u64\nnot a record\n");
        assert!(file.contains("\n61.000 2025-12-07T21:34:33.123Z after  it, two  spaces\n"), "{file}");
        let id = parse_boot_id(ID);
        let r = |boot: &Option<BootId>, t_ms, wall_ms, text: &str| Record { boot: boot.clone(), t_ms, wall_ms, text: text.into() };
        assert_eq!(
            decode(&file),
            [
                r(&None, 12_345, None, "a version 1 line"),
                r(&None, 7_000, None, "another"),
                r(&id, 1_234, None, "before the clock was set"),
                r(&id, 61_000, Some(1_765_143_273_123), "after  it, two  spaces"),
                r(&id, 62_000, Some(1_765_143_274_000), ""),
                r(&None, 5, None, "a boot without an id"),
            ]
        );
    }
}
