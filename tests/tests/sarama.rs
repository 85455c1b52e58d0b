//! sarama 1.22 (Go, Debian's golang-github-shopify-sarama-dev), built offline from
//! `tests/sarama/<name>/main.go` once per test run.

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{ensure, Result};
use karst_tests::{go_binary, run_command, show_output, Broker};

fn run_program(name: &str, args: &[&str]) -> Result<()> {
    let bin = go_binary(name)?;
    let mut broker = Broker::start(&[])?;
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
    broker.check_running()
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
fn sarama_get_offset_by_time_finds_batches_sarama_wrote_without_a_max_timestamp() -> Result<()> {
    // sarama 1.22 writes MaxTimestamp -1; the broker recomputes it from the records.
    run_program("timestamps", &[])
}
