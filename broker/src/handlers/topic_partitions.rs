//! DescribeTopicPartitions (KIP-966): Metadata's topic half, paged. Topics are
//! answered in name order, at most `response_partition_limit` partitions in all, and a
//! cursor names where the next page starts — the paging of Kafka's
//! `KRaftMetadataCache.getTopicMetadataForDescribeTopicResponse`, step for step.

use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{BrokerId, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse};
use karst_protocol::error_codes as ec;

use super::metadata::{endpoint, request_listener};
use super::topic_name;
use crate::broker::Broker;
use crate::metadata::{ClusterImage, NO_LEADER};
use crate::topic_name::{invalid_reason, is_internal};

/// Kafka's `max.request.partition.size.limit` default: the most partitions one
/// response holds, whatever the client asks for.
const MAX_PARTITIONS_PER_RESPONSE: i32 = 2000;

/// One topic of a page.
#[derive(Debug, PartialEq, Eq)]
enum Entry {
    /// An existing topic and the partitions of it this page holds.
    Topic { name: String, partitions: std::ops::Range<i32> },
    /// A named topic that does not exist (never when listing all topics).
    Missing(String),
}

/// What one page holds: `names` sorted, each with its partition count if it exists;
/// `start` is the cursor (topic, partition); `limit` at least 1.
fn page(names: &[(String, Option<i32>)], start: Option<(&str, i32)>, limit: i32, all: bool) -> (Vec<Entry>, Option<(String, i32)>) {
    let mut remaining = limit;
    let mut out = Vec::new();
    for (name, count) in names {
        if remaining == 0 {
            // The previous topic filled the page exactly: the next starts here.
            return (out, Some((name.clone(), 0)));
        }
        let Some(count) = *count else {
            if !all {
                out.push(Entry::Missing(name.clone()));
            }
            continue;
        };
        let first = match start {
            Some((topic, partition)) if topic == name => partition,
            _ => 0,
        };
        let upper = count.min(first.saturating_add(remaining));
        out.push(Entry::Topic { name: name.clone(), partitions: first..upper.max(first) });
        if upper < count {
            return (out, Some((name.clone(), upper)));
        }
        remaining -= (upper - first).max(0);
    }
    (out, None)
}

pub(crate) fn handle(b: &Broker, req: DescribeTopicPartitionsRequest) -> DescribeTopicPartitionsResponse {
    let image = b.metadata.image();
    let all = req.topics.is_empty();
    let cursor = req.cursor.as_ref().map(|c| (c.topic_name.to_string(), c.partition_index));
    let from = cursor.as_ref().map_or("", |(t, _)| t.as_str());
    let mut names: Vec<String> = if all {
        image.topics.keys().filter(|n| n.as_str() >= from).cloned().collect()
    } else {
        req.topics.iter().map(|t| t.name.to_string()).filter(|n| n.as_str() >= from).collect()
    };
    names.sort();
    names.dedup();
    let bad_cursor = match &cursor {
        // The cursor's topic must be one of those asked for.
        Some((topic, _)) if !all && names.binary_search(topic).is_err() => true,
        Some((_, partition)) => *partition < 0,
        None => false,
    };
    if bad_cursor {
        // Kafka's INVALID_REQUEST answer: every topic asked for, with the code alone.
        let topics = req
            .topics
            .iter()
            .map(|t| DescribeTopicPartitionsResponseTopic::default().with_name(Some(t.name.clone())).with_error_code(ec::INVALID_REQUEST))
            .collect();
        return DescribeTopicPartitionsResponse::default().with_topics(topics);
    }
    let counts: Vec<(String, Option<i32>)> = names.into_iter().map(|n| (n.clone(), image.topics.get(&n).map(|t| t.partitions))).collect();
    let limit = req.response_partition_limit.clamp(1, MAX_PARTITIONS_PER_RESPONSE);
    let start = cursor.as_ref().map(|(t, p)| (t.as_str(), *p));
    let (entries, next) = page(&counts, start, limit, all);
    let topics = entries
        .into_iter()
        .map(|e| match e {
            Entry::Topic { name, partitions } => describe(&image, &name, partitions),
            Entry::Missing(name) => {
                let code = if invalid_reason(&name).is_some() { ec::INVALID_TOPIC_EXCEPTION } else { ec::UNKNOWN_TOPIC_OR_PARTITION };
                DescribeTopicPartitionsResponseTopic::default()
                    .with_name(Some(topic_name(&name)))
                    .with_error_code(code)
                    .with_is_internal(is_internal(&name))
                    .with_topic_authorized_operations(super::authorized::TOPIC)
            }
        })
        .collect();
    let next_cursor = next.map(|(t, p)| Cursor::default().with_topic_name(topic_name(&t)).with_partition_index(p));
    DescribeTopicPartitionsResponse::default().with_topics(topics).with_next_cursor(next_cursor)
}

fn describe(image: &ClusterImage, name: &str, partitions: std::ops::Range<i32>) -> DescribeTopicPartitionsResponseTopic {
    let listener = request_listener();
    let ids = |v: &[i32]| v.iter().map(|id| BrokerId(*id)).collect::<Vec<_>>();
    // A replica is offline where its broker is fenced, unregistered or has no
    // endpoint on the listener this client uses, as in Kafka.
    let reachable = |id: i32| image.cluster.broker(id).is_some_and(|r| !r.fenced && endpoint(&r.listeners, listener.as_deref()).is_some());
    let parts = partitions
        .filter_map(|p| {
            let state = image.cluster.partition(name, p)?;
            let leader = if state.leader != NO_LEADER && reachable(state.leader) { state.leader } else { NO_LEADER };
            let offline: Vec<i32> = state.replicas.iter().copied().filter(|r| !reachable(*r)).collect();
            Some(
                DescribeTopicPartitionsResponsePartition::default()
                    .with_partition_index(p)
                    .with_leader_id(BrokerId(leader))
                    .with_leader_epoch(state.leader_epoch)
                    .with_replica_nodes(ids(&state.replicas))
                    .with_isr_nodes(ids(&state.isr))
                    // No eligible leader replicas without KIP-966's ELR: empty, not null.
                    .with_eligible_leader_replicas(Some(Vec::new()))
                    .with_last_known_elr(Some(Vec::new()))
                    .with_offline_replicas(ids(&offline)),
            )
        })
        .collect();
    let id = image.topics.get(name).map(|t| t.id).unwrap_or_default();
    DescribeTopicPartitionsResponseTopic::default()
        .with_name(Some(topic_name(name)))
        .with_topic_id(id)
        .with_is_internal(is_internal(name))
        .with_partitions(parts)
        .with_topic_authorized_operations(super::authorized::TOPIC)
}

#[cfg(test)]
mod tests {
    use super::{page, Entry};

    fn topics(list: &[(&str, Option<i32>)]) -> Vec<(String, Option<i32>)> {
        list.iter().map(|(n, c)| (n.to_string(), *c)).collect()
    }

    fn t(name: &str, r: std::ops::Range<i32>) -> Entry {
        Entry::Topic { name: name.into(), partitions: r }
    }

    #[test]
    fn everything_fits() {
        let names = topics(&[("a", Some(2)), ("b", None), ("c", Some(1))]);
        assert_eq!(page(&names, None, 2000, false), (vec![t("a", 0..2), Entry::Missing("b".into()), t("c", 0..1)], None));
        // Listing all topics never reports a missing one.
        assert_eq!(page(&names, None, 2000, true).0.len(), 2);
    }

    #[test]
    fn a_topic_split_by_the_limit_continues_at_its_next_partition() {
        let names = topics(&[("a", Some(5)), ("b", Some(1))]);
        assert_eq!(page(&names, None, 3, true), (vec![t("a", 0..3)], Some(("a".into(), 3))));
        assert_eq!(page(&names, Some(("a", 3)), 3, true), (vec![t("a", 3..5), t("b", 0..1)], None));
    }

    #[test]
    fn an_exactly_full_page_points_at_the_next_topic() {
        let names = topics(&[("a", Some(2)), ("b", Some(1))]);
        assert_eq!(page(&names, None, 2, true), (vec![t("a", 0..2)], Some(("b".into(), 0))));
        // Nothing after it: no cursor.
        assert_eq!(page(&names[..1], None, 2, true), (vec![t("a", 0..2)], None));
        // The next topic is named even when it does not exist.
        let missing = topics(&[("a", Some(2)), ("z", None)]);
        assert_eq!(page(&missing, None, 2, false), (vec![t("a", 0..2)], Some(("z".into(), 0))));
    }

    #[test]
    fn a_cursor_past_the_last_partition_gives_an_empty_topic() {
        let names = topics(&[("a", Some(2)), ("b", Some(1))]);
        assert_eq!(page(&names, Some(("a", 7)), 10, true), (vec![t("a", 7..7), t("b", 0..1)], None));
        assert_eq!(page(&names, Some(("a", i32::MAX)), i32::MAX, true).1, None);
    }
}
