//! `berthctl status --json` against the status file: the guest agent reads
//! both and reports whether they list the same containers and services in
//! the same states. The comparison is pure (here, unit tested); the two
//! documents are parsed with serde_json, a parser that is not berth's.

use serde_json::Value;

/// The `(name, state)` of every entry of a status document, in order.
pub fn entries(doc: &str) -> Result<Vec<(String, String)>, String> {
    let v: Value = serde_json::from_str(doc).map_err(|e| format!("not JSON: {e}"))?;
    if v["format"] != 1 {
        return Err(format!("format {} is not 1", v["format"]));
    }
    let list = v["containers"].as_array().ok_or("no containers array")?;
    list.iter()
        .map(|c| match (c["name"].as_str(), c["state"].as_str()) {
            (Some(n), Some(s)) => Ok((n.to_string(), s.to_string())),
            _ => Err(format!("an entry without a name or state: {c}")),
        })
        .collect()
}

/// Both documents parse and list the same entries in the same states: how
/// many, or what differs.
pub fn same_entries(ctl: &str, file: &str) -> Result<usize, String> {
    let a = entries(ctl).map_err(|e| format!("berthctl status --json: {e}"))?;
    let b = entries(file).map_err(|e| format!("status.json: {e}"))?;
    if a != b {
        return Err(format!("berthctl status --json has {a:?}, status.json {b:?}"));
    }
    Ok(a.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"{"format":1,"berth":"0.1.0","release":null,"containers":[{"name":"sensor","kind":"container","state":"running","ready":true,"restarts":0,"last_exit":"-","started_ms":5},{"name":"n\u00e9t","kind":"service","state":"stopped","ready":false,"restarts":0,"last_exit":"exit 0","started_ms":null}],"loop":{"handler_max_ms":0.1,"handler":"tick","pet_late_max_ms":0.0},"staging":false,"update":null}"#;

    #[test]
    fn same_entries_compares_names_and_states() {
        assert_eq!(entries(DOC).unwrap(), [("sensor".to_string(), "running".to_string()), ("nét".to_string(), "stopped".to_string())]);
        assert_eq!(same_entries(DOC, &DOC.replace("\"started_ms\":5", "\"started_ms\":7")), Ok(2));
        assert!(same_entries(DOC, &DOC.replace("running", "waiting")).unwrap_err().contains("status.json [(\"sensor\", \"waiting\")"));
        assert!(same_entries("{", DOC).unwrap_err().starts_with("berthctl status --json: not JSON"));
        assert!(same_entries(DOC, &DOC.replace("\"format\":1", "\"format\":2")).unwrap_err().contains("format 2"));
    }
}
