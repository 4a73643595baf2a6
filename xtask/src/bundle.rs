//! Update bundles on the host (`cargo xtask bundle`): the signed release of a
//! manifest directory and the images a device needs for it, in berth's bundle
//! format (see `berth::release::bundle`). With `--only-new-against` it
//! carries only the images the release running on the device lacks.

use crate::image::Image;
use berth::release::bundle::{encode_header, TableEntry};
use berth::release::manifest::Digest;
use berth::release::Release;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::Path;

/// The images of `images` that a device running `against` lacks (all of
/// them when there is no such release).
pub fn to_carry<'a>(images: &'a [Image], against: Option<&Release>) -> Vec<&'a Image> {
    images.iter().filter(|i| against.is_none_or(|r| r.image(&Digest(i.sha256)).is_none())).collect()
}

/// The release in a signed release file, for `--only-new-against` (its
/// signature is the device's business; only its image list is used).
pub fn read_release(path: &Path) -> Result<Release, String> {
    let bytes = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    berth::release::peek(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// Write a bundle: header, signed release, table, then each image's bytes.
/// Written under a temporary name and renamed, so `out` is whole or absent.
/// Returns its size.
pub fn write(out: &Path, signed: &[u8], images: &[&Image]) -> Result<u64, String> {
    let table: Vec<TableEntry> = images.iter().map(|i| TableEntry { sha256: Digest(i.sha256), size: i.size }).collect();
    let header = encode_header(signed, &table).map_err(|e| e.to_string())?;
    let tmp = out.with_extension("partial");
    let err = |e: std::io::Error| format!("{}: {e}", tmp.display());
    let mut f = BufWriter::new(fs::File::create(&tmp).map_err(err)?);
    f.write_all(&header).map_err(err)?;
    let mut total = header.len() as u64;
    for img in images {
        let mut src = fs::File::open(&img.path).map_err(|e| format!("{}: {e}", img.path.display()))?;
        let n = std::io::copy(&mut src, &mut f).map_err(err)?;
        if n != img.size {
            return Err(format!("{}: {n} bytes, built as {}", img.path.display(), img.size));
        }
        total += n;
    }
    f.into_inner().map_err(|e| err(e.into_error()))?.sync_all().map_err(err)?;
    fs::rename(&tmp, out).map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth::release::bundle::{check_file, BundleError};
    use berth::release::store::{StageError, Store};
    use berth::release::{signing_key_from_seed, TrustedKeys};

    /// An image as xtask builds them (data + verity tree), without mksquashfs.
    fn image(dir: &Path, name: &str, seed: u8, blocks: usize) -> Image {
        let path = dir.join(name);
        let data: Vec<u8> = (0..blocks * 4096).map(|i| (i % 251) as u8 ^ seed).collect();
        fs::write(&path, &data).unwrap();
        let verity = crate::verity::append_tree(&path, None).unwrap();
        let bytes = fs::read(&path).unwrap();
        use sha2::Digest as _;
        Image { path, size: bytes.len() as u64, sha256: sha2::Sha256::digest(&bytes).into(), verity }
    }

    fn release(version: u64, board: &str, images: &[&Image]) -> Release {
        let mut containers = Vec::new();
        for (n, i) in images.iter().enumerate() {
            let text = format!("name = \"c{n}\"\nversion = \"1\"\nimage = \"sha256:{}\"\n[entry]\nargv = [\"/c\"]\n", crate::verity::hex(&i.sha256));
            containers.push(berth::release::manifest::Manifest::from_toml(&format!("c{n}"), &text).unwrap());
        }
        let imgs: Vec<berth::release::Image> = images
            .iter()
            .map(|i| berth::release::Image { sha256: Digest(i.sha256), size: i.size, verity_root: i.verity.root, verity_salt: i.verity.salt })
            .collect();
        Release {
            version,
            board: board.try_into().unwrap(),
            downgrade: None,
            containers: containers.try_into().unwrap(),
            images: imgs.try_into().unwrap(),
            commit_window_s: 120,
            reboot: false,
            trial_deadline_s: 720,
            system: None,
        }
    }

    /// Bundles written by xtask (with xtask's verity trees) are checked and
    /// staged by the device code; the refusals carry the device's texts.
    #[test]
    fn xtask_bundles_verify_and_stage() {
        let dir = std::env::temp_dir().join(format!("berth-xtask-bundle-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let key = signing_key_from_seed(&[3; 32]);
        let mut keys = TrustedKeys::new();
        keys.add(key.verifying_key()).unwrap();
        let (a, b, c) = (image(&dir, "a.img", 1, 3), image(&dir, "b.img", 2, 130), image(&dir, "c.img", 3, 1));
        let v1 = release(1, "board", &[&a, &b]);
        let v2 = release(2, "board", &[&a, &c]);
        let s1 = berth::release::sign(&v1, &key).unwrap();
        let s2 = berth::release::sign(&v2, &key).unwrap();
        let full1 = dir.join("v1.bundle");
        write(&full1, &s1, &to_carry(&[a.clone(), b.clone()], None)).unwrap();
        let built2 = [a.clone(), c.clone()];
        let carried = to_carry(&built2, Some(&v1));
        assert_eq!(carried.len(), 1);
        let delta2 = dir.join("v2.bundle");
        write(&delta2, &s2, &carried).unwrap();

        let checked = check_file(&fs::File::open(&delta2).unwrap(), &keys, Some("board"), None).unwrap();
        assert_eq!(checked.verified.release, v2);
        assert_eq!(checked.not_carried().count(), 1);
        let other = check_file(&fs::File::open(&delta2).unwrap(), &keys, Some("other"), None).unwrap_err();
        assert_eq!(other.to_string(), "release is for board board, this device is other");

        // Into an empty store, then the delta on top.
        let store = dir.join("store");
        let (mut st, _) = Store::open(&store).unwrap();
        let missing = st.stage(&mut fs::File::open(&delta2).unwrap(), &keys, "board").unwrap_err();
        assert!(matches!(missing, StageError::MissingImage(d) if d.0 == a.sha256), "{missing}");
        let staged = st.stage(&mut fs::File::open(&full1).unwrap(), &keys, "board").unwrap();
        st.begin_trial(&staged, false).unwrap();
        st.commit().unwrap();
        let staged = st.stage(&mut fs::File::open(&delta2).unwrap(), &keys, "board").unwrap();
        assert_eq!((staged.entry.version, staged.images_added), (2, 1));
        st.begin_trial(&staged, false).unwrap();
        st.commit().unwrap();
        let older = st.stage(&mut fs::File::open(&full1).unwrap(), &keys, "board").unwrap_err();
        assert!(matches!(older, StageError::Bundle(BundleError::TooOld { release: 1, installed: 2 })));
        let mut tampered = fs::read(&delta2).unwrap();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        let e = check_file(
            &{
                fs::write(dir.join("t.bundle"), &tampered).unwrap();
                fs::File::open(dir.join("t.bundle")).unwrap()
            },
            &keys,
            None,
            None,
        );
        assert!(matches!(e, Err(BundleError::ImageMismatch(d)) if d.0 == c.sha256));
        fs::remove_dir_all(&dir).unwrap();
    }
}
