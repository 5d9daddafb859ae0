//! Request and response codecs: the per-request CPU cost of the wire protocol, outside the
//! records themselves.
//!
//! Decoding goes through `decode_request`, exactly what a connection does with a frame: header,
//! then the schema walk of `validate.rs` (every count and length checked against the bytes
//! left), then `kafka-protocol`'s decoder. The request frames are built with `kafka-protocol`'s
//! encoders, as a client would send them (without the 4-byte length, which the connection has
//! already read). Encoding covers the Fetch encoder of our own (record bytes from the batch
//! cache, or left to sendfile) and a Metadata response through `encode_response`.
//!
//! Throughput: bytes per second where the size is mostly record data (a Produce request, a
//! Fetch response from the batch cache), requests or responses per second (`elements`) for the
//! rest.

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use shardlog_protocol::batch::build_batch;
use shardlog_protocol::kafka_protocol;
use shardlog_protocol::request::{decode_request, RequestBody};
use shardlog_protocol::response::{encode_fetch_response, encode_response, Chunk, FetchPartitionData, FetchTopicData};

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::metadata_response::{MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, MetadataRequest, MetadataResponse, ProduceRequest, RequestHeader, TopicName};
use kafka_protocol::protocol::{Encodable, StrBytes};

const TOPIC: &str = "bench-codecs";
/// Records per batch and value bytes: 16 x 1 KiB, about 16.6 KB with the batch framing, the
/// batch size the other benches use.
const BATCH_RECORDS: usize = 16;
const VALUE_BYTES: usize = 1024;
/// Partitions in the Fetch request and response.
const FETCH_PARTITIONS: i32 = 10;
/// Partitions of the topic in the Metadata response (the workloads' default topic).
const METADATA_PARTITIONS: i32 = 16;

fn topic_name() -> TopicName {
    TopicName(StrBytes::from_static_str(TOPIC))
}

fn batch() -> Bytes {
    let value = vec![b'v'; VALUE_BYTES];
    let keys: Vec<Vec<u8>> = (0..BATCH_RECORDS).map(|i| format!("key-{i}").into_bytes()).collect();
    let records: Vec<shardlog_protocol::batch::KeyValue> = keys.iter().map(|k| (Some(&k[..]), Some(&value[..]))).collect();
    Bytes::from(build_batch(0, 1_700_000_000_000, &records))
}

/// A request frame as the connection hands it to `decode_request`: header and body, no length.
fn request_frame<T: Encodable>(key: ApiKey, version: i16, body: &T) -> Bytes {
    let mut header = RequestHeader::default();
    header.request_api_key = key as i16;
    header.request_api_version = version;
    header.correlation_id = 7;
    header.client_id = Some(StrBytes::from_static_str("shardlog-bench"));
    let mut frame = BytesMut::new();
    header.encode(&mut frame, key.request_header_version(version)).expect("encode header");
    body.encode(&mut frame, version).expect("encode body");
    frame.freeze()
}

fn produce_frame(batch: &Bytes) -> Bytes {
    let mut partition = PartitionProduceData::default();
    partition.index = 0;
    partition.records = Some(batch.clone());
    let mut topic = TopicProduceData::default();
    topic.name = topic_name();
    topic.partition_data = vec![partition];
    let mut request = ProduceRequest::default();
    request.acks = -1;
    request.timeout_ms = 30_000;
    request.topic_data = vec![topic];
    request_frame(ApiKey::Produce, 9, &request)
}

fn fetch_frame() -> Bytes {
    let mut topic = FetchTopic::default();
    topic.topic = topic_name();
    topic.partitions = (0..FETCH_PARTITIONS)
        .map(|i| {
            let mut p = FetchPartition::default();
            p.partition = i;
            p.current_leader_epoch = 0;
            p.fetch_offset = 1_000_000 + i64::from(i);
            p.last_fetched_epoch = 0;
            p.log_start_offset = -1;
            p.partition_max_bytes = 1 << 20;
            p
        })
        .collect();
    let mut request = FetchRequest::default();
    request.replica_id = BrokerId(-1);
    request.max_wait_ms = 500;
    request.min_bytes = 1;
    request.max_bytes = 50 << 20;
    request.topics = vec![topic];
    request_frame(ApiKey::Fetch, 12, &request)
}

fn metadata_frame() -> Bytes {
    let mut topic = MetadataRequestTopic::default();
    topic.name = Some(topic_name());
    let mut request = MetadataRequest::default();
    request.topics = Some(vec![topic]);
    request.allow_auto_topic_creation = true;
    request_frame(ApiKey::Metadata, 12, &request)
}

fn decode(c: &mut Criterion) {
    let batch = batch();
    let produce = produce_frame(&batch);
    let fetch = fetch_frame();
    let metadata = metadata_frame();
    // Check once, outside the timed loops, that each frame decodes to what it should.
    assert!(matches!(decode_request(produce.clone()), Ok((_, RequestBody::Produce(_)))));
    assert!(matches!(decode_request(fetch.clone()), Ok((_, RequestBody::Fetch(r))) if r.topics[0].partitions.len() == FETCH_PARTITIONS as usize));
    assert!(matches!(decode_request(metadata.clone()), Ok((_, RequestBody::Metadata(_)))));

    let mut group = c.benchmark_group("decode_request");
    group.throughput(Throughput::Bytes(produce.len() as u64));
    group.bench_function(format!("produce_v9/1x{}B_batch/{}B", batch.len(), produce.len()), |b| {
        b.iter(|| decode_request(black_box(produce.clone())).expect("decodes"))
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function(format!("fetch_v12/{FETCH_PARTITIONS}_partitions/{}B", fetch.len()), |b| {
        b.iter(|| decode_request(black_box(fetch.clone())).expect("decodes"))
    });
    group.bench_function(format!("metadata_v12/1_topic/{}B", metadata.len()), |b| b.iter(|| decode_request(black_box(metadata.clone())).expect("decodes")));
    group.finish();
}

/// Where an external chunk's bytes would come from: a segment file and a position, as the
/// broker's sendfile path has them. Only carried through the encoder here.
#[derive(Clone, Copy)]
struct FileRange {
    _position: u64,
}

fn fetch_topics<T>(records: impl Fn(i32) -> Vec<Chunk<T>>) -> Vec<FetchTopicData<T>> {
    let partitions = (0..FETCH_PARTITIONS)
        .map(|i| FetchPartitionData {
            partition_index: i,
            error_code: 0,
            high_watermark: 2_000_000,
            last_stable_offset: 2_000_000,
            log_start_offset: 0,
            aborted_transactions: None,
            preferred_read_replica: -1,
            records: records(i),
        })
        .collect();
    vec![FetchTopicData { name: TOPIC.to_string(), partitions }]
}

fn metadata_response() -> MetadataResponse {
    let node = BrokerId(1);
    let mut broker = MetadataResponseBroker::default();
    broker.node_id = node;
    broker.host = StrBytes::from_static_str("127.0.0.1");
    broker.port = 9092;
    let mut topic = MetadataResponseTopic::default();
    topic.name = Some(topic_name());
    topic.topic_authorized_operations = i32::MIN;
    topic.partitions = (0..METADATA_PARTITIONS)
        .map(|i| {
            let mut p = MetadataResponsePartition::default();
            p.partition_index = i;
            p.leader_id = node;
            p.leader_epoch = 0;
            p.replica_nodes = vec![node];
            p.isr_nodes = vec![node];
            p
        })
        .collect();
    let mut response = MetadataResponse::default();
    response.brokers = vec![broker];
    response.cluster_id = Some(StrBytes::from_static_str("shardlog-bench-cluster"));
    response.controller_id = node;
    response.cluster_authorized_operations = i32::MIN;
    response.topics = vec![topic];
    response
}

fn chunks_len<T>(chunks: &[Chunk<T>]) -> usize {
    chunks.iter().map(Chunk::len).sum()
}

fn encode(c: &mut Criterion) {
    let batch = batch();

    let mut group = c.benchmark_group("encode_response");
    // Tail reads: one cached batch per partition, copied into the response (the plaintext
    // writer sends one buffer).
    let cached = encode_fetch_response::<()>(7, 12, 0, 0, 0, fetch_topics(|_| vec![Chunk::Bytes(batch.clone())]));
    group.throughput(Throughput::Bytes(chunks_len(&cached) as u64));
    group.bench_function(format!("fetch_v12/{FETCH_PARTITIONS}_partitions_cached/{}B", chunks_len(&cached)), |b| {
        b.iter(|| encode_fetch_response::<()>(7, 12, 0, 0, 0, fetch_topics(|_| vec![Chunk::Bytes(black_box(&batch).clone())])))
    });
    // Cold reads: the same response with the record bytes left to sendfile: only the framing
    // is encoded, so this is the encoder's own cost, counted in responses per second (bytes
    // per second would count record bytes the encoder never touches).
    let external = |i: i32| vec![Chunk::External { len: batch.len(), source: FileRange { _position: i as u64 * 4096 } }];
    let from_files = encode_fetch_response(7, 12, 0, 0, 0, fetch_topics(external));
    assert_eq!(chunks_len(&from_files), chunks_len(&cached));
    group.throughput(Throughput::Elements(1));
    group.bench_function(format!("fetch_v12/{FETCH_PARTITIONS}_partitions_sendfile/{}B", chunks_len(&from_files)), |b| {
        b.iter(|| encode_fetch_response(7, 12, 0, 0, 0, fetch_topics(|i| black_box(external(i)))))
    });

    let metadata = metadata_response();
    let header_version = ApiKey::Metadata.response_header_version(12);
    let encoded = encode_response(7, header_version, &metadata, 12).expect("encodes");
    group.bench_function(format!("metadata_v12/1_topic_{METADATA_PARTITIONS}_partitions/{}B", encoded.len()), |b| {
        b.iter(|| encode_response(7, header_version, black_box(&metadata), 12).expect("encodes"))
    });
    group.finish();
}

criterion_group!(benches, decode, encode);
criterion_main!(benches);
