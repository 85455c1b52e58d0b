//! The current IBM sarama (v1.61, a Go module in `tests/go/sarama`) against Karst and
//! the same program against Apache Kafka, so a failure is known to be Karst's.
//! Debian's sarama 1.22 keeps its own tests (`sarama.rs`, `groups_sarama.rs`,
//! `legacy_clients.rs`). The modes are described in `tests/go/sarama/main.go`.
//! Skipped, saying why, without a Go toolchain new enough for the module; the Kafka
//! half is skipped where Kafka cannot run.

use anyhow::Result;
use karst_tests::go_scenario_on_both;

/// SyncProducer (idempotent, acks=all, every codec) with sarama's default Version
/// and with the newest it knows; consumers of both versions read everything back.
#[test]
fn sarama_current_sync_producer_and_consumer() -> Result<()> {
    go_scenario_on_both("sarama", "produce-consume")
}

/// ConsumerGroup: two members, 4 partitions to one, then 2 + 2 when the second
/// joins, every record once, commits at the log end; with range (eager) and with
/// cooperative-sticky.
#[test]
fn sarama_current_consumer_group_rebalances() -> Result<()> {
    go_scenario_on_both("sarama", "group")
}

/// ClusterAdmin: topics, configs, partitions, records, groups, offsets.
#[test]
fn sarama_current_cluster_admin() -> Result<()> {
    go_scenario_on_both("sarama", "admin")
}

/// AsyncProducer with headers and set timestamps, GetOffset by time, a
/// PartitionConsumer from the middle, an OffsetManager with metadata, and a static
/// member (Consumer.Group.InstanceId) whose successor gets its partitions back.
#[test]
fn sarama_current_offsets_and_static_member() -> Result<()> {
    go_scenario_on_both("sarama", "offsets")
}
