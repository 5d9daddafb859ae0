//! EndTxn (key 26): commit or abort the producer's transaction. Answered once the decision is
//! durable and the markers are written.

use std::rc::Rc;

use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse};
use shardlog_protocol::error_code as ec;
use shardlog_protocol::kafka_protocol;
use shardlog_protocol::request::RequestHeader;

use super::{respond, Response};
use crate::shard::Shard;
use crate::txn::{TxnCall, TxnReply};

pub async fn handle(shard: &Rc<Shard>, header: &RequestHeader, request: EndTxnRequest) -> Response {
    let id = request.transactional_id.0.to_string();
    let call =
        TxnCall::EndTxn { transactional_id: id.clone(), producer_id: request.producer_id.0, producer_epoch: request.producer_epoch, commit: request.committed };
    let mut r = EndTxnResponse::default();
    r.error_code = match crate::txn::call(shard, &id, call).await {
        Ok(TxnReply::Code(code)) => code,
        Ok(_) => ec::UNKNOWN_SERVER_ERROR,
        Err(code) => code,
    };
    // Before v2 clients know only INVALID_PRODUCER_EPOCH for a fenced producer.
    if header.api_version < 2 && r.error_code == ec::PRODUCER_FENCED {
        r.error_code = ec::INVALID_PRODUCER_EPOCH;
    }
    respond(header, &r)
}
