//! Transactions end to end with real clients, each program run against Karst and then,
//! unchanged, against Apache Kafka (the reference), so a failure on Karst alone is
//! Karst's: franz-go, the current IBM sarama, the Java client, Kafka Streams with
//! exactly_once_v2, confluent-kafka (Python) and the `rdkafka` crate.
//!
//! Every client checks the same things in its own words: a transactional producer
//! commits one transaction, aborts the next and commits a third in a 1-partition topic;
//! the log then ends at three markers past the records, for read_uncommitted and
//! read_committed alike; a read_committed consumer reads exactly the committed records,
//! in order and at their offsets, a read_uncommitted one every record; an open
//! transaction moves the high watermark but holds the last stable offset back; a
//! consume-transform-produce loop commits a group's offsets inside its transactions
//! (AddOffsetsToTxn / TxnOffsetCommit), after which the output holds every input once
//! and the group's committed offsets equal the input's end offsets. The Java program
//! also fences a zombie producer (a second `initTransactions` with the same
//! transactional.id).
//!
//! A missing client (no Go, no Java or jars) skips the test saying why; where Kafka
//! cannot run, the Kafka half is skipped.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use karst_tests::java::run_java_program;
use karst_tests::txn::{consumer, create_topic, ends, read, send_all, settle, txn_producer, values, TIMEOUT};
use karst_tests::{go_scenario_on_both, python_script, run_command, show_output, unique_topic, Broker, KafkaBroker, KafkaUnavailable};
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::producer::Producer;
use rdkafka::{Offset, TopicPartitionList};
const PROGRAM_TIMEOUT: Duration = Duration::from_secs(240);

/// Runs `scenario(bootstrap, name)` against a fresh Karst broker, then against Apache
/// Kafka, printing what each run reported. A [`KafkaUnavailable`] from the Karst run
/// (no Java or no jars) skips the test; from starting Kafka, only the Kafka half.
fn karst_then_kafka(what: &str, scenario: impl Fn(&str, &str) -> Result<String>) -> Result<()> {
    let mut karst = Broker::start(&["--set", "group.initial.rebalance.delay.ms=0"])?;
    match scenario(&karst.bootstrap(), &unique_topic(what)) {
        Ok(out) => println!("against Karst:\n{out}"),
        Err(e) => match KafkaUnavailable::of(&e) {
            Some(why) => {
                println!("skipped: {why}");
                return Ok(());
            }
            None => return Err(e.context(format!("{what} against Karst"))),
        },
    }
    karst.check_running()?;
    drop(karst);
    let kafka = match KafkaBroker::start() {
        Ok(k) => k,
        Err(e) => match KafkaUnavailable::of(&e) {
            Some(why) => {
                println!("Apache Kafka half skipped: {why}");
                return Ok(());
            }
            None => return Err(e),
        },
    };
    let out =
        scenario(&kafka.bootstrap(), &unique_topic(what)).with_context(|| format!("{what} against Apache Kafka {}", kafka.version()))?;
    println!("against Apache Kafka {}:\n{out}", kafka.version());
    Ok(())
}

/// franz-go (`tests/go/franz`, mode txn): commit / abort / commit with a
/// `kgo.TransactionalID` producer, end offset and last stable offset 153, a
/// read_committed consumer reads the 100 committed records in order, read_uncommitted
/// all 150; an open transaction holds the last stable offset; a `GroupTransactSession`
/// transforms 300 records, the output holds each once, the group's offsets reach the
/// input's end.
#[test]
fn franz_go_transactions() -> Result<()> {
    go_scenario_on_both("franz", "txn")
}

/// IBM sarama (`tests/go/sarama`, mode txn), with its default Version and the newest:
/// a transactional SyncProducer commits / aborts / commits, read_committed and
/// read_uncommitted consumers, an open transaction's last stable offset, a
/// ConsumerGroup that writes each message in its own transaction with
/// AddMessageToTxnWithGroupMetadata.
#[test]
fn sarama_current_transactions() -> Result<()> {
    go_scenario_on_both("sarama", "txn")
}

/// The Java client (`tests/java/TxnCheck.java`): commit / abort / commit, listOffsets by
/// isolation level, read_committed and read_uncommitted consumers, an open transaction;
/// consume-transform-produce with `sendOffsetsToTransaction(offsets,
/// consumer.groupMetadata())` whose first transaction is aborted (its offsets not
/// committed) and redone; a zombie producer fenced by a second `initTransactions`
/// (ProducerFencedException or InvalidProducerEpochException), its record never read
/// read_committed.
#[test]
fn java_client_transactions_and_zombie_fencing() -> Result<()> {
    karst_then_kafka("java-txn", |bootstrap, topic| {
        let out = run_java_program("TxnCheck.java", &[bootstrap, topic], PROGRAM_TIMEOUT)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    })
}

/// Kafka Streams' word count (`tests/java/StreamsCheck.java eos`) with
/// processing.guarantee=exactly_once_v2: every count update read read_committed exactly
/// once and in order per word, the application's offsets committed at the end of the
/// input, the output carrying transaction markers.
#[test]
fn kafka_streams_word_count_exactly_once_v2() -> Result<()> {
    let state = tempfile::tempdir()?;
    karst_then_kafka("streams-eos", |bootstrap, prefix| {
        let dir = state.path().join(prefix).display().to_string();
        let out = run_java_program("StreamsCheck.java", &[bootstrap, prefix, &dir, "eos"], PROGRAM_TIMEOUT)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    })
}

/// confluent-kafka (`tests/python/transactions.py`): init_transactions, commit / abort /
/// commit, watermarks by isolation level, read_committed and read_uncommitted
/// consumers, an open transaction, send_offsets_to_transaction with
/// consumer_group_metadata() in a consume-transform-produce loop.
#[test]
fn confluent_kafka_transactions() -> Result<()> {
    karst_then_kafka("python-txn", |bootstrap, _| {
        let script = python_script("transactions.py");
        let out = run_command(
            Command::new("python3")
                .arg(&script)
                .arg(bootstrap)
                .env("PYTHONDONTWRITEBYTECODE", "1")
                .env("PYTHONUNBUFFERED", "1")
                .stdin(Stdio::null()),
            PROGRAM_TIMEOUT,
        )?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        ensure!(out.status.success() && stdout.trim_end().ends_with("OK"), "{} failed\n{}", script.display(), show_output(&out));
        Ok(stdout)
    })
}

/// The `rdkafka` crate (librdkafka): the same scenario as the others, in Rust.
#[test]
fn rdkafka_transactions() -> Result<()> {
    karst_then_kafka("rdkafka-txn", rdkafka_scenario)
}

fn rdkafka_scenario(bootstrap: &str, topic: &str) -> Result<String> {
    const N: usize = 40;
    let n = N as i64;
    let mut report = Vec::new();
    create_topic(bootstrap, topic, 1)?;
    let p = txn_producer(bootstrap, Some(&format!("{topic}-txn")))?;
    p.init_transactions(TIMEOUT)?;
    let (first, aborted, second) = (values("committed1", N), values("aborted", N), values("committed2", N));
    for (vals, commit) in [(&first, true), (&aborted, false), (&second, true)] {
        p.begin_transaction()?;
        send_all(&p, topic, vals, None)?;
        if commit {
            p.commit_transaction(TIMEOUT)?;
        } else {
            p.abort_transaction(TIMEOUT)?;
        }
    }
    report.push(format!("transactional producer: {N} committed, {N} aborted, {N} committed"));

    // A coordinator may answer EndTxn before the markers are written: awaited.
    let want = (3 * n + 3, 3 * n + 3);
    let got = settle(&want, || ends(bootstrap, topic, 0))?;
    ensure!(got == want, "(high watermark, last stable offset) {got:?}, want {want:?}: 3 x {N} records and 3 markers");
    let rc = read(bootstrap, topic, 0, 0, "read_committed", 2 * N)?;
    let committed: Vec<String> = first.iter().chain(&second).cloned().collect();
    let got: Vec<String> = rc.iter().map(|(_, v)| v.clone()).collect();
    ensure!(
        got == committed,
        "read_committed consumer read {} records, not the {} committed in order: {got:?}",
        got.len(),
        committed.len()
    );
    ensure!(
        rc[N - 1].0 == n - 1 && rc[N].0 == 2 * n + 2,
        "committed records at offsets {} and {}, want {} and {}",
        rc[N - 1].0,
        rc[N].0,
        n - 1,
        2 * n + 2
    );
    report.push(format!("watermarks {want:?}; read_committed consumer: exactly the {} committed records in order", 2 * N));
    let ru: Vec<String> = read(bootstrap, topic, 0, 0, "read_uncommitted", 3 * N)?.into_iter().map(|(_, v)| v).collect();
    let all: Vec<String> = first.iter().chain(&aborted).chain(&second).cloned().collect();
    ensure!(ru == all, "read_uncommitted consumer read {} records, not all {} in order", ru.len(), all.len());
    report.push(format!("read_uncommitted consumer: all {}, the aborted ones too", 3 * N));

    // An open transaction holds the last stable offset back.
    let open = values("open", N);
    p.begin_transaction()?;
    send_all(&p, topic, &open, None)?;
    let got = ends(bootstrap, topic, 0)?;
    ensure!(
        got == (4 * n + 3, 3 * n + 3),
        "open transaction: (high watermark, last stable offset) {got:?}, want {:?}",
        (4 * n + 3, 3 * n + 3)
    );
    let held = consumer(bootstrap, "read_committed", "karst-tests-unused")?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(3 * n + 3))?;
    held.assign(&tpl)?;
    let early = Instant::now() + Duration::from_secs(2);
    while Instant::now() < early {
        if let Some(m) = held.poll(Duration::from_millis(200)) {
            let m = m?;
            bail!("read_committed consumer got offset {} of an open transaction", m.offset());
        }
    }
    p.commit_transaction(TIMEOUT)?;
    let mut after = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    while after.len() < N {
        ensure!(Instant::now() < deadline, "after the commit: read {} of {N}", after.len());
        if let Some(m) = held.poll(Duration::from_millis(200)) {
            after.push(String::from_utf8_lossy(m?.payload().unwrap_or_default()).into_owned());
        }
    }
    ensure!(after == open, "after the commit the read_committed consumer read {after:?}");
    report.push(format!("open transaction: last stable offset {} until the commit, then its {N} records", 3 * n + 3));

    // Consume-transform-produce, offsets committed in the transactions.
    const M: usize = 150;
    let (input, output, group) = (format!("{topic}-in"), format!("{topic}-out"), format!("{topic}-etl"));
    create_topic(bootstrap, &input, 2)?;
    create_topic(bootstrap, &output, 1)?;
    let inputs = values("in", M);
    let plain = txn_producer(bootstrap, None)?;
    for (i, chunk) in inputs.chunks(M / 5).enumerate() {
        send_all(&plain, &input, chunk, Some(&format!("key-{i}")))?;
    }
    let etl = txn_producer(bootstrap, Some(&format!("{topic}-etl-txn")))?;
    etl.init_transactions(TIMEOUT)?;
    let c = consumer(bootstrap, "read_committed", &group)?;
    c.subscribe(&[&input])?;
    let (mut done, mut txns) = (0, 0);
    let deadline = Instant::now() + TIMEOUT;
    while done < M {
        ensure!(Instant::now() < deadline, "transform: {done} of {M} records in committed transactions");
        let mut batch = Vec::new();
        while let Some(m) = c.poll(Duration::from_millis(if batch.is_empty() { 500 } else { 0 })) {
            let m = m.context("group consumer")?;
            batch.push((m.partition(), m.offset(), String::from_utf8_lossy(m.payload().unwrap_or_default()).to_uppercase()));
            if batch.len() == 50 {
                break;
            }
        }
        if batch.is_empty() {
            continue;
        }
        etl.begin_transaction()?;
        send_all(&etl, &output, &batch.iter().map(|(_, _, v)| v.clone()).collect::<Vec<_>>(), None)?;
        let mut next = std::collections::BTreeMap::new();
        for (part, off, _) in &batch {
            next.insert(*part, off + 1);
        }
        let mut offsets = TopicPartitionList::new();
        for (part, off) in next {
            offsets.add_partition_offset(&input, part, Offset::Offset(off))?;
        }
        let meta = c.group_metadata().context("the group consumer has no group metadata")?;
        etl.send_offsets_to_transaction(&offsets, &meta, TIMEOUT)?;
        etl.commit_transaction(TIMEOUT)?;
        done += batch.len();
        txns += 1;
    }
    ensure!(done == M, "transform: {done} records, want {M}");
    report.push(format!("consume-transform-produce: {M} records in {txns} transactions with send_offsets_to_transaction"));

    let mut out: Vec<String> = read(bootstrap, &output, 0, 0, "read_committed", M)?.into_iter().map(|(_, v)| v).collect();
    out.sort();
    let mut want: Vec<String> = inputs.iter().map(|v| v.to_uppercase()).collect();
    want.sort();
    ensure!(out == want, "output: {} records, not each of the {M} transformed inputs once", out.len());
    report.push("output topic: every input once, transformed".to_string());

    let input_ends = [ends(bootstrap, &input, 0)?.0, ends(bootstrap, &input, 1)?.0];
    ensure!(input_ends.iter().sum::<i64>() == M as i64, "input end offsets {input_ends:?} do not add up to {M}");
    // Offsets committed in a transaction show once its markers are written: awaited.
    let mut query = TopicPartitionList::new();
    query.add_partition(&input, 0);
    query.add_partition(&input, 1);
    let want = vec![Offset::Offset(input_ends[0]), Offset::Offset(input_ends[1])];
    let committed =
        settle(&want, || Ok(c.committed_offsets(query.clone(), TIMEOUT)?.elements().iter().map(|e| e.offset()).collect::<Vec<_>>()))?;
    ensure!(committed == want, "group {group}: committed {committed:?}, input ends {input_ends:?}");
    report.push(format!("the group's committed offsets equal the input's end offsets {input_ends:?}"));
    Ok(report.join("\n"))
}
