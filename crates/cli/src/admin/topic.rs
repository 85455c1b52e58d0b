//! `karst topic ...`: create, list, describe, delete, alter-config, reassign.

use anyhow::{bail, Context, Result};
use kafka_protocol::messages::alter_partition_reassignments_request::{ReassignablePartition, ReassignableTopic};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::DescribeConfigsResult;
use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::list_partition_reassignments_request::ListPartitionReassignmentsTopics;
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, BrokerId, CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest,
    IncrementalAlterConfigsRequest, ListPartitionReassignmentsRequest,
};
use serde_json::json;

use super::args::parse_replicas;
use super::client::{str_bytes, topic_name, Client};
use super::connection::Connection;
use super::errors::check;
use super::output::{self, ids, outln};
use super::{Format, TopicAction};

const RESOURCE_TOPIC: i8 = 2;
const ADMIN_TIMEOUT_MS: i32 = 30_000;

pub(crate) async fn run(client: &mut Client, out: Format, action: TopicAction) -> Result<()> {
    match action {
        TopicAction::Create { name, partitions, replication_factor, configs, if_not_exists } => {
            create(client, out, &name, partitions, replication_factor, &configs, if_not_exists).await
        }
        TopicAction::List { exclude_internal } => list(client, out, exclude_internal).await,
        TopicAction::Describe { name } => describe(client, out, &name).await,
        TopicAction::Delete { name } => delete(client, out, &name).await,
        TopicAction::AlterConfig { name, set, delete } => alter_config(client, out, &name, &set, &delete).await,
        TopicAction::Reassign { name, partition, replicas, cancel, list } => {
            if list {
                return list_reassignments(client, out, name.as_deref()).await;
            }
            let Some(name) = name else { bail!("topic reassign needs a topic name (or --list)") };
            let Some(partition) = partition else { bail!("topic reassign needs --partition N") };
            let target = match (replicas, cancel) {
                (Some(r), false) => Some(parse_replicas(&r)?),
                (None, true) => None,
                _ => bail!("topic reassign needs --replicas IDS or --cancel"),
            };
            reassign(client, out, &name, partition, target).await
        }
    }
}

async fn create(
    client: &mut Client,
    out: Format,
    name: &str,
    partitions: Option<i32>,
    replication_factor: Option<i16>,
    configs: &[(String, String)],
    if_not_exists: bool,
) -> Result<()> {
    let conn = client.controller().await?;
    let (version, resp) = conn
        .call(|v| {
            // -1 (the broker's default) needs v4+.
            let default = if v >= 4 { -1 } else { 1 };
            let mut t = CreatableTopic::default();
            t.name = topic_name(name);
            t.num_partitions = partitions.unwrap_or(default);
            t.replication_factor = replication_factor.unwrap_or(default as i16);
            t.configs = configs
                .iter()
                .map(|(k, v)| {
                    let mut c = CreatableTopicConfig::default();
                    c.name = str_bytes(k);
                    c.value = Some(str_bytes(v));
                    c
                })
                .collect();
            let mut r = CreateTopicsRequest::default();
            r.topics = vec![t];
            r.timeout_ms = ADMIN_TIMEOUT_MS;
            r
        })
        .await?;
    let t = resp.topics.first().context("CreateTopics answered no topic")?;
    if if_not_exists && t.error_code == 36 {
        return report(out, json!({"topic": name, "created": false}), &format!("Topic {name} already exists."));
    }
    check(t.error_code, t.error_message.as_deref()).with_context(|| format!("creating topic `{name}`"))?;
    // v5+ reports what was created; older versions only succeed.
    let (p, rf) = if version >= 5 { (Some(t.num_partitions), Some(t.replication_factor)) } else { (partitions, replication_factor) };
    let shape = match (p, rf) {
        (Some(p), Some(rf)) if p > 0 && rf > 0 => format!(" ({p} partitions, replication factor {rf})"),
        _ => String::new(),
    };
    report(
        out,
        json!({"topic": name, "created": true, "partitions": p, "replication_factor": rf}),
        &format!("Created topic {name}{shape}."),
    )
}

async fn list(client: &mut Client, out: Format, exclude_internal: bool) -> Result<()> {
    let topics: Vec<_> = client.topics().await?.into_iter().filter(|t| !(exclude_internal && t.internal)).collect();
    match out {
        Format::Json => output::json(&json!(topics
            .iter()
            .map(|t| json!({"name": t.name, "partitions": t.partitions.len(), "internal": t.internal}))
            .collect::<Vec<_>>())),
        Format::Text => {
            use std::io::Write;
            let mut o = std::io::stdout().lock();
            for t in &topics {
                writeln!(o, "{}", t.name)?;
            }
            Ok(())
        }
    }
}

async fn describe(client: &mut Client, out: Format, name: &str) -> Result<()> {
    let topic = client.topic(name, false).await?;
    let result =
        describe_resource(client.any(), RESOURCE_TOPIC, name).await.with_context(|| format!("describing the configs of `{name}`"))?;
    // Sources: 1 = topic override; 5 = default; others are broker-level settings.
    let mut configs: Vec<(String, Option<String>, i8, bool)> = result
        .configs
        .iter()
        .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string()), c.config_source, c.is_sensitive))
        .collect();
    configs.sort();
    match out {
        Format::Json => output::json(&json!({
            "topic": topic.name,
            "topic_id": topic.id,
            "internal": topic.internal,
            "partitions": topic.partitions.iter().map(|p| json!({
                "partition": p.index,
                "leader": p.leader,
                "leader_epoch": p.leader_epoch,
                "replicas": p.replicas,
                "isr": p.isr,
                "offline": p.offline,
                "error": (p.error_code != 0).then(|| super::errors::error_name(p.error_code)),
            })).collect::<Vec<_>>(),
            "configs": configs.iter().map(|(k, v, source, sensitive)| json!({
                "name": k,
                "value": if *sensitive { None } else { v.clone() },
                "source": config_source(*source),
                "default": *source == 5,
            })).collect::<Vec<_>>(),
        })),
        Format::Text => {
            let overrides: Vec<String> =
                configs.iter().filter(|c| c.2 == 1).map(|(k, v, _, _)| format!("{k}={}", v.as_deref().unwrap_or(""))).collect();
            outln!(
                "Topic: {}\tTopicId: {}\tPartitionCount: {}\tReplicationFactor: {}\tConfigs: {}",
                topic.name,
                if topic.id.is_empty() { "-" } else { &topic.id },
                topic.partitions.len(),
                topic.partitions.first().map_or(0, |p| p.replicas.len()),
                overrides.join(",")
            )?;
            let rows: Vec<Vec<String>> = topic
                .partitions
                .iter()
                .map(|p| {
                    vec![
                        p.index.to_string(),
                        if p.leader < 0 { "none".to_string() } else { p.leader.to_string() },
                        ids(&p.replicas),
                        ids(&p.isr),
                        if p.error_code != 0 { super::errors::error_name(p.error_code) } else { ids(&p.offline) },
                    ]
                })
                .collect();
            output::table(&["PARTITION", "LEADER", "REPLICAS", "ISR", "OFFLINE"], &rows)?;
            outln!("Configs:")?;
            for (k, v, source, sensitive) in &configs {
                let v = if *sensitive { "(sensitive)" } else { v.as_deref().unwrap_or("") };
                outln!("  {k}={v}  ({})", config_source(*source))?;
            }
            Ok(())
        }
    }
}

pub(crate) fn config_source(source: i8) -> &'static str {
    match source {
        1 => "topic",
        2 => "dynamic broker",
        3 => "dynamic default broker",
        4 => "static broker",
        5 => "default",
        6 => "dynamic broker logger",
        _ => "unknown",
    }
}

async fn delete(client: &mut Client, out: Format, name: &str) -> Result<()> {
    let conn = client.controller().await?;
    let (_, resp) = conn
        .call(|v| {
            let mut r = DeleteTopicsRequest::default();
            if v >= 6 {
                let mut t = DeleteTopicState::default();
                t.name = Some(topic_name(name));
                r.topics = vec![t];
            } else {
                r.topic_names = vec![topic_name(name)];
            }
            r.timeout_ms = ADMIN_TIMEOUT_MS;
            r
        })
        .await?;
    let t = resp.responses.first().context("DeleteTopics answered no topic")?;
    check(t.error_code, t.error_message.as_deref()).with_context(|| format!("deleting topic `{name}`"))?;
    report(out, json!({"topic": name, "deleted": true}), &format!("Deleted topic {name}."))
}

async fn alter_config(client: &mut Client, out: Format, name: &str, set: &[(String, String)], delete: &[String]) -> Result<()> {
    alter_resource(client.any(), RESOURCE_TOPIC, name, set, delete).await.with_context(|| format!("altering the configs of `{name}`"))?;
    let set_json: serde_json::Map<String, serde_json::Value> = set.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    let mut text = format!("Updated configs of topic {name}:");
    for (k, v) in set {
        text.push_str(&format!(" {k}={v}"));
    }
    for k in delete {
        text.push_str(&format!(" -{k}"));
    }
    report(out, json!({"topic": name, "set": set_json, "deleted": delete}), &text)
}

/// DescribeConfigs of one resource (topic 2, broker 4), every key.
pub(crate) async fn describe_resource(conn: &mut Connection, resource_type: i8, name: &str) -> Result<DescribeConfigsResult> {
    let (_, resp) = conn
        .call(|_| {
            let mut res = DescribeConfigsResource::default();
            res.resource_type = resource_type;
            res.resource_name = str_bytes(name);
            res.configuration_keys = None;
            let mut r = DescribeConfigsRequest::default();
            r.resources = vec![res];
            r
        })
        .await?;
    let result = resp.results.into_iter().next().context("DescribeConfigs answered no resource")?;
    check(result.error_code, result.error_message.as_deref())?;
    Ok(result)
}

/// IncrementalAlterConfigs of one resource (topic 2, broker 4): SET each of `set`,
/// DELETE each of `delete`.
pub(crate) async fn alter_resource(
    conn: &mut Connection,
    resource_type: i8,
    name: &str,
    set: &[(String, String)],
    delete: &[String],
) -> Result<()> {
    if set.is_empty() && delete.is_empty() {
        bail!("nothing to change: give --set KEY=VALUE and/or --delete KEY");
    }
    let (_, resp) = conn
        .call(|_| {
            let mut configs = Vec::new();
            for (k, v) in set {
                let mut c = AlterableConfig::default();
                c.name = str_bytes(k);
                c.config_operation = 0; // SET
                c.value = Some(str_bytes(v));
                configs.push(c);
            }
            for k in delete {
                let mut c = AlterableConfig::default();
                c.name = str_bytes(k);
                c.config_operation = 1; // DELETE
                c.value = None;
                configs.push(c);
            }
            let mut res = AlterConfigsResource::default();
            res.resource_type = resource_type;
            res.resource_name = str_bytes(name);
            res.configs = configs;
            let mut r = IncrementalAlterConfigsRequest::default();
            r.resources = vec![res];
            r
        })
        .await?;
    let r = resp.responses.first().context("IncrementalAlterConfigs answered no resource")?;
    Ok(check(r.error_code, r.error_message.as_deref())?)
}

async fn reassign(client: &mut Client, out: Format, name: &str, partition: i32, target: Option<Vec<i32>>) -> Result<()> {
    let conn = client.controller().await?;
    let replicas = target.clone();
    let (_, resp) = conn
        .call(|_| {
            let mut p = ReassignablePartition::default();
            p.partition_index = partition;
            p.replicas = replicas.map(|rs| rs.into_iter().map(BrokerId).collect());
            let mut t = ReassignableTopic::default();
            t.name = topic_name(name);
            t.partitions = vec![p];
            let mut r = AlterPartitionReassignmentsRequest::default();
            r.timeout_ms = ADMIN_TIMEOUT_MS;
            r.allow_replication_factor_change = true;
            r.topics = vec![t];
            r
        })
        .await?;
    let what = match &target {
        Some(t) => format!("moving {name}-{partition} to replicas {}", ids(t)),
        None => format!("cancelling the move of {name}-{partition}"),
    };
    check(resp.error_code, resp.error_message.as_deref()).with_context(|| what.clone())?;
    let p = resp
        .responses
        .iter()
        .flat_map(|t| t.partitions.iter())
        .find(|p| p.partition_index == partition)
        .context("AlterPartitionReassignments answered no partition")?;
    check(p.error_code, p.error_message.as_deref()).with_context(|| what.clone())?;
    match target {
        Some(t) => report(
            out,
            json!({"topic": name, "partition": partition, "replicas": t, "started": true}),
            &format!("Started moving {name}-{partition} to replicas {}.", ids(&t)),
        ),
        None => report(
            out,
            json!({"topic": name, "partition": partition, "cancelled": true}),
            &format!("Cancelled the move of {name}-{partition}."),
        ),
    }
}

async fn list_reassignments(client: &mut Client, out: Format, name: Option<&str>) -> Result<()> {
    let filter = match name {
        Some(n) => {
            let t = client.topic(n, false).await?;
            Some((n.to_string(), t.partitions.iter().map(|p| p.index).collect::<Vec<_>>()))
        }
        None => None,
    };
    let conn = client.controller().await?;
    let (_, resp) = conn
        .call(|_| {
            let mut r = ListPartitionReassignmentsRequest::default();
            r.timeout_ms = ADMIN_TIMEOUT_MS;
            r.topics = filter.map(|(n, parts)| {
                let mut t = ListPartitionReassignmentsTopics::default();
                t.name = topic_name(&n);
                t.partition_indexes = parts;
                vec![t]
            });
            r
        })
        .await?;
    check(resp.error_code, resp.error_message.as_deref()).context("listing reassignments")?;
    let mut rows = Vec::new();
    for t in &resp.topics {
        for p in &t.partitions {
            let b = |v: &Vec<BrokerId>| v.iter().map(|x| x.0).collect::<Vec<i32>>();
            rows.push((t.name.0.to_string(), p.partition_index, b(&p.replicas), b(&p.adding_replicas), b(&p.removing_replicas)));
        }
    }
    rows.sort();
    match out {
        Format::Json => output::json(&json!(rows
            .iter()
            .map(|(t, p, r, a, d)| json!({"topic": t, "partition": p, "replicas": r, "adding": a, "removing": d}))
            .collect::<Vec<_>>())),
        Format::Text => {
            if rows.is_empty() {
                outln!("No reassignments in progress.")?;
                return Ok(());
            }
            let rows: Vec<Vec<String>> =
                rows.iter().map(|(t, p, r, a, d)| vec![t.clone(), p.to_string(), ids(r), ids(a), ids(d)]).collect();
            output::table(&["TOPIC", "PARTITION", "REPLICAS", "ADDING", "REMOVING"], &rows)
        }
    }
}

/// Prints a one-line result (text) or a JSON object.
pub(crate) fn report(out: Format, value: serde_json::Value, text: &str) -> Result<()> {
    match out {
        Format::Json => output::json(&value),
        Format::Text => {
            outln!("{text}")?;
            Ok(())
        }
    }
}
