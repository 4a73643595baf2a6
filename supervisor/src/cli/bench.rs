//! `berth bench-start`: the supervisor's own container start path, driven
//! line by line from standard input by `cargo xtask bench` (host build only).
//!
//! It must not touch a supervisor's containers: its cgroups live in a subtree
//! of their own (`--group`).
//!
//! The containers are made exactly as at boot: a manifest per container,
//! [`crate::confine::containers::spec`] (plan, seccomp filter, device rules, limits),
//! then [`crate::confine::containers::launch_in`] (host preparation, cgroup with the
//! device allowlist, the two-fork spawn) and, after the exit, the same
//! cgroup teardown the PID 1 loop does. Only the cgroup subtree differs
//! (`--group`), so a benchmark never meets a supervisor's containers. Every
//! container has the host's network (no network namespace), like the
//! runtimes it is compared with.
//!
//! Commands, one per line; each answers one `BENCH ...` line (event lines
//! from the launches come in between):
//!
//! | command | does | answer |
//! |---|---|---|
//! | `start` | start `/bin/true`, wait for its exit, remove its cgroup | `BENCH ok us=<all> exec_us=<until it exec'd> steps=<step>:<us>,...` (the start path's stamps, [`crate::confine::container::spawn::stamps`]) |
//! | `scale N` | start N containers running `/bin/pause` one after another (as the loop does) | `BENCH ok us=<until the last one exec'd> exec_us=<the same>` |
//!
//! Before the first command it prints `STEP mount-<i> <plan step>` for each
//! mount step of the `start` container (what the breakdown's `mount-<i>` is).
//! After `scale` the containers are killed and reaped before the answer.
//! A failure answers `BENCH error <text>`; end of input ends the program.

use std::io::{BufRead, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Instant;

use nix::sys::wait::waitpid;

use crate::confine::container::spawn::stamps as stamp;
use crate::confine::containers::{self, Launched, Spec};
use crate::release::board::{Board, CgroupMode};
use crate::release::manifest::Manifest;

/// Most containers one `scale` may start.
pub const SCALE_MAX: usize = 64;

pub const USAGE: &str = "usage: berth bench-start --root DIR --board FILE --cgroup v1|v2 [--cgroup-mount DIR] [--group NAME]";

struct Opts {
    root: String,
    board: PathBuf,
    mode: CgroupMode,
    mount: PathBuf,
    group: String,
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let (mut root, mut board, mut mode) = (None, None, None);
    let mut mount = PathBuf::from(containers::CGROUP_MOUNT);
    let mut group = "berth-bench".to_string();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().ok_or_else(|| format!("{a} needs a value\n{USAGE}"));
        match a.as_str() {
            "--root" => root = Some(value()?),
            "--board" => board = Some(PathBuf::from(value()?)),
            "--cgroup" => {
                mode = Some(match value()?.as_str() {
                    "v1" => CgroupMode::V1,
                    "v2" => CgroupMode::V2,
                    v => return Err(format!("--cgroup: `{v}` is not v1 or v2")),
                })
            }
            "--cgroup-mount" => mount = PathBuf::from(value()?),
            "--group" => group = value()?,
            _ => return Err(USAGE.into()),
        }
    }
    match (root, board, mode) {
        (Some(root), Some(board), Some(mode)) => Ok(Opts { root, board, mode, mount, group }),
        _ => Err(USAGE.into()),
    }
}

/// The manifest of bench container `name` running `program`: defaults
/// everywhere, the host's network.
fn manifest(name: &str, program: &str) -> Result<Manifest, String> {
    let text = format!("name = \"{name}\"\nversion = \"1\"\nimage = \"sha256:{}\"\nnetwork = \"host\"\n[entry]\nargv = [\"{program}\"]\n", "0".repeat(64));
    let m: Manifest = toml::from_str(&text).map_err(|e| format!("bench manifest {name}: {e}"))?;
    m.validate_fields().map_err(|e| e.to_string())?;
    Ok(m)
}

fn spec(board: &Board, index: u16, name: &str, program: &str, o: &Opts) -> Result<Spec, String> {
    let arch = crate::confine::seccomp::Arch::running().map_err(|e| e.to_string())?;
    let m = manifest(name, program)?;
    let layers = containers::layers(board).map_err(|(step, e)| format!("{step}: {e}"))?;
    containers::spec(&m, board, index, arch, &o.root, &layers).map_err(|(step, e)| format!("{step}: {e}"))
}

/// Wait for the container's init, then remove its cgroup (what the PID 1
/// loop does when a container ends).
fn finish(l: Launched) -> Result<(), String> {
    let Launched { pid, output, cgroup } = l;
    loop {
        match waitpid(pid, None) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(format!("waitpid {pid}: {e}")),
            Ok(_) => break,
        }
    }
    drop(output);
    crate::confine::cgroup::act::kill_and_remove(cgroup).map_err(|e| e.to_string())
}

/// Start, wait, tear down: the whole time, the part until the exec and
/// that part step by step (`label:us,...`, from the start path's stamps).
fn start(s: &Spec, o: &Opts, stamps: &OwnedFd) -> Result<(u128, u128, String), String> {
    let _ = stamp::drain(stamps);
    let t0 = Instant::now();
    let l = containers::launch_in(s, &o.mount, &o.group).map_err(|(step, e)| format!("{step}: {e}"))?;
    let exec = t0.elapsed().as_micros();
    let steps = stamp::breakdown(stamp::drain(stamps)).iter().map(|(l, us)| format!("{l}:{us}")).collect::<Vec<_>>().join(",");
    finish(l)?;
    Ok((t0.elapsed().as_micros(), exec, steps))
}

fn scale(specs: &[Spec], n: usize, o: &Opts) -> Result<u128, String> {
    let specs = specs.get(..n).ok_or_else(|| format!("scale: at most {SCALE_MAX} containers"))?;
    let t0 = Instant::now();
    let mut running = Vec::new();
    let mut failed = None;
    for s in specs {
        match containers::launch_in(s, &o.mount, &o.group) {
            Ok(l) => running.push(l),
            Err((step, e)) => {
                failed = Some(format!("{}: {step}: {e}", s.name));
                break;
            }
        }
    }
    let us = t0.elapsed().as_micros();
    for l in running {
        let _ = nix::sys::signal::kill(l.pid, nix::sys::signal::Signal::SIGKILL);
        finish(l)?;
    }
    failed.map_or(Ok(us), Err)
}

fn answer(out: &mut impl Write, r: Result<(u128, u128, String), String>) -> std::io::Result<()> {
    match r {
        Ok((us, exec, steps)) if steps.is_empty() => writeln!(out, "BENCH ok us={us} exec_us={exec}")?,
        Ok((us, exec, steps)) => writeln!(out, "BENCH ok us={us} exec_us={exec} steps={steps}")?,
        Err(e) => writeln!(out, "BENCH error {}", e.replace('\n', " "))?,
    }
    out.flush()
}

/// Run the command loop until standard input ends.
pub fn serve(args: &[String]) -> Result<(), String> {
    let o = parse(args)?;
    if !Path::new(&o.root).join("bin/true").is_file() {
        return Err(format!("{}: no bin/true in the root filesystem", o.root));
    }
    let text = std::fs::read_to_string(&o.board).map_err(|e| format!("{}: {e}", o.board.display()))?;
    let mut board = Board::from_toml(&text).map_err(|e| format!("{}: {e}", o.board.display()))?;
    board.cgroup = o.mode;
    let one = spec(&board, 0, "bench-true", "/bin/true", &o)?;
    let mut many = Vec::new();
    for i in 0..SCALE_MAX {
        let index = u16::try_from(i + 1).map_err(|e| e.to_string())?;
        many.push(spec(&board, index, &format!("bench-{i}"), "/bin/pause", &o)?);
    }
    let stamps = stamp::arm().map_err(|e| format!("stamp pipe: {e}"))?;
    let mut out = std::io::stdout();
    // Which plan step each `mount-N` of the breakdown is.
    for (i, step) in one.plan.steps.iter().enumerate() {
        writeln!(out, "STEP mount-{i} {step}").map_err(|e| e.to_string())?;
    }
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let line = line.map_err(|e| e.to_string())?;
        let r = match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["start"] => start(&one, &o, &stamps),
            ["scale", n] => match n.parse::<usize>() {
                Ok(n) if (1..=SCALE_MAX).contains(&n) => scale(&many, n, &o).map(|us| (us, us, String::new())),
                _ => Err(format!("scale: `{n}` is not 1..={SCALE_MAX}")),
            },
            _ => Err(format!("unknown command `{line}`")),
        };
        answer(&mut out, r).map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(extra: &[&str]) -> Result<Opts, String> {
        let mut a: Vec<String> = ["--root", "/tmp/r", "--board", "b.toml", "--cgroup", "v1"].iter().map(|s| s.to_string()).collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        parse(&a)
    }

    #[test]
    fn options_need_root_board_and_mode() {
        let o = opts(&[]).unwrap();
        assert_eq!((o.root.as_str(), o.mode, o.group.as_str()), ("/tmp/r", CgroupMode::V1, "berth-bench"));
        assert_eq!(opts(&["--group", "g"]).unwrap().group, "g");
        assert!(opts(&["--cgroup", "v3"]).is_err());
        assert!(parse(&["--root".into(), "/r".into()]).is_err());
    }

    #[test]
    fn bench_containers_are_planned_like_any_other() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../board-configs/qemu-x86_64.toml")).unwrap();
        let mut board = Board::from_toml(&text).unwrap();
        board.cgroup = CgroupMode::V1;
        let o = opts(&[]).unwrap();
        let s = spec(&board, 3, "bench-3", "/bin/pause", &o).unwrap();
        assert_eq!(s.name.as_str(), "bench-3");
        assert!(!s.plan.namespaces.own_net(), "the host's network, as the compared runtimes");
        assert_eq!(s.plan.ids.outside_base, 100_000 + 3 * 65_536);
        assert!(!s.filter.is_empty(), "seccomp filter compiled");
        assert_eq!(s.cgroup, CgroupMode::V1);
        // Like any container: the board's default memory limit, high below it.
        let want = crate::confine::budget::resolve(None, &[], &board.budgets, crate::confine::budget::mem_total_here()).unwrap();
        let defaults = crate::confine::cgroup::limits::Limits::from_resources(None);
        assert_eq!(s.limits, crate::confine::cgroup::limits::Limits { memory_max: Some(want.max), memory_high: want.high, ..defaults });
        assert!(manifest("Bad_Name", "/bin/true").is_err());
    }
}
