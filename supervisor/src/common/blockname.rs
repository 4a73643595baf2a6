//! Block devices named the way a real board's config names them: a node
//! (`/dev/mmcblk0p2`), or a GPT partition label (`PARTLABEL=berth-data`)
//! that stays right whatever order the kernel probes an SD card, an eMMC
//! and a USB disk in. The initramfs has no udev, so there are no
//! `/dev/disk/by-*` links: a label is looked up in sysfs, where the kernel
//! puts each partition's GPT name in its `uevent` (`PARTNAME=`) beside
//! its node's name (`DEVNAME=`).
//!
//! Owns the syntax of such a name (checked by the board config), the pure
//! lookup over `uevent` texts (unit-tested), and the boot-time wait for a
//! name to resolve to a node. It must not be used from the supervision
//! loop: the wait polls with sleeps and runs only before the loop starts.

use std::time::Duration;

/// The prefix of a GPT partition label.
pub const PARTLABEL: &str = "PARTLABEL=";
/// Longest GPT partition name (36 UTF-16 units; berth allows ASCII only).
pub const LABEL_MAX: usize = 36;
/// Where the kernel lists block devices and partitions.
const SYS_BLOCK: &str = "/sys/class/block";
/// Most entries read from [`SYS_BLOCK`] in one look.
const ENTRIES_MAX: usize = 256;
/// Longest `uevent` file read.
const UEVENT_MAX: usize = 4096;

/// A block device as a board config names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceName<'a> {
    /// A device node path.
    Node(&'a str),
    /// A GPT partition label.
    PartLabel(&'a str),
}

/// Parse a board's device name, saying what is wrong with a bad one.
pub fn parse(s: &str) -> Result<DeviceName<'_>, &'static str> {
    if let Some(label) = s.strip_prefix(PARTLABEL) {
        if label.is_empty() || label.len() > LABEL_MAX {
            return Err("a PARTLABEL= name must be 1 to 36 characters");
        }
        if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
            return Err("a PARTLABEL= name may hold letters, digits, '.', '_' and '-' only");
        }
        return Ok(DeviceName::PartLabel(label));
    }
    let rest = s.strip_prefix("/dev/").ok_or("must be a path under /dev/ or PARTLABEL=NAME")?;
    if rest.is_empty() || rest.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err("must be a path under /dev/ or PARTLABEL=NAME");
    }
    Ok(DeviceName::Node(s))
}

/// The node name (`DEVNAME=`) of the entry whose `PARTNAME=` is `label`,
/// from `uevent` texts. Two partitions with the same label are refused:
/// which one is the system image must never depend on probe order.
pub fn find_label<'a>(uevents: impl IntoIterator<Item = &'a str>, label: &str) -> Result<Option<&'a str>, &'static str> {
    let mut found = None;
    for text in uevents {
        let field = |key: &str| text.lines().find_map(|l| l.strip_prefix(key));
        if field("PARTNAME=") != Some(label) {
            continue;
        }
        let Some(dev) = field("DEVNAME=").filter(|d| !d.is_empty() && !d.contains("..")) else {
            continue;
        };
        if found.is_some() {
            return Err("two partitions carry this label");
        }
        found = Some(dev);
    }
    Ok(found)
}

/// Why a device did not appear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitError {
    /// Nothing by that name within the wait.
    Absent,
    /// The label is ambiguous.
    Ambiguous,
}

impl WaitError {
    /// Text for the `device.wait` event.
    pub fn text(self) -> &'static str {
        match self {
            WaitError::Absent => "no such device (ENODEV)",
            WaitError::Ambiguous => "two partitions carry this label",
        }
    }
}

/// Wait up to `ms` for `name` to resolve to a node that exists; returns
/// the node and the milliseconds waited. Boot only (it sleeps).
pub fn wait(name: &str, ms: u32) -> Result<(String, u32), WaitError> {
    let start = crate::common::log::now();
    loop {
        match resolve(name) {
            Ok(Some(node)) if std::fs::metadata(&node).is_ok() => return Ok((node, ((crate::common::log::now() - start) * 1e3) as u32)),
            Err(e) => return Err(e),
            _ => {}
        }
        if (crate::common::log::now() - start) * 1e3 > ms as f64 {
            return Err(WaitError::Absent);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The node `name` stands for now, if any.
fn resolve(name: &str) -> Result<Option<String>, WaitError> {
    match parse(name) {
        Ok(DeviceName::Node(p)) => Ok(Some(p.to_owned())),
        Ok(DeviceName::PartLabel(label)) => {
            let texts = uevents();
            let found = find_label(texts.iter().map(String::as_str), label).map_err(|_| WaitError::Ambiguous)?;
            Ok(found.map(|d| format!("/dev/{d}")))
        }
        Err(_) => Err(WaitError::Absent),
    }
}

/// Every block device's `uevent`, bounded in count and size.
fn uevents() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(SYS_BLOCK) else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .take(ENTRIES_MAX)
        .filter_map(|e| {
            let path = e.path().join("uevent");
            let bytes = crate::common::files::read_bounded(path.to_str()?, UEVENT_MAX).ok()?;
            String::from_utf8(bytes).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_bad_ones_say_why() {
        assert_eq!(parse("/dev/vda"), Ok(DeviceName::Node("/dev/vda")));
        assert_eq!(parse("/dev/disk/by-path/platform-fe320000.mmc-part2"), Ok(DeviceName::Node("/dev/disk/by-path/platform-fe320000.mmc-part2")));
        assert_eq!(parse("PARTLABEL=berth-data"), Ok(DeviceName::PartLabel("berth-data")));
        assert_eq!(parse("PARTLABEL="), Err("a PARTLABEL= name must be 1 to 36 characters"));
        assert_eq!(parse(&format!("PARTLABEL={}", "a".repeat(37))), Err("a PARTLABEL= name must be 1 to 36 characters"));
        assert_eq!(parse("PARTLABEL=a b"), Err("a PARTLABEL= name may hold letters, digits, '.', '_' and '-' only"));
        for bad in ["vda", "/dev/", "/dev/../etc/passwd", "/dev//vda", "UUID=1234", "/sys/vda"] {
            assert_eq!(parse(bad), Err("must be a path under /dev/ or PARTLABEL=NAME"), "{bad}");
        }
    }

    #[test]
    fn a_label_finds_its_partition_and_only_one() {
        let disk = "MAJOR=179\nMINOR=0\nDEVNAME=mmcblk1\nDEVTYPE=disk\nDISKSEQ=3\n";
        let p1 = "MAJOR=179\nMINOR=1\nDEVNAME=mmcblk1p1\nDEVTYPE=partition\nPARTN=1\nPARTNAME=boot\n";
        let p2 = "MAJOR=179\nMINOR=2\nDEVNAME=mmcblk1p2\nDEVTYPE=partition\nPARTN=2\nPARTNAME=berth-system\n";
        let p3 = "MAJOR=179\nMINOR=3\nDEVNAME=mmcblk1p3\nDEVTYPE=partition\nPARTN=3\nPARTNAME=berth-data\n";
        let all = [disk, p1, p2, p3];
        assert_eq!(find_label(all, "berth-system"), Ok(Some("mmcblk1p2")));
        assert_eq!(find_label(all, "berth-data"), Ok(Some("mmcblk1p3")));
        assert_eq!(find_label(all, "berth"), Ok(None), "a prefix is not a match");
        let usb = "MAJOR=8\nMINOR=2\nDEVNAME=sda2\nDEVTYPE=partition\nPARTN=2\nPARTNAME=berth-system\n";
        assert_eq!(find_label([disk, p2, usb], "berth-system"), Err("two partitions carry this label"));
        let odd = "DEVNAME=../mem\nPARTNAME=x\n";
        assert_eq!(find_label([odd], "x"), Ok(None));
    }

    #[test]
    fn a_node_resolves_to_itself() {
        assert_eq!(resolve("/dev/vdb"), Ok(Some("/dev/vdb".to_owned())));
        assert_eq!(resolve("nonsense"), Err(WaitError::Absent));
    }
}
