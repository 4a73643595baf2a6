//! The OCI `config.json` crun and runc run in the start benchmark: the same
//! confinement berth gives its containers, taken from berth's own tables
//! where there is one.
//!
//! - namespaces: user (uid/gid 0 inside mapped to a 65536-id range outside),
//!   mount, pid, ipc, uts, cgroup; no network namespace (as the benchmark's
//!   berth containers, which have `network = "host"`);
//! - no capabilities in any set, `noNewPrivileges`, berth's default rlimits;
//! - root read-only; `/proc`, a small `/dev` tmpfs with devpts, shm and
//!   mqueue, the host's `/sys` bound read-only (sysfs cannot be mounted
//!   without a network namespace of one's own), a `noexec` `/tmp`; berth's read-only and
//!   masked `/proc` paths;
//! - seccomp: deny by default (`EPERM`), allow berth's default allowlist for
//!   the machine by name, `clone` only without namespace flags, `clone3`
//!   `ENOSYS` (what berth's filter does);
//! - cgroup: deny every device, then allow exactly berth's device rules for a
//!   container without grants; `pids` limit 512 (berth's default).

use super::json::Json;
use berth::confine::cgroup::{DevType, Minor};

/// The namespace flags berth's clone rule refuses (`CLONE_NEWNS` and the
/// other `CLONE_NEW*`), as the mask of an OCI argument rule.
const CLONE_NS_MASK: u64 = 0x7E02_0000;
/// `EPERM` and `ENOSYS` (the same numbers on every Linux architecture).
const EPERM: u64 = 1;
const ENOSYS: u64 = 38;

fn s(v: &str) -> Json {
    Json::Str(v.to_string())
}

fn strs(v: &[&str]) -> Json {
    Json::Arr(v.iter().map(|x| s(x)).collect())
}

fn obj(fields: Vec<(&str, Json)>) -> Json {
    Json::Obj(fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

fn num(v: u64) -> Json {
    Json::Num(v as f64)
}

fn mount(dest: &str, kind: &str, source: &str, options: &[&str]) -> Json {
    obj(vec![("destination", s(dest)), ("type", s(kind)), ("source", s(source)), ("options", strs(options))])
}

/// The device rules as OCI `linux.resources.devices`: deny all, then allow.
fn devices(board: &berth::release::board::Board) -> Result<Json, String> {
    let nodes = berth::confine::container::devices::nodes(&[], board, "bench").map_err(|(f, r)| format!("device nodes: {f}: {r}"))?;
    let mut out = vec![obj(vec![("allow", Json::Bool(false)), ("access", s("rwm"))])];
    for r in berth::confine::cgroup::rules(&nodes) {
        let mut f = vec![("allow", Json::Bool(true)), ("type", s(if r.kind == DevType::Char { "c" } else { "b" })), ("major", num(u64::from(r.major)))];
        if let Minor::Exact(m) = r.minor {
            f.push(("minor", num(u64::from(m))));
        }
        f.push(("access", s(&berth::confine::cgroup::access_letters(r.access))));
        out.push(obj(f));
    }
    Ok(Json::Arr(out))
}

fn seccomp() -> Result<Json, String> {
    let arch = berth::confine::seccomp::Arch::running().map_err(|e| e.to_string())?;
    let oci_arch = match arch {
        berth::confine::seccomp::Arch::X86_64 => "SCMP_ARCH_X86_64",
        berth::confine::seccomp::Arch::Aarch64 => "SCMP_ARCH_AARCH64",
        berth::confine::seccomp::Arch::Arm => "SCMP_ARCH_ARM",
    };
    let mut allowed: Vec<&str> = berth::confine::seccomp::profile::allowed_on(arch).collect();
    // socket and personality take conditions in berth's filter; allowing them
    // whole only favours the runtimes.
    allowed.extend(["socket", "personality"]);
    Ok(obj(vec![
        ("defaultAction", s("SCMP_ACT_ERRNO")),
        ("defaultErrnoRet", num(EPERM)),
        ("architectures", strs(&[oci_arch])),
        (
            "syscalls",
            Json::Arr(vec![
                obj(vec![("names", strs(&allowed)), ("action", s("SCMP_ACT_ALLOW"))]),
                obj(vec![
                    ("names", strs(&["clone"])),
                    ("action", s("SCMP_ACT_ALLOW")),
                    (
                        "args",
                        Json::Arr(vec![obj(vec![("index", num(0)), ("value", num(CLONE_NS_MASK)), ("valueTwo", num(0)), ("op", s("SCMP_CMP_MASKED_EQ"))])]),
                    ),
                ]),
                obj(vec![("names", strs(&["clone3"])), ("action", s("SCMP_ACT_ERRNO")), ("errnoRet", num(ENOSYS))]),
            ]),
        ),
    ]))
}

/// `config.json` for running `program` from the root filesystem `rootfs`
/// with ids mapped from `id_base` and the cgroup `cgroup_path`.
pub fn config(board: &berth::release::board::Board, rootfs: &str, program: &str, id_base: u32, cgroup_path: &str) -> Result<String, String> {
    let caps = Json::Arr(Vec::new());
    let rlimits = Json::Arr(
        [("RLIMIT_NOFILE", 1024), ("RLIMIT_NPROC", 512), ("RLIMIT_CORE", 0)]
            .iter()
            .map(|(t, v)| obj(vec![("type", s(t)), ("hard", num(*v)), ("soft", num(*v))]))
            .collect(),
    );
    let map = Json::Arr(vec![obj(vec![("containerID", num(0)), ("hostID", num(u64::from(id_base))), ("size", num(65536))])]);
    let namespaces = Json::Arr(["pid", "ipc", "uts", "mount", "user", "cgroup"].iter().map(|n| obj(vec![("type", s(n))])).collect());
    let ro: Vec<String> = berth::confine::container::mounts::READ_ONLY.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let masked: Vec<String> = berth::confine::container::mounts::MASKED.iter().map(|(p, _)| p.to_string_lossy().into_owned()).collect();
    let c = obj(vec![
        ("ociVersion", s("1.0.2")),
        (
            "process",
            obj(vec![
                ("terminal", Json::Bool(false)),
                ("user", obj(vec![("uid", num(0)), ("gid", num(0))])),
                ("args", strs(&[program])),
                ("env", strs(&[berth::confine::container::plan::DEFAULT_PATH])),
                ("cwd", s("/")),
                (
                    "capabilities",
                    obj(vec![
                        ("bounding", caps.clone()),
                        ("effective", caps.clone()),
                        ("inheritable", caps.clone()),
                        ("permitted", caps.clone()),
                        ("ambient", caps),
                    ]),
                ),
                ("rlimits", rlimits),
                ("noNewPrivileges", Json::Bool(true)),
            ]),
        ),
        ("root", obj(vec![("path", s(rootfs)), ("readonly", Json::Bool(true))])),
        ("hostname", s("bench")),
        (
            "mounts",
            Json::Arr(vec![
                mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
                mount("/dev", "tmpfs", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=64k"]),
                mount("/dev/pts", "devpts", "devpts", &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]),
                mount("/dev/shm", "tmpfs", "shm", &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]),
                mount("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"]),
                // No network namespace: the host's /sys bound read-only, as berth does.
                mount("/sys", "bind", "/sys", &["rbind", "nosuid", "noexec", "nodev", "ro"]),
                mount("/tmp", "tmpfs", "tmpfs", &["nosuid", "noexec", "nodev", "mode=1777"]),
            ]),
        ),
        (
            "linux",
            obj(vec![
                ("uidMappings", map.clone()),
                ("gidMappings", map),
                ("namespaces", namespaces),
                ("resources", obj(vec![("devices", devices(board)?), ("pids", obj(vec![("limit", num(512))]))])),
                ("cgroupsPath", s(cgroup_path)),
                ("seccomp", seccomp()?),
                ("maskedPaths", Json::Arr(masked.iter().map(|p| s(p)).collect())),
                ("readonlyPaths", Json::Arr(ro.iter().map(|p| s(p)).collect())),
            ]),
        ),
    ]);
    Ok(c.to_text())
}
