//! A partition as its owner shard holds it: the log behind a RefCell (one shard, one thread),
//! the notifications that wake long-polling fetches and acks=all producers, and the partition's
//! life: appends that wake the flusher, reads that do not block the shard, waits for
//! durability, close, and taking it offline.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use anyhow::Result;
use bytes::{Bytes, BytesMut};

use super::batch_bytes::RequestBuffer;
use super::cold_read::Step;
use super::disk::{sync_dir, write_synced};
use super::flusher::Flusher;
use super::log::{AppendError, AppendInfo, AppendOrigin, PartitionLog, ReadError, ReadResult, ReadStart, TruncateError, PRODUCER_SNAPSHOTS_KEPT};
use super::producer_state::ProducerState;
use super::recovery::CLEAN_SHUTDOWN_FILE;
use super::segment::write_indexes;
use crate::notify::Notify;
use crate::runtime;

/// Why an acks=all write did not become durable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurableError {
    /// The partition went offline after a storage error: the write never will be durable here.
    #[error("{0}")]
    Offline(String),
    /// The log directory is full. The records stay queued and are written once space is freed,
    /// as after a write that timed out: an idempotent producer's retry is deduplicated.
    #[error("{0}")]
    DiskFull(String),
    /// The partition was closed (shutdown, deletion) before the flusher reached the write.
    #[error("partition closed before the write was durable")]
    Closed,
}

/// A partition as its owner shard holds it.
pub struct Partition {
    pub topic: String,
    pub partition: i32,
    pub log: RefCell<PartitionLog>,
    /// Fires after every append: wakes long-polling fetches.
    pub appended: Notify,
    /// Fires after every flush (and on failure): wakes acks=all producers.
    pub durable: Notify,
    /// Fires when the replicated high watermark moves or the in-sync replicas change: wakes
    /// acks=all producers waiting for the followers.
    pub replicated: Notify,
    /// Fires after every append, on close and when taken offline: wakes the flusher.
    pub(super) flush_wanted: Notify,
    /// Fires when an acks=all request starts waiting: ends the flush window early.
    pub(super) durable_wanted: Notify,
    /// Fires when the flusher task ends: `close` waits for it.
    pub(super) flusher_done: Notify,
    pub(super) flusher_running: Cell<bool>,
    /// Set by `close`: the flusher writes what is queued and stops.
    pub(super) closed: Cell<bool>,
    /// Transaction markers appended so far (producers verifying a transaction watch it).
    pub markers_written: Cell<u64>,
    pub probe: super::probe::PartitionProbe,
}

impl Partition {
    pub fn new(topic: String, partition: i32, log: PartitionLog) -> Rc<Partition> {
        Rc::new(Partition {
            topic,
            partition,
            log: RefCell::new(log),
            appended: Notify::default(),
            durable: Notify::default(),
            replicated: Notify::default(),
            flush_wanted: Notify::default(),
            durable_wanted: Notify::default(),
            flusher_done: Notify::default(),
            flusher_running: Cell::new(false),
            closed: Cell::new(false),
            markers_written: Cell::new(0),
            probe: Default::default(),
        })
    }

    pub fn append(&self, records: BytesMut, now: u64) -> Result<AppendInfo, AppendError> {
        self.append_from(records, now, AppendOrigin::Client)
    }

    pub fn append_from(&self, records: BytesMut, now: u64, origin: AppendOrigin) -> Result<AppendInfo, AppendError> {
        let info = self.log.borrow_mut().append_from(records, now, origin)?;
        Ok(self.wake_after_append(info))
    }

    /// Appends a producer's records where its request brought them (`PartitionLog::append_in_place`).
    pub fn append_in_place(&self, records: Bytes, request: &Rc<RequestBuffer>, now: u64) -> Result<AppendInfo, AppendError> {
        let info = self.log.borrow_mut().append_in_place(records, request, now)?;
        Ok(self.wake_after_append(info))
    }

    /// Appends a follower's copy of the leader's batches (`PartitionLog::append_replicated`).
    pub fn append_replicated(&self, records: BytesMut, now: u64) -> Result<AppendInfo, AppendError> {
        let info = self.log.borrow_mut().append_replicated(records, now)?;
        Ok(self.wake_after_append(info))
    }

    /// Wakes what waits for new data (readers, the flusher) after an append.
    fn wake_after_append(&self, info: AppendInfo) -> AppendInfo {
        self.appended.notify_all();
        self.flush_wanted.notify_all();
        info
    }

    /// Sets the high watermark replication allows; a move wakes long-polling fetches (they
    /// read up to it) and acks=all producers.
    pub fn set_replicated_high_watermark(&self, hw: Option<i64>) {
        if self.log.borrow_mut().set_replicated_high_watermark(hw) {
            self.appended.notify_all();
            self.replicated.notify_all();
        }
    }

    pub fn append_marker(&self, producer_id: i64, epoch: i16, commit: bool, coordinator_epoch: i32, now: u64) -> Result<AppendInfo, AppendError> {
        let info = self.log.borrow_mut().append_marker(producer_id, epoch, commit, coordinator_epoch, now)?;
        self.markers_written.set(self.markers_written.get() + 1);
        Ok(self.wake_after_append(info))
    }

    /// Reads from `offset` up to about `max_bytes` (at least one whole batch if there is one) of
    /// the batches that start below `end_offset`, without holding the shard: the batch headers
    /// of a cold read come through io_uring, and the log is borrowed only between those reads.
    pub async fn read_up_to(&self, offset: i64, max_bytes: usize, end_offset: i64) -> Result<ReadResult, ReadError> {
        let start = self.log.borrow().start_read(offset, max_bytes, end_offset)?;
        let mut cold = match start {
            ReadStart::Done(result) => return Ok(result),
            ReadStart::Cold(cold) => cold,
        };
        loop {
            let step = cold.step(&self.log.borrow())?;
            match step {
                Step::Done(result) => return Ok(result),
                Step::Read(read) => {
                    let bytes = runtime::read_at(&read.file, read.position, read.len)
                        .await
                        .map_err(|e| ReadError::Storage(format!("reading batch headers at byte {} of a segment file: {e}", read.position)))?;
                    cold.fill(&read, bytes)?;
                }
            }
        }
    }

    /// Cuts the log end back to `offset` (a follower dropping what the new leader does not
    /// have): segments wholly at or after it go, the segment holding it is cut at the batch
    /// that holds it (so the log ends at that batch's base offset, at most `offset`), and the
    /// indexes, producer and transaction state, leader epochs and cache follow. Answers the
    /// new log end.
    ///
    /// Everything appended must be durable first (`TruncateError::NotDurable` otherwise). The
    /// file work (a pread per batch header to find the cut, set_len and fsyncs, removals, the
    /// checkpoint, the recovery that a crash would run) is bounded by one segment and runs on
    /// the blocking pool, not the shard; until it is done the log refuses appends and reads
    /// (`AppendError::Truncating`, `ReadError::Truncating`), so nothing of the cut range is
    /// served and nothing lands at the old end. The caller keeps compaction off the partition
    /// meanwhile.
    pub async fn truncate_to(&self, offset: i64) -> Result<i64, TruncateError> {
        let cut = match self.log.borrow_mut().begin_truncate(offset)? {
            Ok(cut) => cut,
            Err(log_end_offset) => return Ok(log_end_offset),
        };
        let recovered = runtime::spawn_blocking(move || cut.run()).await;
        self.log.borrow_mut().finish_truncate(recovered)
    }

    /// Empties the log and starts it over at `offset` (Kafka's `truncateFullyAndStartAt`): a
    /// follower whose log ends before its leader's log start (retention ran there while it was
    /// away) has nothing the leader can send after it. Same rules as `truncate_to`: what was
    /// appended must be durable, and appends and reads are refused meanwhile. Answers the new
    /// log end, `offset`.
    pub async fn reset_to(&self, offset: i64) -> Result<i64, TruncateError> {
        let cut = self.log.borrow_mut().begin_reset(offset, &self.topic, self.partition)?;
        let recovered = runtime::spawn_blocking(move || cut.run()).await;
        self.log.borrow_mut().finish_truncate(recovered)
    }

    /// Waits until every offset up to `last_offset` is durable on disk (acks=all).
    pub async fn wait_durable(&self, last_offset: i64) -> Result<(), DurableError> {
        self.log.borrow_mut().add_durable_waiter();
        self.flush_wanted.notify_all();
        self.durable_wanted.notify_all();
        let result = loop {
            let notified = self.durable.notified();
            {
                let log = self.log.borrow();
                if let Some(why) = log.failed() {
                    break Err(DurableError::Offline(why.to_string()));
                }
                if log.durable_offset() > last_offset {
                    break Ok(());
                }
                if let Some(why) = log.disk_full() {
                    // The records stay queued and are written once space is freed, like a
                    // write that timed out: an idempotent producer's retry is deduplicated.
                    break Err(DurableError::DiskFull(why.to_string()));
                }
                if self.closed.get() && !self.flusher_running.get() {
                    break Err(DurableError::Closed);
                }
            }
            notified.await;
        };
        self.log.borrow_mut().remove_durable_waiter();
        result
    }

    /// Takes the partition offline for good (until a restart): its directory failed. Appends,
    /// reads and waiting producers get the error; the flusher stops.
    pub fn take_offline(&self, why: &str) {
        let mut log = self.log.borrow_mut();
        if log.failed().is_none() {
            tracing::error!(topic = %self.topic, partition = self.partition, error = %why, "partition is offline");
            log.fail(why.to_string());
        }
        drop(log);
        self.durable.notify_all();
        self.appended.notify_all();
        self.flush_wanted.notify_all();
    }

    /// Starts the flusher on the current shard.
    pub fn start_flusher(self: &Rc<Self>) {
        self.flusher_running.set(true);
        let partition = self.clone();
        runtime::spawn(async move {
            if let Err(e) = Flusher::default().run(&partition).await {
                let why = format!("{e:#}");
                tracing::error!(topic = %partition.topic, partition = partition.partition, error = %why, "storage error: partition is offline");
                partition.log.borrow_mut().fail(why);
            }
            partition.flusher_running.set(false);
            partition.durable.notify_all();
            partition.flusher_done.notify_all();
        })
        .detach();
    }

    /// Flushes everything, seals the active segment's indexes, and marks a clean shutdown.
    pub async fn close(&self, clean: bool) -> Result<()> {
        self.closed.set(true);
        self.flush_wanted.notify_all();
        while self.flusher_running.get() {
            let done = self.flusher_done.notified();
            if !self.flusher_running.get() {
                break;
            }
            done.await;
        }
        let log = self.log.borrow();
        // The marker vouches that the files hold everything the indexes describe: never write
        // it while appends that arrived after the flusher stopped are still only in memory.
        if log.failed().is_some() || !clean || log.has_pending() {
            return Ok(());
        }
        if let Some(seg) = log.segments.last() {
            write_indexes(&log.dir, seg.base_offset, &seg.index, &seg.time_index)?;
        }
        log.producer_state().write_snapshot(&log.dir, log.log_end_offset())?;
        ProducerState::prune_snapshots(&log.dir, PRODUCER_SNAPSHOTS_KEPT);
        write_synced(&log.dir.join(CLEAN_SHUTDOWN_FILE), b"")?;
        sync_dir(&log.dir)?;
        Ok(())
    }
}
