//! DescribeTransactions (key 65): the coordinator's view of transactional ids.

use std::rc::Rc;

use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::{DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId};
use shardlog_protocol::error_code as ec;
use shardlog_protocol::kafka_protocol;
use shardlog_protocol::request::RequestHeader;

use super::{respond, str_bytes, topic_name, Response};
use crate::shard::Shard;
use crate::txn::{TxnCall, TxnReply};

pub async fn handle(shard: &Rc<Shard>, header: &RequestHeader, request: DescribeTransactionsRequest) -> Response {
    let calls = request.transactional_ids.iter().map(|id| {
        let shard = shard.clone();
        let id = id.clone();
        async move {
            let mut state = TransactionState::default();
            state.transactional_id = id.clone();
            state.producer_id = ProducerId(-1);
            state.producer_epoch = -1;
            state.transaction_start_time_ms = -1;
            let reply = crate::txn::call(&shard, &id.0, TxnCall::Describe { transactional_id: id.0.to_string() }).await;
            match reply {
                Ok(TxnReply::Describe(Ok(d))) => {
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
                Ok(TxnReply::Describe(Err(code))) | Err(code) => state.error_code = code,
                Ok(_) => state.error_code = ec::UNKNOWN_SERVER_ERROR,
            }
            state
        }
    });
    let mut r = DescribeTransactionsResponse::default();
    r.transaction_states = futures::future::join_all(calls).await;
    respond(header, &r)
}
