//! DescribeProducers (key 61): the active producers of partitions, from each partition's
//! producer state on its owner shard.

use kafka_protocol::messages::describe_producers_response::{PartitionResponse, ProducerState, TopicResponse};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};
use shardlog_protocol::error_code as ec;
use shardlog_protocol::kafka_protocol;

use super::{respond, Context, Response};
use crate::shard::messages::DescribeProducers;

pub async fn handle(ctx: &Context<'_>, request: DescribeProducersRequest) -> Response {
    if let Some(denied) = denial(ctx, &request) {
        return denied;
    }
    let header = ctx.header;
    let mut r = DescribeProducersResponse::default();
    for topic in &request.topics {
        let name = topic.name.0.to_string();
        let calls = topic.partition_indexes.iter().map(|&index| {
            let name = name.clone();
            async move {
                let mut out = PartitionResponse::default();
                out.partition_index = index;
                let Some(owner) = ctx.owner(&name, index) else {
                    out.error_code = ec::UNKNOWN_TOPIC_OR_PARTITION;
                    return out;
                };
                match ctx.call(owner, DescribeProducers { topic: name, partition: index }).await {
                    Ok((code, producers)) => {
                        out.error_code = code;
                        out.active_producers = producers
                            .into_iter()
                            .map(|p| {
                                let mut s = ProducerState::default();
                                s.producer_id = ProducerId(p.producer_id);
                                s.producer_epoch = p.producer_epoch as i32;
                                s.last_sequence = p.last_sequence;
                                s.last_timestamp = p.last_timestamp_ms;
                                s.coordinator_epoch = p.coordinator_epoch;
                                s.current_txn_start_offset = p.current_txn_start_offset;
                                s
                            })
                            .collect();
                    }
                    Err(e) => {
                        tracing::warn!(partition = index, error = %e, "DescribeProducers not delivered to the partition's shard");
                        out.error_code = ec::NOT_LEADER_OR_FOLLOWER;
                    }
                }
                out
            }
        });
        let mut t = TopicResponse::default();
        t.name = topic.name.clone();
        t.partitions = futures::future::join_all(calls).await;
        r.topics.push(t);
    }
    respond(header, &r)
}

/// The request refused whole, with Kafka's error, when the principal lacks what it needs.
fn denial(ctx: &Context<'_>, request: &DescribeProducersRequest) -> Option<Response> {
    use crate::authorizer::Operation::*;
    use kafka_protocol::messages as m;
    let (authz, header, r) = (&ctx.authz, ctx.header, request);
    if r.topics.iter().any(|t| !authz.topic(Read, &t.name)) {
        let mut response = m::DescribeProducersResponse::default();
        for t in &r.topics {
            let mut topic = m::describe_producers_response::TopicResponse::default();
            topic.name = t.name.clone();
            let code = if authz.may_see(Read, crate::authorizer::ResourceType::Topic, &t.name) {
                shardlog_protocol::error_code::OPERATION_NOT_ATTEMPTED
            } else {
                shardlog_protocol::error_code::TOPIC_AUTHORIZATION_FAILED
            };
            for p in &t.partition_indexes {
                let mut result = m::describe_producers_response::PartitionResponse::default();
                result.partition_index = *p;
                result.error_code = code;
                result.error_message = None;
                topic.partitions.push(result);
            }
            response.topics.push(topic);
        }
        return Some(respond(header, &response));
    }
    None
}
