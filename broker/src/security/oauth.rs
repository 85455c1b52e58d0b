//! SASL/OAUTHBEARER (RFC 7628, KIP-255, KIP-768) as Kafka's `OAuthBearerSaslServer`.
//! The client's first message carries a bearer token, a JWT; the token names the
//! principal (its `sub` claim, or the claim configured) and, with
//! `connections.max.reauth.ms`, bounds the session (KIP-368). Two validators, as Kafka's:
//!
//! - **JWKS** (Kafka's `OAuthBearerValidatorCallbackHandler`), chosen by
//!   `sasl.oauthbearer.jwks.endpoint.url` naming a file (`file:` URL or a path): the
//!   token must be signed (RS*, PS*, ES*, EdDSA) by a key of that JWK set, carry `exp`
//!   and `iat`, be within `sasl.oauthbearer.clock.skew.seconds` of its times, and match
//!   `sasl.oauthbearer.expected.audience` / `.issuer` when set. The file is read again
//!   when it changes (key rotation without a restart).
//! - **Unsecured** (Kafka's default, `OAuthBearerUnsecuredValidatorCallbackHandler`,
//!   for development): a token with `alg: none` and no signature, whose `exp` and
//!   principal claim are checked, with the JAAS options `unsecuredValidator*`.
//!
//! A token that fails is answered as Kafka does: a challenge `{"status":"invalid_token"}`,
//! then, when the client acknowledges it with `%x01`, SASL_AUTHENTICATION_FAILED with
//! that text. Why it failed is logged, never told to the client.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::reload::Reloaded;
use super::sasl::parse_jaas;
use super::Settings;

/// Kafka's class names for the server callback handler (`<mechanism>.sasl.server.callback.handler.class`).
const SECURED_HANDLERS: &[&str] = &[
    "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler",
    "org.apache.kafka.common.security.oauthbearer.secured.OAuthBearerValidatorCallbackHandler",
];
const UNSECURED_HANDLER: &str =
    "org.apache.kafka.common.security.oauthbearer.internals.unsecured.OAuthBearerUnsecuredValidatorCallbackHandler";

/// A token that was not accepted: the RFC 7628 error status (and scope) the client
/// is told, and the reason that is logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: &'static str,
    pub scope: Option<String>,
    pub why: String,
}

impl Refusal {
    fn invalid(why: impl Into<String>) -> Refusal {
        Refusal { status: "invalid_token", scope: None, why: why.into() }
    }

    /// The challenge Kafka sends: `{"status":"invalid_token"}` (with `, "scope":"..."`).
    pub fn json(&self) -> String {
        match &self.scope {
            None => format!("{{\"status\":\"{}\"}}", self.status),
            Some(scope) => format!("{{\"status\":\"{}\", \"scope\":\"{}\"}}", self.status, scope),
        }
    }
}

/// A token accepted: who it names and when it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub principal: String,
    /// `exp`, in milliseconds since the epoch.
    pub expires_ms: i64,
}

#[derive(Debug)]
pub struct Unsecured {
    principal_claim: String,
    scope_claim: String,
    required_scope: Vec<String>,
    skew_ms: i64,
}

#[derive(Debug)]
pub struct Jwks {
    file: PathBuf,
    keys: Reloaded<Arc<JwkSet>>,
    audience: Vec<String>,
    issuer: Option<String>,
    sub_claim: String,
    scope_claim: String,
    skew_s: u64,
}

/// A listener's OAUTHBEARER validator.
#[derive(Debug)]
pub enum Validator {
    Unsecured(Unsecured),
    Jwks(Jwks),
}

fn read_jwks(file: &PathBuf) -> Result<Arc<JwkSet>, String> {
    let text = std::fs::read(file).map_err(|e| format!("reading {}: {e}", file.display()))?;
    let set: JwkSet = serde_json::from_slice(&text).map_err(|e| format!("{} is not a JWK set: {e}", file.display()))?;
    for k in &set.keys {
        DecodingKey::from_jwk(k).map_err(|e| format!("{}: key {:?} does not load: {e}", file.display(), k.common.key_id))?;
    }
    Ok(Arc::new(set))
}

impl Validator {
    /// The validator `s` configures for OAUTHBEARER (settings may carry the
    /// `oauthbearer.` mechanism prefix, as Kafka's `listener.name.<l>.oauthbearer.<key>`).
    pub fn from(s: &Settings<'_>) -> Result<Validator, String> {
        let get = |key: &str| s.get_for("oauthbearer", key);
        let handler = get("sasl.server.callback.handler.class").map(str::trim);
        let jwks = get("sasl.oauthbearer.jwks.endpoint.url").map(str::trim).filter(|v| !v.is_empty());
        match (handler, jwks) {
            (Some(h), _) if !SECURED_HANDLERS.contains(&h) && h != UNSECURED_HANDLER => {
                return Err(format!(
                    "{}: `{h}` is not one of Kafka's OAUTHBEARER validators ({})",
                    s.name("oauthbearer.sasl.server.callback.handler.class"),
                    SECURED_HANDLERS.iter().chain([&UNSECURED_HANDLER]).copied().collect::<Vec<_>>().join(", ")
                ))
            }
            (Some(h), None) if SECURED_HANDLERS.contains(&h) => {
                return Err(format!(
                    "{}: the validator needs sasl.oauthbearer.jwks.endpoint.url",
                    s.name("oauthbearer.sasl.server.callback.handler.class")
                ))
            }
            (Some(UNSECURED_HANDLER), _) | (None, None) => {
                let jaas = match get("sasl.jaas.config") {
                    Some(text) => parse_jaas(text).map_err(|e| format!("{}: {e}", s.name("oauthbearer.sasl.jaas.config")))?,
                    None => Default::default(),
                };
                let opt = |k: &str, default: &str| jaas.get(k).map(|v| v.trim()).filter(|v| !v.is_empty()).unwrap_or(default).to_string();
                let skew = opt("unsecuredValidatorAllowableClockSkewMs", "0");
                let skew_ms = skew
                    .parse::<i64>()
                    .ok()
                    .filter(|v| *v >= 0)
                    .ok_or_else(|| format!("Allowable clock skew millis must not be negative: {skew}"))?;
                return Ok(Validator::Unsecured(Unsecured {
                    principal_claim: opt("unsecuredValidatorPrincipalClaimName", "sub"),
                    scope_claim: opt("unsecuredValidatorScopeClaimName", "scope"),
                    required_scope: opt("unsecuredValidatorRequiredScope", "")
                        .split([' ', ','])
                        .filter(|v| !v.is_empty())
                        .map(String::from)
                        .collect(),
                    skew_ms,
                }));
            }
            _ => {}
        }
        let url = jwks.unwrap_or_default();
        let file = match url.strip_prefix("file:") {
            Some(rest) => PathBuf::from(rest.trim_start_matches("//")),
            None if url.contains("://") => {
                return Err(format!(
                    "{}: `{url}`: Karst reads the JWK set from a file (a file: URL or a path), kept current by whatever fetches it",
                    s.name("sasl.oauthbearer.jwks.endpoint.url")
                ))
            }
            None => PathBuf::from(url),
        };
        let keys = Reloaded::new(vec![file.clone()], "OAUTHBEARER JWK set", || read_jwks(&file))
            .map_err(|e| format!("{}: {e}", s.name("sasl.oauthbearer.jwks.endpoint.url")))?;
        let skew = get("sasl.oauthbearer.clock.skew.seconds").unwrap_or("30").trim();
        let skew_s =
            skew.parse().map_err(|_| format!("{}: `{skew}` is not a number of seconds", s.name("sasl.oauthbearer.clock.skew.seconds")))?;
        let claim = |key: &str, default: &str| get(key).map(str::trim).filter(|v| !v.is_empty()).unwrap_or(default).to_string();
        Ok(Validator::Jwks(Jwks {
            file,
            keys,
            audience: get("sasl.oauthbearer.expected.audience")
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(String::from)
                .collect(),
            issuer: get("sasl.oauthbearer.expected.issuer").map(str::trim).filter(|v| !v.is_empty()).map(String::from),
            sub_claim: claim("sasl.oauthbearer.sub.claim.name", "sub"),
            scope_claim: claim("sasl.oauthbearer.scope.claim.name", "scope"),
            skew_s,
        }))
    }

    /// Whether tokens are checked against keys (false: the unsecured development mode).
    pub fn secured(&self) -> bool {
        matches!(self, Validator::Jwks(_))
    }

    /// Checks a bearer token at `now_ms` (milliseconds since the epoch).
    pub fn validate(&self, token: &str, now_ms: i64) -> Result<Verified, Refusal> {
        match self {
            Validator::Unsecured(u) => u.validate(token, now_ms),
            Validator::Jwks(j) => j.validate(token),
        }
    }
}

fn b64_json(part: &str, what: &str) -> Result<Map<String, Value>, Refusal> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|e| Refusal::invalid(format!("the {what} is not base64url: {e}")))?;
    serde_json::from_slice(&bytes).map_err(|e| Refusal::invalid(format!("the {what} is not a JSON object: {e}")))
}

/// A scope claim: a space-separated string or a list of strings.
fn scopes(claims: &Map<String, Value>, name: &str) -> Result<BTreeSet<String>, Refusal> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(BTreeSet::new()),
        Some(Value::String(s)) => Ok(s.split(' ').filter(|v| !v.is_empty()).map(String::from).collect()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(String::from).ok_or_else(|| Refusal::invalid(format!("the {name} claim holds a non-string"))))
            .collect(),
        Some(_) => Err(Refusal::invalid(format!("the {name} claim is neither a string nor a list"))),
    }
}

fn number(claims: &Map<String, Value>, name: &str) -> Result<Option<f64>, Refusal> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or_else(|| Refusal::invalid(format!("the {name} claim is not a number"))),
    }
}

fn principal(claims: &Map<String, Value>, name: &str) -> Result<String, Refusal> {
    match claims.get(name) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        Some(Value::String(_)) | None => Err(Refusal::invalid(format!("No principal name in JWT claim: {name}"))),
        Some(_) => Err(Refusal::invalid(format!("the {name} claim is not a string"))),
    }
}

impl Unsecured {
    fn validate(&self, token: &str, now_ms: i64) -> Result<Verified, Refusal> {
        if token.contains("..") {
            return Err(Refusal::invalid("Malformed compact serialization contains '..'"));
        }
        let parts: Vec<&str> = token.split('.').collect();
        let [header, claims, signature] = parts[..] else {
            return Err(Refusal::invalid("an unsecured JWS has three parts"));
        };
        let header = b64_json(header, "JWS header")?;
        if header.get("alg").and_then(Value::as_str) != Some("none") {
            return Err(Refusal::invalid("Unsecured JWS must have 'none' for an algorithm"));
        }
        if !signature.is_empty() {
            return Err(Refusal::invalid("Unsecured JWS must not contain a digital signature"));
        }
        let claims = b64_json(claims, "JWT claims")?;
        let exp = number(&claims, "exp")?.ok_or_else(|| Refusal::invalid("No expiration time in JWT"))?;
        let who = principal(&claims, &self.principal_claim)?;
        let exp_ms = (exp * 1000.0) as i64;
        if let Some(iat) = number(&claims, "iat")? {
            if (iat * 1000.0) as i64 > now_ms + self.skew_ms {
                return Err(Refusal::invalid(format!(
                    "The Issued At value ({iat} seconds) was after the indicated time ({now_ms} ms) plus allowable clock skew ({} ms)",
                    self.skew_ms
                )));
            }
            if exp <= iat {
                return Err(Refusal::invalid(format!(
                    "The Expiration Time time ({exp} seconds) was not after the Issued At time ({iat} seconds)"
                )));
            }
        }
        if now_ms - self.skew_ms >= exp_ms {
            return Err(Refusal::invalid(format!(
                "The indicated time ({now_ms} ms) minus allowable clock skew ({} ms) was on or after the Expiration Time value ({exp} seconds)",
                self.skew_ms
            )));
        }
        let have = scopes(&claims, &self.scope_claim)?;
        if let Some(missing) = self.required_scope.iter().find(|s| !have.contains(*s)) {
            return Err(Refusal {
                status: "insufficient_scope",
                scope: Some(self.required_scope.join(" ")),
                why: format!("The provided scope ({have:?}) was missing a required scope ({missing})"),
            });
        }
        Ok(Verified { principal: who, expires_ms: exp_ms })
    }
}

/// The signature algorithms a key set may sign with: never `none`, never a shared secret.
fn asymmetric(alg: Algorithm) -> bool {
    !matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

impl Jwks {
    fn validate(&self, token: &str) -> Result<Verified, Refusal> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| Refusal::invalid(format!("Could not validate the access token: {e}")))?;
        if !asymmetric(header.alg) {
            return Err(Refusal::invalid(format!("Could not validate the access token: {:?} is not a signature algorithm", header.alg)));
        }
        let set = self.keys.get(|| read_jwks(&self.file));
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.skew_s;
        validation.validate_nbf = true;
        validation.required_spec_claims = ["exp".to_string()].into_iter().collect();
        if self.audience.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&self.audience);
            validation.required_spec_claims.insert("aud".into());
        }
        if let Some(iss) = &self.issuer {
            validation.set_issuer(&[iss]);
            validation.required_spec_claims.insert("iss".into());
        }
        let candidates = set.keys.iter().filter(|k| match (&header.kid, &k.common.key_id) {
            (Some(want), Some(have)) => want == have,
            (Some(_), None) => false,
            (None, _) => true,
        });
        let mut last = format!("no key in {} matches the token's key id {:?}", self.file.display(), header.kid);
        for jwk in candidates {
            // A key that names its algorithm verifies that one only.
            if jwk.common.key_algorithm.is_some_and(|a| format!("{a:?}") != format!("{:?}", header.alg)) {
                continue;
            }
            let Ok(key) = DecodingKey::from_jwk(jwk) else { continue };
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation) {
                Ok(data) => return self.claims(&data.claims),
                Err(e) => last = e.to_string(),
            }
        }
        Err(Refusal::invalid(format!("Could not validate the access token: {last}")))
    }

    fn claims(&self, claims: &Map<String, Value>) -> Result<Verified, Refusal> {
        scopes(claims, &self.scope_claim)?;
        let exp = number(claims, "exp")?.ok_or_else(|| Refusal::invalid("exp value must be non-null"))?;
        number(claims, "iat")?.ok_or_else(|| Refusal::invalid("iat value must be non-null"))?;
        let who = principal(claims, &self.sub_claim)?;
        Ok(Verified { principal: who, expires_ms: (exp * 1000.0) as i64 })
    }
}

/// The client's first message (RFC 7628 §3.1, Kafka's `OAuthBearerClientInitialResponse`):
/// `n,[a=<authzid>],^A<key>=<value>^A...^A^A` with `auth=Bearer <token>` among the pairs.
/// The authorization id and the token.
pub fn initial_response(bytes: &[u8]) -> Result<(String, String), String> {
    const BAD: &str = "Invalid OAUTHBEARER client first message";
    let text = std::str::from_utf8(bytes).map_err(|_| BAD.to_string())?;
    let rest = text.strip_prefix("n,").ok_or(BAD)?;
    let (authzid, rest) = match rest.strip_prefix("a=") {
        Some(r) => {
            let (id, r) = r.split_once(',').ok_or(BAD)?;
            let name_ok = !id.is_empty() && id.bytes().all(|b| (0x01..=0x7F).contains(&b) && b != b',');
            if !name_ok || id.split('=').skip(1).any(|esc| !(esc.starts_with("2C") || esc.starts_with("3D"))) {
                return Err(BAD.into());
            }
            (id.to_string(), r)
        }
        None => (String::new(), rest.strip_prefix(',').ok_or(BAD)?),
    };
    let pairs = rest.strip_prefix('\u{1}').and_then(|r| r.strip_suffix('\u{1}')).ok_or(BAD)?;
    if !pairs.is_empty() && !pairs.ends_with('\u{1}') {
        return Err(BAD.into());
    }
    let mut token = None;
    for pair in pairs.split_terminator('\u{1}') {
        let (key, value) = pair.split_once('=').ok_or(BAD)?;
        let value_ok = !value.is_empty() && value.bytes().all(|b| (0x21..=0x7E).contains(&b) || b" \t\r\n".contains(&b));
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphabetic()) || !value_ok {
            return Err(BAD.into());
        }
        if key == "auth" {
            let (scheme, t) = value.split_once(' ').ok_or("Invalid OAuth token provided")?;
            let t = t.trim_start_matches(' ');
            let body = t.trim_end_matches('=');
            let t_ok = !body.is_empty() && body.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_~+/.".contains(&b));
            if !scheme.eq_ignore_ascii_case("bearer") || !t_ok {
                return Err("Invalid OAuth token provided".into());
            }
            token = Some(t.to_string());
        }
    }
    let token = token.ok_or("Invalid OAUTHBEARER client first message: no auth")?;
    Ok((authzid, token))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn unsecured_token(claims: &serde_json::Value) -> String {
        let e = |v: &serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        format!("{}.{}.", e(&serde_json::json!({"alg": "none"})), e(claims))
    }

    fn unsecured(options: &str) -> Validator {
        let mut all = BTreeMap::new();
        if !options.is_empty() {
            all.insert(
                "listener.name.oauth.oauthbearer.sasl.jaas.config".to_string(),
                format!("org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required {options};"),
            );
        }
        Validator::from(&Settings::new(&all, "OAUTH")).expect("validator")
    }

    #[test]
    fn the_first_message_is_parsed_as_kafka_does() {
        let (id, token) = initial_response(b"n,,\x01auth=Bearer abc.def.\x01\x01").expect("parsed");
        assert_eq!((id.as_str(), token.as_str()), ("", "abc.def."));
        let (id, token) =
            initial_response(b"n,a=alice,\x01host=x\x01auth=Bearer t0k=\x01traceId=42\x01\x01").expect("with authzid and extensions");
        assert_eq!((id.as_str(), token.as_str()), ("alice", "t0k="));
        for bad in [
            &b""[..],
            b"\x01",
            b"y,,\x01auth=Bearer t\x01\x01",
            b"n,,\x01auth=Bearer t\x01",
            b"n,,\x01\x01",
            b"n,,\x01auth=Basic dXNlcg\x01\x01",
            b"n,,\x01auth=Bearer t!t\x01\x01",
            b"n,,\x01=x\x01auth=Bearer t\x01\x01",
            b"n,a=,\x01auth=Bearer t\x01\x01",
            b"n,a=x=41,\x01auth=Bearer t\x01\x01",
            b"n,,\x01auth=Bearer \xff\x01\x01",
        ] {
            assert!(initial_response(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn unsecured_tokens_need_alg_none_an_expiry_and_a_principal() {
        let v = unsecured("");
        let now = 1_700_000_000_000i64;
        let ok = unsecured_token(&serde_json::json!({"sub": "alice", "exp": 1_700_000_100, "iat": 1_699_999_900}));
        assert_eq!(v.validate(&ok, now), Ok(Verified { principal: "alice".into(), expires_ms: 1_700_000_100_000 }));
        let expired = unsecured_token(&serde_json::json!({"sub": "alice", "exp": 1_699_999_999}));
        assert!(v.validate(&expired, now).is_err());
        for claims in [
            serde_json::json!({"sub": "alice"}),
            serde_json::json!({"exp": 1_700_000_100}),
            serde_json::json!({"sub": " ", "exp": 1_700_000_100}),
        ] {
            assert!(v.validate(&unsecured_token(&claims), now).is_err(), "{claims}");
        }
        let e = |v: &serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let signed =
            format!("{}.{}.c2ln", e(&serde_json::json!({"alg": "none"})), e(&serde_json::json!({"sub": "a", "exp": 1_700_000_100})));
        assert!(v.validate(&signed, now).is_err(), "a signature");
        let hs = format!("{}.{}.", e(&serde_json::json!({"alg": "HS256"})), e(&serde_json::json!({"sub": "a", "exp": 1_700_000_100})));
        assert!(v.validate(&hs, now).is_err(), "not alg none");
        for garbage in ["", ".", "..", "a.b.c.d", "!!.??.", "e30.e30"] {
            assert_eq!(v.validate(garbage, now).map_err(|r| r.status), Err("invalid_token"), "{garbage}");
        }
    }

    #[test]
    fn unsecured_options_name_the_claim_and_the_required_scope() {
        let v = unsecured(
            r#"unsecuredValidatorPrincipalClaimName="user" unsecuredValidatorRequiredScope="kafka" unsecuredValidatorAllowableClockSkewMs="5000""#,
        );
        let now = 1_700_000_000_000i64;
        let t = unsecured_token(&serde_json::json!({"user": "bob", "exp": 1_699_999_998, "scope": "kafka other"}));
        assert_eq!(v.validate(&t, now).map(|v| v.principal), Ok("bob".into()), "within the clock skew");
        let t = unsecured_token(&serde_json::json!({"user": "bob", "exp": 1_700_000_100, "scope": ["other"]}));
        let refused = v.validate(&t, now).expect_err("scope missing");
        assert_eq!(refused.json(), r#"{"status":"insufficient_scope", "scope":"kafka"}"#);
        assert_eq!(Refusal::invalid("x").json(), r#"{"status":"invalid_token"}"#);
    }

    /// An ES256 key pair: the JWK set file (key id `k1`) and the signing key.
    fn es256(dir: &std::path::Path, kid: &str) -> (PathBuf, jsonwebtoken::EncodingKey) {
        use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("key");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).expect("pair");
        let point = pair.public_key().as_ref();
        let e = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let jwks = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "x": e(&point[1..33]), "y": e(&point[33..])}]});
        let file = dir.join(format!("{kid}.jwks"));
        std::fs::write(&file, jwks.to_string()).expect("jwks");
        (file, jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref()))
    }

    fn sign(key: &jsonwebtoken::EncodingKey, kid: &str, claims: &serde_json::Value) -> String {
        let mut header = jsonwebtoken::Header::new(Algorithm::ES256);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, claims, key).expect("signed")
    }

    #[test]
    fn signed_tokens_are_checked_against_the_jwk_set() {
        let dir = tempfile::tempdir().expect("dir");
        let (file, key) = es256(dir.path(), "k1");
        let (_, other) = es256(dir.path(), "k2");
        let all: BTreeMap<String, String> = [
            ("listener.name.oauth.oauthbearer.sasl.oauthbearer.jwks.endpoint.url", format!("file://{}", file.display())),
            ("sasl.oauthbearer.expected.audience", "karst".to_string()),
            ("sasl.oauthbearer.expected.issuer", "https://issuer.test".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let v = Validator::from(&Settings::new(&all, "OAUTH")).expect("validator");
        assert!(v.secured());
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64;
        let good = serde_json::json!({"sub": "alice", "exp": now + 600, "iat": now, "aud": "karst", "iss": "https://issuer.test"});
        assert_eq!(v.validate(&sign(&key, "k1", &good), 0).map(|t| t.principal), Ok("alice".into()));
        let mut refused = vec![
            ("another key", sign(&other, "k1", &good)),
            ("an unknown key id", sign(&key, "k9", &good)),
            ("an unsecured token", unsecured_token(&good)),
        ];
        for (what, patch) in [
            ("expired", serde_json::json!({"exp": now - 120})),
            ("no iat", serde_json::json!({"iat": null})),
            ("no sub", serde_json::json!({"sub": null})),
            ("another audience", serde_json::json!({"aud": "elsewhere"})),
            ("another issuer", serde_json::json!({"iss": "https://evil.test"})),
            ("not yet valid", serde_json::json!({"nbf": now + 600})),
        ] {
            let mut claims = good.clone();
            for (k, val) in patch.as_object().expect("object") {
                if val.is_null() {
                    claims.as_object_mut().expect("object").remove(k);
                } else {
                    claims[k] = val.clone();
                }
            }
            refused.push((what, sign(&key, "k1", &claims)));
        }
        let t = sign(&key, "k1", &good);
        let (head, rest) = t.split_once('.').expect("three parts");
        let forged_claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
            serde_json::json!({"sub": "admin", "exp": now + 600, "iat": now, "aud": "karst", "iss": "https://issuer.test"}).to_string(),
        );
        refused.push(("claims swapped under the signature", format!("{head}.{forged_claims}.{}", rest.split_once('.').expect("sig").1)));
        for (what, token) in refused {
            assert_eq!(v.validate(&token, 0).map_err(|r| r.status), Err("invalid_token"), "{what}");
        }
        // A rotated key set is read again from the file.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let (rotated, key2) = es256(dir.path(), "k2");
        std::fs::copy(&rotated, &file).expect("rotated");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while v.validate(&sign(&key2, "k2", &good), 0).is_err() {
            assert!(std::time::Instant::now() < deadline, "the new key set was not taken");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert!(v.validate(&sign(&key, "k1", &good), 0).is_err(), "the retired key");
    }

    #[test]
    fn bad_validator_settings_are_refused_naming_the_key() {
        let with = |pairs: &[(&str, &str)]| {
            let all: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            Validator::from(&Settings::new(&all, "OAUTH")).map(|_| ())
        };
        assert!(with(&[("sasl.oauthbearer.jwks.endpoint.url", "/no/such/file.jwks")])
            .unwrap_err()
            .contains("sasl.oauthbearer.jwks.endpoint.url"));
        assert!(with(&[("sasl.oauthbearer.jwks.endpoint.url", "https://idp.test/keys")]).unwrap_err().contains("from a file"));
        assert!(with(&[("listener.name.oauth.oauthbearer.sasl.server.callback.handler.class", "com.example.Mine")]).is_err());
        assert!(with(&[("listener.name.oauth.oauthbearer.sasl.server.callback.handler.class", SECURED_HANDLERS[0])]).is_err());
        let dir = tempfile::tempdir().expect("dir");
        let junk = dir.path().join("junk.jwks");
        std::fs::write(&junk, "{\"keys\": [{\"kty\": \"EC\"}]}").expect("junk");
        assert!(with(&[("sasl.oauthbearer.jwks.endpoint.url", junk.to_str().expect("utf-8"))]).is_err());
    }

    proptest::proptest! {
        /// Hostile first messages and tokens are refused, never a panic.
        #[test]
        fn arbitrary_first_messages_and_tokens_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300), text in "[ -~]{0,200}") {
            let _ = initial_response(&bytes);
            let _ = initial_response(format!("n,,\x01auth=Bearer {text}\x01\x01").as_bytes());
            let v = unsecured("");
            let _ = v.validate(&text, 0);
            let _ = v.validate(&format!("{text}.{text}."), 0);
        }
    }
}
