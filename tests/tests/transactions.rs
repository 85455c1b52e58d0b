//! Transactions on Karst where Kafka's answer needs no side-by-side run: a producer
//! killed -9 mid-transaction is aborted after its timeout and the last stable offset
//! moves on; transaction markers from off the inter-broker listener are refused and
//! change nothing; on a three-node cluster markers reach partitions led by other
//! brokers, and the coordinator's state survives its kill -9.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use anyhow::{ensure, Context, Result};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::write_txn_markers_request::{WritableTxnMarker, WritableTxnMarkerTopic};
use kafka_protocol::messages::{
    BrokerId, DescribeTransactionsRequest, FindCoordinatorRequest, ListOffsetsRequest, ProducerId, TransactionalId, WriteTxnMarkersRequest,
};
use kafka_protocol::protocol::StrBytes;
use karst_tests::cluster::start_cluster;
use karst_tests::metrics::scrape;
use karst_tests::raw::{topic_name, RawClient};
use karst_tests::txn::{create_topic, read, send_all, txn_producer, values, TIMEOUT};
use karst_tests::{python_script, unique_topic, wait_for, wait_until, Broker};
use rdkafka::producer::Producer;

const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// LATEST of topic-0 for a read_committed (isolation 1) or read_uncommitted consumer.
fn latest(c: &mut RawClient, topic: &str, isolation: i8) -> Result<i64> {
    let req = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_isolation_level(isolation).with_topics(vec![
        ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![ListOffsetsPartition::default().with_partition_index(0).with_timestamp(-1)]),
    ]);
    let resp = c.send(&req, 5)?;
    let p = resp.topics.first().and_then(|t| t.partitions.first()).context("no ListOffsets answer")?;
    ensure!(p.error_code == 0, "ListOffsets error {}", p.error_code);
    Ok(p.offset)
}

/// (state, producer epoch) of a transactional id, from its coordinator.
fn describe(c: &mut RawClient, id: &str) -> Result<(String, i16)> {
    let resp = c.send(&DescribeTransactionsRequest::default().with_transactional_ids(vec![TransactionalId(s(id))]), 0)?;
    let t = resp.transaction_states.first().context("no state")?;
    ensure!(t.error_code == 0, "DescribeTransactions error {}", t.error_code);
    Ok((t.transaction_state.to_string(), t.producer_epoch))
}

#[test]
fn a_producer_killed_mid_transaction_is_aborted_after_its_timeout_and_the_lso_moves_on() -> Result<()> {
    let broker = Broker::start(&["--set", "transaction.abort.timed.out.transaction.cleanup.interval.ms=200"])?;
    let topic = unique_topic("hanging");
    let id = format!("{topic}-txn");
    create_topic(&broker.bootstrap(), &topic, 1)?;
    let mut child = Command::new("python3")
        .arg(python_script("hanging_txn.py"))
        .args([&broker.bootstrap(), &topic, &id, "3000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting the hanging producer")?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
    ensure!(line.trim() == "open", "the producer said {line:?}");
    child.kill()?; // SIGKILL: the transaction is left open
    child.wait()?;

    // Records after the open transaction, from another producer: invisible to
    // read_committed consumers while the transaction holds the LSO at its start.
    let mut c = RawClient::connect(broker.addr())?;
    let p = txn_producer(&broker.bootstrap(), None)?;
    send_all(&p, &topic, &values("after", 5), None)?;
    ensure!(latest(&mut c, &topic, 0)? == 15, "10 open records and 5 after them");
    ensure!(latest(&mut c, &topic, 1)? == 0, "the open transaction holds the last stable offset at its first record");
    let (state, epoch) = describe(&mut c, &id)?;
    ensure!(state == "Ongoing" && epoch == 0, "the transaction is open at epoch 0: {state} {epoch}");
    let m = scrape(&broker)?;
    ensure!(m.value_or_zero("karst_transactions_open", &[]) == 1.0, "one open transaction in the metrics");
    let held = m.value_or_zero("karst_partition_unstable_offsets", &[("topic", topic.as_str()), ("partition", "0")]);
    ensure!(held == 15.0, "read_committed consumers wait for 15 offsets: {held}");

    // Past transaction.timeout.ms the coordinator aborts it under a bumped epoch.
    wait_until("the timed-out transaction aborted", TIMEOUT, || describe(&mut c, &id).is_ok_and(|(s, _)| s == "CompleteAbort"))?;
    let (_, epoch) = describe(&mut c, &id)?;
    ensure!(epoch == 1, "the abort fenced the producer's epoch 0: now {epoch}");
    wait_until("the LSO past the abort marker", TIMEOUT, || latest(&mut c, &topic, 1).is_ok_and(|o| o == 16))?;
    let committed = read(&broker.bootstrap(), &topic, 0, 0, "read_committed", 5)?;
    let got: Vec<&str> = committed.iter().map(|(_, v)| v.as_str()).collect();
    ensure!(got == values("after", 5), "read_committed sees only the records after the aborted transaction: {got:?}");
    let metrics = scrape(&broker)?;
    ensure!(metrics.value_or_zero("karst_transactions_timed_out_total", &[]) == 1.0, "one transaction timed out");
    ensure!(metrics.value_or_zero("karst_transactions_aborted_total", &[]) == 1.0, "and completed as aborted");
    ensure!(metrics.value_or_zero("karst_transactions_open", &[]) == 0.0, "none open");
    ensure!(
        metrics.value_or_zero("karst_partition_unstable_offsets", &[("topic", topic.as_str()), ("partition", "0")]) == 0.0,
        "nothing unstable"
    );
    println!("a producer killed mid-transaction: aborted at its timeout (epoch bumped to 1), LSO 0 -> 16, read_committed sees the 5 records after it");
    Ok(())
}

#[test]
fn markers_from_off_the_inter_broker_listener_are_refused_and_change_nothing() -> Result<()> {
    let broker = Broker::start(&[
        "--listen",
        "CLIENT://127.0.0.1:0,INTERNAL://127.0.0.1:0",
        "--set",
        "listener.security.protocol.map=CLIENT:PLAINTEXT,INTERNAL:PLAINTEXT",
        "--set",
        "inter.broker.listener.name=INTERNAL",
    ])?;
    let topic = unique_topic("markers");
    create_topic(&broker.bootstrap(), &topic, 1)?;
    // A transaction of a real producer is open on the partition.
    let p = txn_producer(&broker.bootstrap(), Some(&format!("{topic}-txn")))?;
    p.init_transactions(TIMEOUT)?;
    p.begin_transaction()?;
    send_all(&p, &topic, &values("open", 3), None)?;
    let mut c = RawClient::connect(broker.addr())?;
    let before = latest(&mut c, &topic, 0)?;
    // A client forges the COMMIT marker for producer ids around it (the real one is
    // a small number) at every epoch it might have.
    for pid in 0..8 {
        let marker = WritableTxnMarker::default()
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(0)
            .with_transaction_result(true)
            .with_coordinator_epoch(0)
            .with_topics(vec![WritableTxnMarkerTopic::default().with_name(topic_name(&topic)).with_partition_indexes(vec![0])]);
        let resp = c.send(&WriteTxnMarkersRequest::default().with_markers(vec![marker]), 1)?;
        let code = resp.markers.first().and_then(|m| m.topics.first()).and_then(|t| t.partitions.first()).map(|p| p.error_code);
        ensure!(code == Some(CLUSTER_AUTHORIZATION_FAILED), "a client's marker for producer {pid}: {code:?}");
    }
    ensure!(latest(&mut c, &topic, 0)? == before, "no marker was appended");
    ensure!(latest(&mut c, &topic, 1)? == 0, "the transaction is still open");
    // The producer's own abort still ends it.
    p.abort_transaction(TIMEOUT)?;
    wait_until("the abort marker", TIMEOUT, || latest(&mut c, &topic, 1).is_ok_and(|o| o == before + 1))?;
    println!("8 forged markers refused with CLUSTER_AUTHORIZATION_FAILED; the log and the open transaction untouched");
    Ok(())
}

/// The node that coordinates `id`.
fn coordinator_of(addr: SocketAddr, id: &str) -> Result<i32> {
    let mut c = RawClient::connect(addr)?;
    wait_for("a transaction coordinator", TIMEOUT, || {
        let r = c.send(&FindCoordinatorRequest::default().with_key(s(id)).with_key_type(1), 3).ok()?;
        (r.error_code == 0).then_some(r.node_id.0)
    })
}

#[test]
fn a_cluster_writes_markers_to_other_brokers_and_the_coordinator_survives_kill_9() -> Result<()> {
    let mut nodes = start_cluster(3, |_| vec!["--set".into(), "group.initial.rebalance.delay.ms=0".into()])?;
    let bootstrap = nodes.iter().map(Broker::bootstrap).collect::<Vec<_>>().join(",");
    let topic = unique_topic("txn-cluster");
    let mut admin = RawClient::connect(nodes[0].addr())?;
    admin.create_replicated(&topic, 3, 3, &[])?;
    let id = format!("{topic}-txn");
    let per_partition = |prefix: &str| -> Vec<Vec<String>> { (0..3).map(|p| values(&format!("{prefix}-p{p}"), 10)).collect() };
    let send = |p: &karst_tests::txn::TxnProducer, batch: &[Vec<String>]| -> Result<()> {
        for (partition, vals) in batch.iter().enumerate() {
            // One key per partition: librdkafka's partitioner sends each to one place,
            // and the transaction spans every partition (and so every leader).
            for v in vals {
                let rec = rdkafka::producer::BaseRecord::<(), str>::to(&topic).payload(v.as_str()).partition(partition as i32);
                p.send(rec).map_err(|(e, _)| anyhow::anyhow!("{e}"))?;
            }
        }
        p.flush(TIMEOUT)?;
        Ok(())
    };
    let (first, aborted, second) = (per_partition("first"), per_partition("aborted"), per_partition("second"));

    let p = txn_producer(&bootstrap, Some(&id))?;
    p.init_transactions(TIMEOUT)?;
    for (batch, commit) in [(&first, true), (&aborted, false)] {
        p.begin_transaction()?;
        send(&p, batch)?;
        if commit {
            p.commit_transaction(TIMEOUT)?;
        } else {
            p.abort_transaction(TIMEOUT)?;
        }
    }
    drop(p);
    let coordinator = coordinator_of(nodes[0].addr(), &id)?;
    println!("transactional id {id} is coordinated by node {coordinator}; partitions led across the three nodes");

    // The coordinator dies; its __transaction_state partition moves to a follower,
    // which reads the state and goes on from epoch 0.
    let victim = usize::try_from(coordinator - 1).context("node id")?;
    nodes[victim].kill9()?;
    let alive: Vec<SocketAddr> = nodes.iter().enumerate().filter(|(i, _)| *i != victim).map(|(_, n)| n.addr()).collect();
    let bootstrap = alive.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(",");
    let p = txn_producer(&bootstrap, Some(&id))?;
    p.init_transactions(TIMEOUT)?;
    p.begin_transaction()?;
    send(&p, &second)?;
    p.commit_transaction(TIMEOUT)?;
    let new_coordinator = coordinator_of(alive[0], &id)?;
    ensure!(new_coordinator != coordinator, "the coordinator moved off node {coordinator}");
    let addr = nodes[usize::try_from(new_coordinator - 1)?].addr();
    let mut c = RawClient::connect(addr)?;
    wait_until("the commit completes on the new coordinator", TIMEOUT, || describe(&mut c, &id).is_ok_and(|(s, _)| s == "CompleteCommit"))?;
    let (_, epoch) = describe(&mut c, &id)?;
    ensure!(epoch == 1, "the new coordinator knew epoch 0 and bumped it: epoch {epoch}");

    for partition in 0..3 {
        let want: Vec<String> = first[partition].iter().chain(&second[partition]).cloned().collect();
        let got: Vec<String> =
            read(&bootstrap, &topic, partition as i32, 0, "read_committed", want.len())?.into_iter().map(|(_, v)| v).collect();
        ensure!(
            got == want,
            "partition {partition}: read_committed reads both committed transactions, in order, without the aborted one: {got:?}"
        );
    }
    println!("3 nodes: commit, abort, kill -9 of coordinator {coordinator}, commit through coordinator {new_coordinator} at epoch 1; read_committed exact on every partition");
    Ok(())
}

#[test]
fn a_transactional_id_unused_past_its_expiration_is_forgotten() -> Result<()> {
    let broker = Broker::start(&[
        "--set",
        "transactional.id.expiration.ms=1000",
        "--set",
        "transaction.abort.timed.out.transaction.cleanup.interval.ms=200",
    ])?;
    let topic = unique_topic("expiring");
    let id = format!("{topic}-txn");
    create_topic(&broker.bootstrap(), &topic, 1)?;
    let p = txn_producer(&broker.bootstrap(), Some(&id))?;
    p.init_transactions(TIMEOUT)?;
    p.begin_transaction()?;
    send_all(&p, &topic, &values("kept", 2), None)?;
    p.commit_transaction(TIMEOUT)?;
    drop(p);
    let mut c = RawClient::connect(broker.addr())?;
    let not_found = |c: &mut RawClient| -> bool {
        c.send(&DescribeTransactionsRequest::default().with_transactional_ids(vec![TransactionalId(s(&id))]), 0)
            .is_ok_and(|r| r.transaction_states.first().is_some_and(|t| t.error_code == 105))
    };
    wait_until("the id expired (TRANSACTIONAL_ID_NOT_FOUND)", TIMEOUT, || not_found(&mut c))?;
    // The id starts over: a new producer id at epoch 0, and its transactions work.
    let p = txn_producer(&broker.bootstrap(), Some(&id))?;
    p.init_transactions(TIMEOUT)?;
    let (state, epoch) = describe(&mut c, &id)?;
    ensure!(state == "Empty" && epoch == 0, "a fresh start: {state} epoch {epoch}");
    p.begin_transaction()?;
    send_all(&p, &topic, &values("again", 2), None)?;
    p.commit_transaction(TIMEOUT)?;
    let got: Vec<String> = read(&broker.bootstrap(), &topic, 0, 0, "read_committed", 4)?.into_iter().map(|(_, v)| v).collect();
    ensure!(got == [values("kept", 2), values("again", 2)].concat(), "{got:?}");
    Ok(())
}

#[test]
fn a_transactional_offset_commit_is_verified_with_a_transaction_coordinator_on_another_broker() -> Result<()> {
    use kafka_protocol::messages::txn_offset_commit_request::{TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic};
    use kafka_protocol::messages::{AddOffsetsToTxnRequest, GroupId, InitProducerIdRequest, TxnOffsetCommitRequest};
    const INVALID_TXN_STATE: i16 = 48;
    let nodes = start_cluster(3, |_| Vec::new())?;
    let topic = unique_topic("verify-remote");
    let mut admin = RawClient::connect(nodes[0].addr())?;
    admin.create_replicated(&topic, 1, 3, &[])?;
    let id = format!("{topic}-txn");
    let txn_node = coordinator_of(nodes[0].addr(), &id)?;
    // A group whose coordinator is another broker.
    let group = wait_for("a group coordinated elsewhere", TIMEOUT, || {
        (0..200).map(|i| format!("{topic}-g{i}")).find(|g| {
            let mut c = RawClient::connect(nodes[0].addr()).ok();
            c.as_mut()
                .and_then(|c| c.send(&FindCoordinatorRequest::default().with_key(s(g)).with_key_type(0), 3).ok())
                .is_some_and(|r| r.error_code == 0 && r.node_id.0 != txn_node)
        })
    })?;
    let group_node = coordinator_of_group(nodes[0].addr(), &group)?;
    let mut t = RawClient::connect(nodes[usize::try_from(txn_node - 1)?].addr())?;
    let init = InitProducerIdRequest::default().with_transactional_id(Some(TransactionalId(s(&id)))).with_transaction_timeout_ms(60_000);
    let r = wait_for("InitProducerId", TIMEOUT, || t.send(&init, 4).ok().filter(|r| r.error_code == 0))?;
    let (pid, epoch) = (r.producer_id, r.producer_epoch);
    let commit = TxnOffsetCommitRequest::default()
        .with_transactional_id(TransactionalId(s(&id)))
        .with_group_id(GroupId(s(&group)))
        .with_producer_id(pid)
        .with_producer_epoch(epoch)
        .with_generation_id(-1)
        .with_member_id(s(""))
        .with_topics(vec![TxnOffsetCommitRequestTopic::default()
            .with_name(topic_name(&topic))
            .with_partitions(vec![TxnOffsetCommitRequestPartition::default().with_partition_index(0).with_committed_offset(5)])]);
    let mut g = RawClient::connect(nodes[usize::try_from(group_node - 1)?].addr())?;
    let code = |c: &mut RawClient| -> Result<i16> {
        let r = c.send(&commit, 3)?;
        r.topics.first().and_then(|t| t.partitions.first()).map(|p| p.error_code).context("no answer")
    };
    let before = code(&mut g)?;
    ensure!(before == INVALID_TXN_STATE, "before AddOffsetsToTxn the group coordinator (node {group_node}) asks node {txn_node}: {before}");
    let add = AddOffsetsToTxnRequest::default()
        .with_transactional_id(TransactionalId(s(&id)))
        .with_producer_id(pid)
        .with_producer_epoch(epoch)
        .with_group_id(GroupId(s(&group)));
    let r = wait_for("AddOffsetsToTxn", TIMEOUT, || t.send(&add, 3).ok().filter(|r| r.error_code == 0))?;
    ensure!(r.error_code == 0);
    let after = code(&mut g)?;
    ensure!(after == 0, "after AddOffsetsToTxn: {after}");
    println!("TxnOffsetCommit at node {group_node}, verified with node {txn_node}: {before} before AddOffsetsToTxn, {after} after");
    Ok(())
}

fn coordinator_of_group(addr: SocketAddr, group: &str) -> Result<i32> {
    let mut c = RawClient::connect(addr)?;
    wait_for("a group coordinator", TIMEOUT, || {
        let r = c.send(&FindCoordinatorRequest::default().with_key(s(group)).with_key_type(0), 3).ok()?;
        (r.error_code == 0).then_some(r.node_id.0)
    })
}

/// A transition the coordinator began writing for a request whose client then reset
/// its connection is still completed: the EndTxn's decision is written, its markers
/// follow, and the producer's next request is not told CONCURRENT_TRANSACTIONS for
/// good (as it was while the write was part of the dropped request).
#[test]
fn a_commit_whose_client_resets_its_connection_mid_write_still_completes() -> Result<()> {
    use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::MetadataRequest;
    use kafka_protocol::messages::{AddPartitionsToTxnRequest, ApiVersionsRequest, EndTxnRequest, FetchRequest, InitProducerIdRequest};
    let nodes = start_cluster(3, |_| Vec::new())?;
    let topic = unique_topic("txn-reset");
    let mut admin = RawClient::connect(nodes[0].addr())?;
    // Three partitions: leaders spread over the nodes, so one is the coordinator's.
    admin.create_replicated(&topic, 3, 3, &[])?;
    let id = format!("{topic}-txn");
    let node = coordinator_of(nodes[0].addr(), &id)?;
    let led_here = wait_for("a partition led by the coordinator", TIMEOUT, || {
        let md = admin
            .send(
                &MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(topic_name(&topic)))])),
                9,
            )
            .ok()?;
        md.topics.first()?.partitions.iter().find(|p| p.leader_id.0 == node).map(|p| p.partition_index)
    })?;
    let coordinator = usize::try_from(node - 1)?;
    let mut c = RawClient::connect(nodes[coordinator].addr())?;
    let init = InitProducerIdRequest::default().with_transactional_id(Some(TransactionalId(s(&id)))).with_transaction_timeout_ms(60_000);
    let r = wait_for("InitProducerId", TIMEOUT, || c.send(&init, 4).ok().filter(|r| r.error_code == 0))?;
    let (pid, epoch) = (r.producer_id, r.producer_epoch);
    let add = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(TransactionalId(s(&id)))
        .with_v3_and_below_producer_id(pid)
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default().with_name(topic_name(&topic)).with_partitions(vec![0])]);
    let r = c.send(&add, 3)?;
    let code = r.results_by_topic_v3_and_below.first().and_then(|t| t.results_by_partition.first()).map(|p| p.partition_error_code);
    ensure!(code == Some(0), "AddPartitionsToTxn: {code:?}");

    // The followers pause: the decision's write waits for them to replicate it.
    let followers: Vec<usize> = (0..3).filter(|i| *i != coordinator).collect();
    for &f in &followers {
        nodes[f].signal("STOP")?;
    }
    let end = EndTxnRequest::default()
        .with_transactional_id(TransactionalId(s(&id)))
        .with_producer_id(pid)
        .with_producer_epoch(epoch)
        .with_committed(true);
    let metric = |name: &str, labels: &[(&str, &str)]| scrape(&nodes[coordinator]).map(|m| m.value_or_zero(name, labels));
    let (ended_before, connections_before) = (metric("karst_requests_total", &[("api", "EndTxn")])?, metric("karst_connections", &[])?);
    // Ahead of the EndTxn: an ApiVersions, answered at once and left unread (so the
    // close below is a reset), and a Fetch long-polling an empty partition, whose
    // answer then fails to be written: the broker drops the connection with the
    // EndTxn in flight.
    let mut doomed = RawClient::connect(nodes[coordinator].addr())?;
    let fetch = FetchRequest::default().with_replica_id(BrokerId(-1)).with_max_wait_ms(1_000).with_min_bytes(1).with_topics(vec![
        FetchTopic::default()
            .with_topic(topic_name(&topic))
            .with_partitions(vec![FetchPartition::default().with_partition(led_here).with_partition_max_bytes(1 << 20)]),
    ]);
    let (v, f, e) = (doomed.correlation_id(), doomed.correlation_id(), doomed.correlation_id());
    let frames = [doomed.encode(&ApiVersionsRequest::default(), 0, v)?, doomed.encode(&fetch, 4, f)?, doomed.encode(&end, 3, e)?].concat();
    doomed.write_raw(&frames)?;
    wait_until("the EndTxn taken up", TIMEOUT, || metric("karst_requests_total", &[("api", "EndTxn")]).is_ok_and(|n| n > ended_before))?;
    drop(doomed);
    wait_until("the connection dropped", TIMEOUT, || metric("karst_connections", &[]).is_ok_and(|n| n <= connections_before))?;
    for &f in &followers {
        nodes[f].signal("CONT")?;
    }

    wait_until("the commit completes", TIMEOUT, || describe(&mut c, &id).is_ok_and(|(state, _)| state == "CompleteCommit"))?;
    // The producer retries its EndTxn (it never heard back): the commit it asked for.
    let r = wait_for("EndTxn retried", TIMEOUT, || c.send(&end, 3).ok().filter(|r| r.error_code != 51))?;
    ensure!(r.error_code == 0, "the retried EndTxn: {}", r.error_code);
    let bootstrap = nodes.iter().map(Broker::bootstrap).collect::<Vec<_>>().join(",");
    let (_, high) = karst_tests::txn::ends(&bootstrap, &topic, 0)?;
    ensure!(high == 1, "the COMMIT marker is in the partition: high watermark {high}");
    println!("EndTxn's client reset mid-write on node {node}: the commit completed and the retry was answered NONE");
    Ok(())
}

/// One transactions v2 producer spoken by the protocol on three nodes: its
/// transactional id, its coordinator and a partition of its topic led by another
/// broker, for the tests below.
struct V2Producer {
    id: String,
    topic: String,
    partition: i32,
    txn_node: i32,
    leader: i32,
    pid: i64,
    first_epoch: i16,
}

impl V2Producer {
    /// Creates `topic` (3 partitions on 3 replicas), finds its coordinator and a
    /// partition led elsewhere, and initializes it (InitProducerId v5).
    fn start(nodes: &[Broker], topic: &str) -> Result<V2Producer> {
        use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
        use kafka_protocol::messages::{InitProducerIdRequest, MetadataRequest};
        let mut admin = RawClient::connect(nodes[0].addr())?;
        admin.create_replicated(topic, 3, 3, &[])?;
        let id = format!("{topic}-txn");
        let txn_node = coordinator_of(nodes[0].addr(), &id)?;
        let (partition, leader) = wait_for("a partition led by another broker", TIMEOUT, || {
            let req =
                MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(topic_name(topic)))]));
            let r = admin.send(&req, 9).ok()?;
            r.topics
                .first()?
                .partitions
                .iter()
                .find(|p| p.leader_id.0 > 0 && p.leader_id.0 != txn_node)
                .map(|p| (p.partition_index, p.leader_id.0))
        })?;
        let mut t = RawClient::connect(nodes[usize::try_from(txn_node - 1)?].addr())?;
        let init =
            InitProducerIdRequest::default().with_transactional_id(Some(TransactionalId(s(&id)))).with_transaction_timeout_ms(60_000);
        let r = wait_for("InitProducerId", TIMEOUT, || t.send(&init, 5).ok().filter(|r| r.error_code == 0))?;
        Ok(V2Producer { id, topic: topic.to_string(), partition, txn_node, leader, pid: r.producer_id.0, first_epoch: r.producer_epoch })
    }

    /// A batch of one record by Produce v12 to the partition's leader: its code.
    /// NOT_ENOUGH_REPLICAS (the add waits on the last transaction's markers) is asked again.
    fn produce(&self, l: &mut RawClient, epoch: i16, seq: i32, value: &str) -> Result<i16> {
        use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
        use kafka_protocol::messages::ProduceRequest;
        let batch = karst_tests::raw::txn_record_batch(self.pid, epoch, seq, value);
        let req = ProduceRequest::default()
            .with_transactional_id(Some(TransactionalId(s(&self.id))))
            .with_acks(-1)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(&self.topic))
                .with_partition_data(vec![PartitionProduceData::default().with_index(self.partition).with_records(Some(batch))])]);
        wait_for("a produce answer", TIMEOUT, || {
            let r = l.send(&req, 12).ok()?;
            let code = r.responses.first()?.partition_responses.first()?.error_code;
            (![5, 6, 19].contains(&code)).then_some(code)
        })
    }

    /// EndTxn v5 at the coordinator: its code and the epoch it answers.
    fn end(&self, t: &mut RawClient, epoch: i16, commit: bool) -> Result<(i16, i16)> {
        use kafka_protocol::messages::EndTxnRequest;
        let req = EndTxnRequest::default()
            .with_transactional_id(TransactionalId(s(&self.id)))
            .with_producer_id(ProducerId(self.pid))
            .with_producer_epoch(epoch)
            .with_committed(commit);
        let r = wait_for("an EndTxn answer", TIMEOUT, || t.send(&req, 5).ok().filter(|r| r.error_code != 51))?;
        Ok((r.error_code, r.producer_epoch))
    }
}

/// Transactions v2 (KIP-890 part 2) on three nodes, by the protocol: a batch by
/// Produce v12 to a leader on another broker than the transaction coordinator is
/// added to the transaction there (AddPartitionsToTxn v5 between brokers), a
/// TxnOffsetCommit v5 at a third broker adds the group's partition the same way,
/// EndTxn v5 bumps the epoch and the markers reach both; the next transaction runs
/// at the new epoch, a batch at the old one is refused, and read_committed sees
/// the committed transaction only.
#[test]
fn transactions_v2_add_partitions_through_coordinators_on_other_brokers() -> Result<()> {
    use kafka_protocol::messages::txn_offset_commit_request::{TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic};
    use kafka_protocol::messages::{GroupId, TxnOffsetCommitRequest};
    let nodes = start_cluster(3, |_| Vec::new())?;
    let topic = unique_topic("txn-v2-cluster");
    let v2 = V2Producer::start(&nodes, &topic)?;
    let (id, partition, txn_node, leader, pid, e0) = (v2.id.clone(), v2.partition, v2.txn_node, v2.leader, v2.pid, v2.first_epoch);
    let node = |n: i32| -> Result<SocketAddr> { Ok(nodes[usize::try_from(n - 1)?].addr()) };
    // A group coordinated by the third broker.
    let group = (0..200)
        .map(|i| format!("{topic}-g{i}"))
        .find(|g| coordinator_of_group(nodes[0].addr(), g).is_ok_and(|n| n != txn_node && n != leader))
        .context("a group coordinated by the third broker")?;
    let group_node = coordinator_of_group(nodes[0].addr(), &group)?;
    println!("transaction coordinator {txn_node}, {topic}-{partition} led by {leader}, group coordinator {group_node}");

    let mut t = RawClient::connect(node(txn_node)?)?;
    let mut l = RawClient::connect(node(leader)?)?;
    let mut g = RawClient::connect(node(group_node)?)?;
    let code = v2.produce(&mut l, e0, 0, "committed")?;
    ensure!(code == 0, "Produce v12 at node {leader} added the partition with node {txn_node}: {code}");
    let commit = TxnOffsetCommitRequest::default()
        .with_transactional_id(TransactionalId(s(&id)))
        .with_group_id(GroupId(s(&group)))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(e0)
        .with_generation_id(-1)
        .with_member_id(s(""))
        .with_topics(vec![TxnOffsetCommitRequestTopic::default()
            .with_name(topic_name(&topic))
            .with_partitions(vec![TxnOffsetCommitRequestPartition::default().with_partition_index(partition).with_committed_offset(7)])]);
    let r = g.send(&commit, 5)?;
    let code = r.topics.first().and_then(|t| t.partitions.first()).map(|p| p.error_code).context("no answer")?;
    ensure!(code == 0, "TxnOffsetCommit v5 at node {group_node} added the group's partition with node {txn_node}: {code}");
    let (state, _) = describe(&mut t, &id)?;
    ensure!(state == "Ongoing", "{state}");
    let (code, e1) = v2.end(&mut t, e0, true)?;
    ensure!(code == 0 && e1 == e0 + 1, "EndTxn v5 commits and bumps the epoch: error {code} epoch {e1}");
    wait_until("the commit completes", TIMEOUT, || describe(&mut t, &id).is_ok_and(|(s, _)| s == "CompleteCommit"))?;
    wait_until("the committed offset is stable", TIMEOUT, || {
        g.committed_offsets(&group, &topic, &[partition]).is_ok_and(|o| o.get(&partition) == Some(&7))
    })?;

    ensure!(v2.produce(&mut l, e1, 0, "aborted")? == 0, "the next transaction at the new epoch");
    let zombie = v2.produce(&mut l, e0, 1, "zombie")?;
    ensure!(zombie == 47, "a batch at the old epoch: INVALID_PRODUCER_EPOCH, got {zombie}");
    let (code, e2) = v2.end(&mut t, e1, false)?;
    ensure!(code == 0 && e2 == e1 + 1, "EndTxn v5 aborts and bumps the epoch: error {code} epoch {e2}");
    wait_until("the abort completes", TIMEOUT, || describe(&mut t, &id).is_ok_and(|(s, _)| s == "CompleteAbort"))?;
    let bootstrap = nodes.iter().map(Broker::bootstrap).collect::<Vec<_>>().join(",");
    let got: Vec<String> = read(&bootstrap, &topic, partition, 0, "read_committed", 1)?.into_iter().map(|(_, v)| v).collect();
    ensure!(got == ["committed"], "read_committed reads the committed transaction only: {got:?}");
    println!("transactions v2 across nodes {txn_node} (coordinator), {leader} (leader), {group_node} (group): commit at epoch {e0}, abort at {e1}, now {e2}");
    Ok(())
}

/// Transactions v2: a producer sends its next transaction's first batch right
/// after EndTxn, while the last transaction's markers are still being written to
/// the same partition. The partition's add waits for them at the coordinator, and
/// the marker landing meanwhile must not void the add's verification (it ends
/// the last transaction, not this one): every batch is taken, and read_committed
/// sees exactly the committed ones.
#[test]
fn a_transactions_v2_producer_starts_its_next_transaction_while_the_last_ones_markers_are_written() -> Result<()> {
    const ROUNDS: i16 = 20;
    // Three nodes, the partition led by another broker than the coordinator: the
    // markers travel (WriteTxnMarkers) while the next batch's add waits.
    let nodes = start_cluster(3, |_| Vec::new())?;
    let topic = unique_topic("txn-v2-back-to-back");
    let v2 = V2Producer::start(&nodes, &topic)?;
    let mut t = RawClient::connect(nodes[usize::try_from(v2.txn_node - 1)?].addr())?;
    let mut c = RawClient::connect(nodes[usize::try_from(v2.leader - 1)?].addr())?;
    let mut epoch = v2.first_epoch;
    let mut committed = Vec::new();
    for round in 0..ROUNDS {
        let value = format!("round-{round}");
        let code = v2.produce(&mut c, epoch, 0, &value)?;
        ensure!(code == 0, "round {round}: the first batch of the transaction at epoch {epoch}: error {code}");
        let commit = round % 2 == 0;
        let (code, next) = v2.end(&mut t, epoch, commit)?;
        ensure!(code == 0 && next == epoch + 1, "round {round}: EndTxn v5: error {code} epoch {next}");
        epoch = next;
        if commit {
            committed.push(value);
        }
    }
    wait_until("the last transaction completes", TIMEOUT, || describe(&mut t, &v2.id).is_ok_and(|(s, _)| s.starts_with("Complete")))?;
    let bootstrap = nodes.iter().map(Broker::bootstrap).collect::<Vec<_>>().join(",");
    let got: Vec<String> =
        read(&bootstrap, &topic, v2.partition, 0, "read_committed", committed.len())?.into_iter().map(|(_, v)| v).collect();
    ensure!(got == committed, "read_committed reads the committed transactions only, in order: {got:?}");
    Ok(())
}
