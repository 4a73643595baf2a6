//! The `berth` binary: PID 1 on the device; a checking tool elsewhere.

use std::process::ExitCode;

fn main() -> ExitCode {
    if nix::unistd::getpid().as_raw() == 1 {
        berth::boot::pid1();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    cli(&args)
}

const USAGE: &str = "usage: berth --version | berth check-board FILE.toml (host build)
berth runs as PID 1; started otherwise it only offers these checks.";

fn cli(args: &[String]) -> ExitCode {
    match args.first().map(String::as_str) {
        Some("--version") => {
            println!("berth {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        #[cfg(feature = "host")]
        Some("check-board") => check_board(args.get(1..).unwrap_or_default()),
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
