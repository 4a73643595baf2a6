//! Demo container `flaky`: works for a while, then crashes, to show restarts
//! and backoff. Arguments: `flaky [MAX_SECONDS]`; it exits with status 1
//! after a pseudo-random 1..=MAX_SECONDS (default 20) seconds.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn main() {
    berth_demo_apps::exit_on_sigterm();
    let max: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).filter(|&m| m > 0).unwrap_or(20);
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(7) as u64;
    let life = 1 + (seed ^ (seed >> 7)) % max;
    println!("flaky: up, will crash in {life}s");
    for s in 1..=life {
        std::thread::sleep(Duration::from_secs(1));
        println!("flaky: alive {s}s");
    }
    eprintln!("flaky: simulated crash");
    std::process::exit(1);
}
