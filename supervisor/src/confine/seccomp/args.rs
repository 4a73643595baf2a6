//! The argument-filtered syscalls: their constants, the socket family
//! table, the code each one's leaf runs, and what the policy says about a
//! given argument (for the self-check and the tests). It must not allow a
//! namespace flag, a tty injection ioctl or an unlisted socket family.
//!
//! Every filtered argument is an `int`/`unsigned int` parameter of its
//! syscall, so the kernel only ever uses the low 32-bit word, which is the
//! word the filter reads (see the module docs of [`super`]):
//!
//! | syscall | argument | allowed |
//! |---|---|---|
//! | `clone` | 0, flags | no `CLONE_NEW*` flag |
//! | `socket`, `socketpair` | 0, family | `AF_UNIX`, `AF_INET`, `AF_INET6`, `AF_NETLINK`; `AF_PACKET` with `CAP_NET_RAW`; the manifest's `socket_families` |
//! | `personality` | 0, persona | [`PERSONALITIES`] |
//! | `ioctl` | 1, request | anything but [`TTY_IOCTLS`] (`TIOCSTI`, `TIOCLINUX`, `TIOCCONS`, `TIOCSETD`), on any fd |
//! | `execveat` | 4, flags | without `AT_EMPTY_PATH` |
//! | `memfd_create` | 1, flags | nothing, unless granted (`seccomp_allow = ["memfd_create"]`); then without `MFD_EXEC` |

use super::bpf::{Asm, Cond};
use super::interp::{Action, RET_ALLOW};
use super::profile::Special;
use super::{Policy, ENOSYS, EPERM, RET_DENY, RET_ENOSYS};

pub use crate::release::manifest::families::{
    family, family_refusal, Grant, AF_ALG, AF_INET, AF_INET6, AF_NETLINK, AF_PACKET, AF_UNIX, AF_VSOCK, FAMILIES, FAMILY_NAME_MAX,
};

/// One past the highest family Linux 6.12 knows (`AF_MAX`).
pub const AF_MAX: u32 = 46;

/// The families every container may open.
pub const DEFAULT_FAMILIES: [u32; 4] = [AF_UNIX, AF_INET, AF_INET6, AF_NETLINK];

/// Every `CLONE_NEW*` flag `clone` accepts (NS, CGROUP, UTS, IPC, USER, PID, NET).
pub const CLONE_NEW_MASK: u32 = 0x0002_0000 | 0x0200_0000 | 0x0400_0000 | 0x0800_0000 | 0x1000_0000 | 0x2000_0000 | 0x4000_0000;

/// The `personality` values allowed (Docker's list).
pub const PERSONALITIES: [u32; 5] = [0, 0x0008, 0x2_0000, 0x2_0008, 0xffff_ffff];

/// Terminal requests refused on any descriptor: `TIOCSTI` (type input into
/// a terminal someone else reads), `TIOCLINUX` (console selection and
/// screen dumps), `TIOCCONS` (redirect the console), `TIOCSETD` (swap the
/// line discipline: kernel code paths no container needs). The same numbers
/// on all three ABIs (the generic `ioctls.h`).
pub const TTY_IOCTLS: [(&str, u32); 4] = [("TIOCSTI", 0x5412), ("TIOCLINUX", 0x541C), ("TIOCCONS", 0x541D), ("TIOCSETD", 0x5423)];

/// `AT_EMPTY_PATH`: `execveat` runs the file the descriptor is open on.
pub const AT_EMPTY_PATH: u32 = 0x1000;
/// `MFD_EXEC`: an executable memfd (Linux 6.3).
pub const MFD_EXEC: u32 = 0x0010;

/// Low word of argument `i` in `struct seccomp_data` (little-endian).
pub const fn arg_low(i: u32) -> u32 {
    16 + 8 * i
}

/// The families `policy` allows, sorted.
pub fn allowed_families(policy: &Policy) -> heapless::Vec<u32, { 5 + crate::release::manifest::FAMILIES_MAX }> {
    let mut out: heapless::Vec<u32, { 5 + crate::release::manifest::FAMILIES_MAX }> = heapless::Vec::new();
    for f in DEFAULT_FAMILIES {
        let _ = out.push(f);
    }
    if policy.net_raw() {
        let _ = out.push(AF_PACKET);
    }
    for name in policy.families() {
        if let Some((nr, Grant::ByName)) = family(name) {
            if !out.contains(&nr) {
                let _ = out.push(nr);
            }
        }
    }
    out.sort_unstable();
    out
}

/// What `policy` says about special syscall `s` with these arguments.
pub fn expected(s: Special, policy: &Policy, args: &[u64; 6]) -> Action {
    let low = |i: usize| args.get(i).map_or(0, |a| *a as u32);
    let allow_if = |ok: bool| {
        if ok {
            Action::Allow
        } else {
            Action::Errno(EPERM)
        }
    };
    match s {
        Special::Clone3 => Action::Errno(ENOSYS),
        Special::Clone => allow_if(low(0) & CLONE_NEW_MASK == 0),
        Special::Socket => allow_if(allowed_families(policy).contains(&low(0))),
        Special::Personality => allow_if(PERSONALITIES.contains(&low(0))),
        Special::Ioctl => allow_if(!TTY_IOCTLS.iter().any(|(_, r)| *r == low(1))),
        Special::Execveat => allow_if(low(4) & AT_EMPTY_PATH == 0),
        Special::MemfdCreate => allow_if(policy.memfd() && low(1) & MFD_EXEC == 0),
    }
}

/// `if A == any of values goto hit else goto miss`.
fn any_of(a: &mut Asm, values: &[u32], hit: super::bpf::Label, miss: super::bpf::Label) {
    for v in values {
        let next = a.label();
        a.jump(Cond::Eq, *v, hit, next);
        a.bind(next);
    }
    a.ja(miss);
}

/// `ret ALLOW` if argument `i` has none of `bits`, else `ret DENY`.
fn none_of(a: &mut Asm, i: u32, bits: u32) {
    let (allow, deny) = (a.label(), a.label());
    a.ld_abs(arg_low(i));
    a.jump(Cond::Set, bits, deny, allow);
    a.bind(allow);
    a.ret(RET_ALLOW);
    a.bind(deny);
    a.ret(RET_DENY);
}

/// The leaf of special syscall `s`: loads its argument, decides, returns.
pub fn leaf(a: &mut Asm, s: Special, policy: &Policy) {
    let (allow, deny) = (a.label(), a.label());
    match s {
        Special::Clone3 => return a.ret(RET_ENOSYS),
        Special::Clone => return none_of(a, 0, CLONE_NEW_MASK),
        Special::Execveat => return none_of(a, 4, AT_EMPTY_PATH),
        Special::MemfdCreate if !policy.memfd() => return a.ret(RET_DENY),
        Special::MemfdCreate => return none_of(a, 1, MFD_EXEC),
        Special::Socket => {
            a.ld_abs(arg_low(0));
            any_of(a, &allowed_families(policy), allow, deny);
        }
        Special::Personality => {
            a.ld_abs(arg_low(0));
            any_of(a, &PERSONALITIES, allow, deny);
        }
        Special::Ioctl => {
            a.ld_abs(arg_low(1));
            let requests: heapless::Vec<u32, 4> = TTY_IOCTLS.iter().map(|(_, r)| *r).collect();
            any_of(a, &requests, deny, allow);
        }
    }
    a.bind(allow);
    a.ret(RET_ALLOW);
    a.bind(deny);
    a.ret(RET_DENY);
}

/// Argument cases the self-check runs for special syscall `s` (besides all
/// arguments zero): each value that matters, and its neighbours.
pub fn cases(s: Special) -> heapless::Vec<[u64; 6], 64> {
    let mut out: heapless::Vec<[u64; 6], 64> = heapless::Vec::new();
    let mut at = |i: usize, v: u64| {
        let mut args = [0u64; 6];
        if let Some(slot) = args.get_mut(i) {
            *slot = v;
        }
        let _ = out.push(args);
    };
    match s {
        Special::Clone3 => {}
        Special::Clone => {
            at(0, 17);
            at(0, 0x1000_0000 | 17);
            at(0, u64::from(CLONE_NEW_MASK));
        }
        Special::Socket => {
            for f in 0..=AF_MAX {
                at(0, u64::from(f));
            }
            at(0, (1 << 32) | u64::from(AF_ALG));
            at(0, u64::from(u32::MAX));
        }
        Special::Personality => {
            for p in PERSONALITIES {
                at(0, u64::from(p));
            }
            at(0, 0x4_0000);
        }
        Special::Ioctl => {
            for (_, r) in TTY_IOCTLS {
                at(1, u64::from(r));
                at(1, u64::from(r) + 1);
                at(1, (1 << 32) | u64::from(r));
            }
            at(1, 0x5401);
        }
        Special::Execveat => {
            at(4, u64::from(AT_EMPTY_PATH));
            at(4, 0x100);
            at(4, u64::from(AT_EMPTY_PATH | 0x100));
        }
        Special::MemfdCreate => {
            at(1, 1);
            at(1, u64::from(MFD_EXEC));
            at(1, 0x8);
        }
    }
    out
}
