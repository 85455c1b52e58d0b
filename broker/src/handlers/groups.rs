//! Consumer-group APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup, OffsetCommit, OffsetFetch, ListGroups, DescribeGroups,
//! DeleteGroups, OffsetDelete.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use karst_protocol::error_codes as ec;

use super::{str_bytes, topic_name};
use crate::broker::{now_ms, Broker};
use crate::group::records::{self, Key};
use crate::group::{
    offset_value, subscribed_topics, GroupCoordinator, GroupEntry, GroupState, JoinRequest, JoinResult, Outcome, SyncResult,
};
use crate::security::{acl, authz};

/// A group id Kafka's record format can hold (an int16-length string).
fn group_id_error(id: &str) -> Option<i16> {
    (id.is_empty() || id.len() > i16::MAX as usize).then_some(ec::INVALID_GROUP_ID)
}

/// A bad group id, or a group this broker does not coordinate (NOT_COORDINATOR
/// sends the client back to FindCoordinator).
/// Why a request about group `id` that needs `operation` on it is refused, if it is:
/// an invalid id, no authorization (GROUP_AUTHORIZATION_FAILED), or not the coordinator.
pub(super) fn group_error(b: &Broker, id: &str, operation: i8) -> Option<i16> {
    group_id_error(id)
        .or_else(|| (!authz::allowed(b, acl::GROUP, id, operation)).then_some(GROUP_AUTHORIZATION_FAILED))
        .or_else(|| b.groups.coordinates(b, id).err())
}

const GROUP_AUTHORIZATION_FAILED: i16 = 30;
const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
const TOPIC_AUTHORIZATION_FAILED: i16 = 29;

const COORDINATOR_KEY_GROUP: i8 = 0;
const COORDINATOR_KEY_TRANSACTION: i8 = 1;

pub(crate) fn find_coordinator(b: &Arc<Broker>, req: FindCoordinatorRequest, version: i16) -> FindCoordinatorResponse {
    let listener = super::metadata::request_listener();
    let (host, port) = b.advertised_on(listener.as_deref()).unwrap_or_default();
    let txn = req.key_type == COORDINATOR_KEY_TRANSACTION;
    let answer = |key: &str| -> (i16, Option<String>) {
        if txn {
            if key.is_empty() {
                return (ec::INVALID_REQUEST, Some("transactional id must be non-empty".into()));
            }
            if !authz::allowed(b, acl::TRANSACTIONAL_ID, key, acl::DESCRIBE) {
                return (TRANSACTIONAL_ID_AUTHORIZATION_FAILED, Some("Transactional Id authorization failed.".into()));
            }
            return if b.metadata.image().topics.contains_key(crate::txn::TXN_TOPIC) {
                (ec::NONE, None)
            } else {
                (ec::COORDINATOR_NOT_AVAILABLE, Some(format!("{} could not be created yet", crate::txn::TXN_TOPIC)))
            };
        }
        if req.key_type != COORDINATOR_KEY_GROUP {
            return (ec::INVALID_REQUEST, Some(format!("unknown coordinator key type {}", req.key_type)));
        }
        if let Some(code) = group_id_error(key) {
            return (code, Some("group id must be non-empty and at most 32767 bytes".into()));
        }
        if !authz::allowed(b, acl::GROUP, key, acl::DESCRIBE) {
            return (GROUP_AUTHORIZATION_FAILED, Some("Group authorization failed.".into()));
        }
        // The request path has tried to create the topic before this runs.
        if b.groups.has_topic(b) {
            (ec::NONE, None)
        } else {
            (ec::COORDINATOR_NOT_AVAILABLE, Some(format!("{} could not be created yet", crate::group::OFFSETS_TOPIC)))
        }
    };
    // The coordinator is the leader of the group's __consumer_offsets partition.
    let locate = |key: &str, code: i16, msg: Option<String>| -> (i16, Option<String>, i32, String, i32) {
        if code != ec::NONE {
            return (code, msg, -1, String::new(), -1);
        }
        let endpoint = match txn {
            true => b.txns.coordinator_endpoint(b, key, listener.as_deref()),
            false => b.groups.coordinator_endpoint(b, key, listener.as_deref()),
        };
        match endpoint {
            Some((id, _, _)) if id == b.node_id => (ec::NONE, None, id, host.clone(), port),
            Some((id, h, p)) => (ec::NONE, None, id, h, p),
            None => (ec::COORDINATOR_NOT_AVAILABLE, Some("the group's partition has no leader".into()), -1, String::new(), -1),
        }
    };
    let resp = FindCoordinatorResponse::default();
    if version >= 4 {
        let coordinators = req
            .coordinator_keys
            .iter()
            .map(|k| {
                let (code, msg) = answer(k.as_str());
                let (code, msg, id, h, p) = locate(k.as_str(), code, msg);
                if code != ec::NONE {
                    tracing::debug!(key = %k.as_str(), code, "FindCoordinator: {}", msg.unwrap_or_default());
                }
                // Kafka sets no message in v4+ (its default ""), whatever the error.
                Coordinator::default()
                    .with_key(k.clone())
                    .with_error_code(code)
                    .with_error_message(Some(str_bytes("")))
                    .with_node_id(BrokerId(id))
                    .with_host(str_bytes(h))
                    .with_port(p)
            })
            .collect();
        return resp.with_coordinators(coordinators);
    }
    let (code, msg) = answer(req.key.as_str());
    let (code, msg, id, h, p) = locate(req.key.as_str(), code, msg);
    let resp = resp.with_error_code(code);
    let msg = msg.unwrap_or_else(|| "NONE".to_string());
    let resp = if version >= 1 { resp.with_error_message(Some(str_bytes(msg))) } else { resp };
    resp.with_node_id(BrokerId(id)).with_host(str_bytes(h)).with_port(p)
}

fn join_response(r: JoinResult, version: i16) -> JoinGroupResponse {
    let members = r
        .members
        .into_iter()
        .map(|(id, instance, meta)| {
            let m = JoinGroupResponseMember::default().with_member_id(str_bytes(id)).with_metadata(meta);
            if version >= 5 {
                m.with_group_instance_id(instance.map(str_bytes))
            } else {
                m
            }
        })
        .collect();
    let mut resp = JoinGroupResponse::default()
        .with_error_code(r.error)
        .with_generation_id(r.generation)
        .with_protocol_name(Some(str_bytes(r.protocol.unwrap_or_default())))
        .with_leader(str_bytes(r.leader))
        .with_member_id(str_bytes(r.member_id))
        .with_members(members);
    if version >= 7 {
        resp = resp.with_protocol_type(r.protocol_type.map(str_bytes));
    }
    resp
}

pub(crate) async fn join_group(
    b: Arc<Broker>,
    req: JoinGroupRequest,
    version: i16,
    client_id: String,
    peer: SocketAddr,
) -> JoinGroupResponse {
    let group_id = req.group_id.to_string();
    if let Some(code) = group_error(&b, &group_id, acl::READ) {
        return join_response(
            JoinResult { error: code, generation: -1, member_id: req.member_id.to_string(), ..Default::default() },
            version,
        );
    }
    if b.shares.is_share_group(&group_id) {
        // Kafka: a share group of that id is not joined by the classic protocol.
        return join_response(JoinResult { error: ec::INCONSISTENT_GROUP_PROTOCOL, generation: -1, ..Default::default() }, version);
    }
    let c = &b.config;
    if req.session_timeout_ms < c.group_min_session_timeout_ms || req.session_timeout_ms > c.group_max_session_timeout_ms {
        return join_response(
            JoinResult { error: ec::INVALID_SESSION_TIMEOUT, generation: -1, member_id: req.member_id.to_string(), ..Default::default() },
            version,
        );
    }
    if let Err(e) = b.groups.ensure_topic(&b).await {
        tracing::warn!("{e}");
        return join_response(JoinResult { error: ec::COORDINATOR_NOT_AVAILABLE, generation: -1, ..Default::default() }, version);
    }
    let jr = JoinRequest {
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
        client_id,
        client_host: format!("/{}", peer.ip()),
        session_timeout_ms: req.session_timeout_ms,
        rebalance_timeout_ms: if version >= 1 { req.rebalance_timeout_ms } else { req.session_timeout_ms },
        protocol_type: req.protocol_type.to_string(),
        protocols: req.protocols.into_iter().map(|p| (p.name.to_string(), p.metadata)).collect(),
        require_known_member_id: version >= 4,
    };
    let outcome = {
        let mut entries = b.groups.entries.lock();
        let now = now_ms();
        let e = entries.entry(group_id.clone()).or_insert_with(|| GroupEntry::new(&group_id, now));
        match e.consumer.as_ref().map(|c| c.members.is_empty()) {
            None => Ok(e.group.join(jr, now, b.groups.timing)),
            Some(true) => {
                // An empty consumer group becomes classic for a classic member, as Kafka's.
                e.consumer = None;
                let tombstone = (records::encode_key(&Key::Consumer { group: group_id.clone() }), None);
                if let Err(code) = b.groups.persist(&b, &group_id, &[tombstone]) {
                    tracing::warn!(group = %group_id, code, "writing the group's change of type failed");
                }
                Ok(e.group.join(jr, now, b.groups.timing))
            }
            // A consumer group with members serves the classic member itself.
            Some(false) => Err(jr),
        }
    };
    let outcome = match outcome {
        Ok(o) => o,
        Err(jr) => Outcome::Now(classic_join_to_consumer_group(&b, &group_id, jr, version).await),
    };
    let result = match outcome {
        Outcome::Now(r) => r,
        Outcome::Wait(rx) => rx.await.unwrap_or_else(|_| JoinResult { error: ec::UNKNOWN_MEMBER_ID, generation: -1, ..Default::default() }),
    };
    join_response(result, version)
}

/// A classic member joins a consumer group: it is given its partitions from the
/// group's server-side assignment, at its member epoch as generation.
async fn classic_join_to_consumer_group(b: &Arc<Broker>, group_id: &str, jr: JoinRequest, version: i16) -> JoinResult {
    let fail = |error: i16, member_id: &str| JoinResult { error, generation: -1, member_id: member_id.to_string(), ..Default::default() };
    if jr.protocol_type != "consumer" {
        return fail(ec::INCONSISTENT_GROUP_PROTOCOL, &jr.member_id);
    }
    if jr.member_id.is_empty() && jr.instance_id.is_none() && version >= 4 {
        return fail(ec::MEMBER_ID_REQUIRED, &format!("{}-{}", jr.client_id, uuid::Uuid::new_v4()));
    }
    let mut join = jr;
    if join.member_id.is_empty() {
        join.member_id = format!("{}-{}", join.client_id, uuid::Uuid::new_v4());
    }
    let topics = GroupCoordinator::topics(b);
    let (outcome, record) = {
        let mut entries = b.groups.entries.lock();
        let Some(c) = entries.get_mut(group_id).and_then(|e| e.consumer.as_mut()) else {
            return fail(ec::UNKNOWN_MEMBER_ID, &join.member_id);
        };
        let outcome = c.classic_join(join, &topics, now_ms(), b.groups.consumer);
        (outcome, std::mem::take(&mut c.dirty).then(|| GroupCoordinator::consumer_record(c)))
    };
    if let Some(rec) = record {
        let written = match b.groups.persist(b, group_id, &[rec]) {
            Ok(p) => p.committed().await,
            Err(code) => Err(code),
        };
        if let Err(code) = written {
            b.groups.rewrite_later(group_id);
            return fail(crate::group::write_error(code), "");
        }
    }
    match outcome {
        Err((code, message)) => {
            tracing::debug!(group = group_id, code, "classic JoinGroup on a consumer group refused: {message}");
            fail(code, "")
        }
        Ok((member_id, generation, protocol)) => JoinResult {
            error: ec::NONE,
            generation,
            protocol_type: Some("consumer".into()),
            protocol: Some(protocol),
            leader: String::new(),
            member_id,
            members: Vec::new(),
        },
    }
}

fn sync_response(r: SyncResult, version: i16) -> SyncGroupResponse {
    let resp = SyncGroupResponse::default().with_error_code(r.error).with_assignment(r.assignment);
    if version >= 5 {
        resp.with_protocol_type(r.protocol_type.map(str_bytes)).with_protocol_name(r.protocol.map(str_bytes))
    } else {
        resp
    }
}

pub(crate) async fn sync_group(b: Arc<Broker>, req: SyncGroupRequest, version: i16) -> SyncGroupResponse {
    let group_id = req.group_id.to_string();
    if let Some(code) = group_error(&b, &group_id, acl::READ) {
        return sync_response(SyncResult { error: code, ..Default::default() }, version);
    }
    let assignments: Vec<(String, Bytes)> = req.assignments.into_iter().map(|a| (a.member_id.to_string(), a.assignment)).collect();
    let instance = req.group_instance_id.as_ref().map(|s| s.to_string());
    let (outcome, record) = {
        let mut entries = b.groups.entries.lock();
        let Some(e) = entries.get_mut(&group_id) else {
            return sync_response(SyncResult { error: ec::UNKNOWN_MEMBER_ID, ..Default::default() }, version);
        };
        if let Some(c) = &e.consumer {
            let names = GroupCoordinator::topic_names(&b);
            let r = match c.classic_sync(req.member_id.as_str(), instance.as_deref(), req.generation_id, &names) {
                Err(error) => SyncResult { error, ..Default::default() },
                Ok((protocol, assignment)) => {
                    let mismatch = version >= 5
                        && (req.protocol_type.as_ref().is_some_and(|t| t.as_str() != "consumer")
                            || req.protocol_name.as_ref().is_some_and(|n| n.as_str() != protocol));
                    if mismatch {
                        SyncResult { error: ec::INCONSISTENT_GROUP_PROTOCOL, ..Default::default() }
                    } else {
                        SyncResult { error: ec::NONE, protocol_type: Some("consumer".into()), protocol: Some(protocol), assignment }
                    }
                }
            };
            return sync_response(r, version);
        }
        if version >= 5 {
            let mismatch =
                |given: &Option<StrBytes>, have: &Option<String>| given.as_ref().is_some_and(|g| Some(g.as_str()) != have.as_deref());
            if mismatch(&req.protocol_type, &e.group.protocol_type) || mismatch(&req.protocol_name, &e.group.protocol) {
                return sync_response(SyncResult { error: ec::INCONSISTENT_GROUP_PROTOCOL, ..Default::default() }, version);
            }
        }
        let (o, persist) = e.group.sync(req.member_id.as_str(), instance.as_deref(), req.generation_id, assignments, now_ms());
        (o, persist.then(|| GroupCoordinator::group_record(&e.group)))
    };
    if let Some(rec) = record {
        // The generation must outlive a restart so it never goes backwards.
        let durable = match b.groups.persist(&b, &group_id, &[rec]) {
            Ok(p) => p.durable().await,
            Err(_) => false,
        };
        if !durable {
            b.groups.rewrite_later(&group_id);
        }
    }
    let result = match outcome {
        Outcome::Now(r) => r,
        Outcome::Wait(rx) => rx.await.unwrap_or_else(|_| SyncResult { error: ec::UNKNOWN_MEMBER_ID, ..Default::default() }),
    };
    sync_response(result, version)
}

pub(crate) fn heartbeat(b: &Arc<Broker>, req: HeartbeatRequest) -> HeartbeatResponse {
    let group_id = req.group_id.to_string();
    let code = match group_error(b, &group_id, acl::READ) {
        // Kafka answers a heartbeat blindly while the coordinator reads its groups back.
        Some(ec::COORDINATOR_LOAD_IN_PROGRESS) => Some(ec::NONE),
        e => e,
    };
    let code = code.unwrap_or_else(|| {
        let mut entries = b.groups.entries.lock();
        match entries.get_mut(&group_id) {
            None => ec::UNKNOWN_MEMBER_ID,
            Some(e) => match e.consumer.as_mut() {
                Some(c) => c.classic_heartbeat(req.member_id.as_str(), req.group_instance_id.as_deref(), req.generation_id, now_ms()),
                None => e.group.heartbeat(req.member_id.as_str(), req.group_instance_id.as_deref(), req.generation_id, now_ms()),
            },
        }
    });
    HeartbeatResponse::default().with_error_code(code)
}

pub(crate) fn leave_group(b: &Arc<Broker>, req: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
    let group_id = req.group_id.to_string();
    if let Some(code) = group_error(b, &group_id, acl::READ) {
        return LeaveGroupResponse::default().with_error_code(code);
    }
    let identities: Vec<(String, Option<String>)> = if version >= 3 {
        req.members.iter().map(|m| (m.member_id.to_string(), m.group_instance_id.as_ref().map(|s| s.to_string()))).collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    let mut entries = b.groups.entries.lock();
    let Some(e) = entries.get_mut(&group_id) else {
        return LeaveGroupResponse::default().with_error_code(ec::UNKNOWN_MEMBER_ID);
    };
    let now = now_ms();
    let results: Vec<(String, Option<String>, i16)> = identities
        .into_iter()
        .map(|(m, i)| {
            let code = match e.consumer.as_mut() {
                Some(c) => c.classic_leave(&m, i.as_deref()),
                None => e.group.leave(&m, i.as_deref(), now, b.groups.timing),
            };
            (m, i, code)
        })
        .collect();
    // The last member left: the empty group's record is written now, as Kafka
    // stores the group when its join completes empty, so a restart right after
    // brings back no one (the periodic tick would write it within 100 ms).
    let mut records = match e.consumer.as_mut() {
        Some(c) => std::mem::take(&mut c.dirty).then(|| vec![GroupCoordinator::consumer_record(c)]),
        None => std::mem::take(&mut e.group.record_due).then(|| vec![GroupCoordinator::group_record(&e.group)]),
    };
    if let Some(downgrade) = e.maybe_downgrade(|| GroupCoordinator::topic_names(b), now, b.groups.timing) {
        records = Some(downgrade);
    }
    drop(entries);
    if let Some(rec) = records {
        if let Err(code) = b.groups.persist(b, &group_id, &rec) {
            b.groups.rewrite_later(&group_id);
            tracing::warn!(group = %group_id, code, "writing the empty group's record failed");
        }
    }
    if version >= 3 {
        let members = results
            .into_iter()
            .map(|(m, i, code)| {
                MemberResponse::default().with_member_id(str_bytes(m)).with_group_instance_id(i.map(str_bytes)).with_error_code(code)
            })
            .collect();
        LeaveGroupResponse::default().with_members(members)
    } else {
        LeaveGroupResponse::default().with_error_code(results.first().map_or(ec::NONE, |r| r.2))
    }
}

pub(crate) async fn offset_commit(b: Arc<Broker>, req: OffsetCommitRequest, version: i16) -> OffsetCommitResponse {
    let group_id = req.group_id.to_string();
    let now = now_ms();
    let topic_error = |topics: &[kafka_protocol::messages::offset_commit_request::OffsetCommitRequestTopic], code: i16| {
        topics
            .iter()
            .map(|t| {
                OffsetCommitResponseTopic::default().with_name(t.name.clone()).with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| OffsetCommitResponsePartition::default().with_partition_index(p.partition_index).with_error_code(code))
                        .collect(),
                )
            })
            .collect::<Vec<_>>()
    };
    if let Some(code) = group_error(&b, &group_id, acl::READ) {
        return OffsetCommitResponse::default().with_topics(topic_error(&req.topics, code));
    }
    if b.shares.is_share_group(&group_id) {
        // A share group keeps no committed offsets: Kafka refuses them, and the
        // commit must not make a classic group of the same id.
        return OffsetCommitResponse::default().with_topics(topic_error(&req.topics, ec::GROUP_ID_NOT_FOUND));
    }
    if let Err(e) = b.groups.ensure_topic(&b).await {
        tracing::warn!("{e}");
        return OffsetCommitResponse::default().with_topics(topic_error(&req.topics, ec::COORDINATOR_NOT_AVAILABLE));
    }
    let generation = req.generation_id_or_member_epoch;
    let member = req.member_id.to_string();
    let instance = if version >= 7 { req.group_instance_id.as_ref().map(|s| s.to_string()) } else { None };
    let image = b.metadata.image();
    let max_meta = b.config.offset_metadata_max_bytes;
    let mut results: Vec<(kafka_protocol::messages::TopicName, Vec<(i32, i16)>)> = Vec::new();
    let mut writes = Vec::new();
    {
        let mut entries = b.groups.entries.lock();
        let group_code = match entries.get(&group_id) {
            None if generation < 0 => ec::NONE,
            None => ec::ILLEGAL_GENERATION,
            Some(e) => match &e.consumer {
                Some(c) => c.check_commit(&member, generation, version, false),
                None => e.group.check_commit(&member, instance.as_deref(), generation),
            },
        };
        if group_code != ec::NONE {
            return OffsetCommitResponse::default().with_topics(topic_error(&req.topics, group_code));
        }
        let e = entries.entry(group_id.clone()).or_insert_with(|| GroupEntry::new(&group_id, now));
        for t in &req.topics {
            let partitions = image.topics.get(t.name.as_str()).map_or(0, |m| m.partitions);
            let mut codes = Vec::new();
            if !authz::allowed(&b, acl::TOPIC, t.name.as_str(), acl::READ) {
                results.push((t.name.clone(), t.partitions.iter().map(|p| (p.partition_index, TOPIC_AUTHORIZATION_FAILED)).collect()));
                continue;
            }
            let topic_id = image.topics.get(t.name.as_str()).map(|m| m.id);
            for p in &t.partitions {
                let epoch = if version >= 6 { p.committed_leader_epoch } else { -1 };
                let metadata = p.committed_metadata.as_deref();
                let stale = e.consumer.as_ref().is_some_and(|c| {
                    generation >= 0 && !topic_id.is_some_and(|id| c.commit_allowed(&member, generation, id, p.partition_index))
                });
                let code = match offset_value(partitions, p.partition_index, metadata, max_meta, p.committed_offset, epoch, now) {
                    Ok(_) if stale => ec::STALE_MEMBER_EPOCH,
                    Ok(v) => {
                        let key = Key::Offset { group: group_id.clone(), topic: t.name.to_string(), partition: p.partition_index };
                        writes.push((records::encode_key(&key), Some(records::encode_offset(&v))));
                        e.offsets.insert((t.name.to_string(), p.partition_index), v);
                        ec::NONE
                    }
                    Err(code) => code,
                };
                codes.push((p.partition_index, code));
            }
            results.push((t.name.clone(), codes));
        }
    }
    let mut write_error = ec::NONE;
    if !writes.is_empty() {
        match b.groups.persist(&b, &group_id, &writes) {
            Ok(p) => {
                if let Err(code) = p.committed().await {
                    write_error = code;
                }
            }
            Err(code) => write_error = code,
        }
    }
    let topics = results
        .into_iter()
        .map(|(name, codes)| {
            let parts = codes
                .into_iter()
                .map(|(i, c)| {
                    OffsetCommitResponsePartition::default().with_partition_index(i).with_error_code(if c == ec::NONE {
                        write_error
                    } else {
                        c
                    })
                })
                .collect();
            OffsetCommitResponseTopic::default().with_name(name).with_partitions(parts)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// One committed offset as OffsetFetch reports it: partition, offset, leader epoch, metadata.
type CommittedPartition = (i32, i64, i32, Option<String>);
/// Committed offsets of one group, by topic.
type Committed = Vec<(String, Vec<CommittedPartition>)>;

fn committed(b: &Broker, group: &str, wanted: Option<Vec<(String, Vec<i32>)>>) -> Committed {
    let entries = b.groups.entries.lock();
    let offsets = entries.get(group).map(|e| &e.offsets);
    let lookup = |t: &str, p: i32| offsets.and_then(|o| o.get(&(t.to_string(), p)));
    match wanted {
        Some(list) => list
            .into_iter()
            .map(|(t, parts)| {
                let ps = parts
                    .into_iter()
                    .map(|p| match lookup(&t, p) {
                        Some(v) => (p, v.offset, v.leader_epoch, Some(v.metadata.clone())),
                        None => (p, -1, -1, Some(String::new())),
                    })
                    .collect();
                (t, ps)
            })
            .collect(),
        None => {
            let mut by_topic: BTreeMap<String, Vec<CommittedPartition>> = BTreeMap::new();
            // All of them: the topics the principal may describe.
            for ((t, p), v) in offsets.into_iter().flatten().filter(|((t, _), _)| authz::allowed(b, acl::TOPIC, t, acl::DESCRIBE)) {
                by_topic.entry(t.clone()).or_default().push((*p, v.offset, v.leader_epoch, Some(v.metadata.clone())));
            }
            by_topic.into_iter().collect()
        }
    }
}

/// Why `group`'s offset for `topic`-`partition` is not answered: a topic the principal
/// may not describe (TOPIC_AUTHORIZATION_FAILED), or (KIP-447, v7+ `require_stable`)
/// one waiting on an open transaction's marker (UNSTABLE_OFFSET_COMMIT).
fn fetch_refusal(b: &Broker, require_stable: bool, group: &str, topic: &str, partition: i32) -> Option<i16> {
    if !authz::allowed(b, acl::TOPIC, topic, acl::DESCRIBE) {
        return Some(TOPIC_AUTHORIZATION_FAILED);
    }
    (require_stable && b.groups.entries.lock().get(group).is_some_and(|e| e.unstable(topic, partition)))
        .then_some(ec::UNSTABLE_OFFSET_COMMIT)
}

pub(crate) fn offset_fetch(b: &Arc<Broker>, req: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
    let stable = version >= 7 && req.require_stable;
    if version >= 8 {
        let groups = req
            .groups
            .into_iter()
            .map(|g| {
                let id = g.group_id.to_string();
                let r = OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
                if let Some(code) = group_error(b, &id, acl::DESCRIBE) {
                    return r.with_error_code(code);
                }
                // v9+: a consumer-group member reads as itself, at its epoch.
                if version >= 9 {
                    let code = b
                        .groups
                        .entries
                        .lock()
                        .get(&id)
                        .and_then(|e| e.consumer.as_ref())
                        .map_or(ec::NONE, |c| c.check_fetch(g.member_id.as_ref().map(|m| m.as_str()), g.member_epoch));
                    if code != ec::NONE {
                        return r.with_error_code(code);
                    }
                }
                let wanted = g.topics.map(|ts| ts.into_iter().map(|t| (t.name.to_string(), t.partition_indexes)).collect());
                let topics = committed(b, &id, wanted)
                    .into_iter()
                    .map(|(t, ps)| {
                        OffsetFetchResponseTopics::default().with_name(topic_name(&t)).with_partitions(
                            ps.into_iter()
                                .map(|(p, o, e, m)| {
                                    let r = OffsetFetchResponsePartitions::default().with_partition_index(p);
                                    if let Some(code) = fetch_refusal(b, stable, &id, &t, p) {
                                        return r.with_committed_offset(-1).with_committed_leader_epoch(-1).with_error_code(code);
                                    }
                                    r.with_committed_offset(o).with_committed_leader_epoch(e).with_metadata(m.map(str_bytes))
                                })
                                .collect(),
                        )
                    })
                    .collect();
                r.with_topics(topics)
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let id = req.group_id.to_string();
    if let Some(code) = group_error(b, &id, acl::DESCRIBE) {
        if version >= 2 {
            return OffsetFetchResponse::default().with_error_code(code);
        }
        // Before v2 there is no top-level error: each partition asked for carries it.
        let topics = req
            .topics
            .unwrap_or_default()
            .into_iter()
            .map(|t| {
                OffsetFetchResponseTopic::default().with_name(t.name).with_partitions(
                    t.partition_indexes
                        .into_iter()
                        .map(|p| {
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(-1)
                                .with_committed_leader_epoch(-1)
                                .with_metadata(Some(str_bytes("")))
                                .with_error_code(code)
                        })
                        .collect(),
                )
            })
            .collect();
        return OffsetFetchResponse::default().with_topics(topics);
    }
    let wanted = req.topics.map(|ts| ts.into_iter().map(|t| (t.name.to_string(), t.partition_indexes)).collect());
    let topics = committed(b, &id, wanted)
        .into_iter()
        .map(|(t, ps)| {
            OffsetFetchResponseTopic::default().with_name(topic_name(&t)).with_partitions(
                ps.into_iter()
                    .map(|(p, o, e, m)| {
                        if let Some(code) = fetch_refusal(b, stable, &id, &t, p) {
                            return OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(-1)
                                .with_committed_leader_epoch(-1)
                                .with_error_code(code);
                        }
                        let r = OffsetFetchResponsePartition::default()
                            .with_partition_index(p)
                            .with_committed_offset(o)
                            .with_metadata(m.map(str_bytes));
                        if version >= 5 {
                            r.with_committed_leader_epoch(e)
                        } else {
                            r
                        }
                    })
                    .collect(),
            )
        })
        .collect();
    OffsetFetchResponse::default().with_topics(topics)
}

pub(crate) fn list_groups(b: &Arc<Broker>, req: ListGroupsRequest, version: i16) -> ListGroupsResponse {
    let entries = b.groups.entries.lock();
    let mut groups: Vec<ListedGroup> = entries
        .iter()
        // (id, state, protocol type, type)
        .map(|(id, e)| match &e.consumer {
            Some(c) => (id, c.state_name(), "consumer".to_string(), e.kind()),
            None => (id, e.group.state.name(), e.group.protocol_type.clone().unwrap_or_default(), e.kind()),
        })
        .filter(|(_, state, _, _)| *state != GroupState::Dead.name())
        // Without DESCRIBE on the cluster, the groups the principal may describe.
        .filter(|(id, ..)| {
            authz::allowed(b, acl::CLUSTER, acl::CLUSTER_NAME, acl::DESCRIBE) || authz::allowed(b, acl::GROUP, id, acl::DESCRIBE)
        })
        .filter(|(_, state, ..)| req.states_filter.is_empty() || req.states_filter.iter().any(|s| s.as_str().eq_ignore_ascii_case(state)))
        .filter(|(.., kind)| {
            version < 5 || req.types_filter.is_empty() || req.types_filter.iter().any(|s| s.as_str().eq_ignore_ascii_case(kind))
        })
        .map(|(id, state, protocol_type, kind)| {
            let l = ListedGroup::default().with_group_id(GroupId(str_bytes(id.clone()))).with_protocol_type(str_bytes(protocol_type));
            let l = if version >= 4 { l.with_group_state(str_bytes(state)) } else { l };
            if version >= 5 {
                l.with_group_type(str_bytes(kind))
            } else {
                l
            }
        })
        .collect();
    groups.extend(super::share::listed_groups(b, &req, version));
    ListGroupsResponse::default().with_groups(groups)
}

pub(crate) fn describe_groups(b: &Arc<Broker>, req: DescribeGroupsRequest, version: i16) -> DescribeGroupsResponse {
    let entries = b.groups.entries.lock();
    let groups = req
        .groups
        .into_iter()
        .map(|id| {
            let d = DescribedGroup::default().with_group_id(id.clone());
            if let Some(code) = group_error(b, id.as_str(), acl::DESCRIBE) {
                return d.with_error_code(code);
            }
            let Some(e) = entries.get(id.as_str()) else {
                let d = d.with_group_state(str_bytes("Dead"));
                return if version >= 6 {
                    // v6 carries a message; Kafka's words.
                    // A share group is not a classic group, in Kafka's words.
                    let what = if b.shares.is_share_group(id.as_str()) { "is not a classic group" } else { "not found" };
                    d.with_error_code(ec::GROUP_ID_NOT_FOUND).with_error_message(Some(str_bytes(format!("Group {} {what}.", id.as_str()))))
                } else {
                    d
                };
            };
            if e.consumer.is_some() {
                // Kafka describes a consumer group with ConsumerGroupDescribe only.
                let d = d.with_group_state(str_bytes("Dead"));
                return if version >= 6 {
                    d.with_error_code(ec::GROUP_ID_NOT_FOUND)
                        .with_error_message(Some(str_bytes(format!("Group {} is not a classic group.", id.as_str()))))
                } else {
                    d
                };
            }
            let g = &e.group;
            let stable = matches!(g.state, GroupState::Stable);
            let protocol = g.protocol.clone().unwrap_or_default();
            let members = g
                .members
                .values()
                .map(|m| {
                    let dm = DescribedGroupMember::default()
                        .with_member_id(str_bytes(m.id.clone()))
                        .with_client_id(str_bytes(m.client_id.clone()))
                        .with_client_host(str_bytes(m.client_host.clone()))
                        .with_member_metadata(if stable {
                            m.protocols.iter().find(|(n, _)| *n == protocol).map(|(_, md)| md.clone()).unwrap_or_default()
                        } else {
                            Bytes::new()
                        })
                        .with_member_assignment(m.assignment.clone());
                    if version >= 4 {
                        dm.with_group_instance_id(m.instance_id.clone().map(str_bytes))
                    } else {
                        dm
                    }
                })
                .collect();
            // As Kafka: outside Stable, no protocol and no member metadata (but each
            // member's last assignment).
            let d = d
                .with_group_state(str_bytes(g.state.name()))
                .with_protocol_type(str_bytes(g.protocol_type.clone().unwrap_or_default()))
                .with_protocol_data(str_bytes(if stable { protocol } else { String::new() }))
                .with_members(members);
            if version >= 3 && req.include_authorized_operations {
                d.with_authorized_operations(super::authorized::of(b, acl::GROUP, id.as_str(), super::authorized::GROUP))
            } else {
                d
            }
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

pub(crate) async fn delete_groups(b: Arc<Broker>, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut results = Vec::new();
    for id in req.groups_names {
        let name = id.to_string();
        let code = if let Some(code) = group_error(&b, &name, acl::DELETE) {
            code
        } else if b.shares.is_share_group(&name) {
            super::share::delete_group(&b, &name).await
        } else {
            let tombstones = {
                let mut entries = b.groups.entries.lock();
                match entries.get(&name) {
                    None => Err(ec::GROUP_ID_NOT_FOUND),
                    Some(e) if !e.is_empty() => Err(ec::NON_EMPTY_GROUP),
                    Some(_) => {
                        let e = entries.remove(&name);
                        let consumer = e.as_ref().is_some_and(|e| e.consumer.is_some());
                        let mut t: Vec<(Bytes, Option<Bytes>)> = e
                            .into_iter()
                            .flat_map(|e| e.offsets.into_keys())
                            .map(|(topic, partition)| (records::encode_key(&Key::Offset { group: name.clone(), topic, partition }), None))
                            .collect();
                        if consumer {
                            t.push((records::encode_key(&Key::Consumer { group: name.clone() }), None));
                        }
                        t.push((records::encode_key(&Key::Group { group: name.clone() }), None));
                        Ok(t)
                    }
                }
            };
            match tombstones {
                Err(code) => code,
                Ok(t) => match b.groups.persist(&b, &name, &t) {
                    Ok(p) => p.committed().await.err().unwrap_or(ec::NONE),
                    Err(code) => code,
                },
            }
        };
        results.push(DeletableGroupResult::default().with_group_id(id).with_error_code(code));
    }
    DeleteGroupsResponse::default().with_results(results)
}

pub(crate) async fn offset_delete(b: Arc<Broker>, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let group_id = req.group_id.to_string();
    if let Some(code) = group_error(&b, &group_id, acl::DELETE) {
        return OffsetDeleteResponse::default().with_error_code(code);
    }
    let mut tombstones = Vec::new();
    let topics = {
        let mut entries = b.groups.entries.lock();
        let Some(e) = entries.get_mut(&group_id) else {
            return OffsetDeleteResponse::default().with_error_code(ec::GROUP_ID_NOT_FOUND);
        };
        let subscribed: Vec<String> = if e.is_empty() {
            Vec::new()
        } else if let Some(c) = &e.consumer {
            c.subscribed_names().into_iter().collect()
        } else {
            e.group.members.values().flat_map(|m| m.protocols.iter().flat_map(|(_, md)| subscribed_topics(md))).collect()
        };
        req.topics
            .into_iter()
            .map(|t| {
                let busy = subscribed.iter().any(|s| s == t.name.as_str());
                let readable = authz::allowed(&b, acl::TOPIC, t.name.as_str(), acl::READ);
                let parts = t
                    .partitions
                    .into_iter()
                    .map(|p| {
                        let code = if !readable {
                            TOPIC_AUTHORIZATION_FAILED
                        } else if busy {
                            ec::GROUP_SUBSCRIBED_TO_TOPIC
                        } else {
                            if e.offsets.remove(&(t.name.to_string(), p.partition_index)).is_some() {
                                tombstones.push((
                                    records::encode_key(&Key::Offset {
                                        group: group_id.clone(),
                                        topic: t.name.to_string(),
                                        partition: p.partition_index,
                                    }),
                                    None,
                                ));
                            }
                            ec::NONE
                        };
                        OffsetDeleteResponsePartition::default().with_partition_index(p.partition_index).with_error_code(code)
                    })
                    .collect();
                OffsetDeleteResponseTopic::default().with_name(t.name).with_partitions(parts)
            })
            .collect()
    };
    if !tombstones.is_empty() {
        match b.groups.persist(&b, &group_id, &tombstones) {
            Ok(p) => {
                p.durable().await;
            }
            Err(code) => return OffsetDeleteResponse::default().with_error_code(code),
        }
    }
    OffsetDeleteResponse::default().with_topics(topics)
}
