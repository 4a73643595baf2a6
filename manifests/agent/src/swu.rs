//! Reading a `.swu`: a cpio archive in the "newc" (`070701`) or "crc"
//! (`070702`) format, as `cargo xtask bundle --swu` writes it
//! (`sw-description` first, then `berth-<board>-<version>.bundle`). The
//! agent needs only the bundle member: where it is, how long, and (crc
//! format) the sum of its bytes, checked while it is copied out.

use std::io::{Read, Seek, SeekFrom};

const HEADER: usize = 110;
/// Most members looked at before giving up.
const MEMBERS_MAX: usize = 64;
const NAME_MAX: u64 = 4096;

/// A member of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    /// Where its bytes start in the archive.
    pub offset: u64,
    pub size: u64,
    /// The crc format's sum of the bytes (`None` for newc).
    pub sum: Option<u32>,
}

fn field(h: &[u8], i: usize) -> Result<u64, String> {
    let s = std::str::from_utf8(&h[6 + 8 * i..6 + 8 * (i + 1)]).map_err(|_| "cpio header: not ASCII".to_string())?;
    u64::from_str_radix(s, 16).map_err(|_| format!("cpio header: `{s}` is not hex"))
}

fn pad4(n: u64) -> u64 {
    (4 - n % 4) % 4
}

/// Finds the first member whose name ends in `.bundle`.
pub fn find_bundle<R: Read + Seek>(r: &mut R) -> Result<Member, String> {
    let mut pos = 0u64;
    for _ in 0..MEMBERS_MAX {
        r.seek(SeekFrom::Start(pos)).map_err(|e| format!("swu: {e}"))?;
        let mut h = [0u8; HEADER];
        r.read_exact(&mut h).map_err(|e| format!("swu: truncated cpio header at byte {pos}: {e}"))?;
        let crc = match &h[..6] {
            b"070701" => false,
            b"070702" => true,
            m => return Err(format!("swu: not a newc/crc cpio archive (magic {:?} at byte {pos})", String::from_utf8_lossy(m))),
        };
        let (size, namesize, check) = (field(&h, 6)?, field(&h, 11)?, field(&h, 12)?);
        if namesize == 0 || namesize > NAME_MAX {
            return Err(format!("swu: member name size {namesize} at byte {pos}"));
        }
        let mut name = vec![0u8; namesize as usize];
        r.read_exact(&mut name).map_err(|e| format!("swu: truncated member name at byte {pos}: {e}"))?;
        if name.pop() != Some(0) {
            return Err(format!("swu: member name at byte {pos} is not NUL-terminated"));
        }
        let name = String::from_utf8(name).map_err(|_| format!("swu: member name at byte {pos} is not UTF-8"))?;
        if name == "TRAILER!!!" {
            break;
        }
        let offset = pos + HEADER as u64 + namesize + pad4(HEADER as u64 + namesize);
        if name.ends_with(".bundle") {
            return Ok(Member { name, offset, size, sum: crc.then_some(check as u32) });
        }
        pos = offset + size + pad4(size);
    }
    Err("swu: no member named *.bundle".into())
}

/// The crc format's sum: the bytes added up, modulo 2^32.
pub fn add_sum(sum: u32, bytes: &[u8]) -> u32 {
    bytes.iter().fold(sum, |s, b| s.wrapping_add(u32::from(*b)))
}

/// The release version in a berth bundle's name `berth-<board>-<N>.bundle`.
pub fn version_in_name(name: &str) -> Option<u64> {
    name.strip_suffix(".bundle")?.rsplit('-').next()?.parse().ok()
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use std::io::Cursor;

    /// A cpio archive in the layout xtask writes, built here by the
    /// format's rules (110-byte ASCII-hex header, name padded to 4, data
    /// padded to 4, a `TRAILER!!!` member).
    pub fn archive(magic: &str, members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut all: Vec<(&str, &[u8])> = members.to_vec();
        all.push(("TRAILER!!!", b""));
        for (i, (name, data)) in all.iter().enumerate() {
            let sum = if magic == "070702" { add_sum(0, data) } else { 0 };
            let fields = [i as u32 + 1, 0o100644, 0, 0, 1, 0, data.len() as u32, 0, 0, 0, 0, name.len() as u32 + 1, sum];
            out.extend_from_slice(magic.as_bytes());
            for f in fields {
                out.extend_from_slice(format!("{f:08X}").as_bytes());
            }
            out.extend_from_slice(name.as_bytes());
            out.push(0);
            out.resize(out.len() + pad4(out.len() as u64) as usize, 0);
            out.extend_from_slice(data);
            out.resize(out.len() + pad4(out.len() as u64) as usize, 0);
        }
        out
    }

    #[test]
    fn the_bundle_member_is_found_in_both_formats() {
        for magic in ["070701", "070702"] {
            let a = archive(magic, &[("sw-description", b"software = {};\n"), ("berth-qemu-x86_64-7.bundle", b"BUNDLE BYTES")]);
            let m = find_bundle(&mut Cursor::new(&a)).unwrap();
            assert_eq!(m.name, "berth-qemu-x86_64-7.bundle");
            assert_eq!(&a[m.offset as usize..(m.offset + m.size) as usize], b"BUNDLE BYTES");
            assert_eq!(m.sum, (magic == "070702").then(|| add_sum(0, b"BUNDLE BYTES")));
            assert_eq!(version_in_name(&m.name), Some(7));
        }
    }

    #[test]
    fn broken_archives_are_refused_clearly() {
        let e = find_bundle(&mut Cursor::new(b"PK\x03\x04".repeat(40))).unwrap_err();
        assert!(e.contains("not a newc/crc cpio archive"), "{e}");
        let a = archive("070701", &[("sw-description", b"x")]);
        assert_eq!(find_bundle(&mut Cursor::new(&a)).unwrap_err(), "swu: no member named *.bundle");
        let a = archive("070701", &[("sw-description", b"x"), ("b.bundle", b"y")]);
        let e = find_bundle(&mut Cursor::new(&a[..120])).unwrap_err();
        assert!(e.contains("truncated"), "{e}");
        let mut a = archive("070701", &[("b.bundle", b"y")]);
        a[100] = b'Z';
        assert!(find_bundle(&mut Cursor::new(&a)).unwrap_err().contains("is not hex"));
    }
}
