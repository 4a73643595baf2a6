//! The host-side round trips of `cargo xtask test` (cases
//! `<arch>/release-round-trip` and `<arch>/inspect-round-trip`): the demo
//! release and its images as the device and `berth verify`/`berth inspect`
//! see them, each checked against a reading that does not go through the
//! code under test (the TOML sources, `sha256sum`, `unsquashfs`,
//! `veritysetup`).

use crate::artifacts::Artifacts;
use crate::bundle;
use crate::tomlcheck::{self, Unsaid};
use berth::release::manifest::Digest;
use berth::release::Release;
use sha2::{Digest as _, Sha256};
use std::path::Path;
use std::process::Command;
use toml::Value as Toml;

mod inspect;
pub use inspect::inspect;

/// What a manifest's TOML need not say: its image digest (made from
/// `[build]`), and the working directory, `/` unless it says otherwise.
const MANIFEST_UNSAID: Unsaid = Unsaid { filled_in: &["image"], defaults: &[("entry.workdir", "\"/\"")] };

/// The demo release decodes on the device side to what `manifests/` says,
/// read independently (see [`decoded_matches_sources`]); `berth verify`
/// accepts it, and a tampered copy is refused by `berth verify` with the very
/// text the device logs.
pub fn release(root: &Path, a: &Artifacts, host_berth: &Path) -> Result<(), String> {
    let keys = berth::release::TrustedKeys::load_dir(&a.key_dir).map_err(|e| e.to_string())?;
    let v = berth::release::decode_release(&a.signed_release, &keys, &a.board.name, None).map_err(|e| e.to_string())?;
    decoded_matches_sources(root, a, &v.release)?;
    verify_accepts_and_refuses(a, host_berth, &keys, &v.release)?;
    bundle(a, host_berth, &keys)
}

/// The decoded release against its sources, each read as plain TOML:
/// `release.toml` (every field it sets), the board file's name, one
/// container per manifest file with every field its TOML sets and nothing
/// it leaves out, and each container's image digest the SHA-256 and size of
/// an image file as built.
fn decoded_matches_sources(root: &Path, a: &Artifacts, r: &Release) -> Result<(), String> {
    let dir = root.join("manifests");
    let read = |path: &Path| -> Result<toml::Table, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        text.parse().map_err(|e| format!("{}: {e}", path.display()))
    };
    let mut wrong = Vec::new();
    let json = serde_json::to_value(r).map_err(|e| e.to_string())?;
    let release_unsaid = Unsaid { filled_in: &["board", "containers", "images", "trial_deadline_s"], defaults: &[] };
    let release_toml = Toml::Table(read(&dir.join("release.toml"))?);
    for d in tomlcheck::differences(&release_toml, &json, &release_unsaid) {
        wrong.push(format!("release.toml: {d}"));
    }
    let board = read(&crate::artifacts::board_path(root, a.board.arch))?;
    if board.get("name").and_then(|n| n.as_str()) != Some(r.board.as_str()) {
        wrong.push(format!("board: decoded {:?}, the board file says {:?}", r.board.as_str(), board.get("name")));
    }
    let mut files = manifest_files(&dir)?;
    for m in r.containers.iter() {
        let stem = m.name.as_str();
        let Some(i) = files.iter().position(|f| f == stem) else {
            wrong.push(format!("container {stem}: no manifests/{stem}.toml"));
            continue;
        };
        files.remove(i);
        let mut table = read(&dir.join(format!("{stem}.toml")))?;
        table.remove("build");
        let json = serde_json::to_value(m).map_err(|e| e.to_string())?;
        for d in tomlcheck::differences(&Toml::Table(table), &json, &MANIFEST_UNSAID) {
            wrong.push(format!("{stem}.toml: {d}"));
        }
        if let Err(e) = image_file_matches(a, r, &m.image) {
            wrong.push(format!("{stem}.toml: image: {e}"));
        }
    }
    for f in files {
        wrong.push(format!("manifests/{f}.toml: no such container decoded"));
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!("the decoded release differs from manifests/:\n{}", wrong.join("\n")))
    }
}

/// Stems of the manifest files of `dir` (all `*.toml` but `release.toml`).
fn manifest_files(dir: &Path) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let path = e.map_err(|e| e.to_string())?.path();
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        if path.extension().is_some_and(|x| x == "toml") && stem != "release" {
            out.push(stem.to_string());
        }
    }
    Ok(out)
}

/// `digest` is listed by the release, with the size and SHA-256 of one of
/// the image files as built (hashed here, not taken from the builder).
fn image_file_matches(a: &Artifacts, r: &Release, digest: &Digest) -> Result<(), String> {
    let entry = r.images.iter().find(|i| i.sha256 == *digest).ok_or_else(|| format!("{digest} is not among the release's images"))?;
    for img in &a.images {
        let bytes = std::fs::read(&img.path).map_err(|e| format!("{}: {e}", img.path.display()))?;
        let sha: [u8; 32] = Sha256::digest(&bytes).into();
        if sha == digest.0 {
            return if bytes.len() as u64 == entry.size {
                Ok(())
            } else {
                Err(format!("{}: {} bytes, the release says {}", img.path.display(), bytes.len(), entry.size))
            };
        }
    }
    Err(format!("{digest}: no image file built has that SHA-256"))
}

/// `berth verify` accepts the demo release and refuses a tampered copy
/// with the device's text.
fn verify_accepts_and_refuses(a: &Artifacts, host_berth: &Path, keys: &berth::release::TrustedKeys, decoded: &Release) -> Result<(), String> {
    let good = a.dir.join("release.bin");
    let out = Command::new(host_berth).arg("verify").arg("--keys").arg(&a.key_dir).arg(&good).output().map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !stdout.lines().any(|l| l == format!("version {}", decoded.version)) {
        return Err(format!("berth verify refused the demo release ({}): {stdout} {}", out.status, String::from_utf8_lossy(&out.stderr)));
    }
    let mut bad = a.signed_release.clone();
    if let Some(b) = bad.get_mut(berth::release::HEADER_LEN + 4) {
        *b ^= 1;
    }
    let bad_path = a.dir.join("release-tampered.bin");
    std::fs::write(&bad_path, &bad).map_err(|e| e.to_string())?;
    let device_text = match berth::release::decode_release(&bad, keys, &a.board.name, None) {
        Err(e) => e.to_string(),
        Ok(_) => return Err("a tampered release decoded".into()),
    };
    let out = Command::new(host_berth).arg("verify").arg("--keys").arg(&a.key_dir).arg(&bad_path).output().map_err(|e| e.to_string())?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() || !stderr.contains(&device_text) {
        return Err(format!("berth verify on a tampered release: {} {stderr:?}, want the device's text {device_text:?}", out.status));
    }
    Ok(())
}

/// A bundle of the demo release passes `berth verify` with every image
/// listed; a changed image byte and an older version are refused with the
/// texts the device's staging gives (for the changed byte: the very
/// `StageError` text of the device's store, as `update.refused` logs it).
fn bundle(a: &Artifacts, host_berth: &Path, keys: &berth::release::TrustedKeys) -> Result<(), String> {
    let good = a.dir.join("update.bundle");
    bundle::write(&good, &a.signed_release, &a.images.iter().collect::<Vec<_>>())?;
    let verify = |file: &Path, extra: &[&str]| {
        Command::new(host_berth).arg("verify").arg("--keys").arg(&a.key_dir).args(extra).arg(file).output().map_err(|e| e.to_string())
    };
    let out = verify(&good, &["--board", &a.board.name])?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let carried = stdout.lines().filter(|l| l.starts_with("carries image ")).count();
    if !out.status.success() || !stdout.starts_with("bundle ") || carried != a.images.len() {
        return Err(format!("berth verify refused the demo bundle ({}): {stdout} {}", out.status, String::from_utf8_lossy(&out.stderr)));
    }
    let mut bytes = std::fs::read(&good).map_err(|e| e.to_string())?;
    let at = bytes.len().saturating_sub(5000);
    if let Some(b) = bytes.get_mut(at) {
        *b ^= 1;
    }
    let bad = a.dir.join("update-tampered.bundle");
    std::fs::write(&bad, &bytes).map_err(|e| e.to_string())?;
    let version = a.release.version.to_string();
    for (file, extra) in [(&bad, vec![]), (&good, vec!["--stored-version", version.as_str()])] {
        let f = std::fs::File::open(file).map_err(|e| e.to_string())?;
        let installed = extra.get(1).and_then(|v| v.parse().ok());
        let device_text = match berth::release::bundle::check_file(&f, keys, Some(&a.board.name), installed) {
            Err(e) => e.to_string(),
            Ok(_) => return Err(format!("{} was accepted", file.display())),
        };
        if installed.is_none() {
            // What the device logs as `update.refused reason=`: its store's
            // staging refusal (`StageError`), on a store without a release.
            let store = a.dir.join("round-trip-store");
            let _ = std::fs::remove_dir_all(&store);
            std::fs::create_dir_all(&store).map_err(|e| e.to_string())?;
            let (mut st, _) = berth::release::store::Store::open(&store).map_err(|e| e.to_string())?;
            let mut bundle = std::fs::File::open(file).map_err(|e| e.to_string())?;
            let staged = st.stage(&mut bundle, keys, &a.board.name).map(|_| ()).map_err(|e| e.to_string());
            let _ = std::fs::remove_dir_all(&store);
            if staged != Err(device_text.clone()) {
                return Err(format!("the device's staging of {} gives {staged:?}, berth verify's check {device_text:?}", file.display()));
            }
        }
        let out = verify(file, &extra)?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() || !stderr.contains(&device_text) {
            return Err(format!("berth verify on {}: {} {stderr:?}, want the device's text {device_text:?}", file.display(), out.status));
        }
    }
    Ok(())
}
