//! DescribeTopicPartitions, DescribeLogDirs, ElectLeaders and DescribeProducers as
//! Kafka's own clients use them, against Karst:
//! - the Java AdminClient (`tests/java/AdminApis.java`): describeTopics over pages of
//!   DescribeTopicPartitions, describeLogDirs, electLeaders, describeProducers;
//! - Kafka's command-line tools built on them: `kafka-log-dirs`, `kafka-leader-election`,
//!   `kafka-transactions describe-producers`, `kafka-topics --describe`.
//!
//! Skipped, saying why, where no Java or no jars can be had.

use std::time::Duration;

use anyhow::{bail, ensure, Result};
use kafka_protocol::messages::ApiKey;
use karst_tests::java::{run_java_program, run_kafka_tool};
use karst_tests::raw::{record_batch, RawClient};
use karst_tests::{show_output, unique_topic, Broker, KafkaUnavailable};

const TIMEOUT: Duration = Duration::from_secs(180);

/// `Ok(None)` (after printing why) where Java or Kafka's jars are missing.
fn or_skip<T>(r: Result<T>) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) => match KafkaUnavailable::of(&e) {
            Some(why) => {
                println!("skipped: {why}");
                Ok(None)
            }
            None => Err(e),
        },
    }
}

#[test]
fn java_admin_client_describes_topics_log_dirs_producers_and_elects_leaders() -> Result<()> {
    let mut broker = Broker::start(&[])?;
    let Some(out) = or_skip(run_java_program("AdminApis.java", &[&broker.bootstrap()], TIMEOUT))? else { return Ok(()) };
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    ensure!(stdout.trim_end().ends_with("OK"), "no OK at the end\n{}", show_output(&out));
    broker.check_running()
}

/// A tool that must succeed; its stdout. `None`: skipped.
fn tool(main: &str, args: &[&str]) -> Result<Option<String>> {
    let Some(out) = or_skip(run_kafka_tool(main, args, TIMEOUT))? else { return Ok(None) };
    if !out.status.success() {
        bail!("{main} {} failed\n{}", args.join(" "), show_output(&out));
    }
    Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()))
}

#[test]
fn kafkas_admin_tools_describe_log_dirs_and_producers_and_elect_leaders() -> Result<()> {
    let mut broker = Broker::start(&[])?;
    let b = broker.bootstrap();
    let topic = unique_topic("tools-admin");
    let mut c = RawClient::connect(broker.addr())?;
    c.create_topic(&topic, 2, &[])?;
    let version = c.version_for(ApiKey::Produce)?;
    karst_tests::wait_until("a first produce to succeed", Duration::from_secs(30), || {
        c.produce(&topic, 0, record_batch(&[(None, Some(b"x"))], 1_700_000_000_000), version).is_ok_and(|p| p.error_code == 0)
    })?;

    let Some(dirs) = tool("org.apache.kafka.tools.LogDirsCommand", &["--bootstrap-server", &b, "--describe", "--topic-list", &topic])?
    else {
        return Ok(());
    };
    println!("kafka-log-dirs --describe:\n{dirs}");
    // The tool prints a JSON document of brokers, directories and partitions.
    ensure!(dirs.contains(&format!("\"partition\":\"{topic}-0\"")), "partition 0 in kafka-log-dirs:\n{dirs}");
    ensure!(dirs.contains(&format!("\"partition\":\"{topic}-1\"")), "partition 1 in kafka-log-dirs:\n{dirs}");
    ensure!(dirs.contains("\"isFuture\":false"), "kafka-log-dirs:\n{dirs}");

    let Some(elected) = tool(
        "org.apache.kafka.tools.LeaderElectionCommand",
        &["--bootstrap-server", &b, "--election-type", "preferred", "--topic", &topic, "--partition", "0"],
    )?
    else {
        return Ok(());
    };
    println!("kafka-leader-election --election-type preferred:\n{elected}");
    ensure!(elected.contains("Valid replica already elected for partitions"), "kafka-leader-election:\n{elected}");

    let Some(producers) = tool(
        "org.apache.kafka.tools.TransactionsCommand",
        &["--bootstrap-server", &b, "describe-producers", "--topic", &topic, "--partition", "0"],
    )?
    else {
        return Ok(());
    };
    println!("kafka-transactions describe-producers:\n{producers}");
    ensure!(producers.contains("ProducerId"), "kafka-transactions describe-producers prints its table header:\n{producers}");

    let Some(described) = tool("org.apache.kafka.tools.TopicCommand", &["--bootstrap-server", &b, "--describe", "--topic", &topic])? else {
        return Ok(());
    };
    println!("kafka-topics --describe:\n{described}");
    ensure!(described.contains("PartitionCount: 2") && described.matches("Leader: ").count() == 2, "kafka-topics --describe:\n{described}");
    broker.check_running()
}
