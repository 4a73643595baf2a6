//! The device's whole release check on arbitrary bytes: envelope, key,
//! signature, payload, validation, board, version. The trusted key is the
//! fixed test key (seed 0x42 repeated), which also signed the valid corpus
//! seeds, so mutations of them reach every check.
#![no_main]

use berth::release::{decode_release, signing_key_from_seed, TrustedKeys};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut keys = TrustedKeys::new();
    if keys.add(signing_key_from_seed(&[0x42; 32]).verifying_key()).is_err() {
        return;
    }
    let _ = decode_release(data, &keys, "qemu-aarch64-virt", Some(5));
});
