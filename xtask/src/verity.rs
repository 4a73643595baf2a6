//! dm-verity hash trees, computed the way the Linux kernel's dm-verity
//! target checks them (and `veritysetup format` writes them by default):
//! format version 1, sha256, 4096-byte data and hash blocks, a 32-byte salt.
//!
//! Layout of the tree:
//! - Level 0 holds one digest per data block, level 1 one digest per level 0
//!   hash block, and so on. Each digest is `sha256(salt || block)` (version
//!   1 puts the salt first). A hash block holds 128 digests; the rest of the
//!   last block of a level is zero.
//! - The number of levels is the kernel's: the smallest `n` with
//!   `(data_blocks - 1) >> (7 * n) == 0`. One data block therefore gives no
//!   hash blocks at all and the root is the digest of that data block.
//! - In the hash area the highest level (the one hashed into the root) comes
//!   first and level 0 last.
//! - The root hash is `sha256(salt || top hash block)`.
//!
//! berth passes every parameter in the dm table itself, so no verity
//! superblock is written (`veritysetup --no-superblock`).

use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;

/// Data and hash block size in bytes.
pub const BLOCK: u64 = 4096;
const BLOCK_USIZE: usize = BLOCK as usize;
const DIGEST: usize = 32;
const DIGESTS_PER_BLOCK: u64 = (BLOCK_USIZE / DIGEST) as u64;
const BITS_PER_LEVEL: u32 = DIGESTS_PER_BLOCK.trailing_zeros();

/// Everything the device needs to set up dm-verity over an image whose hash
/// tree is appended to its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerityParams {
    /// Number of 4096-byte data blocks.
    pub data_blocks: u64,
    /// Byte offset of the hash tree in the combined file (= data size).
    pub hash_offset: u64,
    pub salt: [u8; 32],
    pub root: [u8; 32],
}

/// The salt used when none is given: derived from the SHA-256 of the
/// (zero-padded) data area, so the same data always gives the same tree
/// (defined beside `berth inspect`, which derives it the same way).
pub use berth::cli::imageinfo::default_salt;

/// Lower-case hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// The dm-verity table parameters for `dmsetup create` (without the leading
/// "start length verity"):
/// `1 <data_dev> <hash_dev> 4096 4096 <data_blocks> <hash_start_block> sha256 <root> <salt>`.
/// With the tree appended to the image, data_dev and hash_dev are the same
/// device and `hash_start_block` is `hash_offset / 4096`.
pub fn table_line(params: &VerityParams, data_dev: &str, hash_dev: &str) -> String {
    format!("1 {data_dev} {hash_dev} {BLOCK} {BLOCK} {} {} sha256 {} {}", params.data_blocks, params.hash_offset / BLOCK, hex(&params.root), hex(&params.salt))
}

fn hash_block(salt: &[u8; 32], block: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(block);
    h.finalize().into()
}

/// Number of hash blocks in each level, level 0 first (empty for one data
/// block). Same rule as the kernel and cryptsetup.
fn level_blocks(data_blocks: u64) -> Vec<u64> {
    let mut levels = 0u32;
    while BITS_PER_LEVEL * levels < 64 && (data_blocks - 1) >> (BITS_PER_LEVEL * levels) != 0 {
        levels += 1;
    }
    (1..=levels)
        .map(|i| {
            let shift = BITS_PER_LEVEL * i;
            if shift >= 64 {
                1
            } else {
                // ceil(data_blocks / 128^i) without overflow.
                (data_blocks >> shift) + u64::from(data_blocks & ((1u64 << shift) - 1) != 0)
            }
        })
        .collect()
}

/// Size in bytes of the hash tree for `data_blocks` data blocks.
#[cfg(test)]
pub fn tree_size(data_blocks: u64) -> u64 {
    level_blocks(data_blocks).iter().sum::<u64>() * BLOCK
}

fn check_data_size(data_size: u64) -> Result<u64, String> {
    if data_size == 0 {
        return Err("dm-verity: the data is empty".to_string());
    }
    if !data_size.is_multiple_of(BLOCK) {
        return Err(format!("dm-verity: data size {data_size} is not a multiple of {BLOCK} (pad it with zeros first)"));
    }
    Ok(data_size / BLOCK)
}

/// Digest of every data block (the contents of level 0), read block by block.
fn data_digests(data: &mut impl Read, data_size: u64, salt: &[u8; 32]) -> Result<Vec<[u8; 32]>, String> {
    let blocks = check_data_size(data_size)?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; BLOCK_USIZE];
    for i in 0..blocks {
        data.read_exact(&mut buf).map_err(|e| format!("dm-verity: reading data block {i} (byte {}): {e}", i * BLOCK))?;
        out.push(hash_block(salt, &buf));
    }
    Ok(out)
}

/// Packs digests into zero-padded hash blocks.
fn pack(digests: &[[u8; 32]]) -> Vec<u8> {
    let blocks = digests.len().div_ceil(DIGESTS_PER_BLOCK as usize);
    let mut out = vec![0u8; blocks * BLOCK_USIZE];
    for (slot, d) in out.chunks_exact_mut(DIGEST).zip(digests) {
        slot.copy_from_slice(d);
    }
    out
}

/// Builds the tree from the level 0 digests: (tree bytes, top level first; root).
fn tree_from_digests(level0: Vec<[u8; 32]>, salt: &[u8; 32]) -> ([u8; 32], Vec<u8>) {
    let counts = level_blocks(level0.len() as u64);
    let mut levels: Vec<Vec<u8>> = Vec::with_capacity(counts.len());
    let mut cur = level0;
    for _ in &counts {
        let bytes = pack(&cur);
        cur = bytes.chunks_exact(BLOCK_USIZE).map(|b| hash_block(salt, b)).collect();
        levels.push(bytes);
    }
    // After the last level exactly one digest remains: the root. (With one
    // data block there are no levels and it is that block's digest.)
    let root = cur.first().copied().unwrap_or([0; 32]);
    let tree = levels.into_iter().rev().flatten().collect();
    (root, tree)
}

/// Computes the hash tree of `data_size` bytes read from `data` (a multiple
/// of 4096; data is read one block at a time). Returns the tree bytes (top
/// level first, no superblock) and the root hash.
pub fn build_tree(data: &mut impl Read, data_size: u64, salt: [u8; 32]) -> Result<(Vec<u8>, [u8; 32]), String> {
    let level0 = data_digests(data, data_size, &salt)?;
    let (root, tree) = tree_from_digests(level0, &salt);
    Ok((tree, root))
}

/// SHA-256 of the first `len` bytes of `file`.
pub(crate) fn sha256_prefix(file: &mut File, len: u64, what: &Path) -> Result<[u8; 32], String> {
    file.seek(SeekFrom::Start(0)).map_err(|e| format!("{}: seek: {e}", what.display()))?;
    let mut h = Sha256::new();
    let mut r = BufReader::new(file.take(len));
    let mut buf = vec![0u8; 64 * 1024];
    let mut done = 0u64;
    loop {
        let n = r.read(&mut buf).map_err(|e| format!("{}: read: {e}", what.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        done += n as u64;
    }
    if done != len {
        return Err(format!("{}: ended at byte {done}, expected {len}", what.display()));
    }
    Ok(h.finalize().into())
}

/// Pads `image` with zeros to a multiple of 4096 bytes, then appends its
/// hash tree (no superblock). `salt: None` uses [`default_salt`] of the
/// padded data. Calling it twice on one file hashes the first tree as data.
pub fn append_tree(image: &Path, salt: Option<[u8; 32]>) -> Result<VerityParams, String> {
    let name = image.display();
    let mut file = OpenOptions::new().read(true).write(true).open(image).map_err(|e| format!("{name}: open: {e}"))?;
    let len = file.metadata().map_err(|e| format!("{name}: stat: {e}"))?.len();
    if len == 0 {
        return Err(format!("{name}: image is empty"));
    }
    let data_size = len.div_ceil(BLOCK) * BLOCK;
    if data_size != len {
        file.seek(SeekFrom::End(0)).map_err(|e| format!("{name}: seek: {e}"))?;
        file.write_all(&vec![0u8; (data_size - len) as usize]).map_err(|e| format!("{name}: padding to {BLOCK} bytes: {e}"))?;
    }
    let salt = match salt {
        Some(s) => s,
        None => default_salt(&sha256_prefix(&mut file, data_size, image)?),
    };
    file.seek(SeekFrom::Start(0)).map_err(|e| format!("{name}: seek: {e}"))?;
    let (tree, root) = {
        let mut r = BufReader::new((&mut file).take(data_size));
        build_tree(&mut r, data_size, salt).map_err(|e| format!("{name}: {e}"))?
    };
    file.seek(SeekFrom::Start(data_size)).map_err(|e| format!("{name}: seek: {e}"))?;
    file.write_all(&tree).map_err(|e| format!("{name}: writing hash tree: {e}"))?;
    file.sync_all().map_err(|e| format!("{name}: sync: {e}"))?;
    Ok(VerityParams { data_blocks: data_size / BLOCK, hash_offset: data_size, salt, root })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::process::Command;

    fn xorshift_bytes(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed | 1;
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.truncate(len);
        out
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("berth-verity-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn need_veritysetup() {
        crate::tools::require_command("veritysetup", "cryptsetup-bin");
    }

    fn common_args(salt: &[u8; 32]) -> Vec<String> {
        ["--no-superblock", "--data-block-size=4096", "--hash-block-size=4096", "--hash=sha256"]
            .iter()
            .map(|s| s.to_string())
            .chain([format!("--salt={}", hex(salt))])
            .collect()
    }

    #[test]
    fn level_counts_match_kernel_rule() {
        assert_eq!(level_blocks(1), Vec::<u64>::new());
        assert_eq!(level_blocks(2), vec![1]);
        assert_eq!(level_blocks(128), vec![1]);
        assert_eq!(level_blocks(129), vec![2, 1]);
        assert_eq!(level_blocks(70000), vec![547, 5, 1]);
        assert_eq!(level_blocks(u64::MAX).len(), 10);
    }

    #[test]
    fn rejects_bad_sizes_and_short_input() {
        assert!(build_tree(&mut &[][..], 0, [0; 32]).unwrap_err().contains("empty"));
        assert!(build_tree(&mut &[0u8; 100][..], 100, [0; 32]).unwrap_err().contains("multiple"));
        let e = build_tree(&mut &[0u8; 4096][..], 8192, [0; 32]).unwrap_err();
        assert!(e.contains("block 1"), "{e}");
    }

    #[test]
    fn table_line_format() {
        let p = VerityParams { data_blocks: 3, hash_offset: 3 * 4096, salt: [0xab; 32], root: [0x01; 32] };
        assert_eq!(table_line(&p, "/dev/vda2", "/dev/vda2"), format!("1 /dev/vda2 /dev/vda2 4096 4096 3 3 sha256 {} {}", "01".repeat(32), "ab".repeat(32)));
    }

    #[test]
    fn matches_veritysetup() {
        need_veritysetup();
        let dir = scratch("format");
        for (i, blocks) in [1u64, 2, 128, 129, 200, 70000].into_iter().enumerate() {
            let data = xorshift_bytes(0x9e37_79b9 + i as u64, (blocks * BLOCK) as usize);
            let salt: [u8; 32] = xorshift_bytes(77 + i as u64, 32).try_into().unwrap();
            let data_path = dir.join(format!("data{blocks}"));
            let hash_path = dir.join(format!("hash{blocks}"));
            std::fs::write(&data_path, &data).unwrap();
            let _ = std::fs::remove_file(&hash_path);
            let out = Command::new("veritysetup").arg("format").args(common_args(&salt)).arg(&data_path).arg(&hash_path).output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let stdout = String::from_utf8_lossy(&out.stdout);
            let their_root = stdout.lines().find_map(|l| l.strip_prefix("Root hash:")).map(|s| s.trim().to_string()).expect("Root hash line");
            let (tree, root) = build_tree(&mut &data[..], blocks * BLOCK, salt).unwrap();
            assert_eq!(hex(&root), their_root, "{blocks} blocks: root");
            let theirs = std::fs::read(&hash_path).unwrap();
            assert_eq!(tree.len() as u64, tree_size(blocks));
            assert!(theirs.len() >= tree.len(), "{blocks} blocks: their hash file is shorter");
            assert_eq!(&theirs[..tree.len()], &tree[..], "{blocks} blocks: tree bytes");
            assert!(theirs[tree.len()..].iter().all(|&b| b == 0), "{blocks} blocks: their tail");

            // veritysetup verify accepts our separate hash file...
            std::fs::write(&hash_path, &tree).unwrap();
            if blocks > 1 {
                let st = Command::new("veritysetup").arg("verify").args(common_args(&salt)).arg(&data_path).arg(&hash_path).arg(hex(&root)).status().unwrap();
                assert!(st.success(), "{blocks} blocks: verify with separate hash file");
            }

            // ...and the tree appended to the data (odd size: append_tree pads).
            let img = dir.join(format!("img{blocks}"));
            std::fs::write(&img, &data[..data.len() - 100]).unwrap();
            let p = append_tree(&img, Some(salt)).unwrap();
            assert_eq!(p, VerityParams { data_blocks: blocks, hash_offset: blocks * BLOCK, salt, root: p.root });
            let verify = |root: &[u8; 32]| {
                Command::new("veritysetup")
                    .arg("verify")
                    .args(common_args(&salt))
                    .arg(format!("--hash-offset={}", p.hash_offset))
                    .arg(format!("--data-blocks={}", p.data_blocks))
                    .arg(&img)
                    .arg(&img)
                    .arg(hex(root))
                    .output()
                    .unwrap()
            };
            let out = verify(&p.root);
            assert!(out.status.success(), "{blocks} blocks appended: {}", String::from_utf8_lossy(&out.stderr));
            let mut wrong = p.root;
            wrong[0] ^= 1;
            assert!(!verify(&wrong).status.success(), "{blocks} blocks: wrong root accepted");
            let _ = std::fs::remove_file(&img);
            let _ = std::fs::remove_file(&data_path);
            let _ = std::fs::remove_file(&hash_path);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn default_salt_is_reproducible() {
        let dir = scratch("salt");
        let a = dir.join("a");
        let b = dir.join("b");
        let data = xorshift_bytes(9, 10_000);
        std::fs::write(&a, &data).unwrap();
        std::fs::write(&b, &data).unwrap();
        let pa = append_tree(&a, None).unwrap();
        let pb = append_tree(&b, None).unwrap();
        assert_eq!(pa, pb);
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        let mut padded = data.clone();
        padded.resize(3 * 4096, 0);
        let digest: [u8; 32] = Sha256::digest(&padded).into();
        assert_eq!(pa.salt, default_salt(&digest));
        assert!(append_tree(&dir.join("missing"), None).unwrap_err().contains("missing"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
