//! A transaction's life and its bad inputs, step by step on Kafka and on Karst, at
//! the highest versions both serve and again at the lowest: what each request is
//! told (error codes, epochs, offsets, aborted transactions), never ids that differ
//! per broker.
//!
//! 1. FindCoordinator for a transactional id; InitProducerId with a timeout above
//!    `transaction.max.timeout.ms`; EndTxn for an id never seen.
//! 2. InitProducerId; EndTxn with nothing open; AddPartitionsToTxn with a future
//!    epoch, another producer id, an unknown topic; a transactional batch to a
//!    partition not in the transaction.
//! 3. A transaction with one batch: ListOffsets and Fetch read_committed hold at its
//!    first offset; it is aborted; both then show the abort (LSO past the marker,
//!    the aborted transaction listed); EndTxn retried, then the other outcome.
//! 4. A second InitProducerId fences the first producer: its AddPartitionsToTxn and
//!    its batch are refused.
//! 5. TxnOffsetCommit for a generation the group never had; AddOffsetsToTxn and a
//!    TxnOffsetCommit without a member; OffsetFetch with require_stable before and
//!    after the commit; DescribeTransactions at the end.
//! 6. At the highest versions, transactions v2 (KIP-890 part 2) where both finalize
//!    `transaction.version` 2: a batch by Produce v12 adds its partition; EndTxn v5
//!    bumps the epoch, tells a retry (the epoch before the bump) from a stale end;
//!    the next transaction at the new epoch, a batch at the old one; an abort and
//!    what read_committed sees; TxnOffsetCommit v5 adds the group's partition; a
//!    transaction past its timeout, aborted by the coordinator, and what its
//!    producer is told after.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_fetch_request::{OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::txn_offset_commit_request::{TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, ApiKey, DescribeTransactionsRequest, EndTxnRequest, FetchRequest,
    FindCoordinatorRequest, GroupId, InitProducerIdRequest, ListOffsetsRequest, ListTransactionsRequest, OffsetFetchRequest,
    ProduceRequest, ProducerId, TransactionalId, TxnOffsetCommitRequest,
};
use kafka_protocol::protocol::StrBytes;
use karst_tests::raw::{topic_name, RawClient};
use karst_tests::unique_topic;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn tid(v: &str) -> TransactionalId {
    TransactionalId(s(v))
}

/// The versions of the transaction APIs used in one run.
#[derive(Debug, Clone, Copy)]
struct Versions {
    find: i16,
    init: i16,
    add_partitions: i16,
    add_offsets: i16,
    end: i16,
    txn_commit: i16,
    produce: i16,
    fetch: i16,
    list_offsets: i16,
    offset_fetch: i16,
    describe: i16,
    /// Produce v12, EndTxn v5 and TxnOffsetCommit v5 are common: step 6 runs.
    tv2: bool,
}

fn versions(pair: &super::Pair, highest: bool) -> Result<Versions> {
    let pick = |key: ApiKey, min: i16| -> Result<i16> {
        let v = pair.versions(key, min)?;
        if highest { v.last() } else { v.first() }.copied().with_context(|| format!("no common version of {key:?}"))
    };
    Ok(Versions {
        // v4+ batch the keys, which the steps below do not.
        find: pick(ApiKey::FindCoordinator, 1)?.min(3),
        init: pick(ApiKey::InitProducerId, 0)?,
        add_partitions: pick(ApiKey::AddPartitionsToTxn, 0)?.min(3),
        add_offsets: pick(ApiKey::AddOffsetsToTxn, 0)?,
        end: pick(ApiKey::EndTxn, 0)?,
        txn_commit: pick(ApiKey::TxnOffsetCommit, 0)?,
        // Transactional batches need v3+; v12 adds partitions implicitly where
        // transactions v2 are finalized (Kafka), which Karst does not finalize yet.
        produce: pick(ApiKey::Produce, 3)?.min(11),
        fetch: pick(ApiKey::Fetch, 4)?.min(12),
        list_offsets: pick(ApiKey::ListOffsets, 2)?,
        // require_stable is v7+; v8+ batch the groups.
        offset_fetch: 7,
        describe: pick(ApiKey::DescribeTransactions, 0)?,
        tv2: highest && pick(ApiKey::Produce, 3)? >= 12 && pick(ApiKey::EndTxn, 0)? >= 5 && pick(ApiKey::TxnOffsetCommit, 0)? >= 5,
    })
}

/// Codes that mean "not yet": retried for a while, the last answer logged.
const NOT_YET: [i16; 4] = [15, 14, 51, 16]; // COORDINATOR_NOT_AVAILABLE, LOAD_IN_PROGRESS, CONCURRENT_TRANSACTIONS, NOT_COORDINATOR

fn retry<T>(mut f: impl FnMut() -> Result<T>, code: impl Fn(&T) -> i16) -> Result<T> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = f()?;
        if !NOT_YET.contains(&code(&r)) || Instant::now() > deadline {
            return Ok(r);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A transactional batch of one record of `pid` at `epoch` and `seq`.
fn txn_batch(pid: i64, epoch: i16, seq: i32, value: &str) -> Result<Bytes> {
    Ok(karst_tests::raw::txn_record_batch(pid, epoch, seq, value))
}

struct Steps<'a> {
    c: RawClient,
    v: Versions,
    topic: &'a str,
    id: String,
}

impl Steps<'_> {
    fn init(&mut self, id: &str, timeout: i32) -> Result<(i16, i64, i16)> {
        let req = InitProducerIdRequest::default().with_transactional_id(Some(tid(id))).with_transaction_timeout_ms(timeout);
        let v = self.v.init;
        let c = &mut self.c;
        let r = retry(|| c.send(&req, v), |r| r.error_code)?;
        Ok((r.error_code, r.producer_id.0, r.producer_epoch))
    }

    fn end(&mut self, id: &str, pid: i64, epoch: i16, commit: bool) -> Result<i16> {
        Ok(self.end_answer(id, pid, epoch, commit)?.0)
    }

    /// EndTxn's code and (v5+) the producer id and epoch it answers.
    fn end_answer(&mut self, id: &str, pid: i64, epoch: i16, commit: bool) -> Result<(i16, i64, i16)> {
        let req = EndTxnRequest::default()
            .with_transactional_id(tid(id))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
            .with_committed(commit);
        let v = self.v.end;
        let c = &mut self.c;
        let r = retry(|| c.send(&req, v), |r| r.error_code)?;
        Ok((r.error_code, r.producer_id.0, r.producer_epoch))
    }

    /// Each partition's code, in request order.
    fn add(&mut self, pid: i64, epoch: i16, parts: &[(&str, i32)]) -> Result<Vec<i16>> {
        let mut topics: Vec<AddPartitionsToTxnTopic> = Vec::new();
        for (t, p) in parts {
            match topics.iter_mut().find(|x| x.name.as_str() == *t) {
                Some(x) => x.partitions.push(*p),
                None => topics.push(AddPartitionsToTxnTopic::default().with_name(topic_name(t)).with_partitions(vec![*p])),
            }
        }
        let req = AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(tid(&self.id))
            .with_v3_and_below_producer_id(ProducerId(pid))
            .with_v3_and_below_producer_epoch(epoch)
            .with_v3_and_below_topics(topics);
        let v = self.v.add_partitions;
        let c = &mut self.c;
        let resp = retry(
            || c.send(&req, v),
            |r| r.results_by_topic_v3_and_below.first().and_then(|t| t.results_by_partition.first()).map_or(0, |p| p.partition_error_code),
        )?;
        Ok(parts
            .iter()
            .map(|(t, p)| {
                resp.results_by_topic_v3_and_below
                    .iter()
                    .filter(|x| x.name.as_str() == *t)
                    .flat_map(|x| x.results_by_partition.iter())
                    .find(|x| x.partition_index == *p)
                    .map_or(-100, |x| x.partition_error_code)
            })
            .collect())
    }

    fn produce(&mut self, partition: i32, batch: Bytes) -> Result<(i16, i64)> {
        self.produce_at(self.v.produce, partition, batch)
    }

    /// A transactional batch by Produce `version`; v12+ retries NOT_ENOUGH_REPLICAS
    /// too (the partition's add waits for the last transaction's markers).
    fn produce_at(&mut self, version: i16, partition: i32, batch: Bytes) -> Result<(i16, i64)> {
        let retried: &[i16] = if version >= 12 { &[5, 6, 19] } else { &[5, 6] };
        let req =
            ProduceRequest::default().with_transactional_id(Some(tid(&self.id))).with_acks(-1).with_timeout_ms(10_000).with_topic_data(
                vec![TopicProduceData::default()
                    .with_name(topic_name(self.topic))
                    .with_partition_data(vec![PartitionProduceData::default().with_index(partition).with_records(Some(batch))])],
            );
        // A topic just created may not have its leaders everywhere yet.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let resp = self.c.send(&req, version)?;
            let p = resp.responses.first().and_then(|t| t.partition_responses.first()).context("no produce answer")?;
            if !retried.contains(&p.error_code) || Instant::now() > deadline {
                return Ok((p.error_code, p.base_offset));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// LATEST as a read_committed and as a read_uncommitted consumer sees it.
    fn latest(&mut self, partition: i32) -> Result<(i64, i64)> {
        let mut out = [0i64; 2];
        for (i, level) in [1i8, 0].into_iter().enumerate() {
            let req = ListOffsetsRequest::default()
                .with_replica_id(kafka_protocol::messages::BrokerId(-1))
                .with_isolation_level(level)
                .with_topics(vec![ListOffsetsTopic::default()
                    .with_name(topic_name(self.topic))
                    .with_partitions(vec![ListOffsetsPartition::default().with_partition_index(partition).with_timestamp(-1)])]);
            let resp = self.c.send(&req, self.v.list_offsets)?;
            out[i] = resp.topics.first().and_then(|t| t.partitions.first()).map_or(-100, |p| p.offset);
        }
        Ok((out[0], out[1]))
    }

    /// A read_committed fetch from offset 0: batches, LSO, aborted transactions
    /// (first offsets; whether each names the producer `pid`).
    fn fetch(&mut self, partition: i32, pid: i64) -> Result<String> {
        let req = FetchRequest::default()
            .with_replica_id(kafka_protocol::messages::BrokerId(-1))
            .with_max_wait_ms(0)
            .with_min_bytes(0)
            .with_max_bytes(1 << 20)
            .with_isolation_level(1)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default().with_topic(topic_name(self.topic)).with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
        let resp = self.c.send(&req, self.v.fetch)?;
        let p = resp.responses.first().and_then(|t| t.partitions.first()).context("no fetch answer")?;
        let records = p.records.as_ref().map_or(0, |r| karst_batch::batches(r).count());
        let aborted: Vec<String> = p
            .aborted_transactions
            .iter()
            .flatten()
            .map(|a| format!("{} by {}", a.first_offset, if a.producer_id.0 == pid { "the producer" } else { "another" }))
            .collect();
        Ok(format!("error {} hw {} lso {} batches {records} aborted {aborted:?}", p.error_code, p.high_watermark, p.last_stable_offset))
    }

    fn txn_commit(&mut self, group: &str, pid: i64, epoch: i16, generation: i32, member: &str) -> Result<i16> {
        self.txn_commit_at(self.v.txn_commit, group, pid, epoch, generation, member)
    }

    fn txn_commit_at(&mut self, v: i16, group: &str, pid: i64, epoch: i16, generation: i32, member: &str) -> Result<i16> {
        let mut req = TxnOffsetCommitRequest::default()
            .with_transactional_id(tid(&self.id))
            .with_group_id(GroupId(s(group)))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
            .with_topics(vec![TxnOffsetCommitRequestTopic::default()
                .with_name(topic_name(self.topic))
                .with_partitions(vec![TxnOffsetCommitRequestPartition::default().with_partition_index(0).with_committed_offset(1)])]);
        if v >= 3 {
            req = req.with_generation_id(generation).with_member_id(s(member));
        }
        let c = &mut self.c;
        let resp = retry(|| c.send(&req, v), |r| r.topics.first().and_then(|t| t.partitions.first()).map_or(0, |p| p.error_code))?;
        Ok(resp.topics.first().and_then(|t| t.partitions.first()).map_or(-100, |p| p.error_code))
    }

    fn offset_fetch(&mut self, group: &str) -> Result<(i16, i64)> {
        let req = OffsetFetchRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_require_stable(true)
            .with_topics(Some(vec![OffsetFetchRequestTopic::default().with_name(topic_name(self.topic)).with_partition_indexes(vec![0])]));
        let _ = (OffsetFetchRequestGroup::default(), OffsetFetchRequestTopics::default());
        let resp = self.c.send(&req, self.v.offset_fetch)?;
        let p = resp.topics.first().and_then(|t| t.partitions.first()).context("no offset fetch answer")?;
        Ok((p.error_code, p.committed_offset))
    }
}

fn steps(addr: SocketAddr, v: Versions, topic: &str) -> Result<Vec<String>> {
    let mut c = RawClient::connect(addr)?;
    c.create_topic(topic, 2, &[])?;
    let id = unique_topic("txn-id");
    let mut st = Steps { c, v, topic, id: id.clone() };
    let mut log = Vec::new();

    // 1.
    let find = FindCoordinatorRequest::default().with_key(s(&id)).with_key_type(1);
    let c = &mut st.c;
    let r = retry(|| c.send(&find, v.find), |r| r.error_code)?;
    log.push(format!("FindCoordinator (transaction): error {}", r.error_code));
    let (code, _, _) = st.init(&id, 900_001)?;
    log.push(format!("InitProducerId, timeout above the maximum: error {code}"));
    let code = st.end(&format!("{id}-never"), 1000, 0, true)?;
    log.push(format!("EndTxn for an id never seen: error {code}"));

    // 2.
    let (code, pid, epoch) = st.init(&id, 60_000)?;
    log.push(format!("InitProducerId: error {code} epoch {epoch}"));
    log.push(format!("EndTxn (commit) with nothing open: error {}", st.end(&id, pid, epoch, true)?));
    log.push(format!("AddPartitionsToTxn, a future epoch: errors {:?}", st.add(pid, epoch + 1, &[(topic, 0)])?));
    log.push(format!("AddPartitionsToTxn, another producer id: errors {:?}", st.add(pid + 1000, epoch, &[(topic, 0)])?));
    log.push(format!("AddPartitionsToTxn, with an unknown topic: errors {:?}", st.add(pid, epoch, &[(topic, 0), ("no-such-topic-x", 0)])?));
    let (code, _) = st.produce(1, txn_batch(pid, epoch, 0, "stray")?)?;
    log.push(format!("transactional batch to a partition not in the transaction: error {code}"));

    // 3.
    log.push(format!("AddPartitionsToTxn: errors {:?}", st.add(pid, epoch, &[(topic, 0)])?));
    let (code, offset) = st.produce(0, txn_batch(pid, epoch, 0, "aborted")?)?;
    log.push(format!("transactional batch: error {code} offset {offset}"));
    log.push(format!("LATEST (read_committed, read_uncommitted) while open: {:?}", st.latest(0)?));
    log.push(format!("read_committed fetch while open: {}", st.fetch(0, pid)?));
    log.push(format!("EndTxn (abort): error {}", st.end(&id, pid, epoch, false)?));
    // The marker follows the answer: wait for it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while st.latest(0)?.0 < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    log.push(format!("LATEST (read_committed, read_uncommitted) after the abort: {:?}", st.latest(0)?));
    log.push(format!("read_committed fetch after the abort: {}", st.fetch(0, pid)?));
    log.push(format!("EndTxn (abort) again: error {}", st.end(&id, pid, epoch, false)?));
    log.push(format!("EndTxn (commit) after the abort: error {}", st.end(&id, pid, epoch, true)?));

    // 4.
    let (code, pid2, epoch2) = st.init(&id, 60_000)?;
    log.push(format!("InitProducerId again: error {code} epoch {epoch2} same producer id {}", pid2 == pid));
    log.push(format!("AddPartitionsToTxn with the fenced epoch: errors {:?}", st.add(pid, epoch, &[(topic, 0)])?));
    let (code, _) = st.produce(0, txn_batch(pid, epoch, 1, "zombie")?)?;
    log.push(format!("transactional batch with the fenced epoch: error {code}"));

    // 5.
    let group = unique_topic("txn-group");
    log.push(format!("TxnOffsetCommit before AddOffsetsToTxn: error {}", st.txn_commit(&group, pid2, epoch2, -1, "")?));
    let req = AddOffsetsToTxnRequest::default()
        .with_transactional_id(tid(&id))
        .with_producer_id(ProducerId(pid2))
        .with_producer_epoch(epoch2)
        .with_group_id(GroupId(s(&group)));
    let c = &mut st.c;
    let r = retry(|| c.send(&req, v.add_offsets), |r| r.error_code)?;
    log.push(format!("AddOffsetsToTxn: error {}", r.error_code));
    log.push(format!("TxnOffsetCommit, a generation the group never had: error {}", st.txn_commit(&group, pid2, epoch2, 3, "m-1")?));
    log.push(format!("TxnOffsetCommit with the fenced epoch: error {}", st.txn_commit(&group, pid2, epoch2 - 1, -1, "")?));
    log.push(format!("TxnOffsetCommit without a member: error {}", st.txn_commit(&group, pid2, epoch2, -1, "")?));
    log.push(format!("OffsetFetch (require_stable) while open: {:?}", st.offset_fetch(&group)?));
    log.push(format!("EndTxn (commit): error {}", st.end(&id, pid2, epoch2, true)?));
    let deadline = Instant::now() + Duration::from_secs(30);
    while st.offset_fetch(&group)?.0 != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    log.push(format!("OffsetFetch (require_stable) after the commit: {:?}", st.offset_fetch(&group)?));
    let deadline = Instant::now() + Duration::from_secs(30);
    let describe = DescribeTransactionsRequest::default().with_transactional_ids(vec![tid(&id)]);
    let state = loop {
        let r = st.c.send(&describe, v.describe)?;
        let t = r.transaction_states.first().context("no state")?.clone();
        if t.transaction_state.as_str() == "CompleteCommit" || Instant::now() > deadline {
            break t;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    log.push(format!(
        "DescribeTransactions: error {} state {} epoch {} timeout {} partitions {}",
        state.error_code,
        state.transaction_state.as_str(),
        state.producer_epoch,
        state.transaction_timeout_ms,
        state.topics.len()
    ));

    if v.tv2 {
        steps_v2(&mut st, &mut log)?;
    }
    Ok(log)
}

/// Step 6: transactions v2, on a transactional id of its own.
fn steps_v2(st: &mut Steps<'_>, log: &mut Vec<String>) -> Result<()> {
    let features = st.c.api_versions()?;
    let finalized: Vec<String> = features
        .finalized_features
        .iter()
        .map(|f| format!("{}={}", f.name.as_str(), f.max_version_level))
        .filter(|f| f.starts_with("transaction.version"))
        .collect();
    log.push(format!("ApiVersions: finalized {finalized:?}"));
    let id = unique_topic("txn-v2");
    st.id = id.clone();
    let topic = st.topic;
    let (code, pid, e0) = st.init(&id, 60_000)?;
    log.push(format!("v2 InitProducerId: error {code} epoch {e0}"));
    let (code, _) = st.produce_at(12, 1, txn_batch(pid, e0, 0, "v2-first")?)?;
    log.push(format!("v2 Produce v12 with no AddPartitionsToTxn: error {code}"));
    let describe = DescribeTransactionsRequest::default().with_transactional_ids(vec![tid(&id)]);
    let r = st.c.send(&describe, st.v.describe)?;
    let t = r.transaction_states.first().context("no state")?;
    let parts: Vec<String> = t
        .topics
        .iter()
        .flat_map(|x| x.partitions.iter().map(move |p| format!("{}-{p}", if x.topic.as_str() == topic { "topic" } else { "other" })))
        .collect();
    log.push(format!(
        "v2 DescribeTransactions: state {} epoch {} partitions {parts:?}",
        t.transaction_state.as_str(),
        t.producer_epoch - e0
    ));
    let (code, pid1, e1) = st.end_answer(&id, pid, e0, true)?;
    log.push(format!("v2 EndTxn v5 (commit): error {code} epoch +{} same producer id {}", e1 - e0, pid1 == pid));
    let (code, _, again) = st.end_answer(&id, pid, e0, true)?;
    log.push(format!("v2 EndTxn v5 (commit) retried with the epoch before the bump: error {code} epoch +{}", again - e0));
    let (code, _, _) = st.end_answer(&id, pid, e1, true)?;
    log.push(format!("v2 EndTxn v5 (commit) at the new epoch, nothing open: error {code}"));
    let (code, _) = st.produce_at(12, 1, txn_batch(pid, e1, 0, "v2-second")?)?;
    log.push(format!("v2 the next transaction's batch at the new epoch: error {code}"));
    let (code, _) = st.produce_at(12, 1, txn_batch(pid, e0, 1, "v2-zombie")?)?;
    log.push(format!("v2 a batch at the old epoch: error {code}"));
    let (code, _) = st.produce_at(12, 0, txn_batch(pid, e1, 0, "v2-second-p0")?)?;
    log.push(format!("v2 a second partition at the new epoch: error {code}"));
    let (code, _, e2) = st.end_answer(&id, pid, e1, false)?;
    log.push(format!("v2 EndTxn v5 (abort): error {code} epoch +{}", e2 - e0));
    let deadline = Instant::now() + Duration::from_secs(30);
    while st.fetch(1, pid)?.contains("aborted []") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    log.push(format!("v2 read_committed fetch after the abort: {}", st.fetch(1, pid)?));
    let group = unique_topic("txn-v2-group");
    log.push(format!("v2 TxnOffsetCommit v5 with no AddOffsetsToTxn: error {}", st.txn_commit_at(5, &group, pid, e2, -1, "")?));
    log.push(format!("v2 OffsetFetch (require_stable) while open: {:?}", st.offset_fetch(&group)?));
    let (code, _, e3) = st.end_answer(&id, pid, e2, true)?;
    log.push(format!("v2 EndTxn v5 (commit): error {code} epoch +{}", e3 - e0));
    let deadline = Instant::now() + Duration::from_secs(30);
    while st.offset_fetch(&group)?.0 != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    log.push(format!("v2 OffsetFetch (require_stable) after the commit: {:?}", st.offset_fetch(&group)?));

    // A transaction left open past its timeout (1 s): the coordinator aborts it
    // under a bumped epoch (checked every 10 s on both); then what its producer is told.
    let id = unique_topic("txn-v2-timeout");
    st.id = id.clone();
    let (code, pid, e0) = st.init(&id, 1_000)?;
    log.push(format!("v2 InitProducerId, timeout 1 s: error {code} epoch {e0}"));
    let (code, _) = st.produce_at(12, 0, txn_batch(pid, e0, 0, "v2-timed-out")?)?;
    log.push(format!("v2 a batch of the transaction left open: error {code}"));
    let describe = DescribeTransactionsRequest::default().with_transactional_ids(vec![tid(&id)]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let (state, epoch) = loop {
        let r = st.c.send(&describe, st.v.describe)?;
        let t = r.transaction_states.first().context("no state")?;
        if t.transaction_state.as_str() == "CompleteAbort" || Instant::now() > deadline {
            break (t.transaction_state.to_string(), t.producer_epoch);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    log.push(format!("v2 after its timeout: state {state} epoch +{}", epoch - e0));
    let (code, _, e) = st.end_answer(&id, pid, e0, true)?;
    log.push(format!("v2 EndTxn v5 (commit) of the timed-out transaction: error {code} epoch {e}"));
    let (code, _, e) = st.end_answer(&id, pid, e0, false)?;
    log.push(format!("v2 EndTxn v5 (abort) of the timed-out transaction: error {code} epoch {}", if code == 0 { e - e0 } else { e }));
    let (code, _) = st.produce_at(12, 0, txn_batch(pid, e0, 1, "v2-after-timeout")?)?;
    log.push(format!("v2 a batch at the timed-out epoch: error {code}"));

    // ListTransactions v2 (KIP-1152): ids by a regular expression.
    let prefix = id.rsplit_once('-').map_or(id.as_str(), |(p, _)| p).to_string();
    for (what, pattern) in [
        ("the id", id.clone()),
        ("its prefix alone", prefix.clone()),
        ("its prefix and .*", format!("{prefix}-.*")),
        ("an invalid one", "(".to_string()),
    ] {
        let req = ListTransactionsRequest::default().with_transactional_id_pattern(Some(s(&pattern)));
        let r = st.c.send(&req, 2)?;
        let listed = r.transaction_states.iter().filter(|t| t.transactional_id.as_str() == id).count();
        log.push(format!("ListTransactions v2, {what} as the pattern: error {} lists the id {listed} time(s)", r.error_code));
    }
    Ok(())
}

/// Runs the steps on both brokers at the highest and the lowest common versions;
/// prints both step lists and returns how many steps differ.
pub(super) fn compare(pair: &super::Pair, kafka: SocketAddr, karst: SocketAddr) -> Result<usize> {
    let mut differing = 0;
    for highest in [true, false] {
        let v = versions(pair, highest)?;
        println!("\na transaction and its bad inputs, {} versions: {v:?}", if highest { "highest" } else { "lowest" });
        let topic = unique_topic("txn-diff");
        let a = steps(kafka, v, &topic).context("the transaction steps on Kafka")?;
        let b = steps(karst, v, &topic).context("the transaction steps on Karst")?;
        if a.is_empty() {
            bail!("no steps ran");
        }
        differing += super::print_steps(&a, &b);
    }
    Ok(differing)
}
