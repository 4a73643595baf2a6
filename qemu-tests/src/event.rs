//! Parsing berth's machine-readable event lines (and the test agent's lines).
//!
//! An event line, as berth writes it on the console:
//!
//! ```text
//! BERTH t=<seconds since boot, 6 decimals> ev=<name> key=value key="quoted value" ...
//! ```
//!
//! A value is bare (non-empty, bytes in `[A-Za-z0-9._/:+,@%-]`) or double-quoted
//! with `\"`, `\\`, `\n` and `\xNN` escapes. Keys are `[a-z0-9_.]+`.
//!
//! The console is shared with the kernel, so the parser looks for `BERTH t=`
//! anywhere in the line (printk text or a `\r` may come first) and stops at
//! the first raw `\r` after it (a valid event never contains one: control
//! bytes are always escaped). Anything that does not parse completely is not
//! an event: [`parse_line`] returns `None`, it never panics.
//!
//! berth cuts lines longer than its line buffer and then ends them with
//! ` trunc=1`; the cut may fall inside a quoted value. Such a line is parsed
//! leniently: the complete fields are kept, a partial last field is dropped and
//! the field `trunc=1` is kept last.

/// One parsed `BERTH` event line.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Seconds since boot (guest `CLOCK_MONOTONIC`).
    pub t: f64,
    /// The event name (`ev=`), e.g. `boot.ready`.
    pub name: String,
    /// The other `key=value` pairs, in line order, values unescaped.
    /// `t` and `ev` are not included.
    pub fields: Vec<(String, String)>,
}

impl Event {
    /// The value of the first field named `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// True when the field `key` exists and has exactly the value `value`.
    pub fn is(&self, key: &str, value: &str) -> bool {
        self.get(key) == Some(value)
    }
}

const MARKER: &str = "BERTH t=";

/// Parse one console line. `None` when the line holds no well-formed event.
///
/// If `BERTH t=` occurs several times (a line cut and restarted by
/// interleaved output), the first occurrence that parses wins.
pub fn parse_line(line: &str) -> Option<Event> {
    parse_with_text(line).map(|(ev, _)| ev)
}

/// [`parse_line`], also returning the event's text: from `BERTH t=` to the
/// end of the line or the first `\r`, trailing blanks trimmed.
pub fn parse_with_text(line: &str) -> Option<(Event, &str)> {
    let mut from = 0;
    while let Some(pos) = line[from..].find(MARKER) {
        let start = from + pos;
        let rest = &line[start + MARKER.len()..];
        let rest = match rest.find('\r') {
            Some(cr) => &rest[..cr],
            None => rest,
        };
        // The kernel may print in the middle of berth's line: cut at its
        // timestamp (`[    3.388616] ...`), which berth never writes bare.
        let rest = match kernel_stamp(rest) {
            Some(at) => &rest[..at],
            None => rest,
        };
        if let Some(ev) = parse_event_body(rest) {
            let text = &line[start..start + MARKER.len() + rest.len()];
            return Some((ev, text.trim_end_matches([' ', '\t', '\n'])));
        }
        from = start + MARKER.len();
    }
    None
}

/// Where a kernel log timestamp `[ seconds.micros]` starts in `s`, if any.
fn kernel_stamp(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while let Some(off) = s.get(i..).and_then(|r| r.find('[')) {
        let at = i + off;
        let mut j = at + 1;
        while b.get(j) == Some(&b' ') {
            j += 1;
        }
        let digits = |mut k: usize| {
            let s0 = k;
            while b.get(k).is_some_and(u8::is_ascii_digit) {
                k += 1;
            }
            (k > s0).then_some(k)
        };
        if let Some(k) = digits(j) {
            if b.get(k) == Some(&b'.') {
                if let Some(k2) = digits(k + 1) {
                    if b.get(k2) == Some(&b']') {
                        return Some(at);
                    }
                }
            }
        }
        i = at + 1;
    }
    None
}

/// Parse what follows `BERTH t=`.
fn parse_event_body(body: &str) -> Option<Event> {
    let body = body.trim_end_matches([' ', '\t', '\n']);
    match parse_fields(body.as_bytes(), false) {
        Some(ev) => Some(ev),
        None => {
            // A cut line: `... key="partial trunc=1`.
            let head = body.strip_suffix(" trunc=1")?;
            let mut ev = parse_fields(head.as_bytes(), true)?;
            if ev.get("trunc").is_none() {
                ev.fields.push(("trunc".to_string(), "1".to_string()));
            }
            Some(ev)
        }
    }
}

/// Parse `<t> ev=<name>( key=value)*`. With `lenient`, a malformed last field
/// is dropped instead of rejecting the line (the time and name must be whole).
fn parse_fields(b: &[u8], lenient: bool) -> Option<Event> {
    let mut i = 0;
    // Time: digits, optionally '.' digits.
    let t_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    if i == t_start {
        return None;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let frac = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == frac {
            return None;
        }
    }
    let t: f64 = std::str::from_utf8(&b[t_start..i]).ok()?.parse().ok()?;
    if !t.is_finite() {
        return None;
    }
    // Name.
    i = skip_spaces(b, i)?;
    if !b[i..].starts_with(b"ev=") {
        return None;
    }
    i += 3;
    let (name, next) = parse_bare(b, i)?;
    i = next;
    let mut ev = Event { t, name, fields: Vec::new() };
    // Fields.
    while i < b.len() {
        let parsed = skip_spaces(b, i).and_then(|j| parse_pair(b, j));
        match parsed {
            Some((k, v, next)) => {
                if k == "t" || k == "ev" {
                    if lenient {
                        break;
                    }
                    return None;
                }
                ev.fields.push((k, v));
                i = next;
            }
            None => {
                if lenient {
                    break;
                }
                return None;
            }
        }
    }
    Some(ev)
}

/// At `i` there must be at least one space; returns the index after them,
/// which must not be the end of input.
fn skip_spaces(b: &[u8], mut i: usize) -> Option<usize> {
    let start = i;
    while i < b.len() && b[i] == b' ' {
        i += 1;
    }
    if i == start || i >= b.len() {
        return None;
    }
    Some(i)
}

fn is_key_byte(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'.'
}

/// Bytes allowed in a bare value.
pub fn is_bare_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"._/:+,@%-".contains(&c)
}

/// `key=value` at `i`; returns key, unescaped value and the index after it,
/// which is the end of input or a space.
fn parse_pair(b: &[u8], mut i: usize) -> Option<(String, String, usize)> {
    let k_start = i;
    while i < b.len() && is_key_byte(b[i]) {
        i += 1;
    }
    if i == k_start || i >= b.len() || b[i] != b'=' {
        return None;
    }
    let key = std::str::from_utf8(&b[k_start..i]).ok()?.to_string();
    i += 1;
    if i < b.len() && b[i] == b'"' {
        let (v, next) = parse_quoted(b, i + 1)?;
        Some((key, v, next))
    } else {
        let (v, next) = parse_bare(b, i)?;
        Some((key, v, next))
    }
}

/// A bare value at `i`: non-empty, followed by end of input or a space.
fn parse_bare(b: &[u8], mut i: usize) -> Option<(String, usize)> {
    let start = i;
    while i < b.len() && is_bare_byte(b[i]) {
        i += 1;
    }
    if i == start || (i < b.len() && b[i] != b' ') {
        return None;
    }
    Some((std::str::from_utf8(&b[start..i]).ok()?.to_string(), i))
}

/// The inside of a quoted value starting just after the opening quote.
fn parse_quoted(b: &[u8], mut i: usize) -> Option<(String, usize)> {
    let mut out: Vec<u8> = Vec::new();
    loop {
        let c = *b.get(i)?;
        match c {
            b'"' => {
                i += 1;
                break;
            }
            b'\\' => {
                let e = *b.get(i + 1)?;
                match e {
                    b'"' => out.push(b'"'),
                    b'\\' => out.push(b'\\'),
                    b'n' => out.push(b'\n'),
                    b'x' => {
                        let hi = hex_val(*b.get(i + 2)?)?;
                        let lo = hex_val(*b.get(i + 3)?)?;
                        out.push(hi << 4 | lo);
                        i += 2;
                    }
                    b'u' => {
                        let mut v = 0u32;
                        for k in 2..6 {
                            v = v << 4 | u32::from(hex_val(*b.get(i + k)?)?);
                        }
                        let mut utf8 = [0u8; 4];
                        out.extend_from_slice(char::from_u32(v)?.encode_utf8(&mut utf8).as_bytes());
                        i += 4;
                    }
                    _ => return None,
                }
                i += 2;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    if i < b.len() && b[i] != b' ' {
        return None;
    }
    Some((String::from_utf8_lossy(&out).into_owned(), i))
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Encode `v` as a double-quoted value (always quoted), with the escapes
/// [`parse_line`] understands: `\"`, `\\`, `\n`, `\xNN` for other C0
/// controls and DEL, `\uNNNN` for C1 controls and bidirectional formatting
/// characters (berth's rule).
pub fn quote(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if matches!(c as u32, 0x80..=0x9f | 0x61c | 0x200e | 0x200f | 0x202a..=0x202e | 0x2066..=0x2069) => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Encode `v` bare when it can be, quoted otherwise (berth's own rule).
pub fn encode_value(v: &str) -> String {
    if !v.is_empty() && v.bytes().all(is_bare_byte) {
        v.to_string()
    } else {
        quote(v)
    }
}

/// A line printed by the guest test agent (`berth-test-agent`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentLine {
    /// `AGENT check=<name> result=pass|fail detail="..."`
    Check { name: String, passed: bool, detail: String },
    /// `AGENT action=<action>`
    Action(String),
    /// `AGENT done`
    Done,
    /// `AGENT measure=<name> value=<integer>` (benchmark readings)
    Measure { name: String, value: u64 },
}

const AGENT_MARKER: &str = "AGENT ";

/// Parse an agent line; like [`parse_line`], `AGENT ` may appear anywhere in
/// the console line and everything after a raw `\r` is ignored.
pub fn parse_agent_line(line: &str) -> Option<AgentLine> {
    let mut from = 0;
    while let Some(pos) = line[from..].find(AGENT_MARKER) {
        let start = from + pos;
        let rest = &line[start + AGENT_MARKER.len()..];
        let rest = match rest.find('\r') {
            Some(cr) => &rest[..cr],
            None => rest,
        };
        if let Some(a) = parse_agent_body(rest.trim_end_matches([' ', '\t', '\n'])) {
            return Some(a);
        }
        from = start + AGENT_MARKER.len();
    }
    None
}

fn parse_agent_body(body: &str) -> Option<AgentLine> {
    if body == "done" {
        return Some(AgentLine::Done);
    }
    let b = body.as_bytes();
    let mut fields = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if i > 0 {
            i = skip_spaces(b, i)?;
        }
        let (k, v, next) = parse_pair(b, i)?;
        fields.push((k, v));
        i = next;
    }
    let get = |key: &str| fields.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    if let Some(name) = get("check") {
        let passed = match get("result")?.as_str() {
            "pass" => true,
            "fail" => false,
            _ => return None,
        };
        return Some(AgentLine::Check { name, passed, detail: get("detail").unwrap_or_default() });
    }
    if let (Some(name), Some(value)) = (get("measure"), get("value")) {
        return Some(AgentLine::Measure { name, value: value.parse().ok()? });
    }
    if fields.len() == 1 {
        if let Some(a) = get("action") {
            return Some(AgentLine::Action(a));
        }
    }
    None
}

#[cfg(test)]
mod measure_tests {
    use super::*;

    #[test]
    fn measures_parse_and_bad_values_do_not() {
        let want = AgentLine::Measure { name: "rss_kib".into(), value: 812 };
        assert_eq!(parse_agent_line("AGENT measure=rss_kib value=812"), Some(want));
        assert_eq!(parse_agent_line("AGENT measure=rss_kib value=-3"), None);
        assert_eq!(parse_agent_line("AGENT measure=rss_kib value=x"), None);
    }
}

#[cfg(test)]
mod kernel_interleave_tests {
    use super::*;

    #[test]
    fn a_kernel_message_inside_the_line_is_cut_off() {
        let line = "BERTH t=3.350216 ev=cgroup.remove name=bomb left=2 result=ok[    3.388616] Memory cgroup out of memory: Killed";
        let e = parse_line(line).unwrap();
        assert_eq!(e.get("result"), Some("ok"));
        assert_eq!(e.get("left"), Some("2"));
        // A quoted value may hold brackets without being cut.
        let e = parse_line("BERTH t=1.0 ev=x v=\"a[1] b\"").unwrap();
        assert_eq!(e.get("v"), Some("a[1] b"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(line: &str) -> Event {
        parse_line(line).unwrap_or_else(|| panic!("no event in {line:?}"))
    }

    #[test]
    fn documented_examples() {
        let e = ev("BERTH t=0.812345 ev=boot.start pid=1 stage=initramfs version=0.1.0");
        assert_eq!(e.t, 0.812345);
        assert_eq!(e.name, "boot.start");
        assert_eq!(e.get("pid"), Some("1"));
        assert_eq!(e.get("stage"), Some("initramfs"));
        assert_eq!(e.get("version"), Some("0.1.0"));
        assert_eq!(e.fields.len(), 3);

        let e = ev("BERTH t=1.020000 ev=mount target=/proc fstype=proc result=ok");
        assert_eq!((e.name.as_str(), e.get("target"), e.get("result")), ("mount", Some("/proc"), Some("ok")));
        assert!(e.is("fstype", "proc"));

        let e = ev("BERTH t=1.500000 ev=module.load name=no_such_mod result=error error=\"ENOENT: No such file or directory\"");
        assert_eq!(e.get("error"), Some("ENOENT: No such file or directory"));
        assert_eq!(e.get("result"), Some("error"));

        let e = ev("BERTH t=3.100000 ev=boot.ready");
        assert_eq!(e.name, "boot.ready");
        assert!(e.fields.is_empty());
        assert_eq!(e.get("anything"), None);

        let e = ev("BERTH t=9.000000 ev=shutdown.begin action=poweroff signal=SIGTERM");
        assert_eq!(e.get("signal"), Some("SIGTERM"));
    }

    #[test]
    fn bare_value_charset() {
        let e = ev("BERTH t=1 ev=x v=aZ09._/:+,@%-");
        assert_eq!(e.get("v"), Some("aZ09._/:+,@%-"));
        assert_eq!(e.t, 1.0);
        assert!(parse_line("BERTH t=1 ev=x v=a=b").is_none());
        assert!(parse_line("BERTH t=1 ev=x v=a;b").is_none());
        assert!(parse_line("BERTH t=1 ev=x v=é").is_none());
    }

    #[test]
    fn quoted_escapes() {
        let e = ev(r#"BERTH t=2.000000 ev=x q="x\"y\\z\n\x01" e="" u="héllo wörld""#);
        assert_eq!(e.get("q"), Some("x\"y\\z\n\u{1}"));
        assert_eq!(e.get("e"), Some(""));
        assert_eq!(e.get("u"), Some("héllo wörld"));
        let e = ev(r#"BERTH t=2 ev=x h="\x7F\x41""#);
        assert_eq!(e.get("h"), Some("\u{7f}A"));
        // Escaped bytes that are not UTF-8 are decoded lossily.
        let e = ev(r#"BERTH t=2 ev=x h="\xff""#);
        assert_eq!(e.get("h"), Some("\u{fffd}"));
        // Spaces and '=' inside quotes are data.
        let e = ev(r#"BERTH t=2 ev=x a="k=v b=c" b=2"#);
        assert_eq!(e.get("a"), Some("k=v b=c"));
        assert_eq!(e.get("b"), Some("2"));
    }

    #[test]
    fn quote_round_trips() {
        for s in ["", "plain", "a b", "q\"uo\\te", "nl\nx", "\u{1}\u{1f}\u{7f}", "ünï", "\r\t"] {
            let line = format!("BERTH t=0.000001 ev=rt v={} w={}", quote(s), encode_value(s));
            let e = ev(&line);
            assert_eq!(e.get("v"), Some(s), "{line}");
            assert_eq!(e.get("w"), Some(s), "{line}");
        }
        assert_eq!(quote("a\"b\\c\nd\u{1}"), r#""a\"b\\c\nd\x01""#);
        assert_eq!(quote("\u{9b}1m\u{202e}"), r#""\u009b1m\u202e""#);
        let e = parse_line(r#"BERTH t=1 ev=x line="\u009b1m\u202ex""#).unwrap();
        assert_eq!(e.get("line"), Some("\u{9b}1m\u{202e}x"));
        assert!(parse_line(r#"BERTH t=1 ev=x line="\u12""#).is_none());
        assert_eq!(encode_value("/proc"), "/proc");
        assert_eq!(encode_value(""), "\"\"");
    }

    #[test]
    fn garbage_prefix_and_carriage_returns() {
        let e = ev("[    1.234567] random: crng init doneBERTH t=1.100000 ev=boot.ready");
        assert_eq!(e.name, "boot.ready");
        let e = ev("\rBERTH t=1.100000 ev=a k=v\r");
        assert_eq!((e.name.as_str(), e.get("k")), ("a", Some("v")));
        let e = ev("garbage\r\rxBERTH t=4.5 ev=b");
        assert_eq!((e.t, e.name.as_str()), (4.5, "b"));
        // Text after a raw \r is another console write, not part of the event.
        let e = ev("BERTH t=1.0 ev=c k=v\r[    2.0] kernel: hello");
        assert_eq!(e.fields, vec![("k".to_string(), "v".to_string())]);
        // The kernel log copy of an event, echoed by printk.
        let e = ev("[    1.500000] berth: BERTH t=1.500000 ev=module.load result=error");
        assert_eq!(e.get("result"), Some("error"));
        // Trailing spaces are tolerated.
        assert_eq!(ev("BERTH t=1 ev=d k=v  ").get("k"), Some("v"));
        // A first broken occurrence followed by a good one.
        let e = ev("BERTH t=1.0 ev=brokBERTH t=2.0 ev=good k=1");
        assert_eq!((e.t, e.name.as_str()), (2.0, "good"));
    }

    #[test]
    fn malformed_lines_are_not_events() {
        let bad = [
            "",
            "hello world",
            "BERTH",
            "BERTH t=",
            "BERTH t=1.0",
            "BERTH t=1.0 ",
            "BERTH t=1.0 ev=",
            "BERTH t=1.0 ev=\"quoted\"",
            "BERTH t=abc ev=x",
            "BERTH t=-1.0 ev=x",
            "BERTH t=1. ev=x",
            "BERTH t=.5 ev=x",
            "BERTH t=inf ev=x",
            "BERTH t=NaN ev=x",
            "BERTH t=1e5 ev=x",
            "BERTH t=1.0ev=x",
            "BERTH t=1.0 ev=x k",
            "BERTH t=1.0 ev=x k=",
            "BERTH t=1.0 ev=x =v",
            "BERTH t=1.0 ev=x K=v",
            "BERTH t=1.0 ev=x k-y=v",
            "BERTH t=1.0 ev=x k=\"unterminated",
            "BERTH t=1.0 ev=x k=\"bad escape \\q\"",
            "BERTH t=1.0 ev=x k=\"short hex \\x4\"",
            "BERTH t=1.0 ev=x k=\"bad hex \\xzz\"",
            "BERTH t=1.0 ev=x k=\"trailing backslash \\",
            "BERTH t=1.0 ev=x k=\"v\"junk",
            "BERTH t=1.0 ev=x k=v\"",
            "BERTH t=1.0 ev=x t=2",
            "BERTH t=1.0 ev=x ev=y",
            "BERTH t=1.0 ev=x\tk=v",
            "berth t=1.0 ev=x",
            "BERTH  t=1.0 ev=x",
            "AGENT done",
        ];
        for line in bad {
            assert_eq!(parse_line(line), None, "{line:?}");
        }
    }

    #[test]
    fn never_panics_on_any_prefix_or_bytes() {
        let good = r#"xx BERTH t=12.345678 ev=svc.exit name="a \"b\"" code=0 err="\x1b[0m\\" z=1"#;
        // Every prefix (at char boundaries) must be handled without panic.
        for (i, _) in good.char_indices() {
            let _ = parse_line(&good[..i]);
        }
        assert!(parse_line(good).is_some());
        // Multi-byte characters next to the marker and in odd places.
        for s in ["é BERTH t=1 ev=é", "BERTH t=1 ev=x k=\"é\\", "BERTH t=1 ev=x k=\"\\xé\"", "BERTH t=\u{1F600}"] {
            let _ = parse_line(s);
        }
        // Deterministic pseudo-random lines built from a small alphabet.
        let alphabet: Vec<char> = "BERTH t=.0123 ev=ab\"\\xnk_\r é".chars().collect();
        let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
        for _ in 0..20_000 {
            let mut s = String::from("BERTH t=1 ");
            for _ in 0..(seed % 24) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                s.push(alphabet[(seed % alphabet.len() as u64) as usize]);
            }
            let _ = parse_line(&s);
            let _ = parse_agent_line(&s);
        }
    }

    #[test]
    fn truncated_lines_keep_complete_fields() {
        let e = ev("BERTH t=1.000000 ev=big a=1 b=\"yyyyyyyy trunc=1");
        assert_eq!(e.get("a"), Some("1"));
        assert_eq!(e.get("b"), None);
        assert_eq!(e.get("trunc"), Some("1"));
        let e = ev("BERTH t=1.000000 ev=big a=1 bb trunc=1");
        assert_eq!(e.fields, vec![("a".into(), "1".into()), ("trunc".into(), "1".into())]);
        let e = ev("BERTH t=1.000000 ev=big a=\"x\\ trunc=1");
        assert_eq!(e.fields, vec![("trunc".into(), "1".into())]);
        // A normal line that happens to end with trunc=1.
        let e = ev("BERTH t=1.000000 ev=big a=yyy trunc=1");
        assert_eq!(e.fields, vec![("a".into(), "yyy".into()), ("trunc".into(), "1".into())]);
        // The time and the name must still be whole.
        assert_eq!(parse_line("BERTH t=1.0 trunc=1"), None);
        assert_eq!(parse_line("BERTH t=1.0 ev= trunc=1"), None);
    }

    #[test]
    fn event_text_is_the_event_part() {
        let (_, text) = parse_with_text("[ 1.0] berth: BERTH t=1.0 ev=x k=\"a b\"  \r junk").unwrap();
        assert_eq!(text, "BERTH t=1.0 ev=x k=\"a b\"");
    }

    #[test]
    fn duplicate_keys_get_returns_first() {
        let e = ev("BERTH t=1 ev=x k=1 k=2");
        assert_eq!(e.get("k"), Some("1"));
        assert_eq!(e.fields.len(), 2);
    }

    #[test]
    fn agent_lines() {
        assert_eq!(parse_agent_line("AGENT done"), Some(AgentLine::Done));
        assert_eq!(parse_agent_line("\r[ 5.1] xAGENT done\r"), Some(AgentLine::Done));
        assert_eq!(
            parse_agent_line(r#"AGENT check=pid1 result=pass detail="comm=berth exe=/sbin/berth""#),
            Some(AgentLine::Check { name: "pid1".into(), passed: true, detail: "comm=berth exe=/sbin/berth".into() })
        );
        assert_eq!(
            parse_agent_line(r#"AGENT check=mode result=fail detail="unknown mode \"x\"""#),
            Some(AgentLine::Check { name: "mode".into(), passed: false, detail: "unknown mode \"x\"".into() })
        );
        assert_eq!(parse_agent_line("AGENT action=reboot"), Some(AgentLine::Action("reboot".into())));
        for bad in ["AGENT", "AGENT check=x", "AGENT check=x result=maybe", "AGENT done now", "AGENT x=\"", "agent done"] {
            assert_eq!(parse_agent_line(bad), None, "{bad:?}");
        }
    }
}
