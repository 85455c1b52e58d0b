//! Record payloads: the first 8 bytes carry the send time in nanoseconds since the
//! process's clock origin, so a consumer in the same process measures end-to-end
//! latency on a monotonic clock.

use std::sync::OnceLock;
use std::time::Instant;

static ORIGIN: OnceLock<Instant> = OnceLock::new();

/// The clock origin; call once early so every thread shares it.
pub fn origin() -> Instant {
    *ORIGIN.get_or_init(Instant::now)
}

/// Nanoseconds since [`origin`].
pub fn now_ns() -> u64 {
    origin().elapsed().as_nanos() as u64
}

/// Smallest record the payload format allows.
pub const MIN_SIZE: usize = 16;

/// A reusable payload buffer of `size` bytes (at least [`MIN_SIZE`]).
pub fn buffer(size: usize, producer: u32) -> Vec<u8> {
    let mut b = vec![b'x'; size.max(MIN_SIZE)];
    b[8..12].copy_from_slice(&producer.to_be_bytes());
    b
}

/// Stamps the current time into `buf` and returns it.
pub fn stamp(buf: &mut [u8]) -> u64 {
    let t = now_ns();
    buf[..8].copy_from_slice(&t.to_be_bytes());
    t
}

/// The send time stamped into a payload, if it is long enough to carry one.
pub fn sent_ns(payload: &[u8]) -> Option<u64> {
    let b: [u8; 8] = payload.get(..8)?.try_into().ok()?;
    Some(u64::from_be_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_round_trips() {
        let mut b = buffer(100, 7);
        let t = stamp(&mut b);
        assert_eq!(sent_ns(&b), Some(t));
        assert_eq!(b.len(), 100);
        assert_eq!(sent_ns(&[1, 2]), None);
    }
}
