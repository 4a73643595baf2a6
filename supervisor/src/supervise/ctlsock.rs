//! The control socket's transport: a root-only Unix stream socket read by the
//! PID 1 loop without ever blocking it.
//!
//! It must not block the loop, and it must not interpret requests (the loop does).
//!
//! At most [`CONNS_MAX`] clients at once, each with a fixed receive buffer; a
//! frame is read as it arrives (non-blocking), a complete request is handed to
//! the loop, and the reply is written once (a client that does not read it is
//! dropped). Each connection's send buffer is sized for a whole reply, so
//! that write does not wait on a client that never reads. Oversized or
//! malformed frames get an error reply and the connection is closed. A client has [`REQUEST_WITHIN_S`] seconds from its
//! connect to send its whole request; after that it is told so and dropped,
//! so clients that connect and say nothing cannot lock the operator out.
//! Nothing a client sends can make berth wait.
//!
//! A request whose answer comes later can be held ([`CtlSocket::hold`]):
//! its connection keeps its slot, is exempt from the time limit and is
//! answered with [`CtlSocket::reply`] when the outcome is known. No command
//! does so now: `berthctl update` is answered when its staging started, and
//! `berthctl update --wait` polls `release` on short connections, so a
//! waiting client never holds one of the [`CONNS_MAX`] slots.

use crate::common::log::Event;
use crate::supervise::control::{self, Command, Response, REQUEST_MAX, RESPONSE_MAX};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};

/// Most clients connected at once.
pub const CONNS_MAX: usize = 4;
/// Seconds a client has, from its connect, to send its whole request.
pub const REQUEST_WITHIN_S: f64 = 2.0;
/// The send buffer each client's connection asks for: a whole reply and
/// the kernel's bookkeeping of it.
const REPLY_BUFFER: usize = 2 * RESPONSE_MAX;

struct Conn {
    stream: UnixStream,
    buf: heapless::Vec<u8, { REQUEST_MAX + 4 }>,
    /// When it connected (berth's monotonic clock).
    since: f64,
    /// Its request is being carried out: answered later, never expired.
    held: bool,
}

pub struct CtlSocket {
    listener: UnixListener,
    conns: [Option<Conn>; CONNS_MAX],
}

/// What a readable connection produced.
pub enum Input {
    /// Nothing complete yet.
    Pending,
    /// A complete, valid request.
    Request(Command),
    /// The connection ended or was refused (already answered if needed).
    Closed,
}

impl CtlSocket {
    /// Bind the socket (replacing a stale one) with mode 0600.
    pub fn bind(path: &str) -> std::io::Result<CtlSocket> {
        use std::os::unix::fs::PermissionsExt;
        if let Some(dir) = std::path::Path::new(path).parent() {
            std::fs::create_dir_all(dir)?;
        }
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        Ok(CtlSocket { listener, conns: [const { None }; CONNS_MAX] })
    }

    pub fn listener(&self) -> std::os::fd::BorrowedFd<'_> {
        self.listener.as_fd()
    }

    pub fn conn_fd(&self, slot: usize) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.conns.get(slot)?.as_ref().map(|c| c.stream.as_fd())
    }

    /// Accept one client at time `now`; returns its slot (to register with
    /// epoll), or `None` when nothing was pending or all slots are busy (the
    /// client is told and dropped). Clients past their time are dropped
    /// first, so a slot they held is free again.
    pub fn accept(&mut self, now: f64) -> Option<usize> {
        let (stream, _) = self.listener.accept().ok()?;
        self.expire(now);
        let Some(slot) = self.conns.iter().position(Option::is_none) else {
            let mut s = stream;
            let _ = s.set_nonblocking(true);
            let _ = send(&mut s, &control::error("busy: too many control clients"));
            return None;
        };
        if stream.set_nonblocking(true).is_err() {
            return None;
        }
        // Room for a whole reply in the kernel, whatever the system's
        // default buffer (at most `net.core.wmem_max`): the reply's one
        // write never waits on a client that does not read.
        let _ = nix::sys::socket::setsockopt(&stream, nix::sys::socket::sockopt::SndBuf, &REPLY_BUFFER);
        if let Some(c) = self.conns.get_mut(slot) {
            *c = Some(Conn { stream, buf: heapless::Vec::new(), since: now, held: false });
        }
        Some(slot)
    }

    /// Drop, with an error reply, every client that has not sent its whole
    /// request within [`REQUEST_WITHIN_S`] of `now`; returns how many.
    pub fn expire(&mut self, now: f64) -> usize {
        let mut dropped = 0;
        for slot in 0..CONNS_MAX {
            let late = matches!(self.conns.get(slot), Some(Some(c)) if !c.held && now - c.since >= REQUEST_WITHIN_S);
            if late {
                dropped += 1;
                let why = format!("timeout: no complete request within {REQUEST_WITHIN_S} s of connecting");
                self.reply(slot, &control::error(&why));
            }
        }
        if dropped > 0 {
            Event::warn("control.timeout").kv("clients", dropped).emit();
        }
        dropped
    }

    /// When the oldest client's time runs out, if any is connected.
    pub fn deadline(&self) -> Option<f64> {
        self.conns.iter().flatten().filter(|c| !c.held).map(|c| c.since + REQUEST_WITHIN_S).reduce(f64::min)
    }

    /// Keep the connection of `slot`, whose request was read, to answer it
    /// later with [`CtlSocket::reply`]; false if it is gone.
    pub fn hold(&mut self, slot: usize) -> bool {
        match self.conns.get_mut(slot) {
            Some(Some(c)) => {
                c.held = true;
                true
            }
            _ => false,
        }
    }

    /// Read what a client sent.
    pub fn read(&mut self, slot: usize) -> Input {
        let Some(Some(conn)) = self.conns.get_mut(slot) else {
            return Input::Closed;
        };
        if conn.held {
            return Input::Pending;
        }
        let mut chunk = [0u8; 256];
        // A client may send its frame and close its writing side at once:
        // what it sent is still answered.
        let mut eof = false;
        loop {
            let room = (REQUEST_MAX + 4).saturating_sub(conn.buf.len()).min(chunk.len());
            if room == 0 {
                break;
            }
            match conn.stream.read(chunk.get_mut(..room).unwrap_or(&mut [])) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    let _ = conn.buf.extend_from_slice(chunk.get(..n).unwrap_or(&[]));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.close(slot);
                    return Input::Closed;
                }
            }
        }
        let incomplete = |conn: &Conn| conn.buf.len() < 4 || control::body_len(&conn.buf, REQUEST_MAX).is_ok_and(|len| conn.buf.len() < 4 + len);
        if eof && incomplete(conn) {
            self.close(slot);
            return Input::Closed;
        }
        if conn.buf.len() < 4 {
            return Input::Pending;
        }
        let len = match control::body_len(&conn.buf, REQUEST_MAX) {
            Ok(l) => l,
            Err(e) => return self.refuse(slot, &e.to_string()),
        };
        let Some(body) = conn.buf.get(4..4 + len) else {
            return Input::Pending;
        };
        match control::parse_request(body) {
            Ok(cmd) => Input::Request(cmd),
            Err(why) => {
                let _ = send(&mut conn.stream, &control::error(&why));
                self.close(slot);
                Input::Closed
            }
        }
    }

    /// Answer a request and close the connection.
    pub fn reply(&mut self, slot: usize, resp: &Response) {
        if let Some(Some(conn)) = self.conns.get_mut(slot) {
            if let Err(e) = send(&mut conn.stream, resp) {
                Event::warn("control.reply").kv("result", "error").kv("error", e).emit();
            }
        }
        self.close(slot);
    }

    fn refuse(&mut self, slot: usize, why: &str) -> Input {
        Event::warn("control.refused").kv("reason", why).emit();
        self.reply(slot, &control::error(why));
        Input::Closed
    }

    fn close(&mut self, slot: usize) {
        if let Some(c) = self.conns.get_mut(slot) {
            *c = None;
        }
    }
}

/// Write a whole response frame without blocking for long: the socket is
/// non-blocking; a client whose buffer is full loses the reply.
fn send(stream: &mut UnixStream, resp: &Response) -> std::io::Result<()> {
    let frame = control::encode(resp, RESPONSE_MAX).map_err(|e| std::io::Error::other(e.to_string()))?;
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_write_timeout(Some(std::time::Duration::from_millis(200)));
    stream.write_all(&frame)
}

/// Why a client got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    /// The socket could not be connected to (missing, refused, not
    /// permitted): berth cannot be reached.
    pub unreachable: bool,
    pub text: String,
}

/// Client side (`berthctl`): one request, one response. A berth busy with
/// other clients is asked again for up to [`REQUEST_WITHIN_S`] and a bit,
/// the time in which every slot frees up.
pub fn call(path: &str, cmd: Command) -> Result<Response, String> {
    try_call(path, cmd).map_err(|e| e.text)
}

/// [`call`], telling an unreachable berth from other failures.
pub fn try_call(path: &str, cmd: Command) -> Result<Response, CallError> {
    let until = std::time::Instant::now() + std::time::Duration::from_secs_f64(REQUEST_WITHIN_S + 1.0);
    loop {
        match call_once(path, cmd.clone()) {
            Ok(Response::Error(e)) if e.starts_with("busy") && std::time::Instant::now() < until => {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

/// How long a client waits for its answer: every command is answered at
/// once (an update when its staging started).
fn answer_within(_: &Command) -> std::time::Duration {
    std::time::Duration::from_secs(10)
}

fn call_once(path: &str, cmd: Command) -> Result<Response, CallError> {
    let mut s = UnixStream::connect(path).map_err(|e| CallError { unreachable: true, text: format!("{path}: {e}") })?;
    exchange(&mut s, cmd).map_err(|text| CallError { unreachable: false, text })
}

fn exchange(s: &mut UnixStream, cmd: Command) -> Result<Response, String> {
    let _ = s.set_read_timeout(Some(answer_within(&cmd)));
    let frame = control::encode(&control::Request { version: control::VERSION, command: cmd }, REQUEST_MAX).map_err(|e| e.to_string())?;
    // A berth that turns the client away (busy) may answer and close before
    // the request is written: its answer is still read.
    let sent = s.write_all(&frame);
    let mut prefix = [0u8; 4];
    if let Err(e) = s.read_exact(&mut prefix) {
        return Err(match sent {
            Err(se) => format!("send: {se}"),
            Ok(()) => format!("receive: {e}"),
        });
    }
    let len = control::body_len(&prefix, RESPONSE_MAX).map_err(|e| e.to_string())?;
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).map_err(|e| format!("receive: {e}"))?;
    control::decode(&body).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sock(tag: &str) -> (String, CtlSocket) {
        let path = std::env::temp_dir().join(format!("berth-ctl-{}-{tag}", std::process::id()));
        let p = path.to_string_lossy().into_owned();
        let s = CtlSocket::bind(&p).unwrap();
        (p, s)
    }

    /// Serve one connection in the test thread by polling, like the loop does.
    fn serve_one(s: &mut CtlSocket, answer: Response) -> Option<Command> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut slot = None;
        while std::time::Instant::now() < deadline {
            if slot.is_none() {
                slot = s.accept(0.0);
            }
            if let Some(i) = slot {
                match s.read(i) {
                    Input::Request(c) => {
                        s.reply(i, &answer);
                        return Some(c);
                    }
                    Input::Closed => return None,
                    Input::Pending => {}
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        None
    }

    #[test]
    fn request_and_reply() {
        let (path, mut s) = sock("ok");
        let p = path.clone();
        let client = std::thread::spawn(move || call(&p, Command::Status));
        let got = serve_one(&mut s, Response::Done);
        assert_eq!(got, Some(Command::Status));
        assert_eq!(client.join().unwrap(), Ok(Response::Done));
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn oversized_and_garbage_get_an_error_reply() {
        let (path, mut s) = sock("bad");
        for frame in [u32::MAX.to_le_bytes().to_vec(), vec![3, 0, 0, 0, 0xff, 0xff, 0xff]] {
            let p = path.clone();
            let client = std::thread::spawn(move || {
                let mut c = UnixStream::connect(&p).unwrap();
                c.write_all(&frame).unwrap();
                let mut out = Vec::new();
                let _ = c.read_to_end(&mut out);
                out
            });
            assert_eq!(serve_one(&mut s, Response::Done), None);
            let out = client.join().unwrap();
            let len = control::body_len(&out, RESPONSE_MAX).unwrap();
            let resp: Response = control::decode(&out[4..4 + len]).unwrap();
            assert!(matches!(resp, Response::Error(_)), "{resp:?}");
        }
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn a_half_closed_client_is_still_answered() {
        let (path, mut s) = sock("half");
        let ok = control::encode(&control::Request { version: control::VERSION, command: Command::Status }, REQUEST_MAX).unwrap();
        let old = control::encode(&control::Request { version: control::VERSION - 1, command: Command::Status }, REQUEST_MAX).unwrap();
        for (frame, want) in [(ok, Some(Command::Status)), (old, None)] {
            let p = path.clone();
            let client = std::thread::spawn(move || {
                let mut c = UnixStream::connect(&p).unwrap();
                c.write_all(&frame).unwrap();
                c.shutdown(std::net::Shutdown::Write).unwrap();
                // Let the whole frame and the end of stream arrive together.
                std::thread::sleep(std::time::Duration::from_millis(50));
                let mut out = Vec::new();
                let _ = c.read_to_end(&mut out);
                out
            });
            std::thread::sleep(std::time::Duration::from_millis(20));
            assert_eq!(serve_one(&mut s, Response::Done), want);
            let out = client.join().unwrap();
            let len = control::body_len(&out, RESPONSE_MAX).unwrap();
            let resp: Response = control::decode(&out[4..4 + len]).unwrap();
            match want {
                Some(_) => assert_eq!(resp, Response::Done),
                None => assert!(matches!(resp, Response::Error(ref e) if e.contains("version")), "{resp:?}"),
            }
        }
        // A cut frame and the end of stream: closed, nothing to answer.
        let p = path.clone();
        let client = std::thread::spawn(move || {
            let mut c = UnixStream::connect(&p).unwrap();
            c.write_all(&[9, 0, 0, 0, 1]).unwrap();
        });
        client.join().unwrap();
        assert_eq!(serve_one(&mut s, Response::Done), None);
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn a_silent_client_does_not_block() {
        let (path, mut s) = sock("silent");
        let _c = UnixStream::connect(&path).unwrap();
        let t = std::time::Instant::now();
        let slot = s.accept(0.0).unwrap();
        assert!(matches!(s.read(slot), Input::Pending));
        assert!(t.elapsed() < std::time::Duration::from_millis(100));
        let _ = std::fs::remove_file(path);
    }

    /// The answer a client got, decoded.
    fn answer(c: &mut UnixStream) -> Response {
        let mut out = Vec::new();
        let _ = c.read_to_end(&mut out);
        let len = control::body_len(&out, RESPONSE_MAX).unwrap();
        control::decode(&out[4..4 + len]).unwrap()
    }

    #[test]
    fn silent_clients_lose_their_slot_after_their_time() {
        let (path, mut s) = sock("idle");
        let mut silent: Vec<UnixStream> = (0..CONNS_MAX).map(|_| UnixStream::connect(&path).unwrap()).collect();
        for (i, _) in silent.iter().enumerate() {
            assert_eq!(s.accept(i as f64 * 0.1), Some(i));
        }
        assert_eq!(s.deadline(), Some(REQUEST_WITHIN_S));
        // Still within their time: a newcomer is turned away.
        let mut late = UnixStream::connect(&path).unwrap();
        assert_eq!(s.accept(1.0), None);
        assert!(matches!(answer(&mut late), Response::Error(ref e) if e.starts_with("busy")));
        // The first two ran out: the newcomer gets a slot, they get told.
        let _next = UnixStream::connect(&path).unwrap();
        assert!(s.accept(REQUEST_WITHIN_S + 0.15).is_some());
        for c in silent.iter_mut().take(2) {
            assert!(matches!(answer(c), Response::Error(ref e) if e.starts_with("timeout")));
        }
        assert_eq!(s.deadline(), Some(0.2 + REQUEST_WITHIN_S));
        assert_eq!(s.expire(REQUEST_WITHIN_S + 0.25), 1);
        assert_eq!(s.expire(10.0), 2);
        assert_eq!(s.deadline(), None);
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn a_held_request_keeps_its_slot_past_the_time_limit() {
        let (path, mut s) = sock("held");
        let p = path.clone();
        let client = std::thread::spawn(move || call(&p, Command::Update(heapless::String::try_from("/x.bundle").unwrap())));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut slot = None;
        while slot.is_none() && std::time::Instant::now() < deadline {
            if let Some(i) = s.accept(0.0) {
                while std::time::Instant::now() < deadline {
                    if let Input::Request(_) = s.read(i) {
                        assert!(s.hold(i));
                        slot = Some(i);
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let slot = slot.expect("the request came");
        // Held: no deadline, not expired long after the limit, read no more.
        assert_eq!(s.deadline(), None);
        assert_eq!(s.expire(REQUEST_WITHIN_S * 100.0), 0);
        assert!(matches!(s.read(slot), Input::Pending));
        assert!(!client.is_finished());
        s.reply(slot, &control::message("staged"));
        assert_eq!(client.join().unwrap(), Ok(control::message("staged")));
        assert!(!s.hold(slot), "answered and closed");
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn a_turned_away_client_asks_again_and_gets_through() {
        let (path, mut s) = sock("busy");
        let _silent: Vec<UnixStream> = (0..CONNS_MAX).map(|_| UnixStream::connect(&path).unwrap()).collect();
        for _ in 0..CONNS_MAX {
            assert!(s.accept(0.0).is_some());
        }
        let p = path.clone();
        let client = std::thread::spawn(move || call(&p, Command::Status));
        // Turned away (busy) for a while the silent clients are within their
        // time: the client keeps asking rather than giving up.
        let busy_until = std::time::Instant::now() + std::time::Duration::from_millis(400);
        while std::time::Instant::now() < busy_until {
            assert_eq!(s.accept(1.0), None);
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(!client.is_finished(), "the client gave up on a busy answer");
        // Their time is up: the next try gets a slot and is answered.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut got = None;
        while got.is_none() && std::time::Instant::now() < deadline {
            if let Some(slot) = s.accept(REQUEST_WITHIN_S + 1.0) {
                while got.is_none() && std::time::Instant::now() < deadline {
                    if let Input::Request(c) = s.read(slot) {
                        s.reply(slot, &Response::Done);
                        got = Some(c);
                    }
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(got, Some(Command::Status));
        assert_eq!(client.join().unwrap(), Ok(Response::Done));
        let _ = std::fs::remove_file(path);
    }
}
