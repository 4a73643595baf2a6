//! Container images: a read-only squashfs root filesystem followed by its
//! dm-verity hash tree (see `verity.rs`), in one plain file:
//!
//! ```text
//! [ squashfs, zero-padded to 4096 ][ hash tree: top level ... level 0 ]
//! ```
//!
//! Why squashfs: `mksquashfs` builds an image from a directory without root
//! or loop devices, its output is reproducible (fixed times, root owner,
//! sorted entries), it compresses well (xz), and every kernel we boot has it.
//! erofs would be as good on the device but its host tools are less common.
//!
//! No trailer is added: the data size is read from the squashfs superblock
//! (`bytes_used`, rounded up to 4096), and the tree follows it.
//!
//! The verity salt is [`verity::default_salt`] of the data area. The device
//! needs the salt for its dm table (there is no verity superblock), so it must
//! travel with the root hash in the release.

use crate::verity::{self, VerityParams, BLOCK};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A built (or inspected) image file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub path: PathBuf,
    /// Size of the whole file, hash tree included.
    pub size: u64,
    /// SHA-256 of the whole file.
    pub sha256: [u8; 32],
    pub verity: VerityParams,
}

const SQUASHFS_MAGIC: &[u8; 4] = b"hsqs";
const SUPERBLOCK_LEN: usize = 96;

/// Builds `out` from the directory `dir`: squashfs (reproducible: the same
/// tree gives the same bytes) plus the verity tree. Files are owned by root
/// inside the image; permission bits are kept; host extended attributes are
/// not stored (they would differ between build machines).
pub fn from_dir(dir: &Path, out: &Path) -> Result<Image, String> {
    from_dir_with(dir, out, None)
}

/// Like [`from_dir`]; with `pseudo`, a mksquashfs pseudo-file definition
/// file that gives every path its mode and owner (`"/path" m MODE UID GID`)
/// instead of `-all-root` (the OCI import keeps the layers' ownership so).
pub fn from_dir_with(dir: &Path, out: &Path, pseudo: Option<&Path>) -> Result<Image, String> {
    if !dir.is_dir() {
        return Err(format!("{}: not a directory", dir.display()));
    }
    let mut cmd = Command::new("mksquashfs");
    cmd.arg(dir).arg(out).args(["-noappend", "-no-xattrs", "-comp", "xz"]);
    match pseudo {
        None => cmd.arg("-all-root"),
        Some(p) => cmd.arg("-pf").arg(p),
    };
    let output = cmd
        .args(["-mkfs-time", "0", "-all-time", "0", "-quiet", "-no-progress"])
        .output()
        .map_err(|e| format!("running mksquashfs (package squashfs-tools): {e}"))?;
    if !output.status.success() {
        return Err(format!("mksquashfs {} {} failed ({}): {}", dir.display(), out.display(), output.status, String::from_utf8_lossy(&output.stderr).trim()));
    }
    // mksquashfs only warns about a pseudo definition it cannot apply.
    let warnings = String::from_utf8_lossy(&output.stderr);
    if pseudo.is_some() && !warnings.trim().is_empty() {
        return Err(format!("mksquashfs {}: {}", dir.display(), warnings.trim()));
    }
    let mut file = File::open(out).map_err(|e| format!("{}: open: {e}", out.display()))?;
    let data_size = data_size(&mut file, out)?;
    let len = file.metadata().map_err(|e| format!("{}: stat: {e}", out.display()))?.len();
    if len > data_size {
        return Err(format!("{}: mksquashfs wrote {len} bytes, more than the {data_size} the superblock covers", out.display()));
    }
    drop(file);
    let verity = verity::append_tree(out, None)?;
    if verity.hash_offset != data_size {
        return Err(format!("{}: data area is {} bytes, superblock says {data_size}", out.display(), verity.hash_offset));
    }
    let (size, sha256) = hash_file(out)?;
    Ok(Image { path: out.to_path_buf(), size, sha256, verity })
}

/// Builds `out` holding only the static executable `bin` as `/bin/<name>`
/// plus the empty mount points `/dev`, `/proc`, `/sys` and `/tmp`. The tree
/// is staged in a temporary directory next to `out` and removed afterwards.
pub fn from_binary(bin: &Path, out: &Path) -> Result<Image, String> {
    let name = bin.file_name().and_then(|n| n.to_str()).ok_or_else(|| format!("{}: no usable file name", bin.display()))?;
    if !bin.is_file() {
        return Err(format!("{}: not a regular file", bin.display()));
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let out_name = out.file_name().ok_or_else(|| format!("{}: no file name", out.display()))?.to_string_lossy();
    let stage = parent.join(format!(".{out_name}.root.{}", std::process::id()));
    let result = stage_binary(bin, name, &stage).and_then(|()| from_dir(&stage, out));
    let cleanup = std::fs::remove_dir_all(&stage);
    let image = result?;
    cleanup.map_err(|e| format!("{}: removing staging directory: {e}", stage.display()))?;
    Ok(image)
}

fn stage_binary(bin: &Path, name: &str, stage: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    if stage.exists() {
        std::fs::remove_dir_all(stage).map_err(|e| format!("{}: removing stale directory: {e}", stage.display()))?;
    }
    let mode = |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).map_err(|e| format!("{}: chmod: {e}", p.display()));
    std::fs::create_dir(stage).map_err(|e| format!("{}: mkdir: {e}", stage.display()))?;
    mode(stage, 0o755)?;
    for d in ["bin", "dev", "mnt", "proc", "sys", "tmp"] {
        let p = stage.join(d);
        std::fs::create_dir(&p).map_err(|e| format!("{}: mkdir: {e}", p.display()))?;
        mode(&p, 0o755)?;
    }
    let target = stage.join("bin").join(name);
    std::fs::copy(bin, &target).map_err(|e| format!("copying {} to {}: {e}", bin.display(), target.display()))?;
    mode(&target, 0o755)
}

/// Reads the squashfs superblock of `file` and returns the size of the data
/// area: `bytes_used` rounded up to 4096.
fn data_size(file: &mut File, path: &Path) -> Result<u64, String> {
    let mut sb = [0u8; SUPERBLOCK_LEN];
    file.seek(SeekFrom::Start(0)).map_err(|e| format!("{}: seek: {e}", path.display()))?;
    file.read_exact(&mut sb).map_err(|e| format!("{}: reading squashfs superblock: {e}", path.display()))?;
    if &sb[0..4] != SQUASHFS_MAGIC {
        return Err(format!("{}: not a squashfs image (bad magic)", path.display()));
    }
    let major = u16::from_le_bytes([sb[28], sb[29]]);
    if major != 4 {
        return Err(format!("{}: squashfs version {major}, expected 4", path.display()));
    }
    let mut used = [0u8; 8];
    used.copy_from_slice(&sb[40..48]);
    let bytes_used = u64::from_le_bytes(used);
    if bytes_used < SUPERBLOCK_LEN as u64 {
        return Err(format!("{}: squashfs bytes_used {bytes_used} is too small", path.display()));
    }
    bytes_used.checked_next_multiple_of(BLOCK).ok_or_else(|| format!("{}: squashfs bytes_used {bytes_used} is too large", path.display()))
}

pub(crate) fn hash_file(path: &Path) -> Result<(u64, [u8; 32]), String> {
    let file = File::open(path).map_err(|e| format!("{}: open: {e}", path.display()))?;
    let mut r = BufReader::new(file);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = r.read(&mut buf).map_err(|e| format!("{}: read: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, h.finalize().into()))
}

/// Re-derives an image's parameters from the file alone and checks its
/// hash tree with the derived salt, through the same code as `berth
/// inspect` (`berth::cli::imageinfo`). A corrupted image is an error naming
/// what does not match; the salt being derived from the data, a changed
/// data block shows as a mismatch from block 0 on: use
/// [`inspect_with_salt`] with the release's salt to name the block.
#[cfg(test)]
pub fn inspect(path: &Path) -> Result<Image, String> {
    inspect_full(path, None, None).map(|(img, _)| img)
}

/// Like [`inspect`] but with a known salt (as carried by the release).
#[cfg(test)]
pub fn inspect_with_salt(path: &Path, salt: [u8; 32]) -> Result<Image, String> {
    inspect_full(path, Some(salt), None).map(|(img, _)| img)
}

/// The image and `berth inspect`'s report of it.
pub fn inspect_full(path: &Path, salt: Option<[u8; 32]>, root: Option<[u8; 32]>) -> Result<(Image, berth::cli::imageinfo::Info), String> {
    let mut file = File::open(path).map_err(|e| format!("{}: open: {e}", path.display()))?;
    let info = berth::cli::imageinfo::inspect(&mut file, salt, root).map_err(|e| format!("{}: {e}", path.display()))?;
    let img = Image {
        path: path.to_path_buf(),
        size: info.size,
        sha256: info.sha256,
        verity: VerityParams { data_blocks: info.data_blocks, hash_offset: info.data_blocks * BLOCK, salt: info.salt, root: info.root },
    };
    Ok((img, info))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("berth-image-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn need_mksquashfs() {
        crate::tools::require_command("mksquashfs", "squashfs-tools");
    }

    /// A small tree with a file large enough to need several blocks.
    fn make_tree(root: &Path) {
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::write(root.join("etc/hostname"), "berth\n").unwrap();
        let mut x = 0x1234_5678_9abc_def1u64;
        let mut big = Vec::new();
        for _ in 0..40_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            big.extend_from_slice(&x.to_le_bytes());
        }
        std::fs::write(root.join("bin/app"), &big).unwrap();
        std::fs::set_permissions(root.join("bin/app"), std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn build_inspect_corrupt() {
        need_mksquashfs();
        let dir = scratch("build");
        make_tree(&dir.join("root"));
        let out = dir.join("app.img");
        let img = from_dir(&dir.join("root"), &out).unwrap();
        assert!(img.verity.data_blocks > 1);
        assert_eq!(img.size, img.verity.hash_offset + verity::tree_size(img.verity.data_blocks));
        assert_eq!(img.size, std::fs::metadata(&out).unwrap().len());
        let again = inspect(&out).unwrap();
        assert_eq!(again, img);
        assert_eq!(inspect_with_salt(&out, img.verity.salt).unwrap(), img);

        // The file as built is accepted by veritysetup.
        crate::tools::require_command("veritysetup", "cryptsetup-bin");
        {
            let st = Command::new("veritysetup")
                .args(["verify", "--no-superblock", "--hash=sha256"])
                .arg(format!("--salt={}", verity::hex(&img.verity.salt)))
                .arg(format!("--hash-offset={}", img.verity.hash_offset))
                .arg(format!("--data-blocks={}", img.verity.data_blocks))
                .arg(&out)
                .arg(&out)
                .arg(verity::hex(&img.verity.root))
                .status()
                .unwrap();
            assert!(st.success());
        }

        // Flip one byte in the last data block.
        let mut bytes = std::fs::read(&out).unwrap();
        let block = img.verity.data_blocks - 1;
        let off = (block * BLOCK + 100) as usize;
        bytes[off] ^= 0x20;
        std::fs::write(&out, &bytes).unwrap();
        let e = inspect_with_salt(&out, img.verity.salt).unwrap_err();
        assert!(e.contains(&format!("corrupt: data block {block} does not match its hash in the tree")), "{e}");
        let e = inspect(&out).unwrap_err();
        assert!(e.contains("corrupt"), "{e}");
        bytes[off] ^= 0x20;

        // Flip one byte in the tree.
        let last = bytes.len() - 4096 + 3;
        bytes[last] ^= 1;
        std::fs::write(&out, &bytes).unwrap();
        let e = inspect(&out).unwrap_err();
        assert!(e.contains("data block 0 "), "{e}");
        bytes[last] ^= 1;

        // Truncated, and not a squashfs.
        std::fs::write(&out, &bytes[..bytes.len() - 1]).unwrap();
        assert!(inspect(&out).unwrap_err().contains("of hash tree"));
        std::fs::write(&out, vec![0u8; 8192]).unwrap();
        assert!(inspect(&out).unwrap_err().contains("not a squashfs"));
        std::fs::write(&out, b"hsqs").unwrap();
        assert!(inspect(&out).unwrap_err().contains("shorter than a squashfs superblock"));
        std::fs::write(&out, &bytes).unwrap();
        assert_eq!(inspect(&out).unwrap(), img);

        assert!(from_dir(&dir.join("missing"), &out).unwrap_err().contains("not a directory"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn reproducible() {
        need_mksquashfs();
        let dir = scratch("repro");
        make_tree(&dir.join("a"));
        std::thread::sleep(std::time::Duration::from_millis(1100));
        make_tree(&dir.join("b"));
        let a = from_dir(&dir.join("a"), &dir.join("a.img")).unwrap();
        let b = from_dir(&dir.join("b"), &dir.join("b.img")).unwrap();
        assert_eq!((a.size, a.sha256, a.verity), (b.size, b.sha256, b.verity));
        assert_eq!(std::fs::read(dir.join("a.img")).unwrap(), std::fs::read(dir.join("b.img")).unwrap());
        // Rebuilding over an existing output gives the same file again.
        let a2 = from_dir(&dir.join("a"), &dir.join("a.img")).unwrap();
        assert_eq!(a2, a);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn binary_image() {
        need_mksquashfs();
        let dir = scratch("bin");
        let bin = dir.join("hello");
        std::fs::write(&bin, b"\x7fELF not really").unwrap();
        let out = dir.join("hello.img");
        let img = from_binary(&bin, &out).unwrap();
        assert_eq!(inspect(&out).unwrap(), img);
        // Only the image and the input remain: the staging directory is gone.
        let mut names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        assert_eq!(names, ["hello", "hello.img"]);
        let listing = Command::new("unsquashfs").arg("-lls").arg(&out).output().ok();
        if let Some(o) = listing.filter(|o| o.status.success()) {
            let text = String::from_utf8_lossy(&o.stdout);
            for p in ["/bin/hello", "/dev", "/proc", "/sys", "/tmp"] {
                assert!(text.lines().any(|l| l.ends_with(&format!("squashfs-root{p}"))), "{p}: {text}");
            }
            assert!(text.contains("-rwxr-xr-x root/root"), "{text}");
        }
        assert!(from_binary(&dir.join("nope"), &out).unwrap_err().contains("not a regular file"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
