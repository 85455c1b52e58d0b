//! KafkaJS (2.2.4, `tests/node/kafkajs_check.js` with its package-lock.json) against
//! Karst and the same program against Apache Kafka, so a failure is known to be
//! Karst's. The modes are described in that file. Skipped, saying why, without
//! `node` or without `tests/node/node_modules` (`npm ci`, which
//! `scripts/test-all.sh` runs); the Kafka half is skipped where Kafka cannot run.

use anyhow::Result;
use karst_tests::modern::run_scenario;
use karst_tests::{against_karst_and_kafka, node_program};

fn kafkajs(mode: &str) -> Result<()> {
    against_karst_and_kafka(
        &format!("kafkajs-{mode}"),
        || node_program("kafkajs_check.js", "kafkajs"),
        |(node, script), bootstrap, topic| run_scenario(node, &[script.to_string_lossy().as_ref(), mode], bootstrap, topic),
    )
}

/// Idempotent producer, a group member reading in per-key order and committing, a
/// new member resuming after the commit.
#[test]
fn kafkajs_producer_and_consumer() -> Result<()> {
    kafkajs("produce-consume")
}

/// Two consumers in one group: 4 partitions to one, 2 + 2 when the second joins,
/// every record once, commits at the log end.
#[test]
fn kafkajs_group_of_two_rebalances() -> Result<()> {
    kafkajs("group")
}

/// The admin client: topics, configs, offsets, groups, cluster.
#[test]
fn kafkajs_admin() -> Result<()> {
    kafkajs("admin")
}
