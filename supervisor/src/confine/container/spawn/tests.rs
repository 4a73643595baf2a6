//! The spawn path's unit tests (moved out of `spawn.rs`).

use super::*;
use crate::confine::container::plan::plan;
use crate::release::board::Board;
use crate::release::manifest::{Digest, Entry, Manifest};
use nix::sys::wait::{waitpid, WaitStatus};
use std::io::{BufRead, BufReader, Read};

#[test]
fn records_round_trip_and_name_the_step() {
    for step in STEPS.iter().copied().chain([Step::Mount(0), Step::Mount(47), Step::LandlockRule(3)]) {
        let rec = encode(Record::Failed(step, Errno::EPERM));
        assert_eq!(decode(&rec), Some(Record::Failed(step, Errno::EPERM)), "{step:?}");
        assert_eq!(decode(&encode(Record::Begin(step))), Some(Record::Begin(step)), "{step:?}");
        if !matches!(step, Step::Mount(_) | Step::LandlockRule(_)) {
            assert_eq!(Step::from_slug(step.slug()), Some(step), "{step:?}");
        }
    }
    assert_eq!(Step::from_slug("mount"), Some(Step::Mount(0)));
    assert!(Step::Mount(0).same_kind(Step::Mount(7)) && !Step::Mount(0).same_kind(Step::Workdir));
    assert_eq!(decode(&[200, 0, 0, 0, 1, 0, 0, 0]), None);
    let e = SpawnError::new(Step::Capset, Errno::EPERM);
    assert_eq!(e.to_string(), "container start failed at capset: Operation not permitted (EPERM)");
    let e = SpawnError { step: Step::Mount(3), errno: Errno::ENOENT, detail: Some("pivot_root /r".into()) };
    assert!(e.to_string().starts_with("container start failed at mount step 3 (pivot_root /r): "), "{e}");
}

#[test]
fn pointer_arrays_keep_their_null() {
    let a = [c"/bin/sh", c"-c"];
    assert!(sys::CPtrs::<3>::new(a).is_some());
    assert!(sys::CPtrs::<2>::new(a).is_none(), "no room for the NULL");
    assert!(sys::CPtrs::<1>::new([]).is_some());
}

#[test]
fn mount_attrs_follow_the_flags() {
    assert_eq!(mount_attrs(MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC), 0xf);
    assert_eq!(mount_attrs(MsFlags::MS_NOSUID), sys::MOUNT_ATTR_NOSUID);
}

// ---- Real starts: root only, with BERTH_ROOT_TESTS set. ----

fn root_tests(name: &str) -> bool {
    crate::common::roottests::enabled(name)
}

fn board() -> Board {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../board-configs/qemu-x86_64.toml")).unwrap();
    Board::from_toml(&text).unwrap()
}

fn s<const N: usize>(v: &str) -> heapless::String<N> {
    v.try_into().unwrap()
}

fn manifest(name: &str, argv: &[&str]) -> Manifest {
    Manifest {
        name: s(name),
        version: s("1.0"),
        image: Digest([7; 32]),
        entry: Entry { argv: argv.iter().map(|a| s(a)).collect(), env: heapless::Vec::new(), workdir: s("/"), uid: None, gid: None },
        restart: None,
        after: heapless::Vec::new(),
        readiness: None,
        health: None,
        stop: None,
        resources: None,
        mounts: heapless::Vec::new(),
        capabilities: heapless::Vec::new(),
        seccomp_allow: heapless::Vec::new(),
        devices: heapless::Vec::new(),
        network: None,
        rlimits: None,
        backoff: None,
        exec_paths: heapless::Vec::new(),
        rw_paths: heapless::Vec::new(),
        status_view: false,
        log_rate: None,
        socket_families: heapless::Vec::new(),
        oneshot: false,
        update_drop: None,
    }
}

/// A rootfs directory holding the host's `sh` and a few tools with the
/// libraries `ldd` names, and the mount points the plan needs.
fn rootfs(tag: &str) -> std::path::PathBuf {
    let base = std::env::temp_dir().join(format!("berth-spawn-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let root = base.join("root");
    for d in ["proc", "dev", "sys", "tmp", "bin"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for tool in ["sh", "id", "cat", "hostname", "ls", "touch"] {
        let host = std::fs::canonicalize(format!("/bin/{tool}")).unwrap();
        std::fs::copy(&host, root.join("bin").join(tool)).unwrap();
        let out = std::process::Command::new("ldd").arg(&host).output().unwrap();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let lib = line.split_whitespace().find(|w| w.starts_with('/'));
            if let Some(lib) = lib {
                let to = root.join(lib.trim_start_matches('/'));
                std::fs::create_dir_all(to.parent().unwrap()).unwrap();
                std::fs::copy(lib, &to).unwrap();
            }
        }
    }
    root
}

struct Run {
    out: Vec<String>,
    host_status: String,
    status: WaitStatus,
}

/// Start `m` in a fresh rootfs; the script's stdout and stderr come back
/// line by line. The script prints `ready` and waits on stdin: the host's
/// view of the init is read then.
fn start(m: &Manifest, index: u16, filter: Option<&[libc::sock_filter]>, script: &str) -> Result<Run, SpawnError> {
    start_with(m, index, filter, None, script)
}

fn start_with(m: &Manifest, index: u16, filter: Option<&[libc::sock_filter]>, landlock: Option<Ruleset>, script: &str) -> Result<Run, SpawnError> {
    let root = rootfs(m.name.as_str());
    std::fs::write(root.join("bin/script"), script).unwrap();
    let p = plan(m, &board(), index, root.to_str().unwrap()).unwrap();
    let (in_r, in_w) = unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
    let (out_r, out_w) = unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
    let confine = Confine { seccomp: filter, landlock, apparmor: None };
    let started =
        spawn(&p, Stdio { stdin: in_r.as_fd(), stdout: out_w.as_fd(), stderr: out_w.as_fd() }, confine, &mut Place { dir: None, add: &mut |_| Ok(()) });
    drop(in_r);
    drop(out_w);
    let started = started?;
    let mut reader = BufReader::new(std::fs::File::from(out_r));
    let mut out = Vec::new();
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap() > 0 {
        let l = line.trim_end().to_string();
        line.clear();
        if l == "ready" {
            break;
        }
        out.push(l);
    }
    let host_status = std::fs::read_to_string(format!("/proc/{}/status", started.pid)).unwrap_or_default();
    drop(in_w);
    let mut rest = String::new();
    reader.read_to_string(&mut rest).unwrap();
    out.extend(rest.lines().map(str::to_string));
    let status = waitpid(started.pid, None).unwrap();
    let _ = std::fs::remove_dir_all(root.parent().unwrap());
    Ok(Run { out, host_status, status })
}

const SCRIPT: &str = "id -u; id -g; cat /proc/self/uid_map; hostname; echo dev: $(ls /dev); \
        touch /x 2>/dev/null; echo touch=$?; touch /tmp/x && echo tmp-ok; cat /proc/self/status; \
        ls -l /proc/keys; echo pid=$$; echo ready; read x; echo bye";

fn field<'a>(out: &'a [String], key: &str) -> &'a str {
    out.iter().find_map(|l| l.strip_prefix(key)).map(str::trim).unwrap_or_else(|| panic!("{key} in {out:#?}"))
}

#[test]
fn root_starts_a_confined_container() {
    if !root_tests("root_starts_a_confined_container") {
        return;
    }
    let m = manifest("spawntest", &["/bin/sh", "/bin/script"]);
    let r = start(&m, 3, None, SCRIPT).unwrap();
    let out = &r.out;
    eprintln!("{}", out.join("\n"));
    assert_eq!(out[0], "0", "uid 0 inside");
    assert_eq!(out[1], "0", "gid 0 inside");
    let base = 100_000 + 3 * 65_536;
    assert_eq!(out[2].split_whitespace().collect::<Vec<_>>(), ["0", &base.to_string(), "65536"]);
    assert_eq!(out[3], "spawntest", "hostname");
    assert_eq!(out[4], "dev: fd full mqueue null ptmx pts random shm stderr stdin stdout tty urandom zero");
    assert_eq!(field(out, "touch="), "1", "/ is read-only");
    assert!(out.contains(&"tmp-ok".to_string()), "/tmp is writable");
    for cap in ["CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"] {
        assert_eq!(field(out, cap), "0000000000000000", "{cap}");
    }
    assert_eq!(field(out, "NoNewPrivs:"), "1");
    assert_eq!(field(out, "Seccomp:"), "0");
    assert_eq!(field(out, "SigBlk:"), "0000000000000000", "signal mask cleared");
    assert_eq!(field(out, "SigIgn:"), "0000000000000000", "no ignored signal inherited");
    assert_eq!(field(out, "Groups:"), "", "no supplementary groups");
    assert_eq!(field(out, "pid="), "1", "init of its own pid namespace");
    let keys = out.iter().find(|l| l.ends_with("/proc/keys")).unwrap();
    assert!(keys.starts_with('c') && keys.contains(" 1, 3 "), "masked by /dev/null: {keys}");
    assert_eq!(out.last().unwrap(), "bye");
    // The host's view: an unprivileged uid, the supervisor's child.
    let hs: Vec<String> = r.host_status.lines().map(str::to_string).collect();
    let uid: Vec<&str> = field(&hs, "Uid:").split_whitespace().collect();
    let b = base.to_string();
    assert_eq!(uid, [b.as_str(); 4]);
    assert_eq!(field(&hs, "NSpid:").split_whitespace().last(), Some("1"));
    assert_eq!(field(&hs, "PPid:"), std::process::id().to_string(), "a direct child of the supervisor");
    assert!(matches!(r.status, WaitStatus::Exited(_, 0)), "{:?}", r.status);
}

#[test]
fn root_grants_capabilities_and_switches_user() {
    if !root_tests("root_grants_capabilities_and_switches_user") {
        return;
    }
    let mut m = manifest("spawncaps", &["/bin/sh", "/bin/script"]);
    m.capabilities.push(s("CAP_NET_BIND_SERVICE")).unwrap();
    m.entry.uid = Some(1000);
    m.entry.gid = Some(1001);
    let r = start(&m, 4, None, SCRIPT).unwrap();
    let out = &r.out;
    assert_eq!((out[0].as_str(), out[1].as_str()), ("1000", "1001"));
    for cap in ["CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"] {
        assert_eq!(field(out, cap), "0000000000000400", "{cap}");
    }
    let hs: Vec<String> = r.host_status.lines().map(str::to_string).collect();
    let outside = (100_000 + 4 * 65_536 + 1000).to_string();
    assert_eq!(field(&hs, "Uid:").split_whitespace().next(), Some(outside.as_str()));
}

#[test]
fn root_errors_name_the_step() {
    if !root_tests("root_errors_name_the_step") {
        return;
    }
    // No such rootfs: the root bind fails.
    let m = manifest("spawnbad", &["/bin/sh", "-c", "true"]);
    let p = plan(&m, &board(), 5, "/nonexistent/berth-root").unwrap();
    let null = std::fs::File::open("/dev/null").unwrap();
    let stdio = Stdio { stdin: null.as_fd(), stdout: null.as_fd(), stderr: null.as_fd() };
    let e = spawn(&p, stdio, Confine::default(), &mut Place { dir: None, add: &mut |_| Ok(()) }).unwrap_err();
    assert_eq!((e.step, e.errno), (Step::Mount(1), Errno::ENOENT), "{e}");
    assert_eq!(e.detail.as_deref(), Some("bind /nonexistent/berth-root /nonexistent/berth-root"));
    assert!(e.to_string().contains("mount step 1 (bind /nonexistent"), "{e}");
    // No such program: execve.
    let m = manifest("spawnnoexec", &["/bin/nope"]);
    let e = start(&m, 6, None, "").err().unwrap();
    assert_eq!((e.step, e.errno), (Step::Exec, Errno::ENOENT), "{e}");
    assert_eq!(e.to_string(), "container start failed at execve: No such file or directory (ENOENT)");
}

#[test]
fn root_applies_landlock_exec_paths_and_write_rules() {
    if !root_tests("root_applies_landlock_exec_paths_and_write_rules") {
        return;
    }
    let Some(ruleset) = crate::sys::landlock::abi_version().ok().and_then(Ruleset::for_abi) else {
        crate::common::roottests::missing("root_applies_landlock_exec_paths_and_write_rules", "no Landlock on this kernel");
        return;
    };
    // /proc/self/comm is writable by its owner on a read-write /proc:
    // only Landlock refuses it. `id` is outside the exec paths.
    let script = ": > /tmp/x && echo tmp-ok; (echo x > /proc/self/comm) 2>/dev/null && echo comm=ok || echo comm=denied; \
            id -u >/dev/null 2>&1; echo id=$?; echo ready";
    let mut m = manifest("spawnll", &["/bin/sh", "/bin/script"]);
    let r = start_with(&m, 8, None, None, script).unwrap();
    assert_eq!((field(&r.out, "comm="), field(&r.out, "id=")), ("ok", "0"), "without Landlock: {:#?}", r.out);
    m.exec_paths.push(s("/bin/sh")).unwrap();
    m.exec_paths.push(s("/lib64")).unwrap();
    let r = start_with(&m, 8, None, Some(ruleset), script).unwrap();
    assert!(r.out.contains(&"tmp-ok".to_string()), "/tmp stays writable: {:#?}", r.out);
    assert_eq!(field(&r.out, "comm="), "denied", "/proc is read-only under Landlock");
    assert_eq!(field(&r.out, "id="), "126", "id is not beneath the exec paths");
    // A rule whose path is missing fails the start, naming the rule.
    m.rw_paths.push(s("/nonexistent")).unwrap();
    let e = start_with(&m, 8, None, Some(ruleset), script).err().unwrap();
    assert_eq!((e.errno, e.detail.as_deref()), (Errno::ENOENT, Some("/nonexistent")), "{e}");
    assert!(matches!(e.step, Step::LandlockRule(_)), "{e}");
}

#[cfg(target_arch = "x86_64")]
#[test]
fn root_installs_the_seccomp_filter_last() {
    if !root_tests("root_installs_the_seccomp_filter_last") {
        return;
    }
    const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
    let stmt = |code: u32, k: u32| libc::sock_filter { code: code as u16, jt: 0, jf: 0, k };
    let jeq = |k: u32, jt: u8, jf: u8| libc::sock_filter { code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16, jt, jf, k };
    let ld: u32 = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let ret: u32 = libc::BPF_RET | libc::BPF_K;
    // uname -> EPERM, everything else allowed; other arch killed.
    let prog = [
        stmt(ld, 4),
        jeq(AUDIT_ARCH_X86_64, 1, 0),
        stmt(ret, libc::SECCOMP_RET_KILL_PROCESS),
        stmt(ld, 0),
        jeq(libc::SYS_uname as u32, 0, 1),
        stmt(ret, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32),
        stmt(ret, libc::SECCOMP_RET_ALLOW),
    ];
    let m = manifest("spawnsec", &["/bin/sh", "/bin/script"]);
    let script = "hostname || echo uname-denied; cat /proc/self/status; echo ready";
    let r = start(&m, 7, Some(&prog), script).unwrap();
    assert!(r.out.contains(&"uname-denied".to_string()), "{:#?}", r.out);
    assert_eq!(field(&r.out, "Seccomp:"), "2");
    assert_eq!(field(&r.out, "NoNewPrivs:"), "1");
}

#[test]
fn a_begun_step_round_trips_through_the_shared_word() {
    for step in [Step::Args, Step::Clone, Step::Mount(41), Step::LandlockRule(3), Step::Exec] {
        assert_ne!(word(step), 0, "{step}: never the empty word");
        assert_eq!(from_word(word(step)), Some(step));
    }
    assert_eq!(from_word(0), None, "nothing stored yet");
    let shared = crate::sys::container::SharedWord::new().unwrap();
    let fd = std::fs::File::open("/dev/null").unwrap();
    let t = Trace::with_word(fd.as_fd(), None, shared.word());
    t.begin(Step::Mount(7));
    assert_eq!(from_word(shared.word().load(core::sync::atomic::Ordering::Acquire)), Some(Step::Mount(7)));
}
