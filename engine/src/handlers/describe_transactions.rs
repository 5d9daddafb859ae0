//! DescribeTransactions (key 65): the coordinator's view of transactional ids.

use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::{DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId};
use shardlog_protocol::kafka_protocol;

use super::{respond, str_bytes, topic_name, Context, Response};
use crate::txn::{Describe, COORDINATOR};

pub async fn handle(ctx: &Context<'_>, request: DescribeTransactionsRequest) -> Response {
    if let Some(denied) = denial(ctx, &request) {
        return denied;
    }
    let header = ctx.header;
    let calls = request.transactional_ids.iter().map(|id| {
        let id = id.clone();
        async move {
            let mut state = TransactionState::default();
            state.transactional_id = id.clone();
            state.producer_id = ProducerId(-1);
            state.producer_epoch = -1;
            state.transaction_start_time_ms = -1;
            let reply = ctx.coordinator_call(COORDINATOR, &id.0, Describe { transactional_id: id.0.to_string() }).await;
            match reply {
                Ok(Ok(d)) => {
                    state.transaction_state = str_bytes(d.state);
                    state.transaction_timeout_ms = d.timeout_ms;
                    state.transaction_start_time_ms = d.start_ms;
                    state.producer_id = ProducerId(d.producer_id);
                    state.producer_epoch = d.producer_epoch;
                    for (topic, partition) in d.partitions {
                        match state.topics.iter_mut().find(|t: &&mut TopicData| t.topic.0.as_str() == topic) {
                            Some(t) => t.partitions.push(partition),
                            None => {
                                let mut t = TopicData::default();
                                t.topic = topic_name(&topic);
                                t.partitions.push(partition);
                                state.topics.push(t);
                            }
                        }
                    }
                }
                Ok(Err(code)) | Err(code) => state.error_code = code,
            }
            state
        }
    });
    let mut r = DescribeTransactionsResponse::default();
    r.transaction_states = futures::future::join_all(calls).await;
    respond(header, &r)
}

/// The request refused whole, with Kafka's error, when the principal lacks what it needs.
fn denial(ctx: &Context<'_>, request: &DescribeTransactionsRequest) -> Option<Response> {
    use crate::authorizer::Operation::*;
    use kafka_protocol::messages as m;
    use shardlog_protocol::error_code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED as TXN_DENIED;
    let (authz, header, r) = (&ctx.authz, ctx.header, request);
    if r.transactional_ids.iter().any(|id| !authz.transactional_id(Describe, id)) {
        let mut response = m::DescribeTransactionsResponse::default();
        for id in &r.transactional_ids {
            let mut state = m::describe_transactions_response::TransactionState::default();
            state.transactional_id = id.clone();
            state.producer_id = m::ProducerId(-1);
            state.producer_epoch = -1;
            state.transaction_start_time_ms = -1;
            state.error_code = if authz.may_see(Describe, crate::authorizer::ResourceType::TransactionalId, id) {
                shardlog_protocol::error_code::OPERATION_NOT_ATTEMPTED
            } else {
                TXN_DENIED
            };
            response.transaction_states.push(state);
        }
        return Some(respond(header, &response));
    }
    None
}
