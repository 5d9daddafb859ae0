//! InitProducerId (key 22): a producer id and epoch for an idempotent producer. Each call gets a
//! new id with epoch 0, as Kafka gives producers without a transactional id; ids come from the
//! controller shard, which reserves them in persisted blocks so they are never reused.
//! Transactional ids are refused until transactions are implemented.

use std::rc::Rc;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use shardlog_protocol::error_code as ec;
use shardlog_protocol::kafka_protocol;
use shardlog_protocol::request::RequestHeader;

use super::groups_common::COORDINATOR_NOT_AVAILABLE;
use super::{respond, Response};
use crate::shard::messages::{ControllerRequest, ShardReply, ShardRequest};
use crate::shard::{Shard, CONTROLLER_SHARD};

pub async fn handle(shard: &Rc<Shard>, header: &RequestHeader, request: InitProducerIdRequest) -> Response {
    let mut r = InitProducerIdResponse::default();
    r.producer_id = ProducerId(-1);
    r.producer_epoch = -1;
    if request.transactional_id.is_some() {
        r.error_code = COORDINATOR_NOT_AVAILABLE;
        return respond(header, &r);
    }
    match shard.dispatch(CONTROLLER_SHARD, ShardRequest::Controller(ControllerRequest::AllocateProducerId)).await {
        ShardReply::ProducerId(id, code) if code == ec::NONE => {
            r.producer_id = ProducerId(id);
            r.producer_epoch = 0;
            tracing::debug!(producer_id = id, client_id = %header.client_id_lossy(), "producer id allocated");
        }
        ShardReply::ProducerId(_, code) => r.error_code = code,
        _ => r.error_code = ec::UNKNOWN_SERVER_ERROR,
    }
    respond(header, &r)
}
