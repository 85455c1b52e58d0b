//! KIP-890 verification from a partition leader or group coordinator whose
//! transaction coordinator is another broker: AddPartitionsToTxn v4 with
//! `verify_only`, over the inter-broker listener.

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
    match b.txns.coordinator_epoch(b, id) {
        Ok(_) => {
            let codes = b.txns.verify_partitions(id, pid, epoch, &[(topic.to_string(), partition)])?;
            return match codes.first() {
                Some(&ec::NONE) => Ok(()),
                Some(&code) => Err(code),
                None => Err(ec::UNKNOWN_SERVER_ERROR),
            };
        }
        Err(ec::NOT_COORDINATOR) => {}
        Err(_) => return Err(ec::COORDINATOR_NOT_AVAILABLE),
    }
    let image = b.metadata.image();
    let leader = image.cluster.partition(TXN_TOPIC, b.txns.partition_for(id)).map_or(-1, |s| s.leader);
    let addr = crate::peer::inter_broker_addr(b, &image, leader).ok_or(ec::COORDINATOR_NOT_AVAILABLE)?;
    let txn = AddPartitionsToTxnTransaction::default()
        .with_transactional_id(TransactionalId(StrBytes::from_string(id.to_string())))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_verify_only(true)
        .with_topics(vec![AddPartitionsToTxnTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![partition])]);
    let req = AddPartitionsToTxnRequest::default().with_transactions(vec![txn]);
    let answer = async {
        let mut conn = Conn::connect(&addr, format!("karst-verify-{}", b.node_id)).await?;
        match conn.call(ApiKey::AddPartitionsToTxn, VERIFY_VERSION, RequestKind::AddPartitionsToTxn(req)).await? {
            ResponseKind::AddPartitionsToTxn(r) => Ok(r),
            _ => Err("unexpected response".to_string()),
        }
    };
    let resp = answer.await.map_err(|why| {
        debug!(transactional_id = id, leader, "verifying with the transaction coordinator failed: {why}");
        ec::COORDINATOR_NOT_AVAILABLE
    })?;
    if resp.error_code != ec::NONE {
        return Err(resp.error_code);
    }
    let code = resp
        .results_by_transaction
        .iter()
        .flat_map(|t| t.topic_results.iter())
        .flat_map(|t| t.results_by_partition.iter())
        .find(|p| p.partition_index == partition)
        .map_or(ec::UNKNOWN_SERVER_ERROR, |p| p.partition_error_code);
    if code != ec::NONE {
        debug!(transactional_id = id, pid, epoch, topic, partition, leader, code, "the transaction coordinator refused the verification");
    }
    match code {
        ec::NONE => Ok(()),
        ec::NOT_COORDINATOR | ec::COORDINATOR_LOAD_IN_PROGRESS => Err(ec::COORDINATOR_NOT_AVAILABLE),
        c => Err(c),
    }
}
