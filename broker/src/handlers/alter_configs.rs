//! AlterConfigs (replace a topic's overrides) and IncrementalAlterConfigs
//! (set or delete single keys, append to or subtract from list configs). Broker configs are static: set at start-up. There
//! are no dynamic broker overrides, so removing them (DELETE, or AlterConfigs with
//! none) succeeds with nothing to do, as Kafka answers for an override that is not
//! set: kafka-reassign-partitions --verify clears its throttles that way.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use karst_protocol::error_codes as ec;
use tracing::info;

use super::str_bytes;
use crate::broker::Broker;
use crate::topic_config;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

type Outcome = Result<(), (i16, String)>;

const STATIC: &str = "broker configs are static: set them in karst.toml, KARST_* or --set and restart";

/// Broker resource `name` must be "" (the cluster-wide default) or a registered broker.
fn check_broker(b: &Broker, name: &str) -> Outcome {
    if name.is_empty() {
        return Ok(());
    }
    match name.parse::<i32>() {
        Ok(id) if id == b.node_id || b.metadata.image().cluster.broker(id).is_some() => Ok(()),
        _ => Err((ec::INVALID_REQUEST, format!("`{name}` is not the id of a registered broker"))),
    }
}

/// Applies `change` to a resource's current overrides: a topic's, validating the
/// result; a broker's, which are always none, so a change that leaves none succeeds
/// with nothing to do and one that sets any is refused.
async fn alter(
    b: &Arc<Broker>,
    resource_type: i8,
    name: &str,
    validate_only: bool,
    change: impl FnOnce(&mut BTreeMap<String, String>) -> Outcome,
) -> Outcome {
    match resource_type {
        TOPIC => {}
        BROKER => {
            check_broker(b, name)?;
            let mut overrides = BTreeMap::new();
            change(&mut overrides)?;
            return if overrides.is_empty() { Ok(()) } else { Err((ec::INVALID_REQUEST, STATIC.into())) };
        }
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
                    (OP_APPEND | OP_SUBTRACT, Some(v)) if topic_config::is_list(c.name.as_str()) => {
                        // Kafka lays the change over the current value, or the
                        // config's default when the topic has none.
                        let name = c.name.as_str();
                        let current = configs.get(name).cloned().or_else(|| topic_config::default_value(name)).unwrap_or_default();
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
