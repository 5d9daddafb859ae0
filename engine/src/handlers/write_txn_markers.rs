//! WriteTxnMarkers (key 27, v1): broker to broker. The transaction coordinator of another broker
//! sends the commit or abort markers of a decided transaction for the partitions this broker
//! leads; each is written by the partition's owner shard, as the local coordinator writes its own
//! (an offsets partition's marker also settles the transaction's pending offset commits there).
//! Only principals with CLUSTER_ACTION on the cluster may write markers, as in Kafka.

use kafka_protocol::messages::write_txn_markers_response::{WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult};
use kafka_protocol::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};
use shardlog_protocol::error_code as ec;
use shardlog_protocol::kafka_protocol;

use super::{respond, Context, Response};
use crate::shard::messages::TxnMarker;

pub async fn handle(ctx: &Context<'_>, request: WriteTxnMarkersRequest) -> Response {
    if !ctx.authz.cluster(crate::authorizer::Operation::ClusterAction) {
        // Kafka answers every partition with the refusal.
        return respond(ctx.header, &response(&request, || ec::CLUSTER_AUTHORIZATION_FAILED));
    }
    // Every marker of every partition at once: each waits for its own fdatasync, and those on
    // one shard share a group commit.
    let writes = request.markers.iter().flat_map(|marker| {
        marker.topics.iter().flat_map(move |topic| {
            topic.partition_indexes.iter().map(move |&partition| {
                let name = topic.name.0.to_string();
                async move {
                    let Some(owner) = ctx.owner(&name, partition) else { return ctx.absent_partition_error(&name, partition) };
                    let call = TxnMarker {
                        topic: name.clone(),
                        partition,
                        producer_id: marker.producer_id.0,
                        producer_epoch: marker.producer_epoch,
                        commit: marker.transaction_result,
                        coordinator_epoch: marker.coordinator_epoch,
                    };
                    ctx.call(owner, call).await.unwrap_or_else(|e| {
                        tracing::warn!(topic = %name, partition, error = %e, "transaction marker from another broker not delivered to its shard");
                        ec::UNKNOWN_SERVER_ERROR
                    })
                }
            })
        })
    });
    let codes = futures::future::join_all(writes).await;
    let mut codes = codes.into_iter();
    let r = response(&request, || codes.next().expect("one code per partition, in request order"));
    respond(ctx.header, &r)
}

/// The response to `request`, with each partition's code from `code`, called in request order.
fn response(request: &WriteTxnMarkersRequest, mut code: impl FnMut() -> i16) -> WriteTxnMarkersResponse {
    let mut r = WriteTxnMarkersResponse::default();
    for marker in &request.markers {
        let mut result = WritableTxnMarkerResult::default();
        result.producer_id = marker.producer_id;
        for topic in &marker.topics {
            let mut t = WritableTxnMarkerTopicResult::default();
            t.name = topic.name.clone();
            for &partition in &topic.partition_indexes {
                let mut p = WritableTxnMarkerPartitionResult::default();
                p.partition_index = partition;
                p.error_code = code();
                t.partitions.push(p);
            }
            result.topics.push(t);
        }
        r.markers.push(result);
    }
    r
}
