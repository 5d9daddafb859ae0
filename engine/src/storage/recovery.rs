//! Recovery at open: a partition's log rebuilt from its files after a clean shutdown or a crash.
//!
//! Sealed segments are trusted (their indexes reloaded, or rebuilt if damaged); the active
//! segment is trusted too after a clean shutdown, and otherwise scanned batch by batch,
//! CRC-checked, and truncated after its last valid batch. Producer and transaction state comes
//! from the newest snapshot plus the batches after it. Work is therefore bounded by about one
//! segment, not by the size of the log.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use shardlog_protocol::batch;

use super::disk::sync_dir;
use super::leader_epoch::{self, LeaderEpochCache};
use super::log::{now_ms, LogConfig, PartitionLog};
use super::producer_state::{AbortedTxn, ProducerState};
use super::segment::{self, load_indexes, write_indexes, Segment};
use super::txn_index;

/// Marker written on clean shutdown: the active segment's size and indexes can be trusted.
pub const CLEAN_SHUTDOWN_FILE: &str = ".shardlog-clean-shutdown";

/// What recovery found on disk, for `PartitionLog::from_recovered`.
pub(super) struct RecoveredLog {
    pub(super) segments: Vec<Segment>,
    pub(super) log_start_offset: i64,
    pub(super) next_offset: i64,
    pub(super) cleaner_offset: i64,
    pub(super) producers: ProducerState,
    pub(super) aborted_txns: Vec<AbortedTxn>,
    pub(super) epochs: LeaderEpochCache,
}

impl PartitionLog {
    /// Opens (or creates) the log in `dir`, recovering it after a crash: sealed segments are
    /// trusted (their indexes reloaded, or rebuilt if damaged); the active segment is scanned
    /// batch by batch, CRC-checked, and truncated after its last valid batch. Work is therefore
    /// bounded by one segment, not by the size of the log.
    ///
    /// Blocking: it lists, opens and reads files. For startup tools and tests; a shard opens a
    /// partition with [`PartitionLog::open_off_shard`].
    pub fn open(dir: &Path, config: LogConfig) -> Result<PartitionLog> {
        let recovered = Self::recover(dir, &config)?;
        Ok(PartitionLog::from_recovered(dir.to_path_buf(), config, recovered))
    }

    /// As [`PartitionLog::open`], with the file work on the blocking pool: opening a partition's
    /// segments (a directory listing, an open and index reads per segment, a scan of the active
    /// one after a crash) waits on the disk, which on the shard's thread would stall every
    /// partition and connection of the shard.
    pub async fn open_off_shard(dir: PathBuf, config: LogConfig) -> Result<PartitionLog> {
        let (recover_dir, recover_config) = (dir.clone(), config.clone());
        let recovered = crate::runtime::spawn_blocking(move || Self::recover(&recover_dir, &recover_config)).await?;
        Ok(PartitionLog::from_recovered(dir, config, recovered))
    }

    /// What a partition's files hold, recovered: the blocking half of opening a log.
    pub(super) fn recover(dir: &Path, config: &LogConfig) -> Result<RecoveredLog> {
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
            let read_file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
            let next_base = bases.get(i + 1).copied();
            let loaded = if trusted { load_indexes(dir, base, &read_file, file_bytes, next_base) } else { None };
            let mut seg = Segment::new(base, now_ms());
            match loaded {
                Some(l) => {
                    seg.index = l.index;
                    seg.time_index = l.time_index;
                    seg.size_bytes = file_bytes;
                    seg.next_offset = l.next_offset;
                    seg.max_timestamp = l.max_timestamp;
                    seg.offset_of_max_timestamp = l.offset_of_max_timestamp;
                    seg.bytes_since_index_entry = config.index_interval_bytes.saturating_add(1);
                    // next append adds an entry
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
                    seg.offset_of_max_timestamp = scan.offset_of_max_timestamp;
                    seg.bytes_since_index_entry = scan.bytes_since_index_entry;
                    if i < last {
                        write_indexes(dir, base, &seg.index, &seg.time_index)?;
                    }
                }
            }
            seg.written_bytes = seg.size_bytes;
            seg.read_file = Some(Arc::new(read_file));
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
        let cleaner_offset = super::compaction::read_cleaner_checkpoint(dir).unwrap_or(0).clamp(0, next_offset);
        let epochs = recover_leader_epochs(dir, &segments, log_start_offset, next_offset)?;
        Ok(RecoveredLog { segments, log_start_offset, next_offset, cleaner_offset, producers, aborted_txns, epochs })
    }
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

/// The leader epoch cache: the checkpoint, cut to the recovered log (the flusher writes it
/// before the batches it describes, so it may run ahead of a torn tail, never behind); or, when
/// it is missing (a log from before epochs were kept) or damaged, rebuilt from every batch
/// header, and written back.
fn recover_leader_epochs(dir: &Path, segments: &[Segment], log_start_offset: i64, next_offset: i64) -> Result<LeaderEpochCache> {
    let (mut epochs, mut changed) = match leader_epoch::read(dir) {
        Ok(Some(epochs)) => (epochs, false),
        found => {
            if let Err(why) = &found {
                tracing::warn!(dir = %dir.display(), error = %why, "leader-epoch-checkpoint is damaged; rebuilding it from the log");
            }
            let mut epochs = LeaderEpochCache::default();
            for seg in segments {
                let mut position = 0;
                while let Some(h) = seg.header_at(position)? {
                    epochs.assign(h.partition_leader_epoch, h.base_offset);
                    position += h.size_bytes as u64;
                }
            }
            // A new partition has nothing to record; its first flush writes the file.
            (epochs, next_offset > 0 || found.is_err())
        }
    };
    changed |= epochs.truncate_from_end(next_offset);
    changed |= epochs.truncate_from_start(log_start_offset);
    if changed {
        leader_epoch::write(dir, &epochs.to_checkpoint())?;
    }
    Ok(epochs)
}
