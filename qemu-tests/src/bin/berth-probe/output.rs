//! Modes that load berth's handling of container output.
//!
//! - `--flood SECS`: print `F <n>` lines as fast as stdout takes them for
//!   SECS seconds (0: forever), framed by `FLOOD start mono_ms=T` and, after
//!   two quiet seconds (so the rate limit lets it through),
//!   `FLOOD done wrote=N mono_ms=T`, where N counts every line written,
//!   the frame included; then exit 0.
//! - `--heartbeat MS`: every MS milliseconds print `HB seq=N mono_ms=T`,
//!   T being CLOCK_MONOTONIC when the line was written (containers share the
//!   host's clock: berth makes no time namespace), until SIGTERM.
//!
//! Plain `write(2)` on fd 1, no buffering: a line is written when it is
//! counted.

use std::time::{Duration, Instant};

pub const USAGE: &str = "--flood SECS, --heartbeat MS";

/// CLOCK_MONOTONIC in milliseconds.
pub fn mono_ms() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec the call fills in.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

pub fn put(line: &str) -> bool {
    let bytes = line.as_bytes();
    let mut off = 0;
    while off < bytes.len() {
        let rest = &bytes[off..];
        // SAFETY: `rest` is a valid buffer of its length.
        let n = unsafe { libc::write(1, rest.as_ptr().cast(), rest.len()) };
        if n < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return false;
        }
        off += n as usize;
    }
    true
}

pub fn run(args: &[String]) -> ! {
    let num = args.get(1).and_then(|v| v.parse::<u64>().ok());
    match (args.first().map(String::as_str), num) {
        (Some("--flood"), Some(secs)) => {
            let mut wrote = 0u64;
            if put(&format!("FLOOD start mono_ms={}\n", mono_ms())) {
                wrote += 1;
            }
            let start = Instant::now();
            let mut n = 0u64;
            while secs == 0 || start.elapsed() < Duration::from_secs(secs) {
                // A check of the clock every 64 lines keeps the loop tight.
                for _ in 0..64 {
                    if put(&format!("F {n}\n")) {
                        wrote += 1;
                    }
                    n += 1;
                }
            }
            std::thread::sleep(Duration::from_secs(2));
            let done = format!("FLOOD done wrote={} mono_ms={}\n", wrote + 1, mono_ms());
            put(&done);
            std::process::exit(0);
        }
        (Some("--heartbeat"), Some(ms)) => {
            let mut seq = 0u64;
            loop {
                put(&format!("HB seq={seq} mono_ms={}\n", mono_ms()));
                seq += 1;
                std::thread::sleep(Duration::from_millis(ms.max(1)));
            }
        }
        _ => {
            eprintln!("berth-probe: usage: {USAGE}");
            std::process::exit(2);
        }
    }
}
