//! OffsetCommit v0–v1, which kafka-protocol no longer speaks. sarama 1.22's
//! offset manager sends v1 unless a retention time is configured.
//!
//! Request v0: `group_id string, [name string, [partition_index i32,
//! committed_offset i64, committed_metadata nullable string]]`.
//! v1 adds `generation_id i32, member_id string` after the group and a
//! per-partition `commit_timestamp i64` after the offset; the timestamp is read
//! and dropped (the broker uses its own clock) and written as -1 by the client side.
//! v0 has no group membership: generation -1 and an empty member id.
//!
//! Response, both versions: `[name string, [partition_index i32, error_code i16]]`,
//! v2's layout, so kafka-protocol's v2 codec serves it.

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::{GroupId, OffsetCommitRequest, OffsetCommitResponse, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::wire::{put_array, put_nullable_string, put_string, Reader, Wire, WireError};

/// The version whose response layout v0 and v1 share.
const RESPONSE_AS: i16 = 2;

/// What the client side writes for v1's per-partition commit timestamp: "now, by
/// the broker's clock", as sarama sends it.
const COMMIT_TIMESTAMP_BROKER_TIME: i64 = -1;

pub(super) fn decode_request(r: &mut Reader, version: i16) -> Wire<OffsetCommitRequest> {
    let group_id = GroupId(r.string("group_id")?);
    let (generation, member_id) = if version >= 1 { (r.i32("generation_id")?, r.string("member_id")?) } else { (-1, StrBytes::default()) };
    let partition_size = if version >= 1 { 22 } else { 14 };
    let topics = r.array("topics", 6, |r| {
        let name = TopicName(r.string("topics.name")?);
        let partitions = r.array("partitions", partition_size, |r| {
            let partition_index = r.i32("partition_index")?;
            let committed_offset = r.i64("committed_offset")?;
            if version >= 1 {
                let _commit_timestamp = r.i64("commit_timestamp")?;
            }
            let committed_metadata = r.nullable_string("committed_metadata")?;
            Ok(OffsetCommitRequestPartition::default()
                .with_partition_index(partition_index)
                .with_committed_offset(committed_offset)
                .with_committed_metadata(committed_metadata))
        })?;
        Ok(OffsetCommitRequestTopic::default().with_name(name).with_partitions(partitions))
    })?;
    Ok(OffsetCommitRequest::default()
        .with_group_id(group_id)
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(member_id)
        .with_group_instance_id(None)
        .with_topics(topics))
}

pub(super) fn encode_request(out: &mut BytesMut, version: i16, req: &OffsetCommitRequest) -> Wire<()> {
    put_string(out, "group_id", &req.group_id)?;
    if version >= 1 {
        out.put_i32(req.generation_id_or_member_epoch);
        put_string(out, "member_id", &req.member_id)?;
    }
    put_array(out, "topics", &req.topics, |out, t| {
        put_string(out, "topics.name", &t.name)?;
        put_array(out, "partitions", &t.partitions, |out, p| {
            out.put_i32(p.partition_index);
            out.put_i64(p.committed_offset);
            if version >= 1 {
                out.put_i64(COMMIT_TIMESTAMP_BROKER_TIME);
            }
            put_nullable_string(out, "committed_metadata", p.committed_metadata.as_deref())
        })
    })
}

fn codec(e: anyhow::Error) -> WireError {
    WireError::Codec(format!("{e:#}"))
}

pub(super) fn encode_response(out: &mut BytesMut, _version: i16, resp: &OffsetCommitResponse) -> Wire<()> {
    resp.encode(out, RESPONSE_AS).map_err(codec)
}

pub(super) fn decode_response(r: &mut Reader, _version: i16) -> Wire<OffsetCommitResponse> {
    OffsetCommitResponse::decode(&mut r.rest(), RESPONSE_AS).map_err(codec)
}

#[cfg(test)]
pub(super) mod goldens {
    use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
    use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};

    use super::*;
    use crate::legacy::tests::Golden;

    fn request(version: i16) -> OffsetCommitRequest {
        let (generation, member) = if version >= 1 { (4, "m-1") } else { (-1, "") };
        OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g1")))
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(StrBytes::from_static_str(member))
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("events")))
                .with_partitions(vec![
                    OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(42)
                        .with_committed_metadata(Some(StrBytes::from_static_str("m"))),
                    OffsetCommitRequestPartition::default().with_partition_index(1).with_committed_offset(7).with_committed_metadata(None),
                ])])
    }

    fn request_bytes(version: i16) -> Vec<u8> {
        let mut b = vec![0, 2, b'g', b'1']; // group_id: "g1"
        if version >= 1 {
            b.extend_from_slice(&[0, 0, 0, 4]); // generation_id: 4
            b.extend_from_slice(&[0, 3, b'm', b'-', b'1']); // member_id: "m-1"
        }
        b.extend_from_slice(&[0, 0, 0, 1]); // topics: 1
        b.extend_from_slice(&[0, 6, b'e', b'v', b'e', b'n', b't', b's']); // name: "events"
        b.extend_from_slice(&[0, 0, 0, 2]); // partitions: 2
        b.extend_from_slice(&[0, 0, 0, 0]); // partition_index: 0
        b.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 42]); // committed_offset: 42
        if version >= 1 {
            b.extend_from_slice(&[0xff; 8]); // commit_timestamp: -1
        }
        b.extend_from_slice(&[0, 1, b'm']); // committed_metadata: "m"
        b.extend_from_slice(&[0, 0, 0, 1]); // partition_index: 1
        b.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 7]); // committed_offset: 7
        if version >= 1 {
            b.extend_from_slice(&[0xff; 8]); // commit_timestamp: -1
        }
        b.extend_from_slice(&[0xff, 0xff]); // committed_metadata: null
        b
    }

    pub(crate) fn all() -> Vec<Golden> {
        let response = OffsetCommitResponse::default().with_topics(vec![OffsetCommitResponseTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("events")))
            .with_partitions(vec![
                OffsetCommitResponsePartition::default().with_partition_index(0),
                OffsetCommitResponsePartition::default().with_partition_index(1).with_error_code(22),
            ])]);
        (0..=1)
            .map(|version| Golden {
                key: ApiKey::OffsetCommit,
                version,
                request: request_bytes(version),
                decoded_request: RequestKind::OffsetCommit(request(version)),
                response: vec![
                    0, 0, 0, 1, // topics: 1
                    0, 6, b'e', b'v', b'e', b'n', b't', b's', // name: "events"
                    0, 0, 0, 2, // partitions: 2
                    0, 0, 0, 0, // partition_index: 0
                    0, 0, // error_code: NONE
                    0, 0, 0, 1, // partition_index: 1
                    0, 22, // error_code: ILLEGAL_GENERATION
                ],
                decoded_response: ResponseKind::OffsetCommit(response.clone()),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn v1_commit_timestamp_is_read_and_dropped() {
        let mut body = goldens::all()[1].request.clone();
        // The first partition's commit_timestamp: after group (4), generation (4),
        // member (5), topics (4), name (8), partitions (4), index (4), offset (8).
        body[41..49].copy_from_slice(&1_700_000_000_000i64.to_be_bytes());
        let req = decode_request(&mut Reader::new(Bytes::from(body)), 1).expect("decodes");
        assert_eq!(req.topics[0].partitions[0].committed_offset, 42);
        assert_eq!(req.topics[0].partitions[0].committed_metadata.as_deref(), Some("m"));
    }
}
