//! The checks of one manifest's field values, one helper per table in the
//! documented order ([`Manifest::field_errors`]), and the check of its
//! granted devices against a board ([`Manifest::check_devices`]).
//!
//! It only reads the manifest and the board: it must not touch the system,
//! and it must not reorder the checks (refused capabilities come first, and
//! the first error is the one [`Manifest::validate_fields`] reports).

use super::{
    beneath, err, valid_abs_path, valid_env_key, valid_name, Command, Manifest, ManifestError, Network, Restart, CAP_NAMES, ID_LIMIT, LOG_BURST_MAX,
    LOG_RATE_MAX, REFUSED_CAPS,
};
use crate::release::board::{Board, NodeKind};

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
    /// Every error in the fields' values, in the documented order (refused
    /// capabilities first).
    pub fn field_errors(&self) -> std::vec::Vec<ManifestError> {
        let mut out = std::vec::Vec::new();
        self.check_refused_caps(&mut out);
        self.check_identity(&mut out);
        self.check_entry(&mut out);
        self.check_after(&mut out);
        self.check_lifecycle(&mut out);
        self.check_limits(&mut out);
        self.check_mounts(&mut out);
        self.check_tmpfs_fits_memory(&mut out);
        self.check_capabilities(&mut out);
        self.check_device_grants(&mut out);
        self.validate_landlock_paths(&mut out);
        self.validate_socket_families(&mut out);
        self.check_update_drop(&mut out);
        out
    }

    /// `update_drop` names one of its volumes.
    fn check_update_drop(&self, out: &mut std::vec::Vec<ManifestError>) {
        if let Some(d) = &self.update_drop {
            if !self.mounts.iter().any(|mt| mt.volume.as_ref() == Some(d)) {
                out.push(err(&self.name, "update_drop", format!("`{d}` is not the volume of any of its mounts")));
            }
        }
    }

    /// Each of `socket_families` is a family that may be granted by name,
    /// listed once.
    fn validate_socket_families(&self, out: &mut std::vec::Vec<ManifestError>) {
        for (i, f) in self.socket_families.iter().enumerate() {
            let field = format!("socket_families[{i}]");
            if let Some(why) = super::families::family_refusal(f) {
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

    /// Refused capabilities: they are never acceptable, so they come first.
    fn check_refused_caps(&self, out: &mut std::vec::Vec<ManifestError>) {
        let m = self.name.as_str();
        for (i, c) in self.capabilities.iter().enumerate() {
            if REFUSED_CAPS.contains(&c.as_str()) {
                out.push(err(m, format!("capabilities[{i}]"), format!("{c} is never granted to a container")));
            }
        }
    }

    /// The name and the version.
    fn check_identity(&self, out: &mut std::vec::Vec<ManifestError>) {
        let m = self.name.as_str();
        let e = |field: &str, reason: &str| err(m, field, reason);
        if !valid_name(m) {
            out.push(e("name", "must be 1..=32 of a-z, 0-9 and inner '-'"));
        }
        if m == crate::common::logstore::BERTH {
            out.push(e("name", "`berth` is reserved for berth's own log stream"));
        }
        if self.version.is_empty() || !self.version.bytes().all(|b| b.is_ascii_alphanumeric() || b".+_-".contains(&b)) {
            out.push(e("version", "must be letters, digits, '.', '+', '_' and '-'"));
        }
    }

    /// `[entry]`: the program, its environment, working directory and ids.
    fn check_entry(&self, out: &mut std::vec::Vec<ManifestError>) {
        let m = self.name.as_str();
        let e = |field: &str, reason: &str| err(m, field, reason);
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
    }

    /// `after`: container names, not itself, each once.
    fn check_after(&self, out: &mut std::vec::Vec<ManifestError>) {
        let m = self.name.as_str();
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
    }

    /// `[readiness]`, `[health]`, `[stop]`, `[backoff]` and `oneshot`: how the
    /// container is started, watched, stopped and restarted.
    fn check_lifecycle(&self, out: &mut std::vec::Vec<ManifestError>) {
        let m = self.name.as_str();
        let e = |field: &str, reason: &str| err(m, field, reason);
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
    }

    /// `[log_rate]`, `[rlimits]` and `[resources]`: each value within its range.
    fn check_limits(&self, out: &mut std::vec::Vec<ManifestError>) {
        let m = self.name.as_str();
        let e = |field: &str, reason: &str| err(m, field, reason);
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
    }

    /// `[[mounts]]`: targets, exactly one of tmpfs and volume, volume quotas.
    fn check_mounts(&self, out: &mut std::vec::Vec<ManifestError>) {
        let m = self.name.as_str();
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
            if mt.volume_size.is_some_and(|v| !(crate::release::volumes::SIZE_MIN..=crate::release::volumes::SIZE_MAX).contains(&v)) {
                out.push(err(m, f("volume_size"), "must be between 1 MiB and 1 TiB (in bytes)"));
            }
            if mt.volume_inodes.is_some_and(|v| !(crate::release::volumes::INODES_MIN..=crate::release::volumes::INODES_MAX).contains(&v)) {
                out.push(err(m, f("volume_inodes"), "must be between 16 and 4294967296"));
            }
            if mt.exec && mt.volume.is_some() {
                out.push(err(m, f("exec"), "only a tmpfs may be exec: volumes live on the data partition, which is mounted noexec"));
            }
        }
    }

    /// tmpfs pages are charged to the container: with `resources.memory_max`
    /// set, its tmpfs mounts must fit that limit (the same rule a start
    /// applies, [`crate::release::budgets::resolve`]).
    fn check_tmpfs_fits_memory(&self, out: &mut std::vec::Vec<ManifestError>) {
        let m = self.name.as_str();
        if let Some(max) = self.resources.and_then(|r| r.memory_max).filter(|v| (1 << 20..=1 << 40).contains(v)) {
            let budgets = crate::release::budgets::Budgets::default();
            out.extend(crate::release::budgets::resolve(Some(max), &self.mounts, &budgets, 0).err().map(|(field, why)| err(m, field, why)));
        }
    }

    /// `capabilities` and `seccomp_allow`: known names, each once.
    fn check_capabilities(&self, out: &mut std::vec::Vec<ManifestError>) {
        let m = self.name.as_str();
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
    }

    /// `[[devices]]`: node names and access strings (the board is checked
    /// later, [`Manifest::check_devices`]).
    fn check_device_grants(&self, out: &mut std::vec::Vec<ManifestError>) {
        let m = self.name.as_str();
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
    }

    /// Check the granted hardware nodes against the board they will run on.
    pub fn check_devices(&self, board: &Board) -> Result<(), ManifestError> {
        for (i, d) in self.devices.iter().enumerate() {
            let f = format!("devices[{i}].node");
            match board.node(&d.node) {
                None => return Err(err(&self.name, f, format!("board {} has no hardware node `{}`", board.name, d.node))),
                Some(n) if n.reserved => return Err(err(&self.name, f, format!("`{}` is reserved and never granted", d.node))),
                Some(n) if n.kind == NodeKind::Block => {
                    return Err(err(&self.name, f, format!("`{}` is a block device: never granted to a container", d.node)))
                }
                Some(n) => {
                    let watchdog = board.watchdog.as_ref().map(|w| w.device.as_str());
                    if let Some(what) = crate::release::board::never::never_granted(n.major, n.minor, &n.path, watchdog) {
                        let why = format!("`{}` ({} {}:{}) is {what}: never granted to a container", d.node, n.path, n.major, n.minor);
                        return Err(err(&self.name, f, why));
                    }
                }
            }
        }
        Ok(())
    }
}
