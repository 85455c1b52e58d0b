//! Clients older than Kafka 0.11, unchanged: message formats v0/v1 on Produce v0-v2
//! and Fetch v0-v3, and the other pre-0.11 request versions. sarama 1.22 with its
//! default config (the 0.8.2 protocol) and with old `Version`s; librdkafka (kcat)
//! told not to ask for API versions and to assume an old broker; and the codec a
//! producer chose kept on disk whatever the client.

use std::fs::File;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use karst_tests::raw::RawClient;
use karst_tests::{go_binary, run_checked, run_command, show_output, unique_topic, Broker};

const TIMEOUT: Duration = Duration::from_secs(180);

/// Runs tests/sarama/legacy against a fresh 3-partition topic for each codec.
fn sarama(version: &str, codecs: &[&str]) -> Result<()> {
    let bin = go_binary("legacy")?;
    let mut broker = Broker::start(&[])?;
    for codec in codecs {
        let topic = unique_topic(&format!("sarama-legacy-{codec}"));
        RawClient::connect(broker.addr())?.create_topic(&topic, 3, &[])?;
        let mut cmd = Command::new(&bin);
        cmd.args(["-bootstrap", &broker.bootstrap(), "-topic", &topic, "-codec", codec, "-n", "10000"]).stdin(Stdio::null());
        if !version.is_empty() {
            cmd.args(["-version", version]);
        }
        let out = run_command(&mut cmd, TIMEOUT)?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        println!("{stdout}");
        ensure!(out.status.success() && stdout.trim_end().ends_with("OK"), "sarama {version:?} with {codec} failed\n{}", show_output(&out));
        ensure!(stored_codecs(&broker, &topic)? == [codec_id(codec)], "{codec}: the stored batches do not carry the producer's codec");
    }
    broker.check_running()
}

#[test]
fn sarama_with_its_default_config_round_trips_with_every_codec_it_allows() -> Result<()> {
    // sarama before 1.40 speaks the 0.8.2 protocol unless told otherwise: Produce v0
    // (message format v0), Fetch v0, ListOffsets v0. lz4 needs 0.10 in sarama.
    sarama("", &["none", "gzip", "snappy"])
}

#[test]
fn sarama_speaking_0_9_round_trips_with_every_codec_it_allows() -> Result<()> {
    sarama("0.9.0.0", &["none", "gzip", "snappy"])
}

#[test]
fn sarama_speaking_0_10_round_trips_with_every_codec() -> Result<()> {
    // Produce v2 with message format v1 (timestamps), Fetch v2.
    sarama("0.10.0.0", &["none", "gzip", "snappy", "lz4"])
}

fn codec_id(name: &str) -> i16 {
    match name {
        "gzip" => 1,
        "snappy" => 2,
        "lz4" => 3,
        "zstd" => 4,
        _ => 0,
    }
}

/// The codecs of every batch stored for `topic`, deduplicated, from the segment files.
fn stored_codecs(broker: &Broker, topic: &str) -> Result<Vec<i16>> {
    let mut codecs = Vec::new();
    for p in 0..3 {
        let dir = broker.data_dir().join(format!("{topic}-{p}"));
        if !dir.is_dir() {
            continue;
        }
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "log") {
                continue;
            }
            let bytes = std::fs::read(&path)?;
            // Whole batches only: the active segment may end in unused space.
            for (_, header) in karst_batch::batches(&bytes).map_while(Result::ok) {
                let codec = header.compression();
                if !codecs.contains(&codec) {
                    codecs.push(codec);
                }
            }
        }
    }
    Ok(codecs)
}

fn kcat(broker: &Broker, extra: &[&str]) -> Command {
    let mut cmd = Command::new("kcat");
    cmd.arg("-b").arg(broker.bootstrap()).args(extra).stdin(Stdio::null());
    cmd
}

/// kcat produces `lines` to partition 0 of a new topic and consumes them back, with
/// `extra` librdkafka settings on both sides.
fn kcat_round_trip(broker: &Broker, codec: &str, extra: &[&str]) -> Result<String> {
    let topic = unique_topic(&format!("kcat-legacy-{codec}"));
    RawClient::connect(broker.addr())?.create_topic(&topic, 1, &[])?;
    let lines: Vec<String> = (0..5_000).map(|i| format!("key-{}\tline {i} {}", i % 13, "repetitive ".repeat(1 + i % 7))).collect();
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("input");
    File::create(&path)?.write_all((lines.join("\n") + "\n").as_bytes())?;
    let mut produce = kcat(broker, extra);
    produce.args(["-P", "-t", &topic, "-p", "0", "-K", "\t", "-z", codec, "-X", "acks=all"]).stdin(File::open(&path)?);
    run_checked(&mut produce, TIMEOUT)?;
    let out =
        run_checked(kcat(broker, extra).args(["-C", "-t", &topic, "-p", "0", "-o", "beginning", "-e", "-q", "-f", "%k\t%s\n"]), TIMEOUT)?;
    let got: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
    ensure!(got.len() == lines.len(), "{codec} {extra:?}: consumed {} of {} lines", got.len(), lines.len());
    ensure!(got == lines, "{codec} {extra:?}: consumed lines differ from the produced ones");
    Ok(topic)
}

#[test]
fn kcat_assuming_an_old_broker_round_trips_with_every_codec() -> Result<()> {
    // librdkafka without ApiVersions: broker.version.fallback decides the request
    // versions and the message format (0.8.2 and 0.9.0: v0; 0.10.0: v1).
    let broker = Broker::start(&[])?;
    for fallback in ["0.8.2", "0.9.0", "0.10.0"] {
        let setting = format!("broker.version.fallback={fallback}");
        let extra = ["-X", "api.version.request=false", "-X", &setting];
        for codec in ["none", "gzip", "snappy", "lz4"] {
            let topic = kcat_round_trip(&broker, codec, &extra).with_context(|| format!("fallback {fallback}"))?;
            ensure!(stored_codecs(&broker, &topic)? == [codec_id(codec)], "fallback {fallback}, {codec}: stored codecs differ");
        }
    }
    broker_alive(broker)
}

#[test]
fn kcat_and_rdkafka_keep_the_codec_they_were_asked_for() -> Result<()> {
    // librdkafka before its fix for KAFKA-18659 (Debian's kcat has 2.0.2) turns gzip,
    // snappy and lz4 off when a broker's Produce versions start above 0: the data
    // round-trips, uncompressed. Debian's kcat is built without zstd.
    let broker = Broker::start(&[])?;
    for codec in ["gzip", "snappy", "lz4"] {
        let topic = kcat_round_trip(&broker, codec, &[])?;
        let stored = stored_codecs(&broker, &topic)?;
        ensure!(stored == [codec_id(codec)], "kcat -z {codec}: stored batches carry codecs {stored:?}");
    }
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let topic = unique_topic(&format!("rdkafka-codec-{codec}"));
        RawClient::connect(broker.addr())?.create_topic(&topic, 1, &[])?;
        rdkafka_produce(&broker, &topic, codec)?;
        let stored = stored_codecs(&broker, &topic)?;
        ensure!(stored == [codec_id(codec)], "rdkafka compression.type={codec}: stored batches carry codecs {stored:?}");
    }
    broker_alive(broker)
}

/// 2,000 repetitive records through the `rdkafka` crate (librdkafka 2.12) with `codec`.
fn rdkafka_produce(broker: &Broker, topic: &str, codec: &str) -> Result<()> {
    use rdkafka::config::ClientConfig;
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("compression.type", codec)
        .set("linger.ms", "20")
        .set("acks", "all")
        .create()?;
    for i in 0..2_000 {
        let value = format!("record {i} {}", "repetitive ".repeat(1 + i % 7));
        producer.send(BaseRecord::<(), _>::to(topic).partition(0).payload(&value)).map_err(|(e, _)| anyhow::anyhow!("send {i}: {e}"))?;
    }
    producer.flush(Duration::from_secs(30))?;
    ensure!(producer.in_flight_count() == 0, "{codec}: records still in flight");
    Ok(())
}

fn broker_alive(mut broker: Broker) -> Result<()> {
    broker.check_running()
}
