//! Releases on the host: compile `manifests/` into a release, build its
//! images, and sign it. Keys: `keygen` writes a pair; a development key is made
//! once under `target/keys/dev/` for local runs and tests (never committed,
//! never put in an image: only its public half is).

use crate::artifacts::cross_build;
use crate::image::{self, Image};
use crate::say;
use berth::release;
use berth::release::board::{Arch, Board};
use berth::release::manifest::Digest;
use berth::release::{self as keys, Release};
use std::fs;
use std::path::{Path, PathBuf};

/// Name of the development private key file.
pub const DEV_KEY: &str = "signing-key.pem";

/// A compiled release and the images it names.
pub struct Compiled {
    pub release: Release,
    pub images: Vec<Image>,
}

/// Write a new key pair into `dir`: `signing-key.pem` (PKCS#8, mode 0600) and
/// `<key id>.pub`, the file a device trusts.
pub fn keygen(dir: &Path) -> Result<PathBuf, String> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let pem_path = dir.join(DEV_KEY);
    if pem_path.exists() {
        return Err(format!("{} exists; refusing to overwrite a private key", pem_path.display()));
    }
    let (pem, public) = keys::keygen().map_err(|e| e.to_string())?;
    let vk = ed25519_dalek_key(&public)?;
    let (name, text) = keys::key_file(&vk);
    let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&pem_path).map_err(|e| format!("{}: {e}", pem_path.display()))?;
    std::io::Write::write_all(&mut f, pem.as_bytes()).map_err(|e| format!("{}: {e}", pem_path.display()))?;
    fs::write(dir.join(&name), text).map_err(|e| format!("{}: {e}", dir.display()))?;
    say(&format!("wrote {} and {}", pem_path.display(), dir.join(&name).display()));
    Ok(pem_path)
}

fn ed25519_dalek_key(public: &[u8; 32]) -> Result<berth::release::VerifyingKey, String> {
    berth::release::VerifyingKey::from_bytes(public).map_err(|e| format!("bad public key: {e}"))
}

/// The development key directory, made on first use.
pub fn dev_key_dir(root: &Path) -> Result<PathBuf, String> {
    let dir = root.join("target").join("keys").join("dev");
    if !dir.join(DEV_KEY).is_file() {
        say("making a development signing key (target/keys/dev; for tests and local runs only)");
        keygen(&dir)?;
    }
    Ok(dir)
}

/// Read a PKCS#8 PEM private key.
pub fn load_signing_key(path: &Path) -> Result<keys::SigningKey, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    keys::signing_key_from_pkcs8_pem(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The public key files in a directory, for the system image: every
/// `*.pub`, and every `*.pem` that holds a public key (PEM private keys,
/// such as the development `signing-key.pem`, are left out; any other PEM
/// is an error, as it would be on the device).
pub fn public_keys(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut v = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        match path.extension().and_then(|x| x.to_str()) {
            Some("pub") => v.push(path),
            Some("pem") => {
                let text = fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                match berth::release::pem::public_key(&text) {
                    Ok(_) => v.push(path),
                    Err(berth::release::pem::PemError::PrivateKey { .. }) => {}
                    Err(e) => return Err(format!("{}: {e}", path.display())),
                }
            }
            _ => {}
        }
    }
    v.sort();
    Ok(v)
}

/// `cargo xtask keyid FILE`: print the id of the key in FILE.
pub fn keyid(args: &[String]) -> Result<(), String> {
    let [file] = args else {
        return Err("usage: cargo xtask keyid FILE (a PEM public or private key, or a <key id>.pub)".into());
    };
    let id = keys::file_key_id(Path::new(file)).map_err(|e| e.to_string())?;
    println!("{id}");
    Ok(())
}

/// `release.toml` in the manifest directory: `version` (required),
/// `commit_window_s` (1..=86400, default 120), `trial_deadline_s` (above
/// the window, at most 172800; default the window plus 600) and `reboot`
/// (default false).
struct ReleaseToml {
    version: u64,
    commit_window_s: u32,
    trial_deadline_s: u32,
    reboot: bool,
}

fn release_toml(dir: &Path) -> Result<ReleaseToml, String> {
    let path = dir.join("release.toml");
    let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let v: toml::Table = text.parse().map_err(|e| format!("{}: {e}", path.display()))?;
    for key in v.keys() {
        if !["version", "commit_window_s", "trial_deadline_s", "reboot"].contains(&key.as_str()) {
            return Err(format!("{}: unknown field `{key}`", path.display()));
        }
    }
    let version = match v.get("version") {
        Some(toml::Value::Integer(n)) if *n > 0 => *n as u64,
        _ => return Err(format!("{}: field `version` must be a positive integer", path.display())),
    };
    let commit_window_s = match v.get("commit_window_s") {
        None => berth::release::COMMIT_WINDOW_S,
        Some(toml::Value::Integer(n)) if (1..=86_400).contains(n) => *n as u32,
        _ => return Err(format!("{}: field `commit_window_s` must be between 1 and 86400", path.display())),
    };
    let max = berth::release::TRIAL_DEADLINE_MAX_S;
    let trial_deadline_s = match v.get("trial_deadline_s") {
        None => berth::release::trial_deadline_default(commit_window_s),
        Some(toml::Value::Integer(n)) if *n > i64::from(commit_window_s) && *n <= i64::from(max) => *n as u32,
        _ => return Err(format!("{}: field `trial_deadline_s` must be above commit_window_s ({commit_window_s}) and at most {max}", path.display())),
    };
    let reboot = match v.get("reboot") {
        None => false,
        Some(toml::Value::Boolean(b)) => *b,
        _ => return Err(format!("{}: field `reboot` must be true or false", path.display())),
    };
    Ok(ReleaseToml { version, commit_window_s, trial_deadline_s, reboot })
}

/// `mib` MiB of pseudo-random bytes (xorshift64*, a fixed seed) at `path`.
fn write_random(path: &Path, mib: u64) -> Result<(), String> {
    use std::io::Write;
    let f = fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..mib {
        for word in block.chunks_exact_mut(8) {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            word.copy_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
        }
        w.write_all(&block).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    w.flush().map_err(|e| format!("{}: {e}", path.display()))
}

/// Build the image a manifest's `[build]` table describes: exactly one of
/// `cargo_bin` (with optional `package`, default `berth-demo-apps`,
/// `setuid_copy`, a path where a root-owned mode-4755 copy is installed, and
/// `copies`, paths where plain mode-0755 copies are installed, for
/// confinement tests), `debian_package` (a Debian package for the board's
/// architecture, downloaded and unpacked like the kernels, with optional
/// `symlinks = { "/bin/sh" = "busybox" }`), `binary`, `dir` or `oci` (an OCI
/// image layout or a `docker save` tar, imported for the board's
/// architecture; the import's notes are printed). `dirs` (with `cargo_bin`
/// or `debian_package`) adds empty directories, such as mount points
/// (`/run/berth-status` for the status view); `files` (with `cargo_bin`)
/// adds host files (`crate::buildfiles`). `random_mib = N` (with
/// `cargo_bin`, 1 to 4096) adds `/random.bin`, N MiB of pseudo-random
/// bytes (the same at every build; incompressible), for tests of big images.
fn build_image(root: &Path, arch: Arch, dir: &Path, name: &str, build: &toml::Table, out: &Path) -> Result<Image, String> {
    let field = |k: &str| format!("manifest {name}: field build.{k}");
    let text = |k: &str| -> Result<Option<&str>, String> {
        match build.get(k) {
            None => Ok(None),
            Some(v) => v.as_str().map(Some).ok_or_else(|| format!("{}: must be a string", field(k))),
        }
    };
    for k in build.keys() {
        let known = ["cargo_bin", "package", "setuid_copy", "copies", "dirs", "files", "random_mib", "debian_package", "symlinks", "binary", "dir", "oci"];
        if !known.contains(&k.as_str()) {
            return Err(format!("{}: unknown (cargo_bin, debian_package, binary, dir or oci)", field(k)));
        }
    }
    let sources = ["cargo_bin", "debian_package", "binary", "dir", "oci"].iter().filter(|k| build.contains_key(**k)).count();
    if sources != 1 {
        return Err(format!("manifest {name}: field build: needs exactly one of cargo_bin, debian_package, binary, dir, oci"));
    }
    let inside = |k: &str, p: &str| -> Result<PathBuf, String> {
        let rel = p.strip_prefix('/').filter(|r| !r.is_empty() && !r.split('/').any(|c| c == ".." || c.is_empty()));
        rel.map(PathBuf::from).ok_or_else(|| format!("{}: must be an absolute path inside the image", field(k)))
    };
    let copies: Vec<PathBuf> = match build.get("copies") {
        None => Vec::new(),
        Some(toml::Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().ok_or_else(|| format!("{}: must be a list of paths", field("copies"))).and_then(|p| inside("copies", p)))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(format!("{}: must be a list of paths", field("copies"))),
    };
    let dirs: Vec<PathBuf> = match build.get("dirs") {
        None => Vec::new(),
        Some(toml::Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().ok_or_else(|| format!("{}: must be a list of paths", field("dirs"))).and_then(|p| inside("dirs", p)))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(format!("{}: must be a list of paths", field("dirs"))),
    };
    let random_mib = match build.get("random_mib") {
        None => None,
        Some(toml::Value::Integer(n)) if (1..=4096).contains(n) => Some(*n as u64),
        Some(_) => return Err(format!("{}: must be a whole number of MiB from 1 to 4096", field("random_mib"))),
    };
    if random_mib.is_some() && !build.contains_key("cargo_bin") {
        return Err(format!("{}: goes with cargo_bin", field("random_mib")));
    }
    let files = crate::buildfiles::parse(name, dir, build.get("files"))?;
    if !files.is_empty() && !build.contains_key("cargo_bin") {
        return Err(format!("{}: goes with cargo_bin", field("files")));
    }
    let make_dirs = |stage: &Path| -> Result<(), String> {
        for d in ["bin", "dev", "mnt", "proc", "sys", "tmp"].iter().map(PathBuf::from).chain(dirs.iter().cloned()) {
            fs::create_dir_all(stage.join(&d)).map_err(|e| format!("{}: {e}", stage.join(&d).display()))?;
        }
        Ok(())
    };
    if let Some(package) = text("debian_package")? {
        if text("package")?.is_some() || text("setuid_copy")?.is_some() || !copies.is_empty() {
            return Err(format!("manifest {name}: field build: package, setuid_copy and copies go with cargo_bin"));
        }
        let (tree, version) = crate::kernel::ensure_package(root, arch.debian(), package).map_err(|e| format!("{}: {e}", field("debian_package")))?;
        say(&format!("{name}: image from Debian's {package} {version} ({})", arch.debian()));
        let stage = out.with_extension("root");
        let _ = fs::remove_dir_all(&stage);
        crate::run_cmd(std::process::Command::new("cp").arg("-a").arg(&tree).arg(&stage))?;
        make_dirs(&stage)?;
        match build.get("symlinks") {
            None => {}
            Some(toml::Value::Table(t)) => {
                for (link, target) in t {
                    let target = target.as_str().filter(|t| !t.is_empty() && !t.contains('\0'));
                    let target = target.ok_or_else(|| format!("{}: `{link}` must name a link target", field("symlinks")))?;
                    let at = stage.join(inside("symlinks", link)?);
                    if let Some(parent) = at.parent() {
                        fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
                    }
                    let _ = fs::remove_file(&at);
                    std::os::unix::fs::symlink(target, &at).map_err(|e| format!("{}: {e}", at.display()))?;
                }
            }
            Some(_) => return Err(format!("{}: must be a table of link = target", field("symlinks"))),
        }
        let img = image::from_dir(&stage, out);
        let _ = fs::remove_dir_all(&stage);
        return img;
    }
    if build.contains_key("symlinks") {
        return Err(format!("{}: goes with debian_package", field("symlinks")));
    }
    if let Some(bin_name) = text("cargo_bin")? {
        let package = text("package")?.unwrap_or("berth-demo-apps");
        let bin = cross_build(root, arch, package, bin_name).map_err(|e| format!("{}: {e}", field("cargo_bin")))?;
        let setuid = text("setuid_copy")?.map(|p| inside("setuid_copy", p)).transpose()?;
        if setuid.is_none() && copies.is_empty() && dirs.is_empty() && files.is_empty() && random_mib.is_none() {
            return image::from_binary(&bin, out);
        }
        let stage = out.with_extension("root");
        let _ = fs::remove_dir_all(&stage);
        make_dirs(&stage)?;
        let install = |to: &Path, mode: u32| -> Result<(), String> {
            use std::os::unix::fs::PermissionsExt;
            if let Some(parent) = to.parent() {
                fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
            }
            fs::copy(&bin, to).map_err(|e| format!("{}: {e}", to.display()))?;
            fs::set_permissions(to, fs::Permissions::from_mode(mode)).map_err(|e| format!("{}: {e}", to.display()))
        };
        install(&stage.join("bin").join(bin_name), 0o755)?;
        for c in &copies {
            install(&stage.join(c), 0o755)?;
        }
        if let Some(rel) = setuid {
            install(&stage.join(rel), 0o4755)?;
        }
        if let Some(mib) = random_mib {
            write_random(&stage.join("random.bin"), mib)?;
        }
        crate::buildfiles::install(&stage, &files)?;
        let img = image::from_dir(&stage, out);
        let _ = fs::remove_dir_all(&stage);
        return img;
    }
    if text("package")?.is_some() || text("setuid_copy")?.is_some() || !copies.is_empty() || !dirs.is_empty() {
        return Err(format!("manifest {name}: field build: package, setuid_copy, copies and dirs go with cargo_bin (dirs also with debian_package)"));
    }
    if let Some(file) = text("binary")? {
        let p = dir.join(file);
        if !p.is_file() {
            return Err(format!("{}: {} is not a file", field("binary"), p.display()));
        }
        return image::from_binary(&p, out);
    }
    if let Some(src) = text("oci")? {
        let p = dir.join(src);
        let imported = crate::oci::import(&p, Some(arch), out).map_err(|e| format!("{}: {}: {e}", field("oci"), p.display()))?;
        for n in &imported.notes {
            say(&format!("manifest {name}: OCI import note: {n}"));
        }
        return Ok(imported.image);
    }
    let d = text("dir")?.unwrap_or_default();
    let p = dir.join(d);
    if !p.is_dir() {
        return Err(format!("{}: {} is not a directory", field("dir"), p.display()));
    }
    image::from_dir(&p, out)
}

/// Compile every `*.toml` manifest of `dir` (but `release.toml`) for a board;
/// images land in `out/images/`. `version` overrides `release.toml`'s.
pub fn compile(root: &Path, dir: &Path, board: &Board, out: &Path, version: Option<u64>) -> Result<Compiled, String> {
    let meta = release_toml(dir)?;
    let version = version.unwrap_or(meta.version);
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.file_name().is_some_and(|n| n != "release.toml"))
        .collect();
    files.sort();
    let img_dir = out.join("images");
    fs::create_dir_all(&img_dir).map_err(|e| format!("{}: {e}", img_dir.display()))?;

    let mut release = Release {
        version,
        board: board.name.clone(),
        downgrade: None,
        containers: Default::default(),
        images: Default::default(),
        commit_window_s: meta.commit_window_s,
        reboot: meta.reboot,
        trial_deadline_s: meta.trial_deadline_s,
        system: None,
    };
    // Every manifest is checked, and every error reported, before any image
    // is built.
    let checked = crate::manifests::check(root, &files, board)?;
    let mut images: Vec<Image> = Vec::new();
    for c in checked {
        let img = build_image(root, board.arch, dir, &c.stem, &c.build, &img_dir.join(format!("{}.img", c.stem)))?;
        let mut manifest = c.manifest;
        manifest.image = Digest(img.sha256);
        let entry = release::Image { sha256: Digest(img.sha256), size: img.size, verity_root: img.verity.root, verity_salt: img.verity.salt };
        if !release.images.iter().any(|i| i.sha256 == entry.sha256) {
            release.images.push(entry).map_err(|_| format!("more than {} images", release::CONTAINERS_MAX))?;
            images.push(img);
        }
        release.containers.push(manifest).map_err(|_| format!("more than {} containers", release::CONTAINERS_MAX))?;
    }
    release.validate().map_err(|e| format!("release from {}: {e}", dir.display()))?;
    check_for_board(&release, board).map_err(|e| format!("release from {}: {e}", dir.display()))?;
    Ok(Compiled { release, images })
}

/// What only the board can tell: each container's device grants (a node the
/// board has, not reserved, not a block device or a never-granted class) and
/// its seccomp filter on the board's architecture (every added syscall
/// exists there and may be granted, every socket family may be granted).
pub fn check_for_board(release: &Release, board: &Board) -> Result<(), String> {
    let arch = berth::confine::seccomp::Arch::from(board.arch);
    for m in &release.containers {
        m.check_devices(board).map_err(|e| e.to_string())?;
        berth::confine::seccomp::compile(&berth::confine::seccomp::Policy::from_manifest(m), arch).map_err(|e| format!("manifest {}: {e}", m.name))?;
    }
    Ok(())
}

/// Compile and sign; returns the signed object.
pub fn compile_and_sign(
    root: &Path,
    dir: &Path,
    board: &Board,
    out: &Path,
    key: &keys::SigningKey,
    version: Option<u64>,
) -> Result<(Compiled, Vec<u8>), String> {
    let c = compile(root, dir, board, out, version)?;
    let signed = release::sign(&c.release, key).map_err(|e| e.to_string())?;
    say(&format!(
        "release {} for {}: {} containers, {} bytes, signed by key {}",
        c.release.version,
        board.name,
        c.release.containers.len(),
        signed.len(),
        keys::key_id(&key.verifying_key())
    ));
    Ok((c, signed))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A manifest file read and checked for `board`, its image a fixed hash.
    fn checked(path: &Path, board: &Board) -> crate::manifests::Checked {
        let text = fs::read_to_string(path).unwrap();
        let stem = path.file_stem().unwrap().to_str().unwrap();
        let mut c = crate::manifests::read(&path.display().to_string(), stem, &text, board).unwrap_or_else(|e| panic!("{e:?}"));
        c.manifest.image = Digest([7; 32]);
        c
    }

    /// The demo manifests are valid as a set (images stubbed by a fixed hash).
    #[test]
    fn demo_manifests_are_valid() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let dir = root.join("manifests");
        let board = crate::artifacts::load_board(&crate::artifacts::board_path(&root, Arch::ALL[0])).unwrap();
        assert!(release_toml(&dir).unwrap().version >= 1);
        let mut set = Vec::new();
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|x| x == "toml") && path.file_name().is_some_and(|n| n != "release.toml") {
                let c = checked(&path, &board);
                let sources = ["cargo_bin", "debian_package", "binary", "dir"].iter().filter(|k| c.build.contains_key(**k)).count();
                assert_eq!(sources, 1, "{}: one image source", c.stem);
                set.push(c.manifest);
            }
        }
        assert!(set.len() >= 2);
        berth::release::manifest::validate_set(&set).unwrap();
    }

    /// The demo and the probe manifests pass the board checks on every
    /// board; a grant the board must refuse names the manifest and field.
    #[test]
    fn releases_are_checked_against_each_board() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for dir in [root.join("manifests"), root.join("qemu-tests/manifests/probe")] {
            let mut release = Release {
                version: 1,
                board: Default::default(),
                downgrade: None,
                containers: Default::default(),
                images: Default::default(),
                commit_window_s: 60,
                reboot: false,
                trial_deadline_s: 660,
                system: None,
            };
            for arch in Arch::ALL {
                let board = crate::artifacts::load_board(&crate::artifacts::board_path(&root, arch)).unwrap();
                release.containers = Default::default();
                for entry in fs::read_dir(&dir).unwrap() {
                    let path = entry.unwrap().path();
                    if path.extension().is_some_and(|x| x == "toml") && path.file_name().is_some_and(|n| n != "release.toml") {
                        release.containers.push(checked(&path, &board).manifest).unwrap();
                    }
                }
                check_for_board(&release, &board).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
                let mut bad = release.clone();
                bad.containers[0].seccomp_allow.push("ptrace".try_into().unwrap()).unwrap();
                let e = check_for_board(&bad, &board).unwrap_err();
                assert!(e.contains(&format!("manifest {}", bad.containers[0].name)) && e.contains("`ptrace`"), "{e}");
                let mut bad = release.clone();
                let mut b = board.clone();
                let n = &mut b.hardware[0];
                (n.major, n.minor) = (10, 200);
                let name = n.name.clone();
                bad.containers[0].devices.clear();
                bad.containers[0]
                    .devices
                    .push(berth::release::manifest::DeviceGrant { node: name.as_str().try_into().unwrap(), access: "r".try_into().unwrap() })
                    .unwrap();
                let e = check_for_board(&bad, &b).unwrap_err();
                assert!(e.contains("devices[0].node") && e.contains("tun/tap"), "{e}");
            }
        }
    }

    /// The image gets the public keys of a directory, never its private key.
    #[test]
    fn public_keys_leave_private_keys_out() {
        let dir = std::env::temp_dir().join(format!("xtask-public-keys-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        keygen(&dir).unwrap();
        let signing = load_signing_key(&dir.join(DEV_KEY)).unwrap();
        let pem = {
            use berth::release::pem;
            // The public key as `openssl pkey -pubout` writes it, built by hand.
            let b64 = base64(&[&[0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00][..], signing.verifying_key().as_bytes()].concat());
            let text = format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n");
            assert_eq!(&pem::public_key(text.as_bytes()).unwrap(), signing.verifying_key().as_bytes());
            text
        };
        fs::write(dir.join("release.pem"), &pem).unwrap();
        let names: Vec<String> = public_keys(&dir).unwrap().iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        let id = berth::release::key_id(&signing.verifying_key());
        assert_eq!(names, [format!("{id}.pub"), "release.pem".to_owned()]);
        // Both name the same key: the directory as a whole trusts it twice.
        assert!(berth::release::TrustedKeys::load_dir(&dir).unwrap_err().reason.contains("twice"));
        fs::write(dir.join("release.pem"), "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap();
        assert!(public_keys(&dir).unwrap_err().contains("CERTIFICATE"));
        assert!(keyid(&[dir.join(DEV_KEY).display().to_string()]).is_ok());
        assert!(keyid(&[]).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    fn base64(bytes: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut s = String::new();
        for c in bytes.chunks(3) {
            let n = c.iter().enumerate().fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
            for i in 0..4 {
                s.push(if i <= c.len() { A[(n >> (18 - 6 * i) & 63) as usize] as char } else { '=' });
            }
        }
        s
    }
}
