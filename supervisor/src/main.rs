//! The `berth` binary: PID 1 on the device; a checking tool elsewhere.

use std::process::ExitCode;

fn main() -> ExitCode {
    if nix::unistd::getpid().as_raw() == 1 {
        berth::boot::pid1();
    }
    let argv0 = std::env::args().next().unwrap_or_default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `berthctl ...` (a link to berth) is `berth ctl ...`.
    if argv0.rsplit('/').next() == Some("berthctl") {
        return ctl(&args);
    }
    if args.first().map(String::as_str) == Some("ctl") {
        return ctl(args.get(1..).unwrap_or_default());
    }
    cli(&args)
}

const CTL_USAGE: &str = "usage: berthctl status | release | start NAME | stop NAME | restart NAME";

/// The control CLI: one request over the root-only control socket.
fn ctl(args: &[String]) -> ExitCode {
    use berth::control::{Command, Response};
    let name = |i: usize| -> Option<berth::control::Name> {
        let n = args.get(i)?;
        let mut s = heapless::String::new();
        s.push_str(n).ok()?;
        Some(s)
    };
    let cmd = match (args.first().map(String::as_str), args.len()) {
        (Some("status"), 1) => Some(Command::Status),
        (Some("release"), 1) => Some(Command::Release),
        (Some("start"), 2) => name(1).map(Command::Start),
        (Some("stop"), 2) => name(1).map(Command::Stop),
        (Some("restart"), 2) => name(1).map(Command::Restart),
        _ => None,
    };
    let Some(cmd) = cmd else {
        eprintln!("{CTL_USAGE}");
        return ExitCode::from(2);
    };
    match berth::ctlsock::call(berth::control::SOCKET, cmd) {
        Ok(Response::Status(list)) => {
            println!("{:<20} {:<8} {:>6} {:>10} {:>8}  LAST EXIT", "NAME", "STATE", "PID", "UPTIME", "RESTARTS");
            for c in list.iter() {
                println!(
                    "{:<20} {:<8} {:>6} {:>9.1}s {:>8}  {}",
                    c.name,
                    c.state,
                    if c.pid > 0 { c.pid.to_string() } else { "-".into() },
                    c.uptime_ms as f64 / 1e3,
                    c.restarts,
                    c.last_exit
                );
            }
            ExitCode::SUCCESS
        }
        Ok(Response::Release { version, key_id }) => {
            println!("release {version} signed by key {key_id}");
            ExitCode::SUCCESS
        }
        Ok(Response::Done) => ExitCode::SUCCESS,
        Ok(Response::Error(e)) => {
            eprintln!("berthctl: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("berthctl: {e}");
            ExitCode::FAILURE
        }
    }
}

const USAGE: &str = "usage: berth --version
       berth check-board FILE.toml                                          (host build)
       berth verify --keys DIR RELEASE [--board NAME] [--stored-version N]  (host build)
berth runs as PID 1; started otherwise it only offers these checks.";

fn cli(args: &[String]) -> ExitCode {
    match args.first().map(String::as_str) {
        Some("--version") => {
            println!("berth {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        #[cfg(feature = "host")]
        Some("check-board") => check_board(args.get(1..).unwrap_or_default()),
        #[cfg(feature = "host")]
        Some("verify") => verify(args.get(1..).unwrap_or_default()),
        #[cfg(feature = "host")]
        Some("bench-start") => match berth::bench::serve(args.get(1..).unwrap_or_default()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("berth: bench-start: {e}");
                ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

#[cfg(feature = "host")]
fn check_board(args: &[String]) -> ExitCode {
    let [path] = args else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("berth: {path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match berth::board::Board::from_toml(&text) {
        Ok(b) => {
            println!("{path}: board {} ({}) ok", b.name, b.arch.name());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("berth: {path}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Check a signed release exactly as the device does and print it, or print
/// the error the device would log.
#[cfg(feature = "host")]
fn verify(args: &[String]) -> ExitCode {
    use berth::release;
    let (mut keys_dir, mut file, mut board, mut stored) = (None, None, None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--keys" => keys_dir = it.next(),
            "--board" => board = it.next(),
            "--stored-version" => match it.next().map(|v| v.parse::<u64>()) {
                Some(Ok(v)) => stored = Some(v),
                _ => {
                    eprintln!("berth: --stored-version needs a number");
                    return ExitCode::from(2);
                }
            },
            _ if file.is_none() && !a.starts_with("--") => file = Some(a),
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let (Some(keys_dir), Some(file)) = (keys_dir, file) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let keys = match release::TrustedKeys::load_dir(std::path::Path::new(keys_dir)) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("berth: keys: {e}");
            return ExitCode::FAILURE;
        }
    };
    let bytes = match read_bounded(file, release::OBJECT_MAX) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("berth: {file}: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Without --board, accept the release's own board (after the signature).
    let result = match board {
        Some(b) => release::decode_release(&bytes, &keys, b, stored),
        None => release::open(&bytes, &keys)
            .and_then(|(_, payload)| release::decode_payload(payload))
            .and_then(|r| release::decode_release(&bytes, &keys, &r.board, stored)),
    };
    match result {
        Ok(v) => {
            let r = &v.release;
            println!("release {file}: ok");
            println!("version {}", r.version);
            println!("board {}", r.board);
            println!("key {}", v.key_id);
            if let Some(d) = r.downgrade {
                println!("downgrade-from {}..={}", d.from_min, d.from_max);
            }
            for c in &r.containers {
                let size = r.image(&c.image).map(|i| i.size).unwrap_or(0);
                println!("container {} {} image {} size {}", c.name, c.version, c.image, size);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("berth: {file}: release refused: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Read at most `max + 1` bytes, so an oversized file is seen as such.
#[cfg(feature = "host")]
fn read_bounded(path: &str, max: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut buf = Vec::new();
    std::fs::File::open(path)?.take(max as u64 + 1).read_to_end(&mut buf)?;
    Ok(buf)
}
