//! KIP-932 share-group APIs: ShareGroupHeartbeat, ShareGroupDescribe, ShareFetch,
//! ShareAcknowledge, DescribeShareGroupOffsets, AlterShareGroupOffsets,
//! DeleteShareGroupOffsets, and share groups' part of ListGroups, DescribeGroups,
//! DeleteGroups and group configs.
//!
//! Share-partition state is persisted to the group's `__consumer_offsets` partition
//! (see `share::state_log`) and an acknowledgement is answered once that write is
//! committed.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::*;
use karst_protocol::error_codes as ec;
use uuid::Uuid;

use super::share_state::{self, snapshot_record};
use super::str_bytes;
use crate::broker::{now_ms, Broker};
use crate::group::Pending;
use crate::partition::Partition;
use crate::security::{acl, authz};
use crate::share::group::{Heartbeat, ShareGroup, LEAVE_EPOCH};
use crate::share::partition::{AckBatch, Acquired, LogBatch, SharePartition, Snapshot};
use crate::share::session::FetchContext;
use crate::share::state_log::{self, ShareKey};
use crate::share::{SpKey, GROUP_CONFIGS};

const GROUP_AUTHORIZATION_FAILED: i16 = 30;
const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
/// A ShareFetch without `max_records` takes at most this many (the consumers' default).
const DEFAULT_MAX_RECORDS: usize = 500;
/// Kafka's `authorized_operations` when they were not asked for.
const NO_OPERATIONS: i32 = i32::MIN;

type Outcome = Result<(), (i16, String)>;

/// Appends share records for `group` to its `__consumer_offsets` partition, which
/// this broker must lead; the state is applied here at once.
fn persist(b: &Broker, group: &str, records: Vec<(ShareKey, Option<Bytes>)>) -> Result<Pending, i16> {
    share_state::append(b, group, records)
}

async fn persisted(pending: Result<Pending, i16>) -> Result<(), i16> {
    pending?.committed().await
}

/// Why group `id` cannot be served here: a bad id, no authorization, not the coordinator.
fn group_error(b: &Broker, id: &str, operation: i8) -> Option<(i16, String)> {
    if id.is_empty() {
        return Some((ec::INVALID_REQUEST, "GroupId can't be empty.".into()));
    }
    if !authz::allowed(b, acl::GROUP, id, operation) {
        return Some((GROUP_AUTHORIZATION_FAILED, "Group authorization failed.".into()));
    }
    b.groups.coordinates(b, id).err().map(|c| (c, String::new()))
}

/// A consumer or classic group of that id: share APIs do not see it, as Kafka.
fn other_kind(b: &Broker, id: &str) -> bool {
    b.groups.entries.lock().contains_key(id)
}

fn topic_ids(b: &Broker) -> HashMap<String, (Uuid, i32)> {
    b.metadata.image().topics.values().map(|t| (t.name.clone(), (t.id, t.partitions))).collect()
}

// ---------------------------------------------------------------- heartbeat

pub(crate) async fn heartbeat(
    b: Arc<Broker>,
    req: ShareGroupHeartbeatRequest,
    client_id: String,
    peer: SocketAddr,
) -> ShareGroupHeartbeatResponse {
    let fail = |code: i16, msg: String| {
        ShareGroupHeartbeatResponse::default().with_error_code(code).with_error_message((!msg.is_empty()).then(|| str_bytes(msg)))
    };
    let group = req.group_id.to_string();
    let member = req.member_id.to_string();
    if group.is_empty() {
        return fail(ec::INVALID_REQUEST, "GroupId can't be empty.".into());
    }
    if req.rack_id.as_ref().is_some_and(|r| r.is_empty()) {
        return fail(ec::INVALID_REQUEST, "RackId can't be empty.".into());
    }
    if member.is_empty() {
        return fail(ec::INVALID_REQUEST, "MemberId can't be empty.".into());
    }
    if req.member_epoch < LEAVE_EPOCH {
        return fail(ec::INVALID_REQUEST, "MemberEpoch is invalid.".into());
    }
    if req.member_epoch == 0 && req.subscribed_topic_names.as_ref().is_none_or(|t| t.is_empty()) {
        return fail(ec::INVALID_REQUEST, "SubscribedTopicNames must be set in first request.".into());
    }
    if let Some((code, msg)) = group_error(&b, &group, acl::READ) {
        return fail(code, msg);
    }
    if other_kind(&b, &group) {
        return fail(ec::GROUP_ID_NOT_FOUND, format!("Group {group} is not a share group."));
    }
    let interval = b.shares.heartbeat_interval_ms(&group);
    if req.member_epoch == LEAVE_EPOCH {
        let left = match b.shares.groups.lock().get_mut(&group) {
            None => Err((ec::GROUP_ID_NOT_FOUND, format!("Group {group} not found."))),
            Some(g) => g.leave(&member),
        };
        if let Err((code, msg)) = left {
            return fail(code, msg);
        }
        b.shares.release_member(&group, &member);
        return ShareGroupHeartbeatResponse::default()
            .with_member_id(Some(str_bytes(member)))
            .with_member_epoch(LEAVE_EPOCH)
            .with_heartbeat_interval_ms(interval);
    }
    let topics = topic_ids(&b);
    let settings = b.shares.group_settings(&group);
    let hb = Heartbeat {
        member_id: member.clone(),
        epoch: req.member_epoch,
        rack: req.rack_id.map(|r| r.to_string()),
        subscribed: req.subscribed_topic_names.map(|t| t.into_iter().map(|n| n.to_string()).collect()),
        client_id,
        client_host: format!("/{}", peer.ip()),
    };
    let (beat, created) = {
        let mut groups = b.shares.groups.lock();
        let created = !groups.contains_key(&group);
        let g = groups.entry(group.clone()).or_insert_with(|| ShareGroup::new(&group));
        let beat = g.heartbeat(hb, &|t| topics.get(t).map(|(_, n)| *n), now_ms(), &settings);
        if beat.is_err() && created {
            groups.remove(&group);
        }
        (beat, created)
    };
    let beat = match beat {
        Ok(beat) => beat,
        Err((code, msg)) => return fail(code, msg),
    };
    if created {
        let record = (ShareKey::Group { group: group.clone() }, Some(state_log::encode_group(beat.epoch)));
        if let Err(code) = persisted(persist(&b, &group, vec![record])).await {
            b.shares.groups.lock().remove(&group);
            return fail(code, String::new());
        }
    }
    let assignment = beat.assignment.map(|a| {
        let tps = a
            .into_iter()
            .filter_map(|(t, parts)| {
                let (id, _) = topics.get(&t)?;
                Some(share_group_heartbeat_response::TopicPartitions::default().with_topic_id(*id).with_partitions(parts))
            })
            .collect();
        share_group_heartbeat_response::Assignment::default().with_topic_partitions(tps)
    });
    ShareGroupHeartbeatResponse::default()
        .with_member_id(Some(str_bytes(member)))
        .with_member_epoch(beat.epoch)
        .with_heartbeat_interval_ms(interval)
        .with_assignment(assignment)
}

// ---------------------------------------------------------------- describe

fn authorized_operations(b: &Broker, group: &str) -> i32 {
    [acl::READ, acl::DESCRIBE, acl::DELETE]
        .iter()
        .filter(|op| authz::allowed(b, acl::GROUP, group, **op))
        .fold(0, |acc, op| acc | (1 << op))
}

pub(crate) fn describe(b: &Arc<Broker>, req: ShareGroupDescribeRequest) -> ShareGroupDescribeResponse {
    use share_group_describe_response::{Assignment, DescribedGroup, Member, TopicPartitions};
    let image = b.metadata.image();
    let assignment = |a: &BTreeMap<String, Vec<i32>>| {
        let tps = a
            .iter()
            .filter_map(|(t, parts)| {
                let meta = image.topics.get(t)?;
                Some(TopicPartitions::default().with_topic_id(meta.id).with_topic_name(super::topic_name(t)).with_partitions(parts.clone()))
            })
            .collect();
        Assignment::default().with_topic_partitions(tps)
    };
    let groups = req
        .group_ids
        .into_iter()
        .map(|id| {
            let d = DescribedGroup::default().with_group_id(id.clone()).with_authorized_operations(NO_OPERATIONS);
            let name = id.as_str();
            if let Some((code, msg)) = group_error(b, name, acl::DESCRIBE) {
                return d.with_error_code(code).with_error_message((!msg.is_empty()).then(|| str_bytes(msg)));
            }
            if other_kind(b, name) {
                return d
                    .with_error_code(ec::GROUP_ID_NOT_FOUND)
                    .with_error_message(Some(str_bytes(format!("Group {name} is not a share group."))));
            }
            let groups = b.shares.groups.lock();
            let Some(g) = groups.get(name) else {
                return d.with_error_code(ec::GROUP_ID_NOT_FOUND).with_error_message(Some(str_bytes(format!("Group {name} not found."))));
            };
            let members = g
                .members
                .values()
                .map(|m| {
                    Member::default()
                        .with_member_id(str_bytes(m.id.clone()))
                        .with_rack_id(m.rack.clone().map(str_bytes))
                        .with_member_epoch(m.epoch)
                        .with_client_id(str_bytes(m.client_id.clone()))
                        .with_client_host(str_bytes(m.client_host.clone()))
                        .with_subscribed_topic_names(m.subscribed.iter().map(|t| super::topic_name(t)).collect())
                        .with_assignment(assignment(&m.assignment))
                })
                .collect();
            let ops = if req.include_authorized_operations { authorized_operations(b, name) } else { NO_OPERATIONS };
            d.with_group_state(str_bytes(g.state()))
                .with_group_epoch(g.epoch)
                .with_assignment_epoch(g.assignment_epoch)
                .with_assignor_name(str_bytes("simple"))
                .with_members(members)
                .with_authorized_operations(ops)
        })
        .collect();
    ShareGroupDescribeResponse::default().with_groups(groups)
}

// ---------------------------------------------------------------- share-partitions

/// The share-partition of `key`, loaded here at the partition's current leader epoch
/// if it is not: its state read from the group's coordinator, or a new one started
/// at the log's end (a group set to `earliest` reads a start of 0 from its
/// coordinator), written back before it is used so a restart does not move it.
async fn ensure_partition(b: &Broker, key: &SpKey, p: &Partition, topic_id: Uuid) -> Result<(), i16> {
    let epoch = p.leader_epoch();
    let current = || b.shares.partitions.lock().get(key).is_some_and(|sp| sp.topic_id == topic_id && sp.leader_epoch == epoch);
    if current() {
        return Ok(());
    }
    let writer = b.shares.writer(key);
    let _one_at_a_time = writer.lock().await;
    if current() {
        return Ok(());
    }
    let (mut sp, new) = match share_state::load(b, key, topic_id, epoch).await.map_err(share_state::for_client)? {
        Some(s) => (SharePartition::restore(&s), false),
        None => (SharePartition::new(topic_id, p.high_watermark()), true),
    };
    sp.leader_epoch = epoch;
    if new {
        share_state::save(b, key, sp.snapshot()).await.map_err(share_state::for_client)?;
    }
    if p.leader_epoch() != epoch {
        return Err(ec::NOT_LEADER_OR_FOLLOWER);
    }
    b.shares.partitions.lock().insert(key.clone(), sp);
    Ok(())
}

/// Persists the state of share-partition `key` with its group's coordinator, up to
/// at least change `upto` of the instance `id` loaded here. Writes go one at a time
/// and each carries the latest state, so a write that finds its change already
/// written by another is done.
async fn save_changes(b: &Broker, key: &SpKey, (id, upto): (u64, u64)) -> Result<(), i16> {
    let writer = b.shares.writer(key);
    let _one_at_a_time = writer.lock().await;
    let (snapshot, changes) = {
        let parts = b.shares.partitions.lock();
        match parts.get(key) {
            // Reloaded since (leadership moved): whether the change was written is unknown.
            Some(sp) if sp.id != id => return Err(ec::NOT_LEADER_OR_FOLLOWER),
            None => return Err(ec::NOT_LEADER_OR_FOLLOWER),
            Some(sp) if sp.saved >= upto => return Ok(()),
            Some(sp) => (sp.snapshot(), sp.changes),
        }
    };
    let written = share_state::save(b, key, snapshot).await;
    let mut parts = b.shares.partitions.lock();
    match written {
        Ok(()) => {
            if let Some(sp) = parts.get_mut(key).filter(|sp| sp.id == id) {
                sp.saved = sp.saved.max(changes);
            }
            Ok(())
        }
        Err(code) => {
            // The acknowledgements not written are undone, as Kafka rolls its state
            // back: the state is read again from the coordinator on next use (fenced,
            // another leader's or altered offsets' is there). Writers waiting behind
            // this one fail too, so none writes the undone changes after all.
            parts.retain(|k, sp| k != key || sp.id != id);
            Err(share_state::for_client(code))
        }
    }
}

/// A partition a share request names, resolved: its topic name and local partition,
/// or the error it gets.
fn resolve(b: &Broker, topic_id: Uuid, partition: i32) -> Result<(String, Arc<Partition>), i16> {
    let image = b.metadata.image();
    let Some(meta) = image.topic_by_id(topic_id) else { return Err(ec::UNKNOWN_TOPIC_ID) };
    let name = meta.name.clone();
    if !authz::allowed(b, acl::TOPIC, &name, acl::READ) {
        return Err(TOPIC_AUTHORIZATION_FAILED);
    }
    if !(0..meta.partitions).contains(&partition) {
        return Err(ec::UNKNOWN_TOPIC_OR_PARTITION);
    }
    b.check_leader(&name, partition)?;
    if b.groups.stalled(b) {
        // Just running again after a pause: the leadership, and the share-partition
        // state in memory, may be a deposed leader's; delivering from it could hand out
        // records accepted at the new leader meanwhile.
        return Err(ec::NOT_LEADER_OR_FOLLOWER);
    }
    let p = b.partitions.get(&name, partition).ok_or(ec::NOT_LEADER_OR_FOLLOWER)?;
    Ok((name, p))
}

/// Kafka's `validateAcknowledgementBatches`: ranges ascend without overlap, types
/// are 0–3, one per offset or one for the range.
fn valid_batches(batches: &[AckBatch]) -> bool {
    let mut prev_end = -1i64;
    for b in batches {
        let span = b.last.checked_sub(b.first).and_then(|d| d.checked_add(1));
        let ok = b.first <= b.last
            && b.first >= prev_end
            && !b.types.is_empty()
            && (b.types.len() == 1 || span == i64::try_from(b.types.len()).ok())
            && b.types.iter().all(|t| (0..=3).contains(t));
        if !ok {
            return false;
        }
        prev_end = b.last;
    }
    true
}

/// Applies acknowledgements of `member`, partition by partition; each partition's
/// answer waits for its state to be committed.
async fn acknowledge_all(b: &Arc<Broker>, group: &str, member: &str, acks: Vec<((Uuid, i32), Vec<AckBatch>)>) -> Vec<((Uuid, i32), i16)> {
    let limits = b.shares.limits(group);
    let mut waits = Vec::new();
    let mut out = Vec::new();
    let mut released = false;
    for ((topic_id, index), batches) in acks {
        if batches.is_empty() {
            out.push(((topic_id, index), ec::NONE));
            continue;
        }
        if !valid_batches(&batches) {
            out.push(((topic_id, index), ec::INVALID_REQUEST));
            continue;
        }
        let (topic, p) = match resolve(b, topic_id, index) {
            Ok(r) => r,
            Err(code) => {
                out.push(((topic_id, index), code));
                continue;
            }
        };
        let key: SpKey = (group.to_string(), topic, index);
        if let Err(code) = ensure_partition(b, &key, &p, topic_id).await {
            out.push(((topic_id, index), code));
            continue;
        }
        let applied = {
            let mut parts = b.shares.partitions.lock();
            match parts.get_mut(&key) {
                None => Err(ec::UNKNOWN_TOPIC_OR_PARTITION),
                Some(sp) => sp.acknowledge(member, &batches, &limits).map(|()| {
                    sp.changes += 1;
                    (sp.id, sp.changes)
                }),
            }
        };
        match applied {
            Err(code) => out.push(((topic_id, index), code)),
            Ok(change) => {
                released |= batches.iter().any(|a| a.types.contains(&crate::share::partition::ACK_RELEASE));
                waits.push(((topic_id, index), key, change));
            }
        }
    }
    if released {
        b.shares.notify_available();
    }
    let saved = waits.iter().map(|(_, key, change)| save_changes(b, key, *change));
    let saved = futures::future::join_all(saved).await;
    for ((tp, _, _), r) in waits.iter().zip(saved) {
        out.push((*tp, r.err().unwrap_or(ec::NONE)));
    }
    out
}

/// What one partition's fetch gave.
struct Fetched {
    records: Option<Bytes>,
    acquired: Vec<Acquired>,
}

/// Acquires records of one share-partition for `member`: reads the log where the
/// first available record is and takes what it may.
fn acquire(b: &Broker, key: &SpKey, p: &Partition, member: &str, max_bytes: usize, max_records: usize) -> Fetched {
    let none = Fetched { records: None, acquired: Vec::new() };
    let limits = b.shares.limits(&key.0);
    let now = now_ms();
    let start = {
        let mut parts = b.shares.partitions.lock();
        let Some(sp) = parts.get_mut(key) else { return none };
        sp.log_start_moved(p.log_start_offset());
        sp.expire_locks(now, &limits);
        if !sp.has_available(p.high_watermark(), &limits) {
            return none;
        }
        sp.next_fetch_offset()
    };
    let slice = match p.read(start, max_bytes.max(1), true) {
        Ok(s) if !s.bytes.is_empty() => s,
        _ => return none,
    };
    let mut batches = Vec::new();
    let mut spans = Vec::new();
    for h in karst_batch::batches(&slice.bytes) {
        let Ok((at, h)) = h else { break };
        batches.push(LogBatch { base: h.base_offset, last: h.last_offset(), control: h.is_control() });
        spans.push((at, at + h.total_len()));
    }
    let acquired = {
        let mut parts = b.shares.partitions.lock();
        let Some(sp) = parts.get_mut(key) else { return none };
        sp.acquire(member, &batches, max_records, now, &limits)
    };
    let (Some(first), Some(last)) = (acquired.first(), acquired.last()) else { return none };
    // The batches holding the acquired records, one contiguous slice of the read.
    let from = batches.iter().position(|x| x.last >= first.first).unwrap_or(0);
    let to = batches.iter().rposition(|x| x.base <= last.last).unwrap_or(batches.len().saturating_sub(1));
    let (Some(&(a, _)), Some(&(_, z))) = (spans.get(from), spans.get(to)) else { return none };
    Fetched { records: Some(slice.bytes.slice(a..z)), acquired }
}

fn fetch_partition(index: i32, code: i16, p: Option<&Partition>) -> share_fetch_response::PartitionData {
    let (leader, epoch) = p.map_or((-1, -1), |p| (p.node_id(), p.leader_epoch()));
    share_fetch_response::PartitionData::default()
        .with_partition_index(index)
        .with_error_code(code)
        .with_current_leader(share_fetch_response::LeaderIdAndEpoch::default().with_leader_id(leader).with_leader_epoch(epoch))
}

// ---------------------------------------------------------------- ShareFetch

fn fetch_error(code: i16, msg: &str) -> ShareFetchResponse {
    ShareFetchResponse::default().with_error_code(code).with_error_message((!msg.is_empty()).then(|| str_bytes(msg)))
}

/// ShareFetch: the share session is settled now, in request order; acknowledging,
/// acquiring and waiting happen in the returned future.
pub(crate) fn share_fetch(b: &Arc<Broker>, req: ShareFetchRequest) -> impl Future<Output = ShareFetchResponse> + Send + 'static {
    let settled = settle_fetch(b, &req);
    let b = b.clone();
    async move {
        let (group, member, context, acks) = match settled {
            Ok(s) => s,
            Err(r) => return r,
        };
        let lock_ms = i32::try_from(b.shares.limits(&group).lock_ms).unwrap_or(i32::MAX);
        let acked = acknowledge_all(&b, &group, &member, acks).await;
        let mut parts: Vec<((Uuid, i32), share_fetch_response::PartitionData)> = match &context {
            FetchContext::Fetch(list) => fetch_all(&b, &group, &member, list, &req).await,
            FetchContext::Final => Vec::new(),
        };
        for (tp, code) in acked {
            match parts.iter_mut().find(|(k, _)| *k == tp) {
                Some((_, d)) => d.acknowledge_error_code = code,
                None => parts.push((tp, fetch_partition(tp.1, ec::NONE, None).with_acknowledge_error_code(code))),
            }
        }
        if context == FetchContext::Final {
            b.shares.sessions.lock().remove(&group, &member);
            b.shares.release_member(&group, &member);
        }
        let mut topics: Vec<share_fetch_response::ShareFetchableTopicResponse> = Vec::new();
        for ((topic_id, _), d) in parts {
            match topics.iter_mut().find(|t| t.topic_id == topic_id) {
                Some(t) => t.partitions.push(d),
                None => topics
                    .push(share_fetch_response::ShareFetchableTopicResponse::default().with_topic_id(topic_id).with_partitions(vec![d])),
            }
        }
        ShareFetchResponse::default().with_acquisition_lock_timeout_ms(lock_ms).with_responses(topics)
    }
}

type Settled = (String, String, FetchContext, Vec<((Uuid, i32), Vec<AckBatch>)>);

fn settle_fetch(b: &Broker, req: &ShareFetchRequest) -> Result<Settled, ShareFetchResponse> {
    let group = req.group_id.as_ref().map(|g| g.to_string()).unwrap_or_default();
    let member = req.member_id.as_ref().map(|m| m.to_string()).unwrap_or_default();
    if group.is_empty() || member.is_empty() {
        return Err(fetch_error(ec::INVALID_REQUEST, "group id and member id must be set"));
    }
    if !authz::allowed(b, acl::GROUP, &group, acl::READ) {
        return Err(fetch_error(GROUP_AUTHORIZATION_FAILED, ""));
    }
    let mut add = Vec::new();
    let mut acks = Vec::new();
    for t in &req.topics {
        for p in &t.partitions {
            add.push((t.topic_id, p.partition_index));
            if !p.acknowledgement_batches.is_empty() {
                let batches = p
                    .acknowledgement_batches
                    .iter()
                    .map(|a| AckBatch { first: a.first_offset, last: a.last_offset, types: a.acknowledge_types.clone() })
                    .collect();
                acks.push(((t.topic_id, p.partition_index), batches));
            }
        }
    }
    let forget: Vec<(Uuid, i32)> =
        req.forgotten_topics_data.iter().flat_map(|t| t.partitions.iter().map(move |p| (t.topic_id, *p))).collect();
    let context = b
        .shares
        .sessions
        .lock()
        .fetch((&group, &member), req.share_session_epoch, &add, &forget, !acks.is_empty(), now_ms())
        .map_err(|code| fetch_error(code, ""))?;
    Ok((group, member, context, acks))
}

/// Acquires from the session's partitions, waiting up to `max_wait_ms` for records
/// to arrive or become available again.
async fn fetch_all(
    b: &Arc<Broker>,
    group: &str,
    member: &str,
    list: &[(Uuid, i32)],
    req: &ShareFetchRequest,
) -> Vec<((Uuid, i32), share_fetch_response::PartitionData)> {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(u64::try_from(req.max_wait_ms.max(0)).unwrap_or(0));
    let cap = b.config.fetch_max_bytes;
    let max_bytes = if req.max_bytes <= 0 { cap } else { usize::try_from(req.max_bytes).unwrap_or(cap).min(cap) };
    let max_records =
        if req.max_records <= 0 { DEFAULT_MAX_RECORDS } else { usize::try_from(req.max_records).unwrap_or(DEFAULT_MAX_RECORDS) };
    let mut available = b.shares.subscribe_available();
    loop {
        available.borrow_and_update();
        let mut out = Vec::new();
        let mut watches = Vec::new();
        let (mut bytes_left, mut records_left, mut any) = (max_bytes, max_records, false);
        for &(topic_id, index) in list {
            let (topic, p) = match resolve(b, topic_id, index) {
                Ok(r) => r,
                Err(code) => {
                    out.push(((topic_id, index), fetch_partition(index, code, None)));
                    any = true;
                    continue;
                }
            };
            watches.push(p.subscribe());
            if records_left == 0 || bytes_left == 0 {
                continue;
            }
            let key: SpKey = (group.to_string(), topic, index);
            if let Err(code) = ensure_partition(b, &key, &p, topic_id).await {
                out.push(((topic_id, index), fetch_partition(index, code, Some(&p))));
                any = true;
                continue;
            }
            let f = acquire(b, &key, &p, member, bytes_left, records_left);
            let n: i64 = f.acquired.iter().map(|a| a.last - a.first + 1).sum();
            if n > 0 {
                any = true;
                records_left = records_left.saturating_sub(usize::try_from(n).unwrap_or(usize::MAX));
                bytes_left = bytes_left.saturating_sub(f.records.as_ref().map_or(0, |r| r.len()));
                let acquired = f
                    .acquired
                    .iter()
                    .map(|a| {
                        share_fetch_response::AcquiredRecords::default()
                            .with_first_offset(a.first)
                            .with_last_offset(a.last)
                            .with_delivery_count(a.delivery_count)
                    })
                    .collect();
                out.push((
                    (topic_id, index),
                    fetch_partition(index, ec::NONE, Some(&p)).with_records(f.records).with_acquired_records(acquired),
                ));
            }
        }
        if any || tokio::time::Instant::now() >= deadline {
            return out;
        }
        // Long poll: new records, released or expired ones, or the deadline. Locks
        // expire on the coordinator's tick, which notifies.
        let mut changes: Vec<_> = watches.iter_mut().map(|w| Box::pin(w.changed())).collect();
        let released = Box::pin(available.changed());
        let wait = async {
            if changes.is_empty() {
                let _ = released.await;
            } else {
                tokio::select! {
                    _ = futures::future::select_all(changes.iter_mut()) => {}
                    _ = released => {}
                }
            }
        };
        if tokio::time::timeout_at(deadline, wait).await.is_err() {
            return Vec::new();
        }
    }
}

// ---------------------------------------------------------------- ShareAcknowledge

fn ack_error(code: i16, msg: &str) -> ShareAcknowledgeResponse {
    ShareAcknowledgeResponse::default().with_error_code(code).with_error_message((!msg.is_empty()).then(|| str_bytes(msg)))
}

pub(crate) fn share_acknowledge(
    b: &Arc<Broker>,
    req: ShareAcknowledgeRequest,
) -> impl Future<Output = ShareAcknowledgeResponse> + Send + 'static {
    let settled = (|| {
        let group = req.group_id.as_ref().map(|g| g.to_string()).unwrap_or_default();
        let member = req.member_id.as_ref().map(|m| m.to_string()).unwrap_or_default();
        if group.is_empty() || member.is_empty() {
            return Err(ack_error(ec::INVALID_REQUEST, "group id and member id must be set"));
        }
        if !authz::allowed(b, acl::GROUP, &group, acl::READ) {
            return Err(ack_error(GROUP_AUTHORIZATION_FAILED, ""));
        }
        let closing =
            b.shares.sessions.lock().acknowledge(&group, &member, req.share_session_epoch, now_ms()).map_err(|c| ack_error(c, ""))?;
        Ok((group, member, closing))
    })();
    let acks: Vec<((Uuid, i32), Vec<AckBatch>)> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| {
                let batches = p
                    .acknowledgement_batches
                    .iter()
                    .map(|a| AckBatch { first: a.first_offset, last: a.last_offset, types: a.acknowledge_types.clone() })
                    .collect();
                ((t.topic_id, p.partition_index), batches)
            })
        })
        .collect();
    let b = b.clone();
    async move {
        let (group, member, closing) = match settled {
            Ok(s) => s,
            Err(r) => return r,
        };
        let acked = acknowledge_all(&b, &group, &member, acks).await;
        if closing {
            b.shares.sessions.lock().remove(&group, &member);
            b.shares.release_member(&group, &member);
        }
        let mut topics: Vec<share_acknowledge_response::ShareAcknowledgeTopicResponse> = Vec::new();
        for ((topic_id, index), code) in acked {
            let leader = b.metadata.image().topic_by_id(topic_id).and_then(|t| b.partitions.get(&t.name, index));
            let (id, epoch) = leader.as_ref().map_or((-1, -1), |p| (p.node_id(), p.leader_epoch()));
            let d = share_acknowledge_response::PartitionData::default()
                .with_partition_index(index)
                .with_error_code(code)
                .with_current_leader(share_acknowledge_response::LeaderIdAndEpoch::default().with_leader_id(id).with_leader_epoch(epoch));
            match topics.iter_mut().find(|t| t.topic_id == topic_id) {
                Some(t) => t.partitions.push(d),
                None => topics.push(
                    share_acknowledge_response::ShareAcknowledgeTopicResponse::default().with_topic_id(topic_id).with_partitions(vec![d]),
                ),
            }
        }
        ShareAcknowledgeResponse::default().with_responses(topics)
    }
}

// ---------------------------------------------------------------- offsets admin

/// A share-partition's start offset as this broker knows it: the live state, else
/// the last persisted one.
fn start_offset(b: &Broker, key: &SpKey) -> Option<i64> {
    if let Some(sp) = b.shares.partitions.lock().get(key) {
        return Some(sp.start());
    }
    b.shares.snapshots.lock().get(key).map(|s| s.start)
}

pub(crate) fn describe_offsets(b: &Arc<Broker>, req: DescribeShareGroupOffsetsRequest) -> DescribeShareGroupOffsetsResponse {
    use describe_share_group_offsets_response::{
        DescribeShareGroupOffsetsResponseGroup as Group, DescribeShareGroupOffsetsResponsePartition as Part,
        DescribeShareGroupOffsetsResponseTopic as Topic,
    };
    let image = b.metadata.image();
    let groups = req
        .groups
        .into_iter()
        .map(|g| {
            let id = g.group_id.to_string();
            let out = Group::default().with_group_id(g.group_id.clone());
            if let Some((code, msg)) = group_error(b, &id, acl::DESCRIBE) {
                return out.with_error_code(code).with_error_message((!msg.is_empty()).then(|| str_bytes(msg)));
            }
            if other_kind(b, &id) {
                return out
                    .with_error_code(ec::GROUP_ID_NOT_FOUND)
                    .with_error_message(Some(str_bytes(format!("Group {id} is not a share group."))));
            }
            // All topics the group has state for, when none are named.
            let wanted: Vec<(String, Vec<i32>)> = match g.topics {
                Some(topics) => topics.into_iter().map(|t| (t.topic_name.to_string(), t.partitions)).collect(),
                None => {
                    let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
                    for (gid, t, p) in b.shares.snapshots.lock().keys() {
                        if *gid == id {
                            by_topic.entry(t.clone()).or_default().push(*p);
                        }
                    }
                    by_topic
                        .into_iter()
                        .map(|(t, mut ps)| {
                            ps.sort_unstable();
                            (t, ps)
                        })
                        .collect()
                }
            };
            let topics = wanted
                .into_iter()
                .map(|(topic, partitions)| {
                    let meta = image.topics.get(&topic);
                    let parts = partitions
                        .into_iter()
                        .map(|index| {
                            let p = Part::default().with_partition_index(index).with_leader_epoch(-1);
                            match meta {
                                Some(m) if (0..m.partitions).contains(&index) && authz::allowed(b, acl::TOPIC, &topic, acl::DESCRIBE) => {
                                    p.with_start_offset(start_offset(b, &(id.clone(), topic.clone(), index)).unwrap_or(-1))
                                }
                                Some(_) if !authz::allowed(b, acl::TOPIC, &topic, acl::DESCRIBE) => {
                                    p.with_start_offset(-1).with_error_code(TOPIC_AUTHORIZATION_FAILED)
                                }
                                _ => p
                                    .with_start_offset(-1)
                                    .with_error_code(ec::UNKNOWN_TOPIC_OR_PARTITION)
                                    .with_error_message(Some(str_bytes("This server does not host this topic-partition."))),
                            }
                        })
                        .collect();
                    Topic::default()
                        .with_topic_name(super::topic_name(&topic))
                        .with_topic_id(meta.map_or(Uuid::nil(), |m| m.id))
                        .with_partitions(parts)
                })
                .collect();
            out.with_topics(topics)
        })
        .collect();
    DescribeShareGroupOffsetsResponse::default().with_groups(groups)
}

/// Why the share group's offsets cannot be changed now (by a principal allowed
/// `operation` on the group): GROUP_ID_NOT_FOUND, or NON_EMPTY_GROUP while it has members.
fn offsets_change_error(b: &Broker, id: &str, operation: i8) -> Option<(i16, String)> {
    if let Some(e) = group_error(b, id, operation) {
        return Some(e);
    }
    if other_kind(b, id) {
        return Some((ec::GROUP_ID_NOT_FOUND, format!("Group {id} is not a share group.")));
    }
    match b.shares.groups.lock().get(id) {
        None => Some((ec::GROUP_ID_NOT_FOUND, format!("Group {id} not found."))),
        Some(g) if !g.members.is_empty() => Some((ec::NON_EMPTY_GROUP, "The group is not empty.".into())),
        Some(_) => None,
    }
}

pub(crate) async fn alter_offsets(b: Arc<Broker>, req: AlterShareGroupOffsetsRequest) -> AlterShareGroupOffsetsResponse {
    use alter_share_group_offsets_response::{
        AlterShareGroupOffsetsResponsePartition as Part, AlterShareGroupOffsetsResponseTopic as Topic,
    };
    let id = req.group_id.to_string();
    if let Some((code, msg)) = offsets_change_error(&b, &id, acl::READ) {
        return AlterShareGroupOffsetsResponse::default().with_error_code(code).with_error_message(Some(str_bytes(msg)));
    }
    let image = b.metadata.image();
    let mut responses = Vec::new();
    for t in req.topics {
        let topic = t.topic_name.to_string();
        let meta = image.topics.get(&topic).filter(|_| authz::allowed(&b, acl::TOPIC, &topic, acl::READ));
        let mut parts = Vec::new();
        for p in t.partitions {
            let out = Part::default().with_partition_index(p.partition_index);
            let code = match meta {
                None => ec::UNKNOWN_TOPIC_OR_PARTITION,
                Some(m) if !(0..m.partitions).contains(&p.partition_index) => ec::UNKNOWN_TOPIC_OR_PARTITION,
                Some(_) if p.start_offset < 0 => ec::INVALID_REQUEST,
                Some(m) => {
                    let key: SpKey = (id.clone(), topic.clone(), p.partition_index);
                    // A new state epoch: a partition leader still holding the old state
                    // is fenced at its next write and reads this one.
                    let stored = b.shares.snapshots.lock().get(&key).map(|x| (x.state_epoch, x.leader_epoch));
                    let (state_epoch, leader_epoch) = stored.map_or((0, -1), |(s, l)| (s.saturating_add(1), l));
                    let s = Snapshot { state_epoch, leader_epoch, ..Snapshot::at(m.id, p.start_offset) };
                    let r = persisted(persist(&b, &id, vec![snapshot_record(&key, Some(&s))])).await;
                    b.shares.reset_partition(&key);
                    r.err().unwrap_or(ec::NONE)
                }
            };
            parts.push(out.with_error_code(code));
        }
        responses
            .push(Topic::default().with_topic_name(t.topic_name).with_topic_id(meta.map_or(Uuid::nil(), |m| m.id)).with_partitions(parts));
    }
    AlterShareGroupOffsetsResponse::default().with_responses(responses)
}

pub(crate) async fn delete_offsets(b: Arc<Broker>, req: DeleteShareGroupOffsetsRequest) -> DeleteShareGroupOffsetsResponse {
    use delete_share_group_offsets_response::DeleteShareGroupOffsetsResponseTopic as Topic;
    let id = req.group_id.to_string();
    // Kafka: deleting a share group's offsets needs DELETE on the group.
    if let Some((code, msg)) = offsets_change_error(&b, &id, acl::DELETE) {
        return DeleteShareGroupOffsetsResponse::default().with_error_code(code).with_error_message(Some(str_bytes(msg)));
    }
    let image = b.metadata.image();
    let mut responses = Vec::new();
    for t in req.topics {
        let topic = t.topic_name.to_string();
        let meta = image.topics.get(&topic).filter(|_| authz::allowed(&b, acl::TOPIC, &topic, acl::READ));
        let out = Topic::default().with_topic_name(t.topic_name).with_topic_id(meta.map_or(Uuid::nil(), |m| m.id));
        let Some(m) = meta else {
            responses.push(
                out.with_error_code(ec::UNKNOWN_TOPIC_OR_PARTITION)
                    .with_error_message(Some(str_bytes("This server does not host this topic-partition."))),
            );
            continue;
        };
        let keys: Vec<SpKey> = (0..m.partitions).map(|p| (id.clone(), topic.clone(), p)).collect();
        let records = keys.iter().map(|k| snapshot_record(k, None)).collect();
        let r = persisted(persist(&b, &id, records)).await;
        for k in &keys {
            b.shares.reset_partition(k);
        }
        responses.push(match r {
            Ok(()) => out,
            Err(code) => out.with_error_code(code),
        });
    }
    DeleteShareGroupOffsetsResponse::default().with_responses(responses)
}

// ---------------------------------------------------------------- other group APIs

/// ListGroups' share groups (type "share").
pub(crate) fn listed_groups(b: &Broker, req: &ListGroupsRequest, version: i16) -> Vec<ListedGroup> {
    if !req.types_filter.is_empty() && !req.types_filter.iter().any(|t| t.as_str().eq_ignore_ascii_case("share")) {
        return Vec::new();
    }
    let groups = b.shares.groups.lock();
    let mut out: Vec<ListedGroup> = groups
        .values()
        .filter(|g| {
            authz::allowed(b, acl::CLUSTER, acl::CLUSTER_NAME, acl::DESCRIBE) || authz::allowed(b, acl::GROUP, &g.id, acl::DESCRIBE)
        })
        .filter(|g| req.states_filter.is_empty() || req.states_filter.iter().any(|s| s.as_str().eq_ignore_ascii_case(g.state())))
        .map(|g| {
            let l = ListedGroup::default().with_group_id(GroupId(str_bytes(g.id.clone()))).with_protocol_type(str_bytes("share"));
            let l = if version >= 4 { l.with_group_state(str_bytes(g.state())) } else { l };
            if version >= 5 {
                l.with_group_type(str_bytes("share"))
            } else {
                l
            }
        })
        .collect();
    out.sort_by(|a, b| a.group_id.as_str().cmp(b.group_id.as_str()));
    out
}

/// DeleteGroups of a share group: only an empty one; its state goes with it.
pub(crate) async fn delete_group(b: &Arc<Broker>, id: &str) -> i16 {
    let records = {
        let groups = b.shares.groups.lock();
        match groups.get(id) {
            None => return ec::GROUP_ID_NOT_FOUND,
            Some(g) if !g.members.is_empty() => return ec::NON_EMPTY_GROUP,
            Some(_) => {}
        }
        let mut records: Vec<(ShareKey, Option<Bytes>)> =
            b.shares.snapshots.lock().keys().filter(|k| k.0 == id).map(|k| snapshot_record(k, None)).collect();
        if b.shares.configs.lock().contains_key(id) {
            records.push((ShareKey::Config { group: id.to_string() }, None));
        }
        records.push((ShareKey::Group { group: id.to_string() }, None));
        records
    };
    let r = persisted(persist(b, id, records)).await;
    b.shares.partitions.lock().retain(|k, _| k.0 != id);
    r.err().unwrap_or(ec::NONE)
}

/// IncrementalAlterConfigs / AlterConfigs on a GROUP resource: the share group
/// configs, stored with the group's state.
pub(crate) async fn alter_group_configs(
    b: &Arc<Broker>,
    id: &str,
    validate_only: bool,
    change: impl FnOnce(&mut BTreeMap<String, String>) -> Outcome,
) -> Outcome {
    if id.is_empty() {
        return Err((ec::INVALID_REQUEST, "group id must be non-empty".into()));
    }
    if !authz::allowed(b, acl::GROUP, id, acl::ALTER_CONFIGS) {
        return Err((GROUP_AUTHORIZATION_FAILED, "Authorization failed.".into()));
    }
    if let Err(e) = b.groups.ensure_topic(b).await {
        return Err((ec::COORDINATOR_NOT_AVAILABLE, e.to_string()));
    }
    let mut configs = b.shares.configs.lock().get(id).cloned().unwrap_or_default();
    change(&mut configs)?;
    for (k, v) in &configs {
        check_group_config(k, v)?;
    }
    if validate_only {
        return Ok(());
    }
    let value = (!configs.is_empty()).then(|| state_log::encode_configs(&configs));
    match b.groups.coordinates(b, id) {
        Ok(()) => {
            persisted(persist(b, id, vec![(ShareKey::Config { group: id.to_string() }, value)])).await.map_err(|c| (c, String::new()))
        }
        Err(code) => Err((code, "group configs are stored by the group's coordinator".into())),
    }
}

/// A described config: name, value, source, type.
pub(crate) type DescribedConfig = (&'static str, String, i8, i8);

/// DescribeConfigs of a GROUP resource: each share group config with its value, as
/// (name, value, source, type): GROUP_CONFIG (8) where the group sets it, else the
/// broker's default (DEFAULT_CONFIG, 5).
pub(crate) fn describe_group_configs(b: &Broker, id: &str) -> Result<Vec<DescribedConfig>, (i16, String)> {
    const GROUP_CONFIG: i8 = 8;
    const DEFAULT_CONFIG: i8 = 5;
    const STRING: i8 = 2;
    const INT: i8 = 3;
    if id.is_empty() {
        return Err((ec::INVALID_REQUEST, "group id must be non-empty".into()));
    }
    if !authz::allowed(b, acl::GROUP, id, acl::DESCRIBE_CONFIGS) {
        return Err((GROUP_AUTHORIZATION_FAILED, "Authorization failed.".into()));
    }
    let set = b.shares.configs.lock().get(id).cloned().unwrap_or_default();
    let s = &b.shares.settings;
    let defaults = [
        ("share.auto.offset.reset", "latest".to_string(), STRING),
        ("share.heartbeat.interval.ms", s.heartbeat_interval_ms.to_string(), INT),
        ("share.isolation.level", "read_uncommitted".to_string(), STRING),
        ("share.record.lock.duration.ms", s.record_lock_duration_ms.to_string(), INT),
        ("share.session.timeout.ms", s.session_timeout_ms.to_string(), INT),
    ];
    Ok(defaults
        .into_iter()
        .map(|(k, default, t)| match set.get(k) {
            Some(v) => (k, v.clone(), GROUP_CONFIG, t),
            None => (k, default, DEFAULT_CONFIG, t),
        })
        .collect())
}

fn check_group_config(k: &str, v: &str) -> Outcome {
    let bad = |why: &str| Err((ec::INVALID_CONFIG, format!("Invalid value {v} for configuration {k}: {why}")));
    if !GROUP_CONFIGS.contains(&k) {
        return Err((ec::INVALID_CONFIG, format!("Unknown group config name: {k}")));
    }
    match k {
        "share.auto.offset.reset" if !matches!(v.to_ascii_lowercase().as_str(), "earliest" | "latest") => {
            bad("String must be one of: latest, earliest")
        }
        "share.isolation.level" if v != "read_uncommitted" => bad("Karst serves share groups read_uncommitted only"),
        "share.auto.offset.reset" | "share.isolation.level" => Ok(()),
        _ if v.parse::<i32>().map_or(true, |n| n <= 0) => bad("must be a positive integer"),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledgement_batches_are_checked_as_kafka_does() {
        let b = |first, last, types: &[i8]| AckBatch { first, last, types: types.to_vec() };
        assert!(valid_batches(&[b(0, 4, &[1]), b(5, 6, &[1, 2])]));
        assert!(!valid_batches(&[b(4, 0, &[1])]), "first after last");
        assert!(!valid_batches(&[b(5, 6, &[1]), b(0, 1, &[1])]), "descending");
        assert!(!valid_batches(&[b(0, 4, &[])]), "no type");
        assert!(!valid_batches(&[b(0, 4, &[1, 1])]), "types do not match the range");
        assert!(!valid_batches(&[b(0, 0, &[4])]), "unknown type");
        assert!(!valid_batches(&[b(i64::MIN, i64::MAX, &[1, 1])]), "overflowing range");
    }

    #[test]
    fn group_configs_are_checked() {
        assert!(check_group_config("share.auto.offset.reset", "earliest").is_ok());
        assert!(check_group_config("share.auto.offset.reset", "sometime").is_err());
        assert!(check_group_config("share.record.lock.duration.ms", "0").is_err());
        assert!(check_group_config("share.record.lock.duration.ms", "15000").is_ok());
        assert_eq!(check_group_config("no.such", "1").map_err(|e| e.0), Err(ec::INVALID_CONFIG));
    }
}
