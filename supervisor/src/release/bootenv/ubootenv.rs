//! U-Boot's environment block, as `saveenv` writes it to flash and
//! `fw_setenv` edits it from Linux. It owns the block's binary format only;
//! it must not open devices (the caller reads and writes whole blocks, each
//! at its fixed offset and size).
//!
//! A block is a little-endian CRC-32 of its data area, then (redundant
//! environments only) one flag byte, then the data area: `name=value` NUL
//! terminated entries, an empty entry ending the list, zeros to the end.
//! A redundant environment keeps two copies; the valid one with the newer
//! flag (a counter that wraps at 255) is current, and a write goes to the
//! other copy with the flag one higher, so a power cut mid-write leaves the
//! older copy whole.

use super::crc32::crc32;
use super::{EnvError, Vars};

/// Where the data area starts.
fn data_at(redundant: bool) -> usize {
    if redundant {
        5
    } else {
        4
    }
}

/// The variables of one block of `block.len()` bytes, checked against its CRC.
pub fn parse(block: &[u8], redundant: bool) -> Result<Vars, EnvError> {
    let at = data_at(redundant);
    let (head, data) = (block.get(..4).ok_or(EnvError::Malformed("a block shorter than its header"))?, block.get(at..).unwrap_or(&[]));
    let stored = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    if data.is_empty() || crc32(data) != stored {
        return Err(EnvError::Checksum);
    }
    let mut vars = Vars::default();
    for entry in data.split(|&b| b == 0) {
        if entry.is_empty() {
            break;
        }
        let eq = entry.iter().position(|&b| b == b'=').ok_or(EnvError::Malformed("an entry without '='"))?;
        let name = std::str::from_utf8(&entry[..eq]).map_err(|_| EnvError::Malformed("a name that is not UTF-8"))?;
        let value = std::str::from_utf8(&entry[eq + 1..]).map_err(|_| EnvError::Malformed("a value that is not UTF-8"))?;
        vars.set(name, value)?;
    }
    Ok(vars)
}

/// A block of `size` bytes holding `vars` (with `flag` when redundant).
pub fn render(vars: &Vars, size: usize, flag: Option<u8>) -> Result<Vec<u8>, EnvError> {
    let at = data_at(flag.is_some());
    let mut data = Vec::new();
    for (name, value) in vars.iter() {
        if value.as_bytes().contains(&0) {
            return Err(EnvError::Malformed("a value with a NUL byte"));
        }
        data.extend_from_slice(name.as_bytes());
        data.push(b'=');
        data.extend_from_slice(value.as_bytes());
        data.push(0);
    }
    data.push(0);
    if at + data.len() > size {
        return Err(EnvError::TooLarge { need: at + data.len(), size });
    }
    data.resize(size - at, 0);
    let mut out = crc32(&data).to_le_bytes().to_vec();
    out.extend(flag);
    out.extend_from_slice(&data);
    Ok(out)
}

/// Which copy of a redundant environment is current: `Some(0)` or
/// `Some(1)`, `None` when neither is valid. Flags compare as U-Boot does:
/// 0 after 255 is newer.
pub fn current_copy(copies: [&[u8]; 2]) -> Option<usize> {
    let ok = copies.map(|c| parse(c, true).is_ok());
    let flag = copies.map(|c| c.get(4).copied().unwrap_or(0));
    match ok {
        [true, true] => Some(if newer(flag[1], flag[0]) { 1 } else { 0 }),
        [true, false] => Some(0),
        [false, true] => Some(1),
        [false, false] => None,
    }
}

/// Whether flag `a` is newer than flag `b`.
fn newer(a: u8, b: u8) -> bool {
    match (a, b) {
        (0, 255) => true,
        (255, 0) => false,
        _ => a > b,
    }
}

/// The copy to write next and its flag, after `current` (from
/// [`current_copy`]) with `flag`.
pub fn next_copy(current: Option<usize>, flag: u8) -> (usize, u8) {
    match current {
        Some(i) => (1 - i, flag.wrapping_add(1)),
        None => (0, 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        let mut v = Vars::default();
        v.set("BOOT_ORDER", "A B").unwrap();
        v.set("BOOT_A_LEFT", "3").unwrap();
        v
    }

    #[test]
    fn round_trip_and_layout() {
        let b = render(&vars(), 0x1000, None).unwrap();
        assert_eq!(b.len(), 0x1000);
        assert_eq!(&b[4..30], b"BOOT_ORDER=A B\0BOOT_A_LEFT");
        assert_eq!(u32::from_le_bytes([b[0], b[1], b[2], b[3]]), crc32(&b[4..]));
        assert_eq!(parse(&b, false).unwrap(), vars());
        let r = render(&vars(), 0x1000, Some(7)).unwrap();
        assert_eq!((r[4], &r[5..9]), (7, &b"BOOT"[..]));
        assert_eq!(parse(&r, true).unwrap(), vars());
    }

    #[test]
    fn a_flipped_bit_fails_the_checksum() {
        let mut b = render(&vars(), 256, None).unwrap();
        b[10] ^= 1;
        assert_eq!(parse(&b, false), Err(EnvError::Checksum));
        assert_eq!(render(&vars(), 16, None), Err(EnvError::TooLarge { need: 4 + 30, size: 16 }));
    }

    #[test]
    fn redundant_copies_pick_the_newer_valid_one() {
        let a = render(&vars(), 128, Some(255)).unwrap();
        let b = render(&vars(), 128, Some(0)).unwrap();
        assert_eq!(current_copy([&a, &b]), Some(1));
        assert_eq!(current_copy([&b, &a]), Some(0));
        let mut torn = b.clone();
        torn[20] ^= 0xff;
        assert_eq!(current_copy([&a, &torn]), Some(0));
        assert_eq!(current_copy([&torn, &torn]), None);
        assert_eq!(next_copy(Some(0), 255), (1, 0));
        assert_eq!(next_copy(None, 9), (0, 1));
    }
}
