//! Topic administration: CreateTopics, DeleteTopics, CreatePartitions, DeleteRecords.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse, DeleteRecordsRequest,
    DeleteRecordsResponse, DeleteTopicsRequest, DeleteTopicsResponse, TopicName,
};
use karst_protocol::error_codes as ec;
use karst_storage::StorageError;
use tracing::{info, warn};
use uuid::Uuid;

use super::{str_bytes, topic_name};
use crate::broker::Broker;
use crate::errors::BrokerError;
use crate::group::OFFSETS_TOPIC;
use crate::metadata::{BrokerId, ClusterImage, TopicMeta};
use crate::partition::PartitionError;
use crate::topic_config;
use crate::topic_name::invalid_reason;

/// Kafka's refusal of a topic: code plus message.
type Refusal = (i16, String);

/// A topic to create and, when the request gave them, its replica assignments.
type Plan = (TopicMeta, Option<Vec<Vec<BrokerId>>>);

/// Checks a CreatableTopic and turns it into the metadata to create.
fn plan_topic(b: &Broker, t: &CreatableTopic) -> Result<Plan, Refusal> {
    let name = t.name.as_str();
    if let Some(reason) = invalid_reason(name) {
        return Err((ec::INVALID_TOPIC_EXCEPTION, reason));
    }
    let image = b.metadata.image();
    if image.topics.contains_key(name) {
        return Err((ec::TOPIC_ALREADY_EXISTS, format!("topic `{name}` already exists")));
    }
    let nodes = i16::try_from(image.cluster.unfenced_brokers().count()).unwrap_or(i16::MAX);
    let mut assignments = None;
    let (partitions, replication_factor) = if t.assignments.is_empty() {
        let partitions = match t.num_partitions {
            -1 => b.config.num_partitions,
            n if n >= 1 => n,
            n => return Err((ec::INVALID_PARTITIONS, format!("number of partitions must be at least 1, got {n}"))),
        };
        let rf = match t.replication_factor {
            -1 => b.config.default_replication_factor,
            n if n >= 1 => n,
            n => return Err((ec::INVALID_REPLICATION_FACTOR, format!("replication factor must be at least 1, got {n}"))),
        };
        (partitions, rf)
    } else {
        if t.num_partitions != -1 || t.replication_factor != -1 {
            return Err((ec::INVALID_REQUEST, "give either assignments or partition count and replication factor".into()));
        }
        let mut seen: Vec<i32> = t.assignments.iter().map(|a| a.partition_index).collect();
        seen.sort_unstable();
        if seen.iter().enumerate().any(|(i, p)| *p != i as i32) {
            return Err((ec::INVALID_REPLICA_ASSIGNMENT, "partition indexes must be 0..n without gaps".into()));
        }
        let rf = t.assignments[0].broker_ids.len() as i16;
        let mut sorted: Vec<_> = t.assignments.iter().collect();
        sorted.sort_by_key(|a| a.partition_index);
        for a in &sorted {
            if a.broker_ids.len() as i16 != rf {
                return Err((ec::INVALID_REPLICA_ASSIGNMENT, "every partition needs the same number of replicas".into()));
            }
            if let Some(unknown) = a.broker_ids.iter().find(|id| image.cluster.broker(id.0).is_none()) {
                return Err((ec::INVALID_REPLICA_ASSIGNMENT, format!("broker {} is not registered", unknown.0)));
            }
        }
        assignments = Some(sorted.iter().map(|a| a.broker_ids.iter().map(|id| id.0).collect()).collect());
        (t.assignments.len() as i32, rf)
    };
    if replication_factor > nodes {
        return Err((
            ec::INVALID_REPLICATION_FACTOR,
            format!("replication factor {replication_factor} is larger than the {nodes} available broker(s)"),
        ));
    }
    let mut configs = BTreeMap::new();
    for c in &t.configs {
        let Some(value) = c.value.as_ref() else {
            continue;
        };
        topic_config::validate(c.name.as_str(), value.as_str()).map_err(|e| (ec::INVALID_CONFIG, e))?;
        configs.insert(c.name.to_string(), value.to_string());
    }
    topic_config::validate_all(&configs).map_err(|e| (ec::INVALID_CONFIG, e))?;
    Ok((TopicMeta { name: name.to_string(), id: Uuid::new_v4(), partitions, replication_factor, configs }, assignments))
}

pub(crate) async fn create_topics(b: Arc<Broker>, req: CreateTopicsRequest, version: i16, client_id: String) -> CreateTopicsResponse {
    let mut throttle = 0;
    let mut results = Vec::with_capacity(req.topics.len());
    let mut names: Vec<String> = Vec::new();
    let mut plans = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let duplicate = names.iter().any(|n| n == t.name.as_str());
        names.push(t.name.to_string());
        plans.push(if duplicate {
            Err((ec::INVALID_REQUEST, format!("topic `{}` appears more than once in the request", t.name.as_str())))
        } else if !crate::security::authz::may_create_topic(&b, t.name.as_str()) {
            Err((29, "Authorization failed.".to_string())) // TOPIC_AUTHORIZATION_FAILED
        } else {
            plan_topic(&b, t)
        });
    }
    // Kafka's controller counts the records of the whole request before it
    // places a single replica, and refuses all of it when they are too many.
    let records = plans.iter().flatten().map(|(m, _)| crate::limits::topic_records(m.partitions, m.configs.len())).sum();
    let too_large = crate::limits::check_records(records).err();
    for (t, mut plan) in req.topics.iter().zip(plans) {
        let mut r = CreatableTopicResult::default().with_name(t.name.clone()).with_error_message(None);
        if let (Ok((meta, _)), None, false) = (&plan, &too_large, req.validate_only) {
            if let Err(refusal) = super::take_mutations(&b, &client_id, meta.partitions, version >= 6, &mut throttle) {
                plan = Err(refusal);
            }
        }
        let outcome = match (plan, &too_large) {
            (Err(refusal), _) => Err(refusal),
            (Ok(_), Some(refusal)) => Err(refusal.clone()),
            (Ok((meta, _)), None) if req.validate_only => Ok(meta),
            (Ok((meta, assignments)), None) => match b.create_topic_assigned(meta.clone(), assignments).await {
                Ok(()) => {
                    info!(topic = %meta.name, partitions = meta.partitions, "created topic");
                    Ok(meta)
                }
                Err(BrokerError::TopicExists(n)) => Err((ec::TOPIC_ALREADY_EXISTS, format!("topic `{n}` already exists"))),
                Err(BrokerError::Metadata { code, message }) => Err((code, message)),
                Err(e) => {
                    warn!(topic = %meta.name, "creating topic failed: {e}");
                    Err((ec::KAFKA_STORAGE_ERROR, e.to_string()))
                }
            },
        };
        match outcome {
            Ok(meta)
                if version >= 5
                    && !crate::security::authz::may(
                        &b,
                        crate::security::acl::TOPIC,
                        &meta.name,
                        crate::security::acl::DESCRIBE_CONFIGS,
                    ) =>
            {
                // As Kafka: created, but its configs are not shown to whom may not describe them.
                r = r.with_topic_config_error_code(29).with_num_partitions(-1).with_replication_factor(-1).with_configs(Some(Vec::new()));
                if version >= 7 {
                    r = r.with_topic_id(meta.id);
                }
            }
            Ok(meta) => {
                if version >= 5 {
                    let configs = topic_config::describe(&b.config, &b.config_layers(), &meta.configs)
                        .into_iter()
                        .map(|d| {
                            CreatableTopicConfigs::default()
                                .with_name(str_bytes(d.name))
                                .with_value(Some(str_bytes(d.value)))
                                .with_config_source(d.source)
                        })
                        .collect();
                    r = r.with_num_partitions(meta.partitions).with_replication_factor(meta.replication_factor).with_configs(Some(configs));
                }
                if version >= 7 {
                    r = r.with_topic_id(meta.id);
                }
            }
            Err((code, message)) => {
                r = r.with_error_code(code);
                if version >= 1 {
                    r = r.with_error_message(Some(str_bytes(message)));
                }
                if version >= 5 {
                    r = r.with_num_partitions(-1).with_replication_factor(-1);
                }
            }
        }
        results.push(r);
    }
    super::mutations_throttled(throttle);
    CreateTopicsResponse::default().with_topics(results).with_throttle_time_ms(if version >= 2 { throttle } else { 0 })
}

pub(crate) async fn delete_topics(b: Arc<Broker>, req: DeleteTopicsRequest, version: i16, client_id: String) -> DeleteTopicsResponse {
    let mut throttle = 0;
    let image = b.metadata.image();
    let targets: Vec<(Option<TopicName>, Uuid)> = if version >= 6 {
        req.topics.into_iter().map(|t| (t.name, t.topic_id)).collect()
    } else {
        req.topic_names.into_iter().map(|n| (Some(n), Uuid::nil())).collect()
    };
    let mut responses = Vec::with_capacity(targets.len());
    for (name, id) in targets {
        responses.push(delete_one(&b, &image, name, id, version, &client_id, &mut throttle).await);
    }
    super::mutations_throttled(throttle);
    DeleteTopicsResponse::default().with_responses(responses).with_throttle_time_ms(if version >= 1 { throttle } else { 0 })
}

async fn delete_one(
    b: &Arc<Broker>,
    image: &ClusterImage,
    name: Option<TopicName>,
    id: Uuid,
    version: i16,
    client_id: &str,
    throttle: &mut i32,
) -> DeletableTopicResult {
    let local = match &name {
        Some(n) => image.topics.get(n.as_str()).map(|t| t.name.clone()),
        None => image.topic_by_id(id).map(|t| t.name.clone()),
    };
    let mut r = DeletableTopicResult::default().with_name(name.clone().or_else(|| local.as_deref().map(topic_name)));
    if version >= 6 {
        r = r.with_topic_id(id);
    }
    let Some(local) = local else {
        let code = if name.is_some() { ec::UNKNOWN_TOPIC_OR_PARTITION } else { ec::UNKNOWN_TOPIC_ID };
        let r = r.with_error_code(code);
        // v5+ carry a message: Kafka's default one.
        return if version >= 5 { r.with_error_message(ec::default_message(code).map(str_bytes)) } else { r };
    };
    // As Kafka's controller: DELETE on the cluster, else on the topic.
    use crate::security::{acl, authz};
    let may_delete = authz::may(b, acl::CLUSTER, acl::CLUSTER_NAME, acl::DELETE) || authz::allowed(b, acl::TOPIC, &local, acl::DELETE);
    if !may_delete {
        let r = r.with_error_code(29); // TOPIC_AUTHORIZATION_FAILED
        return if version >= 5 { r.with_error_message(Some(str_bytes("Authorization failed."))) } else { r };
    }
    if local == OFFSETS_TOPIC {
        let r = r.with_error_code(ec::INVALID_REQUEST);
        return if version >= 5 {
            r.with_error_message(Some(str_bytes(format!("{OFFSETS_TOPIC} is internal and cannot be deleted"))))
        } else {
            r
        };
    }
    let partitions = image.topics.get(&local).map_or(0, |t| t.partitions);
    if let Err((code, message)) = super::take_mutations(b, client_id, partitions, version >= 5, throttle) {
        let r = r.with_error_code(code);
        return if version >= 5 { r.with_error_message(Some(str_bytes(message))) } else { r };
    }
    match b.delete_topic(&local).await {
        Ok(meta) => {
            info!(topic = %local, "deleted topic");
            if version >= 6 {
                r = r.with_topic_id(meta.id);
            }
            r
        }
        Err(BrokerError::UnknownTopic(_)) => r.with_error_code(ec::UNKNOWN_TOPIC_OR_PARTITION),
        Err(BrokerError::Metadata { code, message }) => {
            let r = r.with_error_code(code);
            if version >= 5 {
                r.with_error_message(Some(str_bytes(message)))
            } else {
                r
            }
        }
        Err(e) => {
            warn!(topic = %local, "deleting topic failed: {e}");
            let r = r.with_error_code(ec::KAFKA_STORAGE_ERROR);
            if version >= 5 {
                r.with_error_message(Some(str_bytes(e.to_string())))
            } else {
                r
            }
        }
    }
}

/// A checked CreatePartitions entry: topic, new count, explicit assignments.
type Growth = (String, i32, Option<Vec<Vec<BrokerId>>>);

/// Checks one CreatePartitions entry against the current image.
fn plan_partitions(b: &Broker, t: &CreatePartitionsTopic) -> Result<Growth, Refusal> {
    let image = b.metadata.image();
    let Some(meta) = image.topics.get(t.name.as_str()) else {
        return Err((ec::UNKNOWN_TOPIC_OR_PARTITION, format!("topic `{}` does not exist", t.name.as_str())));
    };
    if t.count <= meta.partitions {
        return Err((
            ec::INVALID_PARTITIONS,
            format!("topic has {} partitions; the new count {} must be larger", meta.partitions, t.count),
        ));
    }
    let mut assignments = None;
    // As Kafka: a null list lets the broker place the new partitions; an empty one
    // assigns none of them.
    if let Some(a) = t.assignments.as_ref() {
        let added = (t.count - meta.partitions) as usize;
        if a.len() != added {
            return Err((
                ec::INVALID_REPLICA_ASSIGNMENT,
                format!("Attempted to add {added} additional partition(s), but only {} assignment(s) were specified.", a.len()),
            ));
        }
        if a.iter().any(|x| x.broker_ids.iter().any(|id| image.cluster.broker(id.0).is_none())) {
            return Err((ec::INVALID_REPLICA_ASSIGNMENT, "every assignment must name registered brokers".into()));
        }
        assignments = Some(a.iter().map(|x| x.broker_ids.iter().map(|id| id.0).collect()).collect());
    } else if i32::from(meta.replication_factor) > image.cluster.unfenced_brokers().count() as i32 {
        return Err((
            ec::INVALID_REPLICATION_FACTOR,
            format!("replication factor {} is larger than the available brokers", meta.replication_factor),
        ));
    }
    Ok((t.name.to_string(), t.count, assignments))
}

pub(crate) async fn create_partitions(
    b: Arc<Broker>,
    req: CreatePartitionsRequest,
    version: i16,
    client_id: String,
) -> CreatePartitionsResponse {
    let mut throttle = 0;
    let image = b.metadata.image();
    let plans: Vec<Result<Growth, Refusal>> = req.topics.iter().map(|t| plan_partitions(&b, t)).collect();
    // One record per new partition, counted over the whole request before any is placed.
    let records = plans
        .iter()
        .flatten()
        .map(|(name, count, _)| usize::try_from(count - image.topics.get(name).map_or(0, |m| m.partitions)).unwrap_or(0))
        .sum();
    let too_large = crate::limits::check_records(records).err();
    let mut results = Vec::with_capacity(plans.len());
    for (t, mut plan) in req.topics.iter().zip(plans) {
        let r = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        if let (Ok((name, count, _)), None, false) = (&plan, &too_large, req.validate_only) {
            let added = count - image.topics.get(name).map_or(0, |m| m.partitions);
            if let Err(refusal) = super::take_mutations(&b, &client_id, added, version >= 3, &mut throttle) {
                plan = Err(refusal);
            }
        }
        let outcome = match (plan, &too_large) {
            (Err(refusal), _) => Err(refusal),
            (Ok(_), Some(refusal)) => Err(refusal.clone()),
            (Ok(_), None) if req.validate_only => Ok(()),
            (Ok((name, count, assignments)), None) => match b.create_partitions_assigned(&name, count, assignments).await {
                Ok(()) => {
                    info!(topic = %name, count, "added partitions");
                    Ok(())
                }
                Err(BrokerError::Metadata { code, message }) => Err((code, message)),
                Err(BrokerError::UnknownTopic(n)) => Err((ec::UNKNOWN_TOPIC_OR_PARTITION, format!("topic `{n}` does not exist"))),
                Err(e) => Err((ec::KAFKA_STORAGE_ERROR, e.to_string())),
            },
        };
        results.push(match outcome {
            Ok(()) => r,
            Err((code, message)) => r.with_error_code(code).with_error_message(Some(str_bytes(message))),
        });
    }
    super::mutations_throttled(throttle);
    CreatePartitionsResponse::default().with_results(results).with_throttle_time_ms(throttle)
}

pub(crate) fn delete_records(b: &Arc<Broker>, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .into_iter()
                .map(|dp| {
                    let r = DeleteRecordsPartitionResult::default().with_partition_index(dp.partition_index);
                    let Some(p) = b.partitions.get(t.name.as_str(), dp.partition_index) else {
                        return r.with_error_code(ec::UNKNOWN_TOPIC_OR_PARTITION).with_low_watermark(-1);
                    };
                    let hw = p.high_watermark();
                    // -1 means "up to the high watermark".
                    let before = if dp.offset == -1 { hw } else { dp.offset };
                    if before < 0 || before > hw {
                        return r.with_error_code(ec::OFFSET_OUT_OF_RANGE).with_low_watermark(-1);
                    }
                    match p.delete_records(before) {
                        Ok(low) => r.with_low_watermark(low),
                        Err(PartitionError::Storage(StorageError::OffsetOutOfRange { .. })) => {
                            r.with_error_code(ec::OFFSET_OUT_OF_RANGE).with_low_watermark(-1)
                        }
                        Err(e) => {
                            warn!(topic = t.name.as_str(), partition = dp.partition_index, "delete records failed: {e}");
                            r.with_error_code(ec::KAFKA_STORAGE_ERROR).with_low_watermark(-1)
                        }
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default().with_name(t.name).with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}
