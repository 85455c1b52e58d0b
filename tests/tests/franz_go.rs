//! franz-go (kgo v1.22, kadm v1.20; `tests/go/franz`) against Karst and the same
//! program against Apache Kafka, so a failure is known to be Karst's. The modes are
//! described in `tests/go/franz/main.go`. Skipped, saying why, without a Go toolchain
//! new enough for the module; the Kafka half is skipped where Kafka cannot run.

use anyhow::Result;
use karst_tests::go_scenario_on_both;

/// kgo's default idempotent producer, acks=1 with each codec, a direct consumer, a
/// group member committing and a new member resuming after the commit.
#[test]
fn franz_go_produce_and_consume() -> Result<()> {
    go_scenario_on_both("franz", "produce-consume")
}

/// Two members (cooperative-sticky, kgo's default): 4 partitions to one, then 2 + 2
/// when the second joins, every record once across the group, commits at the log end.
#[test]
fn franz_go_group_of_two_rebalances() -> Result<()> {
    go_scenario_on_both("franz", "group")
}

/// The same two members with KIP-848's consumer protocol (`kgo.ServerSideBalancer`).
#[test]
fn franz_go_consumer_protocol_group_of_two_rebalances() -> Result<()> {
    go_scenario_on_both("franz", "group848")
}

/// kadm: create, list, metadata, describe configs, offsets, groups, delete.
#[test]
fn franz_go_kadm_admin() -> Result<()> {
    go_scenario_on_both("franz", "admin")
}
