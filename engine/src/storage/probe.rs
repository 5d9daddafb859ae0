//! A partition's metrics: traffic in and out, and the time its flusher's writes take to be
//! durable and the group-commit size. Exported per partition, and per log directory for the
//! disk figures.

use crate::metrics::{Counter, Histogram};

#[derive(Debug, Default)]
pub struct PartitionProbe {
    pub bytes_in: Counter,
    pub records_in: Counter,
    pub bytes_out: Counter,
    pub records_out: Counter,
    /// Microseconds for a group commit's O_DSYNC writes to be durable (the name is Kafka's
    /// and Redpanda's word for that wait, kept for dashboards).
    pub fsync_us: Histogram,
    /// Bytes made durable by one group commit.
    pub commit_bytes: Histogram,
    /// Segments deleted by retention (time, size, or below the log start offset).
    pub segments_deleted: Counter,
    /// Records compaction removed.
    pub records_compacted: Counter,
    /// Batches compaction kept whole because it could not open them (malformed, or past
    /// `COMPACTION_BATCH_DECOMPRESSED_MAX` decompressed); counted once per pass that met them.
    pub compaction_batches_kept_whole: Counter,
}
