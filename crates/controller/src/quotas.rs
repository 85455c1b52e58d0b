//! Client quotas (KIP-546's AlterClientQuotas), kept in the quorum as Kafka's
//! ClientQuotaRecords are: by entity (user, client-id or both, or an ip), each name
//! given or `None` for the entity's default (`<default>`). The checks are Kafka's
//! controller's (`ClientQuotaControlManager`): the broker that takes a request runs
//! them to answer per entry, and the quorum again before applying.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const USER: &str = "user";
pub const CLIENT_ID: &str = "client-id";
pub const IP: &str = "ip";

/// The quota keys of user and client-id entities, and whether each is whole-numbered.
pub const CLIENT_KEYS: &[(&str, bool)] =
    &[("producer_byte_rate", true), ("consumer_byte_rate", true), ("request_percentage", false), ("controller_mutation_rate", false)];
/// The quota key of ip entities.
pub const IP_KEYS: &[(&str, bool)] = &[("connection_creation_rate", true)];

/// An entity: entity type to name (`None`: that type's default), Kafka's `ClientQuotaEntity`.
pub type QuotaEntity = BTreeMap<String, Option<String>>;

/// One entity's quotas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientQuota {
    pub entity: QuotaEntity,
    pub values: BTreeMap<String, f64>,
}

// Values are finite and positive (checked before they are stored), so equality is total.
impl Eq for ClientQuota {}

/// One entry of AlterClientQuotas: each key set to a value, or removed (`None`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuotaAlteration {
    pub entity: QuotaEntity,
    pub ops: Vec<(String, Option<f64>)>,
}

impl Eq for QuotaAlteration {}

/// Kafka's check of an entity (the error message is INVALID_REQUEST's).
pub fn check_entity(entity: &QuotaEntity) -> Result<&'static [(&'static str, bool)], String> {
    if entity.is_empty() {
        return Err("Invalid empty client quota entity".into());
    }
    for (kind, name) in entity {
        if ![USER, CLIENT_ID, IP].contains(&kind.as_str()) {
            return Err(format!("Unhandled client quota entity type: {kind}"));
        }
        if name.as_deref() == Some("") {
            return Err(format!("Empty {kind} not supported"));
        }
    }
    if entity.contains_key(IP) {
        if entity.len() > 1 {
            return Err("Invalid quota entity combination, IP entity shouldnot be combined with User or ClientId".into());
        }
        if let Some(Some(ip)) = entity.get(IP) {
            if ip.parse::<std::net::IpAddr>().is_err() {
                return Err(format!("{ip} is not a valid IP or resolvable host."));
            }
        }
        return Ok(IP_KEYS);
    }
    Ok(CLIENT_KEYS)
}

/// Kafka's check of one alteration: its entity, then each value set.
pub fn check_alteration(a: &QuotaAlteration) -> Result<(), String> {
    let keys = check_entity(&a.entity)?;
    for (key, value) in &a.ops {
        let Some(value) = value else { continue };
        let Some((_, whole)) = keys.iter().find(|(k, _)| k == key) else {
            return Err(format!("Invalid configuration key {key}"));
        };
        // NaN and infinity are refused too (Kafka would store them).
        if !value.is_finite() || *value <= 0.0 {
            return Err(format!("Quota {key} must be greater than 0"));
        }
        if *whole {
            if *value > i64::MAX as f64 || (key == "connection_creation_rate" && *value > i32::MAX as f64) {
                return Err(format!(
                    "Proposed value for {key} is too large for {}.",
                    if key == "connection_creation_rate" { "an INT" } else { "a LONG" }
                ));
            }
            if (value % 1.0).abs() > 1e-6 {
                return Err(format!("{key} cannot be a fractional value."));
            }
        }
    }
    Ok(())
}

/// Applies checked alterations to `quotas`: entities left without values go.
pub fn apply(quotas: &mut Vec<ClientQuota>, alterations: &[QuotaAlteration]) {
    for a in alterations {
        let i = match quotas.iter().position(|q| q.entity == a.entity) {
            Some(i) => i,
            None => {
                quotas.push(ClientQuota { entity: a.entity.clone(), values: BTreeMap::new() });
                quotas.len() - 1
            }
        };
        for (key, value) in &a.ops {
            match value {
                Some(v) => quotas[i].values.insert(key.clone(), *v),
                None => quotas[i].values.remove(key),
            };
        }
        if quotas[i].values.is_empty() {
            quotas.remove(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entity(pairs: &[(&str, Option<&str>)]) -> QuotaEntity {
        pairs.iter().map(|(k, v)| (k.to_string(), v.map(String::from))).collect()
    }

    fn alter(e: QuotaEntity, ops: &[(&str, Option<f64>)]) -> QuotaAlteration {
        QuotaAlteration { entity: e, ops: ops.iter().map(|(k, v)| (k.to_string(), *v)).collect() }
    }

    #[test]
    fn entities_and_values_are_checked_as_kafkas_controller_does() {
        let alice = entity(&[(USER, Some("alice"))]);
        assert_eq!(check_alteration(&alter(alice.clone(), &[("producer_byte_rate", Some(1024.0))])), Ok(()));
        assert_eq!(check_alteration(&alter(alice.clone(), &[("request_percentage", Some(12.5))])), Ok(()));
        let refused = [
            (alter(QuotaEntity::new(), &[]), "Invalid empty client quota entity"),
            (alter(entity(&[("group", Some("g"))]), &[]), "Unhandled client quota entity type: group"),
            (alter(entity(&[(USER, Some(""))]), &[]), "Empty user not supported"),
            (alter(entity(&[(IP, Some("1.2.3.4")), (USER, None)]), &[]), "Invalid quota entity combination"),
            (alter(entity(&[(IP, Some("not-an-ip"))]), &[]), "is not a valid IP"),
            (alter(alice.clone(), &[("connection_creation_rate", Some(1.0))]), "Invalid configuration key connection_creation_rate"),
            (alter(alice.clone(), &[("producer_byte_rate", Some(0.0))]), "must be greater than 0"),
            (alter(alice.clone(), &[("producer_byte_rate", Some(f64::NAN))]), "must be greater than 0"),
            (alter(alice.clone(), &[("producer_byte_rate", Some(1.5))]), "cannot be a fractional value"),
            (alter(entity(&[(IP, None)]), &[("connection_creation_rate", Some(3e10))]), "too large for an INT"),
        ];
        for (a, want) in refused {
            let got = check_alteration(&a).expect_err(want);
            assert!(got.contains(want), "{got} / {want}");
        }
        assert_eq!(check_alteration(&alter(alice, &[("bogus", None)])), Ok(()), "removals are not checked, as Kafka");
    }

    #[test]
    fn alterations_set_and_remove_values_and_drop_empty_entities() {
        let mut q = Vec::new();
        let e = entity(&[(USER, None), (CLIENT_ID, Some("c"))]);
        apply(&mut q, &[alter(e.clone(), &[("producer_byte_rate", Some(100.0)), ("consumer_byte_rate", Some(200.0))])]);
        assert_eq!(q.len(), 1);
        apply(&mut q, &[alter(e.clone(), &[("producer_byte_rate", None)])]);
        assert_eq!(q[0].values.keys().collect::<Vec<_>>(), ["consumer_byte_rate"]);
        apply(&mut q, &[alter(e, &[("consumer_byte_rate", None)])]);
        assert!(q.is_empty());
    }
}
