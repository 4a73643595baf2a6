//! Keys as people make them: an Ed25519 pair made by the `openssl` command
//! signs a release, and `berth verify --keys DIR`, with DIR holding only the
//! PEM public key openssl wrote, accepts it and refuses every other key.
//!
//! The release is signed twice: through berth's own signing path (the
//! PKCS#8 PEM private key read as `cargo xtask release --key` reads it) and
//! by `openssl pkeyutl` over the same bytes; Ed25519 signatures are
//! deterministic, so both objects must be identical. openssl is required:
//! without it these tests fail, naming it. `berth verify` is in the host
//! build only, so without the `host` feature they fail too (`cargo test` at
//! the workspace root and `cargo xtask test` build berth with it).

#[cfg(not(feature = "host"))]
#[test]
fn openssl_keys_need_the_host_build() {
    panic!("these tests run `berth verify`, which only the host build has: run them with `--features host` (as `cargo test` at the workspace root does)");
}

#[cfg(feature = "host")]
mod with_openssl {
    use berth::release::{self, Release};
    use sha2::{Digest as _, Sha256};
    use std::path::{Path, PathBuf};
    use std::process::{Command, Output};

    const BOARD: &str = "openssl-test";

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("berth-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Run openssl; it must be there and succeed.
    fn openssl(args: &[&str]) -> Output {
        let out = match Command::new("openssl").args(args).output() {
            Ok(o) => o,
            Err(e) => panic!(
                "cannot run openssl ({e}): this test makes its keys with it \
                 (Debian package openssl; `cargo xtask test` installs it)"
            ),
        };
        assert!(out.status.success(), "openssl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        out
    }

    fn berth(args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_berth")).args(args).output().unwrap()
    }

    fn s(p: &Path) -> &str {
        p.to_str().unwrap()
    }

    /// An openssl-made key pair: the PKCS#8 private key and the SPKI public key, both PEM.
    struct Pair {
        private: PathBuf,
        public: PathBuf,
    }

    fn pair(dir: &Path, name: &str) -> Pair {
        let private = dir.join(format!("{name}.pem"));
        let public = dir.join(format!("{name}.pub.pem"));
        openssl(&["genpkey", "-algorithm", "ed25519", "-out", s(&private)]);
        openssl(&["pkey", "-in", s(&private), "-pubout", "-out", s(&public)]);
        Pair { private, public }
    }

    /// A keys directory holding only `public`, under a name of its own.
    fn trusting(dir: &Path, name: &str, public: &Path) -> PathBuf {
        let keys = dir.join(name);
        std::fs::create_dir_all(&keys).unwrap();
        std::fs::copy(public, keys.join("release-key.pem")).unwrap();
        keys
    }

    /// `berth keyid FILE`'s output.
    fn keyid(file: &Path) -> String {
        let out = berth(&["keyid", s(file)]);
        assert!(out.status.success(), "berth keyid {}: {}", file.display(), String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// The key id computed here from openssl's DER form of the public key.
    fn keyid_from_der(public: &Path) -> [u8; 8] {
        let der = openssl(&["pkey", "-pubin", "-in", s(public), "-outform", "DER"]).stdout;
        assert_eq!(der.len(), 44, "openssl's Ed25519 SubjectPublicKeyInfo");
        let digest = Sha256::digest(&der[12..]);
        digest[..8].try_into().unwrap()
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn payload() -> Vec<u8> {
        let mut board = berth::release::board::Name::new();
        board.push_str(BOARD).unwrap();
        let r = Release { version: 1, ..Release::empty(board) };
        r.validate().unwrap();
        r.encode_payload().unwrap()
    }

    /// The signed release object, its signature made by `openssl pkeyutl`.
    fn signed_by_openssl(dir: &Path, payload: &[u8], id: [u8; 8], private: &Path) -> Vec<u8> {
        let mut out = release::MAGIC.to_vec();
        out.push(release::FORMAT);
        out.extend_from_slice(&id);
        out.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_le_bytes());
        out.extend_from_slice(payload);
        let (msg, sig) = (dir.join("signed-bytes"), dir.join("signature"));
        std::fs::write(&msg, &out).unwrap();
        openssl(&["pkeyutl", "-sign", "-rawin", "-inkey", s(private), "-in", s(&msg), "-out", s(&sig)]);
        let sig = std::fs::read(&sig).unwrap();
        assert_eq!(sig.len(), release::SIG_LEN, "openssl's Ed25519 signature");
        out.extend_from_slice(&sig);
        out
    }

    /// `berth verify --keys keys file`: its success and its whole output.
    fn verify(keys: &Path, file: &Path) -> (bool, String) {
        let out = berth(&["verify", "--keys", s(keys), "--board", BOARD, s(file)]);
        (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }

    #[test]
    fn openssl_key_pair_signs_and_verifies_end_to_end() {
        let dir = temp_dir("openssl-e2e");
        let (a, b) = (pair(&dir, "a"), pair(&dir, "b"));
        // The key id, from the public and from the private key, is the one
        // computed independently from openssl's DER.
        let id = keyid_from_der(&a.public);
        assert_eq!(keyid(&a.public), hex(&id));
        assert_eq!(keyid(&a.private), hex(&id));
        let (trust_a, trust_b) = (trusting(&dir, "trust-a", &a.public), trusting(&dir, "trust-b", &b.public));

        let payload = payload();
        let key = release::signing_key_from_pkcs8_pem(&std::fs::read_to_string(&a.private).unwrap()).unwrap();
        let by_berth = release::sign_payload(&payload, &key).unwrap();
        let by_openssl = signed_by_openssl(&dir, &payload, id, &a.private);
        assert_eq!(by_berth, by_openssl, "berth's and openssl's Ed25519 signatures over the same bytes differ");
        let file = dir.join("release.bin");
        std::fs::write(&file, &by_openssl).unwrap();

        let (ok, out) = verify(&trust_a, &file);
        assert!(ok, "berth verify refused the openssl-signed release: {out}");
        assert!(out.contains(&format!("key {}", hex(&id))) && out.contains("version 1"), "{out}");
        // Trusting only the other openssl key: refused, naming the signer.
        let (ok, out) = verify(&trust_b, &file);
        assert!(!ok && out.contains(&format!("signed by key {}, which this device does not trust", hex(&id))), "{out}");
        // Signed by the other key but claiming the trusted key's id: refused.
        let forged = dir.join("forged.bin");
        std::fs::write(&forged, signed_by_openssl(&dir, &payload, id, &b.private)).unwrap();
        let (ok, out) = verify(&trust_a, &forged);
        assert!(!ok && out.contains("release signature does not verify"), "{out}");
        // Signed by the other key under its own id: that key is not trusted.
        let other = dir.join("other.bin");
        std::fs::write(&other, signed_by_openssl(&dir, &payload, keyid_from_der(&b.public), &b.private)).unwrap();
        let (ok, out) = verify(&trust_a, &other);
        assert!(!ok && out.contains("which this device does not trust"), "{out}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn keyid_and_verify_name_what_is_wrong() {
        let dir = temp_dir("openssl-bad-keys");
        let ec = dir.join("ec.pem");
        openssl(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", s(&ec)]);
        let ec_public = dir.join("ec.pub.pem");
        openssl(&["pkey", "-in", s(&ec), "-pubout", "-out", s(&ec_public)]);
        let out = berth(&["keyid", s(&ec_public)]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains("ec.pub.pem") && err.contains("algorithm OID 1.2.840.10045.2.1 (EC)"), "{err}");
        let out = berth(&["keyid", s(&dir.join("missing.pem"))]);
        assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("missing.pem"));
        // A keys directory with an EC key in it is refused as a whole.
        let keys = trusting(&dir, "keys", &ec_public);
        let (ok, out) = verify(&keys, &ec_public);
        assert!(!ok && out.contains("release-key.pem") && out.contains("not an Ed25519 key"), "{out}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
