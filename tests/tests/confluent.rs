//! confluent-kafka (Python, bundled librdkafka 2.x): each script in `tests/python/`
//! runs against its own broker and must exit 0.

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{ensure, Result};
use karst_tests::{python_script, run_command, show_output, Broker};

fn run_script(name: &str) -> Result<()> {
    let mut broker = Broker::start(&[])?;
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
    broker.check_running()
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
    run_script("legacy_fallback.py")
}

#[test]
fn admin_client_describes_topics_and_elects_leaders() -> Result<()> {
    run_script("admin_describe_elect.py")
}
