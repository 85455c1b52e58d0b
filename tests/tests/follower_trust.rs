//! Only a replica in a partition's assignment, fetching with the broker epoch it
//! registered (Fetch v15+ `ReplicaState`, KIP-903), is served as a follower. A client
//! claiming a replica id must neither read above the high watermark nor move it: if
//! it could, `acks=all` would be answered before the real followers had the data.

use std::time::Duration;

use anyhow::{anyhow, ensure, Result};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ReplicaState};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, MetadataRequest};
use karst_tests::raw::{produce_request, record_batch, topic_name, RawClient};
use karst_tests::{unique_topic, wait_for, Broker};

const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const REQUEST_TIMED_OUT: i16 = 7;
const TIMEOUT: Duration = Duration::from_secs(60);

/// (leader, replicas, topic id) of partition 0 as `broker` reports it.
fn partition0(broker: &Broker, topic: &str) -> Result<(i32, Vec<i32>, uuid::Uuid)> {
    let mut c = RawClient::connect(broker.addr())?;
    let t = MetadataRequestTopic::default().with_name(Some(topic_name(topic)));
    let resp = c.send(&MetadataRequest::default().with_topics(Some(vec![t])).with_allow_auto_topic_creation(false), 12)?;
    let t = resp.topics.first().ok_or_else(|| anyhow!("no topic"))?;
    let p = t.partitions.first().ok_or_else(|| anyhow!("no partition"))?;
    Ok((p.leader_id.0, p.replica_nodes.iter().map(|r| r.0).collect(), t.topic_id))
}

/// One fetch of partition 0 from `offset`, as `replica` (with `epoch` on v15).
fn fetch(c: &mut RawClient, topic: &str, id: uuid::Uuid, version: i16, replica: i32, epoch: i64, offset: i64) -> Result<(i16, i64, usize)> {
    let part = FetchPartition::default().with_partition(0).with_fetch_offset(offset).with_partition_max_bytes(1 << 20);
    let t = if version >= 13 { FetchTopic::default().with_topic_id(id) } else { FetchTopic::default().with_topic(topic_name(topic)) };
    let mut req = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![t.with_partitions(vec![part])]);
    if version >= 15 {
        req = req.with_replica_state(ReplicaState::default().with_replica_id(BrokerId(replica)).with_replica_epoch(epoch));
    } else {
        req = req.with_replica_id(BrokerId(replica));
    }
    let resp: FetchResponse = c.send(&req, version)?;
    let p = resp.responses.into_iter().flat_map(|t| t.partitions).next().ok_or_else(|| anyhow!("empty fetch response"))?;
    Ok((p.error_code, p.high_watermark, p.records.map_or(0, |r| r.len())))
}

#[test]
fn a_client_claiming_a_replica_id_neither_reads_nor_moves_the_high_watermark() -> Result<()> {
    // Sessions and lag limits far longer than the test: pausing the followers must not
    // change the ISR while the impostor tries its luck.
    let mut brokers = karst_tests::cluster::start_cluster(3, |_| {
        ["--set", "broker.session.timeout.ms=60000", "--set", "replica.lag.time.max.ms=60000"].map(String::from).to_vec()
    })?;
    let topic = unique_topic("trust");
    RawClient::connect(brokers[0].addr())?.create_replicated(&topic, 1, 3, &[("min.insync.replicas", "2")])?;
    let (leader, replicas, id) = wait_for("a leader", TIMEOUT, || partition0(&brokers[0], &topic).ok().filter(|(l, _, _)| *l > 0))?;
    let followers: Vec<i32> = replicas.iter().copied().filter(|r| *r != leader).collect();
    ensure!(followers.len() == 2, "replicas {replicas:?}");
    let lead = &brokers[(leader - 1) as usize];

    // One committed record (acks=all): the real followers fetch with their epochs.
    // The leader may not have applied the new topic yet (UNKNOWN_TOPIC_OR_PARTITION).
    let mut c = RawClient::connect(lead.addr())?;
    let batch = record_batch(&[(None, Some(b"committed"))], 1_000);
    wait_for("the acks=all produce of the first record", TIMEOUT, || {
        let r = c.send(&produce_request(&topic, 0, batch.clone()), 9).ok()?;
        (r.responses[0].partition_responses[0].error_code == 0).then_some(())
    })?;

    // Freeze both followers, then append one record with acks=1: above the high watermark.
    for f in &followers {
        brokers[(*f - 1) as usize].signal("STOP")?;
    }
    let result = (|| -> Result<()> {
        // Appended at once; the answer waits for the frozen followers and times out.
        let req = produce_request(&topic, 0, record_batch(&[(None, Some(b"uncommitted"))], 1_000)).with_acks(1).with_timeout_ms(200);
        let code = c.send(&req, 9)?.responses[0].partition_responses[0].error_code;
        ensure!(code == 0 || code == REQUEST_TIMED_OUT, "produce of the uncommitted record failed: {code}");
        let mut impostor = RawClient::connect(lead.addr())?;
        // Not a replica at all; a replica's id without an epoch (v12); with a wrong epoch (v15).
        let attempts = [(12, 99, -1), (12, followers[0], -1), (12, followers[1], -1), (15, followers[0], 987_654), (15, 99, 0)];
        for (version, replica, epoch) in attempts {
            for offset in [1, 2] {
                let (code, hw, bytes) = fetch(&mut impostor, &topic, id, version, replica, epoch, offset)?;
                ensure!(
                    code == NOT_LEADER_OR_FOLLOWER && bytes == 0,
                    "Fetch v{version} as replica {replica} (epoch {epoch}) from {offset}: error {code}, {bytes} bytes, hw {hw}"
                );
            }
        }
        // A consumer still sees the high watermark where the frozen followers left it.
        let (code, hw, _) = fetch(&mut impostor, &topic, id, 12, -1, -1, 0)?;
        ensure!(code == 0 && hw == 1, "consumer fetch: error {code}, high watermark {hw} (the impostor moved it?)");
        Ok(())
    })();
    for f in &followers {
        brokers[(*f - 1) as usize].signal("CONT")?;
    }
    result?;
    // The real followers, with their registered epochs, commit the second record.
    let mut consumer = RawClient::connect(lead.addr())?;
    wait_for("the real followers to move the high watermark", TIMEOUT, || {
        fetch(&mut consumer, &topic, id, 12, -1, -1, 0).ok().filter(|(code, hw, _)| *code == 0 && *hw == 2)
    })?;
    for b in brokers.iter_mut() {
        b.terminate(TIMEOUT)?;
    }
    Ok(())
}

#[test]
fn follower_fetches_are_refused_off_the_inter_broker_listener() -> Result<()> {
    // Two brokers with replication on a listener of its own. A fetch naming the real
    // follower is refused on the client listener whatever epoch it claims, while on
    // the inter-broker listener one of the same claims (the follower's real epoch) is
    // served: so the refusal is the listener's doing.
    let client = karst_tests::cluster::free_ports(2)?;
    let internal = karst_tests::cluster::free_ports(2)?;
    let brokers = karst_tests::cluster::start_cluster(2, |i| {
        [
            "--listen",
            &format!("CLIENT://127.0.0.1:{},INTERNAL://127.0.0.1:{}", client[i], internal[i]),
            "--set",
            "listener.security.protocol.map=CLIENT:PLAINTEXT,INTERNAL:PLAINTEXT",
            "--set",
            "inter.broker.listener.name=INTERNAL",
        ]
        .map(String::from)
        .to_vec()
    })?;
    let topic = unique_topic("listener");
    RawClient::connect(brokers[0].addr())?.create_replicated(&topic, 1, 2, &[])?;
    let (leader, replicas, id) = wait_for("a leader", TIMEOUT, || partition0(&brokers[0], &topic).ok().filter(|(l, _, _)| *l > 0))?;
    let follower = replicas.iter().copied().find(|r| *r != leader).ok_or_else(|| anyhow!("replicas {replicas:?}"))?;
    // The leader serves the topic once it has applied it.
    let lead = &brokers[(leader - 1) as usize];
    let mut consumer = RawClient::connect(lead.addr())?;
    wait_for("the leader to serve the topic", TIMEOUT, || fetch(&mut consumer, &topic, id, 15, -1, -1, 0).ok().filter(|r| r.0 == 0))?;
    let at = |port: u16| -> Result<RawClient> { RawClient::connect(format!("127.0.0.1:{port}").parse()?) };
    let (mut on_client, mut on_internal) = (at(client[(leader - 1) as usize])?, at(internal[(leader - 1) as usize])?);
    let mut served = Vec::new();
    for epoch in 0..=20 {
        let (code, _, bytes) = fetch(&mut on_client, &topic, id, 15, follower, epoch, 0)?;
        ensure!(code == NOT_LEADER_OR_FOLLOWER && bytes == 0, "follower fetch on the client listener (epoch {epoch}): error {code}");
        if fetch(&mut on_internal, &topic, id, 15, follower, epoch, 0)?.0 == 0 {
            served.push(epoch);
        }
    }
    ensure!(served.len() == 1, "on the inter-broker listener exactly the real epoch is served, got {served:?}");
    Ok(())
}
