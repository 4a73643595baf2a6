//! `berth receive PORT`: take update bundles pushed over a virtio serial
//! port into the update inbox, so that a running device can be updated from
//! its host without a network path or a shell (`cargo xtask push` under
//! QEMU; a service link on a real board).
//!
//! It must not install anything: it only fills the inbox; PID 1 stages and checks.
//!
//! It runs as a host service (the demo adds it under `cargo xtask run`; the
//! shipped boards do not). It only writes into the inbox: the bundle is then
//! checked and staged by berth exactly as any inbox bundle, so a bad push
//! can never do more than a bad file in the inbox.
//!
//! A push is one frame: [`MAGIC`], the bundle's length (u64, little endian,
//! at most [`BUNDLE_MAX`]), the bundle, and the SHA-256 of the bundle. It is
//! written to a hidden partial file while it arrives, and renamed into the
//! inbox (`push-<ms since boot>.bundle`, after an fsync of the file and the
//! directory) only when the length and the hash match; anything else removes
//! the partial file. The answer is one line on the same port: `ok FILE` or
//! `refused REASON`. After a refused header the rest of the stream is read
//! and thrown away until the host side closes, since it cannot be trusted to
//! be in step.
//!
//! Before a byte is written the inbox must have room
//! ([`crate::release::room`]): fewer bundles waiting (taken ones included)
//! than the board's `[inbox] bundles`, their bytes and this one's within
//! `[inbox] mib`, and the data partition's reserve still free after it.
//! Otherwise the push is refused with the reason and nothing is written;
//! the rest of its frame is read and dropped first, so the answer comes
//! once the receiver is in step for the next push.
//!
//! A virtio port reads as end of file while no host program is connected;
//! the receiver then looks again every second.

use crate::common::log::Event;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The first bytes of a push.
pub const MAGIC: [u8; 8] = *b"BRTHPUSH";
/// Magic and length.
pub const HEADER_LEN: usize = 16;
/// Largest bundle taken.
pub const BUNDLE_MAX: u64 = 256 << 20;
/// Where the guest kernel lists virtio ports by name.
pub const PORTS: &str = "/sys/class/virtio-ports";
/// The update inbox berth looks into.
pub const INBOX: &str = crate::supervise::update::INBOX;
/// The file a push is written to while it arrives (not a `.bundle`: the
/// inbox ignores it).
const PARTIAL: &str = ".push.partial";

/// Why a push was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushError {
    /// The frame does not start with [`MAGIC`].
    Magic,
    /// An empty bundle.
    Empty,
    /// The length is over [`BUNDLE_MAX`].
    TooLarge { len: u64 },
    /// The host side went away before the whole frame came.
    CutShort { got: u64, want: u64 },
    /// The bundle's SHA-256 is not the one sent after it.
    Hash,
    /// The inbox has no room for it (count, bytes or free space).
    Full(crate::release::room::Full),
    /// Writing into the inbox failed.
    Store(String),
}

impl core::fmt::Display for PushError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PushError::Magic => write!(f, "not a push: the frame does not start with BRTHPUSH"),
            PushError::Empty => write!(f, "an empty bundle"),
            PushError::TooLarge { len } => write!(f, "a bundle of {len} bytes is over the {BUNDLE_MAX}-byte limit"),
            PushError::CutShort { got, want } => write!(f, "cut short: {got} of {want} bytes came"),
            PushError::Hash => write!(f, "the bundle's SHA-256 does not match the one sent"),
            PushError::Full(why) => write!(f, "{why}"),
            PushError::Store(e) => write!(f, "inbox: {e}"),
        }
    }
}

/// The header of a push of `len` bytes (the sending side).
pub fn header(len: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    let (m, l) = h.split_at_mut(MAGIC.len());
    m.copy_from_slice(&MAGIC);
    l.copy_from_slice(&len.to_le_bytes());
    h
}

/// The bundle length a header announces.
pub fn parse_header(h: &[u8; HEADER_LEN]) -> Result<u64, PushError> {
    let (m, l) = h.split_at(MAGIC.len());
    if m != MAGIC {
        return Err(PushError::Magic);
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(l);
    match u64::from_le_bytes(len) {
        0 => Err(PushError::Empty),
        len if len > BUNDLE_MAX => Err(PushError::TooLarge { len }),
        len => Ok(len),
    }
}

/// The answer line for a push's outcome.
pub fn answer(outcome: &Result<PathBuf, PushError>) -> String {
    match outcome {
        Ok(file) => format!("ok {}\n", file.display()),
        Err(e) => format!("refused {e}\n"),
    }
}

/// The port device whose virtio name is `name` (`/dev/vport1p1`).
pub fn find_port(ports: &Path, name: &str) -> Result<PathBuf, String> {
    let dir = std::fs::read_dir(ports).map_err(|e| format!("{}: {e} (no virtio serial device?)", ports.display()))?;
    for entry in dir.flatten() {
        let named = std::fs::read_to_string(entry.path().join("name")).unwrap_or_default();
        if named.trim_end() == name {
            return Ok(Path::new("/dev").join(entry.file_name()));
        }
    }
    Err(format!("no virtio port named `{name}` under {}", ports.display()))
}

/// Read until `buf` is full or the stream ends; how many bytes came.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while let Some(rest) = buf.get_mut(got..).filter(|r| !r.is_empty()) {
        match r.read(rest) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// The sizes of the bundles waiting in `inbox` (fresh and taken ones,
/// regular files only: anything else is quarantined unread).
fn waiting(inbox: &Path) -> std::io::Result<Vec<u64>> {
    use crate::release::inbox;
    let mut sizes = Vec::new();
    for entry in std::fs::read_dir(inbox)?.take(inbox::SCAN_MAX * 4) {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if inbox::parse(&name).is_none() {
            continue;
        }
        let meta = entry.metadata()?;
        if meta.file_type().is_file() {
            sizes.push(meta.len());
        }
    }
    Ok(sizes)
}

/// Free bytes on the file system of `path`.
fn free_bytes(path: &Path) -> std::io::Result<u64> {
    let s = nix::sys::statvfs::statvfs(path).map_err(std::io::Error::from)?;
    // The field widths differ between the C libraries of the three targets.
    #[allow(clippy::unnecessary_cast)]
    Ok((s.blocks_available() as u64).saturating_mul(s.fragment_size() as u64))
}

/// Whether a bundle of `len` bytes has room in `inbox` under `limits`.
pub fn room_for(len: u64, inbox: &Path, limits: &crate::release::room::Limits) -> Result<(), PushError> {
    let store = |e: std::io::Error| PushError::Store(e.to_string());
    std::fs::create_dir_all(inbox).map_err(store)?;
    let sizes = waiting(inbox).map_err(store)?;
    let free = free_bytes(inbox).map_err(store)?;
    crate::release::room::admit(&sizes, len, free, limits).map_err(PushError::Full)
}

/// Receive one bundle of `len` bytes and its hash from `r` into `inbox`;
/// the inbox file's path once it is there. `stamp` names it. The caller
/// checked its room first ([`room_for`]).
pub fn receive(r: &mut impl Read, len: u64, inbox: &Path, stamp: u64) -> Result<PathBuf, PushError> {
    let store = |e: std::io::Error| PushError::Store(e.to_string());
    std::fs::create_dir_all(inbox).map_err(store)?;
    let partial = inbox.join(PARTIAL);
    let result = (|| {
        let mut file = std::fs::File::create(&partial).map_err(store)?;
        let mut hash = Sha256::new();
        let mut chunk = vec![0u8; 64 * 1024];
        let mut got = 0u64;
        while got < len {
            let want = usize::try_from(len - got).unwrap_or(usize::MAX).min(chunk.len());
            let buf = chunk.get_mut(..want).unwrap_or_default();
            let n = read_full(r, buf).map_err(store)?;
            let data = buf.get(..n).unwrap_or_default();
            hash.update(data);
            file.write_all(data).map_err(store)?;
            got += n as u64;
            if n < want {
                return Err(PushError::CutShort { got, want: len });
            }
        }
        let mut sent = [0u8; 32];
        let n = read_full(r, &mut sent).map_err(store)?;
        if n < sent.len() {
            return Err(PushError::CutShort { got: len + n as u64, want: len + 32 });
        }
        if hash.finalize().as_slice() != sent {
            return Err(PushError::Hash);
        }
        file.sync_all().map_err(store)?;
        let name = inbox.join(format!("push-{stamp:012}.bundle"));
        std::fs::rename(&partial, &name).map_err(store)?;
        std::fs::File::open(inbox).and_then(|d| d.sync_all()).map_err(store)?;
        Ok(name)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

/// Read and drop `n` bytes of `r` (fewer if it ends first).
fn skip(r: &mut impl Read, mut n: u64) {
    let mut sink = [0u8; 4096];
    while n > 0 {
        let want = usize::try_from(n).unwrap_or(sink.len()).min(sink.len());
        match read_full(r, sink.get_mut(..want).unwrap_or_default()) {
            Ok(got) if got > 0 => n -= got as u64,
            _ => return,
        }
    }
}

/// Serve the port named `name` for ever (returns only when it cannot be
/// opened), within the board's inbox `limits`.
pub fn run(name: &str, limits: &crate::release::room::Limits) -> Result<(), String> {
    let device = find_port(Path::new(PORTS), name)?;
    let mut port = std::fs::OpenOptions::new().read(true).write(true).open(&device).map_err(|e| format!("{}: {e}", device.display()))?;
    Event::info("push.listen").kv("port", name).kv("device", device.display()).emit();
    loop {
        let mut h = [0u8; HEADER_LEN];
        let got = read_full(&mut port, &mut h).map_err(|e| format!("{}: {e}", device.display()))?;
        if got == 0 {
            // Nobody on the host side.
            std::thread::sleep(std::time::Duration::from_secs(1));
            continue;
        }
        let outcome = if got < HEADER_LEN {
            Err(PushError::CutShort { got: got as u64, want: HEADER_LEN as u64 })
        } else {
            let inbox = Path::new(INBOX);
            parse_header(&h).and_then(|len| match room_for(len, inbox, limits) {
                Ok(()) => receive(&mut port, len, inbox, (crate::common::log::now() * 1000.0) as u64),
                Err(e) => {
                    // A good header: skip exactly the rest of its frame, so
                    // the next push is read from its start.
                    skip(&mut port, len.saturating_add(32));
                    Err(e)
                }
            })
        };
        match &outcome {
            Ok(file) => Event::info("push.received").kv("file", file.display()).emit(),
            Err(e) => Event::warn("push.refused").kv("reason", e).emit(),
        }
        let _ = port.write_all(answer(&outcome).as_bytes());
        if matches!(outcome, Err(PushError::Magic | PushError::Empty | PushError::TooLarge { .. })) {
            // Out of step with the sender: drop what it still sends.
            let mut sink = [0u8; 4096];
            while matches!(port.read(&mut sink), Ok(n) if n > 0) {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(bundle: &[u8]) -> Vec<u8> {
        let mut f = header(bundle.len() as u64).to_vec();
        f.extend_from_slice(bundle);
        f.extend_from_slice(&Sha256::digest(bundle));
        f
    }

    fn inbox(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("berth-push-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn take(bytes: &[u8], dir: &Path) -> Result<PathBuf, PushError> {
        let mut r = bytes;
        let mut h = [0u8; HEADER_LEN];
        assert_eq!(read_full(&mut r, &mut h).unwrap(), HEADER_LEN);
        let len = parse_header(&h)?;
        receive(&mut r, len, dir, 42)
    }

    #[test]
    fn headers_round_trip_and_bad_ones_are_named() {
        assert_eq!(parse_header(&header(7)), Ok(7));
        assert_eq!(parse_header(&header(BUNDLE_MAX)), Ok(BUNDLE_MAX));
        assert_eq!(parse_header(&header(BUNDLE_MAX + 1)), Err(PushError::TooLarge { len: BUNDLE_MAX + 1 }));
        assert_eq!(parse_header(&header(0)), Err(PushError::Empty));
        let mut h = header(7);
        h[0] ^= 1;
        assert_eq!(parse_header(&h), Err(PushError::Magic));
    }

    #[test]
    fn a_whole_push_lands_in_the_inbox_and_nothing_else_does() {
        let dir = inbox("whole");
        let bundle: Vec<u8> = (0..200_000u32).map(|i| (i * 7) as u8).collect();
        let file = take(&frame(&bundle), &dir).unwrap();
        assert_eq!(file, dir.join("push-000000000042.bundle"));
        assert_eq!(std::fs::read(&file).unwrap(), bundle);
        assert_eq!(answer(&Ok(file.clone())), format!("ok {}\n", file.display()));
        std::fs::remove_file(&file).unwrap();

        let good = frame(&bundle);
        // A changed byte anywhere in the bundle or its hash.
        for at in [HEADER_LEN, HEADER_LEN + 100_000, good.len() - 1] {
            let mut bad = good.clone();
            bad[at] ^= 0x40;
            assert_eq!(take(&bad, &dir), Err(PushError::Hash), "byte {at}");
        }
        // Every cut after the header.
        for cut in [HEADER_LEN, HEADER_LEN + 1, HEADER_LEN + 65_536, good.len() - 32, good.len() - 1] {
            match take(&good[..cut], &dir) {
                Err(PushError::CutShort { got, want }) => assert!(got < want && got == (cut - HEADER_LEN) as u64, "{cut}: {got}/{want}"),
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "a refused push left a file behind");
        let refused = answer(&Err(PushError::Hash));
        assert!(refused.starts_with("refused ") && refused.contains("SHA-256"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn ports_are_found_by_their_virtio_name() {
        let sys = inbox("ports");
        for (port, name) in [("vport1p1", "org.qemu.guest_agent.0\n"), ("vport2p1", "berth.push\n")] {
            std::fs::create_dir_all(sys.join(port)).unwrap();
            std::fs::write(sys.join(port).join("name"), name).unwrap();
        }
        assert_eq!(find_port(&sys, "berth.push"), Ok(PathBuf::from("/dev/vport2p1")));
        assert!(find_port(&sys, "other").unwrap_err().contains("no virtio port named `other`"));
        assert!(find_port(&sys.join("none"), "berth.push").unwrap_err().contains("no virtio serial device"));
        std::fs::remove_dir_all(&sys).unwrap();
    }

    #[test]
    fn the_inbox_takes_no_more_than_the_board_allows() {
        use crate::release::room::{Full, Limits};
        let dir = inbox("room");
        let limits = Limits { bundles: 2, mib: 1 };
        assert_eq!(room_for(10, &dir, &limits), Ok(()));
        std::fs::write(dir.join("a.bundle"), [0u8; 100]).unwrap();
        // Names berth does not take (partial pushes, other files) do not count.
        std::fs::write(dir.join(".push.partial"), [0u8; 100]).unwrap();
        std::fs::write(dir.join("notes.txt"), [0u8; 100]).unwrap();
        assert_eq!(room_for((1 << 20) - 100, &dir, &limits), Ok(()));
        assert_eq!(room_for((1 << 20) - 99, &dir, &limits), Err(PushError::Full(Full::Bytes { waiting: 100, incoming: (1 << 20) - 99, max: 1 << 20 })));
        // A bundle being taken still counts.
        std::fs::write(dir.join("b.bundle.taking1"), [0u8; 50]).unwrap();
        let e = room_for(1, &dir, &limits).unwrap_err();
        assert_eq!(e, PushError::Full(Full::Count { waiting: 2, max: 2 }));
        assert!(e.to_string().starts_with("inbox full: 2 bundles are waiting and the board allows 2"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn skip_drops_exactly_the_frame() {
        let mut r: &[u8] = &[7u8; 10_000];
        skip(&mut r, 9_000);
        assert_eq!(r.len(), 1_000);
        skip(&mut r, 5_000);
        assert!(r.is_empty());
    }
}
