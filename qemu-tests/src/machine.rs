//! One QEMU guest and its serial console.
//!
//! [`Machine::spawn`] starts the emulator with stdin, stdout and stderr piped.
//! One reader thread per output stream sends complete lines (lossy UTF-8,
//! trailing `\r` stripped; stderr lines prefixed with [`STDERR_PREFIX`]) to
//! the machine, which keeps every line ever seen; a line that was not
//! UTF-8 is kept as its bytes too ([`Machine::raw_lines`]), and the log
//! file gets the bytes. A cursor marks how far the
//! test has consumed the console: each `expect_*` looks at the lines after
//! the cursor (already received or still to come) and moves the cursor just
//! past the line that matched. Lines are only taken from the channel while a
//! method of the machine runs (`expect_*`, [`Machine::wait_exit`],
//! [`Machine::poll`], [`Machine::kill`]); the pipes buffer in between.
//!
//! An expect fails at once, with the exit status and the console tail, when
//! the emulator exits while it waits: a crashed or powered-off guest never
//! costs a full timeout.
//!
//! The emulator never outlives the machine: [`Drop`] kills and reaps it (also
//! when a test panics and unwinds), and the child is started with
//! `PR_SET_PDEATHSIG=SIGKILL`, so it also dies when the test process dies
//! without unwinding (`panic = "abort"`, a signal). Linux ties the death
//! signal to the *thread* that spawned the child: keep a machine on the thread
//! that created it, or make sure that thread outlives it.
//!
//! berth writes each event to the console and, for warnings and errors, to
//! the kernel log too; with a verbose console log level the kernel echoes that
//! copy on the console as `[ 1.234] berth: BERTH t=...`. Such a repeated event
//! line (identical text from `BERTH t=` on, the time has microseconds,
//! within 64 lines of the first) is kept in [`Machine::lines`] but is
//! skipped by [`Machine::events`] and the event expects, so each event is
//! seen once.
//!
//! A machine may read its console from a Unix socket instead
//! ([`Machine::attach_console`], QEMU's `-chardev socket,server=on`), and
//! then stop reading it for a while ([`Machine::pause_console`]) as a
//! stalled serial console would: QEMU's socket fills and the guest's UART
//! stops draining.
//!
//! When the environment variable [`LOG_DIR_ENV`] names a directory, every
//! machine also writes its console to `<dir>/<name>.log` (for CI artifacts).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::event::{parse_agent_line, parse_line, parse_with_text, AgentLine, Event};

/// Lines of console shown in failure messages.
pub const TAIL_LINES: usize = 40;
/// Prefix of lines that QEMU wrote to its stderr.
pub const STDERR_PREFIX: &str = "[qemu stderr] ";
/// Environment variable naming a directory for per-machine console logs.
pub const LOG_DIR_ENV: &str = "BERTH_QEMU_LOG_DIR";

/// A kernel-log copy of an event follows the original within this many
/// lines; the same text further away is a new event (e.g. after a reboot).
const REPEAT_WINDOW: usize = 64;
/// Longest single wait on the channel, so process exit is noticed promptly.
const POLL: Duration = Duration::from_millis(50);
/// After the process exited, how long to wait for its pipes to reach EOF
/// (a grandchild may hold them open).
const EXIT_GRACE: Duration = Duration::from_millis(500);

enum Msg {
    /// The lossy text, and the bytes when they were not UTF-8.
    Line(String, Option<Vec<u8>>),
    Eof,
}

/// A running (or finished) emulator and everything it printed.
pub struct Machine {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    rx: Receiver<Msg>,
    open_streams: usize,
    lines: Vec<String>,
    /// Line index -> its bytes, for the lines that were not UTF-8.
    raw: HashMap<usize, Vec<u8>>,
    /// Per line: an event line repeating an earlier one.
    repeated: Vec<bool>,
    /// Event text -> index of the last line that carried it.
    event_texts: HashMap<String, usize>,
    cursor: usize,
    status: Option<ExitStatus>,
    exit_seen: Option<Instant>,
    log: Option<File>,
    started: Instant,
    data_image: Option<PathBuf>,
    /// The socket console's reader, while set, does not read.
    console_paused: Option<Arc<AtomicBool>>,
    /// A sender for readers started after spawn.
    tx: Sender<Msg>,
}

/// A reader that does not read while its flag is set.
struct Gated<R> {
    inner: R,
    paused: Arc<AtomicBool>,
}

impl<R: Read> Read for Gated<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.paused.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(20));
        }
        self.inner.read(buf)
    }
}

impl Machine {
    /// Start `program args...` (normally `qemu-system-*`). `name` labels
    /// messages, threads and the log file.
    pub fn spawn(name: &str, program: &str, args: &[String]) -> Result<Machine, String> {
        let mut cmd = Command::new(program);
        cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: the closure only makes async-signal-safe system calls.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0 as libc::c_ulong, 0 as libc::c_ulong, 0 as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died before the death signal was set.
                if libc::getppid() != parent {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| format!("[{name}] cannot start {program}: {e}"))?;
        let stdin = child.stdin.take();
        let (tx, rx) = mpsc::channel();
        let mut machine = Machine {
            name: name.to_string(),
            child,
            stdin,
            rx,
            open_streams: 0,
            lines: Vec::new(),
            raw: HashMap::new(),
            repeated: Vec::new(),
            event_texts: HashMap::new(),
            cursor: 0,
            status: None,
            exit_seen: None,
            log: None,
            started: Instant::now(),
            data_image: None,
            console_paused: None,
            tx: tx.clone(),
        };
        // From here on, an early return drops `machine`, which kills the child.
        if let Some(out) = machine.child.stdout.take() {
            start_reader(name, "stdout", out, "", tx.clone())?;
            machine.open_streams += 1;
        }
        if let Some(err) = machine.child.stderr.take() {
            start_reader(name, "stderr", err, STDERR_PREFIX, tx)?;
            machine.open_streams += 1;
        }
        if let Some(dir) = std::env::var_os(LOG_DIR_ENV).filter(|d| !d.is_empty()) {
            let path = PathBuf::from(dir).join(format!("{}.log", file_name_for(name)));
            if let Err(e) = machine.open_log(&path, true) {
                eprintln!("[{name}] warning: {e}");
            }
        }
        Ok(machine)
    }

    /// Read the guest's console from the Unix socket QEMU listens on at
    /// `path` (QEMU waits for this reader before it starts the guest).
    pub fn attach_console(&mut self, path: &Path) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) => {
                    if Instant::now() >= deadline || self.exit_status().is_some() {
                        return Err(format!("[{}] cannot connect to the console socket {}: {e}\n{}", self.name, path.display(), self.tail_block()));
                    }
                    thread::sleep(Duration::from_millis(50));
                }
            }
        };
        let paused = Arc::new(AtomicBool::new(false));
        let gated = Gated { inner: stream, paused: Arc::clone(&paused) };
        start_reader(&self.name, "console", gated, "", self.tx.clone())?;
        self.open_streams += 1;
        self.console_paused = Some(paused);
        Ok(())
    }

    /// Stop (`true`) or resume reading the socket console; lines already
    /// read are still delivered. Fails without a socket console.
    pub fn pause_console(&mut self, pause: bool) -> Result<(), String> {
        let flag = self.console_paused.as_ref().ok_or_else(|| format!("[{}] the console is not a socket", self.name))?;
        flag.store(pause, Ordering::SeqCst);
        Ok(())
    }

    /// The name given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The data partition image this machine boots on (set by whoever
    /// launched it), so that a later boot can reuse it.
    pub fn data_image(&self) -> Option<&Path> {
        self.data_image.as_deref()
    }

    /// Record the data partition image (see [`Machine::data_image`]).
    pub fn set_data_image(&mut self, path: PathBuf) {
        self.data_image = Some(path);
    }

    /// The emulator's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Also append every console line (those seen so far, then each new one)
    /// to the file at `path`.
    pub fn log_to(&mut self, path: impl AsRef<Path>) -> Result<(), String> {
        self.open_log(path.as_ref(), false)
    }

    fn open_log(&mut self, path: &Path, truncate: bool) -> Result<(), String> {
        let mut opts = OpenOptions::new();
        if truncate {
            opts.write(true).create(true).truncate(true);
        } else {
            opts.append(true).create(true);
        }
        let mut f = opts.open(path).map_err(|e| format!("cannot open console log {}: {e}", path.display()))?;
        for l in self.raw_lines() {
            f.write_all(l).and_then(|_| f.write_all(b"\n")).map_err(|e| format!("cannot write console log {}: {e}", path.display()))?;
        }
        self.log = Some(f);
        Ok(())
    }

    /// Wait for the next event named `ev` after the cursor.
    pub fn expect_event(&mut self, ev: &str, timeout: Duration) -> Result<Event, String> {
        self.wait_event(&format!("event `{ev}`"), ev, |_| true, timeout)
    }

    /// Wait for the next event named `ev` after the cursor for which `pred`
    /// holds. Events named `ev` that fail `pred` are passed over.
    pub fn expect_event_where(&mut self, ev: &str, pred: impl Fn(&Event) -> bool, timeout: Duration) -> Result<Event, String> {
        self.wait_event(&format!("event `{ev}` matching the predicate"), ev, pred, timeout)
    }

    fn wait_event(&mut self, what: &str, ev: &str, pred: impl Fn(&Event) -> bool, timeout: Duration) -> Result<Event, String> {
        self.wait_for(what, timeout, |line, repeated| {
            if repeated {
                return None;
            }
            parse_line(line).filter(|e| e.name == ev && pred(e))
        })
    }

    /// Wait for the next console line after the cursor containing `needle`.
    pub fn expect_line(&mut self, needle: &str, timeout: Duration) -> Result<String, String> {
        let what = format!("a console line containing `{needle}`");
        self.wait_for(&what, timeout, |line, _| if line.contains(needle) { Some(line.to_string()) } else { None })
    }

    /// Wait for `AGENT done` after the cursor; return the agent's lines
    /// (checks and actions) between the cursor and it.
    pub fn expect_agent_done(&mut self, timeout: Duration) -> Result<Vec<AgentLine>, String> {
        let from = self.cursor;
        self.wait_for("the test agent's `AGENT done`", timeout, |line, _| if parse_agent_line(line) == Some(AgentLine::Done) { Some(()) } else { None })?;
        let upto = self.cursor.saturating_sub(1);
        Ok(self.lines[from..upto].iter().filter_map(|l| parse_agent_line(l)).collect())
    }

    /// Wait for the agent's next `AGENT measure=<name> value=N` after the
    /// cursor and return N.
    pub fn expect_agent_measure(&mut self, name: &str, timeout: Duration) -> Result<u64, String> {
        self.wait_for(&format!("the test agent's measure `{name}`"), timeout, |line, _| match parse_agent_line(line) {
            Some(AgentLine::Measure { name: n, value }) if n == name => Some(value),
            _ => None,
        })
    }

    /// Like [`Machine::expect_agent_done`], and fail unless every check passed
    /// (the error lists the failed checks and the console tail).
    pub fn expect_agent_pass(&mut self, timeout: Duration) -> Result<Vec<AgentLine>, String> {
        let lines = self.expect_agent_done(timeout)?;
        let failed: Vec<String> = lines
            .iter()
            .filter_map(|l| match l {
                AgentLine::Check { name, passed: false, detail } => Some(format!("  {name}: {detail}")),
                _ => None,
            })
            .collect();
        if failed.is_empty() {
            Ok(lines)
        } else {
            Err(format!("[{}] agent checks failed:\n{}\n{}", self.name, failed.join("\n"), self.tail_block()))
        }
    }

    /// All events seen so far (repeated kernel-log copies left out).
    pub fn events(&self) -> Vec<Event> {
        self.lines.iter().zip(&self.repeated).filter(|(_, rep)| !**rep).filter_map(|(l, _)| parse_line(l)).collect()
    }

    /// All console lines seen so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.clone()
    }

    /// All console lines seen so far as the bytes that came (less the
    /// newline and trailing carriage returns): [`Machine::lines`] shows a
    /// byte that is not UTF-8 as U+FFFD, which would hide it.
    pub fn raw_lines(&self) -> Vec<&[u8]> {
        self.lines.iter().enumerate().map(|(i, l)| self.raw.get(&i).map_or(l.as_bytes(), Vec::as_slice)).collect()
    }

    /// Index of the first line the next expect will look at.
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// Move the cursor (clamped to the lines seen); `set_cursor(0)` makes the
    /// next expect search the console from the start.
    pub fn set_cursor(&mut self, pos: usize) {
        self.cursor = pos.min(self.lines.len());
    }

    /// Take whatever output has arrived, without waiting.
    pub fn poll(&mut self) {
        self.pump(Duration::ZERO);
    }

    /// Write `bytes` to the emulator's stdin (the guest's serial console).
    /// With `-nographic`/`-serial mon:stdio`, byte 0x01 (Ctrl-A) is QEMU's
    /// escape character.
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        let name = &self.name;
        let stdin = self.stdin.as_mut().ok_or_else(|| format!("[{name}] stdin is closed"))?;
        stdin.write_all(bytes).and_then(|_| stdin.flush()).map_err(|e| format!("[{name}] cannot write to the console: {e}"))
    }

    /// Close the emulator's stdin.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Wait for the emulator to exit by itself (a guest poweroff), reading
    /// its output meanwhile. On timeout it is left running (drop kills it).
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.status {
                if self.output_finished() {
                    return Ok(status);
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(format!("[{}] timed out after {:.1}s waiting for QEMU to exit\n{}", self.name, timeout.as_secs_f64(), self.tail_block()));
            }
            self.pump(POLL.min(deadline - now));
        }
    }

    /// The exit status, if the emulator has exited (does not wait).
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.poll();
        self.status
    }

    /// Kill (SIGKILL) and reap the emulator, then collect its last output.
    /// Does nothing to an emulator that already exited.
    pub fn kill(&mut self) {
        self.stdin = None;
        // A paused reader must see the end of its socket.
        if let Some(p) = &self.console_paused {
            p.store(false, Ordering::SeqCst);
        }
        if self.status.is_none() {
            let _ = self.child.kill();
            if let Ok(status) = self.child.wait() {
                self.status = Some(status);
            }
            self.exit_seen = Some(Instant::now());
        }
        let deadline = Instant::now() + Duration::from_millis(200);
        while self.open_streams > 0 {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            self.pump(deadline - now);
        }
    }

    /// The last `n` console lines, one per line.
    pub fn tail(&self, n: usize) -> String {
        let start = self.lines.len().saturating_sub(n);
        self.lines[start..].join("\n")
    }

    fn tail_block(&self) -> String {
        let n = self.lines.len().min(TAIL_LINES);
        format!("--- last {n} of {} console lines ---\n{}\n--- end of console ---", self.lines.len(), self.tail(TAIL_LINES))
    }

    /// The core of every expect: scan lines after the cursor, pull more from
    /// the readers until `matcher` accepts one, the deadline passes or the
    /// emulator is gone.
    fn wait_for<T>(&mut self, what: &str, timeout: Duration, mut matcher: impl FnMut(&str, bool) -> Option<T>) -> Result<T, String> {
        let begin = Instant::now();
        let deadline = begin + timeout;
        let mut scanned = self.cursor;
        loop {
            while scanned < self.lines.len() {
                if let Some(v) = matcher(&self.lines[scanned], self.repeated[scanned]) {
                    self.cursor = scanned + 1;
                    return Ok(v);
                }
                scanned += 1;
            }
            if self.output_finished() {
                return Err(self.gone_message(what, begin));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(format!(
                    "[{}] timed out after {:.1}s waiting for {what} (console lines: {}, cursor: {})\n{}",
                    self.name,
                    timeout.as_secs_f64(),
                    self.lines.len(),
                    self.cursor,
                    self.tail_block()
                ));
            }
            self.pump(POLL.min(deadline - now));
        }
    }

    fn gone_message(&mut self, what: &str, begin: Instant) -> String {
        // The console closed; give the exit status a moment to be reported.
        let until = Instant::now() + Duration::from_secs(1);
        while self.status.is_none() && Instant::now() < until {
            self.pump(Duration::from_millis(20));
        }
        let how = match self.status {
            Some(s) => format!("QEMU exited ({s})"),
            None => "QEMU closed its console (still running)".to_string(),
        };
        format!(
            "[{}] {how} while waiting {:.1}s for {what}, {:.1}s after start\n{}",
            self.name,
            begin.elapsed().as_secs_f64(),
            self.started.elapsed().as_secs_f64(),
            self.tail_block()
        )
    }

    /// No more output can come: both pipes reached EOF, or the process
    /// exited a while ago.
    fn output_finished(&self) -> bool {
        self.open_streams == 0 || (self.status.is_some() && self.exit_seen.is_some_and(|t| t.elapsed() >= EXIT_GRACE))
    }

    /// Take messages from the readers, waiting up to `wait` for the first.
    fn pump(&mut self, wait: Duration) {
        if self.open_streams > 0 {
            let first = if wait.is_zero() { self.rx.try_recv().map_err(|_| RecvTimeoutError::Timeout) } else { self.rx.recv_timeout(wait) };
            match first {
                Ok(m) => self.take(m),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => self.open_streams = 0,
            }
            while let Ok(m) = self.rx.try_recv() {
                self.take(m);
            }
        } else if self.status.is_none() && !wait.is_zero() {
            thread::sleep(wait);
        }
        if self.status.is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.status = Some(status);
                self.exit_seen = Some(Instant::now());
            }
        }
    }

    fn take(&mut self, m: Msg) {
        match m {
            Msg::Eof => self.open_streams = self.open_streams.saturating_sub(1),
            Msg::Line(line, raw) => {
                if let Some(f) = self.log.as_mut() {
                    let bytes = raw.as_deref().unwrap_or(line.as_bytes());
                    if f.write_all(bytes).and_then(|_| f.write_all(b"\n")).is_err() {
                        self.log = None;
                    }
                }
                let idx = self.lines.len();
                if let Some(raw) = raw {
                    self.raw.insert(idx, raw);
                }
                let repeated = match parse_with_text(&line) {
                    Some((_, text)) => match self.event_texts.insert(text.to_string(), idx) {
                        Some(prev) => idx - prev <= REPEAT_WINDOW,
                        None => false,
                    },
                    None => false,
                };
                self.lines.push(line);
                self.repeated.push(repeated);
            }
        }
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        self.kill();
    }
}

fn file_name_for(name: &str) -> String {
    let s: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect();
    if s.is_empty() || s.starts_with('.') {
        format!("machine{s}")
    } else {
        s
    }
}

fn start_reader(name: &str, what: &str, stream: impl Read + Send + 'static, prefix: &'static str, tx: Sender<Msg>) -> Result<(), String> {
    thread::Builder::new()
        .name(format!("{name}-{what}"))
        .spawn(move || {
            let mut r = BufReader::new(stream);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match r.read_until(b'\n', &mut buf) {
                    Ok(0) => break,
                    Ok(_) => {
                        if buf.last() == Some(&b'\n') {
                            buf.pop();
                        }
                        while buf.last() == Some(&b'\r') {
                            buf.pop();
                        }
                        let line = format!("{prefix}{}", String::from_utf8_lossy(&buf));
                        let raw = std::str::from_utf8(&buf).is_err().then(|| [prefix.as_bytes(), &buf].concat());
                        if tx.send(Msg::Line(line, raw)).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
            let _ = tx.send(Msg::Eof);
        })
        .map(|_| ())
        .map_err(|e| format!("[{name}] cannot start the {what} reader thread: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(name: &str, script: &str) -> Machine {
        Machine::spawn(name, "sh", &["-c".to_string(), script.to_string()]).unwrap()
    }

    fn alive(pid: u32) -> bool {
        // A reaped process has no /proc entry (its pid is not reused this fast).
        Path::new(&format!("/proc/{pid}")).exists()
    }

    const S: Duration = Duration::from_secs(10);

    #[test]
    fn lines_that_are_not_utf8_keep_their_bytes() {
        let log = std::env::temp_dir().join(format!("berth-machine-raw-{}.log", std::process::id()));
        let mut m = sh("raw", "printf 'plain \\033[1m\\r\\342\\200\\256x\\r\\r\\nbad \\233 \\302\\233\\n'");
        m.log_to(&log).unwrap();
        m.wait_exit(S).unwrap();
        assert_eq!(m.lines(), ["plain \u{1b}[1m\r\u{202e}x", "bad \u{fffd} \u{9b}"]);
        let raw: Vec<Vec<u8>> = m.raw_lines().into_iter().map(<[u8]>::to_vec).collect();
        assert_eq!(raw, [b"plain \x1b[1m\r\xe2\x80\xaex".to_vec(), b"bad \x9b \xc2\x9b".to_vec()]);
        assert_eq!(std::fs::read(&log).unwrap(), b"plain \x1b[1m\r\xe2\x80\xaex\nbad \x9b \xc2\x9b\n");
        let _ = std::fs::remove_file(&log);
    }

    #[test]
    fn expects_events_in_order() {
        let mut m = sh(
            "fake",
            "echo 'x BERTH t=1.000000 ev=boot.start pid=1'; echo 'noise'; sleep 0.2; \
             echo 'BERTH t=2.000000 ev=mount target=/proc result=ok'; \
             echo 'BERTH t=2.500000 ev=mount target=/data result=error error=\"EIO: I/O error\"'; \
             echo 'BERTH t=3.000000 ev=boot.ready'; exit 0",
        );
        let e = m.expect_event("boot.start", S).unwrap();
        assert_eq!((e.t, e.get("pid")), (1.0, Some("1")));
        let e = m.expect_event_where("mount", |e| e.is("result", "error"), S).unwrap();
        assert_eq!(e.get("target"), Some("/data"));
        assert_eq!(e.get("error"), Some("EIO: I/O error"));
        m.expect_event("boot.ready", S).unwrap();
        let st = m.wait_exit(S).unwrap();
        assert!(st.success());
        let names: Vec<String> = m.events().into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["boot.start", "mount", "mount", "boot.ready"]);
        assert!(m.lines().contains(&"noise".to_string()));
        // The cursor is past boot.ready: an earlier event is not found again...
        let err = m.expect_event("boot.start", S).unwrap_err();
        assert!(err.contains("exited"), "{err}");
        // ...until the cursor is moved back; lines already seen are searched.
        m.set_cursor(0);
        assert_eq!(m.expect_line("noise", S).unwrap(), "noise");
        assert_eq!(m.cursor(), 2);
        let e = m.expect_event("mount", S).unwrap();
        assert_eq!(e.get("target"), Some("/proc"));
    }

    #[test]
    fn exit_fails_fast_with_status_and_tail() {
        let start = Instant::now();
        let mut m = sh("dies", "echo 'BERTH t=0.5 ev=boot.start'; echo 'kernel panic here'; exit 3");
        let err = m.expect_event("boot.ready", Duration::from_secs(60)).unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(5), "took {:?}", start.elapsed());
        assert!(err.contains("[dies]"), "{err}");
        assert!(err.contains("boot.ready"), "{err}");
        assert!(err.contains("exit status: 3"), "{err}");
        assert!(err.contains("kernel panic here"), "{err}");
        // Lines printed before the exit are still there for later expects.
        m.set_cursor(0);
        m.expect_event("boot.start", S).unwrap();
    }

    #[test]
    fn timeout_says_what_and_shows_tail_then_drop_kills() {
        let mut m = sh("slow", "echo 'booting...'; exec sleep 30");
        let start = Instant::now();
        let err = m.expect_event("boot.ready", Duration::from_millis(300)).unwrap_err();
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(3), "{took:?}");
        assert!(err.contains("timed out after 0.3s"), "{err}");
        assert!(err.contains("event `boot.ready`"), "{err}");
        assert!(err.contains("booting..."), "{err}");
        let err = m.wait_exit(Duration::from_millis(100)).unwrap_err();
        assert!(err.contains("waiting for QEMU to exit"), "{err}");
        let pid = m.pid();
        assert!(alive(pid));
        drop(m);
        assert!(!alive(pid), "process {pid} survived drop");
    }

    #[test]
    fn tail_keeps_last_forty_lines() {
        let mut m = sh("many", "i=0; while [ $i -lt 100 ]; do echo line$i; i=$((i+1)); done; exit 1");
        let err = m.expect_line("never", S).unwrap_err();
        assert!(err.contains("line99") && err.contains("line60"), "{err}");
        assert!(!err.contains("line59\n"), "{err}");
        assert_eq!(m.tail(2), "line98\nline99");
        assert_eq!(m.lines().len(), 100);
    }

    #[test]
    fn kill_on_panic_unwind() {
        let pid = std::sync::Arc::new(std::sync::Mutex::new(0u32));
        let p = pid.clone();
        let r = std::panic::catch_unwind(move || {
            let m = sh("panics", "exec sleep 30");
            *p.lock().unwrap() = m.pid();
            panic!("test body failed");
        });
        assert!(r.is_err());
        let pid = *pid.lock().unwrap();
        assert!(pid != 0 && !alive(pid));
    }

    #[test]
    fn explicit_kill_reports_signal() {
        let mut m = sh("killed", "echo up; exec sleep 30");
        m.expect_line("up", S).unwrap();
        m.kill();
        let st = m.wait_exit(Duration::from_millis(100)).unwrap();
        assert!(!st.success());
        let err = m.expect_line("more", S).unwrap_err();
        assert!(err.contains("signal: 9"), "{err}");
    }

    #[test]
    fn send_reaches_stdin() {
        let mut m = sh("echoer", "read x; echo \"BERTH t=1.000000 ev=got v=\\\"$x\\\"\"; exit 0");
        m.send(b"hello world\n").unwrap();
        let e = m.expect_event("got", S).unwrap();
        assert_eq!(e.get("v"), Some("hello world"));
    }

    #[test]
    fn carriage_returns_stderr_partial_lines() {
        let mut m = sh("cr", "printf 'a\\r\\r\\n[ 1.0] x\\rBERTH t=1.5 ev=cr k=v\\r\\n'; echo oops >&2; printf 'BERTH t=2 ev=last'");
        let e = m.expect_event("cr", S).unwrap();
        assert_eq!(e.get("k"), Some("v"));
        // stdout and stderr are read by separate threads: their relative order is not fixed.
        m.set_cursor(0);
        m.expect_line(&format!("{STDERR_PREFIX}oops"), S).unwrap();
        m.wait_exit(S).unwrap();
        let lines = m.lines();
        assert!(lines.contains(&"a".to_string()), "{lines:?}");
        // The unterminated last line is kept.
        assert_eq!(m.events().last().map(|e| e.name.clone()), Some("last".to_string()));
    }

    #[test]
    fn kernel_log_copies_are_not_repeated_events() {
        let mut m = sh(
            "dup",
            "echo 'BERTH t=1.500000 ev=module.load result=error'; \
             echo '[    1.500100] berth: BERTH t=1.500000 ev=module.load result=error'; \
             echo 'BERTH t=1.600000 ev=module.load result=error'; exit 0",
        );
        m.wait_exit(S).unwrap();
        assert_eq!(m.events().len(), 2);
        assert_eq!(m.lines().len(), 3);
        assert_eq!(m.lines()[1], "[    1.500100] berth: BERTH t=1.500000 ev=module.load result=error");
        m.expect_event("module.load", S).unwrap();
        let e = m.expect_event("module.load", S).unwrap();
        assert_eq!(e.t, 1.6);
    }

    #[test]
    fn same_event_text_far_apart_is_a_new_event() {
        let mut m = sh(
            "reboot",
            "echo 'BERTH t=0.800000 ev=boot.start pid=1'; i=0; while [ $i -lt 70 ]; do echo x; i=$((i+1)); done; \
             echo 'BERTH t=0.800000 ev=boot.start pid=1'; exit 0",
        );
        m.wait_exit(S).unwrap();
        assert_eq!(m.events().len(), 2);
    }

    #[test]
    fn agent_lines_collected_until_done() {
        let mut m = sh(
            "agent",
            "echo 'AGENT check=pid1 result=pass detail=\"comm=berth\"'; \
             echo 'AGENT check=rootfs-ro result=fail detail=\"open: created\"'; \
             echo 'AGENT action=poweroff'; echo 'AGENT done'; exit 0",
        );
        let err = m.expect_agent_pass(S).unwrap_err();
        assert!(err.contains("rootfs-ro: open: created"), "{err}");
        m.set_cursor(0);
        let got = m.expect_agent_done(S).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[2], AgentLine::Action("poweroff".into()));
    }

    #[test]
    fn a_socket_console_can_stop_being_read() {
        use std::os::unix::net::UnixListener;
        let path = std::env::temp_dir().join(format!("qemu-tests-console-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let mut m = sh("sock", "exec sleep 30");
        m.attach_console(&path).unwrap();
        let (mut guest, _) = listener.accept().unwrap();
        guest.write_all(b"BERTH t=1.000000 ev=one\n").unwrap();
        m.expect_event("one", S).unwrap();
        m.pause_console(true).unwrap();
        // Give the reader a moment to be parked before it reads again.
        thread::sleep(Duration::from_millis(100));
        guest.set_nonblocking(true).unwrap();
        let chunk = [b'x'; 4096];
        let mut sent = 0usize;
        let full = loop {
            match guest.write(&chunk) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break true,
                Err(e) => panic!("{e}"),
            }
            if sent > 64 << 20 {
                break false;
            }
        };
        assert!(full, "the socket never filled: the paused reader kept reading");
        m.pause_console(false).unwrap();
        guest.set_nonblocking(false).unwrap();
        guest.write_all(b"\nBERTH t=2.000000 ev=two\n").unwrap();
        m.expect_event("two", S).unwrap();
        drop(guest);
        let _ = std::fs::remove_file(&path);
        assert!(sh("plain", "exit 0").pause_console(true).is_err());
    }

    #[test]
    fn log_to_file_and_missing_program() {
        let path = std::env::temp_dir().join(format!("qemu-tests-log-{}.log", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut m = sh("logged", "echo one; sleep 0.1; echo two; exit 0");
        m.expect_line("one", S).unwrap();
        m.log_to(&path).unwrap();
        m.wait_exit(S).unwrap();
        drop(m);
        let text = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(text, "one\ntwo\n");

        let err = Machine::spawn("nope", "/nonexistent/qemu-system-none", &[]).err().unwrap();
        assert!(err.contains("cannot start"), "{err}");
        assert_eq!(file_name_for("a/b c"), "a_b_c");
        assert_eq!(file_name_for(".."), "machine..");
    }
}
