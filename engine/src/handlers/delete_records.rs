//! DeleteRecords (key 21): moves each partition's log start offset up, on its owner shard.

use std::rc::Rc;

use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use shardlog_protocol::error_code as ec;
use shardlog_protocol::kafka_protocol;
use shardlog_protocol::request::RequestHeader;

use super::{respond, Response};
use crate::shard::messages::DeleteRecords;
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, header: &RequestHeader, request: DeleteRecordsRequest) -> Response {
    let mut response = DeleteRecordsResponse::default();
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let calls = topic.partitions.iter().map(|p| {
            let shard = shard.clone();
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
                let Some(owner) = shard.owner(&name, index) else {
                    out.error_code = ec::UNKNOWN_TOPIC_OR_PARTITION;
                    return out;
                };
                match shard.call(owner, DeleteRecords { topic: name.clone(), partition: index, offset }).await {
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
