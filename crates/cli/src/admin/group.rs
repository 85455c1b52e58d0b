//! `karst group ...`: list, describe (with lag), reset-offsets, delete.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Context, Result};
use kafka_protocol::messages::describe_share_group_offsets_request::DescribeShareGroupOffsetsRequestGroup;
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, DeleteGroupsRequest, DescribeGroupsRequest, DescribeShareGroupOffsetsRequest, ListGroupsRequest,
    ShareGroupDescribeRequest,
};
use serde_json::json;

use super::client::{group_id, Client, EARLIEST, LATEST};
use super::errors::check;
use super::membership::{commit_offsets, decode_assignment, fetch_offsets, Offsets};
use super::output::{self, outln};
use super::topic::report;
use super::{Format, GroupAction, ResetOffsetsArgs};

pub(crate) async fn run(client: &mut Client, out: Format, action: GroupAction) -> Result<()> {
    match action {
        GroupAction::List => list(client, out).await,
        GroupAction::Describe { group } => describe(client, out, &group).await,
        GroupAction::ResetOffsets(args) => reset_offsets(client, out, &args).await,
        GroupAction::Delete { group } => delete(client, out, &group).await,
    }
}

/// Groups live on their coordinators: ask every broker.
async fn list(client: &mut Client, out: Format) -> Result<()> {
    client.metadata(Some(&[]), false).await?;
    let ids: Vec<i32> = client.brokers().keys().copied().collect();
    let mut groups: BTreeMap<String, (String, String, String)> = BTreeMap::new();
    for id in ids {
        let conn = client.broker(id).await?;
        let (_, resp) = conn.call(|_| ListGroupsRequest::default()).await?;
        check(resp.error_code, None).with_context(|| format!("listing the groups of broker {id}"))?;
        for g in resp.groups {
            let kind = if g.group_type.is_empty() { "classic".to_string() } else { g.group_type.to_string() };
            groups.insert(g.group_id.0.to_string(), (g.protocol_type.to_string(), g.group_state.to_string(), kind));
        }
    }
    match out {
        Format::Json => output::json(&json!(groups
            .iter()
            .map(|(g, (ptype, state, kind))| {
                json!({"group": g, "type": kind, "protocol_type": ptype, "state": if state.is_empty() { None } else { Some(state) }})
            })
            .collect::<Vec<_>>())),
        Format::Text => {
            let rows: Vec<Vec<String>> = groups
                .iter()
                .map(|(g, (ptype, state, kind))| {
                    vec![g.clone(), if state.is_empty() { "-".into() } else { state.clone() }, kind.clone(), ptype.clone()]
                })
                .collect();
            output::table(&["GROUP", "STATE", "TYPE", "PROTOCOL-TYPE"], &rows)
        }
    }
}

/// A member: member id, client id, host, assignment.
type Described = (String, String, String, BTreeMap<String, Vec<i32>>);

/// A group as either protocol describes it.
struct Group {
    state: String,
    protocol_type: String,
    /// The classic protocol chosen, or a consumer group's server assignor.
    protocol: String,
    /// (member id, client id, host, assignment)
    members: Vec<Described>,
}

/// DescribeGroups, or ConsumerGroupDescribe for a KIP-848 group (DescribeGroups
/// calls one Dead).
async fn describe_group(client: &mut Client, group: &str) -> Result<(i32, Group)> {
    let (coordinator, conn) = client.coordinator(group).await?;
    let (_, resp) = conn
        .call(|_| {
            let mut r = DescribeGroupsRequest::default();
            r.groups = vec![group_id(group)];
            r
        })
        .await?;
    let g = resp.groups.into_iter().next().context("DescribeGroups answered no group")?;
    // The members of a ConsumerGroupDescribe or ShareGroupDescribe answer: the same
    // fields in two generated types.
    macro_rules! members {
        ($described:expr) => {
            $described
                .members
                .iter()
                .map(|m| {
                    let a = m.assignment.topic_partitions.iter().map(|t| (t.topic_name.to_string(), t.partitions.clone())).collect();
                    (m.member_id.to_string(), m.client_id.to_string(), m.client_host.to_string(), a)
                })
                .collect()
        };
    }
    if g.group_state.as_str() == "Dead" && conn.supports::<ConsumerGroupDescribeRequest>() {
        let (_, resp) = conn.call(|_| ConsumerGroupDescribeRequest::default().with_group_ids(vec![group_id(group)])).await?;
        if let Some(c) = resp.groups.into_iter().next().filter(|c| c.error_code == 0) {
            let protocol = c.assignor_name.to_string();
            let group = Group { state: c.group_state.to_string(), protocol_type: "consumer".into(), protocol, members: members!(c) };
            return Ok((coordinator, group));
        }
    }
    if g.group_state.as_str() == "Dead" && conn.supports::<ShareGroupDescribeRequest>() {
        let (_, resp) = conn.call(|_| ShareGroupDescribeRequest::default().with_group_ids(vec![group_id(group)])).await?;
        if let Some(s) = resp.groups.into_iter().next().filter(|s| s.error_code == 0) {
            let protocol = s.assignor_name.to_string();
            let group = Group { state: s.group_state.to_string(), protocol_type: "share".into(), protocol, members: members!(s) };
            return Ok((coordinator, group));
        }
    }
    check(g.error_code, g.error_message.as_deref()).with_context(|| format!("describing group `{group}`"))?;
    let consumer = g.protocol_type.as_str() == "consumer";
    let members = g
        .members
        .iter()
        .map(|m| {
            let assignment = if consumer { decode_assignment(&m.member_assignment).unwrap_or_default() } else { BTreeMap::new() };
            (m.member_id.to_string(), m.client_id.to_string(), m.client_host.to_string(), assignment)
        })
        .collect();
    Ok((
        coordinator,
        Group {
            state: g.group_state.to_string(),
            protocol_type: g.protocol_type.to_string(),
            protocol: g.protocol_data.to_string(),
            members,
        },
    ))
}

/// Where each share-partition of a share group starts (DescribeShareGroupOffsets).
async fn share_start_offsets(client: &mut Client, group: &str) -> Result<Offsets> {
    let (_, conn) = client.coordinator(group).await?;
    let (_, resp) = conn
        .call(|_| {
            DescribeShareGroupOffsetsRequest::default()
                .with_groups(vec![DescribeShareGroupOffsetsRequestGroup::default().with_group_id(group_id(group)).with_topics(None)])
        })
        .await?;
    let mut out = Offsets::new();
    for g in resp.groups {
        check(g.error_code, g.error_message.as_deref()).with_context(|| format!("the start offsets of share group `{group}`"))?;
        for t in g.topics {
            for p in t.partitions.iter().filter(|p| p.error_code == 0 && p.start_offset >= 0) {
                out.insert((t.topic_name.to_string(), p.partition_index), p.start_offset);
            }
        }
    }
    Ok(out)
}

/// Topic, partition, committed offset, log end, lag, owning member.
type OffsetRow = (String, i32, Option<i64>, Option<i64>, Option<i64>, Option<String>);

async fn describe(client: &mut Client, out: Format, group: &str) -> Result<()> {
    let (coordinator, g) = describe_group(client, group).await?;
    let mut owner: BTreeMap<(String, i32), String> = BTreeMap::new();
    for (id, _, _, assignment) in &g.members {
        for (t, ps) in assignment {
            for p in ps {
                owner.insert((t.clone(), *p), id.clone());
            }
        }
    }
    let members = &g.members;
    // A share group has no committed offsets: its share-partitions' start offsets.
    let committed =
        if g.protocol_type == "share" { share_start_offsets(client, group).await? } else { fetch_offsets(client, group, None).await? };
    let mut partitions: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    for (t, p) in committed.keys().chain(owner.keys()) {
        partitions.entry(t.clone()).or_default().insert(*p);
    }
    let mut log_end: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for (t, ps) in &partitions {
        let Ok(info) = client.topic(t, false).await else { continue };
        let ps: Vec<i32> = ps.iter().copied().filter(|p| info.partitions.iter().any(|x| x.index == *p)).collect();
        if let Ok(ends) = client.list_offsets(&info, &ps, LATEST).await {
            for (p, o) in ends {
                log_end.insert((t.clone(), p), o);
            }
        }
    }
    let rows: Vec<OffsetRow> = partitions
        .iter()
        .flat_map(|(t, ps)| ps.iter().map(move |p| (t.clone(), *p)))
        .map(|(t, p)| {
            let key = (t.clone(), p);
            let c = committed.get(&key).copied();
            let e = log_end.get(&key).copied();
            let lag = match (c, e) {
                (Some(c), Some(e)) => Some((e - c).max(0)),
                _ => None,
            };
            (t, p, c, e, lag, owner.get(&key).cloned())
        })
        .collect();
    match out {
        Format::Json => output::json(&json!({
            "group": group,
            "state": g.state,
            "protocol_type": g.protocol_type,
            "protocol": g.protocol,
            "coordinator": coordinator,
            "members": members.iter().map(|(id, client_id, host, a)| json!({
                "member_id": id, "client_id": client_id, "host": host, "assignment": a,
            })).collect::<Vec<_>>(),
            "offsets": rows.iter().map(|(t, p, c, e, lag, m)| json!({
                "topic": t, "partition": p, "committed_offset": c, "log_end_offset": e, "lag": lag, "member_id": m,
            })).collect::<Vec<_>>(),
        })),
        Format::Text => {
            let proto = if g.protocol.is_empty() { String::new() } else { format!("/{}", g.protocol) };
            outln!(
                "Group: {group}  State: {}  Protocol: {}{proto}  Coordinator: {coordinator}  Members: {}",
                g.state,
                g.protocol_type,
                members.len()
            )?;
            if !members.is_empty() {
                let mrows: Vec<Vec<String>> = members
                    .iter()
                    .map(|(id, client_id, host, a)| {
                        let a: Vec<String> = a.iter().map(|(t, ps)| format!("{t}:{}", output::ids(ps))).collect();
                        vec![id.clone(), client_id.clone(), host.clone(), a.join(" ")]
                    })
                    .collect();
                output::table(&["MEMBER-ID", "CLIENT-ID", "HOST", "ASSIGNMENT"], &mrows)?;
            }
            let dash = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
            let orows: Vec<Vec<String>> = rows
                .iter()
                .map(|(t, p, c, e, lag, m)| vec![t.clone(), p.to_string(), dash(*c), dash(*e), dash(*lag), m.clone().unwrap_or("-".into())])
                .collect();
            if orows.is_empty() {
                outln!("No committed offsets.")?;
                Ok(())
            } else {
                output::table(&["TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "MEMBER-ID"], &orows)
            }
        }
    }
}

async fn reset_offsets(client: &mut Client, out: Format, a: &ResetOffsetsArgs) -> Result<()> {
    let group = a.group.as_str();
    // Kafka's rule: only an inactive group's offsets may be moved.
    match describe_group(client, group).await {
        Ok((_, g)) => {
            let state = g.state.as_str();
            if !g.members.is_empty() || !matches!(state, "Empty" | "Dead" | "") {
                bail!(
                    "group `{group}` is {state} with {} member(s); offsets can only be reset while it is empty\nhint: stop its consumers first (`karst group describe {group}`)",
                    g.members.len()
                );
            }
        }
        Err(e) if e.chain().any(|c| c.downcast_ref::<super::errors::KafkaError>().is_some_and(|k| k.code == 69)) => {}
        Err(e) => return Err(e),
    }
    let topic = client.topic(&a.topic, false).await?;
    let partitions: Vec<i32> = match a.partition {
        Some(p) if topic.partitions.iter().any(|x| x.index == p) => vec![p],
        Some(p) => bail!("topic `{}` has no partition {p}", a.topic),
        None => topic.partitions.iter().map(|p| p.index).collect(),
    };
    let wanted: BTreeMap<String, Vec<i32>> = [(a.topic.clone(), partitions.clone())].into();
    let current = fetch_offsets(client, group, Some(&wanted)).await?;
    let earliest = client.list_offsets(&topic, &partitions, EARLIEST).await?;
    let latest = client.list_offsets(&topic, &partitions, LATEST).await?;
    let at_time = match a.to_datetime {
        Some(ms) => Some(client.list_offsets(&topic, &partitions, ms).await?),
        None => None,
    };
    let mut plan: Offsets = BTreeMap::new();
    for p in &partitions {
        let (lo, hi) = (earliest.get(p).copied().unwrap_or(0), latest.get(p).copied().unwrap_or(0));
        let new = if a.to_earliest {
            lo
        } else if a.to_latest {
            hi
        } else if let Some(n) = a.to_offset {
            n.clamp(lo, hi)
        } else {
            match at_time.as_ref().and_then(|m| m.get(p).copied()) {
                Some(o) if o >= 0 => o,
                _ => hi,
            }
        };
        plan.insert((a.topic.clone(), *p), new);
    }
    if a.execute {
        commit_offsets(client, group, -1, "", &plan).await.with_context(|| format!("resetting the offsets of group `{group}`"))?;
    }
    match out {
        Format::Json => output::json(&json!({
            "group": group,
            "executed": a.execute,
            "offsets": plan.iter().map(|((t, p), o)| json!({
                "topic": t, "partition": p, "current_offset": current.get(&(t.clone(), *p)), "new_offset": o,
            })).collect::<Vec<_>>(),
        })),
        Format::Text => {
            let rows: Vec<Vec<String>> = plan
                .iter()
                .map(|((t, p), o)| {
                    let c = current.get(&(t.clone(), *p)).map_or("-".to_string(), |c| c.to_string());
                    vec![t.clone(), p.to_string(), c, o.to_string()]
                })
                .collect();
            output::table(&["TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET"], &rows)?;
            if a.execute {
                outln!("Committed the new offsets of group {group}.")?;
            } else {
                outln!("Dry run: nothing was changed. Add --execute to commit these offsets.")?;
            }
            Ok(())
        }
    }
}

async fn delete(client: &mut Client, out: Format, group: &str) -> Result<()> {
    let (_, conn) = client.coordinator(group).await?;
    let (_, resp) = conn
        .call(|_| {
            let mut r = DeleteGroupsRequest::default();
            r.groups_names = vec![group_id(group)];
            r
        })
        .await?;
    let r = resp.results.first().context("DeleteGroups answered no group")?;
    check(r.error_code, None).with_context(|| format!("deleting group `{group}`"))?;
    report(out, json!({"group": group, "deleted": true}), &format!("Deleted group {group}."))
}
