//! The payload decoder and validation on arbitrary bytes, skipping the
//! signature (which random input almost never passes), so postcard decoding
//! and every semantic check are reached directly.
#![no_main]

use berth::release::decode_payload;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(release) = decode_payload(data) {
        // What decodes must survive an encode and decode unchanged.
        let again = release.encode_payload().ok().and_then(|p| decode_payload(&p).ok());
        assert_eq!(again.as_ref(), Some(&release));
    }
});
