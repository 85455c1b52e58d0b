//! Length-prefixed frames: a big-endian i32 size followed by that many bytes.

use bytes::{Buf, Bytes, BytesMut};
use thiserror::Error;

/// Kafka's default `socket.request.max.bytes`.
pub const DEFAULT_MAX_FRAME: usize = 100 * 1024 * 1024;

/// A frame that cannot be accepted; the connection must be closed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    #[error("frame size {size} exceeds socket.request.max.bytes {max}")]
    TooLarge { size: usize, max: usize },
    #[error("negative frame size {0}")]
    Negative(i32),
}

/// Takes one complete frame's payload off the front of `buf`, if one is there.
///
/// Returns `Ok(None)` when more bytes are needed. The size is checked as soon as
/// its four bytes arrive, so an oversized frame is refused before it is buffered.
pub fn take_frame(buf: &mut BytesMut, max: usize) -> Result<Option<Bytes>, FrameError> {
    let Some(size) = peek_size(buf, max)? else {
        return Ok(None);
    };
    if buf.len() < 4 + size {
        // Grow in steps: a peer that declares a large frame but sends nothing
        // must not make the broker hold the whole size in memory up front.
        buf.reserve((4 + size - buf.len()).min(1 << 20));
        return Ok(None);
    }
    buf.advance(4);
    Ok(Some(buf.split_to(size).freeze()))
}

/// The declared size of the frame at the front of `buf`, once its prefix is complete.
pub fn peek_size(buf: &[u8], max: usize) -> Result<Option<usize>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if size < 0 {
        return Err(FrameError::Negative(size));
    }
    let size = size as usize;
    if size > max {
        return Err(FrameError::TooLarge { size, max });
    }
    Ok(Some(size))
}

/// Prefixes `payload` with its size.
pub fn frame(payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(4 + payload.len());
    out.extend_from_slice(&(payload.len() as i32).to_be_bytes());
    out.extend_from_slice(payload);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn partial_then_complete() {
        let mut b = BytesMut::new();
        b.extend_from_slice(&[0, 0, 0, 3, 1]);
        assert_eq!(take_frame(&mut b, 10), Ok(None));
        b.extend_from_slice(&[2, 3, 9]);
        assert_eq!(take_frame(&mut b, 10), Ok(Some(Bytes::from_static(&[1, 2, 3]))));
        assert_eq!(&b[..], &[9]);
    }

    #[test]
    fn oversized_and_negative_refused_from_prefix_alone() {
        let mut b = BytesMut::from(&[0x7f, 0xff, 0xff, 0xff][..]);
        assert!(matches!(take_frame(&mut b, 100), Err(FrameError::TooLarge { .. })));
        let mut b = BytesMut::from(&[0xff, 0xff, 0xff, 0xfe][..]);
        assert_eq!(take_frame(&mut b, 100), Err(FrameError::Negative(-2)));
    }

    proptest! {
        #[test]
        fn frames_survive_any_split(payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..50), 1..8), cut in 0usize..400) {
            let mut wire = Vec::new();
            for p in &payloads { wire.extend_from_slice(&frame(p)); }
            let cut = cut.min(wire.len());
            let mut b = BytesMut::from(&wire[..cut]);
            let mut got = Vec::new();
            while let Some(f) = take_frame(&mut b, 1000).expect("valid") { got.push(f.to_vec()); }
            b.extend_from_slice(&wire[cut..]);
            while let Some(f) = take_frame(&mut b, 1000).expect("valid") { got.push(f.to_vec()); }
            prop_assert_eq!(got, payloads);
        }
    }
}
