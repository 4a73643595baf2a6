//! Test-only hooks, compiled only with the `test-hooks` cargo feature (the
//! QEMU test images); the shipped device build has none of them, and
//! `cargo xtask test` checks its binaries for their names.
//!
//! It must not reach a shipped build: the module is compiled only for
//! unit tests and with the `test-hooks` feature.
//!
//! - `berth.run=PATH` on the kernel command line: start a program of the
//!   system image once the boot is ready (the test agent).
//! - `berth.cut=N`: the power-cut hook of [`crate::release::durable`], reset
//!   at the N-th store write of an update.
//! - `berth.fail=KIND:N[,KIND:N]`: the write-fault hook of
//!   [`crate::release::faults`], the first N record writes of KIND (or
//!   image mappings, `map`) fail with EIO.
//! - `berthctl debug wedge SECONDS`: block the loop, so the hardware watchdog
//!   resets the board (see [`crate::supervise`]).

#![cfg_attr(not(feature = "test-hooks"), allow(dead_code))]

#[cfg(feature = "test-hooks")]
use crate::common::log::Event;
#[cfg(feature = "test-hooks")]
use crate::supervise::Pid1;

/// Kernel command line key naming a program to start once the boot is ready.
const RUN_KEY: &str = "berth.run=";
/// Kernel command line key arming the power-cut hook.
const CUT_KEY: &str = "berth.cut=";
/// Kernel command line key arming the write-fault hook.
const FAIL_KEY: &str = "berth.fail=";

/// Apply the hooks the kernel command line asks for, right before the loop.
#[cfg(feature = "test-hooks")]
pub fn at_boot(pid1: &mut Pid1) {
    let cmdline = crate::common::files::read_bounded("/proc/cmdline", 4096).unwrap_or_default();
    let cmdline = String::from_utf8_lossy(&cmdline);
    if let Some(path) = parse_run(&cmdline) {
        start_requested(pid1, &path);
    }
    if let Some(n) = parse_cut(&cmdline) {
        Event::warn("power.cut").kv("armed", n).emit();
        crate::release::durable::arm_cut(n);
    }
    for (kind, n) in parse_fail(&cmdline).unwrap_or_default() {
        Event::warn("fault.armed").kv("kind", kind.name()).kv("count", n).emit();
        crate::release::faults::arm(kind, n);
    }
}

/// `berth.run=PATH`: an absolute path without `..`.
pub fn parse_run(cmdline: &str) -> Option<String> {
    cmdline.split_ascii_whitespace().find_map(|t| t.strip_prefix(RUN_KEY)).filter(|p| p.starts_with('/') && !p.contains("..")).map(str::to_owned)
}

/// `berth.cut=N` with N > 0.
pub fn parse_cut(cmdline: &str) -> Option<u64> {
    cmdline.split_ascii_whitespace().find_map(|t| t.strip_prefix(CUT_KEY)?.parse().ok()).filter(|n| *n > 0)
}

/// `berth.fail=KIND:N[,KIND:N]` (see [`crate::release::faults::parse`]).
pub fn parse_fail(cmdline: &str) -> Option<Vec<(crate::release::faults::Kind, u32)>> {
    cmdline.split_ascii_whitespace().find_map(|t| t.strip_prefix(FAIL_KEY)).and_then(crate::release::faults::parse)
}

#[cfg(feature = "test-hooks")]
fn start_requested(pid1: &mut Pid1, path: &str) {
    let mut cmd = std::process::Command::new(path);
    cmd.env_clear().env("PATH", "/sbin:/bin").current_dir("/");
    crate::sys::unblock_signals_in_child(&mut cmd);
    match cmd.spawn() {
        Ok(child) => {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            Event::info("host.start").kv("name", "run").kv("path", path).kv("pid", pid).emit();
            pid1.watch(pid, "run");
        }
        Err(e) => Event::error("host.start").kv("name", "run").kv("path", path).kv("result", "error").kv("error", e).emit(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn run_key_is_parsed_and_checked() {
        assert_eq!(super::parse_run("console=ttyS0 berth.run=/usr/lib/x quiet").as_deref(), Some("/usr/lib/x"));
        assert_eq!(super::parse_run("berth.run=relative"), None);
        assert_eq!(super::parse_run("berth.run=/a/../b"), None);
        assert_eq!(super::parse_run("console=ttyS0"), None);
    }

    #[test]
    fn cut_key_takes_a_positive_count() {
        assert_eq!(super::parse_cut("quiet berth.cut=7"), Some(7));
        assert_eq!(super::parse_cut("berth.cut=0"), None);
        assert_eq!(super::parse_cut("berth.cut=x"), None);
        assert_eq!(super::parse_cut("berth.cutx=3"), None);
    }

    #[test]
    fn fail_key_names_kinds_and_counts() {
        use crate::release::faults::Kind;
        assert_eq!(super::parse_fail("quiet berth.fail=commit:1,rollback:3"), Some(vec![(Kind::Commit, 1), (Kind::Rollback, 3)]));
        assert_eq!(super::parse_fail("berth.fail=commit:x"), None);
        assert_eq!(super::parse_fail("berth.cut=3"), None);
    }
}
