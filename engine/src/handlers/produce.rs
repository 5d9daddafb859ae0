//! Produce (key 0): split by owner shard (one message per owner, with all of its partitions),
//! append, wait for the group commit when acks=all, and merge the per-partition results back in
//! request order.

use std::rc::Rc;

use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use shardlog_protocol::error_code::{self as ec, TOPIC_AUTHORIZATION_FAILED, TRANSACTIONAL_ID_AUTHORIZATION_FAILED};
use shardlog_protocol::kafka_protocol;
use shardlog_protocol::request::RequestHeader;

use super::{group_by_owner, respond, str_bytes, Response};
use crate::authorizer::Operation;
use crate::handlers::authz::Authz;
use crate::shard::messages::{Produce, ProduceOutcome};
use crate::shard::Shard;

fn failed(code: i16, message: Option<String>) -> ProduceOutcome {
    ProduceOutcome { error_code: code, base_offset: -1, log_append_time_ms: -1, log_start_offset: -1, error_message: message }
}

pub async fn handle(shard: &Rc<Shard>, header: &RequestHeader, request: ProduceRequest, authz: &Authz<'_>) -> Response {
    let acks = request.acks;
    let transactional_ok = request.transactional_id.as_ref().is_none_or(|id| authz.transactional_id(Operation::Write, id));
    let acks_valid = matches!(acks, -1..=1);
    let mut work = Vec::new();
    for topic in &request.topic_data {
        let name = topic.name.0.to_string();
        for p in &topic.partition_data {
            let outcome: Option<ProduceOutcome> = if !acks_valid {
                Some(failed(ec::INVALID_REQUIRED_ACKS, None))
            } else if !transactional_ok {
                Some(failed(TRANSACTIONAL_ID_AUTHORIZATION_FAILED, None))
            } else if !authz.topic(Operation::Write, &name) {
                Some(failed(TOPIC_AUTHORIZATION_FAILED, None))
            } else if crate::controller::is_internal_topic(&name) {
                Some(failed(ec::INVALID_TOPIC_EXCEPTION, Some(String::from("clients cannot produce to internal topics"))))
            } else {
                None
            };
            work.push((name.clone(), p.index, p.records.clone(), outcome));
        }
    }
    let transactional_id = request.transactional_id.as_ref().map(|id| id.0.to_string());
    // Answered here, or sent to the owner shard (one message per owner, in request order).
    let mut outcomes: Vec<Option<ProduceOutcome>> = Vec::with_capacity(work.len());
    let mut owners = Vec::with_capacity(work.len());
    for (name, index, records, outcome) in &work {
        let owner = shard.owner(name, *index);
        let (ready, send_to) = match (outcome, records, owner) {
            (Some(o), _, _) => (Some(o.clone()), None),
            (None, None, _) => (Some(failed(ec::INVALID_RECORD, Some(String::from("null record set")))), None),
            (None, Some(_), None) => (Some(failed(ec::UNKNOWN_TOPIC_OR_PARTITION, None)), None),
            (None, Some(_), Some(owner)) => (None, Some(owner)),
        };
        outcomes.push(ready);
        owners.push(send_to);
    }
    let calls = group_by_owner(owners).into_iter().map(|(owner, positions)| {
        let partitions: Vec<(String, i32, bytes::Bytes)> = positions
            .iter()
            .map(|&i| {
                let (name, index, records, _) = &work[i];
                (name.clone(), *index, records.clone().expect("only partitions with records are sent"))
            })
            .collect();
        let shard = shard.clone();
        let transactional_id = transactional_id.clone();
        async move {
            let count = partitions.len();
            let replied = match shard.call(owner, Produce { partitions, acks, transactional_id }).await {
                Ok(o) => {
                    assert_eq!(o.len(), count, "owner shard {owner} answered {} of {count} partitions", o.len());
                    o
                }
                // Retriable: the client refreshes its metadata and sends again.
                Err(e) => vec![failed(ec::NOT_LEADER_OR_FOLLOWER, Some(e.to_string())); count],
            };
            positions.into_iter().zip(replied).collect::<Vec<_>>()
        }
    });
    for (i, o) in futures::future::join_all(calls).await.into_iter().flatten() {
        outcomes[i] = Some(o);
    }
    let results = work.into_iter().zip(outcomes).map(|((name, index, _, _), o)| (name, index, o.expect("every partition has an outcome")));
    if acks == 0 {
        return Response::Nothing;
    }
    let mut r = ProduceResponse::default();
    for (name, index, outcome) in results {
        let position = match r.responses.iter().position(|t: &TopicProduceResponse| t.name.0.as_str() == name) {
            Some(i) => i,
            None => {
                let mut t = TopicProduceResponse::default();
                t.name = super::topic_name(&name);
                r.responses.push(t);
                r.responses.len() - 1
            }
        };
        let mut p = PartitionProduceResponse::default();
        p.index = index;
        p.error_code = outcome.error_code;
        p.base_offset = outcome.base_offset;
        p.log_append_time_ms = outcome.log_append_time_ms;
        if header.api_version >= 5 {
            p.log_start_offset = outcome.log_start_offset;
        }
        if header.api_version >= 8 {
            p.error_message = outcome.error_message.as_deref().map(str_bytes);
        }
        r.responses[position].partition_responses.push(p);
    }
    respond(header, &r)
}
