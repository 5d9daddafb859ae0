//! CreatePartitions (key 37), through the controller shard.

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use shardlog_protocol::error_code::TOPIC_AUTHORIZATION_FAILED;
use shardlog_protocol::kafka_protocol;

use super::{call_controller, respond, str_bytes, topic_name, Context, Response};
use crate::authorizer::Operation;
use crate::controller::{ControllerRequest, NewPartitions};

pub async fn handle(ctx: &Context<'_>, request: CreatePartitionsRequest) -> Response {
    let header = ctx.header;
    let authz = &ctx.authz;
    let meta = ctx.metadata();
    // KIP-599: the partitions each topic gains come out of the client's bucket (strict from
    // v3); a topic that would gain none (unknown, or not growing) takes nothing.
    let mut results = Vec::new();
    let mut authorized = Vec::new();
    for t in &request.topics {
        if authz.topic(Operation::Alter, &t.name) {
            authorized.push(t);
        } else {
            results.push((t.name.0.to_string(), TOPIC_AUTHORIZATION_FAILED, Some(String::from("not authorized to alter this topic"))));
        }
    }
    let added = |t: &&kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic| {
        let added = meta.topics.get(t.name.0.as_str()).map_or(0, |topic| i64::from(t.count) - topic.partitions.len() as i64);
        (!request.validate_only && added > 0).then_some(added)
    };
    let admitted = super::mutation_quota::admit(ctx, 3, authorized, added, |t| t.name.0.to_string()).await;
    results.extend(admitted.refused);
    let topics: Vec<NewPartitions> = admitted
        .allowed
        .into_iter()
        .map(|t| {
            let assignments = t.assignments.as_ref().map(|a| a.iter().map(|a| a.broker_ids.iter().map(|b| b.0).collect()).collect());
            NewPartitions { name: t.name.0.to_string(), count: t.count, assignments }
        })
        .collect();
    if !topics.is_empty() {
        results.extend(call_controller(ctx, ControllerRequest::CreatePartitions { topics, validate_only: request.validate_only }).await);
    }
    let mut r = CreatePartitionsResponse::default();
    r.throttle_time_ms = admitted.throttle_ms;
    for (name, code, message) in results {
        let mut t = CreatePartitionsTopicResult::default();
        t.name = topic_name(&name);
        t.error_code = code;
        t.error_message = message.as_deref().map(str_bytes);
        r.results.push(t);
    }
    respond(header, &r)
}
