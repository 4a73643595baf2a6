//! An independent expectation of the store writes of an update, derived
//! from the store format as `docs/updates.md` describes it and from the two
//! releases' contents only: no store code of berth runs here (the host
//! model, [`crate::cutmodel`], runs the device's own store code, so it
//! cannot catch a change to what that code writes).
//!
//! What the document says an update writes, in order (each name is one
//! store write, one call the device counts in `update.done store_writes`):
//!
//! - **stage**: `mkdir` of `staging/`; for each image the store lacks,
//!   `create` and `sync` of its copy in `staging/`; then for each a
//!   `rename` into `images/` and one `sync-dir` of `images/` (none when no
//!   image is added); the release object written as every small file is,
//!   `create`, `sync`, `rename`, `sync-dir` of `releases/`; `remove-dir` of
//!   `staging/` and `sync-dir` of the store.
//! - **trial**: the record, as a small file (4 writes).
//! - **commit**: the record (4 writes), then the floor witness (4 writes)
//!   when the commit raises the floor above the witness.
//! - **gc**: a `remove` of each release object and image no kept release
//!   (current, previous) uses, then a `sync-dir` of each of `releases/` and
//!   `images/` that lost a file.

use berth::release::Release;

/// What the expectation reads of a release: its version and its images'
/// SHA-256.
pub struct Contents {
    pub version: u64,
    pub images: Vec<[u8; 32]>,
}

impl From<&Release> for Contents {
    fn from(r: &Release) -> Contents {
        Contents { version: r.version, images: r.images.iter().map(|i| i.sha256.0).collect() }
    }
}

/// One expected store write: the operation it belongs to and its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub op: &'static str,
    pub kind: &'static str,
}

/// The four writes of a small file: temporary file, fsync, rename, fsync
/// of its directory.
const SMALL_FILE: [&str; 4] = ["create", "sync", "rename", "sync-dir"];

fn push(out: &mut Vec<Write>, op: &'static str, kinds: &[&'static str]) {
    out.extend(kinds.iter().map(|&kind| Write { op, kind }));
}

/// The writes of the update from `installed` (booted, committed, its floor
/// witness at its version) to `next`.
pub fn expected(installed: &Contents, next: &Contents) -> Vec<Write> {
    let mut out = Vec::new();
    // Images of `next` the store lacks (the installed release's are there).
    let mut added: Vec<[u8; 32]> = Vec::new();
    for img in &next.images {
        if !installed.images.contains(img) && !added.contains(img) {
            added.push(*img);
        }
    }
    push(&mut out, "stage", &["mkdir"]);
    for _ in &added {
        push(&mut out, "stage", &["create", "sync"]);
    }
    for _ in &added {
        push(&mut out, "stage", &["rename"]);
    }
    if !added.is_empty() {
        push(&mut out, "stage", &["sync-dir"]);
    }
    push(&mut out, "stage", &SMALL_FILE);
    push(&mut out, "stage", &["remove-dir", "sync-dir"]);
    push(&mut out, "trial", &SMALL_FILE);
    push(&mut out, "commit", &SMALL_FILE);
    if next.version > installed.version {
        push(&mut out, "commit", &SMALL_FILE);
    }
    // After the commit both releases are kept (current and previous): the
    // store holds nothing else, so gc removes nothing and syncs nothing.
    out
}

/// The operation each write of the model belongs to, from where its
/// operations ended (stage, trial, commit, gc).
fn ops_of(kinds: usize, ends: &[u64]) -> Vec<&'static str> {
    const OPS: [&str; 4] = ["stage", "trial", "commit", "gc"];
    (1..=kinds as u64).map(|n| ends.iter().position(|&e| n <= e).and_then(|i| OPS.get(i).copied()).unwrap_or("after gc")).collect()
}

/// Compare the host model's writes (`kinds`, and the write count at the
/// end of each operation) with the expectation: the first difference.
pub fn check_model(want: &[Write], kinds: &[String], ends: &[u64]) -> Result<(), String> {
    let ops = ops_of(kinds.len(), ends);
    for (i, w) in want.iter().enumerate() {
        match (kinds.get(i), ops.get(i)) {
            (Some(k), Some(op)) if k == w.kind && *op == w.op => {}
            (Some(k), Some(op)) => {
                return Err(format!("store write {}: the format expects {} {}, the host model writes {op} {k}", i + 1, w.op, w.kind));
            }
            _ => return Err(format!("store write {}: the format expects {} {}, the host model stops after {} writes", i + 1, w.op, w.kind, kinds.len())),
        }
    }
    if let (Some(k), Some(op)) = (kinds.get(want.len()), ops.get(want.len())) {
        return Err(format!("store write {}: the format expects no more writes, the host model writes {op} {k}", want.len() + 1));
    }
    Ok(())
}

/// The expectation as `OP KIND` labels, write 1 first (what the QEMU
/// cases compare the device's count with).
pub fn labels(want: &[Write]) -> Vec<String> {
    want.iter().map(|w| format!("{} {}", w.op, w.kind)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(version: u64, images: &[u8]) -> Contents {
        Contents { version, images: images.iter().map(|&b| [b; 32]).collect() }
    }

    fn kinds(w: &[Write]) -> Vec<String> {
        w.iter().map(|w| w.kind.to_string()).collect()
    }

    #[test]
    fn one_changed_image_is_23_writes() {
        let w = expected(&release(1, &[1, 2]), &release(2, &[3, 2]));
        assert_eq!(w.len(), 23);
        assert_eq!(kinds(&w[..5]), ["mkdir", "create", "sync", "rename", "sync-dir"]);
        assert_eq!(w.iter().filter(|w| w.op == "stage").count(), 11);
        assert_eq!(w.iter().filter(|w| w.op == "commit").count(), 8);
        // Two added images: each copied, then each renamed, one sync of images/.
        let two = expected(&release(1, &[1]), &release(2, &[3, 4, 3]));
        assert_eq!(kinds(&two[..8]), ["mkdir", "create", "sync", "create", "sync", "rename", "rename", "sync-dir"]);
        // No image added: no sync of images/.
        assert_eq!(expected(&release(1, &[1]), &release(2, &[1])).len(), 19);
    }

    #[test]
    fn the_model_check_names_the_first_difference() {
        let w = expected(&release(1, &[1]), &release(2, &[2]));
        let mut k = kinds(&w);
        let ends = [11, 15, 23, 23];
        assert_eq!(check_model(&w, &k, &ends), Ok(()));
        k[12] = "rename".into();
        assert_eq!(check_model(&w, &k, &ends).unwrap_err(), "store write 13: the format expects trial sync, the host model writes trial rename");
        let k = kinds(&w);
        assert!(check_model(&w, &k, &[11, 15, 19, 23]).unwrap_err().starts_with("store write 20: the format expects commit create, the host model writes gc"));
        assert!(check_model(&w, &k[..20], &ends).unwrap_err().contains("stops after 20 writes"));
        let mut more = k.clone();
        more.push("remove".into());
        assert!(check_model(&w, &more, &[11, 15, 23, 24]).unwrap_err().contains("no more writes, the host model writes gc remove"));
        assert_eq!(labels(&w[..1]), ["stage mkdir"]);
    }
}
