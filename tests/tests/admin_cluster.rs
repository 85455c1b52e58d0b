//! The admin APIs where more than one broker matters.
//!
//! ElectLeaders and DescribeTopicPartitions in a three-node cluster, where a partition
//! can be led by a replica other than its preferred one: while the preferred replica
//! is down a preferred election is refused (PREFERRED_LEADER_NOT_AVAILABLE) and
//! DescribeTopicPartitions names it offline; once it is back in the ISR the
//! leadership returns to it (by the election, or by Karst's own periodic return,
//! whichever comes first). Requests go to brokers that are not the controller's
//! leader too: every broker forwards the election to the quorum.
//!
//! DescribeLogDirs and DescribeProducers in a two-node cluster: each broker lists the
//! partitions it holds a replica of, and answers for producers there, followers
//! included (they replay producer state as Kafka's do); a broker without a replica
//! answers NOT_LEADER_OR_FOLLOWER.

use std::time::Duration;

use anyhow::{anyhow, ensure, Result};
use kafka_protocol::messages::describe_producers_request::TopicRequest as ProducersTopic;
use kafka_protocol::messages::describe_topic_partitions_request::TopicRequest;
use kafka_protocol::messages::describe_topic_partitions_response::DescribeTopicPartitionsResponsePartition;
use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::{
    ApiKey, DescribeLogDirsRequest, DescribeProducersRequest, DescribeTopicPartitionsRequest, ElectLeadersRequest, InitProducerIdRequest,
};
use karst_tests::cluster::start_cluster;
use karst_tests::raw::{encode_record, topic_name, RawClient};
use karst_tests::{unique_topic, wait_for, Broker};

const TIMEOUT: Duration = Duration::from_secs(60);
const PREFERRED_LEADER_NOT_AVAILABLE: i16 = 80;
const ELECTION_NOT_NEEDED: i16 = 84;
const NOT_LEADER_OR_FOLLOWER: i16 = 6;

fn describe(b: &Broker, topic: &str) -> Result<DescribeTopicPartitionsResponsePartition> {
    let mut c = RawClient::connect(b.addr())?;
    let req = DescribeTopicPartitionsRequest::default()
        .with_topics(vec![TopicRequest::default().with_name(topic_name(topic))])
        .with_response_partition_limit(2000);
    let resp = c.send(&req, 0)?;
    let t = resp.topics.into_iter().next().ok_or_else(|| anyhow!("no topic in the answer"))?;
    ensure!(t.error_code == 0, "DescribeTopicPartitions error {}", t.error_code);
    t.partitions.into_iter().next().ok_or_else(|| anyhow!("no partition in the answer"))
}

/// The error code of partition 0's election, asked of `b`.
fn elect(b: &Broker, topic: &str, election_type: i8) -> Result<i16> {
    let mut c = RawClient::connect(b.addr())?;
    let version = c.version_for(ApiKey::ElectLeaders)?;
    let req = ElectLeadersRequest::default()
        .with_election_type(election_type)
        .with_topic_partitions(Some(vec![TopicPartitions::default().with_topic(topic_name(topic)).with_partitions(vec![0])]))
        .with_timeout_ms(30_000);
    let resp = c.send(&req, version)?;
    ensure!(resp.error_code == 0, "ElectLeaders top-level error {}", resp.error_code);
    resp.replica_election_results
        .first()
        .and_then(|t| t.partition_result.first())
        .map(|p| p.error_code)
        .ok_or_else(|| anyhow!("no result for partition 0: {resp:?}"))
}

#[test]
fn preferred_election_waits_for_the_preferred_replica_and_returns_leadership_to_it() -> Result<()> {
    let mut brokers = start_cluster(3, |_| {
        ["--set", "broker.session.timeout.ms=3000", "--set", "replica.lag.time.max.ms=3000"].map(String::from).to_vec()
    })?;
    let topic = unique_topic("elect");
    RawClient::connect(brokers[0].addr())?.create_replicated(&topic, 1, 3, &[])?;
    let start = wait_for("partition 0 led by its preferred replica with a full ISR", TIMEOUT, || {
        let p = describe(&brokers[0], &topic).ok()?;
        (p.isr_nodes.len() == 3 && p.replica_nodes.first() == Some(&p.leader_id)).then_some(p)
    })?;
    let preferred = start.leader_id.0;
    let index = usize::try_from(preferred - 1)?;
    let others: Vec<usize> = (0..3).filter(|i| *i != index).collect();
    assert_eq!(elect(&brokers[others[0]], &topic, 0)?, ELECTION_NOT_NEEDED, "the preferred replica leads already");

    brokers[index].kill9()?;
    let moved = wait_for("leadership to move off the killed preferred replica", TIMEOUT, || {
        let p = describe(&brokers[others[0]], &topic).ok()?;
        (p.leader_id.0 > 0 && p.leader_id.0 != preferred && p.offline_replicas.iter().any(|r| r.0 == preferred)).then_some(p)
    })?;
    println!("preferred replica {preferred} killed: leader {}, offline {:?}", moved.leader_id.0, moved.offline_replicas);
    for &i in &others {
        assert_eq!(elect(&brokers[i], &topic, 0)?, PREFERRED_LEADER_NOT_AVAILABLE, "preferred election asked of node {}", i + 1);
        assert_eq!(elect(&brokers[i], &topic, 1)?, ELECTION_NOT_NEEDED, "unclean election asked of node {}", i + 1);
    }

    brokers[index].restart()?;
    let mut answers = Vec::new();
    wait_for("leadership back on the preferred replica", TIMEOUT, || {
        if let Ok(code) = elect(&brokers[others[1]], &topic, 0) {
            if answers.last() != Some(&code) {
                answers.push(code);
            }
        }
        let p = describe(&brokers[others[0]], &topic).ok()?;
        (p.leader_id.0 == preferred && p.offline_replicas.is_empty()).then_some(())
    })?;
    // 80 until the preferred replica is back in the ISR, then 0 (this election moved
    // it) or 84 (Karst's periodic return came first).
    println!("preferred elections while it came back: {answers:?}");
    ensure!(answers.iter().all(|c| [0, PREFERRED_LEADER_NOT_AVAILABLE, ELECTION_NOT_NEEDED].contains(c)), "unexpected codes {answers:?}");
    for b in &mut brokers {
        b.check_running()?;
    }
    Ok(())
}

/// partition → replicas, as DescribeTopicPartitions reports them.
fn replicas(b: &Broker, topic: &str) -> Result<Vec<Vec<i32>>> {
    let mut c = RawClient::connect(b.addr())?;
    let req = DescribeTopicPartitionsRequest::default()
        .with_topics(vec![TopicRequest::default().with_name(topic_name(topic))])
        .with_response_partition_limit(2000);
    let resp = c.send(&req, 0)?;
    let t = resp.topics.into_iter().next().ok_or_else(|| anyhow!("no topic in the answer"))?;
    Ok(t.partitions.iter().map(|p| p.replica_nodes.iter().map(|r| r.0).collect()).collect())
}

/// (partition, error code, producer ids) of `partitions`, asked of `b`.
fn producers(b: &Broker, topic: &str, partitions: &[i32]) -> Result<Vec<(i32, i16, Vec<i64>)>> {
    let mut c = RawClient::connect(b.addr())?;
    let req = DescribeProducersRequest::default()
        .with_topics(vec![ProducersTopic::default().with_name(topic_name(topic)).with_partition_indexes(partitions.to_vec())]);
    let resp = c.send(&req, 0)?;
    Ok(resp
        .topics
        .iter()
        .flat_map(|t| &t.partitions)
        .map(|p| (p.partition_index, p.error_code, p.active_producers.iter().map(|a| a.producer_id.0).collect()))
        .collect())
}

#[test]
fn log_dirs_and_producers_are_each_replicas_own() -> Result<()> {
    let mut brokers = start_cluster(2, |_| Vec::new())?;
    // One replica per partition, spread over both brokers; and one partition on both.
    let (single, both) = (unique_topic("dirs-single"), unique_topic("dirs-both"));
    let mut c = RawClient::connect(brokers[0].addr())?;
    c.create_replicated(&single, 4, 1, &[])?;
    c.create_replicated(&both, 1, 2, &[])?;
    let placed = wait_for("replicas of both topics placed", TIMEOUT, || {
        let (s, b) = (replicas(&brokers[0], &single).ok()?, replicas(&brokers[0], &both).ok()?);
        (s.len() == 4 && b.len() == 1 && b[0].len() == 2).then_some((s, b))
    })?;
    for (i, b) in brokers.iter().enumerate() {
        let node = i32::try_from(i + 1)?;
        let mut c = RawClient::connect(b.addr())?;
        let version = c.version_for(ApiKey::DescribeLogDirs)?;
        let hosted: Vec<i32> = (0..4).filter(|p| placed.0[*p as usize].contains(&node)).collect();
        // Metadata names the replicas before each broker has opened its own: wait for them.
        let mut last = String::new();
        let listed = wait_for(&format!("node {node} to list the replicas it holds"), TIMEOUT, || {
            let resp = c.send(&DescribeLogDirsRequest::default().with_topics(None), version).ok()?;
            let dir = resp.results.first()?;
            let mut listed: Vec<i32> = dir
                .topics
                .iter()
                .filter(|t| t.name.as_str() == single)
                .flat_map(|t| t.partitions.iter().map(|p| p.partition_index))
                .collect();
            listed.sort_unstable();
            let holds_both = dir.topics.iter().any(|t| t.name.as_str() == both);
            last = format!("{single}: {listed:?}, {both}: {holds_both}");
            (listed == hosted && holds_both).then_some(listed)
        })
        .map_err(|e| anyhow!("{e:#}; last: {last}"))?;
        assert_eq!(listed, hosted, "node {node} lists the partitions it holds");
        // Producers: the partitions it does not hold are NOT_LEADER_OR_FOLLOWER.
        for (p, code, _) in producers(b, &single, &[0, 1, 2, 3])? {
            let want = if hosted.contains(&p) { 0 } else { NOT_LEADER_OR_FOLLOWER };
            assert_eq!(code, want, "DescribeProducers of {single}-{p} on node {node}");
        }
    }

    // An idempotent producer's batch on the leader of the two-replica partition is
    // described by the follower too, once replicated.
    let leader = wait_for("a leader of the two-replica partition", TIMEOUT, || {
        let p = describe(&brokers[0], &both).ok()?;
        (p.leader_id.0 > 0 && p.isr_nodes.len() == 2).then_some(p.leader_id.0)
    })?;
    let (l, f) = (usize::try_from(leader - 1)?, usize::try_from(2 - leader)?);
    let mut c = RawClient::connect(brokers[l].addr())?;
    let init = c.send(&InitProducerIdRequest::default().with_transactional_id(None).with_transaction_timeout_ms(-1), 4)?;
    ensure!(init.error_code == 0, "InitProducerId error {}", init.error_code);
    let body = encode_record(0, Some(b"k"), Some(b"v"));
    let batch = karst_batch::build_batch_with_producer(0, 1, 1_700_000_000_000, init.producer_id.0, init.producer_epoch, 0, &body);
    let version = c.version_for(ApiKey::Produce)?;
    let produced = c.produce(&both, 0, batch, version)?;
    ensure!(produced.error_code == 0, "idempotent produce: error {}", produced.error_code);
    for (who, i) in [("leader", l), ("follower", f)] {
        let seen = wait_for(&format!("the producer on the {who}"), TIMEOUT, || {
            producers(&brokers[i], &both, &[0]).ok()?.into_iter().find(|(_, code, ids)| *code == 0 && !ids.is_empty())
        })?;
        assert_eq!(seen.2, vec![init.producer_id.0], "DescribeProducers on the {who}");
    }
    for b in &mut brokers {
        b.check_running()?;
    }
    Ok(())
}
