//! What every demo program shares.

/// Exit 0 on SIGTERM. A container's first process is the init of its PID
/// namespace, which the kernel shields from signals it has no handler for:
/// without this, `berthctl stop` would wait for the stop grace and SIGKILL.
pub fn exit_on_sigterm() {
    extern "C" fn on_term(_: libc::c_int) {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(0) }
    }
    // SAFETY: installs a handler that only calls _exit.
    unsafe {
        libc::signal(libc::SIGTERM, on_term as *const () as libc::sighandler_t);
    }
}

pub mod json;
