//! Three Kafka nodes against three Karst nodes: what a client sees of replication.
//!
//! Each cluster gets a topic of 3 partitions replicated 3 times with
//! min.insync.replicas=3 and one with min.insync.replicas=2; node 3 is killed
//! (SIGKILL) and the clients' view is compared before and after: DescribeCluster,
//! each partition's replica, ISR and offline counts and leader epochs in Metadata (which
//! node leads is each broker's own choice, so ids are compared only as counts), and
//! Produce with acks=all and acks=1 to both topics (NOT_ENOUGH_REPLICAS once the ISR is
//! below min.insync.replicas). Before the kill, a Produce sent to a follower of each
//! partition is refused NOT_LEADER_OR_FOLLOWER with KIP-951's hint: the leader and its
//! epoch as Metadata shows them, and that leader's endpoint in the response.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{ApiKey, DescribeClusterRequest, MetadataRequest, MetadataResponse, ProduceRequest};
use karst_tests::raw::{produce_request, record_batch, topic_name, RawClient};
use karst_tests::{unique_topic, wait_for, Broker, KafkaCluster};

/// Lag and session timeouts both clusters run with, so a killed node leaves the ISRs
/// within seconds.
const LAG_MS: &str = "3000";
const SESSION_MS: &str = "4000";
const WAIT: Duration = Duration::from_secs(60);

/// One line per observation, the same on both clusters when they agree.
fn partitions_summary(resp: &MetadataResponse, topic: &str) -> Result<Vec<String>> {
    let t = resp
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
        .ok_or_else(|| anyhow!("{topic} not in Metadata"))?;
    // Which partition a node led is placement, each broker's own choice: the lines are
    // sorted without the partition index.
    let mut lines: Vec<String> = t
        .partitions
        .iter()
        .map(|p| {
            let leader_listed = p.replica_nodes.contains(&p.leader_id);
            format!(
                "{topic_kind} partition: error {} replicas {} isr {} offline {} leader among replicas {leader_listed} leader epoch {}",
                p.error_code,
                p.replica_nodes.len(),
                p.isr_nodes.len(),
                p.offline_replicas.len(),
                p.leader_epoch,
                topic_kind = if topic.contains("min3") { "min3" } else { "min2" },
            )
        })
        .collect();
    lines.sort();
    Ok(lines)
}

fn metadata(addr: SocketAddr, topics: &[&str]) -> Result<MetadataResponse> {
    let mut c = RawClient::connect(addr)?;
    let v = c.version_for(ApiKey::Metadata)?.min(12);
    let req = MetadataRequest::default()
        .with_topics(Some(topics.iter().map(|t| MetadataRequestTopic::default().with_name(Some(topic_name(t)))).collect()))
        .with_allow_auto_topic_creation(false);
    c.send(&req, v)
}

/// The leader of each partition of `topic`, from `addr`'s Metadata.
fn leaders(addr: SocketAddr, topic: &str) -> Result<Vec<i32>> {
    let resp = metadata(addr, &[topic])?;
    let t = resp.topics.first().ok_or_else(|| anyhow!("no topic"))?;
    let mut parts: Vec<_> = t.partitions.iter().map(|p| (p.partition_index, p.leader_id.0)).collect();
    parts.sort();
    Ok(parts.into_iter().map(|(_, l)| l).collect())
}

/// Produces one record to every partition of `topic` through each partition's leader;
/// one line per partition with the error code (and whether an offset came back).
fn produce_all(addrs: &[(i32, SocketAddr)], topic: &str, acks: i16) -> Result<Vec<String>> {
    let ls = leaders(addrs[0].1, topic)?;
    let mut out = Vec::new();
    for (partition, leader) in ls.iter().enumerate() {
        let addr = addrs.iter().find(|(id, _)| id == leader).map(|(_, a)| *a).ok_or_else(|| anyhow!("leader {leader} not running"))?;
        let mut c = RawClient::connect(addr)?;
        let v = c.version_for(ApiKey::Produce)?.min(11);
        let req: ProduceRequest =
            produce_request(topic, partition as i32, record_batch(&[(None, Some(b"r"))], super::now_ms())).with_acks(acks);
        let resp = c.send(&req, v)?;
        let p = resp.responses.first().and_then(|t| t.partition_responses.first()).ok_or_else(|| anyhow!("empty produce response"))?;
        out.push(format!("acks={acks} to partition {partition}: error {} offset returned {}", p.error_code, p.base_offset >= 0));
    }
    Ok(out)
}

/// Produces to a follower of each partition of `topic` at the highest Produce version
/// (v13: by topic id); one line per partition on the KIP-951 leader hint it gets.
fn produce_to_followers(addrs: &[(i32, SocketAddr)], topic: &str) -> Result<Vec<String>> {
    let meta = metadata(addrs[0].1, &[topic])?;
    let t = meta.topics.first().ok_or_else(|| anyhow!("no topic"))?;
    let mut parts: Vec<_> = t.partitions.iter().map(|p| (p.partition_index, p.leader_id.0, p.leader_epoch)).collect();
    parts.sort();
    let mut out = Vec::new();
    for (partition, leader, epoch) in parts {
        let leader_at = meta.brokers.iter().find(|b| b.node_id.0 == leader).map(|b| (b.host.to_string(), b.port));
        let follower = addrs.iter().find(|(id, _)| *id != leader).map(|(_, a)| *a).ok_or_else(|| anyhow!("no follower"))?;
        let mut c = RawClient::connect(follower)?;
        let v = c.version_for(ApiKey::Produce)?;
        let mut req = produce_request(topic, partition, record_batch(&[(None, Some(b"to a follower"))], super::now_ms()));
        req.topic_data[0].topic_id = c.topic_id(topic)?;
        let resp = c.send(&req, v)?;
        let p = resp.responses.first().and_then(|t| t.partition_responses.first()).ok_or_else(|| anyhow!("empty produce response"))?;
        let hint = &p.current_leader;
        let endpoint = resp.node_endpoints.iter().find(|e| e.node_id == hint.leader_id).map(|e| (e.host.to_string(), e.port));
        out.push(format!(
            "Produce v{v} to a follower: error {}, hint names the leader {}, at its epoch {}, with its endpoint {}, endpoints listed {}",
            p.error_code,
            hint.leader_id.0 == leader,
            hint.leader_epoch == epoch,
            endpoint.is_some() && endpoint == leader_at,
            resp.node_endpoints.len()
        ));
    }
    Ok(out)
}

/// The steps on one cluster: `addrs` are its nodes' client listeners (id, address);
/// `kill3` kills node 3.
fn steps(addrs: &[(i32, SocketAddr)], kill3: &mut dyn FnMut() -> Result<()>) -> Result<Vec<String>> {
    let mut log = Vec::new();
    let first = addrs[0].1;
    let mut c = RawClient::connect(first)?;
    let v = c.version_for(ApiKey::DescribeCluster)?;
    let dc = c.send(&DescribeClusterRequest::default(), v)?;
    log.push(format!("DescribeCluster: error {} brokers {}", dc.error_code, dc.brokers.len()));

    let min3 = unique_topic("diff-cluster-min3");
    let min2 = unique_topic("diff-cluster-min2");
    for (t, min) in [(&min3, "3"), (&min2, "2")] {
        let r = c.create_replicated_result(t, 3, 3, &[("min.insync.replicas", min)])?;
        log.push(format!("CreateTopics rf 3 min.insync.replicas {min}: error {}", r.error_code));
    }
    let topics = [min3.as_str(), min2.as_str()];
    wait_for("full ISRs with leaders on every partition", WAIT, || {
        let resp = metadata(first, &topics).ok()?;
        resp.topics
            .iter()
            .all(|t| t.partitions.len() == 3 && t.partitions.iter().all(|p| p.leader_id.0 >= 0 && p.isr_nodes.len() == 3))
            .then_some(())
    })?;
    // A leader named in Metadata may still be taking over: retry retriable answers.
    for t in topics {
        let line = wait_for(&format!("acks=all to {t} on a full ISR"), WAIT, || {
            let lines = produce_all(addrs, t, -1).ok()?;
            lines.iter().all(|l| l.contains("error 0 ")).then_some(lines)
        })?;
        log.extend(line);
    }
    log.extend(partitions_summary(&metadata(first, &topics)?, &min3)?);
    log.extend(produce_to_followers(addrs, &min2)?);

    kill3()?;
    let alive: Vec<(i32, SocketAddr)> = addrs.iter().copied().filter(|(id, _)| *id != 3).collect();
    wait_for("node 3 out of every ISR and leadership", WAIT, || {
        let resp = metadata(first, &topics).ok()?;
        resp.topics
            .iter()
            .all(|t| {
                t.partitions
                    .iter()
                    .all(|p| p.leader_id.0 >= 0 && p.leader_id.0 != 3 && p.isr_nodes.len() == 2 && !p.isr_nodes.iter().any(|r| r.0 == 3))
            })
            .then_some(())
    })?;
    let resp = metadata(first, &topics)?;
    log.push(format!("after node 3 died: brokers in Metadata {}", resp.brokers.len()));
    log.extend(partitions_summary(&resp, &min3)?);
    log.extend(partitions_summary(&resp, &min2)?);
    let settled = |t: &str, acks: i16| {
        wait_for(&format!("acks={acks} to {t} with node 3 dead"), WAIT, || {
            let lines = produce_all(&alive, t, acks).ok()?;
            // NOT_LEADER_OR_FOLLOWER while a new leader takes over is retried.
            (!lines.iter().any(|l| l.contains("error 6 "))).then_some(lines)
        })
    };
    log.extend(settled(&min3, -1)?);
    log.extend(settled(&min3, 1)?);
    log.extend(settled(&min2, -1)?);
    Ok(log)
}

/// Runs the steps on a Kafka and a Karst cluster of three; prints both and returns how
/// many lines differ.
pub(super) fn compare() -> Result<Option<usize>> {
    let kafka_overrides = |_| {
        vec![
            ("replica.lag.time.max.ms".to_string(), LAG_MS.to_string()),
            ("broker.session.timeout.ms".to_string(), SESSION_MS.to_string()),
            ("broker.heartbeat.interval.ms".to_string(), "1000".to_string()),
        ]
    };
    let mut kafka = match KafkaCluster::start(3, kafka_overrides) {
        Ok(k) => k,
        Err(e) => match karst_tests::KafkaUnavailable::of(&e) {
            Some(why) => {
                println!("skipped: {why}");
                return Ok(None);
            }
            None => return Err(e),
        },
    };
    println!("three Kafka nodes ready in {:.1?}", kafka.started_in());
    let mut karst: Vec<Broker> = karst_tests::cluster::start_cluster(3, |_| {
        ["--set", &format!("replica.lag.time.max.ms={LAG_MS}"), "--set", &format!("broker.session.timeout.ms={SESSION_MS}")]
            .map(String::from)
            .to_vec()
    })?;
    let kafka_addrs: Vec<(i32, SocketAddr)> = kafka.nodes.iter().map(|n| (n.node_id(), n.addr())).collect();
    let karst_addrs: Vec<(i32, SocketAddr)> = karst.iter().enumerate().map(|(i, b)| (i as i32 + 1, b.addr())).collect();
    let a = steps(&kafka_addrs, &mut || kafka.nodes[2].kill9()).context("the steps on Kafka")?;
    let b = steps(&karst_addrs, &mut || karst[2].kill9()).context("the steps on Karst")?;
    println!("\nthree nodes, Kafka vs Karst:");
    let differing = super::print_steps(&a, &b);
    drop(karst);
    Ok(Some(differing))
}
