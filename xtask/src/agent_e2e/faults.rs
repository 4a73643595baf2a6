//! Download faults against a real gooseBit (plain HTTP on loopback):
//!
//! - the stored artifact changed after the upload (one byte, same size):
//!   the agent's hash check fails, gooseBit records the failure naming the
//!   hash, and nothing reaches the drop directory;
//! - a loopback relay between the agent and the server cuts the first
//!   download after [`CUT`] bytes of the response: the agent keeps what
//!   arrived, and its next run asks for the rest with `Range: bytes=N-`
//!   (N the body bytes the relay let through), and the bundle it drops is
//!   byte-identical to the offered one.

use super::*;
use std::io::{Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Response bytes (head and body) the relay lets through before its cut.
const CUT: usize = 20_000;

fn plain_server(root: &Path, tag: &str) -> Server {
    let dir = std::env::temp_dir().join(format!("berth-goosebit-{tag}-{}", std::process::id()));
    Server::start(root, dir, None).unwrap_or_else(|e| panic!("gooseBit: {e}"))
}

/// The one file under `dir` (recursively) that is `len` bytes long.
fn stored_artifact(dir: &Path, len: u64) -> PathBuf {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let (p, m) = (e.path(), e.metadata().unwrap());
            if m.is_dir() {
                todo.push(p);
            } else if m.len() == len {
                found.push(p);
            }
        }
    }
    assert_eq!(found.len(), 1, "gooseBit's stored artifacts of {len} bytes: {found:?}");
    found.remove(0)
}

#[test]
fn a_corrupted_artifact_is_reported_by_its_hash_and_nothing_is_dropped() {
    let root = root();
    let agent = agent_binary(&root);
    let server = plain_server(&root, "corrupt");
    let offer = Offer::new("corrupt");
    let software = offer.upload(&server);
    let stored = stored_artifact(&server.artifacts_dir(), offer.swu.len() as u64);
    let mut bytes = std::fs::read(&stored).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5a;
    std::fs::write(&stored, &bytes).unwrap();
    let dev = Device::new("corrupt-device", &server);
    register(&server, &dev, &agent, software);
    let mut a = dev.spawn(&agent);
    wait_exit(&mut a, &dev, "corrupt-device: the refused download");
    let want = crate::verity::hex(&sha1::Sha1::digest(&offer.swu));
    let got = crate::verity::hex(&sha1::Sha1::digest(&bytes));
    let d = server.device(dev.id).unwrap();
    assert_eq!(d["last_state"], "Error", "{d}");
    let log = server.device_log(dev.id).unwrap();
    assert!(log.contains(&format!("sha1 {got}, the deployment says {want}")), "gooseBit's log lacks the hash mismatch:\n{log}");
    assert_eq!((dev.count("drop"), dev.count("state")), (0, 0), "a corrupted download left something behind");
    for dir in [dev.dir, offer.work] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn a_download_cut_midway_resumes_with_a_range_from_the_bytes_kept() {
    let root = root();
    let agent = agent_binary(&root);
    let server = plain_server(&root, "cut");
    let offer = Offer::new("cut");
    let software = offer.upload(&server);
    let relay = CutRelay::start(server.device_port());
    let dev = Device::with("cut-device", &relay.base(), "allow_plaintext = true\n");
    register(&server, &dev, &agent, software);
    let mut a = dev.spawn(&agent);
    wait_exit_code(&mut a, &dev, "cut-device: the cut download", 1);
    let kept = relay.kept().unwrap_or_else(|| panic!("the relay cut no download:\n{}", dev.log_text()));
    assert!(kept > 0 && kept < offer.swu.len() as u64, "{kept} of {} bytes kept", offer.swu.len());
    let sha1 = crate::verity::hex(&sha1::Sha1::digest(&offer.swu));
    let part = dev.dir.join("state").join(format!("{sha1}.part"));
    assert_eq!(std::fs::metadata(&part).map(|m| m.len()).ok(), Some(kept), "the partial file does not hold what arrived");

    let mut a = dev.spawn(&agent);
    assert!(dev.wait_drop(&mut a, &server) == offer.bundle, "the resumed download's bundle differs");
    dev.status(&offer.committed(), VERSION);
    wait_exit(&mut a, &dev, "cut-device: the resumed update");
    let heads = relay.requests().to_ascii_lowercase();
    assert_eq!(heads.matches(&format!("range: bytes={kept}-\r\n")).count(), 1, "no single `Range: bytes={kept}-` request:\n{heads}");
    let said = dev.log_text();
    assert!(said.contains(&format!("resuming {} at byte {kept} of {} (206)", offer.swu_name(), offer.swu.len())), "{said}");
    assert_eq!(server.device(dev.id).unwrap()["last_state"], "Finished");
    for dir in [dev.dir, offer.work] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// A loopback TCP relay to a server port that records what clients send
/// and cuts the first artifact download after [`CUT`] response bytes.
pub(super) struct CutRelay {
    port: u16,
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    /// Everything clients sent, as text.
    requests: Mutex<String>,
    /// Set once the cut happened.
    done: AtomicBool,
    /// The body bytes the cut download let through.
    kept: Mutex<Option<u64>>,
}

impl CutRelay {
    fn start(to: u16) -> CutRelay {
        CutRelay::start_on("127.0.0.1", to)
    }

    /// A relay listening on `ip` (any loopback address) to 127.0.0.1:`to`.
    pub(super) fn start_on(ip: &str, to: u16) -> CutRelay {
        let listener = TcpListener::bind((ip, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", to)) else { return };
                let s = s.clone();
                std::thread::spawn(move || pipe(client, server, &s));
            }
        });
        CutRelay { port, shared }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub(super) fn port(&self) -> u16 {
        self.port
    }

    fn kept(&self) -> Option<u64> {
        *self.shared.kept.lock().unwrap()
    }

    fn requests(&self) -> String {
        self.shared.requests.lock().unwrap().clone()
    }
}

/// One connection: the client's bytes go up as they come (and are
/// recorded); the server's come back, unless this connection asked for a
/// download and no cut happened yet, in which case [`CUT`] bytes do and
/// the connection is closed.
fn pipe(client: TcpStream, server: TcpStream, shared: &Arc<Shared>) {
    let download = Arc::new(AtomicBool::new(false));
    let (mut up_from, mut up_to) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let (s, d) = (shared.clone(), download.clone());
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 16 << 10];
        while let Ok(n) = up_from.read(&mut buf) {
            if n == 0 {
                break;
            }
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            if text.contains("/download HTTP/1.1") {
                d.store(true, Ordering::SeqCst);
            }
            s.requests.lock().unwrap().push_str(&text);
            if up_to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = up_to.shutdown(Shutdown::Write);
    });
    let (mut down_from, mut down_to) = (server, client);
    let mut buf = vec![0u8; 16 << 10];
    let mut sent = Vec::new();
    while let Ok(n) = down_from.read(&mut buf) {
        if n == 0 {
            break;
        }
        if !download.load(Ordering::SeqCst) || shared.done.load(Ordering::SeqCst) {
            if down_to.write_all(&buf[..n]).is_err() {
                break;
            }
            continue;
        }
        let k = n.min(CUT - sent.len());
        sent.extend_from_slice(&buf[..k]);
        if down_to.write_all(&buf[..k]).is_err() {
            break;
        }
        if sent.len() < CUT {
            continue;
        }
        let head = sent.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4).unwrap_or(CUT);
        *shared.kept.lock().unwrap() = Some((CUT - head) as u64);
        shared.done.store(true, Ordering::SeqCst);
        let _ = down_to.flush();
        let _ = down_to.shutdown(Shutdown::Both);
        let _ = down_from.shutdown(Shutdown::Both);
        return;
    }
    let _ = down_to.shutdown(Shutdown::Write);
}
