//! Fetch v0–v3 (Kafka 0.8–0.10.1), which kafka-protocol no longer speaks.
//!
//! Request: `replica_id i32, max_wait_ms i32, min_bytes i32, max_bytes i32 (v3+),
//! [topic string, [partition i32, fetch_offset i64, partition_max_bytes i32]]`.
//!
//! Response: `throttle_time_ms i32 (v1+), [topic string, [partition_index i32,
//! error_code i16, high_watermark i64, records bytes]]`.
//!
//! Decoded into [`FetchRequest`] with the values Kafka gives the fields later
//! versions added (FetchRequest.json defaults and `FetchRequest.Builder`):
//! `max_bytes` i32::MAX before v3, `isolation_level` 0 (read_uncommitted),
//! `session_id` 0 with `session_epoch` -1 (a full fetch outside any session),
//! `current_leader_epoch` -1, `last_fetched_epoch` -1, `log_start_offset` -1, no
//! forgotten topics, empty `rack_id`.
//!
//! Kafka treats `max_bytes` and `partition_max_bytes` of v0–v2 as hard limits
//! (`FetchParams.hardMaxBytesLimit`: no "at least one message" exception); that
//! is for the handler to honour.

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::wire::{put_array, put_nullable_bytes, put_string, Reader, Wire, WireError};

/// `max_bytes` before v3 had it: no limit on the whole response.
pub(super) const MAX_BYTES_BEFORE_V3: i32 = i32::MAX;

pub(super) fn decode_request(r: &mut Reader, version: i16) -> Wire<FetchRequest> {
    let replica_id = BrokerId(r.i32("replica_id")?);
    let max_wait_ms = r.i32("max_wait_ms")?;
    let min_bytes = r.i32("min_bytes")?;
    let max_bytes = if version >= 3 { r.i32("max_bytes")? } else { MAX_BYTES_BEFORE_V3 };
    // A topic is at least a name length and a partition count: 6 bytes.
    let topics = r.array("topics", 6, |r| {
        let topic = TopicName(r.string("topics.topic")?);
        let partitions = r.array("partitions", 16, |r| {
            Ok(FetchPartition::default()
                .with_partition(r.i32("partition")?)
                .with_current_leader_epoch(-1)
                .with_fetch_offset(r.i64("fetch_offset")?)
                .with_last_fetched_epoch(-1)
                .with_log_start_offset(-1)
                .with_partition_max_bytes(r.i32("partition_max_bytes")?))
        })?;
        Ok(FetchTopic::default().with_topic(topic).with_partitions(partitions))
    })?;
    Ok(FetchRequest::default()
        .with_replica_id(replica_id)
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(min_bytes)
        .with_max_bytes(max_bytes)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(topics)
        .with_forgotten_topics_data(Vec::new())
        .with_rack_id(StrBytes::default()))
}

pub(super) fn encode_request(out: &mut BytesMut, version: i16, req: &FetchRequest) -> Wire<()> {
    // Fields Kafka marks ignorable (isolation level, session, max_bytes before v3)
    // are dropped; incremental-fetch state cannot be, it would change the meaning.
    if !req.forgotten_topics_data.is_empty() {
        return Err(WireError::NotInVersion { field: "forgotten_topics_data", version });
    }
    out.put_i32(req.replica_id.0);
    out.put_i32(req.max_wait_ms);
    out.put_i32(req.min_bytes);
    if version >= 3 {
        out.put_i32(req.max_bytes);
    }
    put_array(out, "topics", &req.topics, |out, t| {
        put_string(out, "topics.topic", &t.topic)?;
        put_array(out, "partitions", &t.partitions, |out, p| {
            out.put_i32(p.partition);
            out.put_i64(p.fetch_offset);
            out.put_i32(p.partition_max_bytes);
            Ok(())
        })
    })
}

/// Records the handler left null go out as an empty set: Kafka never sends null
/// records, and old clients (sarama 1.22) fail on a -1 length.
pub(super) fn encode_response(out: &mut BytesMut, version: i16, resp: &FetchResponse) -> Wire<()> {
    if version >= 1 {
        out.put_i32(resp.throttle_time_ms);
    }
    put_array(out, "responses", &resp.responses, |out, t| {
        put_string(out, "responses.topic", &t.topic)?;
        put_array(out, "partitions", &t.partitions, |out, p| {
            out.put_i32(p.partition_index);
            out.put_i16(p.error_code);
            out.put_i64(p.high_watermark);
            put_nullable_bytes(out, "records", Some(p.records.as_deref().unwrap_or_default()))
        })
    })
}

pub(super) fn decode_response(r: &mut Reader, version: i16) -> Wire<FetchResponse> {
    let throttle_time_ms = if version >= 1 { r.i32("throttle_time_ms")? } else { 0 };
    let responses = r.array("responses", 6, |r| {
        let topic = TopicName(r.string("responses.topic")?);
        let partitions = r.array("partitions", 18, |r| {
            Ok(PartitionData::default()
                .with_partition_index(r.i32("partition_index")?)
                .with_error_code(r.i16("error_code")?)
                .with_high_watermark(r.i64("high_watermark")?)
                .with_last_stable_offset(-1)
                .with_log_start_offset(-1)
                .with_aborted_transactions(None)
                .with_records(r.nullable_bytes("records")?))
        })?;
        Ok(FetchableTopicResponse::default().with_topic(topic).with_partitions(partitions))
    })?;
    Ok(FetchResponse::default().with_throttle_time_ms(throttle_time_ms).with_error_code(0).with_session_id(0).with_responses(responses))
}

#[cfg(test)]
pub(super) mod goldens {
    use bytes::Bytes;
    use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};

    use super::*;
    use crate::legacy::tests::{Golden, MESSAGE_SET_V0, MESSAGE_SET_V1};

    fn request(version: i16) -> FetchRequest {
        FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(500)
            .with_min_bytes(1)
            .with_max_bytes(if version >= 3 { 52_428_800 } else { i32::MAX })
            .with_topics(vec![FetchTopic::default().with_topic(TopicName(StrBytes::from_static_str("events"))).with_partitions(vec![
                FetchPartition::default().with_partition(0).with_fetch_offset(41).with_partition_max_bytes(1_048_576),
                FetchPartition::default().with_partition(1).with_fetch_offset(0).with_partition_max_bytes(32_768),
            ])])
    }

    fn request_bytes(version: i16) -> Vec<u8> {
        let mut b = vec![
            0xff, 0xff, 0xff, 0xff, // replica_id: -1 (a consumer)
            0, 0, 0x01, 0xf4, // max_wait_ms: 500
            0, 0, 0, 1, // min_bytes: 1
        ];
        if version >= 3 {
            b.extend_from_slice(&[0x03, 0x20, 0, 0]); // max_bytes: 52428800
        }
        b.extend_from_slice(&[
            0, 0, 0, 1, // topics: 1
            0, 6, b'e', b'v', b'e', b'n', b't', b's', // topic: "events"
            0, 0, 0, 2, // partitions: 2
            0, 0, 0, 0, // partition: 0
            0, 0, 0, 0, 0, 0, 0, 41, // fetch_offset: 41
            0, 0x10, 0, 0, // partition_max_bytes: 1048576
            0, 0, 0, 1, // partition: 1
            0, 0, 0, 0, 0, 0, 0, 0, // fetch_offset: 0
            0, 0, 0x80, 0, // partition_max_bytes: 32768
        ]);
        b
    }

    fn response(version: i16, records: &'static [u8]) -> FetchResponse {
        let partition = |index, error, hw, records| {
            PartitionData::default()
                .with_partition_index(index)
                .with_error_code(error)
                .with_high_watermark(hw)
                .with_aborted_transactions(None)
                .with_records(Some(Bytes::from_static(records)))
        };
        FetchResponse::default().with_throttle_time_ms(if version >= 1 { 7 } else { 0 }).with_responses(vec![
            FetchableTopicResponse::default()
                .with_topic(TopicName(StrBytes::from_static_str("events")))
                .with_partitions(vec![partition(0, 0, 42, records), partition(1, 1, -1, &[])]),
        ])
    }

    fn response_bytes(version: i16, records: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        if version >= 1 {
            b.extend_from_slice(&[0, 0, 0, 7]); // throttle_time_ms: 7
        }
        b.extend_from_slice(&[
            0, 0, 0, 1, // responses: 1 topic
            0, 6, b'e', b'v', b'e', b'n', b't', b's', // topic: "events"
            0, 0, 0, 2, // partitions: 2
            0, 0, 0, 0, // partition_index: 0
            0, 0, // error_code: NONE
            0, 0, 0, 0, 0, 0, 0, 42, // high_watermark: 42
        ]);
        b.extend_from_slice(&(records.len() as i32).to_be_bytes()); // records: length, then the message set
        b.extend_from_slice(records);
        b.extend_from_slice(&[
            0, 0, 0, 1, // partition_index: 1
            0, 1, // error_code: OFFSET_OUT_OF_RANGE
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // high_watermark: -1
            0, 0, 0, 0, // records: empty
        ]);
        b
    }

    pub(crate) fn all() -> Vec<Golden> {
        (0..=3)
            .map(|version| {
                // v2+ consumers read message format v1; older ones only v0.
                let records = if version >= 2 { MESSAGE_SET_V1 } else { MESSAGE_SET_V0 };
                Golden {
                    key: ApiKey::Fetch,
                    version,
                    request: request_bytes(version),
                    decoded_request: RequestKind::Fetch(request(version)),
                    response: response_bytes(version, records),
                    decoded_response: ResponseKind::Fetch(response(version, records)),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use kafka_protocol::messages::fetch_request::ForgottenTopic;

    use super::*;

    #[test]
    fn fields_added_after_v3_get_kafkas_defaults() {
        for g in goldens::all() {
            let req = decode_request(&mut Reader::new(Bytes::from(g.request.clone())), g.version).expect("decodes");
            assert_eq!(req.isolation_level, 0, "read_uncommitted");
            assert_eq!((req.session_id, req.session_epoch), (0, -1), "no fetch session");
            assert_eq!(req.max_bytes, if g.version >= 3 { 52_428_800 } else { i32::MAX });
            assert!(req.forgotten_topics_data.is_empty());
            assert_eq!(req.replica_id.0, -1);
            for p in &req.topics[0].partitions {
                assert_eq!((p.current_leader_epoch, p.last_fetched_epoch, p.log_start_offset), (-1, -1, -1));
            }
        }
    }

    #[test]
    fn null_records_go_out_empty() {
        let resp = FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
            .with_topic(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(vec![PartitionData::default().with_error_code(3).with_records(None)])]);
        let mut out = BytesMut::new();
        encode_response(&mut out, 0, &resp).expect("encodes");
        assert_eq!(&out[out.len() - 4..], &[0, 0, 0, 0]);
    }

    #[test]
    fn an_incremental_fetch_cannot_be_said_in_v3() {
        let req = FetchRequest::default().with_forgotten_topics_data(vec![ForgottenTopic::default()]);
        assert!(encode_request(&mut BytesMut::new(), 3, &req).is_err());
    }
}
