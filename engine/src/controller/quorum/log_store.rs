//! The metadata log on disk: what raft-rs needs to survive a crash (its entries and its hard
//! state: term, vote, commit) in one append-only file, `quorum.log`, in the metadata directory.
//!
//! Each frame is `[u32 length][u32 CRC-32C][u8 kind][payload]` (big-endian), the length and CRC
//! covering kind and payload. An entries frame holds protobuf-encoded entries, a later one
//! replacing any entry at the same index or after it (a follower's log truncated by a new
//! leader); a hard-state frame replaces the hard state. On open the file is replayed into
//! raft-rs's in-memory storage, and a torn tail (a crash mid-write) is cut off: nothing in it was
//! acknowledged, because raft-rs acts on a frame only after [`LogStore::sync`] returned.
//!
//! A snapshot frame (a raft-rs snapshot: index, term, voters, and the metadata image at that
//! index) stands for every entry up to its index. The log is compacted by writing a new file
//! that starts with one, then the entries after it and the hard state, and renaming it over
//! the old one; a follower that is sent a snapshot by the leader writes the same way. The file
//! alone is enough to rebuild the image: a node that crashed after the rename but before its
//! image caught up installs the snapshot from here on its next start.

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use protobuf::Message as _;
use raft::prelude::{ConfState, Entry, HardState, Snapshot};
use raft::storage::MemStorage;
use raft::Storage as _;

pub const LOG_FILE: &str = "quorum.log";
const FRAME_ENTRIES: u8 = 1;
const FRAME_HARD_STATE: u8 = 2;
const FRAME_SNAPSHOT: u8 = 3;
/// The largest frame written or read: far above any metadata change (a CreateTopics of
/// thousands of partitions is a few hundred KiB), so a larger length is damage.
pub const QUORUM_FRAME_BYTES_MAX: usize = 64 << 20;
/// The largest snapshot (the metadata image with its raft metadata), in the log and on the
/// quorum's links (sent in parts of at most `QUORUM_FRAME_BYTES_MAX`): an image of well over a
/// million partitions. A frame of the log may be this long only when it holds a snapshot.
pub const QUORUM_SNAPSHOT_BYTES_MAX: usize = 1 << 30;
const FRAME_HEADER_BYTES: usize = 9;

pub struct LogStore {
    mem: MemStorage,
    file: RefCell<Arc<std::fs::File>>,
    dir: PathBuf,
    path: PathBuf,
    /// Bytes written since the last snapshot frame (or since the start of a log that has none).
    bytes_since_snapshot: Cell<u64>,
    /// The snapshot the file starts with, as read on open (None once handed out).
    opened_snapshot: RefCell<Option<Snapshot>>,
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
        let (good, snapshot) = replay(&bytes, &mem).with_context(|| format!("replaying the metadata log {}", path.display()))?;
        if good < bytes.len() {
            tracing::warn!(path = %path.display(), kept_bytes = good, cut_bytes = bytes.len() - good, "the metadata log ends in a torn frame (a crash while writing): cutting it off");
            file.set_len(good as u64)?;
            file.sync_all()?;
        }
        if let Ok(parent) = std::fs::File::open(dir) {
            parent.sync_all()?;
        }
        let since = snapshot.as_ref().map_or(good, |(at, _)| good - at) as u64;
        Ok(LogStore {
            mem,
            file: RefCell::new(Arc::new(file)),
            dir: dir.to_path_buf(),
            path,
            bytes_since_snapshot: Cell::new(since),
            opened_snapshot: RefCell::new(snapshot.map(|(_, s)| s)),
        })
    }

    /// The snapshot the log started with when it was opened (once).
    pub fn take_opened_snapshot(&self) -> Option<Snapshot> {
        self.opened_snapshot.borrow_mut().take()
    }

    /// The index the log's snapshot stands for (0: no snapshot).
    pub fn snapshot_index(&self) -> u64 {
        self.mem.first_index().unwrap_or(1) - 1
    }

    pub fn bytes_since_snapshot(&self) -> u64 {
        self.bytes_since_snapshot.get()
    }

    /// After a compaction that failed or had nothing new to take: the next is tried once as
    /// many bytes again were written.
    pub fn postpone_compaction(&self) {
        self.bytes_since_snapshot.set(0);
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
            frame(&mut out, FRAME_ENTRIES, &encode_entries(entries)?)?;
            append_checked(&self.mem, entries.to_vec()).context("appending to the metadata log")?;
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
        let file = self.file.borrow().clone();
        let path = self.path.clone();
        let written = bytes.len() as u64;
        crate::runtime::spawn_blocking(move || -> Result<()> {
            (&*file).write_all(&bytes).with_context(|| format!("writing {}", path.display()))?;
            file.sync_data().with_context(|| format!("fsyncing {}", path.display()))
        })
        .await?;
        self.bytes_since_snapshot.set(self.bytes_since_snapshot.get() + written);
        Ok(())
    }

    /// Compacts the log: `snapshot` (of this node's applied image) replaces every entry up to
    /// its index, which must be applied here. Entries after it are kept.
    pub async fn compact(&self, snapshot: Snapshot) -> Result<()> {
        let index = snapshot.get_metadata().index;
        let last = self.mem.last_index()?;
        let kept = if index < last { self.mem.entries(index + 1, last + 1, None, raft::GetEntriesContext::empty(false))? } else { Vec::new() };
        let hard_state = self.mem.rl().hard_state().clone();
        self.rewrite(Some(&snapshot), &kept, &hard_state).await?;
        self.mem.wl().apply_snapshot(without_data(&snapshot))?;
        append_checked(&self.mem, kept)?;
        // Applying a snapshot resets the commit index to its own; the commit is further on.
        self.mem.wl().set_hardstate(hard_state);
        Ok(())
    }

    /// Takes a snapshot the leader sent: it replaces this node's whole log.
    pub async fn install(&self, snapshot: Snapshot) -> Result<()> {
        let mut hard_state = self.mem.rl().hard_state().clone();
        let meta = snapshot.get_metadata();
        hard_state.term = hard_state.term.max(meta.term);
        hard_state.commit = meta.index;
        self.rewrite(Some(&snapshot), &[], &hard_state).await?;
        self.mem.wl().apply_snapshot(without_data(&snapshot))?;
        Ok(())
    }

    /// Empties the log of a voter that left the voters, keeping its term and vote: should it be
    /// added again, it starts as a new voter does, its log filled by the leader, and it cannot
    /// vote twice in a term it voted in. Its old entries are of no use to the quorum then: a
    /// voter set without it holds every committed entry.
    pub async fn clear(dir: &Path) -> Result<()> {
        if !dir.join(LOG_FILE).exists() {
            return Ok(());
        }
        let store = LogStore::open(dir, &[])?;
        if store.mem.last_index()? == 0 && store.snapshot_index() == 0 {
            return Ok(());
        }
        let old = store.mem.rl().hard_state().clone();
        let kept = HardState { term: old.term, vote: old.vote, ..Default::default() };
        store.rewrite(None, &[], &kept).await
    }

    /// Writes a new log file of `snapshot`, `entries` and `hard_state`, and renames it over the
    /// old one (a crash leaves one or the other, whole).
    async fn rewrite(&self, snapshot: Option<&Snapshot>, entries: &[Entry], hard_state: &HardState) -> Result<()> {
        let mut out = Vec::new();
        if let Some(snapshot) = snapshot {
            frame(&mut out, FRAME_SNAPSHOT, &snapshot.write_to_bytes().context("encoding a metadata snapshot")?)?;
        }
        let snapshot_bytes = out.len() as u64;
        if !entries.is_empty() {
            frame(&mut out, FRAME_ENTRIES, &encode_entries(entries)?)?;
        }
        frame(&mut out, FRAME_HARD_STATE, &hard_state.write_to_bytes().context("encoding the quorum's hard state")?)?;
        let since = out.len() as u64 - snapshot_bytes;
        let (dir, path) = (self.dir.clone(), self.path.clone());
        let file = crate::runtime::spawn_blocking(move || -> Result<std::fs::File> {
            let tmp = path.with_extension("log.tmp");
            let mut f = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
            f.write_all(&out).with_context(|| format!("writing {}", tmp.display()))?;
            f.sync_all().with_context(|| format!("fsyncing {}", tmp.display()))?;
            std::fs::rename(&tmp, &path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
            std::fs::File::open(&dir)?.sync_all().with_context(|| format!("fsyncing the directory {}", dir.display()))?;
            std::fs::OpenOptions::new().append(true).open(&path).with_context(|| format!("opening {}", path.display()))
        })
        .await?;
        *self.file.borrow_mut() = Arc::new(file);
        self.bytes_since_snapshot.set(since);
        Ok(())
    }

    /// Records the commit index raft-rs learned (kept in memory; it is durable through the
    /// next hard state, and recomputed from the quorum otherwise).
    pub fn set_commit(&self, commit: u64) {
        self.mem.wl().mut_hard_state().commit = commit;
    }
}

fn encode_entries(entries: &[Entry]) -> Result<Vec<u8>> {
    let mut payload = Vec::new();
    payload.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    for e in entries {
        let bytes = e.write_to_bytes().context("encoding a metadata log entry")?;
        payload.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        payload.extend_from_slice(&bytes);
    }
    Ok(payload)
}

/// The snapshot's metadata alone: raft-rs's in-memory log keeps no image.
fn without_data(snapshot: &Snapshot) -> Snapshot {
    let mut s = Snapshot::default();
    s.set_metadata(snapshot.get_metadata().clone());
    s
}

/// Appends `entries` to the in-memory log, replacing any from the first one's index on;
/// entries the snapshot already stands for are skipped. raft-rs's own append panics on a gap,
/// which here is damage and an error.
fn append_checked(mem: &MemStorage, mut entries: Vec<Entry>) -> Result<()> {
    let (first, last) = (mem.first_index()?, mem.last_index()?);
    entries.retain(|e| e.index >= first);
    let Some(head) = entries.first() else { return Ok(()) };
    if head.index > last + 1 {
        bail!("entries from index {} leave a gap after the log's last index {last}", head.index);
    }
    if entries.windows(2).any(|w| w[1].index != w[0].index + 1) {
        bail!("entries are not consecutive");
    }
    mem.wl().append(&entries)?;
    Ok(())
}

fn frame(out: &mut Vec<u8>, kind: u8, payload: &[u8]) -> Result<()> {
    let length = payload.len() + 1;
    let bound = frame_bytes_max(kind);
    if length > bound {
        bail!("a metadata log frame of {length} bytes is over the {bound}-byte bound of its kind ({kind})");
    }
    let mut crc = crc32c::crc32c(&[kind]);
    crc = crc32c::crc32c_append(crc, payload);
    out.extend_from_slice(&(length as u32).to_be_bytes());
    out.extend_from_slice(&crc.to_be_bytes());
    out.push(kind);
    out.extend_from_slice(payload);
    Ok(())
}

fn frame_bytes_max(kind: u8) -> usize {
    if kind == FRAME_SNAPSHOT {
        QUORUM_SNAPSHOT_BYTES_MAX
    } else {
        QUORUM_FRAME_BYTES_MAX
    }
}

/// Replays frames into `mem`; returns how many bytes were whole frames, and the last snapshot
/// with the byte offset after it.
fn replay(bytes: &[u8], mem: &MemStorage) -> Result<(usize, Option<(usize, Snapshot)>)> {
    let mut at = 0;
    let mut snapshot = None;
    while bytes.len() - at >= FRAME_HEADER_BYTES {
        let length = u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_be_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes"));
        if length == 0 || length > QUORUM_SNAPSHOT_BYTES_MAX || bytes.len() - at - 8 < length {
            break;
        }
        let body = &bytes[at + 8..at + 8 + length];
        if crc32c::crc32c(body) != crc || length > frame_bytes_max(body[0]) {
            break;
        }
        let (kind, payload) = (body[0], &body[1..]);
        match kind {
            FRAME_ENTRIES => {
                let entries = decode_entries(payload).with_context(|| format!("entries frame at byte {at}"))?;
                append_checked(mem, entries).with_context(|| format!("entries frame at byte {at} does not follow the log"))?;
            }
            FRAME_SNAPSHOT => {
                let s = Snapshot::parse_from_bytes(payload).with_context(|| format!("snapshot frame at byte {at}"))?;
                let hard_state = mem.rl().hard_state().clone();
                mem.wl().apply_snapshot(without_data(&s)).with_context(|| format!("snapshot frame at byte {at} is older than the log before it"))?;
                // The hard-state frame that follows a snapshot sets the commit; until then the
                // term and vote stay.
                mem.wl().set_hardstate(HardState { commit: s.get_metadata().index, term: hard_state.term.max(s.get_metadata().term), ..hard_state });
                snapshot = Some((at + 8 + length, s));
            }
            FRAME_HARD_STATE => {
                let hs = HardState::parse_from_bytes(payload).with_context(|| format!("hard-state frame at byte {at}"))?;
                mem.wl().set_hardstate(hs);
            }
            other => bail!("unknown frame kind {other} at byte {at}: written by a newer shardlog?"),
        }
        at += 8 + length;
    }
    Ok((at, snapshot))
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

    fn snapshot(index: u64, term: u64, data: &[u8]) -> Snapshot {
        let mut s = Snapshot { data: data.to_vec().into(), ..Default::default() };
        s.mut_metadata().index = index;
        s.mut_metadata().term = term;
        s.mut_metadata().set_conf_state(ConfState::from((vec![1, 2, 3], vec![])));
        s
    }

    #[test]
    fn a_compacted_log_keeps_the_entries_after_its_snapshot_and_reopens_from_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(move || async move {
            let store = LogStore::open(&path, &[1, 2, 3]).unwrap();
            let hs = HardState { term: 2, vote: 1, commit: 4, ..Default::default() };
            let entries: Vec<Entry> = (1..=5).map(|i| entry(i, if i < 4 { 1 } else { 2 }, &[b'a' + i as u8])).collect();
            let bytes = store.stage(&entries, Some(&hs)).unwrap();
            store.sync(bytes).await.unwrap();
            assert!(store.bytes_since_snapshot() > 0);
            store.compact(snapshot(3, 1, b"image@3")).await.unwrap();
            assert_eq!(store.snapshot_index(), 3);
            let mem = store.storage();
            assert_eq!((mem.first_index().unwrap(), mem.last_index().unwrap(), mem.term(3).unwrap()), (4, 5, 1));
            assert!(matches!(mem.term(2), Err(raft::Error::Store(raft::StorageError::Compacted))));
            assert_eq!(mem.initial_state().unwrap().hard_state.commit, 4, "compaction keeps the commit index");
            // More entries after the compaction land in the new file.
            let bytes = store.stage(&[entry(6, 2, b"g")], None).unwrap();
            store.sync(bytes).await.unwrap();
        });
        let store = LogStore::open(dir.path(), &[1, 2, 3]).unwrap();
        let opened = store.take_opened_snapshot().expect("the file starts with the snapshot");
        assert_eq!((opened.get_metadata().index, &opened.data[..]), (3, &b"image@3"[..]));
        let mem = store.storage();
        assert_eq!((mem.first_index().unwrap(), mem.last_index().unwrap()), (4, 6));
        let state = mem.initial_state().unwrap();
        assert_eq!((state.hard_state.term, state.hard_state.vote, state.hard_state.commit), (2, 1, 4));
        let got = mem.entries(4, 7, None, raft::GetEntriesContext::empty(false)).unwrap();
        assert_eq!(got.iter().map(|e| e.data[0]).collect::<Vec<_>>(), vec![b'e', b'f', b'g']);
        assert!(!dir.path().join("quorum.log.tmp").exists());
    }

    #[test]
    fn an_installed_snapshot_replaces_the_whole_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(move || async move {
            let store = LogStore::open(&path, &[1, 2, 3]).unwrap();
            let bytes = store.stage(&[entry(1, 1, b"a"), entry(2, 1, b"b")], Some(&HardState { term: 1, vote: 2, commit: 1, ..Default::default() })).unwrap();
            store.sync(bytes).await.unwrap();
            store.install(snapshot(40, 3, b"leader image")).await.unwrap();
            let mem = store.storage();
            assert_eq!((mem.first_index().unwrap(), mem.last_index().unwrap(), mem.term(40).unwrap()), (41, 40, 3));
            // The leader's entries follow on.
            let bytes = store.stage(&[entry(41, 3, b"x")], Some(&HardState { term: 3, vote: 0, commit: 41, ..Default::default() })).unwrap();
            store.sync(bytes).await.unwrap();
        });
        let store = LogStore::open(dir.path(), &[1, 2, 3]).unwrap();
        assert_eq!(store.snapshot_index(), 40);
        assert_eq!(&store.take_opened_snapshot().unwrap().data[..], b"leader image");
        let mem = store.storage();
        assert_eq!((mem.last_index().unwrap(), mem.initial_state().unwrap().hard_state.commit), (41, 41));
    }

    #[test]
    fn a_snapshot_larger_than_any_other_frame_is_written_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let image: Vec<u8> = (0..QUORUM_FRAME_BYTES_MAX + 4096).map(|i| (i % 253) as u8).collect();
        let expected = image.clone();
        run(move || async move {
            let store = LogStore::open(&path, &[1]).unwrap();
            let bytes = store.stage(&[entry(1, 1, b"a"), entry(2, 1, b"b")], Some(&HardState { term: 1, vote: 1, commit: 2, ..Default::default() })).unwrap();
            store.sync(bytes).await.unwrap();
            store.compact(snapshot(2, 1, &image)).await.unwrap();
            // Entries stay bounded by the frame bound: a frame that long there is damage.
            let huge = entry(3, 1, &vec![0u8; QUORUM_FRAME_BYTES_MAX]);
            assert!(store.stage(&[huge], None).is_err());
        });
        let store = LogStore::open(dir.path(), &[1]).unwrap();
        assert_eq!(store.snapshot_index(), 2);
        assert!(store.take_opened_snapshot().unwrap().data[..] == expected[..]);
    }

    #[test]
    fn a_cleared_log_has_no_entries_nor_snapshot_and_keeps_its_term_and_vote() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(move || async move {
            let store = LogStore::open(&path, &[1, 2, 3]).unwrap();
            let bytes = store.stage(&[entry(1, 1, b"a"), entry(2, 4, b"b")], Some(&HardState { term: 4, vote: 3, commit: 2, ..Default::default() })).unwrap();
            store.sync(bytes).await.unwrap();
            store.compact(snapshot(1, 1, b"image@1")).await.unwrap();
            drop(store);
            LogStore::clear(&path).await.unwrap();
            // Clearing what is already clear (a restart in between) changes nothing.
            LogStore::clear(&path).await.unwrap();
            LogStore::clear(&path.join("never-written")).await.unwrap();
        });
        let store = LogStore::open(dir.path(), &[1]).unwrap();
        assert_eq!(store.snapshot_index(), 0);
        assert!(store.take_opened_snapshot().is_none());
        let mem = store.storage();
        assert_eq!(mem.last_index().unwrap(), 0);
        let hs = mem.initial_state().unwrap().hard_state;
        assert_eq!((hs.term, hs.vote, hs.commit), (4, 3, 0));
    }

    #[test]
    fn entries_that_leave_a_gap_are_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path(), &[1]).unwrap();
        assert!(store.stage(&[entry(5, 1, b"x")], None).is_err());
    }
}
