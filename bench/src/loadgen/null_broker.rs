//! A minimal in-memory Kafka broker (one node), for `--dry-run` and for the load generator's own
//! tests.
//!
//! With `store` off it acknowledges produce requests after checking each batch's CRC and keeps
//! nothing: a run against it measures the generator alone (plus this trivial broker on the same
//! cores), which shows how far the generator is from being the bottleneck. With `store` on it
//! keeps batches in memory and serves Fetch with long polling, so consumers work; fault
//! injection then lets the tests check that the books catch a broker that loses or corrupts
//! acknowledged records.
//!
//! It speaks only what the load generator uses: ApiVersions, Metadata, CreateTopics, Produce,
//! ListOffsets and Fetch.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Result};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::metadata_response::{MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};
use shardlog_protocol::batch;
use shardlog_protocol::error_code;
use shardlog_protocol::kafka_protocol;
use shardlog_protocol::response::encode_response;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

const NODE_ID: i32 = 0;
const REQUEST_BYTES_MAX: usize = 100 * 1024 * 1024;
/// Stored bytes above which produce requests are refused (KAFKA_STORAGE_ERROR): a bound on the
/// memory a long run with `store` on can take.
const STORE_BYTES_MAX: u64 = 2 * 1024 * 1024 * 1024;

/// What the null broker serves: (key, min, max).
const VERSIONS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::Metadata, 1, 12),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
];

#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Acknowledge every Nth produced batch without storing it (0: never).
    pub lose_every_nth_batch: u64,
    /// Flip one value byte of every Nth stored batch's last record and fix up the batch CRC,
    /// so that only the record's own checksum can tell (0: never).
    pub corrupt_every_nth_batch: u64,
    /// Answer every Nth produce request with KAFKA_STORAGE_ERROR for each of its partitions,
    /// storing none of it (0: never).
    pub refuse_every_nth_produce: u64,
    /// Close the connection on every Nth produce request instead of answering it, storing none
    /// of it; the answers to earlier requests go out first (0: never).
    pub drop_connection_every_nth_produce: u64,
    /// Answer every Nth produce request with NOT_LEADER_OR_FOLLOWER for each of its
    /// partitions, storing none of it, as a broker does while leadership moves (0: never).
    pub not_leader_every_nth_produce: u64,
}

/// Whether the `seen`th event is one of every `n`th (`n` = 0: never).
fn every_nth(n: u64, seen: u64) -> bool {
    n > 0 && seen.is_multiple_of(n)
}

#[derive(Default)]
struct PartitionLog {
    next_offset: i64,
    /// (base offset, last offset, bytes)
    batches: Vec<(i64, i64, Bytes)>,
}

#[derive(Default)]
struct State {
    topics: HashMap<String, Vec<PartitionLog>>,
}

struct Shared {
    address: SocketAddr,
    store: bool,
    faults: Faults,
    state: Mutex<State>,
    appended: Notify,
    batches_seen: AtomicU64,
    produce_requests_seen: AtomicU64,
    stored_bytes: AtomicU64,
}

/// A running null broker; it stops when the runtime that started it stops.
pub struct NullBroker {
    pub address: SocketAddr,
}

impl NullBroker {
    /// Listens on 127.0.0.1 at an ephemeral port.
    pub async fn start(store: bool, faults: Faults) -> Result<NullBroker> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let shared = Arc::new(Shared {
            address,
            store,
            faults,
            state: Mutex::default(),
            appended: Notify::new(),
            batches_seen: AtomicU64::new(0),
            produce_requests_seen: AtomicU64::new(0),
            stored_bytes: AtomicU64::new(0),
        });
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let _ = serve(stream, shared).await;
                });
            }
        });
        Ok(NullBroker { address })
    }
}

async fn serve(stream: TcpStream, shared: Arc<Shared>) -> Result<()> {
    stream.set_nodelay(true)?;
    let (read, write) = stream.into_split();
    let mut read = BufReader::with_capacity(256 * 1024, read);
    let mut write = BufWriter::with_capacity(256 * 1024, write);
    loop {
        let length = match read.read_i32().await {
            Ok(n) => n,
            Err(_) => return Ok(()),
        };
        if length < 8 || length as usize > REQUEST_BYTES_MAX {
            return Err(anyhow!("request frame of {length} bytes"));
        }
        let mut frame = BytesMut::zeroed(length as usize);
        read.read_exact(&mut frame).await?;
        match handle(frame.freeze(), &shared).await {
            Ok(Some(response)) => write.write_all(&response).await?,
            Ok(None) => {}
            Err(e) => {
                // Answers already made go out before the connection closes.
                write.flush().await?;
                return Err(e);
            }
        }
        // Flush only when no further request is already buffered: pipelined requests get their
        // answers in one write.
        if read.buffer().is_empty() {
            write.flush().await?;
        }
    }
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

async fn handle(mut frame: Bytes, shared: &Shared) -> Result<Option<Bytes>> {
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let api = ApiKey::try_from(key).map_err(|()| anyhow!("unknown api key {key}"))?;
    let header = RequestHeader::decode(&mut frame, api.request_header_version(version))?;
    let correlation_id = header.correlation_id;
    let header_version = api.response_header_version(version);
    let encoded = match api {
        ApiKey::ApiVersions => {
            let mut response = ApiVersionsResponse::default();
            response.api_keys = VERSIONS
                .iter()
                .map(|&(k, min, max)| {
                    let mut v = ApiVersion::default();
                    v.api_key = k as i16;
                    v.min_version = min;
                    v.max_version = max;
                    v
                })
                .collect();
            if version > 3 {
                response.error_code = error_code::UNSUPPORTED_VERSION;
                return Ok(Some(encode_response(correlation_id, 0, &response, 0)?));
            }
            encode_response(correlation_id, 0, &response, version)?
        }
        ApiKey::Metadata => {
            let request = MetadataRequest::decode(&mut frame, version)?;
            let mut response = MetadataResponse::default();
            let mut broker = MetadataResponseBroker::default();
            broker.node_id = BrokerId(NODE_ID);
            broker.host = StrBytes::from_string(shared.address.ip().to_string());
            broker.port = shared.address.port() as i32;
            response.brokers = vec![broker];
            response.controller_id = BrokerId(NODE_ID);
            let state = shared.state.lock().expect("state lock");
            for t in request.topics.unwrap_or_default() {
                let topic_name = t.name.map(|n| n.0.to_string()).unwrap_or_default();
                let mut topic = MetadataResponseTopic::default();
                topic.name = Some(name(&topic_name));
                match state.topics.get(&topic_name) {
                    Some(partitions) => {
                        topic.partitions = (0..partitions.len() as i32)
                            .map(|i| {
                                let mut p = MetadataResponsePartition::default();
                                p.partition_index = i;
                                p.leader_id = BrokerId(NODE_ID);
                                p.replica_nodes = vec![BrokerId(NODE_ID)];
                                p.isr_nodes = vec![BrokerId(NODE_ID)];
                                p
                            })
                            .collect();
                    }
                    None => topic.error_code = error_code::UNKNOWN_TOPIC_OR_PARTITION,
                }
                response.topics.push(topic);
            }
            encode_response(correlation_id, header_version, &response, version)?
        }
        ApiKey::CreateTopics => {
            let request = CreateTopicsRequest::decode(&mut frame, version)?;
            let mut response = CreateTopicsResponse::default();
            let mut state = shared.state.lock().expect("state lock");
            for t in request.topics {
                let mut result = CreatableTopicResult::default();
                result.name = t.name.clone();
                let topic_name = t.name.0.to_string();
                match state.topics.entry(topic_name) {
                    std::collections::hash_map::Entry::Occupied(_) => result.error_code = error_code::TOPIC_ALREADY_EXISTS,
                    std::collections::hash_map::Entry::Vacant(slot) => {
                        let partitions = if t.num_partitions <= 0 { 1 } else { t.num_partitions };
                        slot.insert((0..partitions).map(|_| PartitionLog::default()).collect());
                    }
                }
                response.topics.push(result);
            }
            encode_response(correlation_id, header_version, &response, version)?
        }
        ApiKey::Produce => {
            let request = ProduceRequest::decode(&mut frame, version)?;
            let seen = shared.produce_requests_seen.fetch_add(1, Ordering::Relaxed) + 1;
            if every_nth(shared.faults.drop_connection_every_nth_produce, seen) {
                return Err(anyhow!("fault injected: closing the connection at produce request {seen}"));
            }
            let acks = request.acks;
            let refuse = if every_nth(shared.faults.refuse_every_nth_produce, seen) {
                error_code::KAFKA_STORAGE_ERROR
            } else if every_nth(shared.faults.not_leader_every_nth_produce, seen) {
                error_code::NOT_LEADER_OR_FOLLOWER
            } else {
                error_code::NONE
            };
            let response = produce(request, shared, refuse);
            shared.appended.notify_waiters();
            if acks == 0 {
                return Ok(None);
            }
            encode_response(correlation_id, header_version, &response, version)?
        }
        ApiKey::ListOffsets => {
            let request = ListOffsetsRequest::decode(&mut frame, version)?;
            let mut response = ListOffsetsResponse::default();
            let state = shared.state.lock().expect("state lock");
            for t in request.topics {
                let mut topic = ListOffsetsTopicResponse::default();
                topic.name = t.name.clone();
                let log = state.topics.get(t.name.0.as_str());
                for p in t.partitions {
                    let mut answer = ListOffsetsPartitionResponse::default();
                    answer.partition_index = p.partition_index;
                    match log.and_then(|l| l.get(p.partition_index as usize)) {
                        Some(partition) => answer.offset = if p.timestamp == -2 { 0 } else { partition.next_offset },
                        None => answer.error_code = error_code::UNKNOWN_TOPIC_OR_PARTITION,
                    }
                    topic.partitions.push(answer);
                }
                response.topics.push(topic);
            }
            encode_response(correlation_id, header_version, &response, version)?
        }
        ApiKey::Fetch => {
            let request = FetchRequest::decode(&mut frame, version)?;
            let deadline = tokio::time::Instant::now() + Duration::from_millis(request.max_wait_ms.max(0) as u64);
            let response = loop {
                let notified = shared.appended.notified();
                let (response, bytes) = fetch(&request, shared);
                if bytes > 0 || tokio::time::Instant::now() >= deadline {
                    break response;
                }
                let _ = tokio::time::timeout_at(deadline, notified).await;
            };
            encode_response(correlation_id, header_version, &response, version)?
        }
        other => return Err(anyhow!("the null broker does not serve {other:?}")),
    };
    Ok(Some(encoded))
}

/// Appends the request's batches (checking each one's CRC), or, when `refuse` is an error code,
/// stores none of them and answers it.
fn produce(request: ProduceRequest, shared: &Shared, refuse: i16) -> ProduceResponse {
    let mut response = ProduceResponse::default();
    let mut state = shared.state.lock().expect("state lock");
    for t in request.topic_data {
        let mut topic = TopicProduceResponse::default();
        topic.name = t.name.clone();
        let mut log = state.topics.get_mut(t.name.0.as_str());
        for p in t.partition_data {
            let mut answer = PartitionProduceResponse::default();
            answer.index = p.index;
            let records = p.records.unwrap_or_default();
            let partition = log.as_mut().and_then(|l| l.get_mut(p.index as usize));
            match (partition, batch::parse_all(&records, true)) {
                (None, _) => answer.error_code = error_code::UNKNOWN_TOPIC_OR_PARTITION,
                (Some(_), Err(_)) => answer.error_code = error_code::CORRUPT_MESSAGE,
                (Some(_), Ok(_)) if refuse != error_code::NONE => answer.error_code = refuse,
                (Some(_), Ok(_)) if shared.store && shared.stored_bytes.load(Ordering::Relaxed) > STORE_BYTES_MAX => {
                    answer.error_code = error_code::KAFKA_STORAGE_ERROR
                }
                (Some(partition), Ok(headers)) => {
                    answer.base_offset = partition.next_offset;
                    let mut position = 0;
                    for header in headers {
                        let mut bytes = BytesMut::from(&records[position..position + header.size_bytes]);
                        position += header.size_bytes;
                        let base = partition.next_offset;
                        let last = base + header.last_offset_delta as i64;
                        partition.next_offset = last + 1;
                        let seen = shared.batches_seen.fetch_add(1, Ordering::Relaxed) + 1;
                        if !shared.store || every_nth(shared.faults.lose_every_nth_batch, seen) {
                            continue;
                        }
                        batch::set_base_offset(&mut bytes, base);
                        if every_nth(shared.faults.corrupt_every_nth_batch, seen) {
                            corrupt_last_value(&mut bytes, header.size_bytes);
                        }
                        shared.stored_bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                        partition.batches.push((base, last, bytes.freeze()));
                    }
                }
            }
            topic.partition_responses.push(answer);
        }
        response.responses.push(topic);
    }
    response
}

/// Flips the last byte of the batch (in the last record's value, for the generator's records,
/// which end in payload then an empty header count) and recomputes the CRC.
fn corrupt_last_value(bytes: &mut BytesMut, size: usize) {
    if size > batch::BATCH_HEADER_BYTES + 2 {
        bytes[size - 2] ^= 0x01;
        let crc = crc32c::crc32c(&bytes[21..size]);
        bytes[17..21].copy_from_slice(&crc.to_be_bytes());
    }
}

/// Bytes of batches from the fetch offset on, within the partition and response limits.
fn fetch(request: &FetchRequest, shared: &Shared) -> (FetchResponse, usize) {
    let mut response = FetchResponse::default();
    let state = shared.state.lock().expect("state lock");
    let mut total = 0usize;
    for t in &request.topics {
        let mut topic = FetchableTopicResponse::default();
        topic.topic = t.topic.clone();
        let log = state.topics.get(t.topic.0.as_str());
        for p in &t.partitions {
            let mut answer = PartitionData::default();
            answer.partition_index = p.partition;
            answer.records = Some(Bytes::new());
            match log.and_then(|l| l.get(p.partition as usize)) {
                None => answer.error_code = error_code::UNKNOWN_TOPIC_OR_PARTITION,
                Some(partition) => {
                    answer.high_watermark = partition.next_offset;
                    answer.last_stable_offset = partition.next_offset;
                    answer.log_start_offset = 0;
                    if p.fetch_offset > partition.next_offset {
                        answer.error_code = error_code::OFFSET_OUT_OF_RANGE;
                    } else {
                        let first = partition.batches.partition_point(|(_, last, _)| *last < p.fetch_offset);
                        let mut out = BytesMut::new();
                        for (_, _, bytes) in &partition.batches[first..] {
                            // Like Kafka: at least one batch, even above the limits.
                            if !out.is_empty()
                                && (out.len() + bytes.len() > p.partition_max_bytes as usize || total + out.len() + bytes.len() > request.max_bytes as usize)
                            {
                                break;
                            }
                            out.extend_from_slice(bytes);
                        }
                        total += out.len();
                        answer.records = Some(out.freeze());
                    }
                }
            }
            topic.partitions.push(answer);
        }
        response.responses.push(topic);
    }
    (response, total)
}
