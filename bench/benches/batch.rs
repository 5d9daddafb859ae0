//! Record-batch header parsing and CRC-32C: the per-batch CPU cost of the produce path.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use shardlog_protocol::batch::{build_batch, parse_all, parse_header, set_base_offset};

fn batch_of(records: usize, value_bytes: usize) -> Vec<u8> {
    let value = vec![b'x'; value_bytes];
    let keys: Vec<Vec<u8>> = (0..records).map(|i| format!("key-{i}").into_bytes()).collect();
    let recs: Vec<shardlog_protocol::batch::KeyValue> = keys.iter().map(|k| (Some(&k[..]), Some(&value[..]))).collect();
    build_batch(0, 1_700_000_000_000, &recs)
}

fn header_parsing(c: &mut Criterion) {
    let mut group = c.benchmark_group("batch_header");
    for (records, value_bytes) in [(1usize, 100usize), (16, 1024), (64, 1024)] {
        let batch = batch_of(records, value_bytes);
        group.throughput(Throughput::Bytes(batch.len() as u64));
        group.bench_function(format!("parse_with_crc/{}B", batch.len()), |b| b.iter(|| parse_header(black_box(&batch), 0, true).unwrap()));
        group.bench_function(format!("parse_without_crc/{}B", batch.len()), |b| b.iter(|| parse_header(black_box(&batch), 0, false).unwrap()));
    }
    let mut many = Vec::new();
    for _ in 0..64 {
        many.extend_from_slice(&batch_of(16, 1024));
    }
    group.throughput(Throughput::Bytes(many.len() as u64));
    group.bench_function(format!("parse_all_and_assign_offsets/{}B", many.len()), |b| {
        b.iter(|| {
            let mut bytes = many.clone();
            let headers = parse_all(&bytes, true).unwrap();
            let mut position = 0;
            for (i, h) in headers.iter().enumerate() {
                set_base_offset(&mut bytes[position..], i as i64 * 16);
                position += h.size_bytes;
            }
            black_box(bytes)
        })
    });
    group.finish();
}

fn crc(c: &mut Criterion) {
    let mut group = c.benchmark_group("crc32c");
    for size in [1024usize, 16 << 10, 1 << 20] {
        let data = vec![0xa5u8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(format!("{size}B"), |b| b.iter(|| crc32c::crc32c(black_box(&data))));
    }
    group.finish();
}

criterion_group!(benches, header_parsing, crc);
criterion_main!(benches);
