//! The console's bounded byte ring (pure: no system calls, unit-tested).
//!
//! It must not cut a line: a line that does not fit is dropped whole and
//! counted.
//!
//! Whole lines go in; bytes come out in the order the console takes them,
//! possibly a part of a line at a time. A line that does not fit is dropped
//! whole and counted, never cut. Once full, the ring keeps dropping every
//! line until at least half of it is free again, so a slow console shows
//! one gap followed by the report of how many lines it lost, rather than a
//! line here and there between losses. The caller writes that report
//! ([`Ring::resume`]) before anything else once the ring says so.

/// The bytes kept for a console that is not keeping up.
pub struct Ring<const N: usize> {
    buf: [u8; N],
    /// Index of the oldest byte.
    head: usize,
    /// Bytes held.
    len: usize,
    /// Lines dropped since the last report (dropping while non-zero).
    dropped: u64,
}

/// What [`Ring::push`] did with a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// Kept, to be written.
    Kept,
    /// Dropped and counted.
    Dropped,
    /// Lines were lost and there is room again: the caller reports
    /// [`Ring::resume`]'s count first, then pushes this line again.
    Report,
}

impl<const N: usize> Default for Ring<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Ring<N> {
    pub const fn new() -> Self {
        Ring { buf: [0; N], head: 0, len: 0, dropped: 0 }
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn free(&self) -> usize {
        N - self.len
    }

    /// Whether lines were lost and the ring is free enough to say so.
    pub fn should_report(&self) -> bool {
        self.dropped > 0 && self.free() >= N / 2
    }

    /// Keep `line` (a whole line, newline included) if it fits.
    pub fn push(&mut self, line: &[u8]) -> Push {
        if self.dropped > 0 {
            if self.should_report() {
                return Push::Report;
            }
            self.dropped += 1;
            return Push::Dropped;
        }
        if line.len() > self.free() {
            self.dropped = 1;
            return Push::Dropped;
        }
        self.copy_in(line);
        Push::Kept
    }

    /// End a loss: the count to report (0 when nothing was lost). The
    /// report line itself is pushed next, then lines flow again.
    pub fn resume(&mut self) -> u64 {
        core::mem::take(&mut self.dropped)
    }

    fn copy_in(&mut self, bytes: &[u8]) {
        for &b in bytes {
            let at = (self.head + self.len) % N;
            if let Some(slot) = self.buf.get_mut(at) {
                *slot = b;
            }
            self.len += 1;
        }
    }

    /// The oldest bytes held that are contiguous in memory (empty when the
    /// ring is).
    pub fn front(&self) -> &[u8] {
        let end = (self.head + self.len).min(N);
        self.buf.get(self.head..end).unwrap_or(&[])
    }

    /// `n` bytes of [`Ring::front`] were written.
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.len);
        self.len -= n;
        self.head = if self.len == 0 { 0 } else { (self.head + n) % N };
    }

    /// Throw away everything held (the console failed for good); the lines
    /// that were held count as dropped. A cut line counts as one.
    pub fn discard(&mut self) -> u64 {
        let mut lines = 0u64;
        let mut i = 0;
        while i < self.len {
            if self.buf.get((self.head + i) % N) == Some(&b'\n') {
                lines += 1;
            }
            i += 1;
        }
        self.head = 0;
        self.len = 0;
        self.dropped += lines;
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain<const N: usize>(r: &mut Ring<N>, max_per_write: usize) -> Vec<u8> {
        let mut out = Vec::new();
        while !r.is_empty() {
            let take = r.front().len().min(max_per_write);
            out.extend_from_slice(&r.front()[..take]);
            r.consume(take);
        }
        out
    }

    #[test]
    fn lines_come_out_in_order_across_the_wrap_and_partial_writes() {
        let mut r: Ring<16> = Ring::new();
        assert_eq!(r.push(b"abcdefghij\n"), Push::Kept);
        // The console takes 3 bytes, then nothing: the line's rest is kept.
        let took = 3;
        assert_eq!(&r.front()[..took], b"abc");
        r.consume(took);
        assert_eq!(r.len(), 8);
        // Wraps around the end of the buffer.
        assert_eq!(r.push(b"12345\n"), Push::Kept);
        assert_eq!(r.len(), 14);
        assert_eq!(r.front(), &b"defghij\n12345"[..]);
        assert_eq!(drain(&mut r, 2), b"defghij\n12345\n");
        assert!(r.is_empty() && r.front().is_empty());
    }

    #[test]
    fn a_full_ring_drops_whole_lines_counts_them_and_reports_at_half_free() {
        let mut r: Ring<32> = Ring::new();
        assert_eq!(r.push(b"0123456789\n"), Push::Kept);
        assert_eq!(r.push(b"0123456789\n"), Push::Kept);
        // 22 held, 10 free: an 11-byte line does not fit and is not cut.
        assert_eq!(r.push(b"0123456789\n"), Push::Dropped);
        assert_eq!(r.len(), 22);
        // Dropping goes on even for a line that would fit now...
        assert_eq!(r.push(b"x\n"), Push::Dropped);
        r.consume(5);
        // ...until half the ring is free (17 held, 15 free: not yet).
        assert_eq!(r.push(b"y\n"), Push::Dropped);
        assert!(!r.should_report());
        r.consume(2);
        // 15 held, 17 free >= 16: report first.
        assert!(r.should_report());
        assert_eq!(r.push(b"z\n"), Push::Report);
        assert_eq!(r.resume(), 3);
        assert_eq!(r.resume(), 0);
        assert_eq!(r.push(b"lost 3\n"), Push::Kept);
        assert_eq!(r.push(b"z\n"), Push::Kept);
        let out = drain(&mut r, usize::MAX);
        assert_eq!(out, b"789\n0123456789\nlost 3\nz\n");
    }

    #[test]
    fn discard_counts_held_lines() {
        let mut r: Ring<64> = Ring::new();
        for _ in 0..3 {
            assert_eq!(r.push(b"abc\n"), Push::Kept);
        }
        r.consume(2);
        assert_eq!(r.discard(), 3);
        assert!(r.is_empty());
        assert!(r.should_report());
        assert_eq!(r.resume(), 3);
    }
}
