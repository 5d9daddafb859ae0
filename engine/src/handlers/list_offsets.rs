//! ListOffsets (key 2): earliest (-2), latest (-1), or the first offset at a timestamp.

use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use shardlog_protocol::error_code::{self as ec, TOPIC_AUTHORIZATION_FAILED};
use shardlog_protocol::kafka_protocol;

use super::{respond, Context, Response};
use crate::authorizer::Operation;
use crate::shard::messages::ListOffset;

pub async fn handle(ctx: &Context<'_>, request: ListOffsetsRequest) -> Response {
    let header = ctx.header;
    let authz = &ctx.authz;
    let version = header.api_version;
    let mut r = ListOffsetsResponse::default();
    // isolation_level 1 (read_committed, v2+): "latest" is the last stable offset.
    let read_committed = version >= 2 && request.isolation_level == 1;
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let denied = !authz.topic(Operation::Describe, &name);
        let calls = topic.partitions.iter().map(|p| {
            let name = name.clone();
            let (index, timestamp, current_leader_epoch) = (p.partition_index, p.timestamp, p.current_leader_epoch);
            async move {
                let mut out = ListOffsetsPartitionResponse::default();
                out.partition_index = index;
                if denied {
                    out.error_code = TOPIC_AUTHORIZATION_FAILED;
                    out.offset = -1;
                    out.timestamp = -1;
                    return out;
                }
                let Some(owner) = ctx.owner(&name, index) else {
                    out.error_code = ctx.absent_partition_error(&name, index);
                    out.offset = -1;
                    out.timestamp = -1;
                    return out;
                };
                match ctx.call(owner, ListOffset { topic: name, partition: index, timestamp, read_committed, current_leader_epoch }).await {
                    Ok(listed) => {
                        out.error_code = listed.error_code;
                        out.offset = listed.offset;
                        out.timestamp = listed.timestamp;
                        if version >= 4 {
                            out.leader_epoch = listed.leader_epoch;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(partition = index, error = %e, "ListOffsets not delivered to the partition's shard");
                        out.error_code = ec::NOT_LEADER_OR_FOLLOWER;
                    }
                }
                out
            }
        });
        let mut t = ListOffsetsTopicResponse::default();
        t.name = topic.name.clone();
        t.partitions = futures::future::join_all(calls).await;
        r.topics.push(t);
    }
    respond(header, &r)
}
