//! Kernel modules loaded at boot, in the order the compiled board config gives
//! (xtask resolved the dependencies). Modules sit flat in [`DIR`] as
//! `<name>.ko.xz` (decompressed by the kernel) or `<name>.ko`.
//!
//! It must not resolve dependencies: xtask did.
//!
//! A module that is missing or fails to load is logged and skipped: the boot
//! goes on, and whatever needed the module fails later with its own event.

use crate::common::files::errno_text;
use crate::common::log::Event;
use crate::sys;
use nix::errno::Errno;
use std::os::fd::AsFd;

pub const DIR: &str = "/lib/modules";

/// Outcome of one load, for the caller's tally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loaded {
    New,
    Already,
    Failed,
}

/// Candidate files for a module name, most preferred first.
pub fn candidates(name: &str) -> [heapless::String<96>; 2] {
    let mut xz = heapless::String::new();
    let mut plain = heapless::String::new();
    let _ = core::fmt::write(&mut xz, format_args!("{DIR}/{name}.ko.xz"));
    let _ = core::fmt::write(&mut plain, format_args!("{DIR}/{name}.ko"));
    [xz, plain]
}

fn load_one(name: &str) -> Result<Loaded, Errno> {
    let [xz, plain] = candidates(name);
    let (file, flags) = match std::fs::File::open(xz.as_str()) {
        Ok(f) => (f, sys::MODULE_INIT_COMPRESSED_FILE),
        Err(_) => match std::fs::File::open(plain.as_str()) {
            Ok(f) => (f, 0),
            Err(e) => return Err(Errno::from_raw(e.raw_os_error().unwrap_or(libc::ENOENT))),
        },
    };
    match sys::finit_module(file.as_fd(), c"", flags) {
        Ok(()) => Ok(Loaded::New),
        Err(Errno::EEXIST) => Ok(Loaded::Already),
        Err(e) => Err(e),
    }
}

/// Load every module in order; one event each. Returns the number that failed.
pub fn load_all<'a>(names: impl IntoIterator<Item = &'a str>) -> usize {
    let mut failed = 0;
    for name in names {
        let t0 = crate::common::log::now();
        match load_one(name) {
            Ok(l) => Event::info("module.load")
                .kv("name", name)
                .kv("result", if l == Loaded::New { "ok" } else { "present" })
                .kv("ms", format_args!("{:.1}", (crate::common::log::now() - t0) * 1e3))
                .emit(),
            Err(e) => {
                failed += 1;
                Event::error("module.load").kv("name", name).result(&Err::<(), _>(errno_text(e))).emit();
            }
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    #[test]
    fn candidate_paths() {
        let [a, b] = super::candidates("virtio_blk");
        assert_eq!(a.as_str(), "/lib/modules/virtio_blk.ko.xz");
        assert_eq!(b.as_str(), "/lib/modules/virtio_blk.ko");
    }
}
