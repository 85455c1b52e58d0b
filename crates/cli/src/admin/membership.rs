//! Classic consumer-group membership (JoinGroup, SyncGroup, Heartbeat, LeaveGroup)
//! with a range assignor, and the offset calls shared with `karst group`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedPartitions;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::{OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, OffsetCommitRequest,
    OffsetFetchRequest, SyncGroupRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::client::{group_id, str_bytes, topic_name, Client};
use super::errors::{check, KafkaError};

const PROTOCOL_TYPE: &str = "consumer";
const ASSIGNOR: &str = "range";
const SESSION_TIMEOUT_MS: i32 = 10_000;
const REBALANCE_TIMEOUT_MS: i32 = 30_000;
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(3);
/// Retriable errors while joining are retried this long.
const JOIN_DEADLINE: Duration = Duration::from_secs(60);

/// `(topic, partition) -> offset`.
pub(crate) type Offsets = BTreeMap<(String, i32), i64>;

/// This process as a member of a consumer group.
pub(crate) struct Member {
    group: String,
    topics: Vec<String>,
    member_id: String,
    generation: i32,
    last_heartbeat: Instant,
    /// The partitions this member reads, by topic.
    pub(crate) assignment: BTreeMap<String, Vec<i32>>,
}

/// What a heartbeat found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Heartbeat {
    Fine,
    /// The group is rebalancing (or forgot us): commit, then [`Member::rejoin`].
    Rejoin,
}

impl Member {
    /// Joins `group` subscribed to `topics` and waits for an assignment.
    pub(crate) async fn join(client: &mut Client, group: &str, topics: Vec<String>) -> Result<Member> {
        let mut m = Member {
            group: group.to_string(),
            topics,
            member_id: String::new(),
            generation: -1,
            last_heartbeat: Instant::now(),
            assignment: BTreeMap::new(),
        };
        m.rejoin(client).await?;
        Ok(m)
    }

    /// JoinGroup then SyncGroup, until an assignment for a generation arrives.
    pub(crate) async fn rejoin(&mut self, client: &mut Client) -> Result<()> {
        let deadline = Instant::now() + JOIN_DEADLINE;
        let subscription = encode_subscription(&self.topics)?;
        loop {
            let (coordinator, conn) = client.coordinator(&self.group).await?;
            let group = self.group.clone();
            let member_id = self.member_id.clone();
            let metadata = subscription.clone();
            let joined = conn
                .call_with_timeout(Duration::from_millis(REBALANCE_TIMEOUT_MS as u64 + 10_000), |_| {
                    let mut p = JoinGroupRequestProtocol::default();
                    p.name = str_bytes(ASSIGNOR);
                    p.metadata = metadata;
                    let mut r = JoinGroupRequest::default();
                    r.group_id = group_id(&group);
                    r.session_timeout_ms = SESSION_TIMEOUT_MS;
                    r.rebalance_timeout_ms = REBALANCE_TIMEOUT_MS;
                    r.member_id = str_bytes(&member_id);
                    r.protocol_type = str_bytes(PROTOCOL_TYPE);
                    r.protocols = vec![p];
                    r
                })
                .await;
            let (_, join) = match joined {
                Ok(j) => j,
                Err(e) if Instant::now() < deadline => {
                    client.disconnect(coordinator);
                    eprintln!("warning: joining group `{}`: {e:#}; retrying", self.group);
                    continue;
                }
                Err(e) => return Err(e),
            };
            match join.error_code {
                0 => {}
                79 => {
                    // MEMBER_ID_REQUIRED (KIP-394): join again with the id given.
                    self.member_id = join.member_id.to_string();
                    continue;
                }
                25 => {
                    self.member_id.clear();
                    continue;
                }
                code if KafkaError::new(code, None).is_retriable() || code == 27 => {
                    if Instant::now() >= deadline {
                        check(code, None).with_context(|| format!("joining group `{}`", self.group))?;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                code => check(code, None).with_context(|| format!("joining group `{}`", self.group))?,
            }
            self.member_id = join.member_id.to_string();
            self.generation = join.generation_id;
            let assignments = if join.leader == join.member_id {
                let mut subscriptions = BTreeMap::new();
                for m in &join.members {
                    subscriptions.insert(m.member_id.to_string(), decode_subscription(&m.metadata).unwrap_or_default());
                }
                let mut partition_counts = BTreeMap::new();
                for topic in subscriptions.values().flatten() {
                    if !partition_counts.contains_key(topic) {
                        let n = client.topic(topic, false).await.map(|t| t.partitions.len() as i32).unwrap_or(0);
                        partition_counts.insert(topic.clone(), n);
                    }
                }
                let plan = range_assign(&subscriptions, &partition_counts);
                let mut out = Vec::new();
                for (member, parts) in plan {
                    let mut a = SyncGroupRequestAssignment::default();
                    a.member_id = str_bytes(&member);
                    a.assignment = encode_assignment(&parts)?;
                    out.push(a);
                }
                out
            } else {
                Vec::new()
            };
            let conn = client.broker(coordinator).await?;
            let (group, member_id, generation) = (self.group.clone(), self.member_id.clone(), self.generation);
            let (_, sync) = conn
                .call_with_timeout(Duration::from_millis(REBALANCE_TIMEOUT_MS as u64 + 10_000), |_| {
                    let mut r = SyncGroupRequest::default();
                    r.group_id = group_id(&group);
                    r.generation_id = generation;
                    r.member_id = str_bytes(&member_id);
                    r.protocol_type = Some(str_bytes(PROTOCOL_TYPE));
                    r.protocol_name = Some(str_bytes(ASSIGNOR));
                    r.assignments = assignments;
                    r
                })
                .await?;
            match sync.error_code {
                0 => {}
                27 | 22 => continue,
                25 => {
                    self.member_id.clear();
                    continue;
                }
                code => check(code, None).with_context(|| format!("syncing group `{}`", self.group))?,
            }
            self.assignment = decode_assignment(&sync.assignment)?;
            self.last_heartbeat = Instant::now();
            return Ok(());
        }
    }

    /// Sends a heartbeat if one is due.
    pub(crate) async fn heartbeat_if_due(&mut self, client: &mut Client) -> Result<Heartbeat> {
        if self.last_heartbeat.elapsed() < HEARTBEAT_INTERVAL {
            return Ok(Heartbeat::Fine);
        }
        self.last_heartbeat = Instant::now();
        let (coordinator, conn) = client.coordinator(&self.group).await?;
        let (group, member_id, generation) = (self.group.clone(), self.member_id.clone(), self.generation);
        let resp = conn
            .call(|_| {
                let mut r = HeartbeatRequest::default();
                r.group_id = group_id(&group);
                r.generation_id = generation;
                r.member_id = str_bytes(&member_id);
                r
            })
            .await;
        let resp = match resp {
            Ok((_, r)) => r,
            Err(e) => {
                client.disconnect(coordinator);
                eprintln!("warning: heartbeat to group `{}`: {e:#}", self.group);
                return Ok(Heartbeat::Fine);
            }
        };
        match resp.error_code {
            0 => Ok(Heartbeat::Fine),
            27 | 22 => Ok(Heartbeat::Rejoin),
            25 => {
                self.member_id.clear();
                Ok(Heartbeat::Rejoin)
            }
            code if KafkaError::new(code, None).is_retriable() => Ok(Heartbeat::Fine),
            code => Err(anyhow::Error::new(KafkaError::new(code, None)).context(format!("heartbeat to group `{}`", self.group))),
        }
    }

    /// Commits `offsets` as this member.
    pub(crate) async fn commit(&self, client: &mut Client, offsets: &Offsets) -> Result<()> {
        commit_offsets(client, &self.group, self.generation, &self.member_id, offsets).await
    }

    /// Leaves the group (so the others rebalance at once, not after the session timeout).
    pub(crate) async fn leave(&self, client: &mut Client) -> Result<()> {
        if self.member_id.is_empty() {
            return Ok(());
        }
        let (_, conn) = client.coordinator(&self.group).await?;
        let (group, member_id) = (self.group.clone(), self.member_id.clone());
        let (version, resp) = conn
            .call(|v| {
                let mut r = LeaveGroupRequest::default();
                r.group_id = group_id(&group);
                if v >= 3 {
                    let mut m = MemberIdentity::default();
                    m.member_id = str_bytes(&member_id);
                    r.members = vec![m];
                } else {
                    r.member_id = str_bytes(&member_id);
                }
                r
            })
            .await?;
        check(resp.error_code, None).with_context(|| format!("leaving group `{}`", self.group))?;
        if version >= 3 {
            for m in &resp.members {
                check(m.error_code, None).with_context(|| format!("leaving group `{}`", self.group))?;
            }
        }
        Ok(())
    }
}

/// OffsetCommit of `offsets` (generation -1 and no member id: as an admin, which
/// the coordinator accepts only while the group has no members).
pub(crate) async fn commit_offsets(client: &mut Client, group: &str, generation: i32, member_id: &str, offsets: &Offsets) -> Result<()> {
    if offsets.is_empty() {
        return Ok(());
    }
    let mut by_topic: BTreeMap<&str, Vec<(i32, i64)>> = BTreeMap::new();
    for ((t, p), o) in offsets {
        by_topic.entry(t).or_default().push((*p, *o));
    }
    let (_, conn) = client.coordinator(group).await?;
    let (_, resp) = conn
        .call(|_| {
            let mut r = OffsetCommitRequest::default();
            r.group_id = group_id(group);
            r.generation_id_or_member_epoch = generation;
            r.member_id = str_bytes(member_id);
            r.retention_time_ms = -1;
            r.topics = by_topic
                .iter()
                .map(|(t, parts)| {
                    let mut ct = OffsetCommitRequestTopic::default();
                    ct.name = topic_name(t);
                    ct.partitions = parts
                        .iter()
                        .map(|(p, o)| {
                            let mut cp = OffsetCommitRequestPartition::default();
                            cp.partition_index = *p;
                            cp.committed_offset = *o;
                            cp.committed_leader_epoch = -1;
                            cp.committed_metadata = Some(StrBytes::from_static_str(""));
                            cp
                        })
                        .collect();
                    ct
                })
                .collect();
            r
        })
        .await?;
    for t in &resp.topics {
        for p in &t.partitions {
            check(p.error_code, None)
                .with_context(|| format!("committing the offset of {}-{} for group `{group}`", t.name.0, p.partition_index))?;
        }
    }
    Ok(())
}

/// Committed offsets of `group` (for `topics`, or all topics if None); partitions
/// without a committed offset are left out.
pub(crate) async fn fetch_offsets(client: &mut Client, group: &str, topics: Option<&BTreeMap<String, Vec<i32>>>) -> Result<Offsets> {
    let (_, conn) = client.coordinator(group).await?;
    let (version, resp) = conn
        .call(|v| {
            let mut r = OffsetFetchRequest::default();
            if v >= 8 {
                let mut g = OffsetFetchRequestGroup::default();
                g.group_id = group_id(group);
                g.topics = topics.map(|ts| {
                    ts.iter()
                        .map(|(t, parts)| {
                            let mut x = OffsetFetchRequestTopics::default();
                            x.name = topic_name(t);
                            x.partition_indexes = parts.clone();
                            x
                        })
                        .collect()
                });
                r.groups = vec![g];
            } else {
                r.group_id = group_id(group);
                r.topics = topics.map(|ts| {
                    ts.iter()
                        .map(|(t, parts)| {
                            let mut x = OffsetFetchRequestTopic::default();
                            x.name = topic_name(t);
                            x.partition_indexes = parts.clone();
                            x
                        })
                        .collect()
                });
            }
            r
        })
        .await?;
    let mut out = BTreeMap::new();
    let what = || format!("fetching the committed offsets of group `{group}`");
    if version >= 8 {
        let g = resp.groups.first().ok_or_else(|| anyhow!("OffsetFetch answered no group"))?;
        check(g.error_code, None).with_context(what)?;
        for t in &g.topics {
            for p in &t.partitions {
                check(p.error_code, None).with_context(what)?;
                if p.committed_offset >= 0 {
                    out.insert((t.name.0.to_string(), p.partition_index), p.committed_offset);
                }
            }
        }
    } else {
        check(resp.error_code, None).with_context(what)?;
        for t in &resp.topics {
            for p in &t.partitions {
                check(p.error_code, None).with_context(what)?;
                if p.committed_offset >= 0 {
                    out.insert((t.name.0.to_string(), p.partition_index), p.committed_offset);
                }
            }
        }
    }
    Ok(out)
}

/// Kafka's range assignor: per topic, the subscribed members in id order each get a
/// contiguous range; the first `partitions % members` get one more.
pub(crate) fn range_assign(
    subscriptions: &BTreeMap<String, Vec<String>>,
    partition_counts: &BTreeMap<String, i32>,
) -> BTreeMap<String, BTreeMap<String, Vec<i32>>> {
    let mut plan: BTreeMap<String, BTreeMap<String, Vec<i32>>> = subscriptions.keys().map(|m| (m.clone(), BTreeMap::new())).collect();
    for (topic, &count) in partition_counts {
        let members: Vec<&String> = subscriptions.iter().filter(|(_, ts)| ts.contains(topic)).map(|(m, _)| m).collect();
        if members.is_empty() || count <= 0 {
            continue;
        }
        let n = members.len() as i32;
        let (per, extra) = (count / n, count % n);
        let mut next = 0;
        for (i, m) in members.iter().enumerate() {
            let take = per + i32::from((i as i32) < extra);
            let parts: Vec<i32> = (next..next + take).collect();
            next += take;
            if !parts.is_empty() {
                plan.entry((*m).clone()).or_default().insert(topic.clone(), parts);
            }
        }
    }
    plan
}

fn encode_subscription(topics: &[String]) -> Result<Bytes> {
    let mut s = ConsumerProtocolSubscription::default();
    s.topics = topics.iter().map(|t| str_bytes(t)).collect();
    let mut buf = BytesMut::new();
    buf.put_i16(0);
    s.encode(&mut buf, 0).map_err(|e| anyhow!("encoding a subscription: {e:#}"))?;
    Ok(buf.freeze())
}

/// The topics of a member's subscription (consumer protocol, any version).
pub(crate) fn decode_subscription(metadata: &Bytes) -> Result<Vec<String>> {
    let mut buf = metadata.clone();
    if buf.remaining() < 2 {
        bail!("subscription of {} bytes", buf.remaining());
    }
    let version = buf.get_i16();
    if version < 0 {
        bail!("subscription version {version}");
    }
    // Newer versions only append fields, which an older decoder leaves unread.
    let s = ConsumerProtocolSubscription::decode(&mut buf, version.min(3)).map_err(|e| anyhow!("decoding a subscription: {e:#}"))?;
    Ok(s.topics.iter().map(|t| t.to_string()).collect())
}

fn encode_assignment(parts: &BTreeMap<String, Vec<i32>>) -> Result<Bytes> {
    let mut a = ConsumerProtocolAssignment::default();
    a.assigned_partitions = parts
        .iter()
        .map(|(t, ps)| {
            let mut tp = AssignedPartitions::default();
            tp.topic = topic_name(t);
            tp.partitions = ps.clone();
            tp
        })
        .collect();
    let mut buf = BytesMut::new();
    buf.put_i16(0);
    a.encode(&mut buf, 0).map_err(|e| anyhow!("encoding an assignment: {e:#}"))?;
    Ok(buf.freeze())
}

/// A member's assignment (consumer protocol, any version); empty bytes: nothing.
pub(crate) fn decode_assignment(bytes: &Bytes) -> Result<BTreeMap<String, Vec<i32>>> {
    let mut buf = bytes.clone();
    if buf.remaining() == 0 {
        return Ok(BTreeMap::new());
    }
    if buf.remaining() < 2 {
        bail!("assignment of {} bytes", buf.remaining());
    }
    let version = buf.get_i16();
    if version < 0 {
        bail!("assignment version {version}");
    }
    let a = ConsumerProtocolAssignment::decode(&mut buf, version.min(3)).map_err(|e| anyhow!("decoding an assignment: {e:#}"))?;
    let mut out: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for tp in a.assigned_partitions {
        let e = out.entry(tp.topic.0.to_string()).or_default();
        e.extend(tp.partitions);
        e.sort_unstable();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_assignment_is_kafkas() {
        let subs: BTreeMap<String, Vec<String>> =
            [("a".to_string(), vec!["t".to_string()]), ("b".to_string(), vec!["t".to_string(), "u".to_string()])].into();
        let counts: BTreeMap<String, i32> = [("t".to_string(), 5), ("u".to_string(), 2)].into();
        let plan = range_assign(&subs, &counts);
        assert_eq!(plan["a"]["t"], vec![0, 1, 2]);
        assert_eq!(plan["b"]["t"], vec![3, 4]);
        assert_eq!(plan["b"]["u"], vec![0, 1]);
        assert!(!plan["a"].contains_key("u"));
    }

    #[test]
    fn subscriptions_and_assignments_round_trip() {
        let s = encode_subscription(&["x".to_string(), "y".to_string()]).expect("encodes");
        assert_eq!(decode_subscription(&s).expect("decodes"), vec!["x", "y"]);
        let parts: BTreeMap<String, Vec<i32>> = [("x".to_string(), vec![0, 2])].into();
        let a = encode_assignment(&parts).expect("encodes");
        assert_eq!(decode_assignment(&a).expect("decodes"), parts);
        assert!(decode_assignment(&Bytes::from_static(&[0])).is_err());
        assert!(decode_assignment(&Bytes::new()).expect("empty").is_empty());
    }
}
