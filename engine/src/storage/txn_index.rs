//! The aborted-transaction index of a segment (`<base offset>.txnindex`), in Kafka's format:
//! 34-byte entries of version i16 (0), producer id i64, first offset i64, last offset i64 (the
//! abort marker's offset) and last stable offset i64. An entry lives in the file of the segment
//! that holds its abort marker.
//!
//! Entries are appended as markers are written, without a sync: sealing the segment syncs the
//! file, and recovery re-derives the entries of markers after the last producer-state
//! snapshot from the log itself, so a lost tail of this file costs nothing.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::producer_state::AbortedTxn;

const ENTRY_BYTES: usize = 34;
const VERSION: i16 = 0;

pub fn path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{base_offset:020}.txnindex"))
}

pub fn encode(entry: &AbortedTxn) -> [u8; ENTRY_BYTES] {
    let mut out = [0u8; ENTRY_BYTES];
    out[0..2].copy_from_slice(&VERSION.to_be_bytes());
    out[2..10].copy_from_slice(&entry.producer_id.to_be_bytes());
    out[10..18].copy_from_slice(&entry.first_offset.to_be_bytes());
    out[18..26].copy_from_slice(&entry.last_offset.to_be_bytes());
    out[26..34].copy_from_slice(&entry.last_stable_offset.to_be_bytes());
    out
}

/// Decodes whole entries; a torn last entry or an unknown version ends the file.
pub fn decode(bytes: &[u8]) -> Vec<AbortedTxn> {
    let i64_at = |e: &[u8], at: usize| i64::from_be_bytes(e[at..at + 8].try_into().expect("8 bytes"));
    bytes
        .chunks_exact(ENTRY_BYTES)
        .take_while(|e| i16::from_be_bytes([e[0], e[1]]) == VERSION)
        .map(|e| AbortedTxn { producer_id: i64_at(e, 2), first_offset: i64_at(e, 10), last_offset: i64_at(e, 18), last_stable_offset: i64_at(e, 26) })
        .collect()
}

pub fn append(dir: &Path, base_offset: i64, entry: &AbortedTxn) -> Result<()> {
    let path = path(dir, base_offset);
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).with_context(|| format!("opening {}", path.display()))?;
    f.write_all(&encode(entry)).with_context(|| format!("appending to {}", path.display()))
}

/// Syncs a sealed segment's index, if it has one.
pub fn sync(dir: &Path, base_offset: i64) -> Result<()> {
    match std::fs::File::open(path(dir, base_offset)) {
        Ok(f) => f.sync_all().with_context(|| format!("fsync of {}", path(dir, base_offset).display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("opening {}", path(dir, base_offset).display())),
    }
}

/// Deletes the index files of segments that start below `base_offset` (retention removed them).
pub fn remove_below(dir: &Path, base_offset: i64) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(base) = name.to_str().and_then(|n| n.strip_suffix(".txnindex")).and_then(|b| b.parse::<i64>().ok()) else { continue };
        if base < base_offset {
            if let Err(e) = std::fs::remove_file(entry.path()) {
                tracing::warn!(file = %entry.path().display(), error = %e, "cannot delete an aborted-transaction index");
            }
        }
    }
}

/// Every entry of the given segments, in marker order.
pub fn load_all(dir: &Path, segment_bases: impl Iterator<Item = i64>) -> Vec<AbortedTxn> {
    let mut out = Vec::new();
    for base in segment_bases {
        match std::fs::read(path(dir, base)) {
            Ok(bytes) => out.extend(decode(&bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(dir = %dir.display(), base, error = %e, "aborted-transaction index unreadable; read_committed fetches may show aborted records of that segment")
            }
        }
    }
    out.sort_by_key(|a| a.last_offset);
    out.dedup_by_key(|a| a.last_offset);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_torn_tail_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let a = AbortedTxn { producer_id: 7, first_offset: 10, last_offset: 20, last_stable_offset: 21 };
        let b = AbortedTxn { producer_id: 8, first_offset: 15, last_offset: 30, last_stable_offset: 31 };
        append(dir.path(), 0, &a).unwrap();
        append(dir.path(), 0, &b).unwrap();
        let mut f = std::fs::OpenOptions::new().append(true).open(path(dir.path(), 0)).unwrap();
        f.write_all(&[0, 0, 1, 2]).unwrap(); // torn entry
        assert_eq!(load_all(dir.path(), [0i64, 100].into_iter()), vec![a, b]);
        append(dir.path(), 100, &b).unwrap();
        remove_below(dir.path(), 100);
        assert!(!path(dir.path(), 0).exists() && path(dir.path(), 100).exists());
    }
}
