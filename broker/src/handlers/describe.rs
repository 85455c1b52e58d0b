//! DescribeConfigs and DescribeCluster.

use std::sync::Arc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::describe_configs_response::{DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym};
use kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse, DescribeConfigsRequest, DescribeConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use karst_protocol::error_codes as ec;

use super::str_bytes;
use crate::broker::Broker;
use crate::security::{acl, authz};
use crate::{dynamic_config, topic_config};

const TOPIC_AUTHORIZATION_FAILED: i16 = 29;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
/// A group's configs (KIP-848's GROUP resource): share groups' here.
const GROUP: i8 = 32;

/// Documentation is None: Karst carries no config documentation (Kafka's is None
/// too unless asked for).
fn entry(name: &str, value: Option<String>, source: i8) -> DescribeConfigsResourceResult {
    DescribeConfigsResourceResult::default()
        .with_name(str_bytes(name))
        .with_value(value.map(str_bytes))
        .with_config_source(source)
        .with_documentation(None)
}

/// One config entry with what the request's version carries: synonyms (v1+, when
/// asked for) and the type (v3+).
fn described(
    name: &str,
    value: Option<String>,
    source: i8,
    synonyms: Vec<(String, Option<String>, i8)>,
    config_type: i8,
    req: &DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResourceResult {
    let mut e = entry(name, value, source);
    if version >= 1 && req.include_synonyms {
        e = e.with_synonyms(
            synonyms
                .into_iter()
                .map(|(name, value, source)| {
                    DescribeConfigsSynonym::default().with_name(str_bytes(name)).with_value(value.map(str_bytes)).with_source(source)
                })
                .collect(),
        );
    }
    if version >= 3 {
        e = e.with_config_type(config_type);
    }
    e
}

pub(crate) fn describe_configs(b: &Arc<Broker>, req: DescribeConfigsRequest, version: i16) -> DescribeConfigsResponse {
    let image = b.metadata.image();
    let layers = b.config_layers();
    let results = req
        .resources
        .iter()
        .map(|res| {
            let r = DescribeConfigsResult::default().with_resource_type(res.resource_type).with_resource_name(res.resource_name.clone());
            let wanted =
                |k: &str| res.configuration_keys.as_ref().is_none_or(|keys| keys.is_empty() || keys.iter().any(|x| x.as_str() == k));
            let (acl_type, acl_name) =
                if res.resource_type == BROKER { (acl::CLUSTER, acl::CLUSTER_NAME) } else { (acl::TOPIC, res.resource_name.as_str()) };
            if matches!(res.resource_type, TOPIC | BROKER) && !authz::allowed(b, acl_type, acl_name, acl::DESCRIBE_CONFIGS) {
                let code = if res.resource_type == BROKER { ec::CLUSTER_AUTHORIZATION_FAILED } else { TOPIC_AUTHORIZATION_FAILED };
                return r.with_error_code(code).with_error_message(Some(str_bytes("Authorization failed.")));
            }
            match res.resource_type {
                TOPIC => match image.topics.get(res.resource_name.as_str()) {
                    None => r
                        .with_error_code(ec::UNKNOWN_TOPIC_OR_PARTITION)
                        .with_error_message(Some(str_bytes(format!("topic `{}` does not exist", res.resource_name.as_str())))),
                    Some(t) => {
                        let configs = topic_config::describe(&b.config, &layers, &t.configs)
                            .into_iter()
                            .filter(|d| wanted(d.name))
                            .map(|d| {
                                let synonyms = d.synonyms.into_iter().map(|(n, v, s)| (n.to_string(), v, s)).collect();
                                described(d.name, Some(d.value), d.source, synonyms, d.config_type, &req, version)
                            })
                            .collect();
                        r.with_configs(configs)
                    }
                },
                BROKER => {
                    let name = res.resource_name.as_str();
                    let all = if name.is_empty() {
                        dynamic_config::describe_default(&layers)
                    } else if name == b.node_id.to_string() {
                        dynamic_config::describe_broker(&b.config, &layers)
                    } else {
                        return r.with_error_code(ec::INVALID_REQUEST).with_error_message(Some(str_bytes(format!(
                            "Unexpected broker id, expected {}, but received {name}",
                            b.node_id
                        ))));
                    };
                    let configs = all
                        .into_iter()
                        .filter(|d| wanted(&d.name))
                        .map(|d| {
                            described(&d.name, d.value, d.source, d.synonyms, d.config_type, &req, version)
                                .with_read_only(d.read_only)
                                .with_is_sensitive(d.sensitive)
                        })
                        .collect();
                    r.with_configs(configs)
                }
                GROUP => match super::share::describe_group_configs(b, res.resource_name.as_str()) {
                    Err((code, msg)) => r.with_error_code(code).with_error_message(Some(str_bytes(msg))),
                    Ok(all) => r.with_configs(
                        all.into_iter()
                            .filter(|(name, ..)| wanted(name))
                            .map(|(name, value, source, config_type)| {
                                described(name, Some(value), source, Vec::new(), config_type, &req, version)
                            })
                            .collect(),
                    ),
                },
                other => r
                    .with_error_code(ec::INVALID_REQUEST)
                    .with_error_message(Some(str_bytes(format!("resource type {other} is not supported")))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// DescribeCluster: the live brokers on the request's listener; from v2 (KIP-1073)
/// each says whether it is fenced, and `include_fenced_brokers` adds the registered
/// brokers that are, as Kafka answers.
pub(crate) fn describe_cluster(b: &Arc<Broker>, req: DescribeClusterRequest, version: i16) -> DescribeClusterResponse {
    let image = b.metadata.image();
    let fenced = |id: i32| image.cluster.broker(id).is_some_and(|r| r.fenced);
    let describe = |id: i32, host: String, port: i32, rack: Option<String>| {
        DescribeClusterBroker::default()
            .with_broker_id(BrokerId(id))
            .with_host(str_bytes(host))
            .with_port(port)
            .with_rack(rack.map(str_bytes))
            .with_is_fenced(version >= 2 && fenced(id))
    };
    let mut brokers: Vec<DescribeClusterBroker> =
        super::metadata::live_brokers(b).into_iter().map(|(id, host, port, rack)| describe(id, host, port, rack)).collect();
    if version >= 2 && req.include_fenced_brokers {
        let listener = super::metadata::request_listener();
        let listed: Vec<i32> = brokers.iter().map(|x| x.broker_id.0).collect();
        for r in image.cluster.brokers.values().filter(|r| r.fenced && !listed.contains(&r.id)) {
            if let Some(l) = super::endpoint(&r.listeners, listener.as_deref()) {
                brokers.push(describe(r.id, l.host.clone(), i32::from(l.port), r.rack.clone()));
            }
        }
        brokers.sort_by_key(|x| x.broker_id.0);
    }
    // Every broker takes admin requests and routes them to the controller quorum.
    let resp = DescribeClusterResponse::default()
        .with_cluster_id(StrBytes::from_string(b.cluster_id.clone()))
        .with_controller_id(BrokerId(super::metadata::controller_id(b)))
        .with_brokers(brokers);
    if req.include_cluster_authorized_operations {
        resp.with_cluster_authorized_operations(super::authorized::cluster(b))
    } else {
        resp
    }
}
