//! kcat (Debian's, librdkafka 2.0): metadata listing and a 100,000-message
//! produce/consume round trip that must be byte-identical.

use std::fs::File;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, ensure, Result};
use karst_tests::raw::RawClient;
use karst_tests::{run_checked, unique_topic, Broker};

const N: usize = 100_000;
const TIMEOUT: Duration = Duration::from_secs(120);

fn kcat(broker: &Broker) -> Command {
    let mut cmd = Command::new("kcat");
    cmd.arg("-b").arg(broker.bootstrap()).stdin(Stdio::null());
    cmd
}

/// Produces the lines of `input` with `kcat -P` (plus `extra` args), then consumes
/// partition 0 from the beginning with format `format` and returns the output.
fn produce_then_consume(broker: &Broker, topic: &str, input: &[u8], extra: &[&str], format: &str) -> Result<Vec<u8>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("input");
    File::create(&path)?.write_all(input)?;
    run_checked(kcat(broker).args(["-P", "-t", topic, "-p", "0", "-X", "acks=all"]).args(extra).stdin(File::open(&path)?), TIMEOUT)?;
    let out = run_checked(kcat(broker).args(["-C", "-t", topic, "-p", "0", "-o", "beginning", "-e", "-q", "-f", format]), TIMEOUT)?;
    Ok(out.stdout)
}

/// Fails with the first differing line instead of dumping megabytes.
fn assert_same_lines(got: &[u8], want: &[u8]) -> Result<()> {
    if got == want {
        return Ok(());
    }
    let got_lines: Vec<&[u8]> = got.split(|&b| b == b'\n').collect();
    let want_lines: Vec<&[u8]> = want.split(|&b| b == b'\n').collect();
    for (i, (g, w)) in got_lines.iter().zip(&want_lines).enumerate() {
        if g != w {
            bail!(
                "line {i} differs: got {:?}, want {:?} ({} lines consumed, {} produced)",
                String::from_utf8_lossy(g),
                String::from_utf8_lossy(w),
                got_lines.len(),
                want_lines.len()
            );
        }
    }
    bail!("consumed {} lines ({} bytes), produced {} lines ({} bytes)", got_lines.len(), got.len(), want_lines.len(), want.len())
}

#[test]
fn kcat_lists_the_broker() -> Result<()> {
    let broker = Broker::start(&[])?;
    let out = run_checked(kcat(&broker).arg("-L"), TIMEOUT)?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(text.contains(" 1 brokers:"), "kcat -L output:\n{text}");
    let line = format!("broker 1 at {}", broker.bootstrap());
    ensure!(text.contains(&line), "kcat -L does not show {line:?}:\n{text}");
    Ok(())
}

#[test]
fn kcat_round_trips_100k_messages_byte_identical() -> Result<()> {
    let broker = Broker::start(&[])?;
    let topic = unique_topic("kcat");
    RawClient::connect(broker.addr())?.create_topic(&topic, 1, &[])?;
    let mut input = Vec::new();
    for i in 0..N {
        writeln!(input, "message-{i:06}-{}", "x".repeat(i % 97))?;
    }
    let got = produce_then_consume(&broker, &topic, &input, &[], "%s\n")?;
    assert_same_lines(&got, &input)?;
    let listing = run_checked(kcat(&broker).args(["-L", "-t", &topic]), TIMEOUT)?;
    let text = String::from_utf8_lossy(&listing.stdout);
    ensure!(text.contains("partition 0, leader 1"), "kcat -L -t {topic}:\n{text}");
    broker_alive(broker)
}

#[test]
fn kcat_round_trips_100k_keyed_messages_byte_identical() -> Result<()> {
    let broker = Broker::start(&[])?;
    let topic = unique_topic("kcat-keyed");
    RawClient::connect(broker.addr())?.create_topic(&topic, 1, &[])?;
    let mut input = Vec::new();
    for i in 0..N {
        writeln!(input, "key-{}:value-{i:06}-{}", i % 1000, "y".repeat(i % 53))?;
    }
    let got = produce_then_consume(&broker, &topic, &input, &["-K:"], "%k:%s\n")?;
    assert_same_lines(&got, &input)?;
    broker_alive(broker)
}

#[test]
fn kcat_producer_auto_creates_topic() -> Result<()> {
    let broker = Broker::start(&[])?;
    let topic = unique_topic("kcat-auto");
    let input: Vec<u8> = (0..100).flat_map(|i| format!("auto-{i}\n").into_bytes()).collect();
    let got = produce_then_consume(&broker, &topic, &input, &[], "%s\n")?;
    assert_same_lines(&got, &input)?;
    broker_alive(broker)
}

fn broker_alive(mut broker: Broker) -> Result<()> {
    broker.check_running()
}
