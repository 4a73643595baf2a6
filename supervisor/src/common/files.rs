//! Small file-system helpers every group uses: errno text for events, a
//! bounded read, a mount-point test and the wait for a device node. It owns
//! no state and must not use any other group of the crate.

use nix::errno::Errno;
use std::time::Duration;

/// `ENOENT: No such file or directory`, for events.
pub fn errno_text(e: Errno) -> heapless::String<96> {
    let mut t = heapless::String::new();
    let _ = core::fmt::write(&mut t, format_args!("{e:?}: {}", e.desc()));
    t
}

/// A directory is a mount point when it sits on another device than its parent
/// (or is the root).
pub fn is_mountpoint(path: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    let parent = match path.rfind('/') {
        Some(0) => "/",
        Some(i) => &path[..i],
        None => return false,
    };
    match (std::fs::metadata(path), std::fs::metadata(parent)) {
        (Ok(a), Ok(b)) => a.dev() != b.dev() || (a.ino() == b.ino() && a.dev() == b.dev()),
        _ => false,
    }
}

/// A whole file of at most `max` bytes; a longer one is an error.
pub fn read_bounded(path: &str, max: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let f = std::fs::File::open(path)?;
    let mut buf = Vec::new();
    f.take(max as u64 + 1).read_to_end(&mut buf)?;
    if buf.len() > max {
        return Err(std::io::Error::other("file too large"));
    }
    Ok(buf)
}

/// Poll for a device node to appear (devtmpfs creates it once the driver probes).
pub fn wait_for(path: &str, ms: u32) -> Result<u32, Errno> {
    let start = crate::common::log::now();
    loop {
        if std::fs::metadata(path).is_ok() {
            return Ok(((crate::common::log::now() - start) * 1e3) as u32);
        }
        if (crate::common::log::now() - start) * 1e3 > ms as f64 {
            return Err(Errno::ENODEV);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
