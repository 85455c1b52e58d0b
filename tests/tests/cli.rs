//! The admin CLI (`karst topic|produce|consume|group|cluster`) run as a process
//! against a real broker, cross-checked with kcat and the raw protocol client.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use karst_tests::raw::RawClient;
use karst_tests::{karst_bin, run_checked, run_command, show_output, unique_topic, wait_for, wait_until, Broker};
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(60);

/// `karst ARGS --bootstrap-server B`, stdin from /dev/null, no KARST_* leaking in.
fn karst(broker: &Broker, args: &[&str]) -> Result<Command> {
    let mut cmd = Command::new(karst_bin()?);
    cmd.args(args).arg("--bootstrap-server").arg(broker.bootstrap()).stdin(Stdio::null());
    scrub_env(&mut cmd);
    Ok(cmd)
}

fn scrub_env(cmd: &mut Command) {
    karst_tests::broker::scrub_karst_env(cmd);
}

/// Runs `karst ARGS` and requires exit status 0; returns stdout.
fn ok(broker: &Broker, args: &[&str]) -> Result<String> {
    let out = run_checked(&mut karst(broker, args)?, TIMEOUT)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `karst ARGS --output json` and parses stdout.
fn json(broker: &Broker, args: &[&str]) -> Result<Value> {
    let mut all = args.to_vec();
    all.extend(["--output", "json"]);
    let text = ok(broker, &all)?;
    serde_json::from_str(&text).with_context(|| format!("karst {args:?} printed no JSON:\n{text}"))
}

/// Runs `karst ARGS`, requires exit status 1, and returns stderr, checked for the
/// friendly-error shape: `error: ...`, no panic or backtrace.
fn fails(broker: &Broker, args: &[&str]) -> Result<String> {
    let out = run_command(&mut karst(broker, args)?, TIMEOUT)?;
    friendly_failure(args, &out)
}

fn friendly_failure(args: &[&str], out: &Output) -> Result<String> {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    ensure!(out.status.code() == Some(1), "karst {args:?} should exit 1\n{}", show_output(out));
    ensure!(stderr.starts_with("error: "), "karst {args:?} stderr should start with `error: `:\n{stderr}");
    ensure!(!stderr.contains("panicked") && !stderr.contains("stack backtrace"), "karst {args:?} panicked:\n{stderr}");
    Ok(stderr)
}

fn kcat(broker: &Broker) -> Command {
    let mut cmd = Command::new("kcat");
    cmd.arg("-b").arg(broker.bootstrap()).stdin(Stdio::null());
    cmd
}

fn write_file(dir: &Path, name: &str, lines: &[String]) -> Result<File> {
    let path = dir.join(name);
    let mut f = File::create(&path)?;
    for l in lines {
        writeln!(f, "{l}")?;
    }
    Ok(File::open(path)?)
}

fn lines(text: &str) -> Vec<String> {
    text.lines().map(str::to_string).collect()
}

#[test]
fn help_is_everywhere() -> Result<()> {
    let bin = karst_bin()?;
    for args in [
        &["--help"][..],
        &["topic", "--help"],
        &["topic", "create", "--help"],
        &["topic", "alter-config", "--help"],
        &["topic", "reassign", "--help"],
        &["produce", "--help"],
        &["consume", "--help"],
        &["group", "--help"],
        &["group", "reset-offsets", "--help"],
        &["cluster", "info", "--help"],
    ] {
        let out = run_checked(Command::new(&bin).args(args).stdin(Stdio::null()), TIMEOUT)?;
        let text = String::from_utf8_lossy(&out.stdout);
        ensure!(text.contains("Usage:"), "karst {args:?}:\n{text}");
        if args.len() > 1 {
            ensure!(text.contains("--bootstrap-server"), "karst {args:?} does not offer --bootstrap-server:\n{text}");
        }
    }
    let out = run_command(Command::new(&bin).args(["consume", "t", "--from", "middle"]).stdin(Stdio::null()), TIMEOUT)?;
    ensure!(!out.status.success(), "a bad --from must be refused");
    ensure!(String::from_utf8_lossy(&out.stderr).contains("offset:N"), "{}", show_output(&out));
    Ok(())
}

#[test]
fn an_unreachable_broker_is_named() -> Result<()> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let addr = format!("127.0.0.1:{port}");
    let bin = karst_bin()?;
    let mut cmd = Command::new(&bin);
    cmd.args(["topic", "list", "--bootstrap-server", &addr]).stdin(Stdio::null());
    scrub_env(&mut cmd);
    let stderr = friendly_failure(&["topic", "list"], &run_command(&mut cmd, TIMEOUT)?)?;
    ensure!(stderr.contains(&addr) && stderr.contains("refused"), "stderr does not name {addr}:\n{stderr}");
    // The environment variable is the default address.
    let mut cmd = Command::new(&bin);
    cmd.args(["cluster", "info"]).stdin(Stdio::null());
    scrub_env(&mut cmd);
    cmd.env("KARST_BOOTSTRAP_SERVER", &addr);
    let stderr = friendly_failure(&["cluster", "info"], &run_command(&mut cmd, TIMEOUT)?)?;
    ensure!(stderr.contains(&addr), "KARST_BOOTSTRAP_SERVER was not used:\n{stderr}");
    Ok(())
}

#[test]
fn topic_create_list_describe_alter_delete() -> Result<()> {
    let broker = Broker::start(&[])?;
    let topic = unique_topic("cli-topic");
    let out = ok(&broker, &["topic", "create", &topic, "--partitions", "3", "--config", "retention.ms=3600000"])?;
    ensure!(out.contains(&format!("Created topic {topic}")), "{out}");
    // Independent check: librdkafka sees three partitions led by broker 1.
    let listing = run_checked(kcat(&broker).args(["-L", "-t", &topic]), TIMEOUT)?;
    let text = String::from_utf8_lossy(&listing.stdout);
    ensure!(text.contains("with 3 partitions"), "kcat -L:\n{text}");

    let stderr = fails(&broker, &["topic", "create", &topic])?;
    ensure!(stderr.contains("TOPIC_ALREADY_EXISTS") && stderr.contains("hint: "), "{stderr}");
    ok(&broker, &["topic", "create", &topic, "--if-not-exists"])?;
    let stderr = fails(&broker, &["topic", "create", "bad/name"])?;
    ensure!(stderr.contains("INVALID_TOPIC_EXCEPTION"), "{stderr}");
    let stderr = fails(&broker, &["topic", "create", &unique_topic("cli-badcfg"), "--config", "no.such.config=1"])?;
    ensure!(stderr.contains("INVALID_CONFIG"), "{stderr}");

    ensure!(lines(&ok(&broker, &["topic", "list"])?).contains(&topic));
    let listed = json(&broker, &["topic", "list"])?;
    let entry = listed.as_array().and_then(|a| a.iter().find(|t| t["name"] == topic.as_str())).context("topic in JSON list")?;
    ensure!(entry["partitions"] == 3, "{entry}");

    let d = json(&broker, &["topic", "describe", &topic])?;
    let parts = d["partitions"].as_array().context("partitions")?;
    ensure!(parts.len() == 3, "{d}");
    for p in parts {
        ensure!(p["leader"] == 1 && p["replicas"] == serde_json::json!([1]) && p["isr"] == serde_json::json!([1]), "{p}");
    }
    let config = |d: &Value, name: &str| -> Option<(String, String)> {
        d["configs"]
            .as_array()?
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| (c["value"].as_str().unwrap_or("").to_string(), c["source"].as_str().unwrap_or("").to_string()))
    };
    ensure!(config(&d, "retention.ms") == Some(("3600000".into(), "topic".into())), "{d}");
    let text = ok(&broker, &["topic", "describe", &topic])?;
    ensure!(text.contains("PartitionCount: 3") && text.contains("retention.ms=3600000"), "{text}");

    ok(&broker, &["topic", "alter-config", &topic, "--set", "retention.ms=7200000", "--set", "segment.bytes=1048576"])?;
    let d = json(&broker, &["topic", "describe", &topic])?;
    ensure!(config(&d, "retention.ms") == Some(("7200000".into(), "topic".into())), "{d}");
    ensure!(config(&d, "segment.bytes") == Some(("1048576".into(), "topic".into())), "{d}");
    ok(&broker, &["topic", "alter-config", &topic, "--delete", "retention.ms"])?;
    let d = json(&broker, &["topic", "describe", &topic])?;
    ensure!(config(&d, "retention.ms").is_some_and(|(_, source)| source != "topic"), "{d}");
    let stderr = fails(&broker, &["topic", "alter-config", &topic, "--set", "retention.ms=soon"])?;
    ensure!(stderr.contains("INVALID_CONFIG"), "{stderr}");

    ok(&broker, &["topic", "delete", &topic])?;
    wait_until("the topic to leave the list", TIMEOUT, || ok(&broker, &["topic", "list"]).is_ok_and(|o| !lines(&o).contains(&topic)))?;
    let stderr = fails(&broker, &["topic", "describe", &topic])?;
    ensure!(stderr.contains("UNKNOWN_TOPIC_OR_PARTITION") && stderr.contains("hint: "), "{stderr}");
    let stderr = fails(&broker, &["topic", "delete", &topic])?;
    ensure!(stderr.contains("UNKNOWN_TOPIC_OR_PARTITION"), "{stderr}");
    Ok(())
}

#[test]
fn cluster_info_shows_the_broker() -> Result<()> {
    let broker = Broker::start(&[])?;
    let info = json(&broker, &["cluster", "info"])?;
    let brokers = info["brokers"].as_array().context("brokers")?;
    ensure!(brokers.len() == 1, "{info}");
    ensure!(brokers[0]["id"] == 1 && brokers[0]["port"] == broker.addr().port(), "{info}");
    ensure!(info["cluster_id"].as_str().is_some_and(|c| !c.is_empty()), "{info}");
    ensure!(info["source"] == "DescribeCluster", "{info}");
    let text = ok(&broker, &["cluster", "info"])?;
    ensure!(text.contains("Cluster id: ") && text.contains(&broker.bootstrap()), "{text}");
    Ok(())
}

/// `karst ARGS` with the broker given as kcat users type it: `-b HOST:PORT`.
#[test]
fn cluster_config_shows_sets_and_deletes_dynamic_broker_configs() -> Result<()> {
    let broker = Broker::start(&[])?;
    let out = ok(&broker, &["cluster", "config", "--set", "log.retention.ms=3600000", "--set", "log.cleaner.threads=2"])?;
    ensure!(out.contains("Updated the cluster-wide default"), "{out}");
    let shown = json(&broker, &["cluster", "config"])?;
    let names: Vec<&str> = shown["configs"].as_array().into_iter().flatten().filter_map(|c| c["name"].as_str()).collect();
    ensure!(names == ["log.cleaner.threads", "log.retention.ms"], "the default resource lists what is set: {shown}");
    let own = ok(&broker, &["cluster", "config", "--broker", "1"])?;
    let line = own.lines().find(|l| l.starts_with("log.retention.ms ")).unwrap_or_default();
    ensure!(line.contains("3600000") && line.contains("dynamic default broker") && line.contains("dynamic"), "{own}");
    ensure!(own.lines().any(|l| l.starts_with("node.id ") && l.contains("static")), "{own}");
    let refused = fails(&broker, &["cluster", "config", "--broker", "1", "--set", "num.partitions=3"])?;
    ensure!(refused.contains("Cannot update these configs dynamically"), "{refused}");
    ok(&broker, &["cluster", "config", "--delete", "log.retention.ms", "--delete", "log.cleaner.threads"])?;
    let shown = json(&broker, &["cluster", "config"])?;
    ensure!(shown["configs"].as_array().is_some_and(|c| c.is_empty()), "deleted: {shown}");
    Ok(())
}

fn ok_dash_b(broker: &Broker, args: &[&str], stdin: Stdio) -> Result<String> {
    let mut cmd = Command::new(karst_bin()?);
    cmd.args(args).arg("-b").arg(broker.bootstrap()).stdin(stdin);
    scrub_env(&mut cmd);
    let out = run_checked(&mut cmd, TIMEOUT)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn dash_b_is_the_bootstrap_server_of_every_client_command() -> Result<()> {
    let broker = Broker::start(&[])?;
    let dir = tempfile::tempdir()?;
    let topic = unique_topic("dash-b");
    ok_dash_b(&broker, &["topic", "create", &topic, "--partitions", "1"], Stdio::null())?;
    ensure!(ok_dash_b(&broker, &["topic", "list"], Stdio::null())?.contains(&topic), "topic list");
    ensure!(ok_dash_b(&broker, &["topic", "describe", &topic], Stdio::null())?.contains(&topic), "topic describe");
    let input = vec!["one".to_string(), "two".to_string()];
    ok_dash_b(&broker, &["produce", &topic], Stdio::from(write_file(dir.path(), "in", &input)?))?;
    let got = ok_dash_b(&broker, &["consume", &topic, "--from", "beginning", "--max-messages", "2"], Stdio::null())?;
    ensure!(lines(&got) == input, "consume read {got:?}");
    ok_dash_b(&broker, &["group", "list"], Stdio::null())?;
    ensure!(ok_dash_b(&broker, &["cluster", "info"], Stdio::null())?.contains(&broker.bootstrap()), "cluster info");
    // Before the subcommand's own arguments too.
    ensure!(ok_dash_b(&broker, &["topic", "-b", &broker.bootstrap(), "list"], Stdio::null())?.contains(&topic));
    Ok(())
}

#[test]
fn cli_produces_and_kcat_reads_the_same_lines() -> Result<()> {
    let broker = Broker::start(&[])?;
    let dir = tempfile::tempdir()?;
    let topic = unique_topic("cli-produce");
    ok(&broker, &["topic", "create", &topic, "--partitions", "1"])?;
    let input: Vec<String> = (0..2000).map(|i| format!("line-{i:05}-{}", "y".repeat(i % 37))).collect();
    // Exactly the form the Docker test uses.
    let mut cmd = karst(&broker, &["produce", &topic])?;
    cmd.stdin(write_file(dir.path(), "in", &input)?);
    let out = run_checked(&mut cmd, TIMEOUT)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(stderr.contains("Produced 2000 records"), "{stderr}");
    let got = run_checked(kcat(&broker).args(["-C", "-t", &topic, "-o", "beginning", "-e", "-q", "-f", "%s\n"]), TIMEOUT)?;
    ensure!(lines(&String::from_utf8_lossy(&got.stdout)) == input, "kcat read back something else");

    // Keys: the CLI partitions like Kafka's default partitioner (murmur2), as does
    // librdkafka's murmur2_random; the same key must land on the same partition.
    let keyed = unique_topic("cli-keys");
    ok(&broker, &["topic", "create", &keyed, "--partitions", "4"])?;
    let records: Vec<String> = (0..200).map(|i| format!("key-{i}:value-{i}")).collect();
    let mut cmd = karst(&broker, &["produce", &keyed, "--key-separator", ":", "--acks", "1"])?;
    cmd.stdin(write_file(dir.path(), "keyed", &records)?);
    run_checked(&mut cmd, TIMEOUT)?;
    let mut cmd = kcat(&broker);
    cmd.args(["-P", "-t", &keyed, "-K", ":", "-X", "topic.partitioner=murmur2_random"]).stdin(write_file(dir.path(), "keyed2", &records)?);
    run_checked(&mut cmd, TIMEOUT)?;
    let got = run_checked(kcat(&broker).args(["-C", "-t", &keyed, "-o", "beginning", "-e", "-q", "-f", "%p %k %s\n"]), TIMEOUT)?;
    let mut placed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for l in String::from_utf8_lossy(&got.stdout).lines() {
        let mut f = l.splitn(3, ' ');
        let (p, k, v) = (f.next().unwrap_or(""), f.next().unwrap_or(""), f.next().unwrap_or(""));
        ensure!(v == k.replace("key", "value"), "value {v:?} under key {k:?}");
        placed.entry(k.to_string()).or_default().insert(p.to_string());
    }
    ensure!(placed.len() == 200, "{} keys read back", placed.len());
    let split: Vec<_> = placed.iter().filter(|(_, ps)| ps.len() != 1).collect();
    ensure!(split.is_empty(), "keys on different partitions from the CLI and librdkafka's murmur2: {split:?}");
    let used: BTreeSet<&String> = placed.values().flatten().collect();
    ensure!(used.len() == 4, "200 keys should use all 4 partitions: {used:?}");
    Ok(())
}

#[test]
fn kcat_produces_and_cli_consumes() -> Result<()> {
    let broker = Broker::start(&[])?;
    let dir = tempfile::tempdir()?;
    let topic = unique_topic("cli-consume");
    ok(&broker, &["topic", "create", &topic, "--partitions", "1"])?;
    let input: Vec<String> = (0..500).map(|i| format!("msg-{i}")).collect();
    let mut cmd = kcat(&broker);
    cmd.args(["-P", "-t", &topic, "-k", "the-key", "-H", "h1=v1"]).stdin(write_file(dir.path(), "in", &input)?);
    run_checked(&mut cmd, TIMEOUT)?;

    // Exactly the form the Docker test uses.
    let out = ok(&broker, &["consume", &topic, "--from", "beginning", "--max-messages", "500", "--timeout-ms", "10000"])?;
    ensure!(lines(&out) == input, "consumed {} lines, first {:?}", out.lines().count(), out.lines().next());
    // The idle timeout starts after the group join (3 s: group.initial.rebalance.delay.ms).
    let group = unique_topic("cli-g");
    let out = ok(&broker, &["consume", &topic, "--group", &group, "--from", "beginning", "--max-messages", "500", "--timeout-ms", "2000"])?;
    ensure!(lines(&out) == input, "the group member read {} lines", out.lines().count());
    let out = ok(&broker, &["consume", &topic, "--from", "offset:490", "--max-messages", "10", "--timeout-ms", "10000"])?;
    ensure!(lines(&out) == input[490..], "{out}");
    let out =
        ok(&broker, &["consume", &topic, "--partition", "0", "--from", "timestamp:0", "--max-messages", "3", "--timeout-ms", "10000"])?;
    ensure!(lines(&out) == input[..3], "{out}");

    let out = ok(&broker, &["consume", &topic, "--from", "offset:7", "--max-messages", "1", "--format", "json"])?;
    let r: Value = serde_json::from_str(out.trim()).with_context(|| format!("not JSON: {out}"))?;
    ensure!(r["partition"] == 0 && r["offset"] == 7 && r["value"] == "msg-7" && r["key"] == "the-key", "{r}");
    ensure!(r["headers"]["h1"] == "v1" && r["timestamp"].as_i64().is_some_and(|t| t > 1_600_000_000_000), "{r}");

    // Nothing new: --timeout-ms alone ends quietly; with --max-messages unmet it fails.
    let out = ok(&broker, &["consume", &topic, "--from", "end", "--timeout-ms", "500"])?;
    ensure!(out.is_empty(), "{out}");
    let out = ok(&broker, &["consume", &topic, "--from", "timestamp:99999999999999", "--timeout-ms", "500"])?;
    ensure!(out.is_empty(), "{out}");
    let stderr = fails(&broker, &["consume", &topic, "--from", "offset:495", "--max-messages", "10", "--timeout-ms", "1000"])?;
    ensure!(stderr.contains("5 of 10"), "{stderr}");
    let stderr = fails(&broker, &["consume", &topic, "--from", "offset:100000", "--max-messages", "1", "--timeout-ms", "5000"])?;
    ensure!(stderr.contains("OFFSET_OUT_OF_RANGE"), "{stderr}");
    let stderr = fails(&broker, &["consume", &topic, "--partition", "9", "--timeout-ms", "1000"])?;
    ensure!(stderr.contains("UNKNOWN_TOPIC_OR_PARTITION"), "{stderr}");
    Ok(())
}

/// A `karst consume --group` running in the background, stdout to a file.
struct Consumer {
    child: Child,
    out: tempfile::NamedTempFile,
}

impl Consumer {
    fn start(broker: &Broker, topic: &str, group: &str) -> Result<Consumer> {
        let out = tempfile::NamedTempFile::new()?;
        let mut cmd = karst(broker, &["consume", topic, "--group", group, "--from", "beginning"])?;
        let child = cmd.stdout(out.reopen()?).stderr(Stdio::null()).spawn()?;
        Ok(Consumer { child, out })
    }

    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(self.out.path()).map(|t| lines(&t)).unwrap_or_default()
    }

    /// SIGTERM, then the exit status (the consumer commits and leaves first).
    fn stop(&mut self) -> Result<std::process::ExitStatus> {
        let status = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status()?;
        ensure!(status.success(), "kill -TERM failed");
        wait_for("the consumer to exit", TIMEOUT, || self.child.try_wait().ok().flatten())
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn committed_sum(broker: &Broker, group: &str, topic: &str, partitions: &[i32]) -> Result<i64> {
    let c = RawClient::connect(broker.addr())?.committed_offsets(group, topic, partitions)?;
    Ok(c.values().map(|o| (*o).max(0)).sum())
}

#[test]
fn consumer_groups_commit_resume_share_reset_and_delete() -> Result<()> {
    let broker = Broker::start(&["--set", "group.initial.rebalance.delay.ms=0"])?;
    let dir = tempfile::tempdir()?;
    let topic = unique_topic("cli-group");
    let group = unique_topic("cli-g");
    ok(&broker, &["topic", "create", &topic, "--partitions", "2"])?;
    let input: Vec<String> = (0..100).map(|i| format!("k{i}:v{i}")).collect();
    let mut cmd = karst(&broker, &["produce", &topic, "--key-separator", ":"])?;
    cmd.stdin(write_file(dir.path(), "in", &input)?);
    run_checked(&mut cmd, TIMEOUT)?;
    let all: BTreeSet<String> = (0..100).map(|i| format!("v{i}")).collect();

    // Alone in the group: 60 records, committed on exit.
    let first = lines(&ok(
        &broker,
        &["consume", &topic, "--group", &group, "--from", "beginning", "--max-messages", "60", "--timeout-ms", "10000"],
    )?);
    ensure!(first.len() == 60, "{first:?}");
    ensure!(committed_sum(&broker, &group, &topic, &[0, 1])? == 60, "OffsetFetch after the first run");
    // The next member resumes from the committed offsets.
    let second = lines(&ok(&broker, &["consume", &topic, "--group", &group, "--max-messages", "40", "--timeout-ms", "10000"])?);
    let both: BTreeSet<String> = first.iter().chain(&second).cloned().collect();
    ensure!(second.len() == 40 && both == all, "resumed run read {second:?}");

    let listed = json(&broker, &["group", "list"])?;
    ensure!(listed.as_array().is_some_and(|a| a.iter().any(|g| g["group"] == group.as_str())), "{listed}");
    let d = json(&broker, &["group", "describe", &group])?;
    ensure!(d["state"] == "Empty", "{d}");
    let offsets = d["offsets"].as_array().context("offsets")?;
    ensure!(offsets.len() == 2, "{d}");
    for o in offsets {
        ensure!(o["lag"] == 0 && o["committed_offset"] == o["log_end_offset"], "{o}");
    }

    // reset-offsets: a dry run changes nothing; --execute commits.
    let plan = json(&broker, &["group", "reset-offsets", &group, "--topic", &topic, "--to-earliest"])?;
    ensure!(plan["executed"] == false && plan["offsets"].as_array().is_some_and(|a| a.iter().all(|o| o["new_offset"] == 0)), "{plan}");
    ensure!(committed_sum(&broker, &group, &topic, &[0, 1])? == 100, "a dry run committed");
    let text = ok(&broker, &["group", "reset-offsets", &group, "--topic", &topic, "--to-earliest", "--execute"])?;
    ensure!(text.contains("Committed"), "{text}");
    ensure!(committed_sum(&broker, &group, &topic, &[0, 1])? == 0, "--to-earliest --execute");
    ok(&broker, &["group", "reset-offsets", &group, "--topic", &topic, "--partition", "0", "--to-offset", "5", "--execute"])?;
    let c = RawClient::connect(broker.addr())?.committed_offsets(&group, &topic, &[0, 1])?;
    ensure!(c[&0] == 5 && c[&1] == 0, "{c:?}");
    ok(&broker, &["group", "reset-offsets", &group, "--topic", &topic, "--to-offset", "1000000", "--execute"])?;
    ensure!(committed_sum(&broker, &group, &topic, &[0, 1])? == 100, "--to-offset clamps to the log end");
    ok(&broker, &["group", "reset-offsets", &group, "--topic", &topic, "--to-datetime", "0", "--execute"])?;
    ensure!(committed_sum(&broker, &group, &topic, &[0, 1])? == 0, "--to-datetime 0");
    ok(&broker, &["group", "reset-offsets", &group, "--topic", &topic, "--to-latest", "--execute"])?;
    ensure!(committed_sum(&broker, &group, &topic, &[0, 1])? == 100, "--to-latest");

    // Two members share the topic (range: one partition each), then leave on SIGTERM.
    let mut a = Consumer::start(&broker, &topic, &group)?;
    let mut b = Consumer::start(&broker, &topic, &group)?;
    wait_until("both members to hold one partition each", TIMEOUT, || {
        json(&broker, &["group", "describe", &group]).is_ok_and(|d| {
            d["state"] == "Stable"
                && d["members"].as_array().is_some_and(|m| {
                    m.len() == 2 && m.iter().all(|m| m["assignment"][topic.as_str()].as_array().is_some_and(|p| p.len() == 1))
                })
        })
    })?;
    let stderr = fails(&broker, &["group", "reset-offsets", &group, "--topic", &topic, "--to-latest", "--execute"])?;
    ensure!(stderr.contains("Stable") && stderr.contains("2 member"), "{stderr}");
    let stderr = fails(&broker, &["group", "delete", &group])?;
    ensure!(stderr.contains("NON_EMPTY_GROUP"), "{stderr}");
    // Records produced now are split between the members by partition.
    let more: Vec<String> = (0..100).map(|i| format!("k{i}:w{i}")).collect();
    let mut cmd = karst(&broker, &["produce", &topic, "--key-separator", ":"])?;
    cmd.stdin(write_file(dir.path(), "more", &more)?);
    run_checked(&mut cmd, TIMEOUT)?;
    wait_until("the two members to read all 100 new records", TIMEOUT, || a.lines().len() + b.lines().len() >= 100)?;
    let (la, lb) = (a.lines(), b.lines());
    let shared: BTreeSet<String> = la.iter().chain(&lb).cloned().collect();
    let want: BTreeSet<String> = (0..100).map(|i| format!("w{i}")).collect();
    ensure!(la.len() + lb.len() == 100 && shared == want, "members read {} + {} records", la.len(), lb.len());
    ensure!(!la.is_empty() && !lb.is_empty(), "one member read nothing: {} + {}", la.len(), lb.len());
    ensure!(a.stop()?.success() && b.stop()?.success(), "members exit 0 on SIGTERM");
    ensure!(committed_sum(&broker, &group, &topic, &[0, 1])? == 200, "members commit on exit");
    let d = json(&broker, &["group", "describe", &group])?;
    ensure!(d["state"] == "Empty" && d["members"].as_array().is_some_and(|m| m.is_empty()), "members left: {d}");

    ok(&broker, &["group", "delete", &group])?;
    let listed = json(&broker, &["group", "list"])?;
    ensure!(!listed.as_array().is_some_and(|a| a.iter().any(|g| g["group"] == group.as_str())), "{listed}");
    let stderr = fails(&broker, &["group", "delete", &group])?;
    ensure!(stderr.contains("GROUP_ID_NOT_FOUND"), "{stderr}");
    Ok(())
}

#[test]
fn reassign_on_one_broker_refuses_and_lists() -> Result<()> {
    let broker = Broker::start(&[])?;
    let topic = unique_topic("cli-move");
    ok(&broker, &["topic", "create", &topic, "--partitions", "2"])?;
    let stderr = fails(&broker, &["topic", "reassign", &topic, "--partition", "0", "--replicas", "1,2"])?;
    ensure!(stderr.contains("INVALID_REPLICA_ASSIGNMENT") && stderr.contains("hint: "), "{stderr}");
    let stderr = fails(&broker, &["topic", "reassign", &topic, "--partition", "0", "--cancel"])?;
    ensure!(stderr.contains("NO_REASSIGNMENT_IN_PROGRESS"), "{stderr}");
    let stderr = fails(&broker, &["topic", "reassign", &topic, "--partition", "7", "--replicas", "1"])?;
    ensure!(stderr.contains("UNKNOWN_TOPIC_OR_PARTITION"), "{stderr}");
    let stderr = fails(&broker, &["topic", "reassign", &topic, "--partition", "0", "--replicas", "1,1"])?;
    ensure!(stderr.contains("twice"), "{stderr}");
    // Moving to the replicas it already has is a no-op the broker accepts.
    ok(&broker, &["topic", "reassign", &topic, "--partition", "0", "--replicas", "1"])?;
    let text = ok(&broker, &["topic", "reassign", "--list"])?;
    ensure!(text.contains("No reassignments in progress"), "{text}");
    let listed = json(&broker, &["topic", "reassign", &topic, "--list"])?;
    ensure!(listed == serde_json::json!([]), "{listed}");
    let d = json(&broker, &["topic", "describe", &topic])?;
    ensure!(d["partitions"][0]["replicas"] == serde_json::json!([1]), "{d}");
    Ok(())
}

#[test]
fn three_brokers_route_to_leaders_and_coordinators_and_move_replicas() -> Result<()> {
    let brokers = karst_tests::cluster::start_cluster(3, |_| vec!["--set".into(), "group.initial.rebalance.delay.ms=0".into()])?;
    let dir = tempfile::tempdir()?;
    let all = brokers.iter().map(Broker::bootstrap).collect::<Vec<_>>().join(",");
    let via = &brokers[1];
    let with_all = |args: &[&str]| -> Result<Command> {
        let mut cmd = Command::new(karst_bin()?);
        cmd.args(args).args(["--bootstrap-server", &all]).stdin(Stdio::null());
        scrub_env(&mut cmd);
        Ok(cmd)
    };

    let info = json(via, &["cluster", "info"])?;
    let ids: Vec<i64> = info["brokers"].as_array().context("brokers")?.iter().filter_map(|b| b["id"].as_i64()).collect();
    ensure!(ids == [1, 2, 3], "{info}");

    let topic = unique_topic("cli-cluster");
    ok(via, &["topic", "create", &topic, "--partitions", "6", "--replication-factor", "3"])?;
    let d = wait_for("every partition to have three in-sync replicas", TIMEOUT, || {
        json(via, &["topic", "describe", &topic])
            .ok()
            .filter(|d| d["partitions"].as_array().is_some_and(|ps| ps.iter().all(|p| p["isr"].as_array().is_some_and(|i| i.len() == 3))))
    })?;
    let leaders: BTreeSet<i64> = d["partitions"].as_array().context("partitions")?.iter().filter_map(|p| p["leader"].as_i64()).collect();
    ensure!(leaders.len() == 3, "leaders should be spread over the brokers: {d}");

    // Produce through a comma list; every partition's leader gets its share.
    let input: Vec<String> = (0..600).map(|i| format!("k{i}:v{i}")).collect();
    let mut cmd = with_all(&["produce", &topic, "--key-separator", ":"])?;
    cmd.stdin(write_file(dir.path(), "in", &input)?);
    run_checked(&mut cmd, TIMEOUT)?;
    let got = run_checked(kcat(&brokers[2]).args(["-C", "-t", &topic, "-o", "beginning", "-e", "-q", "-f", "%s\n"]), TIMEOUT)?;
    let read: BTreeSet<String> = lines(&String::from_utf8_lossy(&got.stdout)).into_iter().collect();
    let want: BTreeSet<String> = (0..600).map(|i| format!("v{i}")).collect();
    ensure!(read == want, "kcat read {} distinct values", read.len());

    // A group member reads from all leaders and commits to its coordinator.
    let group = unique_topic("cli-cg");
    let out = run_checked(
        &mut with_all(&["consume", &topic, "--group", &group, "--from", "beginning", "--max-messages", "600", "--timeout-ms", "20000"])?,
        TIMEOUT,
    )?;
    let read: BTreeSet<String> = lines(&String::from_utf8_lossy(&out.stdout)).into_iter().collect();
    ensure!(read == want, "the group member read {} distinct values", read.len());
    let d = json(&brokers[0], &["group", "describe", &group])?;
    let committed: i64 = d["offsets"].as_array().context("offsets")?.iter().filter_map(|o| o["committed_offset"].as_i64()).sum();
    ensure!(committed == 600 && d["state"] == "Empty", "{d}");

    // Move partition 0 to brokers 2 and 3 and watch it complete.
    ok(via, &["topic", "reassign", &topic, "--partition", "0", "--replicas", "2,3"])?;
    wait_until("the move to complete", TIMEOUT, || {
        json(via, &["topic", "describe", &topic]).is_ok_and(|d| d["partitions"][0]["replicas"] == serde_json::json!([2, 3]))
            && ok(via, &["topic", "reassign", "--list"]).is_ok_and(|t| t.contains("No reassignments in progress"))
    })?;
    let out = ok(via, &["consume", &topic, "--partition", "0", "--from", "beginning", "--timeout-ms", "2000", "--format", "json"])?;
    ensure!(out.lines().count() as i64 > 0, "partition 0 is readable after the move");
    Ok(())
}

/// A broker that answers ApiVersions properly and then garbage (random bytes, a
/// 2 GiB or negative size prefix, a wrong correlation id, undecodable or zeroed
/// bodies, silence): every command ends with exit 1 and a one-line error naming
/// the broker (a zeroed body may decode as an empty answer), never a panic or a
/// hang past its request timeout.
#[test]
fn garbage_from_a_broker_ends_the_command_with_an_error() -> Result<()> {
    use karst_tests::garbage::{GarbageServer, KINDS};
    let server = GarbageServer::start_after_handshake()?;
    let addr = server.addr().to_string();
    let bin = karst_bin()?;
    let commands: [&[&str]; 2] = [&["topic", "list"], &["cluster", "info"]];
    // In parallel, so the silent answers cost one request timeout in all; each
    // command meets whichever kind its connection is given, every kind twice.
    let runs: Vec<_> = (0..2 * KINDS.len())
        .map(|i| {
            let args = commands[i % 2];
            let mut cmd = Command::new(&bin);
            cmd.args(args).arg("--bootstrap-server").arg(&addr).stdin(Stdio::null());
            scrub_env(&mut cmd);
            std::thread::spawn(move || (args, run_command(&mut cmd, TIMEOUT)))
        })
        .collect();
    let mut failed = 0;
    for run in runs {
        let (args, out) = run.join().map_err(|_| anyhow::anyhow!("a command thread panicked"))?;
        let out = out?;
        // A zeroed body can decode as a valid empty answer (no topics, no brokers):
        // that one may succeed; it must not panic.
        if out.status.success() {
            ensure!(!String::from_utf8_lossy(&out.stderr).contains("panicked"), "{}", show_output(&out));
            continue;
        }
        let stderr = friendly_failure(args, &out)?;
        ensure!(stderr.contains(&addr), "karst {args:?}: the error does not name {addr}:\n{stderr}");
        failed += 1;
    }
    ensure!(failed >= 2 * (KINDS.len() - 1), "only {failed} of {} commands failed on garbage", 2 * KINDS.len());
    ensure!(server.served() >= 2 * KINDS.len(), "only {} connections were answered", server.served());
    Ok(())
}

/// `karst consume --read-committed` reads as a read_committed consumer: the committed
/// transactions' records, not the aborted one's (which a plain consume shows), and
/// nothing of a transaction still open.
#[test]
fn cli_consume_read_committed_skips_aborted_and_open_transactions() -> Result<()> {
    use karst_tests::txn::{send_all, txn_producer, values, TIMEOUT as TXN_TIMEOUT};
    use rdkafka::producer::Producer;
    let broker = Broker::start(&[])?;
    let topic = unique_topic("cli-txn");
    ok(&broker, &["topic", "create", &topic, "--partitions", "1"])?;
    let p = txn_producer(&broker.bootstrap(), Some(&format!("{topic}-txn")))?;
    p.init_transactions(TXN_TIMEOUT)?;
    for (prefix, commit) in [("first", true), ("aborted", false), ("second", true), ("open", false)] {
        p.begin_transaction()?;
        send_all(&p, &topic, &values(prefix, 3), None)?;
        match (commit, prefix) {
            (true, _) => p.commit_transaction(TXN_TIMEOUT)?,
            (false, "aborted") => p.abort_transaction(TXN_TIMEOUT)?,
            _ => {} // left open
        }
    }
    let committed: Vec<String> = values("first", 3).into_iter().chain(values("second", 3)).collect();
    // The markers follow the commit's answer: wait until the second is readable.
    let mut out = String::new();
    wait_until("the committed records readable", TIMEOUT, || {
        out = ok(&broker, &["consume", &topic, "--read-committed", "--from", "beginning", "--timeout-ms", "1000"]).unwrap_or_default();
        lines(&out) == committed
    })?;
    ensure!(lines(&out) == committed, "read_committed: {out}");
    let all = ok(&broker, &["consume", &topic, "--from", "beginning", "--max-messages", "12", "--timeout-ms", "10000"])?;
    let every: Vec<String> = ["first", "aborted", "second", "open"].iter().flat_map(|p| values(p, 3)).collect();
    ensure!(lines(&all) == every, "read_uncommitted: {all}");
    Ok(())
}
