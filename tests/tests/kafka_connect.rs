//! Kafka Connect (4.3.1: see tests/connect/pom.xml) in standalone mode with the file connectors against Karst, and the
//! same against Apache Kafka 4.4: a FileStreamSource reads lines from a file into a
//! topic, a FileStreamSink (a consumer group of its own) writes the topic's records to
//! another file; every line arrives once, in order, including lines appended while
//! Connect runs.
//!
//! Skipped, saying why, where no Java or no jars can be had.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use karst_tests::cluster::free_ports;
use karst_tests::java::java_command_on;
use karst_tests::{unique_topic, wait_for, Broker, Jars, KafkaBroker, KafkaUnavailable};

const TIMEOUT: Duration = Duration::from_secs(120);

/// Kills Connect's JVM when the test is done with it, printing its log's tail.
struct Connect {
    child: Child,
    log: std::path::PathBuf,
}

impl Drop for Connect {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        eprintln!("---- connect log (last 40 lines) ----\n{}\n----", lines[lines.len().saturating_sub(40)..].join("\n"));
    }
}

fn append(path: &Path, lines: &[String]) -> Result<()> {
    let mut f = OpenOptions::new().create(true).append(true).open(path)?;
    for l in lines {
        writeln!(f, "{l}")?;
    }
    f.sync_all()?;
    Ok(())
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).map(|s| s.lines().map(str::to_string).collect()).unwrap_or_default()
}

/// Source and sink through `bootstrap`; returns a description of what arrived.
fn run(bootstrap: &str, name: &str) -> Result<String> {
    let dir = tempfile::tempdir()?;
    let (input, output) = (dir.path().join("input.txt"), dir.path().join("output.txt"));
    let topic = format!("{name}-connect");
    let port = free_ports(1)?[0];
    let worker = dir.path().join("worker.properties");
    std::fs::write(
        &worker,
        format!(
            "bootstrap.servers={bootstrap}\n\
             key.converter=org.apache.kafka.connect.storage.StringConverter\n\
             value.converter=org.apache.kafka.connect.storage.StringConverter\n\
             offset.storage.file.filename={}\n\
             offset.flush.interval.ms=1000\n\
             listeners=http://127.0.0.1:{port}\n",
            dir.path().join("offsets").display()
        ),
    )?;
    let source = dir.path().join("source.properties");
    std::fs::write(
        &source,
        format!(
            "name={name}-source\nconnector.class=org.apache.kafka.connect.file.FileStreamSourceConnector\ntasks.max=1\nfile={}\ntopic={topic}\n",
            input.display()
        ),
    )?;
    let sink = dir.path().join("sink.properties");
    std::fs::write(
        &sink,
        format!(
            "name={name}-sink\nconnector.class=org.apache.kafka.connect.file.FileStreamSinkConnector\ntasks.max=1\nfile={}\ntopics={topic}\n\
             consumer.override.auto.offset.reset=earliest\n",
            output.display()
        ),
    )?;
    let first: Vec<String> = (0..100).map(|i| format!("first {i}")).collect();
    append(&input, &first)?;

    let log = dir.path().join("connect.log");
    let mut cmd = java_command_on(Jars::Connect, "org.apache.kafka.connect.cli.ConnectStandalone")?;
    cmd.arg(&worker)
        .arg(&source)
        .arg(&sink)
        .stdout(std::fs::File::create(&log)?)
        .stderr(Stdio::from(std::fs::File::create(dir.path().join("connect.err"))?));
    let child = cmd.spawn().context("spawning Connect")?;
    let mut connect = Connect { child, log: dir.path().join("connect.err") };

    let arrived = |want: usize, connect: &mut Connect| {
        wait_for(&format!("{want} lines in the sink's file"), TIMEOUT, || {
            if let Ok(Some(status)) = connect.child.try_wait() {
                return Some(Err(anyhow::anyhow!("Connect exited with {status}")));
            }
            let got = read_lines(&output);
            (got.len() >= want).then_some(Ok(got))
        })
    };
    let got = arrived(first.len(), &mut connect)??;
    anyhow::ensure!(got == first, "the sink wrote {} lines, not the 100 sent in order: {:?}", got.len(), &got[..got.len().min(5)]);
    let second: Vec<String> = (0..50).map(|i| format!("second {i}")).collect();
    append(&input, &second)?;
    let got = arrived(first.len() + second.len(), &mut connect)??;
    let want: Vec<String> = first.iter().chain(&second).cloned().collect();
    anyhow::ensure!(got == want, "after appending: the sink wrote {} lines, not the 150 in order", got.len());
    Ok("FileStreamSource -> topic -> FileStreamSink: 100 lines, then 50 appended while running, each once and in order".to_string())
}

#[test]
fn kafka_connect_standalone_with_the_file_connectors() -> Result<()> {
    let karst = Broker::start(&["--set", "group.initial.rebalance.delay.ms=0"])?;
    let name = unique_topic("connect");
    let on_karst = match run(&karst.bootstrap(), &name) {
        Ok(s) => s,
        Err(e) => match KafkaUnavailable::of(&e) {
            Some(why) => {
                println!("skipped: {why}");
                return Ok(());
            }
            None => return Err(e.context("Connect against Karst")),
        },
    };
    println!("against Karst: {on_karst}");
    let kafka = KafkaBroker::start()?;
    let on_kafka = run(&kafka.bootstrap(), &name).with_context(|| format!("Connect against Apache Kafka {}", kafka.version()))?;
    println!("against Apache Kafka {}: {on_kafka}", kafka.version());
    Ok(())
}
