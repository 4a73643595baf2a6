//! Boot-level tests for berth: the host-side harness and the guest agent.
//!
//! berth is a PID 1. Its behaviour (mounts, module loading, reaping orphans,
//! shutdown) only exists in a booted system, so these tests boot it in QEMU
//! and watch the guest's serial console, which QEMU writes on its stdout.
//!
//! # Event lines, not free text
//!
//! berth reports everything it does as one machine-readable line:
//! `BERTH t=<secs> ev=<name> key=value ...` (see [`event`]). Tests wait for
//! and inspect these events by name and by field ([`event::parse_line`]),
//! never by grepping human-oriented messages: wording can change freely, the
//! console is shared with the kernel (printk text and `\r` interleave with
//! berth's output), and a structured line says exactly which mount failed with
//! which error. The guest agent (`berth-test-agent`, started by berth once the
//! boot is ready) checks PID 1's duties from inside the guest and reports them
//! the same way, as `AGENT check=<name> result=pass|fail detail="..."` lines.
//!
//! # One machine, one console, one cursor
//!
//! [`machine::Machine`] owns one QEMU process. Reader threads collect every
//! console line; the test moves a cursor through them with
//! `expect_event`/`expect_line`, so the order of events is checked and
//! nothing printed before an expect is lost. Every wait has a timeout (TCG
//! emulation is slow and uneven, so the timeouts are generous), every failure
//! says what was awaited and shows the console tail, and an emulator that
//! exits ends the wait at once instead of burning the timeout.
//!
//! # QEMU never outlives its test
//!
//! A leaked emulator keeps a CPU busy, holds disk images, and skews every
//! later timing-sensitive test, so the machine kills and reaps QEMU on drop
//! (including on panic), and QEMU gets a parent-death signal so it also dies
//! with the test process when unwinding is not possible.
//!
//! # Running many
//!
//! [`scenario::run_all`] runs independent cases on a few worker threads (each
//! boot is one process, mostly single-threaded under TCG) and prints one line
//! per case and a final `qemu: N passed, N failed` summary for CI;
//! [`scenarios`] holds the boot scenarios themselves.

pub mod bootloader;
pub mod budgets;
pub mod checkwindow;
pub mod controls;
pub mod ctlclients;
pub mod cutverdict;
pub mod errno;
pub mod event;
pub mod faults;
pub mod fleet;
pub mod floor;
pub mod inboxfull;
pub mod logquota;
pub mod loopcheck;
pub mod machine;
pub mod output;
pub mod promtext;
pub mod recovery;
pub mod releasepaths;
pub mod scenario;
pub mod scenarios;
pub mod slotupdate;
pub mod staging;
pub mod statusjson;
pub mod trials;
pub mod ubootcase;
pub mod updates;
pub mod volumes;
pub mod waits;
