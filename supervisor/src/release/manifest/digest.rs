//! Content hashes of images: [`Digest`], written `sha256:<64 hex>` in TOML
//! and as the 32 raw bytes in postcard.
//!
//! It only parses and prints hashes: it must not compute one (the release
//! and verity code hash the bytes) nor accept any other spelling than
//! `sha256:` followed by 64 lowercase hex digits.

use core::fmt;
use heapless::String;
use serde::{Deserialize, Serialize};

/// A SHA-256 digest. In TOML it is written `sha256:<64 lowercase hex>`; in
/// postcard it is the 32 raw bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// Parse `sha256:<64 hex>`.
    pub fn parse(s: &str) -> Option<Digest> {
        let hex = s.strip_prefix("sha256:")?;
        let mut out = [0u8; 32];
        crate::release::hex_decode(hex, &mut out).then_some(Digest(out))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sha256:")?;
        crate::release::write_hex(f, &self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            let mut text: String<71> = String::new();
            // 71 bytes is exactly "sha256:" + 64 hex digits; cannot fail.
            let _ = fmt::write(&mut text, format_args!("{self}"));
            s.serialize_str(&text)
        } else {
            self.0.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Digest;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a content hash `sha256:<64 lowercase hex digits>`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Digest, E> {
                Digest::parse(v).ok_or_else(|| E::invalid_value(serde::de::Unexpected::Str(v), &self))
            }
        }
        if d.is_human_readable() {
            d.deserialize_str(V)
        } else {
            <[u8; 32]>::deserialize(d).map(Digest)
        }
    }
}
