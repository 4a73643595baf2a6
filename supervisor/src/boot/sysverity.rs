//! The system image through dm-verity (a board whose `storage.system` has
//! `verity`): the initramfs maps the partition with the root hash its own
//! board config carries, reads the mapped device whole once, and mounts
//! it. It owns that boot step; it must not take the root hash from
//! anything writable, and must not let a boot go on whose image failed a
//! block (dm-verity answers EIO for it).
//!
//! Reading it whole costs one pass over the image at boot (a few MiB);
//! without it an altered block would only show when first read, perhaps
//! long after the boot, as a crash of whatever read it.

use crate::common::log::Event;
use crate::release::board::bootloader::SystemVerity;
use std::io::Read;

/// The device-mapper name of the system image.
pub const DM_NAME: &str = "berth-system";

/// Map `node` through dm-verity and read it whole: the mapped device's
/// path, or why the boot must not go on. One `system.verity` line.
pub fn open(node: &str, v: &SystemVerity) -> Result<heapless::String<32>, String> {
    let t0 = std::time::Instant::now();
    let img = v.image().ok_or("the board's verity root or salt is not 64 hex digits")?;
    let root8 = v.root.get(..8).unwrap_or("");
    let (_, path) = match crate::release::verity::map(node, DM_NAME, &img) {
        Ok(m) => m,
        Err((step, e)) => {
            let why = format!("dm-verity {step:?}: {}", crate::common::files::errno_text(e));
            Event::error("system.verity").kv("device", node).kv("root", root8).kv("step", format!("{step:?}")).kv("result", "error").kv("error", &why).emit();
            return Err(why);
        }
    };
    let r = read_whole(&path);
    let ms = t0.elapsed().as_millis() as u64;
    match r {
        Ok(bytes) => {
            Event::info("system.verity").kv("device", node).kv("root", root8).kv("bytes", bytes).kv("ms", ms).kv("result", "ok").emit();
            Ok(path)
        }
        Err(e) => {
            let why = format!("a block of the system image does not match its hash tree ({e})");
            Event::error("system.verity").kv("device", node).kv("root", root8).kv("step", "read").kv("result", "error").kv("error", &why).emit();
            let _ = crate::release::verity::remove(DM_NAME);
            Err(why)
        }
    }
}

/// Read `path` to its end; the bytes read.
fn read_whole(path: &str) -> std::io::Result<u64> {
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut n = 0u64;
    loop {
        match f.read(&mut buf)? {
            0 => return Ok(n),
            k => n += k as u64,
        }
    }
}
