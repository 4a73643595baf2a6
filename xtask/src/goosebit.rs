//! A real DDI server for the update agent's tests: gooseBit (a small
//! hawkBit-compatible update server in Python, from PyPI), pinned to
//! [`VERSION`], installed on first use into a venv under the target
//! directory (`goosebit-venv/`) with the machine's `python3`, and started
//! on 127.0.0.1 on a free port with a fresh SQLite database, artifact
//! directory and admin user in a temporary directory.
//!
//! gooseBit reads its settings from `GOOSEBIT_*` environment variables
//! (pydantic settings); its database schema is normally created by its
//! migration tool, which needs the source tree, so the launcher here
//! creates the tables from the ORM models instead, adds the admin user,
//! and runs the app under uvicorn. Devices poll without auth unless
//! [`Options::device_auth`] turns on gooseBit's `strict` device auth (every
//! DDI request needs `Authorization: TargetToken <token>` with the token
//! set for the device through the management API, [`Server::set_token`]).
//! The management API (`/api/v1/...`) takes a bearer token from `POST
//! /login`. With [`Options::tls`] the same app also listens with TLS on a
//! second port (a certificate from [`crate::testca`]), which is the one
//! devices get; the management calls stay on the plain loopback port.
//! This module must not listen anywhere but on 127.0.0.1.
//!
//! [`Server`] stops the server (its whole process group) when dropped, and
//! the kernel stops it when xtask dies. `cargo xtask goosebit` runs one by
//! hand (see [`serve`]).

use crate::say;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The gooseBit release the tests run against.
pub const VERSION: &str = "0.2.12";
const ADMIN: &str = "admin";
const PASSWORD: &str = "berth-test-password";
/// How long the server may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Creates the tables, the admin user, then serves: `launch.py PORT USER
/// PASSWORD [TLS_PORT CERT KEY]` (the TLS listener without a second
/// lifespan: one app, one database).
const LAUNCHER: &str = r#"import asyncio, sys
import uvicorn
from tortoise import Tortoise
from goosebit import app
from goosebit.db.config import TORTOISE_CONF
from goosebit.settings import PWD_CXT
from goosebit.users import create_initial_user


async def prepare():
    await Tortoise.init(config=TORTOISE_CONF)
    await Tortoise.generate_schemas()
    await create_initial_user(sys.argv[2], PWD_CXT.hash(sys.argv[3]))
    await Tortoise.close_connections()


asyncio.run(prepare())
configs = [uvicorn.Config(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")]
if len(sys.argv) > 4:
    configs.append(uvicorn.Config(app, host="127.0.0.1", port=int(sys.argv[4]), log_level="warning",
                                  lifespan="off", ssl_certfile=sys.argv[5], ssl_keyfile=sys.argv[6]))


async def serve():
    await asyncio.gather(*(uvicorn.Server(c).serve() for c in configs))


asyncio.run(serve())
"#;

/// Copies one connection between stdin/stdout (QEMU's `guestfwd` for a
/// guest connection) and the server: `relay.py PORT`.
const RELAY: &str = r#"import os, socket, sys, threading

server = socket.create_connection(("127.0.0.1", int(sys.argv[1])))


def to_server():
    while True:
        data = os.read(0, 65536)
        if not data:
            break
        server.sendall(data)
    server.shutdown(socket.SHUT_WR)


threading.Thread(target=to_server, daemon=True).start()
while True:
    data = server.recv(65536)
    if not data:
        break
    view = memoryview(data)
    while view:
        view = view[os.write(1, view):]
"#;

/// The venv's python, installing gooseBit into it first if needed.
pub fn venv(root: &Path) -> Result<PathBuf, String> {
    let dir = crate::cargo_target_dir(root).join("goosebit-venv");
    let python = dir.join("bin").join("python");
    let marker = dir.join("installed-goosebit");
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(VERSION) && python.exists() {
        return Ok(python);
    }
    if !crate::tools::have_command("python3") {
        return Err("gooseBit needs python3 (with its venv module) on PATH".into());
    }
    say(&format!("installing gooseBit {VERSION} from PyPI into {}", dir.display()));
    let _ = std::fs::remove_dir_all(&dir);
    crate::run_cmd(Command::new("python3").arg("-m").arg("venv").arg(&dir))?;
    let pip = dir.join("bin").join("pip");
    crate::run_cmd(Command::new(&pip).args(["install", "--quiet", "--disable-pip-version-check", &format!("goosebit=={VERSION}")]))
        .map_err(|e| format!("installing gooseBit {VERSION}: {e}"))?;
    std::fs::write(&marker, VERSION).map_err(|e| format!("{}: {e}", marker.display()))?;
    Ok(python)
}

/// How a test server is set up.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The port devices use (else a free one).
    pub port: Option<u16>,
    /// Devices talk TLS (a fresh test CA's certificate, [`Server::ca_file`]).
    pub tls: bool,
    /// gooseBit's `strict` device auth: target tokens, set per device.
    pub device_auth: bool,
    /// With `tls`: the shared test CA set to serve with
    /// ([`crate::testca::shared`], the one built into the QEMU test
    /// images, or another), instead of a fresh CA in the server's directory.
    pub ca_set: Option<&'static str>,
}

/// A running gooseBit.
pub struct Server {
    child: Child,
    python: PathBuf,
    dir: PathBuf,
    /// The management API's port (plain HTTP).
    port: u16,
    /// The devices' port: `port`, or the TLS listener's.
    device_port: u16,
    tls: Option<crate::testca::Material>,
    token: String,
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

impl Server {
    /// Installs (once) and starts gooseBit with an empty database in `dir`
    /// (emptied first, removed when the server stops), on `port` or a free
    /// one.
    pub fn start(root: &Path, dir: PathBuf, port: Option<u16>) -> Result<Server, String> {
        Server::start_with(root, dir, &Options { port, ..Options::default() })
    }

    /// [`Server::start`] with TLS and device auth as `opts` says.
    pub fn start_with(root: &Path, dir: PathBuf, opts: &Options) -> Result<Server, String> {
        let python = venv(root)?;
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("artifacts")).map_err(|e| format!("{}: {e}", dir.display()))?;
        std::fs::write(dir.join("launch.py"), LAUNCHER).map_err(|e| format!("{}: {e}", dir.display()))?;
        std::fs::write(dir.join("relay.py"), RELAY).map_err(|e| format!("{}: {e}", dir.display()))?;
        let log = std::fs::File::create(dir.join("server.log")).map_err(|e| format!("{}: {e}", dir.display()))?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let device_port = match opts.port {
            Some(p) => p,
            None => free_port()?,
        };
        let tls = match (opts.tls, opts.ca_set) {
            (false, _) => None,
            (true, None) => Some(crate::testca::make(&dir.join("tls"))?),
            (true, Some(set)) => Some(crate::testca::shared(root, set)?),
        };
        let port = if tls.is_some() { free_port()? } else { device_port };
        let mut cmd = Command::new(&python);
        // SAFETY: between fork and exec, only prctl (async-signal-safe) runs;
        // it asks the kernel to stop the server when xtask dies, so an
        // interrupted run leaves no server behind.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd.arg("launch.py").args([&port.to_string(), ADMIN, PASSWORD]);
        if let Some(m) = &tls {
            cmd.arg(device_port.to_string()).arg(&m.cert).arg(&m.key);
        }
        if opts.device_auth {
            cmd.env("GOOSEBIT_DEVICE_AUTH__ENABLE", "true").env("GOOSEBIT_DEVICE_AUTH__MODE", "strict");
        }
        let child = cmd
            .current_dir(&dir)
            .env_remove("GOOSEBIT_SETTINGS")
            .env("GOOSEBIT_DB_URI", format!("sqlite://{}", dir.join("db.sqlite3").display()))
            .env("GOOSEBIT_ARTIFACTS_DIR", dir.join("artifacts"))
            .env("GOOSEBIT_POLL_TIME", "00:00:10")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("starting gooseBit: {e}"))?;
        let mut s = Server { child, python, dir, port, device_port, tls, token: String::new() };
        s.wait_ready()?;
        s.token = s.login().map_err(|e| format!("{e}\n{}", s.log_tail()))?;
        Ok(s)
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let t0 = Instant::now();
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Err(format!("gooseBit exited ({st}) while starting:\n{}", self.log_tail()));
            }
            if let Ok((200, _)) = self.request("GET", "/login", &[], &[]) {
                return Ok(());
            }
            if t0.elapsed() > START_TIMEOUT {
                return Err(format!("gooseBit did not answer within {START_TIMEOUT:?}:\n{}", self.log_tail()));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The end of the server's log, for an error message.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// The DDI base URL (without the tenant).
    pub fn base(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.device_port)
    }

    #[cfg(test)]
    /// The devices' port on 127.0.0.1.
    pub fn device_port(&self) -> u16 {
        self.device_port
    }

    #[cfg(test)]
    /// The test CA's certificate (PEM), when devices talk TLS.
    pub fn ca_file(&self) -> Option<&Path> {
        self.tls.as_ref().map(|m| m.ca.as_path())
    }

    #[cfg(test)]
    /// The directory gooseBit keeps uploaded artifacts in.
    pub fn artifacts_dir(&self) -> PathBuf {
        self.dir.join("artifacts")
    }

    fn login(&self) -> Result<String, String> {
        let form = format!("username={ADMIN}&password={PASSWORD}");
        let v = self.json("POST", "/login", Some(("application/x-www-form-urlencoded", form.as_bytes())))?;
        v["access_token"].as_str().map(str::to_string).ok_or_else(|| format!("gooseBit login: no access_token in {v}"))
    }

    /// One HTTP/1.1 request to the server (`Connection: close`).
    fn request(&self, method: &str, path: &str, headers: &[(&str, String)], body: &[u8]) -> Result<(u16, Vec<u8>), String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| format!("{method} {path}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(30))).map_err(|e| e.to_string())?;
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).and_then(|_| s.write_all(body)).map_err(|e| format!("{method} {path}: {e}"))?;
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).map_err(|e| format!("{method} {path}: {e}"))?;
        parse_response(&resp).map_err(|e| format!("{method} {path}: {e}"))
    }

    /// A management API call with the admin's token; the reply as JSON.
    pub fn json(&self, method: &str, path: &str, body: Option<(&str, &[u8])>) -> Result<serde_json::Value, String> {
        let mut headers = Vec::new();
        if !self.token.is_empty() {
            headers.push(("Authorization", format!("Bearer {}", self.token)));
        }
        if let Some((ct, _)) = body {
            headers.push(("Content-Type", ct.to_string()));
        }
        let (status, reply) = self.request(method, path, &headers, body.map(|b| b.1).unwrap_or_default())?;
        if status != 200 {
            return Err(format!("{method} {path}: HTTP {status}: {}", String::from_utf8_lossy(&reply)));
        }
        serde_json::from_slice(&reply).map_err(|e| format!("{method} {path}: {e}"))
    }
}

/// The management calls the tests make.
impl Server {
    /// A QEMU `guestfwd` target that relays each guest connection to the
    /// server (`cmd:`, one relay process a connection).
    pub fn guestfwd(&self) -> String {
        format!("cmd:{} {} {}", self.python.display(), self.dir.join("relay.py").display(), self.device_port)
    }

    /// Uploads a `.swu` (gooseBit parses its `sw-description`); its software id.
    pub fn upload(&self, name: &str, bytes: &[u8]) -> Result<u64, String> {
        let boundary = "berth-test-boundary-7f3a";
        let mut body =
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n")
                .into_bytes();
        body.extend_from_slice(bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let ct = format!("multipart/form-data; boundary={boundary}");
        let v = self.json("PUT", "/api/v1/software", Some((&ct, &body)))?;
        v["id"].as_u64().ok_or_else(|| format!("upload {name}: no id in {v}"))
    }

    /// Assigns software to a (registered) device.
    pub fn assign(&self, device: &str, software: u64) -> Result<(), String> {
        let body = serde_json::json!({"devices": [device], "software": software.to_string()}).to_string();
        self.json("PATCH", "/api/v1/devices", Some(("application/json", body.as_bytes()))).map(|_| ())
    }

    /// Registers a device with its target token (gooseBit keeps at most 32
    /// characters), as strict device auth needs before its first poll.
    pub fn set_token(&self, device: &str, token: &str) -> Result<(), String> {
        let body = serde_json::json!({"devices": [device], "auth_token": token}).to_string();
        self.json("PUT", "/api/v1/devices", Some(("application/json", body.as_bytes()))).map(|_| ())
    }

    /// A device as the management API lists it.
    pub fn device(&self, id: &str) -> Result<serde_json::Value, String> {
        let v = self.json("GET", "/api/v1/devices", None)?;
        let list = v["devices"].as_array().ok_or_else(|| format!("devices: not a list: {v}"))?;
        list.iter().find(|d| d["id"] == id).cloned().ok_or_else(|| format!("gooseBit has no device {id}"))
    }

    /// The update log the device reported (feedback details).
    pub fn device_log(&self, id: &str) -> Result<String, String> {
        let v = self.json("GET", &format!("/api/v1/devices/{id}/log"), None)?;
        Ok(v["log"].as_str().unwrap_or_default().to_string())
    }
}

/// `cargo xtask goosebit [--port N]`: a gooseBit for trying the agent by
/// hand, until interrupted (the server stops with xtask).
pub fn serve(root: &Path, port: Option<u16>) -> Result<(), String> {
    let mut s = Server::start(root, crate::cargo_target_dir(root).join("goosebit-serve"), port)?;
    println!("gooseBit {VERSION}: {} (tenant DEFAULT; web UI and API user {ADMIN}, password {PASSWORD})", s.base());
    println!("a guest on QEMU's user network reaches it as http://10.0.2.2:{}", s.port);
    println!("Ctrl-C stops it");
    loop {
        if let Ok(Some(st)) = s.child.try_wait() {
            return Err(format!("gooseBit exited ({st}):\n{}", s.log_tail()));
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Status and body of an HTTP/1.1 response (length-delimited or chunked).
fn parse_response(resp: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let end = resp.windows(4).position(|w| w == b"\r\n\r\n").ok_or("no end of the response head")?;
    let head = String::from_utf8_lossy(&resp[..end]).to_string();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| format!("bad status line in {head:?}"))?;
    let body = &resp[end + 4..];
    if !head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        return Ok((status, body.to_vec()));
    }
    let (mut out, mut rest) = (Vec::new(), body);
    loop {
        let nl = rest.windows(2).position(|w| w == b"\r\n").ok_or("bad chunk")?;
        let size_text = String::from_utf8_lossy(&rest[..nl]).to_string();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16).map_err(|_| "bad chunk size")?;
        rest = &rest[nl + 2..];
        if size == 0 {
            return Ok((status, out));
        }
        out.extend_from_slice(rest.get(..size).ok_or("short chunk")?);
        rest = rest.get(size + 2..).ok_or("short chunk")?;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let pgid = self.child.id() as libc::pid_t;
        // SAFETY: signals the process group this server leads (set up by
        // `process_group(0)` at spawn); no memory is touched.
        unsafe { libc::kill(-pgid, libc::SIGTERM) };
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: as above; anything left in the group is killed.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_plain_and_chunked() {
        assert_eq!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi").unwrap(), (200, b"hi".to_vec()));
        let chunked = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap(), (404, b"abcde".to_vec()));
        assert!(parse_response(b"HTTP/1.1 200").is_err());
    }
}
