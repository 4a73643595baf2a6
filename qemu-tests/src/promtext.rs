//! The status page's `/metrics`, read as Prometheus text (exposition
//! format 0.0.4) by a parser of the tests' own, not berth's renderer: every
//! family opens with `# HELP` and `# TYPE` lines, then its samples, each
//! `name{label="value",...} value [timestamp]` with the value a float. Then
//! [`check_demo`] asks for the families berth documents, with a series for
//! each of the release's containers.

/// A sample's labels, unescaped, in order.
pub type Labels = Vec<(String, String)>;

/// One sample: its labels (unescaped) and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Labels,
    pub value: f64,
}

/// One family: its name, type and samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: String,
    pub kind: String,
    pub samples: Vec<Sample>,
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':') && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn float(s: &str) -> Result<f64, String> {
    match s {
        "NaN" => Ok(f64::NAN),
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => s.parse().map_err(|_| format!("value {s:?} is not a float")),
    }
}

/// The label set of a sample, from just after `{`; the rest after `}`.
fn label_set(text: &str) -> Result<(Labels, &str), String> {
    let mut labels = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches(' ');
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = rest.find('=').ok_or("a label without =")?;
        let key = rest[..eq].trim_end_matches(' ');
        if !is_name(key) || key.contains(':') {
            return Err(format!("label name {key:?}"));
        }
        let body = rest[eq + 1..].trim_start_matches(' ').strip_prefix('"').ok_or("a label value without a quote")?;
        let mut value = String::new();
        let mut escaped = false;
        let mut end = None;
        for (i, c) in body.char_indices() {
            match (escaped, c) {
                (true, 'n') => value.push('\n'),
                (true, '\\' | '"') => value.push(c),
                (true, other) => return Err(format!("escape \\{other}")),
                (false, '\\') => {
                    escaped = true;
                    continue;
                }
                (false, '"') => {
                    end = Some(i);
                    break;
                }
                (false, c) => value.push(c),
            }
            escaped = false;
        }
        let end = end.ok_or("an unterminated label value")?;
        if labels.iter().any(|(k, _)| k == key) {
            return Err(format!("label {key} twice"));
        }
        labels.push((key.to_string(), value));
        rest = body[end + 1..].trim_start_matches(' ');
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if !rest.starts_with('}') {
            return Err("labels not separated by commas".into());
        }
    }
}

/// One sample line: its metric name and sample.
fn sample(line: &str) -> Result<(String, Sample), String> {
    let cut = line.find(['{', ' ']).ok_or("a sample without a value")?;
    let name = &line[..cut];
    if !is_name(name) {
        return Err(format!("metric name {name:?}"));
    }
    let (labels, rest) = match line[cut..].strip_prefix('{') {
        Some(inner) => label_set(inner)?,
        None => (Vec::new(), &line[cut..]),
    };
    let mut words = rest.split(' ').filter(|w| !w.is_empty());
    let value = float(words.next().ok_or("no value")?)?;
    if let Some(ts) = words.next() {
        ts.parse::<i64>().map_err(|_| format!("timestamp {ts:?}"))?;
    }
    if words.next().is_some() {
        return Err("text after the timestamp".into());
    }
    Ok((name.to_string(), Sample { labels, value }))
}

/// Parse `text`; the first fault with its line number.
pub fn parse(text: &str) -> Result<Vec<Family>, String> {
    let mut families: Vec<Family> = Vec::new();
    // The family whose HELP was read and whose TYPE is awaited.
    let mut helped: Option<String> = None;
    for (i, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", i + 1);
        if line.trim().is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or("");
            if !is_name(name) || families.iter().any(|f| f.name == name) || helped.is_some() {
                return Err(at("HELP out of place".into()));
            }
            helped = Some(name.to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut words = rest.split(' ');
            let (name, kind) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
            if helped.as_deref() != Some(name) || !matches!(kind, "counter" | "gauge" | "untyped" | "summary" | "histogram") {
                return Err(at("TYPE without its HELP, or of no known type".into()));
            }
            helped = None;
            families.push(Family { name: name.to_string(), kind: kind.to_string(), samples: Vec::new() });
        } else if line.starts_with('#') {
            continue;
        } else {
            let (name, s) = sample(line).map_err(at)?;
            match families.last_mut() {
                Some(f) if f.name == name && helped.is_none() => f.samples.push(s),
                _ => return Err(at("a sample before its family's HELP and TYPE".into())),
            }
        }
    }
    if helped.is_some() {
        return Err("a HELP without its TYPE at the end".into());
    }
    Ok(families)
}

/// The families berth's `metrics.prom` has, with their types.
pub const FAMILIES: [(&str, &str); 10] = [
    ("berth_info", "gauge"),
    ("berth_release_version", "gauge"),
    ("berth_update_phase", "gauge"),
    ("berth_loop_stall_max_seconds", "gauge"),
    ("berth_watchdog_pet_late_max_seconds", "gauge"),
    ("berth_container_state", "gauge"),
    ("berth_container_restarts_total", "counter"),
    ("berth_container_memory_bytes", "gauge"),
    ("berth_container_oom_kills_total", "counter"),
    ("berth_container_output_dropped_lines_total", "counter"),
];

fn label<'a>(s: &'a Sample, key: &str) -> Option<&'a str> {
    s.labels.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// `text` parses, has every family of [`FAMILIES`], the release's
/// `version`, exactly one state at 1 for each of `names` and a series of
/// each per-container family for each; the containers' states.
pub fn check_demo(text: &str, version: u64, names: &[String]) -> Result<Vec<(String, String)>, String> {
    let families = parse(text)?;
    let family = |n: &str| families.iter().find(|f| f.name == n);
    for (name, kind) in FAMILIES {
        match family(name) {
            Some(f) if f.kind == kind && !f.samples.is_empty() => {}
            _ => return Err(format!("no {kind} family {name} with samples")),
        }
    }
    let release = family("berth_release_version").and_then(|f| f.samples.first()).map(|s| s.value);
    if release != Some(version as f64) {
        return Err(format!("berth_release_version {release:?}, want {version}"));
    }
    let mut states = Vec::new();
    for n in names {
        let mine =
            |f: &str| family(f).map(|f| f.samples.iter().filter(|s| label(s, "name") == Some(n.as_str())).cloned().collect::<Vec<_>>()).unwrap_or_default();
        let on: Vec<Sample> = mine("berth_container_state").into_iter().filter(|s| s.value == 1.0).collect();
        match on.as_slice() {
            [s] => states.push((n.clone(), label(s, "state").unwrap_or("").to_string())),
            _ => return Err(format!("{n}: {} states at 1, want one", on.len())),
        }
        for (f, _) in FAMILIES.iter().skip(6) {
            if mine(f).len() != 1 {
                return Err(format!("{n}: not one series of {f}"));
            }
        }
    }
    Ok(states)
}

#[cfg(test)]
mod tests;
