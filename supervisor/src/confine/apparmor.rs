//! AppArmor: the board's profile, loaded once at boot, entered by every
//! container at its `execve`.
//!
//! It must not choose a profile: the board names it.
//!
//! No policy compiler runs on the device: the board ships the profile
//! compiled (`apparmor_parser -Q -o FILE` on the build host) on the read-only
//! system image and names it in its config (`[apparmor] profile, policy`).
//! At boot berth checks that the kernel has AppArmor enabled
//! (`/sys/module/apparmor/parameters/enabled`), mounts securityfs when it
//! is not mounted, writes the policy to `.replace` in one write, and checks
//! that the profile is then listed. A container's init writes
//! `exec <profile>` to `/proc/self/attr/apparmor/exec` (the legacy
//! `/proc/self/attr/exec` on kernels without the per-LSM directory) before
//! Landlock and seccomp, so its program starts confined.
//!
//! A board that names a profile requires it: when AppArmor is off or the
//! load fails, no container starts and the reason is logged (fail closed).
//! A board without one runs its containers unconfined by AppArmor.

use core::fmt;
use std::io::{Read, Write};

use nix::errno::Errno;

use crate::confine::container::cstr::CBuf;
use crate::release::board::AppArmor;

/// Where securityfs is mounted.
pub const SECURITYFS: &str = "/sys/kernel/security";
/// Says `Y` when AppArmor is enabled.
pub const ENABLED: &str = "/sys/module/apparmor/parameters/enabled";
/// Loads or replaces a compiled policy.
pub const REPLACE: &str = "/sys/kernel/security/apparmor/.replace";
/// One line per loaded profile: `name (mode)`.
pub const PROFILES: &str = "/sys/kernel/security/apparmor/profiles";
/// The per-LSM exec attribute (Linux 5.1), then the legacy one.
pub const EXEC_ATTR: &core::ffi::CStr = c"/proc/self/attr/apparmor/exec";
pub const EXEC_ATTR_LEGACY: &core::ffi::CStr = c"/proc/self/attr/exec";
/// Largest compiled policy berth loads.
pub const POLICY_MAX: u64 = 1 << 20;

/// `exec <profile>`, written by the container's init.
pub type ExecAttr = CBuf<{ crate::release::board::NAME_MAX + 6 }>;

/// Why the board's profile cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppArmorError {
    /// The kernel has AppArmor off (or not built).
    Disabled,
    /// securityfs could not be mounted.
    Securityfs(Errno),
    /// The compiled policy could not be read.
    ReadPolicy(Errno),
    /// The compiled policy is larger than [`POLICY_MAX`].
    PolicyTooLarge,
    /// The kernel refused the policy.
    Load(Errno),
    /// The policy loaded, but the board's profile is not in it.
    NotListed,
    /// The profile name does not fit the exec attribute.
    Name,
}

impl fmt::Display for AppArmorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = crate::common::files::errno_text;
        match self {
            AppArmorError::Disabled => {
                write!(f, "the kernel has AppArmor disabled ({ENABLED} is not Y)")
            }
            AppArmorError::Securityfs(e) => {
                write!(f, "mount securityfs at {SECURITYFS}: {}", t(*e))
            }
            AppArmorError::ReadPolicy(e) => write!(f, "read the compiled policy: {}", t(*e)),
            AppArmorError::PolicyTooLarge => {
                write!(f, "the compiled policy is larger than {POLICY_MAX} bytes")
            }
            AppArmorError::Load(e) => {
                write!(f, "the kernel refused the policy ({REPLACE}): {}", t(*e))
            }
            AppArmorError::NotListed => write!(f, "the profile is not loaded after the policy was ({PROFILES})"),
            AppArmorError::Name => f.write_str("the profile name does not fit"),
        }
    }
}

impl std::error::Error for AppArmorError {}

/// The exec attribute for a profile.
pub fn exec_attr(profile: &str) -> Result<ExecAttr, AppArmorError> {
    ExecAttr::concat(&["exec ", profile]).ok_or(AppArmorError::Name)
}

/// Does the `enabled` parameter say yes?
pub fn is_enabled(text: &str) -> bool {
    text.trim() == "Y"
}

/// Is `name` among the loaded profiles (`name (enforce)` lines)?
pub fn is_listed(profiles: &str, name: &str) -> bool {
    profiles.lines().any(|l| l.rsplit_once(" (").map(|(n, _)| n) == Some(name))
}

fn io_errno(e: std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// Load the board's policy into the kernel and return the exec attribute
/// containers write. Act code: runs once, in the supervisor.
pub fn load(board: &AppArmor) -> Result<ExecAttr, AppArmorError> {
    let attr = exec_attr(&board.profile)?;
    let enabled = std::fs::read_to_string(ENABLED).unwrap_or_default();
    if !is_enabled(&enabled) {
        return Err(AppArmorError::Disabled);
    }
    if !crate::common::files::is_mountpoint(SECURITYFS) {
        use nix::mount::{mount, MsFlags};
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        mount(Some("securityfs"), SECURITYFS, Some("securityfs"), flags, None::<&str>).map_err(AppArmorError::Securityfs)?;
    }
    let mut policy = Vec::new();
    std::fs::File::open(board.policy.as_str())
        .and_then(|f| f.take(POLICY_MAX + 1).read_to_end(&mut policy))
        .map_err(|e| AppArmorError::ReadPolicy(io_errno(e)))?;
    if policy.len() as u64 > POLICY_MAX {
        return Err(AppArmorError::PolicyTooLarge);
    }
    // The kernel takes a policy in a single write.
    let mut f = std::fs::OpenOptions::new().write(true).open(REPLACE).map_err(|e| AppArmorError::Load(io_errno(e)))?;
    match f.write(&policy) {
        Ok(n) if n == policy.len() => {}
        Ok(_) => return Err(AppArmorError::Load(Errno::EIO)),
        Err(e) => return Err(AppArmorError::Load(io_errno(e))),
    }
    let profiles = std::fs::read_to_string(PROFILES).map_err(|e| AppArmorError::Load(io_errno(e)))?;
    if !is_listed(&profiles, &board.profile) {
        return Err(AppArmorError::NotListed);
    }
    Ok(attr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_attribute_names_the_profile() {
        assert_eq!(exec_attr("berth-container").unwrap().as_bytes(), b"exec berth-container");
        let long = "p".repeat(crate::release::board::NAME_MAX);
        assert_eq!(exec_attr(&long).unwrap().as_bytes().len(), 5 + crate::release::board::NAME_MAX);
        assert_eq!(exec_attr("a\0b"), Err(AppArmorError::Name));
    }

    #[test]
    fn enabled_and_listed_are_parsed() {
        assert!(is_enabled("Y\n"));
        assert!(!is_enabled("N\n"));
        assert!(!is_enabled(""));
        let profiles = "berth-container (enforce)\n/usr/bin/x (complain)\nberth-container//child (enforce)\n";
        assert!(is_listed(profiles, "berth-container"));
        assert!(is_listed(profiles, "/usr/bin/x"));
        assert!(!is_listed(profiles, "berth"));
        assert!(!is_listed("", "berth-container"));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert!(AppArmorError::Disabled.to_string().contains("disabled"));
        assert!(AppArmorError::Load(Errno::EACCES).to_string().contains(".replace"));
    }
}
