//! A classic BPF interpreter with the kernel's seccomp rules, so that a filter
//! can be checked without installing it.
//!
//! It must not install anything: it checks and runs filters in memory only.
//!
//! [`validate`] refuses what the kernel's `bpf_check_classic` and
//! `seccomp_check_filter` refuse: an empty program or one longer than
//! [`MAX_INSNS`], an opcode seccomp does not accept (packet loads such as
//! `LD H/B ABS`, `IND`, `MSH`), a load outside the 64-byte `seccomp_data` or not
//! 4-byte aligned, a jump out of the program (classic BPF cannot jump
//! backwards: offsets are unsigned), division or shift by an invalid constant,
//! a scratch-memory index out of range or read before it is written, and a
//! last instruction that is not a `RET`. [`run`] validates and then executes,
//! returning the [`Action`] the kernel would take.
//!
//! `seccomp_data` is read as the kernel lays it out on a little-endian machine
//! (all three architectures berth supports): `nr` at 0, `arch` at 4, the
//! instruction pointer at 8, and argument `i` at `16 + 8*i` (low word) and
//! `20 + 8*i` (high word).

use core::fmt;

use super::bpf::*;

/// What a filter sees of a syscall (`struct seccomp_data`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SeccompData {
    pub nr: i32,
    pub arch: u32,
    pub instruction_pointer: u64,
    pub args: [u64; 6],
}

/// Size of `struct seccomp_data`.
pub const DATA_LEN: u32 = 64;

impl SeccompData {
    /// A syscall `nr` of architecture `arch` with the given leading arguments.
    pub fn new(arch: u32, nr: u32, args: &[u64]) -> SeccompData {
        let mut d = SeccompData { nr: nr as i32, arch, ..SeccompData::default() };
        for (slot, a) in d.args.iter_mut().zip(args) {
            *slot = *a;
        }
        d
    }

    /// The 32-bit word at byte offset `off`, if it is an aligned offset inside
    /// the structure.
    pub fn word(&self, off: u32) -> Option<u32> {
        if !off.is_multiple_of(4) {
            return None;
        }
        let half = |v: u64, hi: bool| if hi { (v >> 32) as u32 } else { v as u32 };
        match off {
            0 => Some(self.nr as u32),
            4 => Some(self.arch),
            8 | 12 => Some(half(self.instruction_pointer, off == 12)),
            16..=60 => {
                let i = ((off - 16) / 8) as usize;
                self.args.get(i).map(|a| half(*a, (off - 16) % 8 == 4))
            }
            _ => None,
        }
    }
}

// SECCOMP_RET_* (include/uapi/linux/seccomp.h).
pub const RET_KILL_PROCESS: u32 = 0x8000_0000;
pub const RET_KILL_THREAD: u32 = 0x0000_0000;
pub const RET_TRAP: u32 = 0x0003_0000;
pub const RET_ERRNO: u32 = 0x0005_0000;
pub const RET_USER_NOTIF: u32 = 0x7fc0_0000;
pub const RET_TRACE: u32 = 0x7ff0_0000;
pub const RET_LOG: u32 = 0x7ffc_0000;
pub const RET_ALLOW: u32 = 0x7fff_0000;
const RET_ACTION_FULL: u32 = 0xffff_0000;
const RET_DATA: u32 = 0x0000_ffff;
/// The kernel caps an errno return at `MAX_ERRNO`.
const MAX_ERRNO: u16 = 4095;

/// What the kernel does with a syscall, decoded from a filter's return value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    KillProcess,
    KillThread,
    Trap(u16),
    Errno(u16),
    UserNotif,
    Trace(u16),
    Log,
    Allow,
}

impl Action {
    /// Decode a `SECCOMP_RET_*` value the way the kernel does: an unknown
    /// action kills the process.
    pub fn from_ret(ret: u32) -> Action {
        let data = (ret & RET_DATA) as u16;
        match ret & RET_ACTION_FULL {
            RET_KILL_PROCESS => Action::KillProcess,
            RET_KILL_THREAD => Action::KillThread,
            RET_TRAP => Action::Trap(data),
            RET_ERRNO => Action::Errno(data.min(MAX_ERRNO)),
            RET_USER_NOTIF => Action::UserNotif,
            RET_TRACE => Action::Trace(data),
            RET_LOG => Action::Log,
            RET_ALLOW => Action::Allow,
            _ => Action::KillProcess,
        }
    }
}

/// Why a program would be refused by the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invalid {
    /// Index of the offending instruction (the length for length errors).
    pub at: usize,
    pub reason: &'static str,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "instruction {}: {}", self.at, self.reason)
    }
}

fn bad(at: usize, reason: &'static str) -> Invalid {
    Invalid { at, reason }
}

/// Check a program as the kernel does before it accepts a seccomp filter.
pub fn validate(p: &[Insn]) -> Result<(), Invalid> {
    let len = p.len();
    if len == 0 {
        return Err(bad(0, "empty program"));
    }
    if len > MAX_INSNS {
        return Err(bad(len, "longer than BPF_MAXINSNS (4096)"));
    }
    for (pc, i) in p.iter().enumerate() {
        // Instructions left after this one.
        let rest = len - pc - 1;
        let in_range = |off: u32| (off as usize) < rest;
        match i.code {
            c if c == LD | W | ABS => {
                if i.k >= DATA_LEN || !i.k.is_multiple_of(4) {
                    return Err(bad(pc, "load outside seccomp_data or not 4-byte aligned"));
                }
            }
            c if c == LD | W | LEN || c == LDX | W | LEN => {}
            c if c == LD | IMM || c == LDX | IMM => {}
            c if c == MISC | TAX || c == MISC | TXA => {}
            c if c == LD | MEM || c == LDX | MEM || c == ST || c == STX => {
                if i.k >= MEMWORDS {
                    return Err(bad(pc, "scratch memory index out of range"));
                }
            }
            c if c == RET | K || c == RET | A => {}
            c if c & 0x07 == ALU => {
                let op = c & 0xf0;
                let src = c & 0x08;
                if c & !0xf8 != ALU || !matches!(op, ADD | SUB | MUL | DIV | OR | AND | LSH | RSH | NEG | MOD | XOR) {
                    return Err(bad(pc, "unknown ALU operation"));
                }
                if op == NEG && src == X {
                    return Err(bad(pc, "unknown ALU operation"));
                }
                if src == K && matches!(op, DIV | MOD) && i.k == 0 {
                    return Err(bad(pc, "division by constant zero"));
                }
                if src == K && matches!(op, LSH | RSH) && i.k >= 32 {
                    return Err(bad(pc, "shift by 32 or more"));
                }
            }
            c if c == JMP | JA => {
                if !in_range(i.k) {
                    return Err(bad(pc, "jump out of the program"));
                }
            }
            c if c & 0x07 == JMP && c & !0xf8 == JMP && matches!(c & 0xf0, JEQ | JGT | JGE | JSET) => {
                if !in_range(u32::from(i.jt)) || !in_range(u32::from(i.jf)) {
                    return Err(bad(pc, "conditional jump out of the program"));
                }
            }
            _ => return Err(bad(pc, "opcode not accepted by seccomp")),
        }
    }
    match p.last() {
        Some(i) if i.code == RET | K || i.code == RET | A => {}
        _ => return Err(bad(len - 1, "the last instruction is not a return")),
    }
    check_memory(p)
}

/// Scratch memory must be written on every path before it is read (the
/// kernel's `check_load_and_stores`).
fn check_memory(p: &[Insn]) -> Result<(), Invalid> {
    let mut masks = vec![u16::MAX; p.len()];
    let mut valid: u16 = 0;
    for (pc, i) in p.iter().enumerate() {
        valid &= masks.get(pc).copied().unwrap_or(0);
        let bit = 1u16.checked_shl(i.k).unwrap_or(0);
        let mut narrow = |off: usize, v: u16| {
            if let Some(m) = masks.get_mut(pc + 1 + off) {
                *m &= v;
            }
        };
        match i.code {
            c if c == ST || c == STX => valid |= bit,
            c if (c == LD | MEM || c == LDX | MEM) && valid & bit == 0 => {
                return Err(bad(pc, "scratch memory read before it is written"));
            }
            c if c == JMP | JA => {
                narrow(i.k as usize, valid);
                valid = u16::MAX;
            }
            c if c & 0x07 == JMP => {
                narrow(usize::from(i.jt), valid);
                narrow(usize::from(i.jf), valid);
                valid = u16::MAX;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Validate `p`, then run it on `data` and decode its return value.
pub fn run(p: &[Insn], data: &SeccompData) -> Result<Action, Invalid> {
    trace(p, data).map(|(action, _)| action)
}

/// [`run`], also counting the instructions executed.
pub fn trace(p: &[Insn], data: &SeccompData) -> Result<(Action, usize), Invalid> {
    validate(p)?;
    execute(p, data)
}

/// Run a program already [`validate`]d (anything else still ends in an error,
/// never a panic or a loop), counting the instructions executed.
pub fn execute(p: &[Insn], data: &SeccompData) -> Result<(Action, usize), Invalid> {
    let (mut a, mut x) = (0u32, 0u32);
    let mut mem = [0u32; MEMWORDS as usize];
    let mut pc = 0usize;
    // Jumps only go forward, so a valid program ends within `len` steps.
    for step in 1..=p.len() {
        let i = *p.get(pc).ok_or(bad(pc, "ran off the end"))?;
        pc += 1;
        let slot = i.k as usize;
        match i.code {
            c if c == LD | W | ABS => a = data.word(i.k).ok_or(bad(pc - 1, "load outside seccomp_data"))?,
            c if c == LD | W | LEN => a = DATA_LEN,
            c if c == LDX | W | LEN => x = DATA_LEN,
            c if c == LD | IMM => a = i.k,
            c if c == LDX | IMM => x = i.k,
            c if c == LD | MEM => a = mem.get(slot).copied().unwrap_or(0),
            c if c == LDX | MEM => x = mem.get(slot).copied().unwrap_or(0),
            c if c == ST => {
                if let Some(m) = mem.get_mut(slot) {
                    *m = a;
                }
            }
            c if c == STX => {
                if let Some(m) = mem.get_mut(slot) {
                    *m = x;
                }
            }
            c if c == MISC | TAX => x = a,
            c if c == MISC | TXA => a = x,
            c if c == RET | K => return Ok((Action::from_ret(i.k), step)),
            c if c == RET | A => return Ok((Action::from_ret(a), step)),
            c if c & 0x07 == ALU => {
                let v = if c & X != 0 { x } else { i.k };
                a = match c & 0xf0 {
                    ADD => a.wrapping_add(v),
                    SUB => a.wrapping_sub(v),
                    MUL => a.wrapping_mul(v),
                    // Division by a zero X makes the kernel's program return 0.
                    DIV => match a.checked_div(v) {
                        Some(q) => q,
                        None => return Ok((Action::from_ret(0), step)),
                    },
                    MOD => match a.checked_rem(v) {
                        Some(r) => r,
                        None => return Ok((Action::from_ret(0), step)),
                    },
                    OR => a | v,
                    AND => a & v,
                    XOR => a ^ v,
                    LSH => a.checked_shl(v).unwrap_or(0),
                    RSH => a.checked_shr(v).unwrap_or(0),
                    NEG => a.wrapping_neg(),
                    _ => return Err(bad(pc - 1, "unknown ALU operation")),
                };
            }
            c if c == JMP | JA => pc = pc.saturating_add(slot),
            c if c & 0x07 == JMP => {
                let v = if c & X != 0 { x } else { i.k };
                let taken = match c & 0xf0 {
                    JEQ => a == v,
                    JGT => a > v,
                    JGE => a >= v,
                    JSET => a & v != 0,
                    _ => return Err(bad(pc - 1, "unknown jump")),
                };
                pc += usize::from(if taken { i.jt } else { i.jf });
            }
            _ => return Err(bad(pc - 1, "opcode not accepted by seccomp")),
        }
    }
    Err(bad(pc, "ran off the end"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ret(k: u32) -> Insn {
        Insn::stmt(RET | K, k)
    }

    #[test]
    fn data_words_follow_the_kernel_layout() {
        let d = SeccompData {
            nr: -1,
            arch: 0xC000_003E,
            instruction_pointer: 0x1111_2222_3333_4444,
            args: [0x0000_0001_0000_0002, 0, 0, 0, 0, 0xAAAA_BBBB_CCCC_DDDD],
        };
        assert_eq!(d.word(0), Some(0xffff_ffff));
        assert_eq!(d.word(4), Some(0xC000_003E));
        assert_eq!(d.word(8), Some(0x3333_4444));
        assert_eq!(d.word(12), Some(0x1111_2222));
        assert_eq!(d.word(16), Some(2));
        assert_eq!(d.word(20), Some(1));
        assert_eq!(d.word(56), Some(0xCCCC_DDDD));
        assert_eq!(d.word(60), Some(0xAAAA_BBBB));
        assert_eq!(d.word(64), None);
        assert_eq!(d.word(2), None);
    }

    #[test]
    fn actions_decode_like_the_kernel() {
        assert_eq!(Action::from_ret(RET_ALLOW), Action::Allow);
        assert_eq!(Action::from_ret(RET_ERRNO | 1), Action::Errno(1));
        assert_eq!(Action::from_ret(RET_ERRNO | 0xffff), Action::Errno(4095));
        assert_eq!(Action::from_ret(RET_KILL_PROCESS), Action::KillProcess);
        assert_eq!(Action::from_ret(0), Action::KillThread);
        assert_eq!(Action::from_ret(RET_TRAP | 3), Action::Trap(3));
        assert_eq!(Action::from_ret(RET_LOG), Action::Log);
        assert_eq!(Action::from_ret(0x1234_0000), Action::KillProcess);
    }

    #[test]
    fn executes_loads_alu_jumps_and_memory() {
        // A = nr; A += 3; M[1] = A; X = arch; A = M[1]; if A == 10 allow else errno(X & 0xff)
        let p = [
            Insn::stmt(LD | W | ABS, 0),
            Insn::stmt(ALU | ADD | K, 3),
            Insn::stmt(ST, 1),
            Insn::stmt(LDX | W | LEN, 0),
            Insn::stmt(LD | MEM, 1),
            Insn::jump(JMP | JEQ | K, 10, 0, 1),
            ret(RET_ALLOW),
            Insn::stmt(MISC | TXA, 0),
            Insn::stmt(ALU | OR | K, RET_ERRNO),
            Insn::stmt(RET | A, 0),
        ];
        assert_eq!(run(&p, &SeccompData::new(0, 7, &[])), Ok(Action::Allow));
        assert_eq!(run(&p, &SeccompData::new(0, 8, &[])), Ok(Action::Errno(64)));
    }

    #[test]
    fn division_by_zero_x_returns_zero() {
        let p = [Insn::stmt(LD | IMM, 5), Insn::stmt(ALU | DIV | X, 0), ret(RET_ALLOW)];
        assert_eq!(run(&p, &SeccompData::default()), Ok(Action::KillThread));
    }

    #[test]
    fn malformed_programs_are_refused() {
        let cases: &[(&[Insn], usize, &str)] = &[
            (&[], 0, "empty"),
            (&[Insn::stmt(LD | W | ABS, 0)], 0, "not a return"),
            (&[Insn::stmt(LD | W | ABS, 64), ret(0)], 0, "outside"),
            (&[Insn::stmt(LD | W | ABS, 2), ret(0)], 0, "aligned"),
            (&[Insn::stmt(LD | H | ABS, 0), ret(0)], 0, "opcode"),
            (&[Insn::stmt(LD | B | ABS, 0), ret(0)], 0, "opcode"),
            (&[Insn::stmt(LD | W | IND, 0), ret(0)], 0, "opcode"),
            (&[Insn::stmt(LDX | B | MSH, 0), ret(0)], 0, "opcode"),
            (&[Insn::jump(JMP | JEQ | K, 0, 1, 0), ret(0)], 0, "out of the program"),
            (&[Insn::jump(JMP | JEQ | K, 0, 0, 1), ret(0)], 0, "out of the program"),
            (&[Insn::stmt(JMP | JA, 1), ret(0)], 0, "out of the program"),
            (&[Insn::stmt(JMP | JA, u32::MAX), ret(0)], 0, "out of the program"),
            (&[Insn::stmt(ALU | DIV | K, 0), ret(0)], 0, "zero"),
            (&[Insn::stmt(ALU | MOD | K, 0), ret(0)], 0, "zero"),
            (&[Insn::stmt(ALU | LSH | K, 32), ret(0)], 0, "shift"),
            (&[Insn::stmt(ALU | 0xb0, 0), ret(0)], 0, "ALU"),
            (&[Insn::stmt(ST, 16), ret(0)], 0, "scratch"),
            (&[Insn::stmt(LD | MEM, 0), ret(0)], 0, "before it is written"),
            (&[Insn::stmt(0x50, 0), ret(0)], 0, "opcode"),
            (&[Insn::jump(JMP | 0x50, 0, 0, 0), ret(0)], 0, "opcode"),
        ];
        for (p, at, why) in cases {
            let e = validate(p).unwrap_err();
            assert_eq!(e.at, *at, "{p:?}: {e}");
            assert!(e.reason.contains(why), "{p:?}: {e}");
            assert_eq!(run(p, &SeccompData::default()), Err(e));
        }
        // Memory written on only one path is not valid at the join.
        let p = [Insn::jump(JMP | JEQ | K, 0, 0, 1), Insn::stmt(ST, 0), Insn::stmt(LD | MEM, 0), ret(0)];
        assert_eq!(validate(&p).unwrap_err().at, 2);
        let long = vec![ret(0); MAX_INSNS + 1];
        assert_eq!(validate(&long).unwrap_err().at, MAX_INSNS + 1);
        assert!(validate(&long[..MAX_INSNS]).is_ok());
    }
}
