//! A tiny eBPF interpreter for the subset [`super::ebpf::generate`] emits, so a
//! device program can be checked without loading it.
//!
//! It must not load or attach anything: it reads instructions in memory only
//! (the `bpf(2)` calls are [`super::act`]'s).
//!
//! [`validate`] refuses what the kernel's verifier would refuse of such a
//! program, and more: an empty program or one beyond [`MAX_INSNS`], an opcode
//! outside the subset, a register beyond R10 or a write to R10, a jump that
//! goes backwards or out of the program, an unreachable instruction, a last
//! instruction that is not `exit`, a read of a register not written on every
//! path, a context load that is not a whole aligned field of
//! `bpf_cgroup_dev_ctx` or not through the context pointer, arithmetic on the
//! context pointer, and an `exit` whose R0 is not the constant 0 or 1 on every
//! path (the verifier's return range for cgroup device programs).
//! [`Checked::run`] then executes: every jump goes forward, so a run takes at
//! most one step per instruction.

use core::fmt;

use super::ebpf::*;

/// What the kernel passes to a device program (`bpf_cgroup_dev_ctx`), with
/// `access_type` already split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevCtx {
    /// `BPF_DEVCG_DEV_BLOCK` (1) or `BPF_DEVCG_DEV_CHAR` (2).
    pub dev_type: u16,
    /// `ACC_*` bits.
    pub access: u16,
    pub major: u32,
    pub minor: u32,
}

impl DevCtx {
    fn field(&self, off: i16) -> Option<u32> {
        match off {
            CTX_ACCESS_TYPE => Some((u32::from(self.access) << 16) | u32::from(self.dev_type)),
            CTX_MAJOR => Some(self.major),
            CTX_MINOR => Some(self.minor),
            _ => None,
        }
    }
}

/// Why a program is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// Index of the offending instruction (the length for length errors).
    pub at: usize,
    pub reason: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "instruction {}: {}", self.at, self.reason)
    }
}

fn bad(at: usize, reason: impl Into<String>) -> Invalid {
    Invalid { at, reason: reason.into() }
}

/// What the validator knows of a register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Uninit,
    /// The context pointer.
    Ctx,
    /// The frame pointer (R10): read-only, never used by this subset.
    Frame,
    /// A known 64-bit constant.
    Const(u64),
    /// Some number.
    Scalar,
}

type State = [Kind; 11];

fn meet(a: &State, b: &State) -> State {
    let mut out = *a;
    for (o, (x, y)) in out.iter_mut().zip(a.iter().zip(b)) {
        *o = match (x, y) {
            _ if x == y => *x,
            (Kind::Const(_) | Kind::Scalar, Kind::Const(_) | Kind::Scalar) => Kind::Scalar,
            _ => Kind::Uninit,
        };
    }
    out
}

fn number(k: Kind) -> bool {
    matches!(k, Kind::Const(_) | Kind::Scalar)
}

/// A program that passed [`validate`].
#[derive(Debug, Clone, Copy)]
pub struct Checked<'a> {
    insns: &'a [Insn],
}

/// Check `p` as described in the module documentation: its shape first,
/// then every instruction in order with the registers known on entry to it
/// (met over every path that reaches it; every jump goes forward, so one
/// pass sees all of them).
pub fn validate(p: &[Insn]) -> Result<Checked<'_>, Invalid> {
    let len = p.len();
    if len == 0 {
        return Err(bad(0, "empty program"));
    }
    if len > MAX_INSNS {
        return Err(bad(len, format!("longer than {MAX_INSNS} instructions")));
    }
    if p.last().map(|i| i.code) != Some(EXIT) {
        return Err(bad(len - 1, "the last instruction is not exit"));
    }
    let mut incoming: Vec<Option<State>> = vec![None; len];
    let u = Kind::Uninit;
    if let Some(s) = incoming.get_mut(0) {
        *s = Some([u, Kind::Ctx, u, u, u, u, u, u, u, u, Kind::Frame]);
    }
    for (pc, i) in p.iter().enumerate() {
        let Some(mut st) = incoming.get(pc).copied().flatten() else {
            return Err(bad(pc, "unreachable instruction"));
        };
        let next = transfer(pc, i, &mut st, len)?;
        for t in [next.falls.then_some(pc + 1), next.jump].into_iter().flatten() {
            if let Some(slot) = incoming.get_mut(t) {
                *slot = Some(match slot {
                    Some(prev) => meet(prev, &st),
                    None => st,
                });
            }
        }
    }
    Ok(Checked { insns: p })
}

/// Where control may go after one instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Next {
    /// To the next instruction.
    falls: bool,
    /// To this one (forward, inside the program).
    jump: Option<usize>,
}

fn set(st: &mut State, d: usize, k: Kind) {
    if let Some(r) = st.get_mut(d) {
        *r = k;
    }
}

/// Instruction `i` at `pc` of a `len`-long program, on the registers `st`
/// holds before it: refused, or where control goes next, with `st` now the
/// registers after it.
fn transfer(pc: usize, i: &Insn, st: &mut State, len: usize) -> Result<Next, Invalid> {
    let (d, s) = (usize::from(i.dst), usize::from(i.src));
    let (Some(&dk), Some(&sk)) = (st.get(d), st.get(s)) else {
        return Err(bad(pc, "register beyond r10"));
    };
    let writes = !matches!(i.code, JNE_K | JA | EXIT);
    if writes && d == 10 {
        return Err(bad(pc, "write to the read-only frame pointer"));
    }
    match i.code {
        LDX_W => {
            if sk != Kind::Ctx {
                return Err(bad(pc, "load through a register that is not the context"));
            }
            if !matches!(i.off, CTX_ACCESS_TYPE | CTX_MAJOR | CTX_MINOR) || i.imm != 0 {
                return Err(bad(pc, format!("context load at offset {} (fields are at 0, 4, 8)", i.off)));
            }
            set(st, d, Kind::Scalar);
        }
        MOV64_K => {
            if s != 0 || i.off != 0 {
                return Err(bad(pc, "reserved fields set"));
            }
            set(st, d, Kind::Const(i.imm as i64 as u64));
        }
        MOV32_X => {
            if !number(sk) || i.off != 0 || i.imm != 0 {
                return Err(bad(pc, "32-bit move of a pointer or an unwritten register"));
            }
            let k = match sk {
                Kind::Const(v) => Kind::Const(u64::from(v as u32)),
                _ => Kind::Scalar,
            };
            set(st, d, k);
        }
        AND32_K | RSH32_K => {
            if !number(dk) || s != 0 || i.off != 0 {
                return Err(bad(pc, "arithmetic on a pointer or an unwritten register"));
            }
            if i.code == RSH32_K && !(0..32).contains(&i.imm) {
                return Err(bad(pc, "shift by 32 or more"));
            }
            set(st, d, Kind::Scalar);
        }
        JNE_K | JA => return Ok(Next { falls: i.code == JNE_K, jump: Some(jump_target(pc, i, dk, len)?) }),
        EXIT => {
            if !matches!(st.first(), Some(Kind::Const(0) | Kind::Const(1))) {
                return Err(bad(pc, "r0 is not the constant 0 or 1 at exit"));
            }
            return Ok(Next { falls: false, jump: None });
        }
        c => return Err(bad(pc, format!("opcode {c:#04x} outside the device-program subset"))),
    }
    Ok(Next { falls: true, jump: None })
}

/// The target of the jump `i` at `pc` (`dk`: what its destination register
/// holds): forward and inside the `len`-long program, comparing a number
/// (`JNE_K`), with no reserved field set (`JA`).
fn jump_target(pc: usize, i: &Insn, dk: Kind, len: usize) -> Result<usize, Invalid> {
    if i.code == JNE_K && (!number(dk) || i.src != 0) {
        return Err(bad(pc, "comparison of a pointer or an unwritten register"));
    }
    if i.code == JA && (i.dst != 0 || i.src != 0 || i.imm != 0) {
        return Err(bad(pc, "reserved fields set"));
    }
    if i.off < 0 {
        return Err(bad(pc, "backward jump"));
    }
    let t = pc + 1 + i.off as usize;
    if t >= len {
        return Err(bad(pc, "jump out of the program"));
    }
    Ok(t)
}

impl Checked<'_> {
    /// R0 at `exit` for this context: 1 allows, 0 denies. `None` only if the
    /// program left the validated subset (it cannot).
    pub fn run(&self, ctx: &DevCtx) -> Option<u64> {
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        for _ in 0..=self.insns.len() {
            let i = self.insns.get(pc)?;
            let d = usize::from(i.dst);
            let src = *r.get(usize::from(i.src))?;
            let dst = r.get_mut(d)?;
            pc += 1;
            match i.code {
                LDX_W => *dst = u64::from(ctx.field(i.off)?),
                MOV64_K => *dst = i.imm as i64 as u64,
                MOV32_X => *dst = u64::from(src as u32),
                AND32_K => *dst = u64::from(*dst as u32 & i.imm as u32),
                RSH32_K => *dst = u64::from((*dst as u32) >> (i.imm as u32 & 31)),
                JNE_K => {
                    if *dst != i.imm as i64 as u64 {
                        pc += i.off as usize;
                    }
                }
                JA => pc += i.off as usize,
                EXIT => return r.first().copied(),
                _ => return None,
            }
        }
        None
    }

    /// Does the program allow this access?
    pub fn allows(&self, ctx: &DevCtx) -> bool {
        self.run(ctx) == Some(1)
    }
}
