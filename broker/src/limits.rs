//! Limits: what one request and one broker may allocate, and the process
//! limits a broker with many partitions needs.

use std::collections::BTreeMap;

use karst_controller::ClusterMetadata;
use karst_protocol::error_codes as ec;
use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

use crate::errors::BrokerError;
use crate::metadata::BrokerId;

/// Kafka's controller refuses a user operation that would write more metadata
/// records than this (`QuorumController.MAX_RECORDS_PER_USER_OP`): a topic is
/// one record, each partition one more, each config override one more.
pub const MAX_RECORDS_PER_USER_OP: usize = 10_000;

/// Kafka's message for that refusal (a POLICY_VIOLATION).
pub const EXCESSIVE_BATCH: &str = "Unable to perform excessively large batch operation.";

/// Metadata records a CreateTopics entry writes in Kafka's controller.
pub fn topic_records(partitions: i32, configs: usize) -> usize {
    1 + usize::try_from(partitions).unwrap_or(0) + configs
}

/// POLICY_VIOLATION when `records` of one request exceed [`MAX_RECORDS_PER_USER_OP`].
pub fn check_records(records: usize) -> Result<(), (i16, String)> {
    if records > MAX_RECORDS_PER_USER_OP {
        return Err((
            ec::POLICY_VIOLATION,
            format!("{EXCESSIVE_BATCH} The request would write {records} metadata records; at most {MAX_RECORDS_PER_USER_OP} are allowed."),
        ));
    }
    Ok(())
}

/// `max.broker.partitions`: refuses new partition replicas `placed` that would
/// make a broker host more than `max` replicas (POLICY_VIOLATION), before
/// anything is committed.
pub fn check_hosted_partitions(cluster: &ClusterMetadata, placed: &[Vec<BrokerId>], max: usize) -> Result<(), BrokerError> {
    let mut adding: BTreeMap<BrokerId, usize> = BTreeMap::new();
    for id in placed.iter().flatten() {
        *adding.entry(*id).or_default() += 1;
    }
    if adding.is_empty() {
        return Ok(());
    }
    let mut hosted: BTreeMap<BrokerId, usize> = BTreeMap::new();
    for p in cluster.topics.values().flat_map(|t| t.partitions.iter()) {
        for id in p.replicas.iter().chain(&p.adding_replicas).filter(|id| adding.contains_key(id)) {
            *hosted.entry(*id).or_default() += 1;
        }
    }
    for (id, add) in adding {
        let now = hosted.get(&id).copied().unwrap_or(0);
        if now.saturating_add(add) > max {
            return Err(BrokerError::Metadata {
                code: ec::POLICY_VIOLATION,
                message: format!("broker {id} hosts {now} partition replicas; {add} more would exceed max.broker.partitions={max}"),
            });
        }
    }
    Ok(())
}

/// Raises the soft open-file limit to the hard one, as Kafka's start scripts
/// advise doing by hand: each partition keeps its active segment open, and the
/// usual soft default of 1,024 would stop a broker at a few hundred partitions.
/// Returns the soft limit in force afterwards (None when unlimited).
pub fn raise_open_file_limit() -> Option<u64> {
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = Rlimit { current: limit.maximum, maximum: limit.maximum };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(error = %e, "could not raise the open-file limit");
            return limit.current;
        }
    }
    getrlimit(Resource::Nofile).current
}

#[cfg(test)]
mod tests {
    #[test]
    fn soft_limit_is_raised_and_reported() {
        use rustix::process::{getrlimit, Resource};
        let before = getrlimit(Resource::Nofile);
        let after = super::raise_open_file_limit();
        let now = getrlimit(Resource::Nofile);
        assert_eq!(after, now.current, "reports the limit in force");
        assert!(now.current.unwrap_or(u64::MAX) >= before.current.unwrap_or(u64::MAX), "never lowered");
        if before.maximum.is_some() {
            assert_eq!(now.current, now.maximum, "a finite hard limit is reached");
        }
    }
}
