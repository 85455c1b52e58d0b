//! Hand-written codecs for request versions older than kafka-protocol speaks,
//! still sent by clients configured for old Kafka versions (sarama 1.22's
//! ClusterAdmin.ListTopics sends DescribeConfigs v0; its offset manager sends
//! OffsetCommit v1 unless a retention time is configured).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::describe_configs_response::{DescribeConfigsResourceResult, DescribeConfigsResult};
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::{
    ApiKey, DescribeConfigsRequest, DescribeConfigsResponse, GroupId, OffsetCommitRequest, OffsetCommitResponse, RequestKind, ResponseKind,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

/// Config source value meaning "a default" (DescribeConfigs v1+).
const SOURCE_DEFAULT: i8 = 5;

/// Whether `version` of `key` is served by a codec in this module.
pub fn handles(key: ApiKey, version: i16) -> bool {
    matches!((key, version), (ApiKey::DescribeConfigs, 0) | (ApiKey::OffsetCommit, 0 | 1))
}

/// OffsetCommit v0/v1 responses are laid out exactly as v2's.
const OFFSET_COMMIT_RESPONSE_AS: i16 = 2;

fn decode_offset_commit(version: i16, b: &mut Bytes) -> Option<OffsetCommitRequest> {
    let group = get_string(b)??;
    let mut r = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group)))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(StrBytes::default())
        .with_group_instance_id(None);
    if version >= 1 {
        if b.remaining() < 4 {
            return None;
        }
        r.generation_id_or_member_epoch = b.get_i32();
        r.member_id = StrBytes::from_string(get_string(b)??);
    }
    if b.remaining() < 4 {
        return None;
    }
    let topics = b.get_i32();
    for _ in 0..topics.max(0) {
        let name = get_string(b)??;
        if b.remaining() < 4 {
            return None;
        }
        let n = b.get_i32();
        let mut partitions = Vec::new();
        for _ in 0..n.max(0) {
            if b.remaining() < 12 {
                return None;
            }
            let index = b.get_i32();
            let offset = b.get_i64();
            if version >= 1 {
                // The per-partition commit timestamp; the broker uses its own clock.
                if b.remaining() < 8 {
                    return None;
                }
                b.get_i64();
            }
            let metadata = get_string(b)?.map(StrBytes::from_string);
            partitions.push(
                OffsetCommitRequestPartition::default()
                    .with_partition_index(index)
                    .with_committed_offset(offset)
                    .with_committed_metadata(metadata),
            );
        }
        r.topics.push(OffsetCommitRequestTopic::default().with_name(TopicName(StrBytes::from_string(name))).with_partitions(partitions));
    }
    Some(r)
}

fn encode_offset_commit(out: &mut BytesMut, version: i16, r: &OffsetCommitRequest) {
    put_string(out, &r.group_id);
    if version >= 1 {
        out.put_i32(r.generation_id_or_member_epoch);
        put_string(out, &r.member_id);
    }
    out.put_i32(r.topics.len() as i32);
    for t in &r.topics {
        put_string(out, &t.name);
        out.put_i32(t.partitions.len() as i32);
        for p in &t.partitions {
            out.put_i32(p.partition_index);
            out.put_i64(p.committed_offset);
            if version >= 1 {
                out.put_i64(-1);
            }
            put_nullable(out, p.committed_metadata.as_deref());
        }
    }
}

/// Decodes a legacy request body.
pub fn decode(key: ApiKey, version: i16, body: Bytes) -> Result<RequestKind, String> {
    match (key, version) {
        (ApiKey::DescribeConfigs, 0) => {
            // v1 is v0 plus a trailing `include_synonyms` boolean.
            let mut v1 = BytesMut::with_capacity(body.len() + 1);
            v1.extend_from_slice(&body);
            v1.put_u8(0);
            let mut b = v1.freeze();
            DescribeConfigsRequest::decode(&mut b, 1).map(RequestKind::DescribeConfigs).map_err(|e| format!("{e:#}"))
        }
        (ApiKey::OffsetCommit, 0 | 1) => {
            let mut b = body;
            decode_offset_commit(version, &mut b).map(RequestKind::OffsetCommit).ok_or_else(|| "truncated OffsetCommit request".to_string())
        }
        _ => Err(format!("no legacy codec for {key:?} v{version}")),
    }
}

/// Client side: encodes a legacy request body.
pub fn encode_request(out: &mut BytesMut, version: i16, body: &RequestKind) -> Result<(), String> {
    match (body, version) {
        (RequestKind::DescribeConfigs(r), 0) => {
            let mut v1 = BytesMut::new();
            r.encode(&mut v1, 1).map_err(|e| format!("{e:#}"))?;
            // Drop v1's trailing `include_synonyms`.
            v1.truncate(v1.len().saturating_sub(1));
            out.extend_from_slice(&v1);
            Ok(())
        }
        (RequestKind::OffsetCommit(r), 0 | 1) => {
            encode_offset_commit(out, version, r);
            Ok(())
        }
        _ => Err(format!("no legacy codec for this request at v{version}")),
    }
}

/// Client side: decodes a legacy response body.
pub fn decode_response(key: ApiKey, version: i16, mut b: Bytes) -> Result<ResponseKind, String> {
    match (key, version) {
        (ApiKey::DescribeConfigs, 0) => {
            decode_describe_configs_v0(&mut b).ok_or_else(|| "truncated DescribeConfigs v0 response".to_string())
        }
        (ApiKey::OffsetCommit, 0 | 1) => {
            OffsetCommitResponse::decode(&mut b, OFFSET_COMMIT_RESPONSE_AS).map(ResponseKind::OffsetCommit).map_err(|e| format!("{e:#}"))
        }
        _ => Err(format!("no legacy codec for {key:?} v{version}")),
    }
}

fn get_string(b: &mut Bytes) -> Option<Option<String>> {
    if b.remaining() < 2 {
        return None;
    }
    let n = b.get_i16();
    if n < 0 {
        return Some(None);
    }
    let n = n as usize;
    if b.remaining() < n {
        return None;
    }
    String::from_utf8(b.split_to(n).to_vec()).ok().map(Some)
}

fn decode_describe_configs_v0(b: &mut Bytes) -> Option<ResponseKind> {
    let mut r = DescribeConfigsResponse::default();
    if b.remaining() < 8 {
        return None;
    }
    r.throttle_time_ms = b.get_i32();
    let n = b.get_i32().max(0);
    for _ in 0..n {
        if b.remaining() < 2 {
            return None;
        }
        let error_code = b.get_i16();
        let error_message = get_string(b)?.map(StrBytes::from_string);
        if b.remaining() < 1 {
            return None;
        }
        let resource_type = b.get_i8();
        let resource_name = StrBytes::from_string(get_string(b)??);
        if b.remaining() < 4 {
            return None;
        }
        let m = b.get_i32().max(0);
        let mut configs = Vec::new();
        for _ in 0..m {
            let name = StrBytes::from_string(get_string(b)??);
            let value = get_string(b)?.map(StrBytes::from_string);
            if b.remaining() < 3 {
                return None;
            }
            let read_only = b.get_u8() != 0;
            let is_default = b.get_u8() != 0;
            let is_sensitive = b.get_u8() != 0;
            configs.push(
                DescribeConfigsResourceResult::default()
                    .with_name(name)
                    .with_value(value)
                    .with_read_only(read_only)
                    .with_config_source(if is_default { SOURCE_DEFAULT } else { 1 })
                    .with_is_sensitive(is_sensitive),
            );
        }
        r.results.push(
            DescribeConfigsResult::default()
                .with_error_code(error_code)
                .with_error_message(error_message)
                .with_resource_type(resource_type)
                .with_resource_name(resource_name)
                .with_configs(configs),
        );
    }
    Some(ResponseKind::DescribeConfigs(r))
}

fn put_string(out: &mut BytesMut, s: &str) {
    let n = s.len().min(i16::MAX as usize);
    out.put_i16(n as i16);
    out.put_slice(&s.as_bytes()[..n]);
}

fn put_nullable(out: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_string(out, s),
        None => out.put_i16(-1),
    }
}

/// Encodes a legacy response body.
pub fn encode(out: &mut BytesMut, version: i16, body: &ResponseKind) -> Result<(), String> {
    match (body, version) {
        (ResponseKind::DescribeConfigs(r), 0) => {
            encode_describe_configs_v0(out, r);
            Ok(())
        }
        (ResponseKind::OffsetCommit(r), 0 | 1) => r.encode(out, OFFSET_COMMIT_RESPONSE_AS).map_err(|e| format!("{e:#}")),
        _ => Err(format!("no legacy codec for this response at v{version}")),
    }
}

fn encode_describe_configs_v0(out: &mut BytesMut, r: &DescribeConfigsResponse) {
    out.put_i32(r.throttle_time_ms);
    out.put_i32(r.results.len() as i32);
    for res in &r.results {
        out.put_i16(res.error_code);
        put_nullable(out, res.error_message.as_deref());
        out.put_i8(res.resource_type);
        put_string(out, &res.resource_name);
        out.put_i32(res.configs.len() as i32);
        for c in &res.configs {
            put_string(out, &c.name);
            put_nullable(out, c.value.as_deref());
            out.put_u8(c.read_only as u8);
            out.put_u8((c.config_source == SOURCE_DEFAULT) as u8);
            out.put_u8(c.is_sensitive as u8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_configs_v0_request_decodes() {
        // one resource: type 2, name "t", keys null
        let body = Bytes::from_static(&[0, 0, 0, 1, 2, 0, 1, b't', 0xff, 0xff, 0xff, 0xff]);
        let RequestKind::DescribeConfigs(r) = decode(ApiKey::DescribeConfigs, 0, body).expect("decodes") else { panic!() };
        assert_eq!(r.resources.len(), 1);
        assert_eq!(r.resources[0].resource_name.as_str(), "t");
        assert!(r.resources[0].configuration_keys.is_none());
    }

    #[test]
    fn describe_configs_v0_response_layout() {
        let r = DescribeConfigsResponse::default().with_results(vec![DescribeConfigsResult::default()
            .with_error_message(None)
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("t"))
            .with_configs(vec![DescribeConfigsResourceResult::default()
                .with_name(StrBytes::from_static_str("k"))
                .with_value(Some(StrBytes::from_static_str("v")))
                .with_config_source(SOURCE_DEFAULT)])]);
        let mut out = BytesMut::new();
        encode(&mut out, 0, &ResponseKind::DescribeConfigs(r)).expect("encodes");
        let expected: &[u8] = &[0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0xff, 0xff, 2, 0, 1, b't', 0, 0, 0, 1, 0, 1, b'k', 0, 1, b'v', 0, 1, 0];
        assert_eq!(&out[..], expected);
        let ResponseKind::DescribeConfigs(back) = decode_response(ApiKey::DescribeConfigs, 0, out.freeze()).expect("decodes") else {
            panic!()
        };
        assert_eq!(back.results[0].configs[0].config_source, SOURCE_DEFAULT);
        assert_eq!(back.results[0].configs[0].value.as_deref(), Some("v"));
    }

    #[test]
    fn offset_commit_v0_v1_round_trip() {
        for v in 0..=1 {
            let req = OffsetCommitRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("g")))
                .with_generation_id_or_member_epoch(if v == 1 { 4 } else { -1 })
                .with_member_id(StrBytes::from_static_str(if v == 1 { "m" } else { "" }))
                .with_group_instance_id(None)
                .with_topics(vec![OffsetCommitRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("t")))
                    .with_partitions(vec![OffsetCommitRequestPartition::default()
                        .with_partition_index(2)
                        .with_committed_offset(77)
                        .with_committed_metadata(Some(StrBytes::from_static_str("x")))])]);
            let mut out = BytesMut::new();
            encode_request(&mut out, v, &RequestKind::OffsetCommit(req.clone())).expect("encodes");
            let RequestKind::OffsetCommit(back) = decode(ApiKey::OffsetCommit, v, out.freeze()).expect("decodes") else { panic!() };
            assert_eq!(back.generation_id_or_member_epoch, req.generation_id_or_member_epoch);
            assert_eq!(back.member_id, req.member_id);
            assert_eq!(back.topics[0].partitions[0].committed_offset, 77);
            assert_eq!(back.topics[0].partitions[0].committed_metadata.as_deref(), Some("x"));
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for n in 0..20 {
            let _ = decode(ApiKey::OffsetCommit, 1, Bytes::from(vec![0u8; n]));
            let _ = decode(ApiKey::OffsetCommit, 0, Bytes::from(vec![0xffu8; n]));
        }
        assert!(decode(ApiKey::DescribeConfigs, 0, Bytes::from_static(&[0, 0, 0, 9])).is_err());
        assert!(decode(ApiKey::Produce, 0, Bytes::new()).is_err());
    }
}
