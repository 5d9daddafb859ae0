//! One segment of a partition log: `<base offset>.log` with its `.index` and `.timeindex`.
//!
//! A segment knows its logical size (everything appended), how much of it has reached the file,
//! and its indexes. The file I/O of appends is done by the partition's flusher (see `flusher.rs`);
//! this file holds the bookkeeping, the recovery scan, and the index files' format.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use shardlog_protocol::batch::{self, BatchHeader, BATCH_HEADER_BYTES};

use super::disk::write_synced;
use super::index::{OffsetIndex, TimeIndex, OFFSET_ENTRY_BYTES};

pub fn log_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{base_offset:020}.log"))
}
pub fn index_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{base_offset:020}.index"))
}
pub fn time_index_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{base_offset:020}.timeindex"))
}

pub struct Segment {
    pub base_offset: i64,
    /// Offset after the last batch appended.
    pub next_offset: i64,
    /// Bytes appended, whether or not they have reached the file yet.
    pub size_bytes: u64,
    /// Bytes written to the file (possibly not yet durable). Reads from the file stop here.
    pub written_bytes: u64,
    pub index: OffsetIndex,
    pub time_index: TimeIndex,
    pub bytes_since_index_entry: u64,
    pub max_timestamp: i64,
    /// The last offset of the first batch that reached `max_timestamp` (-1: none), as Kafka's
    /// `offsetOfMaxTimestampSoFar`: ListOffsets MAX_TIMESTAMP reads that batch.
    pub offset_of_max_timestamp: i64,
    /// Wall-clock time the segment was opened for appends, for `log.roll.ms` when its first
    /// batch has no timestamp.
    pub created_ms: u64,
    /// The max timestamp of the segment's first batch (-1: none yet): `log.roll.ms` counts from it.
    pub first_batch_timestamp: i64,
    /// A plain (buffered) descriptor for reads: pread for headers, sendfile for catch-up reads.
    pub read_file: Option<Arc<File>>,
    /// Sealed segments are complete: file truncated to size, indexes written and fsynced.
    pub sealed: bool,
}

impl Segment {
    pub fn new(base_offset: i64, now_ms: u64) -> Segment {
        Segment {
            base_offset,
            next_offset: base_offset,
            size_bytes: 0,
            written_bytes: 0,
            index: OffsetIndex::default(),
            time_index: TimeIndex::default(),
            bytes_since_index_entry: 0,
            max_timestamp: -1,
            offset_of_max_timestamp: -1,
            created_ms: now_ms,
            first_batch_timestamp: -1,
            read_file: None,
            sealed: false,
        }
    }

    /// Bookkeeping for one batch appended at `position` (= the old `size_bytes`).
    pub fn record_batch(&mut self, header: &BatchHeader, index_interval_bytes: u64) {
        let position = self.size_bytes;
        if self.size_bytes == 0 {
            self.first_batch_timestamp = header.max_timestamp;
        }
        // As Kafka's LogSegment.append: an entry names the batch's last offset and where the
        // batch starts, once more than the interval has been written since the last entry, so
        // that kafka-dump-log finds each entry's offset at the end of the batch it points at.
        if self.size_bytes > 0 && self.bytes_since_index_entry > index_interval_bytes {
            self.index.push((header.last_offset() - self.base_offset) as u32, position as u32);
            self.bytes_since_index_entry = 0;
        }
        let timestamp = header.max_timestamp;
        if timestamp > self.max_timestamp {
            self.max_timestamp = timestamp;
            self.offset_of_max_timestamp = header.last_offset();
            self.time_index.push_if_greater(timestamp, (header.last_offset() - self.base_offset) as u32);
        }
        self.bytes_since_index_entry += header.size_bytes as u64;
        self.size_bytes += header.size_bytes as u64;
        self.next_offset = header.last_offset() + 1;
    }

    /// Finds the file position of the batch that holds `offset`, reading batch headers from
    /// the file after the nearest index entry. Returns None past the written end. Blocking.
    pub fn find_position(&self, offset: i64) -> Result<Option<(u64, BatchHeader)>> {
        let Some(file) = &self.read_file else { return Ok(None) };
        let relative = (offset - self.base_offset).max(0) as u32;
        let (_, position) = self.index.lookup(relative);
        find_position_in(file, position as u64, offset, self.written_bytes)
    }

    /// Reads the header of the batch at `position`, if a whole one was written there. Blocking.
    pub fn header_at(&self, position: u64) -> Result<Option<BatchHeader>> {
        let Some(file) = &self.read_file else { return Ok(None) };
        header_in(file, position, self.written_bytes)
    }
}

/// The file position and header of the batch that holds `offset`, walking batch headers from
/// `position` (a batch boundary at or before it) within the first `written_bytes` of `file`.
/// None past the written end. Blocking: a `pread` per header.
pub fn find_position_in(file: &File, mut position: u64, offset: i64, written_bytes: u64) -> Result<Option<(u64, BatchHeader)>> {
    let mut header_bytes = [0u8; BATCH_HEADER_BYTES];
    while position + BATCH_HEADER_BYTES as u64 <= written_bytes {
        file.read_exact_at(&mut header_bytes, position).with_context(|| format!("reading batch header at byte {position}"))?;
        let (base, size) = batch::peek_offset_and_size(&header_bytes).expect("12 bytes");
        let header = batch::parse_header_unchecked(&header_bytes, base, size as usize);
        if header.last_offset() >= offset {
            return Ok(Some((position, header)));
        }
        position += size as u64;
    }
    Ok(None)
}

/// The header of the batch at `position` of `file`, if a whole batch lies there within the
/// first `written_bytes`. Blocking: one `pread`.
pub fn header_in(file: &File, position: u64, written_bytes: u64) -> Result<Option<BatchHeader>> {
    if position + BATCH_HEADER_BYTES as u64 > written_bytes {
        return Ok(None);
    }
    let mut header_bytes = [0u8; BATCH_HEADER_BYTES];
    file.read_exact_at(&mut header_bytes, position)?;
    let (base, size) = batch::peek_offset_and_size(&header_bytes).expect("12 bytes");
    if position + size as u64 > written_bytes {
        return Ok(None);
    }
    Ok(Some(batch::parse_header_unchecked(&header_bytes, base, size as usize)))
}

/// What a recovery scan of one segment file found.
pub struct ScanResult {
    pub valid_bytes: u64,
    pub file_bytes: u64,
    pub next_offset: i64,
    pub index: OffsetIndex,
    pub time_index: TimeIndex,
    pub bytes_since_index_entry: u64,
    pub max_timestamp: i64,
    pub offset_of_max_timestamp: i64,
    /// Why the scan stopped before the end of the file, if it did.
    pub stopped_because: Option<String>,
}

/// Walks every batch of a segment file, checking each CRC-32C and that offsets only grow, and
/// rebuilds the indexes. Stops at the first bad or incomplete batch: everything after it is a
/// torn or unacknowledged tail (O_DIRECT writes also leave zero padding there).
pub fn scan(path: &Path, base_offset: i64, index_interval_bytes: u64) -> Result<ScanResult> {
    let mut file = File::open(path).with_context(|| format!("opening {} for recovery", path.display()))?;
    let file_bytes = file.seek(SeekFrom::End(0))?;
    file.seek(SeekFrom::Start(0))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut segment = Segment::new(base_offset, 0);
    let mut buffer = Vec::new();
    let mut stopped_because = None;
    let mut expected_offset = base_offset;
    loop {
        let mut overhead = [0u8; batch::BATCH_LOG_OVERHEAD_BYTES];
        match read_fully(&mut reader, &mut overhead)? {
            0 => break,
            n if n < overhead.len() => {
                stopped_because = Some(format!("{n} stray bytes at the end"));
                break;
            }
            _ => {}
        }
        let (batch_base, size) = batch::peek_offset_and_size(&overhead).expect("12 bytes");
        if size < BATCH_HEADER_BYTES as i64 || segment.size_bytes + size as u64 > file_bytes {
            stopped_because = Some(format!("batch at byte {} has impossible size {size}", segment.size_bytes));
            break;
        }
        buffer.resize(size as usize, 0);
        buffer[..overhead.len()].copy_from_slice(&overhead);
        if read_fully(&mut reader, &mut buffer[overhead.len()..])? < size as usize - overhead.len() {
            stopped_because = Some(format!("batch at byte {} is truncated", segment.size_bytes));
            break;
        }
        let header = match batch::parse_header(&buffer, segment.size_bytes as usize, true) {
            Ok(h) => h,
            Err(e) => {
                stopped_because = Some(e.to_string());
                break;
            }
        };
        if batch_base < expected_offset || header.last_offset() - base_offset > u32::MAX as i64 {
            stopped_because = Some(format!("batch at byte {} has offset {batch_base}, expected at least {expected_offset}", segment.size_bytes));
            break;
        }
        expected_offset = header.last_offset() + 1;
        segment.record_batch(&header, index_interval_bytes);
    }
    Ok(ScanResult {
        valid_bytes: segment.size_bytes,
        file_bytes,
        next_offset: segment.next_offset,
        index: segment.index,
        time_index: segment.time_index,
        bytes_since_index_entry: segment.bytes_since_index_entry,
        max_timestamp: segment.max_timestamp,
        offset_of_max_timestamp: segment.offset_of_max_timestamp,
        stopped_because,
    })
}

fn read_fully(reader: &mut impl Read, buf: &mut [u8]) -> Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Writes a segment's offset and time indexes durably, in Kafka's formats and nothing else:
/// `kafka-dump-log.sh` reads them, and Kafka trims a sealed segment's index files to their
/// entries, as these are. Blocking: the flusher runs it off the shard.
pub(super) fn write_indexes(dir: &Path, base: i64, index: &OffsetIndex, time_index: &TimeIndex) -> Result<()> {
    write_synced(&index_path(dir, base), &index.to_bytes())?;
    write_synced(&time_index_path(dir, base), &time_index.to_bytes())?;
    Ok(())
}

/// A segment's indexes as `write_indexes` left them, with what recovery learns from them.
pub(super) struct LoadedIndexes {
    pub index: OffsetIndex,
    pub time_index: TimeIndex,
    pub next_offset: i64,
    pub max_timestamp: i64,
    pub offset_of_max_timestamp: i64,
}

/// Loads a segment's offset and time indexes; None if they are missing or damaged (recovery
/// then rebuilds them by a scan). The segment's next offset is not in them: a sealed segment
/// ends where the next one begins (`next_base`), and the active one (None) where its last
/// batch ends, found by reading the headers after its last index entries (a bounded walk).
///
/// Earlier shardlog versions wrote an 8-byte trailer after the offset index's entries, holding the
/// segment's next offset. It is recognized by being exactly that offset and dropped; a real
/// entry that happened to read as the next offset would only cost the index one entry.
pub(super) fn load_indexes(dir: &Path, base: i64, log_file: &File, file_bytes: u64, next_base: Option<i64>) -> Option<LoadedIndexes> {
    let raw = std::fs::read(index_path(dir, base)).ok()?;
    let time_index = std::fs::read(time_index_path(dir, base)).ok()?;
    if !raw.len().is_multiple_of(OFFSET_ENTRY_BYTES) {
        tracing::warn!(base, bytes = raw.len(), "offset index damaged (not whole entries); rebuilding");
        return None;
    }
    let next_offset = match next_base {
        Some(next) => next,
        None => {
            // The walk starts at the entry before the last one: in a file with the old trailer
            // the last 8 bytes are not an entry.
            let entries = raw.len() / OFFSET_ENTRY_BYTES;
            let from = match entries.checked_sub(2) {
                Some(i) => u32::from_be_bytes(raw[i * OFFSET_ENTRY_BYTES + 4..i * OFFSET_ENTRY_BYTES + 8].try_into().expect("4 bytes")) as u64,
                None => 0,
            };
            match end_offset_after(log_file, from, file_bytes) {
                Some(Some(next)) => next,
                Some(None) => base,
                None => {
                    tracing::warn!(base, "the active segment's batches do not end at its file's end; rebuilding its indexes");
                    return None;
                }
            }
        }
    };
    if next_offset < base {
        return None;
    }
    let entries = match raw.len().checked_sub(OFFSET_ENTRY_BYTES) {
        Some(cut) if i64::from_be_bytes(raw[cut..].try_into().expect("8 bytes")) == next_offset => &raw[..cut],
        _ => &raw[..],
    };
    let index = OffsetIndex::from_bytes(entries, file_bytes.max(1)).map_err(|e| tracing::warn!(base, error = %e, "offset index damaged; rebuilding")).ok()?;
    let time_index = TimeIndex::from_bytes(&time_index).map_err(|e| tracing::warn!(base, error = %e, "time index damaged; rebuilding")).ok()?;
    let (max_timestamp, offset_of_max_timestamp) = time_index.last().map_or((-1, -1), |(t, relative)| (t, base + relative as i64));
    Some(LoadedIndexes { index, time_index, next_offset, max_timestamp, offset_of_max_timestamp })
}

/// The offset after the last batch of the file, walking batch headers from `position` (a batch
/// boundary): Some(None) if no batch starts there, None if the batches do not end exactly at
/// `file_bytes`.
fn end_offset_after(file: &File, mut position: u64, file_bytes: u64) -> Option<Option<i64>> {
    let mut next = None;
    let mut overhead = [0u8; batch::BATCH_LOG_OVERHEAD_BYTES];
    while position < file_bytes {
        file.read_exact_at(&mut overhead, position).ok()?;
        let (base, size) = batch::peek_offset_and_size(&overhead)?;
        if size < BATCH_HEADER_BYTES as i64 || position + size as u64 > file_bytes {
            return None;
        }
        let mut header = [0u8; BATCH_HEADER_BYTES];
        file.read_exact_at(&mut header, position).ok()?;
        next = Some(batch::parse_header_unchecked(&header, base, size as usize).last_offset() + 1);
        position += size as u64;
    }
    Some(next)
}
