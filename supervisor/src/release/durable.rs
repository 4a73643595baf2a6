//! The store's writes, behind one small trait so that tests can cut the power
//! between any two of them.
//!
//! It decides nothing: the store must not change the data partition except
//! through [`Io`] (so the power-cut simulator sees every write), and [`Io`]
//! must not grow reads.
//!
//! Every change the store makes to the data partition is one of the calls of
//! [`Io`]: create a file, write to it, fsync it, rename, fsync a directory,
//! remove, make or remove a directory. Reads go straight to `std::fs`: they
//! change nothing. [`SysIo`] is the real thing; the store's tests wrap it in a
//! simulator that fails at step N and then throws away whatever was not made
//! durable, the way a power cut does.
//!
//! [`replace`] is the one way a small file is written: to a temporary name
//! in the same directory, fsync, rename over the target, fsync the directory.

use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The writing operations of the store.
pub trait Io {
    /// A file open for writing.
    type File: Write;
    /// Create (or truncate) a file for writing, mode 0644.
    fn create(&mut self, path: &Path) -> io::Result<Self::File>;
    /// fsync a file written through [`Io::create`].
    fn sync(&mut self, file: &mut Self::File) -> io::Result<()>;
    /// Atomically rename within the data file system.
    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()>;
    /// fsync a directory, making the entries made in it durable.
    fn sync_dir(&mut self, dir: &Path) -> io::Result<()>;
    fn remove_file(&mut self, path: &Path) -> io::Result<()>;
    /// Make a directory; one that exists already is fine.
    fn create_dir(&mut self, path: &Path) -> io::Result<()>;
    fn remove_dir_all(&mut self, path: &Path) -> io::Result<()>;
    /// Bytes an unprivileged writer may still use on the file system of `path`.
    fn free_bytes(&mut self, path: &Path) -> io::Result<u64>;
}

/// The power-cut test hook (only with the `test-hooks` feature): with
/// `berth.cut=N` on the kernel command line, the N-th store write of an
/// update (counted from [`start_counting`]) resets the machine at once,
/// without a sync: what was not made durable is lost, as in a power cut.
/// 0: off.
#[cfg(feature = "test-hooks")]
static CUT_AT: AtomicU64 = AtomicU64::new(0);
static STEPS: AtomicU64 = AtomicU64::new(0);
static COUNTING: AtomicBool = AtomicBool::new(false);

/// Arm the hook (from the kernel command line).
#[cfg(feature = "test-hooks")]
pub fn arm_cut(step: u64) {
    CUT_AT.store(step, Ordering::Relaxed);
}

/// An update begins: count its writes from 1.
pub fn start_counting() {
    STEPS.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::Relaxed);
}

/// Writes counted since [`start_counting`].
pub fn steps() -> u64 {
    STEPS.load(Ordering::Relaxed)
}

/// Add the writes another process made for the same update (the stager,
/// [`crate::release::stager`], counts its own): the count and the hook go on from
/// there.
pub fn add_steps(n: u64) {
    STEPS.fetch_add(n, Ordering::Relaxed);
}

/// The armed power-cut step (0: off), handed on to the stager.
#[cfg(feature = "test-hooks")]
pub fn armed_cut() -> u64 {
    CUT_AT.load(Ordering::Relaxed)
}

fn step(what: &str) {
    if !COUNTING.load(Ordering::Relaxed) {
        return;
    }
    let n = STEPS.fetch_add(1, Ordering::Relaxed) + 1;
    #[cfg(feature = "test-hooks")]
    crate::release::logwrites::mark(n, what);
    #[cfg(feature = "test-hooks")]
    if n == CUT_AT.load(Ordering::Relaxed) {
        crate::common::log::Event::warn("power.cut").kv("step", n).kv("before", what).emit();
        // No sync: the reset drops whatever the page cache still holds.
        let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT);
    }
    let _ = (n, what);
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct SysIo;

impl Io for SysIo {
    type File = std::fs::File;

    fn create(&mut self, path: &Path) -> io::Result<std::fs::File> {
        step("create");
        std::fs::File::create(path)
    }

    fn sync(&mut self, file: &mut std::fs::File) -> io::Result<()> {
        step("sync");
        file.sync_all()
    }

    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        step("rename");
        std::fs::rename(from, to)
    }

    fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
        step("sync-dir");
        std::fs::File::open(dir)?.sync_all()
    }

    fn remove_file(&mut self, path: &Path) -> io::Result<()> {
        step("remove");
        std::fs::remove_file(path)
    }

    fn create_dir(&mut self, path: &Path) -> io::Result<()> {
        step("mkdir");
        match std::fs::create_dir(path) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
            r => r,
        }
    }

    fn remove_dir_all(&mut self, path: &Path) -> io::Result<()> {
        step("remove-dir");
        std::fs::remove_dir_all(path)
    }

    fn free_bytes(&mut self, path: &Path) -> io::Result<u64> {
        let s = nix::sys::statvfs::statvfs(path).map_err(io::Error::from)?;
        // The field widths differ between the C libraries of the three targets.
        #[allow(clippy::unnecessary_cast)]
        Ok((s.blocks_available() as u64).saturating_mul(s.fragment_size() as u64))
    }
}

/// Replace `dir/name` with `bytes` atomically and durably: write
/// `dir/.name.tmp`, fsync it, rename it over `dir/name`, fsync `dir`.
pub fn replace<I: Io>(io: &mut I, dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = io.create(&tmp)?;
    f.write_all(bytes)?;
    io.sync(&mut f)?;
    drop(f);
    io.rename(&tmp, &dir.join(name))?;
    io.sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_writes_the_whole_file_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("berth-durable-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut io = SysIo;
        io.create_dir(&dir).unwrap();
        io.create_dir(&dir).unwrap();
        replace(&mut io, &dir, "f", b"one").unwrap();
        replace(&mut io, &dir, "f", b"two!").unwrap();
        assert_eq!(std::fs::read(dir.join("f")).unwrap(), b"two!");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        assert!(io.free_bytes(&dir).unwrap() > 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
