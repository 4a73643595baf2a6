//! The update agent (`manifests/agent`, host build) against a real DDI
//! server, gooseBit ([`crate::goosebit`]), on the build host: no QEMU, no
//! berth — the test plays berth's part by writing the status view's
//! `status.json`. Runs with the host unit tests (`cargo xtask test`);
//! a gooseBit that cannot be installed or started fails it.
//!
//! One server, two devices:
//! - `test-device`: registers (config data shows up in gooseBit), gets a
//!   `.swu` made by [`crate::swu::wrap`] around a real signed bundle
//!   assigned, drops the bundle byte-identical to the wrapped one (which
//!   berth's own bundle check accepts), and once the status view says that
//!   bundle is `committed`, gooseBit records the action finished;
//! - `test-device-2`: the same release, resumed from a `.part` holding the
//!   first half of the `.swu`; the status view says `rolled-back` with a
//!   cause, and gooseBit records the failure with the cause in its log.
//!
//! Transport security ([`tls`]) and download faults ([`faults`]) have their
//! own servers.

mod faults;
mod tls;

use crate::goosebit::Server;
use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const BOARD: &str = "qemu-x86_64";
const VERSION: u64 = 7;
/// The longest a step may take (a drop, an agent's exit).
const STEP: Duration = Duration::from_secs(30);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

/// The agent's host binary, built for this test.
fn agent_binary(root: &Path) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    crate::run_cmd(Command::new(cargo).current_dir(root).args(["build", "--quiet", "--package", "berth-agent"])).expect("building berth-agent");
    crate::cargo_target_dir(root).join("debug").join("berth-agent")
}

/// A device's directories and config.
struct Device {
    id: &'static str,
    dir: PathBuf,
    config: PathBuf,
}

impl Device {
    /// A device of `server`: plain HTTP allowed when the server has no
    /// TLS, its CA file when it has.
    fn new(id: &'static str, server: &Server) -> Device {
        let mut extra = String::new();
        if let Some(ca) = server.ca_file() {
            extra.push_str(&format!("ca_file = {}\n", ca.display()));
        } else {
            extra.push_str("allow_plaintext = true\n");
        }
        Device::with(id, &server.base(), &extra)
    }

    /// A device polling `base`, with `extra` config lines.
    fn with(id: &'static str, base: &str, extra: &str) -> Device {
        let dir = std::env::temp_dir().join(format!("berth-agent-e2e-{id}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["drop", "state", "status"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let dev = Device { id, config: dir.join("agent.conf"), dir };
        dev.configure(base, extra);
        dev.status("null", 3);
        dev
    }

    /// Rewrites the agent's config: poll `base`, plus `extra` lines.
    fn configure(&self, base: &str, extra: &str) {
        let text = format!(
            "server = {base}\ntenant = DEFAULT\ncontroller_id = {}\nboard = {BOARD}\ndrop_dir = {d}/drop\nstate_dir = {d}/state\nstatus_dir = {d}/status\nrequest_timeout_s = 10\n{extra}",
            self.id,
            d = self.dir.display()
        );
        std::fs::write(&self.config, text).unwrap();
    }

    /// Files in one of the device's directories.
    fn count(&self, sub: &str) -> usize {
        std::fs::read_dir(self.dir.join(sub)).unwrap().count()
    }

    /// Writes `status.json` the way berth does (a temporary name, a rename).
    fn status(&self, update: &str, release: u64) {
        let text = format!(
            r#"{{"format":1,"berth":"0.1.0","release":{{"version":{release},"key_id":"k","phase":"committed"}},"containers":[],"staging":false,"update":{update}}}"#
        );
        let tmp = self.dir.join("status").join(".status.json.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(tmp, self.dir.join("status").join("status.json")).unwrap();
    }

    fn spawn(&self, agent: &Path) -> Child {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log()).unwrap();
        Command::new(agent).arg(&self.config).arg("--once").stderr(log).spawn().expect("starting berth-agent")
    }

    /// The agent's stderr, all runs.
    fn log(&self) -> PathBuf {
        self.dir.join("agent.log")
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }

    fn bundle_path(&self) -> PathBuf {
        self.dir.join("drop").join(crate::swu::bundle_name(BOARD, VERSION))
    }

    /// Waits for the dropped bundle while the agent runs.
    fn wait_drop(&self, agent: &mut Child, server: &Server) -> Vec<u8> {
        let t0 = Instant::now();
        while !self.bundle_path().exists() {
            if let Ok(Some(st)) = agent.try_wait() {
                panic!("{}: the agent exited ({st}) before dropping the bundle:\n{}\nserver log:\n{}", self.id, self.log_text(), server.log_tail());
            }
            assert!(t0.elapsed() < STEP, "{}: no bundle in the drop directory after {STEP:?}", self.id);
            std::thread::sleep(Duration::from_millis(100));
        }
        std::fs::read(self.bundle_path()).unwrap()
    }
}

fn wait_exit(agent: &mut Child, dev: &Device, what: &str) {
    wait_exit_code(agent, dev, what, 0);
}

/// Waits for the agent's exit with status `code`.
fn wait_exit_code(agent: &mut Child, dev: &Device, what: &str, code: i32) {
    let t0 = Instant::now();
    loop {
        if let Some(st) = agent.try_wait().unwrap() {
            assert_eq!(st.code(), Some(code), "{what}: the agent exited with {st}:\n{}", dev.log_text());
            return;
        }
        if t0.elapsed() > STEP {
            let _ = agent.kill();
            panic!("{what}: the agent did not finish within {STEP:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A real signed bundle of release [`VERSION`] for [`BOARD`] (one small
/// image with its verity tree, signed by a test key), as `cargo xtask
/// bundle` writes them; returns its bytes and the key that verifies it.
fn signed_bundle(dir: &Path) -> (Vec<u8>, berth::release::TrustedKeys) {
    use berth::release::manifest::{Digest, Manifest};
    let path = dir.join("app.img");
    let data: Vec<u8> = (0..16 * 4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(&path, &data).unwrap();
    let verity = crate::verity::append_tree(&path, None).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let img = crate::image::Image { path, size: bytes.len() as u64, sha256: Sha256::digest(&bytes).into(), verity };
    let text = format!("name = \"app\"\nversion = \"1\"\nimage = \"sha256:{}\"\n[entry]\nargv = [\"/app\"]\n", crate::verity::hex(&img.sha256));
    let release = berth::release::Release {
        version: VERSION,
        board: BOARD.try_into().unwrap(),
        downgrade: None,
        containers: vec![Manifest::from_toml("app", &text).unwrap()].try_into().unwrap(),
        images: vec![berth::release::Image { sha256: Digest(img.sha256), size: img.size, verity_root: img.verity.root, verity_salt: img.verity.salt }]
            .try_into()
            .unwrap(),
        commit_window_s: 30,
        reboot: false,
        trial_deadline_s: 600,
        system: None,
    };
    let key = berth::release::signing_key_from_seed(&[7; 32]);
    let mut keys = berth::release::TrustedKeys::new();
    keys.add(key.verifying_key()).unwrap();
    let signed = berth::release::sign(&release, &key).unwrap();
    let out = dir.join("release.bundle");
    crate::bundle::write(&out, &signed, &[&img]).unwrap();
    (std::fs::read(&out).unwrap(), keys)
}

/// The release a test's server offers, in its own work directory.
struct Offer {
    work: PathBuf,
    bundle: Vec<u8>,
    /// The bundle's id in berth's status view (`sha256:...`).
    id: String,
    swu: Vec<u8>,
}

impl Offer {
    fn new(tag: &str) -> Offer {
        let work = std::env::temp_dir().join(format!("berth-agent-e2e-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work).unwrap();
        let (bundle, _) = signed_bundle(&work);
        let id = format!("sha256:{}", crate::verity::hex(&Sha256::digest(&bundle)));
        let swu = crate::swu::wrap(BOARD, VERSION, &bundle).unwrap();
        Offer { work, bundle, id, swu }
    }

    fn upload(&self, server: &Server) -> u64 {
        server.upload(&self.swu_name(), &self.swu).unwrap()
    }

    fn swu_name(&self) -> String {
        format!("berth-{BOARD}-{VERSION}.swu")
    }

    /// berth's status view saying this bundle is committed.
    fn committed(&self) -> String {
        format!(r#"{{"seq":1,"id":"{}","bundle":"b","version":{VERSION},"phase":"committed","result":"ok","cause":null,"detail":""}}"#, self.id)
    }
}

/// Registers the device (its config data), then assigns the software.
fn register(server: &Server, dev: &Device, agent: &Path, software: u64) {
    let mut a = dev.spawn(agent);
    wait_exit(&mut a, dev, &format!("{}: registration", dev.id));
    let d = server.device(dev.id).unwrap();
    assert_eq!(d["hardware"]["model"], BOARD, "{}: config data not in gooseBit: {d}", dev.id);
    assert_eq!(d["sw_version"], "3.0.0", "{}: config data not in gooseBit: {d}", dev.id);
    server.assign(dev.id, software).unwrap();
}

/// A config the agent cannot use stops it with exit status 2 and a
/// message naming the field.
#[test]
fn a_bad_config_exits_2_naming_the_field() {
    let agent = agent_binary(&root());
    let path = std::env::temp_dir().join(format!("berth-agent-badconf-{}", std::process::id()));
    std::fs::write(&path, "server = http://127.0.0.1:1\ncontroller_id = d\nboard = b\ndrop_dir = /d\nstate_dir = /s\nallow_plaintext = true\n").unwrap();
    let out = Command::new(&agent).arg(&path).output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains("field `tenant`: missing"), "{said}");
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn the_agent_against_goosebit_reports_success_and_a_rollback() {
    let root = root();
    let agent = agent_binary(&root);
    let server =
        Server::start(&root, std::env::temp_dir().join(format!("berth-goosebit-{}", std::process::id())), None).unwrap_or_else(|e| panic!("gooseBit: {e}"));
    let work = std::env::temp_dir().join(format!("berth-agent-e2e-bundle-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let (bundle, keys) = signed_bundle(&work);
    let id = format!("sha256:{}", crate::verity::hex(&Sha256::digest(&bundle)));
    let swu = crate::swu::wrap(BOARD, VERSION, &bundle).unwrap();
    let software = server.upload(&format!("berth-{BOARD}-{VERSION}.swu"), &swu).unwrap();

    // Success: the bundle arrives whole; "committed" closes the action.
    let one = Device::new("test-device", &server);
    register(&server, &one, &agent, software);
    let mut a = one.spawn(&agent);
    assert!(one.wait_drop(&mut a, &server) == bundle, "the dropped bundle differs from the wrapped one");
    let file = std::fs::File::open(one.bundle_path()).unwrap();
    let checked = berth::release::bundle::check_file(&file, &keys, Some(BOARD), None).unwrap_or_else(|e| panic!("berth refuses the dropped bundle: {e}"));
    assert_eq!(checked.verified.release.version, VERSION);
    let pending = std::fs::read_to_string(one.dir.join("state").join("pending.json")).unwrap();
    assert!(pending.contains(&id) && pending.contains("\"expected_version\":7"), "{pending}");
    one.status(&format!(r#"{{"seq":1,"id":"{id}","bundle":"b","version":7,"phase":"committed","result":"ok","cause":null,"detail":""}}"#), 7);
    wait_exit(&mut a, &one, "test-device: the update");
    let d = server.device(one.id).unwrap();
    assert_eq!((d["last_state"].as_str(), d["sw_version"].as_str()), (Some("Finished"), Some("7.0.0")), "{d}");
    let log = server.device_log(one.id).unwrap();
    assert!(log.contains(&format!("berth: {id} committed")), "{log}");
    assert!(!one.dir.join("state").join("pending.json").exists(), "the pending action outlived its feedback");

    // Failure, after a resumed download: the cause reaches gooseBit.
    let two = Device::new("test-device-2", &server);
    register(&server, &two, &agent, software);
    // gooseBit offers SHA-1 only; the agent names its partial file by it.
    let sha1 = crate::verity::hex(&sha1::Sha1::digest(&swu));
    std::fs::write(two.dir.join("state").join(format!("{sha1}.part")), &swu[..swu.len() / 2]).unwrap();
    let mut a = two.spawn(&agent);
    assert!(two.wait_drop(&mut a, &server) == bundle, "the resumed download's bundle differs");
    two.status(
        &format!(
            r#"{{"seq":2,"id":"{id}","bundle":"b","version":7,"phase":"rolled-back","result":"failed","cause":"crash-loop","detail":"sensor exited 3 times"}}"#
        ),
        3,
    );
    wait_exit(&mut a, &two, "test-device-2: the update");
    let half = swu.len() / 2;
    let said = two.log_text();
    assert!(said.contains(&format!("resuming berth-{BOARD}-{VERSION}.swu at byte {half} of {} (206)", swu.len())), "no ranged resume:\n{said}");
    let d = server.device(two.id).unwrap();
    assert_eq!(d["last_state"], "Error", "{d}");
    let log = server.device_log(two.id).unwrap();
    assert!(log.contains("cause: crash-loop") && log.contains("detail: sensor exited 3 times"), "{log}");
    for dir in [one.dir, two.dir, work] {
        let _ = std::fs::remove_dir_all(dir);
    }
}
