//! The loop's side of the status view ([`crate::statusview`]): after each
//! wake-up, render the status file when the pacer allows and write it when
//! it changed.

use super::{Pid1, SlotState};
use crate::log::Event;
use crate::statusview::{self as sv, Entry, Pacer, Release};

/// What the loop keeps for the status file.
pub(super) struct View {
    pacer: Pacer,
    /// The bytes last written (compared against each render).
    written: Vec<u8>,
    /// The render buffer, reused.
    buf: Vec<u8>,
    /// The last write failed (said once until one works again).
    failing: bool,
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
                Some(View { pacer: Pacer::default(), written: Vec::new(), buf: Vec::with_capacity(CAPACITY), failing: false })
            }
            Err(e) => {
                Event::error("status.view").kv("path", sv::DIR).kv("result", "error").kv("error", e).emit();
                None
            }
        }
    }

    /// When a deferred render is due.
    pub(super) fn due(&self) -> Option<f64> {
        self.pacer.due
    }
}

impl Pid1 {
    /// After a wake-up: render and write the status file if it is time and
    /// something changed; otherwise make sure the timer comes back for it.
    pub(super) fn refresh_view(&mut self) {
        let now = crate::log::now();
        let Some(mut view) = self.view.take() else {
            return;
        };
        if view.pacer.render_now(now) {
            self.render_view(&mut view.buf);
            if view.buf != view.written {
                match sv::write(std::path::Path::new(sv::DIR), &view.buf) {
                    Ok(()) => {
                        core::mem::swap(&mut view.buf, &mut view.written);
                        if view.failing {
                            view.failing = false;
                            Event::info("status.write").kv("result", "ok").emit();
                        }
                    }
                    Err(e) => {
                        if !view.failing {
                            view.failing = true;
                            Event::error("status.write").kv("result", "error").kv("error", e).emit();
                        }
                    }
                }
            }
            self.view = Some(view);
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
