//! The checks of a board config: [`Board::validate`] runs one helper per
//! table, in a fixed order, and returns the first problem found.
//!
//! It only reads the config: it must not touch the system (boot and confine
//! apply the board), and it must not accept a hardware node in a class no
//! container is ever given unless the board marks it `reserved`.

use super::{err, parse_cidr, parse_ipv4, Board, BoardError, FsType, NodeKind};

/// An RFC 1123 hostname label.
fn valid_label(s: &str) -> bool {
    !s.is_empty() && !s.starts_with('-') && !s.ends_with('-') && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// A kernel module name as modprobe spells it.
pub(super) fn valid_module(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn valid_dev_path(s: &str) -> bool {
    s.starts_with("/dev/") && s.len() > 5 && !s.split('/').any(|c| c == "..") && s.bytes().all(|b| b.is_ascii_graphic())
}

impl Board {
    /// Check every field; the first problem found is returned.
    pub fn validate(&self) -> Result<(), BoardError> {
        self.validate_identity()?;
        self.validate_storage()?;
        if !(256..=1_048_576).contains(&self.log_quota_kib) {
            return Err(err("log_quota_kib", "must be between 256 and 1048576"));
        }
        self.validate_watchdog()?;
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
        if let Some(b) = &self.bootloader {
            b.validate()?;
        }
        if let Some(t) = &self.time {
            t.validate()?;
        }
        self.validate_hardware()?;
        self.validate_apparmor()?;
        Ok(())
    }

    /// The board's name, hostname, console and kernel modules, and its kernel.
    fn validate_identity(&self) -> Result<(), BoardError> {
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
        Ok(())
    }

    /// `[storage]`: a read-only system image and an ext4 data partition on
    /// two devices, and the wait for them.
    fn validate_storage(&self) -> Result<(), BoardError> {
        for (field, dev, rw) in [("storage.system", &self.storage.system, false), ("storage.data", &self.storage.data, true)] {
            if let Err(why) = crate::common::blockname::parse(&dev.device) {
                return Err(err(format!("{field}.device"), why));
            }
            if rw && dev.fstype != FsType::Ext4 {
                return Err(err(format!("{field}.fstype"), "the data partition must be ext4"));
            }
            if let Some(v) = &dev.verity {
                if rw {
                    return Err(err(format!("{field}.verity"), "only the system image is mounted through dm-verity"));
                }
                v.validate()?;
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
        Ok(())
    }

    /// `[watchdog]`: a device under `/dev/` and a timeout berth can pet.
    fn validate_watchdog(&self) -> Result<(), BoardError> {
        if let Some(w) = &self.watchdog {
            if !valid_dev_path(&w.device) {
                return Err(err("watchdog.device", "must be a path under /dev/"));
            }
            if !(2..=600).contains(&w.timeout_s) {
                return Err(err("watchdog.timeout_s", "must be between 2 and 600"));
            }
        }
        Ok(())
    }

    /// `[[hardware]]`: unique names, device paths and Linux device numbers.
    fn validate_hardware(&self) -> Result<(), BoardError> {
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
        Ok(())
    }

    /// `[apparmor]`: a profile name and a compiled policy on the system image.
    fn validate_apparmor(&self) -> Result<(), BoardError> {
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
    /// [`super::never::never_granted`]) must be marked
    /// `reserved`: the board says so rather than a manifest finding out.
    fn validate_never_granted(&self) -> Result<(), BoardError> {
        let watchdog = self.watchdog.as_ref().map(|w| w.device.as_str());
        for (i, hw) in self.hardware.iter().enumerate() {
            if hw.reserved || hw.kind == NodeKind::Block {
                continue;
            }
            if let Some(what) = super::never::never_granted(hw.major, hw.minor, &hw.path, watchdog) {
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
}
