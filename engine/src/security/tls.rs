//! TLS for SSL and SASL_SSL listeners: rustls 0.23 (ring provider), TLS 1.2 and 1.3, keys and
//! certificates in PEM.
//!
//! Certificate reload: the keystore and truststore files are checked at accept time, at most
//! once every [`RELOAD_CHECK_INTERVAL_MS`]; when a file's modification time or size changed, the
//! server config is built again from the files and used for the connections accepted from then
//! on (open connections keep the config they started with). A reload that fails (a half-written
//! file, say) is logged and the previous config stays in use, so a broker never loses its
//! certificate. Replace files atomically (write, then rename) to avoid the half-written case.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use anyhow::{bail, Context, Result};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::principal::PrincipalMappingRules;

/// How often, at most, the files are checked for changes.
pub const RELOAD_CHECK_INTERVAL_MS: u64 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    Required,
    Requested,
    None,
}

#[derive(Debug, Clone)]
pub enum Keystore {
    /// One PEM file holding the private key and the certificate chain (leaf first).
    File(PathBuf),
    Inline {
        chain: String,
        key: String,
    },
}

#[derive(Debug, Clone)]
pub enum Truststore {
    File(PathBuf),
    Inline(String),
}

#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub keystore: Keystore,
    pub truststore: Option<Truststore>,
    pub client_auth: ClientAuth,
    pub tls12: bool,
    pub tls13: bool,
    pub mapping: PrincipalMappingRules,
}

/// Modification time and size of a file, to notice a replaced certificate.
type FileStamp = Option<(SystemTime, u64)>;

struct Loaded {
    config: Arc<ServerConfig>,
    stamps: Vec<FileStamp>,
    checked: Instant,
}

/// A listener's TLS server config, shared by every shard, reloaded when its files change.
pub struct TlsAcceptor {
    pub settings: TlsSettings,
    listener: String,
    current: Mutex<Loaded>,
}

impl TlsAcceptor {
    pub fn new(settings: TlsSettings, listener: &str) -> Result<TlsAcceptor> {
        let stamps = stamps(&settings);
        let config = build_server_config(&settings)?;
        Ok(TlsAcceptor { settings, listener: listener.to_string(), current: Mutex::new(Loaded { config: Arc::new(config), stamps, checked: Instant::now() }) })
    }

    /// The config for a new connection, reloaded first if the files changed.
    pub fn config(&self) -> Arc<ServerConfig> {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if current.checked.elapsed().as_millis() as u64 >= RELOAD_CHECK_INTERVAL_MS {
            current.checked = Instant::now();
            let now = stamps(&self.settings);
            if now != current.stamps {
                current.stamps = now;
                match build_server_config(&self.settings) {
                    Ok(config) => {
                        tracing::info!(listener = %self.listener, "TLS keystore or truststore changed on disk; new connections use the reloaded certificates");
                        current.config = Arc::new(config);
                    }
                    Err(e) => {
                        tracing::error!(listener = %self.listener, error = %format!("{e:#}"), "reloading the TLS certificates failed; keeping the previous ones")
                    }
                }
            }
        }
        current.config.clone()
    }
}

fn stamps(settings: &TlsSettings) -> Vec<FileStamp> {
    let mut paths = Vec::new();
    if let Keystore::File(p) = &settings.keystore {
        paths.push(p);
    }
    if let Some(Truststore::File(p)) = &settings.truststore {
        paths.push(p);
    }
    paths.iter().map(|p| std::fs::metadata(p).ok().and_then(|m| Some((m.modified().ok()?, m.len())))).collect()
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The keystore's certificate chain and private key, and where they came from (for messages).
type KeyPair = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>, String);

fn load_keystore(settings: &TlsSettings) -> Result<KeyPair> {
    let (chain_pem, key_pem, source) = match &settings.keystore {
        Keystore::File(path) => {
            let text = std::fs::read(path).with_context(|| format!("cannot read ssl.keystore.location {}", path.display()))?;
            (text.clone(), text, path.display().to_string())
        }
        Keystore::Inline { chain, key } => (chain.clone().into_bytes(), key.clone().into_bytes(), String::from("ssl.keystore.certificate.chain")),
    };
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&chain_pem).collect::<Result<_, _>>().with_context(|| format!("{source}: certificate PEM does not parse"))?;
    if chain.is_empty() {
        bail!("{source} holds no CERTIFICATE block: it must hold the certificate chain (leaf first) and the private key");
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).with_context(|| format!("{source}: no usable private key (PKCS#8, PKCS#1 or SEC1 PEM, unencrypted)"))?;
    Ok((chain, key, source))
}

fn protocol_versions(settings: &TlsSettings) -> Vec<&'static rustls::SupportedProtocolVersion> {
    let mut versions = Vec::new();
    if settings.tls13 {
        versions.push(&rustls::version::TLS13);
    }
    if settings.tls12 {
        versions.push(&rustls::version::TLS12);
    }
    versions
}

pub fn build_server_config(settings: &TlsSettings) -> Result<ServerConfig> {
    let (chain, key, source) = load_keystore(settings)?;
    let builder = ServerConfig::builder_with_provider(provider()).with_protocol_versions(&protocol_versions(settings)).context("TLS protocol versions")?;
    let builder = match (&settings.truststore, settings.client_auth) {
        (Some(truststore), auth) if auth != ClientAuth::None => {
            let roots = Arc::new(root_store(truststore)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider());
            let verifier = if auth == ClientAuth::Requested { verifier.allow_unauthenticated() } else { verifier };
            builder.with_client_cert_verifier(verifier.build().context("client certificate verifier")?)
        }
        _ => builder.with_no_client_auth(),
    };
    builder.with_single_cert(chain, key).with_context(|| format!("{source}: the private key does not match the certificate, or is of an unsupported type"))
}

/// The TLS client config a node reaches other nodes' listeners with, as Kafka's inter-broker
/// and controller clients use the listener's own settings: the truststore verifies the other
/// node's certificate (and its host name or IP address), and the keystore is presented as this
/// node's certificate, for listeners that ask for one. `what` names the listener in errors
/// ("inter-broker listener SSL", "controller listener CONTROLLER"). Built once at start.
pub fn build_client_config(settings: &TlsSettings, what: &str) -> Result<rustls::ClientConfig> {
    let Some(truststore) = &settings.truststore else {
        bail!("{what} uses TLS but has no truststore: set ssl.truststore.location (or ssl.truststore.certificates) to the CA that signed the other nodes' certificates");
    };
    let roots = root_store(truststore)?;
    let (chain, key, source) = load_keystore(settings)?;
    rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&protocol_versions(settings))
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .with_context(|| format!("{source}: the private key does not match the certificate, or is of an unsupported type"))
}

/// The TLS client config a broker reaches other brokers with on its inter-broker listener.
pub fn build_inter_broker_client_config(settings: &TlsSettings, listener: &str) -> Result<rustls::ClientConfig> {
    build_client_config(settings, &format!("inter-broker listener {listener}"))
}

fn root_store(truststore: &Truststore) -> Result<RootCertStore> {
    let (pem, source) = match truststore {
        Truststore::File(path) => {
            (std::fs::read(path).with_context(|| format!("cannot read ssl.truststore.location {}", path.display()))?, path.display().to_string())
        }
        Truststore::Inline(text) => (text.clone().into_bytes(), String::from("ssl.truststore.certificates")),
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.with_context(|| format!("{source}: certificate PEM does not parse"))?;
        roots.add(cert).with_context(|| format!("{source}: a CA certificate is not usable"))?;
    }
    if roots.is_empty() {
        bail!("{source} holds no CA certificate");
    }
    Ok(roots)
}
