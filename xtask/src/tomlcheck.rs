//! The oracle for a decoded release: the TOML it was compiled from, read
//! as plain `toml::Value`s (not through berth's manifest parser), against
//! the decoded structs serialized to generic JSON.
//!
//! Every value the TOML sets must be the decoded value at the same path;
//! every decoded field the TOML leaves out must be empty (absent, false,
//! zero or an empty list) or the default the caller states for that path
//! (a container's working directory is `/`), except the paths the caller
//! names as filled in (the image digest, which xtask makes from the
//! `[build]` table). A string with a unit (`"16M"`, `"10s"`) stands for
//! the integer the unit makes.

use serde_json::Value as Json;
use toml::Value as Toml;

/// What the TOML need not say: paths the compiler fills in, and the
/// values (as JSON text) that fields the TOML leaves out must have when
/// they are not empty.
#[derive(Default)]
pub struct Unsaid<'a> {
    pub filled_in: &'a [&'a str],
    pub defaults: &'a [(&'a str, &'a str)],
}

/// The differences between `toml` and `decoded`, each naming its path.
pub fn differences(toml: &Toml, decoded: &Json, unsaid: &Unsaid) -> Vec<String> {
    let mut out = Vec::new();
    walk("", toml, decoded, unsaid, &mut out);
    out
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn walk(path: &str, t: &Toml, d: &Json, unsaid: &Unsaid, out: &mut Vec<String>) {
    match (t, d) {
        (Toml::Table(tt), Json::Object(dd)) => {
            for (k, tv) in tt {
                let p = join(path, k);
                match dd.get(k) {
                    Some(dv) => walk(&p, tv, dv, unsaid, out),
                    None => out.push(format!("{p}: the TOML sets {tv} but it was not decoded")),
                }
            }
            for (k, dv) in dd {
                let p = join(path, k);
                if tt.contains_key(k) || unsaid.filled_in.contains(&p.as_str()) {
                    continue;
                }
                match unsaid.defaults.iter().find(|(at, _)| *at == p) {
                    Some((_, want)) if serde_json::from_str::<Json>(want).ok().as_ref() != Some(dv) => {
                        out.push(format!("{p}: not in the TOML, so {want}, but decoded as {dv}"))
                    }
                    Some(_) => {}
                    None if is_empty(dv) => {}
                    None => out.push(format!("{p}: not in the TOML but decoded as {dv}")),
                }
            }
        }
        (Toml::Array(ta), Json::Array(da)) => {
            if ta.len() != da.len() {
                out.push(format!("{path}: {} items in the TOML, {} decoded", ta.len(), da.len()));
            }
            for (i, (tv, dv)) in ta.iter().zip(da).enumerate() {
                walk(&format!("{path}[{i}]"), tv, dv, unsaid, out);
            }
        }
        _ => {
            if !same_scalar(t, d) {
                out.push(format!("{path}: the TOML sets {t} but {d} was decoded"));
            }
        }
    }
}

fn same_scalar(t: &Toml, d: &Json) -> bool {
    match (t, d) {
        (Toml::String(a), Json::String(b)) => a == b,
        // A size or duration written with a unit ("16M", "10s"): the
        // integer it stands for.
        (Toml::String(a), Json::Number(b)) => {
            use berth::release::manifest::units::{parse, Kind};
            [Kind::Size, Kind::Duration].into_iter().any(|k| parse(k, a).ok().is_some_and(|v| b.as_u64() == Some(v)))
        }
        (Toml::Integer(a), Json::Number(b)) => b.as_i64() == Some(*a),
        (Toml::Float(a), Json::Number(b)) => b.as_f64() == Some(*a),
        (Toml::Boolean(a), Json::Bool(b)) => a == b,
        _ => false,
    }
}

/// What serde makes of a field left at its default.
fn is_empty(d: &Json) -> bool {
    match d {
        Json::Null => true,
        Json::Bool(b) => !b,
        Json::Number(n) => n.as_f64() == Some(0.0),
        Json::String(s) => s.is_empty(),
        Json::Array(a) => a.is_empty(),
        Json::Object(o) => o.values().all(is_empty),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Each demo manifest, through berth's own parser and back out as JSON,
    /// is what the plain TOML says; a changed decoded value is named.
    #[test]
    fn demo_manifests_against_their_toml() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests");
        let mut seen = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
            if path.extension().is_none_or(|x| x != "toml") || stem == "release" {
                continue;
            }
            let mut table: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
            table.remove("build");
            let mut with_image = table.clone();
            with_image.insert("image".into(), format!("sha256:{}", "ab".repeat(32)).into());
            let m = berth::release::manifest::Manifest::from_toml(&stem, &with_image.to_string()).unwrap();
            let mut json = serde_json::to_value(&m).unwrap();
            let t = Toml::Table(table);
            let unsaid = Unsaid { filled_in: &["image"], defaults: &[("entry.workdir", "\"/\"")] };
            assert_eq!(differences(&t, &json, &unsaid), Vec::<String>::new());
            let all_said = Unsaid { defaults: unsaid.defaults, ..Unsaid::default() };
            assert_eq!(differences(&t, &json, &all_said), [format!("image: not in the TOML but decoded as \"sha256:{}\"", "ab".repeat(32))]);
            json["entry"]["argv"][0] = "/bin/other".into();
            json["entry"]["workdir"] = "/srv".into();
            json["oneshot"] = true.into();
            let d = differences(&t, &json, &unsaid);
            assert_eq!(d.len(), 3, "{d:?}");
            assert!(d[0].starts_with("entry.argv[0]: the TOML sets"), "{d:?}");
            assert_eq!(d[1], "entry.workdir: not in the TOML, so \"/\", but decoded as \"/srv\"");
            assert_eq!(d[2], "oneshot: not in the TOML but decoded as true");
            seen += 1;
        }
        assert!(seen >= 4, "{seen} manifests");
    }

    #[test]
    fn shapes_and_lengths() {
        let t: toml::Table = "a = [1, 2]\nb = { c = \"x\" }\n".parse().unwrap();
        let t = Toml::Table(t);
        let d = serde_json::json!({"a": [1], "b": {"c": "y", "d": 0}, "e": []});
        assert_eq!(differences(&t, &d, &Unsaid::default()), ["a: 2 items in the TOML, 1 decoded", "b.c: the TOML sets \"x\" but \"y\" was decoded"]);
        let d = serde_json::json!({"b": {"c": "x"}});
        assert_eq!(differences(&t, &d, &Unsaid::default()), ["a: the TOML sets [1, 2] but it was not decoded"]);
    }

    #[test]
    fn units_stand_for_their_integers() {
        let t: toml::Table = "m = \"16M\"\nd = \"10s\"\nx = \"16M\"\n".parse().unwrap();
        let d = serde_json::json!({"m": 16_777_216, "d": 10_000, "x": 16_000_000});
        assert_eq!(differences(&Toml::Table(t), &d, &Unsaid::default()), ["x: the TOML sets \"16M\" but 16000000 was decoded"]);
    }
}
