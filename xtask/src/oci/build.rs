//! Writing small OCI layouts, for the importer's tests and the trials.
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

/// How a test layer is packed.
#[derive(Debug, Clone, Copy)]
pub enum Pack {
    Tar,
    Gzip,
    Zstd,
}

/// A layer blob ready to be written: its bytes, media type and diff_id.
pub struct Blob {
    pub bytes: Vec<u8>,
    pub media: String,
    pub diff_id: String,
}

/// The tar of `entries`, packed as `pack`, with its media type and diff_id.
pub fn packed(entries: &[Entry], pack: Pack) -> Result<Blob, String> {
    use std::io::Write;
    let tar = layer_tar(entries)?;
    let diff_id = format!("sha256:{}", hex(&Sha256::digest(&tar)));
    let (bytes, media) = match pack {
        Pack::Tar => (tar, "application/vnd.oci.image.layer.v1.tar"),
        Pack::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&tar).map_err(|e| e.to_string())?;
            (e.finish().map_err(|e| e.to_string())?, "application/vnd.oci.image.layer.v1.tar+gzip")
        }
        Pack::Zstd => {
            // Two frames, as a producer compressing in parts writes them.
            let (a, b) = tar.split_at(tar.len() / 2);
            let mut z = ruzstd::encoding::compress_to_vec(a, ruzstd::encoding::CompressionLevel::Fastest);
            z.extend(ruzstd::encoding::compress_to_vec(b, ruzstd::encoding::CompressionLevel::Fastest));
            (z, "application/vnd.oci.image.layer.v1.tar+zstd")
        }
    };
    Ok(Blob { bytes, media: media.into(), diff_id })
}

/// Write an OCI layout to `dir`: each layer a tar packed as given, the
/// config's `config` object as given, for `arch`.
pub fn layout(dir: &Path, layers: &[(&[Entry], Pack)], arch: &str, config: Value) -> Result<(), String> {
    let blobs = layers.iter().map(|(e, pack)| packed(e, *pack)).collect::<Result<Vec<_>, _>>()?;
    write_layout(dir, &blobs, arch, config)
}

/// Write an OCI layout of these layer blobs to `dir`; the config lists
/// their diff_ids.
pub fn write_layout(dir: &Path, layers: &[Blob], arch: &str, config: Value) -> Result<(), String> {
    let mut descs = Vec::new();
    for b in layers {
        descs.push(serde_json::json!({"mediaType": b.media, "digest": put(dir, &b.bytes)?, "size": b.bytes.len()}));
    }
    let diff_ids: Vec<&str> = layers.iter().map(|b| b.diff_id.as_str()).collect();
    let cfg = serde_json::json!({"architecture": arch, "os": "linux", "config": config, "rootfs": {"type": "layers", "diff_ids": diff_ids}});
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
