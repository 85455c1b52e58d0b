//! OffsetFetch v0, which kafka-protocol no longer speaks.
//!
//! v0 and v1 have the same wire layout in both directions (OffsetFetchRequest.json
//! and OffsetFetchResponse.json: every v0 field also spans v1, nullability of
//! `topics` starts at v2, `throttle_time_ms` at v3, the top-level `error_code` at
//! v2). v0 told the broker to read the offsets from ZooKeeper and v1 from Kafka;
//! Karst has only the latter, so v0 is served exactly as v1, by kafka-protocol's
//! v1 codec.
//!
//! Request: `group_id string, [name string, [partition_index i32]]`.
//! Response: `[name string, [partition_index i32, committed_offset i64,
//! metadata nullable string, error_code i16]]`.

use bytes::BytesMut;
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse};
use kafka_protocol::protocol::{Decodable, Encodable};

use super::wire::{Reader, Wire, WireError};

/// The version whose layout v0 shares.
const SAME_LAYOUT_AS: i16 = 1;

fn codec(e: anyhow::Error) -> WireError {
    WireError::Codec(format!("{e:#}"))
}

pub(super) fn decode_request(r: &mut Reader, _version: i16) -> Wire<OffsetFetchRequest> {
    OffsetFetchRequest::decode(&mut r.rest(), SAME_LAYOUT_AS).map_err(codec)
}

pub(super) fn encode_request(out: &mut BytesMut, _version: i16, req: &OffsetFetchRequest) -> Wire<()> {
    req.encode(out, SAME_LAYOUT_AS).map_err(codec)
}

pub(super) fn encode_response(out: &mut BytesMut, _version: i16, resp: &OffsetFetchResponse) -> Wire<()> {
    resp.encode(out, SAME_LAYOUT_AS).map_err(codec)
}

pub(super) fn decode_response(r: &mut Reader, _version: i16) -> Wire<OffsetFetchResponse> {
    OffsetFetchResponse::decode(&mut r.rest(), SAME_LAYOUT_AS).map_err(codec)
}

#[cfg(test)]
pub(super) mod goldens {
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    use kafka_protocol::messages::offset_fetch_response::{OffsetFetchResponsePartition, OffsetFetchResponseTopic};
    use kafka_protocol::messages::{ApiKey, GroupId, RequestKind, ResponseKind, TopicName};
    use kafka_protocol::protocol::StrBytes;

    use super::*;
    use crate::legacy::tests::Golden;

    pub(crate) fn all() -> Vec<Golden> {
        let events = || TopicName(StrBytes::from_static_str("events"));
        let request = OffsetFetchRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g1")))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default().with_name(events()).with_partition_indexes(vec![0, 1])]));
        let response = OffsetFetchResponse::default().with_topics(vec![OffsetFetchResponseTopic::default()
            .with_name(events())
            .with_partitions(vec![
                OffsetFetchResponsePartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(41)
                    .with_metadata(Some(StrBytes::from_static_str("m"))),
                // No committed offset: -1 with empty metadata, as Kafka answers.
                OffsetFetchResponsePartition::default()
                    .with_partition_index(1)
                    .with_committed_offset(-1)
                    .with_metadata(Some(StrBytes::default())),
            ])]);
        vec![Golden {
            key: ApiKey::OffsetFetch,
            version: 0,
            request: vec![
                0, 2, b'g', b'1', // group_id: "g1"
                0, 0, 0, 1, // topics: 1
                0, 6, b'e', b'v', b'e', b'n', b't', b's', // name: "events"
                0, 0, 0, 2, // partition_indexes: 2
                0, 0, 0, 0, // 0
                0, 0, 0, 1, // 1
            ],
            decoded_request: RequestKind::OffsetFetch(request),
            response: vec![
                0, 0, 0, 1, // topics: 1
                0, 6, b'e', b'v', b'e', b'n', b't', b's', // name: "events"
                0, 0, 0, 2, // partitions: 2
                0, 0, 0, 0, // partition_index: 0
                0, 0, 0, 0, 0, 0, 0, 41, // committed_offset: 41
                0, 1, b'm', // metadata: "m"
                0, 0, // error_code: NONE
                0, 0, 0, 1, // partition_index: 1
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // committed_offset: -1
                0, 0, // metadata: ""
                0, 0, // error_code: NONE
            ],
            decoded_response: ResponseKind::OffsetFetch(response),
        }]
    }
}
