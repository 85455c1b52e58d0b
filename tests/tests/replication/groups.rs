//! Groups under the replication nemesis: kill -9 of the group's coordinator, kill -9
//! of a partition leader, SIGSTOP of a broker until the others drop it from the ISR,
//! while an acks=all producer keeps writing to a replicated topic.
//!
//! - A KIP-848 consumer group (rdkafka members committing synchronously; after the
//!   nemesis one leaves with a record uncommitted and another joins) loses no committed
//!   progress: a record is consumed again only past the last commit that had succeeded
//!   on its partition, a partition's commits never go backwards, the coordinator never
//!   answers OffsetFetch below a commit that had succeeded, every record is consumed
//!   and the commits end at the log end.
//! - A KIP-932 share group (consumers on the raw protocol accepting every record)
//!   delivers every record and has it accepted at least once, and never delivers again
//!   a record whose acceptance had been acknowledged.
//!
//! Each checker prints its counts, and the step of the nemesis under way when what it
//! counts happened.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::thread::JoinHandle;

use anyhow::bail;
use kafka_protocol::messages::{FindCoordinatorRequest, ShareFetchResponse};
use karst_tests::share::{acquired_by_partition, heartbeat, share_ack_partitions, share_fetch_partitions, start_at_earliest, Ack, ACCEPT};
use uuid::Uuid;

use super::*;

/// Records a second while the nemesis runs: few enough for consumers that commit or
/// acknowledge as they go, on a machine shared by three brokers.
const GROUP_RATE: f64 = 300.0;
/// How long the group may take to make progress after a fault.
const PROGRESS: Duration = Duration::from_secs(30);
/// How often a consumer-group member commits what it consumed.
const COMMIT_EVERY: Duration = Duration::from_millis(200);
/// How long a share consumer waits for a broker's answer: a paused broker holds a
/// consumer (and its heartbeats) no longer than this.
const SHARE_IO_TIMEOUT: Duration = Duration::from_secs(8);
/// How long a share consumer leaves a broker alone after it did not answer.
const RETRY_BACKOFF: Duration = Duration::from_millis(200);
const REQUEST_TIMED_OUT: i16 = 7;
const UNKNOWN_MEMBER_ID: i16 = 25;
const FENCED_MEMBER_EPOCH: i16 = 110;
const SHARE_SESSION_NOT_FOUND: i16 = 122;
const INVALID_SHARE_SESSION_EPOCH: i16 = 123;

/// Three brokers whose `__consumer_offsets` (replicated on all three, as the broker
/// sizes it by the brokers there are) has three partitions, with `settings` more.
fn start_group_cluster(settings: &[&str]) -> Result<Vec<Broker>> {
    let mut all = vec!["offsets.topic.num.partitions=3"];
    all.extend_from_slice(settings);
    start_nodes_with(&[None, None, None], &all)
}

/// Events of several threads, ordered by one clock: `tick` before a request is sent
/// and after its answer came says which of two requests on different threads surely
/// happened before the other.
struct Journal<E> {
    clock: AtomicU64,
    events: Mutex<Vec<E>>,
    /// The nemesis's steps, from when each began.
    phases: Mutex<Vec<(u64, String)>>,
}

impl<E: Clone> Journal<E> {
    fn new() -> Arc<Journal<E>> {
        Arc::new(Journal { clock: AtomicU64::new(0), events: Mutex::new(Vec::new()), phases: Mutex::new(Vec::new()) })
    }

    /// A step of the nemesis begins.
    fn mark(&self, phase: String) {
        let at = self.tick();
        self.phases.lock().unwrap_or_else(|p| p.into_inner()).push((at, phase));
    }

    /// The step of the nemesis under way at `t`.
    fn phase_at(&self, t: u64) -> String {
        let phases = self.phases.lock().unwrap_or_else(|p| p.into_inner());
        phases.iter().rev().find(|(at, _)| *at <= t).map_or_else(|| "before the nemesis".to_string(), |(_, p)| p.clone())
    }

    /// How many of `ticks` fell in each step of the nemesis, in order.
    fn by_phase(&self, ticks: impl IntoIterator<Item = u64>) -> Vec<(String, usize)> {
        let mut counts: Vec<(String, usize)> = Vec::new();
        let mut ticks: Vec<u64> = ticks.into_iter().collect();
        ticks.sort_unstable();
        for t in ticks {
            let phase = self.phase_at(t);
            match counts.last_mut() {
                Some((p, n)) if *p == phase => *n += 1,
                _ => counts.push((phase, 1)),
            }
        }
        counts
    }

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::SeqCst)
    }

    fn push(&self, e: E) {
        self.events.lock().unwrap_or_else(|p| p.into_inner()).push(e);
    }

    fn events(&self) -> Vec<E> {
        self.events.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn count(&self, f: impl Fn(&E) -> usize) -> usize {
        self.events.lock().unwrap_or_else(|p| p.into_inner()).iter().map(f).sum()
    }
}

/// The coordinator of `group` as some live broker answers FindCoordinator.
fn coordinator(brokers: &[Broker], group: &str, not: i32) -> Result<i32> {
    wait_for("the group's coordinator", TIMEOUT, || live(brokers).find_map(|b| coordinator_of(b, group)).filter(|c| *c != not))
}

/// Index into `brokers` of node `id`.
fn index(id: i32) -> usize {
    (id - 1) as usize
}

/// The nemesis, each fault once, each lifted only after the group made progress
/// without the broker (`progress` grew by `step`), the cluster settled in between:
/// kill -9 of the group's coordinator; kill -9 of a leader of `topic` that does not
/// coordinate the group; SIGSTOP of the group's (new) coordinator until the others have
/// dropped it from every ISR of `topic`.
fn nemesis<E: Clone>(
    brokers: &mut [Broker],
    topic: &str,
    group: &str,
    journal: &Journal<E>,
    progress: &dyn Fn() -> usize,
    step: usize,
) -> Result<()> {
    let progressed = |what: &str| -> Result<()> {
        let before = progress();
        wait_for(what, PROGRESS, || (progress() >= before + step).then_some(()))
    };
    progressed("the group's first progress")?;

    let first = coordinator(brokers, group, -1)?;
    journal.mark(format!("coordinator {first} killed"));
    brokers[index(first)].kill9()?;
    let next = coordinator(brokers, group, first).context("a new coordinator after kill -9 of the old one")?;
    println!("nemesis: coordinator {first} killed, {next} coordinates the group");
    progressed("progress after the coordinator was killed")?;
    brokers[index(first)].restart()?;
    journal.mark(format!("coordinator {first} restarted"));
    settled(brokers, topic, 3).context("the killed coordinator back in every ISR")?;

    let lead = settled(brokers, topic, 3)?;
    let now = coordinator(brokers, group, -1)?;
    let victim = lead.values().map(|(l, _)| *l).find(|l| *l != now).unwrap_or(lead[&0].0);
    journal.mark(format!("leader {victim} killed"));
    brokers[index(victim)].kill9()?;
    settled(brokers, topic, 2).context("new leaders after kill -9 of a leader")?;
    println!("nemesis: leader {victim} killed (the group's coordinator is {now})");
    progressed("progress after a leader was killed")?;
    brokers[index(victim)].restart()?;
    journal.mark(format!("leader {victim} restarted"));
    settled(brokers, topic, 3).context("the killed leader back in every ISR")?;

    let paused = coordinator(brokers, group, -1)?;
    journal.mark(format!("broker {paused} paused"));
    brokers[index(paused)].signal("STOP")?;
    let while_paused = (|| -> Result<()> {
        let others: Vec<&Broker> = brokers.iter().enumerate().filter(|(i, _)| *i != index(paused)).map(|(_, b)| b).collect();
        wait_for("the paused broker out of every ISR", TIMEOUT, || {
            let resp = others.iter().find_map(|b| metadata(b, topic).ok())?;
            let t = resp.topics.first()?;
            let out = t.partitions.len() == PARTITIONS as usize
                && t.partitions.iter().all(|p| p.leader_id.0 > 0 && p.leader_id.0 != paused && !p.isr_nodes.iter().any(|n| n.0 == paused));
            out.then_some(())
        })?;
        println!("nemesis: broker {paused} (the group's coordinator) paused and out of every ISR");
        progressed("progress while the coordinator is paused")
    })();
    brokers[index(paused)].signal("CONT")?;
    journal.mark(format!("broker {paused} resumed"));
    while_paused?;
    settled(brokers, topic, 3).context("the paused broker back in every ISR")?;
    journal.mark("after the nemesis".to_string());
    Ok(())
}

/// Runs the nemesis; on failure the brokers' logs and data are kept.
fn run_nemesis<E: Clone>(
    brokers: &mut [Broker],
    topic: &str,
    group: &str,
    journal: &Journal<E>,
    progress: &dyn Fn() -> usize,
    step: usize,
) -> Result<()> {
    let outcome = nemesis(brokers, topic, group, journal, progress, step);
    if outcome.is_err() {
        for b in brokers.iter_mut() {
            b.keep_files();
        }
    }
    outcome
}

/// Sets `stop`, then waits (bounded) for `threads` to end; their results.
fn stop_all<T>(stop: &AtomicBool, threads: Vec<JoinHandle<Result<T>>>) -> Result<Vec<T>> {
    stop.store(true, Ordering::SeqCst);
    wait_for("the consumers to stop", TIMEOUT, || threads.iter().all(|t| t.is_finished()).then_some(()))?;
    threads.into_iter().map(|t| t.join().map_err(|_| anyhow!("a consumer thread panicked"))?).collect()
}

// ---------------------------------------------------------------- consumer group

/// What the members of the consumer group did.
#[derive(Debug, Clone)]
enum GroupEvent {
    /// A record a member's poll returned, at `at`.
    Consumed { member: usize, partition: i32, offset: i64, value: String, at: u64 },
    /// A synchronous commit of one partition: sent at `sent`, answered at `answered`.
    Commit { member: usize, partition: i32, offset: i64, sent: u64, answered: u64, ok: bool },
    /// The committed offsets the group's coordinator, at `by`, answered (OffsetFetch)
    /// when asked at `asked`.
    Observed { offsets: BTreeMap<i32, i64>, asked: u64, by: SocketAddr },
}

/// A KIP-848 member (rdkafka, `group.protocol=consumer`): consumes `topic` and commits
/// the position of each partition it consumed from, synchronously and one partition a
/// commit (librdkafka reports a commit of several partitions as a success unless all
/// of them failed), every [`COMMIT_EVERY`]. Once `stop` is set it stops; or, if
/// `abandon`, it leaves with the next record it consumes uncommitted (within 10 s).
fn group_member(
    bootstrap: String,
    topic: String,
    group: String,
    member: usize,
    journal: Arc<Journal<GroupEvent>>,
    stop: Arc<AtomicBool>,
    abandon: bool,
) -> Result<()> {
    use rdkafka::consumer::CommitMode;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", &group)
        .set("group.protocol", "consumer")
        .set("client.id", format!("member-{member}"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("topic.metadata.refresh.interval.ms", "500")
        .create()?;
    consumer.subscribe(&[&topic])?;
    let mut position: BTreeMap<i32, i64> = BTreeMap::new();
    let mut last_commit = Instant::now();
    let (mut errors, mut commit_errors) = (0usize, 0usize);
    let mut stopping: Option<Instant> = None;
    loop {
        if stop.load(Ordering::SeqCst) {
            let since = *stopping.get_or_insert_with(Instant::now);
            if !abandon || since.elapsed() > Duration::from_secs(10) {
                break;
            }
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
                let at = journal.tick();
                journal.push(GroupEvent::Consumed { member, partition: m.partition(), offset: m.offset(), value, at });
                position.insert(m.partition(), m.offset() + 1);
                if stopping.is_some() {
                    break;
                }
            }
            Some(Err(e)) => {
                errors += 1;
                if errors <= 5 {
                    println!("member {member}: {e}");
                }
            }
            None => {}
        }
        if position.is_empty() || last_commit.elapsed() < COMMIT_EVERY || stopping.is_some() {
            continue;
        }
        // Only partitions still ours (assignments change in poll, on this thread): a
        // commit of one given up meanwhile is valid at the member's new epoch, in
        // Kafka too, and would move its new owner's committed offset back.
        let owned = consumer.assignment().ok();
        for (partition, offset) in std::mem::take(&mut position) {
            if owned.as_ref().is_none_or(|a| a.find_partition(&topic, partition).is_none()) {
                continue;
            }
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&topic, partition, Offset::Offset(offset))?;
            let sent = journal.tick();
            let r = consumer.commit(&tpl, CommitMode::Sync);
            let answered = journal.tick();
            journal.push(GroupEvent::Commit { member, partition, offset, sent, answered, ok: r.is_ok() });
            if let Err(e) = &r {
                commit_errors += 1;
                if commit_errors <= 5 || commit_errors % 100 == 0 {
                    println!("member {member}: commit {commit_errors} failed: {e}");
                }
            }
            if r.is_err() && consumer.assignment().is_ok_and(|a| a.find_partition(&topic, partition).is_some()) {
                // Tried again with the next commit, while the partition is still ours.
                position.entry(partition).or_insert(offset);
            }
        }
        last_commit = Instant::now();
    }
    Ok(())
}

/// Asks the group's coordinator for its committed offsets of `topic` (OffsetFetch)
/// every 200 ms until `stop`, journaling each answer.
fn observe_commits(bootstrap: Vec<SocketAddr>, group: String, topic: String, journal: Arc<Journal<GroupEvent>>, stop: Arc<AtomicBool>) {
    let partitions: Vec<i32> = (0..PARTITIONS).collect();
    println!("observer: brokers 1, 2, 3 at {bootstrap:?}");
    let find = FindCoordinatorRequest::default().with_key(StrBytes::from_string(group.clone()));
    let connect = |addr: SocketAddr| -> Option<RawClient> {
        let mut c = RawClient::connect(addr).ok()?;
        c.set_io_timeout(Duration::from_secs(3)).ok()?;
        Some(c)
    };
    while !stop.load(Ordering::SeqCst) {
        // The coordinator a majority of the brokers name: a broker just resumed from a
        // pause names itself from metadata it has not caught up on yet, and answers
        // from the groups it had (as a Kafka broker would until it learns of its
        // deposition); what matters is what the cluster's coordinator answers.
        let named: Vec<SocketAddr> = bootstrap
            .iter()
            .filter_map(|addr| {
                let r = connect(*addr)?.send(&find, 3).ok().filter(|r| r.error_code == 0)?;
                Some(SocketAddr::new(r.host.parse().ok()?, u16::try_from(r.port).ok()?))
            })
            .collect();
        let coordinator = named.iter().find(|a| named.iter().filter(|b| b == a).count() * 2 > bootstrap.len()).copied();
        if let Some((mut c, by)) = coordinator.and_then(|a| Some((connect(a)?, a))) {
            let asked = journal.tick();
            if let Ok(offsets) = c.committed_offsets(&group, &topic, &partitions) {
                journal.push(GroupEvent::Observed { offsets, asked, by });
            }
        }
        // The observer's pace, not a wait for a condition.
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The group's committed offsets of `topic`, asked of its coordinator.
fn committed(brokers: &[Broker], group: &str, topic: &str) -> Option<BTreeMap<i32, i64>> {
    let c = live(brokers).find_map(|b| coordinator_of(b, group))?;
    RawClient::connect(brokers.get(index(c))?.addr()).ok()?.committed_offsets(group, topic, &(0..PARTITIONS).collect::<Vec<_>>()).ok()
}

/// Each partition's high watermark.
fn high_watermarks(brokers: &[Broker], topic: &str) -> Result<BTreeMap<i32, i64>> {
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", bootstrap_of(brokers)).set("group.id", unique_topic("watermarks")).create()?;
    (0..PARTITIONS).map(|p| Ok((p, consumer.fetch_watermarks(topic, p, Duration::from_secs(10))?.1))).collect()
}

#[test]
fn consumer_groups_lose_no_committed_progress_under_kills_and_pauses() -> Result<()> {
    let started = Instant::now();
    let mut brokers = start_group_cluster(&["group.consumer.heartbeat.interval.ms=500"])?;
    let topic = unique_topic("grouped");
    create_rf3(&brokers[0], &topic)?;
    settled(&brokers, &topic, 3)?;
    let group = unique_topic("nemesis-group");
    let load = Load::start_at(&brokers, &topic, GROUP_RATE);
    let journal = Journal::<GroupEvent>::new();
    let stop = Arc::new(AtomicBool::new(false));
    let bootstrap = bootstrap_of(&brokers);
    let spawn = |m: usize, stop: &Arc<AtomicBool>, abandon: bool| {
        let (bs, t, g, j, s) = (bootstrap.clone(), topic.clone(), group.clone(), journal.clone(), stop.clone());
        std::thread::spawn(move || group_member(bs, t, g, m, j, s, abandon))
    };
    // Member 0 leaves after the nemesis with a record consumed and not committed (and
    // member 3 joins): its partitions move, and their new owners start at its commits.
    let leaves = Arc::new(AtomicBool::new(false));
    let mut members: Vec<JoinHandle<Result<()>>> = vec![spawn(0, &leaves, true), spawn(1, &stop, false), spawn(2, &stop, false)];
    let observer = {
        let (bs, t, g, j, s) = (brokers.iter().map(Broker::addr).collect(), topic.clone(), group.clone(), journal.clone(), stop.clone());
        std::thread::spawn(move || {
            observe_commits(bs, g, t, j, s);
            Ok(())
        })
    };
    let commits = || journal.count(|e| usize::from(matches!(e, GroupEvent::Commit { ok: true, .. })));
    let outcome = run_nemesis(&mut brokers, &topic, &group, &journal, &commits, 10).and_then(|()| {
        journal.mark("member 0 leaves (a record uncommitted), member 3 joins".to_string());
        stop_all(&leaves, vec![members.remove(0)])?;
        members.push(spawn(3, &stop, false));
        wait_for("member 3 to commit", TIMEOUT, || {
            (journal.count(|e| usize::from(matches!(e, GroupEvent::Commit { member: 3, ok: true, .. }))) > 0).then_some(())
        })?;
        let before = load.acked.lock().unwrap().len();
        load.acked_at_least(before + 300)
    });
    let (sent, acked, errs) = load.finish()?;
    // Consumed to the end, and committed there.
    let at_end = outcome.and_then(|()| {
        let mut last = (BTreeMap::new(), None);
        wait_for("the group to commit the log end of every partition", TIMEOUT, || {
            last = (high_watermarks(&brokers, &topic).ok()?, committed(&brokers, &group, &topic));
            (last.1.as_ref() == Some(&last.0)).then_some(())
        })
        .with_context(|| format!("high watermarks {:?}, committed {:?}", last.0, last.1))
    });
    members.push(observer);
    let stopped = stop_all(&stop, members);
    let checked = check_group(&journal, &acked);
    println!("checker: produced {sent} (acknowledged {}, producer errors {}) in {:?}", acked.len(), errs.len(), started.elapsed());
    at_end?;
    stopped?;
    checked
}

/// The consumer-group checker over the members' journal: prints the counts; fails on
/// an acknowledged record never consumed (or consumed with another value), a record
/// consumed again below a commit that had succeeded on its partition before, a commit
/// below one that had succeeded before it was sent, or committed offsets the
/// coordinator answered below a commit that had succeeded before it was asked.
fn check_group(journal: &Journal<GroupEvent>, acked: &AckedRecords) -> Result<()> {
    let events = journal.events();
    let mut consumed: Vec<(u64, usize, i32, i64, &str)> = Vec::new();
    // partition → (answered, sent, offset, member) of the commits that succeeded, by answer.
    let mut commits: BTreeMap<i32, Vec<(u64, u64, i64, usize)>> = BTreeMap::new();
    let (mut commits_ok, mut commits_failed) = (0usize, 0usize);
    for e in &events {
        match e {
            GroupEvent::Consumed { member, partition, offset, value, at } => consumed.push((*at, *member, *partition, *offset, value)),
            GroupEvent::Commit { member, partition, offset, sent, answered, ok: true } => {
                commits_ok += 1;
                commits.entry(*partition).or_default().push((*answered, *sent, *offset, *member));
            }
            GroupEvent::Commit { ok: false, .. } => commits_failed += 1,
            GroupEvent::Observed { .. } => {}
        }
    }
    consumed.sort_unstable();
    for list in commits.values_mut() {
        list.sort_unstable();
    }
    // The highest commit of `partition` answered before `t`.
    let committed_before = |partition: i32, t: u64| -> i64 {
        commits
            .get(&partition)
            .map_or(-1, |l| l.iter().take_while(|(answered, ..)| *answered < t).map(|(_, _, o, _)| *o).max().unwrap_or(-1))
    };

    let mut samples = Vec::new();
    let mut seen: BTreeMap<(i32, i64), &str> = BTreeMap::new();
    let (mut redelivered, mut below_commit, mut wrong_value) = (Vec::new(), 0usize, 0usize);
    for (at, member, p, o, value) in &consumed {
        if let Some(v) = acked.at.get(&(*p, *o)) {
            if v != value {
                wrong_value += 1;
                if samples.len() < 10 {
                    samples.push(format!("{p}/{o}: acknowledged {v:?}, member {member} consumed {value:?}"));
                }
            }
        }
        if seen.insert((*p, *o), value).is_some() {
            redelivered.push(*at);
            let c = committed_before(*p, *at);
            if *o < c {
                below_commit += 1;
                if samples.len() < 10 {
                    samples.push(format!("{p}/{o} consumed again by member {member} at {at}, after a commit of {c} had succeeded"));
                }
            }
        }
    }
    let mut backwards = 0usize;
    for (p, list) in &commits {
        for (_, sent, o, member) in list {
            let before = committed_before(*p, *sent);
            if *o < before {
                backwards += 1;
                if samples.len() < 10 {
                    samples.push(format!("{p}: member {member}'s commit of {o} sent at {sent} succeeded after one of {before} had"));
                }
            }
        }
    }
    // What the coordinator answered against what had been committed before it was asked.
    let (mut observed, mut behind) = (0usize, 0usize);
    for e in &events {
        let GroupEvent::Observed { offsets, asked, by } = e else { continue };
        observed += 1;
        for (p, o) in offsets {
            let before = committed_before(*p, *asked);
            if *o < before {
                behind += 1;
                if samples.len() < 10 {
                    samples.push(format!(
                        "{p}: the coordinator at {by} answered a committed offset of {o} at {asked} ({}), after a commit of {before} had succeeded",
                        journal.phase_at(*asked)
                    ));
                }
            }
        }
    }
    let mut never = 0usize;
    for ((p, o), v) in &acked.at {
        if !seen.contains_key(&(*p, *o)) {
            never += 1;
            if samples.len() < 10 {
                samples.push(format!("{p}/{o} ({v}) acknowledged, never consumed"));
            }
        }
    }
    let values: BTreeSet<(i32, &str)> = seen.iter().map(|((p, _), v)| (*p, *v)).collect();
    never += acked.unknown_offset.iter().filter(|(p, v)| !values.contains(&(*p, v.as_str()))).count();
    println!(
        "checker: consumed {} ({} records, {} consumed again, {below_commit} of them below a successful commit), \
         commits {commits_ok} succeeded and {commits_failed} failed, {backwards} went backwards; \
         committed offsets read {observed} times, {behind} partitions behind a successful commit; \
         acknowledged records never consumed {never}, consumed with another value {wrong_value}",
        consumed.len(),
        seen.len(),
        redelivered.len()
    );
    let mut per_member: BTreeMap<usize, usize> = BTreeMap::new();
    for (_, member, ..) in &consumed {
        *per_member.entry(*member).or_default() += 1;
    }
    println!("checker: consumed by member {per_member:?}; consumed again, by step of the nemesis: {:?}", journal.by_phase(redelivered));
    if !samples.is_empty() {
        println!("checker: first findings: {samples:#?}");
    }
    ensure!(
        never == 0 && wrong_value == 0 && below_commit == 0 && backwards == 0 && behind == 0,
        "never consumed {never}, wrong value {wrong_value}, consumed again below a successful commit {below_commit}, \
         commits backwards {backwards}, committed offsets read behind a successful commit {behind}"
    );
    Ok(())
}

// ---------------------------------------------------------------- share group

/// What the share consumers did.
#[derive(Debug, Clone)]
enum ShareEvent {
    /// A record a ShareFetch acquired for a consumer; the fetch was sent at `sent`.
    Delivered { consumer: usize, partition: i32, offset: i64, value: Option<String>, count: i16, sent: u64 },
    /// An acknowledgement accepting `first..=last`, answered at `answered` with `code`
    /// (the partition's error code, or the request's when it was refused; None: no
    /// answer). It succeeded if `code` is 0.
    Accepted { partition: i32, first: i64, last: i64, answered: u64, code: Option<i16> },
}

/// A share consumer on the raw protocol: heartbeats to the group's coordinator; fetches
/// its assigned partitions from their leaders (one share session per leader) and
/// accepts every record acquired with an explicit ShareAcknowledge; finds coordinator
/// and leaders again on errors, rejoins (epoch 0) when fenced or unknown.
struct ShareConsumer {
    id: usize,
    member: String,
    group: String,
    topic: String,
    topic_id: Uuid,
    bootstrap: Vec<SocketAddr>,
    /// Node id → address, from Metadata.
    nodes: BTreeMap<i32, SocketAddr>,
    /// Partition → leader.
    leaders: BTreeMap<i32, i32>,
    conns: BTreeMap<i32, RawClient>,
    /// Nodes that did not answer, left alone until then.
    retry_at: BTreeMap<i32, Instant>,
    /// Node → (share session epoch, the session's partitions).
    sessions: BTreeMap<i32, (i32, BTreeSet<i32>)>,
    coordinator: Option<i32>,
    epoch: i32,
    assignment: BTreeSet<i32>,
    next_heartbeat: Instant,
    journal: Arc<Journal<ShareEvent>>,
    /// How often each kind of error was met.
    errors: BTreeMap<String, usize>,
}

impl ShareConsumer {
    fn note(&mut self, what: String) {
        *self.errors.entry(what).or_default() += 1;
    }

    fn conn(&mut self, node: i32) -> Result<&mut RawClient> {
        if self.backing_off(node) {
            bail!("node {node} did not answer a moment ago");
        }
        if !self.conns.contains_key(&node) {
            let addr = *self.nodes.get(&node).ok_or_else(|| anyhow!("node {node} is not known"))?;
            let mut c = RawClient::connect(addr)?;
            c.set_io_timeout(SHARE_IO_TIMEOUT)?;
            self.conns.insert(node, c);
        }
        self.conns.get_mut(&node).ok_or_else(|| anyhow!("no connection"))
    }

    fn backing_off(&self, node: i32) -> bool {
        self.retry_at.get(&node).is_some_and(|t| *t > Instant::now())
    }

    /// Forgets the connection to `node` (which did not answer) and the share session
    /// there, and leaves `node` alone for a while.
    fn drop_node(&mut self, node: i32) {
        self.conns.remove(&node);
        self.sessions.remove(&node);
        if !self.backing_off(node) {
            self.retry_at.insert(node, Instant::now() + RETRY_BACKOFF);
        }
    }

    /// Brokers and leaders from the first broker that answers Metadata.
    fn refresh(&mut self) -> bool {
        let addrs: Vec<SocketAddr> = self.nodes.values().chain(&self.bootstrap).copied().collect();
        for addr in addrs {
            let Ok(mut c) = RawClient::connect(addr) else { continue };
            let req = MetadataRequest::default()
                .with_topics(Some(vec![
                    MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_string(self.topic.clone()))))
                ]))
                .with_allow_auto_topic_creation(false);
            let Ok(resp) = c.set_io_timeout(Duration::from_secs(3)).and_then(|()| c.send(&req, 9)) else { continue };
            let Some(t) = resp.topics.first() else { continue };
            self.leaders = t.partitions.iter().filter(|p| p.leader_id.0 > 0).map(|p| (p.partition_index, p.leader_id.0)).collect();
            self.nodes = resp
                .brokers
                .iter()
                .filter_map(|b| Some((b.node_id.0, SocketAddr::new(b.host.parse().ok()?, u16::try_from(b.port).ok()?))))
                .collect();
            return true;
        }
        false
    }

    fn find_coordinator(&mut self) -> Option<i32> {
        let nodes: Vec<i32> = self.nodes.keys().copied().collect();
        let req = FindCoordinatorRequest::default().with_key(StrBytes::from_string(self.group.clone()));
        for node in nodes {
            match self.conn(node).and_then(|c| c.send(&req, 3)) {
                Ok(r) if r.error_code == 0 && r.node_id.0 > 0 => {
                    // Where the coordinator listens now (a restarted broker may have moved).
                    if let (Ok(ip), Ok(port)) = (r.host.parse(), u16::try_from(r.port)) {
                        if self.nodes.insert(r.node_id.0, SocketAddr::new(ip, port)) != Some(SocketAddr::new(ip, port)) {
                            self.drop_node(r.node_id.0);
                            self.retry_at.remove(&r.node_id.0);
                        }
                    }
                    return Some(r.node_id.0);
                }
                Ok(_) => {}
                Err(_) => self.drop_node(node),
            }
        }
        None
    }

    fn heartbeat(&mut self) {
        // Soon again, unless the coordinator answers.
        self.next_heartbeat = Instant::now() + Duration::from_millis(200);
        let Some(coordinator) = self.coordinator.or_else(|| self.find_coordinator()) else {
            self.note("no coordinator".into());
            self.refresh();
            return;
        };
        self.coordinator = Some(coordinator);
        let (group, member, epoch, topic) = (self.group.clone(), self.member.clone(), self.epoch, self.topic.clone());
        let subscription = [topic.as_str()];
        let topics = (epoch == 0).then_some(&subscription[..]);
        match self.conn(coordinator).and_then(|c| heartbeat(c, &group, &member, epoch, topics)) {
            Err(_) => {
                self.note("heartbeat: no answer".into());
                self.drop_node(coordinator);
                self.coordinator = None;
                self.refresh();
            }
            Ok(r) if r.error_code == 0 => {
                self.epoch = r.member_epoch;
                if let Some(a) = r.assignment {
                    self.assignment = a
                        .topic_partitions
                        .iter()
                        .filter(|t| t.topic_id == self.topic_id)
                        .flat_map(|t| t.partitions.iter().copied())
                        .collect();
                }
                let interval = u64::try_from(r.heartbeat_interval_ms).unwrap_or(1000).clamp(100, 1000);
                self.next_heartbeat = Instant::now() + Duration::from_millis(interval);
            }
            Ok(r) if matches!(r.error_code, UNKNOWN_MEMBER_ID | FENCED_MEMBER_EPOCH) => {
                self.note(format!("heartbeat: error {}", r.error_code));
                self.epoch = 0;
                self.assignment.clear();
            }
            Ok(r) => {
                self.note(format!("heartbeat: error {}", r.error_code));
                self.coordinator = None;
            }
        }
    }

    /// One ShareFetch of `parts` from their leader `node`, then a ShareAcknowledge
    /// accepting whatever it acquired.
    fn fetch_from(&mut self, node: i32, parts: BTreeSet<i32>) {
        // A session whose partitions changed is opened anew.
        let epoch = match self.sessions.get(&node) {
            Some((e, ps)) if *ps == parts => *e,
            _ => 0,
        };
        let (group, member) = (self.group.clone(), self.member.clone());
        let wanted: Vec<((Uuid, i32), Vec<Ack>)> = parts.iter().map(|p| ((self.topic_id, *p), Vec::new())).collect();
        let sent = self.journal.tick();
        let resp = match self.conn(node).and_then(|c| share_fetch_partitions(c, &group, &member, epoch, &wanted, 200, 100)) {
            Ok(r) => r,
            Err(_) => {
                self.note("ShareFetch: no answer".into());
                self.drop_node(node);
                self.refresh();
                return;
            }
        };
        if resp.error_code != 0 {
            self.note(format!("ShareFetch: error {}", resp.error_code));
            self.sessions.remove(&node);
            if !matches!(resp.error_code, SHARE_SESSION_NOT_FOUND | INVALID_SHARE_SESSION_EPOCH) {
                self.refresh();
            }
            return;
        }
        self.sessions.insert(node, (epoch + 1, parts));
        let mut stale = false;
        for p in resp.responses.iter().flat_map(|t| &t.partitions).filter(|p| p.error_code != 0) {
            stale = true;
            self.note(format!("ShareFetch partition: error {}", p.error_code));
        }
        let values = record_values(&resp);
        let mut acks: Vec<((Uuid, i32), Vec<Ack>)> = Vec::new();
        for ((topic_id, partition), offsets) in acquired_by_partition(&resp) {
            if topic_id != self.topic_id || offsets.is_empty() {
                continue;
            }
            for (&offset, &count) in &offsets {
                let value = values.get(&(partition, offset)).cloned();
                self.journal.push(ShareEvent::Delivered { consumer: self.id, partition, offset, value, count, sent });
            }
            acks.push(((topic_id, partition), ranges(offsets.keys().copied()).into_iter().map(|(f, l)| (f, l, ACCEPT)).collect()));
        }
        if stale {
            // A partition moving or its group's coordinator away: not again at once.
            self.refresh();
            std::thread::sleep(RETRY_BACKOFF);
        }
        if acks.is_empty() {
            return;
        }
        let epoch = epoch + 1;
        let answer = self.conn(node).and_then(|c| share_ack_partitions(c, &group, &member, epoch, &acks));
        let answered = self.journal.tick();
        let codes: BTreeMap<i32, i16> = match answer {
            Err(_) => {
                self.note("ShareAcknowledge: no answer".into());
                self.drop_node(node);
                BTreeMap::new()
            }
            Ok(r) if r.error_code != 0 => {
                self.note(format!("ShareAcknowledge: error {}", r.error_code));
                self.sessions.remove(&node);
                acks.iter().map(|((_, p), _)| (*p, r.error_code)).collect()
            }
            Ok(r) => {
                if let Some(s) = self.sessions.get_mut(&node) {
                    s.0 = epoch + 1;
                }
                r.responses
                    .iter()
                    .filter(|t| t.topic_id == self.topic_id)
                    .flat_map(|t| &t.partitions)
                    .map(|p| (p.partition_index, p.error_code))
                    .collect()
            }
        };
        for ((_, partition), batches) in &acks {
            let code = codes.get(partition).copied();
            if let Some(c) = code.filter(|c| *c != 0) {
                self.note(format!("ShareAcknowledge partition: error {c}"));
            }
            for (first, last, _) in batches {
                self.journal.push(ShareEvent::Accepted { partition: *partition, first: *first, last: *last, answered, code });
            }
        }
    }

    /// Runs until `stop`; the errors met, by kind.
    fn run(mut self, stop: &AtomicBool) -> BTreeMap<String, usize> {
        self.refresh();
        while !stop.load(Ordering::SeqCst) {
            if Instant::now() >= self.next_heartbeat {
                self.heartbeat();
            }
            let mut by_leader: BTreeMap<i32, BTreeSet<i32>> = BTreeMap::new();
            let mut unknown = false;
            for p in &self.assignment {
                match self.leaders.get(p) {
                    Some(l) => {
                        by_leader.entry(*l).or_default().insert(*p);
                    }
                    None => unknown = true,
                }
            }
            if unknown && !self.refresh() {
                self.note("no broker answers Metadata".into());
            }
            by_leader.retain(|node, _| !self.backing_off(*node));
            if by_leader.is_empty() {
                // Nothing to fetch until a heartbeat brings an assignment or a leader
                // may answer again: poll for that.
                std::thread::sleep(self.next_heartbeat.saturating_duration_since(Instant::now()).min(Duration::from_millis(100)));
                continue;
            }
            for (node, parts) in by_leader {
                self.fetch_from(node, parts);
            }
        }
        // Leave the group (best effort).
        if let Some(c) = self.coordinator {
            let (group, member) = (self.group.clone(), self.member.clone());
            let _ = self.conn(c).and_then(|c| heartbeat(c, &group, &member, -1, None));
        }
        self.errors
    }
}

/// Contiguous runs of ascending `offsets`: (first, last).
fn ranges(offsets: impl IntoIterator<Item = i64>) -> Vec<(i64, i64)> {
    let mut out: Vec<(i64, i64)> = Vec::new();
    for o in offsets {
        match out.last_mut() {
            Some((_, last)) if *last + 1 == o => *last = o,
            _ => out.push((o, o)),
        }
    }
    out
}

/// (partition, offset) → value of the records a ShareFetch response carries.
fn record_values(resp: &ShareFetchResponse) -> BTreeMap<(i32, i64), String> {
    let mut out = BTreeMap::new();
    for p in resp.responses.iter().flat_map(|t| &t.partitions) {
        let Some(mut bytes) = p.records.clone() else { continue };
        let Ok(sets) = kafka_protocol::records::RecordBatchDecoder::decode_all(&mut bytes) else { continue };
        for r in sets.iter().flat_map(|s| &s.records) {
            let value = r.value.as_ref().map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default();
            out.insert((p.partition_index, r.offset), value);
        }
    }
    out
}

#[test]
fn share_groups_never_deliver_an_accepted_record_again_under_kills_and_pauses() -> Result<()> {
    let started = Instant::now();
    let mut brokers = start_group_cluster(&["group.share.heartbeat.interval.ms=500", "group.share.record.lock.duration.ms=5000"])?;
    let topic = unique_topic("shared");
    create_rf3(&brokers[0], &topic)?;
    settled(&brokers, &topic, 3)?;
    let topic_id = RawClient::connect(brokers[0].addr())?.topic_id(&topic)?;
    let group = unique_topic("nemesis-share");
    wait_for("share.auto.offset.reset=earliest set on the group's coordinator", TIMEOUT, || {
        let c = live(&brokers).find_map(|b| coordinator_of(b, &group))?;
        start_at_earliest(&mut RawClient::connect(brokers[index(c)].addr()).ok()?, &group).ok()
    })?;
    let load = Load::start_at(&brokers, &topic, GROUP_RATE);
    let journal = Journal::<ShareEvent>::new();
    let stop = Arc::new(AtomicBool::new(false));
    let bootstrap: Vec<SocketAddr> = brokers.iter().map(Broker::addr).collect();
    let consumers: Vec<JoinHandle<Result<BTreeMap<String, usize>>>> = (0..4)
        .map(|id| {
            let consumer = ShareConsumer {
                id,
                member: Uuid::new_v4().to_string(),
                group: group.clone(),
                topic: topic.clone(),
                topic_id,
                bootstrap: bootstrap.clone(),
                nodes: BTreeMap::new(),
                leaders: BTreeMap::new(),
                conns: BTreeMap::new(),
                retry_at: BTreeMap::new(),
                sessions: BTreeMap::new(),
                coordinator: None,
                epoch: 0,
                assignment: BTreeSet::new(),
                next_heartbeat: Instant::now(),
                journal: journal.clone(),
                errors: BTreeMap::new(),
            };
            let stop = stop.clone();
            std::thread::spawn(move || Ok(consumer.run(&stop)))
        })
        .collect();
    let accepted_records = || {
        journal.count(|e| match e {
            ShareEvent::Accepted { first, last, code: Some(0), .. } => usize::try_from(last - first + 1).unwrap_or(0),
            _ => 0,
        })
    };
    let outcome = run_nemesis(&mut brokers, &topic, &group, &journal, &accepted_records, 50).and_then(|()| {
        let before = load.acked.lock().unwrap().len();
        load.acked_at_least(before + 300)
    });
    let (sent, acked, errs) = load.finish()?;
    let mut missing = 0;
    let at_end = outcome.and_then(|()| {
        wait_for("every acknowledged record accepted", TIMEOUT, || {
            missing = never_accepted(&journal.events(), &acked).0.len();
            (missing == 0).then_some(())
        })
        .with_context(|| format!("{missing} acknowledged records never accepted"))
    });
    let stopped = stop_all(&stop, consumers);
    if let Ok(errors) = &stopped {
        for (i, e) in errors.iter().enumerate() {
            println!("share consumer {i}: errors met {e:?}");
        }
    }
    let checked = check_share(&journal, &acked);
    println!("checker: produced {sent} (acknowledged {}, producer errors {}) in {:?}", acked.len(), errs.len(), started.elapsed());
    checked?;
    at_end?;
    stopped.map(|_| ())
}

/// The acknowledged records that no consumer accepted with success, (partition, the
/// offset the producer was told, value), and how many more were left out because the
/// outcome of their last acceptance is unknown (no answer came, or REQUEST_TIMED_OUT:
/// the leader got no answer from the group's coordinator; and they were not delivered
/// again after it: the broker may have taken it).
fn never_accepted(events: &[ShareEvent], acked: &AckedRecords) -> (Vec<(i32, Option<i64>, String)>, usize) {
    let mut accepted: BTreeSet<(i32, i64)> = BTreeSet::new();
    // (partition, offset) → (answered, code) of the last acceptance covering it.
    let mut last_attempt: BTreeMap<(i32, i64), (u64, Option<i16>)> = BTreeMap::new();
    // (partition, offset) → when the last fetch delivering it was sent.
    let mut last_delivery: BTreeMap<(i32, i64), u64> = BTreeMap::new();
    // Records acknowledged without an offset are known by their value.
    let mut by_value: BTreeMap<(i32, &str), BTreeSet<i64>> = BTreeMap::new();
    for e in events {
        match e {
            ShareEvent::Accepted { partition, first, last, answered, code } => {
                for o in *first..=*last {
                    if *code == Some(0) {
                        accepted.insert((*partition, o));
                    }
                    let a = last_attempt.entry((*partition, o)).or_insert((*answered, *code));
                    if a.0 < *answered {
                        *a = (*answered, *code);
                    }
                }
            }
            ShareEvent::Delivered { partition, offset, value, sent, .. } => {
                let d = last_delivery.entry((*partition, *offset)).or_insert(*sent);
                *d = (*d).max(*sent);
                if let Some(v) = value {
                    by_value.entry((*partition, v.as_str())).or_default().insert(*offset);
                }
            }
        }
    }
    let unknown_outcome = |at: &(i32, i64)| {
        last_attempt.get(at).is_some_and(|(answered, code)| {
            matches!(code, None | Some(REQUEST_TIMED_OUT)) && last_delivery.get(at).is_none_or(|sent| sent < answered)
        })
    };
    let (mut out, mut unknown) = (Vec::new(), 0usize);
    let records = acked.at.iter().map(|((p, o), v)| (*p, Some(*o), v)).chain(acked.unknown_offset.iter().map(|(p, v)| (*p, None, v)));
    for (p, o, v) in records {
        let offsets: Vec<(i32, i64)> = match o {
            Some(o) => vec![(p, o)],
            None => by_value.get(&(p, v.as_str())).map(|os| os.iter().map(|o| (p, *o)).collect()).unwrap_or_default(),
        };
        if offsets.iter().any(|at| accepted.contains(at)) {
            continue;
        }
        if offsets.iter().any(unknown_outcome) {
            unknown += 1;
            continue;
        }
        out.push((p, o, v.clone()));
    }
    (out, unknown)
}

/// The share-group checker: prints the counts; fails on an acknowledged record never
/// accepted with success (unless its last acceptance went unanswered or timed out: see
/// [`never_accepted`]), a record delivered with another value than the one
/// acknowledged at its offset, or a delivery by a ShareFetch sent after an
/// acknowledgement accepting that record had succeeded.
fn check_share(journal: &Journal<ShareEvent>, acked: &AckedRecords) -> Result<()> {
    let events = journal.events();
    // (partition, offset) → when an acceptance of it was first answered with success.
    let mut accepted_at: BTreeMap<(i32, i64), u64> = BTreeMap::new();
    let (mut acks_ok, mut acks_failed) = (0usize, 0usize);
    for e in &events {
        if let ShareEvent::Accepted { partition, first, last, answered, code } = e {
            if *code != Some(0) {
                acks_failed += 1;
                continue;
            }
            acks_ok += 1;
            for o in *first..=*last {
                let at = accepted_at.entry((*partition, o)).or_insert(*answered);
                *at = (*at).min(*answered);
            }
        }
    }
    let mut samples = Vec::new();
    let mut deliveries = 0usize;
    let mut records: BTreeSet<(i32, i64)> = BTreeSet::new();
    let (mut after_ack, mut wrong_value) = (Vec::new(), 0usize);
    let mut redelivered = Vec::new();
    let mut after_ack_records: BTreeSet<(i32, i64)> = BTreeSet::new();
    for e in &events {
        let ShareEvent::Delivered { consumer, partition, offset, value, count, sent } = e else { continue };
        deliveries += 1;
        if !records.insert((*partition, *offset)) {
            redelivered.push(*sent);
        }
        if let (Some(want), Some(got)) = (acked.at.get(&(*partition, *offset)), value) {
            if want != got {
                wrong_value += 1;
                if samples.len() < 10 {
                    samples.push(format!("{partition}/{offset}: acknowledged {want:?}, delivered {got:?}"));
                }
            }
        }
        if let Some(at) = accepted_at.get(&(*partition, *offset)).filter(|at| **at < *sent) {
            after_ack.push(*sent);
            after_ack_records.insert((*partition, *offset));
            if samples.len() < 10 {
                samples.push(format!(
                    "{partition}/{offset} delivered to consumer {consumer} (delivery count {count}) by a fetch sent at {sent}, its acceptance succeeded at {at}"
                ));
            }
        }
    }
    let (never, unknown) = never_accepted(&events, acked);
    println!(
        "checker: deliveries {deliveries}, records {}, redeliveries {}, deliveries after a successful acceptance {} \
         (of {} records); acceptances {acks_ok} succeeded and {acks_failed} failed; acknowledged records never accepted {} \
         (and {unknown} whose last acceptance had no answer), delivered with another value {wrong_value}",
        records.len(),
        redelivered.len(),
        after_ack.len(),
        after_ack_records.len(),
        never.len()
    );
    println!("checker: redeliveries, by step of the nemesis: {:?}", journal.by_phase(redelivered));
    println!(
        "checker: deliveries after a successful acceptance, by step of the nemesis: {:?}",
        journal.by_phase(after_ack.iter().copied())
    );
    if !samples.is_empty() {
        println!("checker: first findings: {samples:#?}");
    }
    for (p, o, v) in never.iter().take(10) {
        // What became of it: its deliveries and the acceptances that covered it.
        let history: Vec<String> = events
            .iter()
            .filter_map(|e| match e {
                ShareEvent::Delivered { consumer, partition, offset, count, sent, .. } if *partition == *p && Some(*offset) == *o => {
                    Some(format!("delivered to consumer {consumer} (count {count}) at {sent}, {}", journal.phase_at(*sent)))
                }
                ShareEvent::Accepted { partition, first, last, answered, code }
                    if *partition == *p && o.is_some_and(|o| (*first..=*last).contains(&o)) =>
                {
                    Some(format!("accepted {first}..={last}, answered {code:?} at {answered}, {}", journal.phase_at(*answered)))
                }
                _ => None,
            })
            .collect();
        println!("checker: never accepted: {p}/{o:?} {v}: {history:?}");
    }
    ensure!(
        after_ack.is_empty() && never.is_empty() && wrong_value == 0,
        "{} deliveries after a successful acceptance, {} acknowledged records never accepted, {wrong_value} with another value",
        after_ack.len(),
        never.len()
    );
    Ok(())
}
