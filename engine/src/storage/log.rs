//! A partition's log: an ordered list of segments, the batch cache, and the group-commit flusher.
//!
//! Appends are synchronous and only touch memory: the batch gets its offsets, goes into the
//! cache (readable at once) and into a pending-write queue. One flusher task per partition
//! drains that queue: it writes page-aligned buffers with O_DIRECT through io_uring (glommio DMA
//! files), rewriting the partial tail page each time, then issues one fdatasync for everything it
//! wrote. Every acks=all request waiting on an offset that fdatasync covered is released together
//! (group commit). While one flush runs, new appends queue up for the next one.
//!
//! Flush policy for acks=0 and acks=1: acknowledged once appended in memory; the flusher writes
//! and fdatasyncs them within `log.flush.interval.ms` (default 5 ms), or at once when an acks=all
//! request is waiting.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::{Bytes, BytesMut};
use glommio::io::{DmaFile, OpenOptions};
use shardlog_protocol::batch::{self, BatchError, BatchHeader};

use super::cache::{BatchCache, CachedBatch};
use super::index::{OffsetIndex, TimeIndex};
use super::producer_state::{AbortedTxn, ProducerState, SequenceCheck};
use super::segment::{self, Segment};
use super::txn_index;
use crate::budget::ByteBudget;
use crate::notify::Notify;

/// O_DIRECT writes are aligned to this many bytes (a page, which also covers 512-byte devices).
pub const WRITE_ALIGNMENT_BYTES: u64 = 4096;
/// Largest single DMA write by default (a larger flush is split into writes of this size);
/// `shardlog tune iotune` measures a better value per disk.
pub const WRITE_BYTES_MAX_DEFAULT: usize = 4 << 20;
/// DMA writes a flush larger than one write keeps in flight by default; `shardlog tune iotune`
/// measures the disk's best queue depth.
pub const WRITES_IN_FLIGHT_DEFAULT: usize = 4;
/// Segments are preallocated (fallocate, keeping the file size) this much at a time as they
/// grow: XFS and ext4 then lay them out contiguously, without reserving a whole segment of
/// disk for a partition that may stay small.
pub const PREALLOCATE_STEP_BYTES: u64 = 32 << 20;
/// Producer-state snapshots kept per partition (the newest ones).
pub const PRODUCER_SNAPSHOTS_KEPT: usize = 2;
/// Marker written on clean shutdown: the active segment's size and indexes can be trusted.
pub const CLEAN_SHUTDOWN_FILE: &str = ".shardlog-clean-shutdown";
/// How often a flusher whose directory is full tries its write again.
pub const DISK_FULL_RETRY_INTERVAL: Duration = Duration::from_millis(500);

/// Whether `e` says the filesystem is full (ENOSPC) or a quota is spent (EDQUOT): a condition
/// that ends when space is freed, unlike an I/O error.
pub fn is_out_of_space(e: &anyhow::Error) -> bool {
    e.chain().filter_map(|cause| cause.downcast_ref::<std::io::Error>()).any(io_out_of_space)
}

fn io_out_of_space(io: &std::io::Error) -> bool {
    matches!(io.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
        || matches!(io.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded)
}

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

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("corrupt record batch: {0}")]
    Corrupt(BatchError),
    #[error("record batch of {size} bytes exceeds message.max.bytes={max}")]
    TooLarge { size: usize, max: usize },
    #[error("empty record set")]
    Empty,
    #[error("partition is offline after a storage error: {0}")]
    Offline(String),
    #[error("{0}")]
    DiskFull(String),
    #[error("{message}")]
    Producer { error_code: i16, message: String },
    #[error("control batches are written by the transaction coordinator, not by clients")]
    ControlFromClient,
}

/// Who appends: a client's produce request is checked in full; the broker's own writes
/// (transaction markers, transactional offset commits) carry no sequence numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOrigin {
    Client,
    Coordinator,
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

#[derive(Debug)]
pub enum ReadError {
    OffsetOutOfRange { log_start_offset: i64, log_end_offset: i64 },
    Storage(String),
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

/// Appended bytes for the flusher: consecutive batches of one segment. The batches are the
/// cache's own buffers (reference-counted), so queueing them copies nothing and a dirty byte is
/// held in memory once.
struct Pending {
    segment_base: i64,
    start_position: u64,
    batches: Vec<Bytes>,
    len: usize,
    end_offset: i64,
}

pub struct PartitionLog {
    pub dir: PathBuf,
    pub(super) config: LogConfig,
    pub(super) segments: Vec<Segment>,
    /// Raised by retention and DeleteRecords, persisted in `log-start-offset-checkpoint`.
    pub(super) log_start_offset: i64,
    next_offset: i64,
    /// Every offset below this has been fdatasynced.
    pub(super) durable_offset: i64,
    /// Compaction has cleaned the log below this offset, persisted in `cleaner-offset-checkpoint`.
    pub(super) cleaner_offset: i64,
    pending: VecDeque<Pending>,
    /// Appended bytes not yet durable, by the offset that ends them: charged to the shard's
    /// dirty budget at append, released when the fdatasync covers them.
    unsynced: VecDeque<(i64, usize)>,
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
}

/// A partition as its owner shard holds it.
pub struct Partition {
    pub topic: String,
    pub partition: i32,
    pub log: RefCell<PartitionLog>,
    /// Fires after every append: wakes long-polling fetches.
    pub appended: Notify,
    /// Fires after every flush (and on failure): wakes acks=all producers.
    pub durable: Notify,
    flush_wanted: Notify,
    /// Fires when an acks=all request starts waiting: ends the flush window early.
    durable_wanted: Notify,
    flusher_done: Notify,
    flusher_running: Cell<bool>,
    closed: Cell<bool>,
    /// Transaction markers appended so far (producers verifying a transaction watch it).
    pub markers_written: Cell<u64>,
    pub probe: super::probe::PartitionProbe,
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

fn align_down(v: u64) -> u64 {
    v & !(WRITE_ALIGNMENT_BYTES - 1)
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
        self.next_offset
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
    /// Appended bytes not yet durable (charged to the dirty budget).
    pub fn unsynced_bytes(&self) -> usize {
        self.unsynced.iter().map(|(_, bytes)| bytes).sum()
    }
    /// Charges this log's appends to `budget` (the owner shard's) from now on. Called before
    /// the first append.
    pub fn set_dirty_budget(&mut self, budget: Rc<ByteBudget>) {
        assert!(self.unsynced.is_empty(), "the dirty budget is set before anything is appended");
        self.dirty_budget = budget;
    }
    pub fn dirty_budget(&self) -> &Rc<ByteBudget> {
        &self.dirty_budget
    }

    /// Everything below `end_offset` is durable: the budget gets its bytes back.
    fn mark_durable(&mut self, end_offset: i64) {
        self.durable_offset = end_offset;
        let mut released = 0;
        while let Some(&(end, bytes)) = self.unsynced.front() {
            if end > end_offset {
                break;
            }
            released += bytes;
            self.unsynced.pop_front();
        }
        self.dirty_budget.release(released);
        let (cache_max, keep_from) = (self.config.cache_bytes, end_offset);
        self.cache.evict(cache_max, keep_from);
    }

    /// The partition failed for good: what was queued will never be written, so its memory
    /// and its share of the budget go (the cache keeps serving nothing: reads fail too).
    fn fail(&mut self, why: String) {
        self.failed.get_or_insert(why);
        self.pending.clear();
        self.cache.clear();
        self.release_unsynced();
    }

    /// Gives the budget back every byte still charged: they will never be written here.
    fn release_unsynced(&mut self) {
        let held: usize = self.unsynced.drain(..).map(|(_, bytes)| bytes).sum();
        self.dirty_budget.release(held);
    }
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size_bytes).sum()
    }

    /// Opens (or creates) the log in `dir`, recovering it after a crash: sealed segments are
    /// trusted (their indexes reloaded, or rebuilt if damaged); the active segment is scanned
    /// batch by batch, CRC-checked, and truncated after its last valid batch. Work is therefore
    /// bounded by one segment, not by the size of the log.
    pub fn open(dir: &Path, config: LogConfig) -> Result<PartitionLog> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating partition directory {}", dir.display()))?;
        super::compaction::finish_interrupted(dir)?;
        let clean_marker = dir.join(CLEAN_SHUTDOWN_FILE);
        let clean = clean_marker.exists();
        let mut bases = Vec::new();
        for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if let Some(stem) = name.strip_suffix(".log") {
                if let Ok(base) = stem.parse::<i64>() {
                    bases.push(base);
                }
            }
        }
        bases.sort_unstable();
        let mut segments = Vec::with_capacity(bases.len());
        let last = bases.len().saturating_sub(1);
        for (i, &base) in bases.iter().enumerate() {
            let path = segment::log_path(dir, base);
            let file_bytes = std::fs::metadata(&path)?.len();
            let trusted = i < last || clean;
            let loaded = if trusted { load_indexes(dir, base, file_bytes) } else { None };
            let mut seg = Segment::new(base, now_ms());
            match loaded {
                Some((index, time_index, next_offset, max_timestamp)) => {
                    seg.index = index;
                    seg.time_index = time_index;
                    seg.size_bytes = file_bytes;
                    seg.next_offset = next_offset;
                    seg.max_timestamp = max_timestamp;
                    seg.bytes_since_index_entry = config.index_interval_bytes; // next append adds an entry
                }
                None => {
                    let scan = segment::scan(&path, base, config.index_interval_bytes)?;
                    if let Some(why) = &scan.stopped_because {
                        if scan.valid_bytes < scan.file_bytes {
                            tracing::warn!(segment = %path.display(), valid_bytes = scan.valid_bytes, file_bytes = scan.file_bytes, reason = %why, "truncating segment after its last valid batch");
                        }
                    }
                    if scan.valid_bytes < scan.file_bytes {
                        let f = std::fs::OpenOptions::new().write(true).open(&path)?;
                        f.set_len(scan.valid_bytes)?;
                        f.sync_all()?;
                    }
                    seg.index = scan.index;
                    seg.time_index = scan.time_index;
                    seg.size_bytes = scan.valid_bytes;
                    seg.next_offset = scan.next_offset;
                    seg.max_timestamp = scan.max_timestamp;
                    seg.bytes_since_index_entry = scan.bytes_since_index_entry;
                    if i < last {
                        write_indexes(dir, base, &seg.index, &seg.time_index, seg.next_offset)?;
                    }
                }
            }
            seg.written_bytes = seg.size_bytes;
            seg.read_file = Some(Arc::new(File::open(&path)?));
            seg.sealed = i < last;
            // `log.roll.ms` counts from the first batch's timestamp, as in Kafka, so a restart does
            // not make the active segment young again.
            if i == last {
                if let Some(first) = seg.header_at(0)? {
                    seg.first_batch_timestamp = first.max_timestamp;
                }
            }
            segments.push(seg);
        }
        // A torn tail may leave an empty segment after sealed ones; it stays the active segment.
        if clean {
            std::fs::remove_file(&clean_marker)?;
            sync_dir(dir)?;
        }
        let next_offset = segments.last().map(|s| s.next_offset).unwrap_or(0);
        // DeleteRecords may have moved the log start into the first segment.
        let first_base = segments.first().map(|s| s.base_offset).unwrap_or(0);
        let log_start_offset = super::retention::read_log_start_checkpoint(dir).map_or(first_base, |c| c.max(first_base)).min(next_offset.max(first_base));
        let mut aborted_txns = txn_index::load_all(dir, segments.iter().map(|s| s.base_offset));
        let producers = recover_producer_state(dir, &segments, log_start_offset, next_offset, &mut aborted_txns)?;
        let open_txns = producers.open_transactions().collect();
        Ok(PartitionLog {
            dir: dir.to_path_buf(),
            config,
            segments,
            log_start_offset,
            next_offset,
            durable_offset: next_offset,
            cleaner_offset: super::compaction::read_cleaner_checkpoint(dir).unwrap_or(0).clamp(0, next_offset),
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
        })
    }

    pub fn producer_state(&self) -> &ProducerState {
        &self.producers
    }

    /// Appends the batches in `records` (whole v2 batches, as a producer sent them): checks
    /// every CRC, assigns offsets, stamps LogAppendTime if configured. Memory only; the flusher
    /// makes it durable.
    pub fn append(&mut self, records: BytesMut, now: u64) -> Result<AppendInfo, AppendError> {
        self.append_from(records, now, AppendOrigin::Client)
    }

    /// Appends a commit or abort marker for `producer_id`, closing its open transaction here.
    pub fn append_marker(&mut self, producer_id: i64, epoch: i16, commit: bool, coordinator_epoch: i32, now: u64) -> Result<AppendInfo, AppendError> {
        self.producers
            .check_marker(producer_id, epoch)
            .map_err(|message| AppendError::Producer { error_code: shardlog_protocol::error_code::INVALID_PRODUCER_EPOCH, message })?;
        let marker = batch::build_control_batch(now as i64, producer_id, epoch, commit, coordinator_epoch);
        self.append_from(BytesMut::from(&marker[..]), now, AppendOrigin::Marker { commit, coordinator_epoch })
    }

    pub fn append_from(&mut self, mut records: BytesMut, now: u64, origin: AppendOrigin) -> Result<AppendInfo, AppendError> {
        if let Some(why) = &self.failed {
            return Err(AppendError::Offline(why.clone()));
        }
        if let Some(why) = &self.disk_full {
            return Err(AppendError::DiskFull(why.clone()));
        }
        let headers = batch::parse_all(&records, true).map_err(AppendError::Corrupt)?;
        if headers.is_empty() {
            return Err(AppendError::Empty);
        }
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
                    return Err(AppendError::Producer {
                        error_code: shardlog_protocol::error_code::INVALID_PRODUCER_EPOCH,
                        message: format!("producer {} epoch {} is older than the current epoch {}", h.producer_id, h.producer_epoch, entry.epoch),
                    });
                }
            }
            if h.producer_id < 0 || origin != AppendOrigin::Client {
                continue;
            }
            match in_request.get(&h.producer_id) {
                Some(&(epoch, last)) => {
                    let expected = if last == i32::MAX { 0 } else { last + 1 };
                    if h.producer_epoch != epoch || h.base_sequence != expected {
                        return Err(AppendError::Producer {
                            error_code: shardlog_protocol::error_code::OUT_OF_ORDER_SEQUENCE_NUMBER,
                            message: format!("producer {} batch {i} has sequence {}, expected {expected}", h.producer_id, h.base_sequence),
                        });
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
                    SequenceCheck::Duplicate(_) => {
                        return Err(AppendError::Producer {
                            error_code: shardlog_protocol::error_code::OUT_OF_ORDER_SEQUENCE_NUMBER,
                            message: format!("producer {} resent one batch of a multi-batch request", h.producer_id),
                        })
                    }
                    SequenceCheck::Reject { error_code, message } => return Err(AppendError::Producer { error_code, message }),
                },
            }
            let last = (h.base_sequence as i64 + h.last_offset_delta as i64) % (i32::MAX as i64 + 1);
            in_request.insert(h.producer_id, (h.producer_epoch, last as i32));
        }
        let log_append_time_ms = if self.config.log_append_time { now as i64 } else { -1 };
        let base_offset = self.next_offset;
        for header in &headers {
            let mut batch_bytes = records.split_to(header.size_bytes);
            let offset = self.next_offset;
            batch::set_base_offset(&mut batch_bytes, offset);
            if self.config.log_append_time {
                batch::set_log_append_time(&mut batch_bytes, header.size_bytes, now as i64);
            }
            let assigned =
                BatchHeader { base_offset: offset, max_timestamp: if self.config.log_append_time { now as i64 } else { header.max_timestamp }, ..*header };
            self.maybe_roll(&assigned, now);
            self.track_producer(&assigned, origin);
            let seg = self.segments.last_mut().expect("maybe_roll leaves an active segment");
            let position = seg.size_bytes;
            seg.record_batch(&assigned, self.config.index_interval_bytes);
            let segment_base = seg.base_offset;
            self.next_offset = assigned.last_offset() + 1;
            let frozen = batch_bytes.freeze();
            let len = frozen.len();
            match self.pending.back_mut() {
                Some(p) if p.segment_base == segment_base && p.start_position + p.len as u64 == position => {
                    p.batches.push(frozen.clone());
                    p.len += len;
                    p.end_offset = self.next_offset;
                }
                _ => {
                    self.pending.push_back(Pending { segment_base, start_position: position, batches: vec![frozen.clone()], len, end_offset: self.next_offset })
                }
            }
            self.unsynced.push_back((self.next_offset, len));
            self.dirty_budget.charge(len);
            self.cache.push(CachedBatch { base_offset: offset, last_offset: assigned.last_offset(), max_timestamp: assigned.max_timestamp, bytes: frozen });
        }
        Ok(AppendInfo { base_offset, last_offset: self.next_offset - 1, log_append_time_ms, log_start_offset: self.log_start_offset, duplicate: false })
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
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<ReadResult, ReadError> {
        self.read_up_to(offset, max_bytes, self.next_offset)
    }

    /// As `read`, but only batches that start below `end_offset` (the last stable offset for
    /// a read_committed fetch; a transaction's batches never straddle it).
    pub fn read_up_to(&self, offset: i64, max_bytes: usize, end_offset: i64) -> Result<ReadResult, ReadError> {
        if let Some(why) = &self.failed {
            return Err(ReadError::Storage(why.clone()));
        }
        if offset < self.log_start_offset || offset > self.next_offset {
            return Err(ReadError::OffsetOutOfRange { log_start_offset: self.log_start_offset, log_end_offset: self.next_offset });
        }
        let mut result =
            ReadResult { high_watermark: self.high_watermark(), log_start_offset: self.log_start_offset, end_offset: offset, ..Default::default() };
        if offset >= end_offset {
            return Ok(result);
        }
        if self.cache.first_offset().is_some_and(|first| first <= offset) {
            for (bytes, records, last_offset) in self.cache.read_until(offset, max_bytes, end_offset) {
                result.end_offset = last_offset + 1;
                result.bytes += bytes.len();
                result.records += records;
                result.pieces.push(ReadPiece::Memory(bytes));
            }
            return Ok(result);
        }
        // Older than the cache: a byte range of one segment file, sent with sendfile.
        let i = self.segments.partition_point(|s| s.base_offset <= offset).saturating_sub(1);
        for seg in &self.segments[i..] {
            if seg.next_offset <= offset {
                continue;
            }
            let file = match &seg.read_file {
                Some(f) => f.clone(),
                None => break,
            };
            let found = seg.find_position(offset).map_err(|e| ReadError::Storage(format!("{e:#}")))?;
            // A compacted segment may hold nothing at or after `offset`: try the next one.
            let Some((start, first)) = found else { continue };
            if first.base_offset >= end_offset {
                break;
            }
            let mut end = start + first.size_bytes as u64;
            result.records += first.last_offset_delta as u64 + 1;
            result.end_offset = first.last_offset() + 1;
            // Jump with the offset index: its entries are batch boundaries with their base
            // offsets, so every batch before one is whole and starts below it. The headers of
            // the batches jumped over are never read (one pread each, and their pages were
            // written with O_DIRECT, so not cached); only the last few, up to the limit, are.
            let limit = (start + max_bytes as u64).min(seg.written_bytes);
            let relative_offset_max = (end_offset - seg.base_offset).clamp(0, u32::MAX as i64) as u32;
            if let Some((relative, position)) = seg.index.last_boundary(end, limit, relative_offset_max) {
                let boundary_offset = seg.base_offset + relative as i64;
                // Offsets spanned, for the metrics (a compacted range counts its gaps).
                result.records += (boundary_offset - result.end_offset).max(0) as u64;
                result.end_offset = boundary_offset;
                end = position as u64;
            }
            while end < seg.written_bytes {
                match seg.header_at(end).map_err(|e| ReadError::Storage(format!("{e:#}")))? {
                    Some(h) if (end - start) as usize + h.size_bytes <= max_bytes && h.base_offset < end_offset => {
                        end += h.size_bytes as u64;
                        result.records += h.last_offset_delta as u64 + 1;
                        result.end_offset = h.last_offset() + 1;
                    }
                    _ => break,
                }
            }
            let len = (end - start) as usize;
            result.bytes += len;
            result.pieces.push(ReadPiece::File { file, position: start, len });
            break;
        }
        Ok(result)
    }

    /// The first offset whose batch holds a timestamp at or after `timestamp`, with that
    /// batch's max timestamp. Uncompressed batches are resolved to the exact record.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<(i64, i64)>> {
        for seg in &self.segments {
            if seg.max_timestamp < timestamp || seg.next_offset == seg.base_offset {
                continue;
            }
            let from = seg.base_offset + seg.time_index.scan_start(timestamp) as i64;
            if let Some(cached) = self.cache.find_timestamp(timestamp, from) {
                if self.cache.first_offset().is_some_and(|f| f <= from) {
                    return Ok(Some(exact_record(&cached.bytes, timestamp).unwrap_or((cached.base_offset, cached.max_timestamp))));
                }
            }
            let Some((mut position, _)) = seg.find_position(from)? else { continue };
            while let Some(h) = seg.header_at(position)? {
                if h.max_timestamp >= timestamp {
                    let file = seg.read_file.as_ref().expect("header_at needs the file");
                    let mut bytes = vec![0u8; h.size_bytes];
                    std::os::unix::fs::FileExt::read_exact_at(&**file, &mut bytes, position)?;
                    return Ok(Some(exact_record(&bytes, timestamp).unwrap_or((h.base_offset, h.max_timestamp))));
                }
                position += h.size_bytes as u64;
            }
            if let Some(cached) = self.cache.find_timestamp(timestamp, from) {
                return Ok(Some(exact_record(&cached.bytes, timestamp).unwrap_or((cached.base_offset, cached.max_timestamp))));
            }
        }
        Ok(None)
    }
}

impl Drop for PartitionLog {
    /// A deleted partition, or one closed before its last bytes were durable, gives its share
    /// of the shard's dirty budget back.
    fn drop(&mut self) {
        self.release_unsynced();
    }
}

/// For an uncompressed batch, the first record with a timestamp at or after `timestamp`.
fn exact_record(batch_bytes: &[u8], timestamp: i64) -> Option<(i64, i64)> {
    let header = batch::parse_header(batch_bytes, 0, false).ok()?;
    if header.compression() != 0 || header.attributes & batch::ATTRIBUTE_LOG_APPEND_TIME != 0 {
        return None;
    }
    let mut rest = &batch_bytes[batch::BATCH_HEADER_BYTES..header.size_bytes];
    for _ in 0..header.records_count {
        let length = batch::get_varlong(&mut rest)?;
        if length < 0 || length as usize > rest.len() {
            return None;
        }
        let (mut record, tail) = rest.split_at(length as usize);
        rest = tail;
        record = record.get(1..)?; // attributes
        let timestamp_delta = batch::get_varlong(&mut record)?;
        let offset_delta = batch::get_varlong(&mut record)?;
        let record_timestamp = header.base_timestamp + timestamp_delta;
        if record_timestamp >= timestamp {
            return Some((header.base_offset + offset_delta, record_timestamp));
        }
    }
    None
}

/// Rebuilds idempotent-producer and transaction state: the newest snapshot, then the batches
/// after it. Abort markers after the snapshot whose entries the `.txnindex` files lack (they
/// are synced only when their segment is sealed) are added back, to memory and to the file.
fn recover_producer_state(
    dir: &Path,
    segments: &[Segment],
    log_start_offset: i64,
    next_offset: i64,
    aborted_txns: &mut Vec<AbortedTxn>,
) -> Result<ProducerState> {
    let (from, mut state) = ProducerState::load_latest_snapshot(dir, next_offset).unwrap_or((log_start_offset, ProducerState::default()));
    for seg in segments.iter().filter(|s| s.next_offset > from) {
        let mut position = match seg.find_position(from)? {
            Some((position, _)) if from > seg.base_offset => position,
            _ => 0,
        };
        while let Some(h) = seg.header_at(position)? {
            if h.base_offset >= from {
                if h.is_control() && h.producer_id >= 0 {
                    let file = seg.read_file.as_ref().expect("header_at needs the file");
                    let mut bytes = vec![0u8; h.size_bytes];
                    std::os::unix::fs::FileExt::read_exact_at(&**file, &mut bytes, position)?;
                    let outcome = state.record_marker(&h, -1);
                    let abort = batch::control_type(&bytes) == Some(batch::CONTROL_TYPE_ABORT);
                    if let (true, Some(first_offset)) = (abort, outcome.closed_txn_first_offset) {
                        let known = aborted_txns.iter().any(|a| a.last_offset == h.base_offset);
                        if !known {
                            let lso = state.open_transactions().map(|(first, _)| first).min().unwrap_or(h.base_offset + 1);
                            let entry = AbortedTxn { producer_id: h.producer_id, first_offset, last_offset: h.base_offset, last_stable_offset: lso };
                            txn_index::append(dir, seg.base_offset, &entry)?;
                            aborted_txns.push(entry);
                        }
                    }
                } else {
                    state.record(&h);
                }
            }
            position += h.size_bytes as u64;
        }
    }
    aborted_txns.sort_by_key(|a| a.last_offset);
    Ok(state)
}

fn load_indexes(dir: &Path, base: i64, file_bytes: u64) -> Option<(OffsetIndex, TimeIndex, i64, i64)> {
    let index = std::fs::read(segment::index_path(dir, base)).ok()?;
    let time_index = std::fs::read(segment::time_index_path(dir, base)).ok()?;
    // The offset index file ends with an 8-byte trailer holding the segment's next offset, so
    // a sealed segment need not be read to learn where it ends. Kafka tools ignore it.
    if index.len() < 8 {
        return None;
    }
    let (entries, trailer) = index.split_at(index.len() - 8);
    let next_offset = i64::from_be_bytes(trailer.try_into().ok()?);
    let index = OffsetIndex::from_bytes(entries, file_bytes.max(1)).map_err(|e| tracing::warn!(base, error = %e, "offset index damaged; rebuilding")).ok()?;
    let time_index = TimeIndex::from_bytes(&time_index).map_err(|e| tracing::warn!(base, error = %e, "time index damaged; rebuilding")).ok()?;
    if next_offset < base {
        return None;
    }
    let max_timestamp = time_index.max_timestamp().unwrap_or(-1);
    Some((index, time_index, next_offset, max_timestamp))
}

pub(super) fn write_indexes(dir: &Path, base: i64, index: &OffsetIndex, time_index: &TimeIndex, next_offset: i64) -> Result<()> {
    let mut bytes = index.to_bytes();
    bytes.extend_from_slice(&next_offset.to_be_bytes());
    write_synced(&segment::index_path(dir, base), &bytes)?;
    write_synced(&segment::time_index_path(dir, base), &time_index.to_bytes())?;
    Ok(())
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)?.sync_all().with_context(|| format!("fsync of directory {}", dir.display()))
}

impl Partition {
    pub fn new(topic: String, partition: i32, log: PartitionLog) -> Rc<Partition> {
        Rc::new(Partition {
            topic,
            partition,
            log: RefCell::new(log),
            appended: Notify::default(),
            durable: Notify::default(),
            flush_wanted: Notify::default(),
            durable_wanted: Notify::default(),
            flusher_done: Notify::default(),
            flusher_running: Cell::new(false),
            closed: Cell::new(false),
            markers_written: Cell::new(0),
            probe: Default::default(),
        })
    }

    pub fn append(&self, records: BytesMut, now: u64) -> Result<AppendInfo, AppendError> {
        self.append_from(records, now, AppendOrigin::Client)
    }

    pub fn append_from(&self, records: BytesMut, now: u64, origin: AppendOrigin) -> Result<AppendInfo, AppendError> {
        let info = self.log.borrow_mut().append_from(records, now, origin)?;
        self.appended.notify_all();
        self.flush_wanted.notify_all();
        Ok(info)
    }

    pub fn append_marker(&self, producer_id: i64, epoch: i16, commit: bool, coordinator_epoch: i32, now: u64) -> Result<AppendInfo, AppendError> {
        let info = self.log.borrow_mut().append_marker(producer_id, epoch, commit, coordinator_epoch, now)?;
        self.markers_written.set(self.markers_written.get() + 1);
        self.appended.notify_all();
        self.flush_wanted.notify_all();
        Ok(info)
    }

    /// Waits until every offset up to `last_offset` is fdatasynced (acks=all).
    pub async fn wait_durable(&self, last_offset: i64) -> Result<(), String> {
        self.log.borrow_mut().durable_waiters += 1;
        self.flush_wanted.notify_all();
        self.durable_wanted.notify_all();
        let result = loop {
            let notified = self.durable.notified();
            {
                let log = self.log.borrow();
                if let Some(why) = &log.failed {
                    break Err(why.clone());
                }
                if log.durable_offset > last_offset {
                    break Ok(());
                }
                if let Some(why) = &log.disk_full {
                    // The records stay queued and are written once space is freed, like a
                    // write that timed out: an idempotent producer's retry is deduplicated.
                    break Err(why.clone());
                }
                if self.closed.get() && !self.flusher_running.get() {
                    break Err(String::from("partition closed before the write was durable"));
                }
            }
            notified.await;
        };
        self.log.borrow_mut().durable_waiters -= 1;
        result
    }

    /// Takes the partition offline for good (until a restart): its directory failed. Appends,
    /// reads and waiting producers get the error; the flusher stops.
    pub fn take_offline(&self, why: &str) {
        let mut log = self.log.borrow_mut();
        if log.failed.is_none() {
            tracing::error!(topic = %self.topic, partition = self.partition, error = %why, "partition is offline");
            log.fail(why.to_string());
        }
        drop(log);
        self.durable.notify_all();
        self.appended.notify_all();
        self.flush_wanted.notify_all();
    }

    /// Starts the flusher on the current shard.
    pub fn start_flusher(self: &Rc<Self>) {
        self.flusher_running.set(true);
        let partition = self.clone();
        glommio::spawn_local(async move {
            let mut flusher = Flusher { active: None, tail: Vec::new(), preallocated_bytes: 0 };
            if let Err(e) = flusher.run(&partition).await {
                let why = format!("{e:#}");
                tracing::error!(topic = %partition.topic, partition = partition.partition, error = %why, "storage error: partition is offline");
                partition.log.borrow_mut().fail(why);
            }
            partition.flusher_running.set(false);
            partition.durable.notify_all();
            partition.flusher_done.notify_all();
        })
        .detach();
    }

    /// Flushes everything, seals the active segment's indexes, and marks a clean shutdown.
    pub async fn close(&self, clean: bool) -> Result<()> {
        self.closed.set(true);
        self.flush_wanted.notify_all();
        while self.flusher_running.get() {
            let done = self.flusher_done.notified();
            if !self.flusher_running.get() {
                break;
            }
            done.await;
        }
        let log = self.log.borrow();
        // The marker vouches that the files hold everything the indexes describe: never write
        // it while appends that arrived after the flusher stopped are still only in memory.
        if log.failed.is_some() || !clean || !log.pending.is_empty() {
            return Ok(());
        }
        if let Some(seg) = log.segments.last() {
            write_indexes(&log.dir, seg.base_offset, &seg.index, &seg.time_index, seg.next_offset)?;
        }
        log.producers.write_snapshot(&log.dir, log.next_offset)?;
        ProducerState::prune_snapshots(&log.dir, PRODUCER_SNAPSHOTS_KEPT);
        write_synced(&log.dir.join(CLEAN_SHUTDOWN_FILE), b"")?;
        sync_dir(&log.dir)?;
        Ok(())
    }
}

/// A flush that failed: the error, the queued writes it did not reach, and whether trying them
/// again may work (a write or a fallocate that found the disk full; never a failed fdatasync).
struct FlushFailure {
    error: anyhow::Error,
    unwritten: VecDeque<Pending>,
    retryable: bool,
}

/// The flusher's own state: the open DMA file of the segment being written, and the bytes of its
/// last partial page, which the next write must rewrite because O_DIRECT writes whole pages.
struct Flusher {
    active: Option<(i64, DmaFile)>,
    tail: Vec<u8>,
    /// Bytes of the active segment covered by fallocate.
    preallocated_bytes: u64,
}

impl Flusher {
    async fn run(&mut self, partition: &Partition) -> Result<()> {
        loop {
            if partition.log.borrow().failed.is_some() {
                // Taken offline (its directory failed): nothing more is written here.
                return Ok(());
            }
            let wanted = partition.flush_wanted.notified();
            let urgent = partition.durable_wanted.notified();
            let (has_pending, waiters, interval) = {
                let log = partition.log.borrow();
                (!log.pending.is_empty(), log.durable_waiters, log.config.flush_window_us)
            };
            if !has_pending {
                if partition.closed.get() {
                    break;
                }
                wanted.await;
                continue;
            }
            if waiters == 0 && interval > 0 && !partition.closed.get() {
                // Group-commit window for acks=0/1 data; an acks=all request cuts it short.
                let sleep = glommio::timer::sleep(Duration::from_micros(interval));
                futures_lite::future::or(sleep, urgent).await;
            }
            let batch: VecDeque<Pending> = partition.log.borrow_mut().pending.drain(..).collect();
            match self.commit(partition, batch).await {
                Ok(end_offset) => {
                    let mut log = partition.log.borrow_mut();
                    if let Some(end) = end_offset {
                        log.mark_durable(end);
                    }
                    if log.disk_full.take().is_some() {
                        tracing::info!(topic = %partition.topic, partition = partition.partition, "space was freed: the partition writes again");
                    }
                }
                Err(failure) if failure.retryable && is_out_of_space(&failure.error) => {
                    // Nothing is lost or corrupted: the bytes not written go back to the front
                    // of the queue and are written, at the same positions, once space is freed.
                    {
                        let mut log = partition.log.borrow_mut();
                        for item in failure.unwritten.into_iter().rev() {
                            log.pending.push_front(item);
                        }
                        let dir = log.dir.parent().map(|d| d.display().to_string()).unwrap_or_default();
                        if log.disk_full.is_none() {
                            tracing::error!(topic = %partition.topic, partition = partition.partition, log_dir = %dir, error = %format!("{:#}", failure.error),
                                "log directory is full: produce to this partition fails with KAFKA_STORAGE_ERROR until space is freed");
                        }
                        log.disk_full = Some(format!("log directory {dir} is full ({:#}); free space there and produce resumes", failure.error));
                    }
                    partition.durable.notify_all();
                    if partition.closed.get() {
                        return Err(failure.error.context("shutting down with a full log directory"));
                    }
                    glommio::timer::sleep(DISK_FULL_RETRY_INTERVAL).await;
                }
                Err(failure) => return Err(failure.error),
            }
            partition.durable.notify_all();
        }
        // Shutdown: seal the active segment's file at its logical size.
        if let Some((base, file)) = self.active.take() {
            let size = segment_size(partition, base);
            file.truncate(size).await.map_err(std::io::Error::from).context("truncating the active segment to its size")?;
            file.fdatasync().await.map_err(std::io::Error::from)?;
            file.close().await.map_err(std::io::Error::from)?;
        }
        Ok(())
    }

    /// Writes `batch` and fdatasyncs it; returns the end offset now durable.
    async fn commit(&mut self, partition: &Partition, mut batch: VecDeque<Pending>) -> Result<Option<i64>, FlushFailure> {
        let commit_bytes: usize = batch.iter().map(|p| p.len).sum();
        let entries = std::mem::take(&mut partition.log.borrow_mut().txn_index_queue);
        if !entries.is_empty() {
            // Before the segment that holds their markers can be sealed (its seal syncs them).
            let dir = partition.log.borrow().dir.clone();
            let written = off_shard(move || entries.iter().try_for_each(|(segment_base, entry)| txn_index::append(&dir, *segment_base, entry))).await;
            if let Err(e) = written {
                tracing::error!(topic = %partition.topic, partition = partition.partition, error = %format!("{e:#}"), "cannot write the aborted-transaction index; it is rebuilt on restart");
            }
        }
        let mut end_offset = None;
        while let Some(item) = batch.pop_front() {
            if let Err(error) = self.write(partition, item.segment_base, item.start_position, &item.batches, item.len).await {
                batch.push_front(item);
                return Err(FlushFailure { error, unwritten: batch, retryable: true });
            }
            end_offset = Some(item.end_offset);
        }
        if let Some((_, file)) = &self.active {
            let started = std::time::Instant::now();
            // A failed fdatasync is never retried: the kernel may have dropped the dirty pages.
            let synced = file.fdatasync().await.map_err(std::io::Error::from).context("fdatasync of the active segment");
            synced.map_err(|error| FlushFailure { error, unwritten: VecDeque::new(), retryable: false })?;
            partition.probe.fsync_us.record(started.elapsed().as_micros() as u64);
            partition.probe.commit_bytes.record(commit_bytes as u64);
        }
        Ok(end_offset)
    }

    async fn write(&mut self, partition: &Partition, segment_base: i64, start: u64, batches: &[Bytes], len: usize) -> Result<()> {
        if self.active.as_ref().map(|(b, _)| *b) != Some(segment_base) {
            self.switch_segment(partition, segment_base, start).await?;
        }
        let (_, file) = self.active.as_ref().expect("switch_segment opened it");
        let end = start + len as u64;
        if end > self.preallocated_bytes && self.preallocated_bytes < u64::MAX {
            let segment_bytes = partition.log.borrow().config.segment_bytes;
            let target = end.div_ceil(PREALLOCATE_STEP_BYTES).saturating_mul(PREALLOCATE_STEP_BYTES).min(segment_bytes.max(end));
            match file.pre_allocate(target, true).await.map_err(std::io::Error::from) {
                Ok(()) => self.preallocated_bytes = target,
                Err(e) if io_out_of_space(&e) => {
                    return Err(anyhow::Error::new(e).context(format!("preallocating {target} bytes of segment {segment_base}")));
                }
                Err(e) => {
                    tracing::debug!(error = %e, "fallocate not supported here; segments are not preallocated");
                    self.preallocated_bytes = u64::MAX;
                }
            }
        }
        let (write_bytes_max, in_flight_max) = {
            let config = &partition.log.borrow().config;
            (config.write_bytes_max.max(WRITE_ALIGNMENT_BYTES as usize), config.writes_in_flight_max)
        };
        let aligned_start = align_down(start);
        assert_eq!(aligned_start + self.tail.len() as u64, start, "tail page must end where the new bytes start");
        let mut data = std::mem::take(&mut self.tail);
        let tail_len = data.len();
        data.reserve(len);
        for batch in batches {
            data.extend_from_slice(batch);
        }
        let result = self.write_pages(&data, aligned_start, segment_base, write_bytes_max, in_flight_max).await;
        if let Err(e) = result {
            // A retry rewrites the same pages from the same tail.
            data.truncate(tail_len);
            self.tail = data;
            return Err(e);
        }
        let tail_start = (align_down(end) - aligned_start) as usize;
        self.tail = data[tail_start..].to_vec();
        let mut log = partition.log.borrow_mut();
        if let Some(seg) = log.segments.iter_mut().find(|s| s.base_offset == segment_base) {
            seg.written_bytes = seg.written_bytes.max(end);
        }
        Ok(())
    }

    /// Writes `data` from the page-aligned `aligned_start`, in DMA buffers of whole pages.
    async fn write_pages(&self, data: &[u8], aligned_start: u64, segment_base: i64, write_bytes_max: usize, in_flight_max: usize) -> Result<()> {
        use futures::stream::{StreamExt, TryStreamExt};
        let (_, file) = self.active.as_ref().expect("switch_segment opened it");
        // Up to `in_flight_max` DMA writes at once (the disk's measured queue depth); each
        // allocates its buffer only when it starts, so memory stays bounded by that many buffers.
        let write_one = |written: usize| async move {
            let chunk = (data.len() - written).min(write_bytes_max);
            let padded = (chunk as u64).div_ceil(WRITE_ALIGNMENT_BYTES) * WRITE_ALIGNMENT_BYTES;
            let mut buffer = file.alloc_dma_buffer(padded as usize);
            let slice = buffer.as_bytes_mut();
            slice[..chunk].copy_from_slice(&data[written..written + chunk]);
            slice[chunk..].fill(0);
            let position = aligned_start + written as u64;
            let n = file
                .write_at(buffer, position)
                .await
                .map_err(std::io::Error::from)
                .with_context(|| format!("writing {padded} bytes at byte {position} of segment {segment_base}"))?;
            if n < padded as usize {
                bail!("short write of segment {segment_base}: {n} of {padded} bytes at byte {position}");
            }
            Ok(())
        };
        futures::stream::iter((0..data.len()).step_by(write_bytes_max)).map(write_one).buffer_unordered(in_flight_max.max(1)).try_collect::<()>().await
    }

    /// Seals the previous segment (if any) and opens `segment_base` for writing.
    async fn switch_segment(&mut self, partition: &Partition, segment_base: i64, start: u64) -> Result<()> {
        let dir = partition.log.borrow().dir.clone();
        if let Some((old_base, old)) = &self.active {
            // Sealing is repeatable: if a step fails (a full disk), the segment stays active
            // and the next attempt starts over.
            let old_base = *old_base;
            let size = segment_size(partition, old_base);
            old.fdatasync().await.map_err(std::io::Error::from)?;
            old.truncate(size).await.map_err(std::io::Error::from).context("truncating a sealed segment")?;
            let (index, time_index, next_offset) = {
                let log = partition.log.borrow();
                let seg = log.segments.iter().find(|s| s.base_offset == old_base).expect("sealed segment exists");
                (seg.index.clone(), seg.time_index.clone(), seg.next_offset)
            };
            // Three files written and four fsyncs: tens of milliseconds on a busy disk, which
            // would stall every partition and connection of the shard if done on its thread.
            let seal_dir = dir.clone();
            off_shard(move || {
                write_indexes(&seal_dir, old_base, &index, &time_index, next_offset)?;
                txn_index::sync(&seal_dir, old_base)?;
                File::open(segment::log_path(&seal_dir, old_base))?.sync_all().context("fsync of a sealed segment's size")
            })
            .await?;
            if let Some((_, old)) = self.active.take() {
                old.close().await.map_err(std::io::Error::from)?;
            }
        }
        let path = segment::log_path(&dir, segment_base);
        let existed = path.exists();
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .read(true)
            .dma_open(&path)
            .await
            .map_err(std::io::Error::from)
            .with_context(|| format!("opening {} with O_DIRECT (log.dirs must be on a filesystem with O_DIRECT, such as XFS or ext4)", path.display()))?;
        self.preallocated_bytes = 0;
        if !existed {
            let new_dir = dir.clone();
            off_shard(move || sync_dir(&new_dir)).await?;
        }
        self.tail.clear();
        let aligned = align_down(start);
        if aligned < start {
            let read = file
                .read_at_aligned(aligned, WRITE_ALIGNMENT_BYTES as usize)
                .await
                .map_err(std::io::Error::from)
                .context("reading the tail page of the active segment")?;
            if read.len() < (start - aligned) as usize {
                bail!("segment {segment_base} is shorter than its recovered size");
            }
            self.tail.extend_from_slice(&read[..(start - aligned) as usize]);
        }
        let snapshot = partition.log.borrow_mut().pending_snapshot.take();
        if let Some((offset, state)) = snapshot {
            let snapshot_dir = dir.clone();
            let written = off_shard(move || match state.write_snapshot(&snapshot_dir, offset) {
                Ok(()) => {
                    ProducerState::prune_snapshots(&snapshot_dir, PRODUCER_SNAPSHOTS_KEPT);
                    Ok(Ok(()))
                }
                Err(e) => Ok(Err((e, state))),
            })
            .await?;
            if let Err((e, state)) = written {
                // Kept for the next attempt unless a newer roll replaced it meanwhile.
                partition.log.borrow_mut().pending_snapshot.get_or_insert((offset, state));
                return Err(e);
            }
        }
        let read_file = Arc::new(File::open(&path)?);
        if let Some(seg) = partition.log.borrow_mut().segments.iter_mut().find(|s| s.base_offset == segment_base) {
            seg.read_file = Some(read_file);
        }
        self.active = Some((segment_base, file));
        Ok(())
    }
}

/// Runs blocking file work (buffered writes, fsyncs of small files and directories) on the
/// executor's blocking pool, so that it never stalls the shard's other partitions and
/// connections.
async fn off_shard<T: Send + 'static>(work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    glommio::executor().spawn_blocking(work).await
}

fn segment_size(partition: &Partition, base: i64) -> u64 {
    partition.log.borrow().segments.iter().find(|s| s.base_offset == base).map(|s| s.size_bytes).unwrap_or(0)
}
