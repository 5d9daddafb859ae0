//! OffsetForLeaderEpoch (key 23): for each partition, the largest leader epoch at or below the
//! asked one and the offset where it ended in the leader's log. Followers ask it after a leader
//! change to find where to truncate; consumers (KIP-320) to detect that the log they read was
//! truncated. As Kafka authorizes it: CLUSTER_ACTION (a broker) sees every topic, anyone else
//! needs DESCRIBE on each topic.

use kafka_protocol::messages::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use shardlog_protocol::error_code::{self as ec, TOPIC_AUTHORIZATION_FAILED};
use shardlog_protocol::kafka_protocol;

use super::{group_by_owner, respond, Context, Response};
use crate::authorizer::Operation;
use crate::shard::messages::{EpochEnd, EpochEndOffsets, EpochQuery};

pub async fn handle(ctx: &Context<'_>, request: OffsetForLeaderEpochRequest) -> Response {
    let header = ctx.header;
    // Replicas act for the cluster; checked once, not per topic, as Kafka does.
    let cluster_action = ctx.authz.cluster(Operation::ClusterAction);
    let mut queries = Vec::new();
    let mut early: Vec<Option<i16>> = Vec::new();
    let mut owners = Vec::new();
    for t in &request.topics {
        let name = t.topic.0.to_string();
        let denied = !cluster_action && !ctx.authz.topic(Operation::Describe, &name);
        for p in &t.partitions {
            let owner = if denied { None } else { ctx.owner(&name, p.partition) };
            early.push(match (denied, owner) {
                (true, _) => Some(TOPIC_AUTHORIZATION_FAILED),
                (false, None) => Some(ctx.absent_partition_error(&name, p.partition)),
                (false, Some(_)) => None,
            });
            owners.push(owner);
            queries.push(EpochQuery {
                topic: name.clone(),
                partition: p.partition,
                current_leader_epoch: p.current_leader_epoch,
                leader_epoch: p.leader_epoch,
            });
        }
    }
    let mut answers: Vec<EpochEnd> = early.iter().map(|code| EpochEnd { error_code: code.unwrap_or(ec::NONE), leader_epoch: -1, end_offset: -1 }).collect();
    let calls = group_by_owner(owners).into_iter().map(|(owner, positions)| {
        let partitions = positions.iter().map(|&i| queries[i].clone()).collect();
        async move {
            let replied = match ctx.call(owner, EpochEndOffsets { partitions }).await {
                Ok(replied) => replied,
                Err(e) => {
                    tracing::warn!(shard = owner, error = %e, "OffsetForLeaderEpoch not delivered to the partitions' shard");
                    vec![EpochEnd { error_code: ec::NOT_LEADER_OR_FOLLOWER, leader_epoch: -1, end_offset: -1 }; positions.len()]
                }
            };
            positions.into_iter().zip(replied).collect::<Vec<_>>()
        }
    });
    for (i, answer) in futures::future::join_all(calls).await.into_iter().flatten() {
        answers[i] = answer;
    }
    let mut response = OffsetForLeaderEpochResponse::default();
    let mut answers = answers.into_iter();
    for t in request.topics {
        let mut topic = OffsetForLeaderTopicResult::default();
        topic.topic = t.topic;
        for p in t.partitions {
            let answer = answers.next().expect("one answer per partition asked");
            let mut out = EpochEndOffset::default();
            out.partition = p.partition;
            out.error_code = answer.error_code;
            out.leader_epoch = answer.leader_epoch;
            out.end_offset = answer.end_offset;
            topic.partitions.push(out);
        }
        response.topics.push(topic);
    }
    respond(header, &response)
}
