//! The agent's mode `controls` (the `output-controls` scenario): it passes
//! on what berth gives back of the `controls` container's terminal
//! controls, as hex, so that the harness judges the very bytes and the
//! console never carries them raw. One line per source, once it holds the
//! mark (`qemu_tests::controls::MARK`), waiting up to [`WAIT`]:
//!
//! ```text
//! AGENT raw source=logs hex=...     the line of `berthctl logs controls`
//! AGENT raw source=store hex=...    the line of the log store's file
//! AGENT raw source=status hex=...   `controls`' line of `berthctl status` (its STATUS= note)
//! ```
//!
//! A source without the line says `missing="..."` instead of `hex=`.

use qemu_tests::controls::{hex, marked_line};
use qemu_tests::event::quote;
use std::time::{Duration, Instant};

/// Longest wait for each source.
const WAIT: Duration = Duration::from_secs(120);
const STORE_FILE: &str = "/data/berth/logs/container-controls.log";

/// What `berthctl ARGS` printed on stdout, as bytes.
fn ctl(args: &[&str]) -> Vec<u8> {
    std::process::Command::new("/sbin/berthctl").args(args).output().map(|o| o.stdout).unwrap_or_default()
}

fn pass_on(source: &str, get: impl Fn() -> Option<Vec<u8>>) {
    let start = Instant::now();
    loop {
        if let Some(line) = get() {
            super::say(&format!("AGENT raw source={source} hex={}", hex(&line)));
            return;
        }
        if start.elapsed() > WAIT {
            let why = format!("no line with the mark in {} s", WAIT.as_secs());
            super::say(&format!("AGENT raw source={source} missing={}", quote(&why)));
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

pub fn run() {
    pass_on("logs", || marked_line(&ctl(&["logs", "controls", "-n", "50"])).map(<[u8]>::to_vec));
    pass_on("store", || std::fs::read(STORE_FILE).ok().and_then(|b| marked_line(&b).map(<[u8]>::to_vec)));
    pass_on("status", || marked_line(&ctl(&["status"])).map(<[u8]>::to_vec));
}
