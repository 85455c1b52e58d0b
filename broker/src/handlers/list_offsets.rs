use std::sync::Arc;

use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::records::RecordBatchDecoder;
use karst_protocol::error_codes as ec;

use super::fetch::epoch_error;
use crate::broker::Broker;
use crate::partition::Partition;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;

/// First offset at or after `timestamp`, with that record's timestamp.
///
/// The time index finds the batch; the batch is decoded (decompressed if need
/// be) to find the exact record, as Kafka does. Off the hot path.
fn offset_for_time(p: &Partition, timestamp: i64) -> Result<Option<(i64, i64)>, i16> {
    let Some(mut batch) = p.find_batch_by_timestamp(timestamp).map_err(|_| ec::KAFKA_STORAGE_ERROR)? else {
        return Ok(None);
    };
    let hw = p.high_watermark();
    let sets = RecordBatchDecoder::decode_all(&mut batch).map_err(|_| ec::CORRUPT_MESSAGE)?;
    for set in sets {
        for r in set.records {
            if r.offset >= hw {
                return Ok(None);
            }
            if r.timestamp >= timestamp && r.offset >= p.log_start_offset() {
                return Ok(Some((r.offset, r.timestamp)));
            }
        }
    }
    Ok(None)
}

pub(crate) fn handle(b: &Arc<Broker>, req: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .into_iter()
                .map(|lp| {
                    let r = ListOffsetsPartitionResponse::default().with_partition_index(lp.partition_index);
                    // Only the leader knows the high watermark; a follower's may lag.
                    let p = match b
                        .check_leader(t.name.as_str(), lp.partition_index)
                        .and_then(|()| b.partitions.get(t.name.as_str(), lp.partition_index).ok_or(ec::UNKNOWN_TOPIC_OR_PARTITION))
                    {
                        Ok(p) => p,
                        Err(code) => return r.with_error_code(code),
                    };
                    if let Some(code) = epoch_error(&p, lp.current_leader_epoch) {
                        return r.with_error_code(code);
                    }
                    let leader_epoch = if version >= 4 { p.replica.lock().leader_epoch } else { -1 };
                    let found = match lp.timestamp {
                        LATEST => Ok(Some((p.high_watermark(), -1))),
                        EARLIEST => Ok(Some((p.log_start_offset(), -1))),
                        ts if ts >= 0 => offset_for_time(&p, ts),
                        // v0 knew only -1 and -2 (Kafka: UNSUPPORTED_VERSION).
                        _ if version == 0 => Err(ec::UNSUPPORTED_VERSION),
                        _ => Err(ec::INVALID_REQUEST),
                    };
                    match found {
                        Ok(Some((offset, ts))) => r.with_offset(offset).with_timestamp(ts).with_leader_epoch(leader_epoch),
                        // Kafka answers "no such record" with offset -1, no error.
                        Ok(None) => r.with_offset(-1).with_timestamp(-1),
                        Err(code) => r.with_error_code(code),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default().with_name(t.name).with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}
