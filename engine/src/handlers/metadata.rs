//! Metadata (key 3): brokers, topics and partition leaders, with topic auto-creation.

use kafka_protocol::messages::metadata_response::{MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};
use shardlog_protocol::error_code::{self as ec, TOPIC_AUTHORIZATION_FAILED};
use shardlog_protocol::kafka_protocol;

use super::{call_controller, respond, str_bytes, topic_name, Context, Response};
use crate::authorizer::{Operation, ResourceType};
use crate::controller::{ControllerRequest, NewTopic};
use crate::handlers::authz::CLUSTER;
use crate::metadata::validate_topic_name;

pub async fn handle(ctx: &Context<'_>, request: MetadataRequest) -> Response {
    let header = ctx.header;
    let authz = &ctx.authz;
    let listener = ctx.session.listener;
    // v0 uses an empty list for "all topics"; later versions use null. From v10 a topic may be
    // named by id alone (KIP-516), as KIP-848 consumers do after an assignment.
    let mut unknown_ids = Vec::new();
    let requested: Option<Vec<String>> = match request.topics {
        None => None,
        Some(t) if t.is_empty() && header.api_version == 0 => None,
        Some(t) => {
            let meta = ctx.metadata();
            let mut names = Vec::new();
            for topic in t {
                match topic.name {
                    Some(n) => names.push(n.0.to_string()),
                    None => match meta.topics.iter().find(|(_, m)| m.id == topic.topic_id) {
                        Some((n, _)) => names.push(n.clone()),
                        None => unknown_ids.push(topic.topic_id),
                    },
                }
            }
            Some(names)
        }
    };
    let allow_auto_create = header.api_version < 4 || request.allow_auto_topic_creation;
    if let Some(names) = &requested {
        let missing: Vec<NewTopic> = {
            let meta = ctx.metadata();
            names
                .iter()
                .filter(|n| !meta.topics.contains_key(*n) && validate_topic_name(n).is_ok())
                // Auto-creation needs CREATE on the cluster or on the topic, as in Kafka.
                .filter(|n| authz.may_see(Operation::Create, ResourceType::Cluster, CLUSTER) || authz.topic(Operation::Create, n))
                .map(|n| NewTopic { name: n.clone(), partitions: -1, replication_factor: -1, configs: Vec::new() })
                .collect()
        };
        if !missing.is_empty() && allow_auto_create && ctx.config().auto_create_topics_enable {
            for (name, code, msg) in call_controller(ctx, ControllerRequest::CreateTopics { topics: missing, validate_only: false }).await {
                if code != ec::NONE && code != ec::TOPIC_ALREADY_EXISTS {
                    tracing::warn!(topic = %name, code, message = ?msg, "auto-creating topic failed");
                }
            }
        }
    }
    let meta = ctx.metadata();
    let node = BrokerId(ctx.config().node_id);
    // The listener the request came in on: a client is sent back to the same kind of port.
    let listener = &ctx.config().listeners[listener];
    let mut r = MetadataResponse::default();
    let mut broker = MetadataResponseBroker::default();
    broker.node_id = node;
    broker.host = str_bytes(&listener.advertised_host);
    broker.port = listener.advertised_port as i32;
    r.brokers = vec![broker];
    if header.api_version >= 2 {
        r.cluster_id = Some(str_bytes(&meta.cluster_id));
    }
    r.controller_id = node;
    r.cluster_authorized_operations = i32::MIN;
    // Listing all topics shows only those the principal may describe; a named topic it may not
    // describe is TOPIC_AUTHORIZATION_FAILED.
    let all = requested.is_none();
    let names: Vec<String> =
        requested.unwrap_or_else(|| meta.topics.keys().filter(|n| authz.may_see(Operation::Describe, ResourceType::Topic, n)).cloned().collect());
    for name in names {
        if !all && !authz.topic(Operation::Describe, &name) {
            let mut t = MetadataResponseTopic::default();
            t.name = Some(topic_name(&name));
            t.error_code = TOPIC_AUTHORIZATION_FAILED;
            t.topic_authorized_operations = i32::MIN;
            r.topics.push(t);
            continue;
        }
        let mut t = MetadataResponseTopic::default();
        t.name = Some(topic_name(&name));
        t.topic_authorized_operations = i32::MIN;
        match meta.topics.get(&name) {
            Some(topic) => {
                if header.api_version >= 10 {
                    t.topic_id = topic.id;
                }
                t.is_internal = crate::controller::is_internal_topic(&name);
                t.partitions = (0..topic.partitions.len() as i32)
                    .map(|i| {
                        let mut p = MetadataResponsePartition::default();
                        p.partition_index = i;
                        p.leader_id = node;
                        if header.api_version >= 7 {
                            p.leader_epoch = 0;
                        }
                        p.replica_nodes = vec![node];
                        p.isr_nodes = vec![node];
                        p
                    })
                    .collect();
            }
            None => {
                t.error_code = if validate_topic_name(&name).is_err() { ec::INVALID_TOPIC_EXCEPTION } else { ec::UNKNOWN_TOPIC_OR_PARTITION };
            }
        }
        r.topics.push(t);
    }
    for id in unknown_ids {
        let mut t = MetadataResponseTopic::default();
        t.topic_id = id;
        t.error_code = ec::UNKNOWN_TOPIC_ID;
        t.topic_authorized_operations = i32::MIN;
        r.topics.push(t);
    }
    respond(header, &r)
}
