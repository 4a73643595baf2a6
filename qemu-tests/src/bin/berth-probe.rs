//! berth-probe: the container escape probe. It runs INSIDE a container
//! started by berth (uid 0 in a user namespace mapped to an unprivileged
//! host uid, its own mount/pid/ipc/uts/cgroup/net namespaces, read-only
//! root, tmpfs /tmp, seccomp, no capabilities unless granted, minimal /dev)
//! and tries to get out. One line per attempt on stdout:
//!
//! ```text
//! PROBE name=<attempt> result=blocked|escaped|error detail="..."
//! PROBE name=<check> result=works|broken detail="..."
//! PROBE done blocked=N escaped=N error=N works=N broken=N
//! ```
//!
//! An attempt is `blocked` only when refused by policy: an errno from the
//! attempt's own accepted set (`--list` prints them), or the attempt's child
//! killed by SIGSYS or SIGKILL (seccomp). Any other errno (EINVAL, EFAULT,
//! EBADF, EAFNOSUPPORT...) means the call reached the kernel's argument
//! checks, so it was NOT stopped by policy: `error`. Success is `escaped`.
//! Every attempt runs in its own forked child with a timeout, so a crash,
//! a seccomp kill or a hang costs one line, never the whole probe.
//!
//! Modes:
//! - `berth-probe`: the "must work" checks, then every attempt, then the
//!   summary; exit 0 when nothing escaped, errored or broke, 1 otherwise.
//! - `berth-probe --whoami`: print `PROBE whoami euid=N capeff=HEX` (used
//!   through the setuid-root copy `/bin/suid-probe`).
//! - `berth-probe --flood SECS`, `--heartbeat MS`: output load (see
//!   `berth-probe/output.rs`).
//! - `berth-probe --exhaust PAUSE_MS`, `--neighbour BEAT_MS`: per-user
//!   kernel budgets and memory (see `berth-probe/budgets.rs`).
//! - `berth-probe --fill-volume DIR`: fill a volume to its quota (see
//!   `berth-probe/volume.rs`).
//! - `berth-probe --print-controls`: print a line of terminal controls and
//!   send controls as its `STATUS=` (see `berth-probe/controls.rs`).
//! - `berth-probe --check-window`: the attempts on a readiness or health
//!   command berth holds before its exec (see `berth-probe/window.rs`).
//! - `berth-probe --list`: print `PROBE attempt name=X accept=E1,E2`, one per
//!   attempt (those of `--check-window` too), without running anything.
//!
//! Environment: `PROBE_EXPECT_CAP=CAP_X` (a granted capability to verify),
//! `PROBE_EXPECT_DEVICE=/dev/x` (a granted device to read),
//! `PROBE_EXPECT_LANDLOCK=1` (a Landlock ruleset must be in force: its own
//! `/proc/self/comm` refused for writing), `PROBE_EXPECT_EXEC_DENIED=/path`
//! and `PROBE_EXPECT_EXEC_WORKS=/path` (a copy of the probe that `exec_paths`
//! does or does not let run), `PROBE_TIMEOUT_SECS` (per attempt, default 20).
//! The AppArmor label it runs under is always reported (`apparmor-label`).
//!
//! Safety: it refuses to run (exit 2) in the initial user namespace with
//! uid 0 or any capability, so the reboot/kexec/sysrq attempts can never
//! touch a real machine. The reboot attempt is never made with CAP_SYS_BOOT
//! in the effective set (that alone is reported as `escaped`).
//!
//! Static, std + libc only; it must never panic on anything the container
//! can do.

#[path = "berth-probe/attempts.rs"]
mod attempts;
#[path = "berth-probe/budgets.rs"]
mod budgets;
#[path = "berth-probe/controls.rs"]
mod controls;
#[path = "berth-probe/lifecycle.rs"]
mod lifecycle;
#[path = "berth-probe/lines.rs"]
mod lines;
#[path = "berth-probe/output.rs"]
mod output;
#[path = "berth-probe/surface.rs"]
mod surface;
#[path = "berth-probe/sys.rs"]
mod sys;
#[path = "berth-probe/volume.rs"]
mod volume;
#[path = "berth-probe/window.rs"]
mod window;
#[path = "berth-probe/works.rs"]
mod works;

use std::fs;
use std::io::{self, Write};
use std::time::{Duration, Instant};

use qemu_tests::event::quote;

/// What one attempt's child found.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The forbidden operation succeeded: escaped.
    Succeeded(String),
    /// A call failed with `errno`; `what` names the call. Classified
    /// against the attempt's accepted set.
    Failed {
        errno: i32,
        what: String,
    },
    /// The attempt decided itself.
    Blocked(String),
    Escaped(String),
    Error(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Blocked,
    Escaped,
    Error,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Verdict::Blocked => "blocked",
            Verdict::Escaped => "escaped",
            Verdict::Error => "error",
        }
    }
}

/// One escape attempt: run in a forked child; an errno in `accept` is a
/// policy refusal.
pub struct Attempt {
    pub name: &'static str,
    pub run: fn() -> Outcome,
    pub accept: &'static [i32],
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    pub blocked: u32,
    pub escaped: u32,
    pub error: u32,
    pub works: u32,
    pub broken: u32,
}

impl Counts {
    fn add(&mut self, v: Verdict) {
        match v {
            Verdict::Blocked => self.blocked += 1,
            Verdict::Escaped => self.escaped += 1,
            Verdict::Error => self.error += 1,
        }
    }
    fn ok(&self) -> bool {
        self.escaped == 0 && self.error == 0 && self.broken == 0
    }
}

const DEFAULT_TIMEOUT_SECS: u64 = 20;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None => {}
        Some("--whoami") => {
            say(&whoami_line(sys::geteuid(), works::cap_eff().unwrap_or(u64::MAX)));
            std::process::exit(0);
        }
        Some("--forkbomb") => forkbomb(),
        Some("--exit") => {
            // `--exit CODE [MS]`: print a line, wait, exit with CODE.
            let code: i32 = args.get(1).and_then(|c| c.parse().ok()).unwrap_or(1);
            let ms: u64 = args.get(2).and_then(|c| c.parse().ok()).unwrap_or(0);
            say(&format!("PROBE exit code={code} after_ms={ms}"));
            std::thread::sleep(std::time::Duration::from_millis(ms));
            std::process::exit(code);
        }
        Some("--memhog") => memhog(),
        Some("--notify" | "--sleep" | "--uptime-above" | "--uptime-below") => lifecycle::run(&args),
        Some("--flood" | "--heartbeat") => output::run(&args),
        Some("--lines") => lines::run(&args),
        Some("--exhaust" | "--neighbour") => budgets::run(&args),
        Some("--fill-volume") => volume::run(&args),
        Some("--print-controls") => controls::run(),
        // After the safety check below.
        Some("--check-window") => {}
        Some("--list") => {
            for a in all_attempts().chain(window::table()) {
                say(&list_line(a.name, a.accept));
            }
            std::process::exit(0);
        }
        Some(other) => {
            let usages = [lifecycle::USAGE, output::USAGE, lines::USAGE, budgets::USAGE, volume::USAGE, controls::USAGE, window::USAGE];
            eprintln!("berth-probe: unknown argument {other:?} (modes: none, --whoami, --list, --forkbomb, --memhog, --exit CODE [MS], {})", usages.join(", "));
            std::process::exit(2);
        }
    }

    if let Err(why) = safe_to_run() {
        say(&format!("PROBE refused detail={}", quote(&why)));
        eprintln!("berth-probe: refusing to run: {why}");
        std::process::exit(2);
    }

    let timeout = std::env::var("PROBE_TIMEOUT_SECS").ok().and_then(|v| v.trim().parse::<u64>().ok()).filter(|v| *v > 0).unwrap_or(DEFAULT_TIMEOUT_SECS);
    let timeout = Duration::from_secs(timeout);
    if args.first().map(String::as_str) == Some("--check-window") {
        window::run(timeout);
    }

    let mut counts = Counts::default();
    for (name, works, detail) in works::run_all() {
        if works {
            counts.works += 1;
        } else {
            counts.broken += 1;
        }
        say(&works_line(&name, works, &detail));
    }
    for a in all_attempts() {
        let (v, detail) = run_attempt(a, timeout);
        counts.add(v);
        say(&result_line(a.name, v, &detail));
        sys::reap_orphans();
    }
    say(&summary_line(&counts));
    std::process::exit(if counts.ok() { 0 } else { 1 });
}

/// Every attempt: the escapes, then the kernel-surface ones.
fn all_attempts() -> impl Iterator<Item = &'static Attempt> {
    attempts::table().iter().chain(surface::table())
}

/// Refuse real privilege in the initial user namespace: the dangerous
/// attempts (reboot, kexec, sysrq, settimeofday) must only ever run
/// confined.
fn safe_to_run() -> Result<(), String> {
    let map = fs::read_to_string("/proc/self/uid_map")
        .map_err(|e| format!("cannot read /proc/self/uid_map ({}): cannot tell whether confined", sys::io_errno_name(&e)))?;
    if !is_initial_userns(&map) {
        return Ok(());
    }
    let euid = sys::geteuid();
    let caps = works::cap_eff().unwrap_or(u64::MAX) | works::cap_prm().unwrap_or(u64::MAX);
    if euid == 0 || caps != 0 {
        return Err(format!(
            "running in the initial user namespace with euid {euid} and capabilities {caps:#x}: run it only inside a container or `unshare -U`"
        ));
    }
    Ok(())
}

/// Run one attempt in a forked child; classify its report or its death.
fn run_attempt(a: &Attempt, timeout: Duration) -> (Verdict, String) {
    match sys::run_in_child(a.run, timeout) {
        sys::ChildEnd::Report(text) => match decode_outcome(&text) {
            Some(o) => classify(&o, a.accept),
            None => (Verdict::Error, format!("unreadable report from the child: {text:?}")),
        },
        sys::ChildEnd::Signaled(sig) => classify_signal(sig),
        sys::ChildEnd::Exited(code) => (Verdict::Error, format!("child exited with status {code} without a report")),
        sys::ChildEnd::TimedOut => (Verdict::Error, format!("no answer in {}s: child killed", timeout.as_secs())),
        sys::ChildEnd::Failed(why) => (Verdict::Error, why),
    }
}

// ---------------------------------------------------------------- pure parts

/// An outcome against the attempt's accepted errnos.
pub fn classify(o: &Outcome, accept: &[i32]) -> (Verdict, String) {
    match o {
        Outcome::Succeeded(d) => (Verdict::Escaped, d.clone()),
        Outcome::Failed { errno, what } => {
            let name = sys::errno_name(*errno);
            if accept.contains(errno) {
                (Verdict::Blocked, format!("{what}: {name}"))
            } else {
                (Verdict::Error, format!("{what}: {name} (not a policy refusal for this attempt; accepted: {})", errno_list(accept)))
            }
        }
        Outcome::Blocked(d) => (Verdict::Blocked, d.clone()),
        Outcome::Escaped(d) => (Verdict::Escaped, d.clone()),
        Outcome::Error(d) => (Verdict::Error, d.clone()),
    }
}

/// A child killed by a signal: SIGSYS (seccomp trap/kill-thread) and
/// SIGKILL (seccomp kill-process) are policy; anything else is a crash.
pub fn classify_signal(sig: i32) -> (Verdict, String) {
    let name = sys::signal_name(sig);
    if sig == libc::SIGSYS || sig == libc::SIGKILL {
        (Verdict::Blocked, format!("killed by {name}"))
    } else {
        (Verdict::Error, format!("killed by {name} (not a policy signal)"))
    }
}

fn errno_list(accept: &[i32]) -> String {
    accept.iter().map(|e| sys::errno_name(*e)).collect::<Vec<_>>().join(",")
}

/// The child's report on the pipe: `S|F|B|X|R <errno> <text>`.
pub fn encode_outcome(o: &Outcome) -> String {
    let (k, e, t) = match o {
        Outcome::Succeeded(t) => ('S', 0, t.as_str()),
        Outcome::Failed { errno, what } => ('F', *errno, what.as_str()),
        Outcome::Blocked(t) => ('B', 0, t.as_str()),
        Outcome::Escaped(t) => ('X', 0, t.as_str()),
        Outcome::Error(t) => ('R', 0, t.as_str()),
    };
    format!("{k} {e} {t}")
}

pub fn decode_outcome(s: &str) -> Option<Outcome> {
    let mut it = s.splitn(3, ' ');
    let k = it.next()?;
    let e: i32 = it.next()?.parse().ok()?;
    let t = it.next()?.to_string();
    Some(match k {
        "S" => Outcome::Succeeded(t),
        "F" => Outcome::Failed { errno: e, what: t },
        "B" => Outcome::Blocked(t),
        "X" => Outcome::Escaped(t),
        "R" => Outcome::Error(t),
        _ => return None,
    })
}

pub fn result_line(name: &str, v: Verdict, detail: &str) -> String {
    format!("PROBE name={name} result={} detail={}", v.as_str(), quote(detail))
}

pub fn works_line(name: &str, works: bool, detail: &str) -> String {
    format!("PROBE name={name} result={} detail={}", if works { "works" } else { "broken" }, quote(detail))
}

pub fn summary_line(c: &Counts) -> String {
    format!("PROBE done blocked={} escaped={} error={} works={} broken={}", c.blocked, c.escaped, c.error, c.works, c.broken)
}

pub fn whoami_line(euid: u32, capeff: u64) -> String {
    format!("PROBE whoami euid={euid} capeff={capeff:016x}")
}

/// `(euid, capeff)` from a `--whoami` line anywhere in `text`.
pub fn parse_whoami(text: &str) -> Option<(u32, Option<u64>)> {
    let line = text.lines().find(|l| l.starts_with("PROBE whoami "))?;
    let mut euid = None;
    let mut cap = None;
    for tok in line.split_whitespace() {
        if let Some(v) = tok.strip_prefix("euid=") {
            euid = v.parse().ok();
        } else if let Some(v) = tok.strip_prefix("capeff=") {
            cap = u64::from_str_radix(v, 16).ok();
        }
    }
    Some((euid?, cap))
}

fn list_line(name: &str, accept: &[i32]) -> String {
    format!("PROBE attempt name={name} accept={}", errno_list(accept))
}

/// One `inside outside count` line of a uid_map/gid_map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

pub fn parse_id_map(text: &str) -> Option<Vec<IdMap>> {
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.is_empty() {
            continue;
        }
        if f.len() != 3 {
            return None;
        }
        out.push(IdMap { inside: f[0].parse().ok()?, outside: f[1].parse().ok()?, count: f[2].parse().ok()? });
    }
    Some(out)
}

/// The outside id that inside id 0 maps to.
pub fn root_outside(maps: &[IdMap]) -> Option<u32> {
    maps.iter().find(|m| m.inside == 0 && m.count > 0).map(|m| m.outside)
}

/// The initial user namespace's map is the identity over the whole range.
pub fn is_initial_userns(uid_map: &str) -> bool {
    matches!(parse_id_map(uid_map).as_deref(), Some([IdMap { inside: 0, outside: 0, count: 4294967295 }]))
}

/// A capability mask from a `/proc/self/status` field (`CapEff:` ...).
pub fn status_cap(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(field))?;
    u64::from_str_radix(line[field.len()..].trim(), 16).ok()
}

/// Print one whole line; errors are ignored (there is nowhere else).
pub fn say(line: &str) {
    let mut out = io::stdout().lock();
    let mut buf = String::with_capacity(line.len() + 1);
    buf.push_str(line);
    buf.push('\n');
    let _ = out.write_all(buf.as_bytes());
    let _ = out.flush();
}

/// Seconds elapsed, for details.
pub fn since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

/// `--forkbomb`: fork children that sleep until fork fails; report how many
/// exist when it stops (pids.max), then keep them alive a while and exit 0.
fn forkbomb() -> ! {
    let mut n = 0u32;
    let err = loop {
        // SAFETY: the child only sleeps and exits; no locks are taken.
        match unsafe { libc::fork() } {
            0 => {
                // SAFETY: plain sleep then _exit in the child.
                unsafe {
                    libc::sleep(30);
                    libc::_exit(0)
                }
            }
            pid if pid > 0 => n += 1,
            _ => break std::io::Error::last_os_error(),
        }
        if n >= 100_000 {
            break std::io::Error::other("never stopped");
        }
    };
    say(&format!("PROBE forkbomb stopped forks={n} error={}", err.raw_os_error().map(sys::errno_name).unwrap_or_else(|| "none".into())));
    std::process::exit(0)
}

/// `--memhog`: allocate and touch memory in 1 MiB steps, reporting progress,
/// until the kernel kills it.
fn memhog() -> ! {
    // Each MiB in one call (MAP_POPULATE faults it in inside the kernel):
    // past memory.high the kernel throttles a task each time it returns to
    // user space, so a MiB at a time is what a real leak in large
    // allocations looks like, not a page at a time.
    for mib in 1..=4096u32 {
        // SAFETY: a fresh private anonymous mapping; nothing else uses it.
        let p = unsafe {
            libc::mmap(std::ptr::null_mut(), 1 << 20, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE, -1, 0)
        };
        if p == libc::MAP_FAILED {
            say(&format!("PROBE memhog mib={mib} error=mmap"));
            std::process::exit(1)
        }
        if mib % 8 == 0 {
            say(&format!("PROBE memhog mib={mib}"));
        }
    }
    say("PROBE memhog survived 4096 MiB");
    std::process::exit(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use libc::{EACCES, EFAULT, EINVAL, ENOENT, ENOSYS, EPERM, EROFS};

    #[test]
    fn classification_uses_the_attempts_accepted_set() {
        let f = |e| Outcome::Failed { errno: e, what: "mknodat /tmp/x".into() };
        assert_eq!(classify(&f(EPERM), &[EPERM, EACCES]), (Verdict::Blocked, "mknodat /tmp/x: EPERM".into()));
        let (v, d) = classify(&f(EINVAL), &[EPERM, EACCES]);
        assert_eq!(v, Verdict::Error);
        assert!(d.starts_with("mknodat /tmp/x: EINVAL (not a policy"), "{d}");
        assert!(d.contains("accepted: EPERM,EACCES"), "{d}");
        assert_eq!(classify(&f(EFAULT), &[EPERM]).0, Verdict::Error);
        // ENOENT is only policy where the attempt says so.
        assert_eq!(classify(&f(ENOENT), &[EPERM, ENOENT]).0, Verdict::Blocked);
        assert_eq!(classify(&f(ENOENT), &[EPERM]).0, Verdict::Error);
        assert_eq!(classify(&f(ENOSYS), &[EPERM, ENOSYS]).0, Verdict::Blocked);
        assert_eq!(classify(&f(EROFS), &[]).0, Verdict::Error);
        assert_eq!(classify(&Outcome::Succeeded("mount ok".into()), &[EPERM]), (Verdict::Escaped, "mount ok".into()));
        assert_eq!(classify(&Outcome::Blocked("masked".into()), &[]).0, Verdict::Blocked);
        assert_eq!(classify(&Outcome::Escaped("euid 0".into()), &[EPERM]).0, Verdict::Escaped);
        assert_eq!(classify(&Outcome::Error("no file".into()), &[EPERM]).0, Verdict::Error);
    }

    #[test]
    fn signals() {
        assert_eq!(classify_signal(libc::SIGSYS), (Verdict::Blocked, "killed by SIGSYS".into()));
        assert_eq!(classify_signal(libc::SIGKILL).0, Verdict::Blocked);
        assert_eq!(classify_signal(libc::SIGSEGV).0, Verdict::Error);
        assert_eq!(classify_signal(libc::SIGHUP).0, Verdict::Error);
    }

    #[test]
    fn outcome_round_trip() {
        for o in [
            Outcome::Succeeded("a b  c".into()),
            Outcome::Failed { errno: 13, what: "open /dev/mem".into() },
            Outcome::Blocked("x".into()),
            Outcome::Escaped(String::new()),
            Outcome::Error("multi\nline".into()),
        ] {
            assert_eq!(decode_outcome(&encode_outcome(&o)), Some(o));
        }
        for bad in ["", "S", "S x y", "Q 0 x", "F 1"] {
            assert_eq!(decode_outcome(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn line_format() {
        assert_eq!(
            result_line("open-dev-mem", Verdict::Blocked, "open /dev/mem: ENOENT"),
            "PROBE name=open-dev-mem result=blocked detail=\"open /dev/mem: ENOENT\""
        );
        assert_eq!(result_line("x", Verdict::Error, "say \"hi\"\n"), "PROBE name=x result=error detail=\"say \\\"hi\\\"\\n\"");
        assert_eq!(works_line("tmp-rw", true, "ok"), "PROBE name=tmp-rw result=works detail=\"ok\"");
        assert_eq!(works_line("device", false, "EACCES"), "PROBE name=device result=broken detail=\"EACCES\"");
        let c = Counts { blocked: 40, escaped: 1, error: 2, works: 5, broken: 0 };
        assert_eq!(summary_line(&c), "PROBE done blocked=40 escaped=1 error=2 works=5 broken=0");
        assert!(!c.ok());
        assert!(Counts { blocked: 3, works: 2, ..Default::default() }.ok());
        assert!(!Counts { broken: 1, ..Default::default() }.ok());
        assert_eq!(list_line("mount-tmpfs", &[EPERM, ENOSYS]), "PROBE attempt name=mount-tmpfs accept=EPERM,ENOSYS");
    }

    #[test]
    fn whoami() {
        let l = whoami_line(1000, 0);
        assert_eq!(l, "PROBE whoami euid=1000 capeff=0000000000000000");
        assert_eq!(parse_whoami(&format!("noise\n{l}\n")), Some((1000, Some(0))));
        assert_eq!(parse_whoami("PROBE whoami euid=0"), Some((0, None)));
        assert_eq!(parse_whoami("PROBE whoami capeff=00"), None);
        assert_eq!(parse_whoami(""), None);
    }

    #[test]
    fn id_maps() {
        let m = parse_id_map("         0     165536      65536\n").unwrap();
        assert_eq!(m, [IdMap { inside: 0, outside: 165536, count: 65536 }]);
        assert_eq!(root_outside(&m), Some(165536));
        let m = parse_id_map("1000 1000 1\n0 100000 1000\n").unwrap();
        assert_eq!(root_outside(&m), Some(100000));
        assert_eq!(root_outside(&parse_id_map("1000 1000 1\n").unwrap()), None);
        assert_eq!(parse_id_map(""), Some(vec![]));
        assert_eq!(parse_id_map("0 0"), None);
        assert_eq!(parse_id_map("0 x 1"), None);
        assert!(is_initial_userns("         0          0 4294967295\n"));
        assert!(!is_initial_userns("0 0 4294967294\n"));
        assert!(!is_initial_userns("0 1000 1\n"));
        assert!(!is_initial_userns(""));
        assert!(!is_initial_userns("0 0 4294967295\n5 5 1\n"));
    }

    #[test]
    fn status_caps() {
        let st = "Name:\tx\nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\nCapEff:\t0000000000000400\n";
        assert_eq!(status_cap(st, "CapEff:"), Some(0x400));
        assert_eq!(status_cap(st, "CapPrm:"), Some(0x1ffffffffff));
        assert_eq!(status_cap(st, "CapBnd:"), None);
    }

    #[test]
    fn table_is_well_formed() {
        let t: Vec<&Attempt> = all_attempts().collect();
        // The probe scenario demands exactly this many `blocked` lines.
        assert_eq!(t.len(), qemu_tests::scenarios::probe_attempts(std::env::consts::ARCH), "attempts added or removed: update PROBE_ATTEMPTS");
        let mut names: Vec<&str> = t.iter().map(|a| a.name).collect();
        for n in &names {
            assert!(!n.is_empty() && n.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-'), "{n}");
        }
        names.sort();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len(), "duplicate attempt names");
        for a in t {
            // Bad-argument errnos are never policy.
            for bad in [EINVAL, EFAULT, libc::EBADF] {
                assert!(!a.accept.contains(&bad), "{} accepts {}", a.name, sys::errno_name(bad));
            }
        }
    }
}
