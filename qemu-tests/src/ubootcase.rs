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
//! boots 2 to 4 follow the host's [`EDITS`] of the saved environment (all
//! of U-Boot's other variables kept), as in `bootloader-grub`: slot B by
//! `ORDER`, slot B again past a used-up slot A, and slot A after the
//! reset. berth has no `[bootloader]` table on these boards yet, so it
//! only reports the slot (`boot.slot slot=X bootloader=none`) and does not
//! mark it good: the environment after each boot is the script's
//! decrement alone. Each boot must show the slot on the kernel's command
//! line, that slot's system partition mounted, that one report, and the
//! scheme's variables as computed before the boot.

use crate::bootloader::{boot_once, choose, first_difference, left_var, GrubEnv, EDITS, ORDER, SLOTS};
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

/// berth's `boot.slot` line on a board without `[bootloader]`.
pub fn report_for(slot: &str) -> Vec<String> {
    vec![format!("slot={slot} bootloader=none")]
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
    for n in 1..=EDITS.len() as u32 + 1 {
        if let Some(edits) = (n as usize).checked_sub(2).and_then(|i| EDITS.get(i)) {
            for (name, value) in edits.iter() {
                env.set(name, value);
            }
            l.set_ubootenv(&disk, &env.vars)?;
        }
        // What this boot must do, before it runs.
        let mut want = scheme_of(&env);
        script_defaults(&mut want);
        let slot = choose(&mut want).ok_or_else(|| format!("boot {n}: the environment {:?} chooses no slot", scheme_of(&env).vars))?;
        let spec = BootSpec { allow_reboot: true, data: data.clone(), ..spec(&format!("bootloader-uboot-{n}"), "bootloader") };
        let (m, seen) = boot_once(l, &spec, &disk, &lim, &|| Ok(GrubEnv { vars: l.ubootenv(&disk)? }))?;
        if seen.reports != report_for(&slot) {
            return Err(format!("boot {n}: berth's boot.slot lines {:?}, want {:?}", seen.reports, report_for(&slot)));
        }
        if let Some(d) = first_difference(n, &slot, &want, &seen.slot, &seen.system, &scheme_of(&seen.env)) {
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
    fn the_boots_go_a_b_b_a_with_the_scripts_decrement_only() {
        let mut env = GrubEnv::default();
        env.set("bootcmd", "run distro_bootcmd");
        let mut slots = Vec::new();
        for n in 0..=EDITS.len() {
            if let Some(edits) = n.checked_sub(1).and_then(|i| EDITS.get(i)) {
                for (name, value) in edits.iter() {
                    env.set(name, value);
                }
            }
            let mut want = scheme_of(&env);
            script_defaults(&mut want);
            slots.push(choose(&mut want).unwrap());
            for (name, value) in want.vars {
                env.set(&name, &value);
            }
            if n == 0 {
                assert_eq!(scheme_of(&env), GrubEnv { vars: vec![(ORDER.into(), "A B".into()), ("A_LEFT".into(), "2".into()), ("B_LEFT".into(), "3".into())] });
            }
        }
        assert_eq!(slots, ["A", "B", "B", "A"]);
        assert_eq!((env.get(ORDER), env.get("A_LEFT"), env.get("B_LEFT")), (Some("A B"), Some("2"), Some("3")));
        assert_eq!(env.get("bootcmd"), Some("run distro_bootcmd"));
    }

    #[test]
    fn defaults_apply_only_without_order() {
        let mut env = GrubEnv::default();
        env.set(ORDER, "B");
        env.set("A_LEFT", "0");
        script_defaults(&mut env);
        assert_eq!(scheme_of(&env).vars, [(ORDER.to_string(), "B".to_string()), ("A_LEFT".into(), "0".into())]);
        assert_eq!(report_for("B"), ["slot=B bootloader=none"]);
    }
}
