//! ListConfigResources (key 74): the names of the resources that have configs, by type, for
//! Kafka 4.1's `kafka-configs.sh` (KIP-1142). Version 0 was ListClientMetricsResources (KIP-714)
//! and lists client-metrics subscriptions only; version 1 takes the types wanted (none: every
//! type of its version), and a type its version does not know fails the whole request with
//! UNSUPPORTED_VERSION, as Kafka's does. Listed as Kafka lists them: groups with configs set,
//! client-metrics subscriptions (shardlog has none), each live broker's id for its loggers and
//! for itself, and every topic.

use kafka_protocol::messages::list_config_resources_response::ConfigResource;
use kafka_protocol::messages::{ListConfigResourcesRequest, ListConfigResourcesResponse};
use shardlog_protocol::error_code as ec;
use shardlog_protocol::kafka_protocol;

use super::{respond, str_bytes, Context, Response};
use crate::topic_config::{RESOURCE_BROKER, RESOURCE_BROKER_LOGGER, RESOURCE_CLIENT_METRICS, RESOURCE_GROUP, RESOURCE_TOPIC};

/// The types each version lists, in the order Kafka answers them.
const V0_TYPES: &[i8] = &[RESOURCE_CLIENT_METRICS];
const V1_TYPES: &[i8] = &[RESOURCE_GROUP, RESOURCE_CLIENT_METRICS, RESOURCE_BROKER_LOGGER, RESOURCE_BROKER, RESOURCE_TOPIC];

pub fn handle(ctx: &Context<'_>, request: ListConfigResourcesRequest) -> Response {
    let header = ctx.header;
    if !ctx.authz.cluster(crate::authorizer::Operation::DescribeConfigs) {
        return respond(header, &ListConfigResourcesResponse::default().with_error_code(ec::CLUSTER_AUTHORIZATION_FAILED));
    }
    let supported = if header.api_version == 0 { V0_TYPES } else { V1_TYPES };
    if let Some(unknown) = request.resource_types.iter().find(|t| !supported.contains(t)) {
        tracing::debug!(resource_type = unknown, version = header.api_version, "ListConfigResources asked for a type its version does not list");
        return respond(header, &ListConfigResourcesResponse::default().with_error_code(ec::UNSUPPORTED_VERSION));
    }
    let wanted = |t: &i8| request.resource_types.is_empty() || request.resource_types.contains(t);
    let meta = ctx.metadata();
    let brokers = ctx.brokers();
    let mut resources = Vec::new();
    for resource_type in supported.iter().copied().filter(|t| wanted(t)) {
        let names: Vec<String> = match resource_type {
            RESOURCE_GROUP => meta.group_configs.keys().cloned().collect(),
            RESOURCE_BROKER_LOGGER | RESOURCE_BROKER => brokers.iter().map(|b| b.node_id.to_string()).collect(),
            RESOURCE_TOPIC => meta.topics.keys().cloned().collect(),
            _ => Vec::new(),
        };
        let listed = names.iter().map(|name| ConfigResource::default().with_resource_name(str_bytes(name)).with_resource_type(resource_type));
        resources.extend(listed);
    }
    respond(header, &ListConfigResourcesResponse::default().with_config_resources(resources))
}
