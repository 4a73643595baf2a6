//! Mode `budgets` (the `budgets` scenario): while one container exhausts
//! its kernel budgets and its memory, report PID 1's resident memory and
//! whether `berthctl status` answers, every second, until SIGTERM:
//!
//! ```text
//! AGENT budgets rss_kib=N status=ok|fail hog=<state> neighbour=<state>
//! ```
//!
//! The scenario compares the readings before and after the OOM kill.

use std::time::Duration;

/// Between two readings.
const EVERY: Duration = Duration::from_secs(1);

/// The state column (the third) of `name`'s row in `status`.
fn state<'a>(status: &'a str, name: &str) -> &'a str {
    status.lines().map(|l| l.split_whitespace().collect::<Vec<_>>()).find(|f| f.first() == Some(&name)).and_then(|f| f.get(2).copied()).unwrap_or("-")
}

pub fn run() -> ! {
    loop {
        let rss = super::pid1_status_kib("VmRSS:").map_or_else(|| "-".to_string(), |v| v.to_string());
        let line = match super::berthctl(&["status"]) {
            Some(st) => format!("AGENT budgets rss_kib={rss} status=ok hog={} neighbour={}", state(&st, "hog"), state(&st, "neighbour")),
            None => format!("AGENT budgets rss_kib={rss} status=fail hog=- neighbour=-"),
        };
        super::say(&line);
        std::thread::sleep(EVERY);
    }
}
