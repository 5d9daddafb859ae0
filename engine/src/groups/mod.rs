//! Consumer groups: the coordinator of the classic group protocol (JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup) and committed offsets.
//!
//! - `classic::state`: the classic protocol's state machine, with no I/O (events and a time in,
//!   effects out); `classic`: the coordinator that drives it and owns every group of the shard.
//! - `consumer::state`: the KIP-848 consumer protocol's state machine (ConsumerGroupHeartbeat),
//!   with no I/O either; `consumer`: its driver.
//! - `offset_store`: committing, fetching, deleting and expiring offsets; `offsets`: the formats
//!   of their `__consumer_offsets` records.
//! - `responses`: the wire responses, built from what the state machines answer.
//!
//! Nothing here imports `handlers`, which sit above: the layers only call downwards.
//!
//! A group belongs to the shard that owns its `__consumer_offsets` partition (Kafka's mapping:
//! the Java hash of the group id, modulo the partition count), so that its offset commits are
//! appended to a local log and made durable by the same group commit as any produce with
//! acks=all. Other shards forward group requests there over the mesh.

pub mod classic;
pub mod configs;
pub mod consumer;
pub mod offset_store;
pub mod offsets;
pub mod responses;

use std::rc::Rc;

use kafka_protocol::messages::consumer_group_describe_response::DescribedGroup;
use kafka_protocol::messages::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, DescribeGroupsResponse, HeartbeatRequest, JoinGroupRequest, JoinGroupResponse,
    LeaveGroupRequest, LeaveGroupResponse, SyncGroupRequest, SyncGroupResponse,
};
use shardlog_protocol::kafka_protocol;

pub use classic::GroupCoordinator;

use crate::coordinator::Coordinator;
use crate::shard::router::ShardCall;
use crate::shard::Shard;

/// Groups are found by their `__consumer_offsets` partition: callers reach a group's
/// coordinator with [`crate::coordinator::coordinator_call`] and this.
pub const COORDINATOR: Coordinator =
    Coordinator { name: "group", state_topic: offsets::OFFSETS_TOPIC, configured_partitions: |config| config.offsets_topic_partitions };

// The calls the group coordinator answers, one per operation, each with its reply type. They
// travel to the coordinator shard of their group (see [`COORDINATOR`]).

/// JoinGroup: answered once the rebalance's join phase completes.
#[derive(Debug)]
pub struct JoinGroup {
    pub request: JoinGroupRequest,
    pub version: i16,
    pub client_id: String,
    pub client_host: String,
}

impl ShardCall for JoinGroup {
    type Reply = JoinGroupResponse;
}

/// SyncGroup: answered once the leader has handed in the assignment.
#[derive(Debug)]
pub struct SyncGroup {
    pub request: SyncGroupRequest,
    pub version: i16,
}

impl ShardCall for SyncGroup {
    type Reply = SyncGroupResponse;
}

/// Heartbeat (classic protocol): an error code, NONE while the member's generation is current.
#[derive(Debug)]
pub struct Heartbeat {
    pub request: HeartbeatRequest,
}

impl ShardCall for Heartbeat {
    type Reply = i16;
}

/// LeaveGroup.
#[derive(Debug)]
pub struct LeaveGroup {
    pub request: LeaveGroupRequest,
    pub version: i16,
}

impl ShardCall for LeaveGroup {
    type Reply = LeaveGroupResponse;
}

/// OffsetCommit: one code per entry, in request order.
#[derive(Debug)]
pub struct OffsetCommit {
    pub group: String,
    pub generation: i32,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub offsets: Vec<CommitEntry>,
}

impl ShardCall for OffsetCommit {
    type Reply = Vec<i16>;
}

/// OffsetFetch: the group's error code and its committed offsets. `topics` None asks for all.
/// `require_stable`: partitions with a transactional commit still pending answer
/// UNSTABLE_OFFSET_COMMIT (KIP-447), so the consumer retries instead of reading an offset the
/// transaction is about to move.
#[derive(Debug)]
pub struct OffsetFetch {
    pub group: String,
    pub topics: Option<Vec<(String, Vec<i32>)>>,
    pub require_stable: bool,
}

impl ShardCall for OffsetFetch {
    type Reply = (i16, Vec<FetchedOffset>);
}

/// TxnOffsetCommit: offsets written as part of a transaction, applied by its commit marker.
/// One code per entry, in request order.
#[derive(Debug)]
pub struct TxnOffsetCommit {
    pub group: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub generation: i32,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub offsets: Vec<CommitEntry>,
}

impl ShardCall for TxnOffsetCommit {
    type Reply = Vec<i16>;
}

/// DescribeGroups for one group: the response with that group alone.
#[derive(Debug)]
pub struct DescribeGroup {
    pub group: String,
}

impl ShardCall for DescribeGroup {
    type Reply = DescribeGroupsResponse;
}

/// ListGroups on one coordinator shard: the groups it coordinates.
#[derive(Debug, Clone, Copy)]
pub struct ListGroups;

impl ShardCall for ListGroups {
    type Reply = Vec<ListedGroupInfo>;
}

/// DeleteGroups for one group: an error code.
#[derive(Debug)]
pub struct DeleteGroup {
    pub group: String,
}

impl ShardCall for DeleteGroup {
    type Reply = i16;
}

/// OffsetDelete: the group's error code, and one code per partition in request order.
#[derive(Debug)]
pub struct OffsetDelete {
    pub group: String,
    pub partitions: Vec<(String, i32)>,
}

impl ShardCall for OffsetDelete {
    type Reply = (i16, Vec<i16>);
}

/// ConsumerGroupHeartbeat (KIP-848).
#[derive(Debug)]
pub struct ConsumerGroupHeartbeat {
    pub request: ConsumerGroupHeartbeatRequest,
    pub client_id: String,
    pub client_host: String,
}

impl ShardCall for ConsumerGroupHeartbeat {
    type Reply = ConsumerGroupHeartbeatResponse;
}

/// ConsumerGroupDescribe for one group.
#[derive(Debug)]
pub struct ConsumerGroupDescribe {
    pub group: String,
}

impl ShardCall for ConsumerGroupDescribe {
    type Reply = DescribedGroup;
}

#[derive(Debug, Clone)]
pub struct CommitEntry {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

/// One partition's committed offset as OffsetFetch reports it: offset -1 when none.
#[derive(Debug, Clone)]
pub struct FetchedOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub error_code: i16,
}

#[derive(Debug, Clone)]
pub struct ListedGroupInfo {
    pub group_id: String,
    pub protocol_type: String,
    pub state: String,
    /// Kafka's group type (ListGroups v5): `consumer` for KIP-848 groups, `classic` otherwise.
    pub group_type: &'static str,
}

/// Creates this shard's group coordinator and registers it for the group calls routed here.
/// Once the shard has its partitions, [`GroupCoordinator::load`] replays them.
pub fn start(shard: &Rc<Shard>, config: classic::GroupConfig) -> Rc<GroupCoordinator> {
    let coordinator = Rc::new(GroupCoordinator::new(config));
    let c = &coordinator;
    serve(shard, c, |c, _, call: JoinGroup| async move { c.join(call.request, call.version, call.client_id, call.client_host).await });
    serve(shard, c, |c, _, call: SyncGroup| async move { c.sync(call.request, call.version).await });
    serve(shard, c, |c, _, call: Heartbeat| async move { c.heartbeat(&call.request) });
    serve(shard, c, |c, _, call: LeaveGroup| async move { c.leave(call.request, call.version) });
    serve(shard, c, |c, shard, call: OffsetCommit| async move {
        c.commit(&shard, &call.group, call.generation, &call.member_id, call.instance_id.as_deref(), call.offsets).await
    });
    serve(shard, c, |c, shard, call: OffsetFetch| async move { c.fetch_offsets(&shard, &call.group, call.topics, call.require_stable) });
    serve(shard, c, |c, shard, call: TxnOffsetCommit| async move {
        let instance_id = call.instance_id.as_deref();
        c.txn_commit(&shard, &call.group, call.producer_id, call.producer_epoch, call.generation, &call.member_id, instance_id, call.offsets).await
    });
    serve(shard, c, |c, shard, call: DescribeGroup| async move {
        let meta = shard.metadata.borrow().clone();
        c.describe(&meta, &call.group)
    });
    // Asked of every shard, not of one group's coordinator: each lists the groups it loaded.
    let lister = coordinator.clone();
    shard.serve(move |_, ListGroups| {
        let listed = lister.list();
        async move { listed }
    });
    serve(shard, c, |c, shard, call: DeleteGroup| async move { c.delete(&shard, &call.group).await });
    serve(shard, c, |c, shard, call: OffsetDelete| async move { c.offset_delete(&shard, &call.group, call.partitions).await });
    serve(shard, c, |c, shard, call: ConsumerGroupHeartbeat| async move {
        let meta = shard.metadata.borrow().clone();
        c.consumer_heartbeat(&meta, call.request, call.client_id, call.client_host)
    });
    serve(shard, c, |c, shard, call: ConsumerGroupDescribe| async move {
        let meta = shard.metadata.borrow().clone();
        c.consumer_describe(&meta, &call.group)
    });
    coordinator
}

/// Registers the service for calls of type `C`, handing it this shard's coordinator.
fn serve<C, F, Fut>(shard: &Rc<Shard>, coordinator: &Rc<GroupCoordinator>, handler: F)
where
    C: ShardCall,
    F: Fn(Rc<GroupCoordinator>, Rc<Shard>, C) -> Fut + 'static,
    Fut: std::future::Future<Output = C::Reply> + 'static,
{
    crate::coordinator::serve(shard, coordinator, |c| &c.loaded, handler);
}
