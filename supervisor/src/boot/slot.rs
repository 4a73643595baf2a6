//! The A/B system slot at boot: which slot the bootloader booted (its
//! `berth.slot=` on the kernel command line), what the bootloader's
//! try-boot state says ([`crate::release::bootenv`]), and the mark-good
//! step that refills the booted committed slot's attempts. It owns that
//! boot step; it must not run in the loop (it mounts, reads and writes a
//! FAT partition, or a flash sector, bounded, before the loop starts) and
//! must not change which slot boots next, except by marking the running one
//! good.
//!
//! The decisions are [`plan`], pure and unit-tested, the same for both
//! bootloaders' formats. For GRUB, [`at_boot`] does the mount, the read,
//! the in-place write (same size: GRUB refuses a resized block) with an
//! fsync, and the unmount, one `boot.slot` line each; for U-Boot,
//! [`super::slotflash`] reads and rewrites the environment's flash sector.
//! A board without `[bootloader]` has no slots: a `berth.slot=` is then
//! only reported. A board with one, booted without `berth.slot=` (a
//! kernel-direct boot of a developer), is reported and left alone.

use crate::common::log::Event;
use crate::release::board::bootloader::{Bootloader, Kind, MOUNT_AT};
use crate::release::bootenv::{self, grubenv, ubootenv, BootState, Booted, PendingTry, Slot};

/// Largest environment file read.
pub const ENV_MAX: usize = 64 * 1024;

/// What the boot step found and is to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub slot: Slot,
    pub booted: Booted,
    pub state: BootState,
    /// The new environment block, when marking good changes it.
    pub mark: Option<Vec<u8>>,
}

/// Which bootloader's block format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Grub,
    /// U-Boot's, not redundant.
    Uboot,
}

/// What the environment block `env` (in `format`), the booted `slot` and
/// the try recorded on the data partition (`pending`) mean, and what to
/// write: a normal boot marks its slot good, a fall-back leaves the failed
/// slot with no attempts, a try writes nothing (its trial's commit will).
/// The new block keeps every other variable and `env`'s size.
pub fn plan(slot: Slot, env: &[u8], format: Format, pending: Option<PendingTry>) -> Result<Plan, String> {
    let mut vars = match format {
        Format::Grub => grubenv::parse(env),
        Format::Uboot => ubootenv::parse(env, false),
    }
    .map_err(|e| e.to_string())?;
    let state = BootState::read(&vars).map_err(|e| e.to_string())?;
    let booted = bootenv::settle_try(bootenv::at_boot(slot, pending), &state);
    let want = match booted {
        Booted::Normal(_) | Booted::TryCommitted(_) => Some(BootState::commit(slot)),
        Booted::FellBack { to, .. } => Some(BootState::fall_back(to)),
        Booted::Trying(_) => None,
    };
    let mark = match want {
        Some(want) if want != state => {
            want.write(&mut vars).map_err(|e| e.to_string())?;
            let block = match format {
                Format::Grub => grubenv::render(&vars, env.len()),
                Format::Uboot => ubootenv::render(&vars, env.len(), None),
            };
            Some(block.map_err(|e| e.to_string())?)
        }
        _ => None,
    };
    Ok(Plan { slot, booted, state, mark })
}

fn booted_name(b: Booted) -> &'static str {
    match b {
        Booted::Normal(_) => "normal",
        Booted::Trying(_) => "trying",
        Booted::TryCommitted(_) => "try-committed",
        Booted::FellBack { .. } => "fell-back",
    }
}

/// The boot step (before the loop): see the module docs. Returns the slot
/// and what this boot is (`None` when berth could not tell: then nothing
/// is decided from it).
pub fn at_boot(loader: Option<&Bootloader>, wait_ms: u32, pending: Option<PendingTry>) -> Option<(Slot, Option<Booted>)> {
    let cmdline = crate::common::files::read_bounded("/proc/cmdline", 4096).unwrap_or_default();
    let slot = match bootenv::slot_from_cmdline(&String::from_utf8_lossy(&cmdline)) {
        Ok(s) => s,
        Err(why) => {
            Event::error("boot.slot").kv("result", "error").kv("reason", why).emit();
            return None;
        }
    };
    let slot_only = slot.map(|s| (s, None));
    let (Some(loader), Some(slot)) = (loader, slot) else {
        match (loader, slot) {
            (None, Some(s)) => Event::info("boot.slot").kv("slot", s.name()).kv("bootloader", "none").emit(),
            (Some(_), None) => {
                Event::warn("boot.slot").kv("result", "skipped").kv("reason", "no berth.slot= on the kernel command line (not booted by the bootloader)").emit()
            }
            _ => {}
        }
        return slot_only;
    };
    let r = match loader.kind {
        Kind::Grub => with_env(loader, wait_ms, |path| mark(slot, path, pending)),
        Kind::Uboot => crate::boot::slotflash::mark(loader, slot, pending),
    };
    match r {
        Ok(booted) => Some((slot, Some(booted))),
        Err(why) => {
            Event::error("boot.slot").kv("slot", slot.name()).kv("result", "error").kv("reason", why).emit();
            // Unknown: a pending try still decides (never a commit).
            Some((slot, pending.map(|p| bootenv::at_boot(slot, Some(p)))))
        }
    }
}

/// Mount the environment's partition, run `f` on the file's path, unmount.
fn with_env<T>(loader: &Bootloader, wait_ms: u32, f: impl FnOnce(&str) -> Result<T, String>) -> Result<T, String> {
    let mut step = crate::boot::mount::bootenv(loader);
    if !crate::boot::device_ready(&mut step.source, wait_ms) {
        return Err(format!("{} did not appear", loader.env_device));
    }
    std::fs::create_dir_all(MOUNT_AT).map_err(|e| format!("mkdir {MOUNT_AT}: {e}"))?;
    if crate::sys::mount::apply(core::slice::from_ref(&step), &mut crate::sys::mount::SysMounter) != 0 {
        return Err(format!("cannot mount {} (vfat) at {MOUNT_AT}", loader.env_device));
    }
    let r = f(&format!("{MOUNT_AT}{}", loader.env_path));
    let u = nix::mount::umount2(MOUNT_AT, nix::mount::MntFlags::empty());
    Event::info("mount").kv("target", MOUNT_AT).kv("action", "umount").result(&u.map_err(crate::common::files::errno_text)).emit();
    r
}

/// Read the environment at `path`, report it, and write what [`plan`]
/// says in place.
fn mark(slot: Slot, path: &str, pending: Option<PendingTry>) -> Result<Booted, String> {
    let env = crate::common::files::read_bounded(path, ENV_MAX).map_err(|e| format!("read {path}: {e}"))?;
    let p = plan(slot, &env, Format::Grub, pending).map_err(|e| format!("{path}: {e}"))?;
    report(slot, "grub", &p);
    let Some(block) = &p.mark else { return Ok(p.booted) };
    report_mark(&p, Format::Grub, &write_in_place(path, block));
    Ok(p.booted)
}

/// The `boot.slot` line of what the environment says.
pub(super) fn report(slot: Slot, kind: &str, p: &Plan) {
    let mut ev = Event::info("boot.slot").kv("slot", slot.name()).kv("bootloader", kind).kv("boot", booted_name(p.booted));
    if let Booted::FellBack { from, cause, .. } = p.booted {
        ev = ev.kv("tried", from.name()).kv("cause", cause.name());
    }
    ev.kv("first", p.state.first.name()).kv("a_left", p.state.left(Slot::A)).kv("b_left", p.state.left(Slot::B)).kv("result", "ok").emit();
}

/// The `boot.slot` line of the write's outcome: a mark-good, or a
/// fall-back's, with the attempts it leaves.
pub(super) fn report_mark(p: &Plan, format: Format, r: &Result<(), String>) {
    let ev = if r.is_ok() { Event::info("boot.slot") } else { Event::error("boot.slot") };
    let step = if matches!(p.booted, Booted::FellBack { .. }) { "fall-back" } else { "mark-good" };
    let vars = p.mark.as_deref().and_then(|b| match format {
        Format::Grub => grubenv::parse(b).ok(),
        Format::Uboot => ubootenv::parse(b, false).ok(),
    });
    let after = vars.and_then(|v| BootState::read(&v).ok()).unwrap_or(p.state);
    ev.kv("slot", p.slot.name()).kv("step", step).kv("a_left", after.left(Slot::A)).kv("b_left", after.left(Slot::B)).result(r).emit();
}

/// Overwrite `path` with `block` (its own size) and fsync it.
fn write_in_place(path: &str, block: &[u8]) -> Result<(), String> {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new().write(true).open(path).map_err(|e| format!("open {path}: {e}"))?;
    f.write_all(block).map_err(|e| format!("write {path}: {e}"))?;
    f.sync_all().map_err(|e| format!("fsync {path}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(text: &str) -> Vec<u8> {
        let mut b = format!("# GRUB Environment Block\n{text}").into_bytes();
        b.resize(grubenv::SIZE, b'#');
        b
    }

    #[test]
    fn a_normal_boot_refills_the_booted_slot() {
        // The script spent one of A's attempts on this boot.
        let p = plan(Slot::A, &block("ORDER=A B\nA_LEFT=2\nB_LEFT=3\n"), Format::Grub, None).unwrap();
        assert_eq!(p.booted, Booted::Normal(Slot::A));
        assert_eq!(p.state.left, [2, 3]);
        let m = p.mark.unwrap();
        assert_eq!(m.len(), grubenv::SIZE);
        let back = BootState::read(&grubenv::parse(&m).unwrap()).unwrap();
        assert_eq!(back, BootState::commit(Slot::A));
    }

    #[test]
    fn nothing_to_write_when_already_good_and_errors_are_named() {
        assert_eq!(plan(Slot::B, &block("ORDER=B A\nA_LEFT=3\nB_LEFT=3\n"), Format::Grub, None).unwrap().mark, None);
        assert!(plan(Slot::A, b"not an env", Format::Grub, None).unwrap_err().contains("signature"));
        assert!(plan(Slot::A, &block("ORDER=A C\n"), Format::Grub, None).unwrap_err().contains("ORDER"));
    }

    #[test]
    fn a_uboot_block_is_marked_with_its_other_variables_and_size_kept() {
        let mut v = bootenv::Vars::default();
        for (n, val) in [("arch", "arm"), ("ORDER", "B A"), ("bootcmd", "run distro_bootcmd"), ("A_LEFT", "3"), ("B_LEFT", "1"), ("berth_slot", "B")] {
            v.set(n, val).unwrap();
        }
        let env = ubootenv::render(&v, 0x4000, None).unwrap();
        let p = plan(Slot::B, &env, Format::Uboot, None).unwrap();
        assert_eq!((p.booted, p.state.left), (Booted::Normal(Slot::B), [3, 1]));
        let m = p.mark.unwrap();
        assert_eq!(m.len(), 0x4000);
        let back = ubootenv::parse(&m, false).unwrap();
        let names: Vec<_> = back.iter().map(|(n, val)| format!("{n}={val}")).collect();
        assert_eq!(names, ["arch=arm", "ORDER=B A", "bootcmd=run distro_bootcmd", "A_LEFT=3", "B_LEFT=3", "berth_slot=B"]);
        let mut bad = env.clone();
        bad[0] ^= 1;
        assert!(plan(Slot::B, &bad, Format::Uboot, None).unwrap_err().contains("CRC"));
        assert!(plan(Slot::B, &vec![0xff; 0x4000], Format::Uboot, None).unwrap_err().contains("CRC"));
    }

    #[test]
    fn a_try_writes_nothing_and_a_fall_back_empties_the_tried_slot() {
        let tried = PendingTry { from: Slot::A, to: Slot::B, reached: false };
        // The script spent B's one attempt on this boot.
        let p = plan(Slot::B, &block("ORDER=B A\nA_LEFT=3\nB_LEFT=0\n"), Format::Grub, Some(tried)).unwrap();
        assert_eq!((p.booted, p.mark), (Booted::Trying(Slot::B), None));
        // B never came up: the script went on to A (spending one).
        let p = plan(Slot::A, &block("ORDER=B A\nA_LEFT=2\nB_LEFT=0\n"), Format::Grub, Some(tried)).unwrap();
        assert_eq!(p.booted, Booted::FellBack { from: Slot::B, to: Slot::A, cause: bootenv::FallBackCause::NeverStarted });
        let back = BootState::read(&grubenv::parse(&p.mark.unwrap()).unwrap()).unwrap();
        assert_eq!(back, BootState { first: Slot::A, left: [3, 0] });
        let reached = PendingTry { reached: true, ..tried };
        let p = plan(Slot::A, &block("ORDER=A B\nA_LEFT=3\nB_LEFT=0\n"), Format::Grub, Some(reached)).unwrap();
        assert_eq!(p.booted, Booted::FellBack { from: Slot::B, to: Slot::A, cause: bootenv::FallBackCause::ResetDuringTrial });
        assert_eq!(p.mark, None, "already as a fall-back leaves it");
        // B's commit reached the bootloader, then a reset before the data
        // partition recorded it: the script spent one of B's three.
        let p = plan(Slot::B, &block("ORDER=B A\nA_LEFT=3\nB_LEFT=2\n"), Format::Grub, Some(reached)).unwrap();
        assert_eq!(p.booted, Booted::TryCommitted(Slot::B));
        let back = BootState::read(&grubenv::parse(&p.mark.unwrap()).unwrap()).unwrap();
        assert_eq!(back, BootState::commit(Slot::B));
    }
}
