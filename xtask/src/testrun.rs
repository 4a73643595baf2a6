//! `cargo xtask test`'s accounting: runs the host unit tests (as root, with
//! the root tests made mandatory) and keeps the count of cases passed,
//! failed and skipped over the host tests and the QEMU cases, for the one
//! summary line the command ends with. Before them, [`lint`]: formatting
//! and clippy with warnings denied.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

/// Cases counted so far.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub passed: u64,
    pub failed: u64,
    /// `#[ignore]`d unit tests and cases a runner reported as skipped.
    pub skipped: u64,
}

impl Tally {
    /// `tests: N passed, N failed, N skipped`, the command's last line.
    pub fn line(&self) -> String {
        format!("tests: {} passed, {} failed, {} skipped", self.passed, self.failed, self.skipped)
    }

    /// Adds the counts of one libtest summary (`test result: ok. 3 passed;
    /// 0 failed; 1 ignored; 0 measured; 2 filtered out; ...`); false when
    /// `line` is not one.
    pub fn add_libtest_line(&mut self, line: &str) -> bool {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            return false;
        };
        let Some((_, counts)) = rest.split_once(". ") else {
            return false;
        };
        let mut seen = false;
        for part in counts.split(';') {
            let mut words = part.split_whitespace();
            let (Some(n), Some(what)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.skipped += n,
                _ => continue,
            }
            seen = true;
        }
        seen
    }

    /// Adds the QEMU runner's outcomes (it has no skipped state: a case
    /// that cannot do its check fails).
    pub fn add_qemu(&mut self, outcomes: &[qemu_tests::scenario::Outcome]) {
        let passed = outcomes.iter().filter(|o| o.passed).count() as u64;
        self.passed += passed;
        self.failed += outcomes.len() as u64 - passed;
    }
}

/// `cargo test --workspace` with `BERTH_ROOT_TESTS=1`: the root unit tests
/// run (and fail, not skip, when they cannot). Its output is passed
/// through; the libtest summaries are added to `tally`.
pub fn host_unit_tests(root: &Path, tally: &mut Tally) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut child = Command::new(&cargo)
        .current_dir(root)
        .args(["test", "--workspace", "--quiet"])
        .env("BERTH_ROOT_TESTS", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cargo test: {e}"))?;
    let mut summaries = 0;
    if let Some(out) = child.stdout.take() {
        let mut stdout = std::io::stdout();
        for line in BufReader::new(out).lines() {
            let line = line.map_err(|e| format!("cargo test output: {e}"))?;
            let _ = writeln!(stdout, "{line}");
            if tally.add_libtest_line(&line) {
                summaries += 1;
            }
        }
    }
    let st = child.wait().map_err(|e| format!("cargo test: {e}"))?;
    if !st.success() {
        return Err(format!("host unit tests failed ({st})"));
    }
    if summaries == 0 {
        return Err("cargo test printed no test summary: no host unit test ran".into());
    }
    Ok(())
}

/// The lint gate: `cargo fmt --all -- --check`, then `cargo clippy` on
/// every crate and target (with berth's host and test-hook features, so
/// the code behind them is linted too) and on berth's device build, with
/// warnings denied. Either one
/// failing fails the run, naming it.
pub fn lint(root: &Path) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let steps: [(&str, &[&str]); 3] = [
        ("formatting (cargo fmt --all -- --check)", &["fmt", "--all", "--", "--check"]),
        (
            "clippy (warnings denied)",
            &["clippy", "--workspace", "--all-targets", "--quiet", "--features", "berth/host,berth/test-hooks", "--", "-D", "warnings"],
        ),
        // The device build: what only compiles without the host feature.
        ("clippy on the device build (warnings denied)", &["clippy", "-p", "berth", "--quiet", "--", "-D", "warnings"]),
    ];
    for (what, args) in steps {
        let st = Command::new(&cargo).current_dir(root).args(args).stdin(Stdio::null()).status().map_err(|e| format!("{what}: {e}"))?;
        if !st.success() {
            return Err(format!("{what} failed ({st}); see above"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libtest_summaries_add_up() {
        let mut t = Tally::default();
        assert!(t.add_libtest_line("test result: ok. 363 passed; 0 failed; 2 ignored; 0 measured; 5 filtered out; finished in 3.10s"));
        assert!(t.add_libtest_line("test result: FAILED. 1 passed; 4 failed; 0 ignored; 0 measured; 0 filtered out"));
        assert!(!t.add_libtest_line("test foo ... ok"));
        assert!(!t.add_libtest_line("running 3 tests"));
        assert_eq!(t, Tally { passed: 364, failed: 4, skipped: 2 });
        assert_eq!(t.line(), "tests: 364 passed, 4 failed, 2 skipped");
    }
}
