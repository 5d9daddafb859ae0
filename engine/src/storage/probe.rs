//! A partition's metrics: traffic in and out, and its flusher's fdatasync latency and
//! group-commit size. Exported per partition, and per log directory for the disk figures.

use crate::metrics::{Counter, Histogram};

#[derive(Debug, Default)]
pub struct PartitionProbe {
    pub bytes_in: Counter,
    pub records_in: Counter,
    pub bytes_out: Counter,
    pub records_out: Counter,
    /// Microseconds per fdatasync.
    pub fsync_us: Histogram,
    /// Bytes made durable by one fdatasync (one group commit).
    pub commit_bytes: Histogram,
    /// Segments deleted by retention (time, size, or below the log start offset).
    pub segments_deleted: Counter,
    /// Records compaction removed.
    pub records_compacted: Counter,
    /// Batches compaction kept whole because it could not open them (malformed, or past
    /// `COMPACTION_BATCH_DECOMPRESSED_MAX` decompressed); counted once per pass that met them.
    pub compaction_batches_kept_whole: Counter,
}
