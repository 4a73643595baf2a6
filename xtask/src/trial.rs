//! `cargo xtask run --manifests DIR --timeout S`: boot a directory of
//! manifests and judge it. The console is printed as it comes; the verdict
//! comes from berth's event lines:
//!
//! - success when every container of the release ran and exited 0, or when the
//!   time is up and every container that has not exited is still running
//!   (a service);
//! - failure when the release is refused, a container fails to start, or one
//!   exits non-zero or by a signal.

use crate::artifacts::Artifacts;
use qemu_tests::event::parse_line;
use qemu_tests::machine::Machine;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Waiting,
    Running,
    Exited(i32),
    Failed(String),
}

/// Boot `prog args`, print the console, and judge the containers named in `art`'s release.
pub fn judge(art: &Artifacts, prog: &str, args: &[String], timeout: Duration) -> Result<(), String> {
    let mut states: BTreeMap<String, State> =
        art.release.containers.iter().map(|m| (m.name.to_string(), State::Waiting)).collect();
    if states.is_empty() {
        return Err("the release has no containers".into());
    }
    let mut m = Machine::spawn(&format!("{}/run", art.board.name), prog, args)?;
    let start = Instant::now();
    let mut shown = 0;
    let verdict = loop {
        m.poll();
        let lines = m.lines();
        for line in lines.get(shown..).unwrap_or(&[]) {
            println!("{line}");
            observe(line, &mut states);
        }
        shown = lines.len();
        if let Some(v) = decide(&states, start.elapsed() >= timeout) {
            break v;
        }
        if let Some(st) = m.exit_status() {
            break Err(format!("QEMU ended ({st}) before the containers were done"));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    m.kill();
    println!("xtask: run: {}", summary(&states));
    verdict
}

/// Fold one console line into the container states.
fn observe(line: &str, states: &mut BTreeMap<String, State>) {
    let Some(ev) = parse_line(line) else { return };
    let name = ev.get("name").unwrap_or("").to_string();
    match ev.name.as_str() {
        "release.rejected" | "boot.failed" => {
            let why = format!("{}: {}", ev.name, ev.get("reason").unwrap_or("?"));
            for s in states.values_mut() {
                if *s == State::Waiting {
                    *s = State::Failed(why.clone());
                }
            }
        }
        "container.start" => {
            if let Some(s) = states.get_mut(&name) {
                *s = if ev.get("result") == Some("ok") {
                    State::Running
                } else {
                    State::Failed(format!("start failed at {}: {}", ev.get("step").unwrap_or("?"), ev.get("error").unwrap_or("?")))
                };
            }
        }
        "reap" => {
            if let Some(s) = states.get_mut(&name) {
                let code: i32 = ev.get("code").and_then(|c| c.parse().ok()).unwrap_or(-1);
                *s = match ev.get("how") {
                    Some("exit") => State::Exited(code),
                    _ => State::Failed(format!("killed by signal {code}")),
                };
            }
        }
        _ => {}
    }
}

/// The verdict, once there is one.
fn decide(states: &BTreeMap<String, State>, time_up: bool) -> Option<Result<(), String>> {
    let failed: Vec<String> = states
        .iter()
        .filter_map(|(n, s)| match s {
            State::Failed(why) => Some(format!("{n}: {why}")),
            State::Exited(c) if *c != 0 => Some(format!("{n}: exited with {c}")),
            _ => None,
        })
        .collect();
    if !failed.is_empty() {
        return Some(Err(failed.join("; ")));
    }
    if states.values().all(|s| *s == State::Exited(0)) {
        return Some(Ok(()));
    }
    if time_up {
        let waiting: Vec<&String> = states.iter().filter(|(_, s)| **s == State::Waiting).map(|(n, _)| n).collect();
        return Some(if waiting.is_empty() {
            Ok(())
        } else {
            Err(format!("time is up and these never started: {waiting:?}"))
        });
    }
    None
}

fn summary(states: &BTreeMap<String, State>) -> String {
    states
        .iter()
        .map(|(n, s)| match s {
            State::Waiting => format!("{n} never started"),
            State::Running => format!("{n} running"),
            State::Exited(c) => format!("{n} exited {c}"),
            State::Failed(w) => format!("{n} failed ({w})"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn states(names: &[&str]) -> BTreeMap<String, State> {
        names.iter().map(|n| (n.to_string(), State::Waiting)).collect()
    }

    #[test]
    fn all_exit_zero_is_success() {
        let mut s = states(&["a", "b"]);
        for l in [
            "BERTH t=1.0 ev=container.start name=a pid=5 result=ok",
            "BERTH t=1.0 ev=container.start name=b pid=6 result=ok",
            "BERTH t=2.0 ev=reap pid=5 name=a how=exit code=0",
        ] {
            observe(l, &mut s);
        }
        assert_eq!(decide(&s, false), None);
        observe("BERTH t=3.0 ev=reap pid=6 name=b how=exit code=0", &mut s);
        assert_eq!(decide(&s, false), Some(Ok(())));
    }

    #[test]
    fn services_running_at_the_timeout_pass_but_never_started_fails() {
        let mut s = states(&["svc", "late"]);
        observe("BERTH t=1.0 ev=container.start name=svc pid=5 result=ok", &mut s);
        assert!(matches!(decide(&s, true), Some(Err(e)) if e.contains("late")));
        observe("BERTH t=1.0 ev=container.start name=late pid=6 result=ok", &mut s);
        assert_eq!(decide(&s, true), Some(Ok(())));
    }

    #[test]
    fn failures_end_the_run() {
        let mut s = states(&["a"]);
        observe("BERTH t=1.0 ev=container.start name=a step=spawn result=error error=\"execve: ENOENT\"", &mut s);
        assert!(matches!(decide(&s, false), Some(Err(e)) if e.contains("execve")));
        let mut s = states(&["a"]);
        observe("BERTH t=1.0 ev=container.start name=a pid=5 result=ok", &mut s);
        observe("BERTH t=2.0 ev=reap pid=5 name=a how=exit code=3", &mut s);
        assert!(matches!(decide(&s, false), Some(Err(e)) if e.contains("exited with 3")));
        let mut s = states(&["a"]);
        observe("BERTH t=1.0 ev=release.rejected reason=\"bad signature\"", &mut s);
        assert!(matches!(decide(&s, false), Some(Err(e)) if e.contains("bad signature")));
        // Orphans and unknown names change nothing.
        let mut s = states(&["a"]);
        observe("BERTH t=2.0 ev=reap pid=9 name=orphan how=exit code=1", &mut s);
        assert_eq!(decide(&s, false), None);
    }
}
