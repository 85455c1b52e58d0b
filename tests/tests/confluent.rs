//! confluent-kafka (Python, bundled librdkafka 2.x): each script in `tests/python/`
//! runs against its own broker and must exit 0.

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, ensure, Result};
use karst_tests::{python_script, run_command, show_output, Broker};

fn run_script(name: &str) -> Result<()> {
    run_script_on(name, Broker::start(&[])?).map(drop)
}

/// Runs `name` against `broker`; gives the broker back, still running.
fn run_script_on(name: &str, mut broker: Broker) -> Result<Broker> {
    let script = python_script(name);
    let out = run_command(
        Command::new("python3")
            .arg(&script)
            .arg(broker.bootstrap())
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null()),
        Duration::from_secs(180),
    )?;
    // Visible with --no-capture, and in nextest's output on failure.
    println!("{}", String::from_utf8_lossy(&out.stdout));
    ensure!(out.status.success(), "{} failed\n{}", script.display(), show_output(&out));
    ensure!(
        String::from_utf8_lossy(&out.stdout).trim_end().ends_with("OK"),
        "{} exited 0 without printing OK\n{}",
        script.display(),
        show_output(&out)
    );
    broker.check_running()?;
    Ok(broker)
}

#[test]
fn admin_client_creates_a_3_partition_topic() -> Result<()> {
    run_script("admin_create_topic.py")
}

#[test]
fn admin_client_adds_partitions_and_deletes() -> Result<()> {
    run_script("admin_partitions_delete.py")
}

#[test]
fn keyed_messages_with_headers_round_trip() -> Result<()> {
    run_script("produce_consume.py")
}

#[test]
fn every_compression_codec_round_trips() -> Result<()> {
    run_script("compression.py")
}

#[test]
fn offsets_for_times_finds_the_right_offsets() -> Result<()> {
    run_script("offsets_for_times.py")
}

#[test]
fn idempotent_producer_writes_exactly_once() -> Result<()> {
    run_script("idempotent.py")
}

#[test]
fn producer_and_consumer_assuming_a_pre_0_11_broker_round_trip_every_codec() -> Result<()> {
    let broker = run_script_on("legacy_fallback.py", Broker::start(&[])?)?;
    // The script's topics are named fallback-<version>-<codec>-...: 0.8.2 and 0.9.0 took
    // the conversion path (message format v0, Produce v0 and Fetch v0), 0.10.0 did not
    // (librdkafka asks ApiVersions from 0.10.0 on).
    let admin = broker.admin_addr().ok_or_else(|| anyhow!("no admin address"))?;
    let m = karst_tests::metrics::parse_exposition(&karst_tests::metrics::http_get(admin, "/metrics", &[])?.body)?;
    for (fallback, old) in [("0-8-2", true), ("0-9-0", true), ("0-10-0", false)] {
        for codec in ["none", "gzip", "snappy", "lz4"] {
            let prefix = format!("fallback-{fallback}-{codec}");
            let of = |name: &str| -> f64 {
                m.samples
                    .iter()
                    .filter(|s| s.name == name && s.labels.get("topic").is_some_and(|t| t.starts_with(&prefix)))
                    .map(|s| s.value)
                    .sum()
            };
            let (up, down) = (of("karst_up_converted_records_total"), of("karst_down_converted_records_total"));
            let want = if old { (2_000.0, true) } else { (0.0, false) };
            ensure!(up == want.0 && (down >= 2_000.0) == want.1, "{prefix}: {up} records up-converted, {down} down-converted");
        }
    }
    let legacy = |api: &str, version: &str| m.value_or_zero("karst_legacy_requests_total", &[("api", api), ("version", version)]);
    ensure!(legacy("Produce", "0") > 0.0 && legacy("Fetch", "0") > 0.0, "no Produce v0 or Fetch v0 counted as legacy requests");
    Ok(())
}

#[test]
fn admin_client_describes_topics_and_elects_leaders() -> Result<()> {
    run_script("admin_describe_elect.py")
}
