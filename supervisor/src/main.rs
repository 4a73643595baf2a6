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

const CTL_USAGE: &str = "usage: berthctl status | release [--json] | start NAME | stop NAME | restart NAME
       berthctl update [--wait] BUNDLE  (stage a bundle on the device, switch to it, on trial until committed;
                                        answers once the staging started; --wait: until it ended, exit
                                        0 committed, 3 refused, 4 rolled back, 5 rebooting into it, 1 other)
       berthctl commit | rollback      (end the trial of the release on trial now)
       berthctl logs NAME [-f] [-n N]  (a container's output; -f follows)
       berthctl events [-f] [-n N]     (berth's own event lines)";
/// Only in test builds (the `test-hooks` feature).
#[cfg(feature = "test-hooks")]
const CTL_USAGE_HOOKS: &str = "       berthctl debug wedge SECONDS   (test trigger: block berth's loop; the hardware watchdog resets the board)";

/// The control CLI: one request over the root-only control socket.
fn ctl(args: &[String]) -> ExitCode {
    use berth::control::{Command, Response};
    let name = |i: usize| -> Option<berth::control::Name> {
        let n = args.get(i)?;
        let mut s = heapless::String::new();
        s.push_str(n).ok()?;
        Some(s)
    };
    match args.first().map(String::as_str) {
        Some("logs") => return ctl_logs(args.get(1).map(String::as_str), args.get(2..).unwrap_or_default()),
        Some("events") => return ctl_logs(Some(berth::logstore::BERTH), args.get(1..).unwrap_or_default()),
        Some("update") => {
            let code = match (args.get(1).map(String::as_str), args.get(2), args.len()) {
                (Some("--wait"), Some(path), 3) => berth::ctlclient::update(path, true, berth::control::SOCKET),
                (Some(path), None, 2) if !path.starts_with('-') => berth::ctlclient::update(path, false, berth::control::SOCKET),
                _ => {
                    eprintln!("{CTL_USAGE}");
                    berth::outcome::exit::USAGE
                }
            };
            return ExitCode::from(code);
        }
        _ => {}
    }
    let json = args.len() == 2 && args.first().map(String::as_str) == Some("release") && args.get(1).map(String::as_str) == Some("--json");
    let cmd = match (args.first().map(String::as_str), args.len()) {
        (Some("status"), 1) => Some(Command::Status),
        (Some("release"), 1) => Some(Command::Release),
        (Some("release"), 2) if json => Some(Command::Release),
        (Some("commit"), 1) => Some(Command::Commit),
        (Some("rollback"), 1) => Some(Command::Rollback),
        (Some("start"), 2) => name(1).map(Command::Start),
        (Some("stop"), 2) => name(1).map(Command::Stop),
        (Some("restart"), 2) => name(1).map(Command::Restart),
        #[cfg(feature = "test-hooks")]
        (Some("debug"), 3) if args.get(1).map(String::as_str) == Some("wedge") => args.get(2).and_then(|s| s.parse().ok()).map(Command::Wedge),
        _ => None,
    };
    let Some(cmd) = cmd else {
        eprintln!("{CTL_USAGE}");
        #[cfg(feature = "test-hooks")]
        eprintln!("{CTL_USAGE_HOOKS}");
        return ExitCode::from(2);
    };
    match berth::ctlsock::call(berth::control::SOCKET, cmd) {
        Ok(Response::Status(reply)) => {
            let list = &reply.entries;
            println!(
                "{:<20} {:<9} {:<8} {:<5} {:>6} {:>10} {:>8} {:>9}  {:<12} NOTE",
                "NAME", "KIND", "STATE", "READY", "PID", "UPTIME", "RESTARTS", "MEMORY", "LAST EXIT"
            );
            for c in list.iter() {
                println!(
                    "{:<20} {:<9} {:<8} {:<5} {:>6} {:>9.1}s {:>8} {:>8}K  {:<12} {}",
                    c.name,
                    c.kind,
                    c.state,
                    if c.ready { "yes" } else { "no" },
                    if c.pid > 0 { c.pid.to_string() } else { "-".into() },
                    c.uptime_ms as f64 / 1e3,
                    c.restarts,
                    if c.memory > 0 { (c.memory / 1024).to_string() } else { "-".into() },
                    c.last_exit,
                    // A container's STATUS= text: berth keeps no active
                    // characters in it; a berth of another build may have.
                    berth::log::escaped(&c.note)
                );
                let l = &c.layers;
                println!(
                    "  layers: userns={} seccomp={} caps={} device_rules={} landlock={} apparmor={}",
                    l.uid_base,
                    l.seccomp,
                    l.cap_names(),
                    l.device_rules,
                    l.landlock(),
                    l.apparmor
                );
            }
            let st = &reply.stalls;
            let ms = |us: u64| us as f64 / 1e3;
            println!(
                "loop: longest handler {:.1} ms ({}), watchdog pet late by {:.1} ms at most; recently (10 s or more): {:.1} ms ({}), pet late {:.1} ms",
                ms(st.handler_us),
                st.handler,
                ms(st.pet_late_us),
                ms(st.recent_handler_us),
                st.recent_handler,
                ms(st.recent_pet_late_us)
            );
            if !reply.staging.is_empty() {
                println!("{}", reply.staging);
            }
            ExitCode::SUCCESS
        }
        Ok(Response::Release(r)) if json => {
            println!("{}", berth::ctlclient::release_json(&r));
            ExitCode::SUCCESS
        }
        Ok(Response::Release(r)) => {
            if r.phase == "recovery" {
                println!("no release runs (recovery): {}", r.recovery);
            } else {
                println!("release {} signed by key {}", r.version, r.key_id);
            }
            if !r.phase.is_empty() {
                match r.previous {
                    Some(p) => println!("state {} (previous release {p})", r.phase),
                    None => println!("state {}", r.phase),
                }
            }
            for rb in r.rollbacks.iter() {
                println!("{rb}");
            }
            if !r.staging.is_empty() {
                println!("{}", r.staging);
            }
            for q in r.quarantined.iter() {
                println!("{q}");
            }
            if let Some(u) = r.updates.last() {
                println!("{}", u.line());
            }
            ExitCode::SUCCESS
        }
        Ok(Response::Message(m)) => {
            println!("{m}");
            ExitCode::SUCCESS
        }
        Ok(Response::Done) => ExitCode::SUCCESS,
        Ok(Response::Logs { .. } | Response::Update(_)) => {
            eprintln!("berthctl: unexpected reply");
            ExitCode::FAILURE
        }
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

/// `berthctl logs NAME` / `berthctl events`: the last lines, then (with
/// `-f`) new ones as they come, asked for every 300 ms.
fn ctl_logs(stream: Option<&str>, opts: &[String]) -> ExitCode {
    use berth::control::{Command, Response, LOG_LINES_MAX};
    let mut follow = false;
    let mut n: u16 = 20;
    let mut it = opts.iter();
    while let Some(o) = it.next() {
        match o.as_str() {
            "-f" => follow = true,
            "-n" => match it.next().and_then(|v| v.parse().ok()) {
                Some(v) => n = v,
                None => {
                    eprintln!("berthctl: -n needs a number\n{CTL_USAGE}");
                    return ExitCode::from(2);
                }
            },
            other => {
                eprintln!("berthctl: unknown option {other}\n{CTL_USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let mut name = heapless::String::new();
    let Some(Ok(())) = stream.map(|s| name.push_str(s)) else {
        eprintln!("{CTL_USAGE}");
        return ExitCode::from(2);
    };
    let mut after = None;
    let mut max = n;
    let mut told_dropped = 0;
    loop {
        let cmd = Command::Logs { name: name.clone(), after, max };
        match berth::ctlsock::call(berth::control::SOCKET, cmd) {
            Ok(Response::Logs { lines, next, dropped }) => {
                for l in lines.iter() {
                    // Stored lines are escaped already; a berth of another
                    // build may not have done it.
                    println!("{}.{:03} {}", l.t_ms / 1000, l.t_ms % 1000, berth::log::escaped(l.text.trim_end()));
                }
                if dropped > told_dropped {
                    eprintln!("berthctl: {} lines of {name} could not be kept (log quota or errors)", dropped - told_dropped);
                    told_dropped = dropped;
                }
                // A full reply may have more behind it: ask again at once.
                let full = lines.len() == usize::from(max) && after.is_some();
                after = Some(next);
                max = LOG_LINES_MAX as u16;
                if !follow {
                    return ExitCode::SUCCESS;
                }
                if !full {
                    std::thread::sleep(std::time::Duration::from_millis(300));
                }
            }
            Ok(Response::Error(e)) => {
                eprintln!("berthctl: {e}");
                return ExitCode::FAILURE;
            }
            Ok(_) => {
                eprintln!("berthctl: unexpected reply");
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("berthctl: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
}

const USAGE: &str = "usage: berth --version
       berth net                                                            (on the device: the board's [[network]] set-up, then DHCP leases)
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
    berth::push::run(port, &board.inbox)
}

fn cli(args: &[String]) -> ExitCode {
    match args.first().map(String::as_str) {
        Some("--version") => {
            println!("berth {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some("net") if args.len() == 1 => net(),
        Some(berth::stager::ARG) => berth::stager::run(args.get(1..).unwrap_or_default()),
        Some("receive") if args.len() == 2 => match receive(args.get(1).map(String::as_str).unwrap_or("")) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("berth receive: {e}");
                ExitCode::FAILURE
            }
        },
        Some("console") if args.len() == 2 => match berth::console::run(args.get(1).map(String::as_str).unwrap_or("")) {
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
        Some("bench-start") => match berth::bench::serve(args.get(1..).unwrap_or_default()) {
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

/// `berth net`: apply the board's `[[network]]` entries (run by berth as a
/// host service). One event line per step on stdout (berth logs a service's
/// output, so no /dev/kmsg here: that would record each line twice); exit 1
/// naming the failed step. With DHCP entries it then keeps running, holding
/// and renewing their leases.
fn net() -> ExitCode {
    let board = match berth::boot::load_board() {
        Ok(b) => b,
        Err(e) => {
            berth::log::Event::error("net.failed").kv("reason", &e).emit();
            return ExitCode::FAILURE;
        }
    };
    match berth::net::run(&board.networks) {
        Ok(steps) => {
            let dhcp: Vec<&str> = board.networks.iter().filter(|n| n.dhcp).map(|n| n.interface.as_str()).collect();
            berth::log::Event::info("net.done").kv("interfaces", board.networks.len()).kv("steps", steps).kv("dhcp", dhcp.len()).emit();
            if dhcp.is_empty() {
                return ExitCode::SUCCESS;
            }
            match berth::dhcp::run::run(&dhcp) {
                Ok(never) => match never {},
                Err(e) => {
                    berth::log::Event::error("net.failed").kv("reason", &e).emit();
                    ExitCode::FAILURE
                }
            }
        }
        Err(e) => {
            berth::log::Event::error("net.failed").kv("reason", &e).emit();
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
        match it.next().and_then(|h| berth::imageinfo::parse_hex32(h)) {
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
    let result =
        std::fs::File::open(file).map_err(|e| berth::imageinfo::InspectError::Read(e.kind())).and_then(|mut f| berth::imageinfo::inspect(&mut f, salt, root));
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
