//! Switching the running release without holding the loop.
//!
//! It must not hold the loop: the slow preparation runs in a helper thread,
//! which must not touch the loop's state.
//!
//! A switch (to a staged release on trial, or back to the previous one on a
//! rollback) prepares the specs of the containers it changes or adds:
//! plans, seccomp filters (a compile on a slow core is tens of
//! milliseconds), device rules, notify sockets, quota checks, and maps any
//! image not mapped yet. That runs in a helper thread that owns copies of
//! the release and board and touches none of the loop's state; the loop
//! learns it is done through a pipe in its epoll set ([`TOKEN_SWITCH`]) and
//! only then stops, replaces, retires and adds slots. The indices (uid
//! ranges) the new specs take are decided in the loop before the thread
//! starts, from the slots as they are.
//!
//! While a switch is in flight nothing else may stage ([`Pid1::switching`])
//! and no trial is open yet: the trial begins when the switch lands, so its
//! window and deadline count from the moment the new containers exist.

use std::os::fd::OwnedFd;
use std::sync::mpsc;

use super::update::{diff, Diff, Trial};
use super::{Pid1, Slot};
use crate::common::log::Event;
use crate::release::Release;

/// The switch helper's report pipe.
pub(super) const TOKEN_SWITCH: u64 = 7;

/// What follows when a switch lands.
pub(super) enum Then {
    /// The release goes on trial.
    Trial(Trial),
    /// A rollback: the failed release's own images are unmapped.
    Rollback { stale: Vec<crate::release::manifest::Digest> },
    /// Into the recovery state (no release): the images are unmapped.
    Recovery { stale: Vec<crate::release::manifest::Digest> },
}

/// A switch whose specs are being prepared.
pub(super) struct Switching {
    release: Release,
    key_id: String,
    diff: Diff,
    then: Then,
    wake: OwnedFd,
    report: mpsc::Receiver<Vec<crate::confine::containers::Spec>>,
    began: f64,
}

impl Pid1 {
    /// Whether a switch is in flight (then nothing else may stage).
    pub(super) fn switching(&self) -> bool {
        self.switch.is_some() || self.begin.is_some()
    }

    /// Begin making `release` the running one: decide the indices here,
    /// prepare the specs in a helper thread, land in [`Pid1::on_switch`].
    /// Without a thread (it could not be made) the preparation runs here.
    pub(super) fn switch_to(&mut self, release: Release, key_id: &str, mut then: Then) {
        let Some(u) = self.updates.as_ref() else {
            return;
        };
        let d = diff(&u.running, &release);
        if let Then::Trial(t) = &mut then {
            t.superseded = crate::release::images::not_in(&u.running, &release);
        }
        Event::info("update.switch")
            .kv("version", release.version)
            .kv("kept", d.kept.len())
            .kv("changed", d.changed.join(","))
            .kv("added", d.added.join(","))
            .kv("removed", d.removed.join(","))
            .emit();
        let wanted: Vec<String> = d.changed.iter().chain(d.added.iter()).cloned().collect();
        let indices = self.indices(&wanted);
        let (board, copy) = (u.board.clone(), release.clone());
        let job = move || {
            // Mapped while staged; a rollback's release is mapped already.
            crate::release::images::map(&copy);
            let names: Vec<&str> = wanted.iter().map(String::as_str).collect();
            let mut index_of = |n: &str| indices.iter().find(|(m, _)| m == n).map_or(0, |(_, i)| *i);
            crate::confine::containers::prepare_some(&copy, &board, &names, &mut index_of)
        };
        match spawn("berth-switch", job) {
            Ok((wake, report)) => {
                if let Some(epoll) = &self.epoll {
                    use nix::sys::epoll::{EpollEvent, EpollFlags};
                    if let Err(e) = epoll.add(&wake, EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_SWITCH)) {
                        Event::error("update.switch").kv("step", "watch").result(&Err::<(), _>(crate::common::files::errno_text(e))).emit();
                    }
                }
                let began = crate::common::log::now();
                self.switch = Some(Box::new(Switching { release, key_id: key_id.to_string(), diff: d, then, wake, report, began }));
            }
            Err((e, job)) => {
                Event::warn("update.switch").kv("step", "thread").kv("reason", e).emit();
                let specs = job();
                self.land(release, key_id, &d, specs, then);
            }
        }
    }

    /// The index (uid range) each wanted container takes: a kept or
    /// changed one keeps its own, a new one the lowest no live slot uses.
    fn indices(&self, wanted: &[String]) -> Vec<(String, u16)> {
        let mut taken: Vec<u16> = self.slots.iter().filter(|s| !s.retired).map(|s| s.spec.plan.index).collect();
        let mut out = Vec::with_capacity(wanted.len());
        for name in wanted {
            let index = match self.slots.iter().find(|s| !s.retired && s.spec.name == name.as_str()) {
                Some(s) => s.spec.plan.index,
                None => {
                    let free = (0..=u16::MAX).find(|i| !taken.contains(i)).unwrap_or(0);
                    taken.push(free);
                    free
                }
            };
            out.push((name.clone(), index));
        }
        out
    }

    /// The switch helper reported: land the switch.
    pub(super) fn on_switch(&mut self) {
        let Some(sw) = self.switch.as_ref() else {
            return;
        };
        let specs = match sw.report.try_recv() {
            Ok(specs) => specs,
            Err(mpsc::TryRecvError::Empty) => return,
            Err(mpsc::TryRecvError::Disconnected) => {
                Event::error("update.switch").kv("step", "prepare").kv("result", "error").kv("error", "the helper ended without a report").emit();
                Vec::new()
            }
        };
        let Some(sw) = self.switch.take() else { return };
        if let Some(epoll) = &self.epoll {
            let _ = epoll.delete(&sw.wake);
        }
        let ms = ((crate::common::log::now() - sw.began).max(0.0) * 1e3) as u64;
        Event::info("update.prepared").kv("version", sw.release.version).kv("specs", specs.len()).kv("ms", ms).emit();
        if self.phase != super::Phase::Running {
            // Shutting down: every container is being stopped anyway.
            return;
        }
        self.land(sw.release, &sw.key_id, &sw.diff, specs, sw.then);
    }

    /// Make `release` the running one with its prepared `specs`: keep,
    /// replace, retire and add slots; then what follows (and, if a
    /// container it changes or adds has no spec, [`super::unprepared`]).
    fn land(&mut self, release: Release, key_id: &str, d: &Diff, specs: Vec<crate::confine::containers::Spec>, then: Then) {
        let Some(u) = self.updates.as_mut() else {
            return;
        };
        u.running = release;
        let version = u.running.version;
        let (missing, was) = (super::unprepared::missing(d, &specs), super::unprepared::For::of(&then));
        if matches!(then, Then::Recovery { .. }) {
            self.release = None;
        } else {
            // A release runs: whatever recovery there was has ended.
            if let Some(why) = u.recovery.take() {
                Event::info("release.recovered").kv("version", version).kv("was", why).emit();
            }
            self.set_release(version, key_id);
        }
        for name in &d.removed {
            self.retire(name);
        }
        for spec in specs {
            self.replace_or_add(spec);
        }
        self.watch_notify_sockets();
        match then {
            Then::Trial(trial) => self.open_trial(trial),
            // The failed release's own images: its containers are being
            // stopped, and the images go once they have.
            Then::Rollback { stale } | Then::Recovery { stale } => crate::release::images::unmap(&stale),
        }
        // The starts and the trial's first look come on the next timer
        // wake-up: landing and starting are two short handlers.
        self.update_due = Some(crate::common::log::now());
        self.arm_deadline();
        self.unprepared(version, &missing, was);
    }

    /// Container `name` is not in the new release: stop it (its slot is
    /// dropped once it has ended) or drop it now.
    fn retire(&mut self, name: &str) {
        let Some(i) = self.slots.iter().position(|s| !s.retired && s.spec.name == name) else {
            return;
        };
        let running = self.slots.get(i).is_some_and(|s| s.pid.is_some());
        if let Some(s) = self.slots.get_mut(i) {
            s.retired = true;
            s.due = None;
        }
        if running {
            self.stop_container(i, "update");
        } else {
            Event::info("container.stopped").kv("name", name).kv("by", "update").emit();
            self.drop_slot(i);
        }
    }

    /// A changed container's new spec replaces its slot's once the old one
    /// has stopped; a new container gets a slot.
    fn replace_or_add(&mut self, spec: crate::confine::containers::Spec) {
        let name = spec.name.clone();
        match self.slots.iter().position(|s| !s.retired && s.spec.name == name) {
            Some(i) => {
                let running = self.slots.get(i).is_some_and(Slot::busy);
                if let Some(s) = self.slots.get_mut(i) {
                    s.replace = Some(Box::new(spec));
                    s.due = None;
                }
                if running {
                    self.stop_container(i, "update");
                } else {
                    self.take_replacement(i);
                }
            }
            None => self.slots.push(Slot::new(spec)),
        }
    }

    /// The switch to a staged release landed: its trial begins.
    fn open_trial(&mut self, mut trial: Trial) {
        trial.ended_before = self.ended_before_switch();
        let deadline = trial.deadline - crate::common::log::now();
        Event::info("release.trial")
            .kv("version", trial.version)
            .kv("deadline_s", format_args!("{deadline:.1}"))
            .kv("not_waited_for", trial.ended_before.join(","))
            .emit();
        if let Some(u) = self.updates.as_mut() {
            u.trial = Some(trial);
        }
        if let Some(open) = self.stage.log.open() {
            open.phase = crate::supervise::outcome::Phase::Trial;
        }
    }
}

/// Work handed to a helper thread, returning `T`.
pub(super) type Job<T> = Box<dyn FnOnce() -> T + Send>;

/// Run `job` in a helper thread named `name`; its report comes through the
/// channel, and a byte on the pipe (non-blocking, close-on-exec) wakes the
/// loop. On error the job comes back to be run here.
#[allow(clippy::type_complexity)]
pub(super) fn spawn<T: Send + 'static>(name: &str, job: impl FnOnce() -> T + Send + 'static) -> Result<(OwnedFd, mpsc::Receiver<T>), (String, Job<T>)> {
    use nix::fcntl::OFlag;
    let job: Job<T> = Box::new(job);
    let (r, w) = match nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK) {
        Ok(p) => p,
        Err(e) => return Err((format!("pipe: {}", crate::common::files::errno_text(e)), job)),
    };
    let (tx, rx) = mpsc::channel();
    // The job moves into the thread only once the thread exists: keep it
    // reachable until then so that a failed spawn can hand it back.
    let slot = std::sync::Arc::new(std::sync::Mutex::new(Some(job)));
    let inside = std::sync::Arc::clone(&slot);
    let spawned = std::thread::Builder::new().name(name.into()).spawn(move || {
        let job = inside.lock().ok().and_then(|mut j| j.take());
        if let Some(j) = job {
            let _ = tx.send(j());
        }
        let _ = nix::unistd::write(&w, &[1u8]);
    });
    match spawned {
        Ok(_) => Ok((r, rx)),
        Err(e) => match slot.lock().ok().and_then(|mut j| j.take()) {
            Some(job) => Err((format!("thread: {e}"), job)),
            // The thread took it and ran: its report comes as usual.
            None => Ok((r, rx)),
        },
    }
}
