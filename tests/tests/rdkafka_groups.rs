//! The `rdkafka` crate (librdkafka 2.12 built from source) in a KIP-848 consumer
//! group (`group.protocol=consumer`): members join, leave and join by regular
//! expression while records keep coming; each record is committed as it is
//! processed, so each is consumed exactly once and the commits end at the log end.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, ensure, Result};
use karst_tests::group::{fill, positions};
use karst_tests::raw::RawClient;
use karst_tests::{unique_topic, wait_until, Broker};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;

const PARTITIONS: i32 = 6;

/// (member, partition, offset) for every record consumed.
type Log = Arc<Mutex<Vec<(String, i32, i64)>>>;

struct Member {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<()>>,
}

fn member(bootstrap: &str, group: &str, subscription: &str, name: &str, log: Log) -> Result<Member> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("group.protocol", "consumer")
        .set("client.id", name)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&[subscription])?;
    let stop = Arc::new(AtomicBool::new(false));
    let (halt, name) = (stop.clone(), name.to_string());
    let thread = std::thread::spawn(move || -> Result<()> {
        while !halt.load(Ordering::Relaxed) {
            match consumer.poll(Duration::from_millis(100)) {
                None => {}
                Some(Err(e)) => println!("{name}: {e}"),
                Some(Ok(m)) => {
                    // Committed before it counts as processed: a record another member
                    // gets after a revocation is past this commit.
                    consumer.commit_message(&m, CommitMode::Sync).map_err(|e| anyhow!("{name}: commit: {e}"))?;
                    log.lock().map_err(|_| anyhow!("poisoned"))?.push((name.clone(), m.partition(), m.offset()));
                }
            }
        }
        // Dropping the consumer closes it: it leaves the group.
        drop(consumer);
        Ok(())
    });
    Ok(Member { stop, thread })
}

impl Member {
    fn leave(self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().map_err(|_| anyhow!("member thread panicked"))?
    }
}

#[test]
fn rdkafka_members_join_leave_and_subscribe_by_regex_in_a_consumer_protocol_group() -> Result<()> {
    let broker = Broker::start(&["--set", "group.consumer.heartbeat.interval.ms=500"])?;
    let (addr, bootstrap) = (broker.addr(), broker.bootstrap());
    let (topic, group) = (unique_topic("rdk848"), unique_topic("rdk848-group"));
    RawClient::connect(addr)?.create_topic(&topic, PARTITIONS, &[])?;
    let log: Log = Arc::new(Mutex::new(Vec::new()));
    let mut produced = 0i64;
    let mut round = |members: usize, log: &Log| -> Result<()> {
        fill(addr, &topic, PARTITIONS, produced..produced + 20)?;
        produced += 20;
        let want = positions(PARTITIONS, 0..produced);
        wait_until("every record consumed", Duration::from_secs(60), || {
            let seen: std::collections::BTreeSet<(i32, i64)> =
                log.lock().map(|l| l.iter().map(|(_, p, o)| (*p, *o)).collect()).unwrap_or_default();
            want.is_subset(&seen)
        })
        .map_err(|e| anyhow!("{e} with {members} members"))
    };
    let mut members: Vec<Member> =
        (0..3).map(|i| member(&bootstrap, &group, &topic, &format!("m{i}"), log.clone())).collect::<Result<_>>()?;
    round(3, &log)?;
    members.remove(0).leave()?;
    round(2, &log)?;
    members.push(member(&bootstrap, &group, &format!("^{topic}.*"), "regex", log.clone())?);
    round(3, &log)?;
    members.remove(0).leave()?;
    round(2, &log)?;
    for m in members {
        m.leave()?;
    }
    let log = log.lock().map_err(|_| anyhow!("poisoned"))?.clone();
    let mut counts: BTreeMap<(i32, i64), usize> = BTreeMap::new();
    for (_, p, o) in &log {
        *counts.entry((*p, *o)).or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    ensure!(twice.is_empty(), "consumed more than once: {twice:?}");
    ensure!(counts.len() as i64 == produced * PARTITIONS as i64, "{} of {} records consumed", counts.len(), produced * PARTITIONS as i64);
    let by_regex = log.iter().filter(|(m, ..)| m == "regex").count();
    ensure!(by_regex > 0, "the member subscribed by regular expression consumed nothing");
    let committed = RawClient::connect(addr)?.committed_offsets(&group, &topic, &(0..PARTITIONS).collect::<Vec<_>>())?;
    ensure!(committed.values().all(|o| *o == produced), "committed {committed:?}, produced {produced} per partition");
    println!("{} records, each consumed once; {by_regex} by the regex member; commits at {produced}", counts.len());
    Ok(())
}
