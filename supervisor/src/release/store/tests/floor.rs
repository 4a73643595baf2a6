//! The anti-rollback floor only rises: record rebuilds with a witness,
//! fallbacks, downgrade markers admitting one digest, spent and dead markers.

use super::*;
use crate::release::Downgrade;

/// v1 installed and booted, v2 staged, on trial and committed: floor 2,
/// v1 still kept as previous.
fn at_v2(s: &Set, name: &str) -> (PathBuf, Store) {
    let dir = tmp(name);
    factory(&dir, &s.v1, &[&s.a, &s.b]);
    let (mut st, _) = Store::open(&dir).unwrap();
    st.boot(&keys(), BOARD).unwrap();
    let staged = st.stage(&mut &bundle_of(&s.v2, &[&s.c])[..], &keys(), BOARD).unwrap();
    st.begin_trial(&staged, false).unwrap();
    st.commit().unwrap();
    assert_eq!((st.record().highest, state::load(&dir, state::FLOOR).unwrap()), (Some(2), Some(2)));
    (dir, st)
}

/// A release of `version` over images A and B with a marker for `floor`
/// (`seed` makes otherwise equal releases different objects).
fn marked(s: &Set, version: u64, floor: Option<u64>, seed: u32) -> Vec<u8> {
    let mut r = release(version, &[&s.a, &s.b], BOARD);
    r.downgrade = floor.map(|floor| Downgrade { floor });
    r.commit_window_s = 100 + seed;
    sign(&r, &key()).unwrap()
}

fn garble_slots(dir: &Path) {
    for slot in record::SLOTS {
        std::fs::write(dir.join(slot), b"garbled").unwrap();
    }
}

#[test]
fn garbled_slots_with_a_floor_witness_never_boot_below_it() {
    big_stack(|| {
        let s = set();
        let (dir, st) = at_v2(&s, "rebuild-floor");
        let v2 = st.record().current.unwrap();
        // The newest object gone as well: only v1 (signed, complete) is left.
        std::fs::remove_file(st.release_path(&v2.digest)).unwrap();
        garble_slots(&dir);
        let (mut st, _) = Store::open(&dir).unwrap();
        match st.boot(&keys(), BOARD) {
            Err(BootError::None) => {}
            Ok(b) => panic!("release {} booted below the floor 2", b.verified.release.version),
            Err(e) => panic!("{e}"),
        }
        assert_eq!((st.record().current, st.record().highest), (None, Some(2)));
        // Nor at any later boot, nor by staging it again.
        let (mut st, _) = Store::open(&dir).unwrap();
        assert!(matches!(st.boot(&keys(), BOARD), Err(BootError::None)));
        let again = st.stage(&mut &bundle_of(&s.v1, &[])[..], &keys(), BOARD).unwrap_err();
        assert!(matches!(again, StageError::Bundle(BundleError::TooOld { release: 1, installed: 2 })), "{again}");
        std::fs::remove_dir_all(&dir).unwrap();
    })
}

#[test]
fn a_fall_back_never_lowers_the_floor() {
    big_stack(|| {
        let s = set();
        let (dir, st) = at_v2(&s, "fallback-floor");
        // v2's image vanishes: v1, the kept previous release, boots.
        std::fs::remove_file(st.image_path(&s.c.image.sha256)).unwrap();
        for boot in 0..2 {
            let (mut st, _) = Store::open(&dir).unwrap();
            let b = st.boot(&keys(), BOARD).unwrap();
            assert_eq!((b.verified.release.version, b.floor, b.raised), (1, Some(2), false), "boot {boot}");
            assert_eq!(st.record().admitted, st.record().current.map(|c| c.digest));
            assert_eq!(state::load(&dir, state::FLOOR).unwrap(), Some(2));
        }
        // The floor still holds for installs: v1's version again is refused.
        let (mut st, _) = Store::open(&dir).unwrap();
        let other_v1 = marked(&s, 1, None, 1);
        let e = st.stage(&mut &bundle_of(&other_v1, &[])[..], &keys(), BOARD).unwrap_err();
        assert!(matches!(e, StageError::Bundle(BundleError::TooOld { release: 1, installed: 2 })), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    })
}

#[test]
fn a_marker_admits_only_the_digest_that_carries_it() {
    big_stack(|| {
        let s = set();
        let (dir, mut st) = at_v2(&s, "marker-digest");
        let x = marked(&s, 1, Some(2), 1);
        let staged = st.stage(&mut &bundle_of(&x, &[])[..], &keys(), BOARD).unwrap();
        st.begin_trial(&staged, false).unwrap();
        st.commit().unwrap();
        let rec = st.record().clone();
        assert_eq!((rec.current, rec.admitted, rec.highest, rec.spent), (Some(staged.entry), Some(staged.entry.digest), Some(2), Some(2)));
        // The same version and a lower one, other objects: not admitted.
        let same = Entry { digest: sha256(&s.v1), version: 1 };
        let lower = Entry { digest: Digest([9; 32]), version: 0 };
        assert!(rec.admits(&staged.entry) && !rec.admits(&same) && !rec.admits(&lower));
        let e = st.stage(&mut &bundle_of(&s.v1, &[])[..], &keys(), BOARD).unwrap_err();
        assert!(matches!(e, StageError::Bundle(BundleError::TooOld { release: 1, installed: 2 })), "{e}");
        // A record naming the plain v1 current (X still admitted): refused at boot.
        st.write_record(Record { current: Some(same), previous: None, ..rec.clone() }).unwrap();
        let (mut st, _) = Store::open(&dir).unwrap();
        let e = st.boot(&keys(), BOARD).unwrap_err();
        assert!(matches!(e, BootError::Unusable(ObjectError::Rejected(ReleaseError::Rollback { release: 1, stored: 2 }))), "{e}");
        // X itself boots, below the floor, which stays.
        st.write_record(rec).unwrap();
        let b = st.boot(&keys(), BOARD).unwrap();
        assert_eq!((b.entry, b.floor), (staged.entry, Some(2)));
        std::fs::remove_dir_all(&dir).unwrap();
    })
}

#[test]
fn an_expired_marker_admits_nothing() {
    big_stack(|| {
        let s = set();
        let (dir, mut st) = at_v2(&s, "marker-expired");
        // Dead: it names floor 1, the device's floor is 2.
        let dead = marked(&s, 0, Some(1), 1);
        let e = st.stage(&mut &bundle_of(&dead, &[])[..], &keys(), BOARD).unwrap_err();
        assert!(matches!(e, StageError::Bundle(BundleError::TooOld { release: 0, installed: 2 })), "{e}");
        // Spent: a downgrade at floor 2 was committed; a second marker for
        // floor 2 (another object, another version) is refused.
        let x = marked(&s, 1, Some(2), 2);
        let staged = st.stage(&mut &bundle_of(&x, &[])[..], &keys(), BOARD).unwrap();
        st.begin_trial(&staged, false).unwrap();
        st.commit().unwrap();
        for (version, seed) in [(1, 3), (0, 4)] {
            let y = marked(&s, version, Some(2), seed);
            let e = st.stage(&mut &bundle_of(&y, &[])[..], &keys(), BOARD).unwrap_err();
            assert!(matches!(e, StageError::Bundle(BundleError::MarkerSpent { floor: 2, .. })), "{e}");
        }
        // A marker is never honoured at boot: a marked release the record
        // does not admit is refused although its marker names the floor.
        let z = marked(&s, 1, Some(2), 5);
        let z_entry = Entry { digest: sha256(&z), version: 1 };
        std::fs::write(st.release_path(&z_entry.digest), &z).unwrap();
        let rec = Record { current: Some(z_entry), previous: None, admitted: None, spent: None, ..st.record().clone() };
        st.write_record(rec).unwrap();
        let (mut st, _) = Store::open(&dir).unwrap();
        let e = st.boot(&keys(), BOARD).unwrap_err();
        assert!(matches!(e, BootError::Unusable(ObjectError::Rejected(ReleaseError::Rollback { release: 1, stored: 2 }))), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    })
}

/// The running system's own floor (its board's `release_floor`, on the
/// verified system image) holds whatever the data partition says: a
/// release below it is not staged, and a kept one below it does not boot.
#[test]
fn the_system_floor_holds_below_any_record() {
    big_stack(|| {
        let s = set();
        let dir = tmp("system-floor");
        factory(&dir, &s.v1, &[&s.a, &s.b]);
        let (mut st, _) = Store::open(&dir).unwrap();
        st.set_system_floor(2);
        // v1 is below the system's floor: the boot refuses the only release.
        assert!(matches!(st.boot(&keys(), BOARD), Err(BootError::Unusable(ObjectError::Rejected(ReleaseError::Rollback { release: 1, stored: 2 })))));
        let (mut st, _) = Store::open(&dir).unwrap();
        st.boot(&keys(), BOARD).unwrap();
        st.set_system_floor(3);
        let refused = st.stage(&mut &bundle_of(&s.v2, &[&s.c])[..], &keys(), BOARD);
        assert!(matches!(refused, Err(StageError::Bundle(BundleError::Release(ReleaseError::Rollback { release: 2, stored: 3 })))), "{refused:?}");
        st.set_system_floor(2);
        st.stage(&mut &bundle_of(&s.v2, &[&s.c])[..], &keys(), BOARD).unwrap();
    });
}
