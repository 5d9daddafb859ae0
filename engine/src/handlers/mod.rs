//! One module per Kafka API. `handle` turns one request frame into its response: it checks the
//! API key and version against what we advertise, validates and decodes the body, and calls the
//! API's handler. Bad input gets a Kafka error where the protocol has one, or a closed
//! connection, and always a log line naming the peer and what was wrong.

pub mod add_offsets_to_txn;
pub mod add_partitions_to_txn;
pub mod alter_configs;
pub mod alter_user_scram_credentials;
pub mod api_versions;
pub mod consumer_group_describe;
pub mod consumer_group_heartbeat;
pub mod create_acls;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_acls;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_acls;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_log_dirs;
pub mod describe_producers;
pub mod describe_transactions;
pub mod describe_user_scram_credentials;
pub mod end_txn;
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
pub mod list_transactions;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod probe;
pub mod produce;
pub mod sasl_authenticate;
pub mod sasl_handshake;
pub mod sync_group;
pub mod txn_offset_commit;

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::Encodable;
use shardlog_protocol::kafka_protocol;
use shardlog_protocol::request::{self, RequestBody, RequestError, RequestHeader};
use shardlog_protocol::response::{encode_response, Chunk};

use crate::authorizer::check::Authz;
use crate::net::FileRange;
use crate::security::Session;
use crate::shard::Shard;

/// What the connection does with a handled request.
pub enum Response {
    /// Send these chunks (a whole frame, length prefix included).
    Frame(Vec<Chunk<FileRange>>),
    /// Send nothing (Produce with acks=0).
    Nothing,
    /// Close the connection after the responses before this one.
    Close(String),
    /// Send these chunks, then close the connection (a failed authentication).
    FrameThenClose(Vec<Chunk<FileRange>>, String),
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
    (ApiKey::AddPartitionsToTxn, 0, 3),
    (ApiKey::AddOffsetsToTxn, 0, 4),
    (ApiKey::EndTxn, 0, 4),
    (ApiKey::TxnOffsetCommit, 0, 4),
    (ApiKey::DescribeProducers, 0, 0),
    (ApiKey::DescribeTransactions, 0, 0),
    (ApiKey::ListTransactions, 0, 2),
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
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

pub async fn handle(shard: Rc<Shard>, frame: Bytes, session: Rc<Session>) -> Response {
    // The TSC through quanta: a few nanoseconds a read, against tens for the system clock,
    // which matters at millions of requests per second.
    let started = quanta::Instant::now();
    let api_key = request::peek_key_version_correlation(&frame).map(|(k, _, _)| k);
    let response = handle_request(&shard, frame, &session).await;
    if let (Some(key), true) = (api_key, shard.config.metrics_enabled) {
        if supported_versions(key).is_some() {
            shard.request_probe.record(key, started.elapsed().as_micros() as u64);
        }
    }
    response
}

async fn handle_request(shard: &Rc<Shard>, frame: Bytes, session: &Session) -> Response {
    let shard = shard.clone();
    let peer = session.peer;
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
    let authz = Authz::new(&shard, session);
    if let Some(response) = whole_request_denial(&authz, &header, &body) {
        return response;
    }
    match body {
        RequestBody::ApiVersions(_) => api_versions::handle(&header),
        RequestBody::Metadata(r) => metadata::handle(&shard, &header, r, session.listener, &authz).await,
        RequestBody::Produce(r) => produce::handle(&shard, &header, r, &authz).await,
        RequestBody::Fetch(r) => fetch::handle(&shard, &header, r, &authz).await,
        RequestBody::ListOffsets(r) => list_offsets::handle(&shard, &header, r, &authz).await,
        RequestBody::CreateTopics(r) => create_topics::handle(&shard, &header, r, &authz).await,
        RequestBody::DeleteTopics(r) => delete_topics::handle(&shard, &header, r, &authz).await,
        RequestBody::CreatePartitions(r) => create_partitions::handle(&shard, &header, r, &authz).await,
        RequestBody::DescribeCluster(r) => describe_cluster::handle(&shard, &header, r, session.listener),
        RequestBody::FindCoordinator(r) => find_coordinator::handle(&shard, &header, r, session.listener, &authz),
        RequestBody::JoinGroup(r) => join_group::handle(&shard, &header, r, peer).await,
        RequestBody::SyncGroup(r) => sync_group::handle(&shard, &header, r).await,
        RequestBody::Heartbeat(r) => heartbeat::handle(&shard, &header, r).await,
        RequestBody::LeaveGroup(r) => leave_group::handle(&shard, &header, r).await,
        RequestBody::OffsetCommit(r) => offset_commit::handle(&shard, &header, r, &authz).await,
        RequestBody::OffsetFetch(r) => offset_fetch::handle(&shard, &header, r, &authz).await,
        RequestBody::ListGroups(r) => list_groups::handle(&shard, &header, r, &authz).await,
        RequestBody::DescribeGroups(r) => describe_groups::handle(&shard, &header, r, &authz).await,
        RequestBody::DeleteGroups(r) => delete_groups::handle(&shard, &header, r, &authz).await,
        RequestBody::OffsetDelete(r) => offset_delete::handle(&shard, &header, r).await,
        RequestBody::InitProducerId(r) => init_producer_id::handle(&shard, &header, r).await,
        RequestBody::ConsumerGroupHeartbeat(r) => consumer_group_heartbeat::handle(&shard, &header, r, peer).await,
        RequestBody::ConsumerGroupDescribe(r) => consumer_group_describe::handle(&shard, &header, r).await,
        RequestBody::AddPartitionsToTxn(r) => add_partitions_to_txn::handle(&shard, &header, r).await,
        RequestBody::AddOffsetsToTxn(r) => add_offsets_to_txn::handle(&shard, &header, r).await,
        RequestBody::EndTxn(r) => end_txn::handle(&shard, &header, r).await,
        RequestBody::TxnOffsetCommit(r) => txn_offset_commit::handle(&shard, &header, r).await,
        RequestBody::DescribeProducers(r) => describe_producers::handle(&shard, &header, r).await,
        RequestBody::DescribeTransactions(r) => describe_transactions::handle(&shard, &header, r).await,
        RequestBody::ListTransactions(r) => list_transactions::handle(&shard, &header, r, &authz).await,
        RequestBody::DescribeAcls(r) => describe_acls::handle(&shard, &header, r),
        RequestBody::CreateAcls(r) => create_acls::handle(&shard, &header, r).await,
        RequestBody::DeleteAcls(r) => delete_acls::handle(&shard, &header, r).await,
        RequestBody::SaslHandshake(r) => sasl_handshake::handle(&shard, &header, r, session),
        RequestBody::SaslAuthenticate(r) => sasl_authenticate::handle(&shard, &header, r, session),
        RequestBody::DescribeUserScramCredentials(r) => describe_user_scram_credentials::handle(&shard, &header, r),
        RequestBody::AlterUserScramCredentials(r) => alter_user_scram_credentials::handle(&shard, &header, r),
        RequestBody::DescribeConfigs(r) => describe_configs::handle(&shard, &header, r),
        RequestBody::AlterConfigs(r) => alter_configs::handle(&shard, &header, r).await,
        RequestBody::IncrementalAlterConfigs(r) => incremental_alter_configs::handle(&shard, &header, r).await,
        RequestBody::DeleteRecords(r) => delete_records::handle(&shard, &header, r).await,
        RequestBody::DescribeLogDirs(r) => describe_log_dirs::handle(&shard, &header, r).await,
    }
}

/// Requests whose every part needs one permission get the API's error response here when the
/// principal lacks it (Kafka's checks: READ on the group for group membership, WRITE on the
/// transactional id for transactions, the cluster for cluster-wide operations). APIs with
/// per-topic or per-group answers check inside their handlers.
fn whole_request_denial(authz: &Authz<'_>, header: &RequestHeader, body: &RequestBody) -> Option<Response> {
    use crate::authorizer::Operation::*;
    use kafka_protocol::messages as m;
    use shardlog_protocol::error_code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED as TXN_DENIED;
    use shardlog_protocol::error_code::{CLUSTER_AUTHORIZATION_FAILED as CLUSTER_DENIED, GROUP_AUTHORIZATION_FAILED as GROUP_DENIED};
    macro_rules! deny {
        ($response:ty, $code:expr $(, $field:ident = $value:expr)*) => {{
            let mut r = <$response>::default();
            r.error_code = $code;
            $(r.$field = $value;)*
            Some(respond(header, &r))
        }};
    }
    // One refusal per config resource, whatever the config API's response type.
    macro_rules! deny_configs {
        ($request:expr, $response:ty, $result:ty, $list:ident) => {{
            let mut response = <$response>::default();
            for res in &$request.resources {
                let mut result = <$result>::default();
                result.resource_type = res.resource_type;
                result.resource_name = res.resource_name.clone();
                result.error_code = config_denied_code(res.resource_type);
                result.error_message = None;
                response.$list.push(result);
            }
            Some(respond(header, &response))
        }};
    }
    match body {
        RequestBody::JoinGroup(r) if !authz.group(Read, &r.group_id) => deny!(m::JoinGroupResponse, GROUP_DENIED, generation_id = -1),
        RequestBody::SyncGroup(r) if !authz.group(Read, &r.group_id) => deny!(m::SyncGroupResponse, GROUP_DENIED),
        RequestBody::Heartbeat(r) if !authz.group(Read, &r.group_id) => deny!(m::HeartbeatResponse, GROUP_DENIED),
        RequestBody::LeaveGroup(r) if !authz.group(Read, &r.group_id) => deny!(m::LeaveGroupResponse, GROUP_DENIED),
        RequestBody::ConsumerGroupHeartbeat(r) if !authz.group(Read, &r.group_id) => deny!(m::ConsumerGroupHeartbeatResponse, GROUP_DENIED),
        RequestBody::DescribeCluster(_) if !authz.cluster(Describe) => deny!(m::DescribeClusterResponse, CLUSTER_DENIED),
        RequestBody::DescribeAcls(_) if !authz.cluster(Describe) => deny!(m::DescribeAclsResponse, CLUSTER_DENIED),
        RequestBody::CreateAcls(r) if !authz.cluster(Alter) => {
            let mut response = m::CreateAclsResponse::default();
            response.results = r
                .creations
                .iter()
                .map(|_| {
                    let mut result = m::create_acls_response::AclCreationResult::default();
                    result.error_code = CLUSTER_DENIED;
                    result.error_message = None;
                    result
                })
                .collect();
            Some(respond(header, &response))
        }
        RequestBody::DeleteAcls(r) if !authz.cluster(Alter) => {
            let mut response = m::DeleteAclsResponse::default();
            response.filter_results = r
                .filters
                .iter()
                .map(|_| {
                    let mut result = m::delete_acls_response::DeleteAclsFilterResult::default();
                    result.error_code = CLUSTER_DENIED;
                    result.error_message = None;
                    result
                })
                .collect();
            Some(respond(header, &response))
        }
        RequestBody::DescribeUserScramCredentials(_) if !authz.cluster(Describe) => deny!(m::DescribeUserScramCredentialsResponse, CLUSTER_DENIED),
        RequestBody::AlterUserScramCredentials(r) if !authz.cluster(Alter) => {
            let mut response = m::AlterUserScramCredentialsResponse::default();
            let users = r.deletions.iter().map(|d| d.name.clone()).chain(r.upsertions.iter().map(|u| u.name.clone()));
            response.results = users
                .map(|user| {
                    let mut result = m::alter_user_scram_credentials_response::AlterUserScramCredentialsResult::default();
                    result.user = user;
                    result.error_code = CLUSTER_DENIED;
                    result.error_message = None;
                    result
                })
                .collect();
            Some(respond(header, &response))
        }
        RequestBody::InitProducerId(r) => {
            let allowed = match &r.transactional_id {
                Some(id) => authz.transactional_id(Write, id),
                // KIP-679: WRITE on any topic also allows idempotent produce.
                // (The cluster check comes last so that a refusal is audited.)
                None => authz.writes_any_topic() || authz.cluster(IdempotentWrite),
            };
            if allowed {
                return None;
            }
            let code = if r.transactional_id.is_some() { TXN_DENIED } else { CLUSTER_DENIED };
            deny!(m::InitProducerIdResponse, code, producer_id = m::ProducerId(-1), producer_epoch = -1)
        }
        RequestBody::EndTxn(r) if !authz.transactional_id(Write, &r.transactional_id) => deny!(m::EndTxnResponse, TXN_DENIED),
        // Configs: DESCRIBE_CONFIGS / ALTER_CONFIGS on each topic, or on the cluster for the
        // broker (resource type 4). A request with any resource denied is refused whole.
        RequestBody::DescribeConfigs(r) if r.resources.iter().any(|res| !config_allowed(authz, DescribeConfigs, res.resource_type, &res.resource_name)) => {
            deny_configs!(r, m::DescribeConfigsResponse, m::describe_configs_response::DescribeConfigsResult, results)
        }
        RequestBody::AlterConfigs(r) if r.resources.iter().any(|res| !config_allowed(authz, AlterConfigs, res.resource_type, &res.resource_name)) => {
            deny_configs!(r, m::AlterConfigsResponse, m::alter_configs_response::AlterConfigsResourceResponse, responses)
        }
        RequestBody::IncrementalAlterConfigs(r)
            if r.resources.iter().any(|res| !config_allowed(authz, AlterConfigs, res.resource_type, &res.resource_name)) =>
        {
            deny_configs!(r, m::IncrementalAlterConfigsResponse, m::incremental_alter_configs_response::AlterConfigsResourceResponse, responses)
        }
        RequestBody::DeleteRecords(r) if r.topics.iter().any(|t| !authz.topic(Delete, &t.name)) => {
            let mut response = m::DeleteRecordsResponse::default();
            for t in &r.topics {
                let mut topic = m::delete_records_response::DeleteRecordsTopicResult::default();
                topic.name = t.name.clone();
                for p in &t.partitions {
                    let mut result = m::delete_records_response::DeleteRecordsPartitionResult::default();
                    result.partition_index = p.partition_index;
                    result.low_watermark = -1;
                    result.error_code = shardlog_protocol::error_code::TOPIC_AUTHORIZATION_FAILED;
                    topic.partitions.push(result);
                }
                response.topics.push(topic);
            }
            Some(respond(header, &response))
        }
        RequestBody::DescribeLogDirs(_) if !authz.cluster(Describe) => deny!(m::DescribeLogDirsResponse, CLUSTER_DENIED),
        RequestBody::AddPartitionsToTxn(r) => {
            let txn_ok = authz.transactional_id(Write, &r.v3_and_below_transactional_id);
            let denied_topics: Vec<bool> = r.v3_and_below_topics.iter().map(|t| !txn_ok || !authz.topic(Write, &t.name)).collect();
            if denied_topics.iter().all(|d| !d) {
                return None;
            }
            // Kafka: the denied partitions get their error, the others OPERATION_NOT_ATTEMPTED.
            let mut response = m::AddPartitionsToTxnResponse::default();
            for (t, denied) in r.v3_and_below_topics.iter().zip(denied_topics) {
                let mut topic = m::add_partitions_to_txn_response::AddPartitionsToTxnTopicResult::default();
                topic.name = t.name.clone();
                let code = match (txn_ok, denied) {
                    (false, _) => TXN_DENIED,
                    (true, true) => shardlog_protocol::error_code::TOPIC_AUTHORIZATION_FAILED,
                    (true, false) => shardlog_protocol::error_code::OPERATION_NOT_ATTEMPTED,
                };
                for p in &t.partitions {
                    let mut result = m::add_partitions_to_txn_response::AddPartitionsToTxnPartitionResult::default();
                    result.partition_index = *p;
                    result.partition_error_code = code;
                    topic.results_by_partition.push(result);
                }
                response.results_by_topic_v3_and_below.push(topic);
            }
            Some(respond(header, &response))
        }
        RequestBody::TxnOffsetCommit(r) => {
            let code = if !authz.transactional_id(Write, &r.transactional_id) {
                TXN_DENIED
            } else if !authz.group(Read, &r.group_id) {
                GROUP_DENIED
            } else if r.topics.iter().any(|t| !authz.topic(Read, &t.name)) {
                shardlog_protocol::error_code::TOPIC_AUTHORIZATION_FAILED
            } else {
                return None;
            };
            let mut response = m::TxnOffsetCommitResponse::default();
            for t in &r.topics {
                let mut topic = m::txn_offset_commit_response::TxnOffsetCommitResponseTopic::default();
                topic.name = t.name.clone();
                for p in &t.partitions {
                    let mut result = m::txn_offset_commit_response::TxnOffsetCommitResponsePartition::default();
                    result.partition_index = p.partition_index;
                    result.error_code = code;
                    topic.partitions.push(result);
                }
                response.topics.push(topic);
            }
            Some(respond(header, &response))
        }
        RequestBody::OffsetDelete(r) if !authz.group(Delete, &r.group_id) => deny!(m::OffsetDeleteResponse, GROUP_DENIED),
        RequestBody::OffsetDelete(r) if r.topics.iter().any(|t| !authz.topic(Read, &t.name)) => {
            deny!(m::OffsetDeleteResponse, shardlog_protocol::error_code::TOPIC_AUTHORIZATION_FAILED)
        }
        RequestBody::ConsumerGroupDescribe(r) if r.group_ids.iter().any(|g| !authz.group(Describe, g)) => {
            let mut response = m::ConsumerGroupDescribeResponse::default();
            for g in &r.group_ids {
                let mut d = m::consumer_group_describe_response::DescribedGroup::default();
                d.group_id = g.clone();
                d.error_code = if authz.may_see(Describe, crate::authorizer::ResourceType::Group, g) {
                    shardlog_protocol::error_code::OPERATION_NOT_ATTEMPTED
                } else {
                    GROUP_DENIED
                };
                d.error_message = None;
                response.groups.push(d);
            }
            Some(respond(header, &response))
        }
        RequestBody::DescribeProducers(r) if r.topics.iter().any(|t| !authz.topic(Read, &t.name)) => {
            let mut response = m::DescribeProducersResponse::default();
            for t in &r.topics {
                let mut topic = m::describe_producers_response::TopicResponse::default();
                topic.name = t.name.clone();
                let code = if authz.may_see(Read, crate::authorizer::ResourceType::Topic, &t.name) {
                    shardlog_protocol::error_code::OPERATION_NOT_ATTEMPTED
                } else {
                    shardlog_protocol::error_code::TOPIC_AUTHORIZATION_FAILED
                };
                for p in &t.partition_indexes {
                    let mut result = m::describe_producers_response::PartitionResponse::default();
                    result.partition_index = *p;
                    result.error_code = code;
                    result.error_message = None;
                    topic.partitions.push(result);
                }
                response.topics.push(topic);
            }
            Some(respond(header, &response))
        }
        RequestBody::DescribeTransactions(r) if r.transactional_ids.iter().any(|id| !authz.transactional_id(Describe, id)) => {
            let mut response = m::DescribeTransactionsResponse::default();
            for id in &r.transactional_ids {
                let mut state = m::describe_transactions_response::TransactionState::default();
                state.transactional_id = id.clone();
                state.producer_id = m::ProducerId(-1);
                state.producer_epoch = -1;
                state.transaction_start_time_ms = -1;
                state.error_code = if authz.may_see(Describe, crate::authorizer::ResourceType::TransactionalId, id) {
                    shardlog_protocol::error_code::OPERATION_NOT_ATTEMPTED
                } else {
                    TXN_DENIED
                };
                response.transaction_states.push(state);
            }
            Some(respond(header, &response))
        }
        RequestBody::AddOffsetsToTxn(r) if !authz.transactional_id(Write, &r.transactional_id) => deny!(m::AddOffsetsToTxnResponse, TXN_DENIED),
        RequestBody::AddOffsetsToTxn(r) if !authz.group(Read, &r.group_id) => deny!(m::AddOffsetsToTxnResponse, GROUP_DENIED),
        _ => None,
    }
}

/// Config resource types: 2 topic, 4 broker (and 8 broker logger), checked on the cluster.
fn config_allowed(authz: &Authz<'_>, operation: crate::authorizer::Operation, resource_type: i8, name: &str) -> bool {
    match resource_type {
        2 => authz.topic(operation, name),
        _ => authz.cluster(operation),
    }
}

fn config_denied_code(resource_type: i8) -> i16 {
    match resource_type {
        2 => shardlog_protocol::error_code::TOPIC_AUTHORIZATION_FAILED,
        _ => shardlog_protocol::error_code::CLUSTER_AUTHORIZATION_FAILED,
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

/// The positions of a request's partitions grouped by owner shard (None: nothing to send, the
/// partition is answered here), owners in order of first appearance and positions in request
/// order: produce and fetch send one message per owner shard, not one per partition.
pub fn group_by_owner(owners: impl IntoIterator<Item = Option<usize>>) -> Vec<(usize, Vec<usize>)> {
    let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
    for (position, owner) in owners.into_iter().enumerate() {
        let Some(owner) = owner else { continue };
        match groups.iter_mut().find(|(o, _)| *o == owner) {
            Some((_, positions)) => positions.push(position),
            None => groups.push((owner, vec![position])),
        }
    }
    groups
}

/// The string helpers live in the protocol crate, so that the group coordinator (below the
/// handlers) can use them too; re-exported so that every handler keeps its `super::str_bytes`.
pub use shardlog_protocol::strings::{str_bytes, topic_name};

#[cfg(test)]
mod tests {
    #[test]
    fn partitions_group_by_owner_in_request_order() {
        let groups = super::group_by_owner([Some(1), None, Some(0), Some(1), Some(0), None]);
        assert_eq!(groups, vec![(1, vec![0, 3]), (0, vec![2, 4])]);
        assert!(super::group_by_owner([None, None]).is_empty());
    }
}
