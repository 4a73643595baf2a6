//! seccomp filters: berth's default profile, per-manifest additions, compiled
//! to classic BPF for x86_64, aarch64 and 32-bit ARM. It must not install
//! them: the container start does.
//!
//! This module only decides: it turns a [`Policy`] into a [`Program`] for an
//! [`Arch`] and checks it. Installing the program (`PR_SET_NO_NEW_PRIVS`, then
//! `seccomp(SECCOMP_SET_MODE_FILTER)` right before `execve`) is the container
//! start code's job, with [`Program::to_sock_filters`].
//!
//! # Why berth has its own emitter
//!
//! seccompiler has no 32-bit ARM target and libseccomp is a C dependency, and a
//! container must never run unfiltered because its architecture is unsupported.
//! One small emitter ([`bpf`]) and one interpreter ([`interp`]) serve all three
//! architectures, so the filter every device runs is the filter the tests run.
//! [`compile`] checks its own output: the program is validated as the kernel
//! would ([`interp::validate`]) and then executed on every syscall number of
//! the architecture's table, on the argument-filtered cases, on a foreign
//! architecture and on x32 numbers, and compared with what the policy says.
//! A mismatch is an error, never a filter.
//!
//! # Program shape
//!
//! ```text
//!     A = arch;  if A != AUDIT_ARCH_<arch> -> KILL_PROCESS
//!     A = nr
//!     (x86_64)  if A >= 0x40000000 -> (A == -1 ? ERRNO(EPERM) : KILL_PROCESS)   x32 ABI
//!     binary search over the number line -> leaf
//!     leaf: RET ALLOW | RET ERRNO(EPERM) | RET ERRNO(ENOSYS) | argument block
//! ```
//!
//! The number line `0..=u32::MAX` is cut into runs of consecutive numbers with
//! the same outcome (allowed syscalls are mostly contiguous), and a balanced
//! tree of `JGE` comparisons finds the run: about 8 comparisons for a few
//! hundred runs, instead of up to several hundred `JEQ` in a linear list. Each
//! leaf is inlined where the tree ends, so jumps stay short; the few that do
//! not fit the 8-bit offsets near the root get `ja` trampolines from the
//! assembler. With the default policy the programs are 204 (x86_64), 183
//! (aarch64) and 320 (arm) instructions, and no syscall executes more than 20
//! of them (the argument-filtered ones take a few comparisons more than the
//! rest); the largest policy a manifest can ask for stays in the same range
//! (the tests pin bounds far below `BPF_MAXINSNS` = 4096).
//!
//! A process of another ABI (an x86_64 process entering through `int 0x80`
//! reports `AUDIT_ARCH_I386`; a big-endian aarch64 one `AUDIT_ARCH_AARCH64BE`) is
//! killed, as is any x32 call on x86_64. ARM EABI
//! has no `socketcall` or `ipc` multiplexers in its table, so `socket` cannot
//! be reached around its argument filter.
//!
//! # Arguments
//!
//! `seccomp_data.args` are 64-bit; berth reads only the low 32-bit word
//! (offset `16 + 8*i` on these little-endian ABIs). That is exactly what the
//! kernel uses for every argument berth filters: each is an `int`/`unsigned
//! int` parameter (`clone` takes `lower_32_bits(flags)`), so high bits cannot
//! smuggle a value past the filter. On 32-bit ARM the arguments are 32-bit
//! anyway. [`args`] has the table of what each filtered call allows:
//!
//! * `clone`: only without `CLONE_NEW*` flags; `clone3`: `ENOSYS`, so libc
//!   falls back to `clone`, whose flags a classic filter can see.
//! * `socket`, `socketpair`: an allow-list of families: unix, inet, inet6,
//!   netlink; packet only with `CAP_NET_RAW`; the manifest's
//!   `socket_families` by name; never alg, vsock or key.
//! * `ioctl`: never `TIOCSTI`, `TIOCLINUX`, `TIOCCONS`, `TIOCSETD`, on any
//!   descriptor (a container's terminal may be shared with something else).
//! * `execveat`: never with `AT_EMPTY_PATH`: running a descriptor (a memfd, a
//!   deleted file) that no path, and so no `noexec` mount or Landlock
//!   `exec_paths` rule, covers. A path through `/proc/self/fd/N` is resolved
//!   to the file's own mount by the kernel, so those rules still apply.
//! * `memfd_create`: refused unless the manifest names it in
//!   `seccomp_allow`, and then never with `MFD_EXEC`; berth sets
//!   `vm.memfd_noexec` at boot so that a granted memfd is sealed
//!   non-executable (Landlock does not see memfds, so `exec_paths` could not
//!   keep one from running), and refuses to start a container granted it
//!   when the kernel cannot do that.
//! * `personality`: 0, `PER_LINUX32` (8), `UNAME26` (0x20000), both (0x20008) and
//!   the query 0xffffffff, as Docker does; nothing that turns off ASLR.
//!
//! # Differences from Docker's default profile
//!
//! Everything not allowed returns `EPERM` (as Docker). Stricter than Docker:
//! `chroot`, `mknod`/`mknodat` (device nodes come from berth; a manifest may add
//! them back, e.g. for `mkfifo`), `sethostname`/`setdomainname` (the
//! container's UTS namespace is berth's to name), `name_to_handle_at`,
//! `adjtimex`/`clock_adjtime`, `fanotify_mark`, `remap_file_pages`, `memfd_secret`,
//! `memfd_create` (unless granted), `execveat` with `AT_EMPTY_PATH`, socket
//! families outside the allow-list, the terminal ioctls above, x86
//! `modify_ldt`/`*_thread_area`, and the long-obsolete calls. `io_uring_*`
//! are denied because an io_uring executes reads, writes, socket creation and
//! more without a syscall the filter could see, which would make every
//! argument filter here moot (and it has had a long run of kernel bugs).
//!
//! # Per-manifest additions
//!
//! `seccomp_allow` names more syscalls to allow. A name the architecture does
//! not have is an error naming it and the architecture (so a multi-arch
//! release fails to build rather than run with a different profile per arch).
//! Names in [`profile::NOT_GRANTABLE`] (argument-filtered calls, mount and
//! namespace calls, calls that act on the host kernel, keyrings, io_uring,
//! `ptrace`, `userfaultfd`, `modify_ldt`, `vhangup`) are refused with the
//! reason. `socket_families` adds families by name ([`args::FAMILIES`]);
//! a name that is default, comes with a capability or is never allowed is
//! refused with the reason.

use core::fmt;
use std::vec::Vec;

use heapless::String;
use sha2::{Digest as _, Sha256};

use crate::release::manifest::{Manifest, FAMILIES_MAX, SYSCALLS_MAX, SYSCALL_NAME_MAX};

pub mod args;
pub mod bpf;
pub mod interp;
// Lists of syscall names laid out by hand, a few per line.
#[rustfmt::skip]
pub mod profile;
pub mod tables;

#[cfg(test)]
mod pinned;
#[cfg(test)]
#[rustfmt::skip]
mod tests;

use bpf::{Asm, Cond, Insn};
use interp::{Action, SeccompData, RET_ALLOW, RET_ERRNO, RET_KILL_PROCESS};
use profile::Special;

/// A syscall name as a manifest spells it.
pub type SyscallName = String<SYSCALL_NAME_MAX>;

/// `EPERM` and `ENOSYS` (the same on all three ABIs).
pub const EPERM: u16 = 1;
pub const ENOSYS: u16 = 38;

pub use args::{AF_ALG, AF_PACKET, AF_VSOCK, CLONE_NEW_MASK, PERSONALITIES};

/// A socket family name as a manifest spells it.
pub type FamilyName = String<{ args::FAMILY_NAME_MAX }>;

/// Offsets in `struct seccomp_data`.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;

/// x86_64 numbers at or above this are the x32 ABI.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// A Linux ABI berth builds filters for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arch {
    X86_64,
    Aarch64,
    /// 32-bit ARM, EABI (armv7).
    Arm,
}

impl Arch {
    pub const ALL: [Arch; 3] = [Arch::X86_64, Arch::Aarch64, Arch::Arm];

    /// `AUDIT_ARCH_*`, what the kernel puts in `seccomp_data.arch`.
    pub const fn audit(self) -> u32 {
        match self {
            Arch::X86_64 => 0xC000_003E,
            Arch::Aarch64 => 0xC000_00B7,
            Arch::Arm => 0x4000_0028,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
            Arch::Arm => "arm",
        }
    }

    /// The ABI of the running berth, if it is one berth filters (little-endian
    /// only: big-endian ABIs have other `AUDIT_ARCH` values and layouts).
    pub const fn native() -> Option<Arch> {
        if cfg!(all(target_arch = "x86_64", target_pointer_width = "64", target_endian = "little")) {
            Some(Arch::X86_64)
        } else if cfg!(all(target_arch = "aarch64", target_endian = "little")) {
            Some(Arch::Aarch64)
        } else if cfg!(all(target_arch = "arm", target_endian = "little")) {
            Some(Arch::Arm)
        } else {
            None
        }
    }

    /// [`Arch::native`], or the error that keeps a container from starting.
    pub fn running() -> Result<Arch, SeccompError> {
        Arch::native().ok_or(SeccompError::UnsupportedArch)
    }

    /// Every syscall of this ABI, by number.
    pub fn table(self) -> &'static [(&'static str, u32)] {
        match self {
            Arch::X86_64 => tables::X86_64,
            Arch::Aarch64 => tables::AARCH64,
            Arch::Arm => tables::ARM,
        }
    }

    /// The number of syscall `name` on this ABI.
    pub fn number(self, name: &str) -> Option<u32> {
        self.table().iter().find(|(n, _)| *n == name).map(|(_, nr)| *nr)
    }

    /// The name of syscall number `nr` on this ABI.
    pub fn syscall_name(self, nr: u32) -> Option<&'static str> {
        self.table().iter().find(|(_, n)| *n == nr).map(|(name, _)| *name)
    }
}

impl From<crate::release::board::Arch> for Arch {
    fn from(a: crate::release::board::Arch) -> Arch {
        match a {
            crate::release::board::Arch::X86_64 => Arch::X86_64,
            crate::release::board::Arch::Aarch64 => Arch::Aarch64,
            crate::release::board::Arch::Armv7 => Arch::Arm,
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why no filter was built. Every variant names what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeccompError {
    /// berth runs on an architecture it has no filter for.
    UnsupportedArch,
    /// A manifest names a syscall this architecture does not have.
    UnknownSyscall { name: SyscallName, arch: Arch },
    /// A manifest names a syscall that may never be added.
    NotGrantable { name: SyscallName, reason: &'static str },
    /// More additions than a manifest can hold.
    TooManyAdditions { name: SyscallName },
    /// A socket family that cannot be added by name, and why.
    Family { name: FamilyName, reason: &'static str },
    /// The default profile names a syscall the architecture's table lacks (a
    /// bug in berth, caught by the tests).
    Profile { name: &'static str, arch: Arch },
    /// The program could not be assembled.
    Assemble { arch: Arch, error: bpf::AsmError },
    /// The kernel would refuse the program.
    Invalid { arch: Arch, error: interp::Invalid },
    /// The program does not do what the policy says.
    SelfCheck { arch: Arch, case: &'static str, nr: u32, got: Action, want: Action },
}

impl fmt::Display for SeccompError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SeccompError::UnsupportedArch => f.write_str("no seccomp filter for this architecture (berth filters x86_64, aarch64 and arm)"),
            SeccompError::UnknownSyscall { name, arch } => {
                write!(f, "seccomp_allow: `{name}` is not a syscall on {arch}")
            }
            SeccompError::NotGrantable { name, reason } => {
                write!(f, "seccomp_allow: `{name}` {reason}")
            }
            SeccompError::TooManyAdditions { name } => {
                write!(f, "seccomp_allow: `{name}` is one more than the {SYSCALLS_MAX} allowed")
            }
            SeccompError::Family { name, reason } => {
                write!(f, "socket_families: `{name}` {reason}")
            }
            SeccompError::Profile { name, arch } => write!(f, "default seccomp profile names `{name}`, absent on {arch}"),
            SeccompError::Assemble { arch, error } => {
                write!(f, "seccomp filter for {arch}: {error}")
            }
            SeccompError::Invalid { arch, error } => {
                write!(f, "seccomp filter for {arch} is invalid: {error}")
            }
            SeccompError::SelfCheck { arch, case, nr, got, want } => {
                write!(f, "seccomp filter for {arch} self-check: {case} (nr {nr}) gave {got:?}, expected {want:?}")
            }
        }
    }
}

impl std::error::Error for SeccompError {}

fn owned<const N: usize>(name: &str) -> String<N> {
    // Names longer than a manifest allows are cut; they are only reported.
    let mut s = String::new();
    for c in name.chars() {
        if s.push(c).is_err() {
            break;
        }
    }
    s
}

/// What one container's filter allows beyond the default profile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    extra: heapless::Vec<SyscallName, SYSCALLS_MAX>,
    net_raw: bool,
    families: heapless::Vec<FamilyName, FAMILIES_MAX>,
}

impl Policy {
    /// The default profile, nothing added.
    pub fn new() -> Policy {
        Policy::default()
    }

    /// The manifest's `seccomp_allow` and `socket_families`, and `AF_PACKET`
    /// if it is granted `CAP_NET_RAW`.
    pub fn from_manifest(m: &Manifest) -> Policy {
        Policy {
            extra: m.seccomp_allow.clone(),
            net_raw: m.capabilities.iter().any(|c| c.as_str() == "CAP_NET_RAW"),
            families: m.socket_families.iter().map(|f| owned(f)).collect(),
        }
    }

    /// Add a syscall by name (checked against the architecture by [`compile`]).
    pub fn allow(&mut self, name: &str) -> Result<(), SeccompError> {
        self.extra.push(owned(name)).map_err(|_| SeccompError::TooManyAdditions { name: owned(name) })
    }

    /// Add a socket family by name (checked by [`compile`]).
    pub fn allow_family(&mut self, name: &str) -> Result<(), SeccompError> {
        self.families.push(owned(name)).map_err(|_| SeccompError::Family { name: owned(name), reason: "is one more than a manifest may list" })
    }

    /// Whether `AF_PACKET` sockets are allowed.
    pub fn set_net_raw(&mut self, granted: bool) {
        self.net_raw = granted;
    }

    pub fn extra(&self) -> &[SyscallName] {
        &self.extra
    }

    pub fn net_raw(&self) -> bool {
        self.net_raw
    }

    pub fn families(&self) -> impl Iterator<Item = &str> {
        self.families.iter().map(|f| f.as_str())
    }

    /// Whether `memfd_create` is granted (by name, in `seccomp_allow`).
    pub fn memfd(&self) -> bool {
        self.extra.iter().any(|n| n.as_str() == "memfd_create")
    }
}

/// A checked filter for one architecture: at most [`bpf::MAX_INSNS`]
/// instructions that the kernel's checks accept and that behave as the policy
/// says (see [`compile`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    arch: Arch,
    insns: Vec<Insn>,
}

impl Program {
    pub fn arch(&self) -> Arch {
        self.arch
    }

    pub fn instructions(&self) -> &[Insn] {
        &self.insns
    }

    pub fn len(&self) -> usize {
        self.insns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.insns.is_empty()
    }

    /// The program as the kernel reads it: 8 little-endian bytes per instruction.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.insns.iter().flat_map(|i| i.to_le_bytes()).collect()
    }

    /// SHA-256 of [`Program::to_bytes`]: identifies the profile (the arch is in
    /// the program's first check, so the same policy hashes differently per arch).
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.to_bytes()).into()
    }

    /// The instructions as `libc::sock_filter`, for `struct sock_fprog`.
    pub fn to_sock_filters(&self) -> Vec<libc::sock_filter> {
        self.insns.iter().map(|i| i.to_sock_filter()).collect()
    }

    /// What the kernel would do with `data` (for tests and diagnostics).
    pub fn run(&self, data: &SeccompData) -> Result<Action, interp::Invalid> {
        interp::run(&self.insns, data)
    }
}

/// What the filter does with one syscall number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Deny,
    Allow,
    Special(Special),
}

/// Every non-denied syscall number of `arch` under `policy`, sorted.
fn rules(policy: &Policy, arch: Arch) -> Result<Vec<(u32, Outcome)>, SeccompError> {
    let mut out = Vec::new();
    let number = |name: &'static str| arch.number(name).ok_or(SeccompError::Profile { name, arch });
    for name in profile::allowed_on(arch) {
        out.push((number(name)?, Outcome::Allow));
    }
    for (name, s) in profile::SPECIAL {
        out.push((number(name)?, Outcome::Special(*s)));
    }
    for name in &policy.extra {
        if let Some(reason) = profile::not_grantable(name) {
            return Err(SeccompError::NotGrantable { name: name.clone(), reason });
        }
        let nr = arch.number(name).ok_or_else(|| SeccompError::UnknownSyscall { name: name.clone(), arch })?;
        // Granted, but still argument-filtered ([`Policy::memfd`]).
        if profile::SPECIAL.iter().any(|(n, _)| *n == name.as_str()) {
            continue;
        }
        out.push((nr, Outcome::Allow));
    }
    for name in &policy.families {
        if let Some(reason) = args::family_refusal(name) {
            return Err(SeccompError::Family { name: name.clone(), reason });
        }
    }
    out.sort_unstable_by_key(|(nr, _)| *nr);
    // An addition already in the profile is harmless; the same number with two
    // different outcomes is not.
    out.dedup_by(|b, a| a.0 == b.0 && a.1 == b.1);
    for w in out.windows(2) {
        if let [a, b] = w {
            if a.0 == b.0 {
                let name = arch.syscall_name(a.0).unwrap_or("?");
                return Err(SeccompError::Profile { name, arch });
            }
        }
    }
    Ok(out)
}

/// Cut the number line into runs `(first number, outcome)`; each run ends
/// where the next starts, the last at `u32::MAX`.
fn runs(rules: &[(u32, Outcome)]) -> Vec<(u32, Outcome)> {
    let mut runs: Vec<(u32, Outcome)> = vec![(0, Outcome::Deny)];
    let mut next: Option<u32> = Some(0);
    for &(nr, o) in rules {
        if next != Some(nr) {
            push_run(&mut runs, next.unwrap_or(u32::MAX), Outcome::Deny);
        }
        push_run(&mut runs, nr, o);
        next = nr.checked_add(1);
    }
    if let Some(n) = next {
        push_run(&mut runs, n, Outcome::Deny);
    }
    runs
}

fn push_run(runs: &mut Vec<(u32, Outcome)>, start: u32, o: Outcome) {
    match runs.last_mut() {
        Some(last) if last.1 == o => {}
        Some(last) if last.0 == start => last.1 = o,
        _ => runs.push((start, o)),
    }
}

pub(crate) const RET_DENY: u32 = RET_ERRNO | EPERM as u32;
pub(crate) const RET_ENOSYS: u32 = RET_ERRNO | ENOSYS as u32;

/// Emit the search tree over `runs` (non-empty): `A` holds the syscall number.
fn tree(a: &mut Asm, runs: &[(u32, Outcome)], policy: &Policy) {
    match runs {
        [] => a.ret(RET_DENY),
        [(_, o)] => leaf(a, *o, policy),
        _ => {
            let mid = runs.len() / 2;
            let (lo, hi) = runs.split_at(mid);
            let (l_lo, l_hi) = (a.label(), a.label());
            let start = hi.first().map(|r| r.0).unwrap_or(u32::MAX);
            a.jump(Cond::Ge, start, l_hi, l_lo);
            a.bind(l_lo);
            tree(a, lo, policy);
            a.bind(l_hi);
            tree(a, hi, policy);
        }
    }
}

fn leaf(a: &mut Asm, o: Outcome, policy: &Policy) {
    match o {
        Outcome::Deny => a.ret(RET_DENY),
        Outcome::Allow => a.ret(RET_ALLOW),
        Outcome::Special(s) => args::leaf(a, s, policy),
    }
}

/// Build the filter for `policy` on `arch`, then check it (see the module docs).
pub fn compile(policy: &Policy, arch: Arch) -> Result<Program, SeccompError> {
    let rules = rules(policy, arch)?;
    let runs = runs(&rules);

    let mut a = Asm::new();
    let (arch_ok, kill) = (a.label(), a.label());
    a.ld_abs(OFF_ARCH);
    a.jump(Cond::Eq, arch.audit(), arch_ok, kill);
    a.bind(kill);
    a.ret(RET_KILL_PROCESS);
    a.bind(arch_ok);
    a.ld_abs(OFF_NR);
    if arch == Arch::X86_64 {
        let (x32, search, deny, kill) = (a.label(), a.label(), a.label(), a.label());
        a.jump(Cond::Ge, X32_SYSCALL_BIT, x32, search);
        a.bind(x32);
        // -1 is what a tracer uses to skip a syscall: deny, not kill.
        a.jump(Cond::Eq, u32::MAX, deny, kill);
        a.bind(kill);
        a.ret(RET_KILL_PROCESS);
        a.bind(deny);
        a.ret(RET_DENY);
        a.bind(search);
    }
    tree(&mut a, &runs, policy);
    let insns = a.assemble().map_err(|error| SeccompError::Assemble { arch, error })?;
    interp::validate(&insns).map_err(|error| SeccompError::Invalid { arch, error })?;
    let program = Program { arch, insns };
    self_check(&program, policy, &rules)?;
    Ok(program)
}

/// [`compile`] for the running architecture; an error if there is none.
pub fn compile_native(policy: &Policy) -> Result<Program, SeccompError> {
    compile(policy, Arch::running()?)
}

/// What the policy says about `nr` with arguments `args`.
fn expected(rules: &[(u32, Outcome)], policy: &Policy, nr: u32, args: &[u64; 6]) -> Action {
    match rules.binary_search_by_key(&nr, |r| r.0).ok().and_then(|i| rules.get(i)) {
        None | Some((_, Outcome::Deny)) => Action::Errno(EPERM),
        Some((_, Outcome::Allow)) => Action::Allow,
        Some((_, Outcome::Special(s))) => args::expected(*s, policy, args),
    }
}

/// Run the program on every number of the table, around every run
/// boundary, on each special call's argument cases, on a foreign
/// architecture and on x32 numbers.
fn self_check(p: &Program, policy: &Policy, rules: &[(u32, Outcome)]) -> Result<(), SeccompError> {
    let arch = p.arch;
    let check = |case: &'static str, data: SeccompData, want: Action| -> Result<(), SeccompError> {
        let nr = data.nr as u32;
        // `compile` validated the program already.
        let got = interp::execute(&p.insns, &data).map_err(|error| SeccompError::Invalid { arch, error })?.0;
        if got == want {
            Ok(())
        } else {
            Err(SeccompError::SelfCheck { arch, case, nr, got, want })
        }
    };
    let audit = arch.audit();
    let zero = [0u64; 6];
    for &(name, nr) in arch.table() {
        check(name, SeccompData::new(audit, nr, &[]), expected(rules, policy, nr, &zero))?;
    }
    // Numbers around every run boundary (off-by-one in the tree).
    for &(nr, _) in rules {
        for n in [nr.wrapping_sub(1), nr, nr.wrapping_add(1)] {
            if arch != Arch::X86_64 || n < X32_SYSCALL_BIT {
                check("boundary", SeccompData::new(audit, n, &[]), expected(rules, policy, n, &zero))?;
            }
        }
    }
    let foreign = Arch::ALL.iter().map(|a| a.audit()).find(|a| *a != audit).unwrap_or(0);
    check("foreign arch", SeccompData::new(foreign, 0, &[]), Action::KillProcess)?;
    if arch == Arch::X86_64 {
        check("x32", SeccompData::new(audit, X32_SYSCALL_BIT, &[]), Action::KillProcess)?;
        check("nr -1", SeccompData::new(audit, u32::MAX, &[]), Action::Errno(EPERM))?;
    }
    for (name, s) in profile::SPECIAL {
        let nr = arch.number(name).ok_or(SeccompError::Profile { name, arch })?;
        for a in args::cases(*s) {
            check(name, SeccompData::new(audit, nr, &a), args::expected(*s, policy, &a))?;
        }
    }
    Ok(())
}
