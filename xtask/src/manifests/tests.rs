use super::*;
use berth::release::board::Arch;
use std::path::PathBuf;

fn board() -> Board {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    crate::artifacts::load_board(&crate::artifacts::board_path(&root, Arch::ALL[0])).unwrap()
}

/// A scratch manifest directory with these files.
fn dir_with(files: &[(&str, &str)]) -> (PathBuf, Vec<PathBuf>) {
    let dir = std::env::temp_dir().join(format!("berth-xtask-manifests-{}-{}", std::process::id(), files.len()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let paths = files
        .iter()
        .map(|(name, text)| {
            let p = dir.join(name);
            fs::write(&p, text).unwrap();
            p
        })
        .collect();
    (dir, paths)
}

#[test]
fn every_file_reports_every_error_before_anything_is_built() {
    let a = concat!(
        "name = \"a\"\n",
        "version = \"1\"\n",
        "resources = { memory_max = \"512K\" }\n",
        "devices = [{ node = \"nope\", access = \"r\" }]\n",
        "[entry]\n",
        "argv = [\"/bin/a\"]\n",
        "[build]\n",
        "binary = \"a\"\n",
    );
    let b = "name = \"b\"\nversion = \"1\"\n[entry]\nargv = [\"/bin/b\"\n[build]\nbinary = \"b\"\n";
    let (dir, files) = dir_with(&[("a.toml", a), ("b.toml", b)]);
    let e = check(&dir, &files, &board()).err().unwrap();
    let lines: Vec<&str> = e.lines().collect();
    // a.toml line 3: `resources = { memory_max = ` is 27 characters; line 4:
    // `devices = [{ node = ` is 20. Its unknown node is a board error, found
    // along with the value error.
    assert!(lines[0].starts_with("a.toml:3:28: field resources.memory_max: must be between 1 MiB"), "{e}");
    assert!(lines[1].starts_with("a.toml:4:21: field devices[0].node: board "), "{e}");
    assert!(lines[1].contains("has no hardware node `nope`"), "{e}");
    // b.toml: the array left open on line 4 meets `[build]` on line 5.
    assert!(lines[2].starts_with("b.toml:5:1: field entry.argv: invalid array"), "{e}");
    assert_eq!(lines[3], "3 manifest errors; nothing was built");
    assert_eq!(lines.len(), 4, "{e}");
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn the_image_field_and_a_missing_build_table_are_refused_in_place() {
    let board = board();
    let e = read("a.toml", "a", "name = \"a\"\nversion = \"1\"\n[entry]\nargv = [\"/bin/a\"]\n", &board).err().unwrap();
    assert_eq!(e[0].to_string(), "a.toml:1:1: field build: needs a [build] table saying how its image is made");
    let text = "name = \"a\"\nversion = \"1\"\nimage = \"x\"\n[entry]\nargv = [\"/bin/a\"]\n[build]\nbinary = \"a\"\n";
    let e = read("a.toml", "a", text, &board).err().unwrap();
    assert!(e[0].to_string().starts_with("a.toml:3:9: field image: duplicate field `image`"), "{e:?}");
    let e = read("a.toml", "a", "name = \"a\"\nversion = \"1\"\nbuild = 3\n[entry]\nargv = [\"/bin/a\"]\n", &board).err().unwrap();
    assert_eq!(e[0].to_string(), "a.toml:3:9: field build: must be a table");
}

#[test]
fn set_errors_are_placed_in_their_file() {
    let a = "name = \"a\"\nversion = \"1\"\nafter = [\"b\"]\n[entry]\nargv = [\"/bin/a\"]\n[build]\nbinary = \"a\"\n";
    let b = "name = \"b\"\nversion = \"1\"\nafter = [\"zzz\"]\n[entry]\nargv = [\"/bin/b\"]\n[build]\nbinary = \"b\"\n";
    let (dir, files) = dir_with(&[("a.toml", a), ("b.toml", b), ("c.toml", &a.replace("\"a\"", "\"c\""))]);
    let e = check(&dir, &files, &board()).err().unwrap();
    // `after = [` is 9 characters.
    assert!(e.starts_with("b.toml:3:10: field after[0]: `zzz` is not a container in this release"), "{e}");
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn many_errors_are_capped() {
    let errors: Vec<String> = (0..ERRORS_MAX + 7).map(|i| format!("e{i}")).collect();
    let r = report(&errors);
    assert!(r.contains("... and 7 more"), "{r}");
    assert_eq!(r.lines().count(), ERRORS_MAX + 2);
}

/// A demo manifest written with units compiles to what its integer twin
/// does, so the device sees no change.
#[test]
fn the_demo_manifest_with_units_compiles_as_its_integer_twin() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/status-web.toml");
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.contains("memory_max = \"16M\""), "the demo shows a unit");
    let board = board();
    let a = read("status-web.toml", "status-web", &text, &board).unwrap_or_else(|e| panic!("{e:?}"));
    let twin = text.replace("memory_max = \"16M\"", "memory_max = 16777216");
    let b = read("status-web.toml", "status-web", &twin, &board).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(a.manifest, b.manifest);
}
