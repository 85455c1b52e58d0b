//! Share-group state kept in `__consumer_offsets` under Karst-private key versions
//! (Kafka's own are 0–2 for offsets and groups and up to 20-odd for its newer
//! records; the group coordinator skips versions it does not know): the record
//! lands in the share group's coordinator partition, is replicated and compacted
//! with it, and is read back at start-up.
//!
//! - 1001: (group, topic, partition) → a share-partition [`Snapshot`]
//! - 1002: group → the group's configs (`share.auto.offset.reset`, …)
//! - 1003: group → the share group exists (its group epoch)
//!
//! (1000 is a KIP-848 consumer group's record, `group::records`.)
//!
//! A null value is a tombstone.

use std::collections::BTreeMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::partition::{decode_snapshot, encode_snapshot, Snapshot};
use crate::txn::records::{get_str, put_str};

const KEY_PARTITION: i16 = 1001;
const KEY_CONFIG: i16 = 1002;
const KEY_GROUP: i16 = 1003;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ShareKey {
    Partition { group: String, topic: String, partition: i32 },
    Config { group: String },
    Group { group: String },
}

pub(crate) fn encode_key(k: &ShareKey) -> Bytes {
    let mut b = BytesMut::new();
    match k {
        ShareKey::Partition { group, topic, partition } => {
            b.put_i16(KEY_PARTITION);
            put_str(&mut b, group);
            put_str(&mut b, topic);
            b.put_i32(*partition);
        }
        ShareKey::Config { group } => {
            b.put_i16(KEY_CONFIG);
            put_str(&mut b, group);
        }
        ShareKey::Group { group } => {
            b.put_i16(KEY_GROUP);
            put_str(&mut b, group);
        }
    }
    b.freeze()
}

/// A share key, or None for any other `__consumer_offsets` key.
pub(crate) fn decode_key(mut b: Bytes) -> Option<ShareKey> {
    if b.remaining() < 2 {
        return None;
    }
    match b.get_i16() {
        KEY_PARTITION => {
            let group = get_str(&mut b)?;
            let topic = get_str(&mut b)?;
            (b.remaining() == 4).then(|| ShareKey::Partition { group, topic, partition: b.get_i32() })
        }
        KEY_CONFIG => Some(ShareKey::Config { group: get_str(&mut b)? }),
        KEY_GROUP => Some(ShareKey::Group { group: get_str(&mut b)? }),
        _ => None,
    }
}

pub(crate) fn encode_partition(s: &Snapshot) -> Bytes {
    encode_snapshot(s)
}

pub(crate) fn decode_partition(b: Bytes) -> Option<Snapshot> {
    decode_snapshot(b)
}

pub(crate) fn encode_configs(configs: &BTreeMap<String, String>) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    b.put_i32(i32::try_from(configs.len()).unwrap_or(0));
    for (k, v) in configs {
        put_str(&mut b, k);
        put_str(&mut b, v);
    }
    b.freeze()
}

pub(crate) fn decode_configs(mut b: Bytes) -> Option<BTreeMap<String, String>> {
    if b.remaining() < 6 || b.get_i16() != 0 {
        return None;
    }
    let n = b.get_i32();
    let mut out = BTreeMap::new();
    for _ in 0..n.max(0) {
        let k = get_str(&mut b)?;
        let v = get_str(&mut b)?;
        out.insert(k, v);
    }
    b.is_empty().then_some(out)
}

pub(crate) fn encode_group(epoch: i32) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    b.put_i32(epoch);
    b.freeze()
}

pub(crate) fn decode_group(mut b: Bytes) -> Option<i32> {
    (b.remaining() == 6 && b.get_i16() == 0).then(|| b.get_i32())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_round_trip_and_refuse_garbage() {
        for k in [
            ShareKey::Partition { group: "g".into(), topic: "t".into(), partition: 3 },
            ShareKey::Config { group: "g".into() },
            ShareKey::Group { group: "g".into() },
        ] {
            let bytes = encode_key(&k);
            assert_eq!(decode_key(bytes.clone()), Some(k));
            for cut in 0..bytes.len() {
                assert_eq!(decode_key(bytes.slice(..cut)), None);
            }
        }
        // The group coordinator's own keys are not share keys.
        assert_eq!(decode_key(Bytes::from_static(&[0, 2, 0, 1, b'g'])), None);
        let configs = BTreeMap::from([("share.auto.offset.reset".to_string(), "earliest".to_string())]);
        assert_eq!(decode_configs(encode_configs(&configs)), Some(configs));
        assert_eq!(decode_configs(Bytes::from_static(&[0, 0, 0, 0, 0, 9])), None);
        assert_eq!(decode_group(encode_group(7)), Some(7));
    }
}
