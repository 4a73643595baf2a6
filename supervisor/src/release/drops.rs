//! Update drops: a container's volume (its manifest's `update_drop`) where
//! it offers bundles, such as an update agent that downloads them from a
//! fleet server. berth moves each finished `NAME.bundle` there into its own
//! inbox as `<container>.NAME.bundle`, where it is taken, verified and
//! staged like any other bundle ([`crate::release::inbox`]). It owns that
//! move; it must not open or trust a dropped file (the inbox's staging
//! verifies every bundle's signature), and must not follow anything but a
//! regular file: a symlink, FIFO or directory under a bundle name stays
//! where it is, unread.
//!
//! A container finishes a bundle by renaming it to its `.bundle` name
//! (a `NAME.bundle.part` being written is not taken). The move is a rename
//! on the data partition (both directories are on it), so the bytes stay
//! charged to the drop volume's quota until staging removes the file. A
//! bundle whose inbox name is taken already (an earlier one still waiting)
//! stays in the drop until a later look. At most [`super::inbox::SCAN_MAX`]
//! entries are looked at per look.

use super::inbox::{self, Kind, Name};
use std::io;
use std::path::Path;

/// The inbox name of drop entry `name` of `container`, if it is a finished
/// bundle whose inbox name fits.
pub fn inbox_name(container: &str, name: &str) -> Option<String> {
    match inbox::parse(name)? {
        Name::Fresh { base } => {
            let to = format!("{container}.{base}");
            matches!(inbox::parse(&to), Some(Name::Fresh { .. })).then_some(to)
        }
        Name::Taking { .. } => None,
    }
}

/// Whether `to` (or a taken form of it) is in the inbox already.
fn waiting(inbox_dir: &Path, to: &str) -> bool {
    let exists = |n: &str| std::fs::symlink_metadata(inbox_dir.join(n)).is_ok();
    exists(to) || (1..=9).any(|a| exists(&inbox::taking(to, a)))
}

/// One move's outcome.
#[derive(Debug)]
pub struct Moved {
    pub from: String,
    pub to: String,
    pub result: io::Result<()>,
}

/// Move the finished bundles of `container`'s drop `dir` into `inbox_dir`.
pub fn collect(dir: &Path, container: &str, inbox_dir: &Path) -> io::Result<Vec<Moved>> {
    let mut out = Vec::new();
    for (name, kind) in inbox::list(dir)?.into_iter().take(inbox::SCAN_MAX) {
        let Some(to) = inbox_name(container, &name) else { continue };
        if kind != Kind::File || waiting(inbox_dir, &to) {
            continue;
        }
        // A fresh data partition has no inbox until something is put there.
        if let Err(e) = std::fs::create_dir_all(inbox_dir) {
            out.push(Moved { from: name, to, result: Err(e) });
            continue;
        }
        let result = std::fs::rename(dir.join(&name), inbox_dir.join(&to)).and_then(|()| std::fs::File::open(inbox_dir)?.sync_all());
        out.push(Moved { from: name, to, result });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(inbox_name("agent", "r7.bundle").as_deref(), Some("agent.r7.bundle"));
        assert_eq!(inbox_name("agent", "r7.bundle.part"), None);
        assert_eq!(inbox_name("agent", "r7.bundle.taking1"), None);
        assert_eq!(inbox_name("agent", ".r7.bundle"), None);
        let long = format!("{}.bundle", "x".repeat(inbox::NAME_MAX - 7));
        assert!(inbox::parse(&long).is_some());
        assert_eq!(inbox_name("agent", &long), None, "too long once prefixed");
    }

    #[test]
    fn moves_finished_regular_bundles_only() {
        let root = std::env::temp_dir().join(format!("berth-drops-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let (drop, inbox_dir) = (root.join("drop"), root.join("inbox"));
        std::fs::create_dir_all(&drop).unwrap();
        // No inbox yet: the first move makes it.
        std::fs::write(drop.join("first.bundle"), b"1").unwrap();
        let moved = collect(&drop, "agent", &inbox_dir).unwrap();
        assert_eq!(moved.iter().map(|m| (m.to.as_str(), m.result.is_ok())).collect::<Vec<_>>(), [("agent.first.bundle", true)]);
        std::fs::write(drop.join("a.bundle"), b"a").unwrap();
        std::fs::write(drop.join("b.bundle.part"), b"b").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", drop.join("c.bundle")).unwrap();
        std::fs::write(drop.join("d.bundle"), b"d").unwrap();
        std::fs::write(inbox_dir.join("agent.d.bundle.taking1"), b"old d").unwrap();
        let moved = collect(&drop, "agent", &inbox_dir).unwrap();
        let got: Vec<(&str, &str, bool)> = moved.iter().map(|m| (m.from.as_str(), m.to.as_str(), m.result.is_ok())).collect();
        assert_eq!(got, [("a.bundle", "agent.a.bundle", true)]);
        assert_eq!(std::fs::read(inbox_dir.join("agent.a.bundle")).unwrap(), b"a");
        assert!(drop.join("b.bundle.part").exists() && drop.join("d.bundle").exists());
        assert!(std::fs::symlink_metadata(drop.join("c.bundle")).unwrap().file_type().is_symlink());
        let _ = std::fs::remove_dir_all(&root);
    }
}
