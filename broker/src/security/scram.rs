//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677), the server side, as Kafka's
//! `ScramSaslServer`: credentials are salted keys (the password is never stored), the
//! client proves it knows the password and the server proves it knows the salted
//! keys. Kafka's bounds on iterations (4096..=16384) apply to stored credentials.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::{digest, hmac, pbkdf2, rand::SecureRandom};
use serde::{Deserialize, Serialize};

/// Kafka's bounds on a SCRAM credential's iterations (`ScramMechanism`).
pub const MIN_ITERATIONS: i32 = 4096;
pub const MAX_ITERATIONS: i32 = 16384;

/// The hash of a SCRAM mechanism; its number is the one Kafka's
/// AlterUserScramCredentials and DescribeUserScramCredentials use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ScramHash {
    Sha256,
    Sha512,
}

impl ScramHash {
    pub fn from_type(t: i8) -> Option<ScramHash> {
        match t {
            1 => Some(ScramHash::Sha256),
            2 => Some(ScramHash::Sha512),
            _ => None,
        }
    }

    pub fn type_id(self) -> i8 {
        match self {
            ScramHash::Sha256 => 1,
            ScramHash::Sha512 => 2,
        }
    }

    pub fn mechanism(self) -> &'static str {
        match self {
            ScramHash::Sha256 => "SCRAM-SHA-256",
            ScramHash::Sha512 => "SCRAM-SHA-512",
        }
    }

    fn hmac(self) -> hmac::Algorithm {
        match self {
            ScramHash::Sha256 => hmac::HMAC_SHA256,
            ScramHash::Sha512 => hmac::HMAC_SHA512,
        }
    }

    fn digest(self) -> &'static digest::Algorithm {
        match self {
            ScramHash::Sha256 => &digest::SHA256,
            ScramHash::Sha512 => &digest::SHA512,
        }
    }

    fn pbkdf2(self) -> pbkdf2::Algorithm {
        match self {
            ScramHash::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            ScramHash::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }

    fn mac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        hmac::sign(&hmac::Key::new(self.hmac(), key), data).as_ref().to_vec()
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        digest::digest(self.digest(), data).as_ref().to_vec()
    }

    /// `Hi(password, salt, i)`: what Kafka's admin client sends as the salted password.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0u8; self.digest().output_len()];
        let i = std::num::NonZeroU32::new(iterations.max(1)).unwrap_or(std::num::NonZeroU32::MIN);
        pbkdf2::derive(self.pbkdf2(), i, salt, password, &mut out);
        out
    }
}

/// A stored SCRAM credential (Kafka's `ScramCredential`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: i32,
}

impl Credential {
    /// From a salted password (AlterUserScramCredentials' upsertion).
    pub fn from_salted(hash: ScramHash, salt: &[u8], salted: &[u8], iterations: i32) -> Credential {
        let client_key = hash.mac(salted, b"Client Key");
        Credential { salt: salt.to_vec(), stored_key: hash.hash(&client_key), server_key: hash.mac(salted, b"Server Key"), iterations }
    }
}

/// How an exchange failed; the text goes into SaslAuthenticate's error message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramError(pub String);

/// One server-side exchange: the client's first message, then its final one.
pub struct ScramServer {
    hash: ScramHash,
    state: State,
}

enum State {
    Start,
    /// Waiting for the client's final message.
    SentFirst {
        user: String,
        gs2_header: String,
        nonce: String,
        auth_prefix: String,
        credential: Credential,
    },
    Done,
}

fn nonce() -> String {
    let mut b = [0u8; 24];
    // The system's randomness failing is not something a client can cause.
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    B64.encode(b).replace(['+', '/', '='], "x")
}

/// RFC 5802's `saslname`: `=2C` is `,` and `=3D` is `=`; any other `=` is invalid.
fn decode_name(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return None,
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
}

fn attr(part: &str, name: char) -> Option<&str> {
    let mut chars = part.chars();
    (chars.next() == Some(name) && chars.next() == Some('=')).then(|| &part[2..])
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl ScramServer {
    pub fn new(hash: ScramHash) -> ScramServer {
        ScramServer { hash, state: State::Start }
    }

    /// The user named in the client's first message, once it has been read.
    pub fn user(&self) -> Option<&str> {
        match &self.state {
            State::SentFirst { user, .. } => Some(user),
            _ => None,
        }
    }

    /// Reads the client's first message and answers the server's; `lookup` finds the
    /// named user's credential.
    pub fn first(&mut self, msg: &[u8], lookup: impl FnOnce(&str) -> Option<Credential>) -> Result<Vec<u8>, ScramError> {
        if !matches!(self.state, State::Start) {
            return Err(ScramError("unexpected SCRAM message".into()));
        }
        let bad = || ScramError("invalid SCRAM client-first message".into());
        let text = std::str::from_utf8(msg).map_err(|_| bad())?;
        // gs2-header: "n," or "y," (no channel binding), an optional "a=authzid", ",".
        let mut parts = text.splitn(3, ',');
        let cbind = parts.next().ok_or_else(bad)?;
        let authzid = parts.next().ok_or_else(bad)?;
        let bare = parts.next().ok_or_else(bad)?;
        match cbind {
            "n" | "y" => {}
            p if p.starts_with("p=") => return Err(ScramError("channel binding is not supported".into())),
            _ => return Err(bad()),
        }
        let mut fields = bare.split(',');
        let user = fields.next().and_then(|f| attr(f, 'n')).and_then(decode_name).filter(|u| !u.is_empty()).ok_or_else(bad)?;
        let cnonce = fields.next().and_then(|f| attr(f, 'r')).filter(|n| !n.is_empty()).ok_or_else(bad)?;
        for ext in fields {
            // Kafka's one extension, for delegation tokens, which Karst does not have.
            if ext.starts_with("tokenauth=") {
                return Err(ScramError("delegation tokens are not supported".into()));
            }
        }
        if !authzid.is_empty() {
            let az = attr(authzid, 'a').and_then(decode_name).ok_or_else(bad)?;
            if az != user {
                return Err(ScramError(
                    "Authentication failed: Client requested an authorization id that is different from username".into(),
                ));
            }
        }
        if cnonce.chars().any(|c| !c.is_ascii_graphic() || c == ',') || cnonce.len() > 1024 {
            return Err(bad());
        }
        let credential = lookup(&user).ok_or_else(|| ScramError("Authentication failed: Invalid user credentials".into()))?;
        let nonce = format!("{cnonce}{}", nonce());
        let server_first = format!("r={nonce},s={},i={}", B64.encode(&credential.salt), credential.iterations);
        let gs2_header = format!("{cbind},{authzid},");
        let auth_prefix = format!("{bare},{server_first}");
        self.state = State::SentFirst { user, gs2_header, nonce, auth_prefix, credential };
        Ok(server_first.into_bytes())
    }

    /// Reads the client's final message: its proof checked, answers the server's
    /// signature. Any failure ends the exchange.
    pub fn last(&mut self, msg: &[u8]) -> Result<Vec<u8>, ScramError> {
        let State::SentFirst { gs2_header, nonce, auth_prefix, credential, .. } = std::mem::replace(&mut self.state, State::Done) else {
            return Err(ScramError("unexpected SCRAM message".into()));
        };
        let bad = || ScramError("invalid SCRAM client-final message".into());
        let text = std::str::from_utf8(msg).map_err(|_| bad())?;
        let (without_proof, proof) = text.rsplit_once(",p=").ok_or_else(bad)?;
        let mut fields = without_proof.split(',');
        let cbind = fields.next().and_then(|f| attr(f, 'c')).ok_or_else(bad)?;
        let r = fields.next().and_then(|f| attr(f, 'r')).ok_or_else(bad)?;
        if B64.decode(cbind).ok().as_deref() != Some(gs2_header.as_bytes()) {
            return Err(ScramError("Invalid channel binding".into()));
        }
        // As Kafka's server: the final nonce must end with the one the server sent.
        // librdkafka before 2.1 sends its own nonce in front of it again.
        if !r.ends_with(nonce.as_str()) {
            return Err(ScramError("Invalid client nonce in the final client message.".into()));
        }
        let proof = B64.decode(proof).map_err(|_| bad())?;
        let auth_message = format!("{auth_prefix},{without_proof}");
        let h = self.hash;
        let client_signature = h.mac(&credential.stored_key, auth_message.as_bytes());
        if proof.len() != client_signature.len() {
            return Err(ScramError("Authentication failed: Invalid user credentials".into()));
        }
        let client_key: Vec<u8> = proof.iter().zip(&client_signature).map(|(a, b)| a ^ b).collect();
        if !ct_eq(&h.hash(&client_key), &credential.stored_key) {
            return Err(ScramError("Authentication failed: Invalid user credentials".into()));
        }
        let server_signature = h.mac(&credential.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)).into_bytes())
    }
}

/// The client side, for tests and for brokers authenticating to each other.
pub struct ScramClient {
    hash: ScramHash,
    password: String,
    cnonce: String,
    first_bare: String,
    expected_server_signature: Option<Vec<u8>>,
}

impl ScramClient {
    pub fn new(hash: ScramHash, user: &str, password: &str) -> ScramClient {
        let cnonce = nonce();
        let first_bare = format!("n={},r={cnonce}", user.replace('=', "=3D").replace(',', "=2C"));
        ScramClient { hash, password: password.into(), cnonce, first_bare, expected_server_signature: None }
    }

    pub fn first(&self) -> Vec<u8> {
        format!("n,,{}", self.first_bare).into_bytes()
    }

    pub fn last(&mut self, server_first: &[u8]) -> Result<Vec<u8>, ScramError> {
        let bad = || ScramError("invalid SCRAM server-first message".into());
        let text = std::str::from_utf8(server_first).map_err(|_| bad())?;
        let mut f = text.split(',');
        let nonce = f.next().and_then(|x| attr(x, 'r')).filter(|n| n.starts_with(&self.cnonce)).ok_or_else(bad)?;
        let salt = f.next().and_then(|x| attr(x, 's')).and_then(|s| B64.decode(s).ok()).ok_or_else(bad)?;
        let iterations: u32 = f.next().and_then(|x| attr(x, 'i')).and_then(|i| i.parse().ok()).ok_or_else(bad)?;
        let h = self.hash;
        let salted = h.salted_password(self.password.as_bytes(), &salt, iterations);
        let client_key = h.mac(&salted, b"Client Key");
        let stored_key = h.hash(&client_key);
        let without_proof = format!("c={},r={nonce}", B64.encode("n,,"));
        let auth_message = format!("{},{text},{without_proof}", self.first_bare);
        let signature = h.mac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
        self.expected_server_signature = Some(h.mac(&h.mac(&salted, b"Server Key"), auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Checks the server's final message: it proves the server holds the credential.
    pub fn verify(&self, server_final: &[u8]) -> bool {
        let text = String::from_utf8_lossy(server_final);
        let got = text.strip_prefix("v=").and_then(|v| B64.decode(v).ok());
        matches!((got, &self.expected_server_signature), (Some(g), Some(e)) if ct_eq(&g, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credential(hash: ScramHash, password: &str) -> Credential {
        let salt = b"0123456789abcdef";
        Credential::from_salted(hash, salt, &hash.salted_password(password.as_bytes(), salt, 4096), 4096)
    }

    #[test]
    fn a_client_with_the_password_authenticates_and_checks_the_server() {
        for hash in [ScramHash::Sha256, ScramHash::Sha512] {
            let stored = credential(hash, "secret");
            let mut client = ScramClient::new(hash, "al,i=ce", "secret");
            let mut server = ScramServer::new(hash);
            let server_first = server.first(&client.first(), |u| (u == "al,i=ce").then(|| stored.clone())).expect("first");
            assert_eq!(server.user(), Some("al,i=ce"));
            let client_final = client.last(&server_first).expect("client final");
            let server_final = server.last(&client_final).expect("proof accepted");
            assert!(client.verify(&server_final), "{hash:?}: the server knows the keys");
        }
    }

    #[test]
    fn wrong_passwords_nonces_and_garbage_are_refused() {
        let hash = ScramHash::Sha256;
        let stored = credential(hash, "secret");
        let run = |password: &str, tamper: &dyn Fn(Vec<u8>) -> Vec<u8>| {
            let mut client = ScramClient::new(hash, "alice", password);
            let mut server = ScramServer::new(hash);
            let first = server.first(&client.first(), |_| Some(stored.clone())).expect("first");
            server.last(&tamper(client.last(&first).expect("final")))
        };
        assert!(run("secret", &|m| m).is_ok());
        assert!(run("wrong", &|m| m).is_err(), "wrong password");
        let other_nonce = |m: Vec<u8>| String::from_utf8(m).unwrap().replacen(",p=", "x,p=", 1).into_bytes();
        assert_eq!(run("secret", &other_nonce).unwrap_err().0, "Invalid client nonce in the final client message.");
        // A nonce with something in front still ends with the server's (old
        // librdkafka does that), but the proof no longer covers the message.
        let prefixed = |m: Vec<u8>| String::from_utf8(m).unwrap().replacen(",r=", ",r=x", 1).into_bytes();
        assert!(run("secret", &prefixed).is_err());
        let short_proof = |m: Vec<u8>| {
            let s = String::from_utf8(m).unwrap();
            format!("{},p=AAAA", s.rsplit_once(",p=").unwrap().0).into_bytes()
        };
        assert!(run("secret", &short_proof).is_err());
        let mut server = ScramServer::new(hash);
        assert!(server.first(b"n,,n=bob,r=abc", |_| None).is_err(), "unknown user");
        for garbage in
            [&b""[..], b"n", b"n,,", b"x,,n=a,r=b", b"p=tls,,n=a,r=b", b"n,,n=a=4,r=b", b"n,,r=b", b"n,a=eve,n=a,r=b", b"\xff\xfe"]
        {
            let mut server = ScramServer::new(hash);
            assert!(server.first(garbage, |_| Some(stored.clone())).is_err(), "{garbage:?}");
        }
        let mut server = ScramServer::new(hash);
        assert!(server.last(b"c=biws,r=x,p=AAAA").is_err(), "final before first");
    }

    #[test]
    fn salted_passwords_match_rfc_7677s_example() {
        // RFC 7677, section 3: user "user", password "pencil", 4096 iterations.
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let salted = ScramHash::Sha256.salted_password(b"pencil", &salt, 4096);
        let c = Credential::from_salted(ScramHash::Sha256, &salt, &salted, 4096);
        let auth = "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let v = B64.encode(ScramHash::Sha256.mac(&c.server_key, auth.as_bytes()));
        assert_eq!(v, "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    }
}
