//! The `berth` binary: PID 1 on the device; a checking tool elsewhere.
//!
//! It must not hold what a command does: it parses its arguments, calls the
//! library module that owns the work and prints the result; as PID 1 it goes
//! straight to `berth::boot::pid1`.

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
    // The guest benchmark's driver (host build only) is berth under that name.
    #[cfg(feature = "host")]
    if argv0.rsplit('/').next() == Some(berth::cli::benchguest::NAME) {
        return match berth::cli::benchguest::run() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("berth: {}: {e}", berth::cli::benchguest::NAME);
                ExitCode::FAILURE
            }
        };
    }
    if args.first().map(String::as_str) == Some("ctl") {
        return ctl(args.get(1..).unwrap_or_default());
    }
    cli(&args)
}

/// The control CLI ([`berth::cli::ctlclient`]): requests over the root-only
/// control socket.
fn ctl(args: &[String]) -> ExitCode {
    ExitCode::from(berth::cli::ctlclient::run(args, berth::supervise::control::SOCKET))
}

const USAGE: &str = "usage: berth --version
       berth net                                                            (on the device: the board's [[network]] set-up, then DHCP leases)
       berth time                                                           (on the device: the clock from the board's [time] SNTP server)
       berth console DEVICE                                                 (on the device: a berthctl prompt on a serial console)
       berth receive PORT                                                   (on the device: update bundles pushed over the virtio port named PORT go into the inbox)
       berth stage                                                          (on the device, started by berth itself: stages the update bundle on its standard input)
       berth keyid FILE                                                     the id of the Ed25519 key in FILE: a PEM public key,
                                                                            64 hex digits, or (host build) a PKCS#8 PEM private key
       berth check-board FILE.toml                                          (host build)
       berth verify --keys DIR FILE [--board NAME] [--stored-version N]     (host build)
       berth inspect IMAGE [--salt HEX] [--root HEX]                        (host build)
           an image's hash, size, squashfs, verity salt and root; checks its
           hash tree as the device would (with the release's salt and root
           when given)
           FILE: a signed release, or an update bundle (then --stored-version
           is the version installed on the device)
berth runs as PID 1; started otherwise it only offers these checks.";

/// `berth receive PORT`, within the board's inbox limits.
fn receive(port: &str) -> Result<(), String> {
    let board = berth::boot::load_board()?;
    berth::host::push::run(port, &board.inbox)
}

fn cli(args: &[String]) -> ExitCode {
    match args.first().map(String::as_str) {
        Some("--version") => {
            println!("berth {}", berth::common::names::VERSION);
            ExitCode::SUCCESS
        }
        Some("net") if args.len() == 1 => net(),
        Some("time") if args.len() == 1 => time(),
        Some(berth::release::stager::ARG) => berth::release::stager::run(args.get(1..).unwrap_or_default()),
        Some("receive") if args.len() == 2 => match receive(args.get(1).map(String::as_str).unwrap_or("")) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("berth receive: {e}");
                ExitCode::FAILURE
            }
        },
        Some("console") if args.len() == 2 => match berth::host::console::run(args.get(1).map(String::as_str).unwrap_or("")) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("berth console: {e}");
                ExitCode::FAILURE
            }
        },
        Some("keyid") if args.len() == 2 => match berth::release::file_key_id(std::path::Path::new(args.get(1).map(String::as_str).unwrap_or(""))) {
            Ok(id) => {
                println!("{id}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("berth keyid: {e}");
                ExitCode::FAILURE
            }
        },
        #[cfg(feature = "host")]
        Some("check-board") => check_board(args.get(1..).unwrap_or_default()),
        #[cfg(feature = "host")]
        Some("verify") => verify(args.get(1..).unwrap_or_default()),
        #[cfg(feature = "host")]
        Some("bench-start") => match berth::cli::bench::serve(args.get(1..).unwrap_or_default()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("berth: bench-start: {e}");
                ExitCode::FAILURE
            }
        },
        #[cfg(feature = "host")]
        Some("inspect") => inspect(args.get(1..).unwrap_or_default()),
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// `berth time`: set the clock from the board's `[time]` SNTP server (run
/// by berth as a host service), for ever; exit 1 naming what is wrong when
/// the board has no `[time]` table or it is unusable.
fn time() -> ExitCode {
    let board = match berth::boot::load_board() {
        Ok(b) => b,
        Err(e) => {
            berth::common::log::Event::error("time.failed").kv("reason", &e).emit();
            return ExitCode::FAILURE;
        }
    };
    let Some(t) = board.time.as_ref() else {
        berth::common::log::Event::error("time.failed").kv("reason", "the board has no [time] table").emit();
        return ExitCode::FAILURE;
    };
    match berth::host::time::run(t) {
        Ok(never) => match never {},
        Err(e) => {
            berth::common::log::Event::error("time.failed").kv("reason", &e).emit();
            ExitCode::FAILURE
        }
    }
}

/// `berth net`: apply the board's `[[network]]` entries (run by berth as a
/// host service). One event line per step on stdout (berth logs a service's
/// output, so no /dev/kmsg here: that would record each line twice); exit 1
/// naming the failed step. With DHCP entries it then keeps running, holding
/// and renewing their leases.
fn net() -> ExitCode {
    let board = match berth::boot::load_board() {
        Ok(b) => b,
        Err(e) => {
            berth::common::log::Event::error("net.failed").kv("reason", &e).emit();
            return ExitCode::FAILURE;
        }
    };
    match berth::host::net::run(&board.networks) {
        Ok(steps) => {
            let dhcp: Vec<&str> = board.networks.iter().filter(|n| n.dhcp).map(|n| n.interface.as_str()).collect();
            berth::common::log::Event::info("net.done").kv("interfaces", board.networks.len()).kv("steps", steps).kv("dhcp", dhcp.len()).emit();
            if dhcp.is_empty() {
                return ExitCode::SUCCESS;
            }
            match berth::host::dhcp::run::run(&dhcp) {
                Ok(never) => match never {},
                Err(e) => {
                    berth::common::log::Event::error("net.failed").kv("reason", &e).emit();
                    ExitCode::FAILURE
                }
            }
        }
        Err(e) => {
            berth::common::log::Event::error("net.failed").kv("reason", &e).emit();
            ExitCode::FAILURE
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
    match berth::release::board::Board::from_toml(&text) {
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

/// `berth inspect IMAGE [--salt HEX] [--root HEX]`: print an image's
/// report, or the precise reason its tree does not hold.
#[cfg(feature = "host")]
fn inspect(args: &[String]) -> ExitCode {
    let (mut file, mut salt, mut root) = (None, None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let slot = match a.as_str() {
            "--salt" => &mut salt,
            "--root" => &mut root,
            _ if file.is_none() && !a.starts_with("--") => {
                file = Some(a);
                continue;
            }
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        };
        match it.next().and_then(|h| berth::cli::imageinfo::parse_hex32(h)) {
            Some(v) => *slot = Some(v),
            None => {
                eprintln!("berth: {a} needs 64 hex digits");
                return ExitCode::from(2);
            }
        }
    }
    let Some(file) = file else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let result = std::fs::File::open(file)
        .map_err(|e| berth::cli::imageinfo::InspectError::Read(e.kind()))
        .and_then(|mut f| berth::cli::imageinfo::inspect(&mut f, salt, root));
    match result {
        Ok(info) => {
            println!("image:       {file}");
            for l in info.lines() {
                println!("{l}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("berth: {file}: image refused: {e}");
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
    // read_bounded reads one byte past its limit: the four magic bytes.
    let is_bundle = read_bounded(file, 3).is_ok_and(|head| head == release::bundle::MAGIC);
    if is_bundle {
        return verify_bundle(file, &keys, board.map(String::as_str), stored);
    }
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
            println!("release {file}: ok");
            print_release(&v);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("berth: {file}: release refused: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Check an update bundle completely (release, table, every image's hash and
/// dm-verity tree) and print it, or print the error the device would log.
#[cfg(feature = "host")]
fn verify_bundle(file: &str, keys: &berth::release::TrustedKeys, board: Option<&str>, installed: Option<u64>) -> ExitCode {
    let f = match std::fs::File::open(file) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("berth: {file}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match berth::release::bundle::check_file(&f, keys, board, installed) {
        Ok(c) => {
            println!("bundle {file}: ok");
            print_release(&c.verified);
            for e in &c.header.images {
                println!("carries image {} size {}", e.sha256, e.size);
            }
            for i in c.not_carried() {
                println!("needs image {} size {} on the device", i.sha256, i.size);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("berth: {file}: bundle refused: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(feature = "host")]
fn print_release(v: &berth::release::Verified) {
    let r = &v.release;
    println!("version {}", r.version);
    println!("board {}", r.board);
    println!("key {}", v.key_id);
    if let Some(d) = r.downgrade {
        println!("downgrade-below-floor {}", d.floor);
    }
    for c in &r.containers {
        let size = r.image(&c.image).map(|i| i.size).unwrap_or(0);
        println!("container {} {} image {} size {}", c.name, c.version, c.image, size);
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
