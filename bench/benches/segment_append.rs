//! Segment append through the storage engine: batches appended to a partition log, written with
//! O_DIRECT through io_uring and made durable by group-commit fdatasync, on the disk that holds
//! the temporary directory (set TMPDIR to bench another disk).

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shardlog_engine::storage::log::{LogConfig, Partition, PartitionLog};
use shardlog_protocol::batch::build_batch;

const BATCH_RECORDS: usize = 16;
const VALUE_BYTES: usize = 1024;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 256 << 20,
        roll_ms: u64::MAX / 2,
        index_interval_bytes: 4096,
        message_max_bytes: 1 << 20,
        log_append_time: false,
        flush_interval_ms: 0,
        cache_bytes: 8 << 20,
    }
}

fn batch() -> Vec<u8> {
    let value = vec![b'v'; VALUE_BYTES];
    let recs: Vec<shardlog_protocol::batch::KeyValue> = (0..BATCH_RECORDS).map(|_| (Some(&b"key"[..]), Some(&value[..]))).collect();
    build_batch(0, 1_700_000_000_000, &recs)
}

/// Runs `batches_per_commit` appends then waits for their group commit, `iters` times, on a
/// fresh log, and returns the time spent.
fn run(iters: u64, batches_per_commit: usize) -> Duration {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .spawn(move || async move {
            let dir = tempfile::tempdir().expect("temp dir");
            let p: Rc<Partition> = Partition::new("bench".into(), 0, PartitionLog::open(dir.path(), config()).expect("open"));
            p.start_flusher();
            let template = batch();
            let start = Instant::now();
            for _ in 0..iters {
                let mut last = 0;
                for _ in 0..batches_per_commit {
                    last = p.append(BytesMut::from(&template[..]), 0).expect("append").last_offset;
                }
                p.wait_durable(last).await.expect("durable");
            }
            let elapsed = start.elapsed();
            p.close(false).await.expect("close");
            elapsed
        })
        .expect("executor")
        .join()
        .expect("bench body")
}

fn segment_append(c: &mut Criterion) {
    let batch_bytes = batch().len();
    let mut group = c.benchmark_group("segment_append_durable");
    group.sample_size(10).measurement_time(Duration::from_secs(5));
    for batches_per_commit in [1usize, 64] {
        group.throughput(Throughput::Bytes((batch_bytes * batches_per_commit) as u64));
        group.bench_function(format!("{batches_per_commit}x{batch_bytes}B_per_fdatasync"), |b| b.iter_custom(|iters| run(iters, batches_per_commit)));
    }
    group.finish();

    // acks=1 style: appends are acknowledged from memory while the flusher writes behind them
    // (5 ms group-commit window); the clock stops when the last append is durable.
    let mut group = c.benchmark_group("segment_append_flush_behind");
    group.throughput(Throughput::Bytes(batch_bytes as u64));
    group.bench_function(format!("{batch_bytes}B"), |b| {
        b.iter_custom(|iters| {
            glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
                .spawn(move || async move {
                    let dir = tempfile::tempdir().expect("temp dir");
                    let mut cfg = config();
                    cfg.flush_interval_ms = 5;
                    let p = Partition::new("bench".into(), 0, PartitionLog::open(dir.path(), cfg).expect("open"));
                    p.start_flusher();
                    let template = batch();
                    let start = Instant::now();
                    let mut last = 0;
                    for i in 0..iters {
                        last = p.append(BytesMut::from(&template[..]), 0).expect("append").last_offset;
                        if i % 256 == 255 {
                            // Let the flusher run, as a connection task would between requests.
                            glommio::yield_if_needed().await;
                        }
                    }
                    p.wait_durable(last).await.expect("durable");
                    let elapsed = start.elapsed();
                    p.close(false).await.expect("close");
                    elapsed
                })
                .expect("executor")
                .join()
                .expect("bench body")
        })
    });
    group.finish();
}

/// The produce path with and without its metrics: the request probe (timer and per-API
/// histogram) and the partition's byte and record counters, exactly the calls the broker makes
/// per produce request, around an in-memory append (CRC check, offset assignment, batch cache,
/// pending-write queue). The disk is left out on purpose: its noise would hide a difference of a
/// few percent. Small (1 KiB) batches make the metrics' share as large as it gets. The log is
/// replaced every `APPENDS_PER_LOG` appends, outside the timed part, to bound memory.
fn produce_path_metrics(c: &mut Criterion) {
    const APPENDS_PER_LOG: u64 = 20_000;
    let value = vec![b'v'; 1000];
    let template = build_batch(0, 1_700_000_000_000, &[(Some(&b"key"[..]), Some(&value[..]))]);
    let mut group = c.benchmark_group("produce_path_metrics");
    group.throughput(Throughput::Bytes(template.len() as u64));
    for metrics in [false, true] {
        let template = template.clone();
        group.bench_function(if metrics { "on" } else { "off" }, move |b| {
            let template = template.clone();
            b.iter_custom(move |iters| {
                let template = template.clone();
                glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
                    .spawn(move || async move {
                        let requests = shardlog_engine::handlers::probe::RequestProbe::default();
                        let mut elapsed = Duration::ZERO;
                        let mut done = 0;
                        while done < iters {
                            let dir = tempfile::tempdir().expect("temp dir");
                            let mut cfg = config();
                            cfg.cache_bytes = usize::MAX;
                            let p = Partition::new("bench".into(), 0, PartitionLog::open(dir.path(), cfg).expect("open"));
                            let n = (iters - done).min(APPENDS_PER_LOG);
                            let start = Instant::now();
                            for _ in 0..n {
                                let request_started = Instant::now();
                                let info = p.append(BytesMut::from(&template[..]), 0).expect("append");
                                if metrics {
                                    p.probe.bytes_in.add(template.len() as u64);
                                    p.probe.records_in.add((info.last_offset - info.base_offset + 1) as u64);
                                    requests.record(0, request_started.elapsed().as_micros() as u64);
                                }
                            }
                            elapsed += start.elapsed();
                            done += n;
                        }
                        elapsed
                    })
                    .expect("executor")
                    .join()
                    .expect("bench body")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, segment_append, produce_path_metrics);
criterion_main!(benches);
