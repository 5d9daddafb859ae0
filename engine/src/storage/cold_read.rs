//! Cold reads: finding the byte range of a read older than the batch cache, in one segment
//! file, without holding the shard's thread while the disk answers.
//!
//! The range's ends are batch boundaries, and finding them takes batch headers from the file:
//! those from the offset index entry at or below the fetch offset to the batch that holds it,
//! and those from the last index entry below the read's byte limit up to the limit (the offset
//! index jumps over everything in between). Segments are written with O_DIRECT, so these pages
//! are not in the page cache and reading them waits for the disk: on the shard's thread that
//! stalls every partition and connection of the shard.
//!
//! So the walk is a state machine with no I/O of its own (quinn-proto style): [`ColdRead::step`]
//! works with the headers read so far and either finishes or asks for one more read of the file,
//! which the caller does: through io_uring on the fetch path (`Partition::read_up_to`), or with
//! a plain `pread` where blocking is fine (startup replay, tests). Each read brings a window of
//! the file that holds every header the walk may need next, up to [`HEADER_WINDOW_BYTES_MAX`], so
//! a read usually costs two reads of the file (one per end) rather than one per batch header.
//! The windows go through the page cache, where the sendfile of the range finds them again.

use std::fs::File;
use std::sync::Arc;

use shardlog_protocol::batch::{self, BatchHeader, BATCH_HEADER_BYTES};

use super::log::{PartitionLog, ReadError, ReadPiece, ReadResult};

/// Largest read of a segment file for batch headers. A window up to the next index entry (or
/// the read's byte limit) holds every header the walk needs there; with Kafka's default
/// `index.interval.bytes` (4 KiB) that is about 4 KiB plus one batch. Bounded so that a large
/// interval, or one huge batch, costs several small reads rather than one read of megabytes
/// that the sendfile would send anyway.
pub const HEADER_WINDOW_BYTES_MAX: usize = 64 << 10;

/// One read the walk needs: `len` bytes of `file` from `position` (all of them unless the file
/// is shorter, which would mean it lost bytes it had written).
#[derive(Debug)]
pub struct WindowRead {
    pub file: Arc<File>,
    pub position: u64,
    pub len: usize,
}

impl WindowRead {
    /// Does the read with `pread` on the calling thread: for callers that may block.
    pub fn read_blocking(&self) -> std::io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let mut bytes = vec![0u8; self.len];
        let mut filled = 0;
        while filled < bytes.len() {
            match self.file.read_at(&mut bytes[filled..], self.position + filled as u64)? {
                0 => break,
                n => filled += n,
            }
        }
        bytes.truncate(filled);
        Ok(bytes)
    }
}

/// What the walk wants next.
#[derive(Debug)]
pub enum Step {
    /// Read this, hand the bytes to [`ColdRead::fill`], and step again.
    Read(WindowRead),
    /// The read is complete.
    Done(ReadResult),
}

/// Bytes of a segment file from `position`: the headers of every batch that starts in it (with
/// a whole header in it) come without another read.
#[derive(Debug, Default)]
struct Window {
    position: u64,
    bytes: Vec<u8>,
}

impl Window {
    /// The header of the batch at `position`, if the window holds all of it. Err if the bytes
    /// there cannot be a batch (written bytes were CRC-checked at append, so this is damage).
    fn header_at(&self, position: u64) -> Result<Option<BatchHeader>, ReadError> {
        let Some(start) = position.checked_sub(self.position) else { return Ok(None) };
        let Some(bytes) = usize::try_from(start).ok().and_then(|s| self.bytes.get(s..s.checked_add(BATCH_HEADER_BYTES)?)) else { return Ok(None) };
        let bytes: &[u8; BATCH_HEADER_BYTES] = bytes.try_into().expect("sliced to the header's size");
        let (base_offset, size_bytes) = batch::peek_offset_and_size(bytes).expect("a whole header");
        if size_bytes < BATCH_HEADER_BYTES as i64 {
            return Err(ReadError::Storage(format!("damaged batch header at byte {position} of a segment file: batch size {size_bytes}")));
        }
        Ok(Some(batch::parse_header_unchecked(bytes, base_offset, size_bytes as usize)))
    }
}

#[derive(Debug)]
enum Phase {
    /// Choose the segment to read: the one holding the fetch offset, or the first after
    /// `after_segment` (a compacted segment may hold nothing at or after the offset).
    Choose { after_segment: Option<i64> },
    /// Walking the segment based at `segment_base` from `position` to the batch that holds the
    /// fetch offset, which starts at or before byte `found_by` (the next index entry's batch).
    Find { segment_base: i64, file: Arc<File>, position: u64, found_by: u64, written_bytes: u64 },
    /// The read starts at `start` and takes everything up to `end` so far; the batches from
    /// `end` are taken while they end by `limit` and start below the end offset.
    Extend { file: Arc<File>, start: u64, end: u64, limit: u64, written_bytes: u64 },
}

/// A read of one partition from its segment files, between reads of those files.
#[derive(Debug)]
pub struct ColdRead {
    offset: i64,
    max_bytes: usize,
    /// Only batches that start below this offset are read (the last stable offset for
    /// read_committed).
    end_offset: i64,
    result: ReadResult,
    phase: Phase,
    window: Window,
    /// The read jumped to an index entry and has not read the header there yet:
    /// `result.end_offset` is the entry's offset (the last of the batch at the jump's end), an
    /// upper bound until that header says where the batches read end.
    boundary_unread: bool,
}

impl ColdRead {
    /// A read from `offset` of up to about `max_bytes` (at least one whole batch), of batches that
    /// start below `end_offset`; `result` holds what the read answers besides the bytes.
    pub(super) fn new(offset: i64, max_bytes: usize, end_offset: i64, result: ReadResult) -> ColdRead {
        ColdRead { offset, max_bytes, end_offset, result, phase: Phase::Choose { after_segment: None }, window: Window::default(), boundary_unread: false }
    }

    /// Hands over the bytes of the read that the last step asked for.
    pub fn fill(&mut self, read: &WindowRead, bytes: Vec<u8>) -> Result<(), ReadError> {
        // Every read starts at a header that lies below the segment's written end, so a short
        // one means the file lost bytes it had: stop rather than ask for them again.
        if bytes.len() < BATCH_HEADER_BYTES {
            return Err(ReadError::Storage(format!(
                "segment file ends before its written bytes: {} bytes at byte {} where a batch header was expected",
                bytes.len(),
                read.position
            )));
        }
        self.window = Window { position: read.position, bytes };
        Ok(())
    }

    /// Goes as far as the bytes read so far allow. `log` is the partition's log as it is now:
    /// between steps it may have grown, rolled, or lost or replaced segments (retention,
    /// compaction), and the walk keeps to the file it started in, which stays readable.
    pub fn step(&mut self, log: &PartitionLog) -> Result<Step, ReadError> {
        // A cut in flight shortens the file this walk reads: nothing is read until it is done.
        if let Some(to) = log.truncating() {
            return Err(ReadError::Truncating(to));
        }
        loop {
            match &mut self.phase {
                Phase::Choose { after_segment } => {
                    let segments = &log.segments;
                    let from = match after_segment {
                        None => segments.partition_point(|s| s.base_offset <= self.offset).saturating_sub(1),
                        Some(base) => segments.partition_point(|s| s.base_offset <= *base),
                    };
                    let Some(seg) = segments[from..].iter().find(|s| s.next_offset > self.offset) else { return Ok(self.finish()) };
                    // A segment not yet opened for reads holds nothing written.
                    let Some(file) = seg.read_file.clone() else { return Ok(self.finish()) };
                    let relative = (self.offset - seg.base_offset).clamp(0, u32::MAX as i64) as u32;
                    let (_, position) = seg.index.lookup(relative);
                    // The batch holding the offset is the next entry's batch (which holds an
                    // offset past it) or one before it: the header window reaches that far.
                    let found_by = seg.index.next_after(relative).map_or(seg.written_bytes, |(_, p)| p as u64);
                    self.phase = Phase::Find { segment_base: seg.base_offset, file, position: position as u64, found_by, written_bytes: seg.written_bytes };
                    // The window holds another segment's bytes, if any: not this file's.
                    self.window = Window::default();
                }
                Phase::Find { segment_base, file, position, found_by, written_bytes } => {
                    if *position + BATCH_HEADER_BYTES as u64 > *written_bytes {
                        // Nothing at or after the offset here (compacted away): the next segment.
                        self.phase = Phase::Choose { after_segment: Some(*segment_base) };
                        continue;
                    }
                    let Some(header) = self.window.header_at(*position)? else {
                        // Up to the header of the last batch that can hold the offset.
                        let wanted = (*found_by).max(*position) + BATCH_HEADER_BYTES as u64 - *position;
                        let len = wanted.min(*written_bytes - *position).min(HEADER_WINDOW_BYTES_MAX as u64) as usize;
                        return Ok(Step::Read(WindowRead { file: file.clone(), position: *position, len }));
                    };
                    if header.last_offset() < self.offset {
                        *position += header.size_bytes as u64;
                        continue;
                    }
                    let (segment_base, file, start, written_bytes) = (*segment_base, file.clone(), *position, *written_bytes);
                    if header.base_offset >= self.end_offset {
                        return Ok(self.finish());
                    }
                    self.phase = self.found(log, segment_base, file, start, written_bytes, &header);
                }
                Phase::Extend { file, start, end, limit, written_bytes } if *end + BATCH_HEADER_BYTES as u64 > *limit => {
                    // A batch from `end` would not fit: its header alone passes the limit. Its
                    // base offset is where the read ends, if the jump left that unknown.
                    if self.boundary_unread && *end + BATCH_HEADER_BYTES as u64 <= *written_bytes {
                        let Some(header) = self.window.header_at(*end)? else {
                            return Ok(Step::Read(WindowRead { file: file.clone(), position: *end, len: BATCH_HEADER_BYTES }));
                        };
                        settle_boundary(&mut self.boundary_unread, &mut self.result, &header);
                    }
                    let piece = ReadPiece::File { file: file.clone(), position: *start, len: (*end - *start) as usize };
                    return Ok(self.finish_with(piece));
                }
                Phase::Extend { file, start, end, limit, written_bytes } => {
                    let Some(header) = self.window.header_at(*end)? else {
                        let len = (*limit - *end).min(HEADER_WINDOW_BYTES_MAX as u64) as usize;
                        return Ok(Step::Read(WindowRead { file: file.clone(), position: *end, len }));
                    };
                    let batch_end = *end + header.size_bytes as u64;
                    settle_boundary(&mut self.boundary_unread, &mut self.result, &header);
                    if batch_end > *written_bytes || batch_end - *start > self.max_bytes as u64 || header.base_offset >= self.end_offset {
                        let piece = ReadPiece::File { file: file.clone(), position: *start, len: (*end - *start) as usize };
                        return Ok(self.finish_with(piece));
                    }
                    *end = batch_end;
                    self.result.records += header.last_offset_delta as u64 + 1;
                    self.result.end_offset = header.last_offset() + 1;
                }
            }
        }
    }

    /// The batch `first` at `start` holds the fetch offset: it is read whole, and the read jumps
    /// with the offset index towards its byte limit (every batch before an index entry is whole
    /// and ends below the entry's offset, so the headers jumped over are never read).
    fn found(&mut self, log: &PartitionLog, segment_base: i64, file: Arc<File>, start: u64, written_bytes: u64, first: &BatchHeader) -> Phase {
        let mut end = start + first.size_bytes as u64;
        self.result.records += first.last_offset_delta as u64 + 1;
        self.result.end_offset = first.last_offset() + 1;
        // The index describes the file the walk read only while the segment still has it:
        // compaction may have replaced it, retention removed it. Without it the walk goes on
        // header by header, which is slower and as correct.
        let same_segment = log.segments.iter().find(|s| s.base_offset == segment_base && s.read_file.as_ref().is_some_and(|f| Arc::ptr_eq(f, &file)));
        let written_bytes = same_segment.map_or(written_bytes, |s| s.written_bytes.max(written_bytes));
        let limit = start.saturating_add(self.max_bytes as u64).min(written_bytes);
        if let Some(seg) = same_segment {
            let relative_offset_max = (self.end_offset - seg.base_offset).clamp(0, u32::MAX as i64) as u32;
            if let Some((relative, position)) = seg.index.last_boundary(end, limit, relative_offset_max) {
                // The entry names the last offset of the batch at `position`: the batches
                // jumped over end before it. Where exactly is known once that batch's header is
                // read (`boundary_unread`); the records count for the metrics (a compacted range
                // counts its gaps) is corrected then too.
                let boundary_offset = seg.base_offset + relative as i64;
                self.result.records += (boundary_offset - self.result.end_offset).max(0) as u64;
                self.result.end_offset = boundary_offset;
                self.boundary_unread = true;
                end = position as u64;
            }
        }
        Phase::Extend { file, start, end, limit, written_bytes }
    }

    /// The read as it stands, with nothing from the files.
    fn finish(&mut self) -> Step {
        Step::Done(std::mem::take(&mut self.result))
    }

    fn finish_with(&mut self, piece: ReadPiece) -> Step {
        self.result.bytes += piece.len();
        self.result.pieces.push(piece);
        self.finish()
    }
}

/// `header` is the batch's at the index entry the read jumped to: the batches before it end
/// below its base offset, not at the entry's offset.
fn settle_boundary(boundary_unread: &mut bool, result: &mut ReadResult, header: &BatchHeader) {
    if std::mem::take(boundary_unread) {
        let overstated = (result.end_offset - header.base_offset).max(0) as u64;
        result.records = result.records.saturating_sub(overstated);
        result.end_offset = header.base_offset;
    }
}
