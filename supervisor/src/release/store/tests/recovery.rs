//! No dead ends: a store with no usable release takes a repair, a repair
//! with nothing before it is abandoned when it fails, and record writes
//! that fail can be made again.

use super::*;

/// Change one byte of the stored release object of `signed`: it no longer
/// verifies.
fn corrupt_object(dir: &Path, signed: &[u8]) {
    let (st, _) = Store::open(dir).unwrap();
    let path = st.release_path(&sha256(signed));
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() - 10;
    bytes[at] ^= 1;
    std::fs::write(&path, bytes).unwrap();
}

#[test]
fn a_store_whose_every_release_is_unusable_takes_a_repair() {
    big_stack(|| {
        let s = set();
        let dir = tmp("recover");
        factory(&dir, &s.v1, &[&s.a, &s.b]);
        corrupt_object(&dir, &s.v1);
        let (mut st, _) = Store::open(&dir).unwrap();
        assert!(matches!(st.boot(&keys(), BOARD), Err(BootError::Unusable(_))));
        st.enter_recovery().unwrap();
        // A repair: staged (it carries only C; A is on the device) and on
        // trial from the unusable release, then committed.
        let staged = st.stage(&mut &bundle_of(&s.v2, &[&s.c])[..], &keys(), BOARD).unwrap();
        st.begin_trial(&staged, false).unwrap();
        assert_eq!(st.record().previous.map(|p| p.version), Some(1));
        st.commit().unwrap();
        let (mut again, _) = Store::open(&dir).unwrap();
        let b = again.boot(&keys(), BOARD).unwrap();
        assert_eq!((b.verified.release.version, b.trial), (2, false));
        // A repair whose trial fails goes back to the unusable release,
        // which does not load: the loop is back in recovery.
        let staged = again.stage(&mut &bundle_of(&s.v3, &[&s.d])[..], &keys(), BOARD).unwrap();
        again.begin_trial(&staged, false).unwrap();
        let rb = again.rollback(Cause::CrashLoop, None).unwrap();
        assert_eq!((rb.from, rb.to), (3, 2));
        assert!(again.verify_current(&keys(), BOARD).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    })
}

#[test]
fn a_failed_repair_with_nothing_before_it_is_abandoned() {
    big_stack(|| {
        let s = set();
        let dir = tmp("abandon");
        std::fs::create_dir_all(&dir).unwrap();
        let (mut st, _) = Store::open(&dir).unwrap();
        assert!(matches!(st.boot(&keys(), BOARD), Err(BootError::None)));
        st.enter_recovery().unwrap();
        let staged = st.stage(&mut &bundle_of(&s.v2, &[&s.a, &s.c])[..], &keys(), BOARD).unwrap();
        st.begin_trial(&staged, false).unwrap();
        let rb = st.rollback(Cause::ContainerFailed, None).unwrap();
        assert_eq!((rb.from, rb.to), (2, 0));
        assert!(st.verify_current(&keys(), BOARD).is_err());
        let (mut again, _) = Store::open(&dir).unwrap();
        assert!(matches!(again.boot(&keys(), BOARD), Err(BootError::None)));
        assert_eq!(again.record().history.last().map(|r| (r.from, r.to, r.cause)), Some((2, 0, Cause::ContainerFailed)));
        // It can be repaired again.
        again.enter_recovery().unwrap();
        assert!(again.stage(&mut &bundle_of(&s.v3, &[&s.c, &s.d])[..], &keys(), BOARD).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    })
}

#[test]
fn record_writes_that_fail_can_be_made_again() {
    big_stack(|| {
        let s = set();
        let dir = tmp("retry");
        factory(&dir, &s.v1, &[&s.a, &s.b]);
        let sim = Sim::new(u32::MAX);
        let (mut st, _) = Store::open_with(&dir, sim.clone()).unwrap();
        st.boot(&keys(), BOARD).unwrap();
        let staged = st.stage(&mut &bundle_of(&s.v2, &[&s.c])[..], &keys(), BOARD).unwrap();
        st.begin_trial(&staged, false).unwrap();
        // The commit's write fails: still on trial, in memory and on disk.
        let at = sim.0.borrow().step;
        sim.0.borrow_mut().fail_at = at + 1;
        assert!(st.commit().is_err());
        assert!(matches!(st.record().phase, Phase::Trial { .. }));
        sim.0.borrow_mut().fail_at = u32::MAX;
        st.commit().unwrap();
        assert_eq!(Store::open(&dir).unwrap().0.record().phase, Phase::Committed);
        // The same for a rollback.
        let staged = st.stage(&mut &bundle_of(&s.v3, &[&s.d])[..], &keys(), BOARD).unwrap();
        st.begin_trial(&staged, false).unwrap();
        let at = sim.0.borrow().step;
        sim.0.borrow_mut().fail_at = at + 1;
        assert!(st.rollback(Cause::CrashLoop, None).is_err());
        assert_eq!(st.record().current.map(|c| c.version), Some(3));
        sim.0.borrow_mut().fail_at = u32::MAX;
        let rb = st.rollback(Cause::CrashLoop, None).unwrap();
        assert_eq!((rb.from, rb.to), (3, 2));
        let (reopened, _) = Store::open(&dir).unwrap();
        assert_eq!((reopened.record().current.map(|c| c.version), reopened.record().phase), (Some(2), Phase::Committed));
        std::fs::remove_dir_all(&dir).unwrap();
    })
}
