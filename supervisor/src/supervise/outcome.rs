//! The course of each update as berth reports it (`berthctl release`,
//! `release --json`, `status.json`), and how `berthctl update --wait`
//! turns it into an exit code. Pure: the loop keeps a [`Log`]
//! (`supervise::trial`), the client polls it.
//!
//! It must not act on an update: it records its course and turns it into text
//! and exit codes.
//!
//! Each update whose staging starts gets a sequence number (counted from 1
//! at each boot) and goes through [`Phase`]s: `staging`, then `refused`, or
//! `trial` (or `rebooting`, for a release that switches by a reboot: its
//! trial is the next boot's), then `committed` or `rolled-back`. Its id is
//! the SHA-256 of the whole bundle file, known once the stager has read it
//! (a refused bundle is read to its end for it). The last [`KEPT`] updates
//! are kept, so a waiting client finds its own even if another one started
//! right after it ended.

use crate::release::manifest::Digest;
use serde::{Deserialize, Serialize};

/// Updates kept (the most recent ones).
pub const KEPT: usize = 4;
/// Longest bundle path shown.
pub const BUNDLE_MAX: usize = 128;
/// Longest detail (a refusal's reason, a rollback's container).
pub const DETAIL_MAX: usize = 160;

/// Where an update stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    Staging,
    Trial,
    /// Staged, and the device reboots into it (`reboot = true`).
    Rebooting,
    Committed,
    RolledBack,
    Refused,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Staging => "staging",
            Phase::Trial => "trial",
            Phase::Rebooting => "rebooting",
            Phase::Committed => "committed",
            Phase::RolledBack => "rolled-back",
            Phase::Refused => "refused",
        }
    }

    /// `pending` while it may still change here, `ok` committed, `failed`
    /// refused or rolled back; `rebooting` is decided after the reboot.
    pub fn result(self) -> &'static str {
        match self {
            Phase::Staging | Phase::Trial => "pending",
            Phase::Rebooting => "reboot",
            Phase::Committed => "ok",
            Phase::RolledBack | Phase::Refused => "failed",
        }
    }
}

/// One update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateInfo {
    pub seq: u32,
    /// SHA-256 of the bundle file, shown `sha256:<hex>` (`None` until the
    /// stager has read it).
    pub id: Option<Digest>,
    pub bundle: heapless::String<BUNDLE_MAX>,
    /// The release's version, once staged.
    pub version: Option<u64>,
    pub phase: Phase,
    /// A rollback's cause (`container-failed`, ...) or a refusal's kind
    /// (`bundle`, `device`, `stager`); empty otherwise.
    pub cause: heapless::String<32>,
    /// A rollback's container, or a refusal's reason.
    pub detail: heapless::String<DETAIL_MAX>,
}

/// Up to `N` characters of `s`.
pub fn cut<const N: usize>(s: &str) -> heapless::String<N> {
    let mut t = heapless::String::new();
    for c in s.chars() {
        if t.push(c).is_err() {
            break;
        }
    }
    t
}

impl UpdateInfo {
    /// One line for `berthctl release`:
    /// `update 2 phase=rolled-back result=failed release=3 cause=container-failed id=<hex> bundle=<path> detail=<text>`
    /// (`-` for what is not known).
    pub fn line(&self) -> String {
        let id = self.id.map_or_else(|| "-".to_string(), |d| d.to_string());
        let version = self.version.map_or_else(|| "-".to_string(), |v| v.to_string());
        let dash = |s: &str| {
            if s.is_empty() {
                "-".to_string()
            } else {
                s.to_string()
            }
        };
        format!(
            "update {} phase={} result={} release={version} cause={} id={id} bundle={} detail={}",
            self.seq,
            self.phase.name(),
            self.phase.result(),
            dash(&self.cause),
            self.bundle,
            dash(&self.detail)
        )
    }

    /// As a JSON object (for `release --json` and the status file).
    pub fn json(&self, out: &mut Vec<u8>) {
        use std::io::Write as _;
        let s = crate::supervise::statusview::json_string;
        let _ = write!(out, "{{\"seq\":{},\"id\":", self.seq);
        match self.id {
            Some(d) => s(out, &d.to_string()),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"bundle\":");
        s(out, &self.bundle);
        match self.version {
            Some(v) => {
                let _ = write!(out, ",\"version\":{v}");
            }
            None => out.extend_from_slice(b",\"version\":null"),
        }
        out.extend_from_slice(b",\"phase\":");
        s(out, self.phase.name());
        out.extend_from_slice(b",\"result\":");
        s(out, self.phase.result());
        out.extend_from_slice(b",\"cause\":");
        if self.cause.is_empty() {
            out.extend_from_slice(b"null");
        } else {
            s(out, &self.cause);
        }
        out.extend_from_slice(b",\"detail\":");
        s(out, &self.detail);
        out.push(b'}');
    }
}

/// The updates of this boot, the last [`KEPT`] of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Log {
    last_seq: u32,
    kept: heapless::Vec<UpdateInfo, KEPT>,
}

impl Log {
    /// A staging starts: its record, with a new sequence number.
    pub fn begin(&mut self, bundle: &str) -> &UpdateInfo {
        self.last_seq = self.last_seq.saturating_add(1);
        if self.kept.is_full() {
            self.kept.remove(0);
        }
        let info = UpdateInfo {
            seq: self.last_seq,
            id: None,
            bundle: cut(bundle),
            version: None,
            phase: Phase::Staging,
            cause: heapless::String::new(),
            detail: heapless::String::new(),
        };
        // Room was made above.
        let _ = self.kept.push(info);
        self.kept.last().unwrap_or_else(|| unreachable_info())
    }

    /// The update being staged or on trial, if any (the latest, while not
    /// ended).
    pub fn open(&mut self) -> Option<&mut UpdateInfo> {
        self.kept.last_mut().filter(|u| matches!(u.phase, Phase::Staging | Phase::Trial))
    }

    /// The most recent update.
    pub fn last(&self) -> Option<&UpdateInfo> {
        self.kept.last()
    }

    /// Every kept update, oldest first.
    pub fn all(&self) -> &[UpdateInfo] {
        &self.kept
    }

    /// The open update moves to `phase`, with its cause and detail.
    pub fn end(&mut self, phase: Phase, cause: &str, detail: &str) {
        if let Some(u) = self.open() {
            u.phase = phase;
            u.cause = cut(cause);
            u.detail = cut(detail);
        }
    }
}

/// Never reached: [`Log::begin`] has just pushed. A static stand-in keeps
/// the loop free of panics all the same.
fn unreachable_info() -> &'static UpdateInfo {
    static NONE: UpdateInfo = UpdateInfo {
        seq: 0,
        id: None,
        bundle: heapless::String::new(),
        version: None,
        phase: Phase::Refused,
        cause: heapless::String::new(),
        detail: heapless::String::new(),
    };
    &NONE
}

/// `berthctl update --wait` exit codes.
pub mod exit {
    /// Committed.
    pub const COMMITTED: u8 = 0;
    /// Anything else: berth did not answer, the update was lost sight of.
    pub const OTHER: u8 = 1;
    /// Usage.
    pub const USAGE: u8 = 2;
    /// Refused: nothing changed (its checks, or the device could not take
    /// it now).
    pub const REFUSED: u8 = 3;
    /// Switched to, then rolled back.
    pub const ROLLED_BACK: u8 = 4;
    /// Staged; the device reboots into it, its trial is decided at boot.
    pub const REBOOTING: u8 = 5;
}

/// What a waiting client does after one look at the kept updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Not ended: look again.
    Pending,
    /// Ended: exit with this code.
    Exit(u8),
}

/// One look for update `seq` among `kept`.
pub fn wait_step(kept: &[UpdateInfo], seq: u32) -> Wait {
    match kept.iter().find(|u| u.seq == seq).map(|u| u.phase) {
        None => Wait::Exit(exit::OTHER),
        Some(Phase::Staging | Phase::Trial) => Wait::Pending,
        Some(Phase::Committed) => Wait::Exit(exit::COMMITTED),
        Some(Phase::Refused) => Wait::Exit(exit::REFUSED),
        Some(Phase::RolledBack) => Wait::Exit(exit::ROLLED_BACK),
        Some(Phase::Rebooting) => Wait::Exit(exit::REBOOTING),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_end_has_its_own_exit_code() {
        let mut log = Log::default();
        let seq = log.begin("/data/a.bundle").seq;
        assert_eq!(seq, 1);
        assert_eq!(wait_step(log.all(), seq), Wait::Pending);
        log.open().unwrap().phase = Phase::Trial;
        assert_eq!(wait_step(log.all(), seq), Wait::Pending);
        let cases =
            [(Phase::Committed, exit::COMMITTED), (Phase::Refused, exit::REFUSED), (Phase::RolledBack, exit::ROLLED_BACK), (Phase::Rebooting, exit::REBOOTING)];
        for (phase, code) in cases {
            let mut l = log.clone();
            l.end(phase, "x", "y");
            assert_eq!(wait_step(l.all(), seq), Wait::Exit(code), "{phase:?}");
        }
        let codes = [exit::COMMITTED, exit::OTHER, exit::USAGE, exit::REFUSED, exit::ROLLED_BACK, exit::REBOOTING];
        assert!(codes.iter().enumerate().all(|(i, c)| !codes[..i].contains(c)), "codes are distinct");
        // An update not kept (or of another boot) is lost sight of.
        assert_eq!(wait_step(log.all(), 7), Wait::Exit(exit::OTHER));
    }

    #[test]
    fn an_ended_update_stays_ended_and_the_last_four_are_kept() {
        let mut log = Log::default();
        log.begin("a");
        log.end(Phase::Refused, "bundle", "bad magic");
        // Ended: a later end (say a stray rollback) does not rewrite it.
        log.end(Phase::RolledBack, "requested", "");
        assert_eq!(log.last().unwrap().phase, Phase::Refused);
        assert_eq!(log.last().unwrap().detail, "bad magic");
        for b in ["b", "c", "d", "e"] {
            log.begin(b);
            log.end(Phase::Committed, "", "");
        }
        let seqs: Vec<u32> = log.all().iter().map(|u| u.seq).collect();
        assert_eq!(seqs, [2, 3, 4, 5]);
        assert_eq!(wait_step(log.all(), 1), Wait::Exit(exit::OTHER));
        assert_eq!(wait_step(log.all(), 5), Wait::Exit(exit::COMMITTED));
    }

    #[test]
    fn line_and_json_show_id_phase_result_and_cause() {
        let mut log = Log::default();
        log.begin("/data/test/v3.bundle");
        let u = log.open().unwrap();
        u.id = Some(Digest([0xab; 32]));
        u.version = Some(3);
        u.phase = Phase::Trial;
        log.end(Phase::RolledBack, "container-failed", "task");
        let u = log.last().unwrap();
        let hex = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(
            u.line(),
            format!("update 1 phase=rolled-back result=failed release=3 cause=container-failed id={hex} bundle=/data/test/v3.bundle detail=task")
        );
        let mut out = Vec::new();
        u.json(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("{{\"seq\":1,\"id\":\"{hex}\",\"bundle\":\"/data/test/v3.bundle\",\"version\":3,\"phase\":\"rolled-back\",\"result\":\"failed\",\"cause\":\"container-failed\",\"detail\":\"task\"}}")
        );
        let mut log = Log::default();
        log.begin("b\"x");
        let mut out = Vec::new();
        log.last().unwrap().json(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"seq\":1,\"id\":null,\"bundle\":\"b\\\"x\",\"version\":null,\"phase\":\"staging\",\"result\":\"pending\",\"cause\":null,\"detail\":\"\"}"
        );
        assert!(log.last().unwrap().line().contains("release=- cause=- id=- bundle=b\"x detail=-"));
    }
}
