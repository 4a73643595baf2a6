//! GRUB's environment block (`grubenv`), the file GRUB's `load_env` and
//! `save_env` read and rewrite in place. It owns the block's text format
//! only; it must not open files (the caller reads and writes the block, in
//! place, at its fixed size: GRUB refuses a block whose size changed).
//!
//! Format: the signature line [`SIGNATURE`], then `name=value` lines, then
//! `#` up to the block's size (1024 bytes as `grub-editenv create` makes
//! it). In a value, a backslash escapes the next byte (so `\\` is a
//! backslash and a backslash before a newline keeps the newline).

use super::{EnvError, Vars};

/// The first line of every block.
pub const SIGNATURE: &[u8] = b"# GRUB Environment Block\n";
/// The size `grub-editenv create` gives a block.
pub const SIZE: usize = 1024;

/// The variables of a block.
pub fn parse(block: &[u8]) -> Result<Vars, EnvError> {
    let body = block.strip_prefix(SIGNATURE).ok_or(EnvError::Signature)?;
    let mut vars = Vars::default();
    let mut i = 0;
    while i < body.len() {
        if body[i] == b'#' {
            // Padding (or a comment line): skip to the end of the line.
            i += body[i..].iter().position(|&b| b == b'\n').map_or(body.len() - i, |n| n + 1);
            continue;
        }
        let (line, used) = unescape_line(&body[i..])?;
        i += used;
        let eq = line.iter().position(|&b| b == b'=').ok_or(EnvError::Malformed("a line without '='"))?;
        let name = std::str::from_utf8(&line[..eq]).map_err(|_| EnvError::Malformed("a name that is not UTF-8"))?;
        let value = std::str::from_utf8(&line[eq + 1..]).map_err(|_| EnvError::Malformed("a value that is not UTF-8"))?;
        vars.set(name, value)?;
    }
    Ok(vars)
}

/// One line with its escapes resolved, and the bytes it took.
fn unescape_line(s: &[u8]) -> Result<(Vec<u8>, usize), EnvError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'\\' => {
                let next = *s.get(i + 1).ok_or(EnvError::Malformed("a backslash at the end of the block"))?;
                out.push(next);
                i += 2;
            }
            b'\n' => return Ok((out, i + 1)),
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Err(EnvError::Malformed("a line without its newline"))
}

/// A block of `size` bytes holding `vars`, padded with `#`.
pub fn render(vars: &Vars, size: usize) -> Result<Vec<u8>, EnvError> {
    let mut out = SIGNATURE.to_vec();
    for (name, value) in vars.iter() {
        out.extend_from_slice(name.as_bytes());
        out.push(b'=');
        for &b in value.as_bytes() {
            if b == b'\\' || b == b'\n' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'\n');
    }
    if out.len() > size {
        return Err(EnvError::TooLarge { need: out.len(), size });
    }
    out.resize(size, b'#');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_escapes() {
        let mut v = Vars::default();
        v.set("ORDER", "A B").unwrap();
        v.set("odd", "back\\slash\nnewline").unwrap();
        let block = render(&v, SIZE).unwrap();
        assert_eq!(block.len(), SIZE);
        assert!(block.ends_with(b"##"));
        let back = parse(&block).unwrap();
        assert_eq!(back.get("ORDER"), Some("A B"));
        assert_eq!(back.get("odd"), Some("back\\slash\nnewline"));
    }

    #[test]
    fn reads_what_grub_editenv_writes() {
        // `grub-editenv F create; grub-editenv F set ORDER="A B" A_LEFT=3`.
        let mut block = b"# GRUB Environment Block\nORDER=A B\nA_LEFT=3\n".to_vec();
        block.resize(SIZE, b'#');
        let v = parse(&block).unwrap();
        assert_eq!((v.get("ORDER"), v.get("A_LEFT"), v.get("B_LEFT")), (Some("A B"), Some("3"), None));
    }

    #[test]
    fn refuses_what_is_not_a_block() {
        assert_eq!(parse(b"ORDER=A B\n"), Err(EnvError::Signature));
        assert!(matches!(parse(b"# GRUB Environment Block\nORDER A\n"), Err(EnvError::Malformed(_))));
        assert!(matches!(parse(b"# GRUB Environment Block\nORDER=A"), Err(EnvError::Malformed(_))));
        let mut v = Vars::default();
        v.set("X", &"y".repeat(1000)).unwrap();
        assert_eq!(render(&v, SIZE), Err(EnvError::TooLarge { need: SIGNATURE.len() + 1003, size: SIZE }));
    }
}
