//! The agent's modes for the `logsock` variant (`qemu_tests::logquota`).
//!
//! - `log-quota`: once `berthctl logs noisy-b` shows its last line, read
//!   every file of the log store and report its facts (`AGENT logfile
//!   name= bytes= lines= first= last= gaps= prefix=`), their total, and
//!   what `berthctl logs NAME -n 3` shows of each container (`AGENT ctllogs
//!   name= last= dropped=`). The harness judges.
//! - `ctl-clients`: the control socket under more clients than its slots,
//!   and a client that never reads its reply (see [`ctl_clients`]).

use qemu_tests::logquota::{self, NOISY_A, NOISY_B};
use std::fs;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

const LOGS: &str = "/data/berth/logs";
const SOCK: &str = "/run/berth/control";
/// berth's limit of control clients at once (`docs/testing.md`, ctl-fuzz).
const SLOTS: usize = 4;
/// Clients that connect at once in the concurrency check.
const CLIENTS: usize = 10;
/// The control protocol's version, and the frames the agent sends,
/// postcard by hand: `Request { version, command }`.
const VERSION: u8 = qemu_tests::ctlclients::PROTOCOL_VERSION;
/// The system's default socket buffer while the non-reader connects
/// (`net.core.wmem_default`, its least): smaller than its reply.
const SMALL_SNDBUF: &str = "4608";
const WMEM_DEFAULT: &str = "/proc/sys/net/core/wmem_default";

fn say(line: &str) {
    super::say(line);
}

/// `berthctl logs NAME -n 3`: the number of its last line (tag `tag`) and
/// the dropped count it warns of (0 without a warning).
fn ctl_logs(name: &str, tag: &str) -> Option<(u64, u64)> {
    let out = std::process::Command::new("/sbin/berthctl").args(["logs", name, "-n", "3"]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().and_then(logquota::split_line).and_then(|(_, text)| logquota::number(tag, text)).unwrap_or(0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let dropped = stderr.lines().find_map(|l| l.strip_prefix("berthctl: ")?.split(' ').next()?.parse().ok()).unwrap_or(0);
    Some((last, dropped))
}

/// The facts of one stored file; `tag` numbers its lines.
fn file_facts(name: &str, bytes: &[u8], tag: Option<&str>) -> String {
    let text = String::from_utf8_lossy(bytes);
    let (mut lines, mut first, mut last, mut gaps, mut prefix) = (0u64, 0u64, 0u64, 0u64, None::<usize>);
    let (mut mixed, mut headers) = (false, 0usize);
    // Lines of a numbered stream that carry no number, said for the record.
    let mut odd: Vec<String> = Vec::new();
    for l in text.lines() {
        // A file's part written by one boot starts with its header.
        if l.starts_with(logquota::HEADER_TAG) {
            headers += l.len() + 1;
            continue;
        }
        lines += 1;
        let Some((width, rest)) = logquota::split_line(l) else {
            mixed = true;
            continue;
        };
        match prefix {
            None => prefix = Some(width),
            Some(p) if p != width => mixed = true,
            Some(_) => {}
        }
        let Some(n) = tag.and_then(|t| logquota::number(t, rest)) else {
            if tag.is_some() && odd.len() < 3 {
                odd.push(format!("{l:?}"));
            }
            continue;
        };
        if first == 0 {
            first = n;
        } else if n != last + 1 {
            gaps += 1;
        }
        last = n;
    }
    let prefix = if mixed { 0 } else { prefix.unwrap_or(0) };
    for o in &odd {
        say(&format!("AGENT logodd name={name} line={o}"));
    }
    format!("AGENT logfile name={name} bytes={} lines={lines} first={first} last={last} gaps={gaps} prefix={prefix} header={headers}", bytes.len())
}

pub fn log_quota() {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(400) {
        if ctl_logs("noisy-b", "B").is_some_and(|(last, _)| last == NOISY_B) {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    // noisy-b's lines are in the ring: those the files could take are
    // written with them.
    std::thread::sleep(Duration::from_secs(2));
    let mut names: Vec<String> = fs::read_dir(LOGS).map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()).unwrap_or_default();
    names.sort();
    say(&format!("AGENT measure=logs_files value={}", names.len()));
    let mut total = 0u64;
    for name in &names {
        let bytes = fs::read(format!("{LOGS}/{name}")).unwrap_or_default();
        total += bytes.len() as u64;
        let tag = [("container-quiet.log", "Q"), ("container-noisy-a.log", "A"), ("container-noisy-b.log", "B")]
            .into_iter()
            .find(|(f, _)| name.starts_with(f))
            .map(|(_, t)| t);
        say(&file_facts(name, &bytes, tag));
    }
    say(&format!("AGENT measure=logs_total value={total}"));
    for (name, tag) in [("quiet", "Q"), ("noisy-a", "A"), ("noisy-b", "B")] {
        let (last, dropped) = ctl_logs(name, tag).unwrap_or((0, u64::MAX));
        say(&format!("AGENT ctllogs name={name} last={last} dropped={dropped}"));
    }
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as u32).to_le_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

/// `Command::Status`.
fn status_frame() -> Vec<u8> {
    frame(&[VERSION, 0])
}

/// `Command::Logs { name, after: None, max: 64 }`.
fn logs_frame(name: &str) -> Vec<u8> {
    let mut body = vec![VERSION, 5, name.len() as u8];
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(&[0, 64]);
    frame(&body)
}

/// A reply read whole: (variant, body), or what went wrong.
fn read_reply(s: &mut UnixStream) -> Result<(u8, Vec<u8>), String> {
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut prefix = [0u8; 4];
    s.read_exact(&mut prefix).map_err(|e| format!("no reply: {e}"))?;
    let mut body = vec![0u8; u32::from_le_bytes(prefix) as usize];
    s.read_exact(&mut body).map_err(|e| format!("short reply: {e}"))?;
    Ok((body.first().copied().unwrap_or(u8::MAX), body))
}

fn readable(s: &UnixStream) -> bool {
    let mut p = libc::pollfd { fd: s.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd, no wait.
    unsafe { libc::poll(&mut p, 1, 0) > 0 && p.revents != 0 }
}

/// [`CLIENTS`] clients connect at once and say nothing; those berth turned
/// away have their answer at once; the others then ask for the status.
/// (answered, busy, other) counts.
fn concurrent() -> (usize, usize, Vec<String>) {
    let mut clients: Vec<UnixStream> = (0..CLIENTS).filter_map(|_| UnixStream::connect(SOCK).ok()).collect();
    let mut other = Vec::new();
    if clients.len() != CLIENTS {
        other.push(format!("only {} of {CLIENTS} connects succeeded", clients.len()));
    }
    // berth accepts every pending client in its loop: wait (1 s at most)
    // until all but the slots' clients have their answer.
    let t = Instant::now();
    while clients.iter().filter(|c| readable(c)).count() < CLIENTS - SLOTS && t.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let (mut answered, mut busy) = (0, 0);
    let waiting: Vec<bool> = clients.iter().map(|c| !readable(c)).collect();
    for (c, wait) in clients.iter_mut().zip(&waiting) {
        if *wait {
            let _ = c.write_all(&status_frame());
        }
    }
    for c in &mut clients {
        match read_reply(c) {
            Ok((0, _)) => answered += 1,
            Ok((4, body)) if String::from_utf8_lossy(&body).contains("busy: too many control clients") => busy += 1,
            Ok((v, body)) => other.push(format!("reply variant {v}: {:?}", String::from_utf8_lossy(&body))),
            Err(e) => other.push(e),
        }
    }
    (answered, busy, other)
}

/// `berthctl status` `n` times: how many answered, the slowest in ms.
fn statuses(n: usize) -> (usize, u64) {
    let (mut ok, mut worst) = (0, 0u64);
    for _ in 0..n {
        let t = Instant::now();
        if super::berthctl(&["status"]).is_some_and(|s| s.starts_with("NAME")) {
            ok += 1;
        }
        worst = worst.max(t.elapsed().as_millis() as u64);
    }
    (ok, worst)
}

/// The `recently` part of `berthctl status`'s loop line: (ms, kind).
fn recent_handler() -> Option<(f64, String)> {
    let status = super::berthctl(&["status"])?;
    let line = status.lines().find(|l| l.starts_with("loop:"))?;
    let rest = line.split_once("recently")?.1.split_once("):")?.1.trim();
    let (ms, kind) = rest.split_once(" ms (")?;
    Some((ms.trim().parse().ok()?, kind.split(')').next()?.to_string()))
}

/// The non-reader: connect while the system's default socket buffer is
/// smaller than its reply, ask for noisy-a's last 64 lines (about 13 KB),
/// never read.
fn non_reader() -> Result<UnixStream, String> {
    let old = fs::read_to_string(WMEM_DEFAULT).map_err(|e| format!("{WMEM_DEFAULT}: {e}"))?;
    fs::write(WMEM_DEFAULT, SMALL_SNDBUF).map_err(|e| format!("{WMEM_DEFAULT} <- {SMALL_SNDBUF}: {e}"))?;
    let s = UnixStream::connect(SOCK);
    let restored = fs::write(WMEM_DEFAULT, old.trim());
    let mut s = s.map_err(|e| format!("connect: {e}"))?;
    restored.map_err(|e| format!("{WMEM_DEFAULT} <- {}: {e}", old.trim()))?;
    s.write_all(&logs_frame("noisy-a")).map_err(|e| format!("send: {e}"))?;
    Ok(s)
}

pub fn ctl_clients() {
    // noisy-a's ring holds 64 full lines once it is done.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(300) && ctl_logs("noisy-a", "A").is_none_or(|(l, _)| l != NOISY_A) {
        std::thread::sleep(Duration::from_secs(1));
    }
    let (answered, busy, other) = concurrent();
    let pass = answered == SLOTS && busy == CLIENTS - SLOTS && other.is_empty();
    super::report("ctl-concurrent", pass, &format!("{answered} answered, {busy} busy of {CLIENTS}, want {SLOTS} and {}; other: {other:?}", CLIENTS - SLOTS));
    let mut x = match non_reader() {
        Ok(x) => x,
        Err(e) => {
            super::report("ctl-nonreader", false, &e);
            return;
        }
    };
    // Meanwhile and right after: others are answered, and once berth gave
    // up on the non-reader its slot is free again.
    let (ok, worst) = statuses(10);
    let loop_recent = recent_handler();
    let (answered, busy, other) = concurrent();
    // What the non-reader finally gets: its whole reply, then the end
    // (berth's side of the connection had room for all of it, and closed).
    let _ = x.set_read_timeout(Some(Duration::from_secs(5)));
    let mut got = Vec::new();
    let eof = x.read_to_end(&mut got).is_ok();
    let announced = got.get(..4).and_then(|p| p.try_into().ok()).map_or(0, |p: [u8; 4]| u32::from_le_bytes(p) as usize);
    let whole = got.len() > 4 && got.len() == announced + 4 && got.get(4) == Some(&5);
    let (ms, kind) = loop_recent.clone().unwrap_or((-1.0, String::new()));
    say(&format!("AGENT measure=ctl_nonreader_loop_ms value={}", ms.max(0.0) as u64));
    let pass = ok == 10 && worst < 2000 && answered == SLOTS && busy == CLIENTS - SLOTS && other.is_empty() && eof && whole && loop_recent.is_some();
    super::report(
        "ctl-nonreader",
        pass,
        &format!(
            "status during: {ok}/10 answered, slowest {worst} ms; loop recently {ms} ms ({kind}); then {answered} answered, {busy} busy, other {other:?}; the non-reader got {} of {} bytes, end={eof}",
            got.len(),
            announced + 4
        ),
    );
    let (ok, _) = statuses(3);
    super::report("ctl-after", ok == 3, &format!("{ok}/3 status answered at the end"));
}
