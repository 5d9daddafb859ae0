//! ListOffsets MAX_TIMESTAMP (-3, KIP-734): the offset and timestamp of the first record with
//! the partition's largest timestamp, as Kafka answers it.
//!
//! Each segment knows its max timestamp and the last offset of the first batch that reached it
//! (the time index's last entry, or the active segment's bookkeeping), so finding the batch
//! costs nothing; which of its records holds the timestamp needs the batch itself, read on the
//! blocking pool when it is no longer in the cache, and decompressed there if it must be.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;
use shardlog_protocol::batch::{self, BATCH_HEADER_BYTES};
use shardlog_protocol::compression::{self, Codec};

use super::log::PartitionLog;

/// The most a batch is decompressed to when looking for a record in it (the one with the max
/// timestamp, or the first at a timestamp); past it the answer names the batch, as Kafka's
/// shallow offsets would.
const DECOMPRESSED_BYTES_MAX: usize = 64 << 20;

/// `f` of the header and records of one whole batch (decompressed, up to
/// [`DECOMPRESSED_BYTES_MAX`]); None if the batch cannot be read that far.
pub(super) fn with_records<T>(batch_bytes: &[u8], f: impl FnOnce(&batch::BatchHeader, &[batch::RecordView<'_>]) -> T) -> Option<T> {
    let header = batch::parse_header(batch_bytes, 0, false).ok()?;
    let section = batch_bytes.get(BATCH_HEADER_BYTES..header.size_bytes)?;
    let decompressed;
    let body = if header.compression() == 0 {
        section
    } else {
        decompressed = compression::decompress(Codec::of(header.attributes, section).ok()?, section, DECOMPRESSED_BYTES_MAX).ok()?;
        &decompressed[..]
    };
    let records = batch::records_of(&header, body)?;
    Some(f(&header, &records))
}

/// What the log found for a MAX_TIMESTAMP lookup.
pub enum MaxTimestampLookup {
    /// No record has a timestamp (an empty log): Kafka answers offset -1, timestamp -1.
    Nothing,
    /// The batch that holds the answer, still to be read: [`MaxTimestampRead::run`], off the shard.
    Read(MaxTimestampRead),
}

/// The batch ending at `last_offset` reached `timestamp`, the partition's largest.
pub struct MaxTimestampRead {
    pub timestamp: i64,
    pub last_offset: i64,
    source: Source,
}

enum Source {
    Memory(Bytes),
    /// The batch starts at or after `position`, a batch boundary before `written_bytes`.
    File {
        file: Arc<File>,
        position: u64,
        written_bytes: u64,
    },
}

impl PartitionLog {
    /// Where the record with the largest timestamp is: the first segment with the largest max
    /// timestamp (as Kafka picks it), and in it the first batch that reached it. Touches no file.
    pub fn max_timestamp_lookup(&self) -> MaxTimestampLookup {
        let mut best: Option<&super::segment::Segment> = None;
        for seg in self.segments.iter().filter(|s| s.max_timestamp >= 0 && s.offset_of_max_timestamp >= 0) {
            if best.is_none_or(|b| seg.max_timestamp > b.max_timestamp) {
                best = Some(seg);
            }
        }
        let Some(seg) = best else { return MaxTimestampLookup::Nothing };
        let (timestamp, last_offset) = (seg.max_timestamp, seg.offset_of_max_timestamp);
        if self.cache.first_offset().is_some_and(|first| first <= last_offset) {
            if let Some(cached) = self.cache.find_timestamp(timestamp, last_offset).filter(|c| c.last_offset == last_offset) {
                return MaxTimestampLookup::Read(MaxTimestampRead { timestamp, last_offset, source: Source::Memory(cached.bytes.contiguous()) });
            }
        }
        // Not in the cache, so written: the cache holds every batch the file does not yet.
        let source = match &seg.read_file {
            Some(file) => {
                let relative = (last_offset - seg.base_offset).clamp(0, u32::MAX as i64) as u32;
                Source::File { file: file.clone(), position: seg.index.lookup(relative).1 as u64, written_bytes: seg.written_bytes }
            }
            None => Source::Memory(Bytes::new()),
        };
        MaxTimestampLookup::Read(MaxTimestampRead { timestamp, last_offset, source })
    }
}

impl MaxTimestampRead {
    /// (offset, timestamp) of the first record with the max timestamp. Blocking when the batch
    /// is in a file: run it on the blocking pool. A batch that cannot be opened (gone since the
    /// lookup, malformed, too large decompressed) is answered with its last offset.
    pub fn run(self) -> Result<(i64, i64)> {
        let bytes = match self.source {
            Source::Memory(bytes) => bytes.to_vec(),
            Source::File { file, position, written_bytes } => read_batch(&file, position, written_bytes, self.last_offset)?.unwrap_or_default(),
        };
        let offset = first_record_with(&bytes, self.timestamp).unwrap_or(self.last_offset);
        Ok((offset, self.timestamp))
    }
}

/// The batch holding `offset`, walking batch headers from `position`.
fn read_batch(file: &File, mut position: u64, written_bytes: u64, offset: i64) -> Result<Option<Vec<u8>>> {
    let mut header = [0u8; BATCH_HEADER_BYTES];
    while position + BATCH_HEADER_BYTES as u64 <= written_bytes {
        file.read_exact_at(&mut header, position).with_context(|| format!("reading a batch header at byte {position}"))?;
        let Some((base, size)) = batch::peek_offset_and_size(&header) else { return Ok(None) };
        if size < BATCH_HEADER_BYTES as i64 || position + size as u64 > written_bytes {
            return Ok(None);
        }
        let h = batch::parse_header_unchecked(&header, base, size as usize);
        if h.last_offset() >= offset {
            let mut bytes = vec![0u8; size as usize];
            file.read_exact_at(&mut bytes, position).with_context(|| format!("reading the batch at byte {position}"))?;
            return Ok(Some(bytes));
        }
        position += size as u64;
    }
    Ok(None)
}

/// The offset of the batch's first record whose timestamp is `timestamp` (with LogAppendTime,
/// every record has the batch's: the first record), as Kafka's `offsetOfMaxTimestamp`.
fn first_record_with(batch_bytes: &[u8], timestamp: i64) -> Option<i64> {
    with_records(batch_bytes, |header, records| {
        if header.attributes & batch::ATTRIBUTE_LOG_APPEND_TIME != 0 {
            return records.first().map(|r| r.offset);
        }
        records.iter().find(|r| r.timestamp == timestamp).map(|r| r.offset)
    })?
}
