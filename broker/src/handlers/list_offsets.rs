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
/// The record with the largest timestamp (KIP-734, v7+).
const MAX_TIMESTAMP: i64 = -3;
/// The start of the local log (KIP-405, v8+): with no tiered storage, the log start.
const EARLIEST_LOCAL: i64 = -4;
/// The last offset in tiered storage (KIP-1005, v9+): with none, no offset.
const LATEST_TIERED: i64 = -5;
/// The first offset not yet uploaded to tiered storage (KIP-1023, v11+): with none,
/// no offset, as Kafka answers for a topic without remote storage.
const EARLIEST_PENDING_UPLOAD: i64 = -6;

/// The first version that knows a special timestamp, as Kafka's ReplicaManager
/// tabulates them; None for a negative timestamp no version knows.
fn min_version(timestamp: i64) -> Option<i16> {
    match timestamp {
        LATEST | EARLIEST => Some(0),
        MAX_TIMESTAMP => Some(7),
        EARLIEST_LOCAL => Some(8),
        LATEST_TIERED => Some(9),
        EARLIEST_PENDING_UPLOAD => Some(11),
        _ => None,
    }
}

/// Offset and timestamp of the first record carrying the log's largest timestamp,
/// below the high watermark; None for an empty log (Kafka: offset -1).
fn offset_of_max_timestamp(p: &Partition) -> Result<Option<(i64, i64)>, i16> {
    let max = p.max_timestamp().map_err(|_| ec::KAFKA_STORAGE_ERROR)?;
    if max < 0 {
        return Ok(None);
    }
    offset_for_time(p, max, p.high_watermark())
}

/// First offset at or after `timestamp`, with that record's timestamp.
///
/// The time index finds the batch; the batch is decoded (decompressed if need
/// be) to find the exact record, as Kafka does. Off the hot path.
fn offset_for_time(p: &Partition, timestamp: i64, visible_end: i64) -> Result<Option<(i64, i64)>, i16> {
    let Some(mut batch) = p.find_batch_by_timestamp(timestamp).map_err(|_| ec::KAFKA_STORAGE_ERROR)? else {
        return Ok(None);
    };
    let hw = visible_end;
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
    // v2+: a read_committed consumer sees up to the last stable offset, not the high watermark.
    let read_committed = version >= 2 && req.isolation_level == 1;
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .into_iter()
                .map(|lp| {
                    let r = ListOffsetsPartitionResponse::default().with_partition_index(lp.partition_index);
                    if !crate::security::authz::allowed(b, crate::security::acl::TOPIC, t.name.as_str(), crate::security::acl::DESCRIBE) {
                        return r.with_error_code(29); // TOPIC_AUTHORIZATION_FAILED
                    }
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
                    let visible_end = if read_committed { p.last_stable_offset() } else { p.high_watermark() };
                    let found = match lp.timestamp {
                        // A special timestamp this version does not know, or none does:
                        // UNSUPPORTED_VERSION, as Kafka answers.
                        ts if ts < 0 && min_version(ts).is_none_or(|min| version < min) => Err(ec::UNSUPPORTED_VERSION),
                        LATEST => Ok(Some((visible_end, -1))),
                        EARLIEST | EARLIEST_LOCAL => Ok(Some((p.log_start_offset(), -1))),
                        MAX_TIMESTAMP => offset_of_max_timestamp(&p),
                        LATEST_TIERED | EARLIEST_PENDING_UPLOAD => Ok(None),
                        ts => offset_for_time(&p, ts, visible_end),
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
