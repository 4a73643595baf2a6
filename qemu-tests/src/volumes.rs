//! Volumes under QEMU (variant `volumes`, `qemu-tests/manifests/volumes/`):
//! one boot, the agent in mode `volumes` (see its `volumes.rs`).
//!
//! - **Quota**: `volfill` writes into its volume until a write fails. The
//!   right answer, computed from its manifest before the run: the write
//!   fails with `EDQUOT` after at most `volume_size` bytes and at least
//!   that less [`SLACK`] (the volume's directory block, the last partial
//!   block); berth said `volume.quota` with that size, the inode limit and
//!   the project id of `volfill/data` ([`project_id`], computed here the way
//!   docs/security.md documents it). Afterwards release 2, dropped into the inbox,
//!   is taken, staged and committed, and the log store still takes lines:
//!   a newer `volfill` line through `berthctl logs`, berth's own commit in
//!   its log file (agent checks).
//! - **Symlinks**: `volfill` planted `/mnt/link -> /tmp` in its volume;
//!   release 3 mounts a tmpfs at `/mnt/link`. Its start is refused at that
//!   mount step with `ELOOP` (never redirected), no `volfill` of release 3
//!   ever runs, and the trial rolls back to release 2.

use crate::event::Event;
use crate::machine::Machine;
use crate::scenario::{case, Case};
use crate::scenarios::{agent_pass, expect_boot, expect_poweroff, field_is, limits, spec, BootSpec, Launch, Limits};
use std::sync::Arc;

/// volfill's manifest in the installed release.
const VOLFILL: &str = include_str!("../manifests/volumes/v1/volfill.toml");
/// How far below its quota a full volume's writes may stop: the volume
/// directory's block and a partial 64 KiB write.
pub const SLACK: u64 = 128 << 10;
/// `EDQUOT` on the three architectures.
const EDQUOT: i64 = 122;

/// The volume scenario of one architecture.
pub fn cases(l: Arc<dyn Launch>) -> Vec<Case> {
    let arch = l.arch().to_string();
    vec![case(format!("{arch}/volumes"), move || volumes(l.as_ref()))]
}

/// A `key = number` line of a manifest.
pub fn manifest_number(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// The project id berth gives `container`'s volume `volume`: FNV-1a (32
/// bits) of `container/volume`, folded into 65536..2^31.
pub fn project_id(container: &str, volume: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in format!("{container}/{volume}").bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(16_777_619);
    }
    65_536 + h % ((1 << 31) - 65_536)
}

/// `VOLFILL full errno=NAME code=N bytes=N`: (code, bytes).
pub fn parse_full(line: &str) -> Option<(i64, u64)> {
    let rest = line.split("VOLFILL full ").nth(1)?;
    let field = |k: &str| rest.split_whitespace().find_map(|w| w.strip_prefix(k));
    Some((field("code=")?.parse().ok()?, field("bytes=")?.parse().ok()?))
}

/// The quota verdict: `EDQUOT` within [`SLACK`] below the quota.
pub fn judge_full(code: i64, bytes: u64, quota: u64) -> Result<(), String> {
    if code != EDQUOT {
        return Err(format!("volfill's writes ended with errno {code} after {bytes} bytes, want EDQUOT ({EDQUOT}) at its {quota}-byte quota"));
    }
    if bytes > quota || bytes + SLACK < quota {
        return Err(format!("volfill wrote {bytes} bytes before EDQUOT, want {}..={quota}", quota - SLACK));
    }
    Ok(())
}

fn quota_event(m: &mut Machine, lim: &Limits, quota: u64, inodes: u64) -> Result<(), String> {
    let q = m.expect_event_where("volume.quota", |e| e.is("name", "volfill"), lim.boot)?;
    field_is(&q, "volume", "data")?;
    field_is(&q, "bytes", &quota.to_string())?;
    field_is(&q, "inodes", &inodes.to_string())?;
    field_is(&q, "projid", &project_id("volfill", "data").to_string())?;
    field_is(&q, "result", "ok")
}

fn volumes(l: &dyn Launch) -> Result<(), String> {
    let lim = limits(l.arch());
    let quota = manifest_number(VOLFILL, "volume_size").ok_or("volfill.toml has no volume_size")?;
    let inodes = manifest_number(VOLFILL, "volume_inodes").ok_or("volfill.toml has no volume_inodes")?;
    let mut m = l.boot(&BootSpec { variant: "volumes", ..spec("volumes", "volumes") })?;
    expect_boot(&mut m, &lim)?;
    let at_boot = m.cursor();
    quota_event(&mut m, &lim, quota, inodes)?;
    let full = m.expect_event_where("container.log", |e| e.is("name", "volfill") && e.get("line").is_some_and(|l| l.contains("VOLFILL full")), lim.boot)?;
    let line = full.get("line").unwrap_or("");
    let (code, bytes) = parse_full(line).ok_or_else(|| format!("cannot read {line:?}"))?;
    judge_full(code, bytes, quota)?;
    eprintln!("  volumes: volfill stopped at {bytes} of {quota} bytes with errno {code}");
    // After it: release 2 through the inbox, staged and committed.
    let inbox = m.expect_event_where("update.inbox", |e| e.get("bundle").is_some_and(|b| b.ends_with("/v2.bundle")), lim.boot)?;
    let _ = inbox;
    let staged = m.expect_event("update.staged", lim.step * 2)?;
    field_is(&staged, "version", "2")?;
    let commit = m.expect_event("release.commit", lim.step * 2)?;
    field_is(&commit, "version", "2")?;
    // Release 3: volfill's start refused at the mount on the planted link.
    let switch = m.expect_event_where("update.switch", |e| e.is("version", "3"), lim.step * 2)?;
    let refused = m.expect_event_where("container.start", |e| e.is("name", "volfill") && e.is("result", "error"), lim.step)?;
    symlink_refused(&refused)?;
    let rollback = m.expect_event("release.rollback", lim.step * 2)?;
    m.set_cursor(at_boot);
    for check in ["volume-full", "update-v2-inbox", "update-commit", "log-after-commit", "update-v3", "rollback"] {
        agent_pass(&mut m, check, &Limits { step: lim.boot * 3, ..limits(l.arch()) })?;
    }
    expect_poweroff(&mut m, "SIGTERM", &lim)?;
    let events = m.events();
    let ran =
        events.iter().filter(|e| e.t >= switch.t && e.t <= rollback.t).any(|e| e.name == "container.start" && e.is("name", "volfill") && e.is("result", "ok"));
    if ran {
        return Err("release 3's volfill started although its mount target is a symlink".into());
    }
    Ok(())
}

/// The start error of release 3's volfill: the spawn, at the mount step
/// that makes `/mnt/link` beneath the volume, `ELOOP`.
pub fn symlink_refused(e: &Event) -> Result<(), String> {
    field_is(e, "step", "spawn")?;
    let err = e.get("error").unwrap_or("");
    if err.contains("mkdir-beneath") && err.contains(" /mnt/link ") && err.ends_with("(ELOOP)") {
        Ok(())
    } else {
        Err(format!("volfill's start failed otherwise than at the symlink: {err:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_gives_the_quota() {
        assert_eq!(manifest_number(VOLFILL, "volume_size"), Some(4 << 20));
        assert_eq!(manifest_number(VOLFILL, "volume_inodes"), Some(64));
    }

    #[test]
    fn project_ids_match_berths() {
        // The value berth's own unit test pins for web/state.
        assert_eq!(project_id("web", "state"), 165_890_063);
    }

    #[test]
    fn full_lines_are_judged() {
        assert_eq!(parse_full("VOLFILL full errno=EDQUOT code=122 bytes=4128768"), Some((122, 4_128_768)));
        assert!(judge_full(122, (4 << 20) - 8192, 4 << 20).is_ok());
        assert!(judge_full(28, 60 << 20, 4 << 20).unwrap_err().contains("errno 28"));
        assert!(judge_full(122, 1 << 20, 4 << 20).is_err());
        assert!(judge_full(122, (4 << 20) + 1, 4 << 20).is_err());
    }
}
