//! What shards say to each other. Everything here is `Send`: it crosses threads over glommio's
//! channel mesh, and nothing else does.

use bytes::Bytes;

use crate::metadata::ClusterMetadata;
use crate::storage::log::ReadPiece;

#[derive(Debug)]
pub enum ShardRequest {
    /// Append to a partition this shard owns; `acks` -1 waits for the group-commit fdatasync.
    Produce { topic: String, partition: i32, records: Bytes, acks: i16 },
    /// Read from a partition this shard owns.
    Read { topic: String, partition: i32, offset: i64, max_bytes: usize },
    /// Reply when the partition's log end offset passes `offset`, or at `deadline_ms`.
    WaitForAppend { topic: String, partition: i32, offset: i64, deadline_ms: u64 },
    /// ListOffsets for one partition: -2 earliest, -1 latest, otherwise a timestamp.
    ListOffset { topic: String, partition: i32, timestamp: i64 },
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

#[derive(Debug)]
pub struct ReadOutcome {
    pub error_code: i16,
    pub pieces: Vec<ReadPiece>,
    pub bytes: usize,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

#[derive(Debug)]
pub enum ShardReply {
    Produce(ProduceOutcome),
    Read(ReadOutcome),
    Woken,
    /// (error code, offset, timestamp)
    ListOffset(i16, i64, i64),
    Applied,
    /// Per topic: (name, error code, message).
    Controller(Vec<(String, i16, Option<String>)>),
    Group(crate::groups::GroupReply),
    /// A producer id, or -1 with the error code.
    ProducerId(i64, i16),
    Snapshot(Box<super::probe::ShardSnapshot>),
    ShutdownDone,
    /// (error code, low watermark, error message)
    DeleteRecords(i16, i64, Option<String>),
    /// Per partition: (topic, partition, log directory index, bytes).
    LogDirSizes(Vec<(String, i32, usize, u64)>),
}

pub enum Envelope {
    Request { id: u64, from: usize, request: ShardRequest },
    Reply { id: u64, reply: ShardReply },
}
