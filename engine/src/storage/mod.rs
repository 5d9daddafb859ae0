//! Storage: partition logs made of segments, indexes, the batch cache and group commit.
//! Nothing here knows about Kafka requests; it deals in record batches and offsets, and its
//! errors say what failed, leaving the protocol's error codes to the layers above.
//!
//! A partition's log is `log` (state, append, read); `cold_read` finds the byte range of a read
//! older than the cache, and `timestamp_lookup` the answer to a ListOffsets by timestamp,
//! without blocking; `recovery` opens a log from its files; `partition` is the handle its owner
//! shard holds; `flusher` makes its appends durable; `deletion` removes a deleted partition's
//! directory off the shard.
pub mod batch_bytes;
pub mod cache;
pub mod checkpoint;
pub mod cold_read;
pub mod compaction;
pub mod deletion;
pub mod disk;
mod flusher;
pub mod index;
pub mod leader_epoch;
pub mod log;
pub mod max_timestamp;
pub mod meta_properties;
pub mod partition;
pub mod probe;
pub mod producer_state;
pub mod recovery;
pub mod retention;
pub mod segment;
pub mod timestamp_lookup;
pub mod txn_index;

#[cfg(test)]
mod tests;

/// A byte range of a segment file, for the network to send with sendfile (zero copy).
#[derive(Debug, Clone)]
pub struct FileRange {
    pub file: std::sync::Arc<std::fs::File>,
    pub position: u64,
}
