//! SaslAuthenticate (key 36): one token of the SASL exchange each way. On success the
//! connection's principal becomes `User:<name>`; with `connections.max.reauth.ms` the response
//! carries the session lifetime (KIP-368), and the connection is closed if it is still used
//! after that without re-authenticating. A failure is answered with
//! SASL_AUTHENTICATION_FAILED and the connection is closed, as Kafka does.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslAuthenticateResponse};
use shardlog_protocol::error_code as ec;
use shardlog_protocol::kafka_protocol;
use shardlog_protocol::request::RequestHeader;

use super::{respond, str_bytes, Context, Response};
use crate::security::sasl::Step;
use crate::security::session::SaslState;

pub fn handle(ctx: &Context<'_>, request: SaslAuthenticateRequest) -> Response {
    let header = ctx.header;
    let session = ctx.session;
    let peer = session.peer;
    let Some(sasl) = &ctx.config().security.listeners[session.listener].sasl else {
        tracing::warn!(%peer, "closing connection: SaslAuthenticate on a listener without SASL");
        return failed(header, ec::ILLEGAL_SASL_STATE, "SaslAuthenticate on a listener that does not use SASL");
    };
    if request.auth_bytes.len() > sasl.token_bytes_max {
        tracing::warn!(%peer, bytes = request.auth_bytes.len(), max = sasl.token_bytes_max, "closing connection: SASL token larger than sasl.server.max.receive.size");
        return failed(header, ec::SASL_AUTHENTICATION_FAILED, "SASL token too large");
    }
    let state = std::mem::replace(&mut *session.sasl.borrow_mut(), SaslState::Start);
    let SaslState::Exchanging(mut exchange) = state else {
        tracing::warn!(%peer, "closing connection: SaslAuthenticate before SaslHandshake");
        return failed(header, ec::ILLEGAL_SASL_STATE, "SaslAuthenticate before SaslHandshake");
    };
    let mechanism = exchange.mechanism;
    match exchange.step(&request.auth_bytes) {
        Step::Continue(out) => {
            *session.sasl.borrow_mut() = SaslState::Exchanging(exchange);
            let mut r = SaslAuthenticateResponse::default();
            r.auth_bytes = Bytes::from(out);
            respond(header, &r)
        }
        Step::Failed(reason) => {
            tracing::warn!(%peer, mechanism = %mechanism.name(), reason = %reason, "SASL authentication failed; closing the connection");
            let message = format!("Authentication failed during authentication due to invalid credentials with SASL mechanism {}", mechanism.name());
            failed(header, ec::SASL_AUTHENTICATION_FAILED, &message)
        }
        Step::Done(out, user) => {
            let principal = format!("User:{}", user.user);
            let reauthentication = session.is_authenticated();
            if reauthentication && principal != session.principal() {
                tracing::warn!(%peer, old = %session.principal(), new = %principal, "closing connection: re-authentication as a different principal");
                return failed(header, ec::SASL_AUTHENTICATION_FAILED, "re-authentication must keep the principal");
            }
            let lifetime_ms = session_lifetime_ms(sasl.reauth_ms, user.credential_expires_ms);
            session.expires.set((lifetime_ms > 0).then(|| Instant::now() + Duration::from_millis(lifetime_ms as u64)));
            session.set_principal(principal.clone());
            session.set_authenticated();
            session.mechanism.set(Some(mechanism));
            session.authentications.set(session.authentications.get() + 1);
            tracing::info!(%peer, principal = %principal, mechanism = %mechanism.name(), reauthentication, session_lifetime_ms = lifetime_ms, "SASL authentication succeeded");
            let mut r = SaslAuthenticateResponse::default();
            r.auth_bytes = Bytes::from(out);
            if header.api_version >= 1 {
                r.session_lifetime_ms = lifetime_ms;
            }
            respond(header, &r)
        }
    }
}

/// KIP-368: `connections.max.reauth.ms`, cut short by the credential's own expiry (an
/// OAUTHBEARER token); 0 when re-authentication is off.
fn session_lifetime_ms(reauth_ms: u64, credential_expires_ms: Option<i64>) -> i64 {
    if reauth_ms == 0 {
        return 0;
    }
    let mut lifetime = reauth_ms.min(i64::MAX as u64) as i64;
    if let Some(expires) = credential_expires_ms {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
        lifetime = lifetime.min(expires.saturating_sub(now).max(1));
    }
    lifetime
}

fn failed(header: &RequestHeader, code: i16, message: &str) -> Response {
    let mut r = SaslAuthenticateResponse::default();
    r.error_code = code;
    r.error_message = Some(str_bytes(message));
    match respond(header, &r) {
        Response::Frame(chunks) => Response::FrameThenClose(chunks, message.to_string()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn lifetime_is_the_shorter_of_reauth_and_token_expiry() {
        assert_eq!(super::session_lifetime_ms(0, Some(1)), 0);
        assert_eq!(super::session_lifetime_ms(5000, None), 5000);
        let soon = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64 + 1000;
        let l = super::session_lifetime_ms(60_000, Some(soon));
        assert!(l > 0 && l <= 1000, "{l}");
    }
}
