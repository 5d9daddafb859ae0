//! ElectLeaders (key 43, v0-2): preferred or unclean leader elections (KIP-460), as
//! `kafka-leader-election.sh` asks for them; ALTER on the cluster. The active controller
//! elects, as Kafka's does: ELECTION_NOT_NEEDED where the partition already has the leader
//! the election would give it, PREFERRED_LEADER_NOT_AVAILABLE or ELIGIBLE_LEADERS_NOT_AVAILABLE
//! where no replica qualifies. With no partitions named, every partition is tried and only
//! those not already as wanted are answered.

use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};
use shardlog_protocol::error_code as ec;
use shardlog_protocol::kafka_protocol;

use super::{call_controller, respond, str_bytes, Context, Response};
use crate::controller::ControllerRequest;

pub async fn handle(ctx: &Context<'_>, request: ElectLeadersRequest) -> Response {
    let header = ctx.header;
    let all = request.topic_partitions.is_none();
    let partitions: Vec<(String, i32)> = match &request.topic_partitions {
        Some(topics) => topics.iter().flat_map(|t| t.partitions.iter().map(move |p| (t.topic.to_string(), *p))).collect(),
        None => {
            let meta = ctx.metadata();
            meta.topics.iter().flat_map(|(name, t)| (0..t.partitions.len() as i32).map(move |p| (name.clone(), p))).collect()
        }
    };
    let mut r = ElectLeadersResponse::default();
    if !ctx.authz.cluster(crate::authorizer::Operation::Alter) {
        // As Kafka: the whole request refused, each partition named with the error (none when
        // it asked for every partition).
        r.error_code = ec::CLUSTER_AUTHORIZATION_FAILED;
        let named: Vec<(String, i32)> = if all { Vec::new() } else { partitions };
        r.replica_election_results = results(named.into_iter().map(|(t, p)| (t, p, ec::CLUSTER_AUTHORIZATION_FAILED, None)));
        return respond(header, &r);
    }
    let election_type = if header.api_version >= 1 { request.election_type } else { crate::controller::ELECTION_PREFERRED };
    let answered = if partitions.is_empty() {
        Vec::new()
    } else {
        call_controller(ctx, ControllerRequest::ElectLeaders { election_type, partitions: partitions.clone() }).await
    };
    let mut answered = answered.into_iter();
    let outcomes = partitions.into_iter().map(|(topic, partition)| {
        let (code, message) = answered
            .next()
            .map(|(_, code, message)| (code, message))
            .unwrap_or_else(|| (ec::UNKNOWN_SERVER_ERROR, Some("the controller did not answer; the election may or may not have happened".into())));
        (topic, partition, code, message)
    });
    // For every partition, Kafka leaves out those that already have the leader wanted.
    let outcomes: Vec<_> = outcomes.filter(|(_, _, code, _)| !(all && *code == ec::ELECTION_NOT_NEEDED)).collect();
    for (topic, partition, code, message) in &outcomes {
        if *code != ec::NONE && *code != ec::ELECTION_NOT_NEEDED {
            tracing::info!(peer = %ctx.session.peer, topic = %topic, partition, code = %ec::error_name(*code), error = ?message, "ElectLeaders: no election");
        }
    }
    r.replica_election_results = results(outcomes.into_iter());
    respond(header, &r)
}

/// Per-partition outcomes grouped by topic, in the order they come.
fn results(outcomes: impl Iterator<Item = (String, i32, i16, Option<String>)>) -> Vec<ReplicaElectionResult> {
    let mut by_topic: Vec<ReplicaElectionResult> = Vec::new();
    for (topic, partition, code, message) in outcomes {
        if by_topic.last().is_none_or(|t| t.topic.as_str() != topic) {
            let mut t = ReplicaElectionResult::default();
            t.topic = TopicName(str_bytes(&topic));
            by_topic.push(t);
        }
        let mut p = PartitionResult::default();
        p.partition_id = partition;
        p.error_code = code;
        p.error_message = message.as_deref().map(str_bytes);
        by_topic.last_mut().expect("pushed above").partition_result.push(p);
    }
    by_topic
}
