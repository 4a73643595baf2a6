//! The loop's side of the status view ([`crate::supervise::statusview`]): after each
//! wake-up, render the status file and the metrics file
//! ([`crate::supervise::metrics`]) when the pacer allows and write each that changed.
//!
//! It must not render more often than the pacer allows, nor write a file that
//! did not change.
//!
//! The metrics' memory is each running container's `memory.current`, the
//! read `berthctl status` does, sampled at most every [`MEMORY_EVERY_S`]
//! (the loop wakes for it while a container runs); OOM kills are counted
//! from a run's `memory.events` when it ends, dropped output lines as they
//! are dropped.

use super::{Pid1, SlotState};
use crate::common::log::Event;
use crate::supervise::statusview::{self as sv, Entry, Pacer, Release};

/// Least time between two samples of the containers' memory.
pub(super) const MEMORY_EVERY_S: f64 = 5.0;

/// What the metrics file counts for a container, since boot.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Counts {
    pub(super) oom_kills: u64,
    pub(super) dropped_lines: u64,
    /// At the last sample; 0 when not running.
    pub(super) memory_bytes: u64,
}

/// One file of the view: the bytes last written, the render buffer, and
/// whether the last write failed (said once until one works again).
struct Written {
    name: &'static str,
    written: Vec<u8>,
    buf: Vec<u8>,
    failing: bool,
}

impl Written {
    fn new(name: &'static str, capacity: usize) -> Written {
        Written { name, written: Vec::new(), buf: Vec::with_capacity(capacity), failing: false }
    }

    /// Write the render if it differs from the last written bytes.
    fn put(&mut self) {
        if self.buf == self.written {
            return;
        }
        match sv::write_as(std::path::Path::new(sv::DIR), self.name, &self.buf) {
            Ok(()) => {
                core::mem::swap(&mut self.buf, &mut self.written);
                if self.failing {
                    self.failing = false;
                    Event::info("status.write").kv("file", self.name).kv("result", "ok").emit();
                }
            }
            Err(e) => {
                if !self.failing {
                    self.failing = true;
                    Event::error("status.write").kv("file", self.name).kv("result", "error").kv("error", e).emit();
                }
            }
        }
    }
}

/// What the loop keeps for the status view's files.
pub(super) struct View {
    pacer: Pacer,
    status: Written,
    metrics: Written,
    /// The last memory sample, and whether a container was running then.
    memory_at: f64,
    sampling: bool,
}

/// The file's size for a full release: 40 entries of about 150 bytes.
const CAPACITY: usize = 8 << 10;

impl View {
    /// Make the directory and the first file; `None` (logged) if the
    /// directory cannot be made: containers asking for the view then fail
    /// at their bind, fail closed.
    pub(super) fn new() -> Option<View> {
        match sv::make_dir(std::path::Path::new(sv::DIR)) {
            Ok(()) => {
                Event::info("status.view").kv("path", sv::DIR).kv("result", "ok").emit();
                Some(View {
                    pacer: Pacer::default(),
                    status: Written::new(sv::FILE, CAPACITY),
                    metrics: Written::new(crate::supervise::metrics::FILE, crate::supervise::metrics::MAX),
                    memory_at: f64::NEG_INFINITY,
                    sampling: false,
                })
            }
            Err(e) => {
                Event::error("status.view").kv("path", sv::DIR).kv("result", "error").kv("error", e).emit();
                None
            }
        }
    }

    /// When a deferred render or the next memory sample is due.
    pub(super) fn due(&self) -> Option<f64> {
        let sample = self.sampling.then_some(self.memory_at + MEMORY_EVERY_S);
        match (self.pacer.due, sample) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

impl Pid1 {
    /// After a wake-up: render the view's files if it is time (sampling
    /// memory when due) and write each that changed; otherwise make sure
    /// the timer comes back for it.
    pub(super) fn refresh_view(&mut self) {
        let now = crate::common::log::now();
        let Some(mut view) = self.view.take() else {
            return;
        };
        if view.pacer.render_now(now) {
            if now - view.memory_at >= MEMORY_EVERY_S {
                view.memory_at = now;
                view.sampling = self.sample_memory();
            }
            self.render_view(&mut view.status.buf);
            view.status.put();
            self.render_metrics(&mut view.metrics.buf, now);
            view.metrics.put();
            self.view = Some(view);
            if view_sampling(&self.view) {
                self.arm_deadline();
            }
        } else {
            self.view = Some(view);
            self.arm_deadline();
        }
    }

    /// The release as the status file and `berthctl status` show it.
    pub(super) fn view_release(&self) -> Option<Release<'_>> {
        let phase = self.release_phase();
        match (&self.release, self.recovering()) {
            (Some((version, key_id)), _) => Some(Release { version: *version, key_id, phase }),
            (None, Some(_)) => Some(Release { version: 0, key_id: "", phase }),
            (None, None) => None,
        }
    }

    fn render_view(&self, out: &mut Vec<u8>) {
        let release = self.view_release();
        let ms = |started: f64| Some(super::commands::started_ms(started));
        let exits: Vec<heapless::String<24>> = self
            .slots
            .iter()
            .filter(|s| !s.retired)
            .map(|s| super::commands::last_exit(s.last_exit))
            .chain(self.services.iter().map(|s| super::commands::last_exit(s.last_exit)))
            .collect();
        let states: Vec<heapless::String<16>> = self.services.iter().map(|s| super::commands::state_name(s.state, s.kill_at.is_some())).collect();
        let mut entries: Vec<Entry<'_>> = Vec::with_capacity(exits.len());
        for (s, exit) in self.slots.iter().filter(|s| !s.retired).zip(&exits) {
            entries.push(Entry {
                name: &s.spec.name,
                kind: super::Kind::Container.name(),
                state: super::update::state_name(s),
                ready: s.pid.is_some() && s.life.ready,
                restarts: s.restart.restarts,
                last_exit: exit,
                started_ms: s.pid.and_then(|_| ms(s.started)),
            });
        }
        let service_exits = exits.get(entries.len()..).unwrap_or(&[]);
        for ((s, exit), state) in self.services.iter().zip(service_exits).zip(&states) {
            entries.push(Entry {
                name: &s.spec.name,
                kind: super::Kind::Service.name(),
                state,
                ready: s.pid.is_some() && s.state == SlotState::Running,
                restarts: s.restart.restarts,
                last_exit: exit,
                started_ms: s.pid.and_then(|_| ms(s.started)),
            });
        }
        let worst = self.stalls.boot;
        let lp = sv::Loop { handler_max_ms: worst.handler_s * 1e3, handler: worst.handler.name(), pet_late_max_ms: worst.pet_late_s * 1e3 };
        sv::render(out, release.as_ref(), &entries, &lp, self.stage.current.is_some(), self.stage.log.last());
    }
}

fn view_sampling(view: &Option<View>) -> bool {
    view.as_ref().is_some_and(|v| v.sampling)
}

impl Pid1 {
    /// Each container's memory now (0 when not running); whether one runs.
    fn sample_memory(&mut self) -> bool {
        let mut any = false;
        for s in self.slots.iter_mut().filter(|s| !s.retired) {
            let cg = s.pid.and_then(|pid| self.cgroups.iter().find(|(p, _)| *p == pid));
            s.counts.memory_bytes = cg.and_then(|(_, cg)| cg.memory_current().ok()).unwrap_or(0);
            any |= s.pid.is_some();
        }
        any
    }

    /// The OOM kills in the cgroup of the run of `pid`, just ended.
    pub(super) fn count_oom_kills(&mut self, pid: nix::unistd::Pid, n: u64) {
        if let Some(s) = self.slots.iter_mut().find(|s| s.pid == Some(pid)) {
            s.counts.oom_kills = s.counts.oom_kills.saturating_add(n);
        }
    }

    /// `n` output lines of container `name` dropped past its `log_rate`.
    pub(super) fn count_dropped(&mut self, name: &str, kind: super::Kind, n: u64) {
        if kind != super::Kind::Container || n == 0 {
            return;
        }
        if let Some(s) = self.slots.iter_mut().find(|s| !s.retired && s.spec.name.as_str() == name) {
            s.counts.dropped_lines = s.counts.dropped_lines.saturating_add(n);
        }
    }

    fn render_metrics(&self, out: &mut Vec<u8>, now: f64) {
        let list: Vec<crate::supervise::metrics::Container<'_>> = self
            .slots
            .iter()
            .filter(|s| !s.retired)
            .take(crate::supervise::metrics::CONTAINERS_MAX)
            .map(|s| crate::supervise::metrics::Container {
                name: &s.spec.name,
                state: super::update::state_name(s),
                restarts: s.restart.restarts,
                memory_bytes: if s.pid.is_some() { s.counts.memory_bytes } else { 0 },
                oom_kills: s.counts.oom_kills,
                dropped_lines: s.counts.dropped_lines,
            })
            .collect();
        let recent = self.stalls.recent(now);
        let device = crate::supervise::metrics::Device {
            release: self.release.as_ref().map(|(v, _)| *v),
            update_phase: self.stage.log.last().map(|u| u.phase.name()),
            stall_max_s: recent.handler_s,
            pet_late_max_s: recent.pet_late_s,
        };
        crate::supervise::metrics::render(out, &list, &device);
    }
}
