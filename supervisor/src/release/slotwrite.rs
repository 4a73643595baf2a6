//! Writing a release's system payload into the inactive A/B slot, in the
//! stager's child (never in PID 1's loop: it copies and hashes tens of
//! megabytes). It owns where each part goes and the write-then-verify of
//! each; it must not touch the running slot or the bootloader's try-boot
//! state (the try is set only after the trial is recorded,
//! `supervise::begin`).
//!
//! Where the parts go ([`targets`]): the system image onto the slot's
//! system partition (the board's `bootloader.slot_devices`) from its first
//! byte; the kernel and the initramfs as `/<slot>/vmlinuz` and
//! `/<slot>/initramfs` on the boot partition (`bootloader.env_device`, FAT),
//! each old file removed first (the boot partition need not hold two of
//! a slot's kernel), the new one written to a `.new` file, fsynced and
//! renamed into place. Every
//! part is read back and hashed against the signed release before the
//! stager reports the release staged. A power cut in the middle leaves a
//! half-written inactive slot that nothing boots: the bootloader's order
//! still names the running slot first, with its attempts.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::release::board::bootloader::{Bootloader, MOUNT_AT};
use crate::release::bootenv::{grubenv, BootState, Slot};
use crate::release::manifest::Digest;
use crate::release::system::{Blob, System};

/// The kernel's and the initramfs's file names in a slot's directory.
pub const KERNEL: &str = "vmlinuz";
pub const INITRAMFS: &str = "initramfs";
/// Copy buffer.
const CHUNK: usize = 256 * 1024;

/// Where slot `slot`'s parts go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Targets {
    /// The system partition (a node or `PARTLABEL=`).
    pub system: String,
    /// The boot partition holding the kernel and initramfs.
    pub boot: String,
    /// Paths on the boot partition.
    pub kernel: String,
    pub initramfs: String,
}

/// Where `slot`'s parts go on a board with `loader` (pure).
pub fn targets(loader: &Bootloader, slot: Slot) -> Result<Targets, String> {
    let Some(devices) = &loader.slot_devices else {
        return Err("the board's [bootloader] names no slot_devices: a system payload has nowhere to go".into());
    };
    let system = match slot {
        Slot::A => &devices[0],
        Slot::B => &devices[1],
    };
    let dir = slot.name();
    Ok(Targets {
        system: system.to_string(),
        boot: loader.env_device.to_string(),
        kernel: format!("/{dir}/{KERNEL}"),
        initramfs: format!("/{dir}/{INITRAMFS}"),
    })
}

/// What the write took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub bytes: u64,
    pub ms: u64,
}

/// Write `sys` (its parts are files in `images`, named as the store names
/// them) into `slot`, reading every part back against its hash.
pub fn write(images: &Path, sys: &System, loader: &Bootloader, slot: Slot, wait_ms: u32) -> Result<Written, String> {
    let began = crate::common::log::now();
    let t = targets(loader, slot)?;
    let part = |b: &Blob| images.join(crate::release::store::image_name(&b.sha256));
    let image = Blob { sha256: sys.image.sha256, size: sys.image.size };
    let (node, _) =
        crate::common::blockname::wait(&t.system, wait_ms).map_err(|e| format!("slot {} system partition {}: {}", slot.name(), t.system, e.text()))?;
    copy_to_device(&part(&image), &node, &image)?;
    with_boot_partition(loader, &t.boot, wait_ms, |root| {
        let dir = root.join(slot.name());
        match std::fs::create_dir(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(format!("mkdir {}: {e}", dir.display())),
            _ => {}
        }
        replace_file(&part(&sys.kernel), &dir, KERNEL, &sys.kernel)?;
        replace_file(&part(&sys.initramfs), &dir, INITRAMFS, &sys.initramfs)
    })?;
    let bytes = sys.parts().iter().map(|p| p.size).sum();
    Ok(Written { bytes, ms: ((crate::common::log::now() - began) * 1e3) as u64 })
}

/// Copy `from` onto the block device `node` from its first byte, fsync,
/// then read the written range back against `want`.
fn copy_to_device(from: &Path, node: &str, want: &Blob) -> Result<(), String> {
    let mut src = std::fs::File::open(from).map_err(|e| format!("open {}: {e}", from.display()))?;
    let mut dev = std::fs::OpenOptions::new().write(true).open(node).map_err(|e| format!("open {node}: {e}"))?;
    let room = dev_size(node)?;
    if room < want.size {
        return Err(format!("{node} holds {room} bytes, the system image needs {}", want.size));
    }
    copy_exact(&mut src, &mut dev, want.size).map_err(|e| format!("write {node}: {e}"))?;
    dev.sync_all().map_err(|e| format!("fsync {node}: {e}"))?;
    drop(dev);
    read_back(Path::new(node), want)
}

/// The size of the block device `node`.
fn dev_size(node: &str) -> Result<u64, String> {
    use std::io::Seek;
    let mut f = std::fs::File::open(node).map_err(|e| format!("open {node}: {e}"))?;
    f.seek(std::io::SeekFrom::End(0)).map_err(|e| format!("size of {node}: {e}"))
}

/// Remove `dir/name` (the inactive slot's: its room is needed on a small
/// boot partition), write `dir/name.new` from `from`, fsync, rename it to
/// `dir/name`, fsync the directory, read it back against `want`.
fn replace_file(from: &Path, dir: &Path, name: &str, want: &Blob) -> Result<(), String> {
    let tmp = dir.join(format!("{name}.new"));
    let to = dir.join(name);
    match std::fs::remove_file(&to) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(format!("remove {}: {e}", to.display())),
        _ => {}
    }
    let mut src = std::fs::File::open(from).map_err(|e| format!("open {}: {e}", from.display()))?;
    let mut out = std::fs::File::create(&tmp).map_err(|e| format!("create {}: {e}", tmp.display()))?;
    copy_exact(&mut src, &mut out, want.size).map_err(|e| format!("write {}: {e}", tmp.display()))?;
    out.sync_all().map_err(|e| format!("fsync {}: {e}", tmp.display()))?;
    drop(out);
    std::fs::rename(&tmp, &to).map_err(|e| format!("rename {} to {name}: {e}", tmp.display()))?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| format!("fsync {}: {e}", dir.display()))?;
    read_back(&to, want)
}

/// Copy exactly `size` bytes.
fn copy_exact(src: &mut impl Read, out: &mut impl Write, size: u64) -> std::io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    let mut left = size;
    while left > 0 {
        let want = usize::try_from(left).unwrap_or(CHUNK).min(CHUNK);
        let chunk = buf.get_mut(..want).unwrap_or_default();
        src.read_exact(chunk)?;
        out.write_all(chunk)?;
        left -= want as u64;
    }
    Ok(())
}

/// The first `want.size` bytes of `path` must hash to `want.sha256`.
pub fn read_back(path: &Path, want: &Blob) -> Result<(), String> {
    let mut f = std::fs::File::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
    let got = hash_prefix(&mut f, want.size).map_err(|e| format!("read back {}: {e}", path.display()))?;
    if got != want.sha256 {
        return Err(format!("{} reads back as {got}, not {} as written", path.display(), want.sha256));
    }
    Ok(())
}

/// SHA-256 of the first `size` bytes of `r`.
pub fn hash_prefix(r: &mut impl Read, size: u64) -> std::io::Result<Digest> {
    let mut h = Hashing(Sha256::new());
    copy_exact(r, &mut h, size)?;
    Ok(Digest(h.0.finalize().into()))
}

/// A writer that only hashes what it is given.
struct Hashing(Sha256);

impl Write for Hashing {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Largest environment block read.
pub const ENV_MAX: usize = 64 * 1024;

/// The try-boot state in the GRUB environment `block` and, when `change`
/// wants another, the block rewritten at its own size (pure).
pub fn rewrite(block: &[u8], change: impl FnOnce(BootState) -> BootState) -> Result<(BootState, BootState, Option<Vec<u8>>), String> {
    let mut vars = grubenv::parse(block).map_err(|e| e.to_string())?;
    let now = BootState::read(&vars).map_err(|e| e.to_string())?;
    let next = change(now);
    if next == now {
        return Ok((now, next, None));
    }
    next.write(&mut vars).map_err(|e| e.to_string())?;
    let out = grubenv::render(&vars, block.len()).map_err(|e| e.to_string())?;
    Ok((now, next, Some(out)))
}

/// Change the bootloader's try-boot state on the device (mount, read,
/// rewrite in place with an fsync, unmount); the state before and after.
pub fn set_boot_state(loader: &Bootloader, wait_ms: u32, change: impl FnOnce(BootState) -> BootState) -> Result<(BootState, BootState), String> {
    with_boot_partition(loader, &loader.env_device, wait_ms, |root| {
        let path = root.join(loader.env_path.trim_start_matches('/'));
        let shown = path.display();
        let block = crate::common::files::read_bounded(&path.to_string_lossy(), ENV_MAX).map_err(|e| format!("read {shown}: {e}"))?;
        let (now, next, out) = rewrite(&block, change).map_err(|e| format!("{shown}: {e}"))?;
        if let Some(out) = out {
            let mut f = std::fs::OpenOptions::new().write(true).open(&path).map_err(|e| format!("open {shown}: {e}"))?;
            f.write_all(&out).map_err(|e| format!("write {shown}: {e}"))?;
            f.sync_all().map_err(|e| format!("fsync {shown}: {e}"))?;
        }
        Ok((now, next))
    })
}

/// Mount the boot partition `device` (FAT) at [`MOUNT_AT`], run `f` on the
/// mount point, unmount (also after an error).
fn with_boot_partition<T>(loader: &Bootloader, device: &str, wait_ms: u32, f: impl FnOnce(&Path) -> Result<T, String>) -> Result<T, String> {
    let (node, _) = crate::common::blockname::wait(device, wait_ms).map_err(|e| format!("boot partition {device}: {}", e.text()))?;
    std::fs::create_dir_all(MOUNT_AT).map_err(|e| format!("mkdir {MOUNT_AT}: {e}"))?;
    let step = loader.mount_step(&node);
    if crate::sys::mount::apply(core::slice::from_ref(&step), &mut crate::sys::mount::SysMounter) != 0 {
        return Err(format!("cannot mount {device} (vfat) at {MOUNT_AT}"));
    }
    let r = f(&PathBuf::from(MOUNT_AT));
    let u = nix::mount::umount2(MOUNT_AT, nix::mount::MntFlags::empty()).map_err(|e| format!("umount {MOUNT_AT}: {e}"));
    let v = r?;
    u.map(|()| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loader(devices: bool) -> Bootloader {
        let text = format!(
            "kind = \"grub\"\nenv_device = \"PARTLABEL=berth-esp\"\nenv_path = \"/EFI/BOOT/grubenv\"\n{}",
            if devices { "slot_devices = [\"PARTLABEL=berth-system-a\", \"PARTLABEL=berth-system-b\"]\n" } else { "" }
        );
        toml::from_str(&text).unwrap()
    }

    #[test]
    fn targets_name_the_slot_partition_and_its_directory() {
        let t = targets(&loader(true), Slot::B).unwrap();
        assert_eq!(t.system, "PARTLABEL=berth-system-b");
        assert_eq!(t.boot, "PARTLABEL=berth-esp");
        assert_eq!((t.kernel.as_str(), t.initramfs.as_str()), ("/B/vmlinuz", "/B/initramfs"));
        assert_eq!(targets(&loader(true), Slot::A).unwrap().system, "PARTLABEL=berth-system-a");
        assert!(targets(&loader(false), Slot::A).unwrap_err().contains("slot_devices"));
    }

    #[test]
    fn a_try_rewrites_the_block_in_place_keeping_other_variables() {
        let mut block = b"# GRUB Environment Block\nORDER=A B\nA_LEFT=3\nB_LEFT=3\nother=kept\n".to_vec();
        block.resize(grubenv::SIZE, b'#');
        let (now, next, out) = rewrite(&block, |s| s.try_once(Slot::B)).unwrap();
        assert_eq!(now, BootState::commit(Slot::A));
        assert_eq!(next, BootState { first: Slot::B, left: [3, 1] });
        let out = out.unwrap();
        assert_eq!(out.len(), grubenv::SIZE);
        let vars = grubenv::parse(&out).unwrap();
        assert_eq!((vars.get("ORDER"), vars.get("B_LEFT"), vars.get("other")), (Some("B A"), Some("1"), Some("kept")));
        assert_eq!(rewrite(&block, |s| s).unwrap().2, None, "no change, no write");
        assert!(rewrite(b"junk", |s| s).is_err());
    }

    #[test]
    fn a_file_is_replaced_and_read_back_against_its_hash() {
        let d = std::env::temp_dir().join(format!("berth-slotwrite-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let src = d.join("src");
        let bytes: Vec<u8> = (0..600_000u32).map(|i| (i % 253) as u8).collect();
        std::fs::write(&src, &bytes).unwrap();
        let want = Blob { sha256: hash_prefix(&mut &bytes[..], bytes.len() as u64).unwrap(), size: bytes.len() as u64 };
        std::fs::write(d.join(KERNEL), b"old").unwrap();
        replace_file(&src, &d, KERNEL, &want).unwrap();
        assert_eq!(std::fs::read(d.join(KERNEL)).unwrap(), bytes);
        assert!(!d.join("vmlinuz.new").exists());
        let wrong = Blob { sha256: Digest([0; 32]), ..want };
        assert!(read_back(&d.join(KERNEL), &wrong).unwrap_err().contains("reads back as"));
        let short = Blob { size: want.size + 1, ..want };
        assert!(replace_file(&src, &d, INITRAMFS, &short).is_err(), "a source shorter than the release says");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
