//! `berth-agent`: berth's fleet update agent, a container app (not part of
//! PID 1) that speaks Eclipse hawkBit's Direct Device Integration (DDI)
//! API. It polls the server, sends the config data it asks for (board,
//! berth version, running release), downloads an assigned deployment's
//! `.swu` or `.bundle` with resume and a checked hash, drops the bundle
//! into berth's inbox, and reports berth's verdict (read from the
//! read-only status view) as DDI feedback. It cannot start, stop or commit
//! anything: berth verifies every bundle as from any other source.
//!
//! Usage: `berth-agent CONFIG [--once] [--self-check]`. `--once` runs
//! until nothing is pending and the server offers nothing, then exits (for
//! tests and one-shot use). `--self-check` first logs what the agent's
//! confinement lets it write ([`selfcheck`]). Exit status: 0 done, 1 a
//! run-time error (`--once`), 2 a bad command line or configuration.

mod agent;
mod config;
mod ddi;
mod download;
mod drop;
mod http;
mod selfcheck;
mod state;
mod status;
mod swu;

/// One line on stderr, which berth collects as the container's log.
pub fn log(msg: &str) {
    eprintln!("berth-agent: {msg}");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flags = args.get(1..).unwrap_or_default();
    let known = flags.iter().all(|f| f == "--once" || f == "--self-check");
    let (Some(path), true) = (args.first(), known) else {
        log("usage: berth-agent CONFIG [--once] [--self-check]");
        std::process::exit(2);
    };
    let once = flags.iter().any(|f| f == "--once");
    let cfg = match config::load(std::path::Path::new(path)) {
        Ok(c) => c,
        Err(e) => {
            log(&e);
            std::process::exit(2);
        }
    };
    if flags.iter().any(|f| f == "--self-check") {
        for line in selfcheck::run(&cfg) {
            log(&format!("self-check: {line}"));
        }
    }
    log(&format!("polling {}", cfg.poll_url()));
    if let Err(e) = agent::Agent::new(cfg).run(once) {
        log(&e);
        std::process::exit(1);
    }
}
