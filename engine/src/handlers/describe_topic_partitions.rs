//! DescribeTopicPartitions (key 75, KIP-966): Metadata's topic half, paged. Kafka 4's admin
//! client describes topics with it. Topics come back sorted by name; an answer describes at
//! most `min(ResponsePartitionLimit, max.request.partition.size.limit)` partitions and names
//! where the next page starts (`NextCursor`).

use kafka_protocol::messages::describe_topic_partitions_response::{Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic};
use kafka_protocol::messages::{BrokerId, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse};
use shardlog_protocol::error_code as ec;
use shardlog_protocol::kafka_protocol;

use super::metadata::partition_state;
use super::{respond, topic_name, Context, Response};
use crate::authorizer::{Operation, ResourceType};
use crate::metadata::validate_topic_name;

pub fn handle(ctx: &Context<'_>, request: DescribeTopicPartitionsRequest) -> Response {
    let header = ctx.header;
    let authz = &ctx.authz;
    let meta = ctx.metadata();
    let all = request.topics.is_empty();
    let cursor = request.cursor.as_ref().map(|c| (c.topic_name.0.to_string(), c.partition_index));
    let cursor_topic = cursor.as_ref().map_or("", |(t, _)| t.as_str());
    let mut r = DescribeTopicPartitionsResponse::default();

    let mut names: Vec<String> = if all {
        meta.topics.keys().filter(|n| n.as_str() >= cursor_topic).cloned().collect()
    } else {
        request.topics.iter().map(|t| t.name.0.to_string()).filter(|n| n.as_str() >= cursor_topic).collect()
    };
    names.sort();
    names.dedup();
    if !all && cursor.is_some() && !names.iter().any(|n| n == cursor_topic) {
        // Kafka refuses the whole request; its error answer marks every topic asked for.
        tracing::info!(cursor = cursor_topic, "DescribeTopicPartitions: the cursor's topic is not among the topics asked for");
        r.topics = request.topics.iter().map(|t| unanswered(&t.name.0, ec::INVALID_REQUEST)).collect();
        return respond(header, &r);
    }
    if cursor.as_ref().is_some_and(|(_, p)| *p < 0) {
        tracing::info!(cursor = cursor_topic, "DescribeTopicPartitions: negative cursor partition");
        r.topics = names.iter().map(|n| unanswered(n, ec::INVALID_REQUEST)).collect();
        return respond(header, &r);
    }

    // A topic the principal may not describe is left out of "all topics", and answered
    // TOPIC_AUTHORIZATION_FAILED, without saying whether it exists, when asked for by name.
    let mut denied = Vec::new();
    names.retain(|n| {
        let allowed = if all { authz.may_see(Operation::Describe, ResourceType::Topic, n) } else { authz.topic(Operation::Describe, n) };
        if !allowed && !all {
            denied.push(unanswered(n, ec::TOPIC_AUTHORIZATION_FAILED));
        }
        allowed
    });

    let mut remaining = request.response_partition_limit.min(ctx.config().max_request_partition_size_limit);
    let online: Vec<i32> = ctx.brokers().iter().map(|b| b.node_id).collect();
    let node = ctx.config().node_id;
    for name in names {
        if remaining <= 0 {
            // Every partition of the topics before this one was described: the next page
            // starts at this topic's first partition.
            r.next_cursor = Some(Cursor::default().with_topic_name(topic_name(&name)).with_partition_index(0));
            break;
        }
        let Some(topic) = meta.topics.get(&name) else {
            if !all {
                let code = if validate_topic_name(&name).is_err() { ec::INVALID_TOPIC_EXCEPTION } else { ec::UNKNOWN_TOPIC_OR_PARTITION };
                r.topics.push(unanswered(&name, code));
            }
            continue;
        };
        let start = if name == cursor_topic { cursor.as_ref().map_or(0, |(_, p)| *p as usize) } else { 0 };
        let count = topic.partitions.len();
        let end = count.min(start.saturating_add(remaining as usize));
        let mut t = DescribeTopicPartitionsResponseTopic::default();
        t.name = Some(topic_name(&name));
        t.topic_id = topic.id;
        t.is_internal = crate::controller::is_internal_topic(&name);
        t.topic_authorized_operations = authz.authorized_operations(ResourceType::Topic, &name);
        t.partitions = (start..end)
            .map(|index| {
                let state = partition_state(&topic.partitions[index], node, &online);
                let mut p = DescribeTopicPartitionsResponsePartition::default();
                p.partition_index = index as i32;
                p.leader_id = BrokerId(state.leader);
                p.leader_epoch = state.leader_epoch;
                p.replica_nodes = state.replicas.into_iter().map(BrokerId).collect();
                p.isr_nodes = state.isr.into_iter().map(BrokerId).collect();
                p.offline_replicas = state.offline.into_iter().map(BrokerId).collect();
                // Eligible leader replicas (KIP-966) are not kept (eligible.leader.replicas.version
                // is 0): empty lists, as Kafka sends then, never null, which Kafka's admin client
                // does not expect.
                p.eligible_leader_replicas = Some(Vec::new());
                p.last_known_elr = Some(Vec::new());
                p
            })
            .collect();
        let described = t.partitions.len() as i32;
        r.topics.push(t);
        if end < count {
            r.next_cursor = Some(Cursor::default().with_topic_name(topic_name(&name)).with_partition_index(end as i32));
            break;
        }
        remaining -= described;
    }
    r.topics.extend(denied);
    respond(header, &r)
}

/// A topic answered with an error alone: no id (Kafka sends the zero id), no partitions.
fn unanswered(name: &str, code: i16) -> DescribeTopicPartitionsResponseTopic {
    let mut t = DescribeTopicPartitionsResponseTopic::default();
    t.name = Some(topic_name(name));
    t.error_code = code;
    t.is_internal = crate::controller::is_internal_topic(name);
    t.topic_authorized_operations = i32::MIN;
    t
}
