//! The kernel's syscall numbers, read from its own UAPI headers, as the
//! oracle for berth's syscall tables (`berth::confine::seccomp::tables`).
//!
//! The headers are Debian's `linux-libc-dev` of each ABI, from a suite new
//! enough to name every syscall berth knows, downloaded (not installed)
//! under `target/debs/`. The C preprocessor reads them as a C program would
//! (`asm/unistd.h` with the ABI's own choices), so the numbers come from
//! the kernel's text, not from berth's tables or the `libc` crate they were
//! first taken from. The unit test here fails naming the syscall, the ABI
//! and both numbers; `cargo xtask test` fetches the headers before it.

#[cfg(test)]
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
#[cfg(test)]
use std::process::{Command, Stdio};

use berth::confine::seccomp::Arch;

/// The Debian suite the headers come from: the newest kernel headers
/// published for a stable release (berth's tables go up to Linux 6.13).
const SUITE: &str = "trixie-backports";
const PACKAGE: &str = "linux-libc-dev";

/// One ABI: berth's name for it, Debian's architecture, the multiarch
/// include directory, and what the preprocessor must be told to pick the
/// ABI berth filters (ARM: EABI, not the old ABI).
struct Abi {
    arch: Arch,
    debarch: &'static str,
    triplet: &'static str,
    /// Read by the syscall-number test only.
    #[cfg_attr(not(test), allow(dead_code))]
    defines: &'static [&'static str],
}

const ABIS: [Abi; 3] = [
    Abi { arch: Arch::X86_64, debarch: "amd64", triplet: "x86_64-linux-gnu", defines: &[] },
    Abi { arch: Arch::Aarch64, debarch: "arm64", triplet: "aarch64-linux-gnu", defines: &[] },
    Abi { arch: Arch::Arm, debarch: "armhf", triplet: "arm-linux-gnueabihf", defines: &["-D__ARM_EABI__"] },
];

/// The headers of one ABI, unpacked.
pub struct Headers {
    abi: &'static Abi,
    /// `.../usr/include`; read by the syscall-number test.
    #[cfg_attr(not(test), allow(dead_code))]
    include: PathBuf,
    /// The package version they come from.
    pub version: String,
}

impl Headers {
    pub fn arch(&self) -> Arch {
        self.abi.arch
    }
}

/// Make sure the headers of all three ABIs are unpacked (no network when
/// they already are) and have the syscall header.
pub fn ensure_all(root: &Path) -> Result<Vec<Headers>, String> {
    ABIS.iter()
        .map(|abi| {
            let (tree, version) = crate::kernel::ensure_package_from(root, abi.debarch, PACKAGE, Some(SUITE))?;
            let include = tree.join("usr").join("include");
            let unistd = include.join(abi.triplet).join("asm").join("unistd.h");
            if !unistd.is_file() {
                return Err(format!("{PACKAGE} {version} ({}) has no {}", abi.debarch, unistd.display()));
            }
            Ok(Headers { abi, include, version })
        })
        .collect()
}

/// The numbers the headers give `names` (ARM's private calls under their
/// `__ARM_NR_` names); a name the headers lack is absent from the map.
#[cfg(test)]
fn numbers(h: &Headers, names: &[&str]) -> Result<BTreeMap<String, u32>, String> {
    let mut src = String::from("#include <asm/unistd.h>\n");
    for n in names {
        src.push_str(&format!("berth_nr {n} __NR_{n}\nberth_nr {n} __ARM_NR_{n}\n"));
    }
    let arch_dir = h.include.join(h.abi.triplet);
    let mut child = Command::new("cpp")
        .args(["-P", "-undef", "-nostdinc"])
        .args(h.abi.defines)
        .arg("-I")
        .arg(&arch_dir)
        .arg("-I")
        .arg(&h.include)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run cpp (Debian package cpp): {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        stdin.write_all(src.as_bytes()).map_err(|e| format!("cpp: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("cpp: {e}"))?;
    if !out.status.success() {
        return Err(format!("cpp on {}'s asm/unistd.h ({}): {}", h.arch(), out.status, String::from_utf8_lossy(&out.stderr)));
    }
    let mut found = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(rest) = line.trim().strip_prefix("berth_nr ") else {
            continue;
        };
        let Some((name, expr)) = rest.split_once(' ') else {
            continue;
        };
        if let Some(v) = eval(expr) {
            found.insert(name.to_string(), v);
        }
    }
    Ok(found)
}

#[cfg(test)]
/// The value of a preprocessed constant expression of numbers, `+`, `-`
/// and parentheses (`(0 + 5)`, `((0x0f0000)+5)`); `None` for anything else
/// (a name the headers do not define stays a name).
fn eval(expr: &str) -> Option<u32> {
    let toks: Vec<char> = expr.chars().filter(|c| !c.is_whitespace()).collect();
    let mut pos = 0;
    let v = sum(&toks, &mut pos)?;
    (pos == toks.len()).then_some(v)?.try_into().ok()
}

#[cfg(test)]
fn sum(t: &[char], pos: &mut usize) -> Option<i64> {
    let mut v = term(t, pos)?;
    while let Some(&op) = t.get(*pos).filter(|c| **c == '+' || **c == '-') {
        *pos += 1;
        let r = term(t, pos)?;
        v = if op == '+' { v + r } else { v - r };
    }
    Some(v)
}

#[cfg(test)]
fn term(t: &[char], pos: &mut usize) -> Option<i64> {
    if t.get(*pos) == Some(&'(') {
        *pos += 1;
        let v = sum(t, pos)?;
        (t.get(*pos) == Some(&')')).then_some(())?;
        *pos += 1;
        return Some(v);
    }
    let start = *pos;
    while t.get(*pos).is_some_and(|c| c.is_ascii_alphanumeric()) {
        *pos += 1;
    }
    let word: String = t[start..*pos].iter().collect();
    let word = word.trim_end_matches(['u', 'U', 'l', 'L']);
    match word.strip_prefix("0x").or_else(|| word.strip_prefix("0X")) {
        Some(hex) => i64::from_str_radix(hex, 16).ok(),
        None => word.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_of_the_headers() {
        assert_eq!(eval("0"), Some(0));
        assert_eq!(eval("(0 +405)"), Some(405));
        assert_eq!(eval("((0x0f0000)+5)"), Some(0x0f_0005));
        assert_eq!(eval("(0x900000+ 1)"), Some(0x90_0001));
        assert_eq!(eval("__NR_open"), None);
        assert_eq!(eval("(0+"), None);
        assert_eq!(eval("12UL"), Some(12));
    }

    /// Every syscall in berth's tables has, on every ABI, the number the
    /// kernel's headers give it.
    #[test]
    fn berth_tables_match_the_kernel_headers() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root");
        let all = ensure_all(root).unwrap_or_else(|e| panic!("the kernel's syscall headers cannot be fetched ({e}); `cargo xtask test` fetches them"));
        let mut wrong = Vec::new();
        let mut checked = 0;
        for h in &all {
            let table = h.arch().table();
            let names: Vec<&str> = table.iter().map(|(n, _)| *n).collect();
            let kernel = numbers(h, &names).unwrap_or_else(|e| panic!("{e}"));
            for (name, ours) in table {
                match kernel.get(*name) {
                    Some(k) if k == ours => checked += 1,
                    Some(k) => wrong.push(format!("{}: {name} is {ours} in berth's table, {k} in the kernel's headers", h.arch())),
                    None => wrong.push(format!("{}: {name} (berth: {ours}) is not in the kernel's headers", h.arch())),
                }
            }
        }
        let versions: Vec<String> = all.iter().map(|h| format!("{} {}", h.arch(), h.version)).collect();
        assert!(wrong.is_empty(), "syscall numbers differ from {PACKAGE} ({}):\n{}", versions.join(", "), wrong.join("\n"));
        assert!(checked > 1000, "only {checked} numbers checked");
    }
}
