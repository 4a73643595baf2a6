//! The `check-window` scenario: a readiness or health command berth starts
//! inside a container is, until its exec, a copy of berth (its memory, and
//! for a moment its descriptors) inside the container's PID namespace.
//! berth makes it not dumpable; the container must not read or trace it.
//!
//! The `check-window` variant runs `window` (`berth-probe --check-window`,
//! root inside, no capabilities) and `window-user` (the same as uid 1000
//! inside), whose health commands' setup stops at their `signals` step
//! (`berth.hang=window.check:signals,...`, a test hook): past
//! the credential steps, before Landlock, seccomp and the exec. The probe
//! reports each of [`ATTEMPTS`], and each must be `blocked`:
//! `check-window-dumpable` only when the command's `/proc/PID/environ`
//! belongs to the overflow uid (the kernel's owner for a process that is
//! not dumpable, whose memory was made outside), never to the command's own
//! uid; opening its `/proc/PID/mem` and `/proc/PID/environ` and
//! `PTRACE_ATTACH` only with a policy errno. No attempt may be `escaped`
//! or `error`, and the health command must still be held when the probe is
//! done (no `container.check` result for its container before). Both
//! containers, [`WINDOWS`], are judged alike.
//!
//! The verdict is about the flag, whoever set it: the command's change to
//! the container's ids also sets it, to `fs.suid_dumpable` (0 under berth's
//! hardening), so at this step the command is not dumpable even without
//! berth's own `PR_SET_DUMPABLE(0)`, which covers the steps before. Before
//! those ids the command is host root, unmapped inside: its `/proc` files
//! show the overflow uid either way, and no step there tells the flag.

use crate::event::Event;
use crate::machine::Machine;
use crate::scenario::{case, Case};
use crate::scenarios::{expect_boot, limits, probe_field, probe_lines, spec, BootSpec, Launch, Limits};
use std::sync::Arc;

/// The probe's attempts on the held command, each required `blocked`.
pub const ATTEMPTS: [&str; 4] = ["check-window-dumpable", "check-window-proc-mem", "check-window-proc-environ", "check-window-ptrace"];

/// The containers whose held check is tried: root and uid 1000 inside.
pub const WINDOWS: [&str; 2] = ["window", "window-user"];

pub fn cases(l: Arc<dyn Launch>) -> Vec<Case> {
    let arch = l.arch().to_string();
    vec![case(format!("{arch}/check-window"), move || check_window(l.as_ref()))]
}

fn check_window(l: &dyn Launch) -> Result<(), String> {
    let lim = limits(l.arch());
    let mut m = l.boot(&BootSpec { variant: "check-window", ..spec("check-window", "check-window") })?;
    expect_boot(&mut m, &lim)?;
    for name in WINDOWS {
        m.set_cursor(0);
        judge_window(&mut m, name, &lim)?;
    }
    Ok(())
}

/// One container's verdict: its probe done while its check is still held,
/// every attempt of [`ATTEMPTS`] reported `blocked`, none `escaped` or
/// `error`.
fn judge_window(m: &mut Machine, name: &str, lim: &Limits) -> Result<(), String> {
    let done = |e: &Event| e.get("name") == Some(name) && e.get("line").is_some_and(|l| l.starts_with("PROBE done"));
    m.expect_event_where("container.log", done, lim.boot * 2)?;
    if let Some(e) = m.events().iter().find(|e| e.name == "container.check" && e.get("name") == Some(name)) {
        return Err(format!("{name}'s health command ended before the probe was done: {:?}", e.fields));
    }
    let lines = probe_lines(m, name);
    let bad: Vec<&String> = lines.iter().filter(|l| matches!(probe_field(l, "result"), Some("escaped" | "error"))).collect();
    if !bad.is_empty() {
        let list: Vec<&str> = bad.iter().map(|s| s.as_str()).collect();
        return Err(format!("{name}: {} attempts on the held check not refused:\n{}", bad.len(), list.join("\n")));
    }
    for a in ATTEMPTS {
        if !lines.iter().any(|l| probe_field(l, "name") == Some(a) && probe_field(l, "result") == Some("blocked")) {
            return Err(format!("{name}: attempt {a} was not reported blocked: {lines:?}"));
        }
    }
    Ok(())
}
