//! The A/B slot choice through U-Boot (aarch64, armv7): case
//! `bootloader-uboot`, the GRUB case's boots with U-Boot's boot script.
//!
//! xtask's `ubootdisk` builds the disk: a FAT boot partition with
//! `boot.scr` and each slot's kernel and initramfs, and the two system
//! partitions; U-Boot's environment lives in the disk's own flash image,
//! kept between the boots. The script keeps `ORDER`, `A_LEFT` and `B_LEFT`
//! in that environment and starts them as a fresh GRUB disk's when `ORDER`
//! is unset ([`script_defaults`]); it then makes [`choose`]'s choice and
//! `saveenv`s before it loads the slot's kernel.
//!
//! Boot 1 finds a blank flash (no valid environment) and boots slot A;
//! boots 2 to 4 follow the host's [`EDITS`] of the saved environment, as
//! in `bootloader-grub`: slot B by `ORDER`, slot B again past a used-up
//! slot A, and slot A after the reset. The board's `[bootloader] kind =
//! "uboot"` has berth read the block from the flash, report it
//! (`boot.slot slot=X bootloader=uboot ...`) and mark the slot good, so
//! the environment after each boot is the script's decrement then berth's
//! refill ([`reports_for`] and [`mark_good`], the GRUB case's model). Each
//! boot must show the slot on the kernel's command line, that slot's
//! system partition mounted, those lines, and the scheme's variables as
//! computed before the boot; from boot 2 on, every other variable of
//! U-Boot's must be as it was before the boot ([`whole_difference`]), so a
//! block berth rewrote with a variable lost, changed or its CRC wrong
//! (unreadable here and for U-Boot) turns the case red. The host also sets
//! [`MARKER`] before boot 4 and does not write before boot 5: boot 5 (slot
//! A) keeps the marker only if U-Boot loaded the block berth wrote at boot
//! 4 (with a block it refused, U-Boot starts from its built-in environment).

use crate::bootloader::{boot_once, choose, first_difference, left_var, mark_good, reports_for, GrubEnv, EDITS, ORDER, SLOTS};
use crate::scenarios::{limits, spec, BootSpec, Launch, Limits};
use std::time::Duration;

/// The script's start on an environment without `ORDER`: the scheme's
/// variables as a fresh disk's (the others left as they are).
pub fn script_defaults(env: &mut GrubEnv) {
    if env.get(ORDER).is_none() {
        for (name, value) in GrubEnv::fresh().vars {
            env.set(&name, &value);
        }
    }
}

/// The scheme's variables of an environment, in the scheme's order
/// (absent ones left out).
pub fn scheme_of(env: &GrubEnv) -> GrubEnv {
    let mut out = GrubEnv::default();
    for name in std::iter::once(ORDER.to_string()).chain(SLOTS.iter().map(|s| left_var(s))) {
        if let Some(v) = env.get(&name) {
            out.set(&name, v);
        }
    }
    out
}

/// The variable the boot script keeps the chosen slot in (saved with the
/// rest by its `saveenv`).
pub const SLOT_VAR: &str = "berth_slot";

/// A variable only the host sets (before boot 4): U-Boot carries it to
/// boot 5's save only through the block berth wrote at boot 4.
pub const MARKER: (&str, &str) = ("berth_case", "kept");

/// The whole environment after a boot of `slot` that started from `before`
/// and whose scheme variables end as `scheme`.
pub fn whole_after(before: &GrubEnv, scheme: &GrubEnv, slot: &str) -> GrubEnv {
    let mut env = before.clone();
    for (name, value) in &scheme.vars {
        env.set(name, value);
    }
    env.set(SLOT_VAR, slot);
    env
}

/// The first variable in which `seen` differs from `want` (in any order).
pub fn whole_difference(n: u32, want: &GrubEnv, seen: &GrubEnv) -> Option<String> {
    for (name, value) in &want.vars {
        match seen.get(name) {
            Some(v) if v == value => {}
            got => return Some(format!("boot {n}: U-Boot's variable {name} is {got:?} after the boot, want {value:?}")),
        }
    }
    let extra: Vec<_> = seen.vars.iter().filter(|(name, _)| want.get(name).is_none()).collect();
    (!extra.is_empty()).then(|| format!("boot {n}: variables {extra:?} appeared in U-Boot's environment"))
}

/// `bootloader-uboot`: see the module's doc.
pub fn uboot_slots(l: &dyn Launch) -> Result<(), String> {
    let base = limits(l.arch());
    // U-Boot (its 2 s autoboot delay included) loads both files from the
    // FAT under emulation before the kernel starts.
    let lim = Limits { boot: base.boot + Duration::from_secs(180), step: base.step, halt: base.halt };
    let first = BootSpec { allow_reboot: true, ..spec("bootloader-uboot-1", "bootloader") };
    let disk = l.boot_disk(&first)?;
    let mut env = GrubEnv { vars: l.ubootenv(&disk)? };
    if !env.vars.is_empty() {
        return Err(format!("the fresh boot disk's U-Boot environment is {:?}, want none", env.vars));
    }
    let mut data = None;
    for n in 1..=EDITS.len() as u32 + 2 {
        if let Some(edits) = (n as usize).checked_sub(2).and_then(|i| EDITS.get(i)) {
            for (name, value) in edits.iter() {
                env.set(name, value);
            }
            if n as usize == EDITS.len() + 1 {
                env.set(MARKER.0, MARKER.1);
            }
            l.set_ubootenv(&disk, &env.vars)?;
        }
        // What this boot must do, before it runs.
        let mut want = scheme_of(&env);
        script_defaults(&mut want);
        let slot = choose(&mut want).ok_or_else(|| format!("boot {n}: the environment {:?} chooses no slot", scheme_of(&env).vars))?;
        let reports = reports_for(&slot, &want, "uboot");
        mark_good(&mut want, &slot);
        let whole = whole_after(&env, &want, &slot);
        let spec = BootSpec { allow_reboot: true, data: data.clone(), ..spec(&format!("bootloader-uboot-{n}"), "bootloader") };
        let (m, seen) = boot_once(l, &spec, &disk, &lim, &|| Ok(GrubEnv { vars: l.ubootenv(&disk)? }))?;
        if seen.reports != reports {
            return Err(format!("boot {n}: berth's boot.slot lines {:?}, want {reports:?}", seen.reports));
        }
        if let Some(d) = first_difference(n, &slot, &want, &seen.slot, &seen.system, &scheme_of(&seen.env)) {
            return Err(d);
        }
        // Boot 1 starts from U-Boot's built-in environment, unknown here.
        if let Some(d) = whole_difference(n, &whole, &seen.env).filter(|_| n > 1) {
            return Err(d);
        }
        data = m.data_image().map(|p| p.to_path_buf());
        env = seen.env;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_boots_go_a_b_b_a_a_and_berth_refills_each() {
        let mut env = GrubEnv::default();
        env.set("bootcmd", "run distro_bootcmd");
        let mut slots = Vec::new();
        for n in 0..=EDITS.len() + 1 {
            if let Some(edits) = n.checked_sub(1).and_then(|i| EDITS.get(i)) {
                for (name, value) in edits.iter() {
                    env.set(name, value);
                }
            }
            if n == EDITS.len() {
                env.set(MARKER.0, MARKER.1);
            }
            let mut want = scheme_of(&env);
            script_defaults(&mut want);
            let slot = choose(&mut want).unwrap();
            if n == 0 {
                assert_eq!(
                    scheme_of(&want),
                    GrubEnv { vars: vec![(ORDER.into(), "A B".into()), ("A_LEFT".into(), "2".into()), ("B_LEFT".into(), "3".into())] }
                );
                assert_eq!(reports_for(&slot, &want, "uboot")[0], "slot=A bootloader=uboot boot=normal first=A a_left=2 b_left=3 result=ok");
            }
            mark_good(&mut want, &slot);
            env = whole_after(&env, &want, &slot);
            slots.push(slot);
        }
        assert_eq!(slots, ["A", "B", "B", "A", "A"]);
        assert_eq!((env.get(ORDER), env.get("A_LEFT"), env.get("B_LEFT")), (Some("A B"), Some("3"), Some("3")));
        assert_eq!((env.get("bootcmd"), env.get(SLOT_VAR), env.get(MARKER.0)), (Some("run distro_bootcmd"), Some("A"), Some("kept")));
    }

    #[test]
    fn defaults_apply_only_without_order_and_a_lost_variable_is_named() {
        let mut env = GrubEnv::default();
        env.set(ORDER, "B");
        env.set("A_LEFT", "0");
        script_defaults(&mut env);
        assert_eq!(scheme_of(&env).vars, [(ORDER.to_string(), "B".to_string()), ("A_LEFT".into(), "0".into())]);
        let mut want = env.clone();
        want.set("bootdelay", "2");
        assert_eq!(whole_difference(2, &want, &want), None);
        assert!(whole_difference(2, &want, &env).unwrap().contains("bootdelay is None after the boot, want \"2\""));
        let mut extra = want.clone();
        extra.set("x", "1");
        assert!(whole_difference(2, &want, &extra).unwrap().contains("appeared"));
    }
}
