//! The leader epoch cache of a partition and its `leader-epoch-checkpoint` file: for each
//! leader epoch that wrote to the log, the first offset it wrote. Replication asks it where a
//! follower's log diverges from the leader's (OffsetForLeaderEpoch), and consumers use it to
//! detect truncation.
//!
//! The file is Kafka's `LeaderEpochCheckpointFile`: a version line (0), a count line, then one
//! `epoch startOffset` line per entry, oldest first. It is written durably off the shard by the
//! flusher before the batches of a new epoch reach the segment file, so every batch on disk has
//! its epoch in the file; recovery then only cuts the entries past the recovered log end.
//! A missing (data from before leader epochs were kept) or damaged file is rebuilt from the
//! batch headers.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

use super::disk::sync_dir;

pub const LEADER_EPOCH_CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";

/// Kafka's `UNDEFINED_EPOCH` and `UNDEFINED_EPOCH_OFFSET`: the answer for an epoch the log
/// knows nothing about.
pub const UNDEFINED_EPOCH: i32 = -1;
pub const UNDEFINED_EPOCH_OFFSET: i64 = -1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

/// Epochs in increasing order, with increasing start offsets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderEpochCache {
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.epoch)
    }

    /// Records that `epoch` wrote from `start_offset` on; answers whether the cache changed.
    /// As Kafka's `LeaderEpochFileCache.assign`: an entry that would break the order (an
    /// epoch not above the latest, or a start offset not after it) replaces the entries it
    /// conflicts with. Batches without an epoch (-1: a producer's value never stamped by a
    /// broker) are not recorded.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 || start_offset < 0 {
            return false;
        }
        if let Some(latest) = self.entries.last() {
            if latest.epoch == epoch && latest.start_offset <= start_offset {
                return false;
            }
        }
        self.entries.retain(|e| e.epoch < epoch && e.start_offset < start_offset);
        self.entries.push(EpochEntry { epoch, start_offset });
        true
    }

    /// Kafka's `endOffsetFor`: the largest epoch at or below `requested` and the offset its
    /// reign ended at (the start of the next larger epoch, or `log_end_offset` for the latest
    /// one), or the undefined pair when the log has no such epoch.
    pub fn end_offset_for(&self, requested: i32, log_end_offset: i64) -> (i32, i64) {
        if requested == UNDEFINED_EPOCH {
            return (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
        }
        if self.latest_epoch() == Some(requested) {
            return (requested, log_end_offset);
        }
        let higher = self.entries.iter().position(|e| e.epoch > requested);
        match higher {
            None => (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET),
            // Older than every epoch still in the log: its data is gone, and a follower should
            // start from where the log's first known epoch starts.
            Some(0) => (requested, self.entries[0].start_offset),
            Some(i) => (self.entries[i - 1].epoch, self.entries[i].start_offset),
        }
    }

    /// The epoch of the batch holding `offset` (Kafka's `epochForOffset`), if the cache knows.
    pub fn epoch_for_offset(&self, offset: i64) -> Option<i32> {
        let after = self.entries.partition_point(|e| e.start_offset <= offset);
        after.checked_sub(1).map(|i| self.entries[i].epoch)
    }

    /// The log now starts at `start_offset` (retention, DeleteRecords): entries wholly below
    /// it go, and the epoch in force there starts there. Answers whether the cache changed.
    pub fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        let below = self.entries.iter().take_while(|e| e.start_offset <= start_offset).count();
        if below == 0 || (below == 1 && self.entries[0].start_offset == start_offset) {
            return false;
        }
        let floor = self.entries[below - 1];
        self.entries.drain(..below);
        self.entries.insert(0, EpochEntry { epoch: floor.epoch, start_offset });
        true
    }

    /// The log now ends at `end_offset` (truncation, a torn tail): epochs that start at or
    /// after it go. Answers whether the cache changed.
    pub fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.start_offset < end_offset);
        self.entries.len() != before
    }

    /// The checkpoint file's text.
    pub fn to_checkpoint(&self) -> String {
        let mut text = format!("0\n{}\n", self.entries.len());
        for e in &self.entries {
            text.push_str(&format!("{} {}\n", e.epoch, e.start_offset));
        }
        text
    }

    /// Parses a checkpoint file's text; Err says what is wrong with it.
    pub fn parse_checkpoint(text: &str) -> Result<LeaderEpochCache, String> {
        let mut lines = text.lines();
        match lines.next().map(str::trim) {
            Some("0") => {}
            Some(v) => return Err(format!("unknown version {v:?} (expected 0)")),
            None => return Err("the file is empty".into()),
        }
        let count: usize = lines.next().and_then(|l| l.trim().parse().ok()).ok_or("the second line is not an entry count")?;
        let mut cache = LeaderEpochCache::default();
        for i in 0..count {
            let line = lines.next().ok_or_else(|| format!("{count} entries announced, {i} found"))?;
            let mut fields = line.split_whitespace();
            let (Some(epoch), Some(offset), None) = (fields.next(), fields.next(), fields.next()) else {
                return Err(format!("entry {i} is not `epoch startOffset`: {line:?}"));
            };
            let (Ok(epoch), Ok(start_offset)) = (epoch.parse::<i32>(), offset.parse::<i64>()) else {
                return Err(format!("entry {i} is not two integers: {line:?}"));
            };
            let ordered = cache.entries.last().is_none_or(|last| last.epoch < epoch && last.start_offset < start_offset);
            if epoch < 0 || start_offset < 0 || !ordered {
                return Err(format!("entry {i} ({epoch} {start_offset}) is out of order or negative"));
            }
            cache.entries.push(EpochEntry { epoch, start_offset });
        }
        if lines.any(|l| !l.trim().is_empty()) {
            return Err(format!("more lines than the {count} entries announced"));
        }
        Ok(cache)
    }
}

/// The cache recorded in `dir`: Ok(None) when there is no file, Err when it cannot be used
/// (the reason, for the log line of a rebuild).
pub fn read(dir: &Path) -> Result<Option<LeaderEpochCache>, String> {
    match std::fs::read_to_string(dir.join(LEADER_EPOCH_CHECKPOINT_FILE)) {
        Ok(text) => LeaderEpochCache::parse_checkpoint(&text).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Writes `text` (see [`LeaderEpochCache::to_checkpoint`]) as `dir`'s checkpoint durably: a
/// temporary file, fsync, rename, fsync of the directory. Blocking: run it off the shard.
pub fn write(dir: &Path, text: &str) -> Result<()> {
    let path = dir.join(LEADER_EPOCH_CHECKPOINT_FILE);
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(text.as_bytes()).with_context(|| format!("writing {}", tmp.display()))?;
    f.sync_all().with_context(|| format!("syncing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> LeaderEpochCache {
        let mut c = LeaderEpochCache::default();
        for &(epoch, start) in entries {
            assert!(c.assign(epoch, start));
        }
        c
    }

    #[test]
    fn checkpoint_text_is_kafkas_and_round_trips() {
        let c = cache(&[(0, 0), (2, 10), (5, 42)]);
        assert_eq!(c.to_checkpoint(), "0\n3\n0 0\n2 10\n5 42\n");
        assert_eq!(LeaderEpochCache::parse_checkpoint(&c.to_checkpoint()).unwrap(), c);
        assert_eq!(LeaderEpochCache::default().to_checkpoint(), "0\n0\n");
        assert_eq!(LeaderEpochCache::parse_checkpoint("0\n0\n").unwrap(), LeaderEpochCache::default());
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()), Ok(None));
        write(dir.path(), &c.to_checkpoint()).unwrap();
        assert_eq!(read(dir.path()), Ok(Some(c)));
    }

    #[test]
    fn damaged_checkpoints_are_refused() {
        for bad in ["", "1\n0\n", "0\n2\n0 0\n", "0\n1\n0\n", "0\n1\nx 3\n", "0\n2\n3 10\n2 20\n", "0\n2\n1 10\n2 10\n", "0\n1\n0 0\n1 5\n", "0\n1\n-1 0\n"] {
            assert!(LeaderEpochCache::parse_checkpoint(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn assign_keeps_epochs_and_offsets_increasing() {
        let mut c = cache(&[(0, 0), (2, 10)]);
        assert!(!c.assign(2, 15), "the same epoch writing on is no change");
        assert!(!c.assign(-1, 20), "unstamped batches are not recorded");
        // A lower epoch (data written before the broker stamped epochs) replaces what it
        // conflicts with, as Kafka's cache does.
        assert!(c.assign(1, 20));
        assert_eq!(c.entries(), &[EpochEntry { epoch: 0, start_offset: 0 }, EpochEntry { epoch: 1, start_offset: 20 }]);
    }

    #[test]
    fn end_offsets_follow_kafka() {
        let c = cache(&[(1, 5), (3, 10), (6, 30)]);
        assert_eq!(c.end_offset_for(6, 50), (6, 50), "the latest epoch ends at the log end");
        assert_eq!(c.end_offset_for(3, 50), (3, 30));
        assert_eq!(c.end_offset_for(4, 50), (3, 30), "an epoch that never wrote: the largest below it");
        assert_eq!(c.end_offset_for(0, 50), (0, 5), "older than the log: where its first epoch starts");
        assert_eq!(c.end_offset_for(7, 50), (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET));
        assert_eq!(c.end_offset_for(UNDEFINED_EPOCH, 50), (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET));
        assert_eq!(LeaderEpochCache::default().end_offset_for(0, 0), (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET));
        assert_eq!(c.epoch_for_offset(4), None);
        assert_eq!(c.epoch_for_offset(5), Some(1));
        assert_eq!(c.epoch_for_offset(29), Some(3));
        assert_eq!(c.epoch_for_offset(1000), Some(6));
    }

    #[test]
    fn truncation_from_either_end() {
        let mut c = cache(&[(1, 5), (3, 10), (6, 30)]);
        assert!(!c.truncate_from_start(5));
        assert!(c.truncate_from_start(12));
        assert_eq!(c.entries(), &[EpochEntry { epoch: 3, start_offset: 12 }, EpochEntry { epoch: 6, start_offset: 30 }]);
        assert!(!c.truncate_from_end(31));
        assert!(c.truncate_from_end(30));
        assert_eq!(c.entries(), &[EpochEntry { epoch: 3, start_offset: 12 }]);
        assert!(c.truncate_from_end(0));
        assert!(c.entries().is_empty());
    }
}
