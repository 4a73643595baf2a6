//! The tables and values of a manifest besides its top level: `[entry]`,
//! `[readiness]`, `[health]`, `[stop]`, `[backoff]`, `[rlimits]`,
//! `[resources]`, `[log_rate]`, `[[mounts]]`, `[[devices]]`, and the
//! `restart` and `network` choices, with their defaults.
//!
//! It only declares the types and their defaults: it must not check ranges
//! beyond [`BackoffSpec::check`] (the checks are [`super::checks`]'s), and it
//! must not act on them (confine and supervise do).

use heapless::{String, Vec};
use serde::{Deserialize, Serialize};

use super::{units, Name, Path, ACCESS_MAX, ARGS_MAX, ARG_MAX, COMMAND_MAX, DEVICE_NAME_MAX, ENV_MAX, LOG_BURST, LOG_LINES_PER_S};

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
    /// `volumes.default_size_mib`; bounds in [`crate::release::volumes`],
    /// enforced by `confine::container::quota`).
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
