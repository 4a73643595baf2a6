//! The `crash-replay` scenario (x86_64): one whole update to release 2 with
//! the data partition on a dm-log-writes target (berth's `logwrites` test
//! hook, the `crash-replay` build), every write, flush and FUA logged to a
//! third disk; then, on the host, the log is replayed onto copies of the
//! starting data image at every flush, every mark and at least
//! [`RANDOM_POINTS`] random points with the unflushed writes dropped or a
//! random subset kept ([`crate::logreplay`]). Every replayed image must
//!
//! - pass `e2fsck -fn` once its journal is replayed and its orphan inodes
//!   released (as a mount would, with `e2fsck -p`),
//! - hold a store that the host build of the store code boots on a
//!   complete release (object, signature, every image present with its
//!   SHA-256), and
//! - boot to a verdict the host model allows at that point of the update
//!   (`qemu_tests::cutverdict`: the store's writes as marked in the log).
//!
//! The whole log replayed must give the data image the guest left, and
//! the model's verdict after the update. The seed is printed; the same
//! seed repeats the same points.

use crate::artifacts::Artifacts;
use crate::logreplay::{self, Kind, Point, Rng};
use berth::release::TrustedKeys;
use qemu_tests::cutverdict::{Plan, Verdict};
use qemu_tests::machine::Machine;
use qemu_tests::scenarios::{BootSpec, Launch};
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Random points checked besides every flush and every mark.
pub const RANDOM_POINTS: usize = 220;
/// The log disk, in multiples of the data partition.
const LOG_FACTOR: u64 = 4;

/// Boot the update with its log, then check every planned point.
pub fn run(l: &dyn Launch, art: &Artifacts, seed: Option<u64>) -> Result<(), String> {
    let info = art.updates.as_ref().ok_or("the crash-replay build carries no update")?;
    let runs = art.dir.join("runs");
    fs::create_dir_all(&runs).map_err(|e| e.to_string())?;
    let log_path = runs.join("crash-replay.log.img");
    let _ = fs::remove_file(&log_path);
    let f = fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    f.set_len((art.data_mib * LOG_FACTOR) << 20).map_err(|e| e.to_string())?;
    drop(f);
    let spec = BootSpec {
        name: "crash-replay".into(),
        mode: "update".into(),
        allow_reboot: false,
        variant: "crash-replay",
        cmdline: String::new(),
        data: None,
        http_port: None,
        push: None,
        console_socket: false,
        direct_data: true,
        log_disk: Some(log_path.clone()),
    };
    let mut m = l.boot(&spec)?;
    let data = guest_update(&mut m, info.writes, &info.format_writes)?;
    drop(m);
    let seed = seed.unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1));
    let keys = TrustedKeys::load_dir(&art.key_dir).map_err(|e| e.to_string())?;
    let r = check_log(
        &Check { start: &art.data_template, end: &data, log: &log_path, plan: &info.plan, keys: &keys, board: &art.board.name, known: &info.known },
        seed,
    );
    if r.is_ok() {
        let _ = fs::remove_file(&log_path);
        let _ = fs::remove_file(&data);
    }
    r
}

/// Check a log and the data image a run left, again (no boot).
pub fn recheck(art: &Artifacts, log: &Path, data: &Path, seed: u64) -> Result<(), String> {
    let info = art.updates.as_ref().ok_or("the crash-replay build carries no update")?;
    let keys = TrustedKeys::load_dir(&art.key_dir).map_err(|e| e.to_string())?;
    check_log(&Check { start: &art.data_template, end: data, log, plan: &info.plan, keys: &keys, board: &art.board.name, known: &info.known }, seed)
}

/// The guest's part: the log-writes target set up, the update done, the
/// target removed after the unmount, powered off. The data image's path.
fn guest_update(m: &mut Machine, writes: u64, format_writes: &[String]) -> Result<std::path::PathBuf, String> {
    let (boot, step) = (Duration::from_secs(180), Duration::from_secs(90));
    let setup = m.expect_event("logwrites.setup", boot)?;
    if setup.get("result") == Some("error") || setup.get("device").is_none() {
        return Err(format!("the log-writes target was not set up: {:?}", setup.fields));
    }
    let done = m.expect_event("update.done", boot + step)?;
    if done.get("store_writes") != Some(writes.to_string().as_str()) {
        return Err(format!("the update made {:?} store writes, the model {writes}", done.get("store_writes")));
    }
    qemu_tests::updates::check_store_writes(format_writes, done.get("store_writes"))?;
    let removed = m.expect_event("logwrites.remove", step)?;
    if removed.get("result") != Some("ok") {
        return Err(format!("the log-writes target was not removed cleanly: {:?}", removed.fields));
    }
    let st = m.wait_exit(step)?;
    if !st.success() {
        return Err(format!("QEMU ended with {st}"));
    }
    m.data_image().map(Path::to_path_buf).ok_or_else(|| "no data image".into())
}

/// What a log is checked against.
pub struct Check<'a> {
    pub start: &'a Path,
    pub end: &'a Path,
    pub log: &'a Path,
    pub plan: &'a Plan,
    pub keys: &'a TrustedKeys,
    pub board: &'a str,
    pub known: &'a [qemu_tests::updates::Known],
}

/// Replay and check every point; print the tally.
pub fn check_log(c: &Check, seed: u64) -> Result<(), String> {
    let bytes = fs::read(c.log).map_err(|e| format!("{}: {e}", c.log.display()))?;
    let log = logreplay::parse(&bytes)?;
    let steps: Vec<u64> = log.entries.iter().filter_map(|e| e.step()).collect();
    if steps != (1..=c.plan.writes()).collect::<Vec<_>>() {
        return Err(format!("the log's step marks are {steps:?}, want 1..={}", c.plan.writes()));
    }
    let work = c.log.with_extension("work");
    fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    // The whole log: the image the guest left, and the model's last verdict.
    let all: Vec<usize> = (0..log.entries.len()).collect();
    let img = work.join("all.img");
    logreplay::build(c.start, &img, &bytes, &log, &all)?;
    if fs::read(&img).map_err(|e| e.to_string())? != fs::read(c.end).map_err(|e| e.to_string())? {
        return Err("the whole log replayed does not give the data image the guest left: the log is incomplete".into());
    }
    let last = c.plan.after_all().cloned().into_iter().collect::<Vec<_>>();
    check_image(c, &img, &work, &last).map_err(|e| format!("the whole log: {e}"))?;
    let points = logreplay::plan(&log, RANDOM_POINTS, &mut Rng(seed.max(1)));
    let mut failures = Vec::new();
    for (n, p) in points.iter().enumerate() {
        let entries: Vec<usize> = (0..p.base).chain(p.extra.iter().copied()).collect();
        let img = work.join("point.img");
        logreplay::build(c.start, &img, &bytes, &log, &entries)?;
        let allowed: Vec<Verdict> = (p.steps.0..=p.steps.1).flat_map(|s| c.plan.in_step(s)).collect();
        if let Err(e) = check_image(c, &img, &work, &allowed) {
            failures.push(format!("point {n} ({:?}, {} entries + {} kept, steps {}..={}): {e}", p.kind, p.base, p.extra.len(), p.steps.0, p.steps.1));
        }
    }
    let count = |k: Kind| points.iter().filter(|p: &&Point| p.kind == k).count();
    println!(
        "crash-replay: {} log entries ({} flushes); checked {} flush points, {} mark points, {} random points ({} unflushed dropped, {} a random subset kept); {} failed (seed {seed})",
        log.entries.len(),
        count(Kind::Flush),
        count(Kind::Flush),
        count(Kind::Mark),
        count(Kind::Dropped) + count(Kind::Subset),
        count(Kind::Dropped),
        count(Kind::Subset),
        failures.len()
    );
    let _ = fs::remove_dir_all(&work);
    if failures.is_empty() {
        return Ok(());
    }
    for f in failures.iter().take(10) {
        eprintln!("  {f}");
    }
    Err(format!("{} of {} replayed crash states failed (seed {seed}); the first: {}", failures.len(), points.len(), failures[0]))
}

fn fsck(img: &Path, args: &[&str]) -> Result<(i32, String), String> {
    let out = Command::new("e2fsck").args(args).arg(img).output().map_err(|e| format!("e2fsck: {e}"))?;
    Ok((out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// One replayed image: journal replayed, `e2fsck -fn` clean, the store
/// boots a complete release to an allowed verdict.
fn check_image(c: &Check, img: &Path, work: &Path, allowed: &[Verdict]) -> Result<(), String> {
    // What mounting it would do first: replay the journal and release the
    // orphan inodes (files removed while still open). `-p` without `-f`
    // does only that on a file system marked clean, which ext4 with a
    // journal stays while mounted; the full check is the next one.
    let (code, out) = fsck(img, &["-p"])?;
    if !matches!(code, 0 | 1) {
        return Err(format!("the journal does not replay (e2fsck -p exits {code}): {}", out.trim()));
    }
    let (code, out) = fsck(img, &["-f", "-n"])?;
    if code != 0 {
        return Err(format!("e2fsck -fn exits {code}: {}", out.lines().take(6).collect::<Vec<_>>().join(" / ")));
    }
    let dir = work.join("store");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let out = Command::new("debugfs").arg("-R").arg(format!("rdump /berth {}", dir.display())).arg(img).output().map_err(|e| format!("debugfs: {e}"))?;
    let store = dir.join("berth");
    if !out.status.success() || !store.is_dir() {
        return Err(format!("debugfs could not copy the store out: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    let verdict = crate::cutmodel::boot_verdict(&store, c.keys, c.board).map_err(|e| format!("no release boots: {e}"))?;
    complete(&store, c.known, verdict.version)?;
    if !allowed.contains(&verdict) {
        let mut want: Vec<String> = allowed.iter().map(|v| v.to_string()).collect();
        want.dedup();
        return Err(format!("found {verdict}; the model allows {}", want.join(" | ")));
    }
    Ok(())
}

/// Every image of the booted release is there with its SHA-256.
fn complete(store: &Path, known: &[qemu_tests::updates::Known], version: u64) -> Result<(), String> {
    use sha2::Digest as _;
    let k = known.iter().find(|k| k.version == version).ok_or_else(|| format!("release {version} is not one the update knows"))?;
    for (name, _) in &k.images {
        let path = store.join(berth::release::store::IMAGES).join(name);
        let bytes = fs::read(&path).map_err(|e| format!("image {name}: {e}"))?;
        let hex: String = sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        if !name.starts_with(&hex) {
            return Err(format!("image {name} of release {version} is damaged (its SHA-256 is {hex})"));
        }
    }
    Ok(())
}
