//! Handing a bundle to berth: its bytes (the whole artifact, or the bundle
//! member of a `.swu`) are written into the drop directory as
//! `<name>.bundle.part` and synced, and only after the pending action is
//! saved, renamed to `<name>.bundle` — berth picks up `*.bundle` only, so
//! it never sees a half-written file.

use crate::download::hex;
use crate::state::sync_dir;
use crate::swu;
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// A bundle written under its temporary name.
#[derive(Debug)]
pub struct Staged {
    part: PathBuf,
    fin: PathBuf,
    /// The bundle's file name in the drop directory.
    pub name: String,
    /// `sha256:<hex>` of the bundle, as berth's status view names it.
    pub id: String,
}

/// A name berth may take: a plain file name ending in `.bundle`.
fn check_name(name: &str) -> Result<(), String> {
    let ok = name.len() <= 200
        && name.len() > ".bundle".len()
        && name.ends_with(".bundle")
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.+".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!("bundle name `{name}`: not a plain file name ending in .bundle"))
    }
}

/// Writes the bundle out of `artifact` (named `filename` by the server)
/// into `drop_dir` under a temporary name.
pub fn stage(artifact: &Path, filename: &str, drop_dir: &Path) -> Result<Staged, String> {
    let mut f = std::fs::File::open(artifact).map_err(|e| format!("{}: {e}", artifact.display()))?;
    let (name, size, sum) = if filename.ends_with(".swu") {
        let m = swu::find_bundle(&mut f)?;
        f.seek(SeekFrom::Start(m.offset)).map_err(|e| format!("{}: {e}", artifact.display()))?;
        (m.name, m.size, m.sum)
    } else {
        let len = f.metadata().map_err(|e| format!("{}: {e}", artifact.display()))?.len();
        (filename.to_string(), len, None)
    };
    check_name(&name)?;
    let part = drop_dir.join(format!("{name}.part"));
    let fin = drop_dir.join(&name);
    let digest = copy_out(f.take(size), size, sum, &part).inspect_err(|_| {
        let _ = std::fs::remove_file(&part);
    })?;
    Ok(Staged { part, fin, name, id: format!("sha256:{digest}") })
}

/// Copies exactly `size` bytes to `part`, checking the crc sum when given;
/// returns the SHA-256 in hex.
fn copy_out(mut from: impl Read, size: u64, sum: Option<u32>, part: &Path) -> Result<String, String> {
    let mut out = std::fs::File::create(part).map_err(|e| format!("{}: {e}", part.display()))?;
    let (mut sha, mut got_sum, mut n) = (Sha256::new(), 0u32, 0u64);
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let k = from.read(&mut buf).map_err(|e| format!("reading the bundle: {e}"))?;
        if k == 0 {
            break;
        }
        sha.update(&buf[..k]);
        got_sum = swu::add_sum(got_sum, &buf[..k]);
        out.write_all(&buf[..k]).map_err(|e| format!("{}: {e}", part.display()))?;
        n += k as u64;
    }
    if n != size {
        return Err(format!("bundle: {n} bytes, the archive says {size}"));
    }
    if let Some(want) = sum.filter(|w| *w != got_sum) {
        return Err(format!("bundle: cpio sum {got_sum:08x}, the archive says {want:08x}"));
    }
    out.sync_all().map_err(|e| format!("{}: {e}", part.display()))?;
    Ok(hex(&sha.finalize()))
}

impl Staged {
    /// Renames the bundle to its final name: berth may take it now.
    pub fn publish(self) -> Result<PathBuf, String> {
        std::fs::rename(&self.part, &self.fin).map_err(|e| format!("{} -> {}: {e}", self.part.display(), self.fin.display()))?;
        if let Some(dir) = self.fin.parent() {
            sync_dir(dir)?;
        }
        Ok(self.fin)
    }

    /// Removes the temporary file.
    pub fn abandon(self) {
        let _ = std::fs::remove_file(&self.part);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swu::tests::archive;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("berth-agent-drop-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn the_bundle_of_a_swu_lands_whole_and_only_on_publish() {
        let d = dir("swu");
        let bundle: Vec<u8> = (0..5000u32).map(|i| (i % 249) as u8).collect();
        std::fs::write(d.join("a.swu"), archive("070702", &[("sw-description", b"x"), ("berth-b-4.bundle", &bundle)])).unwrap();
        let s = stage(&d.join("a.swu"), "a.swu", &d).unwrap();
        assert_eq!(s.id, format!("sha256:{}", hex(&Sha256::digest(&bundle))));
        assert!(d.join("berth-b-4.bundle.part").exists() && !d.join("berth-b-4.bundle").exists());
        let fin = s.publish().unwrap();
        assert_eq!(std::fs::read(fin).unwrap(), bundle);
        assert!(!d.join("berth-b-4.bundle.part").exists());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_bad_sum_or_name_stages_nothing() {
        let d = dir("bad");
        let mut a = archive("070702", &[("berth-b-4.bundle", b"0123456789")]);
        let at = a.windows(10).position(|w| w == b"0123456789").unwrap();
        a[at] = b'X';
        std::fs::write(d.join("a.swu"), &a).unwrap();
        let e = stage(&d.join("a.swu"), "a.swu", &d).unwrap_err();
        assert!(e.contains("cpio sum"), "{e}");
        std::fs::write(d.join("x"), b"b").unwrap();
        assert!(stage(&d.join("x"), "../evil.bundle", &d).unwrap_err().contains("not a plain file name"));
        let left: Vec<_> = std::fs::read_dir(&d).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(left.len(), 2, "{left:?}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
