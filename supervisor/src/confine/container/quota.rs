//! Volume quotas: how much of the data partition each persistent volume may
//! take, decided as data (the calls are [`crate::sys::quota`]'s). It must
//! not make a quota call itself.
//!
//! The data partition holds berth's state, the release store, the inbox, the
//! logs and every container's volumes. Without a bound, one container that
//! fills its volume fills the partition, and berth can no longer log, stage
//! or commit an update. So every volume is an ext4 *project*:
//!
//! - **Project id**: derived from the container and volume names alone
//!   ([`project_id`]: FNV-1a of `<container>/<volume>`, folded into
//!   [`PROJID_MIN`]..[`PROJID_END`]), so the same volume keeps its id across
//!   releases, restarts, reboots and container index changes, and no state
//!   is kept for it. Two volumes of one release with the same id would share
//!   a quota: such a release is refused ([`plan_release`]).
//! - **Limits**: the mount's `volume_size` (bytes) and `volume_inodes`,
//!   else the board's `[volumes]` defaults ([`Settings`], declared in
//!   [`crate::release::volumes`] with the bounds the manifest checks). Blocks and
//!   inodes are hard limits; the container gets `EDQUOT` past them.
//! - **Reserve**: the volumes of a release together, plus the board's
//!   `reserve_mib` / `reserve_inodes`, must fit the partition's size and
//!   inode count, or every container with a volume is refused (a release in
//!   trial then fails and rolls back). On top, the partition's ext4
//!   reserved blocks (5 % from `mkfs.ext4`) are for root, which berth is
//!   and no container is.
//! - **Kernel support**: berth mounts the data partition with `prjquota`
//!   (retried without it when the filesystem lacks the `project` and
//!   `quota` features). Without enforced project quotas, `quota =
//!   "required"` (the default) starts no container that has a volume;
//!   `"optional"` starts those whose volumes take the board's default
//!   size, unlimited, and says so; a volume whose manifest sets a size or
//!   inode count never starts unlimited ([`decide`]).

use crate::release::manifest::{Manifest, Name, MOUNTS_MAX};

pub use crate::release::volumes::{Mode, Settings, INODES_MAX, INODES_MIN, SIZE_MAX, SIZE_MIN};

/// Lowest project id berth gives a volume (ids below are left to the
/// board's own use).
pub const PROJID_MIN: u32 = 1 << 16;
/// One past the highest (ids stay positive as a signed 32-bit number).
pub const PROJID_END: u32 = 1 << 31;

/// One volume's quota.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub volume: Name,
    pub projid: u32,
    /// Hard limit, bytes (a multiple of 1 KiB, the quota's unit).
    pub bytes: u64,
    pub inodes: u64,
    /// The manifest set the size or the inode count (never started
    /// unlimited).
    pub explicit: bool,
}

pub type Volumes = heapless::Vec<Volume, MOUNTS_MAX>;

/// The project id of `container`'s volume `volume` (see the module doc).
pub fn project_id(container: &str, volume: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in container.bytes().chain([b'/']).chain(volume.bytes()) {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    PROJID_MIN + h % (PROJID_END - PROJID_MIN)
}

/// The quotas of `m`'s volumes, with the board's defaults.
pub fn volumes(m: &Manifest, s: &Settings) -> Volumes {
    let mut out = Volumes::new();
    for mt in &m.mounts {
        let Some(v) = &mt.volume else { continue };
        let bytes = mt.volume_size.unwrap_or(u64::from(s.default_size_mib) << 20);
        let q = Volume {
            volume: v.clone(),
            projid: project_id(&m.name, v),
            bytes: bytes.div_ceil(1024) * 1024,
            inodes: mt.volume_inodes.unwrap_or(u64::from(s.default_inodes)),
            explicit: mt.volume_size.is_some() || mt.volume_inodes.is_some(),
        };
        // At most MOUNTS_MAX volumes: a manifest has at most that many mounts.
        let _ = out.push(q);
    }
    out
}

/// The data partition: its size and inode count (`statvfs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    pub bytes: u64,
    pub inodes: u64,
}

/// What a release's volumes claim together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pub volumes: usize,
    pub bytes: u64,
    pub inodes: u64,
}

/// Check the volumes of every container of a release against the
/// partition: distinct project ids, and the sum of the quotas plus the
/// board's reserve within the partition's size and inode count. The error
/// says which, with the numbers.
pub fn plan_release(manifests: &[Manifest], s: &Settings, part: Partition) -> Result<Claim, String> {
    let mut claim = Claim { volumes: 0, bytes: 0, inodes: 0 };
    let mut seen: Vec<(u32, &str, &str)> = Vec::new();
    for m in manifests {
        for q in volumes(m, s) {
            if let Some((_, c, v)) = seen.iter().find(|(id, _, _)| *id == q.projid) {
                return Err(format!("volumes {c}/{v} and {}/{} have the same project id {}: rename one", m.name, q.volume, q.projid));
            }
            let name = m.mounts.iter().filter_map(|mt| mt.volume.as_deref()).find(|v| *v == q.volume.as_str()).unwrap_or("");
            seen.push((q.projid, m.name.as_str(), name));
            claim.volumes += 1;
            claim.bytes = claim.bytes.saturating_add(q.bytes);
            claim.inodes = claim.inodes.saturating_add(q.inodes);
        }
    }
    let reserve = u64::from(s.reserve_mib) << 20;
    if claim.bytes.saturating_add(reserve) > part.bytes {
        return Err(format!(
            "the volumes' quotas ({} MiB) and the board's reserve ({} MiB) exceed the data partition ({} MiB)",
            claim.bytes >> 20,
            s.reserve_mib,
            part.bytes >> 20
        ));
    }
    if claim.inodes.saturating_add(u64::from(s.reserve_inodes)) > part.inodes {
        return Err(format!(
            "the volumes' inode quotas ({}) and the board's reserve ({}) exceed the data partition's {} inodes",
            claim.inodes, s.reserve_inodes, part.inodes
        ));
    }
    Ok(claim)
}

/// What to do with the volumes of a release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Every volume gets its quota.
    Enforce,
    /// No quotas (the board allows it): volumes of the default size start
    /// unlimited, those with a manifest size are refused with this reason.
    Downgrade(String),
    /// No container with a volume starts: this reason.
    Refuse(String),
}

/// Combine the board's mode with what the partition offers (`probe`: `Err`
/// says why project quotas are not enforced there).
pub fn decide(mode: Mode, probe: Result<(), String>) -> Decision {
    match (probe, mode) {
        (Ok(()), _) => Decision::Enforce,
        (Err(why), Mode::Required) => Decision::Refuse(why),
        (Err(why), Mode::Optional) => Decision::Downgrade(why),
    }
}

/// Is `prjquota` among the options of the mount at `target` in this
/// `/proc/self/mountinfo` text (the last mount there counts)?
pub fn mounted_with_prjquota(mountinfo: &str, target: &str) -> bool {
    let mut found = false;
    for line in mountinfo.lines() {
        let mut fields = line.split(' ');
        if fields.nth(4) != Some(target) {
            continue;
        }
        // After the optional fields' `-`: fstype, source, super options.
        let mut rest = line.split(" - ").nth(1).unwrap_or("").split(' ');
        let options = rest.nth(2).unwrap_or("");
        found = options.split(',').any(|o| o == "prjquota");
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(name: &str, mounts: &[(&str, Option<u64>, Option<u64>)]) -> Manifest {
        let image = format!("sha256:{}", "ab".repeat(32));
        let mut text = format!("name = \"{name}\"\nversion = \"1\"\nimage = \"{image}\"\n[entry]\nargv = [\"/bin/app\"]\n");
        for (i, (v, size, inodes)) in mounts.iter().enumerate() {
            text += &format!("[[mounts]]\ntarget = \"/v{i}\"\nvolume = \"{v}\"\n");
            if let Some(s) = size {
                text += &format!("volume_size = {s}\n");
            }
            if let Some(n) = inodes {
                text += &format!("volume_inodes = {n}\n");
            }
        }
        Manifest::from_toml(name, &text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn project_ids_are_stable_distinct_and_in_range() {
        let a = project_id("web", "state");
        assert_eq!(a, project_id("web", "state"));
        // A fixed value: the id must never change between berth versions,
        // or volumes would lose their accounting.
        assert_eq!(a, 165_890_063);
        assert_ne!(a, project_id("web", "cache"));
        assert_ne!(project_id("a", "bc"), project_id("ab", "c"), "the separator counts");
        for (c, v) in [("", ""), ("x", "y"), ("probe", "state"), ("volfill", "data")] {
            assert!((PROJID_MIN..PROJID_END).contains(&project_id(c, v)));
        }
    }

    #[test]
    fn limits_come_from_the_mount_else_the_board() {
        let s = Settings::default();
        let m = manifest("c", &[("a", None, None), ("b", Some(4 << 20), None), ("d", Some((1 << 20) + 1), Some(100))]);
        let q = volumes(&m, &s);
        assert_eq!(q.len(), 3);
        assert_eq!((q[0].bytes, q[0].inodes, q[0].explicit), (16 << 20, 4096, false));
        assert_eq!((q[1].bytes, q[1].inodes, q[1].explicit), (4 << 20, 4096, true));
        assert_eq!((q[2].bytes, q[2].inodes, q[2].explicit), ((1 << 20) + 1024, 100, true), "rounded up to the 1 KiB unit");
        assert_eq!(q[1].projid, project_id("c", "b"));
    }

    #[test]
    fn the_release_must_fit_with_the_reserve() {
        let s = Settings { reserve_mib: 32, reserve_inodes: 100, ..Settings::default() };
        let ms = [manifest("a", &[("x", Some(8 << 20), Some(1000))]), manifest("b", &[("y", Some(8 << 20), Some(1000))])];
        let fits = Partition { bytes: 48 << 20, inodes: 2100 };
        assert_eq!(plan_release(&ms, &s, fits), Ok(Claim { volumes: 2, bytes: 16 << 20, inodes: 2000 }));
        let e = plan_release(&ms, &s, Partition { bytes: (48 << 20) - 1, ..fits }).unwrap_err();
        assert_eq!(e, "the volumes' quotas (16 MiB) and the board's reserve (32 MiB) exceed the data partition (47 MiB)");
        let e = plan_release(&ms, &s, Partition { inodes: 2099, ..fits }).unwrap_err();
        assert!(e.contains("inode quotas (2000)") && e.contains("2099 inodes"), "{e}");
        assert_eq!(plan_release(&[], &s, fits).map(|c| c.volumes), Ok(0));
    }

    #[test]
    fn the_mode_decides_without_quotas() {
        assert_eq!(decide(Mode::Required, Ok(())), Decision::Enforce);
        assert_eq!(decide(Mode::Optional, Ok(())), Decision::Enforce);
        assert_eq!(decide(Mode::Required, Err("no".into())), Decision::Refuse("no".into()));
        assert_eq!(decide(Mode::Optional, Err("no".into())), Decision::Downgrade("no".into()));
    }

    #[test]
    fn prjquota_is_read_from_mountinfo() {
        let on = "22 1 254:16 / /data rw,nosuid,nodev,noexec,noatime shared:1 - ext4 /dev/vdb rw,prjquota\n";
        let off = "22 1 254:16 / /data rw,nosuid,nodev,noexec,noatime shared:1 - ext4 /dev/vdb rw\n";
        let other = "23 1 0:5 / /datax rw - tmpfs tmpfs rw,prjquota\n";
        assert!(mounted_with_prjquota(on, "/data"));
        assert!(!mounted_with_prjquota(off, "/data"));
        assert!(!mounted_with_prjquota(other, "/data"));
        assert!(!mounted_with_prjquota(&format!("{on}{off}"), "/data"), "the last mount counts");
    }
}
