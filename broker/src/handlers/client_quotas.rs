//! DescribeClientQuotas and AlterClientQuotas (KIP-546): client quotas kept in the
//! controller quorum, checked as Kafka's controller checks them, answered per entity.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use kafka_protocol::messages::alter_client_quotas_response::{EntityData as AlteredEntity, EntryData as AlteredEntry};
use kafka_protocol::messages::describe_client_quotas_response::{EntityData, EntryData, ValueData};
use kafka_protocol::messages::{
    AlterClientQuotasRequest, AlterClientQuotasResponse, DescribeClientQuotasRequest, DescribeClientQuotasResponse,
};
use karst_controller::quotas::{self, QuotaAlteration, QuotaEntity, CLIENT_ID, IP, USER};
use karst_controller::MetadataCommand;
use karst_protocol::error_codes as ec;
use tracing::info;

use super::str_bytes;
use crate::broker::Broker;
use crate::security::{acl, authz};

const MATCH_EXACT: i8 = 0;
const MATCH_DEFAULT: i8 = 1;
const MATCH_SPECIFIED: i8 = 2;

/// An error code and its message.
type Refused = (i16, String);

/// Kafka's filter: entity types matched exactly (a name, or `None`: the default) and
/// types that must merely be present.
type Filter = (HashMap<String, Option<String>>, HashSet<String>);

fn filter(req: &DescribeClientQuotasRequest) -> Result<Filter, Refused> {
    let mut exact = HashMap::new();
    let mut present = HashSet::new();
    let invalid = |m: String| (ec::INVALID_REQUEST, m);
    for c in &req.components {
        let kind = c.entity_type.to_string();
        if kind.is_empty() {
            return Err(invalid("Invalid empty entity type.".into()));
        }
        if exact.contains_key(&kind) || present.contains(&kind) {
            return Err(invalid(format!("Entity type {kind} cannot appear more than once in the filter.")));
        }
        if ![USER, CLIENT_ID, IP].contains(&kind.as_str()) {
            return Err((ec::UNSUPPORTED_VERSION, format!("Unsupported entity type {kind}")));
        }
        match (c.match_type, &c._match) {
            (MATCH_EXACT, Some(name)) => drop(exact.insert(kind, Some(name.to_string()))),
            (MATCH_EXACT, None) => return Err(invalid("Request specified MATCH_TYPE_EXACT, but set match string to null.".into())),
            (MATCH_DEFAULT, None) => drop(exact.insert(kind, None)),
            (MATCH_DEFAULT, Some(_)) => {
                return Err(invalid("Request specified MATCH_TYPE_DEFAULT, but also specified a match string.".into()))
            }
            (MATCH_SPECIFIED, None) => drop(present.insert(kind)),
            (MATCH_SPECIFIED, Some(_)) => {
                return Err(invalid("Request specified MATCH_TYPE_SPECIFIED, but also specified a match string.".into()))
            }
            (other, _) => return Err(invalid(format!("Unknown match type {other}"))),
        }
    }
    let has = |k: &str| exact.contains_key(k) || present.contains(k);
    if has(IP) && (has(USER) || has(CLIENT_ID)) {
        return Err(invalid(
            "Invalid entity filter component combination. IP filter component should not be used with user or clientId filter component."
                .into(),
        ));
    }
    Ok((exact, present))
}

pub(crate) fn describe(b: &Arc<Broker>, req: DescribeClientQuotasRequest) -> DescribeClientQuotasResponse {
    let refuse = |(code, message): (i16, String)| {
        DescribeClientQuotasResponse::default().with_error_code(code).with_error_message(Some(str_bytes(message))).with_entries(None)
    };
    if !authz::allowed(b, acl::CLUSTER, acl::CLUSTER_NAME, acl::DESCRIBE_CONFIGS) {
        return refuse((ec::CLUSTER_AUTHORIZATION_FAILED, "Cluster authorization failed.".into()));
    }
    let (exact, present) = match filter(&req) {
        Ok(f) => f,
        Err(e) => return refuse(e),
    };
    let image = b.metadata.image();
    let entries = image
        .cluster
        .client_quotas
        .iter()
        .filter(|q| !req.strict || q.entity.len() == exact.len() + present.len())
        .filter(|q| exact.iter().all(|(k, v)| q.entity.get(k) == Some(v)) && present.iter().all(|k| q.entity.contains_key(k)))
        .map(|q| {
            EntryData::default()
                .with_entity(
                    q.entity
                        .iter()
                        .map(|(k, v)| {
                            EntityData::default().with_entity_type(str_bytes(k.clone())).with_entity_name(v.clone().map(str_bytes))
                        })
                        .collect(),
                )
                .with_values(q.values.iter().map(|(k, v)| ValueData::default().with_key(str_bytes(k.clone())).with_value(*v)).collect())
        })
        .collect();
    DescribeClientQuotasResponse::default().with_entries(Some(entries))
}

/// Entity types in the order Kafka lists them (its `HashMap` of the three names).
const KAFKA_ORDER: [&str; 3] = [IP, CLIENT_ID, USER];

fn in_kafka_order(entity: &QuotaEntity) -> Vec<(&String, &Option<String>)> {
    let mut parts: Vec<_> = entity.iter().collect();
    parts.sort_by_key(|(k, _)| KAFKA_ORDER.iter().position(|t| t == k).unwrap_or(KAFKA_ORDER.len()));
    parts
}

/// Kafka's text of an entity: `ClientQuotaEntity(entries={client-id=app, user=null})`.
fn java_text(entity: &QuotaEntity) -> String {
    let parts: Vec<String> = in_kafka_order(entity).into_iter().map(|(k, v)| format!("{k}={}", v.as_deref().unwrap_or("null"))).collect();
    format!("ClientQuotaEntity(entries={{{}}})", parts.join(", "))
}

pub(crate) async fn alter(b: Arc<Broker>, req: AlterClientQuotasRequest) -> AlterClientQuotasResponse {
    let authorized = authz::allowed(&b, acl::CLUSTER, acl::CLUSTER_NAME, acl::ALTER_CONFIGS);
    // One result per entity, as Kafka's controller keeps them: a later entry for an
    // entity already seen (or one naming a key twice) is refused as a duplicate; the
    // first entry's change still applies.
    let mut outcomes: Vec<(QuotaEntity, Result<(), Refused>)> = Vec::new();
    let mut accepted = Vec::new();
    for entry in &req.entries {
        // The last name of a type given twice wins, as Kafka reads the request.
        let entity: QuotaEntity =
            entry.entity.iter().map(|e| (e.entity_type.to_string(), e.entity_name.as_ref().map(|n| n.to_string()))).collect();
        let mut keys = std::collections::BTreeSet::new();
        let duplicate_key = entry.ops.iter().any(|o| !keys.insert(o.key.as_str()));
        let duplicate = (ec::INVALID_REQUEST, format!("Ignoring duplicate entity {}", java_text(&entity)));
        if let Some((_, r)) = outcomes.iter_mut().find(|(e, _)| *e == entity) {
            *r = Err(duplicate);
            continue;
        }
        let alteration = QuotaAlteration {
            entity: entity.clone(),
            ops: entry.ops.iter().map(|o| (o.key.to_string(), (!o.remove).then_some(o.value))).collect(),
        };
        let checked = if !authorized {
            Err((ec::CLUSTER_AUTHORIZATION_FAILED, "Cluster authorization failed.".to_string()))
        } else if duplicate_key {
            Err(duplicate)
        } else {
            quotas::check_alteration(&alteration).map_err(|m| (ec::INVALID_REQUEST, m))
        };
        if checked.is_ok() {
            accepted.push(alteration);
        }
        outcomes.push((entity, checked));
    }
    if !accepted.is_empty() && !req.validate_only {
        let what: Vec<String> = accepted.iter().map(|a| format!("{:?}: {:?}", a.entity, a.ops)).collect();
        if let Err(e) = b.metadata.propose(MetadataCommand::AlterClientQuotas { alterations: accepted }).await {
            let (code, message) = match e {
                crate::errors::BrokerError::Metadata { code, message } => (code, message),
                other => (ec::UNKNOWN_SERVER_ERROR, other.to_string()),
            };
            for (_, r) in outcomes.iter_mut().filter(|(_, r)| r.is_ok()) {
                *r = Err((code, message.clone()));
            }
        } else {
            info!(altered = ?what, "altered client quotas");
        }
    }
    let entries = outcomes
        .into_iter()
        .map(|(entity, r)| {
            let parts = in_kafka_order(&entity)
                .into_iter()
                .map(|(k, v)| AlteredEntity::default().with_entity_type(str_bytes(k.clone())).with_entity_name(v.clone().map(str_bytes)))
                .collect();
            let e = AlteredEntry::default().with_entity(parts);
            match r {
                Ok(()) => e.with_error_message(None),
                Err((code, message)) => e.with_error_code(code).with_error_message(Some(str_bytes(message))),
            }
        })
        .collect();
    AlterClientQuotasResponse::default().with_entries(entries)
}
