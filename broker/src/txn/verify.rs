//! KIP-890 from a partition leader or group coordinator: verification
//! (AddPartitionsToTxn v4 with `verify_only`) and, for transactions v2, adding the
//! partitions written (v5), with the transaction coordinator, over the
//! inter-broker listener where it is another broker.

use std::sync::Arc;

use kafka_protocol::messages::add_partitions_to_txn_request::{AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, ApiKey, ProducerId, RequestKind, ResponseKind, TopicName, TransactionalId};
use kafka_protocol::protocol::StrBytes;
use karst_protocol::error_codes as ec;
use tracing::debug;

use super::TXN_TOPIC;
use crate::broker::Broker;
use crate::peer::Conn;

/// The version brokers verify with (batched, `verify_only`).
pub(crate) const VERIFY_VERSION: i16 = 4;

/// The version brokers add a transactions v2 producer's partitions with.
pub(crate) const ADD_VERSION: i16 = 5;

/// Ok when producer `pid` at `epoch` has a transaction of `id` open with
/// `topic`-`partition` in it, asking the coordinator wherever it is; else the error
/// a write in that transaction gets. COORDINATOR_NOT_AVAILABLE when the
/// coordinator cannot be asked (the client retries).
pub(crate) async fn verify(b: &Arc<Broker>, id: &str, pid: i64, epoch: i16, topic: &str, partition: i32) -> Result<(), i16> {
    // A write's answer knows no PRODUCER_FENCED: Kafka's verification tells the
    // writer INVALID_PRODUCER_EPOCH.
    ask(b, id, pid, epoch, topic, partition)
        .await
        .map_err(|code| if code == ec::PRODUCER_FENCED { ec::INVALID_PRODUCER_EPOCH } else { code })
}

async fn ask(b: &Arc<Broker>, id: &str, pid: i64, epoch: i16, topic: &str, partition: i32) -> Result<(), i16> {
    let codes = coordinate(b, id, pid, epoch, &[(topic.to_string(), partition)], false).await?;
    match codes.first() {
        Some(&ec::NONE) => Ok(()),
        Some(&code) => Err(code),
        None => Err(ec::UNKNOWN_SERVER_ERROR),
    }
}

/// KIP-890 part 2: adds `partitions` to producer `pid`'s transaction of `id` at
/// `epoch` for a transactions v2 producer (whose writes add their partitions),
/// asking the coordinator wherever it is: each partition's code (the
/// coordinator's, or COORDINATOR_NOT_AVAILABLE when it cannot be asked).
pub(crate) async fn add(b: &Arc<Broker>, id: &str, pid: i64, epoch: i16, partitions: &[(String, i32)]) -> Vec<i16> {
    coordinate(b, id, pid, epoch, partitions, true).await.unwrap_or_else(|code| vec![code; partitions.len()])
}

/// Verifies (or, `add`, adds) `partitions` with the coordinator of `id`: here,
/// or with AddPartitionsToTxn over the inter-broker listener.
async fn coordinate(b: &Arc<Broker>, id: &str, pid: i64, epoch: i16, partitions: &[(String, i32)], add: bool) -> Result<Vec<i16>, i16> {
    match b.txns.coordinator_epoch(b, id) {
        Ok(_) if add => {
            let set = partitions.iter().cloned().collect();
            let code = crate::handlers::txn::add_to_txn(b, id, pid, epoch, set, true).await;
            return Ok(vec![code; partitions.len()]);
        }
        Ok(_) => return b.txns.verify_partitions(id, pid, epoch, partitions),
        Err(ec::NOT_COORDINATOR) => {}
        Err(_) => return Err(ec::COORDINATOR_NOT_AVAILABLE),
    }
    let image = b.metadata.image();
    let leader = image.cluster.partition(TXN_TOPIC, b.txns.partition_for(id)).map_or(-1, |s| s.leader);
    let addr = crate::peer::inter_broker_addr(b, &image, leader).ok_or(ec::COORDINATOR_NOT_AVAILABLE)?;
    let mut topics: Vec<AddPartitionsToTxnTopic> = Vec::new();
    for (t, p) in partitions {
        match topics.last_mut() {
            Some(x) if x.name.as_str() == t => x.partitions.push(*p),
            _ => topics
                .push(AddPartitionsToTxnTopic::default().with_name(TopicName(StrBytes::from_string(t.clone()))).with_partitions(vec![*p])),
        }
    }
    let txn = AddPartitionsToTxnTransaction::default()
        .with_transactional_id(TransactionalId(StrBytes::from_string(id.to_string())))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_verify_only(!add)
        .with_topics(topics);
    let req = AddPartitionsToTxnRequest::default().with_transactions(vec![txn]);
    let version = if add { ADD_VERSION } else { VERIFY_VERSION };
    let answer = async {
        let mut conn = Conn::connect(b, &addr, format!("karst-verify-{}", b.node_id)).await?;
        match conn.call(ApiKey::AddPartitionsToTxn, version, RequestKind::AddPartitionsToTxn(req)).await? {
            ResponseKind::AddPartitionsToTxn(r) => Ok(r),
            _ => Err("unexpected response".to_string()),
        }
    };
    let resp = answer.await.map_err(|why| {
        debug!(transactional_id = id, leader, "asking the transaction coordinator failed: {why}");
        ec::COORDINATOR_NOT_AVAILABLE
    })?;
    if resp.error_code != ec::NONE {
        return Err(resp.error_code);
    }
    let codes = partitions
        .iter()
        .map(|(t, p)| {
            let code = resp
                .results_by_transaction
                .iter()
                .flat_map(|x| x.topic_results.iter())
                .filter(|x| x.name.as_str() == t)
                .flat_map(|x| x.results_by_partition.iter())
                .find(|x| x.partition_index == *p)
                .map_or(ec::UNKNOWN_SERVER_ERROR, |x| x.partition_error_code);
            if code != ec::NONE {
                debug!(transactional_id = id, pid, epoch, topic = %t, partition = p, leader, code, add, "the transaction coordinator refused");
            }
            match code {
                ec::NOT_COORDINATOR | ec::COORDINATOR_LOAD_IN_PROGRESS => ec::COORDINATOR_NOT_AVAILABLE,
                c => c,
            }
        })
        .collect();
    Ok(codes)
}
