//! `<arch>/inspect-round-trip`: `berth inspect`'s report on each demo image
//! against one rebuilt from other tools: the size from the file system,
//! the SHA-256 from `sha256sum`, the squashfs line from `unsquashfs -s`,
//! and the hash tree, byte for byte, and its root from `veritysetup format`
//! over the image's data area with the release's salt.

use crate::artifacts::Artifacts;
use crate::verity::{self, BLOCK};
use berth::release::Image as Entry;
use std::path::Path;
use std::process::Command;

/// `berth inspect` on each demo image prints the independently made report
/// (with the release's size, SHA-256, salt and root); a copy with one
/// changed byte is refused by `veritysetup verify`, and by `berth inspect`,
/// given the release's salt and root, with the text naming that data block.
pub fn inspect(a: &Artifacts, host_berth: &Path) -> Result<(), String> {
    let run = |file: &Path, extra: &[String]| Command::new(host_berth).arg("inspect").arg(file).args(extra).output().map_err(|e| e.to_string());
    for img in &a.images {
        let sha = sha256sum(&img.path)?;
        let entry = a
            .release
            .images
            .iter()
            .find(|i| verity::hex(&i.sha256.0) == sha)
            .ok_or_else(|| format!("{}: sha256sum {sha}: not in the release", img.path.display()))?;
        let (want, data_blocks) = expected_report(&a.dir, &img.path, entry, &sha)?;
        let out = run(&img.path, &[])?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || stdout.lines().collect::<Vec<_>>() != want {
            return Err(format!("berth inspect {}: {}\n{stdout}\nwant:\n{}", img.path.display(), out.status, want.join("\n")));
        }
        let bad = a.dir.join("inspect-tampered.img");
        let mut bytes = std::fs::read(&img.path).map_err(|e| e.to_string())?;
        let block = data_blocks - 1;
        if let Some(b) = bytes.get_mut((block * BLOCK + 7) as usize) {
            *b ^= 0x10;
        }
        std::fs::write(&bad, &bytes).map_err(|e| e.to_string())?;
        if veritysetup_verify(&bad, data_blocks, entry)? {
            return Err("veritysetup verify accepts the changed image".into());
        }
        let args = ["--salt".to_string(), verity::hex(&entry.verity_salt), "--root".to_string(), verity::hex(&entry.verity_root)];
        let out = run(&bad, &args)?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        let want = format!("berth: {}: image refused: corrupt: data block {block} does not match its hash in the tree", bad.display());
        if out.status.success() || stderr.trim() != want {
            return Err(format!("berth inspect on a changed image: {} {stderr:?}, want {want:?}", out.status));
        }
    }
    Ok(())
}

/// The report lines for `path` and its number of data blocks (`scratch`
/// holds veritysetup's files for a moment).
fn expected_report(scratch: &Path, path: &Path, entry: &Entry, sha: &str) -> Result<(Vec<String>, u64), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let size = bytes.len() as u64;
    let sq = unsquashfs_superblock(path)?;
    let data_blocks = sq.bytes_used.div_ceil(BLOCK);
    let tree_at = data_blocks * BLOCK;
    if !size.is_multiple_of(BLOCK) || size < tree_at || size != entry.size {
        return Err(format!("{}: {size} bytes: not {data_blocks} data blocks and whole tree blocks of the release's {} bytes", path.display(), entry.size));
    }
    let tree_blocks = (size - tree_at) / BLOCK;
    let root = veritysetup_tree(scratch, &bytes, data_blocks, &entry.verity_salt)?;
    if root != verity::hex(&entry.verity_root) {
        return Err(format!("{}: veritysetup's root {root}, the release's {}", path.display(), verity::hex(&entry.verity_root)));
    }
    let verdict = if tree_blocks == 0 {
        "verity:      one data block, no hash tree: only the release's root can check it"
    } else {
        "verity:      ok (every data and hash block checked)"
    };
    let lines = vec![
        format!("image:       {}", path.display()),
        format!("size:        {size} bytes"),
        format!("sha256:      {sha}"),
        format!("squashfs:    {} bytes used, {} inodes, {}-byte blocks, {}", sq.bytes_used, sq.inodes, sq.block_size, sq.compression),
        format!("data blocks: {data_blocks} of {BLOCK} bytes; hash tree at byte {tree_at}, {tree_blocks} blocks"),
        format!("verity salt: {} (derived from the data)", verity::hex(&entry.verity_salt)),
        format!("verity root: {root}"),
        verdict.to_string(),
    ];
    Ok((lines, data_blocks))
}

fn sha256sum(path: &Path) -> Result<String, String> {
    let out = crate::tools::run_capture(Command::new("sha256sum").arg(path))?;
    out.split_whitespace().next().map(str::to_string).ok_or_else(|| format!("sha256sum {}: no output", path.display()))
}

/// What `unsquashfs -s` says of the superblock.
struct Superblock {
    bytes_used: u64,
    inodes: u64,
    block_size: u64,
    compression: String,
}

fn unsquashfs_superblock(path: &Path) -> Result<Superblock, String> {
    let out = crate::tools::run_capture(Command::new("unsquashfs").arg("-s").arg(path))?;
    let field = |prefix: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_string)
            .ok_or_else(|| format!("unsquashfs -s {}: no `{prefix}` line", path.display()))
    };
    let number = |prefix: &str| -> Result<u64, String> {
        let v = field(prefix)?;
        v.parse().map_err(|_| format!("unsquashfs -s: `{prefix}{v}` is not a number"))
    };
    Ok(Superblock {
        bytes_used: number("Filesystem size ")?,
        inodes: number("Number of inodes ")?,
        block_size: number("Block size ")?,
        compression: field("Compression ")?,
    })
}

/// `veritysetup format` over a copy of the data area with `salt`: its hash
/// area must be the image's tree byte for byte; returns its root hash.
fn veritysetup_tree(scratch: &Path, image: &[u8], data_blocks: u64, salt: &[u8; 32]) -> Result<String, String> {
    let tree_at = (data_blocks * BLOCK) as usize;
    let data = scratch.join("inspect-data.img");
    let hash = scratch.join("inspect-hash.img");
    std::fs::write(&data, &image[..tree_at]).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(&hash);
    let out = crate::tools::run_capture(
        Command::new("veritysetup")
            .args(["format", "--no-superblock", "--hash=sha256"])
            .args(["--data-block-size=4096", "--hash-block-size=4096"])
            .arg(format!("--data-blocks={data_blocks}"))
            .arg(format!("--salt={}", verity::hex(salt)))
            .arg(&data)
            .arg(&hash),
    )?;
    let root = out
        .lines()
        .find_map(|l| l.strip_prefix("Root hash:"))
        .map(|r| r.trim().to_string())
        .ok_or_else(|| format!("veritysetup format printed no root hash:\n{out}"))?;
    let tree = std::fs::read(&hash).unwrap_or_default();
    if tree.as_slice() != &image[tree_at..] {
        let first = tree.chunks(BLOCK as usize).zip(image[tree_at..].chunks(BLOCK as usize)).position(|(x, y)| x != y);
        return Err(format!(
            "the image's hash tree ({} bytes) is not veritysetup's ({} bytes); first different block: {first:?}",
            image.len() - tree_at,
            tree.len()
        ));
    }
    let _ = std::fs::remove_file(&data);
    let _ = std::fs::remove_file(&hash);
    Ok(root)
}

/// Whether `veritysetup verify` accepts `path` (data, then its tree at the
/// end of the data area) against the release's salt and root.
fn veritysetup_verify(path: &Path, data_blocks: u64, entry: &Entry) -> Result<bool, String> {
    let st = Command::new("veritysetup")
        .args(["verify", "--no-superblock", "--hash=sha256"])
        .arg(format!("--salt={}", verity::hex(&entry.verity_salt)))
        .arg(format!("--hash-offset={}", data_blocks * BLOCK))
        .arg(format!("--data-blocks={data_blocks}"))
        .arg(path)
        .arg(path)
        .arg(verity::hex(&entry.verity_root))
        .output()
        .map_err(|e| format!("cannot run veritysetup: {e}"))?;
    Ok(st.status.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a freshly built image the reading from the other tools is, line
    /// for line, berth's own report (what `berth inspect` prints); a tree
    /// with one changed byte is caught by the veritysetup comparison.
    #[test]
    fn independent_report_is_berths_report() {
        crate::tools::require_command("mksquashfs", "squashfs-tools");
        crate::tools::require_command("veritysetup", "cryptsetup-bin");
        let dir = std::env::temp_dir().join(format!("xtask-inspect-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("root/bin")).unwrap();
        let big: Vec<u8> = (0..300_000u32).flat_map(|i| (i.wrapping_mul(2_654_435_761)).to_le_bytes()).collect();
        std::fs::write(dir.join("root/bin/app"), big).unwrap();
        let out = dir.join("app.img");
        let img = crate::image::from_dir(&dir.join("root"), &out).unwrap();
        let entry = Entry { sha256: berth::release::manifest::Digest(img.sha256), size: img.size, verity_root: img.verity.root, verity_salt: img.verity.salt };
        let sha = sha256sum(&out).unwrap();
        let (want, blocks) = expected_report(&dir, &out, &entry, &sha).unwrap();
        assert!(blocks > 1);
        let (_, info) = crate::image::inspect_full(&out, None, None).unwrap();
        let mut berths = vec![format!("image:       {}", out.display())];
        berths.extend(info.lines());
        assert_eq!(want, berths);
        assert!(veritysetup_verify(&out, blocks, &entry).unwrap());

        let mut bytes = std::fs::read(&out).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&out, &bytes).unwrap();
        let e = expected_report(&dir, &out, &entry, &sha).unwrap_err();
        assert!(e.contains("is not veritysetup's"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
