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

mod emulation;
pub use emulation::{Kernel, Qemu};

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
    /// [`crate::confine::budget`]).
    #[serde(default)]
    pub budgets: crate::confine::budget::Budgets,
    /// Volume quotas on the data partition (`[volumes]`; defaults in
    /// [`crate::confine::container::quota::Settings`]).
    #[serde(default)]
    pub volumes: crate::confine::container::quota::Settings,
    /// How many bundles and bytes may wait in the update inbox (`[inbox]`;
    /// defaults in [`crate::release::room::Limits`]).
    #[serde(default)]
    pub inbox: crate::release::room::Limits,
}

/// Host hardening: kernel settings berth writes once at boot, before any
/// container starts, each logged as a `harden` event ([`crate::confine::harden`]).
/// Every field has a secure default; a board weakens one only by saying so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Hardening {
    /// `kernel.kptr_restrict` (0..=2, default 2: kernel addresses hidden
    /// from everyone, which keeps them from exploits).
    pub kptr_restrict: u8,
    /// `kernel.dmesg_restrict` (default true: the kernel log for
    /// `CAP_SYSLOG` only).
    pub dmesg_restrict: bool,
    /// `fs.suid_dumpable` (0 or 2, default 0: a process that changed
    /// credentials never dumps core).
    pub suid_dumpable: u8,
    /// `fs.protected_symlinks` (default true).
    pub protected_symlinks: bool,
    /// `fs.protected_hardlinks` (default true).
    pub protected_hardlinks: bool,
    /// `fs.protected_fifos` (0..=2, default 2).
    pub protected_fifos: u8,
    /// `fs.protected_regular` (0..=2, default 2).
    pub protected_regular: u8,
    /// `kernel.modules_disabled` (default true: no module is loaded after
    /// the board's own, neither by a request nor on demand by the kernel).
    pub modules_disabled: bool,
    /// `vm.memfd_noexec` (0..=2, default 2: no memfd is ever executable;
    /// written on kernels that have it, 6.3 and later).
    pub memfd_noexec: u8,
}

impl Default for Hardening {
    fn default() -> Hardening {
        Hardening {
            kptr_restrict: 2,
            dmesg_restrict: true,
            suid_dumpable: 0,
            protected_symlinks: true,
            protected_hardlinks: true,
            protected_fifos: 2,
            protected_regular: 2,
            modules_disabled: true,
            memfd_noexec: 2,
        }
    }
}

impl Hardening {
    /// Each value within its sysctl's range; the error names the field.
    pub fn validate(&self) -> Result<(), BoardError> {
        for (field, v) in [
            ("hardening.kptr_restrict", self.kptr_restrict),
            ("hardening.protected_fifos", self.protected_fifos),
            ("hardening.protected_regular", self.protected_regular),
            ("hardening.memfd_noexec", self.memfd_noexec),
        ] {
            if v > 2 {
                return Err(err(field, "must be 0, 1 or 2"));
            }
        }
        if self.suid_dumpable == 1 {
            return Err(err("hardening.suid_dumpable", "must be 0 or 2 (1 dumps setuid processes' memory readable by their user)"));
        }
        if self.suid_dumpable > 2 {
            return Err(err("hardening.suid_dumpable", "must be 0 or 2"));
        }
        Ok(())
    }
}

/// A host service: a program of the read-only system image that berth
/// starts before the containers and restarts by its policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// `[a-z0-9-]`, at most [`SERVICE_NAME_MAX`] bytes, unique among services.
    pub name: String<SERVICE_NAME_MAX>,
    /// Program and arguments (1..=8); `argv[0]` is an absolute path.
    pub argv: Vec<Path, SERVICE_ARGS_MAX>,
    /// Restart policy (default `on-failure`).
    #[serde(default = "default_restart")]
    pub restart: crate::release::manifest::Restart,
    /// Restart timing, as in a manifest.
    #[serde(default)]
    pub backoff: Option<crate::release::manifest::BackoffSpec>,
}

fn default_restart() -> crate::release::manifest::Restart {
    crate::release::manifest::Restart::OnFailure
}

/// One interface's IPv4 set-up: a static address, or DHCP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// Interface name (`eth0`), at most [`IFNAME_MAX`] bytes.
    pub interface: String<IFNAME_MAX>,
    /// Address and prefix length, `10.0.2.15/24`.
    #[serde(default)]
    pub address: Option<String<18>>,
    /// Default gateway; must be inside the interface's subnet.
    #[serde(default)]
    pub gateway: Option<String<15>>,
    /// Take the address, netmask and default route from a DHCP lease
    /// (kept and renewed by `berth net`) instead of `address`/`gateway`:
    /// exactly one of `dhcp = true` or `address` is given.
    #[serde(default)]
    pub dhcp: bool,
}

/// An IPv4 address with its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: [u8; 4],
    pub prefix: u8,
}

impl Cidr {
    /// The netmask of the prefix.
    pub fn netmask(self) -> [u8; 4] {
        let bits = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
        bits.to_be_bytes()
    }

    /// Whether `ip` is in this subnet.
    pub fn contains(self, ip: [u8; 4]) -> bool {
        let m = u32::from_be_bytes(self.netmask());
        u32::from_be_bytes(self.addr) & m == u32::from_be_bytes(ip) & m
    }
}

/// A dotted-quad IPv4 address.
pub fn parse_ipv4(s: &str) -> Option<[u8; 4]> {
    let mut out = [0u8; 4];
    let mut parts = s.split('.');
    for o in out.iter_mut() {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) || (p.len() > 1 && p.starts_with('0')) {
            return None;
        }
        *o = p.parse().ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// `a.b.c.d/n` with `n` in 1..=32.
pub fn parse_cidr(s: &str) -> Option<Cidr> {
    let (ip, prefix) = s.split_once('/')?;
    let prefix: u8 = prefix.parse().ok().filter(|p| (1..=32).contains(p))?;
    Some(Cidr { addr: parse_ipv4(ip)?, prefix })
}

impl Network {
    /// The address, once validated.
    pub fn cidr(&self) -> Option<Cidr> {
        self.address.as_deref().and_then(parse_cidr)
    }

    /// The gateway, once validated.
    pub fn gateway_ip(&self) -> Option<[u8; 4]> {
        self.gateway.as_deref().and_then(parse_ipv4)
    }
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

/// An RFC 1123 hostname label.
fn valid_label(s: &str) -> bool {
    !s.is_empty() && !s.starts_with('-') && !s.ends_with('-') && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// A kernel module name as modprobe spells it.
fn valid_module(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn valid_dev_path(s: &str) -> bool {
    s.starts_with("/dev/") && s.len() > 5 && !s.split('/').any(|c| c == "..") && s.bytes().all(|b| b.is_ascii_graphic())
}

impl Board {
    /// Check every field; the first problem found is returned.
    pub fn validate(&self) -> Result<(), BoardError> {
        if !valid_module(&self.name) {
            return Err(err("name", "must be letters, digits, '_' and '-'"));
        }
        if !valid_label(&self.hostname) {
            return Err(err("hostname", "must be an RFC 1123 label: letters, digits and inner '-'"));
        }
        if self.console.is_empty() || !self.console.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(err("console", "must be a device name without /dev/, such as ttyS0"));
        }
        for (i, m) in self.modules.iter().enumerate() {
            if !valid_module(m) {
                return Err(err(format!("modules[{i}]"), format!("`{m}` is not a module name")));
            }
            if self.modules.iter().take(i).any(|o| o == m) {
                return Err(err(format!("modules[{i}]"), format!("`{m}` is listed twice")));
            }
        }
        if let Some(k) = &self.kernel {
            k.validate()?;
        }
        for (field, dev, rw) in [("storage.system", &self.storage.system, false), ("storage.data", &self.storage.data, true)] {
            if let Err(why) = crate::common::blockname::parse(&dev.device) {
                return Err(err(format!("{field}.device"), why));
            }
            if rw && dev.fstype != FsType::Ext4 {
                return Err(err(format!("{field}.fstype"), "the data partition must be ext4"));
            }
            if !rw && dev.fstype == FsType::Ext4 {
                return Err(err(format!("{field}.fstype"), "the system image must be squashfs or erofs"));
            }
        }
        if self.storage.system.device == self.storage.data.device {
            return Err(err("storage.data.device", "is the same device as storage.system"));
        }
        if !(100..=120_000).contains(&self.storage.wait_ms) {
            return Err(err("storage.wait_ms", "must be between 100 and 120000"));
        }
        if !(256..=1_048_576).contains(&self.log_quota_kib) {
            return Err(err("log_quota_kib", "must be between 256 and 1048576"));
        }
        if let Some(w) = &self.watchdog {
            if !valid_dev_path(&w.device) {
                return Err(err("watchdog.device", "must be a path under /dev/"));
            }
            if !(2..=600).contains(&w.timeout_s) {
                return Err(err("watchdog.timeout_s", "must be between 2 and 600"));
            }
        }
        self.validate_services()?;
        self.validate_networks()?;
        self.validate_never_granted()?;
        self.hardening.validate()?;
        self.budgets.validate().map_err(|(field, reason)| err(field, reason))?;
        self.volumes.validate().map_err(|(field, why)| err(field, why))?;
        self.inbox.validate().map_err(|(field, why)| err(field, why))?;
        if !(100..=600_000).contains(&self.shutdown_grace_ms) {
            return Err(err("shutdown_grace_ms", "must be between 100 and 600000"));
        }
        if let Some(q) = &self.qemu {
            q.validate()?;
        }
        for (i, hw) in self.hardware.iter().enumerate() {
            let f = |s: &str| format!("hardware[{i}].{s}");
            if !valid_module(&hw.name) {
                return Err(err(f("name"), "must be letters, digits, '_' and '-'"));
            }
            if self.hardware.iter().take(i).any(|o| o.name == hw.name) {
                return Err(err(f("name"), format!("`{}` is defined twice", hw.name)));
            }
            if !valid_dev_path(&hw.path) {
                return Err(err(f("path"), "must be a path under /dev/"));
            }
            // Linux device numbers: 12-bit major, 20-bit minor.
            if hw.major == 0 || hw.major >= 1 << 12 {
                return Err(err(f("major"), "must be between 1 and 4095"));
            }
            if hw.minor >= 1 << 20 {
                return Err(err(f("minor"), "must be below 1048576"));
            }
        }
        if let Some(a) = &self.apparmor {
            let name_ok = a.profile.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if a.profile.is_empty() || !name_ok {
                return Err(err("apparmor.profile", "must be letters, digits, '.', '_' and '-'"));
            }
            let plain = a.policy.strip_prefix('/').is_some_and(|r| !r.is_empty() && r.split('/').all(|c| !c.is_empty() && c != "." && c != ".."));
            if !plain || !a.policy.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(err("apparmor.policy", "must be an absolute path of plain components on the system image"));
            }
        }
        Ok(())
    }

    /// A hardware node in a class no container is ever given (raw flash,
    /// SCSI generic, uinput, loop-control, device-mapper, tun, fuse, virtual
    /// consoles, the console, watchdogs, the board's watchdog; see
    /// [`crate::confine::container::devices::never_granted`]) must be marked
    /// `reserved`: the board says so rather than a manifest finding out.
    fn validate_never_granted(&self) -> Result<(), BoardError> {
        let watchdog = self.watchdog.as_ref().map(|w| w.device.as_str());
        for (i, hw) in self.hardware.iter().enumerate() {
            if hw.reserved || hw.kind == NodeKind::Block {
                continue;
            }
            if let Some(what) = crate::confine::container::devices::never_granted(hw.major, hw.minor, &hw.path, watchdog) {
                return Err(err(
                    format!("hardware[{i}].reserved"),
                    format!(
                        "`{}` ({} {}:{}) is {what}, never granted to a container: set `reserved = true` or remove it",
                        hw.name, hw.path, hw.major, hw.minor
                    ),
                ));
            }
        }
        Ok(())
    }

    fn validate_services(&self) -> Result<(), BoardError> {
        for (i, sv) in self.services.iter().enumerate() {
            let f = |s: &str| format!("service[{i}].{s}");
            if sv.name.is_empty() || !sv.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
                return Err(err(f("name"), "must be 1 to 24 of a-z, 0-9 and '-'"));
            }
            if self.services.iter().take(i).any(|o| o.name == sv.name) {
                return Err(err(f("name"), format!("`{}` is defined twice", sv.name)));
            }
            let Some(prog) = sv.argv.first() else {
                return Err(err(f("argv"), "must name a program (1 to 8 arguments)"));
            };
            if !prog.starts_with('/') || prog.split('/').any(|c| c == "..") {
                return Err(err(f("argv[0]"), "must be an absolute path inside the system image, without '..'"));
            }
            if let Some(j) = sv.argv.iter().position(|a| a.contains('\0')) {
                return Err(err(f(&format!("argv[{j}]")), "must not contain NUL"));
            }
            if let Some(b) = &sv.backoff {
                b.check().map_err(|(field, why)| err(f(field), why))?;
            }
        }
        Ok(())
    }

    fn validate_networks(&self) -> Result<(), BoardError> {
        for (i, n) in self.networks.iter().enumerate() {
            let f = |s: &str| format!("network[{i}].{s}");
            if n.interface.is_empty() || n.interface.bytes().any(|b| !b.is_ascii_graphic() || b == b'/') {
                return Err(err(f("interface"), "must be an interface name of 1 to 15 bytes, no '/' or spaces"));
            }
            if self.networks.iter().take(i).any(|o| o.interface == n.interface) {
                return Err(err(f("interface"), format!("`{}` is configured twice", n.interface)));
            }
            if n.dhcp {
                if n.address.is_some() {
                    return Err(err(f("address"), "must not be set with `dhcp = true` (the lease gives the address); use one or the other"));
                }
                if n.gateway.is_some() {
                    return Err(err(f("gateway"), "must not be set with `dhcp = true` (the lease's router is the gateway)"));
                }
                continue;
            }
            let Some(addr) = &n.address else {
                return Err(err(f("address"), "is required unless `dhcp = true` (an IPv4 address with prefix, such as 10.0.2.15/24)"));
            };
            let Some(cidr) = parse_cidr(addr) else {
                return Err(err(f("address"), format!("`{addr}` is not an IPv4 address with a prefix of 1 to 32, such as 10.0.2.15/24")));
            };
            if let Some(gw) = &n.gateway {
                let Some(ip) = parse_ipv4(gw) else {
                    return Err(err(f("gateway"), format!("`{gw}` is not an IPv4 address")));
                };
                if !cidr.contains(ip) {
                    return Err(err(f("gateway"), format!("{gw} is not inside {addr}")));
                }
                if ip == cidr.addr {
                    return Err(err(f("gateway"), "is the interface's own address"));
                }
            }
        }
        if self.networks.iter().filter(|n| n.gateway.is_some() || n.dhcp).count() > 1 {
            return Err(err("network", "only one entry may give the default route: one with a `gateway`, or one with `dhcp = true`"));
        }
        Ok(())
    }

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
