//! Security of the Kafka listeners: which protocol each listener speaks (PLAINTEXT, SSL,
//! SASL_PLAINTEXT, SASL_SSL), its TLS settings, its SASL mechanisms, and the principal that a
//! connection authenticates as.
//!
//! - `settings`: Kafka's property names, resolved per listener (`listener.name.<l>.<key>` first).
//! - `tls`: rustls server configs from PEM files, reloaded when the files change.
//! - `principal`: the certificate subject as an RFC 2253 name, and `ssl.principal.mapping.rules`.
//! - `sasl`: the SASL exchange (rsasl) behind SaslHandshake and SaslAuthenticate.
//! - `scram`: stored SCRAM credentials (salted and hashed), persisted beside the cluster metadata.
//! - `oauth`: the JWT validator behind OAUTHBEARER.
//! - `session`: what a connection knows about itself: listener, principal, authentication state.
//!
//! Why here and not in the sans-io protocol crate (where DESIGN.md puts SASL and TLS
//! configuration): the SASL callback reads the process-wide SCRAM store that the broker
//! persists, and the TLS acceptor re-reads certificate files on accept. The mechanisms
//! themselves are rsasl's, which is sans-io already; the pure parts here (principal mapping,
//! subject names) have no engine dependency and can move to `protocol` when something else
//! needs them.

pub mod listeners;
pub mod oauth;
pub mod principal;
pub mod sasl;
pub mod scram;
pub mod session;
pub mod settings;
pub mod tls;

pub use session::Session;
pub use settings::{ListenerSecurity, SecurityConfig, SecurityProtocol};

/// The principal of connections that did not authenticate (PLAINTEXT, or SSL without a client
/// certificate), as Kafka names it.
pub const ANONYMOUS: &str = "User:ANONYMOUS";
