//! KIP-932 share-group requests over the raw client ([`RawClient`]), for tests that
//! drive share consumers by hand: heartbeats, ShareFetch and ShareAcknowledge of one
//! or several partitions, and what a ShareFetch acquired.

use std::collections::BTreeMap;

use anyhow::{ensure, Result};
use kafka_protocol::messages::{
    share_acknowledge_request, share_fetch_request, GroupId, ShareAcknowledgeRequest, ShareAcknowledgeResponse, ShareFetchRequest,
    ShareFetchResponse, ShareGroupHeartbeatRequest, ShareGroupHeartbeatResponse,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use crate::raw::{topic_name, RawClient};

/// The GROUP config resource type (IncrementalAlterConfigs, DescribeConfigs).
pub const GROUP_RESOURCE: i8 = 32;
/// Acknowledgement types.
pub const ACCEPT: i8 = 1;
pub const RELEASE: i8 = 2;
pub const REJECT: i8 = 3;

/// An acknowledgement batch: first offset, last offset, type.
pub type Ack = (i64, i64, i8);

/// A share-partition: topic id and partition.
pub type SharePartition = (Uuid, i32);

fn str(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// Sets the share group's `share.auto.offset.reset` to earliest (its GROUP resource);
/// `raw` must be connected to the group's coordinator.
pub fn start_at_earliest(raw: &mut RawClient, group: &str) -> Result<()> {
    let (code, msg) = raw.alter_configs(GROUP_RESOURCE, group, &[("share.auto.offset.reset", 0, Some("earliest"))])?;
    ensure!(code == 0, "setting share.auto.offset.reset: {code} {msg:?}");
    Ok(())
}

/// ShareGroupHeartbeat v1; `topics` the subscription (None: unchanged).
pub fn heartbeat(
    raw: &mut RawClient,
    group: &str,
    member: &str,
    epoch: i32,
    topics: Option<&[&str]>,
) -> Result<ShareGroupHeartbeatResponse> {
    let req = ShareGroupHeartbeatRequest::default()
        .with_group_id(GroupId(str(group)))
        .with_member_id(str(member))
        .with_member_epoch(epoch)
        .with_subscribed_topic_names(topics.map(|t| t.iter().map(|n| topic_name(n)).collect()));
    raw.send(&req, 1)
}

/// Share-partitions with their acknowledgements, made into request partitions by
/// `part` and grouped by topic in first-seen order.
fn by_topic<P>(partitions: &[(SharePartition, Vec<Ack>)], part: impl Fn(i32, &[Ack]) -> P) -> Vec<(Uuid, Vec<P>)> {
    let mut topics: Vec<(Uuid, Vec<P>)> = Vec::new();
    for ((topic, partition), acks) in partitions {
        let p = part(*partition, acks);
        match topics.iter_mut().find(|(id, _)| id == topic) {
            Some((_, ps)) => ps.push(p),
            None => topics.push((*topic, vec![p])),
        }
    }
    topics
}

/// ShareFetch v1 of partition 0 of `topic`, acknowledging `acks` there, waiting up to 3 s.
pub fn share_fetch(
    raw: &mut RawClient,
    group: &str,
    member: &str,
    epoch: i32,
    topic: Uuid,
    acks: &[Ack],
    max_records: i32,
) -> Result<ShareFetchResponse> {
    share_fetch_partitions(raw, group, member, epoch, &[((topic, 0), acks.to_vec())], 3000, max_records)
}

/// ShareFetch v1 of `partitions`, each with the acknowledgements it carries, waiting
/// up to `max_wait_ms` for records.
pub fn share_fetch_partitions(
    raw: &mut RawClient,
    group: &str,
    member: &str,
    epoch: i32,
    partitions: &[(SharePartition, Vec<Ack>)],
    max_wait_ms: i32,
    max_records: i32,
) -> Result<ShareFetchResponse> {
    use share_fetch_request::{AcknowledgementBatch, FetchPartition, FetchTopic};
    let topics = by_topic(partitions, |partition, acks| {
        let batches = acks
            .iter()
            .map(|(f, l, t)| AcknowledgementBatch::default().with_first_offset(*f).with_last_offset(*l).with_acknowledge_types(vec![*t]))
            .collect();
        FetchPartition::default().with_partition_index(partition).with_acknowledgement_batches(batches)
    })
    .into_iter()
    .map(|(id, ps)| FetchTopic::default().with_topic_id(id).with_partitions(ps))
    .collect();
    let req = ShareFetchRequest::default()
        .with_group_id(Some(GroupId(str(group))))
        .with_member_id(Some(str(member)))
        .with_share_session_epoch(epoch)
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_max_records(max_records)
        .with_batch_size(max_records)
        .with_topics(topics);
    raw.send(&req, 1)
}

/// ShareAcknowledge v1 of `acks` on partition 0 of `topic`.
pub fn share_ack(
    raw: &mut RawClient,
    group: &str,
    member: &str,
    epoch: i32,
    topic: Uuid,
    acks: &[Ack],
) -> Result<ShareAcknowledgeResponse> {
    share_ack_partitions(raw, group, member, epoch, &[((topic, 0), acks.to_vec())])
}

/// ShareAcknowledge v1 of acknowledgements on several partitions.
pub fn share_ack_partitions(
    raw: &mut RawClient,
    group: &str,
    member: &str,
    epoch: i32,
    acks: &[(SharePartition, Vec<Ack>)],
) -> Result<ShareAcknowledgeResponse> {
    use share_acknowledge_request::{AcknowledgePartition, AcknowledgeTopic, AcknowledgementBatch};
    let topics = by_topic(acks, |partition, acks| {
        let batches = acks
            .iter()
            .map(|(f, l, t)| AcknowledgementBatch::default().with_first_offset(*f).with_last_offset(*l).with_acknowledge_types(vec![*t]))
            .collect();
        AcknowledgePartition::default().with_partition_index(partition).with_acknowledgement_batches(batches)
    })
    .into_iter()
    .map(|(id, ps)| AcknowledgeTopic::default().with_topic_id(id).with_partitions(ps))
    .collect();
    let req = ShareAcknowledgeRequest::default()
        .with_group_id(Some(GroupId(str(group))))
        .with_member_id(Some(str(member)))
        .with_share_session_epoch(epoch)
        .with_topics(topics);
    raw.send(&req, 1)
}

/// The acquired offsets of a ShareFetch response, with their delivery counts (every
/// partition together: for a fetch of one partition).
pub fn acquired(resp: &ShareFetchResponse) -> BTreeMap<i64, i16> {
    acquired_by_partition(resp).into_values().flatten().collect()
}

/// The acquired offsets of a ShareFetch response by partition, with their delivery counts.
pub fn acquired_by_partition(resp: &ShareFetchResponse) -> BTreeMap<SharePartition, BTreeMap<i64, i16>> {
    let mut out: BTreeMap<SharePartition, BTreeMap<i64, i16>> = BTreeMap::new();
    for t in &resp.responses {
        for p in &t.partitions {
            let offsets = out.entry((t.topic_id, p.partition_index)).or_default();
            for a in &p.acquired_records {
                offsets.extend((a.first_offset..=a.last_offset).map(|o| (o, a.delivery_count)));
            }
        }
    }
    out
}
