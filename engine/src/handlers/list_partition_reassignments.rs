//! ListPartitionReassignments (key 46, v0): the reassignments in progress (KIP-455), as
//! `kafka-reassign-partitions.sh --verify` and `--list` ask; DESCRIBE on the cluster. Answered
//! from this broker's copy of the metadata; named partitions that do not exist or are not
//! being moved are left out, as Kafka's controller leaves them.

use kafka_protocol::messages::list_partition_reassignments_response::{OngoingPartitionReassignment, OngoingTopicReassignment};
use kafka_protocol::messages::{BrokerId, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName};
use shardlog_protocol::error_code as ec;
use shardlog_protocol::kafka_protocol;

use super::{respond, str_bytes, Context, Response};

pub fn handle(ctx: &Context<'_>, request: ListPartitionReassignmentsRequest) -> Response {
    let mut r = ListPartitionReassignmentsResponse::default();
    if !ctx.authz.cluster(crate::authorizer::Operation::Describe) {
        r.error_code = ec::CLUSTER_AUTHORIZATION_FAILED;
        return respond(ctx.header, &r);
    }
    let meta = ctx.metadata();
    let wanted: Vec<(String, Vec<i32>)> = match &request.topics {
        Some(topics) => topics.iter().map(|t| (t.name.to_string(), t.partition_indexes.clone())).collect(),
        None => meta.topics.iter().map(|(name, t)| (name.clone(), (0..t.partitions.len() as i32).collect())).collect(),
    };
    let brokers = |ids: &[i32]| ids.iter().map(|&id| BrokerId(id)).collect::<Vec<_>>();
    for (name, indexes) in wanted {
        let Some(topic) = meta.topics.get(&name) else { continue };
        let mut t = OngoingTopicReassignment::default();
        t.name = TopicName(str_bytes(&name));
        for index in indexes {
            let Some(p) = usize::try_from(index).ok().and_then(|i| topic.partitions.get(i)).filter(|p| p.reassigning()) else { continue };
            let mut ongoing = OngoingPartitionReassignment::default();
            ongoing.partition_index = index;
            ongoing.replicas = brokers(&p.replicas);
            ongoing.adding_replicas = brokers(&p.adding_replicas);
            ongoing.removing_replicas = brokers(&p.removing_replicas);
            t.partitions.push(ongoing);
        }
        if !t.partitions.is_empty() {
            r.topics.push(t);
        }
    }
    respond(ctx.header, &r)
}
