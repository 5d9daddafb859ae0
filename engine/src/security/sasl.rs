//! SASL on the broker side, through rsasl: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 and OAUTHBEARER.
//!
//! rsasl runs the mechanisms (message parsing, SCRAM proofs and signatures); this module
//! supplies what they ask for through one callback: PLAIN passwords from
//! `plain.sasl.jaas.config`, stored SCRAM keys from [`ScramStore`], and the JWT validator for
//! OAUTHBEARER. The outcome of an exchange is an [`Authenticated`] user or a reason for the
//! failure; the reason is logged and never holds a password or a token.
//!
//! One known incompatibility, kept rather than worked around: librdkafka before 2.x sends
//! `r=<client nonce><client nonce><server nonce>` in its SCRAM client-final message. Kafka's
//! server only checks that the nonce ends with the server-first nonce and so accepts it; rsasl
//! checks the nonce exactly as RFC 5802 asks and fails the exchange. Accepting it would mean
//! computing the proof over the client's own message, which rsasl's server does not offer, and
//! hand-rolling SCRAM is what this module avoids.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{bail, Result};
use rsasl::callback::{Context, Request, SessionCallback, SessionData};
use rsasl::mechanisms::oauthbearer::properties::OAuthBearerValidate;
use rsasl::mechanisms::scram::properties::ScramStoredPassword;
use rsasl::prelude::{Mechname, SASLConfig, SASLServer, Session, SessionError, State, Validation};
use rsasl::property::{AuthId, AuthzId, OAuthBearerToken, Password};
use rsasl::validate::{Validate, ValidationError};
use subtle::ConstantTimeEq;

use super::oauth::OAuthValidator;
use super::scram::{ScramMechanism, ScramStore};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    ScramSha256,
    ScramSha512,
    OAuthBearer,
}

impl Mechanism {
    pub fn parse(name: &str) -> Option<Mechanism> {
        Some(match name {
            "PLAIN" => Mechanism::Plain,
            "SCRAM-SHA-256" => Mechanism::ScramSha256,
            "SCRAM-SHA-512" => Mechanism::ScramSha512,
            "OAUTHBEARER" => Mechanism::OAuthBearer,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
            Mechanism::OAuthBearer => "OAUTHBEARER",
        }
    }
}

/// The login a broker uses to reach the others over a SASL inter-broker listener (Kafka's
/// `sasl.mechanism.inter.broker.protocol`, and the `username` / `password` options of that
/// mechanism's JAAS config on the inter-broker listener).
#[derive(Clone)]
pub struct ClientLogin {
    pub mechanism: Mechanism,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for ClientLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        write!(f, "{} as {}", self.mechanism.name(), self.username)
    }
}

impl ClientLogin {
    /// `username="..."` and `password="..."` from Kafka's JAAS syntax, e.g.
    /// `org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="admin-secret";`.
    pub fn from_jaas(mechanism: Mechanism, text: &str) -> Result<ClientLogin> {
        let option = |name: &str| {
            let pattern = regex::Regex::new(&format!(r#"(?:^|\s){name}\s*=\s*"((?:[^"\\]|\\.)*)""#)).expect("valid pattern");
            pattern.captures(text).map(|c| c[1].replace("\\\"", "\"").replace("\\\\", "\\"))
        };
        match (option("username"), option("password")) {
            (Some(username), Some(password)) => Ok(ClientLogin { mechanism, username, password }),
            _ => bail!("it names no username=\"...\" and password=\"...\" for this broker to log in to the others with"),
        }
    }

    /// rsasl's client session for this login.
    pub fn start(&self) -> Result<Session> {
        let config =
            SASLConfig::with_credentials(None, self.username.clone(), self.password.clone()).map_err(|e| anyhow::anyhow!("SASL client configuration: {e}"))?;
        let name = Mechname::parse(self.mechanism.name().as_bytes()).expect("mechanism names are valid");
        rsasl::prelude::SASLClient::new(config).start_suggested(&[name]).map_err(|e| anyhow::anyhow!("starting {}: {e}", self.mechanism.name()))
    }
}

/// PLAIN users from Kafka's JAAS syntax:
/// `org.apache.kafka.common.security.plain.PlainLoginModule required user_alice="alice-secret";`
#[derive(Default, Clone)]
pub struct PlainUsers {
    passwords: HashMap<String, Vec<u8>>,
}

impl PlainUsers {
    pub fn from_jaas(text: &str) -> Result<PlainUsers> {
        let pattern = regex::Regex::new(r#"(?:^|\s)user_([^\s="]+)\s*=\s*"((?:[^"\\]|\\.)*)""#).expect("valid pattern");
        let mut passwords = HashMap::new();
        for captures in pattern.captures_iter(text) {
            let password = captures[2].replace("\\\"", "\"").replace("\\\\", "\\");
            passwords.insert(captures[1].to_string(), password.into_bytes());
        }
        if passwords.is_empty() && text.contains("user_") {
            bail!("user_<name>=\"<password>\" entries do not parse (quote each password with double quotes)");
        }
        Ok(PlainUsers { passwords })
    }

    pub fn is_empty(&self) -> bool {
        self.passwords.is_empty()
    }

    /// Constant time in the password bytes, so a timing probe learns nothing about them.
    fn verify(&self, user: &str, password: &[u8]) -> bool {
        match self.passwords.get(user) {
            Some(expected) => expected.len() == password.len() && bool::from(expected.as_slice().ct_eq(password)),
            None => false,
        }
    }
}

/// A successful authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    /// The user name; the principal is `User:<user>`.
    pub user: String,
    /// When the credential itself expires (an OAUTHBEARER token), in ms since the epoch.
    pub credential_expires_ms: Option<i64>,
}

/// What the callback hands back to the connection: the user, or why the login failed.
pub struct Outcome;
impl Validation for Outcome {
    type Value = Result<Authenticated, String>;
}

struct Callback {
    plain: PlainUsers,
    scram: Arc<ScramStore>,
    oauth: Option<Arc<OAuthValidator>>,
}

impl SessionCallback for Callback {
    fn callback(&self, session_data: &SessionData, context: &Context, request: &mut Request) -> Result<(), SessionError> {
        if request.is::<ScramStoredPassword>() {
            let mechanism = ScramMechanism::parse(session_data.mechanism().mechanism);
            if let (Some(user), Some(mechanism)) = (context.get_ref::<AuthId>(), mechanism) {
                if let Some(c) = self.scram.get(user, mechanism) {
                    request.satisfy::<ScramStoredPassword>(&ScramStoredPassword::new(c.iterations, &c.salt, &c.stored_key, &c.server_key))?;
                }
            }
        } else if request.is::<OAuthBearerValidate>() {
            // The token is checked in `validate`, which can say why it failed; here the
            // mechanism only learns whether to send its error challenge.
            let ok = match (&self.oauth, context.get_ref::<OAuthBearerToken>()) {
                (Some(v), Some(token)) => v.validate(token).is_ok(),
                _ => false,
            };
            if ok {
                request.satisfy::<OAuthBearerValidate>(&Ok(()))?;
            } else {
                let error = rsasl::mechanisms::oauthbearer::properties::OAuthBearerError::new("invalid_token", None, None);
                request.satisfy::<OAuthBearerValidate>(&Err(error))?;
            }
        }
        Ok(())
    }

    fn validate(&self, session_data: &SessionData, context: &Context, validate: &mut Validate<'_>) -> Result<(), ValidationError> {
        let mechanism = session_data.mechanism().mechanism.as_str().to_string();
        let outcome = match Mechanism::parse(&mechanism) {
            Some(Mechanism::Plain) => {
                let user = context.get_ref::<AuthId>().unwrap_or("");
                let password = context.get_ref::<Password>().unwrap_or(b"");
                let authzid = context.get_ref::<AuthzId>().filter(|a| !a.is_empty());
                if authzid.is_some_and(|a| a != user) {
                    Err(format!("user {user:?} may not act as another user"))
                } else if self.plain.verify(user, password) {
                    Ok(Authenticated { user: user.to_string(), credential_expires_ms: None })
                } else {
                    Err(format!("invalid credentials for user {user:?}"))
                }
            }
            Some(Mechanism::ScramSha256 | Mechanism::ScramSha512) => {
                // rsasl calls this only after the client proof checked out against the stored key.
                let user = context.get_ref::<AuthId>().unwrap_or("");
                let authzid = context.get_ref::<AuthzId>().filter(|a| !a.is_empty());
                if authzid.is_some_and(|a| a != user) {
                    Err(format!("user {user:?} may not act as another user"))
                } else {
                    Ok(Authenticated { user: user.to_string(), credential_expires_ms: None })
                }
            }
            Some(Mechanism::OAuthBearer) => match (&self.oauth, context.get_ref::<OAuthBearerToken>()) {
                (Some(v), Some(token)) => v.validate(token).map_err(|e| format!("invalid token: {e}")),
                _ => Err(String::from("no token")),
            },
            None => Err(format!("mechanism {mechanism} is not enabled")),
        };
        validate.with::<Outcome, _>(|| Ok::<_, ValidationError>(outcome))?;
        Ok(())
    }
}

/// The SASL server of one listener.
pub struct SaslServer {
    config: Arc<SASLConfig>,
}

impl SaslServer {
    pub fn new(plain: PlainUsers, scram: Arc<ScramStore>, oauth: Option<OAuthValidator>) -> Result<SaslServer> {
        let callback = Callback { plain, scram, oauth: oauth.map(Arc::new) };
        let config = SASLConfig::builder().with_defaults().with_callback(callback).map_err(|e| anyhow::anyhow!("SASL configuration: {e}"))?;
        Ok(SaslServer { config })
    }

    pub fn start(&self, mechanism: Mechanism) -> Result<Exchange, String> {
        let name = Mechname::parse(mechanism.name().as_bytes()).map_err(|e| e.to_string())?;
        let session = SASLServer::<Outcome>::new(self.config.clone()).start_suggested(name).map_err(|e| e.to_string())?;
        Ok(Exchange { mechanism, session })
    }
}

/// One authentication exchange in progress.
pub struct Exchange {
    pub mechanism: Mechanism,
    session: Session<Outcome>,
}

/// The result of one SaslAuthenticate step.
pub enum Step {
    /// Send these bytes back and wait for the client's next token.
    Continue(Vec<u8>),
    /// Authenticated; send these final bytes (may be empty).
    Done(Vec<u8>, Authenticated),
    /// Failed, for this reason (logged, not sent in full).
    Failed(String),
}

impl Exchange {
    pub fn step(&mut self, input: &[u8]) -> Step {
        let mut out = Vec::new();
        match self.session.step(Some(input), &mut out) {
            Ok(State::Running) => match self.session.validation() {
                // OAUTHBEARER answers a bad token with an error challenge and waits for the
                // client's %x01; Kafka clients accept an immediate failure just as well.
                Some(Err(reason)) => Step::Failed(reason),
                _ => Step::Continue(out),
            },
            Ok(State::Finished(_)) => match self.session.validation() {
                Some(Ok(user)) => Step::Done(out, user),
                Some(Err(reason)) => Step::Failed(reason),
                None => Step::Failed(String::from("the exchange ended without a verdict")),
            },
            Err(e) => Step::Failed(describe_error(&e)),
        }
    }
}

/// rsasl's errors name what failed (an unknown user shows as a missing stored password, a bad
/// proof as an authentication failure) without echoing what the client sent.
fn describe_error(e: &SessionError) -> String {
    let text = e.to_string();
    if text.contains("ScramStoredPassword") || text.to_lowercase().contains("no callback") || text.contains("property") {
        String::from("unknown user or no credential for this mechanism")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::scram::{Change, ScramCredential};
    use rsasl::prelude::SASLClient;

    fn server() -> SaslServer {
        let scram = Arc::new(ScramStore::default());
        for mechanism in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
            let salted = mechanism.salted_password(b"scram-pw", b"pepper", 4096);
            let (stored_key, server_key) = mechanism.derive(&salted);
            let credential = ScramCredential { iterations: 4096, salt: b"pepper".to_vec(), stored_key, server_key };
            assert!(scram.alter(vec![Change::Upsert { user: "alice".into(), mechanism, credential }])[0].is_none());
        }
        let plain =
            PlainUsers::from_jaas(r#"org.apache.kafka.common.security.plain.PlainLoginModule required user_alice="plain-pw" user_bob="b\"q";"#).unwrap();
        SaslServer::new(plain, scram, None).unwrap()
    }

    /// Runs a whole exchange with rsasl's client and returns the server's verdict.
    fn login(server: &SaslServer, mechanism: Mechanism, user: &str, password: &str) -> Result<Authenticated, String> {
        let config = SASLConfig::with_credentials(None, user.to_string(), password.to_string()).unwrap();
        let name = Mechname::parse(mechanism.name().as_bytes()).unwrap();
        let mut client = SASLClient::new(config).start_suggested(&[name]).unwrap();
        let mut exchange = server.start(mechanism).unwrap();
        let mut to_server = Vec::new();
        client.step(None, &mut to_server).unwrap();
        for _ in 0..4 {
            match exchange.step(&to_server) {
                Step::Continue(to_client) => {
                    to_server.clear();
                    client.step(Some(&to_client), &mut to_server).map_err(|e| e.to_string())?;
                }
                Step::Done(_, user) => return Ok(user),
                Step::Failed(reason) => return Err(reason),
            }
        }
        Err(String::from("no verdict after 4 steps"))
    }

    #[test]
    fn plain_checks_the_configured_passwords() {
        let s = server();
        assert_eq!(login(&s, Mechanism::Plain, "alice", "plain-pw").unwrap().user, "alice");
        assert_eq!(login(&s, Mechanism::Plain, "bob", "b\"q").unwrap().user, "bob");
        assert!(login(&s, Mechanism::Plain, "alice", "plain-px").is_err());
        assert!(login(&s, Mechanism::Plain, "carol", "plain-pw").is_err());
    }

    #[test]
    fn scram_checks_the_stored_keys() {
        let s = server();
        for m in [Mechanism::ScramSha256, Mechanism::ScramSha512] {
            assert_eq!(login(&s, m, "alice", "scram-pw").unwrap().user, "alice");
            assert!(login(&s, m, "alice", "wrong").is_err());
            assert!(login(&s, m, "nobody", "scram-pw").is_err());
        }
    }

    #[test]
    fn garbage_tokens_fail_without_panicking() {
        let s = server();
        for m in [Mechanism::Plain, Mechanism::ScramSha256, Mechanism::ScramSha512] {
            for token in [&b""[..], b"\0", b"\0\0\0\0", b"n,,n=,r=", b"p=abc", &[0xff; 64]] {
                let mut exchange = s.start(m).unwrap();
                match exchange.step(token) {
                    Step::Done(_, user) => panic!("{m:?} accepted {token:?} as {user:?}"),
                    Step::Continue(_) | Step::Failed(_) => {}
                }
            }
        }
        // OAUTHBEARER without a validator refuses everything.
        let mut exchange = s.start(Mechanism::OAuthBearer).unwrap();
        assert!(matches!(exchange.step(b"n,,\x01auth=Bearer x.y.z\x01\x01"), Step::Failed(_)));
    }

    #[test]
    fn jaas_without_quotes_is_an_error() {
        assert!(PlainUsers::from_jaas("x required user_alice=secret;").is_err());
        assert!(PlainUsers::from_jaas("x required;").unwrap().is_empty());
    }
}
