//! `cargo xtask bundle --swu`: a berth bundle wrapped the way SWUpdate
//! packs an update, so that servers speaking hawkBit's DDI API and built
//! around SWUpdate (gooseBit parses it on upload; hawkBit stores it as an
//! artifact) take it unchanged.
//!
//! The `.swu` is a cpio archive in the "crc" format (`070702`), whose first
//! member is `sw-description` (libconfig syntax), then the bundle:
//!
//! - `software.version`: the release version as semver (`N.0.0`);
//! - `software.<board>.hardware-compatibility`: `["default"]` — the board
//!   name is the hardware model, and berth boards have one revision, which
//!   a device reports as `default`;
//! - `software.<board>.files`: the bundle by name, with its SHA-256, and the
//!   inbox as its path (where an agent puts it; berth verifies it as any
//!   other bundle).
//!
//! Only the wrapping is here; the bundle and its signature are untouched.

use crate::cpio::Cpio;
use sha2::{Digest as _, Sha256};

/// Where a device's update agent puts the bundle.
const INBOX: &str = "/data/berth/inbox";

/// The member name of the bundle in the `.swu` of `board`'s release `version`.
pub fn bundle_name(board: &str, version: u64) -> String {
    format!("berth-{board}-{version}.bundle")
}

/// The `sw-description` of a release. The board name is a libconfig
/// setting name there, which must start with a letter.
pub fn description(board: &str, version: u64, bundle: &[u8]) -> Result<String, String> {
    let name_ok = board.starts_with(|c: char| c.is_ascii_alphabetic()) && board.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !name_ok {
        return Err(format!("board name `{board}`: a .swu names the board as a setting, which must start with a letter and hold letters, digits, '-' and '_'"));
    }
    let sha = crate::verity::hex(&Sha256::digest(bundle));
    let file = bundle_name(board, version);
    Ok(format!(
        "software =\n{{\n\tversion = \"{version}.0.0\";\n\tdescription = \"berth release {version} for {board}\";\n\t{board} =\n\t{{\n\t\thardware-compatibility: [ \"default\" ];\n\t\tfiles: (\n\t\t\t{{\n\t\t\t\tfilename = \"{file}\";\n\t\t\t\tpath = \"{INBOX}/{file}\";\n\t\t\t\tsha256 = \"{sha}\";\n\t\t\t}}\n\t\t);\n\t}};\n}};\n"
    ))
}

/// The `.swu` of `bundle`: `sw-description`, then the bundle.
pub fn wrap(board: &str, version: u64, bundle: &[u8]) -> Result<Vec<u8>, String> {
    if u32::try_from(bundle.len()).is_err() {
        return Err(format!("the bundle is {} bytes; a .swu member holds at most 4 GiB", bundle.len()));
    }
    let desc = description(board, version, bundle)?;
    let mut c = Cpio::new_crc();
    c.add_file("sw-description", 0o644, desc.as_bytes());
    c.add_file(&bundle_name(board, version), 0o644, bundle);
    Ok(c.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    /// The description, written out by hand for a known bundle.
    #[test]
    fn the_description_names_version_board_and_bundle() {
        let d = description("qemu-x86_64", 7, b"abc").unwrap();
        let want = "software =\n{\n\tversion = \"7.0.0\";\n\tdescription = \"berth release 7 for qemu-x86_64\";\n\tqemu-x86_64 =\n\t{\n\t\thardware-compatibility: [ \"default\" ];\n\t\tfiles: (\n\t\t\t{\n\t\t\t\tfilename = \"berth-qemu-x86_64-7.bundle\";\n\t\t\t\tpath = \"/data/berth/inbox/berth-qemu-x86_64-7.bundle\";\n\t\t\t\tsha256 = \"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\";\n\t\t\t}\n\t\t);\n\t};\n};\n";
        assert_eq!(d, want);
        let e = description("3com", 1, b"").unwrap_err();
        assert!(e.contains("board name `3com`") && e.contains("start with a letter"), "{e}");
    }

    /// GNU cpio reads the archive back (checking each member's sum), lists
    /// `sw-description` first, and extracts both members byte for byte.
    #[test]
    fn gnu_cpio_reads_it_back_in_order_with_good_sums() {
        crate::tools::require_command("cpio", "cpio");
        let bundle: Vec<u8> = (0..70_001u32).map(|i| (i * 7 % 251) as u8).collect();
        let swu = wrap("qemu-aarch64-virt", 12, &bundle).unwrap();
        assert_eq!(&swu[..6], b"070702");
        let dir = std::env::temp_dir().join(format!("berth-swu-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut child =
            Command::new("cpio").args(["-idv", "-H", "crc", "--quiet"]).current_dir(&dir).stdin(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), &swu).unwrap();
        let out = child.wait_with_output().unwrap();
        let listed = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "cpio: {listed}");
        let names: Vec<&str> = listed.lines().collect();
        assert_eq!(names, ["sw-description", "berth-qemu-aarch64-virt-12.bundle"], "cpio said: {listed}");
        assert_eq!(std::fs::read(dir.join("berth-qemu-aarch64-virt-12.bundle")).unwrap(), bundle);
        let desc = std::fs::read_to_string(dir.join("sw-description")).unwrap();
        assert_eq!(desc, description("qemu-aarch64-virt", 12, &bundle).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A flipped byte in the bundle is caught by cpio's sum check.
    #[test]
    fn gnu_cpio_refuses_a_changed_member() {
        crate::tools::require_command("cpio", "cpio");
        let mut swu = wrap("qemu-x86_64", 3, &[5u8; 4096]).unwrap();
        let n = swu.len();
        swu[n - 700] ^= 1;
        let dir = std::env::temp_dir().join(format!("berth-swu-bad-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut child = Command::new("cpio").args(["-id", "-H", "crc"]).current_dir(&dir).stdin(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), &swu).unwrap();
        let out = child.wait_with_output().unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(said.contains("checksum error") || said.contains("crc error"), "cpio said: {said}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
