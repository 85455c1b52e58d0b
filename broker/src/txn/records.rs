//! The `__transaction_state` record formats, as Kafka writes them: key v0
//! (transactional id), value v0 (producer id and epoch, timeout, state, the
//! partitions of the transaction, last update and start times). A null value is a
//! tombstone (an expired transactional id).

use std::collections::BTreeSet;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::state::{TxnMeta, TxnState};

fn put_str(b: &mut BytesMut, s: &str) {
    b.put_i16(i16::try_from(s.len()).unwrap_or(i16::MAX));
    b.put_slice(&s.as_bytes()[..s.len().min(i16::MAX as usize)]);
}

fn get_str(b: &mut Bytes) -> Option<String> {
    if b.remaining() < 2 {
        return None;
    }
    let n = usize::try_from(b.get_i16()).ok()?;
    if b.remaining() < n {
        return None;
    }
    String::from_utf8(b.split_to(n).to_vec()).ok()
}

pub(crate) fn encode_key(transactional_id: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(4 + transactional_id.len());
    b.put_i16(0);
    put_str(&mut b, transactional_id);
    b.freeze()
}

pub(crate) fn decode_key(mut b: Bytes) -> Option<String> {
    if b.remaining() < 2 || b.get_i16() != 0 {
        return None;
    }
    get_str(&mut b)
}

/// The value Kafka writes for `m` (TransactionLogValue v0).
pub(crate) fn encode_value(m: &TxnMeta) -> Bytes {
    let mut b = BytesMut::with_capacity(64);
    b.put_i16(0);
    b.put_i64(m.producer_id);
    b.put_i16(m.producer_epoch);
    b.put_i32(m.timeout_ms);
    b.put_i8(m.state.code());
    // Partitions grouped by topic, as Kafka's `TransactionLog.valueToBytes`.
    let mut topics: Vec<(&str, Vec<i32>)> = Vec::new();
    for (t, p) in &m.partitions {
        match topics.last_mut() {
            Some((name, ps)) if *name == t.as_str() => ps.push(*p),
            _ => topics.push((t.as_str(), vec![*p])),
        }
    }
    b.put_i32(i32::try_from(topics.len()).unwrap_or(0));
    for (t, ps) in topics {
        put_str(&mut b, t);
        b.put_i32(i32::try_from(ps.len()).unwrap_or(0));
        for p in ps {
            b.put_i32(p);
        }
    }
    b.put_i64(m.update_ms);
    b.put_i64(m.start_ms);
    b.freeze()
}

/// What a value record holds; None if it is not one Karst can read.
pub(crate) struct Value {
    pub(crate) producer_id: i64,
    pub(crate) producer_epoch: i16,
    pub(crate) timeout_ms: i32,
    pub(crate) state: TxnState,
    pub(crate) partitions: BTreeSet<(String, i32)>,
    pub(crate) update_ms: i64,
    pub(crate) start_ms: i64,
}

pub(crate) fn decode_value(mut b: Bytes) -> Option<Value> {
    if b.remaining() < 2 + 8 + 2 + 4 + 1 + 4 {
        return None;
    }
    // v1 adds tagged fields after these; the fields read here are the same.
    let version = b.get_i16();
    if !(0..=1).contains(&version) {
        return None;
    }
    let producer_id = b.get_i64();
    let producer_epoch = b.get_i16();
    let timeout_ms = b.get_i32();
    let state = TxnState::from_code(b.get_i8())?;
    let mut partitions = BTreeSet::new();
    if version == 0 {
        let topics = b.get_i32();
        for _ in 0..topics.max(0) {
            let t = get_str(&mut b)?;
            if b.remaining() < 4 {
                return None;
            }
            let n = b.get_i32();
            if n < 0 || b.remaining() < 4 * n as usize {
                return None;
            }
            for _ in 0..n {
                partitions.insert((t.clone(), b.get_i32()));
            }
        }
    } else {
        return None; // flexible v1 values are not written by Karst
    }
    if b.remaining() < 16 {
        return None;
    }
    let update_ms = b.get_i64();
    let start_ms = b.get_i64();
    Some(Value { producer_id, producer_epoch, timeout_ms, state, partitions, update_ms, start_ms })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trips_and_groups_partitions_by_topic() {
        let mut m = TxnMeta::new("tx", 42, 1_000, 60_000);
        m.producer_epoch = 3;
        m.state = TxnState::Ongoing;
        m.partitions = [("a".to_string(), 0), ("a".to_string(), 2), ("b".to_string(), 1)].into_iter().collect();
        m.start_ms = 900;
        let bytes = encode_value(&m);
        // version, pid, epoch, timeout, state, 2 topics: "a" [0, 2], "b" [1], times.
        assert_eq!(bytes.len(), 2 + 8 + 2 + 4 + 1 + 4 + (2 + 1 + 4 + 8) + (2 + 1 + 4 + 4) + 16);
        let v = decode_value(bytes).expect("decodes");
        assert_eq!((v.producer_id, v.producer_epoch, v.timeout_ms, v.state), (42, 3, 60_000, TxnState::Ongoing));
        assert_eq!((v.partitions, v.update_ms, v.start_ms), (m.partitions, 1_000, 900));
        assert_eq!(decode_key(encode_key("tx")).as_deref(), Some("tx"));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_value(Bytes::from(bytes.clone()));
            let _ = decode_key(Bytes::from(bytes));
        }
    }
}
