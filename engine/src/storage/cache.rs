//! The batch cache: the most recent batches of a partition, in memory, for tail reads.
//!
//! It always holds every batch that has not reached the segment file yet, so a read of the tail
//! never touches the disk; older batches are dropped from the front once the cache is over its
//! byte budget and they are durable. Its bytes are counted as what its batches keep alive
//! ([`BatchBytes::held`]): a batch kept in its request's buffer counts that whole buffer.

use std::collections::VecDeque;

use super::batch_bytes::BatchBytes;

#[derive(Debug, Clone)]
pub struct CachedBatch {
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
    pub bytes: BatchBytes,
}

#[derive(Default)]
pub struct BatchCache {
    batches: VecDeque<CachedBatch>,
    /// What the batches keep alive.
    bytes: usize,
}

impl BatchCache {
    pub fn push(&mut self, batch: CachedBatch) {
        if let Some(last) = self.batches.back() {
            assert!(batch.base_offset > last.last_offset, "cache batches must be in offset order");
        }
        self.bytes += batch.bytes.held();
        self.batches.push_back(batch);
    }

    /// Drops batches from the front while over `bytes_max`, but never a batch at or above
    /// `keep_from_offset` (not durable yet).
    pub fn evict(&mut self, bytes_max: usize, keep_from_offset: i64) {
        while self.bytes > bytes_max {
            match self.batches.front() {
                Some(front) if front.last_offset < keep_from_offset => {
                    self.bytes -= front.bytes.held();
                    self.batches.pop_front();
                }
                _ => break,
            }
        }
    }

    /// Drops the batches that end below `offset` (deleted or compacted: the segment files hold
    /// what reads should see). The caller makes sure they are durable.
    pub fn drop_below(&mut self, offset: i64) {
        while let Some(front) = self.batches.front() {
            if front.last_offset >= offset {
                break;
            }
            self.bytes -= front.bytes.held();
            self.batches.pop_front();
        }
    }

    pub fn first_offset(&self) -> Option<i64> {
        self.batches.front().map(|b| b.base_offset)
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Batches from the one holding `offset`, until adding one more would pass `max_bytes`
    /// (the first is always included, as Kafka does, so a large batch still makes progress),
    /// each with the number of offsets it spans.
    pub fn read(&self, offset: i64, max_bytes: usize) -> Vec<(BatchBytes, u64)> {
        self.read_until(offset, max_bytes, i64::MAX).into_iter().map(|(bytes, records, _)| (bytes, records)).collect()
    }

    /// As `read`, but only batches that start below `end_offset`; each with its last offset.
    pub fn read_until(&self, offset: i64, max_bytes: usize, end_offset: i64) -> Vec<(BatchBytes, u64, i64)> {
        let start = self.batches.partition_point(|b| b.last_offset < offset);
        let mut out = Vec::new();
        let mut total = 0;
        for batch in self.batches.range(start..) {
            if batch.base_offset >= end_offset || (!out.is_empty() && total + batch.bytes.len() > max_bytes) {
                break;
            }
            total += batch.bytes.len();
            out.push((batch.bytes.clone(), (batch.last_offset - batch.base_offset + 1) as u64, batch.last_offset));
        }
        out
    }

    /// The first cached batch whose max timestamp is at or after `timestamp`.
    pub fn find_timestamp(&self, timestamp: i64, from_offset: i64) -> Option<&CachedBatch> {
        self.batches.iter().find(|b| b.last_offset >= from_offset && b.max_timestamp >= timestamp)
    }

    pub fn clear(&mut self) {
        self.batches.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(base: i64, last: i64, len: usize) -> CachedBatch {
        CachedBatch { base_offset: base, last_offset: last, max_timestamp: base, bytes: BatchBytes::whole(bytes::Bytes::from(vec![0u8; len])) }
    }

    #[test]
    fn reads_from_the_batch_holding_the_offset_within_the_limit() {
        let mut cache = BatchCache::default();
        cache.push(batch(0, 4, 100));
        cache.push(batch(5, 9, 100));
        cache.push(batch(10, 10, 100));
        assert_eq!(cache.read(7, 150).len(), 1);
        assert_eq!(cache.read(7, 150)[0].1, 5, "offsets 5..=9");
        assert_eq!(cache.read(7, 200).len(), 2);
        assert_eq!(cache.read(0, 1).len(), 1, "first batch always included");
        assert!(cache.read(11, 1000).is_empty());
    }

    #[test]
    fn a_batch_kept_in_its_request_counts_the_request_it_keeps_alive() {
        let mut cache = BatchCache::default();
        let request = bytes::Bytes::from(shardlog_protocol::batch::build_batch(0, 1, &[(None, Some(&[7u8; 300][..]))]));
        let len = request.len();
        cache.push(CachedBatch { base_offset: 0, last_offset: 0, max_timestamp: 1, bytes: BatchBytes::in_place(request, 4 * len, 0, 0) });
        cache.push(batch(1, 1, 100));
        assert_eq!(cache.bytes(), 4 * len + 100);
        assert_eq!(cache.read(0, usize::MAX)[0].0.len(), len, "reads size batches by their own bytes");
        cache.evict(4 * len, 2);
        assert_eq!(cache.first_offset(), Some(1), "over the limit by what it holds alive, not by its size");
        assert_eq!(cache.bytes(), 100);
    }

    #[test]
    fn eviction_keeps_what_is_not_durable() {
        let mut cache = BatchCache::default();
        cache.push(batch(0, 4, 100));
        cache.push(batch(5, 9, 100));
        cache.evict(0, 5);
        assert_eq!(cache.first_offset(), Some(5));
        assert_eq!(cache.bytes(), 100);
    }
}
