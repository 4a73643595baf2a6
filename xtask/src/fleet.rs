//! The fleet update scenarios (x86_64, variant `agent`, releases in
//! `qemu-tests/manifests/agent/`): a real gooseBit ([`crate::goosebit`]) on
//! the host's loopback offers a bundle to the guest's `berth-agent`, which
//! reaches it through QEMU's user network (`guestfwd`, [`BootOpts::guestfwd`]:
//! each connection to `10.0.2.100:8080` in the guest is relayed to the
//! server's TLS port on 127.0.0.1 by a small relay QEMU starts for it;
//! nothing listens anywhere but on the host's loopback). This module must
//! not judge berth's events itself: [`qemu_tests::fleet`] does.
//!
//! The agent speaks https only (no `allow_plaintext`): gooseBit serves a
//! certificate of the shared test CA ([`crate::testca::TRUSTED`]), whose
//! certificate the agent's image carries as its `ca_file` (`@test-ca` in
//! its `[build] files`), and checks the device's target token (`strict`
//! device auth; the token is set through the management API before the
//! boot, as the agent's `agent.conf` has it).
//!
//! Each case starts its own server, wraps the offered bundle as a `.swu`
//! ([`crate::swu::wrap`]), uploads it, boots the guest, waits for the agent
//! to register (its first poll), assigns the software to it, then checks:
//!
//! - berth's events, in the order computed before the run
//!   ([`qemu_tests::fleet::expected`]): the drop, the inbox, then staging,
//!   trial and commit of release 2 (`fleet-update`), the refusal with its
//!   text (`fleet-untrusted`: the bundle of release 2 signed by a key the
//!   device does not trust), or the trial of release 3 whose `meter`
//!   crash-loops and berth's own rollback to release 1 (`fleet-rollback`);
//! - the agent's own account: its poll URL, the artifact by name and size,
//!   the drop with the bundle's id;
//! - gooseBit's record, through its management API: the device's last
//!   state `Finished` with software version `2.0.0`, or `Error` with
//!   berth's cause (and refusal text) in the device's log.
//!
//! `fleet-confinement` boots the same build without a server and compares
//! the agent's `--self-check` lines (its manifest's argv) with
//! [`qemu_tests::fleet::self_check_expected`]: every write it tries, with
//! its exact result, and its capability sets.
//!
//! `fleet-wrong-ca` is the deliberate fault: the server's certificate
//! comes from another CA ([`crate::testca::OTHER`]); the agent must refuse
//! it (`UnknownIssuer` in its log), gooseBit must never see the device,
//! and nothing may be dropped.

use crate::artifacts::{self, Artifacts, BootOpts};
use crate::goosebit::{Options, Server};
use qemu_tests::fleet::{self, Outcome};
use qemu_tests::machine::Machine;
use qemu_tests::scenario::Case;
use sha2::{Digest as _, Sha256};
use std::path::Path;
use std::time::{Duration, Instant};

/// The agent's controller id (its `agent.conf`).
pub const CONTROLLER: &str = "berth-test";
/// The device's target token (its `agent.conf`).
const TOKEN: &str = "berth-test-token-0123456789";
/// The base URL the agent polls.
const BASE: &str = "https://10.0.2.100:8080";
/// How long `fleet-wrong-ca` watches after the refusal for anything
/// getting through (more than gooseBit's poll time and the agent's retry).
const WATCH: Duration = Duration::from_secs(25);
/// How long the agent may take to register, after the boot.
const REGISTER: Duration = Duration::from_secs(60);
/// How long the first of berth's steps may take after the assignment: the
/// agent's next poll (gooseBit's poll time), the download, berth's next
/// inbox look.
const FIRST_STEP: Duration = Duration::from_secs(90);
/// How long gooseBit may take to record the result after berth's last step.
const RECORDED: Duration = Duration::from_secs(60);

/// What the server offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Release 2 (`sensor` changed), signed by the development key.
    Release2,
    /// Release 2 signed by a key the device does not trust.
    UntrustedKey,
    /// Release 3, whose `meter` crash-loops.
    Release3Bad,
}

/// The fleet cases of one architecture's builds whose name matches a filter.
pub fn cases(root: &Path, builds: &[(&'static str, Artifacts)], filters: &[String]) -> Vec<Case> {
    let Some(art) = builds.iter().find(|(v, _)| *v == "agent").map(|(_, a)| a) else { return Vec::new() };
    if art.board.arch != berth::release::board::Arch::X86_64 {
        return Vec::new();
    }
    let mut out = Vec::new();
    let all = [
        ("fleet-update", Some(Offer::Release2)),
        ("fleet-untrusted", Some(Offer::UntrustedKey)),
        ("fleet-rollback", Some(Offer::Release3Bad)),
        ("fleet-wrong-ca", None),
        ("fleet-confinement", None),
    ];
    for (case, offer) in all {
        let name = format!("{}/{case}", art.board.arch.name());
        if filters.iter().any(|f| name.contains(f.as_str())) {
            let (root, art) = (root.to_path_buf(), art.clone());
            out.push(qemu_tests::scenario::case(name, move || match offer {
                Some(offer) => run(&root, &art, case, offer),
                None if case == "fleet-confinement" => confinement(&art, case),
                None => wrong_ca(&root, &art, case),
            }));
        }
    }
    out
}

/// A server for the guest: TLS with the shared CA set `ca_set`, strict
/// device auth, the device's token set.
fn server(root: &Path, art: &Artifacts, case: &str, ca_set: &'static str) -> Result<Server, String> {
    let runs = art.dir.join("runs");
    std::fs::create_dir_all(&runs).map_err(|e| format!("{}: {e}", runs.display()))?;
    let opts = Options { tls: true, device_auth: true, ca_set: Some(ca_set), ..Options::default() };
    let server = Server::start_with(root, runs.join(format!("{case}-goosebit")), &opts)?;
    server.set_token(CONTROLLER, TOKEN)?;
    Ok(server)
}

/// The bundle file `offer` names, its release version, and what berth
/// must do with it.
fn offered(art: &Artifacts, offer: Offer) -> Result<(std::path::PathBuf, u64, Outcome), String> {
    let info = art.updates.as_ref().ok_or("the agent build carries no update bundles")?;
    let dir = info.v2_bundle.parent().ok_or("the bundles have no directory")?;
    match offer {
        Offer::Release2 => Ok((info.v2_bundle.clone(), 2, Outcome::Committed { version: 2, changed: "sensor".into() })),
        Offer::Release3Bad => Ok((dir.join("v3-bad.bundle"), 3, Outcome::RolledBack { version: 3, changed: "meter".into(), to: 1 })),
        Offer::UntrustedKey => {
            let r = info.refused.iter().find(|r| r.bundle.ends_with("/untrusted-key.bundle")).ok_or("no untrusted-key bundle among the refused ones")?;
            Ok((dir.join("refused").join("untrusted-key.bundle"), 2, Outcome::Refused { reason: r.reason.clone() }))
        }
    }
}

/// One case: serve, boot, assign, judge.
pub fn run(root: &Path, art: &Artifacts, case: &str, offer: Offer) -> Result<(), String> {
    let arch = art.board.arch.name();
    let (path, version, outcome) = offered(art, offer)?;
    let bundle = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let id = format!("sha256:{}", crate::verity::hex(&Sha256::digest(&bundle)));
    let board = art.board.name.to_string();
    let file = crate::swu::bundle_name(&board, version);
    let swu_name = format!("berth-{board}-{version}.swu");
    // Computed before the run: berth's events and the agent's account.
    let steps = fleet::expected(&file, &outcome);
    let swu = crate::swu::wrap(&board, version, &bundle)?;
    let said =
        [format!("polling {BASE}/DEFAULT/controller/v1/{CONTROLLER}"), format!("{swu_name} ({} bytes)", swu.len()), format!("dropped /drop/{file} ({id})")];
    let server = server(root, art, case, crate::testca::TRUSTED)?;
    let software = server.upload(&swu_name, &swu)?;
    let mut m = boot(art, case, Some(server.guestfwd()))?;
    let server_said = |e: String| format!("{e}\ngooseBit's log:\n{}", server.log_tail());
    fleet::boot(&mut m, arch)?;
    let start = m.cursor();
    registered(&server, &mut m).map_err(server_said)?;
    server.assign(CONTROLLER, software)?;
    fleet::follow(&mut m, arch, &steps, FIRST_STEP).map_err(server_said)?;
    let want = match &outcome {
        Outcome::Committed { .. } => Record { state: "Finished", sw_version: "2.0.0", log: vec![format!("berth: {id} committed")] },
        Outcome::Refused { reason } => {
            Record { state: "Error", sw_version: "1.0.0", log: vec![format!("berth: {id} refused"), "cause: bundle".into(), format!("detail: {reason}")] }
        }
        Outcome::RolledBack { changed, .. } => Record {
            state: "Error",
            sw_version: "1.0.0",
            log: vec![format!("berth: {id} rolled-back"), "cause: crash-loop".into(), format!("detail: {changed}")],
        },
    };
    recorded(&server, &mut m, &want).map_err(server_said)?;
    fleet::agent_said(&mut m, start, &said)?;
    fleet::no_other_errors(&m, &outcome)
}

/// Boots the `agent` build with the guest's connections to
/// `10.0.2.100:8080` handed to `guestfwd` (the server's relay).
fn boot(art: &Artifacts, name: &str, guestfwd: Option<String>) -> Result<Machine, String> {
    let runs = art.dir.join("runs");
    let data = runs.join(format!("{name}.img"));
    artifacts::fresh_data(art, &data)?;
    let opts = BootOpts { agent: true, cmdline: "berth.test=fleet".into(), guestfwd, ..Default::default() };
    let (prog, args) = artifacts::qemu_args(art, &data, &opts);
    let mut m = Machine::spawn(&format!("{}/{name}", art.board.arch.name()), &prog, &args)?;
    m.log_to(runs.join(format!("{name}.console.log")))?;
    m.set_data_image(data);
    Ok(m)
}

/// `fleet-wrong-ca`: the server's certificate is of another CA. The
/// agent logs `UnknownIssuer` and keeps retrying; for [`WATCH`] after
/// that, gooseBit never sees the device, berth gets no drop, and nothing
/// logs an error.
fn wrong_ca(root: &Path, art: &Artifacts, case: &str) -> Result<(), String> {
    let server = server(root, art, case, crate::testca::OTHER)?;
    let mut m = boot(art, case, Some(server.guestfwd()))?;
    fleet::boot(&mut m, art.board.arch.name())?;
    // The agent's first poll may come before `boot.ready`.
    m.set_cursor(0);
    let refused = "invalid peer certificate: UnknownIssuer";
    let said = |e: &qemu_tests::event::Event| e.is("name", fleet::AGENT) && e.get("line").is_some_and(|l| l.contains(refused));
    m.expect_event_where("container.log", said, REGISTER).map_err(|e| format!("the agent never said `{refused}`: {e}\nconsole:\n{}", m.tail(40)))?;
    let t0 = Instant::now();
    while t0.elapsed() < WATCH {
        m.poll();
        std::thread::sleep(Duration::from_millis(500));
    }
    let seen = &server.device(CONTROLLER)?["last_seen"];
    if !seen.is_null() {
        return Err(format!("gooseBit saw the device (last_seen {seen}) though its certificate is of an unknown CA"));
    }
    let got: Vec<String> = m.events().iter().filter(|e| e.name.starts_with("update.")).map(|e| e.name.clone()).collect();
    if !got.is_empty() {
        return Err(format!("berth logged update events with an untrusted server: {got:?}"));
    }
    if m.events().iter().any(|e| e.name == "container.exit" && e.is("name", fleet::AGENT)) {
        return Err("the agent exited instead of retrying".into());
    }
    fleet::no_errors_at_all(&m)
}

/// `fleet-confinement`: the agent's self-check, from the start of the
/// boot, exactly as expected; no error anywhere.
fn confinement(art: &Artifacts, case: &str) -> Result<(), String> {
    let want = fleet::self_check_expected();
    let mut m = boot(art, case, None)?;
    fleet::boot(&mut m, art.board.arch.name())?;
    m.set_cursor(0);
    fleet::self_check(&mut m, &want, REGISTER).map_err(|e| format!("{e}\nconsole:\n{}", m.tail(40)))?;
    fleet::no_errors_at_all(&m)
}

/// Waits until gooseBit has seen the device (the agent's first poll; the
/// device itself exists from [`Server::set_token`] on).
fn registered(server: &Server, m: &mut Machine) -> Result<(), String> {
    let t0 = Instant::now();
    loop {
        let e = match server.device(CONTROLLER) {
            Ok(d) if !d["last_seen"].is_null() => return Ok(()),
            Ok(d) => format!("not seen yet: {d}"),
            Err(e) => e,
        };
        if t0.elapsed() > REGISTER {
            return Err(format!("the agent did not register with gooseBit within {REGISTER:?}: {e}\nconsole:\n{}", m.tail(40)));
        }
        m.poll();
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// What gooseBit must record for the device.
struct Record {
    state: &'static str,
    sw_version: &'static str,
    /// Texts the device's update log must hold.
    log: Vec<String>,
}

/// Waits until gooseBit records the action closed, then checks the record.
fn recorded(server: &Server, m: &mut Machine, want: &Record) -> Result<(), String> {
    let t0 = Instant::now();
    let device = loop {
        let d = server.device(CONTROLLER)?;
        if d["last_state"] == want.state {
            break d;
        }
        if t0.elapsed() > RECORDED {
            return Err(format!("gooseBit's device is not `{}` within {RECORDED:?}: {d}\nconsole:\n{}", want.state, m.tail(40)));
        }
        m.poll();
        std::thread::sleep(Duration::from_millis(500));
    };
    if device["sw_version"] != want.sw_version {
        return Err(format!("gooseBit's device runs software {}, want {}", device["sw_version"], want.sw_version));
    }
    let log = server.device_log(CONTROLLER)?;
    match want.log.iter().find(|t| !log.contains(t.as_str())) {
        Some(t) => Err(format!("gooseBit's log of the device lacks `{t}`:\n{log}")),
        None => Ok(()),
    }
}
