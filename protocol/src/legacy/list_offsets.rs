//! ListOffsets v0 (Kafka's "Offsets" API before 0.10.1), which kafka-protocol no
//! longer speaks.
//!
//! Request: `replica_id i32, [name string, [partition_index i32, timestamp i64,
//! max_num_offsets i32]]`.
//! Response: `[name string, [partition_index i32, error_code i16,
//! old_style_offsets [i64]]]` (no throttle time).
//!
//! # Mapping onto v1
//!
//! The request decodes into [`ListOffsetsRequest`] as a v1 request (isolation
//! level 0, `current_leader_epoch` -1, `timeout_ms` 0); `max_num_offsets` has no
//! field there and is dropped. The handler answers as for v1, one offset per
//! partition, and the response carries `[offset]` when the error code is NONE and
//! the offset is ≥ 0, `[]` otherwise.
//!
//! Where this differs from Kafka 3.x (`KafkaApis.handleListOffsetRequestV0` →
//! `UnifiedLog.legacyFetchOffsetsBefore`), which answers from segment boundaries
//! and segment file modification times:
//! - timestamp -1 (latest) and -2 (earliest): the same single offset (the high
//!   watermark for a consumer, the log start offset), as long as the client asks
//!   for one offset, which sarama always does (`max_num_offsets` 1).
//! - `max_num_offsets` > 1: Kafka adds the base offsets of older segments (newest
//!   first); here at most one offset comes back. `max_num_offsets` 0: Kafka
//!   answers `[]`, here the one offset.
//! - timestamp ≥ 0: Kafka returns the base offset of the newest segment last
//!   modified at or before that time (the log end offset if the time is at or after
//!   "now"), or `[]` when every segment is newer. v1 semantics answer with the
//!   first offset whose record timestamp is ≥ the time, or `[]` when there is none,
//!   so the same request can get a different offset.
//! - timestamp < -2: Kafka answers UNSUPPORTED_VERSION for that partition in v0;
//!   the handler must do the same, as v1 would read -3 as "max timestamp".
//!
//! On the client side a v0 response decodes into `offset` = the first (Kafka sorts
//! them descending: the largest) of `old_style_offsets`, or -1 when empty, with
//! `timestamp` -1.

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{BrokerId, ListOffsetsRequest, ListOffsetsResponse, TopicName};

use super::wire::{put_array, put_string, Reader, Wire};

/// What Karst's client side asks for, as Kafka's schema defaults it and as sarama sends it.
const MAX_NUM_OFFSETS: i32 = 1;

pub(super) fn decode_request(r: &mut Reader, _version: i16) -> Wire<ListOffsetsRequest> {
    let replica_id = BrokerId(r.i32("replica_id")?);
    let topics = r.array("topics", 6, |r| {
        let name = TopicName(r.string("topics.name")?);
        let partitions = r.array("partitions", 16, |r| {
            let p = ListOffsetsPartition::default()
                .with_partition_index(r.i32("partition_index")?)
                .with_current_leader_epoch(-1)
                .with_timestamp(r.i64("timestamp")?);
            let _max_num_offsets = r.i32("max_num_offsets")?;
            Ok(p)
        })?;
        Ok(ListOffsetsTopic::default().with_name(name).with_partitions(partitions))
    })?;
    Ok(ListOffsetsRequest::default().with_replica_id(replica_id).with_isolation_level(0).with_topics(topics).with_timeout_ms(0))
}

pub(super) fn encode_request(out: &mut BytesMut, _version: i16, req: &ListOffsetsRequest) -> Wire<()> {
    out.put_i32(req.replica_id.0);
    put_array(out, "topics", &req.topics, |out, t| {
        put_string(out, "topics.name", &t.name)?;
        put_array(out, "partitions", &t.partitions, |out, p| {
            out.put_i32(p.partition_index);
            out.put_i64(p.timestamp);
            out.put_i32(MAX_NUM_OFFSETS);
            Ok(())
        })
    })
}

pub(super) fn encode_response(out: &mut BytesMut, _version: i16, resp: &ListOffsetsResponse) -> Wire<()> {
    put_array(out, "topics", &resp.topics, |out, t| {
        put_string(out, "topics.name", &t.name)?;
        put_array(out, "partitions", &t.partitions, |out, p| {
            out.put_i32(p.partition_index);
            out.put_i16(p.error_code);
            if p.error_code == 0 && p.offset >= 0 {
                out.put_i32(1);
                out.put_i64(p.offset);
            } else {
                out.put_i32(0);
            }
            Ok(())
        })
    })
}

pub(super) fn decode_response(r: &mut Reader, _version: i16) -> Wire<ListOffsetsResponse> {
    let topics = r.array("topics", 6, |r| {
        let name = TopicName(r.string("topics.name")?);
        let partitions = r.array("partitions", 10, |r| {
            let partition_index = r.i32("partition_index")?;
            let error_code = r.i16("error_code")?;
            let offsets = r.array("old_style_offsets", 8, |r| r.i64("old_style_offsets"))?;
            Ok(ListOffsetsPartitionResponse::default()
                .with_partition_index(partition_index)
                .with_error_code(error_code)
                .with_timestamp(-1)
                .with_offset(offsets.first().copied().unwrap_or(-1))
                .with_leader_epoch(-1))
        })?;
        Ok(ListOffsetsTopicResponse::default().with_name(name).with_partitions(partitions))
    })?;
    Ok(ListOffsetsResponse::default().with_throttle_time_ms(0).with_topics(topics))
}

#[cfg(test)]
pub(super) mod goldens {
    use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
    use kafka_protocol::protocol::StrBytes;

    use super::*;
    use crate::legacy::tests::Golden;

    pub(crate) fn all() -> Vec<Golden> {
        let events = || TopicName(StrBytes::from_static_str("events"));
        let request = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![ListOffsetsTopic::default()
            .with_name(events())
            .with_partitions(vec![
                ListOffsetsPartition::default().with_partition_index(0).with_timestamp(-1),
                ListOffsetsPartition::default().with_partition_index(1).with_timestamp(-2),
                ListOffsetsPartition::default().with_partition_index(2).with_timestamp(1_700_000_000_000),
            ])]);
        let partition = |index, error, offset| {
            ListOffsetsPartitionResponse::default().with_partition_index(index).with_error_code(error).with_offset(offset)
        };
        let response = ListOffsetsResponse::default().with_topics(vec![ListOffsetsTopicResponse::default()
            .with_name(events())
            .with_partitions(vec![partition(0, 0, 42), partition(1, 0, 0), partition(2, 0, -1), partition(3, 3, -1)])]);
        vec![Golden {
            key: ApiKey::ListOffsets,
            version: 0,
            request: vec![
                0xff, 0xff, 0xff, 0xff, // replica_id: -1 (a consumer)
                0, 0, 0, 1, // topics: 1
                0, 6, b'e', b'v', b'e', b'n', b't', b's', // name: "events"
                0, 0, 0, 3, // partitions: 3
                0, 0, 0, 0, // partition_index: 0
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // timestamp: -1 (latest)
                0, 0, 0, 1, // max_num_offsets: 1
                0, 0, 0, 1, // partition_index: 1
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, // timestamp: -2 (earliest)
                0, 0, 0, 1, // max_num_offsets: 1
                0, 0, 0, 2, // partition_index: 2
                0, 0, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00, // timestamp: 1700000000000
                0, 0, 0, 1, // max_num_offsets: 1
            ],
            decoded_request: RequestKind::ListOffsets(request),
            response: vec![
                0, 0, 0, 1, // topics: 1
                0, 6, b'e', b'v', b'e', b'n', b't', b's', // name: "events"
                0, 0, 0, 4, // partitions: 4
                0, 0, 0, 0, // partition_index: 0
                0, 0, // error_code: NONE
                0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 42, // old_style_offsets: [42]
                0, 0, 0, 1, // partition_index: 1
                0, 0, // error_code: NONE
                0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, // old_style_offsets: [0]
                0, 0, 0, 2, // partition_index: 2
                0, 0, // error_code: NONE
                0, 0, 0, 0, // old_style_offsets: [] (no offset for that time)
                0, 0, 0, 3, // partition_index: 3
                0, 3, // error_code: UNKNOWN_TOPIC_OR_PARTITION
                0, 0, 0, 0, // old_style_offsets: []
            ],
            decoded_response: ResponseKind::ListOffsets(response),
        }]
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use kafka_protocol::protocol::StrBytes;

    use super::*;

    fn offsets_of(p: ListOffsetsPartitionResponse) -> Vec<u8> {
        let resp = ListOffsetsResponse::default().with_topics(vec![ListOffsetsTopicResponse::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(vec![p])]);
        let mut out = BytesMut::new();
        encode_response(&mut out, 0, &resp).expect("encodes");
        // topics count 4, name 3, partitions count 4, index 4, error 2
        out[17..].to_vec()
    }

    #[test]
    fn an_offset_goes_out_only_without_an_error() {
        let p = ListOffsetsPartitionResponse::default();
        assert_eq!(offsets_of(p.clone().with_offset(5)), [0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 5]);
        assert_eq!(offsets_of(p.clone().with_offset(-1)), [0, 0, 0, 0]);
        // An error hides whatever offset the handler left in the struct.
        assert_eq!(offsets_of(p.with_error_code(6).with_offset(5)), [0, 0, 0, 0]);
    }

    #[test]
    fn a_client_reads_the_largest_of_several_offsets() {
        let body = Bytes::from_static(&[
            0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, // one topic "t", partition 0, NONE
            0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 4, // old_style_offsets: [9, 4]
        ]);
        let resp = decode_response(&mut Reader::new(body), 0).expect("decodes");
        assert_eq!(resp.topics[0].partitions[0].offset, 9);
    }

    #[test]
    fn max_num_offsets_is_read_and_dropped() {
        let body = Bytes::from_static(&[
            0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 1, // consumer, topic "t", 1 partition
            0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 5, // partition 0, latest, max 5
        ]);
        let req = decode_request(&mut Reader::new(body), 0).expect("decodes");
        assert_eq!(req.topics[0].partitions[0].timestamp, -1);
        let mut out = BytesMut::new();
        encode_request(&mut out, 0, &req).expect("encodes");
        assert_eq!(&out[out.len() - 4..], &MAX_NUM_OFFSETS.to_be_bytes());
    }
}
