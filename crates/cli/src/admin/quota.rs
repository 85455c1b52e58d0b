//! `karst quota ...`: client quotas (AlterClientQuotas, DescribeClientQuotas) by
//! user, client id, both, or ip, each named or the default.

use anyhow::{bail, Context, Result};
use kafka_protocol::messages::alter_client_quotas_request::{EntityData, EntryData, OpData};
use kafka_protocol::messages::{AlterClientQuotasRequest, DescribeClientQuotasRequest};
use serde_json::json;

use super::client::{str_bytes, Client};
use super::errors::check;
use super::output::{self, outln};
use super::topic::report;
use super::{Format, QuotaAction, QuotaEntityArgs};

/// The entity the flags name: (type, name or None for the default).
fn entity(e: &QuotaEntityArgs) -> Result<Vec<(&'static str, Option<String>)>> {
    let mut out = Vec::new();
    let mut add = |kind: &'static str, named: &Option<String>, default: bool| -> Result<()> {
        match (named, default) {
            (Some(_), true) => bail!("--{kind} and --default-{kind} name the same entity twice"),
            (Some(n), false) => out.push((kind, Some(n.clone()))),
            (None, true) => out.push((kind, None)),
            (None, false) => {}
        }
        Ok(())
    };
    add("user", &e.user, e.default_user)?;
    add("client-id", &e.client_id, e.default_client_id)?;
    add("ip", &e.ip, e.default_ip)?;
    if out.is_empty() {
        bail!("name the entity: --user, --client-id (or both), --ip, or their --default-* forms");
    }
    Ok(out)
}

fn describe_entity(e: &[(impl AsRef<str>, Option<String>)]) -> String {
    e.iter().map(|(k, v)| format!("{}={}", k.as_ref(), v.as_deref().unwrap_or("<default>"))).collect::<Vec<_>>().join(",")
}

pub(crate) async fn run(client: &mut Client, out: Format, action: QuotaAction) -> Result<()> {
    match action {
        QuotaAction::List => list(client, out).await,
        QuotaAction::Set { entity: e, values } => {
            let e = entity(&e)?;
            let mut ops = Vec::new();
            for v in &values {
                let (k, v) = v.split_once('=').with_context(|| format!("`{v}` is not KEY=VALUE"))?;
                let value: f64 = v.trim().parse().with_context(|| format!("`{v}` is not a number"))?;
                ops.push(OpData::default().with_key(str_bytes(k.trim())).with_value(value));
            }
            alter(client, &e, ops).await?;
            report(out, json!({"entity": describe_entity(&e), "set": values}), &format!("Set quotas of {}.", describe_entity(&e)))
        }
        QuotaAction::Delete { entity: e, keys } => {
            let e = entity(&e)?;
            let ops = keys.iter().map(|k| OpData::default().with_key(str_bytes(k)).with_remove(true)).collect();
            alter(client, &e, ops).await?;
            report(out, json!({"entity": describe_entity(&e), "deleted": keys}), &format!("Deleted quotas of {}.", describe_entity(&e)))
        }
    }
}

async fn alter(client: &mut Client, e: &[(&'static str, Option<String>)], ops: Vec<OpData>) -> Result<()> {
    let entry = EntryData::default()
        .with_entity(
            e.iter()
                .map(|(k, v)| EntityData::default().with_entity_type(str_bytes(k)).with_entity_name(v.as_deref().map(str_bytes)))
                .collect(),
        )
        .with_ops(ops);
    let req = AlterClientQuotasRequest::default().with_entries(vec![entry]);
    let (_, resp) = client.any().call(move |_| req.clone()).await?;
    for r in &resp.entries {
        check(r.error_code, r.error_message.as_deref()).with_context(|| format!("quotas of {}", describe_entity(e)))?;
    }
    Ok(())
}

async fn list(client: &mut Client, out: Format) -> Result<()> {
    let (_, resp) = client.any().call(|_| DescribeClientQuotasRequest::default()).await?;
    check(resp.error_code, resp.error_message.as_deref())?;
    let mut rows: Vec<(String, Vec<(String, f64)>)> = resp
        .entries
        .unwrap_or_default()
        .iter()
        .map(|e| {
            let mut entity: Vec<(String, Option<String>)> =
                e.entity.iter().map(|d| (d.entity_type.to_string(), d.entity_name.as_ref().map(|n| n.to_string()))).collect();
            // As Kafka's tools name them: user first, then client-id.
            entity.sort_by_key(|(k, _)| ["user", "client-id", "ip"].iter().position(|t| t == k).unwrap_or(3));
            (describe_entity(&entity), e.values.iter().map(|v| (v.key.to_string(), v.value)).collect())
        })
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    match out {
        Format::Json => output::json(&json!({
            "quotas": rows.iter().map(|(e, values)| json!({
                "entity": e,
                "values": values.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
            })).collect::<Vec<_>>(),
        })),
        Format::Text => {
            for (e, values) in &rows {
                let v: Vec<String> = values.iter().map(|(k, v)| format!("{k}={v}")).collect();
                outln!("{e}\t{}", v.join(","))?;
            }
            Ok(())
        }
    }
}
