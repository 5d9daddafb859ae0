//! What shards say to each other. Everything here is `Send`: it crosses threads over glommio's
//! channel mesh, and nothing else does.

use bytes::Bytes;

use crate::metadata::ClusterMetadata;
use crate::storage::log::ReadPiece;

use super::router::ShardCall;

/// Append to partitions this shard owns: every partition of one produce request that this
/// shard owns, in request order, so a request costs one message per owner shard, not one per
/// partition. `acks` -1 waits for the group-commit fdatasync. A transactional producer's first
/// batch in a partition is verified with its coordinator (KIP-890): the partition must be in
/// the producer's ongoing transaction. One outcome per partition, in request order.
#[derive(Debug)]
pub struct Produce {
    /// Each partition's records: slices of the request's buffer.
    pub partitions: Vec<(String, i32, Bytes)>,
    /// The size of that buffer, which a record slice kept in memory keeps alive.
    pub request_bytes: usize,
    pub acks: i16,
    /// How long an acks=all write may wait for the in-sync replicas (the request's timeout).
    pub timeout_ms: u64,
    /// A transactional batch must be in the producer's transaction already: the handler added a
    /// transactions-v2 request's partitions (Produce v12) before sending them here.
    pub transactional_id: Option<String>,
    /// The client knows TRANSACTION_ABORTABLE (Produce v11+, KIP-890); older ones are answered
    /// INVALID_TXN_STATE instead, as Kafka does.
    pub transaction_abortable_known: bool,
}

impl ShardCall for Produce {
    type Reply = Vec<ProduceOutcome>;
}

/// Read from partitions this shard owns (every partition of one fetch request that it owns, in
/// request order); read_committed reads stop at the last stable offset. While what was read
/// comes to fewer than `min_bytes` and `deadline_ms` has not passed, the owner waits there for
/// an append to any of them and reads again: one message per owner shard, one answer, however
/// long the poll. One outcome per partition, in request order.
#[derive(Debug)]
pub struct Fetch {
    pub partitions: Vec<FetchPartition>,
    pub read_committed: bool,
    pub min_bytes: usize,
    pub deadline_ms: u64,
    /// The fetching follower's node id (a replica fetch), or -1 for a consumer.
    pub replica_id: i32,
    /// A consumer that may read from a follower's copy (Fetch v11+, KIP-392).
    pub follower_reads: bool,
    /// The consumer's `client.rack`, when `replica.selector.class` is rack-aware: the leader
    /// may send it to a replica in that rack.
    pub client_rack: Option<String>,
}

impl ShardCall for Fetch {
    type Reply = Vec<ReadOutcome>;
}

/// ListOffsets for one partition: -2 earliest, -1 latest (the last stable offset for
/// read_committed), otherwise a timestamp.
#[derive(Debug)]
pub struct ListOffset {
    pub topic: String,
    pub partition: i32,
    pub timestamp: i64,
    pub read_committed: bool,
    /// The client's view of the leader epoch (-1: none), checked as Kafka does.
    pub current_leader_epoch: i32,
}

#[derive(Debug)]
pub struct ListedOffset {
    pub error_code: i16,
    pub offset: i64,
    pub timestamp: i64,
    /// The leader epoch of the batch holding `offset` (-1 when unknown).
    pub leader_epoch: i32,
}

impl ShardCall for ListOffset {
    type Reply = ListedOffset;
}

/// OffsetForLeaderEpoch for partitions this shard leads, in request order: where each asked
/// epoch ended in the log.
#[derive(Debug)]
pub struct EpochEndOffsets {
    pub partitions: Vec<EpochQuery>,
}

#[derive(Debug, Clone)]
pub struct EpochQuery {
    pub topic: String,
    pub partition: i32,
    /// The asker's view of the leader epoch (-1: none).
    pub current_leader_epoch: i32,
    pub leader_epoch: i32,
}

/// (error code, the largest epoch at or below the asked one, its end offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEnd {
    pub error_code: i16,
    pub leader_epoch: i32,
    pub end_offset: i64,
}

impl ShardCall for EpochEndOffsets {
    type Reply = Vec<EpochEnd>;
}

/// A transaction marker for a partition this shard owns, from the transaction coordinator.
/// Answers an error code (NONE for success).
#[derive(Debug)]
pub struct TxnMarker {
    pub topic: String,
    pub partition: i32,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    /// The coordinator's epoch, recorded in the marker.
    pub coordinator_epoch: i32,
}

impl ShardCall for TxnMarker {
    type Reply = i16;
}

/// The active producers of a partition this shard owns (DescribeProducers).
#[derive(Debug)]
pub struct DescribeProducers {
    pub topic: String,
    pub partition: i32,
}

impl ShardCall for DescribeProducers {
    /// (error code, producers)
    type Reply = (i16, Vec<ProducerInfo>);
}

/// Controller to shard: adopt this metadata (open new partitions, drop deleted ones).
#[derive(Debug)]
pub struct ApplyMetadata(pub Box<ClusterMetadata>);

impl ShardCall for ApplyMetadata {
    type Reply = ();
}

/// This shard's metrics and status, for the admin listener.
#[derive(Debug)]
pub struct Snapshot;

impl ShardCall for Snapshot {
    type Reply = Box<super::probe::ShardSnapshot>;
}

/// DeleteRecords for one partition: raise its log start offset to `offset` (-1: the high
/// watermark).
#[derive(Debug)]
pub struct DeleteRecords {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

#[derive(Debug)]
pub struct RecordsDeleted {
    pub error_code: i16,
    pub low_watermark: i64,
    pub error_message: Option<String>,
}

impl ShardCall for DeleteRecords {
    type Reply = RecordsDeleted;
}

/// Sizes of the partitions this shard owns, for DescribeLogDirs.
#[derive(Debug)]
pub struct LogDirSizes;

#[derive(Debug)]
pub struct LogDirUsage {
    /// Per partition: (topic, partition, log directory index, bytes).
    pub partitions: Vec<(String, i32, usize, u64)>,
    /// The failed log directories: (index, why).
    pub failed: Vec<(usize, String)>,
}

impl ShardCall for LogDirSizes {
    type Reply = LogDirUsage;
}

/// Another shard found log directory `dir` failed: take its partitions here offline too.
#[derive(Debug)]
pub struct LogDirFailed {
    pub dir: usize,
    pub why: String,
}

impl ShardCall for LogDirFailed {
    type Reply = ();
}

#[derive(Debug, Clone)]
pub struct ProduceOutcome {
    pub error_code: i16,
    pub base_offset: i64,
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
    pub error_message: Option<String>,
    /// A retried batch found already in the log: `base_offset` is where it was appended first.
    pub duplicate: bool,
    /// Kafka's per-record errors: (index of the record in its batch, why it was refused).
    pub record_errors: Vec<(i32, String)>,
}

/// One partition of a Fetch for its owner shard.
#[derive(Debug, Clone)]
pub struct FetchPartition {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub max_bytes: usize,
    /// The client's view of the leader epoch (-1: none), checked as Kafka does.
    pub current_leader_epoch: i32,
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
    /// KIP-392: the replica a consumer should fetch this partition from instead (the leader's
    /// replica selector chose one nearer the consumer), or -1.
    pub preferred_read_replica: i32,
}

impl ReadOutcome {
    /// Nothing read, with `error_code`.
    pub fn empty(error_code: i16) -> ReadOutcome {
        ReadOutcome {
            error_code,
            pieces: Vec::new(),
            bytes: 0,
            high_watermark: -1,
            last_stable_offset: -1,
            log_start_offset: -1,
            aborted: None,
            preferred_read_replica: -1,
        }
    }
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
