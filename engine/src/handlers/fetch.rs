//! Fetch (key 1): reads from the owner shards, long polling up to `max_wait_ms` for `min_bytes`,
//! within the response and per-partition byte limits. Each owner shard gets one message per
//! round with all of its partitions and waits for appends itself; a fetch whose partitions all
//! live on one shard is one message and one answer however long it polls. Records from the
//! batch cache are sent from memory; older records are sent from the segment file with sendfile.
//!
//! Incremental fetch sessions (KIP-227) are refused the way the protocol allows: a request for a
//! new session gets session id 0 ("no session"), so clients keep sending full fetch requests;
//! a request naming a session id gets FETCH_SESSION_ID_NOT_FOUND.

use kafka_protocol::messages::FetchRequest;
use shardlog_protocol::error_code::{self as ec, TOPIC_AUTHORIZATION_FAILED};
use shardlog_protocol::kafka_protocol;
use shardlog_protocol::response::{encode_fetch_response, Chunk, FetchPartitionData, FetchTopicData};

use super::{group_by_owner, Context, Response};
use crate::authorizer::Operation;
use crate::quota::manager::QuotaType;
use crate::shard::messages::{Fetch, FetchPartition, ReadOutcome};
use crate::storage::log::{now_ms, ReadPiece};
use crate::storage::FileRange;

/// Longest long poll we honour (5 minutes), whatever the client asks; clients time out their
/// requests well before this (request.timeout.ms defaults to 30 s).
pub const FETCH_WAIT_MS_MAX: i32 = 300_000;

#[derive(Clone)]
struct Wanted {
    topic: String,
    partition: i32,
    offset: i64,
    max_bytes: usize,
    current_leader_epoch: i32,
    owner: Option<usize>,
    /// READ on the topic was denied.
    denied: bool,
}

/// Whether a consumer's fetch may be served by a follower's copy (v11+, KIP-392), and its
/// `client.rack` where the leader is to pick a replica near it (`replica.selector.class`).
#[derive(Default)]
struct FollowerReads {
    follower_reads: bool,
    client_rack: Option<String>,
}

/// Fetch's isolation_level: 1 is read_committed.
const READ_COMMITTED: i8 = 1;

/// One round: every owner shard reads its partitions of the request (one message each), and
/// waits there until its own part reaches `min_bytes[owner]` or the deadline. Outcomes come back
/// in request order.
async fn fetch_round(
    ctx: &Context<'_>,
    wanted: &[Wanted],
    read_committed: bool,
    replica_id: i32,
    reading: &FollowerReads,
    min_bytes: impl Fn(usize) -> usize,
    deadline_ms: u64,
) -> Vec<ReadOutcome> {
    let mut outcomes: Vec<Option<ReadOutcome>> = wanted
        .iter()
        .map(|w| match (w.denied, w.owner) {
            (true, _) => Some(ReadOutcome::empty(TOPIC_AUTHORIZATION_FAILED)),
            (false, None) => Some(ReadOutcome::empty(ctx.absent_partition_error(&w.topic, w.partition))),
            (false, Some(_)) => None,
        })
        .collect();
    let calls = owners(wanted).into_iter().map(|(owner, positions)| {
        let partitions: Vec<FetchPartition> = positions
            .iter()
            .map(|&i| FetchPartition {
                topic: wanted[i].topic.clone(),
                partition: wanted[i].partition,
                offset: wanted[i].offset,
                max_bytes: wanted[i].max_bytes,
                current_leader_epoch: wanted[i].current_leader_epoch,
            })
            .collect();
        let request = Fetch {
            partitions,
            read_committed,
            min_bytes: min_bytes(owner),
            deadline_ms,
            replica_id,
            follower_reads: reading.follower_reads,
            client_rack: reading.client_rack.clone(),
        };
        async move {
            let count = positions.len();
            let replied = match ctx.call(owner, request).await {
                Ok(o) => {
                    assert_eq!(o.len(), count, "owner shard {owner} answered {} of {count} partitions", o.len());
                    o
                }
                Err(e) => {
                    tracing::warn!(shard = owner, error = %e, "fetch not delivered to the partitions' shard");
                    (0..count).map(|_| ReadOutcome::empty(ec::NOT_LEADER_OR_FOLLOWER)).collect()
                }
            };
            positions.into_iter().zip(replied).collect::<Vec<_>>()
        }
    });
    for (i, o) in futures::future::join_all(calls).await.into_iter().flatten() {
        outcomes[i] = Some(o);
    }
    outcomes.into_iter().map(|o| o.expect("every partition has an outcome")).collect()
}

/// The owner shards of the readable partitions, each with their positions in the request.
fn owners(wanted: &[Wanted]) -> Vec<(usize, Vec<usize>)> {
    group_by_owner(wanted.iter().map(|w| w.owner.filter(|_| !w.denied)))
}

pub async fn handle(ctx: &Context<'_>, request: FetchRequest) -> Response {
    let header = ctx.header;
    let authz = &ctx.authz;
    let version = header.api_version;
    if version >= 7 && request.session_id != 0 {
        tracing::debug!(session_id = request.session_id, "fetch session not found (sessions are not kept)");
        let chunks = encode_fetch_response::<FileRange>(header.correlation_id, version, 0, ec::FETCH_SESSION_ID_NOT_FOUND, 0, Vec::new());
        return Response::Frame(chunks);
    }
    let mut response_max_bytes = if request.max_bytes <= 0 { usize::MAX } else { request.max_bytes as usize };
    // A follower's fetch (Fetch v4-12 name the replica in the body): it reads up to the log end,
    // not the high watermark, and its offsets advance the high watermark. A broker acts for the
    // cluster: CLUSTER_ACTION, not READ on each topic, as Kafka authorizes it.
    let replica_id = request.replica_id.0.max(-1);
    let replica_denied = replica_id >= 0 && !authz.cluster(Operation::ClusterAction);
    // Followers are not held to client quotas, as in Kafka.
    if replica_id >= 0 {
        ctx.connection.mark_replica_link();
    }
    let quota = if replica_id >= 0 { None } else { ctx.client_quota(QuotaType::Fetch) };
    if let Some(q) = &quota {
        // One response takes no more than the quota windows hold (Kafka's
        // getMaxValueInQuotaWindow), so one fetch cannot take many windows' worth.
        let window_bytes = crate::quota::manager::QuotaManager::max_value_in_window(ctx.config().quota_window, q.bound);
        response_max_bytes = response_max_bytes.min(window_bytes.max(1.0) as usize);
    }
    let reading = if replica_id < 0 && version >= 11 {
        let rack_aware = ctx.config().replication.rack_aware_replica_selector;
        FollowerReads { follower_reads: true, client_rack: Some(request.rack_id.to_string()).filter(|r| rack_aware && !r.is_empty()) }
    } else {
        FollowerReads::default()
    };
    let mut wanted = Vec::new();
    for t in &request.topics {
        let topic = t.topic.0.to_string();
        let denied = if replica_id >= 0 { replica_denied } else { !authz.topic(Operation::Read, &topic) };
        for p in &t.partitions {
            let owner = if reading.follower_reads { ctx.replica_shard(&topic, p.partition) } else { ctx.owner(&topic, p.partition) };
            wanted.push(Wanted {
                topic: topic.clone(),
                partition: p.partition,
                offset: p.fetch_offset,
                // No partition reads past the response limit either (Kafka reads each at most what
                // is left of it): one batch larger than both still comes back, more than one does not.
                max_bytes: (p.partition_max_bytes.max(0) as usize).min(response_max_bytes),
                // v9+ (KIP-320); the decoder leaves -1 (none) for older versions.
                current_leader_epoch: p.current_leader_epoch,
                owner,
                denied,
            });
        }
    }
    let min_bytes = request.min_bytes.max(0) as usize;
    let deadline_ms = now_ms() + request.max_wait_ms.clamp(0, FETCH_WAIT_MS_MAX) as u64;
    let read_committed = request.isolation_level == READ_COMMITTED;
    let groups = owners(&wanted);
    // A partition that fails here already (READ denied, unknown) answers the fetch at once, as
    // any error does, so the owners are not left to wait.
    let failed_here = wanted.iter().any(|w| w.denied || w.owner.is_none());
    let outcomes = if groups.len() <= 1 {
        // One owner (the common case): it long-polls by itself and answers once.
        let (min_bytes, deadline_ms) = if failed_here { (0, 0) } else { (min_bytes, deadline_ms) };
        fetch_round(ctx, &wanted, read_committed, replica_id, &reading, |_| min_bytes, deadline_ms).await
    } else {
        // min_bytes counts over every owner: read everywhere at once; while short, let each owner
        // wait for more than it had, and read everywhere again when the first one has it.
        let mut outcomes = fetch_round(ctx, &wanted, read_committed, replica_id, &reading, |_| 0, 0).await;
        loop {
            let bytes: usize = outcomes.iter().map(|o| o.bytes).sum();
            let errors = outcomes.iter().any(|o| o.error_code != ec::NONE || o.preferred_read_replica >= 0);
            if bytes >= min_bytes.max(1) || errors || now_ms() >= deadline_ms || ctx.shutting_down() {
                break outcomes;
            }
            let waits = groups
                .iter()
                .map(|(_, positions)| {
                    let only: Vec<Wanted> = positions.iter().map(|&i| wanted[i].clone()).collect();
                    // More than this owner had: it answers once its own part grew.
                    let more = positions.iter().map(|&i| outcomes[i].bytes).sum::<usize>() + 1;
                    let reading = &reading;
                    Box::pin(async move {
                        fetch_round(ctx, &only, read_committed, replica_id, reading, |_| more, deadline_ms).await;
                    })
                })
                .collect::<Vec<_>>();
            futures::future::select_all(waits).await;
            outcomes = fetch_round(ctx, &wanted, read_committed, replica_id, &reading, |_| 0, 0).await;
        }
    };
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
            preferred_read_replica: o.preferred_read_replica,
            records,
        };
        match topics.last_mut() {
            Some(t) if t.name == w.topic => t.partitions.push(data),
            _ => topics.push(FetchTopicData { name: w.topic, partitions: vec![data] }),
        }
    }
    let chunks = encode_fetch_response(header.correlation_id, version, 0, ec::NONE, 0, topics);
    let Some(q) = quota else { return Response::Frame(chunks) };
    let size: usize = chunks
        .iter()
        .map(|c| match c {
            Chunk::Bytes(b) => b.len(),
            Chunk::External { len, .. } => *len,
        })
        .sum();
    let throttle_ms = ctx.record_quota(QuotaType::Fetch, &q, size);
    if throttle_ms == 0 {
        return Response::Frame(chunks);
    }
    // Over the quota: answered with the throttle time and no data, and the bytes not sent are
    // taken back from the measurement, as Kafka does.
    ctx.unrecord_quota(QuotaType::Fetch, &q, size);
    if version < CLIENT_THROTTLES_FROM_VERSION {
        // Before KIP-219 the client does not hold back by itself: the broker delays the answer.
        crate::runtime::sleep(std::time::Duration::from_millis(throttle_ms)).await;
    }
    let throttle = throttle_ms.min(i32::MAX as u64) as i32;
    Response::Frame(encode_fetch_response::<FileRange>(header.correlation_id, version, throttle, ec::NONE, 0, Vec::new()))
}

/// Fetch versions whose clients back off by the throttle time themselves (KIP-219).
const CLIENT_THROTTLES_FROM_VERSION: i16 = 8;
