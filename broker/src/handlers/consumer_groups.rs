//! KIP-848 consumer-group APIs: ConsumerGroupHeartbeat and ConsumerGroupDescribe.

use std::net::SocketAddr;
use std::sync::Arc;

use kafka_protocol::messages::consumer_group_describe_response::{self as describe, DescribedGroup};
use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment as HbAssignment, TopicPartitions as HbPartitions};
use kafka_protocol::messages::*;
use karst_protocol::error_codes as ec;

use super::groups::group_error;
use super::{str_bytes, topic_name};
use crate::broker::{now_ms, Broker};
use crate::group::assignors::Assignment;
use crate::group::consumer::{self, Heartbeat};
use crate::group::{GroupCoordinator, GroupEntry};
use crate::security::{acl, authz};

const TOPIC_AUTHORIZATION_FAILED: i16 = 29;

fn refused(code: i16, message: String) -> ConsumerGroupHeartbeatResponse {
    tracing::debug!(code, "ConsumerGroupHeartbeat refused: {message}");
    ConsumerGroupHeartbeatResponse::default().with_error_code(code).with_error_message(Some(str_bytes(message)))
}

fn hb_assignment(a: &Assignment) -> HbAssignment {
    HbAssignment::default().with_topic_partitions(
        a.iter().map(|(t, ps)| HbPartitions::default().with_topic_id(*t).with_partitions(ps.iter().copied().collect())).collect(),
    )
}

pub(crate) async fn heartbeat(
    b: Arc<Broker>,
    req: ConsumerGroupHeartbeatRequest,
    version: i16,
    client_id: String,
    peer: SocketAddr,
) -> ConsumerGroupHeartbeatResponse {
    let group_id = req.group_id.to_string();
    let hb = Heartbeat {
        member_id: req.member_id.to_string(),
        member_epoch: req.member_epoch,
        instance_id: req.instance_id.as_ref().map(|s| s.to_string()),
        rack_id: req.rack_id.as_ref().map(|s| s.to_string()),
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        topics: req.subscribed_topic_names.as_ref().map(|ts| ts.iter().map(|t| t.to_string()).collect()),
        regex: if version >= 1 { req.subscribed_topic_regex.as_ref().map(|s| s.to_string()) } else { None },
        assignor: req.server_assignor.as_ref().map(|s| s.to_string()),
        owned: req.topic_partitions.as_ref().map(|tps| tps.iter().map(|tp| (tp.topic_id, tp.partitions.clone())).collect()),
        client_id,
        client_host: format!("/{}", peer.ip()),
    };
    if group_id.is_empty() {
        return refused(ec::INVALID_REQUEST, "GroupId can't be empty.".into());
    }
    if let Some(code) = group_error(&b, &group_id, acl::READ) {
        return refused(code, format!("group {group_id}: {}", ec::error_name(code)));
    }
    if let Err((code, message)) = consumer::validate(&hb, &group_id, version) {
        return refused(code, message);
    }
    if b.shares.is_share_group(&group_id) {
        return refused(ec::GROUP_ID_NOT_FOUND, format!("Group {group_id} is not a consumer group."));
    }
    // As Kafka: subscribing by name needs DESCRIBE on each topic.
    let denied: Vec<&String> = hb.topics.iter().flatten().filter(|t| !authz::allowed(&b, acl::TOPIC, t, acl::DESCRIBE)).collect();
    if !denied.is_empty() {
        return refused(TOPIC_AUTHORIZATION_FAILED, format!("Unauthorized topics: {denied:?}"));
    }
    let topics = GroupCoordinator::topics(&b);
    let now = now_ms();
    let cfg = b.groups.consumer;
    let (outcome, records) = {
        let mut entries = b.groups.entries.lock();
        if !entries.contains_key(&group_id) {
            if hb.member_epoch != 0 {
                return refused(ec::GROUP_ID_NOT_FOUND, format!("Consumer group {group_id} not found."));
            }
            entries.insert(group_id.clone(), GroupEntry::new(&group_id, now));
        }
        let Some(e) = entries.get_mut(&group_id) else { return refused(ec::COORDINATOR_NOT_AVAILABLE, String::new()) };
        let mut records = Vec::new();
        if e.consumer.is_none() {
            if hb.member_epoch != 0 {
                return refused(ec::GROUP_ID_NOT_FOUND, format!("Group {group_id} is not a consumer group."));
            }
            if let Err((code, message)) = e.upgrade(&topics, now) {
                return refused(code, message);
            }
        }
        let Some(c) = e.consumer.as_mut() else { return refused(ec::COORDINATOR_NOT_AVAILABLE, String::new()) };
        let outcome = c.heartbeat(hb, &topics, now, cfg);
        if std::mem::take(&mut c.dirty) {
            records.push(GroupCoordinator::consumer_record(c));
        }
        if let Some(more) = e.maybe_downgrade(|| GroupCoordinator::topic_names(&b), now, b.groups.timing) {
            records = more;
        }
        (outcome, records)
    };
    if !records.is_empty() {
        // An epoch a member was told must outlive a coordinator change.
        let written = match b.groups.persist(&b, &group_id, &records) {
            Ok(p) => p.committed().await,
            Err(code) => Err(code),
        };
        if let Err(code) = written {
            b.groups.rewrite_later(&group_id);
            let code = crate::group::write_error(code);
            return refused(code, format!("writing the group failed: {}", ec::error_name(code)));
        }
    }
    match outcome {
        Err((code, message)) => refused(code, message),
        Ok(r) => ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(str_bytes(r.member_id)))
            .with_member_epoch(r.member_epoch)
            .with_heartbeat_interval_ms(cfg.heartbeat_interval_ms)
            .with_assignment(r.assignment.as_ref().map(hb_assignment)),
    }
}

fn described(a: &Assignment, names: &std::collections::HashMap<uuid::Uuid, String>) -> describe::Assignment {
    describe::Assignment::default().with_topic_partitions(
        a.iter()
            .map(|(t, ps)| {
                describe::TopicPartitions::default()
                    .with_topic_id(*t)
                    .with_topic_name(topic_name(names.get(t).map_or("", String::as_str)))
                    .with_partitions(ps.iter().copied().collect())
            })
            .collect(),
    )
}

pub(crate) fn describe(b: &Arc<Broker>, req: ConsumerGroupDescribeRequest, version: i16) -> ConsumerGroupDescribeResponse {
    let names = GroupCoordinator::topic_names(b);
    let default_assignor = b.groups.consumer.default_assignor.name();
    let entries = b.groups.entries.lock();
    let groups = req
        .group_ids
        .into_iter()
        .map(|id| {
            let d = DescribedGroup::default().with_group_id(id.clone());
            if let Some(code) = group_error(b, id.as_str(), acl::DESCRIBE) {
                return d.with_error_code(code);
            }
            let not_found =
                |message: String| d.clone().with_error_code(ec::GROUP_ID_NOT_FOUND).with_error_message(Some(str_bytes(message)));
            let c = match entries.get(id.as_str()) {
                None => return not_found(format!("Group {} not found.", id.as_str())),
                Some(e) => match &e.consumer {
                    Some(c) => c,
                    None => return not_found(format!("Group {} is not a consumer group.", id.as_str())),
                },
            };
            let members = c
                .members
                .values()
                .map(|m| {
                    let empty = Assignment::new();
                    let member = describe::Member::default()
                        .with_member_id(str_bytes(m.id.clone()))
                        .with_instance_id(m.instance_id.clone().map(str_bytes))
                        .with_rack_id(m.rack_id.clone().map(str_bytes))
                        .with_member_epoch(m.epoch)
                        .with_client_id(str_bytes(m.client_id.clone()))
                        .with_client_host(str_bytes(m.client_host.clone()))
                        .with_subscribed_topic_names(m.topics.iter().map(|t| topic_name(t)).collect())
                        .with_subscribed_topic_regex(m.regex.clone().map(str_bytes))
                        .with_assignment(described(&m.assigned, &names))
                        .with_target_assignment(described(c.target.get(&m.id).unwrap_or(&empty), &names));
                    if version >= 1 {
                        // 0: classic, 1: consumer.
                        member.with_member_type(if m.classic.is_some() { 0 } else { 1 })
                    } else {
                        member
                    }
                })
                .collect();
            let d = d
                .with_group_state(str_bytes(c.state_name()))
                .with_group_epoch(c.epoch)
                .with_assignment_epoch(c.assignment_epoch)
                .with_assignor_name(str_bytes(c.assignor.clone().unwrap_or_else(|| default_assignor.to_string())))
                .with_members(members);
            if req.include_authorized_operations {
                d.with_authorized_operations(super::authorized::of(b, acl::GROUP, id.as_str(), super::authorized::GROUP))
            } else {
                d.with_authorized_operations(i32::MIN)
            }
        })
        .collect();
    ConsumerGroupDescribeResponse::default().with_groups(groups)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BrokerConfig;
    use kafka_protocol::protocol::StrBytes;

    /// EIO writing the group's record: the heartbeat that changed the group is not
    /// answered as if it counted (NOT_COORDINATOR, as Kafka: the coordinator's
    /// partition is offline and the member looks for the coordinator again).
    #[test]
    fn a_heartbeat_whose_group_write_fails_is_answered_not_coordinator() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = BrokerConfig { data_dir: dir.path().to_path_buf(), offsets_topic_num_partitions: 1, ..Default::default() };
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        let _in_runtime = rt.enter();
        let b = Broker::open(config).expect("open");
        rt.block_on(b.groups.ensure_topic(&b)).expect("offsets topic");
        let join = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g")))
            .with_member_id(StrBytes::from_static_str("m"))
            .with_member_epoch(0)
            .with_rebalance_timeout_ms(60_000)
            .with_subscribed_topic_names(Some(vec![topic_name("t")]))
            .with_topic_partitions(Some(vec![]));
        let peer: SocketAddr = "127.0.0.1:1".parse().expect("addr");
        let spec = dir.path().join(format!("{}-0", crate::group::OFFSETS_TOPIC)).to_string_lossy().into_owned();
        karst_storage::faults::configure(&format!("write=eio@{spec}")).expect("fault on");
        let failed = rt.block_on(heartbeat(b.clone(), join.clone(), 1, "c".into(), peer));
        karst_storage::faults::configure(&format!("write=off@{spec}")).expect("fault off");
        assert_eq!((failed.error_code, failed.member_epoch, failed.assignment.is_none()), (ec::NOT_COORDINATOR, 0, true), "{failed:?}");
        b.shutdown();
    }
}
