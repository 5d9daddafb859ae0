//! Storage tests: append, group commit, reads from cache and file, roll, and crash recovery.
//! They run the real flusher on a glommio executor over a temporary directory.

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::rc::Rc;

use bytes::BytesMut;
use shardlog_protocol::batch::{build_batch, parse_all};

use super::batch_bytes::RequestBuffer;
use super::log::{DurableError, LogConfig, Partition, PartitionLog, ReadPiece};
use super::recovery::CLEAN_SHUTDOWN_FILE;
use super::segment;

fn config() -> LogConfig {
    LogConfig { segment_bytes: 1 << 20, cache_bytes: 1 << 20, ..LogConfig::default() }
}

fn run<F: std::future::Future<Output = ()> + 'static>(f: impl FnOnce() -> F + Send + 'static) {
    crate::runtime::Executor::new(crate::runtime::Placement::Unbound).spawn(move || async move { f().await }).expect("executor").join().expect("test body");
}

fn batch_of(first_value: usize, count: usize) -> BytesMut {
    let values: Vec<Vec<u8>> = (first_value..first_value + count).map(|i| format!("value-{i:08}").into_bytes()).collect();
    let records: Vec<shardlog_protocol::batch::KeyValue> = values.iter().map(|v| (Some(&b"key"[..]), Some(&v[..]))).collect();
    BytesMut::from(&build_batch(0, 1_000 + first_value as i64, &records)[..])
}

fn open(dir: &Path, config: LogConfig) -> Rc<Partition> {
    let p = Partition::new("t".into(), 0, PartitionLog::open(dir, config).expect("open"));
    p.start_flusher();
    p
}

/// (position, header) of each valid batch at the start of a segment file's bytes, up to the
/// first invalid one (the zero padding of O_DIRECT writes, a torn or corrupt batch).
fn whole_batches(bytes: &[u8]) -> Vec<(usize, shardlog_protocol::batch::BatchHeader)> {
    let mut out = Vec::new();
    let mut end = 0;
    while let Ok(h) = shardlog_protocol::batch::parse_header(&bytes[end..], end, true) {
        out.push((end, h));
        end += h.size_bytes;
    }
    out
}

/// Reads every byte of the log from `offset` by following reads until the end.
fn read_all_bytes(p: &Partition, mut offset: i64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let log = p.log.borrow();
        let r = log.read(offset, 1 << 16).expect("read");
        if r.bytes == 0 {
            return out;
        }
        let mut chunk = Vec::new();
        for piece in r.pieces {
            match piece {
                ReadPiece::Memory(b) => chunk.extend_from_slice(&b),
                ReadPiece::File { file, position, len } => {
                    let mut buf = vec![0u8; len];
                    file.read_exact_at(&mut buf, position).expect("pread");
                    chunk.extend_from_slice(&buf);
                }
            }
        }
        let headers = parse_all(&chunk, true).expect("valid batches come back");
        offset = headers.last().expect("at least one").last_offset() + 1;
        out.extend_from_slice(&chunk);
    }
}

#[test]
fn appends_get_offsets_and_become_durable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let p = open(&path, config());
        let a = p.append(batch_of(0, 3), 10).unwrap();
        let b = p.append(batch_of(3, 2), 10).unwrap();
        assert_eq!((a.base_offset, a.last_offset), (0, 2));
        assert_eq!((b.base_offset, b.last_offset), (3, 4));
        p.wait_durable(b.last_offset).await.unwrap();
        assert!(p.log.borrow().durable_offset() >= 5);
        let bytes = read_all_bytes(&p, 0);
        let headers = parse_all(&bytes, true).unwrap();
        assert_eq!(headers.iter().map(|h| h.base_offset).collect::<Vec<_>>(), vec![0, 3]);
        p.close(true).await.unwrap();
    });
}

#[test]
fn rejects_corrupt_batches_without_appending() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let p = open(&path, config());
        let mut bad = batch_of(0, 2);
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        assert!(p.append(bad, 0).is_err());
        assert_eq!(p.log.borrow().log_end_offset(), 0);
        p.close(true).await.unwrap();
    });
}

#[test]
fn reopen_after_clean_close_keeps_everything_and_serves_from_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let mut cfg = config();
    cfg.segment_bytes = 8 << 10; // several segments
    cfg.cache_bytes = 0; // reads after the flush come from the files
    run(move || async move {
        let p = open(&path, cfg.clone());
        let mut last = 0;
        for i in 0..100 {
            last = p.append(batch_of(i * 10, 10), 10).unwrap().last_offset;
        }
        p.wait_durable(last).await.unwrap();
        let before = read_all_bytes(&p, 0);
        assert!(p.log.borrow().segment_count() > 3, "segments roll by size");
        {
            let log = p.log.borrow();
            let r = log.read(0, 100).unwrap();
            assert!(matches!(r.pieces[0], ReadPiece::File { .. }), "cold read comes from the segment file");
        }
        p.close(true).await.unwrap();
        assert!(path.join(CLEAN_SHUTDOWN_FILE).exists());

        let p = open(&path, cfg.clone());
        assert!(!path.join(CLEAN_SHUTDOWN_FILE).exists(), "marker is consumed on open");
        assert_eq!(p.log.borrow().log_end_offset(), 1000);
        assert_eq!(read_all_bytes(&p, 0), before);
        // Reads from the middle land on the batch holding the offset.
        {
            let log = p.log.borrow();
            let r = log.read(555, 1).unwrap();
            let ReadPiece::File { file, position, len } = &r.pieces[0] else { panic!("file read expected") };
            let mut buf = vec![0u8; *len];
            file.read_exact_at(&mut buf, *position).unwrap();
            let h = &parse_all(&buf, true).unwrap()[0];
            assert!(h.base_offset <= 555 && h.last_offset() >= 555);
        }
        p.close(true).await.unwrap();
    });
}

#[test]
fn a_flush_split_into_concurrent_writes_lands_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let mut cfg = config();
    cfg.write_bytes_max = 4096; // every page its own DMA write
    cfg.writes_in_flight_max = 8;
    cfg.flush_window_us = 50_000; // let appends pile up into one large flush
    cfg.cache_bytes = 0;
    run(move || async move {
        let p = open(&path, cfg.clone());
        let mut last = 0;
        for i in 0..300 {
            last = p.append(batch_of(i * 10, 10), 10).unwrap().last_offset;
        }
        p.wait_durable(last).await.unwrap();
        let before = read_all_bytes(&p, 0);
        assert_eq!(parse_all(&before, true).unwrap().len(), 300);
        // A crash now (no clean close): recovery scans the file the concurrent writes made.
        drop(p);
        let p = open(&path, cfg);
        assert_eq!(p.log.borrow().log_end_offset(), 3000);
        assert_eq!(read_all_bytes(&p, 0), before);
        p.close(true).await.unwrap();
    });
}

#[test]
fn a_flush_that_rewrites_the_partial_page_is_one_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let p = open(&path, config());
        let mut last = p.append(batch_of(0, 10), 10).unwrap().last_offset;
        p.wait_durable(last).await.unwrap();
        // Taking the counters resets them: the segment's opening and preallocation are behind.
        let _ = glommio::executor().io_stats();
        for i in 1..=5 {
            // Larger than a page: the flush spans the partial page left by the one before and
            // whole pages after it.
            last = p.append(batch_of(i * 1000, 200), 10).unwrap().last_offset;
            p.wait_durable(last).await.unwrap();
        }
        let stats = glommio::executor().io_stats();
        let writes = stats.main_ring.file_writes().0 + stats.poll_ring.file_writes().0;
        assert_eq!(writes, 5, "one O_DSYNC write (one sync) per flush");
        let bytes = read_all_bytes(&p, 0);
        assert_eq!(parse_all(&bytes, true).unwrap().len(), 6);
        assert_eq!(p.log.borrow().log_end_offset(), last + 1);
        p.close(true).await.unwrap();
    });
}

/// Length of segment `base`'s file and the bytes of whole batches at its start.
fn file_and_data_bytes(dir: &Path, base: i64) -> (u64, u64) {
    let bytes = std::fs::read(segment::log_path(dir, base)).unwrap();
    let data = whole_batches(&bytes).last().map_or(0, |(position, h)| position + h.size_bytes);
    (bytes.len() as u64, data as u64)
}

#[test]
fn the_segment_being_written_is_sized_ahead_and_cut_to_its_data_when_sealed_closed_or_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let mut cfg = config();
    cfg.segment_bytes = 64 << 10;
    run(move || async move {
        let p = open(&path, cfg.clone());
        let mut last = 0;
        for i in 0..10 {
            last = p.append(batch_of(i * 10, 10), 10).unwrap().last_offset;
        }
        p.wait_durable(last).await.unwrap();
        // Preallocated with its size, so that direct writes land inside the file.
        let (file, data) = file_and_data_bytes(&path, 0);
        assert!(data > 0 && data < file, "data {data} within a file of {file}");
        assert_eq!(file, 64 << 10, "sized to segment.bytes, below the preallocation step");
        // Roll: the sealed segment is cut to its batches, the new one sized ahead.
        while p.log.borrow().segment_count() < 2 {
            last = p.append(batch_of(last as usize + 1, 10), 10).unwrap().last_offset;
        }
        p.wait_durable(last).await.unwrap();
        let second = segment_bases(&path)[1];
        let (sealed_file, sealed_data) = file_and_data_bytes(&path, 0);
        assert_eq!(sealed_file, sealed_data, "a sealed segment's file ends at its last batch");
        let (file, data) = file_and_data_bytes(&path, second);
        assert!(file > data, "the new segment sized ahead: {data} bytes in a file of {file}");
        // A crash: recovery cuts the zeros after the last batch, and appends go on from there.
        drop(p);
        let p = open(&path, cfg.clone());
        let (file, data) = file_and_data_bytes(&path, second);
        assert_eq!(file, data, "recovery truncates the preallocated tail");
        assert_eq!(p.log.borrow().log_end_offset(), last + 1);
        let next = p.append(batch_of(last as usize + 1, 3), 10).unwrap();
        assert_eq!(next.base_offset, last + 1);
        p.wait_durable(next.last_offset).await.unwrap();
        let (file, data) = file_and_data_bytes(&path, second);
        assert!(file > data, "sized ahead again once written: {data} bytes in a file of {file}");
        // A clean close cuts the active segment too: its size is then trusted on open.
        p.close(true).await.unwrap();
        let (file, data) = file_and_data_bytes(&path, second);
        assert_eq!(file, data, "closed at its data");
        let p = open(&path, cfg);
        assert_eq!(p.log.borrow().log_end_offset(), next.last_offset + 1);
        p.close(true).await.unwrap();
    });
}

#[test]
fn a_log_opened_off_the_shard_recovers_what_a_blocking_open_does() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let mut cfg = config();
    cfg.segment_bytes = 4 << 10; // several segments
    run(move || async move {
        let p = open(&path, cfg.clone());
        let mut last = 0;
        for i in 0..100 {
            last = p.append(batch_of(i * 3, 3), 10).unwrap().last_offset;
        }
        p.wait_durable(last).await.unwrap();
        let written = read_all_bytes(&p, 0);
        p.close(true).await.unwrap();
        let log = PartitionLog::open_off_shard(path.clone(), cfg.clone()).await.unwrap();
        assert!(log.segment_count() > 3, "several segments");
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, last + 1));
        let p = Partition::new("t".into(), 0, log);
        p.start_flusher();
        assert_eq!(read_all_bytes(&p, 0), written);
        // It takes appends where the blocking open would have.
        assert_eq!(p.append(batch_of(0, 1), 10).unwrap().base_offset, last + 1);
        p.close(true).await.unwrap();
    });
}

#[test]
fn crash_recovery_truncates_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let p2 = path.clone();
    run(move || async move {
        let p = open(&p2, config());
        let mut last = 0;
        for i in 0..20 {
            last = p.append(batch_of(i * 5, 5), 10).unwrap().last_offset;
        }
        p.wait_durable(last).await.unwrap();
        // No close: the process "dies" here, with the O_DIRECT zero padding still in the file.
    });
    let log_file = segment::log_path(&path, 0);
    // A torn write: half of a new batch at the end of the file.
    let valid_len = whole_batches(&std::fs::read(&log_file).unwrap()).last().map_or(0, |(position, h)| position + h.size_bytes);
    let torn = batch_of(100, 5);
    let f = std::fs::OpenOptions::new().write(true).open(&log_file).unwrap();
    f.write_all_at(&torn[..torn.len() / 2], valid_len as u64).unwrap();
    drop(f);
    let p3 = path.clone();
    run(move || async move {
        let p = open(&p3, config());
        assert_eq!(p.log.borrow().log_end_offset(), 100, "every whole batch survives");
        assert_eq!(std::fs::metadata(segment::log_path(&p3, 0)).unwrap().len(), valid_len as u64, "torn tail truncated");
        // The log takes appends again at the right offset, after the partial tail page.
        let next = p.append(batch_of(100, 5), 10).unwrap();
        assert_eq!(next.base_offset, 100);
        p.wait_durable(next.last_offset).await.unwrap();
        p.close(true).await.unwrap();
        let p = open(&p3, config());
        assert_eq!(p.log.borrow().log_end_offset(), 105);
        assert_eq!(parse_all(&read_all_bytes(&p, 0), true).unwrap().len(), 21);
        p.close(true).await.unwrap();
    });
}

#[test]
fn crash_recovery_stops_at_a_corrupt_batch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let p2 = path.clone();
    run(move || async move {
        let p = open(&p2, config());
        let mut last = 0;
        for i in 0..10 {
            last = p.append(batch_of(i * 5, 5), 10).unwrap().last_offset;
        }
        p.wait_durable(last).await.unwrap();
    });
    // Flip a byte inside the 6th batch: recovery keeps the first five.
    let log_file = segment::log_path(&path, 0);
    let mut bytes = std::fs::read(&log_file).unwrap();
    let (position, h) = whole_batches(&bytes)[5];
    bytes[position + h.size_bytes - 3] ^= 0x55;
    std::fs::write(&log_file, &bytes).unwrap();
    let p3 = path.clone();
    run(move || async move {
        let p = open(&p3, config());
        assert_eq!(p.log.borrow().log_end_offset(), 25);
        p.close(true).await.unwrap();
    });
}

#[test]
fn damaged_index_of_a_sealed_segment_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let mut cfg = config();
    cfg.segment_bytes = 4 << 10;
    let cfg2 = cfg.clone();
    let p2 = path.clone();
    run(move || async move {
        let p = open(&p2, cfg2);
        let mut last = 0;
        for i in 0..50 {
            last = p.append(batch_of(i * 10, 10), 10).unwrap().last_offset;
        }
        p.wait_durable(last).await.unwrap();
        p.close(true).await.unwrap();
    });
    std::fs::write(segment::index_path(&path, 0), b"garbage").unwrap();
    let p3 = path.clone();
    run(move || async move {
        let p = open(&p3, cfg);
        assert_eq!(p.log.borrow().log_end_offset(), 500);
        assert_eq!(parse_all(&read_all_bytes(&p, 0), true).unwrap().len(), 50);
        p.close(true).await.unwrap();
    });
    let rebuilt = std::fs::read(segment::index_path(&path, 0)).unwrap();
    assert_eq!(rebuilt.len() % 8, 0, "index rewritten in Kafka's format");
}

#[test]
fn offsets_by_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let p = open(&path, config());
        // batch_of(first, n) stamps every record with 1000 + first.
        let a = p.append(batch_of(0, 5), 10).unwrap();
        let b = p.append(batch_of(100, 5), 10).unwrap();
        p.wait_durable(b.last_offset).await.unwrap();
        {
            let log = p.log.borrow();
            assert_eq!(log.offset_for_timestamp(0).unwrap(), Some((a.base_offset, 1000)));
            assert_eq!(log.offset_for_timestamp(1050).unwrap(), Some((b.base_offset, 1100)));
            assert_eq!(log.offset_for_timestamp(5000).unwrap(), None);
        }
        p.close(true).await.unwrap();
    });
}

#[test]
fn log_append_time_is_stamped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let mut cfg = config();
    cfg.log_append_time = true;
    run(move || async move {
        let p = open(&path, cfg);
        let info = p.append(batch_of(0, 2), 777_000).unwrap();
        assert_eq!(info.log_append_time_ms, 777_000);
        let bytes = read_all_bytes(&p, 0);
        let h = parse_all(&bytes, true).unwrap()[0];
        assert_eq!(h.max_timestamp, 777_000);
        p.close(true).await.unwrap();
    });
}

#[test]
fn write_file_for_clean_marker_helper() {
    // The marker is an empty file; a stray one in an empty directory must not break open.
    let dir = tempfile::tempdir().unwrap();
    std::fs::File::create(dir.path().join(CLEAN_SHUTDOWN_FILE)).unwrap().write_all(b"").unwrap();
    let log = PartitionLog::open(dir.path(), config()).unwrap();
    assert_eq!(log.log_end_offset(), 0);
}

fn txn_batch(producer_id: i64, epoch: i16, sequence: i32, values: &[&str]) -> BytesMut {
    let records: Vec<shardlog_protocol::batch::KeyValue> = values.iter().map(|v| (None, Some(v.as_bytes()))).collect();
    let producer = shardlog_protocol::batch::BatchProducer {
        attributes: shardlog_protocol::batch::ATTRIBUTE_TRANSACTIONAL,
        producer_id,
        producer_epoch: epoch,
        base_sequence: sequence,
    };
    BytesMut::from(&shardlog_protocol::batch::build_producer_batch(0, 1_000, &records, &producer)[..])
}

/// Offsets of the batches a read_committed reader gets (up to the LSO), and the aborted list.
fn committed_view(p: &Partition) -> (i64, Vec<(i64, i64)>) {
    let log = p.log.borrow();
    let lso = log.last_stable_offset();
    let mut end = 0;
    loop {
        let r = log.read_up_to(end, 1 << 20, lso).unwrap();
        if r.bytes == 0 {
            break;
        }
        end = r.end_offset;
    }
    (end, log.aborted_txns_between(0, end).iter().map(|a| (a.producer_id, a.first_offset)).collect())
}

#[test]
fn transactions_bound_the_lso_and_survive_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let p2 = path.clone();
    run(move || async move {
        let p = open(&p2, config());
        p.append(batch_of(0, 2), 10).unwrap(); // offsets 0-1, not transactional
        p.append(txn_batch(7, 0, 0, &["a", "b"]), 10).unwrap(); // 2-3, producer 7 opens a txn
        p.append(txn_batch(8, 0, 0, &["c"]), 10).unwrap(); // 4, producer 8 opens a txn
        assert_eq!(p.log.borrow().last_stable_offset(), 2, "the first open transaction bounds the LSO");
        let abort = p.append_marker(7, 0, false, 0, 10).unwrap(); // 5: abort 7
        assert_eq!(abort.base_offset, 5);
        assert_eq!(p.log.borrow().last_stable_offset(), 4, "producer 8 still open");
        assert!(p.append(shardlog_protocol::batch::build_control_batch(1, 8, 0, true, 0).as_slice().into(), 10).is_err(), "clients cannot write markers");
        assert!(p.append_marker(8, -1, true, 0, 10).is_err(), "a marker from a fenced epoch is refused");
        let commit = p.append_marker(8, 0, true, 0, 10).unwrap(); // 6: commit 8
        assert_eq!(p.log.borrow().last_stable_offset(), 7);
        assert_eq!(committed_view(&p), (7, vec![(7, 2)]));
        p.append(txn_batch(9, 0, 0, &["d"]), 10).unwrap(); // 7: producer 9 open at the crash
        let last = p.append(txn_batch(7, 1, 0, &["e"]), 10).unwrap(); // 8: producer 7, new epoch, open
        p.wait_durable(last.last_offset.max(commit.last_offset)).await.unwrap();
        // No close: the process dies here; the .txnindex entry was never synced.
    });
    let p3 = path.clone();
    run(move || async move {
        let p = open(&p3, config());
        assert_eq!(p.log.borrow().last_stable_offset(), 7, "open transactions are recovered from the log");
        assert_eq!(committed_view(&p), (7, vec![(7, 2)]), "the aborted transaction is still known");
        p.append_marker(9, 0, false, 0, 10).unwrap(); // 9
        p.append_marker(7, 1, true, 0, 10).unwrap(); // 10
        assert_eq!(p.log.borrow().last_stable_offset(), 11);
        assert_eq!(committed_view(&p), (11, vec![(7, 2), (9, 7)]));
        p.close(true).await.unwrap();
        let p = open(&p3, config());
        assert_eq!(committed_view(&p), (11, vec![(7, 2), (9, 7)]), "after a clean restart, from the index and the snapshot");
        p.close(true).await.unwrap();
    });
}

fn batch_at(timestamp_ms: u64) -> BytesMut {
    BytesMut::from(&build_batch(0, timestamp_ms as i64, &[(Some(&b"key"[..]), Some(&b"value"[..]))])[..])
}

#[test]
fn segments_roll_after_roll_ms() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let mut cfg = config();
    cfg.roll_ms = 1_000;
    run(move || async move {
        let p = open(&path, cfg);
        let t0 = 1_800_000_000_000;
        let mut counts = Vec::new();
        for now in [t0, t0 + 999, t0 + 1_000, t0 + 1_999, t0 + 2_000, t0 + 5_000] {
            let last = p.append(batch_at(now), now).unwrap().last_offset;
            p.wait_durable(last).await.unwrap();
            counts.push(p.log.borrow().segment_count());
        }
        // A segment takes appends for roll_ms after it was opened, then the next append starts a new one.
        assert_eq!(counts, vec![1, 1, 2, 2, 3, 4]);
        assert_eq!(p.log.borrow().log_end_offset(), 6);
        p.close(true).await.unwrap();
    });
}

#[test]
fn a_reopened_active_segment_keeps_its_age_from_its_first_batch() {
    let now_ms = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let hour_ms = 3_600_000;
    for (first_batch_age_ms, rolls) in [(2 * hour_ms, true), (0, false)] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let mut cfg = config();
        cfg.roll_ms = hour_ms;
        let (path2, cfg2) = (path.clone(), cfg.clone());
        run(move || async move {
            let written = now_ms() - first_batch_age_ms;
            let p = open(&path2, cfg2);
            let last = p.append(batch_at(written), written).unwrap().last_offset;
            p.wait_durable(last).await.unwrap();
            p.close(true).await.unwrap();
        });
        // A restart does not make the active segment young again: its age counts from its first batch's timestamp, as in Kafka.
        run(move || async move {
            let p = open(&path, cfg);
            let now = now_ms();
            let last = p.append(batch_at(now), now).unwrap().last_offset;
            p.wait_durable(last).await.unwrap();
            assert_eq!(p.log.borrow().segment_count(), if rolls { 2 } else { 1 }, "first batch {first_batch_age_ms} ms old, roll_ms {hour_ms}");
            p.close(true).await.unwrap();
        });
    }
}

/// A partition charging a 1 MiB dirty budget, its flusher not started.
fn unstarted_with_budget(path: &Path) -> (Rc<Partition>, Rc<crate::budget::ByteBudget>) {
    let budget = crate::budget::ByteBudget::new(1 << 20);
    let mut log = PartitionLog::open(path, config()).expect("open");
    log.set_dirty_budget(budget.clone());
    (Partition::new("t".into(), 0, log), budget)
}

#[test]
fn appends_charge_the_dirty_budget_until_their_fdatasync_releases_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let (p, budget) = unstarted_with_budget(&path);
        // Not started yet: nothing can become durable, so every appended byte stays charged.
        let first = batch_of(0, 3);
        let second = batch_of(3, 2);
        let appended = first.len() + second.len();
        p.append(first, 10).unwrap();
        let last = p.append(second, 10).unwrap().last_offset;
        assert_eq!(budget.used_bytes(), appended);
        assert_eq!(p.log.borrow().unsynced_bytes(), appended);
        p.start_flusher();
        p.wait_durable(last).await.unwrap();
        assert_eq!(budget.used_bytes(), 0, "the fdatasync that covers the batches gives their bytes back");
        assert_eq!(budget.used_bytes_peak(), appended);
        // A refused batch charges nothing.
        assert!(p.append(BytesMut::from(&b"not a batch"[..]), 10).is_err());
        assert_eq!(budget.used_bytes(), 0);
        p.close(true).await.unwrap();
    });
}

/// A produce request's buffer holding `records` between 10 bytes before and `after` bytes after
/// them, as a request frame holds a partition's records; answers the buffer and the slice.
fn in_request(records: &[u8], after: usize) -> (bytes::Bytes, bytes::Bytes) {
    let mut frame = vec![0xee; 10];
    frame.extend_from_slice(records);
    frame.extend(std::iter::repeat_n(0xee, after));
    let frame = bytes::Bytes::from(frame);
    let slice = frame.slice(10..10 + records.len());
    (frame, slice)
}

#[test]
fn batches_are_kept_in_their_request_charged_it_once_and_written_and_read_as_assigned() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let (p, budget) = unstarted_with_budget(&path);
        p.append(batch_of(0, 2), 10).unwrap(); // offsets 0..=1, a buffer of the log's own
        let big = batch_of(2, 200);
        let (frame, records) = in_request(&big, 30);
        let request = RequestBuffer::new(frame.len());
        let info = p.append_in_place(records.clone(), &request, 10).unwrap();
        assert_eq!((info.base_offset, info.last_offset), (2, 201));
        // A small partition of a large request is kept in it too: a request of many partitions
        // is charged once, whichever of its batches are still held.
        let small = batch_of(202, 1);
        let (small_frame, small_records) = in_request(&small, 4 * small.len());
        let small_request = RequestBuffer::new(small_frame.len());
        assert_eq!(p.log.borrow().in_place_charge(small.len(), &small_request), small_frame.len());
        p.append_in_place(small_records.clone(), &small_request, 10).unwrap();
        assert_eq!(p.log.borrow().in_place_charge(small.len(), &small_request), 0, "charged already");
        let first = batch_of(0, 2).len();
        assert_eq!(budget.used_bytes(), first + frame.len() + small_frame.len(), "kept in place: charged the whole request they keep alive");
        assert_eq!(p.log.borrow().cache.shard().bytes(), first + frame.len() + small_frame.len());
        assert_eq!(p.log.borrow().unsynced_bytes(), first + big.len() + small.len(), "the batches' own bytes");

        let read = p.log.borrow().read(2, 1 << 20).unwrap();
        let memory: Vec<bytes::Bytes> = read
            .pieces
            .iter()
            .map(|piece| match piece {
                ReadPiece::Memory(b) => b.clone(),
                ReadPiece::File { .. } => panic!("a tail read comes from the cache"),
            })
            .collect();
        assert!(memory.iter().any(|b| b.as_ptr() == records[16..].as_ptr()), "the cache serves the request's own bytes");
        assert!(memory.iter().any(|b| b.as_ptr() == small_records[16..].as_ptr()), "and the small one's");
        let cached: Vec<u8> = memory.iter().flat_map(|b| b.iter().copied()).collect();
        let headers = parse_all(&cached, true).expect("whole batches with valid CRCs");
        assert_eq!(headers.iter().map(|h| (h.base_offset, h.last_offset())).collect::<Vec<_>>(), vec![(2, 201), (202, 202)]);
        let mut expected = BytesMut::from(&big[..]);
        shardlog_protocol::batch::set_base_offset(&mut expected, 2);
        shardlog_protocol::batch::set_partition_leader_epoch(&mut expected, headers[0].partition_leader_epoch);
        assert_eq!(&cached[..big.len()], &expected[..]);
        assert_eq!(&records[..], &big[..], "the request's bytes are left as they came");

        p.start_flusher();
        p.wait_durable(202).await.unwrap();
        assert_eq!(budget.used_bytes(), 0, "the fdatasync gives the whole request's charge back");
        let from_memory = read_all_bytes(&p, 0);
        p.close(true).await.unwrap();
        // What the disk holds is what the cache served: reopened, every read is from the file.
        let p = open(&path, LogConfig { cache_bytes: 0, ..config() });
        assert_eq!(read_all_bytes(&p, 0), from_memory);
        assert_eq!(p.log.borrow().log_end_offset(), 203);
        p.close(true).await.unwrap();
    });
}

#[test]
fn partitions_of_one_request_charge_the_shard_its_buffer_once_until_the_last_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let budget = crate::budget::ByteBudget::new(1 << 20);
        let cache = super::cache::ShardCache::unbounded();
        let open_one = |name: &str| {
            let mut log = PartitionLog::open(&path.join(name), config()).expect("open");
            log.set_dirty_budget(budget.clone());
            log.set_cache_budget(cache.clone());
            Partition::new(name.into(), 0, log)
        };
        let (a, b) = (open_one("a-0"), open_one("b-0"));
        // One request carrying a batch for each partition.
        let (first, second) = (batch_of(0, 3), batch_of(0, 5));
        let frame = bytes::Bytes::from([&[0xee; 10][..], &first, &second, &[0xee; 20][..]].concat());
        let request = RequestBuffer::new(frame.len());
        a.append_in_place(frame.slice(10..10 + first.len()), &request, 10).unwrap();
        b.append_in_place(frame.slice(10 + first.len()..10 + first.len() + second.len()), &request, 10).unwrap();
        assert_eq!(budget.used_bytes(), frame.len(), "the buffer both batches keep alive, once");
        assert_eq!(cache.bytes(), frame.len());
        a.start_flusher();
        a.wait_durable(2).await.unwrap();
        assert_eq!(budget.used_bytes(), frame.len(), "b's batch, not durable yet, still keeps the buffer");
        b.start_flusher();
        b.wait_durable(4).await.unwrap();
        assert_eq!(budget.used_bytes(), 0, "the last batch of the request made durable gives the buffer back");
        assert_eq!(cache.bytes(), frame.len(), "both still cached: the cache counts the buffer once");
        a.close(true).await.unwrap();
        assert_eq!(cache.bytes(), frame.len(), "b's batch keeps it");
        b.close(true).await.unwrap();
        drop((a, b));
        assert_eq!(cache.bytes(), 0, "closed logs give their cached batches back");
    });
}

#[test]
fn a_dropped_partition_gives_back_what_it_never_made_durable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let (p, budget) = unstarted_with_budget(&path);
        p.append(batch_of(0, 3), 10).unwrap();
        assert!(budget.used_bytes() > 0);
        p.take_offline("test: the directory failed");
        assert_eq!(budget.used_bytes(), 0, "an offline partition never writes its queue: its bytes are released");
        drop(p);
        assert_eq!(budget.used_bytes(), 0);
    });
}

/// The bytes of one read from a segment file.
fn file_bytes(r: &super::log::ReadResult) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in &r.pieces {
        let ReadPiece::File { file, position, len } = piece else { panic!("file read expected") };
        let mut buf = vec![0u8; *len];
        file.read_exact_at(&mut buf, *position).unwrap();
        out.extend_from_slice(&buf);
    }
    out
}

#[test]
fn cold_reads_jump_with_the_offset_index_and_keep_to_whole_batches_and_their_limits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let mut cfg = config();
    cfg.cache_bytes = 0; // reads after the flush come from the file
    cfg.index_interval_bytes = 1; // an index entry at every batch: every boundary can be jumped to
    run(move || async move {
        let p = open(&path, cfg.clone());
        let mut last = 0;
        for i in 0..200 {
            last = p.append(batch_of(i * 5, 5), 10).unwrap().last_offset;
        }
        p.wait_durable(last).await.unwrap();
        let batch_bytes = batch_of(0, 5).len();
        for (offset, max_bytes, end_offset) in [(0, 10 * batch_bytes, 1000), (7, 10 * batch_bytes + 3, 1000), (0, 1 << 20, 333), (12, 1, 1000)] {
            let r = p.log.borrow().read_up_to(offset, max_bytes, end_offset).unwrap();
            let bytes = file_bytes(&r);
            let headers = parse_all(&bytes, true).expect("whole, valid batches only");
            assert_eq!(bytes.len(), r.bytes);
            assert!(headers[0].base_offset <= offset && headers[0].last_offset() >= offset, "starts at the batch holding {offset}");
            assert!(bytes.len() <= max_bytes.max(batch_bytes), "{} bytes for max_bytes {max_bytes}", bytes.len());
            assert!(headers.iter().all(|h| h.base_offset < end_offset), "nothing at or past end offset {end_offset}");
            let next = headers.last().unwrap().last_offset() + 1;
            assert_eq!(r.end_offset, next, "end offset of the read");
            // As full as the limits allow: the next batch would pass one of them.
            let full = bytes.len() + batch_bytes > max_bytes || next >= end_offset;
            assert!(full, "read of {offset}/{max_bytes}/{end_offset} stopped early at {next}");
        }
        p.close(true).await.unwrap();
    });
}

#[test]
fn acks_all_waits_say_why_a_write_will_not_be_durable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        // Never started: the flusher will not reach the write, so closing ends the wait.
        let (p, _budget) = unstarted_with_budget(&path.join("closed"));
        let last = p.append(batch_of(0, 1), 10).unwrap().last_offset;
        p.close(false).await.unwrap();
        assert_eq!(p.wait_durable(last).await, Err(DurableError::Closed));
        // Offline: the queued write is dropped, and the wait says why.
        let (p, _budget) = unstarted_with_budget(&path.join("offline"));
        let last = p.append(batch_of(0, 1), 10).unwrap().last_offset;
        p.take_offline("test: the directory failed");
        assert_eq!(p.wait_durable(last).await, Err(DurableError::Offline("test: the directory failed".into())));
    });
}

/// A cold read driven by hand with blocking reads, as `PartitionLog::read_up_to` does, with the
/// number of reads of the file it took.
fn cold_read_counting(log: &PartitionLog, offset: i64, max_bytes: usize, end_offset: i64) -> (super::log::ReadResult, usize) {
    use super::cold_read::Step;
    use super::log::ReadStart;
    let mut cold = match log.start_read(offset, max_bytes, end_offset).unwrap() {
        ReadStart::Done(r) => return (r, 0),
        ReadStart::Cold(cold) => cold,
    };
    let mut reads = 0;
    loop {
        match cold.step(log).unwrap() {
            Step::Done(r) => return (r, reads),
            Step::Read(read) => {
                reads += 1;
                cold.fill(&read, read.read_blocking().unwrap()).unwrap();
            }
        }
    }
}

/// The file ranges of a read, to compare two reads.
fn file_ranges(r: &super::log::ReadResult) -> Vec<(u64, usize)> {
    r.pieces
        .iter()
        .map(|p| match p {
            ReadPiece::File { position, len, .. } => (*position, *len),
            ReadPiece::Memory(_) => panic!("file read expected"),
        })
        .collect()
}

/// Checks a read from the file against the batches of the log: it starts at the batch holding
/// `offset`, holds whole batches only, and is as full as `max_bytes` allows.
fn assert_full_cold_read(r: &super::log::ReadResult, offset: i64, max_bytes: usize, end_offset: i64) {
    let bytes = file_bytes(r);
    let headers = parse_all(&bytes, true).expect("whole, valid batches only");
    assert_eq!(bytes.len(), r.bytes);
    assert!(headers[0].base_offset <= offset && headers[0].last_offset() >= offset, "starts at the batch holding {offset}");
    assert!(bytes.len() <= max_bytes.max(headers[0].size_bytes), "{} bytes for max_bytes {max_bytes}", bytes.len());
    let next = headers.last().unwrap().last_offset() + 1;
    assert_eq!(r.end_offset, next, "end offset of the read");
    assert!(headers.iter().all(|h| h.base_offset < end_offset), "nothing at or past end offset {end_offset}");
}

#[test]
fn cold_reads_take_the_headers_of_each_end_in_one_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let mut cfg = config();
    cfg.cache_bytes = 0; // reads after the flush come from the file
    cfg.index_interval_bytes = 4096; // Kafka's default: some 20 small batches between entries
    run(move || async move {
        let p = open(&path, cfg.clone());
        let mut last = 0;
        for i in 0..3000 {
            last = p.append(batch_of(i * 5, 5), 10).unwrap().last_offset;
        }
        p.wait_durable(last).await.unwrap();
        let batch_bytes = batch_of(0, 5).len();
        assert!(4096 / batch_bytes >= 10, "many batches between index entries: {batch_bytes} bytes each");
        {
            let log = p.log.borrow();
            for (offset, max_bytes) in [(0, 64 << 10), (777, 100 << 10), (4321, 1 << 20), (9000, 10 * batch_bytes), (14_990, 1 << 20)] {
                let (r, reads) = cold_read_counting(&log, offset, max_bytes, i64::MAX);
                assert_full_cold_read(&r, offset, max_bytes, i64::MAX);
                // One pread per header walked would be some 20 at each end.
                assert!(reads <= 2, "read of {offset}/{max_bytes} took {reads} reads of the file");
                // As full as the limits allow: the next batch would pass max_bytes, or there is none.
                assert!(r.bytes + batch_bytes > max_bytes || r.end_offset == 15_000, "read of {offset}/{max_bytes} stopped early at {}", r.end_offset);
            }
        }
        p.close(true).await.unwrap();
    });
}

#[test]
fn cold_reads_through_io_uring_find_what_blocking_reads_find() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let mut cfg = config();
    cfg.cache_bytes = 0;
    cfg.segment_bytes = 64 << 10; // several segments: reads end at a segment's end
    run(move || async move {
        let p = open(&path, cfg.clone());
        let mut last = 0;
        for i in 0..2000 {
            last = p.append(batch_of(i * 3, 3), 10).unwrap().last_offset;
        }
        p.wait_durable(last).await.unwrap();
        for offset in [0, 1, 500, 2999, 3000, 5998] {
            for max_bytes in [1, 300, 5000, 70_000] {
                for end_offset in [offset + 1, 4000, 6000] {
                    let blocking = p.log.borrow().read_up_to(offset, max_bytes, end_offset).unwrap();
                    let uring = p.read_up_to(offset, max_bytes, end_offset).await.unwrap();
                    assert_eq!(file_ranges(&uring), file_ranges(&blocking), "read of {offset}/{max_bytes}/{end_offset}");
                    assert_eq!((uring.end_offset, uring.records, uring.bytes), (blocking.end_offset, blocking.records, blocking.bytes));
                    if uring.bytes > 0 {
                        assert_full_cold_read(&uring, offset, max_bytes, end_offset);
                    }
                }
            }
        }
        p.close(true).await.unwrap();
    });
}

#[test]
fn a_cold_read_keeps_to_its_file_when_its_segment_goes_between_reads() {
    use super::cold_read::Step;
    use super::log::ReadStart;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let mut cfg = config();
    cfg.cache_bytes = 0;
    run(move || async move {
        let p = open(&path, cfg.clone());
        let mut last = 0;
        for i in 0..1000 {
            last = p.append(batch_of(i * 5, 5), 10).unwrap().last_offset;
        }
        p.wait_durable(last).await.unwrap();
        let (offset, max_bytes) = (1234, 50_000);
        let expected = p.log.borrow().read_up_to(offset, max_bytes, i64::MAX).unwrap();
        {
            let log = p.log.borrow();
            let ReadStart::Cold(mut cold) = log.start_read(offset, max_bytes, i64::MAX).unwrap() else { panic!("a cold read") };
            let Step::Read(read) = cold.step(&log).unwrap() else { panic!("the first step reads the file") };
            cold.fill(&read, read.read_blocking().unwrap()).unwrap();
            // Meanwhile retention (or compaction) took the segment away: an empty log stands for it.
            let gone = PartitionLog::open(&path.join("elsewhere"), cfg.clone()).unwrap();
            let result = loop {
                match cold.step(&gone).unwrap() {
                    Step::Done(r) => break r,
                    Step::Read(read) => cold.fill(&read, read.read_blocking().unwrap()).unwrap(),
                }
            };
            // Without the segment's index it walks every header, and finds the same range.
            assert_eq!(file_ranges(&result), file_ranges(&expected));
            assert_eq!((result.end_offset, result.records), (expected.end_offset, expected.records));
        }
        p.close(true).await.unwrap();
    });
}

/// A batch with one record per entry of `deltas`, each stamped `base_ts + delta`, as a producer
/// whose records carry their own timestamps writes it (build_batch stamps them all alike).
fn batch_with_deltas(base_ts: i64, deltas: &[u8]) -> BytesMut {
    use shardlog_protocol::batch::{rebuild_batch, BATCH_HEADER_BYTES, OFFSET_MAX_TIMESTAMP};
    let values: Vec<Vec<u8>> = deltas.iter().map(|d| format!("v{d:02}").into_bytes()).collect();
    let records: Vec<shardlog_protocol::batch::KeyValue> = values.iter().map(|v| (None, Some(&v[..]))).collect();
    let mut bytes = build_batch(0, base_ts, &records);
    let mut position = BATCH_HEADER_BYTES;
    for &delta in deltas {
        // Small records: a one-byte zigzag length, the attributes, then the timestamp delta.
        assert!(delta < 64 && bytes[position] < 128);
        let length = bytes[position] as usize / 2;
        bytes[position + 2] = delta * 2;
        position += 1 + length;
    }
    let max = base_ts + *deltas.iter().max().unwrap() as i64;
    bytes[OFFSET_MAX_TIMESTAMP..OFFSET_MAX_TIMESTAMP + 8].copy_from_slice(&max.to_be_bytes());
    let body = bytes[BATCH_HEADER_BYTES..].to_vec();
    BytesMut::from(&rebuild_batch(&bytes, &body, deltas.len() as i32)[..])
}

#[test]
fn timestamp_lookups_name_the_file_walk_and_find_what_a_scan_of_every_record_finds() {
    use super::timestamp_lookup::TimestampLookup;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let mut cfg = config();
    cfg.cache_bytes = 0; // every batch is cold once written
    cfg.segment_bytes = 4 << 10; // several segments
    run(move || async move {
        let p = open(&path, cfg.clone());
        // Batch i holds offsets 4i..4i+3, stamped 10 000 + 10i + {0, 2, 4, 6}.
        const BATCHES: i64 = 300;
        let mut last = 0;
        for i in 0..BATCHES {
            last = p.append(batch_with_deltas(10_000 + 10 * i, &[0, 2, 4, 6]), 10).unwrap().last_offset;
        }
        p.wait_durable(last).await.unwrap();
        assert!(segment_bases(&path).len() > 3, "several segments");
        let scan = |timestamp: i64| (0..BATCHES * 4).map(|o| (o, 10_000 + 10 * (o / 4) + 2 * (o % 4))).find(|&(_, t)| t >= timestamp);
        for timestamp in [0, 10_000, 10_001, 10_006, 10_007, 11_234, 11_239, 12_995, 12_996, 12_997, 20_000] {
            assert_eq!(p.log.borrow().offset_for_timestamp(timestamp).unwrap(), scan(timestamp), "timestamp {timestamp}");
        }
        // The shard's step reads no file: for a cold segment it names the walk to do, which finds
        // the answer through the segment's descriptor, even once retention has removed its files.
        let TimestampLookup::Read(read) = p.log.borrow().timestamp_lookup(11_234, None) else { panic!("a cold segment needs a walk") };
        let walked = read.segment_base();
        assert!(walked > 0 && walked < *segment_bases(&path).last().unwrap(), "a sealed segment past the first");
        for file in [segment::log_path(&path, walked), segment::index_path(&path, walked), segment::time_index_path(&path, walked)] {
            std::fs::remove_file(file).unwrap();
        }
        assert_eq!(read.run().unwrap(), scan(11_234));
        p.close(true).await.unwrap();
    });
}

/// `batch` with its records section compressed with `codec`, as a producer sends it.
fn compressed(batch: &[u8], codec: shardlog_protocol::compression::Codec) -> BytesMut {
    use shardlog_protocol::batch::{parse_header, rebuild_batch, BATCH_HEADER_BYTES, OFFSET_ATTRIBUTES};
    let header = parse_header(batch, 0, false).unwrap();
    let mut bytes = batch.to_vec();
    bytes[OFFSET_ATTRIBUTES..OFFSET_ATTRIBUTES + 2].copy_from_slice(&(header.attributes | codec.attribute()).to_be_bytes());
    let body = shardlog_protocol::compression::compress(codec, &batch[BATCH_HEADER_BYTES..]).unwrap();
    BytesMut::from(&rebuild_batch(&bytes, &body, header.records_count)[..])
}

#[test]
fn timestamps_are_found_to_the_record_in_compressed_batches_and_never_below_the_log_start() {
    use super::timestamp_lookup::TimestampLookup;
    use shardlog_protocol::compression::Codec;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let p = open(&path, config());
        // Offsets 0-3 (compressed), 4-7, 8-10 (compressed).
        let batches = [
            compressed(&batch_with_deltas(1_000, &[0, 2, 4, 6]), Codec::Lz4),
            batch_with_deltas(2_000, &[0, 2, 4, 6]),
            compressed(&batch_with_deltas(3_000, &[0, 5, 10]), Codec::Gzip),
        ];
        let mut last = 0;
        for batch in batches {
            last = p.append(batch, 10).unwrap().last_offset;
        }
        p.wait_durable(last).await.unwrap();
        // As Kafka's searchForTimestamp: the first record at or after the timestamp, compressed
        // or not, with its own timestamp.
        let expected = [(0, Some((0, 1_000))), (1_003, Some((2, 1_004))), (2_001, Some((5, 2_002))), (3_001, Some((9, 3_005))), (3_011, None)];
        for (timestamp, answer) in expected {
            assert_eq!(p.log.borrow().offset_for_timestamp(timestamp).unwrap(), answer, "timestamp {timestamp} from the cache");
        }
        // From the cache, an uncompressed batch is answered on the shard; a compressed one is
        // decompressed off it.
        assert!(matches!(p.log.borrow().timestamp_lookup(2_001, None), TimestampLookup::Done(Some((5, 2_002)))));
        assert!(matches!(p.log.borrow().timestamp_lookup(1_003, None), TimestampLookup::Read(_)));
        p.log.borrow_mut().cache.clear();
        for (timestamp, answer) in expected {
            assert!(matches!(p.log.borrow().timestamp_lookup(timestamp, None), TimestampLookup::Read(_) | TimestampLookup::Done(None)));
            assert_eq!(p.log.borrow().offset_for_timestamp(timestamp).unwrap(), answer, "timestamp {timestamp} from the file");
        }
        // DeleteRecords into the middle of a batch: records below the log start are not answers.
        p.log.borrow_mut().delete_records(6).unwrap();
        assert_eq!(p.log.borrow().offset_for_timestamp(0).unwrap(), Some((6, 2_004)));
        assert_eq!(p.log.borrow().offset_for_timestamp(1_003).unwrap(), Some((6, 2_004)));
        assert_eq!(p.log.borrow().offset_for_timestamp(2_005).unwrap(), Some((7, 2_006)));
        p.log.borrow_mut().delete_records(9).unwrap();
        assert_eq!(p.log.borrow().offset_for_timestamp(3_000).unwrap(), Some((9, 3_005)), "inside a compressed batch");
        p.close(true).await.unwrap();
    });
}

#[test]
fn with_log_append_time_a_timestamp_finds_the_first_record_of_the_batch_stamped_at_or_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let mut cfg = config();
    cfg.log_append_time = true;
    run(move || async move {
        let p = open(&path, cfg);
        // The records' own timestamps (1 000 to 1 004) are not what Kafka answers with.
        p.append(batch_with_deltas(1_000, &[0, 2, 4]), 5_000).unwrap();
        let last = p.append(batch_with_deltas(1_000, &[0, 2, 4]), 6_000).unwrap().last_offset;
        p.wait_durable(last).await.unwrap();
        for _ in 0..2 {
            assert_eq!(p.log.borrow().offset_for_timestamp(1_002).unwrap(), Some((0, 5_000)));
            assert_eq!(p.log.borrow().offset_for_timestamp(5_500).unwrap(), Some((3, 6_000)));
            assert_eq!(p.log.borrow().offset_for_timestamp(6_001).unwrap(), None);
            p.log.borrow_mut().cache.clear(); // then from the file
        }
        p.close(true).await.unwrap();
    });
}

/// What ListOffsets MAX_TIMESTAMP answers for the log: (offset, timestamp), or None.
fn max_timestamp_answer(p: &Partition) -> Option<(i64, i64)> {
    match p.log.borrow().max_timestamp_lookup() {
        super::max_timestamp::MaxTimestampLookup::Nothing => None,
        super::max_timestamp::MaxTimestampLookup::Read(read) => Some(read.run().expect("batch read")),
    }
}

/// Segment base offsets in a partition directory, oldest first.
fn segment_bases(dir: &Path) -> Vec<i64> {
    let mut bases: Vec<i64> =
        std::fs::read_dir(dir).unwrap().filter_map(|e| e.unwrap().file_name().to_string_lossy().strip_suffix(".log").and_then(|s| s.parse().ok())).collect();
    bases.sort_unstable();
    bases
}

#[test]
fn max_timestamp_is_the_first_record_with_the_largest_timestamp_from_memory_files_and_after_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let mut cfg = config();
    cfg.segment_bytes = 200; // about two batches a segment
    let (path2, cfg2) = (path.clone(), cfg.clone());
    run(move || async move {
        let p = open(&path2, cfg2.clone());
        assert_eq!(max_timestamp_answer(&p), None, "an empty log has no max timestamp");
        // Offsets 0-2, 3-5, 6-8, 9-11: the largest timestamp, 5_040, is first reached by offset
        // 4 (not by the batch's last offset 5, nor by the later batch 9-11 that also has it).
        for (base_ts, deltas) in [(5_000, [3, 0, 1]), (5_000, [20, 40, 40]), (4_000, [0, 1, 2]), (5_040, [0, 0, 0])] {
            let last = p.append(batch_with_deltas(base_ts, &deltas), 10).unwrap().last_offset;
            p.wait_durable(last).await.unwrap();
        }
        assert!(p.log.borrow().segment_count() >= 2, "the batches spread over segments");
        assert_eq!(max_timestamp_answer(&p), Some((4, 5_040)), "from the cache");
        p.log.borrow_mut().cache.clear();
        assert_eq!(max_timestamp_answer(&p), Some((4, 5_040)), "from the segment file");
        p.close(true).await.unwrap();

        let p = open(&path2, cfg2.clone());
        assert_eq!(max_timestamp_answer(&p), Some((4, 5_040)), "from the time index after a clean restart");
        // A new maximum in the active segment.
        let last = p.append(batch_with_deltas(6_000, &[0, 7, 7]), 10).unwrap().last_offset;
        p.wait_durable(last).await.unwrap();
        assert_eq!(max_timestamp_answer(&p), Some((13, 6_007)));
        p.close(true).await.unwrap();
    });
    // After a crash the active segment is scanned, the sealed ones read from their time indexes.
    std::fs::remove_file(path.join(CLEAN_SHUTDOWN_FILE)).unwrap();
    run(move || async move {
        let p = open(&path, cfg);
        assert_eq!(max_timestamp_answer(&p), Some((13, 6_007)));
        p.close(true).await.unwrap();
    });
}

#[test]
fn sealed_index_files_hold_kafkas_entries_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let mut cfg = config();
    cfg.segment_bytes = 1500;
    cfg.index_interval_bytes = 300;
    let (path2, cfg2) = (path.clone(), cfg);
    run(move || async move {
        let p = open(&path2, cfg2);
        let mut last = 0;
        for i in 0..60u8 {
            // Timestamps that rise and fall, so that the time index skips some batches.
            last = p.append(batch_with_deltas(10_000 + (i as i64 % 7) * 100 + i as i64, &[i % 5, 4, 1]), 10).unwrap().last_offset;
        }
        p.wait_durable(last).await.unwrap();
        p.close(true).await.unwrap();
    });
    let bases = segment_bases(&path);
    assert!(bases.len() >= 3, "{bases:?}");
    for (i, &base) in bases[..bases.len() - 1].iter().enumerate() {
        let log = std::fs::read(segment::log_path(&path, base)).unwrap();
        let batches = whole_batches(&log);
        assert_eq!(batches.iter().map(|(_, h)| h.size_bytes).sum::<usize>(), log.len(), "a sealed segment is whole batches");
        assert_eq!(batches.last().unwrap().1.last_offset() + 1, bases[i + 1]);
        // .index: 8-byte big-endian (relative offset, position) entries, and the file is exactly
        // its entries (Kafka trims sealed indexes). As Kafka's LogSegment.append writes them: at
        // the first batch after more than log.index.interval.bytes since the last entry, naming
        // that batch's last offset (kafka-dump-log checks each entry against it).
        let index = std::fs::read(segment::index_path(&path, base)).unwrap();
        assert!(!index.is_empty() && index.len().is_multiple_of(8), "segment {base}: {} bytes", index.len());
        let entries: Vec<(u32, u32)> =
            index.chunks_exact(8).map(|e| (u32::from_be_bytes(e[..4].try_into().unwrap()), u32::from_be_bytes(e[4..].try_into().unwrap()))).collect();
        let mut kafkas = Vec::new();
        let mut since_entry = 0;
        for (at, h) in &batches {
            if since_entry > 300 {
                kafkas.push(((h.last_offset() - base) as u32, *at as u32));
                since_entry = 0;
            }
            since_entry += h.size_bytes;
        }
        assert!(batches.iter().any(|(_, h)| h.last_offset_delta > 0), "batches of several records tell last offsets from base offsets");
        assert_eq!(entries, kafkas, "segment {base}");
        // .timeindex: 12-byte (timestamp, relative offset) entries, each naming the last offset
        // of a batch with that max timestamp, rising; the last is the segment's max timestamp and
        // the first batch that reached it, as Kafka appends at roll.
        let time_index = std::fs::read(segment::time_index_path(&path, base)).unwrap();
        assert!(!time_index.is_empty() && time_index.len().is_multiple_of(12), "segment {base}: {} bytes", time_index.len());
        let entries: Vec<(i64, i64)> = time_index
            .chunks_exact(12)
            .map(|e| (i64::from_be_bytes(e[..8].try_into().unwrap()), base + u32::from_be_bytes(e[8..].try_into().unwrap()) as i64))
            .collect();
        for pair in entries.windows(2) {
            assert!(pair[1].0 > pair[0].0 && pair[1].1 > pair[0].1, "segment {base}: {pair:?}");
        }
        for &(timestamp, offset) in &entries {
            assert!(
                batches.iter().any(|(_, h)| h.last_offset() == offset && h.max_timestamp == timestamp),
                "segment {base}: ({timestamp}, {offset}) names no batch"
            );
        }
        let max = batches.iter().map(|(_, h)| h.max_timestamp).max().unwrap();
        let first_at_max = batches.iter().find(|(_, h)| h.max_timestamp == max).unwrap().1.last_offset();
        assert_eq!(*entries.last().unwrap(), (max, first_at_max), "segment {base}");
    }
}

#[test]
fn index_files_with_the_old_next_offset_trailer_are_read_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let mut cfg = config();
    cfg.segment_bytes = 4 << 10;
    cfg.index_interval_bytes = 300;
    cfg.cache_bytes = 0;
    let (path2, cfg2) = (path.clone(), cfg.clone());
    let written = std::sync::Arc::new(std::sync::Mutex::new((Vec::new(), Vec::new())));
    let written2 = written.clone();
    run(move || async move {
        let p = open(&path2, cfg2);
        let mut last = 0;
        for i in 0..60 {
            last = p.append(batch_of(i * 3, 3), 10).unwrap().last_offset;
        }
        p.wait_durable(last).await.unwrap();
        let indexes: Vec<_> = p.log.borrow().segments.iter().map(|s| s.index.clone()).collect();
        *written2.lock().unwrap() = (read_all_bytes(&p, 0), indexes);
        p.close(true).await.unwrap();
    });
    // The format earlier versions wrote: each index followed by the segment's next offset.
    let bases = segment_bases(&path);
    for (i, &base) in bases.iter().enumerate() {
        let next = bases.get(i + 1).copied().unwrap_or(180);
        let mut f = std::fs::OpenOptions::new().append(true).open(segment::index_path(&path, base)).unwrap();
        f.write_all(&next.to_be_bytes()).unwrap();
    }
    for crash in [false, true] {
        let (path3, cfg3, written3) = (path.clone(), cfg.clone(), written.clone());
        if crash {
            std::fs::remove_file(path.join(CLEAN_SHUTDOWN_FILE)).unwrap();
        }
        run(move || async move {
            let p = open(&path3, cfg3);
            let (bytes, indexes) = written3.lock().unwrap().clone();
            assert_eq!(p.log.borrow().log_end_offset(), 180, "crash: {crash}");
            // The trailers were recognized, not taken for entries (nor the indexes rebuilt).
            let loaded: Vec<_> = p.log.borrow().segments.iter().map(|s| s.index.clone()).collect();
            assert_eq!(loaded, indexes, "crash: {crash}");
            assert_eq!(read_all_bytes(&p, 0), bytes, "crash: {crash}");
            let r = p.log.borrow().read(100, 1).unwrap();
            assert_eq!(parse_all(&file_bytes(&r), true).unwrap()[0].base_offset, 99);
            p.close(true).await.unwrap();
        });
    }
}

fn epoch_checkpoint(dir: &Path) -> String {
    std::fs::read_to_string(dir.join(super::leader_epoch::LEADER_EPOCH_CHECKPOINT_FILE)).unwrap()
}

#[test]
fn appends_carry_the_leader_epoch_and_the_checkpoint_follows_before_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let p2 = path.clone();
    run(move || async move {
        let p = open(&p2, config());
        p.append(batch_of(0, 5), 10).unwrap();
        p.log.borrow_mut().set_leader_epoch(3);
        let last = p.append(batch_of(5, 5), 10).unwrap().last_offset;
        p.wait_durable(last).await.unwrap();
        assert_eq!(epoch_checkpoint(&p2), "0\n2\n0 0\n3 5\n", "written by the flush that wrote the epoch's first batch");
        assert_eq!(p.log.borrow().end_offset_for_epoch(0), (0, 5));
        assert_eq!(p.log.borrow().end_offset_for_epoch(3), (3, 10));
        // No close: a crash.
    });
    let epochs: Vec<(i64, i32)> =
        whole_batches(&std::fs::read(segment::log_path(&path, 0)).unwrap()).iter().map(|(_, h)| (h.base_offset, h.partition_leader_epoch)).collect();
    assert_eq!(epochs, vec![(0, 0), (5, 3)], "the epoch is stamped in the stored batch header");
    // As if a flush wrote the checkpoint for a new epoch and the process died before the data.
    super::leader_epoch::write(&path, "0\n3\n0 0\n3 5\n4 10\n").unwrap();
    let p3 = path.clone();
    run(move || async move {
        let p = open(&p3, config());
        assert_eq!(p.log.borrow().log_end_offset(), 10);
        assert_eq!(epoch_checkpoint(&p3), "0\n2\n0 0\n3 5\n", "epochs past the recovered log end are cut");
        assert_eq!(p.log.borrow().end_offset_for_epoch(4), (-1, -1));
        p.close(true).await.unwrap();
    });
}

#[test]
fn a_missing_or_damaged_epoch_checkpoint_is_rebuilt_from_the_batch_headers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let p2 = path.clone();
    let small = LogConfig { segment_bytes: 2048, ..config() };
    let c2 = small.clone();
    run(move || async move {
        let p = open(&p2, c2);
        let mut last = 0;
        for i in 0..30 {
            p.log.borrow_mut().set_leader_epoch(i as i32 / 10 * 2);
            last = p.append(batch_of(i * 5, 5), 10).unwrap().last_offset;
        }
        p.wait_durable(last).await.unwrap();
        p.close(true).await.unwrap();
    });
    let want = "0\n3\n0 0\n2 50\n4 100\n";
    assert_eq!(epoch_checkpoint(&path), want);
    assert!(std::fs::read_dir(&path).unwrap().filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "log")).count() > 2, "several segments");
    for damage in [None, Some("0\n3\n0 0\n"), Some("junk")] {
        let file = path.join(super::leader_epoch::LEADER_EPOCH_CHECKPOINT_FILE);
        match damage {
            None => std::fs::remove_file(&file).unwrap(),
            Some(text) => std::fs::write(&file, text).unwrap(),
        }
        let (p3, c3) = (path.clone(), small.clone());
        run(move || async move {
            let p = open(&p3, c3);
            assert_eq!(p.log.borrow().end_offset_for_epoch(2), (2, 100));
            p.close(true).await.unwrap();
        });
        assert_eq!(epoch_checkpoint(&path), want, "rebuilt after {damage:?}");
    }
    // DeleteRecords moves the first epoch's start with the log start; recovery does the same.
    let (p4, c4) = (path.clone(), small.clone());
    run(move || async move {
        let p = open(&p4, c4.clone());
        p.log.borrow_mut().delete_records(60).unwrap();
        assert_eq!(p.log.borrow().leader_epochs().to_checkpoint(), "0\n2\n2 60\n4 100\n");
        crate::storage::retention::write_log_start_checkpoint(&p4, "t", 0, 60).unwrap();
        p.close(true).await.unwrap();
        let p = open(&p4, c4);
        assert_eq!(p.log.borrow().leader_epochs().to_checkpoint(), "0\n2\n2 60\n4 100\n");
        p.close(true).await.unwrap();
    });
}

#[test]
fn truncate_to_cuts_segments_indexes_epochs_and_takes_appends_at_the_new_end() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let small = LogConfig { segment_bytes: 2048, ..config() };
    let (p2, c2) = (path.clone(), small.clone());
    run(move || async move {
        let p = open(&p2, c2.clone());
        let shard_cache = super::cache::ShardCache::unbounded();
        p.log.borrow_mut().set_cache_budget(shard_cache.clone());
        let mut last = 0;
        for i in 0..30 {
            p.log.borrow_mut().set_leader_epoch(i as i32 / 10);
            last = p.append(batch_of(i * 5, 5), 10).unwrap().last_offset;
        }
        assert!(matches!(p.truncate_to(100).await, Err(super::log::TruncateError::NotDurable { .. })), "appends still in flight");
        p.wait_durable(last).await.unwrap();
        let segments_before = p.log.borrow().segment_count();
        assert!(segments_before >= 3, "{segments_before} segments");
        assert!(matches!(p.truncate_to(151).await, Err(super::log::TruncateError::OutOfRange { .. })));
        // 73 is inside the batch 70..74: the log ends where that batch started.
        let mut cut = Box::pin(p.truncate_to(73));
        assert!(futures::poll!(&mut cut).is_pending(), "the file work runs on the blocking pool");
        // Meanwhile the cut range is not served and nothing lands at the old end.
        assert!(matches!(p.append(batch_of(500, 5), 10), Err(super::log::AppendError::Truncating(73))));
        assert!(matches!(p.read_up_to(0, 1 << 16, i64::MAX).await, Err(super::log::ReadError::Truncating(73))));
        assert!(matches!(p.truncate_to(60).await, Err(super::log::TruncateError::InProgress(73))));
        assert_eq!(cut.await.unwrap(), 70);
        {
            let log = p.log.borrow();
            assert_eq!(log.log_end_offset(), 70);
            assert!(log.segment_count() < segments_before);
            assert_eq!(log.leader_epochs().to_checkpoint(), "0\n2\n0 0\n1 50\n");
            assert_eq!(log.end_offset_for_epoch(1), (1, 70));
        }
        assert_eq!(epoch_checkpoint(&p2), "0\n2\n0 0\n1 50\n");
        assert_eq!(shard_cache.bytes(), p.log.borrow().cache_bytes(), "the cut log's cached batches were given back to the shard");
        assert_eq!(parse_all(&read_all_bytes(&p, 0), true).unwrap().len(), 14);
        assert!(matches!(p.log.borrow().read(70, 1 << 16), Ok(r) if r.bytes == 0));
        // A new leader's epoch writes on from the cut, through the same flusher.
        p.log.borrow_mut().set_leader_epoch(5);
        let next = p.append(batch_of(1000, 5), 10).unwrap();
        assert_eq!(next.base_offset, 70);
        assert!(shard_cache.bytes() > 0 && shard_cache.bytes() == p.log.borrow().cache_bytes(), "the reopened log counts against the same shard");
        p.wait_durable(next.last_offset).await.unwrap();
        assert_eq!(p.truncate_to(70).await.unwrap(), 70, "back to a batch boundary");
        let next = p.append(batch_of(2000, 5), 10).unwrap();
        assert_eq!(next.base_offset, 70);
        p.wait_durable(next.last_offset).await.unwrap();
        p.close(true).await.unwrap();
        let p = open(&p2, c2);
        let log_bytes = read_all_bytes(&p, 0);
        let headers = parse_all(&log_bytes, true).unwrap();
        assert_eq!(headers.len(), 15);
        assert_eq!(headers.iter().map(|h| h.base_offset).collect::<Vec<_>>(), (0..75).step_by(5).collect::<Vec<_>>(), "offsets contiguous");
        assert_eq!(headers.last().unwrap().partition_leader_epoch, 5);
        assert_eq!(p.log.borrow().leader_epochs().to_checkpoint(), "0\n3\n0 0\n1 50\n5 70\n");
        let last = p.append(batch_of(3000, 5), 10).unwrap();
        assert_eq!(last.base_offset, 75);
        p.close(true).await.unwrap();
    });
}

/// A leader's log as the follower fetches it: every batch from `offset` on, whole.
fn leader_bytes(leader: &PartitionLog, offset: i64) -> BytesMut {
    let r = leader.read(offset, 1 << 20).unwrap();
    let mut out = BytesMut::new();
    for piece in r.pieces {
        match piece {
            ReadPiece::Memory(b) => out.extend_from_slice(&b),
            ReadPiece::File { .. } => panic!("the leader's batches are cached"),
        }
    }
    out
}

#[test]
fn a_follower_copies_the_leaders_batches_as_they_are() {
    let (leader_dir, follower_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut leader = PartitionLog::open(leader_dir.path(), config()).unwrap();
    leader.set_leader_epoch(3);
    leader.append(batch_of(0, 2), 10).unwrap(); // 0-1
    leader.append(txn_batch(7, 0, 0, &["a"]), 10).unwrap(); // 2, producer 7 opens a txn
    leader.set_leader_epoch(5);
    leader.append(batch_of(2, 3), 10).unwrap(); // 3-5
    leader.append_marker(7, 0, false, 0, 10).unwrap(); // 6: abort 7
    let mut follower = PartitionLog::open(follower_dir.path(), config()).unwrap();
    // Its own epoch is not stamped on what it copies.
    follower.set_leader_epoch(99);
    let all = leader_bytes(&leader, 0);
    // Batches that do not start at the follower's log end are refused, and nothing changes.
    let later = leader_bytes(&leader, 3);
    assert!(matches!(follower.append_replicated(later, 10), Err(super::log::AppendError::NotAtLogEnd { base_offset: 3, log_end_offset: 0 })));
    assert_eq!(follower.log_end_offset(), 0);
    let info = follower.append_replicated(all.clone(), 10).unwrap();
    assert_eq!((info.base_offset, info.last_offset, follower.log_end_offset()), (0, 6, 7));
    assert_eq!(leader_bytes(&follower, 0), all, "the same bytes: offsets, epochs, CRCs");
    assert_eq!(follower.leader_epochs().entries(), leader.leader_epochs().entries());
    assert_eq!(follower.end_offset_for_epoch(3), (3, 3));
    // Producer and transaction state follow: the abort is known to read_committed readers.
    assert_eq!(follower.aborted_txns_between(0, 7).iter().map(|a| (a.producer_id, a.first_offset)).collect::<Vec<_>>(), vec![(7, 2)]);
    assert_eq!(follower.last_stable_offset(), 7);
    // A corrupt copy is refused.
    let mut corrupt = leader_bytes(&leader, 3);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    assert!(matches!(follower.append_replicated(corrupt, 10), Err(super::log::AppendError::Corrupt(_))));
}

#[test]
fn the_replicated_high_watermark_bounds_what_is_committed() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), config()).unwrap();
    log.append(batch_of(0, 5), 10).unwrap();
    assert_eq!(log.high_watermark(), 5, "one replica: everything appended is committed");
    assert!(log.set_replicated_high_watermark(Some(2)));
    assert_eq!((log.high_watermark(), log.last_stable_offset()), (2, 2));
    assert!(!log.set_replicated_high_watermark(Some(2)), "no move");
    // Never past the log end.
    log.set_replicated_high_watermark(Some(50));
    assert_eq!(log.high_watermark(), 5);
    assert!(log.is_replicated());
    log.set_replicated_high_watermark(None);
    assert!(!log.is_replicated());
}

#[test]
fn a_reset_starts_the_log_over_empty_at_the_offset_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let p2 = path.clone();
    run(move || async move {
        let p = open(&p2, config());
        let info = p.append(batch_of(0, 10), 10).unwrap();
        p.wait_durable(info.last_offset).await.unwrap();
        assert_eq!(p.reset_to(100).await.unwrap(), 100);
        {
            let log = p.log.borrow();
            assert_eq!((log.log_start_offset(), log.log_end_offset(), log.segment_count()), (100, 100, 1));
            assert!(matches!(log.read(0, 1 << 20), Err(super::log::ReadError::OffsetOutOfRange { .. })));
            assert!(log.leader_epochs().entries().is_empty());
        }
        // The leader's batches from there on follow.
        let mut leader_batch = batch_of(0, 3);
        shardlog_protocol::batch::set_base_offset(&mut leader_batch, 100);
        shardlog_protocol::batch::set_partition_leader_epoch(&mut leader_batch, 4);
        let info = p.append_replicated(leader_batch, 10).unwrap();
        assert_eq!((info.base_offset, info.last_offset), (100, 102));
        p.wait_durable(102).await.unwrap();
        // No close: what a crash leaves is what a restart finds.
    });
    let p3 = path.clone();
    run(move || async move {
        let p = open(&p3, config());
        let log = p.log.borrow();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (100, 103));
        assert_eq!(log.end_offset_for_epoch(4), (4, 103));
        assert!(!p3.join("00000000000000000000.log").exists(), "the old segment is gone");
    });
}
