//! TLS on a listener (security protocols SSL and SASL_SSL), configured with Kafka's
//! `ssl.*` names for PEM material: `ssl.keystore.location` (a PEM file holding the
//! private key and the certificate chain, Kafka's `ssl.keystore.type=PEM`) or the
//! inline `ssl.keystore.key` and `ssl.keystore.certificate.chain`;
//! `ssl.truststore.location` or `ssl.truststore.certificates` (the CAs client
//! certificates must chain to); `ssl.client.auth` (`none`, `requested`, `required`);
//! `ssl.enabled.protocols`. The files are looked at again (at most once a second, on
//! a new connection) and a changed certificate, key or CA is used from the next
//! handshake on, without a restart; a change that does not load is logged and the
//! previous material kept.

use std::fs;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;

use super::reload::Reloaded;
use super::Settings;

/// `ssl.client.auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    Requested,
    Required,
}

impl ClientAuth {
    pub fn parse(v: &str) -> Option<ClientAuth> {
        match v.trim().to_ascii_lowercase().as_str() {
            "none" | "" => Some(ClientAuth::None),
            "requested" => Some(ClientAuth::Requested),
            "required" => Some(ClientAuth::Required),
            _ => None,
        }
    }
}

/// Where a listener's TLS material comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// A PEM file with the key and the chain, or the two inline.
    keystore: Source,
    truststore: Option<Source>,
    client_auth: ClientAuth,
    tls12: bool,
    tls13: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    File(PathBuf),
    /// Inline PEM (the key, then the chain; or the CAs).
    Inline(String, String),
}

impl TlsSettings {
    /// The listener's TLS settings, checked: an error names the key.
    pub fn from(s: &Settings<'_>) -> Result<TlsSettings, String> {
        for (key, default) in [("ssl.keystore.type", "JKS"), ("ssl.truststore.type", "JKS")] {
            if let Some(t) = s.get(key) {
                if !t.eq_ignore_ascii_case("PEM") {
                    return Err(format!(
                        "{}: `{t}`: Karst reads PEM key and certificate files only (Kafka's default is {default})",
                        s.name(key)
                    ));
                }
            }
        }
        if s.get("ssl.key.password").is_some_and(|p| !p.is_empty()) || s.get("ssl.keystore.password").is_some_and(|p| !p.is_empty()) {
            return Err(format!(
                "{}: encrypted private keys are not supported; give an unencrypted PKCS#8, PKCS#1 or SEC1 PEM key",
                s.name("ssl.key.password")
            ));
        }
        let keystore = match (s.get("ssl.keystore.location"), s.get("ssl.keystore.key"), s.get("ssl.keystore.certificate.chain")) {
            (Some(path), None, None) => Source::File(PathBuf::from(path)),
            (None, Some(key), Some(chain)) => Source::Inline(key.to_string(), chain.to_string()),
            (None, None, None) => {
                return Err(format!(
                    "{} (or {} and {}) must name the listener's PEM key and certificate",
                    s.name("ssl.keystore.location"),
                    s.name("ssl.keystore.key"),
                    s.name("ssl.keystore.certificate.chain")
                ))
            }
            _ => {
                return Err(format!(
                    "give either {} or both {} and {}",
                    s.name("ssl.keystore.location"),
                    s.name("ssl.keystore.key"),
                    s.name("ssl.keystore.certificate.chain")
                ))
            }
        };
        let truststore = match (s.get("ssl.truststore.location"), s.get("ssl.truststore.certificates")) {
            (Some(path), None) => Some(Source::File(PathBuf::from(path))),
            (None, Some(pem)) => Some(Source::Inline(String::new(), pem.to_string())),
            (None, None) => None,
            _ => return Err(format!("give either {} or {}", s.name("ssl.truststore.location"), s.name("ssl.truststore.certificates"))),
        };
        let client_auth = match s.get("ssl.client.auth") {
            None => ClientAuth::None,
            Some(v) => {
                ClientAuth::parse(v).ok_or_else(|| format!("{}: `{v}` is not none, requested or required", s.name("ssl.client.auth")))?
            }
        };
        if client_auth != ClientAuth::None && truststore.is_none() {
            return Err(format!(
                "{}={}: client certificates need {} (the CAs they chain to)",
                s.name("ssl.client.auth"),
                s.get("ssl.client.auth").unwrap_or_default(),
                s.name("ssl.truststore.location")
            ));
        }
        let (mut tls12, mut tls13) = (false, false);
        for p in s.get("ssl.enabled.protocols").unwrap_or("TLSv1.2,TLSv1.3").split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match p {
                "TLSv1.2" => tls12 = true,
                "TLSv1.3" => tls13 = true,
                other => return Err(format!("{}: `{other}` is not TLSv1.2 or TLSv1.3", s.name("ssl.enabled.protocols"))),
            }
        }
        if !tls12 && !tls13 {
            return Err(format!("{}: no protocol enabled", s.name("ssl.enabled.protocols")));
        }
        Ok(TlsSettings { keystore, truststore, client_auth, tls12, tls13 })
    }

    fn files(&self) -> Vec<PathBuf> {
        [&Some(self.keystore.clone()), &self.truststore]
            .into_iter()
            .flatten()
            .filter_map(|s| match s {
                Source::File(p) => Some(p.clone()),
                Source::Inline(..) => None,
            })
            .collect()
    }

    /// These settings with client certificates required (the quorum transport).
    pub fn requiring_client_certificates(mut self) -> Result<TlsSettings, String> {
        if self.truststore.is_none() {
            return Err("client certificates need ssl.truststore.location (the CAs they chain to)".into());
        }
        self.client_auth = ClientAuth::Required;
        Ok(self)
    }

    fn versions(&self) -> Vec<&'static rustls::SupportedProtocolVersion> {
        [(self.tls12, &rustls::version::TLS12), (self.tls13, &rustls::version::TLS13)]
            .into_iter()
            .filter_map(|(on, v)| on.then_some(v))
            .collect()
    }

    /// The keystore's certificate chain and private key.
    fn identity(&self) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
        let (key_pem, chain_pem) = match &self.keystore {
            Source::File(p) => {
                let text = fs::read(p).map_err(|e| format!("reading {}: {e}", p.display()))?;
                (text.clone(), text)
            }
            Source::Inline(k, c) => (k.clone().into_bytes(), c.clone().into_bytes()),
        };
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&chain_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("reading the certificate chain: {e}"))?;
        if chain.is_empty() {
            return Err("the keystore holds no certificate".into());
        }
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| format!("reading the private key: {e}"))?;
        Ok((chain, key))
    }

    /// The truststore's CAs.
    fn roots(&self) -> Result<rustls::RootCertStore, String> {
        let Some(ts) = &self.truststore else { return Err("no truststore (ssl.truststore.location)".into()) };
        let pem = match ts {
            Source::File(p) => fs::read(p).map_err(|e| format!("reading {}: {e}", p.display()))?,
            Source::Inline(_, c) => c.clone().into_bytes(),
        };
        roots_from_pem(&pem)
    }

    /// The client side, for this broker's connections to its peers: it checks the
    /// peer's certificate against the truststore and presents the keystore's.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (chain, key) = self.identity()?;
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&self.versions())
            .map_err(|e| format!("TLS protocol versions: {e}"))?
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("the key and certificate: {e}"))?;
        Ok(Arc::new(config))
    }

    /// Reads the material and builds the server configuration.
    pub fn build(&self) -> Result<Arc<ServerConfig>, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (chain, key) = self.identity()?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&self.versions())
            .map_err(|e| format!("TLS protocol versions: {e}"))?;
        let builder = match self.client_auth {
            auth if auth != ClientAuth::None => {
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(self.roots()?), provider);
                let verifier = if auth == ClientAuth::Requested { verifier.allow_unauthenticated() } else { verifier };
                builder.with_client_cert_verifier(verifier.build().map_err(|e| format!("client certificate verifier: {e}"))?)
            }
            _ => builder.with_no_client_auth(),
        };
        let config = builder.with_single_cert(chain, key).map_err(|e| format!("the key and certificate: {e}"))?;
        Ok(Arc::new(config))
    }
}

/// The CAs of a PEM truststore.
fn roots_from_pem(pem: &[u8]) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| format!("reading the truststore: {e}"))?;
        roots.add(cert).map_err(|e| format!("a truststore certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err("the truststore holds no certificate".into());
    }
    Ok(roots)
}

/// A client's TLS configuration from Kafka client settings' PEM files: the CAs to
/// check the broker against (`ssl.truststore.location`; without one, the system's are
/// not consulted: a truststore is required) and, for brokers asking for client
/// certificates, a keystore holding the key and the chain (`ssl.keystore.location`).
pub fn client_config_from_files(
    truststore: &std::path::Path,
    keystore: Option<&std::path::Path>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let pem = fs::read(truststore).map_err(|e| format!("reading {}: {e}", truststore.display()))?;
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS protocol versions: {e}"))?
        .with_root_certificates(roots_from_pem(&pem)?);
    let config = match keystore {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let identity = TlsSettings {
                keystore: Source::File(path.to_path_buf()),
                truststore: None,
                client_auth: ClientAuth::None,
                tls12: true,
                tls13: true,
            }
            .identity()?;
            builder.with_client_auth_cert(identity.0, identity.1).map_err(|e| format!("the key and certificate: {e}"))?
        }
    };
    Ok(Arc::new(config))
}

/// A listener's TLS configuration, rebuilt when its files change.
#[derive(Debug)]
pub struct TlsAcceptor {
    settings: TlsSettings,
    config: Reloaded<Arc<ServerConfig>>,
}

impl TlsAcceptor {
    /// Loads the material now: a listener whose key or certificate does not load
    /// stops start-up.
    pub fn new(settings: TlsSettings) -> Result<TlsAcceptor, String> {
        let config = Reloaded::new(settings.files(), "TLS key, certificate or truststore", || settings.build())?;
        Ok(TlsAcceptor { settings, config })
    }

    /// The configuration for a new connection, reloaded first if a file changed.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.config.get(|| self.settings.build())
    }
}

/// The principal name Kafka gives a client certificate: its subject distinguished
/// name in RFC 2253 form (most specific attribute first, as Java's
/// `X500Principal.getName()`), e.g. `CN=alice,OU=eng,O=Acme`.
pub fn subject_name(cert: &CertificateDer<'_>) -> Option<String> {
    use x509_parser::prelude::*;
    let (_, parsed) = X509Certificate::from_der(cert.as_ref()).ok()?;
    let mut parts = Vec::new();
    for rdn in parsed.subject().iter().collect::<Vec<_>>().into_iter().rev() {
        let attrs: Vec<String> = rdn
            .iter()
            .map(|a| {
                let oid = a.attr_type();
                let name = oid_registry::OidRegistry::default()
                    .with_x509()
                    .get(oid)
                    .map(|e| e.sn().to_string())
                    .filter(|n| KNOWN.contains(&n.as_str()))
                    .unwrap_or_else(|| oid.to_id_string());
                let value = a.as_str().map(escape).unwrap_or_else(|_| format!("#{}", hex(a.attr_value().data)));
                format!("{name}={value}")
            })
            .collect();
        parts.push(attrs.join("+"));
    }
    Some(parts.join(","))
}

/// The attribute names Java writes as keywords in RFC 2253 form; others by OID.
const KNOWN: &[&str] = &["CN", "C", "L", "ST", "O", "OU", "STREET", "DC", "UID"];

fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for (i, c) in v.chars().enumerate() {
        let edge = (i == 0 && (c == ' ' || c == '#')) || (i + 1 == v.chars().count() && c == ' ');
        if edge || matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
