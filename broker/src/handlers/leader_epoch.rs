//! OffsetForLeaderEpoch: where a leader epoch ended in this leader's log. Followers
//! ask it before fetching from a new leader (and truncate there); clients ask it
//! after a leader change to detect a log that diverged under them.

use kafka_protocol::messages::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use karst_protocol::error_codes as ec;
use karst_storage::UNDEFINED_EPOCH_END;

use crate::broker::Broker;

pub(crate) fn handle(b: &Broker, req: OffsetForLeaderEpochRequest) -> OffsetForLeaderEpochResponse {
    let consumer = req.replica_id.0 < 0;
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.topic.to_string();
            let partitions = t
                .partitions
                .into_iter()
                .map(|fp| {
                    let answer = EpochEndOffset::default().with_partition(fp.partition);
                    if consumer && !crate::security::authz::allowed(b, crate::security::acl::TOPIC, &name, crate::security::acl::DESCRIBE) {
                        return answer.with_error_code(29).with_leader_epoch(-1).with_end_offset(-1);
                        // TOPIC_AUTHORIZATION_FAILED
                    }
                    let (code, (epoch, end)) = match b
                        .check_leader(&name, fp.partition)
                        .and_then(|()| b.partitions.get(&name, fp.partition).ok_or(ec::UNKNOWN_TOPIC_OR_PARTITION))
                    {
                        Err(code) => (code, UNDEFINED_EPOCH_END),
                        Ok(p) => {
                            let ours = p.replica.lock().leader_epoch;
                            if fp.current_leader_epoch >= 0 && fp.current_leader_epoch < ours {
                                (ec::FENCED_LEADER_EPOCH, UNDEFINED_EPOCH_END)
                            } else if fp.current_leader_epoch > ours {
                                (ec::UNKNOWN_LEADER_EPOCH, UNDEFINED_EPOCH_END)
                            } else {
                                match p.end_offset_for_epoch(fp.leader_epoch) {
                                    Ok(found) => (ec::NONE, found),
                                    Err(_) => (ec::NOT_LEADER_OR_FOLLOWER, UNDEFINED_EPOCH_END),
                                }
                            }
                        }
                    };
                    answer.with_error_code(code).with_leader_epoch(epoch).with_end_offset(end)
                })
                .collect();
            OffsetForLeaderTopicResult::default().with_topic(t.topic).with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
