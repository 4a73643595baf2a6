//! The update scenarios' bundles, built into the `update` variant's data
//! partition under `/data/test/` (see `qemu-tests/manifests/update/`):
//!
//! - `v2.bundle`: release 2, `sensor` changed (its new image carried);
//! - `v3-bad.bundle`: release 3, `meter` crash-loops (its new image
//!   carried, which the rollback unmaps);
//! - `refused/*.bundle`: each refused by staging for one reason, with the
//!   text the device must give, written out here (its key ids, digests and
//!   versions filled in; [`refusal_texts`]), not taken from the device's
//!   code; the device's own checks only confirm each bundle is refused;
//! - `trial-*.bundle`: the trial scenarios' ([`crate::trials`]).
//!
//! It also models the update to release 2 under power cuts with the
//! device's store code (`crate::cutmodel`): its store writes (stage, trial,
//! commit, gc), at each of which the power-cut scenarios cut, and what the
//! boot after each cut must find. Those writes must be the ones the store
//! format calls for (`crate::writeoracle`, which runs no store code).

use crate::release::{self, Compiled};
use berth::release::board::Board;
use berth::release::bundle::{check_file, encode_header, TableEntry};
use berth::release::manifest::Digest;
use berth::release::{SigningKey, TrustedKeys};
use qemu_tests::updates::{Known, Refusal, UpdateInfo};
use sha2::Digest as _;
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
    let stranger = berth::release::signing_key_from_seed(&[0x5a; 32]);
    let texts = refusal_texts(&Facts {
        image: &hex(&new_digest.0),
        key_id: &hex(&sha2::Sha256::digest(key.verifying_key().as_bytes())[..8]),
        stranger_id: &hex(&sha2::Sha256::digest(stranger.verifying_key().as_bytes())[..8]),
        installed: v1.release.version,
        board: &board.name,
    });
    let mut add = |name: &str, bytes: Vec<u8>, checked: bool| -> Result<(), String> {
        let path = refused_dir.join(format!("{name}.bundle"));
        fs::write(&path, &bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        // Only a sanity check that the bundle is bad at all: the text the
        // device must give is written out in `refusal_texts`.
        if checked && check_file(&fs::File::open(&path).map_err(|e| e.to_string())?, &keys, Some(&board.name), Some(v1.release.version)).is_ok() {
            return Err(format!("{}: the bundle meant to be refused passes", path.display()));
        }
        let (reason, exact) =
            texts.iter().find(|(n, _, _)| *n == name).map(|(_, r, e)| (r.clone(), *e)).ok_or_else(|| format!("no refusal text for {name}"))?;
        refused.push(Refusal { bundle: format!("{DEVICE_DIR}/refused/{name}.bundle"), reason, exact });
        Ok(())
    };
    let v2_bytes = fs::read(&v2_path).map_err(|e| format!("{}: {e}", v2_path.display()))?;
    let header_only = |signed: &[u8]| encode_header(signed, &[]).map_err(|e| e.to_string());

    // A byte of the carried image changed: found while it is hashed into staging.
    let mut t = v2_bytes.clone();
    let at = t.len().saturating_sub(usize::try_from(new_image.size).unwrap_or(0) / 2);
    *t.get_mut(at).ok_or("v2 bundle too short")? ^= 0x01;
    add("tampered-image", t, true)?;
    // A byte of the signed release payload changed: the signature fails.
    let mut t = v2_bytes;
    *t.get_mut(berth::release::bundle::HEADER_LEN + berth::release::HEADER_LEN + 4).ok_or("v2 bundle too short")? ^= 0x01;
    add("tampered-release", t, true)?;
    add("unsigned", header_only(&[])?, true)?;
    add("untrusted-key", header_only(&berth::release::sign(&v2.release, &stranger).map_err(|e| e.to_string())?)?, true)?;
    let other = berth::release::Release { board: "qemu-other-board".try_into().map_err(|_| "board name")?, ..v2.release.clone() };
    add("other-board", header_only(&berth::release::sign(&other, key).map_err(|e| e.to_string())?)?, true)?;
    add("not-newer", header_only(v1_signed)?, true)?;
    // Refused only by staging (the image is neither carried nor stored).
    add("missing-image", header_only(&v2_signed)?, false)?;
    // An honest release naming an image bigger than the partition: refused
    // on the header, before any byte of it is read (so the file holds none).
    let mut big = v2.release.clone();
    for img in big.images.iter_mut().filter(|i| i.sha256 == new_digest) {
        img.size = TOO_BIG;
    }
    let big_signed = berth::release::sign(&big, key).map_err(|e| e.to_string())?;
    let need = big_signed.len() as u64 + TOO_BIG;
    let bytes = encode_header(&big_signed, &[TableEntry { sha256: new_digest, size: TOO_BIG }]).map_err(|e| e.to_string())?;
    refused.push(Refusal {
        bundle: format!("{DEVICE_DIR}/refused/too-big.bundle"),
        // The free space varies: the text up to it.
        reason: format!("not enough space on the data partition: the update needs {need} bytes and {RESERVE} stay reserved for state and logs, "),
        exact: false,
    });
    fs::write(refused_dir.join("too-big.bundle"), bytes).map_err(|e| e.to_string())?;

    refused.sort_by(|a, b| a.bundle.cmp(&b.bundle));
    let start = crate::cutmodel::Start { v1, v1_signed, keys: &keys, board: &board.name };
    let plan = crate::cutmodel::plan(work, &v2_path, &start).map_err(|e| format!("the power-cut model: {e}"))?;
    // The model runs the device's store code: checked here against the
    // writes the store format calls for, derived from the releases alone.
    let format_writes = crate::writeoracle::expected(&(&v1.release).into(), &(&v2.release).into());
    crate::writeoracle::check_model(&format_writes, &plan.kinds, &plan.op_ends).map_err(|e| format!("the update to release 2: {e}"))?;
    let known = vec![known(v1, v1_signed), known(&v2, &v2_signed)];
    // The trial scenarios' bundles, where the update set has them (the
    // volumes set has none).
    let ids = if manifests.join(crate::trials::RELEASES[0]).is_dir() {
        crate::trials::build(root, board, manifests, work, &v1.release, key, test_dir)?
    } else {
        Vec::new()
    };
    Ok(UpdateInfo { writes: plan.writes(), format_writes: crate::writeoracle::labels(&format_writes), refused, known, v2_bundle: v2_path, ids, plan })
}

/// The staging reserve the device keeps (`berth::release::room::RESERVE`,
/// written out: 8 MiB).
const RESERVE: u64 = 8 << 20;

/// What the refusal texts name.
struct Facts<'a> {
    /// The image release 2 adds, as 64 hex digits.
    image: &'a str,
    /// The development key's id and the untrusted key's (16 hex digits: the
    /// first 8 bytes of the SHA-256 of the public key).
    key_id: &'a str,
    stranger_id: &'a str,
    installed: u64,
    board: &'a str,
}

/// The text the device must give for each refused bundle: (name, text,
/// exact). Written out by hand, so that a change to the device's wording
/// or checks shows as a difference.
fn refusal_texts(f: &Facts) -> Vec<(&'static str, String, bool)> {
    let v = f.installed;
    vec![
        ("tampered-image", format!("image sha256:{} does not match its hash in the release (changed after signing)", f.image), true),
        ("tampered-release", format!("release signature does not verify with key {}", f.key_id), true),
        ("unsigned", "bundle carries no signed release".to_string(), true),
        ("untrusted-key", format!("release is signed by key {}, which this device does not trust", f.stranger_id), true),
        ("other-board", format!("release is for board qemu-other-board, this device is {}", f.board), true),
        ("not-newer", format!("release version {v} is not newer than the installed version {v} and no downgrade marker allows it"), true),
        ("missing-image", format!("image sha256:{} is neither in the bundle nor on the device", f.image), true),
    ]
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
