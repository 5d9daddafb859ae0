//! CreateTopics (key 19), through the controller shard.

use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use shardlog_protocol::error_code::{self as ec, TOPIC_AUTHORIZATION_FAILED};
use shardlog_protocol::kafka_protocol;

use super::{call_controller, respond, str_bytes, topic_name, Context, Response};
use crate::authorizer::{Operation, ResourceType};
use crate::controller::{ControllerRequest, NewTopic};
use crate::handlers::authz::CLUSTER;

pub async fn handle(ctx: &Context<'_>, request: CreateTopicsRequest) -> Response {
    let header = ctx.header;
    let authz = &ctx.authz;
    let mut topics = Vec::new();
    let mut early = Vec::new();
    for t in &request.topics {
        let name = t.name.0.to_string();
        // CREATE on the cluster covers every topic; otherwise CREATE on the topic itself.
        if !authz.may_see(Operation::Create, ResourceType::Cluster, CLUSTER) && !authz.topic(Operation::Create, &name) {
            early.push((name, TOPIC_AUTHORIZATION_FAILED, Some(String::from("not authorized to create this topic"))));
            continue;
        }
        let configs = t.configs.iter().map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string()).unwrap_or_default())).collect();
        let assignments = t.assignments.iter().map(|a| (a.partition_index, a.broker_ids.iter().map(|b| b.0).collect())).collect();
        topics.push(NewTopic { name, partitions: t.num_partitions, replication_factor: t.replication_factor, configs, assignments });
    }
    let meta = ctx.metadata();
    // KIP-599: the partitions of each topic to be created come out of the client's bucket
    // (strict from v6); a topic already there takes nothing, as the controller refuses it.
    let partitions = |t: &NewTopic| match t.partitions {
        _ if request.validate_only || meta.topics.contains_key(&t.name) => None,
        -1 if !t.assignments.is_empty() => Some(t.assignments.len() as i64),
        -1 => Some(i64::from(ctx.config().num_partitions)),
        n => Some(i64::from(n)),
    };
    let admitted = super::mutation_quota::admit(ctx, 6, topics, partitions, |t| t.name.clone()).await;
    let topics = admitted.allowed;
    early.extend(admitted.refused);
    let mut results = early;
    if !topics.is_empty() {
        results.extend(call_controller(ctx, ControllerRequest::CreateTopics { topics, validate_only: request.validate_only }).await);
    }
    let meta = ctx.metadata();
    let mut r = CreateTopicsResponse::default();
    r.throttle_time_ms = admitted.throttle_ms;
    for (name, code, message) in results {
        let mut t = CreatableTopicResult::default();
        t.name = topic_name(&name);
        t.error_code = code;
        if header.api_version >= 1 {
            t.error_message = message.as_deref().map(str_bytes);
        }
        if header.api_version < 5 {
            r.topics.push(t);
            continue;
        }
        match meta.topics.get(&name).filter(|_| code == ec::NONE) {
            Some(topic) => {
                if header.api_version >= 7 {
                    t.topic_id = topic.id;
                }
                t.num_partitions = topic.partitions.len() as i32;
                t.replication_factor = topic.partitions.first().map_or(1, |p| p.replicas.len().max(1)) as i16;
            }
            None => {
                let asked = request.topics.iter().find(|x| x.name.0.as_str() == name);
                t.num_partitions = asked
                    .map(|a| match a.num_partitions {
                        -1 if !a.assignments.is_empty() => a.assignments.len() as i32,
                        -1 => ctx.config().num_partitions,
                        n => n,
                    })
                    .unwrap_or(-1);
                // A validate-only request: what the topic would get.
                t.replication_factor = match asked {
                    _ if code != ec::NONE => -1,
                    Some(a) if !a.assignments.is_empty() => a.assignments[0].broker_ids.len() as i16,
                    Some(a) if a.replication_factor > 0 => a.replication_factor,
                    _ => ctx.config().default_replication_factor,
                };
            }
        }
        // The configs the topic ended up with (Kafka sends them from v5, for every topic it
        // created or would create).
        let overrides = meta.topics.get(&name).filter(|_| code == ec::NONE).map(|t| t.configs.clone()).unwrap_or_else(|| requested_configs(&request, &name));
        let described = if code == ec::NONE { crate::topic_config::describe_topic(ctx.config(), &meta, &overrides) } else { Vec::new() };
        t.configs = Some(described.into_iter().map(created_config).collect());
        r.topics.push(t);
    }
    respond(header, &r)
}

fn requested_configs(request: &CreateTopicsRequest, name: &str) -> std::collections::BTreeMap<String, String> {
    let asked = request.topics.iter().find(|t| t.name.0.as_str() == name);
    asked.map(|t| t.configs.iter().map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string()).unwrap_or_default())).collect()).unwrap_or_default()
}

fn created_config(c: crate::topic_config::DescribedConfig) -> CreatableTopicConfigs {
    let mut out = CreatableTopicConfigs::default();
    out.name = str_bytes(&c.name);
    out.value = c.value.as_deref().map(str_bytes);
    out.read_only = c.read_only;
    out.config_source = c.source as i8;
    out.is_sensitive = false;
    out
}
