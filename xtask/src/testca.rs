//! Throwaway TLS material for the update agent's tests: a test CA and a
//! server certificate it signs (P-256 keys, made with the `openssl` CLI),
//! written into a directory the caller owns (under the target directory or
//! a test's temporary directory, removed with it). The server certificate
//! names [`SANS`]: the host's loopback address and the address a QEMU guest
//! reaches the host's server at. [`shared`] keeps one such set per name
//! under the build's `target/berth/test-ca/`, made once and reused, so the
//! CA built into a test image (`[build] files` source `@test-ca`, see
//! [`crate::buildfiles`]) matches the server the QEMU cases start later.
//! This module must not write anywhere but the directory it is given (or
//! that one), and its keys must not be used for anything but a test server.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The server certificate's subject alternative names.
pub const SANS: &str = "IP:127.0.0.1,IP:10.0.2.100,DNS:localhost";
/// How long the certificates are valid, in days (from now).
const DAYS: &str = "30";
/// The CA the QEMU fleet cases' images trust (and their server's).
pub const TRUSTED: &str = "trusted";
/// Another CA (its own name too, so a device trusting [`TRUSTED`] finds
/// no issuer for its server's certificate: `UnknownIssuer`, not a bad
/// signature from a namesake), whose server certificate such a device
/// must refuse.
pub const OTHER: &str = "untrusted";
/// A [`shared`] set older than this, in days, is made afresh (before its
/// certificates expire).
const RENEW_DAYS: u64 = 20;

/// The files [`make`] writes.
#[derive(Debug, Clone)]
pub struct Material {
    /// The CA certificate (PEM): what a device's `ca_file` names.
    pub ca: PathBuf,
    /// The server's certificate (PEM).
    pub cert: PathBuf,
    /// The server's private key (PEM, PKCS#8).
    pub key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new("openssl").current_dir(dir).args(args).output().map_err(|e| format!("openssl (is it installed?): {e}"))?;
    if !out.status.success() {
        return Err(format!("openssl {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(())
}

/// Makes a fresh CA and a server certificate for [`SANS`] in `dir`
/// (created if needed).
pub fn make(dir: &Path) -> Result<Material, String> {
    make_named(dir, "berth test CA")
}

/// [`make`] with the CA's common name `cn`.
fn make_named(dir: &Path, cn: &str) -> Result<Material, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    let subject = format!("/CN={cn}");
    ca.extend(["-keyout", "ca.key", "-out", "ca.pem", "-days", DAYS, "-subj", &subject]);
    ca.extend(["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
    openssl(dir, &ca)?;
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend(["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=berth test server"]);
    openssl(dir, &csr)?;
    let ext = format!("subjectAltName={SANS}\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n");
    std::fs::write(dir.join("server.ext"), ext).map_err(|e| format!("{}: {e}", dir.display()))?;
    let sign = ["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.pem", "-days", DAYS];
    let mut sign = sign.to_vec();
    sign.extend(["-extfile", "server.ext"]);
    openssl(dir, &sign)?;
    Ok(Material { ca: dir.join("ca.pem"), cert: dir.join("server.pem"), key: dir.join("server.key") })
}

/// The test CA set `name` ([`TRUSTED`] or [`OTHER`]) of the checkout at
/// `root`, in `target/berth/test-ca/NAME/`: made on first use (or when
/// older than [`RENEW_DAYS`]), then the same files for every build and run.
pub fn shared(root: &Path, name: &str) -> Result<Material, String> {
    let dir = root.join("target").join("berth").join("test-ca").join(name);
    let m = Material { ca: dir.join("ca.pem"), cert: dir.join("server.pem"), key: dir.join("server.key") };
    let age = std::fs::metadata(&m.key).and_then(|meta| meta.modified()).ok().and_then(|t| t.elapsed().ok());
    let fresh = age.is_some_and(|a| a.as_secs() < RENEW_DAYS * 86_400) && m.ca.exists() && m.cert.exists();
    if fresh {
        return Ok(m);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let cn = if name == TRUSTED { "berth test CA".to_string() } else { format!("berth test CA {name}") };
    make_named(&dir, &cn)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The server certificate chains to the CA and carries the names.
    #[test]
    fn the_server_certificate_chains_to_the_ca_and_names_the_addresses() {
        let dir = std::env::temp_dir().join(format!("berth-testca-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let m = make(&dir).unwrap();
        let verify = Command::new("openssl").args(["verify", "-CAfile"]).arg(&m.ca).arg(&m.cert).output().unwrap();
        assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stderr));
        let text = Command::new("openssl").args(["x509", "-noout", "-ext", "subjectAltName", "-in"]).arg(&m.cert).output().unwrap();
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(text.contains("IP Address:127.0.0.1") && text.contains("IP Address:10.0.2.100"), "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A shared set is made once and then reused; the two sets differ.
    #[test]
    fn shared_sets_are_stable_and_distinct() {
        let root = std::env::temp_dir().join(format!("berth-testca-shared-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let a = shared(&root, TRUSTED).unwrap();
        let pem = std::fs::read(&a.ca).unwrap();
        assert_eq!(std::fs::read(shared(&root, TRUSTED).unwrap().ca).unwrap(), pem, "a second call made a new CA");
        let b = shared(&root, OTHER).unwrap();
        assert_ne!(std::fs::read(&b.ca).unwrap(), pem);
        let cross = Command::new("openssl").args(["verify", "-CAfile"]).arg(&a.ca).arg(&b.cert).output().unwrap();
        let said = String::from_utf8_lossy(&cross.stdout).to_string() + &String::from_utf8_lossy(&cross.stderr);
        assert!(!cross.status.success() && said.contains("unable to get local issuer certificate"), "{said}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
