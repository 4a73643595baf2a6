//! `berth time`: sets the clock from the board's SNTP server (`[time]`),
//! run by berth as a host service. It owns the exchange with the server and
//! the one `clock_settime` call; it must not run in PID 1's loop (it waits
//! on the network: it is its own process) and must not trust a reply that
//! does not answer its own request ([`crate::host::sntp::judge`]).
//!
//! Each round sends one request and waits at most [`REPLY_WAIT_MS`] for
//! its answer. A clock off by [`STEP_MS`] or more is stepped to the
//! server's time; a smaller offset is left (no slewing). After a good round
//! the next comes `poll_s` later; a failed one is retried after 2 s, then
//! 4, 8 ... up to [`RETRY_MAX_S`] (the network may not be up yet: `berth
//! net` starts beside it). One `time.sync` line per round. The hardware
//! RTC is not written.

use crate::common::log::Event;
use crate::host::sntp::{self, Nanos};
use crate::release::board::time::TimeSync;
use std::net::{Ipv4Addr, UdpSocket};
use std::time::Duration;

/// Longest wait for a reply.
pub const REPLY_WAIT_MS: u64 = 2_000;
/// Offsets at least this large are stepped.
pub const STEP_MS: i128 = 128;
/// First and longest pause after a failed round.
pub const RETRY_MIN_S: u64 = 2;
pub const RETRY_MAX_S: u64 = 64;

fn realtime() -> Result<Nanos, String> {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_REALTIME).map_err(|e| format!("clock_gettime: {e}"))?;
    Ok(i128::from(t.tv_sec()) * 1_000_000_000 + i128::from(t.tv_nsec()))
}

/// The port: the board's, or in test builds `berth.test.ntp-port=` (the
/// test harness's server listens on a free port).
fn port(t: &TimeSync) -> u16 {
    #[cfg(feature = "test-hooks")]
    if let Ok(c) = std::fs::read_to_string("/proc/cmdline") {
        if let Some(p) = c.split_whitespace().find_map(|w| w.strip_prefix("berth.test.ntp-port=")).and_then(|p| p.parse().ok()) {
            return p;
        }
    }
    t.port
}

/// What a good round did.
struct Round {
    sample: sntp::Sample,
    stepped: bool,
    now: Nanos,
}

fn round(server: Ipv4Addr, port: u16) -> Result<Round, String> {
    let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).map_err(|e| format!("bind: {e}"))?;
    sock.connect((server, port)).map_err(|e| format!("connect: {e}"))?;
    sock.set_read_timeout(Some(Duration::from_millis(REPLY_WAIT_MS))).map_err(|e| format!("timeout: {e}"))?;
    let t1 = realtime()?;
    sock.send(&sntp::request(t1)).map_err(|e| format!("send: {e}"))?;
    let mut buf = [0u8; 2 * sntp::LEN];
    let n = sock.recv(&mut buf).map_err(|e| format!("no reply within {REPLY_WAIT_MS} ms: {e}"))?;
    let t4 = realtime()?;
    let sample = sntp::judge(buf.get(..n).unwrap_or_default(), t1, t4).map_err(|r| r.to_string())?;
    let stepped = sample.offset.abs() >= STEP_MS * 1_000_000;
    if stepped {
        let to = realtime()? + sample.offset;
        let spec = nix::sys::time::TimeSpec::new((to.div_euclid(1_000_000_000)) as libc::time_t, to.rem_euclid(1_000_000_000) as libc::c_long);
        nix::time::clock_settime(nix::time::ClockId::CLOCK_REALTIME, spec).map_err(|e| format!("clock_settime: {e}"))?;
    }
    Ok(Round { sample, stepped, now: realtime()? })
}

/// Run rounds for ever (an error only if the table is unusable).
pub fn run(t: &TimeSync) -> Result<std::convert::Infallible, String> {
    let server = t.address().ok_or_else(|| format!("time.server `{}` is not an IPv4 address", t.server))?;
    let port = port(t);
    let mut retry = RETRY_MIN_S;
    loop {
        let to = format!("{server}:{port}");
        let pause = match round(server, port) {
            Ok(r) => {
                Event::info("time.sync")
                    .kv("server", &to)
                    .kv("stratum", r.sample.stratum)
                    .kv("offset_ms", (r.sample.offset / 1_000_000) as i64)
                    .kv("delay_ms", (r.sample.delay / 1_000_000) as i64)
                    .kv("step", if r.stepped { "set" } else { "kept" })
                    .kv("unix", (r.now / 1_000_000_000) as i64)
                    .kv("result", "ok")
                    .emit();
                retry = RETRY_MIN_S;
                u64::from(t.poll_s)
            }
            Err(why) => {
                Event::warn("time.sync").kv("server", &to).kv("result", "error").kv("reason", why).kv("retry_s", retry).emit();
                let p = retry;
                retry = (retry * 2).min(RETRY_MAX_S);
                p
            }
        };
        std::thread::sleep(Duration::from_secs(pause));
    }
}
