//! InitProducerId (key 22): a producer id and epoch. Without a transactional id each call gets a
//! new id with epoch 0, as Kafka gives idempotent producers; ids come from the controller
//! shard, which reserves them in persisted blocks so they are never reused. With one, the
//! transaction coordinator keeps the id and bumps its epoch, fencing earlier producers.

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use shardlog_protocol::error_code as ec;
use shardlog_protocol::kafka_protocol;

use super::{respond, Context, Response};
use crate::controller::{AllocateProducerId, CONTROLLER_SHARD};
use crate::txn::{InitProducerId, COORDINATOR};

pub async fn handle(ctx: &Context<'_>, request: InitProducerIdRequest) -> Response {
    if let Some(denied) = denial(ctx, &request) {
        return denied;
    }
    let header = ctx.header;
    let mut r = InitProducerIdResponse::default();
    r.producer_id = ProducerId(-1);
    r.producer_epoch = -1;
    if let Some(id) = &request.transactional_id {
        if id.0.is_empty() {
            r.error_code = ec::INVALID_REQUEST;
            return respond(header, &r);
        }
        let (producer_id, producer_epoch) = if header.api_version >= 3 { (request.producer_id.0, request.producer_epoch) } else { (-1, -1) };
        let call = InitProducerId { transactional_id: id.0.to_string(), timeout_ms: request.transaction_timeout_ms, producer_id, producer_epoch };
        match ctx.coordinator_call(COORDINATOR, &id.0, call).await {
            Ok(Ok((producer_id, producer_epoch))) => {
                r.producer_id = ProducerId(producer_id);
                r.producer_epoch = producer_epoch;
            }
            Ok(Err(code)) | Err(code) => r.error_code = code,
        }
        if header.api_version < 4 && r.error_code == ec::PRODUCER_FENCED {
            r.error_code = ec::INVALID_PRODUCER_EPOCH;
        }
        return respond(header, &r);
    }
    match ctx.call(CONTROLLER_SHARD, AllocateProducerId).await {
        Ok(Ok(id)) => {
            r.producer_id = ProducerId(id);
            r.producer_epoch = 0;
            tracing::debug!(producer_id = id, client_id = %header.client_id_lossy(), "producer id allocated");
        }
        Ok(Err(code)) => r.error_code = code,
        Err(e) => {
            tracing::warn!(error = %e, "the controller did not allocate a producer id");
            r.error_code = ec::COORDINATOR_NOT_AVAILABLE;
        }
    }
    respond(header, &r)
}

/// The request refused whole, with Kafka's error, when the principal lacks what it needs.
fn denial(ctx: &Context<'_>, request: &InitProducerIdRequest) -> Option<Response> {
    use crate::authorizer::Operation::*;
    use kafka_protocol::messages as m;
    use shardlog_protocol::error_code::CLUSTER_AUTHORIZATION_FAILED as CLUSTER_DENIED;
    use shardlog_protocol::error_code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED as TXN_DENIED;
    let (authz, header, r) = (&ctx.authz, ctx.header, request);
    let allowed = match &r.transactional_id {
        Some(id) => authz.transactional_id(Write, id),
        // KIP-679: WRITE on any topic also allows idempotent produce.
        // (The cluster check comes last so that a refusal is audited.)
        None => authz.writes_any_topic() || authz.cluster(IdempotentWrite),
    };
    if allowed {
        return None;
    }
    let code = if r.transactional_id.is_some() { TXN_DENIED } else { CLUSTER_DENIED };
    deny!(header, m::InitProducerIdResponse, code, producer_id = m::ProducerId(-1), producer_epoch = -1)
}
