//! KIP-848 with the Java client (Kafka 4.4's console consumer with
//! `group.protocol=consumer`) and Kafka's `kafka-consumer-groups`, against Karst and
//! the same steps against Apache Kafka 4.4, which must agree.
//!
//! Skipped, saying why, where no Java or no jars can be had.

use std::io::Write;
use std::time::Duration;

use anyhow::{bail, ensure, Result};
use karst_tests::clients::show_output;
use karst_tests::java::{java_command, run_kafka_tool};
use karst_tests::kafka::same_steps_on_kafka;
use karst_tests::{run_command, unique_topic, Broker};

const TIMEOUT: Duration = Duration::from_secs(120);
const TOPICS: &str = "org.apache.kafka.tools.TopicCommand";
const GROUPS: &str = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand";
const CONSOLE_PRODUCER: &str = "org.apache.kafka.tools.ConsoleProducer";
const CONSOLE_CONSUMER: &str = "org.apache.kafka.tools.consumer.ConsoleConsumer";

fn tool(main: &str, args: &[&str]) -> Result<String> {
    let out = run_kafka_tool(main, args, TIMEOUT)?;
    if !out.status.success() {
        bail!("{main} {} failed\n{}", args.join(" "), show_output(&out));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn produce(bootstrap: &str, topic: &str, lines: std::ops::Range<usize>) -> Result<()> {
    let mut input = tempfile::NamedTempFile::new()?;
    for i in lines {
        writeln!(input, "line-{i}")?;
    }
    let mut cmd = java_command(CONSOLE_PRODUCER)?;
    cmd.args(["--bootstrap-server", bootstrap, "--topic", topic, "--producer-property", "acks=all"]).stdin(input.reopen()?);
    let out = run_command(&mut cmd, TIMEOUT)?;
    ensure!(out.status.success(), "console producer failed\n{}", show_output(&out));
    Ok(())
}

/// The console consumer in `group` with `protocol`, until it has `n` records; the
/// lines it printed, sorted.
fn consume(bootstrap: &str, topic: &str, group: &str, protocol: &str, n: usize) -> Result<Vec<String>> {
    let protocol = format!("group.protocol={protocol}");
    let n_text = n.to_string();
    let out = tool(
        CONSOLE_CONSUMER,
        &[
            "--bootstrap-server",
            bootstrap,
            "--topic",
            topic,
            "--group",
            group,
            "--from-beginning",
            "--max-messages",
            &n_text,
            "--timeout-ms",
            "60000",
            "--consumer-property",
            &protocol,
        ],
    )?;
    let mut lines: Vec<String> = out.lines().filter(|l| l.starts_with("line-")).map(str::to_string).collect();
    lines.sort();
    Ok(lines)
}

fn lines(range: std::ops::Range<usize>) -> Vec<String> {
    let mut v: Vec<String> = range.map(|i| format!("line-{i}")).collect();
    v.sort();
    v
}

/// Every step on the broker at `bootstrap`; what each checked, one line each.
fn steps(bootstrap: &str, name: &str) -> Result<Vec<String>> {
    let mut done = Vec::new();
    let (topic, group, migrated) = (format!("{name}-848"), format!("{name}-848-group"), format!("{name}-848-migrated"));
    let b = bootstrap;
    tool(TOPICS, &["--bootstrap-server", b, "--create", "--topic", &topic, "--partitions", "4", "--replication-factor", "1"])?;
    produce(b, &topic, 0..40)?;

    let got = consume(b, &topic, &group, "consumer", 40)?;
    ensure!(got == lines(0..40), "the consumer-protocol consumer read {got:?}");
    done.push("console consumer, group.protocol=consumer: 40 records".to_string());

    let listed = tool(GROUPS, &["--bootstrap-server", b, "--list", "--type", "consumer"])?;
    ensure!(
        listed.lines().any(|l| l.split_whitespace().next() == Some(group.as_str())),
        "kafka-consumer-groups --list --type consumer:\n{listed}"
    );
    let described = tool(GROUPS, &["--bootstrap-server", b, "--describe", "--group", &group, "--offsets"])?;
    let rows: Vec<&str> = described.lines().filter(|l| l.split_whitespace().nth(1) == Some(topic.as_str())).collect();
    let lag_zero = rows.iter().filter(|l| l.split_whitespace().nth(5) == Some("0")).count();
    ensure!(rows.len() == 4 && lag_zero == 4, "kafka-consumer-groups --describe --offsets:\n{described}");
    done.push("kafka-consumer-groups: --list --type consumer, --describe --offsets (4 partitions, lag 0)".to_string());

    produce(b, &topic, 40..60)?;
    let got = consume(b, &topic, &group, "consumer", 20)?;
    ensure!(got == lines(40..60), "the group resumed at its commits: read {got:?}");
    done.push("a second consumer-protocol consumer resumes at the group's commits: the 20 new records".to_string());

    // A classic group moves to the consumer protocol and keeps its offsets.
    let got = consume(b, &topic, &migrated, "classic", 60)?;
    ensure!(got == lines(0..60), "the classic consumer read {} records", got.len());
    produce(b, &topic, 60..70)?;
    let got = consume(b, &topic, &migrated, "consumer", 10)?;
    ensure!(got == lines(60..70), "after the move to the consumer protocol: read {got:?}");
    let listed = tool(GROUPS, &["--bootstrap-server", b, "--list", "--type", "consumer"])?;
    ensure!(listed.lines().any(|l| l.split_whitespace().next() == Some(migrated.as_str())), "{listed}");
    done.push("a classic group (60 records) taken over by a consumer-protocol consumer: it reads only the 10 new ones".to_string());

    let deleted = tool(GROUPS, &["--bootstrap-server", b, "--delete", "--group", &group])?;
    ensure!(deleted.contains("successful"), "kafka-consumer-groups --delete:\n{deleted}");
    done.push("kafka-consumer-groups --delete of the empty consumer group".to_string());
    Ok(done)
}

#[test]
fn the_java_consumer_speaks_kip_848_to_karst_as_to_kafka() -> Result<()> {
    let karst = Broker::start(&["--set", "group.consumer.heartbeat.interval.ms=1000"])?;
    let name = unique_topic("java");
    let kafka = [("group.consumer.min.heartbeat.interval.ms", "1000"), ("group.consumer.heartbeat.interval.ms", "1000")];
    same_steps_on_kafka("the Java consumer", &karst.bootstrap(), &kafka, |b| steps(b, &name))
}
