//! Updates of the whole system through the A/B slots and the bootloader
//! (x86_64: OVMF and GRUB, the boot disk of [`crate::bootloader`]). The
//! device runs release 1 (`qemu-tests/manifests/update/v1`) from slot A;
//! the harness pushes release 2, the same containers with a system slot
//! payload (xtask's `slotbundle`), over the push port.
//!
//! - `slot-update`: the payload's berth is a build of its own whose
//!   version ends in [`NEXT_SUFFIX`]. berth writes slot B, records the try,
//!   sets the bootloader's one-shot try of B (`ORDER="B A"`, `B_LEFT=1`)
//!   and reboots; GRUB spends B's attempt; the new berth comes up on B
//!   (its `boot.start` shows its version), runs release 2 on trial and
//!   commits it, making B primary (`B_LEFT=3`). A second boot of the same
//!   disk comes up on B again, normally, with release 2.
//! - `slot-fallback`: the payload's `/sbin/berth` exits at once (the probe
//!   without arguments), so the kernel panics on B and reboots; GRUB finds
//!   B without attempts and boots A; berth on A sees the try recorded on
//!   the data partition, rolls release 2 back with the cause
//!   `system-never-started` (in `berthctl release`) and leaves B with no
//!   attempts.
//!
//! Each boot's bootloader environment afterwards is computed before the
//! boot ([`after_try`], [`after_commit`], [`after_fall_back`]).

use crate::bootloader::{GrubEnv, ORDER};
use crate::machine::Machine;
use crate::scenario::Case;
use crate::scenarios::{cases_of, expect_boot, expect_poweroff, field_is, limits, no_errors, spec, BootSpec, Check, Launch, Limits};
use std::sync::Arc;
use std::time::Duration;

/// The build the slot cases boot: release 1 of the update scenarios, the
/// push port's `berth receive`.
pub const VARIANT: &str = "slots";
/// The version the payload's berth reports: the running one's and this.
pub const NEXT_SUFFIX: &str = "+next";
/// The installed release and the one the bundle carries.
const V1: u64 = 1;
const V2: u64 = 2;

pub fn cases(l: Arc<dyn Launch>) -> Vec<Case> {
    let table: Vec<(&'static str, Check)> = match l.arch() {
        "x86_64" => vec![("slot-update", slot_update), ("slot-fallback", slot_fallback)],
        _ => Vec::new(),
    };
    cases_of(&l, table)
}

/// The environment after berth set the try of `to` (from a committed
/// state).
pub fn after_try(to: &str) -> GrubEnv {
    env(&[(ORDER, if to == "B" { "B A" } else { "A B" }), ("A_LEFT", if to == "A" { "1" } else { "3" }), ("B_LEFT", if to == "B" { "1" } else { "3" })])
}

/// The environment after the tried `slot` committed.
pub fn after_commit(slot: &str) -> GrubEnv {
    env(&[(ORDER, if slot == "B" { "B A" } else { "A B" }), ("A_LEFT", "3"), ("B_LEFT", "3")])
}

/// The environment after the try of the other slot fell back to `slot`.
pub fn after_fall_back(slot: &str) -> GrubEnv {
    env(&[(ORDER, if slot == "B" { "B A" } else { "A B" }), ("A_LEFT", if slot == "A" { "3" } else { "0" }), ("B_LEFT", if slot == "B" { "3" } else { "0" })])
}

fn env(vars: &[(&str, &str)]) -> GrubEnv {
    let mut e = GrubEnv::fresh();
    for (k, v) in vars {
        e.set(k, v);
    }
    e
}

fn firmware_limits(l: &dyn Launch) -> Limits {
    let base = limits(l.arch());
    // OVMF and GRUB come before each kernel, under emulation; the switch
    // writes the slot and boots twice.
    Limits { boot: base.boot + Duration::from_secs(120), step: base.step + Duration::from_secs(60), halt: base.halt }
}

/// Boot 1 on a fresh disk: slot A, release 1, the agent waiting; push
/// `payload` as release 2; berth writes slot B and sets its try. Returns
/// the machine (rebooting into the try), the disk and berth's version.
fn push_system(l: &dyn Launch, name: &str, payload: &str, lim: &Limits) -> Result<(Machine, std::path::PathBuf, String), String> {
    let sock = std::env::temp_dir().join(format!("berth-{name}-{}-{}.sock", l.arch(), std::process::id()));
    let _ = std::fs::remove_file(&sock);
    let first = BootSpec { variant: VARIANT, allow_reboot: true, push: Some(sock.clone()), ..spec(name, "slot-update") };
    let disk = l.boot_disk(&first)?;
    let bundle = l.system_bundle(&first, payload, V2)?;
    let mut m = l.boot_firmware(&first, &disk)?;
    let start = m.expect_event_where("boot.start", |e| e.is("stage", "system"), lim.boot)?;
    let version = start.get("version").unwrap_or_default().to_string();
    field_is(&m.expect_event("release.accepted", lim.step)?, "version", &V1.to_string())?;
    expect_boot_rest(&mut m, lim)?;
    m.expect_line("AGENT slot=A", lim.step)?;
    m.expect_line("AGENT waiting=push", lim.step)?;
    let answer = l.push(&sock, &bundle, false)?;
    if !answer.starts_with("ok ") {
        return Err(format!("the push of release {V2} was answered {answer:?}"));
    }
    let written = m.expect_event("update.system", lim.step)?;
    for (k, v) in [("phase", "written"), ("version", "2"), ("changed", "1"), ("slot", "B"), ("result", "ok")] {
        field_is(&written, k, v)?;
    }
    let tried = m.expect_event("update.try", lim.step)?;
    for (k, v) in [("slot", "B"), ("first", "B"), ("a_left", "3"), ("b_left", "1"), ("was_first", "A")] {
        field_is(&tried, k, v)?;
    }
    field_is(&m.expect_event("update.reboot", lim.step)?, "try_slot", "B")?;
    Ok((m, disk, version))
}

/// After the system stage's `release.accepted`: the boot's end.
fn expect_boot_rest(m: &mut Machine, lim: &Limits) -> Result<(), String> {
    field_is(&m.expect_event("boot.ready", lim.step)?, "data", "ok")?;
    Ok(())
}

fn check_env(l: &dyn Launch, disk: &std::path::Path, want: &GrubEnv, when: &str) -> Result<(), String> {
    let got = GrubEnv::parse(&l.grubenv(disk)?)?;
    if &got != want {
        return Err(format!("{when}: the bootloader environment is {:?}, want {:?}", got.vars, want.vars));
    }
    Ok(())
}

/// `slot-update`: see the module docs.
fn slot_update(l: &dyn Launch) -> Result<(), String> {
    let lim = firmware_limits(l);
    let (mut m, disk, version) = push_system(l, "slot-update", "new-berth", &lim)?;
    let next = format!("{version}{NEXT_SUFFIX}");
    // The reboot into slot B: the new berth, on trial.
    let start = m.expect_event_where("boot.start", |e| e.is("stage", "system"), lim.boot)?;
    field_is(&start, "version", &next)?;
    let slot = m.expect_event_where("boot.slot", |e| e.get("boot").is_some(), lim.step)?;
    for (k, v) in [("slot", "B"), ("boot", "trying"), ("first", "B"), ("a_left", "3"), ("b_left", "0")] {
        field_is(&slot, k, v)?;
    }
    field_is(&m.expect_event("release.trial", lim.step)?, "version", "2")?;
    field_is(&m.expect_event("update.system", lim.step)?, "phase", "trying")?;
    m.expect_line("AGENT slot=B", lim.step)?;
    field_is(&m.expect_event("release.commit", lim.step)?, "version", "2")?;
    let done = m.expect_event("update.system", lim.step)?;
    for (k, v) in [("phase", "committed"), ("slot", "B"), ("result", "ok")] {
        field_is(&done, k, v)?;
    }
    let line = m.expect_line("AGENT release committed=", lim.step)?;
    if !line.contains("committed=1") || !line.contains("release 2 ") {
        return Err(format!("after the commit berthctl release says {line}"));
    }
    expect_poweroff(&mut m, "SIGTERM", &lim)?;
    no_errors(&m, &[])?;
    check_env(l, &disk, &after_commit("B"), "after the commit")?;
    // Boot 2: slot B, normally, the new berth and release 2.
    let again = BootSpec { variant: VARIANT, allow_reboot: true, data: m.data_image().map(|p| p.to_path_buf()), ..spec("slot-update-2", "bootloader") };
    let mut m2 = l.boot_firmware(&again, &disk)?;
    expect_boot(&mut m2, &lim)?;
    let ev = m2.events();
    let start = ev.iter().find(|e| e.name == "boot.start" && e.is("stage", "system")).ok_or("boot 2: no boot.start")?;
    field_is(start, "version", &next)?;
    let slot = ev.iter().find(|e| e.name == "boot.slot" && e.get("boot").is_some()).ok_or("boot 2: no boot.slot report")?;
    field_is(slot, "slot", "B")?;
    field_is(slot, "boot", "normal")?;
    field_is(ev.iter().find(|e| e.name == "release.accepted").ok_or("boot 2: no release.accepted")?, "version", "2")?;
    m2.expect_line("AGENT slot=B", lim.step)?;
    expect_poweroff(&mut m2, "SIGTERM", &lim)?;
    no_errors(&m2, &[])?;
    check_env(l, &disk, &after_commit("B"), "after boot 2")
}

/// `slot-fallback`: see the module docs.
fn slot_fallback(l: &dyn Launch) -> Result<(), String> {
    let lim = firmware_limits(l);
    let (mut m, disk, version) = push_system(l, "slot-fallback", "berth-exits", &lim)?;
    // Slot B: its initramfs maps B's image, then its berth exits at once.
    let sys = m.expect_event_where("system.slot", |e| e.is("slot", "B"), lim.boot)?;
    field_is(&sys, "device", "PARTLABEL=berth-system-b")?;
    m.expect_line("Attempted to kill init", lim.step)?;
    // Back on slot A (B has no attempt left): the same berth as before.
    let start = m.expect_event_where("boot.start", |e| e.is("stage", "system"), lim.boot)?;
    field_is(&start, "version", &version)?;
    let slot = m.expect_event_where("boot.slot", |e| e.get("boot").is_some(), lim.step)?;
    for (k, v) in [("slot", "A"), ("boot", "fell-back"), ("tried", "B"), ("cause", "system-never-started"), ("first", "B"), ("a_left", "2"), ("b_left", "0")] {
        field_is(&slot, k, v)?;
    }
    let step = m.expect_event_where("boot.slot", |e| e.get("step").is_some(), lim.step)?;
    for (k, v) in [("step", "fall-back"), ("a_left", "3"), ("b_left", "0"), ("result", "ok")] {
        field_is(&step, k, v)?;
    }
    let rb = m.expect_event("release.rollback", lim.step)?;
    for (k, v) in [("cause", "system-never-started"), ("from", "2"), ("to", "1")] {
        field_is(&rb, k, v)?;
    }
    let fb = m.expect_event("update.system", lim.step)?;
    for (k, v) in [("phase", "fell-back"), ("tried", "B"), ("slot", "A")] {
        field_is(&fb, k, v)?;
    }
    m.expect_line("AGENT slot=A", lim.step)?;
    let line = m.expect_line("AGENT release committed=", lim.step)?;
    if !line.contains("committed=1") || !line.contains("release 1 ") || !line.contains("system-never-started") {
        return Err(format!("after the fall-back berthctl release says {line}"));
    }
    expect_poweroff(&mut m, "SIGTERM", &lim)?;
    check_env(l, &disk, &after_fall_back("A"), "after the fall-back")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expected_environments() {
        assert_eq!(after_try("B").get(ORDER), Some("B A"));
        assert_eq!((after_try("B").get("A_LEFT"), after_try("B").get("B_LEFT")), (Some("3"), Some("1")));
        assert_eq!((after_commit("B").get(ORDER), after_commit("B").get("B_LEFT")), (Some("B A"), Some("3")));
        let fb = after_fall_back("A");
        assert_eq!((fb.get(ORDER), fb.get("A_LEFT"), fb.get("B_LEFT")), (Some("A B"), Some("3"), Some("0")));
    }
}
