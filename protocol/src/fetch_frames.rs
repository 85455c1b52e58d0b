//! Fetch responses as a list of buffers, so record batches go from the log's
//! memory maps to the socket without being copied into a response buffer.
//!
//! Everything but the records is encoded by kafka-protocol; only the outer
//! arrays and each partition's records field are laid out here, and a test
//! checks the result byte for byte against kafka-protocol's own encoding.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, FetchResponse, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::Encodable;

use crate::codec::encode_response;

/// Records smaller than this are copied: a separate buffer costs more than the copy.
const SPLICE_MIN: usize = 4096;
/// Newest version whose layout this module knows. v16-v18 only add tagged fields
/// (node endpoints at the top, request-side fields), so a response without node
/// endpoints is laid out as v15's; one with them is encoded whole.
const MAX_VERSION: i16 = 18;

fn put_uvarint(out: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        out.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

fn put_array_len(out: &mut BytesMut, n: usize, flexible: bool) {
    if flexible {
        put_uvarint(out, n as u64 + 1);
    } else {
        out.put_i32(n as i32);
    }
}

/// The response frame (size prefix included) as buffers to write in order.
pub fn encode_fetch_frames(correlation_id: i32, version: i16, resp: &FetchResponse) -> Result<Vec<Bytes>, String> {
    let large = resp.responses.iter().flat_map(|t| &t.partitions).any(|p| p.records.as_ref().is_some_and(|r| r.len() >= SPLICE_MIN));
    let simple = !large
        // Fetch v0-v3 records are down-converted copies, encoded by the legacy codec.
        || !(4..=MAX_VERSION).contains(&version)
        || !resp.node_endpoints.is_empty()
        || !resp.unknown_tagged_fields.is_empty()
        || resp.responses.iter().any(|t| !t.unknown_tagged_fields.is_empty());
    if simple {
        return encode_response(correlation_id, ApiKey::Fetch, version, &ResponseKind::Fetch(resp.clone())).map(|b| vec![b]);
    }
    let flexible = version >= 12;
    let mut frames: Vec<Bytes> = Vec::new();
    let mut cur = BytesMut::with_capacity(1024);
    cur.put_i32(0); // size, patched below
    let e = |e: anyhow::Error| format!("{e:#}");
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut cur, ApiKey::Fetch.response_header_version(version))
        .map_err(e)?;
    cur.put_i32(resp.throttle_time_ms);
    if version >= 7 {
        cur.put_i16(resp.error_code);
        cur.put_i32(resp.session_id);
    }
    put_array_len(&mut cur, resp.responses.len(), flexible);
    let mut total = 0usize;
    for t in &resp.responses {
        if version >= 13 {
            cur.put_slice(t.topic_id.as_bytes());
        } else if flexible {
            put_uvarint(&mut cur, t.topic.len() as u64 + 1);
            cur.put_slice(t.topic.as_bytes());
        } else {
            cur.put_i16(t.topic.len() as i16);
            cur.put_slice(t.topic.as_bytes());
        }
        put_array_len(&mut cur, t.partitions.len(), flexible);
        for p in &t.partitions {
            let records = p.records.clone().unwrap_or_default();
            let splice = records.len() >= SPLICE_MIN;
            if !splice || (flexible && !p.unknown_tagged_fields.is_empty()) {
                p.encode(&mut cur, version).map_err(e)?;
                continue;
            }
            // Encode with null records, then swap the null for a length and the batch bytes.
            let blank = p.clone().with_records(None);
            let start = cur.len();
            blank.encode(&mut cur, version).map_err(e)?;
            let tail: &[u8] = if flexible { &[0, 0] } else { &[0xff, 0xff, 0xff, 0xff] };
            if !cur[start..].ends_with(tail) {
                // Tagged fields are set: fall back to the copying encoder for this partition.
                cur.truncate(start);
                p.encode(&mut cur, version).map_err(e)?;
                continue;
            }
            cur.truncate(cur.len() - tail.len());
            if flexible {
                put_uvarint(&mut cur, records.len() as u64 + 1);
            } else {
                cur.put_i32(records.len() as i32);
            }
            total += cur.len();
            frames.push(std::mem::take(&mut cur).freeze());
            total += records.len();
            frames.push(records);
            if flexible {
                cur.put_u8(0); // partition tagged fields: none
            }
        }
        if flexible {
            cur.put_u8(0); // topic tagged fields: none
        }
    }
    if flexible {
        cur.put_u8(0); // response tagged fields: none
    }
    total += cur.len();
    frames.push(cur.freeze());
    let size = (total - 4) as i32;
    let mut first = BytesMut::from(&frames[0][..]);
    first[..4].copy_from_slice(&size.to_be_bytes());
    frames[0] = first.freeze();
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::StrBytes;

    fn response(version: i16) -> FetchResponse {
        let part = |i: i32, n: usize| {
            PartitionData::default()
                .with_partition_index(i)
                .with_high_watermark(100 + i as i64)
                .with_last_stable_offset(100)
                .with_log_start_offset(3)
                .with_records(Some(Bytes::from((0..n).map(|x| x as u8).collect::<Vec<u8>>())))
        };
        let topic = |name: &str| {
            let t = FetchableTopicResponse::default().with_partitions(vec![part(0, 10_000), part(1, 10), part(2, 0), part(3, 70_000)]);
            if version >= 13 {
                t.with_topic_id(uuid::Uuid::from_u128(0x1234_5678))
            } else {
                t.with_topic(TopicName(StrBytes::from_string(name.to_string())))
            }
        };
        let r = FetchResponse::default().with_throttle_time_ms(1).with_responses(vec![topic("a"), topic("bb")]);
        if version >= 7 {
            r.with_session_id(0)
        } else {
            r
        }
    }

    #[test]
    fn frames_equal_the_codec_encoding_at_every_version() {
        for v in 4..=MAX_VERSION {
            let r = response(v);
            let whole = encode_response(9, ApiKey::Fetch, v, &ResponseKind::Fetch(r.clone())).expect("codec");
            let frames = encode_fetch_frames(9, v, &r).expect("frames");
            assert!(frames.len() > 1, "v{v}: large records are spliced");
            let joined: Vec<u8> = frames.iter().flat_map(|f| f.iter().copied()).collect();
            assert_eq!(joined, whole.to_vec(), "v{v}");
        }
    }

    #[test]
    fn spliced_records_are_the_same_memory() {
        let r = response(11);
        let frames = encode_fetch_frames(1, 11, &r).expect("frames");
        let original = r.responses[0].partitions[0].records.as_ref().expect("records");
        assert!(frames.iter().any(|f| f.as_ptr() == original.as_ptr()), "no copy of the 10 KB batch");
    }
}
