//! The device allowlist on cgroup v1: `a` to `devices.deny` (drop the
//! inherited allow-all), then one `devices.allow` line per rule, then a
//! read-back of `devices.list` that must show exactly the rules.
//!
//! It must not write anything: it makes the lines and checks the read-back,
//! [`super::act`] writes and reads the files.

use std::collections::BTreeMap;

use super::{access_letters, DevType, DeviceRule, Minor, ACC_ALL};
use crate::confine::container::devices::access_bits;

/// Written to `devices.deny` first: deny everything.
pub const DENY_ALL: &str = "a";

/// The `devices.allow` line of a rule: `c 4:65 rw`, `c 136:* rw`.
pub fn allow_line(r: &DeviceRule) -> String {
    let minor = match r.minor {
        Minor::Exact(m) => m.to_string(),
        Minor::Any => "*".to_owned(),
    };
    format!("{} {}:{} {}", r.kind.letter(), r.major, minor, access_letters(r.access))
}

/// The lines to write to `devices.allow`, one write each, in rule order.
pub fn allow_lines(rules: &[DeviceRule]) -> Vec<String> {
    rules.iter().map(allow_line).collect()
}

/// A type in `devices.list`: `a` (all), `b` or `c`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ListType {
    All,
    Block,
    Char,
}

/// One `devices.list` line; `None` numbers are `*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListEntry {
    pub kind: ListType,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: u8,
}

fn num(s: &str) -> Option<Option<u32>> {
    if s == "*" {
        Some(None)
    } else {
        s.parse().ok().map(Some)
    }
}

/// Parse `devices.list`; the error names the line.
pub fn parse_list(text: &str) -> Result<Vec<ListEntry>, String> {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let e = || format!("devices.list: cannot read line `{line}`");
        let mut f = line.split_ascii_whitespace();
        let (Some(t), Some(nums), Some(acc), None) = (f.next(), f.next(), f.next(), f.next()) else {
            return Err(e());
        };
        let kind = match t {
            "a" => ListType::All,
            "b" => ListType::Block,
            "c" => ListType::Char,
            _ => return Err(e()),
        };
        let (ma, mi) = nums.split_once(':').ok_or_else(e)?;
        let (major, minor) = (num(ma).ok_or_else(e)?, num(mi).ok_or_else(e)?);
        let access = access_bits(acc).ok_or_else(e)?;
        out.push(ListEntry { kind, major, minor, access });
    }
    Ok(out)
}

type Key = (ListType, Option<u32>, Option<u32>);

fn show(k: &Key, access: u8) -> String {
    let n = |v: Option<u32>| v.map_or("*".to_owned(), |v| v.to_string());
    let t = match k.0 {
        ListType::All => 'a',
        ListType::Block => 'b',
        ListType::Char => 'c',
    };
    format!("{t} {}:{} {}", n(k.1), n(k.2), access_letters(access))
}

/// Check a read-back `devices.list` against the rules written: the same
/// entries with the same access (rules on the same node merge, as in the
/// kernel), and no `a` entry (which would mean the deny did not take).
pub fn check_list(rules: &[DeviceRule], text: &str) -> Result<(), String> {
    let mut want: BTreeMap<Key, u8> = BTreeMap::new();
    for r in rules {
        let kind = match r.kind {
            DevType::Block => ListType::Block,
            DevType::Char => ListType::Char,
        };
        let minor = match r.minor {
            Minor::Exact(m) => Some(m),
            Minor::Any => None,
        };
        *want.entry((kind, Some(r.major), minor)).or_insert(0) |= r.access & ACC_ALL;
    }
    let mut got: BTreeMap<Key, u8> = BTreeMap::new();
    for e in parse_list(text)? {
        if e.kind == ListType::All {
            return Err(format!("devices.list still allows all devices (`{}`)", show(&(e.kind, e.major, e.minor), e.access)));
        }
        *got.entry((e.kind, e.major, e.minor)).or_insert(0) |= e.access;
    }
    for (k, a) in &got {
        match want.get(k) {
            None => return Err(format!("devices.list has `{}`, which berth did not allow", show(k, *a))),
            Some(w) if w != a => return Err(format!("devices.list has `{}`, berth allowed `{}`", show(k, *a), show(k, *w))),
            Some(_) => {}
        }
    }
    if let Some((k, a)) = want.iter().find(|(k, _)| !got.contains_key(k)) {
        return Err(format!("devices.list lacks `{}`", show(k, *a)));
    }
    Ok(())
}
