//! Host hardening: the kernel settings berth writes once at boot.
//!
//! It must not write anything after boot: the settings are written once, before any container starts.
//!
//! The board's `[hardening]` table ([`Hardening`], secure defaults) says
//! which values; [`settings`] turns it into the list of sysctls to write
//! (pure), and [`apply`] writes each through `/proc/sys` and logs one
//! `harden` event per setting: `result=ok`, `result=absent` (a warning: the
//! running kernel has no such setting, such as `vm.memfd_noexec` before
//! Linux 6.3) or `result=error`. It runs in the system stage once the
//! board's modules are loaded and berth's own devices (data partition,
//! images) are set up, before any container or host service starts, so
//! `kernel.modules_disabled` comes last and shuts the door on any later
//! module, including the ones the kernel would load on demand for a
//! container (a socket family, a filesystem, a line discipline).
//!
//! `vm.memfd_noexec` is per PID namespace, and a child namespace starts
//! with its parent's value and cannot lower it: written here, in the initial
//! namespace, it holds for every container. [`memfd_grant`] decides whether
//! a container granted `memfd_create` may start: only where the kernel
//! seals its memfds non-executable (Landlock does not see memfds, so an
//! `exec_paths` list could not stop one from running).

use crate::common::log::Event;
use crate::release::board::Hardening;

/// Where the per-PID-namespace memfd policy is read.
pub const MEMFD_NOEXEC: &str = "/proc/sys/vm/memfd_noexec";

/// One kernel setting: its sysctl name and the value berth writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    pub key: &'static str,
    pub value: u8,
}

impl Setting {
    /// `/proc/sys/<key with '.' as '/'>`.
    pub fn path(&self) -> String {
        format!("/proc/sys/{}", self.key.replace('.', "/"))
    }
}

/// The settings a board's hardening asks for, in the order they are
/// written: `kernel.modules_disabled` last (it cannot be undone).
pub fn settings(h: &Hardening) -> [Setting; 9] {
    let s = |key, value| Setting { key, value };
    [
        s("kernel.kptr_restrict", h.kptr_restrict),
        s("kernel.dmesg_restrict", u8::from(h.dmesg_restrict)),
        s("fs.suid_dumpable", h.suid_dumpable),
        s("fs.protected_symlinks", u8::from(h.protected_symlinks)),
        s("fs.protected_hardlinks", u8::from(h.protected_hardlinks)),
        s("fs.protected_fifos", h.protected_fifos),
        s("fs.protected_regular", h.protected_regular),
        s("vm.memfd_noexec", h.memfd_noexec),
        s("kernel.modules_disabled", u8::from(h.modules_disabled)),
    ]
}

/// What writing one setting gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// The kernel has no such setting.
    Absent,
    Error(nix::errno::Errno),
}

/// The outcome of a write's `errno` (`None`: it worked).
pub fn outcome(errno: Option<nix::errno::Errno>) -> Outcome {
    match errno {
        None => Outcome::Ok,
        Some(nix::errno::Errno::ENOENT) => Outcome::Absent,
        Some(e) => Outcome::Error(e),
    }
}

/// Write every setting and log each; returns how many were written.
pub fn apply(h: &Hardening) -> usize {
    let mut written = 0;
    for s in settings(h) {
        let r = write_sysctl(&s.path(), s.value);
        match outcome(r.err()) {
            Outcome::Ok => {
                written += 1;
                Event::info("harden").kv("key", s.key).kv("value", s.value).kv("result", "ok").emit();
            }
            Outcome::Absent => {
                Event::warn("harden").kv("key", s.key).kv("value", s.value).kv("result", "absent").emit();
            }
            Outcome::Error(e) => {
                Event::error("harden").kv("key", s.key).kv("value", s.value).kv("result", "error").kv("error", crate::common::files::errno_text(e)).emit()
            }
        }
    }
    written
}

/// One write of `value` and a newline to a sysctl file.
fn write_sysctl(path: &str, value: u8) -> Result<(), nix::errno::Errno> {
    use std::io::Write;
    let errno = |e: std::io::Error| nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
    let mut f = std::fs::OpenOptions::new().write(true).open(path).map_err(errno)?;
    let text = [b'0' + value.min(9), b'\n'];
    match f.write(&text).map_err(errno)? {
        2 => Ok(()),
        _ => Err(nix::errno::Errno::EIO),
    }
}

/// Whether a container granted `memfd_create` may start, from the text of
/// [`MEMFD_NOEXEC`] (`None`: the kernel has no such setting). It may when
/// the value is 1 or 2: every memfd made without `MFD_EXEC` is then sealed
/// non-executable, and the filter refuses `MFD_EXEC`.
pub fn memfd_grant(memfd_noexec: Option<&str>) -> Result<(), String> {
    const WHY: &str = "memfd_create is granted, but memfds would be executable";
    match memfd_noexec.map(|t| t.trim().parse::<u8>()) {
        None => Err(format!("{WHY}: this kernel has no vm.memfd_noexec (Linux 6.3)")),
        Some(Ok(1..=2)) => Ok(()),
        Some(Ok(v)) => Err(format!("{WHY}: vm.memfd_noexec is {v} (the board's hardening.memfd_noexec must be 1 or 2)")),
        Some(Err(_)) => Err(format!("{WHY}: vm.memfd_noexec cannot be read")),
    }
}

/// [`memfd_grant`] for the running kernel.
pub fn memfd_grant_here() -> Result<(), String> {
    memfd_grant(std::fs::read_to_string(MEMFD_NOEXEC).ok().as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_settings_are_the_secure_values_modules_last() {
        let s = settings(&Hardening::default());
        let got: Vec<(&str, u8)> = s.iter().map(|s| (s.key, s.value)).collect();
        assert_eq!(
            got,
            [
                ("kernel.kptr_restrict", 2),
                ("kernel.dmesg_restrict", 1),
                ("fs.suid_dumpable", 0),
                ("fs.protected_symlinks", 1),
                ("fs.protected_hardlinks", 1),
                ("fs.protected_fifos", 2),
                ("fs.protected_regular", 2),
                ("vm.memfd_noexec", 2),
                ("kernel.modules_disabled", 1),
            ]
        );
        assert_eq!(s[0].path(), "/proc/sys/kernel/kptr_restrict");
        assert_eq!(s[7].path(), "/proc/sys/vm/memfd_noexec");
        let weak = Hardening { modules_disabled: false, dmesg_restrict: false, kptr_restrict: 1, ..Hardening::default() };
        let s = settings(&weak);
        assert_eq!((s[0].value, s[1].value, s[8].value), (1, 0, 0));
    }

    #[test]
    fn outcomes_and_memfd_grants() {
        use nix::errno::Errno;
        assert_eq!(outcome(None), Outcome::Ok);
        assert_eq!(outcome(Some(Errno::ENOENT)), Outcome::Absent);
        assert_eq!(outcome(Some(Errno::EINVAL)), Outcome::Error(Errno::EINVAL));
        assert_eq!(memfd_grant(Some("2\n")), Ok(()));
        assert_eq!(memfd_grant(Some("1\n")), Ok(()));
        let e = memfd_grant(Some("0\n")).unwrap_err();
        assert!(e.contains("vm.memfd_noexec is 0"), "{e}");
        assert!(memfd_grant(None).unwrap_err().contains("no vm.memfd_noexec"));
        assert!(memfd_grant(Some("x")).is_err());
    }
}
