//! The update scenarios' bundles, built into the `update` variant's data
//! partition under `/data/test/` (see `qemu-tests/manifests/update/`):
//!
//! - `v2.bundle`: release 2, `sensor` changed (its new image carried);
//! - `v3-bad.bundle`: release 3, `meter` crash-loops (its new image
//!   carried, which the rollback unmaps);
//! - `refused/*.bundle`: each refused by staging for one reason, with the
//!   text the device gives, computed here with the device's own code;
//! - `trial-*.bundle`: the trial scenarios' ([`crate::trials`]).
//!
//! It also models the update to release 2 under power cuts with the
//! device's store code (`crate::cutmodel`): its store writes (stage, trial,
//! commit, gc), at each of which the power-cut scenarios cut, and what the
//! boot after each cut must find.

use crate::release::{self, Compiled};
use berth::board::Board;
use berth::manifest::Digest;
use berth::release::bundle::{check_file, encode_header, TableEntry};
use berth::release::store::StageError;
use berth::release::{SigningKey, TrustedKeys};
use qemu_tests::updates::{Known, Refusal, UpdateInfo};
use std::fs;
use std::path::Path;

/// Where the bundles are on the device.
const DEVICE_DIR: &str = "/data/test";
/// What the too-big bundle announces: more than the data partition, sized
/// for the variant's own bundles ([`crate::artifacts::data_need_mib`]), holds.
const TOO_BIG: u64 = 1 << 30;

/// The release installed on the data partition, and the keys.
pub struct Installed<'a> {
    pub release: &'a Compiled,
    pub signed: &'a [u8],
    /// The development key, which signs the test releases.
    pub key: &'a SigningKey,
    /// The public keys the device trusts.
    pub key_dir: &'a Path,
}

/// Build the bundles for a board into `test_dir` (the data partition's
/// `test/`), from the release directories in `manifests`, against the
/// installed release; `work` holds the build's scratch files.
pub fn build(root: &Path, board: &Board, manifests: &Path, work: &Path, installed: &Installed, test_dir: &Path) -> Result<UpdateInfo, String> {
    let Installed { release: v1, signed: v1_signed, key, key_dir } = *installed;
    let keys = TrustedKeys::load_dir(key_dir).map_err(|e| e.to_string())?;
    let refused_dir = test_dir.join("refused");
    fs::create_dir_all(&refused_dir).map_err(|e| format!("{}: {e}", refused_dir.display()))?;
    let (v2, v2_signed) = release::compile_and_sign(root, &manifests.join("v2"), board, &work.join("v2"), key, None)?;
    let v2_carry = crate::bundle::to_carry(&v2.images, Some(&v1.release));
    let v2_path = test_dir.join("v2.bundle");
    crate::bundle::write(&v2_path, &v2_signed, &v2_carry)?;
    let (v3, v3_signed) = release::compile_and_sign(root, &manifests.join("v3-bad"), board, &work.join("v3-bad"), key, None)?;
    crate::bundle::write(&test_dir.join("v3-bad.bundle"), &v3_signed, &crate::bundle::to_carry(&v3.images, Some(&v1.release)))?;

    let new_image = v2_carry.first().ok_or("release 2 adds no image")?;
    let new_digest = Digest(new_image.sha256);
    let mut refused = Vec::new();
    let mut add = |name: &str, bytes: Vec<u8>, reason: Option<String>| -> Result<(), String> {
        let path = refused_dir.join(format!("{name}.bundle"));
        fs::write(&path, &bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        // The device's text, from the same checks staging makes.
        let reason = match reason {
            Some(r) => r,
            None => match check_file(&fs::File::open(&path).map_err(|e| e.to_string())?, &keys, Some(&board.name), Some(v1.release.version)) {
                Err(e) => e.to_string(),
                Ok(_) => return Err(format!("{}: the bundle meant to be refused passes", path.display())),
            },
        };
        refused.push(Refusal { bundle: format!("{DEVICE_DIR}/refused/{name}.bundle"), reason, exact: true });
        Ok(())
    };
    let v2_bytes = fs::read(&v2_path).map_err(|e| format!("{}: {e}", v2_path.display()))?;
    let header_only = |signed: &[u8]| encode_header(signed, &[]).map_err(|e| e.to_string());

    // A byte of the carried image changed: found while it is hashed into staging.
    let mut t = v2_bytes.clone();
    let at = t.len().saturating_sub(usize::try_from(new_image.size).unwrap_or(0) / 2);
    *t.get_mut(at).ok_or("v2 bundle too short")? ^= 0x01;
    add("tampered-image", t, None)?;
    // A byte of the signed release payload changed: the signature fails.
    let mut t = v2_bytes;
    *t.get_mut(berth::release::bundle::HEADER_LEN + berth::release::HEADER_LEN + 4).ok_or("v2 bundle too short")? ^= 0x01;
    add("tampered-release", t, None)?;
    add("unsigned", header_only(&[])?, None)?;
    let stranger = berth::release::signing_key_from_seed(&[0x5a; 32]);
    add("untrusted-key", header_only(&berth::release::sign(&v2.release, &stranger).map_err(|e| e.to_string())?)?, None)?;
    let other = berth::release::Release { board: "qemu-other-board".try_into().map_err(|_| "board name")?, ..v2.release.clone() };
    add("other-board", header_only(&berth::release::sign(&other, key).map_err(|e| e.to_string())?)?, None)?;
    add("not-newer", header_only(v1_signed)?, None)?;
    add("missing-image", header_only(&v2_signed)?, Some(StageError::MissingImage(new_digest).to_string()))?;
    // An honest release naming an image bigger than the partition: refused
    // on the header, before any byte of it is read (so the file holds none).
    let mut big = v2.release.clone();
    for img in big.images.iter_mut().filter(|i| i.sha256 == new_digest) {
        img.size = TOO_BIG;
    }
    let big_signed = berth::release::sign(&big, key).map_err(|e| e.to_string())?;
    let need = big_signed.len() as u64 + TOO_BIG;
    let bytes = encode_header(&big_signed, &[TableEntry { sha256: new_digest, size: TOO_BIG }]).map_err(|e| e.to_string())?;
    let text = StageError::NoSpace { need, free: 0 }.to_string();
    let prefix = text.split(", ").next().unwrap_or_default().to_string();
    add("too-big", bytes, Some(prefix))?;
    if let Some(r) = refused.iter_mut().find(|r| r.bundle.ends_with("/too-big.bundle")) {
        r.exact = false;
    }

    refused.sort_by(|a, b| a.bundle.cmp(&b.bundle));
    let start = crate::cutmodel::Start { v1, v1_signed, keys: &keys, board: &board.name };
    let plan = crate::cutmodel::plan(work, &v2_path, &start).map_err(|e| format!("the power-cut model: {e}"))?;
    let known = vec![known(v1, v1_signed), known(&v2, &v2_signed)];
    // The trial scenarios' bundles, where the update set has them (the
    // volumes set has none).
    let ids = if manifests.join(crate::trials::RELEASES[0]).is_dir() {
        crate::trials::build(root, board, manifests, work, &v1.release, key, test_dir)?
    } else {
        Vec::new()
    };
    Ok(UpdateInfo { writes: plan.writes(), refused, known, v2_bundle: v2_path, ids, plan })
}

/// A release as the files it puts in the store.
fn known(c: &Compiled, signed: &[u8]) -> Known {
    use sha2::Digest as _;
    let digest = Digest(sha2::Sha256::digest(signed).into());
    Known {
        version: c.release.version,
        release: berth::release::store::release_name(&digest),
        images: c.images.iter().map(|i| (berth::release::store::image_name(&Digest(i.sha256)), i.size)).collect(),
    }
}
