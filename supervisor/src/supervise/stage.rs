//! The loop's side of staging an update: start the stager (`berth stage`,
//! [`crate::release::stager`]), follow it as an event, and act on its report with
//! cheap steps only.
//!
//! It must not block the loop on the stager: the bundle is opened without
//! blocking, the report is read as an epoll event, and only cheap steps act
//! on it.
//!
//! - Start: the bundle is opened here without blocking (`O_NONBLOCK |
//!   O_NOFOLLOW`, after an `lstat`; only a regular file is accepted) and
//!   handed to the stager as its standard input; its report pipe joins the
//!   epoll set. One staging at a time: another `berthctl update` meanwhile
//!   is refused, an inbox bundle waits for the next look.
//! - While it runs the loop goes on supervising, answering and petting
//!   the watchdog. The stager is killed (SIGKILL) when it runs longer than
//!   [`DEADLINE_S`], or when berth shuts down; the update is then refused
//!   with that cause, and images it announced it was mapping are unmapped
//!   again (unless the running release uses them).
//! - Its report: a refusal is logged (`update.refused`); a staged release
//!   has its small object read back and verified
//!   ([`crate::release::store::Store::staged`]), then the update goes on in
//!   [`super::update`] (`begin_trial`, switch).
//! - `berthctl update PATH` is answered as soon as the staging started,
//!   with the update's record ([`crate::supervise::outcome`]); its course is kept in
//!   [`State::log`], which `berthctl release` and the status file show and
//!   `berthctl update --wait` polls (no connection is held open).

use super::{Pid1, TOKEN_STAGE};
use crate::common::log::Event;
use crate::release::inbox;
use crate::release::manifest::Digest;
use crate::release::stager::{Msg, Outcome, Reader, Report};
use nix::errno::Errno;
use nix::sys::epoll::{EpollEvent, EpollFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Longest a staging may run (seconds) before the stager is killed and the
/// update refused: 15 minutes, room for a gigabyte on slow flash.
pub const DEADLINE_S: f64 = 900.0;

/// Where the bundle being staged came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// `berthctl update`.
    Control,
    /// The inbox: taken for the `attempt`-th time, as `taking`.
    Inbox { base: String, taking: String, attempt: u8 },
}

/// A staging in progress.
pub struct Staging {
    pub pid: Pid,
    pipe: OwnedFd,
    reader: Reader,
    /// Images the stager said it was about to map.
    announced: Vec<Digest>,
    report: Option<Report>,
    pub since: f64,
    pub deadline: f64,
    /// The bundle as the operator knows it (for events and replies).
    pub bundle: String,
    pub origin: Origin,
    /// Removed once the staging ends with a report (the inbox's taken
    /// file, or a bundle `berthctl update` named inside the inbox).
    remove: Option<PathBuf>,
}

/// Staging and inbox state the loop keeps.
#[derive(Default)]
pub struct State {
    pub current: Option<Staging>,
    /// The quarantine, as `berthctl release` shows it.
    pub quarantined: Vec<inbox::Quarantined>,
    /// The updates of this boot and how each went.
    pub log: crate::supervise::outcome::Log,
}

/// One line for `berthctl status` / `release` about the staging, if any.
pub fn describe(s: &Staging, now: f64) -> String {
    let attempt = match &s.origin {
        Origin::Inbox { attempt, .. } => {
            format!(" (inbox, attempt {attempt} of {})", inbox::ATTEMPTS_MAX)
        }
        Origin::Control => String::new(),
    };
    format!("staging {}{attempt}: {:.0} s so far, stopped after {DEADLINE_S:.0} s", s.bundle, now - s.since)
}

/// Open a bundle for the stager without ever blocking: `lstat` first (a
/// FIFO, device, socket, symlink or directory is refused unopened), then
/// `O_NONBLOCK | O_NOFOLLOW` and `fstat` (it must still be a regular file).
pub fn open_bundle(path: &Path) -> Result<std::fs::File, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let kind = |t: std::fs::FileType| inbox::Kind::of(t);
    let meta = std::fs::symlink_metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{}: not a regular file but a {}; not opened", path.display(), kind(meta.file_type()).name()));
    }
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let meta = f.metadata().map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{}: not a regular file but a {}", path.display(), kind(meta.file_type()).name()));
    }
    Ok(f)
}

/// Start `/proc/self/exe stage` on `bundle`; its pid and report pipe.
fn spawn(bundle: std::fs::File) -> Result<(Pid, OwnedFd), String> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    use std::process::{Command, Stdio};
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    fcntl(r.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(|e| format!("pipe: {e}"))?;
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg0("berth").arg(crate::release::stager::ARG).env_clear().current_dir("/").stdin(Stdio::from(bundle));
    #[cfg(feature = "test-hooks")]
    {
        let cut = crate::release::durable::armed_cut();
        if cut > 0 {
            cmd.arg(format!("cut={cut}"));
        }
    }
    crate::sys::unblock_signals_in_child(&mut cmd);
    crate::sys::pass_fd_in_child(&mut cmd, w.as_raw_fd(), crate::release::stager::RESULT_FD);
    // The Child is dropped without waiting: the loop reaps every process.
    let child = cmd.spawn().map_err(|e| format!("starting the stager: {e}"))?;
    drop(w);
    let pid = i32::try_from(child.id()).map_err(|_| "the stager's pid is out of range".to_string())?;
    Ok((Pid::from_raw(pid), r))
}

use std::os::unix::process::CommandExt as _;

impl Pid1 {
    /// Whether an update may start now; the reason if not.
    pub(super) fn may_stage(&self) -> Result<(), String> {
        let Some(u) = self.updates.as_ref() else {
            return Err("no release store on this device".into());
        };
        if let crate::release::record::Phase::Trial { .. } = u.store.record().phase {
            return Err("a release is on trial: wait for its commit or rollback".into());
        }
        if let Some(s) = &self.stage.current {
            return Err(format!("another bundle is being staged ({}): try again when it ends", s.bundle));
        }
        if self.switching() {
            return Err("a release switch is under way: try again when it ends".into());
        }
        if self.phase != super::Phase::Running {
            return Err("berth is shutting down".into());
        }
        Ok(())
    }

    /// Start staging `file` (the bundle `bundle`). On error nothing runs.
    pub(super) fn start_staging(&mut self, file: std::fs::File, bundle: &str, origin: Origin, remove: Option<PathBuf>) -> Result<(), String> {
        self.may_stage()?;
        let (pid, pipe) = spawn(file)?;
        if let Some(epoll) = &self.epoll {
            if let Err(e) = epoll.add(&pipe, EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_STAGE)) {
                let _ = kill(pid, Signal::SIGKILL);
                return Err(format!("watching the stager: {e}"));
            }
        }
        self.watch(pid, "stage");
        crate::release::durable::start_counting();
        self.stalls.mark();
        let now = crate::common::log::now();
        let mut ev = Event::info("update.stage").kv("bundle", bundle).kv("pid", pid).kv("deadline_s", DEADLINE_S);
        if let Origin::Inbox { attempt, taking, .. } = &origin {
            ev = ev.kv("attempt", attempt).kv("taking", taking);
        }
        let seq = self.stage.log.begin(bundle).seq;
        ev.kv("update", seq).emit();
        let deadline = now + DEADLINE_S;
        self.stage.current = Some(Staging {
            pid,
            pipe,
            reader: Reader::default(),
            announced: Vec::new(),
            report: None,
            since: now,
            deadline,
            bundle: bundle.to_string(),
            origin,
            remove,
        });
        self.arm_deadline();
        Ok(())
    }

    /// When the staging's deadline is.
    pub(super) fn staging_deadline(&self) -> Option<f64> {
        self.stage.current.as_ref().map(|s| s.deadline)
    }

    /// The stager wrote or closed its report pipe.
    pub(super) fn on_stage(&mut self) {
        let Some(s) = self.stage.current.as_mut() else {
            return;
        };
        let mut chunk = [0u8; 1024];
        // Bounded: the stream is at most STREAM_MAX bytes.
        for _ in 0..8 {
            let room = s.reader.room().min(chunk.len()).max(1);
            let n = match nix::unistd::read(s.pipe.as_raw_fd(), chunk.get_mut(..room).unwrap_or(&mut [])) {
                Ok(n) => n,
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return,
                Err(e) => return self.staging_failed(format!("reading the stager's report: {e}")),
            };
            if n == 0 {
                let end = s.reader.end();
                let report = s.report.take();
                return match (end, report) {
                    (Ok(()), Some(r)) => self.staging_ended(r),
                    (Err(e), _) => self.staging_failed(e.to_string()),
                    (Ok(()), None) => self.staging_failed("the stager ended without a report (see its reap event)".into()),
                };
            }
            match s.reader.push(chunk.get(..n).unwrap_or(&[])) {
                Ok(msgs) => {
                    for m in msgs {
                        match m {
                            Msg::Mapping(d) => s.announced.push(d),
                            Msg::Done(r) => s.report = Some(*r),
                        }
                    }
                }
                Err(e) => return self.staging_failed(e.to_string()),
            }
        }
    }

    /// Past its deadline: kill the stager, refuse the update.
    pub(super) fn check_staging_deadline(&mut self, now: f64) {
        if self.stage.current.as_ref().is_some_and(|s| now >= s.deadline) {
            self.staging_failed(format!("staging took longer than {DEADLINE_S:.0} s; the stager was killed"));
        }
    }

    /// Shutdown: a staging in progress is abandoned.
    pub(super) fn abort_staging(&mut self) {
        if self.stage.current.is_some() {
            self.staging_failed("berth is shutting down".into());
        }
    }

    /// The staging ended without a usable report: the stager died, was
    /// killed, or sent garbage. Kill it (if still there), unmap what it
    /// announced, refuse. An inbox bundle stays taken: the next look tries
    /// it once more or quarantines it.
    fn staging_failed(&mut self, why: String) {
        let Some(s) = self.stage.current.take() else {
            return;
        };
        let _ = kill(s.pid, Signal::SIGKILL);
        drop(s.pipe);
        let running: Vec<Digest> = self.updates.as_ref().map(|u| u.running.images.iter().map(|i| i.sha256).collect()).unwrap_or_default();
        let stale: Vec<Digest> = s.announced.iter().copied().filter(|d| !running.contains(d)).collect();
        crate::release::images::unmap(&stale);
        let why = self.refused(&s.bundle, "stager", &why);
        self.answer(&s.origin, Err(why));
    }

    /// The stager's report came and its pipe closed.
    fn staging_ended(&mut self, report: Report) {
        let Some(s) = self.stage.current.take() else {
            return;
        };
        drop(s.pipe);
        crate::release::durable::add_steps(report.store_writes);
        if let Some(open) = self.stage.log.open() {
            open.id = report.bundle;
        }
        // Taken once: staged (its content is in the store now) or refused,
        // it goes before anything switches, so a trial that ends in a reset
        // cannot pick it up again.
        if let Some(path) = &s.remove {
            let why = match &report.outcome {
                Outcome::Staged(_) => "staged",
                Outcome::Refused { .. } => "refused",
            };
            let (dir, name) = (path.parent().unwrap_or(Path::new("/")), path.file_name().and_then(|n| n.to_str()).unwrap_or(""));
            let r = inbox::remove(dir, name);
            Event::info("update.inbox").kv("bundle", &s.bundle).kv("removed", path.display()).kv("why", why).result(&r.map_err(|e| e.to_string())).emit();
        }
        let elapsed_ms = ((crate::common::log::now() - s.since) * 1e3) as u64;
        match report.outcome {
            Outcome::Refused { kind, reason } => {
                let why = self.refused(&s.bundle, kind.name(), &reason);
                self.answer(&s.origin, Err(why));
            }
            // Answered once verified and on trial (see super::begin).
            Outcome::Staged(st) => self.begin_staged(&s.bundle, st, elapsed_ms, s.origin),
        }
    }

    /// Log a refusal (and end the update being staged with it); its text.
    pub(super) fn refused(&mut self, bundle: &str, kind: &str, why: &str) -> String {
        Event::error("update.refused").kv("bundle", bundle).kv("kind", kind).kv("reason", why).emit();
        self.stage.log.end(crate::supervise::outcome::Phase::Refused, kind, why);
        why.to_string()
    }

    /// Tell the inbox's events how the staging (and the switch) went
    /// (`berthctl update` was answered when it started).
    pub(super) fn answer(&mut self, origin: &Origin, result: Result<String, String>) {
        if let (Origin::Inbox { base, .. }, Ok(msg)) = (origin, result) {
            let bundle = Path::new(inbox::INBOX).join(base);
            Event::info("update.inbox").kv("bundle", bundle.display()).kv("result", "ok").kv("detail", msg).emit();
        }
    }

    /// Stage the bundle at `path` (`berthctl update`): the update's record
    /// once its staging started.
    pub(super) fn update_path(&mut self, path: &str) -> Result<crate::supervise::outcome::UpdateInfo, String> {
        self.may_stage()?;
        let file = open_bundle(Path::new(path)).map_err(|why| self.refused(path, "bundle", &why))?;
        let remove = Path::new(path).starts_with(inbox::INBOX).then(|| PathBuf::from(path));
        self.start_staging(file, path, Origin::Control, remove).map_err(|why| self.refused(path, "device", &why))?;
        self.stage.log.last().cloned().ok_or_else(|| "the update's record is missing".to_string())
    }
}
