//! Compaction (`cleanup.policy=compact`): sealed segments keep only the latest record of each
//! key, and tombstones (null values) go once they are older than `delete.retention.ms`.
//!
//! A pass has three steps. On the shard, `compaction_plan` picks the oldest sealed, durable
//! segments whose records are all older than `min.compaction.lag.ms` and below the last stable
//! offset, when the share of bytes not compacted yet reaches `min.cleanable.dirty.ratio`, up to
//! [`COMPACTION_BYTES_PER_PASS_MAX`]. Off the shard (a cleaner thread at nice 19, started by
//! `shard::maintenance`), `compact_segments`
//! reads them twice, once for the transactions and the latest offset of each key and once to
//! write each segment's surviving batches to a new file, which then replaces the old one (old
//! index files removed first, so a crash in between leaves a segment whose indexes are
//! rebuilt). Back on the shard, `install_compacted` swaps the new files and indexes in. The
//! reads and writes go through one process-wide [`IoThrottle`]
//! (`log.cleaner.io.max.bytes.per.second`).
//!
//! Offsets never change: a rewritten batch keeps its base offset, last offset delta, timestamps
//! and producer fields, and only loses records (so consumers see gaps, as with Kafka).
//! Compressed batches are decompressed (at most [`COMPACTION_BATCH_DECOMPRESSED_MAX`] bytes)
//! and rewritten with the same codec, as Kafka's cleaner does. Transactions, as Kafka handles
//! them: records of aborted transactions go; committed ones compact like any other; a commit
//! or abort marker goes once its transaction has no record left and its segment is older than
//! `delete.retention.ms` (an abort marker takes its `.txnindex` entry with it). A batch the
//! cleaner cannot open (malformed, too large decompressed), or of a transaction whose marker
//! is not in the range, is kept whole and its keys are not counted: a record is only ever
//! dropped when a later record of its key is known to stay. The segment's next offset stays,
//! so the next segment still starts where it did.
//!
//! Readers are safe: a read holds the old file open, and the old inode lives until it is closed.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use shardlog_protocol::batch::{self, BATCH_HEADER_BYTES};
use shardlog_protocol::compression::{self, Codec};

use super::disk::sync_dir;
use super::log::PartitionLog;
use super::segment::{self, write_indexes, ScanResult};
use super::txn_index;

/// Bytes of segments one compaction pass reads (twice). A longer log is compacted a prefix at a
/// time; records in the prefix that later segments supersede wait for a later pass.
pub const COMPACTION_BYTES_PER_PASS_MAX: u64 = 256 << 20;
/// Distinct keys one pass remembers; a pass that would need more compacts nothing and says so.
pub const COMPACTION_KEYS_MAX: usize = 1 << 20;

/// Decompressed bytes of one batch's records that compaction will hold: a batch that
/// decompresses to more (or does not decompress) is kept whole. A batch is at most
/// `message.max.bytes` (1 MiB by default) compressed; 32 MiB allows a ratio of 32 at that size.
pub const COMPACTION_BATCH_DECOMPRESSED_MAX: usize = 32 << 20;
/// Transactions (commit or abort markers) one pass tracks; a pass that would need more
/// compacts nothing and says so.
pub const COMPACTION_TXNS_MAX: usize = 1 << 20;
/// Bytes per read or write of the cleaner's file I/O: the throttle's step.
pub const COMPACTION_IO_CHUNK_BYTES: usize = 1 << 20;

#[derive(Debug, Clone)]
pub struct PlannedSegment {
    pub base_offset: i64,
    pub next_offset: i64,
    pub max_timestamp: i64,
    pub size_bytes: u64,
}

#[derive(Debug, Clone)]
pub struct CompactionPlan {
    pub dir: PathBuf,
    pub segments: Vec<PlannedSegment>,
    /// Tombstones in segments whose newest record is older than this are dropped.
    pub delete_horizon_ms: i64,
    pub index_interval_bytes: u64,
}

/// What a pass did: the segments it rewrote, and where the log is still dirty.
#[derive(Default)]
pub struct CompactionOutcome {
    pub segments: Vec<CompactedSegment>,
    /// The first segment that kept a tombstone only because it is younger than
    /// `delete.retention.ms`: it stays dirty, so a later pass drops the tombstone.
    pub dirty_from: Option<i64>,
    /// Batches kept whole because they could not be opened.
    pub batches_kept_whole: u64,
}

/// A segment rewritten by `compact_segments`, already in place on disk.
pub struct CompactedSegment {
    pub base_offset: i64,
    /// The new file, opened for reads here, off the shard: the shard only swaps it in.
    pub file: std::fs::File,
    pub scan: ScanResult,
    pub records_removed: u64,
    /// Offsets of the abort markers removed: their aborted-transaction entries go too.
    pub aborted_markers_removed: Vec<i64>,
}

impl PartitionLog {
    /// The segments to compact now, if the partition is compacted and dirty enough.
    pub fn compaction_plan(&self, now_ms: u64) -> Option<CompactionPlan> {
        let c = &self.config;
        if !c.cleanup_compact {
            return None;
        }
        let lag_limit_ms = (now_ms as i64).saturating_sub(c.min_compaction_lag_ms);
        let mut segments = Vec::new();
        let (mut total, mut dirty) = (0u64, 0u64);
        // `max.compaction.lag.ms`, judged by each dirty segment's newest record: a record may
        // therefore wait up to its segment's time span longer than the lag.
        let overdue_before_ms = (now_ms as i64).saturating_sub(c.max_compaction_lag_ms);
        let mut overdue = false;
        for seg in self.segments.iter().take(self.segments.len().saturating_sub(1)) {
            // Never at or past the last stable offset: an open transaction's outcome is unknown.
            if seg.next_offset >= self.durable_offset
                || seg.next_offset > self.last_stable_offset()
                || seg.max_timestamp > lag_limit_ms
                || total + seg.size_bytes > COMPACTION_BYTES_PER_PASS_MAX
            {
                break;
            }
            total += seg.size_bytes;
            if seg.next_offset > self.cleaner_offset {
                dirty += seg.size_bytes;
                overdue |= seg.max_timestamp < overdue_before_ms;
            }
            segments.push(PlannedSegment {
                base_offset: seg.base_offset,
                next_offset: seg.next_offset,
                max_timestamp: seg.max_timestamp,
                size_bytes: seg.size_bytes,
            });
        }
        if dirty == 0 || ((dirty as f64) < c.min_cleanable_dirty_ratio * total as f64 && !overdue) {
            return None;
        }
        Some(CompactionPlan {
            dir: self.dir.clone(),
            segments,
            delete_horizon_ms: (now_ms as i64).saturating_sub(c.delete_retention_ms),
            index_interval_bytes: c.index_interval_bytes,
        })
    }

    /// Compaction has cleaned the log below this offset.
    pub fn cleaner_offset(&self) -> i64 {
        self.cleaner_offset
    }

    /// Swaps in segments that `compact_segments` rewrote. A segment that retention deleted
    /// meanwhile is skipped. Returns the records removed.
    pub fn install_compacted(&mut self, plan: &CompactionPlan, outcome: CompactionOutcome) -> Result<u64> {
        let mut removed = 0;
        for done in outcome.segments {
            let Some(seg) = self.segments.iter_mut().find(|s| s.base_offset == done.base_offset) else {
                // Its file is deleted: the last close frees its blocks, off the shard too.
                self.retired_files.push(Arc::new(done.file));
                continue;
            };
            seg.index = done.scan.index;
            seg.time_index = done.scan.time_index;
            // The record that held the max timestamp may be gone; the old max stays for
            // retention (which Kafka also bases on the segment as it was written).
            seg.offset_of_max_timestamp = if done.scan.max_timestamp == seg.max_timestamp { done.scan.offset_of_max_timestamp } else { -1 };
            seg.size_bytes = done.scan.valid_bytes;
            seg.written_bytes = done.scan.valid_bytes;
            seg.bytes_since_index_entry = done.scan.bytes_since_index_entry;
            if let Some(old) = seg.read_file.replace(Arc::new(done.file)) {
                self.retired_files.push(old);
            }
            removed += done.records_removed;
            if !done.aborted_markers_removed.is_empty() {
                self.forget_aborted_txns(&done.aborted_markers_removed);
            }
        }
        if let Some(last) = plan.segments.last() {
            self.cleaner_offset = outcome.dirty_from.unwrap_or(last.next_offset);
            // Reads of the compacted range must come from the new files, not the cache.
            if removed > 0 {
                self.cache.drop_below(last.next_offset);
            }
        }
        Ok(removed)
    }
}

/// A transaction whose end the pass saw: the producer's transactional batches in
/// `first_offset..=marker_offset` belong to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Txn {
    first_offset: i64,
    marker_offset: i64,
    outcome: TxnOutcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TxnOutcome {
    Commit,
    Abort,
    /// A control batch whose type does not parse: its transaction's batches are kept whole.
    Unknown,
}

/// The transactions of the compacted range, from their markers (the range starts at the log
/// start and ends below the last stable offset, so every transaction with data in it that has
/// a marker in it is decided). A transactional batch with no marker after it in the range is
/// left alone.
#[derive(Default)]
struct Transactions {
    /// Per producer id, its transactions in offset order.
    ended: HashMap<i64, Vec<Txn>>,
    /// Per producer id, the first offset of its transaction whose marker is not seen yet.
    open: HashMap<i64, i64>,
    count: usize,
}

impl Transactions {
    /// Pass one, in offset order: a data batch opens its producer's transaction, a marker ends it.
    /// False when there are more transactions than one pass tracks.
    fn observe(&mut self, header: &batch::BatchHeader, batch_bytes: &[u8]) -> bool {
        if !header.is_transactional() || header.producer_id < 0 {
            return true;
        }
        if !header.is_control() {
            self.open.entry(header.producer_id).or_insert(header.base_offset);
            return true;
        }
        let outcome = match batch::control_type(batch_bytes) {
            Some(batch::CONTROL_TYPE_COMMIT) => TxnOutcome::Commit,
            Some(batch::CONTROL_TYPE_ABORT) => TxnOutcome::Abort,
            _ => TxnOutcome::Unknown,
        };
        // No data seen: the transaction's data (if any) went with the segments before the range.
        let first_offset = self.open.remove(&header.producer_id).unwrap_or(header.base_offset);
        self.ended.entry(header.producer_id).or_default().push(Txn { first_offset, marker_offset: header.base_offset, outcome });
        self.count += 1;
        self.count <= COMPACTION_TXNS_MAX
    }

    /// The transaction a transactional batch (or marker) at `offset` of `producer_id` belongs to.
    fn of(&self, producer_id: i64, offset: i64) -> Option<Txn> {
        let txns = self.ended.get(&producer_id)?;
        let i = txns.partition_point(|t| t.marker_offset < offset);
        txns.get(i).copied().filter(|t| t.first_offset <= offset)
    }
}

/// What compaction does with one batch, from its header and the pass's transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BatchKind {
    /// Records to compact by key (not transactional, or of a committed transaction).
    Records,
    /// Data of an aborted transaction: removed whole.
    Aborted,
    /// A commit or abort marker.
    Marker(Txn),
    /// Left as it is, and its keys are not counted.
    KeepWhole,
}

fn batch_kind(header: &batch::BatchHeader, txns: &Transactions) -> BatchKind {
    if !header.is_transactional() {
        return if header.is_control() { BatchKind::KeepWhole } else { BatchKind::Records };
    }
    match (txns.of(header.producer_id, header.base_offset), header.is_control()) {
        (Some(txn), true) if txn.marker_offset == header.base_offset && txn.outcome != TxnOutcome::Unknown => BatchKind::Marker(txn),
        (Some(Txn { outcome: TxnOutcome::Commit, .. }), false) => BatchKind::Records,
        (Some(Txn { outcome: TxnOutcome::Abort, .. }), false) => BatchKind::Aborted,
        _ => BatchKind::KeepWhole,
    }
}

/// One record of a batch, from its (decompressed) records section.
#[derive(Debug)]
struct RawRecord<'a> {
    /// The record's bytes, its length prefix included.
    bytes: &'a [u8],
    offset: i64,
    key: Option<&'a [u8]>,
    tombstone: bool,
}

/// A batch's records section, decompressed if the batch is compressed.
struct Body {
    codec: Codec,
    bytes: Vec<u8>,
}

/// Why a batch that compaction could rewrite is kept whole instead.
type KeepReason = String;

/// Decompresses a batch's records section (at most [`COMPACTION_BATCH_DECOMPRESSED_MAX`] bytes).
fn body(batch_bytes: &[u8], header: &batch::BatchHeader) -> Result<Body, KeepReason> {
    let section = &batch_bytes[BATCH_HEADER_BYTES..header.size_bytes];
    let codec = Codec::of(header.attributes, section).map_err(|e| e.to_string())?;
    let bytes = compression::decompress(codec, section, COMPACTION_BATCH_DECOMPRESSED_MAX).map_err(|e| format!("{} batch: {e}", codec.name()))?;
    Ok(Body { codec, bytes })
}

/// The records of a batch's decompressed `body`, checked: they fill it exactly, and their
/// offsets rise strictly within the batch's offsets (so a hostile batch cannot claim a later
/// offset for a key than it has).
fn raw_records<'a>(header: &batch::BatchHeader, body: &'a [u8]) -> Result<Vec<RawRecord<'a>>, KeepReason> {
    let views = batch::records_of(header, body).ok_or_else(|| "records do not parse".to_string())?;
    let mut previous = header.base_offset - 1;
    for r in &views {
        if r.offset <= previous || r.offset > header.last_offset() {
            return Err(format!("record offset {} is out of order or outside the batch", r.offset));
        }
        previous = r.offset;
    }
    Ok(views.into_iter().map(|r| RawRecord { bytes: r.encoded, offset: r.offset, key: r.key, tombstone: r.value.is_none() }).collect())
}

/// Every batch of a segment's bytes: (header, bytes). The segment was checked batch by batch
/// when it was appended, so anything that does not parse to its end is refused rather than
/// rewritten without its tail.
fn batches<'a>(bytes: &'a [u8], seg: &PlannedSegment) -> Result<Vec<(batch::BatchHeader, &'a [u8])>> {
    let mut out = Vec::new();
    let mut position = 0usize;
    while position < bytes.len() {
        let header = batch::parse_header(&bytes[position..], position, false)
            .with_context(|| format!("segment {} does not parse at byte {position}; not compacting it", seg.base_offset))?;
        let slice = bytes.get(position..position + header.size_bytes).with_context(|| format!("segment {} ends inside a batch", seg.base_offset))?;
        out.push((header, slice));
        position += header.size_bytes;
    }
    Ok(out)
}

/// `batch` with only `kept` of its records, encoded with `codec` (the batch's own): the same
/// header (offsets, timestamps, producer fields) with a new length, record count and CRC.
fn rebuild_batch(batch_bytes: &[u8], codec: Codec, kept: &[&RawRecord<'_>]) -> std::io::Result<Vec<u8>> {
    let records: Vec<u8> = kept.iter().flat_map(|r| r.bytes.iter().copied()).collect();
    let body = compression::compress(codec, &records)?;
    Ok(batch::rebuild_batch(batch_bytes, &body, kept.len() as i32))
}

/// What compaction makes of one batch of records.
struct CompactedBatch {
    rewrite: Rewrite,
    records_removed: u64,
    /// A tombstone stayed (it is the latest of its key and younger than its horizon).
    tombstone_kept: bool,
}

enum Rewrite {
    Unchanged,
    /// Every record goes, and the batch with them.
    Empty,
    Batch(Vec<u8>),
    Failed(KeepReason),
}

/// Keeps the records of a batch that are the latest of their key (tombstones only until
/// their horizon) and those without a key.
fn compact_batch(batch_bytes: &[u8], codec: Codec, records: &[RawRecord<'_>], latest: &HashMap<Vec<u8>, i64>, drop_tombstones: bool) -> CompactedBatch {
    let kept: Vec<&RawRecord<'_>> = records
        .iter()
        .filter(|r| match r.key.map(|key| latest.get(key)) {
            // A later record of the key is known: this one goes.
            Some(Some(&at)) if at > r.offset => false,
            Some(Some(&at)) if at == r.offset => !(r.tombstone && drop_tombstones),
            // No key, or a key pass one did not count: kept.
            _ => true,
        })
        .collect();
    let tombstone_kept = kept.iter().any(|r| r.tombstone && r.key.is_some());
    let removed = (records.len() - kept.len()) as u64;
    let rewrite = if removed == 0 {
        Rewrite::Unchanged
    } else if kept.is_empty() {
        Rewrite::Empty
    } else {
        match rebuild_batch(batch_bytes, codec, &kept) {
            Ok(rebuilt) if rebuilt.len() <= batch_bytes.len() => Rewrite::Batch(rebuilt),
            // A rewrite never grows a batch (so message.max.bytes still holds): in the rare case
            // recompression would, the batch stays as it was.
            Ok(_) => Rewrite::Unchanged,
            Err(e) => Rewrite::Failed(format!("recompressing with {}: {e}", codec.name())),
        }
    };
    let records_removed = match rewrite {
        Rewrite::Unchanged | Rewrite::Failed(_) => 0,
        _ => removed,
    };
    CompactedBatch { rewrite, records_removed, tombstone_kept }
}

/// Batches kept whole because they could not be opened, for one log line per pass.
#[derive(Default)]
struct KeptWhole {
    count: u64,
    first: Option<(i64, KeepReason)>,
}

impl KeptWhole {
    fn note(&mut self, base_offset: i64, why: KeepReason) {
        self.count += 1;
        self.first.get_or_insert((base_offset, why));
    }
}

/// Rewrites the planned segments (blocking file I/O: run it off the shard), reading and
/// writing through `throttle`. Segments where nothing goes are left alone.
pub fn compact_segments(plan: &CompactionPlan, throttle: &IoThrottle) -> Result<CompactionOutcome> {
    // Pass one: the transactions of the range, and the latest offset of every key. A
    // transaction's keys wait until its marker says whether they count (commit) or not.
    let mut latest: HashMap<Vec<u8>, i64> = HashMap::new();
    let mut txns = Transactions::default();
    let mut pending: HashMap<i64, Vec<(Vec<u8>, i64)>> = HashMap::new();
    let mut pending_count = 0usize;
    let mut kept_whole = KeptWhole::default();
    for seg in &plan.segments {
        let bytes = read_segment(&plan.dir, seg, throttle)?;
        for (header, batch_bytes) in batches(&bytes, seg)? {
            if !txns.observe(&header, batch_bytes) {
                tracing::warn!(dir = %plan.dir.display(), txns_max = COMPACTION_TXNS_MAX, "too many transactions for one compaction pass; not compacting");
                return Ok(CompactionOutcome::default());
            }
            let in_txn = header.is_transactional() && header.producer_id >= 0;
            if header.is_control() {
                if in_txn {
                    let keys = pending.remove(&header.producer_id).unwrap_or_default();
                    pending_count -= keys.len();
                    if txns.of(header.producer_id, header.base_offset).is_some_and(|t| t.outcome == TxnOutcome::Commit) {
                        for (key, offset) in keys {
                            let at = latest.entry(key).or_insert(offset);
                            *at = (*at).max(offset);
                        }
                    }
                }
                continue;
            }
            // A batch that does not open counts no keys (pass two keeps it whole, and says so).
            let Ok(body) = body(batch_bytes, &header) else { continue };
            let Ok(records) = raw_records(&header, &body.bytes) else { continue };
            for r in records {
                let Some(key) = r.key else { continue };
                if in_txn {
                    pending.entry(header.producer_id).or_default().push((key.to_vec(), r.offset));
                    pending_count += 1;
                } else {
                    let at = latest.entry(key.to_vec()).or_insert(r.offset);
                    *at = (*at).max(r.offset);
                }
                if latest.len() + pending_count > COMPACTION_KEYS_MAX {
                    tracing::warn!(dir = %plan.dir.display(), keys_max = COMPACTION_KEYS_MAX, "too many distinct keys for one compaction pass; not compacting");
                    return Ok(CompactionOutcome::default());
                }
            }
        }
    }
    // Pass two: rewrite. Per producer, whether its current transaction keeps any batch: its
    // marker stays while one does.
    let mut txn_retained: HashMap<i64, bool> = HashMap::new();
    let mut out = CompactionOutcome::default();
    for seg in &plan.segments {
        let bytes = read_segment(&plan.dir, seg, throttle)?;
        let mut rewritten = Vec::with_capacity(bytes.len());
        let mut removed = 0u64;
        let mut aborted_markers_removed = Vec::new();
        let past_delete_horizon = seg.max_timestamp < plan.delete_horizon_ms;
        for (header, batch_bytes) in batches(&bytes, seg)? {
            let records_count = header.records_count.max(0) as u64;
            let mut retained = true;
            match batch_kind(&header, &txns) {
                BatchKind::KeepWhole => rewritten.extend_from_slice(batch_bytes),
                BatchKind::Aborted => {
                    retained = false;
                    removed += records_count;
                }
                BatchKind::Marker(txn) => {
                    let data_left = txn_retained.remove(&header.producer_id).unwrap_or(false);
                    if !data_left && past_delete_horizon {
                        removed += records_count;
                        if txn.outcome == TxnOutcome::Abort {
                            aborted_markers_removed.push(header.base_offset);
                        }
                    } else {
                        if !data_left && out.dirty_from.is_none() {
                            // Only delete.retention.ms keeps it: a later pass removes it.
                            out.dirty_from = Some(seg.base_offset);
                        }
                        rewritten.extend_from_slice(batch_bytes);
                    }
                }
                BatchKind::Records => {
                    let opened = body(batch_bytes, &header).and_then(|body| {
                        let records = raw_records(&header, &body.bytes)?;
                        Ok(compact_batch(batch_bytes, body.codec, &records, &latest, past_delete_horizon))
                    });
                    let compacted = match opened {
                        Ok(compacted) => compacted,
                        Err(why) => {
                            kept_whole.note(header.base_offset, why);
                            rewritten.extend_from_slice(batch_bytes);
                            continue;
                        }
                    };
                    if compacted.tombstone_kept && !past_delete_horizon && out.dirty_from.is_none() {
                        out.dirty_from = Some(seg.base_offset);
                    }
                    removed += compacted.records_removed;
                    match compacted.rewrite {
                        Rewrite::Unchanged => rewritten.extend_from_slice(batch_bytes),
                        Rewrite::Empty => retained = false,
                        Rewrite::Batch(rebuilt) => rewritten.extend_from_slice(&rebuilt),
                        Rewrite::Failed(why) => {
                            kept_whole.note(header.base_offset, why);
                            rewritten.extend_from_slice(batch_bytes);
                        }
                    }
                }
            }
            if retained && header.is_transactional() && !header.is_control() {
                txn_retained.insert(header.producer_id, true);
            }
        }
        if removed == 0 {
            continue;
        }
        out.segments.push(replace_segment(plan, seg, &rewritten, removed, aborted_markers_removed, throttle)?);
    }
    out.batches_kept_whole = kept_whole.count;
    if let Some((base_offset, why)) = kept_whole.first {
        tracing::warn!(dir = %plan.dir.display(), batches = kept_whole.count, first_base_offset = base_offset, first_reason = %why, "compaction kept batches whole that it could not open");
    }
    Ok(out)
}

/// Reads a planned segment in [`COMPACTION_IO_CHUNK_BYTES`] steps, each paid to `throttle`.
fn read_segment(dir: &Path, seg: &PlannedSegment, throttle: &IoThrottle) -> Result<Vec<u8>> {
    let path = segment::log_path(dir, seg.base_offset);
    let file = std::fs::File::open(&path).with_context(|| format!("opening {} for compaction", path.display()))?;
    // The file may end in the zero padding of its last O_DIRECT page: read only its batches.
    let mut bytes = Vec::new();
    let mut reader = file.take(seg.size_bytes);
    loop {
        let read = (&mut reader)
            .take(COMPACTION_IO_CHUNK_BYTES as u64)
            .read_to_end(&mut bytes)
            .with_context(|| format!("reading {} for compaction", path.display()))?;
        if read == 0 {
            break;
        }
        throttle.acquire(read);
    }
    Ok(bytes)
}

/// Writes the compacted bytes next to the segment, checks them, and moves them into place
/// (with the segment's aborted-transaction index, when abort markers went).
fn replace_segment(
    plan: &CompactionPlan,
    seg: &PlannedSegment,
    bytes: &[u8],
    removed: u64,
    aborted_markers_removed: Vec<i64>,
    throttle: &IoThrottle,
) -> Result<CompactedSegment> {
    let path = segment::log_path(&plan.dir, seg.base_offset);
    let cleaned = path.with_extension(CLEANED_EXTENSION);
    let mut f = std::fs::File::create(&cleaned).with_context(|| format!("creating {}", cleaned.display()))?;
    for chunk in bytes.chunks(COMPACTION_IO_CHUNK_BYTES) {
        throttle.acquire(chunk.len());
        f.write_all(chunk).with_context(|| format!("writing {}", cleaned.display()))?;
    }
    f.sync_all()?;
    // Check the new file as recovery would: every batch whole and its CRC right.
    let scan = segment::scan(&cleaned, seg.base_offset, plan.index_interval_bytes)?;
    if scan.valid_bytes != bytes.len() as u64 {
        anyhow::bail!("compacted segment {} does not scan cleanly: {:?}", cleaned.display(), scan.stopped_because);
    }
    // The aborted-transaction index without the removed markers' entries, beside the segment
    // until the segment is in place (`finish_interrupted` completes or drops a pair on open).
    let txn_index = txn_index::path(&plan.dir, seg.base_offset);
    let txn_index_cleaned = txn_index.with_extension(TXN_INDEX_CLEANED_EXTENSION);
    if !aborted_markers_removed.is_empty() {
        let entries = match std::fs::read(&txn_index) {
            Ok(old) => txn_index::decode(&old),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", txn_index.display())),
        };
        let kept: Vec<u8> = entries.iter().filter(|a| !aborted_markers_removed.contains(&a.last_offset)).flat_map(txn_index::encode).collect();
        let mut f = std::fs::File::create(&txn_index_cleaned).with_context(|| format!("creating {}", txn_index_cleaned.display()))?;
        f.write_all(&kept)?;
        f.sync_all()?;
    }
    // Old indexes first: a crash before the new ones are written leaves them to be rebuilt.
    for old in [segment::index_path(&plan.dir, seg.base_offset), segment::time_index_path(&plan.dir, seg.base_offset)] {
        match std::fs::remove_file(&old) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e).with_context(|| format!("removing {}", old.display())),
            _ => {}
        }
    }
    sync_dir(&plan.dir)?;
    std::fs::rename(&cleaned, &path).with_context(|| format!("renaming {} to {}", cleaned.display(), path.display()))?;
    if !aborted_markers_removed.is_empty() {
        std::fs::rename(&txn_index_cleaned, &txn_index).with_context(|| format!("renaming {} to {}", txn_index_cleaned.display(), txn_index.display()))?;
    }
    write_indexes(&plan.dir, seg.base_offset, &scan.index, &scan.time_index)?;
    sync_dir(&plan.dir)?;
    let file = std::fs::File::open(&path).with_context(|| format!("opening compacted segment {}", path.display()))?;
    Ok(CompactedSegment { base_offset: seg.base_offset, file, scan, records_removed: removed, aborted_markers_removed })
}

/// Where a partition's cleaner progress survives restarts (Kafka's name; Kafka keeps one per log
/// directory, here the owner shard is the only writer of each partition's, as with
/// `log-start-offset-checkpoint`), in Kafka's checkpoint format.
pub const CLEANER_OFFSET_CHECKPOINT_FILE: &str = "cleaner-offset-checkpoint";

/// The offset below which the partition in `dir` was last found clean, if recorded.
pub fn read_cleaner_checkpoint(dir: &Path) -> Option<i64> {
    super::checkpoint::read(dir, CLEANER_OFFSET_CHECKPOINT_FILE)
}

/// Writes the cleaner checkpoint durably (blocking: run it off the shard).
pub fn write_cleaner_checkpoint(dir: &Path, topic: &str, partition: i32, offset: i64) -> Result<()> {
    super::checkpoint::write(dir, CLEANER_OFFSET_CHECKPOINT_FILE, topic, partition, offset)
}

/// Extension of a compacted segment before it replaces the segment.
const CLEANED_EXTENSION: &str = "log.cleaned";
/// Extension of a segment's rewritten aborted-transaction index before it replaces the index.
const TXN_INDEX_CLEANED_EXTENSION: &str = "txnindex.cleaned";

/// Finishes or undoes a compaction that a crash interrupted, before the partition opens: a
/// `.log.cleaned` file still there means the segment was not replaced (its rewritten
/// transaction index, if any, is dropped with it); a `.txnindex.cleaned` alone means the
/// segment was, and its index replaces the old one.
pub fn finish_interrupted(dir: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(()) };
    let names: Vec<String> = entries.flatten().filter_map(|e| e.file_name().to_str().map(str::to_string)).collect();
    for name in &names {
        let path = dir.join(name);
        if let Some(stem) = name.strip_suffix(&format!(".{CLEANED_EXTENSION}")) {
            tracing::warn!(file = %path.display(), "removing a compacted segment that a crash left before it replaced its segment");
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            let txn = dir.join(format!("{stem}.{TXN_INDEX_CLEANED_EXTENSION}"));
            if txn.exists() {
                std::fs::remove_file(&txn).with_context(|| format!("removing {}", txn.display()))?;
            }
        }
    }
    for name in &names {
        let Some(stem) = name.strip_suffix(&format!(".{TXN_INDEX_CLEANED_EXTENSION}")) else { continue };
        let path = dir.join(name);
        if !path.exists() {
            continue; // dropped above with its segment
        }
        let target = dir.join(format!("{stem}.txnindex"));
        tracing::warn!(file = %path.display(), "completing a compaction that a crash interrupted: installing the rewritten aborted-transaction index");
        std::fs::rename(&path, &target).with_context(|| format!("renaming {} to {}", path.display(), target.display()))?;
    }
    sync_dir(dir)
}

/// Bounds the cleaner's file I/O to `log.cleaner.io.max.bytes.per.second`, shared by every
/// compaction of the process (as Kafka's throttler is shared by its cleaner threads). Each step
/// books its bytes on a timeline and sleeps (on the cleaner thread, never on a shard) until
/// its turn comes, so the rate holds over any window longer than one step.
pub struct IoThrottle {
    bytes_per_second: f64,
    next_free: Mutex<Instant>,
}

/// Rates at or above this are no bound (Kafka's default is Double.MaxValue).
const IO_THROTTLE_UNLIMITED_BYTES_PER_SECOND: f64 = 1e15;
/// The longest one step may wait, whatever the rate: a bound on a sleep, not on the rate.
const IO_THROTTLE_WAIT_MAX: Duration = Duration::from_secs(60);

impl IoThrottle {
    pub fn new(bytes_per_second: f64) -> IoThrottle {
        IoThrottle { bytes_per_second, next_free: Mutex::new(Instant::now()) }
    }

    pub fn unlimited() -> IoThrottle {
        IoThrottle::new(f64::MAX)
    }

    /// Waits until `bytes` more of I/O fit in the rate.
    pub fn acquire(&self, bytes: usize) {
        // NaN, zero or negative (refused by the config) count as no bound too.
        if !(self.bytes_per_second > 0.0 && self.bytes_per_second < IO_THROTTLE_UNLIMITED_BYTES_PER_SECOND) {
            return;
        }
        let cost = Duration::try_from_secs_f64(bytes as f64 / self.bytes_per_second).unwrap_or(IO_THROTTLE_WAIT_MAX).min(IO_THROTTLE_WAIT_MAX);
        let wait = {
            let mut next_free = self.next_free.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let now = Instant::now();
            let start = (*next_free).max(now);
            *next_free = start + cost;
            start - now
        };
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::log::{now_ms, LogConfig, Partition, ReadPiece};

    fn batch(records: &[(&str, Option<&str>)]) -> bytes::BytesMut {
        let kv: Vec<batch::KeyValue> = records.iter().map(|(k, v)| (Some(k.as_bytes()), v.map(str::as_bytes))).collect();
        bytes::BytesMut::from(&batch::build_batch(0, 1_000, &kv)[..])
    }

    /// Every batch readable from offset 0 (header and bytes), checking every CRC.
    fn read_batches(p: &Partition) -> Vec<(batch::BatchHeader, Vec<u8>)> {
        let log = p.log.borrow();
        let mut out = Vec::new();
        let mut offset = 0;
        while offset < log.log_end_offset() {
            let r = log.read(offset, 1 << 20).unwrap();
            let mut bytes = Vec::new();
            for piece in r.pieces {
                match piece {
                    ReadPiece::Memory(b) => bytes.extend_from_slice(&b),
                    ReadPiece::File { file, position, len } => {
                        let mut buf = vec![0u8; len];
                        std::os::unix::fs::FileExt::read_exact_at(&*file, &mut buf, position).unwrap();
                        bytes.extend_from_slice(&buf);
                    }
                }
            }
            let headers = batch::parse_all(&bytes, true).expect("compacted batches keep valid CRCs");
            let mut position = 0;
            for h in headers {
                out.push((h, bytes[position..position + h.size_bytes].to_vec()));
                position += h.size_bytes;
                offset = h.last_offset() + 1;
            }
        }
        out
    }

    /// (offset, key, value) of every data record readable from offset 0 (compressed batches
    /// decompressed, markers skipped), checking every CRC.
    fn read_all(p: &Partition) -> Vec<(i64, String, Option<String>)> {
        let mut out = Vec::new();
        for (h, bytes) in read_batches(p).into_iter().filter(|(h, _)| !h.is_control()) {
            let section = &bytes[BATCH_HEADER_BYTES..];
            let body = compression::decompress(Codec::of(h.attributes, section).unwrap(), section, 1 << 20).unwrap();
            for rec in batch::records_of(&h, &body).expect("records parse") {
                let text = |b: Option<&[u8]>| b.map(|b| String::from_utf8(b.to_vec()).unwrap());
                out.push((rec.offset, text(rec.key).unwrap(), text(rec.value)));
            }
        }
        out
    }

    fn kept(v: &[(i64, &str, Option<&str>)]) -> Vec<(i64, String, Option<String>)> {
        v.iter().map(|(o, k, v)| (*o, k.to_string(), v.map(str::to_string))).collect()
    }

    /// Runs `test` on a glommio executor with a compacted partition of one batch per segment.
    fn with_partition<F, Fut>(config: LogConfig, test: F)
    where
        F: FnOnce(std::rc::Rc<Partition>, PathBuf, LogConfig) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()>,
    {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        crate::runtime::Executor::new(crate::runtime::Placement::Unbound)
            .spawn(move || async move {
                let p = Partition::new("t".into(), 0, PartitionLog::open(&path, config.clone()).unwrap());
                p.start_flusher();
                test(p, path, config).await
            })
            .unwrap()
            .join()
            .unwrap();
    }

    fn compacted_config() -> LogConfig {
        LogConfig {
            segment_bytes: 100,
            cache_bytes: 0,
            cleanup_compact: true,
            cleanup_delete: false,
            min_cleanable_dirty_ratio: 0.0,
            delete_retention_ms: i64::MAX / 2,
            ..LogConfig::default()
        }
    }

    /// Compacts what the partition's plan says, and installs it; returns the records removed.
    fn compact_now(p: &Partition) -> u64 {
        let plan = p.log.borrow().compaction_plan(now_ms()).expect("a dirty sealed segment");
        let outcome = compact_segments(&plan, &IoThrottle::unlimited()).unwrap();
        p.log.borrow_mut().install_compacted(&plan, outcome).unwrap()
    }

    #[test]
    fn a_read_from_an_offset_compacted_away_at_a_segments_end_goes_on_in_the_next_segment() {
        // Two batches fit in a segment, a third rolls it.
        let batch_bytes = batch(&[("a", Some("1"))]).len() as u64;
        let config = LogConfig { segment_bytes: 2 * batch_bytes + batch_bytes / 2, ..compacted_config() };
        with_partition(config, |p, _, _| async move {
            p.append(batch(&[("a", Some("1"))]), now_ms()).unwrap(); // 0
            p.append(batch(&[("b", Some("1"))]), now_ms()).unwrap(); // 1, the same segment
            p.append(batch(&[("b", Some("2"))]), now_ms()).unwrap(); // 2, a new segment
            p.append(batch(&[("c", Some("1"))]), now_ms()).unwrap(); // 3
            let last = p.append(batch(&[("d", Some("1"))]), now_ms()).unwrap().last_offset; // 4, active
            p.wait_durable(last).await.unwrap();
            assert_eq!(compact_now(&p), 1, "b=1 goes, and its batch with it");
            // The first segment still spans offset 1 but holds nothing at or after it: the read
            // walks it to its end and starts over in the next segment's file.
            let blocking = p.log.borrow().read(1, 1 << 20).unwrap();
            let uring = p.read_up_to(1, 1 << 20, i64::MAX).await.unwrap();
            for r in [blocking, uring] {
                let ReadPiece::File { file, position, len } = &r.pieces[0] else { panic!("a file read") };
                let mut bytes = vec![0u8; *len];
                std::os::unix::fs::FileExt::read_exact_at(&**file, &mut bytes, *position).unwrap();
                let offsets: Vec<i64> = batch::parse_all(&bytes, true).unwrap().iter().map(|h| h.base_offset).collect();
                assert_eq!(offsets[0], 2, "from the batch after the gap, in the next segment");
            }
            p.close(true).await.unwrap();
        });
    }

    #[test]
    fn compacted_files_are_opened_off_the_shard_and_closed_off_it_when_not_installed() {
        with_partition(compacted_config(), |p, path, _| async move {
            p.append(batch(&[("a", Some("1"))]), now_ms()).unwrap(); // 0
            p.append(batch(&[("a", Some("2"))]), now_ms()).unwrap(); // 1
            p.append(batch(&[("b", Some("1"))]), now_ms()).unwrap(); // 2
            let last = p.append(batch(&[("c", Some("1"))]), now_ms()).unwrap().last_offset; // 3, active
            p.wait_durable(last).await.unwrap();
            let plan = p.log.borrow().compaction_plan(now_ms()).expect("dirty sealed segments");
            let outcome = compact_segments(&plan, &IoThrottle::unlimited()).unwrap();
            let rewritten: Vec<i64> = outcome.segments.iter().map(|s| s.base_offset).collect();
            assert!(rewritten.contains(&0), "a=1 goes: {rewritten:?}");
            // Retention takes the first segment between the pass and its install.
            let _ = p.log.borrow_mut().remove_oldest_segments(1);
            let inode = |file: &std::fs::File| std::os::unix::fs::MetadataExt::ino(&file.metadata().unwrap());
            let new_first = std::fs::metadata(segment::log_path(&path, 0)).map(|m| std::os::unix::fs::MetadataExt::ino(&m)).unwrap();
            p.log.borrow_mut().install_compacted(&plan, outcome).unwrap();
            // Every descriptor to close is handed back: the old file of each segment installed,
            // and the new file of the one retention took, never closed on the shard.
            let retired = p.log.borrow_mut().take_retired_files();
            assert_eq!(retired.len(), rewritten.len());
            assert!(retired.iter().any(|f| inode(f) == new_first), "the new file of the segment retention took");
            p.close(true).await.unwrap();
        });
    }

    /// `records` as one batch compressed with `codec` by kafka-protocol's codecs (as a client
    /// would), or uncompressed for None.
    fn compressed_batch(codec: i16, records: &[(&str, Option<&str>)]) -> Vec<u8> {
        use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};
        let kv: Vec<batch::KeyValue> = records.iter().map(|(k, v)| (Some(k.as_bytes()), v.map(str::as_bytes))).collect();
        let mut plain = batch::build_batch(0, 1_000, &kv);
        let section = plain[BATCH_HEADER_BYTES..].to_vec();
        let mut compressed = bytes::BytesMut::new();
        let put = |buf: &mut bytes::BytesMut| -> anyhow::Result<()> {
            buf.extend_from_slice(&section);
            Ok(())
        };
        match codec {
            1 => Gzip::compress(&mut compressed, put).unwrap(),
            2 => Snappy::compress(&mut compressed, put).unwrap(),
            3 => Lz4::compress(&mut compressed, put).unwrap(),
            4 => Zstd::compress(&mut compressed, put).unwrap(),
            _ => compressed.extend_from_slice(&section),
        }
        let attributes = i16::from_be_bytes([plain[batch::OFFSET_ATTRIBUTES], plain[batch::OFFSET_ATTRIBUTES + 1]]) | codec;
        plain[batch::OFFSET_ATTRIBUTES..batch::OFFSET_ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
        batch::rebuild_batch(&plain, &compressed, records.len() as i32)
    }

    #[test]
    fn latest_per_key_with_offsets_kept_and_tombstones_after_their_horizon() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        crate::runtime::Executor::new(crate::runtime::Placement::Unbound)
            .spawn(move || async move {
                let config = LogConfig {
                    segment_bytes: 100,
                    cache_bytes: 0,
                    cleanup_compact: true,
                    cleanup_delete: false,
                    min_cleanable_dirty_ratio: 0.0,
                    delete_retention_ms: i64::MAX / 2,
                    ..LogConfig::default()
                };
                let p = Partition::new("t".into(), 0, PartitionLog::open(&path, config.clone()).unwrap());
                p.start_flusher();
                p.append(batch(&[("a", Some("1")), ("d", Some("1"))]), now_ms()).unwrap(); // 0, 1
                p.append(batch(&[("a", Some("2")), ("c", Some("1"))]), now_ms()).unwrap(); // 2, 3
                p.append(batch(&[("d", None)]), now_ms()).unwrap(); // 4: tombstone
                let last = p.append(batch(&[("z", Some("1"))]), now_ms()).unwrap().last_offset; // 5, active
                p.wait_durable(last).await.unwrap();

                let plan = p.log.borrow().compaction_plan(now_ms()).expect("dirty sealed segments");
                assert_eq!(plan.segments.len(), 3, "never the active segment");
                let outcome = compact_segments(&plan, &IoThrottle::unlimited()).unwrap();
                assert_eq!(outcome.dirty_from, Some(4), "a young tombstone keeps its segment dirty");
                assert_eq!(p.log.borrow_mut().install_compacted(&plan, outcome).unwrap(), 2);
                assert_eq!(read_all(&p), kept(&[(2, "a", Some("2")), (3, "c", Some("1")), (4, "d", None), (5, "z", Some("1"))]));
                assert_eq!(p.log.borrow().log_end_offset(), 6);

                // Past delete.retention.ms the tombstone goes too, and the segment is clean.
                p.log.borrow_mut().set_config(LogConfig { delete_retention_ms: 0, ..config });
                let plan = p.log.borrow().compaction_plan(now_ms()).expect("the tombstone's segment is still dirty");
                let outcome = compact_segments(&plan, &IoThrottle::unlimited()).unwrap();
                assert_eq!(outcome.dirty_from, None);
                p.log.borrow_mut().install_compacted(&plan, outcome).unwrap();
                assert_eq!(read_all(&p), kept(&[(2, "a", Some("2")), (3, "c", Some("1")), (5, "z", Some("1"))]));
                assert!(p.log.borrow().compaction_plan(now_ms()).is_none(), "nothing dirty is left");

                // A little new dirt is below the dirty ratio, until it is older than
                // max.compaction.lag.ms.
                p.log.borrow_mut().set_config(LogConfig { delete_retention_ms: 0, min_cleanable_dirty_ratio: 0.99, ..config.clone() });
                p.append(batch(&[("c", Some("2"))]), now_ms()).unwrap(); // 6, sealing 5
                let last = p.append(batch(&[("y", Some("1"))]), now_ms()).unwrap().last_offset; // 7, sealing 6
                p.wait_durable(last).await.unwrap();
                assert!(p.log.borrow().compaction_plan(now_ms()).is_none(), "dirty share under min.cleanable.dirty.ratio");
                p.log.borrow_mut().set_config(LogConfig { delete_retention_ms: 0, min_cleanable_dirty_ratio: 0.99, max_compaction_lag_ms: 0, ..config });
                let plan = p.log.borrow().compaction_plan(now_ms()).expect("overdue by max.compaction.lag.ms");
                let outcome = compact_segments(&plan, &IoThrottle::unlimited()).unwrap();
                assert_eq!(p.log.borrow_mut().install_compacted(&plan, outcome).unwrap(), 1, "c=1 goes");
                assert_eq!(read_all(&p), kept(&[(2, "a", Some("2")), (5, "z", Some("1")), (6, "c", Some("2")), (7, "y", Some("1"))]));
                p.close(true).await.unwrap();

                // The compacted log reads the same after a restart, and with the cleaner's
                // checkpoint (written by the maintenance loop) the first pass does not read it all again.
                write_cleaner_checkpoint(&path, "t", 0, p.log.borrow().cleaner_offset()).unwrap();
                let reopened = Partition::new("t".into(), 0, PartitionLog::open(&path, LogConfig::default()).unwrap());
                assert_eq!(read_all(&reopened), kept(&[(2, "a", Some("2")), (5, "z", Some("1")), (6, "c", Some("2")), (7, "y", Some("1"))]));
                assert_eq!(reopened.log.borrow().cleaner_offset(), 7);
                assert!(reopened.log.borrow().compaction_plan(now_ms()).is_none(), "nothing dirty after a restart");
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn a_partly_kept_batch_keeps_its_offsets_and_gets_a_new_crc() {
        let bytes = batch::build_batch(10, 1_000, &[(Some(b"a"), Some(b"1")), (Some(b"b"), Some(b"1")), (Some(b"c"), None)]);
        let header = batch::parse_header(&bytes, 0, true).unwrap();
        let body = body(&bytes, &header).unwrap();
        let records = raw_records(&header, &body.bytes).unwrap();
        assert_eq!(records.iter().map(|r| r.offset).collect::<Vec<_>>(), [10, 11, 12]);
        assert!(records[2].tombstone);
        let rebuilt = rebuild_batch(&bytes, Codec::None, &[&records[1]]).unwrap();
        let h = batch::parse_header(&rebuilt, 0, true).expect("valid CRC");
        assert_eq!((h.base_offset, h.last_offset(), h.records_count, h.size_bytes), (10, 12, 1, rebuilt.len()));
        let views = batch::records(&rebuilt).unwrap();
        assert_eq!((views[0].offset, views[0].key), (11, Some(&b"b"[..])));
        // A count the bytes cannot hold is not rewritten.
        let mut lying = bytes.clone();
        lying[batch::OFFSET_LAST_OFFSET_DELTA..batch::OFFSET_LAST_OFFSET_DELTA + 4].copy_from_slice(&1_000i32.to_be_bytes());
        lying[batch::OFFSET_RECORDS_COUNT..batch::OFFSET_RECORDS_COUNT + 4].copy_from_slice(&1_000i32.to_be_bytes());
        let lying_header = batch::parse_header(&lying, 0, false).unwrap();
        assert!(raw_records(&lying_header, &lying[BATCH_HEADER_BYTES..]).is_err());
        // Nor is a batch whose records claim offsets outside it.
        let mut short = bytes.clone();
        short[batch::OFFSET_LAST_OFFSET_DELTA..batch::OFFSET_LAST_OFFSET_DELTA + 4].copy_from_slice(&1i32.to_be_bytes());
        short[batch::OFFSET_RECORDS_COUNT..batch::OFFSET_RECORDS_COUNT + 4].copy_from_slice(&2i32.to_be_bytes());
        let short = batch::rebuild_batch(&short, &records[0].bytes.iter().chain(records[2].bytes).copied().collect::<Vec<_>>(), 2);
        let short_header = batch::parse_header(&short, 0, true).unwrap();
        assert!(raw_records(&short_header, &short[BATCH_HEADER_BYTES..]).unwrap_err().contains("outside the batch"));
    }

    #[test]
    fn compressed_batches_keep_the_latest_per_key_recompressed_with_their_codec() {
        for codec in 1..=4i16 {
            with_partition(compacted_config(), move |p, _, _| async move {
                let append =
                    |records: &[(&str, Option<&str>)]| p.append(bytes::BytesMut::from(&compressed_batch(codec, records)[..]), now_ms()).unwrap().last_offset;
                append(&[("a", Some("1")), ("b", Some("1")), ("c", Some("1"))]); // 0..=2
                append(&[("a", Some("2")), ("b", Some("2")), ("d", Some("1"))]); // 3..=5
                append(&[("b", Some("3"))]); // 6
                let last = append(&[("z", Some("1"))]); // 7, active
                p.wait_durable(last).await.unwrap();
                let before: Vec<_> = read_batches(&p);
                assert_eq!(compact_now(&p), 3, "codec {codec}: a=1, b=1, b=2, and nothing else");
                assert_eq!(
                    read_all(&p),
                    kept(&[(2, "c", Some("1")), (3, "a", Some("2")), (5, "d", Some("1")), (6, "b", Some("3")), (7, "z", Some("1"))]),
                    "codec {codec}"
                );
                let after = read_batches(&p);
                assert_eq!(after.len(), before.len());
                for ((old, _), (new, bytes)) in before.iter().zip(&after) {
                    // Offsets, timestamps, producer fields and codec stay; read_batches checked the CRC.
                    assert_eq!(
                        (new.base_offset, new.last_offset_delta, new.base_timestamp, new.max_timestamp, new.producer_id, new.attributes),
                        (old.base_offset, old.last_offset_delta, old.base_timestamp, old.max_timestamp, old.producer_id, old.attributes),
                        "codec {codec}"
                    );
                    assert_eq!(new.compression(), codec);
                    let section = &bytes[BATCH_HEADER_BYTES..];
                    if codec == 2 {
                        assert_eq!(Codec::of(new.attributes, section).unwrap(), Codec::Snappy { xerial: true }, "the Java client's framing is kept");
                    }
                }
                // The rewritten batches decompress with kafka-protocol's codecs too (as clients would).
                for (h, bytes) in &after {
                    use kafka_protocol::compression::{Decompressor, Gzip, Lz4, Snappy, Zstd};
                    let mut section = bytes::Bytes::copy_from_slice(&bytes[BATCH_HEADER_BYTES..]);
                    let check = |b: &mut bytes::Bytes| -> anyhow::Result<usize> { Ok(batch::records_of(h, b).map(|r| r.len()).unwrap_or(0)) };
                    let count = match codec {
                        1 => Gzip::decompress(&mut section, check),
                        2 => Snappy::decompress(&mut section, check),
                        3 => Lz4::decompress(&mut section, check),
                        _ => Zstd::decompress(&mut section, check),
                    }
                    .unwrap();
                    assert_eq!(count as i32, h.records_count, "codec {codec}");
                }
                p.close(true).await.unwrap();
            });
        }
    }

    #[test]
    fn batches_that_do_not_decompress_within_the_bound_are_kept_whole() {
        with_partition(compacted_config(), |p, _, _| async move {
            // A zstd batch whose one record decompresses past the bound (a "zip bomb": a few KiB
            // on disk), and a gzip batch whose CRC is right but whose records are garbage.
            let huge = "x".repeat(COMPACTION_BATCH_DECOMPRESSED_MAX + 1);
            let bomb = compressed_batch(4, &[("a", Some(&huge)), ("b", Some("1"))]);
            assert!(bomb.len() < 64 << 10);
            let mut garbage = compressed_batch(1, &[("a", Some("1"))]);
            let header = batch::parse_header(&garbage, 0, true).unwrap();
            let junk: Vec<u8> = (0..200u8).map(|i| i.wrapping_mul(37)).collect();
            garbage = batch::rebuild_batch(&garbage, &junk, header.records_count);
            p.append(bytes::BytesMut::from(&bomb[..]), now_ms()).unwrap(); // 0, 1
            p.append(bytes::BytesMut::from(&garbage[..]), now_ms()).unwrap(); // 2
            p.append(bytes::BytesMut::from(&compressed_batch(4, &[("a", Some("2")), ("b", Some("2"))])[..]), now_ms()).unwrap(); // 3, 4
            p.append(bytes::BytesMut::from(&compressed_batch(4, &[("b", Some("3"))])[..]), now_ms()).unwrap(); // 5
            let last = p.append(batch(&[("z", Some("1"))]), now_ms()).unwrap().last_offset; // 6, active
            p.wait_durable(last).await.unwrap();
            let before = read_batches(&p);
            let plan = p.log.borrow().compaction_plan(now_ms()).unwrap();
            let outcome = compact_segments(&plan, &IoThrottle::unlimited()).unwrap();
            assert_eq!(outcome.batches_kept_whole, 2);
            let removed = p.log.borrow_mut().install_compacted(&plan, outcome).unwrap();
            assert_eq!(removed, 1, "only b=2 goes: the unopened batches count no keys and lose none");
            let after = read_batches(&p);
            assert_eq!(after[0].1, before[0].1, "the bomb is kept byte for byte");
            assert_eq!(after[1].1, before[1].1, "the garbage is kept byte for byte");
            assert_eq!((after[2].0.base_offset, after[2].0.records_count, after[2].0.last_offset()), (3, 1, 4));
            p.close(true).await.unwrap();
        });
    }

    fn txn_batch(producer_id: i64, base_sequence: i32, records: &[(&str, Option<&str>)]) -> bytes::BytesMut {
        let kv: Vec<batch::KeyValue> = records.iter().map(|(k, v)| (Some(k.as_bytes()), v.map(str::as_bytes))).collect();
        let producer = batch::BatchProducer { attributes: batch::ATTRIBUTE_TRANSACTIONAL, producer_id, producer_epoch: 0, base_sequence };
        bytes::BytesMut::from(&batch::build_producer_batch(0, 1_000, &kv, &producer)[..])
    }

    #[test]
    fn aborted_records_go_committed_ones_compact_and_markers_go_after_delete_retention() {
        with_partition(compacted_config(), |p, path, config| async move {
            p.append(txn_batch(7, 0, &[("a", Some("aborted")), ("b", Some("aborted"))]), now_ms()).unwrap(); // 0, 1
            p.append_marker(7, 0, false, 0, now_ms()).unwrap(); // 2: abort
            p.append(batch(&[("a", Some("2"))]), now_ms()).unwrap(); // 3
            p.append(txn_batch(8, 0, &[("b", Some("committed")), ("c", Some("1"))]), now_ms()).unwrap(); // 4, 5
            p.append_marker(8, 0, true, 0, now_ms()).unwrap(); // 6: commit
            p.append(batch(&[("c", Some("2"))]), now_ms()).unwrap(); // 7
            let last = p.append(batch(&[("z", Some("1"))]), now_ms()).unwrap().last_offset; // 8, active
            p.wait_durable(last).await.unwrap();
            assert_eq!(p.log.borrow().aborted_txns_between(0, 9).len(), 1);
            let markers = |p: &Partition| read_batches(p).into_iter().filter(|(h, _)| h.is_control()).map(|(h, _)| h.base_offset).collect::<Vec<_>>();

            // The aborted records go (and do not shadow b's committed value); c=1 goes (c=2 is
            // later). Both markers stay: delete.retention.ms has not passed.
            assert_eq!(compact_now(&p), 3);
            let expected = kept(&[(3, "a", Some("2")), (4, "b", Some("committed")), (7, "c", Some("2")), (8, "z", Some("1"))]);
            assert_eq!(read_all(&p), expected);
            assert_eq!(markers(&p), [2, 6]);
            assert_eq!(p.log.borrow().aborted_txns_between(0, 9).len(), 1, "the abort marker is still there");

            // Past delete.retention.ms the abort marker goes with its aborted-transaction entry;
            // the commit marker stays while its transaction has a record left.
            p.log.borrow_mut().set_config(LogConfig { delete_retention_ms: 0, ..config.clone() });
            assert_eq!(compact_now(&p), 1);
            assert_eq!(read_all(&p), expected);
            assert_eq!(markers(&p), [6]);
            assert!(p.log.borrow().aborted_txns_between(0, 9).is_empty());
            assert!(txn_index::decode(&std::fs::read(txn_index::path(&path, 2)).unwrap()).is_empty(), "the segment's .txnindex lost the entry");

            // Once b's committed record is superseded, its commit marker goes too.
            p.append(batch(&[("b", Some("3"))]), now_ms()).unwrap(); // 9, sealing 8
            let last = p.append(batch(&[("y", Some("1"))]), now_ms()).unwrap().last_offset; // 10
            p.wait_durable(last).await.unwrap();
            assert_eq!(compact_now(&p), 2, "b=committed, and the commit marker with it");
            assert!(markers(&p).is_empty());
            assert_eq!(read_all(&p), kept(&[(3, "a", Some("2")), (7, "c", Some("2")), (8, "z", Some("1")), (9, "b", Some("3")), (10, "y", Some("1"))]));

            // An open transaction bounds the cleaned range: nothing at or past its first offset.
            p.append(txn_batch(9, 0, &[("a", Some("open"))]), now_ms()).unwrap(); // 11
            p.append(batch(&[("a", Some("3"))]), now_ms()).unwrap(); // 12
            let last = p.append(batch(&[("x", Some("1"))]), now_ms()).unwrap().last_offset; // 13
            p.wait_durable(last).await.unwrap();
            let plan = p.log.borrow().compaction_plan(now_ms()).expect("a=2 is dirty");
            assert!(plan.segments.iter().all(|s| s.next_offset <= 11), "{plan:?}");
            p.close(true).await.unwrap();

            // After a restart, the removed abort stays forgotten.
            let reopened = Partition::new("t".into(), 0, PartitionLog::open(&path, config).unwrap());
            assert!(reopened.log.borrow().aborted_txns_between(0, 9).is_empty());
        });
    }

    #[test]
    fn an_interrupted_compaction_is_finished_or_undone_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // The segment was not replaced: both rewritten files go.
        std::fs::write(d.join("00000000000000000000.log.cleaned"), b"x").unwrap();
        std::fs::write(d.join("00000000000000000000.txnindex.cleaned"), b"").unwrap();
        // The segment was replaced: its rewritten index takes the old one's place.
        std::fs::write(d.join("00000000000000000100.txnindex"), [0u8; 34]).unwrap();
        std::fs::write(d.join("00000000000000000100.txnindex.cleaned"), b"").unwrap();
        finish_interrupted(d).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        assert_eq!(names, ["00000000000000000100.txnindex"]);
        assert!(std::fs::read(d.join("00000000000000000100.txnindex")).unwrap().is_empty());
    }

    #[test]
    fn the_io_throttle_paces_bytes() {
        // Not timed: it checks the booking, which is what the sleeps follow.
        let throttle = IoThrottle::new(1_000.0);
        let start = *throttle.next_free.lock().unwrap();
        throttle.acquire(0);
        throttle.acquire(0);
        let booked = *throttle.next_free.lock().unwrap();
        assert!(booked >= start);
        let unlimited = IoThrottle::unlimited();
        let before = *unlimited.next_free.lock().unwrap();
        unlimited.acquire(usize::MAX);
        assert_eq!(*unlimited.next_free.lock().unwrap(), before, "no bound books nothing");
        let slow = IoThrottle::new(1e9);
        let before = Instant::now();
        slow.acquire(1_000_000_000);
        assert!(*slow.next_free.lock().unwrap() >= before + Duration::from_millis(999), "a second's worth of bytes books a second");
    }
}
