//! `karst acl ...`: ACLs (CreateAcls, DescribeAcls, DeleteAcls), named as Kafka's
//! `kafka-acls` names them: a resource (`--topic`, `--group`, `--cluster`,
//! `--transactional-id`; `--prefixed` for a prefix pattern), `--principal User:alice`,
//! `--host`, `--operation Read` (repeatable) and `--allow` or `--deny`.

use anyhow::{bail, Context, Result};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::{CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest};
use karst_broker::security::acl;
use serde_json::json;

use super::client::{str_bytes, Client};
use super::errors::check;
use super::output::{self, outln};
use super::topic::report;
use super::{AclAction, AclArgs, Format};

const OPERATIONS: &[(&str, i8)] = &[
    ("All", acl::ALL),
    ("Read", acl::READ),
    ("Write", acl::WRITE),
    ("Create", acl::CREATE),
    ("Delete", acl::DELETE),
    ("Alter", acl::ALTER),
    ("Describe", acl::DESCRIBE),
    ("ClusterAction", acl::CLUSTER_ACTION),
    ("DescribeConfigs", acl::DESCRIBE_CONFIGS),
    ("AlterConfigs", acl::ALTER_CONFIGS),
    ("IdempotentWrite", acl::IDEMPOTENT_WRITE),
];

fn operation(name: &str) -> Result<i8> {
    let plain: String = name.chars().filter(|c| *c != '_' && *c != '-').collect();
    OPERATIONS
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(&plain))
        .map(|(_, code)| *code)
        .with_context(|| format!("`{name}` is not an operation ({})", OPERATIONS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")))
}

fn operation_name(code: i8) -> String {
    OPERATIONS.iter().find(|(_, c)| *c == code).map_or_else(|| code.to_string(), |(n, _)| n.to_string())
}

fn resource_type_name(code: i8) -> &'static str {
    match code {
        acl::TOPIC => "Topic",
        acl::GROUP => "Group",
        acl::CLUSTER => "Cluster",
        acl::TRANSACTIONAL_ID => "TransactionalId",
        _ => "Unknown",
    }
}

/// The resource the flags name: (type, name), or None for "any".
fn resource(a: &AclArgs) -> Result<Option<(i8, String)>> {
    let named: Vec<(i8, String)> = [
        a.topic.clone().map(|t| (acl::TOPIC, t)),
        a.group.clone().map(|g| (acl::GROUP, g)),
        a.cluster.then(|| (acl::CLUSTER, acl::CLUSTER_NAME.to_string())),
        a.transactional_id.clone().map(|t| (acl::TRANSACTIONAL_ID, t)),
    ]
    .into_iter()
    .flatten()
    .collect();
    match named.len() {
        0 => Ok(None),
        1 => Ok(named.into_iter().next()),
        _ => bail!("name one resource: --topic, --group, --cluster or --transactional-id"),
    }
}

pub(crate) async fn run(client: &mut Client, out: Format, action: AclAction) -> Result<()> {
    match action {
        AclAction::List { acl: a } => list(client, out, &a).await,
        AclAction::Add { acl: a, allow, deny } => {
            let Some((resource_type, name)) = resource(&a)? else {
                bail!("name the resource: --topic, --group, --cluster or --transactional-id")
            };
            let principal = a.principal.clone().context("--principal User:NAME")?;
            if allow == deny {
                bail!("give --allow or --deny");
            }
            if a.operation.is_empty() {
                bail!("give --operation (repeatable)");
            }
            let mut creations = Vec::new();
            for op in &a.operation {
                creations.push(
                    AclCreation::default()
                        .with_resource_type(resource_type)
                        .with_resource_name(str_bytes(&name))
                        .with_resource_pattern_type(if a.prefixed { acl::PREFIXED } else { acl::LITERAL })
                        .with_principal(str_bytes(&principal))
                        .with_host(str_bytes(a.host.as_deref().unwrap_or("*")))
                        .with_operation(operation(op)?)
                        .with_permission_type(if allow { acl::ALLOW } else { acl::DENY }),
                );
            }
            let n = creations.len();
            let (_, resp) = client.any().call(move |_| CreateAclsRequest::default().with_creations(creations.clone())).await?;
            for r in &resp.results {
                check(r.error_code, r.error_message.as_deref())?;
            }
            report(out, json!({"added": n}), &format!("Added {n} ACL(s) for {principal} on {} {name}.", resource_type_name(resource_type)))
        }
        AclAction::Remove { acl: a } => {
            let (resource_type, name) = resource(&a)?.map_or((acl::ANY_RESOURCE, None), |(t, n)| (t, Some(n)));
            let ops: Vec<i8> =
                if a.operation.is_empty() { vec![acl::OP_ANY] } else { a.operation.iter().map(|o| operation(o)).collect::<Result<_>>()? };
            let filters: Vec<DeleteAclsFilter> = ops
                .into_iter()
                .map(|op| {
                    DeleteAclsFilter::default()
                        .with_resource_type_filter(resource_type)
                        .with_resource_name_filter(name.as_deref().map(str_bytes))
                        .with_pattern_type_filter(if a.prefixed {
                            acl::PREFIXED
                        } else if name.is_some() {
                            acl::LITERAL
                        } else {
                            acl::PATTERN_ANY
                        })
                        .with_principal_filter(a.principal.as_deref().map(str_bytes))
                        .with_host_filter(a.host.as_deref().map(str_bytes))
                        .with_operation(op)
                        .with_permission_type(acl::PERMISSION_ANY)
                })
                .collect();
            let (_, resp) = client.any().call(move |_| DeleteAclsRequest::default().with_filters(filters.clone())).await?;
            let mut removed = 0;
            for f in &resp.filter_results {
                check(f.error_code, f.error_message.as_deref())?;
                removed += f.matching_acls.len();
            }
            report(out, json!({"removed": removed}), &format!("Removed {removed} ACL(s)."))
        }
    }
}

async fn list(client: &mut Client, out: Format, a: &AclArgs) -> Result<()> {
    let (resource_type, name) = resource(a)?.map_or((acl::ANY_RESOURCE, None), |(t, n)| (t, Some(n)));
    let req = DescribeAclsRequest::default()
        .with_resource_type_filter(resource_type)
        .with_resource_name_filter(name.as_deref().map(str_bytes))
        .with_pattern_type_filter(if a.prefixed { acl::PREFIXED } else { acl::PATTERN_ANY })
        .with_principal_filter(a.principal.as_deref().map(str_bytes))
        .with_host_filter(a.host.as_deref().map(str_bytes))
        .with_operation(acl::OP_ANY)
        .with_permission_type(acl::PERMISSION_ANY);
    let (_, resp) = client.any().call(move |_| req.clone()).await?;
    check(resp.error_code, resp.error_message.as_deref())?;
    let mut rows = Vec::new();
    for r in &resp.resources {
        let pattern = if r.pattern_type == acl::PREFIXED { "prefixed" } else { "literal" };
        for b in &r.acls {
            rows.push((
                format!("{}:{}:{}", resource_type_name(r.resource_type), pattern, r.resource_name.as_str()),
                b.principal.to_string(),
                b.host.to_string(),
                operation_name(b.operation),
                if b.permission_type == acl::ALLOW { "Allow" } else { "Deny" },
            ));
        }
    }
    rows.sort();
    match out {
        Format::Json => output::json(&json!({
            "acls": rows.iter().map(|(res, p, h, op, perm)| json!({"resource": res, "principal": p, "host": h, "operation": op, "permission": perm})).collect::<Vec<_>>(),
        })),
        Format::Text => {
            for (res, p, h, op, perm) in &rows {
                outln!("{res}\t{p}\t{h}\t{op}\t{perm}")?;
            }
            Ok(())
        }
    }
}
