//! A window onto physical memory (`/dev/mem`): a memory-mapped NOR flash's
//! words, read and written one 32-bit access at a time.
//!
//! It must not decide what to write: the flash's command protocol and the
//! data are the caller's ([`crate::boot::slotflash`]); it maps the window
//! it is given, bounds-checks every word index, and unmaps on drop.
//!
//! The mapping is uncached (the kernel maps a `/dev/mem` range outside RAM
//! as device memory; `O_SYNC` asks for it on kernels that look at it), and
//! every access is volatile, so each is one bus cycle in program order.

use std::ffi::c_void;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt as _;

/// A mapped window of physical memory, `len` bytes from a page-aligned
/// physical address.
pub struct Window {
    base: *mut u32,
    len: usize,
}

impl Window {
    /// Map `len` bytes (a multiple of 4) of physical memory at `phys`
    /// (page aligned) read-write.
    pub fn map(phys: u64, len: usize) -> Result<Window, String> {
        if len == 0 || !len.is_multiple_of(4) {
            return Err(format!("a window of {len} bytes (want a non-zero multiple of 4)"));
        }
        let offset = libc::off_t::try_from(phys).map_err(|_| format!("physical address {phys:#x} is out of this kernel's /dev/mem range"))?;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_SYNC | libc::O_CLOEXEC)
            .open("/dev/mem")
            .map_err(|e| format!("open /dev/mem: {e}"))?;
        // SAFETY: a fresh shared mapping of `len` bytes of the open descriptor,
        // at an address the kernel picks; nothing else refers to that range.
        // The descriptor may close after the call (the mapping keeps its own
        // reference).
        let p = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, f.as_raw_fd(), offset) };
        if p == libc::MAP_FAILED {
            return Err(format!("mmap /dev/mem at {phys:#x} ({len} bytes): {}", std::io::Error::last_os_error()));
        }
        Ok(Window { base: p.cast::<u32>(), len })
    }

    /// How many 32-bit words the window holds.
    pub fn words(&self) -> usize {
        self.len / 4
    }

    /// Read word `i` (one volatile 32-bit load).
    pub fn get(&self, i: usize) -> Result<u32, String> {
        if i >= self.words() {
            return Err(format!("word {i} is past the window's {}", self.words()));
        }
        // SAFETY: `base` is the start of a live, page-aligned mapping of
        // `len` bytes and `i < len / 4`, so the 4-byte-aligned word at `i`
        // lies inside it.
        Ok(unsafe { std::ptr::read_volatile(self.base.add(i)) })
    }

    /// Write word `i` (one volatile 32-bit store).
    pub fn put(&mut self, i: usize, v: u32) -> Result<(), String> {
        if i >= self.words() {
            return Err(format!("word {i} is past the window's {}", self.words()));
        }
        // SAFETY: as in `get`; the mapping is writable and no Rust reference
        // to its memory exists (only these volatile accesses).
        unsafe { std::ptr::write_volatile(self.base.add(i), v) };
        Ok(())
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        // SAFETY: `base` and `len` are exactly the mapping `map` made, and
        // nothing uses it after the window drops.
        unsafe { libc::munmap(self.base.cast::<c_void>(), self.len) };
    }
}
