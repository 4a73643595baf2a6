//! CRC-32 (IEEE 802.3, reflected, polynomial `0xEDB88320`), as U-Boot uses
//! for its environment block. It owns only the checksum; it must not read or
//! write any device.
//!
//! Written by hand rather than taken from a crate: it is ten lines, runs
//! over at most one environment block (tens of KiB) per update, and bitwise
//! needs no 1 KiB table in PID 1's image.

/// The CRC-32 of `bytes`.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_values() {
        // The check value of CRC-32/ISO-HDLC, and the empty input.
        assert_eq!(super::crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(super::crc32(b""), 0);
    }
}
