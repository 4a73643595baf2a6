//! Manifest files as the user wrote them (host only): every error as
//! `FILE:LINE:COL: field F: reason`, all of a file's errors at once.
//!
//! It is host only: it must not be built into the device's berth, and it
//! must not re-serialise the text before reading it.
//!
//! This module owns the mapping from errors back into the original text.
//! The text is deserialised as written (never re-serialised first): a table
//! the device does not see (`[build]`) is skipped on the way, and a value the
//! host supplies (the image digest) is added on the way, so the `toml`
//! crate's spans point into the user's file. Errors found after
//! deserialisation name a field (`mounts[1].tmpfs_size`); `locate` finds
//! that field's value in a spanned tree of the same text. Lines and columns
//! are 1-based; columns count characters.
//!
//! A file that does not deserialise (bad syntax, a wrong type, an unknown
//! field) reports that one error: the `toml` crate stops at the first. A file
//! that does reports every value error of [`Manifest::field_errors`], the
//! gates, and whatever the caller adds (board checks) through [`located`].

use super::{err, Digest, Manifest, ManifestError};
use core::fmt;
use core::ops::Range;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, IntoDeserializer, MapAccess, Visitor};
use std::string::{String, ToString};
use std::vec::Vec;
use toml::Spanned;

/// Most errors reported at once (per file, and by xtask per manifest
/// directory); the rest are counted.
pub const ERRORS_MAX: usize = 50;

/// One error, placed in the file the user wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceError {
    pub file: String,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub col: usize,
    pub error: ManifestError,
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: field {}: {}", self.file, self.line, self.col, self.error.field, self.error.reason)
    }
}

impl std::error::Error for SourceError {}

/// How a host file differs from the device's manifest.
#[derive(Debug, Clone, Copy, Default)]
pub struct Host<'a> {
    /// Top-level keys that are the host's alone, skipped (`build`).
    pub skip: &'a [&'a str],
    /// The image digest, when the host supplies it; the file must not.
    pub image: Option<Digest>,
}

/// 1-based line and column (in characters) of byte `pos` of `text`.
pub fn line_col(text: &str, pos: usize) -> (usize, usize) {
    let mut pos = pos.min(text.len());
    while !text.is_char_boundary(pos) {
        pos -= 1;
    }
    let before = text.get(..pos).unwrap_or("");
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before.get(line_start..).map_or(0, |l| l.chars().count());
    (before.matches('\n').count() + 1, col + 1)
}

/// Parse and check one manifest file: `file` is the name shown in errors,
/// `stem` the name the manifest must carry. At most [`ERRORS_MAX`] errors.
pub fn parse(file: &str, stem: &str, text: &str, host: Host<'_>) -> Result<Manifest, Vec<SourceError>> {
    match read(file, stem, text, host) {
        (Some(m), errors) if errors.is_empty() => Ok(m),
        (_, errors) => Err(errors),
    }
}

/// Like [`parse`], but the manifest is returned whenever it deserialised,
/// with its value errors beside it (a caller may check more of it).
pub fn read(file: &str, stem: &str, text: &str, host: Host<'_>) -> (Option<Manifest>, Vec<SourceError>) {
    let tree = tree(text);
    let m = match deserialize(text, host) {
        Ok(m) => m,
        Err(e) => return (None, vec![toml_error(file, stem, text, tree.as_ref(), &e)]),
    };
    let mut errors = Vec::new();
    if m.name != stem {
        errors.push(err(stem, "name", format!("`{}` must equal the file name `{stem}`", m.name)));
    }
    errors.extend(m.field_errors());
    if errors.is_empty() {
        errors.extend(m.check_gates().err());
    }
    errors.truncate(ERRORS_MAX);
    let placed = errors.iter().map(|e| place(file, text, tree.as_ref(), e)).collect();
    (Some(m), placed)
}

/// Place an error about a manifest parsed from `text` (a board check, a
/// set-wide rule) at the field it names.
pub fn located(file: &str, text: &str, e: &ManifestError) -> SourceError {
    place(file, text, tree(text).as_ref(), e)
}

fn place(file: &str, text: &str, tree: Option<&Spanned<Node>>, e: &ManifestError) -> SourceError {
    let start = tree.and_then(|t| locate(t, &e.field)).map_or(0, |r| r.start);
    let (line, col) = line_col(text, start);
    SourceError { file: file.to_string(), line, col, error: e.clone() }
}

fn toml_error(file: &str, stem: &str, text: &str, tree: Option<&Spanned<Node>>, e: &toml::de::Error) -> SourceError {
    // One line: the `toml` crate may say more on further lines.
    let msg = e.message().lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ");
    let named = ["unknown field `", "missing field `", "duplicate field `"]
        .iter()
        .find_map(|p| msg.strip_prefix(p))
        .and_then(|rest| rest.split('`').next())
        .map(str::to_string);
    // A top-level field named by the message is placed at its value; any
    // other error at the `toml` crate's span, named by the value there.
    let at_named = named.as_deref().and_then(|n| tree.and_then(|t| top_level(t, n)));
    let start = at_named.or(e.span()).map_or(0, |r| r.start);
    let field = named
        .or_else(|| e.span().and_then(|s| tree.and_then(|t| path_at(t, s.start))))
        .or_else(|| e.span().and_then(|s| super::key_at(text, s.start)))
        .unwrap_or_else(|| "?".to_string());
    let (line, col) = line_col(text, start);
    SourceError { file: file.to_string(), line, col, error: err(stem, field, msg) }
}

/// The span of a top-level key's value.
fn top_level(root: &Spanned<Node>, key: &str) -> Option<Range<usize>> {
    match root.get_ref() {
        Node::Table(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v.span()),
        _ => None,
    }
}

/// The field path (`a.b[2].c`) of the innermost value holding byte `pos`.
fn path_at(root: &Spanned<Node>, pos: usize) -> Option<String> {
    let mut at = root;
    let mut path = String::new();
    loop {
        let next = match at.get_ref() {
            Node::Table(entries) => entries.iter().find(|(_, v)| v.span().contains(&pos)).map(|(k, v)| {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                v
            }),
            Node::Array(items) => items.iter().position(|v| v.span().contains(&pos)).and_then(|i| {
                path.push_str(&format!("[{i}]"));
                items.get(i)
            }),
            Node::Leaf => None,
        };
        match next {
            Some(n) => at = n,
            None => return (!path.is_empty()).then_some(path),
        }
    }
}

fn deserialize(text: &str, host: Host<'_>) -> Result<Manifest, toml::de::Error> {
    let de = toml::Deserializer::new(text);
    let image = host.image.map(|d| d.to_string());
    de.deserialize_map(Adapt { inner: core::marker::PhantomData::<Manifest>, skip: host.skip, image })
}

/// A value of the text, kept only for its span and its children's.
#[derive(Debug)]
enum Node {
    Table(Vec<(String, Spanned<Node>)>),
    Array(Vec<Spanned<Node>>),
    Leaf,
}

/// The spanned tree of `text` (none if it does not parse).
fn tree(text: &str) -> Option<Spanned<Node>> {
    let root: Node = toml::from_str(text).ok()?;
    Some(Spanned::new(0..0, root))
}

/// The span of the value a field path (`a.b[2].c`) names, or of its nearest
/// ancestor that has one.
fn locate(root: &Spanned<Node>, field: &str) -> Option<Range<usize>> {
    let mut at = root;
    let mut best = None;
    for part in field.split('.') {
        let (key, indices) = part.split_once('[').map_or((part, ""), |(k, rest)| (k, rest));
        if let Node::Table(entries) = at.get_ref() {
            match entries.iter().find(|(k, _)| k == key) {
                Some((_, v)) => at = v,
                None => break,
            }
        }
        best = Some(at.span()).filter(|s| !s.is_empty()).or(best);
        for index in indices.split('[').filter_map(|i| i.trim_end_matches(']').parse::<usize>().ok()) {
            match at.get_ref() {
                Node::Array(items) => match items.get(index) {
                    Some(v) => at = v,
                    None => return best,
                },
                _ => return best,
            }
            best = Some(at.span()).filter(|s| !s.is_empty()).or(best);
        }
    }
    best
}

impl<'de> de::Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a TOML value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element::<Spanned<Node>>()? {
            items.push(v);
        }
        Ok(Node::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(k) = map.next_key::<String>()? {
            let v = map.next_value::<Spanned<Node>>()?;
            entries.push((k, v));
        }
        Ok(Node::Table(entries))
    }
}

/// Deserialises the manifest from the top-level table, skipping the host's
/// keys and adding the image.
struct Adapt<'a, S> {
    inner: S,
    skip: &'a [&'a str],
    image: Option<String>,
}

impl<'de, S: DeserializeSeed<'de>> Visitor<'de> for Adapt<'_, S> {
    type Value = S::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a manifest table")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<S::Value, A::Error> {
        let access = AdaptMap { map, skip: self.skip, image: self.image, pending: None };
        self.inner.deserialize(de::value::MapAccessDeserializer::new(access))
    }
}

struct AdaptMap<'a, A> {
    map: A,
    skip: &'a [&'a str],
    image: Option<String>,
    pending: Option<String>,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for AdaptMap<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, A::Error> {
        loop {
            match self.map.next_key::<String>()? {
                Some(k) if self.skip.contains(&k.as_str()) => {
                    self.map.next_value::<IgnoredAny>()?;
                }
                Some(k) if k == "image" && self.image.is_some() => {
                    return Err(de::Error::custom("duplicate field `image`: it is set from the [build] table; remove it"));
                }
                Some(k) => return seed.deserialize(k.into_deserializer()).map(Some),
                None => {
                    let Some(image) = self.image.take() else {
                        return Ok(None);
                    };
                    self.pending = Some(image);
                    return seed.deserialize("image".into_deserializer()).map(Some);
                }
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        match self.pending.take() {
            Some(v) => seed.deserialize(v.into_deserializer()),
            None => self.map.next_value_seed(seed),
        }
    }
}

#[cfg(test)]
mod tests;
