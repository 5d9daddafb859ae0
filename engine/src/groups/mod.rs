//! Consumer groups: the coordinator of the classic group protocol (JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup) and committed offsets.
//!
//! - `classic::state`: the classic protocol's state machine, with no I/O (events and a time in,
//!   effects out); `classic`: the coordinator that drives it and owns every group of the shard.
//! - `consumer`: the KIP-848 consumer protocol (ConsumerGroupHeartbeat).
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
pub mod consumer;
pub mod offset_store;
pub mod offsets;
pub mod responses;

use std::rc::Rc;

use kafka_protocol::messages::{
    DescribeGroupsResponse, HeartbeatRequest, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, SyncGroupRequest, SyncGroupResponse,
};
use shardlog_protocol::kafka_protocol;

pub use classic::GroupCoordinator;

use crate::coordinator::Coordinator;
use crate::shard::Shard;

/// Groups are found by their `__consumer_offsets` partition: callers reach a group's
/// coordinator with [`crate::coordinator::coordinator_call`] and this.
pub const COORDINATOR: Coordinator = Coordinator { name: "group", state_topic: offsets::OFFSETS_TOPIC };

/// A group request as it travels to the coordinator shard.
#[derive(Debug)]
pub enum GroupCall {
    Join {
        request: JoinGroupRequest,
        version: i16,
        client_id: String,
        client_host: String,
    },
    Sync {
        request: SyncGroupRequest,
        version: i16,
    },
    Heartbeat {
        request: HeartbeatRequest,
    },
    Leave {
        request: LeaveGroupRequest,
        version: i16,
    },
    Commit {
        group: String,
        generation: i32,
        member_id: String,
        instance_id: Option<String>,
        offsets: Vec<CommitEntry>,
    },
    /// `require_stable`: partitions with a transactional commit still pending answer
    /// UNSTABLE_OFFSET_COMMIT (KIP-447), so the consumer retries instead of reading an offset
    /// the transaction is about to move.
    Fetch {
        group: String,
        topics: Option<Vec<(String, Vec<i32>)>>,
        require_stable: bool,
    },
    /// TxnOffsetCommit: offsets written as part of a transaction, applied by its commit marker.
    TxnCommit {
        group: String,
        producer_id: i64,
        producer_epoch: i16,
        generation: i32,
        member_id: String,
        instance_id: Option<String>,
        offsets: Vec<CommitEntry>,
    },
    Describe {
        group: String,
    },
    List,
    Delete {
        group: String,
    },
    OffsetDelete {
        group: String,
        partitions: Vec<(String, i32)>,
    },
    ConsumerHeartbeat {
        request: kafka_protocol::messages::ConsumerGroupHeartbeatRequest,
        client_id: String,
        client_host: String,
    },
    ConsumerDescribe {
        group: String,
    },
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
}

#[derive(Debug)]
pub enum GroupReply {
    Join(JoinGroupResponse),
    Sync(SyncGroupResponse),
    Heartbeat(i16),
    Leave(LeaveGroupResponse),
    Commit(Vec<i16>),
    Fetch(i16, Vec<FetchedOffset>),
    Describe(Box<DescribeGroupsResponse>),
    List(Vec<ListedGroupInfo>),
    Delete(i16),
    OffsetDelete(i16, Vec<i16>),
    ConsumerHeartbeat(Box<kafka_protocol::messages::ConsumerGroupHeartbeatResponse>),
    ConsumerDescribe(Box<kafka_protocol::messages::consumer_group_describe_response::DescribedGroup>),
}

impl crate::shard::router::ShardCall for GroupCall {
    type Reply = GroupReply;
}

/// Creates this shard's group coordinator and registers it for the group calls routed here.
/// Once the shard has its partitions, [`GroupCoordinator::load`] replays them.
pub fn start(shard: &Rc<Shard>, config: classic::GroupConfig) -> Rc<GroupCoordinator> {
    let coordinator = Rc::new(GroupCoordinator::new(config));
    let c = coordinator.clone();
    shard.serve(move |shard, call: GroupCall| {
        let c = c.clone();
        async move { c.handle(&shard, call).await }
    });
    coordinator
}
