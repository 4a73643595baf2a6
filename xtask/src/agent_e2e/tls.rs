//! The agent's transport security against a real gooseBit: the server
//! speaks TLS with a certificate from a throwaway test CA
//! ([`crate::testca`]) and checks target tokens (`strict` device auth).
//! With the CA file and its token a deployment completes over https; a
//! wrong token is answered 401 and nothing else happens; without the CA
//! file the server is an unknown issuer and the agent goes on retrying,
//! downloading nothing; plain `http://` without `allow_plaintext` never
//! gets past the config.

use super::*;
use crate::goosebit::Options;

/// The device's target token (gooseBit keeps at most 32 characters).
const TOKEN: &str = "berth-test-token-0123456789";

fn tls_server(root: &Path, tag: &str) -> Server {
    // The test CA and the server's key live in the server's directory,
    // under the target directory, and go with it.
    let dir = crate::cargo_target_dir(root).join(format!("goosebit-{tag}-{}", std::process::id()));
    let opts = Options { tls: true, device_auth: true, ..Options::default() };
    Server::start_with(root, dir, &opts).unwrap_or_else(|e| panic!("gooseBit: {e}"))
}

fn ca_line(server: &Server) -> String {
    format!("ca_file = {}\n", server.ca_file().expect("a TLS server has a CA file").display())
}

#[test]
fn over_https_with_the_ca_file_and_the_target_token_a_deployment_completes() {
    let root = root();
    let agent = agent_binary(&root);
    let server = tls_server(&root, "tls");
    assert!(server.base().starts_with("https://127.0.0.1:"), "{}", server.base());
    let offer = Offer::new("tls");
    let software = offer.upload(&server);
    let dev = Device::with("tls-device", &server.base(), &format!("{}auth = TargetToken wrong-token\n", ca_line(&server)));
    server.set_token(dev.id, TOKEN).unwrap();

    // A wrong token: gooseBit answers 401; the agent says so and stops.
    let mut a = dev.spawn(&agent);
    wait_exit_code(&mut a, &dev, "tls-device: a wrong token", 1);
    let said = dev.log_text();
    assert!(said.contains("HTTP 401") && said.contains("Device authentication token does not match"), "no 401 in the agent's log:\n{said}");
    assert_ne!(server.device(dev.id).unwrap()["hardware"]["model"], BOARD, "config data got past a wrong token");

    // The right token: registration, download and result, all over TLS.
    dev.configure(&server.base(), &format!("{}auth = TargetToken {TOKEN}\n", ca_line(&server)));
    register(&server, &dev, &agent, software);
    let mut a = dev.spawn(&agent);
    assert!(dev.wait_drop(&mut a, &server) == offer.bundle, "the bundle dropped over TLS differs from the wrapped one");
    dev.status(&offer.committed(), VERSION);
    wait_exit(&mut a, &dev, "tls-device: the update");
    let d = server.device(dev.id).unwrap();
    assert_eq!((d["last_state"].as_str(), d["sw_version"].as_str()), (Some("Finished"), Some("7.0.0")), "{d}");
    let said = dev.log_text();
    assert!(said.contains(&format!("polling {}/DEFAULT/controller/v1/tls-device", server.base())), "{said}");
    for dir in [dev.dir, offer.work] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Mozilla's roots alone do not know the test CA: every request fails
/// the handshake with `UnknownIssuer`, which the agent logs and retries
/// (it keeps running); no request reaches gooseBit (it never saw the
/// device), so nothing is registered or downloaded.
#[test]
fn without_the_ca_file_the_server_is_an_unknown_issuer_and_nothing_is_downloaded() {
    let root = root();
    let agent = agent_binary(&root);
    let server = tls_server(&root, "tls-noca");
    let dev = Device::with("tls-no-ca", &server.base(), &format!("auth = TargetToken {TOKEN}\n"));
    server.set_token(dev.id, TOKEN).unwrap();
    let mut a = Command::new(&agent).arg(&dev.config).stderr(std::fs::File::create(dev.log()).unwrap()).spawn().unwrap();
    let t0 = Instant::now();
    while !dev.log_text().contains("invalid peer certificate: UnknownIssuer") {
        if let Ok(Some(st)) = a.try_wait() {
            panic!("the agent exited ({st}) instead of retrying:\n{}", dev.log_text());
        }
        assert!(t0.elapsed() < STEP, "no UnknownIssuer in the agent's log after {STEP:?}:\n{}", dev.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    let running = a.try_wait().unwrap().is_none();
    let _ = a.kill();
    let _ = a.wait();
    assert!(running, "the agent stopped after a TLS failure:\n{}", dev.log_text());
    assert_eq!((dev.count("drop"), dev.count("state")), (0, 0), "something was downloaded without a trusted server");
    assert_eq!(server.device(dev.id).unwrap()["last_seen"], serde_json::Value::Null, "gooseBit saw the device");
    let _ = std::fs::remove_dir_all(&dev.dir);
}

/// The server's certificate does not name 127.0.0.2 (a loopback relay to
/// it listens there): with the right CA file the agent still refuses it,
/// `NotValidForName`, and gooseBit never sees the device.
#[test]
fn a_certificate_for_another_name_is_refused() {
    let root = root();
    let agent = agent_binary(&root);
    let server = tls_server(&root, "tls-name");
    let relay = super::faults::CutRelay::start_on("127.0.0.2", server.device_port());
    let dev = Device::with("tls-name", &format!("https://127.0.0.2:{}", relay.port()), &format!("{}auth = TargetToken {TOKEN}\n", ca_line(&server)));
    server.set_token(dev.id, TOKEN).unwrap();
    let mut a = dev.spawn(&agent);
    wait_exit_code(&mut a, &dev, "tls-name: the wrong name", 1);
    let said = dev.log_text();
    assert!(said.contains("invalid peer certificate: certificate not valid for name \"127.0.0.2\""), "{said}");
    assert_eq!(server.device(dev.id).unwrap()["last_seen"], serde_json::Value::Null, "gooseBit saw the device");
    let _ = std::fs::remove_dir_all(&dev.dir);
}

/// `http://` without `allow_plaintext = true` is refused when the config
/// is read (exit 2), before any connection.
#[test]
fn plain_http_without_allow_plaintext_is_refused_at_config_load() {
    let agent = agent_binary(&root());
    let dev = Device::with("plain-refused", "http://127.0.0.1:1", "");
    let out = Command::new(&agent).arg(&dev.config).arg("--once").output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains("field `server`: http://127.0.0.1:1: plain http:// is refused unless the config says allow_plaintext = true"), "{said}");
    let _ = std::fs::remove_dir_all(&dev.dir);
}
