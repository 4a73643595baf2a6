//! Removing ended containers' cgroups without waiting in the loop.
//!
//! It must not wait in the loop for a cgroup to empty: each pass is
//! non-blocking, and the next one is due on the loop's timer.
//!
//! When a container's init ends (or a start is given up), its cgroup joins
//! the removals: each pass ([`crate::confine::cgroup::act::remove_step`]) kills what
//! still runs in it and `rmdir`s what is empty; a directory the kernel still
//! holds (`EBUSY`: tasks exiting) is tried again on the loop's timer, 5 ms
//! doubling to 500 ms, for about 10 s ([`crate::confine::cgroup::act::retry_delay`]).
//! Then `cgroup.remove result=ok`, or `result=error` naming the directory
//! left behind. A new start of the same container waits while its old
//! cgroup is being removed ([`super::starting`]).

use super::Pid1;
use crate::common::log::Event;
use crate::confine::cgroup::act::{remove_step, retry_delay, CgroupDir, Version};

/// One cgroup on its way out.
pub(super) struct Removal {
    name: heapless::String<32>,
    path: String,
    cg: CgroupDir,
    tries: u32,
    next: f64,
    last_error: Option<String>,
}

impl Pid1 {
    /// Kill and remove container `name`'s cgroup: a first pass now, more
    /// on the timer if needed.
    pub(super) fn remove_cgroup(&mut self, name: &str, cg: CgroupDir) {
        if cg.dirs.is_empty() {
            return;
        }
        let mut n = heapless::String::new();
        let _ = n.push_str(name.get(..32).unwrap_or(name));
        let path = cg.path().map(|p| p.display().to_string()).unwrap_or_default();
        let now = crate::common::log::now();
        self.removals.push(Removal { name: n, path, cg, tries: 0, next: now, last_error: None });
        self.tick_removals(now);
    }

    /// One pass over every removal that is due at `now`.
    pub(super) fn tick_removals(&mut self, now: f64) {
        let mut i = 0;
        while let Some(r) = self.removals.get_mut(i) {
            if r.next > now {
                i += 1;
                continue;
            }
            r.tries += 1;
            let done = match remove_step(&mut r.cg) {
                Ok(done) => done,
                Err(e) => {
                    r.last_error = Some(e.to_string());
                    false
                }
            };
            let delay = if done { None } else { retry_delay(r.tries) };
            match delay {
                Some(d) => {
                    r.next = now + d.as_secs_f64();
                    i += 1;
                }
                None => {
                    let r = self.removals.swap_remove(i);
                    removed_event(&r, done);
                }
            }
        }
    }

    /// Whether container `name`'s cgroup from an earlier run is still being
    /// removed (a pass is made now first).
    pub(super) fn removal_pending(&mut self, name: &str) -> bool {
        if !self.removals.iter().any(|r| r.name == name) {
            return false;
        }
        if let Some(r) = self.removals.iter_mut().find(|r| r.name == name) {
            r.next = f64::NEG_INFINITY;
        }
        self.tick_removals(crate::common::log::now());
        self.removals.iter().any(|r| r.name == name)
    }

    /// When the next removal pass is due.
    pub(super) fn removals_deadline(&self) -> Option<f64> {
        self.removals.iter().map(|r| r.next).reduce(f64::min)
    }
}

fn removed_event(r: &Removal, done: bool) {
    let mode = match r.cg.version {
        Version::V2 => crate::release::board::CgroupMode::V2,
        Version::V1 => crate::release::board::CgroupMode::V1,
    };
    let ev = if done { Event::info("cgroup.remove") } else { Event::error("cgroup.remove") };
    let ev = ev.kv("name", &r.name).kv("path", &r.path).kv("left", crate::confine::containers::cgroups_left(mode)).kv("tries", r.tries);
    if done {
        return ev.kv("result", "ok").emit();
    }
    let left: Vec<String> = r.cg.dirs.iter().map(|d| d.display().to_string()).collect();
    let why = r.last_error.as_deref().unwrap_or("busy");
    ev.kv("result", "error").kv("error", format_args!("not removed: {} ({why})", left.join(" "))).emit();
}
