//! Idempotent-producer state of one partition: for each producer id, its epoch and the last
//! five batches it wrote (Kafka keeps five, matching `max.in.flight.requests.per.connection`).
//!
//! A retried batch (same producer, epoch and sequence range as one of those five) is not
//! appended again: the producer gets the original offsets back. A sequence gap or an older
//! epoch is refused with a `ProducerError` that says which; the layer that answers the client
//! turns it into a protocol error code.
//!
//! The state survives restarts: a snapshot is written next to each segment when it is sealed
//! (and at clean shutdown), and recovery replays the batches after the newest snapshot.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use shardlog_protocol::batch::BatchHeader;

/// Batches remembered per producer for duplicate detection.
pub const BATCHES_RETAINED: usize = 5;
/// Producers remembered per partition; the least recently active are forgotten beyond this.
pub const PRODUCERS_MAX: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRecord {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub first_offset: i64,
    pub last_offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerEntry {
    pub epoch: i16,
    pub batches: VecDeque<BatchRecord>,
    pub last_timestamp_ms: i64,
    /// The first offset of this producer's open transaction in this partition: the last
    /// stable offset cannot pass it until a commit or abort marker closes the transaction.
    #[serde(default)]
    pub current_txn_first_offset: Option<i64>,
    /// The coordinator epoch of the last marker written for this producer.
    #[serde(default = "no_coordinator_epoch")]
    pub coordinator_epoch: i32,
}

fn no_coordinator_epoch() -> i32 {
    -1
}

/// A transaction that ended with an abort marker: read_committed consumers skip the
/// producer's batches in `first_offset..=last_offset` (the marker's offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
    pub last_stable_offset: i64,
}

/// What a transaction marker did to a producer's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarkerOutcome {
    /// The first offset of the transaction it closed, if one was open.
    pub closed_txn_first_offset: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Not an idempotent batch, or the next in sequence: append it.
    Append,
    /// A retry of a batch already in the log, at these offsets.
    Duplicate(BatchRecord),
    Reject(ProducerError),
}

/// Why a producer's batch, or a transaction marker for it, is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProducerError {
    /// The batch's epoch is older than the producer's current one: a newer instance of the
    /// producer (or the transaction coordinator) fenced it.
    #[error("producer {producer_id} epoch {epoch} is older than the current epoch {current_epoch}")]
    FencedEpoch { producer_id: i64, epoch: i16, current_epoch: i16 },
    /// A commit or abort marker written with an epoch older than the producer's current one.
    #[error("marker for producer {producer_id} has epoch {epoch}, older than the current {current_epoch}")]
    FencedMarker { producer_id: i64, epoch: i16, current_epoch: i16 },
    /// A new epoch's first batch must start its sequences again at 0.
    #[error("producer {producer_id} starts epoch {epoch} at sequence {sequence}, not 0")]
    NewEpochNotAtZero { producer_id: i64, epoch: i16, sequence: i32 },
    /// The batch does not follow the last one the partition holds from the producer (a gap, or
    /// a retry of a batch no longer remembered).
    #[error("producer {producer_id} sent sequence {sequence}, expected {expected}")]
    OutOfOrderSequence { producer_id: i64, sequence: i32, expected: i32 },
    /// Within one request, a batch that does not follow the producer's previous batch in it
    /// (by sequence, or by epoch).
    #[error("producer {producer_id} batch {batch_index} has sequence {sequence}, expected {expected}")]
    OutOfOrderInRequest { producer_id: i64, batch_index: usize, sequence: i32, expected: i32 },
    /// A retry of one batch of a request that carried several: only a retried request of a
    /// single batch is answered with the original offsets.
    #[error("producer {producer_id} resent one batch of a multi-batch request")]
    DuplicateInMultiBatchRequest { producer_id: i64 },
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerState {
    producers: HashMap<i64, ProducerEntry>,
}

fn last_sequence(header: &BatchHeader) -> i32 {
    // Sequences wrap at i32::MAX, as in Kafka's DefaultRecordBatch.
    let next = header.base_sequence as i64 + header.last_offset_delta as i64;
    if next > i32::MAX as i64 {
        (next - i32::MAX as i64 - 1) as i32
    } else {
        next as i32
    }
}

fn next_sequence(sequence: i32) -> i32 {
    if sequence == i32::MAX {
        0
    } else {
        sequence + 1
    }
}

impl ProducerState {
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    pub fn entry(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Checks a batch before it is appended. Batches without a producer id pass.
    pub fn check(&self, header: &BatchHeader) -> SequenceCheck {
        if header.producer_id < 0 {
            return SequenceCheck::Append;
        }
        let Some(entry) = self.producers.get(&header.producer_id) else {
            return SequenceCheck::Append;
        };
        if header.producer_epoch < entry.epoch {
            return SequenceCheck::Reject(ProducerError::FencedEpoch {
                producer_id: header.producer_id,
                epoch: header.producer_epoch,
                current_epoch: entry.epoch,
            });
        }
        if header.producer_epoch > entry.epoch {
            // A new epoch starts its sequences again at 0.
            if header.base_sequence != 0 {
                return SequenceCheck::Reject(ProducerError::NewEpochNotAtZero {
                    producer_id: header.producer_id,
                    epoch: header.producer_epoch,
                    sequence: header.base_sequence,
                });
            }
            return SequenceCheck::Append;
        }
        let last = last_sequence(header);
        if let Some(b) = entry.batches.iter().find(|b| b.first_sequence == header.base_sequence && b.last_sequence == last) {
            return SequenceCheck::Duplicate(*b);
        }
        let expected = entry.batches.back().map(|b| next_sequence(b.last_sequence)).unwrap_or(0);
        if header.base_sequence != expected {
            return SequenceCheck::Reject(ProducerError::OutOfOrderSequence { producer_id: header.producer_id, sequence: header.base_sequence, expected });
        }
        SequenceCheck::Append
    }

    /// Records a batch that was appended (with its assigned offsets), or replayed in recovery.
    pub fn record(&mut self, header: &BatchHeader) {
        if header.producer_id < 0 {
            return;
        }
        let entry = self.entry_or_new(header.producer_id, header.producer_epoch);
        if header.producer_epoch != entry.epoch {
            entry.epoch = header.producer_epoch;
            entry.batches.clear();
        }
        entry.last_timestamp_ms = entry.last_timestamp_ms.max(header.max_timestamp);
        if header.is_transactional() && entry.current_txn_first_offset.is_none() && !header.is_control() {
            entry.current_txn_first_offset = Some(header.base_offset);
        }
        if header.base_sequence < 0 {
            // Markers and the coordinator's own transactional writes carry no sequence.
            return;
        }
        entry.batches.push_back(BatchRecord {
            first_sequence: header.base_sequence,
            last_sequence: last_sequence(header),
            first_offset: header.base_offset,
            last_offset: header.last_offset(),
        });
        while entry.batches.len() > BATCHES_RETAINED {
            entry.batches.pop_front();
        }
    }

    /// Checks a transaction marker before it is appended: a marker from an older epoch than
    /// the producer's is refused (the coordinator fenced that epoch already).
    pub fn check_marker(&self, producer_id: i64, epoch: i16) -> Result<(), ProducerError> {
        match self.producers.get(&producer_id) {
            Some(entry) if epoch < entry.epoch => Err(ProducerError::FencedMarker { producer_id, epoch, current_epoch: entry.epoch }),
            _ => Ok(()),
        }
    }

    /// Records a transaction marker (a control batch at `header.base_offset`): it closes the
    /// producer's open transaction, and a newer epoch fences the older one's writes.
    pub fn record_marker(&mut self, header: &BatchHeader, coordinator_epoch: i32) -> MarkerOutcome {
        let entry = self.entry_or_new(header.producer_id, header.producer_epoch);
        if header.producer_epoch > entry.epoch {
            entry.epoch = header.producer_epoch;
            entry.batches.clear();
        }
        entry.coordinator_epoch = coordinator_epoch;
        entry.last_timestamp_ms = entry.last_timestamp_ms.max(header.max_timestamp);
        MarkerOutcome { closed_txn_first_offset: entry.current_txn_first_offset.take() }
    }

    /// Every open transaction: (first offset, producer id).
    pub fn open_transactions(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.producers.iter().filter_map(|(id, e)| e.current_txn_first_offset.map(|first| (first, *id)))
    }

    pub fn iter(&self) -> impl Iterator<Item = (i64, &ProducerEntry)> + '_ {
        self.producers.iter().map(|(id, e)| (*id, e))
    }

    /// The producer's entry, created at `epoch` if it is new (forgetting the least recently
    /// active producer beyond PRODUCERS_MAX).
    fn entry_or_new(&mut self, producer_id: i64, epoch: i16) -> &mut ProducerEntry {
        if !self.producers.contains_key(&producer_id) && self.producers.len() >= PRODUCERS_MAX {
            self.forget_oldest();
        }
        self.producers.entry(producer_id).or_insert(ProducerEntry {
            epoch,
            batches: VecDeque::new(),
            last_timestamp_ms: -1,
            current_txn_first_offset: None,
            coordinator_epoch: -1,
        })
    }

    fn forget_oldest(&mut self) {
        // A producer with an open transaction is kept: forgetting it would lose the LSO bound.
        if let Some((&id, _)) = self.producers.iter().filter(|(_, e)| e.current_txn_first_offset.is_none()).min_by_key(|(_, e)| e.last_timestamp_ms) {
            self.producers.remove(&id);
        }
    }

    pub fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
        dir.join(format!("{offset:020}.producers"))
    }

    /// Writes the state as of `offset` (every batch below it is included).
    pub fn write_snapshot(&self, dir: &Path, offset: i64) -> Result<()> {
        use std::io::Write;
        let path = Self::snapshot_path(dir, offset);
        let tmp = path.with_extension("producers.tmp");
        let mut f = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(&serde_json::to_vec(self)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        Ok(())
    }

    /// The newest snapshot at or below `offset_max`, with its offset.
    pub fn load_latest_snapshot(dir: &Path, offset_max: i64) -> Option<(i64, ProducerState)> {
        let mut offsets: Vec<i64> = std::fs::read_dir(dir)
            .ok()?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".producers")).and_then(|s| s.parse::<i64>().ok()))
            .filter(|o| *o <= offset_max)
            .collect();
        offsets.sort_unstable();
        while let Some(offset) = offsets.pop() {
            let bytes = std::fs::read(Self::snapshot_path(dir, offset)).ok()?;
            match serde_json::from_slice(&bytes) {
                Ok(state) => return Some((offset, state)),
                Err(e) => tracing::warn!(dir = %dir.display(), offset, error = %e, "damaged producer-state snapshot ignored"),
            }
        }
        None
    }

    /// Removes snapshots other than the newest `keep`.
    pub fn prune_snapshots(dir: &Path, keep: usize) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        let mut offsets: Vec<i64> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".producers")).and_then(|s| s.parse::<i64>().ok()))
            .collect();
        offsets.sort_unstable();
        let remove = offsets.len().saturating_sub(keep);
        for offset in &offsets[..remove] {
            let _ = std::fs::remove_file(Self::snapshot_path(dir, *offset));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(producer_id: i64, epoch: i16, base_sequence: i32, records: i32, base_offset: i64) -> BatchHeader {
        BatchHeader {
            base_offset,
            size_bytes: 100,
            partition_leader_epoch: 0,
            attributes: 0,
            last_offset_delta: records - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id,
            producer_epoch: epoch,
            base_sequence,
            records_count: records,
        }
    }

    #[test]
    fn sequences_dedupe_and_gaps() {
        let mut s = ProducerState::default();
        let first = header(7, 0, 0, 3, 100);
        assert_eq!(s.check(&first), SequenceCheck::Append);
        s.record(&first);
        let next = header(7, 0, 3, 2, 103);
        assert_eq!(s.check(&next), SequenceCheck::Append);
        s.record(&next);
        // A retry of the first batch gets its original offsets.
        match s.check(&header(7, 0, 0, 3, -1)) {
            SequenceCheck::Duplicate(b) => assert_eq!((b.first_offset, b.last_offset), (100, 102)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(s.check(&header(7, 0, 9, 1, -1)), SequenceCheck::Reject(ProducerError::OutOfOrderSequence { sequence: 9, expected: 5, .. })));
        assert!(matches!(s.check(&header(7, -1, 5, 1, -1)), SequenceCheck::Reject(ProducerError::FencedEpoch { epoch: -1, current_epoch: 0, .. })));
        assert_eq!(s.check(&header(7, 1, 0, 1, -1)), SequenceCheck::Append, "a new epoch restarts at 0");
        assert!(matches!(s.check(&header(7, 1, 4, 1, -1)), SequenceCheck::Reject(ProducerError::NewEpochNotAtZero { epoch: 1, sequence: 4, .. })));
        assert_eq!(s.check(&header(-1, -1, -1, 1, -1)), SequenceCheck::Append, "non-idempotent batches pass");
    }

    #[test]
    fn keeps_five_batches_and_wraps_sequences() {
        let mut s = ProducerState::default();
        for i in 0..8 {
            s.record(&header(1, 0, i, 1, i as i64));
        }
        assert_eq!(s.entry(1).unwrap().batches.len(), BATCHES_RETAINED);
        assert_eq!(s.check(&header(1, 0, 0, 1, -1)), SequenceCheck::Reject(ProducerError::OutOfOrderSequence { producer_id: 1, sequence: 0, expected: 8 }));
        assert_eq!(ProducerError::OutOfOrderSequence { producer_id: 1, sequence: 0, expected: 8 }.to_string(), "producer 1 sent sequence 0, expected 8");
        let mut w = ProducerState::default();
        w.record(&header(2, 0, i32::MAX - 1, 2, 0));
        assert_eq!(w.check(&header(2, 0, 0, 1, -1)), SequenceCheck::Append, "sequence wraps to 0 after i32::MAX");
    }

    #[test]
    fn snapshots_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = ProducerState::default();
        s.record(&header(3, 2, 0, 4, 10));
        s.write_snapshot(dir.path(), 14).unwrap();
        s.record(&header(3, 2, 4, 1, 14));
        s.write_snapshot(dir.path(), 15).unwrap();
        let (offset, loaded) = ProducerState::load_latest_snapshot(dir.path(), 14).unwrap();
        assert_eq!(offset, 14);
        assert_eq!(loaded.entry(3).unwrap().batches.len(), 1);
        ProducerState::prune_snapshots(dir.path(), 1);
        assert!(ProducerState::load_latest_snapshot(dir.path(), 14).is_none());
        assert_eq!(ProducerState::load_latest_snapshot(dir.path(), 100).unwrap().0, 15);
    }
}
