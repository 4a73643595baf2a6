//! The boot through the firmware and the bootloader (x86_64: OVMF and
//! GRUB; aarch64 and armv7: U-Boot, see [`crate::ubootcase`]), and its A/B
//! slot choice.
//!
//! The boot disk (built by xtask's `bootdisk`) carries GRUB on its EFI
//! system partition, a kernel and an initramfs per slot, and a system
//! image partition per slot. GRUB's environment block (`grubenv`) holds
//! the variables of RAUC's GRUB scheme: `ORDER` (the slots to try, in
//! order, e.g. `A B`) and `A_LEFT` / `B_LEFT` (attempts left). The boot
//! script boots the first slot in `ORDER` with attempts left, one attempt
//! fewer saved before it boots; when none has any left, both get
//! [`ATTEMPTS`] again and `ORDER` is tried once more. [`choose`] is that
//! script's choice as a pure function, so a case computes what each boot
//! must do before it runs.
//!
//! - `bootloader-grub`: boot 1 on the fresh disk (`ORDER="A B"`, 3 and 3
//!   attempts) comes up on slot A: the kernel's command line says
//!   `berth.slot=A` (the agent reads /proc/cmdline), berth mounts the
//!   system image of slot A (`PARTLABEL=berth-system-a`, as slot A's
//!   initramfs names it), berth reports the environment as the script left
//!   it (`A_LEFT` one lower) in its `boot.slot` line and marks slot A good
//!   (the board's `[bootloader]` table), so the environment on the disk
//!   afterwards is slot A first with both counters full. Then the host
//!   sets `ORDER="B A"` in the block and
//!   boot 2 comes up on slot B the same way. Boot 3 finds slot A (first
//!   again) used up and takes slot B's last attempt; boot 4 finds none
//!   left, and the script's reset boots slot A (see [`EDITS`]). The
//!   verdict names the first difference from what [`choose`] computed
//!   before the boot.
//! - `bootloader-uboot` (aarch64, armv7): the same boots through U-Boot,
//!   its environment in flash ([`crate::ubootcase`]).

use crate::machine::Machine;
use crate::scenario::Case;
use crate::scenarios::{cases_of, expect_boot, expect_poweroff, limits, no_errors, spec, BootSpec, Check, Launch, Limits};
use std::sync::Arc;
use std::time::Duration;

/// The slots, in the order a fresh disk tries them.
pub const SLOTS: [&str; 2] = ["A", "B"];
/// Attempts a slot gets (a fresh disk's, and after a reset).
pub const ATTEMPTS: u32 = 3;
/// Size of GRUB's environment block file, bytes.
pub const ENV_SIZE: usize = 1024;
/// The first line of an environment block.
pub const ENV_HEADER: &str = "# GRUB Environment Block\n";
/// The variable with the slots to try, in order.
pub const ORDER: &str = "ORDER";

/// The attempts variable of a slot (`A_LEFT`).
pub fn left_var(slot: &str) -> String {
    format!("{slot}_LEFT")
}

/// The GPT name of a slot's system image partition (`berth-system-a`).
pub fn system_label(slot: &str) -> String {
    format!("berth-system-{}", slot.to_ascii_lowercase())
}

/// GRUB's environment block: `name=value` lines after [`ENV_HEADER`],
/// padded with `#` to [`ENV_SIZE`] bytes. Names and values here never
/// hold a backslash or a newline (GRUB would escape them).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GrubEnv {
    pub vars: Vec<(String, String)>,
}

impl GrubEnv {
    /// A fresh disk's block: every slot in order, each with [`ATTEMPTS`].
    pub fn fresh() -> GrubEnv {
        let mut env = GrubEnv::default();
        env.set(ORDER, &SLOTS.join(" "));
        for s in SLOTS {
            env.set(&left_var(s), &ATTEMPTS.to_string());
        }
        env
    }

    /// Read a block, saying what is wrong with a bad one.
    pub fn parse(bytes: &[u8]) -> Result<GrubEnv, String> {
        if bytes.len() != ENV_SIZE {
            return Err(format!("grubenv is {} bytes, want {ENV_SIZE}", bytes.len()));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| "grubenv is not UTF-8".to_string())?;
        let body = text.strip_prefix(ENV_HEADER).ok_or("grubenv does not start with GRUB's header line")?;
        let mut env = GrubEnv::default();
        for line in body.split('\n') {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.contains('\\') {
                return Err(format!("grubenv line {line:?}: escaped characters are not expected"));
            }
            let (name, value) = line.split_once('=').ok_or_else(|| format!("grubenv line {line:?} has no '='"))?;
            env.set(name, value);
        }
        Ok(env)
    }

    /// The block's bytes, or why they would not fit.
    pub fn to_block(&self) -> Result<Vec<u8>, String> {
        let mut text = String::from(ENV_HEADER);
        for (name, value) in &self.vars {
            let bad = |s: &str| s.contains(['\\', '\n']);
            if name.is_empty() || name.contains('=') || bad(name) || bad(value) {
                return Err(format!("grubenv variable {name:?}={value:?} cannot be written"));
            }
            text.push_str(&format!("{name}={value}\n"));
        }
        if text.len() > ENV_SIZE {
            return Err(format!("grubenv variables take {} bytes, more than the block's {ENV_SIZE}", text.len()));
        }
        let mut bytes = text.into_bytes();
        bytes.resize(ENV_SIZE, b'#');
        Ok(bytes)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Set a variable, in place if it is there, else at the end.
    pub fn set(&mut self, name: &str, value: &str) {
        match self.vars.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => *v = value.to_string(),
            None => self.vars.push((name.to_string(), value.to_string())),
        }
    }
}

/// The boot script's choice (xtask's `bootdisk::grub_cfg`), applied to
/// `env` as the script leaves it saved: the first slot of `ORDER` whose
/// attempts left are 1 to [`ATTEMPTS`] (anything else counts as none),
/// one attempt fewer; when there is none, every slot gets [`ATTEMPTS`]
/// and `ORDER` is tried again. `None` when `ORDER` names no known slot.
pub fn choose(env: &mut GrubEnv) -> Option<String> {
    for round in 0..2 {
        if round == 1 {
            for s in SLOTS {
                env.set(&left_var(s), &ATTEMPTS.to_string());
            }
        }
        let order = env.get(ORDER).unwrap_or("").to_string();
        for slot in order.split_whitespace().filter(|s| SLOTS.contains(s)) {
            let var = left_var(slot);
            let left = env.get(&var).and_then(|v| v.parse::<u32>().ok()).filter(|n| (1..=ATTEMPTS).contains(n));
            if let Some(n) = left {
                env.set(&var, &(n - 1).to_string());
                return Some(slot.to_string());
            }
        }
    }
    None
}

pub fn cases(l: Arc<dyn Launch>) -> Vec<Case> {
    let table: Vec<(&'static str, Check)> = match l.arch() {
        "x86_64" => vec![("bootloader-grub", grub_slots), ("bootloader-verity", grub_verity)],
        "aarch64" | "armv7" => vec![("bootloader-uboot", crate::ubootcase::uboot_slots)],
        _ => Vec::new(),
    };
    cases_of(&l, table)
}

/// What one boot showed: the slot on the kernel's command line, the system
/// image berth mounted, the environment on the disk afterwards, and
/// berth's `boot.slot` lines (its report, then its mark-good step).
#[derive(Debug)]
pub(crate) struct Seen {
    pub(crate) slot: String,
    pub(crate) system: String,
    pub(crate) env: GrubEnv,
    pub(crate) reports: Vec<String>,
}

/// What berth does after the boot script: the booted slot first, both
/// slots' attempts full again (the board's `[bootloader]` table; berth's
/// mark-good step).
pub fn mark_good(env: &mut GrubEnv, slot: &str) {
    let other = SLOTS.iter().find(|s| **s != slot).copied().unwrap_or("B");
    env.set(ORDER, &format!("{slot} {other}"));
    for s in SLOTS {
        env.set(&left_var(s), &ATTEMPTS.to_string());
    }
}

/// berth's `boot.slot` lines for a normal boot of `slot` that found the
/// environment `env` (as the boot script left it) of the board's
/// `bootloader` kind (`grub`, `uboot`), in the form of [`report_of`].
pub fn reports_for(slot: &str, env: &GrubEnv, bootloader: &str) -> Vec<String> {
    let first = env.get(ORDER).and_then(|o| o.split_whitespace().next()).unwrap_or("A");
    let left = |s: &str| env.get(&left_var(s)).unwrap_or("3").to_string();
    let mut r = vec![format!("slot={slot} bootloader={bootloader} boot=normal first={first} a_left={} b_left={} result=ok", left("A"), left("B"))];
    let mut good = env.clone();
    mark_good(&mut good, slot);
    if good != *env {
        r.push(format!("slot={slot} step=mark-good a_left={ATTEMPTS} b_left={ATTEMPTS} result=ok"));
    }
    r
}

/// A `boot.slot` event as `key=value` words, in the keys' fixed order.
pub(crate) fn report_of(e: &crate::event::Event) -> String {
    ["slot", "bootloader", "boot", "step", "first", "a_left", "b_left", "result"]
        .iter()
        .filter_map(|k| e.get(k).map(|v| format!("{k}={v}")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The first difference between what boot `n` showed and what it must
/// have: slot `slot`, and the environment `env`.
pub fn first_difference(n: u32, slot: &str, env: &GrubEnv, seen_slot: &str, seen_system: &str, seen_env: &GrubEnv) -> Option<String> {
    if seen_slot != slot {
        return Some(format!("boot {n}: the kernel's command line has berth.slot={seen_slot}, want {slot}"));
    }
    let system = format!("PARTLABEL={}", system_label(slot));
    if seen_system != system {
        return Some(format!("boot {n}: berth mounted the system image {seen_system}, want {system}"));
    }
    for (name, want) in &env.vars {
        let got = seen_env.get(name).unwrap_or("(absent)");
        if got != want {
            return Some(format!("boot {n}: the environment after the boot has {name}={got}, want {want}"));
        }
    }
    if seen_env.vars.len() != env.vars.len() {
        return Some(format!("boot {n}: the environment after the boot has {:?}, want {:?}", seen_env.vars, env.vars));
    }
    None
}

/// Boot `spec` from `disk`, through to berth's power-off; `read_env`
/// reads the environment afterwards.
pub(crate) fn boot_once(
    l: &dyn Launch,
    spec: &BootSpec,
    disk: &std::path::Path,
    lim: &Limits,
    read_env: &dyn Fn() -> Result<GrubEnv, String>,
) -> Result<(Machine, Seen), String> {
    let mut m = l.boot_firmware(spec, disk)?;
    expect_boot(&mut m, lim)?;
    let line = m.expect_line("AGENT slot=", lim.step)?;
    let slot = line.split_once("AGENT slot=").map(|(_, s)| s.trim().to_string()).unwrap_or_default();
    expect_poweroff(&mut m, "SIGTERM", lim)?;
    no_errors(&m, &[])?;
    let system = m.events().into_iter().find(|e| e.name == "device.wait").and_then(|e| e.get("device").map(str::to_string)).unwrap_or_default();
    let env = read_env()?;
    let reports = m.events().iter().filter(|e| e.name == "boot.slot").map(report_of).collect();
    Ok((m, Seen { slot, system, env, reports }))
}

/// The host's edits of the environment block before each boot of
/// `bootloader-grub` after the first (the first boots the fresh block).
pub const EDITS: [&[(&str, &str)]; 3] = [
    // Boot 2: slot B first.
    &[(ORDER, "B A")],
    // Boot 3: slot A first but used up: slot B, its last attempt.
    &[(ORDER, "A B"), ("A_LEFT", "0"), ("B_LEFT", "1")],
    // Boot 4: none left: both reset, slot A (first in the order again:
    // berth made slot B first when it marked boot 3 good).
    &[(ORDER, "A B"), ("A_LEFT", "0"), ("B_LEFT", "0")],
];

/// `bootloader-grub`: slot A on the fresh disk, then slot B by the host's
/// edit of `ORDER`, then the used-up slot passed over and the reset when
/// none is left ([`EDITS`]).
fn grub_slots(l: &dyn Launch) -> Result<(), String> {
    let base = limits(l.arch());
    // OVMF and GRUB come before the kernel, under emulation.
    let lim = Limits { boot: base.boot + Duration::from_secs(120), step: base.step, halt: base.halt };
    let first = BootSpec { allow_reboot: true, ..spec("bootloader-grub-1", "bootloader") };
    let disk = l.boot_disk(&first)?;
    let mut env = GrubEnv::parse(&l.grubenv(&disk)?)?;
    if env != GrubEnv::fresh() {
        return Err(format!("the fresh boot disk's grubenv is {:?}, want {:?}", env.vars, GrubEnv::fresh().vars));
    }
    let mut data = None;
    for n in 1..=EDITS.len() as u32 + 1 {
        if let Some(edits) = (n as usize).checked_sub(2).and_then(|i| EDITS.get(i)) {
            for (name, value) in edits.iter() {
                env.set(name, value);
            }
            l.set_grubenv(&disk, &env.to_block()?)?;
        }
        // What this boot must do, before it runs.
        let mut want = env.clone();
        let slot = choose(&mut want).ok_or_else(|| format!("boot {n}: the grubenv {:?} chooses no slot", env.vars))?;
        let reports = reports_for(&slot, &want, "grub");
        mark_good(&mut want, &slot);
        let spec = BootSpec { allow_reboot: true, data: data.clone(), ..spec(&format!("bootloader-grub-{n}"), "bootloader") };
        let (m, seen) = boot_once(l, &spec, &disk, &lim, &|| GrubEnv::parse(&l.grubenv(&disk)?))?;
        if seen.reports != reports {
            return Err(format!("boot {n}: berth's boot.slot lines {:?}, want {reports:?}", seen.reports));
        }
        if let Some(d) = first_difference(n, &slot, &want, &seen.slot, &seen.system, &seen.env) {
            return Err(d);
        }
        data = m.data_image().map(|p| p.to_path_buf());
        env = seen.env;
    }
    Ok(())
}

/// `bootloader-verity`: one bit flipped a third of the way into slot A's
/// system image, on a fresh boot disk. Each boot of slot A (its initramfs
/// carries the image's dm-verity root hash) refuses the image: a
/// `system.verity step=read result=error` line for slot A's partition
/// (`/dev/vda2`, the second on the disk), then `boot.failed` with the
/// dm-verity reason and a reboot after a few seconds, and berth never
/// starts from that image. The boot script spends slot A's three attempts
/// that way, then boots slot B, whose intact image comes up normally.
fn grub_verity(l: &dyn Launch) -> Result<(), String> {
    let base = limits(l.arch());
    let lim = Limits { boot: base.boot + Duration::from_secs(120), step: base.step, halt: base.halt };
    let spec = BootSpec { allow_reboot: true, ..spec("bootloader-verity", "bootloader") };
    let disk = l.boot_disk(&spec)?;
    l.alter_system(&disk, "A")?;
    let mut m = l.boot_firmware(&spec, &disk)?;
    for n in 1..=ATTEMPTS {
        let ev = m.expect_event("system.verity", lim.boot)?;
        for (k, v) in [("device", "/dev/vda2"), ("step", "read"), ("result", "error")] {
            crate::scenarios::field_is(&ev, k, v).map_err(|e| format!("boot {n}: {e}"))?;
        }
        let failed = m.expect_event("boot.failed", lim.step)?;
        for (k, v) in [("reason", "system image failed its dm-verity check"), ("slot", "A"), ("then", "reboot")] {
            crate::scenarios::field_is(&failed, k, v).map_err(|e| format!("boot {n}: {e}"))?;
        }
    }
    let start = m.expect_event_where("boot.start", |e| e.is("stage", "system"), lim.boot)?;
    let slot = m.expect_event_where("boot.slot", |e| e.get("boot").is_some(), lim.step)?;
    for (k, v) in [("slot", "B"), ("boot", "normal")] {
        crate::scenarios::field_is(&slot, k, v)?;
    }
    m.expect_line("AGENT slot=B", lim.step)?;
    expect_poweroff(&mut m, "SIGTERM", &lim)?;
    let events = m.events();
    let first_system = events.iter().position(|e| e.name == "boot.start" && e.is("stage", "system"));
    if first_system != events.iter().position(|e| e == &start) {
        return Err("berth started from slot A's altered system image".into());
    }
    let n = events.iter().filter(|e| e.name == "system.verity" && e.is("result", "error")).count();
    if n != ATTEMPTS as usize {
        return Err(format!("{n} refusals of slot A's image, want {ATTEMPTS} (its attempts)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_round_trips_at_its_size() {
        let env = GrubEnv::fresh();
        let block = env.to_block().unwrap();
        assert_eq!(block.len(), ENV_SIZE);
        assert!(block.starts_with(b"# GRUB Environment Block\nORDER=A B\nA_LEFT=3\nB_LEFT=3\n#"));
        assert_eq!(GrubEnv::parse(&block).unwrap(), env);
    }

    #[test]
    fn bad_blocks_are_refused_with_the_reason() {
        assert!(GrubEnv::parse(b"short").unwrap_err().contains("1024"));
        let mut b = vec![b'#'; ENV_SIZE];
        b[..6].copy_from_slice(b"hello\n");
        assert!(GrubEnv::parse(&b).unwrap_err().contains("header"));
        let mut env = GrubEnv::default();
        env.set("X", &"y".repeat(ENV_SIZE));
        assert!(env.to_block().unwrap_err().contains("more than"));
        env.set("X", "a\nb");
        assert!(env.to_block().unwrap_err().contains("cannot be written"));
    }

    #[test]
    fn the_first_slot_with_attempts_is_chosen_and_counted_down() {
        let mut env = GrubEnv::fresh();
        assert_eq!(choose(&mut env).as_deref(), Some("A"));
        assert_eq!(env.get("A_LEFT"), Some("2"));
        assert_eq!(env.get("B_LEFT"), Some("3"));
        env.set(ORDER, "B A");
        assert_eq!(choose(&mut env).as_deref(), Some("B"));
        assert_eq!(env.get("B_LEFT"), Some("2"));
    }

    #[test]
    fn a_used_up_slot_is_passed_over_and_all_used_up_resets() {
        let mut env = GrubEnv::fresh();
        env.set("A_LEFT", "0");
        assert_eq!(choose(&mut env).as_deref(), Some("B"));
        env.set("B_LEFT", "0");
        assert_eq!(choose(&mut env).as_deref(), Some("A"));
        assert_eq!((env.get("A_LEFT"), env.get("B_LEFT")), (Some("2"), Some("3")));
        // Garbage counts as none left.
        env.set("A_LEFT", "many");
        env.set("B_LEFT", "7");
        assert_eq!(choose(&mut env).as_deref(), Some("A"));
        env.set(ORDER, "C");
        assert_eq!(choose(&mut env), None);
    }

    #[test]
    fn the_cases_boots_go_a_b_b_a() {
        let mut env = GrubEnv::fresh();
        let mut slots = vec![choose(&mut env).unwrap()];
        assert_eq!(
            reports_for("A", &env, "grub"),
            ["slot=A bootloader=grub boot=normal first=A a_left=2 b_left=3 result=ok", "slot=A step=mark-good a_left=3 b_left=3 result=ok"]
        );
        mark_good(&mut env, "A");
        for edits in EDITS {
            for (name, value) in edits.iter() {
                env.set(name, value);
            }
            let slot = choose(&mut env).unwrap();
            mark_good(&mut env, &slot);
            slots.push(slot);
        }
        assert_eq!(slots, ["A", "B", "B", "A"]);
        assert_eq!((env.get(ORDER), env.get("A_LEFT"), env.get("B_LEFT")), (Some("A B"), Some("3"), Some("3")));
    }

    #[test]
    fn the_verdict_names_the_first_difference() {
        let mut want = GrubEnv::fresh();
        choose(&mut want);
        let sys = "PARTLABEL=berth-system-a";
        assert_eq!(first_difference(1, "A", &want, "A", sys, &want), None);
        assert!(first_difference(1, "A", &want, "B", sys, &want).unwrap().contains("berth.slot=B, want A"));
        assert!(first_difference(1, "A", &want, "A", "/dev/vda", &want).unwrap().contains("/dev/vda, want PARTLABEL=berth-system-a"));
        let fresh = GrubEnv::fresh();
        assert!(first_difference(1, "A", &want, "A", sys, &fresh).unwrap().contains("A_LEFT=3, want 2"));
    }
}
