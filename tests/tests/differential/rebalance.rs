//! A classic consumer group through a rebalance, step by step on Kafka and on Karst:
//! what each member is told (error codes, generations, who leads, how many members)
//! and the group's state as DescribeGroups shows it between the steps. Member ids and
//! the leader's id are generated per broker, so members are named by their role.
//!
//! 1. A joins an empty group (v4+: first MEMBER_ID_REQUIRED, then the join proper),
//!    leads generation 1 alone, syncs its assignment: Stable.
//! 2. B joins (its JoinGroup waits): PreparingRebalance; A's heartbeat is told
//!    REBALANCE_IN_PROGRESS, A rejoins; both get generation 2 (CompletingRebalance).
//! 3. Both sync: Stable with two members. A heartbeat with generation 1 is refused; so
//!    is an admin client's commit (AlterConsumerGroupOffsets: no member id, generation
//!    -1), which Kafka takes only while the group is empty (UNKNOWN_MEMBER_ID).
//! 4. B leaves: PreparingRebalance; A rejoins alone and syncs: Stable, generation 3.
//! 5. A commits with generation 3, then with generation 2 (ILLEGAL_GENERATION).

use std::net::SocketAddr;
use std::thread;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, DescribeGroupsRequest, GroupId, HeartbeatRequest, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, OffsetCommitRequest,
    SyncGroupRequest,
};
use kafka_protocol::protocol::StrBytes;
use karst_tests::raw::{topic_name, RawClient};
use karst_tests::unique_topic;

/// The versions both brokers serve for the group APIs, one step list per broker.
pub(super) struct Versions {
    pub join: i16,
    pub sync: i16,
    pub heartbeat: i16,
    pub leave: i16,
    pub describe: i16,
    pub commit: i16,
}

const MEMBER_ID_REQUIRED: i16 = 79;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn join_request(group: &str, member: &str, v: i16) -> JoinGroupRequest {
    let mut req = JoinGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_session_timeout_ms(30_000)
        .with_member_id(s(member))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default().with_name(s("range")).with_metadata(Bytes::from_static(b"\0\0\0\0\0\0"))]);
    if v >= 1 {
        req = req.with_rebalance_timeout_ms(20_000);
    }
    req
}

/// Joins, answering MEMBER_ID_REQUIRED with the id it carries; returns the response
/// and what the steps were.
fn join(addr: SocketAddr, group: &str, member: &str, v: i16, log: &mut Vec<String>, who: &str) -> Result<JoinGroupResponse> {
    let mut c = RawClient::connect(addr)?;
    let mut resp = c.send(&join_request(group, member, v), v)?;
    if resp.error_code == MEMBER_ID_REQUIRED {
        log.push(format!("{who} join: MEMBER_ID_REQUIRED"));
        let id = resp.member_id.to_string();
        resp = c.send(&join_request(group, &id, v), v)?;
    }
    Ok(resp)
}

fn describe_join(resp: &JoinGroupResponse, who: &str, leader_is: &str) -> String {
    let leads = if resp.leader == resp.member_id { who } else { leader_is };
    format!(
        "{who} join: error {} generation {} protocol {:?} leader {leads} members listed {}",
        resp.error_code,
        resp.generation_id,
        resp.protocol_name.as_ref().map(|p| p.to_string()),
        resp.members.len()
    )
}

fn state(c: &mut RawClient, group: &str, v: i16) -> Result<String> {
    let resp = c.send(&DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))]), v)?;
    let g = resp.groups.first().ok_or_else(|| anyhow!("no group in {resp:?}"))?;
    let with_metadata = g.members.iter().filter(|m| !m.member_metadata.is_empty()).count();
    let with_assignment = g.members.iter().filter(|m| !m.member_assignment.is_empty()).count();
    Ok(format!(
        "state {} ({} members, {with_metadata} with metadata, {with_assignment} with an assignment, protocol {:?}, type {:?})",
        g.group_state,
        g.members.len(),
        g.protocol_data.to_string(),
        g.protocol_type.to_string()
    ))
}

fn sync(c: &mut RawClient, group: &str, member: &str, generation: i32, assign_to: &[&str], v: i16) -> Result<i16> {
    let mut req = SyncGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id(generation)
        .with_member_id(s(member))
        .with_assignments(
            assign_to
                .iter()
                .map(|m| {
                    SyncGroupRequestAssignment::default().with_member_id(s(m)).with_assignment(Bytes::from_static(b"\0\0\0\0\0\0\0\0"))
                })
                .collect(),
        );
    if v >= 5 {
        req = req.with_protocol_type(Some(s("consumer"))).with_protocol_name(Some(s("range")));
    }
    Ok(c.send(&req, v)?.error_code)
}

fn heartbeat(c: &mut RawClient, group: &str, member: &str, generation: i32, v: i16) -> Result<i16> {
    let req = HeartbeatRequest::default().with_group_id(GroupId(s(group))).with_generation_id(generation).with_member_id(s(member));
    Ok(c.send(&req, v)?.error_code)
}

fn commit(c: &mut RawClient, group: &str, member: &str, generation: i32, topic: &str, v: i16) -> Result<i16> {
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![OffsetCommitRequestPartition::default().with_partition_index(0).with_committed_offset(1)])]);
    let resp = c.send(&req, v)?;
    Ok(resp.topics.first().and_then(|t| t.partitions.first()).map_or(-1, |p| p.error_code))
}

/// Runs the steps against the broker at `addr`; `topic` exists there.
pub(super) fn steps(addr: SocketAddr, topic: &str, v: &Versions) -> Result<Vec<String>> {
    let group = unique_topic("diff-rebalance");
    let mut log = Vec::new();
    let mut c = RawClient::connect(addr)?;

    // 1. A alone.
    let a1 = join(addr, &group, "", v.join, &mut log, "A")?;
    log.push(describe_join(&a1, "A", "?"));
    let a = a1.member_id.to_string();
    log.push(format!("after A joined: {}", state(&mut c, &group, v.describe)?));
    log.push(format!("A sync: error {}", sync(&mut c, &group, &a, a1.generation_id, &[&a], v.sync)?));
    log.push(format!("after A synced: {}", state(&mut c, &group, v.describe)?));

    // 2. B joins; its JoinGroup waits for A to rejoin.
    let (addr_b, group_b, join_v) = (addr, group.clone(), v.join);
    let b_join = thread::spawn(move || -> Result<(JoinGroupResponse, Vec<String>)> {
        let mut log = Vec::new();
        let r = join(addr_b, &group_b, "", join_v, &mut log, "B")?;
        Ok((r, log))
    });
    // Until the coordinator has B's join, A's heartbeats are answered NONE.
    let mut hb = 0;
    for _ in 0..200 {
        hb = heartbeat(&mut c, &group, &a, a1.generation_id, v.heartbeat)?;
        if hb != 0 {
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    log.push(format!("A heartbeat once B is joining: error {hb}"));
    log.push(format!("while B waits: {}", state(&mut c, &group, v.describe)?));
    let a2 = join(addr, &group, &a, v.join, &mut log, "A")?;
    let (b2, b_log) = b_join.join().map_err(|_| anyhow!("B's join thread panicked"))??;
    log.extend(b_log);
    log.push(describe_join(&a2, "A", "B"));
    log.push(describe_join(&b2, "B", "A"));
    let b = b2.member_id.to_string();
    log.push(format!("after both joined: {}", state(&mut c, &group, v.describe)?));

    // 3. Both sync (the follower's SyncGroup waits for the leader's).
    let (addr_b, group_b, b_id, gen, sync_v) = (addr, group.clone(), b.clone(), b2.generation_id, v.sync);
    let b_sync = thread::spawn(move || -> Result<i16> {
        let mut c = RawClient::connect(addr_b)?;
        sync(&mut c, &group_b, &b_id, gen, &[], sync_v)
    });
    log.push(format!("A sync: error {}", sync(&mut c, &group, &a, a2.generation_id, &[&a, &b], v.sync)?));
    log.push(format!("B sync: error {}", b_sync.join().map_err(|_| anyhow!("B's sync thread panicked"))??));
    log.push(format!("after both synced: {}", state(&mut c, &group, v.describe)?));
    log.push(format!("A heartbeat with the old generation: error {}", heartbeat(&mut c, &group, &a, a1.generation_id, v.heartbeat)?));
    log.push(format!("B heartbeat: error {}", heartbeat(&mut c, &group, &b, b2.generation_id, v.heartbeat)?));
    log.push(format!(
        "admin commit (no member, generation -1) to the Stable group: error {}",
        commit(&mut c, &group, "", -1, topic, v.commit)?
    ));

    // 4. B leaves.
    let leave = if v.leave >= 3 {
        LeaveGroupRequest::default().with_group_id(GroupId(s(&group))).with_members(vec![MemberIdentity::default().with_member_id(s(&b))])
    } else {
        LeaveGroupRequest::default().with_group_id(GroupId(s(&group))).with_member_id(s(&b))
    };
    log.push(format!("B leave: error {}", c.send(&leave, v.leave)?.error_code));
    log.push(format!("after B left: {}", state(&mut c, &group, v.describe)?));
    log.push(format!("A heartbeat after B left: error {}", heartbeat(&mut c, &group, &a, a2.generation_id, v.heartbeat)?));
    let a3 = join(addr, &group, &a, v.join, &mut log, "A")?;
    log.push(describe_join(&a3, "A", "?"));
    log.push(format!("A sync: error {}", sync(&mut c, &group, &a, a3.generation_id, &[&a], v.sync)?));
    log.push(format!("after A rejoined alone: {}", state(&mut c, &group, v.describe)?));

    // 5. Commits under the current and a stale generation.
    log.push(format!(
        "A commit, generation {}: error {}",
        a3.generation_id,
        commit(&mut c, &group, &a, a3.generation_id, topic, v.commit)?
    ));
    log.push(format!(
        "A commit, generation {}: error {}",
        a2.generation_id,
        commit(&mut c, &group, &a, a2.generation_id, topic, v.commit)?
    ));
    Ok(log)
}

/// The lowest or the highest version of each group API that both serve (and the raw
/// client encodes).
pub(super) fn versions(pair: &super::Pair, highest: bool) -> Result<Versions> {
    let pick = |key: ApiKey| -> Result<i16> {
        let v = pair.versions(key, 0)?;
        if highest { v.last() } else { v.first() }.copied().with_context(|| format!("no common version of {key:?}"))
    };
    Ok(Versions {
        join: pick(ApiKey::JoinGroup)?,
        sync: pick(ApiKey::SyncGroup)?,
        heartbeat: pick(ApiKey::Heartbeat)?,
        leave: pick(ApiKey::LeaveGroup)?,
        describe: pick(ApiKey::DescribeGroups)?,
        // v9+ carry KIP-848 member epochs (issue 22).
        commit: pick(ApiKey::OffsetCommit)?.min(8),
    })
}

/// Runs the steps on both brokers at the lowest and the highest common versions;
/// prints both step lists and returns how many steps differ.
pub(super) fn compare(pair: &super::Pair, kafka: SocketAddr, karst: SocketAddr, topic: &str) -> Result<usize> {
    let mut differing = 0;
    for highest in [false, true] {
        let v = versions(pair, highest)?;
        let which = if highest { "highest" } else { "lowest" };
        println!(
            "\na group through a rebalance, {which} versions (JoinGroup v{}, SyncGroup v{}, Heartbeat v{}, LeaveGroup v{}, DescribeGroups v{}, OffsetCommit v{}):",
            v.join, v.sync, v.heartbeat, v.leave, v.describe, v.commit
        );
        let a = steps(kafka, topic, &v).context("the rebalance on Kafka")?;
        let b = steps(karst, topic, &v).context("the rebalance on Karst")?;
        differing += super::print_steps(&a, &b);
    }
    Ok(differing)
}
