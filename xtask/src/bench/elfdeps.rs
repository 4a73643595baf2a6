//! What a dynamically linked program needs to run elsewhere: its ELF
//! interpreter and the closure of its `DT_NEEDED` libraries, read from the
//! files themselves (64-bit little-endian ELF: x86_64, aarch64), and the
//! Debian package a library's soname comes in.
//!
//! It must not guess a library list: every library carried is named by a
//! `NEEDED` entry of the program or of a library already carried, and one
//! that cannot be found is an error naming it.

use std::path::{Path, PathBuf};

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;

/// The run-time needs of one ELF file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Needs {
    /// `PT_INTERP`: the dynamic loader's absolute path.
    pub interp: Option<String>,
    /// `DT_NEEDED` sonames, in order.
    pub needed: Vec<String>,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// A NUL-terminated string at `at`.
fn c_str(b: &[u8], at: usize) -> Option<String> {
    let rest = b.get(at..)?;
    let end = rest.iter().position(|&c| c == 0)?;
    String::from_utf8(rest.get(..end)?.to_vec()).ok()
}

/// Read the interpreter and the needed libraries of an ELF image.
pub fn needs(b: &[u8]) -> Result<Needs, String> {
    if b.get(..4) != Some(b"\x7fELF") {
        return Err("not an ELF file".into());
    }
    if b.get(4..6) != Some(&[2, 1]) {
        return Err("not a 64-bit little-endian ELF file".into());
    }
    let bad = || "truncated ELF headers".to_string();
    let phoff = usize::try_from(u64_at(b, 32).ok_or_else(bad)?).map_err(|_| bad())?;
    let phentsize = usize::from(u16_at(b, 54).ok_or_else(bad)?);
    let phnum = usize::from(u16_at(b, 56).ok_or_else(bad)?);
    // (type, offset, vaddr, filesz)
    let mut ph = Vec::new();
    for i in 0..phnum {
        let at = phoff + i * phentsize;
        let field = |o: usize| u64_at(b, at + o).ok_or_else(bad);
        ph.push((u32_at(b, at).ok_or_else(bad)?, field(8)?, field(16)?, field(32)?));
    }
    let mut out = Needs::default();
    if let Some(&(_, off, _, size)) = ph.iter().find(|p| p.0 == PT_INTERP) {
        let s = c_str(b, usize::try_from(off).map_err(|_| bad())?).ok_or("PT_INTERP is not a string")?;
        if usize::try_from(size).ok() != Some(s.len() + 1) {
            return Err("PT_INTERP's size does not match its string".into());
        }
        out.interp = Some(s);
    }
    let Some(&(_, dyn_off, _, dyn_size)) = ph.iter().find(|p| p.0 == PT_DYNAMIC) else {
        return Ok(out); // static
    };
    let mut tags = Vec::new();
    for i in 0..dyn_size / 16 {
        let at = usize::try_from(dyn_off + i * 16).map_err(|_| bad())?;
        let (tag, val) = (u64_at(b, at).ok_or("truncated dynamic section")?, u64_at(b, at + 8).ok_or("truncated dynamic section")?);
        if tag == 0 {
            break;
        }
        tags.push((tag, val));
    }
    let strtab = tags.iter().find(|t| t.0 == DT_STRTAB).map(|t| t.1).ok_or("no DT_STRTAB")?;
    // The string table's address, as a file offset through its PT_LOAD.
    let load = ph.iter().find(|p| p.0 == PT_LOAD && p.2 <= strtab && strtab < p.2 + p.3).ok_or("DT_STRTAB is in no loaded segment")?;
    let base = strtab - load.2 + load.1;
    for (_, name) in tags.iter().filter(|t| t.0 == DT_NEEDED) {
        let at = usize::try_from(base + name).map_err(|_| bad())?;
        out.needed.push(c_str(b, at).ok_or("a DT_NEEDED name is not a string")?);
    }
    Ok(out)
}

/// The Debian package a shared library's soname comes in, by Debian's
/// naming of library packages: `libfoo.so.2` in `libfoo2`, `liblz4.so.1`
/// (a name ending in a digit) in `liblz4-1`.
pub fn debian_package(soname: &str) -> Result<String, String> {
    let (stem, version) = soname.split_once(".so.").ok_or_else(|| format!("{soname}: not a versioned soname (NAME.so.N)"))?;
    if stem.is_empty() || version.is_empty() || version.contains('.') {
        return Err(format!("{soname}: not a soname with one version number"));
    }
    let stem = stem.to_ascii_lowercase().replace('_', "-");
    Ok(if stem.ends_with(|c: char| c.is_ascii_digit()) { format!("{stem}-{version}") } else { format!("{stem}{version}") })
}

/// Follow symbolic links of `rel` inside the unpacked tree `tree` (an
/// absolute link target is taken from the tree's root).
pub fn resolve_in(tree: &Path, rel: &str) -> Option<PathBuf> {
    let mut p = tree.join(rel.trim_start_matches('/'));
    for _ in 0..16 {
        let meta = std::fs::symlink_metadata(&p).ok()?;
        if !meta.file_type().is_symlink() {
            return meta.is_file().then_some(p);
        }
        let target = std::fs::read_link(&p).ok()?;
        p = match target.strip_prefix("/") {
            Ok(abs) => tree.join(abs),
            Err(_) => p.parent()?.join(target),
        };
    }
    None
}

/// The library directories of Debian's packages for the multiarch `triplet`.
fn lib_dirs(triplet: &str) -> [String; 4] {
    [format!("lib/{triplet}"), format!("usr/lib/{triplet}"), "lib".into(), "usr/lib".into()]
}

/// A soname in any of `trees`.
pub fn find(trees: &[PathBuf], triplet: &str, soname: &str) -> Option<PathBuf> {
    trees.iter().find_map(|t| lib_dirs(triplet).iter().find_map(|d| resolve_in(t, &format!("{d}/{soname}"))))
}

/// What to carry for `program`: its interpreter (path, file) and every
/// library of the `NEEDED` closure (soname, file). `more` unpacks the
/// package a soname comes in and returns its tree, when none of `trees`
/// has it.
pub type Carry = (Option<(String, PathBuf)>, Vec<(String, PathBuf)>);

pub fn closure(program: &Path, trees: &mut Vec<PathBuf>, triplet: &str, more: &mut dyn FnMut(&str) -> Result<PathBuf, String>) -> Result<Carry, String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display())).and_then(|b| needs(&b).map_err(|e| format!("{}: {e}", p.display())));
    let top = read(program)?;
    let mut libs: Vec<(String, PathBuf)> = Vec::new();
    let mut todo: Vec<String> = top.needed.clone();
    while let Some(soname) = todo.pop() {
        if libs.iter().any(|(n, _)| *n == soname) {
            continue;
        }
        let file = match find(trees, triplet, &soname) {
            Some(f) => f,
            None => {
                trees.push(more(&soname)?);
                find(trees, triplet, &soname).ok_or_else(|| format!("{soname} (needed by {}) is not in its package", program.display()))?
            }
        };
        todo.extend(read(&file)?.needed);
        libs.push((soname, file));
    }
    let interp = match top.interp {
        Some(i) => {
            Some((i.clone(), trees.iter().find_map(|t| resolve_in(t, &i)).ok_or_else(|| format!("the interpreter {i} is in none of the packages carried"))?))
        }
        None => None,
    };
    libs.sort();
    Ok((interp, libs))
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A small ELF64 with an interpreter and a dynamic section naming `needed`.
    pub fn dyn_elf(interp: &str, needed: &[&str]) -> Vec<u8> {
        const BASE: u64 = 0x1000;
        let phnum = 3u64;
        let ph_end = 64 + 56 * phnum;
        let interp_off = ph_end;
        let mut strtab = vec![0u8];
        let mut offs = Vec::new();
        for n in needed {
            offs.push(strtab.len() as u64);
            strtab.extend_from_slice(n.as_bytes());
            strtab.push(0);
        }
        let str_off = interp_off + interp.len() as u64 + 1;
        let dyn_off = (str_off + strtab.len() as u64).next_multiple_of(8);
        let mut dynamic = Vec::new();
        for o in &offs {
            dynamic.extend_from_slice(&DT_NEEDED.to_le_bytes());
            dynamic.extend_from_slice(&o.to_le_bytes());
        }
        dynamic.extend_from_slice(&DT_STRTAB.to_le_bytes());
        dynamic.extend_from_slice(&(BASE + str_off).to_le_bytes());
        dynamic.extend_from_slice(&[0; 16]);
        let total = dyn_off + dynamic.len() as u64;
        let mut e = b"\x7fELF\x02\x01\x01\x00".to_vec();
        e.resize(16, 0);
        e.extend_from_slice(&3u16.to_le_bytes()); // ET_DYN
        e.extend_from_slice(&0x3eu16.to_le_bytes());
        e.extend_from_slice(&1u32.to_le_bytes());
        e.extend_from_slice(&0u64.to_le_bytes());
        e.extend_from_slice(&64u64.to_le_bytes());
        e.extend_from_slice(&0u64.to_le_bytes());
        e.extend_from_slice(&0u32.to_le_bytes());
        for v in [64u16, 56, phnum as u16, 0, 0, 0] {
            e.extend_from_slice(&v.to_le_bytes());
        }
        let mut ph = |t: u32, off: u64, size: u64| {
            e.extend_from_slice(&t.to_le_bytes());
            e.extend_from_slice(&4u32.to_le_bytes());
            for v in [off, BASE + off, BASE + off, size, size, 8] {
                e.extend_from_slice(&v.to_le_bytes());
            }
        };
        ph(PT_LOAD, 0, total);
        ph(PT_INTERP, interp_off, interp.len() as u64 + 1);
        ph(PT_DYNAMIC, dyn_off, dynamic.len() as u64);
        e.extend_from_slice(interp.as_bytes());
        e.push(0);
        e.extend_from_slice(&strtab);
        e.resize(dyn_off as usize, 0);
        e.extend_from_slice(&dynamic);
        e
    }

    #[test]
    fn reads_the_interpreter_and_the_needed_libraries() {
        let e = dyn_elf("/lib64/ld-linux-x86-64.so.2", &["libyajl.so.2", "libc.so.6"]);
        let n = needs(&e).unwrap();
        assert_eq!(n.interp.as_deref(), Some("/lib64/ld-linux-x86-64.so.2"));
        assert_eq!(n.needed, ["libyajl.so.2", "libc.so.6"]);
        assert_eq!(needs(b"#!/bin/sh\n").unwrap_err(), "not an ELF file");
        assert_eq!(needs(&e[..70]).unwrap_err(), "truncated ELF headers");
        // The host part's hand-made static program has neither.
        assert_eq!(needs(&super::super::host::elf_x86_64(&[0xc3])).unwrap(), Needs::default());
    }

    #[test]
    fn sonames_name_their_debian_packages() {
        assert_eq!(debian_package("libyajl.so.2").unwrap(), "libyajl2");
        assert_eq!(debian_package("libc.so.6").unwrap(), "libc6");
        assert_eq!(debian_package("liblz4.so.1").unwrap(), "liblz4-1");
        assert_eq!(debian_package("libgpg-error.so.0").unwrap(), "libgpg-error0");
        assert!(debian_package("libfoo.so").is_err());
        assert!(debian_package("libfoo.so.1.2").is_err());
    }

    #[test]
    fn the_closure_follows_needed_entries_across_packages() {
        let dir = std::env::temp_dir().join(format!("berth-elfdeps-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let t = "x86_64-linux-gnu";
        let put = |pkg: &str, rel: &str, bytes: &[u8]| {
            let p = dir.join(pkg).join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
        };
        put("crun", "usr/bin/crun", &dyn_elf("/lib64/ld.so.2", &["liba.so.1", "libc.so.6"]));
        put("liba1", &format!("usr/lib/{t}/liba.so.1.0.3"), &dyn_elf("", &["libb.so.2", "libc.so.6"]));
        std::os::unix::fs::symlink("liba.so.1.0.3", dir.join(format!("liba1/usr/lib/{t}/liba.so.1"))).unwrap();
        put("libb2", &format!("lib/{t}/libb.so.2"), &dyn_elf("", &["libc.so.6"]));
        put("libc6", &format!("lib/{t}/libc.so.6"), &dyn_elf("", &[]));
        put("libc6", &format!("lib/{t}/ld.so.2"), b"loader");
        std::fs::create_dir_all(dir.join("libc6/lib64")).unwrap();
        std::os::unix::fs::symlink(format!("/lib/{t}/ld.so.2"), dir.join("libc6/lib64/ld.so.2")).unwrap();
        let mut asked = Vec::new();
        let mut trees = vec![dir.join("crun")];
        let (interp, libs) = closure(&dir.join("crun/usr/bin/crun"), &mut trees, t, &mut |s| {
            asked.push(s.to_string());
            Ok(dir.join(debian_package(s)?))
        })
        .unwrap();
        assert_eq!(interp, Some(("/lib64/ld.so.2".to_string(), dir.join(format!("libc6/lib/{t}/ld.so.2")))));
        let names: Vec<&str> = libs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["liba.so.1", "libb.so.2", "libc.so.6"]);
        assert_eq!(libs[0].1, dir.join(format!("liba1/usr/lib/{t}/liba.so.1.0.3")), "links followed");
        assert_eq!(asked, ["libc.so.6", "liba.so.1", "libb.so.2"], "each package fetched once");
        // A soname its package does not hold.
        put("crun", "usr/bin/bad", &dyn_elf("/lib64/ld.so.2", &["libz.so.9"]));
        std::fs::create_dir_all(dir.join("libz9")).unwrap();
        let e = closure(&dir.join("crun/usr/bin/bad"), &mut trees, t, &mut |s| Ok(dir.join(debian_package(s)?))).unwrap_err();
        assert!(e.starts_with("libz.so.9 (needed by"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
