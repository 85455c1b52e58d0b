//! AlterConfigs (replace a resource's overrides) and IncrementalAlterConfigs (set or
//! delete single keys, append to or subtract from list configs), on topics and on
//! brokers: a broker resource is the cluster-wide default ("") or the broker taking
//! the request, whose dynamic configs live in the controller quorum (KIP-226).

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use karst_protocol::error_codes as ec;
use tracing::info;

use super::str_bytes;
use crate::broker::Broker;
use crate::config::BrokerConfig;
use crate::security::{acl, authz};
use crate::{dynamic_config, topic_config};

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
/// KIP-848's GROUP config resource; Karst stores share groups' configs.
const GROUP: i8 = 32;
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

type Outcome = Result<(), (i16, String)>;

/// A broker resource must be "" (the cluster-wide default) or this broker, as Kafka
/// checks on the broker that takes the request.
fn check_broker(b: &Broker, name: &str) -> Outcome {
    if name.is_empty() {
        return Ok(());
    }
    match name.parse::<i32>() {
        Ok(id) if id == b.node_id => Ok(()),
        Ok(_) => Err((ec::INVALID_REQUEST, format!("Unexpected broker id, expected {}, but received {name}", b.node_id))),
        Err(_) => Err((ec::INVALID_REQUEST, format!("Node id must be an integer, but it is: {name}"))),
    }
}

/// For a list config of the resource type, the value APPEND and SUBTRACT start from
/// when none is set (the config's default); None for other configs.
fn list_default(resource_type: i8, key: &str) -> Option<String> {
    match resource_type {
        TOPIC => topic_config::is_list(key).then(|| topic_config::default_value(key).unwrap_or_default()),
        BROKER if dynamic_config::config_type(key) == topic_config::TYPE_LIST => {
            Some(BrokerConfig::default().describe().into_iter().find(|(k, _)| *k == key).map(|(_, v)| v).unwrap_or_default())
        }
        _ => None,
    }
}

/// Applies `change` to a resource's current overrides (a topic's, or a broker
/// resource's dynamic configs), checks the result and stores it.
async fn alter(
    b: &Arc<Broker>,
    resource_type: i8,
    name: &str,
    validate_only: bool,
    change: impl FnOnce(&mut BTreeMap<String, String>) -> Outcome,
) -> Outcome {
    let (acl_type, acl_name) = if resource_type == BROKER { (acl::CLUSTER, acl::CLUSTER_NAME) } else { (acl::TOPIC, name) };
    if matches!(resource_type, TOPIC | BROKER) && !authz::allowed(b, acl_type, acl_name, acl::ALTER_CONFIGS) {
        let code = if resource_type == BROKER { ec::CLUSTER_AUTHORIZATION_FAILED } else { 29 }; // TOPIC_AUTHORIZATION_FAILED
        return Err((code, "Authorization failed.".into()));
    }
    match resource_type {
        TOPIC => {}
        BROKER => {
            check_broker(b, name)?;
            let mut configs = b.metadata.image().cluster.broker_config(name).cloned().unwrap_or_default();
            change(&mut configs)?;
            dynamic_config::check(&configs, &b.config)?;
            if validate_only {
                return Ok(());
            }
            b.alter_broker_configs(name, configs).await.map_err(|e| match e {
                crate::errors::BrokerError::Metadata { code, message } => (code, message),
                other => (ec::UNKNOWN_SERVER_ERROR, other.to_string()),
            })?;
            info!(resource = name, "altered dynamic broker configs");
            return Ok(());
        }
        GROUP => return super::share::alter_group_configs(b, name, validate_only, change).await,
        other => return Err((ec::INVALID_REQUEST, format!("resource type {other} is not supported"))),
    }
    let image = b.metadata.image();
    let topic = image.topics.get(name).ok_or((ec::UNKNOWN_TOPIC_OR_PARTITION, format!("topic `{name}` does not exist")))?;
    let mut configs = topic.configs.clone();
    change(&mut configs)?;
    topic_config::validate_all(&configs).map_err(|e| (ec::INVALID_CONFIG, e))?;
    if validate_only {
        return Ok(());
    }
    b.alter_topic_configs(name, configs).await.map_err(|e| match e {
        crate::errors::BrokerError::Metadata { code, message } => (code, message),
        crate::errors::BrokerError::UnknownTopic(n) => (ec::UNKNOWN_TOPIC_OR_PARTITION, format!("topic `{n}` does not exist")),
        other => (ec::KAFKA_STORAGE_ERROR, other.to_string()),
    })?;
    info!(topic = name, "altered topic configs");
    Ok(())
}

pub(crate) async fn incremental(b: Arc<Broker>, req: IncrementalAlterConfigsRequest) -> IncrementalAlterConfigsResponse {
    use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
    let mut responses = Vec::with_capacity(req.resources.len());
    for res in req.resources {
        let outcome = alter(&b, res.resource_type, &res.resource_name, req.validate_only, |configs| {
            for c in &res.configs {
                match (c.config_operation, &c.value) {
                    (OP_SET, Some(v)) => {
                        configs.insert(c.name.to_string(), v.to_string());
                    }
                    (OP_DELETE, _) => {
                        configs.remove(c.name.as_str());
                    }
                    (OP_APPEND | OP_SUBTRACT, Some(v)) if list_default(res.resource_type, c.name.as_str()).is_some() => {
                        // Kafka lays the change over the current value, or the
                        // config's default when the resource has none.
                        let name = c.name.as_str();
                        let current = configs.get(name).cloned().or_else(|| list_default(res.resource_type, name)).unwrap_or_default();
                        let mut items: Vec<String> =
                            current.split(',').map(str::trim).filter(|i| !i.is_empty()).map(String::from).collect();
                        for item in v.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                            if c.config_operation == OP_APPEND {
                                if !items.iter().any(|i| i == item) {
                                    items.push(item.to_string());
                                }
                            } else {
                                items.retain(|i| i != item);
                            }
                        }
                        configs.insert(name.to_string(), items.join(","));
                    }
                    (OP_APPEND | OP_SUBTRACT, _) => {
                        return Err((
                            ec::INVALID_CONFIG,
                            format!("config value append or subtract is not allowed for config key: {}", c.name.as_str()),
                        ))
                    }
                    (OP_SET, None) => return Err((ec::INVALID_CONFIG, format!("no value to set for {}", c.name.as_str()))),
                    (op, _) => {
                        return Err((
                            ec::INVALID_REQUEST,
                            format!("operation {op} on {} is not supported (SET, DELETE, APPEND, SUBTRACT)", c.name.as_str()),
                        ))
                    }
                }
            }
            Ok(())
        })
        .await;
        let r = AlterConfigsResourceResponse::default().with_resource_type(res.resource_type).with_resource_name(res.resource_name);
        responses.push(match outcome {
            Ok(()) => r.with_error_message(None),
            Err((code, msg)) => r.with_error_code(code).with_error_message(Some(str_bytes(msg))),
        });
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

pub(crate) async fn replace(b: Arc<Broker>, req: AlterConfigsRequest) -> AlterConfigsResponse {
    use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
    let mut responses = Vec::with_capacity(req.resources.len());
    for res in req.resources {
        let outcome = alter(&b, res.resource_type, &res.resource_name, req.validate_only, |configs| {
            configs.clear();
            for c in &res.configs {
                if let Some(v) = &c.value {
                    configs.insert(c.name.to_string(), v.to_string());
                }
            }
            Ok(())
        })
        .await;
        let r = AlterConfigsResourceResponse::default().with_resource_type(res.resource_type).with_resource_name(res.resource_name);
        responses.push(match outcome {
            Ok(()) => r.with_error_message(None),
            Err((code, msg)) => r.with_error_code(code).with_error_message(Some(str_bytes(msg))),
        });
    }
    AlterConfigsResponse::default().with_responses(responses)
}
