use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use karst_protocol::codec::api_version_list;

/// Supported features stay empty: librdkafka 2.0 fails to parse non-empty
/// tagged feature fields, and Kafka omits them when empty too.
pub(crate) fn handle(_req: ApiVersionsRequest, _version: i16) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(api_version_list())
}
