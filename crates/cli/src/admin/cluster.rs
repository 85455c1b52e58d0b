//! `karst cluster info`: cluster id, controller and brokers; `karst cluster config`:
//! dynamic broker configs, cluster-wide or of one broker.

use anyhow::{Context, Result};
use kafka_protocol::messages::DescribeClusterRequest;
use serde_json::json;

use super::client::{BrokerInfo, Client};
use super::errors::check;
use super::output::{self, outln};
use super::Format;

pub(crate) async fn info(client: &mut Client, out: Format) -> Result<()> {
    let (cluster_id, controller, brokers, source) = if client.any().supports::<DescribeClusterRequest>() {
        let (_, resp) = client.any().call(|_| DescribeClusterRequest::default()).await?;
        check(resp.error_code, resp.error_message.as_deref())?;
        let brokers: Vec<(BrokerInfo, bool)> = resp
            .brokers
            .iter()
            .map(|b| {
                let info =
                    BrokerInfo { id: b.broker_id.0, host: b.host.to_string(), port: b.port, rack: b.rack.as_ref().map(|r| r.to_string()) };
                (info, b.is_fenced)
            })
            .collect();
        (Some(resp.cluster_id.to_string()), resp.controller_id.0, brokers, "DescribeCluster")
    } else {
        client.metadata(Some(&[]), false).await?;
        let brokers = client.brokers().values().map(|b| (b.clone(), false)).collect();
        (client.cluster_id.clone(), client.controller_id, brokers, "Metadata")
    };
    let mut brokers = brokers;
    brokers.sort_by_key(|(b, _)| b.id);
    match out {
        Format::Json => output::json(&json!({
            "cluster_id": cluster_id,
            "controller": controller,
            "brokers": brokers.iter().map(|(b, fenced)| json!({
                "id": b.id, "host": b.host, "port": b.port, "rack": b.rack, "fenced": fenced,
            })).collect::<Vec<_>>(),
            "source": source,
        })),
        Format::Text => {
            outln!("Cluster id: {}", cluster_id.as_deref().unwrap_or("(none)"))?;
            outln!("Controller: {}", if controller < 0 { "none".to_string() } else { controller.to_string() })?;
            let rows: Vec<Vec<String>> = brokers
                .iter()
                .map(|(b, fenced)| {
                    vec![
                        b.id.to_string(),
                        b.addr(),
                        b.rack.clone().unwrap_or_else(|| "-".into()),
                        if *fenced { "fenced" } else { "" }.into(),
                    ]
                })
                .collect();
            output::table(&["ID", "ADDRESS", "RACK", "STATUS"], &rows)
        }
    }
}

const RESOURCE_BROKER: i8 = 4;

/// Shows (without `set` and `delete`) or changes the dynamic configs of broker
/// `broker`, or the cluster-wide default without one. A broker's own resource is
/// asked of that broker, as Kafka's tools do.
pub(crate) async fn config(
    client: &mut Client,
    out: Format,
    broker: Option<i32>,
    set: &[(String, String)],
    delete: &[String],
) -> Result<()> {
    let name = broker.map(|b| b.to_string()).unwrap_or_default();
    let what = broker.map_or("the cluster-wide default".to_string(), |b| format!("broker {b}"));
    if broker.is_some() {
        client.metadata(Some(&[]), false).await?;
    }
    let conn = match broker {
        Some(id) => client.broker(id).await?,
        None => client.any(),
    };
    if !set.is_empty() || !delete.is_empty() {
        super::topic::alter_resource(conn, RESOURCE_BROKER, &name, set, delete).await.with_context(|| format!("altering {what}"))?;
        let set_json: serde_json::Map<String, serde_json::Value> = set.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        let mut text = format!("Updated {what}:");
        for (k, v) in set {
            text.push_str(&format!(" {k}={v}"));
        }
        for k in delete {
            text.push_str(&format!(" -{k}"));
        }
        return super::topic::report(out, json!({"broker": broker, "set": set_json, "deleted": delete}), &text);
    }
    let result = super::topic::describe_resource(conn, RESOURCE_BROKER, &name).await.with_context(|| format!("describing {what}"))?;
    let mut configs: Vec<(String, Option<String>, i8, bool)> = result
        .configs
        .iter()
        .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string()), c.config_source, c.read_only))
        .collect();
    configs.sort();
    match out {
        Format::Json => output::json(&json!({
            "broker": broker,
            "configs": configs.iter().map(|(k, v, source, read_only)| json!({
                "name": k, "value": v, "source": super::topic::config_source(*source), "read_only": read_only,
            })).collect::<Vec<_>>(),
        })),
        Format::Text => {
            let rows: Vec<Vec<String>> = configs
                .iter()
                .map(|(k, v, source, read_only)| {
                    vec![
                        k.clone(),
                        v.clone().unwrap_or_else(|| "-".into()),
                        super::topic::config_source(*source).into(),
                        if *read_only { "static" } else { "dynamic" }.into(),
                    ]
                })
                .collect();
            output::table(&["NAME", "VALUE", "SOURCE", "UPDATE"], &rows)
        }
    }
}
