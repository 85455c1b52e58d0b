//! ListOffsets as real clients' admin APIs use it (issue 18, acceptance 2), each run
//! against Karst and against Apache Kafka 4.4 (the reference fixture) and the answers
//! compared: offset, timestamp and leader epoch of every answer.
//!
//! - confluent-kafka's (librdkafka's) `AdminClient.list_offsets` with
//!   `OffsetSpec.earliest()`, `latest()`, `for_timestamp(t)` and `max_timestamp()`
//!   (`tests/python/admin_list_offsets.py`);
//! - the Java AdminClient's `listOffsets` with `OffsetSpec.earliest/latest/forTimestamp/
//!   maxTimestamp` and the tiered-storage specs `earliestLocal`, `latestTiered` and
//!   `earliestPendingUpload` (ListOffsets v8, v9, v11), `tests/java/ListOffsetsCheck.java`.
//!
//! Each program also checks the offsets itself, so Karst's half means something where
//! Kafka cannot run; Kafka's half (and the Java program) is skipped, saying why, where
//! Java or Kafka's jars cannot be had. One test, so one Kafka JVM serves both clients.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context, Result};
use karst_tests::java::run_java_program;
use karst_tests::kafka::KafkaBroker;
use karst_tests::{python_script, run_command, show_output, Broker, KafkaUnavailable};

const TIMEOUT: Duration = Duration::from_secs(180);

/// The `ANSWERS {json}` line a program printed before `OK`, as answer name → value.
fn answers(stdout: &str, what: &str) -> Result<BTreeMap<String, serde_json::Value>> {
    ensure!(stdout.trim_end().ends_with("OK"), "{what} did not print OK:\n{stdout}");
    let line = stdout.lines().find_map(|l| l.strip_prefix("ANSWERS ")).ok_or_else(|| anyhow!("{what} printed no ANSWERS line"))?;
    serde_json::from_str(line).with_context(|| format!("{what}'s ANSWERS line: {line}"))
}

fn python(bootstrap: &str) -> Result<BTreeMap<String, serde_json::Value>> {
    let script = python_script("admin_list_offsets.py");
    let out = run_command(
        Command::new("python3")
            .arg(&script)
            .arg(bootstrap)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null()),
        TIMEOUT,
    )?;
    println!("{}", String::from_utf8_lossy(&out.stdout));
    ensure!(out.status.success(), "{} against {bootstrap} failed\n{}", script.display(), show_output(&out));
    answers(&String::from_utf8_lossy(&out.stdout), "admin_list_offsets.py")
}

/// `Ok(None)`, saying why, where Java or the client jars are missing.
fn java(bootstrap: &str) -> Result<Option<BTreeMap<String, serde_json::Value>>> {
    let out = match run_java_program("ListOffsetsCheck.java", &[bootstrap], TIMEOUT) {
        Ok(out) => out,
        Err(e) => match KafkaUnavailable::of(&e) {
            Some(why) => {
                println!("the Java AdminClient skipped: {why}");
                return Ok(None);
            }
            None => return Err(e),
        },
    };
    println!("{}", String::from_utf8_lossy(&out.stdout));
    answers(&String::from_utf8_lossy(&out.stdout), "ListOffsetsCheck.java").map(Some)
}

/// Every answer the same on both; prints them side by side.
fn compare(client: &str, kafka: &BTreeMap<String, serde_json::Value>, karst: &BTreeMap<String, serde_json::Value>) -> Result<()> {
    println!("{client}, Kafka vs Karst (offset, timestamp, leader epoch):");
    let mut differing = Vec::new();
    for key in kafka.keys().chain(karst.keys()).collect::<std::collections::BTreeSet<_>>() {
        let (a, b) = (kafka.get(key), karst.get(key));
        let verdict = if a == b { "same" } else { "DIFFERENT" };
        let show = |v: Option<&serde_json::Value>| v.map_or_else(|| "(none)".to_string(), ToString::to_string);
        println!("  {verdict:9} {key}: Kafka {}, Karst {}", show(a), show(b));
        if a != b {
            differing.push(key.clone());
        }
    }
    if !differing.is_empty() {
        bail!("{client}: {} answers differ from Kafka's: {}", differing.len(), differing.join("; "));
    }
    Ok(())
}

#[test]
fn admin_clients_list_offsets_as_kafka_answers() -> Result<()> {
    let mut karst = Broker::start(&[])?;
    let kafka = match KafkaBroker::start() {
        Ok(k) => Some(k),
        Err(e) => match KafkaUnavailable::of(&e) {
            Some(why) => {
                println!("Apache Kafka skipped (Karst's answers are checked alone): {why}");
                None
            }
            None => return Err(e),
        },
    };

    let on_karst = python(&karst.bootstrap())?;
    if let Some(k) = &kafka {
        compare("confluent-kafka AdminClient.list_offsets", &python(&k.bootstrap())?, &on_karst)?;
    }
    if let Some(on_karst) = java(&karst.bootstrap())? {
        if let Some(k) = &kafka {
            let on_kafka = java(&k.bootstrap())?.ok_or_else(|| anyhow!("the Java program ran against Karst but not Kafka"))?;
            compare("Java AdminClient.listOffsets", &on_kafka, &on_karst)?;
        }
    }
    karst.check_running()
}
