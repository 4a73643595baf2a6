//! Wire framing: a 4-byte little-endian length, then that many bytes of
//! postcard (the frames of the control socket),
//! and the strict body decoding the stager's report stream shares.
//!
//! It only turns bytes into messages and back: it must not read or write a
//! socket, and it must not accept a frame larger than its caller's bound
//! ([`body_len`]) or a body with bytes after the message ([`decode`]).

use serde::{Deserialize, Serialize};

/// Why a frame was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The length prefix is incomplete.
    Short,
    /// The announced body is larger than allowed.
    TooLarge { len: usize, max: usize },
    /// The body is not a valid message.
    Decode,
    /// The body has bytes after the message.
    Trailing,
    /// The message does not fit a frame.
    Encode,
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FrameError::Short => write!(f, "incomplete frame"),
            FrameError::TooLarge { len, max } => {
                write!(f, "frame of {len} bytes is larger than {max}")
            }
            FrameError::Decode => write!(f, "malformed message"),
            FrameError::Trailing => write!(f, "bytes after the message"),
            FrameError::Encode => write!(f, "message too large to send"),
        }
    }
}

/// The body length a frame announces, checked against `max`.
pub fn body_len(prefix: &[u8], max: usize) -> Result<usize, FrameError> {
    let b: [u8; 4] = prefix.get(..4).and_then(|s| s.try_into().ok()).ok_or(FrameError::Short)?;
    let len = u32::from_le_bytes(b) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    Ok(len)
}

/// Decode a frame body, refusing trailing bytes.
pub fn decode<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, FrameError> {
    let (v, rest) = postcard::take_from_bytes(body).map_err(|_| FrameError::Decode)?;
    if !rest.is_empty() {
        return Err(FrameError::Trailing);
    }
    Ok(v)
}

/// A whole frame (prefix and body) for `msg`, at most `max` body bytes.
pub fn encode<T: Serialize>(msg: &T, max: usize) -> Result<Vec<u8>, FrameError> {
    let body = postcard::to_allocvec(msg).map_err(|_| FrameError::Encode)?;
    if body.len() > max {
        return Err(FrameError::Encode);
    }
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}
