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
//! | `socket_families` | <= 8 unique names from [`crate::release::manifest::families::FAMILIES`] that are grantable by name (not unix, inet, inet6, netlink: default; not packet: `CAP_NET_RAW`; never alg, vsock, key) | the kernel-surface issue (added to the seccomp filter's family allow-list) |
//! | `devices` | hardware node names, access a non-empty combination of `r`, `w`, `m`; against the board: node exists, is not reserved, is a character device, is in no class that is never granted ([`crate::release::board::never::never_granted`]) ([`Manifest::check_devices`]) | the confinement issue (a node made for the container, mode from `r`/`w`, bound into its `/dev`; `m` is the cgroup's); ioctls only with `w` (Landlock's device-ioctl right, per node) |
//! | `rlimits` | `nofile` 16..=1048576, `nproc` 1..=4194304, `core` <= 1 GiB | the confinement issue (set before the user namespace) |
//! | `network = "host"` | (no `CAP_NET_ADMIN`/`CAP_NET_RAW`) | the confinement issue (no network namespace; /sys bound read-only) |
//! | `exec_paths` | <= 8 absolute paths without `..`, unique; `entry.argv[0]` must lie beneath one of them | the Landlock issue (execute only beneath these; default: the whole image) |
//! | `rw_paths` | <= 8 absolute paths without `..`, not `/`, unique | the Landlock issue (writable beneath these, besides the writable mounts and `/dev`) |
//! | `update_drop` | the `volume` name of one of its `mounts` | the fleet-update issue (`NAME.bundle` files there are moved to berth's inbox as `<container>.NAME.bundle`; see [`crate::release::inbox`]) |
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

mod checks;
mod digest;
pub mod families;
mod order;
#[cfg(any(feature = "host", test))]
pub mod source;
mod tables;
pub mod units;

pub use digest::Digest;
pub use order::{start_order, validate_set, SET_MAX};
pub use tables::{
    BackoffSpec, Command, DeviceGrant, Entry, Health, LogRate, Mount, Network, Readiness, Resources, Restart, Rlimits, Stop, StopSignal, STOP_GRACE_MS,
};

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
    /// ([`crate::release::manifest::families::FAMILIES`]: `can`, `bluetooth`, ...).
    #[serde(default)]
    pub socket_families: Vec<String<{ families::FAMILY_NAME_MAX }>, FAMILIES_MAX>,
    /// A one-shot task: its exit 0 is success (during an update's trial it
    /// counts as done, not against the release). Needs `restart = "never"`
    /// or `"on-failure"`.
    #[serde(default)]
    pub oneshot: bool,
    /// One of its volumes (by name) that berth treats as an update inbox:
    /// a `NAME.bundle` the container finishes there is moved into berth's
    /// inbox and verified like any other bundle. The volume's quota bounds
    /// it. For an update agent (issue 20): it may offer bundles, nothing else.
    #[serde(default)]
    pub update_drop: Option<Name>,
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
            ("update_drop", self.update_drop.is_some()),
        ]
        .into_iter()
        .filter_map(|(f, set)| set.then_some(f))
    }

    /// Check every field's value (not the gates, not the set-wide rules);
    /// the first error.
    pub fn validate_fields(&self) -> Result<(), ManifestError> {
        self.field_errors().into_iter().next().map_or(Ok(()), Err)
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
