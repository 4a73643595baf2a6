//! Mount steps and their act: one `mount(2)` call as plain data
//! ([`MountStep`]), the [`Mounter`] seam that performs it (the real one is
//! [`SysMounter`]; tests record the calls), and [`apply`], which runs a list
//! of steps with one event per step.
//!
//! It must not decide what is mounted where: the boot plans
//! (`boot::mount`) and the release images (`release::images`) build the
//! steps; it only performs them, retrying with the step's fallback options.

use crate::common::files::{errno_text, is_mountpoint};
use crate::common::log::Event;
use nix::errno::Errno;
use nix::mount::MsFlags;

/// A path, filesystem type or option string of a step.
pub type Text = heapless::String<128>;

/// One mount(2) call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountStep {
    pub source: Text,
    pub target: Text,
    pub fstype: Text,
    pub flags: MsFlags,
    pub data: Text,
    /// The kernel may lack this filesystem or controller (EINVAL, ENODEV):
    /// that is logged as `result=unavailable` and is not a failure.
    pub optional: bool,
    /// Mount options to retry with when the kernel refuses `data` (EINVAL):
    /// `data` asks for a newer option the step can do without.
    pub retry_data: Option<Text>,
}

/// `s` as step text.
pub fn text(s: &str) -> Text {
    let mut t = Text::new();
    // Inputs are paths already bounded by their source (the board config's
    // limits, the store's image names).
    let _ = t.push_str(s);
    t
}

/// Performs mount steps. Implemented by the real system and by test recorders.
pub trait Mounter {
    /// Is something already mounted on `target`?
    fn is_mounted(&mut self, target: &str) -> bool;
    /// Create the mount point if missing (a no-op on a read-only root where it exists).
    fn ensure_dir(&mut self, target: &str) -> Result<(), Errno>;
    fn mount(&mut self, step: &MountStep) -> Result<(), Errno>;
}

/// Run a plan, one event per step. Steps whose target is already mounted are
/// skipped (after a switch of root they came along). Returns the failures.
pub fn apply(plan: &[MountStep], m: &mut impl Mounter) -> usize {
    let mut failed = 0;
    for s in plan {
        if m.is_mounted(&s.target) {
            Event::debug("mount").kv("target", &s.target).kv("result", "present").emit();
            continue;
        }
        let mut r = m.ensure_dir(&s.target).and_then(|()| m.mount(s));
        let mut data = &s.data;
        if let (Some(retry), Err(e @ Errno::EINVAL)) = (&s.retry_data, r) {
            let without = MountStep { data: retry.clone(), retry_data: None, ..s.clone() };
            r = m.mount(&without);
            data = retry;
            // Said only when the options were the cause; otherwise the
            // step's own event reports the failure.
            if r.is_ok() {
                Event::warn("mount")
                    .kv("target", &s.target)
                    .kv("fstype", &s.fstype)
                    .kv("data", &s.data)
                    .kv("result", "refused")
                    .kv("reason", errno_text(e))
                    .kv("retry", retry)
                    .emit();
            }
        }
        if let (true, Err(e @ (Errno::EINVAL | Errno::ENODEV))) = (s.optional, r) {
            Event::warn("mount").kv("target", &s.target).kv("fstype", &s.fstype).kv("result", "unavailable").kv("reason", errno_text(e)).emit();
            continue;
        }
        if r.is_err() {
            failed += 1;
        }
        Event::info("mount")
            .kv("target", &s.target)
            .kv("fstype", &s.fstype)
            .kv("source", &s.source)
            .kv("flags", flags_text(s.flags))
            .kv("data", data)
            .result(&r.map_err(errno_text))
            .emit();
    }
    failed
}

/// `nosuid,nodev,noexec,ro` style rendering of mount flags, for events.
pub fn flags_text(f: MsFlags) -> Text {
    let mut t = Text::new();
    for (flag, name) in [
        (MsFlags::MS_RDONLY, "ro"),
        (MsFlags::MS_NOSUID, "nosuid"),
        (MsFlags::MS_NODEV, "nodev"),
        (MsFlags::MS_NOEXEC, "noexec"),
        (MsFlags::MS_NOATIME, "noatime"),
    ] {
        if f.contains(flag) {
            if !t.is_empty() {
                let _ = t.push(',');
            }
            let _ = t.push_str(name);
        }
    }
    if t.is_empty() {
        let _ = t.push_str("rw");
    }
    t
}

/// The real thing.
pub struct SysMounter;

impl Mounter for SysMounter {
    fn is_mounted(&mut self, target: &str) -> bool {
        is_mountpoint(target)
    }

    fn ensure_dir(&mut self, target: &str) -> Result<(), Errno> {
        match std::fs::metadata(target) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(Errno::ENOTDIR),
            Err(_) => nix::unistd::mkdir(target, nix::sys::stat::Mode::from_bits_truncate(0o755)),
        }
    }

    fn mount(&mut self, s: &MountStep) -> Result<(), Errno> {
        let data: Option<&str> = if s.data.is_empty() { None } else { Some(&s.data) };
        nix::mount::mount(Some(s.source.as_str()), s.target.as_str(), Some(s.fstype.as_str()), s.flags, data)
    }
}
