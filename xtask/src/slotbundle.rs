//! Bundles that update the whole system through the A/B slots (the
//! `slot-update` cases, `qemu_tests::slotupdate`): a release of a build's
//! own manifests one version up, carrying a system payload (the build's
//! kernel, an initramfs whose board config holds the new system image's
//! dm-verity parameters, and that image) and no container image (the
//! device has them all).
//!
//! The new system's board config states the release as its floor
//! (`release_floor`): once it runs, no release below it is accepted.
//! The payload's berth ([`Payload`]) is either a separate build of berth
//! with a version string of its own (`BERTH_VERSION`, so the boot after the
//! switch shows which berth runs), or a program that exits at once in
//! berth's place (a system whose berth never reaches its loop).

use crate::artifacts::Artifacts;
use berth::release::manifest::Digest;
use berth::release::system::{Blob, System};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What runs as `/sbin/berth` in the payload's system image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// berth (with the test hooks) built with version [`next_version`].
    NewBerth,
    /// `berth-probe` without arguments: it prints its usage and exits 2.
    BerthExits,
}

impl Payload {
    pub fn parse(s: &str) -> Result<Payload, String> {
        match s {
            "new-berth" => Ok(Payload::NewBerth),
            "berth-exits" => Ok(Payload::BerthExits),
            _ => Err(format!("system payload `{s}`: want new-berth or berth-exits")),
        }
    }
}

/// The version string of the payload's berth.
pub fn next_version() -> String {
    format!("{}{}", berth::common::names::VERSION, qemu_tests::slotupdate::NEXT_SUFFIX)
}

/// Build the bundle for `a` (its manifests at `manifests`) carrying
/// `payload` as release `version`, at `out`.
pub fn build(root: &Path, a: &Artifacts, manifests: &Path, payload: Payload, version: u64, out: &Path) -> Result<(), String> {
    let work = out.with_extension("d");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let berth = match payload {
        Payload::NewBerth => next_berth(root, a)?,
        Payload::BerthExits => crate::artifacts::cross_build(root, a.board.arch, "qemu-tests", "berth-probe")?,
    };
    // The new system's board: the release carrying it is its floor.
    let mut next = a.clone();
    next.board.release_floor = version;
    let board_bin = next.board.to_postcard().map_err(|e| e.to_string())?;
    // The test system's tree (berth with its hooks, the agent), berth and
    // the board replaced.
    let tree = work.join("system-root");
    crate::run_cmd(Command::new("cp").arg("-a").arg(a.dir.join("system-root")).arg(&tree))?;
    fs::copy(&berth, tree.join("sbin/berth")).map_err(|e| format!("{} -> system image: {e}", berth.display()))?;
    fs::write(tree.join("etc/berth/board.bin"), &board_bin).map_err(|e| format!("system image board: {e}"))?;
    let system = work.join("system.img");
    crate::artifacts::squash(&tree, &system)?;
    let v = crate::verity::append_tree(&system, None)?;
    let (size, sha) = crate::image::hash_file(&system)?;
    let verity = berth::release::board::bootloader::SystemVerity {
        size,
        root: crate::verity::hex(&v.root).as_str().try_into().map_err(|_| "verity root: not 64 hex digits".to_string())?,
        salt: crate::verity::hex(&v.salt).as_str().try_into().map_err(|_| "verity salt: not 64 hex digits".to_string())?,
    };
    // One initramfs for either slot: the board's slot_devices pick the
    // booted slot's partition.
    let initramfs = work.join("initramfs");
    fs::write(&initramfs, crate::bootdisk::slot_initramfs(&next, "B", &verity)?).map_err(|e| format!("{}: {e}", initramfs.display()))?;
    let blob = |p: &Path| crate::image::hash_file(p).map(|(size, sha)| Blob { sha256: Digest(sha), size });
    let sys = System {
        kernel: blob(&a.kernel.image)?,
        initramfs: blob(&initramfs)?,
        image: berth::release::Image { sha256: Digest(sha), size, verity_root: v.root, verity_salt: v.salt },
    };
    let key = crate::release::load_signing_key(&crate::release::dev_key_dir(root)?.join(crate::release::DEV_KEY))?;
    let mut compiled = crate::release::compile(root, manifests, &a.board, &work, Some(version))?;
    compiled.release.system = Some(sys);
    compiled.release.validate().map_err(|e| format!("release {version} with a system payload: {e}"))?;
    let signed = berth::release::sign(&compiled.release, &key).map_err(|e| e.to_string())?;
    let parts: Vec<(PathBuf, Blob)> = vec![(a.kernel.image.clone(), sys.kernel), (initramfs, sys.initramfs), (system, Blob { sha256: sys.image.sha256, size })];
    write(out, &signed, &parts)?;
    let _ = fs::remove_dir_all(&work);
    crate::say(&format!("system bundle {}: release {version}, {payload:?}, {} bytes", out.display(), fs::metadata(out).map(|m| m.len()).unwrap_or(0)));
    Ok(())
}

/// berth with the test hooks, built apart (its own target directory, so
/// the usual builds stay as they are) with [`next_version`].
fn next_berth(root: &Path, a: &Artifacts) -> Result<PathBuf, String> {
    let target = a.board.arch.rust_target();
    let dir = crate::cargo_target_dir(root).join("berth-next");
    crate::say(&format!("building berth {} for {target} (a second system for the slot cases)", next_version()));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root).env("BERTH_VERSION", next_version()).arg("build").args(["--quiet", "--release", "--package", "berth", "--bin", "berth"]);
    cmd.args(["--target", target, "--features", crate::artifacts::TEST_HOOKS, "--target-dir"]).arg(&dir);
    crate::run_cmd(&mut cmd)?;
    let out = dir.join(target).join("release").join("berth");
    if !out.is_file() {
        return Err(format!("{} was not produced", out.display()));
    }
    Ok(out)
}

/// A bundle of `signed` carrying `parts` (whole or absent at `out`).
fn write(out: &Path, signed: &[u8], parts: &[(PathBuf, Blob)]) -> Result<(), String> {
    use std::io::Write as _;
    let table: Vec<berth::release::bundle::TableEntry> =
        parts.iter().map(|(_, b)| berth::release::bundle::TableEntry { sha256: b.sha256, size: b.size }).collect();
    let header = berth::release::bundle::encode_header(signed, &table).map_err(|e| e.to_string())?;
    let tmp = out.with_extension("partial");
    let err = |e: std::io::Error| format!("{}: {e}", tmp.display());
    let mut f = std::io::BufWriter::new(fs::File::create(&tmp).map_err(err)?);
    f.write_all(&header).map_err(err)?;
    for (path, b) in parts {
        let mut src = fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let n = std::io::copy(&mut src, &mut f).map_err(err)?;
        if n != b.size {
            return Err(format!("{}: {n} bytes, hashed as {}", path.display(), b.size));
        }
    }
    f.into_inner().map_err(|e| err(e.into_error()))?.sync_all().map_err(err)?;
    fs::rename(&tmp, out).map_err(|e| format!("{}: {e}", out.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_names() {
        assert_eq!(Payload::parse("new-berth"), Ok(Payload::NewBerth));
        assert_eq!(Payload::parse("berth-exits"), Ok(Payload::BerthExits));
        assert!(Payload::parse("kernel").unwrap_err().contains("want new-berth"));
        assert!(next_version().ends_with("+next"));
    }
}
