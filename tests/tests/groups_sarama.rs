//! sarama 1.22 `ConsumerGroup` (`sarama/group`, Debian's sarama built offline): three
//! member processes in one group share a 6-partition topic; every message is consumed
//! exactly once, each member owns two partitions, the offsets are committed.

use anyhow::Result;
use karst_tests::group::{balanced_group_scenario, Member};
use karst_tests::{go_binary, Broker};

fn three_sarama_members(extra: &[&str]) -> Result<()> {
    go_binary("group")?; // built before the group's clock starts
                         // The default initial delay, stated: all three members join within it.
    let mut broker = Broker::start(&["--set", "group.initial.rebalance.delay.ms=3000"])?;
    let bootstrap = broker.bootstrap();
    balanced_group_scenario(broker.addr(), 3, 6, 200, "range", |name, topic, group| {
        let mut args: Vec<String> = ["-bootstrap", &bootstrap, "-topic", topic, "-group", group].iter().map(|s| s.to_string()).collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        Member::sarama(name, &args)
    })?;
    broker.check_running()
}

/// sarama's defaults: with `Consumer.Offsets.Retention` = 0 sarama 1.22 commits with
/// OffsetCommit v1, whatever `config.Version` says.
#[test]
fn sarama_three_members_split_six_partitions_and_commit() -> Result<()> {
    three_sarama_members(&[])
}

/// With a retention time set sarama 1.22 commits with OffsetCommit v2.
#[test]
fn sarama_three_members_commit_with_retention_time() -> Result<()> {
    three_sarama_members(&["-retention", "24h"])
}
