//! `karst user ...`: SCRAM users (AlterUserScramCredentials,
//! DescribeUserScramCredentials). The password is salted here, as Kafka's admin
//! client does: the broker receives the salt and the salted password, never the
//! password.

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use kafka_protocol::messages::alter_user_scram_credentials_request::{ScramCredentialDeletion, ScramCredentialUpsertion};
use kafka_protocol::messages::{AlterUserScramCredentialsRequest, DescribeUserScramCredentialsRequest};
use karst_broker::security::scram::ScramHash;
use serde_json::json;

use super::client::{str_bytes, Client};
use super::errors::check;
use super::output::{self, outln};
use super::topic::report;
use super::{Format, UserAction};

fn hash(mechanism: &str) -> Result<ScramHash> {
    match mechanism.to_ascii_uppercase().as_str() {
        "SCRAM-SHA-256" => Ok(ScramHash::Sha256),
        "SCRAM-SHA-512" => Ok(ScramHash::Sha512),
        other => bail!("`{other}` is not SCRAM-SHA-256 or SCRAM-SHA-512"),
    }
}

pub(crate) async fn run(client: &mut Client, out: Format, action: UserAction) -> Result<()> {
    match action {
        UserAction::List => list(client, out).await,
        UserAction::Add { name, password, mechanism, iterations } => {
            let h = hash(&mechanism)?;
            // 24 random bytes, from two v4 UUIDs' randomness.
            let salt: Vec<u8> = uuid::Uuid::new_v4().as_bytes().iter().chain(&uuid::Uuid::new_v4().as_bytes()[..8]).copied().collect();
            let salted = h.salted_password(password.as_bytes(), &salt, iterations);
            let up = ScramCredentialUpsertion::default()
                .with_name(str_bytes(&name))
                .with_mechanism(h.type_id())
                .with_iterations(i32::try_from(iterations).unwrap_or(i32::MAX))
                .with_salt(Bytes::from(salt))
                .with_salted_password(Bytes::from(salted));
            alter(client, AlterUserScramCredentialsRequest::default().with_upsertions(vec![up])).await?;
            report(
                out,
                json!({"user": name, "mechanism": h.mechanism(), "added": true}),
                &format!("Set {} credentials of user {name}.", h.mechanism()),
            )
        }
        UserAction::Delete { name, mechanism } => {
            let h = hash(&mechanism)?;
            let del = ScramCredentialDeletion::default().with_name(str_bytes(&name)).with_mechanism(h.type_id());
            alter(client, AlterUserScramCredentialsRequest::default().with_deletions(vec![del])).await?;
            report(
                out,
                json!({"user": name, "mechanism": h.mechanism(), "deleted": true}),
                &format!("Deleted {} credentials of user {name}.", h.mechanism()),
            )
        }
    }
}

async fn alter(client: &mut Client, req: AlterUserScramCredentialsRequest) -> Result<()> {
    let (_, resp) = client.any().call(move |_| req.clone()).await?;
    for r in &resp.results {
        check(r.error_code, r.error_message.as_deref()).with_context(|| format!("user `{}`", r.user.as_str()))?;
    }
    Ok(())
}

async fn list(client: &mut Client, out: Format) -> Result<()> {
    let (_, resp) = client.any().call(|_| DescribeUserScramCredentialsRequest::default().with_users(None)).await?;
    check(resp.error_code, resp.error_message.as_deref())?;
    let mut users: Vec<(String, Vec<(String, i32)>)> = resp
        .results
        .iter()
        .map(|r| {
            let infos = r
                .credential_infos
                .iter()
                .map(|i| (ScramHash::from_type(i.mechanism).map_or("unknown", ScramHash::mechanism).to_string(), i.iterations))
                .collect();
            (r.user.to_string(), infos)
        })
        .collect();
    users.sort();
    match out {
        Format::Json => output::json(&json!({
            "users": users.iter().map(|(u, infos)| json!({
                "name": u,
                "credentials": infos.iter().map(|(m, i)| json!({"mechanism": m, "iterations": i})).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })),
        Format::Text => {
            for (u, infos) in &users {
                let creds: Vec<String> = infos.iter().map(|(m, i)| format!("{m} (iterations {i})")).collect();
                outln!("{u}\t{}", creds.join(", "))?;
            }
            Ok(())
        }
    }
}
