//! The container's Landlock ruleset, as data.
//!
//! It must not open a path or enforce a ruleset: the rules are data here,
//! applied by the container's init.
//!
//! Landlock is the kernel's unprivileged LSM: a process restricts its own
//! file access, for itself and every process it starts, and can never undo
//! it. berth applies one ruleset per container in its init, after
//! `no_new_privs` and before the seccomp filter (so the filter needs no
//! Landlock calls), on top of the mount layer. Two locks on one door: a
//! mistake in the mount sequence or a kernel bug in one of them does not open
//! the container's files on its own.
//!
//! What a container may do (its own paths, after `pivot_root`):
//!
//! | beneath | access |
//! |---|---|
//! | `/` (the image, and every mount in it) | read files, list directories; execute unless the manifest sets `exec_paths` |
//! | `/run/berth-status` (the status view of `status_view = true`) | read only, through the `/` rule (the bind is read-only besides) |
//! | each of `exec_paths` | execute |
//! | `/dev` | read and write files (device nodes), no device ioctls |
//! | each standard node (`/dev/null` .. `/dev/tty`), `/dev/pts` (terminals, `ptmx`), each node granted with `w` | read, write, device ioctls (ABI 5) |
//! | `/dev/shm`, `/dev/mqueue`, each writable mount (`/tmp` included), each of `rw_paths` | read, write, make and remove files, directories, sockets, fifos and symlinks; rename; truncate |
//!
//! and nothing else: no device node is ever made (`MAKE_CHAR`, `MAKE_BLOCK`),
//! a node granted only `r` takes no ioctl (Landlock answers `EACCES` before
//! the driver sees the request; the few generic requests such as `FIONREAD`
//! and `FIOCLEX` Landlock never restricts still work), so reading a sensor
//! cannot turn into driving it,
//! nothing is written under the image or `/proc` and `/sys` (writes to
//! `/proc/self/...` included). From ABI 6 on, abstract Unix sockets are
//! scoped: the container cannot connect to one outside itself (with
//! `network = "host"` it shares the host's). Signals are not scoped: the
//! PID namespace already bounds whom the container can signal, and a
//! scope would keep a health command berth runs inside the container (a
//! Landlock domain of its own) from signalling the container's processes.
//!
//! [`plan_rules`] (pure, in [`super::plan::plan`]) makes the rule list with
//! every right berth knows. The supervisor probes the kernel's ABI once
//! ([`crate::sys::landlock::abi_version`]) and [`decide`]s with the board's
//! mode; [`Ruleset::for_abi`] says which rights the ruleset handles on that
//! ABI and [`Ruleset::allowed`] masks each rule by it (and to the
//! file-only rights when the path is not a directory). The child opens each
//! path `O_PATH` after the pivot and adds it; the strings are made here,
//! before fork.

use core::fmt;

use nix::errno::Errno;

use crate::release::board::LandlockMode;
use crate::release::manifest::{Path, LANDLOCK_PATHS_MAX, MOUNTS_MAX};

use super::devices::NODES_MAX;

use super::cstr::CPath;

/// `LANDLOCK_ACCESS_FS_*` (linux/landlock.h).
pub mod access {
    pub const EXECUTE: u64 = 1 << 0;
    pub const WRITE_FILE: u64 = 1 << 1;
    pub const READ_FILE: u64 = 1 << 2;
    pub const READ_DIR: u64 = 1 << 3;
    pub const REMOVE_DIR: u64 = 1 << 4;
    pub const REMOVE_FILE: u64 = 1 << 5;
    pub const MAKE_CHAR: u64 = 1 << 6;
    pub const MAKE_DIR: u64 = 1 << 7;
    pub const MAKE_REG: u64 = 1 << 8;
    pub const MAKE_SOCK: u64 = 1 << 9;
    pub const MAKE_FIFO: u64 = 1 << 10;
    pub const MAKE_BLOCK: u64 = 1 << 11;
    pub const MAKE_SYM: u64 = 1 << 12;
    /// ABI 2: link or rename a file into another directory.
    pub const REFER: u64 = 1 << 13;
    /// ABI 3.
    pub const TRUNCATE: u64 = 1 << 14;
    /// ABI 5: ioctl on device files.
    pub const IOCTL_DEV: u64 = 1 << 15;
}

/// `LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET` (ABI 6).
pub const SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1 << 0;

/// The highest ABI whose rights berth knows. ABI 7 added only logging
/// flags; a newer kernel is used at this ABI.
pub const ABI_KNOWN: u32 = 7;

use access::*;

/// Reading: files and directory listings.
pub const READ: u64 = READ_FILE | READ_DIR;
/// A writable tree: everything but execute and making device nodes.
pub const WRITE_TREE: u64 = READ | WRITE_FILE | REMOVE_DIR | REMOVE_FILE | MAKE_DIR | MAKE_REG | MAKE_SOCK | MAKE_FIFO | MAKE_SYM | REFER | TRUNCATE;
/// `/dev`: its nodes open for reading and writing; ioctls only where a
/// node's own rule ([`DEV_IOCTL`]) adds them.
pub const DEV: u64 = READ | WRITE_FILE;
/// A node (or `/dev/pts`) that takes device ioctls.
pub const DEV_IOCTL: u64 = READ | WRITE_FILE | IOCTL_DEV;
/// The container's terminals: `/dev/pts` (and `/dev/ptmx`, a link into it).
pub const PTS: &str = "/dev/pts";
/// The rights that apply to a file that is not a directory.
pub const FILE_RIGHTS: u64 = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV;

/// Most rules: `/`, the exec paths, `/dev`, `/dev/shm`, `/dev/mqueue`, the
/// writable mounts (`/tmp` included), the rw paths, `/dev/pts` and the nodes
/// that take ioctls.
pub const RULES_MAX: usize = 4 + LANDLOCK_PATHS_MAX + MOUNTS_MAX + 1 + LANDLOCK_PATHS_MAX + 1 + NODES_MAX;

/// One rule: everything beneath `path` gets `access`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub path: CPath,
    pub access: u64,
    /// The path lies beneath a persistent volume: opened without following
    /// a symlink ([`crate::sys::landlock::open_path_no_links`]), so one the
    /// container left there cannot widen the rule.
    pub no_links: bool,
}

/// A container's rules: at most [`RULES_MAX`] ([`plan_rules`] refuses
/// more), on the heap at their exact number (a plan is kept for as long as
/// its release runs; a full capacity of paths would be mostly empty).
pub type Rules = Vec<Rule>;

/// The rights a ruleset handles (denies unless a rule allows) on one ABI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ruleset {
    /// The ABI applied: the kernel's, at most [`ABI_KNOWN`].
    pub abi: u32,
    pub handled_fs: u64,
    pub scoped: u64,
}

impl Ruleset {
    /// The ruleset for a kernel offering `kernel_abi` (`None` for 0).
    pub fn for_abi(kernel_abi: u32) -> Option<Ruleset> {
        let abi = kernel_abi.min(ABI_KNOWN);
        let mut fs = (MAKE_SYM << 1) - 1;
        if abi >= 2 {
            fs |= REFER;
        }
        if abi >= 3 {
            fs |= TRUNCATE;
        }
        if abi >= 5 {
            fs |= IOCTL_DEV;
        }
        let scoped = if abi >= 6 { SCOPE_ABSTRACT_UNIX_SOCKET } else { 0 };
        (abi > 0).then_some(Ruleset { abi, handled_fs: fs, scoped })
    }

    /// What a rule allows on this ABI: only handled rights (the kernel
    /// refuses others), and only file rights on a file.
    pub fn allowed(&self, rule_access: u64, is_dir: bool) -> u64 {
        let a = rule_access & self.handled_fs;
        if is_dir {
            a
        } else {
            a & FILE_RIGHTS
        }
    }
}

/// The manifest's part of the rules.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub exec_paths: &'a [Path],
    pub rw_paths: &'a [Path],
    /// Targets of the writable mounts, `/tmp` included.
    pub writable: &'a [&'a str],
    /// The `/dev` nodes that take device ioctls ([`super::devices::takes_ioctls`]).
    pub ioctl_nodes: &'a [&'a str],
    /// Targets of the volume mounts (rule paths beneath them are opened
    /// without following symlinks).
    pub volumes: &'a [&'a str],
}

/// The rule list of a container (every right berth knows; masked per ABI
/// at the start). The error names the field.
pub fn plan_rules(input: &Input<'_>) -> Result<Rules, (std::string::String, std::string::String)> {
    let mut rules = Rules::new();
    let mut add = |field: &str, path: &str, access: u64| -> Result<(), (std::string::String, std::string::String)> {
        let path = CPath::new(path).ok_or_else(|| (field.to_owned(), "contains NUL or is too long".to_owned()))?;
        // One path twice (a mount listed in rw_paths): one rule with both.
        if let Some(r) = rules.iter_mut().find(|r| r.path == path) {
            r.access |= access;
            return Ok(());
        }
        if rules.len() >= RULES_MAX {
            return Err((field.to_owned(), "too many Landlock rules".to_owned()));
        }
        let no_links = super::mounts::beneath_volume(path.as_str(), input.volumes);
        rules.push(Rule { path, access, no_links });
        Ok(())
    };
    let root = if input.exec_paths.is_empty() { READ | EXECUTE } else { READ };
    add("exec_paths", "/", root)?;
    for (i, p) in input.exec_paths.iter().enumerate() {
        add(&format!("exec_paths[{i}]"), p, EXECUTE)?;
    }
    add("(dev)", "/dev", DEV)?;
    add("(dev)", PTS, DEV_IOCTL)?;
    for n in input.ioctl_nodes {
        add("devices", n, DEV_IOCTL)?;
    }
    add("(dev)", "/dev/shm", WRITE_TREE)?;
    add("(dev)", "/dev/mqueue", WRITE_TREE)?;
    for t in input.writable {
        add("mounts", t, WRITE_TREE)?;
    }
    for (i, p) in input.rw_paths.iter().enumerate() {
        add(&format!("rw_paths[{i}]"), p, WRITE_TREE)?;
    }
    rules.shrink_to_fit();
    Ok(rules)
}

/// What the kernel said when asked for its ABI.
pub type Probe = Result<u32, Errno>;

/// What berth does about Landlock for this boot's containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Apply this ruleset to every container.
    Apply(Ruleset),
    /// No Landlock, and the board allows that: start without, say so.
    Downgrade(Unavailable),
    /// No Landlock, and the board requires it: start no container.
    Refuse(Unavailable),
}

/// Why Landlock is not there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable(pub Errno);

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Errno::EOPNOTSUPP => f.write_str("Landlock is built into the kernel but disabled at boot (lsm=)"),
            Errno::ENOSYS => f.write_str("the kernel has no Landlock"),
            e => write!(f, "the Landlock ABI probe failed: {}", crate::common::files::errno_text(e)),
        }
    }
}

/// Combine the board's mode with the kernel's answer.
pub fn decide(mode: LandlockMode, probe: Probe) -> Decision {
    let unavailable = match probe.map(Ruleset::for_abi) {
        Ok(Some(r)) => return Decision::Apply(r),
        Ok(None) => Unavailable(Errno::EOPNOTSUPP),
        Err(e) => Unavailable(e),
    };
    match mode {
        LandlockMode::Required => Decision::Refuse(unavailable),
        LandlockMode::Optional => Decision::Downgrade(unavailable),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Path {
        s.try_into().unwrap()
    }

    fn find(rules: &Rules, path: &str) -> Option<u64> {
        rules.iter().find(|r| r.path.as_str() == path).map(|r| r.access)
    }

    #[test]
    fn rule_paths_beneath_a_volume_do_not_follow_symlinks() {
        let rw: Vec<Path> = ["/var/app/data", "/var/other"].iter().map(|p| (*p).try_into().unwrap()).collect();
        let r =
            plan_rules(&Input { exec_paths: &[], rw_paths: &rw, writable: &["/tmp", "/var/app", "/var/app/cache"], ioctl_nodes: &[], volumes: &["/var/app"] })
                .unwrap();
        let no_links = |p: &str| r.iter().find(|r| r.path.as_str() == p).map(|r| r.no_links);
        assert_eq!(no_links("/var/app/data"), Some(true));
        assert_eq!(no_links("/var/app/cache"), Some(true));
        assert_eq!(no_links("/var/app"), Some(false), "the mount point itself is in the image");
        assert_eq!(no_links("/var/other"), Some(false));
        assert_eq!(no_links("/"), Some(false));
    }

    #[test]
    fn default_rules_read_and_execute_the_image_write_only_writable_mounts() {
        let r = plan_rules(&Input { exec_paths: &[], rw_paths: &[], writable: &["/tmp"], ioctl_nodes: &[], volumes: &[] }).unwrap();
        assert_eq!(find(&r, "/"), Some(READ | EXECUTE));
        assert_eq!(find(&r, "/tmp"), Some(WRITE_TREE));
        assert_eq!(find(&r, "/dev"), Some(DEV));
        assert_eq!(find(&r, "/dev/pts"), Some(DEV_IOCTL));
        assert_eq!(find(&r, "/dev/shm"), Some(WRITE_TREE));
        assert_eq!(r.len(), 6);
        // Device ioctls only where a rule names the node (or the terminals).
        let ioctl: std::vec::Vec<&str> = r.iter().filter(|x| x.access & IOCTL_DEV != 0).map(|x| x.path.as_str()).collect();
        assert_eq!(ioctl, ["/dev/pts"]);
        // Nothing anywhere makes device nodes or writes beneath `/`.
        assert!(r.iter().all(|x| x.access & (MAKE_CHAR | MAKE_BLOCK) == 0));
        assert_eq!(find(&r, "/").unwrap() & WRITE_TREE & !READ, 0);
        assert_eq!(WRITE_TREE & EXECUTE, 0, "writable trees do not execute");
    }

    #[test]
    fn exec_paths_take_execute_away_from_the_root() {
        let exec = [p("/bin/app"), p("/usr/lib")];
        let rw = [p("/run/app"), p("/tmp")];
        let r = plan_rules(&Input { exec_paths: &exec, rw_paths: &rw, writable: &["/tmp", "/var"], ioctl_nodes: &[], volumes: &[] }).unwrap();
        assert_eq!(find(&r, "/"), Some(READ));
        assert_eq!(find(&r, "/bin/app"), Some(EXECUTE));
        assert_eq!(find(&r, "/usr/lib"), Some(EXECUTE));
        assert_eq!(find(&r, "/run/app"), Some(WRITE_TREE));
        assert_eq!(find(&r, "/var"), Some(WRITE_TREE));
        assert_eq!(r.iter().filter(|x| x.path.as_str() == "/tmp").count(), 1, "merged");
        let executable: std::vec::Vec<&str> = r.iter().filter(|x| x.access & EXECUTE != 0).map(|x| x.path.as_str()).collect();
        assert_eq!(executable, ["/bin/app", "/usr/lib"]);
    }

    #[test]
    fn the_status_view_is_read_not_written() {
        let r = plan_rules(&Input { exec_paths: &[], rw_paths: &[], writable: &["/tmp"], ioctl_nodes: &[], volumes: &[] }).unwrap();
        let inside = crate::common::names::STATUS_INSIDE;
        let access = r.iter().filter(|x| crate::release::manifest::beneath(inside, x.path.as_str())).fold(0, |a, x| a | x.access);
        assert_eq!(access & READ, READ);
        assert_eq!(access & WRITE_TREE & !READ, 0);
    }

    #[test]
    fn the_largest_manifest_fits() {
        let exec: std::vec::Vec<Path> = (0..LANDLOCK_PATHS_MAX).map(|i| p(&format!("/x{i}"))).collect();
        let rw: std::vec::Vec<Path> = (0..LANDLOCK_PATHS_MAX).map(|i| p(&format!("/w{i}"))).collect();
        let mounts: std::vec::Vec<std::string::String> = (0..=MOUNTS_MAX).map(|i| format!("/m{i}")).collect();
        let writable: std::vec::Vec<&str> = mounts.iter().map(|s| s.as_str()).collect();
        let nodes: std::vec::Vec<std::string::String> = (0..NODES_MAX).map(|i| format!("/dev/n{i}")).collect();
        let ioctl_nodes: std::vec::Vec<&str> = nodes.iter().map(|s| s.as_str()).collect();
        let r = plan_rules(&Input { exec_paths: &exec, rw_paths: &rw, writable: &writable, ioctl_nodes: &ioctl_nodes, volumes: &[] }).unwrap();
        assert_eq!(r.len(), RULES_MAX);
    }

    #[test]
    fn rights_are_masked_by_abi() {
        let v1 = Ruleset::for_abi(1).unwrap();
        assert_eq!(v1.handled_fs, 0x1fff);
        assert_eq!(v1.scoped, 0);
        assert_eq!(v1.allowed(WRITE_TREE, true) & (REFER | TRUNCATE), 0);
        assert_eq!(Ruleset::for_abi(2).unwrap().handled_fs, 0x3fff);
        assert_eq!(Ruleset::for_abi(3).unwrap().handled_fs, 0x7fff);
        assert_eq!(Ruleset::for_abi(4).unwrap().handled_fs, 0x7fff, "ABI 4 adds network rights only");
        let v5 = Ruleset::for_abi(5).unwrap();
        assert_eq!(v5.handled_fs, 0xffff);
        assert_eq!(v5.scoped, 0);
        let v6 = Ruleset::for_abi(6).unwrap();
        assert_eq!(v6.scoped, SCOPE_ABSTRACT_UNIX_SOCKET);
        let future = Ruleset::for_abi(99).unwrap();
        assert_eq!((future.abi, future.handled_fs), (ABI_KNOWN, 0xffff));
        assert_eq!(Ruleset::for_abi(0), None);
        // On a file only file rights remain, never empty for berth's rules.
        assert_eq!(v6.allowed(WRITE_TREE, false), READ_FILE | WRITE_FILE | TRUNCATE);
        assert_eq!(v1.allowed(DEV, false), READ_FILE | WRITE_FILE);
        assert_eq!(v1.allowed(DEV_IOCTL, false), READ_FILE | WRITE_FILE, "no ioctl right before ABI 5");
        assert_eq!(Ruleset::for_abi(5).unwrap().allowed(DEV_IOCTL, false), READ_FILE | WRITE_FILE | IOCTL_DEV);
        assert_eq!(v6.allowed(DEV, false) & IOCTL_DEV, 0);
        assert_eq!(v6.allowed(EXECUTE, false), EXECUTE);
        for rule in [READ | EXECUTE, READ, EXECUTE, DEV, DEV_IOCTL, WRITE_TREE] {
            for abi in 1..=ABI_KNOWN {
                let r = Ruleset::for_abi(abi).unwrap();
                assert_ne!(r.allowed(rule, false), 0);
                assert_eq!(r.allowed(rule, true) & !r.handled_fs, 0);
            }
        }
    }

    #[test]
    fn the_board_decides_what_a_missing_landlock_means() {
        let v6 = Ruleset::for_abi(6).unwrap();
        assert_eq!(decide(LandlockMode::Required, Ok(6)), Decision::Apply(v6));
        assert_eq!(decide(LandlockMode::Optional, Ok(6)), Decision::Apply(v6));
        let off = Unavailable(Errno::EOPNOTSUPP);
        assert_eq!(decide(LandlockMode::Required, Err(Errno::EOPNOTSUPP)), Decision::Refuse(off));
        assert_eq!(decide(LandlockMode::Optional, Err(Errno::EOPNOTSUPP)), Decision::Downgrade(off));
        assert_eq!(decide(LandlockMode::Required, Err(Errno::ENOSYS)), Decision::Refuse(Unavailable(Errno::ENOSYS)));
        assert_eq!(decide(LandlockMode::Required, Ok(0)), Decision::Refuse(off));
        assert_eq!(off.to_string(), "Landlock is built into the kernel but disabled at boot (lsm=)");
        assert_eq!(Unavailable(Errno::ENOSYS).to_string(), "the kernel has no Landlock");
    }
}
