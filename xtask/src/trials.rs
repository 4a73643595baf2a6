//! The trial scenarios' bundles (`qemu_tests::trials`), built into the
//! `update` variant's data partition under `/data/test/` next to the update
//! scenarios' ones, from the release directories
//! `qemu-tests/manifests/update/trial-*` and `add-remove` (see its README),
//! each against the installed release 1. Their ids (the SHA-256 of each bundle file,
//! which berth shows as the update's id) are computed here.

use crate::release;
use berth::release::board::Board;
use berth::release::SigningKey;
use std::path::Path;

/// The trial releases, and the add-remove scenario's
/// (`qemu_tests::releasepaths`) and the fault scenarios'
/// (`qemu_tests::faults`), by directory (and bundle) name.
pub const RELEASES: [&str; 8] =
    ["trial-fail", "trial-deadline", "trial-oneshot", "trial-window", "add-remove", "trial-unready", "trial-unhealthy", "reboot-swap"];

/// Build each trial bundle into `test_dir`; (device path, `sha256:<hex>`)
/// of each.
pub fn build(
    root: &Path,
    board: &Board,
    manifests: &Path,
    work: &Path,
    v1: &berth::release::Release,
    key: &SigningKey,
    test_dir: &Path,
) -> Result<Vec<(String, String)>, String> {
    use sha2::Digest as _;
    let mut ids = Vec::new();
    for name in RELEASES {
        let (c, signed) = release::compile_and_sign(root, &manifests.join(name), board, &work.join(name), key, None)?;
        let path = test_dir.join(format!("{name}.bundle"));
        crate::bundle::write(&path, &signed, &crate::bundle::to_carry(&c.images, Some(v1)))?;
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let id = berth::release::manifest::Digest(sha2::Sha256::digest(&bytes).into());
        ids.push((format!("/data/test/{name}.bundle"), id.to_string()));
    }
    Ok(ids)
}
