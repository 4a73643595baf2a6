//! Test-only gate for the unit tests that need root: the one place that
//! decides whether such a test runs, skips or fails.
//!
//! `BERTH_ROOT_TESTS=1` (which `cargo xtask test` sets) makes the root tests
//! mandatory: run as root they run, and anything that stops them (not root,
//! a kernel without a feature they exercise) fails the test by name. Without
//! the variable a plain `cargo test` skips them, saying so on stderr.

/// True when the root test `name` should run. Panics when
/// `BERTH_ROOT_TESTS` is set but this process is not root.
pub(crate) fn enabled(name: &str) -> bool {
    if std::env::var_os("BERTH_ROOT_TESTS").is_none() {
        eprintln!("{name}: skipped (needs root and BERTH_ROOT_TESTS=1)");
        return false;
    }
    let uid = euid();
    assert!(uid == 0, "{name}: BERTH_ROOT_TESTS is set but the tests run as uid {uid}, not root");
    true
}

/// A root test found `what` missing on this host: fail when the root tests
/// are mandatory, else note the skip. Returns only when skipping.
pub(crate) fn missing(name: &str, what: &str) {
    assert!(std::env::var_os("BERTH_ROOT_TESTS").is_none(), "{name}: cannot run with BERTH_ROOT_TESTS set: {what}");
    eprintln!("{name}: skipped ({what})");
}

fn euid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map_or(u32::MAX, |m| m.uid())
}
