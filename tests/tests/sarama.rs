//! sarama 1.22 (Go, Debian's golang-github-shopify-sarama-dev), built offline from
//! `tests/sarama/<name>/main.go` once per test run.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, ensure, Result};
use karst_tests::{go_binary, run_command, show_output, Broker};

fn run_program(name: &str, args: &[&str]) -> Result<()> {
    run_program_on(name, args, Broker::start(&[])?).map(drop)
}

/// Runs `name` against `broker`; gives the broker back, still running.
fn run_program_on(name: &str, args: &[&str], mut broker: Broker) -> Result<Broker> {
    let bin = go_binary(name)?;
    let out = run_command(
        Command::new(&bin).arg("-bootstrap").arg(broker.bootstrap()).args(args).stdin(Stdio::null()),
        Duration::from_secs(180),
    )?;
    println!("{}", String::from_utf8_lossy(&out.stdout));
    ensure!(out.status.success(), "sarama {name} {args:?} failed\n{}", show_output(&out));
    ensure!(
        String::from_utf8_lossy(&out.stdout).trim_end().ends_with("OK"),
        "sarama {name} exited 0 without printing OK\n{}",
        show_output(&out)
    );
    broker.check_running()?;
    Ok(broker)
}

/// Requests the broker counted in pre-0.11 versions: (api, version) → count.
fn legacy_requests(broker: &Broker) -> Result<BTreeMap<(String, String), f64>> {
    let admin = broker.admin_addr().ok_or_else(|| anyhow!("no admin address"))?;
    let m = karst_tests::metrics::parse_exposition(&karst_tests::metrics::http_get(admin, "/metrics", &[])?.body)?;
    Ok(m.samples
        .iter()
        .filter(|s| s.name == "karst_legacy_requests_total")
        .map(|s| ((s.labels["api"].clone(), s.labels["version"].clone()), s.value))
        .collect())
}

/// Fails unless each of `wanted` (api, version) was counted.
fn saw_legacy(broker: &Broker, wanted: &[(&str, &str)]) -> Result<()> {
    let seen = legacy_requests(broker)?;
    for (api, version) in wanted {
        ensure!(
            seen.get(&(api.to_string(), version.to_string())).is_some_and(|n| *n > 0.0),
            "the broker saw no {api} v{version}; pre-0.11 requests it counted: {seen:?}"
        );
    }
    Ok(())
}

#[test]
fn sarama_sync_producer_and_partition_consumer() -> Result<()> {
    run_program("roundtrip", &["-mode", "sync", "-n", "3000"])
}

#[test]
fn sarama_async_producer_and_partition_consumer() -> Result<()> {
    run_program("roundtrip", &["-mode", "async", "-n", "5000"])
}

#[test]
fn sarama_cluster_admin_create_describe_delete() -> Result<()> {
    // Sees the topic through DescribeTopics (Metadata v5).
    run_program("admin", &["-look", "describe"])
}

#[test]
fn sarama_cluster_admin_create_list_topics_delete() -> Result<()> {
    // Sees the topic through ListTopics, which in sarama 1.22 sends Metadata v0 and
    // DescribeConfigs v0.
    run_program("admin", &["-look", "list"])
}

#[test]
fn sarama_speaking_0_10_1_creates_and_deletes_topics_with_v0_requests() -> Result<()> {
    // DescribeTopics (Metadata v0 at this version); sarama's ListTopics needs 0.11.
    // Metadata v0 creates the topics it names where auto-creation is on, as in Kafka.
    let broker = Broker::start(&["--set", "auto.create.topics.enable=false"])?;
    let broker = run_program_on("admin", &["-look", "describe", "-version", "0.10.1.0"], broker)?;
    saw_legacy(&broker, &[("CreateTopics", "0"), ("DeleteTopics", "0")])
}

#[test]
fn sarama_speaking_0_11_creates_topics_with_create_topics_v1() -> Result<()> {
    // ListTopics: Metadata v4 and DescribeConfigs v0.
    let broker = run_program_on("admin", &["-look", "list", "-version", "0.11.0.0"], Broker::start(&[])?)?;
    saw_legacy(&broker, &[("CreateTopics", "1"), ("DescribeConfigs", "0")])
}

#[test]
fn sarama_default_config_commits_and_fetches_offsets_with_the_0_8_requests() -> Result<()> {
    let broker = Broker::start(&[])?;
    let topic = karst_tests::unique_topic("sarama-oldoffsets");
    karst_tests::raw::RawClient::connect(broker.addr())?.create_topic(&topic, 2, &[])?;
    let broker = run_program_on("oldoffsets", &["-topic", &topic], broker)?;
    saw_legacy(&broker, &[("OffsetCommit", "0"), ("OffsetCommit", "1"), ("OffsetFetch", "0")])
}

#[test]
fn sarama_get_offset_by_time_finds_batches_sarama_wrote_without_a_max_timestamp() -> Result<()> {
    // sarama 1.22 writes MaxTimestamp -1; the broker recomputes it from the records.
    run_program("timestamps", &[])
}
