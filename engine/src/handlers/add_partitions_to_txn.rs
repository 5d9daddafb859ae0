//! AddPartitionsToTxn (key 24, v0-3): the producer announces the partitions it is about to
//! write in its transaction, so that the coordinator writes their markers when it ends.
//! Versions 4+ are the broker-to-broker batch form and are not served.

use std::rc::Rc;

use kafka_protocol::messages::add_partitions_to_txn_response::{AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse};
use shardlog_protocol::kafka_protocol;
use shardlog_protocol::request::RequestHeader;

use super::{respond, Response};
use crate::shard::Shard;
use crate::txn::{TxnCall, TxnReply};

pub async fn handle(shard: &Rc<Shard>, header: &RequestHeader, request: AddPartitionsToTxnRequest) -> Response {
    let partitions: Vec<(String, i32)> =
        request.v3_and_below_topics.iter().flat_map(|t| t.partitions.iter().map(move |p| (t.name.0.to_string(), *p))).collect();
    let id = request.v3_and_below_transactional_id.0.to_string();
    let call = TxnCall::AddPartitions {
        transactional_id: id.clone(),
        producer_id: request.v3_and_below_producer_id.0,
        producer_epoch: request.v3_and_below_producer_epoch,
        partitions: partitions.clone(),
    };
    let codes = match crate::txn::call(shard, &id, call).await {
        Ok(TxnReply::Partitions(codes)) => codes,
        Ok(_) => vec![shardlog_protocol::error_code::UNKNOWN_SERVER_ERROR; partitions.len()],
        Err(code) => vec![code; partitions.len()],
    };
    let mut r = AddPartitionsToTxnResponse::default();
    for ((topic, partition), code) in partitions.into_iter().zip(codes) {
        let mut result = AddPartitionsToTxnPartitionResult::default();
        result.partition_index = partition;
        result.partition_error_code = code;
        match r.results_by_topic_v3_and_below.iter_mut().find(|t| t.name.0.as_str() == topic) {
            Some(t) => t.results_by_partition.push(result),
            None => {
                let mut t = AddPartitionsToTxnTopicResult::default();
                t.name = super::topic_name(&topic);
                t.results_by_partition.push(result);
                r.results_by_topic_v3_and_below.push(t);
            }
        }
    }
    respond(header, &r)
}
