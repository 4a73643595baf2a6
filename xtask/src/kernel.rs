//! Guest kernels: Debian kernel packages for a foreign architecture,
//! downloaded with a private apt state (not installed) and unpacked under
//! `target/kernels/`.
//!
//! Layout (all under the workspace's `target/kernels/`):
//! - `apt-<debarch>/`: private apt lists, cache and download directory.
//! - `<debarch>-<flavour>/root/`: the unpacked package (boot/, lib/modules/).
//! - `<debarch>-<flavour>/kernel.txt`: package, package version and kernel
//!   version; written last, so its presence means the tree is complete.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::tools::{describe, run_capture, run_status};

/// An unpacked guest kernel.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// Debian package the kernel came from.
    pub package: String,
    /// Kernel release, the `lib/modules` directory name
    /// (e.g. `6.12.57+deb12-cloud-arm64`).
    pub version: String,
    /// The kernel image (`boot/vmlinuz-<version>`).
    pub image: PathBuf,
    /// `.../lib/modules/<version>`.
    pub modules_dir: PathBuf,
}

/// One module of a resolved load list.
#[derive(Debug, Clone, PartialEq)]
pub struct Module {
    /// Module name in kernel spelling (underscores, e.g. `dm_verity`).
    pub name: String,
    /// The module file (`.ko`, `.ko.xz`, ...); `None` when built in or not
    /// found in this kernel.
    pub file: Option<PathBuf>,
    /// Built into the kernel image: nothing to load.
    pub builtin: bool,
}

/// Make sure the newest Debian kernel of `flavour` for `debarch` is
/// downloaded and unpacked; returns at once (no network) if it already is.
pub fn ensure_kernel(root: &Path, debarch: &str, flavour: &str) -> Result<Kernel, String> {
    check_word("Debian architecture", debarch)?;
    check_word("kernel flavour", flavour)?;
    let kernels = root.join("target").join("kernels");
    let kdir = kernels.join(format!("{debarch}-{flavour}"));
    let info_path = kdir.join("kernel.txt");
    let tree = kdir.join("root");

    if let Some(k) = cached_kernel(&info_path, &tree) {
        return Ok(k);
    }

    let apt = AptEnv::new(&kernels.join(format!("apt-{debarch}")), debarch)?;
    eprintln!("xtask: updating Debian package index for {debarch} (to find a {flavour} kernel)");
    // A mirror caught mid-sync fails one index file while the rest are
    // fine: retry once, then carry on with what was fetched and only fail
    // if no kernel can be found in it.
    let update_err = match apt.update() {
        Ok(()) => None,
        Err(_) => {
            eprintln!("xtask: apt-get update for {debarch} reported errors; retrying once");
            match apt.update() {
                Ok(()) => None,
                Err(e) => {
                    eprintln!(
                        "xtask: warning: apt-get update for {debarch} still reports errors; \
                         continuing with the index files that were fetched:\n{}",
                        last_lines(&e, 3)
                    );
                    Some(e)
                }
            }
        }
    };
    let (package, pkg_version) = apt.newest_kernel_package(flavour).map_err(|e| match &update_err {
        Some(u) => format!("{e}\n(the package index update had failed: {u})"),
        None => e,
    })?;
    eprintln!("xtask: downloading Debian kernel package {package} {pkg_version} ({debarch})");
    let deb = apt.download(&package, &pkg_version)?;

    eprintln!("xtask: extracting {} into {}", file_name(&deb), tree.display());
    fs::create_dir_all(&kdir).map_err(|e| format!("cannot create {}: {e}", kdir.display()))?;
    // kernel.txt goes first so an interrupted extraction is never taken as
    // complete.
    remove_if_exists(&info_path)?;
    let tmp = kdir.join("root.partial");
    remove_dir_if_exists(&tmp)?;
    fs::create_dir_all(&tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    let mut cmd = Command::new("dpkg-deb");
    cmd.arg("-x").arg(&deb).arg(&tmp);
    run_status(&mut cmd)?;
    remove_dir_if_exists(&tree)?;
    fs::rename(&tmp, &tree).map_err(|e| format!("cannot rename {} to {}: {e}", tmp.display(), tree.display()))?;

    let version = kernel_release_in(&tree, &package)?;
    let k = kernel_at(&tree, &package, &version).ok_or_else(|| format!("package {package} has no boot/vmlinuz-{version} or lib/modules/{version}"))?;
    let info = format!("package={package}\npackage_version={pkg_version}\nversion={version}\n");
    fs::write(&info_path, info).map_err(|e| format!("cannot write {}: {e}", info_path.display()))?;
    // The unpacked tree is the cache; the .deb is not needed any more.
    let _ = fs::remove_file(&deb);
    Ok(k)
}

/// Make sure the newest Debian package `package` for `debarch` is
/// downloaded and unpacked (the same private apt state as the kernels);
/// returns its tree at once if it already is. Layout:
/// `target/debs/<debarch>-<package>/root/` and `package.txt` (package and
/// version; written last, so its presence means the tree is complete).
pub fn ensure_package(root: &Path, debarch: &str, package: &str) -> Result<(PathBuf, String), String> {
    ensure_package_from(root, debarch, package, None)
}

/// [`ensure_package`], from `suite` alone when given (on the host's mirror,
/// in a private apt state of its own; the tree goes to
/// `target/debs/<debarch>-<package>-<suite>/`).
pub fn ensure_package_from(root: &Path, debarch: &str, package: &str, suite: Option<&str>) -> Result<(PathBuf, String), String> {
    check_word("Debian architecture", debarch)?;
    if let Some(s) = suite {
        check_word("Debian suite", s)?;
    }
    let tag = suite.map(|s| format!("-{s}")).unwrap_or_default();
    if package.is_empty() || !package.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b)) {
        return Err(format!("invalid Debian package name {package:?}"));
    }
    let pdir = root.join("target").join("debs").join(format!("{debarch}-{package}{tag}"));
    let info_path = pdir.join("package.txt");
    let tree = pdir.join("root");
    if let Ok(text) = fs::read_to_string(&info_path) {
        if let Some(v) = text.lines().find_map(|l| l.strip_prefix("version=")) {
            if tree.is_dir() {
                return Ok((tree, v.trim().to_string()));
            }
        }
    }
    let apt_dir = root.join("target").join("kernels").join(format!("apt-{debarch}{tag}"));
    let apt = match suite {
        None => AptEnv::new(&apt_dir, debarch)?,
        Some(s) => AptEnv::with_source(&apt_dir, debarch, &crate::tools::suite_source(s)?)?,
    };
    let newest = |apt: &AptEnv| -> Result<Option<(String, String)>, String> {
        let mut c = apt.apt_cache();
        c.arg("madison").arg(package);
        let out = run_capture(&mut c)?;
        let found: Vec<(String, String)> = parse_madison(&out).into_iter().filter(|(n, _)| n == package).collect();
        Ok(pick_newest(&found))
    };
    let (_, version) = match newest(&apt)? {
        Some(found) => found,
        None => {
            eprintln!("xtask: updating Debian package index for {debarch} (to find {package})");
            apt.update()?;
            newest(&apt)?.ok_or_else(|| format!("Debian has no package {package} for {debarch}"))?
        }
    };
    eprintln!("xtask: downloading Debian package {package} {version} ({debarch})");
    fs::create_dir_all(&pdir).map_err(|e| format!("cannot create {}: {e}", pdir.display()))?;
    remove_if_exists(&info_path)?;
    let deb = apt.download_to(package, &version, &pdir)?;
    let tmp = pdir.join("root.partial");
    remove_dir_if_exists(&tmp)?;
    fs::create_dir_all(&tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    run_status(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tmp))?;
    remove_dir_if_exists(&tree)?;
    fs::rename(&tmp, &tree).map_err(|e| format!("cannot rename {} to {}: {e}", tmp.display(), tree.display()))?;
    let _ = fs::remove_file(&deb);
    fs::write(&info_path, format!("package={package}\nversion={version}\n")).map_err(|e| format!("cannot write {}: {e}", info_path.display()))?;
    Ok((tree, version))
}

/// Read kernel.txt and check that the files it names exist.
fn cached_kernel(info_path: &Path, tree: &Path) -> Option<Kernel> {
    let text = fs::read_to_string(info_path).ok()?;
    let field =
        |k: &str| text.lines().find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix('='))).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let package = field("package")?;
    let version = field("version")?;
    kernel_at(tree, &package, &version)
}

fn kernel_at(tree: &Path, package: &str, version: &str) -> Option<Kernel> {
    let image = tree.join("boot").join(format!("vmlinuz-{version}"));
    let modules_dir = tree.join("lib").join("modules").join(version);
    if image.is_file() && modules_dir.is_dir() {
        Some(Kernel { package: package.to_string(), version: version.to_string(), image, modules_dir })
    } else {
        None
    }
}

/// The single `lib/modules/<release>` directory name in an unpacked tree.
fn kernel_release_in(tree: &Path, package: &str) -> Result<String, String> {
    let dir = tree.join("lib").join("modules");
    let rd = fs::read_dir(&dir).map_err(|e| format!("package {package} has no lib/modules ({}: {e})", dir.display()))?;
    let mut names: Vec<String> = rd.filter_map(|e| e.ok()).filter(|e| e.path().is_dir()).filter_map(|e| e.file_name().to_str().map(str::to_string)).collect();
    names.sort();
    match names.len() {
        1 => Ok(names.remove(0)),
        0 => Err(format!("package {package} has an empty {}", dir.display())),
        _ => Err(format!("package {package} has several kernel releases in {}: {}", dir.display(), names.join(" "))),
    }
}

fn last_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn check_word(what: &str, s: &str) -> Result<(), String> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        Ok(())
    } else {
        Err(format!("invalid {what} {s:?} (expected lowercase letters, digits and '-')"))
    }
}

fn file_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| p.display().to_string())
}

fn remove_if_exists(p: &Path) -> Result<(), String> {
    match fs::remove_file(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot remove {}: {e}", p.display())),
    }
}

fn remove_dir_if_exists(p: &Path) -> Result<(), String> {
    match fs::remove_dir_all(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot remove {}: {e}", p.display())),
    }
}

// ---------------------------------------------------------------------------
// Private apt state for a foreign architecture

struct AptEnv {
    dir: PathBuf,
    opts: Vec<String>,
}

impl AptEnv {
    fn new(dir: &Path, debarch: &str) -> Result<AptEnv, String> {
        for sub in ["lists/partial", "archives/partial", "cache", "debs"] {
            let d = dir.join(sub);
            fs::create_dir_all(&d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
        }
        let status = dir.join("status");
        if !status.exists() {
            fs::write(&status, b"").map_err(|e| format!("cannot create {}: {e}", status.display()))?;
        }
        let d = |sub: &str| dir.join(sub).display().to_string();
        let opts = vec![
            format!("-oAPT::Architecture={debarch}"),
            format!("-oAPT::Architectures={debarch}"),
            format!("-oDir::State::Lists={}", d("lists")),
            format!("-oDir::State::Status={}", d("status")),
            format!("-oDir::Cache={}", d("cache")),
            format!("-oDir::Cache::Archives={}", d("archives")),
            // Our directories live in the workspace, which the unprivileged
            // download user may not be able to enter; fetch as ourselves
            // rather than having apt warn about it.
            "-oAPT::Sandbox::User=root".to_string(),
        ];
        Ok(AptEnv { dir: dir.to_path_buf(), opts })
    }

    /// An apt state that reads only `source` (deb822 text), not the host's
    /// source lists.
    fn with_source(dir: &Path, debarch: &str, source: &str) -> Result<AptEnv, String> {
        let mut apt = AptEnv::new(dir, debarch)?;
        let parts = dir.join("sources.list.d");
        fs::create_dir_all(&parts).map_err(|e| format!("cannot create {}: {e}", parts.display()))?;
        let file = parts.join("suite.sources");
        fs::write(&file, source).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
        let list = dir.join("sources.list");
        fs::write(&list, b"").map_err(|e| format!("cannot write {}: {e}", list.display()))?;
        apt.opts.push(format!("-oDir::Etc::SourceList={}", list.display()));
        apt.opts.push(format!("-oDir::Etc::SourceParts={}", parts.display()));
        Ok(apt)
    }

    fn apt_get(&self) -> Command {
        let mut c = Command::new("apt-get");
        c.args(&self.opts).env("DEBIAN_FRONTEND", "noninteractive");
        c
    }

    fn apt_cache(&self) -> Command {
        let mut c = Command::new("apt-cache");
        c.args(&self.opts);
        c
    }

    fn update(&self) -> Result<(), String> {
        let mut c = self.apt_get();
        c.arg("update");
        run_status(&mut c)
    }

    /// Find the newest `linux-image-<abi>-<flavour>[-unsigned]` package:
    /// (package name, package version).
    fn newest_kernel_package(&self, flavour: &str) -> Result<(String, String), String> {
        let pattern = format!("^linux-image-[0-9].*-{flavour}(-unsigned)?$");
        let mut c = self.apt_cache();
        c.args(["search", "--names-only", &pattern]);
        let out = run_capture(&mut c)?;
        let mut names: Vec<String> =
            out.lines().filter_map(|l| l.split_whitespace().next()).filter(|n| is_versioned_kernel_package(n, flavour)).map(str::to_string).collect();
        names.sort();
        names.dedup();
        if names.is_empty() {
            return Err(format!("no linux-image-<version>-{flavour} package found (`{}` listed nothing usable)", describe(&c)));
        }
        let mut c = self.apt_cache();
        c.arg("madison").args(&names);
        let out = run_capture(&mut c)?;
        let candidates = parse_madison(&out);
        pick_newest(&candidates).ok_or_else(|| format!("apt-cache madison reported no versions for any of: {}", names.join(" ")))
    }

    /// Download `package=version` into the debs directory; path of the .deb.
    fn download(&self, package: &str, version: &str) -> Result<PathBuf, String> {
        self.download_to(package, version, &self.dir.join("debs"))
    }

    /// Download `package=version` into `debs` (whose older .debs are
    /// removed); path of the .deb.
    fn download_to(&self, package: &str, version: &str, debs: &Path) -> Result<PathBuf, String> {
        // Old downloads are not needed: the unpacked trees are the cache.
        if let Ok(rd) = fs::read_dir(debs) {
            for e in rd.filter_map(|e| e.ok()) {
                if e.path().extension().and_then(|x| x.to_str()) == Some("deb") {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        let mut c = self.apt_get();
        c.arg("download").arg(format!("{package}={version}")).current_dir(debs);
        run_status(&mut c)?;
        let prefix = format!("{package}_");
        let rd = fs::read_dir(debs).map_err(|e| format!("cannot list {}: {e}", debs.display()))?;
        let mut found: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let n = file_name(p);
                n.starts_with(&prefix) && n.ends_with(".deb")
            })
            .collect();
        found.sort();
        found.pop().ok_or_else(|| format!("`{}` succeeded but left no {prefix}*.deb in {}", describe(&c), debs.display()))
    }
}

/// `linux-image-<abi>-<flavour>` or `...-unsigned`, where `<abi>` is a real
/// kernel ABI (`6.1.0-57`, `6.12.95+deb12`), not a meta package
/// (`linux-image-6.12-<flavour>`) or another flavour that ends the same way
/// (`linux-image-6.12.95+deb12-rt-armmp`).
fn is_versioned_kernel_package(name: &str, flavour: &str) -> bool {
    let Some(rest) = name.strip_prefix("linux-image-") else {
        return false;
    };
    let rest = rest.strip_suffix("-unsigned").unwrap_or(rest);
    let Some(abi) = rest.strip_suffix(flavour).and_then(|r| r.strip_suffix('-')) else {
        return false;
    };
    let mut parts = abi.split('-');
    let Some(upstream) = parts.next() else {
        return false;
    };
    let numeric = upstream.split('+').next().unwrap_or("");
    if numeric.split('.').count() < 3 || !numeric.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())) {
        return false;
    }
    parts.all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Parse `apt-cache madison` lines: `name | version | source`.
fn parse_madison(out: &str) -> Vec<(String, String)> {
    let mut v = Vec::new();
    for line in out.lines() {
        let mut f = line.split('|').map(str::trim);
        if let (Some(n), Some(ver)) = (f.next(), f.next()) {
            if !n.is_empty() && !ver.is_empty() {
                v.push((n.to_string(), ver.to_string()));
            }
        }
    }
    v
}

/// Highest package version wins; for equal versions the `-unsigned` package
/// (the plain image, as opposed to the secure-boot signed copy) is preferred.
fn pick_newest(c: &[(String, String)]) -> Option<(String, String)> {
    c.iter()
        .max_by(|a, b| deb_version_cmp(&a.1, &b.1).then_with(|| a.0.ends_with("-unsigned").cmp(&b.0.ends_with("-unsigned"))).then_with(|| b.0.cmp(&a.0)))
        .cloned()
}

/// Debian version comparison (epoch, upstream version, revision), as in
/// dpkg's `verrevcmp`.
fn deb_version_cmp(a: &str, b: &str) -> Ordering {
    fn split(v: &str) -> (u64, &str, &str) {
        let (epoch, rest) = match v.split_once(':') {
            Some((e, r)) if e.bytes().all(|b| b.is_ascii_digit()) => (e.parse().unwrap_or(0), r),
            _ => (0, v),
        };
        match rest.rsplit_once('-') {
            Some((u, r)) => (epoch, u, r),
            None => (epoch, rest, ""),
        }
    }
    let (ea, ua, ra) = split(a);
    let (eb, ub, rb) = split(b);
    ea.cmp(&eb).then_with(|| verrevcmp(ua, ub)).then_with(|| verrevcmp(ra, rb))
}

fn verrevcmp(a: &str, b: &str) -> Ordering {
    fn order(c: Option<u8>) -> i32 {
        match c {
            None => 0,
            Some(b'~') => -1,
            Some(c) if c.is_ascii_digit() => 0,
            Some(c) if c.is_ascii_alphabetic() => c as i32,
            Some(c) => c as i32 + 256,
        }
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        // Non-digit prefix.
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let ac = order(a.get(i).copied());
            let bc = order(b.get(j).copied());
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        // Numeric part.
        while i < a.len() && a[i] == b'0' {
            i += 1;
        }
        while j < b.len() && b[j] == b'0' {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while i < a.len() && a[i].is_ascii_digit() && j < b.len() && b[j].is_ascii_digit() {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if i < a.len() && a[i].is_ascii_digit() {
            return Ordering::Greater;
        }
        if j < b.len() && b[j].is_ascii_digit() {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

// ---------------------------------------------------------------------------
// Module resolution

/// Kernel spelling of a module name: '-' and '_' are equivalent, the kernel
/// uses '_'.
fn norm(name: &str) -> String {
    name.trim().replace('-', "_")
}

/// Module name of a module file name (`dm-verity.ko.xz` -> `dm_verity`).
fn module_name_of_file(file_name: &str) -> Option<String> {
    for ext in [".ko.xz", ".ko.zst", ".ko.gz", ".ko"] {
        if let Some(stem) = file_name.strip_suffix(ext) {
            return Some(norm(stem));
        }
    }
    None
}

/// Resolve `wanted` modules to a load list: each module once, dependencies
/// before the modules that need them, otherwise in `wanted` order.
///
/// Built-in modules come back with `builtin: true`; modules this kernel does
/// not have come back with `file: None` and a warning (the caller decides
/// what to do; berth logs the failure at boot). A dependency cycle is an
/// error.
pub fn resolve_modules(k: &Kernel, wanted: &[String]) -> Result<Vec<Module>, String> {
    let files = index_module_files(&k.modules_dir.join("kernel"))?;
    let builtin = read_builtin(&k.modules_dir.join("modules.builtin"))?;
    let mut dep_cache: HashMap<String, Vec<String>> = HashMap::new();
    let order = load_order(wanted, |name| {
        if let Some(d) = dep_cache.get(name) {
            return Ok(d.clone());
        }
        let deps = match files.get(name) {
            Some(path) => {
                let data = read_module_file(path)?;
                let section = modinfo_section(&data);
                parse_depends(section.unwrap_or(&data))
            }
            None => Vec::new(),
        };
        dep_cache.insert(name.to_string(), deps.clone());
        Ok(deps)
    })?;
    let wanted_set: HashSet<String> = wanted.iter().map(|w| norm(w)).collect();
    let mut result = Vec::with_capacity(order.len());
    for name in order {
        if let Some(path) = files.get(&name) {
            result.push(Module { name, file: Some(path.clone()), builtin: false });
        } else if builtin.contains(&name) {
            if wanted_set.contains(&name) {
                eprintln!("xtask: note: module {name} is built into kernel {}; nothing to load", k.version);
            }
            result.push(Module { name, file: None, builtin: true });
        } else {
            eprintln!("xtask: warning: module {name} not found in kernel {}; berth will log the failure at boot", k.version);
            result.push(Module { name, file: None, builtin: false });
        }
    }
    Ok(result)
}

/// Pure ordering logic: the transitive closure of `wanted` under `deps`, in
/// load order (post-order DFS), each name once, normalized to '_' spelling.
/// `deps` is called once per distinct module reached.
fn load_order<F>(wanted: &[String], mut deps: F) -> Result<Vec<String>, String>
where
    F: FnMut(&str) -> Result<Vec<String>, String>,
{
    #[derive(PartialEq)]
    enum State {
        InProgress,
        Done,
    }
    let mut state: HashMap<String, State> = HashMap::new();
    let mut out = Vec::new();
    // Explicit stack of (name, its deps, next dep index) to avoid recursion
    // depth issues; `path` mirrors the in-progress chain for messages.
    for w in wanted {
        let w = norm(w);
        if w.is_empty() || state.contains_key(&w) {
            continue;
        }
        let first = deps(&w)?.iter().map(|d| norm(d)).filter(|d| !d.is_empty()).collect::<Vec<_>>();
        state.insert(w.clone(), State::InProgress);
        let mut stack: Vec<(String, Vec<String>, usize)> = vec![(w, first, 0)];
        while let Some(top) = stack.last_mut() {
            if top.2 < top.1.len() {
                let d = top.1[top.2].clone();
                top.2 += 1;
                match state.get(&d) {
                    Some(State::Done) => {}
                    Some(State::InProgress) => {
                        let start = stack.iter().position(|(n, _, _)| *n == d).unwrap_or(0);
                        let mut chain: Vec<&str> = stack[start..].iter().map(|(n, _, _)| n.as_str()).collect();
                        chain.push(&d);
                        return Err(format!("module dependency cycle: {}", chain.join(" -> ")));
                    }
                    None => {
                        let dd = deps(&d)?.iter().map(|x| norm(x)).filter(|x| !x.is_empty()).collect();
                        state.insert(d.clone(), State::InProgress);
                        stack.push((d, dd, 0));
                    }
                }
            } else if let Some((name, _, _)) = stack.pop() {
                state.insert(name.clone(), State::Done);
                out.push(name);
            }
        }
    }
    Ok(out)
}

/// Map module name -> file for every module file under `dir`.
fn index_module_files(dir: &Path) -> Result<BTreeMap<String, PathBuf>, String> {
    let mut map = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let rd = fs::read_dir(&d).map_err(|e| format!("cannot list module directory {}: {e}", d.display()))?;
        for e in rd {
            let e = e.map_err(|e| format!("cannot list module directory {}: {e}", d.display()))?;
            let p = e.path();
            let ft = e.file_type().map_err(|err| format!("cannot stat {}: {err}", p.display()))?;
            if ft.is_dir() {
                todo.push(p);
            } else if let Some(name) = e.file_name().to_str().and_then(module_name_of_file) {
                map.entry(name).or_insert(p);
            }
        }
    }
    Ok(map)
}

/// Names from modules.builtin (`kernel/fs/ext4/ext4.ko` -> `ext4`).
fn read_builtin(path: &Path) -> Result<HashSet<String>, String> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashSet::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    Ok(parse_builtin(&text))
}

fn parse_builtin(text: &str) -> HashSet<String> {
    text.lines().filter_map(|l| l.trim().rsplit('/').next()).filter_map(module_name_of_file).collect()
}

/// Module file contents, decompressed.
pub fn read_module_file(path: &Path) -> Result<Vec<u8>, String> {
    let name = file_name(path);
    let tool = if name.ends_with(".xz") {
        "xz"
    } else if name.ends_with(".zst") {
        "zstd"
    } else if name.ends_with(".gz") {
        "gzip"
    } else {
        return fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()));
    };
    let mut c = Command::new(tool);
    c.arg("-dc").arg(path);
    let out = c.output().map_err(|e| format!("cannot run `{}`: {e}", describe(&c)))?;
    if !out.status.success() {
        return Err(format!("`{}` failed ({}): {}", describe(&c), out.status, crate::tools::tail(&out.stderr, 5)));
    }
    Ok(out.stdout)
}

/// The `.modinfo` section of an ELF file, if it parses as one.
fn modinfo_section(elf: &[u8]) -> Option<&[u8]> {
    if elf.len() < 0x34 || &elf[..4] != b"\x7fELF" {
        return None;
    }
    let is64 = match elf[4] {
        1 => false,
        2 => true,
        _ => return None,
    };
    let le = match elf[5] {
        1 => true,
        2 => false,
        _ => return None,
    };
    let rd = |off: usize, n: usize| -> Option<u64> {
        let b = elf.get(off..off.checked_add(n)?)?;
        let mut v: u64 = 0;
        for i in 0..n {
            let byte = if le { b[n - 1 - i] } else { b[i] };
            v = (v << 8) | u64::from(byte);
        }
        Some(v)
    };
    let (shoff, shentsize, shnum, shstrndx) =
        if is64 { (rd(0x28, 8)?, rd(0x3a, 2)?, rd(0x3c, 2)?, rd(0x3e, 2)?) } else { (rd(0x20, 4)?, rd(0x2e, 2)?, rd(0x30, 2)?, rd(0x32, 2)?) };
    let shoff = usize::try_from(shoff).ok()?;
    let shentsize = usize::try_from(shentsize).ok()?;
    let section = |i: u64| -> Option<(u64, usize, usize)> {
        let base = shoff.checked_add(usize::try_from(i).ok()?.checked_mul(shentsize)?)?;
        if is64 {
            Some((rd(base, 4)?, usize::try_from(rd(base + 0x18, 8)?).ok()?, usize::try_from(rd(base + 0x20, 8)?).ok()?))
        } else {
            Some((rd(base, 4)?, usize::try_from(rd(base + 0x10, 4)?).ok()?, usize::try_from(rd(base + 0x14, 4)?).ok()?))
        }
    };
    let (_, stroff, strsize) = section(shstrndx)?;
    let strtab = elf.get(stroff..stroff.checked_add(strsize)?)?;
    for i in 0..shnum {
        let (name_off, off, size) = section(i)?;
        let name_off = usize::try_from(name_off).ok()?;
        let name = strtab.get(name_off..)?;
        let end = name.iter().position(|&b| b == 0)?;
        if &name[..end] == b".modinfo" {
            return elf.get(off..off.checked_add(size)?);
        }
    }
    None
}

/// The module names in the `depends=` entry of a modinfo blob (NUL-separated
/// `key=value` strings). Empty if there is no entry or it is empty.
fn parse_depends(buf: &[u8]) -> Vec<String> {
    const KEY: &[u8] = b"depends=";
    let mut i = 0;
    while i + KEY.len() <= buf.len() {
        if buf[i..].starts_with(KEY) && (i == 0 || buf[i - 1] == 0) {
            let start = i + KEY.len();
            let end = buf[start..].iter().position(|&b| b == 0).map_or(buf.len(), |p| start + p);
            return String::from_utf8_lossy(&buf[start..end]).split(',').map(norm).filter(|s| !s.is_empty()).collect();
        }
        i += 1;
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn graph<'a>(edges: &'a [(&'a str, &'a [&'a str])]) -> impl FnMut(&str) -> Result<Vec<String>, String> + 'a {
        move |n: &str| Ok(edges.iter().find(|(k, _)| *k == n).map(|(_, d)| s(d)).unwrap_or_default())
    }

    #[test]
    fn order_puts_deps_first_each_once() {
        let edges: &[(&str, &[&str])] = &[
            ("ext4", &["jbd2", "mbcache", "crc16"]),
            ("jbd2", &[]),
            ("virtio_blk", &[]),
            ("squashfs", &[]),
            ("dm_verity", &["dm_bufio", "dm_mod"]),
            ("dm_bufio", &["dm_mod"]),
        ];
        let got = load_order(&s(&["virtio_blk", "squashfs", "ext4"]), graph(edges)).unwrap();
        assert_eq!(got, s(&["virtio_blk", "squashfs", "jbd2", "mbcache", "crc16", "ext4"]));
        let got = load_order(&s(&["dm-verity", "dm_mod", "dm_bufio"]), graph(edges)).unwrap();
        assert_eq!(got, s(&["dm_mod", "dm_bufio", "dm_verity"]));
    }

    #[test]
    fn order_keeps_wanted_order_and_dedups() {
        let edges: &[(&str, &[&str])] = &[("b", &["a"])];
        let got = load_order(&s(&["c", "b", "a", "c", "b"]), graph(edges)).unwrap();
        assert_eq!(got, s(&["c", "a", "b"]));
        assert!(load_order(&[], graph(edges)).unwrap().is_empty());
    }

    #[test]
    fn order_treats_dash_and_underscore_alike() {
        let edges: &[(&str, &[&str])] = &[("dm_verity", &["dm-mod"])];
        let got = load_order(&s(&["dm-verity", "dm_mod"]), graph(edges)).unwrap();
        assert_eq!(got, s(&["dm_mod", "dm_verity"]));
    }

    #[test]
    fn order_calls_deps_once_per_module() {
        let mut calls = Vec::new();
        let edges: &[(&str, &[&str])] = &[("a", &["c"]), ("b", &["c"])];
        let mut g = graph(edges);
        load_order(&s(&["a", "b", "c"]), |n| {
            calls.push(n.to_string());
            g(n)
        })
        .unwrap();
        calls.sort();
        assert_eq!(calls, s(&["a", "b", "c"]));
    }

    #[test]
    fn order_detects_cycles() {
        let edges: &[(&str, &[&str])] = &[("a", &["b"]), ("b", &["c"]), ("c", &["a"])];
        let err = load_order(&s(&["x", "a"]), graph(edges)).unwrap_err();
        assert!(err.contains("a -> b -> c -> a"), "{err}");
        let edges: &[(&str, &[&str])] = &[("a", &["a"])];
        assert!(load_order(&s(&["a"]), graph(edges)).is_err());
    }

    #[test]
    fn order_propagates_dep_errors() {
        let err = load_order(&s(&["a"]), |_| Err("boom".to_string())).unwrap_err();
        assert_eq!(err, "boom");
    }

    #[test]
    fn depends_parsing() {
        let buf = b"\x7fELF junk\0license=GPL\0depends=jbd2,mbcache,crc16\0intree=Y\0";
        assert_eq!(parse_depends(buf), s(&["jbd2", "mbcache", "crc16"]));
        let buf = b"x\0depends=\0name=virtio_blk\0";
        assert!(parse_depends(buf).is_empty());
        assert!(parse_depends(b"name=foo\0").is_empty());
        // Key at the start of the buffer, value running to the end.
        assert_eq!(parse_depends(b"depends=dm-mod"), s(&["dm_mod"]));
        // "xdepends=" is a different key.
        assert!(parse_depends(b"\0softdepends=a\0").is_empty());
    }

    #[test]
    fn modinfo_section_from_minimal_elf64() {
        // Build a tiny little-endian ELF64 with sections: null, .modinfo, .shstrtab.
        let shstr = b"\0.modinfo\0.shstrtab\0";
        let modinfo = b"depends=a,b\0name=m\0";
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[5] = 1;
        let modinfo_off = elf.len();
        elf.extend_from_slice(modinfo);
        let shstr_off = elf.len();
        elf.extend_from_slice(shstr);
        while !elf.len().is_multiple_of(8) {
            elf.push(0);
        }
        let shoff = elf.len();
        let mut sh = |name: u32, off: usize, size: usize| {
            let mut e = vec![0u8; 64];
            e[0..4].copy_from_slice(&name.to_le_bytes());
            e[0x18..0x20].copy_from_slice(&(off as u64).to_le_bytes());
            e[0x20..0x28].copy_from_slice(&(size as u64).to_le_bytes());
            elf.extend_from_slice(&e);
        };
        sh(0, 0, 0);
        sh(1, modinfo_off, modinfo.len());
        sh(10, shstr_off, shstr.len());
        elf[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        elf[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        elf[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        elf[0x3e..0x40].copy_from_slice(&2u16.to_le_bytes());
        let sec = modinfo_section(&elf).unwrap();
        assert_eq!(sec, &modinfo[..]);
        assert_eq!(parse_depends(sec), s(&["a", "b"]));
        // Garbage is not an ELF file.
        assert!(modinfo_section(b"not an elf file at all, just some bytes padded out to length....").is_none());
        // Truncated header fields must not panic.
        assert!(modinfo_section(&elf[..70]).is_none());
    }

    #[test]
    fn builtin_and_file_names() {
        let b = parse_builtin("kernel/fs/ext4/ext4.ko\nkernel/drivers/md/dm-mod.ko\n\n");
        assert!(b.contains("ext4") && b.contains("dm_mod") && b.len() == 2);
        assert_eq!(module_name_of_file("dm-verity.ko.xz").as_deref(), Some("dm_verity"));
        assert_eq!(module_name_of_file("loop.ko").as_deref(), Some("loop"));
        assert_eq!(module_name_of_file("modules.order"), None);
    }

    #[test]
    fn package_name_filter() {
        let f = "cloud-arm64";
        assert!(is_versioned_kernel_package("linux-image-6.12.95+deb12-cloud-arm64-unsigned", f));
        assert!(is_versioned_kernel_package("linux-image-6.12.95+deb12-cloud-arm64", f));
        assert!(is_versioned_kernel_package("linux-image-6.12.90+deb12.1-cloud-arm64", f));
        assert!(is_versioned_kernel_package("linux-image-6.1.0-57-cloud-arm64-unsigned", f));
        assert!(!is_versioned_kernel_package("linux-image-6.12-cloud-arm64", f));
        assert!(!is_versioned_kernel_package("linux-image-cloud-arm64", f));
        assert!(!is_versioned_kernel_package("linux-image-6.12.95+deb12-rt-armmp", "armmp"));
        assert!(is_versioned_kernel_package("linux-image-6.12.95+deb12-armmp", "armmp"));
    }

    #[test]
    fn newest_prefers_version_then_unsigned() {
        let c = vec![
            ("linux-image-6.1.0-57-cloud-arm64-unsigned".to_string(), "6.1.192-3".to_string()),
            ("linux-image-6.12.117+deb12-cloud-arm64".to_string(), "6.12.117-1~deb12u1".to_string()),
            ("linux-image-6.12.117+deb12-cloud-arm64-unsigned".to_string(), "6.12.117-1~deb12u1".to_string()),
            ("linux-image-6.12.95+deb12-cloud-arm64-unsigned".to_string(), "6.12.95-1~bpo12+1".to_string()),
        ];
        assert_eq!(pick_newest(&c).unwrap().0, "linux-image-6.12.117+deb12-cloud-arm64-unsigned");
        assert!(pick_newest(&[]).is_none());
    }

    #[test]
    fn debian_version_order() {
        use Ordering::*;
        assert_eq!(deb_version_cmp("6.12.117-1~deb12u1", "6.1.192-3"), Greater);
        assert_eq!(deb_version_cmp("6.12.95-1~bpo12+1", "6.12.117-1~deb12u1"), Less);
        assert_eq!(deb_version_cmp("1.0~rc1-1", "1.0-1"), Less);
        assert_eq!(deb_version_cmp("1:0.1-1", "9.9-1"), Greater);
        assert_eq!(deb_version_cmp("1.0-1", "1.0-1"), Equal);
        assert_eq!(deb_version_cmp("1.0a-1", "1.0-1"), Greater);
        assert_eq!(deb_version_cmp("1.0+x-1", "1.0a-1"), Greater);
        assert_eq!(deb_version_cmp("6.12.95-1~bpo12+1", "6.12.95-1"), Less);
    }

    #[test]
    fn madison_lines() {
        let out = " linux-image-x | 6.1.192-3 | http://mirror.example/debian bookworm/main arm64 Packages\nbad line\n";
        assert_eq!(parse_madison(out), vec![("linux-image-x".to_string(), "6.1.192-3".to_string())]);
    }
}
