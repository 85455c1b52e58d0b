//! Consumer-group tests: long-running member processes (confluent-kafka
//! `python/group_member.py`, sarama `sarama/group`) that report what they do on stdout
//! in one line protocol, topics filled through the raw client, and checks over the
//! members' reports.
//!
//! The line protocol (partition lists are comma-separated, `-` when empty):
//!
//! ```text
//! ASSIGN <parts>        the partitions-assigned callback (incremental under cooperative)
//! REVOKE <parts>        the partitions-revoked callback
//! LOST <parts>          the partitions-lost callback (librdkafka)
//! ASSIGNMENT <parts>    the member's whole assignment after a callback
//! GENERATION <n>        the generation of a new session (sarama)
//! MSG <p> <o> <value>   a consumed message
//! COMMIT <p>:<o>,...    a synchronous commit the broker acknowledged
//! IDLE                  a poll found nothing after some activity: everything reported
//!                       before it is finished, commits included (confluent-kafka)
//! STOPPING              stdin reached EOF (or the stop condition held): shutting down
//! CLOSED                the consumer closed cleanly; the last line
//! FAIL: <why>           the member gave up (exits non-zero)
//! ```
//!
//! A member runs until its stdin is closed ([`Member::stop`]), then commits, closes its
//! consumer (leaving the group unless it is a static member) and exits 0.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::ops::Range;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context, Result};

use crate::clients::{go_binary, python_script};
use crate::raw::{decode_assignment, record_batch, RawClient};
use crate::wait::{wait_for, wait_until};

/// One line of a member's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Assign(Vec<i32>),
    Revoke(Vec<i32>),
    Lost(Vec<i32>),
    Assignment(Vec<i32>),
    Generation(i32),
    Msg(Consumed),
    Commit(Vec<(i32, i64)>),
    Idle,
    Stopping,
    Closed,
    Fail(String),
    /// Anything else (diagnostics).
    Other(String),
}

/// A consumed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumed {
    pub partition: i32,
    pub offset: i64,
    pub value: String,
}

/// How often each rebalance callback ran.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Callbacks {
    pub assign: usize,
    pub revoke: usize,
    pub lost: usize,
}

fn parse_parts(s: &str) -> Option<Vec<i32>> {
    if s == "-" {
        return Some(Vec::new());
    }
    s.split(',').map(|p| p.parse().ok()).collect()
}

fn parse_commit(s: &str) -> Option<Vec<(i32, i64)>> {
    if s == "-" {
        return Some(Vec::new());
    }
    s.split(',')
        .map(|po| {
            let (p, o) = po.split_once(':')?;
            Some((p.parse().ok()?, o.parse().ok()?))
        })
        .collect()
}

/// Parses one line of the protocol; unknown or malformed lines are [`Event::Other`].
pub fn parse_line(line: &str) -> Event {
    let other = || Event::Other(line.to_string());
    if let Some(why) = line.strip_prefix("FAIL:") {
        return Event::Fail(why.trim().to_string());
    }
    let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
    let rest = rest.trim();
    let parsed = match word {
        "ASSIGN" => parse_parts(rest).map(Event::Assign),
        "REVOKE" => parse_parts(rest).map(Event::Revoke),
        "LOST" => parse_parts(rest).map(Event::Lost),
        "ASSIGNMENT" => parse_parts(rest).map(Event::Assignment),
        "GENERATION" => rest.parse().ok().map(Event::Generation),
        "COMMIT" => parse_commit(rest).map(Event::Commit),
        "IDLE" => Some(Event::Idle),
        "STOPPING" => Some(Event::Stopping),
        "CLOSED" => Some(Event::Closed),
        "MSG" => {
            let mut it = rest.splitn(3, ' ');
            match (it.next().and_then(|p| p.parse().ok()), it.next().and_then(|o| o.parse().ok()), it.next()) {
                (Some(partition), Some(offset), Some(value)) => Some(Event::Msg(Consumed { partition, offset, value: value.to_string() })),
                _ => None,
            }
        }
        _ => None,
    };
    parsed.unwrap_or_else(other)
}

/// A running group member process. Killed on drop, printing the tails of its stdout
/// and stderr (shown by the test harness when the test fails).
pub struct Member {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    killed: bool,
}

fn drain_lines(stream: impl std::io::Read + Send + 'static, into: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf).trim_end_matches(['\r', '\n']).to_string();
                    if let Ok(mut lines) = into.lock() {
                        lines.push(line);
                    }
                }
            }
        }
    });
}

impl Member {
    /// Spawns `cmd` with piped stdin/stdout/stderr.
    pub fn spawn(name: &str, cmd: &mut Command) -> Result<Member> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawning member {name}: {cmd:?}"))?;
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        drain_lines(child.stdout.take().context("member stdout")?, stdout.clone());
        drain_lines(child.stderr.take().context("member stderr")?, stderr.clone());
        let stdin = child.stdin.take();
        Ok(Member { name: name.to_string(), child, stdin, stdout, stderr, killed: false })
    }

    /// `python3 tests/python/group_member.py <args>` (confluent-kafka).
    pub fn python(name: &str, args: &[String]) -> Result<Member> {
        let mut cmd = Command::new("python3");
        cmd.arg(python_script("group_member.py"))
            .args(args)
            .arg("--name")
            .arg(name)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONUNBUFFERED", "1");
        Member::spawn(name, &mut cmd)
    }

    /// The sarama program `tests/sarama/group` with `args`.
    pub fn sarama(name: &str, args: &[String]) -> Result<Member> {
        let bin = go_binary("group")?;
        Member::spawn(name, Command::new(bin).args(args).arg("-name").arg(name))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Everything printed on stdout so far.
    pub fn lines(&self) -> Vec<String> {
        self.stdout.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The parsed report so far.
    pub fn events(&self) -> Vec<Event> {
        self.lines().iter().map(|l| parse_line(l)).collect()
    }

    /// The report up to (not including) STOPPING: what happened while running.
    pub fn running_events(&self) -> Vec<Event> {
        self.events().into_iter().take_while(|e| *e != Event::Stopping).collect()
    }

    /// Every message consumed so far, in order.
    pub fn consumed(&self) -> Vec<Consumed> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Msg(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    /// The last reported assignment before STOPPING.
    pub fn assignment(&self) -> Option<Vec<i32>> {
        self.running_events().into_iter().rev().find_map(|e| match e {
            Event::Assignment(parts) => Some(parts),
            _ => None,
        })
    }

    /// Rebalance callbacks before STOPPING.
    pub fn callbacks(&self) -> Callbacks {
        let mut c = Callbacks::default();
        for e in self.running_events() {
            match e {
                Event::Assign(_) => c.assign += 1,
                Event::Revoke(_) => c.revoke += 1,
                Event::Lost(_) => c.lost += 1,
                _ => {}
            }
        }
        c
    }

    /// Generations reported (sarama), in order.
    pub fn generations(&self) -> Vec<i32> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Generation(g) => Some(g),
                _ => None,
            })
            .collect()
    }

    /// The latest acknowledged commit per partition.
    pub fn last_commits(&self) -> BTreeMap<i32, i64> {
        let mut out = BTreeMap::new();
        for e in self.events() {
            if let Event::Commit(list) = e {
                out.extend(list);
            }
        }
        out
    }

    /// True if the last thing the member reported is IDLE.
    pub fn is_idle(&self) -> bool {
        self.events().last() == Some(&Event::Idle)
    }

    /// Lines reporting errors (ERROR, COMMITFAIL): transient ones are allowed, but they
    /// explain a failure.
    pub fn errors(&self) -> Vec<String> {
        self.lines().into_iter().filter(|l| l.starts_with("ERROR") || l.starts_with("COMMITFAIL")).collect()
    }

    /// Fails if the member exited (unless killed by the test) or reported FAIL.
    pub fn check(&mut self) -> Result<()> {
        if let Some(why) = self.events().into_iter().find_map(|e| match e {
            Event::Fail(why) => Some(why),
            _ => None,
        }) {
            bail!("member {} failed: {why}\n{}", self.name, self.report());
        }
        if self.killed {
            return Ok(());
        }
        if let Some(status) = self.child.try_wait().context("polling member")? {
            // The reader threads may still be draining the pipes.
            std::thread::sleep(Duration::from_millis(100));
            bail!("member {} exited early with {status}\n{}", self.name, self.report());
        }
        Ok(())
    }

    /// Closes stdin: the member commits, closes its consumer and exits.
    pub fn stop(&mut self) {
        self.stdin = None;
    }

    /// SIGKILL: no commit, no LeaveGroup.
    pub fn kill9(&mut self) -> Result<()> {
        self.killed = true;
        self.stdin = None;
        self.child.kill().with_context(|| format!("killing member {}", self.name))?;
        self.child.wait().with_context(|| format!("reaping member {}", self.name))?;
        Ok(())
    }

    /// Waits up to `timeout` for the member to exit; its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let name = self.name.clone();
        let child = &mut self.child;
        let status = wait_for(&format!("member {name} to exit"), timeout, || child.try_wait().ok().flatten());
        status.map_err(|e| anyhow!("{e}\n{}", self.report()))
    }

    /// [`Member::stop`], then requires a clean exit (status 0, CLOSED last) within `timeout`.
    pub fn finish(&mut self, timeout: Duration) -> Result<()> {
        self.stop();
        let status = self.wait_exit(timeout)?;
        let name = self.name.clone();
        // EOF on stdout comes with the exit; give the reader thread a moment to store it.
        let closed =
            wait_until(&format!("member {name}'s CLOSED line"), Duration::from_secs(5), || self.events().last() == Some(&Event::Closed));
        ensure!(status.success() && closed.is_ok(), "member {name} did not close cleanly ({status})\n{}", self.report());
        Ok(())
    }

    /// The tails of stdout and stderr, for failure messages.
    pub fn report(&self) -> String {
        let tail = |lines: &Arc<Mutex<Vec<String>>>, n: usize| {
            let lines = lines.lock().map(|l| l.clone()).unwrap_or_default();
            let skipped = lines.len().saturating_sub(n);
            let mut s = if skipped > 0 { format!("[... {skipped} lines omitted ...]\n") } else { String::new() };
            s.push_str(&lines[skipped..].join("\n"));
            s
        };
        format!(
            "---- member {} stdout ----\n{}\n---- member {} stderr ----\n{}\n---- end member {} ----",
            self.name,
            tail(&self.stdout, 40),
            self.name,
            tail(&self.stderr, 40),
            self.name
        )
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.stdin = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
        eprintln!("{}", self.report());
    }
}

/// The value the tests write at `offset` of `partition`: `p<partition>-o<offset>`.
pub fn value_at(partition: i32, offset: i64) -> String {
    format!("p{partition}-o{offset}")
}

/// Appends the messages for offsets `offsets` to each of `partitions` of `topic`
/// (one acks=all batch per partition), failing unless each lands at `offsets.start`.
pub fn fill(addr: SocketAddr, topic: &str, partitions: i32, offsets: Range<i64>) -> Result<()> {
    let mut client = RawClient::connect(addr)?;
    let version = client.version_for(kafka_protocol::messages::ApiKey::Produce)?;
    for p in 0..partitions {
        let values: Vec<String> = offsets.clone().map(|o| value_at(p, o)).collect();
        let records: Vec<_> = values.iter().map(|v| (None, Some(v.as_bytes()))).collect();
        let resp = client.produce(topic, p, record_batch(&records, now_ms()), version)?;
        ensure!(resp.error_code == 0, "producing to {topic}-{p}: error code {}", resp.error_code);
        ensure!(resp.base_offset == offsets.start, "{topic}-{p}: batch landed at {}, expected {}", resp.base_offset, offsets.start);
    }
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Every (partition, offset) for `offsets` of each of `partitions`.
pub fn positions(partitions: i32, offsets: Range<i64>) -> BTreeSet<(i32, i64)> {
    (0..partitions).flat_map(|p| offsets.clone().map(move |o| (p, o))).collect()
}

/// How often each (partition, offset) was consumed, over all members; fails if a
/// message's value is not the one written there.
pub fn consumption_counts(members: &[&Member]) -> Result<BTreeMap<(i32, i64), usize>> {
    let mut counts = BTreeMap::new();
    for m in members {
        for c in m.consumed() {
            ensure!(
                c.value == value_at(c.partition, c.offset),
                "member {} consumed {:?} at {}/{}, which holds {:?}",
                m.name(),
                c.value,
                c.partition,
                c.offset,
                value_at(c.partition, c.offset)
            );
            *counts.entry((c.partition, c.offset)).or_insert(0) += 1;
        }
    }
    Ok(counts)
}

/// Waits until the members together have consumed every position in `expected`,
/// failing early if one of them fails or exits.
pub fn wait_consumed(members: &mut [&mut Member], expected: &BTreeSet<(i32, i64)>, timeout: Duration) -> Result<()> {
    let mut failure = None;
    let mut missing = expected.len();
    let waited = wait_until("the group to consume every message", timeout, || {
        for m in members.iter_mut() {
            if let Err(e) = m.check() {
                failure = Some(e);
                return true;
            }
        }
        let seen: BTreeSet<(i32, i64)> = members.iter().flat_map(|m| m.consumed()).map(|c| (c.partition, c.offset)).collect();
        missing = expected.difference(&seen).count();
        missing == 0
    });
    if let Some(e) = failure {
        return Err(e);
    }
    waited.map_err(|e| {
        let reports: Vec<String> = members.iter().map(|m| m.report()).collect();
        anyhow!("{e}: {missing} of {} messages never consumed\n{}", expected.len(), reports.join("\n"))
    })
}

/// Waits until each member's reported assignment has `per_member` partitions and the
/// assignments together cover `0..partitions` exactly once; returns them in order.
pub fn wait_assigned(members: &mut [&mut Member], partitions: i32, per_member: usize, timeout: Duration) -> Result<Vec<Vec<i32>>> {
    let mut failure = None;
    let mut last = Vec::new();
    let waited = wait_for("every member to report its share of the partitions", timeout, || {
        for m in members.iter_mut() {
            if let Err(e) = m.check() {
                failure = Some(e);
                return Some(());
            }
        }
        last = members.iter().map(|m| m.assignment().unwrap_or_default()).collect();
        let mut all: Vec<i32> = last.iter().flatten().copied().collect();
        all.sort_unstable();
        (last.iter().all(|a| a.len() == per_member) && all == (0..partitions).collect::<Vec<_>>()).then_some(())
    });
    if let Some(e) = failure {
        return Err(e);
    }
    waited.map_err(|e| {
        let reports: Vec<String> = members.iter().map(|m| m.report()).collect();
        anyhow!("{e}; last assignments {last:?}\n{}", reports.join("\n"))
    })?;
    Ok(last)
}

/// The scenario every client library is held to: `members` members subscribe to one
/// group on a fresh `partitions`-partition topic pre-filled with `per_partition`
/// messages each (all members start at once, within the broker's initial rebalance
/// delay). Checks, in order: every message is consumed; each member ends up with
/// `partitions / members` partitions, disjoint; DescribeGroups agrees (Stable,
/// `protocol` chosen, each member's assignment as the member reported it); after a
/// clean stop every message was consumed exactly once, the committed offsets are the
/// high watermarks, and the group is Empty.
///
/// `spawn(index, topic, group)` starts member `index`, named `member-<index>` (its
/// client id).
pub fn balanced_group_scenario(
    addr: SocketAddr,
    members: usize,
    partitions: i32,
    per_partition: i64,
    protocol: &str,
    spawn: impl Fn(&str, &str, &str) -> Result<Member>,
) -> Result<()> {
    let topic = crate::unique_topic("group-topic");
    let group = crate::unique_topic("group");
    let mut raw = RawClient::connect(addr)?;
    raw.create_topic(&topic, partitions, &[])?;
    fill(addr, &topic, partitions, 0..per_partition)?;
    let mut running = (0..members).map(|i| spawn(&format!("member-{i}"), &topic, &group)).collect::<Result<Vec<_>>>()?;
    let expected = positions(partitions, 0..per_partition);
    let per_member = partitions as usize / members;
    {
        let mut refs: Vec<&mut Member> = running.iter_mut().collect();
        wait_consumed(&mut refs, &expected, Duration::from_secs(40))?;
        wait_assigned(&mut refs, partitions, per_member, Duration::from_secs(20))?;
    }

    // The coordinator's view matches what the members were told.
    let described = raw.describe_group(&group)?;
    ensure!(described.group_state.as_str() == "Stable", "group state {:?}, expected Stable: {described:?}", described.group_state);
    ensure!(described.protocol_type.as_str() == "consumer", "protocol type {:?}", described.protocol_type);
    ensure!(described.protocol_data.as_str() == protocol, "protocol {:?}, expected {protocol:?}", described.protocol_data);
    ensure!(described.members.len() == members, "DescribeGroups lists {} members: {described:?}", described.members.len());
    for d in &described.members {
        let m = running
            .iter()
            .find(|m| m.name() == d.client_id.as_str())
            .ok_or_else(|| anyhow!("DescribeGroups lists a member with client id {:?}", d.client_id))?;
        let broker_view = decode_assignment(&d.member_assignment)?.remove(&topic).unwrap_or_default();
        ensure!(
            Some(&broker_view) == m.assignment().as_ref(),
            "{}: DescribeGroups says partitions {broker_view:?}, the member says {:?}",
            m.name(),
            m.assignment()
        );
    }

    for m in running.iter_mut() {
        m.finish(Duration::from_secs(30))?;
    }
    let counts = consumption_counts(&running.iter().collect::<Vec<_>>())?;
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).map(|(pos, n)| (*pos, *n)).take(20).collect();
    ensure!(twice.is_empty(), "messages consumed more than once (partition, offset), count: {twice:?}");
    ensure!(counts.len() == expected.len() && counts.keys().eq(expected.iter()), "consumed positions differ from the produced ones");

    let all: Vec<i32> = (0..partitions).collect();
    let committed = raw.committed_offsets(&group, &topic, &all)?;
    let errors: Vec<String> = running.iter().flat_map(|m| m.errors().into_iter().map(|e| format!("{}: {e}", m.name()))).collect();
    ensure!(
        committed.values().all(|o| *o == per_partition),
        "committed offsets {committed:?}, expected {per_partition} everywhere; errors the members reported:\n{}",
        errors.join("\n")
    );
    let after = raw.describe_group(&group)?;
    ensure!(after.group_state.as_str() == "Empty" && after.members.is_empty(), "after every member left: {after:?}");
    let summary: Vec<String> = running.iter().map(|m| format!("{} {:?} gen {:?}", m.name(), m.assignment(), m.generations())).collect();
    println!("{} messages consumed once by {members} members: {}", expected.len(), summary.join("; "));
    Ok(())
}
