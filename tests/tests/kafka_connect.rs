//! Kafka Connect (4.3.1: see tests/connect/pom.xml) with the file connectors against Karst, and the
//! same against Apache Kafka 4.4: a FileStreamSource reads lines from a file into a
//! topic, a FileStreamSink (a consumer group of its own) writes the topic's records to
//! another file; every line arrives once, in order, including lines appended while
//! Connect runs. In standalone mode (connectors from files, source offsets in a file),
//! and in distributed mode: connectors created through the REST API, their configs,
//! the source's offsets and their statuses kept in three topics Connect creates with
//! `cleanup.policy=compact` (it refuses to start on a config topic that is not
//! compacted), and a worker stopped and started again that resumes from them.
//!
//! Skipped, saying why, where no Java or no jars can be had.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::DescribeConfigsRequest;
use kafka_protocol::protocol::StrBytes;
use karst_tests::cluster::free_ports;
use karst_tests::java::java_command_on;
use karst_tests::metrics::{http_get, http_put_json};
use karst_tests::raw::RawClient;
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

/// Runs `run(bootstrap, name)` against a fresh Karst broker, then against Apache Kafka;
/// skipped, saying why, where Connect's JVM or jars cannot be had.
fn on_karst_then_kafka(prefix: &str, mode: &str, run: fn(&str, &str) -> Result<String>) -> Result<()> {
    let karst = Broker::start(&["--set", "group.initial.rebalance.delay.ms=0"])?;
    let name = unique_topic(prefix);
    let on_karst = match run(&karst.bootstrap(), &name) {
        Ok(s) => s,
        Err(e) => match KafkaUnavailable::of(&e) {
            Some(why) => {
                println!("skipped: {why}");
                return Ok(());
            }
            None => return Err(e.context(format!("Connect ({mode}) against Karst"))),
        },
    };
    println!("against Karst: {on_karst}");
    let kafka = KafkaBroker::start()?;
    let on_kafka = run(&kafka.bootstrap(), &name).with_context(|| format!("Connect ({mode}) against Apache Kafka {}", kafka.version()))?;
    println!("against Apache Kafka {}: {on_kafka}", kafka.version());
    Ok(())
}

#[test]
fn kafka_connect_standalone_with_the_file_connectors() -> Result<()> {
    on_karst_then_kafka("connect", "standalone", run)
}

/// Starts a distributed worker from `worker` (its REST listener on `rest`), logging to
/// `log`, and waits until its REST API answers.
fn start_worker(worker: &Path, rest: std::net::SocketAddr, log: &Path) -> Result<Connect> {
    let mut cmd = java_command_on(Jars::Connect, "org.apache.kafka.connect.cli.ConnectDistributed")?;
    cmd.arg(worker).stdout(Stdio::null()).stderr(Stdio::from(std::fs::File::create(log)?));
    let child = cmd.spawn().context("spawning a Connect worker")?;
    let mut connect = Connect { child, log: log.to_path_buf() };
    wait_for("the worker's REST API", TIMEOUT, || {
        if let Ok(Some(status)) = connect.child.try_wait() {
            return Some(Err(anyhow!("the Connect worker exited with {status}")));
        }
        // A worker that cannot start may hang in its shutdown hook instead of exiting.
        if std::fs::read_to_string(log).is_ok_and(|l| l.contains("Failed to start Connect")) {
            return Some(Err(anyhow!("the Connect worker failed to start (its log follows)")));
        }
        http_get(rest, "/connectors", &[]).ok().filter(|r| r.status == 200).map(|_| Ok(()))
    })??;
    Ok(connect)
}

/// Stops a worker as an operator does (SIGTERM: it commits offsets and leaves its group).
fn stop_worker(connect: &mut Connect) -> Result<()> {
    let pid = connect.child.id().to_string();
    std::process::Command::new("kill").args(["-TERM", &pid]).status().context("kill -TERM")?;
    wait_for("the worker to stop", TIMEOUT, || connect.child.try_wait().ok().flatten()).map(|_| ())
}

/// `cleanup.policy` of `topic` as `bootstrap`'s broker describes it.
fn cleanup_policy(bootstrap: &str, topic: &str) -> Result<String> {
    let addr = bootstrap.parse().with_context(|| format!("bootstrap {bootstrap}"))?;
    let mut c = RawClient::connect(addr)?;
    let req = DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
        .with_resource_type(2)
        .with_resource_name(StrBytes::from_string(topic.to_string()))
        .with_configuration_keys(Some(vec![StrBytes::from_string("cleanup.policy".to_string())]))]);
    let resp = c.send(&req, 4)?;
    let r = resp.results.first().ok_or_else(|| anyhow!("no result for {topic}"))?;
    ensure!(r.error_code == 0, "DescribeConfigs of {topic}: error {}", r.error_code);
    r.configs
        .iter()
        .find(|c| c.name.as_str() == "cleanup.policy")
        .and_then(|c| c.value.as_ref().map(|v| v.to_string()))
        .ok_or_else(|| anyhow!("{topic} has no cleanup.policy"))
}

/// Distributed mode through `bootstrap`; returns a description of what arrived.
fn run_distributed(bootstrap: &str, name: &str) -> Result<String> {
    let dir = tempfile::tempdir()?;
    let (input, output) = (dir.path().join("input.txt"), dir.path().join("output.txt"));
    let topic = format!("{name}-connect");
    let rest: std::net::SocketAddr = format!("127.0.0.1:{}", free_ports(1)?[0]).parse()?;
    let internal = [format!("{name}-configs"), format!("{name}-offsets"), format!("{name}-status")];
    let worker = dir.path().join("worker.properties");
    std::fs::write(
        &worker,
        format!(
            "bootstrap.servers={bootstrap}\n\
             group.id={name}-workers\n\
             key.converter=org.apache.kafka.connect.storage.StringConverter\n\
             value.converter=org.apache.kafka.connect.storage.StringConverter\n\
             config.storage.topic={}\n\
             offset.storage.topic={}\n\
             status.storage.topic={}\n\
             config.storage.replication.factor=1\n\
             offset.storage.replication.factor=1\n\
             status.storage.replication.factor=1\n\
             offset.flush.interval.ms=1000\n\
             listeners=http://{rest}\n",
            internal[0], internal[1], internal[2]
        ),
    )?;
    let first: Vec<String> = (0..100).map(|i| format!("first {i}")).collect();
    append(&input, &first)?;

    let mut connect = start_worker(&worker, rest, &dir.path().join("connect-1.err"))?;
    let source = serde_json::json!({
        "connector.class": "org.apache.kafka.connect.file.FileStreamSourceConnector",
        "tasks.max": "1",
        "file": input.display().to_string(),
        "topic": topic,
    });
    let sink = serde_json::json!({
        "connector.class": "org.apache.kafka.connect.file.FileStreamSinkConnector",
        "tasks.max": "1",
        "file": output.display().to_string(),
        "topics": topic,
        "consumer.override.auto.offset.reset": "earliest",
    });
    for (connector, config) in [(format!("{name}-source"), &source), (format!("{name}-sink"), &sink)] {
        // The worker may still be joining its group: it answers 409 (rebalance) until then.
        wait_for(&format!("creating {connector}"), TIMEOUT, || {
            let r = http_put_json(rest, &format!("/connectors/{connector}/config"), &config.to_string()).ok()?;
            (r.status == 200 || r.status == 201).then_some(())
        })?;
    }
    let arrived = |want: usize, connect: &mut Connect| {
        wait_for(&format!("{want} lines in the sink's file"), TIMEOUT, || {
            if let Ok(Some(status)) = connect.child.try_wait() {
                return Some(Err(anyhow!("Connect exited with {status}")));
            }
            let got = read_lines(&output);
            (got.len() >= want).then_some(Ok(got))
        })
    };
    let got = arrived(first.len(), &mut connect)??;
    ensure!(got == first, "the sink wrote {} lines, not the 100 sent in order: {:?}", got.len(), &got[..got.len().min(5)]);
    let policies = internal.iter().map(|t| cleanup_policy(bootstrap, t).map(|p| format!("{t}: {p}"))).collect::<Result<Vec<_>>>()?;
    for p in &policies {
        ensure!(p.ends_with(": compact"), "Connect's internal topic is not compacted: {p}");
    }

    // A new worker process finds both connectors and the source's position in the
    // topics: the lines appended while it was down arrive once, after the first ones.
    stop_worker(&mut connect)?;
    drop(connect);
    let second: Vec<String> = (0..50).map(|i| format!("second {i}")).collect();
    append(&input, &second)?;
    let mut connect = start_worker(&worker, rest, &dir.path().join("connect-2.err"))?;
    let got = arrived(first.len() + second.len(), &mut connect)??;
    let want: Vec<String> = first.iter().chain(&second).cloned().collect();
    ensure!(got == want, "after the restart: the sink wrote {} lines, not the 150 in order", got.len());
    Ok(format!(
        "distributed: REST-created FileStreamSource -> topic -> FileStreamSink, 100 lines; worker restarted, 50 more, each once and in order; internal topics {}",
        policies.join(", ")
    ))
}

#[test]
fn kafka_connect_distributed_keeps_its_state_in_compacted_topics() -> Result<()> {
    on_karst_then_kafka("connectd", "distributed", run_distributed)
}
