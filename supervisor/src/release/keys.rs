//! Trusted release keys.
//!
//! It loads and checks public keys: it must not trust a private key or a key
//! whose file name does not match it.
//!
//! The system image holds several public keys so that keys can be rotated
//! without a reflash, one file each in one directory, in either of two forms:
//!
//! - `<id>.pub`, where `<id>` is the key id in 16 lowercase hex digits and the
//!   file holds the 32-byte Ed25519 public key as 64 hex digits (surrounding
//!   whitespace allowed); the loader checks that the name matches the key;
//! - `<any name>.pem`, an Ed25519 public key in PEM as `openssl pkey -pubout`
//!   writes it (see [`super::pem`] for exactly what is read). A PEM private
//!   key (`-----BEGIN PRIVATE KEY-----`, as `cargo xtask keygen` and
//!   `openssl genpkey` write it) is passed over: it is never trusted, and the
//!   image tools never copy it onto an image.
//!
//! A key id is the first 8 bytes of SHA-256 of the 32-byte public key,
//! whichever form the key came in. Other files in the directory are ignored.
//! Limits: at most [`KEYS_MAX`] keys, [`KEY_FILE_MAX`] bytes a file, and
//! 256 directory entries; a key trusted twice (say as both forms) is an error.

use super::pem::{self, PemError};
use core::fmt;
use ed25519_dalek::{VerifyingKey, PUBLIC_KEY_LENGTH};
use heapless::Vec;
use sha2::{Digest as _, Sha256};

/// Most trusted keys.
pub const KEYS_MAX: usize = 8;
/// Largest key file read (bytes).
pub const KEY_FILE_MAX: usize = super::pem::PEM_MAX;
/// Most directory entries looked at when loading keys.
const DIR_ENTRIES_MAX: usize = 256;

/// Names a signing key: the first 8 bytes of SHA-256 of its public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(pub [u8; 8]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        super::write_hex(f, &self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl KeyId {
    /// Parse 16 hex digits.
    pub fn parse(s: &str) -> Option<KeyId> {
        let mut id = [0u8; 8];
        super::hex_decode(s, &mut id).then_some(KeyId(id))
    }
}

/// The id of a public key.
pub fn key_id(key: &VerifyingKey) -> KeyId {
    id_of_bytes(key.as_bytes())
}

/// The id of a public key given as its 32 bytes.
fn id_of_bytes(key: &[u8; PUBLIC_KEY_LENGTH]) -> KeyId {
    let digest = Sha256::digest(key);
    let mut id = [0u8; 8];
    id.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
    KeyId(id)
}

/// One trusted public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustedKey {
    pub id: KeyId,
    pub key: VerifyingKey,
}

/// The keys a device accepts releases from.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    keys: Vec<TrustedKey, KEYS_MAX>,
}

/// A key that could not be loaded, parsed or added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    pub what: std::string::String,
    pub reason: std::string::String,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.reason)
    }
}

impl std::error::Error for KeyError {}

fn kerr(what: impl Into<std::string::String>, reason: impl Into<std::string::String>) -> KeyError {
    KeyError { what: what.into(), reason: reason.into() }
}

impl TrustedKeys {
    pub fn new() -> TrustedKeys {
        TrustedKeys::default()
    }

    /// Trust a public key given as 32 raw bytes.
    pub fn add_bytes(&mut self, bytes: &[u8; PUBLIC_KEY_LENGTH]) -> Result<KeyId, KeyError> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| kerr("public key", "is not an Ed25519 point"))?;
        self.add(key)
    }

    /// Trust a public key.
    pub fn add(&mut self, key: VerifyingKey) -> Result<KeyId, KeyError> {
        let id = key_id(&key);
        if key.is_weak() {
            return Err(kerr(format!("key {id}"), "is a weak (small-order) key"));
        }
        if self.get(&id).is_some() {
            return Err(kerr(format!("key {id}"), "is trusted twice"));
        }
        self.keys.push(TrustedKey { id, key }).map_err(|_| kerr(format!("key {id}"), format!("more than {KEYS_MAX} trusted keys")))?;
        Ok(id)
    }

    pub fn get(&self, id: &KeyId) -> Option<&VerifyingKey> {
        self.keys.iter().find(|k| &k.id == id).map(|k| &k.key)
    }

    pub fn iter(&self) -> impl Iterator<Item = &TrustedKey> {
        self.keys.iter()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Parse a key file's text: 64 hex digits, optional surrounding whitespace.
    pub fn parse_key_file(text: &str) -> Option<[u8; PUBLIC_KEY_LENGTH]> {
        let mut key = [0u8; PUBLIC_KEY_LENGTH];
        super::hex_decode(text.trim(), &mut key).then_some(key)
    }

    /// Load every key file in `dir` (see the module doc).
    pub fn load_dir(dir: &std::path::Path) -> Result<TrustedKeys, KeyError> {
        let shown = dir.display().to_string();
        let entries = std::fs::read_dir(dir).map_err(|e| kerr(&shown, e.to_string()))?;
        let mut keys = TrustedKeys::new();
        for (n, entry) in entries.enumerate() {
            if n >= DIR_ENTRIES_MAX {
                return Err(kerr(&shown, format!("more than {DIR_ENTRIES_MAX} entries")));
            }
            let entry = entry.map_err(|e| kerr(&shown, e.to_string()))?;
            let path = entry.path();
            let Some(bytes) = trusted_file(&path)? else {
                continue;
            };
            keys.add_bytes(&bytes).map_err(|e| kerr(path.display().to_string(), e.reason))?;
        }
        Ok(keys)
    }
}

/// Up to [`KEY_FILE_MAX`] bytes of a key file.
fn read_key_file(path: &std::path::Path) -> Result<std::vec::Vec<u8>, KeyError> {
    use std::io::Read;
    let what = || path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| kerr(what(), e.to_string()))?;
    let mut text = std::vec::Vec::new();
    file.take(KEY_FILE_MAX as u64 + 1).read_to_end(&mut text).map_err(|e| kerr(what(), e.to_string()))?;
    if text.len() > KEY_FILE_MAX {
        return Err(kerr(what(), format!("longer than {KEY_FILE_MAX} bytes")));
    }
    Ok(text)
}

/// 64 hex digits, or what is wrong with `text`.
fn hex_key(text: &[u8]) -> Result<[u8; PUBLIC_KEY_LENGTH], &'static str> {
    if pem::is_pem(text) {
        return Err("must hold the public key as 64 hex digits (a PEM public key goes in a file whose name ends .pem)");
    }
    core::str::from_utf8(text).ok().and_then(TrustedKeys::parse_key_file).ok_or("must hold the public key as 64 hex digits")
}

/// The public key a file of the keys directory contributes: `<id>.pub`
/// (its name checked against the key) or a `.pem` public key. `None` for
/// every other name and for a PEM private key.
fn trusted_file(path: &std::path::Path) -> Result<Option<[u8; PUBLIC_KEY_LENGTH]>, KeyError> {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Ok(None);
    };
    let what = || path.display().to_string();
    if let Some(stem) = name.strip_suffix(".pub") {
        let Some(id) = KeyId::parse(stem) else {
            return Err(kerr(what(), "file name must be the key id in 16 hex digits, then .pub (or end .pem for a PEM public key)"));
        };
        let bytes = hex_key(&read_key_file(path)?).map_err(|r| kerr(what(), r))?;
        let got = id_of_bytes(&bytes);
        if got != id {
            return Err(kerr(what(), format!("holds key {got}, not {id}")));
        }
        return Ok(Some(bytes));
    }
    if !name.ends_with(".pem") {
        return Ok(None);
    }
    match pem::public_key(&read_key_file(path)?) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(PemError::PrivateKey { .. }) => Ok(None),
        Err(e) => Err(kerr(what(), e.to_string())),
    }
}

/// The id of the key in `path`, whatever its name: a PEM public key, 64 hex
/// digits (when the name is `<id>.pub`, that id must match), and in host
/// builds a PKCS#8 PEM private key. Refuses a key a device would not trust.
pub fn file_key_id(path: &std::path::Path) -> Result<KeyId, KeyError> {
    let what = || path.display().to_string();
    let text = read_key_file(path)?;
    let bytes = if pem::is_pem(&text) {
        match pem::public_key(&text) {
            Ok(bytes) => bytes,
            Err(PemError::PrivateKey { .. }) => private_key_public(&text).map_err(|r| kerr(what(), r))?,
            Err(e) => return Err(kerr(what(), e.to_string())),
        }
    } else {
        hex_key(&text).map_err(|r| kerr(what(), r))?
    };
    let id = TrustedKeys::new().add_bytes(&bytes).map_err(|e| kerr(what(), e.reason))?;
    let named = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".pub")).and_then(KeyId::parse);
    match named {
        Some(named) if named != id => Err(kerr(what(), format!("holds key {id}, not {named}"))),
        _ => Ok(id),
    }
}

/// The public half of a PKCS#8 PEM private key.
#[cfg(any(feature = "host", test))]
fn private_key_public(text: &[u8]) -> Result<[u8; PUBLIC_KEY_LENGTH], std::string::String> {
    let text = core::str::from_utf8(text).map_err(|_| "holds a private key that is not text".to_owned())?;
    signing_key_from_pkcs8_pem(text).map(|k| k.verifying_key().to_bytes()).map_err(|e| format!("holds a private key that {}", e.reason))
}

/// The device build reads no private keys.
#[cfg(not(any(feature = "host", test)))]
fn private_key_public(_: &[u8]) -> Result<[u8; PUBLIC_KEY_LENGTH], std::string::String> {
    Err("holds a private key; this build reads public keys only (use the host build, or the public key)".into())
}

/// The file name and contents that trust `key` (see the module doc).
pub fn key_file(key: &VerifyingKey) -> (std::string::String, std::string::String) {
    let mut hex = std::string::String::new();
    let _ = super::write_hex(&mut hex, key.as_bytes());
    hex.push('\n');
    (format!("{}.pub", key_id(key)), hex)
}

/// A signing key from its 32-byte seed (the RFC 8032 private key).
#[cfg(any(feature = "host", test))]
pub fn signing_key_from_seed(seed: &[u8; 32]) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(seed)
}

/// A signing key from PKCS#8 PEM text, as `openssl genpkey -algorithm ed25519` writes it.
#[cfg(any(feature = "host", test))]
pub fn signing_key_from_pkcs8_pem(text: &str) -> Result<ed25519_dalek::SigningKey, KeyError> {
    use ed25519_dalek::pkcs8::{spki, DecodePrivateKey, Error};
    ed25519_dalek::SigningKey::from_pkcs8_pem(text).map_err(|e| match e {
        Error::PublicKey(spki::Error::OidUnknown { .. }) => kerr("private key", "is not an Ed25519 key (PKCS#8 of another algorithm)"),
        e => kerr("private key", format!("is not an Ed25519 PKCS#8 PEM key: {e}")),
    })
}

/// A fresh key pair from the kernel's random source: the private key as
/// PKCS#8 PEM text and the 32-byte public key.
#[cfg(any(feature = "host", test))]
pub fn keygen() -> Result<(std::string::String, [u8; PUBLIC_KEY_LENGTH]), KeyError> {
    use ed25519_dalek::pkcs8::{spki::der::pem::LineEnding, EncodePrivateKey};
    use std::io::Read;
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut seed)).map_err(|e| kerr("/dev/urandom", e.to_string()))?;
    let key = signing_key_from_seed(&seed);
    seed = [0; 32];
    let _ = seed;
    let pem = key.to_pkcs8_pem(LineEnding::LF).map_err(|e| kerr("private key", format!("does not encode: {e}")))?;
    Ok((pem.as_str().to_owned(), key.verifying_key().to_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_id_is_sha256_prefix() {
        let k = signing_key_from_seed(&[7; 32]).verifying_key();
        let d = Sha256::digest(k.as_bytes());
        assert_eq!(key_id(&k).0, d[..8]);
        assert_eq!(KeyId::parse(&key_id(&k).to_string()), Some(key_id(&k)));
    }

    #[test]
    fn load_dir_reads_keys_and_checks_names() {
        let dir = std::env::temp_dir().join(format!("berth-keys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let a = signing_key_from_seed(&[1; 32]).verifying_key();
        let b = signing_key_from_seed(&[2; 32]).verifying_key();
        for k in [a, b] {
            let (name, text) = key_file(&k);
            std::fs::write(dir.join(name), text).unwrap();
        }
        std::fs::write(dir.join("README"), "not a key").unwrap();
        let keys = TrustedKeys::load_dir(&dir).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys.get(&key_id(&a)), Some(&a));
        // A file whose name is not its key's id.
        let (_, text) = key_file(&a);
        std::fs::write(dir.join("0000000000000000.pub"), text).unwrap();
        let e = TrustedKeys::load_dir(&dir).unwrap_err();
        assert!(e.reason.contains("not 0000000000000000"), "{e}");
        std::fs::write(dir.join("0000000000000000.pub"), "zz").unwrap();
        assert!(TrustedKeys::load_dir(&dir).is_err());
        std::fs::remove_file(dir.join("0000000000000000.pub")).unwrap();
        std::fs::write(dir.join("bad.pub"), "zz").unwrap();
        assert!(TrustedKeys::load_dir(&dir).unwrap_err().reason.contains("16 hex"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// `key` as `openssl pkey -pubout` writes it.
    fn public_pem(key: &VerifyingKey) -> std::string::String {
        use ed25519_dalek::pkcs8::{spki::der::pem::LineEnding, EncodePublicKey};
        key.to_public_key_pem(LineEnding::LF).unwrap()
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("berth-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn load_dir_reads_pem_public_keys_and_passes_over_private_ones() {
        let dir = temp_dir("pem-keys");
        let a = signing_key_from_seed(&[1; 32]).verifying_key();
        let b = signing_key_from_seed(&[2; 32]).verifying_key();
        std::fs::write(dir.join("release-2025.pem"), public_pem(&a)).unwrap();
        let (name, text) = key_file(&b);
        std::fs::write(dir.join(name), text).unwrap();
        let (private, _) = keygen().unwrap();
        std::fs::write(dir.join("signing-key.pem"), private).unwrap();
        let keys = TrustedKeys::load_dir(&dir).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys.get(&key_id(&a)), Some(&a));
        assert_eq!(keys.get(&key_id(&b)), Some(&b));
        // The same key in both forms is trusted twice.
        std::fs::write(dir.join("b.pem"), public_pem(&b)).unwrap();
        assert!(TrustedKeys::load_dir(&dir).unwrap_err().reason.contains("twice"));
        // A PEM that is not an Ed25519 public key names the file and the fault.
        std::fs::write(dir.join("b.pem"), "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n").unwrap();
        let e = TrustedKeys::load_dir(&dir).unwrap_err();
        assert!(e.what.ends_with("b.pem") && e.reason.contains("no -----END PUBLIC KEY----- line"), "{e}");
        // A PEM key under a `.pub` name is pointed at `.pem`.
        std::fs::remove_file(dir.join("b.pem")).unwrap();
        std::fs::write(dir.join(format!("{}.pub", key_id(&a))), public_pem(&a)).unwrap();
        assert!(TrustedKeys::load_dir(&dir).unwrap_err().reason.contains("ends .pem"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn file_key_id_reads_every_form() {
        let dir = temp_dir("key-id");
        let signing = signing_key_from_seed(&[5; 32]);
        let key = signing.verifying_key();
        let id = key_id(&key);
        let (name, hex) = key_file(&key);
        let private = {
            use ed25519_dalek::pkcs8::{spki::der::pem::LineEnding, EncodePrivateKey};
            signing.to_pkcs8_pem(LineEnding::LF).unwrap().as_str().to_owned()
        };
        for (file, text) in [(name.as_str(), hex.as_str()), ("any-name.txt", hex.as_str()), ("k.pub.pem", &public_pem(&key)), ("k.pem", &private)] {
            std::fs::write(dir.join(file), text).unwrap();
            assert_eq!(file_key_id(&dir.join(file)), Ok(id), "{file}");
        }
        // Errors name the file and what is wrong.
        std::fs::write(dir.join("0000000000000000.pub"), &hex).unwrap();
        let e = file_key_id(&dir.join("0000000000000000.pub")).unwrap_err();
        assert!(e.what.ends_with("0000000000000000.pub") && e.reason == format!("holds key {id}, not 0000000000000000"), "{e}");
        std::fs::write(dir.join("junk"), "hello").unwrap();
        assert!(file_key_id(&dir.join("junk")).unwrap_err().reason.contains("64 hex digits"));
        std::fs::write(dir.join("big"), vec![b'a'; KEY_FILE_MAX + 1]).unwrap();
        assert!(file_key_id(&dir.join("big")).unwrap_err().reason.contains("longer than"));
        assert!(file_key_id(&dir.join("missing")).is_err());
        // Another algorithm's PKCS#8 key: a throwaway P-256 key made by `openssl genpkey` for this test.
        let ec = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg/obv+CtR7JffF9zg
NK5dxJxY2Gf+BzdmQ+GtWH/5JnWhRANCAAQzF9VcT5gXIsPF1mhPDzIRiR5kUtg4
/3s6HgU3pJKQG1dRuZaNVwFOev4d6WSiA4xE8aMNKBvW51QJjDZTd0/B
-----END PRIVATE KEY-----
";
        std::fs::write(dir.join("ec.pem"), ec).unwrap();
        assert_eq!(file_key_id(&dir.join("ec.pem")).unwrap_err().reason, "holds a private key that is not an Ed25519 key (PKCS#8 of another algorithm)");
        let mut ident = std::string::String::from("01");
        ident.push_str(&"0".repeat(62));
        std::fs::write(dir.join("weak"), ident).unwrap();
        assert!(file_key_id(&dir.join("weak")).unwrap_err().reason.contains("weak"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn at_most_keys_max_and_no_duplicates() {
        let mut keys = TrustedKeys::new();
        for i in 0..KEYS_MAX as u8 {
            keys.add(signing_key_from_seed(&[i + 10; 32]).verifying_key()).unwrap();
        }
        assert!(keys.add(signing_key_from_seed(&[99; 32]).verifying_key()).is_err());
        let mut one = TrustedKeys::new();
        let k = signing_key_from_seed(&[3; 32]).verifying_key();
        one.add(k).unwrap();
        assert!(one.add(k).unwrap_err().reason.contains("twice"));
        // The identity point is a weak key.
        let mut ident = [0u8; 32];
        ident[0] = 1;
        assert!(TrustedKeys::new().add_bytes(&ident).is_err());
    }

    #[test]
    fn keygen_round_trips_through_pem() {
        let (pem, public) = keygen().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let key = signing_key_from_pkcs8_pem(&pem).unwrap();
        assert_eq!(key.verifying_key().to_bytes(), public);
    }

    #[test]
    fn reads_openssl_pkcs8_pem() {
        let dir = std::env::temp_dir().join(format!("berth-openssl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let priv_path = dir.join("key.pem");
        let out = std::process::Command::new("openssl").args(["genpkey", "-algorithm", "ed25519", "-out"]).arg(&priv_path).output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => panic!("openssl cannot make an ed25519 key: {}", String::from_utf8_lossy(&o.stderr)),
            Err(e) => panic!(
                "cannot run openssl ({e}): this test compares with it \
                 (Debian package openssl; `cargo xtask test` installs it)"
            ),
        }
        let pem = std::fs::read_to_string(&priv_path).unwrap();
        let key = signing_key_from_pkcs8_pem(&pem).unwrap();
        // openssl's view of the public key: the last 32 bytes of the DER SPKI.
        let der = std::process::Command::new("openssl").args(["pkey", "-pubout", "-outform", "DER", "-in"]).arg(&priv_path).output().unwrap();
        assert!(der.status.success());
        assert_eq!(&der.stdout[der.stdout.len() - 32..], key.verifying_key().as_bytes());
        // openssl's PEM public key reads as the same key.
        let pem_out = std::process::Command::new("openssl").args(["pkey", "-pubout", "-in"]).arg(&priv_path).output().unwrap();
        assert!(pem_out.status.success());
        assert_eq!(&pem::public_key(&pem_out.stdout).unwrap(), key.verifying_key().as_bytes());
        assert!(signing_key_from_pkcs8_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
