//! Storage: partition logs made of segments, indexes, the batch cache and group commit.
//! Nothing here knows about Kafka requests; it deals in record batches and offsets.
pub mod cache;
pub mod checkpoint;
pub mod compaction;
pub mod disk;
pub mod index;
pub mod log;
pub mod probe;
pub mod producer_state;
pub mod retention;
pub mod segment;
pub mod txn_index;

#[cfg(test)]
mod tests;

/// A byte range of a segment file, for the network to send with sendfile (zero copy).
#[derive(Debug, Clone)]
pub struct FileRange {
    pub file: std::sync::Arc<std::fs::File>,
    pub position: u64,
}
