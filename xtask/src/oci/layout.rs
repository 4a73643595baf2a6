//! Reading an image's description: an OCI layout (`index.json`, the image
//! manifest it leads to, the image config) or a `docker save` tarball's
//! `manifest.json`, into the typed structs of the image spec (`oci-spec`),
//! and the layer blobs it names, each with how it is compressed and the
//! digest its uncompressed tar must have (the config's `diff_ids`).
//!
//! Every blob's SHA-256 is checked before it is used. What is refused names
//! what is wrong: a media type that is not a manifest, an index or a tar
//! layer berth reads; a missing blob; a digest that does not match; an
//! image for another platform.

use crate::verity::hex;
use berth::release::board::Arch;
use oci_spec::image::{Descriptor, Digest, DigestAlgorithm, ImageConfiguration, ImageIndex, ImageManifest, MediaType};
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use std::fs;
use std::io::BufReader;
use std::path::{Path, PathBuf};

/// Docker's media types that mean the same as the OCI ones.
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
const DOCKER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const DOCKER_ZSTD: &str = "application/vnd.docker.image.rootfs.diff.tar.zstd";
const DOCKER_FOREIGN: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Plain,
    Gzip,
    Zstd,
    /// Not declared (`docker save` layers): told by the blob's first bytes.
    Sniff,
}

/// One layer blob: where it is, its name in messages, its compression and
/// the digest of its uncompressed tar when the config gives one.
#[derive(Debug)]
pub struct Layer {
    pub path: PathBuf,
    pub what: String,
    pub compression: Compression,
    pub diff_id: Option<String>,
}

/// The image an import reads: its config (typed, and as raw JSON for the
/// notes about fields the spec does not know) and its layers in order.
pub struct Source {
    pub config: ImageConfiguration,
    pub raw_config: Value,
    pub layers: Vec<Layer>,
}

/// The OCI platform names of a board architecture: (architecture, variant).
pub fn platform(arch: Arch) -> (&'static str, Option<&'static str>) {
    match arch {
        Arch::Aarch64 => ("arm64", None),
        Arch::Armv7 => ("arm", Some("v7")),
        Arch::X86_64 => ("amd64", None),
    }
}

fn read_typed<T: DeserializeOwned>(path: &Path, what: &str) -> Result<T, String> {
    let bytes = fs::read(path).map_err(|e| format!("{what}: {}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{what}: {}: {e}", path.display()))
}

/// `blobs/sha256/<hex>` of a digest, after checking the blob's SHA-256.
pub fn blob(layout: &Path, digest: &Digest) -> Result<PathBuf, String> {
    if *digest.algorithm() != DigestAlgorithm::Sha256 {
        return Err(format!("digest `{digest}`: only sha256 is supported"));
    }
    let hexd = digest.digest();
    let p = layout.join("blobs").join("sha256").join(hexd);
    let f = fs::File::open(&p).map_err(|e| format!("blob {digest}: missing from the layout ({e})"))?;
    let mut h = Sha256::new();
    std::io::copy(&mut BufReader::new(f), &mut h).map_err(|e| format!("blob {digest}: {e}"))?;
    let got = hex(&h.finalize());
    if got != hexd {
        return Err(format!("blob {digest}: its content does not have this digest (it is sha256:{got})"));
    }
    Ok(p)
}

/// How a layer of this media type is compressed; `None`: not a tar layer.
pub fn compression(media: &MediaType) -> Option<Compression> {
    match media {
        MediaType::ImageLayer | MediaType::ImageLayerNonDistributable => Some(Compression::Plain),
        MediaType::ImageLayerGzip | MediaType::ImageLayerNonDistributableGzip => Some(Compression::Gzip),
        MediaType::ImageLayerZstd | MediaType::ImageLayerNonDistributableZstd => Some(Compression::Zstd),
        MediaType::Other(m) if m == DOCKER_TAR => Some(Compression::Plain),
        MediaType::Other(m) if m == DOCKER_GZIP || m == DOCKER_FOREIGN => Some(Compression::Gzip),
        MediaType::Other(m) if m == DOCKER_ZSTD => Some(Compression::Zstd),
        _ => None,
    }
}

fn is_index(media: &MediaType) -> bool {
    matches!(media, MediaType::ImageIndex) || matches!(media, MediaType::Other(m) if m == DOCKER_LIST)
}

fn is_manifest(media: &MediaType) -> bool {
    matches!(media, MediaType::ImageManifest) || matches!(media, MediaType::Other(m) if m == DOCKER_MANIFEST)
}

fn platform_name(d: &Descriptor) -> String {
    match d.platform() {
        Some(p) => format!("{}/{}{}", p.os(), p.architecture(), p.variant().as_ref().map(|v| format!("/{v}")).unwrap_or_default()),
        None => "?".into(),
    }
}

/// Whether an index entry is for the wanted platform (no platform: any).
fn fits(d: &Descriptor, wanted: Option<(&str, Option<&str>)>) -> bool {
    let (Some((a, variant)), Some(p)) = (wanted, d.platform()) else {
        return true;
    };
    let os = p.os().to_string();
    p.architecture().to_string() == a && (os.is_empty() || os == "linux") && (variant.is_none() || p.variant().is_none() || p.variant().as_deref() == variant)
}

/// The image manifest an index leads to (nested indexes followed), chosen by platform.
fn pick_manifest(layout: &Path, index: &ImageIndex, arch: Option<Arch>, depth: u32) -> Result<ImageManifest, String> {
    let wanted = arch.map(platform);
    let candidates: Vec<&Descriptor> = index.manifests().iter().filter(|d| fits(d, wanted)).collect();
    let chosen = match candidates.as_slice() {
        [one] => *one,
        [] => {
            let have: Vec<String> = index.manifests().iter().map(platform_name).collect();
            let want = wanted.map(|(a, v)| format!("linux/{a}{}", v.map(|v| format!("/{v}")).unwrap_or_default())).unwrap_or_default();
            return Err(format!("the index has no image for {want} (it has: {})", have.join(", ")));
        }
        _ => {
            let many = if wanted.is_some() { " for this platform" } else { "" };
            return Err(format!("the index holds {} images{many}; give --arch to pick the board's", candidates.len()));
        }
    };
    let digest = chosen.digest();
    let media = chosen.media_type();
    if is_index(media) {
        if depth >= 4 {
            return Err("indexes nested more than 4 deep".into());
        }
        let nested: ImageIndex = read_typed(&blob(layout, digest)?, &format!("index {digest}"))?;
        return pick_manifest(layout, &nested, arch, depth + 1);
    }
    if !is_manifest(media) {
        return Err(format!("index entry {digest}: media type `{media}` is neither an image manifest nor an index"));
    }
    read_typed(&blob(layout, digest)?, &format!("manifest {digest}"))
}

/// An OCI layout directory.
pub fn oci_layout(layout: &Path, arch: Option<Arch>, notes: &mut Vec<String>) -> Result<Source, String> {
    let index: ImageIndex = read_typed(&layout.join("index.json"), "index.json")?;
    let manifest = pick_manifest(layout, &index, arch, 0)?;
    let cdesc = manifest.config();
    let cpath = blob(layout, cdesc.digest())?;
    let (config, raw_config) = read_config(&cpath, &format!("config {}", cdesc.digest()))?;
    let mut layers = Vec::new();
    for d in manifest.layers() {
        let (media, digest) = (d.media_type(), d.digest());
        let Some(compression) = compression(media) else {
            return Err(format!("layer {digest}: media type `{media}` is not a layer berth imports (a tar, gzip or zstd tar)"));
        };
        if media.to_string().contains("nondistributable") || media.to_string().contains("foreign") {
            notes.push(format!("layer {digest} is marked non-distributable ({media}); it is taken from the layout"));
        }
        layers.push(Layer { path: blob(layout, digest)?, what: digest.to_string(), compression, diff_id: None });
    }
    with_diff_ids(Source { config, raw_config, layers })
}

/// A config blob, typed and raw.
fn read_config(path: &Path, what: &str) -> Result<(ImageConfiguration, Value), String> {
    let bytes = fs::read(path).map_err(|e| format!("{what}: {}: {e}", path.display()))?;
    let config = serde_json::from_slice(&bytes).map_err(|e| format!("{what}: {e}"))?;
    let raw = serde_json::from_slice(&bytes).map_err(|e| format!("{what}: {e}"))?;
    Ok((config, raw))
}

/// The config's `diff_ids`, when it lists any, go one to each layer.
fn with_diff_ids(mut s: Source) -> Result<Source, String> {
    let ids = s.config.rootfs().diff_ids();
    if ids.is_empty() {
        return Ok(s);
    }
    if ids.len() != s.layers.len() {
        return Err(format!("the config lists {} diff_ids for {} layers", ids.len(), s.layers.len()));
    }
    for (l, id) in s.layers.iter_mut().zip(ids) {
        let hexd = id.strip_prefix("sha256:").filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        let Some(hexd) = hexd else {
            return Err(format!("layer {}: the config's diff_id `{id}` is not a sha256 digest", l.what));
        };
        l.diff_id = Some(hexd.to_string());
    }
    Ok(s)
}

/// The `docker save` tarball's `manifest.json` (in the unpacked `dir`).
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SaveEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

pub fn docker_save(dir: &Path, notes: &mut Vec<String>) -> Result<Source, String> {
    let list: Vec<SaveEntry> = read_typed(&dir.join("manifest.json"), "manifest.json")?;
    let first = list.first().ok_or("manifest.json lists no image")?;
    if list.len() > 1 {
        notes.push(format!("the tarball holds {} images; the first ({:?}) is imported", list.len(), first.repo_tags.clone().unwrap_or_default()));
    }
    let inside = |p: &str| -> Result<PathBuf, String> { Ok(dir.join(super::normalize(p)?)) };
    let (config, raw_config) = read_config(&inside(&first.config)?, &first.config)?;
    let mut layers = Vec::new();
    for p in &first.layers {
        let path = inside(p)?;
        if !path.is_file() {
            return Err(format!("layer {p}: missing from the tarball"));
        }
        layers.push(Layer { path, what: p.clone(), compression: Compression::Sniff, diff_id: None });
    }
    with_diff_ids(Source { config, raw_config, layers })
}

/// The config's platform must be one the board runs.
pub fn check_platform(config: &ImageConfiguration, arch: Option<Arch>) -> Result<(), String> {
    let Some(arch) = arch else { return Ok(()) };
    let (a, v) = platform(arch);
    let (have, os) = (config.architecture().to_string(), config.os().to_string());
    if (!os.is_empty() && os != "linux") || (!have.is_empty() && have != a) {
        return Err(format!("the image is for {os}/{have}, the board runs linux/{a}{}", v.map(|v| format!("/{v}")).unwrap_or_default()));
    }
    Ok(())
}
