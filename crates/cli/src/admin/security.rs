//! `--command-config FILE`: Kafka's client properties for a secured listener, as
//! Kafka's tools take them: `security.protocol` (PLAINTEXT, SSL, SASL_PLAINTEXT,
//! SASL_SSL), `ssl.truststore.location` (PEM), `ssl.keystore.location` (PEM key and
//! chain, for brokers asking for client certificates), `sasl.mechanism` (PLAIN,
//! SCRAM-SHA-256, SCRAM-SHA-512) and `sasl.jaas.config` (its `username` and
//! `password`). Read once per process; every connection uses them.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use anyhow::{anyhow, bail, Context, Result};
use karst_broker::security::sasl::{parse_jaas, Mechanism};
use karst_broker::security::Protocol;

/// How connections are secured.
pub(crate) struct ClientSecurity {
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
    pub(crate) sasl: Option<(Mechanism, String, String)>,
}

static SECURITY: OnceLock<ClientSecurity> = OnceLock::new();

/// The security every connection uses (plaintext unless configured).
pub(crate) fn current() -> Option<&'static ClientSecurity> {
    SECURITY.get()
}

fn properties(path: &Path) -> Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
        .filter_map(|l| l.split_once(['=', ':']))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect())
}

/// Reads `path` and makes it the security of every connection of this process.
pub(crate) fn configure(path: &Path) -> Result<()> {
    let p = properties(path)?;
    let protocol = p.get("security.protocol").map_or("PLAINTEXT", String::as_str);
    let protocol = Protocol::parse(protocol)
        .ok_or_else(|| anyhow!("security.protocol: `{protocol}` is not PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"))?;
    for key in ["ssl.truststore.type", "ssl.keystore.type"] {
        if p.get(key).is_some_and(|t| !t.eq_ignore_ascii_case("PEM")) {
            bail!("{key}: the karst CLI reads PEM files only");
        }
    }
    let tls = if protocol.tls() {
        let truststore =
            p.get("ssl.truststore.location").context("ssl.truststore.location: the PEM file of the CAs to check the broker against")?;
        let keystore = p.get("ssl.keystore.location").map(Path::new);
        Some(karst_broker::security::tls::client_config_from_files(Path::new(truststore), keystore).map_err(|e| anyhow!("{e}"))?)
    } else {
        None
    };
    let sasl = if protocol.sasl() {
        let name = p.get("sasl.mechanism").map_or("GSSAPI", String::as_str).to_ascii_uppercase();
        let mechanism = Mechanism::parse(&name)
            .filter(|m| *m != Mechanism::OAuthBearer)
            .ok_or_else(|| anyhow!("sasl.mechanism: `{name}`: the karst CLI speaks PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512"))?;
        let jaas = p.get("sasl.jaas.config").context("sasl.jaas.config: the login module with username= and password=")?;
        let options = parse_jaas(jaas).map_err(|e| anyhow!("sasl.jaas.config: {e}"))?;
        let (Some(user), Some(password)) = (options.get("username"), options.get("password")) else {
            bail!("sasl.jaas.config: give username= and password=");
        };
        Some((mechanism, user.clone(), password.clone()))
    } else {
        None
    };
    let _ = SECURITY.set(ClientSecurity { tls, sasl });
    Ok(())
}
