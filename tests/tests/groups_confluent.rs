//! Consumer groups with confluent-kafka (librdkafka 2.x) `subscribe()` members, one
//! process each (`python/group_member.py`): balanced assignment under the eager and the
//! cooperative protocol, a member killed with SIGKILL, static membership across a
//! member restart, committed offsets across a broker restart.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Result};
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::{consumer_group_describe_response, ConsumerGroupDescribeRequest, GroupId, ListGroupsRequest};
use kafka_protocol::protocol::StrBytes;
use karst_tests::group::{balanced_group_scenario, consumption_counts, fill, positions, wait_assigned, wait_consumed, Callbacks, Member};
use karst_tests::raw::RawClient;
use karst_tests::{unique_topic, wait_for, wait_until, Broker};

/// Arguments of `group_member.py`.
fn member_args(bootstrap: &str, topic: &str, group: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["--bootstrap", bootstrap, "--topic", topic, "--group", group].iter().map(|s| s.to_string()).collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn three_members(strategy: &str) -> Result<()> {
    // The default initial delay, stated: all three members join within it.
    let mut broker = Broker::start(&["--set", "group.initial.rebalance.delay.ms=3000"])?;
    let bootstrap = broker.bootstrap();
    balanced_group_scenario(broker.addr(), 3, 6, 200, strategy, |name, topic, group| {
        Member::python(name, &member_args(&bootstrap, topic, group, &["--strategy", strategy, "--commit-every", "50"]))
    })?;
    broker.check_running()
}

#[test]
fn range_three_members_split_six_partitions() -> Result<()> {
    three_members("range")
}

#[test]
fn cooperative_sticky_three_members_split_six_partitions() -> Result<()> {
    three_members("cooperative-sticky")
}

/// Three members share six partitions; one is killed with SIGKILL (no commit, no
/// LeaveGroup) after consuming its partitions but committing only every 7th message.
/// After its session times out the two survivors own its partitions, resume exactly at
/// its last committed offsets, and consume what was produced meanwhile. Every message is
/// consumed; the only ones consumed twice are the victim's uncommitted tail.
///
/// With `protocol` "consumer" the members speak KIP-848's protocol: the broker assigns
/// (`strategy` names its assignor) and fences the victim after
/// `group.consumer.session.timeout.ms`.
pub(crate) fn killed_member(strategy: &str, protocol: &str) -> Result<()> {
    const PARTITIONS: i32 = 6;
    const BEFORE: i64 = 40;
    const AFTER: i64 = 20;
    let mut broker = Broker::start(&[
        "--set",
        "group.min.session.timeout.ms=2000",
        "--set",
        "group.initial.rebalance.delay.ms=3000",
        "--set",
        "group.consumer.session.timeout.ms=6000",
        "--set",
        "group.consumer.heartbeat.interval.ms=500",
    ])?;
    let addr = broker.addr();
    let (topic, group) = (unique_topic("kill-member"), unique_topic("kill-member-group"));
    let mut raw = RawClient::connect(addr)?;
    raw.create_topic(&topic, PARTITIONS, &[])?;
    // A classic group forms once, after its initial delay, with all three; a KIP-848
    // group has no such delay (the first member takes every partition at once), so
    // there the records come once the three share the partitions, each partition
    // then read by one member only.
    if protocol != "consumer" {
        fill(addr, &topic, PARTITIONS, 0..BEFORE)?;
    }
    // 6 s: a survivor starved of CPU for 3 s on a loaded machine once lost its own
    // session, and its uncommitted records were (rightly) consumed again.
    let choice = if protocol == "consumer" { "--assignor" } else { "--strategy" };
    let args = member_args(
        &broker.bootstrap(),
        &topic,
        &group,
        &[choice, strategy, "--protocol", protocol, "--session-timeout-ms", "6000", "--commit-every", "7"],
    );
    let mut members = (0..3).map(|i| Member::python(&format!("member-{i}"), &args)).collect::<Result<Vec<_>>>()?;
    {
        let mut all: Vec<&mut Member> = members.iter_mut().collect();
        if protocol == "consumer" {
            wait_assigned(&mut all, PARTITIONS, 2, Duration::from_secs(40))?;
            fill(addr, &topic, PARTITIONS, 0..BEFORE)?;
        }
        wait_consumed(&mut all, &positions(PARTITIONS, 0..BEFORE), Duration::from_secs(40))?;
        wait_assigned(&mut all, PARTITIONS, 2, Duration::from_secs(20))?;
    }
    let mut victim = members.remove(1);
    let mut survivors = members;
    // Once the victim is idle its last commit is final: it commits only after messages.
    wait_until("the victim to go idle", Duration::from_secs(20), || victim.is_idle())?;
    let victim_parts = victim.assignment().unwrap_or_default();
    let victim_end: BTreeMap<i32, i64> = victim.consumed().iter().fold(BTreeMap::new(), |mut end, c| {
        let e = end.entry(c.partition).or_insert(0);
        *e = (*e).max(c.offset + 1);
        end
    });
    let committed = raw.committed_offsets(&group, &topic, &victim_parts)?;
    let acked = victim.last_commits();
    for p in &victim_parts {
        let said = acked.get(p).copied().unwrap_or(-1);
        ensure!(
            committed[p] == said,
            "{topic}-{p}: the broker has {} committed, the victim's last acknowledged commit was {said}",
            committed[p]
        );
    }
    victim.kill9()?;
    fill(addr, &topic, PARTITIONS, BEFORE..BEFORE + AFTER)?;

    {
        let mut alive: Vec<&mut Member> = survivors.iter_mut().collect();
        wait_assigned(&mut alive, PARTITIONS, 3, Duration::from_secs(30))?;
        alive.push(&mut victim);
        wait_consumed(&mut alive, &positions(PARTITIONS, 0..BEFORE + AFTER), Duration::from_secs(30))?;
    }
    let (state, mut clients) = if protocol == "consumer" {
        let d = describe_consumer_group(&mut raw, &group)?;
        (d.group_state.to_string(), d.members.iter().map(|m| m.client_id.to_string()).collect::<Vec<_>>())
    } else {
        let d = raw.describe_group(&group)?;
        (d.group_state.to_string(), d.members.iter().map(|m| m.client_id.to_string()).collect())
    };
    clients.sort_unstable();
    ensure!(
        state == "Stable" && clients == ["member-0", "member-2"],
        "after the victim's session timeout the group should be the two survivors: {state} {clients:?}"
    );
    for m in survivors.iter_mut() {
        m.finish(Duration::from_secs(30))?;
    }

    // Where the survivors started on each of the victim's partitions: its commit.
    for p in &victim_parts {
        let first = survivors.iter().flat_map(|m| m.consumed()).filter(|c| c.partition == *p).map(|c| c.offset).min();
        let resume = committed[p].max(0);
        ensure!(first == Some(resume), "{topic}-{p}: survivors started at {first:?}, the victim had committed {}", committed[p]);
    }
    let counts = consumption_counts(&[&survivors[0], &victim, &survivors[1]])?;
    let expected = positions(PARTITIONS, 0..BEFORE + AFTER);
    ensure!(counts.keys().eq(expected.iter()), "consumed positions differ from the produced ones");
    // Consumed twice: exactly the victim's consumed-but-uncommitted messages.
    let twice: BTreeSet<(i32, i64)> = counts.iter().filter(|(_, n)| **n > 1).map(|(pos, _)| *pos).collect();
    let uncommitted: BTreeSet<(i32, i64)> =
        victim_parts.iter().flat_map(|p| (committed[p].max(0)..victim_end.get(p).copied().unwrap_or(0)).map(move |o| (*p, o))).collect();
    ensure!(
        twice == uncommitted,
        "redelivered {twice:?}, expected exactly the victim's uncommitted {uncommitted:?} (committed {committed:?}, consumed up to {victim_end:?})"
    );
    ensure!(counts.values().all(|n| *n <= 2), "a message consumed more than twice: {counts:?}");
    println!(
        "{strategy}: victim owned {victim_parts:?}, committed {committed:?}, consumed up to {victim_end:?}; {} redelivered; survivors now own {:?} and {:?}",
        twice.len(),
        survivors[0].assignment(),
        survivors[1].assignment()
    );
    broker.check_running()
}

#[test]
fn range_killed_member_partitions_resume_from_its_commits() -> Result<()> {
    killed_member("range", "classic")
}

#[test]
fn cooperative_sticky_killed_member_partitions_resume_from_its_commits() -> Result<()> {
    killed_member("cooperative-sticky", "classic")
}

#[test]
fn consumer_protocol_killed_member_partitions_resume_from_its_commits() -> Result<()> {
    killed_member("uniform", "consumer")
}

#[test]
fn consumer_protocol_range_assignor_killed_member_partitions_resume_from_its_commits() -> Result<()> {
    killed_member("range", "consumer")
}

/// A KIP-848 group as ConsumerGroupDescribe shows it.
pub(crate) fn describe_consumer_group(raw: &mut RawClient, group: &str) -> Result<consumer_group_describe_response::DescribedGroup> {
    let req = ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(StrBytes::from_string(group.to_string()))]);
    let resp = raw.send(&req, 1)?;
    let d = resp.groups.into_iter().next().ok_or_else(|| anyhow!("no group in the answer"))?;
    ensure!(d.error_code == 0, "ConsumerGroupDescribe {group}: error {} {:?}", d.error_code, d.error_message);
    Ok(d)
}

/// KIP-848 end to end with librdkafka: a group started with two classic members
/// (eager range) moves to the consumer protocol member by member (the upgrade:
/// classic and consumer-protocol members share one server-side assignment), the
/// classic members leave, a member joins by regular expression, and one leaves. Every
/// member commits after each record and on revocation, so every record is consumed
/// exactly once; the committed offsets end at the high watermarks.
#[test]
fn a_classic_group_moves_to_the_consumer_protocol_member_by_member() -> Result<()> {
    const PARTITIONS: i32 = 6;
    let mut broker = Broker::start(&["--set", "group.initial.rebalance.delay.ms=0", "--set", "group.consumer.heartbeat.interval.ms=500"])?;
    let addr = broker.addr();
    let (topic, group) = (unique_topic("migrate"), unique_topic("migrate-group"));
    let mut raw = RawClient::connect(addr)?;
    raw.create_topic(&topic, PARTITIONS, &[])?;
    let bootstrap = broker.bootstrap();
    let classic = member_args(&bootstrap, &topic, &group, &["--strategy", "range", "--commit-every", "1"]);
    let consumer = member_args(&bootstrap, &topic, &group, &["--protocol", "consumer", "--commit-every", "1"]);
    let mut produced = 0i64;
    let mut fill_more = |n: i64| -> Result<std::ops::Range<i64>> {
        fill(addr, &topic, PARTITIONS, produced..produced + n)?;
        produced += n;
        Ok(produced - n..produced)
    };
    let step = |members: &mut Vec<Member>,
                per_member: usize,
                what: &str,
                fill_more: &mut dyn FnMut(i64) -> Result<std::ops::Range<i64>>|
     -> Result<()> {
        let mut all: Vec<&mut Member> = members.iter_mut().collect();
        wait_assigned(&mut all, PARTITIONS, per_member, Duration::from_secs(40)).map_err(|e| anyhow!("{what}: {e}"))?;
        let range = fill_more(10)?;
        wait_consumed(&mut all, &positions(PARTITIONS, range), Duration::from_secs(40)).map_err(|e| anyhow!("{what}: {e}"))?;
        println!("{what}: {:?}", all.iter().map(|m| (m.name().to_string(), m.assignment())).collect::<Vec<_>>());
        Ok(())
    };
    let mut done: Vec<Member> = Vec::new();
    let mut members = vec![Member::python("classic-a", &classic)?, Member::python("classic-b", &classic)?];
    step(&mut members, 3, "two classic members", &mut fill_more)?;
    members.push(Member::python("consumer-c", &consumer)?);
    step(&mut members, 2, "a consumer-protocol member joined the classic group", &mut fill_more)?;
    let d = describe_consumer_group(&mut raw, &group)?;
    let mut types: Vec<i8> = d.members.iter().map(|m| m.member_type).collect();
    types.sort_unstable();
    ensure!(types == [0, 0, 1], "two classic members and one consumer member: {d:?}");

    let mut a = members.remove(0);
    a.finish(Duration::from_secs(30))?;
    done.push(a);
    members.push(Member::python("consumer-d", &consumer)?);
    step(&mut members, 2, "classic-a left, consumer-d joined", &mut fill_more)?;
    let mut b = members.remove(0);
    b.finish(Duration::from_secs(30))?;
    done.push(b);
    step(&mut members, 3, "classic-b left: consumer protocol only", &mut fill_more)?;
    let regex = member_args(&bootstrap, &topic, &group, &["--protocol", "consumer", "--commit-every", "1", "--regex", &topic]);
    members.push(Member::python("consumer-regex", &regex)?);
    step(&mut members, 2, "a member joined by regular expression", &mut fill_more)?;
    let d = describe_consumer_group(&mut raw, &group)?;
    ensure!(d.members.iter().all(|m| m.member_type == 1) && d.group_state.as_str() == "Stable", "{d:?}");
    ensure!(
        // librdkafka sends its regular expressions joined: "(^topic)".
        d.members.iter().any(|m| m.subscribed_topic_regex.as_ref().is_some_and(|r| r.contains(topic.as_str()))),
        "the regex member's subscription: {d:?}"
    );
    let mut c = members.remove(0);
    c.finish(Duration::from_secs(30))?;
    done.push(c);
    step(&mut members, 3, "consumer-c left", &mut fill_more)?;
    for m in members.iter_mut() {
        m.finish(Duration::from_secs(30))?;
    }
    done.extend(members);
    let everyone: Vec<&Member> = done.iter().collect();
    let counts = consumption_counts(&everyone)?;
    let expected = positions(PARTITIONS, 0..produced);
    ensure!(counts.keys().eq(expected.iter()), "consumed positions differ from the produced ones");
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    ensure!(twice.is_empty(), "records consumed more than once: {twice:?}");
    let committed = raw.committed_offsets(&group, &topic, &(0..PARTITIONS).collect::<Vec<_>>())?;
    ensure!(committed.values().all(|o| *o == produced), "committed {committed:?}, produced {produced} per partition");
    broker.check_running()
}

/// Static membership: three members with `group.instance.id`, restarted one after the
/// other (a rolling restart, so the group leader is among them): each is killed and a
/// new process with the same instance id starts within the session timeout. It gets the
/// same partitions back and resumes from its commits; nobody sees a rebalance (no
/// callback after a member's first assignment), even after the old sessions would have
/// expired; DescribeGroups shows the same instance ids with new member ids.
#[test]
fn static_members_restart_and_get_their_partitions_back_without_a_rebalance() -> Result<()> {
    const PARTITIONS: i32 = 6;
    const SESSION: Duration = Duration::from_millis(6000);
    let mut broker = Broker::start(&["--set", "group.initial.rebalance.delay.ms=3000"])?;
    let addr = broker.addr();
    let (topic, group) = (unique_topic("static"), unique_topic("static-group"));
    let mut raw = RawClient::connect(addr)?;
    raw.create_topic(&topic, PARTITIONS, &[])?;
    let all_parts: Vec<i32> = (0..PARTITIONS).collect();
    let session_ms = SESSION.as_millis().to_string();
    let args_for = |i: usize| {
        let instance = format!("static-{i}");
        member_args(
            &broker.bootstrap(),
            &topic,
            &group,
            &["--instance-id", &instance, "--session-timeout-ms", &session_ms, "--commit-every", "1"],
        )
    };
    let mut members = (0..3).map(|i| Member::python(&format!("member-{i}"), &args_for(i))).collect::<Result<Vec<_>>>()?;
    let mut retired = Vec::new();
    let mut expected_callbacks = Vec::new();
    let mut owned = Vec::new();
    let mut before = BTreeMap::new();
    let mut last_kill = Instant::now();
    // Round 0 fills offsets 0..20; round r > 0 restarts member r-1 first, then fills 10 more.
    for round in 0..=3usize {
        let offsets = if round == 0 { 0..20 } else { 10 + 10 * round as i64..20 + 10 * round as i64 };
        if round > 0 {
            let i = round - 1;
            members[i].kill9()?;
            last_kill = Instant::now();
            let restarted = Member::python(&format!("member-{i}-restarted"), &args_for(i))?;
            retired.push(std::mem::replace(&mut members[i], restarted));
            expected_callbacks[i] = Callbacks { assign: 1, revoke: 0, lost: 0 };
        }
        let assigned = {
            let mut all: Vec<&mut Member> = members.iter_mut().collect();
            wait_assigned(&mut all, PARTITIONS, 2, Duration::from_secs(20))?
        };
        if round == 0 {
            expected_callbacks = members.iter().map(Member::callbacks).collect();
            owned = assigned;
        } else {
            ensure!(assigned == owned, "round {round}: assignments {assigned:?}, before the restart {owned:?}");
        }
        fill(addr, &topic, PARTITIONS, offsets.clone())?;
        {
            let mut all: Vec<&mut Member> = members.iter_mut().collect();
            wait_consumed(&mut all, &positions(PARTITIONS, offsets.clone()), Duration::from_secs(30))?;
        }
        // Before the next kill: everything consumed is committed (--commit-every 1).
        wait_until("every member to commit and go idle", Duration::from_secs(20), || members.iter().all(Member::is_idle))?;
        let committed = raw.committed_offsets(&group, &topic, &all_parts)?;
        ensure!(
            committed.values().all(|o| *o == offsets.end),
            "round {round}: committed {committed:?}, expected {} everywhere",
            offsets.end
        );
        check_callbacks(&mut members, &expected_callbacks)?;
        if round == 0 {
            before = instance_members(&raw.describe_group(&group)?)?;
        }
    }
    // Watch until well past the last old member's session timeout: had the coordinator
    // kept an old member id, it would expire now and rebalance everyone.
    wait_for("the old members' session timeouts to pass", SESSION * 3, || match check_callbacks(&mut members, &expected_callbacks) {
        Err(e) => Some(Err(e)),
        Ok(()) => (last_kill.elapsed() > SESSION + Duration::from_secs(2)).then_some(Ok(())),
    })??;

    let described = raw.describe_group(&group)?;
    ensure!(described.group_state.as_str() == "Stable", "group state after the restarts: {described:?}");
    let after = instance_members(&described)?;
    ensure!(after.keys().eq(before.keys()), "instances before the restarts {before:?}, after {after:?}");
    for (instance, id) in &after {
        ensure!(before.get(instance) != Some(id), "{instance} kept its old member id {id} after a restart");
    }

    for m in members.iter_mut() {
        m.finish(Duration::from_secs(30))?;
    }
    let everyone: Vec<&Member> = members.iter().chain(retired.iter()).collect();
    let counts = consumption_counts(&everyone)?;
    ensure!(counts.keys().eq(positions(PARTITIONS, 0..50).iter()), "consumed positions differ from the produced ones");
    ensure!(counts.values().all(|n| *n == 1), "messages consumed twice: {:?}", counts.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>());
    for (i, m) in members.iter().enumerate() {
        let resumed: BTreeSet<(i32, i64)> = m.consumed().iter().map(|c| (c.partition, c.offset)).collect();
        let from = 20 + 10 * i as i64;
        let wanted: BTreeSet<(i32, i64)> = owned[i].iter().flat_map(|p| (from..50).map(move |o| (*p, o))).collect();
        ensure!(
            resumed == wanted,
            "{} consumed {resumed:?}, expected partitions {:?} from the committed offset {from} on",
            m.name(),
            owned[i]
        );
    }
    println!("static members kept {owned:?} across a rolling restart; member ids {before:?} -> {after:?}");
    broker.check_running()
}

/// Fails if a member failed or its rebalance callbacks differ from `expected`.
fn check_callbacks(members: &mut [Member], expected: &[Callbacks]) -> Result<()> {
    for (m, want) in members.iter_mut().zip(expected) {
        m.check()?;
        let now = m.callbacks();
        ensure!(now == *want, "{}: rebalance callbacks {now:?}, expected {want:?}: the group rebalanced\n{}", m.name(), m.report());
    }
    Ok(())
}

/// instance id → member id of a described group's members; fails on a dynamic member.
fn instance_members(group: &DescribedGroup) -> Result<BTreeMap<String, String>> {
    group
        .members
        .iter()
        .map(|m| {
            let instance =
                m.group_instance_id.as_ref().ok_or_else(|| anyhow!("member {:?} has no group.instance.id: {group:?}", m.member_id))?;
            Ok((instance.to_string(), m.member_id.to_string()))
        })
        .collect()
}

/// A consumer commits after consuming part of a 3-partition topic (so the committed
/// offsets fall mid-partition, or nowhere), more messages follow, and the broker is
/// stopped (SIGTERM, or SIGKILL) and restarted on the same data directory. The
/// committed offsets and the (now Empty) group are still there, and a new consumer in
/// the group consumes exactly the messages at and after them.
fn commits_survive_broker_restart(clean: bool) -> Result<()> {
    const PARTITIONS: i32 = 3;
    let mut broker = Broker::start(&["--set", "group.initial.rebalance.delay.ms=300"])?;
    let (topic, group) = (unique_topic("restart"), unique_topic("restart-group"));
    let mut raw = RawClient::connect(broker.addr())?;
    raw.create_topic(&topic, PARTITIONS, &[])?;
    fill(broker.addr(), &topic, PARTITIONS, 0..50)?;
    let mut first = Member::python("first", &member_args(&broker.bootstrap(), &topic, &group, &["--stop-after", "70"]))?;
    let status = first.wait_exit(Duration::from_secs(40))?;
    first.finish(Duration::from_secs(10))?;
    ensure!(status.success(), "first consumer: {status}\n{}", first.report());
    let mut consumed_up_to = BTreeMap::new();
    for c in first.consumed() {
        let e = consumed_up_to.entry(c.partition).or_insert(-1);
        *e = (*e).max(c.offset + 1);
    }
    ensure!(first.consumed().len() == 70, "the first consumer consumed {} messages, expected 70", first.consumed().len());
    let all_parts: Vec<i32> = (0..PARTITIONS).collect();
    let committed = raw.committed_offsets(&group, &topic, &all_parts)?;
    for p in &all_parts {
        let want = consumed_up_to.get(p).copied().unwrap_or(-1);
        ensure!(committed[p] == want, "{topic}-{p}: committed {}, but the consumer had consumed up to {want}", committed[p]);
    }
    fill(broker.addr(), &topic, PARTITIONS, 50..60)?;

    if clean {
        let status = broker.terminate(Duration::from_secs(20))?;
        ensure!(status.success(), "broker exited with {status} after SIGTERM");
    } else {
        broker.kill9()?;
    }
    broker.restart()?;
    let mut raw = RawClient::connect(broker.addr())?;
    let replayed = raw.committed_offsets(&group, &topic, &all_parts)?;
    ensure!(replayed == committed, "committed offsets before the restart {committed:?}, after {replayed:?}");
    let described = raw.describe_group(&group)?;
    ensure!(described.group_state.as_str() == "Empty" && described.members.is_empty(), "the group after the restart: {described:?}");

    let mut second = Member::python("second", &member_args(&broker.bootstrap(), &topic, &group, &[]))?;
    let expected: BTreeSet<(i32, i64)> = all_parts.iter().flat_map(|p| (committed[p].max(0)..60).map(move |o| (*p, o))).collect();
    wait_consumed(&mut [&mut second], &expected, Duration::from_secs(30))?;
    second.finish(Duration::from_secs(30))?;
    let counts = consumption_counts(&[&second])?;
    ensure!(
        counts.keys().eq(expected.iter()) && counts.values().all(|n| *n == 1),
        "after the restart the group consumed {:?}, expected each of {expected:?} once",
        counts
    );
    let final_commits = raw.committed_offsets(&group, &topic, &all_parts)?;
    ensure!(final_commits.values().all(|o| *o == 60), "committed after the second consumer: {final_commits:?}");
    println!("committed {committed:?} survived a {} restart", if clean { "SIGTERM" } else { "SIGKILL" });
    broker.check_running()
}

#[test]
fn committed_offsets_survive_a_clean_broker_restart() -> Result<()> {
    commits_survive_broker_restart(true)
}

#[test]
fn committed_offsets_survive_a_broker_kill9() -> Result<()> {
    commits_survive_broker_restart(false)
}

/// KIP-848's downgrade: a classic member and a consumer-protocol member share a group;
/// when the consumer-protocol member leaves, the group is classic again (ListGroups
/// says so) and a new classic member joins it by the classic protocol alone. Offsets
/// stay; every record is consumed exactly once.
#[test]
fn a_group_whose_last_consumer_protocol_member_leaves_is_classic_again() -> Result<()> {
    const PARTITIONS: i32 = 4;
    let mut broker = Broker::start(&["--set", "group.initial.rebalance.delay.ms=0", "--set", "group.consumer.heartbeat.interval.ms=500"])?;
    let addr = broker.addr();
    let (topic, group) = (unique_topic("downgrade"), unique_topic("downgrade-group"));
    let mut raw = RawClient::connect(addr)?;
    raw.create_topic(&topic, PARTITIONS, &[])?;
    let bootstrap = broker.bootstrap();
    let classic = member_args(&bootstrap, &topic, &group, &["--strategy", "range", "--commit-every", "1"]);
    let consumer = member_args(&bootstrap, &topic, &group, &["--protocol", "consumer", "--commit-every", "1"]);
    let kind = |raw: &mut RawClient| -> Result<String> {
        let resp = raw.send(&ListGroupsRequest::default(), 5)?;
        Ok(resp.groups.iter().find(|g| g.group_id.as_str() == group).map(|g| g.group_type.to_string()).unwrap_or_default())
    };
    let mut produced = 0i64;
    let mut step = |members: &mut [&mut Member], per_member: usize| -> Result<()> {
        wait_assigned(members, PARTITIONS, per_member, Duration::from_secs(40))?;
        fill(addr, &topic, PARTITIONS, produced..produced + 10)?;
        produced += 10;
        wait_consumed(members, &positions(PARTITIONS, produced - 10..produced), Duration::from_secs(40))
    };
    let mut c = Member::python("consumer-c", &consumer)?;
    step(&mut [&mut c], 4)?;
    let mut a = Member::python("classic-a", &classic)?;
    step(&mut [&mut c, &mut a], 2)?;
    ensure!(kind(&mut raw)? == "consumer", "a consumer-protocol member's group");
    c.finish(Duration::from_secs(30))?;
    step(&mut [&mut a], 4)?;
    ensure!(kind(&mut raw)? == "classic", "after the last consumer-protocol member left");
    let mut b = Member::python("classic-b", &classic)?;
    step(&mut [&mut a, &mut b], 2)?;
    let described = raw.describe_group(&group)?;
    ensure!(described.group_state.as_str() == "Stable" && described.members.len() == 2, "{described:?}");
    a.finish(Duration::from_secs(30))?;
    b.finish(Duration::from_secs(30))?;
    let counts = consumption_counts(&[&c, &a, &b])?;
    ensure!(counts.keys().eq(positions(PARTITIONS, 0..produced).iter()), "consumed positions differ from the produced ones");
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    ensure!(twice.is_empty(), "records consumed more than once: {twice:?}");
    broker.check_running()
}
