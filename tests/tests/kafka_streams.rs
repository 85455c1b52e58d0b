//! A Kafka Streams 4.4 application (word count, at_least_once) against Karst, and the
//! same against Apache Kafka 4.4: `tests/java/StreamsCheck.java` re-keys lines' words
//! through a repartition topic that Streams creates, counts them in a state store and
//! checks the output topic's latest count per word.
//!
//! With the store's changelog: a topic Streams creates with cleanup.policy=compact
//! (and the configs of a compacted changelog), which the log cleaner compacts.
//!
//! Skipped, saying why, where no Java or no jars can be had.

use std::time::Duration;

use anyhow::{Context, Result};
use karst_tests::java::run_java_program;
use karst_tests::{unique_topic, Broker, KafkaBroker, KafkaUnavailable};

const TIMEOUT: Duration = Duration::from_secs(240);

fn against_both(mode: &str) -> Result<()> {
    let karst = Broker::start(&["--set", "group.initial.rebalance.delay.ms=0"])?;
    let state = tempfile::tempdir()?;
    let prefix = unique_topic("streams");
    let run = |bootstrap: &str, dir: &str| run_java_program("StreamsCheck.java", &[bootstrap, &prefix, dir, mode], TIMEOUT);
    let out = match run(&karst.bootstrap(), &state.path().join("karst").display().to_string()) {
        Ok(out) => out,
        Err(e) => match KafkaUnavailable::of(&e) {
            Some(why) => {
                println!("skipped: {why}");
                return Ok(());
            }
            None => return Err(e.context(format!("Streams ({mode}) against Karst"))),
        },
    };
    println!("against Karst: {}", String::from_utf8_lossy(&out.stdout).trim());
    let kafka = KafkaBroker::start()?;
    let out = run(&kafka.bootstrap(), &state.path().join("kafka").display().to_string())
        .with_context(|| format!("Streams ({mode}) against Apache Kafka {}", kafka.version()))?;
    println!("against Apache Kafka {}: {}", kafka.version(), String::from_utf8_lossy(&out.stdout).trim());
    Ok(())
}

#[test]
fn kafka_streams_word_count_through_a_repartition_topic_and_a_state_store() -> Result<()> {
    against_both("no-changelog")
}

#[test]
fn kafka_streams_word_count_with_a_changelog_topic() -> Result<()> {
    against_both("changelog")
}
