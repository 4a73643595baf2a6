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

/// Every scenario for one architecture, named `<arch>/<scenario>`.
pub fn all(l: Arc<dyn Launch>) -> Vec<Case> {
    type Check = fn(&dyn Launch) -> Result<(), String>;
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
    let mut cases: Vec<Case> = table
        .into_iter()
        .filter(|(name, _)| arch == "x86_64" || !only_x86.contains(name))
        .map(|(name, f)| {
            let l = Arc::clone(&l);
            case(format!("{arch}/{name}"), move || f(l.as_ref()))
        })
        .collect();
    cases.extend(crate::loopcheck::cases(Arc::clone(&l)));
    cases.extend(crate::budgets::cases(Arc::clone(&l)));
    cases.extend(crate::waits::cases(Arc::clone(&l)));
    cases.extend(crate::output::cases(Arc::clone(&l)));
    cases.extend(crate::checkwindow::cases(Arc::clone(&l)));
    cases.extend(crate::updates::cases(Arc::clone(&l)));
    cases.extend(crate::volumes::cases(Arc::clone(&l)));
    cases.extend(crate::trials::cases(Arc::clone(&l)));
    cases.extend(crate::inboxfull::cases(Arc::clone(&l)));
    cases.extend(crate::recovery::cases(Arc::clone(&l)));
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

pub(crate) fn no_errors(m: &Machine, allowed: &[&str]) -> Result<(), String> {
    let bad: Vec<String> = m
        .events()
        .into_iter()
        .filter(|e| e.get("result") == Some("error") || e.name == "boot.failed")
        .filter(|e| !allowed.iter().any(|a| e.get("name") == Some(a)))
        .map(|e| format!("{} {:?}", e.name, e.fields))
        .collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!("unexpected error events: {bad:?}"))
    }
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
    no_errors(&m, &[&missing])
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
    let refused: Vec<&str> = refused.iter().map(String::as_str).collect();
    no_errors(&m, &refused)
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
    Ok(())
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

/// A device without a release says so and still boots.
fn no_release(l: &dyn Launch) -> Result<(), String> {
    let lim = limits(l.arch());
    let mut m = l.boot(&BootSpec { variant: "no-release", ..spec("no-release", "poweroff") })?;
    m.expect_event("release.none", lim.boot)?;
    m.expect_event("boot.ready", lim.step)?;
    m.expect_line("AGENT done", lim.step)?;
    expect_poweroff(&mut m, "SIGTERM", &lim)?;
    no_errors(&m, &[])
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
        let blocked = lines.iter().filter(|l| probe_field(l, "result") == Some("blocked")).count();
        if blocked < 30 {
            return Err(format!("{name}: only {blocked} escapes tried and blocked"));
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

/// One corrupted byte in the `sensor` image: reading it fails inside that
/// container only (it cannot start or dies); `flaky` runs; berth stays up and
/// powers off cleanly.
fn corrupt_image(l: &dyn Launch) -> Result<(), String> {
    let lim = limits(l.arch());
    let mut m = l.boot(&BootSpec { variant: "corrupt-image", ..spec("corrupt-image", "none") })?;
    m.expect_event("boot.ready", lim.boot)?;
    let ready = m.cursor();
    m.expect_event_where("container.log", |e| e.get("name") == Some("flaky") && e.get("line").is_some_and(|l| l.starts_with("flaky: up")), lim.step)?;
    m.set_cursor(ready);
    // sensor either fails to start (execve reads the corrupt block) or dies.
    let failed = |e: &Event| {
        (e.name == "container.start" && e.get("name") == Some("sensor") && e.get("result") == Some("error"))
            || (e.name == "reap" && e.get("name") == Some("sensor") && (e.get("how") == Some("signal") || e.get("code") != Some("0")))
    };
    let deadline = std::time::Instant::now() + lim.step;
    loop {
        m.poll();
        if let Some(e) = m.events().iter().find(|e| failed(e)) {
            let text = format!("{} {:?}", e.name, e.fields);
            if e.name == "container.start" && !text.contains("EIO") && !text.contains("Input/output") {
                return Err(format!("sensor failed, but not with an I/O error: {text}"));
            }
            break;
        }
        if m.events().iter().any(|e| e.name == "container.log" && e.get("name") == Some("sensor") && e.get("line").is_some_and(|l| l.contains("reading="))) {
            return Err("sensor read its corrupted image without an error".into());
        }
        if std::time::Instant::now() > deadline {
            return Err(format!("sensor neither failed nor ran: {:?}", m.tail(30)));
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // berth's loop still runs: flaky's output keeps arriving afterwards.
    let after = m.lines().len();
    m.set_cursor(after);
    m.expect_event_where("container.log", |e| e.get("name") == Some("flaky") && e.get("line").is_some_and(|l| l.contains("alive")), lim.step)?;
    if m.exit_status().is_some() {
        return Err("the machine went down".into());
    }
    Ok(())
}

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
    // containers costs berth some hundreds of KiB, the hog none.
    let rss_oom: u64 = oom.get("berth_rss_kib").and_then(|v| v.parse().ok()).unwrap_or(u64::MAX);
    if rss_ready == 0 || rss_oom > rss_ready + 4096 {
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
    if ms_field(dep_ready, "after_ms")? < 1000 {
        return Err("dependent ready before its readiness command could succeed".into());
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
    m.expect_event_where("boot.start", |e| e.get("stage") == Some("initramfs"), lim.boot + Duration::from_secs(30))?;
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

/// A free TCP port on the host's loopback (for QEMU to forward).
fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("free port: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// One HTTP/1.1 GET on the host's loopback: (status code, body).
fn http_get(port: u16, path: &str) -> Result<(u16, String), String> {
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
    Ok((code, body.to_string()))
}

/// The demo's status page, fetched from the host through QEMU's port
/// forwarding: `/status.json` lists every container of the release (and
/// the `net` service) with a state, the release's version and key id, and
/// `status-web` itself running and ready; `/` shows each container in its
/// table. `status-web` reads berth's read-only status view (it has no
/// control socket).
fn status_page(l: &dyn Launch) -> Result<(), String> {
    use berth_demo_apps::json::Value;
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
    let states = ["waiting", "starting", "updating", "running", "stopping", "stopped", "failed"];
    let deadline = std::time::Instant::now() + lim.boot;
    let mut last;
    let status = loop {
        m.poll();
        if m.exit_status().is_some() {
            return Err(format!("the machine went down: {:?}", m.tail(20)));
        }
        match http_get(port, "/status.json") {
            Ok((200, body)) => {
                let v = berth_demo_apps::json::parse(&body).map_err(|e| format!("/status.json: {e}: {body}"))?;
                let list = match v.get("containers") {
                    Some(Value::Arr(list)) => list.clone(),
                    _ => return Err(format!("/status.json has no containers list: {body}")),
                };
                let find = |n: &str| list.iter().find(|c| c.get("name") == Some(&Value::Str(n.into()))).cloned();
                let web_up =
                    find("status-web").is_some_and(|c| c.get("state") == Some(&Value::Str("running".into())) && c.get("ready") == Some(&Value::Bool(true)));
                if names.iter().all(|n| find(n).is_some()) && web_up {
                    break (v, list, body);
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
    let (v, list, body) = status;
    let release = v.get("release").ok_or_else(|| format!("no release: {body}"))?;
    if release.get("version") != Some(&Value::Num(version as f64)) || release.get("key_id") != Some(&Value::Str(key_id.clone())) {
        return Err(format!("release shown {release:?}, want version {version} key {key_id}"));
    }
    for c in &list {
        let state = match c.get("state") {
            Some(Value::Str(s)) => s.as_str(),
            _ => "",
        };
        if !states.contains(&state) {
            return Err(format!("entry without a valid state: {c:?}"));
        }
        let kind = c.get("kind");
        let known = match c.get("name") {
            Some(Value::Str(n)) if kind == Some(&Value::Str("container".into())) => names.contains(n),
            Some(Value::Str(n)) => kind == Some(&Value::Str("service".into())) && n == "net",
            _ => false,
        };
        if !known {
            return Err(format!("entry not in the release or the board: {c:?}"));
        }
        let running = state == "running";
        if running != matches!(c.get("uptime_s"), Some(Value::Num(_))) {
            return Err(format!("uptime shown for a run that is not running, or missing: {c:?}"));
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
    if http_get(port, "/nope")?.0 != 404 {
        return Err("an unknown path did not answer 404".into());
    }
    // The page's own requests reached status-web's log: it is the server.
    m.expect_event_where("container.log", |e| e.get("name") == Some("status-web") && e.get("line") == Some("status-web: GET / 200"), lim.step)?;
    no_errors(&m, &[])
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
    no_errors(&m, &[])
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
fn dhcp(l: &dyn Launch) -> Result<(), String> {
    let lim = limits(l.arch());
    let (port, said) = gateway_listener()?;
    let cmdline = format!("berth.test.net-port={port} berth.test.dhcp-static={DHCP_STATIC_IP}");
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
    no_errors(&m, &[])
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
