//! `cargo xtask fuzz`: run the cargo-fuzz targets in `supervisor/fuzz/` for a
//! fixed time each, on the stable toolchain.
//!
//! cargo-fuzz passes nightly-only flags (`-Zsanitizer=...`, `-Cpasses=...`) to
//! rustc; a stable compiler accepts them with `RUSTC_BOOTSTRAP=1`, which is set
//! only for the fuzz commands. The fuzz crate is its own workspace; its build
//! goes to `target/fuzz/` of the main workspace.
//!
//! The committed seeds in `supervisor/fuzz/corpus/<target>/` are passed as a
//! second, read-only corpus; libFuzzer writes new inputs only into the first
//! corpus directory, a scratch one at `target/fuzz-corpus/<target>/`, which is
//! kept between runs. Crashing inputs go to `supervisor/fuzz/artifacts/<target>/`
//! (git-ignored); the full output of each run is in `target/fuzz-logs/<target>.log`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

/// Fuzzing time per target when the command line does not give one.
pub const DEFAULT_SECONDS: u64 = 60;

/// Usage of the `fuzz` command, for `run_args` errors and the xtask help.
pub const USAGE: &str = "usage: cargo xtask fuzz [SECONDS] [TARGET]...";

/// Memory limit handed to libFuzzer, in MiB.
const RSS_LIMIT_MB: u64 = 2048;

/// Lines of fuzzer output quoted in an error.
const TAIL_LINES: usize = 40;

fn say(msg: &str) {
    eprintln!("xtask: {msg}");
}

/// Fuzz each of `targets` (all of `supervisor/fuzz/fuzz_targets/*.rs` when
/// empty) for `seconds_per_target` seconds. Installs cargo-fuzz if missing.
/// A crash is an error naming the target, the input file libFuzzer wrote, and
/// the tail of the output.
pub fn run(root: &Path, seconds_per_target: u64, targets: &[&str]) -> Result<(), String> {
    if seconds_per_target == 0 {
        // libFuzzer reads -max_total_time=0 as "no limit".
        return Err("fuzzing time must be at least one second".into());
    }
    let supervisor = root.join("supervisor");
    let fuzz_dir = supervisor.join("fuzz");
    let known = list_targets(&fuzz_dir)?;
    let chosen: Vec<String> = if targets.is_empty() {
        known.clone()
    } else {
        let mut v = Vec::new();
        for t in targets {
            if !known.iter().any(|k| k == t) {
                return Err(format!("unknown fuzz target `{t}` (known: {})", known.join(", ")));
            }
            if !v.iter().any(|x: &String| x == t) {
                v.push(t.to_string());
            }
        }
        v
    };
    if chosen.is_empty() {
        return Err(format!("no fuzz targets in {}", fuzz_dir.join("fuzz_targets").display()));
    }

    ensure_cargo_fuzz()?;

    let target_dir = root.join("target").join("fuzz");
    let sanitizer = build(&supervisor, &target_dir)?;

    for t in &chosen {
        let scratch = root.join("target").join("fuzz-corpus").join(t);
        std::fs::create_dir_all(&scratch).map_err(|e| format!("cannot create {}: {e}", scratch.display()))?;
        let seeds = fuzz_dir.join("corpus").join(t);
        let log = root.join("target").join("fuzz-logs").join(format!("{t}.log"));
        fuzz_one(&supervisor, &target_dir, sanitizer, t, &scratch, &seeds, &log, seconds_per_target)?;
    }
    Ok(())
}

/// `cargo xtask fuzz [SECONDS] [TARGET]...`: the command-line arguments after
/// `fuzz`. A number is the time per target, anything else a target name.
pub fn run_args(root: &Path, args: &[String]) -> Result<(), String> {
    let (seconds, targets) = parse_args(args)?;
    run(root, seconds, &targets)
}

fn parse_args(args: &[String]) -> Result<(u64, Vec<&str>), String> {
    let mut seconds = None;
    let mut targets = Vec::new();
    for a in args {
        match a.parse::<u64>() {
            Ok(n) if seconds.is_none() => seconds = Some(n),
            Ok(_) => return Err(format!("{USAGE}: give the time once")),
            Err(_) => targets.push(a.as_str()),
        }
    }
    Ok((seconds.unwrap_or(DEFAULT_SECONDS), targets))
}

/// Target names: the `.rs` files in `fuzz/fuzz_targets/`, sorted.
fn list_targets(fuzz_dir: &Path) -> Result<Vec<String>, String> {
    let dir = fuzz_dir.join("fuzz_targets");
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut names = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| format!("cannot read {}: {e}", dir.display()))?.path();
        if path.extension().is_some_and(|x| x == "rs") {
            if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                names.push(stem.to_string());
            }
        }
    }
    names.sort();
    Ok(names)
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// A `cargo fuzz ...` command with the stable-toolchain escape hatch set.
fn cargo_fuzz(supervisor: &Path) -> Command {
    let mut cmd = cargo();
    cmd.arg("fuzz").current_dir(supervisor).env("RUSTC_BOOTSTRAP", "1");
    cmd
}

fn ensure_cargo_fuzz() -> Result<(), String> {
    let present = cargo().args(["fuzz", "--version"]).output().map(|o| o.status.success()).unwrap_or(false);
    if present {
        return Ok(());
    }
    say("installing cargo-fuzz (cargo install --locked cargo-fuzz; a few minutes the first time)");
    let started = Instant::now();
    let mut cmd = cargo();
    cmd.args(["install", "--locked", "cargo-fuzz"]);
    let out = output(&mut cmd)?;
    if !out.status.success() {
        return Err(format!("installing cargo-fuzz failed ({}):\n{}", out.status, tail(&combined(&out), 20)));
    }
    say(&format!("installed cargo-fuzz in {}s", started.elapsed().as_secs()));
    Ok(())
}

#[derive(Clone, Copy)]
enum Sanitizer {
    Address,
    None,
}

impl Sanitizer {
    fn arg(self) -> &'static str {
        match self {
            Sanitizer::Address => "address",
            Sanitizer::None => "none",
        }
    }
}

/// Build every fuzz target, with the address sanitizer if this toolchain can,
/// otherwise without one. Returns the sanitizer that worked.
fn build(supervisor: &Path, target_dir: &Path) -> Result<Sanitizer, String> {
    say("building the fuzz targets (address sanitizer)");
    let started = Instant::now();
    let first = output(&mut build_cmd(supervisor, target_dir, Sanitizer::Address))?;
    if first.status.success() {
        say(&format!("built the fuzz targets in {}s", started.elapsed().as_secs()));
        return Ok(Sanitizer::Address);
    }
    let first_text = combined(&first);
    let first_tail = tail(without_tool_backtrace(&first_text), 30);
    if !first_text.to_lowercase().contains("sanitizer") {
        // A compile error, not a missing sanitizer runtime: no point retrying.
        return Err(format!("building the fuzz targets failed ({}):\n{first_tail}", first.status));
    }
    say("the address-sanitizer build failed; building the fuzz targets without a sanitizer");
    let second = output(&mut build_cmd(supervisor, target_dir, Sanitizer::None))?;
    if second.status.success() {
        say(&format!("built the fuzz targets in {}s", started.elapsed().as_secs()));
        return Ok(Sanitizer::None);
    }
    Err(format!(
        "building the fuzz targets failed, with the address sanitizer:\n{first_tail}\nand without one ({}):\n{}",
        second.status,
        tail(without_tool_backtrace(&combined(&second)), 30)
    ))
}

fn build_cmd(supervisor: &Path, target_dir: &Path, sanitizer: Sanitizer) -> Command {
    let mut cmd = cargo_fuzz(supervisor);
    cmd.arg("build").arg("--sanitizer").arg(sanitizer.arg()).arg("--target-dir").arg(target_dir);
    cmd
}

#[allow(clippy::too_many_arguments)]
fn fuzz_one(
    supervisor: &Path,
    target_dir: &Path,
    sanitizer: Sanitizer,
    target: &str,
    scratch: &Path,
    seeds: &Path,
    log: &Path,
    seconds: u64,
) -> Result<(), String> {
    say(&format!("fuzzing {target} for {seconds}s"));
    let mut cmd = cargo_fuzz(supervisor);
    cmd.arg("run")
        .arg("--sanitizer")
        .arg(sanitizer.arg())
        .arg("--target-dir")
        .arg(target_dir)
        .arg(target)
        // libFuzzer adds new inputs to the first corpus directory only.
        .arg(scratch);
    if seeds.is_dir() {
        cmd.arg(seeds);
    }
    cmd.arg("--").arg(format!("-max_total_time={seconds}")).arg(format!("-rss_limit_mb={RSS_LIMIT_MB}"));
    let out = output(&mut cmd)?;
    let text = combined(&out);
    let log_note = match write_log(log, &text) {
        Ok(()) => format!("full output: {}", log.display()),
        Err(e) => format!("(could not write the log: {e})"),
    };
    if out.status.success() {
        say(&format!("{target}: {}", summary(&text)));
        return Ok(());
    }
    let artifact = artifact_path(&text, supervisor);
    let mut msg = format!("fuzz target {target} failed ({})", out.status);
    match &artifact {
        Some(p) => msg.push_str(&format!("; crashing input: {}", p.display())),
        None => msg.push_str("; no crashing input was written"),
    }
    if let Some(cause) = cause(&text) {
        msg.push_str(&format!("\n{cause}"));
    }
    if let Some(p) = &artifact {
        msg.push_str(&format!(
            "\nreproduce (in supervisor/): RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer {} --target-dir {} {target} {}",
            sanitizer.arg(),
            target_dir.display(),
            p.display()
        ));
    }
    msg.push_str(&format!("\n{log_note}\n{}", tail(without_tool_backtrace(&text), TAIL_LINES)));
    Err(msg)
}

/// What went wrong, as the fuzz target or libFuzzer said it: the Rust panic
/// message ("thread ... panicked at FILE:LINE:COL:" and the message lines
/// after it) and the first sanitizer or libFuzzer "ERROR:" line.
fn cause(text: &str) -> Option<String> {
    let mut parts = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    if let Some(i) = lines.iter().position(|l| l.contains(" panicked at ")) {
        let msg: Vec<&str> = lines[i + 1..]
            .iter()
            .take_while(|l| !l.starts_with("stack backtrace:") && !l.starts_with("note: ") && !l.starts_with("=="))
            .take(10)
            .copied()
            .collect();
        parts.push(format!("{}\n{}", lines[i].trim(), msg.join("\n")).trim_end().to_string());
    }
    if let Some(l) = lines.iter().find(|l| l.starts_with("==") && l.contains("ERROR:")) {
        parts.push(l.trim().to_string());
    }
    if parts.is_empty() {
        None
    } else {
        Some(parts.join("\n"))
    }
}

/// cargo-fuzz's own error backtrace (printed under `RUST_BACKTRACE`) says
/// nothing about the crash; drop it so the tail shows the fuzzer's output.
fn without_tool_backtrace(text: &str) -> &str {
    match (text.rfind("\nError: "), text.rfind("\nStack backtrace:")) {
        (Some(e), Some(b)) if b > e => &text[..b],
        _ => text,
    }
}

/// libFuzzer reports a saved input as "... Test unit written to PATH".
/// A relative PATH is relative to the directory cargo-fuzz ran in.
fn artifact_path(text: &str, cwd: &Path) -> Option<PathBuf> {
    const MARK: &str = "Test unit written to ";
    let line = text.lines().rev().find(|l| l.contains(MARK))?;
    let p = line[line.find(MARK)? + MARK.len()..].trim();
    if p.is_empty() {
        return None;
    }
    let p = PathBuf::from(p);
    Some(if p.is_absolute() { p } else { cwd.join(p) })
}

/// The last libFuzzer status line ("#N DONE cov: ... exec/s: ..."), if any.
fn summary(text: &str) -> String {
    text.lines()
        .rev()
        .find(|l| l.starts_with('#') && l.contains("DONE"))
        .or_else(|| text.lines().rev().find(|l| l.starts_with("Done ")))
        .map(|l| l.trim().to_string())
        .unwrap_or_else(|| "done".into())
}

fn write_log(log: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(log, text)
}

fn output(cmd: &mut Command) -> Result<Output, String> {
    cmd.output().map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))
}

fn combined(out: &Output) -> String {
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    if !s.is_empty() && !s.ends_with('\n') {
        s.push('\n');
    }
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    s
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_artifact() {
        let text = "==1== ERROR\nMS: 1 ChangeByte-; base unit: 00\n0x1,\n\
                    artifact_prefix='/x/fuzz/artifacts/t/'; Test unit written to /x/fuzz/artifacts/t/crash-ab12\n\
                    Base64: AQ==\n";
        assert_eq!(artifact_path(text, Path::new("/s")), Some(PathBuf::from("/x/fuzz/artifacts/t/crash-ab12")));
        let rel = "artifact_prefix='fuzz/'; Test unit written to fuzz/crash-1\n";
        assert_eq!(artifact_path(rel, Path::new("/s")), Some(PathBuf::from("/s/fuzz/crash-1")));
        assert_eq!(artifact_path("nothing\n", Path::new("/s")), None);
    }

    #[test]
    fn finds_the_cause() {
        let text = "INFO: seed\nthread '<unnamed>' (1) panicked at src/x.rs:5:9:\nassertion failed\n  left: 1\n\
                    stack backtrace:\n   0: f\n==9== ERROR: libFuzzer: deadly signal\nError: Fuzz target exited\n\
                    Stack backtrace:\n   0: anyhow\n";
        assert_eq!(
            cause(text).as_deref(),
            Some("thread '<unnamed>' (1) panicked at src/x.rs:5:9:\nassertion failed\n  left: 1\n==9== ERROR: libFuzzer: deadly signal")
        );
        assert!(without_tool_backtrace(text).ends_with("Error: Fuzz target exited"));
        assert_eq!(cause("all fine\n"), None);
    }

    #[test]
    fn parses_the_arguments() {
        let v = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(parse_args(&v(&[])).unwrap(), (DEFAULT_SECONDS, vec![]));
        assert_eq!(parse_args(&v(&["5", "decode_payload"])).unwrap(), (5, vec!["decode_payload"]));
        assert_eq!(parse_args(&v(&["a", "b", "30"])).unwrap(), (30, vec!["a", "b"]));
        assert!(parse_args(&v(&["1", "2"])).is_err());
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a\n", 5), "a");
    }
}
