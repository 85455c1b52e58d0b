use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::metadata_response::{MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};
use karst_protocol::error_codes as ec;
use tracing::{info, warn};
use uuid::Uuid;

use super::{str_bytes, topic_name};
use crate::broker::Broker;
use crate::security::{acl, authz};

const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
use crate::errors::BrokerError;
use crate::metadata::{Listener, TopicMeta, NO_LEADER};
use crate::topic_name::invalid_reason;

/// The listener the current request arrived on (None outside a connection: the first).
pub(crate) fn request_listener() -> Option<Arc<str>> {
    crate::server::current_listener()
}

/// A broker's registered endpoint on listener `name` (None: its first). A broker
/// without that listener has no address for this client, as in Kafka.
pub(crate) fn endpoint<'a>(listeners: &'a [Listener], name: Option<&str>) -> Option<&'a Listener> {
    match name {
        Some(n) => listeners.iter().find(|l| l.name == n),
        None => listeners.first(),
    }
}

/// The brokers clients may connect to: every unfenced registered broker (and
/// this one, whatever its state), each with its address on the listener the
/// request arrived on.
pub(crate) fn live_brokers(b: &Broker) -> Vec<(i32, String, i32, Option<String>)> {
    let image = b.metadata.image();
    let listener = request_listener();
    let name = listener.as_deref();
    let mut out = Vec::new();
    if let Some((host, port)) = b.advertised_on(name) {
        out.push((b.node_id, host, port, image.cluster.broker(b.node_id).and_then(|r| r.rack.clone())));
    }
    for r in image.cluster.unfenced_brokers().filter(|r| r.id != b.node_id) {
        if let Some(l) = endpoint(&r.listeners, name) {
            out.push((r.id, l.host.clone(), i32::from(l.port), r.rack.clone()));
        }
    }
    out.sort_by_key(|x| x.0);
    out
}

/// The controller leader when it is a live broker, else this broker: every
/// broker accepts admin requests and forwards them to the quorum's leader.
pub(crate) fn controller_id(b: &Broker) -> i32 {
    let image = b.metadata.image();
    b.metadata.controller_leader().filter(|id| image.cluster.is_unfenced(*id)).unwrap_or(b.node_id)
}

pub(crate) async fn handle(b: Arc<Broker>, req: MetadataRequest, version: i16) -> MetadataResponse {
    let b = &b;
    let brokers = live_brokers(b)
        .into_iter()
        .map(|(id, host, port, rack)| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(id))
                .with_host(str_bytes(host))
                .with_port(port)
                .with_rack(rack.map(str_bytes))
        })
        .collect();
    // v0 asks for every topic with an empty list; v1+ with a null one.
    let all = match &req.topics {
        None => true,
        Some(t) => t.is_empty() && version == 0,
    };
    let auto_create = b.config.auto_create_topics_enable && (version < 4 || req.allow_auto_topic_creation);
    let mut topics = Vec::new();
    if all {
        let image = b.metadata.image();
        // Topics the principal may not describe are left out, as in Kafka.
        topics.extend(
            image.topics.values().filter(|t| authz::allowed(b, acl::TOPIC, &t.name, acl::DESCRIBE)).map(|t| describe_topic(b, t, version)),
        );
    } else {
        for requested in req.topics.unwrap_or_default() {
            let response = match requested.name {
                Some(name) => topic_by_name(b, name.as_str(), auto_create, version).await,
                None => {
                    let image = b.metadata.image();
                    match image.topic_by_id(requested.topic_id) {
                        Some(t) if !authz::allowed(b, acl::TOPIC, &t.name, acl::DESCRIBE) => {
                            MetadataResponseTopic::default().with_error_code(TOPIC_AUTHORIZATION_FAILED).with_topic_id(requested.topic_id)
                        }
                        Some(t) => describe_topic(b, t, version),
                        None => MetadataResponseTopic::default().with_error_code(ec::UNKNOWN_TOPIC_ID).with_topic_id(requested.topic_id),
                    }
                }
            };
            topics.push(response);
        }
    }
    if version >= 8 && req.include_topic_authorized_operations {
        for t in topics.iter_mut().filter(|t| t.error_code == ec::NONE) {
            let name = t.name.as_ref().map(|n| n.to_string()).unwrap_or_default();
            t.topic_authorized_operations = super::authorized::of(b, acl::TOPIC, &name, super::authorized::TOPIC);
        }
    }
    let mut resp = MetadataResponse::default().with_brokers(brokers).with_topics(topics);
    if (8..=10).contains(&version) && req.include_cluster_authorized_operations {
        resp = resp.with_cluster_authorized_operations(super::authorized::cluster(b));
    }
    if version >= 1 {
        resp = resp.with_controller_id(BrokerId(controller_id(b)));
    }
    if version >= 2 {
        resp = resp.with_cluster_id(Some(str_bytes(b.cluster_id.clone())));
    }
    resp
}

async fn topic_by_name(b: &Arc<Broker>, name: &str, auto_create: bool, version: i16) -> MetadataResponseTopic {
    let error = |code| MetadataResponseTopic::default().with_error_code(code).with_name(Some(topic_name(name)));
    if !authz::allowed(b, acl::TOPIC, name, acl::DESCRIBE) {
        return error(TOPIC_AUTHORIZATION_FAILED);
    }
    if let Some(t) = b.metadata.image().topics.get(name) {
        return describe_topic(b, t, version);
    }
    if invalid_reason(name).is_some() {
        return error(ec::INVALID_TOPIC_EXCEPTION);
    }
    if !auto_create {
        return error(ec::UNKNOWN_TOPIC_OR_PARTITION);
    }
    if !authz::may_create_topic(b, name) {
        return error(TOPIC_AUTHORIZATION_FAILED);
    }
    // Internal topics are created as their coordinators create them (partitions,
    // compaction), as Kafka's auto-creation does, never with a topic's defaults.
    let internal = match name {
        crate::group::OFFSETS_TOPIC => Some(b.groups.ensure_topic(b).await),
        crate::txn::TXN_TOPIC => Some(b.txns.ensure_topic(b).await),
        _ => None,
    };
    if let Some(created) = internal {
        if let Err(e) = created {
            warn!(topic = name, "creating an internal topic failed: {e}");
        }
        return match b.metadata.image().topics.get(name) {
            Some(t) => describe_topic(b, t, version),
            None => error(ec::LEADER_NOT_AVAILABLE),
        };
    }
    let meta = TopicMeta {
        name: name.to_string(),
        id: Uuid::new_v4(),
        partitions: b.config.num_partitions,
        replication_factor: 1,
        configs: BTreeMap::new(),
    };
    match b.create_topic(meta).await {
        Ok(()) => info!(topic = name, "auto-created topic"),
        Err(BrokerError::TopicExists(_)) => {}
        Err(BrokerError::Metadata { code, message }) => {
            warn!(topic = name, "auto-creating topic refused: {message}");
            return error(code);
        }
        Err(e) => {
            warn!(topic = name, "auto-creating topic failed: {e}");
            return error(ec::KAFKA_STORAGE_ERROR);
        }
    }
    match b.metadata.image().topics.get(name) {
        Some(t) => describe_topic(b, t, version),
        None => error(ec::UNKNOWN_TOPIC_OR_PARTITION),
    }
}

fn describe_topic(b: &Broker, t: &TopicMeta, version: i16) -> MetadataResponseTopic {
    let image = b.metadata.image();
    let ids = |v: &[i32]| v.iter().map(|id| BrokerId(*id)).collect::<Vec<_>>();
    let partitions = (0..t.partitions)
        .map(|p| {
            let mut mp = MetadataResponsePartition::default().with_partition_index(p);
            let mut epoch = 0;
            match image.cluster.partition(&t.name, p) {
                Some(state) => {
                    epoch = state.leader_epoch;
                    mp = mp.with_leader_id(BrokerId(state.leader)).with_replica_nodes(ids(&state.replicas)).with_isr_nodes(ids(&state.isr));
                    if version >= 5 {
                        // As Kafka: replicas on brokers that are fenced or gone.
                        let offline: Vec<i32> = state.replicas.iter().copied().filter(|r| !image.cluster.is_unfenced(*r)).collect();
                        mp = mp.with_offline_replicas(ids(&offline));
                    }
                    if state.leader == NO_LEADER {
                        mp = mp.with_error_code(ec::LEADER_NOT_AVAILABLE);
                    }
                }
                None => mp = mp.with_leader_id(BrokerId(NO_LEADER)).with_error_code(ec::LEADER_NOT_AVAILABLE),
            }
            if version >= 7 {
                mp = mp.with_leader_epoch(epoch);
            }
            mp
        })
        .collect();
    let mut topic = MetadataResponseTopic::default().with_name(Some(topic_name(&t.name))).with_partitions(partitions);
    if version >= 10 {
        topic = topic.with_topic_id(t.id);
    }
    if version >= 1 {
        topic = topic.with_is_internal(crate::topic_name::is_internal(&t.name));
    }
    topic
}
