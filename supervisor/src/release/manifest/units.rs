//! Human units in the TOML form of sizes and durations.
//!
//! It only reads text: it must not change the postcard form, which holds the
//! plain integers.
//!
//! This module owns the spelling of the manifest fields that are sizes
//! (bytes) or durations (milliseconds): an integer is the value in today's
//! unit, as before; a string carries a unit:
//!
//! - sizes: `"512K"`, `"16M"`, `"1G"`, `"1T"` (binary multiples: K = 1024;
//!   `KiB`, `MiB`, `GiB`, `TiB` mean the same);
//! - durations: `"500ms"`, `"10s"`, `"2m"`, `"1h"`.
//!
//! A decimal point is allowed when the result is a whole number of the
//! field's unit (`"1.5M"`, `"2.5s"`); anything else (negative values, an
//! unknown suffix, an inexact fraction, a value too big for the field) is an
//! error naming the accepted forms. The units exist only in text: the compact
//! (postcard) form the device reads holds the same integers as before, so
//! these helpers only read strings from human-readable formats.

use core::fmt;
use serde::de::{Deserialize, Deserializer, Error, Visitor};

/// What a field measures, with its accepted suffixes and their multipliers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Bytes.
    Size,
    /// Milliseconds.
    Duration,
}

const SIZES: &[(&str, u64)] =
    &[("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("TiB", 1 << 40), ("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30), ("T", 1 << 40)];
const DURATIONS: &[(&str, u64)] = &[("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000)];

impl Kind {
    fn suffixes(self) -> &'static [(&'static str, u64)] {
        match self {
            Kind::Size => SIZES,
            Kind::Duration => DURATIONS,
        }
    }

    /// The accepted forms, for error messages.
    pub fn forms(self) -> &'static str {
        match self {
            Kind::Size => "bytes as an integer, or a string like \"512K\", \"16M\", \"1G\", \"1T\" (K = 1024)",
            Kind::Duration => "milliseconds as an integer, or a string like \"500ms\", \"10s\", \"2m\", \"1h\"",
        }
    }
}

/// Parse a string with a unit into the field's unit (bytes or milliseconds).
/// The error says why, without the accepted forms (the caller adds them).
pub fn parse(kind: Kind, s: &str) -> Result<u64, &'static str> {
    let s = s.trim();
    let number_end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, suffix) = s.split_at(number_end);
    if s.starts_with('-') {
        return Err("must not be negative");
    }
    let Some(&(_, mult)) = kind.suffixes().iter().find(|(name, _)| *name == suffix.trim_start()) else {
        return Err(if suffix.is_empty() { "needs a unit" } else { "has an unknown unit" });
    };
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) || number.ends_with('.') {
        return Err("is not a number with a unit");
    }
    let whole: u64 = whole.parse().map_err(|_| "is too big")?;
    let mut value = u128::from(whole).checked_mul(u128::from(mult)).ok_or("is too big")?;
    if !frac.is_empty() {
        if frac.len() > 18 {
            return Err("has too many decimals");
        }
        let digits: u128 = frac.parse().map_err(|_| "is not a number with a unit")?;
        let scale = 10u128.pow(frac.len() as u32);
        let scaled = digits * u128::from(mult);
        if !scaled.is_multiple_of(scale) {
            return Err("is not a whole number of the field's unit");
        }
        value += scaled / scale;
    }
    u64::try_from(value).map_err(|_| "is too big")
}

/// Reads an integer (already in the field's unit) or a string with a unit.
struct Human(Kind);

impl<'de> Visitor<'de> for Human {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.forms())
    }

    fn visit_u64<E: Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }

    fn visit_i64<E: Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::custom(format!("{v} must not be negative; expected {}", self.0.forms())))
    }

    fn visit_str<E: Error>(self, v: &str) -> Result<u64, E> {
        parse(self.0, v).map_err(|why| E::custom(format!("\"{v}\" {why}; expected {}", self.0.forms())))
    }
}

/// A size or duration field as `T` (`u32` or `u64`).
fn read<'de, D, T>(kind: Kind, d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + TryFrom<u64>,
{
    if !d.is_human_readable() {
        return T::deserialize(d);
    }
    let v = d.deserialize_any(Human(kind))?;
    T::try_from(v).map_err(|_| D::Error::custom(format!("{v} is too big for this field; expected {}", kind.forms())))
}

/// `deserialize_with` for a size in bytes.
pub fn size<'de, D: Deserializer<'de>, T: Deserialize<'de> + TryFrom<u64>>(d: D) -> Result<T, D::Error> {
    read(Kind::Size, d)
}

/// `deserialize_with` for an optional size in bytes (with `#[serde(default)]`).
pub fn opt_size<'de, D: Deserializer<'de>, T: Deserialize<'de> + TryFrom<u64>>(d: D) -> Result<Option<T>, D::Error> {
    if !d.is_human_readable() {
        return Option::<T>::deserialize(d);
    }
    read(Kind::Size, d).map(Some)
}

/// `deserialize_with` for a duration in milliseconds.
pub fn ms<'de, D: Deserializer<'de>, T: Deserialize<'de> + TryFrom<u64>>(d: D) -> Result<T, D::Error> {
    read(Kind::Duration, d)
}

/// `deserialize_with` for an optional duration in milliseconds (with
/// `#[serde(default)]`).
pub fn opt_ms<'de, D: Deserializer<'de>, T: Deserialize<'de> + TryFrom<u64>>(d: D) -> Result<Option<T>, D::Error> {
    if !d.is_human_readable() {
        return Option::<T>::deserialize(d);
    }
    read(Kind::Duration, d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_size_suffix() {
        for (s, v) in [
            ("1K", 1024),
            ("512K", 512 << 10),
            ("16M", 16 << 20),
            ("1G", 1 << 30),
            ("1T", 1 << 40),
            ("4KiB", 4096),
            ("16MiB", 16 << 20),
            ("2GiB", 2 << 30),
            ("1TiB", 1 << 40),
            ("1.5M", 3 << 19),
            ("0.5K", 512),
            ("0K", 0),
            (" 8M ", 8 << 20),
        ] {
            assert_eq!(parse(Kind::Size, s), Ok(v), "{s}");
        }
    }

    #[test]
    fn every_duration_suffix() {
        for (s, v) in [("500ms", 500), ("10s", 10_000), ("2m", 120_000), ("1h", 3_600_000), ("2.5s", 2_500), ("0.001s", 1), ("0.5m", 30_000)] {
            assert_eq!(parse(Kind::Duration, s), Ok(v), "{s}");
        }
    }

    #[test]
    fn bad_forms_are_refused() {
        for (kind, s) in [
            (Kind::Size, "16"),
            (Kind::Size, "16X"),
            (Kind::Size, "16k"),
            (Kind::Size, "16MB"),
            (Kind::Size, "-1M"),
            (Kind::Size, "M"),
            (Kind::Size, ".5M"),
            (Kind::Size, "1.M"),
            (Kind::Size, "1.2.3M"),
            (Kind::Size, "0.3K"),
            (Kind::Size, ""),
            (Kind::Duration, "10"),
            (Kind::Duration, "10sec"),
            (Kind::Duration, "1d"),
            (Kind::Duration, "0.5ms"),
            (Kind::Duration, "1.0001s"),
            (Kind::Duration, "1e3ms"),
            (Kind::Duration, "0.1234567890123456789s"),
        ] {
            assert!(parse(kind, s).is_err(), "{s} was accepted");
        }
    }

    #[test]
    fn overflow_is_refused() {
        assert_eq!(parse(Kind::Size, "16777215T"), Ok(16_777_215 << 40));
        assert!(parse(Kind::Size, "16777216T").is_err());
        assert!(parse(Kind::Size, "99999999999999999999K").is_err());
        assert!(parse(Kind::Duration, "18446744073709551615ms").is_ok());
        assert!(parse(Kind::Duration, "18446744073709551616ms").is_err());
        assert!(parse(Kind::Duration, "9999999999999999h").is_err());
    }
}
