//! DescribeLogDirs: Karst has one log directory per broker (`log.dirs`), so the answer
//! is one result: that directory, the partitions this broker holds there with their
//! sizes, and (v4) the size and free space of its file system.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use kafka_protocol::messages::describe_log_dirs_response::{DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse};
use karst_protocol::error_codes as ec;
use tracing::warn;

use super::{str_bytes, topic_name};
use crate::broker::Broker;

pub(crate) fn handle(b: &Broker, req: DescribeLogDirsRequest) -> DescribeLogDirsResponse {
    // Null asks for every partition; an empty list for none (the directory alone).
    let wanted: Option<BTreeSet<(String, i32)>> =
        req.topics.map(|ts| ts.into_iter().flat_map(|t| t.partitions.into_iter().map(move |p| (t.topic.to_string(), p))).collect());
    let dir = absolute(&b.config.data_dir);
    let image = b.metadata.image();
    let mut topics: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    let mut offline = false;
    for p in b.partitions.all() {
        // Partitions of a topic this broker hosts only in part are open here too.
        let Some(state) = image.cluster.partition(&p.topic, p.index) else { continue };
        if !state.replicas.contains(&b.node_id) {
            continue;
        }
        if wanted.as_ref().is_some_and(|w| !w.contains(&(p.topic.to_string(), p.index))) {
            continue;
        }
        offline |= p.offline_reason().is_some();
        // Kafka reports lag only for future replicas (AlterReplicaLogDirs moves),
        // which one directory never has: the current log's lag is 0.
        let part = DescribeLogDirsPartition::default()
            .with_partition_index(p.index)
            .with_partition_size(i64::try_from(p.size_bytes()).unwrap_or(i64::MAX))
            .with_offset_lag(0)
            .with_is_future_key(false);
        topics.entry(p.topic.to_string()).or_default().push(part);
    }
    let log_dir = str_bytes(dir.display().to_string());
    let result = if offline {
        // Kafka takes a whole directory offline on a write failure in it; here one
        // partition's failure is the directory's (all of them share the disk).
        DescribeLogDirsResult::default().with_log_dir(log_dir).with_error_code(ec::KAFKA_STORAGE_ERROR)
    } else {
        match space(&dir) {
            Ok((total, usable)) => {
                DescribeLogDirsResult::default().with_log_dir(log_dir).with_total_bytes(total).with_usable_bytes(usable).with_topics(
                    topics
                        .into_iter()
                        .map(|(name, mut parts)| {
                            parts.sort_by_key(|p| p.partition_index);
                            DescribeLogDirsTopic::default().with_name(topic_name(&name)).with_partitions(parts)
                        })
                        .collect(),
                )
            }
            Err(e) => {
                warn!(dir = %dir.display(), "cannot read the file system's size: {e}");
                DescribeLogDirsResult::default().with_log_dir(log_dir).with_error_code(ec::KAFKA_STORAGE_ERROR)
            }
        }
    };
    DescribeLogDirsResponse::default().with_results(vec![result])
}

/// Kafka names the directory by its absolute (not canonical) path.
fn absolute(dir: &Path) -> PathBuf {
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}

/// Total and usable bytes of the file system holding `dir`, as Java's `FileStore`
/// reports them (usable: what an unprivileged writer may still use).
fn space(dir: &Path) -> std::io::Result<(i64, i64)> {
    let s = rustix::fs::statvfs(dir)?;
    let bytes = |blocks: u64| i64::try_from(blocks.saturating_mul(s.f_frsize)).unwrap_or(i64::MAX);
    Ok((bytes(s.f_blocks), bytes(s.f_bavail)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn space_of_a_real_directory_is_plausible() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (total, usable) = super::space(dir.path()).expect("statvfs");
        assert!(total > 0 && (0..=total).contains(&usable), "{total} {usable}");
        assert!(super::space(&dir.path().join("missing")).is_err());
    }
}
