//! A manifest's `[build] files = { "/etc/app.conf" = "app.conf" }`: host
//! files, relative to the manifest's directory, copied into a `cargo_bin`
//! image at the given absolute paths (mode 0644): a config file an app
//! reads at start, for instance. A source `@test-ca` is not a file of the
//! manifest's directory but the CA certificate xtask makes for the test
//! servers ([`crate::testca::shared`], under `target/`, never committed):
//! how the fleet test images get the CA their gooseBit's certificate
//! chains to. This module must not read files outside the manifest's
//! directory, except that generated CA.
//!
//! Checked before anything is built: the target is an absolute path inside
//! the image without `..` or empty components, the source is relative to
//! the manifest's directory without `..`, a regular file (not a symlink)
//! of at most [`MAX_BYTES`], and at most [`MAX_FILES`] entries.

use std::fs;
use std::path::{Path, PathBuf};

/// The most files one manifest may add.
pub const MAX_FILES: usize = 16;
/// The largest file one may add (a config file, not a payload).
pub const MAX_BYTES: u64 = 1 << 20;
/// The source naming the test CA's certificate ([`crate::testca::TRUSTED`]).
pub const TEST_CA: &str = "@test-ca";

/// Where a source names: the generated test CA, or a file in `dir`.
fn source_path(dir: &Path, source: &str) -> Result<PathBuf, String> {
    if source == TEST_CA {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new("."));
        return crate::testca::shared(root, crate::testca::TRUSTED).map(|m| m.ca);
    }
    Ok(dir.join(source))
}

/// One file to add: where it comes from, where it goes (relative to the
/// image root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub source: PathBuf,
    pub target: PathBuf,
}

/// The `files` table of manifest `name` (its directory `dir`), checked.
pub fn parse(name: &str, dir: &Path, value: Option<&toml::Value>) -> Result<Vec<File>, String> {
    let field = format!("manifest {name}: field build.files");
    let table = match value {
        None => return Ok(Vec::new()),
        Some(toml::Value::Table(t)) => t,
        Some(_) => return Err(format!("{field}: must be a table of \"/path/in/image\" = \"file\"")),
    };
    if table.len() > MAX_FILES {
        return Err(format!("{field}: {} files, at most {MAX_FILES}", table.len()));
    }
    let mut out = Vec::new();
    for (target, source) in table {
        let rel = target.strip_prefix('/').filter(|r| !r.is_empty() && !r.contains('\0') && !r.split('/').any(|c| c == ".." || c == "." || c.is_empty()));
        let rel = rel.ok_or_else(|| format!("{field}: `{target}` must be an absolute path inside the image (no `..`, no empty part)"))?;
        let source = source.as_str().ok_or_else(|| format!("{field}: `{target}` must name a file (a string)"))?;
        let plain = !source.is_empty() && !source.starts_with('/') && !source.contains('\0') && !source.split('/').any(|c| c == "..");
        if !plain {
            return Err(format!("{field}: `{target}` = `{source}`: the file must be relative to the manifest's directory, without `..`"));
        }
        if source.starts_with('@') && source != TEST_CA {
            return Err(format!("{field}: `{target}` = `{source}`: the only generated source is `{TEST_CA}`"));
        }
        let path = source_path(dir, source).map_err(|e| format!("{field}: `{target}` = `{source}`: {e}"))?;
        let meta = fs::symlink_metadata(&path).map_err(|e| format!("{field}: `{target}` = `{source}`: {}: {e}", path.display()))?;
        if !meta.file_type().is_file() {
            return Err(format!("{field}: `{target}` = `{source}`: {} is not a regular file", path.display()));
        }
        if meta.len() > MAX_BYTES {
            return Err(format!("{field}: `{target}` = `{source}`: {} bytes, at most {MAX_BYTES}", meta.len()));
        }
        out.push(File { source: path, target: PathBuf::from(rel) });
    }
    Ok(out)
}

/// Copies the files into the image tree at `stage`.
pub fn install(stage: &Path, files: &[File]) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    for f in files {
        let to = stage.join(&f.target);
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        fs::copy(&f.source, &to).map_err(|e| format!("{} to {}: {e}", f.source.display(), to.display()))?;
        fs::set_permissions(&to, fs::Permissions::from_mode(0o644)).map_err(|e| format!("{}: {e}", to.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("berth-buildfiles-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(d.join("sub")).unwrap();
        fs::write(d.join("a.conf"), "x = 1\n").unwrap();
        fs::write(d.join("big"), vec![0u8; (MAX_BYTES + 1) as usize]).unwrap();
        std::os::unix::fs::symlink("a.conf", d.join("link")).unwrap();
        d
    }

    fn parse_text(d: &Path, text: &str) -> Result<Vec<File>, String> {
        let t: toml::Table = format!("files = {text}").parse().unwrap();
        parse("app", d, t.get("files"))
    }

    #[test]
    fn good_and_bad_entries() {
        let d = dir();
        let got = parse_text(&d, r#"{ "/etc/app.conf" = "a.conf" }"#).unwrap();
        assert_eq!(got, vec![File { source: d.join("a.conf"), target: PathBuf::from("etc/app.conf") }]);
        for (text, want) in [
            (r#"{ "etc/app.conf" = "a.conf" }"#, "absolute path inside the image"),
            (r#"{ "/etc/../x" = "a.conf" }"#, "absolute path inside the image"),
            (r#"{ "/" = "a.conf" }"#, "absolute path inside the image"),
            (r#"{ "/x" = "../a.conf" }"#, "without `..`"),
            (r#"{ "/x" = "/etc/passwd" }"#, "relative to the manifest's directory"),
            (r#"{ "/x" = "sub" }"#, "not a regular file"),
            (r#"{ "/x" = "link" }"#, "not a regular file"),
            (r#"{ "/x" = "missing" }"#, "missing"),
            (r#"{ "/x" = "big" }"#, "at most"),
            (r#"{ "/x" = 3 }"#, "must name a file"),
            (r#"{ "/x" = "@test-key" }"#, "the only generated source is `@test-ca`"),
            (r#""a.conf""#, "must be a table"),
        ] {
            let e = parse_text(&d, text).unwrap_err();
            assert!(e.contains(want) && e.contains("build.files"), "{text}: {e}");
        }
        let stage = d.join("stage");
        install(&stage, &got).unwrap();
        assert_eq!(fs::read_to_string(stage.join("etc/app.conf")).unwrap(), "x = 1\n");
        let _ = fs::remove_dir_all(&d);
    }

    /// `@test-ca` is the shared test CA's certificate.
    #[test]
    fn the_test_ca_source() {
        let got = parse_text(Path::new("/nonexistent"), r#"{ "/etc/ca.pem" = "@test-ca" }"#).unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let want = crate::testca::shared(root, crate::testca::TRUSTED).unwrap().ca;
        assert_eq!(got, vec![File { source: want.clone(), target: PathBuf::from("etc/ca.pem") }]);
        assert!(fs::read_to_string(&want).unwrap().starts_with("-----BEGIN CERTIFICATE-----"));
    }
}
