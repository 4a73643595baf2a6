//! `berth console DEVICE`: a `berthctl` prompt on a serial console, for the
//! demo (`cargo xtask run` adds it as a host service; the shipped boards do
//! not run it: a real gateway keeps its console for the kernel and berth's
//! events).
//!
//! A child process of PID 1: it must not run inside the loop.
//!
//! It is not a shell: each line is split on whitespace and may only be a
//! `berthctl` command (the leading word `berthctl` is optional), run as
//! `/sbin/berth ctl ARGS...` with its output on the console. While one runs
//! (`logs NAME -f` follows until stopped), pressing Enter stops it. Lines
//! are at most [`LINE_MAX`] bytes and [`WORDS_MAX`] words.

use std::io::{BufRead, Write};

/// Longest line taken.
pub const LINE_MAX: usize = 256;
/// Most words in a command.
pub const WORDS_MAX: usize = 8;
/// The berth binary on the system image.
const BERTH: &str = "/sbin/berth";

/// What a console line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Empty,
    Help,
    /// The arguments of `berthctl`.
    Ctl(Vec<String>),
    Refused(&'static str),
}

/// Decide what a line asks for (pure).
pub fn parse(line: &str) -> Line {
    if line.len() > LINE_MAX {
        return Line::Refused("line too long");
    }
    let mut words: Vec<&str> = line.split_whitespace().collect();
    if words.first() == Some(&"berthctl") {
        words.remove(0);
    }
    match words.first() {
        None => Line::Empty,
        Some(&"help") | Some(&"?") => Line::Help,
        Some(_) if words.len() > WORDS_MAX => Line::Refused("too many words"),
        Some(_) if words.iter().any(|w| w.chars().any(char::is_control)) => Line::Refused("control characters"),
        Some(_) => Line::Ctl(words.iter().map(|w| w.to_string()).collect()),
    }
}

const HELP: &str = "berthctl commands (the word `berthctl` is optional):
  status [--json] | release [--json] | logs NAME [-f] [-n N] | events [-f] [-n N]
  stop NAME | start NAME | restart NAME | update [--wait] BUNDLE | commit | rollback
`COMMAND --help` shows a command's help. Enter stops a command that follows (-f).
";

/// Serve the prompt on `device` until it cannot be read.
pub fn run(device: &str) -> Result<(), std::io::Error> {
    let tty = std::fs::OpenOptions::new().read(true).write(true).open(device)?;
    let mut out = tty.try_clone()?;
    let reader = std::io::BufReader::new(tty.try_clone()?);
    // Lines come from a thread, so a running command can be stopped by one.
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in reader.lines() {
            let Ok(l) = line else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let _ = write!(out, "\r\nberth console: type `help` for berthctl commands\r\nberthctl> ");
    for line in rx.iter() {
        match parse(&line) {
            Line::Empty => {}
            Line::Help => {
                let _ = out.write_all(HELP.replace('\n', "\r\n").as_bytes());
            }
            Line::Refused(why) => {
                let _ = writeln!(out, "console: {why}\r");
            }
            Line::Ctl(args) => {
                let child = std::process::Command::new(BERTH)
                    .arg("ctl")
                    .args(&args)
                    .stdin(std::process::Stdio::null())
                    .stdout(out.try_clone()?)
                    .stderr(out.try_clone()?)
                    .spawn();
                match child {
                    Ok(mut c) => loop {
                        if let Ok(Some(_)) | Err(_) = c.try_wait() {
                            break;
                        }
                        // Enter stops it.
                        if rx.recv_timeout(std::time::Duration::from_millis(100)).is_ok() {
                            let _ = c.kill();
                            let _ = c.wait();
                            break;
                        }
                    },
                    Err(e) => {
                        let _ = writeln!(out, "console: {BERTH}: {e}\r");
                    }
                }
            }
        }
        let _ = write!(out, "berthctl> ");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_berthctl_commands_only() {
        assert_eq!(parse("  "), Line::Empty);
        assert_eq!(parse("help"), Line::Help);
        assert_eq!(parse("berthctl status"), Line::Ctl(vec!["status".into()]));
        assert_eq!(parse("logs sensor -f"), Line::Ctl(vec!["logs".into(), "sensor".into(), "-f".into()]));
        assert_eq!(parse("berthctl"), Line::Empty);
        assert!(matches!(parse(&"a ".repeat(9)), Line::Refused(_)));
        assert!(matches!(parse(&"x".repeat(LINE_MAX + 1)), Line::Refused(_)));
        assert!(matches!(parse("status \u{1b}[A"), Line::Refused(_)));
    }
}
