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
    let mut results = Vec::new();
    let mut topics = Vec::new();
    for t in &request.topics {
        if !authz.topic(Operation::Alter, &t.name) {
            results.push((t.name.0.to_string(), TOPIC_AUTHORIZATION_FAILED, Some(String::from("not authorized to alter this topic"))));
        } else {
            let assignments = t.assignments.as_ref().map(|a| a.iter().map(|a| a.broker_ids.iter().map(|b| b.0).collect()).collect());
            topics.push(NewPartitions { name: t.name.0.to_string(), count: t.count, assignments });
        }
    }
    if !topics.is_empty() {
        results.extend(call_controller(ctx, ControllerRequest::CreatePartitions { topics, validate_only: request.validate_only }).await);
    }
    let mut r = CreatePartitionsResponse::default();
    for (name, code, message) in results {
        let mut t = CreatePartitionsTopicResult::default();
        t.name = topic_name(&name);
        t.error_code = code;
        t.error_message = message.as_deref().map(str_bytes);
        r.results.push(t);
    }
    respond(header, &r)
}
