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
    LogConfig { segment_bytes: 256 << 20, ..LogConfig::default() }
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
                    cfg.flush_window_us = 5_000;
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

criterion_group!(benches, segment_append);
criterion_main!(benches);
