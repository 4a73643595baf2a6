//! Start-path timestamps for `berth bench-start` (host build only): each
//! step of a container start, in the supervisor and in both children, says
//! when it begins (`CLOCK_MONOTONIC`) on a pipe the benchmark armed.
//!
//! It must not cost anything in the device build: without the `host`
//! feature every function here is an empty inline one. It must not allocate
//! or format in the children: a stamp is one 16-byte `write(2)` of plain
//! data, and nothing is written until [`arm`] was called (only the
//! benchmark calls it). The pipe's write end is close-on-exec, so no
//! container keeps it.

use super::Step;

/// Steps of the supervisor's side of a start that are not [`Step`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    /// `launch_in` called: the start begins.
    Launch,
    /// Host preparation (device nodes, volumes).
    Prepare,
    /// Volume quotas.
    Quota,
    /// cgroup: the device program generated, controllers enabled on the way down, the group directory.
    CgroupParent,
    /// cgroup: `mkdir` of the container's cgroup.
    CgroupMkdir,
    /// cgroup: the limit files written.
    CgroupLimits,
    /// cgroup: the directory opened, the device program loaded and attached.
    CgroupDevices,
    /// The output pipe and `/dev/null`.
    Stdio,
    /// The supervisor saw the exec (the error pipe's EOF), the intermediate reaped.
    Started,
}

const HOST: [(Host, &str); 9] = [
    (Host::Launch, "launch"),
    (Host::Prepare, "prepare"),
    (Host::Quota, "quota"),
    (Host::CgroupParent, "cgroup-parent"),
    (Host::CgroupMkdir, "cgroup-mkdir"),
    (Host::CgroupLimits, "cgroup-limits"),
    (Host::CgroupDevices, "cgroup-devices"),
    (Host::Stdio, "output-pipe"),
    (Host::Started, "started"),
];

/// First wire code of [`Host`] (above every [`Step`] code).
const HOST_CODE: u16 = 200;
/// Size of one stamp: code `u16`, index `u16`, 4 bytes zero, nanoseconds `u64`.
pub const STAMP: usize = 16;

fn host_code(h: Host) -> u16 {
    HOST.iter().position(|(x, _)| *x == h).and_then(|p| u16::try_from(p).ok()).map_or(u16::MAX, |p| HOST_CODE + p)
}

/// One stamp's bytes.
pub fn encode(code: u16, index: u16, ns: u64) -> [u8; STAMP] {
    let mut out = [0u8; STAMP];
    let (a, rest) = out.split_at_mut(2);
    let (b, rest) = rest.split_at_mut(2);
    a.copy_from_slice(&code.to_ne_bytes());
    b.copy_from_slice(&index.to_ne_bytes());
    if let Some(c) = rest.get_mut(4..) {
        c.copy_from_slice(&ns.to_ne_bytes());
    }
    out
}

/// A stamp's step label (`mount-3`, `landlock-rule-0`, `cgroup-mkdir`) and
/// nanoseconds; `None` for bytes that are no stamp.
pub fn decode(r: &[u8; STAMP]) -> Option<(String, u64)> {
    let [a0, a1, b0, b1, _, _, _, _, n0, n1, n2, n3, n4, n5, n6, n7] = *r;
    let (code, index) = (u16::from_ne_bytes([a0, a1]), u16::from_ne_bytes([b0, b1]));
    let ns = u64::from_ne_bytes([n0, n1, n2, n3, n4, n5, n6, n7]);
    if let Some((_, slug)) = code.checked_sub(HOST_CODE).and_then(|i| HOST.get(usize::from(i))) {
        return Some(((*slug).to_owned(), ns));
    }
    let step = Step::from_code(code, index)?;
    Some(match step {
        Step::Mount(i) | Step::LandlockRule(i) => (format!("{}-{i}", step.slug()), ns),
        s => (s.slug().to_owned(), ns),
    })
}

/// Per step, the time from its stamp to the next one (stamps sorted by
/// time; a step seen twice adds up), in microseconds, in order of first
/// appearance; the last stamp ([`Host::Started`]) ends the start.
pub fn breakdown(mut stamps: Vec<(String, u64)>) -> Vec<(String, u64)> {
    stamps.sort_by_key(|(_, ns)| *ns);
    let mut out: Vec<(String, u64)> = Vec::new();
    for w in stamps.windows(2) {
        if let [(label, t0), (_, t1)] = w {
            let us = t1.saturating_sub(*t0) / 1000;
            match out.iter_mut().find(|(l, _)| l == label) {
                Some((_, sum)) => *sum += us,
                None => out.push((label.clone(), us)),
            }
        }
    }
    out
}

#[cfg(feature = "host")]
mod on {
    use super::*;
    use std::os::fd::{AsFd, OwnedFd};
    use std::sync::OnceLock;

    static PIPE: OnceLock<OwnedFd> = OnceLock::new();

    /// Start stamping; returns the read end (non-blocking). Once per process.
    pub fn arm() -> Result<OwnedFd, nix::errno::Errno> {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)?;
        PIPE.set(w).map_err(|_| nix::errno::Errno::EBUSY)?;
        Ok(r)
    }

    pub(in crate::confine) fn mark(code: u16, index: u16) {
        let Some(fd) = PIPE.get() else { return };
        let ns = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
            .map_or(0, |t| u64::try_from(t.tv_sec()).unwrap_or(0).saturating_mul(1_000_000_000).saturating_add(u64::try_from(t.tv_nsec()).unwrap_or(0)));
        // A full pipe drops the stamp: the benchmark reads after each start.
        let _ = nix::unistd::write(fd.as_fd(), &encode(code, index, ns));
    }

    /// Every stamp written since the last call.
    pub fn drain(r: &OwnedFd) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        let mut buf = [0u8; STAMP];
        while let Ok(STAMP) = nix::unistd::read(std::os::fd::AsRawFd::as_raw_fd(r), &mut buf) {
            if let Some(s) = decode(&buf) {
                out.push(s);
            }
        }
        out
    }
}

#[cfg(feature = "host")]
pub use on::{arm, drain};

#[cfg(feature = "host")]
use on::mark;

#[cfg(not(feature = "host"))]
#[inline(always)]
fn mark(_: u16, _: u16) {}

/// A step of a child (or the supervisor's [`Step::Clone`]) begins.
#[inline(always)]
pub(in crate::confine) fn step(s: Step) {
    let (code, index) = s.code();
    mark(code, index);
}

/// A supervisor step begins.
#[inline(always)]
pub(in crate::confine) fn host(h: Host) {
    mark(host_code(h), 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_and_add_up_per_step() {
        let (c, i) = Step::Mount(3).code();
        assert_eq!(decode(&encode(c, i, 5_000)), Some(("mount-3".to_owned(), 5_000)));
        assert_eq!(decode(&encode(host_code(Host::CgroupMkdir), 0, 7)), Some(("cgroup-mkdir".to_owned(), 7)));
        assert_eq!(decode(&encode(host_code(Host::Started), 0, 7)), Some(("started".to_owned(), 7)));
        assert_eq!(decode(&encode(9_999, 0, 7)), None);
        let s = |l: &str, us: u64| (l.to_owned(), us * 1000);
        let b = breakdown(vec![s("launch", 0), s("pdeathsig", 30), s("setsid", 10), s("mount-0", 40), s("pdeathsig", 100), s("exec", 101), s("started", 111)]);
        assert_eq!(b, [s("launch", 10), s("setsid", 20), s("pdeathsig", 11), s("mount-0", 60), s("exec", 10)].map(|(l, ns)| (l, ns / 1000)));
    }
}
