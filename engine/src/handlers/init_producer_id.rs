//! InitProducerId (key 22): a producer id and epoch. Without a transactional id each call gets a
//! new id with epoch 0, as Kafka gives idempotent producers; ids come from the controller
//! shard, which reserves them in persisted blocks so they are never reused. With one, the
//! transaction coordinator keeps the id and bumps its epoch, fencing earlier producers.

use std::rc::Rc;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use shardlog_protocol::error_code as ec;
use shardlog_protocol::kafka_protocol;
use shardlog_protocol::request::RequestHeader;

use super::{respond, Response};
use crate::controller::{AllocateProducerId, CONTROLLER_SHARD};
use crate::shard::Shard;
use crate::txn::{TxnCall, TxnReply};

pub async fn handle(shard: &Rc<Shard>, header: &RequestHeader, request: InitProducerIdRequest) -> Response {
    let mut r = InitProducerIdResponse::default();
    r.producer_id = ProducerId(-1);
    r.producer_epoch = -1;
    if let Some(id) = &request.transactional_id {
        if id.0.is_empty() {
            r.error_code = ec::INVALID_REQUEST;
            return respond(header, &r);
        }
        let (producer_id, producer_epoch) = if header.api_version >= 3 { (request.producer_id.0, request.producer_epoch) } else { (-1, -1) };
        let call = TxnCall::InitProducerId { transactional_id: id.0.to_string(), timeout_ms: request.transaction_timeout_ms, producer_id, producer_epoch };
        match crate::txn::call(shard, &id.0, call).await {
            Ok(TxnReply::ProducerId { error_code, producer_id, producer_epoch }) => {
                r.error_code = error_code;
                r.producer_id = ProducerId(producer_id);
                r.producer_epoch = producer_epoch;
            }
            Ok(_) => r.error_code = ec::UNKNOWN_SERVER_ERROR,
            Err(code) => r.error_code = code,
        }
        if header.api_version < 4 && r.error_code == ec::PRODUCER_FENCED {
            r.error_code = ec::INVALID_PRODUCER_EPOCH;
        }
        return respond(header, &r);
    }
    match shard.call(CONTROLLER_SHARD, AllocateProducerId).await {
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
