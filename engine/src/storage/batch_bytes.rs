//! A batch's bytes in memory, as the log holds them for the flusher and the batch cache.
//!
//! A produced batch is kept where the request brought it: only its first
//! [`REWRITTEN_HEAD_BYTES`], which the append rewrites (base offset, length, leader epoch), get a
//! buffer of their own; the rest stays in the request's buffer. The flusher's copy into its DMA
//! buffer is then the only copy of a produced byte (the kernel's from the socket aside), and the
//! cache serves the received bytes themselves, however many partitions the request carried.
//!
//! Keeping a slice keeps its whole request buffer alive, so the budgets count that buffer, not
//! the slice: a [`RequestBuffer`] is charged once to each budget (the shard's dirty bytes, its
//! cache) while any of its batches is counted there, and given back when the last one leaves.
//! The budgets stay true bounds on memory, and a request's batches, appended together, age out
//! of the shard's cache together (its eviction goes by age, across partitions).

use std::cell::Cell;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use shardlog_protocol::batch;

/// The bytes of a batch the append rewrites: base offset (8), length (4) and partition leader
/// epoch (4). The CRC covers none of them.
pub const REWRITTEN_HEAD_BYTES: usize = 16;

/// The budgets that count what batches keep alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// The shard's appended bytes not yet durable (`shardlog.dirty.shard.bytes`).
    Dirty,
    /// The shard's batch cache (`shardlog.cache.shard.bytes`).
    Cache,
}

/// A produce request's buffer as the owner shard keeps it: its size, and how many of the
/// batches kept in it each budget counts now. Made once per request per owner shard.
#[derive(Debug)]
pub struct RequestBuffer {
    bytes: usize,
    dirty: Cell<usize>,
    cached: Cell<usize>,
}

impl RequestBuffer {
    /// A request buffer of `bytes`.
    pub fn new(bytes: usize) -> Rc<RequestBuffer> {
        Rc::new(RequestBuffer { bytes, dirty: Cell::new(0), cached: Cell::new(0) })
    }

    fn counted(&self, budget: Budget) -> &Cell<usize> {
        match budget {
            Budget::Dirty => &self.dirty,
            Budget::Cache => &self.cached,
        }
    }

    /// What one more batch kept in this buffer adds to `budget` now: the whole buffer if none
    /// is counted there yet, nothing otherwise.
    pub fn charge_to_enter(&self, budget: Budget) -> usize {
        if self.counted(budget).get() == 0 {
            self.bytes
        } else {
            0
        }
    }
}

/// A batch in memory: one buffer, or a rewritten head and the rest of it in the request's
/// buffer. Cheap to clone (reference-counted).
#[derive(Debug, Clone)]
pub struct BatchBytes {
    head: Bytes,
    /// Empty for a batch in one buffer.
    rest: Bytes,
    /// The request buffer `rest` is in, for a batch kept there.
    request: Option<Rc<RequestBuffer>>,
}

impl BatchBytes {
    /// A batch in a buffer of its own.
    pub fn whole(bytes: Bytes) -> BatchBytes {
        BatchBytes { head: bytes, rest: Bytes::new(), request: None }
    }

    /// A batch kept in its request's buffer (`received`, exactly one batch, a slice of
    /// `request`'s buffer), at `base_offset` in `leader_epoch`.
    pub fn in_place(received: Bytes, request: &Rc<RequestBuffer>, base_offset: i64, leader_epoch: i32) -> BatchBytes {
        let mut head = BytesMut::from(&received[..REWRITTEN_HEAD_BYTES]);
        batch::set_base_offset(&mut head, base_offset);
        batch::set_partition_leader_epoch(&mut head, leader_epoch);
        BatchBytes { head: head.freeze(), rest: received.slice(REWRITTEN_HEAD_BYTES..), request: Some(request.clone()) }
    }

    pub fn len(&self) -> usize {
        self.head.len() + self.rest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Starts counting this batch in `budget`: the bytes to charge it now (its own size, or
    /// its request's for the first batch of that request counted there).
    #[must_use = "the budget is charged what this returns"]
    pub fn enter(&self, budget: Budget) -> usize {
        let Some(request) = &self.request else { return self.len() };
        let charge = request.charge_to_enter(budget);
        let counted = request.counted(budget);
        counted.set(counted.get() + 1);
        charge
    }

    /// Stops counting this batch in `budget` (once for each `enter`): the bytes to give back
    /// now (its own size, or its request's for the last batch of that request counted there).
    #[must_use = "the budget gets back what this returns"]
    pub fn leave(&self, budget: Budget) -> usize {
        let Some(request) = &self.request else { return self.len() };
        let counted = request.counted(budget);
        assert!(counted.get() > 0, "a batch left the {budget:?} budget it was not counted in");
        counted.set(counted.get() - 1);
        if counted.get() == 0 {
            request.bytes
        } else {
            0
        }
    }

    /// Its bytes, in order, as one or two buffers (none empty).
    pub fn pieces(&self) -> impl Iterator<Item = &Bytes> {
        std::iter::once(&self.head).chain(Some(&self.rest).filter(|r| !r.is_empty()))
    }

    /// Its bytes in one buffer: copied when it is in two (only lookups by timestamp, which parse
    /// the records, need that).
    pub fn contiguous(&self) -> Bytes {
        if self.rest.is_empty() {
            return self.head.clone();
        }
        let mut out = BytesMut::with_capacity(self.len());
        out.extend_from_slice(&self.head);
        out.extend_from_slice(&self.rest);
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn produced(records: usize) -> Bytes {
        let values: Vec<Vec<u8>> = (0..records).map(|i| vec![i as u8; 100]).collect();
        let pairs: Vec<batch::KeyValue> = values.iter().map(|v| (None, Some(&v[..]))).collect();
        Bytes::from(batch::build_batch(0, 1_000, &pairs))
    }

    #[test]
    fn a_batch_kept_in_place_reads_as_the_rewritten_batch_and_shares_the_request() {
        let received = produced(20);
        let request = RequestBuffer::new(received.len() + 40);
        let in_place = BatchBytes::in_place(received.clone(), &request, 1234, 7);
        let mut expected = BytesMut::from(&received[..]);
        batch::set_base_offset(&mut expected, 1234);
        batch::set_partition_leader_epoch(&mut expected, 7);
        assert_eq!(in_place.contiguous(), expected.freeze());
        assert_eq!(in_place.len(), received.len());
        let pieces: Vec<&Bytes> = in_place.pieces().collect();
        assert_eq!(pieces.len(), 2);
        assert_eq!(pieces[0].len(), REWRITTEN_HEAD_BYTES);
        assert_eq!(pieces[1].as_ptr(), received[REWRITTEN_HEAD_BYTES..].as_ptr(), "the rest is the request's own buffer, not a copy");
        let header = batch::parse_header(&in_place.contiguous(), 0, true).unwrap();
        assert_eq!((header.base_offset, header.partition_leader_epoch), (1234, 7));
    }

    #[test]
    fn the_batches_of_one_request_charge_its_buffer_once_per_budget_while_one_is_counted() {
        let (a, b) = (produced(3), produced(5));
        let request = RequestBuffer::new(10_000);
        let (a, b) = (BatchBytes::in_place(a, &request, 0, 0), BatchBytes::in_place(b, &request, 3, 0));
        assert_eq!(request.charge_to_enter(Budget::Dirty), 10_000);
        assert_eq!(a.enter(Budget::Dirty), 10_000, "the first batch counted charges the whole buffer it keeps alive");
        assert_eq!(request.charge_to_enter(Budget::Dirty), 0);
        assert_eq!(b.enter(Budget::Dirty), 0, "the second is in the same buffer");
        assert_eq!(a.enter(Budget::Cache), 10_000, "each budget counts the buffer once");
        assert_eq!(b.enter(Budget::Cache), 0);
        assert_eq!(a.leave(Budget::Dirty), 0, "the other batch still keeps the buffer in the dirty bytes");
        assert_eq!(b.leave(Budget::Dirty), 10_000, "the last one out gives it back");
        assert_eq!(b.leave(Budget::Cache), 0);
        assert_eq!(a.clone().leave(Budget::Cache), 10_000, "clones count as the batch they copy");
        assert_eq!(a.enter(Budget::Dirty), 10_000, "counted again later, charged again");
    }

    #[test]
    fn a_whole_batch_is_one_piece_charged_its_size() {
        let whole = BatchBytes::whole(produced(3));
        assert_eq!(whole.pieces().count(), 1);
        assert_eq!(whole.enter(Budget::Cache), whole.len());
        assert_eq!(whole.enter(Budget::Dirty), whole.len());
        assert_eq!(whole.leave(Budget::Cache), whole.len());
        assert_eq!(whole.contiguous().as_ptr(), whole.pieces().next().unwrap().as_ptr(), "no copy for one piece");
    }
}
