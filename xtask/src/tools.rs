//! Host tool checks: Rust targets (via rustup) and Debian packages (via apt).
//!
//! Everything here is designed to be cheap when the tools are already
//! present: one `rustup target list --installed` call and one `dpkg-query`
//! call, no network access, no output.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Debian packages the build and image steps need; cpio, cryptsetup-bin
/// (veritysetup), squashfs-tools and openssl are the standard tools the unit
/// tests check berth's initramfs, hash trees, images and key files against
/// (a test fails when its tool is missing); cpp reads the kernel's syscall
/// headers for the syscall-number check; apparmor
/// brings `apparmor_parser`, which compiles a board's AppArmor profile.
/// The armv7 build links glibc statically: its C runtime and static
/// libraries are in libc6-dev-armhf-cross, which the cross compiler only
/// recommends (not installed where apt leaves recommendations out).
/// libc6-dev-arm64-cross gives the aarch64 compiler the C headers that the
/// update agent's TLS crypto (ring) compiles against.
const BASE_PACKAGES: &[&str] = &[
    "gcc-aarch64-linux-gnu",
    "gcc-arm-linux-gnueabihf",
    "libc6-dev-armhf-cross",
    "libc6-dev-arm64-cross",
    "squashfs-tools",
    "e2fsprogs",
    "xz-utils",
    "file",
    "cpio",
    "cryptsetup-bin",
    "openssl",
    "cpp",
    "apparmor",
    // The update agent's test runs gooseBit (Python 3.11 or later, from
    // PyPI) in a venv under the target directory.
    "python3-venv",
];

/// QEMU packages. They come from the backports suite: the newer qemu-utils
/// there conflicts with the release's own qemu-system packages.
const QEMU_PACKAGES: &[&str] = &["qemu-system-arm", "qemu-system-x86"];

/// The packages of the bootloader boot (x86_64 through its firmware and
/// GRUB, see `bootdisk`), installed only when a case boots that way:
/// `ovmf` is the UEFI firmware QEMU runs from pflash; `grub-efi-amd64-bin`
/// holds GRUB's x86_64-efi modules and `grub-common` the `grub-mkimage`
/// that links them into one EFI program and the `grub-editenv` that makes
/// the environment block; `dosfstools` makes the FAT file system of the
/// EFI system partition in a plain file (`mkfs.vfat -C`) and `mtools`
/// copies files into it and out of it (`mcopy`), with no loop mount and
/// no root.
pub const BOOTLOADER_PACKAGES: &[&str] = &["ovmf", "grub-efi-amd64-bin", "grub-common", "mtools", "dosfstools"];

/// Install the [`BOOTLOADER_PACKAGES`] that are missing.
pub fn ensure_bootloader_tools() -> Result<(), String> {
    ensure_packages(BOOTLOADER_PACKAGES)
}

/// The packages of the U-Boot boot (aarch64 and armv7, see `ubootdisk`),
/// installed only when a case boots that way: `u-boot-qemu` is U-Boot
/// built for QEMU's `virt` machine (`qemu_arm64`, `qemu_arm`), the
/// firmware QEMU runs; `u-boot-tools` has the `mkimage` that wraps the
/// boot script into the `boot.scr` U-Boot runs; `dosfstools` and `mtools`
/// make and fill the FAT boot partition as for GRUB.
pub const UBOOT_PACKAGES: &[&str] = &["u-boot-qemu", "u-boot-tools", "mtools", "dosfstools"];

/// Install the [`UBOOT_PACKAGES`] that are missing.
pub fn ensure_uboot_tools() -> Result<(), String> {
    ensure_packages(UBOOT_PACKAGES)
}

/// Codename used when /etc/os-release does not tell us.
const DEFAULT_CODENAME: &str = "bookworm";

/// Name of the apt source file we create when no backports source exists.
const BACKPORTS_SOURCE_FILE: &str = "berth-backports.sources";

/// True if `name` is an executable found on `PATH` (or, if `name` contains a
/// slash, if that path is an executable file).
pub fn have_command(name: &str) -> bool {
    if name.is_empty() {
        return false;
    }
    if name.contains('/') {
        return is_executable(Path::new(name));
    }
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| is_executable(&dir.join(name)))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    match fs::metadata(p) {
        Ok(m) => m.is_file() && m.permissions().mode() & 0o111 != 0,
        Err(_) => false,
    }
}

/// Make sure the host has the Rust targets and Debian packages the xtask
/// needs, installing what is missing.
///
/// `root` is the workspace root: rustup runs there so that a
/// `rust-toolchain.toml` in the workspace selects the toolchain that gets
/// the targets. QEMU packages are only checked when `with_qemu` is set.
pub fn ensure_host_tools(root: &Path, rust_targets: &[&str], with_qemu: bool) -> Result<(), String> {
    ensure_rust_targets(root, rust_targets)?;

    let mut base: Vec<&str> = BASE_PACKAGES.to_vec();
    let mut qemu: Vec<&str> = Vec::new();
    if with_qemu {
        qemu.extend_from_slice(QEMU_PACKAGES);
    }
    let mut all: Vec<&str> = base.clone();
    all.extend_from_slice(&qemu);
    let installed = installed_packages(&all)?;
    base.retain(|p| !installed.contains(*p));
    qemu.retain(|p| !installed.contains(*p));
    if base.is_empty() && qemu.is_empty() {
        return Ok(());
    }

    if !have_command("apt-get") {
        let mut missing = base.clone();
        missing.extend_from_slice(&qemu);
        return Err(format!("missing Debian packages ({}) and apt-get is not available to install them", missing.join(" ")));
    }

    if !qemu.is_empty() {
        let suite = format!("{}-backports", os_codename());
        ensure_backports_source(&suite)?;
    }

    eprintln!("xtask: updating apt package index (apt-get update)");
    run_apt(&["update"])?;

    if !base.is_empty() {
        eprintln!("xtask: installing Debian packages: {}", base.join(" "));
        let mut args = vec!["install", "-y", "--no-install-recommends"];
        args.extend_from_slice(&base);
        run_apt(&args)?;
    }
    if !qemu.is_empty() {
        let suite = format!("{}-backports", os_codename());
        eprintln!("xtask: installing Debian packages from {suite}: {}", qemu.join(" "));
        let mut args = vec!["install", "-y", "--no-install-recommends", "-t", suite.as_str()];
        args.extend_from_slice(&qemu);
        run_apt(&args)?;
    }

    // Verify: apt-get can exit 0 without installing what we asked for only in
    // odd configurations, but a clear message beats a confusing later failure.
    let mut all_missing = BASE_PACKAGES.to_vec();
    if with_qemu {
        all_missing.extend_from_slice(QEMU_PACKAGES);
    }
    let now = installed_packages(&all_missing)?;
    all_missing.retain(|p| !now.contains(*p));
    if !all_missing.is_empty() {
        return Err(format!("Debian packages still not installed after apt-get install: {}", all_missing.join(" ")));
    }
    Ok(())
}

/// Make sure the Debian packages `names` are installed (from the release's
/// own suite), installing the missing ones with apt-get.
pub fn ensure_packages(names: &[&str]) -> Result<(), String> {
    let installed = installed_packages(names)?;
    let missing: Vec<&str> = names.iter().copied().filter(|p| !installed.contains(*p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !have_command("apt-get") {
        return Err(format!("missing Debian packages ({}) and apt-get is not available to install them", missing.join(" ")));
    }
    eprintln!("xtask: installing Debian packages: {}", missing.join(" "));
    let mut args = vec!["install", "-y", "--no-install-recommends"];
    args.extend_from_slice(&missing);
    if run_apt(&args).is_err() {
        // A stale package index: refresh it once and try again.
        run_apt(&["update"])?;
        run_apt(&args)?;
    }
    let now = installed_packages(names)?;
    let still: Vec<&str> = names.iter().copied().filter(|p| !now.contains(*p)).collect();
    if still.is_empty() {
        Ok(())
    } else {
        Err(format!("Debian packages still not installed after apt-get install: {}", still.join(" ")))
    }
}

/// For tests that compare with a standard tool: panics, naming the tool and
/// its Debian package, when `cmd` is not on `PATH`.
#[cfg(test)]
pub(crate) fn require_command(cmd: &str, package: &str) {
    assert!(
        have_command(cmd),
        "`{cmd}` is not installed: this test compares with it \
         (Debian package {package}; `cargo xtask test` installs it)"
    );
}

// ---------------------------------------------------------------------------
// Rust targets

fn ensure_rust_targets(root: &Path, targets: &[&str]) -> Result<(), String> {
    if targets.is_empty() {
        return Ok(());
    }
    if !have_command("rustup") {
        return check_targets_without_rustup(targets);
    }
    let out = run_capture(Command::new("rustup").args(["target", "list", "--installed"]).current_dir(root))?;
    let installed: BTreeSet<&str> = out.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let missing: Vec<&str> = targets.iter().copied().filter(|t| !installed.contains(t)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: adding Rust targets: {}", missing.join(" "));
    let mut cmd = Command::new("rustup");
    cmd.args(["target", "add"]).args(&missing).current_dir(root);
    run_status(&mut cmd)
}

/// The toolchain components `cargo xtask test`'s lint gate runs (`cargo
/// fmt`, `cargo clippy`): added through rustup when missing (a minimal
/// toolchain profile has neither); without rustup, the commands must be
/// there already.
pub fn ensure_lint_components(root: &Path) -> Result<(), String> {
    let want = ["rustfmt", "clippy"];
    if !have_command("rustup") {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let missing: Vec<&str> = want
            .iter()
            .copied()
            .filter(|c| {
                let sub = if *c == "rustfmt" { "fmt" } else { "clippy" };
                !Command::new(&cargo).args([sub, "--version"]).output().is_ok_and(|o| o.status.success())
            })
            .collect();
        return if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("Rust components missing ({}) and rustup is not available to add them", missing.join(" ")))
        };
    }
    let out = run_capture(Command::new("rustup").args(["component", "list", "--installed"]).current_dir(root))?;
    let installed: Vec<&str> = out.lines().map(str::trim).collect();
    let missing: Vec<&str> = want.iter().copied().filter(|c| !installed.iter().any(|l| l.starts_with(&format!("{c}-")) || l == c)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: adding Rust components: {}", missing.join(" "));
    let mut cmd = Command::new("rustup");
    cmd.args(["component", "add"]).args(&missing).current_dir(root);
    run_status(&mut cmd)
}

/// Without rustup, look for the targets' standard libraries in the sysroot.
fn check_targets_without_rustup(targets: &[&str]) -> Result<(), String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let sysroot = run_capture(Command::new(&rustc).args(["--print", "sysroot"]))?;
    let lib = PathBuf::from(sysroot.trim()).join("lib").join("rustlib");
    let missing: Vec<&str> = targets.iter().copied().filter(|t| !lib.join(t).join("lib").is_dir()).collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "Rust targets not installed ({}) and rustup is not available to add them; \
             the standard library for them is absent from {}",
            missing.join(" "),
            lib.display()
        ))
    }
}

// ---------------------------------------------------------------------------
// Debian packages

/// Which of `names` dpkg reports as "install ok installed". One dpkg-query
/// call for all of them.
fn installed_packages(names: &[&str]) -> Result<BTreeSet<String>, String> {
    let mut set = BTreeSet::new();
    if names.is_empty() {
        return Ok(set);
    }
    if !have_command("dpkg-query") {
        return Err(format!("dpkg-query not found: cannot check for Debian packages {} (is this a Debian host?)", names.join(" ")));
    }
    // dpkg-query exits 1 when some names are unknown; the known ones are
    // still printed, so the exit status is not an error here.
    let out = Command::new("dpkg-query")
        .arg("-W")
        .arg("-f=${Package}\t${Status}\n")
        .args(names)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run dpkg-query: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in stdout.lines() {
        if let Some((pkg, status)) = line.split_once('\t') {
            if status.trim() == "install ok installed" {
                // Multi-arch packages may print as name:arch.
                let pkg = pkg.split(':').next().unwrap_or(pkg);
                set.insert(pkg.to_string());
            }
        }
    }
    Ok(set)
}

fn run_apt(args: &[&str]) -> Result<(), String> {
    let mut cmd = Command::new("apt-get");
    cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
    run_status(&mut cmd)
}

/// The distribution codename from /etc/os-release (e.g. "bookworm").
fn os_codename() -> String {
    let text = fs::read_to_string("/etc/os-release").unwrap_or_default();
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("VERSION_CODENAME=") {
            let v = v.trim().trim_matches('"').trim_matches('\'');
            if !v.is_empty() {
                return v.to_string();
            }
        }
    }
    DEFAULT_CODENAME.to_string()
}

/// One apt source entry, from either the one-line or the deb822 format.
#[derive(Debug, Clone, PartialEq)]
struct AptSource {
    types: Vec<String>,
    uris: Vec<String>,
    suites: Vec<String>,
    /// Verbatim Signed-By value (a path or an embedded key, continuation
    /// lines kept with their leading space).
    signed_by: Option<String>,
    enabled: bool,
}

fn source_files() -> Vec<PathBuf> {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(rd) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut extra: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                n.ends_with(".list") || n.ends_with(".sources")
            })
            .collect();
        extra.sort();
        files.extend(extra);
    }
    files
}

fn read_sources() -> Vec<AptSource> {
    let mut all = Vec::new();
    for f in source_files() {
        let Ok(text) = fs::read_to_string(&f) else {
            continue;
        };
        let is_deb822 = f.extension().and_then(|e| e.to_str()) == Some("sources");
        if is_deb822 {
            all.extend(parse_deb822(&text));
        } else {
            all.extend(parse_one_line(&text));
        }
    }
    all
}

/// Parse one-line format: `deb [opt=val ...] URI suite [component...]`.
fn parse_one_line(text: &str) -> Vec<AptSource> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let (ty, rest) = match line.split_once(char::is_whitespace) {
            Some(x) => x,
            None => continue,
        };
        if ty != "deb" && ty != "deb-src" {
            continue;
        }
        let mut rest = rest.trim_start();
        let mut signed_by = None;
        if let Some(r) = rest.strip_prefix('[') {
            let Some((opts, after)) = r.split_once(']') else {
                continue;
            };
            for opt in opts.split_whitespace() {
                if let Some(v) = opt.strip_prefix("signed-by=") {
                    signed_by = Some(v.to_string());
                }
            }
            rest = after.trim_start();
        }
        let mut words = rest.split_whitespace();
        let (Some(uri), Some(suite)) = (words.next(), words.next()) else {
            continue;
        };
        out.push(AptSource { types: vec![ty.to_string()], uris: vec![uri.to_string()], suites: vec![suite.to_string()], signed_by, enabled: true });
    }
    out
}

/// Parse deb822 format: stanzas separated by blank lines, `Field: value`
/// with continuation lines starting with whitespace.
fn parse_deb822(text: &str) -> Vec<AptSource> {
    let mut out = Vec::new();
    let mut fields: Vec<(String, String)> = Vec::new();
    let flush = |fields: &mut Vec<(String, String)>, out: &mut Vec<AptSource>| {
        if fields.is_empty() {
            return;
        }
        let get = |k: &str| fields.iter().find(|(name, _)| name.eq_ignore_ascii_case(k)).map(|(_, v)| v.clone());
        let words = |k: &str| -> Vec<String> { get(k).map(|v| v.split_whitespace().map(str::to_string).collect()).unwrap_or_default() };
        let enabled = get("Enabled").map(|v| !v.trim().eq_ignore_ascii_case("no")).unwrap_or(true);
        out.push(AptSource {
            types: words("Types"),
            uris: words("URIs"),
            suites: words("Suites"),
            signed_by: get("Signed-By").map(|v| v.trim_end().to_string()).filter(|v| !v.trim().is_empty()),
            enabled,
        });
        fields.clear();
    };
    for line in text.lines() {
        if line.trim().is_empty() {
            flush(&mut fields, &mut out);
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            if let Some(last) = fields.last_mut() {
                last.1.push('\n');
                last.1.push_str(line);
            }
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            fields.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    flush(&mut fields, &mut out);
    out
}

/// Make sure some enabled apt source lists `suite` (e.g. bookworm-backports);
/// if none does, write a deb822 source modelled on the source that lists the
/// release suite itself.
fn ensure_backports_source(suite: &str) -> Result<(), String> {
    let sources = read_sources();
    let has_suite = |s: &AptSource| s.enabled && s.types.iter().any(|t| t == "deb") && s.suites.iter().any(|x| x == suite);
    if sources.iter().any(has_suite) {
        return Ok(());
    }
    let release = suite.strip_suffix("-backports").unwrap_or(suite);
    let model = sources
        .iter()
        .find(|s| s.enabled && s.types.iter().any(|t| t == "deb") && s.suites.iter().any(|x| x == release) && !s.uris.is_empty())
        .ok_or_else(|| {
            format!(
                "no apt source lists suite {suite}, and no source lists {release} to copy a mirror from; \
                 add a {suite} source under /etc/apt/sources.list.d/"
            )
        })?;
    let text = backports_stanza(model, suite);
    let path = Path::new("/etc/apt/sources.list.d").join(BACKPORTS_SOURCE_FILE);
    eprintln!("xtask: adding apt source for {suite} ({}) as {}", model.uris.join(" "), path.display());
    fs::write(&path, text).map_err(|e| format!("cannot write apt source {}: {e}", path.display()))
}

/// A deb822 source for `suite` on the mirror (and with the key) of the
/// host's own release source, for a private apt state; the mirror is the
/// host's, never a name written here.
pub fn suite_source(suite: &str) -> Result<String, String> {
    let release = os_codename();
    let sources = read_sources();
    let model = sources
        .iter()
        .find(|s| s.enabled && s.types.iter().any(|t| t == "deb") && s.suites.contains(&release) && !s.uris.is_empty())
        .ok_or_else(|| format!("no apt source lists suite {release}: no mirror to fetch {suite} from"))?;
    Ok(backports_stanza(model, suite))
}

fn backports_stanza(model: &AptSource, suite: &str) -> String {
    let mut text = String::new();
    text.push_str("Types: deb\n");
    text.push_str(&format!("URIs: {}\n", model.uris.join(" ")));
    text.push_str(&format!("Suites: {suite}\n"));
    text.push_str("Components: main\n");
    if let Some(sb) = &model.signed_by {
        text.push_str(&format!("Signed-By: {sb}\n"));
    }
    text
}

// ---------------------------------------------------------------------------
// Command helpers

/// Last `n` lines of a command's output, for error messages.
pub(crate) fn tail(bytes: &[u8], n: usize) -> String {
    let s = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = s.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].join("\n")
}

pub(crate) fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Run a command capturing stdout; error (with stderr tail) on failure.
pub(crate) fn run_capture(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| format!("cannot run `{}`: {e}", describe(cmd)))?;
    if !out.status.success() {
        return Err(format!("`{}` failed ({}):\n{}", describe(cmd), out.status, tail(&out.stderr, 15)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Run a command with its output captured; on failure report the exit status
/// and the tail of its output. On success the output is discarded.
pub(crate) fn run_status(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| format!("cannot run `{}`: {e}", describe(cmd)))?;
    if !out.status.success() {
        let mut both = out.stdout.clone();
        both.extend_from_slice(&out.stderr);
        return Err(format!("`{}` failed ({}):\n{}", describe(cmd), out.status, tail(&both, 20)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb822_with_continuation_and_comments() {
        let text = "Types: deb\n# comment\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/k.gpg\n\nTypes: deb\nURIs: http://mirror.example/sec\nSuites: bookworm-security\nEnabled: no\nSigned-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n abc\n";
        let s = parse_deb822(text);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].suites, vec!["bookworm", "bookworm-updates"]);
        assert_eq!(s[0].signed_by.as_deref(), Some("/usr/share/keyrings/k.gpg"));
        assert!(s[0].enabled);
        assert!(!s[1].enabled);
        assert!(s[1].signed_by.as_deref().unwrap_or("").contains("\n abc"));
        let stanza = backports_stanza(&s[0], "bookworm-backports");
        assert!(stanza.contains("URIs: http://mirror.example/debian\n"));
        assert!(stanza.contains("Suites: bookworm-backports\n"));
        assert!(stanza.contains("Signed-By: /usr/share/keyrings/k.gpg\n"));
    }

    #[test]
    fn one_line_format() {
        let text = "# x\ndeb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main\ndeb-src http://m.example/debian bookworm main\n";
        let s = parse_one_line(text);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].uris, vec!["http://m.example/debian"]);
        assert_eq!(s[0].suites, vec!["bookworm"]);
        assert_eq!(s[0].signed_by.as_deref(), Some("/k.gpg"));
        assert_eq!(s[1].types, vec!["deb-src"]);
    }

    #[test]
    fn have_command_basics() {
        assert!(have_command("sh"));
        assert!(!have_command("definitely-not-a-command-xyz"));
        assert!(!have_command(""));
    }
}
