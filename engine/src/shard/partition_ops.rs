//! What a shard does for the partitions it owns, whether the request came from one of its own
//! connections or over the mesh from another shard.

use std::rc::Rc;
use std::time::Duration;

use futures::StreamExt;
use shardlog_protocol::error_code as ec;

use super::messages::{
    DeleteRecords, DescribeProducers, EpochEnd, EpochEndOffsets, EpochQuery, Fetch, FetchPartition, ListOffset, ListedOffset, LogDirFailed, LogDirSizes,
    LogDirUsage, Produce, ProduceOutcome, ProducerInfo, ReadOutcome, TxnMarker,
};
use super::replicas::LeaderReplicas;
use super::replication_quota::{self, Side};
use super::{Shard, TxnVerification};
use crate::metadata::ClusterMetadata;
use crate::runtime;
use crate::storage::batch_bytes::RequestBuffer;
use crate::storage::log::{now_ms, AppendError, LogConfig, Partition, PartitionLog, ReadError};
use crate::storage::max_timestamp::MaxTimestampLookup;
use crate::storage::timestamp_lookup::TimestampLookup;
use crate::topic_config::ResolvedTopicConfig;

/// Registers on this shard's router the calls it answers for the partitions it owns. Transaction
/// markers, metadata changes and snapshots involve the coordinators too: `broker` registers
/// those, around [`write_marker`], [`apply_metadata`] and [`super::probe::snapshot`].
pub fn serve(shard: &Rc<Shard>) {
    shard.serve(|shard, call: Produce| {
        async move {
            // join_all polls the appends in request order, so each reaches its partition (and
            // the dirty budget's line) in that order: pipelined requests keep their offsets'
            // order.
            let request = RequestBuffer::new(call.request_bytes);
            let appends = call.partitions.iter().map(|(topic, partition, records)| produce(&shard, &call, &request, topic, *partition, records.clone()));
            futures::future::join_all(appends).await
        }
    });
    shard.serve(|shard, call: Fetch| async move { fetch(&shard, &call).await });
    shard.serve(|shard, call: ListOffset| async move {
        let error_code = shard.check_leader_epoch(&call.topic, call.partition, call.current_leader_epoch);
        if error_code != ec::NONE {
            return ListedOffset { error_code, offset: -1, timestamp: -1, leader_epoch: -1 };
        }
        let (error_code, offset, timestamp) = list_offset(&shard, &call.topic, call.partition, call.timestamp, call.read_committed).await;
        // The epoch of the batch at the offset found, as Kafka answers it (v4+).
        let leader_epoch = match shard.local_partition(&call.topic, call.partition) {
            Some(p) if offset >= 0 && error_code == ec::NONE => {
                let log = p.log.borrow();
                let epochs = log.leader_epochs();
                if offset >= log.log_end_offset() {
                    epochs.latest_epoch()
                } else {
                    epochs.epoch_for_offset(offset)
                }
            }
            _ => None,
        };
        ListedOffset { error_code, offset, timestamp, leader_epoch: leader_epoch.unwrap_or(-1) }
    });
    shard.serve(|shard, call: EpochEndOffsets| {
        let reply: Vec<EpochEnd> = call.partitions.iter().map(|q| epoch_end_offset(&shard, q)).collect();
        async move { reply }
    });
    shard.serve(|shard, call: DescribeProducers| {
        let reply = describe_producers(&shard, &call.topic, call.partition);
        async move { reply }
    });
    shard.serve(|shard, call: DeleteRecords| async move { super::maintenance::delete_records(&shard, &call.topic, call.partition, call.offset).await });
    shard.serve(|shard, _: LogDirSizes| {
        let usage = LogDirUsage { partitions: super::maintenance::log_dir_sizes(&shard), failed: shard.log_dirs.failed() };
        async move { usage }
    });
    shard.serve(|shard, call: LogDirFailed| async move { super::log_dirs::fail(&shard, call.dir, &call.why, false).await });
}

/// The transactional side of a produce request.
#[derive(Debug, Clone, Copy)]
pub struct ProduceTransaction<'a> {
    pub id: &'a str,
    /// The client knows TRANSACTION_ABORTABLE (Produce v11+).
    pub abortable_known: bool,
}

/// Appends one partition's `records` of a produce request (`call`), answered when the request's
/// acks are met.
pub async fn produce(shard: &Rc<Shard>, call: &Produce, request: &Rc<RequestBuffer>, topic: &str, partition: i32, records: bytes::Bytes) -> ProduceOutcome {
    let (acks, timeout_ms) = (call.acks, call.timeout_ms);
    let transaction = call.transactional_id.as_deref().map(|id| ProduceTransaction { id, abortable_known: call.transaction_abortable_known });
    let mut outcome = ProduceOutcome {
        error_code: ec::NONE,
        base_offset: -1,
        log_append_time_ms: -1,
        log_start_offset: -1,
        error_message: None,
        duplicate: false,
        record_errors: Vec::new(),
    };
    let Some(p) = shard.local_partition(topic, partition) else {
        outcome.error_code = shard.absent_partition_error(topic, partition);
        return outcome;
    };
    if shard.owner(topic, partition) != Some(shard.id) {
        // A follower's copy (the leadership moved since the client's metadata).
        outcome.error_code = ec::NOT_LEADER_OR_FOLLOWER;
        return outcome;
    }
    if acks == -1 && shard.leaders.borrow().get(&(topic.to_string(), partition)).is_some_and(|l| l.under_min_isr()) {
        outcome.error_code = ec::NOT_ENOUGH_REPLICAS;
        outcome.error_message = Some(format!("the in-sync replicas of {topic}-{partition} are fewer than min.insync.replicas"));
        return outcome;
    }
    if let Err((code, message)) = verify_transaction(shard, &p, &records, transaction).await {
        tracing::warn!(topic, partition, error = %message, "transactional produce refused");
        outcome.error_code = code;
        outcome.error_message = Some(message);
        return outcome;
    }
    if p.log.borrow().config().cleanup_compact {
        if let Err((message, record_errors)) = keyless_records(&records) {
            tracing::warn!(topic, partition, error = %message, "produce to a compacted topic refused");
            outcome.error_code = ec::INVALID_RECORD;
            outcome.error_message = Some(format!("{message} in topic partition {topic}-{partition}."));
            outcome.record_errors = record_errors;
            return outcome;
        }
    }
    // Back-pressure: while the shard's appended-but-not-durable bytes are at their budget
    // (a disk slower than the network), the produce waits here. Its connection then holds its
    // in-flight requests and stops reading the socket, so producers slow down to the disk's pace.
    let dirty_budget = p.log.borrow().dirty_budget().clone();
    let records_len = records.len();
    dirty_budget.wait_for_room_of(|| p.log.borrow().in_place_charge(records_len, request)).await;
    // No await from here to the append: the room seen above is still there. The batches stay
    // in the request's buffer (the flusher's copy to the disk is then their only one), which
    // the budgets count once for all of the request's partitions on this shard.
    let info = match p.append_in_place(records, request, now_ms()) {
        Ok(info) => info,
        Err(e) => {
            outcome.error_code = append_error_code(&e);
            if matches!(e, AppendError::Offline(_) | AppendError::DiskFull(_)) {
                // The partition said why once, when it went offline or its disk filled up.
                tracing::debug!(topic, partition, error = %e, "produce rejected");
            } else {
                tracing::warn!(topic, partition, error = %e, "produce rejected");
            }
            outcome.error_message = Some(e.to_string());
            return outcome;
        }
    };
    if acks == -1 {
        // A duplicate's original may still be in flight to the disk: wait for it too.
        if let Err(why) = p.wait_durable(info.last_offset).await {
            outcome.error_code = ec::KAFKA_STORAGE_ERROR;
            outcome.error_message = Some(why.to_string());
            return outcome;
        }
        if let Err((code, message)) = wait_replicated(shard, &p, info.last_offset, timeout_ms).await {
            outcome.error_code = code;
            outcome.error_message = Some(message);
            return outcome;
        }
    }
    if !info.duplicate && shard.config.metrics_enabled {
        p.probe.bytes_in.add(records_len as u64);
        p.probe.records_in.add((info.last_offset - info.base_offset + 1) as u64);
    }
    outcome.base_offset = info.base_offset;
    outcome.duplicate = info.duplicate;
    outcome.log_append_time_ms = info.log_append_time_ms;
    outcome.log_start_offset = info.log_start_offset;
    outcome
}

/// acks=all on a partition with other replicas: waits until the high watermark passes
/// `last_offset`, i.e. every in-sync replica holds the write durably (followers report their
/// fdatasynced log end). Refused as Kafka does when the ISR shrinks below
/// `min.insync.replicas` meanwhile (NOT_ENOUGH_REPLICAS_AFTER_APPEND), when this broker stops
/// leading (NOT_LEADER_OR_FOLLOWER), or after the request's timeout (REQUEST_TIMED_OUT); in
/// each case the record may still become committed, and an idempotent producer's retry is
/// deduplicated.
pub async fn wait_replicated(shard: &Shard, p: &Partition, last_offset: i64, timeout_ms: u64) -> Result<(), (i16, String)> {
    let deadline = runtime::sleep(Duration::from_millis(timeout_ms));
    let mut deadline = std::pin::pin!(deadline);
    loop {
        let changed = p.replicated.notified();
        let metadata = shard.metadata_changed.notified();
        if p.log.borrow().high_watermark() > last_offset {
            return Ok(());
        }
        if shard.owner(&p.topic, p.partition) != Some(shard.id) {
            return Err((ec::NOT_LEADER_OR_FOLLOWER, format!("this broker stopped leading {}-{} before the write was replicated", p.topic, p.partition)));
        }
        // Only a write the followers still lack gets here: a partition of one replica
        // answered above, without building the key.
        match shard.leaders.borrow().get(&(p.topic.clone(), p.partition)) {
            // The partition has no other replica (any more): its own durable copy is all.
            None if !p.log.borrow().is_replicated() => return Ok(()),
            Some(l) if l.under_min_isr() => {
                return Err((
                    ec::NOT_ENOUGH_REPLICAS_AFTER_APPEND,
                    format!("the in-sync replicas of {}-{} fell below min.insync.replicas before the write was replicated", p.topic, p.partition),
                ))
            }
            _ => {}
        }
        if let Some(why) = p.log.borrow().failed() {
            return Err((ec::KAFKA_STORAGE_ERROR, why.to_string()));
        }
        let timed_out = futures_lite::future::or(
            async {
                futures_lite::future::or(changed, metadata).await;
                false
            },
            async {
                (&mut deadline).await;
                true
            },
        )
        .await;
        if timed_out {
            return Err((
                ec::REQUEST_TIMED_OUT,
                format!("the in-sync replicas of {}-{} did not all hold the write within {timeout_ms} ms", p.topic, p.partition),
            ));
        }
    }
}

/// Kafka's check of a produce to a compacted topic: compaction keeps the latest record per
/// key, so a record without one is refused (INVALID_RECORD), with the index within its batch
/// of each such record, as Kafka's `record_errors` give them. Compressed batches are
/// decompressed for it, at most [`COMPACTION_BATCH_DECOMPRESSED_MAX`] bytes each (what
/// compaction itself can read). A batch that does not parse is left to the append, which says
/// what is wrong with it.
fn keyless_records(records: &[u8]) -> Result<(), (String, Vec<(i32, String)>)> {
    use crate::storage::compaction::COMPACTION_BATCH_DECOMPRESSED_MAX;
    use shardlog_protocol::batch::{self, BATCH_HEADER_BYTES};
    use shardlog_protocol::compression::{self, Codec};
    const MESSAGE: &str = "Compacted topic cannot accept message without key";
    let mut position = 0;
    let mut errors = Vec::new();
    while position < records.len() {
        let Ok(header) = batch::parse_header(&records[position..], position, false) else { return Ok(()) };
        let section = &records[position + BATCH_HEADER_BYTES..position + header.size_bytes];
        position += header.size_bytes;
        if header.is_control() {
            continue;
        }
        let body = match Codec::of(header.attributes, section) {
            Ok(Codec::None) => std::borrow::Cow::Borrowed(section),
            Ok(codec) => match compression::decompress(codec, section, COMPACTION_BATCH_DECOMPRESSED_MAX) {
                Ok(body) => std::borrow::Cow::Owned(body),
                Err(e) => return Err((format!("{MESSAGE}, and a {} batch's keys could not be checked ({e})", codec.name()), Vec::new())),
            },
            Err(e) => return Err((format!("{MESSAGE}, and a batch's keys could not be checked ({e})"), Vec::new())),
        };
        let Some(views) = batch::records_of(&header, &body) else { return Ok(()) };
        errors.extend(views.iter().enumerate().filter(|(_, r)| r.key.is_none()).map(|(i, _)| (i as i32, String::from(MESSAGE))));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err((String::from(MESSAGE), errors))
    }
}

/// Verification rounds before a produce that keeps racing with markers is refused.
const VERIFY_ROUNDS_MAX: usize = 3;

/// KIP-890: the first transactional batch of a producer in a partition opens a transaction
/// there, which only a marker closes. So that a late or stray batch (after its transaction
/// ended, or for a partition never added to it) cannot leave a transaction open forever and
/// hold the last stable offset back, the coordinator must confirm that the partition is in the
/// producer's ongoing transaction. If a marker for the producer lands here meanwhile, the
/// answer may be stale: ask again.
///
/// A transactions-v2 client (KIP-890 part 2) sends no AddPartitionsToTxn: the Produce handler
/// adds the request's partitions in one call before they get here, so this confirms them the
/// same way. A stray batch cannot open a hanging transaction that way either: its epoch is older
/// than the one its transaction's end bumped to, and the coordinator fences it.
async fn verify_transaction(shard: &Rc<Shard>, p: &Partition, records: &[u8], transaction: Option<ProduceTransaction<'_>>) -> Result<(), (i16, String)> {
    // A batch that does not parse, or a control batch from a client, is refused by the append.
    let Ok(header) = shardlog_protocol::batch::parse_header(records, 0, false) else { return Ok(()) };
    if !header.is_transactional() || header.is_control() || header.producer_id < 0 {
        return Ok(());
    }
    let Some(ProduceTransaction { id: transactional_id, abortable_known }) = transaction else {
        return Err((ec::INVALID_RECORD, String::from("transactional batches need the producer's transactional id in the produce request")));
    };
    for _ in 0..VERIFY_ROUNDS_MAX {
        let (open_here, markers_before) = {
            let log = p.log.borrow();
            let entry = log.producer_state().entry(header.producer_id);
            (entry.is_some_and(|e| e.current_txn_first_offset.is_some() && e.epoch == header.producer_epoch), p.markers_written.get())
        };
        if open_here {
            return Ok(());
        }
        let verification = TxnVerification {
            transactional_id: transactional_id.to_string(),
            producer_id: header.producer_id,
            producer_epoch: header.producer_epoch,
            partitions: vec![(p.topic.clone(), p.partition)],
            add: false,
        };
        let code = match shard.txn_verifier.get() {
            Some(verify) => verify(verification).await.first().copied().unwrap_or(ec::UNKNOWN_SERVER_ERROR),
            None => ec::COORDINATOR_NOT_AVAILABLE,
        };
        if code != ec::NONE {
            // Kafka's partition leaders answer a fenced producer INVALID_PRODUCER_EPOCH, and a
            // client that predates TRANSACTION_ABORTABLE INVALID_TXN_STATE in its place.
            //
            // A coordinator that cannot answer now (moving, loading, unreachable) is answered
            // NOT_ENOUGH_REPLICAS, as Kafka's ReplicaManager does: clients retry it without a
            // metadata refresh. Passed through, librdkafka takes COORDINATOR_NOT_AVAILABLE for a
            // partition without a leader and waits for one to appear in the metadata, which
            // never comes (the leader did not change): its transaction hangs.
            let code = match code {
                ec::PRODUCER_FENCED => ec::INVALID_PRODUCER_EPOCH,
                ec::TRANSACTION_ABORTABLE if !abortable_known => ec::INVALID_TXN_STATE,
                ec::CONCURRENT_TRANSACTIONS
                | ec::NETWORK_EXCEPTION
                | ec::COORDINATOR_LOAD_IN_PROGRESS
                | ec::COORDINATOR_NOT_AVAILABLE
                | ec::NOT_COORDINATOR => {
                    return Err((
                        ec::NOT_ENOUGH_REPLICAS,
                        format!(
                            "unable to verify the partition has been added to the transaction of producer {} (transactional id {transactional_id:?}): the coordinator answered {}; retry",
                            header.producer_id,
                            ec::error_name(code)
                        ),
                    ));
                }
                code => code,
            };
            return Err((
                code,
                format!(
                    "the transaction coordinator answered {} to checking the partition against the transaction of producer {} (transactional id {transactional_id:?})",
                    ec::error_name(code),
                    header.producer_id
                ),
            ));
        }
        if p.markers_written.get() == markers_before {
            return Ok(());
        }
    }
    // As Kafka answers CONCURRENT_TRANSACTIONS from the verification (see above).
    Err((ec::NOT_ENOUGH_REPLICAS, String::from("the transaction ended while its batch was being verified; retry")))
}

/// OffsetForLeaderEpoch for one partition this shard leads (Kafka's
/// `Partition.lastOffsetForLeaderEpoch`): the largest epoch at or below the asked one and
/// where it ended; an epoch the log does not know answers NONE with -1 and -1.
pub fn epoch_end_offset(shard: &Shard, q: &EpochQuery) -> EpochEnd {
    let mut out = EpochEnd { error_code: ec::NONE, leader_epoch: -1, end_offset: -1 };
    let Some(p) = shard.local_partition(&q.topic, q.partition) else {
        out.error_code = shard.absent_partition_error(&q.topic, q.partition);
        return out;
    };
    out.error_code = shard.check_leader_epoch(&q.topic, q.partition, q.current_leader_epoch);
    if out.error_code != ec::NONE {
        return out;
    }
    let log = p.log.borrow();
    if log.failed().is_some() {
        out.error_code = ec::KAFKA_STORAGE_ERROR;
        return out;
    }
    (out.leader_epoch, out.end_offset) = log.end_offset_for_epoch(q.leader_epoch);
    out
}

/// Reads one partition for a fetch. A cold read waits for the disk in this task only: the
/// shard serves others meanwhile, and the log may change before it ends (the read keeps to the
/// segment file it started in).
pub async fn read(shard: &Shard, f: &FetchPartition, call: &Fetch) -> ReadOutcome {
    let (topic, partition, offset, max_bytes) = (f.topic.as_str(), f.partition, f.offset, f.max_bytes);
    let (read_committed, replica_id) = (call.read_committed, call.replica_id);
    let mut outcome = ReadOutcome::empty(ec::NONE);
    let Some(p) = shard.local_partition(topic, partition) else {
        outcome.error_code = shard.absent_partition_error(topic, partition);
        return outcome;
    };
    outcome.error_code = shard.check_leader_epoch(topic, partition, f.current_leader_epoch);
    if outcome.error_code != ec::NONE {
        return outcome;
    }
    let leading = shard.owner(topic, partition) == Some(shard.id);
    if !leading && !call.follower_reads {
        // A follower's copy serves only consumers that may read from followers (KIP-392).
        outcome.error_code = ec::NOT_LEADER_OR_FOLLOWER;
        return outcome;
    }
    let end_offset = {
        let log = p.log.borrow();
        outcome.high_watermark = log.high_watermark();
        outcome.last_stable_offset = log.last_stable_offset();
        outcome.log_start_offset = log.log_start_offset();
        if let Some(rack) = call.client_rack.as_deref().filter(|_| leading && replica_id < 0) {
            let preferred = preferred_read_replica(shard, topic, partition, rack, offset);
            if preferred != shard.config.node_id {
                // Fetched from there instead, with no records from here, as Kafka answers.
                outcome.preferred_read_replica = preferred;
                return outcome;
            }
        }
        if replica_id >= 0 {
            // A follower copies the whole log; what it holds moves the high watermark.
            log.log_end_offset()
        } else if read_committed {
            outcome.last_stable_offset
        } else {
            outcome.high_watermark
        }
    };
    // A throttled replica that is not in sync gets nothing while the leader's replication
    // quota is spent (KIP-73); the in-sync ones, which acks=all waits for, never wait.
    // The topic's throttled-replica list first: without one (the usual case) a replica fetch
    // costs no key to look up the ISR with.
    let throttled = replica_id >= 0
        && replication_quota::throttled(shard, Side::Leader, topic, partition)
        && !shard.leaders.borrow().get(&(topic.to_string(), partition)).is_some_and(|l| l.isr.contains(&replica_id));
    if throttled && replication_quota::exceeded(shard, Side::Leader) {
        return outcome;
    }
    match p.read_up_to(offset, max_bytes, end_offset).await {
        Ok(r) => {
            if throttled {
                replication_quota::record(shard, Side::Leader, r.bytes);
            }
            if shard.config.metrics_enabled {
                p.probe.bytes_out.add(r.bytes as u64);
                p.probe.records_out.add(r.records);
            }
            if read_committed {
                let log = p.log.borrow();
                outcome.aborted = Some(log.aborted_txns_between(offset, r.end_offset).iter().map(|a| (a.producer_id, a.first_offset)).collect());
            }
            outcome.pieces = r.pieces;
            outcome.bytes = r.bytes;
        }
        Err(ReadError::OffsetOutOfRange { .. }) => outcome.error_code = ec::OFFSET_OUT_OF_RANGE,
        // Only a follower's log is cut, and only briefly: the client retries.
        Err(ReadError::Truncating(_)) => outcome.error_code = ec::NOT_LEADER_OR_FOLLOWER,
        Err(ReadError::Storage(why)) => {
            tracing::error!(topic, partition, error = %why, "read failed");
            outcome.error_code = ec::KAFKA_STORAGE_ERROR;
        }
    }
    outcome
}

/// Partitions of one fetch read at once. Reads from the cache end at their first poll; cold
/// ones each hold a header window (up to `cold_read::HEADER_WINDOW_BYTES_MAX`) while the disk
/// answers, and a fetch may name thousands of partitions.
const FETCH_READS_IN_FLIGHT_MAX: usize = 16;

/// Reads `partitions`; while they come to fewer than `min_bytes` in all, none failed and the
/// deadline is ahead, waits for an append to any of them (or the deadline) and reads again.
/// A partition with too many fetches already waiting on it (`shardlog.fetch.long.poll.watchers.max`)
/// ends the wait at once: the caller answers with what there is.
pub async fn fetch(shard: &Shard, call: &Fetch) -> Vec<ReadOutcome> {
    let (partitions, replica_id, min_bytes, deadline_ms) = (&call.partitions, call.replica_id, call.min_bytes, call.deadline_ms);
    let held: Vec<Option<Rc<Partition>>> = partitions.iter().map(|f| shard.local_partition(&f.topic, f.partition)).collect();
    let mut refused: Vec<Option<i16>> = vec![None; partitions.len()];
    if replica_id >= 0 {
        // The follower's fetch offset is what it holds durably: recorded once, on arrival (a
        // long poll then waits for more), as Kafka's `updateFollowerFetchState`.
        for (i, (f, p)) in partitions.iter().zip(&held).enumerate() {
            if let Some(p) = p {
                refused[i] = follower_fetched(shard, p, f, replica_id).err();
            }
        }
    }
    loop {
        // Subscribed before reading, so an append between the read and the wait is not missed.
        let appended: Vec<_> = held.iter().flatten().map(|p| p.appended.notified()).collect();
        let outcomes: Vec<ReadOutcome> = futures::stream::iter(partitions.iter().zip(&refused))
            .map(|(f, refused)| async move {
                match refused {
                    Some(code) => ReadOutcome::empty(*code),
                    None => read(shard, f, call).await,
                }
            })
            .buffered(FETCH_READS_IN_FLIGHT_MAX)
            .collect()
            .await;
        let bytes: usize = outcomes.iter().map(|o| o.bytes).sum();
        // A consumer sent to another replica (KIP-392) is answered at once, as an error is.
        let failed = outcomes.iter().any(|o| o.error_code != ec::NONE || o.preferred_read_replica >= 0);
        let now = now_ms();
        let crowded = held.iter().flatten().any(|p| p.appended.waiters() >= shard.config.fetch_watchers_max);
        if bytes >= min_bytes.max(1) || failed || now >= deadline_ms || appended.is_empty() || crowded || shard.shutting_down.get() {
            return outcomes;
        }
        let sleep = runtime::sleep(Duration::from_millis(deadline_ms - now));
        futures_lite::future::or(
            async {
                futures::future::select_all(appended).await;
            },
            sleep,
        )
        .await;
    }
}

/// The replica a consumer in `rack` should fetch `fetch_offset` of a partition led here from
/// (Kafka's RackAwareReplicaSelector, as its leader picks one): this broker if it is in that
/// rack or no replica is; else the in-sync, live replica in the rack that holds the offset and
/// is furthest ahead.
fn preferred_read_replica(shard: &Shard, topic: &str, partition: i32, rack: &str, fetch_offset: i64) -> i32 {
    let node_id = shard.config.node_id;
    let meta = shard.metadata.borrow();
    let rack_of = |id: i32| meta.brokers.get(&id).filter(|b| !b.fenced).and_then(|b| b.rack.as_deref());
    if rack_of(node_id) == Some(rack) {
        return node_id;
    }
    let leaders = shard.leaders.borrow();
    let Some(leader) = leaders.get(&(topic.to_string(), partition)) else { return node_id };
    leader
        .replicas
        .iter()
        .filter(|&&r| r != node_id && rack_of(r) == Some(rack) && leader.isr.contains(&r))
        .filter_map(|&r| leader.follower_log_end(r).filter(|&end| end >= fetch_offset).map(|end| (end, r)))
        .max()
        .map_or(node_id, |(_, r)| r)
}

/// A replica fetch from `replica_id` for `f` at the leader: records the follower's log end and
/// moves the high watermark. Refused (NOT_LEADER_OR_FOLLOWER) when that broker is not one of
/// the partition's replicas, as Kafka does: it may not move anything here.
fn follower_fetched(shard: &Shard, p: &Partition, f: &FetchPartition, replica_id: i32) -> Result<(), i16> {
    let key = (f.topic.clone(), f.partition);
    let mut leaders = shard.leaders.borrow_mut();
    let Some(leader) = leaders.get_mut(&key) else {
        // Not led here with other replicas: the read answers whatever applies (unknown
        // partition, not the leader, a fenced epoch).
        return match shard.metadata.borrow().placement(&f.topic, f.partition) {
            Some(placement) if placement.replicas.contains(&replica_id) => Ok(()),
            Some(_) => Err(ec::NOT_LEADER_OR_FOLLOWER),
            None => Ok(()),
        };
    };
    let log_end_offset = p.log.borrow().log_end_offset();
    if f.offset > log_end_offset || f.offset < 0 {
        // Beyond the leader's log: the read answers OFFSET_OUT_OF_RANGE, and it moves nothing.
        return Ok(());
    }
    if leader.follower_fetched(replica_id, f.offset, log_end_offset, now_ms()).is_err() {
        tracing::warn!(topic = %f.topic, partition = f.partition, replica_id, "replica fetch from a broker that is not a replica of the partition");
        return Err(ec::NOT_LEADER_OR_FOLLOWER);
    }
    drop(leaders);
    refresh_high_watermark(shard, p);
    Ok(())
}

/// ListOffsets' MAX_TIMESTAMP spec (KIP-734, ListOffsets v7).
const MAX_TIMESTAMP: i64 = -3;
/// EARLIEST_LOCAL_TIMESTAMP (KIP-405, v8): the first offset kept on local disk.
const EARLIEST_LOCAL_TIMESTAMP: i64 = -4;
/// LATEST_TIERED_TIMESTAMP (KIP-1005, v9): the last offset in remote storage.
const LATEST_TIERED_TIMESTAMP: i64 = -5;

pub async fn list_offset(shard: &Shard, topic: &str, partition: i32, timestamp: i64, read_committed: bool) -> (i16, i64, i64) {
    let Some(p) = shard.local_partition(topic, partition) else { return (shard.absent_partition_error(topic, partition), -1, -1) };
    if timestamp == MAX_TIMESTAMP {
        let lookup = p.log.borrow().max_timestamp_lookup();
        return match lookup {
            MaxTimestampLookup::Nothing => (ec::NONE, -1, -1),
            // The batch may have to be read from its file (and decompressed): not on the shard.
            MaxTimestampLookup::Read(read) => match runtime::spawn_blocking(move || read.run()).await {
                // As Kafka, only an offset a consumer at this isolation level may read (below the
                // last stable offset for read_committed).
                Ok((offset, _)) if read_committed && offset >= p.log.borrow().last_stable_offset() => (ec::NONE, -1, -1),
                Ok((offset, found_ts)) => (ec::NONE, offset, found_ts),
                Err(e) => {
                    tracing::error!(topic, partition, error = %format!("{e:#}"), "max timestamp lookup failed");
                    (ec::KAFKA_STORAGE_ERROR, -1, -1)
                }
            },
        };
    }
    let log = p.log.borrow();
    match timestamp {
        // Nothing is tiered, so the local log starts where the log does, and no offset is in
        // remote storage: Kafka answers these the same way when remote storage is off.
        -2 | EARLIEST_LOCAL_TIMESTAMP => (ec::NONE, log.log_start_offset(), -1),
        LATEST_TIERED_TIMESTAMP => (ec::NONE, -1, -1),
        -1 if read_committed => (ec::NONE, log.last_stable_offset(), -1),
        -1 => (ec::NONE, log.log_end_offset(), -1),
        ts if ts < 0 => (ec::NONE, log.log_end_offset(), -1),
        ts => {
            drop(log);
            match offset_for_timestamp(&p, ts).await {
                // DeleteRecords may have moved the start into the batch found since the lookup.
                Ok(Some((offset, found_ts))) => (ec::NONE, offset.max(p.log.borrow().log_start_offset()), found_ts),
                Ok(None) => (ec::NONE, -1, -1),
                Err(e) => {
                    tracing::error!(topic, partition, error = %format!("{e:#}"), "timestamp lookup failed");
                    (ec::KAFKA_STORAGE_ERROR, -1, -1)
                }
            }
        }
    }
}

/// The first offset at or after `timestamp` and its timestamp: the log names the work each
/// segment needs, and that work (batch headers that are not in the page cache, as segments are
/// written with O_DIRECT; decompressing the batch found) runs on the blocking pool, so the shard
/// goes on serving meanwhile.
async fn offset_for_timestamp(p: &Partition, timestamp: i64) -> anyhow::Result<Option<(i64, i64)>> {
    let mut after_segment = None;
    // Bounded by the partition's segments: each step looks only past the one before.
    loop {
        let lookup = p.log.borrow().timestamp_lookup(timestamp, after_segment);
        match lookup {
            TimestampLookup::Done(answer) => return Ok(answer),
            TimestampLookup::Read(read) => {
                after_segment = Some(read.segment_base());
                if let Some(answer) = runtime::spawn_blocking(move || read.run()).await? {
                    return Ok(Some(answer));
                }
            }
        }
    }
}

/// How long a transaction marker waits for the in-sync replicas (as a produce's default
/// `request.timeout.ms`); the coordinator then retries it.
const MARKER_REPLICATION_TIMEOUT_MS: u64 = 30_000;

/// Writes a commit or abort marker and waits until it is durable (and replicated); answers an
/// error code. Markers in an offsets partition also settle the transaction's pending offset
/// commits (the caller's part).
pub async fn write_marker(shard: &Rc<Shard>, marker: &TxnMarker) -> i16 {
    let TxnMarker { topic, partition, producer_id, producer_epoch, commit, coordinator_epoch } = marker;
    let (topic, partition, producer_id, producer_epoch, commit) = (topic.as_str(), *partition, *producer_id, *producer_epoch, *commit);
    let Some(p) = shard.local_partition(topic, partition) else { return shard.absent_partition_error(topic, partition) };
    if shard.owner(topic, partition) != Some(shard.id) {
        return ec::NOT_LEADER_OR_FOLLOWER;
    }
    let info = match p.append_marker(producer_id, producer_epoch, commit, *coordinator_epoch, now_ms()) {
        Ok(info) => info,
        Err(e) => {
            tracing::warn!(topic, partition, producer_id, error = %e, "transaction marker rejected");
            return match e {
                AppendError::Producer(e) => producer_error_code(&e),
                _ => ec::KAFKA_STORAGE_ERROR,
            };
        }
    };
    if let Err(why) = p.wait_durable(info.last_offset).await {
        tracing::error!(topic, partition, error = %why, "transaction marker not durable");
        return ec::KAFKA_STORAGE_ERROR;
    }
    // A marker is written as acks=all: on every in-sync replica before the coordinator moves on.
    if let Err((code, why)) = wait_replicated(shard, &p, info.last_offset, MARKER_REPLICATION_TIMEOUT_MS).await {
        tracing::warn!(topic, partition, error = %why, "transaction marker not replicated yet; the coordinator retries");
        return code;
    }
    ec::NONE
}

pub fn describe_producers(shard: &Shard, topic: &str, partition: i32) -> (i16, Vec<ProducerInfo>) {
    let Some(p) = shard.local_partition(topic, partition) else { return (shard.absent_partition_error(topic, partition), Vec::new()) };
    let log = p.log.borrow();
    let producers = log
        .producer_state()
        .iter()
        .map(|(producer_id, e)| ProducerInfo {
            producer_id,
            producer_epoch: e.epoch,
            last_sequence: e.batches.back().map(|b| b.last_sequence).unwrap_or(-1),
            last_timestamp_ms: e.last_timestamp_ms,
            coordinator_epoch: e.coordinator_epoch,
            current_txn_start_offset: e.current_txn_first_offset.unwrap_or(-1),
        })
        .collect();
    (ec::NONE, producers)
}

/// The storage settings of a partition in `log_dir` of a topic with `topic` configs (resolved
/// from the topic's overrides and the broker's defaults, see `topic_config`).
pub fn log_config(shard: &Shard, log_dir: usize, topic: &ResolvedTopicConfig) -> LogConfig {
    let c = &shard.config;
    let disk = c.disk_settings.get(log_dir).copied().flatten();
    LogConfig {
        segment_bytes: topic.segment_bytes,
        roll_ms: topic.segment_ms,
        index_interval_bytes: topic.index_interval_bytes,
        message_max_bytes: topic.max_message_bytes,
        log_append_time: topic.log_append_time,
        retention_ms: topic.retention_ms,
        retention_bytes: topic.retention_bytes,
        cleanup_delete: topic.cleanup_delete,
        cleanup_compact: topic.cleanup_compact,
        delete_retention_ms: topic.delete_retention_ms,
        min_compaction_lag_ms: topic.min_compaction_lag_ms,
        min_cleanable_dirty_ratio: topic.min_cleanable_dirty_ratio,
        max_compaction_lag_ms: topic.max_compaction_lag_ms,
        flush_window_us: disk.map(|d| d.group_commit_window_us).unwrap_or(c.log_flush_interval_ms * 1000),
        write_bytes_max: disk.map(|d| d.write_bytes_max).unwrap_or(crate::storage::log::WRITE_BYTES_MAX_DEFAULT),
        writes_in_flight_max: disk.map(|d| d.writes_in_flight_max as usize).unwrap_or(crate::storage::log::WRITES_IN_FLIGHT_DEFAULT),
        cache_bytes: c.cache_partition_bytes,
    }
}

/// Adopts `meta`: opens partitions placed here, closes (and deletes the files of) those that are
/// gone (the topic deleted or recreated, or this broker no longer a replica), applies changed
/// configs. Answers the topics deleted since the previous metadata, for
/// the coordinators to forget.
pub async fn apply_metadata(shard: &Rc<Shard>, meta: ClusterMetadata) -> Vec<String> {
    let old = shard.metadata.borrow().clone();
    let mut to_remove = Vec::new();
    for key in shard.partitions.borrow().keys() {
        let keep = match (meta.topics.get(&key.0), old.topics.get(&key.0)) {
            (Some(new), Some(prev)) => new.id == prev.id && new.partitions.get(key.1 as usize).is_some_and(|p| p.hosted && p.shard == shard.id),
            _ => false,
        };
        if !keep {
            to_remove.push(key.clone());
        }
    }
    for key in to_remove {
        shard.leaders.borrow_mut().remove(&key);
        let p = shard.partitions.borrow_mut().remove(&key);
        if let Some(p) = p {
            let _ = p.close(false).await;
            let dir = p.log.borrow().dir.clone();
            let topic_gone = !meta.topics.contains_key(&key.0) || meta.topics[&key.0].id != old.topics.get(&key.0).map(|t| t.id).unwrap_or_default();
            // A reassignment took this broker out of the replicas: its copy goes, as Kafka's
            // broker deletes a replica it no longer hosts (one added back starts afresh).
            let replica_removed = !topic_gone
                && meta.topics[&key.0]
                    .partitions
                    .get(key.1 as usize)
                    .is_some_and(|p| !p.hosted && !p.replicas.is_empty() && !p.replicas.contains(&shard.config.node_id));
            if replica_removed {
                tracing::info!(topic = %key.0, partition = key.1, "this broker is no longer a replica of the partition: deleting its copy");
            }
            if topic_gone || replica_removed {
                // The rename is awaited before the topic's new partitions open below, so a
                // topic recreated under the same name gets a fresh directory that the late
                // removal cannot touch.
                if let Err(e) = crate::storage::deletion::remove_partition_dir(dir.clone()).await {
                    tracing::error!(dir = %dir.display(), error = %e, "removing a deleted partition's directory failed");
                }
            }
        }
    }
    for (name, topic) in &meta.topics {
        let resolved = crate::topic_config::resolve(&shard.config, &meta, &topic.configs);
        let min_insync_replicas = resolved.min_insync_replicas.max(1) as usize;
        for (i, placement) in topic.partitions.iter().enumerate() {
            if !placement.hosted || placement.shard != shard.id {
                continue;
            }
            let key = (name.clone(), i as i32);
            let config = log_config(shard, placement.log_dir, &resolved);
            let held = shard.partitions.borrow().get(&key).cloned();
            if let Some(p) = held {
                // Configs changed by AlterConfigs take effect at once, without a restart.
                {
                    let mut log = p.log.borrow_mut();
                    if log.config() != &config {
                        log.set_config(config);
                    }
                    log.set_leader_epoch(placement.leader_epoch);
                }
                sync_replication(shard, &p, placement, min_insync_replicas);
                continue;
            }
            if shard.log_dirs.is_failed(placement.log_dir) {
                // Never recreate it elsewhere (e.g. on the root filesystem under a lost mount).
                tracing::debug!(topic = %name, partition = i, log_dir = placement.log_dir, "partition not opened: its log directory is offline");
                continue;
            }
            let dir = shard.config.log_dirs[placement.log_dir].join(format!("{name}-{i}"));
            // Recovery reads the partition's files on the blocking pool, not on the shard.
            match PartitionLog::open_off_shard(dir.clone(), config).await {
                Ok(_) if shard.partitions.borrow().contains_key(&key) => {
                    // Opened meanwhile by an overlapping metadata update: one log per partition.
                    tracing::warn!(topic = %name, partition = i, "partition opened twice at once; keeping the first");
                }
                Ok(mut log) => {
                    log.set_dirty_budget(shard.dirty_budget.clone());
                    log.set_cache_budget(shard.batch_cache.clone());
                    log.set_leader_epoch(placement.leader_epoch);
                    if placement.replicas.len() > 1 {
                        // What was committed before a restart, as `replication-offset-checkpoint`
                        // has it (never past this log's end); else nothing until the replicas
                        // have been heard from.
                        let start = log.log_start_offset();
                        let checkpointed = shard.hw_checkpoint.borrow_mut().remove(&key);
                        let hw = checkpointed.map_or(start, |hw| hw.clamp(start, log.log_end_offset()));
                        log.set_replicated_high_watermark(Some(hw));
                    }
                    let p = Partition::new(name.clone(), i as i32, log);
                    p.start_flusher();
                    shard.partitions.borrow_mut().insert(key, p.clone());
                    sync_replication(shard, &p, placement, min_insync_replicas);
                }
                Err(e) => {
                    tracing::error!(topic = %name, partition = i, dir = %dir.display(), error = %format!("{e:#}"), "cannot open partition; it stays offline")
                }
            }
        }
    }
    let gone: Vec<String> = old.topics.iter().filter(|(name, t)| meta.topics.get(*name).is_none_or(|n| n.id != t.id)).map(|(name, _)| name.clone()).collect();
    *shard.metadata.borrow_mut() = Rc::new(meta);
    shard.metadata_changed.notify_all();
    if old.cluster_id.is_empty() {
        // The first metadata a shard takes: nothing was deleted.
        return Vec::new();
    }
    gone
}

/// Keeps a hosted partition's replication state in step with its placement: the leader's view
/// of its followers (started afresh in a new leader epoch), and the high watermark. Wakes the
/// acks=all writes waiting on it, whose ISR or leadership may have changed.
fn sync_replication(shard: &Shard, p: &Partition, placement: &crate::metadata::PartitionPlacement, min_insync_replicas: usize) {
    let key = (p.topic.clone(), p.partition);
    let node_id = shard.config.node_id;
    if placement.replicas.len() <= 1 {
        shard.leaders.borrow_mut().remove(&key);
        p.set_replicated_high_watermark(None);
    } else if placement.leader == node_id {
        let now = now_ms();
        let mut leaders = shard.leaders.borrow_mut();
        match leaders.get_mut(&key) {
            Some(l) if l.leader_epoch == placement.leader_epoch => l.update(placement.partition_epoch, placement.replicas.clone(), placement.isr.clone(), now),
            _ => {
                let hw = p.log.borrow().high_watermark();
                let l =
                    LeaderReplicas::new(node_id, placement.leader_epoch, placement.partition_epoch, placement.replicas.clone(), placement.isr.clone(), hw, now);
                leaders.insert(key.clone(), l);
            }
        }
        let leader = leaders.get_mut(&key).expect("inserted above");
        leader.min_insync_replicas = min_insync_replicas;
        drop(leaders);
        refresh_high_watermark(shard, p);
    } else {
        shard.leaders.borrow_mut().remove(&key);
        // A follower keeps the high watermark it knew; its fetcher moves it to the leader's.
        let hw = p.log.borrow().high_watermark();
        p.set_replicated_high_watermark(Some(hw));
    }
    p.replicated.notify_all();
}

/// The leader's high watermark after its log or ISR changed: the smallest log end of the ISR,
/// or the whole log while the leader is the only member (as Kafka's, with ISR = {leader}).
pub fn refresh_high_watermark(shard: &Shard, p: &Partition) {
    let key = (p.topic.clone(), p.partition);
    let mut leaders = shard.leaders.borrow_mut();
    let Some(leader) = leaders.get_mut(&key) else { return };
    let log_end_offset = p.log.borrow().log_end_offset();
    let hw = leader.high_watermark(log_end_offset);
    let alone = leader.isr.iter().all(|&r| r == leader.node_id);
    drop(leaders);
    p.set_replicated_high_watermark(if alone { None } else { Some(hw) });
}

/// The Kafka error code that answers a produce storage refused. Storage names what failed; the
/// protocol's codes are chosen here, by the layer that answers the client.
pub fn append_error_code(e: &AppendError) -> i16 {
    match e {
        AppendError::Corrupt(_) => ec::CORRUPT_MESSAGE,
        AppendError::TooLarge { .. } => ec::MESSAGE_TOO_LARGE,
        AppendError::Empty => ec::INVALID_RECORD,
        AppendError::Offline(_) | AppendError::DiskFull(_) => ec::KAFKA_STORAGE_ERROR,
        AppendError::Producer(e) => producer_error_code(e),
        AppendError::ControlFromClient => ec::INVALID_RECORD,
        // Only a follower's log is cut: the client should find the leader.
        AppendError::Truncating(_) => ec::NOT_LEADER_OR_FOLLOWER,
        // Only a follower's copy of its leader's batches: never a client's.
        AppendError::NotAtLogEnd { .. } => ec::NOT_LEADER_OR_FOLLOWER,
    }
}

/// The Kafka error code for a producer's batch or marker that storage refused: a fenced epoch
/// is INVALID_PRODUCER_EPOCH, and every break in the sequence is OUT_OF_ORDER_SEQUENCE_NUMBER.
pub fn producer_error_code(e: &crate::storage::producer_state::ProducerError) -> i16 {
    use crate::storage::producer_state::ProducerError as P;
    match e {
        P::FencedEpoch { .. } | P::FencedMarker { .. } => ec::INVALID_PRODUCER_EPOCH,
        P::NewEpochNotAtZero { .. } | P::OutOfOrderSequence { .. } | P::OutOfOrderInRequest { .. } | P::DuplicateInMultiBatchRequest { .. } => {
            ec::OUT_OF_ORDER_SEQUENCE_NUMBER
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use shardlog_protocol::batch::{self, BatchProducer};
    use shardlog_protocol::error_code as ec;

    use super::{append_error_code, keyless_records, producer_error_code};
    use crate::storage::log::{AppendError, AppendOrigin, LogConfig, Partition, PartitionLog};
    use crate::storage::producer_state::ProducerError;

    fn open(dir: &std::path::Path) -> PartitionLog {
        PartitionLog::open(dir, LogConfig { message_max_bytes: 1 << 10, ..LogConfig::default() }).expect("open")
    }

    /// An idempotent producer's batch of `records` records from `sequence`.
    fn idempotent(producer_id: i64, epoch: i16, sequence: i32, records: usize) -> BytesMut {
        let records: Vec<batch::KeyValue> = (0..records).map(|_| (None, Some(&b"v"[..]))).collect();
        let producer = BatchProducer { attributes: 0, producer_id, producer_epoch: epoch, base_sequence: sequence };
        BytesMut::from(&batch::build_producer_batch(0, 1_000, &records, &producer)[..])
    }

    #[test]
    fn a_compacted_topic_refuses_each_record_without_a_key_by_its_index() {
        let keyed = batch::build_batch(0, 1_000, &[(Some(&b"k"[..]), Some(&b"v"[..]))]);
        assert_eq!(keyless_records(&keyed), Ok(()));
        let mixed = batch::build_batch(0, 1_000, &[(Some(&b"k"[..]), Some(&b"v"[..])), (None, Some(&b"v"[..])), (Some(&b"k"[..]), None), (None, None)]);
        let (message, errors) = keyless_records(&mixed).expect_err("keyless records");
        assert_eq!(message, "Compacted topic cannot accept message without key");
        assert_eq!(errors.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![1, 3], "a tombstone with a key is fine");
        // A second batch in the request is checked too.
        let mut two = keyed.clone();
        two.extend_from_slice(&batch::build_batch(1, 1_000, &[(None, Some(&b"v"[..]))]));
        assert_eq!(keyless_records(&two).expect_err("keyless").1.len(), 1);
        // What does not parse is the append's to refuse, with its own error.
        assert_eq!(keyless_records(&keyed[..20]), Ok(()));
    }

    /// The code a client gets for `records` appended to `log`, and what storage said.
    fn refused(log: &mut PartitionLog, records: BytesMut, origin: AppendOrigin) -> (i16, AppendError) {
        let e = log.append_from(records, 10, origin).expect_err("refused");
        (append_error_code(&e), e)
    }

    #[test]
    fn an_out_of_order_sequence_is_out_of_order_sequence_number() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path());
        log.append(idempotent(7, 0, 0, 3), 10).unwrap();
        let (code, e) = refused(&mut log, idempotent(7, 0, 5, 1), AppendOrigin::Client);
        assert_eq!(code, ec::OUT_OF_ORDER_SEQUENCE_NUMBER);
        assert!(matches!(e, AppendError::Producer(ProducerError::OutOfOrderSequence { producer_id: 7, sequence: 5, expected: 3 })), "{e:?}");
        assert_eq!(e.to_string(), "producer 7 sent sequence 5, expected 3", "the client's error message is storage's");
        // A new epoch must start at 0.
        let (code, e) = refused(&mut log, idempotent(7, 1, 4, 1), AppendOrigin::Client);
        assert_eq!(code, ec::OUT_OF_ORDER_SEQUENCE_NUMBER);
        assert!(matches!(e, AppendError::Producer(ProducerError::NewEpochNotAtZero { epoch: 1, sequence: 4, .. })), "{e:?}");
    }

    #[test]
    fn breaks_in_sequence_within_one_request_are_out_of_order_sequence_number() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path());
        let mut gap = idempotent(8, 0, 0, 2);
        gap.extend_from_slice(&idempotent(8, 0, 3, 1));
        let (code, e) = refused(&mut log, gap, AppendOrigin::Client);
        assert_eq!(code, ec::OUT_OF_ORDER_SEQUENCE_NUMBER);
        assert!(matches!(e, AppendError::Producer(ProducerError::OutOfOrderInRequest { batch_index: 1, sequence: 3, expected: 2, .. })), "{e:?}");
        assert_eq!(log.log_end_offset(), 0, "nothing of a refused request is appended");
        // One batch of a multi-batch request is a retry: the request is refused, not deduplicated.
        log.append(idempotent(8, 0, 0, 1), 10).unwrap();
        let mut retry = idempotent(8, 0, 0, 1);
        retry.extend_from_slice(&idempotent(8, 0, 1, 1));
        let (code, e) = refused(&mut log, retry, AppendOrigin::Client);
        assert_eq!(code, ec::OUT_OF_ORDER_SEQUENCE_NUMBER);
        assert!(matches!(e, AppendError::Producer(ProducerError::DuplicateInMultiBatchRequest { producer_id: 8 })), "{e:?}");
    }

    #[test]
    fn a_fenced_epoch_is_invalid_producer_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path());
        log.append(idempotent(9, 2, 0, 1), 10).unwrap();
        let (code, e) = refused(&mut log, idempotent(9, 1, 1, 1), AppendOrigin::Client);
        assert_eq!(code, ec::INVALID_PRODUCER_EPOCH);
        assert!(matches!(e, AppendError::Producer(ProducerError::FencedEpoch { epoch: 1, current_epoch: 2, .. })), "{e:?}");
        // The coordinator's own writes carry no sequence, but a fenced epoch is still refused.
        let (code, e) = refused(&mut log, idempotent(9, 1, -1, 1), AppendOrigin::Coordinator);
        assert_eq!(code, ec::INVALID_PRODUCER_EPOCH);
        assert!(matches!(e, AppendError::Producer(ProducerError::FencedEpoch { .. })), "{e:?}");
        // So is a marker.
        let e = log.append_marker(9, 1, true, 0, 10).expect_err("fenced marker");
        assert!(matches!(e, AppendError::Producer(ProducerError::FencedMarker { epoch: 1, current_epoch: 2, .. })), "{e:?}");
        assert_eq!(append_error_code(&e), ec::INVALID_PRODUCER_EPOCH);
        let AppendError::Producer(producer) = &e else { unreachable!() };
        assert_eq!(producer_error_code(producer), ec::INVALID_PRODUCER_EPOCH, "write_marker and internal logs map it alike");
    }

    #[test]
    fn refused_batches_map_to_their_codes() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path());
        let mut corrupt = idempotent(-1, -1, -1, 1);
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff; // outside the header, inside the CRC
        assert_eq!(refused(&mut log, corrupt, AppendOrigin::Client).0, ec::CORRUPT_MESSAGE);
        assert_eq!(refused(&mut log, idempotent(-1, -1, -1, 200), AppendOrigin::Client).0, ec::MESSAGE_TOO_LARGE);
        assert_eq!(refused(&mut log, BytesMut::new(), AppendOrigin::Client).0, ec::INVALID_RECORD);
        let marker = BytesMut::from(&batch::build_control_batch(10, 9, 0, true, 0)[..]);
        let (code, e) = refused(&mut log, marker, AppendOrigin::Client);
        assert!(matches!(e, AppendError::ControlFromClient), "{e:?}");
        assert_eq!(code, ec::INVALID_RECORD);
        let p = Partition::new("t".into(), 0, log);
        p.take_offline("test: the directory failed");
        let e = p.append(idempotent(-1, -1, -1, 1), 10).expect_err("offline");
        assert!(matches!(e, AppendError::Offline(_)), "{e:?}");
        assert_eq!(append_error_code(&e), ec::KAFKA_STORAGE_ERROR);
    }
}
