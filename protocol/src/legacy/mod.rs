//! Hand-written codecs for request versions older than kafka-protocol speaks
//! (Kafka 4.0 removed them from its message specs), still sent by clients
//! configured for Kafka 0.8–0.10, such as sarama 1.22 with its default `Version`
//! (0.8.2) or 0.9 / 0.10.
//!
//! Each old version is decoded into kafka-protocol's request struct of the oldest
//! version it still speaks, with the values Kafka gives the fields added since, so
//! a handler can treat it like that version; responses are encoded from
//! kafka-protocol's response struct using only the fields the old version has.
//! The client side (`encode_request`, `decode_response`) is the mirror image, for
//! Karst's tooling and tests. One module per API; `wire` holds the checked
//! readers and writers they share. As with kafka-protocol's decoders, bytes after
//! a body's last field are ignored.
//!
//! [`LEGACY_VERSIONS`] lists what is here. Serving a version also needs its
//! handler and a row in `api_versions::SUPPORTED`; neither follows from this table.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};

use crate::api_versions::ApiSupport;
use wire::{Reader, Wire, WireError};

mod describe_configs;
mod fetch;
mod list_offsets;
mod offset_commit;
mod offset_fetch;
mod produce;
mod topics;
mod wire;

#[cfg(test)]
mod tests;

const fn range(key: ApiKey, min: i16, max: i16) -> ApiSupport {
    ApiSupport { key, min, max }
}

/// Every API version with a codec in this module, inclusive ranges. Each range
/// ends just below the lowest version kafka-protocol speaks, so for these APIs
/// `min` is the lowest version Karst's codec can decode at all
/// ([`lowest_version`]).
pub const LEGACY_VERSIONS: &[ApiSupport] = &[
    range(ApiKey::Produce, 0, 2),
    range(ApiKey::Fetch, 0, 3),
    range(ApiKey::ListOffsets, 0, 0),
    range(ApiKey::OffsetCommit, 0, 1),
    range(ApiKey::OffsetFetch, 0, 0),
    range(ApiKey::CreateTopics, 0, 1),
    range(ApiKey::DeleteTopics, 0, 0),
    range(ApiKey::DescribeConfigs, 0, 0),
];

/// Whether `version` of `key` is served by a codec in this module.
pub fn handles(key: ApiKey, version: i16) -> bool {
    LEGACY_VERSIONS.iter().any(|r| r.key == key && (r.min..=r.max).contains(&version))
}

/// The lowest version of `key` that Karst's codec (this module, then
/// kafka-protocol) can decode: the floor for advertising `key` once its handler
/// serves the old versions too.
pub fn lowest_version(key: ApiKey) -> i16 {
    LEGACY_VERSIONS.iter().find(|r| r.key == key).map_or(key.valid_versions().min, |r| r.min)
}

fn unsupported(key: ApiKey, version: i16) -> String {
    format!("no legacy codec for {key:?} v{version}")
}

/// Decodes a legacy request body.
pub fn decode(key: ApiKey, version: i16, body: Bytes) -> Result<RequestKind, String> {
    if !handles(key, version) {
        return Err(unsupported(key, version));
    }
    let r = &mut Reader::new(body);
    let decoded: Wire<RequestKind> = match key {
        ApiKey::Produce => produce::decode_request(r, version).map(RequestKind::Produce),
        ApiKey::Fetch => fetch::decode_request(r, version).map(RequestKind::Fetch),
        ApiKey::ListOffsets => list_offsets::decode_request(r, version).map(RequestKind::ListOffsets),
        ApiKey::OffsetCommit => offset_commit::decode_request(r, version).map(RequestKind::OffsetCommit),
        ApiKey::OffsetFetch => offset_fetch::decode_request(r, version).map(RequestKind::OffsetFetch),
        ApiKey::CreateTopics => topics::decode_create_request(r, version).map(RequestKind::CreateTopics),
        ApiKey::DeleteTopics => topics::decode_delete_request(r, version).map(RequestKind::DeleteTopics),
        ApiKey::DescribeConfigs => describe_configs::decode_request(r, version).map(RequestKind::DescribeConfigs),
        _ => return Err(unsupported(key, version)),
    };
    decoded.map_err(|e| format!("{key:?} v{version} request: {e}"))
}

/// Encodes a legacy response body.
pub fn encode(out: &mut BytesMut, version: i16, body: &ResponseKind) -> Result<(), String> {
    let key = response_key(body).filter(|&key| handles(key, version)).ok_or_else(|| no_codec_for("response", version))?;
    let encoded: Wire<()> = match body {
        ResponseKind::Produce(r) => produce::encode_response(out, version, r),
        ResponseKind::Fetch(r) => fetch::encode_response(out, version, r),
        ResponseKind::ListOffsets(r) => list_offsets::encode_response(out, version, r),
        ResponseKind::OffsetCommit(r) => offset_commit::encode_response(out, version, r),
        ResponseKind::OffsetFetch(r) => offset_fetch::encode_response(out, version, r),
        ResponseKind::CreateTopics(r) => topics::encode_create_response(out, version, r),
        ResponseKind::DeleteTopics(r) => topics::encode_delete_response(out, version, r),
        ResponseKind::DescribeConfigs(r) => describe_configs::encode_response(out, version, r),
        _ => Err(WireError::Codec(no_codec_for("response", version))),
    };
    encoded.map_err(|e| format!("{key:?} v{version} response: {e}"))
}

/// Client side: encodes a legacy request body.
pub fn encode_request(out: &mut BytesMut, version: i16, body: &RequestKind) -> Result<(), String> {
    let key = request_key(body).filter(|&key| handles(key, version)).ok_or_else(|| no_codec_for("request", version))?;
    let encoded: Wire<()> = match body {
        RequestKind::Produce(r) => produce::encode_request(out, version, r),
        RequestKind::Fetch(r) => fetch::encode_request(out, version, r),
        RequestKind::ListOffsets(r) => list_offsets::encode_request(out, version, r),
        RequestKind::OffsetCommit(r) => offset_commit::encode_request(out, version, r),
        RequestKind::OffsetFetch(r) => offset_fetch::encode_request(out, version, r),
        RequestKind::CreateTopics(r) => topics::encode_create_request(out, version, r),
        RequestKind::DeleteTopics(r) => topics::encode_delete_request(out, version, r),
        RequestKind::DescribeConfigs(r) => describe_configs::encode_request(out, version, r),
        _ => Err(WireError::Codec(no_codec_for("request", version))),
    };
    encoded.map_err(|e| format!("{key:?} v{version} request: {e}"))
}

/// Client side: decodes a legacy response body.
pub fn decode_response(key: ApiKey, version: i16, body: Bytes) -> Result<ResponseKind, String> {
    if !handles(key, version) {
        return Err(unsupported(key, version));
    }
    let r = &mut Reader::new(body);
    let decoded: Wire<ResponseKind> = match key {
        ApiKey::Produce => produce::decode_response(r, version).map(ResponseKind::Produce),
        ApiKey::Fetch => fetch::decode_response(r, version).map(ResponseKind::Fetch),
        ApiKey::ListOffsets => list_offsets::decode_response(r, version).map(ResponseKind::ListOffsets),
        ApiKey::OffsetCommit => offset_commit::decode_response(r, version).map(ResponseKind::OffsetCommit),
        ApiKey::OffsetFetch => offset_fetch::decode_response(r, version).map(ResponseKind::OffsetFetch),
        ApiKey::CreateTopics => topics::decode_create_response(r, version).map(ResponseKind::CreateTopics),
        ApiKey::DeleteTopics => topics::decode_delete_response(r, version).map(ResponseKind::DeleteTopics),
        ApiKey::DescribeConfigs => describe_configs::decode_response(r, version).map(ResponseKind::DescribeConfigs),
        _ => return Err(unsupported(key, version)),
    };
    decoded.map_err(|e| format!("{key:?} v{version} response: {e}"))
}

fn no_codec_for(what: &str, version: i16) -> String {
    format!("no legacy codec for this {what} at v{version}")
}

/// The API of a request body, for the kinds this module has codecs for.
fn request_key(body: &RequestKind) -> Option<ApiKey> {
    Some(match body {
        RequestKind::Produce(_) => ApiKey::Produce,
        RequestKind::Fetch(_) => ApiKey::Fetch,
        RequestKind::ListOffsets(_) => ApiKey::ListOffsets,
        RequestKind::OffsetCommit(_) => ApiKey::OffsetCommit,
        RequestKind::OffsetFetch(_) => ApiKey::OffsetFetch,
        RequestKind::CreateTopics(_) => ApiKey::CreateTopics,
        RequestKind::DeleteTopics(_) => ApiKey::DeleteTopics,
        RequestKind::DescribeConfigs(_) => ApiKey::DescribeConfigs,
        _ => return None,
    })
}

/// The API of a response body, for the kinds this module has codecs for.
fn response_key(body: &ResponseKind) -> Option<ApiKey> {
    Some(match body {
        ResponseKind::Produce(_) => ApiKey::Produce,
        ResponseKind::Fetch(_) => ApiKey::Fetch,
        ResponseKind::ListOffsets(_) => ApiKey::ListOffsets,
        ResponseKind::OffsetCommit(_) => ApiKey::OffsetCommit,
        ResponseKind::OffsetFetch(_) => ApiKey::OffsetFetch,
        ResponseKind::CreateTopics(_) => ApiKey::CreateTopics,
        ResponseKind::DeleteTopics(_) => ApiKey::DeleteTopics,
        ResponseKind::DescribeConfigs(_) => ApiKey::DescribeConfigs,
        _ => return None,
    })
}
