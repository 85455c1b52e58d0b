//! Listener security: TLS (SSL, SASL_SSL), SASL authentication (SASL_PLAINTEXT,
//! SASL_SSL) and the principal each connection acts as. Settings use Kafka's names,
//! per listener with the `listener.name.<listener>.` prefix (the listener's name in
//! lower case, as Kafka writes it) or for every listener without it.

pub mod acl;
pub mod authz;
pub mod oauth;
pub mod reload;
pub mod sasl;
pub mod scram;
pub mod tls;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// A listener's security protocol (`listener.security.protocol.map`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl Protocol {
    pub fn parse(name: &str) -> Option<Protocol> {
        match name.trim().to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Some(Protocol::Plaintext),
            "SSL" => Some(Protocol::Ssl),
            "SASL_PLAINTEXT" => Some(Protocol::SaslPlaintext),
            "SASL_SSL" => Some(Protocol::SaslSsl),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Plaintext => "PLAINTEXT",
            Protocol::Ssl => "SSL",
            Protocol::SaslPlaintext => "SASL_PLAINTEXT",
            Protocol::SaslSsl => "SASL_SSL",
        }
    }

    pub fn tls(self) -> bool {
        matches!(self, Protocol::Ssl | Protocol::SaslSsl)
    }

    pub fn sasl(self) -> bool {
        matches!(self, Protocol::SaslPlaintext | Protocol::SaslSsl)
    }
}

/// Who a connection acts as: Kafka's `KafkaPrincipal` (`User:alice`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Principal {
    pub kind: String,
    pub name: String,
}

impl Principal {
    pub fn user(name: &str) -> Principal {
        Principal { kind: "User".into(), name: name.into() }
    }

    /// Kafka's principal of an unauthenticated connection (PLAINTEXT, or SSL without a
    /// client certificate).
    pub fn anonymous() -> Principal {
        Principal::user("ANONYMOUS")
    }

    /// `Type:name`, as ACLs and `super.users` name principals.
    pub fn parse(text: &str) -> Option<Principal> {
        let (kind, name) = text.trim().split_once(':')?;
        (!kind.is_empty() && !name.is_empty()).then(|| Principal { kind: kind.into(), name: name.into() })
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.name)
    }
}

/// The security settings (`ssl.*`, `sasl.*`, `listener.name.*`, ...) as configured,
/// read for one listener.
pub struct Settings<'a> {
    all: &'a BTreeMap<String, String>,
    prefix: String,
}

impl<'a> Settings<'a> {
    pub fn new(all: &'a BTreeMap<String, String>, listener: &str) -> Settings<'a> {
        Settings { all, prefix: format!("listener.name.{}.", listener.to_ascii_lowercase()) }
    }

    /// The listener's own value of `key`, else the one for every listener.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.all.get(&format!("{}{key}", self.prefix)).or_else(|| self.all.get(key)).map(String::as_str)
    }

    /// The value of `key` for SASL `mechanism` on this listener: Kafka's
    /// `listener.name.<listener>.<mechanism>.<key>` first, else as [`Settings::get`].
    pub fn get_for(&self, mechanism: &str, key: &str) -> Option<&'a str> {
        self.all.get(&format!("{}{}.{key}", self.prefix, mechanism.to_ascii_lowercase())).map(String::as_str).or_else(|| self.get(key))
    }

    /// The name to put in a message about `key`: the listener-prefixed one.
    pub fn name(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
}

/// Keys [`BrokerConfig`](crate::config::BrokerConfig) keeps for this module, with or
/// without a listener prefix. Anything else under `ssl.`, `sasl.` or `listener.name.`
/// is refused at start-up, naming the key.
pub const KEYS: &[&str] = &[
    "ssl.keystore.type",
    "ssl.keystore.location",
    "ssl.keystore.key",
    "ssl.keystore.certificate.chain",
    "ssl.keystore.password",
    "ssl.key.password",
    "ssl.truststore.type",
    "ssl.truststore.location",
    "ssl.truststore.certificates",
    "ssl.client.auth",
    "ssl.enabled.protocols",
    "sasl.enabled.mechanisms",
    "sasl.jaas.config",
    "plain.sasl.jaas.config",
    "connections.max.reauth.ms",
    "sasl.server.callback.handler.class",
    "sasl.oauthbearer.jwks.endpoint.url",
    "sasl.oauthbearer.expected.audience",
    "sasl.oauthbearer.expected.issuer",
    "sasl.oauthbearer.sub.claim.name",
    "sasl.oauthbearer.scope.claim.name",
    "sasl.oauthbearer.clock.skew.seconds",
    "sasl.mechanism.inter.broker.protocol",
];

/// Whether `key` names a sensitive value (never logged or described).
pub fn is_sensitive(key: &str) -> bool {
    key.ends_with("password") || key.ends_with("jaas.config") || key.ends_with("ssl.keystore.key")
}

/// Checks a security key's name (any value is checked when its listener is built).
pub fn check_key(key: &str) -> Result<(), String> {
    let base = match key.strip_prefix("listener.name.") {
        Some(rest) => match rest.split_once('.') {
            Some((listener, base)) if !listener.is_empty() => base,
            _ => return Err(format!("`{key}` is not listener.name.<listener>.<setting>")),
        },
        None => key,
    };
    // Kafka's per-mechanism keys: listener.name.<l>.<mechanism>.<key>, e.g.
    // listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config.
    let base = match base.split_once('.') {
        Some((mech, rest)) if sasl::Mechanism::parse(&mech.to_ascii_uppercase()).is_some() && KEYS.contains(&rest) => rest,
        _ => base,
    };
    if KEYS.contains(&base) {
        Ok(())
    } else {
        Err(format!("unknown security setting `{key}` (Karst's: {})", KEYS.join(", ")))
    }
}

/// One listener's security, built at start-up.
#[derive(Debug)]
pub struct ListenerSecurity {
    pub tls: Option<Arc<tls::TlsAcceptor>>,
    pub sasl: Option<Arc<sasl::SaslSettings>>,
}

impl ListenerSecurity {
    /// Builds a listener's security from the settings; an error names the key.
    pub fn build(protocol: Protocol, listener: &str, all: &BTreeMap<String, String>) -> Result<ListenerSecurity, String> {
        let s = Settings::new(all, listener);
        let tls = if protocol.tls() { Some(Arc::new(tls::TlsAcceptor::new(tls::TlsSettings::from(&s)?)?)) } else { None };
        let sasl = if protocol.sasl() { Some(Arc::new(sasl::SaslSettings::from(&s)?)) } else { None };
        Ok(ListenerSecurity { tls, sasl })
    }

    pub fn plaintext() -> ListenerSecurity {
        ListenerSecurity { tls: None, sasl: None }
    }
}

/// How this broker reaches its peers' inter-broker listener (follower fetches,
/// transaction markers): TLS checking the peer against the listener's truststore and
/// presenting its keystore, then SASL with `sasl.mechanism.inter.broker.protocol`
/// (PLAIN by default; SCRAM-SHA-256/512) and the `username` and `password` of that
/// mechanism's JAAS config on the listener, as a Kafka broker does.
#[derive(Debug, Default)]
pub struct PeerSecurity {
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub sasl: Option<(sasl::Mechanism, String, String)>,
}

impl PeerSecurity {
    pub fn build(protocol: Protocol, listener: &str, all: &BTreeMap<String, String>) -> Result<PeerSecurity, String> {
        let s = Settings::new(all, listener);
        let tls = if protocol.tls() { Some(tls::TlsSettings::from(&s)?.client_config()?) } else { None };
        let sasl = if protocol.sasl() {
            let name = s.get("sasl.mechanism.inter.broker.protocol").unwrap_or("PLAIN").trim().to_ascii_uppercase();
            let mechanism = sasl::Mechanism::parse(&name)
                .filter(|m| *m != sasl::Mechanism::OAuthBearer)
                .ok_or_else(|| format!("sasl.mechanism.inter.broker.protocol: `{name}` is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"))?;
            let key = format!("{}.sasl.jaas.config", name.to_ascii_lowercase());
            let jaas = s
                .get_for(&name, "sasl.jaas.config")
                .ok_or_else(|| format!("{}: the broker's own username and password for {name} (inter-broker SASL)", s.name(&key)))?;
            let options = sasl::parse_jaas(jaas).map_err(|e| format!("{}: {e}", s.name(&key)))?;
            let (Some(user), Some(password)) = (options.get("username"), options.get("password")) else {
                return Err(format!("{}: give username= and password= (the broker's own credentials)", s.name(&key)));
            };
            Some((mechanism, user.clone(), password.clone()))
        } else {
            None
        };
        Ok(PeerSecurity { tls, sasl })
    }
}

/// The controller quorum's transport: TLS with client certificates required both ways
/// when `listener.security.protocol.map` maps `CONTROLLER` to SSL (settings
/// `listener.name.controller.ssl.*`), else plain TCP.
pub fn controller_transport(protocol: Option<Protocol>, all: &BTreeMap<String, String>) -> Result<karst_controller::Transport, String> {
    match protocol {
        None | Some(Protocol::Plaintext) => Ok(karst_controller::Transport::plaintext()),
        Some(Protocol::Ssl) => {
            let s = tls::TlsSettings::from(&Settings::new(all, "CONTROLLER"))?.requiring_client_certificates()?;
            Ok(karst_controller::Transport::tls(karst_controller::TransportTls { server: s.build()?, client: s.client_config()? }))
        }
        Some(p) => Err(format!(
            "CONTROLLER:{}: the controller quorum's transport is PLAINTEXT or SSL (client certificates authenticate its peers)",
            p.as_str()
        )),
    }
}
