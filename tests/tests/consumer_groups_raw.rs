//! KIP-848 requests on the wire: bad heartbeats, commits and fetches at wrong epochs
//! get the same error codes from Karst as from Apache Kafka 4.4; a group's epochs and
//! assignment outlive a broker killed with SIGKILL.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{ensure, Result};
use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::{OffsetFetchRequestGroup, OffsetFetchRequestTopics};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use karst_tests::raw::{topic_name, RawClient};
use karst_tests::{unique_topic, wait_for, Broker};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn join(group: &str, member: &str, topic: &str) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_member_id(s(member))
        .with_member_epoch(0)
        .with_rebalance_timeout_ms(60_000)
        .with_subscribed_topic_names(Some(vec![topic_name(topic)]))
        .with_topic_partitions(Some(vec![]))
}

fn beat(group: &str, member: &str, epoch: i32) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest::default().with_group_id(GroupId(s(group))).with_member_id(s(member)).with_member_epoch(epoch)
}

fn commit(group: &str, member: &str, epoch: i32, topic: &str, offset: i64) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_member_id(s(member))
        .with_generation_id_or_member_epoch(epoch)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![OffsetCommitRequestPartition::default().with_partition_index(0).with_committed_offset(offset)])])
}

fn fetch(group: &str, member: &str, epoch: i32, topic: &str) -> OffsetFetchRequest {
    OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
        .with_group_id(GroupId(s(group)))
        .with_member_id(Some(s(member)))
        .with_member_epoch(epoch)
        .with_topics(Some(vec![OffsetFetchRequestTopics::default().with_name(topic_name(topic)).with_partition_indexes(vec![0])]))])
}

/// Joins `group` until the coordinator answers (the offsets topic may be new).
fn joined(raw: &mut RawClient, req: ConsumerGroupHeartbeatRequest) -> Result<ConsumerGroupHeartbeatResponse> {
    let mut last = None;
    // Kafka creates its offsets topic on the first FindCoordinator, not on a heartbeat.
    let find = FindCoordinatorRequest::default().with_key(req.group_id.0.clone());
    wait_for("the group coordinator", Duration::from_secs(30), || match raw.send(&find, 3).and_then(|_| raw.send(&req, 1)) {
        Ok(r) if r.error_code == 0 => Some(r),
        other => {
            last = Some(format!("{other:?}"));
            std::thread::sleep(Duration::from_millis(100));
            None
        }
    })
    .map_err(|e| anyhow::anyhow!("{e}: {last:?}"))
}

/// Each scenario and the error code the broker at `addr` answered.
fn answers(addr: SocketAddr, name: &str) -> Result<Vec<(&'static str, i16)>> {
    let mut raw = RawClient::connect(addr)?;
    let topic = format!("{name}-t");
    raw.create_topic(&topic, 2, &[])?;
    let g = |n: &str| format!("{name}-{n}");
    let mut out = Vec::new();
    let first = joined(&mut raw, join(&g("a"), "member-a", &topic))?;
    ensure!(first.member_epoch >= 1, "joined at epoch {}", first.member_epoch);
    out.push(("join", first.error_code));
    let epoch = first.member_epoch;
    out.push(("a greater epoch", raw.send(&beat(&g("a"), "member-a", epoch + 5), 1)?.error_code));
    out.push(("an unknown member", raw.send(&beat(&g("a"), "someone-else", 1), 1)?.error_code));
    out.push(("an invalid regex", raw.send(&join(&g("b"), "m", &topic).with_subscribed_topic_regex(Some(s("("))), 1)?.error_code));
    out.push(("an unknown assignor", raw.send(&join(&g("b"), "m", &topic).with_server_assignor(Some(s("sticky"))), 1)?.error_code));
    out.push(("epoch -3", raw.send(&beat(&g("b"), "m", -3), 1)?.error_code));
    out.push(("a join with no subscription", raw.send(&join(&g("b"), "m", &topic).with_subscribed_topic_names(None), 1)?.error_code));
    out.push(("a join owning partitions", {
        let owned = TopicPartitions::default().with_topic_id(raw.topic_id(&topic)?).with_partitions(vec![0]);
        raw.send(&join(&g("b"), "m", &topic).with_topic_partitions(Some(vec![owned])), 1)?.error_code
    }));
    out.push(("v1 with no member id", raw.send(&join(&g("b"), "", &topic), 1)?.error_code));
    out.push(("a static leave with no instance id", raw.send(&beat(&g("a"), "member-a", -2), 1)?.error_code));
    let c = |r: OffsetCommitResponse| r.topics.first().and_then(|t| t.partitions.first()).map_or(-1, |p| p.error_code);
    out.push(("a commit at the member's epoch", c(raw.send(&commit(&g("a"), "member-a", epoch, &topic, 7), 9)?)));
    out.push(("a commit at a stale epoch", c(raw.send(&commit(&g("a"), "member-a", epoch - 1, &topic, 7), 9)?)));
    out.push(("a commit by an unknown member", c(raw.send(&commit(&g("a"), "nobody", epoch, &topic, 7), 9)?)));
    out.push(("a consumer-protocol member committing with v8", c(raw.send(&commit(&g("a"), "member-a", epoch, &topic, 7), 8)?)));
    let f = |r: OffsetFetchResponse| r.groups.first().map_or(-1, |g| g.error_code);
    out.push(("a fetch at the member's epoch", f(raw.send(&fetch(&g("a"), "member-a", epoch, &topic), 9)?)));
    out.push(("a fetch at a stale epoch", f(raw.send(&fetch(&g("a"), "member-a", epoch + 1, &topic), 9)?)));
    let describe = |raw: &mut RawClient, group: String| -> Result<i16> {
        let r = raw.send(&ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s(&group))]), 1)?;
        Ok(r.groups.first().map_or(-1, |g| g.error_code))
    };
    out.push(("ConsumerGroupDescribe of a member's group", describe(&mut raw, g("a"))?));
    out.push(("ConsumerGroupDescribe of no group", describe(&mut raw, g("nothing"))?));
    out.push(("a leave", raw.send(&beat(&g("a"), "member-a", -1), 1)?.error_code));
    out.push(("a heartbeat after leaving", raw.send(&beat(&g("a"), "member-a", epoch), 1)?.error_code));
    Ok(out)
}

#[test]
fn bad_consumer_group_requests_get_the_errors_kafka_gives() -> Result<()> {
    let name = unique_topic("cg848");
    karst_tests::kafka::same_answers_as_kafka(|addr| answers(addr, &name), |_, _, _| false)
}

/// The group's record is written before a heartbeat is answered: after kill -9 and
/// a restart the member carries on at its epoch with its partitions, and its
/// commits are still fenced by that epoch.
#[test]
fn a_consumer_group_outlives_a_broker_killed_with_sigkill() -> Result<()> {
    let mut broker = Broker::start(&[])?;
    let topic = unique_topic("cg848-restart");
    let group = format!("{topic}-group");
    let mut raw = RawClient::connect(broker.addr())?;
    raw.create_topic(&topic, 4, &[])?;
    let first = joined(&mut raw, join(&group, "member-1", &topic))?;
    let assigned = first.assignment.clone().map(|a| a.topic_partitions).unwrap_or_default();
    ensure!(assigned.iter().map(|t| t.partitions.len()).sum::<usize>() == 4, "{first:?}");
    let epoch = first.member_epoch;
    let c = raw.send(&commit(&group, "member-1", epoch, &topic, 42), 9)?;
    ensure!(c.topics[0].partitions[0].error_code == 0, "{c:?}");
    broker.kill9()?;
    broker.restart()?;
    let mut raw = RawClient::connect(broker.addr())?;
    let owned: Vec<TopicPartitions> =
        assigned.iter().map(|t| TopicPartitions::default().with_topic_id(t.topic_id).with_partitions(t.partitions.clone())).collect();
    let again = {
        let req = beat(&group, "member-1", epoch).with_topic_partitions(Some(owned));
        let mut last = None;
        wait_for("the coordinator after the restart", Duration::from_secs(30), || match raw.send(&req, 1) {
            Ok(r) if r.error_code == 14 || r.error_code == 15 || r.error_code == 16 => {
                std::thread::sleep(Duration::from_millis(100));
                None
            }
            other => {
                last = Some(format!("{other:?}"));
                other.ok()
            }
        })
        .map_err(|e| anyhow::anyhow!("{e}: {last:?}"))?
    };
    ensure!(again.error_code == 0 && again.member_epoch == epoch, "after the restart: {again:?}");
    let f = raw.send(&fetch(&group, "member-1", epoch, &topic), 9)?;
    let offset = f.groups[0].topics[0].partitions[0].committed_offset;
    ensure!(f.groups[0].error_code == 0 && offset == 42, "{f:?}");
    let stale = raw.send(&commit(&group, "member-1", epoch - 1, &topic, 43), 9)?;
    ensure!(stale.topics[0].partitions[0].error_code == 113, "a stale epoch after the restart: {stale:?}");
    let metrics = karst_tests::metrics::scrape(&broker)?;
    let members = metrics.value("karst_group_members", &[("group", &group), ("type", "consumer"), ("state", "Stable")])?;
    let group_epoch = metrics.value("karst_group_epoch", &[("group", &group), ("type", "consumer")])?;
    ensure!(members == 1.0 && group_epoch == f64::from(epoch), "metrics: {members} members at epoch {group_epoch}");
    // The CLI shows the group as ConsumerGroupDescribe has it.
    let cli = |args: &[&str]| karst_tests::clients::karst_json(&broker, args);
    let listed = cli(&["group", "list"])?;
    ensure!(listed.as_array().is_some_and(|a| a.iter().any(|g| g["group"] == group.as_str() && g["type"] == "consumer")), "{listed}");
    let d = cli(&["group", "describe", &group])?;
    ensure!(d["state"] == "Stable" && d["protocol"] == "uniform" && d["members"].as_array().map(Vec::len) == Some(1), "{d}");
    ensure!(d["offsets"].as_array().is_some_and(|o| o.iter().any(|r| r["committed_offset"] == 42)), "{d}");
    broker.check_running()
}
