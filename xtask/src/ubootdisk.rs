//! The boot disk of a boot through U-Boot (aarch64, armv7): the A/B slots
//! of `bootdisk`, with U-Boot as the firmware instead of OVMF and GRUB.
//!
//! QEMU runs Debian's `u-boot-qemu` build for its `virt` machine
//! (`qemu_arm64`, `qemu_arm`) with `-bios`, which puts it in the first
//! flash bank (as the package's README says; a pflash unit 0 would need
//! `u-boot.bin` padded to the bank's 64 MiB). Those builds keep their environment in the second bank
//! (`CONFIG_ENV_IS_IN_FLASH`, `CONFIG_ENV_ADDR=0x4000000`, the bank's
//! start, `CONFIG_ENV_SIZE=0x40000`, not redundant), so each boot disk has
//! its own 64 MiB flash image beside it ([`flash_of`]), given to QEMU as
//! pflash unit 1 and kept between the boots of one scenario; `saveenv`
//! writes it. A never-written bank holds no valid block: U-Boot then starts
//! from its built-in environment. berth on the booted system reads and
//! rewrites that same block (the board's `[bootloader] kind = "uboot"`,
//! whose `env_addr`, `env_size` and `env_sector` are these values).
//!
//! The disk is `bootdisk`'s GPT with a FAT boot partition (`berth-boot`)
//! first: U-Boot's distro boot finds `/boot.scr` on it (the first
//! partition when none is marked bootable) and sources it. The script
//! ([`boot_script`], U-Boot's hush, wrapped by `mkimage -T script`) is the
//! GRUB script's scheme with the variables in U-Boot's environment: when
//! `ORDER` is unset (a fresh flash) it starts from `ORDER="A B"` and
//! [`ATTEMPTS`] each; the first slot of `ORDER` with attempts left gets
//! one fewer, the reset when none has any, then `saveenv` before the slot's
//! kernel and initramfs (`/A` or `/B` on the FAT) are loaded and booted
//! with `berth.slot=X` after the board's command line. aarch64 boots an
//! uncompressed `Image` with `booti` (a gzipped one is unpacked here),
//! armv7 its `zImage` with `bootz`; both with the device tree QEMU made
//! (`fdt_addr`) and the initramfs's size from the load (`filesize`).

use crate::artifacts::Artifacts;
use crate::bootdisk::{mtool, slot_initramfs, verified_system, write_disk, Firmware, MIB};
use crate::run_cmd;
use berth::release::board::bootloader::SystemVerity;
use berth::release::board::Arch;
use berth::release::bootenv::{ubootenv, Vars};
use qemu_tests::bootloader::{left_var, ATTEMPTS, ORDER, SLOTS};
use qemu_tests::ubootcase::SLOT_VAR;
use std::fs;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// GPT name of the FAT boot partition.
pub const BOOT_LABEL: &str = "berth-boot";
/// Size of a flash bank of QEMU's `virt` machine (the image must match).
pub const FLASH_BYTES: u64 = 64 * MIB;
/// The environment: its offset in the second bank and its size.
pub const ENV_OFFSET: u64 = 0;
pub const ENV_SIZE: usize = 0x40000;

/// U-Boot for the board's arch, as `u-boot-qemu` installs it, and the
/// `mkimage -A` name of that arch.
fn uboot_of(arch: Arch) -> Result<(&'static str, &'static str), String> {
    match arch {
        Arch::Aarch64 => Ok(("/usr/lib/u-boot/qemu_arm64/u-boot.bin", "arm64")),
        Arch::Armv7 => Ok(("/usr/lib/u-boot/qemu_arm/u-boot.bin", "arm")),
        other => Err(format!("no U-Boot boot for {} (aarch64 and armv7 only)", other.name())),
    }
}

/// The flash image holding the environment of the boot disk `disk`.
pub fn flash_of(disk: &Path) -> PathBuf {
    disk.with_extension("env.flash")
}

/// The firmware of a boot of `disk` on `arch`: U-Boot, and the disk's
/// flash image (made empty when it is not there yet).
pub fn firmware_for_disk(arch: Arch, disk: &Path) -> Result<Firmware, String> {
    let (uboot, _) = uboot_of(arch)?;
    if !Path::new(uboot).is_file() {
        return Err(format!("{uboot} is missing: the U-Boot boot needs Debian's `u-boot-qemu` (cargo xtask test installs it)"));
    }
    let flash = flash_of(disk);
    if !flash.is_file() {
        let f = fs::File::create(&flash).map_err(|e| format!("{}: {e}", flash.display()))?;
        f.set_len(FLASH_BYTES).map_err(|e| format!("{}: {e}", flash.display()))?;
    }
    Ok(Firmware { code: uboot.into(), vars: flash, disk: disk.to_path_buf(), bios: true })
}

/// The boot script for `arch` and a kernel command line (without
/// `berth.slot=`); see the module's doc.
pub fn boot_script(arch: Arch, cmdline: &str) -> Result<String, String> {
    if let Some(c) = cmdline.chars().find(|c| (!c.is_ascii_graphic() && *c != ' ') || "\"'\\$;{}#".contains(*c)) {
        return Err(format!("kernel command line {cmdline:?}: {c:?} cannot go into the boot script"));
    }
    let boot = match arch {
        Arch::Aarch64 => "booti",
        Arch::Armv7 => "bootz",
        other => return Err(format!("no U-Boot boot command for {}", other.name())),
    };
    let mut t = String::from("# berth's boot script: RAUC's A/B scheme (see xtask's ubootdisk).\n");
    t.push_str(&format!("if test -z \"${{{ORDER}}}\"; then\n  setenv {ORDER} \"{}\"\n", SLOTS.join(" ")));
    for s in SLOTS {
        t.push_str(&format!("  setenv {} {ATTEMPTS}\n", left_var(s)));
    }
    t.push_str(&format!("fi\nsetenv {SLOT_VAR}\n"));
    t.push_str(&choose_loop());
    t.push_str(&format!("if test -z \"${{{SLOT_VAR}}}\"; then\n  echo \"berth: no slot has attempts left: each gets {ATTEMPTS} again\"\n"));
    for s in SLOTS {
        t.push_str(&format!("  setenv {} {ATTEMPTS}\n", left_var(s)));
    }
    t.push_str(&choose_loop());
    t.push_str("fi\nsaveenv\n");
    t.push_str(&format!("echo \"berth: booting slot ${{{SLOT_VAR}}}\"\n"));
    t.push_str(&format!("setenv bootargs \"{cmdline} berth.slot=${{{SLOT_VAR}}}\"\n"));
    let dev = "${devtype} ${devnum}:${distro_bootpart}";
    t.push_str(&format!("load {dev} ${{kernel_addr_r}} /${{{SLOT_VAR}}}/vmlinuz\n"));
    t.push_str(&format!("load {dev} ${{ramdisk_addr_r}} /${{{SLOT_VAR}}}/initramfs\n"));
    t.push_str(&format!("{boot} ${{kernel_addr_r}} ${{ramdisk_addr_r}}:${{filesize}} ${{fdt_addr}}\n"));
    Ok(t)
}

/// The script's pass over `ORDER`, as the GRUB script's (one branch per
/// count: a value that is no count is no attempt).
fn choose_loop() -> String {
    let mut t = format!("for s in ${{{ORDER}}}; do\n  if test -z \"${{{SLOT_VAR}}}\"; then\n");
    for slot in SLOTS {
        let var = left_var(slot);
        t.push_str(&format!("    if test \"${{s}}\" = \"{slot}\"; then\n"));
        for n in (1..=ATTEMPTS).rev() {
            let word = if n == ATTEMPTS { "if" } else { "elif" };
            t.push_str(&format!("      {word} test \"${{{var}}}\" = \"{n}\"; then setenv {var} {}; setenv {SLOT_VAR} {slot}\n", n - 1));
        }
        t.push_str("      fi\n    fi\n");
    }
    t.push_str("  fi\ndone\n");
    t
}

/// The kernel U-Boot loads: armv7's zImage as it is; aarch64's Image,
/// unpacked into `work` when the package ships it gzipped.
fn kernel_for(a: &Artifacts, work: &Path) -> Result<PathBuf, String> {
    let image = &a.kernel.image;
    if a.board.arch != Arch::Aarch64 {
        return Ok(image.clone());
    }
    let bytes = fs::read(image).map_err(|e| format!("{}: {e}", image.display()))?;
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok(image.clone());
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes.as_slice()).read_to_end(&mut out).map_err(|e| format!("{}: gunzip: {e}", image.display()))?;
    let unpacked = work.join("Image");
    fs::write(&unpacked, out).map_err(|e| format!("{}: {e}", unpacked.display()))?;
    Ok(unpacked)
}

/// The boot partition's files in `work`, then its FAT image `work/boot.img`.
fn make_boot_fat(a: &Artifacts, cmdline: &str, verity: &SystemVerity, work: &Path) -> Result<PathBuf, String> {
    let (_, mkimage_arch) = uboot_of(a.board.arch)?;
    let cmd = work.join("boot.cmd");
    fs::write(&cmd, boot_script(a.board.arch, cmdline)?).map_err(|e| format!("{}: {e}", cmd.display()))?;
    let scr = work.join("boot.scr");
    run_cmd(Command::new("mkimage").args(["-A", mkimage_arch, "-O", "linux", "-T", "script", "-C", "none", "-n", "berth boot", "-d"]).arg(&cmd).arg(&scr))?;
    let kernel = kernel_for(a, work)?;
    let mut files = vec![(scr, "/boot.scr".to_string())];
    for slot in SLOTS {
        let initrd = work.join(format!("initramfs-{slot}"));
        fs::write(&initrd, slot_initramfs(a, slot, verity)?).map_err(|e| format!("{}: {e}", initrd.display()))?;
        files.push((kernel.clone(), format!("/{slot}/vmlinuz")));
        files.push((initrd, format!("/{slot}/initramfs")));
    }
    let bytes: u64 = files.iter().map(|(f, _)| fs::metadata(f).map(|m| m.len()).unwrap_or(0)).sum();
    let kib = (bytes + bytes / 8 + 2 * MIB).div_ceil(MIB).max(40) * 1024;
    let img = work.join("boot.img");
    let _ = fs::remove_file(&img);
    run_cmd(Command::new("mkfs.vfat").args(["-C", "-n", "BERTH-BOOT"]).arg(&img).arg(kib.to_string()))?;
    run_cmd(mtool("mmd", &img, 0).args(SLOTS.map(|s| format!("::/{s}"))))?;
    for (from, to) in &files {
        run_cmd(mtool("mcopy", &img, 0).arg(from).arg(format!("::{to}")))?;
    }
    Ok(img)
}

/// Build the boot disk `out` for booting `a`'s test system (with the agent)
/// through U-Boot with `cmdline`, and drop any flash image of an earlier
/// disk of that name (a fresh disk has a fresh environment).
pub fn build(a: &Artifacts, cmdline: &str, out: &Path) -> Result<(), String> {
    uboot_of(a.board.arch)?;
    crate::tools::ensure_uboot_tools()?;
    let work = out.with_extension("boot.d");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let (system, verity) = verified_system(a, &work)?;
    let img = make_boot_fat(a, cmdline, &verity, &work)?;
    write_disk(&img, BOOT_LABEL, &system, out)?;
    let _ = fs::remove_file(flash_of(out));
    let _ = fs::remove_dir_all(&work);
    Ok(())
}

/// The variables of an environment block; none for a block never written
/// (all zeros or all ones, as a fresh or erased flash).
pub fn parse_env(block: &[u8]) -> Result<Vec<(String, String)>, String> {
    if block.iter().all(|b| *b == 0) || block.iter().all(|b| *b == 0xff) {
        return Ok(Vec::new());
    }
    let vars = ubootenv::parse(block, false).map_err(|e| format!("U-Boot environment: {e}"))?;
    Ok(vars.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect())
}

/// The variables of the environment in the flash image of `disk` (none
/// before its first boot: the disk has no flash image yet).
pub fn read_env(disk: &Path) -> Result<Vec<(String, String)>, String> {
    let flash = flash_of(disk);
    if !flash.exists() {
        return Ok(Vec::new());
    }
    let f = fs::File::open(&flash).map_err(|e| format!("{}: {e}", flash.display()))?;
    let mut block = vec![0u8; ENV_SIZE];
    f.read_exact_at(&mut block, ENV_OFFSET).map_err(|e| format!("{}: reading the environment: {e}", flash.display()))?;
    parse_env(&block).map_err(|e| format!("{}: {e}", flash.display()))
}

/// Replace the environment in the flash image of `disk` by `vars` (made
/// when the disk has not booted yet).
pub fn write_env(arch: Arch, disk: &Path, vars: &[(String, String)]) -> Result<(), String> {
    let fw = firmware_for_disk(arch, disk)?;
    let mut v = Vars::default();
    for (name, value) in vars {
        v.set(name, value).map_err(|e| format!("U-Boot variable {name:?}: {e}"))?;
    }
    let block = ubootenv::render(&v, ENV_SIZE, None).map_err(|e| format!("U-Boot environment: {e}"))?;
    let f = fs::OpenOptions::new().write(true).open(&fw.vars).map_err(|e| format!("{}: {e}", fw.vars.display()))?;
    f.write_all_at(&block, ENV_OFFSET).map_err(|e| format!("{}: {e}", fw.vars.display()))?;
    f.sync_all().map_err(|e| format!("{}: {e}", fw.vars.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_starts_fresh_counts_down_and_saves_before_it_loads() {
        let t = boot_script(Arch::Aarch64, "console=ttyAMA0 loglevel=4").unwrap();
        assert!(t.starts_with("# berth's"));
        let fresh = t.find("if test -z \"${ORDER}\"; then\n  setenv ORDER \"A B\"\n  setenv A_LEFT 3\n  setenv B_LEFT 3\nfi\n").unwrap();
        let save = t.find("saveenv\n").unwrap();
        let args = t.find("setenv bootargs \"console=ttyAMA0 loglevel=4 berth.slot=${berth_slot}\"\n").unwrap();
        let load = t.find("load ${devtype} ${devnum}:${distro_bootpart} ${kernel_addr_r} /${berth_slot}/vmlinuz\n").unwrap();
        assert!(fresh < save && save < args && args < load);
        assert!(t.contains("if test \"${A_LEFT}\" = \"3\"; then setenv A_LEFT 2; setenv berth_slot A\n"));
        assert!(t.contains("elif test \"${B_LEFT}\" = \"1\"; then setenv B_LEFT 0; setenv berth_slot B\n"));
        assert_eq!(t.matches("for s in ${ORDER}; do").count(), 2);
        assert!(t.ends_with("booti ${kernel_addr_r} ${ramdisk_addr_r}:${filesize} ${fdt_addr}\n"));
        assert!(boot_script(Arch::Armv7, "x").unwrap().contains("\nbootz ${kernel_addr_r}"));
        assert!(boot_script(Arch::X86_64, "x").is_err());
        assert!(boot_script(Arch::Armv7, "a $x").unwrap_err().contains("cannot go into the boot script"));
    }

    #[test]
    fn an_environment_block_round_trips_and_a_blank_one_is_empty() {
        assert_eq!(parse_env(&vec![0u8; ENV_SIZE]).unwrap(), Vec::new());
        assert_eq!(parse_env(&vec![0xffu8; ENV_SIZE]).unwrap(), Vec::new());
        let mut v = Vars::default();
        v.set(ORDER, "B A").unwrap();
        v.set("A_LEFT", "2").unwrap();
        let mut block = ubootenv::render(&v, ENV_SIZE, None).unwrap();
        assert_eq!(parse_env(&block).unwrap(), [(ORDER.to_string(), "B A".to_string()), ("A_LEFT".into(), "2".into())]);
        block[10] ^= 1;
        assert!(parse_env(&block).unwrap_err().contains("U-Boot environment"));
    }
}
