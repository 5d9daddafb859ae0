//! AddPartitionsToTxn (key 24, v0-3): the producer announces the partitions it is about to
//! write in its transaction, so that the coordinator writes their markers when it ends.
//! Versions 4+ are the broker-to-broker batch form and are not served.

use kafka_protocol::messages::add_partitions_to_txn_response::{AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse};
use shardlog_protocol::kafka_protocol;

use super::{respond, Context, Response};
use crate::txn::{AddPartitions, COORDINATOR};

pub async fn handle(ctx: &Context<'_>, request: AddPartitionsToTxnRequest) -> Response {
    if let Some(denied) = denial(ctx, &request) {
        return denied;
    }
    let header = ctx.header;
    let partitions: Vec<(String, i32)> =
        request.v3_and_below_topics.iter().flat_map(|t| t.partitions.iter().map(move |p| (t.name.0.to_string(), *p))).collect();
    let id = request.v3_and_below_transactional_id.0.to_string();
    let call = AddPartitions {
        transactional_id: id.clone(),
        producer_id: request.v3_and_below_producer_id.0,
        producer_epoch: request.v3_and_below_producer_epoch,
        partitions: partitions.clone(),
    };
    let codes = match ctx.coordinator_call(COORDINATOR, &id, call).await {
        Ok(codes) => codes,
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

/// The request refused whole, with Kafka's error, when the principal lacks what it needs.
fn denial(ctx: &Context<'_>, request: &AddPartitionsToTxnRequest) -> Option<Response> {
    use crate::authorizer::Operation::*;
    use kafka_protocol::messages as m;
    use shardlog_protocol::error_code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED as TXN_DENIED;
    let (authz, header, r) = (&ctx.authz, ctx.header, request);
    let txn_ok = authz.transactional_id(Write, &r.v3_and_below_transactional_id);
    let denied_topics: Vec<bool> = r.v3_and_below_topics.iter().map(|t| !txn_ok || !authz.topic(Write, &t.name)).collect();
    if denied_topics.iter().all(|d| !d) {
        return None;
    }
    // Kafka: the denied partitions get their error, the others OPERATION_NOT_ATTEMPTED.
    let mut response = m::AddPartitionsToTxnResponse::default();
    for (t, denied) in r.v3_and_below_topics.iter().zip(denied_topics) {
        let mut topic = m::add_partitions_to_txn_response::AddPartitionsToTxnTopicResult::default();
        topic.name = t.name.clone();
        let code = match (txn_ok, denied) {
            (false, _) => TXN_DENIED,
            (true, true) => shardlog_protocol::error_code::TOPIC_AUTHORIZATION_FAILED,
            (true, false) => shardlog_protocol::error_code::OPERATION_NOT_ATTEMPTED,
        };
        for p in &t.partitions {
            let mut result = m::add_partitions_to_txn_response::AddPartitionsToTxnPartitionResult::default();
            result.partition_index = *p;
            result.partition_error_code = code;
            topic.results_by_partition.push(result);
        }
        response.results_by_topic_v3_and_below.push(topic);
    }
    Some(respond(header, &response))
}
