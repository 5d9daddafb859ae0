//! The batch cache: the most recent batches of each partition, in memory, for tail reads and
//! for reading back what was just written.
//!
//! A partition's cache always holds every batch that has not reached the segment file yet, so a
//! read of the tail never touches the disk. Durable batches stay until one of two byte budgets
//! is passed: the partition's own (`shardlog.cache.partition.bytes`, off by default) and the
//! shard's, which all of its partitions share (`shardlog.cache.shard.bytes`, [`ShardCache`]).
//! Over the shard's budget the batch cached longest ago goes first, whichever partition holds
//! it, as Redpanda's batch cache does: the memory follows the partitions being written, and data
//! written with O_DIRECT (never in the page cache) can be read back from memory as Kafka's page
//! cache serves it. The shard counts what its batches keep alive: a request buffer that batches
//! are kept in, once while any of them is cached ([`BatchBytes::enter`]). A partition's own
//! budget counts its batches' own bytes.
//!
//! Batches not yet durable are never dropped, so the shard's cache can pass its budget by at
//! most what is not durable, which the dirty budget bounds (`shardlog.dirty.shard.bytes`).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::rc::{Rc, Weak};

use super::batch_bytes::{BatchBytes, Budget};

#[derive(Debug, Clone)]
pub struct CachedBatch {
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
    pub bytes: BatchBytes,
}

/// A cache in [`ShardCache::oldest`]: the shard's number of its oldest batch, then its id.
type CacheKey = (u64, u64);

/// The batch caches of one shard's partitions, together: their byte budget, and which cache
/// holds the shard's oldest batch.
pub struct ShardCache {
    /// The budget, in bytes; `usize::MAX` is none.
    bytes_max: usize,
    bytes: Cell<usize>,
    /// Numbers batches in the order they were cached, across the shard's partitions.
    next_seq: Cell<u64>,
    next_cache_id: Cell<u64>,
    /// Every cache whose oldest batch is durable (so may go), by (the number of that batch,
    /// the cache's id): the first holds the droppable batch the shard cached longest ago. A
    /// cache whose oldest batch is not durable yet is left out, so eviction never has to pass
    /// over one (a partition stuck on a full disk could be many).
    oldest: RefCell<BTreeMap<CacheKey, Weak<RefCell<Batches>>>>,
    /// Batches dropped to stay within the budget, for the metrics.
    evicted_batches: Cell<u64>,
}

impl ShardCache {
    pub fn new(bytes_max: usize) -> Rc<ShardCache> {
        Rc::new(ShardCache {
            bytes_max,
            bytes: Cell::new(0),
            next_seq: Cell::new(0),
            next_cache_id: Cell::new(0),
            oldest: RefCell::new(BTreeMap::new()),
            evicted_batches: Cell::new(0),
        })
    }

    /// No shard budget: for unit tests and benches that own a lone partition.
    pub fn unbounded() -> Rc<ShardCache> {
        ShardCache::new(usize::MAX)
    }

    pub fn bytes_max(&self) -> usize {
        self.bytes_max
    }

    /// What the shard's cached batches keep alive.
    pub fn bytes(&self) -> usize {
        self.bytes.get()
    }

    pub fn evicted_batches(&self) -> u64 {
        self.evicted_batches.get()
    }

    /// Drops durable batches, the oldest first across the shard, until within the budget or
    /// nothing more may go. Never called while a cache of this shard is borrowed (a cache calls
    /// it once its own borrow has ended); a cache found borrowed anyway is left for next time.
    fn evict_over_budget(&self) {
        while self.bytes.get() > self.bytes_max {
            let Some((key, cache)) = self.oldest.borrow().first_key_value().map(|(key, cache)| (*key, cache.clone())) else { break };
            let Some(cache) = cache.upgrade() else {
                self.oldest.borrow_mut().remove(&key);
                continue;
            };
            let Ok(mut batches) = cache.try_borrow_mut() else { break };
            if batches.list.front().is_some_and(|front| front.batch.last_offset < batches.durable_end) {
                self.bytes.set(self.bytes.get() - batches.pop_front());
                self.evicted_batches.set(self.evicted_batches.get() + 1);
            }
            self.register(&cache, &mut batches, key.1);
        }
    }

    /// Keeps `oldest` true for one cache after its batches or its durable end changed.
    fn register(&self, cache: &Rc<RefCell<Batches>>, batches: &mut Batches, id: u64) {
        let durable_end = batches.durable_end;
        let key = batches.list.front().filter(|front| front.batch.last_offset < durable_end).map(|front| (front.seq, id));
        if key == batches.key {
            return;
        }
        let mut oldest = self.oldest.borrow_mut();
        if let Some(old) = batches.key.take() {
            oldest.remove(&old);
        }
        if let Some(new) = key {
            oldest.insert(new, Rc::downgrade(cache));
        }
        batches.key = key;
    }
}

struct Entry {
    /// The shard's number of this batch (`ShardCache::next_seq`).
    seq: u64,
    batch: CachedBatch,
}

struct Batches {
    list: VecDeque<Entry>,
    /// The batches' own bytes (what the partition's own budget counts).
    bytes: usize,
    /// Batches that end below this offset are durable: they may be dropped.
    durable_end: i64,
    /// Where this cache is in `ShardCache::oldest`, if it is.
    key: Option<CacheKey>,
}

impl Batches {
    /// Drops the oldest batch, if any: what the shard's count gets back.
    fn pop_front(&mut self) -> usize {
        let Some(front) = self.list.pop_front() else { return 0 };
        self.bytes -= front.batch.bytes.len();
        front.batch.bytes.leave(Budget::Cache)
    }
}

/// One partition's batches, in offset order, counted against its shard's [`ShardCache`].
pub struct BatchCache {
    id: u64,
    batches: Rc<RefCell<Batches>>,
    shard: Rc<ShardCache>,
}

impl Default for BatchCache {
    /// A cache of its own, with no shard budget: for a log not yet given its shard's.
    fn default() -> Self {
        BatchCache::new(ShardCache::unbounded())
    }
}

impl Drop for BatchCache {
    fn drop(&mut self) {
        self.clear();
    }
}

impl BatchCache {
    pub fn new(shard: Rc<ShardCache>) -> BatchCache {
        let id = shard.next_cache_id.get();
        shard.next_cache_id.set(id + 1);
        let batches = Batches { list: VecDeque::new(), bytes: 0, durable_end: i64::MIN, key: None };
        BatchCache { id, batches: Rc::new(RefCell::new(batches)), shard }
    }

    /// Counts this cache against `shard`'s budget from now on (a log given its shard's once
    /// opened). Called while the cache is empty.
    pub fn set_shard(&mut self, shard: Rc<ShardCache>) {
        assert!(self.batches.borrow().list.is_empty(), "the shard's cache budget is set before anything is cached");
        *self = BatchCache::new(shard);
    }

    pub fn shard(&self) -> &Rc<ShardCache> {
        &self.shard
    }

    pub fn push(&mut self, batch: CachedBatch) {
        {
            let mut batches = self.batches.borrow_mut();
            if let Some(last) = batches.list.back() {
                assert!(batch.base_offset > last.batch.last_offset, "cache batches must be in offset order");
            }
            let seq = self.shard.next_seq.get();
            self.shard.next_seq.set(seq + 1);
            batches.bytes += batch.bytes.len();
            self.shard.bytes.set(self.shard.bytes.get() + batch.bytes.enter(Budget::Cache));
            batches.list.push_back(Entry { seq, batch });
            self.shard.register(&self.batches, &mut batches, self.id);
        }
        self.shard.evict_over_budget();
    }

    /// Everything below `keep_from_offset` is durable. Drops batches from the front while over
    /// `bytes_max` (the partition's own budget), then the shard's oldest while the shard is
    /// over its budget, but never a batch at or above `keep_from_offset`.
    pub fn evict(&mut self, bytes_max: usize, keep_from_offset: i64) {
        {
            let mut batches = self.batches.borrow_mut();
            batches.durable_end = batches.durable_end.max(keep_from_offset);
        }
        self.pop_front_while(|batches, front| batches.bytes > bytes_max && front.last_offset < keep_from_offset);
        self.shard.evict_over_budget();
    }

    /// Drops the batches that end below `offset` (deleted or compacted: the segment files hold
    /// what reads should see). The caller makes sure they are durable.
    pub fn drop_below(&mut self, offset: i64) {
        self.pop_front_while(|_, front| front.last_offset < offset);
    }

    pub fn clear(&mut self) {
        self.pop_front_while(|_, _| true);
    }

    /// Pops batches from the front while `more` says so, keeping the shard's count and its
    /// record of this cache's oldest batch true.
    fn pop_front_while(&mut self, mut more: impl FnMut(&Batches, &CachedBatch) -> bool) {
        let mut batches = self.batches.borrow_mut();
        let mut freed = 0;
        while let Some(front) = batches.list.front() {
            if !more(&batches, &front.batch) {
                break;
            }
            freed += batches.pop_front();
        }
        self.shard.bytes.set(self.shard.bytes.get() - freed);
        self.shard.register(&self.batches, &mut batches, self.id);
    }

    pub fn first_offset(&self) -> Option<i64> {
        self.batches.borrow().list.front().map(|e| e.batch.base_offset)
    }

    /// This partition's cached batches' own bytes.
    pub fn bytes(&self) -> usize {
        self.batches.borrow().bytes
    }

    /// Batches from the one holding `offset`, until adding one more would pass `max_bytes`
    /// (the first is always included, as Kafka does, so a large batch still makes progress),
    /// each with the number of offsets it spans.
    pub fn read(&self, offset: i64, max_bytes: usize) -> Vec<(BatchBytes, u64)> {
        self.read_until(offset, max_bytes, i64::MAX).into_iter().map(|(bytes, records, _)| (bytes, records)).collect()
    }

    /// As `read`, but only batches that start below `end_offset`; each with its last offset.
    pub fn read_until(&self, offset: i64, max_bytes: usize, end_offset: i64) -> Vec<(BatchBytes, u64, i64)> {
        let batches = self.batches.borrow();
        let start = batches.list.partition_point(|e| e.batch.last_offset < offset);
        let mut out = Vec::new();
        let mut total = 0;
        for batch in batches.list.range(start..).map(|e| &e.batch) {
            if batch.base_offset >= end_offset || (!out.is_empty() && total + batch.bytes.len() > max_bytes) {
                break;
            }
            total += batch.bytes.len();
            out.push((batch.bytes.clone(), (batch.last_offset - batch.base_offset + 1) as u64, batch.last_offset));
        }
        out
    }

    /// The first cached batch whose max timestamp is at or after `timestamp`.
    pub fn find_timestamp(&self, timestamp: i64, from_offset: i64) -> Option<CachedBatch> {
        let batches = self.batches.borrow();
        batches.list.iter().map(|e| &e.batch).find(|b| b.last_offset >= from_offset && b.max_timestamp >= timestamp).cloned()
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::batch_bytes::RequestBuffer;

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
    fn batches_kept_in_one_request_count_it_once_until_the_last_of_them_goes() {
        let record = shardlog_protocol::batch::build_batch(0, 1, &[(None, Some(&[7u8; 300][..]))]);
        let len = record.len();
        // One request carrying a batch for each of two partitions of the shard.
        let frame = bytes::Bytes::from([record.clone(), record, vec![0u8; 2 * len]].concat());
        let request = RequestBuffer::new(frame.len());
        let shard = ShardCache::new(4 * len + 100);
        let (mut a, mut b) = (BatchCache::new(shard.clone()), BatchCache::new(shard.clone()));
        let kept = |at: usize, offset: i64| CachedBatch {
            base_offset: offset,
            last_offset: offset,
            max_timestamp: 1,
            bytes: BatchBytes::in_place(frame.slice(at..at + len), &request, offset, 0),
        };
        a.push(kept(0, 0));
        b.push(kept(len, 0));
        assert_eq!(shard.bytes(), 4 * len, "the request buffer both keep alive, counted once");
        assert_eq!((a.bytes(), b.bytes()), (len, len), "each partition counts its batch's own bytes");
        assert_eq!(a.read(0, usize::MAX)[0].0.len(), len, "reads size batches by their own bytes");
        a.push(batch(1, 1, 100));
        a.evict(usize::MAX, 2);
        b.evict(usize::MAX, 1);
        assert_eq!(shard.bytes(), 4 * len + 100, "within the budget: nothing goes");
        b.push(batch(1, 1, 100));
        // Over the budget: the oldest goes (a's batch of the request), which frees nothing while
        // b's batch keeps the buffer alive; then b's, which frees the buffer.
        assert_eq!((a.first_offset(), b.first_offset()), (Some(1), Some(1)));
        assert_eq!(shard.bytes(), 200);
        assert_eq!(shard.evicted_batches(), 2);
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

    #[test]
    fn over_the_shard_budget_the_batch_cached_longest_ago_goes_first_whichever_partition_holds_it() {
        let shard = ShardCache::new(300);
        let (mut a, mut b) = (BatchCache::new(shard.clone()), BatchCache::new(shard.clone()));
        a.push(batch(0, 0, 100));
        b.push(batch(0, 0, 100));
        a.push(batch(1, 1, 100));
        a.evict(usize::MAX, 2);
        b.evict(usize::MAX, 1);
        assert_eq!(shard.bytes(), 300, "within the budget: nothing goes");
        b.push(batch(1, 1, 100));
        assert_eq!((a.first_offset(), b.first_offset()), (Some(1), Some(0)), "a's first batch was the oldest");
        assert_eq!(shard.bytes(), 300);
        b.push(batch(2, 2, 100));
        assert_eq!((a.first_offset(), b.first_offset()), (Some(1), Some(1)), "then b's first");
        assert_eq!((a.bytes(), b.bytes(), shard.bytes()), (100, 200, 300));
        assert_eq!(shard.evicted_batches(), 2);
    }

    #[test]
    fn the_shard_budget_never_drops_what_is_not_durable_and_passes_over_to_what_is() {
        let shard = ShardCache::new(150);
        let (mut a, mut b) = (BatchCache::new(shard.clone()), BatchCache::new(shard.clone()));
        a.push(batch(0, 0, 100));
        b.push(batch(0, 0, 100));
        assert_eq!(shard.bytes(), 200, "neither is durable: over the budget, nothing goes");
        assert!(shard.oldest.borrow().is_empty(), "only caches with something to drop are looked at");
        b.evict(usize::MAX, 1);
        assert_eq!((a.first_offset(), b.first_offset()), (Some(0), None), "a's older batch is not durable: b's goes");
        a.evict(usize::MAX, 1);
        assert_eq!(shard.bytes(), 100, "within the budget again");
    }

    #[test]
    fn a_dropped_or_cleared_cache_gives_the_shard_its_bytes_back() {
        let shard = ShardCache::new(1000);
        let mut a = BatchCache::new(shard.clone());
        a.push(batch(0, 4, 100));
        a.push(batch(5, 9, 100));
        {
            let mut b = BatchCache::new(shard.clone());
            b.push(batch(0, 0, 300));
            assert_eq!(shard.bytes(), 500);
        }
        assert_eq!(shard.bytes(), 200);
        a.drop_below(5);
        assert_eq!(shard.bytes(), 100);
        a.clear();
        assert_eq!(shard.bytes(), 0);
        assert!(shard.oldest.borrow().is_empty(), "no cache is left to evict from");
        a.push(batch(10, 10, 50));
        assert_eq!((a.bytes(), shard.bytes()), (50, 50));
    }
}
