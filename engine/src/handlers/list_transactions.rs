//! ListTransactions (key 66): the transactional ids of every coordinator shard, filtered by
//! state, producer id, duration (v1+) and id pattern (v2+).

use kafka_protocol::messages::list_transactions_response::TransactionState;
use kafka_protocol::messages::{ListTransactionsRequest, ListTransactionsResponse, ProducerId, TransactionalId};
use shardlog_protocol::kafka_protocol;

use super::{respond, str_bytes, Context, Response};
use crate::authorizer::{Operation, ResourceType};
use crate::txn::List;

/// The states Kafka's ListTransactions knows; other filters are reported back as unknown.
const KNOWN_STATES: &[&str] = &["Empty", "Ongoing", "PrepareCommit", "PrepareAbort", "CompleteCommit", "CompleteAbort", "Dead", "PrepareEpochFence"];

pub async fn handle(ctx: &Context<'_>, request: ListTransactionsRequest) -> Response {
    let header = ctx.header;
    let authz = &ctx.authz;
    let states: Vec<String> = request.state_filters.iter().map(|s| s.to_string()).collect();
    let call = List {
        states: states.clone(),
        producer_ids: request.producer_id_filters.iter().map(|p| p.0).collect(),
        duration_ms: if header.api_version >= 1 { request.duration_filter } else { -1 },
        pattern: if header.api_version >= 2 { request.transactional_id_pattern.as_ref().map(|p| p.to_string()) } else { None },
    };
    let mut r = ListTransactionsResponse::default();
    r.unknown_state_filters = states.iter().filter(|s| !KNOWN_STATES.contains(&s.as_str())).map(|s| str_bytes(s)).collect();
    for d in ctx.call_every_shard(|| call.clone()).await.into_iter().flatten() {
        // Only the transactional ids the principal may describe.
        if !authz.may_see(Operation::Describe, ResourceType::TransactionalId, &d.transactional_id) {
            continue;
        }
        let mut t = TransactionState::default();
        t.transactional_id = TransactionalId(str_bytes(&d.transactional_id));
        t.producer_id = ProducerId(d.producer_id);
        t.transaction_state = str_bytes(d.state);
        r.transaction_states.push(t);
    }
    respond(header, &r)
}
