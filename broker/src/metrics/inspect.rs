//! What the metrics read out of responses without decoding records: error codes
//! from response structs (record counts come from `karst_batch::count_records`).

use kafka_protocol::messages::ResponseKind;

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
