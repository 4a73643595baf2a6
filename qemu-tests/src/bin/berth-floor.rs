//! berth-floor: the least a container start with berth's namespaces can cost,
//! the kernel's floor for `cargo xtask bench` (host only, as root).
//!
//! Per `start` line on standard input: one `clone` with new user, mount, pid,
//! ipc, uts and cgroup namespaces (no network namespace, like the benchmark's
//! containers); the parent writes the child's `setgroups`, `uid_map` and
//! `gid_map` (without a map the child would be host root) and lets it go; the
//! child binds the root filesystem onto itself, `pivot_root`s into it, detaches
//! the old root and `execve`s `/bin/true`; the parent waits for its exit.
//! Nothing else: no cgroup, no seccomp, no capability drop, no read-only
//! remount, no /proc. Answers `BENCH ok us=<micros>` or `BENCH error <text>`.
//!
//! Usage: `berth-floor --root DIR` (DIR holds `bin/true`).

use std::ffi::CString;
use std::io::{BufRead, Write};
use std::time::Instant;

/// Outside start of the child's id range (apart from berth's ranges).
const ID_BASE: u32 = 3_000_000;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = match args.as_slice() {
        [flag, dir] if flag == "--root" => dir.clone(),
        _ => {
            eprintln!("usage: berth-floor --root DIR");
            std::process::exit(2);
        }
    };
    let Ok(croot) = CString::new(root) else {
        eprintln!("berth-floor: the root path holds a NUL");
        std::process::exit(2);
    };
    let mut out = std::io::stdout();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let r = match line.trim() {
            "start" => start(&croot),
            other => Err(format!("unknown command `{other}`")),
        };
        let _ = match r {
            Ok(us) => writeln!(out, "BENCH ok us={us}"),
            Err(e) => writeln!(out, "BENCH error {e}"),
        };
        let _ = out.flush();
    }
}

fn errno() -> String {
    std::io::Error::last_os_error().to_string()
}

fn start(root: &CString) -> Result<u128, String> {
    let t0 = Instant::now();
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe2: {}", errno()));
    }
    let [sync_r, sync_w] = fds;
    let argv = [c"/bin/true".as_ptr(), std::ptr::null()];
    let envp = [std::ptr::null::<libc::c_char>()];
    let flags = libc::CLONE_NEWUSER | libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS | libc::CLONE_NEWCGROUP | libc::SIGCHLD;
    // SAFETY: a fork-like clone (no new stack, no shared memory); the child
    // makes only system calls on memory prepared before it, then execs or exits.
    let pid = unsafe { libc::syscall(libc::SYS_clone, flags as libc::c_ulong, 0usize, 0usize, 0usize, 0usize) };
    if pid == 0 {
        // SAFETY: see the clone above; every pointer is to data made before it.
        unsafe { child(root, sync_r, sync_w, &argv, &envp) }
    }
    // SAFETY: closing our copy of the read end.
    unsafe { libc::close(sync_r) };
    if pid < 0 {
        let e = errno();
        // SAFETY: closing our write end.
        unsafe { libc::close(sync_w) };
        return Err(format!("clone: {e}"));
    }
    let pid = pid as libc::pid_t;
    let maps = (|| -> std::io::Result<()> {
        std::fs::write(format!("/proc/{pid}/setgroups"), "deny")?;
        std::fs::write(format!("/proc/{pid}/uid_map"), format!("0 {ID_BASE} 65536"))?;
        std::fs::write(format!("/proc/{pid}/gid_map"), format!("0 {ID_BASE} 65536"))
    })();
    // Closing the write end lets the child go (it reads one byte or EOF).
    if maps.is_ok() {
        // SAFETY: writing one byte from a live buffer.
        unsafe { libc::write(sync_w, b"g".as_ptr().cast(), 1) };
    }
    // SAFETY: closing our write end.
    unsafe { libc::close(sync_w) };
    let mut status = 0;
    // SAFETY: status is a valid out pointer.
    if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
        return Err(format!("waitpid: {}", errno()));
    }
    let us = t0.elapsed().as_micros();
    maps.map_err(|e| format!("id maps: {e}"))?;
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        return Err(format!("the child ended with status {status:#x}"));
    }
    Ok(us)
}

/// The child: wait for the maps, pivot into `root`, exec. Never returns.
///
/// # Safety
/// Call only in the child of a fork-like clone; the pointers must stay valid.
unsafe fn child(root: &CString, sync_r: libc::c_int, sync_w: libc::c_int, argv: &[*const libc::c_char; 2], envp: &[*const libc::c_char; 1]) -> ! {
    libc::close(sync_w);
    let mut b = 0u8;
    if libc::read(sync_r, (&mut b as *mut u8).cast(), 1) != 1 {
        libc::_exit(120);
    }
    let none = std::ptr::null::<libc::c_char>();
    let ok = libc::mount(none, c"/".as_ptr(), none, libc::MS_SLAVE | libc::MS_REC, std::ptr::null()) == 0
        && libc::mount(root.as_ptr(), root.as_ptr(), none, libc::MS_BIND, std::ptr::null()) == 0
        && libc::chdir(root.as_ptr()) == 0
        && libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) == 0
        && libc::umount2(c".".as_ptr(), libc::MNT_DETACH) == 0
        && libc::chdir(c"/".as_ptr()) == 0;
    if ok {
        libc::execve(argv[0], argv.as_ptr(), envp.as_ptr());
    }
    libc::_exit(127)
}
