//! Minimal writer for uncompressed "newc" cpio archives (the initramfs
//! format the Linux kernel unpacks), and their "crc" variant (magic
//! `070702`, each file's header carrying the 32-bit sum of its bytes),
//! which SWUpdate's `.swu` files use.
//!
//! Output is reproducible: uid/gid 0, mtime 0, inode numbers counting up
//! from 1 in the order entries are added.

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFCHR: u32 = 0o020_000;
const S_IFLNK: u32 = 0o120_000;
const PERM_MASK: u32 = 0o7777;

/// An archive being built in memory.
#[derive(Debug)]
pub struct Cpio {
    buf: Vec<u8>,
    next_ino: u32,
    /// Write the "crc" variant.
    crc: bool,
}

impl Default for Cpio {
    fn default() -> Cpio {
        Cpio::new()
    }
}

impl Cpio {
    pub fn new() -> Cpio {
        Cpio { buf: Vec::new(), next_ino: 1, crc: false }
    }

    /// An archive in the "crc" variant.
    pub fn new_crc() -> Cpio {
        Cpio { crc: true, ..Cpio::new() }
    }

    /// A directory. `path` is relative ("dev"); `mode` holds permission bits
    /// (any file-type bits in it are ignored).
    pub fn add_dir(&mut self, path: &str, mode: u32) {
        self.entry(path, S_IFDIR | (mode & PERM_MASK), 2, (0, 0), &[]);
    }

    /// A regular file with contents `data`.
    pub fn add_file(&mut self, path: &str, mode: u32, data: &[u8]) {
        self.entry(path, S_IFREG | (mode & PERM_MASK), 1, (0, 0), data);
    }

    /// A character device node.
    pub fn add_char_dev(&mut self, path: &str, mode: u32, major: u32, minor: u32) {
        self.entry(path, S_IFCHR | (mode & PERM_MASK), 1, (major, minor), &[]);
    }

    /// A symbolic link to `target` (stored verbatim, no NUL).
    pub fn add_symlink(&mut self, path: &str, target: &str) {
        self.entry(path, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes());
    }

    /// Append the trailer and return the archive bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.write_header(0, 0, 1, 0, (0, 0), "TRAILER!!!", 0);
        self.buf
    }

    fn entry(&mut self, path: &str, mode: u32, nlink: u32, rdev: (u32, u32), data: &[u8]) {
        let path = path.trim_start_matches('/');
        let ino = self.next_ino;
        self.next_ino = self.next_ino.wrapping_add(1);
        // newc sizes are 32-bit; initramfs members are far smaller.
        let size = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let check = if self.crc { data.iter().fold(0u32, |s, b| s.wrapping_add(u32::from(*b))) } else { 0 };
        self.write_header(ino, mode, nlink, size, rdev, path, check);
        self.buf.extend_from_slice(&data[..size as usize]);
        self.pad4();
    }

    #[allow(clippy::too_many_arguments)]
    fn write_header(&mut self, ino: u32, mode: u32, nlink: u32, size: u32, rdev: (u32, u32), name: &str, check: u32) {
        let namesize = u32::try_from(name.len() + 1).unwrap_or(u32::MAX);
        let fields: [u32; 13] = [
            ino, mode, 0, // uid
            0, // gid
            nlink, 0, // mtime
            size, 0, // devmajor
            0, // devminor
            rdev.0, rdev.1, namesize, check,
        ];
        self.buf.extend_from_slice(if self.crc { b"070702" } else { b"070701" });
        for f in fields {
            self.buf.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad4();
    }

    fn pad4(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    #[derive(Debug, PartialEq)]
    struct Entry {
        ino: u32,
        mode: u32,
        uid: u32,
        gid: u32,
        nlink: u32,
        mtime: u32,
        rmajor: u32,
        rminor: u32,
        name: String,
        data: Vec<u8>,
    }

    /// Small newc reader, strict about magic and padding.
    fn parse(mut b: &[u8]) -> Vec<Entry> {
        let total = b.len();
        let mut out = Vec::new();
        loop {
            let start = total - b.len();
            assert_eq!(start % 4, 0, "entry not 4-byte aligned");
            assert_eq!(&b[..6], b"070701");
            let field = |i: usize| u32::from_str_radix(std::str::from_utf8(&b[6 + 8 * i..14 + 8 * i]).unwrap(), 16).unwrap();
            let (ino, mode, uid, gid, nlink, mtime, size) = (field(0), field(1), field(2), field(3), field(4), field(5), field(6) as usize);
            let (rmajor, rminor, namesize, check) = (field(9), field(10), field(11) as usize, field(12));
            assert_eq!(check, 0);
            let name_bytes = &b[110..110 + namesize];
            assert_eq!(*name_bytes.last().unwrap(), 0);
            let name = String::from_utf8(name_bytes[..namesize - 1].to_vec()).unwrap();
            let data_off = (110 + namesize + 3) & !3;
            assert!(b[110 + namesize..data_off].iter().all(|&x| x == 0));
            let data = b[data_off..data_off + size].to_vec();
            let next = (data_off + size + 3) & !3;
            assert!(b[data_off + size..next].iter().all(|&x| x == 0));
            b = &b[next..];
            if name == "TRAILER!!!" {
                assert!(b.is_empty(), "bytes after trailer");
                break;
            }
            out.push(Entry { ino, mode, uid, gid, nlink, mtime, rmajor, rminor, name, data });
        }
        out
    }

    fn sample() -> Vec<u8> {
        let mut c = Cpio::new();
        c.add_dir("dev", 0o755);
        c.add_char_dev("dev/console", 0o600, 5, 1);
        c.add_dir("sbin", 0o755);
        c.add_file("sbin/init", 0o755, b"#!/bin/sh\necho hi\n");
        c.add_file("etc-empty", 0o644, b"");
        c.add_file("abc", 0o4711, b"123");
        c.add_symlink("init", "sbin/init");
        c.add_char_dev("dev/null", 0o666, 1, 3);
        c.finish()
    }

    #[test]
    fn roundtrip() {
        let entries = parse(&sample());
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["dev", "dev/console", "sbin", "sbin/init", "etc-empty", "abc", "init", "dev/null"]);
        let inos: Vec<u32> = entries.iter().map(|e| e.ino).collect();
        assert_eq!(inos, [1, 2, 3, 4, 5, 6, 7, 8]);
        for e in &entries {
            assert_eq!((e.uid, e.gid, e.mtime), (0, 0, 0));
        }
        assert_eq!((entries[0].mode, entries[0].nlink), (0o040755, 2));
        assert_eq!((entries[1].mode, entries[1].nlink, entries[1].rmajor, entries[1].rminor), (0o020600, 1, 5, 1));
        assert_eq!(entries[3].mode, 0o100755);
        assert_eq!(entries[3].data, b"#!/bin/sh\necho hi\n");
        assert!(entries[4].data.is_empty());
        assert_eq!(entries[5].mode, 0o104711);
        assert_eq!(entries[6].mode, 0o120777);
        assert_eq!(entries[6].data, b"sbin/init");
        assert_eq!((entries[7].rmajor, entries[7].rminor), (1, 3));
    }

    #[test]
    fn reproducible_and_ignores_type_bits_and_leading_slash() {
        assert_eq!(sample(), sample());
        let mut c = Cpio::new();
        c.add_file("/x", 0o100644, b"y");
        let e = parse(&c.finish());
        assert_eq!(e[0].name, "x");
        assert_eq!(e[0].mode, 0o100644);
        assert!(parse(&Cpio::new().finish()).is_empty());
        let mut d = Cpio::default();
        d.add_dir("a", 0o755);
        assert_eq!(parse(&d.finish())[0].ino, 1);
    }

    fn temp_dir(tag: &str) -> PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let d = std::env::temp_dir().join(format!("xtask-cpio-{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst)));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn is_root() -> bool {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0")))
            .unwrap_or(false)
    }

    #[test]
    fn extract_with_gnu_cpio() {
        use std::io::Write;
        use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
        use std::process::{Command, Stdio};

        crate::tools::require_command("cpio", "cpio");
        let dir = temp_dir("extract");
        let mut child = Command::new("cpio")
            .args(["-idm", "--quiet", "--no-absolute-filenames"])
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&sample()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "cpio failed: {}", String::from_utf8_lossy(&out.stderr));

        let p = |s: &str| -> PathBuf { dir.join(s) };
        let mode = |path: &Path| std::fs::symlink_metadata(path).unwrap().permissions().mode();
        assert_eq!(std::fs::read(p("sbin/init")).unwrap(), b"#!/bin/sh\necho hi\n");
        assert_eq!(mode(&p("sbin/init")) & 0o7777, 0o755);
        assert_eq!(std::fs::read(p("abc")).unwrap(), b"123");
        assert_eq!(std::fs::read(p("etc-empty")).unwrap(), b"");
        assert!(std::fs::metadata(p("dev")).unwrap().is_dir());
        assert_eq!(std::fs::read_link(p("init")).unwrap(), Path::new("sbin/init"));
        assert_eq!(std::fs::metadata(p("sbin/init")).unwrap().mtime(), 0);

        if is_root() {
            assert_eq!(mode(&p("abc")) & 0o7777, 0o4711);
            let m = std::fs::symlink_metadata(p("dev/console")).unwrap();
            assert!(m.file_type().is_char_device());
            assert_eq!(m.permissions().mode() & 0o7777, 0o600);
            let rdev = m.rdev();
            let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
            let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
            assert_eq!((major, minor), (5, 1));
            let m = std::fs::symlink_metadata(p("dev/null")).unwrap();
            let rdev = m.rdev();
            assert_eq!((((rdev >> 8) & 0xfff), rdev & 0xff), (1, 3));
            assert_eq!(m.uid(), 0);
        } else {
            assert!(
                std::env::var_os("BERTH_ROOT_TESTS").is_none(),
                "extract_with_gnu_cpio: BERTH_ROOT_TESTS is set but this is not root: \
                 the device nodes cannot be checked"
            );
            eprintln!("note: not root; device node checks skipped in extract_with_gnu_cpio");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
