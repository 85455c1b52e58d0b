//! The Java client (kafka-clients 4.4) against Karst, and the same program against
//! Apache Kafka 4.4, so a failure is known to be Karst's: `tests/java/ClientCheck.java`
//! in its three modes (produce-consume, admin, group; see that file).
//!
//! Skipped, saying why, where no Java or no jars can be had (`scripts/test-all.sh`
//! resolves them first, so it never skips there).

use std::time::Duration;

use anyhow::{Context, Result};
use karst_tests::java::run_java_program;
use karst_tests::{unique_topic, Broker, KafkaBroker, KafkaUnavailable};

const TIMEOUT: Duration = Duration::from_secs(180);

/// Runs `mode` against Karst, then against Kafka; prints both programs' lines.
fn against_both(mode: &str) -> Result<()> {
    let karst = Broker::start(&["--set", "group.initial.rebalance.delay.ms=0"])?;
    let topic = unique_topic(&format!("java-{mode}"));
    let out = match run_java_program("ClientCheck.java", &[mode, &karst.bootstrap(), &topic], TIMEOUT) {
        Ok(out) => out,
        Err(e) => match KafkaUnavailable::of(&e) {
            Some(why) => {
                println!("skipped: {why}");
                return Ok(());
            }
            None => return Err(e.context(format!("ClientCheck {mode} against Karst"))),
        },
    };
    println!("against Karst:\n{}", String::from_utf8_lossy(&out.stdout));
    let kafka = KafkaBroker::start()?;
    let out = run_java_program("ClientCheck.java", &[mode, &kafka.bootstrap(), &topic], TIMEOUT)
        .with_context(|| format!("ClientCheck {mode} against Apache Kafka {}", kafka.version()))?;
    println!("against Apache Kafka {}:\n{}", kafka.version(), String::from_utf8_lossy(&out.stdout));
    Ok(())
}

#[test]
fn java_producer_and_consumer_group_member() -> Result<()> {
    against_both("produce-consume")
}

#[test]
fn java_admin_client() -> Result<()> {
    against_both("admin")
}

#[test]
fn java_cooperative_sticky_group_with_a_static_member() -> Result<()> {
    against_both("group")
}
