//! Kafka's cluster tools (kafka-tools 4.4) against three Karst nodes, and the same
//! commands against three Apache Kafka 4.4 nodes: kafka-reassign-partitions (execute
//! and verify a move), kafka-leader-election (preferred), kafka-log-dirs.
//!
//! Skipped, saying why, where no Java or no jars can be had.

use std::process::Output;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use karst_tests::clients::show_output;
use karst_tests::java::run_kafka_tool;
use karst_tests::{unique_topic, wait_for, KafkaCluster, KafkaUnavailable};

const TIMEOUT: Duration = Duration::from_secs(120);
const TOPICS: &str = "org.apache.kafka.tools.TopicCommand";
const REASSIGN: &str = "org.apache.kafka.tools.reassign.ReassignPartitionsCommand";
const ELECTION: &str = "org.apache.kafka.tools.LeaderElectionCommand";
const LOG_DIRS: &str = "org.apache.kafka.tools.LogDirsCommand";

fn tool(main: &str, args: &[&str]) -> Result<String> {
    let out: Output = run_kafka_tool(main, args, TIMEOUT)?;
    if !out.status.success() {
        bail!("{main} {} failed\n{}", args.join(" "), show_output(&out));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// kafka-topics --describe's line for `partition`: (leader, replicas, isr).
fn partition_line(b: &str, topic: &str, partition: i32) -> Result<(String, String, String)> {
    let out = tool(TOPICS, &["--bootstrap-server", b, "--describe", "--topic", topic])?;
    let line = out
        .lines()
        .find(|l| l.contains(&format!("Partition: {partition}\t")) || l.contains(&format!("Partition: {partition} ")))
        .with_context(|| format!("partition {partition} in:\n{out}"))?;
    let field = |name: &str| -> String {
        line.split('\t').find_map(|f| f.trim().strip_prefix(&format!("{name}: ")).map(str::to_string)).unwrap_or_default()
    };
    Ok((field("Leader"), field("Replicas"), field("Isr")))
}

fn steps(b: &str, name: &str) -> Result<Vec<String>> {
    let topic = format!("{name}-move");
    let mut done = Vec::new();
    tool(TOPICS, &["--bootstrap-server", b, "--create", "--topic", &topic, "--replica-assignment", "1:2,2:3,3:1"])?;
    wait_for("leaders for every partition", TIMEOUT, || {
        (0..3)
            .all(|p| partition_line(b, &topic, p).is_ok_and(|(l, _, isr)| !l.is_empty() && l != "none" && isr.split(',').count() == 2))
            .then_some(())
    })?;
    done.push("kafka-topics --create --replica-assignment 1:2,2:3,3:1".to_string());

    // Move partition 0 from [1,2] to [3,1]: 3 becomes its preferred leader.
    let dir = tempfile::tempdir()?;
    let plan = dir.path().join("plan.json");
    std::fs::write(&plan, format!(r#"{{"version":1,"partitions":[{{"topic":"{topic}","partition":0,"replicas":[3,1]}}]}}"#))?;
    let plan = plan.display().to_string();
    let executed = tool(REASSIGN, &["--bootstrap-server", b, "--reassignment-json-file", &plan, "--execute"])?;
    ensure!(executed.contains("Successfully started partition reassignment"), "kafka-reassign-partitions --execute:\n{executed}");
    let mut last = String::new();
    wait_for("kafka-reassign-partitions --verify to report the move complete", TIMEOUT, || {
        let out = tool(REASSIGN, &["--bootstrap-server", b, "--reassignment-json-file", &plan, "--verify"]);
        last = match &out {
            Ok(o) => o.clone(),
            Err(e) => format!("{e:#}"),
        };
        out.ok().filter(|o| o.contains("Reassignment of partition") && o.contains("is completed"))
    })
    .with_context(|| format!("the last --verify said:\n{last}"))?;
    let (_, replicas, _) = partition_line(b, &topic, 0)?;
    ensure!(replicas == "3,1", "replicas of partition 0 after the move: {replicas}");
    done.push("kafka-reassign-partitions --execute, --verify: partition 0 moved to 3,1".to_string());

    // The preferred replica (3) leads after a preferred election, whoever led before.
    wait_for("3 and 1 both in partition 0's ISR", TIMEOUT, || {
        partition_line(b, &topic, 0).ok().filter(|(_, _, isr)| isr.split(',').count() == 2 && isr.contains('3')).map(|_| ())
    })?;
    let elected = tool(ELECTION, &["--bootstrap-server", b, "--election-type", "PREFERRED", "--topic", &topic, "--partition", "0"])?;
    ensure!(
        elected.contains("Successfully completed leader election (PREFERRED)") || elected.contains("Valid replica already elected"),
        "kafka-leader-election:\n{elected}"
    );
    wait_for("3 to lead partition 0", TIMEOUT, || partition_line(b, &topic, 0).ok().filter(|(l, _, _)| l == "3").map(|_| ()))?;
    done.push("kafka-leader-election --election-type PREFERRED: the preferred replica leads".to_string());

    let dirs = tool(LOG_DIRS, &["--bootstrap-server", b, "--describe", "--topic-list", &topic])?;
    let json = dirs.lines().find(|l| l.trim_start().starts_with('{')).with_context(|| format!("no JSON in kafka-log-dirs:\n{dirs}"))?;
    let v: serde_json::Value = serde_json::from_str(json).with_context(|| format!("kafka-log-dirs JSON: {json}"))?;
    let brokers = v["brokers"].as_array().map_or(0, Vec::len);
    let replicas: usize = v["brokers"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|b| b["logDirs"].as_array().into_iter().flatten())
        .map(|d| d["partitions"].as_array().map_or(0, Vec::len))
        .sum();
    ensure!(brokers == 3 && replicas == 6, "kafka-log-dirs: {brokers} brokers, {replicas} replicas of {topic}:\n{json}");
    done.push("kafka-log-dirs --describe: 3 brokers, the topic's 6 replicas".to_string());
    Ok(done)
}

#[test]
fn kafkas_cluster_tools_work_against_three_karst_nodes_as_against_three_kafka_nodes() -> Result<()> {
    let karst = karst_tests::cluster::start_cluster(3, |_| Vec::new())?;
    let bootstrap = karst.iter().map(|b| b.bootstrap()).collect::<Vec<_>>().join(",");
    let name = unique_topic("ctools");
    let on_karst = match steps(&bootstrap, &name) {
        Ok(s) => s,
        Err(e) => match KafkaUnavailable::of(&e) {
            Some(why) => {
                println!("skipped: {why}");
                return Ok(());
            }
            None => return Err(e.context("the cluster tools against Karst")),
        },
    };
    println!("against three Karst nodes:\n  {}", on_karst.join("\n  "));
    drop(karst);
    let kafka = KafkaCluster::start(3, |_| Vec::new())?;
    let on_kafka = steps(&kafka.bootstrap(), &name).context("the cluster tools against Apache Kafka")?;
    println!("against three Apache Kafka nodes:\n  {}", on_kafka.join("\n  "));
    ensure!(on_karst == on_kafka);
    Ok(())
}
