//! U-Boot's environment in a memory-mapped CFI NOR flash, at boot (board
//! `[bootloader] kind = "uboot"`): read the block, let [`super::slot`]'s
//! pure plan decide, and write the marked block back. It owns the flash's
//! command protocol (the Intel/Sharp command set, as QEMU's `virt` flash and
//! U-Boot's CFI driver speak it: block erase, word program, status polling,
//! read array) over a [`Bus`]. It must not run in the loop, must not write
//! outside the environment's erase sector, and must not leave the flash out
//! of read-array mode (U-Boot on the next boot, and any reader, expects it).
//!
//! The bus is 32 bits wide with two x16 devices side by side (QEMU `virt`'s
//! flash): each command goes to both halves, and a status is ready when
//! both halves say so. The sector is read whole, the new block replaces its
//! first `env_size` bytes (the rest kept), then: erase, program every word
//! that is not all ones, read array, read back and compare. A power cut in
//! between leaves a block whose CRC fails: U-Boot then boots with its
//! built-in environment and the boot script's defaults (slot A).

use super::slot::{plan, report, report_mark, Format};
use crate::release::board::bootloader::Bootloader;
use crate::release::bootenv::{Booted, PendingTry, Slot};
use std::time::{Duration, Instant};

/// Word-wide access to the flash (the device: [`crate::sys::physmem::Window`]).
pub trait Bus {
    fn get(&self, i: usize) -> Result<u32, String>;
    fn put(&mut self, i: usize, v: u32) -> Result<(), String>;
}

impl Bus for crate::sys::physmem::Window {
    fn get(&self, i: usize) -> Result<u32, String> {
        crate::sys::physmem::Window::get(self, i)
    }
    fn put(&mut self, i: usize, v: u32) -> Result<(), String> {
        crate::sys::physmem::Window::put(self, i, v)
    }
}

pub const READ_ARRAY: u8 = 0xff;
pub const CLEAR_STATUS: u8 = 0x50;
pub const ERASE: u8 = 0x20;
pub const CONFIRM: u8 = 0xd0;
pub const PROGRAM: u8 = 0x40;
/// Status: ready, and the error bits (erase, program, low voltage, locked).
pub const READY: u32 = 0x80;
pub const ERRORS: u32 = 0x3a;
/// Longest wait for one erase or program to finish.
const OP_LIMIT: Duration = Duration::from_secs(5);

/// A command for both devices on the bus.
fn cmd(c: u8) -> u32 {
    u32::from(c) | u32::from(c) << 16
}

/// Wait until the operation at word `i` is done; its error bits fail it.
fn wait_ready(bus: &mut dyn Bus, i: usize, what: &str) -> Result<(), String> {
    let until = Instant::now() + OP_LIMIT;
    loop {
        let s = bus.get(i)?;
        if s & (READY | READY << 16) == READY | READY << 16 {
            if s & (ERRORS | ERRORS << 16) != 0 {
                bus.put(i, cmd(CLEAR_STATUS))?;
                bus.put(i, cmd(READ_ARRAY))?;
                return Err(format!("{what} failed at byte {:#x}: flash status {s:#010x}", i * 4));
            }
            return Ok(());
        }
        if Instant::now() > until {
            bus.put(i, cmd(READ_ARRAY))?;
            return Err(format!("{what} at byte {:#x} not done after {} s (status {s:#010x})", i * 4, OP_LIMIT.as_secs()));
        }
    }
}

/// The first `words` words, as bytes in bus order.
pub fn read(bus: &dyn Bus, words: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(words * 4);
    for i in 0..words {
        out.extend_from_slice(&bus.get(i)?.to_ne_bytes());
    }
    Ok(out)
}

/// Erase the sector starting at word 0 and program `data` (whole words)
/// into it, then read it back and compare.
pub fn rewrite(bus: &mut dyn Bus, data: &[u8]) -> Result<(), String> {
    if !data.len().is_multiple_of(4) {
        return Err(format!("{} bytes is not whole words", data.len()));
    }
    bus.put(0, cmd(CLEAR_STATUS))?;
    bus.put(0, cmd(ERASE))?;
    bus.put(0, cmd(CONFIRM))?;
    wait_ready(bus, 0, "erase")?;
    for (i, w) in data.chunks_exact(4).enumerate() {
        let w = u32::from_ne_bytes([w[0], w[1], w[2], w[3]]);
        if w == u32::MAX {
            continue;
        }
        bus.put(i, cmd(PROGRAM))?;
        bus.put(i, w)?;
        wait_ready(bus, i, "program")?;
    }
    bus.put(0, cmd(READ_ARRAY))?;
    let back = read(bus, data.len() / 4)?;
    match back.iter().zip(data).position(|(a, b)| a != b) {
        Some(at) => Err(format!("read back differs at byte {at:#x}")),
        None => Ok(()),
    }
}

/// The boot step for a U-Boot environment: see the module docs.
pub fn mark(loader: &Bootloader, slot: Slot, pending: Option<PendingTry>) -> Result<Booted, String> {
    let (size, sector) = (loader.env_size as usize, loader.env_sector as usize);
    let at = format!("U-Boot environment at {:#x}", loader.env_addr);
    let mut w = crate::sys::physmem::Window::map(loader.env_addr, sector)?;
    let whole = read(&w, w.words())?;
    let block = whole.get(..size).ok_or_else(|| format!("{at}: its sector is smaller than the block"))?;
    let p = plan(slot, block, Format::Uboot, pending).map_err(|e| format!("{at}: {e}"))?;
    report(slot, "uboot", &p);
    let Some(mark) = &p.mark else { return Ok(p.booted) };
    let mut new = mark.clone();
    new.extend_from_slice(whole.get(size..).unwrap_or(&[]));
    report_mark(&p, Format::Uboot, &rewrite(&mut w, &new).map_err(|e| format!("{at}: {e}")));
    Ok(p.booted)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A NOR flash of two x16 devices: programming only clears bits, erase
    /// sets them all, reads outside read-array mode give the status.
    struct Fake {
        cells: Vec<u32>,
        mode: u8,
        pending: Option<u8>,
        status: u32,
        locked: bool,
        writes: usize,
    }

    impl Fake {
        fn new(words: usize) -> Fake {
            Fake { cells: vec![0x1234_5678; words], mode: READ_ARRAY, pending: None, status: 0, locked: false, writes: 0 }
        }
    }

    impl Bus for Fake {
        fn get(&self, i: usize) -> Result<u32, String> {
            let c = self.cells.get(i).copied().ok_or("past the end")?;
            Ok(if self.mode == READ_ARRAY { c } else { self.status | self.status << 16 })
        }
        fn put(&mut self, i: usize, v: u32) -> Result<(), String> {
            self.writes += 1;
            let c = (v & 0xff) as u8;
            match self.pending.take() {
                Some(PROGRAM) if self.locked => self.status |= 0x12,
                Some(PROGRAM) => *self.cells.get_mut(i).ok_or("past the end")? &= v,
                Some(ERASE) if c == CONFIRM => self.cells.iter_mut().for_each(|w| *w = u32::MAX),
                Some(_) => self.status |= 0x30,
                None if c == PROGRAM || c == ERASE => self.pending = Some(c),
                None if c == CLEAR_STATUS => self.status = 0,
                None => {}
            }
            self.status |= READY;
            self.mode = if c == READ_ARRAY && self.pending.is_none() { READ_ARRAY } else { 0x70 };
            Ok(())
        }
    }

    #[test]
    fn a_rewrite_erases_programs_and_reads_back() {
        let mut f = Fake::new(64);
        let mut data: Vec<u8> = (0..=255u8).collect();
        data[4..8].copy_from_slice(&[0xff; 4]);
        rewrite(&mut f, &data).unwrap();
        assert_eq!(f.mode, READ_ARRAY);
        assert_eq!(read(&f, 64).unwrap(), data);
        // One erase (3 writes), two writes per word but the all-ones one, read array.
        assert_eq!(f.writes, 3 + 2 * 63 + 1);
    }

    #[test]
    fn a_locked_flash_fails_with_its_status_and_is_left_readable() {
        let mut f = Fake::new(8);
        f.locked = true;
        let e = rewrite(&mut f, &[0u8; 32]).unwrap_err();
        assert!(e.starts_with("program failed at byte 0x0: flash status 0x00920092"), "{e}");
        assert_eq!(f.mode, READ_ARRAY);
        assert!(rewrite(&mut f, &[0u8; 3]).unwrap_err().contains("whole words"));
    }
}
