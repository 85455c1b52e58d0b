//! segmentio/kafka-go (v0.4.51, a Go module in `tests/go/kafkago`) against Karst and
//! the same program against Apache Kafka, so a failure is known to be Karst's. The
//! modes are described in `tests/go/kafkago/main.go`. Skipped, saying why, without a
//! Go toolchain new enough for the module; the Kafka half is skipped where Kafka
//! cannot run.

use anyhow::Result;
use karst_tests::go_scenario_on_both;

/// Writer (acks=all, keyed, every codec) and a Reader per partition.
#[test]
fn kafka_go_writer_and_reader() -> Result<()> {
    go_scenario_on_both("kafkago", "produce-consume")
}

/// Two Readers with one GroupID: 4 partitions to one, 2 + 2 when the second joins
/// (DescribeGroups), every record once, commits at the log end.
#[test]
fn kafka_go_group_readers_rebalance() -> Result<()> {
    go_scenario_on_both("kafkago", "group")
}

/// Client: CreateTopics, Metadata, DescribeConfigs, ListOffsets, ListGroups,
/// DescribeGroups, OffsetFetch, IncrementalAlterConfigs, CreatePartitions,
/// OffsetCommit, OffsetDelete, DeleteGroups, DeleteTopics.
#[test]
fn kafka_go_client_admin() -> Result<()> {
    go_scenario_on_both("kafkago", "admin")
}

/// The low-level Conn (kafka-go's own API versions): writes with headers and times,
/// offsets by time, Seek, ReadBatch across a plain and a snappy batch; a Reader set at
/// a time.
#[test]
fn kafka_go_conn_and_reader_at_a_time() -> Result<()> {
    go_scenario_on_both("kafkago", "conn")
}
