//! The metadata log on disk: what raft-rs needs to survive a crash (its entries and its hard
//! state: term, vote, commit) in one append-only file, `quorum.log`, in the metadata directory.
//!
//! Each frame is `[u32 length][u32 CRC-32C][u8 kind][payload]` (big-endian), the length and CRC
//! covering kind and payload. An entries frame holds protobuf-encoded entries, a later one
//! replacing any entry at the same index or after it (a follower's log truncated by a new
//! leader); a hard-state frame replaces the hard state. On open the file is replayed into
//! raft-rs's in-memory storage, and a torn tail (a crash mid-write) is cut off: nothing in it was
//! acknowledged, because raft-rs acts on a frame only after [`LogStore::sync`] returned.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use protobuf::Message as _;
use raft::prelude::{ConfState, Entry, HardState};
use raft::storage::MemStorage;

pub const LOG_FILE: &str = "quorum.log";
const FRAME_ENTRIES: u8 = 1;
const FRAME_HARD_STATE: u8 = 2;
/// The largest frame written or read: far above any metadata change (a CreateTopics of
/// thousands of partitions is a few hundred KiB), so a larger length is damage.
pub const QUORUM_FRAME_BYTES_MAX: usize = 64 << 20;
const FRAME_HEADER_BYTES: usize = 9;

pub struct LogStore {
    mem: MemStorage,
    file: Arc<std::fs::File>,
    path: PathBuf,
}

impl LogStore {
    /// Opens (or creates) the log in `dir` and replays it. `voters` are raft ids; the quorum's
    /// membership is static (`controller.quorum.voters`), so it is not logged.
    pub fn open(dir: &Path, voters: &[u64]) -> Result<LogStore> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating the metadata directory {}", dir.display()))?;
        let path = dir.join(LOG_FILE);
        let mut file = std::fs::OpenOptions::new().read(true).append(true).create(true).open(&path).with_context(|| format!("opening {}", path.display()))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).with_context(|| format!("reading {}", path.display()))?;
        let mem = MemStorage::new_with_conf_state(ConfState::from((voters.to_vec(), vec![])));
        let good = replay(&bytes, &mem).with_context(|| format!("replaying the metadata log {}", path.display()))?;
        if good < bytes.len() {
            tracing::warn!(path = %path.display(), kept_bytes = good, cut_bytes = bytes.len() - good, "the metadata log ends in a torn frame (a crash while writing): cutting it off");
            file.set_len(good as u64)?;
            file.sync_all()?;
        }
        if let Ok(parent) = std::fs::File::open(dir) {
            parent.sync_all()?;
        }
        Ok(LogStore { mem, file: Arc::new(file), path })
    }

    /// What raft-rs reads (a shared handle on the same state).
    pub fn storage(&self) -> MemStorage {
        self.mem.clone()
    }

    /// Takes `entries` and `hard_state` into memory and returns the bytes that make them
    /// durable, for [`LogStore::sync`].
    pub fn stage(&self, entries: &[Entry], hard_state: Option<&HardState>) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        if !entries.is_empty() {
            let mut payload = Vec::new();
            payload.extend_from_slice(&(entries.len() as u32).to_be_bytes());
            for e in entries {
                let bytes = e.write_to_bytes().context("encoding a metadata log entry")?;
                payload.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
                payload.extend_from_slice(&bytes);
            }
            frame(&mut out, FRAME_ENTRIES, &payload)?;
            self.mem.wl().append(entries).context("appending to the metadata log")?;
        }
        if let Some(hs) = hard_state {
            frame(&mut out, FRAME_HARD_STATE, &hs.write_to_bytes().context("encoding the quorum's hard state")?)?;
            self.mem.wl().set_hardstate(hs.clone());
        }
        Ok(out)
    }

    /// Writes staged bytes and fdatasyncs them, on the blocking pool: the controller shard
    /// serves clients too, and an fsync can take tens of milliseconds.
    pub async fn sync(&self, bytes: Vec<u8>) -> Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let file = self.file.clone();
        let path = self.path.clone();
        crate::runtime::spawn_blocking(move || -> Result<()> {
            (&*file).write_all(&bytes).with_context(|| format!("writing {}", path.display()))?;
            file.sync_data().with_context(|| format!("fsyncing {}", path.display()))
        })
        .await
    }

    /// Records the commit index raft-rs learned (kept in memory; it is durable through the
    /// next hard state, and recomputed from the quorum otherwise).
    pub fn set_commit(&self, commit: u64) {
        self.mem.wl().mut_hard_state().commit = commit;
    }
}

fn frame(out: &mut Vec<u8>, kind: u8, payload: &[u8]) -> Result<()> {
    let length = payload.len() + 1;
    if length > QUORUM_FRAME_BYTES_MAX {
        bail!("a metadata log frame of {length} bytes is over the {QUORUM_FRAME_BYTES_MAX}-byte bound");
    }
    let mut crc = crc32c::crc32c(&[kind]);
    crc = crc32c::crc32c_append(crc, payload);
    out.extend_from_slice(&(length as u32).to_be_bytes());
    out.extend_from_slice(&crc.to_be_bytes());
    out.push(kind);
    out.extend_from_slice(payload);
    Ok(())
}

/// Replays frames into `mem`; returns how many bytes were whole frames.
fn replay(bytes: &[u8], mem: &MemStorage) -> Result<usize> {
    let mut at = 0;
    while bytes.len() - at >= FRAME_HEADER_BYTES {
        let length = u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_be_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes"));
        if length == 0 || length > QUORUM_FRAME_BYTES_MAX || bytes.len() - at - 8 < length {
            break;
        }
        let body = &bytes[at + 8..at + 8 + length];
        if crc32c::crc32c(body) != crc {
            break;
        }
        let (kind, payload) = (body[0], &body[1..]);
        match kind {
            FRAME_ENTRIES => {
                let entries = decode_entries(payload).with_context(|| format!("entries frame at byte {at}"))?;
                let mut w = mem.wl();
                // An entry at or below the first index was compacted (never, yet) or is the
                // first frame of a fresh log: raft-rs's append wants them to follow on.
                w.append(&entries).with_context(|| format!("entries frame at byte {at} does not follow the log"))?;
            }
            FRAME_HARD_STATE => {
                let hs = HardState::parse_from_bytes(payload).with_context(|| format!("hard-state frame at byte {at}"))?;
                mem.wl().set_hardstate(hs);
            }
            other => bail!("unknown frame kind {other} at byte {at}: written by a newer shardlog?"),
        }
        at += 8 + length;
    }
    Ok(at)
}

fn decode_entries(payload: &[u8]) -> Result<Vec<Entry>> {
    let mut rest = payload;
    let mut take = |n: usize| -> Result<&[u8]> {
        if rest.len() < n {
            bail!("frame ends early");
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let count = u32::from_be_bytes(take(4)?.try_into().expect("4 bytes")) as usize;
    let mut entries = Vec::with_capacity(count.min(payload.len() / 4));
    for _ in 0..count {
        let length = u32::from_be_bytes(take(4)?.try_into().expect("4 bytes")) as usize;
        entries.push(Entry::parse_from_bytes(take(length)?)?);
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::Storage;

    fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
        Entry { index, term, data: data.to_vec().into(), ..Default::default() }
    }

    fn run<Fut: std::future::Future<Output = ()> + 'static>(f: impl FnOnce() -> Fut + Send + 'static) {
        crate::runtime::Executor::new(crate::runtime::Placement::Unbound).spawn(f).expect("executor").join().expect("test body");
    }

    #[test]
    fn entries_and_hard_state_survive_a_reopen_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(move || async move {
            let store = LogStore::open(&path, &[1, 2, 3]).unwrap();
            let hs = HardState { term: 2, vote: 1, commit: 2, ..Default::default() };
            let bytes = store.stage(&[entry(1, 1, b"a"), entry(2, 1, b"b"), entry(3, 1, b"c")], Some(&hs)).unwrap();
            store.sync(bytes).await.unwrap();
            // A new leader replaces entry 3 on.
            let bytes = store.stage(&[entry(3, 2, b"C"), entry(4, 2, b"d")], None).unwrap();
            store.sync(bytes).await.unwrap();
        });
        // A torn frame at the end: cut on open, the rest kept.
        let file = dir.path().join(LOG_FILE);
        let whole = std::fs::metadata(&file).unwrap().len();
        std::fs::OpenOptions::new().append(true).open(&file).unwrap().write_all(&[0, 0, 0, 50, 1, 2, 3, 4, 1, 9]).unwrap();
        let store = LogStore::open(dir.path(), &[1, 2, 3]).unwrap();
        assert_eq!(std::fs::metadata(&file).unwrap().len(), whole);
        let mem = store.storage();
        let state = mem.initial_state().unwrap();
        assert_eq!((state.hard_state.term, state.hard_state.vote, state.hard_state.commit), (2, 1, 2));
        assert_eq!(state.conf_state.voters, vec![1, 2, 3]);
        assert_eq!(mem.last_index().unwrap(), 4);
        let got = mem.entries(1, 5, None, raft::GetEntriesContext::empty(false)).unwrap();
        let data: Vec<&[u8]> = got.iter().map(|e| &e.data[..]).collect();
        assert_eq!(data, vec![&b"a"[..], b"b", b"C", b"d"]);
        assert_eq!(mem.term(3).unwrap(), 2);
    }

    #[test]
    fn a_damaged_frame_in_the_middle_stops_the_replay_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(move || async move {
            let store = LogStore::open(&path, &[1]).unwrap();
            let first = store.stage(&[entry(1, 1, b"a")], None).unwrap();
            store.sync(first).await.unwrap();
            let second = store.stage(&[entry(2, 1, b"b")], None).unwrap();
            store.sync(second).await.unwrap();
        });
        let file = dir.path().join(LOG_FILE);
        let mut bytes = std::fs::read(&file).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&file, &bytes).unwrap();
        let store = LogStore::open(dir.path(), &[1]).unwrap();
        assert_eq!(store.storage().last_index().unwrap(), 1);
    }
}
