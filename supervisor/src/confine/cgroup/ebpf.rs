//! eBPF instruction encoding and the cgroup v2 device program generator.
//!
//! It must not emit a jump backwards or out of the program, nor an
//! instruction outside the subset [`super::interp`] checks; it only encodes,
//! loading is [`super::act`]'s.
//!
//! An eBPF instruction is 8 bytes: the opcode, a byte holding the destination
//! register in its low nibble and the source register in its high nibble, a
//! signed 16-bit offset and a signed 32-bit immediate, little-endian on every
//! architecture berth supports (`struct bpf_insn`).
//!
//! The device program sees `struct bpf_cgroup_dev_ctx` in R1:
//! `{ u32 access_type = (ACC << 16) | TYPE; u32 major; u32 minor }` and
//! returns 1 to allow, 0 to deny. Its shape:
//!
//! ```text
//!     r2 = *(u32 *)(r1 + 0)      ; access_type
//!     w2 &= 0xffff               ; r2 = type
//!     r3 = *(u32 *)(r1 + 0)
//!     w3 >>= 16                  ; r3 = access
//!     r4 = *(u32 *)(r1 + 4)      ; r4 = major
//!     r5 = *(u32 *)(r1 + 8)      ; r5 = minor
//! rule:                          ; one block per rule; any mismatch goes on
//!     if r2 != TYPE goto next    ; to the next block
//!     w1 = w3                    ; (only when the rule is not rwm)
//!     w1 &= ~ALLOWED             ; access asked beyond the rule's
//!     if r1 != 0 goto next
//!     if r4 != MAJOR goto next
//!     if r5 != MINOR goto next   ; (not for the pts wildcard)
//!     r0 = 1
//!     exit
//! next: ...
//!     r0 = 0                     ; default deny
//!     exit
//! ```
//!
//! All jumps go forward and stay inside the program; R1 (the context) is
//! reused as scratch only after every field has been loaded.

use super::{check_rules, DeviceRule, Minor, ACC_ALL};

/// One eBPF instruction (`struct bpf_insn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Insn {
    pub code: u8,
    /// Destination register (low nibble of the second byte).
    pub dst: u8,
    /// Source register (high nibble of the second byte).
    pub src: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    /// The kernel's wire form.
    pub fn to_le_bytes(self) -> [u8; 8] {
        let [o0, o1] = self.off.to_le_bytes();
        let [i0, i1, i2, i3] = self.imm.to_le_bytes();
        [self.code, (self.dst & 0x0f) | (self.src << 4), o0, o1, i0, i1, i2, i3]
    }

    /// Decode the wire form.
    pub fn from_le_bytes(b: [u8; 8]) -> Insn {
        let [code, regs, o0, o1, i0, i1, i2, i3] = b;
        Insn { code, dst: regs & 0x0f, src: regs >> 4, off: i16::from_le_bytes([o0, o1]), imm: i32::from_le_bytes([i0, i1, i2, i3]) }
    }
}

// Instruction classes.
pub const CLASS_LDX: u8 = 0x01;
pub const CLASS_ALU: u8 = 0x04;
pub const CLASS_JMP: u8 = 0x05;
pub const CLASS_ALU64: u8 = 0x07;
// Load size and mode.
pub const SIZE_W: u8 = 0x00;
pub const MODE_MEM: u8 = 0x60;
// Operand source.
pub const SRC_K: u8 = 0x00;
pub const SRC_X: u8 = 0x08;
// ALU operations.
pub const OP_AND: u8 = 0x50;
pub const OP_RSH: u8 = 0x70;
pub const OP_MOV: u8 = 0xb0;
// Jump operations.
pub const OP_JA: u8 = 0x00;
pub const OP_JNE: u8 = 0x50;
pub const OP_EXIT: u8 = 0x90;

/// The opcodes the generator emits (and [`super::interp`] accepts).
pub const LDX_W: u8 = CLASS_LDX | MODE_MEM | SIZE_W;
pub const MOV64_K: u8 = CLASS_ALU64 | OP_MOV | SRC_K;
pub const MOV32_X: u8 = CLASS_ALU | OP_MOV | SRC_X;
pub const AND32_K: u8 = CLASS_ALU | OP_AND | SRC_K;
pub const RSH32_K: u8 = CLASS_ALU | OP_RSH | SRC_K;
pub const JNE_K: u8 = CLASS_JMP | OP_JNE | SRC_K;
pub const JA: u8 = CLASS_JMP | OP_JA;
pub const EXIT: u8 = CLASS_JMP | OP_EXIT;

/// Berth's cap on a device program (`BPF_MAXINSNS`, the kernel's limit for
/// unprivileged loaders; privileged ones may load more, berth never needs to).
pub const MAX_INSNS: usize = 4096;

/// Offsets of `struct bpf_cgroup_dev_ctx`'s fields.
pub const CTX_ACCESS_TYPE: i16 = 0;
pub const CTX_MAJOR: i16 = 4;
pub const CTX_MINOR: i16 = 8;
/// Size of the context.
pub const CTX_LEN: i16 = 12;

pub fn ldx_w(dst: u8, src: u8, off: i16) -> Insn {
    Insn { code: LDX_W, dst, src, off, imm: 0 }
}
pub fn mov64_k(dst: u8, imm: i32) -> Insn {
    Insn { code: MOV64_K, dst, src: 0, off: 0, imm }
}
pub fn mov32_x(dst: u8, src: u8) -> Insn {
    Insn { code: MOV32_X, dst, src, off: 0, imm: 0 }
}
pub fn and32_k(dst: u8, imm: i32) -> Insn {
    Insn { code: AND32_K, dst, src: 0, off: 0, imm }
}
pub fn rsh32_k(dst: u8, imm: i32) -> Insn {
    Insn { code: RSH32_K, dst, src: 0, off: 0, imm }
}
pub fn jne_k(dst: u8, imm: i32, off: i16) -> Insn {
    Insn { code: JNE_K, dst, src: 0, off, imm }
}
pub fn exit() -> Insn {
    Insn { code: EXIT, dst: 0, src: 0, off: 0, imm: 0 }
}

/// A generated device program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    pub insns: Vec<Insn>,
}

impl Program {
    /// The program as the kernel reads it (`insn_cnt * 8` bytes).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.insns.iter().flat_map(|i| i.to_le_bytes()).collect()
    }

    /// One instruction a line, numbered, jumps with their target.
    pub fn disassemble(&self) -> String {
        let mut s = String::new();
        for (pc, i) in self.insns.iter().enumerate() {
            s.push_str(&format!("{pc:4}: {}\n", disassemble(i, pc)));
        }
        s
    }
}

/// One instruction in the kernel's verifier-log notation.
pub fn disassemble(i: &Insn, pc: usize) -> String {
    let target = pc as i64 + 1 + i64::from(i.off);
    match i.code {
        LDX_W => format!("r{} = *(u32 *)(r{} + {})", i.dst, i.src, i.off),
        MOV64_K => format!("r{} = {}", i.dst, i.imm),
        MOV32_X => format!("w{} = w{}", i.dst, i.src),
        AND32_K => format!("w{} &= {:#x}", i.dst, i.imm as u32),
        RSH32_K => format!("w{} >>= {}", i.dst, i.imm),
        JNE_K => format!("if r{} != {:#x} goto {:+} (-> {target})", i.dst, i.imm, i.off),
        JA => format!("goto {:+} (-> {target})", i.off),
        EXIT => "exit".to_owned(),
        c => format!("(unknown opcode {c:#04x})"),
    }
}

fn imm(v: u32, what: &str) -> Result<i32, String> {
    i32::try_from(v).map_err(|_| format!("{what} {v} does not fit an immediate"))
}

/// The device program for `rules`: allow what some rule allows, deny the rest.
/// Refuses what [`check_rules`] refuses, and a program beyond [`MAX_INSNS`].
pub fn generate(rules: &[DeviceRule]) -> Result<Program, String> {
    check_rules(rules)?;
    let mut insns =
        vec![ldx_w(2, 1, CTX_ACCESS_TYPE), and32_k(2, 0xffff), ldx_w(3, 1, CTX_ACCESS_TYPE), rsh32_k(3, 16), ldx_w(4, 1, CTX_MAJOR), ldx_w(5, 1, CTX_MINOR)];
    for r in rules {
        // Jumps are written with the block-relative index of their target
        // (the block's end) in `off`, then made relative below.
        let mut block: Vec<(Insn, bool)> = vec![(jne_k(2, r.kind as i32, 0), true)];
        if r.access != ACC_ALL {
            // Any access bit (present or future) outside the rule's denies.
            let beyond = !u32::from(r.access) as i32;
            block.push((mov32_x(1, 3), false));
            block.push((and32_k(1, beyond), false));
            block.push((jne_k(1, 0, 0), true));
        }
        block.push((jne_k(4, imm(r.major, "major")?, 0), true));
        if let Minor::Exact(m) = r.minor {
            block.push((jne_k(5, imm(m, "minor")?, 0), true));
        }
        block.push((mov64_k(0, 1), false));
        block.push((exit(), false));
        let len = block.len();
        for (k, (mut insn, is_jump)) in block.into_iter().enumerate() {
            if is_jump {
                insn.off = i16::try_from(len - (k + 1)).map_err(|_| "rule block too long".to_owned())?;
            }
            insns.push(insn);
        }
        if insns.len() + 2 > MAX_INSNS {
            return Err(format!("{} rules make a program longer than {MAX_INSNS} instructions", rules.len()));
        }
    }
    insns.push(mov64_k(0, 0));
    insns.push(exit());
    Ok(Program { insns })
}
