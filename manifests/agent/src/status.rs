//! berth's status view, as the agent reads it: `status.json` (format 1,
//! written by berth as a temporary name and a rename), of which the agent
//! uses `berth` (its version), `release.version` and `release.phase`, and
//! `update`, the last update of this boot:
//! `{"seq":..,"id":"sha256:<hex>","phase":"staging|trial|rebooting|committed|rolled-back|refused",
//! "result":"pending|reboot|ok|failed","cause":..,"detail":..}` or `null`.
//!
//! [`decide`] turns that into DDI's final result for a pending action.

use serde_json::Value;
use std::path::Path;

/// Largest status file read.
const STATUS_MAX: u64 = 1 << 20;
pub const FILE: &str = "status.json";

/// The fields of `status.json` the agent uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    pub berth: Option<String>,
    pub release_version: Option<u64>,
    pub release_phase: Option<String>,
    pub update: Option<Update>,
}

/// The status view's `update` object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub id: String,
    pub phase: String,
    pub cause: Option<String>,
    pub detail: Option<String>,
}

/// Reads `status.json` in `dir`.
pub fn read(dir: &Path) -> Result<Status, String> {
    let path = dir.join(FILE);
    let meta = std::fs::metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.len() > STATUS_MAX {
        return Err(format!("{}: {} bytes, more than {STATUS_MAX}", path.display(), meta.len()));
    }
    let text = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(|s| s.chars().take(1024).collect())
}

/// Parses the text of `status.json`.
pub fn parse(bytes: &[u8]) -> Result<Status, String> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("malformed JSON: {e}"))?;
    if !v.is_object() {
        return Err("not a JSON object".into());
    }
    let release = v.get("release").filter(|r| r.is_object());
    let update = match v.get("update") {
        Some(u) if u.is_object() => Some(Update {
            id: text(u, "id").ok_or("update.id: missing or not a string")?,
            phase: text(u, "phase").ok_or("update.phase: missing or not a string")?,
            cause: text(u, "cause"),
            detail: text(u, "detail"),
        }),
        _ => None,
    };
    Ok(Status {
        berth: text(&v, "berth"),
        release_version: release.and_then(|r| r.get("version")).and_then(Value::as_u64),
        release_phase: release.and_then(|r| text(r, "phase")),
        update,
    })
}

/// What the agent waits for: the bundle's id in the status view, the
/// release version it carries (when known), and whether the device has
/// rebooted since the bundle was dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect<'a> {
    /// `sha256:<hex>` of the bundle file.
    pub id: &'a str,
    pub version: Option<u64>,
    pub rebooted: bool,
}

/// berth's verdict on a pending update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Wait,
    Success(Vec<String>),
    Failure(Vec<String>),
}

/// Decides from one reading of the status view.
///
/// While the view's `update` is this bundle's: `committed` is success,
/// `refused` and `rolled-back` are failure (with berth's cause and detail),
/// anything else is still on its way. After a reboot the `update` of the
/// earlier boot is gone: then the running release decides — the expected
/// version committed is success, another version committed is failure
/// ("rolled back across a reboot"), a trial waits.
pub fn decide(s: &Status, want: &Expect) -> Verdict {
    if let Some(u) = s.update.as_ref().filter(|u| u.id == want.id) {
        let mut details = vec![format!("berth: {} {}", u.id, u.phase)];
        details.extend(u.cause.iter().map(|c| format!("cause: {c}")));
        details.extend(u.detail.iter().filter(|d| !d.is_empty()).map(|d| format!("detail: {d}")));
        return match u.phase.as_str() {
            "committed" => Verdict::Success(details),
            "refused" | "rolled-back" => Verdict::Failure(details),
            _ => Verdict::Wait,
        };
    }
    if !want.rebooted {
        return Verdict::Wait;
    }
    let (Some(expected), Some(running), Some("committed")) = (want.version, s.release_version, s.release_phase.as_deref()) else {
        return Verdict::Wait;
    };
    if running == expected {
        Verdict::Success(vec![format!("berth: release {running} committed (after a reboot)")])
    } else {
        Verdict::Failure(vec![
            "cause: rolled back across a reboot".to_string(),
            format!("detail: expected release {expected}, running release {running} committed"),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "sha256:00ff";

    fn with_update(phase: &str, cause: &str) -> Status {
        let text = format!(
            r#"{{"format":1,"berth":"0.1.0","release":{{"version":3,"key_id":"k","phase":"committed"}},"containers":[],"staging":false,
            "update":{{"seq":1,"id":"{ID}","bundle":"b","version":4,"phase":"{phase}","result":"failed","cause":{cause},"detail":"boot 2 of 3"}}}}"#
        );
        parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn the_status_files_fields() {
        let s = with_update("trial", "null");
        assert_eq!((s.berth.as_deref(), s.release_version, s.release_phase.as_deref()), (Some("0.1.0"), Some(3), Some("committed")));
        assert_eq!(s.update.as_ref().map(|u| u.phase.as_str()), Some("trial"));
        let s = parse(br#"{"format":1,"release":null,"update":null}"#).unwrap();
        assert_eq!(s, Status::default());
        assert!(parse(b"{").unwrap_err().contains("malformed JSON"));
        assert!(parse(br#"{"update":{"phase":"trial"}}"#).unwrap_err().contains("update.id"));
    }

    #[test]
    fn this_bundles_update_decides() {
        let want = Expect { id: ID, version: Some(4), rebooted: false };
        assert_eq!(decide(&with_update("trial", "null"), &want), Verdict::Wait);
        assert!(matches!(decide(&with_update("committed", "null"), &want), Verdict::Success(_)));
        let Verdict::Failure(d) = decide(&with_update("rolled-back", "\"crash-loop\""), &want) else { panic!() };
        assert_eq!(d, ["berth: sha256:00ff rolled-back", "cause: crash-loop", "detail: boot 2 of 3"]);
        let Verdict::Failure(_) = decide(&with_update("refused", "\"signature\""), &want) else { panic!() };
        let other = Expect { id: "sha256:11", ..want };
        assert_eq!(decide(&with_update("committed", "null"), &other), Verdict::Wait);
    }

    #[test]
    fn after_a_reboot_the_running_release_decides() {
        let st = |v: u64, phase: &str| Status { release_version: Some(v), release_phase: Some(phase.into()), ..Status::default() };
        let want = Expect { id: ID, version: Some(4), rebooted: true };
        assert!(matches!(decide(&st(4, "committed"), &want), Verdict::Success(_)));
        assert_eq!(decide(&st(4, "trial"), &want), Verdict::Wait);
        let Verdict::Failure(d) = decide(&st(3, "committed"), &want) else { panic!() };
        assert_eq!(d[0], "cause: rolled back across a reboot");
        assert_eq!(decide(&st(3, "committed"), &Expect { rebooted: false, ..want.clone() }), Verdict::Wait);
        assert_eq!(decide(&st(3, "committed"), &Expect { version: None, ..want }), Verdict::Wait);
    }
}
