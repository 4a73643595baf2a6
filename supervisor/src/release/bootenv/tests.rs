use super::*;

fn vars(pairs: &[(&str, &str)]) -> Vars {
    let mut v = Vars::default();
    for (n, x) in pairs {
        v.set(n, x).unwrap();
    }
    v
}

#[test]
fn a_fresh_environment_boots_a() {
    let s = BootState::read(&Vars::default()).unwrap();
    assert_eq!(s, BootState { first: Slot::A, left: [ATTEMPTS; 2] });
    let (pick, next) = s.script_pick();
    assert_eq!((pick, next.left), (Slot::A, [ATTEMPTS - 1, ATTEMPTS]));
}

#[test]
fn read_write_round_trip_keeps_other_variables() {
    let mut v = vars(&[("timeout", "0"), ("ORDER", "A B")]);
    let s = BootState { first: Slot::B, left: [3, 1] };
    s.write(&mut v).unwrap();
    assert_eq!(v.get("timeout"), Some("0"));
    assert_eq!((v.get("ORDER"), v.get("A_LEFT"), v.get("B_LEFT")), (Some("B A"), Some("3"), Some("1")));
    assert_eq!(BootState::read(&v).unwrap(), s);
}

#[test]
fn read_names_the_bad_variable() {
    assert_eq!(BootState::read(&vars(&[("ORDER", "C A")])), Err(EnvError::BadValue("ORDER")));
    assert_eq!(BootState::read(&vars(&[("B_LEFT", "9")])), Err(EnvError::BadValue("B_LEFT")));
    assert_eq!(BootState::read(&vars(&[("A_LEFT", "-1")])), Err(EnvError::BadValue("A_LEFT")));
}

/// Boots the script would make, from `s`, as the slots it picks.
fn boots(mut s: BootState, n: usize) -> Vec<Slot> {
    (0..n)
        .map(|_| {
            let (pick, next) = s.script_pick();
            s = next;
            pick
        })
        .collect()
}

#[test]
fn a_try_gets_one_boot_then_the_old_slot_comes_back() {
    let committed = BootState::commit(Slot::A);
    let t = committed.try_once(Slot::B);
    // B once (whatever stops it), then A for good.
    assert_eq!(boots(t, 5), [Slot::B, Slot::A, Slot::A, Slot::A, Slot::B]);
    // Committed on B: B from then on (each boot spends one, a commit refills).
    let (_, after) = t.script_pick();
    let c = BootState::commit(Slot::B);
    assert_eq!(after.first, Slot::B);
    assert_eq!(boots(c, 3), [Slot::B, Slot::B, Slot::B]);
    // Fallen back: A first, B never tried again by the script.
    let f = BootState::fall_back(Slot::A);
    assert_eq!(boots(f, 3), [Slot::A, Slot::A, Slot::A]);
}

#[test]
fn no_attempts_left_refills_and_boots_the_first() {
    let s = BootState { first: Slot::B, left: [0, 0] };
    let (pick, next) = s.script_pick();
    assert_eq!((pick, next.left), (Slot::B, [ATTEMPTS, ATTEMPTS - 1]));
}

#[test]
fn cmdline() {
    assert_eq!(slot_from_cmdline("console=ttyS0 berth.slot=B quiet"), Ok(Some(Slot::B)));
    assert_eq!(slot_from_cmdline("console=ttyS0"), Ok(None));
    assert!(slot_from_cmdline("berth.slot=C").unwrap_err().contains("want A or B"));
    assert!(slot_from_cmdline("berth.slot=A berth.slot=B").is_err());
    assert_eq!(slot_from_cmdline("berth.slot=A berth.slot=A"), Ok(Some(Slot::A)));
}

#[test]
fn what_a_boot_is() {
    let p = |reached| Some(PendingTry { from: Slot::A, to: Slot::B, reached });
    assert_eq!(at_boot(Slot::A, None), Booted::Normal(Slot::A));
    assert_eq!(at_boot(Slot::B, p(false)), Booted::Trying(Slot::B));
    assert_eq!(at_boot(Slot::B, p(true)), Booted::Trying(Slot::B));
    assert_eq!(at_boot(Slot::A, p(false)), Booted::FellBack { from: Slot::B, to: Slot::A, cause: FallBackCause::NeverStarted });
    assert_eq!(at_boot(Slot::A, p(true)), Booted::FellBack { from: Slot::B, to: Slot::A, cause: FallBackCause::ResetDuringTrial });
}

#[test]
fn a_try_whose_commit_reached_the_bootloader_is_completed() {
    // The try's boot: the script spent B's one attempt.
    let tried = BootState::commit(Slot::A).try_once(Slot::B).script_pick().1;
    assert_eq!(settle_try(Booted::Trying(Slot::B), &tried), Booted::Trying(Slot::B));
    // berth committed B in the bootloader, then a reset: the next boot.
    let after = BootState::commit(Slot::B).script_pick().1;
    assert_eq!(settle_try(Booted::Trying(Slot::B), &after), Booted::TryCommitted(Slot::B));
    assert_eq!(settle_try(Booted::Normal(Slot::A), &after), Booted::Normal(Slot::A));
}
