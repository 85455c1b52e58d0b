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
    Offset {
        group: String,
        topic: String,
        partition: i32,
    },
    Group {
        group: String,
    },
    /// A KIP-848 consumer group (Karst's own key version: its value is the whole
    /// group, where Kafka splits it over several record types).
    Consumer {
        group: String,
    },
}

/// The key version of [`Key::Consumer`], far above the versions Kafka uses.
const CONSUMER_GROUP_KEY_VERSION: i16 = 1000;

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OffsetValue {
    pub(crate) offset: i64,
    pub(crate) leader_epoch: i32,
    pub(crate) metadata: String,
    pub(crate) commit_timestamp: i64,
}

/// A group as its record keeps it: what a new coordinator (after a restart or a
/// leadership change) carries on with, members included, as Kafka's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupValue {
    pub(crate) protocol_type: String,
    pub(crate) generation: i32,
    pub(crate) protocol: Option<String>,
    pub(crate) leader: Option<String>,
    pub(crate) state_timestamp: i64,
    pub(crate) members: Vec<MemberValue>,
}

/// A member in a group's record (Kafka's `MemberMetadata`): its subscription for
/// the chosen protocol and its assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MemberValue {
    pub(crate) member_id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) rebalance_timeout_ms: i32,
    pub(crate) session_timeout_ms: i32,
    pub(crate) subscription: Bytes,
    pub(crate) assignment: Bytes,
}

fn put_bytes(b: &mut BytesMut, v: &[u8]) {
    b.put_i32(i32::try_from(v.len()).unwrap_or(i32::MAX));
    b.put_slice(v);
}

fn get_bytes(b: &mut Bytes) -> Option<Bytes> {
    if b.remaining() < 4 {
        return None;
    }
    match b.get_i32() {
        -1 => Some(Bytes::new()),
        n => {
            let n = usize::try_from(n).ok()?;
            (b.remaining() >= n).then(|| b.split_to(n))
        }
    }
}

fn get_i32(b: &mut Bytes) -> Option<i32> {
    (b.remaining() >= 4).then(|| b.get_i32())
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
        Key::Consumer { group } => {
            b.put_i16(CONSUMER_GROUP_KEY_VERSION);
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
        CONSUMER_GROUP_KEY_VERSION => Some(Key::Consumer { group: get_str(&mut b)? }),
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

/// Group metadata value v3.
pub(crate) fn encode_group(v: &GroupValue) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(3);
    put_str(&mut b, &v.protocol_type);
    b.put_i32(v.generation);
    put_nullable(&mut b, v.protocol.as_deref());
    put_nullable(&mut b, v.leader.as_deref());
    b.put_i64(v.state_timestamp);
    b.put_i32(i32::try_from(v.members.len()).unwrap_or(i32::MAX));
    for m in &v.members {
        put_str(&mut b, &m.member_id);
        put_nullable(&mut b, m.instance_id.as_deref());
        put_str(&mut b, &m.client_id);
        put_str(&mut b, &m.client_host);
        b.put_i32(m.rebalance_timeout_ms);
        b.put_i32(m.session_timeout_ms);
        put_bytes(&mut b, &m.subscription);
        put_bytes(&mut b, &m.assignment);
    }
    b.freeze()
}

/// Group metadata values v0-v3 (Kafka's layouts); None when malformed.
pub(crate) fn decode_group(mut b: Bytes) -> Option<GroupValue> {
    if b.remaining() < 2 {
        return None;
    }
    let version = b.get_i16();
    if !(0..=3).contains(&version) {
        return None;
    }
    let protocol_type = get_str(&mut b)?;
    let generation = get_i32(&mut b)?;
    let protocol = get_nullable(&mut b)?;
    let leader = get_nullable(&mut b)?;
    let state_timestamp = if version >= 2 {
        if b.remaining() < 8 {
            return None;
        }
        b.get_i64()
    } else {
        -1
    };
    let count = get_i32(&mut b)?.max(0);
    // No allocation on the count's word: a corrupt one runs out of bytes first.
    let mut members = Vec::new();
    for _ in 0..count {
        let member_id = get_str(&mut b)?;
        let instance_id = if version >= 3 { get_nullable(&mut b)? } else { None };
        let client_id = get_str(&mut b)?;
        let client_host = get_str(&mut b)?;
        let rebalance_timeout_ms = if version >= 1 { Some(get_i32(&mut b)?) } else { None };
        let session_timeout_ms = get_i32(&mut b)?;
        let subscription = get_bytes(&mut b)?;
        let assignment = get_bytes(&mut b)?;
        members.push(MemberValue {
            member_id,
            instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms: rebalance_timeout_ms.unwrap_or(session_timeout_ms),
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    Some(GroupValue { protocol_type, generation, protocol, leader, state_timestamp, members })
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
            members: Vec::new(),
        };
        assert_eq!(decode_group(encode_group(&g)), Some(g));
        let m = |id: &str, instance: Option<&str>| MemberValue {
            member_id: id.into(),
            instance_id: instance.map(Into::into),
            client_id: "rdkafka".into(),
            client_host: "/127.0.0.1".into(),
            rebalance_timeout_ms: 300_000,
            session_timeout_ms: 10_000,
            subscription: Bytes::from_static(b"\0\x01sub"),
            assignment: Bytes::from_static(b"\0\x01assigned"),
        };
        let g = GroupValue {
            protocol_type: "consumer".into(),
            generation: 6,
            protocol: Some("range".into()),
            leader: Some("a".into()),
            state_timestamp: 10,
            members: vec![m("a", None), m("b", Some("static-b"))],
        };
        assert_eq!(decode_group(encode_group(&g)), Some(g));
    }

    /// A value laid out field by field as Kafka's GroupMetadataValue schema v3 has
    /// it (one member, no instance id, a null assignment).
    #[test]
    fn reads_kafkas_group_metadata_value_v3() {
        let mut b = BytesMut::new();
        b.put_i16(3);
        put_str(&mut b, "consumer");
        b.put_i32(2); // generation
        put_str(&mut b, "range");
        put_str(&mut b, "m"); // leader
        b.put_i64(1_700_000_000_000);
        b.put_i32(1); // one member:
        put_str(&mut b, "m");
        b.put_i16(-1); // no group.instance.id
        put_str(&mut b, "id");
        put_str(&mut b, "/::1");
        b.put_i32(300_000);
        b.put_i32(45_000);
        b.put_i32(3);
        b.put_slice(b"sub");
        b.put_i32(-1); // a null assignment
        let g = decode_group(b.freeze()).expect("decodes");
        assert_eq!((g.generation, g.leader.as_deref(), g.members.len()), (2, Some("m"), 1));
        let m = &g.members[0];
        assert_eq!((m.member_id.as_str(), m.instance_id.as_deref(), m.client_host.as_str()), ("m", None, "/::1"));
        assert_eq!(
            (m.rebalance_timeout_ms, m.session_timeout_ms, &m.subscription[..], m.assignment.len()),
            (300_000, 45_000, &b"sub"[..], 0)
        );
    }

    #[test]
    fn placement_matches_kafka() {
        // Java: "my-group".hashCode() == -1906497762; Utils.abs → 1906497762 % 50 == 12
        assert_eq!(java_hash("my-group"), -1_906_497_762);
        assert_eq!(partition_for("my-group", 50), 12);
        assert_eq!(partition_for("", 50), 0);
    }

    /// A corrupt member count (or a record cut short) makes the value unreadable,
    /// without allocating for the count's word.
    #[test]
    fn a_group_value_with_a_corrupt_member_count_or_cut_short_is_refused() {
        let g = GroupValue {
            protocol_type: "consumer".into(),
            generation: 1,
            protocol: Some("range".into()),
            leader: None,
            state_timestamp: 0,
            members: Vec::new(),
        };
        let mut b = BytesMut::from(&encode_group(&g)[..]);
        let at = b.len() - 4;
        b[at..].copy_from_slice(&i32::MAX.to_be_bytes());
        assert_eq!(decode_group(b.freeze()), None, "a count of i32::MAX members with none there");
        let whole = encode_group(&GroupValue {
            members: vec![MemberValue {
                member_id: "m".into(),
                instance_id: Some("i".into()),
                client_id: "c".into(),
                client_host: "/h".into(),
                rebalance_timeout_ms: 1,
                session_timeout_ms: 1,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
            ..g
        });
        for cut in 1..whole.len() {
            assert_eq!(decode_group(whole.slice(..cut)), None, "cut at {cut} of {}", whole.len());
        }
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
