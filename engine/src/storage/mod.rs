//! Storage: partition logs made of segments, indexes, the batch cache and group commit.
//! Nothing here knows about Kafka requests; it deals in record batches and offsets.
pub mod cache;
pub mod checkpoint;
pub mod compaction;
pub mod disk;
mod flusher;
pub mod index;
pub mod log;
pub mod partition;
pub mod probe;
pub mod producer_state;
pub mod recovery;
pub mod retention;
pub mod segment;
pub mod txn_index;

#[cfg(test)]
mod tests;
