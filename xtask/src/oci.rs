//! OCI import: an OCI image layout directory (`index.json`, `blobs/sha256/..`)
//! or a `docker save` tarball (`manifest.json` and layer tars) becomes a
//! berth image (squashfs + dm-verity tree, as `image.rs` builds them) and a
//! pre-filled manifest.
//!
//! Layers are applied in order into a staging directory, as overlayfs would
//! show them: `.wh.NAME` removes NAME of the lower layers, `.wh..wh..opq`
//! hides everything the lower layers had in its directory. The staging tree
//! never decides ownership or modes: every path's mode, uid and gid from the
//! layers is written into a mksquashfs pseudo-file definition (`m` lines), so
//! the image carries them exactly, without needing root and without
//! `-all-root`. Staged files are kept readable for mksquashfs.
//!
//! Nothing the image asks for is dropped silently: what berth does not take
//! from an image (device nodes, file capabilities, exposed ports, volumes,
//! health checks, unknown config keys, an unresolvable user) is reported as a
//! note, and foreign layer types and a platform the board cannot run are
//! errors. Layers may be plain, gzip or zstd tars. Blob digests are checked
//! before a blob is used, and each layer's uncompressed tar against the
//! config's `diff_ids` as it is applied. Reading the image's JSON into the
//! image spec's types is [`layout`]'s.

mod decode;
mod layout;

use crate::image::{self, Image};
use crate::verity::hex;
use berth::release::board::Arch;
use decode::{Hashing, ZstdFrames};
use layout::{Compression, Layer, Source};
use oci_spec::image::ImageConfiguration;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

/// An imported image: the built file, what its config says, and the notes.
pub struct Imported {
    pub image: Image,
    pub config: Prefill,
    pub notes: Vec<String>,
}

/// What the image config gives a manifest.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Prefill {
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub stop_signal: Option<String>,
    pub version: Option<String>,
}

/// Import `src` (a layout directory or a `docker save` tar) into `out`.
/// `arch`: the board's, when known; picks the platform of a multi-platform
/// index and is checked against the image config.
pub fn import(src: &Path, arch: Option<Arch>, out: &Path) -> Result<Imported, String> {
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let base = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "image".into());
    let work = parent.join(format!(".{base}.oci.{}", std::process::id()));
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let r = import_in(src, arch, out, &work);
    let cleanup = fs::remove_dir_all(&work);
    let imported = r?;
    cleanup.map_err(|e| format!("{}: removing the staging directory: {e}", work.display()))?;
    Ok(imported)
}

fn import_in(src: &Path, arch: Option<Arch>, out: &Path, work: &Path) -> Result<Imported, String> {
    let root = work.join("root");
    let (source, mut tree, mut notes) = stage(src, arch, work, &root)?;
    let pseudo = work.join("pseudo");
    let text = tree.pseudo()?;
    notes.append(&mut tree.notes);
    fs::write(&pseudo, text).map_err(|e| format!("{}: {e}", pseudo.display()))?;
    let image = image::from_dir_with(&root, out, Some(&pseudo))?;
    let prefill = prefill(&source.config, &source.raw_config, &root, &mut notes)?;
    Ok(Imported { image, config: prefill, notes })
}

/// Read the image `src` and apply its layers into `root` (a new directory):
/// the image read, the merged tree and the notes so far.
fn stage(src: &Path, arch: Option<Arch>, work: &Path, root: &Path) -> Result<(Source, Tree, Vec<String>), String> {
    let dir = if src.is_dir() {
        src.to_path_buf()
    } else if src.is_file() {
        let d = work.join("src");
        let f = fs::File::open(src).map_err(|e| format!("{}: {e}", src.display()))?;
        tar::Archive::new(BufReader::new(f)).unpack(&d).map_err(|e| format!("{}: unpacking: {e}", src.display()))?;
        d
    } else {
        return Err(format!("{}: neither an OCI layout directory nor a tar file", src.display()));
    };
    let mut notes = Vec::new();
    let source = if dir.join("index.json").is_file() {
        layout::oci_layout(&dir, arch, &mut notes)?
    } else if dir.join("manifest.json").is_file() {
        layout::docker_save(&dir, &mut notes)?
    } else {
        return Err(format!("{}: no index.json (OCI layout) or manifest.json (docker save)", src.display()));
    };
    layout::check_platform(&source.config, arch)?;
    let mut tree = Tree::new(root)?;
    for (i, layer) in source.layers.iter().enumerate() {
        tree.apply_layer(layer, i + 1).map_err(|e| format!("layer {} ({}): {e}", i + 1, layer.what))?;
    }
    tree.mount_points()?;
    Ok((source, tree, notes))
}

/// A path from a tar or a manifest, relative, without `.`; `..` is refused.
fn normalize(p: &str) -> Result<String, String> {
    let mut parts = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(format!("path `{p}` leaves the root")),
            c => parts.push(c),
        }
    }
    Ok(parts.join("/"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
    Symlink,
}

#[derive(Debug, Clone, Copy)]
struct Node {
    kind: Kind,
    mode: u32,
    uid: u64,
    gid: u64,
    /// The layer (from 1) that last wrote it.
    layer: usize,
}

/// The merged tree: files on disk under `root`, metadata here.
struct Tree {
    root: PathBuf,
    nodes: BTreeMap<String, Node>,
    notes: Vec<String>,
}

fn parent_of(p: &str) -> &str {
    p.rsplit_once('/').map(|(d, _)| d).unwrap_or("")
}

fn under(p: &str, dir: &str) -> bool {
    dir.is_empty() && !p.is_empty() || p.strip_prefix(dir).is_some_and(|r| r.starts_with('/'))
}

impl Tree {
    fn new(root: &Path) -> Result<Tree, String> {
        fs::create_dir_all(root).map_err(|e| format!("{}: {e}", root.display()))?;
        let mut nodes = BTreeMap::new();
        nodes.insert(String::new(), Node { kind: Kind::Dir, mode: 0o755, uid: 0, gid: 0, layer: 0 });
        Ok(Tree { root: root.to_path_buf(), nodes, notes: Vec::new() })
    }

    fn disk(&self, p: &str) -> PathBuf {
        self.root.join(p)
    }

    /// Remove `p` and everything beneath it, on disk and here.
    fn remove(&mut self, p: &str) -> Result<(), String> {
        let d = self.disk(p);
        if let Ok(md) = fs::symlink_metadata(&d) {
            let r = if md.is_dir() { fs::remove_dir_all(&d) } else { fs::remove_file(&d) };
            r.map_err(|e| format!("{}: {e}", d.display()))?;
        }
        self.nodes.retain(|k, _| k != p && !under(k, p));
        Ok(())
    }

    /// Remove what lower layers (before `layer`) have beneath `dir`.
    fn opaque(&mut self, dir: &str, layer: usize) -> Result<(), String> {
        let lower: Vec<String> = self.nodes.iter().filter(|(k, n)| under(k, dir) && n.layer < layer).map(|(k, _)| k.clone()).collect();
        for k in lower {
            if self.nodes.contains_key(&k) {
                self.remove(&k)?;
            }
        }
        Ok(())
    }

    /// Every ancestor of `p` must be a directory; missing ones are made (0755, root).
    fn parents(&mut self, p: &str, layer: usize) -> Result<(), String> {
        let mut prefix = String::new();
        let parts: Vec<&str> = p.split('/').collect();
        for c in parts.iter().take(parts.len().saturating_sub(1)) {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(c);
            match self.nodes.get(&prefix).map(|n| n.kind) {
                Some(Kind::Dir) => {}
                Some(Kind::Symlink) => return Err(format!("/{p}: its parent /{prefix} is a symbolic link (not followed)")),
                Some(Kind::File) => return Err(format!("/{p}: its parent /{prefix} is a file")),
                None => {
                    let d = self.disk(&prefix);
                    fs::create_dir(&d).map_err(|e| format!("{}: {e}", d.display()))?;
                    self.nodes.insert(prefix.clone(), Node { kind: Kind::Dir, mode: 0o755, uid: 0, gid: 0, layer });
                }
            }
        }
        Ok(())
    }

    fn apply_layer(&mut self, layer: &Layer, n: usize) -> Result<(), String> {
        let open = || fs::File::open(&layer.path).map_err(|e| format!("{}: {e}", layer.path.display()));
        let compression = match layer.compression {
            Compression::Sniff => {
                let mut magic = [0u8; 4];
                let got = open()?.read(&mut magic).map_err(|e| e.to_string())?;
                match magic.get(..got) {
                    Some([0x1f, 0x8b, ..]) => Compression::Gzip,
                    Some([0x28, 0xb5, 0x2f, 0xfd]) => Compression::Zstd,
                    _ => Compression::Plain,
                }
            }
            c => c,
        };
        let f = BufReader::new(open()?);
        let reader: Box<dyn Read> = match compression {
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(f)),
            Compression::Zstd => Box::new(ZstdFrames::new(f)?),
            _ => Box::new(f),
        };
        let mut archive = tar::Archive::new(Hashing { inner: reader, hash: Sha256::new() });
        for entry in archive.entries().map_err(|e| e.to_string())? {
            let mut entry = entry.map_err(|e| e.to_string())?;
            self.apply_entry(&mut entry, n)?;
        }
        // What follows the tar's end marker counts towards its digest too.
        let mut rest = archive.into_inner();
        std::io::copy(&mut rest, &mut std::io::sink()).map_err(|e| e.to_string())?;
        let got = hex(&rest.hash.finalize());
        match &layer.diff_id {
            Some(want) if *want != got => Err(format!("its uncompressed tar is sha256:{got}, the config's diff_id says sha256:{want}")),
            _ => Ok(()),
        }
    }

    fn apply_entry<R: Read>(&mut self, entry: &mut tar::Entry<R>, layer: usize) -> Result<(), String> {
        let raw = entry.path().map_err(|e| e.to_string())?.to_string_lossy().into_owned();
        let p = normalize(&raw)?;
        let name = p.rsplit('/').next().unwrap_or("");
        let dir = parent_of(&p).to_string();
        if name == ".wh..wh..opq" {
            return self.opaque(&dir, layer);
        }
        if let Some(hidden) = name.strip_prefix(".wh.") {
            if hidden.starts_with(".wh.") {
                self.notes.push(format!("whiteout metadata /{p} ignored"));
                return Ok(());
            }
            let target = if dir.is_empty() { hidden.to_string() } else { format!("{dir}/{hidden}") };
            if self.nodes.get(&target).is_some_and(|n| n.layer < layer) {
                self.remove(&target)?;
            }
            return Ok(());
        }
        if p.is_empty() {
            let h = entry.header();
            let root = Node { kind: Kind::Dir, mode: h.mode().unwrap_or(0o755) & 0o7777, uid: h.uid().unwrap_or(0), gid: h.gid().unwrap_or(0), layer };
            self.nodes.insert(String::new(), root);
            return Ok(());
        }
        if let Ok(Some(exts)) = entry.pax_extensions() {
            for ext in exts.flatten() {
                if ext.key().is_ok_and(|k| k == "SCHILY.xattr.security.capability") {
                    self.notes.push(format!("/{p} has file capabilities; berth images keep no extended attributes: grant `capabilities` in the manifest"));
                }
            }
        }
        let h = entry.header();
        let (mode, uid, gid) = (h.mode().map_err(|e| e.to_string())? & 0o7777, h.uid().map_err(|e| e.to_string())?, h.gid().map_err(|e| e.to_string())?);
        let ty = h.entry_type();
        self.parents(&p, layer)?;
        let existing = self.nodes.get(&p).copied();
        if ty.is_dir() {
            match existing {
                Some(n) if n.kind == Kind::Dir => {}
                Some(_) => {
                    self.remove(&p)?;
                    fs::create_dir(self.disk(&p)).map_err(|e| format!("/{p}: {e}"))?;
                }
                None => fs::create_dir(self.disk(&p)).map_err(|e| format!("/{p}: {e}"))?,
            }
            self.nodes.insert(p, Node { kind: Kind::Dir, mode, uid, gid, layer });
            return Ok(());
        }
        let kind = if ty.is_file() || ty == tar::EntryType::Continuous || ty.is_gnu_sparse() {
            Kind::File
        } else if ty.is_symlink() {
            Kind::Symlink
        } else if ty.is_hard_link() {
            let target = normalize(&entry.link_name().map_err(|e| e.to_string())?.map(|l| l.to_string_lossy().into_owned()).unwrap_or_default())?;
            let Some(t) = self.nodes.get(&target).copied().filter(|t| t.kind != Kind::Dir) else {
                return Err(format!("/{p}: hard link to /{target}, which is not a file of the image"));
            };
            if existing.is_some() {
                self.remove(&p)?;
            }
            fs::hard_link(self.disk(&target), self.disk(&p)).map_err(|e| format!("/{p}: {e}"))?;
            self.nodes.insert(p, Node { layer, ..t });
            return Ok(());
        } else if ty.is_character_special() || ty.is_block_special() || ty.is_fifo() {
            self.notes.push(format!("/{p}: a device node or fifo is not put in the image (berth makes each container's /dev; grant hardware with `devices`)"));
            return Ok(());
        } else {
            self.notes.push(format!("/{p}: tar entry type {:?} is not supported; left out", ty));
            return Ok(());
        };
        if existing.is_some() {
            self.remove(&p)?;
        }
        let d = self.disk(&p);
        if kind == Kind::Symlink {
            let target = entry.link_name().map_err(|e| e.to_string())?.ok_or_else(|| format!("/{p}: symbolic link without a target"))?;
            std::os::unix::fs::symlink(&target, &d).map_err(|e| format!("/{p}: {e}"))?;
        } else {
            let mut out = fs::OpenOptions::new().write(true).create_new(true).open(&d).map_err(|e| format!("/{p}: {e}"))?;
            std::io::copy(entry, &mut out).map_err(|e| format!("/{p}: {e}"))?;
            if mode & 0o6000 != 0 {
                self.notes.push(format!(
                    "/{p} is set{}id: such bits never take effect in a berth container (no_new_privs)",
                    if mode & 0o4000 != 0 { "u" } else { "g" }
                ));
            }
        }
        self.nodes.insert(p, Node { kind, mode: if kind == Kind::Symlink { 0o777 } else { mode }, uid, gid, layer });
        Ok(())
    }

    /// berth mounts over /dev, /proc, /sys and /tmp: they must exist in the image.
    fn mount_points(&mut self) -> Result<(), String> {
        let mut added = Vec::new();
        for d in ["dev", "proc", "sys", "tmp"] {
            match self.nodes.get(d).map(|n| n.kind) {
                Some(Kind::Dir) => {}
                Some(_) => return Err(format!("/{d} is not a directory; berth mounts over it")),
                None => {
                    fs::create_dir(self.disk(d)).map_err(|e| format!("/{d}: {e}"))?;
                    let mode = if d == "tmp" { 0o1777 } else { 0o755 };
                    self.nodes.insert(d.to_string(), Node { kind: Kind::Dir, mode, uid: 0, gid: 0, layer: 0 });
                    added.push(format!("/{d}"));
                }
            }
        }
        if !added.is_empty() {
            self.notes.push(format!("added the empty mount points {} (berth mounts over them)", added.join(", ")));
        }
        Ok(())
    }

    /// mksquashfs pseudo definitions: every path's mode, uid and gid. The
    /// root directory takes them from the staging directory itself (a pseudo
    /// definition cannot name `/`): set here, the owner only when allowed.
    fn pseudo(&mut self) -> Result<String, String> {
        use std::os::unix::fs::PermissionsExt;
        if let Some(r) = self.nodes.get("").copied() {
            fs::set_permissions(&self.root, fs::Permissions::from_mode(r.mode)).map_err(|e| format!("{}: {e}", self.root.display()))?;
            let ids = (u32::try_from(r.uid).ok(), u32::try_from(r.gid).ok());
            if std::os::unix::fs::chown(&self.root, ids.0, ids.1).is_err() {
                self.notes.push(format!("the image's / is owned by the builder, not {}:{} (building as root keeps it)", r.uid, r.gid));
            }
        }
        let mut s = String::new();
        for (p, n) in self.nodes.iter().filter(|(p, _)| !p.is_empty()) {
            if p.contains('\n') {
                return Err(format!("/{p:?}: a file name with a line break cannot be put in the image"));
            }
            let quoted = format!("/{p}").replace('\\', "\\\\").replace('"', "\\\"");
            s.push_str(&format!("\"{quoted}\" m {:o} {} {}\n", n.mode, n.uid, n.gid));
        }
        Ok(s)
    }
}

/// A regular file of the staged image (never followed through a symlink).
fn image_file(root: &Path, p: &str) -> Option<String> {
    let mut cur = root.to_path_buf();
    for c in p.split('/').filter(|c| !c.is_empty()) {
        cur.push(c);
        if fs::symlink_metadata(&cur).ok()?.file_type().is_symlink() {
            return None;
        }
    }
    fs::read_to_string(cur).ok()
}

/// `name:x:uid:gid:...` lines: the ids of a name (or of a numeric id's entry).
fn lookup(root: &Path, file: &str, who: &str) -> Option<(u32, u32)> {
    let text = image_file(root, file)?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        let (name, id, gid) = (f.first()?, f.get(2)?.parse().ok()?, f.get(3).and_then(|g| g.parse().ok()).unwrap_or(0));
        (*name == who || f.get(2) == Some(&who)).then_some((id, gid))
    })
}

/// The manifest fields from the image config; what does not fit is noted.
/// `raw`: the same config as JSON, for the fields the image spec does not name.
fn prefill(config: &ImageConfiguration, raw: &Value, root: &Path, notes: &mut Vec<String>) -> Result<Prefill, String> {
    let c = config.config().clone().unwrap_or_default();
    let mut p = Prefill { env: c.env().clone().unwrap_or_default(), ..Default::default() };
    p.argv = c.entrypoint().clone().unwrap_or_default();
    p.argv.extend(c.cmd().clone().unwrap_or_default());
    match p.argv.first().cloned() {
        None => notes.push("the config has no Entrypoint or Cmd: set entry.argv".into()),
        Some(a0) if !a0.starts_with('/') => {
            let path = p.env.iter().find_map(|e| e.strip_prefix("PATH=")).unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
            let found = path.split(':').map(|d| format!("{}/{a0}", d.trim_end_matches('/'))).find(|c| {
                let rel = c.trim_start_matches('/');
                fs::symlink_metadata(root.join(rel)).is_ok()
            });
            match found {
                Some(abs) => {
                    notes.push(format!("entry.argv[0] `{a0}` resolved through PATH to {abs}"));
                    if let Some(x) = p.argv.first_mut() {
                        *x = abs;
                    }
                }
                None => notes.push(format!("entry.argv[0] `{a0}` is not absolute and not found on PATH in the image: fix entry.argv")),
            }
        }
        Some(_) => {}
    }
    let wd = c.working_dir().as_deref().unwrap_or("");
    if !wd.is_empty() && wd != "/" {
        p.workdir = Some(wd.to_string());
    }
    let user = c.user().as_deref().unwrap_or("");
    if !user.is_empty() {
        let (u, g) = user.split_once(':').map(|(u, g)| (u, Some(g))).unwrap_or((user, None));
        let uid = u.parse::<u32>().ok().map(|n| (n, lookup(root, "etc/passwd", u).map(|x| x.1).unwrap_or(0))).or_else(|| lookup(root, "etc/passwd", u));
        match uid {
            None => notes.push(format!("user `{u}` is not numeric and not in the image's /etc/passwd: set entry.uid/gid")),
            Some((uid, primary)) => {
                p.uid = Some(uid);
                p.gid = match g {
                    None => Some(primary),
                    Some(g) => match g.parse::<u32>().ok().or_else(|| lookup(root, "etc/group", g).map(|x| x.0)) {
                        Some(n) => Some(n),
                        None => {
                            notes.push(format!("group `{g}` is not numeric and not in the image's /etc/group: set entry.gid"));
                            None
                        }
                    },
                };
                if !u.bytes().all(|b| b.is_ascii_digit()) {
                    notes.push(format!("user `{user}` resolved through the image's /etc/passwd to uid {uid}"));
                }
            }
        }
    }
    let sig = c.stop_signal().as_deref().unwrap_or("");
    if !sig.is_empty() {
        let name = if sig.starts_with("SIG") { sig.to_string() } else { format!("SIG{sig}") };
        if ["SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGPWR"].contains(&name.as_str()) {
            p.stop_signal = Some(name);
        } else {
            notes.push(format!("StopSignal `{sig}` is not one a manifest can choose; stop.signal left at SIGTERM"));
        }
    }
    p.version = c.labels().as_ref().and_then(|l| l.get("org.opencontainers.image.version")).cloned();
    for (k, v) in raw.get("config").and_then(Value::as_object).cloned().unwrap_or_default() {
        let set = match &v {
            Value::Null | Value::Bool(false) => false,
            Value::String(s) => !s.is_empty(),
            Value::Array(a) => !a.is_empty(),
            Value::Object(o) => !o.is_empty(),
            _ => true,
        };
        if !set {
            continue;
        }
        match k.as_str() {
            "Entrypoint" | "Cmd" | "Env" | "WorkingDir" | "User" | "StopSignal" | "Labels" | "ArgsEscaped" => {}
            "ExposedPorts" => {
                let mut ports = c.exposed_ports().clone().unwrap_or_default();
                ports.sort();
                notes.push(format!(
                    "ExposedPorts {ports:?} (information only): a container has its own network with loopback only unless the manifest says network = \"host\""
                ));
            }
            "Volumes" => {
                let mut targets = c.volumes().clone().unwrap_or_default();
                targets.sort();
                for t in targets {
                    notes.push(format!("volume {t}: add a [[mounts]] entry (target = \"{t}\", volume = NAME or tmpfs_size = BYTES)"));
                }
            }
            "Healthcheck" => notes.push(format!(
                "Healthcheck {}: not taken over; use the manifest's health = {{ command = [...] }} or {{ watchdog_ms = N }}",
                v.get("Test").map(|t| t.to_string()).unwrap_or_default()
            )),
            _ => notes.push(format!("config field {k} = {v} is not used by berth")),
        }
    }
    if p.uid.is_none() && user.is_empty() {
        notes.push("no User: the container runs as uid 0 inside its user namespace (no capabilities unless the manifest grants them)".into());
    }
    Ok(p)
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn toml_list(v: &[String]) -> String {
    format!("[{}]", v.iter().map(|s| toml_str(s)).collect::<Vec<_>>().join(", "))
}

/// A manifest pre-filled from the config, with `[build] oci = SOURCE` and the notes as comments.
pub fn manifest_text(name: &str, source: &str, p: &Prefill, notes: &[String]) -> String {
    let version = p.version.as_deref().filter(|v| !v.is_empty() && v.len() <= 32 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b".+_-".contains(&b)));
    let mut s = format!("# Pre-filled from the OCI image {source} by `cargo xtask image --oci`.\n");
    s.push_str(&format!("name = {}\nversion = {}\n", toml_str(name), toml_str(version.unwrap_or("1"))));
    if let Some(sig) = &p.stop_signal {
        s.push_str(&format!("stop = {{ signal = {} }}\n", toml_str(sig)));
    }
    s.push_str(&format!("\n[entry]\nargv = {}\n", toml_list(&p.argv)));
    if !p.env.is_empty() {
        s.push_str(&format!("env = {}\n", toml_list(&p.env)));
    }
    if let Some(w) = &p.workdir {
        s.push_str(&format!("workdir = {}\n", toml_str(w)));
    }
    if let Some(u) = p.uid {
        s.push_str(&format!("uid = {u}\n"));
    }
    if let Some(g) = p.gid {
        s.push_str(&format!("gid = {g}\n"));
    }
    s.push_str(&format!("\n[build]\noci = {}\n", toml_str(source)));
    if !notes.is_empty() {
        s.push_str("\n# Import notes:\n");
        for n in notes {
            s.push_str(&format!("# - {}\n", n.replace('\n', " ")));
        }
    }
    s
}

/// A container name from a path: lower-case `[a-z0-9-]`, at most 32 bytes.
pub fn name_from(path: &Path) -> String {
    let stem = path.file_stem().map(|s| s.to_string_lossy().to_lowercase()).unwrap_or_default();
    let s: String = stem.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let s = s.trim_matches('-').chars().take(32).collect::<String>();
    let s = s.trim_end_matches('-').to_string();
    if s.is_empty() {
        "app".into()
    } else {
        s
    }
}

/// Writing OCI layouts, for tests.
pub mod build;

#[cfg(test)]
mod tests;
