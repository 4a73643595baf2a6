//! `cargo xtask run --manifests DIR --timeout S`: boot a directory of
//! manifests and judge it. The console is printed as it comes; the verdict
//! comes from berth's event lines:
//!
//! - success when every container of the release ran and exited 0, or when the
//!   time is up and every container that has not exited is still running
//!   (a service);
//! - failure when the release is refused, a container fails to start, or one
//!   exits non-zero or by a signal.
//!
//! A caller may also name a line a container must print (its
//! `container.log` event): then that container counts as done only once the
//! line was seen, and the time running out without it is a failure.
//!
//! With an update (`--update DIR|BUNDLE`, put into the inbox before the
//! boot), berth takes it while the release runs; the run then succeeds only
//! when berth commits the new release (every container healthy for the
//! release's commit window), and fails when the update is refused or rolled
//! back, or the time runs out first. The containers are judged as above
//! until the switch; after it, berth's own trial judges them.

use crate::artifacts::{self, Artifacts, BootOpts, Variant};
use crate::oci::build::{layout, Entry, Pack};
use berth::release::board::Arch;
use qemu_tests::event::parse_line;
use qemu_tests::machine::Machine;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

/// Build `dir`'s release for `board` (outputs under the board's directory
/// plus `suffix`), boot it on a fresh data partition and judge it.
/// `echo`: print the console as it comes (else only the verdict).
#[allow(clippy::too_many_arguments)]
pub fn run(
    root: &Path,
    board: &Path,
    dir: &Path,
    suffix: &str,
    seconds: u64,
    expect: &BTreeMap<String, String>,
    echo: bool,
    update: Option<&Update>,
    data_mib: Option<u64>,
) -> Result<(), String> {
    // The user watches the console: their containers' output is mirrored there.
    let variant = Variant { suffix: suffix.into(), manifests: Some(dir.to_path_buf()), container_log_console: Some(true), data_mib, ..Default::default() };
    let art = artifacts::build(root, board, &variant)?;
    let data = art.dir.join("data.img");
    artifacts::fresh_data(&art, &data)?;
    if let Some(u) = update {
        crate::update_into_inbox(root, &art, &data, u.source, u.key, data_mib)?;
    }
    let (prog, args) = artifacts::qemu_args(&art, &data, &BootOpts::default());
    crate::say(&format!("booting {} with {} containers for up to {seconds} s", art.board.name, art.release.containers.len()));
    let watch = update.map(|_| UpdateWatch { from: art.release.version, ..Default::default() });
    judge(&art, &prog, &args, Duration::from_secs(seconds), expect, echo, watch)
}

/// An update to apply while the booted release runs.
pub struct Update<'a> {
    /// A bundle, or a manifest directory to bundle.
    pub source: &'a Path,
    /// The signing key for a directory (else the development key).
    pub key: Option<&'a Path>,
}

/// What became of the update so far.
#[derive(Debug, Default)]
struct UpdateWatch {
    /// The version booted (the update must commit a newer one).
    from: u64,
    staged: bool,
    switched: bool,
    outcome: Option<Result<(), String>>,
}

impl UpdateWatch {
    /// Fold in one event; true when it belongs to the update.
    fn observe(&mut self, ev: &qemu_tests::event::Event) {
        let version = ev.get("version").and_then(|v| v.parse::<u64>().ok());
        match ev.name.as_str() {
            "update.staged" => self.staged = true,
            "update.switch" => self.switched = true,
            "update.refused" => {
                self.outcome.get_or_insert(Err(format!("update refused: {}", ev.get("reason").unwrap_or("?"))));
            }
            "release.rollback" => {
                let cause = ev.get("cause").unwrap_or("?");
                let who = ev.get("container").map(|c| format!(", container {c}")).unwrap_or_default();
                self.outcome.get_or_insert(Err(format!("the update rolled back ({cause}{who})")));
            }
            "release.commit" if ev.get("result") != Some("error") && version.is_some_and(|v| v > self.from) => {
                self.outcome.get_or_insert(Ok(()));
            }
            _ => {}
        }
    }

    fn stage(&self) -> &'static str {
        match (self.staged, self.switched) {
            (false, _) => "never taken from the inbox",
            (true, false) => "staged but never switched to",
            (true, true) => "on trial, not committed (is the run shorter than the release's commit_window_s?)",
        }
    }
}

/// The `run --manifests` acceptance test: a user directory, made here, with
/// a container from a static binary (`binary =`) and one from an OCI layout
/// (`oci =`) of three layers, plain, gzip and zstd, whose upper one whites
/// out a file and makes a directory opaque; its manifest is the one `image --oci` pre-fills from the config.
/// Both containers run `berth-image-check`, which prints its word only when
/// the image is as expected; the run passes only when both printed it and
/// exited 0.
pub fn user_dir_test(root: &Path, board: &Path) -> Result<(), String> {
    let arch = artifacts::load_board(board)?.arch;
    let check = artifacts::cross_build(root, arch, "qemu-tests", "berth-image-check")?;
    let dir = crate::cargo_target_dir(root).join("berth").join(format!("user-manifests-{}", arch.name()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).map_err(|e| format!("{name}: {e}"));
    write("release.toml", "version = 1\n")?;
    std::fs::copy(&check, dir.join("berth-image-check")).map_err(|e| e.to_string())?;
    write(
        "hello.toml",
        "name = \"hello\"\nversion = \"1\"\n[entry]\nargv = [\"/bin/berth-image-check\", \"BIN-OK\", \"present=/bin/berth-image-check\"]\n[build]\nbinary = \"berth-image-check\"\n",
    )?;
    let bin = std::fs::read(&check).map_err(|e| e.to_string())?;
    let lower = [
        Entry::Dir("bin", 0o755),
        Entry::File("bin/berth-image-check", &bin, 0o755, 0, 0),
        Entry::Symlink("bin/check", "berth-image-check"),
        Entry::Dir("etc", 0o755),
        Entry::File("etc/removed.txt", b"lower", 0o644, 0, 0),
        Entry::File("etc/kept.txt", b"kept", 0o644, 0, 0),
        Entry::Dir("dir", 0o755),
        Entry::Dir("dir/opaque", 0o755),
        Entry::File("dir/opaque/old.txt", b"old", 0o644, 0, 0),
    ];
    let middle = [Entry::File("etc/middle.txt", b"gzip", 0o644, 0, 0)];
    let upper = [
        Entry::File("etc/.wh.removed.txt", b"", 0o644, 0, 0),
        Entry::File("dir/opaque/.wh..wh..opq", b"", 0o644, 0, 0),
        Entry::File("dir/opaque/new.txt", b"new", 0o644, 1000, 1000),
    ];
    let config = serde_json::json!({
        "Entrypoint": ["/bin/berth-image-check"],
        "Cmd": ["OCI-OK", "absent=/etc/removed.txt", "has=/etc/kept.txt:kept", "has=/etc/middle.txt:gzip", "absent=/dir/opaque/old.txt", "has=/dir/opaque/new.txt:new", "present=/bin/check"],
        "User": "1000:1000",
        "Env": ["MODE=oci"],
    });
    let oci_arch = match arch {
        Arch::Aarch64 => "arm64",
        Arch::Armv7 => "arm",
        Arch::X86_64 => "amd64",
    };
    layout(&dir.join("layout"), &[(&lower, Pack::Tar), (&middle, Pack::Gzip), (&upper, Pack::Zstd)], oci_arch, config)?;
    // The manifest as `image --oci` pre-fills it.
    let imported = crate::oci::import(&dir.join("layout"), Some(arch), &dir.join("prefill.img"))?;
    std::fs::remove_file(dir.join("prefill.img")).map_err(|e| e.to_string())?;
    write("app.toml", &crate::oci::manifest_text("app", "layout", &imported.config, &imported.notes))?;
    let expect: BTreeMap<String, String> = [("hello", "BIN-OK"), ("app", "OCI-OK")].iter().map(|(n, w)| (n.to_string(), w.to_string())).collect();
    run(root, board, &dir, "-user-oci", 120, &expect, false, None, None)
}

/// The `run --manifests DIR --update DIR` test: a release of the demo's
/// sensor boots; a version 2 that changes its interval must be taken from the
/// inbox, switched to and committed (the run passes); a version 3 whose
/// sensor exits at once must roll back (the run fails, naming the rollback).
pub fn user_update_test(root: &Path, board: &Path) -> Result<(), String> {
    let arch = artifacts::load_board(board)?.arch;
    let base = crate::cargo_target_dir(root).join("berth").join(format!("user-update-{}", arch.name()));
    let _ = std::fs::remove_dir_all(&base);
    let sensor = |version: u64, argv: &str| {
        format!(
            "name = \"sensor\"\nversion = \"{version}\"\ndevices = [{{ node = \"rng0\", access = \"r\" }}]\nbackoff = {{ initial_ms = 200, limit = 3 }}\n[entry]\nargv = {argv}\n[build]\ncargo_bin = \"sensor\"\n"
        )
    };
    for (version, argv) in
        [(1, r#"["/bin/sensor", "/dev/hwrng", "1000"]"#), (2, r#"["/bin/sensor", "/dev/hwrng", "500"]"#), (3, r#"["/bin/sensor", "/no/such/node", "500"]"#)]
    {
        let dir = base.join(format!("v{version}"));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        std::fs::write(dir.join("release.toml"), format!("version = {version}\ncommit_window_s = 3\n")).map_err(|e| e.to_string())?;
        std::fs::write(dir.join("sensor.toml"), sensor(version, argv)).map_err(|e| e.to_string())?;
    }
    let none = BTreeMap::new();
    let v2 = Update { source: &base.join("v2"), key: None };
    run(root, board, &base.join("v1"), "-user-update", 120, &none, false, Some(&v2), None).map_err(|e| format!("update to a good version 2: {e}"))?;
    let v3 = Update { source: &base.join("v3"), key: None };
    match run(root, board, &base.join("v1"), "-user-update", 120, &none, false, Some(&v3), None) {
        Err(e) if e.contains("rolled back (crash-loop, container sensor)") => Ok(()),
        other => Err(format!("update to a broken version 3: {other:?}, want a failure naming the crash-loop rollback")),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Waiting,
    Running,
    Exited(i32),
    Failed(String),
}

/// What was seen of each container: its state, and which printed the line
/// expected of them.
struct Seen {
    states: BTreeMap<String, State>,
    expect: BTreeMap<String, String>,
    printed: BTreeSet<String>,
    update: Option<UpdateWatch>,
}

/// Boot `prog args`, print the console, and judge the containers named in
/// `art`'s release; `expect` maps a container to a line it must print.
fn judge(
    art: &Artifacts,
    prog: &str,
    args: &[String],
    timeout: Duration,
    expect: &BTreeMap<String, String>,
    echo: bool,
    update: Option<UpdateWatch>,
) -> Result<(), String> {
    let states: BTreeMap<String, State> = art.release.containers.iter().map(|m| (m.name.to_string(), State::Waiting)).collect();
    if states.is_empty() {
        return Err("the release has no containers".into());
    }
    if let Some(n) = expect.keys().find(|n| !states.contains_key(*n)) {
        return Err(format!("an output is expected of {n}, which the release does not have"));
    }
    let mut seen = Seen { states, expect: expect.clone(), printed: BTreeSet::new(), update };
    let mut m = Machine::spawn(&format!("{}/run", art.board.name), prog, args)?;
    let start = Instant::now();
    let mut shown = 0;
    let verdict = loop {
        m.poll();
        let lines = m.lines();
        for line in lines.get(shown..).unwrap_or(&[]) {
            if echo {
                println!("{line}");
            }
            observe(line, &mut seen);
        }
        shown = lines.len();
        if let Some(v) = decide(&seen, start.elapsed() >= timeout) {
            break v;
        }
        if let Some(st) = m.exit_status() {
            break Err(format!("QEMU ended ({st}) before the containers were done"));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if verdict.is_err() {
        // The failing container's last lines are still on their way: show
        // them before QEMU goes.
        let until = Instant::now() + TAIL_GRACE;
        while Instant::now() < until && m.exit_status().is_none() {
            std::thread::sleep(Duration::from_millis(100));
            m.poll();
            let lines = m.lines();
            for line in lines.get(shown..).unwrap_or(&[]) {
                if echo {
                    println!("{line}");
                }
            }
            shown = lines.len();
        }
    }
    m.kill();
    println!("xtask: run: {}", summary(&seen));
    verdict
}

/// How long a failed run keeps showing the console before QEMU is stopped.
const TAIL_GRACE: Duration = Duration::from_millis(1500);

/// Whether `s` is an end the verdict must keep: a failure or a non-zero
/// exit. A later line of the same batch (a restart's start) must not hide it.
fn sticky(s: &State) -> bool {
    matches!(s, State::Failed(_)) || matches!(s, State::Exited(c) if *c != 0)
}

/// Fold one console line into the container states, in order; a failure,
/// once seen, stays.
fn observe(line: &str, seen: &mut Seen) {
    let Some(ev) = parse_line(line) else { return };
    if let Some(u) = seen.update.as_mut() {
        u.observe(&ev);
        if u.switched {
            return;
        }
    }
    let name = ev.get("name").unwrap_or("").to_string();
    let states = &mut seen.states;
    match ev.name.as_str() {
        "container.log" if seen.expect.get(&name).is_some_and(|want| ev.get("line") == Some(want.as_str())) => {
            seen.printed.insert(name);
        }
        "release.rejected" | "boot.failed" => {
            let why = format!("{}: {}", ev.name, ev.get("reason").unwrap_or("?"));
            for s in states.values_mut() {
                if *s == State::Waiting {
                    *s = State::Failed(why.clone());
                }
            }
        }
        "container.start" => {
            if let Some(s) = states.get_mut(&name).filter(|s| !sticky(s)) {
                *s = if ev.get("result") == Some("ok") {
                    State::Running
                } else {
                    State::Failed(format!("start failed at {}: {}", ev.get("step").unwrap_or("?"), ev.get("error").unwrap_or("?")))
                };
            }
        }
        "reap" => {
            if let Some(s) = states.get_mut(&name).filter(|s| !sticky(s)) {
                let code: i32 = ev.get("code").and_then(|c| c.parse().ok()).unwrap_or(-1);
                *s = match ev.get("how") {
                    Some("exit") => State::Exited(code),
                    _ => State::Failed(format!("killed by signal {code}")),
                };
            }
        }
        _ => {}
    }
}

/// The verdict, once there is one.
fn decide(seen: &Seen, time_up: bool) -> Option<Result<(), String>> {
    let states = &seen.states;
    let silent: Vec<String> = seen.expect.iter().filter(|(n, _)| !seen.printed.contains(*n)).map(|(n, want)| format!("{n}: never printed {want:?}")).collect();
    let failed: Vec<String> = states
        .iter()
        .filter_map(|(n, s)| match s {
            State::Failed(why) => Some(format!("{n}: {why}")),
            State::Exited(c) if *c != 0 => Some(format!("{n}: exited with {c}")),
            _ => None,
        })
        .collect();
    if !failed.is_empty() {
        return Some(Err(failed.join("; ")));
    }
    if let Some(u) = &seen.update {
        return match &u.outcome {
            Some(o) => Some(o.clone()),
            None if time_up => Some(Err(format!("time is up: the update was {}", u.stage()))),
            None => None,
        };
    }
    if states.values().all(|s| *s == State::Exited(0)) && silent.is_empty() {
        return Some(Ok(()));
    }
    if time_up {
        let waiting: Vec<&String> = states.iter().filter(|(_, s)| **s == State::Waiting).map(|(n, _)| n).collect();
        return Some(if !waiting.is_empty() {
            Err(format!("time is up and these never started: {waiting:?}"))
        } else if !silent.is_empty() {
            Err(format!("time is up: {}", silent.join("; ")))
        } else {
            Ok(())
        });
    }
    None
}

fn summary(seen: &Seen) -> String {
    seen.states
        .iter()
        .map(|(n, s)| match s {
            State::Waiting => format!("{n} never started"),
            State::Running => format!("{n} running"),
            State::Exited(c) => format!("{n} exited {c}"),
            State::Failed(w) => format!("{n} failed ({w})"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn states(names: &[&str]) -> Seen {
        Seen { states: names.iter().map(|n| (n.to_string(), State::Waiting)).collect(), expect: BTreeMap::new(), printed: BTreeSet::new(), update: None }
    }

    #[test]
    fn an_update_must_commit_a_newer_release() {
        let mut s = states(&["a"]);
        s.update = Some(UpdateWatch { from: 1, ..Default::default() });
        observe("BERTH t=1.0 ev=container.start name=a pid=5 result=ok", &mut s);
        observe("BERTH t=1.2 ev=release.commit version=1 window_s=30", &mut s);
        assert_eq!(decide(&s, false), None, "the booted release's own commit is not the update");
        assert!(matches!(decide(&s, true), Some(Err(e)) if e.contains("never taken")));
        observe("BERTH t=5.0 ev=update.staged bundle=/data/berth/inbox/u version=2", &mut s);
        observe("BERTH t=5.1 ev=update.switch version=2", &mut s);
        // After the switch the old run's end is the update's business.
        observe("BERTH t=5.2 ev=reap pid=5 name=a how=signal code=15", &mut s);
        assert_eq!(decide(&s, false), None);
        assert!(matches!(decide(&s, true), Some(Err(e)) if e.contains("on trial")));
        observe("BERTH t=9.0 ev=release.commit version=2 window_s=3", &mut s);
        assert_eq!(decide(&s, false), Some(Ok(())));
    }

    #[test]
    fn a_refused_or_rolled_back_update_fails_the_run() {
        for (line, want) in [
            ("BERTH t=5.0 ev=update.refused bundle=/x reason=\"signature does not verify\"", "signature does not verify"),
            ("BERTH t=9.0 ev=release.rollback cause=crash-loop from=2 to=1 container=a", "crash-loop, container a"),
        ] {
            let mut s = states(&["a"]);
            s.update = Some(UpdateWatch { from: 1, ..Default::default() });
            observe("BERTH t=1.0 ev=container.start name=a pid=5 result=ok", &mut s);
            observe(line, &mut s);
            assert!(matches!(decide(&s, false), Some(Err(ref e)) if e.contains(want)), "{line}: {:?}", decide(&s, false));
        }
    }

    #[test]
    fn an_expected_line_must_be_printed() {
        let mut s = states(&["a"]);
        s.expect.insert("a".into(), "OCI-OK".into());
        observe("BERTH t=1.0 ev=container.start name=a pid=5 result=ok", &mut s);
        observe("BERTH t=1.1 ev=container.log name=a line=\"OCI-OK \"", &mut s);
        observe("BERTH t=1.1 ev=container.log name=b line=OCI-OK", &mut s);
        observe("BERTH t=2.0 ev=reap pid=5 name=a how=exit code=0", &mut s);
        assert_eq!(decide(&s, false), None, "exited, but the line is not there yet");
        assert!(matches!(decide(&s, true), Some(Err(e)) if e.contains("a: never printed \"OCI-OK\"")));
        observe("BERTH t=2.1 ev=container.log name=a line=OCI-OK", &mut s);
        assert_eq!(decide(&s, false), Some(Ok(())));
    }

    #[test]
    fn all_exit_zero_is_success() {
        let mut s = states(&["a", "b"]);
        for l in [
            "BERTH t=1.0 ev=container.start name=a pid=5 result=ok",
            "BERTH t=1.0 ev=container.start name=b pid=6 result=ok",
            "BERTH t=2.0 ev=reap pid=5 name=a how=exit code=0",
        ] {
            observe(l, &mut s);
        }
        assert_eq!(decide(&s, false), None);
        observe("BERTH t=3.0 ev=reap pid=6 name=b how=exit code=0", &mut s);
        assert_eq!(decide(&s, false), Some(Ok(())));
    }

    #[test]
    fn services_running_at_the_timeout_pass_but_never_started_fails() {
        let mut s = states(&["svc", "late"]);
        observe("BERTH t=1.0 ev=container.start name=svc pid=5 result=ok", &mut s);
        assert!(matches!(decide(&s, true), Some(Err(e)) if e.contains("late")));
        observe("BERTH t=1.0 ev=container.start name=late pid=6 result=ok", &mut s);
        assert_eq!(decide(&s, true), Some(Ok(())));
    }

    #[test]
    fn a_restart_in_the_same_batch_does_not_hide_a_failure() {
        let mut s = states(&["a"]);
        observe("BERTH t=1.0 ev=container.start name=a step=spawn result=error error=\"execve: ENOENT\"", &mut s);
        observe("BERTH t=2.0 ev=container.start name=a pid=7 result=ok", &mut s);
        assert!(matches!(decide(&s, false), Some(Err(e)) if e.contains("execve")));
        let mut s = states(&["a"]);
        observe("BERTH t=1.0 ev=container.start name=a pid=5 result=ok", &mut s);
        observe("BERTH t=2.0 ev=reap pid=5 name=a how=exit code=3", &mut s);
        observe("BERTH t=3.0 ev=container.start name=a pid=6 result=ok", &mut s);
        assert!(matches!(decide(&s, false), Some(Err(e)) if e.contains("exited with 3")));
    }

    #[test]
    fn failures_end_the_run() {
        let mut s = states(&["a"]);
        observe("BERTH t=1.0 ev=container.start name=a step=spawn result=error error=\"execve: ENOENT\"", &mut s);
        assert!(matches!(decide(&s, false), Some(Err(e)) if e.contains("execve")));
        let mut s = states(&["a"]);
        observe("BERTH t=1.0 ev=container.start name=a pid=5 result=ok", &mut s);
        observe("BERTH t=2.0 ev=reap pid=5 name=a how=exit code=3", &mut s);
        assert!(matches!(decide(&s, false), Some(Err(e)) if e.contains("exited with 3")));
        let mut s = states(&["a"]);
        observe("BERTH t=1.0 ev=release.rejected reason=\"bad signature\"", &mut s);
        assert!(matches!(decide(&s, false), Some(Err(e)) if e.contains("bad signature")));
        // Orphans and unknown names change nothing.
        let mut s = states(&["a"]);
        observe("BERTH t=2.0 ev=reap pid=9 name=orphan how=exit code=1", &mut s);
        assert_eq!(decide(&s, false), None);
    }
}
