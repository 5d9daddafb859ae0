//! Compaction (`cleanup.policy=compact`): sealed segments keep only the latest record of each
//! key, and tombstones (null values) go once they are older than `delete.retention.ms`.
//!
//! A pass has three steps. On the shard, `compaction_plan` picks the oldest sealed, durable
//! segments whose records are all older than `min.compaction.lag.ms`, when the share of bytes
//! not compacted yet reaches `min.cleanable.dirty.ratio`, up to [`COMPACTION_BYTES_PER_PASS_MAX`].
//! Off the shard (glommio's blocking pool), `compact_segments` reads them twice, once for the
//! latest offset of each key and once to write each segment's surviving batches to a new file,
//! which then replaces the old one (old index files removed first, so a crash in between leaves a
//! segment whose indexes are rebuilt). Back on the shard, `install_compacted` swaps the new
//! files and indexes in.
//!
//! Offsets never change: a rewritten batch keeps its base offset, last offset delta and
//! timestamps, and only loses records (so consumers see gaps, as with Kafka). Only uncompressed,
//! non-transactional batches are rewritten; others are kept whole, and their keys are not
//! counted, so a record is only ever dropped when a later record of its key is known. The
//! segment's next offset stays, so the next segment still starts where it did.
//!
//! Readers are safe: a read holds the old file open, and the old inode lives until it is closed.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use shardlog_protocol::batch::{self, BATCH_HEADER_BYTES, BATCH_LOG_OVERHEAD_BYTES};

use super::log::{sync_dir, write_indexes, PartitionLog};
use super::segment::{self, ScanResult};

/// Bytes of segments one compaction pass reads (twice). A longer log is compacted a prefix at a
/// time; records in the prefix that later segments supersede wait for a later pass.
pub const COMPACTION_BYTES_PER_PASS_MAX: u64 = 256 << 20;
/// Distinct keys one pass remembers; a pass that would need more compacts nothing and says so.
pub const COMPACTION_KEYS_MAX: usize = 1 << 20;

/// Byte offsets of v2 batch header fields.
const OFFSET_BATCH_LENGTH: usize = 8;
const OFFSET_CRC: usize = 17;
const OFFSET_ATTRIBUTES: usize = 21;
const OFFSET_RECORDS_COUNT: usize = 57;

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
}

/// A segment rewritten by `compact_segments`, already in place on disk.
pub struct CompactedSegment {
    pub base_offset: i64,
    pub scan: ScanResult,
    pub records_removed: u64,
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
            if seg.next_offset >= self.durable_offset || seg.max_timestamp > lag_limit_ms || total + seg.size_bytes > COMPACTION_BYTES_PER_PASS_MAX {
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

    /// Swaps in segments that `compact_segments` rewrote. A segment that retention deleted
    /// meanwhile is skipped. Returns the records removed.
    pub fn install_compacted(&mut self, plan: &CompactionPlan, outcome: CompactionOutcome) -> Result<u64> {
        let mut removed = 0;
        for done in outcome.segments {
            let Some(seg) = self.segments.iter_mut().find(|s| s.base_offset == done.base_offset) else { continue };
            let path = segment::log_path(&self.dir, done.base_offset);
            let file = std::fs::File::open(&path).with_context(|| format!("opening compacted segment {}", path.display()))?;
            seg.index = done.scan.index;
            seg.time_index = done.scan.time_index;
            seg.size_bytes = done.scan.valid_bytes;
            seg.written_bytes = done.scan.valid_bytes;
            seg.bytes_since_index_entry = done.scan.bytes_since_index_entry;
            seg.read_file = Some(Arc::new(file));
            removed += done.records_removed;
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

/// One record of an uncompressed batch: its bytes (length prefix included), offset, key, and
/// whether it is a tombstone.
struct RawRecord<'a> {
    bytes: &'a [u8],
    offset: i64,
    key: Option<&'a [u8]>,
    tombstone: bool,
}

/// The records of `batch` if it is one compaction may rewrite: uncompressed, not transactional
/// or control, and well formed. None keeps the batch whole.
fn raw_records<'a>(batch: &'a [u8], header: &batch::BatchHeader) -> Option<Vec<RawRecord<'a>>> {
    if header.is_control() || header.is_transactional() {
        return None;
    }
    let records = batch::records(batch)?;
    Some(records.into_iter().map(|r| RawRecord { bytes: r.encoded, offset: r.offset, key: r.key, tombstone: r.value.is_none() }).collect())
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

/// `batch` with only `kept` of its records: the same header (offsets and timestamps included)
/// with a new length, record count and CRC.
fn rebuild_batch(batch: &[u8], kept: &[&RawRecord<'_>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(batch.len());
    out.extend_from_slice(&batch[..BATCH_HEADER_BYTES]);
    for r in kept {
        out.extend_from_slice(r.bytes);
    }
    let length = (out.len() - BATCH_LOG_OVERHEAD_BYTES) as i32;
    out[OFFSET_BATCH_LENGTH..OFFSET_BATCH_LENGTH + 4].copy_from_slice(&length.to_be_bytes());
    out[OFFSET_RECORDS_COUNT..OFFSET_RECORDS_COUNT + 4].copy_from_slice(&(kept.len() as i32).to_be_bytes());
    let crc = crc32c::crc32c(&out[OFFSET_ATTRIBUTES..]);
    out[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
    out
}

/// Rewrites the planned segments (blocking file I/O: run it off the shard). Segments where
/// nothing goes are left alone.
pub fn compact_segments(plan: &CompactionPlan) -> Result<CompactionOutcome> {
    // The latest offset of every key.
    let mut latest: HashMap<Vec<u8>, i64> = HashMap::new();
    for seg in &plan.segments {
        let bytes = read_segment(&plan.dir, seg)?;
        for (header, batch_bytes) in batches(&bytes, seg)? {
            for r in raw_records(batch_bytes, &header).into_iter().flatten() {
                if let Some(key) = r.key {
                    latest.insert(key.to_vec(), r.offset);
                    if latest.len() > COMPACTION_KEYS_MAX {
                        tracing::warn!(dir = %plan.dir.display(), keys_max = COMPACTION_KEYS_MAX, "too many distinct keys for one compaction pass; not compacting");
                        return Ok(CompactionOutcome::default());
                    }
                }
            }
        }
    }
    let mut out = CompactionOutcome::default();
    for seg in &plan.segments {
        let bytes = read_segment(&plan.dir, seg)?;
        let mut rewritten = Vec::with_capacity(bytes.len());
        let mut removed = 0u64;
        for (header, batch_bytes) in batches(&bytes, seg)? {
            let Some(records) = raw_records(batch_bytes, &header) else {
                rewritten.extend_from_slice(batch_bytes);
                continue;
            };
            let drop_tombstones = seg.max_timestamp < plan.delete_horizon_ms;
            let kept: Vec<&RawRecord<'_>> = records
                .iter()
                .filter(|r| match r.key {
                    None => true,
                    Some(key) => latest.get(key) == Some(&r.offset) && !(r.tombstone && drop_tombstones),
                })
                .collect();
            removed += (records.len() - kept.len()) as u64;
            if !drop_tombstones && out.dirty_from.is_none() && kept.iter().any(|r| r.tombstone && r.key.is_some()) {
                out.dirty_from = Some(seg.base_offset);
            }
            if kept.len() == records.len() {
                rewritten.extend_from_slice(batch_bytes);
            } else if !kept.is_empty() {
                rewritten.extend_from_slice(&rebuild_batch(batch_bytes, &kept));
            }
        }
        if removed == 0 {
            continue;
        }
        out.segments.push(replace_segment(plan, seg, &rewritten, removed)?);
    }
    Ok(out)
}

fn read_segment(dir: &Path, seg: &PlannedSegment) -> Result<Vec<u8>> {
    let path = segment::log_path(dir, seg.base_offset);
    let mut bytes = std::fs::read(&path).with_context(|| format!("reading {} for compaction", path.display()))?;
    // The file may end in the zero padding of its last O_DIRECT page.
    bytes.truncate(seg.size_bytes as usize);
    Ok(bytes)
}

/// Writes the compacted bytes next to the segment, checks them, and moves them into place.
fn replace_segment(plan: &CompactionPlan, seg: &PlannedSegment, bytes: &[u8], removed: u64) -> Result<CompactedSegment> {
    let path = segment::log_path(&plan.dir, seg.base_offset);
    let cleaned = path.with_extension("log.cleaned");
    let mut f = std::fs::File::create(&cleaned).with_context(|| format!("creating {}", cleaned.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    // Check the new file as recovery would: every batch whole and its CRC right.
    let scan = segment::scan(&cleaned, seg.base_offset, plan.index_interval_bytes)?;
    if scan.valid_bytes != bytes.len() as u64 {
        anyhow::bail!("compacted segment {} does not scan cleanly: {:?}", cleaned.display(), scan.stopped_because);
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
    write_indexes(&plan.dir, seg.base_offset, &scan.index, &scan.time_index, seg.next_offset)?;
    sync_dir(&plan.dir)?;
    Ok(CompactedSegment { base_offset: seg.base_offset, scan, records_removed: removed })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::log::{now_ms, LogConfig, Partition, ReadPiece};

    fn batch(records: &[(&str, Option<&str>)]) -> bytes::BytesMut {
        let kv: Vec<batch::KeyValue> = records.iter().map(|(k, v)| (Some(k.as_bytes()), v.map(str::as_bytes))).collect();
        bytes::BytesMut::from(&batch::build_batch(0, 1_000, &kv)[..])
    }

    /// (offset, key, value) of everything readable from offset 0, checking every CRC.
    fn read_all(p: &Partition) -> Vec<(i64, String, Option<String>)> {
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
            for h in &headers {
                for rec in batch::records(&bytes[position..position + h.size_bytes]).unwrap() {
                    let text = |b: Option<&[u8]>| b.map(|b| String::from_utf8(b.to_vec()).unwrap());
                    out.push((rec.offset, text(rec.key).unwrap(), text(rec.value)));
                }
                position += h.size_bytes;
                offset = h.last_offset() + 1;
            }
        }
        out
    }

    #[test]
    fn latest_per_key_with_offsets_kept_and_tombstones_after_their_horizon() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
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
                let outcome = compact_segments(&plan).unwrap();
                assert_eq!(outcome.dirty_from, Some(4), "a young tombstone keeps its segment dirty");
                assert_eq!(p.log.borrow_mut().install_compacted(&plan, outcome).unwrap(), 2);
                let kept = |v: &[(i64, &str, Option<&str>)]| v.iter().map(|(o, k, v)| (*o, k.to_string(), v.map(str::to_string))).collect::<Vec<_>>();
                assert_eq!(read_all(&p), kept(&[(2, "a", Some("2")), (3, "c", Some("1")), (4, "d", None), (5, "z", Some("1"))]));
                assert_eq!(p.log.borrow().log_end_offset(), 6);

                // Past delete.retention.ms the tombstone goes too, and the segment is clean.
                p.log.borrow_mut().set_config(LogConfig { delete_retention_ms: 0, ..config });
                let plan = p.log.borrow().compaction_plan(now_ms()).expect("the tombstone's segment is still dirty");
                let outcome = compact_segments(&plan).unwrap();
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
                let outcome = compact_segments(&plan).unwrap();
                assert_eq!(p.log.borrow_mut().install_compacted(&plan, outcome).unwrap(), 1, "c=1 goes");
                assert_eq!(read_all(&p), kept(&[(2, "a", Some("2")), (5, "z", Some("1")), (6, "c", Some("2")), (7, "y", Some("1"))]));
                p.close(true).await.unwrap();

                // The compacted log reads the same after a restart.
                let reopened = Partition::new("t".into(), 0, PartitionLog::open(&path, LogConfig::default()).unwrap());
                assert_eq!(read_all(&reopened), kept(&[(2, "a", Some("2")), (5, "z", Some("1")), (6, "c", Some("2")), (7, "y", Some("1"))]));
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn a_partly_kept_batch_keeps_its_offsets_and_gets_a_new_crc() {
        let bytes = batch::build_batch(10, 1_000, &[(Some(b"a"), Some(b"1")), (Some(b"b"), Some(b"1")), (Some(b"c"), None)]);
        let header = batch::parse_header(&bytes, 0, true).unwrap();
        let records = raw_records(&bytes, &header).unwrap();
        assert_eq!(records.iter().map(|r| r.offset).collect::<Vec<_>>(), [10, 11, 12]);
        assert!(records[2].tombstone);
        let rebuilt = rebuild_batch(&bytes, &[&records[1]]);
        let h = batch::parse_header(&rebuilt, 0, true).expect("valid CRC");
        assert_eq!((h.base_offset, h.last_offset(), h.records_count, h.size_bytes), (10, 12, 1, rebuilt.len()));
        let views = batch::records(&rebuilt).unwrap();
        assert_eq!((views[0].offset, views[0].key), (11, Some(&b"b"[..])));
        // A count the bytes cannot hold is not rewritten.
        let mut lying = bytes.clone();
        lying[23..27].copy_from_slice(&1_000i32.to_be_bytes()); // last offset delta
        lying[OFFSET_RECORDS_COUNT..OFFSET_RECORDS_COUNT + 4].copy_from_slice(&1_000i32.to_be_bytes());
        assert!(raw_records(&lying, &batch::parse_header(&lying, 0, false).unwrap()).is_none());
    }
}
