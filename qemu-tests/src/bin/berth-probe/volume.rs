//! `--fill-volume DIR`: the volume scenarios' load (`qemu-tests/src/volumes.rs`).
//!
//! Plants a symlink `DIR/link -> /tmp` (a later release mounts a tmpfs at
//! `DIR/link`: berth must not follow it), then writes `DIR/fill` in 64 KiB
//! blocks until a write fails, and says how far it got:
//!
//! ```text
//! VOLFILL planted link=/tmp
//! VOLFILL full errno=EDQUOT code=122 bytes=N
//! VOLFILL alive n=K        (every second after that, forever)
//! ```
//!
//! A run that finds the file already there (a restart) appends to it: the
//! write fails at once, and the line says so with the bytes it added.

use std::fs;
use std::io::{self, Write};
use std::time::Duration;

pub const USAGE: &str = "--fill-volume DIR";

/// Longest the fill may run: a volume larger than this is not what the
/// scenario asked for.
const FILL_MAX: u64 = 256 << 20;
const BLOCK: usize = 64 << 10;

fn say(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn errno_name(code: i32) -> &'static str {
    match code {
        libc::EDQUOT => "EDQUOT",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        libc::EACCES => "EACCES",
        libc::EPERM => "EPERM",
        _ => "other",
    }
}

pub fn run(args: &[String]) -> ! {
    let Some(dir) = args.get(1) else {
        eprintln!("berth-probe: usage {USAGE}");
        std::process::exit(2);
    };
    let link = format!("{dir}/link");
    match std::os::unix::fs::symlink("/tmp", &link) {
        Ok(()) => say("VOLFILL planted link=/tmp"),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => say("VOLFILL planted link=/tmp (from an earlier run)"),
        Err(e) => say(&format!("VOLFILL plant-failed error={e}")),
    }
    let block = vec![0x5au8; BLOCK];
    let mut written: u64 = 0;
    let file = fs::OpenOptions::new().create(true).append(true).open(format!("{dir}/fill"));
    let result = match file {
        Err(e) => Err(e),
        Ok(mut f) => loop {
            if written >= FILL_MAX {
                break Ok(());
            }
            match f.write(&block) {
                Ok(0) => break Ok(()),
                Ok(n) => written += n as u64,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        },
    };
    match result {
        Err(e) => {
            let code = e.raw_os_error().unwrap_or(0);
            say(&format!("VOLFILL full errno={} code={code} bytes={written}", errno_name(code)));
        }
        Ok(()) => say(&format!("VOLFILL full errno=none code=0 bytes={written}")),
    }
    let mut n: u64 = 0;
    loop {
        n += 1;
        say(&format!("VOLFILL alive n={n}"));
        std::thread::sleep(Duration::from_secs(1));
    }
}
