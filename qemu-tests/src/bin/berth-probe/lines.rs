//! The log store scenario's writers (`qemu_tests::logquota`).
//!
//! - `--lines TAG COUNT PERIOD_MS`: once CLOCK_MONOTONIC reaches
//!   `logquota::START_MS`, print lines 1..=COUNT made by
//!   `logquota::line(TAG, n)`, PERIOD_MS apart (0: as fast as stdout takes
//!   them); three quiet seconds later (berth has read them all by then),
//!   say `READY=1` to `$NOTIFY_SOCKET`; then sleep until SIGTERM (exit 0).

use qemu_tests::logquota;
use std::time::Duration;

pub const USAGE: &str = "--lines TAG COUNT PERIOD_MS";

pub fn run(args: &[String]) -> ! {
    let num = |i: usize| args.get(i).and_then(|v| v.parse::<u64>().ok());
    let (Some(tag), Some(count), Some(period)) = (args.get(1), num(2), num(3)) else {
        eprintln!("berth-probe: usage: {USAGE}");
        std::process::exit(2);
    };
    super::lifecycle::on_sigterm_exit();
    let now = super::output::mono_ms();
    if now < logquota::START_MS {
        std::thread::sleep(Duration::from_millis(logquota::START_MS - now));
    }
    for n in 1..=count {
        if !super::output::put(&format!("{}\n", logquota::line(tag, n))) {
            std::process::exit(1);
        }
        if period > 0 {
            std::thread::sleep(Duration::from_millis(period));
        }
    }
    std::thread::sleep(Duration::from_secs(3));
    super::lifecycle::notify("READY=1");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
