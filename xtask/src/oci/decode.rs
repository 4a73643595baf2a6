//! Readers for a layer blob: zstd of one or more frames decoded, and the
//! uncompressed tar hashed as it is read (for the check against the
//! config's `diff_ids`).

use sha2::{Digest, Sha256};
use std::io::{BufRead, Read};

/// A zstd stream of one or more frames, decoded.
pub struct ZstdFrames<R: BufRead> {
    frame: Option<ruzstd::decoding::StreamingDecoder<R, ruzstd::decoding::FrameDecoder>>,
}

impl<R: BufRead> ZstdFrames<R> {
    pub fn new(r: R) -> Result<Self, String> {
        let frame = ruzstd::decoding::StreamingDecoder::new(r).map_err(|e| format!("zstd: {e}"))?;
        Ok(ZstdFrames { frame: Some(frame) })
    }
}

impl<R: BufRead> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let Some(frame) = self.frame.as_mut() else { return Ok(0) };
            let n = frame.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            // This frame is done: another may follow.
            let Some(frame) = self.frame.take() else { return Ok(0) };
            let mut rest = frame.into_inner();
            if rest.fill_buf()?.is_empty() {
                return Ok(0);
            }
            let next = ruzstd::decoding::StreamingDecoder::new(rest).map_err(|e| std::io::Error::other(format!("zstd: {e}")))?;
            self.frame = Some(next);
        }
    }
}

/// A reader that hashes what passes through it (a layer's uncompressed tar).
pub struct Hashing<R> {
    pub inner: R,
    pub hash: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(buf.get(..n).unwrap_or_default());
        Ok(n)
    }
}
