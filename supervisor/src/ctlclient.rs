//! `berthctl`'s side of updates: `update [--wait] BUNDLE`, `commit`,
//! `rollback`, and `release [--json]`'s rendering.
//!
//! `update --wait` sends the update (answered once its staging started,
//! with its sequence number), then asks `release` every
//! [`POLL_S`] seconds, each time on a new short connection, until the
//! update has ended ([`crate::outcome::wait_step`]), and exits with the
//! code of its end ([`crate::outcome::exit`]). Nothing is held open on
//! berth's side; the wait is bounded there by the staging deadline (15
//! minutes) and the release's trial deadline. A berth that does not answer
//! [`UNANSWERED_MAX`] looks in a row ends the wait with code 1.

use crate::control::{Command, ReleaseInfo, Response};
use crate::outcome::{exit, wait_step, Wait};
use std::io::Write as _;

/// Seconds between two looks.
pub const POLL_S: f64 = 0.25;
/// Looks in a row without an answer before giving up.
pub const UNANSWERED_MAX: u32 = 40;

/// `berthctl update [--wait] PATH`; the process exit code.
pub fn update(path: &str, wait: bool, socket: &str) -> u8 {
    let mut p = heapless::String::new();
    if p.push_str(path).is_err() {
        eprintln!("berthctl: the bundle path is longer than {} bytes", p.capacity());
        return exit::USAGE;
    }
    let info = match crate::ctlsock::call(socket, Command::Update(p)) {
        Ok(Response::Update(info)) => info,
        Ok(Response::Error(e)) => {
            eprintln!("berthctl: {e}");
            return if wait { exit::REFUSED } else { exit::OTHER };
        }
        Ok(_) => {
            eprintln!("berthctl: unexpected reply");
            return exit::OTHER;
        }
        Err(e) => {
            eprintln!("berthctl: {e}");
            return exit::OTHER;
        }
    };
    println!("update {} staging {}", info.seq, info.bundle);
    if !wait {
        return exit::COMMITTED;
    }
    let _ = std::io::stdout().flush();
    let mut shown = crate::outcome::Phase::Staging;
    let mut unanswered = 0;
    loop {
        std::thread::sleep(std::time::Duration::from_secs_f64(POLL_S));
        let kept = match crate::ctlsock::call(socket, Command::Release) {
            Ok(Response::Release(r)) => r.updates,
            other => {
                unanswered += 1;
                if unanswered >= UNANSWERED_MAX {
                    eprintln!("berthctl: berth stopped answering while update {} was under way: {other:?}", info.seq);
                    return exit::OTHER;
                }
                continue;
            }
        };
        unanswered = 0;
        let mine = kept.iter().find(|u| u.seq == info.seq);
        match wait_step(&kept, info.seq) {
            Wait::Pending => {
                if let Some(u) = mine.filter(|u| u.phase != shown) {
                    shown = u.phase;
                    println!("{}", u.line());
                    let _ = std::io::stdout().flush();
                }
            }
            Wait::Exit(code) => {
                match mine {
                    Some(u) => println!("{}", u.line()),
                    None => eprintln!("berthctl: update {} is no longer known to berth", info.seq),
                }
                return code;
            }
        }
    }
}

/// `berthctl release --json`: one JSON object.
pub fn release_json(r: &ReleaseInfo) -> String {
    use std::io::Write as _;
    let s = crate::statusview::json_string;
    let mut out = Vec::new();
    let _ = write!(out, "{{\"version\":{},\"key_id\":", r.version);
    s(&mut out, &r.key_id);
    out.extend_from_slice(b",\"phase\":");
    s(&mut out, &r.phase);
    if r.phase == "recovery" {
        out.extend_from_slice(b",\"recovery\":");
        s(&mut out, &r.recovery);
    }
    match r.previous {
        Some(p) => {
            let _ = write!(out, ",\"previous\":{p}");
        }
        None => out.extend_from_slice(b",\"previous\":null"),
    }
    let list = |out: &mut Vec<u8>, key: &str, items: &mut dyn Iterator<Item = &str>| {
        let _ = write!(out, ",\"{key}\":[");
        for (i, it) in items.enumerate() {
            if i > 0 {
                out.push(b',');
            }
            s(out, it);
        }
        out.push(b']');
    };
    list(&mut out, "rollbacks", &mut r.rollbacks.iter().map(|l| l.as_str()));
    out.extend_from_slice(b",\"staging\":");
    s(&mut out, &r.staging);
    list(&mut out, "quarantined", &mut r.quarantined.iter().map(|l| l.as_str()));
    out.extend_from_slice(b",\"update\":");
    match r.updates.last() {
        Some(u) => u.json(&mut out),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"updates\":[");
    for (i, u) in r.updates.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        u.json(&mut out);
    }
    out.extend_from_slice(b"]}");
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_json_carries_the_last_update() {
        let mut r = ReleaseInfo { version: 2, previous: Some(1), ..Default::default() };
        let _ = r.key_id.push_str("d91a539e64c726ab");
        let _ = r.phase.push_str("trial");
        let _ = r.rollbacks.push(crate::outcome::cut("rollback from 3 to 1 at boot 1: crash-loop (meter)"));
        let mut log = crate::outcome::Log::default();
        log.begin("/data/a.bundle");
        log.end(crate::outcome::Phase::Refused, "bundle", "bad magic");
        log.begin("/data/b.bundle");
        for u in log.all() {
            r.updates.push(u.clone()).unwrap();
        }
        let text = release_json(&r);
        assert!(text.starts_with("{\"version\":2,\"key_id\":\"d91a539e64c726ab\",\"phase\":\"trial\",\"previous\":1,\"rollbacks\":[\"rollback from 3 to 1 at boot 1: crash-loop (meter)\"],\"staging\":\"\",\"quarantined\":[],\"update\":{\"seq\":2,"), "{text}");
        assert!(text.contains("\"phase\":\"refused\",\"result\":\"failed\",\"cause\":\"bundle\",\"detail\":\"bad magic\"}"), "{text}");
        assert!(text.ends_with("\"phase\":\"staging\",\"result\":\"pending\",\"cause\":null,\"detail\":\"\"}]}"), "{text}");
        let none = release_json(&ReleaseInfo::default());
        assert!(none.ends_with(",\"update\":null,\"updates\":[]}"), "{none}");
    }
}
