use super::*;
use clap::error::ErrorKind;

fn parse(line: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("xtask").chain(line.iter().copied()))
}

/// The [`Args`] of a command line that must parse.
fn args_of(line: &[&str]) -> Args {
    match parse(line) {
        Ok(cli) => args(&cli.command),
        Err(e) => panic!("{line:?}: {e}"),
    }
}

/// The error of a command line that must not parse.
fn error_of(line: &[&str]) -> clap::Error {
    match parse(line) {
        Ok(cli) => panic!("{line:?} parsed: {cli:?}"),
        Err(e) => e,
    }
}

const COMMANDS: [&str; 18] = [
    "build",
    "run",
    "push",
    "test",
    "notices",
    "goosebit",
    "check-board",
    "keygen",
    "keyid",
    "release",
    "bundle",
    "fuzz",
    "image",
    "inspect",
    "bench",
    "soak-power-cut",
    "crash-replay",
    "completions",
];

#[test]
fn definition_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn every_command_is_listed() {
    let names: Vec<String> = Cli::command().get_subcommands().map(|c| c.get_name().to_string()).collect();
    assert_eq!(names, COMMANDS);
}

#[test]
fn help_of_every_command_is_help() {
    for cmd in COMMANDS {
        for flag in ["--help", "-h"] {
            let e = error_of(&[cmd, flag]);
            assert_eq!(e.kind(), ErrorKind::DisplayHelp, "{cmd} {flag}");
            assert_eq!(e.exit_code(), 0, "{cmd} {flag}");
            assert!(!e.use_stderr(), "{cmd} {flag}: help goes to stdout");
        }
    }
    assert_eq!(error_of(&["--help"]).kind(), ErrorKind::DisplayHelp);
    let top = Cli::command().render_help().to_string();
    for cmd in COMMANDS {
        assert!(top.contains(cmd), "top-level help lacks {cmd}");
    }
}

#[test]
fn test_dash_h_is_help_not_a_filter() {
    let e = error_of(&["test", "-h"]);
    assert_eq!(e.kind(), ErrorKind::DisplayHelp);
    // Also after filters and flags.
    assert_eq!(error_of(&["test", "update", "--arch", "x86_64", "-h"]).kind(), ErrorKind::DisplayHelp);
}

#[test]
fn no_command_is_an_error() {
    let e = error_of(&[]);
    assert_ne!(e.exit_code(), 0);
    assert!(e.use_stderr());
}

#[test]
fn unknown_flags_are_refused_by_name() {
    for line in [
        &["test", "--quick"][..],
        &["test", "-x"],
        &["build", "--count", "3"],
        &["bench", "--arch", "x86_64"],
        &["notices", "--out", "x"],
        &["inspect", "img", "--key", "k"],
        &["soak-power-cut", "--board", "b.toml"],
        &["keyid", "--oci", "x", "f"],
    ] {
        let e = error_of(line);
        assert_eq!(e.kind(), ErrorKind::UnknownArgument, "{line:?}");
        assert_eq!(e.exit_code(), 2, "{line:?}");
        let flag = line.iter().find(|a| a.starts_with('-')).copied().unwrap_or_default();
        assert!(e.to_string().contains(flag), "{line:?}: {e}");
    }
    assert_eq!(error_of(&["frobnicate"]).kind(), ErrorKind::InvalidSubcommand);
}

#[test]
fn test_filters_and_arches() {
    let a = args_of(&["test"]);
    assert!(a.arches.is_empty() && a.rest.is_empty());
    let a = args_of(&["test", "--arch", "x86_64", "update", "--arch", "armv7", "volumes"]);
    assert_eq!(a.arches, vec![Arch::X86_64, Arch::Armv7]);
    assert_eq!(a.rest, vec!["update", "volumes"]);
    // After `--`, a leading dash is a filter on purpose.
    assert_eq!(args_of(&["test", "--", "-x"]).rest, vec!["-x"]);
    assert_eq!(error_of(&["test", "--arch", "sparc"]).kind(), ErrorKind::InvalidValue);
    assert_eq!(error_of(&["test", "--arch"]).kind(), ErrorKind::InvalidValue);
}

#[test]
fn one_board_commands() {
    let a = args_of(&["run", "--arch", "armv7", "--manifests", "m", "--timeout", "30"]);
    assert_eq!((a.arches, a.manifests, a.timeout), (vec![Arch::Armv7], Some(PathBuf::from("m")), Some(30)));
    let a = args_of(&["push", "--board", "b.toml", "--key", "k.pem", "dir"]);
    assert_eq!((a.board, a.key, a.rest), (Some(PathBuf::from("b.toml")), Some(PathBuf::from("k.pem")), vec!["dir".to_string()]));
    assert_eq!(error_of(&["push", "--arch", "x86_64", "--arch", "armv7", "d"]).kind(), ErrorKind::ArgumentConflict);
    assert_eq!(error_of(&["push", "--arch", "x86_64", "--board", "b", "d"]).kind(), ErrorKind::ArgumentConflict);
    assert_eq!(error_of(&["push"]).kind(), ErrorKind::MissingRequiredArgument);
    assert_eq!(error_of(&["run", "--timeout", "5"]).kind(), ErrorKind::MissingRequiredArgument);
    assert_eq!(error_of(&["run", "--timeout", "soon", "--manifests", "m"]).kind(), ErrorKind::ValueValidation);
}

#[test]
fn numbers_are_checked() {
    let a = args_of(&["run", "--data-mib", &artifacts::DATA_MIN_MIB.to_string()]);
    assert_eq!(a.data_mib, Some(artifacts::DATA_MIN_MIB));
    let too_big = (artifacts::DATA_MAX_MIB + 1).to_string();
    assert_eq!(error_of(&["run", "--data-mib", &too_big]).kind(), ErrorKind::ValueValidation);
    assert_eq!(error_of(&["soak-power-cut", "--count", "0"]).kind(), ErrorKind::ValueValidation);
    let a = args_of(&["soak-power-cut", "--count", "5", "--seed", "0"]);
    assert_eq!((a.count, a.seed), (Some(5), Some(0)));
    assert!(parse(&["bench", "--part", "6"]).is_ok());
    assert_eq!(error_of(&["bench", "--part", "7"]).kind(), ErrorKind::ValueValidation);
    let a = args_of(&["bundle", "--version", "7", "--only-new-against", "r", "--out", "b"]);
    assert_eq!((a.version, a.against, a.out), (Some(7), Some(PathBuf::from("r")), Some(PathBuf::from("b"))));
    assert_eq!(error_of(&["bundle", "--version", "0", "--out", "b"]).kind(), ErrorKind::ValueValidation);
}

#[test]
fn image_and_oci() {
    let a = args_of(&["image", "rootfs", "--out", "x.img"]);
    assert_eq!((a.rest, a.out, a.oci), (vec!["rootfs".to_string()], Some(PathBuf::from("x.img")), None));
    let a = args_of(&["image", "--oci", "l.tar", "--arch", "aarch64", "--name", "web", "--manifest-out", "web.toml"]);
    assert_eq!((a.arches, a.name, a.rest.len()), (vec![Arch::Aarch64], Some("web".to_string()), 0));
    assert_eq!(error_of(&["image", "rootfs"]).kind(), ErrorKind::MissingRequiredArgument);
    assert_eq!(error_of(&["image", "rootfs", "--out", "x", "--name", "n"]).kind(), ErrorKind::ArgumentConflict);
    assert_eq!(error_of(&["image", "--name", "n", "--out", "x"]).kind(), ErrorKind::MissingRequiredArgument);
    assert_eq!(error_of(&["image", "rootfs", "--oci", "l.tar"]).kind(), ErrorKind::ArgumentConflict);
}

#[test]
fn positionals() {
    assert_eq!(args_of(&["crash-replay", "--seed", "3", "log", "data"]).rest, vec!["log", "data"]);
    assert!(args_of(&["crash-replay"]).rest.is_empty());
    assert_eq!(error_of(&["crash-replay", "log"]).kind(), ErrorKind::MissingRequiredArgument);
    assert_eq!(args_of(&["fuzz", "5", "decode_payload"]).rest, vec!["5", "decode_payload"]);
    assert_eq!(args_of(&["check-board", "a.toml", "b.toml"]).rest, vec!["a.toml", "b.toml"]);
    assert_eq!(error_of(&["check-board"]).kind(), ErrorKind::MissingRequiredArgument);
    assert_eq!(error_of(&["keyid", "a", "b"]).kind(), ErrorKind::UnknownArgument);
    assert!(matches!(parse(&["notices", "--check"]).map(|c| c.command), Ok(Cmd::Notices { check: true, render_check: false })));
    assert_eq!(error_of(&["notices", "--check", "--render-check"]).kind(), ErrorKind::ArgumentConflict);
}

#[test]
fn completions_generate() {
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut out = Vec::new();
        completions(shell, &mut out);
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("soak-power-cut") && text.contains("only-new-against"), "{shell}");
    }
    assert!(matches!(parse(&["completions", "bash"]).map(|c| c.command), Ok(Cmd::Completions { shell: Shell::Bash })));
    assert_eq!(error_of(&["completions", "powershell"]).kind(), ErrorKind::InvalidValue);
}
