//! How long the loop was held: the proof that nothing slow runs in it.
//!
//! It must not read the clock or block: it is pure bookkeeping on the times
//! the loop hands it.
//!
//! Two measures, both on `CLOCK_MONOTONIC`:
//!
//! - a **handler**: the work of one epoll wake-up's event (a tick, a
//!   control request, a batch of output, ...), from its start to its end,
//!   with the kind of event ([`Kind`]);
//! - the **watchdog pet's lateness**: from when the pet timer was due to
//!   when the loop got to petting. Anything that holds the loop shows here
//!   first, whoever holds it.
//!
//! [`Stalls`] keeps the worst of each since boot, over the recent past
//! (the current and the previous [`BUCKET_S`]-second bucket, so a reading
//! covers at least the last [`BUCKET_S`] seconds), and since the last
//! [`Stalls::mark`] (an update's start: `update.staged` and `update.done`
//! report the worst over the update). A stall longer than the threshold (a
//! quarter of the watchdog's timeout, [`threshold`]) is reported at once as
//! a `loop.stall` event. Pure bookkeeping; the loop feeds it times.

/// Length of one bucket of the recent window.
pub const BUCKET_S: f64 = 10.0;
/// The `loop.stall` threshold without a watchdog.
pub const THRESHOLD_NO_WATCHDOG_S: f64 = 2.5;

/// What a handler handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kind {
    #[default]
    None,
    Signal,
    Shutdown,
    Tick,
    Pet,
    Accept,
    Control,
    Notify,
    Output,
    Stage,
    View,
    Start,
    Console,
    Switch,
    Begin,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::None => "none",
            Kind::Signal => "signal",
            Kind::Shutdown => "shutdown",
            Kind::Tick => "tick",
            Kind::Pet => "pet",
            Kind::Accept => "control-accept",
            Kind::Control => "control",
            Kind::Notify => "notify",
            Kind::Output => "output",
            Kind::Stage => "stage",
            Kind::View => "status-view",
            Kind::Start => "start",
            Kind::Console => "console",
            Kind::Switch => "switch",
            Kind::Begin => "trial-begin",
        }
    }
}

/// The worst seen over some span.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Worst {
    /// The longest handler, seconds, and its kind.
    pub handler_s: f64,
    pub handler: Kind,
    /// The latest watchdog pet, seconds after it was due.
    pub pet_late_s: f64,
}

impl Worst {
    fn handler(&mut self, kind: Kind, s: f64) {
        if s > self.handler_s {
            self.handler_s = s;
            self.handler = kind;
        }
    }

    fn pet(&mut self, late: f64) {
        self.pet_late_s = self.pet_late_s.max(late);
    }

    fn merge(mut self, other: &Worst) -> Worst {
        self.handler(other.handler, other.handler_s);
        self.pet(other.pet_late_s);
        self
    }

    /// The longer of the two measures, seconds.
    pub fn longest_s(&self) -> f64 {
        self.handler_s.max(self.pet_late_s)
    }
}

/// The `loop.stall` threshold for a watchdog timeout: a quarter of it.
pub fn threshold(watchdog_timeout_s: Option<u32>) -> f64 {
    watchdog_timeout_s.map_or(THRESHOLD_NO_WATCHDOG_S, |t| f64::from(t) / 4.0)
}

/// A stall to report as `loop.stall`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stall {
    Handler { kind: Kind, s: f64 },
    Pet { late_s: f64 },
}

/// The loop's stall record.
#[derive(Debug, Clone, PartialEq)]
pub struct Stalls {
    pub boot: Worst,
    /// Since the last [`Stalls::mark`].
    pub marked: Worst,
    /// The current and the previous bucket.
    buckets: [Worst; 2],
    /// Start of the current bucket.
    bucket_at: f64,
    threshold_s: f64,
}

impl Stalls {
    pub fn new(threshold_s: f64) -> Stalls {
        Stalls { boot: Worst::default(), marked: Worst::default(), buckets: [Worst::default(); 2], bucket_at: f64::NEG_INFINITY, threshold_s }
    }

    pub fn threshold_s(&self) -> f64 {
        self.threshold_s
    }

    /// Move the buckets on to `now`.
    fn roll(&mut self, now: f64) {
        if now - self.bucket_at < BUCKET_S {
            return;
        }
        let previous = if now - self.bucket_at < 2.0 * BUCKET_S { self.buckets[0] } else { Worst::default() };
        self.buckets = [Worst::default(), previous];
        self.bucket_at = if self.bucket_at.is_finite() && now - self.bucket_at < 2.0 * BUCKET_S { self.bucket_at + BUCKET_S } else { now };
    }

    fn each(&mut self, now: f64, f: impl Fn(&mut Worst)) {
        self.roll(now);
        for w in [&mut self.boot, &mut self.marked, &mut self.buckets[0]] {
            f(w);
        }
    }

    /// A handler of `kind` ran from `start` to `end`; the stall to report,
    /// if it was one.
    pub fn handler(&mut self, kind: Kind, start: f64, end: f64) -> Option<Stall> {
        let s = (end - start).max(0.0);
        self.each(end, |w| w.handler(kind, s));
        (s > self.threshold_s).then_some(Stall::Handler { kind, s })
    }

    /// The watchdog was petted at `now`, due at `due`.
    pub fn pet(&mut self, due: f64, now: f64) -> Option<Stall> {
        let late = (now - due).max(0.0);
        self.each(now, |w| w.pet(late));
        (late > self.threshold_s).then_some(Stall::Pet { late_s: late })
    }

    /// Start a new span for [`Stalls::marked`].
    pub fn mark(&mut self) {
        self.marked = Worst::default();
    }

    /// The worst over at least the last [`BUCKET_S`] seconds before `now`.
    pub fn recent(&self, now: f64) -> Worst {
        if now - self.bucket_at >= 2.0 * BUCKET_S {
            return Worst::default();
        }
        if now - self.bucket_at >= BUCKET_S {
            return self.buckets[0];
        }
        self.buckets[0].merge(&self.buckets[1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_threshold_is_a_quarter_of_the_watchdog() {
        assert_eq!(threshold(Some(10)), 2.5);
        assert_eq!(threshold(None), THRESHOLD_NO_WATCHDOG_S);
    }

    #[test]
    fn worst_handlers_and_pets_are_kept_with_their_kind() {
        let mut s = Stalls::new(2.5);
        assert_eq!(s.handler(Kind::Tick, 1.0, 1.02), None);
        assert_eq!(s.handler(Kind::Output, 2.0, 2.005), None);
        assert_eq!(s.pet(3.0, 3.004), None);
        assert_eq!(s.boot.handler, Kind::Tick);
        assert!((s.boot.handler_s - 0.02).abs() < 1e-9);
        assert!((s.boot.pet_late_s - 0.004).abs() < 1e-9);
        // Early pets (a timer that fired before its due time) count as 0.
        assert_eq!(s.pet(5.0, 4.9), None);
        assert!((s.boot.pet_late_s - 0.004).abs() < 1e-9);
        assert!((s.boot.longest_s() - 0.02).abs() < 1e-9);
    }

    #[test]
    fn stalls_over_the_threshold_are_reported() {
        let mut s = Stalls::new(threshold(Some(10)));
        assert_eq!(s.handler(Kind::Stage, 10.0, 13.0), Some(Stall::Handler { kind: Kind::Stage, s: 3.0 }));
        assert_eq!(s.pet(13.0, 16.0), Some(Stall::Pet { late_s: 3.0 }));
        assert_eq!(s.handler(Kind::Stage, 20.0, 22.4), None);
    }

    #[test]
    fn a_mark_starts_a_new_span_but_boot_keeps_everything() {
        let mut s = Stalls::new(2.5);
        s.handler(Kind::Tick, 0.0, 0.5);
        s.mark();
        s.handler(Kind::Control, 1.0, 1.01);
        assert_eq!(s.marked.handler, Kind::Control);
        assert!((s.marked.handler_s - 0.01).abs() < 1e-9);
        assert_eq!(s.boot.handler, Kind::Tick);
    }

    #[test]
    fn recent_covers_the_last_bucket_at_least() {
        let mut s = Stalls::new(2.5);
        s.handler(Kind::Tick, 100.0, 100.3);
        assert_eq!(s.recent(105.0).handler, Kind::Tick);
        // Next bucket: the previous one still counts.
        s.handler(Kind::Output, 112.0, 112.01);
        let r = s.recent(115.0);
        assert_eq!(r.handler, Kind::Tick);
        // Two buckets on: only the newer one.
        s.handler(Kind::Notify, 121.0, 121.002);
        let r = s.recent(121.5);
        assert_eq!(r.handler, Kind::Output);
        // Nothing for a long time: nothing recent.
        assert_eq!(s.recent(200.0), Worst::default());
        s.handler(Kind::Pet, 300.0, 300.001);
        assert_eq!(s.recent(300.5).handler, Kind::Pet);
        assert_eq!(s.boot.handler, Kind::Tick);
    }
}
