//! hawkBit's Direct Device Integration (DDI) API, the parts the agent uses:
//! the polling resource (`config.polling.sleep`, `_links.configData`,
//! `_links.deploymentBase`), the deployment base (action id, chunks,
//! artifacts with size, hashes and download link), config data and action
//! feedback. Pure functions over JSON: no I/O here.
//!
//! Feedback is `{"status":{"execution":..,"result":{"finished":..},
//! "details":[..]}}`; the action id travels in the URL
//! (`.../deploymentBase/{actionId}/feedback`), which is what gooseBit reads
//! (its feedback schema has no `id` field) and what hawkBit's current API
//! takes.

use serde_json::{json, Value};
use std::time::Duration;

/// Poll interval when the server gives none or garbage.
pub const DEFAULT_SLEEP: Duration = Duration::from_secs(300);
const MIN_SLEEP: Duration = Duration::from_secs(1);
const MAX_SLEEP: Duration = Duration::from_secs(86_400);
/// Longest string field taken from the server (names, hrefs, hashes).
const FIELD_MAX: usize = 2048;

/// What a poll said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poll {
    pub sleep: Duration,
    /// Set when `config.polling.sleep` was present but not usable.
    pub sleep_note: Option<String>,
    pub config_data: Option<String>,
    pub deployment: Option<String>,
}

/// The artifact the agent takes from a deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    pub filename: String,
    pub size: u64,
    pub sha256: Option<String>,
    pub sha1: Option<String>,
    pub href: String,
}

/// A deployment: its action and the artifact to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    pub action_id: String,
    /// The chunk's version (gooseBit: the `.swu`'s `N.0.0`), if any.
    pub version: Option<String>,
    pub artifact: Artifact,
}

/// Reads a polling response.
pub fn parse_poll(v: &Value) -> Result<Poll, String> {
    if !v.is_object() {
        return Err("poll response: not a JSON object".into());
    }
    let (sleep, sleep_note) = match v.pointer("/config/polling/sleep") {
        None => (DEFAULT_SLEEP, None),
        Some(s) => match s.as_str().ok_or("not a string".to_string()).and_then(parse_sleep) {
            Ok(d) => (d, None),
            Err(e) => (DEFAULT_SLEEP, Some(format!("config.polling.sleep {s}: {e}; polling every {} s", DEFAULT_SLEEP.as_secs()))),
        },
    };
    Ok(Poll { sleep, sleep_note, config_data: link(v, "configData")?, deployment: link(v, "deploymentBase")? })
}

fn link(v: &Value, name: &str) -> Result<Option<String>, String> {
    match v.pointer(&format!("/_links/{name}/href")) {
        None => Ok(None),
        Some(h) => field(h, &format!("_links.{name}.href")).map(Some),
    }
}

/// A bounded string field.
fn field(v: &Value, what: &str) -> Result<String, String> {
    let s = v.as_str().ok_or_else(|| format!("{what}: not a string"))?;
    if s.is_empty() || s.len() > FIELD_MAX {
        return Err(format!("{what}: empty or longer than {FIELD_MAX} bytes"));
    }
    Ok(s.to_string())
}

/// `HH:MM:SS`, at least 1 s and at most a day.
pub fn parse_sleep(s: &str) -> Result<Duration, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let nums: Option<Vec<u64>> =
        parts.iter().map(|p| if (1..=2).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()) { p.parse().ok() } else { None }).collect();
    let Some([h, m, sec]) = nums.as_deref().map(|n| <[u64; 3]>::try_from(n).ok()).unwrap_or(None) else {
        return Err("not HH:MM:SS".into());
    };
    if m > 59 || sec > 59 {
        return Err("minutes or seconds above 59".into());
    }
    let d = Duration::from_secs(h * 3600 + m * 60 + sec);
    if d < MIN_SLEEP || d > MAX_SLEEP {
        return Err("outside 00:00:01..=24:00:00".into());
    }
    Ok(d)
}

/// Reads a deployment base: the first chunk's artifact named `*.swu` or
/// `*.bundle`.
pub fn parse_deployment(v: &Value) -> Result<Deployment, String> {
    let action_id = match v.get("id") {
        Some(Value::Number(n)) => n.to_string(),
        Some(s) => field(s, "deployment id")?,
        None => return Err("deployment: no `id`".into()),
    };
    let chunk = v.pointer("/deployment/chunks/0").ok_or("deployment: no chunk")?;
    let version = chunk.get("version").map(|s| field(s, "chunk version")).transpose()?;
    let artifacts = chunk.get("artifacts").and_then(Value::as_array).ok_or("deployment: the first chunk has no artifacts list")?;
    for a in artifacts {
        let filename = field(a.get("filename").unwrap_or(&Value::Null), "artifact filename")?;
        if !(filename.ends_with(".swu") || filename.ends_with(".bundle")) {
            continue;
        }
        let size = a.get("size").and_then(Value::as_u64).ok_or_else(|| format!("artifact {filename}: no size"))?;
        let sha256 = hash(a, "sha256", 64)?;
        let sha1 = hash(a, "sha1", 40)?;
        if sha256.is_none() && sha1.is_none() {
            return Err(format!("artifact {filename}: neither a sha256 nor a sha1 hash"));
        }
        let href = a
            .pointer("/_links/download-http/href")
            .or_else(|| a.pointer("/_links/download/href"))
            .ok_or_else(|| format!("artifact {filename}: no download link"))?;
        let href = field(href, &format!("artifact {filename}: download href"))?;
        return Ok(Deployment { action_id, version, artifact: Artifact { filename, size, sha256, sha1, href } });
    }
    Err("deployment: no artifact named *.swu or *.bundle in the first chunk".into())
}

fn hash(a: &Value, name: &str, len: usize) -> Result<Option<String>, String> {
    let Some(h) = a.pointer(&format!("/hashes/{name}")) else { return Ok(None) };
    let h = h.as_str().ok_or_else(|| format!("hashes.{name}: not a string"))?;
    if h.len() != len || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("hashes.{name}: not {len} hex digits"));
    }
    Ok(Some(h.to_ascii_lowercase()))
}

/// The feedback resource of a deployment base link (its query dropped).
pub fn feedback_url(deployment_href: &str) -> String {
    let base = deployment_href.split('?').next().unwrap_or(deployment_href);
    format!("{}/feedback", base.trim_end_matches('/'))
}

/// DDI's `execution`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Execution {
    Proceeding,
    Closed,
}

/// DDI's `result.finished`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    None,
    Success,
    Failure,
}

/// A feedback body.
pub fn feedback(execution: Execution, finished: Finished, details: &[String]) -> Value {
    let execution = match execution {
        Execution::Proceeding => "proceeding",
        Execution::Closed => "closed",
    };
    let finished = match finished {
        Finished::None => "none",
        Finished::Success => "success",
        Finished::Failure => "failure",
    };
    json!({"status": {"execution": execution, "result": {"finished": finished}, "details": details}})
}

/// The config data body. `board`, `berth` and `release` are berth's names;
/// `hw_boardname`, `hw_revision` and `sw_version` are the names SWUpdate
/// sends, which gooseBit reads to match software to hardware (`.swu`s from
/// `cargo xtask bundle --swu` name the board with revision `default`).
pub fn config_data(board: &str, berth: Option<&str>, release: Option<u64>) -> Value {
    let mut data = json!({"board": board, "hw_boardname": board, "hw_revision": "default"});
    if let Some(b) = berth {
        data["berth"] = json!(b);
    }
    if let Some(r) = release {
        data["release"] = json!(r.to_string());
        data["sw_version"] = json!(format!("{r}.0.0"));
    }
    json!({"mode": "replace", "data": data})
}

/// The release version a chunk version names: `N` or `N.0.0`.
pub fn release_of(version: &str) -> Option<u64> {
    let head = version.strip_suffix(".0.0").unwrap_or(version);
    head.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gooseBit 0.2 polling answer, as recorded: a device not yet
    /// registered gets only configData and a 10 s sleep.
    const POLL_REGISTER: &str =
        r#"{"config":{"polling":{"sleep":"00:00:10"}},"_links":{"configData":{"href":"http://127.0.0.1:1/DEFAULT/controller/v1/d/configData"}}}"#;
    /// A gooseBit 0.2 deployment base, as recorded (sha1 only).
    const DEPLOY: &str = r#"{"id":"1","deployment":{"download":"forced","update":"forced","chunks":[{"part":"os","version":"7.0.0","name":"r.swu","artifacts":[{"filename":"r.swu","hashes":{"sha1":"da39a3ee5e6b4b0d3255bfef95601890afd80709"},"size":1536,"_links":{"download":{"href":"http://127.0.0.1:1/DEFAULT/controller/v1/d/download"}}}]}]}}"#;

    #[test]
    fn a_poll_with_config_data_and_its_sleep() {
        let p = parse_poll(&serde_json::from_str(POLL_REGISTER).unwrap()).unwrap();
        assert_eq!(p.sleep, Duration::from_secs(10));
        assert_eq!(p.config_data.as_deref(), Some("http://127.0.0.1:1/DEFAULT/controller/v1/d/configData"));
        assert_eq!((p.deployment, p.sleep_note), (None, None));
    }

    #[test]
    fn sleep_is_bounded_and_garbage_falls_back() {
        assert_eq!(parse_sleep("24:00:00"), Ok(Duration::from_secs(86_400)));
        for bad in ["00:00:00", "24:00:01", "1:2", "aa:00:01", "00:61:00", "", "00:00:001"] {
            assert!(parse_sleep(bad).is_err(), "{bad}");
        }
        let p = parse_poll(&json!({"config":{"polling":{"sleep":"soon"}}})).unwrap();
        assert_eq!(p.sleep, DEFAULT_SLEEP);
        assert!(p.sleep_note.unwrap().contains("not HH:MM:SS"));
        assert!(parse_poll(&json!([1])).unwrap_err().contains("not a JSON object"));
    }

    #[test]
    fn a_goosebit_deployment() {
        let d = parse_deployment(&serde_json::from_str(DEPLOY).unwrap()).unwrap();
        assert_eq!(d.action_id, "1");
        assert_eq!(d.version.as_deref(), Some("7.0.0"));
        assert_eq!(d.artifact.size, 1536);
        assert_eq!(d.artifact.sha1.as_deref(), Some("da39a3ee5e6b4b0d3255bfef95601890afd80709"));
        assert_eq!(d.artifact.href, "http://127.0.0.1:1/DEFAULT/controller/v1/d/download");
        assert_eq!(release_of("7.0.0"), Some(7));
    }

    #[test]
    fn a_hawkbit_style_deployment_takes_the_bundle_and_its_sha256() {
        let v = json!({"id": 42, "deployment": {"chunks": [{"artifacts": [
            {"filename": "notes.txt", "size": 1, "hashes": {"sha1": "0".repeat(40)}, "_links": {"download-http": {"href": "http://a/n"}}},
            {"filename": "x.bundle", "size": 9, "hashes": {"sha256": "AB".repeat(32), "md5": "0"}, "_links": {"download-http": {"href": "http://a/x"}}}]}]}});
        let d = parse_deployment(&v).unwrap();
        assert_eq!((d.action_id.as_str(), d.artifact.filename.as_str(), d.artifact.href.as_str()), ("42", "x.bundle", "http://a/x"));
        assert_eq!(d.artifact.sha256, Some("ab".repeat(32)));
    }

    #[test]
    fn malformed_deployments_are_refused_by_name() {
        let art = |a: Value| json!({"id": "1", "deployment": {"chunks": [{"artifacts": [a]}]}});
        let link = json!({"download": {"href": "http://a/x"}});
        let cases = [
            (json!({"deployment": {}}), "deployment: no `id`"),
            (json!({"id": "1", "deployment": {"chunks": []}}), "deployment: no chunk"),
            (art(json!({"filename": "a.swu", "hashes": {"sha1": "0".repeat(40)}, "_links": link})), "artifact a.swu: no size"),
            (art(json!({"filename": "a.swu", "size": 1, "hashes": {"sha1": "xyz"}, "_links": link})), "hashes.sha1: not 40 hex digits"),
            (art(json!({"filename": "a.swu", "size": 1, "hashes": {}, "_links": link})), "artifact a.swu: neither"),
            (art(json!({"filename": "a.swu", "size": 1, "hashes": {"sha1": "0".repeat(40)}})), "artifact a.swu: no download link"),
            (art(json!({"filename": "a.zip", "size": 1})), "deployment: no artifact named"),
            (art(json!({"filename": "x".repeat(3000) + ".swu", "size": 1})), "artifact filename: empty or longer"),
        ];
        for (v, want) in cases {
            let e = parse_deployment(&v).unwrap_err();
            assert!(e.starts_with(want), "want {want:?}, got {e:?}");
        }
    }

    #[test]
    fn bodies_and_urls() {
        assert_eq!(feedback_url("http://h/T/controller/v1/d/deploymentBase/3?c=-2"), "http://h/T/controller/v1/d/deploymentBase/3/feedback");
        let f = feedback(Execution::Closed, Finished::Failure, &["rolled-back: crash loop".into()]);
        assert_eq!(f.to_string(), r#"{"status":{"details":["rolled-back: crash loop"],"execution":"closed","result":{"finished":"failure"}}}"#);
        let c = config_data("qemu-x86_64", Some("0.1.0"), Some(3));
        assert_eq!(c["mode"], "replace");
        assert_eq!(c["data"]["release"], "3");
        assert_eq!(c["data"]["sw_version"], "3.0.0");
        assert_eq!(c["data"]["hw_boardname"], "qemu-x86_64");
    }
}
