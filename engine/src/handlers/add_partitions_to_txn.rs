//! AddPartitionsToTxn (key 24): v0-3, the producer announces the partitions it is about to
//! write in its transaction, so that the coordinator writes their markers when it ends.
//! v4-5, the broker-to-broker batch form: a partition leader on another broker asks whether a
//! producer's partition is in its ongoing transaction (`verify_only`, KIP-890), or adds
//! partitions on a producer's behalf; it needs CLUSTER_ACTION, as in Kafka. v5 without
//! `verify_only`, with transaction.version 2 finalized, is the add a leader makes for a
//! transactions-v2 producer's batch (Kafka's `TransactionVersion.transactionVersionForAddPartitionsToTxn`).

use kafka_protocol::messages::add_partitions_to_txn_response::{AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse};
use shardlog_protocol::kafka_protocol;

use super::{respond, Context, Response};
use crate::txn::{AddPartitions, Verify, COORDINATOR};

pub async fn handle(ctx: &Context<'_>, request: AddPartitionsToTxnRequest) -> Response {
    if ctx.header.api_version >= 4 {
        return handle_transactions(ctx, request).await;
    }
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
        client_transaction_version: 0,
    };
    let codes = match ctx.coordinator_call(COORDINATOR, &id, call).await {
        Ok(codes) => codes,
        Err(code) => vec![code; partitions.len()],
    };
    let mut r = AddPartitionsToTxnResponse::default();
    r.results_by_topic_v3_and_below = topic_results(partitions, codes);
    respond(header, &r)
}

/// v4+: several transactions, each verified or added by its coordinator.
async fn handle_transactions(ctx: &Context<'_>, request: AddPartitionsToTxnRequest) -> Response {
    if !ctx.authz.cluster(crate::authorizer::Operation::ClusterAction) {
        let mut r = AddPartitionsToTxnResponse::default();
        r.error_code = shardlog_protocol::error_code::CLUSTER_AUTHORIZATION_FAILED;
        return respond(ctx.header, &r);
    }
    let client_transaction_version = crate::txn::client_transaction_version(ctx.shard, ctx.header.api_version, 5);
    let results = request.transactions.iter().map(|t| async move {
        let id = t.transactional_id.0.to_string();
        let partitions: Vec<(String, i32)> = t.topics.iter().flat_map(|topic| topic.partitions.iter().map(move |p| (topic.name.0.to_string(), *p))).collect();
        let codes = if t.verify_only {
            let checks = partitions.iter().map(|partition| {
                let call =
                    Verify { transactional_id: id.clone(), producer_id: t.producer_id.0, producer_epoch: t.producer_epoch, partition: partition.clone() };
                async { ctx.coordinator_call(COORDINATOR, &id, call).await.unwrap_or_else(|code| code) }
            });
            futures::future::join_all(checks).await
        } else {
            let call = AddPartitions {
                transactional_id: id.clone(),
                producer_id: t.producer_id.0,
                producer_epoch: t.producer_epoch,
                partitions: partitions.clone(),
                client_transaction_version,
            };
            ctx.coordinator_call(COORDINATOR, &id, call).await.unwrap_or_else(|code| vec![code; partitions.len()])
        };
        let mut result = AddPartitionsToTxnResult::default();
        result.transactional_id = t.transactional_id.clone();
        result.topic_results = topic_results(partitions, codes);
        result
    });
    let mut r = AddPartitionsToTxnResponse::default();
    r.results_by_transaction = futures::future::join_all(results).await;
    respond(ctx.header, &r)
}

/// Per-partition codes grouped by topic, topics in order of first appearance.
fn topic_results(partitions: Vec<(String, i32)>, codes: Vec<i16>) -> Vec<AddPartitionsToTxnTopicResult> {
    let mut out: Vec<AddPartitionsToTxnTopicResult> = Vec::new();
    for ((topic, partition), code) in partitions.into_iter().zip(codes) {
        let mut result = AddPartitionsToTxnPartitionResult::default();
        result.partition_index = partition;
        result.partition_error_code = code;
        match out.iter_mut().find(|t| t.name.0.as_str() == topic) {
            Some(t) => t.results_by_partition.push(result),
            None => {
                let mut t = AddPartitionsToTxnTopicResult::default();
                t.name = super::topic_name(&topic);
                t.results_by_partition.push(result);
                out.push(t);
            }
        }
    }
    out
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
