//! DescribeUserScramCredentials and AlterUserScramCredentials (KIP-554): SCRAM
//! credentials kept in the controller quorum as salted keys. The client salts the
//! password (Kafka's admin client sends the salt and `Hi(password, salt, i)`); the
//! broker keeps only the stored and server keys derived from it. Errors per user, as
//! Kafka answers them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{CredentialInfo, DescribeUserScramCredentialsResult};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse, DescribeUserScramCredentialsRequest,
    DescribeUserScramCredentialsResponse,
};
use karst_controller::{MetadataCommand, ScramCredential};
use karst_protocol::error_codes as ec;
use tracing::info;

use super::str_bytes;
use crate::broker::Broker;
use crate::security::scram::{Credential, ScramHash, MAX_ITERATIONS, MIN_ITERATIONS};
use crate::security::{acl, authz};

const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
const RESOURCE_NOT_FOUND: i16 = 91;
const DUPLICATE_RESOURCE: i16 = 92;
const UNACCEPTABLE_CREDENTIAL: i16 = 93;

/// A user's SCRAM credential for `hash`, from the committed metadata.
pub(crate) fn lookup(b: &Broker, user: &str, hash: ScramHash) -> Option<Credential> {
    let image = b.metadata.image();
    let c = image.cluster.scram_credentials.get(user)?.get(hash.mechanism())?;
    Some(Credential { salt: c.salt.clone(), stored_key: c.stored_key.clone(), server_key: c.server_key.clone(), iterations: c.iterations })
}

pub(crate) fn describe(b: &Arc<Broker>, req: DescribeUserScramCredentialsRequest) -> DescribeUserScramCredentialsResponse {
    if !authz::allowed(b, acl::CLUSTER, acl::CLUSTER_NAME, acl::DESCRIBE) {
        return DescribeUserScramCredentialsResponse::default()
            .with_error_code(ec::CLUSTER_AUTHORIZATION_FAILED)
            .with_error_message(Some(str_bytes("Cluster authorization failed.")));
    }
    let image = b.metadata.image();
    let all = &image.cluster.scram_credentials;
    let info = |user: &str| -> Vec<CredentialInfo> {
        all.get(user)
            .into_iter()
            .flatten()
            .filter_map(|(m, c)| {
                let hash = [ScramHash::Sha256, ScramHash::Sha512].into_iter().find(|h| h.mechanism() == m)?;
                Some(CredentialInfo::default().with_mechanism(hash.type_id()).with_iterations(c.iterations))
            })
            .collect()
    };
    let results = match req.users.filter(|u| !u.is_empty()) {
        None => all
            .keys()
            .map(|u| DescribeUserScramCredentialsResult::default().with_user(str_bytes(u.clone())).with_credential_infos(info(u)))
            .collect(),
        Some(users) => {
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for u in &users {
                *counts.entry(u.name.as_str()).or_default() += 1;
            }
            let mut seen = BTreeSet::new();
            users
                .iter()
                .filter(|u| seen.insert(u.name.as_str()))
                .map(|u| {
                    let name = u.name.as_str();
                    let r = DescribeUserScramCredentialsResult::default().with_user(u.name.clone());
                    if counts[name] > 1 {
                        r.with_error_code(DUPLICATE_RESOURCE).with_error_message(Some(str_bytes(
                            "Cannot describe SCRAM credentials for the same user twice in a single request",
                        )))
                    } else if !all.contains_key(name) {
                        r.with_error_code(RESOURCE_NOT_FOUND)
                            .with_error_message(Some(str_bytes("Attempt to describe a user credential that does not exist")))
                    } else {
                        r.with_credential_infos(info(name))
                    }
                })
                .collect()
        }
    };
    DescribeUserScramCredentialsResponse::default().with_results(results)
}

/// Each user's changes, checked: the error of the first that fails, if any.
fn check(
    image: &karst_controller::ClusterMetadata,
    user: &str,
    deletions: &[i8],
    upsertions: &[(i8, i32, &[u8], &[u8])],
) -> Result<(), (i16, String)> {
    if user.is_empty() {
        return Err((UNACCEPTABLE_CREDENTIAL, "Username must not be empty".into()));
    }
    let mechanisms: Vec<i8> = deletions.iter().copied().chain(upsertions.iter().map(|u| u.0)).collect();
    for m in &mechanisms {
        if ScramHash::from_type(*m).is_none() {
            return Err((UNSUPPORTED_SASL_MECHANISM, "Unknown SCRAM mechanism".into()));
        }
    }
    if mechanisms.iter().collect::<BTreeSet<_>>().len() != mechanisms.len() {
        return Err((DUPLICATE_RESOURCE, "A user credential cannot be altered twice in the same request".into()));
    }
    for m in deletions {
        let name = ScramHash::from_type(*m).map(ScramHash::mechanism).unwrap_or_default();
        if !image.scram_credentials.get(user).is_some_and(|c| c.contains_key(name)) {
            return Err((RESOURCE_NOT_FOUND, "Attempt to delete a user credential that does not exist".into()));
        }
    }
    for (m, iterations, salt, salted) in upsertions {
        if *iterations < MIN_ITERATIONS {
            return Err((UNACCEPTABLE_CREDENTIAL, "Too few iterations".into()));
        }
        if *iterations > MAX_ITERATIONS {
            return Err((UNACCEPTABLE_CREDENTIAL, "Too many iterations".into()));
        }
        let hash = ScramHash::from_type(*m).unwrap_or(ScramHash::Sha256);
        let len = if hash == ScramHash::Sha256 { 32 } else { 64 };
        if salt.is_empty() || salted.len() != len {
            return Err((
                UNACCEPTABLE_CREDENTIAL,
                format!("a {} credential needs a salt and a {len}-byte salted password", hash.mechanism()),
            ));
        }
    }
    Ok(())
}

pub(crate) async fn alter(b: Arc<Broker>, req: AlterUserScramCredentialsRequest) -> AlterUserScramCredentialsResponse {
    let image = b.metadata.image();
    let mut users: Vec<&str> =
        req.deletions.iter().map(|d| d.name.as_str()).chain(req.upsertions.iter().map(|u| u.name.as_str())).collect();
    users.sort_unstable();
    users.dedup();
    let mut outcome: BTreeMap<String, Result<(), (i16, String)>> = BTreeMap::new();
    let (mut upsertions, mut deletions) = (Vec::new(), Vec::new());
    for user in users {
        let dels: Vec<i8> = req.deletions.iter().filter(|d| d.name.as_str() == user).map(|d| d.mechanism).collect();
        let ups: Vec<(i8, i32, &[u8], &[u8])> = req
            .upsertions
            .iter()
            .filter(|u| u.name.as_str() == user)
            .map(|u| (u.mechanism, u.iterations, u.salt.as_ref(), u.salted_password.as_ref()))
            .collect();
        let checked = if authz::allowed(&b, acl::CLUSTER, acl::CLUSTER_NAME, acl::ALTER) {
            check(&image.cluster, user, &dels, &ups)
        } else {
            Err((ec::CLUSTER_AUTHORIZATION_FAILED, "Cluster authorization failed.".to_string()))
        };
        if checked.is_ok() {
            for m in &dels {
                deletions.push((user.to_string(), ScramHash::from_type(*m).map(ScramHash::mechanism).unwrap_or_default().to_string()));
            }
            for (m, iterations, salt, salted) in &ups {
                let hash = ScramHash::from_type(*m).unwrap_or(ScramHash::Sha256);
                let c = Credential::from_salted(hash, salt, salted, *iterations);
                let stored = ScramCredential { salt: c.salt, stored_key: c.stored_key, server_key: c.server_key, iterations: c.iterations };
                upsertions.push((user.to_string(), hash.mechanism().to_string(), stored));
            }
        }
        outcome.insert(user.to_string(), checked);
    }
    if !upsertions.is_empty() || !deletions.is_empty() {
        let changed: Vec<String> =
            upsertions.iter().map(|(u, m, _)| format!("{u}/{m}")).chain(deletions.iter().map(|(u, m)| format!("-{u}/{m}"))).collect();
        if let Err(e) = b.metadata.propose(MetadataCommand::AlterScramCredentials { upsertions, deletions }).await {
            let (code, message) = match e {
                crate::errors::BrokerError::Metadata { code, message } => (code, message),
                other => (ec::UNKNOWN_SERVER_ERROR, other.to_string()),
            };
            for r in outcome.values_mut().filter(|r| r.is_ok()) {
                *r = Err((code, message.clone()));
            }
        } else {
            info!(changed = ?changed, "altered SCRAM credentials");
        }
    }
    let results = outcome
        .into_iter()
        .map(|(user, r)| {
            let res = AlterUserScramCredentialsResult::default().with_user(str_bytes(user));
            match r {
                Ok(()) => res,
                Err((code, message)) => res.with_error_code(code).with_error_message(Some(str_bytes(message))),
            }
        })
        .collect();
    AlterUserScramCredentialsResponse::default().with_results(results)
}
