//! The crates the notices must list, read from cargo's own resolution
//! (`cargo tree`), without cargo-about: every package the workspace's
//! members reach through normal and build dependencies (not
//! dev-dependencies) on any of the targets `about.toml` names. The check
//! in `cargo xtask test` compares that set with the `- NAME VERSION` lines
//! of the checked-in notices, so a dependency added, removed or bumped
//! without regenerated notices fails, and CI needs no cargo-about build.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// The targets of `about.toml` (kept equal by a unit test).
pub const TARGETS: [&str; 4] = ["aarch64-unknown-linux-musl", "armv7-unknown-linux-gnueabihf", "x86_64-unknown-linux-musl", "x86_64-unknown-linux-gnu"];

/// `name version` of every crate built into a binary (the workspace's own
/// included, as cargo-about lists them): `cargo tree` of the normal and
/// build dependencies for each target, with the features cargo resolves
/// for that target's build.
pub fn needed(root: &Path) -> Result<BTreeSet<String>, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut all = BTreeSet::new();
    for target in TARGETS {
        let out = Command::new(&cargo)
            .current_dir(root)
            .args(["tree", "--workspace", "--all-features", "--locked", "-e", "normal,build", "--prefix", "none", "--format", "{p}", "--target", target])
            .output()
            .map_err(|e| format!("cargo tree: {e}"))?;
        if !out.status.success() {
            return Err(format!("cargo tree --target {target}: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        all.extend(tree_packages(&String::from_utf8_lossy(&out.stdout)));
    }
    Ok(all)
}

/// The packages of `cargo tree --prefix none --format {p}` output: each
/// line `NAME vVERSION` and maybe `(PATH)`, `(proc-macro)` or `(*)`.
pub fn tree_packages(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let name = w.next()?;
            let version = w.next()?.strip_prefix('v')?;
            Some(format!("{name} {version}"))
        })
        .collect()
}

/// `name version` of every crate the notices list (`- NAME VERSION` or
/// `- NAME VERSION (repository)` lines).
pub fn listed(notices: &str) -> BTreeSet<String> {
    notices
        .lines()
        .filter_map(|l| l.strip_prefix("- "))
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let (name, version) = (w.next()?, w.next()?);
            let crate_like = name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            let semver = version.split('.').count() >= 3 && version.bytes().next().is_some_and(|b| b.is_ascii_digit());
            (crate_like && semver).then(|| format!("{name} {version}"))
        })
        .collect()
}

/// What differs: crates built but not listed, crates listed but not built.
pub fn compare(needed: &BTreeSet<String>, listed: &BTreeSet<String>) -> Result<(), String> {
    let missing: Vec<&String> = needed.difference(listed).collect();
    let extra: Vec<&String> = listed.difference(needed).collect();
    if missing.is_empty() && extra.is_empty() {
        return Ok(());
    }
    Err(format!(
        "THIRD-PARTY-NOTICES.md is stale: built but not listed {missing:?}, listed but no longer built {extra:?}; run `cargo xtask notices` and commit the result"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_lines_give_name_and_version() {
        let text = "berth v0.1.0 (/src/supervisor)\nlibc v0.2.177\nserde_derive v1.0.228 (proc-macro)\nlibc v0.2.177 (*)\n\n";
        let got = tree_packages(text);
        assert_eq!(got.into_iter().collect::<Vec<_>>(), ["berth 0.1.0", "libc 0.2.177", "serde_derive 1.0.228"]);
    }

    #[test]
    fn listed_lines_and_differences_are_named() {
        let text = "- zeroize 1.9.2 (https://example.invalid/x)\n- [Apache](#a) (3)\n- **glibc** is linked\n- serde 1.0.228\n";
        let l = listed(text);
        assert_eq!(l.iter().map(String::as_str).collect::<Vec<_>>(), ["serde 1.0.228", "zeroize 1.9.2"]);
        let need: BTreeSet<String> = ["serde 1.0.228", "libc 0.2.1"].into_iter().map(String::from).collect();
        let e = compare(&need, &l).unwrap_err();
        assert!(e.contains("\"libc 0.2.1\"") && e.contains("\"zeroize 1.9.2\""), "{e}");
        assert_eq!(compare(&l, &l), Ok(()));
    }

    #[test]
    fn the_checked_in_notices_list_exactly_the_built_crates() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let text = std::fs::read_to_string(root.join("THIRD-PARTY-NOTICES.md")).unwrap();
        compare(&needed(&root).unwrap(), &listed(&text)).unwrap();
    }

    #[test]
    fn the_targets_are_about_toml_s() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let about = std::fs::read_to_string(root.join("about.toml")).unwrap();
        for t in TARGETS {
            assert!(about.contains(&format!("\"{t}\"")), "{t} is not in about.toml");
        }
    }
}
