//! `berthctl`'s command line, parsed without touching the socket.
//!
//! It must not touch the socket or print: it returns what to run, or the
//! usage error for the caller to print.
//!
//! berth ships as one small static binary, so `berthctl` has a hand parser
//! instead of an argument crate. It follows the conventions people bring
//! from `systemctl` and `docker`: each command has its own options and help;
//! options and operands come in any order; `--` ends the options (a bundle
//! path starting with `-`); `-h`/`--help` anywhere before `--` prints that
//! command's help on stdout (exit 0); `berthctl --help` and `berthctl help`
//! print the overview. A mistake (unknown command or option, a missing or
//! extra operand, a bad number) is a [`Parsed::Usage`] naming the command
//! and what is wrong; the caller prints it on stderr and exits
//! [`crate::cli::ctlclient::code::USAGE`].
//!
//! Everything here is pure: [`parse`] takes the arguments after the program
//! name and returns what to do.

use crate::supervise::control::LOG_LINES_MAX;

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Run a command.
    Run(Invocation),
    /// Print this help text on stdout, exit 0.
    Help(String),
    /// Print berth's version, exit 0.
    Version,
    /// A usage error: print this on stderr, exit 2.
    Usage(String),
}

/// One command with its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub cmd: Cmd,
    /// `--json`.
    pub json: bool,
    /// `-f`/`--follow`.
    pub follow: bool,
    /// `-n N`/`--lines N`: how many of the last lines.
    pub lines: u16,
    /// `update --wait`.
    pub wait: bool,
}

/// The commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cmd {
    Status,
    Release,
    Start(String),
    Stop(String),
    Restart(String),
    Logs(String),
    Events,
    Update(String),
    Commit,
    Rollback,
    /// `debug wedge SECONDS` (test-hooks builds only).
    Wedge(u16),
}

/// Lines `logs` and `events` show when not told.
pub const LINES_DEFAULT: u16 = 20;

/// An option a command may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opt {
    Json,
    Follow,
    Lines,
    Wait,
}

impl Opt {
    /// The option a flag spells (without any `=VALUE`).
    fn from_flag(flag: &str) -> Option<Opt> {
        match flag {
            "--json" => Some(Opt::Json),
            "-f" | "--follow" => Some(Opt::Follow),
            "-n" | "--lines" => Some(Opt::Lines),
            "--wait" => Some(Opt::Wait),
            _ => None,
        }
    }
}

/// One command's grammar and help.
struct Spec {
    name: &'static str,
    /// Operand names, in order; all required.
    operands: &'static [&'static str],
    opts: &'static [Opt],
    /// One line for the overview.
    summary: &'static str,
    /// The command's own help, after its usage line.
    help: &'static str,
}

const EXIT_OTHER: &str = "exit: 0 done, 1 berth refused it, 2 usage, 4 no answer from berth";

const SPECS: &[Spec] = &[
    Spec {
        name: "status",
        operands: &[],
        opts: &[Opt::Json],
        summary: "every container and host service, the release, the loop",
        help: "Every container and host service: kind, state, readiness, pid, uptime,
restarts, memory, last exit, its STATUS= note; a container's confinement
layers below its row. Then the loop's worst stalls and the staging, if any.

options:
  --json      the status file's document (format 1, as status.json)
  -h, --help  this help

exit: 0 every container and service as wanted (running, or stopped on purpose)
      1 degraded: one failed, or berth is in recovery
      2 usage
      3 not ready yet: one is starting, waiting, stopping or not ready,
        or the release is on trial
      4 no answer from berth",
    },
    Spec {
        name: "release",
        operands: &[],
        opts: &[Opt::Json],
        summary: "the running release, its rollbacks and the last update",
        help: "The running release: version, signing key id, committed or on trial (and
the release before it), the rollback history, the staging in progress,
quarantined bundles and the last update of this boot.

options:
  --json      one JSON object, with every update of this boot
  -h, --help  this help

exit: 0 committed (or no release store)
      1 degraded: no release runs (recovery), or berth refused
      2 usage
      3 on trial
      4 no answer from berth",
    },
    Spec {
        name: "start",
        operands: &["NAME"],
        opts: &[],
        summary: "start a stopped or failed container or service",
        help: "Start a stopped or failed container or host service (its backoff reset).

options:
  -h, --help  this help",
    },
    Spec {
        name: "stop",
        operands: &["NAME"],
        opts: &[],
        summary: "stop it and keep it stopped",
        help: "Send the manifest's stop signal, SIGKILL its cgroup after the grace
period, and keep it stopped until `berthctl start`.

options:
  -h, --help  this help",
    },
    Spec {
        name: "restart",
        operands: &["NAME"],
        opts: &[],
        summary: "stop it and start it again at once",
        help: "Stop the container or host service and start it again at once.

options:
  -h, --help  this help",
    },
    Spec {
        name: "logs",
        operands: &["NAME"],
        opts: &[Opt::Follow, Opt::Lines, Opt::Json],
        summary: "a container's or service's output",
        help: "The last lines of a container's or host service's output, each with the
time it was kept (seconds since boot). Control characters are shown escaped.

options:
  -f, --follow       then keep printing new lines as they come (Ctrl-C ends)
  -n, --lines N      the last N lines (0 to 64; default 20)
  --json             one JSON object per line: name, seq, t_ms, text
  -h, --help         this help",
    },
    Spec {
        name: "events",
        operands: &[],
        opts: &[Opt::Follow, Opt::Lines, Opt::Json],
        summary: "berth's own event lines",
        help: "berth's own event lines (docs/events.md), as `logs` shows output.

options:
  -f, --follow       then keep printing new events as they come (Ctrl-C ends)
  -n, --lines N      the last N events (0 to 64; default 20)
  --json             one JSON object per line: name, seq, t_ms, text
  -h, --help         this help",
    },
    Spec {
        name: "update",
        operands: &["BUNDLE"],
        opts: &[Opt::Wait],
        summary: "stage a bundle, switch to it, on trial until committed",
        help: "Stage the update bundle at BUNDLE (a path on the device), switch to its
release, on trial until committed. Answers once the staging started.

options:
  --wait      wait until the update ended
  -h, --help  this help

exit without --wait: 0 staging started, 1 refused, 2 usage, 4 no answer from berth
exit with --wait:    0 committed, 1 other (berth stopped answering), 2 usage,
                     3 refused, 4 rolled back, 5 rebooting into it",
    },
    Spec {
        name: "commit",
        operands: &[],
        opts: &[],
        summary: "commit the release on trial now",
        help: "Commit the release on trial now.

options:
  -h, --help  this help",
    },
    Spec {
        name: "rollback",
        operands: &[],
        opts: &[],
        summary: "roll the release on trial back now",
        help: "Roll the release on trial back now (cause `requested`).

options:
  -h, --help  this help",
    },
];

/// Commands only test builds have.
#[cfg(feature = "test-hooks")]
const HOOK_SPECS: &[Spec] = &[Spec {
    name: "debug",
    operands: &["wedge", "SECONDS"],
    opts: &[],
    summary: "test trigger: block berth's loop (1 to 600 s)",
    help: "Test trigger (`debug wedge SECONDS`): block berth's loop SECONDS (1 to 600), so the hardware
watchdog is not petted and resets the board.

options:
  -h, --help  this help",
}];
#[cfg(not(feature = "test-hooks"))]
const HOOK_SPECS: &[Spec] = &[];

fn find(name: &str) -> Option<&'static Spec> {
    SPECS.iter().chain(HOOK_SPECS).find(|s| s.name == name)
}

/// An argument from the command line, fit to quote in a message.
fn shown(arg: &str) -> String {
    crate::common::log::escaped(arg)
}

/// The overview: every command and the exit codes.
pub fn overview() -> String {
    let mut s = String::from("usage: berthctl COMMAND [OPTIONS] [ARGS]\n\ncommands:\n");
    for spec in SPECS.iter().chain(HOOK_SPECS) {
        s.push_str(&format!("  {:<30} {}\n", synopsis(spec), spec.summary));
    }
    s.push_str(
        "\nOptions and operands come in any order; `--` ends the options.
`berthctl COMMAND --help` (or `berthctl help COMMAND`) shows a command's help.
`berthctl --version` shows berth's version.

exit codes: 0 ok, 1 degraded or refused, 2 usage, 3 not ready (status,
release), 4 no answer from berth; `update --wait` has its own
(see its help and docs/berthctl.md).
",
    );
    s
}

/// A command's whole help text.
fn help(spec: &Spec) -> String {
    let usage = format!("usage: berthctl {}", synopsis(spec));
    let exit = if spec.help.contains("\nexit") { "" } else { EXIT_OTHER };
    let sep = if exit.is_empty() { "" } else { "\n\n" };
    format!("{usage}\n\n{}{sep}{exit}\n", spec.help)
}

/// `NAME [OPTIONS] OPERANDS`.
fn synopsis(spec: &Spec) -> String {
    let mut usage = spec.name.to_string();
    for o in spec.opts {
        usage.push_str(match o {
            Opt::Json => " [--json]",
            Opt::Follow => " [-f]",
            Opt::Lines => " [-n N]",
            Opt::Wait => " [--wait]",
        });
    }
    for op in spec.operands {
        usage.push(' ');
        usage.push_str(op);
    }
    usage
}

fn usage_error(spec: &Spec, what: &str) -> Parsed {
    Parsed::Usage(format!("berthctl {}: {what}\n(see `berthctl {} --help`)", spec.name, spec.name))
}

/// Parse the arguments after the program name.
pub fn parse(args: &[String]) -> Parsed {
    let Some(first) = args.first() else {
        return Parsed::Usage(format!("berthctl: no command given\n{}", overview()));
    };
    match first.as_str() {
        "-h" | "--help" => return Parsed::Help(overview()),
        "--version" => return Parsed::Version,
        "help" => {
            return match args.get(1..).unwrap_or_default() {
                [] => Parsed::Help(overview()),
                [c] => match find(c) {
                    Some(spec) => Parsed::Help(help(spec)),
                    None => Parsed::Usage(format!("berthctl help: unknown command '{}'", shown(c))),
                },
                [_, extra, ..] => Parsed::Usage(format!("berthctl help: unexpected argument '{}'", shown(extra))),
            }
        }
        _ => {}
    }
    match find(first) {
        Some(spec) => command(spec, args.get(1..).unwrap_or_default()),
        None if first.starts_with('-') => {
            Parsed::Usage(format!("berthctl: unknown option '{}' (options come after the command)\n(see `berthctl --help`)", shown(first)))
        }
        None => Parsed::Usage(format!("berthctl: unknown command '{}'\n(see `berthctl --help`)", shown(first))),
    }
}

/// Options and operands of one command.
fn command(spec: &'static Spec, rest: &[String]) -> Parsed {
    if rest.iter().take_while(|a| a.as_str() != "--").any(|a| a == "-h" || a == "--help") {
        return Parsed::Help(help(spec));
    }
    let mut inv = Invocation { cmd: Cmd::Status, json: false, follow: false, lines: LINES_DEFAULT, wait: false };
    let mut operands: Vec<&str> = Vec::new();
    let mut options_ended = false;
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        if options_ended || a == "-" || !a.starts_with('-') {
            operands.push(a);
            continue;
        }
        if a == "--" {
            options_ended = true;
            continue;
        }
        // `--lines=N`, and `-nN` glued.
        let (flag, inline) = match (a.split_once('='), a.strip_prefix("-n")) {
            (Some((f, v)), _) if f.starts_with("--") => (f, Some(v)),
            (_, Some(v)) if !v.is_empty() && !a.starts_with("--") => ("-n", Some(v)),
            _ => (a.as_str(), None),
        };
        let Some(opt) = Opt::from_flag(flag).filter(|o| spec.opts.contains(o)) else {
            return usage_error(spec, &format!("unknown option '{}'", shown(a)));
        };
        match opt {
            Opt::Lines => {
                let value = inline.or_else(|| it.next().map(String::as_str));
                match value.and_then(|v| v.parse::<u16>().ok()).filter(|n| usize::from(*n) <= LOG_LINES_MAX) {
                    Some(n) => inv.lines = n,
                    None => {
                        let got = value.map(|v| format!(", not '{}'", shown(v))).unwrap_or_default();
                        return usage_error(spec, &format!("'{flag}' needs a number from 0 to {LOG_LINES_MAX}{got}"));
                    }
                }
            }
            _ if inline.is_some() => return usage_error(spec, &format!("'{flag}' takes no value")),
            Opt::Json => inv.json = true,
            Opt::Follow => inv.follow = true,
            Opt::Wait => inv.wait = true,
        }
    }
    if let Some(missing) = spec.operands.get(operands.len()) {
        return usage_error(spec, &format!("missing {missing}"));
    }
    if let Some(extra) = operands.get(spec.operands.len()) {
        return usage_error(spec, &format!("unexpected argument '{}'", shown(extra)));
    }
    match build(spec, &operands) {
        Ok(cmd) => {
            inv.cmd = cmd;
            Parsed::Run(inv)
        }
        Err(what) => usage_error(spec, &what),
    }
}

/// The command, its operands counted already.
fn build(spec: &Spec, operands: &[&str]) -> Result<Cmd, String> {
    let name_max = crate::supervise::control::Name::new().capacity();
    let first = operands.first().copied().unwrap_or_default();
    let name = || -> Result<String, String> {
        if first.is_empty() {
            Err("NAME is empty".into())
        } else if first.len() > name_max {
            Err(format!("NAME is longer than {name_max} bytes"))
        } else {
            Ok(first.to_string())
        }
    };
    Ok(match spec.name {
        "status" => Cmd::Status,
        "release" => Cmd::Release,
        "start" => Cmd::Start(name()?),
        "stop" => Cmd::Stop(name()?),
        "restart" => Cmd::Restart(name()?),
        "logs" => Cmd::Logs(name()?),
        "events" => Cmd::Events,
        "update" => {
            let max = heapless::String::<128>::new().capacity();
            if first.is_empty() || first.len() > max {
                return Err(format!("BUNDLE must be a path of 1 to {max} bytes"));
            }
            Cmd::Update(first.to_string())
        }
        "commit" => Cmd::Commit,
        "rollback" => Cmd::Rollback,
        #[cfg(feature = "test-hooks")]
        "debug" => wedge(operands)?,
        other => return Err(format!("no such command '{other}'")),
    })
}

/// `debug wedge SECONDS`.
#[cfg(feature = "test-hooks")]
fn wedge(operands: &[&str]) -> Result<Cmd, String> {
    match operands {
        ["wedge", s] => match s.parse::<u16>() {
            Ok(n) if (1..=600).contains(&n) => Ok(Cmd::Wedge(n)),
            _ => Err(format!("SECONDS must be 1 to 600, not '{}'", shown(s))),
        },
        [other, ..] => Err(format!("unknown debug command '{}'", shown(other))),
        [] => Err("missing wedge".into()),
    }
}

#[cfg(test)]
mod tests;
