//! Update bundles: a signed release and the images it needs, in one stream.
//!
//! It must not use anything the bundle claims before checking it against the
//! signed release, and it must not hold an image in memory.
//!
//! A bundle is read front to back once: its header and release are small and
//! bounded, the images are hashed while they are copied and are never held in
//! memory. Everything a bundle claims outside the signed release (the image
//! table) is checked against the release before it is used.
//!
//! # Format (format 1)
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `BRTU` |
//! | 4 | 1 | format, `1` |
//! | 5 | 1 | image count `n`, at most [`FILES_MAX`] (the container images and a system payload's three parts) |
//! | 6 | 4 | release object length `r`, u32 little-endian, at most [`OBJECT_MAX`] |
//! | 10 | r | the signed release object, byte for byte as [`super::sign`] makes it |
//! | 10+r | 40·n | image table: SHA-256 (32 bytes) and size (u64 little-endian) of each image carried |
//! | ... | | the images' bytes, in table order, nothing after the last |
//!
//! A bundle carries only the images the target device lacks (`cargo xtask
//! bundle --only-new-against`); every image of the release must be either in
//! the bundle or already on the device. Images are at most [`IMAGE_MAX`]
//! bytes.
//!
//! # Checking order
//!
//! Header (magic, format, counts, lengths) -> release (signed by a trusted
//! key, valid, for this board, newer than what is installed, see
//! [`check_release`]) -> table against the release ([`check_table`]) -> each
//! image's size, SHA-256 and dm-verity tree while it streams in
//! ([`check_image`]) -> nothing after the last image. Every refusal is one
//! [`BundleError`] variant; its text is what the device logs and what `berth
//! verify` prints.

use super::{check_version, decode_release, Image, Release, ReleaseError, TrustedKeys, Verified, CONTAINERS_MAX, OBJECT_MAX};
use crate::release::manifest::Digest;
use crate::release::verity::TreeError;
use core::fmt;
use sha2::{Digest as _, Sha256};
use std::io::{self, Read, Write};

/// Magic bytes at the start of a bundle.
pub const MAGIC: [u8; 4] = *b"BRTU";
/// The bundle format this build reads and writes.
pub const FORMAT: u8 = 1;
/// Fixed header length before the release object.
pub const HEADER_LEN: usize = 10;
/// One image table entry.
pub const ENTRY_LEN: usize = 40;
/// Largest image a bundle may carry (4 GiB).
pub const IMAGE_MAX: u64 = 1 << 32;
/// Most files a bundle carries: every container image and the three
/// parts of a system payload.
pub const FILES_MAX: usize = CONTAINERS_MAX + 3;
/// Copy buffer for image bytes.
pub const CHUNK: usize = 64 * 1024;

/// One image carried by a bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableEntry {
    pub sha256: Digest,
    pub size: u64,
}

/// A bundle's header: the signed release (not yet checked) and the image table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub release: std::vec::Vec<u8>,
    pub images: heapless::Vec<TableEntry, FILES_MAX>,
}

impl Header {
    /// Bytes of the header, release and table: where the first image starts.
    pub fn len(&self) -> u64 {
        (HEADER_LEN + self.release.len() + ENTRY_LEN * self.images.len()) as u64
    }

    /// The header always holds at least its fixed part.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Why a bundle was refused. Each check has its own variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BundleError {
    /// The bundle could not be read.
    Read(io::ErrorKind),
    /// The bundle ends inside its header, release or table.
    Truncated {
        part: &'static str,
    },
    BadMagic,
    UnsupportedFormat(u8),
    TooManyImages(usize),
    ReleaseTooLarge(usize),
    /// The bundle carries no release at all.
    Unsigned,
    /// The release failed a check (envelope, key, signature, contents).
    Release(ReleaseError),
    WrongBoard {
        release: std::string::String,
        device: std::string::String,
    },
    /// Not newer than the installed release, and no downgrade marker allows it.
    TooOld {
        release: u64,
        installed: u64,
    },
    /// Below the floor through a downgrade marker, but a committed
    /// downgrade already spent the marker's floor.
    MarkerSpent {
        release: u64,
        floor: u64,
    },
    /// The table names an image the release does not list.
    ImageNotInRelease(Digest),
    /// The table lists an image twice.
    DuplicateImage(Digest),
    /// The table's size for an image differs from the release's.
    ImageSize {
        image: Digest,
        bundle: u64,
        release: u64,
    },
    ImageTooLarge {
        image: Digest,
        size: u64,
    },
    /// The bundle ends inside an image.
    ImageTruncated(Digest),
    /// An image's bytes do not hash to the release's SHA-256.
    ImageMismatch(Digest),
    /// An image's dm-verity tree does not check out.
    Verity {
        image: Digest,
        error: TreeError,
    },
    /// Bytes after the last image.
    TrailingBytes,
}

impl fmt::Display for BundleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use BundleError::*;
        match self {
            Read(k) => write!(f, "bundle could not be read: {k}"),
            Truncated { part } => write!(f, "bundle is truncated in its {part}"),
            BadMagic => write!(f, "not a berth update bundle (bad magic)"),
            UnsupportedFormat(v) => write!(f, "bundle format {v} is not supported (expected {FORMAT})"),
            TooManyImages(n) => write!(f, "bundle lists {n} images, more than the {FILES_MAX} allowed"),
            ReleaseTooLarge(n) => write!(f, "bundle's release is {n} bytes, more than the {OBJECT_MAX} allowed"),
            Unsigned => write!(f, "bundle carries no signed release"),
            Release(e) => write!(f, "{e}"),
            WrongBoard { release, device } => write!(f, "release is for board {release}, this device is {device}"),
            TooOld { release, installed } => {
                write!(f, "release version {release} is not newer than the installed version {installed} and no downgrade marker allows it")
            }
            MarkerSpent { release, floor } => {
                write!(f, "release version {release}'s downgrade marker for floor {floor} is spent: a downgrade was already committed at that floor")
            }
            ImageNotInRelease(d) => write!(f, "bundle carries image {d}, which the release does not list"),
            DuplicateImage(d) => write!(f, "bundle lists image {d} twice"),
            ImageSize { image, bundle, release } => {
                write!(f, "bundle says image {image} is {bundle} bytes, the release says {release}")
            }
            ImageTooLarge { image, size } => write!(f, "image {image} is {size} bytes, more than the {IMAGE_MAX} allowed"),
            ImageTruncated(d) => write!(f, "bundle is truncated inside image {d}"),
            ImageMismatch(d) => write!(f, "image {d} does not match its hash in the release (changed after signing)"),
            Verity { image, error } => write!(f, "image {image}: dm-verity check failed: {error}"),
            TrailingBytes => write!(f, "bundle has bytes after its last image"),
        }
    }
}

impl std::error::Error for BundleError {}

/// Read exactly `buf.len()` bytes; a short read is `Truncated { part }`.
fn fill(r: &mut impl Read, buf: &mut [u8], part: &'static str) -> Result<(), BundleError> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => BundleError::Truncated { part },
        k => BundleError::Read(k),
    })
}

/// Read and bound-check the header, the release bytes and the table.
pub fn read_header(r: &mut impl Read) -> Result<Header, BundleError> {
    let mut head = [0u8; HEADER_LEN];
    fill(r, &mut head, "header")?;
    let (magic, rest) = head.split_at(4);
    if magic != MAGIC {
        return Err(BundleError::BadMagic);
    }
    let (format, rest) = rest.split_at(1);
    let format = format.first().copied().unwrap_or(0);
    if format != FORMAT {
        return Err(BundleError::UnsupportedFormat(format));
    }
    let (count, len) = rest.split_at(1);
    let count = usize::from(count.first().copied().unwrap_or(0));
    if count > FILES_MAX {
        return Err(BundleError::TooManyImages(count));
    }
    let len = u32::from_le_bytes(len.try_into().map_err(|_| BundleError::Truncated { part: "header" })?) as usize;
    if len > OBJECT_MAX {
        return Err(BundleError::ReleaseTooLarge(len));
    }
    let mut release = std::vec![0u8; len];
    fill(r, &mut release, "release")?;
    let mut images = heapless::Vec::new();
    for _ in 0..count {
        let mut e = [0u8; ENTRY_LEN];
        fill(r, &mut e, "image table")?;
        let (d, s) = e.split_at(32);
        let mut digest = [0u8; 32];
        digest.copy_from_slice(d);
        let size = u64::from_le_bytes(s.try_into().map_err(|_| BundleError::Truncated { part: "image table" })?);
        let entry = TableEntry { sha256: Digest(digest), size };
        if images.iter().any(|o: &TableEntry| o.sha256 == entry.sha256) {
            return Err(BundleError::DuplicateImage(entry.sha256));
        }
        if size > IMAGE_MAX {
            return Err(BundleError::ImageTooLarge { image: entry.sha256, size });
        }
        images.push(entry).map_err(|_| BundleError::TooManyImages(count))?;
    }
    Ok(Header { release, images })
}

/// Check the bundle's release: signed by a trusted key, valid, for `board`
/// (`None`: its own board, for host-side inspection), and newer than
/// `installed` (`None`: nothing installed) unless its signed downgrade marker
/// names `installed` exactly (whether the marker is spent is the store's
/// check).
pub fn check_release(bytes: &[u8], keys: &TrustedKeys, board: Option<&str>, installed: Option<u64>) -> Result<Verified, BundleError> {
    if bytes.is_empty() {
        return Err(BundleError::Unsigned);
    }
    let v = match board {
        Some(b) => decode_release(bytes, keys, b, None),
        None => super::open(bytes, keys).and_then(|(_, payload)| super::decode_payload(payload)).and_then(|r| decode_release(bytes, keys, &r.board, None)),
    }
    .map_err(|e| match e {
        ReleaseError::WrongBoard { release, device } => BundleError::WrongBoard { release, device },
        e => BundleError::Release(e),
    })?;
    if let Some(installed) = installed {
        let newer = v.release.version > installed;
        if !newer && (v.release.version == installed || check_version(&v.release, Some(installed)).is_err()) {
            return Err(BundleError::TooOld { release: v.release.version, installed });
        }
    }
    Ok(v)
}

/// Every table entry is one of the release's images, with its size.
pub fn check_table(header: &Header, release: &Release) -> Result<(), BundleError> {
    for e in &header.images {
        let size = release.carried(&e.sha256).ok_or(BundleError::ImageNotInRelease(e.sha256))?;
        if size != e.size {
            return Err(BundleError::ImageSize { image: e.sha256, bundle: e.size, release: size });
        }
    }
    Ok(())
}

/// Where copying an image failed: reading the bundle, or writing the copy.
#[derive(Debug)]
pub enum CopyError {
    Bundle(BundleError),
    Write(io::Error),
}

/// Copy the next `entry.size` bytes of the bundle to `out`, hashing them;
/// they must hash to the entry's SHA-256. `buf` is the copy buffer.
pub fn copy_image(r: &mut impl Read, out: &mut impl Write, entry: &TableEntry, buf: &mut [u8]) -> Result<(), CopyError> {
    let mut h = Sha256::new();
    let mut left = entry.size;
    while left > 0 {
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        let chunk = buf.get_mut(..want).unwrap_or_default();
        let n = match r.read(chunk) {
            Ok(0) => return Err(CopyError::Bundle(BundleError::ImageTruncated(entry.sha256))),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Bundle(BundleError::Read(e.kind()))),
        };
        let got = chunk.get(..n).unwrap_or_default();
        h.update(got);
        out.write_all(got).map_err(CopyError::Write)?;
        left = left.saturating_sub(n as u64);
    }
    if h.finalize().as_slice() != entry.sha256.0 {
        return Err(CopyError::Bundle(BundleError::ImageMismatch(entry.sha256)));
    }
    Ok(())
}

/// The image's dm-verity tree, in `file` at byte `base`, against the release.
pub fn check_image(file: &std::fs::File, base: u64, img: &Image) -> Result<(), BundleError> {
    crate::release::verity::check_tree(file, base, img).map_err(|error| BundleError::Verity { image: img.sha256, error })
}

/// Nothing may follow the last image.
pub fn check_end(r: &mut impl Read) -> Result<(), BundleError> {
    let mut one = [0u8; 1];
    loop {
        return match r.read(&mut one) {
            Ok(0) => Ok(()),
            Ok(_) => Err(BundleError::TrailingBytes),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Err(BundleError::Read(e.kind())),
        };
    }
}

/// What a whole bundle file holds, checked as far as it can be without a device.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    pub verified: Verified,
    pub header: Header,
}

/// Check a bundle file completely (for `berth verify`): header, release,
/// table, and every carried image's hash and dm-verity tree. Which images
/// the device must already have is [`Checked::not_carried`].
pub fn check_file(file: &std::fs::File, keys: &TrustedKeys, board: Option<&str>, installed: Option<u64>) -> Result<Checked, BundleError> {
    let mut r = io::BufReader::with_capacity(CHUNK, file);
    let header = read_header(&mut r)?;
    let verified = check_release(&header.release, keys, board, installed)?;
    check_table(&header, &verified.release)?;
    let mut buf = std::vec![0u8; CHUNK];
    let mut at = header.len();
    for e in &header.images {
        copy_image(&mut r, &mut io::sink(), e, &mut buf).map_err(|e| match e {
            CopyError::Bundle(b) => b,
            CopyError::Write(w) => BundleError::Read(w.kind()),
        })?;
        if let Some(img) = verified.release.image(&e.sha256) {
            check_image(file, at, img)?;
        }
        at = at.saturating_add(e.size);
    }
    check_end(&mut r)?;
    Ok(Checked { verified, header })
}

impl Checked {
    /// Images of the release the bundle does not carry.
    pub fn not_carried(&self) -> impl Iterator<Item = &Image> {
        self.verified.release.images.iter().filter(|i| !self.header.images.iter().any(|e| e.sha256 == i.sha256))
    }
}

/// The bytes before the first image: header, release object, table.
#[cfg(any(feature = "host", test))]
pub fn encode_header(release: &[u8], images: &[TableEntry]) -> Result<std::vec::Vec<u8>, BundleError> {
    if release.len() > OBJECT_MAX {
        return Err(BundleError::ReleaseTooLarge(release.len()));
    }
    let count = u8::try_from(images.len()).ok().filter(|n| usize::from(*n) <= FILES_MAX);
    let count = count.ok_or(BundleError::TooManyImages(images.len()))?;
    let mut out = std::vec::Vec::with_capacity(HEADER_LEN + release.len() + ENTRY_LEN * images.len());
    out.extend_from_slice(&MAGIC);
    out.push(FORMAT);
    out.push(count);
    out.extend_from_slice(&(release.len() as u32).to_le_bytes());
    out.extend_from_slice(release);
    for e in images {
        out.extend_from_slice(&e.sha256.0);
        out.extend_from_slice(&e.size.to_le_bytes());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_bounds() {
        let t = [TableEntry { sha256: Digest([1; 32]), size: 4096 }, TableEntry { sha256: Digest([2; 32]), size: 8192 }];
        let bytes = encode_header(b"signed", &t).unwrap();
        let h = read_header(&mut &bytes[..]).unwrap();
        assert_eq!((h.release.as_slice(), h.images.as_slice(), h.len()), (&b"signed"[..], &t[..], bytes.len() as u64));
        for n in 0..bytes.len() {
            assert!(matches!(read_header(&mut &bytes[..n]), Err(BundleError::Truncated { .. })), "cut at {n}");
        }
        let mut bad = bytes.clone();
        bad[0] = b'X';
        assert_eq!(read_header(&mut &bad[..]), Err(BundleError::BadMagic));
        let mut bad = bytes.clone();
        bad[4] = 9;
        assert_eq!(read_header(&mut &bad[..]), Err(BundleError::UnsupportedFormat(9)));
        let mut bad = bytes.clone();
        bad[5] = 200;
        assert_eq!(read_header(&mut &bad[..]), Err(BundleError::TooManyImages(200)));
        let mut bad = bytes.clone();
        bad[6..10].copy_from_slice(&(OBJECT_MAX as u32 + 1).to_le_bytes());
        assert_eq!(read_header(&mut &bad[..]), Err(BundleError::ReleaseTooLarge(OBJECT_MAX + 1)));
        let dup = encode_header(b"", &[t[0], t[0]]).unwrap();
        assert_eq!(read_header(&mut &dup[..]), Err(BundleError::DuplicateImage(t[0].sha256)));
        let big = encode_header(b"", &[TableEntry { sha256: Digest([3; 32]), size: IMAGE_MAX + 1 }]).unwrap();
        assert!(matches!(read_header(&mut &big[..]), Err(BundleError::ImageTooLarge { .. })));
    }

    #[test]
    fn images_are_hashed_while_copied() {
        let data = vec![7u8; 100_000];
        let e = TableEntry { sha256: Digest(Sha256::digest(&data).into()), size: data.len() as u64 };
        let mut buf = vec![0u8; 4096];
        let mut out = Vec::new();
        copy_image(&mut &data[..], &mut out, &e, &mut buf).unwrap();
        assert_eq!(out, data);
        let mut bad = data.clone();
        bad[77_777] ^= 1;
        assert!(matches!(copy_image(&mut &bad[..], &mut io::sink(), &e, &mut buf), Err(CopyError::Bundle(BundleError::ImageMismatch(_)))));
        assert!(matches!(copy_image(&mut &data[..99_999], &mut io::sink(), &e, &mut buf), Err(CopyError::Bundle(BundleError::ImageTruncated(_)))));
        assert_eq!(check_end(&mut &b""[..]), Ok(()));
        assert_eq!(check_end(&mut &b"x"[..]), Err(BundleError::TrailingBytes));
    }
}
