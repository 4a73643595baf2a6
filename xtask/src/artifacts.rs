//! Everything a QEMU boot needs, built into `target/berth/<board>/`: the
//! static berth binary, the compiled board config, the initramfs, the
//! read-only system image, a data partition template and the guest kernel.

use crate::cpio::Cpio;
use crate::kernel::{self, Kernel};
use crate::{release, run_cmd, say};
use berth::release::board::{Arch, Board, CgroupMode, LandlockMode};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Smallest data partition, MiB (the size before partitions were sized to
/// their releases).
pub const DATA_MIN_MIB: u64 = 64;
/// Largest data partition `--data-mib` may ask for, MiB.
pub const DATA_MAX_MIB: u64 = 64 * 1024;
/// Where the guest test agent lives on the test system image.
pub const AGENT_PATH: &str = "/usr/lib/berth/test-agent";

/// Built outputs for one board.
#[derive(Debug, Clone)]
pub struct Artifacts {
    pub board: Board,
    pub dir: PathBuf,
    pub kernel: Kernel,
    /// How QEMU emulates the board (its `[qemu]` table, with the variant's
    /// arguments), and the kernel command line (`[kernel]`'s).
    pub qemu: berth::release::board::Qemu,
    pub cmdline: String,
    /// berth as shipped (no test hooks).
    pub berth: PathBuf,
    /// berth with the test hooks, on [`Artifacts::system_test`].
    pub berth_hooked: PathBuf,
    pub initramfs: PathBuf,
    pub system: PathBuf,
    /// The system image with the test agent added.
    pub system_test: PathBuf,
    pub data_template: PathBuf,
    /// The template's size, MiB, and the bytes of the files it holds.
    pub data_mib: u64,
    pub data_files: u64,
    /// The demo release as compiled, and signed (before any test tampering).
    pub release: berth::release::Release,
    pub signed_release: Vec<u8>,
    /// The release's image files as built.
    pub images: Vec<crate::image::Image>,
    /// Directory of the trusted public keys put on the system image.
    pub key_dir: PathBuf,
    /// The update bundles on the data partition, if the variant has them.
    pub updates: Option<qemu_tests::updates::UpdateInfo>,
    /// The release's manifest directory.
    pub manifests: PathBuf,
}

/// Read and validate a board config file; errors name the file and the field.
pub fn load_board(path: &Path) -> Result<Board, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let board = Board::from_toml(&text).map_err(|e| format!("board config {}: {e}", path.display()))?;
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    if board.name.as_str() != stem {
        return Err(format!("board config {}: field `name`: `{}` must match the file name `{stem}`", path.display(), board.name));
    }
    Ok(board)
}

/// The default board of an architecture.
pub fn board_path(root: &Path, arch: Arch) -> PathBuf {
    let name = match arch {
        Arch::Aarch64 => "qemu-aarch64-virt",
        Arch::Armv7 => "qemu-armv7-virt",
        Arch::X86_64 => "qemu-x86_64",
    };
    root.join("board-configs").join(format!("{name}.toml"))
}

/// Cross-build a static release binary of a package for an architecture.
pub fn cross_build(root: &Path, arch: Arch, package: &str, bin: &str) -> Result<PathBuf, String> {
    cross_build_with(root, arch, package, bin, None)
}

/// The cargo feature of berth's test-only hooks (`berth.run=`, `berth.cut=`,
/// `berthctl debug wedge`): in the QEMU test images only.
pub const TEST_HOOKS: &str = "test-hooks";

/// [`cross_build`] with a cargo feature of the package turned on; the
/// binary is copied to `<bin>-<feature>` beside the plain one, so both
/// builds stay at hand.
pub fn cross_build_with(root: &Path, arch: Arch, package: &str, bin: &str, feature: Option<&str>) -> Result<PathBuf, String> {
    let what = feature.map(|f| format!(" (feature {f})")).unwrap_or_default();
    say(&format!("building {bin} for {}{what}", arch.rust_target()));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root).args(["build", "--quiet", "--release", "--package", package, "--bin", bin, "--target", arch.rust_target()]);
    if let Some(f) = feature {
        cmd.args(["--features", f]);
    }
    run_cmd(&mut cmd)?;
    let out = crate::cargo_target_dir(root).join(arch.rust_target()).join("release").join(bin);
    if !out.is_file() {
        return Err(format!("{} was not produced", out.display()));
    }
    let Some(f) = feature else { return Ok(out) };
    let copy = out.with_file_name(format!("{bin}-{f}"));
    fs::copy(&out, &copy).map_err(|e| format!("{} -> {}: {e}", out.display(), copy.display()))?;
    Ok(copy)
}

/// A test variation of a board, built beside the board's own artifacts.
#[derive(Debug, Clone, Default)]
pub struct Variant {
    /// Appended to the output directory name (`-missing-module`).
    pub suffix: String,
    /// Appended to the board's module list.
    pub extra_modules: Vec<String>,
    /// Overrides the board's cgroup mode.
    pub cgroup: Option<CgroupMode>,
    /// What the data partition holds as the current release.
    pub release: ReleaseData,
    /// The release's manifest directory (default `manifests/`).
    pub manifests: Option<PathBuf>,
    /// Appended to the board's kernel command line.
    pub cmdline: Option<String>,
    /// Overrides the board's Landlock mode.
    pub landlock: Option<LandlockMode>,
    /// Sets the board's AppArmor profile.
    pub apparmor: Option<berth::release::board::AppArmor>,
    /// Host services added to the board's own.
    pub services: Vec<berth::release::board::Service>,
    /// Replaces the board's `[[network]]` entries.
    pub networks: Option<Vec<berth::release::board::Network>>,
    /// Sets the board's `[time]` SNTP server.
    pub time: Option<berth::release::board::time::TimeSync>,
    /// Appended to the board's extra QEMU arguments (a second network card).
    pub qemu_args: Vec<String>,
    /// A directory with the update scenarios' releases (`v2/`, `v3-bad/`):
    /// their bundles go onto the data partition (see `updates`).
    pub updates: Option<PathBuf>,
    /// Overrides the board's `container_log_console`.
    pub container_log_console: Option<bool>,
    /// Overrides the board's `log_quota_kib`.
    pub log_quota_kib: Option<u32>,
    /// Overrides the board's `[inbox]` limits.
    pub inbox: Option<berth::release::room::Limits>,
    /// A release directory bundled (against the installed release) onto the
    /// data partition as `test/big.bundle` (the big-image scenarios).
    pub big_update: Option<PathBuf>,
    /// The data partition's size, MiB; by default what its files and the
    /// staging of its bundles need ([`data_need_mib`]).
    pub data_mib: Option<u64>,
    /// A directory whose tree is added to the test system image (the guest
    /// start benchmark's programs).
    pub system_extra: Option<PathBuf>,
}

/// The release put on a fresh data partition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReleaseData {
    /// The demo release from `manifests/`, signed with the development key.
    #[default]
    Demo,
    /// The same with one payload byte flipped after signing.
    Tampered,
    /// No release at all.
    Absent,
    /// The demo release, with one byte of the `sensor` image's data changed
    /// on the data partition.
    CorruptSensorImage,
    /// The demo release as the previous one, and the same containers as
    /// version + 1 on trial, as if the device lost power before committing.
    InterruptedTrial,
}

/// Build everything for a board, as given or varied for a test.
pub fn build(root: &Path, board_file: &Path, variant: &Variant) -> Result<Artifacts, String> {
    let mut board = load_board(board_file)?;
    let (Some(mut kernel_cfg), Some(mut qemu)) = (board.kernel.clone(), board.qemu.clone()) else {
        return Err(format!(
            "board {}: xtask builds and boots only boards with a [kernel] and a [qemu] table (see docs/porting.md); check a real board's config with `cargo xtask check-board`",
            board.name
        ));
    };
    if let Some(mode) = variant.cgroup {
        board.cgroup = mode;
        if mode == berth::release::board::CgroupMode::V1 {
            // The Debian kernels have no v1 memory controller (memcg is
            // v2 only): containers without memory_max start unlimited.
            board.budgets.memory_controller = berth::confine::budget::Need::Optional;
        }
    }
    if let Some(mode) = variant.landlock {
        board.landlock = mode;
    }
    if let Some(limits) = variant.inbox {
        board.inbox = limits;
    }
    if let Some(kib) = variant.log_quota_kib {
        board.log_quota_kib = kib;
    }
    if let Some(on) = variant.container_log_console {
        board.container_log_console = on;
    }
    if let Some(a) = &variant.apparmor {
        board.apparmor = Some(a.clone());
    }
    if let Some(extra) = &variant.cmdline {
        let mut line = kernel_cfg.cmdline.to_string();
        line.push(' ');
        line.push_str(extra);
        kernel_cfg.cmdline = line.as_str().try_into().map_err(|_| format!("board {}: kernel command line too long", board.name))?;
    }
    for s in &variant.services {
        board.services.push(s.clone()).map_err(|_| format!("{}: more than {} services", board.name, berth::release::board::SERVICES_MAX))?;
    }
    if let Some(nets) = &variant.networks {
        board.networks.clear();
        for n in nets {
            board.networks.push(n.clone()).map_err(|_| format!("{}: more than {} networks", board.name, berth::release::board::NETWORKS_MAX))?;
        }
    }
    if let Some(t) = &variant.time {
        board.time = Some(t.clone());
    }
    for a in &variant.qemu_args {
        let a = a.as_str().try_into().map_err(|_| format!("{}: QEMU argument too long: {a}", board.name))?;
        qemu.extra_args.push(a).map_err(|_| format!("{}: more than {} QEMU arguments", board.name, berth::release::board::QEMU_ARGS_MAX))?;
    }
    let arch = board.arch;
    board.kernel = Some(kernel_cfg.clone());
    board.qemu = Some(qemu.clone());
    let kernel = kernel::ensure_kernel(root, arch.debian(), &kernel_cfg.flavour)?;
    say(&format!("{}: guest kernel {} from {}", board.name, kernel.version, kernel.package));
    let berth_hooked = cross_build_with(root, arch, "berth", "berth", Some(TEST_HOOKS))?;
    let berth = cross_build(root, arch, "berth", "berth")?;
    let agent = cross_build(root, arch, "qemu-tests", "berth-test-agent")?;

    let dir = root.join("target").join("berth").join(format!("{}{}", board.name, variant.suffix));
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;

    // Resolve the module list, then record it in load order in the compiled config.
    let mut wanted: Vec<String> = board.modules.iter().map(|m| m.to_string()).collect();
    wanted.extend(variant.extra_modules.iter().cloned());
    let modules = kernel::resolve_modules(&kernel, &wanted)?;
    board.modules.clear();
    for m in modules.iter().filter(|m| !m.builtin) {
        let mut name = berth::release::board::Name::new();
        name.push_str(&m.name).map_err(|_| format!("module name {} too long", m.name))?;
        board.modules.push(name).map_err(|_| format!("more than {} modules after resolving dependencies", berth::release::board::MODULES_MAX))?;
    }
    board.validate().map_err(|e| format!("board {} after module resolution: {e}", board.name))?;
    let board_bin = board.to_postcard().map_err(|e| e.to_string())?;
    let berth_bytes = fs::read(&berth).map_err(|e| format!("{}: {e}", berth.display()))?;

    // The demo release, signed with the development key; its public half is trusted.
    let key_dir = release::dev_key_dir(root)?;
    let key = release::load_signing_key(&key_dir.join(release::DEV_KEY))?;
    let manifests = variant.manifests.clone().unwrap_or_else(|| root.join("manifests"));
    let (compiled, mut signed) = release::compile_and_sign(root, &manifests, &board, &dir, &key, None)?;
    let signed_release = signed.clone();
    write(&dir.join("release.bin"), &signed_release)?;

    // Initramfs: berth as /init, the board config, the modules, the first device nodes.
    let mut cpio = Cpio::new();
    for d in ["dev", "proc", "sys", "run", "sysroot", "etc", "etc/berth", "lib", "lib/modules", "sbin"] {
        cpio.add_dir(d, 0o755);
    }
    cpio.add_char_dev("dev/console", 0o600, 5, 1);
    cpio.add_char_dev("dev/kmsg", 0o644, 1, 11);
    cpio.add_char_dev("dev/null", 0o666, 1, 3);
    cpio.add_file("sbin/berth", 0o755, &berth_bytes);
    cpio.add_symlink("init", "sbin/berth");
    cpio.add_file("etc/berth/board.bin", 0o644, &board_bin);
    // Decompressed here, once: the kernel's own decompression of each
    // `.ko.xz` at every boot is a good part of loading it (on slow cores,
    // and under emulation most of all). The bytes the kernel checks and
    // loads are the same; the initramfs (freed after the switch) is larger.
    for m in &modules {
        if let Some(file) = &m.file {
            let data = kernel::read_module_file(file)?;
            cpio.add_file(&format!("lib/modules/{}.ko", m.name), 0o644, &data);
        }
    }
    let initramfs = dir.join("initramfs.cpio");
    write(&initramfs, &cpio.finish())?;

    // System images: a staging tree, squashed twice (with and without the agent).
    let system = dir.join("system.img");
    let system_test = dir.join("system-test.img");
    let stage = dir.join("system-root");
    let _ = fs::remove_dir_all(&stage);
    for d in ["dev", "proc", "sys", "run", "data", "tmp", "sbin", "etc/berth/keys", "usr/lib/berth"] {
        fs::create_dir_all(stage.join(d)).map_err(|e| format!("{}: {e}", stage.display()))?;
    }
    copy_exec(&berth, &stage.join("sbin/berth"))?;
    // berthctl is berth under another name.
    std::os::unix::fs::symlink("berth", stage.join("sbin/berthctl")).map_err(|e| format!("{}: {e}", stage.display()))?;
    write(&stage.join("etc/berth/board.bin"), &board_bin)?;
    if let Some(a) = &board.apparmor {
        apparmor_policy(root, a, &stage)?;
    }
    for pubkey in release::public_keys(&key_dir)? {
        if let Some(name) = pubkey.file_name() {
            fs::copy(&pubkey, stage.join("etc/berth/keys").join(name)).map_err(|e| format!("{}: {e}", pubkey.display()))?;
        }
    }
    squash(&stage, &system)?;
    // The test image: the agent, and berth with its test hooks (the
    // initramfs keeps the shipped berth; it re-executes this one).
    copy_exec(&berth_hooked, &stage.join("sbin/berth"))?;
    copy_exec(&agent, &stage.join(AGENT_PATH.trim_start_matches('/')))?;
    if let Some(extra) = &variant.system_extra {
        run_cmd(Command::new("cp").arg("-a").arg(extra.join(".")).arg(&stage))?;
    }
    squash(&stage, &system_test)?;

    // The data partition: berth's release store with the demo release
    // installed and committed (see berth::release::store for the layout).
    let data_root = dir.join("data-root");
    let _ = fs::remove_dir_all(&data_root);
    let store = data_root.join("berth");
    fs::create_dir_all(&store).map_err(|e| format!("{}: {e}", store.display()))?;
    if variant.release != ReleaseData::Absent {
        let images = store.join(berth::release::store::IMAGES);
        fs::create_dir_all(&images).map_err(|e| format!("{}: {e}", images.display()))?;
        let sensor = compiled.release.containers.iter().find(|m| m.name == "sensor").map(|m| m.image.0);
        for img in &compiled.images {
            let dest = images.join(berth::release::store::image_name(&berth::release::manifest::Digest(img.sha256)));
            fs::copy(&img.path, &dest).map_err(|e| format!("{} -> {}: {e}", img.path.display(), dest.display()))?;
            if variant.release == ReleaseData::CorruptSensorImage && sensor == Some(img.sha256) {
                corrupt_byte(&dest, 4096 + 100)?;
            }
        }
        if variant.release == ReleaseData::Tampered {
            // A byte inside the payload: the signature no longer matches.
            let at = berth::release::HEADER_LEN + 4;
            if let Some(b) = signed.get_mut(at) {
                *b ^= 0x01;
            }
        }
        install_release(&store, &signed, compiled.release.version)?;
        if variant.release == ReleaseData::InterruptedTrial {
            let next = berth::release::Release { version: compiled.release.version + 1, ..compiled.release.clone() };
            let signed_next = berth::release::sign(&next, &key).map_err(|e| e.to_string())?;
            install_trial(&store, &signed, compiled.release.version, &signed_next, next.version)?;
        }
    }
    let updates = match &variant.updates {
        Some(src) => {
            let test = data_root.join("test");
            let installed = crate::updates::Installed { release: &compiled, signed: &signed_release, key: &key, key_dir: &key_dir };
            Some(crate::updates::build(root, &board, src, &dir.join("updates"), &installed, &test)?)
        }
        None => None,
    };
    if let Some(src) = &variant.big_update {
        let test = data_root.join("test");
        fs::create_dir_all(&test).map_err(|e| format!("{}: {e}", test.display()))?;
        let (big, big_signed) = release::compile_and_sign(root, src, &board, &dir.join("big-update"), &key, None)?;
        crate::bundle::write(&test.join("big.bundle"), &big_signed, &crate::bundle::to_carry(&big.images, Some(&compiled.release)))?;
    }
    let data_files = tree_bytes(&data_root);
    // Bundles on it are files already; each is staged (copied) once more.
    let bundles = bundle_bytes(&data_root);
    let need = data_need_mib(data_files.saturating_sub(bundles), bundles, u64::from(board.log_quota_kib) << 10);
    let data_mib = match variant.data_mib {
        Some(n) => check_data_mib(n, need)?,
        None => need,
    };
    let data_template = dir.join("data-template.img");
    make_data(&data_template, &data_root, data_mib)?;
    Ok(Artifacts {
        board,
        dir,
        kernel,
        qemu,
        cmdline: kernel_cfg.cmdline.to_string(),
        berth,
        berth_hooked,
        initramfs,
        system,
        system_test,
        data_template,
        data_mib,
        data_files,
        release: compiled.release,
        signed_release,
        images: compiled.images,
        key_dir,
        updates,
        manifests,
    })
}

/// Compile the board's AppArmor profile (`board-configs/apparmor/<profile>`)
/// into the system image at its `policy` path: the device has no compiler.
fn apparmor_policy(root: &Path, a: &berth::release::board::AppArmor, stage: &Path) -> Result<(), String> {
    let source = root.join("board-configs/apparmor").join(a.profile.as_str());
    if !source.is_file() {
        return Err(format!("AppArmor profile {}: no source at {}", a.profile, source.display()));
    }
    let out = stage.join(a.policy.trim_start_matches('/'));
    if let Some(dir) = out.parent() {
        fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    say(&format!("compiling AppArmor profile {} into {}", a.profile, a.policy));
    run_cmd(Command::new("apparmor_parser").args(["--skip-kernel-load", "--skip-cache", "--quiet", "--ofile"]).arg(&out).arg(&source))
}

/// Put a signed release into a store directory as installed and committed:
/// its object under `releases/` and a first record (slot A). The anti-rollback
/// floor is left unset: the first boot raises it.
pub fn install_release(store: &Path, signed: &[u8], version: u64) -> Result<(), String> {
    use berth::release::record::{encode_slot, Entry, Record, SLOTS};
    use berth::release::store::{release_name, RELEASES};
    use sha2::Digest as _;
    let releases = store.join(RELEASES);
    fs::create_dir_all(&releases).map_err(|e| format!("{}: {e}", releases.display()))?;
    let digest = berth::release::manifest::Digest(sha2::Sha256::digest(signed).into());
    write(&releases.join(release_name(&digest)), signed)?;
    let slot = encode_slot(&Record::installed(Entry { digest, version }), 1).ok_or("the state record does not encode")?;
    write(&store.join(SLOTS[0]), &slot)
}

/// Over an installed release, a second one on trial (the switch made, not
/// committed): its object, and a record of generation 2 in slot B.
fn install_trial(store: &Path, signed: &[u8], version: u64, trial: &[u8], trial_version: u64) -> Result<(), String> {
    use berth::release::record::{encode_slot, Entry, Record, SLOTS};
    use berth::release::store::{release_name, RELEASES};
    use sha2::Digest as _;
    let digest = |b: &[u8]| berth::release::manifest::Digest(sha2::Sha256::digest(b).into());
    write(&store.join(RELEASES).join(release_name(&digest(trial))), trial)?;
    let installed = Record::installed(Entry { digest: digest(signed), version });
    let rec = installed.begin_trial(Entry { digest: digest(trial), version: trial_version }, false).map_err(|e| e.to_string())?;
    let slot = encode_slot(&rec, 2).ok_or("the state record does not encode")?;
    write(&store.join(SLOTS[1]), &slot)
}

/// Put a bundle into the release store's inbox (`/berth/inbox/` on the data
/// partition, the device's `/data/berth/inbox`) of an ext4 image, with
/// e2fsck and debugfs (no mount, no root needed).
pub fn put_in_inbox(data: &Path, bundle: &Path) -> Result<(), String> {
    let name = bundle.file_name().and_then(|n| n.to_str()).filter(|n| !n.contains(char::is_whitespace)).unwrap_or("update.bundle");
    // QEMU's end (Ctrl-A X) is a power cut: replay the journal first, or
    // the guest's replay at mount would undo what debugfs writes.
    let fsck = Command::new("e2fsck").args(["-f", "-y"]).arg(data).output().map_err(|e| format!("e2fsck: {e}"))?;
    if !matches!(fsck.status.code(), Some(0..=2)) {
        return Err(format!("e2fsck {}: {}\n{}", data.display(), fsck.status, String::from_utf8_lossy(&fsck.stdout)));
    }
    let script = data.with_extension("debugfs");
    let host = bundle.canonicalize().map_err(|e| format!("{}: {e}", bundle.display()))?;
    // `mkdir` of an existing directory only complains; the `stat` at the end
    // says whether the file arrived.
    let text = format!("mkdir berth/inbox\ncd berth/inbox\nrm {name}\nwrite {} {name}\n", host.display());
    write(&script, text.as_bytes())?;
    run_cmd(Command::new("debugfs").arg("-w").arg("-f").arg(&script).arg(data))?;
    let _ = fs::remove_file(&script);
    let out = Command::new("debugfs").arg("-R").arg(format!("stat berth/inbox/{name}")).arg(data).output().map_err(|e| format!("debugfs: {e}"))?;
    let size = fs::metadata(bundle).map(|m| m.len()).unwrap_or(0);
    if !String::from_utf8_lossy(&out.stdout).contains(&format!("Size: {size}")) {
        return Err(format!("debugfs did not put {} into {}", bundle.display(), data.display()));
    }
    Ok(())
}

/// Flip the bits of one byte of a file (inside an image's data area).
fn corrupt_byte(path: &Path, at: usize) -> Result<(), String> {
    let mut bytes = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let b = bytes.get_mut(at).ok_or_else(|| format!("{}: shorter than {at} bytes", path.display()))?;
    *b ^= 0xff;
    write(path, &bytes)
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}

fn copy_exec(from: &Path, to: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    fs::copy(from, to).map_err(|e| format!("copy {} -> {}: {e}", from.display(), to.display()))?;
    fs::set_permissions(to, fs::Permissions::from_mode(0o755)).map_err(|e| format!("{}: {e}", to.display()))
}

/// squashfs: mature, in every vendor kernel, compressed; owned by root, no timestamps.
pub(crate) fn squash(dir: &Path, out: &Path) -> Result<(), String> {
    let _ = fs::remove_file(out);
    run_cmd(Command::new("mksquashfs").arg(dir).arg(out).args([
        "-quiet",
        "-no-progress",
        "-noappend",
        "-all-root",
        "-comp",
        "gzip",
        "-mkfs-time",
        "0",
        "-all-time",
        "0",
    ]))
}

/// The data partition size, MiB, for `files` bytes of files on it, update
/// bundles of `bundles` bytes to be staged from it or put into its inbox
/// (each staging copies the bundle's images into the store: counted twice),
/// and berth's log quota: that, a quarter more and 16 MiB (ext4's journal
/// and tables), rounded up to 8 MiB, at least [`DATA_MIN_MIB`].
pub fn data_need_mib(files: u64, bundles: u64, log_quota: u64) -> u64 {
    let need = files.saturating_add(bundles.saturating_mul(2)).saturating_add(log_quota);
    let bytes = need.saturating_add(need / 4).saturating_add(16 << 20);
    bytes.div_ceil(8 << 20).saturating_mul(8).max(DATA_MIN_MIB)
}

/// An explicit size (`--data-mib`, a variant's): within bounds and at
/// least what the partition needs.
pub fn check_data_mib(mib: u64, need: u64) -> Result<u64, String> {
    if !(DATA_MIN_MIB..=DATA_MAX_MIB).contains(&mib) {
        return Err(format!("data partition size {mib} MiB: must be between {DATA_MIN_MIB} and {DATA_MAX_MIB} MiB"));
    }
    if mib < need {
        return Err(format!("data partition size {mib} MiB is too small: its releases and the staging of its update need {need} MiB"));
    }
    Ok(mib)
}

/// Bytes the files under `dir` take (each rounded up to 4 KiB blocks).
pub fn tree_bytes(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_bytes(&e.path()).saturating_add(4096),
            Ok(_) => e.metadata().map(|m| m.len().div_ceil(4096) * 4096).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

/// Bytes of the `*.bundle` files under `dir` (staged from it later).
fn bundle_bytes(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                bundle_bytes(&p)
            } else if p.extension().is_some_and(|x| x == "bundle") {
                e.metadata().map(|m| m.len()).unwrap_or(0)
            } else {
                0
            }
        })
        .sum()
}

/// Grow the ext4 image `data` to `mib` MiB (never shrinks it): the file,
/// then the file system (`e2fsck`, `resize2fs`; no mount, no root). True
/// when it grew.
pub fn grow_data(data: &Path, mib: u64) -> Result<bool, String> {
    let size = fs::metadata(data).map_err(|e| format!("{}: {e}", data.display()))?.len();
    if size >= mib << 20 {
        return Ok(false);
    }
    let fsck = Command::new("e2fsck").args(["-f", "-y"]).arg(data).output().map_err(|e| format!("e2fsck: {e}"))?;
    if !matches!(fsck.status.code(), Some(0..=2)) {
        return Err(format!("e2fsck {}: {}\n{}", data.display(), fsck.status, String::from_utf8_lossy(&fsck.stdout)));
    }
    fs::OpenOptions::new().write(true).open(data).and_then(|f| f.set_len(mib << 20)).map_err(|e| format!("{}: {e}", data.display()))?;
    run_cmd(Command::new("resize2fs").arg("-f").arg(data))?;
    Ok(true)
}

/// `mkfs.ext4` options of the data partition: project quotas (the
/// `quota` and `project` features, the project quota inode; berth mounts
/// it `prjquota` and gives each volume a project), which need 256-byte
/// inodes; the default 5 % of blocks reserved for root (berth).
pub const DATA_MKFS: [&str; 9] = ["-q", "-F", "-L", "data", "-I", "256", "-O", "quota,project", "-E"];
/// The `-E` options that go with [`DATA_MKFS`].
pub const DATA_MKFS_E: &str = "root_owner=0:0,quotatype=prjquota";

/// An ext4 data partition of `mib` MiB holding the files of `root`.
fn make_data(out: &Path, root: &Path, mib: u64) -> Result<(), String> {
    let _ = fs::remove_file(out);
    let f = fs::File::create(out).map_err(|e| format!("{}: {e}", out.display()))?;
    f.set_len(mib << 20).map_err(|e| format!("{}: {e}", out.display()))?;
    run_cmd(Command::new("mkfs.ext4").args(DATA_MKFS).arg(DATA_MKFS_E).arg("-d").arg(root).arg(out))?;
    // mke2fs -d leaves the root project's usage short of the files it
    // copied in; e2fsck recounts it (exit 1: corrected).
    let fsck = Command::new("e2fsck").args(["-f", "-y"]).arg(out).output().map_err(|e| format!("e2fsck: {e}"))?;
    if !matches!(fsck.status.code(), Some(0..=1)) {
        return Err(format!("e2fsck {}: {}\n{}", out.display(), fsck.status, String::from_utf8_lossy(&fsck.stdout)));
    }
    Ok(())
}

/// A fresh copy of the data partition for one boot.
pub fn fresh_data(a: &Artifacts, dest: &Path) -> Result<(), String> {
    fs::copy(&a.data_template, dest).map(|_| ()).map_err(|e| format!("{}: {e}", dest.display()))
}

/// QEMU options for a boot.
#[derive(Debug, Clone, Default)]
pub struct BootOpts {
    /// Interactive: console and monitor on the terminal (`-nographic`).
    pub interactive: bool,
    /// Let a guest reboot restart the machine instead of ending QEMU.
    pub allow_reboot: bool,
    /// Use the system image with the test agent and start it.
    pub agent: bool,
    /// Extra kernel command line.
    pub cmdline: String,
    /// Run under KVM (x86_64 boards on an x86_64 host), with the board's CPU model.
    pub kvm: bool,
    /// Forward this host port (on 127.0.0.1) to the guest's port 8080.
    pub http_port: Option<u16>,
    /// Hand the guest's connections to [`GUEST_FWD_SERVER`] to this QEMU
    /// `guestfwd` target: `cmd:PROGRAM ARGS` started for each connection
    /// with it on stdin and stdout (a relay to a server on the host's
    /// loopback, such as the fleet update tests' gooseBit; a `tcp:` target
    /// would carry one connection only, made when QEMU starts).
    pub guestfwd: Option<String>,
    /// A virtio serial port named [`PUSH_PORT`] whose host end is a Unix
    /// socket at this path (QEMU listens), for `cargo xtask push`.
    pub push: Option<PathBuf>,
    /// The console on a Unix socket at this path (QEMU listens and waits
    /// for the reader before starting the guest) instead of stdio.
    pub console_socket: Option<PathBuf>,
    /// The data disk with `cache=none` (see [`data_drive`]).
    pub direct_data: bool,
    /// A third disk on this file (the guest's `/dev/vdc`).
    pub log_disk: Option<PathBuf>,
    /// Boot through the firmware and the bootloader on a boot disk
    /// instead of the kernel directly (see `bootdisk`).
    pub firmware: Option<crate::bootdisk::Firmware>,
}

/// The `-drive` of the data disk.
///
/// With `direct`, `cache=none`: QEMU writes the guest's data with O_DIRECT,
/// past the host's page cache, and shows the guest a volatile write cache
/// that it must flush (an fsync in the guest becomes a flush request, which
/// QEMU turns into an fdatasync of the file). That is the disk a power cut
/// test wants: nothing the guest did not write out is anywhere but in the
/// guest, and a reset (`berth.cut`) or a kill of QEMU takes the guest's page
/// cache and its uncommitted ext4 journal with it, as a power cut does.
/// What no cache mode can take away is a write QEMU had already made to
/// the file: a disk that loses writes it had not yet flushed is what the
/// dm-log-writes replay (`crash-replay`) models, by dropping them.
/// (`cache=unsafe` would ignore the guest's flushes; `writethrough` and
/// `directsync` hide the write cache, so the guest would send no flush.)
fn data_drive(data: &Path, direct: bool) -> String {
    let cache = if direct { ",cache=none" } else { "" };
    format!("if=none,id=data,format=raw{cache},file={}", data.display())
}

/// The virtio port name `berth receive` serves.
pub const PUSH_PORT: &str = "berth.push";

/// The guest port the demo's status page listens on.
pub const GUEST_HTTP_PORT: u16 = 8080;

/// The address on QEMU's user network that [`BootOpts::guestfwd`]
/// forwards to the host (not the gateway, 10.0.2.2, which the guest
/// reaches for everything else).
pub const GUEST_FWD_SERVER: &str = "10.0.2.100:8080";

/// The `-netdev` of the guest's eth0 (QEMU's user networking).
fn user_netdev(opts: &BootOpts) -> String {
    let mut netdev = "user,id=net0".to_string();
    if let Some(port) = opts.http_port {
        netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{port}-:{GUEST_HTTP_PORT}"));
    }
    if let Some(target) = &opts.guestfwd {
        // QEMU's option syntax: a comma in a value is written twice.
        netdev.push_str(&format!(",guestfwd=tcp:{GUEST_FWD_SERVER}-{}", target.replace(',', ",,")));
    }
    netdev
}

/// The kernel command line of a boot: the console, the board's line, the
/// agent's start and the boot's own additions.
pub fn kernel_cmdline(a: &Artifacts, opts: &BootOpts) -> String {
    let mut cmdline = format!("console={} {}", a.board.console, a.cmdline);
    if opts.agent {
        cmdline.push_str(&format!(" berth.run={AGENT_PATH}"));
    }
    if !opts.cmdline.is_empty() {
        cmdline.push(' ');
        cmdline.push_str(&opts.cmdline);
    }
    cmdline
}

/// The QEMU command line for a board's artifacts and a data image.
pub fn qemu_args(a: &Artifacts, data: &Path, opts: &BootOpts) -> (String, Vec<String>) {
    let q = &a.qemu;
    let mut args: Vec<String> = vec!["-M".into(), q.machine.to_string(), "-cpu".into(), q.cpu.to_string()];
    if opts.kvm {
        args.extend(["-accel".into(), "kvm".into()]);
    }
    args.extend(["-m".into(), q.memory_mib.to_string(), "-smp".into(), "1".into()]);
    if let Some(sock) = &opts.console_socket {
        args.extend(["-display", "none", "-monitor", "none", "-serial", "chardev:con", "-chardev"].map(String::from));
        args.push(format!("socket,id=con,path={},server=on,wait=on", sock.display()));
    } else if opts.interactive {
        // The console on the terminal, explicitly: a board's own `-serial`
        // (a second port) would otherwise take the place of QEMU's default.
        args.extend(["-nographic", "-serial", "mon:stdio"].map(String::from));
    } else {
        args.extend(["-display", "none", "-monitor", "none", "-serial", "stdio"].map(String::from));
    }
    if !opts.allow_reboot {
        args.push("-no-reboot".into());
    }
    let system_drive = match &opts.firmware {
        // The firmware finds the bootloader on the boot disk, which the
        // bootloader writes to (its environment block).
        Some(fw) => {
            args.extend(fw.pflash_args());
            format!("if=none,id=system,format=raw,file={}", fw.disk.display())
        }
        None => {
            args.extend(["-kernel".into(), a.kernel.image.display().to_string()]);
            args.extend(["-initrd".into(), a.initramfs.display().to_string()]);
            args.extend(["-append".into(), kernel_cmdline(a, opts)]);
            let system = if opts.agent { &a.system_test } else { &a.system };
            format!("if=none,id=system,format=raw,readonly=on,file={}", system.display())
        }
    };
    args.extend([
        "-drive".into(),
        system_drive,
        "-device".into(),
        // The firmware boots the boot disk first (not the network card).
        format!("{},drive=system{}", q.block_device, if opts.firmware.is_some() { ",bootindex=0" } else { "" }),
        "-drive".into(),
        data_drive(data, opts.direct_data),
        "-device".into(),
        format!("{},drive=data", q.block_device),
        // QEMU's user networking (no host privileges): the guest's eth0.
        "-netdev".into(),
        user_netdev(opts),
        "-device".into(),
        format!("{},netdev=net0", q.net_device),
    ]);
    if let Some(sock) = &opts.push {
        args.extend([
            "-device".into(),
            "virtio-serial-pci,id=vser".into(),
            "-chardev".into(),
            format!("socket,id=push,path={},server=on,wait=off", sock.display()),
            "-device".into(),
            format!("virtserialport,bus=vser.0,chardev=push,name={PUSH_PORT}"),
        ]);
    }
    if let Some(log) = &opts.log_disk {
        args.extend(["-drive".into(), format!("if=none,id=logw,format=raw,cache=none,file={}", log.display())]);
        args.extend(["-device".into(), format!("{},drive=logw", q.block_device)]);
    }
    args.extend(q.extra_args.iter().map(|s| s.to_string()));
    (q.binary.to_string(), args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_partition_holds_its_releases_and_a_staged_copy() {
        // Small contents: the old fixed size is the floor.
        assert_eq!(data_need_mib(10 << 20, 2 << 20, 4 << 20), DATA_MIN_MIB);
        // A 110 MiB bundle on 5 MiB of files: bundle + staged copy + logs, a
        // quarter more, 16 MiB, rounded up to 8 MiB.
        let need = data_need_mib(5 << 20, 110 << 20, 4 << 20);
        let raw = (5 + 220 + 4) as f64 * 1.25 + 16.0;
        assert!(need as f64 >= raw && need.is_multiple_of(8) && (need as f64) < raw + 8.0, "{need} MiB for {raw}");
    }

    #[test]
    fn the_user_netdev_forwards_only_what_it_is_asked_to() {
        assert_eq!(user_netdev(&BootOpts::default()), "user,id=net0");
        let both = BootOpts { http_port: Some(9000), guestfwd: Some("cmd:relay a,b 9100".into()), ..Default::default() };
        assert_eq!(user_netdev(&both), "user,id=net0,hostfwd=tcp:127.0.0.1:9000-:8080,guestfwd=tcp:10.0.2.100:8080-cmd:relay a,,b 9100");
    }

    #[test]
    fn an_explicit_size_is_checked() {
        assert_eq!(check_data_mib(512, 300), Ok(512));
        assert!(check_data_mib(256, 300).unwrap_err().contains("too small"));
        assert!(check_data_mib(8, 1).unwrap_err().contains("between"));
        assert!(check_data_mib(DATA_MAX_MIB + 1, 1).is_err());
    }

    /// The test agent's hand-made control frames carry berth's protocol
    /// version (qemu-tests cannot depend on berth; the agent is built here).
    #[test]
    fn the_agents_control_frames_speak_berths_protocol() {
        assert_eq!(u16::from(qemu_tests::ctlclients::PROTOCOL_VERSION), berth::supervise::control::VERSION);
    }

    #[test]
    fn a_real_board_passes_the_check_but_is_never_emulated() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let file = root.join("board-configs/examples/nanopi-r4s.toml");
        let b = load_board(&file).unwrap();
        assert!(b.qemu.is_none());
        let e = build(&root, &file, &Variant::default()).err().unwrap();
        assert_eq!(
            e,
            "board nanopi-r4s: xtask builds and boots only boards with a [kernel] and a [qemu] table (see docs/porting.md); check a real board's config with `cargo xtask check-board`"
        );
    }
}
