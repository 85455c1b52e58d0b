use kafka_protocol::messages::api_versions_response::{FinalizedFeatureKey, SupportedFeatureKey};
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::StrBytes;
use karst_protocol::codec::api_version_list;
use karst_protocol::error_codes as ec;

/// The feature KIP-890's transactions v2 are finalized under.
const TRANSACTION_VERSION: &str = "transaction.version";

/// The highest `transaction.version` Karst implements.
pub(crate) const TRANSACTION_VERSION_MAX: i16 = 2;

/// KIP-932's feature: share groups are on at level 1, as Kafka 4.1+ finalizes it
/// when they are enabled.
const SHARE_VERSION: &str = "share.version";
const SHARE_VERSION_LEVEL: i16 = 1;

/// The epoch of the finalized features: Karst's levels come from its
/// configuration, not from metadata records, so they have one epoch. A client
/// reads the finalized levels only from an epoch above -1.
const FEATURES_EPOCH: i64 = 0;

/// v3+ lists the features (tagged fields): `transaction.version` supported from
/// 0 to 2 and finalized at the configured level, as Kafka lists a feature above
/// level 0. Java clients 4.x and franz-go run transactions v2 when it is 2.
///
/// v5 (KIP-1242): a client names the cluster and node it means to reach, both or
/// neither (INVALID_REQUEST otherwise); a name that is not this broker's answers
/// REBOOTSTRAP_REQUIRED, so a client whose bootstrap address now leads to another
/// cluster or node starts over. Both error answers carry no API list, as Kafka's.
pub(crate) fn handle(
    req: ApiVersionsRequest,
    version: i16,
    cluster_id: &str,
    node_id: i32,
    transaction_version: i16,
) -> ApiVersionsResponse {
    if version >= 5 {
        if let Some(code) = target_error(&req, cluster_id, node_id) {
            return ApiVersionsResponse::default().with_error_code(code);
        }
    }
    let name = StrBytes::from_static_str(TRANSACTION_VERSION);
    let share = StrBytes::from_static_str(SHARE_VERSION);
    let supported = vec![
        SupportedFeatureKey::default().with_name(name.clone()).with_min_version(0).with_max_version(TRANSACTION_VERSION_MAX),
        SupportedFeatureKey::default().with_name(share.clone()).with_min_version(0).with_max_version(SHARE_VERSION_LEVEL),
    ];
    let mut finalized: Vec<FinalizedFeatureKey> = (transaction_version > 0)
        .then(|| {
            FinalizedFeatureKey::default()
                .with_name(name)
                .with_min_version_level(transaction_version)
                .with_max_version_level(transaction_version)
        })
        .into_iter()
        .collect();
    finalized.push(
        FinalizedFeatureKey::default()
            .with_name(share)
            .with_min_version_level(SHARE_VERSION_LEVEL)
            .with_max_version_level(SHARE_VERSION_LEVEL),
    );
    ApiVersionsResponse::default()
        .with_api_keys(api_version_list())
        .with_supported_features(supported)
        .with_finalized_features_epoch(FEATURES_EPOCH)
        .with_finalized_features(finalized)
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
        handle(req, version, "abc", 3, 2)
    }

    #[test]
    fn transaction_version_is_finalized_at_the_configured_level() {
        let req = ApiVersionsRequest::default();
        let r = handle(req.clone(), 3, "abc", 3, 2);
        assert_eq!(r.finalized_features_epoch, FEATURES_EPOCH);
        let f: Vec<(&str, i16, i16)> =
            r.finalized_features.iter().map(|f| (f.name.as_str(), f.min_version_level, f.max_version_level)).collect();
        assert_eq!(f, vec![(TRANSACTION_VERSION, 2, 2), (SHARE_VERSION, 1, 1)]);
        assert_eq!(r.supported_features.len(), 2);
        let off = handle(req, 3, "abc", 3, 0);
        assert!(off.finalized_features.iter().all(|f| f.name.as_str() != TRANSACTION_VERSION), "level 0 is not listed");
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
