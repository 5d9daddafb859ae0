//! Cost of metrics on the produce path, measured side by side: rounds of appends with the
//! probes on and off alternate within one run, so machine noise hits both alike, and the
//! report is the median time per append of each, and their ratio (the target: on within 2% of
//! off).
//!
//! "The produce path" here is what a produce request for one partition costs a shard once its
//! frame is read: validating and decoding the request, the in-memory append (CRC check, offset
//! assignment, batch cache, pending-write queue), and encoding the response; with metrics on,
//! also the request probe (timer and per-API histogram) and the partition's byte and record
//! counters, exactly the calls the broker makes. The socket and the disk are left out: their
//! noise would hide a difference of a few percent. Small (1 KiB) batches make the metrics'
//! share as large as it gets.
//!
//! `cargo bench -p shardlog-bench --bench metrics_overhead`

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use shardlog_engine::handlers::probe::RequestProbe;
use shardlog_engine::storage::log::{LogConfig, Partition, PartitionLog};
use shardlog_protocol::batch::build_batch;
use shardlog_protocol::kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use shardlog_protocol::kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use shardlog_protocol::kafka_protocol::messages::{ProduceRequest, ProduceResponse, RequestHeader, TopicName};
use shardlog_protocol::kafka_protocol::protocol::{Encodable, StrBytes};
use shardlog_protocol::request::{decode_request, RequestBody};
use shardlog_protocol::response::encode_response;

const ROUNDS: usize = 41;
const APPENDS_PER_ROUND: usize = 20_000;

fn config() -> LogConfig {
    LogConfig { cache_bytes: usize::MAX, ..LogConfig::default() }
}

const PRODUCE_VERSION: i16 = 9;

/// A Produce v9 request frame (header and body, no length prefix) carrying `batch`.
fn produce_frame(batch: &[u8]) -> Bytes {
    let mut header = RequestHeader::default();
    header.request_api_key = 0;
    header.request_api_version = PRODUCE_VERSION;
    header.correlation_id = 7;
    header.client_id = Some(StrBytes::from_static_str("bench"));
    let mut partition = PartitionProduceData::default();
    partition.index = 0;
    partition.records = Some(Bytes::copy_from_slice(batch));
    let mut topic = TopicProduceData::default();
    topic.name = TopicName(StrBytes::from_static_str("bench"));
    topic.partition_data = vec![partition];
    let mut request = ProduceRequest::default();
    request.acks = 1;
    request.timeout_ms = 30_000;
    request.topic_data = vec![topic];
    let mut buf = BytesMut::new();
    header.encode(&mut buf, 2).expect("header");
    request.encode(&mut buf, PRODUCE_VERSION).expect("body");
    buf.freeze()
}

/// Time per request for one round on a fresh log (not flushed: memory only).
fn round(frame: &Bytes, metrics: bool, requests: &RequestProbe) -> Duration {
    let dir = tempfile::tempdir().expect("temp dir");
    let p = Partition::new("bench".into(), 0, PartitionLog::open(dir.path(), config()).expect("open"));
    let start = Instant::now();
    for _ in 0..APPENDS_PER_ROUND {
        let request_started = quanta::Instant::now();
        let (header, body) = decode_request(frame.clone()).expect("valid request");
        let RequestBody::Produce(request) = body else { panic!("a produce request") };
        let records = request.topic_data[0].partition_data[0].records.as_ref().expect("records");
        let info = p.append(BytesMut::from(&records[..]), 0).expect("append");
        if metrics {
            p.probe.bytes_in.add(records.len() as u64);
            p.probe.records_in.add((info.last_offset - info.base_offset + 1) as u64);
        }
        let mut partition = PartitionProduceResponse::default();
        partition.index = 0;
        partition.base_offset = info.base_offset;
        partition.log_start_offset = info.log_start_offset;
        let mut topic = TopicProduceResponse::default();
        topic.name = request.topic_data[0].name.clone();
        topic.partition_responses = vec![partition];
        let mut response = ProduceResponse::default();
        response.responses = vec![topic];
        let bytes = encode_response(header.correlation_id, 1, &response, PRODUCE_VERSION).expect("response");
        std::hint::black_box(bytes);
        if metrics {
            requests.record(0, request_started.elapsed().as_micros() as u64);
        }
    }
    start.elapsed() / APPENDS_PER_ROUND as u32
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes --bench; `cargo test` runs benches with no flag: do nothing then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let (on, off) = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .spawn(|| async {
            let value = vec![b'v'; 1000];
            let template = produce_frame(&build_batch(0, 1_700_000_000_000, &[(Some(&b"key"[..]), Some(&value[..]))]));
            let requests = RequestProbe::default();
            let (mut on, mut off) = (Vec::new(), Vec::new());
            for i in 0..ROUNDS {
                // Alternate which goes first, so that neither always gets the warmer cache.
                if i % 2 == 0 {
                    off.push(round(&template, false, &requests));
                    on.push(round(&template, true, &requests));
                } else {
                    on.push(round(&template, true, &requests));
                    off.push(round(&template, false, &requests));
                }
            }
            (on, off)
        })
        .expect("executor")
        .join()
        .expect("bench body");
    let (on, off) = (median(on), median(off));
    let ratio = on.as_secs_f64() / off.as_secs_f64();
    println!("produce path (decode, append, encode), {ROUNDS} alternating rounds of {APPENDS_PER_ROUND} requests of a 1 KiB batch");
    println!("metrics off: median {:.1} ns per request", off.as_secs_f64() * 1e9);
    println!("metrics on:  median {:.1} ns per request", on.as_secs_f64() * 1e9);
    println!("on / off: {ratio:.4} ({:+.2}%)", (ratio - 1.0) * 100.0);
}
