//! Ed25519 public keys in PEM, as `openssl pkey -pubout` writes them.
//!
//! It only parses the text it is handed: it must not read files, and it
//! must not accept anything outside the form below (a private key is
//! refused).
//!
//! What is accepted, and nothing else:
//!
//! - one block `-----BEGIN PUBLIC KEY-----` ... `-----END PUBLIC KEY-----`
//!   (RFC 7468 armour), with only blank lines before and after it; LF or
//!   CRLF line ends;
//! - a body of standard base64 (RFC 4648 alphabet, `=` padding to a multiple
//!   of four, unused bits zero), split over lines of any length, with no
//!   other characters (no headers, no spaces inside a line);
//! - that decodes to the 44-byte DER of an Ed25519 SubjectPublicKeyInfo
//!   (RFC 8410): `30 2a 30 05 06 03 2b 65 70 03 21 00` and the 32-byte key.
//!
//! A file of more than [`PEM_MAX`] bytes is refused before it is looked at.
//! Every refusal says what is wrong: a private key instead of a public one,
//! another label, a missing END line, a second block, the first bad base64
//! character, or the algorithm of a key that is not Ed25519 (RSA, EC, ...).
//!
//! Written by hand rather than with a PEM/DER crate: the device binary has a
//! size budget, and this fixed form needs a few dozen lines. (Private keys
//! are only read on the host, where ed25519-dalek's PKCS#8 support is used.)

use core::fmt;

/// Largest PEM file looked at (bytes): room for an RSA-4096 public key, so
/// that one is refused for its algorithm rather than its size.
pub const PEM_MAX: usize = 4096;

/// The DER of an Ed25519 SubjectPublicKeyInfo up to the key: SEQUENCE (42
/// bytes) { SEQUENCE (5) { OID 1.3.101.112 }, BIT STRING (33, no unused bits) }.
const ED25519_SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
/// The only label accepted.
const LABEL: &str = "PUBLIC KEY";

/// Why a text is not an Ed25519 public key in PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PemError {
    /// More than [`PEM_MAX`] bytes.
    TooLong { len: usize },
    /// The first line that is not blank is not a BEGIN line.
    NoBegin,
    /// A private key (`PRIVATE KEY`, `EC PRIVATE KEY`, ...): never trusted.
    PrivateKey { label: String },
    /// Another kind of block (`CERTIFICATE`, `RSA PUBLIC KEY`, ...).
    OtherLabel { label: String },
    /// No END line after the body.
    NoEnd,
    /// The END line names another label.
    EndMismatch { label: String },
    /// A second block after the first.
    SecondBlock,
    /// Text after the END line.
    AfterEnd,
    /// The body is not strict base64.
    Base64(String),
    /// The body is not an Ed25519 SubjectPublicKeyInfo.
    NotEd25519(String),
}

impl fmt::Display for PemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PemError::TooLong { len } => write!(f, "{len} bytes, longer than the {PEM_MAX} a PEM public key may have"),
            PemError::NoBegin => write!(f, "no -----BEGIN {LABEL}----- line (text before it is not allowed)"),
            PemError::PrivateKey { label } => write!(f, "holds a private key ({label}), not a public key"),
            PemError::OtherLabel { label } => write!(f, "holds a {label}, not a {LABEL}"),
            PemError::NoEnd => write!(f, "no -----END {LABEL}----- line"),
            PemError::EndMismatch { label } => write!(f, "the END line names {label}, not {LABEL}"),
            PemError::SecondBlock => write!(f, "a second PEM block after the key (one key per file)"),
            PemError::AfterEnd => write!(f, "text after the END line"),
            PemError::Base64(why) => write!(f, "bad base64: {why}"),
            PemError::NotEd25519(why) => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for PemError {}

/// The 32-byte Ed25519 public key in `text` (see the module doc).
pub fn public_key(text: &[u8]) -> Result<[u8; 32], PemError> {
    let der = decode(text)?;
    ed25519_spki(&der).map_err(PemError::NotEd25519)
}

/// True when `text` looks like PEM (its first non-blank bytes are `-----BEGIN `).
pub fn is_pem(text: &[u8]) -> bool {
    text.trim_ascii_start().starts_with(b"-----BEGIN ")
}

/// The label of an armour line `-----BEGIN <label>-----` (or END).
fn armour<'a>(line: &'a [u8], word: &str) -> Option<&'a str> {
    let rest = line.strip_prefix(b"-----")?.strip_prefix(word.as_bytes())?.strip_prefix(b" ")?;
    let label = rest.strip_suffix(b"-----")?;
    core::str::from_utf8(label).ok()
}

/// A label for an error message: printable ASCII, at most 40 characters.
fn shown(label: &str) -> String {
    label.chars().take(40).map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }).collect()
}

/// The DER inside the one `PUBLIC KEY` block of `text`.
pub fn decode(text: &[u8]) -> Result<Vec<u8>, PemError> {
    if text.len() > PEM_MAX {
        return Err(PemError::TooLong { len: text.len() });
    }
    let mut lines = text.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let begin = lines.by_ref().find(|l| !l.trim_ascii().is_empty()).ok_or(PemError::NoBegin)?;
    match armour(begin, "BEGIN") {
        Some(LABEL) => {}
        Some(l) if l.ends_with("PRIVATE KEY") => return Err(PemError::PrivateKey { label: shown(l) }),
        Some(l) => return Err(PemError::OtherLabel { label: shown(l) }),
        None => return Err(PemError::NoBegin),
    }
    let mut body = Vec::new();
    let mut ended = false;
    for line in lines.by_ref() {
        if line.starts_with(b"-----") {
            match armour(line, "END") {
                Some(LABEL) => {}
                Some(l) => return Err(PemError::EndMismatch { label: shown(l) }),
                None => return Err(PemError::NoEnd),
            }
            ended = true;
            break;
        }
        body.extend_from_slice(line);
    }
    if !ended {
        return Err(PemError::NoEnd);
    }
    if let Some(extra) = lines.find(|l| !l.trim_ascii().is_empty()) {
        return Err(if armour(extra, "BEGIN").is_some() { PemError::SecondBlock } else { PemError::AfterEnd });
    }
    base64_decode(&body).map_err(PemError::Base64)
}

/// The value of a base64 character.
fn sextet(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Strict standard base64: the alphabet only, padded to a multiple of four,
/// `=` only at the end, unused bits zero.
pub fn base64_decode(s: &[u8]) -> Result<Vec<u8>, String> {
    if s.is_empty() {
        return Err("the body is empty".into());
    }
    if let Some((i, &c)) = s.iter().enumerate().find(|(_, &c)| c != b'=' && sextet(c).is_none()) {
        let what = if c.is_ascii_graphic() { format!("'{}'", c as char) } else { format!("byte 0x{c:02x}") };
        return Err(format!("{what} at character {} is not base64", i + 1));
    }
    if !s.len().is_multiple_of(4) {
        return Err(format!("{} characters, not a multiple of 4 (padding missing or text cut short)", s.len()));
    }
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let quads = s.len() / 4;
    for (q, quad) in s.chunks_exact(4).enumerate() {
        let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && q + 1 != quads) {
            return Err(format!("padding '=' inside the text (character {})", q * 4 + 4 - pad + 1));
        }
        let mut acc: u32 = 0;
        for (i, &c) in quad.iter().take(4 - pad).enumerate() {
            let Some(v) = sextet(c) else {
                return Err(format!("padding '=' inside the text (character {})", q * 4 + i + 1));
            };
            acc |= u32::from(v) << (18 - 6 * i);
        }
        let [_, a, b, c] = acc.to_be_bytes();
        let bytes = [a, b, c];
        let used = 3 - pad;
        if bytes.iter().skip(used).any(|&x| x != 0) {
            return Err("the bits after the last byte are not zero".into());
        }
        out.extend(bytes.iter().take(used));
    }
    Ok(out)
}

/// The key in an Ed25519 SubjectPublicKeyInfo, or why `der` is not one.
pub fn ed25519_spki(der: &[u8]) -> Result<[u8; 32], String> {
    if let Some(key) = der.strip_prefix(&ED25519_SPKI_PREFIX[..]) {
        if let Ok(key) = <[u8; 32]>::try_from(key) {
            return Ok(key);
        }
    }
    const NOT: &str = "not an Ed25519 SubjectPublicKeyInfo";
    let Some(oid) = algorithm_oid(der) else {
        return Err(format!("{NOT}: not the DER of a SubjectPublicKeyInfo ({} bytes)", der.len()));
    };
    let Some(dotted) = oid_text(oid) else {
        return Err(format!("{NOT}: malformed algorithm OID"));
    };
    if dotted != "1.3.101.112" {
        let name = oid_name(&dotted).map(|n| format!(" ({n})")).unwrap_or_default();
        return Err(format!("not an Ed25519 key: algorithm OID {dotted}{name}"));
    }
    Err(format!("{NOT}: algorithm Ed25519, but not its one valid 44-byte form (this is {} bytes)", der.len()))
}

/// One DER element: its tag, its contents and what follows it. Lengths up
/// to two bytes (65535), which covers every public key.
fn tlv(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = match first {
        0..=0x7f => (usize::from(first), rest),
        0x81 => {
            let (&n, rest) = rest.split_first()?;
            (usize::from(n), rest)
        }
        0x82 => {
            let (n, rest) = rest.split_first_chunk::<2>()?;
            (usize::from(u16::from_be_bytes(*n)), rest)
        }
        _ => return None,
    };
    let (content, rest) = rest.split_at_checked(len)?;
    Some((tag, content, rest))
}

/// The contents of the algorithm OID in a SubjectPublicKeyInfo:
/// SEQUENCE { SEQUENCE { OID, parameters }, BIT STRING }.
fn algorithm_oid(der: &[u8]) -> Option<&[u8]> {
    let (0x30, spki, _) = tlv(der)? else { return None };
    let (0x30, alg, _) = tlv(spki)? else { return None };
    let (0x06, oid, _) = tlv(alg)? else { return None };
    Some(oid)
}

/// An OID's dotted text; None when malformed or absurdly long.
fn oid_text(oid: &[u8]) -> Option<String> {
    use fmt::Write as _;
    if oid.is_empty() || oid.len() > 32 {
        return None;
    }
    let mut arcs: Vec<u64> = Vec::new();
    let mut v: u64 = 0;
    for (i, &b) in oid.iter().enumerate() {
        if v == 0 && b == 0x80 {
            return None; // not minimally encoded
        }
        v = v.checked_mul(128)? | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (v / 40).min(2);
                arcs.push(first);
                arcs.push(v - first * 40);
            } else {
                arcs.push(v);
            }
            v = 0;
        } else if i + 1 == oid.len() {
            return None; // the last arc is cut short
        }
    }
    let mut s = String::new();
    for (i, a) in arcs.iter().enumerate() {
        let _ = write!(s, "{}{a}", if i == 0 { "" } else { "." });
    }
    Some(s)
}

/// A name for the public key algorithms people are likely to try.
fn oid_name(dotted: &str) -> Option<&'static str> {
    Some(match dotted {
        "1.2.840.113549.1.1.1" => "RSA",
        "1.2.840.113549.1.1.10" => "RSA-PSS",
        "1.2.840.10045.2.1" => "EC",
        "1.2.840.10040.4.1" => "DSA",
        "1.3.101.110" => "X25519",
        "1.3.101.111" => "X448",
        "1.3.101.113" => "Ed448",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8032's first test key, as `openssl pkey -pubout` writes it.
    const RFC8032: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n-----END PUBLIC KEY-----\n";
    const RFC8032_KEY: [u8; 32] = [
        0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64, 0x07, 0x3a, 0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf,
        0x02, 0x1a, 0x68, 0xf7, 0x07, 0x51, 0x1a,
    ];
    const EC_P256: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEMxfVXE+YFyLDxdZoTw8yEYkeZFLY
OP97Oh4FN6SSkBtXUbmWjVcBTnr+HelkogOMRPGjDSgb1udUCYw2U3dPwQ==
-----END PUBLIC KEY-----
";
    const RSA_1024: &str = "-----BEGIN PUBLIC KEY-----
MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQC/Ktu0W6SdWrquSNP3gxXf9Nm+
5Y8kzYJ3XxE4rIJZ1qz1ayjiBcxCiCGRggsTzT01yO655uYQLHsXzZzYKyy+c8yg
Y11rQY7uvHsEZo2w0A9Tah8cAQ0+LJ8Ir8kuZojTaAPhzFBnDwcpvyaZFFclFcGZ
UzOPvovP9CDxhEDc7wIDAQAB
-----END PUBLIC KEY-----
";
    const ED448: &str = "-----BEGIN PUBLIC KEY-----
MEMwBQYDK2VxAzoAaO8kH6DgRqvWo9NzBL+ldASW8zDICyYvrL0lWdYBKIqv9WIO
MjqC+JlnOLQv0aOwqMaTQgood9yA
-----END PUBLIC KEY-----
";
    const X25519: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VuAyEAPKfXJZ/1IxtMWDiOy1700b2fdrxVCl6YxoJyUSiov1o=\n-----END PUBLIC KEY-----\n";

    fn err(text: &str) -> String {
        public_key(text.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn reads_the_openssl_form() {
        assert_eq!(public_key(RFC8032.as_bytes()), Ok(RFC8032_KEY));
        // CRLF, blank lines around the block, no final newline, the body split.
        let crlf = RFC8032.replace('\n', "\r\n");
        assert_eq!(public_key(format!("\n\n{crlf}\n").as_bytes()), Ok(RFC8032_KEY));
        assert_eq!(public_key(RFC8032.trim_end().as_bytes()), Ok(RFC8032_KEY));
        let split = RFC8032.replace("AYKx", "AYKx\n");
        assert_eq!(public_key(split.as_bytes()), Ok(RFC8032_KEY));
        assert!(is_pem(format!("\n  {RFC8032}").as_bytes()));
        assert!(!is_pem(b"d75a980182b10ab7"));
    }

    #[test]
    fn names_other_algorithms() {
        assert_eq!(err(EC_P256), "not an Ed25519 key: algorithm OID 1.2.840.10045.2.1 (EC)");
        assert_eq!(err(RSA_1024), "not an Ed25519 key: algorithm OID 1.2.840.113549.1.1.1 (RSA)");
        assert_eq!(err(ED448), "not an Ed25519 key: algorithm OID 1.3.101.113 (Ed448)");
        assert_eq!(err(X25519), "not an Ed25519 key: algorithm OID 1.3.101.110 (X25519)");
    }

    #[test]
    fn refuses_other_blocks() {
        let private = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n";
        assert_eq!(public_key(private.as_bytes()), Err(PemError::PrivateKey { label: "PRIVATE KEY".into() }));
        let ec = "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n";
        assert!(matches!(public_key(ec.as_bytes()), Err(PemError::PrivateKey { .. })));
        let cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert_eq!(err(cert), "holds a CERTIFICATE, not a PUBLIC KEY");
        assert_eq!(public_key(b"d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a\n"), Err(PemError::NoBegin));
        assert_eq!(public_key(format!("comment\n{RFC8032}").as_bytes()), Err(PemError::NoBegin));
        assert_eq!(public_key(b""), Err(PemError::NoBegin));
        assert_eq!(public_key(b"-----BEGIN PUBLIC KEY----"), Err(PemError::NoBegin));
    }

    #[test]
    fn refuses_broken_armour() {
        let no_end = RFC8032.replace("-----END PUBLIC KEY-----\n", "");
        assert_eq!(public_key(no_end.as_bytes()), Err(PemError::NoEnd));
        let cut_end = RFC8032.replace("-----END PUBLIC KEY-----", "-----END PUBLIC KEY");
        assert_eq!(public_key(cut_end.as_bytes()), Err(PemError::NoEnd));
        let other_end = RFC8032.replace("END PUBLIC", "END PRIVATE");
        assert_eq!(public_key(other_end.as_bytes()), Err(PemError::EndMismatch { label: "PRIVATE KEY".into() }));
        let two = format!("{RFC8032}\n{EC_P256}");
        assert_eq!(public_key(two.as_bytes()), Err(PemError::SecondBlock));
        let trailing = format!("{RFC8032}garbage\n");
        assert_eq!(public_key(trailing.as_bytes()), Err(PemError::AfterEnd));
        let header = RFC8032.replace("-----\nMCow", "-----\nProc-Type: 4,ENCRYPTED\nMCow");
        assert!(err(&header).contains("'-' at character 5 is not base64"), "{}", err(&header));
        let long = format!("{RFC8032}{}", "\n".repeat(PEM_MAX));
        assert_eq!(public_key(long.as_bytes()), Err(PemError::TooLong { len: long.len() }));
    }

    #[test]
    fn base64_is_strict() {
        assert_eq!(base64_decode(b"TWFu"), Ok(b"Man".to_vec()));
        assert_eq!(base64_decode(b"TWE="), Ok(b"Ma".to_vec()));
        assert_eq!(base64_decode(b"TQ=="), Ok(b"M".to_vec()));
        assert_eq!(base64_decode(b"+/+/"), Ok(vec![0xfb, 0xff, 0xbf]));
        for bad in [&b""[..], b"TWE", b"TQ", b"TWFu=", b"T===", b"====", b"TQ==TWFu", b"TW=u", b"TWF\xff", b"TW u", b"TW-_", b"TR=="] {
            assert!(base64_decode(bad).is_err(), "{:?} decoded", String::from_utf8_lossy(bad));
        }
        assert_eq!(base64_decode(b"TR==").unwrap_err(), "the bits after the last byte are not zero");
        assert_eq!(base64_decode(b"TWF\x01").unwrap_err(), "byte 0x01 at character 4 is not base64");
    }

    #[test]
    fn refuses_wrong_der() {
        let mut good = ED25519_SPKI_PREFIX.to_vec();
        good.extend_from_slice(&RFC8032_KEY);
        assert_eq!(ed25519_spki(&good), Ok(RFC8032_KEY));
        // Truncated, extra bytes, a different length byte: each refused.
        for n in 0..good.len() {
            assert!(ed25519_spki(&good[..n]).is_err(), "{n} bytes accepted");
        }
        let mut extra = good.clone();
        extra.push(0);
        assert!(ed25519_spki(&extra).unwrap_err().contains("this is 45 bytes"));
        let mut unused_bits = good.clone();
        unused_bits[11] = 1;
        assert!(ed25519_spki(&unused_bits).unwrap_err().contains("not its one valid 44-byte form"));
        assert!(ed25519_spki(&[0x30, 0x84, 0, 0, 0, 0]).unwrap_err().contains("not the DER"));
        // A malformed OID (its last arc cut short).
        assert!(ed25519_spki(&[0x30, 0x06, 0x30, 0x04, 0x06, 0x02, 0x2b, 0x85]).unwrap_err().contains("malformed algorithm OID"));
        // Truncated base64 of a real key.
        let cut = RFC8032.replace("URo=", "");
        assert!(err(&cut).contains("not the DER") || err(&cut).contains("44-byte"), "{}", err(&cut));
    }

    #[test]
    fn no_panic_on_any_short_input() {
        // Every prefix of a valid file, and every single-byte change of it.
        let text = RFC8032.as_bytes();
        for n in 0..text.len() {
            let _ = public_key(&text[..n]);
            for b in [0u8, b'-', b'=', b'\n', b'A', 0xff] {
                let mut t = text.to_vec();
                t[n] = b;
                let _ = public_key(&t);
            }
        }
        for oid in [&[][..], &[0x80], &[0x80, 0x01], &[0xff; 40], &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]] {
            let _ = oid_text(oid);
        }
        assert_eq!(oid_text(&[0x2b, 0x65, 0x70]).as_deref(), Some("1.3.101.112"));
    }
}
