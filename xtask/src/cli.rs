//! The command line of `cargo xtask`: every command with exactly the flags
//! and positional arguments it takes, their help (`-h`/`--help`, also per
//! command) and the shell completions, all from one clap definition. The
//! values checked here (architectures, numbers, ranges) never reach the
//! commands unchecked; [`args`] turns a parsed command into the [`Args`]
//! the command bodies in `main.rs` read.

use crate::artifacts;
use berth::release::board::Arch;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{CommandFactory, Parser, Subcommand};
use clap_complete::Shell;
use std::path::PathBuf;

/// Build, boot and test berth. Installs what is missing itself.
#[derive(Debug, Parser)]
#[command(name = "xtask", bin_name = "cargo xtask", after_help = "architectures: aarch64, armv7, x86_64")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Cmd,
}

/// `--arch A`, any number of times (none: all three).
#[derive(Debug, clap::Args)]
pub struct Arches {
    /// An architecture to work on (repeatable; default: all three)
    #[arg(long = "arch", value_name = "A", value_parser = arch())]
    pub arches: Vec<Arch>,
}

/// The one board a command works on: `--arch A` or `--board FILE`.
#[derive(Debug, clap::Args)]
pub struct OneBoard {
    /// The architecture's shipped board (default aarch64)
    #[arg(long, value_name = "A", value_parser = arch(), conflicts_with = "board")]
    pub arch: Option<Arch>,
    /// A board config file instead of a shipped board
    #[arg(long, value_name = "FILE")]
    pub board: Option<PathBuf>,
}

/// What a release or a bundle is built from, and signed with.
#[derive(Debug, clap::Args)]
pub struct Source {
    /// The manifest directory (default manifests/)
    #[arg(long, value_name = "DIR")]
    pub manifests: Option<PathBuf>,
    /// The signing key (default: the development key)
    #[arg(long, value_name = "PEM")]
    pub key: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Build berth and the boot artifacts (default: all three architectures)
    Build {
        #[command(flatten)]
        arches: Arches,
    },
    /// Boot the demo system under QEMU (default aarch64), or your own manifests
    ///
    /// Without --manifests: the demo system; its status page is forwarded to
    /// http://localhost:8080/ (another free port if 8080 is taken).
    ///
    /// With --manifests DIR: boot your own manifests; exit 0 only when every
    /// container exited 0, or was still running at the timeout; with
    /// --update, only when berth took that update while running and
    /// committed it (a refused or rolled-back update fails).
    Run {
        #[command(flatten)]
        board: OneBoard,
        /// Boot this manifest directory instead of the demo
        #[arg(long, value_name = "DIR")]
        manifests: Option<PathBuf>,
        /// Seconds to run the manifests (default 60)
        #[arg(long, value_name = "S", requires = "manifests")]
        timeout: Option<u64>,
        /// An update put into the inbox of the kept data partition: a bundle,
        /// or a manifest directory bundled with --key (default: the
        /// development key); the running system picks it up a few seconds
        /// after boot
        #[arg(long, value_name = "DIR|BUNDLE")]
        update: Option<PathBuf>,
        /// The key a manifest directory given to --update is signed with
        #[arg(long, value_name = "PEM", requires = "update")]
        key: Option<PathBuf>,
        /// The data partition's size in MiB (default: the releases and the
        /// update's staged copy with a margin, at least 64 MiB)
        #[arg(long, value_name = "N", value_parser = data_mib)]
        data_mib: Option<u64>,
    },
    /// Send an update into the system `run` is running; prints the device's answer
    ///
    /// The update goes over a virtio serial port: a bundle, or a manifest
    /// directory bundled with --key (default: the development key).
    Push {
        #[command(flatten)]
        board: OneBoard,
        /// The key a manifest directory is signed with
        #[arg(long, value_name = "PEM")]
        key: Option<PathBuf>,
        /// A manifest directory or a bundle file
        #[arg(value_name = "DIR|BUNDLE")]
        src: String,
    },
    /// Host unit tests and the notices check, then the QEMU scenarios, then `bench --quick`
    ///
    /// Formatting, clippy, the host unit tests and the notices check, then
    /// the QEMU scenarios whose names contain a FILTER (all without one),
    /// then `bench --quick` (when no FILTER is given or one is part of
    /// `bench`).
    Test {
        #[command(flatten)]
        arches: Arches,
        /// Run only the scenarios whose names contain one of these
        #[arg(value_name = "FILTER")]
        filters: Vec<String>,
    },
    /// Regenerate THIRD-PARTY-NOTICES.md with cargo-about (installed on first use)
    Notices {
        /// Fail when the notices do not list the crates of the dependency tree
        #[arg(long, conflicts_with = "render_check")]
        check: bool,
        /// Fail when the notices differ from a fresh rendering
        #[arg(long)]
        render_check: bool,
    },
    /// Run a gooseBit (hawkBit DDI server, pinned, installed on first use) on 127.0.0.1 until Ctrl-C
    Goosebit {
        /// The port (default: a free one)
        #[arg(long, value_name = "N")]
        port: Option<u16>,
    },
    /// Validate board config files
    CheckBoard {
        #[arg(value_name = "FILE", required = true)]
        files: Vec<String>,
    },
    /// Write a signing key pair (signing-key.pem, <key id>.pub)
    Keygen {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Print the id of the Ed25519 key in FILE
    ///
    /// FILE is a PEM public key (as `openssl pkey -pubout` writes it), a
    /// <key id>.pub, or a PKCS#8 PEM private key (as `openssl genpkey
    /// -algorithm ed25519` writes it).
    Keyid {
        #[arg(value_name = "FILE")]
        file: String,
    },
    /// Build the images of a manifest directory and sign the release
    Release {
        #[command(flatten)]
        board: OneBoard,
        #[command(flatten)]
        source: Source,
        /// The signed release file to write
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// An update bundle: the signed release and its images
    Bundle {
        #[command(flatten)]
        board: OneBoard,
        #[command(flatten)]
        source: Source,
        /// The release version (default: release.toml's)
        #[arg(long, value_name = "N", value_parser = positive)]
        version: Option<u64>,
        /// Carry only the images RELEASE, a signed release file, lacks
        #[arg(long = "only-new-against", value_name = "RELEASE")]
        against: Option<PathBuf>,
        /// The bundle file to write
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Write it wrapped as an SWUpdate-style `.swu` (cpio, `sw-description`
        /// first), which hawkBit-compatible servers such as gooseBit take
        #[arg(long)]
        swu: bool,
    },
    /// Fuzz the release decoders, SECONDS per target (default 60)
    ///
    /// Installs cargo-fuzz and runs on stable with RUSTC_BOOTSTRAP=1.
    Fuzz {
        /// The seconds per target (a number, once) and the targets (default: all)
        #[arg(value_name = "SECONDS|TARGET")]
        args: Vec<String>,
    },
    /// Build a container image (squashfs + dm-verity tree), or import an OCI image
    ///
    /// PATH is a directory, or a single static binary. With --oci: an OCI
    /// image layout or a `docker save` tar (layers, whiteouts, ownership),
    /// and a manifest pre-filled from its config (default out: NAME.img,
    /// manifest: NAME.toml; notes on stderr).
    Image {
        /// A directory or a static binary
        #[arg(value_name = "PATH", required_unless_present = "oci", conflicts_with = "oci")]
        path: Option<String>,
        /// Import an OCI image layout or a `docker save` tar (with --arch,
        /// --manifest-out and --name; not with PATH)
        #[arg(long, value_name = "PATH")]
        oci: Option<PathBuf>,
        /// The architecture to take from a multi-platform OCI index
        #[arg(long, value_name = "A", value_parser = arch(), conflicts_with = "path")]
        arch: Option<Arch>,
        /// The image file to write
        #[arg(long, value_name = "FILE", required_unless_present = "oci")]
        out: Option<PathBuf>,
        /// Where the pre-filled manifest goes
        #[arg(long, value_name = "FILE.toml", conflicts_with = "path")]
        manifest_out: Option<PathBuf>,
        /// The container's name
        #[arg(long, value_name = "NAME", conflicts_with = "path")]
        name: Option<String>,
    },
    /// Verify an image's hash tree and print berth inspect's report
    Inspect {
        #[arg(value_name = "IMAGE")]
        image: String,
        /// The verity salt, 64 hex digits
        #[arg(long, value_name = "HEX")]
        salt: Option<String>,
    },
    /// Measure start latency, scaling, boot to ready, footprint and an update
    ///
    /// Start latency against crun, runc and the kernel's floor, scaling,
    /// boot to ready, footprint and an update against a cold start; writes
    /// target/bench/report.md, report.json, boot-aarch64.svg.
    Bench {
        /// Fewer rounds: a check that the benchmark runs
        #[arg(long)]
        quick: bool,
        /// Only these parts, 1 to 6 (repeatable; default: all)
        #[arg(long = "part", value_name = "N", value_parser = clap::value_parser!(u8).range(1..=6))]
        parts: Vec<u8>,
    },
    /// Cut the power N times at random points of an update under QEMU
    ///
    /// Default 200 cuts, x86_64; each next boot must run one whole,
    /// verified release.
    SoakPowerCut {
        #[arg(long, value_name = "A", value_parser = arch())]
        arch: Option<Arch>,
        /// The number of power cuts (default 200)
        #[arg(long, value_name = "N", value_parser = positive)]
        count: Option<u64>,
        /// The random seed
        #[arg(long, value_name = "S")]
        seed: Option<u64>,
    },
    /// The x86_64/crash-replay scenario alone; with LOG and DATA only their replay
    ///
    /// With a log and the data image a failed run left, only the replay (no
    /// boot).
    CrashReplay {
        /// The random seed
        #[arg(long, value_name = "S")]
        seed: Option<u64>,
        /// A write log a failed run left
        #[arg(value_name = "LOG", requires = "data")]
        log: Option<String>,
        /// The data image that run left
        #[arg(value_name = "DATA")]
        data: Option<String>,
    },
    /// Print a shell completion script for the xtask binary to stdout
    Completions {
        #[arg(value_name = "SHELL", value_parser = PossibleValuesParser::new(["bash", "zsh", "fish"]).try_map(|s| s.parse::<Shell>()))]
        shell: Shell,
    },
}

/// What the command bodies read: the flags of every command, and its
/// positional arguments in `rest`.
#[derive(Debug, Default)]
pub struct Args {
    pub arches: Vec<Arch>,
    pub board: Option<PathBuf>,
    pub out: Option<PathBuf>,
    pub salt: Option<String>,
    pub manifests: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub timeout: Option<u64>,
    pub version: Option<u64>,
    pub against: Option<PathBuf>,
    pub count: Option<u64>,
    pub seed: Option<u64>,
    pub oci: Option<PathBuf>,
    pub manifest_out: Option<PathBuf>,
    pub name: Option<String>,
    pub update: Option<PathBuf>,
    pub data_mib: Option<u64>,
    pub swu: bool,
    pub rest: Vec<String>,
}

/// The [`Args`] of a parsed command (commands with their own options, such
/// as `bench`, `notices` and `completions`, get the empty one).
pub fn args(cmd: &Cmd) -> Args {
    let one = |b: &OneBoard| Args { arches: b.arch.into_iter().collect(), board: b.board.clone(), ..Args::default() };
    let signed = |b: &OneBoard, s: &Source, out: &PathBuf| Args { manifests: s.manifests.clone(), key: s.key.clone(), out: Some(out.clone()), ..one(b) };
    match cmd {
        Cmd::Build { arches } => Args { arches: arches.arches.clone(), ..Args::default() },
        Cmd::Test { arches, filters } => Args { arches: arches.arches.clone(), rest: filters.clone(), ..Args::default() },
        Cmd::Run { board, manifests, timeout, update, key, data_mib } => {
            Args { manifests: manifests.clone(), timeout: *timeout, update: update.clone(), key: key.clone(), data_mib: *data_mib, ..one(board) }
        }
        Cmd::Push { board, key, src } => Args { key: key.clone(), rest: vec![src.clone()], ..one(board) },
        Cmd::CheckBoard { files } => Args { rest: files.clone(), ..Args::default() },
        Cmd::Keygen { out } => Args { out: Some(out.clone()), ..Args::default() },
        Cmd::Keyid { file } => Args { rest: vec![file.clone()], ..Args::default() },
        Cmd::Release { board, source, out } => signed(board, source, out),
        Cmd::Bundle { board, source, version, against, out, swu } => {
            Args { version: *version, against: against.clone(), swu: *swu, ..signed(board, source, out) }
        }
        Cmd::Fuzz { args } => Args { rest: args.clone(), ..Args::default() },
        Cmd::Image { path, oci, arch, out, manifest_out, name } => Args {
            rest: path.iter().cloned().collect(),
            oci: oci.clone(),
            arches: arch.iter().copied().collect(),
            out: out.clone(),
            manifest_out: manifest_out.clone(),
            name: name.clone(),
            ..Args::default()
        },
        Cmd::Inspect { image, salt } => Args { rest: vec![image.clone()], salt: salt.clone(), ..Args::default() },
        Cmd::SoakPowerCut { arch, count, seed } => Args { arches: arch.iter().copied().collect(), count: *count, seed: *seed, ..Args::default() },
        Cmd::CrashReplay { seed, log, data } => Args { seed: *seed, rest: log.iter().chain(data).cloned().collect(), ..Args::default() },
        Cmd::Notices { .. } | Cmd::Goosebit { .. } | Cmd::Bench { .. } | Cmd::Completions { .. } => Args::default(),
    }
}

/// Write the completion script of `shell` for the `xtask` binary.
pub fn completions(shell: Shell, out: &mut dyn std::io::Write) {
    clap_complete::generate(shell, &mut Cli::command(), "xtask", out);
}

/// `--arch`'s values: the architectures by name.
fn arch() -> impl TypedValueParser<Value = Arch> {
    PossibleValuesParser::new(Arch::ALL.map(Arch::name)).try_map(|s| Arch::parse(&s).ok_or("unknown architecture"))
}

/// A whole number above zero.
fn positive(s: &str) -> Result<u64, String> {
    s.parse().ok().filter(|n| *n > 0).ok_or_else(|| format!("`{s}` is not a positive number"))
}

/// `--data-mib`: a whole number of MiB within what a data partition may be.
fn data_mib(s: &str) -> Result<u64, String> {
    let n: u64 = s.parse().map_err(|_| format!("`{s}` is not a whole number of MiB"))?;
    let (lo, hi) = (artifacts::DATA_MIN_MIB, artifacts::DATA_MAX_MIB);
    if (lo..=hi).contains(&n) {
        Ok(n)
    } else {
        Err(format!("{n} MiB is not between {lo} and {hi}"))
    }
}

#[cfg(test)]
mod tests;
