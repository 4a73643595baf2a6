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
//! note, and zstd layers, foreign layer types and a platform the board cannot
//! run are errors. Blob digests are checked before a blob is used.

use crate::image::{self, Image};
use crate::verity::hex;
use berth::release::board::Arch;
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
    let layout = if src.is_dir() {
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
    let (config, layers) = if layout.join("index.json").is_file() {
        oci_layout(&layout, arch, &mut notes)?
    } else if layout.join("manifest.json").is_file() {
        docker_save(&layout, &mut notes)?
    } else {
        return Err(format!("{}: no index.json (OCI layout) or manifest.json (docker save)", src.display()));
    };
    check_platform(&config, arch)?;
    let root = work.join("root");
    let mut tree = Tree::new(&root)?;
    for (i, layer) in layers.iter().enumerate() {
        tree.apply_layer(layer, i + 1).map_err(|e| format!("layer {} ({}): {e}", i + 1, layer.what))?;
    }
    tree.mount_points()?;
    let pseudo = work.join("pseudo");
    let text = tree.pseudo()?;
    notes.append(&mut tree.notes);
    fs::write(&pseudo, text).map_err(|e| format!("{}: {e}", pseudo.display()))?;
    let image = image::from_dir_with(&root, out, Some(&pseudo))?;
    let prefill = prefill(&config, &root, &mut notes)?;
    Ok(Imported { image, config: prefill, notes })
}

/// One layer blob and how it is compressed.
struct Layer {
    path: PathBuf,
    what: String,
}

/// The OCI platform names of a board architecture: (architecture, variant).
fn platform(arch: Arch) -> (&'static str, Option<&'static str>) {
    match arch {
        Arch::Aarch64 => ("arm64", None),
        Arch::Armv7 => ("arm", Some("v7")),
        Arch::X86_64 => ("amd64", None),
    }
}

fn read_json(path: &Path) -> Result<Value, String> {
    let text = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// `blobs/<alg>/<hex>` of a digest, after checking the blob's SHA-256.
fn blob(layout: &Path, digest: &str) -> Result<PathBuf, String> {
    let hexd = digest.strip_prefix("sha256:").ok_or_else(|| format!("digest `{digest}`: only sha256 is supported"))?;
    if hexd.len() != 64 || !hexd.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(format!("digest `{digest}` is not 64 lower-case hex digits"));
    }
    let p = layout.join("blobs").join("sha256").join(hexd);
    let f = fs::File::open(&p).map_err(|e| format!("blob {digest}: {e}"))?;
    let mut h = Sha256::new();
    let mut r = BufReader::new(f);
    std::io::copy(&mut r, &mut h).map_err(|e| format!("blob {digest}: {e}"))?;
    if hex(&h.finalize()) != hexd {
        return Err(format!("blob {digest}: its content does not have this digest"));
    }
    Ok(p)
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The image manifest an index leads to (nested indexes followed), chosen by platform.
fn pick_manifest(layout: &Path, index: &Value, arch: Option<Arch>, depth: u32) -> Result<Value, String> {
    let list = index.get("manifests").and_then(Value::as_array).cloned().unwrap_or_default();
    let wanted = arch.map(platform);
    let fits = |m: &Value| {
        let Some((a, variant)) = wanted else {
            return true;
        };
        let Some(p) = m.get("platform") else {
            return true;
        };
        str_of(p, "architecture") == a
            && (str_of(p, "os").is_empty() || str_of(p, "os") == "linux")
            && (variant.is_none() || str_of(p, "variant").is_empty() || Some(str_of(p, "variant")) == variant)
    };
    let candidates: Vec<&Value> = list.iter().filter(|m| fits(m)).collect();
    let chosen = match candidates.as_slice() {
        [one] => *one,
        [] => {
            let have: Vec<String> = list
                .iter()
                .map(|m| m.get("platform").map(|p| format!("{}/{}", str_of(p, "os"), str_of(p, "architecture"))).unwrap_or_else(|| "?".into()))
                .collect();
            let want = wanted.map(|(a, v)| format!("linux/{a}{}", v.map(|v| format!("/{v}")).unwrap_or_default())).unwrap_or_default();
            return Err(format!("the index has no image for {want} (it has: {})", have.join(", ")));
        }
        _ => {
            return Err(format!(
                "the index holds {} images{}; give --arch to pick the board's",
                candidates.len(),
                if wanted.is_some() { " for this platform" } else { "" }
            ))
        }
    };
    let digest = str_of(chosen, "digest");
    let m = read_json(&blob(layout, digest)?)?;
    let media = str_of(chosen, "mediaType");
    let nested = media.contains("image.index") || media.contains("manifest.list") || m.get("manifests").is_some();
    if nested {
        if depth >= 4 {
            return Err("indexes nested more than 4 deep".into());
        }
        return pick_manifest(layout, &m, arch, depth + 1);
    }
    Ok(m)
}

fn oci_layout(layout: &Path, arch: Option<Arch>, notes: &mut Vec<String>) -> Result<(Value, Vec<Layer>), String> {
    let index = read_json(&layout.join("index.json"))?;
    let manifest = pick_manifest(layout, &index, arch, 0)?;
    let config = read_json(&blob(layout, str_of(manifest.get("config").unwrap_or(&Value::Null), "digest"))?)?;
    let mut layers = Vec::new();
    for l in manifest.get("layers").and_then(Value::as_array).cloned().unwrap_or_default() {
        let media = str_of(&l, "mediaType");
        let digest = str_of(&l, "digest");
        if media.contains("zstd") {
            return Err(format!("layer {digest}: {media}: zstd-compressed layers are not supported (gzip or plain tar are)"));
        }
        if !media.contains("tar") {
            return Err(format!("layer {digest}: media type `{media}` is not a tar layer"));
        }
        if media.contains("nondistributable") || media.contains("foreign") {
            notes.push(format!("layer {digest} is marked non-distributable ({media}); it is taken from the layout"));
        }
        layers.push(Layer { path: blob(layout, digest)?, what: digest.to_string() });
    }
    Ok((config, layers))
}

fn docker_save(dir: &Path, notes: &mut Vec<String>) -> Result<(Value, Vec<Layer>), String> {
    let m = read_json(&dir.join("manifest.json"))?;
    let list = m.as_array().cloned().unwrap_or_default();
    let first = list.first().ok_or("manifest.json lists no image")?;
    if list.len() > 1 {
        notes.push(format!(
            "the tarball holds {} images; the first ({}) is imported",
            list.len(),
            first.get("RepoTags").map(|t| t.to_string()).unwrap_or_default()
        ));
    }
    let inside = |p: &str| -> Result<PathBuf, String> {
        let rel = normalize(p)?;
        Ok(dir.join(rel))
    };
    let config = read_json(&inside(str_of(first, "Config"))?)?;
    let mut layers = Vec::new();
    for l in first.get("Layers").and_then(Value::as_array).cloned().unwrap_or_default() {
        let p = l.as_str().unwrap_or("");
        layers.push(Layer { path: inside(p)?, what: p.to_string() });
    }
    Ok((config, layers))
}

/// The config's platform must be one the board runs.
fn check_platform(config: &Value, arch: Option<Arch>) -> Result<(), String> {
    let Some(arch) = arch else { return Ok(()) };
    let (a, v) = platform(arch);
    let have = str_of(config, "architecture");
    let os = str_of(config, "os");
    if (!os.is_empty() && os != "linux") || (!have.is_empty() && have != a) {
        return Err(format!("the image is for {os}/{have}, the board runs linux/{a}{}", v.map(|v| format!("/{v}")).unwrap_or_default()));
    }
    Ok(())
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
        let mut f = fs::File::open(&layer.path).map_err(|e| format!("{}: {e}", layer.path.display()))?;
        let mut magic = [0u8; 4];
        let got = f.read(&mut magic).map_err(|e| e.to_string())?;
        drop(f);
        let f = BufReader::new(fs::File::open(&layer.path).map_err(|e| e.to_string())?);
        let reader: Box<dyn Read> = match magic.get(..got) {
            Some([0x1f, 0x8b, ..]) => Box::new(flate2::read::MultiGzDecoder::new(f)),
            Some([0x28, 0xb5, 0x2f, 0xfd]) => return Err("zstd-compressed layers are not supported (gzip or plain tar are)".into()),
            _ => Box::new(f),
        };
        let mut archive = tar::Archive::new(reader);
        for entry in archive.entries().map_err(|e| e.to_string())? {
            let mut entry = entry.map_err(|e| e.to_string())?;
            self.apply_entry(&mut entry, n)?;
        }
        Ok(())
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
fn prefill(config: &Value, root: &Path, notes: &mut Vec<String>) -> Result<Prefill, String> {
    let c = config.get("config").cloned().unwrap_or(Value::Null);
    let strings = |k: &str| -> Vec<String> {
        c.get(k).and_then(Value::as_array).map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect()).unwrap_or_default()
    };
    let mut p = Prefill { env: strings("Env"), ..Default::default() };
    p.argv = strings("Entrypoint");
    p.argv.extend(strings("Cmd"));
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
    let wd = str_of(&c, "WorkingDir");
    if !wd.is_empty() && wd != "/" {
        p.workdir = Some(wd.to_string());
    }
    let user = str_of(&c, "User");
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
    let sig = str_of(&c, "StopSignal");
    if !sig.is_empty() {
        let name = if sig.starts_with("SIG") { sig.to_string() } else { format!("SIG{sig}") };
        if ["SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGPWR"].contains(&name.as_str()) {
            p.stop_signal = Some(name);
        } else {
            notes.push(format!("StopSignal `{sig}` is not one a manifest can choose; stop.signal left at SIGTERM"));
        }
    }
    if let Some(v) = config.pointer("/config/Labels/org.opencontainers.image.version").and_then(Value::as_str) {
        p.version = Some(v.to_string());
    }
    for (k, v) in c.as_object().cloned().unwrap_or_default() {
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
                let ports: Vec<&String> = v.as_object().map(|o| o.keys().collect()).unwrap_or_default();
                notes.push(format!(
                    "ExposedPorts {ports:?} (information only): a container has its own network with loopback only unless the manifest says network = \"host\""
                ));
            }
            "Volumes" => {
                for t in v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()).unwrap_or_default() {
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

/// Writing OCI layouts, for tests: layers of (path, what) entries.
pub mod build {
    use super::*;

    /// One tar entry of a test layer.
    pub enum Entry<'a> {
        Dir(&'a str, u32),
        File(&'a str, &'a [u8], u32, u64, u64),
        Symlink(&'a str, &'a str),
    }

    fn layer_tar(entries: &[Entry]) -> Result<Vec<u8>, String> {
        let mut b = tar::Builder::new(Vec::new());
        for e in entries {
            let mut h = tar::Header::new_ustar();
            h.set_uid(0);
            h.set_gid(0);
            let (path, data): (&str, &[u8]) = match e {
                Entry::Dir(p, mode) => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(*mode);
                    (p, &[])
                }
                Entry::File(p, data, mode, uid, gid) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(*mode);
                    h.set_uid(*uid);
                    h.set_gid(*gid);
                    (p, data)
                }
                Entry::Symlink(p, target) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_mode(0o777);
                    h.set_link_name(target).map_err(|e| e.to_string())?;
                    (p, &[])
                }
            };
            h.set_size(data.len() as u64);
            h.set_mtime(0);
            b.append_data(&mut h, path, data).map_err(|e| e.to_string())?;
        }
        b.into_inner().map_err(|e| e.to_string())
    }

    fn put(dir: &Path, bytes: &[u8]) -> Result<String, String> {
        let d = hex(&Sha256::digest(bytes));
        let p = dir.join("blobs").join("sha256");
        fs::create_dir_all(&p).map_err(|e| e.to_string())?;
        fs::write(p.join(&d), bytes).map_err(|e| e.to_string())?;
        Ok(format!("sha256:{d}"))
    }

    /// Write an OCI layout to `dir`: each layer a tar (gzip-compressed when
    /// `gzip[i]`), the config's `config` object as given, for `arch`.
    pub fn layout(dir: &Path, layers: &[(&[Entry], bool)], arch: &str, config: Value) -> Result<(), String> {
        use std::io::Write;
        let mut descs = Vec::new();
        for (entries, gz) in layers {
            let tar = layer_tar(entries)?;
            let (bytes, media) = if *gz {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(&tar).map_err(|e| e.to_string())?;
                (e.finish().map_err(|e| e.to_string())?, "application/vnd.oci.image.layer.v1.tar+gzip")
            } else {
                (tar, "application/vnd.oci.image.layer.v1.tar")
            };
            let size = bytes.len();
            descs.push(serde_json::json!({"mediaType": media, "digest": put(dir, &bytes)?, "size": size}));
        }
        let cfg = serde_json::json!({"architecture": arch, "os": "linux", "config": config, "rootfs": {"type": "layers", "diff_ids": []}});
        let cfg = serde_json::to_vec(&cfg).map_err(|e| e.to_string())?;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put(dir, &cfg)?, "size": cfg.len()},
            "layers": descs,
        });
        let manifest = serde_json::to_vec(&manifest).map_err(|e| e.to_string())?;
        let index = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": put(dir, &manifest)?, "size": manifest.len(),
                           "platform": {"architecture": arch, "os": "linux"}}],
        });
        fs::write(dir.join("index.json"), serde_json::to_vec(&index).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
        fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::build::{layout, Entry};
    use super::*;
    use std::process::Command;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("berth-oci-test-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn need_tools() {
        crate::tools::require_command("mksquashfs", "squashfs-tools");
        crate::tools::require_command("unsquashfs", "squashfs-tools");
    }

    const PASSWD: &[u8] = b"root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/srv:/bin/false\n";
    const GROUP: &[u8] = b"root:x:0:\nstaff:x:50:\n";

    /// Two layers: the upper one (gzip) whites out a file and makes a
    /// directory opaque.
    fn two_layers(dir: &Path, arch: &str, config: Value) {
        let lower = [
            Entry::Dir("etc", 0o755),
            Entry::File("etc/passwd", PASSWD, 0o644, 0, 0),
            Entry::File("etc/group", GROUP, 0o644, 0, 0),
            Entry::File("etc/removed.txt", b"gone", 0o644, 0, 0),
            Entry::File("etc/kept.txt", b"kept", 0o640, 1000, 1001),
            Entry::Dir("dir", 0o750),
            Entry::Dir("dir/opaque", 0o755),
            Entry::File("dir/opaque/old.txt", b"old", 0o644, 0, 0),
            Entry::File("dir/other.txt", b"other", 0o644, 0, 0),
            Entry::File("bin/app", b"\x7fELF", 0o4755, 0, 0),
            Entry::Symlink("bin/link", "app"),
        ];
        let upper = [
            Entry::File("etc/.wh.removed.txt", b"", 0o644, 0, 0),
            Entry::File("dir/opaque/.wh..wh..opq", b"", 0o644, 0, 0),
            Entry::File("dir/opaque/new.txt", b"new", 0o600, 1000, 50),
        ];
        layout(dir, &[(&lower, false), (&upper, true)], arch, config).unwrap();
    }

    /// `unsquashfs -lln` as (path, "mode uid/gid") pairs.
    fn listing(img: &Path) -> BTreeMap<String, String> {
        let o = Command::new("unsquashfs").arg("-lln").arg(img).output().unwrap();
        assert!(o.status.success());
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let path = f.get(5)?.strip_prefix("squashfs-root")?;
                Some((if path.is_empty() { "/".into() } else { path.to_string() }, format!("{} {}", f.first()?, f.get(1)?)))
            })
            .collect()
    }

    fn config() -> Value {
        serde_json::json!({
            "User": "app:staff",
            "Env": ["PATH=/usr/bin:/bin", "MODE=demo"],
            "Entrypoint": ["app"],
            "Cmd": ["--serve"],
            "WorkingDir": "/srv",
            "ExposedPorts": {"8080/tcp": {}},
            "Volumes": {"/var/lib/app": {}},
            "Healthcheck": {"Test": ["CMD", "/bin/app", "--check"]},
            "StopSignal": "SIGQUIT",
            "Hostname": "",
            "Privileged": true,
        })
    }

    #[test]
    fn layers_whiteouts_ownership_and_config() {
        need_tools();
        let dir = scratch("layers");
        two_layers(&dir.join("layout"), "amd64", config());
        let out = dir.join("app.img");
        let imp = import(&dir.join("layout"), Some(Arch::X86_64), &out).unwrap();
        assert_eq!(image::inspect(&out).unwrap(), imp.image);
        let l = listing(&out);
        assert!(!l.contains_key("/etc/removed.txt"), "whiteout: {l:?}");
        assert!(!l.contains_key("/dir/opaque/old.txt"), "opaque: {l:?}");
        assert_eq!(l.get("/etc/kept.txt").map(String::as_str), Some("-rw-r----- 1000/1001"));
        assert_eq!(l.get("/dir/opaque/new.txt").map(String::as_str), Some("-rw------- 1000/50"));
        assert_eq!(l.get("/dir/other.txt").map(String::as_str), Some("-rw-r--r-- 0/0"), "outside the opaque dir");
        assert_eq!(l.get("/dir").map(String::as_str), Some("drwxr-x--- 0/0"));
        assert_eq!(l.get("/bin/app").map(String::as_str), Some("-rwsr-xr-x 0/0"));
        assert!(l.get("/bin/link").is_some_and(|m| m.starts_with('l')), "{l:?}");
        assert_eq!(l.get("/tmp").map(String::as_str), Some("drwxrwxrwt 0/0"));
        for d in ["/dev", "/proc", "/sys"] {
            assert!(l.contains_key(d), "{d}");
        }
        // No staging directory is left beside the image.
        let names: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");

        let p = &imp.config;
        assert_eq!(p.argv, ["/bin/app", "--serve"], "resolved through PATH");
        assert_eq!(p.env, ["PATH=/usr/bin:/bin", "MODE=demo"]);
        assert_eq!((p.uid, p.gid), (Some(1000), Some(50)));
        assert_eq!(p.workdir.as_deref(), Some("/srv"));
        assert_eq!(p.stop_signal.as_deref(), Some("SIGQUIT"));
        let notes = imp.notes.join("\n");
        for want in ["ExposedPorts", "volume /var/lib/app: add a [[mounts]]", "Healthcheck", "Privileged", "/bin/app is setuid"] {
            assert!(notes.contains(want), "{want}: {notes}");
        }
        assert!(!notes.contains("Hostname"), "empty fields are not reported: {notes}");

        // The pre-filled manifest is a valid one once the image hash is in.
        let text = manifest_text("app", "layout", p, &imp.notes);
        let mut table: toml::Table = text.parse().unwrap();
        assert_eq!(table.remove("build").unwrap().get("oci").unwrap().as_str(), Some("layout"));
        table.insert("image".into(), toml::Value::String(format!("sha256:{}", hex(&imp.image.sha256))));
        let m = berth::release::manifest::Manifest::from_toml("app", &toml::to_string(&table).unwrap()).unwrap();
        assert_eq!(m.entry.uid, Some(1000));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn docker_save_tarball() {
        need_tools();
        let dir = scratch("docker");
        let l = dir.join("layout");
        two_layers(&l, "arm64", serde_json::json!({"User": "1000", "Cmd": ["/bin/app"]}));
        // docker save: manifest.json naming the config and layer files.
        let m = read_json(&l.join("index.json")).unwrap();
        let m = read_json(&blob(&l, str_of(&m["manifests"][0], "digest")).unwrap()).unwrap();
        let path = |d: &Value| format!("blobs/sha256/{}", str_of(d, "digest").trim_start_matches("sha256:"));
        let layers: Vec<String> = m["layers"].as_array().unwrap().iter().map(path).collect();
        fs::remove_file(l.join("index.json")).unwrap();
        let save = serde_json::json!([{"Config": path(&m["config"]), "RepoTags": ["app:1"], "Layers": layers}]);
        fs::write(l.join("manifest.json"), serde_json::to_vec(&save).unwrap()).unwrap();
        let mut b = tar::Builder::new(fs::File::create(dir.join("app.tar")).unwrap());
        b.append_dir_all(".", &l).unwrap();
        b.finish().unwrap();
        drop(b);
        let out = dir.join("app.img");
        let imp = import(&dir.join("app.tar"), Some(Arch::Aarch64), &out).unwrap();
        let l = listing(&out);
        assert!(!l.contains_key("/etc/removed.txt") && l.contains_key("/etc/kept.txt"), "{l:?}");
        assert_eq!((imp.config.uid, imp.config.gid), (Some(1000), Some(1001)), "gid from /etc/passwd");
        // The wrong board.
        let e = import(&dir.join("app.tar"), Some(Arch::X86_64), &out).err().unwrap();
        assert!(e.contains("linux/arm64, the board runs linux/amd64"), "{e}");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn refusals_are_reported() {
        need_tools();
        let dir = scratch("refuse");
        let l = dir.join("layout");
        two_layers(&l, "amd64", serde_json::json!({"User": "nobody", "Cmd": ["/bin/app"]}));
        let imp = import(&l, Some(Arch::X86_64), &dir.join("a.img")).unwrap();
        assert_eq!(imp.config.uid, None);
        assert!(imp.notes.iter().any(|n| n.contains("user `nobody` is not numeric and not in the image's /etc/passwd")), "{:?}", imp.notes);

        // A zstd layer.
        let mut index = read_json(&l.join("index.json")).unwrap();
        let mpath = blob(&l, str_of(&index["manifests"][0], "digest")).unwrap();
        let mut m = read_json(&mpath).unwrap();
        m["layers"][1]["mediaType"] = "application/vnd.oci.image.layer.v1.tar+zstd".into();
        let bytes = serde_json::to_vec(&m).unwrap();
        let digest = format!("sha256:{}", hex(&Sha256::digest(&bytes)));
        fs::write(l.join("blobs/sha256").join(digest.trim_start_matches("sha256:")), &bytes).unwrap();
        let good = index["manifests"][0].clone();
        index["manifests"][0]["digest"] = digest.into();
        fs::write(l.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
        let e = import(&l, Some(Arch::X86_64), &dir.join("a.img")).err().unwrap();
        assert!(e.contains("zstd-compressed layers are not supported"), "{e}");

        // A multi-platform index without the board's platform, and with it.
        let mut arm = good.clone();
        arm["platform"]["architecture"] = "arm64".into();
        index["manifests"] = serde_json::json!([arm, good]);
        fs::write(l.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
        let e = import(&l, Some(Arch::Armv7), &dir.join("a.img")).err().unwrap();
        assert!(e.contains("no image for linux/arm/v7 (it has: linux/arm64, linux/amd64)"), "{e}");
        let e = import(&l, None, &dir.join("a.img")).err().unwrap();
        assert!(e.contains("give --arch"), "{e}");
        assert!(import(&l, Some(Arch::X86_64), &dir.join("a.img")).is_ok());

        // A changed blob is refused by its digest.
        let layer = str_of(&m["layers"][0], "digest").trim_start_matches("sha256:").to_string();
        let p = l.join("blobs/sha256").join(&layer);
        let mut b = fs::read(&p).unwrap();
        b[600] ^= 1;
        fs::write(&p, &b).unwrap();
        let e = import(&l, Some(Arch::X86_64), &dir.join("a.img")).err().unwrap();
        assert!(e.contains("does not have this digest"), "{e}");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn paths_and_names() {
        assert_eq!(normalize("./a//b/./c").unwrap(), "a/b/c");
        assert_eq!(normalize("/").unwrap(), "");
        assert!(normalize("a/../../etc").is_err());
        assert!(under("a/b", "a") && under("a", "") && !under("ab", "a") && !under("a", "a"));
        assert_eq!(name_from(Path::new("/x/My_App.tar")), "my-app");
        assert_eq!(name_from(Path::new("___")), "app");
        let t = manifest_text("a", "x \"y\"", &Prefill { argv: vec!["/a b".into()], ..Default::default() }, &["n".into()]);
        assert!(t.contains("oci = 'x \"y\"'") || t.contains(r#"oci = "x \"y\"""#), "{t}");
        assert!(t.contains("# - n"));
    }
}
