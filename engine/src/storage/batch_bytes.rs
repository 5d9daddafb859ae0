//! A batch's bytes in memory, as the log holds them for the flusher and the batch cache.
//!
//! A produced batch that fills at least half of its request is kept where the request brought
//! it: only its first [`REWRITTEN_HEAD_BYTES`], which the append rewrites (base offset, length,
//! leader epoch), get a buffer of their own; the rest stays in the request's buffer. The
//! flusher's copy into its DMA buffer is then the only copy of a produced byte (the kernel's
//! from the socket aside), and the cache serves the received bytes themselves.
//!
//! Keeping a slice keeps its whole request buffer alive, so a batch is charged what it holds
//! alive (its request's size), to the shard's dirty budget and to the cache's bytes, never less:
//! the budgets stay true bounds on memory. A smaller batch of a larger request (one of many
//! partitions in it) is copied out instead, so what a batch holds is never more than twice its
//! own size and a rarely written partition cannot keep large requests alive.

use bytes::{Bytes, BytesMut};
use shardlog_protocol::batch;

/// The bytes of a batch the append rewrites: base offset (8), length (4) and partition leader
/// epoch (4). The CRC covers none of them.
pub const REWRITTEN_HEAD_BYTES: usize = 16;

/// A batch in memory: one buffer, or a rewritten head and the rest of it in the request's
/// buffer. Cheap to clone (reference-counted).
#[derive(Debug, Clone)]
pub struct BatchBytes {
    head: Bytes,
    /// Empty for a batch in one buffer.
    rest: Bytes,
    /// The memory it keeps alive.
    held: usize,
}

impl BatchBytes {
    /// A batch in a buffer of its own.
    pub fn whole(bytes: Bytes) -> BatchBytes {
        BatchBytes { held: bytes.len(), head: bytes, rest: Bytes::new() }
    }

    /// A batch kept in its request's buffer (`received`, exactly one batch), at `base_offset`
    /// in `leader_epoch`; the request buffer is `request_bytes` long.
    pub fn in_place(received: Bytes, request_bytes: usize, base_offset: i64, leader_epoch: i32) -> BatchBytes {
        let mut head = BytesMut::from(&received[..REWRITTEN_HEAD_BYTES]);
        batch::set_base_offset(&mut head, base_offset);
        batch::set_partition_leader_epoch(&mut head, leader_epoch);
        BatchBytes { held: request_bytes.max(received.len()), head: head.freeze(), rest: received.slice(REWRITTEN_HEAD_BYTES..) }
    }

    pub fn len(&self) -> usize {
        self.head.len() + self.rest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The memory this batch keeps alive: what it is charged.
    pub fn held(&self) -> usize {
        self.held
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

/// Whether a produced batch of `len` bytes (the whole of a partition's records in a request of
/// `request_bytes`) is kept in the request's buffer: when it fills at least half of it.
pub fn kept_in_place(len: usize, request_bytes: usize) -> bool {
    len >= REWRITTEN_HEAD_BYTES && len.saturating_mul(2) >= request_bytes
}

/// What a partition's records of `len` bytes from a request of `request_bytes` will be charged
/// at most when appended: the request's size if they may be kept in it, their own otherwise.
pub fn charge_bound(len: usize, request_bytes: usize) -> usize {
    if kept_in_place(len, request_bytes) {
        request_bytes.max(len)
    } else {
        len
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
        let in_place = BatchBytes::in_place(received.clone(), received.len() + 40, 1234, 7);
        let mut expected = BytesMut::from(&received[..]);
        batch::set_base_offset(&mut expected, 1234);
        batch::set_partition_leader_epoch(&mut expected, 7);
        assert_eq!(in_place.contiguous(), expected.freeze());
        assert_eq!(in_place.len(), received.len());
        assert_eq!(in_place.held(), received.len() + 40, "charged the whole request it keeps alive");
        let pieces: Vec<&Bytes> = in_place.pieces().collect();
        assert_eq!(pieces.len(), 2);
        assert_eq!(pieces[0].len(), REWRITTEN_HEAD_BYTES);
        assert_eq!(pieces[1].as_ptr(), received[REWRITTEN_HEAD_BYTES..].as_ptr(), "the rest is the request's own buffer, not a copy");
        let header = batch::parse_header(&in_place.contiguous(), 0, true).unwrap();
        assert_eq!((header.base_offset, header.partition_leader_epoch), (1234, 7));
    }

    #[test]
    fn a_whole_batch_is_one_piece_charged_its_size() {
        let whole = BatchBytes::whole(produced(3));
        assert_eq!(whole.pieces().count(), 1);
        assert_eq!(whole.held(), whole.len());
        assert_eq!(whole.contiguous().as_ptr(), whole.pieces().next().unwrap().as_ptr(), "no copy for one piece");
    }

    #[test]
    fn only_a_batch_filling_half_of_its_request_is_kept_in_it() {
        assert!(kept_in_place(1000, 1000) && kept_in_place(500, 1000));
        assert!(!kept_in_place(499, 1000), "a small partition of a large request is copied out");
        assert!(!kept_in_place(10, 12), "too short to have a head");
        assert_eq!(charge_bound(600, 1000), 1000);
        assert_eq!(charge_bound(100, 1000), 100);
    }
}
