//! AddOffsetsToTxn (key 25): the producer will commit a group's offsets in its transaction,
//! so the group's `__consumer_offsets` partition joins the transaction.

use std::rc::Rc;

use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};
use shardlog_protocol::error_code as ec;
use shardlog_protocol::kafka_protocol;
use shardlog_protocol::request::RequestHeader;

use super::{respond, Response};
use crate::groups::offsets::{partition_for, OFFSETS_TOPIC};
use crate::shard::Shard;
use crate::txn::{TxnCall, TxnReply};

pub async fn handle(shard: &Rc<Shard>, header: &RequestHeader, request: AddOffsetsToTxnRequest) -> Response {
    let mut r = AddOffsetsToTxnResponse::default();
    let offsets_partitions = shard.metadata.borrow().topics.get(OFFSETS_TOPIC).map(|t| t.partitions.len());
    let Some(count) = offsets_partitions else {
        r.error_code = ec::COORDINATOR_NOT_AVAILABLE;
        return respond(header, &r);
    };
    let id = request.transactional_id.0.to_string();
    let partition = partition_for(&request.group_id.0, count);
    let call = TxnCall::AddPartitions {
        transactional_id: id.clone(),
        producer_id: request.producer_id.0,
        producer_epoch: request.producer_epoch,
        partitions: vec![(OFFSETS_TOPIC.to_string(), partition)],
    };
    r.error_code = match crate::txn::call(shard, &id, call).await {
        Ok(TxnReply::Partitions(codes)) => codes.first().copied().unwrap_or(ec::UNKNOWN_SERVER_ERROR),
        Ok(_) => ec::UNKNOWN_SERVER_ERROR,
        Err(code) => code,
    };
    respond(header, &r)
}
