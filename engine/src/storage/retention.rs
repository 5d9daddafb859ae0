//! Retention: which whole segments may go, moving the log start offset, and persisting it.
//!
//! A segment is deleted, oldest first, when it lies wholly below the log start offset
//! (DeleteRecords), when its newest record is older than `retention.ms`, or while the log
//! without it is still at least `retention.bytes` (the last two only with `cleanup.policy`
//! `delete`), as Kafka does. The active segment is never deleted, nor one whose bytes the
//! flusher may still be writing.
//!
//! Deleting is safe for readers: a fetch that is answered from a segment holds the file open
//! (`ReadPiece::File` keeps an `Arc<File>`), and an unlinked file stays readable until its last
//! descriptor closes; the batch cache holds its own copies.
//!
//! The log start offset is kept in `log-start-offset-checkpoint` in the partition's directory,
//! in Kafka's checkpoint format (version, entry count, `topic partition offset`). Kafka keeps one
//! such file per log directory; here each partition's owner shard writes its own, so shards
//! never coordinate over a shared file.

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::log::{LogConfig, PartitionLog};
use super::segment;

pub const LOG_START_OFFSET_CHECKPOINT_FILE: &str = "log-start-offset-checkpoint";

#[derive(Debug, PartialEq, Eq)]
pub enum DeleteRecordsError {
    /// The offset is past the high watermark (or negative other than -1).
    OffsetOutOfRange {
        high_watermark: i64,
    },
    Offline(String),
}

impl PartitionLog {
    /// Takes new settings (AlterConfigs): they apply from the next append or retention pass.
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// How many of the oldest segments retention may delete now, at most `max`.
    pub fn expired_segments(&self, now_ms: u64, max: usize) -> usize {
        let c = &self.config;
        let mut size = self.size_bytes() as i64;
        let mut count = 0;
        // Never the active segment; and only segments that a later, durable segment follows,
        // so the flusher is done with them (it seals a segment when it opens the next).
        for seg in self.segments.iter().take(self.segments.len().saturating_sub(1)) {
            if count >= max || seg.next_offset >= self.durable_offset {
                break;
            }
            let below_start = seg.next_offset <= self.log_start_offset;
            let newest_ms = if seg.max_timestamp >= 0 { seg.max_timestamp } else { seg.created_ms as i64 };
            let by_time = c.cleanup_delete && c.retention_ms >= 0 && (now_ms as i64).saturating_sub(newest_ms) > c.retention_ms;
            let by_size = c.cleanup_delete && c.retention_bytes >= 0 && size - seg.size_bytes as i64 >= c.retention_bytes;
            if !(below_start || by_time || by_size) {
                break;
            }
            size -= seg.size_bytes as i64;
            count += 1;
        }
        count
    }

    /// Drops the `count` oldest segments from the log (not yet from the disk) and raises the log
    /// start offset to the first one left. Returns the files to delete.
    pub fn remove_oldest_segments(&mut self, count: usize) -> Vec<PathBuf> {
        assert!(count < self.segments.len() || count == 0, "the active segment is never removed");
        let mut files = Vec::with_capacity(count * 3);
        for seg in self.segments.drain(..count) {
            files.push(segment::log_path(&self.dir, seg.base_offset));
            files.push(segment::index_path(&self.dir, seg.base_offset));
            files.push(segment::time_index_path(&self.dir, seg.base_offset));
        }
        if let Some(first) = self.segments.first() {
            self.log_start_offset = self.log_start_offset.max(first.base_offset);
        }
        self.forget_aborted_txns_below(self.log_start_offset);
        self.epochs_truncated_from_start();
        // Durable (the removed segments were), and below the log start: no read wants them.
        self.cache.drop_below(self.log_start_offset);
        files
    }

    /// DeleteRecords: moves the log start offset up to `offset` (-1: the high watermark) and
    /// returns the new log start offset. It never moves down.
    pub fn delete_records(&mut self, offset: i64) -> Result<i64, DeleteRecordsError> {
        if let Some(why) = self.failed() {
            return Err(DeleteRecordsError::Offline(why.to_string()));
        }
        let high_watermark = self.high_watermark();
        let offset = if offset == -1 { high_watermark } else { offset };
        if offset < 0 || offset > high_watermark {
            return Err(DeleteRecordsError::OffsetOutOfRange { high_watermark });
        }
        self.log_start_offset = self.log_start_offset.max(offset);
        self.epochs_truncated_from_start();
        Ok(self.log_start_offset)
    }
}

/// The log start offset recorded for the partition in `dir`, if any.
pub fn read_log_start_checkpoint(dir: &Path) -> Option<i64> {
    super::checkpoint::read(dir, LOG_START_OFFSET_CHECKPOINT_FILE)
}

/// Writes the log start offset checkpoint durably (blocking).
pub fn write_log_start_checkpoint(dir: &Path, topic: &str, partition: i32, offset: i64) -> Result<()> {
    super::checkpoint::write(dir, LOG_START_OFFSET_CHECKPOINT_FILE, topic, partition, offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_log_start_checkpoint(dir.path()), None);
        write_log_start_checkpoint(dir.path(), "orders", 3, 1234).unwrap();
        assert_eq!(read_log_start_checkpoint(dir.path()), Some(1234));
        let text = std::fs::read_to_string(dir.path().join(LOG_START_OFFSET_CHECKPOINT_FILE)).unwrap();
        assert_eq!(text, "0\n1\norders 3 1234\n");
    }

    fn batch_of(first_value: usize, count: usize) -> bytes::BytesMut {
        let values: Vec<Vec<u8>> = (first_value..first_value + count).map(|i| format!("value-{i:08}").into_bytes()).collect();
        let records: Vec<shardlog_protocol::batch::KeyValue> = values.iter().map(|v| (Some(&b"key"[..]), Some(&v[..]))).collect();
        bytes::BytesMut::from(&shardlog_protocol::batch::build_batch(0, 1_000 + first_value as i64, &records)[..])
    }

    /// Retention by size, bounded per pass; a reader that holds a deleted segment still reads
    /// it; DeleteRecords moves the start and refuses offsets past the high watermark.
    #[test]
    fn segments_go_whole_and_readers_keep_theirs() {
        use std::os::unix::fs::FileExt;

        use crate::storage::log::{now_ms, Partition, ReadError, ReadPiece};

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        crate::runtime::Executor::new(crate::runtime::Placement::Unbound)
            .spawn(move || async move {
                // Every batch gets a segment of its own, and nothing stays cached after a flush.
                let config = LogConfig { segment_bytes: 100, cache_bytes: 0, retention_ms: -1, retention_bytes: -1, ..LogConfig::default() };
                let p = Partition::new("t".into(), 0, PartitionLog::open(&path, config.clone()).unwrap());
                p.start_flusher();
                let mut last = 0;
                for i in 0..8 {
                    last = p.append(batch_of(i * 5, 5), now_ms()).unwrap().last_offset;
                }
                p.wait_durable(last).await.unwrap();
                // Once the last segment is durable the one before it is sealed too.
                let segments = p.log.borrow().segment_count();
                assert_eq!(segments, 8);
                assert_eq!(p.log.borrow().expired_segments(now_ms(), 64), 0, "retention -1 keeps everything");

                let held = p.log.borrow().read(0, 1 << 20).unwrap();
                let Some(ReadPiece::File { file, position, len }) = held.pieces.first().cloned() else { panic!("expected a file read: {held:?}") };

                // Every sealed segment breaks retention.bytes=0, but one pass takes at most 3.
                p.log.borrow_mut().set_config(LogConfig { retention_bytes: 0, ..config.clone() });
                assert_eq!(p.log.borrow().expired_segments(now_ms(), 3), 3);
                assert_eq!(p.log.borrow().expired_segments(now_ms(), 64), 7, "never the active segment");
                let files = p.log.borrow_mut().remove_oldest_segments(3);
                assert_eq!(files.len(), 9);
                for f in &files {
                    std::fs::remove_file(f).unwrap();
                }
                assert_eq!(p.log.borrow().log_start_offset(), 15);
                assert!(matches!(p.log.borrow().read(0, 1 << 20), Err(ReadError::OffsetOutOfRange { .. })));

                // The reader's descriptor still reads the deleted segment's batch.
                let mut bytes = vec![0u8; len];
                file.read_exact_at(&mut bytes, position).unwrap();
                let headers = shardlog_protocol::batch::parse_all(&bytes, true).unwrap();
                assert_eq!(headers[0].base_offset, 0);

                // DeleteRecords: past the high watermark is refused; -1 means the high watermark.
                let end = p.log.borrow().high_watermark();
                assert_eq!(p.log.borrow_mut().delete_records(end + 1), Err(DeleteRecordsError::OffsetOutOfRange { high_watermark: end }));
                assert_eq!(p.log.borrow_mut().delete_records(22), Ok(22));
                assert_eq!(p.log.borrow_mut().delete_records(3), Ok(22), "the log start never moves down");
                assert_eq!(p.log.borrow_mut().delete_records(-1), Ok(end));
                p.close(true).await.unwrap();
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
