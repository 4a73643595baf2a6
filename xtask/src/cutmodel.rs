//! The host model of the update to release 2 under power cuts: the device's
//! own store code, run on scratch copies of the installed store through an
//! [`Io`] that stops before a chosen write (and refuses every write after,
//! so no clean-up runs: the power is gone). Each stopped store is then
//! booted with the same code, as the next boot on the device would, giving
//! the [`Plan`] the power-cut scenarios and the dm-log-writes replay judge
//! against (see `qemu_tests::cutverdict` for which outcomes a cut allows).

use crate::release::Compiled;
use berth::release::durable::{Io, SysIo};
use berth::release::manifest::Digest;
use berth::release::store::{self, Store};
use berth::release::TrustedKeys;
use qemu_tests::cutverdict::{Plan, Verdict};
use std::cell::RefCell;
use std::fs;
use std::io;
use std::path::Path;
use std::rc::Rc;

/// What a run wrote, stopping before write `stop_before` (0: never).
#[derive(Default)]
struct Run {
    n: u64,
    stop_before: u64,
    kinds: Vec<String>,
    /// The write count when each store operation returned.
    ends: Vec<u64>,
}

/// The writes of the store through [`SysIo`], counted into a shared [`Run`].
struct CutIo(Rc<RefCell<Run>>);

impl CutIo {
    fn step(&mut self, kind: &str) -> io::Result<()> {
        let mut r = self.0.borrow_mut();
        r.n += 1;
        if r.stop_before != 0 && r.n >= r.stop_before {
            return Err(io::Error::other("power cut (host model)"));
        }
        r.kinds.push(kind.to_string());
        Ok(())
    }
}

impl Io for CutIo {
    type File = fs::File;
    fn create(&mut self, path: &Path) -> io::Result<fs::File> {
        self.step("create")?;
        SysIo.create(path)
    }
    fn sync(&mut self, file: &mut fs::File) -> io::Result<()> {
        self.step("sync")?;
        SysIo.sync(file)
    }
    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        self.step("rename")?;
        SysIo.rename(from, to)
    }
    fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
        self.step("sync-dir")?;
        SysIo.sync_dir(dir)
    }
    fn remove_file(&mut self, path: &Path) -> io::Result<()> {
        self.step("remove")?;
        SysIo.remove_file(path)
    }
    fn create_dir(&mut self, path: &Path) -> io::Result<()> {
        self.step("mkdir")?;
        SysIo.create_dir(path)
    }
    fn remove_dir_all(&mut self, path: &Path) -> io::Result<()> {
        self.step("remove-dir")?;
        SysIo.remove_dir_all(path)
    }
    fn free_bytes(&mut self, path: &Path) -> io::Result<u64> {
        SysIo.free_bytes(path)
    }
}

/// Release 1 installed (images, object, record) and booted once in `dir`.
pub struct Start<'a> {
    pub v1: &'a Compiled,
    pub v1_signed: &'a [u8],
    pub keys: &'a TrustedKeys,
    pub board: &'a str,
}

fn install(dir: &Path, s: &Start) -> Result<(), String> {
    let _ = fs::remove_dir_all(dir);
    let images = dir.join(store::IMAGES);
    fs::create_dir_all(&images).map_err(|e| format!("{}: {e}", images.display()))?;
    for img in &s.v1.images {
        let dest = images.join(store::image_name(&Digest(img.sha256)));
        fs::copy(&img.path, &dest).map_err(|e| format!("{}: {e}", dest.display()))?;
    }
    crate::artifacts::install_release(dir, s.v1_signed, s.v1.release.version)?;
    let (mut st, _) = Store::open(dir).map_err(|e| e.to_string())?;
    st.boot(s.keys, s.board).map_err(|e| e.to_string())?;
    Ok(())
}

/// Run the update on `dir` (installed and booted), stopping before write
/// `stop_before` (0: never). Returns the writes' kinds and operation ends.
fn update(dir: &Path, bundle: &Path, s: &Start, stop_before: u64) -> Result<Run, String> {
    let shared = Rc::new(RefCell::new(Run { stop_before, ..Run::default() }));
    let (mut st, _) = Store::open_with(dir, CutIo(Rc::clone(&shared))).map_err(|e| e.to_string())?;
    let end = || {
        let mut r = shared.borrow_mut();
        let n = r.kinds.len() as u64;
        r.ends.push(n);
    };
    let mut file = fs::File::open(bundle).map_err(|e| format!("{}: {e}", bundle.display()))?;
    // The first error is the cut (or, with no cut, a real failure).
    let run = (|| -> Result<(), String> {
        let staged = st.stage(&mut file, s.keys, s.board).map_err(|e| e.to_string())?;
        end();
        st.begin_trial(&staged, false).map_err(|e| e.to_string())?;
        end();
        st.commit().map_err(|e| e.to_string())?;
        end();
        st.gc().map_err(|e| e.to_string())?;
        end();
        Ok(())
    })();
    drop(st);
    let io = shared.take();
    match run {
        Err(e) if stop_before == 0 || io.n < stop_before => Err(format!("the update failed on the host model: {e}")),
        _ => Ok(io),
    }
}

/// Boot a store as the device's next boot does (open, boot, gc).
pub fn boot_verdict(dir: &Path, keys: &TrustedKeys, board: &str) -> Result<Verdict, String> {
    let (mut st, notes) = Store::open(dir).map_err(|e| format!("store: {e}"))?;
    let booted = st.boot(keys, board).map_err(|e| format!("boot: {e}"))?;
    let gc = st.gc().map_err(|e| format!("gc: {e}"))?;
    Ok(Verdict {
        version: booted.verified.release.version,
        trial: booted.trial,
        rollbacks: booted.rollbacks.iter().map(|(r, _)| r.cause.to_string()).collect(),
        notes: notes.iter().chain(&booted.notes).map(|n| n.to_string()).collect(),
        gc: (gc.images, gc.releases),
    })
}

/// The plan of the update to `bundle` over release 1: a full run for the
/// writes and operation ends, then one stopped run and boot per write.
pub fn plan(work: &Path, bundle: &Path, s: &Start) -> Result<Plan, String> {
    let dir = work.join("cut-model");
    install(&dir, s)?;
    let full = update(&dir, bundle, s, 0)?;
    let mut outcomes = Vec::new();
    for k in 1..=full.kinds.len() as u64 + 1 {
        install(&dir, s)?;
        let stop = if k as usize > full.kinds.len() { 0 } else { k };
        update(&dir, bundle, s, stop)?;
        outcomes.push(boot_verdict(&dir, s.keys, s.board).map_err(|e| format!("the boot after a cut before write {k}: {e}"))?);
    }
    let _ = fs::remove_dir_all(&dir);
    Ok(Plan { kinds: full.kinds, op_ends: full.ends, outcomes })
}
