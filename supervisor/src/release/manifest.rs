//! Container manifests: what one container is and what it may do.
//!
//! It only describes and checks: it must not act on the system (confine turns it into a plan).
//!
//! A manifest is written by people as TOML (`manifests/<name>.toml`), checked on
//! the host, and carried inside a signed release in postcard form (see
//! [`crate::release`]), so PID 1 never parses TOML. Both forms decode into the
//! same fixed-capacity types; the limits below are the documented maxima.
//!
//! Every field is parsed and validated now. A field whose enforcement is not
//! built yet is rejected with a "not supported yet" error when a manifest sets
//! it, never silently ignored. The one place that says which fields are gated
//! is [`GATED`]; a later issue that enforces a field removes it from there.
//!
//! | field | validated | enforced by |
//! |---|---|---|
//! | `name` | `[a-z0-9-]`, 1..=32, no leading/trailing `-`, unique in a release | this issue (release identity) |
//! | `version` | 1..=32 of `[A-Za-z0-9.+_-]` | this issue (reported) |
//! | `image` | `sha256:<64 hex>`, present in the release's image list | this issue (release image list) |
//! | `entry.argv` | 1..=16 args of <= 128 bytes, no NUL, `argv[0]` absolute | the containers issue (exec) |
//! | `entry.env` | <= 16 `KEY=value` of <= 128 bytes, keys unique | the containers issue (exec) |
//! | `entry.workdir` | absolute, no `..`, default `/` | the containers issue (exec) |
//! | `network = "none"` | (the default) | the containers issue (own netns, loopback only) |
//! | `after` | known names, no self, no duplicates, no cycle (the cycle is named) | this issue computes the start order; waiting is the supervision issue |
//! | `entry.uid`, `entry.gid` | < 65536 | the confinement issue (user namespace; ids inside) |
//! | `restart` | `never`, `on-failure` (the default), `always` | the supervision issue (restarts with backoff, crash-loop limit) |
//! | `backoff` | `initial_ms` 10..=3600000, `factor` 1..=10, `cap_ms`, `stable_ms` 100..=86400000, `limit` 1..=1000 | the supervision issue |
//! | `readiness` | at most one of `notify = true` or `command` (1..=8 args, `command[0]` absolute); `timeout_ms` 100..=600000 (default 30000) | the supervision issue (dependents wait for it; a timeout counts as a failed run) |
//! | `health` | exactly one of `command` or `watchdog_ms` (100..=600000); `interval_ms` 100..=3600000 (default 10000), `timeout_ms` 100..=600000 (default 5000), `retries` 1..=100 (default 3) | the supervision issue (an unhealthy container is stopped and its restart policy applies) |
//! | `stop` | `signal` one of `SIGTERM` (default), `SIGINT`, `SIGQUIT`, `SIGHUP`, `SIGUSR1`, `SIGUSR2`, `SIGPWR`; `grace_ms` 100..=600000 (default 10000) | the supervision issue (then SIGKILL of the whole cgroup) |
//! | `resources` | `memory_max` 1 MiB..=1 TiB, `cpu_weight` 1..=10000, `pids_max` 1..=4194304 | the cgroups issue (the container's cgroup; pids.max defaults to 512) |
//! | `mounts` | absolute unique targets, not under `/proc`, `/dev`, `/sys`; exactly one of `tmpfs_size` (4 KiB..=4 GiB) or `volume` (a name); `exec` (default `false`) only on a tmpfs | the confinement issue (`nosuid,nodev`, `noexec` unless `exec`; a volume is `/data/volumes/<name>/<volume>`, made by berth; a target must exist in the image) |
//! | `capabilities` | known `CAP_*` names, unique; dangerous ones refused *always* (see [`REFUSED_CAPS`]), `CAP_NET_RAW` refused with `network = "host"` | the confinement issue (bounding, permitted, effective, ambient sets) |
//! | `seccomp_allow` | syscall names `[a-z0-9_]`, 1..=32, unique; at release build and start, each must exist on the architecture and be grantable ([`crate::confine::seccomp::profile::NOT_GRANTABLE`]) | the confinement issue (added to the default filter; `memfd_create` stays argument-filtered: never `MFD_EXEC`, and memfds are sealed non-executable by `vm.memfd_noexec`) |
//! | `socket_families` | <= 8 unique names from [`crate::confine::seccomp::args::FAMILIES`] that are grantable by name (not unix, inet, inet6, netlink: default; not packet: `CAP_NET_RAW`; never alg, vsock, key) | the kernel-surface issue (added to the seccomp filter's family allow-list) |
//! | `devices` | hardware node names, access a non-empty combination of `r`, `w`, `m`; against the board: node exists, is not reserved, is a character device, is in no class that is never granted ([`crate::confine::container::devices::never_granted`]) ([`Manifest::check_devices`]) | the confinement issue (a node made for the container, mode from `r`/`w`, bound into its `/dev`; `m` is the cgroup's); ioctls only with `w` (Landlock's device-ioctl right, per node) |
//! | `rlimits` | `nofile` 16..=1048576, `nproc` 1..=4194304, `core` <= 1 GiB | the confinement issue (set before the user namespace) |
//! | `network = "host"` | (no `CAP_NET_ADMIN`/`CAP_NET_RAW`) | the confinement issue (no network namespace; /sys bound read-only) |
//! | `exec_paths` | <= 8 absolute paths without `..`, unique; `entry.argv[0]` must lie beneath one of them | the Landlock issue (execute only beneath these; default: the whole image) |
//! | `rw_paths` | <= 8 absolute paths without `..`, not `/`, unique | the Landlock issue (writable beneath these, besides the writable mounts and `/dev`) |
//! | `status_view` | `true` or `false` (default); no mount on or under [`crate::common::names::STATUS_INSIDE`] | the demo issue (berth's status file directory bound read-only at [`crate::common::names::STATUS_INSIDE`], which must exist in the image) |
//! | `oneshot` | `true` or `false` (default); not with `restart = "always"` | the trial issue (during an update's trial its exit 0 is success, see [`crate::release::trial`]) |
//! | `log_rate` | `lines_per_s` 1..=[`LOG_RATE_MAX`] (default [`LOG_LINES_PER_S`]), `burst` 1..=[`LOG_BURST_MAX`] (default [`LOG_BURST`]) | the console issue (output lines past the token bucket are dropped and counted, see [`crate::supervise::output`]) |
//!
//! A list field counts as set when it is not empty; an optional field when it
//! is present (even with its default value).
//!
//! Validation order: field values (refused capabilities first), then set-wide
//! checks (duplicate names, unknown dependencies, cycles), then the gates, so
//! that a manifest that is wrong is told so before it is told it is early.
//! [`Manifest::field_errors`] gives every value error at once; [`source`]
//! places them in the file as written. Sizes and durations may be written
//! with units in TOML ([`units`]); the postcard form holds the integers.

use core::fmt;
use heapless::{String, Vec};
use serde::{Deserialize, Serialize};

use crate::release::board::Board;

#[cfg(any(feature = "host", test))]
pub mod source;
pub mod units;

/// Longest container name.
pub const NAME_MAX: usize = 32;
/// Longest container version string.
pub const VERSION_MAX: usize = 32;
/// Most arguments in `entry.argv`.
pub const ARGS_MAX: usize = 16;
/// Longest argument and longest `KEY=value` environment string.
pub const ARG_MAX: usize = 128;
/// Most environment strings.
pub const ENV_MAX: usize = 16;
/// Most arguments of a readiness or health command.
pub const COMMAND_MAX: usize = 8;
/// Longest path (workdir, mount target).
pub const PATH_MAX: usize = 128;
/// Most dependencies in `after`.
pub const AFTER_MAX: usize = 8;
/// Most mounts per container.
pub const MOUNTS_MAX: usize = 8;
/// Most granted capabilities.
pub const CAPS_MAX: usize = 8;
/// Longest capability name (`CAP_DAC_READ_SEARCH` is the longest).
pub const CAP_NAME_MAX: usize = 24;
/// Most extra syscalls allowed.
pub const SYSCALLS_MAX: usize = 32;
/// Longest syscall name.
pub const SYSCALL_NAME_MAX: usize = 32;
/// Most granted hardware nodes.
pub const DEVICES_MAX: usize = 8;
/// Longest hardware node name (as in the board config).
pub const DEVICE_NAME_MAX: usize = crate::release::board::NAME_MAX;
/// Longest device access string (`rwm`).
pub const ACCESS_MAX: usize = 3;
/// Highest uid/gid inside a container, exclusive.
pub const ID_LIMIT: u32 = 65_536;
/// Most `exec_paths` and most `rw_paths`.
pub const LANDLOCK_PATHS_MAX: usize = 8;
/// Output lines kept per second by default (`log_rate.lines_per_s`).
pub const LOG_LINES_PER_S: u32 = 100;
/// Output lines that may pass at once by default (`log_rate.burst`).
pub const LOG_BURST: u32 = 200;
/// Highest `log_rate.lines_per_s`.
pub const LOG_RATE_MAX: u32 = 10_000;
/// Highest `log_rate.burst`.
pub const LOG_BURST_MAX: u32 = 100_000;
/// Most socket families granted by name.
pub const FAMILIES_MAX: usize = 8;

pub type Name = String<NAME_MAX>;
pub type Path = String<PATH_MAX>;

/// Fields a manifest may not set yet, because nothing enforces them. A later
/// issue that enforces one removes it here (and its tests flip).
pub const GATED: &[&str] = &[];

/// Every Linux capability name, by number (`linux/capability.h`).
pub const CAP_NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Capabilities that are never granted, whatever the manifest says.
pub const REFUSED_CAPS: &[&str] = &[
    "CAP_SYS_ADMIN",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_PTRACE",
    "CAP_SYS_BOOT",
    "CAP_SYS_TIME",
    "CAP_MAC_ADMIN",
    "CAP_MAC_OVERRIDE",
    "CAP_NET_ADMIN",
    "CAP_BPF",
    "CAP_PERFMON",
    "CAP_SYSLOG",
];

/// A SHA-256 digest. In TOML it is written `sha256:<64 lowercase hex>`; in
/// postcard it is the 32 raw bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// Parse `sha256:<64 hex>`.
    pub fn parse(s: &str) -> Option<Digest> {
        let hex = s.strip_prefix("sha256:")?;
        let mut out = [0u8; 32];
        crate::release::hex_decode(hex, &mut out).then_some(Digest(out))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sha256:")?;
        crate::release::write_hex(f, &self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            let mut text: String<71> = String::new();
            // 71 bytes is exactly "sha256:" + 64 hex digits; cannot fail.
            let _ = fmt::write(&mut text, format_args!("{self}"));
            s.serialize_str(&text)
        } else {
            self.0.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Digest;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a content hash `sha256:<64 lowercase hex digits>`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Digest, E> {
                Digest::parse(v).ok_or_else(|| E::invalid_value(serde::de::Unexpected::Str(v), &self))
            }
        }
        if d.is_human_readable() {
            d.deserialize_str(V)
        } else {
            <[u8; 32]>::deserialize(d).map(Digest)
        }
    }
}

/// One container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Container name; must equal the file's stem.
    pub name: Name,
    /// The container's own version (reported, not compared).
    pub version: String<VERSION_MAX>,
    /// The read-only root filesystem image, by content hash.
    pub image: Digest,
    /// What to run.
    pub entry: Entry,
    /// Restart policy; absent means `on-failure`.
    #[serde(default)]
    pub restart: Option<Restart>,
    /// Containers this one starts after.
    #[serde(default)]
    pub after: Vec<Name, AFTER_MAX>,
    /// How the container says it is ready; absent: ready once started.
    #[serde(default)]
    pub readiness: Option<Readiness>,
    /// Periodic health check.
    #[serde(default)]
    pub health: Option<Health>,
    /// How the container is asked to stop.
    #[serde(default)]
    pub stop: Option<Stop>,
    /// cgroup limits (gated).
    #[serde(default)]
    pub resources: Option<Resources>,
    /// Writable mounts.
    #[serde(default)]
    pub mounts: Vec<Mount, MOUNTS_MAX>,
    /// Granted capabilities, as `CAP_*` names (gated).
    #[serde(default)]
    pub capabilities: Vec<String<CAP_NAME_MAX>, CAPS_MAX>,
    /// Syscalls allowed beyond the default seccomp filter (gated).
    #[serde(default)]
    pub seccomp_allow: Vec<String<SYSCALL_NAME_MAX>, SYSCALLS_MAX>,
    /// Granted hardware nodes, by board name.
    #[serde(default)]
    pub devices: Vec<DeviceGrant, DEVICES_MAX>,
    /// Network mode; absent means `none`.
    #[serde(default)]
    pub network: Option<Network>,
    /// Resource limits of the container's processes (soft = hard).
    #[serde(default)]
    pub rlimits: Option<Rlimits>,
    /// Restart backoff; absent values keep the defaults.
    #[serde(default)]
    pub backoff: Option<BackoffSpec>,
    /// Landlock: programs run only from beneath these paths (files or
    /// directories). Empty: from anywhere in the image.
    #[serde(default)]
    pub exec_paths: Vec<Path, LANDLOCK_PATHS_MAX>,
    /// Landlock: further paths the container may write beneath, besides its
    /// writable mounts and `/dev`. Everything beneath `/` is readable
    /// already, and Landlock rules only ever add access, so there is no
    /// read-only list.
    #[serde(default)]
    pub rw_paths: Vec<Path, LANDLOCK_PATHS_MAX>,
    /// A read-only view of the device's status (release, containers, their
    /// state): berth's status directory bound at
    /// [`crate::common::names::STATUS_INSIDE`]. Never the control socket.
    #[serde(default)]
    pub status_view: bool,
    /// How many output lines are kept: a token bucket per run.
    #[serde(default)]
    pub log_rate: Option<LogRate>,
    /// Socket families beyond unix, inet, inet6 and netlink, by name
    /// ([`crate::confine::seccomp::args::FAMILIES`]: `can`, `bluetooth`, ...).
    #[serde(default)]
    pub socket_families: Vec<String<{ crate::confine::seccomp::args::FAMILY_NAME_MAX }>, FAMILIES_MAX>,
    /// A one-shot task: its exit 0 is success (during an update's trial it
    /// counts as done, not against the release). Needs `restart = "never"`
    /// or `"on-failure"`.
    #[serde(default)]
    pub oneshot: bool,
}

/// The output rate limit: `lines_per_s` lines a second, with bursts of up
/// to `burst` lines. Absent values keep the defaults ([`LOG_LINES_PER_S`],
/// [`LOG_BURST`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogRate {
    #[serde(default)]
    pub lines_per_s: Option<u32>,
    #[serde(default)]
    pub burst: Option<u32>,
}

impl LogRate {
    /// Lines per second and burst, defaults filled in.
    pub fn resolved(&self) -> (u32, u32) {
        (self.lines_per_s.unwrap_or(LOG_LINES_PER_S), self.burst.unwrap_or(LOG_BURST))
    }
}

/// Restart timing: the first delay, its growth factor and cap, how long a run
/// must last to count as stable (resetting the delay), and how many short
/// runs in a row mark the container failed. Defaults: 1000 ms, x2, 60000 ms,
/// 30000 ms, 5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackoffSpec {
    #[serde(default, deserialize_with = "units::opt_ms")]
    pub initial_ms: Option<u32>,
    #[serde(default)]
    pub factor: Option<u32>,
    #[serde(default, deserialize_with = "units::opt_ms")]
    pub cap_ms: Option<u32>,
    #[serde(default, deserialize_with = "units::opt_ms")]
    pub stable_ms: Option<u32>,
    #[serde(default)]
    pub limit: Option<u32>,
}

impl BackoffSpec {
    /// Check each value against its documented range; the error names the
    /// field (`backoff.<name>`) and the range. Shared with the board's
    /// services.
    pub fn check(&self) -> Result<(), (&'static str, &'static str)> {
        let checks: [(Option<u32>, core::ops::RangeInclusive<u32>, &'static str, &'static str); 5] = [
            (self.initial_ms, 10..=3_600_000, "backoff.initial_ms", "must be between 10 and 3600000"),
            (self.factor, 1..=10, "backoff.factor", "must be between 1 and 10"),
            (self.cap_ms, 10..=3_600_000, "backoff.cap_ms", "must be between 10 and 3600000"),
            (self.stable_ms, 100..=86_400_000, "backoff.stable_ms", "must be between 100 and 86400000"),
            (self.limit, 1..=1000, "backoff.limit", "must be between 1 and 1000"),
        ];
        for (v, range, field, why) in checks {
            if v.is_some_and(|v| !range.contains(&v)) {
                return Err((field, why));
            }
        }
        Ok(())
    }
}

/// Process resource limits. Absent values keep berth's defaults (nofile 1024,
/// nproc 512, core 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rlimits {
    /// RLIMIT_NOFILE, 16..=1048576.
    #[serde(default)]
    pub nofile: Option<u32>,
    /// RLIMIT_NPROC, 1..=4194304 (counted per user in the container's range).
    #[serde(default)]
    pub nproc: Option<u32>,
    /// RLIMIT_CORE in bytes, at most 1 GiB; 0 disables core dumps.
    #[serde(default, deserialize_with = "units::opt_size")]
    pub core: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Program and arguments; `argv[0]` is an absolute path inside the image.
    pub argv: Vec<String<ARG_MAX>, ARGS_MAX>,
    /// `KEY=value` strings.
    #[serde(default)]
    pub env: Vec<String<ARG_MAX>, ENV_MAX>,
    /// Working directory inside the container.
    #[serde(default = "default_workdir")]
    pub workdir: Path,
    /// User inside the container (gated).
    #[serde(default)]
    pub uid: Option<u32>,
    /// Group inside the container (gated).
    #[serde(default)]
    pub gid: Option<u32>,
}

fn default_workdir() -> Path {
    let mut p = Path::new();
    let _ = p.push('/');
    p
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Restart {
    Never,
    OnFailure,
    Always,
}

/// A command run inside the container (`command[0]` absolute).
pub type Command = Vec<String<ARG_MAX>, COMMAND_MAX>;

/// How the container says it is ready. With neither `notify` nor `command`
/// it is ready once started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Readiness {
    /// Ready when it sends `READY=1` to `$NOTIFY_SOCKET` (systemd's protocol).
    #[serde(default)]
    pub notify: bool,
    /// Ready when this command, run inside the container, first exits 0.
    #[serde(default)]
    pub command: Command,
    /// How long to wait; past it the run counts as failed.
    #[serde(default = "default_ready_timeout", deserialize_with = "units::ms")]
    pub timeout_ms: u32,
}

fn default_ready_timeout() -> u32 {
    30_000
}

/// A periodic health check: a command inside the container, or `WATCHDOG=1`
/// keep-alives. `retries` failed checks in a row make the container unhealthy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    #[serde(default)]
    pub command: Command,
    /// Longest silence between two `WATCHDOG=1` messages.
    #[serde(default, deserialize_with = "units::opt_ms")]
    pub watchdog_ms: Option<u32>,
    #[serde(default = "default_health_interval", deserialize_with = "units::ms")]
    pub interval_ms: u32,
    #[serde(default = "default_health_timeout", deserialize_with = "units::ms")]
    pub timeout_ms: u32,
    #[serde(default = "default_health_retries")]
    pub retries: u32,
}

fn default_health_interval() -> u32 {
    10_000
}

fn default_health_timeout() -> u32 {
    5_000
}

fn default_health_retries() -> u32 {
    3
}

/// The signals a manifest may choose to ask its container to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StopSignal {
    #[serde(rename = "SIGTERM")]
    Term,
    #[serde(rename = "SIGINT")]
    Int,
    #[serde(rename = "SIGQUIT")]
    Quit,
    #[serde(rename = "SIGHUP")]
    Hup,
    #[serde(rename = "SIGUSR1")]
    Usr1,
    #[serde(rename = "SIGUSR2")]
    Usr2,
    #[serde(rename = "SIGPWR")]
    Pwr,
}

impl StopSignal {
    pub fn signal(self) -> nix::sys::signal::Signal {
        use nix::sys::signal::Signal::*;
        match self {
            StopSignal::Term => SIGTERM,
            StopSignal::Int => SIGINT,
            StopSignal::Quit => SIGQUIT,
            StopSignal::Hup => SIGHUP,
            StopSignal::Usr1 => SIGUSR1,
            StopSignal::Usr2 => SIGUSR2,
            StopSignal::Pwr => SIGPWR,
        }
    }
}

/// How the container is stopped: its signal, then SIGKILL of its whole
/// cgroup once `grace_ms` is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stop {
    #[serde(default)]
    pub signal: Option<StopSignal>,
    #[serde(default, deserialize_with = "units::opt_ms")]
    pub grace_ms: Option<u32>,
}

/// Default stop grace.
pub const STOP_GRACE_MS: u32 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// memory.max in bytes.
    #[serde(default, deserialize_with = "units::opt_size")]
    pub memory_max: Option<u64>,
    /// cpu.weight (1..=10000).
    #[serde(default)]
    pub cpu_weight: Option<u16>,
    /// pids.max.
    #[serde(default)]
    pub pids_max: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mount {
    /// Where inside the container.
    pub target: Path,
    /// A fresh tmpfs of this many bytes...
    #[serde(default, deserialize_with = "units::opt_size")]
    pub tmpfs_size: Option<u64>,
    /// ...or a persistent volume on the data partition, by name.
    #[serde(default)]
    pub volume: Option<Name>,
    /// Programs may run from it (a tmpfs only: the data partition holding
    /// volumes is mounted `noexec`). Default: `noexec`.
    #[serde(default)]
    pub exec: bool,
    /// A volume's quota, bytes (1 MiB..=1 TiB; default: the board's
    /// `volumes.default_size_mib`). See [`crate::confine::container::quota`].
    #[serde(default, deserialize_with = "units::opt_size")]
    pub volume_size: Option<u64>,
    /// A volume's inode quota (16..=2^32; default: the board's
    /// `volumes.default_inodes`).
    #[serde(default)]
    pub volume_inodes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceGrant {
    /// A `[[hardware]]` name from the board config.
    pub node: String<DEVICE_NAME_MAX>,
    /// Cgroup device access: a combination of `r`, `w`, `m`.
    pub access: String<ACCESS_MAX>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Network {
    /// Own network namespace with only loopback.
    None,
    /// The host's network, never with CAP_NET_ADMIN or CAP_NET_RAW.
    Host,
}

/// A rejected manifest: which one, the field and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    pub manifest: std::string::String,
    pub field: std::string::String,
    pub reason: std::string::String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "manifest {}: field {}: {}", self.manifest, self.field, self.reason)
    }
}

impl std::error::Error for ManifestError {}

fn err(manifest: &str, field: impl Into<std::string::String>, reason: impl Into<std::string::String>) -> ManifestError {
    ManifestError { manifest: manifest.into(), field: field.into(), reason: reason.into() }
}

/// Container name: `[a-z0-9-]`, not empty, no leading or trailing `-`.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty() && !s.starts_with('-') && !s.ends_with('-') && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn valid_abs_path(s: &str) -> bool {
    s.starts_with('/') && !s.split('/').any(|c| c == "..") && !s.bytes().any(|b| b == 0 || b == b'\n')
}

/// Is `path` the same as `dir` or beneath it (component-wise)?
pub fn beneath(path: &str, dir: &str) -> bool {
    dir == "/" || path == dir || path.strip_prefix(dir).is_some_and(|r| r.starts_with('/'))
}

fn valid_env_key(k: &str) -> bool {
    let mut b = k.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_') && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

fn check_command(m: &str, field: &str, c: &Command) -> Result<(), ManifestError> {
    for (i, a) in c.iter().enumerate() {
        if a.bytes().any(|b| b == 0) {
            return Err(err(m, format!("{field}[{i}]"), "must not contain NUL"));
        }
        if i == 0 && !valid_abs_path(a) {
            return Err(err(m, format!("{field}[0]"), "must be an absolute path"));
        }
    }
    Ok(())
}

impl Manifest {
    /// The notify socket is bound in when readiness or health uses it.
    pub fn uses_notify(&self) -> bool {
        self.readiness.as_ref().is_some_and(|r| r.notify) || self.health.as_ref().is_some_and(|h| h.watchdog_ms.is_some())
    }

    /// The gated fields this manifest sets, by their [`GATED`] names.
    pub fn fields_set(&self) -> impl Iterator<Item = &'static str> + '_ {
        [
            ("entry.uid", self.entry.uid.is_some()),
            ("entry.gid", self.entry.gid.is_some()),
            ("restart", self.restart.is_some()),
            ("after", !self.after.is_empty()),
            ("readiness", self.readiness.is_some()),
            ("health", self.health.is_some()),
            ("stop", self.stop.is_some()),
            ("resources", self.resources.is_some()),
            ("mounts", !self.mounts.is_empty()),
            ("capabilities", !self.capabilities.is_empty()),
            ("seccomp_allow", !self.seccomp_allow.is_empty()),
            ("devices", !self.devices.is_empty()),
            ("network.host", self.network == Some(Network::Host)),
            ("exec_paths", !self.exec_paths.is_empty()),
            ("rw_paths", !self.rw_paths.is_empty()),
            ("status_view", self.status_view),
            ("log_rate", self.log_rate.is_some()),
            ("socket_families", !self.socket_families.is_empty()),
        ]
        .into_iter()
        .filter_map(|(f, set)| set.then_some(f))
    }

    /// Check every field's value (not the gates, not the set-wide rules);
    /// the first error.
    pub fn validate_fields(&self) -> Result<(), ManifestError> {
        self.field_errors().into_iter().next().map_or(Ok(()), Err)
    }

    /// Every error in the fields' values, in the documented order (refused
    /// capabilities first).
    pub fn field_errors(&self) -> std::vec::Vec<ManifestError> {
        let mut out = std::vec::Vec::new();
        let m = self.name.as_str();
        let e = |field: &str, reason: &str| err(m, field, reason);
        // Refused capabilities come first: they are never acceptable.
        for (i, c) in self.capabilities.iter().enumerate() {
            if REFUSED_CAPS.contains(&c.as_str()) {
                out.push(err(m, format!("capabilities[{i}]"), format!("{c} is never granted to a container")));
            }
        }
        if !valid_name(m) {
            out.push(e("name", "must be 1..=32 of a-z, 0-9 and inner '-'"));
        }
        if m == crate::common::logstore::BERTH {
            out.push(e("name", "`berth` is reserved for berth's own log stream"));
        }
        if self.version.is_empty() || !self.version.bytes().all(|b| b.is_ascii_alphanumeric() || b".+_-".contains(&b)) {
            out.push(e("version", "must be letters, digits, '.', '+', '_' and '-'"));
        }
        if self.entry.argv.is_empty() {
            out.push(e("entry.argv", "must name the program to run"));
        }
        for (i, a) in self.entry.argv.iter().enumerate() {
            if a.bytes().any(|b| b == 0) {
                out.push(err(m, format!("entry.argv[{i}]"), "must not contain NUL"));
            }
            if i == 0 && !valid_abs_path(a) {
                out.push(err(m, "entry.argv[0]", "must be an absolute path"));
            }
        }
        for (i, kv) in self.entry.env.iter().enumerate() {
            let f = format!("entry.env[{i}]");
            let Some((k, _)) = kv.split_once('=') else {
                out.push(err(m, f.as_str(), "must be KEY=value"));
                continue;
            };
            if !valid_env_key(k) || kv.bytes().any(|b| b == 0) {
                out.push(err(m, f.as_str(), format!("`{k}` is not an environment variable name")));
            }
            if self.entry.env.iter().take(i).any(|o| o.split_once('=').map(|p| p.0) == Some(k)) {
                out.push(err(m, f.as_str(), format!("`{k}` is set twice")));
            }
        }
        if !valid_abs_path(&self.entry.workdir) {
            out.push(e("entry.workdir", "must be an absolute path without '..'"));
        }
        for (f, id) in [("entry.uid", self.entry.uid), ("entry.gid", self.entry.gid)] {
            if id.is_some_and(|id| id >= ID_LIMIT) {
                out.push(e(f, "must be below 65536"));
            }
        }
        for (i, d) in self.after.iter().enumerate() {
            let f = format!("after[{i}]");
            if !valid_name(d) {
                out.push(err(m, f.as_str(), format!("`{d}` is not a container name")));
            }
            if d == &self.name {
                out.push(err(m, f.as_str(), "a container cannot start after itself"));
            }
            if self.after.iter().take(i).any(|o| o == d) {
                out.push(err(m, f.as_str(), format!("`{d}` is listed twice")));
            }
        }
        if let Some(r) = &self.readiness {
            if r.notify && !r.command.is_empty() {
                out.push(e("readiness", "set either notify or command, not both"));
            }
            out.extend(check_command(m, "readiness.command", &r.command).err());
            if !(100..=600_000).contains(&r.timeout_ms) {
                out.push(e("readiness.timeout_ms", "must be between 100 and 600000"));
            }
        }
        if let Some(h) = &self.health {
            match (h.command.is_empty(), h.watchdog_ms) {
                (true, None) => out.push(e("health", "needs a command or watchdog_ms")),
                (false, Some(_)) => out.push(e("health", "set either command or watchdog_ms, not both")),
                _ => {}
            }
            out.extend(check_command(m, "health.command", &h.command).err());
            if h.watchdog_ms.is_some_and(|v| !(100..=600_000).contains(&v)) {
                out.push(e("health.watchdog_ms", "must be between 100 and 600000"));
            }
            if !(100..=3_600_000).contains(&h.interval_ms) {
                out.push(e("health.interval_ms", "must be between 100 and 3600000"));
            }
            if !(100..=600_000).contains(&h.timeout_ms) {
                out.push(e("health.timeout_ms", "must be between 100 and 600000"));
            }
            if !(1..=100).contains(&h.retries) {
                out.push(e("health.retries", "must be between 1 and 100"));
            }
        }
        if let Some(st) = &self.stop {
            if st.grace_ms.is_some_and(|v| !(100..=600_000).contains(&v)) {
                out.push(e("stop.grace_ms", "must be between 100 and 600000"));
            }
        }
        if let Some(b) = &self.backoff {
            out.extend(b.check().err().map(|(field, why)| e(field, why)));
        }
        if self.oneshot && self.restart == Some(Restart::Always) {
            out.push(e("oneshot", "a one-shot task ends: it needs restart = \"never\" or \"on-failure\", not \"always\""));
        }
        if let Some(r) = &self.log_rate {
            if r.lines_per_s.is_some_and(|v| !(1..=LOG_RATE_MAX).contains(&v)) {
                out.push(e("log_rate.lines_per_s", "must be between 1 and 10000"));
            }
            if r.burst.is_some_and(|v| !(1..=LOG_BURST_MAX).contains(&v)) {
                out.push(e("log_rate.burst", "must be between 1 and 100000"));
            }
        }
        if let Some(r) = &self.rlimits {
            if r.nofile.is_some_and(|n| !(16..=1_048_576).contains(&n)) {
                out.push(e("rlimits.nofile", "must be between 16 and 1048576"));
            }
            if r.nproc.is_some_and(|n| !(1..=4_194_304).contains(&n)) {
                out.push(e("rlimits.nproc", "must be between 1 and 4194304"));
            }
            if r.core.is_some_and(|n| n > 1 << 30) {
                out.push(e("rlimits.core", "must be at most 1 GiB (in bytes)"));
            }
        }
        if let Some(r) = &self.resources {
            if r.memory_max.is_some_and(|v| !(1 << 20..=1 << 40).contains(&v)) {
                out.push(e("resources.memory_max", "must be between 1 MiB and 1 TiB (in bytes)"));
            }
            if r.cpu_weight.is_some_and(|v| !(1..=10_000).contains(&v)) {
                out.push(e("resources.cpu_weight", "must be between 1 and 10000"));
            }
            if r.pids_max.is_some_and(|v| !(1..=4_194_304).contains(&v)) {
                out.push(e("resources.pids_max", "must be between 1 and 4194304"));
            }
        }
        for (i, mt) in self.mounts.iter().enumerate() {
            let f = |s: &str| format!("mounts[{i}].{s}");
            if !valid_abs_path(&mt.target) || mt.target.as_str() == "/" {
                out.push(err(m, f("target"), "must be an absolute path below / without '..'"));
            }
            let first = mt.target.trim_start_matches('/').split('/').next().unwrap_or("");
            if ["proc", "dev", "sys"].contains(&first) {
                out.push(err(m, f("target"), "must not be on or under /proc, /dev or /sys (berth mounts those)"));
            }
            if self.mounts.iter().take(i).any(|o| o.target == mt.target) {
                out.push(err(m, f("target"), format!("`{}` is mounted twice", mt.target)));
            }
            match (mt.tmpfs_size, &mt.volume) {
                (Some(s), None) if (4096..=1 << 32).contains(&s) => {}
                (Some(_), None) => out.push(err(m, f("tmpfs_size"), "must be between 4096 and 4294967296")),
                (None, Some(v)) if valid_name(v) => {}
                (None, Some(_)) => out.push(err(m, f("volume"), "must be a name of a-z, 0-9 and inner '-'")),
                _ => out.push(err(m, format!("mounts[{i}]"), "needs exactly one of tmpfs_size and volume")),
            }
            if let Some(v) = &mt.volume {
                if self.mounts.iter().take(i).any(|o| o.volume.as_ref() == Some(v)) {
                    out.push(err(m, f("volume"), format!("volume `{v}` is mounted twice")));
                }
            }
            if self.status_view && beneath(&mt.target, crate::common::names::STATUS_INSIDE) {
                out.push(err(m, f("target"), format!("must not be on or under {} (the status view)", crate::common::names::STATUS_INSIDE)));
            }
            if (mt.volume_size.is_some() || mt.volume_inodes.is_some()) && mt.volume.is_none() {
                out.push(err(m, f("volume_size"), "volume_size and volume_inodes are for a volume only"));
            }
            if mt.volume_size.is_some_and(|v| !(crate::confine::container::quota::SIZE_MIN..=crate::confine::container::quota::SIZE_MAX).contains(&v)) {
                out.push(err(m, f("volume_size"), "must be between 1 MiB and 1 TiB (in bytes)"));
            }
            if mt.volume_inodes.is_some_and(|v| !(crate::confine::container::quota::INODES_MIN..=crate::confine::container::quota::INODES_MAX).contains(&v)) {
                out.push(err(m, f("volume_inodes"), "must be between 16 and 4294967296"));
            }
            if mt.exec && mt.volume.is_some() {
                out.push(err(m, f("exec"), "only a tmpfs may be exec: volumes live on the data partition, which is mounted noexec"));
            }
        }
        if let Some(max) = self.resources.and_then(|r| r.memory_max).filter(|v| (1 << 20..=1 << 40).contains(v)) {
            // tmpfs pages are charged to the container: they must fit its limit.
            let budgets = crate::confine::budget::Budgets::default();
            out.extend(crate::confine::budget::resolve(Some(max), &self.mounts, &budgets, 0).err().map(|(field, why)| err(m, field, why)));
        }
        for (i, c) in self.capabilities.iter().enumerate() {
            let f = format!("capabilities[{i}]");
            if !CAP_NAMES.contains(&c.as_str()) {
                out.push(err(m, f.as_str(), format!("`{c}` is not a capability name (CAP_...)")));
            }
            if self.capabilities.iter().take(i).any(|o| o == c) {
                out.push(err(m, f.as_str(), format!("{c} is listed twice")));
            }
            if c.as_str() == "CAP_NET_RAW" && self.network == Some(Network::Host) {
                out.push(err(m, f.as_str(), "CAP_NET_RAW is never granted with network = \"host\""));
            }
        }
        for (i, s) in self.seccomp_allow.iter().enumerate() {
            let f = format!("seccomp_allow[{i}]");
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
                out.push(err(m, f.as_str(), format!("`{s}` is not a syscall name")));
            }
            if self.seccomp_allow.iter().take(i).any(|o| o == s) {
                out.push(err(m, f.as_str(), format!("`{s}` is listed twice")));
            }
        }
        for (i, d) in self.devices.iter().enumerate() {
            let f = |s: &str| format!("devices[{i}].{s}");
            if d.node.is_empty() || !d.node.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
                out.push(err(m, f("node"), "must be a hardware node name from the board config"));
            }
            if self.devices.iter().take(i).any(|o| o.node == d.node) {
                out.push(err(m, f("node"), format!("`{}` is granted twice", d.node)));
            }
            let a = d.access.as_bytes();
            let ok = !a.is_empty() && a.iter().all(|b| b"rwm".contains(b)) && a.iter().enumerate().all(|(j, b)| !a.iter().take(j).any(|o| o == b));
            if !ok {
                out.push(err(m, f("access"), "must be a combination of r, w and m"));
            }
        }
        self.validate_landlock_paths(&mut out);
        self.validate_socket_families(&mut out);
        out
    }

    /// Each of `socket_families` is a family that may be granted by name,
    /// listed once.
    fn validate_socket_families(&self, out: &mut std::vec::Vec<ManifestError>) {
        for (i, f) in self.socket_families.iter().enumerate() {
            let field = format!("socket_families[{i}]");
            if let Some(why) = crate::confine::seccomp::args::family_refusal(f) {
                out.push(err(&self.name, field.as_str(), format!("`{f}` {why}")));
            }
            if self.socket_families.iter().take(i).any(|o| o == f) {
                out.push(err(&self.name, field.as_str(), format!("`{f}` is listed twice")));
            }
        }
    }

    fn validate_landlock_paths(&self, out: &mut std::vec::Vec<ManifestError>) {
        let m = self.name.as_str();
        for (list, name) in [(&self.exec_paths, "exec_paths"), (&self.rw_paths, "rw_paths")] {
            for (i, p) in list.iter().enumerate() {
                let f = format!("{name}[{i}]");
                if !valid_abs_path(p) || p.contains("//") || (p.len() > 1 && p.ends_with('/')) {
                    out.push(err(m, f.as_str(), "must be an absolute path of plain components, without '..'"));
                }
                if name == "rw_paths" && p.as_str() == "/" {
                    out.push(err(m, f.as_str(), "must not be / (the image stays read-only)"));
                }
                if list.iter().take(i).any(|o| o == p) {
                    out.push(err(m, f.as_str(), format!("`{p}` is listed twice")));
                }
            }
        }
        if !self.exec_paths.is_empty() {
            let prog = self.entry.argv.first().map(|a| a.as_str()).unwrap_or("");
            if !self.exec_paths.iter().any(|p| beneath(prog, p)) {
                out.push(err(m, "exec_paths", format!("the program `{prog}` is not beneath any of them")));
            }
        }
    }

    /// Refuse a set field that berth does not enforce yet.
    pub fn check_gates(&self) -> Result<(), ManifestError> {
        match self.fields_set().find(|f| GATED.contains(f)) {
            Some(f) => Err(err(&self.name, f, "not supported yet: berth does not enforce this field yet")),
            None => Ok(()),
        }
    }

    /// Check one manifest on its own: values, then gates.
    pub fn validate(&self) -> Result<(), ManifestError> {
        self.validate_fields()?;
        self.check_gates()
    }

    /// Check the granted hardware nodes against the board they will run on.
    pub fn check_devices(&self, board: &Board) -> Result<(), ManifestError> {
        for (i, d) in self.devices.iter().enumerate() {
            let f = format!("devices[{i}].node");
            match board.node(&d.node) {
                None => return Err(err(&self.name, f, format!("board {} has no hardware node `{}`", board.name, d.node))),
                Some(n) if n.reserved => return Err(err(&self.name, f, format!("`{}` is reserved and never granted", d.node))),
                Some(n) if n.kind == crate::release::board::NodeKind::Block => {
                    return Err(err(&self.name, f, format!("`{}` is a block device: never granted to a container", d.node)))
                }
                Some(n) => {
                    let watchdog = board.watchdog.as_ref().map(|w| w.device.as_str());
                    if let Some(what) = crate::confine::container::devices::never_granted(n.major, n.minor, &n.path, watchdog) {
                        let why = format!("`{}` ({} {}:{}) is {what}: never granted to a container", d.node, n.path, n.major, n.minor);
                        return Err(err(&self.name, f, why));
                    }
                }
            }
        }
        Ok(())
    }

    /// Parse the human-authored TOML form and validate it. `stem` is the file
    /// name without `.toml`; the manifest's name must equal it.
    #[cfg(any(feature = "host", test))]
    pub fn from_toml(stem: &str, text: &str) -> Result<Manifest, ManifestError> {
        let m: Manifest = toml::from_str(text).map_err(|e| toml_error(stem, text, &e))?;
        if m.name != stem {
            return Err(err(stem, "name", format!("`{}` must equal the file name `{stem}`", m.name)));
        }
        m.validate()?;
        Ok(m)
    }
}

/// Check a whole set of manifests (a release's): each one's values, then
/// unique names, known dependencies, no cycle, then the gates.
pub fn validate_set(set: &[Manifest]) -> Result<(), ManifestError> {
    for m in set {
        m.validate_fields()?;
    }
    for (i, m) in set.iter().enumerate() {
        if set.iter().take(i).any(|o| o.name == m.name) {
            return Err(err(&m.name, "name", "is used by two containers"));
        }
    }
    for m in set {
        for (j, d) in m.after.iter().enumerate() {
            if !set.iter().any(|o| &o.name == d) {
                return Err(err(&m.name, format!("after[{j}]"), format!("`{d}` is not a container in this release")));
            }
        }
    }
    start_order(set)?;
    for m in set {
        m.check_gates()?;
    }
    Ok(())
}

/// Most containers a set may hold (the release limit).
pub const SET_MAX: usize = 32;

/// Indices into `set` in an order where each container comes after the ones
/// it names in `after`. A dependency cycle is an error that names the cycle.
/// Expects names unique and dependencies known (checked by [`validate_set`]);
/// unknown names are ignored here.
pub fn start_order(set: &[Manifest]) -> Result<Vec<usize, SET_MAX>, ManifestError> {
    if set.len() > SET_MAX {
        return Err(err("(release)", "containers", "too many containers"));
    }
    // 0 = unvisited, 1 = on the current path, 2 = done.
    let mut state = [0u8; SET_MAX];
    let mut order: Vec<usize, SET_MAX> = Vec::new();
    let mut path: Vec<usize, SET_MAX> = Vec::new();
    for root in 0..set.len() {
        visit(set, root, &mut state, &mut path, &mut order)?;
    }
    Ok(order)
}

fn visit(set: &[Manifest], i: usize, state: &mut [u8; SET_MAX], path: &mut Vec<usize, SET_MAX>, order: &mut Vec<usize, SET_MAX>) -> Result<(), ManifestError> {
    let (Some(m), Some(s)) = (set.get(i), state.get(i).copied()) else {
        return Ok(());
    };
    match s {
        2 => return Ok(()),
        1 => {
            let start = path.iter().position(|&p| p == i).unwrap_or(0);
            let mut text = std::string::String::new();
            for &p in path.iter().skip(start) {
                if let Some(pm) = set.get(p) {
                    text.push_str(&pm.name);
                    text.push_str(" -> ");
                }
            }
            text.push_str(&m.name);
            return Err(err(&m.name, "after", format!("dependency cycle: {text}")));
        }
        _ => {}
    }
    if let Some(s) = state.get_mut(i) {
        *s = 1;
    }
    // Depth is bounded by SET_MAX: a node on the path is never re-entered.
    let _ = path.push(i);
    for d in &m.after {
        if let Some(j) = set.iter().position(|o| &o.name == d) {
            visit(set, j, state, path, order)?;
        }
    }
    path.pop();
    if let Some(s) = state.get_mut(i) {
        *s = 2;
    }
    let _ = order.push(i);
    Ok(())
}

/// Turn a TOML error into a field error: unknown and missing fields are named;
/// for other errors the key at the error's position is named.
#[cfg(any(feature = "host", test))]
fn toml_error(stem: &str, text: &str, e: &toml::de::Error) -> ManifestError {
    let msg = e.message().trim().to_owned();
    let field = ["unknown field `", "missing field `"]
        .iter()
        .find_map(|p| msg.strip_prefix(p))
        .and_then(|rest| rest.split('`').next())
        .map(str::to_owned)
        .or_else(|| e.span().and_then(|s| key_at(text, s.start)))
        .unwrap_or_else(|| "?".to_owned());
    let at = e.span().map(|s| source::line_col(text, s.start)).map(|(l, c)| format!(" (line {l}, column {c})")).unwrap_or_default();
    err(stem, field, format!("{msg}{at}"))
}

/// The dotted key whose value holds byte `pos`: the nearest `key =` at or
/// before it, under the nearest `[table]` header before that.
#[cfg(any(feature = "host", test))]
fn key_at(text: &str, pos: usize) -> Option<std::string::String> {
    let before = text.get(..pos)?;
    let mut key = None;
    for line in before.lines().rev() {
        let line = line.trim();
        if let Some(table) = line.strip_prefix('[') {
            let table = table.trim_matches(|c| c == '[' || c == ']').trim();
            return key.map(|k| format!("{table}.{k}"));
        }
        if key.is_none() {
            if let Some((k, _)) = line.split_once('=') {
                let k = k.trim();
                if !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.') {
                    key = Some(k.to_owned());
                }
            }
        }
    }
    key
}

#[cfg(test)]
pub(crate) mod tests;
