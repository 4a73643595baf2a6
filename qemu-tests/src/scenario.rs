//! A tiny parallel runner for boot scenarios.
//!
//! Each case is a closure returning `Result<(), String>`; the error string is
//! the failure detail (make it self-contained: the machine's messages already
//! include the console tail). A panic in a case counts as a failure, as long
//! as the binary unwinds on panic (`cargo test` always does; a binary built
//! with `panic = "abort"` dies instead, and its QEMUs die with it).
//!
//! Output, on stdout:
//!
//! ```text
//! running 3 qemu tests (2 jobs)
//! test boot-x86_64 ... ok (8.1s)
//! test boot-aarch64 ... FAILED (12.3s)
//! test reboot-armv7 ... ok (31.0s)
//!
//! failures:
//!
//! ---- boot-aarch64 ----
//! <detail>
//!
//! qemu: 2 passed, 1 failed
//! ```
//!
//! The last line always has exactly that shape; CI reads it.

use std::collections::VecDeque;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The result of one case.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub name: String,
    pub passed: bool,
    /// Empty when passed; the error or panic message otherwise.
    pub detail: String,
    pub duration: Duration,
}

/// The body of a case.
pub type CaseFn = Box<dyn FnOnce() -> Result<(), String> + Send>;
/// A named case, as [`run_all`] takes it.
pub type Case = (String, CaseFn);

/// Build a [`Case`] without spelling out the box.
pub fn case(name: impl Into<String>, f: impl FnOnce() -> Result<(), String> + Send + 'static) -> Case {
    (name.into(), Box::new(f))
}

/// Run `cases` on up to `jobs` worker threads (at least one), printing to
/// stdout as described in the module docs. Outcomes come back in the order
/// of `cases`.
pub fn run_all(cases: Vec<Case>, jobs: usize) -> Vec<Outcome> {
    let mut out = std::io::stdout();
    run_all_to(cases, jobs, &mut out)
}

/// [`run_all`], writing the report to `out`.
pub fn run_all_to(cases: Vec<Case>, jobs: usize, out: &mut dyn Write) -> Vec<Outcome> {
    let total = cases.len();
    let jobs = jobs.max(1).min(total.max(1));
    let names: Vec<String> = cases.iter().map(|(n, _)| n.clone()).collect();
    let _ = writeln!(out, "running {total} qemu test{} ({jobs} job{})", plural(total), plural(jobs));
    let _ = out.flush();

    let queue: Arc<Mutex<VecDeque<(usize, String, CaseFn)>>> = Arc::new(Mutex::new(cases.into_iter().enumerate().map(|(i, (n, f))| (i, n, f)).collect()));
    let (tx, rx) = mpsc::channel::<(usize, Outcome)>();
    let mut workers = Vec::new();
    for w in 0..jobs {
        let queue = Arc::clone(&queue);
        let tx = tx.clone();
        let spawned = thread::Builder::new().name(format!("qemu-job-{w}")).spawn(move || loop {
            let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
            let Some((i, name, f)) = next else { break };
            let outcome = run_one(name, f);
            if tx.send((i, outcome)).is_err() {
                break;
            }
        });
        if let Ok(h) = spawned {
            workers.push(h);
        }
    }
    drop(tx);

    let mut results: Vec<Option<Outcome>> = (0..total).map(|_| None).collect();
    if workers.is_empty() {
        // No thread could be started: run here, one after the other.
        let pending: Vec<_> = queue.lock().unwrap_or_else(|e| e.into_inner()).drain(..).collect();
        for (i, name, f) in pending {
            let o = run_one(name, f);
            report(out, &o);
            results[i] = Some(o);
        }
    }
    for (i, o) in rx {
        report(out, &o);
        results[i] = Some(o);
    }
    for h in workers {
        let _ = h.join();
    }

    let outcomes: Vec<Outcome> = results
        .into_iter()
        .zip(names)
        .map(|(o, name)| {
            o.unwrap_or_else(|| Outcome { name, passed: false, detail: "the case never reported (worker thread died)".to_string(), duration: Duration::ZERO })
        })
        .collect();

    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| !o.passed).collect();
    if !failed.is_empty() {
        let _ = writeln!(out, "\nfailures:");
        for o in &failed {
            let _ = writeln!(out, "\n---- {} ----\n{}", o.name, o.detail.trim_end());
        }
    }
    let _ = writeln!(out, "\n{}", summary_line(&outcomes));
    let _ = out.flush();
    outcomes
}

/// `qemu: N passed, N failed`
pub fn summary_line(outcomes: &[Outcome]) -> String {
    let passed = outcomes.iter().filter(|o| o.passed).count();
    format!("qemu: {passed} passed, {} failed", outcomes.len() - passed)
}

fn run_one(name: String, f: CaseFn) -> Outcome {
    let start = Instant::now();
    let result = catch_unwind(AssertUnwindSafe(f));
    let duration = start.elapsed();
    let (passed, detail) = match result {
        Ok(Ok(())) => (true, String::new()),
        Ok(Err(e)) => (false, e),
        Err(payload) => {
            let msg = if let Some(s) = payload.downcast_ref::<&str>() {
                s.to_string()
            } else if let Some(s) = payload.downcast_ref::<String>() {
                s.clone()
            } else {
                "(non-string panic payload)".to_string()
            };
            (false, format!("panicked: {msg}"))
        }
    };
    Outcome { name, passed, detail, duration }
}

fn report(out: &mut dyn Write, o: &Outcome) {
    let verdict = if o.passed { "ok" } else { "FAILED" };
    let _ = writeln!(out, "test {} ... {verdict} ({:.1}s)", o.name, o.duration.as_secs_f64());
    let _ = out.flush();
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::Machine;

    #[test]
    fn runs_in_parallel_and_summarizes() {
        let cases = vec![
            case("pass-a", || {
                thread::sleep(Duration::from_millis(300));
                Ok(())
            }),
            case("fail-b", || Err("mount /data failed\nsecond line".to_string())),
            case("panic-c", || panic!("boom {}", 42)),
            case("pass-d", || {
                thread::sleep(Duration::from_millis(300));
                Ok(())
            }),
            case("static-panic", || panic!("static")),
        ];
        let mut buf = Vec::new();
        let start = Instant::now();
        let outcomes = run_all_to(cases, 3, &mut buf);
        // Two 300 ms cases on three workers overlap.
        assert!(start.elapsed() < Duration::from_millis(550), "{:?}", start.elapsed());
        let text = String::from_utf8(buf).unwrap();
        let names: Vec<&str> = outcomes.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["pass-a", "fail-b", "panic-c", "pass-d", "static-panic"]);
        let passed: Vec<bool> = outcomes.iter().map(|o| o.passed).collect();
        assert_eq!(passed, [true, false, false, true, false]);
        assert_eq!(outcomes[2].detail, "panicked: boom 42");
        assert_eq!(outcomes[4].detail, "panicked: static");
        assert!(outcomes[0].duration >= Duration::from_millis(300));
        assert!(text.starts_with("running 5 qemu tests (3 jobs)\n"), "{text}");
        assert!(text.contains("test pass-a ... ok (0.3s)\n"), "{text}");
        assert!(text.contains("test fail-b ... FAILED (0.0s)\n"), "{text}");
        assert!(text.contains("\nfailures:\n\n---- fail-b ----\nmount /data failed\nsecond line\n"), "{text}");
        assert!(text.contains("---- panic-c ----\npanicked: boom 42\n"), "{text}");
        assert_eq!(text.lines().last(), Some("qemu: 2 passed, 3 failed"));
    }

    #[test]
    fn all_pass_and_empty() {
        let mut buf = Vec::new();
        let outcomes = run_all_to(vec![case("only", || Ok(()))], 0, &mut buf);
        let text = String::from_utf8(buf).unwrap();
        assert!(outcomes[0].passed);
        assert!(!text.contains("failures:"));
        assert_eq!(text.lines().last(), Some("qemu: 1 passed, 0 failed"));

        let mut buf = Vec::new();
        assert!(run_all_to(Vec::new(), 4, &mut buf).is_empty());
        assert_eq!(String::from_utf8(buf).unwrap().lines().last(), Some("qemu: 0 passed, 0 failed"));
    }

    #[test]
    fn machines_in_cases() {
        let script = "echo 'BERTH t=0.100000 ev=boot.start pid=1'; echo 'BERTH t=0.200000 ev=boot.ready'; exit 0";
        let ok = case("fake-boot", move || {
            let mut m = Machine::spawn("fake-boot", "sh", &["-c".to_string(), script.to_string()])?;
            m.expect_event("boot.start", Duration::from_secs(10))?;
            m.expect_event("boot.ready", Duration::from_secs(10))?;
            m.wait_exit(Duration::from_secs(10))?;
            Ok(())
        });
        let bad = case("fake-crash", || {
            let mut m = Machine::spawn("fake-crash", "sh", &["-c".to_string(), "echo 'Kernel panic'; exit 1".to_string()])?;
            m.expect_event("boot.ready", Duration::from_secs(60))?;
            Ok(())
        });
        let mut buf = Vec::new();
        let outcomes = run_all_to(vec![ok, bad], 2, &mut buf);
        assert!(outcomes[0].passed, "{}", outcomes[0].detail);
        assert!(!outcomes[1].passed);
        assert!(outcomes[1].detail.contains("Kernel panic"), "{}", outcomes[1].detail);
        assert!(outcomes[1].duration < Duration::from_secs(5));
        assert_eq!(String::from_utf8(buf).unwrap().lines().last(), Some("qemu: 1 passed, 1 failed"));
    }
}
