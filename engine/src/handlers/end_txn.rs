//! EndTxn (key 26): commit or abort the producer's transaction. Answered once the decision is
//! durable and the markers are written.

use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse};
use shardlog_protocol::error_code as ec;
use shardlog_protocol::kafka_protocol;

use super::{respond, Context, Response};
use crate::txn::{EndTxn, COORDINATOR};

pub async fn handle(ctx: &Context<'_>, request: EndTxnRequest) -> Response {
    if let Some(denied) = denial(ctx, &request) {
        return denied;
    }
    let header = ctx.header;
    let id = request.transactional_id.0.to_string();
    let call = EndTxn { transactional_id: id.clone(), producer_id: request.producer_id.0, producer_epoch: request.producer_epoch, commit: request.committed };
    let mut r = EndTxnResponse::default();
    r.error_code = match ctx.coordinator_call(COORDINATOR, &id, call).await {
        Ok(code) | Err(code) => code,
    };
    // Before v2 clients know only INVALID_PRODUCER_EPOCH for a fenced producer.
    if header.api_version < 2 && r.error_code == ec::PRODUCER_FENCED {
        r.error_code = ec::INVALID_PRODUCER_EPOCH;
    }
    respond(header, &r)
}

/// The request refused whole, with Kafka's error, when the principal lacks what it needs.
fn denial(ctx: &Context<'_>, request: &EndTxnRequest) -> Option<Response> {
    use crate::authorizer::Operation::*;
    use kafka_protocol::messages as m;
    use shardlog_protocol::error_code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED as TXN_DENIED;
    let (authz, header, r) = (&ctx.authz, ctx.header, request);
    if !authz.transactional_id(Write, &r.transactional_id) {
        return deny!(header, m::EndTxnResponse, TXN_DENIED);
    }
    None
}
