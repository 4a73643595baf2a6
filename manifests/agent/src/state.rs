//! The agent's own state, on its volume: the pending action, written
//! before the bundle is dropped (a temporary file, fsync, rename, fsync of
//! the directory), so that a reboot between the drop and berth's verdict
//! does not lose the report; removed once the server took the final
//! feedback.

use serde_json::{json, Value};
use std::io::Write as _;
use std::path::Path;

const FILE: &str = "pending.json";
const MAX: u64 = 64 << 10;

/// An action whose final feedback is still owed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub action_id: String,
    pub feedback_url: String,
    /// `sha256:<hex>` of the bundle file, as berth's status view names it.
    pub bundle_id: String,
    pub expected_version: Option<u64>,
    /// The kernel's boot id when the bundle was dropped.
    pub boot_id: Option<String>,
    /// Seconds since the epoch when the bundle was dropped.
    pub dropped_at: u64,
}

impl Pending {
    fn to_json(&self) -> Value {
        json!({"action_id": self.action_id, "feedback_url": self.feedback_url, "bundle_id": self.bundle_id,
               "expected_version": self.expected_version, "boot_id": self.boot_id, "dropped_at": self.dropped_at})
    }

    fn from_json(v: &Value) -> Result<Pending, String> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string).ok_or_else(|| format!("field `{k}` missing or not a string"));
        Ok(Pending {
            action_id: s("action_id")?,
            feedback_url: s("feedback_url")?,
            bundle_id: s("bundle_id")?,
            expected_version: v.get("expected_version").and_then(Value::as_u64),
            boot_id: v.get("boot_id").and_then(Value::as_str).map(str::to_string),
            dropped_at: v.get("dropped_at").and_then(Value::as_u64).ok_or("field `dropped_at` missing or not a number")?,
        })
    }
}

/// Writes `bytes` to `dir/name` by a temporary file and a rename, both
/// synced.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), String> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let fin = dir.join(name);
    let mut f = std::fs::File::create(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &fin).map_err(|e| format!("{} -> {}: {e}", tmp.display(), fin.display()))?;
    sync_dir(dir)
}

/// Syncs a directory, so a rename in it survives a power cut.
pub fn sync_dir(dir: &Path) -> Result<(), String> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| format!("sync {}: {e}", dir.display()))
}

/// Saves the pending action.
pub fn save(dir: &Path, p: &Pending) -> Result<(), String> {
    write_atomic(dir, FILE, p.to_json().to_string().as_bytes())
}

/// The pending action, if any. A damaged file is an error naming it.
pub fn load(dir: &Path) -> Result<Option<Pending>, String> {
    let path = dir.join(FILE);
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    if meta.len() > MAX {
        return Err(format!("{}: larger than {MAX} bytes", path.display()));
    }
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| format!("{}: malformed JSON: {e}", path.display()))?;
    Pending::from_json(&v).map(Some).map_err(|e| format!("{}: {e}", path.display()))
}

/// Forgets the pending action.
pub fn clear(dir: &Path) -> Result<(), String> {
    match std::fs::remove_file(dir.join(FILE)) {
        Ok(()) => sync_dir(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("{}: {e}", dir.join(FILE).display())),
    }
}

/// The kernel's id of this boot, if readable.
pub fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_clear() {
        let dir = std::env::temp_dir().join(format!("berth-agent-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(load(&dir), Ok(None));
        let p = Pending {
            action_id: "7".into(),
            feedback_url: "http://h/f".into(),
            bundle_id: "sha256:ab".into(),
            expected_version: Some(4),
            boot_id: None,
            dropped_at: 1,
        };
        save(&dir, &p).unwrap();
        assert_eq!(load(&dir), Ok(Some(p)));
        assert!(!dir.join(".pending.json.tmp").exists());
        std::fs::write(dir.join(FILE), b"{\"action_id\":1}").unwrap();
        assert!(load(&dir).unwrap_err().contains("field `action_id` missing"));
        clear(&dir).unwrap();
        assert_eq!(load(&dir), Ok(None));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
