//! `cargo xtask bench [--quick] [--part N]...`: measure berth and write
//! `target/bench/report.md`, `report.json` and `boot-aarch64.svg`.
//!
//! | part | what | where |
//! |---|---|---|
//! | 1 | container start latency: berth, crun, runc, the kernel's floor | [`host`] (x86_64 host, root) |
//! | 2 | berth's per-container cost starting 1, 8, 32, 64 at once | [`host`] |
//! | 3 | boot to ready of an 8-container system under QEMU aarch64, and the timeline picture | [`boot`] |
//! | 4 | binary sizes; berth's RSS steady and after many restarts; the loop's worst stall during the restarts | [`footprint`] (the steady RSS comes from part 3's boots) |
//! | 5 | an update of one container against its cold start; unchanged containers restarted; the loop's worst stall during the update | [`update`] |
//! | 6 | container start latency on cgroup v2 inside a QEMU x86_64 guest: berth, crun (Debian's, for the guest), the floor | [`guest`] |
//!
//! Every figure is a median with min and max over its runs; a field that
//! could not be measured stays `null` in the JSON with the reason in its
//! note, never a made-up number. `--quick` shortens every part (for
//! `cargo xtask test`, so the benchmark cannot rot); `--part` runs only the
//! named parts (the others are reported as not run).

mod boot;
mod elfdeps;
mod footprint;
mod guest;
mod host;
mod json;
mod oci;
mod stats;
mod svg;
mod update;

use json::Json;
use stats::Stats;
use std::path::Path;

/// One reported figure.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    pub unit: &'static str,
    pub value: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub runs: usize,
    pub note: String,
}

impl Field {
    pub fn from_stats(name: &str, unit: &'static str, s: Option<Stats>, note: &str) -> Field {
        match s {
            Some(s) => Field { name: name.into(), unit, value: Some(s.median), min: Some(s.min), max: Some(s.max), runs: s.runs, note: note.into() },
            None => Field::missing(name, unit, &format!("no successful run ({note})")),
        }
    }

    pub fn missing(name: &str, unit: &'static str, reason: &str) -> Field {
        Field { name: name.into(), unit, value: None, min: None, max: None, runs: 0, note: reason.into() }
    }

    pub fn single(name: &str, unit: &'static str, value: f64, note: &str) -> Field {
        Field { name: name.into(), unit, value: Some(value), min: Some(value), max: Some(value), runs: 1, note: note.into() }
    }
}

/// The fields, in order, with their units and parts.
const FIELDS: &[(&str, &str, u8)] = &[
    ("start_ms_berth", "ms", 1),
    ("start_ms_crun", "ms", 1),
    ("start_ms_runc", "ms", 1),
    ("start_ms_floor", "ms", 1),
    ("start_ratio_berth_vs_crun", "x", 1),
    ("start_ratio_berth_vs_floor", "x", 1),
    ("scale_ms_per_container_1", "ms", 2),
    ("scale_ms_per_container_8", "ms", 2),
    ("scale_ms_per_container_32", "ms", 2),
    ("scale_ms_per_container_64", "ms", 2),
    ("boot_ms_kernel", "ms", 3),
    ("boot_ms_berth_to_all_ready", "ms", 3),
    ("boot_ratio_berth_vs_kernel", "x", 3),
    ("size_bytes_aarch64", "bytes", 4),
    ("size_bytes_armv7", "bytes", 4),
    ("size_bytes_x86_64", "bytes", 4),
    ("rss_kib_steady", "KiB", 3),
    ("memory_reserve_kib", "KiB", 3),
    ("loop_stall_ms_boot", "ms", 3),
    ("rss_kib_after_restarts", "KiB", 4),
    ("loop_stall_ms_restarts", "ms", 4),
    ("update_ratio_vs_cold_start", "x", 5),
    ("update_unchanged_restarted", "count", 5),
    ("loop_stall_ms_update", "ms", 5),
    ("start_ms_berth_v2", "ms", 6),
    ("start_ms_crun_v2", "ms", 6),
    ("start_ms_floor_v2", "ms", 6),
    ("start_ratio_berth_vs_crun_v2", "x", 6),
    ("start_ratio_berth_vs_floor_v2", "x", 6),
];

/// The whole report.
pub struct Report {
    pub fields: Vec<Field>,
    pub quick: bool,
    pub date: String,
}

impl Report {
    fn new(quick: bool, parts: &[u8]) -> Report {
        let fields = FIELDS
            .iter()
            .map(|(name, unit, part)| {
                let unit: &'static str = unit;
                if parts.contains(part) {
                    Field::missing(name, unit, "not measured: its part failed (see the notes)")
                } else {
                    Field::missing(name, unit, &format!("not run (--part did not name part {part})"))
                }
            })
            .collect();
        Report { fields, quick, date: today() }
    }

    /// Put a field in (replacing one of the same name).
    pub fn set(&mut self, f: Field) {
        match self.fields.iter_mut().find(|x| x.name == f.name) {
            Some(x) => *x = f,
            None => self.fields.push(f),
        }
    }

    pub fn get(&self, name: &str) -> Option<f64> {
        self.fields.iter().find(|f| f.name == name).and_then(|f| f.value)
    }

    /// Mark every still-missing field of `part` with why the part failed.
    fn part_failed(&mut self, part: u8, why: &str) {
        for (name, _, p) in FIELDS {
            if *p == part {
                if let Some(f) = self.fields.iter_mut().find(|f| f.name == *name && f.value.is_none()) {
                    f.note = format!("not measured: part {part} failed: {why}");
                }
            }
        }
    }

    fn to_json(&self) -> Json {
        let mut top = vec![("date".to_string(), Json::Str(self.date.clone())), ("quick".to_string(), Json::Bool(self.quick))];
        for f in &self.fields {
            top.push((f.name.clone(), Json::num(f.value)));
        }
        let details = self
            .fields
            .iter()
            .map(|f| {
                (
                    f.name.clone(),
                    Json::Obj(vec![
                        ("median".into(), Json::num(f.value)),
                        ("min".into(), Json::num(f.min)),
                        ("max".into(), Json::num(f.max)),
                        ("runs".into(), Json::Num(f.runs as f64)),
                        ("unit".into(), Json::Str(f.unit.into())),
                        ("note".into(), Json::Str(f.note.clone())),
                    ]),
                )
            })
            .collect();
        top.push(("details".into(), Json::Obj(details)));
        top.push((
            "targets".into(),
            Json::Arr(
                self.targets()
                    .into_iter()
                    .map(|(what, met, shown)| {
                        Json::Obj(vec![
                            ("target".into(), Json::Str(what.into())),
                            ("met".into(), met.map_or(Json::Null, Json::Bool)),
                            ("measured".into(), Json::Str(shown)),
                        ])
                    })
                    .collect(),
            ),
        ));
        Json::Obj(top)
    }

    /// The targets: (target, met or unknown, what was measured).
    fn targets(&self) -> Vec<(&'static str, Option<bool>, String)> {
        let g = |n: &str| self.get(n);
        let show = |v: Option<f64>, unit: &str| v.map_or("not measured".to_string(), |v| format!("{} {unit}", fmt_value(v)));
        let scale: Vec<f64> = host::SCALE.iter().filter_map(|n| g(&format!("scale_ms_per_container_{n}"))).collect();
        let flat = (scale.len() == host::SCALE.len()).then(|| {
            let max = scale.iter().copied().fold(f64::MIN, f64::max);
            let min = scale.iter().copied().fold(f64::MAX, f64::min);
            max / min
        });
        let growth = match (g("rss_kib_after_restarts"), g("rss_kib_before_restarts")) {
            (Some(a), Some(b)) => Some(a - b),
            _ => None,
        };
        let anon_growth = match (g("rss_anon_kib_after_restarts"), g("rss_anon_kib_before_restarts")) {
            (Some(a), Some(b)) => format!(" (anonymous memory: {} KiB more)", fmt_value(a - b)),
            _ => String::new(),
        };
        vec![
            ("berth start at most 0.3x crun's", g("start_ratio_berth_vs_crun").map(|r| r <= 0.3), show(g("start_ratio_berth_vs_crun"), "x")),
            ("berth start at most 2x the floor", g("start_ratio_berth_vs_floor").map(|r| r <= 2.0), show(g("start_ratio_berth_vs_floor"), "x")),
            ("per-container cost flat (within 1.5x) from 1 to 64", flat.map(|r| r <= 1.5), show(flat, "x (slowest / fastest)")),
            (
                "first event to all ready at most 10% of the kernel's boot",
                g("boot_ratio_berth_vs_kernel").map(|r| r <= 0.10),
                show(g("boot_ratio_berth_vs_kernel"), "x"),
            ),
            ("static aarch64 binary under 1 MiB", g("size_bytes_aarch64").map(|s| s < 1_048_576.0), show(g("size_bytes_aarch64"), "bytes")),
            ("RSS under 2 MiB steady", g("rss_kib_steady").map(|k| k < 2048.0), show(g("rss_kib_steady"), "KiB")),
            ("no RSS growth after 10,000 restarts", growth.map(|d| d <= 0.0).filter(|_| g("restarts_done").is_some_and(|n| n >= 10_000.0)), {
                let n = g("restarts_done").map_or("?".into(), fmt_value);
                format!("{} more after {n} restarts{anon_growth}", show(growth, "KiB"))
            }),
            (
                "update at most 1.5x a cold start, with 0 unchanged containers restarted",
                g("update_ratio_vs_cold_start").zip(g("update_unchanged_restarted")).map(|(r, n)| r <= 1.5 && n == 0.0),
                format!(
                    "{}, {} unchanged restarted",
                    show(g("update_ratio_vs_cold_start"), "x"),
                    g("update_unchanged_restarted").map_or("not measured".into(), fmt_value)
                ),
            ),
            (
                "berth start at most 0.3x crun's on cgroup v2 (guest)",
                g("start_ratio_berth_vs_crun_v2").map(|r| r <= 0.3),
                show(g("start_ratio_berth_vs_crun_v2"), "x"),
            ),
            (
                "berth start at most 2x the floor on cgroup v2 (guest)",
                g("start_ratio_berth_vs_floor_v2").map(|r| r <= 2.0),
                show(g("start_ratio_berth_vs_floor_v2"), "x"),
            ),
        ]
    }

    fn table(&self) -> String {
        let mut out = String::from("| field | median | min | max | runs | note |\n|---|---|---|---|---|---|\n");
        let opt = |v: Option<f64>| v.map_or("-".to_string(), fmt_value);
        for f in &self.fields {
            out.push_str(&format!(
                "| `{}` | {} | {} | {} | {} | {} |\n",
                f.name,
                f.value.map_or("not measured".to_string(), |v| format!("{} {}", fmt_value(v), f.unit)),
                opt(f.min),
                opt(f.max),
                f.runs,
                f.note.replace('|', "/").replace('\n', " ")
            ));
        }
        out
    }

    fn to_markdown(&self, notes: &[String]) -> String {
        let mut out = format!(
            "# berth benchmark\n\nRun on {} with `cargo xtask bench{}`.\n\n{}\n## Targets\n\n| target | measured | met |\n|---|---|---|\n",
            self.date,
            if self.quick { " --quick" } else { "" },
            self.table()
        );
        for (what, met, shown) in self.targets() {
            let m = match met {
                Some(true) => "yes",
                Some(false) => "no",
                None => "not known",
            };
            out.push_str(&format!("| {what} | {shown} | {m} |\n"));
        }
        if !notes.is_empty() {
            out.push_str("\n## Notes\n\n");
            for n in notes {
                out.push_str(&format!("- {n}\n"));
            }
        }
        out
    }
}

/// A value as shown: integers plain, others with 3 significant decimals.
fn fmt_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// Today's date (UTC), from `date`.
fn today() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%F"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "unknown date".into())
}

/// Options of `cargo xtask bench`.
pub struct Opts {
    pub quick: bool,
    pub parts: Vec<u8>,
}

/// The options of `--quick` and the `--part`s given (none: all six).
pub fn opts(quick: bool, parts: &[u8]) -> Opts {
    let parts = if parts.is_empty() { vec![1, 2, 3, 4, 5, 6] } else { parts.to_vec() };
    Opts { quick, parts }
}

/// Run the benchmark and write the report (also when a part failed: its
/// fields say why); then fail if any part failed.
pub fn run(root: &Path, o: &Opts) -> Result<(), String> {
    let mut report = Report::new(o.quick, &o.parts);
    let mut notes = Vec::new();
    let mut failed = Vec::new();
    let has = |p: u8| o.parts.contains(&p);
    let out = crate::cargo_target_dir(root).join("bench");
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;

    if has(1) || has(2) {
        let plan = if o.quick { host::Plan { warmup: 1, rounds: 5, scale_rounds: 1 } } else { host::Plan { warmup: 3, rounds: 200, scale_rounds: 15 } };
        if let Err(e) = host::run(root, &plan, &mut report, &mut notes) {
            notes.push(format!("parts 1-2 (host starts): {e}"));
            report.part_failed(1, &e);
            report.part_failed(2, &e);
            failed.push(e);
        }
    }
    if has(3) {
        let boots = if o.quick { 1 } else { 5 };
        match boot::run(root, boots, &mut report) {
            Ok(timeline) => {
                let svg = out.join("boot-aarch64.svg");
                std::fs::write(&svg, svg::timeline(&timeline)).map_err(|e| format!("{}: {e}", svg.display()))?;
                notes.push(timeline.summary());
            }
            Err(e) => {
                notes.push(format!("part 3 (boot): {e}"));
                report.part_failed(3, &e);
                failed.push(e);
            }
        }
    }
    if has(4) {
        let restarts = if o.quick { 200 } else { 10_000 };
        if let Err(e) = footprint::run(root, restarts, !o.quick, &mut report, &mut notes) {
            notes.push(format!("part 4 (footprint): {e}"));
            report.part_failed(4, &e);
            failed.push(e);
        }
    }
    if has(5) {
        let boots = if o.quick { 1 } else { 5 };
        match update::run(root, boots, &mut report) {
            Ok(note) => notes.push(note),
            Err(e) => {
                notes.push(format!("part 5 (update): {e}"));
                report.part_failed(5, &e);
                failed.push(e);
            }
        }
    }
    if has(6) {
        let plan = if o.quick { guest::Plan { warmup: 1, rounds: 10 } } else { guest::Plan { warmup: 3, rounds: 200 } };
        if let Err(e) = guest::run(root, &plan, &mut report, &mut notes) {
            notes.push(format!("part 6 (starts on cgroup v2 in the guest): {e}"));
            report.part_failed(6, &e);
            failed.push(e);
        }
    }

    let md = report.to_markdown(&notes);
    std::fs::write(out.join("report.md"), &md).map_err(|e| format!("{}: {e}", out.display()))?;
    std::fs::write(out.join("report.json"), report.to_json().to_text()).map_err(|e| format!("{}: {e}", out.display()))?;
    println!("{md}");
    crate::say(&format!("wrote {}/report.md, report.json and boot-aarch64.svg", out.display()));
    if !failed.is_empty() {
        return Err(format!("the benchmark failed: {}", failed.join("; ")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmeasured_fields_are_null_with_a_reason() {
        let mut r = Report::new(true, &[1]);
        r.set(Field::single("start_ms_berth", "ms", 1.5, "x"));
        let j = r.to_json().to_text();
        assert!(j.contains("\"start_ms_berth\": 1.5,"), "{j}");
        assert!(j.contains("\"rss_kib_steady\": null,"), "{j}");
        assert!(j.contains("not run (--part did not name part 3)"), "{j}");
        assert!(j.contains("\"update_ratio_vs_cold_start\": null,"), "{j}");
        assert!(j.contains("not run (--part did not name part 5)"), "{j}");
        assert!(j.contains("\"start_ms_berth_v2\": null,"), "{j}");
        assert!(j.contains("not run (--part did not name part 6)"), "{j}");
        let t = r.targets();
        assert_eq!(t[0].1, None, "no crun ratio, no verdict");
    }

    #[test]
    fn targets_judge_the_figures() {
        let mut r = Report::new(false, &[1, 2, 3, 4, 5]);
        r.set(Field::single("start_ratio_berth_vs_crun", "x", 0.25, ""));
        r.set(Field::single("start_ratio_berth_vs_floor", "x", 2.5, ""));
        for (n, v) in [(1, 1.0), (8, 1.2), (32, 1.4), (64, 1.6)] {
            r.set(Field::single(&format!("scale_ms_per_container_{n}"), "ms", v, ""));
        }
        r.set(Field::single("rss_kib_before_restarts", "KiB", 900.0, ""));
        r.set(Field::single("rss_kib_after_restarts", "KiB", 900.0, ""));
        r.set(Field::single("restarts_done", "count", 200.0, ""));
        let t = r.targets();
        assert_eq!(t[0].1, Some(true));
        assert_eq!(t[1].1, Some(false));
        assert_eq!(t[2].1, Some(false), "1.6 / 1.0 is not flat");
        assert_eq!(t[6].1, None, "200 restarts say nothing about 10,000");
        r.set(Field::single("restarts_done", "count", 10_000.0, ""));
        assert_eq!(r.targets()[6].1, Some(true));
        assert!(!r.targets()[6].2.contains("anonymous"));
        r.set(Field::single("rss_anon_kib_before_restarts", "KiB", 400.0, ""));
        r.set(Field::single("rss_anon_kib_after_restarts", "KiB", 404.0, ""));
        assert!(r.targets()[6].2.ends_with("(anonymous memory: 4 KiB more)"), "{}", r.targets()[6].2);
        assert_eq!(t[7].1, None, "no update figures, no verdict");
        r.set(Field::single("update_ratio_vs_cold_start", "x", 1.2, ""));
        r.set(Field::single("update_unchanged_restarted", "count", 1.0, ""));
        assert_eq!(r.targets()[7].1, Some(false), "an unchanged container restarted");
        r.set(Field::single("update_unchanged_restarted", "count", 0.0, ""));
        assert_eq!(r.targets()[7].1, Some(true));
        r.set(Field::single("update_ratio_vs_cold_start", "x", 1.6, ""));
        assert_eq!(r.targets()[7].1, Some(false));
        assert_eq!((r.targets()[8].1, r.targets()[9].1), (None, None), "no v2 figures, no verdict");
        r.set(Field::single("start_ratio_berth_vs_crun_v2", "x", 0.31, ""));
        r.set(Field::single("start_ratio_berth_vs_floor_v2", "x", 1.9, ""));
        assert_eq!((r.targets()[8].1, r.targets()[9].1), (Some(false), Some(true)));
        assert_eq!(r.targets()[8].2, "0.310 x");
    }

    #[test]
    fn options() {
        let o = opts(true, &[3]);
        assert!(o.quick);
        assert_eq!(o.parts, vec![3]);
        assert_eq!(opts(false, &[]).parts, vec![1, 2, 3, 4, 5, 6]);
    }
}
