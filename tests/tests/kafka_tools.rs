//! Apache Kafka's command-line tools (kafka-tools 4.4, run by main class) against
//! Karst, and the same commands against Apache Kafka 4.4, so a failure is known to be
//! Karst's. Each step checks what the tool printed or did, on both brokers.
//!
//! Skipped, saying why, where no Java or no jars can be had (`scripts/test-all.sh`
//! resolves them first, so it never skips there).

use std::io::Write;
use std::process::Output;
use std::time::Duration;

use anyhow::{bail, ensure, Result};
use karst_tests::clients::show_output;
use karst_tests::java::{java_command, run_kafka_tool};
use karst_tests::kafka::same_steps_on_kafka;
use karst_tests::{run_command, unique_topic, Broker};

const TIMEOUT: Duration = Duration::from_secs(120);

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A tool that must succeed; its stdout.
fn tool(main: &str, args: &[&str]) -> Result<String> {
    let out = run_kafka_tool(main, args, TIMEOUT)?;
    if !out.status.success() {
        bail!("{main} {} failed\n{}", args.join(" "), show_output(&out));
    }
    Ok(stdout(&out))
}

const TOPICS: &str = "org.apache.kafka.tools.TopicCommand";
const CONFIGS: &str = "org.apache.kafka.tools.ConfigCommand";
const GROUPS: &str = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand";
const CONSOLE_PRODUCER: &str = "org.apache.kafka.tools.ConsoleProducer";
const CONSOLE_CONSUMER: &str = "org.apache.kafka.tools.consumer.ConsoleConsumer";
const GET_OFFSETS: &str = "org.apache.kafka.tools.GetOffsetShell";
const DELETE_RECORDS: &str = "org.apache.kafka.tools.DeleteRecordsCommand";
const PERF_TEST: &str = "org.apache.kafka.tools.ProducerPerformance";

/// The console producer, fed `lines` on stdin.
fn console_produce(bootstrap: &str, topic: &str, lines: &[String]) -> Result<()> {
    let mut input = tempfile::NamedTempFile::new()?;
    for l in lines {
        writeln!(input, "{l}")?;
    }
    let mut cmd = java_command(CONSOLE_PRODUCER)?;
    cmd.args(["--bootstrap-server", bootstrap, "--topic", topic, "--producer-property", "acks=all"]).stdin(input.reopen()?);
    let out = run_command(&mut cmd, TIMEOUT)?;
    ensure!(out.status.success(), "console producer failed\n{}", show_output(&out));
    Ok(())
}

/// Every step on the broker at `bootstrap`; returns what it checked, one line each.
fn steps(bootstrap: &str, name: &str) -> Result<Vec<String>> {
    let mut done = Vec::new();
    let topic = format!("{name}-tools");
    let b = bootstrap;

    // kafka-topics
    tool(TOPICS, &["--bootstrap-server", b, "--create", "--topic", &topic, "--partitions", "3", "--replication-factor", "1"])?;
    let listed = karst_tests::wait_for("kafka-topics --list to show the topic", TIMEOUT, || {
        tool(TOPICS, &["--bootstrap-server", b, "--list"]).ok().filter(|o| o.lines().any(|l| l.trim() == topic))
    })?;
    ensure!(listed.lines().any(|l| l.trim() == topic));
    let described = tool(TOPICS, &["--bootstrap-server", b, "--describe", "--topic", &topic])?;
    ensure!(described.contains("PartitionCount: 3"), "kafka-topics --describe:\n{described}");
    ensure!(described.matches("Leader: ").count() == 3, "kafka-topics --describe lists 3 partitions with leaders:\n{described}");
    tool(TOPICS, &["--bootstrap-server", b, "--alter", "--topic", &topic, "--partitions", "4"])?;
    karst_tests::wait_for("4 partitions in kafka-topics --describe", TIMEOUT, || {
        tool(TOPICS, &["--bootstrap-server", b, "--describe", "--topic", &topic]).ok().filter(|o| o.contains("PartitionCount: 4"))
    })?;
    done.push("kafka-topics: --create, --list, --describe, --alter --partitions".to_string());

    // kafka-configs
    tool(
        CONFIGS,
        &["--bootstrap-server", b, "--alter", "--entity-type", "topics", "--entity-name", &topic, "--add-config", "retention.ms=7200000"],
    )?;
    let configs = tool(CONFIGS, &["--bootstrap-server", b, "--describe", "--entity-type", "topics", "--entity-name", &topic])?;
    ensure!(configs.contains("retention.ms=7200000"), "kafka-configs --describe:\n{configs}");
    tool(
        CONFIGS,
        &["--bootstrap-server", b, "--alter", "--entity-type", "topics", "--entity-name", &topic, "--delete-config", "retention.ms"],
    )?;
    let configs = tool(CONFIGS, &["--bootstrap-server", b, "--describe", "--entity-type", "topics", "--entity-name", &topic])?;
    ensure!(!configs.contains("retention.ms=7200000"), "kafka-configs after --delete-config:\n{configs}");
    done.push("kafka-configs: --alter --add-config, --describe, --delete-config".to_string());
    // Dynamic broker configs: the cluster-wide default (KIP-226).
    let brokers_default = ["--bootstrap-server", b, "--entity-type", "brokers", "--entity-default"];
    tool(CONFIGS, &[&brokers_default[..], &["--alter", "--add-config", "log.retention.ms=604800001"]].concat())?;
    let configs = tool(CONFIGS, &[&brokers_default[..], &["--describe"]].concat())?;
    ensure!(configs.contains("log.retention.ms=604800001"), "kafka-configs --describe --entity-default:\n{configs}");
    tool(CONFIGS, &[&brokers_default[..], &["--alter", "--delete-config", "log.retention.ms"]].concat())?;
    let configs = tool(CONFIGS, &[&brokers_default[..], &["--describe"]].concat())?;
    ensure!(!configs.contains("log.retention.ms="), "kafka-configs --entity-default after --delete-config:\n{configs}");
    done.push("kafka-configs: --entity-type brokers --entity-default --add-config, --describe, --delete-config".to_string());

    // console producer and consumer
    let lines: Vec<String> = (0..40).map(|i| format!("line-{i}")).collect();
    console_produce(b, &topic, &lines)?;
    let group = format!("{name}-console");
    let consumed = tool(
        CONSOLE_CONSUMER,
        &[
            "--bootstrap-server",
            b,
            "--topic",
            &topic,
            "--from-beginning",
            "--max-messages",
            "40",
            "--group",
            &group,
            "--timeout-ms",
            "60000",
        ],
    )?;
    let mut got: Vec<&str> = consumed.lines().filter(|l| l.starts_with("line-")).collect();
    got.sort_unstable();
    let mut want: Vec<&str> = lines.iter().map(String::as_str).collect();
    want.sort_unstable();
    ensure!(got == want, "console consumer read {} of 40 lines:\n{consumed}", got.len());
    done.push("kafka-console-producer (acks=all) and kafka-console-consumer (--group, --from-beginning): 40 lines".to_string());

    // kafka-get-offsets
    let offsets = tool(GET_OFFSETS, &["--bootstrap-server", b, "--topic", &topic])?;
    let total: i64 = offsets.lines().filter_map(|l| l.rsplit(':').next()?.trim().parse::<i64>().ok()).sum();
    ensure!(total == 40 && offsets.lines().count() == 4, "kafka-get-offsets (latest):\n{offsets}");
    done.push("kafka-get-offsets: latest offsets of 4 partitions sum to 40".to_string());

    // kafka-consumer-groups
    let groups = tool(GROUPS, &["--bootstrap-server", b, "--list"])?;
    ensure!(groups.lines().any(|l| l.trim() == group), "kafka-consumer-groups --list:\n{groups}");
    let described = tool(GROUPS, &["--bootstrap-server", b, "--describe", "--group", &group])?;
    let lag_zero = described.lines().filter(|l| l.contains(&topic)).count();
    ensure!(lag_zero >= 1, "kafka-consumer-groups --describe:\n{described}");
    let reset =
        tool(GROUPS, &["--bootstrap-server", b, "--reset-offsets", "--group", &group, "--topic", &topic, "--to-earliest", "--execute"])?;
    ensure!(reset.lines().filter(|l| l.contains(&topic)).all(|l| l.split_whitespace().last() == Some("0")), "--reset-offsets:\n{reset}");
    let described = tool(GROUPS, &["--bootstrap-server", b, "--describe", "--group", &group, "--offsets"])?;
    let lags: i64 = described
        .lines()
        .filter(|l| l.contains(&topic))
        .filter_map(|l| l.split_whitespace().nth(5).and_then(|lag| lag.parse::<i64>().ok()))
        .sum();
    ensure!(lags == 40, "lag after --reset-offsets --to-earliest is {lags}, not 40:\n{described}");
    done.push("kafka-consumer-groups: --list, --describe, --reset-offsets --to-earliest --execute (lag 40)".to_string());

    // kafka-delete-records
    let dir = tempfile::tempdir()?;
    let json = dir.path().join("offsets.json");
    std::fs::write(&json, format!(r#"{{"partitions":[{{"topic":"{topic}","partition":0,"offset":-1}}],"version":1}}"#))?;
    let deleted = tool(DELETE_RECORDS, &["--bootstrap-server", b, "--offset-json-file", &json.display().to_string()])?;
    ensure!(deleted.contains("low_watermark") && !deleted.contains("error"), "kafka-delete-records:\n{deleted}");
    let earliest = tool(GET_OFFSETS, &["--bootstrap-server", b, "--topic", &topic, "--partitions", "0", "--time", "-2"])?;
    let latest = tool(GET_OFFSETS, &["--bootstrap-server", b, "--topic", &topic, "--partitions", "0", "--time", "-1"])?;
    ensure!(earliest.trim() == latest.trim(), "after kafka-delete-records: earliest {earliest:?}, latest {latest:?}");
    done.push("kafka-delete-records: partition 0 emptied up to its end (earliest == latest)".to_string());

    // kafka-producer-perf-test
    let perf = tool(
        PERF_TEST,
        &[
            "--topic",
            &topic,
            "--num-records",
            "20000",
            "--record-size",
            "200",
            "--throughput",
            "-1",
            "--producer-props",
            &format!("bootstrap.servers={b}"),
            "acks=all",
        ],
    )?;
    ensure!(perf.contains("20000 records sent"), "kafka-producer-perf-test:\n{perf}");
    done.push("kafka-producer-perf-test: 20000 records of 200 bytes, acks=all".to_string());

    tool(TOPICS, &["--bootstrap-server", b, "--delete", "--topic", &topic])?;
    karst_tests::wait_for("the topic gone from kafka-topics --list", TIMEOUT, || {
        tool(TOPICS, &["--bootstrap-server", b, "--list"]).ok().filter(|o| !o.lines().any(|l| l.trim() == topic))
    })?;
    done.push("kafka-topics --delete".to_string());
    Ok(done)
}

#[test]
fn kafkas_command_line_tools_work_against_karst_as_against_kafka() -> Result<()> {
    let karst = Broker::start(&["--set", "group.initial.rebalance.delay.ms=0"])?;
    let name = unique_topic("tools");
    same_steps_on_kafka("Kafka's tools", &karst.bootstrap(), &[], |b| steps(b, &name))
}
