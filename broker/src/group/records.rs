//! The `__consumer_offsets` record formats, as Kafka writes them, so the topic
//! reads the same to tools that know Kafka's layout.
//!
//! Offset commit: key v1 (group, topic, partition), value v3 (offset, leader
//! epoch, metadata, commit timestamp). Group metadata: key v2 (group), value v3
//! (protocol type, generation, protocol, leader, state timestamp, members).
//! A null value is a tombstone.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// A decoded `__consumer_offsets` key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Key {
    Offset { group: String, topic: String, partition: i32 },
    Group { group: String },
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OffsetValue {
    pub(crate) offset: i64,
    pub(crate) leader_epoch: i32,
    pub(crate) metadata: String,
    pub(crate) commit_timestamp: i64,
}

/// The parts of a group that survive a restart: members rejoin after one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupValue {
    pub(crate) protocol_type: String,
    pub(crate) generation: i32,
    pub(crate) protocol: Option<String>,
    pub(crate) leader: Option<String>,
    pub(crate) state_timestamp: i64,
}

fn put_str(b: &mut BytesMut, s: &str) {
    b.put_i16(s.len() as i16);
    b.put_slice(s.as_bytes());
}

fn put_nullable(b: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(b, s),
        None => b.put_i16(-1),
    }
}

fn get_nullable(b: &mut Bytes) -> Option<Option<String>> {
    if b.remaining() < 2 {
        return None;
    }
    let n = b.get_i16();
    if n == -1 {
        return Some(None);
    }
    let n = usize::try_from(n).ok()?;
    if b.remaining() < n {
        return None;
    }
    String::from_utf8(b.split_to(n).to_vec()).ok().map(Some)
}

fn get_str(b: &mut Bytes) -> Option<String> {
    get_nullable(b).flatten()
}

pub(crate) fn encode_key(key: &Key) -> Bytes {
    let mut b = BytesMut::new();
    match key {
        Key::Offset { group, topic, partition } => {
            b.put_i16(1);
            put_str(&mut b, group);
            put_str(&mut b, topic);
            b.put_i32(*partition);
        }
        Key::Group { group } => {
            b.put_i16(2);
            put_str(&mut b, group);
        }
    }
    b.freeze()
}

pub(crate) fn decode_key(mut b: Bytes) -> Option<Key> {
    if b.remaining() < 2 {
        return None;
    }
    match b.get_i16() {
        0 | 1 => {
            let group = get_str(&mut b)?;
            let topic = get_str(&mut b)?;
            if b.remaining() < 4 {
                return None;
            }
            Some(Key::Offset { group, topic, partition: b.get_i32() })
        }
        2 => Some(Key::Group { group: get_str(&mut b)? }),
        _ => None,
    }
}

pub(crate) fn encode_offset(v: &OffsetValue) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(3);
    b.put_i64(v.offset);
    b.put_i32(v.leader_epoch);
    put_str(&mut b, &v.metadata);
    b.put_i64(v.commit_timestamp);
    b.freeze()
}

pub(crate) fn decode_offset(mut b: Bytes) -> Option<OffsetValue> {
    if b.remaining() < 2 {
        return None;
    }
    let version = b.get_i16();
    if !(0..=4).contains(&version) || b.remaining() < 8 {
        return None;
    }
    let offset = b.get_i64();
    let leader_epoch = if version >= 3 {
        if b.remaining() < 4 {
            return None;
        }
        b.get_i32()
    } else {
        -1
    };
    let metadata = get_nullable(&mut b)?.unwrap_or_default();
    if b.remaining() < 8 {
        return None;
    }
    let commit_timestamp = b.get_i64();
    Some(OffsetValue { offset, leader_epoch, metadata, commit_timestamp })
}

/// Group metadata value v3 with an empty member list: membership is rebuilt by
/// rejoining, so only what must outlive a restart (the generation) is kept.
pub(crate) fn encode_group(v: &GroupValue) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(3);
    put_str(&mut b, &v.protocol_type);
    b.put_i32(v.generation);
    put_nullable(&mut b, v.protocol.as_deref());
    put_nullable(&mut b, v.leader.as_deref());
    b.put_i64(v.state_timestamp);
    b.put_i32(0);
    b.freeze()
}

pub(crate) fn decode_group(mut b: Bytes) -> Option<GroupValue> {
    if b.remaining() < 2 {
        return None;
    }
    let version = b.get_i16();
    if !(0..=3).contains(&version) {
        return None;
    }
    let protocol_type = get_str(&mut b)?;
    if b.remaining() < 4 {
        return None;
    }
    let generation = b.get_i32();
    let protocol = get_nullable(&mut b)?;
    let leader = get_nullable(&mut b)?;
    let state_timestamp = if version >= 2 && b.remaining() >= 8 { b.get_i64() } else { -1 };
    Some(GroupValue { protocol_type, generation, protocol, leader, state_timestamp })
}

/// Java's `String.hashCode`, which Kafka uses to place a group on a partition.
pub(crate) fn java_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
}

/// Kafka's `Utils.abs(groupId.hashCode) % partitions`.
pub(crate) fn partition_for(group: &str, partitions: i32) -> i32 {
    let h = java_hash(group);
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trips() {
        let k = Key::Offset { group: "g".into(), topic: "t".into(), partition: 3 };
        assert_eq!(decode_key(encode_key(&k)), Some(k));
        let k = Key::Group { group: "g".into() };
        assert_eq!(decode_key(encode_key(&k)), Some(k));
        let v = OffsetValue { offset: 42, leader_epoch: 1, metadata: "m".into(), commit_timestamp: 7 };
        assert_eq!(decode_offset(encode_offset(&v)), Some(v));
        let g = GroupValue {
            protocol_type: "consumer".into(),
            generation: 5,
            protocol: Some("range".into()),
            leader: None,
            state_timestamp: 9,
        };
        assert_eq!(decode_group(encode_group(&g)), Some(g));
    }

    #[test]
    fn placement_matches_kafka() {
        // Java: "my-group".hashCode() == -1906497762; Utils.abs → 1906497762 % 50 == 12
        assert_eq!(java_hash("my-group"), -1_906_497_762);
        assert_eq!(partition_for("my-group", 50), 12);
        assert_eq!(partition_for("", 50), 0);
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let b = Bytes::from(bytes);
            let _ = decode_key(b.clone());
            let _ = decode_offset(b.clone());
            let _ = decode_group(b);
        }
    }
}
