//! A partition's log: its segments, offsets, idempotent-producer and transaction state, and the
//! batch cache, with the synchronous half of the data path: appends and reads.
//!
//! Appends only touch memory: the batch gets its offsets, goes into the cache (readable at once)
//! and into a pending-write queue that the partition's flusher (`flusher.rs`) drains with
//! O_DIRECT | O_DSYNC writes, durable as they complete, one group commit at a time. The other
//! jobs around a log live beside it: `recovery.rs` builds a log from its files at open,
//! `partition.rs` is the handle its owner shard holds (acks=all waits, close, taking it offline).
//!
//! Flush policy for acks=0 and acks=1: acknowledged once appended in memory; the flusher writes
//! them durably within `log.flush.interval.ms` (default 5 ms), or at once when an acks=all
//! request is waiting.

use std::collections::VecDeque;
use std::fs::File;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use anyhow::Result;
use bytes::{Bytes, BytesMut};
use shardlog_protocol::batch::{self, BatchError, BatchHeader};

use super::batch_bytes::{BatchBytes, Budget, RequestBuffer};
use super::cache::{BatchCache, CachedBatch, ShardCache};
use super::cold_read::{ColdRead, Step};
use super::leader_epoch::LeaderEpochCache;
use super::producer_state::{AbortedTxn, ProducerError, ProducerState, SequenceCheck};
use super::recovery::RecoveredLog;
use super::segment::{self, Segment};
use super::txn_index;
use crate::budget::ByteBudget;

// The handle is defined in partition.rs; re-exported so that the layers above find every type of
// the log's interface under `storage::log`.
pub use super::partition::{DurableError, Partition};

/// Largest single DMA write by default (a larger flush is split into writes of this size);
/// `shardlog tune iotune` measures a better value per disk.
pub const WRITE_BYTES_MAX_DEFAULT: usize = 4 << 20;
/// DMA writes a flush larger than one write keeps in flight by default; `shardlog tune iotune`
/// measures the disk's best queue depth.
pub const WRITES_IN_FLIGHT_DEFAULT: usize = 4;
/// Producer-state snapshots kept per partition (the newest ones).
pub const PRODUCER_SNAPSHOTS_KEPT: usize = 2;

#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    pub segment_bytes: u64,
    pub roll_ms: u64,
    pub index_interval_bytes: u64,
    pub message_max_bytes: usize,
    pub log_append_time: bool,
    /// Group-commit window for acks=0/1 data, in µs (`log.flush.interval.ms`, or the disk's
    /// measured window from the io-properties file).
    pub flush_window_us: u64,
    /// Largest single DMA write.
    pub write_bytes_max: usize,
    /// DMA writes one flush keeps in flight at once.
    pub writes_in_flight_max: usize,
    /// `shardlog.cache.partition.bytes`: this partition's own bound on its cached batches
    /// (`usize::MAX`: only the shard's bound, `ShardCache`).
    pub cache_bytes: usize,
    /// `retention.ms`: sealed segments whose newest record is older are deleted; -1: never.
    pub retention_ms: i64,
    /// `retention.bytes`: oldest sealed segments are deleted while the log is larger; -1: never.
    pub retention_bytes: i64,
    /// `cleanup.policy` contains `delete`: time and size retention apply.
    pub cleanup_delete: bool,
    /// `cleanup.policy` contains `compact`: sealed segments keep the latest record per key.
    pub cleanup_compact: bool,
    /// `delete.retention.ms`: how long compaction keeps tombstones.
    pub delete_retention_ms: i64,
    /// `min.compaction.lag.ms`: segments with newer records are not compacted.
    pub min_compaction_lag_ms: i64,
    /// `min.cleanable.dirty.ratio`: the share of never-compacted bytes that starts a compaction.
    pub min_cleanable_dirty_ratio: f64,
    /// `max.compaction.lag.ms`: a segment whose newest record is older is compacted whatever
    /// the dirty ratio.
    pub max_compaction_lag_ms: i64,
}

impl Default for LogConfig {
    /// Kafka's defaults where it has them (1 GiB segments, 7-day roll, 4 KiB index interval,
    /// 1 MiB batches), with no flush window and an 8 MiB tail cache: for tests and benches.
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            roll_ms: 7 * 24 * 3600 * 1000,
            index_interval_bytes: 4096,
            message_max_bytes: 1 << 20,
            log_append_time: false,
            flush_window_us: 0,
            write_bytes_max: WRITE_BYTES_MAX_DEFAULT,
            writes_in_flight_max: WRITES_IN_FLIGHT_DEFAULT,
            cache_bytes: 8 << 20,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            cleanup_delete: true,
            cleanup_compact: false,
            delete_retention_ms: 24 * 3600 * 1000,
            min_compaction_lag_ms: 0,
            min_cleanable_dirty_ratio: 0.5,
            max_compaction_lag_ms: i64::MAX,
        }
    }
}

/// Why an append is refused. Storage names what failed; the layer that answers the client
/// chooses the protocol's error code for it (`shard::partition_ops::append_error_code`).
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("corrupt record batch: {0}")]
    Corrupt(BatchError),
    #[error("record batch of {size} bytes exceeds message.max.bytes={max}")]
    TooLarge { size: usize, max: usize },
    #[error("empty record set")]
    Empty,
    /// A storage error took the partition offline until a restart; the text is its cause.
    #[error("partition is offline after a storage error: {0}")]
    Offline(String),
    /// The log directory is full; the text says which and what to do.
    #[error("{0}")]
    DiskFull(String),
    #[error(transparent)]
    Producer(#[from] ProducerError),
    #[error("control batches are written by the transaction coordinator, not by clients")]
    ControlFromClient,
    /// The log end is being cut back (`Partition::truncate_to`): a follower's log, which takes
    /// no appends until the cut is done.
    #[error("the log is being truncated to offset {0}")]
    Truncating(i64),
    /// A follower's copy of the leader's batches does not continue its log (the leader's
    /// answer was for another fetch offset, or the log was cut meanwhile).
    #[error("replicated batch at offset {base_offset} does not start at the log end {log_end_offset}")]
    NotAtLogEnd { base_offset: i64, log_end_offset: i64 },
}

/// Records to append: in a buffer of the log's own, or as a produce request brought them.
enum Received {
    Owned(BytesMut),
    InPlace { records: Bytes, request: Rc<RequestBuffer> },
}

impl Received {
    fn bytes(&self) -> &[u8] {
        match self {
            Received::Owned(records) => records,
            Received::InPlace { records, .. } => records,
        }
    }
}

/// Who appends: a client's produce request is checked in full; the broker's own writes
/// (transaction markers, transactional offset commits) carry no sequence numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOrigin {
    Client,
    Coordinator,
    /// A follower's copy of a batch its leader appended.
    Replication,
    /// A commit or abort marker, with the coordinator epoch that wrote it.
    Marker {
        commit: bool,
        coordinator_epoch: i32,
    },
}

#[derive(Debug, Clone, Copy)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    /// The LogAppendTime stamped on the batches, or -1 for CreateTime.
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
    /// A retried idempotent batch: nothing was appended, these are the original offsets.
    pub duplicate: bool,
}

/// A piece of a read: cached bytes, or a byte range of a segment file to send with sendfile.
#[derive(Debug, Clone)]
pub enum ReadPiece {
    Memory(Bytes),
    File { file: Arc<File>, position: u64, len: usize },
}

impl ReadPiece {
    pub fn len(&self) -> usize {
        match self {
            ReadPiece::Memory(b) => b.len(),
            ReadPiece::File { len, .. } => *len,
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a read is refused.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Below the log start (retention, DeleteRecords) or past the log end.
    #[error("offset out of range: the log holds offsets {log_start_offset} to {log_end_offset}")]
    OffsetOutOfRange { log_start_offset: i64, log_end_offset: i64 },
    /// The partition is offline, or a segment file could not be read; the text says which.
    #[error("{0}")]
    Storage(String),
    /// The log end is being cut back (`Partition::truncate_to`): which batches stay is not
    /// known until the cut is done, so nothing is read meanwhile.
    #[error("the log is being truncated to offset {0}")]
    Truncating(i64),
}

#[derive(Debug, Default)]
pub struct ReadResult {
    pub pieces: Vec<ReadPiece>,
    pub bytes: usize,
    /// Records in the batches read (for metrics).
    pub records: u64,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    /// One past the last offset of the batches read (the fetch offset when nothing was read).
    pub end_offset: i64,
}

/// How a read starts (`PartitionLog::start_read`).
#[derive(Debug)]
pub enum ReadStart {
    /// Answered from memory, or with nothing.
    Done(ReadResult),
    /// From a segment file: the caller drives it to its end, reading the file as it asks.
    Cold(ColdRead),
}

/// Appended bytes for the flusher: consecutive batches of one segment. The batches are the
/// cache's own buffers (reference-counted), so queueing them copies nothing and a dirty byte is
/// held in memory once.
pub(super) struct Pending {
    pub(super) segment_base: i64,
    pub(super) start_position: u64,
    pub(super) batches: Vec<BatchBytes>,
    pub(super) len: usize,
    pub(super) end_offset: i64,
}

pub struct PartitionLog {
    pub dir: PathBuf,
    pub(super) config: LogConfig,
    pub(super) segments: Vec<Segment>,
    /// Raised by retention and DeleteRecords, persisted in `log-start-offset-checkpoint`.
    pub(super) log_start_offset: i64,
    next_offset: i64,
    /// Every offset below this is durable on disk.
    pub(super) durable_offset: i64,
    /// Compaction has cleaned the log below this offset, persisted in `cleaner-offset-checkpoint`.
    pub(super) cleaner_offset: i64,
    pending: VecDeque<Pending>,
    /// Appended batches not yet durable, by the offset that ends them: charged to the shard's
    /// dirty budget at append (what they keep alive, [`BatchBytes::enter`]), released when the
    /// durable write covers them.
    unsynced: VecDeque<(i64, BatchBytes)>,
    dirty_budget: Rc<ByteBudget>,
    pub(super) cache: BatchCache,
    /// A storage error (EIO, a vanished directory): the partition stays offline until restart.
    failed: Option<String>,
    /// The directory is full: appends are refused until the flusher's retry gets through.
    disk_full: Option<String>,
    /// acks=all requests waiting: while any do, the flusher does not wait for more data.
    durable_waiters: usize,
    /// Idempotent producers' epochs and recent sequences.
    producers: ProducerState,
    /// Producer state as of a segment roll, for the flusher to write next to the new segment.
    pending_snapshot: Option<(i64, ProducerState)>,
    /// Open transactions by first offset (→ producer id): the smallest bounds the last
    /// stable offset.
    open_txns: std::collections::BTreeMap<i64, i64>,
    /// Aborted transactions in offset order of their markers, also kept per segment in
    /// `.txnindex` files (Kafka's format).
    aborted_txns: Vec<AbortedTxn>,
    /// `.txnindex` entries (segment base offset, entry) for the flusher to write.
    txn_index_queue: Vec<(i64, AbortedTxn)>,
    /// Descriptors of segment files that compaction replaced: closing the last one frees the
    /// old file's blocks, which can take a while, so they are closed off the shard.
    pub(super) retired_files: Vec<Arc<File>>,
    /// The leader epoch appends are stamped with: the partition's current one in the metadata.
    leader_epoch: i32,
    /// The first offset of every epoch in the log, kept in `leader-epoch-checkpoint`.
    epochs: LeaderEpochCache,
    /// The cache changed since the flusher last wrote the checkpoint.
    epochs_dirty: bool,
    /// Times the log end was cut (`truncate_to`): the flusher drops its open segment file and
    /// tail page when this moves, and reopens them at the new end.
    truncations: u64,
    /// The offset a cut in flight truncates to (`truncate_to`, whose file work runs on the
    /// blocking pool): until it is done, appends and reads are refused.
    truncating: Option<i64>,
    /// The high watermark replication allows, for a partition with other replicas: on the
    /// leader the smallest log end of the in-sync followers, on a follower the leader's. None
    /// for a partition of one replica, whose every appended offset is committed.
    replicated_high_watermark: Option<i64>,
}

/// Why `truncate_to` refused.
#[derive(Debug, thiserror::Error)]
pub enum TruncateError {
    #[error("cannot truncate to offset {offset}: the log holds offsets {log_start_offset} to {log_end_offset}")]
    OutOfRange { offset: i64, log_start_offset: i64, log_end_offset: i64 },
    #[error("cannot truncate while appends are not yet durable (durable up to {durable_offset}, log end {log_end_offset}); wait for them first")]
    NotDurable { durable_offset: i64, log_end_offset: i64 },
    #[error("partition is offline after a storage error: {0}")]
    Offline(String),
    #[error("the log is already being truncated to offset {0}")]
    InProgress(i64),
    #[error("truncating the log failed, the partition must go offline: {0:#}")]
    Storage(anyhow::Error),
}

/// The file work of a cut (`Partition::truncate_to`), taken from the log by
/// `PartitionLog::begin_truncate` to run on the blocking pool: the segment holding the cut
/// offset and those after it, and the leader epochs to cut.
pub(super) struct TruncateCut {
    dir: PathBuf,
    config: LogConfig,
    offset: i64,
    /// The segment holding `offset`.
    base_offset: i64,
    read_file: Option<Arc<File>>,
    /// A batch boundary at or before `offset` (from the segment's offset index).
    search_from: u64,
    written_bytes: u64,
    size_bytes: u64,
    next_offset: i64,
    /// The segments wholly after `offset`, which go.
    later_bases: Vec<i64>,
    epochs: LeaderEpochCache,
}

impl TruncateCut {
    /// Cuts the files, then recovers the log from them. Blocking: a pread per batch header
    /// from the index entry to the cut, fsyncs, removals; bounded by one segment.
    pub(super) fn run(self) -> Result<RecoveredLog> {
        self.cut_files()?;
        PartitionLog::recover(&self.dir, &self.config)
    }

    /// What recovery then reads is the truncated log.
    fn cut_files(&self) -> Result<()> {
        use anyhow::Context;
        let dir = &self.dir;
        // The batch holding `offset` starts the cut (None: the segment ends before it).
        let found = match &self.read_file {
            Some(file) => segment::find_position_in(file, self.search_from, self.offset, self.written_bytes)?,
            None => None,
        };
        let (cut_position, new_end) = match found {
            Some((position, header)) => (position, header.base_offset),
            None => (self.size_bytes, self.next_offset),
        };
        for &later in &self.later_bases {
            remove_segment_files(dir, later)?;
        }
        let base = self.base_offset;
        let path = segment::log_path(dir, base);
        let f = std::fs::OpenOptions::new().write(true).open(&path).with_context(|| format!("opening {}", path.display()))?;
        f.set_len(cut_position).with_context(|| format!("truncating {} to {cut_position} bytes", path.display()))?;
        f.sync_all()?;
        // The segment is the last now: recovery rebuilds its indexes from the file.
        for stale in [segment::index_path(dir, base), segment::time_index_path(dir, base)] {
            let _ = std::fs::remove_file(stale);
        }
        // Aborted transactions whose markers were cut go from the segment's `.txnindex`.
        let kept: Vec<AbortedTxn> = txn_index::load_all(dir, std::iter::once(base)).into_iter().filter(|a| a.last_offset < new_end).collect();
        let _ = std::fs::remove_file(txn_index::path(dir, base));
        for entry in &kept {
            txn_index::append(dir, base, entry)?;
        }
        // Producer snapshots describe batches up to their offset: those past the cut are wrong.
        remove_producer_snapshots_after(dir, new_end)?;
        let mut epochs = self.epochs.clone();
        epochs.truncate_from_end(new_end);
        super::leader_epoch::write(dir, &epochs.to_checkpoint())?;
        super::disk::sync_dir(dir)
    }
}

/// Removes segment `base`'s files (the log, its indexes, its `.txnindex`); a file already gone
/// is fine.
fn remove_segment_files(dir: &std::path::Path, base: i64) -> Result<()> {
    use anyhow::Context;
    for path in [segment::log_path(dir, base), segment::index_path(dir, base), segment::time_index_path(dir, base), txn_index::path(dir, base)] {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
        }
    }
    Ok(())
}

/// Removes the producer-state snapshots taken at offsets after `offset`.
fn remove_producer_snapshots_after(dir: &std::path::Path, offset: i64) -> Result<()> {
    use anyhow::Context;
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name();
        let snapshot = name.to_str().and_then(|n| n.strip_suffix(".producers")).and_then(|o| o.parse::<i64>().ok());
        if snapshot.is_some_and(|o| o > offset) {
            std::fs::remove_file(entry.path()).with_context(|| format!("removing {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// The file work of a reset (`Partition::reset_to`, Kafka's `truncateFullyAndStartAt`): every
/// segment goes, and the log starts over, empty, at `offset` (one empty segment there).
pub(super) struct ResetCut {
    dir: PathBuf,
    config: LogConfig,
    topic: String,
    partition: i32,
    offset: i64,
    bases: Vec<i64>,
}

impl ResetCut {
    /// Removes the files, then recovers the log from what is left. Blocking.
    pub(super) fn run(self) -> Result<RecoveredLog> {
        use anyhow::Context;
        let dir = &self.dir;
        for &base in &self.bases {
            remove_segment_files(dir, base)?;
        }
        remove_producer_snapshots_after(dir, -1)?;
        let path = segment::log_path(dir, self.offset);
        std::fs::File::create(&path).and_then(|f| f.sync_all()).with_context(|| format!("creating {}", path.display()))?;
        super::retention::write_log_start_checkpoint(dir, &self.topic, self.partition, self.offset)?;
        super::leader_epoch::write(dir, &LeaderEpochCache::default().to_checkpoint())?;
        super::disk::sync_dir(dir)?;
        PartitionLog::recover(dir, &self.config)
    }
}

/// How long `seg` has taken appends, for `log.roll.ms`, as Kafka counts it: from its first
/// batch's timestamp to the timestamp of the batch being appended, or by the clock since the
/// segment was opened when its first batch has no timestamp.
fn roll_age_ms(seg: &Segment, header: &BatchHeader, now: u64) -> i64 {
    if seg.first_batch_timestamp >= 0 {
        header.max_timestamp.saturating_sub(seg.first_batch_timestamp)
    } else {
        now.saturating_sub(seg.created_ms) as i64
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl PartitionLog {
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }
    pub fn log_end_offset(&self) -> i64 {
        self.next_offset
    }
    pub fn high_watermark(&self) -> i64 {
        // A single replica: everything appended is committed, as with Kafka at RF=1.
        self.replicated_high_watermark.map_or(self.next_offset, |hw| hw.clamp(self.log_start_offset, self.next_offset))
    }
    /// Sets the high watermark replication allows (see `replicated_high_watermark`); None
    /// makes every appended offset committed again (the partition has one replica). Answers
    /// whether the high watermark moved.
    pub fn set_replicated_high_watermark(&mut self, hw: Option<i64>) -> bool {
        let before = self.high_watermark();
        self.replicated_high_watermark = hw;
        self.high_watermark() != before
    }
    /// Whether the high watermark is replication's (the partition has other replicas).
    pub fn is_replicated(&self) -> bool {
        self.replicated_high_watermark.is_some()
    }
    /// The last stable offset: below it, every transaction is decided (committed or aborted).
    pub fn last_stable_offset(&self) -> i64 {
        self.open_txns.keys().next().copied().unwrap_or(self.high_watermark()).min(self.high_watermark())
    }
    /// Aborted transactions that overlap `from..to`, for a read_committed fetch.
    pub fn aborted_txns_between(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        let start = self.aborted_txns.partition_point(|a| a.last_offset < from);
        self.aborted_txns[start..].iter().filter(|a| a.first_offset < to).copied().collect()
    }
    pub fn durable_offset(&self) -> i64 {
        self.durable_offset
    }
    pub fn failed(&self) -> Option<&str> {
        self.failed.as_deref()
    }
    pub fn disk_full(&self) -> Option<&str> {
        self.disk_full.as_deref()
    }
    /// Segment files compaction replaced, for the caller to close off the shard.
    pub fn take_retired_files(&mut self) -> Vec<Arc<File>> {
        std::mem::take(&mut self.retired_files)
    }
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }
    pub fn cache_bytes(&self) -> usize {
        self.cache.bytes()
    }
    /// Appended bytes not yet handed to the flusher.
    pub fn pending_bytes(&self) -> usize {
        self.pending.iter().map(|p| p.len).sum()
    }
    /// Appended bytes not yet durable (the batches' own sizes; the dirty budget is charged
    /// what they keep alive).
    pub fn unsynced_bytes(&self) -> usize {
        self.unsynced.iter().map(|(_, batch)| batch.len()).sum()
    }
    /// Charges this log's appends to `budget` (the owner shard's) from now on. Called before
    /// the first append.
    pub fn set_dirty_budget(&mut self, budget: Rc<ByteBudget>) {
        assert!(self.unsynced.is_empty(), "the dirty budget is set before anything is appended");
        self.dirty_budget = budget;
    }
    /// Counts this log's cached batches against `cache` (the owner shard's) from now on.
    /// Called before the first append.
    pub fn set_cache_budget(&mut self, cache: Rc<ShardCache>) {
        self.cache.set_shard(cache);
    }
    pub fn dirty_budget(&self) -> &Rc<ByteBudget> {
        &self.dirty_budget
    }

    /// Everything below `end_offset` is durable: the budget gets its bytes back.
    pub(super) fn mark_durable(&mut self, end_offset: i64) {
        self.durable_offset = end_offset;
        let mut released = 0;
        while let Some((end, batch)) = self.unsynced.front() {
            if *end > end_offset {
                break;
            }
            released += batch.leave(Budget::Dirty);
            self.unsynced.pop_front();
        }
        self.dirty_budget.release(released);
        let (cache_max, keep_from) = (self.config.cache_bytes, end_offset);
        self.cache.evict(cache_max, keep_from);
    }

    /// The partition failed for good: what was queued will never be written, so its memory
    /// and its share of the budget go (the cache keeps serving nothing: reads fail too).
    pub(super) fn fail(&mut self, why: String) {
        self.failed.get_or_insert(why);
        self.pending.clear();
        self.cache.clear();
        self.release_unsynced();
    }

    /// Gives the budget back every byte still charged: they will never be written here.
    fn release_unsynced(&mut self) {
        let held: usize = self.unsynced.drain(..).map(|(_, batch)| batch.leave(Budget::Dirty)).sum();
        self.dirty_budget.release(held);
    }
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size_bytes).sum()
    }

    /// The log as recovery found it on disk: everything in it is durable, nothing is pending.
    pub(super) fn from_recovered(dir: PathBuf, config: LogConfig, recovered: RecoveredLog) -> PartitionLog {
        let RecoveredLog { segments, log_start_offset, next_offset, cleaner_offset, producers, aborted_txns, epochs } = recovered;
        let open_txns = producers.open_transactions().collect();
        PartitionLog {
            dir,
            config,
            segments,
            log_start_offset,
            next_offset,
            durable_offset: next_offset,
            cleaner_offset,
            pending: VecDeque::new(),
            unsynced: VecDeque::new(),
            dirty_budget: ByteBudget::unbounded(),
            cache: BatchCache::default(),
            failed: None,
            disk_full: None,
            retired_files: Vec::new(),
            durable_waiters: 0,
            producers,
            pending_snapshot: None,
            open_txns,
            aborted_txns,
            txn_index_queue: Vec::new(),
            leader_epoch: 0,
            epochs,
            epochs_dirty: false,
            truncations: 0,
            truncating: None,
            replicated_high_watermark: None,
        }
    }

    pub(super) fn truncations(&self) -> u64 {
        self.truncations
    }
    /// The offset a cut in flight truncates to, if one is.
    pub(super) fn truncating(&self) -> Option<i64> {
        self.truncating
    }

    /// Starts cutting the log end back to `offset` (a follower dropping what the new leader
    /// does not have), the in-memory half of `Partition::truncate_to`: checks the cut, and
    /// refuses appends and reads until [`finish_truncate`](Self::finish_truncate). Answers the
    /// file work to run on the blocking pool, or the log end when there is nothing to cut.
    ///
    /// Everything appended must be durable first (the flusher idle: nothing pending, nothing
    /// unsynced). The caller keeps compaction off the partition meanwhile.
    pub(super) fn begin_truncate(&mut self, offset: i64) -> Result<Result<TruncateCut, i64>, TruncateError> {
        self.check_cuttable()?;
        if offset < self.log_start_offset || offset > self.next_offset {
            return Err(TruncateError::OutOfRange { offset, log_start_offset: self.log_start_offset, log_end_offset: self.next_offset });
        }
        if offset == self.next_offset {
            return Ok(Err(offset));
        }
        self.check_all_durable()?;
        let holder = self.segments.iter().rposition(|s| s.base_offset <= offset).unwrap_or(0);
        let seg = &self.segments[holder];
        let relative = (offset - seg.base_offset).max(0) as u32;
        let cut = TruncateCut {
            dir: self.dir.clone(),
            config: self.config.clone(),
            offset,
            base_offset: seg.base_offset,
            read_file: seg.read_file.clone(),
            search_from: seg.index.lookup(relative).1 as u64,
            written_bytes: seg.written_bytes,
            size_bytes: seg.size_bytes,
            next_offset: seg.next_offset,
            later_bases: self.segments[holder + 1..].iter().map(|s| s.base_offset).collect(),
            epochs: self.epochs.clone(),
        };
        // The flusher writes the epoch checkpoint and `.txnindex` entries only with batches,
        // and the refused appends keep those away until the cut is done: the cut writes the
        // checkpoint of the truncated epochs alone.
        self.truncating = Some(offset);
        Ok(Ok(cut))
    }

    /// What a cut or a reset needs first: the log is online and no other cut is in flight.
    fn check_cuttable(&self) -> Result<(), TruncateError> {
        if let Some(why) = &self.failed {
            return Err(TruncateError::Offline(why.clone()));
        }
        match self.truncating {
            Some(to) => Err(TruncateError::InProgress(to)),
            None => Ok(()),
        }
    }

    /// Everything appended is durable (the flusher idle: nothing pending, nothing unsynced),
    /// as a cut or a reset of the files needs.
    fn check_all_durable(&self) -> Result<(), TruncateError> {
        if !self.pending.is_empty() || !self.unsynced.is_empty() || self.durable_offset != self.next_offset {
            return Err(TruncateError::NotDurable { durable_offset: self.durable_offset, log_end_offset: self.next_offset });
        }
        Ok(())
    }

    /// Starts a reset to an empty log at `offset` (a follower that fell behind its leader's
    /// log start), the in-memory half of `Partition::reset_to`; ended by
    /// [`finish_truncate`](Self::finish_truncate), with the same rules as a cut.
    pub(super) fn begin_reset(&mut self, offset: i64, topic: &str, partition: i32) -> Result<ResetCut, TruncateError> {
        self.check_cuttable()?;
        if offset < 0 {
            return Err(TruncateError::OutOfRange { offset, log_start_offset: self.log_start_offset, log_end_offset: self.next_offset });
        }
        self.check_all_durable()?;
        self.truncating = Some(offset);
        Ok(ResetCut {
            dir: self.dir.clone(),
            config: self.config.clone(),
            topic: topic.to_string(),
            partition,
            offset,
            bases: self.segments.iter().map(|s| s.base_offset).collect(),
        })
    }

    /// Ends a cut [`begin_truncate`](Self::begin_truncate) started: the log is reopened from
    /// the files `cut` left, with the recovery that a crash would run (the last segment
    /// scanned, producer state from the newest snapshot at or below the new end). Answers the
    /// new log end. On an error the log is as before the cut, which the error says to take
    /// offline.
    pub(super) fn finish_truncate(&mut self, recovered: Result<RecoveredLog>) -> Result<i64, TruncateError> {
        self.truncating = None;
        let recovered = recovered.map_err(TruncateError::Storage)?;
        let reopened = PartitionLog::from_recovered(self.dir.clone(), self.config.clone(), recovered);
        let budget = self.dirty_budget.clone();
        let cache_shard = self.cache.shard().clone();
        let retired = std::mem::take(&mut self.retired_files);
        let (leader_epoch, truncations, waiters) = (self.leader_epoch, self.truncations + 1, self.durable_waiters);
        let hw = self.replicated_high_watermark;
        *self = reopened;
        self.replicated_high_watermark = hw;
        self.dirty_budget = budget;
        self.cache.set_shard(cache_shard);
        self.retired_files = retired;
        self.leader_epoch = leader_epoch;
        self.truncations = truncations;
        self.durable_waiters = waiters;
        Ok(self.next_offset)
    }

    // What the partition handle and its flusher do to the log, and nothing more: they see the
    // queues through these, never the fields.

    pub(super) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }
    /// Everything queued for the flusher, oldest first.
    pub(super) fn take_pending(&mut self) -> VecDeque<Pending> {
        self.pending.drain(..).collect()
    }
    /// Writes a flush did not reach go back to the front of the queue, in their order, to be
    /// written at the same positions by the next flush.
    pub(super) fn requeue_pending(&mut self, unwritten: VecDeque<Pending>) {
        for item in unwritten.into_iter().rev() {
            self.pending.push_front(item);
        }
    }
    pub(super) fn durable_waiters(&self) -> usize {
        self.durable_waiters
    }
    pub(super) fn add_durable_waiter(&mut self) {
        self.durable_waiters += 1;
    }
    pub(super) fn remove_durable_waiter(&mut self) {
        self.durable_waiters -= 1;
    }
    pub(super) fn set_disk_full(&mut self, why: String) {
        self.disk_full = Some(why);
    }
    /// Whether the directory was full until now.
    pub(super) fn clear_disk_full(&mut self) -> bool {
        self.disk_full.take().is_some()
    }
    /// `.txnindex` entries appended since the last call, for the flusher to write.
    pub(super) fn take_txn_index_queue(&mut self) -> Vec<(i64, AbortedTxn)> {
        std::mem::take(&mut self.txn_index_queue)
    }
    /// The producer state as of the newest roll, for the flusher to write next to the segment.
    pub(super) fn take_pending_snapshot(&mut self) -> Option<(i64, ProducerState)> {
        self.pending_snapshot.take()
    }
    /// A snapshot that could not be written is kept for the next attempt, unless a newer roll
    /// replaced it meanwhile.
    pub(super) fn restore_pending_snapshot(&mut self, offset: i64, state: ProducerState) {
        self.pending_snapshot.get_or_insert((offset, state));
    }

    pub fn producer_state(&self) -> &ProducerState {
        &self.producers
    }

    /// The leader epoch this log's appends are stamped with.
    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }
    /// The partition's leader epoch changed in the metadata: later appends carry the new one.
    pub fn set_leader_epoch(&mut self, epoch: i32) {
        self.leader_epoch = epoch;
    }
    pub fn leader_epochs(&self) -> &LeaderEpochCache {
        &self.epochs
    }
    /// OffsetForLeaderEpoch: the largest epoch at or below `epoch` and where it ended here
    /// (Kafka's `endOffsetFor`; the latest epoch ends at the log end).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        self.epochs.end_offset_for(epoch, self.next_offset)
    }
    /// The log start moved up (retention, DeleteRecords): so does the first epoch's start.
    /// The checkpoint follows with the next flush; until then recovery cuts it the same way.
    pub(super) fn epochs_truncated_from_start(&mut self) {
        if self.epochs.truncate_from_start(self.log_start_offset) {
            self.epochs_dirty = true;
        }
    }
    /// The checkpoint's text if the cache changed since the last one was written, for the
    /// flusher to write before the batches of a new epoch.
    pub(super) fn take_epoch_checkpoint(&mut self) -> Option<String> {
        std::mem::take(&mut self.epochs_dirty).then(|| self.epochs.to_checkpoint())
    }
    /// A checkpoint that could not be written is written again by the next flush.
    pub(super) fn epoch_checkpoint_failed(&mut self) {
        self.epochs_dirty = true;
    }

    /// Appends the batches in `records` (whole v2 batches, as a producer sent them): checks
    /// every CRC, assigns offsets, stamps LogAppendTime if configured. Memory only; the flusher
    /// makes it durable.
    pub fn append(&mut self, records: BytesMut, now: u64) -> Result<AppendInfo, AppendError> {
        self.append_from(records, now, AppendOrigin::Client)
    }

    /// Appends a commit or abort marker for `producer_id`, closing its open transaction here.
    pub fn append_marker(&mut self, producer_id: i64, epoch: i16, commit: bool, coordinator_epoch: i32, now: u64) -> Result<AppendInfo, AppendError> {
        self.producers.check_marker(producer_id, epoch)?;
        let marker = batch::build_control_batch(now as i64, producer_id, epoch, commit, coordinator_epoch);
        self.append_from(BytesMut::from(&marker[..]), now, AppendOrigin::Marker { commit, coordinator_epoch })
    }

    pub fn append_from(&mut self, records: BytesMut, now: u64, origin: AppendOrigin) -> Result<AppendInfo, AppendError> {
        self.append_received(Received::Owned(records), now, origin)
    }

    /// Appends a producer's records as its request brought them (`records`, a slice of
    /// `request`'s buffer): the batches are kept in it (see `batch_bytes`), unless the topic
    /// stamps LogAppendTime, which rewrites the CRC too: then they are copied out first.
    pub fn append_in_place(&mut self, records: Bytes, request: &Rc<RequestBuffer>, now: u64) -> Result<AppendInfo, AppendError> {
        self.append_received(Received::InPlace { records, request: request.clone() }, now, AppendOrigin::Client)
    }

    /// The most that appending `records_len` bytes of `request` with `append_in_place` would
    /// charge the dirty budget now.
    pub fn in_place_charge(&self, records_len: usize, request: &RequestBuffer) -> usize {
        if self.config.log_append_time {
            records_len
        } else {
            request.charge_to_enter(Budget::Dirty)
        }
    }

    fn append_received(&mut self, mut received: Received, now: u64, origin: AppendOrigin) -> Result<AppendInfo, AppendError> {
        let headers = self.check_appendable(received.bytes())?;
        if let Some(h) = headers.iter().find(|h| h.size_bytes > self.config.message_max_bytes) {
            return Err(AppendError::TooLarge { size: h.size_bytes, max: self.config.message_max_bytes });
        }
        if origin == AppendOrigin::Client && headers.iter().any(|h| h.is_control()) {
            return Err(AppendError::ControlFromClient);
        }
        // Idempotent producers: check every batch's epoch and sequence before anything changes.
        let mut in_request: std::collections::HashMap<i64, (i16, i32)> = std::collections::HashMap::new();
        for (i, h) in headers.iter().enumerate() {
            if h.producer_id >= 0 && origin == AppendOrigin::Coordinator {
                // The coordinator's transactional writes have no sequence, but a fenced epoch
                // is still refused.
                if let Some(entry) = self.producers.entry(h.producer_id).filter(|e| h.producer_epoch < e.epoch) {
                    return Err(ProducerError::FencedEpoch { producer_id: h.producer_id, epoch: h.producer_epoch, current_epoch: entry.epoch }.into());
                }
            }
            if h.producer_id < 0 || origin != AppendOrigin::Client {
                continue;
            }
            match in_request.get(&h.producer_id) {
                Some(&(epoch, last)) => {
                    let expected = if last == i32::MAX { 0 } else { last + 1 };
                    if h.producer_epoch != epoch || h.base_sequence != expected {
                        return Err(
                            ProducerError::OutOfOrderInRequest { producer_id: h.producer_id, batch_index: i, sequence: h.base_sequence, expected }.into()
                        );
                    }
                }
                None => match self.producers.check(h) {
                    SequenceCheck::Append => {}
                    SequenceCheck::Duplicate(original) if headers.len() == 1 => {
                        return Ok(AppendInfo {
                            base_offset: original.first_offset,
                            last_offset: original.last_offset,
                            log_append_time_ms: -1,
                            log_start_offset: self.log_start_offset,
                            duplicate: true,
                        });
                    }
                    SequenceCheck::Duplicate(_) => return Err(ProducerError::DuplicateInMultiBatchRequest { producer_id: h.producer_id }.into()),
                    SequenceCheck::Reject(e) => return Err(e.into()),
                },
            }
            let last = (h.base_sequence as i64 + h.last_offset_delta as i64) % (i32::MAX as i64 + 1);
            in_request.insert(h.producer_id, (h.producer_epoch, last as i32));
        }
        if let Received::InPlace { records, .. } = &received {
            // LogAppendTime rewrites the attributes and the CRC too: such batches get a buffer of
            // their own.
            if self.config.log_append_time {
                received = Received::Owned(BytesMut::from(&records[..]));
            }
        }
        let log_append_time_ms = if self.config.log_append_time { now as i64 } else { -1 };
        let base_offset = self.next_offset;
        for header in &headers {
            let offset = self.next_offset;
            // Whatever a producer put there (-1 usually), the batch carries the epoch of the
            // leader that appended it: followers and OffsetForLeaderEpoch rely on it.
            let batch_bytes = match &mut received {
                Received::Owned(records) => {
                    let mut batch_bytes = records.split_to(header.size_bytes);
                    batch::set_base_offset(&mut batch_bytes, offset);
                    batch::set_partition_leader_epoch(&mut batch_bytes, self.leader_epoch);
                    if self.config.log_append_time {
                        batch::set_log_append_time(&mut batch_bytes, header.size_bytes, now as i64);
                    }
                    BatchBytes::whole(batch_bytes.freeze())
                }
                Received::InPlace { records, request } => BatchBytes::in_place(records.split_to(header.size_bytes), request, offset, self.leader_epoch),
            };
            let assigned = BatchHeader {
                base_offset: offset,
                partition_leader_epoch: self.leader_epoch,
                max_timestamp: if self.config.log_append_time { now as i64 } else { header.max_timestamp },
                ..*header
            };
            self.push_batch(assigned, batch_bytes, now, origin);
        }
        Ok(AppendInfo { base_offset, last_offset: self.next_offset - 1, log_append_time_ms, log_start_offset: self.log_start_offset, duplicate: false })
    }

    /// What every append checks first: the log takes appends (not offline, being cut or on a
    /// full disk), and `records` are whole batches with good CRCs, at least one. Answers their
    /// headers.
    fn check_appendable(&self, records: &[u8]) -> Result<Vec<BatchHeader>, AppendError> {
        if let Some(why) = &self.failed {
            return Err(AppendError::Offline(why.clone()));
        }
        if let Some(offset) = self.truncating {
            return Err(AppendError::Truncating(offset));
        }
        if let Some(why) = &self.disk_full {
            return Err(AppendError::DiskFull(why.clone()));
        }
        let headers = batch::parse_all(records, true).map_err(AppendError::Corrupt)?;
        if headers.is_empty() {
            return Err(AppendError::Empty);
        }
        Ok(headers)
    }

    /// Appends a follower's copy of the leader's batches (whole v2 batches as the leader's
    /// fetch answer carried them): their offsets, leader epochs and timestamps are kept, and
    /// the first must start at this log's end. Producer and transaction state follow the
    /// batches, as recovery rebuilds them, without the checks a producer's own batches get:
    /// the leader made them.
    pub fn append_replicated(&mut self, mut records: BytesMut, now: u64) -> Result<AppendInfo, AppendError> {
        let headers = self.check_appendable(&records)?;
        let mut expected = self.next_offset;
        for h in &headers {
            if h.base_offset != expected || h.last_offset_delta < 0 {
                return Err(AppendError::NotAtLogEnd { base_offset: h.base_offset, log_end_offset: expected });
            }
            expected = h.last_offset() + 1;
        }
        let base_offset = self.next_offset;
        for header in &headers {
            let batch_bytes = records.split_to(header.size_bytes);
            let origin = if header.is_control() {
                let commit = batch::control_type(&batch_bytes) == Some(batch::CONTROL_TYPE_COMMIT);
                // The coordinator epoch is not needed to replay a marker (recovery passes -1 too).
                AppendOrigin::Marker { commit, coordinator_epoch: -1 }
            } else {
                AppendOrigin::Replication
            };
            self.push_batch(*header, BatchBytes::whole(batch_bytes.freeze()), now, origin);
        }
        Ok(AppendInfo { base_offset, last_offset: self.next_offset - 1, log_append_time_ms: -1, log_start_offset: self.log_start_offset, duplicate: false })
    }

    /// Puts one batch at its final offset (in `header` and already in `frozen`): the epoch
    /// cache, a roll if due, producer state, the segment's indexes, the flusher's queue, the
    /// dirty budget and the cache.
    fn push_batch(&mut self, assigned: BatchHeader, frozen: BatchBytes, now: u64, origin: AppendOrigin) {
        let offset = assigned.base_offset;
        if self.epochs.assign(assigned.partition_leader_epoch, offset) {
            self.epochs_dirty = true;
        }
        self.maybe_roll(&assigned, now);
        self.track_producer(&assigned, origin);
        let seg = self.segments.last_mut().expect("maybe_roll leaves an active segment");
        let position = seg.size_bytes;
        seg.record_batch(&assigned, self.config.index_interval_bytes);
        let segment_base = seg.base_offset;
        self.next_offset = assigned.last_offset() + 1;
        let len = frozen.len();
        match self.pending.back_mut() {
            Some(p) if p.segment_base == segment_base && p.start_position + p.len as u64 == position => {
                p.batches.push(frozen.clone());
                p.len += len;
                p.end_offset = self.next_offset;
            }
            _ => self.pending.push_back(Pending { segment_base, start_position: position, batches: vec![frozen.clone()], len, end_offset: self.next_offset }),
        }
        self.dirty_budget.charge(frozen.enter(Budget::Dirty));
        self.unsynced.push_back((self.next_offset, frozen.clone()));
        self.cache.push(CachedBatch { base_offset: offset, last_offset: assigned.last_offset(), max_timestamp: assigned.max_timestamp, bytes: frozen });
    }

    /// Producer and transaction state for a batch being appended at its final offset.
    fn track_producer(&mut self, header: &BatchHeader, origin: AppendOrigin) {
        if header.producer_id < 0 {
            return;
        }
        if let AppendOrigin::Marker { commit, coordinator_epoch } = origin {
            let outcome = self.producers.record_marker(header, coordinator_epoch);
            let Some(first_offset) = outcome.closed_txn_first_offset else { return };
            self.open_txns.remove(&first_offset);
            if !commit {
                let aborted = AbortedTxn {
                    producer_id: header.producer_id,
                    first_offset,
                    last_offset: header.base_offset,
                    last_stable_offset: self.last_stable_offset(),
                };
                self.record_aborted(aborted);
            }
            return;
        }
        self.producers.record(header);
        if header.is_transactional() {
            if let Some(first) = self.producers.entry(header.producer_id).and_then(|e| e.current_txn_first_offset) {
                self.open_txns.insert(first, header.producer_id);
            }
        }
    }

    /// Retention removed the segments below `offset`: their aborted transactions go from
    /// memory, and the `.txnindex` files of those segments (only segments with an abort marker
    /// have one, so this is rare and small) from the disk.
    pub(super) fn forget_aborted_txns_below(&mut self, offset: i64) {
        let gone = self.aborted_txns.partition_point(|a| a.last_offset < offset);
        if gone == 0 {
            return;
        }
        let first_kept_segment = self.segments.first().map(|s| s.base_offset).unwrap_or(offset);
        txn_index::remove_below(&self.dir, first_kept_segment);
        self.aborted_txns.drain(..gone);
    }

    /// Compaction removed the abort markers at these offsets (and their transactions' data
    /// before them): read_committed fetches must no longer be told of those transactions.
    pub(super) fn forget_aborted_txns(&mut self, marker_offsets: &[i64]) {
        self.aborted_txns.retain(|a| !marker_offsets.contains(&a.last_offset));
    }

    fn record_aborted(&mut self, aborted: AbortedTxn) {
        if self.aborted_txns.last().is_some_and(|last| last.last_offset >= aborted.last_offset) {
            return; // already known (recovery replays markers that the index holds)
        }
        self.aborted_txns.push(aborted);
        let segment_base = self.segments.iter().rev().find(|s| s.base_offset <= aborted.last_offset).map(|s| s.base_offset).unwrap_or(0);
        // Written by the flusher, off the shard, before it writes the marker itself; synced when
        // the segment is sealed. Recovery rebuilds entries of markers after the last producer
        // snapshot from the log itself, so one lost in a crash costs nothing.
        self.txn_index_queue.push((segment_base, aborted));
    }

    fn maybe_roll(&mut self, header: &BatchHeader, now: u64) {
        let roll = match self.segments.last() {
            None => true,
            Some(seg) => {
                seg.size_bytes > 0
                    && (seg.size_bytes + header.size_bytes as u64 > self.config.segment_bytes
                        || roll_age_ms(seg, header, now) >= self.config.roll_ms as i64
                        || header.last_offset() - seg.base_offset > u32::MAX as i64 / 2)
            }
        };
        if roll {
            if let Some(seg) = self.segments.last_mut() {
                seg.sealed = true;
            }
            // The producer state as of the new segment's base offset; the flusher writes it
            // when it opens the segment, so recovery replays at most one segment.
            self.pending_snapshot = Some((header.base_offset, self.producers.clone()));
            self.segments.push(Segment::new(header.base_offset, now));
        }
    }

    /// Reads from `offset` up to about `max_bytes` (at least one whole batch if there is one).
    /// Blocking: see `read_up_to`.
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<ReadResult, ReadError> {
        self.read_up_to(offset, max_bytes, self.next_offset)
    }

    /// As `read`, but only batches that start below `end_offset` (the last stable offset for
    /// a read_committed fetch; a transaction's batches never straddle it).
    ///
    /// Blocking: a cold read's batch headers are read with `pread` on this thread, so this is
    /// for startup (replaying the broker's own logs) and tests. The fetch path uses
    /// `Partition::read_up_to`, which reads them through io_uring.
    pub fn read_up_to(&self, offset: i64, max_bytes: usize, end_offset: i64) -> Result<ReadResult, ReadError> {
        let mut cold = match self.start_read(offset, max_bytes, end_offset)? {
            ReadStart::Done(result) => return Ok(result),
            ReadStart::Cold(cold) => cold,
        };
        loop {
            match cold.step(self)? {
                Step::Done(result) => return Ok(result),
                Step::Read(read) => {
                    let bytes = read.read_blocking().map_err(|e| ReadError::Storage(format!("reading batch headers at byte {}: {e}", read.position)))?;
                    cold.fill(&read, bytes)?;
                }
            }
        }
    }

    /// Starts a read: answered at once from the batch cache (or with nothing), or a cold read
    /// from a segment file whose ends are still to be found (see `cold_read`).
    pub fn start_read(&self, offset: i64, max_bytes: usize, end_offset: i64) -> Result<ReadStart, ReadError> {
        if let Some(why) = &self.failed {
            return Err(ReadError::Storage(why.clone()));
        }
        if let Some(to) = self.truncating {
            return Err(ReadError::Truncating(to));
        }
        if offset < self.log_start_offset || offset > self.next_offset {
            return Err(ReadError::OffsetOutOfRange { log_start_offset: self.log_start_offset, log_end_offset: self.next_offset });
        }
        let mut result =
            ReadResult { high_watermark: self.high_watermark(), log_start_offset: self.log_start_offset, end_offset: offset, ..Default::default() };
        if offset >= end_offset {
            return Ok(ReadStart::Done(result));
        }
        if self.cache.first_offset().is_some_and(|first| first <= offset) {
            for (bytes, records, last_offset) in self.cache.read_until(offset, max_bytes, end_offset) {
                result.end_offset = last_offset + 1;
                result.bytes += bytes.len();
                result.records += records;
                result.pieces.extend(bytes.pieces().cloned().map(ReadPiece::Memory));
            }
            return Ok(ReadStart::Done(result));
        }
        // Older than the cache: a byte range of one segment file, sent with sendfile.
        Ok(ReadStart::Cold(ColdRead::new(offset, max_bytes, end_offset, result)))
    }
}

impl Drop for PartitionLog {
    /// A deleted partition, or one closed before its last bytes were durable, gives its share
    /// of the shard's dirty budget back.
    fn drop(&mut self) {
        self.release_unsynced();
    }
}
