//! Metadata (key 3): brokers, topics and partition leaders, with topic auto-creation.

use kafka_protocol::messages::metadata_response::{MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};
use shardlog_protocol::error_code::{self as ec, TOPIC_AUTHORIZATION_FAILED};
use shardlog_protocol::kafka_protocol;

use super::{call_controller, respond, str_bytes, topic_name, Context, Response};
use crate::authorizer::{Operation, ResourceType};
use crate::controller::{ControllerRequest, NewTopic};
use crate::handlers::authz::CLUSTER;
use crate::metadata::{validate_topic_name, PartitionPlacement};

pub async fn handle(ctx: &Context<'_>, request: MetadataRequest) -> Response {
    let header = ctx.header;
    let authz = &ctx.authz;
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
                .map(|n| NewTopic { name: n.clone(), partitions: -1, replication_factor: -1, configs: Vec::new(), assignments: Vec::new() })
                .collect()
        };
        // An internal topic is created as its coordinator has it created, with its own
        // partition count and configs (Kafka's AutoTopicCreationManager does the same).
        let (internal, missing): (Vec<NewTopic>, Vec<NewTopic>) = missing.into_iter().partition(|t| crate::controller::is_internal_topic(&t.name));
        if allow_auto_create && ctx.config().auto_create_topics_enable {
            for t in internal {
                let kind = if t.name == crate::groups::COORDINATOR.state_topic { crate::groups::COORDINATOR } else { crate::txn::COORDINATOR };
                ctx.ensure_state_topic(kind).await;
            }
        }
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
    let mut r = MetadataResponse::default();
    let brokers = ctx.brokers();
    let online: Vec<i32> = brokers.iter().map(|b| b.node_id).collect();
    r.brokers = brokers
        .into_iter()
        .map(|b| {
            let mut broker = MetadataResponseBroker::default();
            broker.node_id = BrokerId(b.node_id);
            broker.host = str_bytes(&b.host);
            broker.port = b.port as i32;
            broker.rack = b.rack.as_deref().map(str_bytes);
            broker
        })
        .collect();
    if header.api_version >= 2 {
        r.cluster_id = Some(str_bytes(&meta.cluster_id));
    }
    r.controller_id = node;
    // Asked for from v8 (the cluster's only up to v10); i32::MIN means "not asked".
    let topic_operations = header.api_version >= 8 && request.include_topic_authorized_operations;
    r.cluster_authorized_operations = if (8..=10).contains(&header.api_version) && request.include_cluster_authorized_operations {
        authz.authorized_operations(ResourceType::Cluster, CLUSTER)
    } else {
        i32::MIN
    };
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
                if topic_operations {
                    t.topic_authorized_operations = authz.authorized_operations(ResourceType::Topic, &name);
                }
                if header.api_version >= 10 {
                    t.topic_id = topic.id;
                }
                t.is_internal = crate::controller::is_internal_topic(&name);
                t.partitions = topic
                    .partitions
                    .iter()
                    .enumerate()
                    .map(|(i, placement)| {
                        let state = partition_state(placement, node.0, &online);
                        let mut p = MetadataResponsePartition::default();
                        p.partition_index = i as i32;
                        p.leader_id = BrokerId(state.leader);
                        if state.leader == crate::metadata::records::NO_LEADER {
                            p.error_code = ec::LEADER_NOT_AVAILABLE;
                        }
                        if header.api_version >= 7 {
                            p.leader_epoch = state.leader_epoch;
                        }
                        p.replica_nodes = state.replicas.into_iter().map(BrokerId).collect();
                        p.isr_nodes = state.isr.into_iter().map(BrokerId).collect();
                        if header.api_version >= 5 {
                            p.offline_replicas = state.offline.into_iter().map(BrokerId).collect();
                        }
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

/// A partition as Metadata and DescribeTopicPartitions describe it.
pub(super) struct PartitionState {
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// Replicas on a broker that is not registered, is fenced, or has no listener of the
    /// request's name (`online` lists the others), as Kafka counts them.
    pub offline: Vec<i32>,
}

pub(super) fn partition_state(placement: &PartitionPlacement, node: i32, online: &[i32]) -> PartitionState {
    // A partition recorded before replicas were is this node's alone.
    if placement.replicas.is_empty() {
        return PartitionState { leader: node, leader_epoch: placement.leader_epoch, replicas: vec![node], isr: vec![node], offline: Vec::new() };
    }
    PartitionState {
        leader: placement.leader,
        leader_epoch: placement.leader_epoch,
        replicas: placement.replicas.clone(),
        isr: placement.isr.clone(),
        offline: placement.replicas.iter().copied().filter(|r| !online.contains(r)).collect(),
    }
}
