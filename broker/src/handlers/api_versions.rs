use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use karst_protocol::codec::api_version_list;
use karst_protocol::error_codes as ec;

/// Supported features stay empty: librdkafka 2.0 fails to parse non-empty
/// tagged feature fields, and Kafka omits them when empty too.
///
/// v5 (KIP-1242): a client names the cluster and node it means to reach, both or
/// neither (INVALID_REQUEST otherwise); a name that is not this broker's answers
/// REBOOTSTRAP_REQUIRED, so a client whose bootstrap address now leads to another
/// cluster or node starts over. Both error answers carry no API list, as Kafka's.
pub(crate) fn handle(req: ApiVersionsRequest, version: i16, cluster_id: &str, node_id: i32) -> ApiVersionsResponse {
    if version >= 5 {
        if let Some(code) = target_error(&req, cluster_id, node_id) {
            return ApiVersionsResponse::default().with_error_code(code);
        }
    }
    ApiVersionsResponse::default().with_api_keys(api_version_list())
}

/// Kafka's `ApiVersionsRequest.isValid` and `clusterIdOrNodeIdIsInvalid`, in that order.
fn target_error(req: &ApiVersionsRequest, cluster_id: &str, node_id: i32) -> Option<i16> {
    match (&req.cluster_id, req.node_id) {
        (None, -1) => None,
        (None, _) | (Some(_), -1) => Some(ec::INVALID_REQUEST),
        (Some(c), n) if c.as_str() != cluster_id || n != node_id => Some(ec::REBOOTSTRAP_REQUIRED),
        (Some(_), _) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::StrBytes;

    fn ask(cluster: Option<&'static str>, node: i32, version: i16) -> ApiVersionsResponse {
        let req = ApiVersionsRequest::default().with_cluster_id(cluster.map(StrBytes::from_static_str)).with_node_id(node);
        handle(req, version, "abc", 3)
    }

    #[test]
    fn v5_checks_the_cluster_and_node_the_client_names() {
        assert_eq!(ask(None, -1, 5).error_code, ec::NONE);
        assert!(!ask(None, -1, 5).api_keys.is_empty());
        assert_eq!(ask(Some("abc"), 3, 5).error_code, ec::NONE);
        assert_eq!(ask(Some("abc"), 4, 5).error_code, ec::REBOOTSTRAP_REQUIRED);
        assert_eq!(ask(Some("xyz"), 3, 5).error_code, ec::REBOOTSTRAP_REQUIRED);
        assert!(ask(Some("xyz"), 3, 5).api_keys.is_empty());
        assert_eq!(ask(None, 3, 5).error_code, ec::INVALID_REQUEST);
        assert_eq!(ask(Some("abc"), -1, 5).error_code, ec::INVALID_REQUEST);
        // Before v5 the fields do not exist on the wire: nothing to check.
        assert_eq!(ask(Some("xyz"), 3, 4).error_code, ec::NONE);
    }
}
