use super::*;

fn e(n: u8) -> Entry {
    Entry { digest: Digest([n; 32]), version: n.into() }
}

#[test]
fn trial_commit_and_reboots_of_a_committed_release() {
    let r = Record::installed(e(1));
    // Reboots of a committed release never roll anything back.
    let (r2, c) = r.at_boot();
    assert_eq!(c, BootChoice::Committed(e(1)));
    assert_eq!(r2.boots, 1);
    let t = r2.begin_trial(e(2), false).unwrap();
    assert_eq!((t.current, t.previous), (Some(e(2)), Some(e(1))));
    assert_eq!(t.begin_trial(e(3), false), Err(TransitionError::TrialInProgress));
    let c = t.commit().unwrap();
    assert_eq!((c.phase, c.highest), (Phase::Committed, Some(2)));
    for _ in 0..3 {
        let (next, choice) = c.at_boot();
        assert_eq!(choice, BootChoice::Committed(e(2)));
        assert!(next.history.is_empty());
    }
    assert_eq!(c.commit(), Err(TransitionError::NotOnTrial));
    assert_eq!(c.begin_trial(e(2), false), Err(TransitionError::AlreadyCurrent));
}

#[test]
fn reboot_during_trial_rolls_back_unless_it_was_the_requested_boot() {
    let base = Record::installed(e(1)).at_boot().0;
    let t = base.begin_trial(e(2), false).unwrap();
    let (after, choice) = t.at_boot();
    let BootChoice::RolledBack { to, rollback } = choice else { panic!("{choice:?}") };
    assert_eq!(to, e(1));
    assert_eq!((rollback.cause, rollback.from, rollback.to, rollback.boot), (Cause::RebootDuringTrial, 2, 1, 2));
    assert_eq!((after.current, after.previous, after.phase), (Some(e(1)), None, Phase::Committed));
    assert_eq!(after.history.as_slice(), &[rollback]);

    // A switch that needs a reboot: its first boot is the trial, the next one is not.
    let t = base.begin_trial(e(2), true).unwrap();
    assert_eq!(t.commit(), Err(TransitionError::BootPending));
    let (t2, choice) = t.at_boot();
    assert_eq!(choice, BootChoice::Trial(e(2)));
    assert!(t2.commit().is_ok());
    assert!(matches!(t2.at_boot().1, BootChoice::RolledBack { .. }));

    // A trial with nothing before it keeps booting on trial.
    let lone = Record::default().begin_trial(e(5), false).unwrap();
    assert_eq!(lone.at_boot().1, BootChoice::Trial(e(5)));
    assert_eq!(lone.rollback(Cause::CrashLoop, None), Err(TransitionError::NothingToRollBackTo));
    assert_eq!(Record::default().at_boot().1, BootChoice::None);
    // A try of the other system slot came back: the trial is rolled
    // back with the slot's cause, its own boot pending or not.
    for pending in [true, false] {
        let mut t = base.begin_trial(e(2), pending).unwrap();
        t.phase = Phase::Trial { boot_pending: pending };
        let (after, choice) = t.at_boot_after(Some(SystemVerdict::FellBack(Cause::SystemNeverStarted)));
        assert_eq!(after.current, Some(e(1)));
        assert_eq!(after.phase, Phase::Committed);
        assert!(matches!(choice, BootChoice::RolledBack { to, rollback } if to == e(1) && rollback.cause == Cause::SystemNeverStarted));
    }
    assert_eq!(base.at_boot_after(Some(SystemVerdict::FellBack(Cause::SystemReset))).1, BootChoice::Committed(e(1)), "nothing on trial: nothing to roll back");
}

#[test]
fn rollback_history_is_bounded_and_keeps_the_newest() {
    let mut r = Record::installed(e(1));
    for i in 0..20u8 {
        let t = r.begin_trial(e(i + 2), false).unwrap();
        let name: Name = "sensor".try_into().unwrap();
        let (back, rb) = t.rollback(Cause::CrashLoop, Some(name)).unwrap();
        assert_eq!((rb.from, rb.to), (u64::from(i) + 2, 1));
        r = back;
    }
    assert_eq!(r.history.len(), HISTORY_MAX);
    assert_eq!(r.history.last().unwrap().from, 21);
    assert_eq!(r.current, Some(e(1)));
    assert_eq!(r.history[0].to_string(), "rollback from 14 to 1 at boot 0: crash-loop (sensor)");
    // A full record still fits a slot.
    let slot = encode_slot(&r, u64::MAX).unwrap();
    assert_eq!(decode_slot(&slot).unwrap(), (u64::MAX, r));
}

#[test]
fn a_trial_with_nothing_before_it_is_abandoned_and_the_floor_stays() {
    let c = Record::installed(e(1)).begin_trial(e(2), false).unwrap().commit().unwrap();
    assert_eq!(c.abandon(Cause::Requested, None), Err(TransitionError::NotOnTrial));
    // Recovery: nothing usable, then a repair on trial with no previous.
    let r = Record { previous: None, ..c.recovering() }.begin_trial(e(3), false).unwrap();
    let r = Record { previous: None, ..r };
    let (a, rb) = r.abandon(Cause::ContainerFailed, None).unwrap();
    assert_eq!((a.current, a.previous, a.phase, a.highest), (None, None, Phase::Committed, Some(2)));
    assert_eq!((rb.from, rb.to, a.history.last()), (3, 0, Some(&rb)));
    assert_eq!(a.at_boot().1, BootChoice::None);
    let t = Record::installed(e(1)).begin_trial(e(2), false).unwrap();
    assert_eq!(t.recovering().phase, Phase::Committed);
    assert_eq!(t.recovering().current, t.current);
}

#[test]
fn fall_back_takes_the_other_kept_release() {
    let c = Record::installed(e(1)).begin_trial(e(2), false).unwrap().commit().unwrap();
    let (r, to, rb) = c.fall_back(e(2)).unwrap();
    assert_eq!((to, rb.cause, r.current, r.highest), (e(1), Cause::ReleaseUnusable, Some(e(1)), Some(2)));
    assert_eq!(r.admitted, Some(e(1).digest));
    assert!(r.fall_back(e(1)).is_none());
}

#[test]
fn slots_round_trip_and_every_damage_is_detected() {
    let r = Record::installed(e(1)).begin_trial(e(2), true).unwrap();
    let good = encode_slot(&r, 7).unwrap();
    assert_eq!(decode_slot(&good), Ok((7, r.clone())));
    for i in 0..good.len() * 8 {
        let mut bad = good.clone();
        bad[i / 8] ^= 1 << (i % 8);
        assert!(decode_slot(&bad).is_err(), "bit {i}");
    }
    for n in 0..good.len() {
        assert!(decode_slot(&good[..n]).is_err(), "cut at {n}");
    }
    let mut long = good.to_vec();
    long.push(0);
    assert_eq!(decode_slot(&long), Err(SlotError::Truncated));
    assert_eq!(decode_slot(&encode_slot(&r, 0).unwrap()), Err(SlotError::BadChecksum));
}

#[test]
fn newest_good_slot_wins() {
    let a = Ok((3, Record::installed(e(1))));
    let b = Ok((4, Record::installed(e(2))));
    let bad: Result<(u64, Record), SlotError> = Err(SlotError::BadChecksum);
    assert_eq!(newest([&a, &b]).map(|x| (x.0, x.1)), Some((1, 4)));
    assert_eq!(newest([&a, &bad]).map(|x| (x.0, x.1)), Some((0, 3)));
    assert_eq!(newest([&bad, &b]).map(|x| (x.0, x.1)), Some((1, 4)));
    assert!(newest([&bad, &bad]).is_none());
}
