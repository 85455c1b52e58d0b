use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
use karst_protocol::error_codes as ec;
use karst_protocol::records::validate_produce;
use karst_storage::StorageError;
use tracing::{debug, warn};

use super::str_bytes;
use crate::broker::{now_ms, Broker};
use crate::group::OFFSETS_TOPIC;
use crate::partition::{Partition, PartitionError};

struct Failure {
    code: i16,
    message: Option<String>,
}

impl Failure {
    fn code(code: i16) -> Failure {
        Failure { code, message: None }
    }
    fn with(code: i16, message: String) -> Failure {
        Failure { code, message: Some(message) }
    }
}

/// A partition index and what its append did.
type PartitionOutcome = (i32, Result<Appended, Failure>);

struct Appended {
    partition: Arc<Partition>,
    base_offset: i64,
    last_offset: i64,
    log_start_offset: i64,
    /// acks=all: the in-sync replicas the answer needs when the batch is committed.
    min_insync: Option<i32>,
}

fn storage_failure(e: PartitionError) -> Failure {
    match e {
        PartitionError::Storage(StorageError::OutOfOrderSequence { .. }) => Failure::with(ec::OUT_OF_ORDER_SEQUENCE_NUMBER, e.to_string()),
        PartitionError::Storage(StorageError::InvalidProducerEpoch { .. }) => Failure::with(ec::INVALID_PRODUCER_EPOCH, e.to_string()),
        PartitionError::Storage(StorageError::Batch(_)) => Failure::with(ec::CORRUPT_MESSAGE, e.to_string()),
        PartitionError::Closed => Failure::code(ec::NOT_LEADER_OR_FOLLOWER),
        other => {
            warn!("append failed: {other}");
            Failure::with(ec::KAFKA_STORAGE_ERROR, other.to_string())
        }
    }
}

fn append(
    b: &Arc<Broker>,
    topic: &str,
    index: i32,
    records: Option<Bytes>,
    transactional: bool,
    now: i64,
    acks_all: bool,
) -> Result<Appended, Failure> {
    if topic == OFFSETS_TOPIC {
        return Err(Failure::with(ec::INVALID_TOPIC_EXCEPTION, format!("{OFFSETS_TOPIC} is internal: clients cannot write to it")));
    }
    b.check_leader(topic, index).map_err(Failure::code)?;
    let partition = b.partitions.get(topic, index).ok_or(Failure::code(ec::UNKNOWN_TOPIC_OR_PARTITION))?;
    let records = records.unwrap_or_default();
    let config = partition.config();
    let max = config.max_message_bytes;
    if acks_all {
        let isr = partition.replica.lock().isr.len().max(1);
        if (isr as i32) < config.min_insync_replicas {
            return Err(Failure::with(
                ec::NOT_ENOUGH_REPLICAS,
                format!("{isr} in-sync replica(s), min.insync.replicas is {}", config.min_insync_replicas),
            ));
        }
    }
    let summary = validate_produce(&records, max).map_err(|e| Failure::with(e.error_code(), e.message()))?;
    if transactional || summary.transactional {
        return Err(Failure::with(ec::INVALID_RECORD, "transactions are not supported by this broker yet".into()));
    }
    // No copy: offsets are assigned as the batches are written to the segment.
    let info = partition.append_on_runtime(&records, now).map_err(storage_failure)?;
    if !info.duplicate {
        crate::metrics::produced(&partition.topic, summary.record_count, records.len());
        b.after_append(&partition);
    }
    Ok(Appended {
        partition,
        base_offset: info.base_offset,
        last_offset: info.last_offset,
        log_start_offset: info.log_start_offset,
        min_insync: acks_all.then_some(config.min_insync_replicas),
    })
}

/// The synchronous half of a Produce: validate and append every partition, in
/// request order, before the next request on the connection is looked at (so an
/// idempotent producer's pipelined batches land in sequence order).
pub(crate) struct InFlight {
    acks: i16,
    version: i16,
    timeout_ms: i32,
    results: Vec<(TopicName, Vec<PartitionOutcome>)>,
}

pub(crate) fn start(b: &Arc<Broker>, req: ProduceRequest, version: i16) -> InFlight {
    let acks = req.acks;
    let now = now_ms();
    let transactional = req.transactional_id.is_some();
    let mut results = Vec::with_capacity(req.topic_data.len());
    for topic in req.topic_data {
        let mut parts = Vec::with_capacity(topic.partition_data.len());
        for pd in topic.partition_data {
            let r = if matches!(acks, -1..=1) {
                append(b, topic.name.as_str(), pd.index, pd.records, transactional, now, acks == -1)
            } else {
                Err(Failure::code(ec::INVALID_REQUIRED_ACKS))
            };
            parts.push((pd.index, r));
        }
        results.push((topic.name, parts));
    }
    InFlight { acks, version, timeout_ms: req.timeout_ms, results }
}

impl InFlight {
    pub(crate) fn wants_response(&self) -> bool {
        self.acks != 0
    }

    /// The asynchronous half: wait until each append is durable (and so visible).
    pub(crate) async fn finish(self) -> ProduceResponse {
        let _waiting = (self.acks == -1).then(crate::metrics::produce_waiting);
        let version = self.version;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(self.timeout_ms.max(0) as u64);
        let mut responses = Vec::with_capacity(self.results.len());
        for (name, parts) in self.results {
            let mut prs = Vec::with_capacity(parts.len());
            for (index, r) in parts {
                let pr = PartitionProduceResponse::default().with_index(index);
                let pr = match r {
                    Ok(a) => {
                        let mut rx = a.partition.subscribe();
                        let durable = tokio::time::timeout_at(deadline, rx.wait_for(|hw| *hw > a.last_offset)).await;
                        // The ISR may have shrunk below min.insync.replicas while this
                        // batch waited: then fewer copies exist than were promised.
                        let isr = a.partition.replica.lock().isr.len().max(1) as i32;
                        match durable {
                            Ok(Ok(_)) if a.min_insync.is_some_and(|m| isr < m) => {
                                pr.with_error_code(ec::NOT_ENOUGH_REPLICAS_AFTER_APPEND).with_base_offset(-1)
                            }
                            Ok(Ok(_)) => {
                                let pr = pr.with_base_offset(a.base_offset);
                                if version >= 5 {
                                    pr.with_log_start_offset(a.log_start_offset)
                                } else {
                                    pr
                                }
                            }
                            _ => {
                                debug!(topic = name.as_str(), index, "produce timed out waiting for fsync");
                                pr.with_error_code(ec::REQUEST_TIMED_OUT).with_base_offset(-1)
                            }
                        }
                    }
                    Err(f) => {
                        let pr = pr.with_error_code(f.code).with_base_offset(-1);
                        if version >= 8 {
                            pr.with_error_message(f.message.map(str_bytes))
                        } else {
                            pr
                        }
                    }
                };
                prs.push(pr);
            }
            responses.push(TopicProduceResponse::default().with_name(name).with_partition_responses(prs));
        }
        ProduceResponse::default().with_responses(responses)
    }
}
