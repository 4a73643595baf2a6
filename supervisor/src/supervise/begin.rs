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
use crate::release::board::bootloader::Bootloader;
use crate::release::bootenv::{PendingTry, Slot};
use crate::release::manifest::Digest;
use crate::release::store::{Staged, Store};

/// The trial helper's report pipe.
pub(super) const TOKEN_BEGIN: u64 = 8;

/// What the helper reports: the store copy with the trial recorded, and
/// the verified release; or why the release may not go on trial.
/// A refusal after the helper wrote the store (a try it had to undo)
/// carries the store copy, whose record is now the one on disk.
type Outcome = Result<(Box<Store>, Box<Staged>), (String, Option<Box<Store>>)>;

/// A staged release being verified and recorded off the loop.
pub(super) struct Beginning {
    bundle: String,
    origin: Origin,
    /// The images the staging mapped: unmapped again when refused.
    mapped: Vec<Digest>,
    staging_ms: u64,
    /// The slot the staging wrote a system payload into.
    system: Option<Slot>,
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
        let (loader, wait_ms) = (u.board.bootloader.clone(), u.board.storage.wait_ms);
        let (bytes, system) = (st.bytes, st.system);
        let job = move || -> Outcome {
            let staged = store.staged(entry, &keys, &board, images_added, bytes).map_err(|e| (format!("the staged release does not check out: {e}"), None))?;
            match (system, loader) {
                (Some(to), Some(loader)) => {
                    if let Err((why, wrote)) = try_slot(&mut store, &staged, &loader, to, wait_ms) {
                        return Err((why, wrote.then(|| Box::new(store))));
                    }
                }
                (Some(_), None) => return Err(("a system payload was written, but the board has no [bootloader]".into(), None)),
                // A release that asks for a reboot is booted into: the boot
                // must run its trial rather than roll it back.
                (None, _) => store.begin_trial(&staged, staged.verified.release.reboot).map_err(|e| (e.to_string(), None))?,
            }
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
                self.begin = Some(Box::new(Beginning { bundle: bundle.to_string(), origin, mapped, staging_ms, system, wake, report }));
            }
            Err((e, job)) => {
                Event::warn("update.staged").kv("step", "thread").kv("reason", e).emit();
                let outcome = job();
                self.begun(bundle, &origin, &mapped, staging_ms, system, outcome);
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
            Err(mpsc::TryRecvError::Disconnected) => Err(("the trial helper ended without a report".to_string(), None)),
        };
        let Some(b) = self.begin.take() else { return };
        if let Some(epoll) = &self.epoll {
            let _ = epoll.delete(&b.wake);
        }
        self.begun(&b.bundle, &b.origin, &b.mapped, b.staging_ms, b.system, outcome);
    }

    /// Act on the helper's outcome: refuse, reboot into the release, or
    /// switch to it on trial.
    fn begun(&mut self, bundle: &str, origin: &Origin, mapped: &[Digest], staging_ms: u64, system: Option<Slot>, outcome: Outcome) {
        let result = match outcome {
            Err((why, store)) => {
                if let (Some(store), Some(u)) = (store, self.updates.as_mut()) {
                    u.store = *store;
                }
                crate::release::images::unmap(mapped);
                Err(self.refused(bundle, "device", &why))
            }
            Ok((store, staged)) => self.on_trial(bundle, *store, &staged, staging_ms, system),
        };
        self.answer(origin, result);
    }

    /// The trial is recorded (`store` says so): reboot or switch.
    fn on_trial(&mut self, bundle: &str, store: Store, staged: &Staged, staging_ms: u64, system: Option<Slot>) -> Result<String, String> {
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
        let reboot = release.reboot || system.is_some();
        if !reboot && !running {
            // Its switch never happens: the next boot rolls the trial back.
            return Err(self.refused(bundle, "device", "berth is shutting down: the next boot rolls this trial back"));
        }
        if reboot {
            self.stage.log.end(crate::supervise::outcome::Phase::Rebooting, "", "");
            let mut ev = Event::info("update.reboot").kv("version", release.version);
            if let Some(to) = system {
                ev = ev.kv("try_slot", to.name());
            }
            ev.emit();
            if running {
                let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGINT);
            }
            return Ok(match system {
                Some(to) => format!("release {} staged with its system in slot {}; rebooting to try it", release.version, to.name()),
                None => format!("release {} staged; rebooting into it", release.version),
            });
        }
        let key_id = staged.verified.key_id.to_string();
        let trial = Trial::new(&release);
        let version = release.version;
        self.switch_to(release, &key_id, Then::Trial(trial));
        Ok(format!("switching to release {version}; on trial"))
    }
}

/// Put `staged` on trial as a try of system slot `to` (helper thread):
/// the try on the data partition first, then the trial, then the
/// bootloader's one-shot try. A cut between any two is a fall-back at the
/// next boot (the old slot boots and finds the try recorded); a failure
/// undoes what was done, so the device stays on its committed release.
/// On an error, whether the store's record was written (undone).
fn try_slot(store: &mut Store, staged: &Staged, loader: &Bootloader, to: Slot, wait_ms: u32) -> Result<(), (String, bool)> {
    use crate::release::durable::SysIo;
    use crate::release::slottry;
    let dir = store.dir().to_path_buf();
    let pending = PendingTry { from: to.other(), to, reached: false };
    slottry::write(&mut SysIo, &dir, &pending).map_err(|e| (format!("recording the try of slot {}: {e}", to.name()), false))?;
    if let Err(e) = store.begin_trial(staged, true) {
        let _ = slottry::clear(&mut SysIo, &dir);
        return Err((e.to_string(), false));
    }
    match crate::release::slotwrite::set_boot_state(loader, wait_ms, |s| s.try_once(to)) {
        Ok((before, after)) => {
            Event::info("update.try")
                .kv("slot", to.name())
                .kv("first", after.first.name())
                .kv("a_left", after.left(Slot::A))
                .kv("b_left", after.left(Slot::B))
                .kv("was_first", before.first.name())
                .emit();
            Ok(())
        }
        Err(e) => {
            let undo = store.rollback(crate::release::record::Cause::SystemNeverStarted, None).map(|_| ()).map_err(|e| e.to_string());
            let _ = slottry::clear(&mut SysIo, &dir);
            Err((
                format!(
                    "setting the bootloader's try of slot {}: {e}{}",
                    to.name(),
                    undo.err().map(|u| format!("; undoing the trial: {u}")).unwrap_or_default()
                ),
                true,
            ))
        }
    }
}
