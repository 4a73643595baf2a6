//! Parts 1 and 2 on the host (no QEMU): container start latency of berth,
//! crun, runc and the kernel's floor, and berth's per-container cost when
//! it starts many at once.
//!
//! Every runtime starts the same static `true` from the same root
//! filesystem (a directory made here holding two tiny hand-assembled
//! x86_64 programs, `true` and `pause`), with equivalent confinement (see
//! [`super::oci`]). berth runs as `berth bench-start` (its own start path,
//! see `supervisor/src/bench.rs`) and the floor as `berth-floor`, both
//! long-lived and asked over a pipe; crun and runc are run once per start
//! (`crun run`, `runc run`: how they are used). The clock is the driver's
//! for all four: from the request to the answer (berth, floor) or to the
//! runtime's exit (crun, runc), so each time holds the start, the wait for
//! the exit and the teardown. Runs are interleaved round by round, the
//! order rotating each round; ratios are taken within a round. Scaling is
//! timed by berth itself: from its first launch until the last container
//! has exec'd (the request then also kills and reaps them).

use super::stats::Stats;
use super::{oci, Field, Report};
use berth::release::board::CgroupMode;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

/// Pause before each start (namespace and cgroup teardown of the previous
/// run is partly deferred in the kernel).
const SETTLE: std::time::Duration = std::time::Duration::from_millis(20);

/// Containers per scaling step.
pub const SCALE: [usize; 4] = [1, 8, 32, 64];

/// How much to run.
pub struct Plan {
    pub warmup: usize,
    pub rounds: usize,
    pub scale_rounds: usize,
}

/// What the host allows, or why it cannot run the benchmark.
pub fn check_host() -> Result<CgroupMode, String> {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(1).map(str::to_string)));
    if uid.as_deref() != Some("0") {
        return Err("not root: container starts need root on the host".into());
    }
    if std::env::consts::ARCH != "x86_64" {
        return Err(format!("the host is {}, the start benchmark's programs are x86_64", std::env::consts::ARCH));
    }
    let userns = std::fs::read_to_string("/proc/sys/user/max_user_namespaces").unwrap_or_default();
    if userns.trim().parse::<u64>().unwrap_or(0) == 0 {
        return Err("user namespaces are disabled (/proc/sys/user/max_user_namespaces is 0)".into());
    }
    let cg = Path::new(berth::confine::containers::CGROUP_MOUNT);
    if cg.join("cgroup.controllers").is_file() {
        Ok(CgroupMode::V2)
    } else if cg.join("devices/cgroup.procs").is_file() {
        Ok(CgroupMode::V1)
    } else {
        Err("neither a cgroup v2 hierarchy nor a v1 devices hierarchy is mounted at /sys/fs/cgroup".into())
    }
}

/// The v2 hierarchy of a hybrid layout, which crun refuses when it has
/// controllers.
const UNIFIED: &str = "/sys/fs/cgroup/unified";

/// On a hybrid cgroup host whose v2 hierarchy holds controllers, hide that
/// hierarchy from every runtime: this process moves to a private mount
/// namespace (propagation slave, so nothing reaches the host) and unmounts
/// it there. The v1 hierarchies stay. Returns what was done, for the notes.
fn hide_hybrid_v2() -> Result<Option<String>, String> {
    let controllers = std::fs::read_to_string(Path::new(UNIFIED).join("cgroup.controllers")).unwrap_or_default();
    if controllers.trim().is_empty() {
        return Ok(None);
    }
    // SAFETY: plain system calls on constant C strings; the xtask has no
    // other thread at this point (CLONE_NEWNS would refuse otherwise).
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return Err(format!("unshare(CLONE_NEWNS): {}", std::io::Error::last_os_error()));
        }
        let none = std::ptr::null::<libc::c_char>();
        if libc::mount(none, c"/".as_ptr(), none, libc::MS_REC | libc::MS_SLAVE, std::ptr::null()) != 0 {
            return Err(format!("make / a slave mount: {}", std::io::Error::last_os_error()));
        }
        if libc::umount2(c"/sys/fs/cgroup/unified".as_ptr(), libc::MNT_DETACH) != 0 {
            return Err(format!("umount {UNIFIED}: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(Some(format!(
        "the host's cgroups are hybrid with controllers ({}) in {UNIFIED}, which crun refuses; all four ran in a private mount namespace without it (v1 hierarchies only)",
        controllers.trim()
    )))
}

/// The first three fields of `/proc/loadavg`.
pub fn loadavg() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// A minimal static x86_64 ELF executable: one loadable segment holding
/// the ELF header, the program header and `code`, entered at `code`.
pub fn elf_x86_64(code: &[u8]) -> Vec<u8> {
    const BASE: u64 = 0x40_0000;
    const HEADERS: u64 = 64 + 56;
    let total = HEADERS + code.len() as u64;
    let mut e = Vec::new();
    e.extend_from_slice(b"\x7fELF");
    e.extend_from_slice(&[2, 1, 1, 0]); // 64-bit, little-endian, version 1, System V
    e.extend_from_slice(&[0; 8]);
    e.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    e.extend_from_slice(&0x3eu16.to_le_bytes()); // EM_X86_64
    e.extend_from_slice(&1u32.to_le_bytes());
    e.extend_from_slice(&(BASE + HEADERS).to_le_bytes()); // entry
    e.extend_from_slice(&64u64.to_le_bytes()); // program headers
    e.extend_from_slice(&0u64.to_le_bytes()); // no section headers
    e.extend_from_slice(&0u32.to_le_bytes());
    for v in [64u16, 56, 1, 0, 0, 0] {
        e.extend_from_slice(&v.to_le_bytes());
    }
    e.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    e.extend_from_slice(&5u32.to_le_bytes()); // R + X
    for v in [0, BASE, BASE, total, total, 0x1000u64] {
        e.extend_from_slice(&v.to_le_bytes());
    }
    e.extend_from_slice(code);
    e
}

/// `exit_group(0)`: `xor edi, edi; mov eax, 231; syscall`.
const EXIT0: [u8; 9] = [0x31, 0xff, 0xb8, 0xe7, 0, 0, 0, 0x0f, 0x05];
/// `pause()` (`mov eax, 34; syscall`), then `exit_group(0)`.
fn pause_code() -> Vec<u8> {
    let mut c = vec![0xb8, 0x22, 0, 0, 0, 0x0f, 0x05];
    c.extend_from_slice(&EXIT0);
    c
}

/// The shared root filesystem: `bin/true`, `bin/pause` and the mount points.
pub fn make_rootfs(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_dir_all(dir);
    for d in ["bin", "proc", "dev", "sys", "tmp"] {
        std::fs::create_dir_all(dir.join(d)).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    for (name, code) in [("true", EXIT0.to_vec()), ("pause", pause_code())] {
        let p = dir.join("bin").join(name);
        std::fs::write(&p, elf_x86_64(&code)).map_err(|e| format!("{}: {e}", p.display()))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).map_err(|e| format!("{}: {e}", dir.display()))
}

/// A long-lived program answering `BENCH ok us=N` per request line.
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

    /// Send one request; returns the program's own times in microseconds
    /// (`us=`, and `exec_us=` when given).
    fn request(&mut self, line: &str) -> Result<(u64, Option<u64>), String> {
        let stdin = self.stdin.as_mut().ok_or("closed")?;
        writeln!(stdin, "{line}").and_then(|()| stdin.flush()).map_err(|e| format!("request `{line}`: {e}"))?;
        let mut buf = String::new();
        loop {
            buf.clear();
            if self.out.read_line(&mut buf).map_err(|e| e.to_string())? == 0 {
                return Err(format!("request `{line}`: the program ended"));
            }
            if let Some(rest) = buf.trim_end().strip_prefix("BENCH ") {
                let field = |k: &str| rest.split_whitespace().find_map(|w| w.strip_prefix(k)).and_then(|v| v.parse::<u64>().ok());
                return match (rest.starts_with("ok "), field("us=")) {
                    (true, Some(us)) => Ok((us, field("exec_us="))),
                    _ => Err(format!("request `{line}`: {rest}")),
                };
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

enum Runner {
    Server(Server),
    Cli { program: &'static str, bundle: PathBuf, count: u32 },
}

impl Runner {
    /// One start of `true` to its exit, in milliseconds on the driver's
    /// clock, and the program's own time until the exec when it says.
    fn start(&mut self) -> Result<(f64, Option<f64>), String> {
        let t0 = Instant::now();
        let mut exec = None;
        match self {
            Runner::Server(s) => {
                exec = s.request("start")?.1.map(|us| us as f64 / 1e3);
            }
            Runner::Cli { program, bundle, count } => {
                *count += 1;
                let id = format!("berth-bench-{program}-{}-{count}", std::process::id());
                let out = Command::new(*program)
                    .arg("run")
                    .arg("--bundle")
                    .arg(&*bundle)
                    .arg(&id)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .output()
                    .map_err(|e| format!("{program}: {e}"))?;
                if !out.status.success() {
                    return Err(format!("{program} run: {}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()));
                }
            }
        }
        Ok((t0.elapsed().as_secs_f64() * 1e3, exec))
    }
}

/// Build the host berth (release profile, `host` feature) and the floor.
fn build(root: &Path) -> Result<(PathBuf, PathBuf), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    crate::say("building berth (host, release) and berth-floor for the start benchmark");
    crate::run_cmd(Command::new(&cargo).current_dir(root).args(["build", "--quiet", "--release", "-p", "berth", "--features", "host", "--bin", "berth"]))?;
    crate::run_cmd(Command::new(&cargo).current_dir(root).args(["build", "--quiet", "--release", "-p", "qemu-tests", "--bin", "berth-floor"]))?;
    let dir = crate::cargo_target_dir(root).join("release");
    Ok((dir.join("berth"), dir.join("berth-floor")))
}

const NAMES: [&str; 4] = ["berth", "crun", "runc", "floor"];

/// Parts 1 and 2; fills the report's `start_*` and `scale_*` fields.
pub fn run(root: &Path, plan: &Plan, report: &mut Report, notes: &mut Vec<String>) -> Result<(), String> {
    let mode = check_host()?;
    crate::tools::ensure_packages(&["crun", "runc"])?;
    let (berth_bin, floor_bin) = build(root)?;
    let hidden = hide_hybrid_v2()?;
    let work = std::env::temp_dir().join("berth-bench");
    let rootfs = work.join("rootfs");
    make_rootfs(&rootfs)?;
    let rootfs_s = rootfs.to_str().ok_or("temporary directory is not UTF-8")?.to_string();
    let board_file = crate::artifacts::board_path(root, berth::release::board::Arch::X86_64);
    let board = crate::artifacts::load_board(&board_file)?;
    // berth's own start path, as a line-driven server (parts 1 and 2).
    let bench_start = || {
        Server::spawn(
            Command::new(&berth_bin)
                .arg("bench-start")
                .args(["--root", &rootfs_s, "--cgroup", if mode == CgroupMode::V2 { "v2" } else { "v1" }])
                .arg("--board")
                .arg(&board_file),
        )
    };
    let mut runners = Vec::new();
    let berth = bench_start()?;
    runners.push(Runner::Server(berth));
    for (i, program) in ["crun", "runc"].into_iter().enumerate() {
        let bundle = work.join(program);
        std::fs::create_dir_all(&bundle).map_err(|e| format!("{}: {e}", bundle.display()))?;
        let config = oci::config(&board, &rootfs_s, "/bin/true", 5_000_000 + 100_000 * i as u32, &format!("/berth-bench-{program}"))?;
        std::fs::write(bundle.join("config.json"), config).map_err(|e| format!("{}: {e}", bundle.display()))?;
        runners.push(Runner::Cli { program, bundle, count: 0 });
    }
    runners.push(Runner::Server(Server::spawn(Command::new(&floor_bin).args(["--root", &rootfs_s]))?));

    crate::say(&format!("start latency: {} warm-up and {} measured rounds of berth, crun, runc, floor", plan.warmup, plan.rounds));
    let load_before = loadavg();
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); runners.len()];
    let (mut vs_crun, mut vs_floor, mut berth_exec) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..plan.warmup + plan.rounds {
        let mut this = [0.0; 4];
        for k in 0..runners.len() {
            let i = (round + k) % runners.len();
            // Let the previous run's deferred kernel work settle first.
            std::thread::sleep(SETTLE);
            let r = runners.get_mut(i).ok_or("runner")?;
            let (ms, exec) = r.start().map_err(|e| format!("{}: {e}", NAMES.get(i).unwrap_or(&"?")))?;
            if let Some(slot) = this.get_mut(i) {
                *slot = ms;
            }
            if let (0, Some(x), true) = (i, exec, round >= plan.warmup) {
                berth_exec.push(x);
            }
        }
        if round >= plan.warmup {
            for (t, ms) in times.iter_mut().zip(this) {
                t.push(ms);
            }
            vs_crun.push(this[0] / this[1]);
            vs_floor.push(this[0] / this[3]);
        }
    }
    let note = format!(
        "x86_64 host, cgroup {}; static `true` (hand-made ELF) in a read-only root; started, waited for and torn down",
        if mode == CgroupMode::V2 { "v2" } else { "v1" }
    );
    notes.extend(hidden);
    notes.push(format!(
        "parts 1-2: load average (1, 5, 15 min) {load_before} before the start rounds and {} after them, on {} CPUs: a shared machine",
        loadavg(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    ));
    for (name, t) in NAMES.iter().zip(&times) {
        report.set(Field::from_stats(&format!("start_ms_{name}"), "ms", Stats::of(t), &note));
    }
    report.set(Field::from_stats(
        "start_ms_berth_to_exec",
        "ms",
        Stats::of(&berth_exec),
        "berth's own clock: launch until the program exec'd (cgroup, host preparation, spawn); the rest of start_ms_berth is the wait for the exit and the teardown",
    ));
    // The same two again, back to back without the pause: shows what a start
    // costs when the kernel's per-migration RCU state is still warm (see docs/performance.md).
    let mut b2b: Vec<Vec<f64>> = vec![Vec::new(); 2];
    for _ in 0..plan.rounds.div_ceil(4) {
        for (k, i) in [0usize, 3].into_iter().enumerate() {
            let (ms, _) = runners.get_mut(i).ok_or("runner")?.start()?;
            if let Some(v) = b2b.get_mut(k) {
                v.push(ms);
            }
        }
    }
    for (name, v) in ["berth", "floor"].iter().zip(&b2b) {
        report.set(Field::from_stats(
            &format!("start_ms_{name}_back_to_back"),
            "ms",
            Stats::of(v),
            "berth and the floor alternating with no pause and no crun/runc in between",
        ));
    }
    report.set(Field::from_stats("start_ratio_berth_vs_crun", "x", Stats::of(&vs_crun), "per-round ratio, same rounds"));
    report.set(Field::from_stats("start_ratio_berth_vs_floor", "x", Stats::of(&vs_floor), "per-round ratio, same rounds"));
    drop(runners);

    // Part 2: berth alone, N = 1, 8, 32, 64 interleaved.
    let mut berth = bench_start()?;
    crate::say(&format!("scaling: {} rounds of 1, 8, 32, 64 containers", plan.scale_rounds));
    let mut per: Vec<Vec<f64>> = vec![Vec::new(); SCALE.len()];
    for round in 0..plan.warmup + plan.scale_rounds {
        for k in 0..SCALE.len() {
            let i = (round + k) % SCALE.len();
            let n = SCALE.get(i).copied().unwrap_or(1);
            // berth's own clock: the request also kills and reaps them.
            let ms = berth.request(&format!("scale {n}"))?.0 as f64 / 1e3;
            if round >= plan.warmup {
                if let Some(p) = per.get_mut(i) {
                    p.push(ms / n as f64);
                }
            }
        }
    }
    let note = "berth starts them one after another from one thread, as its loop does; \
                time until the last has exec'd (each runs `pause`), divided by N; teardown not counted";
    for (n, p) in SCALE.iter().zip(&per) {
        report.set(Field::from_stats(&format!("scale_ms_per_container_{n}"), "ms", Stats::of(p), note));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_elf_is_well_formed() {
        let e = elf_x86_64(&EXIT0);
        assert_eq!(e.len(), 64 + 56 + EXIT0.len());
        assert_eq!(&e[..4], b"\x7fELF");
        let entry = u64::from_le_bytes(e[24..32].try_into().unwrap());
        assert_eq!(entry, 0x40_0000 + 120);
        let filesz = u64::from_le_bytes(e[64 + 32..64 + 40].try_into().unwrap());
        assert_eq!(filesz, e.len() as u64);
        assert_eq!(&e[120..], &EXIT0);
    }

    #[test]
    fn the_elf_runs_and_exits_zero() {
        if std::env::consts::ARCH != "x86_64" {
            return;
        }
        use std::os::unix::fs::PermissionsExt;
        let p = std::env::temp_dir().join(format!("berth-bench-true-{}", std::process::id()));
        std::fs::write(&p, elf_x86_64(&EXIT0)).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        let st = Command::new(&p).status().unwrap();
        let _ = std::fs::remove_file(&p);
        assert!(st.success(), "{st}");
    }
}
