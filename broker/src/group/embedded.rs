//! Kafka's embedded consumer protocol (`ConsumerProtocolSubscription` and
//! `ConsumerProtocolAssignment`, versions 0–3): what classic members put in
//! JoinGroup metadata and SyncGroup assignments. A consumer group serving classic
//! members reads their subscriptions and writes their assignments in it.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// A classic member's subscription.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Subscription {
    pub(crate) version: i16,
    pub(crate) topics: Vec<String>,
    /// v1+: partitions the member owns (cooperative protocols keep them across rebalances).
    pub(crate) owned: Vec<(String, Vec<i32>)>,
    /// v3+.
    pub(crate) rack_id: Option<String>,
}

fn get_string(b: &mut Bytes) -> Option<String> {
    if b.remaining() < 2 {
        return None;
    }
    let len = usize::try_from(b.get_i16()).ok()?;
    (b.remaining() >= len).then(|| String::from_utf8(b.split_to(len).to_vec()).ok()).flatten()
}

fn get_count(b: &mut Bytes, min_item: usize) -> Option<usize> {
    if b.remaining() < 4 {
        return None;
    }
    let n = usize::try_from(b.get_i32()).ok()?;
    // A count no buffer of this size can hold is corrupt, not a reason to allocate.
    (n.saturating_mul(min_item) <= b.remaining()).then_some(n)
}

fn get_partitions(b: &mut Bytes) -> Option<Vec<i32>> {
    let n = get_count(b, 4)?;
    Some((0..n).map(|_| b.get_i32()).collect())
}

fn skip_bytes(b: &mut Bytes) -> Option<()> {
    if b.remaining() < 4 {
        return None;
    }
    match b.get_i32() {
        n if n < 0 => Some(()),
        n => {
            let n = usize::try_from(n).ok()?;
            (b.remaining() >= n).then(|| b.advance(n))
        }
    }
}

/// Reads a subscription; None when the bytes are not one (a corrupt or foreign protocol).
pub(crate) fn decode_subscription(bytes: &Bytes) -> Option<Subscription> {
    let mut b = bytes.clone();
    if b.remaining() < 2 {
        return None;
    }
    let version = b.get_i16();
    if version < 0 {
        return None;
    }
    let n = get_count(&mut b, 2)?;
    let topics = (0..n).map(|_| get_string(&mut b)).collect::<Option<Vec<_>>>()?;
    skip_bytes(&mut b)?;
    let mut s = Subscription { version, topics, ..Default::default() };
    if version >= 1 && b.has_remaining() {
        let n = get_count(&mut b, 6)?;
        for _ in 0..n {
            let t = get_string(&mut b)?;
            s.owned.push((t, get_partitions(&mut b)?));
        }
    }
    if version >= 2 && b.remaining() >= 4 {
        let _generation = b.get_i32();
    }
    if version >= 3 && b.remaining() >= 2 {
        let len = b.get_i16();
        if len >= 0 {
            let len = len as usize;
            if b.remaining() < len {
                return None;
            }
            s.rack_id = String::from_utf8(b.split_to(len).to_vec()).ok();
        }
    }
    Some(s)
}

/// An assignment in `version` (capped at 3, the highest Kafka defines).
pub(crate) fn encode_assignment(version: i16, partitions: &[(String, Vec<i32>)]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(version.clamp(0, 3));
    b.put_i32(partitions.len() as i32);
    for (t, ps) in partitions {
        b.put_i16(t.len() as i16);
        b.put_slice(t.as_bytes());
        b.put_i32(ps.len() as i32);
        for p in ps {
            b.put_i32(*p);
        }
    }
    // No user data.
    b.put_i32(-1);
    b.freeze()
}

/// Reads an assignment: (topic, partitions); None when corrupt.
pub(crate) fn decode_assignment(bytes: &Bytes) -> Option<Vec<(String, Vec<i32>)>> {
    let mut b = bytes.clone();
    if b.remaining() < 2 {
        return None;
    }
    let _version = b.get_i16();
    let n = get_count(&mut b, 6)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = get_string(&mut b)?;
        out.push((t, get_partitions(&mut b)?));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn subscription(version: i16, topics: &[&str], owned: &[(&str, &[i32])]) -> Bytes {
        let mut b = BytesMut::new();
        b.put_i16(version);
        b.put_i32(topics.len() as i32);
        for t in topics {
            b.put_i16(t.len() as i16);
            b.put_slice(t.as_bytes());
        }
        b.put_i32(-1);
        if version >= 1 {
            b.put_i32(owned.len() as i32);
            for (t, ps) in owned {
                b.put_i16(t.len() as i16);
                b.put_slice(t.as_bytes());
                b.put_i32(ps.len() as i32);
                ps.iter().for_each(|p| b.put_i32(*p));
            }
        }
        if version >= 2 {
            b.put_i32(4);
        }
        if version >= 3 {
            b.put_i16(-1);
        }
        b.freeze()
    }

    #[test]
    fn reads_every_subscription_version() {
        for v in 0..=3 {
            let s = decode_subscription(&subscription(v, &["a", "b"], &[("a", &[0, 2])])).expect("decodes");
            assert_eq!(s.topics, vec!["a", "b"]);
            assert_eq!(s.owned.is_empty(), v == 0);
        }
    }

    #[test]
    fn assignments_round_trip() {
        let a = vec![("t".to_string(), vec![0, 3]), ("u".to_string(), vec![])];
        assert_eq!(decode_assignment(&encode_assignment(1, &a)), Some(a));
    }

    proptest! {
        #[test]
        fn garbage_is_refused_or_read_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let b = Bytes::from(bytes);
            let _ = decode_subscription(&b);
            let _ = decode_assignment(&b);
        }
    }
}
