//! Terminal controls in a container's output: the bytes the `controls`
//! container prints (`berth-probe --print-controls`), the text each of
//! berth's sinks must show for them, and the check of raw bytes. Shared by
//! the harness (the `output-controls` scenario), the guest agent (which
//! passes on what `berthctl` printed and what the log store's file holds)
//! and the probe (which prints the bytes).
//!
//! The expected texts are written out here, not computed with berth's
//! escaping, so that the check does not lean on the code it checks.

/// The word that finds the line, on every sink.
pub const MARK: &str = "CONTROLS-7f3a";

/// The line the probe prints (its newline added when printed): ESC with a
/// harmless final (`ESC 7`, save the cursor), a 7-bit CSI (`ESC [`), an
/// 8-bit CSI as UTF-8 (U+009B) and as the lone byte 0x9B (not UTF-8), an
/// OSC setting the window title ended by BEL, a carriage return in the
/// middle, and U+202E (right-to-left override).
pub const PRINTED: &[u8] = b"CONTROLS-7f3a esc=\x1b7 csi7=\x1b[31mred\x1b[0m csi8u=\xc2\x9b32mgreen csi8b=\x9b33myellow osc=\x1b]0;title\x07 cr=left\rright rlo=\xe2\x80\xaedesrever end";

/// What the log store's file, `berthctl logs` and (inside the quotes of
/// its `container.log` event) the console show for [`PRINTED`]: each
/// control as `\xNN` below U+0080 and `\uNNNN` above, the byte that is
/// not UTF-8 as U+FFFD.
pub const SHOWN: &str = "CONTROLS-7f3a esc=\\x1b7 csi7=\\x1b[31mred\\x1b[0m csi8u=\\u009b32mgreen csi8b=\u{fffd}33myellow osc=\\x1b]0;title\\x07 cr=left\\x0dright rlo=\\u202edesrever end";

/// The `STATUS=` text the probe sends over its notify socket.
pub const STATUS: &[u8] = b"CONTROLS-7f3a \x1b[31mred\xc2\x9b1m\xe2\x80\xaeevil\rcr\x07 \x9bend";

/// The NOTE `berthctl status` shows for [`STATUS`]: berth keeps the text
/// without the characters a terminal acts on (the byte that is not UTF-8
/// becomes U+FFFD).
pub const NOTE: &str = "CONTROLS-7f3a [31mred1mevilcr \u{fffd}end";

/// A character a terminal acts on: C0 controls but the tab, DEL, C1
/// controls, and the bidirectional marks, embeddings, overrides and
/// isolates.
fn active(c: char) -> bool {
    c != '\t' && matches!(c as u32, 0..=0x1f | 0x7f..=0x9f | 0x61c | 0x200e | 0x200f | 0x202a..=0x202e | 0x2066..=0x2069)
}

/// Everything in `bytes` a terminal would act on, named with its offset:
/// the [`active`] characters and every byte that is not part of valid
/// UTF-8 (a lone 0x9B is a CSI to a terminal reading 8-bit controls).
pub fn raw_controls(bytes: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut at = 0;
    for chunk in bytes.utf8_chunks() {
        for (i, c) in chunk.valid().char_indices() {
            if active(c) {
                found.push(format!("U+{:04X} at byte {}", c as u32, at + i));
            }
        }
        at += chunk.valid().len();
        for (i, b) in chunk.invalid().iter().enumerate() {
            found.push(format!("byte 0x{b:02X} (not UTF-8) at byte {}", at + i));
        }
        at += chunk.invalid().len();
    }
    found
}

/// `bytes` for a message: printable ASCII as it is, every other byte as
/// `\xNN` (a failure message never carries a raw control).
pub fn visible(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for &b in bytes {
        if (0x20..0x7f).contains(&b) && b != b'\\' {
            s.push(b as char);
        } else {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    s
}

/// Lowercase hex, for passing bytes on the console.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of [`hex`]'s text.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

/// The first line of `out` (split on `\n` only) that holds [`MARK`].
pub fn marked_line(out: &[u8]) -> Option<&[u8]> {
    out.split(|&b| b == b'\n').find(|l| l.windows(MARK.len()).any(|w| w == MARK.as_bytes()))
}

fn clean(what: &str, line: &[u8]) -> Result<(), String> {
    let found = raw_controls(line);
    if found.is_empty() {
        Ok(())
    } else {
        Err(format!("{what} carries raw controls ({}): {}", found.join(", "), visible(line)))
    }
}

/// The console: every line holding [`MARK`] (at least one) has no raw
/// control and is berth's `container.log` event of `controls` showing
/// `line="`[`SHOWN`]`"`.
pub fn check_console(lines: &[&[u8]]) -> Result<usize, String> {
    let marked: Vec<&[u8]> = lines.iter().copied().filter(|l| marked_line(l).is_some()).collect();
    if marked.is_empty() {
        return Err(format!("no console line holds {MARK}"));
    }
    let want = format!(" ev=container.log name=controls line=\"{SHOWN}\"");
    for l in &marked {
        clean("a console line", l)?;
        if !l.windows(want.len()).any(|w| w == want.as_bytes()) {
            return Err(format!("a console line does not show {}: {}", visible(want.as_bytes()), visible(l)));
        }
    }
    Ok(marked.len())
}

/// A wall-clock time as the log store writes it: `-` (clock not set) or
/// `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn is_wall(w: &str) -> bool {
    let digits = |r: std::ops::Range<usize>| w.get(r).is_some_and(|d| d.bytes().all(|b| b.is_ascii_digit()));
    w == "-"
        || (w.len() == 24
            && [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':'), (19, b'.'), (23, b'Z')].iter().all(|&(i, c)| w.as_bytes().get(i) == Some(&c))
            && [0..4, 5..7, 8..10, 11..13, 14..16, 17..19, 20..23].into_iter().all(digits))
}

/// A stored line as `berthctl logs` prints it and the store's file holds
/// it: `<seconds>.<ms> <wall-clock time or -> `[`SHOWN`], nothing raw.
pub fn check_stored(what: &str, line: &[u8]) -> Result<(), String> {
    clean(what, line)?;
    let text = std::str::from_utf8(line).map_err(|_| format!("{what} is not UTF-8: {}", visible(line)))?;
    let shown = text
        .split_once(' ')
        .filter(|(t, _)| t.split_once('.').is_some_and(|(s, ms)| s.parse::<u64>().is_ok() && ms.len() == 3))
        .and_then(|(_, rest)| rest.split_once(' '))
        .filter(|(wall, _)| is_wall(wall))
        .map(|(_, rest)| rest);
    if shown != Some(SHOWN) {
        return Err(format!("{what} shows {}, want two times and {}", visible(line), visible(SHOWN.as_bytes())));
    }
    Ok(())
}

/// `controls`' line of `berthctl status`: nothing raw, and [`NOTE`] last.
pub fn check_note(line: &[u8]) -> Result<(), String> {
    clean("berthctl status", line)?;
    let text = String::from_utf8_lossy(line);
    if !text.starts_with("controls ") || !text.ends_with(&format!(" {NOTE}")) {
        return Err(format!("berthctl status shows {}, want the note {}", visible(line), visible(NOTE.as_bytes())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_control_printed_is_found_raw() {
        let found = raw_controls(PRINTED).join(" | ");
        for want in ["U+001B", "U+009B", "byte 0x9B (not UTF-8)", "U+0007", "U+000D", "U+202E"] {
            assert!(found.contains(want), "{want} not in {found}");
        }
        assert_eq!(raw_controls(PRINTED).len(), 9, "{found}");
        assert!(raw_controls(STATUS).len() >= 6);
        assert!(raw_controls(SHOWN.as_bytes()).is_empty());
        assert!(raw_controls(NOTE.as_bytes()).is_empty());
        assert!(raw_controls("tab\tkept é\u{a0}".as_bytes()).is_empty());
        assert_eq!(raw_controls(b"a\xc2"), ["byte 0xC2 (not UTF-8) at byte 1"]);
        // The line fits berth's 200-byte output lines and 256-byte store lines.
        assert!(PRINTED.len() < 200 && SHOWN.len() <= 256 && NOTE.len() <= 64);
    }

    #[test]
    fn hex_round_trips_and_messages_stay_visible() {
        assert_eq!(unhex(&hex(PRINTED)).as_deref(), Some(PRINTED));
        assert_eq!(unhex("0"), None);
        assert_eq!(unhex("zz"), None);
        assert!(raw_controls(visible(PRINTED).as_bytes()).is_empty());
        assert_eq!(visible(b"a\\\x1b"), "a\\x5c\\x1b");
    }

    #[test]
    fn the_console_check_wants_the_escaped_value_and_nothing_raw() {
        let good = format!("BERTH t=1.000000 ev=container.log name=controls line=\"{SHOWN}\"");
        let noise: &[u8] = b"\x1b[2J SeaBIOS";
        assert_eq!(check_console(&[noise, good.as_bytes()]), Ok(1));
        let raw = [&b"BERTH t=1.000000 ev=container.log name=controls line=\""[..], PRINTED, b"\""].concat();
        assert!(check_console(&[good.as_bytes(), &raw]).unwrap_err().contains("raw controls"));
        assert!(check_console(&[noise]).is_err());
        let other = good.replace("desrever", "reversed");
        assert!(check_console(&[other.as_bytes()]).unwrap_err().contains("does not show"));
    }

    #[test]
    fn stored_lines_and_the_note_are_exact() {
        for wall in ["-", "2026-12-07T21:34:33.123Z"] {
            let line = format!("12.345 {wall} {SHOWN}");
            assert_eq!(check_stored("logs", line.as_bytes()), Ok(()));
        }
        assert!(check_stored("logs", format!("12.345 {SHOWN}").as_bytes()).is_err(), "the wall-clock field is missing");
        assert!(check_stored("logs", format!("12.345 2026-12-07T21:34:33Z {SHOWN}").as_bytes()).is_err());
        assert!(check_stored("logs", SHOWN.as_bytes()).is_err());
        assert!(check_stored("logs", &[b"12.345 - ", PRINTED].concat()).unwrap_err().contains("raw controls"));
        assert!(check_stored("logs", format!("12.345 - {SHOWN} ").as_bytes()).is_err());
        let status = format!("controls             container running  yes      7       1.0s        0       12K  -            {NOTE}");
        assert_eq!(check_note(status.as_bytes()), Ok(()));
        assert!(check_note(&[b"controls x ", STATUS].concat()).unwrap_err().contains("raw controls"));
        assert!(check_note(b"controls x CONTROLS-7f3a").is_err());
        let line = format!("12.345 - {SHOWN}");
        let out = [b"#berth-log 2 boot=-\n1.000 - a\n".as_slice(), line.as_bytes(), b"\n2.000 - b\n"].concat();
        assert_eq!(marked_line(&out), Some(line.as_bytes()));
        assert_eq!(marked_line(b"x\ny"), None);
    }
}
