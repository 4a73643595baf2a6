//! `--self-check`: the agent reports its own confinement before it starts
//! polling, one line per attempt, so a test can compare the whole list
//! with what the manifest promises. It tries to create (and then removes)
//! a file in each of [`FIXED`] and in the config's drop, state and status
//! directories, and reads its capability sets from `/proc/self/status`.
//! It must not leave a file behind, nor write anywhere but those
//! directories, nor use a name berth's drop would take (`*.bundle`).
//!
//! Each write is answered `ok FSTYPE` (the filesystem of the longest mount
//! point above it, from `/proc/self/mountinfo`) or the errno's name
//! (`EROFS`, `ENOENT`, `EACCES`, ...).

use crate::config::Config;
use std::path::Path;

/// The places tried besides the config's directories: the image, the
/// device and kernel views, berth's data partition, the scratch tmpfs.
pub const FIXED: [&str; 8] = ["/", "/bin", "/etc", "/dev", "/sys", "/data", "/tmp", "/dev/shm"];
/// The probe file's name (not a bundle name).
const PROBE: &str = ".berth-agent-self-check";

/// The errno names a refused write may carry.
fn errno_name(code: i32) -> String {
    let name = match code {
        1 => "EPERM",
        2 => "ENOENT",
        13 => "EACCES",
        17 => "EEXIST",
        20 => "ENOTDIR",
        28 => "ENOSPC",
        30 => "EROFS",
        122 => "EDQUOT",
        _ => return format!("errno {code}"),
    };
    name.to_string()
}

/// The filesystem type of the longest mount point of `mountinfo` that is
/// `path` or above it.
pub fn fstype(mountinfo: &str, path: &str) -> Option<String> {
    let mut best: Option<(usize, String)> = None;
    for line in mountinfo.lines() {
        let (left, right) = line.split_once(" - ")?;
        let point = left.split(' ').nth(4)?;
        let under = point == "/" || path == point || path.strip_prefix(point).is_some_and(|r| r.starts_with('/'));
        let fs = right.split(' ').next()?;
        if under && best.as_ref().is_none_or(|(n, _)| point.len() >= *n) {
            best = Some((point.len(), fs.to_string()));
        }
    }
    best.map(|(_, fs)| fs)
}

/// One attempt: `write DIR -> ok FSTYPE` or `write DIR -> ERRNO`.
fn try_write(dir: &str, mountinfo: &str) -> String {
    let file = Path::new(dir).join(PROBE);
    let made = std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(&file);
    match made {
        Ok(_) => {
            let _ = std::fs::remove_file(&file);
            format!("write {dir} -> ok {}", fstype(mountinfo, dir).unwrap_or_else(|| "unknown".into()))
        }
        Err(e) => format!("write {dir} -> {}", e.raw_os_error().map(errno_name).unwrap_or_else(|| e.to_string())),
    }
}

/// `caps inh=.. prm=.. eff=.. bnd=.. amb=..` from `/proc/self/status`
/// (hex as the kernel writes it, leading zeros dropped).
pub fn caps(status: &str) -> String {
    let mut out = String::from("caps");
    for (key, short) in [("CapInh", "inh"), ("CapPrm", "prm"), ("CapEff", "eff"), ("CapBnd", "bnd"), ("CapAmb", "amb")] {
        let v = status.lines().find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':'))).map(str::trim);
        let v = v.map(|h| h.trim_start_matches('0')).map(|h| if h.is_empty() { "0" } else { h });
        out.push_str(&format!(" {short}={}", v.unwrap_or("?")));
    }
    out
}

/// The self-check's lines, in order; the last is `done`.
pub fn run(cfg: &Config) -> Vec<String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut dirs: Vec<String> = FIXED.iter().map(|s| s.to_string()).collect();
    for d in [&cfg.status_dir, &cfg.drop_dir, &cfg.state_dir] {
        dirs.push(d.display().to_string());
    }
    let mut lines: Vec<String> = dirs.iter().map(|d| try_write(d, &mountinfo)).collect();
    lines.push(caps(&std::fs::read_to_string("/proc/self/status").unwrap_or_default()));
    lines.push("done".into());
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "20 1 0:5 / / ro,nosuid - squashfs /dev/loop0 ro\n\
        21 20 0:6 / /tmp rw,nosuid - tmpfs tmpfs rw\n\
        22 20 8:2 /volumes/a/drop /drop rw - ext4 /dev/vdb rw\n\
        23 20 0:7 / /dev rw - tmpfs tmpfs ro\n\
        24 23 0:8 / /dev/shm rw - tmpfs tmpfs rw\n";

    #[test]
    fn the_longest_mount_point_names_the_filesystem() {
        assert_eq!(fstype(INFO, "/drop").as_deref(), Some("ext4"));
        assert_eq!(fstype(INFO, "/drop/x").as_deref(), Some("ext4"));
        assert_eq!(fstype(INFO, "/dropx").as_deref(), Some("squashfs"));
        assert_eq!(fstype(INFO, "/dev/shm").as_deref(), Some("tmpfs"));
        assert_eq!(fstype(INFO, "/etc").as_deref(), Some("squashfs"));
        assert_eq!(fstype("garbage", "/etc"), None);
    }

    #[test]
    fn capability_sets() {
        let status =
            "Name:\tx\nCapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\nCapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\n";
        assert_eq!(caps(status), "caps inh=0 prm=0 eff=0 bnd=1ffffffffff amb=0");
        assert_eq!(caps(""), "caps inh=? prm=? eff=? bnd=? amb=?");
    }

    #[test]
    fn a_refused_and_an_allowed_write() {
        let dir = std::env::temp_dir().join(format!("berth-agent-selfcheck-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let d = dir.display().to_string();
        assert!(try_write(&d, INFO).starts_with(&format!("write {d} -> ok ")));
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "the probe file was left behind");
        assert_eq!(try_write(&format!("{d}/missing"), INFO), format!("write {d}/missing -> ENOENT"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
