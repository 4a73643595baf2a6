//! A manifest directory read and checked before anything is built.
//!
//! This module owns turning the `*.toml` files of a manifest directory into
//! checked manifests and their host-only `[build]` tables. Every file is
//! read as written (see `berth::release::manifest::source`), checked on its own, then
//! against the board (device grants, the seccomp filter), then as a set
//! (unique names, known dependencies, no cycle). Every error of every file
//! is reported, each as `FILE:LINE:COL: field F: reason`, at most
//! [`ERRORS_MAX`] of them, before any image is built.

use berth::confine::seccomp::SeccompError;
use berth::release::board::Board;
use berth::release::manifest::source::{self, Host, SourceError, ERRORS_MAX};
use berth::release::manifest::{Digest, Manifest, ManifestError};
use std::fs;
use std::path::Path;

/// The host-only table of a manifest saying how its image is built.
pub const BUILD: &str = "build";

/// Stands for the image digest until the image is built.
const UNBUILT: Digest = Digest([0; 32]);

/// One checked manifest file.
pub struct Checked {
    pub stem: String,
    /// The manifest, its `image` not set yet (xtask sets it once built).
    pub manifest: Manifest,
    /// Its `[build]` table.
    pub build: toml::Table,
}

/// Read and check `files` (shown relative to `root`) for `board`: all of
/// them, or every error found, one a line.
pub fn check(root: &Path, files: &[std::path::PathBuf], board: &Board) -> Result<Vec<Checked>, String> {
    let mut errors: Vec<String> = Vec::new();
    let mut checked = Vec::new();
    let mut texts = Vec::new();
    for file in files {
        let shown = file.strip_prefix(root).unwrap_or(file).display().to_string();
        let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("?").to_string();
        let text = match fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) => {
                errors.push(format!("{shown}: {e}"));
                continue;
            }
        };
        match read(&shown, &stem, &text, board) {
            Ok(c) => {
                checked.push(c);
                texts.push((shown, text));
            }
            Err(v) => errors.extend(v.iter().map(ToString::to_string)),
        }
    }
    if errors.is_empty() {
        let set: Vec<Manifest> = checked.iter().map(|c| c.manifest.clone()).collect();
        if let Err(e) = berth::release::manifest::validate_set(&set) {
            let at = checked.iter().position(|c| c.manifest.name.as_str() == e.manifest).and_then(|i| texts.get(i));
            errors.push(match at {
                Some((shown, text)) => source::located(shown, text, &e).to_string(),
                None => e.to_string(),
            });
        }
    }
    if errors.is_empty() {
        return Ok(checked);
    }
    Err(report(&errors))
}

/// The errors, at most [`ERRORS_MAX`], and how many there were.
fn report(errors: &[String]) -> String {
    let mut text: Vec<String> = errors.iter().take(ERRORS_MAX).cloned().collect();
    if errors.len() > ERRORS_MAX {
        text.push(format!("... and {} more", errors.len() - ERRORS_MAX));
    }
    let n = errors.len();
    text.push(format!("{n} manifest error{}; nothing was built", if n == 1 { "" } else { "s" }));
    text.join("\n")
}

/// One manifest file: parsed and checked on its own and against the board
/// (the board's device checks even when values are wrong; the seccomp
/// filter only for a manifest whose values are right).
pub fn read(shown: &str, stem: &str, text: &str, board: &Board) -> Result<Checked, Vec<SourceError>> {
    let host = Host { skip: &[BUILD], image: Some(UNBUILT) };
    let (manifest, mut errors) = source::read(shown, stem, text, host);
    let Some(manifest) = manifest else {
        return Err(errors);
    };
    let build = build_table(stem, text).map_err(|e| source::located(shown, text, &e));
    let values_ok = errors.is_empty();
    if let Err(e) = manifest.check_devices(board) {
        errors.push(source::located(shown, text, &e));
    }
    let arch = berth::confine::seccomp::Arch::from(board.arch);
    if let (true, Err(e)) = (values_ok, berth::confine::seccomp::compile(&berth::confine::seccomp::Policy::from_manifest(&manifest), arch)) {
        errors.push(source::located(shown, text, &seccomp_error(&manifest, &e)));
    }
    match build {
        Ok(build) if errors.is_empty() => Ok(Checked { stem: stem.to_string(), manifest, build }),
        Ok(_) => Err(errors),
        Err(e) => {
            errors.insert(0, e);
            Err(errors)
        }
    }
}

/// The `[build]` table of a manifest that parsed.
fn build_table(stem: &str, text: &str) -> Result<toml::Table, ManifestError> {
    let error = |why: &str| ManifestError { manifest: stem.to_string(), field: BUILD.to_string(), reason: why.to_string() };
    let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| error(e.message()))?;
    match table.remove(BUILD) {
        Some(toml::Value::Table(b)) => Ok(b),
        Some(_) => Err(error("must be a table")),
        None => Err(error("needs a [build] table saying how its image is made")),
    }
}

/// A seccomp refusal as an error about the field that asked for it.
fn seccomp_error(m: &Manifest, e: &SeccompError) -> ManifestError {
    let field = match e {
        SeccompError::UnknownSyscall { name, .. } | SeccompError::NotGrantable { name, .. } | SeccompError::TooManyAdditions { name } => {
            m.seccomp_allow.iter().position(|s| s.as_str() == name.as_str()).map_or("seccomp_allow".to_string(), |i| format!("seccomp_allow[{i}]"))
        }
        SeccompError::Family { name, .. } => {
            m.socket_families.iter().position(|s| s.as_str() == name.as_str()).map_or("socket_families".to_string(), |i| format!("socket_families[{i}]"))
        }
        _ => "seccomp_allow".to_string(),
    };
    ManifestError { manifest: m.name.to_string(), field, reason: e.to_string() }
}

#[cfg(test)]
mod tests;
