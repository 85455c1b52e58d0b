//! The `__transaction_state` record formats, as Kafka writes them: key v0
//! (transactional id), value v0 (producer id and epoch, timeout, state, the
//! partitions of the transaction, last update and start times) and, for a
//! transactions v2 id, the flexible value v1, whose tagged fields add the previous
//! and next producer ids and the client's transaction version. A null value is a
//! tombstone (an expired transactional id).

use std::collections::BTreeSet;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::state::{TxnMeta, TxnState};

/// An int16-length string, cut at i16::MAX bytes (also the share-group state keys').
pub(crate) fn put_str(b: &mut BytesMut, s: &str) {
    b.put_i16(i16::try_from(s.len()).unwrap_or(i16::MAX));
    b.put_slice(&s.as_bytes()[..s.len().min(i16::MAX as usize)]);
}

/// An int16-length string; None when cut short, negative or not UTF-8.
pub(crate) fn get_str(b: &mut Bytes) -> Option<String> {
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

/// Kafka's unsigned varint (flexible versions' lengths and tags).
fn put_uvarint(b: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        b.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    b.put_u8(v as u8);
}

fn get_uvarint(b: &mut Bytes) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..35).step_by(7) {
        if !b.has_remaining() {
            return None;
        }
        let byte = b.get_u8();
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// A compact (flexible) length: the count plus one; None for null (0).
fn get_compact_len(b: &mut Bytes) -> Option<Option<usize>> {
    let n = get_uvarint(b)?;
    Some(if n == 0 { None } else { Some(usize::try_from(n - 1).ok()?) })
}

fn get_compact_str(b: &mut Bytes) -> Option<String> {
    let n = get_compact_len(b)??;
    if b.remaining() < n {
        return None;
    }
    String::from_utf8(b.split_to(n).to_vec()).ok()
}

/// Partitions grouped by topic, as Kafka's `TransactionLog.valueToBytes`.
fn by_topic(m: &TxnMeta) -> Vec<(&str, Vec<i32>)> {
    let mut topics: Vec<(&str, Vec<i32>)> = Vec::new();
    for (t, p) in &m.partitions {
        match topics.last_mut() {
            Some((name, ps)) if *name == t.as_str() => ps.push(*p),
            _ => topics.push((t.as_str(), vec![*p])),
        }
    }
    topics
}

/// The value Kafka writes for `m`: TransactionLogValue v0, or v1 where
/// transactions v2 need its tagged fields.
pub(crate) fn encode_value(m: &TxnMeta) -> Bytes {
    let flexible = m.tv2 || m.next_producer_id >= 0;
    let mut b = BytesMut::with_capacity(64);
    b.put_i16(if flexible { 1 } else { 0 });
    b.put_i64(m.producer_id);
    b.put_i16(m.producer_epoch);
    b.put_i32(m.timeout_ms);
    b.put_i8(m.state.code());
    let topics = by_topic(m);
    if flexible {
        put_uvarint(&mut b, topics.len() as u64 + 1);
        for (t, ps) in topics {
            put_uvarint(&mut b, t.len() as u64 + 1);
            b.put_slice(t.as_bytes());
            put_uvarint(&mut b, ps.len() as u64 + 1);
            for p in ps {
                b.put_i32(p);
            }
            put_uvarint(&mut b, 0); // no tagged fields
        }
    } else {
        b.put_i32(i32::try_from(topics.len()).unwrap_or(0));
        for (t, ps) in topics {
            put_str(&mut b, t);
            b.put_i32(i32::try_from(ps.len()).unwrap_or(0));
            for p in ps {
                b.put_i32(p);
            }
        }
    }
    b.put_i64(m.update_ms);
    b.put_i64(m.start_ms);
    if flexible {
        let mut tags: Vec<(u64, Vec<u8>)> = Vec::new();
        if m.last_producer_id >= 0 {
            tags.push((0, m.last_producer_id.to_be_bytes().to_vec()));
        }
        if m.next_producer_id >= 0 {
            tags.push((1, m.next_producer_id.to_be_bytes().to_vec()));
        }
        if m.tv2 {
            tags.push((2, 2i16.to_be_bytes().to_vec()));
        }
        put_uvarint(&mut b, tags.len() as u64);
        for (tag, data) in tags {
            put_uvarint(&mut b, tag);
            put_uvarint(&mut b, data.len() as u64);
            b.put_slice(&data);
        }
    }
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
    /// v1's tagged fields (-1, -1 and 0 where absent).
    pub(crate) previous_producer_id: i64,
    pub(crate) next_producer_id: i64,
    pub(crate) client_transaction_version: i16,
}

pub(crate) fn decode_value(mut b: Bytes) -> Option<Value> {
    if b.remaining() < 2 + 8 + 2 + 4 + 1 + 1 {
        return None;
    }
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
        if b.remaining() < 4 {
            return None;
        }
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
        // A null array of partitions is none.
        let topics = get_compact_len(&mut b)?.unwrap_or(0);
        for _ in 0..topics {
            let t = get_compact_str(&mut b)?;
            let n = get_compact_len(&mut b)??;
            if b.remaining() < n.checked_mul(4)? {
                return None;
            }
            for _ in 0..n {
                partitions.insert((t.clone(), b.get_i32()));
            }
            skip_tags(&mut b)?;
        }
    }
    if b.remaining() < 16 {
        return None;
    }
    let update_ms = b.get_i64();
    let start_ms = b.get_i64();
    let mut v = Value {
        producer_id,
        producer_epoch,
        timeout_ms,
        state,
        partitions,
        update_ms,
        start_ms,
        previous_producer_id: -1,
        next_producer_id: -1,
        client_transaction_version: 0,
    };
    if version >= 1 {
        let count = get_uvarint(&mut b)?;
        for _ in 0..count {
            let tag = get_uvarint(&mut b)?;
            let size = usize::try_from(get_uvarint(&mut b)?).ok()?;
            if b.remaining() < size {
                return None;
            }
            let mut data = b.split_to(size);
            match (tag, size) {
                (0, 8) => v.previous_producer_id = data.get_i64(),
                (1, 8) => v.next_producer_id = data.get_i64(),
                (2, 2) => v.client_transaction_version = data.get_i16(),
                (0..=2, _) => return None,
                _ => {} // a tag of a later version: skipped
            }
        }
    }
    Some(v)
}

/// Skips a structure's tagged fields.
fn skip_tags(b: &mut Bytes) -> Option<()> {
    let count = get_uvarint(b)?;
    for _ in 0..count {
        get_uvarint(b)?;
        let size = usize::try_from(get_uvarint(b)?).ok()?;
        if b.remaining() < size {
            return None;
        }
        b.advance(size);
    }
    Some(())
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

    #[test]
    fn a_transactions_v2_value_is_the_flexible_v1_and_round_trips() {
        let mut m = TxnMeta::new("tx", 42, 1_000, 60_000);
        m.producer_epoch = i16::MAX;
        m.state = TxnState::PrepareCommit;
        m.partitions = [("a".to_string(), 0), ("a".to_string(), 2), ("b".to_string(), 1)].into_iter().collect();
        m.start_ms = 900;
        m.tv2 = true;
        m.next_producer_id = 43;
        m.last_producer_id = 41;
        let bytes = encode_value(&m);
        assert_eq!(&bytes[..2], &[0, 1], "version 1");
        let v = decode_value(bytes.clone()).expect("decodes");
        assert_eq!((v.producer_id, v.producer_epoch, v.timeout_ms, v.state), (42, i16::MAX, 60_000, TxnState::PrepareCommit));
        assert_eq!((v.partitions, v.update_ms, v.start_ms), (m.partitions.clone(), 1_000, 900));
        assert_eq!((v.previous_producer_id, v.next_producer_id, v.client_transaction_version), (41, 43, 2));
        // Every cut short is refused, never misread.
        for n in 0..bytes.len() {
            assert!(decode_value(bytes.slice(..n)).is_none(), "cut at {n}");
        }
        // A tag of a later version is skipped.
        let mut longer = BytesMut::from(&bytes[..bytes.len()]);
        let tags_at = longer.len() - (2 + 8) - (2 + 8) - (2 + 2) - 1;
        longer[tags_at] = 4;
        longer.put_slice(&[9, 1, 0xab]);
        assert_eq!(decode_value(longer.freeze()).map(|v| v.next_producer_id), Some(43));
        // Without transactions v2, v0 as before.
        m.tv2 = false;
        m.next_producer_id = -1;
        assert_eq!(&encode_value(&m)[..2], &[0, 0]);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_value(Bytes::from(bytes.clone()));
            let _ = decode_key(Bytes::from(bytes));
        }
    }
}
