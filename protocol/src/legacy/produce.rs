//! Produce v0–v2 (Kafka 0.8–0.10), which kafka-protocol no longer speaks.
//!
//! Request, all three versions:
//! `acks i16, timeout_ms i32, [name string, [index i32, records bytes]]` — v3's
//! layout without `transactional_id`. v1 changed only the response; v2 only allows
//! message format v1 (timestamps) inside `records`. The record bytes are handed
//! on untouched: they are legacy message sets, not v2 batches.
//!
//! Response: `[name string, [index i32, error_code i16, base_offset i64,
//! log_append_time_ms i64 (v2+)]], throttle_time_ms i32 (v1+)`.

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};

use super::wire::{put_array, put_nullable_bytes, put_string, Reader, Wire, WireError};

pub(super) fn decode_request(r: &mut Reader, _version: i16) -> Wire<ProduceRequest> {
    let acks = r.i16("acks")?;
    let timeout_ms = r.i32("timeout_ms")?;
    // A topic is at least a name length and a partition count: 6 bytes.
    let topic_data = r.array("topic_data", 6, |r| {
        let name = TopicName(r.string("topic_data.name")?);
        // A partition is at least an index and a records length: 8 bytes.
        let partition_data = r.array("partition_data", 8, |r| {
            let index = r.i32("partition_data.index")?;
            let records = r.nullable_bytes("partition_data.records")?;
            Ok(PartitionProduceData::default().with_index(index).with_records(records))
        })?;
        Ok(TopicProduceData::default().with_name(name).with_partition_data(partition_data))
    })?;
    Ok(ProduceRequest::default().with_transactional_id(None).with_acks(acks).with_timeout_ms(timeout_ms).with_topic_data(topic_data))
}

pub(super) fn encode_request(out: &mut BytesMut, version: i16, req: &ProduceRequest) -> Wire<()> {
    if req.transactional_id.is_some() {
        return Err(WireError::NotInVersion { field: "transactional_id", version });
    }
    out.put_i16(req.acks);
    out.put_i32(req.timeout_ms);
    put_array(out, "topic_data", &req.topic_data, |out, t| {
        put_string(out, "topic_data.name", &t.name)?;
        put_array(out, "partition_data", &t.partition_data, |out, p| {
            out.put_i32(p.index);
            put_nullable_bytes(out, "partition_data.records", p.records.as_deref())
        })
    })
}

pub(super) fn encode_response(out: &mut BytesMut, version: i16, resp: &ProduceResponse) -> Wire<()> {
    put_array(out, "responses", &resp.responses, |out, t| {
        put_string(out, "responses.name", &t.name)?;
        put_array(out, "partition_responses", &t.partition_responses, |out, p| {
            out.put_i32(p.index);
            out.put_i16(p.error_code);
            out.put_i64(p.base_offset);
            if version >= 2 {
                out.put_i64(p.log_append_time_ms);
            }
            Ok(())
        })
    })?;
    if version >= 1 {
        out.put_i32(resp.throttle_time_ms);
    }
    Ok(())
}

pub(super) fn decode_response(r: &mut Reader, version: i16) -> Wire<ProduceResponse> {
    let partition_size = if version >= 2 { 22 } else { 14 };
    let responses = r.array("responses", 6, |r| {
        let name = TopicName(r.string("responses.name")?);
        let partition_responses = r.array("partition_responses", partition_size, |r| {
            let mut p = PartitionProduceResponse::default()
                .with_index(r.i32("index")?)
                .with_error_code(r.i16("error_code")?)
                .with_base_offset(r.i64("base_offset")?);
            if version >= 2 {
                p.log_append_time_ms = r.i64("log_append_time_ms")?;
            }
            Ok(p)
        })?;
        Ok(TopicProduceResponse::default().with_name(name).with_partition_responses(partition_responses))
    })?;
    let throttle_time_ms = if version >= 1 { r.i32("throttle_time_ms")? } else { 0 };
    Ok(ProduceResponse::default().with_responses(responses).with_throttle_time_ms(throttle_time_ms))
}

#[cfg(test)]
pub(super) mod goldens {
    use bytes::Bytes;
    use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
    use kafka_protocol::protocol::StrBytes;

    use super::*;
    use crate::legacy::tests::{Golden, MESSAGE_SET_V0, MESSAGE_SET_V1};

    fn request(records: &'static [u8]) -> ProduceRequest {
        ProduceRequest::default().with_transactional_id(None).with_acks(1).with_timeout_ms(1500).with_topic_data(vec![
            TopicProduceData::default().with_name(TopicName(StrBytes::from_static_str("events"))).with_partition_data(vec![
                PartitionProduceData::default().with_index(0).with_records(Some(Bytes::from_static(records))),
                PartitionProduceData::default().with_index(3).with_records(None),
            ]),
        ])
    }

    fn request_bytes(records: &[u8]) -> Vec<u8> {
        [
            &[
                0, 1, // acks: 1
                0, 0, 0x05, 0xdc, // timeout_ms: 1500
                0, 0, 0, 1, // topic_data: 1 topic
                0, 6, b'e', b'v', b'e', b'n', b't', b's', // name: "events"
                0, 0, 0, 2, // partition_data: 2 partitions
                0, 0, 0, 0, // index: 0
            ][..],
            &(records.len() as i32).to_be_bytes(), // records: length, then the message set
            records,
            &[
                0, 0, 0, 3, // index: 3
                0xff, 0xff, 0xff, 0xff, // records: null
            ],
        ]
        .concat()
    }

    fn response(version: i16) -> ProduceResponse {
        let append_time = |t: i64| if version >= 2 { t } else { -1 };
        ProduceResponse::default().with_throttle_time_ms(if version >= 1 { 25 } else { 0 }).with_responses(vec![
            TopicProduceResponse::default().with_name(TopicName(StrBytes::from_static_str("events"))).with_partition_responses(vec![
                PartitionProduceResponse::default()
                    .with_index(0)
                    .with_base_offset(41)
                    .with_log_append_time_ms(append_time(1_700_000_000_123)),
                PartitionProduceResponse::default().with_index(3).with_error_code(3).with_base_offset(-1),
            ]),
        ])
    }

    fn response_bytes(version: i16) -> Vec<u8> {
        let mut b = vec![
            0, 0, 0, 1, // responses: 1 topic
            0, 6, b'e', b'v', b'e', b'n', b't', b's', // name: "events"
            0, 0, 0, 2, // partition_responses: 2
            0, 0, 0, 0, // index: 0
            0, 0, // error_code: NONE
            0, 0, 0, 0, 0, 0, 0, 41, // base_offset: 41
        ];
        if version >= 2 {
            b.extend_from_slice(&[0, 0, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x7b]); // log_append_time_ms: 1700000000123
        }
        b.extend_from_slice(&[
            0, 0, 0, 3, // index: 3
            0, 3, // error_code: UNKNOWN_TOPIC_OR_PARTITION
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // base_offset: -1
        ]);
        if version >= 2 {
            b.extend_from_slice(&[0xff; 8]); // log_append_time_ms: -1
        }
        if version >= 1 {
            b.extend_from_slice(&[0, 0, 0, 25]); // throttle_time_ms: 25
        }
        b
    }

    pub(crate) fn all() -> Vec<Golden> {
        (0..=2)
            .map(|version| {
                // v0 and v1 carry message format v0; v2 message format v1.
                let records = if version >= 2 { MESSAGE_SET_V1 } else { MESSAGE_SET_V0 };
                Golden {
                    key: ApiKey::Produce,
                    version,
                    request: request_bytes(records),
                    decoded_request: RequestKind::Produce(request(records)),
                    response: response_bytes(version),
                    decoded_response: ResponseKind::Produce(response(version)),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use kafka_protocol::messages::TransactionalId;
    use kafka_protocol::protocol::StrBytes;

    use super::*;

    #[test]
    fn records_are_a_slice_of_the_body_not_a_copy() {
        let body = Bytes::from(goldens::all()[0].request.clone());
        let req = decode_request(&mut Reader::new(body.clone()), 0).expect("decodes");
        let records = req.topic_data[0].partition_data[0].records.as_ref().expect("records");
        let range = body.as_ptr_range();
        assert!(range.contains(&records.as_ptr()), "records point into the request body");
    }

    #[test]
    fn a_transactional_id_cannot_be_sent_before_v3() {
        let req = ProduceRequest::default().with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("tx"))));
        let e = encode_request(&mut BytesMut::new(), 2, &req).expect_err("refused");
        assert_eq!(e, WireError::NotInVersion { field: "transactional_id", version: 2 });
    }

    #[test]
    fn fields_newer_than_the_version_are_left_out_of_the_response() {
        let resp = ProduceResponse::default().with_throttle_time_ms(9).with_responses(vec![TopicProduceResponse::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partition_responses(vec![PartitionProduceResponse::default()
                .with_log_append_time_ms(5)
                .with_log_start_offset(7)
                .with_error_message(Some(StrBytes::from_static_str("x")))])]);
        let len = |v| {
            let mut out = BytesMut::new();
            encode_response(&mut out, v, &resp).expect("encodes");
            out.len()
        };
        // 4 + (2 + 1) + 4 + (4 + 2 + 8), then +4 throttle (v1), +8 append time (v2)
        assert_eq!((len(0), len(1), len(2)), (25, 29, 37));
    }
}
