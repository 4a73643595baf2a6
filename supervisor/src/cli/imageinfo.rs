//! `berth inspect IMAGE` (host build): what an image file is and whether
//! its dm-verity tree holds, from the file alone.
//!
//! It must not change the file or need a device: it reads the image file
//! alone.
//!
//! An image is a squashfs, zero-padded to 4096 bytes, followed by its hash
//! tree (no verity superblock; see xtask's image builder). The data size
//! comes from the squashfs superblock (`bytes_used`), the tree's size from
//! the data size. Without a salt from the release, the salt is the one the
//! builder derives from the data ([`default_salt`]); the root is computed
//! from the top of the tree, then the whole tree is checked with the
//! device's own [`crate::release::verity::check_tree`]. `cargo xtask inspect` prints
//! the same report through this module.

use crate::release::manifest::Digest;
use crate::release::verity::{self, TreeError, BLOCK};
use crate::release::Image;
use sha2::{Digest as _, Sha256};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

const SQUASHFS_MAGIC: &[u8; 4] = b"hsqs";
/// Bytes of the squashfs 4 superblock.
pub const SUPERBLOCK_LEN: usize = 96;

/// The salt an image builder uses when none is given: derived from the
/// SHA-256 of the (zero-padded) data area, so the same data gives the same
/// tree.
pub fn default_salt(data_sha256: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"berth dm-verity salt v1\0");
    h.update(data_sha256);
    h.finalize().into()
}

/// A salt or root hash given as 64 hex digits.
pub fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    crate::release::hex_decode(s, &mut out).then_some(out)
}

/// The fields of the squashfs superblock the report shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Squashfs {
    pub bytes_used: u64,
    pub block_size: u32,
    pub inodes: u32,
    pub compression: u16,
}

impl Squashfs {
    /// Decode a superblock (at least [`SUPERBLOCK_LEN`] bytes).
    pub fn parse(sb: &[u8]) -> Result<Squashfs, InspectError> {
        let bytes = |at: usize, n: usize| sb.get(at..at + n).ok_or(InspectError::Short);
        let u32_at = |at| bytes(at, 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        let u16_at = |at| bytes(at, 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
        if bytes(0, 4)? != SQUASHFS_MAGIC {
            return Err(InspectError::NotSquashfs);
        }
        let major = u16_at(28)?;
        if major != 4 {
            return Err(InspectError::Version(major));
        }
        let mut used = [0u8; 8];
        used.copy_from_slice(bytes(40, 8)?);
        let bytes_used = u64::from_le_bytes(used);
        if bytes_used < SUPERBLOCK_LEN as u64 || bytes_used > u64::MAX - BLOCK {
            return Err(InspectError::BytesUsed(bytes_used));
        }
        Ok(Squashfs { bytes_used, block_size: u32_at(12)?, inodes: u32_at(4)?, compression: u16_at(20)? })
    }

    fn compression_name(&self) -> &'static str {
        match self.compression {
            1 => "gzip",
            2 => "lzma",
            3 => "lzo",
            4 => "xz",
            5 => "lz4",
            6 => "zstd",
            _ => "unknown",
        }
    }
}

/// An image that checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// The whole file, tree included.
    pub size: u64,
    pub sha256: [u8; 32],
    pub squashfs: Squashfs,
    /// Data blocks (the hash tree starts at `data_blocks * 4096`).
    pub data_blocks: u64,
    pub tree_blocks: u64,
    pub salt: [u8; 32],
    /// The salt came from the caller (the release), not from the data.
    pub salt_given: bool,
    pub root: [u8; 32],
    /// The root came from the caller: the tree's top was checked against it.
    pub root_given: bool,
}

/// Why an image does not check out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InspectError {
    /// The file could not be read.
    Read(std::io::ErrorKind),
    /// Shorter than a squashfs superblock.
    Short,
    /// No squashfs magic at the start.
    NotSquashfs,
    /// A squashfs version other than 4.
    Version(u16),
    /// The superblock's `bytes_used` is impossible.
    BytesUsed(u64),
    /// The file is not the data the superblock gives plus its tree.
    Size { size: u64, data: u64, tree: u64 },
    /// The tree does not match, with the salt derived from the data.
    TreeDerived(TreeError),
    /// The tree does not match, with the salt given.
    Tree(TreeError),
}

impl core::fmt::Display for InspectError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            InspectError::Read(k) => write!(f, "read failed: {k}"),
            InspectError::Short => write!(f, "shorter than a squashfs superblock ({SUPERBLOCK_LEN} bytes)"),
            InspectError::NotSquashfs => write!(f, "not a squashfs image (bad magic)"),
            InspectError::Version(v) => write!(f, "squashfs version {v}, expected 4"),
            InspectError::BytesUsed(n) => write!(f, "the squashfs superblock's bytes_used ({n}) is impossible"),
            InspectError::Size { size, data, tree } => {
                write!(f, "the file is {size} bytes, expected {data} of data (the squashfs, padded to {BLOCK}) plus {tree} of hash tree")
            }
            InspectError::TreeDerived(e) => write!(
                f,
                "corrupt: {e} (with the salt derived from the data: the data or the tree was changed; \
                 give the release's salt to name the changed block)"
            ),
            InspectError::Tree(e) => write!(f, "corrupt: {e}"),
        }
    }
}

fn io(e: std::io::Error) -> InspectError {
    InspectError::Read(e.kind())
}

/// Inspect and verify `file`. `salt`: the release's (else derived from the
/// data); `root`: the release's expected root (else the tree's own top).
pub fn inspect(file: &mut File, salt: Option<[u8; 32]>, root: Option<[u8; 32]>) -> Result<Info, InspectError> {
    use std::os::unix::fs::FileExt;
    let size = file.metadata().map_err(io)?.len();
    let mut sb = [0u8; SUPERBLOCK_LEN];
    let mut got = 0;
    while got < SUPERBLOCK_LEN {
        let n = file.read_at(sb.get_mut(got..).unwrap_or_default(), got as u64).map_err(io)?;
        if n == 0 {
            return Err(InspectError::Short);
        }
        got += n;
    }
    let squashfs = Squashfs::parse(&sb)?;
    let data_size = squashfs.bytes_used.div_ceil(BLOCK) * BLOCK;
    let data_blocks = data_size / BLOCK;
    let tree_blocks = verity::tree_blocks(data_blocks);
    let tree = tree_blocks.saturating_mul(BLOCK);
    if data_size.checked_add(tree) != Some(size) {
        return Err(InspectError::Size { size, data: data_size, tree });
    }
    // One pass: the whole file's hash and the data area's.
    let (mut whole, mut data) = (Sha256::new(), Sha256::new());
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut at = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        let chunk = buf.get(..n).unwrap_or_default();
        whole.update(chunk);
        let in_data = data_size.saturating_sub(at).min(n as u64) as usize;
        data.update(chunk.get(..in_data).unwrap_or_default());
        at += n as u64;
    }
    let salt_used = salt.unwrap_or_else(|| default_salt(&data.finalize().into()));
    // The root: the top hash block (the first of the tree), or the only data block.
    let top = if tree_blocks == 0 { 0 } else { data_size };
    let mut block = vec![0u8; BLOCK as usize];
    file.read_exact_at(&mut block, top).map_err(io)?;
    let mut h = Sha256::new();
    h.update(salt_used);
    h.update(&block);
    let own_root: [u8; 32] = h.finalize().into();
    let img = Image { sha256: Digest(whole.finalize().into()), size, verity_root: root.unwrap_or(own_root), verity_salt: salt_used };
    let wrap = |e| {
        if salt.is_some() {
            InspectError::Tree(e)
        } else {
            InspectError::TreeDerived(e)
        }
    };
    verity::check_tree(file, 0, &img).map_err(wrap)?;
    Ok(Info {
        size,
        sha256: img.sha256.0,
        squashfs,
        data_blocks,
        tree_blocks,
        salt: salt_used,
        salt_given: salt.is_some(),
        root: img.verity_root,
        root_given: root.is_some(),
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Info {
    /// The report `berth inspect` and `cargo xtask inspect` print.
    pub fn lines(&self) -> Vec<String> {
        let s = &self.squashfs;
        vec![
            format!("size:        {} bytes", self.size),
            format!("sha256:      {}", hex(&self.sha256)),
            format!("squashfs:    {} bytes used, {} inodes, {}-byte blocks, {}", s.bytes_used, s.inodes, s.block_size, s.compression_name()),
            format!("data blocks: {} of {BLOCK} bytes; hash tree at byte {}, {} blocks", self.data_blocks, self.data_blocks * BLOCK, self.tree_blocks),
            format!("verity salt: {} ({})", hex(&self.salt), if self.salt_given { "given" } else { "derived from the data" }),
            format!("verity root: {}", hex(&self.root)),
            if self.tree_blocks == 0 && !self.root_given {
                "verity:      one data block, no hash tree: only the release's root can check it".to_string()
            } else {
                "verity:      ok (every data and hash block checked)".to_string()
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn superblock(bytes_used: u64) -> Vec<u8> {
        let mut sb = vec![0u8; SUPERBLOCK_LEN];
        sb[0..4].copy_from_slice(SQUASHFS_MAGIC);
        sb[4..8].copy_from_slice(&7u32.to_le_bytes());
        sb[12..16].copy_from_slice(&131072u32.to_le_bytes());
        sb[20..22].copy_from_slice(&4u16.to_le_bytes());
        sb[28..30].copy_from_slice(&4u16.to_le_bytes());
        sb[40..48].copy_from_slice(&bytes_used.to_le_bytes());
        sb
    }

    /// A fake image: a superblock and `blocks` data blocks, its tree appended.
    fn image(blocks: u64) -> (Vec<u8>, [u8; 32], [u8; 32]) {
        let mut data = superblock(blocks * BLOCK - 100);
        data.resize((blocks * BLOCK) as usize, 0);
        for (i, b) in data.iter_mut().enumerate().skip(SUPERBLOCK_LEN) {
            *b = (i * 7 % 251) as u8;
        }
        let salt = default_salt(&Sha256::digest(&data).into());
        let (file, root) = verity::build_image(&data, &salt);
        (file, salt, root)
    }

    fn file_with(name: &str, bytes: &[u8]) -> File {
        let p = std::env::temp_dir().join(format!("berth-imageinfo-{}-{name}", std::process::id()));
        std::fs::write(&p, bytes).unwrap();
        let f = File::open(&p).unwrap();
        let _ = std::fs::remove_file(&p);
        f
    }

    #[test]
    fn good_image_and_each_corruption() {
        for blocks in [1u64, 3, 130] {
            let (bytes, salt, root) = image(blocks);
            let info = inspect(&mut file_with("good", &bytes), None, None).unwrap();
            assert_eq!((info.salt, info.root, info.data_blocks), (salt, root, blocks));
            assert_eq!(info.sha256, <[u8; 32]>::from(Sha256::digest(&bytes)));
            assert_eq!(inspect(&mut file_with("given", &bytes), Some(salt), Some(root)).unwrap().root, root);
            assert!(info.lines().iter().any(|l| l == &format!("verity root: {}", hex(&root))));

            let wrong_root = inspect(&mut file_with("root", &bytes), Some(salt), Some([9; 32])).unwrap_err();
            assert_eq!(wrong_root, InspectError::Tree(TreeError::Root));
            // A changed byte in the last data block: named exactly with the salt.
            let mut bad = bytes.clone();
            let at = (blocks * BLOCK - 10) as usize;
            bad[at] ^= 1;
            let e = inspect(&mut file_with("bad", &bad), Some(salt), Some(root)).unwrap_err();
            if blocks == 1 {
                assert_eq!(e, InspectError::Tree(TreeError::Root));
            } else {
                assert_eq!(e, InspectError::Tree(TreeError::Block { level: 0, index: blocks - 1 }));
            }
            // Without the salt the derived one no longer fits (one block
            // has no tree: nothing to check it against but a given root).
            let r = inspect(&mut file_with("bad2", &bad), None, None);
            if blocks == 1 {
                assert!(r.unwrap().lines().iter().any(|l| l.contains("no hash tree")));
            } else {
                let e = r.unwrap_err();
                assert!(matches!(e, InspectError::TreeDerived(_)), "{e}");
                assert!(e.to_string().starts_with("corrupt: "), "{e}");
            }
            // Truncated.
            let e = inspect(&mut file_with("short", &bytes[..bytes.len() - 1]), None, None).unwrap_err();
            assert!(matches!(e, InspectError::Size { .. }), "{e}");
        }
        assert_eq!(inspect(&mut file_with("zero", &[0u8; 8192]), None, None).unwrap_err(), InspectError::NotSquashfs);
        assert_eq!(inspect(&mut file_with("tiny", b"hsqs"), None, None).unwrap_err(), InspectError::Short);
        let mut v3 = superblock(4096);
        v3[28] = 3;
        assert_eq!(Squashfs::parse(&v3).unwrap_err(), InspectError::Version(3));
        assert_eq!(Squashfs::parse(&superblock(10)).unwrap_err(), InspectError::BytesUsed(10));
    }
}
