//! The container's mount sequence, as data.
//!
//! It must not plan a writable mount without `nosuid` and `nodev` (but for
//! the two exceptions below), nor mount on a path beneath a volume except
//! through [`Step::Beneath`]; it is pure, [`super::spawn`] acts the steps.
//!
//! Runs in the child after it entered the new user, mount and PID namespaces
//! (`/proc` needs the PID namespace). Before [`Step::PivotRoot`] every path is
//! a host path under the rootfs (`<rootfs>/proc`); after it, every path is
//! the container's own (`/proc/sys`). The order:
//!
//! 1. `/` recursively slave (host mount events still reach us, ours never
//!    reach the host; not shared, as `pivot_root` requires), then the rootfs
//!    (the read-only verity mount) bound onto itself.
//! 2. `/proc` (proc), `/dev` (tmpfs, 64 KiB), `/dev/pts` (devpts, new
//!    instance), `/dev/shm` (tmpfs, [`SHM_SIZE`]), `/dev/mqueue`, `/sys`
//!    (fresh sysfs read-only with an own network namespace; else the host's
//!    `/sys` bound recursively and remounted read-only, recursively).
//! 3. `/tmp` (tmpfs, [`TMP_SIZE`] unless the manifest mounts `/tmp` itself:
//!    then the manifest's replaces it), then the manifest's mounts, parents
//!    before children: tmpfs, or a bind of `/data/volumes/<container>/<volume>`
//!    ([`volume_path`], made and owned by [`super::prepare`] before the start);
//!    then, with `status_view`, berth's status directory
//!    ([`crate::common::names::STATUS_DIR`]) bound at [`crate::common::names::STATUS_INSIDE`] and
//!    remounted `ro,nosuid,nodev,noexec`.
//! 4. The `/dev` nodes from [`super::devices`]: an empty file, the node
//!    (the host's, or the one berth made for a grant) bound onto it, the bind
//!    remounted `ro,nosuid,noexec` (a device node opens for writing on a
//!    read-only mount; its owner cannot `chmod` it there); then the symlinks;
//!    then `/dev` itself remounted read-only (its sub-mounts stay writable).
//! 5. `pivot_root`, the hostname, the read-only paths, the masked paths, and
//!    `/` remounted read-only.
//!
//! Flag rules, checked by tests: every writable filesystem is `nosuid,nodev`
//! and `noexec` unless the manifest asks for exec (`exec = true`, on a tmpfs
//! only: volumes come from the `noexec` data partition, a flag locked in a
//! user namespace). Two deliberate exceptions lack `nodev`, both
//! without a way for the container to create a node: `devpts` (its nodes
//! are the kernel's own ptys; `nodev` would make them unopenable) and the
//! bind of each granted device node (the node itself must open). Mount
//! points inside the read-only image (`/proc`, `/dev`, `/sys`, `/tmp`, the
//! manifest targets) must exist in the image: [`Step::Mkdir`] succeeds when
//! the directory exists, and fails with `EROFS` when it does not (the start
//! fails at that step, which names the missing directory).

use core::ffi::CStr;
use core::fmt;

use nix::mount::MsFlags;

use super::cstr::{CBuf, CData, CPath};
use super::devices::Node;

mod writable;
pub use writable::{volume_path, writable, Source, Writable};

/// Most steps in one plan. Worst case (8 manifest mounts, 14 nodes in
/// sub-directories) is about 130.
pub const STEPS_MAX: usize = 160;
pub use crate::release::budgets::{DEV_SIZE, SHM_SIZE, TMP_SIZE};
/// Where persistent volumes live on the host (the data partition).
pub const VOLUMES: &str = "/data/volumes";
/// Mount data of the read-only tmpfs laid over a masked directory: one
/// inode (its root), nothing can be created.
pub const MASK_DIR_DATA: &CStr = c"size=4k,nr_inodes=1,mode=0555";
/// Bound over masked files (the container's own `/dev/null`, after the pivot).
pub const MASK_FILE_SOURCE: &CStr = c"/dev/null";

/// Made read-only after the pivot (bind onto itself, remount
/// `ro,nosuid,nodev,noexec`).
pub const READ_ONLY: [&CStr; 5] = [c"/proc/bus", c"/proc/fs", c"/proc/irq", c"/proc/sys", c"/proc/sysrq-trigger"];

/// What a masked path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
}

/// Hidden after the pivot: `/dev/null` over a file, an empty read-only
/// tmpfs over a directory.
pub const MASKED: [(&CStr, Kind); 12] = [
    (c"/proc/acpi", Kind::Dir),
    (c"/proc/asound", Kind::Dir),
    (c"/proc/kcore", Kind::File),
    (c"/proc/keys", Kind::File),
    (c"/proc/latency_stats", Kind::File),
    (c"/proc/timer_list", Kind::File),
    (c"/proc/timer_stats", Kind::File),
    (c"/proc/sched_debug", Kind::File),
    (c"/proc/scsi", Kind::Dir),
    (c"/sys/firmware", Kind::Dir),
    (c"/proc/interrupts", Kind::File),
    (c"/sys/devices/virtual/powercap", Kind::Dir),
];

/// The `/dev` symlinks: link (under `/dev`) and what it points to.
pub const SYMLINKS: [(&str, &CStr); 5] = [
    ("/dev/ptmx", c"pts/ptmx"),
    ("/dev/fd", c"/proc/self/fd"),
    ("/dev/stdin", c"/proc/self/fd/0"),
    ("/dev/stdout", c"/proc/self/fd/1"),
    ("/dev/stderr", c"/proc/self/fd/2"),
];

/// Longest hostname (`HOST_NAME_MAX` plus the NUL).
pub type CHost = CBuf<65>;

const NOSUID: MsFlags = MsFlags::MS_NOSUID;
const SAFE: MsFlags = MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV).union(MsFlags::MS_NOEXEC);
const RO_SAFE: MsFlags = SAFE.union(MsFlags::MS_RDONLY);

/// One step of the sequence. The act layer maps each variant to its calls;
/// every step has its own error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `mount(NULL, target, NULL, flags, NULL)`: change propagation only.
    Propagation { target: CPath, flags: MsFlags },
    /// `mount(source, target, NULL, MS_BIND [| MS_REC], NULL)` of a
    /// directory. The kernel ignores other flags on a bind: a
    /// [`Step::BindRemount`] of the same target follows.
    Bind { source: CPath, target: CPath, recursive: bool },
    /// A host device node bound onto an empty file made by [`Step::Touch`].
    /// The source is opened `O_PATH|O_NOFOLLOW` and must be a character
    /// device.
    BindNode { source: CPath, target: CPath },
    /// The container's notify socket (see [`crate::supervise::notify`]) bound onto an
    /// empty file made by [`Step::Touch`]; the source must be a socket.
    BindSocket { source: CPath, target: CPath },
    /// `mount(NULL, target, NULL, MS_BIND|MS_REMOUNT|flags, NULL)`. Inside a
    /// user namespace the act ORs in the flags `statvfs(target)` reports
    /// (locked ones cannot be cleared: EPERM otherwise). `recursive`: with
    /// `mount_setattr(AT_RECURSIVE)` (Linux >= 5.12), so sub-mounts follow.
    BindRemount { target: CPath, flags: MsFlags, recursive: bool },
    /// `mount(fstype, target, fstype, flags, data)`: a fresh filesystem.
    Mount { fstype: &'static CStr, target: CPath, flags: MsFlags, data: CData },
    /// `mkdir(path, mode)`; an existing directory is success.
    Mkdir { path: CPath, mode: u32 },
    /// A step whose target lies beneath a persistent volume (which the
    /// container wrote in an earlier run): `path` (absolute, as the
    /// container sees it) is resolved in `root` with `openat2(RESOLVE_IN_ROOT
    /// | RESOLVE_NO_SYMLINKS)`, and the mount goes through that descriptor
    /// (`/proc/self/fd/N`). A symlink in any component fails the step with
    /// `ELOOP`: never followed. See [`Beneath`].
    Beneath(Box<At>),
    /// Create an empty regular file (`O_CREAT|O_EXCL|O_NOFOLLOW`) to bind a
    /// node onto.
    Touch { path: CPath, mode: u32 },
    /// `symlink(target, link)`.
    Symlink { target: &'static CStr, link: CPath },
    /// Open `/` `O_PATH`, `chdir(new_root)`, `pivot_root(".", ".")`,
    /// `fchdir(old)`, make it `MS_SLAVE|MS_REC`, `umount2(".", MNT_DETACH)`,
    /// `chdir("/")`.
    PivotRoot { new_root: CPath },
    /// `sethostname` (the bytes without the NUL).
    Hostname { name: CHost },
    /// Bind the path onto itself (`MS_REC`), remount it
    /// `ro,nosuid,nodev,noexec` (OR locked flags). `ENOENT`: the kernel
    /// lacks it, nothing to protect: success.
    ReadOnly { path: &'static CStr },
    /// Bind [`MASK_FILE_SOURCE`] over a file. `ENOENT` is success.
    MaskFile { path: &'static CStr },
    /// Mount a read-only tmpfs ([`MASK_DIR_DATA`],
    /// `ro,nosuid,nodev,noexec`) over a directory. `ENOENT` is success.
    MaskDir { path: &'static CStr },
}

/// A [`Step::Beneath`]: where (the root, the path in it, its parent and
/// last component) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct At {
    pub root: CPath,
    pub path: CPath,
    pub parent: CPath,
    pub leaf: CPath,
    pub op: Beneath,
}

/// What a [`Step::Beneath`] does at its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Beneath {
    /// `mkdirat(parent, leaf)`; an existing directory (not a symlink) is
    /// success.
    Mkdir { mode: u32 },
    /// Bind `source` (a directory) onto the target.
    Bind { source: CPath },
    /// A fresh filesystem on the target.
    Mount { fstype: &'static CStr, flags: MsFlags, data: CData },
    /// Bind-remount the target (now a mount) with `flags` and the locked ones.
    Remount { flags: MsFlags },
    /// An empty file `leaf` in `parent` (`O_CREAT|O_EXCL|O_NOFOLLOW`).
    Touch { mode: u32 },
    /// Bind the socket `source` onto the target (a file).
    BindSocket { source: CPath },
}

/// Is the container path `path` strictly beneath one of `volumes` (the
/// targets of the volume mounts)?
pub fn beneath_volume(path: &str, volumes: &[&str]) -> bool {
    volumes.iter().any(|v| path.strip_prefix(v).is_some_and(|rest| rest.starts_with('/')))
}

/// `rec,bind,ro,nosuid` style rendering (for logs and tests).
pub struct Flags(pub MsFlags);

impl fmt::Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (flag, name) in [
            (MsFlags::MS_REC, "rec"),
            (MsFlags::MS_BIND, "bind"),
            (MsFlags::MS_REMOUNT, "remount"),
            (MsFlags::MS_SLAVE, "slave"),
            (MsFlags::MS_PRIVATE, "private"),
            (MsFlags::MS_SHARED, "shared"),
            (MsFlags::MS_RDONLY, "ro"),
            (MsFlags::MS_NOSUID, "nosuid"),
            (MsFlags::MS_NODEV, "nodev"),
            (MsFlags::MS_NOEXEC, "noexec"),
        ] {
            if self.0.contains(flag) {
                if !first {
                    f.write_str(",")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        if first {
            f.write_str("rw")?;
        }
        Ok(())
    }
}

fn text(c: &CStr) -> &str {
    c.to_str().unwrap_or("?")
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Propagation { target, flags } => {
                write!(f, "propagation {target} {}", Flags(*flags))
            }
            Step::Bind { source, target, recursive } => {
                write!(f, "{} {source} {target}", if *recursive { "rbind" } else { "bind" })
            }
            Step::BindNode { source, target } => write!(f, "bind-node {source} {target}"),
            Step::BindSocket { source, target } => write!(f, "bind-socket {source} {target}"),
            Step::BindRemount { target, flags, recursive } => {
                write!(f, "{} {target} {}", if *recursive { "remount-rec" } else { "remount" }, Flags(*flags))
            }
            Step::Mount { fstype, target, flags, data } => {
                write!(f, "mount {} {target} {}", text(fstype), Flags(*flags))?;
                if !data.as_bytes().is_empty() {
                    write!(f, " {data}")?;
                }
                Ok(())
            }
            Step::Mkdir { path, mode } => write!(f, "mkdir {path} {mode:o}"),
            Step::Beneath(at) => {
                let (root, path) = (&at.root, &at.path);
                match &at.op {
                    Beneath::Mkdir { mode } => write!(f, "mkdir-beneath {root} {path} {mode:o}"),
                    Beneath::Bind { source } => write!(f, "bind-beneath {source} {root} {path}"),
                    Beneath::Mount { fstype, flags, data } => write!(f, "mount-beneath {} {root} {path} {} {data}", text(fstype), Flags(*flags)),
                    Beneath::Remount { flags } => {
                        write!(f, "remount-beneath {root} {path} {}", Flags(*flags))
                    }
                    Beneath::Touch { mode } => write!(f, "touch-beneath {root} {path} {mode:o}"),
                    Beneath::BindSocket { source } => {
                        write!(f, "bind-socket-beneath {source} {root} {path}")
                    }
                }
            }
            Step::Touch { path, mode } => write!(f, "touch {path} {mode:o}"),
            Step::Symlink { target, link } => write!(f, "symlink {link} -> {}", text(target)),
            Step::PivotRoot { new_root } => write!(f, "pivot_root {new_root}"),
            Step::Hostname { name } => write!(f, "hostname {name}"),
            Step::ReadOnly { path } => write!(f, "read-only {}", text(path)),
            Step::MaskFile { path } => write!(f, "mask-file {}", text(path)),
            Step::MaskDir { path } => write!(f, "mask-dir {}", text(path)),
        }
    }
}

/// A plan's mount sequence: at most [`STEPS_MAX`] steps (the builder
/// refuses more). On the heap at its exact length, not a fixed-capacity
/// array: a step is about 400 bytes and a plan holds a few dozen, so a full
/// capacity per prepared container would be mostly empty memory the
/// supervisor keeps for as long as the release runs.
pub type Steps = Vec<Step>;

/// Errors here: (field, reason).
pub type Error = (std::string::String, std::string::String);

/// Everything the sequence depends on.
pub struct Input<'a> {
    /// Host path of the read-only rootfs, absolute, no trailing `/`.
    pub root: &'a str,
    /// Container name (hostname, volume directory).
    pub container: &'a str,
    /// The container has its own network namespace.
    pub own_net: bool,
    /// Inside uid/gid owning manifest tmpfs mounts.
    pub uid: u32,
    pub gid: u32,
    pub writable: &'a [Writable],
    pub nodes: &'a [Node],
    /// Host path of the notify socket to bind at [`crate::common::names::NOTIFY_INSIDE`].
    pub notify: Option<&'a CPath>,
    /// Bind berth's status directory read-only at
    /// [`crate::common::names::STATUS_INSIDE`] (the manifest's `status_view`).
    pub status_view: bool,
}

struct Builder<'a> {
    root: &'a str,
    steps: Steps,
    /// Targets of the volume mounts: paths beneath them take
    /// [`Step::Beneath`].
    volumes: heapless::Vec<&'a str, { crate::release::manifest::MOUNTS_MAX + 1 }>,
}

fn err(field: &str, reason: impl Into<std::string::String>) -> Error {
    (field.to_owned(), reason.into())
}

impl Builder<'_> {
    fn push(&mut self, s: Step) -> Result<(), Error> {
        if self.steps.len() >= STEPS_MAX {
            return Err(err("(plan)", format!("more than {STEPS_MAX} mount steps")));
        }
        self.steps.push(s);
        Ok(())
    }

    /// `<root><inside>`.
    fn at(&self, inside: &str, field: &str) -> Result<CPath, Error> {
        CPath::concat(&[self.root, inside]).ok_or_else(|| err(field, format!("path `{}{inside}` is too long", self.root)))
    }

    /// `Some(step)` when `inside` lies beneath a volume.
    fn beneath(&self, inside: &str, op: Beneath) -> Result<Option<Step>, Error> {
        if !beneath_volume(inside, &self.volumes) {
            return Ok(None);
        }
        let (parent, leaf) = inside.rsplit_once('/').unwrap_or(("", inside));
        let c = |s: &str| CPath::new(s).ok_or_else(|| err(inside, "path too long"));
        let root = c(self.root)?;
        let at = At { root, path: c(inside)?, parent: c(if parent.is_empty() { "/" } else { parent })?, leaf: c(leaf)?, op };
        Ok(Some(Step::Beneath(Box::new(at))))
    }

    fn mkdir(&mut self, inside: &str, mode: u32) -> Result<(), Error> {
        if let Some(s) = self.beneath(inside, Beneath::Mkdir { mode })? {
            return self.push(s);
        }
        let path = self.at(inside, inside)?;
        self.push(Step::Mkdir { path, mode })
    }

    fn mount(&mut self, fstype: &'static CStr, inside: &str, flags: MsFlags, data: &str) -> Result<(), Error> {
        self.mkdir(inside, 0o755)?;
        let data = CData::new(data).ok_or_else(|| err(inside, "mount data too long"))?;
        if let Some(s) = self.beneath(inside, Beneath::Mount { fstype, flags, data: data.clone() })? {
            return self.push(s);
        }
        let target = self.at(inside, inside)?;
        self.push(Step::Mount { fstype, target, flags, data })
    }

    fn remount(&mut self, inside: &str, flags: MsFlags, recursive: bool) -> Result<(), Error> {
        if !recursive {
            if let Some(s) = self.beneath(inside, Beneath::Remount { flags })? {
                return self.push(s);
            }
        }
        let target = self.at(inside, inside)?;
        self.push(Step::BindRemount { target, flags, recursive })
    }

    /// Bind the host directory `source` onto `inside`.
    fn bind(&mut self, source: CPath, inside: &str, field: &str) -> Result<(), Error> {
        if let Some(s) = self.beneath(inside, Beneath::Bind { source: source.clone() })? {
            return self.push(s);
        }
        let target = self.at(inside, field)?;
        self.push(Step::Bind { source, target, recursive: false })
    }
}

fn data(args: core::fmt::Arguments<'_>) -> Result<heapless::String<80>, Error> {
    let mut s = heapless::String::new();
    core::fmt::write(&mut s, args).map_err(|_| err("(plan)", "mount data too long"))?;
    Ok(s)
}

/// `nr_inodes` of a tmpfs of `size` bytes ([`crate::confine::budget::tmpfs_inodes`]).
fn inodes(size: u64) -> u64 {
    crate::confine::budget::tmpfs_inodes(size)
}

/// The whole sequence, in the order of the module docs.
pub fn sequence(input: &Input<'_>) -> Result<Steps, Error> {
    let volumes = input.writable.iter().filter(|w| matches!(w.source, Source::Volume(_))).map(|w| w.target.as_str()).collect();
    let mut b = Builder { root: input.root, steps: Steps::new(), volumes };
    let root = b.at("", "rootfs")?;
    let slash = CPath::new("/").ok_or_else(|| err("rootfs", "bad path"))?;

    // 1. Propagation and the root bind.
    b.push(Step::Propagation { target: slash.clone(), flags: MsFlags::MS_REC | MsFlags::MS_SLAVE })?;
    b.push(Step::Bind { source: root.clone(), target: root.clone(), recursive: false })?;
    // 2. API filesystems.
    b.api_filesystems(input.own_net)?;
    // 3. Writable mounts, then the status view over them.
    for w in input.writable {
        b.writable(w, input)?;
    }
    if input.status_view {
        b.status_view()?;
    }
    // 4. /dev nodes, the notify socket, symlinks, /dev read-only.
    b.dev_nodes(input.nodes)?;
    if let Some(source) = input.notify {
        b.notify_socket(source)?;
    }
    for (link, target) in SYMLINKS {
        let link = b.at(link, link)?;
        b.push(Step::Symlink { target, link })?;
    }
    b.remount("/dev", RO_SAFE, false)?;
    // 5. Pivot, hostname, protect /proc and /sys, root read-only.
    b.pivot_and_protect(root, input.container)?;
    b.push(Step::BindRemount { target: slash, flags: MsFlags::MS_RDONLY | NOSUID | MsFlags::MS_NODEV, recursive: false })?;
    let mut steps = b.steps;
    steps.shrink_to_fit();
    Ok(steps)
}

/// The phases of [`sequence`], each appending its steps.
impl Builder<'_> {
    /// `/proc`, `/dev` and its API mounts, and `/sys`: fresh with an own
    /// network namespace, else the host's bound read-only throughout.
    fn api_filesystems(&mut self, own_net: bool) -> Result<(), Error> {
        self.mount(c"proc", "/proc", SAFE, "")?;
        self.mount(c"tmpfs", "/dev", SAFE, &data(format_args!("mode=755,size={DEV_SIZE},nr_inodes={}", inodes(DEV_SIZE)))?)?;
        self.mount(c"devpts", "/dev/pts", NOSUID | MsFlags::MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620")?;
        self.mount(c"tmpfs", "/dev/shm", SAFE, &data(format_args!("mode=1777,size={SHM_SIZE},nr_inodes={}", inodes(SHM_SIZE)))?)?;
        self.mount(c"mqueue", "/dev/mqueue", SAFE, "")?;
        if own_net {
            return self.mount(c"sysfs", "/sys", RO_SAFE, "");
        }
        // sysfs cannot be mounted fresh in a user namespace that does not own
        // the network namespace: bind the host's, read-only throughout.
        self.mkdir("/sys", 0o755)?;
        let source = CPath::new("/sys").ok_or_else(|| err("/sys", "bad path"))?;
        let target = self.at("/sys", "/sys")?;
        self.push(Step::Bind { source, target, recursive: true })?;
        self.remount("/sys", RO_SAFE, true)
    }

    /// One writable mount: a tmpfs (the default `/tmp` world-writable, the
    /// manifest's owned by the container's uid), or a volume bound from the
    /// data partition and remounted with the mount's flags.
    fn writable(&mut self, w: &Writable, input: &Input<'_>) -> Result<(), Error> {
        let flags = if w.exec { NOSUID | MsFlags::MS_NODEV } else { SAFE };
        match &w.source {
            Source::Tmpfs(size) => {
                let d = if w.target.as_str() == "/tmp" {
                    data(format_args!("mode=1777,size={size},nr_inodes={}", inodes(*size)))?
                } else {
                    data(format_args!("mode=0755,uid={},gid={},size={size},nr_inodes={}", input.uid, input.gid, inodes(*size)))?
                };
                self.mount(c"tmpfs", &w.target, flags, &d)
            }
            Source::Volume(v) => {
                self.mkdir(&w.target, 0o755)?;
                let source =
                    volume_path(input.container, v).ok_or_else(|| err(&w.field, format!("volume `{v}` of `{}` has no valid path", input.container)))?;
                self.bind(source, &w.target, &w.field)?;
                self.remount(&w.target, flags, false)
            }
        }
    }

    /// The status view: berth's status directory, read-only, over a
    /// directory the image (or a writable mount above it) provides.
    fn status_view(&mut self) -> Result<(), Error> {
        let inside = crate::common::names::STATUS_INSIDE;
        self.mkdir(inside, 0o755)?;
        let source = CPath::new(crate::common::names::STATUS_DIR).ok_or_else(|| err("status_view", "bad path"))?;
        self.bind(source, inside, "status_view")?;
        self.remount(inside, RO_SAFE, false)
    }

    /// Each `/dev` node: its parent directories below `/dev`
    /// (`/dev/gpio/chip0`) once each, an empty file, the node bound onto it,
    /// the bind remounted read-only.
    fn dev_nodes(&mut self, nodes: &[Node]) -> Result<(), Error> {
        let mut made: heapless::Vec<CPath, { super::devices::NODES_MAX }> = heapless::Vec::new();
        for n in nodes {
            let path = n.path.as_str();
            let mut end = "/dev".len();
            while let Some(i) = path.get(end + 1..).and_then(|r| r.find('/')) {
                end += 1 + i;
                let dir = path.get(..end).unwrap_or(path);
                let at = self.at(dir, dir)?;
                if !made.contains(&at) {
                    self.push(Step::Mkdir { path: at.clone(), mode: 0o755 })?;
                    let _ = made.push(at);
                }
            }
            let target = self.at(path, path)?;
            self.push(Step::Touch { path: target.clone(), mode: 0o666 })?;
            self.push(Step::BindNode { source: n.host.clone(), target })?;
            self.remount(path, MsFlags::MS_RDONLY | NOSUID | MsFlags::MS_NOEXEC, false)?;
        }
        Ok(())
    }

    /// The notify socket `source` bound onto an empty file at
    /// [`crate::common::names::NOTIFY_INSIDE`] (beneath a volume when a
    /// volume covers it), remounted read-only.
    fn notify_socket(&mut self, source: &CPath) -> Result<(), Error> {
        let inside = crate::common::names::NOTIFY_INSIDE;
        if let Some(touch) = self.beneath(inside, Beneath::Touch { mode: 0o666 })? {
            self.push(touch)?;
            if let Some(bind) = self.beneath(inside, Beneath::BindSocket { source: source.clone() })? {
                self.push(bind)?;
            }
        } else {
            let target = self.at(inside, inside)?;
            self.push(Step::Touch { path: target.clone(), mode: 0o666 })?;
            self.push(Step::BindSocket { source: source.clone(), target })?;
        }
        self.remount(inside, MsFlags::MS_RDONLY | NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC, false)
    }

    /// `pivot_root` into `root`, the hostname, then the read-only and the
    /// masked paths of `/proc` and `/sys`.
    fn pivot_and_protect(&mut self, root: CPath, container: &str) -> Result<(), Error> {
        self.push(Step::PivotRoot { new_root: root })?;
        let name = CHost::new(container).ok_or_else(|| err("name", "not a hostname"))?;
        self.push(Step::Hostname { name })?;
        for path in READ_ONLY {
            self.push(Step::ReadOnly { path })?;
        }
        for (path, kind) in MASKED {
            self.push(match kind {
                Kind::File => Step::MaskFile { path },
                Kind::Dir => Step::MaskDir { path },
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
