//! The `inbox-full` scenario (x86_64; the `push` variant, whose board
//! allows [`PUSH_INBOX_BUNDLES`] bundles to wait in the inbox): pushes pile
//! up while a release is on trial, and the one past the bound is refused
//! with its reason while the running release goes on untouched.
//!
//! 1. Release 5's bundle (`trial-window`, a 10-minute commit window) is
//!    pushed: taken from the inbox, staged, switched to, on trial. While it
//!    is, berth takes nothing more from the inbox.
//! 2. Release 2's bundle is pushed [`PUSH_INBOX_BUNDLES`] times: each `ok`.
//! 3. Once more: answered `refused inbox full: N bundles are waiting and the
//!    board allows N ...`, and `berth receive` logs `push.refused` with the
//!    same reason. No file of it stays in the inbox (the agent is not
//!    needed: the next pushes' answers show the count did not grow).
//! 4. For [`QUIET_S`] after the refusal: no switch, no rollback, no commit,
//!    no staging; release 5 stays on trial with its containers running.

use crate::event::Event;
use crate::machine::Machine;
use crate::scenario::{case, Case};
use crate::scenarios::{expect_boot, field_is, limits, no_errors, spec, BootSpec, Launch, Limits};
use std::sync::Arc;
use std::time::Duration;

/// `[inbox] bundles` of the `push` variant's board.
pub const PUSH_INBOX_BUNDLES: u8 = 2;
/// How long nothing may change after the refusal (a look into the inbox
/// comes every 5 s).
const QUIET_S: u64 = 12;

pub fn cases(l: Arc<dyn Launch>) -> Vec<Case> {
    let arch = l.arch().to_string();
    if arch != "x86_64" {
        return Vec::new();
    }
    vec![case(format!("{arch}/inbox-full"), move || inbox_full(l.as_ref()))]
}

/// Boot `variant` for the scenario `name` (agent mode `mode`) with a fresh
/// host socket for pushes, through the whole boot: the machine and the
/// socket's path.
pub(crate) fn boot_with_push(l: &dyn Launch, variant: &'static str, name: &'static str, mode: &'static str) -> Result<(Machine, std::path::PathBuf), String> {
    let sock = std::env::temp_dir().join(format!("berth-{name}-{}-{}.sock", l.arch(), std::process::id()));
    let _ = std::fs::remove_file(&sock);
    let mut m = l.boot(&BootSpec { variant, push: Some(sock.clone()), ..spec(name, mode) })?;
    expect_boot(&mut m, &limits(l.arch()))?;
    Ok((m, sock))
}

/// The event `ev` that `berth receive` logged (its lines come in its output).
pub(crate) fn from_receive(m: &mut Machine, ev: &str, lim: &Limits) -> Result<Event, String> {
    let outer = m.expect_event_where(
        "service.log",
        |e| e.is("name", "receive") && e.get("line").and_then(crate::event::parse_line).is_some_and(|i| i.name == ev),
        lim.step,
    )?;
    outer.get("line").and_then(crate::event::parse_line).ok_or_else(|| format!("{ev}: no event in {outer:?}"))
}

/// The answer's inbox file, for an `ok FILE` answer.
fn accepted(answer: &str, what: &str) -> Result<String, String> {
    let file = answer.strip_prefix("ok ").ok_or_else(|| format!("{what} was answered {answer:?}, want ok"))?;
    if file.starts_with("/data/berth/inbox/push-") && file.ends_with(".bundle") {
        Ok(file.to_string())
    } else {
        Err(format!("{what} went to {file}, not into the inbox"))
    }
}

/// The refusal's reason must name the count and the bound.
pub fn judge_refusal(answer: &str, bound: u8) -> Result<(), String> {
    let want = format!("refused inbox full: {bound} bundles are waiting and the board allows {bound}");
    if answer.starts_with(&want) {
        Ok(())
    } else {
        Err(format!("the push past the bound was answered {answer:?}, want it to start with {want:?}"))
    }
}

fn inbox_full(l: &dyn Launch) -> Result<(), String> {
    let lim = limits(l.arch());
    let info = l.updates()?;
    let window = info.v2_bundle.with_file_name("trial-window.bundle");
    let (mut m, sock) = boot_with_push(l, "push", "inbox-full", "none")?;
    from_receive(&mut m, "push.listen", &lim)?;
    // 1. Release 5 on trial.
    let file = accepted(&l.push(&sock, &window, false)?, "release 5's push")?;
    let taken = m.expect_event("update.inbox", lim.step * 2)?;
    field_is(&taken, "bundle", &file)?;
    let staged = m.expect_event("update.staged", lim.step * 2)?;
    field_is(&staged, "version", "5")?;
    m.expect_event_where("release.trial", |e| e.is("version", "5"), lim.step * 2)?;
    // 2. The inbox fills up to its bound.
    for i in 0..PUSH_INBOX_BUNDLES {
        accepted(&l.push(&sock, &info.v2_bundle, false)?, &format!("push {} of release 2", i + 1))?;
    }
    // 3. One more is refused, and says why.
    let answer = l.push(&sock, &info.v2_bundle, false)?;
    judge_refusal(&answer, PUSH_INBOX_BUNDLES)?;
    let refused = from_receive(&mut m, "push.refused", &lim)?;
    let reason = refused.get("reason").unwrap_or("");
    if !answer.ends_with(reason) || reason.is_empty() {
        return Err(format!("push.refused says {reason:?}, the answer {answer:?}"));
    }
    // Refused ones leave nothing: the next push is refused the same way.
    judge_refusal(&l.push(&sock, &info.v2_bundle, false)?, PUSH_INBOX_BUNDLES)?;
    // 4. The running release is untouched.
    std::thread::sleep(Duration::from_secs(QUIET_S));
    m.poll();
    let changed: Vec<String> = m
        .events()
        .iter()
        .filter(|e| e.t >= refused.t)
        .filter(|e| matches!(e.name.as_str(), "update.switch" | "update.staged" | "update.inbox" | "release.rollback" | "release.commit" | "container.exit"))
        .map(|e| format!("{} {:?}", e.name, e.fields))
        .collect();
    if !changed.is_empty() {
        return Err(format!("the running release changed after the refused push: {changed:?}"));
    }
    let _ = std::fs::remove_file(&sock);
    no_errors(&m, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_must_name_the_bound() {
        let text = berth_reason(2);
        assert_eq!(judge_refusal(&format!("refused {text}"), 2), Ok(()));
        assert!(judge_refusal("refused inbox: No space left on device", 2).is_err());
        assert!(judge_refusal(&format!("ok {text}"), 2).is_err());
        assert!(judge_refusal("refused inbox full: 1 bundles are waiting and the board allows 2", 2).is_err());
    }

    fn berth_reason(n: u8) -> String {
        format!("inbox full: {n} bundles are waiting and the board allows {n} (they are taken one at a time, none while a release is on trial)")
    }
}
