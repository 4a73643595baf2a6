//! Shifting a volume's ids to a container's new range, off the loop and
//! crash-safe.
//!
//! It must not run in PID 1's loop, follow a symlink, or walk without bound.
//!
//! A volume is written by its container, so its tree (size, depth, names)
//! is the container's to choose: the walk runs in a helper thread
//! ([`spawn`]), never in PID 1's loop, which waits for its report before the
//! container starts. The walk never follows a symlink (directories are
//! opened `O_NOFOLLOW` relative to their parent; everything else is
//! re-owned with `lchown`), and is bounded: [`DEPTH_MAX`] levels,
//! [`ENTRIES_MAX`] entries.
//!
//! Every id of a container range in the volume (outside ids from
//! [`BASE`] on) moves to the same inside id of the new range; host ids below
//! [`BASE`] stay. Only this container's processes ever wrote the volume, so
//! such an id is one of its own from an earlier range, whichever: the walk
//! is right however many shifts were cut short before it, and running it
//! again changes nothing.
//!
//! The marker `/data/volumes/<container>/.<volume>.ids` (in a directory only
//! root may write) says `at <base>` once the volume's ids are complete in
//! that range, `to <base>` while a shift there is under way. A shift writes
//! its intent, walks, then writes the new base; each write is a temporary
//! file, `fsync`ed, renamed over the marker, and the directory `fsync`ed
//! (the marker is written last). A volume whose marker is not `at` the range
//! its container starts with (a shift cut short by a reset, an older volume
//! without a marker, a new range) is shifted before the container starts.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::fd::{AsRawFd, IntoRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use nix::errno::Errno;
use nix::sys::stat::{fchmod, fstat, fstatat, Mode, SFlag};

use super::ids::{BASE, COUNT};

/// Deepest directory nesting walked.
pub const DEPTH_MAX: u32 = 64;
/// Most entries (files, directories, links) one shift walks.
pub const ENTRIES_MAX: u64 = 1_000_000;

/// Where a volume's ids are, by its marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    /// Complete in the range at this base (or made there).
    At(u32),
    /// A shift to the range at this base began.
    To(u32),
}

impl Marker {
    /// The marker file's text.
    pub fn text(self) -> String {
        match self {
            Marker::At(b) => format!("at {b}\n"),
            Marker::To(b) => format!("to {b}\n"),
        }
    }

    /// Read a marker's text; `None` when it is not one.
    pub fn parse(text: &str) -> Option<Marker> {
        let mut it = text.split_ascii_whitespace();
        let (kind, base) = (it.next()?, it.next()?.parse::<u32>().ok().filter(|b| is_base(*b))?);
        if it.next().is_some() {
            return None;
        }
        match kind {
            "at" => Some(Marker::At(base)),
            "to" => Some(Marker::To(base)),
            _ => None,
        }
    }
}

/// The start of a container range.
fn is_base(b: u32) -> bool {
    b.checked_sub(BASE).is_some_and(|o| o.is_multiple_of(COUNT))
}

/// Whether a volume with this marker must be shifted before its container
/// starts in the range at `want`.
pub fn needed(marker: Option<Marker>, want: u32) -> bool {
    marker != Some(Marker::At(want))
}

/// Move one id to the range at `new`: an id of any container range keeps
/// its inside id; host ids (below [`BASE`]) and ids already there stay.
pub fn moved(id: u32, new: u32) -> Option<u32> {
    let offset = id.checked_sub(BASE)? % COUNT;
    new.checked_add(offset).filter(|n| *n != id)
}

/// One volume to shift.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The container's directory of volumes (`/data/volumes/<container>`).
    pub dir: PathBuf,
    /// The volume's name in it.
    pub volume: String,
    pub to: u32,
}

impl Job {
    fn marker_path(&self, tmp: bool) -> PathBuf {
        self.dir.join(format!(".{}.ids{}", self.volume, if tmp { ".tmp" } else { "" }))
    }
}

/// The volume's marker (`None` when absent or unreadable).
pub fn read_marker(dir: &Path, volume: &str) -> Option<Marker> {
    let text = std::fs::read_to_string(dir.join(format!(".{volume}.ids"))).ok()?;
    Marker::parse(text.get(..64).unwrap_or(&text))
}

/// Write the marker durably: a temporary file, `fsync`, rename, directory
/// `fsync`.
pub fn write_marker(dir: &Path, volume: &str, m: Marker) -> std::io::Result<()> {
    let job = Job { dir: dir.to_owned(), volume: volume.to_owned(), to: 0 };
    let (tmp, path) = (job.marker_path(true), job.marker_path(false));
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC).open(&tmp)?;
    f.write_all(m.text().as_bytes())?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Run a shift: intent, walk, new base. The number of entries walked.
pub fn run(job: &Job, cancel: &AtomicBool) -> Result<u64, String> {
    let name = job.dir.join(&job.volume);
    let shown = name.display();
    write_marker(&job.dir, &job.volume, Marker::To(job.to)).map_err(|e| format!("marker for {shown}: {e}"))?;
    let top = open_dir(None, &name).map_err(|e| format!("open {shown}: {}", e.desc()))?;
    let mut walk = Walk { new: job.to, entries: 0, cancel };
    walk.dir(&top, 0).map_err(|e| format!("shift {shown}: {}", e.desc()))?;
    write_marker(&job.dir, &job.volume, Marker::At(job.to)).map_err(|e| format!("marker for {shown}: {e}"))?;
    Ok(walk.entries)
}

/// What a helper thread reports.
pub type Report = Result<u64, String>;

/// Run `jobs` in a helper thread: its report comes on the channel, then a
/// byte on `wake` (a pipe the loop watches). Setting `cancel` makes it stop
/// at its next entry (the marker then says the shift is unfinished).
pub fn spawn(jobs: Vec<Job>, wake: std::os::fd::OwnedFd, cancel: Arc<AtomicBool>) -> std::io::Result<std::sync::mpsc::Receiver<Report>> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new().name("volume-shift".into()).spawn(move || {
        let mut total = 0u64;
        let mut report = Ok(0);
        for j in &jobs {
            match run(j, &cancel) {
                Ok(n) => total = total.saturating_add(n),
                Err(e) => {
                    report = Err(e);
                    break;
                }
            }
        }
        let _ = tx.send(report.map(|_| total));
        let _ = nix::unistd::write(&wake, b"s");
    })?;
    Ok(rx)
}

/// An open directory.
struct Dir(std::fs::File);

fn io_errno(e: std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// Open directory `name` (under `dir`, or absolute) without following a
/// symlink.
fn open_dir(dir: Option<&Dir>, name: &Path) -> Result<Dir, Errno> {
    let path = match dir {
        Some(d) => Path::new(&format!("/proc/self/fd/{}", d.0.as_raw_fd())).join(name),
        None => name.to_owned(),
    };
    std::fs::OpenOptions::new().read(true).custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC).open(path).map(Dir).map_err(io_errno)
}

struct Walk<'a> {
    new: u32,
    entries: u64,
    cancel: &'a AtomicBool,
}

impl Walk<'_> {
    fn count(&mut self) -> Result<(), Errno> {
        self.entries += 1;
        if self.entries > ENTRIES_MAX {
            return Err(Errno::EFBIG);
        }
        if self.cancel.load(Ordering::Relaxed) {
            return Err(Errno::ECANCELED);
        }
        Ok(())
    }

    /// Shift `dir` and everything below it.
    fn dir(&mut self, dir: &Dir, depth: u32) -> Result<(), Errno> {
        if depth > DEPTH_MAX {
            return Err(Errno::ELOOP);
        }
        self.count()?;
        let st = fstat(dir.0.as_raw_fd())?;
        let (u, g) = (moved(st.st_uid, self.new), moved(st.st_gid, self.new));
        if u.is_some() || g.is_some() {
            std::os::unix::fs::fchown(&dir.0, u, g).map_err(io_errno)?;
            // chown clears setuid/setgid bits on some filesystems: restore them.
            fchmod(dir.0.as_raw_fd(), Mode::from_bits_truncate(st.st_mode & 0o7777))?;
        }
        let copy = open_dir(Some(dir), Path::new("."))?;
        // `Dir` owns the descriptor from here (and closes it if it fails).
        let mut entries = nix::dir::Dir::from_fd(copy.0.into_raw_fd())?;
        let mut subdirs: Vec<OsString> = Vec::new();
        for entry in entries.iter() {
            let entry = entry?;
            let n = entry.file_name();
            if n == c"." || n == c".." {
                continue;
            }
            let st = fstatat(Some(dir.0.as_raw_fd()), n, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)?;
            let n = OsStr::from_bytes(n.to_bytes());
            if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFDIR {
                subdirs.push(n.to_owned());
                continue;
            }
            self.count()?;
            let (u, g) = (moved(st.st_uid, self.new), moved(st.st_gid, self.new));
            if u.is_some() || g.is_some() {
                let p = Path::new(&format!("/proc/self/fd/{}", dir.0.as_raw_fd())).join(n);
                std::os::unix::fs::lchown(p, u, g).map_err(io_errno)?;
            }
        }
        drop(entries);
        for n in subdirs {
            let sub = open_dir(Some(dir), Path::new(&n))?;
            self.dir(&sub, depth + 1)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: u32 = BASE;
    const B: u32 = BASE + 3 * COUNT;
    const C: u32 = BASE + 5 * COUNT;

    #[test]
    fn ids_move_between_ranges_keeping_the_inside_id() {
        assert_eq!(moved(A, B), Some(B));
        assert_eq!(moved(A + 1000, B), Some(B + 1000));
        assert_eq!(moved(A + COUNT - 1, B), Some(B + COUNT - 1));
        assert_eq!(moved(C + 7, B), Some(B + 7), "any earlier range");
        assert_eq!(moved(B + 7, B), None, "already there");
        assert_eq!(moved(0, B), None, "host root stays");
        assert_eq!(moved(BASE - 1, B), None, "host ids stay");
    }

    #[test]
    fn markers_round_trip_and_refuse_garbage() {
        for m in [Marker::At(A), Marker::To(B)] {
            assert_eq!(Marker::parse(&m.text()), Some(m));
        }
        for bad in ["", "at", "at x", "at 100001", "to 100000 x", "is 100000", "100000"] {
            assert_eq!(Marker::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn only_a_volume_marked_complete_in_the_range_is_left_alone() {
        assert!(!needed(Some(Marker::At(B)), B));
        assert!(needed(Some(Marker::At(A)), B), "another range");
        assert!(needed(Some(Marker::To(B)), B), "a shift to B cut short");
        assert!(needed(Some(Marker::To(B)), A), "cut short, then back");
        assert!(needed(None, B), "no marker");
    }

    /// A real tree: a shift cut short (cancelled) and redone to a third
    /// range; a symlink is re-owned, never followed. Root only (chown).
    #[test]
    fn root_a_cut_shift_is_redone_and_links_are_not_followed() {
        use std::os::unix::fs::MetadataExt;
        if !crate::common::roottests::enabled("root_a_cut_shift_is_redone_and_links_are_not_followed") {
            return;
        }
        let base = std::env::temp_dir().join(format!("berth-shift-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let vol = base.join("v");
        std::fs::create_dir_all(vol.join("a/b")).unwrap();
        std::fs::write(vol.join("a/b/f"), "x").unwrap();
        let outside = base.join("outside");
        std::fs::write(&outside, "host").unwrap();
        std::os::unix::fs::symlink(&outside, vol.join("a/link")).unwrap();
        for p in [vol.clone(), vol.join("a"), vol.join("a/b")] {
            std::os::unix::fs::lchown(&p, Some(A + 5), Some(A + 5)).unwrap();
        }
        // Half moved already, by a shift to B cut short.
        std::os::unix::fs::lchown(vol.join("a/b/f"), Some(B + 5), Some(B + 5)).unwrap();
        std::os::unix::fs::lchown(vol.join("a/link"), Some(A + 6), Some(A + 6)).unwrap();
        std::fs::write(vol.join("host"), "").unwrap();
        // Cancelled at once: the intent is written, the base is not.
        let job = Job { dir: base.clone(), volume: "v".into(), to: B };
        assert!(run(&job, &AtomicBool::new(true)).is_err());
        assert_eq!(read_marker(&base, "v"), Some(Marker::To(B)));
        assert!(needed(read_marker(&base, "v"), C));
        let job = Job { dir: base.clone(), volume: "v".into(), to: C };
        assert_eq!(run(&job, &AtomicBool::new(false)).unwrap(), 6);
        assert_eq!(read_marker(&base, "v"), Some(Marker::At(C)));
        for p in ["", "a", "a/b", "a/b/f"] {
            assert_eq!(std::fs::symlink_metadata(vol.join(p)).unwrap().uid(), C + 5, "{p}");
        }
        assert_eq!(std::fs::symlink_metadata(vol.join("a/link")).unwrap().uid(), C + 6);
        assert_eq!(std::fs::metadata(vol.join("host")).unwrap().uid(), 0, "a host-owned file stays");
        assert_eq!(std::fs::metadata(&outside).unwrap().uid(), 0, "the link's target is not touched");
        assert!(!needed(read_marker(&base, "v"), C));
        let _ = std::fs::remove_dir_all(&base);
    }
}
