//! DeleteTopics (key 20), through the controller shard. Deletes by name, or by topic id (v6+).

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};
use shardlog_protocol::error_code::{self as ec, TOPIC_AUTHORIZATION_FAILED};
use shardlog_protocol::kafka_protocol;

use super::{call_controller, respond, str_bytes, topic_name, Context, Response};
use crate::authorizer::Operation;
use crate::controller::ControllerRequest;

pub async fn handle(ctx: &Context<'_>, request: DeleteTopicsRequest) -> Response {
    let header = ctx.header;
    let authz = &ctx.authz;
    let meta = ctx.metadata();
    let mut names: Vec<String> = request.topic_names.iter().map(|n| n.0.to_string()).collect();
    let mut unknown_ids = Vec::new();
    for state in &request.topics {
        match &state.name {
            Some(n) => names.push(n.0.to_string()),
            None => match meta.topics.iter().find(|(_, t)| t.id == state.topic_id) {
                Some((n, _)) => names.push(n.clone()),
                None => unknown_ids.push(state.topic_id),
            },
        }
    }
    let (names, denied): (Vec<String>, Vec<String>) = names.into_iter().partition(|n| authz.topic(Operation::Delete, n));
    let ids: std::collections::HashMap<String, uuid::Uuid> = names.iter().filter_map(|n| meta.topics.get(n).map(|t| (n.clone(), t.id))).collect();
    // KIP-599: each topic's partitions come out of the client's bucket (strict from v5); an
    // unknown topic takes nothing.
    let partitions = |n: &String| meta.topics.get(n).map(|t| t.partitions.len() as i64);
    let admitted = super::mutation_quota::admit(ctx, 5, names, partitions, String::clone).await;
    let names = admitted.allowed;
    let mut results = if names.is_empty() { Vec::new() } else { call_controller(ctx, ControllerRequest::DeleteTopics { names }).await };
    results.extend(admitted.refused);
    results.extend(denied.into_iter().map(|n| (n, TOPIC_AUTHORIZATION_FAILED, Some(String::from("not authorized to delete this topic")))));
    let mut r = DeleteTopicsResponse::default();
    r.throttle_time_ms = admitted.throttle_ms;
    for (name, code, message) in results {
        let mut t = DeletableTopicResult::default();
        if header.api_version >= 6 {
            t.topic_id = ids.get(&name).copied().unwrap_or_default();
        }
        t.name = Some(topic_name(&name));
        t.error_code = code;
        if header.api_version >= 5 {
            t.error_message = message.as_deref().map(str_bytes);
        }
        r.responses.push(t);
    }
    for id in unknown_ids {
        let mut t = DeletableTopicResult::default();
        t.topic_id = id;
        t.name = None;
        t.error_code = ec::UNKNOWN_TOPIC_ID;
        r.responses.push(t);
    }
    respond(header, &r)
}
