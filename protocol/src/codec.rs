//! Request decoding and response encoding around kafka-protocol's message codecs.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use thiserror::Error;

use crate::api_versions::{self, SUPPORTED};
use crate::error_codes;
use crate::legacy;

/// A decoded request.
#[derive(Debug)]
pub struct Request {
    pub api_key: ApiKey,
    pub version: i16,
    pub correlation_id: i32,
    pub client_id: Option<StrBytes>,
    pub body: RequestKind,
}

/// Why a frame could not become a [`Request`].
#[derive(Debug, Error)]
pub enum DecodeError {
    /// Too short to hold api key, version and correlation id.
    #[error("request frame of {0} bytes is too short for a header")]
    TooShort(usize),
    #[error("unknown API key {api_key}")]
    UnknownApiKey { api_key: i16, correlation_id: i32 },
    /// ApiVersions at a version Karst does not know: answered per KIP-511.
    #[error("ApiVersions v{version} is not supported")]
    UnsupportedApiVersions { version: i16, correlation_id: i32 },
    #[error("{api_key:?} v{version} is not supported")]
    UnsupportedVersion { api_key: ApiKey, version: i16, correlation_id: i32 },
    #[error("malformed {api_key:?} v{version} request: {reason}")]
    Malformed { api_key: ApiKey, version: i16, correlation_id: i32, reason: String },
}

/// Decodes one request frame (without its size prefix).
pub fn decode_request(frame: Bytes) -> Result<Request, DecodeError> {
    if frame.len() < 8 {
        return Err(DecodeError::TooShort(frame.len()));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api_key = ApiKey::try_from(raw_key).map_err(|_| DecodeError::UnknownApiKey { api_key: raw_key, correlation_id })?;
    if !api_versions::is_supported(api_key, version) {
        return Err(if api_key == ApiKey::ApiVersions {
            DecodeError::UnsupportedApiVersions { version, correlation_id }
        } else {
            DecodeError::UnsupportedVersion { api_key, version, correlation_id }
        });
    }
    let malformed = |reason: String| DecodeError::Malformed { api_key, version, correlation_id, reason };
    let mut buf = frame;
    let header =
        RequestHeader::decode(&mut buf, api_key.request_header_version(version)).map_err(|e| malformed(format!("header: {e:#}")))?;
    let body = if legacy::handles(api_key, version) {
        legacy::decode(api_key, version, buf).map_err(malformed)?
    } else {
        RequestKind::decode(api_key, &mut buf, version).map_err(|e| malformed(format!("{e:#}")))?
    };
    Ok(Request { api_key, version, correlation_id, client_id: header.client_id, body })
}

/// Encodes a response frame (size prefix, header, body) for `api_key` at `version`.
pub fn encode_response(correlation_id: i32, api_key: ApiKey, version: i16, body: &ResponseKind) -> Result<Bytes, String> {
    let mut out = BytesMut::with_capacity(256);
    out.put_i32(0);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    header.encode(&mut out, api_key.response_header_version(version)).map_err(|e| format!("{e:#}"))?;
    if legacy::handles(api_key, version) {
        legacy::encode(&mut out, version, body)?;
    } else {
        body.encode(&mut out, version).map_err(|e| format!("{e:#}"))?;
    }
    let size = (out.len() - 4) as i32;
    out[..4].copy_from_slice(&size.to_be_bytes());
    Ok(out.freeze())
}

/// Encodes a request frame (size prefix, header, body): the client side, used by
/// Karst's admin tooling and tests.
pub fn encode_request(api_key: ApiKey, version: i16, correlation_id: i32, client_id: &str, body: &RequestKind) -> Result<Bytes, String> {
    let mut out = BytesMut::with_capacity(256);
    out.put_i32(0);
    let header = RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_string(client_id.to_string())));
    header.encode(&mut out, api_key.request_header_version(version)).map_err(|e| format!("{e:#}"))?;
    if legacy::handles(api_key, version) {
        legacy::encode_request(&mut out, version, body)?;
    } else {
        body.encode(&mut out, version).map_err(|e| format!("{e:#}"))?;
    }
    let size = (out.len() - 4) as i32;
    out[..4].copy_from_slice(&size.to_be_bytes());
    Ok(out.freeze())
}

/// Decodes a response frame (without its size prefix): correlation id and body.
pub fn decode_response(api_key: ApiKey, version: i16, frame: Bytes) -> Result<(i32, ResponseKind), String> {
    let mut buf = frame;
    let header = ResponseHeader::decode(&mut buf, api_key.response_header_version(version)).map_err(|e| format!("{e:#}"))?;
    let body = if legacy::handles(api_key, version) {
        legacy::decode_response(api_key, version, buf)?
    } else {
        ResponseKind::decode(api_key, &mut buf, version).map_err(|e| format!("{e:#}"))?
    };
    Ok((header.correlation_id, body))
}

/// The supported-API list as ApiVersions reports it.
pub fn api_version_list() -> Vec<ApiVersion> {
    SUPPORTED.iter().map(|s| ApiVersion::default().with_api_key(s.key as i16).with_min_version(s.min).with_max_version(s.max)).collect()
}

/// KIP-511: an ApiVersions request at an unknown version gets a v0 response with
/// UNSUPPORTED_VERSION and the supported list, so the client can retry lower.
pub fn encode_api_versions_fallback(correlation_id: i32) -> Bytes {
    let body = ApiVersionsResponse::default().with_error_code(error_codes::UNSUPPORTED_VERSION).with_api_keys(api_version_list());
    // v0 of a message built from defaults has no field that can fail to encode.
    encode_response(correlation_id, ApiKey::ApiVersions, 0, &ResponseKind::ApiVersions(body)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};
    use proptest::prelude::*;

    fn encode_request(key: ApiKey, version: i16, body: RequestKind) -> Bytes {
        let mut out = BytesMut::new();
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(77)
            .with_client_id(Some(StrBytes::from_static_str("t")));
        header.encode(&mut out, key.request_header_version(version)).expect("header");
        body.encode(&mut out, version).expect("body");
        out.freeze()
    }

    #[test]
    fn decodes_a_metadata_request() {
        let f = encode_request(ApiKey::Metadata, 9, RequestKind::Metadata(MetadataRequest::default()));
        let r = decode_request(f).expect("decodes");
        assert_eq!(r.api_key, ApiKey::Metadata);
        assert_eq!(r.correlation_id, 77);
        assert_eq!(r.client_id.as_deref(), Some("t"));
    }

    #[test]
    fn unknown_api_versions_version_is_kip511() {
        let mut f = encode_request(ApiKey::ApiVersions, 3, RequestKind::ApiVersions(ApiVersionsRequest::default())).to_vec();
        f[3] = 99;
        match decode_request(Bytes::from(f)) {
            Err(DecodeError::UnsupportedApiVersions { version: 99, correlation_id: 77 }) => {}
            other => panic!("{other:?}"),
        }
        let resp = encode_api_versions_fallback(77);
        // size, correlation id, error code 35
        assert_eq!(&resp[4..8], &77i32.to_be_bytes());
        assert_eq!(&resp[8..10], &35i16.to_be_bytes());
    }

    #[test]
    fn api_versions_v3_response_omits_empty_tagged_fields() {
        let body = ApiVersionsResponse::default().with_api_keys(api_version_list());
        let a = encode_response(1, ApiKey::ApiVersions, 3, &ResponseKind::ApiVersions(body)).expect("encodes");
        // header v0 (4) + error (2) + compact array len (1) + 7 bytes per key + throttle (4) + tag count (1)
        let expected = 4 + 4 + 2 + 1 + 7 * SUPPORTED.len() + 4 + 1;
        assert_eq!(a.len(), expected);
        assert_eq!(*a.last().expect("non-empty"), 0, "no tagged fields");
    }

    #[test]
    fn unsupported_version_and_unknown_key() {
        let f = encode_request(ApiKey::Metadata, 9, RequestKind::Metadata(MetadataRequest::default()));
        let mut v = f.to_vec();
        v[0] = 0x03;
        v[1] = 0xe8;
        assert!(matches!(decode_request(Bytes::from(v)), Err(DecodeError::UnknownApiKey { api_key: 1000, .. })));
        let mut v = f.to_vec();
        v[0] = 0;
        v[1] = 0; // Produce
        v[2] = 0;
        v[3] = 99; // v99
        assert!(matches!(decode_request(Bytes::from(v)), Err(DecodeError::UnsupportedVersion { .. })));
    }

    proptest! {
        #[test]
        fn arbitrary_frames_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), key in 0i16..93, version in 0i16..14) {
            let mut v = bytes;
            if v.len() >= 4 {
                v[..2].copy_from_slice(&key.to_be_bytes());
                v[2..4].copy_from_slice(&version.to_be_bytes());
            }
            let _ = decode_request(Bytes::from(v));
        }

        #[test]
        fn truncations_of_a_valid_request_never_panic(cut in 0usize..200) {
            let f = encode_request(ApiKey::Metadata, 12, RequestKind::Metadata(MetadataRequest::default()));
            let cut = cut.min(f.len());
            let _ = decode_request(f.slice(..cut));
        }
    }
}
