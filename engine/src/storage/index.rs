//! Offset and time indexes, in Kafka's on-disk formats.
//!
//! `.index`: 8-byte entries, (relative offset u32, file position u32), big-endian, sparse: one
//! entry every `log.index.interval.bytes` of log, naming the last offset of the batch that
//! starts at the position, as Kafka writes them. Files written by shardlog before 0.1's
//! Kafka-exact indexes name the batch's base offset instead; every lookup here only relies on
//! "the batch at the position holds the entry's offset", which both kinds satisfy, so old
//! files are read as they are. `.timeindex`: 12-byte entries, (timestamp i64, relative offset
//! u32), added when a batch raises the segment's max timestamp.
//! Indexes live in memory while a segment is active and are written when it is sealed or the
//! broker shuts down cleanly; after a crash, the active segment's indexes are rebuilt by scanning.

use anyhow::{bail, Result};

pub const OFFSET_ENTRY_BYTES: usize = 8;
pub const TIME_ENTRY_BYTES: usize = 12;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OffsetIndex {
    entries: Vec<(u32, u32)>,
}

impl OffsetIndex {
    pub fn push(&mut self, relative_offset: u32, position: u32) {
        if let Some(&(last_offset, last_position)) = self.entries.last() {
            assert!(relative_offset > last_offset && position > last_position, "offset index must grow");
        }
        self.entries.push((relative_offset, position));
    }

    /// The entry with the largest relative offset at or below `relative_offset`, or (0, 0):
    /// the batch at its position starts at or below `relative_offset`, so a scan from there
    /// finds it.
    pub fn lookup(&self, relative_offset: u32) -> (u32, u32) {
        let i = self.entries.partition_point(|&(o, _)| o <= relative_offset);
        if i == 0 {
            (0, 0)
        } else {
            self.entries[i - 1]
        }
    }

    /// The first entry with a relative offset above `relative_offset`: the batch holding that
    /// offset is the entry's batch or one before it.
    pub fn next_after(&self, relative_offset: u32) -> Option<(u32, u32)> {
        self.entries.get(self.entries.partition_point(|&(o, _)| o <= relative_offset)).copied()
    }

    /// The last entry whose position is in `after_position..=up_to_position` and whose
    /// relative offset is at most `relative_offset_max`: a batch boundary a read can jump to
    /// without reading the headers of the batches before it (they all end below the entry's
    /// offset).
    pub fn last_boundary(&self, after_position: u64, up_to_position: u64, relative_offset_max: u32) -> Option<(u32, u32)> {
        let end = self.entries.partition_point(|&(o, p)| (p as u64) <= up_to_position && o <= relative_offset_max);
        self.entries[..end].last().copied().filter(|&(_, p)| p as u64 >= after_position)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * OFFSET_ENTRY_BYTES);
        for &(o, p) in &self.entries {
            out.extend_from_slice(&o.to_be_bytes());
            out.extend_from_slice(&p.to_be_bytes());
        }
        out
    }

    /// Loads an index and checks it against the segment it describes; a damaged index is an
    /// error, and the caller rebuilds it from the log.
    pub fn from_bytes(bytes: &[u8], segment_bytes: u64) -> Result<OffsetIndex> {
        if !bytes.len().is_multiple_of(OFFSET_ENTRY_BYTES) {
            bail!("offset index has {} bytes, not a multiple of {OFFSET_ENTRY_BYTES}", bytes.len());
        }
        let mut index = OffsetIndex::default();
        for entry in bytes.chunks_exact(OFFSET_ENTRY_BYTES) {
            let o = u32::from_be_bytes(entry[0..4].try_into().expect("4 bytes"));
            let p = u32::from_be_bytes(entry[4..8].try_into().expect("4 bytes"));
            if let Some(&(lo, lp)) = index.entries.last() {
                if o <= lo || p <= lp {
                    bail!("offset index entries do not increase at ({o}, {p})");
                }
            }
            if p as u64 >= segment_bytes {
                bail!("offset index points at byte {p}, past the {segment_bytes}-byte segment");
            }
            index.entries.push((o, p));
        }
        Ok(index)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimeIndex {
    entries: Vec<(i64, u32)>,
}

impl TimeIndex {
    /// Records that the batch ending at `relative_offset` raised the max timestamp to `timestamp`.
    pub fn push_if_greater(&mut self, timestamp: i64, relative_offset: u32) {
        match self.entries.last() {
            Some(&(t, _)) if timestamp <= t => {}
            _ => self.entries.push((timestamp, relative_offset)),
        }
    }

    /// The relative offset from which to scan for the first record with a timestamp at or
    /// after `timestamp`: the offset of the last entry whose timestamp is below it, or 0.
    pub fn scan_start(&self, timestamp: i64) -> u32 {
        let i = self.entries.partition_point(|&(t, _)| t < timestamp);
        if i == 0 {
            0
        } else {
            self.entries[i - 1].1
        }
    }

    /// The last entry: the segment's max timestamp and the relative offset of the batch that
    /// first reached it.
    pub fn last(&self) -> Option<(i64, u32)> {
        self.entries.last().copied()
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * TIME_ENTRY_BYTES);
        for &(t, o) in &self.entries {
            out.extend_from_slice(&t.to_be_bytes());
            out.extend_from_slice(&o.to_be_bytes());
        }
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<TimeIndex> {
        if !bytes.len().is_multiple_of(TIME_ENTRY_BYTES) {
            bail!("time index has {} bytes, not a multiple of {TIME_ENTRY_BYTES}", bytes.len());
        }
        let mut index = TimeIndex::default();
        for entry in bytes.chunks_exact(TIME_ENTRY_BYTES) {
            let t = i64::from_be_bytes(entry[0..8].try_into().expect("8 bytes"));
            let o = u32::from_be_bytes(entry[8..12].try_into().expect("4 bytes"));
            if let Some(&(lt, lo)) = index.entries.last() {
                if t <= lt || o < lo {
                    bail!("time index entries do not increase at ({t}, {o})");
                }
            }
            index.entries.push((t, o));
        }
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_lookup_is_a_floor() {
        let mut index = OffsetIndex::default();
        index.push(10, 4096);
        index.push(20, 8192);
        assert_eq!(index.lookup(5), (0, 0));
        assert_eq!(index.lookup(10), (10, 4096));
        assert_eq!(index.lookup(19), (10, 4096));
        assert_eq!(index.lookup(1000), (20, 8192));
    }

    #[test]
    fn offset_index_round_trips_and_rejects_damage() {
        let mut index = OffsetIndex::default();
        index.push(3, 100);
        index.push(9, 300);
        let bytes = index.to_bytes();
        assert_eq!(OffsetIndex::from_bytes(&bytes, 1000).unwrap(), index);
        assert!(OffsetIndex::from_bytes(&bytes[..7], 1000).is_err());
        assert!(OffsetIndex::from_bytes(&bytes, 200).is_err(), "entry past the segment end");
        let mut swapped = bytes[8..].to_vec();
        swapped.extend_from_slice(&bytes[..8]);
        assert!(OffsetIndex::from_bytes(&swapped, 1000).is_err(), "entries out of order");
    }

    #[test]
    fn time_index_scan_start() {
        let mut index = TimeIndex::default();
        index.push_if_greater(100, 0);
        index.push_if_greater(90, 1);
        index.push_if_greater(200, 5);
        assert_eq!(index.scan_start(50), 0);
        assert_eq!(index.scan_start(150), 0);
        assert_eq!(index.scan_start(250), 5);
        assert_eq!(TimeIndex::from_bytes(&index.to_bytes()).unwrap(), index);
        assert!(TimeIndex::from_bytes(&[0; 11]).is_err());
    }
}
