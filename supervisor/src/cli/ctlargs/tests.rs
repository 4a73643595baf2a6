//! The parser's cases: every command, options in any order, help anywhere,
//! and each kind of mistake named.

use super::*;

fn p(line: &str) -> Parsed {
    let args: Vec<String> = line.split_whitespace().map(String::from).collect();
    parse(&args)
}

fn run(line: &str) -> Invocation {
    match p(line) {
        Parsed::Run(inv) => inv,
        other => panic!("{line:?}: {other:?}"),
    }
}

fn usage(line: &str) -> String {
    match p(line) {
        Parsed::Usage(m) => m,
        other => panic!("{line:?}: {other:?}"),
    }
}

fn help_of(line: &str) -> String {
    match p(line) {
        Parsed::Help(h) => h,
        other => panic!("{line:?}: {other:?}"),
    }
}

#[test]
fn every_command_parses() {
    assert_eq!(run("status").cmd, Cmd::Status);
    assert_eq!(run("release").cmd, Cmd::Release);
    assert_eq!(run("start sensor").cmd, Cmd::Start("sensor".into()));
    assert_eq!(run("stop sensor").cmd, Cmd::Stop("sensor".into()));
    assert_eq!(run("restart net").cmd, Cmd::Restart("net".into()));
    assert_eq!(run("logs sensor").cmd, Cmd::Logs("sensor".into()));
    assert_eq!(run("events").cmd, Cmd::Events);
    assert_eq!(run("update /data/a.bundle").cmd, Cmd::Update("/data/a.bundle".into()));
    assert_eq!(run("commit").cmd, Cmd::Commit);
    assert_eq!(run("rollback").cmd, Cmd::Rollback);
    let inv = run("status");
    assert_eq!((inv.json, inv.follow, inv.lines, inv.wait), (false, false, LINES_DEFAULT, false));
}

#[test]
fn options_come_in_any_order() {
    for line in ["logs -f sensor", "logs sensor -f", "logs --follow sensor", "logs sensor --follow"] {
        let inv = run(line);
        assert_eq!((inv.cmd.clone(), inv.follow), (Cmd::Logs("sensor".into()), true), "{line}");
    }
    for line in ["logs -n 5 -f sensor --json", "logs --json sensor -fn5", "logs sensor --lines=5 --json -f", "logs -n5 --json sensor --follow"] {
        if line.contains("-fn5") {
            // Short options are not bundled: `-fn5` is unknown.
            assert!(usage(line).contains("unknown option '-fn5'"), "{line}");
            continue;
        }
        let inv = run(line);
        assert_eq!((inv.cmd.clone(), inv.follow, inv.lines, inv.json), (Cmd::Logs("sensor".into()), true, 5, true), "{line}");
    }
    let inv = run("events -n 0 -f");
    assert_eq!((inv.cmd, inv.lines, inv.follow), (Cmd::Events, 0, true));
    assert!(run("status --json").json);
    assert!(run("release --json").json);
    let inv = run("update /data/b.bundle --wait");
    assert_eq!((inv.cmd, inv.wait), (Cmd::Update("/data/b.bundle".into()), true));
    assert!(run("update --wait /data/b.bundle").wait);
}

#[test]
fn double_dash_ends_the_options() {
    let inv = run("update --wait -- -odd.bundle");
    assert_eq!((inv.cmd, inv.wait), (Cmd::Update("-odd.bundle".into()), true));
    assert_eq!(run("logs -- -f").cmd, Cmd::Logs("-f".into()));
    // Help after `--` is an operand, not a request for help.
    assert_eq!(run("logs -- --help").cmd, Cmd::Logs("--help".into()));
    assert!(usage("status -- x").contains("unexpected argument 'x'"));
}

#[test]
fn help_anywhere_is_the_commands_help() {
    for line in ["status -h", "status --help", "status --jsn --help", "logs -f --help", "logs -h sensor extra", "update --help", "help status"] {
        let h = help_of(line);
        let cmd = line.split_whitespace().find(|w| !w.starts_with('-') && *w != "help").unwrap_or("");
        assert!(h.starts_with(&format!("usage: berthctl {cmd}")), "{line}: {h}");
    }
    assert!(help_of("status -h").contains("exit: 0 every container"));
    assert!(help_of("logs --help").starts_with("usage: berthctl logs [-f] [-n N] [--json] NAME\n"));
    assert!(help_of("stop -h").contains(EXIT_OTHER));
    assert!(help_of("update -h").contains("5 rebooting into it"));
}

#[test]
fn the_overview_lists_every_command() {
    for line in ["--help", "-h", "help"] {
        let h = help_of(line);
        assert!(h.starts_with("usage: berthctl COMMAND"), "{h}");
        for spec in SPECS {
            assert!(h.contains(&format!("\n  {} ", spec.name)) && h.contains(spec.summary), "{}: {h}", spec.name);
        }
    }
    assert_eq!(p("--version"), Parsed::Version);
    assert!(usage("").starts_with("berthctl: no command given\nusage: berthctl COMMAND"));
}

#[test]
fn mistakes_name_the_command_and_the_argument() {
    assert_eq!(usage("status --jsn"), "berthctl status: unknown option '--jsn'\n(see `berthctl status --help`)");
    assert!(usage("stop -f x").starts_with("berthctl stop: unknown option '-f'"));
    assert!(usage("status --json=yes").starts_with("berthctl status: '--json' takes no value"));
    assert!(usage("release --wait").starts_with("berthctl release: unknown option '--wait'"));
    assert!(usage("logs").starts_with("berthctl logs: missing NAME"));
    assert!(usage("logs -f").starts_with("berthctl logs: missing NAME"));
    assert!(usage("start").starts_with("berthctl start: missing NAME"));
    assert!(usage("start a b").starts_with("berthctl start: unexpected argument 'b'"));
    assert!(usage("update").starts_with("berthctl update: missing BUNDLE"));
    assert!(usage("update --wait").starts_with("berthctl update: missing BUNDLE"));
    assert!(usage("commit now").starts_with("berthctl commit: unexpected argument 'now'"));
    assert!(usage("events sensor").starts_with("berthctl events: unexpected argument 'sensor'"));
    assert!(usage("frobnicate").starts_with("berthctl: unknown command 'frobnicate'"));
    assert!(usage("--json status").starts_with("berthctl: unknown option '--json'"));
    assert!(usage("help frob").starts_with("berthctl help: unknown command 'frob'"));
    assert!(usage("help status extra").starts_with("berthctl help: unexpected argument 'extra'"));
}

#[test]
fn numbers_are_checked() {
    assert!(usage("logs x -n").starts_with("berthctl logs: '-n' needs a number from 0 to 64\n"));
    assert!(usage("logs x -n ten").starts_with("berthctl logs: '-n' needs a number from 0 to 64, not 'ten'"));
    assert!(usage("logs x -n 65").contains("not '65'"));
    assert!(usage("logs x -n -1").contains("not '-1'"));
    assert!(usage("logs x --lines=99999999").contains("not '99999999'"));
    assert_eq!(run("logs x --lines 64").lines, 64);
}

#[test]
fn names_are_checked_and_messages_escaped() {
    let long = "x".repeat(33);
    assert!(usage(&format!("stop {long}")).contains("NAME is longer than 32 bytes"));
    assert_eq!(run(&format!("stop {}", &long[1..])).cmd, Cmd::Stop(long[1..].into()));
    let args = vec!["status".to_string(), "--\u{1b}[2J\u{202e}".to_string()];
    match parse(&args) {
        Parsed::Usage(m) => assert!(m.contains("'--\\x1b[2J\\u202e'"), "{m}"),
        other => panic!("{other:?}"),
    }
    let args = vec!["logs".to_string(), String::new()];
    assert!(matches!(parse(&args), Parsed::Usage(m) if m.contains("NAME is empty")));
    assert!(usage(&format!("update /{}", "p".repeat(128))).contains("BUNDLE must be a path of 1 to 128 bytes"));
}

#[test]
fn odd_input_never_panics() {
    let words = ["status", "logs", "-n", "--lines=", "-n5", "--", "-", "é", "--json", "-f", "-h", "update", "debug", "wedge", "0", "=", "--=", ""];
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..5_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let n = (x % 6) as usize;
        let args: Vec<String> = (0..n).map(|i| words[((x >> (i * 5)) % words.len() as u64) as usize].to_string()).collect();
        let _ = parse(&args);
    }
}

#[cfg(feature = "test-hooks")]
#[test]
fn debug_wedge_in_test_builds() {
    assert_eq!(run("debug wedge 30").cmd, Cmd::Wedge(30));
    assert!(usage("debug wedge 0").contains("SECONDS must be 1 to 600"));
    assert!(usage("debug nap 3").contains("unknown debug command 'nap'"));
    assert!(usage("debug wedge").contains("missing SECONDS"));
}

#[cfg(not(feature = "test-hooks"))]
#[test]
fn no_debug_in_shipped_builds() {
    assert!(usage("debug wedge 30").starts_with("berthctl: unknown command 'debug'"));
}
