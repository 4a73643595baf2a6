//! The boot path of PID 1.
//!
//! It must not exit or panic, being PID 1 (the kernel would panic with it): a
//! failure that stops the boot leaves PID 1 in its loop (below).
//!
//! Stage `initramfs`: the kernel starts berth from a small initramfs holding
//! berth, the compiled board config and the board's modules. berth mounts the
//! API filesystems, loads the modules, mounts the read-only system image, moves
//! the API mounts into it, frees the initramfs and re-executes itself from the
//! new root.
//!
//! Stage `system`: berth (now from the read-only system image) mounts whatever
//! is not mounted yet, the data partition (nosuid,nodev,noexec), opens the
//! release, writes the board's kernel hardening ([`crate::confine::harden`], after
//! the modules and berth's own devices, before anything else runs), moves
//! itself into the protected host cgroup ([`crate::confine::budget`]), sets the
//! hostname, brings up `lo`, reports `boot.ready` and enters the loop.
//!
//! A failure that leaves the machine unable to go on (no system image, say) is
//! logged as `boot.failed`, and PID 1 stays in its loop: it still reaps, and
//! SIGTERM/SIGINT still power off or reboot.

/// Test-only hooks: only in test builds and with the `test-hooks` feature.
#[cfg(any(test, feature = "test-hooks"))]
pub mod hooks;
pub mod modules;
pub mod mount;
pub mod slot;
pub mod slotflash;
pub mod systry;
pub mod sysverity;

pub(crate) use crate::common::files::read_bounded;

use crate::boot::mount::{errno_text, SysMounter, NEW_ROOT};
use crate::common::log::Event;
use crate::release::board::{Board, CgroupMode};
use crate::supervise::Pid1;
use nix::errno::Errno;
use nix::mount::MsFlags;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

pub use crate::release::installed::{load_board, BOARD_PATH};
/// berth on the system image.
pub const SELF_PATH: &str = "/sbin/berth";

const RAMFS_MAGIC: i64 = 0x8584_58f6;
const TMPFS_MAGIC: i64 = 0x0102_1994;

fn stage(name: &str) {
    Event::info("boot.stage").kv("stage", name).emit();
}

/// Entry point when running as PID 1.
pub fn pid1() -> ! {
    // First: no console write of PID 1 may block from here on.
    let console = crate::common::log::console::init();
    let kmsg = crate::common::log::open_kmsg();
    // f_type's width differs between the C libraries of the three targets.
    #[allow(clippy::unnecessary_cast)]
    let in_initramfs = matches!(nix::sys::statfs::statfs("/").map(|s| s.filesystem_type().0 as i64), Ok(RAMFS_MAGIC) | Ok(TMPFS_MAGIC));
    Event::info("boot.start")
        .kv("pid", nix::unistd::getpid())
        .kv("stage", if in_initramfs { "initramfs" } else { "system" })
        .kv("version", crate::common::names::VERSION)
        .kv("kmsg", if kmsg.is_ok() { "ok" } else { "unavailable" })
        .kv("console", console.name())
        .emit();
    if let Err(e) = Pid1::block_signals() {
        Event::error("signals").result(&Err::<(), _>(errno_text(e))).emit();
    }
    // Ctrl-alt-del becomes SIGINT to PID 1 instead of an instant reboot.
    let cad = nix::sys::reboot::set_cad_enabled(false);
    Event::debug("cad").result(&cad.map_err(errno_text)).emit();
    if in_initramfs {
        initramfs_stage()
    } else {
        system_stage()
    }
}

/// How long a boot that failed on a bootloader's slot stays up (its
/// reason on the console, `berthctl` in reach) before it reboots, so that
/// the boot script's attempt counter moves on to the other slot.
pub const FAILED_SLOT_REBOOT_S: u64 = 5;

fn failed(reason: &str, grace_ms: u32) -> ! {
    let cmdline = crate::common::files::read_bounded("/proc/cmdline", 4096).unwrap_or_default();
    let slot = crate::release::bootenv::slot_from_cmdline(&String::from_utf8_lossy(&cmdline)).ok().flatten();
    let mut ev = Event::error("boot.failed").kv("reason", reason);
    if let Some(s) = slot {
        ev = ev.kv("slot", s.name()).kv("then", "reboot").kv("after_s", FAILED_SLOT_REBOOT_S);
        // The loop takes the signal as any reboot request (it is blocked
        // in every thread: it waits in the loop's signal descriptor).
        let r = std::thread::Builder::new().name("berth-failed".into()).spawn(|| {
            std::thread::sleep(Duration::from_secs(FAILED_SLOT_REBOOT_S));
            let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGINT);
        });
        if let Err(e) = r {
            ev = ev.kv("thread", e.to_string());
        }
    }
    ev.emit();
    Pid1::new(Duration::from_millis(grace_ms.into()), false).run()
}

/// Loaded board, with the event that says so.
fn board_or_fail() -> Board {
    match load_board() {
        Ok(b) => {
            Event::info("board").kv("name", &b.name).kv("arch", b.arch.name()).kv("cgroup", b.cgroup.name()).emit();
            b
        }
        Err(e) => failed(&e, 5_000),
    }
}

/// API filesystems and, on cgroup v1, the controller hierarchies.
fn api_mounts(board: &Board) {
    stage("early-mounts");
    let mut m = SysMounter;
    mount::apply(&mount::early(board), &mut m);
    devkmsg_on();
    if board.cgroup == CgroupMode::V1 {
        let text = read_bounded("/proc/cgroups", 4096).unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        let enabled: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                let name = f.next()?;
                (f.nth(2)? == "1").then_some(name)
            })
            .collect();
        mount::apply(&mount::cgroup_v1(&enabled), &mut m);
    }
}

/// Writes to /dev/kmsg are rate-limited by default; PID 1's own events must
/// not be (berth bounds them itself: see `log::kmsg`). Container and service
/// output never goes to the kernel log, so this opens no path for it.
fn devkmsg_on() {
    let r = std::fs::write("/proc/sys/kernel/printk_devkmsg", "on\n");
    Event::debug("kmsg.ratelimit").kv("result", if r.is_ok() { "off" } else { "kept" }).emit();
}

/// Wait for the board's block device `source` (a node or a
/// `PARTLABEL=`, see [`crate::common::blockname`]) and put the node in its place;
/// one `device.wait` event either way.
pub(crate) fn device_ready(source: &mut mount::Text, ms: u32) -> bool {
    match crate::common::blockname::wait(source, ms) {
        Ok((node, waited)) => {
            let ev = Event::info("device.wait").kv("device", source.as_str()).kv("waited_ms", waited);
            let ev = if node != source.as_str() { ev.kv("node", &node) } else { ev };
            ev.kv("result", "ok").emit();
            *source = mount::text(&node);
            true
        }
        Err(e) => {
            Event::error("device.wait").kv("device", source.as_str()).kv("result", "error").kv("error", e.text()).emit();
            false
        }
    }
}

fn initramfs_stage() -> ! {
    let board = board_or_fail();
    let grace = board.shutdown_grace_ms;
    api_mounts(&board);

    stage("modules");
    crate::boot::modules::load_all(board.modules.iter().map(|m| m.as_str()));

    stage("system-root");
    let mut sys = mount::system_root(&board);
    if let Some(dev) = slot_system(&board) {
        // Booted through the bootloader's slots: this slot's own partition.
        sys.source = mount::text(dev);
    }
    if !device_ready(&mut sys.source, board.storage.wait_ms) {
        failed("system image device did not appear", grace);
    }
    if let Some(v) = &board.storage.system.verity {
        match sysverity::open(sys.source.as_str(), v) {
            Ok(dm) => sys.source = mount::text(&dm),
            Err(_) => failed("system image failed its dm-verity check", grace),
        }
    }
    if mount::apply(core::slice::from_ref(&sys), &mut SysMounter) > 0 {
        failed("system image did not mount", grace);
    }

    stage("switch-root");
    if let Err((what, e)) = switch_root() {
        Event::error("switch-root").kv("step", what).result(&Err::<(), _>(errno_text(e))).emit();
        failed("switch of root failed", grace);
    }
    // What the console and the kernel log have not taken yet would be lost
    // with this process image.
    crate::common::log::flush(Duration::from_secs(1));
    // Only returns on failure.
    let e = exec_self();
    Event::error("exec").kv("path", SELF_PATH).result(&Err::<(), _>(errno_text(e))).emit();
    failed("could not start berth from the system image", grace)
}

/// The booted slot's system partition, when the board names the slots'
/// and the bootloader named the slot (`berth.slot=`).
fn slot_system(board: &Board) -> Option<&str> {
    let cmdline = crate::common::files::read_bounded("/proc/cmdline", 4096).ok()?;
    let slot = crate::release::bootenv::slot_from_cmdline(&String::from_utf8_lossy(&cmdline)).ok()??;
    let dev = board.bootloader.as_ref()?.slot_device(slot)?;
    Event::info("system.slot").kv("slot", slot.name()).kv("device", dev).emit();
    Some(dev)
}

/// Move the API mounts under the new root, free the initramfs, make the new
/// root `/`.
fn switch_root() -> Result<(), (&'static str, Errno)> {
    let root_dev = std::fs::metadata("/").map_err(|_| ("stat /", Errno::EIO))?.dev();
    for m in mount::MOVED {
        let mut target: heapless::String<64> = heapless::String::new();
        let _ = core::fmt::write(&mut target, format_args!("{NEW_ROOT}{m}"));
        nix::mount::mount(Some(m), target.as_str(), None::<&str>, MsFlags::MS_MOVE, None::<&str>).map_err(|e| ("move", e))?;
    }
    let freed = wipe("/", root_dev, 0);
    Event::info("initramfs.free").kv("files", freed).emit();
    nix::unistd::chdir(NEW_ROOT).map_err(|e| ("chdir", e))?;
    nix::mount::mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>).map_err(|e| ("move root", e))?;
    nix::unistd::chroot(".").map_err(|e| ("chroot", e))?;
    nix::unistd::chdir("/").map_err(|e| ("chdir /", e))?;
    Ok(())
}

/// Remove the initramfs' files (they hold memory), staying on its device.
fn wipe(dir: &str, dev: u64, depth: u32) -> u32 {
    let mut n = 0;
    if depth > 16 {
        return 0;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.dev() != dev {
            continue;
        }
        if meta.is_dir() {
            if let Some(p) = path.to_str() {
                n += wipe(p, dev, depth + 1);
            }
            // Mount points (the new root) stay: they are not empty or are busy.
            let _ = std::fs::remove_dir(&path);
        } else if std::fs::remove_file(&path).is_ok() {
            n += 1;
        }
    }
    n
}

fn exec_self() -> Errno {
    let arg0 = c"berth";
    match nix::unistd::execv(c"/sbin/berth", &[arg0]) {
        Err(e) => e,
        Ok(never) => match never {},
    }
}

fn system_stage() -> ! {
    let board = board_or_fail();
    crate::common::logstore::init(u64::from(board.log_quota_kib) * 1024);
    crate::supervise::set_mirror(board.container_log_console);
    api_mounts(&board);

    stage("data");
    #[cfg(feature = "test-hooks")]
    let board = crate::release::logwrites::at_data(board);
    let data_mounted = mount_data(&board);

    // The A/B slot the bootloader booted, and whether this boot is a try
    // of it or a fall-back from one (boot/slot.rs, boot/systry.rs).
    let store_dir = std::path::Path::new(crate::release::current::STATE);
    let (booted, pending) = systry::at_boot(&board, data_mounted, store_dir);

    stage("release");
    let mut release = check_release(&board, data_mounted, systry::verdict(booted));
    let on_trial = matches!(&release, Checked::Release(b) if b.2.trial.is_some());
    let settled = systry::settle(store_dir, booted, pending, on_trial, board.bootloader.as_ref(), board.storage.wait_ms);
    if let (systry::Settled::Trying(p), Checked::Release(b)) = (settled, &mut release) {
        b.2.system_try = Some(p);
    }

    stage("harden");
    crate::confine::harden::apply(&board.hardening);
    // Before any host service or container: berth's reserve, the budgets.
    crate::confine::budget::apply_at_boot(&board.budgets, board.cgroup);

    stage("hostname");
    let r = nix::unistd::sethostname(board.hostname.as_str());
    Event::info("hostname").kv("name", &board.hostname).result(&r.map_err(errno_text)).emit();

    stage("network");
    let r = loopback_up();
    Event::info("net.up").kv("interface", "lo").result(&r.map_err(errno_text)).emit();

    let mut pid1 = Pid1::new(Duration::from_millis(board.shutdown_grace_ms.into()), data_mounted);
    // The board's host services start with the loop, before the containers.
    pid1.adopt_services(&board.services);
    // Armed once the boot's slow steps are done; from here the loop pets it.
    if let Some(w) = board.watchdog.as_ref().and_then(crate::supervise::watchdog::Watchdog::open) {
        pid1.set_watchdog(w);
    }
    let shown = match &release {
        Checked::Release(b) => Shown::Version(b.0.version),
        Checked::Recovery(_) => Shown::Text("recovery"),
        Checked::Nothing => Shown::Text("none"),
    };
    Event::info("boot.ready")
        .kv("data", if data_mounted { "ok" } else { "missing" })
        .kv("release", shown)
        .kv("berth_rss_kib", crate::supervise::rss_kib())
        .emit();
    match release {
        Checked::Release(b) => {
            let (r, key_id, updates) = *b;
            pid1.set_release(r.version, &key_id);
            stage("containers");
            let specs = crate::confine::containers::prepare_all(&r, &board);
            Event::info("containers.prepared").kv("count", specs.len()).kv("of", r.containers.len()).emit();
            pid1.adopt(specs);
            pid1.set_updates(updates);
            // Preparing maps every image: it may have taken most of a period.
            pid1.pet_watchdog();
        }
        Checked::Recovery(updates) => pid1.set_updates(*updates),
        Checked::Nothing => {}
    }
    #[cfg(feature = "test-hooks")]
    crate::boot::hooks::at_boot(&mut pid1);
    if settled == systry::Settled::Reboot {
        // Into the old slot: the loop takes it as any reboot request.
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGINT);
    }
    pid1.run()
}

/// Mount the data partition and put the log store's files on it; whether
/// it is mounted.
fn mount_data(board: &Board) -> bool {
    let mut data = mount::data(board);
    let mounted = device_ready(&mut data.source, board.storage.wait_ms) && mount::apply(core::slice::from_ref(&data), &mut SysMounter) == 0;
    if mounted {
        let dir = std::path::Path::new(crate::common::logstore::DIR);
        let r = crate::common::logstore::with(|s| s.set_dir(dir)).unwrap_or(Ok(()));
        Event::info("log.store").kv("dir", crate::common::logstore::DIR).kv("quota_kib", board.log_quota_kib).result(&r.map_err(|e| e.to_string())).emit();
    }
    mounted
}

/// What the boot found to run.
enum Checked {
    /// A verified release, its key id and the store.
    Release(Box<(crate::release::Release, String, crate::supervise::update::Updates)>),
    /// No release is usable, but the store and the keys are: the recovery
    /// state, in which a signed bundle repairs the device.
    Recovery(Box<crate::supervise::update::Updates>),
    /// No data partition, no keys or no store: nothing can be updated.
    Nothing,
}

/// The release `boot.ready` names: its version, `recovery` or `none`.
enum Shown {
    Version(u64),
    Text(&'static str),
}

impl core::fmt::Display for Shown {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Shown::Version(v) => write!(f, "{v}"),
            Shown::Text(t) => f.write_str(t),
        }
    }
}

/// The recovery state (see [`crate::supervise::recovery`]): the store's
/// record opened for a repair, logged with `reason` on the console.
fn recovery(board: &Board, mut store: crate::release::store::Store, keys: crate::release::TrustedKeys, reason: String) -> Checked {
    if let Err(e) = store.enter_recovery() {
        Event::error("release.store").kv("step", "recovery").result(&Err::<(), _>(e)).emit();
    }
    Event::error("release.recovery").kv("reason", &reason).kv("floor", store.record().highest.unwrap_or(0)).emit();
    Checked::Recovery(Box::new(crate::supervise::update::Updates {
        trial: None,
        running: crate::release::Release::empty(board.name.clone()),
        store,
        keys,
        board: board.clone(),
        inbox_due: 0.0,
        recovery: Some(reason),
        system_try: None,
    }))
}

/// Open the release store, let it decide what this boot runs (rolling back
/// an interrupted trial, falling back from an unusable release), verify it
/// and log the outcome. A refused release changes nothing; berth stays up,
/// in the recovery state when the store and the keys can still take a
/// repair.
fn check_release(board: &Board, data_mounted: bool, verdict: Option<crate::release::record::SystemVerdict>) -> Checked {
    use crate::release::current;
    use crate::release::store::{BootError, Store};
    use std::path::Path;
    if !data_mounted {
        Event::error("release.rejected").kv("reason", "the data partition is not mounted").emit();
        return Checked::Nothing;
    }
    let keys = match crate::release::TrustedKeys::load_dir(Path::new(current::KEYS)) {
        Ok(k) => k,
        Err(e) => {
            Event::error("release.rejected").kv("reason", format_args!("trusted keys in {}: {e}", current::KEYS)).emit();
            return Checked::Nothing;
        }
    };
    let (mut store, notes) = match Store::open(Path::new(current::STATE)) {
        Ok(s) => s,
        Err(e) => {
            Event::error("release.rejected").kv("reason", format_args!("release store {}: {e}", current::STATE)).emit();
            return Checked::Nothing;
        }
    };
    store.set_system_floor(board.release_floor);
    for note in &notes {
        Event::warn("release.store").kv("note", note).emit();
    }
    let booted = match store.boot_after(&keys, &board.name, verdict) {
        Ok(b) => b,
        Err(BootError::None) => {
            Event::warn("release.none").kv("path", current::STATE).emit();
            return recovery(board, store, keys, format!("no release is installed in {}", current::STATE));
        }
        Err(e) => {
            let reason = e.to_string();
            Event::error("release.rejected").kv("reason", &reason).emit();
            return recovery(board, store, keys, reason);
        }
    };
    for note in &booted.notes {
        Event::warn("release.store").kv("note", note).emit();
    }
    log_rollbacks(&booted.rollbacks);
    if let Some(e) = &booted.unrecorded {
        Event::error("release.store").kv("step", "record").result(&Err::<(), _>(e)).emit();
    }
    let v = booted.verified;
    if booted.trial {
        Event::info("release.trial").kv("version", v.release.version).emit();
    }
    Event::info("release.accepted")
        .kv("version", v.release.version)
        .kv("key_id", v.key_id)
        .kv("containers", v.release.containers.len())
        .kv("stored", if booted.raised { "raised" } else { "kept" })
        .kv("floor", booted.floor.unwrap_or(0))
        .kv("system_floor", board.release_floor)
        .emit();
    // Nothing staged survives a reboot: drop what no kept release uses.
    match store.gc() {
        Ok(c) if c.images + c.releases > 0 => Event::info("release.gc").kv("images", c.images).kv("releases", c.releases).emit(),
        Ok(_) => {}
        Err(e) => Event::warn("release.gc").kv("reason", e).emit(),
    }
    crate::release::images::map(&v.release);
    let key_id = v.key_id.to_string();
    let updates = crate::supervise::update::Updates {
        trial: booted.trial.then(|| crate::supervise::update::Trial::new(&v.release)),
        store,
        keys,
        board: board.clone(),
        running: v.release.clone(),
        inbox_due: 0.0,
        recovery: None,
        system_try: None,
    };
    Checked::Release(Box::new((v.release, key_id, updates)))
}

/// The rollbacks the store's boot made, one `release.rollback` each.
fn log_rollbacks(rollbacks: &[(crate::release::record::Rollback, Option<crate::release::store::ObjectError>)]) {
    for (rb, why) in rollbacks {
        let mut ev = Event::warn("release.rollback").kv("cause", rb.cause).kv("from", rb.from).kv("to", rb.to);
        if let Some(why) = why {
            ev = ev.kv("reason", why);
        }
        ev.emit();
    }
}

fn loopback_up() -> Result<(), Errno> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    let sock = socket(AddressFamily::Inet, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)?;
    crate::sys::interface_up(std::os::fd::AsFd::as_fd(&sock), "lo")
}
