//! Board configuration: what berth needs to know about the hardware it runs on.
//!
//! It only describes and checks: it must not act on the system (boot and confine apply it).
//!
//! A board config is written by people as TOML (`board-configs/<board>.toml`),
//! checked on the host, and compiled to postcard for the device, so PID 1 never
//! parses TOML. Both forms decode into the same fixed-capacity types; the limits
//! below are the documented maxima. Every field is validated by [`Board::validate`]
//! and an error names the field and the reason.

use core::fmt;
use heapless::{String, Vec};
use serde::{Deserialize, Serialize};

pub mod bootloader;
mod checks;
mod emulation;
mod hardening;
mod network;
pub mod never;
mod service;
pub mod time;
use checks::valid_module;
pub use emulation::{Kernel, Qemu};
pub use hardening::Hardening;
pub use network::{parse_cidr, parse_ipv4, Cidr, Network};
pub use service::Service;

/// Longest board name, hostname label and module name.
pub const NAME_MAX: usize = 64;
/// Longest path (device node, file).
pub const PATH_MAX: usize = 128;
/// Longest kernel command line addition.
pub const CMDLINE_MAX: usize = 512;
/// Most kernel modules a board may list (after dependency resolution).
pub const MODULES_MAX: usize = 48;
/// Most named hardware nodes.
pub const HARDWARE_MAX: usize = 32;
/// Most extra QEMU arguments.
pub const QEMU_ARGS_MAX: usize = 24;
pub use crate::common::names::SERVICES_MAX;
/// Longest service name.
pub const SERVICE_NAME_MAX: usize = 24;
/// Most arguments of a service, `argv[0]` included.
pub const SERVICE_ARGS_MAX: usize = 8;
/// Most configured network interfaces.
pub const NETWORKS_MAX: usize = 4;
/// Longest interface name (the kernel's IFNAMSIZ less the NUL).
pub const IFNAME_MAX: usize = 15;

pub type Name = String<NAME_MAX>;
pub type Path = String<PATH_MAX>;

/// CPU architecture a board runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    Aarch64,
    Armv7,
    #[serde(rename = "x86_64")]
    X86_64,
}

impl Arch {
    pub const ALL: [Arch; 3] = [Arch::Aarch64, Arch::Armv7, Arch::X86_64];

    pub fn name(self) -> &'static str {
        match self {
            Arch::Aarch64 => "aarch64",
            Arch::Armv7 => "armv7",
            Arch::X86_64 => "x86_64",
        }
    }

    pub fn parse(s: &str) -> Option<Arch> {
        Arch::ALL.into_iter().find(|a| a.name() == s)
    }

    /// The Rust target berth is built for on this architecture.
    pub fn rust_target(self) -> &'static str {
        match self {
            Arch::Aarch64 => "aarch64-unknown-linux-musl",
            Arch::Armv7 => "armv7-unknown-linux-gnueabihf",
            Arch::X86_64 => "x86_64-unknown-linux-musl",
        }
    }

    /// Debian's name for the architecture.
    pub fn debian(self) -> &'static str {
        match self {
            Arch::Aarch64 => "arm64",
            Arch::Armv7 => "armhf",
            Arch::X86_64 => "amd64",
        }
    }
}

/// Which cgroup hierarchy berth mounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CgroupMode {
    /// Unified hierarchy at /sys/fs/cgroup.
    V2,
    /// Legacy per-controller hierarchies under a tmpfs at /sys/fs/cgroup.
    V1,
}

impl CgroupMode {
    pub fn name(self) -> &'static str {
        match self {
            CgroupMode::V2 => "v2",
            CgroupMode::V1 => "v1",
        }
    }
}

/// Filesystem of a block device berth mounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsType {
    Squashfs,
    Erofs,
    Ext4,
}

impl FsType {
    pub fn name(self) -> &'static str {
        match self {
            FsType::Squashfs => "squashfs",
            FsType::Erofs => "erofs",
            FsType::Ext4 => "ext4",
        }
    }
}

/// What berth does when the kernel offers no Landlock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LandlockMode {
    /// No container starts without Landlock (an error is logged).
    Required,
    /// Containers start without it; the downgrade is logged.
    Optional,
}

impl LandlockMode {
    pub fn name(self) -> &'static str {
        match self {
            LandlockMode::Required => "required",
            LandlockMode::Optional => "optional",
        }
    }
}

/// An AppArmor profile shipped compiled on the system image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppArmor {
    /// The profile's name, as compiled (`berth-container`).
    pub profile: Name,
    /// The compiled (binary) policy holding it, on the system image
    /// (`/etc/berth/apparmor/berth-container.bin`); loaded once at boot.
    pub policy: Path,
}

/// Kind of a hardware node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    Char,
    Block,
}

/// The whole board config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Board {
    /// Board name; must equal the file's stem (`qemu-aarch64-virt`).
    pub name: Name,
    /// CPU architecture.
    pub arch: Arch,
    /// Hostname berth sets at boot (an RFC 1123 label).
    pub hostname: Name,
    /// Kernel console device without `/dev/` (`ttyAMA0`, `ttyS0`).
    pub console: Name,
    /// Which cgroup hierarchy to mount.
    #[serde(default = "default_cgroup")]
    pub cgroup: CgroupMode,
    /// Kernel modules to load at boot. xtask resolves their dependencies and
    /// writes the full list, in load order, into the compiled config.
    #[serde(default)]
    pub modules: Vec<Name, MODULES_MAX>,
    /// The Debian kernel xtask builds and emulates the board with (only
    /// xtask reads it; a real board's boot loader passes its own command
    /// line). Optional: a board that xtask never builds a kernel for needs none.
    #[serde(default)]
    pub kernel: Option<Kernel>,
    /// Block devices.
    pub storage: Storage,
    /// Shutdown: how long processes get after SIGTERM before SIGKILL.
    #[serde(default = "default_grace")]
    pub shutdown_grace_ms: u32,
    /// How to run the board under QEMU (only xtask reads it). A real
    /// board has none, and `cargo xtask run` or `test` refuse it.
    #[serde(default)]
    pub qemu: Option<Qemu>,
    /// Named hardware nodes that manifests may be granted.
    #[serde(default)]
    pub hardware: Vec<HardwareNode, HARDWARE_MAX>,
    /// Mirror container and host service output lines to the console as
    /// `container.log` / `service.log` events (default off: they go to the
    /// log store and `berthctl logs` only, never to the kernel log).
    #[serde(default)]
    pub container_log_console: bool,
    /// Total size of the log files on the data partition, in KiB.
    #[serde(default = "default_log_quota")]
    pub log_quota_kib: u32,
    /// The hardware watchdog berth pets, if the board has one.
    #[serde(default)]
    pub watchdog: Option<Watchdog>,
    /// Whether containers need Landlock (default `required`).
    #[serde(default = "default_landlock")]
    pub landlock: LandlockMode,
    /// The AppArmor profile every container runs in (none by default).
    #[serde(default)]
    pub apparmor: Option<AppArmor>,
    /// Host services: privileged programs from the system image, run
    /// unconfined in the host namespaces and supervised like containers.
    #[serde(default, rename = "service")]
    pub services: Vec<Service, SERVICES_MAX>,
    /// IPv4 set-up (static or DHCP), applied by `berth net` (run as a service).
    #[serde(default, rename = "network")]
    pub networks: Vec<Network, NETWORKS_MAX>,
    /// Kernel settings berth writes at boot (`[hardening]`; secure defaults).
    #[serde(default)]
    pub hardening: Hardening,
    /// Memory limits, the host reserve and inotify limits (`[budgets]`;
    /// [`crate::release::budgets`], applied by `confine::budget`).
    #[serde(default)]
    pub budgets: crate::release::budgets::Budgets,
    /// Volume quotas on the data partition (`[volumes]`; defaults in
    /// [`crate::release::volumes::Settings`], enforced by
    /// `confine::container::quota`).
    #[serde(default)]
    pub volumes: crate::release::volumes::Settings,
    /// How many bundles and bytes may wait in the update inbox (`[inbox]`;
    /// defaults in [`crate::release::room::Limits`]).
    #[serde(default)]
    pub inbox: crate::release::room::Limits,
    /// Where the bootloader keeps the A/B try-boot state (`[bootloader]`;
    /// [`bootloader`]). None: one system, no slots.
    #[serde(default)]
    pub bootloader: Option<bootloader::Bootloader>,
    /// The SNTP server `berth time` sets the clock from (`[time]`; [`time`]).
    #[serde(default)]
    pub time: Option<time::TimeSync>,
    /// The lowest release version this system accepts, staged or booted
    /// (0: no floor of its own). It lives in the board config on the
    /// verified system image, so no edit of the writable data partition's
    /// records takes the device below it; a system update sets it to the
    /// version of the release that carries it.
    #[serde(default)]
    pub release_floor: u64,
}

fn default_landlock() -> LandlockMode {
    LandlockMode::Required
}

/// A hardware watchdog: berth opens `device` at boot, sets `timeout_s` and
/// pets it from its main loop every third of that. A wedged loop stops
/// petting and the board resets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Watchdog {
    /// The watchdog device (`/dev/watchdog0`); its driver module goes in `modules`.
    pub device: String<PATH_MAX>,
    /// Seconds without a pet before the board resets (2..=600).
    pub timeout_s: u32,
}

fn default_cgroup() -> CgroupMode {
    CgroupMode::V2
}

fn default_log_quota() -> u32 {
    1024
}

fn default_grace() -> u32 {
    5_000
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Storage {
    /// The read-only system image berth switches root to.
    pub system: BlockDevice,
    /// The writable data partition, mounted nosuid,nodev,noexec at /data.
    pub data: BlockDevice,
    /// How long to wait for each block device node to appear.
    #[serde(default = "default_root_wait")]
    pub wait_ms: u32,
}

fn default_root_wait() -> u32 {
    10_000
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockDevice {
    /// Device node (`/dev/vda`) or GPT partition label
    /// (`PARTLABEL=berth-data`; see [`crate::common::blockname`]).
    pub device: Path,
    /// Filesystem on it.
    pub fstype: FsType,
    /// The system image only: mount it through dm-verity with this root
    /// hash (see [`bootloader::SystemVerity`]).
    #[serde(default)]
    pub verity: Option<bootloader::SystemVerity>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HardwareNode {
    /// Name a manifest grants it by (`serial1`).
    pub name: Name,
    /// Character or block device.
    pub kind: NodeKind,
    pub major: u32,
    pub minor: u32,
    /// Node path on the host (`/dev/ttyAMA1`).
    pub path: Path,
    /// Reserved nodes (the watchdog) can never be granted to a container.
    #[serde(default)]
    pub reserved: bool,
}

/// A rejected board config: the field and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoardError {
    pub field: std::string::String,
    pub reason: std::string::String,
}

impl fmt::Display for BoardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "field `{}`: {}", self.field, self.reason)
    }
}

impl std::error::Error for BoardError {}

fn err(field: impl Into<std::string::String>, reason: impl Into<std::string::String>) -> BoardError {
    BoardError { field: field.into(), reason: reason.into() }
}

impl Board {
    /// Decode the compiled (postcard) form and validate it.
    pub fn from_postcard(bytes: &[u8]) -> Result<Board, BoardError> {
        let board: Board = postcard::from_bytes(bytes).map_err(|e| err("(compiled board config)", format!("does not decode: {e}")))?;
        board.validate()?;
        Ok(board)
    }

    /// The compiled form the device reads.
    pub fn to_postcard(&self) -> Result<std::vec::Vec<u8>, BoardError> {
        postcard::to_allocvec(self).map_err(|e| err("(board config)", format!("does not encode: {e}")))
    }

    /// Parse the human-authored TOML form and validate it.
    #[cfg(any(feature = "host", test))]
    pub fn from_toml(text: &str) -> Result<Board, BoardError> {
        let board: Board = toml::from_str(text).map_err(|e| toml_error(&e))?;
        board.validate()?;
        Ok(board)
    }

    /// Look a hardware node up by name.
    pub fn node(&self, name: &str) -> Option<&HardwareNode> {
        self.hardware.iter().find(|n| n.name == name)
    }
}

/// Turn a TOML error into a field error: unknown and missing fields are named.
#[cfg(any(feature = "host", test))]
fn toml_error(e: &toml::de::Error) -> BoardError {
    let msg = e.message().trim().to_owned();
    let field = if let Some(rest) = msg.strip_prefix("unknown field `") {
        rest.split('`').next().unwrap_or("?").to_owned()
    } else if let Some(rest) = msg.strip_prefix("missing field `") {
        rest.split('`').next().unwrap_or("?").to_owned()
    } else {
        "?".to_owned()
    };
    let at = e.span().map(|s| format!(" (at byte {})", s.start)).unwrap_or_default();
    err(field, format!("{msg}{at}"))
}

#[cfg(test)]
mod tests;
