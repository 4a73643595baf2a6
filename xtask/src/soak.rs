//! `cargo xtask soak-power-cut [--count N] [--arch A] [--seed S]`: many
//! power cuts at random points of an update, each followed by a boot on the
//! same data partition that must come up on one complete, verified release
//! (the checks of the `power-cut` scenarios, `qemu_tests::updates`).
//!
//! Each cut is either at a random store write of the update (`berth.cut=N`)
//! or, as often, a kill of QEMU a random time (0 to 7 s) after the update
//! starts, which lands in staging, the switch, the trial or after the
//! commit. The seed is printed; the same seed repeats the same cut points.

use crate::{artifacts, Launcher};
use qemu_tests::scenarios::Launch;
use qemu_tests::updates::{power_cut_once, Cut, CutOutcome};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Cuts when `--count` is not given.
const DEFAULT_COUNT: u64 = 200;
/// The latest timed cut, in seconds after the update starts.
const SPAN_S: f64 = 7.0;

/// A small deterministic generator (xorshift64*): reproducible cut points
/// without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0), near enough for picking cut points.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The cut points for a seed.
fn plan(seed: u64, count: u64, writes: u64) -> Vec<Cut> {
    let mut rng = Rng(seed.max(1));
    (0..count)
        .map(|_| {
            if rng.below(2) == 0 {
                Cut::Step(1 + rng.below(writes))
            } else {
                Cut::After(Duration::from_millis(rng.below((SPAN_S * 1000.0) as u64)))
            }
        })
        .collect()
}

pub fn run(root: &Path, arch: berth::board::Arch, count: Option<u64>, seed: Option<u64>) -> Result<(), String> {
    let count = count.unwrap_or(DEFAULT_COUNT);
    let seed = seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
    });
    let board = artifacts::board_path(root, arch);
    let variant = crate::variants(root).into_iter().find(|(n, _)| *n == "update").map(|(_, v)| v).ok_or("no update variant")?;
    let art = artifacts::build(root, &board, &variant)?;
    let launcher = Launcher { builds: vec![("update", art)], release: crate::demo_release(root)?, counter: Default::default() };
    let launcher: Arc<dyn Launch> = Arc::new(launcher);
    let info = launcher.updates()?;
    crate::say(&format!("soak: {count} power cuts on {}, seed {seed} (the update makes {} store writes)", arch.name(), info.writes));
    let outcomes: Arc<Mutex<Vec<CutOutcome>>> = Arc::default();
    let cases = plan(seed, count, info.writes)
        .into_iter()
        .enumerate()
        .map(|(i, cut)| {
            let (l, info, outcomes) = (Arc::clone(&launcher), info.clone(), Arc::clone(&outcomes));
            let name = match cut {
                Cut::Step(n) => format!("{}/soak-{i}: cut at write {n}", arch.name()),
                Cut::After(d) => format!("{}/soak-{i}: cut {:.3} s in", arch.name(), d.as_secs_f64()),
            };
            qemu_tests::scenario::case(name, move || {
                let o = power_cut_once(l.as_ref(), &info, cut, &format!("soak-{i}"))?;
                outcomes.lock().map_err(|_| "a soak worker panicked")?.push(o);
                Ok(())
            })
        })
        .collect();
    let results = qemu_tests::scenario::run_all(cases, 2);
    let outcomes = outcomes.lock().map_err(|_| "a soak worker panicked")?;
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    for o in outcomes.iter() {
        let key = format!("release {}{}", o.version, o.rollback.as_ref().map_or(String::new(), |c| format!(" after a rollback ({c})")));
        *tally.entry(key).or_default() += 1;
        for n in &o.notes {
            *tally.entry(format!("note: {n}")).or_default() += 1;
        }
    }
    for (k, n) in &tally {
        println!("soak: {n:4} x {k}");
    }
    let failed = results.iter().filter(|r| !r.passed).count();
    println!("soak: {} cuts, {failed} failed (seed {seed})", results.len());
    if failed == 0 {
        Ok(())
    } else {
        Err(format!("{failed} power cuts left the device without a whole release; rerun with --seed {seed}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_is_reproducible_and_in_range() {
        let a = plan(42, 300, 19);
        assert_eq!(a, plan(42, 300, 19));
        assert_ne!(a, plan(43, 300, 19));
        let steps: Vec<u64> = a.iter().filter_map(|c| if let Cut::Step(n) = c { Some(*n) } else { None }).collect();
        assert!(steps.iter().all(|n| (1..=19).contains(n)));
        assert!(steps.len() > 100 && steps.len() < 200, "{}", steps.len());
        assert!(a.iter().all(|c| !matches!(c, Cut::After(d) if d.as_secs_f64() >= SPAN_S)));
    }
}
