//! Fetching an artifact into the state directory, with resume: the bytes
//! go to `<hash>.part`; when that file exists from an earlier, interrupted
//! try, the request asks for the rest (`Range: bytes=<len>-`). A server
//! that ignores the range (200 instead of 206) sends the whole file, which
//! then replaces the partial one. The finished file must have the
//! deployment's size and hash (SHA-256 when offered, else SHA-1, which is
//! all gooseBit offers); on a mismatch it is deleted.

use crate::ddi::Artifact;
use crate::http::Http;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Why a fetch did not produce a verified file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fail {
    /// The network or the disk: try again later; the partial file stays.
    Retry(String),
    /// The artifact is wrong (size, hash, server answer): report failure.
    Bad(String),
}

/// The partial file's name: the expected hash, so an interrupted download
/// of another artifact is never resumed into this one.
fn part_path(dir: &Path, a: &Artifact) -> PathBuf {
    let h = a.sha256.as_deref().or(a.sha1.as_deref()).unwrap_or("artifact");
    dir.join(format!("{h}.part"))
}

/// Downloads `a` (resuming) and verifies it; returns the verified file.
pub fn fetch(http: &Http, a: &Artifact, dir: &Path, max: u64) -> Result<PathBuf, Fail> {
    if a.size > max {
        return Err(Fail::Bad(format!("artifact {}: {} bytes, more than the configured maximum {max}", a.filename, a.size)));
    }
    let part = part_path(dir, a);
    remove_other_parts(dir, &part);
    let mut have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    if have > a.size {
        discard(&part);
        have = 0;
    }
    if have < a.size {
        receive(http, a, &part, have)?;
    }
    verify(a, &part).inspect_err(|_| discard(&part))?;
    Ok(part)
}

fn receive(http: &Http, a: &Artifact, part: &Path, have: u64) -> Result<(), Fail> {
    let d = http.download(&a.href, have).map_err(Fail::Retry)?;
    let (mut file, offset) = match (d.status, have) {
        (206, h) if h > 0 => {
            eprintln!("berth-agent: resuming {} at byte {h} of {} (206)", a.filename, a.size);
            (std::fs::OpenOptions::new().append(true).open(part).map_err(|e| io(part, e))?, h)
        }
        (200, h) => {
            if h > 0 {
                eprintln!("berth-agent: the server ignored the range request (200, not 206): downloading {} from the start", a.filename);
            }
            (std::fs::File::create(part).map_err(|e| io(part, e))?, 0)
        }
        (s, _) => return Err(Fail::Bad(format!("artifact {}: unexpected HTTP {s} to a download from byte {have}", a.filename))),
    };
    let remaining = a.size - offset;
    if let Some(len) = d.length.filter(|l| *l != remaining) {
        return Err(Fail::Bad(format!("artifact {}: the server sends {len} bytes from byte {offset}, the deployment's size leaves {remaining}", a.filename)));
    }
    let copied = copy(d.body.take(remaining + 1), &mut file, part)?;
    file.sync_all().map_err(|e| io(part, e))?;
    if copied > remaining {
        return Err(Fail::Bad(format!("artifact {}: the server sent more than its size {}", a.filename, a.size)));
    }
    if copied < remaining {
        return Err(Fail::Retry(format!("artifact {}: the download stopped at byte {} of {}", a.filename, offset + copied, a.size)));
    }
    Ok(())
}

/// Copies until the end or an error, keeping what arrived (for a resume).
fn copy(mut from: impl Read, to: &mut std::fs::File, part: &Path) -> Result<u64, Fail> {
    let mut buf = vec![0u8; 64 << 10];
    let mut n = 0u64;
    loop {
        match from.read(&mut buf) {
            Ok(0) => return Ok(n),
            Ok(k) => {
                to.write_all(&buf[..k]).map_err(|e| io(part, e))?;
                n += k as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = to.sync_all();
                return Err(Fail::Retry(format!("download interrupted after {n} bytes: {e}")));
            }
        }
    }
}

fn verify(a: &Artifact, path: &Path) -> Result<(), Fail> {
    let len = std::fs::metadata(path).map_err(|e| io(path, e))?.len();
    if len != a.size {
        return Err(Fail::Bad(format!("artifact {}: {len} bytes, the deployment says {}", a.filename, a.size)));
    }
    let (s256, s1) = hash_file(path).map_err(|e| io(path, e))?;
    let (name, want, got) = match (&a.sha256, &a.sha1) {
        (Some(w), _) => ("sha256", w, s256),
        (None, Some(w)) => ("sha1", w, s1),
        (None, None) => return Err(Fail::Bad(format!("artifact {}: no hash to check", a.filename))),
    };
    if *want != got {
        return Err(Fail::Bad(format!("artifact {}: {name} {got}, the deployment says {want}", a.filename)));
    }
    Ok(())
}

/// SHA-256 and SHA-1 of a file, in hex.
pub fn hash_file(path: &Path) -> std::io::Result<(String, String)> {
    let mut f = std::fs::File::open(path)?;
    let (mut a, mut b) = (Sha256::new(), Sha1::new());
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        a.update(&buf[..k]);
        b.update(&buf[..k]);
    }
    Ok((hex(&a.finalize()), hex(&b.finalize())))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn io(path: &Path, e: std::io::Error) -> Fail {
    Fail::Retry(format!("{}: {e}", path.display()))
}

fn discard(path: &Path) {
    let _ = std::fs::remove_file(path);
}

fn remove_other_parts(dir: &Path, keep: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p != keep && p.extension().is_some_and(|x| x == "part") {
            discard(&p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::testserver::{reply, serve};

    fn setup(tag: &str, body: &[u8]) -> (PathBuf, Artifact, Http) {
        let dir = std::env::temp_dir().join(format!("berth-agent-dl-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let text =
            "server = http://x\ntenant = t\ncontroller_id = c\nboard = b\ndrop_dir = /d\nstate_dir = /s\nallow_plaintext = true\nrequest_timeout_s = 5\n";
        let http = Http::new(&crate::config::parse(text).unwrap());
        let art = Artifact { filename: "r.swu".into(), size: body.len() as u64, sha256: Some(hex(&Sha256::digest(body))), sha1: None, href: String::new() };
        (dir, art, http)
    }

    fn body() -> Vec<u8> {
        (0..10_000u32).map(|i| (i % 253) as u8).collect()
    }

    /// A `.part` holding the first half: the request asks for the rest by
    /// `Range`, the 206 answer is appended, and the whole checks out.
    #[test]
    fn a_partial_file_is_resumed_with_a_range_request() {
        let b = body();
        let (dir, mut art, http) = setup("resume", &b);
        let s = serve(vec![reply("206 Partial Content", "Content-Range: bytes 5000-9999/10000\r\n", &b[5000..])]);
        art.href = format!("{}/dl", s.base);
        std::fs::write(part_path(&dir, &art), &b[..5000]).unwrap();
        let got = fetch(&http, &art, &dir, 1 << 20).unwrap();
        assert_eq!(std::fs::read(got).unwrap(), b);
        let req = s.requests.lock().unwrap()[0].to_ascii_lowercase();
        assert!(req.contains("range: bytes=5000-"), "{req}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// An interrupted download keeps its bytes; the next try resumes; a
    /// server that then ignores the range sends it all, which replaces them.
    #[test]
    fn an_interrupted_download_resumes_or_starts_over() {
        let b = body();
        let (dir, mut art, http) = setup("cut", &b);
        let mut cut = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", b.len()).into_bytes();
        cut.extend_from_slice(&b[..3000]);
        let s = serve(vec![cut, reply("200 OK", "", &b)]);
        art.href = format!("{}/dl", s.base);
        let e = fetch(&http, &art, &dir, 1 << 20).unwrap_err();
        assert!(matches!(e, Fail::Retry(_)), "{e:?}");
        assert_eq!(std::fs::read(part_path(&dir, &art)).unwrap(), &b[..3000]);
        let got = fetch(&http, &art, &dir, 1 << 20).unwrap();
        assert_eq!(std::fs::read(got).unwrap(), b);
        assert!(s.requests.lock().unwrap()[1].to_ascii_lowercase().contains("range: bytes=3000-"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_wrong_hash_or_size_deletes_the_file_and_is_bad() {
        let b = body();
        let (dir, mut art, http) = setup("bad", &b);
        let mut evil = b.clone();
        evil[7] ^= 1;
        let s = serve(vec![reply("200 OK", "", &evil)]);
        art.href = format!("{}/dl", s.base);
        let Fail::Bad(e) = fetch(&http, &art, &dir, 1 << 20).unwrap_err() else { panic!() };
        assert!(e.contains("sha256") && e.contains("the deployment says"), "{e}");
        assert!(!part_path(&dir, &art).exists());
        let Fail::Bad(e) = fetch(&http, &art, &dir, 100).unwrap_err() else { panic!() };
        assert!(e.contains("more than the configured maximum 100"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
