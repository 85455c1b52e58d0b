//! Consumer-group bytes: the `__consumer_offsets` keys and values the group
//! coordinator reads back from its log (`broker/src/group/records.rs`, compiled
//! here from its source), and the consumer protocol's member metadata
//! (ConsumerProtocolSubscription) and assignments (ConsumerProtocolAssignment),
//! which JoinGroup and SyncGroup carry as opaque bytes and tools decode.
#![no_main]

use bytes::{Buf, Bytes};
use karst_protocol::kafka_protocol::messages::{ConsumerProtocolAssignment, ConsumerProtocolSubscription};
use karst_protocol::kafka_protocol::protocol::Decodable;
use libfuzzer_sys::fuzz_target;

#[allow(dead_code, unreachable_pub)]
#[path = "../../broker/src/group/records.rs"]
mod records;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    let bytes = Bytes::copy_from_slice(rest);
    match which % 4 {
        0 => {
            if let Some(key) = records::decode_key(bytes.clone()) {
                assert_eq!(records::decode_key(records::encode_key(&key)), Some(key), "a decoded key re-encodes to itself");
            }
        }
        1 => {
            if let Some(v) = records::decode_offset(bytes) {
                assert_eq!(records::decode_offset(records::encode_offset(&v)), Some(v), "an offset value re-encodes to itself");
            }
        }
        2 => {
            let _ = records::decode_group(bytes);
        }
        _ => {
            // As a member's metadata or assignment travels: an i16 version, then the body.
            let mut b = bytes;
            if b.remaining() < 2 {
                return;
            }
            let version = b.get_i16().clamp(0, 3);
            let _ = ConsumerProtocolSubscription::decode(&mut b.clone(), version);
            let _ = ConsumerProtocolAssignment::decode(&mut b, version);
        }
    }
});
