//! What the boot after a power cut must find, as the host model predicts it.
//!
//! xtask runs the device's store code on a copy of the installed store
//! through the whole update to release 2 (stage, trial, commit, gc), writing
//! down the kind of each store write (`create`, `sync`, `rename`, ...) and
//! where each store operation ends; then, for every k, it runs the update
//! again stopping before write k (writes 1..k-1 made, none after) and boots
//! the result with the same store code: that is [`Plan::outcomes`].
//!
//! Which of those states can a cut leave on the disk? The data partition is
//! ext4 with its journal: a store write that is not a `sync`/`sync-dir` is
//! only in memory until the next journal commit, and every fsync commits
//! everything before it, in order. So a cut before write `n` leaves writes
//! `1..k-1` for some `k` with
//!
//! - `k > L`, `L` the last `sync`/`sync-dir` before `n` (made durable), and
//! - `k > D`, `D` the last write of the last store operation that had
//!   returned before write `n` (the store's promise: what an operation did is
//!   durable once it returns; `release.commit` is only reported then), and
//! - `k <= n` (write `n` was never made).
//!
//! [`Plan::at_cut`] is that set of verdicts (the QEMU step cuts); almost
//! always it holds one verdict. A store that forgets an fsync at the end of
//! an operation breaks the second rule: the model then still says what the
//! operation promised, and the device boots something else.
//!
//! For the dm-log-writes replay (a crash anywhere while write `n` may be
//! running or done), [`Plan::in_step`] allows `k <= n + 1` as well.

use std::fmt;

/// The boot after a cut, as the tests observe it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Verdict {
    /// The release accepted.
    pub version: u64,
    /// It boots on trial (not committed).
    pub trial: bool,
    /// `release.rollback cause=` of that boot, in order.
    pub rollbacks: Vec<String>,
    /// `release.store note=` of that boot, in order.
    pub notes: Vec<String>,
    /// `release.gc`: images and release objects removed at that boot.
    pub gc: (usize, usize),
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "release {} {}", self.version, if self.trial { "trial" } else { "committed" })?;
        for c in &self.rollbacks {
            write!(f, ", rolled back ({c})")?;
        }
        for n in &self.notes {
            write!(f, ", note: {n}")?;
        }
        if self.gc != (0, 0) {
            write!(f, ", gc {} image(s) {} release(s)", self.gc.0, self.gc.1)?;
        }
        Ok(())
    }
}

/// The host model of one update.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// The kind of each store write, write 1 first.
    pub kinds: Vec<String>,
    /// The last write of each store operation (stage, trial, commit, gc), ascending.
    pub op_ends: Vec<u64>,
    /// `outcomes[k-1]`: the boot after writes `1..k-1` (k = 1 ..= writes + 1).
    pub outcomes: Vec<Verdict>,
}

/// Writes that make everything before them durable.
pub fn is_sync(kind: &str) -> bool {
    kind == "sync" || kind == "sync-dir"
}

impl Plan {
    /// Store writes of the whole update.
    pub fn writes(&self) -> u64 {
        self.kinds.len() as u64
    }

    /// The first `k` a crash after write `n - 1` (and before or during
    /// write `n`) can leave: one past the last durable write.
    fn floor(&self, n: u64) -> u64 {
        let sync = self.kinds.iter().take(n.saturating_sub(1) as usize).rposition(|k| is_sync(k)).map_or(0, |i| i as u64 + 1);
        let done = self.op_ends.iter().copied().filter(|&e| e < n).max().unwrap_or(0);
        sync.max(done) + 1
    }

    fn between(&self, lo: u64, hi: u64) -> Vec<Verdict> {
        let mut v: Vec<Verdict> = (lo..=hi).filter_map(|k| self.outcomes.get(k.checked_sub(1)? as usize).cloned()).collect();
        v.sort();
        v.dedup();
        v
    }

    /// The verdicts allowed after a cut before write `n` (1 ..= writes).
    pub fn at_cut(&self, n: u64) -> Vec<Verdict> {
        self.between(self.floor(n), n)
    }

    /// The verdicts allowed for a crash once write `n` has begun (0: before
    /// the update's first write), until write `n + 1` begins.
    pub fn in_step(&self, n: u64) -> Vec<Verdict> {
        if n == 0 {
            return self.between(1, 1);
        }
        self.between(self.floor(n), (n + 1).min(self.writes() + 1))
    }

    /// The verdict after the whole update.
    pub fn after_all(&self) -> Option<&Verdict> {
        self.outcomes.last()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(version: u64, rb: bool) -> Verdict {
        Verdict { version, trial: false, rollbacks: if rb { vec!["reboot-during-trial".into()] } else { vec![] }, notes: vec![], gc: (0, 0) }
    }

    /// A record write (create, sync, rename, sync-dir) for the trial, then
    /// one for the commit, then a gc remove and its sync-dir.
    fn plan() -> Plan {
        let kinds = ["create", "sync", "rename", "sync-dir", "create", "sync", "rename", "sync-dir", "remove", "sync-dir"];
        let outcomes = vec![
            v(1, false), // nothing
            v(1, false),
            v(1, false),
            v(1, true), // trial record renamed in
            v(1, true),
            v(1, true),
            v(1, true),
            v(2, false), // commit renamed in
            v(2, false),
            v(2, false),
            v(2, false), // all
        ];
        Plan { kinds: kinds.map(String::from).to_vec(), op_ends: vec![4, 8, 10], outcomes }
    }

    #[test]
    fn a_cut_leaves_what_was_synced_or_promised() {
        let p = plan();
        assert_eq!(p.writes(), 10);
        // Before the trial's rename: nothing of it.
        assert_eq!(p.at_cut(3), vec![v(1, false)]);
        // Before its sync-dir: the rename may or may not be durable.
        assert_eq!(p.at_cut(4), vec![v(1, false), v(1, true)]);
        // The trial returned: from then on it is durable.
        assert_eq!(p.at_cut(5), vec![v(1, true)]);
        assert_eq!(p.at_cut(8), vec![v(1, true), v(2, false)]);
        // The commit returned (write 8 was its last): only release 2.
        assert_eq!(p.at_cut(9), vec![v(2, false)]);
        assert_eq!(p.at_cut(10), vec![v(2, false)]);
    }

    #[test]
    fn a_crash_during_a_write_may_also_see_it_done() {
        let p = plan();
        assert_eq!(p.in_step(0), vec![v(1, false)]);
        assert_eq!(p.in_step(3), vec![v(1, false), v(1, true)]);
        assert_eq!(p.in_step(9), vec![v(2, false)]);
        assert_eq!(p.in_step(10), vec![v(2, false)]);
        assert_eq!(p.after_all(), Some(&v(2, false)));
    }

    #[test]
    fn a_missing_sync_at_the_end_of_an_operation_is_not_excused() {
        // The commit's record write without its sync-dir: the model still
        // demands release 2 once the commit returned, though the last
        // durable write is the trial's.
        let mut p = plan();
        p.kinds.remove(7);
        p.outcomes.remove(8);
        p.op_ends = vec![4, 7, 9];
        assert_eq!(p.floor(8), 8);
        assert_eq!(p.at_cut(8), vec![v(2, false)]);
    }

    #[test]
    fn verdicts_print_what_they_demand() {
        let mut x = v(1, true);
        x.notes.push("removed an interrupted staging".into());
        x.gc = (1, 0);
        assert_eq!(x.to_string(), "release 1 committed, rolled back (reboot-during-trial), note: removed an interrupted staging, gc 1 image(s) 0 release(s)");
    }
}
