use super::*;

type Labels = Vec<(String, String)>;

fn name_ok(n: &str) -> bool {
    n.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':') && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `key="value"` pairs up to the closing `}`; the text after it.
fn labels(mut s: &str) -> Result<(Labels, &str), String> {
    let mut list = Vec::new();
    loop {
        if let Some(rest) = s.strip_prefix('}') {
            return Ok((list, rest));
        }
        let (key, after) = s.split_once("=\"").ok_or_else(|| format!("no =\" in {s:?}"))?;
        if !name_ok(key) || key.contains(':') {
            return Err(format!("bad label name {key:?}"));
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape {other:?}")),
                },
                Some((_, '\n')) | None => return Err(format!("unterminated value {after:?}")),
                Some((_, c)) => value.push(c),
            }
        };
        list.push((key.to_string(), value));
        s = &after[end + 1..];
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        } else if !s.starts_with('}') {
            return Err(format!("no comma or brace at {s:?}"));
        }
    }
}

/// One sample line, by a grammar of the test's own: `name{labels} value`.
fn sample(line: &str) -> Result<(String, Labels, f64), String> {
    let end = line.find(['{', ' ']).ok_or_else(|| format!("no value: {line:?}"))?;
    let name = &line[..end];
    if !name_ok(name) {
        return Err(format!("bad name: {line:?}"));
    }
    let (list, rest) = match line[end..].strip_prefix('{') {
        Some(inner) => labels(inner)?,
        None => (Vec::new(), &line[end..]),
    };
    let value = rest.strip_prefix(' ').ok_or_else(|| format!("no space before the value: {line:?}"))?;
    let v = match value {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse::<f64>().map_err(|e| format!("value {v:?}: {e}"))?,
    };
    Ok((name.to_string(), list, v))
}

/// Every line checked: HELP then TYPE before a family's samples, no family
/// twice, samples only of the current family. The samples.
fn check(text: &str) -> Result<Vec<(String, Labels, f64)>, String> {
    if !text.ends_with('\n') {
        return Err("no final newline".into());
    }
    let mut seen: Vec<String> = Vec::new();
    let mut typed = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or("");
            if !name_ok(name) || seen.iter().any(|s| s == name) {
                return Err(format!("bad or repeated family {line:?}"));
            }
            seen.push(name.to_string());
            typed = false;
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut words = rest.split(' ');
            if words.next() != seen.last().map(String::as_str) || !matches!(words.next(), Some("gauge" | "counter")) || typed {
                return Err(format!("TYPE out of place: {line:?}"));
            }
            typed = true;
        } else {
            let s = sample(line)?;
            if !typed || Some(&s.0) != seen.last() {
                return Err(format!("sample outside its family: {line:?}"));
            }
            out.push(s);
        }
    }
    Ok(out)
}

fn value(samples: &[(String, Labels, f64)], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples.iter().find(|(n, l, _)| n == name && l.len() == labels.len() && l.iter().zip(labels).all(|((a, b), (c, d))| a == c && b == d)).map(|s| s.2)
}

fn sensor() -> Container<'static> {
    Container { name: "sensor", state: "running", restarts: 3, memory_bytes: 1 << 20, oom_kills: 1, dropped_lines: 42 }
}

#[test]
fn every_family_and_series_is_there_and_parses() {
    let mut out = Vec::new();
    let flaky = Container { name: "flaky", state: "failed", ..Container::default() };
    let device = Device { release: Some(7), update_phase: Some("trial"), stall_max_s: 0.0021, pet_late_max_s: 0.0 };
    render_as(&mut out, "1.2.3", &[sensor(), flaky], &device);
    let text = String::from_utf8(out).unwrap();
    let s = check(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(value(&s, "berth_info", &[("version", "1.2.3")]), Some(1.0));
    assert_eq!(value(&s, "berth_release_version", &[]), Some(7.0));
    assert_eq!(value(&s, "berth_update_phase", &[("phase", "trial")]), Some(1.0));
    assert_eq!(value(&s, "berth_update_phase", &[("phase", "none")]), Some(0.0));
    assert_eq!(value(&s, "berth_loop_stall_max_seconds", &[]), Some(0.0021));
    assert_eq!(value(&s, "berth_watchdog_pet_late_max_seconds", &[]), Some(0.0));
    assert_eq!(value(&s, "berth_container_state", &[("name", "sensor"), ("state", "running")]), Some(1.0));
    assert_eq!(value(&s, "berth_container_state", &[("name", "sensor"), ("state", "failed")]), Some(0.0));
    assert_eq!(value(&s, "berth_container_state", &[("name", "flaky"), ("state", "failed")]), Some(1.0));
    assert_eq!(s.iter().filter(|x| x.0 == "berth_container_state").count(), 2 * STATES.len());
    assert_eq!(value(&s, "berth_container_restarts_total", &[("name", "sensor")]), Some(3.0));
    assert_eq!(value(&s, "berth_container_memory_bytes", &[("name", "sensor")]), Some(1048576.0));
    assert_eq!(value(&s, "berth_container_oom_kills_total", &[("name", "sensor")]), Some(1.0));
    assert_eq!(value(&s, "berth_container_output_dropped_lines_total", &[("name", "sensor")]), Some(42.0));
    assert_eq!(value(&s, "berth_container_output_dropped_lines_total", &[("name", "flaky")]), Some(0.0));
    assert!(text.contains("# TYPE berth_container_restarts_total counter\n"), "{text}");
}

#[test]
fn nothing_running_and_no_update() {
    let mut out = vec![1, 2, 3];
    render(&mut out, &[], &Device::default());
    let text = String::from_utf8(out).unwrap();
    let s = check(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(value(&s, "berth_release_version", &[]), Some(0.0));
    assert_eq!(value(&s, "berth_update_phase", &[("phase", "none")]), Some(1.0));
    assert_eq!(value(&s, "berth_info", &[("version", env!("CARGO_PKG_VERSION"))]), Some(1.0));
    assert!(text.contains("# TYPE berth_container_state gauge\n"));
}

#[test]
fn odd_names_are_escaped() {
    let mut out = Vec::new();
    let odd = "a\"b\\c\nd}e,f=g é";
    render(&mut out, &[Container { name: odd, state: "nonsense", ..sensor() }], &Device::default());
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains(r#"{name="a\"b\\c\nd}e,f=g é"}"#), "{text}");
    let s = check(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(value(&s, "berth_container_restarts_total", &[("name", odd)]), Some(3.0));
    // A state outside the list: every series 0.
    assert!(s.iter().filter(|x| x.0 == "berth_container_state").all(|x| x.2 == 0.0));
}

#[test]
fn odd_floats_are_spelled_as_the_format_says() {
    let mut out = Vec::new();
    for (v, want) in [(f64::NAN, "NaN"), (f64::INFINITY, "+Inf"), (f64::NEG_INFINITY, "-Inf"), (1e300, "1e300"), (1e-300, "1e-300"), (0.5, "0.5")] {
        out.clear();
        float(&mut out, v);
        assert_eq!(out, want.as_bytes());
    }
}

#[test]
fn the_worst_case_fits_the_bound() {
    let name: String = "\"".repeat(crate::release::manifest::NAME_MAX);
    let c = Container { name: &name, state: "stopping", restarts: u32::MAX, memory_bytes: u64::MAX, oom_kills: u64::MAX, dropped_lines: u64::MAX };
    let many = vec![c; CONTAINERS_MAX + 5];
    let device = Device { release: Some(u64::MAX), update_phase: Some("rolled-back"), stall_max_s: -1.234_567_890_123e-7, pet_late_max_s: f64::MAX };
    let mut out = Vec::new();
    render(&mut out, &many, &device);
    assert!(out.len() <= MAX, "{} > {MAX}", out.len());
    let text = String::from_utf8(out).unwrap();
    let s = check(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(s.iter().filter(|x| x.0 == "berth_container_restarts_total").count(), CONTAINERS_MAX);
}

#[test]
fn the_checker_refuses_bad_text() {
    for bad in [
        "berth_x 1\n",
        "# HELP berth_x x\n# TYPE berth_x gauge\nberth_x{a=\"1} 1\n",
        "# HELP berth_x x\n# TYPE berth_x gauge\nberth_x{a=\"1\"} one\n",
        "# HELP berth_x x\n# TYPE berth_x gauge\nberth_y 1\n",
        "# HELP berth_x x\n# TYPE berth_x gauge\nberth_x 1",
    ] {
        assert!(check(bad).is_err(), "{bad:?}");
    }
}
