//! One module per Kafka API. `handle` turns one request frame into its response: it checks the
//! API key and version against what we advertise, validates and decodes the body, and calls the
//! API's handler. Bad input gets a Kafka error where the protocol has one, or a closed
//! connection, and always a log line naming the peer and what was wrong.

pub mod alter_configs;
pub mod api_versions;
pub mod consumer_group_describe;
pub mod consumer_group_heartbeat;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_log_dirs;
pub mod fetch;
pub mod find_coordinator;
pub mod groups_common;
pub mod heartbeat;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod probe;
pub mod produce;
pub mod sync_group;

use std::net::SocketAddr;
use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::Encodable;
use shardlog_protocol::kafka_protocol;
use shardlog_protocol::request::{self, RequestBody, RequestError, RequestHeader};
use shardlog_protocol::response::{encode_response, Chunk};

use crate::net::FileRange;
use crate::shard::Shard;

/// What the connection does with a handled request.
pub enum Response {
    /// Send these chunks (a whole frame, length prefix included).
    Frame(Vec<Chunk<FileRange>>),
    /// Send nothing (Produce with acks=0).
    Nothing,
    /// Close the connection after the responses before this one.
    Close(String),
}

/// The APIs and versions this broker serves, and advertises in ApiVersions: exactly these.
pub const SUPPORTED_APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 8),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::DescribeLogDirs, 1, 4),
];

pub fn supported_versions(api_key: i16) -> Option<(i16, i16)> {
    SUPPORTED_APIS.iter().find(|(k, _, _)| *k as i16 == api_key).map(|&(_, min, max)| (min, max))
}

pub fn respond<R: Encodable>(header: &RequestHeader, body: &R) -> Response {
    let key = ApiKey::try_from(header.api_key).expect("handled requests have known keys");
    let header_version = key.response_header_version(header.api_version);
    match encode_response(header.correlation_id, header_version, body, header.api_version) {
        Ok(bytes) => Response::Frame(vec![Chunk::Bytes(bytes)]),
        Err(e) => {
            tracing::error!(api_key = header.api_key, api_version = header.api_version, error = %e, "response encoding failed");
            Response::Close(format!("cannot encode response: {e}"))
        }
    }
}

pub async fn handle(shard: Rc<Shard>, frame: Bytes, peer: SocketAddr) -> Response {
    // The TSC through quanta: a few nanoseconds a read, against tens for the system clock,
    // which matters at millions of requests per second.
    let started = quanta::Instant::now();
    let api_key = request::peek_key_version_correlation(&frame).map(|(k, _, _)| k);
    let response = handle_request(&shard, frame, peer).await;
    if let (Some(key), true) = (api_key, shard.config.metrics_enabled) {
        if supported_versions(key).is_some() {
            shard.request_probe.record(key, started.elapsed().as_micros() as u64);
        }
    }
    response
}

async fn handle_request(shard: &Rc<Shard>, frame: Bytes, peer: SocketAddr) -> Response {
    let shard = shard.clone();
    let header = match request::parse_header(&frame) {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "closing connection: bad request header");
            return Response::Close(e.to_string());
        }
    };
    let Some((min, max)) = supported_versions(header.api_key) else {
        tracing::warn!(%peer, client_id = %header.client_id_lossy(), api_key = header.api_key, "closing connection: unsupported api key");
        return Response::Close(format!("unsupported api key {}", header.api_key));
    };
    if header.api_version < min || header.api_version > max {
        if header.api_key == ApiKey::ApiVersions as i16 {
            // Kafka answers an ApiVersions it cannot parse with a v0 response listing what it
            // supports, so the client can retry with a version both know.
            tracing::info!(%peer, version = header.api_version, "ApiVersions version unsupported; answering with v0");
            return api_versions::unsupported_version(&header);
        }
        tracing::warn!(%peer, client_id = %header.client_id_lossy(), api_key = header.api_key, version = header.api_version, "closing connection: unsupported api version");
        return Response::Close(format!("unsupported version {} of api key {}", header.api_version, header.api_key));
    }
    let body = match request::decode_body(&header, &frame) {
        Ok(b) => b,
        Err(e) => {
            if let (RequestError::InvalidBody { .. }, true) = (&e, header.api_key == ApiKey::ApiVersions as i16) {
                // INVALID_REQUEST for a bad ApiVersions body, as Kafka does.
                tracing::warn!(%peer, error = %e, "bad ApiVersions request");
                return api_versions::invalid_request(&header);
            }
            tracing::warn!(%peer, client_id = %header.client_id_lossy(), error = %e, "closing connection: malformed request");
            return Response::Close(e.to_string());
        }
    };
    tracing::trace!(%peer, api_key = header.api_key, version = header.api_version, correlation_id = header.correlation_id, "request");
    match body {
        RequestBody::ApiVersions(_) => api_versions::handle(&header),
        RequestBody::Metadata(r) => metadata::handle(&shard, &header, r).await,
        RequestBody::Produce(r) => produce::handle(&shard, &header, r).await,
        RequestBody::Fetch(r) => fetch::handle(&shard, &header, r).await,
        RequestBody::ListOffsets(r) => list_offsets::handle(&shard, &header, r).await,
        RequestBody::CreateTopics(r) => create_topics::handle(&shard, &header, r).await,
        RequestBody::DeleteTopics(r) => delete_topics::handle(&shard, &header, r).await,
        RequestBody::CreatePartitions(r) => create_partitions::handle(&shard, &header, r).await,
        RequestBody::DescribeCluster(r) => describe_cluster::handle(&shard, &header, r),
        RequestBody::FindCoordinator(r) => find_coordinator::handle(&shard, &header, r),
        RequestBody::JoinGroup(r) => join_group::handle(&shard, &header, r, peer).await,
        RequestBody::SyncGroup(r) => sync_group::handle(&shard, &header, r).await,
        RequestBody::Heartbeat(r) => heartbeat::handle(&shard, &header, r).await,
        RequestBody::LeaveGroup(r) => leave_group::handle(&shard, &header, r).await,
        RequestBody::OffsetCommit(r) => offset_commit::handle(&shard, &header, r).await,
        RequestBody::OffsetFetch(r) => offset_fetch::handle(&shard, &header, r).await,
        RequestBody::ListGroups(r) => list_groups::handle(&shard, &header, r).await,
        RequestBody::DescribeGroups(r) => describe_groups::handle(&shard, &header, r).await,
        RequestBody::DeleteGroups(r) => delete_groups::handle(&shard, &header, r).await,
        RequestBody::OffsetDelete(r) => offset_delete::handle(&shard, &header, r).await,
        RequestBody::InitProducerId(r) => init_producer_id::handle(&shard, &header, r).await,
        RequestBody::ConsumerGroupHeartbeat(r) => consumer_group_heartbeat::handle(&shard, &header, r, peer).await,
        RequestBody::ConsumerGroupDescribe(r) => consumer_group_describe::handle(&shard, &header, r).await,
        RequestBody::DescribeConfigs(r) => describe_configs::handle(&shard, &header, r),
        RequestBody::AlterConfigs(r) => alter_configs::handle(&shard, &header, r).await,
        RequestBody::IncrementalAlterConfigs(r) => incremental_alter_configs::handle(&shard, &header, r).await,
        RequestBody::DeleteRecords(r) => delete_records::handle(&shard, &header, r).await,
        RequestBody::DescribeLogDirs(r) => describe_log_dirs::handle(&shard, &header, r).await,
    }
}

/// Sends a controller request to shard 0 and returns its per-topic results.
pub async fn call_controller(shard: &Rc<Shard>, request: crate::shard::messages::ControllerRequest) -> Vec<(String, i16, Option<String>)> {
    use crate::shard::messages::{ShardReply, ShardRequest};
    match shard.dispatch(crate::shard::CONTROLLER_SHARD, ShardRequest::Controller(request)).await {
        ShardReply::Controller(results) => results,
        other => {
            tracing::error!(reply = ?other, "unexpected controller reply");
            Vec::new()
        }
    }
}

pub fn str_bytes(s: &str) -> kafka_protocol::protocol::StrBytes {
    kafka_protocol::protocol::StrBytes::from_string(s.to_string())
}

pub fn topic_name(s: &str) -> kafka_protocol::messages::TopicName {
    kafka_protocol::messages::TopicName(str_bytes(s))
}
