//! Followers' replica fetchers (Kafka's `ReplicaFetcherThread`, one per leader broker and
//! shard): each copies the partitions this shard follows from one leader, with Fetch v12
//! requests that name this broker as the replica.
//!
//! After a leader change (a new leader epoch in the metadata) a partition first asks the leader
//! OffsetForLeaderEpoch for the end of its own latest epoch and truncates what the leader does
//! not have, as Kafka does, then fetches from its log end. What a fetch brings is appended as
//! the leader wrote it (offsets, epochs and timestamps kept) and fetched again only once it is
//! fdatasynced: the fetch offset a leader sees is the follower's durable log end, so acks=all
//! means "on every in-sync replica's disk".

use std::cell::Cell;
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, OffsetForLeaderEpochRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use shardlog_protocol::batch;
use shardlog_protocol::error_code::{self as ec, error_name};
use shardlog_protocol::kafka_protocol;

use crate::config::ReplicationConfig;
use crate::inter_broker::{BrokerAddress, InterBrokerClient};
use crate::metadata::records::NO_LEADER;
use crate::runtime;
use crate::shard::maintenance;
use crate::shard::replication_quota::{self, Side};
use crate::shard::{Shard, TopicPartition};
use crate::storage::log::{now_ms, AppendError, Partition};

/// Answer bytes a fetcher accepts beyond `replica.fetch.response.max.bytes`: the leader sends
/// a partition's first batch whole even when it is larger, and the framing around the records.
const RESPONSE_SLACK_BYTES: usize = 1 << 20;
/// How often the supervisor looks at the metadata even without a change (for shutdown).
const SUPERVISE_INTERVAL: Duration = Duration::from_millis(500);

/// Starts the shard's supervisor, which runs one fetcher per leader broker this shard follows.
pub fn start(shard: &Rc<Shard>) {
    let shard = shard.clone();
    runtime::spawn(async move { supervise(shard).await }).detach();
}

async fn supervise(shard: Rc<Shard>) {
    let mut running: HashMap<i32, Rc<Cell<bool>>> = HashMap::new();
    loop {
        let changed = shard.metadata_changed.notified();
        let stopping = shard.shutting_down.get();
        let wanted = if stopping { BTreeSet::new() } else { followed_leaders(&shard) };
        running.retain(|leader, stop| {
            let keep = wanted.contains(leader) && !stop.get();
            stop.set(!keep);
            keep
        });
        for &leader in &wanted {
            if running.contains_key(&leader) {
                continue;
            }
            let stop = Rc::new(Cell::new(false));
            running.insert(leader, stop.clone());
            let shard = shard.clone();
            tracing::info!(shard = shard.id, leader, "replica fetcher starting");
            runtime::spawn(async move {
                follow(&shard, leader, &stop).await;
                // Ended by itself (not asked to): it is started again on the next look.
                stop.set(true);
            })
            .detach();
        }
        if stopping {
            return;
        }
        futures_lite::future::or(changed, runtime::sleep(SUPERVISE_INTERVAL)).await;
    }
}

/// The leaders of the partitions this shard holds a follower's copy of.
fn followed_leaders(shard: &Shard) -> BTreeSet<i32> {
    followed(shard).into_iter().map(|f| f.leader).collect()
}

/// One partition this shard follows, as the metadata has it now.
struct Followed {
    partition: Rc<Partition>,
    leader: i32,
    leader_epoch: i32,
}

fn followed(shard: &Shard) -> Vec<Followed> {
    let node_id = shard.config.node_id;
    let meta = shard.metadata.borrow();
    let partitions = shard.partitions.borrow();
    let mut out = Vec::new();
    for ((topic, index), p) in partitions.iter() {
        let Some(placement) = meta.placement(topic, *index) else { continue };
        if placement.replicas.len() > 1 && placement.leader != node_id && placement.leader != NO_LEADER && placement.replicas.contains(&node_id) {
            out.push(Followed { partition: p.clone(), leader: placement.leader, leader_epoch: placement.leader_epoch });
        }
    }
    // Fetch requests list partitions in one order, whatever the map's.
    out.sort_by(|a, b| (&a.partition.topic, a.partition.partition).cmp(&(&b.partition.topic, b.partition.partition)));
    out
}

/// Whether the metadata still has `f`'s partition led by `leader` in the epoch it was fetched
/// for. An answer that arrives after a leader change is dropped: the old leader may still
/// believe it leads and send records the new one never had.
fn still_following(shard: &Shard, f: &Followed, leader: i32) -> bool {
    let meta = shard.metadata.borrow();
    meta.placement(&f.partition.topic, f.partition.partition).is_some_and(|p| p.leader == leader && p.leader_epoch == f.leader_epoch)
}

/// Whether this broker's copy of `f`'s partition is out of the ISR and throttled as a follower
/// (`follower.replication.throttled.replicas`): only those count against, and wait for, the
/// follower's replication quota.
fn throttled_out_of_sync(shard: &Shard, f: &Followed) -> bool {
    let (topic, partition) = (&f.partition.topic, f.partition.partition);
    let in_sync = shard.metadata.borrow().placement(topic, partition).is_some_and(|p| p.isr.contains(&shard.config.node_id));
    !in_sync && replication_quota::throttled(shard, Side::Follower, topic, partition)
}

fn key(p: &Partition) -> TopicPartition {
    (p.topic.clone(), p.partition)
}

/// Copies, until `stop`, the partitions this shard follows from broker `leader`.
async fn follow(shard: &Rc<Shard>, leader: i32, stop: &Cell<bool>) {
    let config = shard.config.replication.clone();
    let client = InterBrokerClient::with_response_bytes_max(config.fetch_response_max_bytes + RESPONSE_SLACK_BYTES);
    let backoff = Duration::from_millis(config.fetch_backoff_ms.max(1));
    // The leader epoch each partition has been truncated for (see the module's doc).
    let mut synced: HashMap<TopicPartition, i32> = HashMap::new();
    // The last failure logged, so that a leader that stays unreachable is not logged each round.
    let mut last_failure = String::new();
    while !stop.get() && !shard.shutting_down.get() {
        let partitions: Vec<Followed> = followed(shard).into_iter().filter(|f| f.leader == leader).collect();
        if partitions.is_empty() {
            return;
        }
        synced.retain(|k, _| partitions.iter().any(|f| key(&f.partition) == *k));
        let result = async {
            let address = shard.inter_broker_address(leader)?;
            let unsynced: Vec<&Followed> = partitions.iter().filter(|f| synced.get(&key(&f.partition)) != Some(&f.leader_epoch)).collect();
            if !unsynced.is_empty() {
                for (k, epoch) in truncate_to_leader(shard, &client, leader, &address, &unsynced).await? {
                    synced.insert(k, epoch);
                }
            }
            let ready: Vec<&Followed> = partitions.iter().filter(|f| synced.get(&key(&f.partition)) == Some(&f.leader_epoch)).collect();
            if ready.is_empty() {
                return Err(String::from("no partition is ready to fetch (the leader has not confirmed their epochs yet)"));
            }
            // Throttled replicas out of the ISR sit this fetch out while the follower's
            // replication quota is spent (KIP-73).
            let quota_spent = replication_quota::exceeded(shard, Side::Follower);
            let ready: Vec<&Followed> = ready.into_iter().filter(|f| !(quota_spent && throttled_out_of_sync(shard, f))).collect();
            if ready.is_empty() {
                return Ok(false);
            }
            let resync = fetch_once(shard, &client, leader, &address, &ready, &config).await?;
            let clean = resync.is_empty();
            for k in resync {
                synced.remove(&k);
            }
            Ok::<bool, String>(clean)
        }
        .await;
        match result {
            Ok(true) => last_failure.clear(),
            Ok(false) => runtime::sleep(backoff).await,
            Err(why) => {
                if why != last_failure {
                    tracing::warn!(shard = shard.id, leader, error = %why, "replica fetch failed; retrying every replica.fetch.backoff.ms");
                    last_failure = why;
                }
                runtime::sleep(backoff).await;
            }
        }
    }
}

/// Asks the leader where each partition's latest local epoch ends there, and cuts the local
/// log back to it (Kafka's truncation on becoming a follower). Answers the partitions done,
/// with the leader epoch they were done for.
async fn truncate_to_leader(
    shard: &Shard,
    client: &InterBrokerClient,
    leader: i32,
    address: &BrokerAddress,
    partitions: &[&Followed],
) -> Result<Vec<(TopicPartition, i32)>, String> {
    let mut done = Vec::new();
    let mut request = OffsetForLeaderEpochRequest::default();
    request.replica_id = BrokerId(shard.config.node_id);
    let mut asked = Vec::new();
    for f in partitions {
        let (log_start, log_end, latest) = {
            let log = f.partition.log.borrow();
            (log.log_start_offset(), log.log_end_offset(), log.leader_epochs().latest_epoch())
        };
        match latest {
            // Nothing to lose: an empty log starts fetching at once.
            _ if log_end == log_start => done.push((key(&f.partition), f.leader_epoch)),
            // Batches from before epochs were kept: as Kafka, cut back to the high watermark.
            None => {
                let hw = f.partition.log.borrow().high_watermark();
                truncate(&f.partition, hw).await?;
                done.push((key(&f.partition), f.leader_epoch));
            }
            Some(epoch) => {
                let mut q = OffsetForLeaderPartition::default();
                q.partition = f.partition.partition;
                q.current_leader_epoch = f.leader_epoch;
                q.leader_epoch = epoch;
                let name = &f.partition.topic;
                topic_entry(&mut request.topics, name, |t| &t.topic, || OffsetForLeaderTopic::default().with_topic(topic_name(name))).partitions.push(q);
                asked.push((*f, epoch));
            }
        }
    }
    if asked.is_empty() {
        return Ok(done);
    }
    let response = client.send(leader, address, &request).await.map_err(|e| format!("OffsetForLeaderEpoch to broker {leader} at {address}: {e}"))?;
    for t in &response.topics {
        for answer in &t.partitions {
            let Some((f, asked_epoch)) = asked.iter().find(|(f, _)| f.partition.topic == t.topic.0.as_str() && f.partition.partition == answer.partition)
            else {
                continue;
            };
            if !still_following(shard, f, leader) {
                continue;
            }
            if answer.error_code != ec::NONE {
                tracing::debug!(topic = %f.partition.topic, partition = answer.partition, error = error_name(answer.error_code), "leader epoch not confirmed yet");
                continue;
            }
            let target = {
                let log = f.partition.log.borrow();
                let ours = log.end_offset_for_epoch(answer.leader_epoch.max(0)).1;
                truncation_offset(*asked_epoch, (answer.leader_epoch, answer.end_offset), ours, log.log_end_offset(), log.high_watermark())
            };
            truncate(&f.partition, target).await?;
            done.push((key(&f.partition), f.leader_epoch));
        }
    }
    Ok(done)
}

/// Where a follower cuts its log after asking the leader about its latest epoch `asked`
/// (Kafka's `ReplicaFetcherThread` truncation): the leader's answer `(epoch, end offset)`,
/// `ours` the end of that epoch in the follower's own log. The leader knows the epoch: keep up
/// to where it ended there. The leader's largest epoch at or below it is an older one: keep
/// only what both logs hold of that one. The leader knows no epoch that old: back to the high
/// watermark, what was surely committed.
fn truncation_offset(asked: i32, (epoch, end_offset): (i32, i64), ours: i64, log_end: i64, high_watermark: i64) -> i64 {
    let target = if epoch < 0 || end_offset < 0 {
        high_watermark
    } else if epoch == asked {
        end_offset
    } else {
        end_offset.min(ours.max(0))
    };
    target.min(log_end)
}

/// Cuts `p` back to `offset` if it ends after it, once what it has is durable (a cut needs it).
async fn truncate(p: &Partition, offset: i64) -> Result<(), String> {
    let (log_start, log_end) = {
        let log = p.log.borrow();
        (log.log_start_offset(), log.log_end_offset())
    };
    let offset = offset.max(log_start);
    if offset >= log_end {
        return Ok(());
    }
    p.wait_durable(log_end - 1).await.map_err(|e| format!("{}-{}: {e}", p.topic, p.partition))?;
    let end = p.truncate_to(offset).await.map_err(|e| format!("truncating {}-{} to offset {offset}: {e}", p.topic, p.partition))?;
    tracing::info!(topic = %p.topic, partition = p.partition, from = log_end, to = end, "follower truncated the records its new leader does not have");
    Ok(())
}

/// One fetch from the leader: appends what it brings, waits until that is durable, takes the
/// leader's high watermark. Answers the partitions that must be truncated again first.
async fn fetch_once(
    shard: &Rc<Shard>,
    client: &InterBrokerClient,
    leader: i32,
    address: &BrokerAddress,
    partitions: &[&Followed],
    config: &ReplicationConfig,
) -> Result<Vec<TopicPartition>, String> {
    let mut request = FetchRequest::default();
    request.replica_id = BrokerId(shard.config.node_id);
    request.max_wait_ms = config.fetch_wait_max_ms.min(i32::MAX as u64) as i32;
    request.min_bytes = 1;
    request.max_bytes = config.fetch_response_max_bytes.min(i32::MAX as usize) as i32;
    request.session_id = 0;
    // No fetch session: every request names every partition (KIP-227's "full fetch").
    request.session_epoch = -1;
    for f in partitions {
        let log = f.partition.log.borrow();
        let mut q = FetchPartition::default();
        q.partition = f.partition.partition;
        q.current_leader_epoch = f.leader_epoch;
        q.fetch_offset = log.log_end_offset();
        q.log_start_offset = log.log_start_offset();
        q.last_fetched_epoch = log.leader_epochs().latest_epoch().unwrap_or(-1);
        q.partition_max_bytes = config.fetch_max_bytes.min(i32::MAX as usize) as i32;
        let name = &f.partition.topic;
        topic_entry(&mut request.topics, name, |t| &t.topic, || FetchTopic::default().with_topic(topic_name(name))).partitions.push(q);
    }
    let response = client.send(leader, address, &request).await.map_err(|e| format!("replica fetch from broker {leader} at {address}: {e}"))?;
    if response.error_code != ec::NONE {
        return Err(format!("broker {leader} refused the replica fetch: {}", error_name(response.error_code)));
    }
    let mut resync = Vec::new();
    let mut appended = Vec::new();
    for t in &response.responses {
        for answer in &t.partitions {
            let Some(f) = partitions.iter().find(|f| f.partition.topic == t.topic.0.as_str() && f.partition.partition == answer.partition_index) else {
                continue;
            };
            let p = &f.partition;
            if !still_following(shard, f, leader) {
                resync.push(key(p));
                continue;
            }
            match answer.error_code {
                ec::NONE => {}
                ec::OFFSET_OUT_OF_RANGE if answer.log_start_offset > p.log.borrow().log_end_offset() => {
                    // The leader no longer has what follows this log's end (retention ran there):
                    // start over empty at its log start, as Kafka's followers do.
                    let (from, to) = (p.log.borrow().log_end_offset(), answer.log_start_offset);
                    p.wait_durable(from - 1).await.map_err(|e| format!("{}-{}: {e}", p.topic, p.partition))?;
                    p.reset_to(to).await.map_err(|e| format!("resetting {}-{} to offset {to}: {e}", p.topic, p.partition))?;
                    tracing::warn!(topic = %p.topic, partition = p.partition, leader, from, to, "follower fell behind its leader's log start: its log starts over there");
                    continue;
                }
                code => {
                    tracing::debug!(topic = %p.topic, partition = p.partition, leader, error = error_name(code), "replica fetch refused for the partition");
                    resync.push(key(p));
                    continue;
                }
            }
            let records = answer.records.clone().unwrap_or_default();
            let records = whole_batches(records);
            if throttled_out_of_sync(shard, f) {
                replication_quota::record(shard, Side::Follower, records.len());
            }
            if !records.is_empty() {
                let budget = p.log.borrow().dirty_budget().clone();
                budget.wait_for_room(records.len()).await;
                // Checked after the last await before the append: nothing can change between.
                if !still_following(shard, f, leader) {
                    tracing::info!(topic = %p.topic, partition = p.partition, leader, "replica fetch answer dropped: the partition's leader changed meanwhile");
                    resync.push(key(p));
                    continue;
                }
                let mut result = p.append_replicated(BytesMut::from(&records[..]), now_ms());
                if let Err(AppendError::NotAtLogEnd { base_offset, log_end_offset }) = result {
                    let empty = p.log.borrow().log_start_offset() == log_end_offset;
                    if empty && base_offset < log_end_offset {
                        // The leader's log start fell inside a batch (DeleteRecords), and this
                        // log starts there: it starts over at the batch instead, as Kafka's
                        // followers do, and takes the leader's log start afterwards.
                        p.reset_to(base_offset).await.map_err(|e| format!("resetting {}-{} to offset {base_offset}: {e}", p.topic, p.partition))?;
                        result = p.append_replicated(BytesMut::from(&records[..]), now_ms());
                    }
                }
                match result {
                    Ok(info) => appended.push((p.clone(), info.last_offset, answer.high_watermark, answer.log_start_offset)),
                    Err(e) => {
                        tracing::warn!(topic = %p.topic, partition = p.partition, leader, error = %e, "replicated batches not appended; checking the log against the leader again");
                        resync.push(key(p));
                        continue;
                    }
                }
            } else {
                // Never past this log's end (the log clamps it).
                p.set_replicated_high_watermark(Some(answer.high_watermark));
            }
        }
    }
    // The next fetch reports these offsets as held: only once they are on disk.
    let durable = appended.iter().map(|(p, last, _, _)| p.wait_durable(*last));
    for (result, (p, _, hw, _)) in futures::future::join_all(durable).await.into_iter().zip(&appended) {
        match result {
            Ok(()) => p.set_replicated_high_watermark(Some(*hw)),
            Err(e) => return Err(format!("{}-{}: replicated batches not durable: {e}", p.topic, p.partition)),
        }
    }
    // The leader's log start moves this log's (DeleteRecords and retention there), as Kafka's
    // followers follow it, so a follower that takes over does not serve what was deleted.
    for (p, _, _, leader_start) in &appended {
        if *leader_start > p.log.borrow().log_start_offset() {
            let moved = maintenance::delete_records(shard, &p.topic, p.partition, *leader_start).await;
            if moved.error_code != ec::NONE {
                tracing::debug!(topic = %p.topic, partition = p.partition, error = error_name(moved.error_code), "log start not moved to the leader's yet");
            }
        }
    }
    Ok(resync)
}

/// The entry of topic `name` in a request's list of topics, added at the end if missing: the
/// partitions of one topic go together, in the order they are listed.
fn topic_entry<'a, T>(topics: &'a mut Vec<T>, name: &str, name_of: impl Fn(&T) -> &TopicName, new: impl FnOnce() -> T) -> &'a mut T {
    let position = match topics.iter().position(|t| name_of(t).0.as_str() == name) {
        Some(i) => i,
        None => {
            topics.push(new());
            topics.len() - 1
        }
    };
    &mut topics[position]
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// The whole batches at the start of `records`: a leader may cut its answer inside a batch
/// (Kafka's do, at the size limits), and the rest comes with the next fetch.
fn whole_batches(records: Bytes) -> Bytes {
    let mut end = 0usize;
    while let Some((_, size)) = batch::peek_offset_and_size(&records[end..]) {
        let Ok(size) = usize::try_from(size) else { break };
        if size == 0 || end + size > records.len() {
            break;
        }
        end += size;
    }
    records.slice(..end)
}

#[cfg(test)]
mod tests {
    use super::{truncation_offset, whole_batches};

    #[test]
    fn a_follower_keeps_what_its_leader_holds_of_its_epochs() {
        // The follower's log: epoch 3 from 0, epoch 5 from 40, ends at 60 (high watermark 30).
        // The leader has epoch 5 too, ending at 50 there: cut the 10 records after it.
        assert_eq!(truncation_offset(5, (5, 50), 60, 60, 30), 50);
        // ... or ending past our log end: nothing to cut.
        assert_eq!(truncation_offset(5, (5, 90), 60, 60, 30), 60);
        // The leader never had epoch 5: its epoch 3 ended at 45 there, ours at 40.
        assert_eq!(truncation_offset(5, (3, 45), 40, 60, 30), 40);
        assert_eq!(truncation_offset(5, (3, 35), 40, 60, 30), 35);
        // The leader knows no epoch that old: back to the high watermark.
        assert_eq!(truncation_offset(5, (-1, -1), 60, 60, 30), 30);
    }
    use bytes::Bytes;
    use shardlog_protocol::batch;

    #[test]
    fn a_batch_cut_short_waits_for_the_next_fetch() {
        let one = batch::build_batch(0, 1_000, &[(None, Some(&b"v"[..]))]);
        let two = batch::build_batch(1, 1_000, &[(None, Some(&b"w"[..]))]);
        let mut both = one.clone();
        both.extend_from_slice(&two);
        assert_eq!(whole_batches(Bytes::from(both.clone())).len(), both.len());
        let cut = Bytes::from(both[..both.len() - 3].to_vec());
        assert_eq!(whole_batches(cut).len(), one.len());
        assert!(whole_batches(Bytes::from(one[..5].to_vec())).is_empty());
    }
}
