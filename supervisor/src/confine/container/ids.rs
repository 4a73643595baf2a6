//! User and group identity: each container's own outside id range.
//!
//! It must not map an id outside the container's own range (host root least
//! of all); it is pure, the maps are written by the start.
//!
//! Container `N` (its index in the release) owns outside uids and gids
//! `BASE + N * COUNT .. BASE + (N + 1) * COUNT`, with `BASE` = 100000 and
//! `COUNT` = 65536: inside ids 0..=65535 map one to one onto that range, so
//! uid 0 inside is an unprivileged uid outside that no other container and no
//! host account shares (host accounts stay below 100000, the usual subuid
//! start). The highest index whose range still ends below `u32::MAX` (the
//! kernel's "no id") is [`INDEX_MAX`]. Groups: `setgroups` is `deny` (written
//! before `gid_map`, as the kernel requires for an unprivileged-style map).

use core::fmt::Write;

/// First outside id of container 0.
pub const BASE: u32 = 100_000;
/// Ids per container (inside 0..=65535).
pub const COUNT: u32 = 65_536;
/// Highest container index with a valid range.
pub const INDEX_MAX: u16 = ((u32::MAX - 1 - BASE - COUNT) / COUNT) as u16;

/// One `inside outside count\n` line, written in a single write(2).
pub type MapLine = heapless::Vec<u8, 32>;

/// What the parent writes into `/proc/PID/{setgroups,uid_map,gid_map}` and
/// which ids the child switches to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ids {
    /// First outside uid/gid of this container.
    pub outside_base: u32,
    /// How many ids are mapped.
    pub count: u32,
    /// `0 <outside_base> 65536\n`
    pub uid_map: MapLine,
    /// Same as `uid_map`: uids and gids use the same range.
    pub gid_map: MapLine,
    /// `deny`, written before `gid_map`.
    pub setgroups: &'static [u8],
    /// The process's uid inside (manifest `entry.uid`, default 0).
    pub uid: u32,
    /// The process's gid inside (manifest `entry.gid`, default 0).
    pub gid: u32,
}

/// The outside range start of container `index`, or `None` past [`INDEX_MAX`].
pub fn outside_base(index: u16) -> Option<u32> {
    if index > INDEX_MAX {
        return None;
    }
    u32::from(index).checked_mul(COUNT)?.checked_add(BASE)
}

fn map_line(base: u32) -> MapLine {
    let mut s: heapless::String<32> = heapless::String::new();
    // "0 4294967295 65536\n" is 19 bytes: always fits.
    let _ = writeln!(s, "0 {base} {COUNT}");
    let mut v = MapLine::new();
    let _ = v.extend_from_slice(s.as_bytes());
    v
}

/// Identity for container `index` running as `uid`/`gid` inside. The error
/// (field, reason) when the index has no range or an id is outside the map.
pub fn ids(index: u16, uid: Option<u32>, gid: Option<u32>) -> Result<Ids, (&'static str, &'static str)> {
    let base = outside_base(index).ok_or(("index", "container index has no outside id range"))?;
    let uid = uid.unwrap_or(0);
    let gid = gid.unwrap_or(0);
    if uid >= COUNT {
        return Err(("entry.uid", "must be below 65536 (the mapped range)"));
    }
    if gid >= COUNT {
        return Err(("entry.gid", "must be below 65536 (the mapped range)"));
    }
    Ok(Ids { outside_base: base, count: COUNT, uid_map: map_line(base), gid_map: map_line(base), setgroups: b"deny", uid, gid })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_container_has_its_own_range() {
        let a = ids(0, None, None).unwrap();
        let b = ids(1, Some(1000), Some(100)).unwrap();
        assert_eq!(a.uid_map, b"0 100000 65536\n");
        assert_eq!(b.uid_map, b"0 165536 65536\n");
        assert_eq!(b.gid_map, b.uid_map);
        assert_eq!(a.setgroups, b"deny");
        assert_eq!((a.uid, a.gid, b.uid, b.gid), (0, 0, 1000, 100));
        assert_eq!(a.outside_base + a.count, b.outside_base, "adjacent, not overlapping");
    }

    #[test]
    fn the_last_range_stays_below_the_invalid_id() {
        let last = ids(INDEX_MAX, None, None).unwrap();
        assert!(u64::from(last.outside_base) + u64::from(COUNT) <= u64::from(u32::MAX));
        assert!(ids(INDEX_MAX + 1, None, None).is_err());
        assert!(ids(u16::MAX, None, None).is_err());
        let s = core::str::from_utf8(&last.uid_map).unwrap();
        assert_eq!(s, format!("0 {} 65536\n", last.outside_base));
    }

    #[test]
    fn ids_outside_the_map_are_refused() {
        assert_eq!(ids(0, Some(65_536), None).unwrap_err().0, "entry.uid");
        assert_eq!(ids(0, None, Some(70_000)).unwrap_err().0, "entry.gid");
        assert!(ids(0, Some(65_535), Some(65_535)).is_ok());
    }
}
