use super::build::{layout, packed, write_layout, Entry, Pack};
use super::*;
use std::process::Command;

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

/// The blob file of a descriptor.
fn blob_of(l: &Path, desc: &Value) -> PathBuf {
    l.join("blobs/sha256").join(desc["digest"].as_str().unwrap().trim_start_matches("sha256:"))
}

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
    layout(dir, &[(&lower, Pack::Tar), (&upper, Pack::Gzip)], arch, config).unwrap();
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
    let m = read_json(&l.join("index.json"));
    let m = read_json(&blob_of(&l, &m["manifests"][0]));
    let path = |d: &Value| format!("blobs/sha256/{}", d["digest"].as_str().unwrap().trim_start_matches("sha256:"));
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

    // A manifest entry that is not a manifest.
    let mut index = read_json(&l.join("index.json"));
    let mut m = read_json(&blob_of(&l, &index["manifests"][0]));
    let good = index["manifests"][0].clone();
    index["manifests"][0]["mediaType"] = "application/vnd.oci.image.config.v1+json".into();
    fs::write(l.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    let e = import(&l, Some(Arch::X86_64), &dir.join("a.img")).err().unwrap();
    let want = format!(
        "index entry {}: media type `application/vnd.oci.image.config.v1+json` is neither an image manifest nor an index",
        good["digest"].as_str().unwrap()
    );
    assert_eq!(e, want);

    // A layer of a media type berth does not read.
    m["layers"][1]["mediaType"] = "application/vnd.example.layer.v1.squashfs".into();
    let bytes = serde_json::to_vec(&m).unwrap();
    let digest = format!("sha256:{}", hex(&Sha256::digest(&bytes)));
    fs::write(l.join("blobs/sha256").join(digest.trim_start_matches("sha256:")), &bytes).unwrap();
    index["manifests"][0] = good.clone();
    index["manifests"][0]["digest"] = digest.into();
    fs::write(l.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    let e = import(&l, Some(Arch::X86_64), &dir.join("a.img")).err().unwrap();
    let want = format!(
        "layer {}: media type `application/vnd.example.layer.v1.squashfs` is not a layer berth imports (a tar, gzip or zstd tar)",
        m["layers"][1]["digest"].as_str().unwrap()
    );
    assert_eq!(e, want);

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
    let p = blob_of(&l, &m["layers"][0]);
    let mut b = fs::read(&p).unwrap();
    b[600] ^= 1;
    fs::write(&p, &b).unwrap();
    let e = import(&l, Some(Arch::X86_64), &dir.join("a.img")).err().unwrap();
    let want =
        format!("blob {}: its content does not have this digest (it is sha256:{})", m["layers"][0]["digest"].as_str().unwrap(), hex(&Sha256::digest(&b)));
    assert_eq!(e, want);
    // A missing blob.
    fs::remove_file(&p).unwrap();
    let e = import(&l, Some(Arch::X86_64), &dir.join("a.img")).err().unwrap();
    let want = format!("blob {}: missing from the layout (No such file or directory (os error 2))", m["layers"][0]["digest"].as_str().unwrap());
    assert_eq!(e, want);
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

/// Stage the layout `l` (no image built): every path as "path kind mode
/// uid:gid", and the staged root.
fn staged(dir: &Path, l: &Path) -> Result<(Vec<String>, PathBuf), String> {
    let work = dir.join("work");
    let root = work.join("root");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).unwrap();
    let (_, tree, _) = stage(l, Some(Arch::X86_64), &work, &root)?;
    let list = tree.nodes.iter().map(|(p, n)| format!("/{p} {:?} {:o} {}:{}", n.kind, n.mode, n.uid, n.gid)).collect();
    Ok((list, root))
}

const MOUNTS: [&str; 4] = ["/dev Dir 755 0:0", "/proc Dir 755 0:0", "/sys Dir 755 0:0", "/tmp Dir 1777 0:0"];

fn expect(paths: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = paths.iter().chain(MOUNTS.iter()).map(|s| s.to_string()).collect();
    v.sort();
    v
}

#[test]
fn a_zstd_layer_over_a_plain_one() {
    let dir = scratch("zstd");
    let l = dir.join("layout");
    let lower = [Entry::Dir("etc", 0o755), Entry::File("etc/a.txt", b"lower a", 0o644, 0, 0), Entry::File("etc/b.txt", b"lower b", 0o600, 7, 8)];
    let upper = [Entry::File("etc/.wh.b.txt", b"", 0o644, 0, 0), Entry::File("etc/a.txt", b"upper a", 0o640, 1000, 1001), Entry::Symlink("etc/c", "a.txt")];
    let zst = packed(&upper, Pack::Zstd).unwrap();
    let magic = [0x28, 0xb5, 0x2f, 0xfd];
    assert_eq!(zst.bytes.windows(4).filter(|w| *w == magic).count(), 2, "two zstd frames");
    assert_eq!(zst.bytes.get(..4), Some(&magic[..]));
    write_layout(&l, &[packed(&lower, Pack::Tar).unwrap(), zst], "amd64", serde_json::json!({"Cmd": ["/bin/x"]})).unwrap();
    let (list, root) = staged(&dir, &l).unwrap();
    assert_eq!(list, expect(&["/ Dir 755 0:0", "/etc Dir 755 0:0", "/etc/a.txt File 640 1000:1001", "/etc/c Symlink 777 0:0"]));
    assert_eq!(fs::read(root.join("etc/a.txt")).unwrap(), b"upper a");
    assert!(!root.join("etc/b.txt").exists());
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_gzip_layer() {
    let dir = scratch("gzip");
    let l = dir.join("layout");
    let only = [Entry::Dir("srv", 0o750), Entry::File("srv/data", b"gz", 0o444, 5, 6)];
    write_layout(&l, &[packed(&only, Pack::Gzip).unwrap()], "amd64", serde_json::json!({})).unwrap();
    let (list, root) = staged(&dir, &l).unwrap();
    assert_eq!(list, expect(&["/ Dir 755 0:0", "/srv Dir 750 0:0", "/srv/data File 444 5:6"]));
    assert_eq!(fs::read(root.join("srv/data")).unwrap(), b"gz");
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_wrong_diff_id_is_refused() {
    let dir = scratch("diffid");
    let l = dir.join("layout");
    let only = [Entry::File("a", b"a", 0o644, 0, 0)];
    let mut b = packed(&only, Pack::Zstd).unwrap();
    let real = b.diff_id.clone();
    b.diff_id = format!("sha256:{}", "0".repeat(64));
    let digest = format!("sha256:{}", hex(&Sha256::digest(&b.bytes)));
    write_layout(&l, &[b], "amd64", serde_json::json!({})).unwrap();
    let e = staged(&dir, &l).err().unwrap();
    let want = format!("layer 1 ({digest}): its uncompressed tar is {real}, the config's diff_id says sha256:{}", "0".repeat(64));
    assert_eq!(e, want);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn an_unknown_layer_media_type_is_refused() {
    let dir = scratch("media");
    let l = dir.join("layout");
    let mut b = packed(&[Entry::File("a", b"a", 0o644, 0, 0)], Pack::Tar).unwrap();
    b.media = "application/vnd.oci.image.layer.v1.tar+lz4".into();
    let digest = format!("sha256:{}", hex(&Sha256::digest(&b.bytes)));
    write_layout(&l, &[b], "amd64", serde_json::json!({})).unwrap();
    let e = staged(&dir, &l).err().unwrap();
    assert_eq!(e, format!("layer {digest}: media type `application/vnd.oci.image.layer.v1.tar+lz4` is not a layer berth imports (a tar, gzip or zstd tar)"));
    let _ = fs::remove_dir_all(&dir);
}
