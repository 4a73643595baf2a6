//! berth's copy of its events in the kernel log, written off the loop.
//!
//! The loop must not write to `/dev/kmsg` itself: a thread of its own does,
//! so a stalled console stalls only that thread.
//!
//! A write to `/dev/kmsg` of a record more severe than the console log level
//! makes the kernel print it on the console in the writer's context, and a
//! serial console that does not drain holds that write for as long as the
//! UART does: the kernel's serial console waits up to 10 ms per character
//! with the port's lock held and interrupts off, which stalls every other
//! writer of the port and, on one CPU, the whole machine. Two rules follow.
//!
//! - berth's records never reach the kernel's console printing: berth
//!   prints its events on the console itself, so the kernel's copy would
//!   only repeat them. Each record's priority is raised to the console log
//!   level when it is more severe ([`priority_for`]; the level is read from
//!   `/proc/sys/kernel/printk` at most once a second); when no priority
//!   would stay off the console (log level 8, `ignore_loglevel`), nothing is
//!   written. The event's severity stays in its text's `ev=` and `result=`.
//! - PID 1 never writes `/dev/kmsg` from its loop: [`send`] copies the
//!   record into a queue of [`QUEUE_RECORDS`] fixed-size records and
//!   returns; one helper thread takes records off it and writes them. The
//!   helper holds the queue's lock only to take a record, never while it
//!   writes, so [`send`] waits at most for a copy. A record that finds the
//!   queue full is dropped and counted ([`dropped`]); the loop reports the
//!   count as `log.dropped sink=kmsg count=N`.
//!
//! What is written: berth's own events only. Container and service output
//! lines never go to the kernel log (they are in the log store), so the
//! kernel's rate limit on `/dev/kmsg` writers (`printk_devkmsg`), which
//! berth turns off for its own events, is never off for them.
//!
//! The helper thread works in fixed buffers and never touches the loop's
//! state; without it (it could not be started) nothing is written to the
//! kernel log.

use std::fs::File;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Records waiting for the helper at most.
pub const QUEUE_RECORDS: usize = 64;
/// Longest record: the `<p>berth: ` prefix and an event line.
const RECORD_MAX: usize = super::LINE_MAX + 16;

#[derive(Clone, Copy)]
struct Record {
    len: usize,
    bytes: [u8; RECORD_MAX],
}

struct Queue {
    records: heapless::Deque<Record, QUEUE_RECORDS>,
    /// The helper is writing a record it took.
    busy: bool,
}

static QUEUE: Mutex<Queue> = Mutex::new(Queue { records: heapless::Deque::new(), busy: false });
/// Signalled when a record is queued.
static MORE: Condvar = Condvar::new();
/// Signalled when the queue runs empty.
static IDLE: Condvar = Condvar::new();
static STARTED: AtomicBool = AtomicBool::new(false);
static DROPPED: AtomicU64 = AtomicU64::new(0);

fn lock() -> std::sync::MutexGuard<'static, Queue> {
    QUEUE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Open `/dev/kmsg` and start the helper (once per process image: a
/// re-executed berth starts its own).
pub fn start() -> std::io::Result<()> {
    if STARTED.load(Ordering::SeqCst) {
        return Ok(());
    }
    let kmsg = std::fs::OpenOptions::new().write(true).open("/dev/kmsg")?;
    std::thread::Builder::new().name("kmsg".into()).spawn(move || helper(kmsg))?;
    STARTED.store(true, Ordering::SeqCst);
    Ok(())
}

/// The priority to write a record of `level` at, so that the kernel never
/// prints it on a console whose log level is `console` (it prints records
/// whose level is below that); `None` when none would do.
pub fn priority_for(level: u8, console: u8) -> Option<u8> {
    match level.max(console) {
        p @ 0..=7 => Some(p),
        _ => None,
    }
}

/// The console log level now (9 with `ignore_loglevel`: everything prints).
fn console_level() -> u8 {
    let read = |path: &str, buf: &mut [u8]| File::open(path).and_then(|mut f| std::io::Read::read(&mut f, buf)).unwrap_or(0);
    let mut yes = [0u8; 1];
    if read("/sys/module/printk/parameters/ignore_loglevel", &mut yes) == 1 && yes == [b'Y'] {
        return 9;
    }
    let mut buf = [0u8; 64];
    let n = read("/proc/sys/kernel/printk", &mut buf);
    let text = core::str::from_utf8(buf.get(..n).unwrap_or(&[])).unwrap_or("");
    // Unknown: assume the kernel's default (7: everything but debug prints).
    text.split_whitespace().next().and_then(|v| v.parse::<u8>().ok()).unwrap_or(7)
}

fn helper(mut kmsg: File) {
    let mut level = console_level();
    let mut read_at = Instant::now();
    loop {
        let rec = {
            let mut q = lock();
            q.busy = false;
            loop {
                if let Some(r) = q.records.pop_front() {
                    q.busy = true;
                    break r;
                }
                IDLE.notify_all();
                q = MORE.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        };
        if read_at.elapsed() >= Duration::from_secs(1) {
            level = console_level();
            read_at = Instant::now();
        }
        let mut rec = rec;
        // The record's priority digit (after `<`), as `send` wrote it.
        let Some(digit) = rec.bytes.get_mut(1) else {
            continue;
        };
        let Some(p) = priority_for(digit.wrapping_sub(b'0'), level) else {
            continue;
        };
        *digit = b'0' + p;
        // One write per record: /dev/kmsg takes a record per write(2).
        let _ = kmsg.write(rec.bytes.get(..rec.len).unwrap_or(&[]));
    }
}

/// Queue `line` (an event line) for the kernel log at `priority` (0..=7).
pub fn send(priority: u8, line: &[u8]) {
    if !STARTED.load(Ordering::Relaxed) {
        return;
    }
    let mut rec = Record { len: 0, bytes: [0; RECORD_MAX] };
    let digit = b'0' + priority.min(7);
    let prefix = [b'<', digit, b'>', b'b', b'e', b'r', b't', b'h', b':', b' '];
    let mut parts = prefix.iter().chain(line.iter());
    for slot in rec.bytes.iter_mut() {
        match parts.next() {
            Some(&b) => {
                *slot = b;
                rec.len += 1;
            }
            None => break,
        }
    }
    let mut q = lock();
    if q.records.push_back(rec).is_err() {
        DROPPED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    drop(q);
    MORE.notify_one();
}

/// Records dropped since boot because the queue was full.
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Wait up to `max` for the helper to write what is queued (before
/// re-executing or halting).
pub fn flush(max: Duration) {
    if !STARTED.load(Ordering::Relaxed) {
        return;
    }
    let end = Instant::now() + max;
    let mut q = lock();
    while !q.records.is_empty() || q.busy {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        q = match IDLE.wait_timeout(q, left) {
            Ok((g, _)) => g,
            Err(e) => e.into_inner().0,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_stay_off_the_kernel_console() {
        // loglevel=4: errors (3) would print; they are written at 4.
        assert_eq!(priority_for(3, 4), Some(4));
        assert_eq!(priority_for(4, 4), Some(4));
        assert_eq!(priority_for(6, 4), Some(6));
        // The default level 7: only debug stays off.
        assert_eq!(priority_for(3, 7), Some(7));
        assert_eq!(priority_for(7, 7), Some(7));
        // Everything prints: nothing is written.
        assert_eq!(priority_for(3, 8), None);
        assert_eq!(priority_for(7, 9), None);
        assert_eq!(priority_for(0, 0), Some(0));
    }
}
