//! ListOffsets by timestamp: the first offset whose record has a timestamp at or after the one
//! asked for, as Kafka's `UnifiedLog.fetchOffsetByTimestamp` answers it: in the first segment
//! whose max timestamp reaches it, from the time index's entry, the first record at or after
//! the log start offset with such a timestamp (compressed batches are opened to find it; with
//! LogAppendTime every record has the batch's timestamp).
//!
//! The segments' max timestamps and time indexes are in memory and say which segment to look in
//! and from which offset; the batch headers after that offset are in the segment file. Segments
//! are written with O_DIRECT, so those pages are not in the page cache and reading them waits
//! for the disk: on the shard's thread that would stall every partition and connection of the
//! shard. So the lookup goes one segment at a time, as a step with no I/O of its own (like
//! `cold_read`): [`PartitionLog::timestamp_lookup`] answers from the batch cache, or names the
//! work that one segment needs (a file walk, or decompressing a cached batch), which
//! [`TimestampRead::run`] does where blocking is fine (the blocking pool on the ListOffsets
//! path). A segment whose file has no answer sends the lookup on to the next segment, chosen
//! from the log as it is then.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use anyhow::{Context, Result};
use shardlog_protocol::batch;

use super::cache::CachedBatch;
use super::log::PartitionLog;
use super::segment;

/// What the log can say about a timestamp without reading a file.
#[derive(Debug)]
pub enum TimestampLookup {
    /// The answer: (offset, timestamp), or None when no record reaches the timestamp.
    Done(Option<(i64, i64)>),
    /// One segment needs work that may block: [`TimestampRead::run`], off the shard. If it has
    /// no answer, look again with `after_segment` = [`TimestampRead::segment_base`].
    Read(TimestampRead),
}

/// The search of one segment for the first record at or after `timestamp`.
#[derive(Debug)]
pub struct TimestampRead {
    timestamp: i64,
    /// Records below it (the log start offset when looked up) are not answers.
    start_offset: i64,
    segment_base: i64,
    source: Source,
}

#[derive(Debug)]
enum Source {
    /// A cached batch that reaches the timestamp, compressed: it is opened off the shard.
    Memory(Found),
    /// The segment file, walked from the batch that holds offset `from`.
    File {
        file: Arc<File>,
        /// A batch boundary at or before the batch holding `from` (the offset index's entry).
        position: u64,
        from: i64,
        written_bytes: u64,
        /// The batch cache's answer for this segment, used when the file holds the batch of
        /// `from` but not the one that reaches the timestamp (it is not written yet).
        cached: Option<Found>,
    },
}

/// A cached batch that reaches the timestamp, as the blocking pool's thread searches it: its
/// pieces, without the shard's count of the request buffer they are in (shard-local).
#[derive(Debug)]
struct Found {
    base_offset: i64,
    max_timestamp: i64,
    pieces: Vec<bytes::Bytes>,
}

impl Found {
    fn of(cached: &CachedBatch) -> Found {
        Found { base_offset: cached.base_offset, max_timestamp: cached.max_timestamp, pieces: cached.bytes.pieces().cloned().collect() }
    }

    /// Its bytes in one buffer (copied, off the shard, when in two pieces).
    fn bytes(&self) -> bytes::Bytes {
        match &self.pieces[..] {
            [one] => one.clone(),
            pieces => bytes::Bytes::from(pieces.concat()),
        }
    }
}

impl PartitionLog {
    /// The lookup of `timestamp` in the first segment after `after_segment` (None: from the
    /// first segment) whose max timestamp reaches it. Touches no file.
    pub fn timestamp_lookup(&self, timestamp: i64, after_segment: Option<i64>) -> TimestampLookup {
        let start_offset = self.log_start_offset;
        let candidates = self.segments.iter().filter(|s| after_segment.is_none_or(|after| s.base_offset > after));
        for seg in candidates {
            if seg.max_timestamp < timestamp || seg.next_offset == seg.base_offset || seg.next_offset <= start_offset {
                continue;
            }
            // As Kafka: the offset index is looked up at the time index's offset or the log
            // start, whichever is later.
            let from = (seg.base_offset + seg.time_index.scan_start(timestamp) as i64).max(start_offset);
            if self.cache.first_offset().is_some_and(|f| f <= from) {
                // The cache holds the batch of `from` and everything after it: no file to read.
                let mut after = from;
                while let Some(cached) = self.cache.find_timestamp(timestamp, after) {
                    let bytes = cached.bytes.contiguous();
                    if is_compressed(&bytes) {
                        let source = Source::Memory(Found { base_offset: cached.base_offset, max_timestamp: cached.max_timestamp, pieces: vec![bytes] });
                        return TimestampLookup::Read(TimestampRead { timestamp, start_offset, segment_base: seg.base_offset, source });
                    }
                    match search_batch(&bytes, timestamp, start_offset) {
                        Some(Some(answer)) => return TimestampLookup::Done(Some(answer)),
                        Some(None) => after = cached.last_offset + 1,
                        None => return TimestampLookup::Done(Some(shallow(cached.base_offset, cached.max_timestamp, start_offset))),
                    }
                }
                return TimestampLookup::Done(None);
            }
            let cached = self.cache.find_timestamp(timestamp, from).map(|c| Found::of(&c));
            // A segment not yet opened for reads has nothing written: Kafka's walk finds no batch
            // there, and neither does this one.
            let Some(file) = &seg.read_file else { continue };
            let relative = (from - seg.base_offset).max(0) as u32;
            let (_, position) = seg.index.lookup(relative);
            let source = Source::File { file: file.clone(), position: position as u64, from, written_bytes: seg.written_bytes, cached };
            return TimestampLookup::Read(TimestampRead { timestamp, start_offset, segment_base: seg.base_offset, source });
        }
        TimestampLookup::Done(None)
    }

    /// The first offset at or after the log start whose record has a timestamp at or after
    /// `timestamp`, with that timestamp. Blocking: the segment files are read with `pread` on
    /// this thread, so this is for tests and tools. ListOffsets runs
    /// [`Self::timestamp_lookup`]'s reads on the blocking pool.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<(i64, i64)>> {
        let mut after_segment = None;
        // Bounded by the segments: each step looks only past the one before.
        loop {
            match self.timestamp_lookup(timestamp, after_segment) {
                TimestampLookup::Done(answer) => return Ok(answer),
                TimestampLookup::Read(read) => {
                    after_segment = Some(read.segment_base());
                    if let Some(answer) = read.run()? {
                        return Ok(Some(answer));
                    }
                }
            }
        }
    }
}

impl TimestampRead {
    /// The segment searched: the next lookup, if this one has no answer, starts after it.
    pub fn segment_base(&self) -> i64 {
        self.segment_base
    }

    /// Finds the first record at or after the timestamp in the segment: walks the file from the
    /// batch holding `from` to the first batch that reaches it, and opens that batch. Blocking:
    /// run it on the blocking pool. None: the segment has no answer, look in the next one. The
    /// file stays readable if the segment has since been removed or replaced (retention,
    /// compaction): the walk then answers for the log as it was looked up.
    pub fn run(self) -> Result<Option<(i64, i64)>> {
        let (timestamp, start_offset) = (self.timestamp, self.start_offset);
        let (file, position, from, written_bytes, cached) = match self.source {
            Source::Memory(c) => return Ok(Some(answer_from(&c, timestamp, start_offset))),
            Source::File { file, position, from, written_bytes, cached } => (file, position, from, written_bytes, cached),
        };
        let Some((mut position, _)) = segment::find_position_in(&file, position, from, written_bytes)? else { return Ok(None) };
        while let Some(h) = segment::header_in(&file, position, written_bytes)? {
            if h.max_timestamp >= timestamp && h.last_offset() >= start_offset {
                let mut bytes = vec![0u8; h.size_bytes];
                file.read_exact_at(&mut bytes, position).with_context(|| format!("reading the batch at byte {position}"))?;
                match search_batch(&bytes, timestamp, start_offset) {
                    Some(Some(answer)) => return Ok(Some(answer)),
                    Some(None) => {} // its records at or after the start are all older
                    None => return Ok(Some(shallow(h.base_offset, h.max_timestamp, start_offset))),
                }
            }
            position += h.size_bytes as u64;
        }
        Ok(cached.map(|c| answer_from(&c, timestamp, start_offset)))
    }
}

fn is_compressed(batch_bytes: &[u8]) -> bool {
    batch::parse_header(batch_bytes, 0, false).is_ok_and(|h| h.compression() != 0)
}

/// The answer a cached batch that reaches `timestamp` gives (see [`search_batch`]); one whose
/// records at or after the start are all older answers shallowly too.
fn answer_from(cached: &Found, timestamp: i64, start_offset: i64) -> (i64, i64) {
    search_batch(&cached.bytes(), timestamp, start_offset).flatten().unwrap_or_else(|| shallow(cached.base_offset, cached.max_timestamp, start_offset))
}

/// The answer of a batch that cannot be opened (malformed, too large decompressed): the batch
/// itself, its base offset (or the log start inside it) with its max timestamp.
fn shallow(base_offset: i64, max_timestamp: i64, start_offset: i64) -> (i64, i64) {
    (base_offset.max(start_offset), max_timestamp)
}

/// The first record of the batch at or after `start_offset` whose timestamp is at or after
/// `timestamp`, with that timestamp, as Kafka's `FileRecords.searchForTimestamp` finds it:
/// Some(None) if the batch has none, None if it cannot be opened.
fn search_batch(batch_bytes: &[u8], timestamp: i64, start_offset: i64) -> Option<Option<(i64, i64)>> {
    super::max_timestamp::with_records(batch_bytes, |header, records| {
        let log_append_time = header.attributes & batch::ATTRIBUTE_LOG_APPEND_TIME != 0;
        records.iter().filter(|r| r.offset >= start_offset).find_map(|r| {
            // With LogAppendTime a record's timestamp is the batch's (Kafka's `Record.timestamp`).
            let record_timestamp = if log_append_time { header.max_timestamp } else { r.timestamp };
            (record_timestamp >= timestamp).then_some((r.offset, record_timestamp))
        })
    })
}
