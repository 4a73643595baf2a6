use super::*;

/// What berth writes for a two-container release (by hand, not by berth).
fn demo() -> String {
    let mut t = String::from(
        "# HELP berth_info berth's version.\n# TYPE berth_info gauge\nberth_info{version=\"0.1.0\"} 1\n\
         # HELP berth_release_version v\n# TYPE berth_release_version gauge\nberth_release_version 3\n\
         # HELP berth_update_phase p\n# TYPE berth_update_phase gauge\nberth_update_phase{phase=\"none\"} 1\nberth_update_phase{phase=\"trial\"} 0\n\
         # HELP berth_loop_stall_max_seconds s\n# TYPE berth_loop_stall_max_seconds gauge\nberth_loop_stall_max_seconds 0.0021\n\
         # HELP berth_watchdog_pet_late_max_seconds s\n# TYPE berth_watchdog_pet_late_max_seconds gauge\nberth_watchdog_pet_late_max_seconds 0\n\
         # HELP berth_container_state s\n# TYPE berth_container_state gauge\n\
         berth_container_state{name=\"sensor\",state=\"running\"} 1\nberth_container_state{name=\"sensor\",state=\"failed\"} 0\n\
         berth_container_state{name=\"flaky\",state=\"running\"} 0\nberth_container_state{name=\"flaky\",state=\"waiting\"} 1\n",
    );
    for (f, kind) in FAMILIES.iter().skip(6) {
        t += &format!("# HELP {f} h\n# TYPE {f} {kind}\n{f}{{name=\"sensor\"}} 5\n{f}{{name=\"flaky\"}} 0\n");
    }
    t
}

fn names() -> Vec<String> {
    vec!["sensor".to_string(), "flaky".to_string()]
}

#[test]
fn a_good_document_parses_and_has_the_demo() {
    let states = check_demo(&demo(), 3, &names()).unwrap();
    assert_eq!(states, vec![("sensor".into(), "running".into()), ("flaky".into(), "waiting".into())]);
    let f = parse(&demo()).unwrap();
    assert_eq!(f.len(), FAMILIES.len());
    assert_eq!(f[0].samples[0].labels, vec![("version".to_string(), "0.1.0".to_string())]);
}

#[test]
fn escapes_spaces_timestamps_and_special_values() {
    let t = "# HELP m x y z\n# TYPE m gauge\nm{a=\"q\\\"b\\\\c\\nd\", b = \"{},=\"} NaN 1700000000000\nm +Inf\nm -1.5e-3\n# a comment\n\n";
    let f = parse(t).unwrap();
    assert_eq!(f[0].samples[0].labels[0].1, "q\"b\\c\nd");
    assert_eq!(f[0].samples[0].labels[1].1, "{},=");
    assert!(f[0].samples[0].value.is_nan());
    assert_eq!(f[0].samples[1].value, f64::INFINITY);
    assert_eq!(f[0].samples[2].value, -0.0015);
}

#[test]
fn bad_documents_are_refused() {
    for bad in [
        "m 1\n",
        "# TYPE m gauge\nm 1\n",
        "# HELP m x\nm 1\n",
        "# HELP m x\n# TYPE m nonsense\nm 1\n",
        "# HELP m x\n# TYPE m gauge\nn 1\n",
        "# HELP m x\n# TYPE m gauge\nm one\n",
        "# HELP m x\n# TYPE m gauge\nm{a=\"1} 1\n",
        "# HELP m x\n# TYPE m gauge\nm{a=\"1\\t\"} 1\n",
        "# HELP m x\n# TYPE m gauge\nm{a=\"1\" b=\"2\"} 1\n",
        "# HELP m x\n# TYPE m gauge\nm{a=\"1\",a=\"2\"} 1\n",
        "# HELP m x\n# TYPE m gauge\nm{1a=\"1\"} 1\n",
        "# HELP m x\n# TYPE m gauge\nm 1 2 3\n",
        "# HELP m x\n# TYPE m gauge\nm 1\n# HELP m x\n# TYPE m gauge\n",
        "# HELP m x\n",
        "# HELP 9m x\n# TYPE 9m gauge\n9m 1\n",
    ] {
        assert!(parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn missing_families_or_containers_are_refused() {
    assert!(check_demo(&demo(), 4, &names()).unwrap_err().contains("berth_release_version"));
    assert!(check_demo(&demo(), 3, &["other".to_string()]).unwrap_err().contains("other: 0 states"));
    let no_oom = demo().replace("berth_container_oom_kills_total", "berth_container_oom_x");
    assert!(check_demo(&no_oom, 3, &names()).unwrap_err().contains("berth_container_oom_kills_total"));
    let two_on = demo().replace("state=\"failed\"} 0", "state=\"failed\"} 1");
    assert!(check_demo(&two_on, 3, &names()).unwrap_err().contains("sensor: 2 states"));
}
