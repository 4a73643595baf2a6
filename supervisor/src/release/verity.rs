//! Verified image devices: a read-only loop device over an image file, and a
//! dm-verity mapping over it, set up with the kernel's ioctls (no tools on the
//! device).
//!
//! It must not decide which images are mapped: [`crate::release::images`] asks it.
//!
//! An image file is a squashfs followed by its hash tree (see xtask's image
//! builder); the release gives the size, the verity root hash and the salt.
//! Every block read through the mapping is checked against the tree; a
//! corrupted block reads as EIO for whoever mounted that image alone.
//!
//! The device-mapper request buffers are built by pure functions below (byte
//! layout tested without root); [`crate::sys`] performs the ioctls.

use crate::release::Image;
use crate::sys;
use core::fmt::Write as _;
use nix::errno::Errno;
use std::os::fd::AsFd;

/// Data and hash block size used by berth's images.
pub const BLOCK: u64 = 4096;
/// `struct dm_ioctl` is 312 bytes on every architecture.
pub const DM_IOCTL_LEN: usize = 312;
/// `struct dm_target_spec` is 40 bytes.
const DM_SPEC_LEN: usize = 40;
/// Interface version berth speaks (4.0.0; the kernel accepts any 4.x minor).
const DM_VERSION: [u32; 3] = [4, 0, 0];
/// `DM_READONLY_FLAG`.
pub const DM_READONLY: u32 = 1 << 0;
/// `DM_DEFERRED_REMOVE`: a device still open is removed when its last user
/// closes it.
pub const DM_DEFERRED_REMOVE: u32 = 1 << 17;
/// Room for the verity table line.
const PARAMS_MAX: usize = 400;
/// A whole table-load request.
pub const REQUEST_MAX: usize = DM_IOCTL_LEN + DM_SPEC_LEN + PARAMS_MAX;

/// One request buffer for the device-mapper control device.
pub type Request = heapless::Vec<u8, REQUEST_MAX>;

/// The hash tree's size for `data_blocks` (levels of 128 SHA-256 hashes per
/// 4 KiB block, until one block holds the top level).
pub fn tree_blocks(data_blocks: u64) -> u64 {
    let per = BLOCK / 32;
    let mut total = 0;
    let mut level = data_blocks;
    while level > 1 {
        level = level.div_ceil(per);
        total += level;
    }
    total
}

/// Data blocks of an image of `size` bytes (data + tree), if the size is consistent.
pub fn data_blocks(size: u64) -> Option<u64> {
    if size == 0 || !size.is_multiple_of(BLOCK) {
        return None;
    }
    let total = size / BLOCK;
    // Find d with d + tree(d) == total; tree(d) < d/127 + levels, so search near.
    let mut d = total.saturating_sub(total / 127 + 8);
    while d <= total {
        if d + tree_blocks(d) == total {
            return Some(d);
        }
        d += 1;
    }
    None
}

/// Most levels of a hash tree (128 digests per block: 10 levels cover 2^64 blocks).
const LEVELS_MAX: usize = 10;

/// Hash blocks of each level of the tree, level 0 (over the data) first; empty
/// for one data block. The kernel's rule: the smallest `n` levels with
/// `(data_blocks - 1) >> (7 * n) == 0`.
pub fn level_blocks(data_blocks: u64) -> heapless::Vec<u64, LEVELS_MAX> {
    let mut out = heapless::Vec::new();
    let mut level = data_blocks;
    while level > 1 {
        level = level.div_ceil(BLOCK / 32);
        if out.push(level).is_err() {
            break;
        }
    }
    out
}

/// Why an image's hash tree does not check out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeError {
    /// The size is no whole number of blocks of data plus its tree.
    Size,
    /// The file could not be read.
    Read(std::io::ErrorKind),
    /// A block's digest differs from the one stored one level up
    /// (`level` 0: a data block).
    Block { level: usize, index: u64 },
    /// The top of the tree does not hash to the release's root.
    Root,
}

impl core::fmt::Display for TreeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TreeError::Size => write!(f, "its size is not data plus a hash tree of {BLOCK}-byte blocks"),
            TreeError::Read(k) => write!(f, "read failed: {k}"),
            TreeError::Block { level: 0, index } => {
                write!(f, "data block {index} does not match its hash in the tree")
            }
            TreeError::Block { level, index } => write!(f, "hash block {index} of level {} does not match the level above", level - 1),
            TreeError::Root => write!(f, "the hash tree's root differs from the release's verity root"),
        }
    }
}

fn salted(salt: &[u8; 32], block: &[u8]) -> [u8; 32] {
    use sha2::{Digest as _, Sha256};
    let mut h = Sha256::new();
    h.update(salt);
    h.update(block);
    h.finalize().into()
}

/// Check the dm-verity tree of the image stored at byte `base` of `file`
/// against the release's size, salt and root, reading one block at a time:
/// every data block against level 0, each level against the one above, the
/// top block against the root. Nothing is mapped; no privileges needed.
pub fn check_tree(file: &std::fs::File, base: u64, img: &Image) -> Result<(), TreeError> {
    use std::os::unix::fs::FileExt;
    let data = data_blocks(img.size).ok_or(TreeError::Size)?;
    let counts = level_blocks(data);
    let mut block = [0u8; BLOCK as usize];
    let mut parent = [0u8; BLOCK as usize];
    let read = |buf: &mut [u8], n: u64| {
        let at = n.checked_mul(BLOCK).and_then(|o| o.checked_add(base)).ok_or(TreeError::Size)?;
        file.read_exact_at(buf, at).map_err(|e| TreeError::Read(e.kind()))
    };
    // The hash area follows the data, highest level first.
    let (mut child_start, mut child_count) = (0u64, data);
    for (level, _) in counts.iter().enumerate() {
        let above: u64 = counts.iter().skip(level + 1).sum();
        let start = data.saturating_add(above);
        for i in 0..child_count {
            read(&mut block, child_start.saturating_add(i))?;
            let slot = (i % (BLOCK / 32)) as usize * 32;
            if slot == 0 {
                read(&mut parent, start.saturating_add(i / (BLOCK / 32)))?;
            }
            if parent.get(slot..slot + 32) != Some(&salted(&img.verity_salt, &block)[..]) {
                return Err(TreeError::Block { level, index: i });
            }
        }
        child_start = start;
        child_count = counts.get(level).copied().unwrap_or(1);
    }
    read(&mut block, child_start)?;
    if salted(&img.verity_salt, &block) != img.verity_root {
        return Err(TreeError::Root);
    }
    Ok(())
}

/// Test images: `data` (whole blocks) followed by its tree, and the root.
#[cfg(test)]
pub fn build_image(data: &[u8], salt: &[u8; 32]) -> (std::vec::Vec<u8>, [u8; 32]) {
    let bs = BLOCK as usize;
    assert!(!data.is_empty() && data.len().is_multiple_of(bs));
    let mut levels: std::vec::Vec<std::vec::Vec<u8>> = std::vec::Vec::new();
    let mut cur: std::vec::Vec<[u8; 32]> = data.chunks(bs).map(|b| salted(salt, b)).collect();
    while cur.len() > 1 {
        let mut bytes: std::vec::Vec<u8> = cur.iter().flatten().copied().collect();
        bytes.resize(bytes.len().div_ceil(bs) * bs, 0);
        cur = bytes.chunks(bs).map(|b| salted(salt, b)).collect();
        levels.push(bytes);
    }
    let mut out = data.to_vec();
    for l in levels.iter().rev() {
        out.extend_from_slice(l);
    }
    (out, cur[0])
}

fn hex(out: &mut impl core::fmt::Write, bytes: &[u8]) {
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
}

/// The dm-verity table parameters for an image on `dev` (data and tree on the
/// same device, the tree right after the data).
pub fn table_params(dev: &str, img: &Image) -> Result<heapless::String<PARAMS_MAX>, Errno> {
    let data = data_blocks(img.size).ok_or(Errno::EINVAL)?;
    let mut s = heapless::String::new();
    let r = write!(s, "1 {dev} {dev} {BLOCK} {BLOCK} {data} {data} sha256 ");
    hex(&mut s, &img.verity_root);
    let _ = s.push(' ');
    hex(&mut s, &img.verity_salt);
    if r.is_err() || s.len() >= PARAMS_MAX - 1 {
        return Err(Errno::ENAMETOOLONG);
    }
    Ok(s)
}

/// A `struct dm_ioctl` header for `name`, with `extra` bytes of payload after it.
pub fn header(name: &str, flags: u32, target_count: u32, extra: usize) -> Result<Request, Errno> {
    if name.is_empty() || name.len() >= 128 {
        return Err(Errno::ENAMETOOLONG);
    }
    let mut b = Request::new();
    b.resize(DM_IOCTL_LEN, 0).map_err(|_| Errno::ENOMEM)?;
    let size = u32::try_from(DM_IOCTL_LEN + extra).map_err(|_| Errno::EINVAL)?;
    let put = |b: &mut Request, at: usize, v: u32| {
        if let Some(dst) = b.get_mut(at..at + 4) {
            dst.copy_from_slice(&v.to_ne_bytes());
        }
    };
    put(&mut b, 0, DM_VERSION[0]);
    put(&mut b, 4, DM_VERSION[1]);
    put(&mut b, 8, DM_VERSION[2]);
    put(&mut b, 12, size); // data_size
    put(&mut b, 16, DM_IOCTL_LEN as u32); // data_start
    put(&mut b, 20, target_count);
    put(&mut b, 28, flags);
    if let Some(dst) = b.get_mut(48..48 + name.len()) {
        dst.copy_from_slice(name.as_bytes());
    }
    Ok(b)
}

/// A table-load request: one verity target over `sectors` 512-byte sectors.
pub fn table_load(name: &str, sectors: u64, params: &str) -> Result<Request, Errno> {
    // params + NUL, padded so the spec list ends 8-aligned.
    let plen = (params.len() + 1).next_multiple_of(8);
    let mut b = header(name, DM_READONLY, 1, DM_SPEC_LEN + plen)?;
    let mut spec = [0u8; DM_SPEC_LEN];
    spec[..8].copy_from_slice(&0u64.to_ne_bytes()); // sector_start
    spec[8..16].copy_from_slice(&sectors.to_ne_bytes()); // length
                                                         // status (i32) stays 0; next (u32) 0: the only target.
    spec[24..30].copy_from_slice(b"verity");
    b.extend_from_slice(&spec).map_err(|_| Errno::E2BIG)?;
    b.extend_from_slice(params.as_bytes()).map_err(|_| Errno::E2BIG)?;
    b.resize(DM_IOCTL_LEN + DM_SPEC_LEN + plen, 0).map_err(|_| Errno::E2BIG)?;
    Ok(b)
}

/// The device number the kernel returned in a dm_ioctl reply.
pub fn reply_dev(b: &[u8]) -> Option<u64> {
    b.get(40..48).and_then(|s| s.try_into().ok()).map(u64::from_ne_bytes)
}

/// Split a Linux `dev_t` (as the dm interface encodes it) into major and minor.
pub fn dev_split(dev: u64) -> (u64, u64) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major, minor)
}

/// A verified, read-only block device for an image: its node path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub loop_path: heapless::String<32>,
    pub dm_name: heapless::String<64>,
    /// `/dev/dm-N`, created by devtmpfs.
    pub path: heapless::String<32>,
}

/// Which step of the setup failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    OpenImage,
    LoopControl,
    LoopGetFree,
    OpenLoop,
    LoopConfigure,
    Table,
    MapperControl,
    Create,
    Load,
    Resume,
}

/// Set up loop + dm-verity for `file`, named `name` in device-mapper.
pub fn open(file: &str, name: &str, img: &Image) -> Result<Device, (Step, Errno)> {
    use std::fs::OpenOptions;
    let io = |e: std::io::Error| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
    let backing = std::fs::File::open(file).map_err(|e| (Step::OpenImage, io(e)))?;
    let meta = backing.metadata().map_err(|e| (Step::OpenImage, io(e)))?;
    if meta.len() != img.size {
        return Err((Step::OpenImage, Errno::EBADMSG));
    }
    let ctl = OpenOptions::new().read(true).write(true).open("/dev/loop-control").map_err(|e| (Step::LoopControl, io(e)))?;
    let n = sys::loop_get_free(ctl.as_fd()).map_err(|e| (Step::LoopGetFree, e))?;
    let mut loop_path = heapless::String::new();
    let _ = write!(loop_path, "/dev/loop{n}");
    let lo = OpenOptions::new().read(true).open(loop_path.as_str()).map_err(|e| (Step::OpenLoop, io(e)))?;
    sys::loop_configure_ro(lo.as_fd(), backing.as_fd(), BLOCK as u32).map_err(|e| (Step::LoopConfigure, e))?;

    let (dm_name, path) = map(&loop_path, name, img)?;
    Ok(Device { loop_path, dm_name, path })
}

/// Map `dev` (data then hash tree, as for an image file) as the read-only
/// dm-verity device `name`: its device-mapper name and `/dev/dm-N` path.
/// Also used for a system image on its own partition (no loop device).
pub fn map(dev: &str, name: &str, img: &Image) -> Result<(heapless::String<64>, heapless::String<32>), (Step, Errno)> {
    use std::fs::OpenOptions;
    let io = |e: std::io::Error| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
    let params = table_params(dev, img).map_err(|e| (Step::Table, e))?;
    let data = data_blocks(img.size).ok_or((Step::Table, Errno::EINVAL))?;
    let sectors = data * (BLOCK / 512);
    let mapper = OpenOptions::new().read(true).write(true).open("/dev/mapper/control").map_err(|e| (Step::MapperControl, io(e)))?;
    let mut create = header(name, DM_READONLY, 0, 0).map_err(|e| (Step::Create, e))?;
    sys::dm_ioctl(mapper.as_fd(), sys::DmCmd::DevCreate, &mut create).map_err(|e| (Step::Create, e))?;
    let live = (|| {
        let mut load = table_load(name, sectors, &params).map_err(|e| (Step::Table, e))?;
        sys::dm_ioctl(mapper.as_fd(), sys::DmCmd::TableLoad, &mut load).map_err(|e| (Step::Load, e))?;
        // DM_DEV_SUSPEND without the suspend flag resumes: the new table goes live.
        let mut resume = header(name, DM_READONLY, 0, 0).map_err(|e| (Step::Resume, e))?;
        sys::dm_ioctl(mapper.as_fd(), sys::DmCmd::DevSuspend, &mut resume).map_err(|e| (Step::Resume, e))?;
        Ok(resume)
    })();
    let resume = match live {
        Ok(r) => r,
        Err(e) => {
            // The first error is the one reported; the loop device clears
            // itself when `lo` closes (nothing else holds it).
            let _ = remove(name);
            return Err(e);
        }
    };
    let (_, minor) = dev_split(reply_dev(&resume).unwrap_or(0));
    let mut path = heapless::String::new();
    let _ = write!(path, "/dev/dm-{minor}");
    let mut dm_name = heapless::String::new();
    let _ = dm_name.push_str(name);
    Ok((dm_name, path))
}

/// Remove the device-mapper device `name`, deferred: a device still open
/// (mounted, or held by a container's mount namespace) goes when its last
/// user closes it. Its loop device, set to clear itself, goes with it.
pub fn remove(name: &str) -> Result<(), Errno> {
    use std::fs::OpenOptions;
    let mapper = OpenOptions::new().read(true).write(true).open("/dev/mapper/control").map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
    let mut req = header(name, DM_DEFERRED_REMOVE, 0, 0)?;
    sys::dm_ioctl(mapper.as_fd(), sys::DmCmd::DevRemove, &mut req)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::manifest::Digest;

    fn img(size: u64) -> Image {
        Image { sha256: Digest([1; 32]), size, verity_root: [0xab; 32], verity_salt: [0x01; 32] }
    }

    #[test]
    fn tree_sizes_match_the_kernel_layout() {
        assert_eq!(tree_blocks(1), 0);
        assert_eq!(tree_blocks(2), 1);
        assert_eq!(tree_blocks(128), 1);
        assert_eq!(tree_blocks(129), 2 + 1);
        assert_eq!(tree_blocks(70_000), 547 + 5 + 1);
        for d in [1u64, 2, 127, 128, 129, 200, 16_384, 16_385, 70_000] {
            assert_eq!(data_blocks((d + tree_blocks(d)) * BLOCK), Some(d), "{d}");
        }
        assert_eq!(data_blocks(4095), None);
        assert_eq!(data_blocks(0), None);
    }

    #[test]
    fn trees_are_checked_block_by_block() {
        let salt = [9u8; 32];
        for blocks in [1usize, 2, 128, 129, 300] {
            let data: std::vec::Vec<u8> = (0..blocks * 4096).map(|i| (i / 7) as u8 ^ (i / 4096) as u8).collect();
            let (file, root) = build_image(&data, &salt);
            assert_eq!(level_blocks(blocks as u64).iter().sum::<u64>(), tree_blocks(blocks as u64));
            let path = std::env::temp_dir().join(format!("berth-verity-{}-{blocks}", std::process::id()));
            // At an offset, as inside a bundle.
            let mut bytes = vec![0xee; 10];
            bytes.extend_from_slice(&file);
            std::fs::write(&path, &bytes).unwrap();
            let image = Image { sha256: Digest([0; 32]), size: file.len() as u64, verity_root: root, verity_salt: salt };
            let f = std::fs::File::open(&path).unwrap();
            assert_eq!(check_tree(&f, 10, &image), Ok(()), "{blocks}");
            assert_eq!(check_tree(&f, 10, &Image { verity_root: [0; 32], ..image }), Err(TreeError::Root));
            assert_eq!(check_tree(&f, 10, &Image { size: image.size + 1, ..image }), Err(TreeError::Size));
            // A changed data byte is found in level 0 (or at the root, for one block).
            let mut bad = bytes.clone();
            bad[10 + 4096 * (blocks - 1) + 5] ^= 1;
            std::fs::write(&path, &bad).unwrap();
            let want = if blocks == 1 { TreeError::Root } else { TreeError::Block { level: 0, index: blocks as u64 - 1 } };
            assert_eq!(check_tree(&std::fs::File::open(&path).unwrap(), 10, &image), Err(want));
            // A changed hash byte in the last hash block.
            if blocks > 1 {
                let mut bad = bytes.clone();
                let last = bad.len() - 4096 + 3;
                bad[last] ^= 1;
                std::fs::write(&path, &bad).unwrap();
                let r = check_tree(&std::fs::File::open(&path).unwrap(), 10, &image);
                assert!(matches!(r, Err(TreeError::Block { .. }) | Err(TreeError::Root)), "{blocks}: {r:?}");
            }
            std::fs::remove_file(&path).unwrap();
        }
    }

    #[test]
    fn verity_table_line() {
        let p = table_params("/dev/loop3", &img((200 + tree_blocks(200)) * BLOCK)).unwrap();
        let want = format!("1 /dev/loop3 /dev/loop3 4096 4096 200 200 sha256 {} {}", "ab".repeat(32), "01".repeat(32));
        assert_eq!(p.as_str(), want);
        assert_eq!(table_params("/dev/loop3", &img(12345)), Err(Errno::EINVAL));
    }

    #[test]
    fn dm_ioctl_layout() {
        let h = header("berth-sensor", DM_READONLY, 0, 0).unwrap();
        assert_eq!(h.len(), 312);
        let u = |at: usize| u32::from_ne_bytes(h[at..at + 4].try_into().unwrap());
        assert_eq!((u(0), u(4), u(8)), (4, 0, 0));
        assert_eq!(u(12), 312); // data_size
        assert_eq!(u(16), 312); // data_start
        assert_eq!(u(28), DM_READONLY);
        assert_eq!(&h[48..60], b"berth-sensor");
        assert_eq!(h[60], 0);
        assert!(header(&"x".repeat(128), 0, 0, 0).is_err());
        assert!(header("", 0, 0, 0).is_err());
    }

    #[test]
    fn table_load_layout() {
        let params = "1 /dev/loop0 /dev/loop0 4096 4096 1 1 sha256 aa bb";
        let b = table_load("n", 8, params).unwrap();
        assert_eq!(b.len() % 8, 0);
        let u = |at: usize| u32::from_ne_bytes(b[at..at + 4].try_into().unwrap());
        assert_eq!(u(12) as usize, b.len());
        assert_eq!(u(20), 1); // one target
        let spec = &b[312..352];
        assert_eq!(u64::from_ne_bytes(spec[8..16].try_into().unwrap()), 8);
        assert_eq!(&spec[24..31], b"verity\0");
        assert_eq!(&b[352..352 + params.len()], params.as_bytes());
        assert_eq!(b[352 + params.len()], 0);
    }

    #[test]
    fn dev_numbers() {
        // makedev(253, 3) in the kernel's new encoding.
        let dev = (253u64 << 8) | 3;
        assert_eq!(dev_split(dev), (253, 3));
        let big = ((300u64 & 0xff) | ((300u64 & !0xff) << 12)) | ((254u64 & 0xfff) << 8);
        assert_eq!(dev_split(big), (254, 300));
    }
}
