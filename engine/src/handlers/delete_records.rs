//! DeleteRecords (key 21): moves each partition's log start offset up, on its owner shard.

use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use shardlog_protocol::error_code as ec;
use shardlog_protocol::kafka_protocol;

use super::{respond, Context, Response};
use crate::shard::messages::DeleteRecords;

pub async fn handle(ctx: &Context<'_>, request: DeleteRecordsRequest) -> Response {
    if let Some(denied) = denial(ctx, &request) {
        return denied;
    }
    let header = ctx.header;
    let mut response = DeleteRecordsResponse::default();
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let calls = topic.partitions.iter().map(|p| {
            let name = name.clone();
            let (index, offset) = (p.partition_index, p.offset);
            async move {
                let mut out = DeleteRecordsPartitionResult::default();
                out.partition_index = index;
                out.low_watermark = -1;
                // Kafka refuses DeleteRecords on its internal topics: their records are the
                // broker's own state.
                if crate::controller::is_internal_topic(&name) {
                    out.error_code = ec::INVALID_TOPIC_EXCEPTION;
                    return out;
                }
                let Some(owner) = ctx.owner(&name, index) else {
                    out.error_code = ec::UNKNOWN_TOPIC_OR_PARTITION;
                    return out;
                };
                match ctx.call(owner, DeleteRecords { topic: name.clone(), partition: index, offset }).await {
                    Ok(deleted) => {
                        if let Some(m) = deleted.error_message {
                            tracing::info!(topic = %name, partition = index, error = %m, "DeleteRecords refused");
                        }
                        out.error_code = deleted.error_code;
                        out.low_watermark = deleted.low_watermark;
                    }
                    Err(e) => {
                        tracing::warn!(topic = %name, partition = index, error = %e, "DeleteRecords not delivered to the partition's shard");
                        out.error_code = ec::NOT_LEADER_OR_FOLLOWER;
                    }
                }
                out
            }
        });
        let mut t = DeleteRecordsTopicResult::default();
        t.name = topic.name.clone();
        t.partitions = futures::future::join_all(calls).await;
        response.topics.push(t);
    }
    respond(header, &response)
}

/// The request refused whole, with Kafka's error, when the principal lacks what it needs.
fn denial(ctx: &Context<'_>, request: &DeleteRecordsRequest) -> Option<Response> {
    use crate::authorizer::Operation::*;
    use kafka_protocol::messages as m;
    let (authz, header, r) = (&ctx.authz, ctx.header, request);
    if r.topics.iter().any(|t| !authz.topic(Delete, &t.name)) {
        let mut response = m::DeleteRecordsResponse::default();
        for t in &r.topics {
            let mut topic = m::delete_records_response::DeleteRecordsTopicResult::default();
            topic.name = t.name.clone();
            for p in &t.partitions {
                let mut result = m::delete_records_response::DeleteRecordsPartitionResult::default();
                result.partition_index = p.partition_index;
                result.low_watermark = -1;
                result.error_code = shardlog_protocol::error_code::TOPIC_AUTHORIZATION_FAILED;
                topic.partitions.push(result);
            }
            response.topics.push(topic);
        }
        return Some(respond(header, &response));
    }
    None
}
