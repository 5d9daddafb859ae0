//! One module per Kafka API. `handle` turns one request frame into its response: it checks the
//! API key and version against what we advertise, validates and decodes the body, and calls the
//! API's handler with a [`Context`]. Each handler authorizes its own request first (Kafka's
//! checks for that API, in its `denial`), then does its work through calls to the shards that
//! own its partitions or coordinators. Bad input gets a Kafka error where the protocol has one,
//! or a closed connection, and always a log line naming the peer and what was wrong.

/// The API's response with `$code` as its top-level error (and the given fields set), for a
/// request refused whole by authorization.
macro_rules! deny {
    ($header:expr, $response:ty, $code:expr $(, $field:ident = $value:expr)*) => {{
        let mut r = <$response>::default();
        r.error_code = $code;
        $(r.$field = $value;)*
        Some($crate::handlers::respond($header, &r))
    }};
}

/// One refusal per item of a batch request (ACL creations, ACL filters, SCRAM users), whatever
/// the API's result type: each result in the response's `$list` gets `$code` and no message,
/// and the fields given after `|item|` are set from its item.
macro_rules! deny_each {
    ($header:expr, $response:ty, $list:ident, $result:ty, $items:expr, $code:expr $(, |$item:ident| $($field:ident = $value:expr),+)?) => {{
        let mut response = <$response>::default();
        response.$list = $items
            .map(|_item| {
                let mut result = <$result>::default();
                result.error_code = $code;
                result.error_message = None;
                $(
                    let $item = _item;
                    $(result.$field = $value;)+
                )?
                result
            })
            .collect();
        Some($crate::handlers::respond($header, &response))
    }};
}

/// One refusal per config resource, whatever the config API's response type.
macro_rules! deny_configs {
    ($header:expr, $request:expr, $response:ty, $result:ty, $list:ident) => {{
        let mut response = <$response>::default();
        for res in &$request.resources {
            let mut result = <$result>::default();
            result.resource_type = res.resource_type;
            result.resource_name = res.resource_name.clone();
            result.error_code = $crate::handlers::config_denied_code(res.resource_type);
            result.error_message = None;
            response.$list.push(result);
        }
        Some($crate::handlers::respond($header, &response))
    }};
}

pub mod add_offsets_to_txn;
pub mod add_partitions_to_txn;
pub mod add_raft_voter;
pub mod alter_client_quotas;
pub mod alter_configs;
pub mod alter_partition_reassignments;
pub mod alter_user_scram_credentials;
pub mod api_versions;
pub mod authz;
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
pub mod describe_client_quotas;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_log_dirs;
pub mod describe_producers;
pub mod describe_quorum;
pub mod describe_topic_partitions;
pub mod describe_transactions;
pub mod describe_user_scram_credentials;
pub mod elect_leaders;
pub mod end_txn;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_config_resources;
pub mod list_groups;
pub mod list_offsets;
pub mod list_partition_reassignments;
pub mod list_transactions;
pub mod metadata;
pub mod mutation_quota;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod probe;
pub mod produce;
pub mod remove_raft_voter;
pub mod request_quota;
pub mod sasl_authenticate;
pub mod sasl_handshake;
pub mod sync_group;
pub mod txn_offset_commit;
pub mod unregister_broker;
pub mod update_features;
pub mod update_raft_voter;
pub mod write_txn_markers;

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::Encodable;
use shardlog_protocol::kafka_protocol;
use shardlog_protocol::request::{self, RequestBody, RequestError, RequestHeader};
use shardlog_protocol::response::{encode_response, Chunk};

use crate::config::BrokerConfig;
use crate::coordinator::Coordinator;
use crate::metadata::ClusterMetadata;
use crate::quota::manager::QuotaType;
use crate::security::Session;
use crate::shard::router::{CallError, ShardCall};
use crate::shard::Shard;
use authz::Authz;

/// What a handler sees of the broker: its request's header and connection, the authorizer for
/// its principal, the configuration, the metadata image, and calls to shards. Nothing else of
/// the shard it runs on: partitions are reached only through calls to their owner shards, so a
/// handler works the same wherever the partition lives.
pub struct Context<'a> {
    shard: &'a Shard,
    pub header: &'a RequestHeader,
    pub session: &'a Session,
    pub authz: Authz<'a>,
    /// What the handlers keep per connection, and this request's place in the connection's
    /// order (requests are numbered as they are read).
    pub connection: &'a ConnectionState,
    pub request_seq: u64,
    /// The throttle time this request earned against the client's producer_byte_rate when it
    /// was read (see [`admit`]); 0 for other requests.
    pub produce_throttle_ms: u64,
    /// The size of the buffer the request was read into (its frame, without the length prefix).
    pub request_bytes: usize,
}

/// What the handlers keep per connection.
#[derive(Debug, Default)]
pub struct ConnectionState {
    /// Produce order per partition, checked on every answer (see `produce::check_order`).
    pub produce_order: std::cell::RefCell<produce::ProduceOrder>,
    next_request_seq: std::cell::Cell<u64>,
    /// Until when a client over its quota is muted: no further request of the connection is
    /// handled before then (KIP-219: the broker answers at once with the throttle time, then
    /// reads nothing more from the client for that long).
    muted_until: std::cell::Cell<Option<std::time::Instant>>,
    /// A follower fetched on this connection: it is another broker's replica link, whose
    /// requests are exempt from request quotas (as Kafka exempts cluster actions).
    replica_link: std::cell::Cell<bool>,
}

impl ConnectionState {
    /// Numbers a request as it is read, before it is handled.
    pub fn next_request_seq(&self) -> u64 {
        let seq = self.next_request_seq.get();
        self.next_request_seq.set(seq + 1);
        seq
    }

    /// A follower fetched on this connection (see `replica_link`).
    pub fn mark_replica_link(&self) {
        self.replica_link.set(true);
    }

    pub fn is_replica_link(&self) -> bool {
        self.replica_link.get()
    }

    /// Mutes the connection for `ms` from now (a longer mute already set stays).
    pub fn mute_for(&self, ms: u64) {
        let until = std::time::Instant::now() + std::time::Duration::from_millis(ms);
        if self.muted_until.get().is_none_or(|u| u < until) {
            self.muted_until.set(Some(until));
        }
    }

    /// How long the connection stays muted from now (None: it is not).
    pub fn muted_for(&self) -> Option<std::time::Duration> {
        let until = self.muted_until.get()?;
        let left = until.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            self.muted_until.set(None);
            return None;
        }
        Some(left)
    }
}

/// A broker as a client is told of it, on the listener the request came in on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddress {
    pub node_id: i32,
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
}

impl<'a> Context<'a> {
    /// Every registered broker with a listener of the name this request came in on, by node
    /// id; this node is always among them (before its registration is committed, too).
    pub fn brokers(&self) -> Vec<BrokerAddress> {
        let config = self.config();
        let listener = &config.listeners[self.session.listener];
        let meta = self.metadata();
        let mut out: Vec<BrokerAddress> = meta
            .brokers
            .values()
            .filter(|b| !b.fenced)
            .filter_map(|b| {
                let e = b.endpoint(&listener.name)?;
                Some(BrokerAddress { node_id: b.node_id, host: e.host.clone(), port: e.port, rack: b.rack.clone() })
            })
            .collect();
        if !out.iter().any(|b| b.node_id == config.node_id) {
            let rack = config.properties.get("broker.rack").cloned();
            out.push(BrokerAddress { node_id: config.node_id, host: listener.advertised_host.clone(), port: listener.advertised_port, rack });
        }
        out.sort_by_key(|b| b.node_id);
        out
    }

    pub fn broker(&self, node_id: i32) -> Option<BrokerAddress> {
        self.brokers().into_iter().find(|b| b.node_id == node_id)
    }

    /// The leader of a partition (None: no such partition). A partition recorded before
    /// replicas were (an image from a single-node version) is this node's.
    pub fn partition_leader(&self, topic: &str, partition: i32) -> Option<i32> {
        let meta = self.metadata();
        let p = meta.topics.get(topic)?.partitions.get(usize::try_from(partition).ok()?)?;
        Some(if p.replicas.is_empty() { self.config().node_id } else { p.leader })
    }

    /// The error for a partition no shard of this node serves: NOT_LEADER_OR_FOLLOWER when
    /// another broker has it (the client looks up its leader again), else
    /// UNKNOWN_TOPIC_OR_PARTITION.
    pub fn absent_partition_error(&self, topic: &str, partition: i32) -> i16 {
        match self.partition_leader(topic, partition) {
            Some(leader) if leader != self.config().node_id => shardlog_protocol::error_code::NOT_LEADER_OR_FOLLOWER,
            _ => shardlog_protocol::error_code::UNKNOWN_TOPIC_OR_PARTITION,
        }
    }

    pub fn new(shard: &'a Shard, header: &'a RequestHeader, session: &'a Session, connection: &'a ConnectionState, request_seq: u64) -> Context<'a> {
        Context { shard, header, session, authz: Authz::new(shard, session), connection, request_seq, produce_throttle_ms: 0, request_bytes: 0 }
    }

    /// The quota of this request's client for `quota_type`, if it has one.
    pub fn client_quota(&self, quota_type: QuotaType) -> Option<crate::quota::Resolved> {
        resolve_client_quota(&self.metadata(), self.header, self.session, quota_type)
    }

    /// Counts `bytes` against the client's quota on this shard. Over it: the throttle time, and
    /// the connection is muted for that long.
    pub fn record_quota(&self, quota_type: QuotaType, quota: &crate::quota::Resolved, bytes: usize) -> u64 {
        record_quota(&self.shard.config, self.session, self.connection, quota_type, quota, bytes as f64)
    }

    /// Takes back what [`Self::record_quota`] counted (a throttled fetch sends no data).
    pub fn unrecord_quota(&self, quota_type: QuotaType, quota: &crate::quota::Resolved, bytes: usize) {
        let window = self.config().quota_window;
        let now = crate::quota::manager::now_ms();
        crate::quota::manager::with(|m| m.unrecord(window, quota_type, quota, bytes as f64, now));
    }

    pub fn config(&self) -> &'a BrokerConfig {
        &self.shard.config
    }

    /// This shard's copy of the cluster metadata, as of now.
    pub fn metadata(&self) -> Rc<ClusterMetadata> {
        self.shard.metadata.borrow().clone()
    }

    pub fn shard_id(&self) -> usize {
        self.shard.id
    }

    pub fn shard_count(&self) -> usize {
        self.shard.shard_count()
    }

    /// The owner shard of a partition, or None if the topic or partition does not exist.
    pub fn owner(&self, topic: &str, partition: i32) -> Option<usize> {
        self.shard.owner(topic, partition)
    }

    /// The shard holding this broker's replica of the partition, leader or follower.
    pub fn replica_shard(&self, topic: &str, partition: i32) -> Option<usize> {
        self.shard.metadata.borrow().placement(topic, partition).map(|p| p.shard)
    }

    pub fn shutting_down(&self) -> bool {
        self.shard.shutting_down.get()
    }

    /// Runs `call` on shard `to` (this one or another) and waits for its reply.
    pub async fn call<C: ShardCall>(&self, to: usize, call: C) -> Result<C::Reply, CallError> {
        self.shard.call(to, call).await
    }

    /// Runs `call` on the shard that coordinates `key` (a group id, a transactional id); Err is
    /// the code to answer with when there is no coordinator to ask.
    pub async fn coordinator_call<C: ShardCall>(&self, coordinator: Coordinator, key: &str, call: C) -> Result<C::Reply, i16> {
        crate::coordinator::coordinator_call(self.shard, coordinator, key, call).await
    }

    /// Whether a coordinator's state topic exists, after having the active controller create
    /// it when it does not (see [`crate::coordinator::ensure_state_topic`]).
    pub async fn ensure_state_topic(&self, coordinator: Coordinator) -> bool {
        crate::coordinator::ensure_state_topic(self.shard, coordinator).await
    }

    /// Runs a call on every shard at once (ListGroups, ListTransactions: each shard's
    /// coordinator knows only its own keys) and returns the replies of those that answered.
    pub async fn call_every_shard<C: ShardCall>(&self, make: impl Fn() -> C) -> Vec<C::Reply> {
        let calls = (0..self.shard_count()).map(|to| {
            let call = make();
            async move {
                self.call(to, call)
                    .await
                    .inspect_err(|e| tracing::warn!(shard = to, call = std::any::type_name::<C>(), error = %e, "a shard did not answer"))
                    .ok()
            }
        });
        futures::future::join_all(calls).await.into_iter().flatten().collect()
    }
}
use crate::storage::FileRange;

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
    (ApiKey::Produce, 3, 12),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 10),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::ListConfigResources, 0, 1),
    (ApiKey::DescribeTopicPartitions, 0, 0),
    (ApiKey::DescribeQuorum, 0, 2),
    (ApiKey::AddRaftVoter, 0, 0),
    (ApiKey::RemoveRaftVoter, 0, 0),
    (ApiKey::UpdateRaftVoter, 0, 0),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 8),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    // v5 only says the client knows TRANSACTION_ABORTABLE (KIP-890).
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
    (ApiKey::AddPartitionsToTxn, 0, 5),
    (ApiKey::AddOffsetsToTxn, 0, 4),
    (ApiKey::EndTxn, 0, 5),
    (ApiKey::TxnOffsetCommit, 0, 5),
    (ApiKey::WriteTxnMarkers, 1, 1),
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
    // Versions 0 and 1 are gone from Kafka 4 (KIP-896); its clients ask v2+.
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::DescribeLogDirs, 1, 4),
    (ApiKey::DescribeClientQuotas, 0, 1),
    (ApiKey::AlterClientQuotas, 0, 1),
    (ApiKey::UnregisterBroker, 0, 0),
    (ApiKey::UpdateFeatures, 0, 2),
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::AlterPartitionReassignments, 0, 1),
    (ApiKey::ListPartitionReassignments, 0, 0),
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

/// The quota of `quota_type` that applies to the client of `header` on `session`, in Kafka's
/// order of precedence over its user and client id, if it has one.
fn resolve_client_quota(meta: &ClusterMetadata, header: &RequestHeader, session: &Session, quota_type: QuotaType) -> Option<crate::quota::Resolved> {
    if meta.client_quotas.is_empty() {
        return None;
    }
    let client_id = header.client_id.as_ref().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
    meta.client_quotas.resolve(quota_type.key(), crate::quota::user_of(&session.principal()), &client_id)
}

fn record_quota(
    config: &BrokerConfig,
    session: &Session,
    connection: &ConnectionState,
    quota_type: QuotaType,
    quota: &crate::quota::Resolved,
    value: f64,
) -> u64 {
    let now = crate::quota::manager::now_ms();
    let throttle = crate::quota::manager::with(|m| m.record(config.quota_window, quota_type, quota, value, now));
    if throttle > 0 {
        tracing::debug!(peer = %session.peer, user = %quota.user_tag, client_id = %quota.client_tag, quota = quota_type.name(), bound = quota.bound, throttle_ms = throttle, "client over its quota: throttled");
        connection.mute_for(throttle);
    }
    throttle
}

/// Counts a Produce request against the client's producer_byte_rate as it is read, before it
/// is handled, and returns its throttle time. Kafka handles one request of a connection at a
/// time and counts it before reading the next; here a pipelining client has several handled at
/// once, so counting at read time is what lets the next one find the connection muted. Kafka
/// counts the whole request (`request.sizeInBytes`), appended or not.
pub fn admit(shard: &Shard, frame: &Bytes, session: &Session, connection: &ConnectionState) -> u64 {
    if request::peek_key_version_correlation(frame).is_none_or(|(key, _, _)| key != ApiKey::Produce as i16) {
        return 0;
    }
    let meta = shard.metadata.borrow().clone();
    if meta.client_quotas.is_empty() {
        return 0;
    }
    // A header that does not parse closes the connection when the request is handled.
    let Ok(header) = request::parse_header(frame) else { return 0 };
    let Some(quota) = resolve_client_quota(&meta, &header, session, QuotaType::Produce) else { return 0 };
    record_quota(&shard.config, session, connection, QuotaType::Produce, &quota, (frame.len() + shardlog_protocol::frame::FRAME_LENGTH_BYTES) as f64)
}

/// Handles request number `request_seq` of a connection (see [`ConnectionState::next_request_seq`]);
/// `produce_throttle_ms` is what [`admit`] answered for it.
pub async fn handle(
    shard: Rc<Shard>,
    frame: Bytes,
    session: Rc<Session>,
    connection: Rc<ConnectionState>,
    request_seq: u64,
    produce_throttle_ms: u64,
) -> Response {
    // The TSC through quanta: a few nanoseconds a read, against tens for the system clock,
    // which matters at millions of requests per second.
    let started = quanta::Instant::now();
    let api_key = request::peek_key_version_correlation(&frame).map(|(k, _, _)| k);
    // Only while some client quota exists: request_percentage needs the request afterwards.
    let quota_frame = (!shard.metadata.borrow().client_quotas.is_empty()).then(|| frame.clone());
    // The time spent polling the handler: what the request costs this shard's thread.
    let mut busy = std::time::Duration::ZERO;
    let response = {
        let mut request = std::pin::pin!(handle_request(&shard, frame, &session, &connection, request_seq, produce_throttle_ms));
        std::future::poll_fn(|cx| {
            let polled = quanta::Instant::now();
            let progress = std::future::Future::poll(request.as_mut(), cx);
            busy += polled.elapsed();
            progress
        })
        .await
    };
    let response = match quota_frame {
        Some(frame) => request_quota::apply(&shard, &session, &connection, &frame, busy, response),
        None => response,
    };
    if let (Some(key), true) = (api_key, shard.config.metrics_enabled) {
        if supported_versions(key).is_some() {
            probe::record(key, started.elapsed().as_micros() as u64);
        }
    }
    response
}

async fn handle_request(
    shard: &Rc<Shard>,
    frame: Bytes,
    session: &Session,
    connection: &ConnectionState,
    request_seq: u64,
    produce_throttle_ms: u64,
) -> Response {
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
    let mut ctx = Context::new(&shard, &header, session, connection, request_seq);
    ctx.produce_throttle_ms = produce_throttle_ms;
    ctx.request_bytes = frame.len();
    match body {
        RequestBody::ApiVersions(_) => api_versions::handle(&ctx),
        RequestBody::Metadata(r) => metadata::handle(&ctx, r).await,
        RequestBody::Produce(r) => produce::handle(&ctx, r).await,
        RequestBody::Fetch(r) => fetch::handle(&ctx, r).await,
        RequestBody::ListOffsets(r) => list_offsets::handle(&ctx, r).await,
        RequestBody::CreateTopics(r) => create_topics::handle(&ctx, r).await,
        RequestBody::DeleteTopics(r) => delete_topics::handle(&ctx, r).await,
        RequestBody::CreatePartitions(r) => create_partitions::handle(&ctx, r).await,
        RequestBody::DescribeCluster(r) => describe_cluster::handle(&ctx, r),
        RequestBody::ListConfigResources(r) => list_config_resources::handle(&ctx, r),
        RequestBody::DescribeTopicPartitions(r) => describe_topic_partitions::handle(&ctx, r),
        RequestBody::DescribeQuorum(r) => describe_quorum::handle(&ctx, r).await,
        RequestBody::AddRaftVoter(r) => add_raft_voter::handle(&ctx, r).await,
        RequestBody::RemoveRaftVoter(r) => remove_raft_voter::handle(&ctx, r).await,
        RequestBody::UpdateRaftVoter(r) => update_raft_voter::handle(&ctx, r).await,
        RequestBody::FindCoordinator(r) => find_coordinator::handle(&ctx, r).await,
        RequestBody::JoinGroup(r) => join_group::handle(&ctx, r).await,
        RequestBody::SyncGroup(r) => sync_group::handle(&ctx, r).await,
        RequestBody::Heartbeat(r) => heartbeat::handle(&ctx, r).await,
        RequestBody::LeaveGroup(r) => leave_group::handle(&ctx, r).await,
        RequestBody::OffsetCommit(r) => offset_commit::handle(&ctx, r).await,
        RequestBody::OffsetFetch(r) => offset_fetch::handle(&ctx, r).await,
        RequestBody::ListGroups(r) => list_groups::handle(&ctx, r).await,
        RequestBody::DescribeGroups(r) => describe_groups::handle(&ctx, r).await,
        RequestBody::DeleteGroups(r) => delete_groups::handle(&ctx, r).await,
        RequestBody::OffsetDelete(r) => offset_delete::handle(&ctx, r).await,
        RequestBody::InitProducerId(r) => init_producer_id::handle(&ctx, r).await,
        RequestBody::ConsumerGroupHeartbeat(r) => consumer_group_heartbeat::handle(&ctx, r).await,
        RequestBody::ConsumerGroupDescribe(r) => consumer_group_describe::handle(&ctx, r).await,
        RequestBody::AddPartitionsToTxn(r) => add_partitions_to_txn::handle(&ctx, r).await,
        RequestBody::AddOffsetsToTxn(r) => add_offsets_to_txn::handle(&ctx, r).await,
        RequestBody::EndTxn(r) => end_txn::handle(&ctx, r).await,
        RequestBody::TxnOffsetCommit(r) => txn_offset_commit::handle(&ctx, r).await,
        RequestBody::WriteTxnMarkers(r) => write_txn_markers::handle(&ctx, r).await,
        RequestBody::DescribeProducers(r) => describe_producers::handle(&ctx, r).await,
        RequestBody::DescribeTransactions(r) => describe_transactions::handle(&ctx, r).await,
        RequestBody::ListTransactions(r) => list_transactions::handle(&ctx, r).await,
        RequestBody::DescribeAcls(r) => describe_acls::handle(&ctx, r),
        RequestBody::CreateAcls(r) => create_acls::handle(&ctx, r).await,
        RequestBody::DeleteAcls(r) => delete_acls::handle(&ctx, r).await,
        RequestBody::SaslHandshake(r) => sasl_handshake::handle(&ctx, r),
        RequestBody::SaslAuthenticate(r) => sasl_authenticate::handle(&ctx, r),
        RequestBody::DescribeUserScramCredentials(r) => describe_user_scram_credentials::handle(&ctx, r),
        RequestBody::AlterUserScramCredentials(r) => alter_user_scram_credentials::handle(&ctx, r),
        RequestBody::DescribeConfigs(r) => describe_configs::handle(&ctx, r),
        RequestBody::AlterConfigs(r) => alter_configs::handle(&ctx, r).await,
        RequestBody::IncrementalAlterConfigs(r) => incremental_alter_configs::handle(&ctx, r).await,
        RequestBody::DeleteRecords(r) => delete_records::handle(&ctx, r).await,
        RequestBody::OffsetForLeaderEpoch(r) => offset_for_leader_epoch::handle(&ctx, r).await,
        RequestBody::DescribeLogDirs(r) => describe_log_dirs::handle(&ctx, r).await,
        RequestBody::DescribeClientQuotas(r) => describe_client_quotas::handle(&ctx, r),
        RequestBody::AlterClientQuotas(r) => alter_client_quotas::handle(&ctx, r).await,
        RequestBody::UnregisterBroker(r) => unregister_broker::handle(&ctx, r).await,
        RequestBody::UpdateFeatures(r) => update_features::handle(&ctx, r).await,
        RequestBody::ElectLeaders(r) => elect_leaders::handle(&ctx, r).await,
        RequestBody::AlterPartitionReassignments(r) => alter_partition_reassignments::handle(&ctx, r).await,
        RequestBody::ListPartitionReassignments(r) => list_partition_reassignments::handle(&ctx, r),
    }
}

/// Config resource types: 2 topic, 4 broker (and 8 broker logger), checked on the cluster.
pub(crate) fn config_allowed(authz: &Authz<'_>, operation: crate::authorizer::Operation, resource_type: i8, name: &str) -> bool {
    match resource_type {
        2 => authz.topic(operation, name),
        crate::topic_config::RESOURCE_GROUP => authz.group(operation, name),
        _ => authz.cluster(operation),
    }
}

pub(crate) fn config_denied_code(resource_type: i8) -> i16 {
    match resource_type {
        2 => shardlog_protocol::error_code::TOPIC_AUTHORIZATION_FAILED,
        crate::topic_config::RESOURCE_GROUP => shardlog_protocol::error_code::GROUP_AUTHORIZATION_FAILED,
        _ => shardlog_protocol::error_code::CLUSTER_AUTHORIZATION_FAILED,
    }
}

/// Sends a controller request to shard 0 and returns its per-topic results.
pub async fn call_controller(ctx: &Context<'_>, request: crate::controller::ControllerRequest) -> Vec<(String, i16, Option<String>)> {
    match ctx.call(crate::controller::CONTROLLER_SHARD, request).await {
        Ok(results) => results,
        Err(e) => {
            // Callers answer each item they sent that has no result as not done.
            tracing::error!(error = %e, "the controller did not answer");
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
