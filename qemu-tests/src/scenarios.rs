//! The QEMU scenarios: each boots a fresh machine (new data partition) and
//! checks berth's event lines and the guest agent's report lines.
//!
//! Scenarios do not know how artifacts are built: xtask hands them a
//! [`Launch`] per architecture.

use crate::event::Event;
use crate::machine::Machine;
use crate::scenario::{case, Case};
use std::sync::Arc;
use std::time::Duration;

/// One boot to make.
#[derive(Debug, Clone)]
pub struct BootSpec {
    /// Scenario name, for file names and messages.
    pub name: String,
    /// The agent's mode (`berth.test=`): poweroff, reboot-once, none...
    pub mode: String,
    /// Keep QEMU running across a guest reboot.
    pub allow_reboot: bool,
    /// Which build of the board: `""` as shipped, `missing-module` (its board
    /// config names a module the kernel lacks), `cgroup-v1` (legacy cgroups),
    /// `no-landlock` (booted with Landlock left out of `lsm=`),
    /// `landlock-optional` (the same, on a board that allows the downgrade),
    /// `dhcp` (eth0 by DHCP, a static eth1 on a second card).
    pub variant: &'static str,
    /// More kernel command line (`berth.cut=7`).
    pub cmdline: String,
    /// Boot on this data image as an earlier boot left it
    /// ([`Machine::data_image`]) instead of a fresh copy of the template.
    pub data: Option<std::path::PathBuf>,
    /// A host port (on 127.0.0.1) QEMU forwards to the guest's port 8080
    /// (the demo's status page).
    pub http_port: Option<u16>,
    /// The host end (a Unix socket QEMU listens on) of a virtio serial port
    /// named `berth.push`, for pushing bundles into the running guest.
    pub push: Option<std::path::PathBuf>,
    /// The console on a Unix socket the harness reads (and can stop
    /// reading: [`Machine::pause_console`]) instead of QEMU's stdout.
    pub console_socket: bool,
    /// The data disk without the host's page cache (`cache=none`, O_DIRECT):
    /// the power-cut boots.
    pub direct_data: bool,
    /// A third disk (the guest's `/dev/vdc`) on this host file: the
    /// dm-log-writes log of the crash-replay scenario.
    pub log_disk: Option<std::path::PathBuf>,
}

/// Boots machines of one architecture.
pub trait Launch: Send + Sync {
    fn arch(&self) -> &str;
    /// The module name the missing-module variant asks for.
    fn missing_module(&self) -> &str;
    /// Version and signing key id of the release on a fresh data partition.
    fn release(&self) -> (u64, String);
    /// The names of that release's containers.
    fn containers(&self) -> Vec<String>;
    /// Boot a machine; it knows its data image ([`Machine::data_image`]).
    fn boot(&self, spec: &BootSpec) -> Result<Machine, String>;
    /// What the `update` variant's data partition carries.
    fn updates(&self) -> Result<crate::updates::UpdateInfo, String>;
    /// Push `bundle` into a running machine over its push socket, as
    /// `cargo xtask push` does (`garble`: with a wrong hash); the device's
    /// answer line.
    fn push(&self, sock: &std::path::Path, bundle: &std::path::Path, garble: bool) -> Result<String, String>;
    /// A fresh boot disk for booting `spec` through the firmware and the
    /// bootloader (see [`crate::bootloader`]): its EFI system partition,
    /// its slots, a fresh environment block.
    fn boot_disk(&self, _spec: &BootSpec) -> Result<std::path::PathBuf, String> {
        Err(format!("{}: no bootloader boot", self.arch()))
    }
    /// Boot `spec` through the firmware and the bootloader from `disk`
    /// (which keeps what the boot wrote, the environment block too).
    fn boot_firmware(&self, _spec: &BootSpec, _disk: &std::path::Path) -> Result<Machine, String> {
        Err(format!("{}: no bootloader boot", self.arch()))
    }
    /// A bundle of `spec`'s build's release one `version` up, carrying a
    /// system slot payload (`new-berth`, `berth-exits`: see xtask's
    /// `slotbundle`).
    fn system_bundle(&self, _spec: &BootSpec, _payload: &str, _version: u64) -> Result<std::path::PathBuf, String> {
        Err(format!("{}: no system bundles", self.arch()))
    }
    /// The bootloader's environment block on `disk`.
    fn grubenv(&self, _disk: &std::path::Path) -> Result<Vec<u8>, String> {
        Err(format!("{}: no bootloader boot", self.arch()))
    }
    /// Replace the bootloader's environment block on `disk`.
    fn set_grubenv(&self, _disk: &std::path::Path, _block: &[u8]) -> Result<(), String> {
        Err(format!("{}: no bootloader boot", self.arch()))
    }
    /// Flip one bit inside slot `slot`'s system image on `disk`; the
    /// byte's offset in its partition.
    fn alter_system(&self, _disk: &std::path::Path, _slot: &str) -> Result<u64, String> {
        Err(format!("{}: no bootloader boot", self.arch()))
    }
    /// The variables of U-Boot's environment kept for `disk` (its flash),
    /// none before U-Boot first saved it.
    fn ubootenv(&self, _disk: &std::path::Path) -> Result<Vec<(String, String)>, String> {
        Err(format!("{}: no U-Boot boot", self.arch()))
    }
    /// Replace U-Boot's environment kept for `disk` by `vars`.
    fn set_ubootenv(&self, _disk: &std::path::Path, _vars: &[(String, String)]) -> Result<(), String> {
        Err(format!("{}: no U-Boot boot", self.arch()))
    }
}

/// Time limits, scaled for the slowest emulated board.
pub(crate) struct Limits {
    pub(crate) boot: Duration,
    pub(crate) step: Duration,
    pub(crate) halt: Duration,
}

pub(crate) fn limits(arch: &str) -> Limits {
    let k = if arch == "armv7" { 2 } else { 1 };
    Limits { boot: Duration::from_secs(90 * k), step: Duration::from_secs(30 * k), halt: Duration::from_secs(30 * k) }
}

/// A scenario's check, run against one board's launcher.
pub type Check = fn(&dyn Launch) -> Result<(), String>;

/// The cases of `table` on `l`'s board, each named `ARCH/NAME`.
pub fn cases_of(l: &Arc<dyn Launch>, table: Vec<(&'static str, Check)>) -> Vec<Case> {
    let arch = l.arch().to_string();
    table
        .into_iter()
        .map(|(name, f)| {
            let l = Arc::clone(l);
            case(format!("{arch}/{name}"), move || f(l.as_ref()))
        })
        .collect()
}

/// Every scenario for one architecture, named `<arch>/<scenario>`.
pub fn all(l: Arc<dyn Launch>) -> Vec<Case> {
    let arch = l.arch().to_string();
    let table: [(&str, Check); 22] = [
        ("status-page", status_page),
        ("services", services),
        ("dhcp", dhcp),
        ("rss", rss),
        ("ctl-fuzz", ctl_fuzz),
        ("watchdog", watchdog),
        ("readiness", readiness),
        ("restarts", restarts),
        ("probe-v1", probe_v1),
        ("limits", cgroup_limits),
        ("corrupt-image", corrupt_image),
        ("probe", probe),
        ("no-release", no_release),
        ("boot", boot_checks_poweroff),
        ("reboot", reboot_then_poweroff),
        ("missing-module", missing_module),
        ("cgroup-v1", cgroup_v1),
        ("tampered-release", tampered_release),
        ("no-landlock", no_landlock),
        ("landlock-optional", landlock_optional),
        ("apparmor", apparmor),
        ("release-trial-rollback", trial_rollback),
    ];
    // 1,000 restarts take minutes under emulation on the ARM boards: the
    // RSS check runs on x86_64 (the bench measures every board).
    let only_x86: &[&str] = &["rss"];
    let table: Vec<(&'static str, Check)> = table.into_iter().filter(|(name, _)| arch == "x86_64" || !only_x86.contains(name)).collect();
    let mut cases = cases_of(&l, table);
    cases.extend(crate::loopcheck::cases(Arc::clone(&l)));
    cases.extend(crate::budgets::cases(Arc::clone(&l)));
    cases.extend(crate::waits::cases(Arc::clone(&l)));
    cases.extend(crate::output::cases(Arc::clone(&l)));
    cases.extend(crate::logquota::cases(Arc::clone(&l)));
    cases.extend(crate::checkwindow::cases(Arc::clone(&l)));
    cases.extend(crate::updates::cases(Arc::clone(&l)));
    cases.extend(crate::volumes::cases(Arc::clone(&l)));
    cases.extend(crate::trials::cases(Arc::clone(&l)));
    cases.extend(crate::inboxfull::cases(Arc::clone(&l)));
    cases.extend(crate::releasepaths::cases(Arc::clone(&l)));
    cases.extend(crate::faults::cases(Arc::clone(&l)));
    cases.extend(crate::recovery::cases(Arc::clone(&l)));
    cases.extend(crate::bootloader::cases(Arc::clone(&l)));
    cases.extend(crate::slotupdate::cases(Arc::clone(&l)));
    cases.extend(crate::staging::cases(l));
    cases
}

pub(crate) fn spec(name: &str, mode: &str) -> BootSpec {
    BootSpec {
        name: name.into(),
        mode: mode.into(),
        allow_reboot: false,
        variant: "",
        cmdline: String::new(),
        data: None,
        http_port: None,
        push: None,
        console_socket: false,
        direct_data: false,
        log_disk: None,
    }
}

pub(crate) fn field_is(e: &Event, key: &str, want: &str) -> Result<(), String> {
    match e.get(key) {
        Some(v) if v == want => Ok(()),
        other => Err(format!("event {} has {key}={other:?}, want {want}", e.name)),
    }
}

/// The boot sequence up to `boot.ready`, checking each stage in order.
pub(crate) fn expect_boot(m: &mut Machine, lim: &Limits) -> Result<(), String> {
    let start = m.expect_event_where("boot.start", |e| e.get("stage") == Some("initramfs"), lim.boot)?;
    field_is(&start, "pid", "1")?;
    for stage in ["early-mounts", "modules", "system-root", "switch-root"] {
        m.expect_event_where("boot.stage", |e| e.get("stage") == Some(stage), lim.step)?;
    }
    let sys = m.expect_event_where("boot.start", |e| e.get("stage") == Some("system"), lim.step)?;
    field_is(&sys, "pid", "1")?;
    let data = m.expect_event_where("mount", |e| e.get("target") == Some("/data"), lim.step)?;
    field_is(&data, "result", "ok")?;
    let flags = data.get("flags").unwrap_or("");
    for f in ["nosuid", "nodev", "noexec"] {
        if !flags.split(',').any(|x| x == f) {
            return Err(format!("data partition mounted with flags {flags}, missing {f}"));
        }
    }
    field_is(&m.expect_event("hostname", lim.step)?, "result", "ok")?;
    field_is(&m.expect_event("net.up", lim.step)?, "result", "ok")?;
    field_is(&m.expect_event("boot.ready", lim.step)?, "data", "ok")?;
    Ok(())
}

/// The agent's report for one check must say pass.
pub(crate) fn agent_pass(m: &mut Machine, check: &str, lim: &Limits) -> Result<(), String> {
    let line = m.expect_line(&format!("AGENT check={check} "), lim.step)?;
    if line.contains("result=pass") {
        Ok(())
    } else {
        Err(format!("agent check {check} failed: {line}"))
    }
}

/// A clean power-off: berth's shutdown events, then QEMU ends by itself.
pub(crate) fn expect_poweroff(m: &mut Machine, signal: &str, lim: &Limits) -> Result<(), String> {
    let b = m.expect_event("shutdown.begin", lim.step)?;
    field_is(&b, "action", "poweroff")?;
    field_is(&b, "signal", signal)?;
    field_is(&m.expect_event_where("shutdown.umount", |e| e.get("target") == Some("/data"), lim.halt)?, "result", "ok")?;
    field_is(&m.expect_event("shutdown.halt", lim.halt)?, "action", "poweroff")?;
    let st = m.wait_exit(lim.halt)?;
    if !st.success() {
        return Err(format!("QEMU ended with {st} after the power-off"));
    }
    Ok(())
}

/// Nothing went wrong that the case did not expect: every error-level
/// event berth logged (`level=error`; `boot.failed` too) must match one of
/// `expected`, each `EVENT` (any of that name) or `EVENT:NAME` (that
/// event for the container, service or image `NAME`). Error lines nested
/// in a host service's output (`service.log`) count too.
pub(crate) fn no_errors(m: &Machine, expected: &[&str]) -> Result<(), String> {
    let bad = unexpected_errors(&m.events(), expected);
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!("unexpected error events: {bad:?}"))
    }
}

/// The error-level events of `events` that no entry of `expected` names
/// (see [`no_errors`]), each as `EVENT {fields}`.
pub fn unexpected_errors(events: &[Event], expected: &[&str]) -> Vec<String> {
    let nested = events.iter().filter(|e| e.name == "service.log").filter_map(|e| e.get("line").and_then(crate::event::parse_line));
    let all: Vec<Event> = events.iter().cloned().chain(nested).collect();
    all.iter()
        .filter(|e| e.is("level", "error") || e.name == "boot.failed")
        .filter(|e| {
            !expected.iter().any(|x| match x.split_once(':') {
                Some((ev, name)) => e.name == ev && e.get("name").or(e.get("image")) == Some(name),
                None => e.name == *x,
            })
        })
        .map(|e| format!("{} {:?}", e.name, e.fields))
        .collect()
}

/// One boot: PID 1, every stage, read-only root, data flags, orphan reaping,
/// then SIGTERM powers the machine off cleanly.
fn boot_checks_poweroff(l: &dyn Launch) -> Result<(), String> {
    let lim = limits(l.arch());
    let mut m = l.boot(&spec("boot", "poweroff"))?;
    expect_boot(&mut m, &lim)?;
    // The signed release on the data partition was verified and taken.
    let (version, key_id) = l.release();
    let events = m.events();
    let rel = events
        .iter()
        .find(|e| e.name == "release.accepted")
        .ok_or_else(|| format!("no release.accepted event; release events: {:?}", release_events(&events)))?;
    field_is(rel, "version", &version.to_string())?;
    field_is(rel, "key_id", &key_id)?;
    field_is(rel, "stored", "raised")?;
    // Every image of the release is mapped through dm-verity and mounted.
    let verity: Vec<&Event> = events.iter().filter(|e| e.name == "image.verity").collect();
    let mounts = events.iter().filter(|e| e.name == "mount" && e.get("target").is_some_and(|t| t.starts_with("/run/berth/images/"))).count();
    if verity.is_empty() || verity.iter().any(|e| e.get("result") != Some("ok")) || mounts != verity.len() {
        return Err(format!("image activation: {} verity events {:?}, {mounts} mounts", verity.len(), verity.iter().map(|e| &e.fields).collect::<Vec<_>>()));
    }
    let ready = m.cursor();
    // The demo containers start confined and their output reaches the log.
    for name in ["sensor", "flaky"] {
        // Independent containers start together, in no set order.
        m.set_cursor(ready);
        let e = m.expect_event_where("container.start", |e| e.get("name") == Some(name), lim.step)?;
        field_is(&e, "result", "ok")?;
    }
    m.set_cursor(ready);
    m.expect_event_where("container.log", |e| e.get("name") == Some("sensor") && e.get("line").is_some_and(|l| l.starts_with("sensor: reading=1 ")), lim.step)?;
    m.set_cursor(ready);
    for check in ["pid1", "rootfs-ro", "data-mount", "orphan-reaped"] {
        agent_pass(&mut m, check, &lim)?;
    }
    // berthctl on the device lists the demo containers and the release.
    let line = m.expect_line("AGENT check=berthctl ", lim.step)?;
    let (version, key_id) = l.release();
    for want in ["result=pass", "sensor", "flaky", "running", &format!("release {version} signed by key {key_id}")] {
        if !line.contains(want) {
            return Err(format!("berthctl output lacks {want:?}: {line}"));
        }
    }
    status_layers_match(&m, &line)?;
    agent_pass(&mut m, "berthctl-stop-start", &lim)?;
    agent_pass(&mut m, "berthctl-logs", &lim)?;
    agent_pass(&mut m, "berthctl-restart", &lim)?;
    // berth itself reaped the re-parented grandchild.
    let after = m.cursor();
    m.set_cursor(ready);
    m.expect_event_where("reap", |e| e.get("name") == Some("orphan"), lim.step)?;
    m.set_cursor(after.max(m.cursor()));
    m.expect_line("AGENT done", lim.step)?;
    expect_poweroff(&mut m, "SIGTERM", &lim)?;
    no_errors(&m, &[])
}

/// `berthctl status` shows each container's layers (its line after the
/// container's row), and they are the ones berth logged when it started it.
fn status_layers_match(m: &Machine, agent_line: &str) -> Result<(), String> {
    let parts: Vec<&str> = agent_line.split(" | ").map(str::trim).collect();
    for name in ["sensor", "flaky"] {
        let row = parts.iter().position(|p| p.split_whitespace().next() == Some(name));
        let layers = row.and_then(|i| parts.get(i + 1)).and_then(|l| l.strip_prefix("layers: "));
        let Some(layers) = layers else {
            return Err(format!("berthctl status has no layers line for {name}: {agent_line}"));
        };
        let kv = |k: &str| probe_field(layers, k).map(|v| v.trim_end_matches('"'));
        let started = m.events().into_iter().rfind(|e| e.name == "container.start" && e.get("name") == Some(name));
        let Some(e) = started else {
            return Err(format!("no container.start for {name}"));
        };
        for (shown, logged) in
            [("userns", "uid_base"), ("seccomp", "seccomp"), ("device_rules", "device_rules"), ("landlock", "landlock"), ("apparmor", "apparmor")]
        {
            if kv(shown).is_none() || kv(shown) != e.get(logged) {
                return Err(format!("{name}: status shows {shown}={:?}, container.start logged {logged}={:?}", kv(shown), e.get(logged)));
            }
        }
        if !kv("landlock").is_some_and(|v| v.starts_with("abi")) || kv("caps") != Some("none") {
            return Err(format!("{name}: want a Landlock ABI and no capabilities: {layers}"));
        }
    }
    Ok(())
}

pub(crate) fn release_events(events: &[Event]) -> Vec<String> {
    events.iter().filter(|e| e.name.starts_with("release")).map(|e| format!("{} {:?}", e.name, e.fields)).collect()
}

/// SIGINT reboots: the harness sees the second boot, which then powers off.
fn reboot_then_poweroff(l: &dyn Launch) -> Result<(), String> {
    let lim = limits(l.arch());
    let mut m = l.boot(&BootSpec { allow_reboot: true, ..spec("reboot", "reboot-once") })?;
    expect_boot(&mut m, &lim)?;
    m.expect_line("AGENT action=reboot", lim.step)?;
    let b = m.expect_event("shutdown.begin", lim.step)?;
    field_is(&b, "action", "reboot")?;
    field_is(&b, "signal", "SIGINT")?;
    field_is(&m.expect_event("shutdown.halt", lim.halt)?, "action", "reboot")?;
    // The second boot finds the agent's marker on the data partition, and
    // the release version it stored the first time.
    expect_boot(&mut m, &lim)?;
    let second = m.events().into_iter().filter(|e| e.name == "release.accepted").nth(1);
    match second {
        Some(e) => field_is(&e, "stored", "kept")?,
        None => return Err(format!("second boot accepted no release: {:?}", release_events(&m.events()))),
    }
    m.expect_line("AGENT action=poweroff", lim.step)?;
    expect_poweroff(&mut m, "SIGTERM", &lim)?;
    let starts = m.events().iter().filter(|e| e.name == "boot.start" && e.get("stage") == Some("initramfs")).count();
    if starts != 2 {
        return Err(format!("saw {starts} boots, want 2"));
    }
    no_errors(&m, &[])
}

/// A board naming a module the kernel lacks: logged at boot, boot goes on.
fn missing_module(l: &dyn Launch) -> Result<(), String> {
    let lim = limits(l.arch());
    let missing = l.missing_module().to_string();
    let mut m = l.boot(&BootSpec { variant: "missing-module", ..spec("missing-module", "poweroff") })?;
    let e = m.expect_event_where("module.load", |e| e.get("name") == Some(missing.as_str()), lim.boot)?;
    field_is(&e, "result", "error")?;
    if !e.get("error").unwrap_or("").starts_with("ENOENT") {
        return Err(format!("missing module error is {:?}, want ENOENT", e.get("error")));
    }
    m.expect_event("boot.ready", lim.boot)?;
    m.expect_line("AGENT done", lim.step)?;
    expect_poweroff(&mut m, "SIGTERM", &lim)?;
    no_errors(&m, &[&format!("module.load:{missing}")])
}

/// A board that asks for cgroup v1 gets a tmpfs with one hierarchy per controller.
fn cgroup_v1(l: &dyn Launch) -> Result<(), String> {
    let lim = limits(l.arch());
    let mut m = l.boot(&BootSpec { variant: "cgroup-v1", ..spec("cgroup-v1", "poweroff") })?;
    let base = m.expect_event_where("mount", |e| e.get("target") == Some("/sys/fs/cgroup"), lim.boot)?;
    field_is(&base, "fstype", "tmpfs")?;
    field_is(&base, "result", "ok")?;
    // The Debian 6.12 kernels build memory and cpuset for v2 only: berth
    // reports them unavailable; the others mount.
    for (ctl, want) in [("cpu,cpuacct", "ok"), ("memory", "unavailable"), ("devices", "ok"), ("pids", "ok")] {
        let target = format!("/sys/fs/cgroup/{ctl}");
        let e = m.expect_event_where("mount", |e| e.get("target") == Some(target.as_str()), lim.step)?;
        field_is(&e, "fstype", "cgroup")?;
        field_is(&e, "result", want)?;
    }
    m.expect_event("boot.ready", lim.boot)?;
    m.expect_line("AGENT done", lim.step)?;
    expect_poweroff(&mut m, "SIGTERM", &lim)?;
    // Fail closed: a demo container with a memory limit cannot get it
    // without the v1 memory controller, and is refused, saying so.
    let refused: Vec<String> = m
        .events()
        .into_iter()
        .filter(|e| e.name == "container.start" && e.get("result") == Some("error"))
        .map(|e| {
            let why = e.get("error").unwrap_or("");
            if e.get("step") == Some("cgroup") && why.contains("memory controller is not mounted") {
                Ok(e.get("name").unwrap_or("").to_string())
            } else {
                Err(format!("{:?}", e.fields))
            }
        })
        .collect::<Result<_, _>>()?;
    let mut refused = refused;
    refused.sort();
    // Each is refused at every try of its restart policy: once is enough.
    refused.dedup();
    let want = memory_limited_demo()?;
    if refused != want {
        return Err(format!("refused {refused:?} for want of the memory controller, want exactly {want:?} (the demo containers with memory_max)"));
    }
    let refused: Vec<String> = refused.iter().map(|n| format!("container.start:{n}")).collect();
    let refused: Vec<&str> = refused.iter().map(String::as_str).collect();
    no_errors(&m, &refused)
}

/// The demo containers whose manifest sets `memory_max`, sorted: read from
/// the TOML files in `manifests/` (a line naming the key), not through
/// berth's parser.
pub fn memory_limited_demo() -> Result<Vec<String>, String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.extension().is_none_or(|x| x != "toml") || path.file_name().is_some_and(|n| n == "release.toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let limited = text.lines().any(|l| !l.trim_start().starts_with('#') && l.contains("memory_max"));
        let name = text.lines().find_map(|l| l.strip_prefix("name = \"")?.strip_suffix('"').map(str::to_string));
        if let (true, Some(n)) = (limited, name) {
            out.push(n);
        }
    }
    out.sort();
    Ok(out)
}

/// A release whose payload was changed after signing is refused with the
/// decoder's reason; berth still finishes the boot and powers off cleanly.
fn tampered_release(l: &dyn Launch) -> Result<(), String> {
    let lim = limits(l.arch());
    let mut m = l.boot(&BootSpec { variant: "tampered-release", ..spec("tampered-release", "poweroff") })?;
    let e = m.expect_event("release.rejected", lim.boot)?;
    let (_, key_id) = l.release();
    let want = format!("release signature does not verify with key {key_id}");
    if e.get("reason") != Some(want.as_str()) {
        return Err(format!("release.rejected reason is {:?}, want {want:?}", e.get("reason")));
    }
    m.expect_event("boot.ready", lim.step)?;
    m.expect_line("AGENT done", lim.step)?;
    expect_poweroff(&mut m, "SIGTERM", &lim)?;
    if m.events().iter().any(|e| e.name == "release.accepted") {
        return Err("a tampered release was accepted".into());
    }
    // Refused, and so the recovery state for the same reason.
    let rec = m.events().into_iter().find(|e| e.name == "release.recovery").ok_or("no release.recovery after the refusal")?;
    field_is(&rec, "reason", &want)?;
    no_errors(&m, &["release.rejected", "release.recovery"])
}

/// A data partition whose record has release N+1 on trial (its switch done,
/// not yet committed) and N before it: the boot finds an interrupted trial,
/// rolls back to N with the cause recorded, boots N and drops N+1.
fn trial_rollback(l: &dyn Launch) -> Result<(), String> {
    let lim = limits(l.arch());
    let (version, key_id) = l.release();
    let mut m = l.boot(&BootSpec { variant: "release-trial-rollback", ..spec("release-trial-rollback", "poweroff") })?;
    let rb = m.expect_event("release.rollback", lim.boot)?;
    field_is(&rb, "cause", "reboot-during-trial")?;
    field_is(&rb, "from", &(version + 1).to_string())?;
    field_is(&rb, "to", &version.to_string())?;
    let acc = m.expect_event("release.accepted", lim.step)?;
    field_is(&acc, "version", &version.to_string())?;
    field_is(&acc, "key_id", &key_id)?;
    let gc = m.expect_event("release.gc", lim.step)?;
    field_is(&gc, "releases", "1")?;
    m.expect_event("boot.ready", lim.step)?;
    m.expect_line("AGENT done", lim.step)?;
    expect_poweroff(&mut m, "SIGTERM", &lim)?;
    if m.events().iter().any(|e| e.name == "release.trial") {
        return Err("the interrupted trial was booted".into());
    }
    no_errors(&m, &[])
}

/// A device without a release says so, boots, and waits in the recovery
/// state for a bundle.
fn no_release(l: &dyn Launch) -> Result<(), String> {
    let lim = limits(l.arch());
    let mut m = l.boot(&BootSpec { variant: "no-release", ..spec("no-release", "poweroff") })?;
    m.expect_event("release.none", lim.boot)?;
    let rec = m.expect_event("release.recovery", lim.step)?;
    field_is(&rec, "reason", "no release is installed in /data/berth")?;
    field_is(&m.expect_event("boot.ready", lim.step)?, "release", "recovery")?;
    m.expect_line("AGENT done", lim.step)?;
    expect_poweroff(&mut m, "SIGTERM", &lim)?;
    // Nothing installed: the recovery state, waiting for a bundle.
    no_errors(&m, &["release.recovery"])
}

/// A kernel booted without Landlock, on a board that requires it: berth
/// says why once, refuses every container (each with its own error naming
/// the landlock step), and boots on.
fn no_landlock(l: &dyn Launch) -> Result<(), String> {
    let lim = limits(l.arch());
    let mut m = l.boot(&BootSpec { variant: "no-landlock", ..spec("no-landlock", "poweroff") })?;
    m.expect_event("boot.ready", lim.boot)?;
    let e = m.expect_event("landlock", lim.step)?;
    field_is(&e, "mode", "required")?;
    field_is(&e, "result", "error")?;
    let why = "Landlock is built into the kernel but disabled at boot (lsm=)";
    field_is(&e, "error", why)?;
    for name in ["sensor", "flaky"] {
        m.set_cursor(0);
        let e = m.expect_event_where("container.start", |e| e.get("name") == Some(name), lim.step)?;
        field_is(&e, "result", "error")?;
        field_is(&e, "step", "landlock")?;
        field_is(&e, "error", &format!("the board requires Landlock: {why}"))?;
    }
    m.expect_line("AGENT done", lim.step)?;
    expect_poweroff(&mut m, "SIGTERM", &lim)?;
    let ran: Vec<Event> =
        m.events().into_iter().filter(|e| e.name == "container.log" || (e.name == "container.start" && e.get("result") == Some("ok"))).collect();
    if !ran.is_empty() {
        return Err(format!("a container ran without Landlock: {:?}", ran.iter().map(|e| &e.fields).collect::<Vec<_>>()));
    }
    // The only errors: the landlock event and the refused starts.
    let other: Vec<String> = m
        .events()
        .into_iter()
        .filter(|e| e.get("result") == Some("error") || e.name == "boot.failed")
        .filter(|e| e.name != "landlock" && !(e.name == "container.start" && e.get("step") == Some("landlock")))
        .map(|e| format!("{} {:?}", e.name, e.fields))
        .collect();
    if other.is_empty() {
        Ok(())
    } else {
        Err(format!("unexpected error events: {other:?}"))
    }
}

/// The same kernel, on a board that allows the downgrade: the containers
/// start without Landlock, and the downgrade is logged.
fn landlock_optional(l: &dyn Launch) -> Result<(), String> {
    let lim = limits(l.arch());
    let mut m = l.boot(&BootSpec { variant: "landlock-optional", ..spec("landlock-optional", "none") })?;
    m.expect_event("boot.ready", lim.boot)?;
    let e = m.expect_event("landlock", lim.step)?;
    field_is(&e, "mode", "optional")?;
    field_is(&e, "result", "downgrade")?;
    field_is(&e, "reason", "Landlock is built into the kernel but disabled at boot (lsm=)")?;
    let e = m.expect_event_where("container.start", |e| e.get("name") == Some("sensor"), lim.step)?;
    field_is(&e, "result", "ok")?;
    field_is(&e, "landlock", "none")?;
    m.expect_event_where("container.log", |e| e.get("name") == Some("sensor") && e.get("line").is_some_and(|l| l.starts_with("sensor: reading=")), lim.step)?;
    no_errors(&m, &[])
}

/// The probe's lines of one container, from berth's `container.log` events.
pub(crate) fn probe_lines(m: &Machine, name: &str) -> Vec<String> {
    m.events()
        .into_iter()
        .filter(|e| e.name == "container.log" && e.get("name") == Some(name))
        .filter_map(|e| e.get("line").map(str::to_string))
        .filter(|l| l.starts_with("PROBE "))
        .collect()
}

pub(crate) fn probe_field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace().find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

/// Two probe containers (root inside with one capability; uid 1000 inside)
/// try more than 30 escapes each; every one must be refused by policy, and
/// what must work works.
fn probe(l: &dyn Launch) -> Result<(), String> {
    probe_on(l, "probe")
}

/// The same on a cgroup v1 board: the v1 device controller does the refusing.
fn probe_v1(l: &dyn Launch) -> Result<(), String> {
    probe_on(l, "probe-v1")
}

/// The probe again, on a board whose AppArmor profile berth loads at boot
/// and switches both containers into at exec.
fn apparmor(l: &dyn Launch) -> Result<(), String> {
    probe_on(l, "apparmor")
}

/// How many escape attempts the probe makes in its default mode on x86_64
/// (its tables in `berth-probe/attempts.rs` and `surface.rs`; the probe's
/// unit test holds it to them). Each must be reported `blocked`.
pub const PROBE_ATTEMPTS: usize = 89;
/// The attempts that exist on x86_64 only (`ioperm`).
pub const PROBE_X86_ONLY: usize = 1;

/// The probe's attempt count on `arch`.
pub fn probe_attempts(arch: &str) -> usize {
    if arch == "x86_64" {
        PROBE_ATTEMPTS
    } else {
        PROBE_ATTEMPTS - PROBE_X86_ONLY
    }
}

/// The probe's summary line on `arch` when every attempt was refused and
/// every check worked: `works` checks reported `works`.
pub fn probe_summary(arch: &str, works: usize) -> String {
    format!("PROBE done blocked={} escaped=0 error=0 works={works} broken=0", probe_attempts(arch))
}

/// The probe's own verdict in `lines` (its `PROBE` lines) on `arch`: the
/// summary is [`probe_summary`] for the `works` lines it printed, and the
/// `blocked` lines are exactly [`probe_attempts`].
pub fn judge_probe_summary(arch: &str, name: &str, lines: &[String], summary: &str) -> Result<(), String> {
    let blocked = lines.iter().filter(|l| probe_field(l, "result") == Some("blocked")).count();
    let works = lines.iter().filter(|l| probe_field(l, "result") == Some("works")).count();
    let want_blocked = probe_attempts(arch);
    if blocked != want_blocked {
        return Err(format!("{name}: {blocked} attempts reported blocked, want all {want_blocked}"));
    }
    let want = probe_summary(arch, works);
    if summary != want {
        return Err(format!("{name}: the probe's summary is {summary:?}, want {want:?}"));
    }
    Ok(())
}

/// The probe's attempts on the kernel surface (berth-probe/surface.rs).
const SURFACE_ATTEMPTS: [&str; 10] = [
    "memfd-exec-execveat",
    "memfd-exec-proc-fd",
    "execveat-empty-path-image",
    "tmpfile-exec-proc-fd",
    "socket-family-sweep",
    "tty-ioctl-tiocsti",
    "tty-ioctl-tioclinux",
    "tty-ioctl-tiocsetd",
    "tty-ioctl-tioccons",
    "ioctl-read-only-node",
];

/// The kernel settings of the board's `[hardening]` (all defaults), one
/// `harden` event each, written before any container starts.
const HARDENED: [(&str, &str); 9] = [
    ("kernel.kptr_restrict", "2"),
    ("kernel.dmesg_restrict", "1"),
    ("fs.suid_dumpable", "0"),
    ("fs.protected_symlinks", "1"),
    ("fs.protected_hardlinks", "1"),
    ("fs.protected_fifos", "2"),
    ("fs.protected_regular", "2"),
    ("vm.memfd_noexec", "2"),
    ("kernel.modules_disabled", "1"),
];

fn hardened_before_containers(m: &Machine) -> Result<(), String> {
    let events = m.events();
    let first_start = events.iter().position(|e| e.name == "container.start").unwrap_or(events.len());
    for (key, value) in HARDENED {
        let Some(i) = events.iter().position(|e| e.name == "harden" && e.get("key") == Some(key)) else {
            return Err(format!("no harden event for {key}"));
        };
        let e = &events[i];
        if e.get("value") != Some(value) || e.get("result") != Some("ok") {
            return Err(format!("harden {key}: {:?}, want value={value} result=ok", e.fields));
        }
        if i > first_start {
            return Err(format!("harden {key} came after a container started"));
        }
    }
    Ok(())
}

fn probe_on(l: &dyn Launch, variant: &'static str) -> Result<(), String> {
    let lim = limits(l.arch());
    let mut m = l.boot(&BootSpec { variant, ..spec(variant, "none") })?;
    // Only the apparmor board names a profile; elsewhere containers stay
    // unconfined by AppArmor.
    let (profile, label) = match variant {
        "apparmor" => ("berth-container", "berth-container_(enforce)"),
        _ => ("none", "unconfined"),
    };
    if variant == "apparmor" {
        let e = m.expect_event("apparmor.load", lim.boot)?;
        field_is(&e, "profile", profile)?;
        field_is(&e, "result", "ok")?;
    }
    let mut bases = Vec::new();
    for name in ["probe", "probe-user"] {
        // Independent containers start in either order.
        m.set_cursor(0);
        let e = m.expect_event_where("container.start", |e| e.get("name") == Some(name), lim.boot)?;
        field_is(&e, "result", "ok")?;
        // The Debian 6.12 kernels offer Landlock ABI 6.
        field_is(&e, "landlock", "abi6")?;
        field_is(&e, "apparmor", profile)?;
        // Read by berth from /proc/<pid>/uid_map on the host: `0 <base> 65536`.
        let map = e.get("uid_map").unwrap_or("");
        let base = e.get("uid_base").unwrap_or("").to_string();
        if map != format!("0 {base} 65536") {
            return Err(format!("{name}: host-side uid_map {map:?} does not map 0 to {base}"));
        }
        bases.push(base);
    }
    for name in ["probe", "probe-user"] {
        m.set_cursor(0);
        let done = |e: &Event| e.get("name") == Some(name) && e.get("line").is_some_and(|l| l.starts_with("PROBE done"));
        m.expect_event_where("container.log", done, lim.boot * 2)?;
        let lines = probe_lines(&m, name);
        let bad: Vec<&String> = lines.iter().filter(|l| matches!(probe_field(l, "result"), Some("escaped" | "error" | "broken"))).collect();
        if !bad.is_empty() {
            return Err(format!(
                "{name}: {} attempts not refused by policy or checks broken:\n{}",
                bad.len(),
                bad.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n")
            ));
        }
        let summary = m
            .events()
            .iter()
            .find(|e| e.is("name", name) && e.get("line").is_some_and(|l| l.starts_with("PROBE done")))
            .and_then(|e| e.get("line").map(str::to_string))
            .unwrap_or_default();
        judge_probe_summary(l.arch(), name, &lines, &summary)?;
        // Its exit code says the same: 0.
        m.set_cursor(0);
        let reaped = m.expect_event_where("reap", |e| e.is("name", name), lim.step)?;
        if !(reaped.is("how", "exit") && reaped.is("code", "0")) {
            return Err(format!("{name}: the probe ended {:?}, want exit code 0", reaped.fields));
        }
        let mut want = vec![
            "image-read",
            "tmp-rw",
            "uid-map",
            "pid-ns",
            "landlock-active",
            "socket-default-families",
            "pty-works",
            "host-hardening",
            "device-write-denied",
        ];
        if name == "probe" {
            want.extend(["granted-cap", "granted-device", "granted-device-write", "device-ioctl-rw", "volume", "rlimits", "exec-denied"]);
        } else {
            want.extend(["ungranted-absent", "exec-works"]);
        }
        // The kernel-surface attempts each ran and were refused by policy.
        for a in SURFACE_ATTEMPTS {
            if !lines.iter().any(|l| probe_field(l, "name") == Some(a) && probe_field(l, "result") == Some("blocked")) {
                return Err(format!("{name}: attempt {a} was not reported blocked: {lines:?}"));
            }
        }
        for w in want {
            if !lines.iter().any(|l| probe_field(l, "name") == Some(w) && probe_field(l, "result") == Some("works")) {
                return Err(format!("{name}: check {w} did not report works: {lines:?}"));
            }
        }
        let seen = lines
            .iter()
            .find(|l| probe_field(l, "name") == Some("apparmor-label"))
            .and_then(|l| l.split("label=").nth(1))
            .and_then(|r| r.split(['"', '\\', ' ']).next());
        if seen != Some(label) {
            return Err(format!("{name}: AppArmor label {seen:?}, want {label}"));
        }
    }
    // Each container maps uid 0 to its own unprivileged host range.
    if bases.iter().any(|b| b.is_empty() || b == "0") || bases.first() == bases.get(1) {
        return Err(format!("uid bases {bases:?}: want distinct, non-zero"));
    }
    hardened_before_containers(&m)
}

/// How sensor's start fails on its corrupted image.
const CORRUPT_EXEC_ERROR: &str = "container start failed at execve: I/O error (EIO)";

/// One corrupted byte in the `sensor` image: reading it fails inside that
/// container only (each start fails with EIO at its execve); `flaky` runs;
/// berth stays up.
fn corrupt_image(l: &dyn Launch) -> Result<(), String> {
    let lim = limits(l.arch());
    let mut m = l.boot(&BootSpec { variant: "corrupt-image", ..spec("corrupt-image", "none") })?;
    m.expect_event("boot.ready", lim.boot)?;
    let ready = m.cursor();
    m.expect_event_where("container.log", |e| e.get("name") == Some("flaky") && e.get("line").is_some_and(|l| l.starts_with("flaky: up")), lim.step)?;
    m.set_cursor(ready);
    // The corrupt byte is in sensor's program: its exec reads the block,
    // dm-verity refuses it, and the start fails with EIO at execve, every
    // time it is tried.
    m.set_cursor(0);
    let first = m.expect_event_where("container.start", |e| e.is("name", "sensor"), lim.step)?;
    field_is(&first, "step", "spawn")?;
    field_is(&first, "result", "error")?;
    field_is(&first, "error", CORRUPT_EXEC_ERROR)?;
    let again = m.expect_event_where("container.start", |e| e.is("name", "sensor"), lim.step * 2)?;
    field_is(&again, "error", CORRUPT_EXEC_ERROR)?;
    let started = |e: &Event| e.name == "container.start" && e.is("result", "ok");
    let read = |e: &Event| e.name == "container.log" && e.get("line").is_some_and(|l| l.contains("reading="));
    if m.events().iter().any(|e| e.is("name", "sensor") && (started(e) || read(e))) {
        return Err("sensor started or read its corrupted image without an error".into());
    }
    // berth's loop still runs: flaky's output keeps arriving afterwards.
    let after = m.lines().len();
    m.set_cursor(after);
    m.expect_event_where("container.log", |e| e.get("name") == Some("flaky") && e.get("line").is_some_and(|l| l.contains("alive")), lim.step)?;
    if m.exit_status().is_some() {
        return Err("the machine went down".into());
    }
    no_errors(&m, &["container.start:sensor", "container.failed:sensor"])
}

/// How much berth's RSS may grow between `boot.ready` and the hog's OOM
/// kill in the `limits` scenario.
const LIMITS_RSS_SLACK_KIB: u64 = 512;

/// pids.max stops a fork bomb, memory.max OOM-kills a hog alone (reported
/// with its name), a neighbour keeps answering, and each ended container's
/// cgroup is removed.
fn cgroup_limits(l: &dyn Launch) -> Result<(), String> {
    let lim = limits(l.arch());
    let mut m = l.boot(&BootSpec { variant: "limits", ..spec("limits", "none") })?;
    let boot = m.expect_event("boot.ready", lim.boot)?;
    let rss_ready: u64 = boot.get("berth_rss_kib").and_then(|v| v.parse().ok()).unwrap_or(0);
    let ready = m.cursor();
    let bomb = m.expect_event_where(
        "container.log",
        |e| e.get("name") == Some("bomb") && e.get("line").is_some_and(|l| l.starts_with("PROBE forkbomb stopped")),
        lim.boot,
    )?;
    let line = bomb.get("line").unwrap_or("");
    let forks: u32 = probe_field(line, "forks").and_then(|n| n.parse().ok()).unwrap_or(u32::MAX);
    if forks >= 32 || probe_field(line, "error") != Some("EAGAIN") {
        return Err(format!("fork bomb not stopped by pids.max=32: {line}"));
    }
    m.set_cursor(ready);
    let oom = m.expect_event_where("container.oom", |e| e.get("name") == Some("hog"), lim.boot)?;
    // berth's own memory is not what the hog took (16 MiB): starting three
    // containers costs berth 150 to 220 KiB (measured on the three boards),
    // the hog nothing.
    let rss_oom: u64 = oom.get("berth_rss_kib").and_then(|v| v.parse().ok()).unwrap_or(u64::MAX);
    if rss_ready == 0 || rss_oom > rss_ready + LIMITS_RSS_SLACK_KIB {
        return Err(format!("berth's RSS went from {rss_ready} KiB to {rss_oom} KiB across the OOM"));
    }
    m.set_cursor(ready);
    let hog = m.expect_event_where("reap", |e| e.get("name") == Some("hog"), lim.boot)?;
    field_is(&hog, "how", "signal")?;
    field_is(&hog, "code", "9")?;
    for name in ["hog", "bomb"] {
        m.set_cursor(ready);
        let e = m.expect_event_where("cgroup.remove", |e| e.get("name") == Some(name), lim.boot)?;
        field_is(&e, "result", "ok")?;
    }
    // The neighbour still answers after both.
    let after = m.lines().len();
    m.set_cursor(after);
    m.expect_event_where("container.log", |e| e.get("name") == Some("ticker") && e.get("line").is_some_and(|l| l.contains("reading=")), lim.step)?;
    if m.events().iter().any(|e| e.name == "container.oom" && e.get("name") != Some("hog")) {
        return Err("an OOM kill hit another container".into());
    }
    Ok(())
}

fn named<'a>(events: &'a [Event], ev: &str, name: &str) -> Vec<&'a Event> {
    events.iter().filter(|e| e.name == ev && e.get("name") == Some(name)).collect()
}

/// on-failure restarts with growing delays (measured between starts) up to
/// the crash-loop limit, then the container is failed; `always` restarts
/// after a zero exit; `never` does not restart; every ended run's cgroup is
/// removed and none is left at the end.
fn restarts(l: &dyn Launch) -> Result<(), String> {
    let lim = limits(l.arch());
    let mut m = l.boot(&BootSpec { variant: "restarts", ..spec("restarts", "none") })?;
    m.expect_event("boot.ready", lim.boot)?;
    let ready = m.cursor();
    m.expect_event_where("container.failed", |e| e.get("name") == Some("crasher"), lim.boot)?;
    m.set_cursor(ready);
    m.expect_event_where("container.failed", |e| e.get("name") == Some("always"), lim.boot)?;
    m.set_cursor(ready);
    m.expect_event_where("container.stopped", |e| e.get("name") == Some("never"), lim.boot)?;
    // Let anything that would wrongly come next show up.
    std::thread::sleep(std::time::Duration::from_secs(3));
    m.poll();
    let events = m.events();
    let delays: Vec<u32> = named(&events, "container.restart", "crasher").iter().filter_map(|e| e.get("after_ms")?.parse().ok()).collect();
    if delays != [200, 400, 800, 1000] {
        return Err(format!("crasher restart delays {delays:?}, want [200, 400, 800, 1000]"));
    }
    let starts: Vec<f64> = named(&events, "container.start", "crasher").iter().map(|e| e.t).collect();
    if starts.len() != 5 {
        return Err(format!("crasher started {} times, want 5 (1 + 4 restarts)", starts.len()));
    }
    // The measured delay from each exit to the next start is the policy's
    // delay plus the start itself: never sooner, and never later than one
    // start's worth of slack (a spawn under TCG; armv7 is the slowest).
    let exits: Vec<f64> = named(&events, "reap", "crasher").iter().map(|e| e.t).collect();
    let gaps: Vec<f64> = exits.iter().zip(starts.iter().skip(1)).map(|(x, s)| s - x).collect();
    if gaps.len() != 4 {
        return Err(format!("crasher exited {} times before its restarts, want 4: {gaps:?}", exits.len()));
    }
    let slack = if l.arch() == "armv7" { 1.5 } else { 0.75 };
    for (g, d) in gaps.iter().zip(&delays) {
        let want = f64::from(*d) / 1e3;
        if *g + 0.05 < want {
            return Err(format!("restart came {g:.3} s after the exit, sooner than the policy's {d} ms"));
        }
        if *g > want + slack {
            return Err(format!("restart came {g:.3} s after the exit, later than the policy's {d} ms + {slack} s"));
        }
    }
    if named(&events, "container.restart", "always").is_empty() {
        return Err("always was not restarted after a zero exit".into());
    }
    if named(&events, "container.start", "never").len() != 1 || !named(&events, "container.restart", "never").is_empty() {
        return Err("never was restarted".into());
    }
    let removes: Vec<&Event> = events.iter().filter(|e| e.name == "cgroup.remove").collect();
    // Runs of the release's containers (not the agent, orphans or host services).
    let exits = events.iter().filter(|e| e.name == "reap" && ["crasher", "always", "never"].contains(&e.get("name").unwrap_or(""))).count();
    if removes.len() != exits || removes.iter().any(|e| e.get("result") != Some("ok")) {
        return Err(format!("{} runs ended but {} cgroups removed cleanly", exits, removes.len()));
    }
    match removes.last().and_then(|e| e.get("left")) {
        Some("0") => Ok(()),
        other => Err(format!("cgroup directories left after the last run: {other:?}")),
    }
}

fn first<'a>(events: &'a [Event], ev: &str, name: &str) -> Result<&'a Event, String> {
    named(events, ev, name).into_iter().next().ok_or_else(|| format!("no {ev} event for {name}"))
}

fn ms_field(e: &Event, key: &str) -> Result<u64, String> {
    e.get(key).and_then(|v| v.parse().ok()).ok_or_else(|| format!("event {} lacks a number {key}", e.name))
}

/// Start order and readiness: `dependent` (after `base`) starts only once
/// `base` said READY=1 over its notify socket, 1.5 s after its start, and is
/// ready itself when its readiness command first succeeds. A container whose
/// keep-alives stop and one whose health command starts failing are both
/// declared unhealthy and restarted. At shutdown `dependent` is stopped
/// before `base`, and `stopper`, asked with its own signal, is killed after
/// its grace.
fn readiness(l: &dyn Launch) -> Result<(), String> {
    let lim = limits(l.arch());
    let mut m = l.boot(&BootSpec { variant: "readiness", ..spec("readiness", "poweroff-after-15") })?;
    m.expect_event("boot.ready", lim.boot)?;
    let ready = m.cursor();
    m.expect_event_where("container.ready", |e| e.get("name") == Some("dependent"), lim.boot)?;
    m.set_cursor(ready);
    m.expect_event_where("container.unhealthy", |e| e.get("name") == Some("wd"), lim.boot)?;
    m.set_cursor(ready);
    m.expect_event_where("container.unhealthy", |e| e.get("name") == Some("checked"), lim.boot)?;
    m.set_cursor(ready);
    expect_poweroff(&mut m, "SIGTERM", &lim)?;
    let events = m.events();

    let base_start = first(&events, "container.start", "base")?;
    let base_ready = first(&events, "container.ready", "base")?;
    field_is(base_ready, "by", "notify")?;
    // Its 1.5 s count from its exec, which berth learns (container.start)
    // a little later: up to START_SEEN of that is not early.
    const START_SEEN: f64 = 0.05;
    let after = ms_field(base_ready, "after_ms")? as f64 / 1e3;
    if after < 1.5 - START_SEEN || base_ready.t - base_start.t < 1.5 - START_SEEN {
        return Err(format!("base ready {:.3} s after its start, before its READY=1 at 1.5 s", base_ready.t - base_start.t));
    }
    let waiting = first(&events, "container.waiting", "dependent")?;
    field_is(waiting, "for", "base")?;
    let dep_start = first(&events, "container.start", "dependent")?;
    if dep_start.t < base_ready.t {
        return Err(format!("dependent started at {:.3}, before base was ready at {:.3}", dep_start.t, base_ready.t));
    }
    let dep_ready = first(&events, "container.ready", "dependent")?;
    field_is(dep_ready, "by", "command")?;
    // Its command succeeds once the container's init is 1 s old, counted
    // from the fork (`/proc/1/stat`), which berth makes only after base is
    // ready; `after_ms` counts from the exec, which a loaded host can push
    // most of that second later.
    if dep_ready.t - base_ready.t < 1.0 {
        return Err(format!(
            "dependent ready {:.3} s after base was ready (after_ms={}): before its readiness command (init older than 1 s) could succeed",
            dep_ready.t - base_ready.t,
            ms_field(dep_ready, "after_ms")?
        ));
    }

    for (name, reason) in [("wd", "watchdog"), ("checked", "check")] {
        let bad = first(&events, "container.unhealthy", name)?;
        field_is(bad, "reason", reason)?;
        let start = first(&events, "container.start", name)?;
        let ran = bad.t - start.t;
        // wd: ready at once, three 300 ms keep-alives, then 1 s of silence.
        // checked: healthy for 2 s, then two failed checks 0.5 s apart.
        if ran < 1.9 {
            return Err(format!("{name} declared unhealthy after only {ran:.3} s"));
        }
        let restart = named(&events, "container.restart", name);
        if restart.first().is_none_or(|r| r.t < bad.t) {
            return Err(format!("{name} was not restarted after it became unhealthy"));
        }
        if named(&events, "container.start", name).len() < 2 {
            return Err(format!("{name} did not start again"));
        }
    }
    // wd says READY=1 at once: its restarted run must be seen ready too,
    // even when the message comes before berth is done starting it.
    let wd_ready = named(&events, "container.ready", "wd");
    if wd_ready.len() < 2 || wd_ready.iter().any(|e| e.get("by") != Some("notify")) {
        return Err(format!("wd was ready by notify {} time(s), want its restarted run ready too (at least 2)", wd_ready.len()));
    }
    if named(&events, "container.unhealthy", "base").len() + named(&events, "container.unhealthy", "dependent").len() > 0 {
        return Err("a healthy container was declared unhealthy".into());
    }

    let stop = |name: &str| {
        events
            .iter()
            .find(|e| e.name == "container.stop" && e.get("name") == Some(name) && e.get("by") == Some("shutdown"))
            .ok_or_else(|| format!("{name} was not stopped at shutdown"))
    };
    let dep_reaped = events.iter().rev().find(|e| e.name == "reap" && e.get("name") == Some("dependent")).ok_or("dependent was never reaped")?;
    let base_stop = stop("base")?;
    if stop("dependent")?.t > base_stop.t || dep_reaped.t > base_stop.t {
        return Err("base was stopped before its dependent had ended".into());
    }
    let st = stop("stopper")?;
    field_is(st, "signal", "SIGUSR1")?;
    field_is(st, "grace_ms", "1000")?;
    let killed = first(&events, "container.kill", "stopper")?;
    let grace = killed.t - st.t;
    if !(0.9..3.0).contains(&grace) {
        return Err(format!("stopper was killed {grace:.3} s after its stop signal, want its 1 s grace"));
    }
    no_errors(&m, &[])
}

/// The hardware watchdog: armed at boot, petted by the loop so the machine
/// stays up for several timeouts; once the loop is wedged on purpose the
/// watchdog resets the machine (a second boot with no shutdown between).
fn watchdog(l: &dyn Launch) -> Result<(), String> {
    let lim = limits(l.arch());
    let mut m = l.boot(&BootSpec { allow_reboot: true, ..spec("watchdog", "wedge-after-35") })?;
    let open = m.expect_event("watchdog.open", lim.boot)?;
    field_is(&open, "result", "ok")?;
    let timeout: f64 = open.get("timeout_s").and_then(|v| v.parse().ok()).ok_or("watchdog.open has no timeout_s")?;
    let wedge = m.expect_event("debug.wedge", lim.boot + Duration::from_secs(60))?;
    field_is(&wedge, "watchdog", "1")?;
    let up = wedge.t - open.t;
    if up < 3.0 * timeout {
        return Err(format!("wedged after {up:.1} s, want more than three watchdog periods ({timeout} s)"));
    }
    let wedged_at = m.cursor();
    let second = m.expect_event_where("boot.start", |e| e.get("stage") == Some("initramfs"), lim.boot + Duration::from_secs(30))?;
    let pet_s = open.get("pet_ms").and_then(|v| v.parse::<f64>().ok()).ok_or("watchdog.open has no pet_ms")? / 1e3;
    if SOFTDOG_ARCHES.contains(&l.arch()) {
        // The kernel's software watchdog says when it fires, on the same
        // clock as berth's events: the timing is the guest's own.
        let lines = m.lines();
        let between = lines.get(wedged_at..m.cursor().min(lines.len())).unwrap_or(&[]);
        let fired =
            softdog_fired_at(between).ok_or("no `softdog: Initiating system reboot` line before the second boot: the reset did not come from the watchdog")?;
        judge_reset(fired - wedge.t, timeout, pet_s, SOFTDOG_SLACK_S)?;
    } else {
        let (Some(w), Some(b)) = (m.arrival_of("ev=debug.wedge", 0), m.arrival_of("ev=boot.start", wedged_at)) else {
            return Err("no arrival time for the wedge or the second boot".into());
        };
        // The reset: the second boot's first line, less the kernel's own uptime then.
        let reset_after = b.saturating_duration_since(w).as_secs_f64() - second.t;
        judge_reset(reset_after, timeout, pet_s, RESET_SLACK_S)?;
    }
    if let Some(p) = m.lines().iter().find(|l| l.contains("Kernel panic") || l.contains("end Kernel panic")) {
        return Err(format!("the kernel panicked: {p}"));
    }
    m.expect_line("AGENT action=after-reset", lim.boot)?;
    expect_poweroff(&mut m, "SIGTERM", &lim)?;
    let events = m.events();
    let boots: Vec<usize> = events.iter().enumerate().filter(|(_, e)| e.name == "boot.start" && e.get("stage") == Some("initramfs")).map(|(i, _)| i).collect();
    let Some(&second) = boots.get(1) else {
        return Err("no second boot".into());
    };
    if events.iter().take(second).any(|e| e.name == "shutdown.begin") {
        return Err("the machine shut down by itself instead of being reset by the watchdog".into());
    }
    if events.iter().any(|e| e.name == "debug.unwedged") {
        return Err("the loop came back from the wedge before any reset".into());
    }
    Ok(())
}

/// Host-side slack of the reset timing (a hardware watchdog, seen from the
/// host): before, and after (QEMU's reset to the kernel's first instant and
/// lines reaching the host late). A panic's reboot comes within a second.
const RESET_SLACK_S: (f64, f64) = (1.5, 5.0);

/// The boards of these architectures name the kernel's `softdog` as their
/// watchdog (see board-configs): its reset is timed from its own line.
const SOFTDOG_ARCHES: [&str; 2] = ["aarch64", "armv7"];

/// Slack of a softdog reset timed on the guest's clock: the hrtimer's
/// delivery under emulation, before and after.
const SOFTDOG_SLACK_S: (f64, f64) = (0.3, 1.0);

/// The kernel's timestamp (seconds since boot) of softdog's reboot line
/// among `lines`, e.g. `[   52.558537] softdog: Initiating system reboot`.
pub fn softdog_fired_at(lines: &[String]) -> Option<f64> {
    lines.iter().find_map(|l| {
        let (stamp, text) = l.trim_start().strip_prefix('[')?.split_once(']')?;
        (text.trim() == "softdog: Initiating system reboot").then_some(())?;
        stamp.trim().parse().ok()
    })
}

/// A watchdog reset comes `timeout` after the last pet, which was at most
/// `pet` before the wedge: `reset_after` (seconds from the wedge to the
/// reset) must lie in that window, give or take `slack` (before, after).
/// A panic's immediate reboot comes far sooner.
pub fn judge_reset(reset_after: f64, timeout: f64, pet: f64, slack: (f64, f64)) -> Result<(), String> {
    let (lo, hi) = (timeout - pet - slack.0, timeout + slack.1);
    if (lo..=hi).contains(&reset_after) {
        Ok(())
    } else {
        Err(format!("the reset came {reset_after:.1} s after the wedge, want {lo:.1}..={hi:.1} s (watchdog timeout {timeout} s, pets every {pet:.1} s)"))
    }
}

/// A free TCP port on the host's loopback (for QEMU to forward).
fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("free port: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// One HTTP/1.1 GET on the host's loopback: (status code, body).
fn http_get(port: u16, path: &str) -> Result<(u16, String), String> {
    http_get_head(port, path).map(|(code, _, body)| (code, body))
}

/// [`http_get`] with the reply's head: (status code, head, body).
fn http_get_head(port: u16, path: &str) -> Result<(u16, String, String), String> {
    use std::io::{Read, Write};
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes()).map_err(|e| format!("send: {e}"))?;
    let mut reply = Vec::new();
    s.take(1 << 20).read_to_end(&mut reply).map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&reply);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| format!("no HTTP reply: {text:?}"))?;
    let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or_else(|| format!("bad status line: {head:?}"))?;
    Ok((code, head.to_string(), body.to_string()))
}

/// The demo's status page, fetched from the host through QEMU's port
/// forwarding: `/status.json` lists every container of the release (and
/// the `net` service) with a state, the release's version and key id, and
/// `status-web` itself running and ready; `/` shows each container in its
/// table; `/metrics` parses as Prometheus text with berth's families and
/// every container. `status-web` reads berth's read-only status view (it
/// has no control socket).
fn status_page(l: &dyn Launch) -> Result<(), String> {
    use serde_json::Value;
    let lim = limits(l.arch());
    let port = free_port()?;
    let mut m = l.boot(&BootSpec { http_port: Some(port), ..spec("status-page", "none") })?;
    m.expect_event("boot.ready", lim.boot)?;
    let ready = m.cursor();
    let names = l.containers();
    for name in &names {
        m.set_cursor(ready);
        let e = m.expect_event_where("container.start", |e| e.get("name") == Some(name.as_str()), lim.step)?;
        field_is(&e, "result", "ok")?;
    }
    let (version, key_id) = l.release();
    let deadline = std::time::Instant::now() + lim.boot;
    let mut last;
    let (v, body) = loop {
        m.poll();
        if m.exit_status().is_some() {
            return Err(format!("the machine went down: {:?}", m.tail(20)));
        }
        match http_get(port, "/status.json") {
            Ok((200, body)) => {
                // Read with a JSON parser of its own, not the page's.
                let v: Value = serde_json::from_str(&body).map_err(|e| format!("/status.json: {e}: {body}"))?;
                let list = v["containers"].as_array().cloned().unwrap_or_default();
                let find = |n: &str| list.iter().find(|c| c["name"] == n).cloned();
                let web_up = find("status-web").is_some_and(|c| c["state"] == "running" && c["ready"] == true);
                let settled = list.iter().all(|c| expected_state(c["name"].as_str().unwrap_or("")).iter().any(|s| c["state"] == *s));
                if names.iter().all(|n| find(n).is_some()) && web_up && settled {
                    break (v, body);
                }
                last = body;
            }
            Ok((code, body)) => last = format!("HTTP {code}: {body}"),
            Err(e) => last = e,
        }
        if std::time::Instant::now() > deadline {
            return Err(format!("no complete status page within {:?}; last: {last}", lim.boot));
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    if v["release"]["version"] != version || v["release"]["key_id"] != key_id.as_str() || v["release"]["phase"] != "committed" {
        return Err(format!("release shown {}, want version {version} key {key_id} committed", v["release"]));
    }
    let list = v["containers"].as_array().cloned().unwrap_or_default();
    for c in &list {
        let name = c["name"].as_str().unwrap_or("");
        let known = match c["kind"].as_str() {
            Some("container") => names.iter().any(|n| n == name),
            Some("service") => name == "net",
            _ => false,
        };
        if !known {
            return Err(format!("entry not in the release or the board: {c}"));
        }
        let state = c["state"].as_str().unwrap_or("");
        if !expected_state(name).contains(&state) {
            return Err(format!("{name} is {state:?}, want one of {:?}: {c}", expected_state(name)));
        }
        if (state == "running") != c["uptime_s"].is_number() {
            return Err(format!("uptime shown for a run that is not running, or missing: {c}"));
        }
    }
    if list.len() != names.len() + 1 {
        return Err(format!("{} entries, want the {} containers and the net service: {body}", list.len(), names.len()));
    }
    let (code, html) = http_get(port, "/")?;
    if code != 200 || !html.contains(&format!("release {version} (")) {
        return Err(format!("/ answered {code}: {html}"));
    }
    for n in &names {
        let row = format!("<tr><td>{n}</td><td>container</td><td>");
        if !html.contains(&row) {
            return Err(format!("/ has no row for {n}: {html}"));
        }
    }
    status_metrics(port, version, &names)?;
    if http_get(port, "/nope")?.0 != 404 {
        return Err("an unknown path did not answer 404".into());
    }
    // The page's own requests reached status-web's log: it is the server.
    m.expect_event_where("container.log", |e| e.get("name") == Some("status-web") && e.get("line") == Some("status-web: GET / 200"), lim.step)?;
    no_errors(&m, &[])
}

/// The page's `/metrics`: Prometheus text (read by the tests' own parser)
/// with berth's families, the release's version and each container in a
/// state the status page may show.
fn status_metrics(port: u16, version: u64, names: &[String]) -> Result<(), String> {
    let (code, head, body) = http_get_head(port, "/metrics")?;
    let kind = head.lines().find_map(|l| l.strip_prefix("Content-Type: ")).unwrap_or("");
    if code != 200 || !kind.starts_with("text/plain; version=0.0.4") {
        return Err(format!("/metrics answered {code} ({kind:?}): {body}"));
    }
    let states = crate::promtext::check_demo(&body, version, names).map_err(|e| format!("/metrics: {e}: {body}"))?;
    for (name, state) in &states {
        if !expected_state(name).contains(&state.as_str()) {
            return Err(format!("/metrics: {name} is {state:?}, want one of {:?}", expected_state(name)));
        }
    }
    Ok(())
}

/// The states the status page may show for a demo container or the `net`
/// service once the demo is up: `flaky` crashes on purpose and is
/// restarted for ever (running, or waiting for its next start); `net` has
/// done its work; every other one runs.
pub fn expected_state(name: &str) -> &'static [&'static str] {
    match name {
        "flaky" => &["running", "waiting", "starting"],
        // `berth net` configures the network and exits 0.
        "net" => &["stopped"],
        _ => &["running"],
    }
}

/// A TCP listener on the host's loopback, which QEMU's user network shows
/// the guest as 10.0.2.2: answers one line to the agent's one line, and
/// hands over what the agent said.
fn gateway_listener() -> Result<(u16, std::sync::mpsc::Receiver<String>), String> {
    use std::io::{BufRead, BufReader, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("listener: {e}"))?;
    let port = l.local_addr().map_err(|e| e.to_string())?.port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // One connection; the thread ends with the test process otherwise.
        if let Ok((s, _)) = l.accept() {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let mut line = String::new();
            let mut r = BufReader::new(&s);
            let _ = r.read_line(&mut line);
            let _ = (&s).write_all(b"berth-harness ok\n");
            let _ = tx.send(line.trim_end().to_string());
        }
    });
    Ok((port, rx))
}

/// Unix seconds this harness's SNTP server says it is at its start
/// (2031-05-17 12:00:00 UTC: years from any clock the guest could have).
pub const SNTP_BASE_UNIX: u64 = 1_936_872_000;

/// What the harness's SNTP server did: (requests answered, unix seconds
/// of the last answer, requests refused as malformed).
pub type SntpSeen = std::sync::Arc<std::sync::Mutex<(u32, u64, u32)>>;

/// An SNTP server on the host's loopback for the guest's `berth time`,
/// written from RFC 4330 (not from berth's client): a client request is 48
/// bytes whose first byte is 0x23 (version 4, mode 3); the answer is a
/// stratum-1 server's (0x24), echoing the request's transmit timestamp as
/// its originate, with [`SNTP_BASE_UNIX`] plus the seconds since it started
/// as both receive and transmit time.
fn sntp_server() -> Result<(u16, SntpSeen), String> {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("sntp server: {e}"))?;
    let port = sock.local_addr().map_err(|e| e.to_string())?.port();
    let seen: SntpSeen = Default::default();
    let out = seen.clone();
    let start = std::time::Instant::now();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let mut s = out.lock().unwrap_or_else(|p| p.into_inner());
            if n != 48 || buf[0] != 0x23 {
                s.2 += 1;
                continue;
            }
            let unix = SNTP_BASE_UNIX + start.elapsed().as_secs();
            let mut r = [0u8; 48];
            r[0] = 0x24;
            r[1] = 1;
            r[12..16].copy_from_slice(b"GPS\0");
            r[24..32].copy_from_slice(&buf[40..48]);
            let ntp = ((unix + 2_208_988_800) & 0xFFFF_FFFF) << 32;
            for at in [16, 32, 40] {
                r[at..at + 8].copy_from_slice(&ntp.to_be_bytes());
            }
            if sock.send_to(&r, from).is_ok() {
                s.0 += 1;
                s.1 = unix;
            }
        }
    });
    Ok((port, seen))
}

/// `berth time` (a service of the `dhcp` variant) set the clock from the
/// harness's SNTP server: its `time.sync` line says stratum 1, the clock
/// stepped, and the time read after the step (`unix`) is the one the
/// server gave, within the 2 s the step and the line take; the server saw
/// no malformed request.
fn check_time_sync(m: &mut Machine, port: u16, seen: &SntpSeen, lim: &Limits) -> Result<(), String> {
    let is_synced = |e: &Event| {
        e.get("name") == Some("time")
            && e.get("line").and_then(crate::event::parse_line).is_some_and(|i| i.name == "time.sync" && i.get("result") == Some("ok"))
    };
    let outer = m.expect_event_where("service.log", is_synced, lim.step + Duration::from_secs(30))?;
    let sync = crate::event::parse_line(outer.get("line").unwrap_or("")).ok_or("time.sync line does not parse")?;
    field_is(&sync, "server", &format!("10.0.2.2:{port}"))?;
    field_is(&sync, "stratum", "1")?;
    field_is(&sync, "step", "set")?;
    let (answered, served, malformed) = *seen.lock().unwrap_or_else(|p| p.into_inner());
    let unix: u64 = sync.get("unix").and_then(|v| v.parse().ok()).ok_or("time.sync has no unix")?;
    if answered == 0 || malformed != 0 || !(served..=served + 2).contains(&unix) {
        return Err(format!("time.sync unix={unix}; the server answered {answered} request(s), last at {served}, refused {malformed} malformed"));
    }
    Ok(())
}

fn index_of(events: &[Event], pred: impl Fn(&Event) -> bool) -> Option<usize> {
    events.iter().position(pred)
}

/// Host services: `net` (from the board) runs before any container, sets
/// eth0 up (address, default route, a TCP exchange through QEMU's gateway
/// with this harness) and exits 0; `berthctl` lists and restarts it. A
/// crash-looping service is restarted with growing delays and then failed;
/// a long-running one is stopped at shutdown only once the containers are
/// down, and nothing restarts during the shutdown.
fn services(l: &dyn Launch) -> Result<(), String> {
    let lim = limits(l.arch());
    let (port, said) = gateway_listener()?;
    let mut m = l.boot(&BootSpec { variant: "services", cmdline: format!("berth.test.net-port={port}"), ..spec("services", "poweroff-after-3") })?;
    expect_boot(&mut m, &lim)?;
    let ready = m.cursor();
    let net = m.expect_event_where("service.start", |e| e.get("name") == Some("net"), lim.step)?;
    field_is(&net, "result", "ok")?;
    field_is(&net, "path", "/sbin/berth")?;
    let pid = net.get("pid").unwrap_or("").to_string();
    let reap = m.expect_event_where("reap", |e| e.get("name") == Some("net"), lim.step)?;
    field_is(&reap, "pid", &pid)?;
    field_is(&reap, "how", "exit")?;
    field_is(&reap, "code", "0")?;
    let stopped = m.expect_event_where("service.stopped", |e| e.get("name") == Some("net"), lim.step)?;
    if stopped.get("by").is_some() {
        return Err(format!("net stopped by {:?}, want by its policy after exit 0", stopped.get("by")));
    }
    m.set_cursor(ready);
    for check in ["net", "berthctl-service", "service-rt-signal"] {
        agent_pass(&mut m, check, &lim)?;
    }
    match said.recv_timeout(Duration::from_secs(5)) {
        Ok(line) if line == "berth-agent from 10.0.2.15" => {}
        other => return Err(format!("the harness's listener at 10.0.2.2:{port} heard {other:?}")),
    }
    m.expect_line("AGENT done", lim.step)?;
    expect_poweroff(&mut m, "SIGTERM", &lim)?;
    let events = m.events();

    // Services start before any container; net's steps went to the log.
    let first_service = index_of(&events, |e| e.name == "service.start").ok_or("no service.start")?;
    let first_container = index_of(&events, |e| e.name == "container.start").ok_or("no container.start")?;
    if first_service > first_container {
        return Err("a container started before the host services".into());
    }
    let steps: Vec<&str> = named(&events, "service.log", "net").iter().filter_map(|e| e.get("line")).filter(|l| l.contains("ev=net.step")).collect();
    // Two runs of four steps; the second finds the route in place (EEXIST).
    let done = |l: &&str| l.contains("result=ok") || l.contains("result=present");
    if steps.len() != 8 || !steps.iter().all(done) || !steps.get(7).is_some_and(|l| l.contains("step=route") && l.contains("result=present")) {
        return Err(format!("net's steps: {steps:?}"));
    }
    // berthctl restart net ran it a second time, to a clean exit.
    let net_runs: Vec<&Event> = events.iter().filter(|e| e.name == "reap" && e.get("name") == Some("net")).collect();
    if named(&events, "service.start", "net").len() != 2 || net_runs.len() != 2 || net_runs.iter().any(|e| e.get("code") != Some("0")) {
        return Err(format!(
            "net: {} starts, exits {:?}",
            named(&events, "service.start", "net").len(),
            net_runs.iter().map(|e| &e.fields).collect::<Vec<_>>()
        ));
    }

    // crashy: restarted after 100, 200, 400 ms, then failed.
    let delays: Vec<u32> = named(&events, "service.restart", "crashy").iter().filter_map(|e| e.get("after_ms")?.parse().ok()).collect();
    if delays != [100, 200, 400] {
        return Err(format!("crashy restart delays {delays:?}, want [100, 200, 400]"));
    }
    let failed = first(&events, "service.failed", "crashy")?;
    field_is(failed, "short_runs", "3")?;
    let starts: Vec<f64> = named(&events, "service.start", "crashy").iter().map(|e| e.t).collect();
    let exits: Vec<f64> = events.iter().filter(|e| e.name == "reap" && e.get("name") == Some("crashy")).map(|e| e.t).collect();
    let gaps: Vec<f64> = exits.iter().zip(starts.iter().skip(1)).map(|(x, s)| s - x).collect();
    if starts.len() != 4 || gaps.iter().zip(&delays).any(|(g, d)| *g + 0.05 < f64::from(*d) / 1e3) {
        return Err(format!("crashy: {} starts, gaps {gaps:?} vs delays {delays:?} ms", starts.len()));
    }

    // sleeper, killed by SIGRTMIN+3 (37): reaped with that signal's number
    // and started again, once, before the shutdown.
    let rt = events
        .iter()
        .position(|e| e.name == "reap" && e.get("name") == Some("sleeper") && e.get("how") == Some("signal"))
        .ok_or("sleeper's end by a signal was never reaped")?;
    field_is(&events[rt], "code", "37")?;
    if !events.iter().skip(rt).any(|e| e.name == "service.start" && e.get("name") == Some("sleeper")) {
        return Err("sleeper was not started again after SIGRTMIN+3".into());
    }

    // Shutdown: containers down, then the sleeper service, then the rest.
    let begin = index_of(&events, |e| e.name == "shutdown.begin").ok_or("no shutdown.begin")?;
    let last_container_reap = events
        .iter()
        .enumerate()
        .skip(begin)
        .filter(|(_, e)| e.name == "reap" && ["sensor", "flaky"].contains(&e.get("name").unwrap_or("")))
        .map(|(i, _)| i)
        .max()
        .ok_or("no container ended at shutdown")?;
    let stop = index_of(&events, |e| e.name == "service.stop" && e.get("name") == Some("sleeper") && e.get("by") == Some("shutdown"))
        .ok_or("sleeper was not stopped at shutdown")?;
    let sleeper_end = index_of(&events, |e| e.name == "service.stopped" && e.get("name") == Some("sleeper") && e.get("by") == Some("shutdown"))
        .ok_or("sleeper did not end at shutdown")?;
    let all = index_of(&events, |e| e.name == "signal.all" && e.get("signal") == Some("SIGTERM")).ok_or("no signal.all")?;
    if !(last_container_reap < stop && stop < sleeper_end && sleeper_end < all) {
        return Err(format!("shutdown order: last container reap {last_container_reap}, sleeper stop {stop}, sleeper end {sleeper_end}, signal.all {all}"));
    }
    if events.iter().skip(begin).any(|e| e.name == "service.start" || e.name == "service.restart") {
        return Err("a service was (re)started during the shutdown".into());
    }
    // crashy fails by design, once.
    no_errors(&m, &["service.failed:crashy"])
}

/// The static address of the `dhcp` variant's second card (eth1, /24).
pub const DHCP_STATIC_IP: &str = "192.168.7.1";

/// The events `net` printed (its `service.log` lines, parsed).
fn net_lines(events: &[Event]) -> Vec<Event> {
    named(events, "service.log", "net").iter().filter_map(|e| crate::event::parse_line(e.get("line")?)).collect()
}

/// DHCP on QEMU's user network: `net` sets the static eth1, then takes a
/// lease for eth0 from QEMU's server (10.0.2.15, router 10.0.2.2, 24 h) by
/// DISCOVER, REQUEST and ACK, applies it, and keeps running to renew it
/// (stopped only by the shutdown). The agent finds eth0's address and
/// default route and talks to this harness through the lease's router.
/// The lease's name server goes to `resolv.conf` (one `net.dns` line), and
/// `berth time` sets the clock from this harness's SNTP server.
fn dhcp(l: &dyn Launch) -> Result<(), String> {
    let lim = limits(l.arch());
    let (port, said) = gateway_listener()?;
    let (ntp_port, ntp_seen) = sntp_server()?;
    let cmdline = format!("berth.test.net-port={port} berth.test.dhcp-static={DHCP_STATIC_IP} berth.test.ntp-port={ntp_port}");
    let mut m = l.boot(&BootSpec { variant: "dhcp", cmdline, ..spec("dhcp", "poweroff") })?;
    expect_boot(&mut m, &lim)?;
    let ready = m.cursor();
    let is_bound = |e: &Event| {
        e.get("name") == Some("net")
            && e.get("line").and_then(crate::event::parse_line).is_some_and(|i| i.name == "net.dhcp" && i.get("state") == Some("bound"))
    };
    let outer = m.expect_event_where("service.log", is_bound, lim.step)?;
    let bound = crate::event::parse_line(outer.get("line").unwrap_or("")).ok_or("bound line does not parse")?;
    let want = [
        ("interface", "eth0"),
        ("address", "10.0.2.15"),
        ("netmask", "255.255.255.0"),
        ("router", "10.0.2.2"),
        ("dns", "10.0.2.3"),
        ("lease_s", "86400"),
        ("t1_s", "43200"),
        ("t2_s", "75600"),
        ("server", "10.0.2.2"),
        ("result", "ok"),
    ];
    for (k, v) in want {
        field_is(&bound, k, v)?;
    }
    m.set_cursor(ready);
    check_time_sync(&mut m, ntp_port, &ntp_seen, &lim)?;
    m.set_cursor(ready);
    for check in ["net", "net-static"] {
        agent_pass(&mut m, check, &lim)?;
    }
    match said.recv_timeout(Duration::from_secs(5)) {
        Ok(line) if line == "berth-agent from 10.0.2.15" => {}
        other => return Err(format!("the harness's listener at 10.0.2.2:{port} heard {other:?}")),
    }
    expect_poweroff(&mut m, "SIGTERM", &lim)?;
    let events = m.events();

    let lines = net_lines(&events);
    let steps = |iface: &str| -> Vec<(String, String)> {
        lines
            .iter()
            .filter(|e| e.name == "net.step" && e.get("interface") == Some(iface))
            .map(|e| (e.get("step").unwrap_or("").to_string(), e.get("result").unwrap_or("").to_string()))
            .collect()
    };
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> { v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect() };
    if steps("eth1") != pairs(&[("address", "ok"), ("netmask", "ok"), ("up", "ok")]) {
        return Err(format!("static eth1 steps: {:?}", steps("eth1")));
    }
    if steps("eth0") != pairs(&[("address", "ok"), ("netmask", "ok"), ("up", "ok"), ("route", "ok")]) {
        return Err(format!("eth0 lease steps: {:?}", steps("eth0")));
    }
    // The exchange, in order, before the lease.
    let dhcp: Vec<String> =
        lines.iter().filter(|e| e.name == "net.dhcp").map(|e| format!("{}/{}", e.get("state").unwrap_or(""), e.get("step").unwrap_or("-"))).collect();
    let pos = |s: &str| dhcp.iter().position(|d| d == s);
    match (pos("init/start"), pos("selecting/discover"), pos("requesting/request"), pos("bound/-")) {
        (Some(a), Some(b), Some(c), Some(d)) if a < b && b < c && c < d => {}
        _ => return Err(format!("net.dhcp steps {dhcp:?}, want start, discover, request, bound in order")),
    }
    // The lease's one name server (QEMU's 10.0.2.3) went to resolv.conf.
    let dns: Vec<String> =
        lines.iter().filter(|e| e.name == "net.dns").map(|e| format!("{}/{}", e.get("servers").unwrap_or("-"), e.get("result").unwrap_or("-"))).collect();
    if dns != ["1/ok"] {
        return Err(format!("net.dns lines {dns:?}, want one: servers=1 result=ok"));
    }
    if let Some(bad) = lines.iter().find(|e| e.get("result") == Some("error") || e.name == "net.failed") {
        return Err(format!("net reported {} {:?}", bad.name, bad.fields));
    }
    // net held the lease until the shutdown stopped it: one run, no exit before.
    let begin = index_of(&events, |e| e.name == "shutdown.begin").ok_or("no shutdown.begin")?;
    if named(&events, "service.start", "net").len() != 1 || events.iter().take(begin).any(|e| e.name == "reap" && e.get("name") == Some("net")) {
        return Err("net did not keep running until the shutdown".into());
    }
    if !events.iter().skip(begin).any(|e| e.name == "service.stopped" && e.get("name") == Some("net") && e.get("by") == Some("shutdown")) {
        return Err("net was not stopped by the shutdown".into());
    }
    no_errors(&m, &[])
}

/// berth's resident memory stays flat across 1,000 restarts of a
/// crash-looping container: measured after 50 restarts and after the
/// 1,000th (when the crash-loop limit marks it failed).
fn rss(l: &dyn Launch) -> Result<(), String> {
    const SLACK_KIB: u64 = 64;
    let lim = limits(l.arch());
    let mut m = l.boot(&BootSpec { variant: "rss", ..spec("rss", "none") })?;
    m.expect_event("boot.ready", lim.boot)?;
    let ready = m.cursor();
    let rss = |e: &Event| -> Result<u64, String> { ms_field(e, "berth_rss_kib") };
    let early = m.expect_event_where("container.restart", |e| e.get("name") == Some("looper") && e.get("attempt") == Some("50"), lim.boot)?;
    let failed = m.expect_event_where("container.failed", |e| e.get("name") == Some("looper"), Duration::from_secs(600))?;
    field_is(&failed, "restarts", "1000")?;
    let (a, b) = (rss(&early)?, rss(&failed)?);
    m.set_cursor(ready);
    let events = m.events();
    let marks: Vec<String> = named(&events, "container.restart", "looper")
        .iter()
        .filter_map(|e| e.get("berth_rss_kib").map(|v| format!("{}:{v}", e.get("attempt").unwrap_or("?"))))
        .collect();
    println!("{}/rss: berth_rss_kib after 50 restarts {a}, after 1000 {b}; {:.1} s for 950 restarts; marks {marks:?}", l.arch(), failed.t - early.t);
    if b > a + SLACK_KIB {
        return Err(format!("berth's RSS grew from {a} KiB to {b} KiB across 950 restarts (slack {SLACK_KIB} KiB): {marks:?}"));
    }
    // looper is marked failed at its limit, by design.
    no_errors(&m, &["container.failed:looper"])
}

/// A few hundred malformed control frames (random bytes, oversized and
/// truncated frames, wrong versions, cut prefixes) with an idle client
/// connected: berth keeps answering `berthctl status` and stays the same
/// PID 1, and powers off cleanly after.
fn ctl_fuzz(l: &dyn Launch) -> Result<(), String> {
    let lim = limits(l.arch());
    let mut m = l.boot(&BootSpec { cmdline: "berth.test.fuzz=1".into(), ..spec("ctl-fuzz", "poweroff") })?;
    expect_boot(&mut m, &lim)?;
    agent_pass(&mut m, "ctl-fuzz", &Limits { step: lim.step * 4, ..limits(l.arch()) })?;
    m.expect_line("AGENT done", lim.step)?;
    expect_poweroff(&mut m, "SIGTERM", &lim)?;
    no_errors(&m, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(name: &str, result: &str) -> String {
        format!("PROBE name={name} result={result} detail=x")
    }

    #[test]
    fn the_probe_summary_must_count_every_attempt() {
        let mut lines: Vec<String> = (0..PROBE_ATTEMPTS).map(|i| line(&format!("a{i}"), "blocked")).collect();
        lines.push(line("w", "works"));
        let good = format!("PROBE done blocked={PROBE_ATTEMPTS} escaped=0 error=0 works=1 broken=0");
        assert_eq!(judge_probe_summary("x86_64", "p", &lines, &good), Ok(()));
        let escaped = good.replace("escaped=0", "escaped=1");
        assert!(judge_probe_summary("x86_64", "p", &lines, &escaped).unwrap_err().contains("summary"));
        assert!(judge_probe_summary("x86_64", "p", &lines, "").is_err());
        lines.remove(0);
        assert!(judge_probe_summary("x86_64", "p", &lines, &good).unwrap_err().contains(&format!("{} attempts reported blocked", PROBE_ATTEMPTS - 1)));
        // One attempt fewer on the ARM boards.
        let arm = format!("PROBE done blocked={} escaped=0 error=0 works=1 broken=0", PROBE_ATTEMPTS - 1);
        assert_eq!(judge_probe_summary("aarch64", "p", &lines, &arm), Ok(()));
    }

    #[test]
    fn the_demo_names_its_memory_limited_containers() {
        assert_eq!(memory_limited_demo().unwrap(), ["status-web", "uptime"]);
    }

    #[test]
    fn only_a_reset_a_watchdog_period_after_the_wedge_passes() {
        assert_eq!(judge_reset(9.0, 10.0, 3.3, RESET_SLACK_S), Ok(()));
        assert_eq!(judge_reset(6.7, 10.0, 3.3, RESET_SLACK_S), Ok(()));
        assert!(judge_reset(0.4, 10.0, 3.3, RESET_SLACK_S).unwrap_err().contains("0.4 s after the wedge"));
        assert!(judge_reset(13.3, 10.0, 3.3, RESET_SLACK_S).is_ok());
        assert!(judge_reset(15.5, 10.0, 3.3, RESET_SLACK_S).is_err());
        // On the guest's clock the window is tight: 9.0 s is right, 11.2 s
        // (a reset that came late) and 6.0 s (too soon) are not.
        assert_eq!(judge_reset(9.0, 10.0, 3.3, SOFTDOG_SLACK_S), Ok(()));
        assert!(judge_reset(11.2, 10.0, 3.3, SOFTDOG_SLACK_S).is_err());
        assert!(judge_reset(6.0, 10.0, 3.3, SOFTDOG_SLACK_S).is_err());
        let lines = ["BERTH t=43.5 ev=debug.wedge", "[   52.558537] softdog: Initiating system reboot"].map(String::from);
        assert_eq!(softdog_fired_at(&lines), Some(52.558537));
        assert_eq!(softdog_fired_at(&lines[..1]), None);
    }

    #[test]
    fn errors_are_known_by_level_and_named_expectations() {
        let ev = |t: &str| crate::event::parse_line(t).unwrap();
        let events = vec![
            ev("BERTH t=1.0 ev=container.failed name=task short_runs=0 level=error"),
            ev("BERTH t=1.1 ev=release.rollback cause=x level=warn"),
            ev("BERTH t=1.2 ev=mount target=/x result=ok"),
            ev("BERTH t=1.3 ev=service.log name=receive line=\"BERTH t=1.3 ev=push.refused reason=x level=error\""),
        ];
        assert_eq!(unexpected_errors(&events, &["container.failed:task", "push.refused"]), Vec::<String>::new());
        let left = unexpected_errors(&events, &["container.failed:meter"]);
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(left[0].starts_with("container.failed ") && left[1].starts_with("push.refused "));
        assert_eq!(unexpected_errors(&events, &["container.failed"]).len(), 1);
    }
}
