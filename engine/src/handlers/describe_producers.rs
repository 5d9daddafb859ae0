//! DescribeProducers (key 61): the active producers of partitions, from each partition's
//! producer state on its owner shard.

use std::rc::Rc;

use kafka_protocol::messages::describe_producers_response::{PartitionResponse, ProducerState, TopicResponse};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};
use shardlog_protocol::error_code as ec;
use shardlog_protocol::kafka_protocol;
use shardlog_protocol::request::RequestHeader;

use super::{respond, Response};
use crate::shard::messages::DescribeProducers;
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, header: &RequestHeader, request: DescribeProducersRequest) -> Response {
    let mut r = DescribeProducersResponse::default();
    for topic in &request.topics {
        let name = topic.name.0.to_string();
        let calls = topic.partition_indexes.iter().map(|&index| {
            let shard = shard.clone();
            let name = name.clone();
            async move {
                let mut out = PartitionResponse::default();
                out.partition_index = index;
                let Some(owner) = shard.owner(&name, index) else {
                    out.error_code = ec::UNKNOWN_TOPIC_OR_PARTITION;
                    return out;
                };
                match shard.call(owner, DescribeProducers { topic: name, partition: index }).await {
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
