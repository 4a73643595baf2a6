//! Classic BPF: the instruction type, the opcodes seccomp accepts, and a small
//! assembler with labels.
//!
//! It must not emit a jump it cannot encode: a backward one is refused, a far
//! one is rewritten.
//!
//! Seccomp filters are classic BPF (`struct sock_filter`), not eBPF. Their
//! conditional jumps carry 8-bit forward offsets, so a filter of a few hundred
//! instructions cannot name its targets by position while it is being built.
//! The [`Asm`] assembler takes symbolic [`Label`]s instead and resolves them
//! at the end; a conditional jump whose target lies more than 255 instructions
//! ahead is rewritten as a short jump over two unconditional `ja` (whose
//! offset is 32-bit). Rewriting only ever grows the program, so resolution
//! repeats until no jump changes and then terminates. Backward jumps do not
//! exist in classic BPF and are refused.

use std::vec::Vec;

/// One classic BPF instruction, laid out like the kernel's `struct sock_filter`
/// (and `libc::sock_filter`): 8 bytes, `code`, `jt`, `jf`, `k`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

// The layout must match the kernel's; checked at compile time.
const _: () = assert!(core::mem::size_of::<Insn>() == core::mem::size_of::<libc::sock_filter>());
const _: () = assert!(core::mem::size_of::<Insn>() == 8);

impl Insn {
    pub const fn stmt(code: u16, k: u32) -> Insn {
        Insn { code, jt: 0, jf: 0, k }
    }

    pub const fn jump(code: u16, k: u32, jt: u8, jf: u8) -> Insn {
        Insn { code, jt, jf, k }
    }

    /// The little-endian wire form (`code`, `jt`, `jf`, `k`), as the kernel
    /// reads it on every architecture berth supports.
    pub fn to_le_bytes(self) -> [u8; 8] {
        let c = self.code.to_le_bytes();
        let k = self.k.to_le_bytes();
        [c[0], c[1], self.jt, self.jf, k[0], k[1], k[2], k[3]]
    }

    pub fn to_sock_filter(self) -> libc::sock_filter {
        libc::sock_filter { code: self.code, jt: self.jt, jf: self.jf, k: self.k }
    }
}

/// The kernel's limit on a classic BPF program (`BPF_MAXINSNS`).
pub const MAX_INSNS: usize = 4096;

// Instruction classes.
pub const LD: u16 = 0x00;
pub const LDX: u16 = 0x01;
pub const ST: u16 = 0x02;
pub const STX: u16 = 0x03;
pub const ALU: u16 = 0x04;
pub const JMP: u16 = 0x05;
pub const RET: u16 = 0x06;
pub const MISC: u16 = 0x07;

// Load sizes and modes.
pub const W: u16 = 0x00;
pub const H: u16 = 0x08;
pub const B: u16 = 0x10;
pub const IMM: u16 = 0x00;
pub const ABS: u16 = 0x20;
pub const IND: u16 = 0x40;
pub const MEM: u16 = 0x60;
pub const LEN: u16 = 0x80;
pub const MSH: u16 = 0xa0;

// ALU operations.
pub const ADD: u16 = 0x00;
pub const SUB: u16 = 0x10;
pub const MUL: u16 = 0x20;
pub const DIV: u16 = 0x30;
pub const OR: u16 = 0x40;
pub const AND: u16 = 0x50;
pub const LSH: u16 = 0x60;
pub const RSH: u16 = 0x70;
pub const NEG: u16 = 0x80;
pub const MOD: u16 = 0x90;
pub const XOR: u16 = 0xa0;

// Jump operations.
pub const JA: u16 = 0x00;
pub const JEQ: u16 = 0x10;
pub const JGT: u16 = 0x20;
pub const JGE: u16 = 0x30;
pub const JSET: u16 = 0x40;

// Operand source (ALU, JMP) and return value source (RET).
pub const K: u16 = 0x00;
pub const X: u16 = 0x08;
pub const A: u16 = 0x10;

// MISC operations.
pub const TAX: u16 = 0x00;
pub const TXA: u16 = 0x80;

/// Scratch memory words (`BPF_MEMWORDS`).
pub const MEMWORDS: u32 = 16;

/// A jump target, bound to a position with [`Asm::bind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label(usize);

/// Conditional jump operations the assembler emits (all compare `A` with `k`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cond {
    Eq,
    Gt,
    Ge,
    Set,
}

impl Cond {
    fn code(self) -> u16 {
        JMP | K
            | match self {
                Cond::Eq => JEQ,
                Cond::Gt => JGT,
                Cond::Ge => JGE,
                Cond::Set => JSET,
            }
    }
}

#[derive(Debug, Clone, Copy)]
enum Item {
    Fixed(Insn),
    /// `if A <cond> k goto t else goto f`; `wide` once it needed trampolines.
    Jump {
        cond: Cond,
        k: u32,
        t: Label,
        f: Label,
        wide: bool,
    },
    Ja(Label),
    Bind(Label),
}

impl Item {
    fn len(&self) -> usize {
        match self {
            Item::Fixed(_) | Item::Ja(_) | Item::Jump { wide: false, .. } => 1,
            Item::Jump { wide: true, .. } => 3,
            Item::Bind(_) => 0,
        }
    }
}

/// Why a program could not be assembled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsmError {
    /// A label was jumped to but never bound.
    Unbound,
    /// A label was bound twice.
    Rebound,
    /// A jump goes to a label bound before it.
    Backward,
    /// The program has more than [`MAX_INSNS`] instructions.
    TooLong(usize),
}

impl core::fmt::Display for AsmError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            AsmError::Unbound => f.write_str("a jump target was never placed"),
            AsmError::Rebound => f.write_str("a jump target was placed twice"),
            AsmError::Backward => f.write_str("a jump goes backwards"),
            AsmError::TooLong(n) => {
                write!(f, "{n} instructions, more than the kernel's {MAX_INSNS}")
            }
        }
    }
}

/// A classic BPF assembler with forward labels.
#[derive(Debug, Default)]
pub struct Asm {
    items: Vec<Item>,
    labels: usize,
}

impl Asm {
    pub fn new() -> Asm {
        Asm::default()
    }

    /// A fresh, unbound label.
    pub fn label(&mut self) -> Label {
        self.labels += 1;
        Label(self.labels - 1)
    }

    /// Place `l` before the next instruction.
    pub fn bind(&mut self, l: Label) {
        self.items.push(Item::Bind(l));
    }

    /// `A = seccomp_data[off]` (a 32-bit word).
    pub fn ld_abs(&mut self, off: u32) {
        self.items.push(Item::Fixed(Insn::stmt(LD | W | ABS, off)));
    }

    /// Return `k` (a `SECCOMP_RET_*` value).
    pub fn ret(&mut self, k: u32) {
        self.items.push(Item::Fixed(Insn::stmt(RET | K, k)));
    }

    /// `if A <cond> k goto t else goto f`.
    pub fn jump(&mut self, cond: Cond, k: u32, t: Label, f: Label) {
        self.items.push(Item::Jump { cond, k, t, f, wide: false });
    }

    /// `goto l`.
    pub fn ja(&mut self, l: Label) {
        self.items.push(Item::Ja(l));
    }

    /// Resolve the labels and return the instructions.
    pub fn assemble(mut self) -> Result<Vec<Insn>, AsmError> {
        loop {
            let at = self.positions()?;
            let mut changed = false;
            let mut pc = 0usize;
            for item in self.items.iter_mut() {
                if let Item::Jump { t, f, wide: wide @ false, .. } = item {
                    let far = |l: &Label| -> Result<bool, AsmError> { Ok(offset(&at, pc, *l)? > u8::MAX as usize) };
                    if far(t)? || far(f)? {
                        *wide = true;
                        changed = true;
                    }
                }
                pc += item.len();
            }
            if !changed {
                return self.emit(&at);
            }
        }
    }

    /// Where each label is bound, in instructions.
    fn positions(&self) -> Result<Vec<Option<usize>>, AsmError> {
        let mut at = vec![None; self.labels];
        let mut pc = 0usize;
        for item in &self.items {
            if let Item::Bind(Label(l)) = item {
                let slot = at.get_mut(*l).ok_or(AsmError::Unbound)?;
                if slot.is_some() {
                    return Err(AsmError::Rebound);
                }
                *slot = Some(pc);
            }
            pc += item.len();
        }
        if pc > MAX_INSNS {
            return Err(AsmError::TooLong(pc));
        }
        Ok(at)
    }

    fn emit(&self, at: &[Option<usize>]) -> Result<Vec<Insn>, AsmError> {
        let mut out = Vec::new();
        for item in &self.items {
            let pc = out.len();
            match *item {
                Item::Fixed(i) => out.push(i),
                Item::Bind(_) => {}
                Item::Ja(l) => out.push(Insn::stmt(JMP | JA, offset32(at, pc, l)?)),
                Item::Jump { cond, k, t, f, wide: false } => {
                    out.push(Insn::jump(cond.code(), k, offset8(at, pc, t)?, offset8(at, pc, f)?));
                }
                Item::Jump { cond, k, t, f, wide: true } => {
                    // if cond goto +0 (ja t) else goto +1 (ja f)
                    out.push(Insn::jump(cond.code(), k, 0, 1));
                    out.push(Insn::stmt(JMP | JA, offset32(at, pc + 1, t)?));
                    out.push(Insn::stmt(JMP | JA, offset32(at, pc + 2, f)?));
                }
            }
        }
        Ok(out)
    }
}

/// Instructions skipped by a jump at `pc` to `l`.
fn offset(at: &[Option<usize>], pc: usize, l: Label) -> Result<usize, AsmError> {
    let target = at.get(l.0).copied().flatten().ok_or(AsmError::Unbound)?;
    target.checked_sub(pc + 1).ok_or(AsmError::Backward)
}

fn offset8(at: &[Option<usize>], pc: usize, l: Label) -> Result<u8, AsmError> {
    // Only reached for jumps the resolution loop found near.
    u8::try_from(offset(at, pc, l)?).map_err(|_| AsmError::TooLong(MAX_INSNS + 1))
}

fn offset32(at: &[Option<usize>], pc: usize, l: Label) -> Result<u32, AsmError> {
    u32::try_from(offset(at, pc, l)?).map_err(|_| AsmError::TooLong(MAX_INSNS + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_resolve_to_forward_offsets() {
        let mut a = Asm::new();
        let (yes, no) = (a.label(), a.label());
        a.ld_abs(0);
        a.jump(Cond::Eq, 7, yes, no);
        a.bind(no);
        a.ret(1);
        a.bind(yes);
        a.ret(2);
        let p = a.assemble().unwrap();
        assert_eq!(p, [Insn::stmt(LD | W | ABS, 0), Insn::jump(JMP | JEQ | K, 7, 1, 0), Insn::stmt(RET | K, 1), Insn::stmt(RET | K, 2),]);
    }

    #[test]
    fn far_targets_get_trampolines() {
        let mut a = Asm::new();
        let (far, near) = (a.label(), a.label());
        a.jump(Cond::Ge, 5, far, near);
        a.bind(near);
        for i in 0..300 {
            a.ret(i);
        }
        a.bind(far);
        a.ret(999);
        let p = a.assemble().unwrap();
        assert_eq!(p.len(), 3 + 300 + 1);
        assert_eq!(p[0], Insn::jump(JMP | JGE | K, 5, 0, 1));
        // ja far: from pc 1, skip pc 2 and the 300 returns.
        assert_eq!(p[1], Insn::stmt(JMP | JA, 301));
        assert_eq!(p[2], Insn::stmt(JMP | JA, 0));
        assert_eq!(p[303], Insn::stmt(RET | K, 999));

        // And it runs: A = nr; nr >= 5 reaches the far return, else the first.
        let mut a = Asm::new();
        let (far, near) = (a.label(), a.label());
        a.ld_abs(0);
        a.jump(Cond::Ge, 5, far, near);
        a.bind(near);
        a.ret(super::super::interp::RET_ALLOW);
        for _ in 0..300 {
            a.ret(0);
        }
        a.bind(far);
        a.ret(super::super::interp::RET_ERRNO | 7);
        let p = a.assemble().unwrap();
        let run = |nr| super::super::interp::run(&p, &super::super::interp::SeccompData::new(0, nr, &[])).unwrap();
        assert_eq!(run(4), super::super::interp::Action::Allow);
        assert_eq!(run(5), super::super::interp::Action::Errno(7));
    }

    #[test]
    fn exactly_255_stays_short() {
        let mut a = Asm::new();
        let (far, near) = (a.label(), a.label());
        a.jump(Cond::Ge, 5, far, near);
        a.bind(near);
        for i in 0..255 {
            a.ret(i);
        }
        a.bind(far);
        a.ret(999);
        let p = a.assemble().unwrap();
        assert_eq!(p.len(), 257);
        assert_eq!(p[0], Insn::jump(JMP | JGE | K, 5, 255, 0));
    }

    #[test]
    fn bad_labels_and_lengths_are_refused() {
        let mut a = Asm::new();
        let l = a.label();
        a.ja(l);
        assert_eq!(a.assemble(), Err(AsmError::Unbound));

        let mut a = Asm::new();
        let l = a.label();
        a.bind(l);
        a.ret(0);
        a.ja(l);
        assert_eq!(a.assemble(), Err(AsmError::Backward));

        let mut a = Asm::new();
        let l = a.label();
        a.bind(l);
        a.bind(l);
        a.ret(0);
        assert_eq!(a.assemble(), Err(AsmError::Rebound));

        let mut a = Asm::new();
        for _ in 0..=MAX_INSNS {
            a.ret(0);
        }
        assert_eq!(a.assemble(), Err(AsmError::TooLong(MAX_INSNS + 1)));
    }

    #[test]
    fn wire_form_is_little_endian_sock_filter() {
        let i = Insn::jump(JMP | JEQ | K, 0x1122_3344, 5, 6);
        assert_eq!(i.to_le_bytes(), [0x15, 0x00, 5, 6, 0x44, 0x33, 0x22, 0x11]);
        let s = i.to_sock_filter();
        assert_eq!((s.code, s.jt, s.jf, s.k), (0x15, 5, 6, 0x1122_3344));
    }
}
