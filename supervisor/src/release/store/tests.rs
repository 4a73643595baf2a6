//! Store tests: staging refusals, record damage, migration, boot decisions,
//! and power cuts after every single write step.

use super::*;
use crate::release::bundle::{encode_header, TableEntry};
use crate::release::{sign, signing_key_from_seed, Image, Release, SigningKey};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::rc::Rc;

const BOARD: &str = "b";

/// Unoptimised test code keeps many manifests in its frames.
fn big_stack(f: fn()) {
    std::thread::Builder::new().stack_size(256 << 20).spawn(f).unwrap().join().unwrap();
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("berth-store-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// An image file (data + verity tree) and its release entry.
#[derive(Clone)]
struct Img {
    bytes: Vec<u8>,
    image: Image,
}

fn img(seed: u8, blocks: usize) -> Img {
    let data: Vec<u8> = (0..blocks * 4096).map(|i| (i as u8).wrapping_mul(31) ^ seed ^ (i >> 12) as u8).collect();
    let salt = [seed; 32];
    let (bytes, root) = crate::release::verity::build_image(&data, &salt);
    let image = Image { sha256: sha256(&bytes), size: bytes.len() as u64, verity_root: root, verity_salt: salt };
    Img { bytes, image }
}

fn key() -> SigningKey {
    signing_key_from_seed(&[7; 32])
}

fn keys() -> TrustedKeys {
    let mut k = TrustedKeys::new();
    k.add(key().verifying_key()).unwrap();
    k
}

/// A release with one container per image.
fn release(version: u64, images: &[&Img], board: &str) -> Release {
    let template = crate::release::tests::small().containers[0].clone();
    let mut r = crate::release::tests::small();
    r.version = version;
    r.board = board.try_into().unwrap();
    r.containers = Default::default();
    r.images = Default::default();
    for (i, im) in images.iter().enumerate() {
        let mut m = template.clone();
        m.name = format!("c{i}").as_str().try_into().unwrap();
        m.image = im.image.sha256;
        r.containers.push(m).unwrap();
        r.images.push(im.image).unwrap();
    }
    r
}

fn bundle_of(signed: &[u8], carry: &[&Img]) -> Vec<u8> {
    let table: Vec<TableEntry> = carry.iter().map(|i| TableEntry { sha256: i.image.sha256, size: i.image.size }).collect();
    let mut out = encode_header(signed, &table).unwrap();
    for i in carry {
        out.extend_from_slice(&i.bytes);
    }
    out
}

/// A factory store: `r` installed and committed, its images in place.
fn factory(dir: &Path, signed: &[u8], images: &[&Img]) {
    let (mut s, _) = Store::open(dir).unwrap();
    for i in images {
        std::fs::write(s.image_path(&i.image.sha256), &i.bytes).unwrap();
    }
    let digest = sha256(signed);
    std::fs::write(s.release_path(&digest), signed).unwrap();
    let version = crate::release::peek(signed).unwrap().version;
    s.write_record(Record::installed(Entry { digest, version })).unwrap();
}

/// Every file under `dir` with its contents.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                out.insert(p.clone(), b"<dir>".to_vec());
                todo.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// Images v1 uses (A, B), v2 (A, C), v3 (C, D).
struct Set {
    a: Img,
    b: Img,
    c: Img,
    d: Img,
    v1: Vec<u8>,
    v2: Vec<u8>,
    v3: Vec<u8>,
}

fn set() -> Set {
    let (a, b, c, d) = (img(1, 2), img(2, 3), img(3, 2), img(4, 1));
    let v1 = sign(&release(1, &[&a, &b], BOARD), &key()).unwrap();
    let v2 = sign(&release(2, &[&a, &c], BOARD), &key()).unwrap();
    let v3 = sign(&release(3, &[&c, &d], BOARD), &key()).unwrap();
    Set { a, b, c, d, v1, v2, v3 }
}

mod floor;
mod recovery;

#[test]
fn update_commit_gc_and_reboots() {
    big_stack(|| {
        let s = set();
        let dir = tmp("update");
        factory(&dir, &s.v1, &[&s.a, &s.b]);
        let (mut st, notes) = Store::open(&dir).unwrap();
        assert!(notes.is_empty());
        let booted = st.boot(&keys(), BOARD).unwrap();
        assert_eq!((booted.verified.release.version, booted.trial, booted.raised), (1, false, true));
        // v2 carries only the image the device lacks.
        let staged = st.stage(&mut &bundle_of(&s.v2, &[&s.c])[..], &keys(), BOARD).unwrap();
        assert_eq!((staged.entry.version, staged.images_added), (2, 1));
        assert_eq!(st.record().current.unwrap().version, 1, "staging changes nothing that runs");
        st.begin_trial(&staged, false).unwrap();
        assert!(matches!(st.stage(&mut &bundle_of(&s.v3, &[&s.d])[..], &keys(), BOARD), Err(StageError::TrialInProgress)));
        st.commit().unwrap();
        assert_eq!(st.gc().unwrap(), Collected { images: 0, releases: 0 }, "v1 is still kept as previous");
        // Reboots of a committed release: no rollback, same release.
        for _ in 0..3 {
            let (mut again, _) = Store::open(&dir).unwrap();
            let b = again.boot(&keys(), BOARD).unwrap();
            assert_eq!((b.verified.release.version, b.trial, b.rollbacks.len()), (2, false, 0));
        }
        let (mut st, _) = Store::open(&dir).unwrap();
        // v3 needs a reboot: its first boot is the trial, a second one rolls back.
        let staged = st.stage(&mut &bundle_of(&s.v3, &[&s.d])[..], &keys(), BOARD).unwrap();
        st.begin_trial(&staged, true).unwrap();
        assert_eq!(st.gc().unwrap(), Collected { images: 1, releases: 1 }, "v1 and its image B go");
        let (mut st, _) = Store::open(&dir).unwrap();
        let b = st.boot(&keys(), BOARD).unwrap();
        assert_eq!((b.verified.release.version, b.trial), (3, true));
        let (mut st, _) = Store::open(&dir).unwrap();
        let b = st.boot(&keys(), BOARD).unwrap();
        assert_eq!(b.verified.release.version, 2);
        assert_eq!(b.rollbacks[0].0.cause, Cause::RebootDuringTrial);
        assert_eq!(st.record().history.last().map(|r| (r.from, r.to)), Some((3, 2)));
        assert_eq!(st.gc().unwrap(), Collected { images: 1, releases: 1 }, "v3 and its image D go");
        let left = snapshot(&dir.join(IMAGES));
        assert_eq!(left.len(), 2);
        assert!(left.contains_key(&st.image_path(&s.a.image.sha256)) && left.contains_key(&st.image_path(&s.c.image.sha256)));
        // A trial rolled back by the loop: the cause is kept.
        let staged = st.stage(&mut &bundle_of(&s.v3, &[&s.d])[..], &keys(), BOARD).unwrap();
        st.begin_trial(&staged, false).unwrap();
        let rb = st.rollback(Cause::CrashLoop, Some("c0".try_into().unwrap())).unwrap();
        assert_eq!((rb.from, rb.to), (3, 2));
        let (st2, _) = Store::open(&dir).unwrap();
        assert_eq!(st2.record().history.last().unwrap().cause, Cause::CrashLoop);
        assert_eq!(st2.record().current.unwrap().version, 2);
        std::fs::remove_dir_all(&dir).unwrap();
    })
}

#[test]
fn refused_bundles_leave_the_store_as_it_was() {
    big_stack(|| {
        let s = set();
        let dir = tmp("refused");
        factory(&dir, &s.v1, &[&s.a, &s.b]);
        Store::open(&dir).unwrap().0.boot(&keys(), BOARD).unwrap();
        let before = snapshot(&dir);
        let other_key = signing_key_from_seed(&[8; 32]);
        let r2 = release(2, &[&s.a, &s.c], BOARD);
        let mut tampered = s.v2.clone();
        tampered[crate::release::HEADER_LEN + 3] ^= 1;
        let mut bad_image = s.c.clone();
        bad_image.bytes[100] ^= 1;
        // Signed with a verity root that does not match the image's tree.
        let mut wrong_root = release(2, &[&s.a, &s.c], BOARD);
        wrong_root.images[1].verity_root = [0; 32];
        let wrong_root = sign(&wrong_root, &key()).unwrap();
        let full = bundle_of(&s.v2, &[&s.c]);
        let mut trailing = full.clone();
        trailing.push(0);
        type Case = (&'static str, Vec<u8>, fn(&StageError) -> bool);
        let cases: Vec<Case> = vec![
            ("tampered", bundle_of(&tampered, &[&s.c]), |e| matches!(e, StageError::Bundle(BundleError::Release(ReleaseError::BadSignature { .. })))),
            ("unsigned", bundle_of(b"", &[&s.c]), |e| matches!(e, StageError::Bundle(BundleError::Unsigned))),
            ("untrusted key", bundle_of(&sign(&r2, &other_key).unwrap(), &[&s.c]), |e| {
                matches!(e, StageError::Bundle(BundleError::Release(ReleaseError::UnknownKey { .. })))
            }),
            ("other board", bundle_of(&sign(&release(2, &[&s.a, &s.c], "other"), &key()).unwrap(), &[&s.c]), |e| {
                matches!(e, StageError::Bundle(BundleError::WrongBoard { .. }))
            }),
            ("same version", bundle_of(&sign(&release(1, &[&s.a, &s.c], BOARD), &key()).unwrap(), &[&s.c]), |e| {
                matches!(e, StageError::Bundle(BundleError::TooOld { release: 1, installed: 1 }))
            }),
            ("missing image", bundle_of(&s.v2, &[]), |e| matches!(e, StageError::MissingImage(_))),
            ("image not in release", bundle_of(&s.v2, &[&s.c, &s.d]), |e| matches!(e, StageError::Bundle(BundleError::ImageNotInRelease(_)))),
            ("changed image", bundle_of(&s.v2, &[&bad_image]), |e| matches!(e, StageError::Bundle(BundleError::ImageMismatch(_)))),
            ("wrong verity root", bundle_of(&wrong_root, &[&s.c]), |e| {
                matches!(e, StageError::Bundle(BundleError::Verity { error: crate::release::verity::TreeError::Root, .. }))
            }),
            ("cut inside an image", full[..full.len() - 10].to_vec(), |e| matches!(e, StageError::Bundle(BundleError::ImageTruncated(_)))),
            ("cut in the release", full[..40].to_vec(), |e| matches!(e, StageError::Bundle(BundleError::Truncated { part: "release" }))),
            ("trailing bytes", trailing, |e| matches!(e, StageError::Bundle(BundleError::TrailingBytes))),
            ("not a bundle", s.v2.clone(), |e| matches!(e, StageError::Bundle(BundleError::BadMagic))),
        ];
        for (what, bytes, want) in cases {
            let (mut st, _) = Store::open(&dir).unwrap();
            let e = st.stage(&mut &bytes[..], &keys(), BOARD).expect_err(what);
            assert!(want(&e), "{what}: {e:?}");
            assert!(!e.to_string().is_empty());
            assert_eq!(snapshot(&dir), before, "{what}: the store changed");
        }
        // An older release, once v2 is committed.
        let (mut st, _) = Store::open(&dir).unwrap();
        let staged = st.stage(&mut &full[..], &keys(), BOARD).unwrap();
        st.begin_trial(&staged, false).unwrap();
        st.commit().unwrap();
        let older = bundle_of(&sign(&release(1, &[&s.a, &s.b], BOARD), &key()).unwrap(), &[]);
        let e = st.stage(&mut &older[..], &keys(), BOARD).unwrap_err();
        assert_eq!(e.to_string(), "release version 1 is not newer than the installed version 2 and no downgrade marker allows it");
        std::fs::remove_dir_all(&dir).unwrap();
    })
}

#[test]
fn no_space_is_refused_before_anything_is_written() {
    big_stack(|| {
        let s = set();
        let dir = tmp("nospace");
        factory(&dir, &s.v1, &[&s.a, &s.b]);
        let before = snapshot(&dir);
        let sim = Sim::new(u32::MAX);
        sim.0.borrow_mut().free = 1000;
        let (mut st, _) = Store::open_with(&dir, sim.clone()).unwrap();
        let e = st.stage(&mut &bundle_of(&s.v2, &[&s.c])[..], &keys(), BOARD).unwrap_err();
        let need = s.v2.len() as u64 + s.c.image.size;
        assert!(matches!(e, StageError::NoSpace { need: n, free: 1000 } if n == need), "{e:?}");
        let reserve = crate::release::room::RESERVE;
        assert_eq!(
            e.to_string(),
            format!("not enough space on the data partition: the update needs {need} bytes and {reserve} stay reserved for state and logs, 1000 are free")
        );
        assert_eq!(sim.0.borrow().step, 0);
        assert_eq!(snapshot(&dir), before);
        // The reserve stays free: one byte short of it is refused too.
        sim.0.borrow_mut().free = need + reserve - 1;
        let e = st.stage(&mut &bundle_of(&s.v2, &[&s.c])[..], &keys(), BOARD).unwrap_err();
        assert!(matches!(e, StageError::NoSpace { .. }), "{e:?}");
        assert_eq!(snapshot(&dir), before);
        sim.0.borrow_mut().free = need + reserve;
        st.stage(&mut &bundle_of(&s.v2, &[&s.c])[..], &keys(), BOARD).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    })
}

#[test]
fn damaged_record_slots_fall_back_to_the_other_copy() {
    big_stack(|| {
        let s = set();
        let dir = tmp("slots");
        factory(&dir, &s.v1, &[&s.a, &s.b]);
        let (mut st, _) = Store::open(&dir).unwrap();
        st.boot(&keys(), BOARD).unwrap();
        let staged = st.stage(&mut &bundle_of(&s.v2, &[&s.c])[..], &keys(), BOARD).unwrap();
        st.begin_trial(&staged, false).unwrap();
        st.commit().unwrap();
        let newest = record::SLOTS[1 - st.next_slot];
        let good = std::fs::read(dir.join(newest)).unwrap();
        // Torn (cut short), bit-flipped, emptied: the older copy (v2 on trial) is read.
        for bad in [
            good[..good.len() / 2].to_vec(),
            {
                let mut b = good.clone();
                b[20] ^= 4;
                b
            },
            Vec::new(),
        ] {
            std::fs::write(dir.join(newest), &bad).unwrap();
            let (st, notes) = Store::open(&dir).unwrap();
            assert!(matches!(notes.as_slice(), [Note::SlotBad { .. }]), "{notes:?}");
            assert_eq!(st.record().current.unwrap().version, 2);
            assert_eq!(st.record().phase, Phase::Trial { boot_pending: false });
        }
        // The next write goes over the bad slot; then both are good again.
        let (mut st, _) = Store::open(&dir).unwrap();
        st.commit().unwrap();
        assert!(Store::open(&dir).unwrap().1.is_empty());
        // Both copies unreadable: rebuilt from the objects, never "no release".
        for slot in record::SLOTS {
            std::fs::write(dir.join(slot), b"garbage").unwrap();
        }
        let (mut st, notes) = Store::open(&dir).unwrap();
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(matches!(st.gc(), Err(StoreError::Unread)));
        let booted = st.boot(&keys(), BOARD).unwrap();
        assert_eq!(booted.notes[0], Note::Rebuilt { releases: 2, floor: Some(2) });
        assert!(matches!(booted.notes[1], Note::BelowFloor { version: 1, floor: 2, .. }), "{:?}", booted.notes);
        assert_eq!((booted.verified.release.version, booted.floor), (2, Some(2)));
        assert_eq!((st.record().current.unwrap().version, st.record().previous), (2, None));
        std::fs::remove_dir_all(&dir).unwrap();
    })
}

#[test]
fn single_file_layout_is_migrated() {
    big_stack(|| {
        let s = set();
        let dir = tmp("migrate");
        std::fs::create_dir_all(dir.join(IMAGES)).unwrap();
        for i in [&s.a, &s.b] {
            std::fs::write(dir.join(IMAGES).join(image_name(&i.image.sha256)), &i.bytes).unwrap();
        }
        std::fs::write(dir.join(LEGACY_RELEASE), &s.v1).unwrap();
        // A corrupt version file is not "nothing stored".
        std::fs::write(dir.join(state::FILE), b"junk").unwrap();
        assert!(matches!(Store::open(&dir), Err(StoreError::LegacyState(_))));
        state::store_highest(&dir, 1).unwrap();
        let (mut st, notes) = Store::open(&dir).unwrap();
        assert_eq!(notes, vec![Note::Migrated { version: 1 }]);
        assert!(!dir.join(LEGACY_RELEASE).exists() && !dir.join(state::FILE).exists());
        assert_eq!(st.record().highest, Some(1));
        let b = st.boot(&keys(), BOARD).unwrap();
        assert_eq!((b.verified.release.version, b.raised), (1, false));
        std::fs::remove_dir_all(&dir).unwrap();
    })
}

#[test]
fn an_unusable_release_falls_back_to_the_other_kept_one() {
    big_stack(|| {
        let s = set();
        let dir = tmp("fallback");
        factory(&dir, &s.v1, &[&s.a, &s.b]);
        let (mut st, _) = Store::open(&dir).unwrap();
        st.boot(&keys(), BOARD).unwrap();
        let staged = st.stage(&mut &bundle_of(&s.v2, &[&s.c])[..], &keys(), BOARD).unwrap();
        st.begin_trial(&staged, false).unwrap();
        st.commit().unwrap();
        // v2's own image vanishes: v1 boots, and says why.
        std::fs::remove_file(st.image_path(&s.c.image.sha256)).unwrap();
        let (mut st, _) = Store::open(&dir).unwrap();
        let b = st.boot(&keys(), BOARD).unwrap();
        assert_eq!(b.verified.release.version, 1);
        assert_eq!(b.rollbacks[0].0.cause, Cause::ReleaseUnusable);
        assert_eq!(b.rollbacks[0].1, Some(ObjectError::Image(s.c.image.sha256)));
        // Nothing left to fall back to: the refusal names the reason.
        std::fs::write(st.release_path(&st.record().current.unwrap().digest), b"x").unwrap();
        let (mut st, _) = Store::open(&dir).unwrap();
        assert!(matches!(st.boot(&keys(), BOARD), Err(BootError::Unusable(ObjectError::Corrupt))));
        // No release at all.
        let empty = tmp("fallback-empty");
        assert!(matches!(Store::open(&empty).unwrap().0.boot(&keys(), BOARD), Err(BootError::None)));
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::remove_dir_all(&empty).unwrap();
    })
}

#[test]
fn a_record_that_cannot_be_written_does_not_stop_the_boot() {
    big_stack(|| {
        let s = set();
        let dir = tmp("unrecorded");
        factory(&dir, &s.v1, &[&s.a, &s.b]);
        let sim = Sim::new(1);
        let (mut st, _) = Store::open_with(&dir, sim).unwrap();
        let b = st.boot(&keys(), BOARD).unwrap();
        assert_eq!(b.verified.release.version, 1);
        assert!(b.unrecorded.as_deref().is_some_and(|e| e.contains("power cut")), "{:?}", b.unrecorded);
        std::fs::remove_dir_all(&dir).unwrap();
    })
}

// ---- Power cuts -------------------------------------------------------------

/// A metadata change not yet made durable by an fsync of its directories.
enum Op {
    Created { path: PathBuf, old: Option<Vec<u8>> },
    Renamed { from: PathBuf, to: PathBuf, old_to: Option<Vec<u8>> },
    Removed { path: PathBuf, content: Vec<u8> },
    MadeDir { path: PathBuf },
}

/// The simulator's state: counts steps, fails every step from `fail_at` on,
/// and remembers what a power cut would lose.
struct SimState {
    step: u32,
    fail_at: u32,
    /// Inodes with written, unsynced data.
    dirty: HashSet<u64>,
    /// Changes and the directories still to be fsynced for each.
    pending: Vec<(Op, Vec<PathBuf>)>,
    free: u64,
}

#[derive(Clone)]
struct Sim(Rc<RefCell<SimState>>);

impl Sim {
    fn new(fail_at: u32) -> Sim {
        Sim(Rc::new(RefCell::new(SimState { step: 0, fail_at, dirty: HashSet::new(), pending: Vec::new(), free: u64::MAX })))
    }

    fn tick(&self) -> io::Result<()> {
        let mut s = self.0.borrow_mut();
        s.step += 1;
        if s.step >= s.fail_at {
            return Err(io::Error::other("power cut"));
        }
        Ok(())
    }

    fn pending(&self, op: Op, dirs: &[&Path]) {
        let mut v: Vec<PathBuf> = dirs.iter().map(|d| d.to_path_buf()).collect();
        v.dedup();
        self.0.borrow_mut().pending.push((op, v));
    }

    fn crashed(&self) -> bool {
        let s = self.0.borrow();
        s.step >= s.fail_at
    }

    /// The power goes: undo every change whose directory was not fsynced
    /// (newest first), and tear every file whose data was not fsynced.
    fn power_cut(&self, root: &Path) {
        let mut s = self.0.borrow_mut();
        while let Some((op, dirs)) = s.pending.pop() {
            if dirs.is_empty() {
                continue;
            }
            match op {
                Op::Created { path, old } => {
                    let _ = std::fs::remove_file(&path);
                    if let Some(old) = old {
                        std::fs::write(&path, old).unwrap();
                    }
                }
                Op::Renamed { from, to, old_to } => {
                    // Back to its old name; gone with its directory if that went.
                    if to.exists() && parent(&from).is_dir() {
                        std::fs::rename(&to, &from).unwrap();
                    } else if to.exists() {
                        std::fs::remove_file(&to).unwrap();
                    }
                    if let Some(old) = old_to {
                        std::fs::write(&to, old).unwrap();
                    }
                }
                Op::Removed { path, content } => {
                    if parent(&path).is_dir() {
                        std::fs::write(&path, content).unwrap();
                    }
                }
                Op::MadeDir { path } => {
                    let _ = std::fs::remove_dir_all(&path);
                }
            }
        }
        let mut todo = vec![root.to_path_buf()];
        while let Some(d) = todo.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                let m = std::fs::metadata(&p).unwrap();
                if m.is_dir() {
                    todo.push(p);
                } else if s.dirty.contains(&m.ino()) {
                    let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
                    f.set_len(m.len() / 2).unwrap();
                }
            }
        }
        s.dirty.clear();
    }
}

fn parent(p: &Path) -> &Path {
    p.parent().unwrap()
}

struct SimFile {
    f: std::fs::File,
    sim: Sim,
}

impl Write for SimFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sim.tick()?;
        let n = self.f.write(buf)?;
        let ino = self.f.metadata()?.ino();
        self.sim.0.borrow_mut().dirty.insert(ino);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Io for Sim {
    type File = SimFile;

    fn create(&mut self, path: &Path) -> io::Result<SimFile> {
        self.tick()?;
        let old = std::fs::read(path).ok();
        let f = std::fs::File::create(path)?;
        self.pending(Op::Created { path: path.to_path_buf(), old }, &[parent(path)]);
        Ok(SimFile { f, sim: self.clone() })
    }

    fn sync(&mut self, file: &mut SimFile) -> io::Result<()> {
        self.tick()?;
        let ino = file.f.metadata()?.ino();
        self.0.borrow_mut().dirty.remove(&ino);
        Ok(())
    }

    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        self.tick()?;
        let old_to = std::fs::read(to).ok();
        std::fs::rename(from, to)?;
        // One journal transaction: durable with the target's directory.
        self.pending(Op::Renamed { from: from.to_path_buf(), to: to.to_path_buf(), old_to }, &[parent(to)]);
        Ok(())
    }

    fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
        self.tick()?;
        for (_, dirs) in self.0.borrow_mut().pending.iter_mut() {
            dirs.retain(|d| d != dir);
        }
        Ok(())
    }

    fn remove_file(&mut self, path: &Path) -> io::Result<()> {
        self.tick()?;
        let content = std::fs::read(path)?;
        std::fs::remove_file(path)?;
        self.pending(Op::Removed { path: path.to_path_buf(), content }, &[parent(path)]);
        Ok(())
    }

    fn create_dir(&mut self, path: &Path) -> io::Result<()> {
        self.tick()?;
        if path.is_dir() {
            return Ok(());
        }
        std::fs::create_dir(path)?;
        self.pending(Op::MadeDir { path: path.to_path_buf() }, &[parent(path)]);
        Ok(())
    }

    /// Taken as durable at once (a reverted removal of staging/ would only
    /// be removed again at the next open).
    fn remove_dir_all(&mut self, path: &Path) -> io::Result<()> {
        self.tick()?;
        std::fs::remove_dir_all(path)
    }

    fn free_bytes(&mut self, _: &Path) -> io::Result<u64> {
        Ok(self.0.borrow().free)
    }
}

/// The update sequence, with the release version a boot must find if the
/// power goes during each step (before it, or after it).
fn sequence(dir: &Path, s: &Set, sim: &Sim, progress: &mut Vec<u64>) -> Result<(), String> {
    let e = |e: &dyn fmt::Display| e.to_string();
    let (k, b) = (keys(), BOARD);
    *progress = vec![1];
    let (mut st, _) = Store::open_with(dir, sim.clone()).map_err(|x| e(&x))?;
    let staged = st.stage(&mut &bundle_of(&s.v2, &[&s.c])[..], &k, b).map_err(|x| e(&x))?;
    // A trial interrupted by a reboot rolls back to 1 either way.
    st.begin_trial(&staged, false).map_err(|x| e(&x))?;
    *progress = vec![1, 2];
    st.commit().map_err(|x| e(&x))?;
    *progress = vec![2];
    st.gc().map_err(|x| e(&x))?;
    st.stage(&mut &bundle_of(&s.v3, &[&s.d])[..], &k, b).map_err(|x| e(&x))?;
    let staged = st.stage(&mut &bundle_of(&s.v3, &[&s.d])[..], &k, b).map_err(|x| e(&x))?;
    *progress = vec![2, 3];
    st.begin_trial(&staged, true).map_err(|x| e(&x))?;
    *progress = vec![3, 2];
    // The requested reboot into the trial.
    let (mut st, _) = Store::open_with(dir, sim.clone()).map_err(|x| e(&x))?;
    let booted = st.boot(&k, b).map_err(|x| e(&x))?;
    if let Some(why) = booted.unrecorded {
        return Err(why);
    }
    if booted.verified.release.version != 3 || !booted.trial {
        return Err(format!("trial boot booted {booted:?}"));
    }
    *progress = vec![2];
    st.rollback(Cause::HealthCheck, None).map_err(|x| e(&x))?;
    st.gc().map_err(|x| e(&x))?;
    Ok(())
}

/// After a power cut: the store opens, boots one complete verified release
/// that the step allowed, its images are whole, the record is consistent,
/// and after gc exactly the kept releases' files are left.
fn check_after_cut(dir: &Path, s: &Set, allowed: &[u64], at: u32) {
    let (mut st, _) = Store::open(dir).unwrap_or_else(|e| panic!("step {at}: open: {e}"));
    let b = st.boot(&keys(), BOARD).unwrap_or_else(|e| panic!("step {at}: boot: {e}"));
    let v = b.verified.release.version;
    assert!(allowed.contains(&v), "step {at}: booted {v}, allowed {allowed:?}");
    for img in b.verified.release.images.iter() {
        let bytes = std::fs::read(st.image_path(&img.sha256)).unwrap();
        assert_eq!(sha256(&bytes), img.sha256, "step {at}: image of {v} is damaged");
    }
    let rec = st.record().clone();
    assert_eq!(rec.current, Some(b.entry), "step {at}");
    assert!(rec.previous.is_none_or(|p| p.digest != b.entry.digest), "step {at}");
    if rec.phase != Phase::Committed {
        assert!(b.trial && v == 3, "step {at}: {rec:?}");
    }
    st.gc().unwrap_or_else(|e| panic!("step {at}: gc: {e}"));
    let mut want: Vec<PathBuf> = Vec::new();
    for e in rec.kept() {
        want.push(st.release_path(&e.digest));
        let r = crate::release::peek(&std::fs::read(st.release_path(&e.digest)).unwrap()).unwrap();
        want.extend(r.images.iter().map(|i| st.image_path(&i.sha256)));
    }
    want.sort();
    want.dedup();
    let mut have: Vec<PathBuf> = [RELEASES, IMAGES].iter().flat_map(|d| std::fs::read_dir(dir.join(d)).unwrap().flatten().map(|e| e.path())).collect();
    have.sort();
    assert_eq!(have, want, "step {at}: leftovers or missing files after gc");
    assert!(!dir.join(STAGING).exists());
    // And it boots the same way again (a committed release stays put).
    let (mut again, _) = Store::open(dir).unwrap();
    let b2 = again.boot(&keys(), BOARD).unwrap();
    if rec.phase == Phase::Committed {
        assert_eq!(b2.entry, b.entry, "step {at}: a reboot of a committed release changed it");
        assert!(b2.rollbacks.is_empty());
    } else {
        assert_eq!(b2.verified.release.version, 2, "step {at}: a reboot during the trial must roll back");
    }
    let _ = &s.a;
}

#[test]
fn power_cut_at_every_step_of_an_update() {
    big_stack(|| {
        let s = set();
        let mut cuts = 0;
        for at in 1.. {
            let dir = tmp(&format!("cut-{at}"));
            factory(&dir, &s.v1, &[&s.a, &s.b]);
            Store::open(&dir).unwrap().0.boot(&keys(), BOARD).unwrap();
            let sim = Sim::new(at);
            let mut allowed = Vec::new();
            let r = sequence(&dir, &s, &sim, &mut allowed);
            if !sim.crashed() {
                r.unwrap();
                check_after_cut(&dir, &s, &[2], at);
                std::fs::remove_dir_all(&dir).unwrap();
                break;
            }
            assert!(r.is_err(), "step {at}: the cut was not reported");
            sim.power_cut(&dir);
            check_after_cut(&dir, &s, &allowed, at);
            std::fs::remove_dir_all(&dir).unwrap();
            cuts += 1;
        }
        assert!(cuts >= 30, "only {cuts} distinct steps");
        println!("power cut at {cuts} distinct steps");
    })
}

#[test]
fn power_cut_at_every_step_of_a_migration() {
    big_stack(|| {
        let s = set();
        for at in 1.. {
            let dir = tmp(&format!("mcut-{at}"));
            std::fs::create_dir_all(dir.join(IMAGES)).unwrap();
            std::fs::create_dir_all(dir.join(RELEASES)).unwrap();
            for i in [&s.a, &s.b] {
                std::fs::write(dir.join(IMAGES).join(image_name(&i.image.sha256)), &i.bytes).unwrap();
            }
            std::fs::write(dir.join(LEGACY_RELEASE), &s.v1).unwrap();
            state::store_highest(&dir, 1).unwrap();
            let sim = Sim::new(at);
            let r = Store::open_with(&dir, sim.clone()).map(|_| ());
            if !sim.crashed() {
                r.unwrap();
                std::fs::remove_dir_all(&dir).unwrap();
                assert!(at > 8, "migration took {at} steps");
                break;
            }
            sim.power_cut(&dir);
            let (mut st, _) = Store::open(&dir).unwrap_or_else(|e| panic!("step {at}: {e}"));
            assert_eq!(st.boot(&keys(), BOARD).unwrap().verified.release.version, 1, "step {at}");
            assert_eq!(st.record().highest, Some(1), "step {at}: the anti-rollback floor was lost");
            std::fs::remove_dir_all(&dir).unwrap();
        }
    })
}
