//! Modes that exercise berth's supervision: readiness over the notify
//! socket, keep-alives, and checks on the container's age.
//!
//! - `--notify READY_MS [PINGS PING_MS]`: after READY_MS send `READY=1` to
//!   `$NOTIFY_SOCKET`, then PINGS `WATCHDOG=1` keep-alives PING_MS apart,
//!   then fall silent and sleep.
//! - `--sleep`: sleep until SIGTERM (exit 0 on it).
//! - `--uptime-above MS` / `--uptime-below MS`: exit 0 when the container's
//!   init (PID 1 of its namespace) has run longer / shorter than MS, else 1.
//!
//! Each mode that sleeps exits 0 on SIGTERM, so only a signal it does not
//! handle (a PID namespace's init ignores those) needs berth's SIGKILL.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

pub const USAGE: &str = "--notify READY_MS [PINGS PING_MS], --sleep, --uptime-above MS, --uptime-below MS";

pub fn run(args: &[String]) -> ! {
    let num = |i: usize| args.get(i).and_then(|v| v.parse::<u64>().ok());
    match args.first().map(String::as_str) {
        Some("--notify") => {
            on_sigterm_exit();
            let (Some(ready_ms), pings, ping_ms) = (num(1), num(2).unwrap_or(0), num(3).unwrap_or(0)) else { usage() };
            std::thread::sleep(Duration::from_millis(ready_ms));
            notify("READY=1");
            super::say(&format!("PROBE notify ready after_ms={ready_ms}"));
            for _ in 0..pings {
                std::thread::sleep(Duration::from_millis(ping_ms));
                notify("WATCHDOG=1");
            }
            super::say(&format!("PROBE notify silent pings={pings}"));
            sleep_forever()
        }
        Some("--sleep") => {
            on_sigterm_exit();
            sleep_forever()
        }
        Some(mode @ ("--uptime-above" | "--uptime-below")) => {
            let Some(ms) = num(1) else { usage() };
            let age = init_age_ms().unwrap_or(0);
            let ok = if mode == "--uptime-above" { age > ms } else { age < ms };
            std::process::exit(if ok { 0 } else { 1 })
        }
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!("berth-probe: usage: {USAGE}");
    std::process::exit(2)
}

pub fn notify(msg: &str) {
    let Ok(path) = std::env::var("NOTIFY_SOCKET") else {
        super::say("PROBE notify error=no-NOTIFY_SOCKET");
        return;
    };
    let sent = UnixDatagram::unbound().and_then(|s| s.send_to(msg.as_bytes(), &path));
    if let Err(e) = sent {
        super::say(&format!("PROBE notify error={}", qemu_tests::event::quote(&e.to_string())));
    }
}

fn sleep_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

extern "C" fn exit_zero(_: libc::c_int) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(0) }
}

pub fn on_sigterm_exit() {
    // SAFETY: installing a handler that only calls _exit.
    unsafe {
        libc::signal(libc::SIGTERM, exit_zero as *const () as libc::sighandler_t);
    }
}

/// How long PID 1 (of this PID namespace) has run, from `/proc/1/stat`'s
/// start time and `/proc/uptime`.
fn init_age_ms() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/1/stat").ok()?;
    // Fields after the command name's closing parenthesis; starttime is field 22.
    let rest = stat.rsplit_once(')')?.1;
    let start_ticks: u64 = rest.split_whitespace().nth(19)?.parse().ok()?;
    let uptime: f64 = std::fs::read_to_string("/proc/uptime").ok()?.split_whitespace().next()?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(((uptime - start_ticks as f64 / hz) * 1e3).max(0.0) as u64)
}
