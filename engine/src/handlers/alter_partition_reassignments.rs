//! AlterPartitionReassignments (key 45, v0-1): moves partitions to other brokers (KIP-455), as
//! `kafka-reassign-partitions.sh --execute` asks; ALTER on the cluster. The active controller
//! adds the target's new replicas, which catch up as followers, and takes the old ones out
//! once every new one is in the ISR; a partition named with no replicas has its reassignment
//! cancelled. v1 carries KIP-860's AllowReplicationFactorChange.

use kafka_protocol::messages::alter_partition_reassignments_response::{ReassignablePartitionResponse, ReassignableTopicResponse};
use kafka_protocol::messages::{AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, TopicName};
use shardlog_protocol::error_code as ec;
use shardlog_protocol::kafka_protocol;

use super::{call_controller, respond, str_bytes, Context, Response};
use crate::controller::ControllerRequest;

pub async fn handle(ctx: &Context<'_>, request: AlterPartitionReassignmentsRequest) -> Response {
    let partitions: Vec<(String, i32, Option<Vec<i32>>)> = request
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (t.name.to_string(), p.partition_index, p.replicas.as_ref().map(|r| r.iter().map(|b| b.0).collect()))))
        .collect();
    let mut r = AlterPartitionReassignmentsResponse::default();
    r.allow_replication_factor_change = request.allow_replication_factor_change;
    let outcomes: Vec<(String, i32, i16, Option<String>)> = if !ctx.authz.cluster(crate::authorizer::Operation::Alter) {
        // As Kafka: the whole request refused, and each partition with it.
        r.error_code = ec::CLUSTER_AUTHORIZATION_FAILED;
        partitions.into_iter().map(|(t, p, _)| (t, p, ec::CLUSTER_AUTHORIZATION_FAILED, None)).collect()
    } else if partitions.is_empty() {
        Vec::new()
    } else {
        let call = ControllerRequest::AlterPartitionReassignments {
            partitions: partitions.clone(),
            allow_replication_factor_change: request.allow_replication_factor_change,
        };
        let mut answered = call_controller(ctx, call).await.into_iter();
        partitions
            .into_iter()
            .map(|(topic, partition, _)| {
                let (code, message) = answered.next().map(|(_, code, message)| (code, message)).unwrap_or_else(|| {
                    (ec::UNKNOWN_SERVER_ERROR, Some("the controller did not answer; the reassignment may or may not have started".into()))
                });
                if code != ec::NONE {
                    tracing::info!(peer = %ctx.session.peer, topic = %topic, partition, code = %ec::error_name(code), error = ?message, "AlterPartitionReassignments: refused");
                }
                (topic, partition, code, message)
            })
            .collect()
    };
    for (topic, partition, code, message) in outcomes {
        if r.responses.last().is_none_or(|t: &ReassignableTopicResponse| t.name.as_str() != topic) {
            let mut t = ReassignableTopicResponse::default();
            t.name = TopicName(str_bytes(&topic));
            r.responses.push(t);
        }
        let mut p = ReassignablePartitionResponse::default();
        p.partition_index = partition;
        p.error_code = code;
        p.error_message = message.as_deref().map(str_bytes);
        r.responses.last_mut().expect("pushed above").partitions.push(p);
    }
    respond(ctx.header, &r)
}
