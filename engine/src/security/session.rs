//! What a connection knows about its own security: the listener it came in on, the principal
//! it acts as, and where it stands in SASL authentication. It lives on the connection's shard
//! and is handed to every request of that connection (the authorizer will read the principal).

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::time::Instant;

use super::sasl::{Exchange, Mechanism};

/// Where a SASL connection stands.
pub enum SaslState {
    /// Waiting for SaslHandshake.
    Start,
    /// SaslHandshake chose this mechanism; SaslAuthenticate steps run the exchange.
    Exchanging(Exchange),
}

pub struct Session {
    /// Index into `BrokerConfig::listeners`.
    pub listener: usize,
    pub peer: SocketAddr,
    principal: RefCell<String>,
    /// False on a SASL listener until the first authentication succeeds.
    authenticated: Cell<bool>,
    pub sasl: RefCell<SaslState>,
    /// The mechanism of the last successful authentication (re-authentication must use it).
    pub mechanism: Cell<Option<Mechanism>>,
    /// KIP-368: the session must re-authenticate before this instant.
    pub expires: Cell<Option<Instant>>,
    /// Successful authentications on this connection, the first one included.
    pub authentications: Cell<u32>,
}

impl Session {
    pub fn new(listener: usize, peer: SocketAddr, principal: String, authenticated: bool) -> Session {
        Session {
            listener,
            peer,
            principal: RefCell::new(principal),
            authenticated: Cell::new(authenticated),
            sasl: RefCell::new(SaslState::Start),
            mechanism: Cell::new(None),
            expires: Cell::new(None),
            authentications: Cell::new(0),
        }
    }

    /// `User:alice`, or `User:ANONYMOUS`.
    pub fn principal(&self) -> String {
        self.principal.borrow().clone()
    }

    pub fn set_principal(&self, principal: String) {
        *self.principal.borrow_mut() = principal;
    }

    pub fn is_authenticated(&self) -> bool {
        self.authenticated.get()
    }

    pub fn set_authenticated(&self) {
        self.authenticated.set(true);
    }

    /// True once a SASL session has outlived `connections.max.reauth.ms` without
    /// re-authenticating.
    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires.get().is_some_and(|e| now >= e)
    }
}
