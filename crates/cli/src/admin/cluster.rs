//! `karst cluster info`: cluster id, controller and brokers.

use anyhow::Result;
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
