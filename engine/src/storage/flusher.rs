//! The group-commit flusher: one task per partition that makes appended bytes durable.
//!
//! It drains the log's pending-write queue and writes it in page-aligned buffers with
//! O_DIRECT | O_DSYNC through io_uring (glommio DMA files), rewriting the partial tail page each
//! time: once those writes complete, everything they hold is durable. Every acks=all request
//! waiting on an offset they covered is released together (group commit). While one flush
//! runs, new appends queue up for the next one. It also rolls segments (sealing the old one's
//! file and indexes) and writes the producer snapshots and `.txnindex` entries the log queued;
//! the blocking parts of that work run on the executor's blocking pool, never on the shard's
//! thread.

use std::collections::VecDeque;
use std::fs::File;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use glommio::io::{DmaFile, OpenOptions};

use super::batch_bytes::BatchBytes;
use super::disk::sync_dir;
use super::log::{Pending, PRODUCER_SNAPSHOTS_KEPT};
use super::partition::Partition;
use super::producer_state::ProducerState;
use super::segment::{self, write_indexes};
use super::txn_index;

/// O_DIRECT writes are aligned to this many bytes (a page, which also covers 512-byte devices).
pub const WRITE_ALIGNMENT_BYTES: u64 = 4096;
/// Segments are preallocated (fallocate, the file size with them) this much at a time as they
/// grow: XFS and ext4 then lay them out contiguously, without reserving a whole segment of
/// disk for a partition that may stay small, and direct writes land inside the file (see
/// `Flusher::write_pages`). The file is cut to its data when sealed, at shutdown and by recovery.
pub const PREALLOCATE_STEP_BYTES: u64 = 32 << 20;
/// How often a flusher whose directory is full tries its write again.
pub const DISK_FULL_RETRY_INTERVAL: Duration = Duration::from_millis(500);

/// Whether `e` says the filesystem is full (ENOSPC) or a quota is spent (EDQUOT): a condition
/// that ends when space is freed, unlike an I/O error.
pub fn is_out_of_space(e: &anyhow::Error) -> bool {
    e.chain().filter_map(|cause| cause.downcast_ref::<std::io::Error>()).any(io_out_of_space)
}

fn io_out_of_space(io: &std::io::Error) -> bool {
    matches!(io.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
        || matches!(io.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded)
}

/// Fills `out` with the bytes of `pieces`, laid end to end, from byte `from` on.
fn copy_from_pieces(pieces: &[&[u8]], mut from: usize, out: &mut [u8]) {
    let mut filled = 0;
    for piece in pieces {
        if filled == out.len() {
            break;
        }
        if from >= piece.len() {
            from -= piece.len();
            continue;
        }
        let n = (piece.len() - from).min(out.len() - filled);
        out[filled..filled + n].copy_from_slice(&piece[from..from + n]);
        filled += n;
        from = 0;
    }
    assert_eq!(filled, out.len(), "the pieces hold fewer bytes than asked for");
}

fn align_down(v: u64) -> u64 {
    v & !(WRITE_ALIGNMENT_BYTES - 1)
}

/// A flush that failed: the error and the queued writes it did not reach, which are tried
/// again when the error is a full disk (a write or a fallocate that found no space).
struct FlushFailure {
    error: anyhow::Error,
    unwritten: VecDeque<Pending>,
}

/// The flusher's own state: the open DMA file of the segment being written, and the bytes of its
/// last partial page, which the next write must rewrite because O_DIRECT writes whole pages.
#[derive(Default)]
pub(super) struct Flusher {
    active: Option<(i64, DmaFile)>,
    tail: Vec<u8>,
    /// Bytes of the active segment covered by fallocate.
    preallocated_bytes: u64,
    /// The log's truncation count when the active file was opened.
    truncations: u64,
}

impl Flusher {
    pub(super) async fn run(&mut self, partition: &Partition) -> Result<()> {
        loop {
            if partition.log.borrow().failed().is_some() {
                // Taken offline (its directory failed): nothing more is written here.
                return Ok(());
            }
            let wanted = partition.flush_wanted.notified();
            let urgent = partition.durable_wanted.notified();
            let (has_pending, waiters, interval) = {
                let log = partition.log.borrow();
                (log.has_pending(), log.durable_waiters(), log.config.flush_window_us)
            };
            if !has_pending {
                if partition.closed.get() {
                    break;
                }
                wanted.await;
                continue;
            }
            if waiters == 0 && interval > 0 && !partition.closed.get() {
                // Group-commit window for acks=0/1 data; an acks=all request cuts it short.
                let sleep = glommio::timer::sleep(Duration::from_micros(interval));
                futures_lite::future::or(sleep, urgent).await;
            }
            let batch = partition.log.borrow_mut().take_pending();
            match self.commit(partition, batch).await {
                Ok(end_offset) => {
                    let mut log = partition.log.borrow_mut();
                    if let Some(end) = end_offset {
                        log.mark_durable(end);
                    }
                    if log.clear_disk_full() {
                        tracing::info!(topic = %partition.topic, partition = partition.partition, "space was freed: the partition writes again");
                    }
                }
                Err(failure) if is_out_of_space(&failure.error) => {
                    // Nothing is lost or corrupted: the bytes not written go back to the front
                    // of the queue and are written, at the same positions, once space is freed.
                    {
                        let mut log = partition.log.borrow_mut();
                        log.requeue_pending(failure.unwritten);
                        let dir = log.dir.parent().map(|d| d.display().to_string()).unwrap_or_default();
                        if log.disk_full().is_none() {
                            tracing::error!(topic = %partition.topic, partition = partition.partition, log_dir = %dir, error = %format!("{:#}", failure.error),
                                "log directory is full: produce to this partition fails with KAFKA_STORAGE_ERROR until space is freed");
                        }
                        log.set_disk_full(format!("log directory {dir} is full ({:#}); free space there and produce resumes", failure.error));
                    }
                    partition.durable.notify_all();
                    if partition.closed.get() {
                        return Err(failure.error.context("shutting down with a full log directory"));
                    }
                    glommio::timer::sleep(DISK_FULL_RETRY_INTERVAL).await;
                }
                Err(failure) => return Err(failure.error),
            }
            partition.durable.notify_all();
        }
        // Shutdown: seal the active segment's file at its logical size.
        if let Some((base, file)) = self.active.take() {
            let size = segment_size(partition, base);
            file.truncate(size).await.map_err(std::io::Error::from).context("truncating the active segment to its size")?;
            file.fdatasync().await.map_err(std::io::Error::from)?;
            file.close().await.map_err(std::io::Error::from)?;
        }
        Ok(())
    }

    /// Writes `batch`, durably; returns the end offset now durable.
    async fn commit(&mut self, partition: &Partition, mut batch: VecDeque<Pending>) -> Result<Option<i64>, FlushFailure> {
        let commit_bytes: usize = batch.iter().map(|p| p.len).sum();
        let entries = partition.log.borrow_mut().take_txn_index_queue();
        if !entries.is_empty() {
            // Before the segment that holds their markers can be sealed (its seal syncs them).
            let dir = partition.log.borrow().dir.clone();
            let written = off_shard(move || entries.iter().try_for_each(|(segment_base, entry)| txn_index::append(&dir, *segment_base, entry))).await;
            if let Err(e) = written {
                tracing::error!(topic = %partition.topic, partition = partition.partition, error = %format!("{e:#}"), "cannot write the aborted-transaction index; it is rebuilt on restart");
            }
        }
        let checkpoint = partition.log.borrow_mut().take_epoch_checkpoint();
        if let Some(text) = checkpoint {
            // Before the batches of a new epoch reach the segment file: recovery then trusts
            // the file to name the epoch of every batch it finds.
            let dir = partition.log.borrow().dir.clone();
            if let Err(error) = off_shard(move || super::leader_epoch::write(&dir, &text)).await {
                partition.log.borrow_mut().epoch_checkpoint_failed();
                let error = error.context("writing leader-epoch-checkpoint");
                return Err(FlushFailure { error, unwritten: batch });
            }
        }
        let mut end_offset = None;
        let started = std::time::Instant::now();
        while let Some(item) = batch.pop_front() {
            if let Err(error) = self.write(partition, item.segment_base, item.start_position, &item.batches, item.len).await {
                batch.push_front(item);
                return Err(FlushFailure { error, unwritten: batch });
            }
            end_offset = Some(item.end_offset);
        }
        if end_offset.is_some() {
            // The segment's file is O_DSYNC: its writes are durable as they complete.
            partition.probe.fsync_us.record(started.elapsed().as_micros() as u64);
            partition.probe.commit_bytes.record(commit_bytes as u64);
        }
        Ok(end_offset)
    }

    async fn write(&mut self, partition: &Partition, segment_base: i64, start: u64, batches: &[BatchBytes], len: usize) -> Result<()> {
        let truncations = partition.log.borrow().truncations();
        if truncations != self.truncations {
            // The log end was cut under the open file: its tail page and preallocation are
            // stale, and the segment it names may be gone. Reopen at the new end, unsealed.
            self.truncations = truncations;
            if let Some((_, file)) = self.active.take() {
                file.close().await.map_err(std::io::Error::from)?;
            }
            self.tail.clear();
        }
        if self.active.as_ref().map(|(b, _)| *b) != Some(segment_base) {
            self.switch_segment(partition, segment_base, start).await?;
        }
        let (_, file) = self.active.as_ref().expect("switch_segment opened it");
        let end = start + len as u64;
        if end > self.preallocated_bytes && self.preallocated_bytes < u64::MAX {
            let segment_bytes = partition.log.borrow().config.segment_bytes;
            let target =
                end.div_ceil(PREALLOCATE_STEP_BYTES).saturating_mul(PREALLOCATE_STEP_BYTES).min(segment_bytes.max(end)).div_ceil(WRITE_ALIGNMENT_BYTES)
                    * WRITE_ALIGNMENT_BYTES;
            match file.pre_allocate(target, false).await.map_err(std::io::Error::from) {
                Ok(()) => self.preallocated_bytes = target,
                Err(e) if io_out_of_space(&e) => {
                    return Err(anyhow::Error::new(e).context(format!("preallocating {target} bytes of segment {segment_base}")));
                }
                Err(e) => {
                    tracing::debug!(error = %e, "fallocate not supported here; segments are not preallocated");
                    self.preallocated_bytes = u64::MAX;
                }
            }
        }
        let (write_bytes_max, in_flight_max) = {
            let config = &partition.log.borrow().config;
            (config.write_bytes_max.max(WRITE_ALIGNMENT_BYTES as usize), config.writes_in_flight_max)
        };
        let aligned_start = align_down(start);
        assert_eq!(aligned_start + self.tail.len() as u64, start, "tail page must end where the new bytes start");
        // The bytes to write, in order: the rewritten partial page, then the batches, copied
        // straight from the log's buffers into the DMA buffers.
        let pieces: Vec<&[u8]> = std::iter::once(&self.tail[..]).chain(batches.iter().flat_map(|b| b.pieces().map(|p| &p[..]))).collect();
        let total = self.tail.len() + len;
        // A failed write leaves the tail as it was: a retry rewrites the same pages from it.
        self.write_pages(&pieces, total, aligned_start, segment_base, write_bytes_max, in_flight_max).await?;
        let tail_start = (align_down(end) - aligned_start) as usize;
        let mut tail = vec![0; total - tail_start];
        copy_from_pieces(&pieces, tail_start, &mut tail);
        self.tail = tail;
        let mut log = partition.log.borrow_mut();
        if let Some(seg) = log.segments.iter_mut().find(|s| s.base_offset == segment_base) {
            seg.written_bytes = seg.written_bytes.max(end);
        }
        Ok(())
    }

    /// Writes the `total` bytes of `pieces` (laid end to end) from the page-aligned
    /// `aligned_start`, in DMA buffers of whole pages: one write unless the flush is larger
    /// than `write_bytes_max`.
    ///
    /// The file is O_DSYNC, so every write is a sync of its own (a cache flush where the disk
    /// has a volatile cache, and its own wait). The rewritten partial page goes in the same
    /// write as the pages after it, although ext4 then hands that write to an io_uring worker
    /// thread (it spans a written block and preallocated ones, which ext4 does not write from
    /// the submitting thread): as a write of its own it made every flush two syncs, and the
    /// flush as slow as the slower of the two. One write per flush: produce p99.9 at a fixed
    /// rate 5.9–17 ms where it was 6.6–52, 13% more at full speed
    /// (`bench/results/2026-12-06-one-write-per-flush.md`).
    async fn write_pages(
        &self,
        pieces: &[&[u8]],
        total: usize,
        aligned_start: u64,
        segment_base: i64,
        write_bytes_max: usize,
        in_flight_max: usize,
    ) -> Result<()> {
        use futures::stream::{StreamExt, TryStreamExt};
        let (_, file) = self.active.as_ref().expect("switch_segment opened it");
        // Up to `in_flight_max` DMA writes at once (the disk's measured queue depth); each
        // allocates its buffer only when it starts, so memory stays bounded by that many buffers.
        let write_one = |(written, chunk): (usize, usize)| async move {
            let padded = (chunk as u64).div_ceil(WRITE_ALIGNMENT_BYTES) * WRITE_ALIGNMENT_BYTES;
            let mut buffer = file.alloc_dma_buffer(padded as usize);
            let slice = buffer.as_bytes_mut();
            copy_from_pieces(pieces, written, &mut slice[..chunk]);
            slice[chunk..].fill(0);
            let position = aligned_start + written as u64;
            let n = file
                .write_at(buffer, position)
                .await
                .map_err(std::io::Error::from)
                .with_context(|| format!("writing {padded} bytes at byte {position} of segment {segment_base}"))?;
            if n < padded as usize {
                bail!("short write of segment {segment_base}: {n} of {padded} bytes at byte {position}");
            }
            Ok(())
        };
        let chunks = (0..total).step_by(write_bytes_max).map(|at| (at, (total - at).min(write_bytes_max)));
        futures::stream::iter(chunks).map(write_one).buffer_unordered(in_flight_max.max(1)).try_collect::<()>().await
    }

    /// Seals the previous segment (if any) and opens `segment_base` for writing.
    async fn switch_segment(&mut self, partition: &Partition, segment_base: i64, start: u64) -> Result<()> {
        let dir = partition.log.borrow().dir.clone();
        if let Some((old_base, old)) = &self.active {
            // Sealing is repeatable: if a step fails (a full disk), the segment stays active
            // and the next attempt starts over.
            let old_base = *old_base;
            let size = segment_size(partition, old_base);
            old.fdatasync().await.map_err(std::io::Error::from)?;
            old.truncate(size).await.map_err(std::io::Error::from).context("truncating a sealed segment")?;
            let (index, time_index) = {
                let log = partition.log.borrow();
                let seg = log.segments.iter().find(|s| s.base_offset == old_base).expect("sealed segment exists");
                (seg.index.clone(), seg.time_index.clone())
            };
            // Three files written and four fsyncs: tens of milliseconds on a busy disk, which
            // would stall every partition and connection of the shard if done on its thread.
            let seal_dir = dir.clone();
            off_shard(move || {
                write_indexes(&seal_dir, old_base, &index, &time_index)?;
                txn_index::sync(&seal_dir, old_base)?;
                File::open(segment::log_path(&seal_dir, old_base))?.sync_all().context("fsync of a sealed segment's size")
            })
            .await?;
            if let Some((_, old)) = self.active.take() {
                old.close().await.map_err(std::io::Error::from)?;
            }
        }
        // Opening a file is a path walk and an inode read that can wait on the disk, and a new
        // file's directory entry is made durable by an fsync of the directory: the DMA file is
        // opened through io_uring, everything else on the blocking pool, never on the shard.
        let path = segment::log_path(&dir, segment_base);
        let probed = path.clone();
        let existed = off_shard(move || Ok(probed.try_exists()?)).await.with_context(|| format!("looking for {}", path.display()))?;
        // O_DSYNC: each write is durable when it completes (the data, and the block mapping
        // that finds it), so a flush needs no fdatasync after its writes. io_uring hands every
        // fdatasync to a worker thread; an O_DSYNC direct write inside the file it issues from
        // the shard's thread, the sync done in the kernel's completion.
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .read(true)
            .custom_flags(libc::O_DSYNC)
            .dma_open(&path)
            .await
            .map_err(std::io::Error::from)
            .with_context(|| format!("opening {} with O_DIRECT (log.dirs must be on a filesystem with O_DIRECT, such as XFS or ext4)", path.display()))?;
        self.preallocated_bytes = 0;
        // A plain (buffered) descriptor for reads: the tail page below, pread of batch headers
        // and sendfile for catch-up reads.
        let (new_dir, read_path) = (dir.clone(), path.clone());
        let read_file = off_shard(move || {
            if !existed {
                sync_dir(&new_dir)?;
            }
            File::open(&read_path).with_context(|| format!("opening {}", read_path.display()))
        })
        .await?;
        self.tail.clear();
        let aligned = align_down(start);
        if aligned < start {
            // A buffered read: after `truncate_to` (a buffered set_len, then the recovery scan)
            // an O_DIRECT read of this page through io_uring was refused with EOPNOTSUPP; the
            // buffered one reads the same bytes in every case.
            let read = crate::runtime::read_at(&read_file, aligned, (start - aligned) as usize).await.context("reading the tail page of the active segment")?;
            if read.len() < (start - aligned) as usize {
                bail!("segment {segment_base} is shorter than its recovered size");
            }
            self.tail.extend_from_slice(&read[..(start - aligned) as usize]);
        }
        let snapshot = partition.log.borrow_mut().take_pending_snapshot();
        if let Some((offset, state)) = snapshot {
            let snapshot_dir = dir.clone();
            let written = off_shard(move || match state.write_snapshot(&snapshot_dir, offset) {
                Ok(()) => {
                    ProducerState::prune_snapshots(&snapshot_dir, PRODUCER_SNAPSHOTS_KEPT);
                    Ok(Ok(()))
                }
                Err(e) => Ok(Err((e, state))),
            })
            .await?;
            if let Err((e, state)) = written {
                partition.log.borrow_mut().restore_pending_snapshot(offset, state);
                return Err(e);
            }
        }
        let read_file = Arc::new(read_file);
        if let Some(seg) = partition.log.borrow_mut().segments.iter_mut().find(|s| s.base_offset == segment_base) {
            seg.read_file = Some(read_file);
        }
        self.active = Some((segment_base, file));
        Ok(())
    }
}

/// Runs blocking file work (buffered writes, fsyncs of small files and directories) on the
/// executor's blocking pool, so that it never stalls the shard's other partitions and
/// connections.
async fn off_shard<T: Send + 'static>(work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    glommio::executor().spawn_blocking(work).await
}

fn segment_size(partition: &Partition, base: i64) -> u64 {
    partition.log.borrow().segments.iter().find(|s| s.base_offset == base).map(|s| s.size_bytes).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::copy_from_pieces;

    #[test]
    fn copies_any_range_of_pieces_laid_end_to_end() {
        let pieces: [&[u8]; 4] = [b"abc", b"", b"defg", b"h"];
        let whole = b"abcdefgh";
        for from in 0..whole.len() {
            for len in 0..=whole.len() - from {
                let mut out = vec![0; len];
                copy_from_pieces(&pieces, from, &mut out);
                assert_eq!(out, &whole[from..from + len], "from {from}, {len} bytes");
            }
        }
    }
}
