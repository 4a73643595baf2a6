//! The fleet update scenarios (x86_64, variant `agent`, releases in
//! `qemu-tests/manifests/agent/`): a real gooseBit ([`crate::goosebit`]) on
//! the host's loopback offers a bundle to the guest's `berth-agent`, which
//! reaches it through QEMU's user network (`guestfwd`, [`BootOpts::guestfwd`]:
//! each connection to `10.0.2.100:8080` in the guest is relayed to the
//! server's port on 127.0.0.1 by a small relay QEMU starts for it; nothing
//! listens anywhere but on the host's loopback).
//!
//! Each case starts its own server, wraps the offered bundle as a `.swu`
//! ([`crate::swu::wrap`]), uploads it, boots the guest, waits for the agent
//! to register (its first poll), assigns the software to it, then checks:
//!
//! - berth's events, in the order computed before the run
//!   ([`qemu_tests::fleet::expected`]): the drop, the inbox, then staging,
//!   trial and commit of release 2 (`fleet-update`), or the refusal with
//!   its text (`fleet-untrusted`: the bundle of release 2 signed by a key
//!   the device does not trust);
//! - the agent's own account: its poll URL, the artifact by name and size,
//!   the drop with the bundle's id;
//! - gooseBit's record, through its management API: the device's last
//!   state `Finished` with software version `2.0.0`, or `Error` with
//!   berth's cause and refusal text in the device's log.

use crate::artifacts::{self, Artifacts, BootOpts};
use crate::goosebit::Server;
use qemu_tests::fleet::{self, Outcome};
use qemu_tests::machine::Machine;
use qemu_tests::scenario::Case;
use sha2::{Digest as _, Sha256};
use std::path::Path;
use std::time::{Duration, Instant};

/// The agent's controller id (its `agent.conf`).
pub const CONTROLLER: &str = "berth-test";
/// The release version the offered bundles carry.
const VERSION: u64 = 2;
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
}

/// The fleet cases of one architecture's builds whose name matches a filter.
pub fn cases(root: &Path, builds: &[(&'static str, Artifacts)], filters: &[String]) -> Vec<Case> {
    let Some(art) = builds.iter().find(|(v, _)| *v == "agent").map(|(_, a)| a) else { return Vec::new() };
    if art.board.arch != berth::release::board::Arch::X86_64 {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (case, offer) in [("fleet-update", Offer::Release2), ("fleet-untrusted", Offer::UntrustedKey)] {
        let name = format!("{}/{case}", art.board.arch.name());
        if filters.iter().any(|f| name.contains(f.as_str())) {
            let (root, art) = (root.to_path_buf(), art.clone());
            out.push(qemu_tests::scenario::case(name, move || run(&root, &art, case, offer)));
        }
    }
    out
}

/// The bundle file `offer` names, and what berth must do with it.
fn offered(art: &Artifacts, offer: Offer) -> Result<(std::path::PathBuf, Outcome), String> {
    let info = art.updates.as_ref().ok_or("the agent build carries no update bundles")?;
    match offer {
        Offer::Release2 => Ok((info.v2_bundle.clone(), Outcome::Committed { version: VERSION, changed: "sensor".into() })),
        Offer::UntrustedKey => {
            let r = info.refused.iter().find(|r| r.bundle.ends_with("/untrusted-key.bundle")).ok_or("no untrusted-key bundle among the refused ones")?;
            let dir = info.v2_bundle.parent().ok_or("the bundles have no directory")?;
            Ok((dir.join("refused").join("untrusted-key.bundle"), Outcome::Refused { reason: r.reason.clone() }))
        }
    }
}

/// One case: serve, boot, assign, judge.
pub fn run(root: &Path, art: &Artifacts, case: &str, offer: Offer) -> Result<(), String> {
    let arch = art.board.arch.name();
    let (path, outcome) = offered(art, offer)?;
    let bundle = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let id = format!("sha256:{}", crate::verity::hex(&Sha256::digest(&bundle)));
    let board = art.board.name.to_string();
    let file = crate::swu::bundle_name(&board, VERSION);
    let swu_name = format!("berth-{board}-{VERSION}.swu");
    // Computed before the run: berth's events and the agent's account.
    let steps = fleet::expected(&file, &outcome);
    let swu = crate::swu::wrap(&board, VERSION, &bundle)?;
    let said = [
        format!("polling http://10.0.2.100:8080/DEFAULT/controller/v1/{CONTROLLER}"),
        format!("{swu_name} ({} bytes)", swu.len()),
        format!("dropped /drop/{file} ({id})"),
    ];
    let runs = art.dir.join("runs");
    std::fs::create_dir_all(&runs).map_err(|e| format!("{}: {e}", runs.display()))?;
    let server = Server::start(root, runs.join(format!("{case}-goosebit")), None)?;
    let software = server.upload(&swu_name, &swu)?;
    let mut m = boot(art, case, server.guestfwd())?;
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
    };
    recorded(&server, &mut m, &want).map_err(server_said)?;
    fleet::agent_said(&mut m, start, &said)?;
    fleet::no_other_errors(&m, &outcome)
}

/// Boots the `agent` build with the guest's connections to
/// `10.0.2.100:8080` handed to `guestfwd` (the server's relay).
fn boot(art: &Artifacts, name: &str, guestfwd: String) -> Result<Machine, String> {
    let runs = art.dir.join("runs");
    let data = runs.join(format!("{name}.img"));
    artifacts::fresh_data(art, &data)?;
    let opts = BootOpts { agent: true, cmdline: "berth.test=fleet".into(), guestfwd: Some(guestfwd), ..Default::default() };
    let (prog, args) = artifacts::qemu_args(art, &data, &opts);
    let mut m = Machine::spawn(&format!("{}/{name}", art.board.arch.name()), &prog, &args)?;
    m.log_to(runs.join(format!("{name}.console.log")))?;
    m.set_data_image(data);
    Ok(m)
}

/// Waits until gooseBit knows the device (the agent's first poll).
fn registered(server: &Server, m: &mut Machine) -> Result<(), String> {
    let t0 = Instant::now();
    loop {
        let e = match server.device(CONTROLLER) {
            Ok(_) => return Ok(()),
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
