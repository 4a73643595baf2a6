//! The boot disk of a boot through the firmware and the bootloader
//! (x86_64: OVMF, GRUB), the first piece of A/B system slots.
//!
//! Layout, one GPT disk (the guest's `/dev/vda`; the data partition stays
//! the second disk, `/dev/vdb`, as in the kernel-direct boots):
//!
//! 1. `berth-esp`: the EFI system partition, FAT. `/EFI/BOOT/BOOTX64.EFI`
//!    is GRUB (`grub-mkimage -O x86_64-efi`, prefix `/EFI/BOOT`, where its
//!    `grub.cfg` and its 1024-byte `grubenv` are too). Each slot's kernel
//!    and initramfs are on it under `/A` and `/B`: GRUB and the firmware
//!    read FAT anyway, and a slot's boot files stay two plain files.
//! 2. `berth-system-a`, 3. `berth-system-b`: each slot's system image (the
//!    squashfs as the kernel-direct boot has it). Slot X's initramfs is
//!    the board's with one more member, its board config naming
//!    `PARTLABEL=berth-system-x` as the system image (the kernel unpacks
//!    concatenated archives in order, the later file replacing the
//!    earlier), so each slot mounts its own image without berth reading
//!    the command line.
//!
//! The GPT is written here (protective MBR, primary header and entries,
//! backup entries and header, with their CRC32s): Debian's `sfdisk` is
//! not among the project's tools, and the format is small. The FAT is made
//! by `mkfs.vfat -C` in a plain file and filled by `mcopy`, then copied
//! into its partition; the environment block is read and written in place
//! with mtools' `image@@offset`, so nothing is ever mounted.
//!
//! The boot script ([`grub_cfg`]) is RAUC's GRUB scheme: `ORDER` and
//! `A_LEFT` / `B_LEFT` in `grubenv`; the first slot of `ORDER` with 1 to 3
//! attempts left gets one fewer, saved before its kernel loads, and boots
//! with `berth.slot=X`. When no slot has attempts left, both get 3 again
//! and `ORDER` is tried once more (RAUC's reset): a device always boots
//! something. `qemu_tests::bootloader::choose` is the same choice in Rust.

use crate::artifacts::Artifacts;
use crate::cpio::Cpio;
use crate::run_cmd;
use berth::release::board::bootloader::SystemVerity;
use qemu_tests::bootloader::{left_var, system_label, GrubEnv, ATTEMPTS, ORDER, SLOTS};
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// GPT name of the EFI system partition.
pub const ESP_LABEL: &str = "berth-esp";
/// Where GRUB, its script and its environment live on the ESP.
pub const GRUB_DIR: &str = "/EFI/BOOT";
/// The firmware's code (read-only) and its variable store template, as
/// Debian's `ovmf` installs them (the 4 MiB builds, without Secure Boot).
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
/// GRUB's x86_64-efi modules, as `grub-efi-amd64-bin` installs them.
const GRUB_LIB: &str = "/usr/lib/grub/x86_64-efi";
/// The modules linked into GRUB: the partition table, the file systems a
/// slot may use, the Linux loader, the script's commands.
const GRUB_MODULES: &[&str] = &["part_gpt", "fat", "ext2", "squash4", "linux", "normal", "loadenv", "test", "echo", "configfile", "search", "boot", "efi_gop"];
/// GPT partition type GUIDs: EFI system, Linux file system data.
pub(crate) const ESP_TYPE: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
pub(crate) const LINUX_TYPE: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
const SECTOR: u64 = 512;
pub(crate) const MIB: u64 = 1 << 20;
/// GPT partition entries (the usual 128 of 128 bytes: 32 sectors).
const ENTRIES: u64 = 128;
const ENTRY_SIZE: u64 = 128;
const ENTRY_SECTORS: u64 = ENTRIES * ENTRY_SIZE / SECTOR;

/// The firmware of a boot and its disk: passed to QEMU as two pflash
/// drives and the first virtio disk.
#[derive(Debug, Clone)]
pub struct Firmware {
    pub code: PathBuf,
    /// This run's writable copy of the variable store.
    pub vars: PathBuf,
    pub disk: PathBuf,
    /// `code` goes to `-bios` (U-Boot) instead of the first pflash bank.
    pub bios: bool,
}

impl Firmware {
    /// The firmware's pflash drives (code read-only, variables writable).
    pub fn pflash_args(&self) -> Vec<String> {
        let code = match self.bios {
            true => vec!["-bios".into(), self.code.display().to_string()],
            false => vec!["-drive".into(), format!("if=pflash,format=raw,unit=0,readonly=on,file={}", self.code.display())],
        };
        code.into_iter().chain(["-drive".into(), format!("if=pflash,format=raw,unit=1,file={}", self.vars.display())]).collect()
    }

    /// The firmware of a run whose files go beside `disk`: a fresh copy of
    /// the variable store unless the run has one already.
    pub fn for_disk(disk: &Path) -> Result<Firmware, String> {
        for f in [OVMF_CODE, OVMF_VARS] {
            if !Path::new(f).is_file() {
                return Err(format!("{f} is missing: the bootloader boot needs Debian's `ovmf` (cargo xtask test installs it)"));
            }
        }
        let vars = disk.with_extension("vars.fd");
        if !vars.is_file() {
            fs::copy(OVMF_VARS, &vars).map_err(|e| format!("copy {OVMF_VARS} -> {}: {e}", vars.display()))?;
        }
        Ok(Firmware { code: OVMF_CODE.into(), vars, disk: disk.to_path_buf(), bios: false })
    }
}

/// One GPT partition: its name, type, and first and last sector (inclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub label: String,
    pub type_guid: [u8; 16],
    pub first: u64,
    pub last: u64,
}

impl Part {
    pub fn offset(&self) -> u64 {
        self.first * SECTOR
    }
    pub fn bytes(&self) -> u64 {
        (self.last + 1 - self.first) * SECTOR
    }
}

/// A GUID's on-disk bytes from its text form (the first three fields
/// little-endian, the rest as written).
pub fn guid(text: &str) -> Result<[u8; 16], String> {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || text.len() != 36 {
        return Err(format!("GUID {text:?}: want 8-4-4-4-12 hex digits"));
    }
    let mut b = [0u8; 16];
    for (i, byte) in b.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2).unwrap_or(""), 16).map_err(|_| format!("GUID {text:?}: not hex"))?;
    }
    b[0..4].reverse();
    b[4..6].reverse();
    b[6..8].reverse();
    Ok(b)
}

/// A unique GUID that is the same on every build of the same name (the
/// disk's images are reproducible): SHA-256 of the name, marked version 4.
fn stable_guid(name: &str) -> [u8; 16] {
    use sha2::Digest;
    let h = sha2::Sha256::digest(format!("berth boot disk {name}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    b[7] = (b[7] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    b
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut c = flate2::Crc::new();
    c.update(bytes);
    c.sum()
}

/// Partitions of the given names, types and sizes one after another from
/// 1 MiB, each rounded up to whole MiB, and the disk's size (1 MiB after
/// the last for the backup table).
pub fn layout(wanted: &[(&str, &str, u64)]) -> Result<(Vec<Part>, u64), String> {
    let mut parts = Vec::new();
    let mut at = MIB;
    for (label, type_text, bytes) in wanted {
        if label.is_empty() || label.len() > 36 || !label.is_ascii() {
            return Err(format!("GPT name {label:?}: want 1 to 36 ASCII characters"));
        }
        let size = bytes.div_ceil(MIB).max(1) * MIB;
        parts.push(Part { label: label.to_string(), type_guid: guid(type_text)?, first: at / SECTOR, last: (at + size) / SECTOR - 1 });
        at += size;
    }
    Ok((parts, at + MIB))
}

/// The GPT of a disk of `disk_bytes` holding `parts`: each write as its
/// byte offset and its bytes (protective MBR, primary header and entries,
/// backup entries and header).
pub fn gpt(disk_bytes: u64, parts: &[Part]) -> Result<Vec<(u64, Vec<u8>)>, String> {
    let last_lba = (disk_bytes / SECTOR).checked_sub(1).filter(|l| *l > 2 * ENTRY_SECTORS + 2).ok_or("disk too small for a GPT")?;
    let (first_usable, last_usable) = (2 + ENTRY_SECTORS, last_lba - 1 - ENTRY_SECTORS);
    if parts.len() as u64 > ENTRIES {
        return Err(format!("{} partitions: a GPT here holds at most {ENTRIES}", parts.len()));
    }
    let mut entries = vec![0u8; (ENTRIES * ENTRY_SIZE) as usize];
    for (i, p) in parts.iter().enumerate() {
        if p.first < first_usable || p.last > last_usable || p.last < p.first {
            return Err(format!("partition {} (sectors {}..={}) is outside {first_usable}..={last_usable}", p.label, p.first, p.last));
        }
        let e = &mut entries[i * ENTRY_SIZE as usize..(i + 1) * ENTRY_SIZE as usize];
        e[0..16].copy_from_slice(&p.type_guid);
        e[16..32].copy_from_slice(&stable_guid(&p.label));
        e[32..40].copy_from_slice(&p.first.to_le_bytes());
        e[40..48].copy_from_slice(&p.last.to_le_bytes());
        for (j, unit) in p.label.encode_utf16().take(36).enumerate() {
            e[56 + 2 * j..58 + 2 * j].copy_from_slice(&unit.to_le_bytes());
        }
    }
    let entries_crc = crc32(&entries);
    let header = |me: u64, other: u64, table: u64| {
        let mut h = vec![0u8; SECTOR as usize];
        h[0..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[24..32].copy_from_slice(&me.to_le_bytes());
        h[32..40].copy_from_slice(&other.to_le_bytes());
        h[40..48].copy_from_slice(&first_usable.to_le_bytes());
        h[48..56].copy_from_slice(&last_usable.to_le_bytes());
        h[56..72].copy_from_slice(&stable_guid("disk"));
        h[72..80].copy_from_slice(&table.to_le_bytes());
        h[80..84].copy_from_slice(&(ENTRIES as u32).to_le_bytes());
        h[84..88].copy_from_slice(&(ENTRY_SIZE as u32).to_le_bytes());
        h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
        let crc = crc32(&h[..92]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    };
    let mut mbr = vec![0u8; SECTOR as usize];
    // One partition of type 0xEE over the whole disk (at most 2^32-1 sectors).
    mbr[446..462].copy_from_slice(&[0, 0, 2, 0, 0xee, 0xff, 0xff, 0xff, 1, 0, 0, 0, 0, 0, 0, 0]);
    mbr[458..462].copy_from_slice(&u32::try_from(last_lba).unwrap_or(u32::MAX).to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    let backup_table = last_lba - ENTRY_SECTORS;
    Ok(vec![
        (0, mbr),
        (SECTOR, header(1, last_lba, 2)),
        (2 * SECTOR, entries.clone()),
        (backup_table * SECTOR, entries),
        (last_lba * SECTOR, header(last_lba, 1, backup_table)),
    ])
}

/// The partition named `label` in the primary GPT of `disk` (its bytes
/// as read), checking the header's and the entries' CRC32s.
pub fn find_part(disk: &[u8], label: &str) -> Result<Part, String> {
    let h = disk.get(SECTOR as usize..2 * SECTOR as usize).ok_or("disk shorter than a GPT header")?;
    let u32_at = |b: &[u8], at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let u64_at = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or([0; 8]));
    if &h[0..8] != b"EFI PART" || u32_at(h, 12) != 92 {
        return Err("no GPT header at sector 1".into());
    }
    let mut copy = h[..92].to_vec();
    copy[16..20].fill(0);
    if crc32(&copy) != u32_at(h, 16) {
        return Err("the GPT header's CRC32 is wrong".into());
    }
    let (table, count, size) = (u64_at(h, 72) * SECTOR, u64::from(u32_at(h, 80)), u64::from(u32_at(h, 84)));
    if size != ENTRY_SIZE || count > ENTRIES {
        return Err(format!("GPT with {count} entries of {size} bytes: not one of this disk's"));
    }
    let entries = disk.get(table as usize..(table + count * size) as usize).ok_or("disk shorter than its GPT entries")?;
    if crc32(entries) != u32_at(h, 88) {
        return Err("the GPT entries' CRC32 is wrong".into());
    }
    for e in entries.chunks(size as usize) {
        let units: Vec<u16> = e[56..128].chunks(2).map(|c| u16::from_le_bytes([c[0], c[1]])).take_while(|u| *u != 0).collect();
        if e[0..16] != [0; 16] && String::from_utf16_lossy(&units) == label {
            return Ok(Part { label: label.into(), type_guid: e[0..16].try_into().unwrap_or([0; 16]), first: u64_at(e, 32), last: u64_at(e, 40) });
        }
    }
    Err(format!("the disk has no partition named {label}"))
}

/// The boot script for a kernel command line (without `berth.slot=`).
pub fn grub_cfg(cmdline: &str) -> Result<String, String> {
    if let Some(c) = cmdline.chars().find(|c| (!c.is_ascii_graphic() && *c != ' ') || "\"'\\$;{}#".contains(*c)) {
        return Err(format!("kernel command line {cmdline:?}: {c:?} cannot go into the boot script"));
    }
    let vars = std::iter::once(ORDER.to_string()).chain(SLOTS.iter().map(|s| left_var(s))).collect::<Vec<_>>().join(" ");
    let mut t = String::from("# berth's boot script: RAUC's A/B scheme (see xtask's bootdisk).\n");
    t.push_str("set timeout=0\n");
    t.push_str(&format!("load_env -f ${{prefix}}/grubenv {vars}\n"));
    t.push_str("set slot=\"\"\n");
    t.push_str(&choose_loop());
    t.push_str("if [ -z \"${slot}\" ]; then\n  echo \"berth: no slot has attempts left: each gets ");
    t.push_str(&format!("{ATTEMPTS} again\"\n"));
    for s in SLOTS {
        t.push_str(&format!("  set {}={ATTEMPTS}\n", left_var(s)));
    }
    t.push_str(&choose_loop());
    t.push_str("fi\n");
    t.push_str(&format!("save_env -f ${{prefix}}/grubenv {vars}\n"));
    t.push_str("echo \"berth: booting slot ${slot}\"\n");
    t.push_str(&format!("linux /${{slot}}/vmlinuz {cmdline} berth.slot=${{slot}}\n"));
    t.push_str("initrd /${slot}/initramfs\nboot\n");
    Ok(t)
}

/// The script's pass over `ORDER`: the first slot with 1 to [`ATTEMPTS`]
/// left takes one (GRUB has no arithmetic: one branch per count).
fn choose_loop() -> String {
    let mut t = format!("for s in ${{{ORDER}}}; do\n  if [ -z \"${{slot}}\" ]; then\n");
    for slot in SLOTS {
        let var = left_var(slot);
        t.push_str(&format!("    if [ \"${{s}}\" = \"{slot}\" ]; then\n"));
        for n in (1..=ATTEMPTS).rev() {
            let word = if n == ATTEMPTS { "if" } else { "elif" };
            t.push_str(&format!("      {word} [ \"${{{var}}}\" = \"{n}\" ]; then set {var}={}; set slot={slot}\n", n - 1));
        }
        t.push_str("      fi\n    fi\n");
    }
    t.push_str("  fi\ndone\n");
    t
}

/// Slot `slot`'s initramfs: the board's, then one more archive with the
/// board config naming the slot's system partition.
pub(crate) fn slot_initramfs(a: &Artifacts, slot: &str, verity: &SystemVerity) -> Result<Vec<u8>, String> {
    let mut board = a.board.clone();
    let dev = format!("PARTLABEL={}", system_label(slot));
    board.storage.system.device = dev.as_str().try_into().map_err(|_| format!("{dev}: too long for a board's device"))?;
    board.storage.system.verity = Some(verity.clone());
    board.validate().map_err(|e| format!("board {} for slot {slot}: {e}", board.name))?;
    let mut extra = Cpio::new();
    extra.add_file("etc/berth/board.bin", 0o644, &board.to_postcard().map_err(|e| e.to_string())?);
    let mut bytes = fs::read(&a.initramfs).map_err(|e| format!("{}: {e}", a.initramfs.display()))?;
    while !bytes.len().is_multiple_of(4) {
        bytes.push(0);
    }
    bytes.extend(extra.finish());
    Ok(bytes)
}

/// mtools on the FAT at `offset` of `image`, without its geometry check
/// (a partition's size need not be whole tracks).
pub(crate) fn mtool(tool: &str, image: &Path, offset: u64) -> Command {
    let mut cmd = Command::new(tool);
    cmd.env("MTOOLS_SKIP_CHECK", "1").arg("-i").arg(format!("{}@@{offset}", image.display()));
    cmd
}

/// The ESP's files in `work`, then the FAT image `work/esp.img` holding them.
fn make_esp(a: &Artifacts, cmdline: &str, verity: &SystemVerity, work: &Path) -> Result<PathBuf, String> {
    let efi = work.join("BOOTX64.EFI");
    let mut mk = Command::new("grub-mkimage");
    mk.args(["-O", "x86_64-efi", "-d", GRUB_LIB, "-p", GRUB_DIR, "-o"]).arg(&efi).args(GRUB_MODULES);
    run_cmd(&mut mk)?;
    let cfg = work.join("grub.cfg");
    fs::write(&cfg, grub_cfg(cmdline)?).map_err(|e| format!("{}: {e}", cfg.display()))?;
    let env = work.join("grubenv");
    let _ = fs::remove_file(&env);
    run_cmd(Command::new("grub-editenv").arg(&env).arg("create"))?;
    let mut set = Command::new("grub-editenv");
    set.arg(&env).arg("set");
    for (name, value) in &GrubEnv::fresh().vars {
        set.arg(format!("{name}={value}"));
    }
    run_cmd(&mut set)?;
    let mut files = vec![(efi, format!("{GRUB_DIR}/BOOTX64.EFI")), (cfg, format!("{GRUB_DIR}/grub.cfg")), (env, format!("{GRUB_DIR}/grubenv"))];
    for slot in SLOTS {
        let initrd = work.join(format!("initramfs-{slot}"));
        fs::write(&initrd, slot_initramfs(a, slot, verity)?).map_err(|e| format!("{}: {e}", initrd.display()))?;
        files.push((a.kernel.image.clone(), format!("/{slot}/vmlinuz")));
        files.push((initrd, format!("/{slot}/initramfs")));
    }
    let bytes: u64 = files.iter().map(|(f, _)| fs::metadata(f).map(|m| m.len()).unwrap_or(0)).sum();
    // Room for the FAT's tables, a slot's kernel and initramfs written
    // anew by an update beside the old ones, and a spare MiB; at least
    // what FAT32 wants.
    let kib = (bytes + bytes / 2 + bytes / 8 + 2 * MIB).div_ceil(MIB).max(40) * 1024;
    let esp = work.join("esp.img");
    let _ = fs::remove_file(&esp);
    run_cmd(Command::new("mkfs.vfat").args(["-C", "-n", "BERTH-ESP"]).arg(&esp).arg(kib.to_string()))?;
    run_cmd(mtool("mmd", &esp, 0).args(["::/EFI", "::/EFI/BOOT"]).args(SLOTS.map(|s| format!("::/{s}"))))?;
    for (from, to) in &files {
        run_cmd(mtool("mcopy", &esp, 0).arg(from).arg(format!("::{to}")))?;
    }
    Ok(esp)
}

/// Build the boot disk `out` for booting `a`'s test system (with the agent)
/// with `cmdline` (see the module's doc for its layout).
pub fn build(a: &Artifacts, cmdline: &str, out: &Path) -> Result<(), String> {
    if a.board.arch != berth::release::board::Arch::X86_64 {
        return Err(format!("board {}: the boot disk has GRUB for x86_64 EFI only, not {}", a.board.name, a.board.arch.name()));
    }
    crate::tools::ensure_bootloader_tools()?;
    let work = out.with_extension("esp.d");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let (system, verity) = verified_system(a, &work)?;
    let esp = make_esp(a, cmdline, &verity, &work)?;
    write_disk(&esp, ESP_LABEL, &system, out)?;
    let _ = fs::remove_dir_all(&work);
    Ok(())
}

/// The slots' system image in `work`: the test system with its dm-verity
/// hash tree appended, and the parameters only the slots' initramfs (the
/// boot artifact) carries.
pub(crate) fn verified_system(a: &Artifacts, work: &Path) -> Result<(PathBuf, SystemVerity), String> {
    let system = work.join("system.img");
    fs::copy(&a.system_test, &system).map_err(|e| format!("{}: {e}", a.system_test.display()))?;
    let v = crate::verity::append_tree(&system, None)?;
    let verity = SystemVerity {
        size: fs::metadata(&system).map_err(|e| format!("{}: {e}", system.display()))?.len(),
        root: crate::verity::hex(&v.root).as_str().try_into().map_err(|_| "verity root: not 64 hex digits".to_string())?,
        salt: crate::verity::hex(&v.salt).as_str().try_into().map_err(|_| "verity salt: not 64 hex digits".to_string())?,
    };
    Ok((system, verity))
}

/// Write the disk `out`: the FAT image `boot` as its first partition
/// (`boot_label`), then each slot's system partition holding `system`,
/// with room for a system image twice its size (an update's).
pub(crate) fn write_disk(boot: &Path, boot_label: &str, system: &Path, out: &Path) -> Result<(), String> {
    let size = |p: &Path| fs::metadata(p).map(|m| m.len()).map_err(|e| format!("{}: {e}", p.display()));
    let (esp_bytes, system_bytes) = (size(boot)?, size(system)?.saturating_mul(2));
    let mut wanted = vec![(boot_label.to_string(), ESP_TYPE, esp_bytes)];
    wanted.extend(SLOTS.iter().map(|s| (system_label(s), LINUX_TYPE, system_bytes)));
    let wanted: Vec<(&str, &str, u64)> = wanted.iter().map(|(l, t, b)| (l.as_str(), *t, *b)).collect();
    let (parts, disk_bytes) = layout(&wanted)?;
    let _ = fs::remove_file(out);
    let f = fs::File::create(out).map_err(|e| format!("{}: {e}", out.display()))?;
    f.set_len(disk_bytes).map_err(|e| format!("{}: {e}", out.display()))?;
    for (p, src) in parts.iter().zip(std::iter::once(boot).chain(SLOTS.iter().map(|_| system))) {
        let bytes = fs::read(src).map_err(|e| format!("{}: {e}", src.display()))?;
        if bytes.len() as u64 > p.bytes() {
            return Err(format!("{} ({} bytes) does not fit its partition {} ({} bytes)", src.display(), bytes.len(), p.label, p.bytes()));
        }
        f.write_all_at(&bytes, p.offset()).map_err(|e| format!("{} at {}: {e}", out.display(), p.label))?;
    }
    for (at, bytes) in gpt(disk_bytes, &parts)? {
        f.write_all_at(&bytes, at).map_err(|e| format!("{}: GPT: {e}", out.display()))?;
    }
    f.sync_all().map_err(|e| format!("{}: {e}", out.display()))
}

/// The ESP of the boot disk `disk`.
fn esp_of(disk: &Path) -> Result<Part, String> {
    part_of(disk, ESP_LABEL)
}

/// The partition named `label` on the boot disk `disk`, read from its GPT.
fn part_of(disk: &Path, label: &str) -> Result<Part, String> {
    let mut head = vec![0u8; ((2 + ENTRY_SECTORS) * SECTOR) as usize];
    let f = fs::File::open(disk).map_err(|e| format!("{}: {e}", disk.display()))?;
    f.read_exact_at(&mut head, 0).map_err(|e| format!("{}: reading its GPT: {e}", disk.display()))?;
    find_part(&head, label).map_err(|e| format!("{}: {e}", disk.display()))
}

/// Flip one bit of a byte a third of the way into slot `slot`'s system
/// image on `disk` (inside the squashfs data, whose length its superblock
/// states, before its hash tree); the byte's offset in the partition.
pub fn alter_system(disk: &Path, slot: &str) -> Result<u64, String> {
    let p = part_of(disk, &system_label(slot))?;
    let f = fs::OpenOptions::new().read(true).write(true).open(disk).map_err(|e| format!("{}: {e}", disk.display()))?;
    // squashfs: magic `hsqs`, `bytes_used` (u64 little-endian) at byte 40.
    let mut sb = [0u8; 48];
    f.read_exact_at(&mut sb, p.offset()).map_err(|e| format!("{}: {e}", disk.display()))?;
    if &sb[..4] != b"hsqs" {
        return Err(format!("{}: slot {slot}'s partition holds no squashfs", disk.display()));
    }
    let used = u64::from_le_bytes(sb[40..48].try_into().unwrap_or_default());
    let at = used / 3;
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, p.offset() + at).map_err(|e| format!("{}: {e}", disk.display()))?;
    b[0] ^= 0x01;
    f.write_all_at(&b, p.offset() + at).map_err(|e| format!("{}: {e}", disk.display()))?;
    f.sync_all().map_err(|e| format!("{}: {e}", disk.display()))?;
    Ok(at)
}

/// The environment block on the boot disk `disk`.
pub fn read_grubenv(disk: &Path) -> Result<Vec<u8>, String> {
    let esp = esp_of(disk)?;
    let tmp = disk.with_extension("grubenv");
    let _ = fs::remove_file(&tmp);
    run_cmd(mtool("mcopy", disk, esp.offset()).arg(format!("::{GRUB_DIR}/grubenv")).arg(&tmp))?;
    let bytes = fs::read(&tmp).map_err(|e| format!("{}: {e}", tmp.display()));
    let _ = fs::remove_file(&tmp);
    bytes
}

/// Replace the environment block on the boot disk `disk`.
pub fn write_grubenv(disk: &Path, block: &[u8]) -> Result<(), String> {
    GrubEnv::parse(block)?;
    let esp = esp_of(disk)?;
    let tmp = disk.with_extension("grubenv");
    fs::write(&tmp, block).map_err(|e| format!("{}: {e}", tmp.display()))?;
    let r = run_cmd(mtool("mcopy", disk, esp.offset()).args(["-D", "o"]).arg(&tmp).arg(format!("::{GRUB_DIR}/grubenv")));
    let _ = fs::remove_file(&tmp);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_are_mixed_endian() {
        let g = guid(ESP_TYPE).unwrap();
        assert_eq!(g[..8], [0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11]);
        assert_eq!(g[8..], [0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b]);
        assert!(guid("C12A7328").is_err());
        assert!(guid("G12A7328-F81F-11D2-BA4B-00A0C93EC93B").is_err());
    }

    #[test]
    fn the_gpt_reads_back_with_its_crcs_and_backup() {
        let (parts, size) = layout(&[(ESP_LABEL, ESP_TYPE, 3 * MIB + 1), ("berth-system-a", LINUX_TYPE, 100)]).unwrap();
        assert_eq!((parts[0].first, parts[0].last, parts[1].first), (2048, 2048 + 4 * 2048 - 1, 2048 * 5));
        assert_eq!(size, 7 * MIB);
        let mut disk = vec![0u8; size as usize];
        for (at, bytes) in gpt(size, &parts).unwrap() {
            disk[at as usize..at as usize + bytes.len()].copy_from_slice(&bytes);
        }
        assert_eq!(&disk[510..512], &[0x55, 0xaa]);
        assert_eq!(disk[450], 0xee);
        assert_eq!(find_part(&disk, "berth-system-a").unwrap(), parts[1]);
        assert_eq!(find_part(&disk, ESP_LABEL).unwrap().bytes(), 4 * MIB);
        assert!(find_part(&disk, "berth-system-b").unwrap_err().contains("no partition named"));
        // The backup header mirrors the primary, pointing back at it.
        let last = size as usize - SECTOR as usize;
        assert_eq!(&disk[last..last + 8], b"EFI PART");
        assert_eq!(disk[last + 32..last + 40], 1u64.to_le_bytes());
        assert_eq!(disk[last + 88..last + 92], disk[512 + 88..512 + 92]);
        // One flipped byte in the entries is caught.
        disk[1024 + 60] ^= 1;
        assert!(find_part(&disk, ESP_LABEL).unwrap_err().contains("entries' CRC32"));
    }

    #[test]
    fn partitions_outside_the_disk_are_refused() {
        let (parts, size) = layout(&[("x", LINUX_TYPE, 4 * MIB)]).unwrap();
        assert!(gpt(size - MIB, &parts).unwrap_err().contains("outside"));
        assert!(layout(&[("", LINUX_TYPE, 1)]).is_err());
    }

    #[test]
    fn the_boot_script_counts_down_before_it_boots_and_resets_when_all_are_used() {
        let cfg = grub_cfg("console=ttyS0 loglevel=4").unwrap();
        let load = cfg.find("load_env -f ${prefix}/grubenv ORDER A_LEFT B_LEFT").unwrap();
        let save = cfg.find("save_env -f ${prefix}/grubenv ORDER A_LEFT B_LEFT").unwrap();
        let linux = cfg.find("linux /${slot}/vmlinuz console=ttyS0 loglevel=4 berth.slot=${slot}\n").unwrap();
        assert!(load < save && save < linux);
        assert!(cfg.contains("if [ \"${A_LEFT}\" = \"3\" ]; then set A_LEFT=2; set slot=A\n"));
        assert!(cfg.contains("elif [ \"${B_LEFT}\" = \"1\" ]; then set B_LEFT=0; set slot=B\n"));
        // The reset: both to 3, then the same pass again.
        let reset = cfg.find("  set A_LEFT=3\n  set B_LEFT=3\n").unwrap();
        assert_eq!(cfg.matches("for s in ${ORDER}; do").count(), 2);
        assert!(cfg.rfind("for s in").unwrap() > reset);
        assert!(cfg.ends_with("initrd /${slot}/initramfs\nboot\n"));
    }

    #[test]
    fn a_command_line_grub_would_expand_is_refused() {
        for bad in ["a $x", "a \"b\"", "a;b", "a\nb", "a\\b", "a#b"] {
            assert!(grub_cfg(bad).unwrap_err().contains("cannot go into the boot script"), "{bad:?}");
        }
        assert!(grub_cfg("lsm=lockdown,yama berth.test=x").is_ok());
    }
}
