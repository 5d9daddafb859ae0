//! Security settings with Kafka's property names, resolved per listener.
//!
//! Every key can be given for one listener with Kafka's prefix `listener.name.<lowercase
//! listener name>.<key>`, which wins over the plain `<key>`. Supported keys:
//!
//! - `listener.security.protocol.map`: `NAME:PROTOCOL,...`; a listener named after a protocol
//!   (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL) needs no entry.
//! - TLS: `ssl.keystore.type=PEM`, `ssl.keystore.location` (one PEM file: private key and
//!   certificate chain) or `ssl.keystore.certificate.chain` + `ssl.keystore.key` (PEM text),
//!   `ssl.truststore.type=PEM`, `ssl.truststore.location` (CA certificates, PEM) or
//!   `ssl.truststore.certificates` (PEM text), `ssl.client.auth=required|requested|none`,
//!   `ssl.principal.mapping.rules`, `ssl.enabled.protocols` (TLSv1.2, TLSv1.3).
//! - SASL: `sasl.enabled.mechanisms` (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER),
//!   `plain.sasl.jaas.config` (usually `listener.name.<l>.plain.sasl.jaas.config`) with
//!   `user_<name>="<password>"` entries for PLAIN, `sasl.server.max.receive.size` (bound on one
//!   SASL token), `connections.max.reauth.ms` (KIP-368; 0 = sessions never expire).
//! - OAUTHBEARER: `sasl.oauthbearer.expected.issuer`, `sasl.oauthbearer.expected.audience`,
//!   `sasl.oauthbearer.sub.claim.name` (default `sub`), `sasl.oauthbearer.clock.skew.seconds`
//!   (default 30), and shardlog's `shardlog.sasl.oauthbearer.jwt.public.key.location`: a PEM
//!   public key (RSA or EC) that verifies the token signatures.
//! - `shardlog.authentication.timeout.ms`: a connection that has not finished the TLS handshake
//!   and SASL authentication within this time is closed (default 10000).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use super::listeners::Listener;
use super::oauth::OAuthValidator;
use super::principal::PrincipalMappingRules;
use super::sasl::{Mechanism, PlainUsers, SaslServer};
use super::scram::ScramStore;
use super::tls::{ClientAuth, TlsAcceptor, TlsSettings};

/// Kafka's default for `sasl.server.max.receive.size`: the largest SASL token a client may send.
pub const SASL_TOKEN_BYTES_MAX_DEFAULT: usize = 524_288;
/// Default of `shardlog.authentication.timeout.ms`.
pub const AUTHENTICATION_TIMEOUT_MS_DEFAULT: u64 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn parse(name: &str) -> Option<SecurityProtocol> {
        Some(match name {
            "PLAINTEXT" => SecurityProtocol::Plaintext,
            "SSL" => SecurityProtocol::Ssl,
            "SASL_PLAINTEXT" => SecurityProtocol::SaslPlaintext,
            "SASL_SSL" => SecurityProtocol::SaslSsl,
            _ => return None,
        })
    }

    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    pub fn uses_sasl(self) -> bool {
        matches!(self, SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl)
    }
}

/// Keys handled here rather than in `BrokerConfig::from_properties`.
pub fn is_security_property(key: &str) -> bool {
    key.starts_with("ssl.")
        || key.starts_with("sasl.")
        || key.starts_with("listener.name.")
        || key.starts_with("shardlog.sasl.")
        || matches!(key, "listener.security.protocol.map" | "connections.max.reauth.ms" | "shardlog.authentication.timeout.ms" | "plain.sasl.jaas.config")
}

/// Every security key this broker reads (after an optional `listener.name.<l>.` prefix).
/// Anything else under the security prefixes is logged: a misspelt
/// `sasl.oauthbearer.expected.issuer` must not silently turn a check off.
const KNOWN_KEYS: &[&str] = &[
    "listener.security.protocol.map",
    "ssl.keystore.type",
    "ssl.keystore.location",
    "ssl.keystore.certificate.chain",
    "ssl.keystore.key",
    "ssl.key.password",
    "ssl.truststore.type",
    "ssl.truststore.location",
    "ssl.truststore.certificates",
    "ssl.client.auth",
    "ssl.principal.mapping.rules",
    "ssl.enabled.protocols",
    "sasl.enabled.mechanisms",
    "plain.sasl.jaas.config",
    // The inter-broker login (`BrokerConfig::inter_broker_sasl`); SCRAM's server side reads
    // stored credentials, not these.
    "scram-sha-256.sasl.jaas.config",
    "scram-sha-512.sasl.jaas.config",
    "sasl.jaas.config",
    "sasl.mechanism.inter.broker.protocol",
    "sasl.server.max.receive.size",
    "connections.max.reauth.ms",
    "sasl.oauthbearer.expected.issuer",
    "sasl.oauthbearer.expected.audience",
    "sasl.oauthbearer.sub.claim.name",
    "sasl.oauthbearer.clock.skew.seconds",
    "shardlog.sasl.oauthbearer.jwt.public.key.location",
    "shardlog.authentication.timeout.ms",
];

/// Security keys that are misspelt, unsupported, or prefixed with a listener name that is
/// neither in `listeners` nor in `others` (listeners this node connects to without having them:
/// a broker-only node's controller listener).
pub fn unknown_security_keys<'a>(properties: &'a BTreeMap<String, String>, listeners: &[Listener], others: &[String]) -> Vec<&'a str> {
    let names: Vec<String> = listeners
        .iter()
        .map(|l| l.name.as_str())
        .chain(others.iter().map(String::as_str))
        .map(|name| format!("listener.name.{}.", name.to_lowercase()))
        .collect();
    properties
        .keys()
        .filter(|k| is_security_property(k))
        .filter(|k| {
            let key = match k.strip_prefix("listener.name.") {
                Some(_) => match names.iter().find(|prefix| k.starts_with(prefix.as_str())) {
                    Some(prefix) => &k[prefix.len()..],
                    None => return true,
                },
                None => k.as_str(),
            };
            !KNOWN_KEYS.contains(&key)
        })
        .map(String::as_str)
        .collect()
}

/// The SASL side of one listener.
pub struct SaslSettings {
    pub mechanisms: Vec<Mechanism>,
    /// rsasl, with PLAIN users, the SCRAM store and the OAUTHBEARER validator behind it.
    pub server: SaslServer,
    pub token_bytes_max: usize,
    /// `connections.max.reauth.ms`; 0: sessions do not expire.
    pub reauth_ms: u64,
}

/// Security of one listener, in the order of `BrokerConfig::listeners`.
pub struct ListenerSecurity {
    pub protocol: SecurityProtocol,
    pub tls: Option<TlsAcceptor>,
    pub sasl: Option<SaslSettings>,
    pub authentication_timeout_ms: u64,
}

/// Security of all listeners, shared by every shard.
#[derive(Clone)]
pub struct SecurityConfig {
    pub listeners: Arc<Vec<ListenerSecurity>>,
    /// SCRAM credentials: one store for the process, loaded at start and changed by
    /// AlterUserScramCredentials.
    pub scram: Arc<ScramStore>,
}

impl fmt::Debug for SecurityConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names only: settings may hold passwords and keys.
        let protocols: Vec<SecurityProtocol> = self.listeners.iter().map(|l| l.protocol).collect();
        f.debug_struct("SecurityConfig").field("protocols", &protocols).finish_non_exhaustive()
    }
}

impl Default for SecurityConfig {
    fn default() -> Self {
        let plaintext =
            ListenerSecurity { protocol: SecurityProtocol::Plaintext, tls: None, sasl: None, authentication_timeout_ms: AUTHENTICATION_TIMEOUT_MS_DEFAULT };
        SecurityConfig { listeners: Arc::new(vec![plaintext]), scram: Arc::new(ScramStore::default()) }
    }
}

/// `PLAINTEXT:PLAINTEXT,SSL:SSL,...` and the listener names that need no entry.
pub fn parse_protocol_map(text: Option<&str>) -> Result<BTreeMap<String, SecurityProtocol>> {
    let mut map = BTreeMap::new();
    for p in ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] {
        map.insert(p.to_string(), SecurityProtocol::parse(p).expect("known"));
    }
    if let Some(text) = text {
        for entry in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, protocol) = entry.split_once(':').with_context(|| format!("listener.security.protocol.map entry {entry:?} must be NAME:PROTOCOL"))?;
            let protocol = SecurityProtocol::parse(protocol.trim())
                .with_context(|| format!("listener.security.protocol.map entry {entry:?}: the protocol must be PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"))?;
            map.insert(name.trim().to_string(), protocol);
        }
    }
    Ok(map)
}

/// Reads one key for one listener: `listener.name.<l>.<key>` first, then `<key>`.
struct Lookup<'a> {
    properties: &'a BTreeMap<String, String>,
    prefix: String,
}

impl Lookup<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.properties.get(&format!("{}{key}", self.prefix)).or_else(|| self.properties.get(key)).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    /// Reads `listener.name.<l>.<key>` only.
    fn get_prefixed(&self, key: &str) -> Option<&str> {
        self.properties.get(&format!("{}{key}", self.prefix)).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    /// The name to quote in error messages.
    fn name(&self, key: &str) -> String {
        if self.properties.contains_key(&format!("{}{key}", self.prefix)) {
            format!("{}{key}", self.prefix)
        } else {
            key.to_string()
        }
    }
}

impl SecurityConfig {
    /// `others`: listener names this node reaches but does not have (see [`unknown_security_keys`]).
    pub fn from_properties(properties: &BTreeMap<String, String>, listeners: &[Listener], others: &[String]) -> Result<SecurityConfig> {
        for key in unknown_security_keys(properties, listeners, others) {
            tracing::warn!(property = key, "ignoring unknown security property (misspelt, not supported, or for a listener that is not in listeners)");
        }
        let scram = Arc::new(ScramStore::default());
        let mut out = Vec::new();
        for listener in listeners {
            let lookup = Lookup { properties, prefix: format!("listener.name.{}.", listener.name.to_lowercase()) };
            out.push(listener_security(listener, &lookup, &scram).with_context(|| format!("listener {}", listener.name))?);
        }
        Ok(SecurityConfig { listeners: Arc::new(out), scram })
    }
}

/// The TLS settings of listener `name` (`listener.name.<name>.ssl.*`, then `ssl.*`), as if this
/// node had it: a broker-only node connects to the controllers' controller listener with its
/// settings, as Kafka's broker does, without listening there itself.
pub fn listener_tls_settings(properties: &BTreeMap<String, String>, name: &str, protocol: SecurityProtocol) -> Result<TlsSettings> {
    let lookup = Lookup { properties, prefix: format!("listener.name.{}.", name.to_lowercase()) };
    tls_settings(&lookup, protocol)
}

fn listener_security(listener: &Listener, lookup: &Lookup, scram: &Arc<ScramStore>) -> Result<ListenerSecurity> {
    let protocol = listener.security_protocol;
    let authentication_timeout_ms = match lookup.get("shardlog.authentication.timeout.ms") {
        Some(v) => {
            v.parse::<u64>().ok().filter(|&n| n > 0).with_context(|| format!("shardlog.authentication.timeout.ms must be a positive integer, not {v:?}"))?
        }
        None => AUTHENTICATION_TIMEOUT_MS_DEFAULT,
    };
    let tls = if protocol.uses_tls() { Some(TlsAcceptor::new(tls_settings(lookup, protocol)?, &listener.name)?) } else { None };
    let sasl = if protocol.uses_sasl() { Some(sasl_settings(lookup, scram)?) } else { None };
    Ok(ListenerSecurity { protocol, tls, sasl, authentication_timeout_ms })
}

fn tls_settings(lookup: &Lookup, protocol: SecurityProtocol) -> Result<TlsSettings> {
    for key in ["ssl.keystore.type", "ssl.truststore.type"] {
        if let Some(t) = lookup.get(key) {
            if !t.eq_ignore_ascii_case("PEM") {
                bail!("{}={t}: only PEM is supported; convert a JKS or PKCS12 store with keytool and openssl", lookup.name(key));
            }
        }
    }
    if lookup.get("ssl.key.password").is_some() {
        bail!("{} is set, but encrypted private keys are not supported: give the key unencrypted (PKCS#8 or PKCS#1 PEM)", lookup.name("ssl.key.password"));
    }
    let keystore = match (lookup.get("ssl.keystore.location"), lookup.get("ssl.keystore.certificate.chain"), lookup.get("ssl.keystore.key")) {
        (Some(path), None, None) => super::tls::Keystore::File(path.into()),
        (None, Some(chain), Some(key)) => super::tls::Keystore::Inline { chain: chain.to_string(), key: key.to_string() },
        (None, None, None) => bail!("a TLS listener needs ssl.keystore.location (a PEM file with the private key and the certificate chain)"),
        _ => bail!("give either ssl.keystore.location, or both ssl.keystore.certificate.chain and ssl.keystore.key, not a mix"),
    };
    let truststore = match (lookup.get("ssl.truststore.location"), lookup.get("ssl.truststore.certificates")) {
        (Some(path), None) => Some(super::tls::Truststore::File(path.into())),
        (None, Some(pem)) => Some(super::tls::Truststore::Inline(pem.to_string())),
        (None, None) => None,
        _ => bail!("give either ssl.truststore.location or ssl.truststore.certificates, not both"),
    };
    // KIP-684: the broker-wide ssl.client.auth is for SSL listeners; a SASL_SSL listener
    // authenticates clients by SASL and asks for certificates only when its own
    // listener.name.<l>.ssl.client.auth says so.
    let client_auth_setting = match protocol {
        SecurityProtocol::SaslSsl => lookup.get_prefixed("ssl.client.auth"),
        _ => lookup.get("ssl.client.auth"),
    };
    let client_auth = match client_auth_setting.unwrap_or("none") {
        "required" => ClientAuth::Required,
        "requested" => ClientAuth::Requested,
        "none" => ClientAuth::None,
        other => bail!("{}={other}: use required, requested or none", lookup.name("ssl.client.auth")),
    };
    if client_auth != ClientAuth::None && truststore.is_none() {
        bail!(
            "{}={} needs ssl.truststore.location: the CA certificates that client certificates must chain to",
            lookup.name("ssl.client.auth"),
            client_auth_setting.unwrap_or("")
        );
    }
    let mut tls12 = false;
    let mut tls13 = false;
    for p in lookup.get("ssl.enabled.protocols").unwrap_or("TLSv1.2,TLSv1.3").split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match p {
            "TLSv1.2" => tls12 = true,
            "TLSv1.3" => tls13 = true,
            other => bail!("{}: {other} is not supported; only TLSv1.2 and TLSv1.3 are", lookup.name("ssl.enabled.protocols")),
        }
    }
    if !tls12 && !tls13 {
        bail!("{} enables no protocol", lookup.name("ssl.enabled.protocols"));
    }
    let mapping = PrincipalMappingRules::parse(lookup.get("ssl.principal.mapping.rules").unwrap_or("DEFAULT"))
        .with_context(|| format!("invalid {}", lookup.name("ssl.principal.mapping.rules")))?;
    Ok(TlsSettings { keystore, truststore, client_auth, tls12, tls13, mapping })
}

fn sasl_settings(lookup: &Lookup, scram: &Arc<ScramStore>) -> Result<SaslSettings> {
    let Some(list) = lookup.get("sasl.enabled.mechanisms") else {
        bail!("a SASL listener needs sasl.enabled.mechanisms (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER)");
    };
    let mut mechanisms = Vec::new();
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let m = Mechanism::parse(name).with_context(|| {
            format!("{}: {name} is not supported; use PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER", lookup.name("sasl.enabled.mechanisms"))
        })?;
        if !mechanisms.contains(&m) {
            mechanisms.push(m);
        }
    }
    if mechanisms.is_empty() {
        bail!("{} names no mechanism", lookup.name("sasl.enabled.mechanisms"));
    }
    let plain_users = match lookup.get("plain.sasl.jaas.config") {
        Some(jaas) => PlainUsers::from_jaas(jaas).with_context(|| format!("invalid {}", lookup.name("plain.sasl.jaas.config")))?,
        None => PlainUsers::default(),
    };
    if mechanisms.contains(&Mechanism::Plain) && plain_users.is_empty() {
        tracing::warn!("PLAIN is enabled but plain.sasl.jaas.config lists no user_<name>=\"<password>\" entry, so every PLAIN login fails");
    }
    let oauth = if mechanisms.contains(&Mechanism::OAuthBearer) {
        let Some(key_path) = lookup.get("shardlog.sasl.oauthbearer.jwt.public.key.location") else {
            bail!("OAUTHBEARER needs shardlog.sasl.oauthbearer.jwt.public.key.location: the PEM public key that verifies token signatures");
        };
        let skew = match lookup.get("sasl.oauthbearer.clock.skew.seconds") {
            Some(v) => v.parse::<u64>().with_context(|| format!("sasl.oauthbearer.clock.skew.seconds must be an integer, not {v:?}"))?,
            None => 30,
        };
        Some(OAuthValidator::new(
            key_path.as_ref(),
            lookup.get("sasl.oauthbearer.expected.issuer").map(str::to_string),
            lookup.get("sasl.oauthbearer.expected.audience").map(|a| a.split(',').map(|s| s.trim().to_string()).collect()),
            lookup.get("sasl.oauthbearer.sub.claim.name").unwrap_or("sub").to_string(),
            skew,
        )?)
    } else {
        None
    };
    let token_bytes_max = match lookup.get("sasl.server.max.receive.size") {
        Some(v) => v.parse::<usize>().ok().filter(|&n| n > 0).with_context(|| format!("sasl.server.max.receive.size must be a positive integer, not {v:?}"))?,
        None => SASL_TOKEN_BYTES_MAX_DEFAULT,
    };
    let reauth_ms = match lookup.get("connections.max.reauth.ms") {
        Some(v) => v.parse::<u64>().with_context(|| format!("connections.max.reauth.ms must be an integer, not {v:?}"))?,
        None => 0,
    };
    let server = SaslServer::new(plain_users, scram.clone(), oauth)?;
    Ok(SaslSettings { mechanisms, server, token_bytes_max, reauth_ms })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_wide_ssl_client_auth_is_for_ssl_listeners_only() {
        let properties = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            let mut p: BTreeMap<String, String> =
                [("ssl.keystore.location", "/k.pem"), ("ssl.truststore.location", "/ca.pem")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            p.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            p
        };
        let client_auth = |props: &BTreeMap<String, String>, listener: &str, protocol: SecurityProtocol| {
            let lookup = Lookup { properties: props, prefix: format!("listener.name.{listener}.") };
            tls_settings(&lookup, protocol).unwrap().client_auth
        };
        let broker_wide = properties(&[("ssl.client.auth", "required")]);
        assert_eq!(client_auth(&broker_wide, "ssl", SecurityProtocol::Ssl), ClientAuth::Required);
        assert_eq!(client_auth(&broker_wide, "sasl_ssl", SecurityProtocol::SaslSsl), ClientAuth::None, "KIP-684");
        let per_listener = properties(&[("ssl.client.auth", "required"), ("listener.name.sasl_ssl.ssl.client.auth", "requested")]);
        assert_eq!(client_auth(&per_listener, "sasl_ssl", SecurityProtocol::SaslSsl), ClientAuth::Requested);
        assert_eq!(client_auth(&per_listener, "ssl", SecurityProtocol::Ssl), ClientAuth::Required);
    }

    #[test]
    fn unknown_security_keys_are_reported() {
        let listeners = crate::security::listeners::parse_listeners("PLAINTEXT://:19092,SASL_SSL://:19093", None).unwrap();
        let properties: BTreeMap<String, String> = [
            "ssl.keystore.location",
            "listener.name.sasl_ssl.sasl.enabled.mechanisms",
            "sasl.oauthbearer.expected.isuer",
            "listener.name.other.ssl.client.auth",
            "ssl.keystore.password",
            "num.partitions",
        ]
        .iter()
        .map(|k| (k.to_string(), String::from("x")))
        .collect();
        assert_eq!(
            unknown_security_keys(&properties, &listeners, &[]),
            vec!["listener.name.other.ssl.client.auth", "sasl.oauthbearer.expected.isuer", "ssl.keystore.password"]
        );
        // A listener this node only connects to (a broker-only node's controller listener).
        assert_eq!(unknown_security_keys(&properties, &listeners, &[String::from("OTHER")]), vec!["sasl.oauthbearer.expected.isuer", "ssl.keystore.password"]);
    }
}
