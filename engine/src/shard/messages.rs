//! What shards say to each other. Everything here is `Send`: it crosses threads over glommio's
//! channel mesh, and nothing else does.

use bytes::Bytes;

use crate::metadata::ClusterMetadata;
use crate::storage::log::ReadPiece;

#[derive(Debug)]
pub enum ShardRequest {
    /// Append to partitions this shard owns: every partition of one produce request that this
    /// shard owns, in request order, so a request costs one message per owner shard, not one
    /// per partition. `acks` -1 waits for the group-commit fdatasync. A transactional
    /// producer's first batch in a partition is verified with its coordinator (KIP-890): the
    /// partition must be in the producer's ongoing transaction.
    Produce { partitions: Vec<(String, i32, Bytes)>, acks: i16, transactional_id: Option<String> },
    /// Read from partitions this shard owns (every partition of one fetch request that it owns,
    /// in request order); read_committed reads stop at the last stable offset. While what was
    /// read comes to fewer than `min_bytes` and `deadline_ms` has not passed, the owner waits
    /// here for an append to any of them and reads again: one message per owner shard, one
    /// answer, however long the poll.
    Fetch { partitions: Vec<FetchPartition>, read_committed: bool, min_bytes: usize, deadline_ms: u64 },
    /// ListOffsets for one partition: -2 earliest, -1 latest (the last stable offset for
    /// read_committed), otherwise a timestamp.
    ListOffset { topic: String, partition: i32, timestamp: i64, read_committed: bool },
    /// A transaction marker for a partition this shard owns, from the transaction coordinator.
    TxnMarker { topic: String, partition: i32, producer_id: i64, producer_epoch: i16, commit: bool },
    /// A transaction request, for the transactional id's coordinator shard.
    Txn(Box<crate::txn::TxnCall>),
    /// The active producers of a partition this shard owns (DescribeProducers).
    DescribeProducers { topic: String, partition: i32 },
    /// Controller to shard: adopt this metadata (open new partitions, drop deleted ones).
    ApplyMetadata(Box<ClusterMetadata>),
    /// Shard to controller.
    Controller(ControllerRequest),
    /// A consumer-group request, for the group's coordinator shard.
    Group(Box<crate::groups::GroupCall>),
    /// This shard's metrics and status, for the admin listener.
    Snapshot,
    /// Close every partition cleanly.
    Shutdown,
    /// DeleteRecords for one partition: raise its log start offset to `offset` (-1: the high
    /// watermark).
    DeleteRecords { topic: String, partition: i32, offset: i64 },
    /// Sizes of the partitions this shard owns, for DescribeLogDirs.
    LogDirSizes,
    /// Another shard found log directory `dir` failed: take its partitions here offline too.
    LogDirFailed { dir: usize, why: String },
}

#[derive(Debug, Clone)]
pub enum ControllerRequest {
    CreateTopics {
        topics: Vec<NewTopic>,
        validate_only: bool,
    },
    DeleteTopics {
        names: Vec<String>,
    },
    CreatePartitions {
        topics: Vec<(String, i32)>,
        validate_only: bool,
    },
    /// A new producer id for an idempotent producer.
    AllocateProducerId,
    /// CreateAcls: bindings already validated by the handler.
    CreateAcls {
        acls: Vec<crate::authorizer::AclBinding>,
    },
    /// DeleteAcls: every ACL that matches a filter goes; the reply lists them per filter.
    DeleteAcls {
        filters: Vec<crate::authorizer::AclFilter>,
    },
    /// AlterConfigs and IncrementalAlterConfigs: one result per resource, in order.
    AlterConfigs {
        resources: Vec<ConfigAlteration>,
        validate_only: bool,
    },
}

/// Config changes for one resource (a topic, or the broker).
#[derive(Debug, Clone)]
pub struct ConfigAlteration {
    /// Kafka's resource type: 2 topic, 4 broker.
    pub resource_type: i8,
    pub resource_name: String,
    /// AlterConfigs replaces every config of the resource with `ops` (all SET);
    /// IncrementalAlterConfigs applies them one by one.
    pub incremental: bool,
    /// (name, operation: 0 set, 1 delete, 2 append, 3 subtract, value)
    pub ops: Vec<(String, i8, Option<String>)>,
}

#[derive(Debug, Clone)]
pub struct NewTopic {
    pub name: String,
    /// -1: `num.partitions`.
    pub partitions: i32,
    pub replication_factor: i16,
    pub configs: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct ProduceOutcome {
    pub error_code: i16,
    pub base_offset: i64,
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
    pub error_message: Option<String>,
}

/// One partition of a Fetch for its owner shard.
#[derive(Debug, Clone)]
pub struct FetchPartition {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub max_bytes: usize,
}

#[derive(Debug)]
pub struct ReadOutcome {
    pub error_code: i16,
    pub pieces: Vec<ReadPiece>,
    pub bytes: usize,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    /// For read_committed reads: (producer id, first offset) of aborted transactions that
    /// overlap what was read.
    pub aborted: Option<Vec<(i64, i64)>>,
}

/// One producer of a partition, as DescribeProducers reports it.
#[derive(Debug, Clone)]
pub struct ProducerInfo {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub last_sequence: i32,
    pub last_timestamp_ms: i64,
    pub coordinator_epoch: i32,
    pub current_txn_start_offset: i64,
}

#[derive(Debug)]
pub enum ShardReply {
    /// One outcome per partition of the request, in its order.
    Produce(Vec<ProduceOutcome>),
    /// One outcome per partition of the Fetch, in its order.
    Fetch(Vec<ReadOutcome>),
    /// (error code, offset, timestamp)
    ListOffset(i16, i64, i64),
    Applied,
    /// Per topic: (name, error code, message).
    Controller(Vec<(String, i16, Option<String>)>),
    Group(crate::groups::GroupReply),
    Txn(Box<crate::txn::TxnReply>),
    /// An error code (NONE for success).
    Code(i16),
    /// (error code, producers)
    Producers(i16, Vec<ProducerInfo>),
    /// A producer id, or -1 with the error code.
    ProducerId(i64, i16),
    /// The ACLs DeleteAcls removed, per filter; or why nothing changed.
    AclsDeleted(Result<Vec<Vec<crate::authorizer::AclBinding>>, (i16, String)>),
    Snapshot(Box<super::probe::ShardSnapshot>),
    ShutdownDone,
    /// (error code, low watermark, error message)
    DeleteRecords(i16, i64, Option<String>),
    /// Per partition: (topic, partition, log directory index, bytes); then the failed log
    /// directories (index, why).
    LogDirSizes(Vec<(String, i32, usize, u64)>, Vec<(usize, String)>),
}

pub enum Envelope {
    Request { id: u64, from: usize, request: ShardRequest },
    Reply { id: u64, reply: ShardReply },
}
