//! Per-container cgroups: resource limits and the strict device allowlist.
//!
//! It must not allow any device by default, nor any wildcard but the one pty
//! range below; the files themselves are written by [`act`] only.
//!
//! Pure parts decide, the act layer writes files:
//!
//! - [`rules`]: the device allowlist of one container, from its `/dev` nodes
//!   ([`crate::confine::container::devices::nodes`]) plus `ptmx` and the `pts` range.
//! - [`ebpf`]: the cgroup v2 device program generated from the rules
//!   (`BPF_PROG_TYPE_CGROUP_DEVICE`), with an encoder and a disassembler;
//!   [`interp`] runs it in tests.
//! - [`v1`]: the same allowlist as `devices.deny`/`devices.allow` lines and
//!   the `devices.list` read-back check.
//! - [`limits`]: which controller files get which values, for both
//!   hierarchies, and the `memory.events` parser.
//! - [`act`]: creating, filling and removing a container's cgroup with `std::fs`
//!   and the raw `bpf(2)` calls of [`crate::sys::cgroup`].
//!
//! Default deny. There is exactly one wildcard rule, on purpose: `c 136:* rw`
//! for the Unix98 pty slaves under `/dev/pts`, whose minors the kernel hands
//! out at run time. No other rule has a wildcard major or minor, and nothing
//! like the `c *:* m` or `b *:* m` rules other runtimes add implicitly exists.

pub mod act;
pub mod ebpf;
pub mod interp;
pub mod limits;
pub mod v1;

use crate::confine::container::devices::{Node, ACC_MKNOD, ACC_READ, ACC_WRITE};

/// Device type as the cgroup device hook reports it (`BPF_DEVCG_DEV_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DevType {
    Block = 1,
    Char = 2,
}

impl DevType {
    /// `b` or `c`, as in `devices.allow` lines.
    pub fn letter(self) -> char {
        match self {
            DevType::Block => 'b',
            DevType::Char => 'c',
        }
    }
}

/// A rule's minor number: exact, or any (only for the pts range).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Minor {
    Exact(u32),
    Any,
}

/// One allow rule: a device type, a major, a minor and the `ACC_*` bits it
/// allows (`ACC_READ | ACC_WRITE | ACC_MKNOD`, never 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeviceRule {
    pub kind: DevType,
    pub major: u32,
    pub minor: Minor,
    pub access: u8,
}

/// Largest major and minor of a Linux `dev_t` (12 and 20 bits).
pub const MAJOR_MAX: u32 = (1 << 12) - 1;
pub const MINOR_MAX: u32 = (1 << 20) - 1;

/// `ptmx` inside the container's devpts instance (`/dev/ptmx -> pts/ptmx`).
pub const PTMX: (u32, u32) = (5, 2);
/// Major of the Unix98 pty slaves (`/dev/pts/N`); minors are dynamic.
pub const PTS_MAJOR: u32 = 136;

/// Every access bit.
pub const ACC_ALL: u8 = ACC_READ | ACC_WRITE | ACC_MKNOD;

/// `rwm` letters of `ACC_*` bits, in that order (`""` for none).
pub fn access_letters(bits: u8) -> String {
    let mut s = String::new();
    for (bit, c) in [(ACC_READ, 'r'), (ACC_WRITE, 'w'), (ACC_MKNOD, 'm')] {
        if bits & bit != 0 {
            s.push(c);
        }
    }
    s
}

/// The allowlist of one container from its `/dev` nodes: each node with its
/// access (the standard ones read-write, granted ones exactly as granted),
/// then `ptmx` 5:2 and the pts slaves 136:* read-write. `nodes` holds
/// character devices only ([`crate::confine::container::devices::nodes`] refuses block
/// devices), so every rule is a character rule.
pub fn rules(nodes: &[Node]) -> Vec<DeviceRule> {
    let rw = ACC_READ | ACC_WRITE;
    let mut out: Vec<DeviceRule> =
        nodes.iter().map(|n| DeviceRule { kind: DevType::Char, major: n.major, minor: Minor::Exact(n.minor), access: n.access }).collect();
    out.push(DeviceRule { kind: DevType::Char, major: PTMX.0, minor: Minor::Exact(PTMX.1), access: rw });
    out.push(DeviceRule { kind: DevType::Char, major: PTS_MAJOR, minor: Minor::Any, access: rw });
    out
}

/// The decision the rules intend, written plainly: some rule of that type and
/// major, whose minor is the one asked or the pts wildcard, allows every bit
/// asked. An empty request is never allowed (the kernel never asks one).
pub fn allows(rules: &[DeviceRule], kind: DevType, major: u32, minor: u32, access: u8) -> bool {
    access != 0
        && access & !ACC_ALL == 0
        && rules.iter().any(|r| {
            r.kind == kind
                && r.major == major
                && match r.minor {
                    Minor::Exact(m) => m == minor,
                    Minor::Any => true,
                }
                && access & !r.access == 0
        })
}

/// A rule set berth would refuse to install: an empty or unknown access set,
/// a number beyond `dev_t`, or a wildcard anywhere but `c 136:*`.
pub fn check_rules(rules: &[DeviceRule]) -> Result<(), String> {
    for r in rules {
        let shown = v1::allow_line(r);
        if r.access == 0 || r.access & !ACC_ALL != 0 {
            return Err(format!("rule `{shown}`: access bits {:#x} are not a non-empty subset of rwm", r.access));
        }
        if r.major > MAJOR_MAX {
            return Err(format!("rule `{shown}`: major beyond {MAJOR_MAX}"));
        }
        match r.minor {
            Minor::Exact(m) if m > MINOR_MAX => return Err(format!("rule `{shown}`: minor beyond {MINOR_MAX}")),
            Minor::Any if !(r.kind == DevType::Char && r.major == PTS_MAJOR) => {
                return Err(format!("rule `{shown}`: the only wildcard berth writes is c {PTS_MAJOR}:*"))
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
