//! Putting a staged release on trial without holding the loop.
//!
//! When the stager reports a staged release, PID 1 must not take its word
//! for it: the release object is read back from the store and verified
//! again (signature, board, floor, its images present), and only then the
//! store's record is written with the release on trial (an atomic replace
//! with two fsyncs). A signature check and a durable write take tens of
//! milliseconds on a slow core and longer on a busy disk, so both run in a
//! helper thread ([`super::switch::spawn`]) on a copy of the store. The
//! loop learns the result through a pipe in its epoll set ([`TOKEN_BEGIN`])
//! and adopts the copy (its record now says "trial") before it switches.
//!
//! While the thread runs the loop writes nothing to the store: a staging,
//! a switch and a trial are refused or absent ([`Pid1::switching`] is
//! true), and commits and rollbacks need a trial. A power cut while the
//! thread writes is the store's ordinary case: the record is either the
//! old one or the trial, and a trial whose switch never happened is rolled
//! back at the next boot.

use std::os::fd::OwnedFd;
use std::sync::mpsc;

use super::stage::Origin;
use super::switch::{spawn, Then};
use super::update::Trial;
use super::Pid1;
use crate::common::log::Event;
use crate::release::manifest::Digest;
use crate::release::store::{Staged, Store};

/// The trial helper's report pipe.
pub(super) const TOKEN_BEGIN: u64 = 8;

/// What the helper reports: the store copy with the trial recorded, and
/// the verified release; or why the release may not go on trial.
type Outcome = Result<(Box<Store>, Box<Staged>), String>;

/// A staged release being verified and recorded off the loop.
pub(super) struct Beginning {
    bundle: String,
    origin: Origin,
    /// The images the staging mapped: unmapped again when refused.
    mapped: Vec<Digest>,
    staging_ms: u64,
    wake: OwnedFd,
    report: mpsc::Receiver<Outcome>,
}

impl Pid1 {
    /// The stager staged `st`: verify it and record its trial in a helper
    /// thread; [`Pid1::on_begin`] takes it from there.
    pub(super) fn begin_staged(&mut self, bundle: &str, st: crate::release::stager::Staged, staging_ms: u64, origin: Origin) {
        let Some(u) = self.updates.as_ref() else {
            let why = self.refused(bundle, "device", "no release store on this device");
            return self.answer(&origin, Err(why));
        };
        let entry = crate::release::record::Entry { digest: st.release, version: st.version };
        let images_added = usize::try_from(st.images_added).unwrap_or(usize::MAX);
        let (mut store, keys, board) = (u.store.clone(), u.keys.clone(), u.board.name.to_string());
        let bytes = st.bytes;
        let job = move || -> Outcome {
            let staged = store.staged(entry, &keys, &board, images_added, bytes).map_err(|e| format!("the staged release does not check out: {e}"))?;
            // A release that asks for a reboot is booted into: the boot
            // must run its trial rather than roll it back.
            store.begin_trial(&staged, staged.verified.release.reboot).map_err(|e| e.to_string())?;
            Ok((Box::new(store), Box::new(staged)))
        };
        let mapped = st.mapped.iter().copied().collect();
        match spawn("berth-trial", job) {
            Ok((wake, report)) => {
                if let Some(epoll) = &self.epoll {
                    use nix::sys::epoll::{EpollEvent, EpollFlags};
                    if let Err(e) = epoll.add(&wake, EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_BEGIN)) {
                        Event::error("update.staged").kv("step", "watch").result(&Err::<(), _>(crate::common::files::errno_text(e))).emit();
                    }
                }
                self.begin = Some(Box::new(Beginning { bundle: bundle.to_string(), origin, mapped, staging_ms, wake, report }));
            }
            Err((e, job)) => {
                Event::warn("update.staged").kv("step", "thread").kv("reason", e).emit();
                let outcome = job();
                self.begun(bundle, &origin, &mapped, staging_ms, outcome);
            }
        }
    }

    /// The trial helper reported.
    pub(super) fn on_begin(&mut self) {
        let Some(b) = self.begin.as_ref() else {
            return;
        };
        let outcome = match b.report.try_recv() {
            Ok(o) => o,
            Err(mpsc::TryRecvError::Empty) => return,
            Err(mpsc::TryRecvError::Disconnected) => Err("the trial helper ended without a report".to_string()),
        };
        let Some(b) = self.begin.take() else { return };
        if let Some(epoll) = &self.epoll {
            let _ = epoll.delete(&b.wake);
        }
        self.begun(&b.bundle, &b.origin, &b.mapped, b.staging_ms, outcome);
    }

    /// Act on the helper's outcome: refuse, reboot into the release, or
    /// switch to it on trial.
    fn begun(&mut self, bundle: &str, origin: &Origin, mapped: &[Digest], staging_ms: u64, outcome: Outcome) {
        let result = match outcome {
            Err(why) => {
                crate::release::images::unmap(mapped);
                Err(self.refused(bundle, "device", &why))
            }
            Ok((store, staged)) => self.on_trial(bundle, *store, &staged, staging_ms),
        };
        self.answer(origin, result);
    }

    /// The trial is recorded (`store` says so): reboot or switch.
    fn on_trial(&mut self, bundle: &str, store: Store, staged: &Staged, staging_ms: u64) -> Result<String, String> {
        let Some(u) = self.updates.as_mut() else {
            return Err("no release store on this device".into());
        };
        u.store = store;
        let release = staged.verified.release.clone();
        let worst = self.stalls.marked;
        Event::info("update.staged")
            .kv("bundle", bundle)
            .kv("version", release.version)
            .kv("images_added", staged.images_added)
            .kv("bytes", staged.bytes)
            .kv("staging_ms", staging_ms)
            .kv("loop_max_ms", format_args!("{:.1}", worst.handler_s * 1e3))
            .kv("pet_late_max_ms", format_args!("{:.1}", worst.pet_late_s * 1e3))
            .emit();
        if let Some(open) = self.stage.log.open() {
            open.version = Some(release.version);
        }
        let running = self.phase == super::Phase::Running;
        if !release.reboot && !running {
            // Its switch never happens: the next boot rolls the trial back.
            return Err(self.refused(bundle, "device", "berth is shutting down: the next boot rolls this trial back"));
        }
        if release.reboot {
            self.stage.log.end(crate::supervise::outcome::Phase::Rebooting, "", "");
            Event::info("update.reboot").kv("version", release.version).emit();
            if running {
                let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGINT);
            }
            return Ok(format!("release {} staged; rebooting into it", release.version));
        }
        let key_id = staged.verified.key_id.to_string();
        let trial = Trial::new(&release);
        let version = release.version;
        self.switch_to(release, &key_id, Then::Trial(trial));
        Ok(format!("switching to release {version}; on trial"))
    }
}
