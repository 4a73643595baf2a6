//! `bench-guest`: the guest side of `cargo xtask bench`'s part 6 (host
//! build of berth, copied into a QEMU test image and started there by the
//! `berth.run=` test hook under the name [`NAME`]). It owns the rounds:
//! berth's own start path (`berth bench-start`, the same code as on the
//! build host, on cgroup v2), `crun run` and the floor (`berth-floor`),
//! interleaved round by round, and the result lines on the console.
//!
//! It must not touch berth's containers: `bench-start` keeps its cgroups in
//! a subtree of its own and crun gets a cgroup path of its own; it must not
//! run without being asked (only its link name selects it).
//!
//! The clock is this driver's for all three, as on the host: from the
//! request to the answer (berth, floor: long-lived, asked over a pipe) or
//! to the runtime's exit (crun, run once per start). The order rotates each
//! round. The kernel command line's `berth.bench=WARMUP,ROUNDS` says how
//! much; the lines it prints ([`PREFIX`]):
//!
//! | line | when |
//! |---|---|
//! | `BENCHV2 place how=<clone_into_cgroup/migrate>` | berth's first start told how its process joined its cgroup |
//! | `BENCHV2 step mount-<i> <plan step>` | before the first round: what each mount step of the breakdown is |
//! | `BENCHV2 round=<i> berth_us=<n> crun_us=<n> floor_us=<n> berth_exec_us=<n> berth_steps=<step>:<us>,...` | each measured round (warm-up rounds print nothing); `berth_exec_us` is berth's own clock from its launch until the program exec'd, `berth_steps` that time step by step |
//! | `BENCHV2 done rounds=<n>` | the end |
//! | `BENCHV2 error <text>` | a failure; nothing follows |

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// The name of the link to berth that runs this driver.
pub const NAME: &str = "bench-guest";
/// Where the bench files live in the guest's system image: `berth` (this
/// build), [`NAME`] (a link to it), `berth-floor`, `crun` and its
/// libraries in `lib/`, `board.toml`, `rootfs/` and `crun-bundle/`.
pub const DIR: &str = "/usr/lib/berth/bench";
/// The start of every result line.
pub const PREFIX: &str = "BENCHV2 ";
/// The kernel command line key of the plan.
pub const PLAN_KEY: &str = "berth.bench=";
/// Most rounds (warm-up included) one boot may ask for.
pub const ROUNDS_MAX: usize = 10_000;
/// Pause before each start (teardown of the previous run is partly
/// deferred in the kernel), as on the host.
const SETTLE: Duration = Duration::from_millis(20);
/// crun's cgroup (a sibling of bench-start's subtree).
pub const CRUN_CGROUP: &str = "/berth-bench-crun";

/// `berth.bench=WARMUP,ROUNDS` from a kernel command line.
pub fn parse_plan(cmdline: &str) -> Result<(usize, usize), String> {
    let v = cmdline
        .split_ascii_whitespace()
        .find_map(|t| t.strip_prefix(PLAN_KEY))
        .ok_or_else(|| format!("no {PLAN_KEY}WARMUP,ROUNDS on the kernel command line"))?;
    let (w, r) = v.split_once(',').ok_or_else(|| format!("{PLAN_KEY}{v}: not WARMUP,ROUNDS"))?;
    let num = |s: &str| s.parse::<usize>().map_err(|_| format!("{PLAN_KEY}{v}: `{s}` is not a number"));
    let (w, r) = (num(w)?, num(r)?);
    if r == 0 || w.saturating_add(r) > ROUNDS_MAX {
        return Err(format!("{PLAN_KEY}{v}: ROUNDS must be at least 1 and WARMUP + ROUNDS at most {ROUNDS_MAX}"));
    }
    Ok((w, r))
}

/// A long-lived program answering `BENCH ok us=N ...` per request line.
struct Server {
    child: Child,
    stdin: Option<ChildStdin>,
    out: BufReader<ChildStdout>,
}

impl Server {
    fn spawn(cmd: &mut Command) -> Result<Server, String> {
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().map_err(|e| format!("{cmd:?}: {e}"))?;
        let stdin = child.stdin.take();
        let out = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        Ok(Server { child, stdin, out })
    }

    /// Send one request and wait for its answer (its `exec_us=` and
    /// `steps=`, when given); the lines before it are handed to `seen`
    /// (berth's events).
    fn request(&mut self, line: &str, seen: &mut dyn FnMut(&str)) -> Result<(Option<u128>, Option<String>), String> {
        let stdin = self.stdin.as_mut().ok_or("closed")?;
        writeln!(stdin, "{line}").and_then(|()| stdin.flush()).map_err(|e| format!("request `{line}`: {e}"))?;
        let mut buf = String::new();
        loop {
            buf.clear();
            if self.out.read_line(&mut buf).map_err(|e| e.to_string())? == 0 {
                return Err(format!("request `{line}`: the program ended"));
            }
            match buf.trim_end().strip_prefix("BENCH ") {
                Some(rest) if rest.starts_with("ok ") => {
                    let field = |k: &str| rest.split_whitespace().find_map(|w| w.strip_prefix(k));
                    return Ok((field("exec_us=").and_then(|v| v.parse().ok()), field("steps=").map(str::to_owned)));
                }
                Some(rest) => return Err(format!("request `{line}`: {rest}")),
                None => seen(buf.trim_end()),
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// `how=` of berth's `cgroup.place` event line, if it is one.
pub fn placement(line: &str) -> Option<&str> {
    if !line.split_whitespace().any(|w| w == "ev=cgroup.place") {
        return None;
    }
    line.split_whitespace().find_map(|w| w.strip_prefix("how="))
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{PREFIX}{line}");
    let _ = out.flush();
}

/// One `crun run` of the bundle, to its exit.
fn crun(dir: &Path, n: usize) -> Result<(), String> {
    let out = Command::new(dir.join("crun"))
        .env_clear()
        .env("LD_LIBRARY_PATH", dir.join("lib"))
        .env("PATH", "/sbin:/bin")
        .args(["run", "--bundle"])
        .arg(dir.join("crun-bundle"))
        .arg(format!("berth-bench-crun-{n}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("crun: {e}"))?;
    if !out.status.success() {
        return Err(format!("crun run: {}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(())
}

/// The rounds; prints the result lines.
fn rounds(warmup: usize, rounds: usize) -> Result<(), String> {
    let dir = Path::new(DIR);
    let root = dir.join("rootfs");
    let mut berth = Server::spawn(
        Command::new(dir.join("berth")).arg("bench-start").arg("--root").arg(&root).arg("--board").arg(dir.join("board.toml")).args(["--cgroup", "v2"]),
    )?;
    let mut floor = Server::spawn(Command::new(dir.join("berth-floor")).arg("--root").arg(&root))?;
    let mut placed = None;
    let mut exec = 0;
    let mut steps = String::new();
    for round in 0..warmup + rounds {
        let mut us = [0u128; 3];
        for k in 0..3 {
            let i = (round + k) % 3;
            std::thread::sleep(SETTLE);
            let t0 = Instant::now();
            match i {
                0 => {
                    let (e, s) = berth.request("start", &mut |l| {
                        if let Some(step) = l.strip_prefix("STEP ") {
                            say(&format!("step {step}"));
                        } else if placed.is_none() {
                            placed = placement(l).map(str::to_owned);
                        }
                    })?;
                    exec = e.ok_or("berth bench-start gave no exec_us")?;
                    steps = s.unwrap_or_default();
                }
                1 => crun(dir, round)?,
                _ => {
                    floor.request("start", &mut |_| {}).map_err(|e| format!("floor: {e}"))?;
                }
            }
            if let Some(slot) = us.get_mut(i) {
                *slot = t0.elapsed().as_micros();
            }
        }
        if round == 0 {
            say(&format!("place how={}", placed.as_deref().unwrap_or("unknown")));
        }
        if round >= warmup {
            let [b, c, f] = us;
            say(&format!("round={} berth_us={b} crun_us={c} floor_us={f} berth_exec_us={exec} berth_steps={steps}", round - warmup));
        }
    }
    say(&format!("done rounds={rounds}"));
    Ok(())
}

/// Read the plan, run the rounds; a failure is printed as an error line.
pub fn run() -> Result<(), String> {
    let r = std::fs::read_to_string("/proc/cmdline").map_err(|e| format!("/proc/cmdline: {e}")).and_then(|c| parse_plan(&c)).and_then(|(w, n)| rounds(w, n));
    if let Err(e) = &r {
        say(&format!("error {}", e.replace('\n', " ")));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_comes_from_the_command_line() {
        assert_eq!(parse_plan("console=ttyS0 berth.bench=2,30 quiet"), Ok((2, 30)));
        assert_eq!(parse_plan("berth.bench=0,1"), Ok((0, 1)));
        assert!(parse_plan("console=ttyS0").unwrap_err().contains("no berth.bench="));
        assert!(parse_plan("berth.bench=3").unwrap_err().contains("not WARMUP,ROUNDS"));
        assert!(parse_plan("berth.bench=1,x").unwrap_err().contains("`x` is not a number"));
        assert!(parse_plan("berth.bench=1,0").is_err(), "no measured round");
        assert!(parse_plan("berth.bench=5000,5001").is_err(), "too many");
    }

    #[test]
    fn the_placement_is_read_from_berths_event() {
        assert_eq!(placement("BERTH t=1.000000 ev=cgroup.place how=clone_into_cgroup"), Some("clone_into_cgroup"));
        assert_eq!(placement("BERTH t=1.000000 ev=cgroup.place how=migrate reason=\"cgroup v1\""), Some("migrate"));
        assert_eq!(placement("BERTH t=1.000000 ev=container.start name=bench-true how=x"), None);
    }
}
