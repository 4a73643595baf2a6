//! Trusted release keys.
//!
//! The system image holds several public keys so that keys can be rotated
//! without a reflash. Each is a file `<id>.pub` in one directory, where `<id>`
//! is the key id in 16 lowercase hex digits and the file holds the 32-byte
//! Ed25519 public key as 64 hex digits (a trailing newline is allowed). A key
//! id is the first 8 bytes of SHA-256 of the 32-byte public key; the loader
//! checks that the file name matches. Other files in the directory are ignored.

use core::fmt;
use ed25519_dalek::{VerifyingKey, PUBLIC_KEY_LENGTH};
use heapless::Vec;
use sha2::{Digest as _, Sha256};

/// Most trusted keys.
pub const KEYS_MAX: usize = 8;
/// Largest key file read (bytes).
pub const KEY_FILE_MAX: usize = 256;
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
    let digest = Sha256::digest(key.as_bytes());
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

    /// Load every `<id>.pub` in `dir` (at most [`KEYS_MAX`]).
    pub fn load_dir(dir: &std::path::Path) -> Result<TrustedKeys, KeyError> {
        use std::io::Read;
        let shown = dir.display().to_string();
        let entries = std::fs::read_dir(dir).map_err(|e| kerr(&shown, e.to_string()))?;
        let mut keys = TrustedKeys::new();
        for (n, entry) in entries.enumerate() {
            if n >= DIR_ENTRIES_MAX {
                return Err(kerr(&shown, format!("more than {DIR_ENTRIES_MAX} entries")));
            }
            let entry = entry.map_err(|e| kerr(&shown, e.to_string()))?;
            let path = entry.path();
            let name = entry.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".pub")) else {
                continue;
            };
            let what = path.display().to_string();
            let Some(id) = KeyId::parse(stem) else {
                return Err(kerr(what, "file name must be the key id in 16 hex digits, then .pub"));
            };
            let file = std::fs::File::open(&path).map_err(|e| kerr(&what, e.to_string()))?;
            let mut text = std::string::String::new();
            file.take(KEY_FILE_MAX as u64 + 1).read_to_string(&mut text).map_err(|e| kerr(&what, e.to_string()))?;
            if text.len() > KEY_FILE_MAX {
                return Err(kerr(what, format!("longer than {KEY_FILE_MAX} bytes")));
            }
            let Some(bytes) = Self::parse_key_file(&text) else {
                return Err(kerr(what, "must hold the public key as 64 hex digits"));
            };
            let got = keys.add_bytes(&bytes).map_err(|e| kerr(&what, e.reason))?;
            if got != id {
                return Err(kerr(what, format!("holds key {got}, not {id}")));
            }
        }
        Ok(keys)
    }
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
    use ed25519_dalek::pkcs8::DecodePrivateKey;
    ed25519_dalek::SigningKey::from_pkcs8_pem(text).map_err(|e| kerr("private key", format!("is not an Ed25519 PKCS#8 PEM key: {e}")))
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
        assert!(signing_key_from_pkcs8_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
