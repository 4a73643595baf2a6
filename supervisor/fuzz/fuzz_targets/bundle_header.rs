//! The bundle header reader on arbitrary bytes: bounds, counts, the table;
//! whatever it reads must encode back to the bytes it consumed.
#![no_main]

use berth::release::bundle::{encode_header, read_header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut r = data;
    if let Ok(h) = read_header(&mut r) {
        let used = data.len() - r.len();
        let again = encode_header(&h.release, &h.images).ok();
        assert_eq!(again.as_deref(), data.get(..used));
    }
});
