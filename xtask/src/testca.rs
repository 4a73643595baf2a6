//! Throwaway TLS material for the update agent's tests: a test CA and a
//! server certificate it signs (P-256 keys, made with the `openssl` CLI),
//! written into a directory the caller owns (under the target directory or
//! a test's temporary directory, removed with it). The server certificate
//! names [`SANS`]: the host's loopback address and the address a QEMU guest
//! reaches the host's server at. This module must not write anywhere but
//! the directory it is given, and its keys must not be used for anything
//! but a test server.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The server certificate's subject alternative names.
pub const SANS: &str = "IP:127.0.0.1,IP:10.0.2.100,DNS:localhost";
/// How long the certificates are valid, in days (from now).
const DAYS: &str = "30";

/// The files [`make`] writes.
#[derive(Debug, Clone)]
pub struct Material {
    /// The CA certificate (PEM): what a device's `ca_file` names (read
    /// by the host tests only).
    #[cfg_attr(not(test), allow(dead_code))]
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
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.pem", "-days", DAYS, "-subj", "/CN=berth test CA"]);
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
}
