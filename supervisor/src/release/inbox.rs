//! The inbox: bundles dropped on the data partition (`berth receive`, a
//! technician's copy) that berth takes by itself, and the quarantine where
//! bundles go that must not be tried again.
//!
//! A bundle is taken at most [`ATTEMPTS_MAX`] times. Before its staging
//! starts it is renamed (and the directory fsynced) from `NAME.bundle` to
//! `NAME.bundle.taking1`; a staging that ends (staged or refused) removes
//! it. A reset, a power cut or a crash of the stager in the middle leaves
//! the `taking` name behind: the next look renames it to `.taking2` and
//! stages it once more; found again after that, it is moved to the
//! quarantine with its cause instead. So one bad bundle can never make the
//! device reset in a loop.
//!
//! Only regular files are bundles. A FIFO, device node, socket, symlink or
//! directory under a bundle name is never opened (it could block or lead
//! elsewhere): it is quarantined with that reason.
//!
//! The quarantine ([`QUARANTINE`]) holds at most [`QUARANTINE_KEEP`]
//! entries, each `<seq>-NAME.bundle` and its cause `<seq>-NAME.bundle.cause`
//! (a line of text written durably); older entries are removed to make
//! room. `berthctl release` shows the causes.
//!
//! The decisions ([`pick`], [`evict`], the name forms) are pure; the file
//! system steps below them are renames, small writes and fsyncs, each cheap.

use std::io::{self, Write};
use std::path::Path;

/// Where bundles dropped on the data partition are picked up.
pub const INBOX: &str = "/data/berth/inbox";
/// Where bundles that must not be tried again go.
pub const QUARANTINE: &str = "/data/berth/quarantine";
/// How many times a bundle is staged before an interrupted staging
/// quarantines it.
pub const ATTEMPTS_MAX: u8 = 2;
/// Most quarantined bundles kept (with their causes).
pub const QUARANTINE_KEEP: usize = 2;
/// Longest bundle file name taken from the inbox (longer ones are left alone).
pub const NAME_MAX: usize = 96;
/// Most inbox entries looked at per look.
pub const SCAN_MAX: usize = 64;
/// Longest cause text kept.
pub const CAUSE_MAX: usize = 160;
/// The suffix every bundle name has.
pub const SUFFIX: &str = ".bundle";
/// What follows a bundle's name while it is being taken (then the attempt).
const TAKING: &str = ".taking";
/// The suffix of a quarantined bundle's cause file.
const CAUSE: &str = ".cause";

/// What an inbox entry is (from `lstat`: a symlink is never followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    Device,
    Socket,
    Other,
}

impl Kind {
    pub fn of(t: std::fs::FileType) -> Kind {
        use std::os::unix::fs::FileTypeExt;
        if t.is_file() {
            Kind::File
        } else if t.is_dir() {
            Kind::Dir
        } else if t.is_symlink() {
            Kind::Symlink
        } else if t.is_fifo() {
            Kind::Fifo
        } else if t.is_block_device() || t.is_char_device() {
            Kind::Device
        } else if t.is_socket() {
            Kind::Socket
        } else {
            Kind::Other
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::File => "regular file",
            Kind::Dir => "directory",
            Kind::Symlink => "symlink",
            Kind::Fifo => "FIFO",
            Kind::Device => "device node",
            Kind::Socket => "socket",
            Kind::Other => "special file",
        }
    }
}

/// A name in the inbox that is berth's business.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Name {
    /// `NAME.bundle`: not taken yet.
    Fresh { base: String },
    /// `NAME.bundle.takingN`: taken N times, the last one interrupted (or
    /// still running).
    Taking { base: String, attempt: u8 },
}

/// Parse an inbox file name; `None` for anything else (temporary names
/// such as `x.partial`, hidden files, overlong names).
pub fn parse(name: &str) -> Option<Name> {
    if name.starts_with('.') || name.len() > NAME_MAX + TAKING.len() + 1 || name.contains('/') {
        return None;
    }
    if name.ends_with(SUFFIX) {
        return is_base(name).then(|| Name::Fresh { base: name.to_string() });
    }
    if let Some((base, n)) = name.rsplit_once(TAKING) {
        let attempt: u8 = n.parse().ok().filter(|a| (1..=9).contains(a) && n.len() == 1)?;
        return is_base(base).then(|| Name::Taking { base: base.to_string(), attempt });
    }
    None
}

fn is_base(s: &str) -> bool {
    s.len() > SUFFIX.len() && s.len() <= NAME_MAX && s.ends_with(SUFFIX) && !s.starts_with('.')
}

/// The name of a bundle being taken for the `attempt`-th time.
pub fn taking(base: &str, attempt: u8) -> String {
    format!("{base}{TAKING}{attempt}")
}

/// Why a bundle was quarantined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Its staging was interrupted (reset, power cut, crash) this many times.
    Interrupted { attempts: u8 },
    /// Not a regular file.
    NotRegular(Kind),
}

impl core::fmt::Display for Cause {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Cause::Interrupted { attempts } => {
                write!(f, "staging was interrupted {attempts} times (reset, power cut or crash while staging); not tried again")
            }
            Cause::NotRegular(k) => {
                write!(f, "not a regular file but a {}; never opened", k.name())
            }
        }
    }
}

/// What to do with an inbox entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick {
    /// Rename `from` to `to` (fsynced), then stage it: attempt `attempt`.
    Stage { from: String, to: String, base: String, attempt: u8 },
    /// Move `name` into the quarantine.
    Quarantine { name: String, base: String, cause: Cause },
}

/// Decide what a look into the inbox does with its entries: every entry
/// that must be quarantined, then at most one bundle to stage: a taken
/// one first (its staging was interrupted), else the first fresh one by
/// name. Other names are left alone.
pub fn pick(entries: &[(String, Kind)]) -> Vec<Pick> {
    let mut sorted: Vec<&(String, Kind)> = entries.iter().take(SCAN_MAX).collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = Vec::new();
    let mut taken: Option<Pick> = None;
    let mut fresh: Option<Pick> = None;
    for (name, kind) in sorted {
        let Some(parsed) = parse(name) else { continue };
        let base = match &parsed {
            Name::Fresh { base } | Name::Taking { base, .. } => base.clone(),
        };
        if *kind != Kind::File {
            out.push(Pick::Quarantine { name: name.clone(), base, cause: Cause::NotRegular(*kind) });
            continue;
        }
        match parsed {
            Name::Taking { attempt, .. } if attempt >= ATTEMPTS_MAX => {
                out.push(Pick::Quarantine { name: name.clone(), base, cause: Cause::Interrupted { attempts: attempt } });
            }
            Name::Taking { attempt, .. } if taken.is_none() => {
                let next = attempt + 1;
                taken = Some(Pick::Stage { from: name.clone(), to: taking(&base, next), base, attempt: next });
            }
            Name::Fresh { .. } if fresh.is_none() => {
                fresh = Some(Pick::Stage { from: name.clone(), to: taking(&base, 1), base, attempt: 1 });
            }
            _ => {}
        }
    }
    out.extend(taken.or(fresh));
    out
}

/// A quarantine entry's sequence number and bundle name, from its file
/// name (`<seq>-NAME.bundle` or its `.cause`).
pub fn parse_quarantined(name: &str) -> Option<(u32, &str)> {
    let (seq, rest) = name.split_once('-')?;
    let seq: u32 = seq.parse().ok().filter(|_| seq.len() <= 9 && seq.bytes().all(|b| b.is_ascii_digit()))?;
    let base = rest.strip_suffix(CAUSE).unwrap_or(rest);
    is_base(base).then_some((seq, base))
}

/// The quarantine's file names for entry `seq` of bundle `base`: the
/// bundle's and its cause's.
pub fn quarantined_names(seq: u32, base: &str) -> (String, String) {
    let bundle = format!("{seq:06}-{base}");
    let cause = format!("{bundle}{CAUSE}");
    (bundle, cause)
}

/// Which files of the quarantine (its listing) to remove so that a new
/// entry fits within [`QUARANTINE_KEEP`], oldest first; and the new
/// entry's sequence number.
pub fn evict(names: &[String]) -> (Vec<String>, u32) {
    let mut seqs: Vec<u32> = names.iter().filter_map(|n| parse_quarantined(n).map(|(s, _)| s)).collect();
    seqs.sort_unstable();
    seqs.dedup();
    let next = seqs.last().map_or(1, |s| s.saturating_add(1));
    let drop = seqs.len().saturating_sub(QUARANTINE_KEEP.saturating_sub(1));
    let old: Vec<u32> = seqs.into_iter().take(drop).collect();
    let mut gone: Vec<String> = names.iter().filter(|n| parse_quarantined(n).is_some_and(|(s, _)| old.contains(&s))).cloned().collect();
    gone.sort();
    (gone, next)
}

/// A quarantined bundle, as `berthctl release` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    pub seq: u32,
    pub bundle: String,
    pub cause: String,
}

impl core::fmt::Display for Quarantined {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "quarantined {}: {}", self.bundle, self.cause)
    }
}

/// The inbox's entries and what they are (`lstat`), at most [`SCAN_MAX`].
pub fn list(dir: &Path) -> io::Result<Vec<(String, Kind)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)?.flatten().take(SCAN_MAX * 2) {
        let Ok(name) = e.file_name().into_string() else {
            continue;
        };
        if parse(&name).is_none() {
            continue;
        }
        if let Ok(t) = e.file_type() {
            out.push((name, Kind::of(t)));
        }
    }
    Ok(out)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Rename `from` to `to` in `dir` and make it durable.
pub fn rename(dir: &Path, from: &str, to: &str) -> io::Result<()> {
    std::fs::rename(dir.join(from), dir.join(to))?;
    sync_dir(dir)
}

/// Remove a taken bundle and make it durable.
pub fn remove(dir: &Path, name: &str) -> io::Result<()> {
    std::fs::remove_file(dir.join(name))?;
    sync_dir(dir)
}

/// Move `inbox/name` into the quarantine `qdir` with its cause (written
/// durably), removing the oldest entries beyond [`QUARANTINE_KEEP`].
pub fn quarantine(inbox: &Path, qdir: &Path, name: &str, base: &str, cause: &str) -> io::Result<Quarantined> {
    match std::fs::create_dir(qdir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    let names: Vec<String> = std::fs::read_dir(qdir)?.flatten().take(SCAN_MAX).filter_map(|e| e.file_name().into_string().ok()).collect();
    let (gone, seq) = evict(&names);
    for g in &gone {
        let p = qdir.join(g);
        // A directory moved here is removed only when empty: never a walk
        // of a tree in the loop.
        let r = if p.symlink_metadata().is_ok_and(|m| m.is_dir()) { std::fs::remove_dir(&p) } else { std::fs::remove_file(&p) };
        if let Err(e) = r {
            crate::common::log::Event::warn("update.quarantine").kv("remove", g).kv("error", e).emit();
        }
    }
    let (bundle, cause_file) = quarantined_names(seq, base);
    let text = bounded(cause);
    let tmp = qdir.join(format!(".{cause_file}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, qdir.join(&cause_file))?;
    std::fs::rename(inbox.join(name), qdir.join(&bundle))?;
    sync_dir(qdir)?;
    sync_dir(inbox)?;
    Ok(Quarantined { seq, bundle: base.to_string(), cause: text })
}

/// A cause text cut to [`CAUSE_MAX`] bytes at a character boundary, one line.
fn bounded(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars().map(|c| if c.is_control() { ' ' } else { c }) {
        if out.len() + c.len_utf8() > CAUSE_MAX {
            break;
        }
        out.push(c);
    }
    out
}

/// The quarantine's entries, oldest first (their causes read, bounded).
pub fn load(qdir: &Path) -> Vec<Quarantined> {
    let Ok(dir) = std::fs::read_dir(qdir) else {
        return Vec::new();
    };
    let mut out: Vec<Quarantined> = Vec::new();
    for e in dir.flatten().take(SCAN_MAX) {
        let Ok(name) = e.file_name().into_string() else {
            continue;
        };
        let Some((seq, base)) = parse_quarantined(&name) else {
            continue;
        };
        if !name.ends_with(CAUSE) {
            continue;
        }
        let mut buf = Vec::new();
        let read = std::fs::File::open(e.path()).and_then(|f| io::Read::read_to_end(&mut io::Read::take(f, CAUSE_MAX as u64), &mut buf));
        let cause = match read {
            Ok(_) => bounded(String::from_utf8_lossy(&buf).trim_end()),
            Err(e) => format!("cause unreadable: {e}"),
        };
        out.push(Quarantined { seq, bundle: base.to_string(), cause });
    }
    out.sort_by_key(|q| q.seq);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(names: &[&str]) -> Vec<(String, Kind)> {
        names.iter().map(|n| (n.to_string(), Kind::File)).collect()
    }

    #[test]
    fn names_parse_and_round_trip() {
        assert_eq!(parse("v2.bundle"), Some(Name::Fresh { base: "v2.bundle".into() }));
        assert_eq!(parse(&taking("v2.bundle", 2)), Some(Name::Taking { base: "v2.bundle".into(), attempt: 2 }));
        assert_eq!(taking("v2.bundle", 1), "v2.bundle.taking1");
        for other in ["v2.partial", ".v2.bundle", ".bundle", "v2.bundle.taking", "v2.bundle.taking0", "v2.bundle.taking12", "v2.bundle.takingx", "x.taking1"] {
            assert_eq!(parse(other), None, "{other}");
        }
        assert_eq!(parse(&format!("{}.bundle", "a".repeat(NAME_MAX))), None, "overlong");
        assert_eq!(parse("a.taking1.bundle"), Some(Name::Fresh { base: "a.taking1.bundle".into() }));
    }

    #[test]
    fn a_fresh_bundle_is_taken_as_attempt_one() {
        let p = pick(&files(&["b.bundle", "a.bundle", "c.partial"]));
        assert_eq!(p, [Pick::Stage { from: "a.bundle".into(), to: "a.bundle.taking1".into(), base: "a.bundle".into(), attempt: 1 }]);
        assert!(pick(&files(&["c.partial", "notes.txt"])).is_empty());
    }

    #[test]
    fn an_interrupted_bundle_is_retried_once_then_quarantined() {
        // Found taken once (the first staging was interrupted): before any fresh one.
        let p = pick(&files(&["a.bundle", "z.bundle.taking1"]));
        assert_eq!(p, [Pick::Stage { from: "z.bundle.taking1".into(), to: "z.bundle.taking2".into(), base: "z.bundle".into(), attempt: 2 }]);
        // Found taken twice: quarantined, and the next fresh one is staged.
        let p = pick(&files(&["a.bundle", "z.bundle.taking2"]));
        assert_eq!(
            p,
            [
                Pick::Quarantine { name: "z.bundle.taking2".into(), base: "z.bundle".into(), cause: Cause::Interrupted { attempts: ATTEMPTS_MAX } },
                Pick::Stage { from: "a.bundle".into(), to: "a.bundle.taking1".into(), base: "a.bundle".into(), attempt: 1 },
            ]
        );
        assert!(Cause::Interrupted { attempts: 2 }.to_string().contains("interrupted 2 times"));
    }

    #[test]
    fn special_files_under_bundle_names_are_quarantined_never_staged() {
        let entries = vec![
            ("fifo.bundle".to_string(), Kind::Fifo),
            ("dev.bundle".to_string(), Kind::Device),
            ("link.bundle".to_string(), Kind::Symlink),
            ("dir.bundle.taking1".to_string(), Kind::Dir),
            ("other-dir".to_string(), Kind::Dir),
        ];
        let p = pick(&entries);
        assert_eq!(p.len(), 4);
        assert!(p.iter().all(|x| matches!(x, Pick::Quarantine { cause: Cause::NotRegular(_), .. })), "{p:?}");
        assert!(p.contains(&Pick::Quarantine { name: "fifo.bundle".into(), base: "fifo.bundle".into(), cause: Cause::NotRegular(Kind::Fifo) }));
        assert!(Cause::NotRegular(Kind::Fifo).to_string().contains("FIFO"));
    }

    #[test]
    fn quarantine_keeps_the_newest_entries() {
        let (gone, next) = evict(&[]);
        assert!(gone.is_empty());
        assert_eq!(next, 1);
        let (b1, c1) = quarantined_names(1, "a.bundle");
        let (b2, c2) = quarantined_names(2, "b.bundle");
        let (b3, c3) = quarantined_names(3, "c.bundle");
        assert_eq!((b1.as_str(), c1.as_str()), ("000001-a.bundle", "000001-a.bundle.cause"));
        assert_eq!(parse_quarantined(&c2), Some((2, "b.bundle")));
        assert_eq!(parse_quarantined("junk"), None);
        let names = vec![b2.clone(), c2.clone(), b1.clone(), c1.clone(), b3.clone(), c3.clone(), "junk".into()];
        let (gone, next) = evict(&names);
        assert_eq!(next, 4);
        // Room for one more within QUARANTINE_KEEP: only the newest stays.
        assert_eq!(gone, [b1, c1, b2, c2]);
    }

    #[test]
    fn quarantine_moves_the_file_and_records_its_cause() {
        let root = std::env::temp_dir().join(format!("berth-inbox-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let (inbox, q) = (root.join("inbox"), root.join("quarantine"));
        std::fs::create_dir_all(&inbox).unwrap();
        for n in 0..3 {
            std::fs::write(inbox.join("x.bundle.taking2"), b"bytes").unwrap();
            let got = quarantine(&inbox, &q, "x.bundle.taking2", "x.bundle", &format!("cause {n}\nsecond line")).unwrap();
            assert_eq!(got.seq, n + 1);
        }
        assert!(!inbox.join("x.bundle.taking2").exists());
        let kept = load(&q);
        assert_eq!(kept.len(), QUARANTINE_KEEP);
        assert_eq!(kept.last().unwrap(), &Quarantined { seq: 3, bundle: "x.bundle".into(), cause: "cause 2 second line".into() });
        assert_eq!(kept.last().unwrap().to_string(), "quarantined x.bundle: cause 2 second line");
        assert_eq!(std::fs::read_dir(&q).unwrap().count(), 2 * QUARANTINE_KEEP);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
