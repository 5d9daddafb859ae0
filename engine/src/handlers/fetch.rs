//! Fetch (key 1): reads from the owner shards, long polling up to `max_wait_ms` for `min_bytes`,
//! within the response and per-partition byte limits. Records from the batch cache are sent
//! from memory; older records are sent from the segment file with sendfile.
//!
//! Incremental fetch sessions (KIP-227) are refused the way the protocol allows: a request for a
//! new session gets session id 0 ("no session"), so clients keep sending full fetch requests;
//! a request naming a session id gets FETCH_SESSION_ID_NOT_FOUND.

use std::rc::Rc;
use std::time::Duration;

use kafka_protocol::messages::FetchRequest;
use shardlog_protocol::error_code as ec;
use shardlog_protocol::kafka_protocol;
use shardlog_protocol::request::RequestHeader;
use shardlog_protocol::response::{encode_fetch_response, Chunk, FetchPartitionData, FetchTopicData};

use super::Response;
use crate::authorizer::check::{Authz, TOPIC_AUTHORIZATION_FAILED};
use crate::authorizer::Operation;
use crate::net::FileRange;
use crate::shard::messages::{ReadOutcome, ShardReply, ShardRequest};
use crate::shard::Shard;
use crate::storage::log::{now_ms, ReadPiece};

/// Longest long poll we honour (5 minutes), whatever the client asks; clients time out their
/// requests well before this (request.timeout.ms defaults to 30 s).
pub const FETCH_WAIT_MS_MAX: i32 = 300_000;

struct Wanted {
    topic: String,
    partition: i32,
    offset: i64,
    max_bytes: usize,
    owner: Option<usize>,
    /// READ on the topic was denied.
    denied: bool,
}

fn empty_outcome(code: i16) -> ReadOutcome {
    ReadOutcome { error_code: code, pieces: Vec::new(), bytes: 0, high_watermark: -1, last_stable_offset: -1, log_start_offset: -1, aborted: None }
}

/// Fetch's isolation_level: 1 is read_committed.
const READ_COMMITTED: i8 = 1;

async fn read_all(shard: &Rc<Shard>, wanted: &[Wanted], read_committed: bool) -> Vec<ReadOutcome> {
    let calls = wanted.iter().map(|w| {
        let shard = shard.clone();
        let (topic, partition, offset, max_bytes, owner) = (w.topic.clone(), w.partition, w.offset, w.max_bytes, w.owner);
        let denied = w.denied;
        async move {
            if denied {
                return empty_outcome(TOPIC_AUTHORIZATION_FAILED);
            }
            let Some(owner) = owner else { return empty_outcome(ec::UNKNOWN_TOPIC_OR_PARTITION) };
            match shard.dispatch(owner, ShardRequest::Read { topic, partition, offset, max_bytes, read_committed }).await {
                ShardReply::Read(o) => o,
                _ => empty_outcome(ec::UNKNOWN_SERVER_ERROR),
            }
        }
    });
    futures::future::join_all(calls).await
}

pub async fn handle(shard: &Rc<Shard>, header: &RequestHeader, request: FetchRequest, authz: &Authz<'_>) -> Response {
    let version = header.api_version;
    if version >= 7 && request.session_id != 0 {
        tracing::debug!(session_id = request.session_id, "fetch session not found (sessions are not kept)");
        let chunks = encode_fetch_response::<FileRange>(header.correlation_id, version, 0, ec::FETCH_SESSION_ID_NOT_FOUND, 0, Vec::new());
        return Response::Frame(chunks);
    }
    let response_max_bytes = if request.max_bytes <= 0 { usize::MAX } else { request.max_bytes as usize };
    let mut wanted = Vec::new();
    for t in &request.topics {
        let topic = t.topic.0.to_string();
        let denied = !authz.topic(Operation::Read, &topic);
        for p in &t.partitions {
            let owner = shard.owner(&topic, p.partition);
            wanted.push(Wanted {
                topic: topic.clone(),
                partition: p.partition,
                offset: p.fetch_offset,
                // No partition reads past the response limit either (Kafka reads each at most what
                // is left of it): one batch larger than both still comes back, more than one does not.
                max_bytes: (p.partition_max_bytes.max(0) as usize).min(response_max_bytes),
                owner,
                denied,
            });
        }
    }
    let min_bytes = request.min_bytes.max(0) as usize;
    let deadline_ms = now_ms() + request.max_wait_ms.clamp(0, FETCH_WAIT_MS_MAX) as u64;
    let read_committed = request.isolation_level == READ_COMMITTED;
    let mut outcomes = read_all(shard, &wanted, read_committed).await;
    loop {
        let bytes: usize = outcomes.iter().map(|o| o.bytes).sum();
        let errors = outcomes.iter().any(|o| o.error_code != ec::NONE);
        if bytes >= min_bytes.max(1) || errors || now_ms() >= deadline_ms || wanted.is_empty() || shard.shutting_down.get() {
            break;
        }
        // Wait until any partition gets new data, or the deadline.
        // Wait for an append after what this read saw (the log end offset it reported), not
        // merely past the fetch offset: otherwise a partition with data below min_bytes would
        // wake us at once, and the loop would spin the shard until the deadline.
        let waits = wanted
            .iter()
            .zip(&outcomes)
            .filter_map(|(w, o)| {
                let owner = w.owner?;
                let shard = shard.clone();
                let seen_end = if read_committed { o.last_stable_offset } else { o.high_watermark }.max(w.offset);
                let request = ShardRequest::WaitForAppend { topic: w.topic.clone(), partition: w.partition, offset: seen_end, deadline_ms, read_committed };
                Some(Box::pin(async move {
                    shard.dispatch(owner, request).await;
                }))
            })
            .collect::<Vec<_>>();
        if waits.is_empty() {
            break;
        }
        let any = futures::future::select_all(waits);
        let sleep = glommio::timer::sleep(Duration::from_millis(deadline_ms.saturating_sub(now_ms())));
        futures_lite::future::or(
            async {
                any.await;
            },
            sleep,
        )
        .await;
        outcomes = read_all(shard, &wanted, read_committed).await;
    }
    // Apply the response byte limit in request order; the first partition with data always
    // gets its first batch, so a batch larger than the limit still makes progress.
    let mut budget = response_max_bytes;
    let mut first = true;
    let mut topics: Vec<FetchTopicData<FileRange>> = Vec::new();
    for (w, o) in wanted.into_iter().zip(outcomes) {
        let mut records = Vec::new();
        if o.bytes > 0 && (first || o.bytes <= budget) {
            first = false;
            budget = budget.saturating_sub(o.bytes);
            for piece in o.pieces {
                records.push(match piece {
                    ReadPiece::Memory(b) => Chunk::Bytes(b),
                    ReadPiece::File { file, position, len } => Chunk::External { len, source: FileRange { file, position } },
                });
            }
        }
        let data = FetchPartitionData {
            partition_index: w.partition,
            error_code: o.error_code,
            high_watermark: o.high_watermark,
            last_stable_offset: o.last_stable_offset,
            log_start_offset: o.log_start_offset,
            aborted_transactions: o.aborted,
            records,
        };
        match topics.last_mut() {
            Some(t) if t.name == w.topic => t.partitions.push(data),
            _ => topics.push(FetchTopicData { name: w.topic, partitions: vec![data] }),
        }
    }
    Response::Frame(encode_fetch_response(header.correlation_id, version, 0, ec::NONE, 0, topics))
}
