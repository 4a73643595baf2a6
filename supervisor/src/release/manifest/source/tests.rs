use super::*;

const IMAGE: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

fn host() -> Host<'static> {
    Host { skip: &["build"], image: Some(Digest([0x11; 32])) }
}

fn errors(text: &str) -> Vec<String> {
    match parse("manifests/sensor.toml", "sensor", text, host()) {
        Ok(m) => panic!("accepted: {m:?}"),
        Err(v) => v.iter().map(|e| e.to_string()).collect(),
    }
}

#[test]
fn line_and_column_are_one_based_in_characters() {
    let text = "ab\nçd = 1\n";
    assert_eq!(line_col(text, 0), (1, 1));
    assert_eq!(line_col(text, 2), (1, 3));
    assert_eq!(line_col(text, 3), (2, 1));
    // After the two-byte `ç`: the second character of line 2.
    assert_eq!(line_col(text, 5), (2, 2));
    // Inside `ç` and past the end are clamped, never a panic.
    assert_eq!(line_col(text, 4), (2, 1));
    assert_eq!(line_col(text, 999), (3, 1));
}

#[test]
fn two_errors_are_both_reported_with_file_line_and_column() {
    let text = concat!(
        "name = \"sensor\"\n",
        "version = \"1.0.0\"\n",
        "resources = { memory_max = 1000 }\n",
        "devices = [{ node = \"rng0\", access = \"x\" }]\n",
        "\n",
        "[entry]\n",
        "argv = [\"/bin/sensor\"]\n",
        "\n",
        "[build]\n",
        "cargo_bin = \"sensor\"\n",
    );
    // Line 3: `resources = { memory_max = ` is 27 characters, the value is
    // the 28th. Line 4: `devices = [{ node = "rng0", access = ` is 37.
    assert_eq!(
        errors(text),
        [
            "manifests/sensor.toml:3:28: field resources.memory_max: must be between 1 MiB and 1 TiB (in bytes)",
            "manifests/sensor.toml:4:38: field devices[0].access: must be a combination of r, w and m",
        ]
    );
}

#[test]
fn the_build_table_may_come_first_and_positions_stay_the_users() {
    let text = concat!("[build]\n", "cargo_bin = \"sensor\"\n", "[entry]\n", "argv = [\"sensor\"]\n",);
    let head = "name = \"sensor\"\nversion = \"1.0.0\"\n";
    let e = errors(&format!("{head}{text}"));
    // `argv = [` is 8 characters: the first argument is the 9th of line 6.
    assert_eq!(e, ["manifests/sensor.toml:6:9: field entry.argv[0]: must be an absolute path"]);
}

#[test]
fn a_syntax_error_is_placed() {
    let text = "name = \"sensor\"\nversion = \"1.0.0\"\n[entry]\nargv = [\"/bin/x\",, ]\n";
    let e = errors(text);
    assert_eq!(e.len(), 1);
    // `argv = ["/bin/x",` is 17 characters; the stray comma is the 18th.
    assert!(e[0].starts_with("manifests/sensor.toml:4:18: "), "{e:?}");
}

#[test]
fn unknown_wrong_and_duplicate_fields_are_placed() {
    let base = "name = \"sensor\"\nversion = \"1.0.0\"\n[entry]\nargv = [\"/bin/x\"]\n";
    let e = errors(&format!("{base}colour = \"blue\"\n"));
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("manifests/sensor.toml:5:1: field colour: unknown field `colour`"), "{e:?}");
    let e = errors(&format!("version = \"1.0.0\"\nimage = \"{IMAGE}\"\n[entry]\nargv = [\"/bin/x\"]\nname = \"sensor\"\n"));
    assert!(e[0].starts_with("manifests/sensor.toml:2:9: field image: duplicate field `image`"), "{e:?}");
    let e = errors(&base.replace("\"1.0.0\"", "7"));
    assert!(e[0].starts_with("manifests/sensor.toml:2:11: field version: "), "{e:?}");
    let e = errors("version = \"1.0.0\"\n[entry]\nargv = [\"/bin/x\"]\n");
    assert!(e[0].starts_with("manifests/sensor.toml:1:1: field name: missing field `name`"), "{e:?}");
}

#[test]
fn a_bad_unit_is_placed_and_names_the_forms() {
    let text = "name = \"sensor\"\nversion = \"1.0.0\"\nstop = { grace_ms = \"10x\" }\n[entry]\nargv = [\"/bin/x\"]\n";
    let e = errors(text);
    assert_eq!(e.len(), 1);
    // `stop = { grace_ms = ` is 20 characters.
    assert!(e[0].starts_with("manifests/sensor.toml:3:21: field stop.grace_ms: \"10x\" has an unknown unit; expected milliseconds"), "{e:?}");
    let e = errors(&text.replace("\"10x\"", "-5"));
    assert!(e[0].contains("must not be negative"), "{e:?}");
    let e = errors(&text.replace("\"10x\"", "\"50d\"").replace("stop = { grace_ms", "rlimits = { core"));
    assert!(e[0].contains("field rlimits.core: \"50d\" has an unknown unit; expected bytes"), "{e:?}");
    let e = errors(&text.replace("\"10x\"", "\"4G\"").replace("stop = { grace_ms", "rlimits = { core"));
    assert!(e[0].contains("4294967296 is too big for this field"), "{e:?}");
}

#[test]
fn the_name_must_match_and_errors_are_capped() {
    let mut text = String::from("name = \"other\"\nversion = \"1.0.0\"\n[entry]\nargv = [\"/bin/x\"]\nenv = [");
    for _ in 0..16 {
        text.push_str("\"A\", ");
    }
    text.push_str("]\n");
    let e = errors(&text);
    assert!(e[0].starts_with("manifests/sensor.toml:1:8: field name: `other` must equal the file name `sensor`"), "{e:?}");
    assert_eq!(e.len(), 17);
}

/// The demo manifests with units, and their integer twins.
const UNITS: &str = concat!(
    "name = \"sensor\"\n",
    "version = \"1.0.0\"\n",
    "resources = { memory_max = \"16M\" }\n",
    "rlimits = { core = \"1M\" }\n",
    "backoff = { initial_ms = \"1.5s\", cap_ms = \"1m\", stable_ms = \"1h\" }\n",
    "readiness = { notify = true, timeout_ms = \"20s\" }\n",
    "health = { watchdog_ms = \"500ms\", interval_ms = \"2m\", timeout_ms = \"10s\" }\n",
    "stop = { grace_ms = \"2.5s\" }\n",
    "mounts = [{ target = \"/tmp\", tmpfs_size = \"512K\" }, { target = \"/data\", volume = \"d\", volume_size = \"32MiB\" }]\n",
    "[entry]\n",
    "argv = [\"/bin/x\"]\n",
);
const INTEGERS: &str = concat!(
    "name = \"sensor\"\n",
    "version = \"1.0.0\"\n",
    "resources = { memory_max = 16777216 }\n",
    "rlimits = { core = 1048576 }\n",
    "backoff = { initial_ms = 1500, cap_ms = 60000, stable_ms = 3600000 }\n",
    "readiness = { notify = true, timeout_ms = 20000 }\n",
    "health = { watchdog_ms = 500, interval_ms = 120000, timeout_ms = 10000 }\n",
    "stop = { grace_ms = 2500 }\n",
    "mounts = [{ target = \"/tmp\", tmpfs_size = 524288 }, { target = \"/data\", volume = \"d\", volume_size = 33554432 }]\n",
    "[entry]\n",
    "argv = [\"/bin/x\"]\n",
);

#[test]
fn units_compile_to_exactly_the_integers() {
    let a = parse("a", "sensor", UNITS, host()).unwrap_or_else(|e| panic!("{e:?}"));
    let b = parse("b", "sensor", INTEGERS, host()).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(a, b);
    assert_eq!(a.image.to_string(), IMAGE);
    let (pa, pb) = (postcard::to_allocvec(&a).unwrap(), postcard::to_allocvec(&b).unwrap());
    assert_eq!(pa, pb);
    let back: Manifest = postcard::from_bytes(&pa).unwrap();
    assert_eq!(back, a);
    // The device-side parser of old accepts the integer form unchanged.
    let old = Manifest::from_toml("sensor", &format!("image = \"{IMAGE}\"\n{INTEGERS}")).unwrap();
    assert_eq!(old, b);
}

#[test]
fn every_value_error_of_a_file_is_reported_in_order() {
    let text = concat!(
        "name = \"sensor\"\n",
        "version = \"1 0\"\n",
        "rw_paths = [\"/\", \"/\"]\n",
        "socket_families = [\"can\", \"can\"]\n",
        "mounts = [{ target = \"/proc/x\", tmpfs_size = \"4K\" }]\n",
        "[entry]\n",
        "argv = [\"/bin/x\"]\n",
        "env = [\"NOEQUALS\"]\n",
    );
    // Columns: `version = ` is 10 characters, `env = [` 7, `mounts = [{
    // target = ` 21, `rw_paths = [` 12 and `rw_paths = ["/", ` 17,
    // `socket_families = ["can", ` 26. The order is the documented one.
    let e = errors(text);
    let at: Vec<&str> = e.iter().map(|l| l.split(": ").next().unwrap_or("")).collect();
    assert_eq!(
        at,
        [
            "manifests/sensor.toml:2:11",
            "manifests/sensor.toml:8:8",
            "manifests/sensor.toml:5:22",
            "manifests/sensor.toml:3:13",
            "manifests/sensor.toml:3:18",
            "manifests/sensor.toml:3:18",
            "manifests/sensor.toml:4:27",
        ],
        "{e:#?}"
    );
}
