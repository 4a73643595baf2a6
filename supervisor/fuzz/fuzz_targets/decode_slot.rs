//! The state record's slot decoder on arbitrary bytes: whatever decodes must
//! survive an encode and decode unchanged.
#![no_main]

use berth::release::record::{decode_slot, encode_slot};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((generation, record)) = decode_slot(data) {
        let again = encode_slot(&record, generation).and_then(|b| decode_slot(&b).ok());
        assert_eq!(again, Some((generation, record)));
    }
});
