//! Offset and time index: building them (one entry per `log.index.interval.bytes` of log) and
//! looking up in them (every fetch at an offset, every ListOffsets by timestamp), for a small
//! index (1,000 entries) and a full one (100,000 entries: a 1 GiB segment with 4 KiB between
//! entries has about 260,000). Then `Segment::find_position`, the whole lookup of a fetch from a
//! file: index floor, then batch headers read with pread until the batch that holds the offset.
//!
//! Lookups cycle through a fixed list of pseudo-random targets, so that neither the branch
//! predictor nor the cache sees the same key twice in a row.

use std::io::Write;
use std::sync::Arc;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use shardlog_engine::storage::index::{OffsetIndex, TimeIndex};
use shardlog_engine::storage::segment::Segment;
use shardlog_protocol::batch::{build_batch, parse_header};

const SIZES: [u32; 2] = [1_000, 100_000];
/// Lookup targets per run of the list; a power of two so that cycling is a mask.
const TARGETS: usize = 4096;
/// File bytes between offset-index entries, as a 16 KiB batch every entry would give.
const POSITION_STEP: u32 = 16 * 1024;
/// Relative offsets between entries: 16 records per batch.
const OFFSET_STEP: u32 = 16;
const TIMESTAMP_BASE_MS: i64 = 1_700_000_000_000;

/// xorshift64: deterministic targets without a dependency.
fn targets(bound: u64, seed: u64) -> Vec<u64> {
    let mut x = seed;
    (0..TARGETS)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % bound
        })
        .collect()
}

fn offset_index(entries: u32) -> OffsetIndex {
    let mut index = OffsetIndex::default();
    for i in 1..=entries {
        index.push(i * OFFSET_STEP, i * POSITION_STEP);
    }
    index
}

fn time_index(entries: u32) -> TimeIndex {
    let mut index = TimeIndex::default();
    for i in 1..=entries {
        index.push_if_greater(TIMESTAMP_BASE_MS + i64::from(i) * 3, i * OFFSET_STEP);
    }
    index
}

fn offset_index_bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("offset_index");
    for entries in SIZES {
        group.throughput(Throughput::Elements(u64::from(entries)));
        group.bench_function(format!("push/{entries}_entries"), |b| b.iter(|| offset_index(black_box(entries))));
        let index = offset_index(entries);
        assert_eq!(index.len(), entries as usize);
        let keys: Vec<u32> = targets(u64::from(entries * OFFSET_STEP + OFFSET_STEP), 0x9e37_79b9_7f4a_7c15).into_iter().map(|k| k as u32).collect();
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("lookup/{entries}_entries"), |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) & (TARGETS - 1);
                index.lookup(black_box(keys[i]))
            })
        });
    }
    group.finish();
}

fn time_index_bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("time_index");
    for entries in SIZES {
        group.throughput(Throughput::Elements(u64::from(entries)));
        group.bench_function(format!("push/{entries}_entries"), |b| b.iter(|| time_index(black_box(entries))));
        let index = time_index(entries);
        assert_eq!(index.last().map(|(t, _)| t), Some(TIMESTAMP_BASE_MS + i64::from(entries) * 3));
        let keys: Vec<i64> = targets(u64::from(entries) * 3 + 6, 0x2545_f491_4f6c_dd1d).into_iter().map(|k| TIMESTAMP_BASE_MS + k as i64).collect();
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("scan_start/{entries}_entries"), |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) & (TARGETS - 1);
                index.scan_start(black_box(keys[i]))
            })
        });
    }
    group.finish();
}

/// A sealed-looking segment of `batches` batches of one 1 KiB record each (offset i in batch
/// i), written with ordinary buffered I/O to a temporary file (so reads hit the page cache:
/// this measures the lookup, not the disk), with its indexes built by the engine's own
/// bookkeeping at `log.index.interval.bytes` = 4096.
fn segment(dir: &std::path::Path, batches: i64) -> Segment {
    const INDEX_INTERVAL_BYTES: u64 = 4096;
    let value = vec![b'v'; 1024];
    let mut segment = Segment::new(0, 0);
    let path = dir.join("00000000000000000000.log");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).expect("create segment"));
    for offset in 0..batches {
        let batch = build_batch(offset, TIMESTAMP_BASE_MS + offset, &[(Some(&b"key"[..]), Some(&value[..]))]);
        let header = parse_header(&batch, 0, true).expect("valid batch");
        segment.record_batch(&header, INDEX_INTERVAL_BYTES);
        file.write_all(&batch).expect("write segment");
    }
    file.flush().expect("flush segment");
    drop(file);
    segment.written_bytes = segment.size_bytes;
    segment.read_file = Some(Arc::new(std::fs::File::open(&path).expect("open segment")));
    segment
}

fn find_position_bench(c: &mut Criterion) {
    const BATCHES: i64 = 20_000;
    let dir = tempfile::tempdir().expect("temp dir");
    let segment = segment(dir.path(), BATCHES);
    let keys: Vec<i64> = targets(BATCHES as u64, 0xdead_beef_cafe_f00d).into_iter().map(|k| k as i64).collect();
    for &k in keys.iter().take(64) {
        let (_, header) = segment.find_position(k).expect("reads").expect("found");
        assert_eq!(header.base_offset, k);
    }
    let mut group = c.benchmark_group("segment");
    group.throughput(Throughput::Elements(1));
    group.bench_function(format!("find_position/{BATCHES}_batches_{}_index_entries_page_cache", segment.index.len()), |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & (TARGETS - 1);
            segment.find_position(black_box(keys[i])).expect("reads")
        })
    });
    group.finish();
}

criterion_group!(benches, offset_index_bench, time_index_bench, find_position_bench);
criterion_main!(benches);
