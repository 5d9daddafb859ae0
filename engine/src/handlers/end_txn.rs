//! EndTxn (key 26): commit or abort the producer's transaction. Answered once the decision is
//! durable and the markers are written. v5 with transaction.version 2 finalized is transactions
//! v2 (KIP-890 part 2): the coordinator bumps the producer epoch at every end and answers the
//! producer id and epoch to go on with (a new id at epoch 0 when the epoch would overflow).

use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse, ProducerId};
use shardlog_protocol::error_code as ec;
use shardlog_protocol::kafka_protocol;

use super::{respond, Context, Response};
use crate::txn::{client_transaction_version, EndTxn, COORDINATOR};

/// The first EndTxn version a transactions-v2 client sends.
const TRANSACTIONS_V2_FROM_VERSION: i16 = 5;

pub async fn handle(ctx: &Context<'_>, request: EndTxnRequest) -> Response {
    if let Some(denied) = denial(ctx, &request) {
        return denied;
    }
    let header = ctx.header;
    let id = request.transactional_id.0.to_string();
    let call = EndTxn {
        transactional_id: id.clone(),
        producer_id: request.producer_id.0,
        producer_epoch: request.producer_epoch,
        commit: request.committed,
        client_transaction_version: client_transaction_version(ctx.shard, header.api_version, TRANSACTIONS_V2_FROM_VERSION),
    };
    let mut r = EndTxnResponse::default();
    // Kafka answers -1 and -1 with an error.
    (r.producer_id, r.producer_epoch) = (ProducerId(-1), -1);
    match ctx.coordinator_call(COORDINATOR, &id, call).await {
        Ok(Ok((producer_id, producer_epoch))) => (r.producer_id, r.producer_epoch) = (ProducerId(producer_id), producer_epoch),
        Ok(Err(code)) | Err(code) => r.error_code = code,
    }
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
