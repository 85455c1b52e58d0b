//! What the metrics read out of responses and record batches, without decoding
//! records: error codes from response structs, record counts from batch headers.

use kafka_protocol::messages::ResponseKind;

/// Offset of `recordsCount` (i32) in a v2 record batch header.
const RECORDS_COUNT_AT: usize = 57;
/// Offset of `batchLength` (i32), which counts the bytes after it.
const LENGTH_AT: usize = 8;
const LENGTH_END: usize = 12;
/// A v2 batch header's length; a batch is at least this long.
const HEADER_LEN: usize = 61;

/// Records in a run of whole v2 record batches, from their headers; a trailing
/// partial batch and negative counts count nothing.
pub(super) fn record_count(mut batches: &[u8]) -> u64 {
    let mut total = 0u64;
    while batches.len() >= HEADER_LEN {
        let len = i32::from_be_bytes([batches[LENGTH_AT], batches[LENGTH_AT + 1], batches[LENGTH_AT + 2], batches[LENGTH_AT + 3]]);
        let Some(size) = usize::try_from(len).ok().and_then(|l| l.checked_add(LENGTH_END)) else { break };
        if size > batches.len() || size < HEADER_LEN {
            break;
        }
        let c = &batches[RECORDS_COUNT_AT..RECORDS_COUNT_AT + 4];
        total += u64::try_from(i32::from_be_bytes([c[0], c[1], c[2], c[3]])).unwrap_or(0);
        batches = &batches[size..];
    }
    total
}

/// Calls `f` with every non-zero error code of a response, at request and
/// partition level, for the APIs clients use most; others are not inspected.
pub(super) fn for_each_error(r: &ResponseKind, mut f: impl FnMut(i16)) {
    let mut e = |code: i16| {
        if code != 0 {
            f(code)
        }
    };
    match r {
        ResponseKind::Produce(r) => r.responses.iter().flat_map(|t| &t.partition_responses).for_each(|p| e(p.error_code)),
        ResponseKind::Fetch(r) => {
            e(r.error_code);
            r.responses.iter().flat_map(|t| &t.partitions).for_each(|p| e(p.error_code));
        }
        ResponseKind::Metadata(r) => {
            for t in &r.topics {
                e(t.error_code);
                t.partitions.iter().for_each(|p| e(p.error_code));
            }
        }
        ResponseKind::ListOffsets(r) => r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| e(p.error_code)),
        ResponseKind::OffsetCommit(r) => r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| e(p.error_code)),
        ResponseKind::OffsetFetch(r) => {
            e(r.error_code);
            r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| e(p.error_code));
            for g in &r.groups {
                e(g.error_code);
                g.topics.iter().flat_map(|t| &t.partitions).for_each(|p| e(p.error_code));
            }
        }
        ResponseKind::FindCoordinator(r) => {
            e(r.error_code);
            r.coordinators.iter().for_each(|c| e(c.error_code));
        }
        ResponseKind::JoinGroup(r) => e(r.error_code),
        ResponseKind::SyncGroup(r) => e(r.error_code),
        ResponseKind::Heartbeat(r) => e(r.error_code),
        ResponseKind::LeaveGroup(r) => e(r.error_code),
        ResponseKind::ApiVersions(r) => e(r.error_code),
        ResponseKind::InitProducerId(r) => e(r.error_code),
        ResponseKind::CreateTopics(r) => r.topics.iter().for_each(|t| e(t.error_code)),
        ResponseKind::DeleteTopics(r) => r.responses.iter().for_each(|t| e(t.error_code)),
        ResponseKind::OffsetForLeaderEpoch(r) => r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| e(p.error_code)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(records: i32, body: usize) -> Vec<u8> {
        let mut b = vec![0u8; 61 + body];
        let len = i32::try_from(b.len() - 12).expect("small");
        b[8..12].copy_from_slice(&len.to_be_bytes());
        b[57..61].copy_from_slice(&records.to_be_bytes());
        b
    }

    #[test]
    fn counts_records_of_whole_batches_only() {
        let mut run = batch(3, 20);
        run.extend(batch(5, 0));
        assert_eq!(record_count(&run), 8);
        let partial = batch(7, 30);
        run.extend(&partial[..40]);
        assert_eq!(record_count(&run), 8, "a cut batch is not counted");
        assert_eq!(record_count(&[]), 0);
        let mut hostile = batch(-4, 0);
        hostile.extend(batch(2, 1));
        assert_eq!(record_count(&hostile), 2);
        let mut bad_len = batch(9, 0);
        bad_len[8..12].copy_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(record_count(&bad_len), 0);
    }

    #[test]
    fn walks_partition_errors() {
        use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
        use kafka_protocol::messages::ProduceResponse;
        let r = ProduceResponse::default().with_responses(vec![TopicProduceResponse::default().with_partition_responses(vec![
            PartitionProduceResponse::default().with_error_code(6),
            PartitionProduceResponse::default(),
            PartitionProduceResponse::default().with_error_code(10),
        ])]);
        let mut seen = Vec::new();
        for_each_error(&ResponseKind::Produce(r), |c| seen.push(c));
        assert_eq!(seen, vec![6, 10]);
    }
}
