//! Background work on the partitions a shard owns, in the shard's "maintenance" task queue:
//! glommio gives that queue a tenth of the data path's shares, so retention never holds up
//! produce and fetch for long, and each pass does a bounded amount of work.
//!
//! Also DeleteRecords and the partition sizes for DescribeLogDirs, which touch the same state.

use std::rc::Rc;
use std::time::Duration;

use shardlog_protocol::error_code as ec;

use super::messages::RecordsDeleted;
use super::Shard;
use crate::runtime;
use crate::storage::compaction;
use crate::storage::log::{now_ms, Partition};
use crate::storage::retention::{self, DeleteRecordsError};

/// Shares of the maintenance queue; the default queue, where requests run, has 1000.
pub const MAINTENANCE_SHARES: usize = 100;
/// Segments one partition may lose in one retention pass; the rest wait for the next pass.
pub const RETENTION_SEGMENTS_PER_PASS_MAX: usize = 64;

/// Starts the retention loop: every `log.retention.check.interval.ms`, each partition of this
/// shard drops the segments its configs no longer keep.
pub fn start(shard: &Rc<Shard>) {
    CLEANER_THROTTLE.get_or_init(|| compaction::IoThrottle::new(shard.config.log_cleaner_io_max_bytes_per_second));
    let queue = runtime::maintenance_queue(MAINTENANCE_SHARES, "maintenance");
    super::log_dirs::start(shard, queue);
    let interval = Duration::from_millis(crate::topic_config::retention_check_interval_ms(&shard.config));
    let shard = shard.clone();
    let task = runtime::spawn_into(
        async move {
            loop {
                runtime::sleep(interval).await;
                if shard.shutting_down.get() {
                    break;
                }
                let partitions: Vec<Rc<Partition>> = shard.partitions.borrow().values().cloned().collect();
                for p in partitions {
                    let serial = PARTITION_MAINTENANCE.with(Rc::clone);
                    let Ok(_permit) = serial.acquire_permit(1).await else { break };
                    enforce_retention_locked(&p).await;
                    if shard.config.log_cleaner_enable {
                        compact(&p).await;
                    }
                    runtime::yield_if_needed().await;
                }
            }
        },
        queue,
    );
    match task {
        Ok(t) => drop(t.detach()),
        Err(e) => tracing::error!(error = %e, "cannot start the retention task; old segments will not be deleted"),
    }
}

/// Niceness of the cleaner's threads: the kernel gives them only the CPU time that the shards
/// (nice 0) leave, so a compaction pass slows down under load instead of delaying requests.
pub const CLEANER_THREAD_NICE: i32 = 19;

/// Runs one compaction job on a thread of its own at [`CLEANER_THREAD_NICE`] (glommio's blocking
/// pool would run it at the shards' priority, and its threads serve other blocking work, so
/// they cannot be reniced for it). A thread per pass costs microseconds against a pass's
/// milliseconds; passes are one at a time per shard.
async fn on_cleaner_thread<T: Send + 'static>(job: impl FnOnce() -> T + Send + 'static) -> anyhow::Result<T> {
    let (done, result) = futures::channel::oneshot::channel();
    std::thread::Builder::new()
        .name("log-cleaner".into())
        .spawn(move || {
            // SAFETY: setpriority has no memory effects; on Linux, PRIO_PROCESS with 0 renices the
            // calling thread only. A failure leaves it at the normal priority, which is only slower.
            unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, CLEANER_THREAD_NICE) };
            drop(done.send(job()));
        })
        .map_err(|e| anyhow::anyhow!("cannot start a log cleaner thread: {e}"))?;
    result.await.map_err(|_| anyhow::anyhow!("the log cleaner thread ended without a result (it panicked; see the log)"))
}

/// `log.cleaner.io.max.bytes.per.second`, for the compactions of every shard together.
static CLEANER_THROTTLE: std::sync::OnceLock<compaction::IoThrottle> = std::sync::OnceLock::new();

fn cleaner_throttle() -> &'static compaction::IoThrottle {
    CLEANER_THROTTLE.get_or_init(compaction::IoThrottle::unlimited)
}

/// One retention pass over one partition; returns the segments deleted.
pub async fn enforce_retention(p: &Partition) -> usize {
    let serial = PARTITION_MAINTENANCE.with(Rc::clone);
    let Ok(_permit) = serial.acquire_permit(1).await else { return 0 };
    enforce_retention_locked(p).await
}

/// One compaction pass over one partition, if its configs and dirty ratio call for one. The
/// reading and rewriting runs on a low-priority cleaner thread; only the swap runs on the shard.
async fn compact(p: &Partition) {
    let plan = p.log.borrow().compaction_plan(now_ms());
    let Some(plan) = plan else { return };
    let job = plan.clone();
    let outcome = on_cleaner_thread(move || compaction::compact_segments(&job, cleaner_throttle())).await.and_then(|r| r);
    if let Ok(done) = &outcome {
        p.probe.compaction_batches_kept_whole.add(done.batches_kept_whole);
    }
    let cleaned_before = p.log.borrow().cleaner_offset();
    let installed = outcome.and_then(|done| p.log.borrow_mut().install_compacted(&plan, done));
    let cleaned_now = p.log.borrow().cleaner_offset();
    let retired = p.log.borrow_mut().take_retired_files();
    if !retired.is_empty() {
        // The last close of a replaced file frees its blocks: not on the shard's thread.
        let _ = runtime::spawn_blocking(move || drop(retired)).await;
    }
    if installed.is_ok() && cleaned_now != cleaned_before {
        let (dir, topic, partition) = (plan.dir.clone(), p.topic.clone(), p.partition);
        let written = runtime::spawn_blocking(move || compaction::write_cleaner_checkpoint(&dir, &topic, partition, cleaned_now)).await;
        if let Err(e) = written {
            // Only costs a re-read of the clean part after a restart.
            tracing::warn!(topic = %p.topic, partition = p.partition, error = %format!("{e:#}"), "cannot write the cleaner-offset-checkpoint");
        }
    }
    match installed {
        Ok(0) => {}
        Ok(records_removed) => {
            p.probe.records_compacted.add(records_removed);
            tracing::info!(topic = %p.topic, partition = p.partition, segments = plan.segments.len(), records_removed, "compacted")
        }
        Err(e) => tracing::error!(topic = %p.topic, partition = p.partition, error = %format!("{e:#}"), "compaction failed; the segments stay as they were"),
    }
}

async fn enforce_retention_locked(p: &Partition) -> usize {
    let (files, log_start_offset) = {
        let mut log = p.log.borrow_mut();
        let count = log.expired_segments(now_ms(), RETENTION_SEGMENTS_PER_PASS_MAX);
        if count == 0 {
            return 0;
        }
        let files = log.remove_oldest_segments(count);
        (files, log.log_start_offset())
    };
    let segments = files.len() / 3;
    p.probe.segments_deleted.add(segments as u64);
    tracing::info!(topic = %p.topic, partition = p.partition, segments, log_start_offset, "retention: deleting old segments");
    // The checkpoint first: after a crash between the two, recovery takes the larger of the
    // checkpoint and the first segment left.
    if let Err(e) = persist_log_start(p).await {
        tracing::error!(topic = %p.topic, partition = p.partition, error = %format!("{e:#}"), "cannot write the log start offset checkpoint");
    }
    for file in files {
        match runtime::remove_file(&file).await {
            Ok(()) => {}
            Err(e) => {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(file = %file.display(), error = %e, "cannot delete a segment file");
                }
            }
        }
    }
    segments
}

thread_local! {
    /// One retention or compaction pass at a time per shard: a compaction rewrites files that
    /// retention (DeleteRecords) could otherwise delete under it.
    static PARTITION_MAINTENANCE: Rc<runtime::Semaphore> = Rc::new(runtime::Semaphore::new(1));
    /// One checkpoint write at a time per shard, so that the file never goes back to an older
    /// log start offset when two writes race.
    static CHECKPOINT_WRITES: Rc<runtime::Semaphore> = Rc::new(runtime::Semaphore::new(1));
}

/// Writes the partition's current log start offset to its checkpoint, on glommio's blocking
/// thread pool: the fsyncs must not stall the shard's requests.
async fn persist_log_start(p: &Partition) -> anyhow::Result<()> {
    let serial = CHECKPOINT_WRITES.with(Rc::clone);
    let _permit = serial.acquire_permit(1).await.map_err(|e| anyhow::anyhow!("checkpoint semaphore: {e}"))?;
    let (dir, offset) = {
        let log = p.log.borrow();
        (log.dir.clone(), log.log_start_offset())
    };
    let (topic, partition) = (p.topic.clone(), p.partition);
    runtime::spawn_blocking(move || retention::write_log_start_checkpoint(&dir, &topic, partition, offset)).await
}

/// DeleteRecords for a partition this shard owns.
pub async fn delete_records(shard: &Rc<Shard>, topic: &str, partition: i32, offset: i64) -> RecordsDeleted {
    let Some(p) = shard.local_partition(topic, partition) else {
        return RecordsDeleted { error_code: ec::UNKNOWN_TOPIC_OR_PARTITION, low_watermark: -1, error_message: None };
    };
    let outcome = p.log.borrow_mut().delete_records(offset);
    let low_watermark = match outcome {
        Ok(low) => low,
        Err(DeleteRecordsError::OffsetOutOfRange { high_watermark }) => {
            let message = format!(
                "Cannot delete records of {topic}-{partition} below offset {offset}: it must be between 0 and the high watermark {high_watermark}, or -1"
            );
            return RecordsDeleted { error_code: ec::OFFSET_OUT_OF_RANGE, low_watermark: -1, error_message: Some(message) };
        }
        Err(DeleteRecordsError::Offline(why)) => return RecordsDeleted { error_code: ec::KAFKA_STORAGE_ERROR, low_watermark: -1, error_message: Some(why) },
    };
    if let Err(e) = persist_log_start(&p).await {
        let why = format!("{e:#}");
        tracing::error!(topic, partition, error = %why, "cannot persist the log start offset");
        return RecordsDeleted { error_code: ec::KAFKA_STORAGE_ERROR, low_watermark: -1, error_message: Some(why) };
    }
    tracing::info!(topic, partition, log_start_offset = low_watermark, "DeleteRecords moved the log start offset");
    // Whole segments below the new start go now rather than at the next retention pass, without
    // holding up the answer (a compaction pass may hold the partition's maintenance for a while).
    runtime::spawn(async move {
        enforce_retention(&p).await;
    })
    .detach();
    RecordsDeleted { error_code: ec::NONE, low_watermark, error_message: None }
}

/// (topic, partition, log directory index, bytes) for every partition of this shard.
pub fn log_dir_sizes(shard: &Shard) -> Vec<(String, i32, usize, u64)> {
    let meta = shard.metadata.borrow().clone();
    shard
        .partitions
        .borrow()
        .iter()
        .map(|((topic, partition), p)| {
            let log_dir = meta.placement(topic, *partition).map(|pl| pl.log_dir).unwrap_or(0);
            (topic.clone(), *partition, log_dir, p.log.borrow().size_bytes())
        })
        .collect()
}
