//! The writable mounts of a container: the manifest's (each checked: its
//! target, exactly one source, `exec` on a tmpfs only, no target or volume
//! twice) and the default `/tmp`, parents before children; and where a
//! volume lives on the host. Pure: it must not touch the filesystem (the
//! volume directories are made by [`crate::confine::container::prepare`]).

use crate::release::manifest::Mount;

use super::super::cstr::CPath;
use super::{Error, TMP_SIZE, VOLUMES};

/// What a mount in the container holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A fresh tmpfs of this many bytes.
    Tmpfs(u64),
    /// `/data/volumes/<container>/<name>`.
    Volume(crate::release::manifest::Name),
}

/// One writable mount, from the manifest or the default `/tmp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Writable {
    /// Absolute path inside the container.
    pub target: crate::release::manifest::Path,
    pub source: Source,
    /// Mounted without `noexec`: the manifest's `exec = true`, on a tmpfs
    /// only. The default `/tmp` never.
    pub exec: bool,
    /// The manifest field it comes from (for errors).
    pub field: heapless::String<24>,
}

/// A container path mounts may use: absolute, below `/`, plain components,
/// not on or under the API filesystems berth mounts.
fn valid_target(t: &str) -> bool {
    let Some(rest) = t.strip_prefix('/') else {
        return false;
    };
    let first = rest.split('/').next().unwrap_or("");
    !rest.is_empty()
        && rest.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
        && !["proc", "dev", "sys"].contains(&first)
        && !t.bytes().any(|b| b == 0 || b.is_ascii_control())
}

/// The writable mounts: the manifest's (each checked), and `/tmp` unless the
/// manifest mounts `/tmp` itself; parents before children.
pub fn writable(mounts: &[Mount]) -> Result<heapless::Vec<Writable, { crate::release::manifest::MOUNTS_MAX + 1 }>, Error> {
    let mut out = heapless::Vec::<Writable, { crate::release::manifest::MOUNTS_MAX + 1 }>::new();
    let too_many = || ("mounts".to_owned(), "too many mounts".to_owned());
    for (i, m) in mounts.iter().enumerate() {
        let f = |s: &str| format!("mounts[{i}].{s}");
        if !valid_target(&m.target) {
            return Err((f("target"), format!("`{}` must be an absolute path of plain components, not under /proc, /dev or /sys", m.target)));
        }
        if mounts.iter().take(i).any(|o| o.target == m.target) {
            return Err((f("target"), format!("`{}` is mounted twice", m.target)));
        }
        let source = match (m.tmpfs_size, &m.volume) {
            (Some(size), None) if size > 0 => Source::Tmpfs(size),
            (None, Some(v)) if crate::release::manifest::valid_name(v) => Source::Volume(v.clone()),
            _ => return Err((format!("mounts[{i}]"), "needs exactly one of tmpfs_size (> 0) and a volume name".into())),
        };
        if m.exec && matches!(source, Source::Volume(_)) {
            return Err((f("exec"), "only a tmpfs may be exec: the data partition is noexec".into()));
        }
        if let Source::Volume(v) = &source {
            if mounts.iter().take(i).any(|o| o.volume.as_ref() == Some(v)) {
                return Err((f("volume"), format!("volume `{v}` is mounted twice")));
            }
        }
        let mut field = heapless::String::new();
        let _ = core::fmt::write(&mut field, format_args!("mounts[{i}]"));
        out.push(Writable { target: m.target.clone(), source, exec: m.exec, field }).map_err(|_| too_many())?;
    }
    if !out.iter().any(|w| w.target.as_str() == "/tmp") {
        let mut target = crate::release::manifest::Path::new();
        let _ = target.push_str("/tmp");
        let mut field = heapless::String::new();
        let _ = field.push_str("(default /tmp)");
        out.push(Writable { target, source: Source::Tmpfs(TMP_SIZE), exec: false, field }).map_err(|_| too_many())?;
    }
    // Parents first: fewer components first, stable otherwise.
    out.sort_by_key(|w| w.target.split('/').count());
    Ok(out)
}

/// The host directory of `container`'s volume `volume`:
/// `/data/volumes/<container>/<volume>`. `None` unless both are container
/// names (plain components) and the path fits.
pub fn volume_path(container: &str, volume: &str) -> Option<CPath> {
    let ok = |s: &str| crate::release::manifest::valid_name(s) && s.len() <= crate::release::manifest::NAME_MAX;
    if !ok(container) || !ok(volume) {
        return None;
    }
    CPath::concat(&[VOLUMES, "/", container, "/", volume])
}
