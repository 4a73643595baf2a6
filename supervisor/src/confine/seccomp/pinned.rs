//! The compiled default programs, pinned: each ABI's program for the
//! default policy and for the default with `CAP_NET_RAW`, recorded as its
//! length and SHA-256 ([`Program::hash`], the hash berth logs when it
//! installs a filter). Any change to the tables, the profile or the
//! compiler that changes a program fails here, by ABI and policy.
//!
//! Its values must not be updated just to make a failure pass: the change in
//! length must be the one the change should make.
//!
//! To update after an intended change: run
//! `cargo test -p berth --lib seccomp::pinned`, check that the change in
//! length is the one the change should make, and copy the `now` values the
//! failure prints into [`PINNED`].

use super::*;
use std::string::String;

/// (ABI, policy, instructions, SHA-256 of the program in hex).
const PINNED: &[(Arch, &str, usize, &str)] = &[
    (Arch::X86_64, "default", 204, "50319741f4e2ff676aca5fd8360467985c51962c68eb1720163a0c4fa9844dac"),
    (Arch::X86_64, "net_raw", 206, "72511dcb885cc9cdb98d98a98f44a6cb39faf118d33cada8b44cb4615591cfe0"),
    (Arch::Aarch64, "default", 183, "83562929e7b84d54776c19e4feeb938237417d2f82e3c1d7ed1e359e5d056c36"),
    (Arch::Aarch64, "net_raw", 184, "fe05f3f7d4df1d62af57c54b6e87b104c7fdfc44acae26aea2a20afac6dd2f6f"),
    (Arch::Arm, "default", 320, "23cbc498ab16984407f24063c6b9c68ca6cb3d2f02a31027d5efa7e9f8a495c5"),
    (Arch::Arm, "net_raw", 322, "8ddd448453f753cffaa023951bb1b8bb769d2732fdd156b28c5e98f6b5bd5c32"),
];

fn program(arch: Arch, policy: &str) -> Program {
    let mut p = Policy::new();
    if policy == "net_raw" {
        p.set_net_raw(true);
    }
    compile(&p, arch).unwrap_or_else(|e| panic!("{arch} {policy}: {e}"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn default_programs_are_the_pinned_ones() {
    let mut differ = Vec::new();
    for &(arch, policy, len, hash) in PINNED {
        let p = program(arch, policy);
        let now = (p.len(), hex(&p.hash()));
        if now != (len, hash.to_string()) {
            differ.push(format!(
                "{arch} {policy}: pinned {len} instructions, hash {hash:?}; \
                 now {} instructions ({:+}), hash \"{}\"",
                now.0,
                now.0 as i64 - len as i64,
                now.1
            ));
        }
    }
    assert!(
        differ.is_empty(),
        "compiled seccomp programs differ from the pinned ones \
         (if intended, update PINNED in supervisor/src/seccomp/pinned.rs):\n{}",
        differ.join("\n")
    );
    assert_eq!(PINNED.len(), 2 * Arch::ALL.len());
}
