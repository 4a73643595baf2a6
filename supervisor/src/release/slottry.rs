//! The try of a system slot recorded on the data partition: which slot an
//! update left and which one it tries, and whether the tried slot's berth
//! reached its loop. It owns that small file (`slot-try` in the release
//! store's directory) and its text format; it must not decide what a boot
//! is (that is [`crate::release::bootenv::at_boot`]) nor touch the
//! bootloader's environment.
//!
//! The file is written (atomically, fsynced) after the release's trial is
//! recorded and before the bootloader is told to try the other slot, so
//! every boot that follows can tell a try from a fall-back; it is removed
//! when the trial ends (commit, or the fall-back is recorded). Format, one
//! line: `from=A to=B reached=0` (at most [`TEXT_MAX`] bytes).

use std::path::Path;

use crate::release::bootenv::{PendingTry, Slot};
use crate::release::durable::{self, Io};

/// The file's name in the store's directory.
pub const FILE: &str = "slot-try";
/// Longest file read.
pub const TEXT_MAX: usize = 64;

/// The file's text for `p`.
pub fn render(p: &PendingTry) -> String {
    format!("from={} to={} reached={}\n", p.from.name(), p.to.name(), u8::from(p.reached))
}

/// The try `text` records.
pub fn parse(text: &[u8]) -> Result<PendingTry, String> {
    let text = std::str::from_utf8(text).map_err(|_| "not UTF-8".to_string())?;
    let (mut from, mut to, mut reached) = (None, None, None);
    for word in text.split_ascii_whitespace() {
        let (k, v) = word.split_once('=').ok_or_else(|| format!("`{word}` is not key=value"))?;
        let slot = || match v {
            "A" => Ok(Slot::A),
            "B" => Ok(Slot::B),
            _ => Err(format!("{k}={v}: want A or B")),
        };
        match k {
            "from" => from = Some(slot()?),
            "to" => to = Some(slot()?),
            "reached" => {
                reached = Some(match v {
                    "0" => false,
                    "1" => true,
                    _ => return Err(format!("reached={v}: want 0 or 1")),
                })
            }
            _ => return Err(format!("unknown key `{k}`")),
        }
    }
    let (Some(from), Some(to), Some(reached)) = (from, to, reached) else {
        return Err("want from=, to= and reached=".into());
    };
    if from == to {
        return Err(format!("from and to are both {}", from.name()));
    }
    Ok(PendingTry { from, to, reached })
}

/// The try recorded in `dir`, if any. An unreadable or garbled file is an
/// error (the caller treats the boot as a fall-back's: never as a commit).
pub fn read(dir: &Path) -> Result<Option<PendingTry>, String> {
    let path = dir.join(FILE);
    match crate::common::files::read_bounded(&path.to_string_lossy(), TEXT_MAX) {
        Ok(bytes) => parse(&bytes).map(Some).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Record `p` in `dir`, durably.
pub fn write<I: Io>(io: &mut I, dir: &Path, p: &PendingTry) -> std::io::Result<()> {
    durable::replace(io, dir, FILE, render(p).as_bytes())
}

/// Remove the record from `dir` (the try is over), durably.
pub fn clear<I: Io>(io: &mut I, dir: &Path) -> std::io::Result<()> {
    match io.remove_file(&dir.join(FILE)) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        r => r?,
    }
    io.sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_try_round_trips_and_bad_text_is_named() {
        for p in [PendingTry { from: Slot::A, to: Slot::B, reached: false }, PendingTry { from: Slot::B, to: Slot::A, reached: true }] {
            assert_eq!(parse(render(&p).as_bytes()), Ok(p));
        }
        for (text, why) in [
            ("from=A to=A reached=0", "both A"),
            ("from=A to=C reached=0", "to=C"),
            ("from=A to=B reached=2", "reached=2"),
            ("from=A to=B", "want from="),
            ("from=A to=B reached=0 x=1", "unknown key"),
            ("from", "not key=value"),
        ] {
            assert!(parse(text.as_bytes()).unwrap_err().contains(why), "{text}");
        }
    }

    #[test]
    fn written_read_and_cleared() {
        let d = std::env::temp_dir().join(format!("berth-slottry-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let mut io = durable::SysIo;
        assert_eq!(read(&d), Ok(None));
        let p = PendingTry { from: Slot::A, to: Slot::B, reached: false };
        write(&mut io, &d, &p).unwrap();
        assert_eq!(read(&d), Ok(Some(p)));
        clear(&mut io, &d).unwrap();
        clear(&mut io, &d).unwrap();
        assert_eq!(read(&d), Ok(None));
        std::fs::write(d.join(FILE), "garbage").unwrap();
        assert!(read(&d).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
