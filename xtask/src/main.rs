//! `cargo xtask`: build, boot and test berth. Installs what is missing itself.

#[cfg(test)]
mod agent_e2e;
mod artifacts;
mod bench;
mod bootdisk;
mod buildfiles;
mod bundle;
mod cli;
mod cpio;
mod crashreplay;
mod cutmodel;
mod fleet;
mod fuzz;
mod goosebit;
mod image;
mod kernel;
mod logreplay;
mod manifests;
mod notices;
mod oci;
mod release;
mod roundtrip;
mod slotbundle;
mod soak;
#[cfg(test)]
mod structure;
mod swu;
mod testca;
mod testrun;
mod tomlcheck;
mod tools;
mod trial;
mod trials;
mod uapi;
mod ubootdisk;
mod updates;
mod verity;
mod writeoracle;

use artifacts::{Artifacts, BootOpts, ReleaseData, Variant};
use berth::release::board::{Arch, CgroupMode, LandlockMode};
use clap::Parser;
use cli::{Args, Cli, Cmd};
use qemu_tests::machine::Machine;
use qemu_tests::scenarios::{BootSpec, Launch};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicU32, Ordering};

pub fn say(msg: &str) {
    eprintln!("xtask: {msg}");
}

/// Run a command; on failure the error names it and holds its stderr tail.
pub fn run_cmd(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = err.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect();
    Err(format!("{:?} failed ({}):\n{}", cmd, out.status, tail.join("\n")))
}

/// Where cargo puts build outputs: `CARGO_TARGET_DIR` when set, else `target/`.
pub fn cargo_target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => root.join(d),
        _ => root.join("target"),
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

fn main() -> ExitCode {
    // Help goes to stdout with exit 0, a bad command line to stderr with exit 2.
    let cli = Cli::parse();
    let root = workspace_root();
    let args = cli::args(&cli.command);
    let r = match &cli.command {
        Cmd::Build { .. } => build(&root, &args),
        Cmd::Run { .. } => run(&root, &args),
        Cmd::Test { .. } => test(&root, &args),
        Cmd::CheckBoard { .. } => check_boards(&args.rest),
        Cmd::Image { .. } => make_image(&args),
        Cmd::Fuzz { .. } => fuzz::run_args(&root, &args.rest),
        Cmd::Keygen { out } => release::keygen(out).map(|_| ()),
        Cmd::Keyid { .. } => release::keyid(&args.rest),
        Cmd::Release { .. } => make_release(&root, &args),
        Cmd::Bundle { .. } => make_bundle(&root, &args),
        Cmd::Push { .. } => push(&root, &args),
        Cmd::Inspect { .. } => inspect_image(&args),
        Cmd::SoakPowerCut { .. } => soak_power_cut(&root, &args),
        Cmd::CrashReplay { .. } => crash_replay(&root, &args),
        Cmd::Goosebit { port } => goosebit::serve(&root, *port),
        Cmd::Notices { check: true, .. } => notices::check(&root),
        Cmd::Notices { render_check: true, .. } => notices::render_check(&root),
        Cmd::Notices { .. } => notices::generate(&root),
        Cmd::Bench { quick, parts } => bench::run(&root, &bench::opts(*quick, parts)),
        Cmd::Completions { shell } => {
            cli::completions(*shell, &mut std::io::stdout());
            Ok(())
        }
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn arches_or_all(a: &Args) -> Vec<Arch> {
    if a.arches.is_empty() {
        Arch::ALL.to_vec()
    } else {
        a.arches.clone()
    }
}

fn targets(arches: &[Arch]) -> Vec<&'static str> {
    arches.iter().map(|a| a.rust_target()).collect()
}

fn check_boards(files: &[String]) -> Result<(), String> {
    if files.is_empty() {
        return Err("check-board needs at least one file".into());
    }
    for f in files {
        let b = artifacts::load_board(Path::new(f))?;
        println!("{f}: board {} ({}) ok", b.name, b.arch.name());
    }
    Ok(())
}

/// The one board a command works on: `--board FILE`, or `--arch A` (default aarch64).
fn one_board(root: &Path, a: &Args) -> Result<PathBuf, String> {
    match (&a.board, a.arches.as_slice()) {
        (Some(b), _) => Ok(b.clone()),
        (None, []) => Ok(artifacts::board_path(root, Arch::Aarch64)),
        (None, [arch]) => Ok(artifacts::board_path(root, *arch)),
        _ => Err("give one --arch or --board".into()),
    }
}

/// The one board of `a`, with its host tools, and the signing key (`--key`,
/// else the development key).
fn board_and_key(root: &Path, a: &Args) -> Result<(berth::release::board::Board, berth::release::SigningKey), String> {
    let board = artifacts::load_board(&one_board(root, a)?)?;
    tools::ensure_host_tools(root, &targets(&[board.arch]), false)?;
    let key_path = match &a.key {
        Some(k) => k.clone(),
        None => release::dev_key_dir(root)?.join(release::DEV_KEY),
    };
    Ok((board, release::load_signing_key(&key_path)?))
}

fn make_release(root: &Path, a: &Args) -> Result<(), String> {
    let Some(out) = &a.out else {
        return Err("usage: cargo xtask release [--arch A | --board FILE] [--manifests DIR] [--key PEM] --out FILE".into());
    };
    let (board, key) = board_and_key(root, a)?;
    let dir = a.manifests.clone().unwrap_or_else(|| root.join("manifests"));
    let work = out.with_extension("d");
    let (compiled, signed) = release::compile_and_sign(root, &dir, &board, &work, &key, None)?;
    std::fs::write(out, &signed).map_err(|e| format!("{}: {e}", out.display()))?;
    println!("release {} for {} -> {} ({} bytes)", compiled.release.version, board.name, out.display(), signed.len());
    for img in &compiled.images {
        println!("  image {} sha256:{} verity root {}", img.path.display(), verity::hex(&img.sha256), verity::hex(&img.verity.root));
    }
    Ok(())
}

fn make_bundle(root: &Path, a: &Args) -> Result<(), String> {
    let Some(out) = &a.out else {
        return Err(
            "usage: cargo xtask bundle [--arch A | --board FILE] [--manifests DIR] [--key PEM] [--version N] [--only-new-against RELEASE] [--swu] --out FILE"
                .into(),
        );
    };
    let (board, key) = board_and_key(root, a)?;
    let against = a.against.as_deref().map(bundle::read_release).transpose()?;
    let dir = a.manifests.clone().unwrap_or_else(|| root.join("manifests"));
    let work = out.with_extension("d");
    let (compiled, signed) = release::compile_and_sign(root, &dir, &board, &work, &key, a.version)?;
    let carried = bundle::to_carry(&compiled.images, against.as_ref());
    let mut size = bundle::write(out, &signed, &carried)?;
    if a.swu {
        let inner = std::fs::read(out).map_err(|e| format!("{}: {e}", out.display()))?;
        let swu = swu::wrap(&board.name, compiled.release.version, &inner)?;
        std::fs::write(out, &swu).map_err(|e| format!("{}: {e}", out.display()))?;
        size = swu.len() as u64;
    }
    println!(
        "bundle: release {} for {} with {} of {} images -> {} ({size} bytes)",
        compiled.release.version,
        board.name,
        carried.len(),
        compiled.images.len(),
        out.display()
    );
    Ok(())
}

fn print_image(img: &image::Image) {
    println!("image:       {}", img.path.display());
    println!("size:        {} bytes", img.size);
    println!("sha256:      {}", verity::hex(&img.sha256));
    println!("verity root: {}", verity::hex(&img.verity.root));
    println!("verity salt: {}", verity::hex(&img.verity.salt));
    println!("data blocks: {} (hash tree at byte {})", img.verity.data_blocks, img.verity.hash_offset);
    println!("dm table:    {}", verity::table_line(&img.verity, "<image>", "<image>"));
}

fn make_image(a: &Args) -> Result<(), String> {
    if let Some(src) = &a.oci {
        return import_oci(src, a);
    }
    let ([src], Some(out)) = (a.rest.as_slice(), &a.out) else {
        return Err("usage: cargo xtask image PATH --out FILE".into());
    };
    let src = Path::new(src);
    let img = if src.is_dir() { image::from_dir(src, out)? } else { image::from_binary(src, out)? };
    print_image(&img);
    Ok(())
}

/// `image --oci`: the image, and a manifest pre-filled from the config.
fn import_oci(src: &Path, a: &Args) -> Result<(), String> {
    if !a.rest.is_empty() || a.arches.len() > 1 {
        return Err("usage: cargo xtask image --oci PATH [--arch A] [--out FILE] [--manifest-out FILE.toml] [--name NAME]".into());
    }
    let name = a.name.clone().unwrap_or_else(|| oci::name_from(src));
    let out = a.out.clone().unwrap_or_else(|| PathBuf::from(format!("{name}.img")));
    let manifest_out = a.manifest_out.clone().unwrap_or_else(|| PathBuf::from(format!("{name}.toml")));
    let imported = oci::import(src, a.arches.first().copied(), &out)?;
    print_image(&imported.image);
    // The manifest's `[build] oci` is relative to the manifest's directory.
    let source = manifest_source(src, &manifest_out);
    let text = oci::manifest_text(&name, &source, &imported.config, &imported.notes);
    std::fs::write(&manifest_out, text).map_err(|e| format!("{}: {e}", manifest_out.display()))?;
    println!("manifest:    {}", manifest_out.display());
    for n in &imported.notes {
        say(&format!("note: {n}"));
    }
    Ok(())
}

/// `src` as the manifest at `manifest` should name it: relative to the
/// manifest's directory when both are under the current one, else absolute.
fn manifest_source(src: &Path, manifest: &Path) -> String {
    let cwd = std::env::current_dir().unwrap_or_default();
    let abs = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            cwd.join(p)
        }
    };
    let (src, dir) = (abs(src), abs(manifest).parent().map(Path::to_path_buf).unwrap_or_default());
    match src.strip_prefix(&dir) {
        Ok(rel) => rel.display().to_string(),
        Err(_) => src.display().to_string(),
    }
}

/// The same report as `berth inspect` (both print `berth::cli::imageinfo`'s lines).
fn inspect_image(a: &Args) -> Result<(), String> {
    let [path] = a.rest.as_slice() else {
        return Err("usage: cargo xtask inspect IMAGE [--salt HEX]".into());
    };
    let salt = match a.salt.as_deref() {
        None => None,
        Some(h) => Some(berth::cli::imageinfo::parse_hex32(h).ok_or_else(|| format!("--salt: `{h}` is not 64 hex digits"))?),
    };
    let (_, info) = image::inspect_full(Path::new(path), salt, None)?;
    println!("image:       {path}");
    for l in info.lines() {
        println!("{l}");
    }
    Ok(())
}

fn build(root: &Path, a: &Args) -> Result<(), String> {
    let arches = arches_or_all(a);
    tools::ensure_host_tools(root, &targets(&arches), false)?;
    for arch in arches {
        let art = artifacts::build(root, &artifacts::board_path(root, arch), &Variant::default())?;
        report_binary(&art)?;
    }
    Ok(())
}

fn report_binary(a: &Artifacts) -> Result<(), String> {
    let size = std::fs::metadata(&a.berth).map_err(|e| e.to_string())?.len();
    let out = Command::new("file").arg("-b").arg(&a.berth).output().map_err(|e| format!("file: {e}"))?;
    println!("{}: {} bytes ({:.0} KiB): {}", a.berth.display(), size, size as f64 / 1024.0, String::from_utf8_lossy(&out.stdout).trim());
    Ok(())
}

/// The host build of berth with its host-side tools (`berth verify`).
fn host_berth(root: &Path) -> Result<PathBuf, String> {
    say("building the host berth (verify)");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run_cmd(Command::new(cargo).current_dir(root).args(["build", "--quiet", "--package", "berth", "--features", "host", "--bin", "berth"]))?;
    Ok(cargo_target_dir(root).join("debug").join("berth"))
}

/// `file` must call the binary statically linked, stripped, for the right machine.
fn static_binary(path: &Path, arch: Arch) -> Result<(), String> {
    let out = Command::new("file").arg("-b").arg(path).output().map_err(|e| format!("file: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let machine = match arch {
        Arch::Aarch64 => "ARM aarch64",
        Arch::Armv7 => "32-bit LSB executable, ARM, EABI5",
        Arch::X86_64 => "x86-64",
    };
    for want in ["statically linked", "stripped", machine] {
        if !text.contains(want) || text.contains("not stripped") {
            return Err(format!("{}: `file` says {text:?}, expected it to mention {want:?}", path.display()));
        }
    }
    Ok(())
}

/// Strings only berth's test hooks put in the binary: the kernel command
/// line keys, the hooks' event names and the wedge command.
const HOOK_MARKS: [&str; 11] = [
    "berth.run=",
    "berth.cut=",
    "berth.hang=",
    "power.cut",
    "debug.wedge",
    "debug wedge",
    "berth.logwrites=",
    "logwrites.setup",
    "berth.fail=",
    "fault.armed",
    "fault.injected",
];

/// The shipped berth holds none of the test hooks' marks; the test build
/// holds every one (so the search itself is shown to find them).
fn no_test_hooks(shipped: &Path, hooked: &Path) -> Result<(), String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let (ship, hook) = (read(shipped)?, read(hooked)?);
    let has = |bytes: &[u8], mark: &str| bytes.windows(mark.len()).any(|w| w == mark.as_bytes());
    let found: Vec<&str> = HOOK_MARKS.iter().copied().filter(|m| has(&ship, m)).collect();
    if !found.is_empty() {
        return Err(format!("{}: the shipped binary holds test hooks: {found:?}", shipped.display()));
    }
    let missing: Vec<&str> = HOOK_MARKS.iter().copied().filter(|m| !has(&hook, m)).collect();
    if !missing.is_empty() {
        return Err(format!("{}: the test build lacks {missing:?}: the check would not see them", hooked.display()));
    }
    Ok(())
}

fn run(root: &Path, a: &Args) -> Result<(), String> {
    let board = one_board(root, a)?;
    let arch = artifacts::load_board(&board)?.arch;
    tools::ensure_host_tools(root, &targets(&[arch]), true)?;
    if let Some(dir) = &a.manifests {
        return run_trial(root, &board, dir, a.timeout.unwrap_or(60), a);
    }
    let console = format!("/dev/{}", artifacts::load_board(&board)?.console);
    let services = vec![console_service(&console)?, receive_service()?];
    let art = artifacts::build(root, &board, &Variant { services, data_mib: a.data_mib, ..Default::default() })?;
    let data = art.dir.join("data.img");
    if !data.is_file() {
        artifacts::fresh_data(&art, &data)?;
    }
    if let Some(mib) = a.data_mib {
        if artifacts::grow_data(&data, mib)? {
            say(&format!("grew the kept data partition {} to {mib} MiB", data.display()));
        }
    }
    if let Some(update) = &a.update {
        update_into_inbox(root, &art, &data, update, a.key.as_deref(), a.data_mib)?;
    }
    let http = free_http_port();
    let push = art.dir.join(PUSH_SOCKET);
    let _ = std::fs::remove_file(&push);
    let opts = BootOpts { interactive: true, allow_reboot: true, http_port: Some(http), push: Some(push), ..Default::default() };
    let (prog, args) = artifacts::qemu_args(&art, &data, &opts);
    println!("xtask: booting {} under QEMU ({}); the data partition persists in {}", art.board.name, prog, data.display());
    println!("xtask: the status page, once the demo is up (about a minute under emulation):");
    println!("xtask:     curl http://localhost:{http}/            (or /status.json; open it in a browser)");
    if http != artifacts::GUEST_HTTP_PORT {
        println!("xtask:     (port {} is taken on this machine, so the page is forwarded to {http})", artifacts::GUEST_HTTP_PORT);
    }
    println!("xtask: on the console, a berthctl prompt (type `help`; berth's event lines scroll by too):");
    println!("xtask:     status                 every container and host service: state, readiness, restarts, uptime");
    println!("xtask:     logs sensor -f         follow a container's output (Enter stops)");
    println!("xtask:     release                the running release, committed or on trial, rollbacks");
    let arch_flag = if a.board.is_some() { String::new() } else { format!(" --arch {}", art.board.arch.name()) };
    println!("xtask: to update the running system, from another terminal:");
    println!("xtask:     cargo xtask push{arch_flag} DIR|BUNDLE   (a manifest directory is bundled with the development key)");
    println!("xtask: to quit: press Ctrl-A then X (QEMU's escape); Ctrl-A then C opens QEMU's monitor");
    let status = Command::new(&prog).args(&args).status().map_err(|e| format!("{prog}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{prog} exited with {status}"))
    }
}

/// The host end of the push port under `cargo xtask run`, in the board's
/// output directory.
const PUSH_SOCKET: &str = "push.sock";

/// `berth receive` on the push port, a host service added by `run` only.
/// `berth time` as a host service (the `dhcp` variant: its SNTP server is
/// the harness, reached through QEMU's user network at 10.0.2.2).
fn time_service() -> Result<berth::release::board::Service, String> {
    toml::from_str("name = \"time\"\nargv = [\"/sbin/berth\", \"time\"]\nrestart = \"on-failure\"\n").map_err(|e| format!("time service: {e}"))
}

fn receive_service() -> Result<berth::release::board::Service, String> {
    let text = format!("name = \"receive\"\nargv = [\"/sbin/berth\", \"receive\", \"{}\"]\nrestart = \"always\"\n", artifacts::PUSH_PORT);
    toml::from_str(&text).map_err(|e| format!("receive service: {e}"))
}

/// `cargo xtask push DIR|BUNDLE`: send an update into the system that
/// `cargo xtask run` is running for the board, and print its answer.
fn push(root: &Path, a: &Args) -> Result<(), String> {
    let [src] = a.rest.as_slice() else {
        return Err("usage: cargo xtask push [--arch A | --board FILE] [--key PEM] DIR|BUNDLE".into());
    };
    // Not a build: the running machine's images must stay as they are.
    let board = artifacts::load_board(&one_board(root, a)?)?;
    let dir = root.join("target").join("berth").join(board.name.as_str());
    let bundle = bundle_of(root, &dir, &board, Path::new(src), a.key.as_deref())?;
    let sock = dir.join(PUSH_SOCKET);
    let answer =
        send_push(&sock, &bundle, false).map_err(|e| format!("{e} (is `cargo xtask run` running for {}? it listens on {})", board.name, sock.display()))?;
    println!("xtask: push: {answer}");
    if answer.starts_with("ok ") {
        say("berth takes it from the inbox within a few seconds: watch the console (update.staged, update.switch, release.trial)");
        Ok(())
    } else {
        Err(format!("the device refused the push: {answer}"))
    }
}

/// Send `bundle` over the push socket at `sock`; the device's answer line.
/// `garble` changes the frame's last byte (a test of the receiver).
pub fn send_push(sock: &Path, bundle: &Path, garble: bool) -> Result<String, String> {
    use sha2::{Digest, Sha256};
    use std::io::{BufRead, Write};
    let bytes = std::fs::read(bundle).map_err(|e| format!("{}: {e}", bundle.display()))?;
    let mut s = std::os::unix::net::UnixStream::connect(sock).map_err(|e| format!("{}: {e}", sock.display()))?;
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(120)));
    let mut frame = berth::host::push::header(bytes.len() as u64).to_vec();
    frame.extend_from_slice(&bytes);
    frame.extend_from_slice(&Sha256::digest(&bytes));
    if let (true, Some(b)) = (garble, frame.last_mut()) {
        *b ^= 1;
    }
    s.write_all(&frame).map_err(|e| format!("send: {e}"))?;
    let mut line = String::new();
    std::io::BufReader::new(&s).read_line(&mut line).map_err(|e| format!("no answer from the device: {e}"))?;
    if line.is_empty() {
        return Err("the device closed the port without an answer".into());
    }
    Ok(line.trim_end().to_string())
}

/// The demo's console prompt (`berth console`), a host service added by
/// `run` only: the shipped boards leave the console to the kernel and berth.
fn console_service(device: &str) -> Result<berth::release::board::Service, String> {
    let text = format!("name = \"console\"\nargv = [\"/sbin/berth\", \"console\", \"{device}\"]\nrestart = \"always\"\n");
    toml::from_str(&text).map_err(|e| format!("console service: {e}"))
}

/// 8080 on the host's loopback when it is free, else any free port.
fn free_http_port() -> u16 {
    let bind = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).ok().and_then(|l| l.local_addr().ok()).map(|a| a.port());
    bind(artifacts::GUEST_HTTP_PORT).or_else(|| bind(0)).unwrap_or(artifacts::GUEST_HTTP_PORT)
}

/// Boot a user's manifest directory and judge its containers (see `trial`).
fn run_trial(root: &Path, board: &Path, dir: &Path, seconds: u64, a: &Args) -> Result<(), String> {
    let absolute = |p: &Path| -> Result<PathBuf, String> {
        Ok(if p.is_absolute() { p.to_path_buf() } else { std::env::current_dir().map_err(|e| e.to_string())?.join(p) })
    };
    let update = a.update.as_deref().map(absolute).transpose()?;
    let update = update.as_deref().map(|source| trial::Update { source, key: a.key.as_deref() });
    trial::run(root, board, &absolute(dir)?, "-trial", seconds, &Default::default(), true, update.as_ref(), a.data_mib)
}

/// Put an update into the inbox of the data partition `data` before a boot:
/// `update` is a bundle, or a manifest directory bundled here (signed with
/// `key`, else the development key) for `art`'s board.
/// The data partition grows first to hold the bundle and its staged copy
/// ([`artifacts::data_need_mib`]), or to `data_mib` (which must be enough).
pub fn update_into_inbox(root: &Path, art: &artifacts::Artifacts, data: &Path, update: &Path, key: Option<&Path>, data_mib: Option<u64>) -> Result<(), String> {
    let bundle = bundle_of(root, &art.dir, &art.board, update, key)?;
    let size = std::fs::metadata(&bundle).map_err(|e| format!("{}: {e}", bundle.display()))?.len();
    let need = artifacts::data_need_mib(art.data_files, size, u64::from(art.board.log_quota_kib) << 10);
    let mib = match data_mib {
        Some(n) => artifacts::check_data_mib(n, need).map_err(|e| format!("--data-mib with the update {}: {e}", bundle.display()))?,
        None => need,
    };
    if artifacts::grow_data(data, mib)? {
        say(&format!("grew the data partition {} to {mib} MiB to hold the update and its staged copy", data.display()));
    }
    artifacts::put_in_inbox(data, &bundle)?;
    say(&format!("{} is in the inbox of {}: berth takes it a few seconds after boot", bundle.display(), data.display()));
    Ok(())
}

/// `update` as a bundle file: itself, or a manifest directory bundled here
/// (signed with `key`, else the development key) for `art`'s board.
fn bundle_of(root: &Path, dir: &Path, board: &berth::release::board::Board, update: &Path, key: Option<&Path>) -> Result<PathBuf, String> {
    Ok(if update.is_dir() {
        let key = release::load_signing_key(&match key {
            Some(k) => k.to_path_buf(),
            None => release::dev_key_dir(root)?.join(release::DEV_KEY),
        })?;
        let out = dir.join("run-update.bundle");
        let (compiled, signed) = release::compile_and_sign(root, update, board, &out.with_extension("d"), &key, None)?;
        bundle::write(&out, &signed, &compiled.images.iter().collect::<Vec<_>>())?;
        say(&format!("bundle of release {} from {}", compiled.release.version, update.display()));
        out
    } else if update.is_file() {
        update.to_path_buf()
    } else {
        return Err(format!("{}: neither a manifest directory nor a bundle file", update.display()));
    })
}

fn soak_power_cut(root: &Path, a: &Args) -> Result<(), String> {
    let arch = match a.arches.as_slice() {
        [] => Arch::X86_64,
        [one] => *one,
        _ => return Err("soak-power-cut takes one --arch".into()),
    };
    tools::ensure_host_tools(root, &targets(&[arch]), true)?;
    soak::run(root, arch, a.count, a.seed)
}

/// `cargo xtask crash-replay [--seed S] [LOG DATA]`: the `x86_64/crash-replay`
/// scenario alone; with a log and the data image a failed run left, only
/// the replay (no boot).
fn crash_replay(root: &Path, a: &Args) -> Result<(), String> {
    tools::ensure_host_tools(root, &targets(&[Arch::X86_64]), true)?;
    let board = artifacts::board_path(root, Arch::X86_64);
    let variant = variants(root).into_iter().find(|(n, _)| *n == "crash-replay").map(|(_, v)| v).ok_or("no crash-replay variant")?;
    let art = artifacts::build(root, &board, &variant)?;
    match a.rest.as_slice() {
        [] => {
            let launcher = Launcher { builds: vec![("crash-replay", art.clone())], release: demo_release(root)?, counter: AtomicU32::new(0) };
            crashreplay::run(&launcher, &art, a.seed)
        }
        [log, data] => crashreplay::recheck(&art, Path::new(log), Path::new(data), a.seed.unwrap_or(1)),
        _ => Err("crash-replay takes a log and a data image, or nothing".into()),
    }
}

/// Boots for the scenarios of one architecture: the board as shipped and its
/// test variants, keyed by `BootSpec::variant`.
struct Launcher {
    builds: Vec<(&'static str, Artifacts)>,
    /// Version and signing key id of the demo release on the data partition.
    release: (u64, String),
    counter: AtomicU32,
}

/// The test variants of every board. The scenarios read container output
/// on the console, so their boards mirror it there (`container_log_console`)
/// unless a variant says otherwise (`flood` keeps the shipped default, off).
fn variants(root: &Path) -> Vec<(&'static str, Variant)> {
    let mut list = test_variants(root);
    for (_, v) in &mut list {
        v.container_log_console.get_or_insert(true);
    }
    list
}

fn test_variants(root: &Path) -> Vec<(&'static str, Variant)> {
    vec![
        ("", Variant::default()),
        ("missing-module", Variant { suffix: "-missing-module".into(), extra_modules: vec![NO_SUCH_MODULE.into()], ..Default::default() }),
        ("cgroup-v1", Variant { suffix: "-cgroup-v1".into(), cgroup: Some(CgroupMode::V1), ..Default::default() }),
        ("probe", Variant { suffix: "-probe".into(), manifests: Some(root.join("qemu-tests/manifests/probe")), ..Default::default() }),
        (
            "probe-v1",
            Variant {
                suffix: "-probe-v1".into(),
                manifests: Some(root.join("qemu-tests/manifests/probe")),
                cgroup: Some(CgroupMode::V1),
                ..Default::default()
            },
        ),
        ("restarts", Variant { suffix: "-restarts".into(), manifests: Some(root.join("qemu-tests/manifests/restarts")), ..Default::default() }),
        ("readiness", Variant { suffix: "-readiness".into(), manifests: Some(root.join("qemu-tests/manifests/readiness")), ..Default::default() }),
        ("waiting", Variant { suffix: "-waiting".into(), manifests: Some(root.join("qemu-tests/manifests/waiting")), ..Default::default() }),
        ("limits", Variant { suffix: "-limits".into(), manifests: Some(root.join("qemu-tests/manifests/limits")), ..Default::default() }),
        ("budgets", Variant { suffix: "-budgets".into(), manifests: Some(root.join("qemu-tests/manifests/budgets")), ..Default::default() }),
        (
            "hang",
            Variant { suffix: "-hang".into(), manifests: Some(root.join("qemu-tests/manifests/hang")), cmdline: Some(HANG_HOOKS.into()), ..Default::default() },
        ),
        (
            "services",
            Variant {
                suffix: "-services".into(),
                manifests: Some(root.join("qemu-tests/manifests/services")),
                services: test_services(),
                ..Default::default()
            },
        ),
        (
            "push",
            Variant {
                suffix: "-push".into(),
                manifests: Some(root.join("qemu-tests/manifests/update/v1")),
                services: receive_service().into_iter().collect(),
                inbox: Some(berth::release::room::Limits { bundles: qemu_tests::inboxfull::PUSH_INBOX_BUNDLES, ..Default::default() }),
                ..Default::default()
            },
        ),
        (
            "dhcp",
            Variant {
                suffix: "-dhcp".into(),
                networks: Some(dhcp_networks()),
                services: time_service().into_iter().collect(),
                time: Some(berth::release::board::time::TimeSync { server: "10.0.2.2".try_into().unwrap_or_default(), port: 123, poll_s: 1024 }),
                qemu_args: ["-netdev", "user,id=net1,restrict=on", "-device", "virtio-net-pci,netdev=net1"].map(String::from).to_vec(),
                ..Default::default()
            },
        ),
        ("rss", Variant { suffix: "-rss".into(), manifests: Some(root.join("qemu-tests/manifests/rss")), ..Default::default() }),
        ("corrupt-image", Variant { suffix: "-corrupt-image".into(), release: ReleaseData::CorruptSensorImage, ..Default::default() }),
        ("no-release", Variant { suffix: "-no-release".into(), release: ReleaseData::Absent, ..Default::default() }),
        ("tampered-release", Variant { suffix: "-tampered-release".into(), release: ReleaseData::Tampered, ..Default::default() }),
        (
            // Every release corrupt, and a way in for a repair.
            "recovery",
            Variant {
                suffix: "-recovery".into(),
                release: ReleaseData::Tampered,
                manifests: Some(root.join("qemu-tests/manifests/update/v1")),
                services: receive_service().into_iter().collect(),
                ..Default::default()
            },
        ),
        ("no-landlock", Variant { suffix: "-no-landlock".into(), cmdline: Some(LSM_WITHOUT_LANDLOCK.into()), ..Default::default() }),
        (
            "landlock-optional",
            Variant {
                suffix: "-landlock-optional".into(),
                cmdline: Some(LSM_WITHOUT_LANDLOCK.into()),
                landlock: Some(LandlockMode::Optional),
                ..Default::default()
            },
        ),
        (
            "apparmor",
            Variant {
                suffix: "-apparmor".into(),
                manifests: Some(root.join("qemu-tests/manifests/probe")),
                apparmor: Some(berth::release::board::AppArmor {
                    profile: "berth-container".try_into().unwrap_or_default(),
                    policy: "/etc/berth/apparmor/berth-container.bin".try_into().unwrap_or_default(),
                }),
                ..Default::default()
            },
        ),
        ("release-trial-rollback", Variant { suffix: "-trial-rollback".into(), release: ReleaseData::InterruptedTrial, ..Default::default() }),
        ("console-stall", Variant { suffix: "-console-stall".into(), manifests: Some(root.join("qemu-tests/manifests/console-stall")), ..Default::default() }),
        (
            "flood",
            Variant {
                suffix: "-flood".into(),
                manifests: Some(root.join("qemu-tests/manifests/flood")),
                container_log_console: Some(false),
                ..Default::default()
            },
        ),
        (
            // The log store at its smallest quota, container output off
            // the console (it would be most of the console).
            "logsock",
            Variant {
                suffix: "-logsock".into(),
                manifests: Some(root.join("qemu-tests/manifests/logsock")),
                container_log_console: Some(false),
                log_quota_kib: Some(qemu_tests::logquota::QUOTA_KIB),
                ..Default::default()
            },
        ),
        ("controls", Variant { suffix: "-controls".into(), manifests: Some(root.join("qemu-tests/manifests/controls")), ..Default::default() }),
        (
            "check-window",
            Variant {
                suffix: "-check-window".into(),
                manifests: Some(root.join("qemu-tests/manifests/check-window")),
                cmdline: Some(CHECK_WINDOW_HOOK.into()),
                ..Default::default()
            },
        ),
        (
            "update",
            Variant {
                suffix: "-update".into(),
                manifests: Some(root.join("qemu-tests/manifests/update/v1")),
                updates: Some(root.join("qemu-tests/manifests/update")),
                ..Default::default()
            },
        ),
        (
            "crash-replay",
            Variant {
                suffix: "-crash-replay".into(),
                manifests: Some(root.join("qemu-tests/manifests/update/v1")),
                updates: Some(root.join("qemu-tests/manifests/update")),
                // berth's logwrites test hook: the data partition on a
                // log-writes target logging to the third disk.
                extra_modules: vec!["dm_log_writes".into()],
                cmdline: Some("berth.logwrites=/dev/vdc".into()),
                ..Default::default()
            },
        ),
        (
            "update-big",
            Variant {
                suffix: "-update-big".into(),
                manifests: Some(root.join("qemu-tests/manifests/update/v1")),
                big_update: Some(root.join("qemu-tests/manifests/update/v2-big")),
                ..Default::default()
            },
        ),
        // After `update`: `Launch::updates` answers with the first build
        // that carries bundles.
        (
            "volumes",
            Variant {
                suffix: "-volumes".into(),
                manifests: Some(root.join("qemu-tests/manifests/volumes/v1")),
                updates: Some(root.join("qemu-tests/manifests/volumes")),
                ..Default::default()
            },
        ),
        // The system slot updates (`slotupdate`): release 1 of the update
        // scenarios, the push port, room for a system payload's staging.
        (
            qemu_tests::slotupdate::VARIANT,
            Variant {
                suffix: "-slots".into(),
                manifests: Some(root.join("qemu-tests/manifests/update/v1")),
                services: receive_service().into_iter().collect(),
                data_mib: Some(160),
                ..Default::default()
            },
        ),
        // The fleet update scenarios (`fleet`): the update releases with
        // berth-agent beside them.
        (
            "agent",
            Variant {
                suffix: "-agent".into(),
                manifests: Some(root.join("qemu-tests/manifests/agent/v1")),
                updates: Some(root.join("qemu-tests/manifests/agent")),
                ..Default::default()
            },
        ),
    ]
}

/// The `hang` variant's test hook (a `test-hooks` build of berth): `hung`'s
/// start stops at its first mount step, `slowcheck`'s checks at `setns`.
const HANG_HOOKS: &str = "berth.hang=hung:mount,slowcheck.check:setns";

/// The `check-window` variant's test hook: the health commands of `window`
/// (root inside) and `window-user` (uid 1000) stop at their `signals` step,
/// past their credentials, before their exec.
const CHECK_WINDOW_HOOK: &str = "berth.hang=window.check:signals,window-user.check:signals";

/// The Debian kernels' default LSM order (`CONFIG_LSM`, the same on all
/// three flavours) without Landlock: a kernel booted with Landlock disabled.
const LSM_WITHOUT_LANDLOCK: &str = "lsm=lockdown,yama,loadpin,safesetid,integrity,apparmor,selinux,smack,tomoyo,bpf,ipe";

/// The `services` variant's extra host services: the test agent in its
/// service modes, one crash-looping, one running until stopped.
fn test_services() -> Vec<berth::release::board::Service> {
    let agent = artifacts::AGENT_PATH;
    let text = format!(
        r#"
[[service]]
name = "crashy"
argv = ["{agent}", "--service-exit", "3"]
restart = "on-failure"
backoff = {{ initial_ms = 100, factor = 2, cap_ms = 400, stable_ms = 10000, limit = 3 }}

[[service]]
name = "sleeper"
argv = ["{agent}", "--service-sleep"]
restart = "always"
"#
    );
    // A fixed text: failing to parse it is a bug in this function.
    let table: toml::Table = text.parse().expect("test services parse");
    let list = table.get("service").and_then(|v| v.as_array()).cloned().unwrap_or_default();
    list.into_iter().map(|v| v.try_into().expect("test service decodes")).collect()
}

/// The `dhcp` variant's networks: eth0 from QEMU's DHCP server, and a
/// static eth1 (a second, isolated card) beside it.
fn dhcp_networks() -> Vec<berth::release::board::Network> {
    let text = format!(
        r#"
[[network]]
interface = "eth0"
dhcp = true

[[network]]
interface = "eth1"
address = "{}/24"
"#,
        qemu_tests::scenarios::DHCP_STATIC_IP
    );
    // A fixed text: failing to parse it is a bug in this function.
    let table: toml::Table = text.parse().expect("dhcp networks parse");
    let list = table.get("network").and_then(|v| v.as_array()).cloned().unwrap_or_default();
    list.into_iter().map(|v| v.try_into().expect("dhcp network decodes")).collect()
}

/// The module name the missing-module scenario asks for.
const NO_SUCH_MODULE: &str = "berth_no_such_module";

impl Launch for Launcher {
    fn arch(&self) -> &str {
        self.builds.first().map(|(_, a)| a.board.arch.name()).unwrap_or("?")
    }

    fn missing_module(&self) -> &str {
        NO_SUCH_MODULE
    }

    fn release(&self) -> (u64, String) {
        self.release.clone()
    }

    fn push(&self, sock: &Path, bundle: &Path, garble: bool) -> Result<String, String> {
        send_push(sock, bundle, garble)
    }

    fn updates(&self) -> Result<qemu_tests::updates::UpdateInfo, String> {
        self.builds.iter().find_map(|(_, a)| a.updates.clone()).ok_or_else(|| "no build carries the update bundles".into())
    }

    fn containers(&self) -> Vec<String> {
        let demo = self.builds.iter().find(|(v, _)| v.is_empty()).map(|(_, a)| &a.release.containers);
        demo.map(|c| c.iter().map(|m| m.name.to_string()).collect()).unwrap_or_default()
    }

    fn boot(&self, spec: &BootSpec) -> Result<Machine, String> {
        self.boot_with(spec, None)
    }

    fn boot_disk(&self, spec: &BootSpec) -> Result<PathBuf, String> {
        let art = self.build_of(spec)?;
        let runs = art.dir.join("runs");
        std::fs::create_dir_all(&runs).map_err(|e| format!("{}: {e}", runs.display()))?;
        let n = self.counter.fetch_add(1, Ordering::SeqCst);
        let disk = runs.join(format!("{}-{n}.boot.img", spec.name));
        let opts = BootOpts { agent: true, cmdline: test_cmdline(spec), ..Default::default() };
        let cmdline = artifacts::kernel_cmdline(art, &opts);
        match art.board.arch {
            Arch::X86_64 => bootdisk::build(art, &cmdline, &disk)?,
            _ => ubootdisk::build(art, &cmdline, &disk)?,
        }
        Ok(disk)
    }

    fn boot_firmware(&self, spec: &BootSpec, disk: &Path) -> Result<Machine, String> {
        let arch = self.build_of(spec)?.board.arch;
        let fw = match arch {
            Arch::X86_64 => bootdisk::Firmware::for_disk(disk)?,
            _ => ubootdisk::firmware_for_disk(arch, disk)?,
        };
        self.boot_with(spec, Some(fw))
    }

    fn ubootenv(&self, disk: &Path) -> Result<Vec<(String, String)>, String> {
        ubootdisk::read_env(disk)
    }

    fn set_ubootenv(&self, disk: &Path, vars: &[(String, String)]) -> Result<(), String> {
        let arch = self.builds.first().map(|(_, a)| a.board.arch).ok_or("no build")?;
        ubootdisk::write_env(arch, disk, vars)
    }

    fn system_bundle(&self, spec: &BootSpec, payload: &str, version: u64) -> Result<PathBuf, String> {
        let art = self.build_of(spec)?;
        let payload = slotbundle::Payload::parse(payload)?;
        let out = art.dir.join("runs").join(format!("{}-{payload:?}-{version}.bundle", spec.name));
        slotbundle::build(&workspace_root(), art, &art.manifests, payload, version, &out)?;
        Ok(out)
    }

    fn grubenv(&self, disk: &Path) -> Result<Vec<u8>, String> {
        bootdisk::read_grubenv(disk)
    }

    fn set_grubenv(&self, disk: &Path, block: &[u8]) -> Result<(), String> {
        bootdisk::write_grubenv(disk, block)
    }

    fn alter_system(&self, disk: &Path, slot: &str) -> Result<u64, String> {
        bootdisk::alter_system(disk, slot)
    }
}

/// The kernel command line a test boot adds: the agent's mode, the spec's own.
fn test_cmdline(spec: &BootSpec) -> String {
    let mut cmdline = format!("berth.test={}", spec.mode);
    if !spec.cmdline.is_empty() {
        cmdline.push(' ');
        cmdline.push_str(&spec.cmdline);
    }
    cmdline
}

impl Launcher {
    fn build_of(&self, spec: &BootSpec) -> Result<&Artifacts, String> {
        self.builds.iter().find(|(v, _)| *v == spec.variant).map(|(_, a)| a).ok_or_else(|| format!("no build for variant `{}`", spec.variant))
    }

    /// Boot `spec`, the kernel directly or through `firmware`.
    fn boot_with(&self, spec: &BootSpec, firmware: Option<bootdisk::Firmware>) -> Result<Machine, String> {
        let art = self.build_of(spec)?;
        let n = self.counter.fetch_add(1, Ordering::SeqCst);
        let runs = art.dir.join("runs");
        std::fs::create_dir_all(&runs).map_err(|e| e.to_string())?;
        let data = match &spec.data {
            Some(d) => d.clone(),
            None => {
                let d = runs.join(format!("{}-{n}.img", spec.name));
                artifacts::fresh_data(art, &d)?;
                d
            }
        };
        let opts = BootOpts {
            interactive: false,
            allow_reboot: spec.allow_reboot,
            agent: true,
            cmdline: test_cmdline(spec),
            kvm: false,
            http_port: spec.http_port,
            guestfwd: None,
            push: spec.push.clone(),
            console_socket: spec.console_socket.then(|| runs.join(format!("{}-{n}.console.sock", spec.name))),
            direct_data: spec.direct_data,
            log_disk: spec.log_disk.clone(),
            firmware,
        };
        let (prog, args) = artifacts::qemu_args(art, &data, &opts);
        let mut m = Machine::spawn(&format!("{}/{}", self.arch(), spec.name), &prog, &args)?;
        if let Some(sock) = &opts.console_socket {
            m.attach_console(sock)?;
        }
        m.log_to(runs.join(format!("{}-{n}.console.log", spec.name)))?;
        m.set_data_image(data);
        Ok(m)
    }
}

/// The demo release's version and the development key's id.
fn demo_release(root: &Path) -> Result<(u64, String), String> {
    let key = release::load_signing_key(&release::dev_key_dir(root)?.join(release::DEV_KEY))?;
    let text = std::fs::read_to_string(root.join("manifests/release.toml")).map_err(|e| e.to_string())?;
    let table: toml::Table = text.parse().map_err(|e| format!("manifests/release.toml: {e}"))?;
    let version = table.get("version").and_then(|v| v.as_integer()).ok_or("manifests/release.toml: no version")?;
    Ok((version as u64, berth::release::key_id(&key.verifying_key()).to_string()))
}

/// Everything `test` runs, ended by one line with the count of cases
/// passed, failed and skipped (host unit tests and QEMU cases), also when
/// a step fails.
fn test(root: &Path, a: &Args) -> Result<(), String> {
    let mut tally = testrun::Tally::default();
    let r = test_steps(root, a, &mut tally);
    println!("{}", tally.line());
    r
}

fn test_steps(root: &Path, a: &Args, tally: &mut testrun::Tally) -> Result<(), String> {
    let arches = arches_or_all(a);
    // Scenarios whose name contains any of the filters (all without one).
    let filters: Vec<String> = if a.rest.is_empty() { vec![String::new()] } else { a.rest.clone() };
    tools::ensure_host_tools(root, &targets(&arches), true)?;
    if arches.contains(&Arch::X86_64) {
        // The x86_64 bootloader case boots through OVMF and GRUB.
        tools::ensure_bootloader_tools()?;
    }
    if arches.iter().any(|a| matches!(a, Arch::Aarch64 | Arch::Armv7)) {
        // The ARM bootloader case boots through U-Boot.
        tools::ensure_uboot_tools()?;
    }

    say("fetching the kernel's syscall headers for the three ABIs");
    for h in uapi::ensure_all(root)? {
        say(&format!("{}: kernel headers {}", h.arch(), h.version));
    }
    say("checking formatting and clippy (warnings denied)");
    tools::ensure_lint_components(root)?;
    testrun::lint(root)?;
    say("running the host unit tests (root tests included)");
    testrun::host_unit_tests(root, tally)?;
    // The third-party notices must match the dependency tree.
    notices::check(root)?;

    let host_berth = host_berth(root)?;
    let mut cases = Vec::new();
    for arch in arches {
        let board = artifacts::board_path(root, arch);
        let mut builds = Vec::new();
        for (name, v) in variants(root) {
            builds.push((name, artifacts::build(root, &board, &v)?));
        }
        if let Some((_, a)) = builds.first() {
            let (path, arch) = (a.berth.clone(), a.board.arch);
            cases.push(qemu_tests::scenario::case(format!("{}/static-binary", arch.name()), move || static_binary(&path, arch)));
            let (shipped, hooked) = (a.berth.clone(), a.berth_hooked.clone());
            cases.push(qemu_tests::scenario::case(format!("{}/no-test-hooks", arch.name()), move || no_test_hooks(&shipped, &hooked)));
            let (a, host_berth, root) = (a.clone(), host_berth.clone(), root.to_path_buf());
            cases.push(qemu_tests::scenario::case(format!("{}/release-round-trip", arch.name()), move || roundtrip::release(&root, &a, &host_berth)));
        }
        if let Some((_, a)) = builds.first() {
            let name = format!("{}/inspect-round-trip", arch.name());
            if filters.iter().any(|f| name.contains(f.as_str())) {
                let (a, host_berth) = (a.clone(), host_berth.clone());
                cases.push(qemu_tests::scenario::case(name, move || roundtrip::inspect(&a, &host_berth)));
            }
        }
        let name = format!("{}/run-manifests-oci", arch.name());
        if arch == Arch::X86_64 && filters.iter().any(|f| name.contains(f.as_str())) {
            let (root, board) = (root.to_path_buf(), board.clone());
            cases.push(qemu_tests::scenario::case(name, move || trial::user_dir_test(&root, &board)));
        }
        let name = format!("{}/run-manifests-update", arch.name());
        if arch == Arch::X86_64 && filters.iter().any(|f| name.contains(f.as_str())) {
            let (root, board) = (root.to_path_buf(), board.clone());
            cases.push(qemu_tests::scenario::case(name, move || trial::user_update_test(&root, &board)));
        }
        cases.extend(fleet::cases(root, &builds, &filters));
        let replay = builds.iter().find(|(v, _)| *v == "crash-replay").map(|(_, a)| a.clone());
        let launcher = Launcher { builds, release: demo_release(root)?, counter: AtomicU32::new(0) };
        let launcher: std::sync::Arc<dyn Launch> = std::sync::Arc::new(launcher);
        let name = format!("{}/crash-replay", arch.name());
        if let (Arch::X86_64, Some(art)) = (arch, replay) {
            if filters.iter().any(|f| name.contains(f.as_str())) {
                let l = std::sync::Arc::clone(&launcher);
                cases.push(qemu_tests::scenario::case(name, move || crashreplay::run(l.as_ref(), &art, None)));
            }
        }
        for (name, case) in qemu_tests::scenarios::all(launcher) {
            if filters.iter().any(|f| name.contains(f.as_str())) {
                cases.push((name, case));
            }
        }
    }
    // The benchmark, shortened so that it cannot rot, is the case `bench`.
    let with_bench = filters.iter().any(|f| "bench".contains(f.as_str()));
    if cases.is_empty() && !with_bench {
        return Err(format!("no QEMU scenario matches {filters:?}"));
    }
    if !cases.is_empty() {
        say(&format!("running {} QEMU scenarios", cases.len()));
        let outcomes = qemu_tests::scenario::run_all(cases, 2);
        tally.add_qemu(&outcomes);
        if !outcomes.iter().all(|o| o.passed) {
            return Err("QEMU scenarios failed".into());
        }
    }
    if with_bench {
        say("running cargo xtask bench --quick");
        bench::run(root, &bench::opts(true, &[]))?;
    }
    Ok(())
}
