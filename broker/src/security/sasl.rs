//! SASL on a listener (SASL_PLAINTEXT, SASL_SSL), as Kafka's `SaslServerAuthenticator`:
//! SaslHandshake picks a mechanism; with v1 the exchange goes in SaslAuthenticate
//! requests, with v0 (older clients: sarama's default) as bare length-prefixed tokens.
//! Until authenticated a connection may send ApiVersions and the SASL requests only;
//! anything else closes it. Mechanisms: PLAIN (users from the listener's JAAS
//! config, `user_<name>="<password>"`, as Kafka's `PlainLoginModule`), SCRAM-SHA-256
//! and SCRAM-SHA-512 (credentials kept in the controller quorum), OAUTHBEARER (a JWT,
//! [`super::oauth`]). KIP-368: with `connections.max.reauth.ms`, a session ends after
//! that long (or when its OAUTHBEARER token expires, if sooner) unless the client
//! authenticates again on the same connection.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::oauth::Validator;
use super::scram::{Credential, ScramHash, ScramServer};
use super::{Principal, Settings};

/// A SASL mechanism Karst serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Scram(ScramHash),
    OAuthBearer,
}

impl Mechanism {
    pub fn parse(name: &str) -> Option<Mechanism> {
        match name {
            "PLAIN" => Some(Mechanism::Plain),
            "SCRAM-SHA-256" => Some(Mechanism::Scram(ScramHash::Sha256)),
            "SCRAM-SHA-512" => Some(Mechanism::Scram(ScramHash::Sha512)),
            "OAUTHBEARER" => Some(Mechanism::OAuthBearer),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Scram(h) => h.mechanism(),
            Mechanism::OAuthBearer => "OAUTHBEARER",
        }
    }
}

/// The SASL settings of one listener.
#[derive(Debug, Clone)]
pub struct SaslSettings {
    /// `sasl.enabled.mechanisms`, in the order given (ANSWERED in SaslHandshake).
    pub mechanisms: Vec<Mechanism>,
    /// PLAIN's users and passwords (`user_<name>` in the listener's JAAS config).
    plain_users: BTreeMap<String, String>,
    /// `connections.max.reauth.ms` (0: sessions do not expire).
    pub reauth_ms: u64,
    /// OAUTHBEARER's token validator, when that mechanism is enabled.
    oauth: Option<std::sync::Arc<Validator>>,
}

impl SaslSettings {
    pub fn from(s: &Settings<'_>) -> Result<SaslSettings, String> {
        let mut mechanisms = Vec::new();
        let enabled = s.get("sasl.enabled.mechanisms").unwrap_or("PLAIN,SCRAM-SHA-256,SCRAM-SHA-512");
        for name in enabled.split(',').map(str::trim).filter(|m| !m.is_empty()) {
            let m = Mechanism::parse(name).ok_or_else(|| {
                format!("{}: `{name}` is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER", s.name("sasl.enabled.mechanisms"))
            })?;
            if !mechanisms.contains(&m) {
                mechanisms.push(m);
            }
        }
        if mechanisms.is_empty() {
            return Err(format!("{}: no mechanism enabled", s.name("sasl.enabled.mechanisms")));
        }
        let jaas = s.get("plain.sasl.jaas.config").or_else(|| s.get("sasl.jaas.config"));
        let plain_users = match jaas {
            Some(text) => parse_jaas(text)
                .map_err(|e| format!("{}: {e}", s.name("plain.sasl.jaas.config")))?
                .into_iter()
                .filter_map(|(k, v)| k.strip_prefix("user_").map(|u| (u.to_string(), v)))
                .collect(),
            None => BTreeMap::new(),
        };
        let reauth_ms = match s.get("connections.max.reauth.ms") {
            None => 0,
            Some(v) => {
                v.trim().parse().map_err(|_| format!("{}: `{v}` is not a number of milliseconds", s.name("connections.max.reauth.ms")))?
            }
        };
        let oauth = if mechanisms.contains(&Mechanism::OAuthBearer) {
            let v = Validator::from(s)?;
            if !v.secured() {
                tracing::warn!(
                    listener = %s.name(""),
                    "OAUTHBEARER takes unsecured tokens (alg none): anyone may name any principal; \
                     set sasl.oauthbearer.jwks.endpoint.url to check signatures"
                );
            }
            Some(std::sync::Arc::new(v))
        } else {
            None
        };
        Ok(SaslSettings { mechanisms, plain_users, reauth_ms, oauth })
    }

    fn names(&self) -> Vec<&'static str> {
        self.mechanisms.iter().map(|m| m.name()).collect()
    }
}

/// The options of a JAAS login module entry: `Module required k="v" k2="v2";`.
pub fn parse_jaas(text: &str) -> Result<BTreeMap<String, String>, String> {
    let text = text.trim().trim_end_matches(';').trim();
    let mut words = text.splitn(3, char::is_whitespace);
    let _module = words.next().filter(|m| !m.is_empty()).ok_or("no login module")?;
    let flag = words.next().unwrap_or("");
    if !matches!(flag, "required" | "requisite" | "sufficient" | "optional") {
        return Err(format!("`{flag}` is not a JAAS control flag"));
    }
    let mut out = BTreeMap::new();
    let mut rest = words.next().unwrap_or("").trim_start();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=').ok_or_else(|| format!("`{rest}` is not key=\"value\""))?;
        let key = key.trim();
        let after = after.trim_start();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => value.push(chars.next().map(|(_, c)| c).ok_or("a value ends in a backslash")?),
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => value.push(c),
                }
            }
            let end = end.ok_or_else(|| format!("the value of {key} has no closing quote"))?;
            (value, &quoted[end..])
        } else {
            let end = after.find(char::is_whitespace).unwrap_or(after.len());
            (after[..end].to_string(), &after[end..])
        };
        if key.is_empty() {
            return Err("an option without a name".into());
        }
        out.insert(key.to_string(), value);
        rest = next.trim_start();
    }
    Ok(out)
}

/// SASL error codes and the handshake's ILLEGAL_SASL_STATE.
pub const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
pub const ILLEGAL_SASL_STATE: i16 = 34;
pub const SASL_AUTHENTICATION_FAILED: i16 = 58;

/// What the connection does with a SASL step's outcome.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Answer with these bytes (a SaslAuthenticate response's `auth_bytes`, or a v0 token).
    Continue(Vec<u8>),
    /// Authenticated: answer with these bytes.
    Done(Vec<u8>),
    /// Refused: answer with this error (v1) and close the connection.
    Failed(i16, String),
}

enum State {
    /// No mechanism chosen yet.
    Handshake,
    /// A mechanism chosen; `raw`: tokens come bare (SaslHandshake v0); `refused`:
    /// OAUTHBEARER's challenge sent for a bad token, awaiting the client's `%x01`.
    Exchange { mechanism: Mechanism, raw: bool, scram: Option<Box<ScramServer>>, refused: Option<String> },
    /// Authenticated; a KIP-368 re-authentication starts with a new handshake.
    Authenticated,
}

/// One connection's SASL state.
pub struct SaslSession {
    settings: std::sync::Arc<SaslSettings>,
    state: State,
    principal: Option<Principal>,
    /// When the session ends (KIP-368), if it does.
    expires: Option<Instant>,
    /// The mechanism of the last handshake.
    chosen: Option<Mechanism>,
}

impl SaslSession {
    pub fn new(settings: std::sync::Arc<SaslSettings>) -> SaslSession {
        SaslSession { settings, state: State::Handshake, principal: None, expires: None, chosen: None }
    }

    /// The authenticated principal (kept through a re-authentication in progress).
    pub fn principal(&self) -> Option<&Principal> {
        self.principal.as_ref()
    }

    /// The mechanism chosen by the last handshake.
    pub fn mechanism(&self) -> Option<&'static str> {
        self.chosen.map(Mechanism::name)
    }

    pub fn authenticated(&self) -> bool {
        self.principal.is_some()
    }

    /// Whether the next frame is a bare SASL token (after a v0 handshake).
    pub fn expects_raw_token(&self) -> bool {
        matches!(self.state, State::Exchange { raw: true, .. })
    }

    /// Whether the session has ended (KIP-368): the connection must close.
    pub fn expired(&self, now: Instant) -> bool {
        self.expires.is_some_and(|e| now >= e)
    }

    /// SaslHandshake: the error code (0, UNSUPPORTED_SASL_MECHANISM or
    /// ILLEGAL_SASL_STATE) and the enabled mechanisms to answer with.
    pub fn handshake(&mut self, mechanism: &str, version: i16) -> (i16, Vec<&'static str>) {
        let names = self.settings.names();
        if !matches!(self.state, State::Handshake | State::Authenticated) || (self.authenticated() && version == 0) {
            return (ILLEGAL_SASL_STATE, names);
        }
        match Mechanism::parse(mechanism).filter(|m| self.settings.mechanisms.contains(m)) {
            Some(m) => {
                self.chosen = Some(m);
                let scram = match m {
                    Mechanism::Scram(h) => Some(Box::new(ScramServer::new(h))),
                    Mechanism::Plain | Mechanism::OAuthBearer => None,
                };
                self.state = State::Exchange { mechanism: m, raw: version == 0, scram, refused: None };
                (0, names)
            }
            None => (UNSUPPORTED_SASL_MECHANISM, names),
        }
    }

    /// One token of the exchange; `scram` finds a user's SCRAM credential.
    pub fn authenticate(&mut self, token: &[u8], scram: impl FnOnce(&str, ScramHash) -> Option<Credential>) -> Step {
        let State::Exchange { mechanism, scram: server, refused, .. } = &mut self.state else {
            return Step::Failed(ILLEGAL_SASL_STATE, "SaslAuthenticate before SaslHandshake".into());
        };
        let mechanism = *mechanism;
        let failed = |why: String| {
            Step::Failed(
                SASL_AUTHENTICATION_FAILED,
                format!(
                    "Authentication failed during authentication due to invalid credentials with SASL mechanism {}: {why}",
                    mechanism.name()
                ),
            )
        };
        let user = match (mechanism, server) {
            (Mechanism::Plain, _) => match self.check_plain(token) {
                Ok(user) => user,
                Err(why) => return failed(why),
            },
            (Mechanism::Scram(h), Some(server)) => {
                if server.user().is_none() {
                    return match server.first(token, |u| scram(u, h)) {
                        Ok(reply) => Step::Continue(reply),
                        Err(e) => failed(e.0),
                    };
                }
                let user = server.user().unwrap_or_default().to_string();
                match server.last(token) {
                    Ok(reply) => return self.done(user, reply),
                    Err(e) => return failed(e.0),
                }
            }
            (Mechanism::Scram(_), None) => return Step::Failed(ILLEGAL_SASL_STATE, "no SCRAM exchange in progress".into()),
            (Mechanism::OAuthBearer, _) => {
                // Kafka's OAuthBearerSaslServer: the client's %x01 after a challenge
                // ends the exchange with the challenge's text.
                if token == [1u8] {
                    if let Some(json) = refused.take() {
                        return Step::Failed(SASL_AUTHENTICATION_FAILED, json);
                    }
                }
                *refused = None;
                let (authzid, bearer) = match super::oauth::initial_response(token) {
                    Ok(parsed) => parsed,
                    Err(why) => return failed(why),
                };
                let Some(validator) = self.settings.oauth.clone() else {
                    return Step::Failed(ILLEGAL_SASL_STATE, "OAUTHBEARER is not configured".into());
                };
                let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
                match validator.validate(&bearer, now_ms) {
                    Ok(t) if !authzid.is_empty() && authzid != t.principal => {
                        return Step::Failed(
                            SASL_AUTHENTICATION_FAILED,
                            format!(
                                "Authentication failed: Client requested an authorization id ({authzid}) that is different from the token's principal name ({})",
                                t.principal
                            ),
                        )
                    }
                    Ok(t) => {
                        let left = u64::try_from(t.expires_ms - now_ms).unwrap_or(0);
                        return self.done_until(t.principal, Vec::new(), Some(left));
                    }
                    Err(r) => {
                        tracing::info!("OAUTHBEARER token refused: {}", r.why);
                        let json = r.json();
                        *refused = Some(json.clone());
                        return Step::Continue(json.into_bytes());
                    }
                }
            }
        };
        self.done(user, Vec::new())
    }

    fn done(&mut self, user: String, reply: Vec<u8>) -> Step {
        self.done_until(user, reply, None)
    }

    /// Authenticated as `user`; `credential_ms`: how long the credential (an
    /// OAUTHBEARER token) is good for, which bounds a KIP-368 session as in Kafka.
    fn done_until(&mut self, user: String, reply: Vec<u8>, credential_ms: Option<u64>) -> Step {
        let principal = Principal::user(&user);
        // KIP-368: a re-authentication may not change who the connection is.
        if self.principal.as_ref().is_some_and(|p| *p != principal) {
            return Step::Failed(
                SASL_AUTHENTICATION_FAILED,
                format!(
                    "re-authentication as {principal} on a connection of {}",
                    self.principal.as_ref().map(|p| p.to_string()).unwrap_or_default()
                ),
            );
        }
        self.principal = Some(principal);
        self.state = State::Authenticated;
        let lifetime = credential_ms.map_or(self.settings.reauth_ms, |c| c.min(self.settings.reauth_ms));
        self.expires = (self.settings.reauth_ms > 0).then(|| Instant::now() + Duration::from_millis(lifetime));
        Step::Done(reply)
    }

    /// The session lifetime SaslAuthenticate v1+ reports (0: none).
    pub fn lifetime_ms(&self) -> i64 {
        self.expires.map_or(0, |e| e.saturating_duration_since(Instant::now()).as_millis() as i64)
    }

    /// PLAIN (RFC 4616): `authzid NUL authcid NUL password`.
    fn check_plain(&self, token: &[u8]) -> Result<String, String> {
        let text = std::str::from_utf8(token).map_err(|_| "the PLAIN message is not UTF-8".to_string())?;
        let mut parts = text.split('\0');
        let (Some(authzid), Some(user), Some(password), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err("Invalid SASL/PLAIN response: expected 3 tokens".into());
        };
        if user.is_empty() {
            return Err("Authentication failed: username not specified".into());
        }
        if !authzid.is_empty() && authzid != user {
            return Err("Authentication failed: Client requested an authorization id that is different from username".into());
        }
        let ok = self
            .settings
            .plain_users
            .get(user)
            .is_some_and(|p| p.len() == password.len() && p.bytes().zip(password.bytes()).fold(0u8, |a, (x, y)| a | (x ^ y)) == 0);
        if ok {
            Ok(user.to_string())
        } else {
            Err("Invalid username or password".into())
        }
    }
}

/// The client side of a SASL exchange as `user` (PLAIN and SCRAM), without I/O: send
/// [`SaslClient::first`], then each token [`SaslClient::next`] returns for the
/// server's answer, until it returns `None`. SCRAM checks the server's final signature.
pub struct SaslClient {
    scram: Option<super::scram::ScramClient>,
    plain: Vec<u8>,
    answered: usize,
}

impl SaslClient {
    pub fn new(mechanism: Mechanism, user: &str, password: &str) -> Result<SaslClient, String> {
        let scram = match mechanism {
            Mechanism::Scram(hash) => Some(super::scram::ScramClient::new(hash, user, password)),
            Mechanism::Plain => None,
            Mechanism::OAuthBearer => return Err("OAUTHBEARER needs a token, not a password".into()),
        };
        Ok(SaslClient { scram, plain: format!("\0{user}\0{password}").into_bytes(), answered: 0 })
    }

    pub fn first(&self) -> Vec<u8> {
        match &self.scram {
            Some(c) => c.first(),
            None => self.plain.clone(),
        }
    }

    /// The next token for the server's answer `reply`, or `None` when done.
    pub fn next(&mut self, reply: &[u8]) -> Result<Option<Vec<u8>>, String> {
        self.answered += 1;
        match (&mut self.scram, self.answered) {
            (None, _) => Ok(None),
            (Some(c), 1) => c.last(reply).map(Some).map_err(|e| e.0),
            (Some(c), _) if c.verify(reply) => Ok(None),
            (Some(_), _) => Err("the server did not prove it holds the SCRAM credential".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn settings(reauth_ms: u64) -> Arc<SaslSettings> {
        let all: BTreeMap<String, String> = [
            ("listener.name.sasl.plain.sasl.jaas.config", r#"org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="a\"b" user_admin="a\"b" user_alice="alice-secret";"#),
            ("connections.max.reauth.ms", &reauth_ms.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Arc::new(SaslSettings::from(&Settings::new(&all, "SASL")).expect("settings"))
    }

    #[test]
    fn plain_users_come_from_the_jaas_config() {
        let mut s = SaslSession::new(settings(0));
        assert_eq!(s.handshake("PLAIN", 1).0, 0);
        assert_eq!(s.authenticate(b"\0alice\0alice-secret", |_, _| None), Step::Done(Vec::new()));
        assert_eq!(s.principal(), Some(&Principal::user("alice")));
        let mut s = SaslSession::new(settings(0));
        s.handshake("PLAIN", 1);
        assert!(matches!(s.authenticate(b"\0admin\0a\"b", |_, _| None), Step::Done(_)), "escaped quote");
        for bad in [&b"\0alice\0wrong"[..], b"\0bob\0x", b"alice", b"eve\0alice\0alice-secret", b"\0\0", b"\0a\0b\0c"] {
            let mut s = SaslSession::new(settings(0));
            s.handshake("PLAIN", 1);
            assert!(matches!(s.authenticate(bad, |_, _| None), Step::Failed(SASL_AUTHENTICATION_FAILED, _)), "{bad:?}");
            assert!(!s.authenticated());
        }
    }

    #[test]
    fn the_handshake_names_the_enabled_mechanisms_and_refuses_others() {
        let mut s = SaslSession::new(settings(0));
        let (code, names) = s.handshake("GSSAPI", 1);
        assert_eq!((code, names), (UNSUPPORTED_SASL_MECHANISM, vec!["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]));
        assert!(matches!(s.authenticate(b"x", |_, _| None), Step::Failed(ILLEGAL_SASL_STATE, _)));
        assert_eq!(s.handshake("SCRAM-SHA-512", 0).0, 0);
        assert!(s.expects_raw_token());
        assert_eq!(s.handshake("PLAIN", 1).0, ILLEGAL_SASL_STATE, "a second handshake mid-exchange");
    }

    #[test]
    fn a_session_expires_and_reauthentication_keeps_the_principal() {
        let mut s = SaslSession::new(settings(60_000));
        s.handshake("PLAIN", 1);
        assert!(matches!(s.authenticate(b"\0alice\0alice-secret", |_, _| None), Step::Done(_)));
        assert!(s.lifetime_ms() > 59_000 && !s.expired(Instant::now()));
        assert!(s.expired(Instant::now() + Duration::from_secs(61)));
        assert_eq!(s.handshake("PLAIN", 1).0, 0, "KIP-368 re-authentication");
        assert!(matches!(s.authenticate(b"\0admin\0a\"b", |_, _| None), Step::Failed(SASL_AUTHENTICATION_FAILED, _)), "as someone else");
    }

    #[test]
    fn jaas_options_parse_and_garbage_is_refused() {
        let o = parse_jaas(r#"M required a="1" b=two c="x y";"#).expect("parsed");
        assert_eq!(o.get("a").map(String::as_str), Some("1"));
        assert_eq!(o.get("b").map(String::as_str), Some("two"));
        assert_eq!(o.get("c").map(String::as_str), Some("x y"));
        for bad in ["", "M", "M maybe a=1;", r#"M required a="1"#, "M required =1;", r#"M required a="x\"#] {
            assert!(parse_jaas(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bad_oauthbearer_token_is_challenged_then_refused_and_a_good_one_bounds_the_session() {
        let all: BTreeMap<String, String> = [("sasl.enabled.mechanisms", "OAUTHBEARER"), ("connections.max.reauth.ms", "3600000")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let settings = Arc::new(SaslSettings::from(&Settings::new(&all, "OAUTH")).expect("settings"));
        let e = |v: serde_json::Value| {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
        let token =
            |sub: &str, exp: u64| format!("{}.{}.", e(serde_json::json!({"alg": "none"})), e(serde_json::json!({"sub": sub, "exp": exp})));
        let first = |authzid: &str, t: &str| format!("n,{authzid},\x01auth=Bearer {t}\x01\x01").into_bytes();

        let mut s = SaslSession::new(settings.clone());
        assert_eq!(s.handshake("OAUTHBEARER", 1).0, 0);
        assert_eq!(
            s.authenticate(&first("", &token("alice", now - 10)), |_, _| None),
            Step::Continue(br#"{"status":"invalid_token"}"#.to_vec())
        );
        assert!(!s.authenticated());
        assert_eq!(s.authenticate(b"\x01", |_, _| None), Step::Failed(SASL_AUTHENTICATION_FAILED, r#"{"status":"invalid_token"}"#.into()));

        let mut s = SaslSession::new(settings.clone());
        s.handshake("OAUTHBEARER", 1);
        assert!(matches!(
            s.authenticate(&first("a=bob", &token("alice", now + 600)), |_, _| None),
            Step::Failed(SASL_AUTHENTICATION_FAILED, _)
        ));
        let mut s = SaslSession::new(settings.clone());
        s.handshake("OAUTHBEARER", 1);
        assert!(matches!(s.authenticate(b"\x01", |_, _| None), Step::Failed(SASL_AUTHENTICATION_FAILED, _)), "%x01 without a challenge");

        let mut s = SaslSession::new(settings);
        s.handshake("OAUTHBEARER", 1);
        assert_eq!(s.authenticate(&first("a=alice", &token("alice", now + 600)), |_, _| None), Step::Done(Vec::new()));
        assert_eq!(s.principal(), Some(&Principal::user("alice")));
        let left = s.lifetime_ms();
        assert!(left > 500_000 && left <= 600_000, "the session ends with the token, not after an hour: {left}");
    }
}
