//! SaslHandshake (key 17): the client names a mechanism; we answer with the listener's enabled
//! mechanisms and start the exchange. Also the first step of a re-authentication (KIP-368),
//! which must keep the mechanism of the first authentication.

use kafka_protocol::messages::{SaslHandshakeRequest, SaslHandshakeResponse};
use shardlog_protocol::error_code as ec;
use shardlog_protocol::kafka_protocol;
use shardlog_protocol::request::RequestHeader;

use super::{respond, str_bytes, Context, Response};
use crate::security::sasl::Mechanism;
use crate::security::session::SaslState;

pub fn handle(ctx: &Context<'_>, request: SaslHandshakeRequest) -> Response {
    let header = ctx.header;
    let session = ctx.session;
    let peer = session.peer;
    let Some(sasl) = &ctx.config().security.listeners[session.listener].sasl else {
        tracing::warn!(%peer, "closing connection: SaslHandshake on a listener without SASL");
        return close_with(header, ec::ILLEGAL_SASL_STATE, Vec::new(), "SaslHandshake on a listener that does not use SASL");
    };
    let enabled: Vec<&'static str> = sasl.mechanisms.iter().map(|m| m.name()).collect();
    let requested = request.mechanism.to_string();
    let Some(mechanism) = Mechanism::parse(&requested).filter(|m| sasl.mechanisms.contains(m)) else {
        tracing::warn!(%peer, mechanism = %requested.escape_debug(), enabled = ?enabled, "closing connection: SASL mechanism not enabled on this listener");
        return close_with(header, ec::UNSUPPORTED_SASL_MECHANISM, enabled, "unsupported SASL mechanism");
    };
    if session.is_authenticated() {
        if header.api_version < 1 {
            tracing::warn!(%peer, "closing connection: re-authentication needs SaslHandshake v1 or later");
            return close_with(header, ec::ILLEGAL_SASL_STATE, enabled, "re-authentication with SaslHandshake v0");
        }
        if session.mechanism.get() != Some(mechanism) {
            tracing::warn!(%peer, mechanism = %mechanism.name(), "closing connection: re-authentication must use the mechanism of the first authentication");
            return close_with(header, ec::ILLEGAL_SASL_STATE, enabled, "re-authentication with another mechanism");
        }
    }
    if matches!(*session.sasl.borrow(), SaslState::Exchanging(_)) {
        tracing::warn!(%peer, "closing connection: SaslHandshake in the middle of an exchange");
        return close_with(header, ec::ILLEGAL_SASL_STATE, enabled, "SaslHandshake in the middle of an exchange");
    }
    match sasl.server.start(mechanism) {
        Ok(exchange) => *session.sasl.borrow_mut() = SaslState::Exchanging(exchange),
        Err(e) => {
            tracing::error!(%peer, mechanism = %mechanism.name(), error = %e, "closing connection: cannot start the SASL exchange");
            return close_with(header, ec::UNSUPPORTED_SASL_MECHANISM, enabled, "cannot start the SASL exchange");
        }
    }
    let mut r = SaslHandshakeResponse::default();
    r.error_code = ec::NONE;
    r.mechanisms = enabled.into_iter().map(str_bytes).collect();
    respond(header, &r)
}

fn close_with(header: &RequestHeader, code: i16, enabled: Vec<&'static str>, reason: &str) -> Response {
    let mut r = SaslHandshakeResponse::default();
    r.error_code = code;
    r.mechanisms = enabled.into_iter().map(str_bytes).collect();
    match respond(header, &r) {
        Response::Frame(chunks) => Response::FrameThenClose(chunks, reason.to_string()),
        other => other,
    }
}
