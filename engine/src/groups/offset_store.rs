//! Committed offsets: OffsetCommit, TxnOffsetCommit, OffsetFetch, OffsetDelete, DeleteGroups,
//! expiry, and the records each writes to (or reads back from) the group's `__consumer_offsets`
//! partition. The record formats are in `offsets`; the groups' memberships are not touched
//! here, except to ask the state machines whether a member may commit.
//!
//! Every change is appended and made durable before it is applied in memory, so that what a
//! fetch returns has survived a crash; a restart replays the partitions (`replay_offsets`).

use std::rc::Rc;

use shardlog_protocol::batch::build_batch;
use shardlog_protocol::error_code as ec;

use super::classic::{Group, GroupCoordinator, GroupState};
use super::offsets::{self, CommittedOffset, OFFSETS_TOPIC};
use super::{CommitEntry, FetchedOffset};
use crate::shard::Shard;
use crate::storage::log::{now_ms, Partition};

/// An offset committed inside an open transaction, held until its transaction's marker.
#[derive(Debug, Clone)]
pub(in crate::groups) struct PendingTxnOffset {
    group: String,
    topic: String,
    partition: i32,
    committed: CommittedOffset,
}

/// One record of a commit: the position of its entry in the request, key, value, and the
/// offset to apply once the record is durable.
struct CommitRecord {
    entry: usize,
    key: Vec<u8>,
    value: Option<Vec<u8>>,
    committed: CommittedOffset,
}

/// Whether the cluster has the partition (an offset may be committed for it).
fn partition_exists(shard: &Shard, topic: &str, partition: i32) -> bool {
    shard.metadata.borrow().topics.get(topic).is_some_and(|t| partition >= 0 && (partition as usize) < t.partitions.len())
}

/// Tombstones of a group's offsets for `keys`: null values, which delete them on replay.
fn tombstones(group_id: &str, keys: &[(String, i32)]) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    keys.iter().map(|(t, p)| (offsets::encode_key(group_id, t, *p), None)).collect()
}

impl GroupCoordinator {
    /// Replays one `__consumer_offsets` partition into memory.
    pub(in crate::groups) fn replay_offsets(&self, shard: &Shard, p: &Partition) {
        let mut loaded = 0usize;
        crate::internal_log::replay(p, |h, bytes| {
            if h.is_control() {
                let commit = shardlog_protocol::batch::control_type(bytes) == Some(shardlog_protocol::batch::CONTROL_TYPE_COMMIT);
                self.complete_txn(p.partition, h.producer_id, commit);
                return;
            }
            for r in shardlog_protocol::batch::records(bytes).unwrap_or_default() {
                loaded += 1;
                if h.is_transactional() {
                    self.stage_txn_record(p.partition, h.producer_id, r.key, r.value);
                } else {
                    self.apply_record(r.key, r.value);
                }
            }
        });
        tracing::info!(
            shard = shard.id,
            partition = p.partition,
            records = loaded,
            groups = self.groups.borrow().len(),
            "coordinating the groups of a __consumer_offsets partition; its committed offsets are loaded"
        );
    }

    /// A record of a transactional offset commit, held until its transaction's marker.
    fn stage_txn_record(&self, offsets_partition: i32, producer_id: i64, key: Option<&[u8]>, value: Option<&[u8]>) {
        let Some((group, topic, partition)) = key.and_then(offsets::decode_key) else { return };
        let Some(committed) = value.and_then(offsets::decode_value) else { return };
        self.txn_offsets.borrow_mut().entry((offsets_partition, producer_id)).or_default().push(PendingTxnOffset { group, topic, partition, committed });
    }

    /// A transaction marker reached an offsets partition: apply (commit) or drop (abort) the
    /// offsets the producer committed in it.
    pub fn complete_txn(&self, offsets_partition: i32, producer_id: i64, commit: bool) {
        let Some(pending) = self.txn_offsets.borrow_mut().remove(&(offsets_partition, producer_id)) else { return };
        if !commit {
            return;
        }
        let mut groups = self.groups.borrow_mut();
        for p in pending {
            groups.entry(p.group).or_insert_with(Group::new).offsets.insert((p.topic, p.partition), p.committed);
        }
    }

    fn has_pending_txn_offset(&self, group: &str, topic: &str, partition: i32) -> bool {
        self.txn_offsets.borrow().values().flatten().any(|p| p.group == group && p.topic == topic && p.partition == partition)
    }

    fn apply_record(&self, key: Option<&[u8]>, value: Option<&[u8]>) {
        if let Some(group) = key.and_then(offsets::decode_group_key) {
            return self.apply_membership(group, value);
        }
        let Some((group, topic, partition)) = key.and_then(offsets::decode_key) else { return };
        let mut groups = self.groups.borrow_mut();
        match value.and_then(offsets::decode_value) {
            Some(committed) => {
                groups.entry(group).or_insert_with(Group::new).offsets.insert((topic, partition), committed);
            }
            None => {
                if let Some(g) = groups.get_mut(&group) {
                    g.offsets.remove(&(topic, partition));
                    if g.offsets.is_empty() && g.classic.state() == GroupState::Empty {
                        groups.remove(&group);
                    }
                }
            }
        }
    }

    /// A GroupMetadata record: the classic group as it was stored (a tombstone, or a record
    /// that does not decode, leaves it Empty).
    fn apply_membership(&self, group: String, value: Option<&[u8]>) {
        let mut groups = self.groups.borrow_mut();
        match value.and_then(offsets::decode_group_value) {
            Some(stored) => {
                let g = groups.entry(group).or_insert_with(Group::new);
                g.classic = super::classic::ClassicGroup::restore(&stored, now_ms());
                g.empty_since_ms = if g.classic.has_members() { None } else { Some(now_ms()) };
            }
            None => {
                if let Some(g) = groups.get_mut(&group) {
                    g.classic = super::classic::ClassicGroup::new();
                    if g.offsets.is_empty() && !g.has_members() {
                        groups.remove(&group);
                    }
                }
            }
        }
    }

    pub(in crate::groups) async fn commit(
        &self,
        shard: &Rc<Shard>,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        entries: Vec<CommitEntry>,
    ) -> Vec<i16> {
        if let Some(code) = self.commit_error(group_id, generation, member_id, instance_id) {
            return vec![code; entries.len()];
        }
        let (mut codes, records) = self.commit_records(shard, group_id, &entries);
        if records.is_empty() {
            return codes;
        }
        let kv: Vec<(Vec<u8>, Option<Vec<u8>>)> = records.iter().map(|r| (r.key.clone(), r.value.clone())).collect();
        if let Err(code) = self.append_durably(shard, group_id, &kv).await {
            for r in &records {
                codes[r.entry] = code;
            }
            return codes;
        }
        let mut groups = self.groups.borrow_mut();
        let group = groups.entry(group_id.to_string()).or_insert_with(Group::new);
        for r in records {
            group.offsets.insert((entries[r.entry].topic.clone(), entries[r.entry].partition), r.committed);
        }
        codes
    }

    /// TxnOffsetCommit: the offsets are written as a transactional batch of the producer, and
    /// take effect when the commit marker reaches this offsets partition.
    #[allow(clippy::too_many_arguments)]
    pub(in crate::groups) async fn txn_commit(
        &self,
        shard: &Rc<Shard>,
        group_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        entries: Vec<CommitEntry>,
    ) -> Vec<i16> {
        // Before v3 the request carries no member: Kafka then skips the generation check.
        if generation >= 0 || !member_id.is_empty() {
            if let Some(code) = self.commit_error(group_id, generation, member_id, instance_id) {
                return vec![code; entries.len()];
            }
        } else if group_id.is_empty() {
            return vec![ec::INVALID_GROUP_ID; entries.len()];
        }
        let (mut codes, records) = self.commit_records(shard, group_id, &entries);
        if records.is_empty() {
            return codes;
        }
        let partition_count = shard.metadata.borrow().topics.get(OFFSETS_TOPIC).map(|t| t.partitions.len()).unwrap_or(0);
        let index = crate::coordinator::partition_for(group_id, partition_count);
        let Some(p) = shard.local_partition(OFFSETS_TOPIC, index) else { return vec![ec::COORDINATOR_NOT_AVAILABLE; entries.len()] };
        let kv: Vec<shardlog_protocol::batch::KeyValue> = records.iter().map(|r| (Some(&r.key[..]), r.value.as_deref())).collect();
        let producer = shardlog_protocol::batch::BatchProducer {
            attributes: shardlog_protocol::batch::ATTRIBUTE_TRANSACTIONAL,
            producer_id,
            producer_epoch,
            base_sequence: -1,
        };
        let batch = shardlog_protocol::batch::build_producer_batch(0, now_ms() as i64, &kv, &producer);
        if let Err(code) = crate::internal_log::append_durably(shard, &p, &batch, crate::storage::log::AppendOrigin::Coordinator).await {
            let code = if code == ec::INVALID_PRODUCER_EPOCH { ec::PRODUCER_FENCED } else { code };
            for r in &records {
                codes[r.entry] = code;
            }
            return codes;
        }
        if let Err(code) = self.still_coordinating(index) {
            return vec![code; entries.len()];
        }
        let mut pending = self.txn_offsets.borrow_mut();
        let list = pending.entry((index, producer_id)).or_default();
        for r in records {
            list.push(PendingTxnOffset {
                group: group_id.to_string(),
                topic: entries[r.entry].topic.clone(),
                partition: entries[r.entry].partition,
                committed: r.committed,
            });
        }
        codes
    }

    /// Why the member may not commit for the group now, if it may not. A commit from outside
    /// any generation to a group not known yet creates it.
    fn commit_error(&self, group_id: &str, generation: i32, member_id: &str, instance_id: Option<&str>) -> Option<i16> {
        if group_id.is_empty() {
            return Some(ec::INVALID_GROUP_ID);
        }
        let mut groups = self.groups.borrow_mut();
        match groups.get_mut(group_id) {
            None if generation < 0 => {
                groups.insert(group_id.to_string(), Group::new());
                None
            }
            None => Some(ec::ILLEGAL_GENERATION),
            Some(g) => match &g.consumer {
                Some(cg) => cg.commit_error(member_id, generation),
                None => g.classic.commit_error(generation, member_id, instance_id, now_ms()),
            },
        }
    }

    /// The records of a commit, with a per-entry error code for those that cannot be committed.
    fn commit_records(&self, shard: &Rc<Shard>, group_id: &str, entries: &[CommitEntry]) -> (Vec<i16>, Vec<CommitRecord>) {
        let now = now_ms() as i64;
        let mut codes = vec![ec::NONE; entries.len()];
        let mut records = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            if !partition_exists(shard, &e.topic, e.partition) {
                codes[i] = ec::UNKNOWN_TOPIC_OR_PARTITION;
                continue;
            }
            if e.metadata.as_ref().is_some_and(|m| m.len() > self.config.offset_metadata_bytes_max) {
                codes[i] = ec::OFFSET_METADATA_TOO_LARGE;
                continue;
            }
            let committed =
                CommittedOffset { offset: e.offset, leader_epoch: e.leader_epoch, metadata: e.metadata.clone().unwrap_or_default(), commit_timestamp_ms: now };
            records.push(CommitRecord {
                entry: i,
                key: offsets::encode_key(group_id, &e.topic, e.partition),
                value: Some(offsets::encode_value(&committed)),
                committed,
            });
        }
        (codes, records)
    }

    /// Appends records to the group's offsets partition and waits for the fdatasync.
    pub(in crate::groups) async fn append_durably(&self, shard: &Rc<Shard>, group_id: &str, kv: &[(Vec<u8>, Option<Vec<u8>>)]) -> Result<(), i16> {
        let partition_count = shard.metadata.borrow().topics.get(OFFSETS_TOPIC).map(|t| t.partitions.len()).unwrap_or(0);
        let index = crate::coordinator::partition_for(group_id, partition_count);
        let Some(p) = shard.local_partition(OFFSETS_TOPIC, index) else {
            tracing::error!(group = group_id, partition = index, "offsets partition is not on this shard");
            return Err(ec::COORDINATOR_NOT_AVAILABLE);
        };
        let records: Vec<shardlog_protocol::batch::KeyValue> = kv.iter().map(|(k, v)| (Some(&k[..]), v.as_deref())).collect();
        let batch = build_batch(0, now_ms() as i64, &records);
        crate::internal_log::append_durably(shard, &p, &batch, crate::storage::log::AppendOrigin::Client).await.inspect_err(|code| {
            tracing::warn!(group = group_id, code, "committed offsets not stored");
        })?;
        self.still_coordinating(index)
    }

    /// After a write to the offsets partition: NOT_COORDINATOR when the partition's leadership
    /// moved away meanwhile. Its groups are forgotten here; the write is in the log, where the
    /// new coordinator reads it, and the client retries there.
    fn still_coordinating(&self, partition: i32) -> Result<(), i16> {
        if self.loaded.owns(partition) {
            Ok(())
        } else {
            Err(ec::NOT_COORDINATOR)
        }
    }

    /// OffsetFetch. `require_stable`: partitions with a transactional commit still pending
    /// answer UNSTABLE_OFFSET_COMMIT (KIP-447).
    pub(in crate::groups) fn fetch_offsets(
        &self,
        shard: &Rc<Shard>,
        group_id: &str,
        topics: Option<Vec<(String, Vec<i32>)>>,
        require_stable: bool,
    ) -> (i16, Vec<FetchedOffset>) {
        let mut out = Vec::new();
        {
            let groups = self.groups.borrow();
            let group = groups.get(group_id);
            let lookup = |topic: &str, partition: i32| -> FetchedOffset {
                let committed = group.and_then(|g| g.offsets.get(&(topic.to_string(), partition)));
                let exists = partition_exists(shard, topic, partition);
                FetchedOffset {
                    topic: topic.to_string(),
                    partition,
                    offset: committed.map(|c| c.offset).unwrap_or(-1),
                    leader_epoch: committed.map(|c| c.leader_epoch).unwrap_or(-1),
                    metadata: Some(committed.map(|c| c.metadata.clone()).unwrap_or_default()),
                    error_code: if exists || committed.is_some() { ec::NONE } else { ec::UNKNOWN_TOPIC_OR_PARTITION },
                }
            };
            match topics {
                Some(list) => {
                    for (topic, partitions) in list {
                        for p in partitions {
                            out.push(lookup(&topic, p));
                        }
                    }
                }
                None => {
                    if let Some(g) = group {
                        for (topic, partition) in g.offsets.keys() {
                            out.push(lookup(topic, *partition));
                        }
                    }
                }
            }
        }
        if require_stable {
            for f in out.iter_mut().filter(|f| f.error_code == ec::NONE) {
                if self.has_pending_txn_offset(group_id, &f.topic, f.partition) {
                    f.error_code = ec::UNSTABLE_OFFSET_COMMIT;
                }
            }
        }
        (ec::NONE, out)
    }

    /// Deletes every group's committed offsets for topics that were deleted (or re-created
    /// under a new id), with tombstones, as Kafka does; a re-created topic starts with none.
    pub async fn forget_topics(&self, shard: &Rc<Shard>, topics: &[String]) {
        let affected: Vec<(String, Vec<(String, i32)>)> = self
            .groups
            .borrow()
            .iter()
            .map(|(id, g)| (id.clone(), g.offsets.keys().filter(|(t, _)| topics.contains(t)).cloned().collect::<Vec<_>>()))
            .filter(|(_, keys)| !keys.is_empty())
            .collect();
        for (group_id, keys) in affected {
            if let Err(code) = self.append_durably(shard, &group_id, &tombstones(&group_id, &keys)).await {
                tracing::error!(group = %group_id, code, "cannot delete the committed offsets of deleted topics");
                continue;
            }
            if let Some(g) = self.groups.borrow_mut().get_mut(&group_id) {
                for k in &keys {
                    g.offsets.remove(k);
                }
            }
            tracing::info!(group = %group_id, offsets = keys.len(), "deleted committed offsets of deleted topics");
        }
    }

    /// Every committed offset this coordinator holds: (group, topic, partition, offset).
    pub fn committed_offsets(&self) -> Vec<(String, String, i32, i64)> {
        let groups = self.groups.borrow();
        let mut out = Vec::new();
        for (group, g) in groups.iter() {
            for ((topic, partition), c) in &g.offsets {
                out.push((group.clone(), topic.clone(), *partition, c.offset));
            }
        }
        out
    }

    /// DeleteGroups: only an empty group goes, with tombstones for all its offsets.
    pub(in crate::groups) async fn delete(&self, shard: &Rc<Shard>, group_id: &str) -> i16 {
        let keys: Vec<(String, i32)> = {
            let groups = self.groups.borrow();
            match groups.get(group_id) {
                None => return ec::GROUP_ID_NOT_FOUND,
                Some(g) if g.has_members() || g.classic.state() != GroupState::Empty => return ec::NON_EMPTY_GROUP,
                Some(g) => g.offsets.keys().cloned().collect(),
            }
        };
        // The offsets and the stored membership go: the group is not restored by a replay.
        let mut kv = tombstones(group_id, &keys);
        kv.push((offsets::encode_group_key(group_id), None));
        if let Err(code) = self.append_durably(shard, group_id, &kv).await {
            return code;
        }
        self.groups.borrow_mut().remove(group_id);
        tracing::info!(group = group_id, offsets = keys.len(), "group deleted");
        ec::NONE
    }

    /// OffsetDelete: refused for topics the group's members subscribe to.
    pub(in crate::groups) async fn offset_delete(&self, shard: &Rc<Shard>, group_id: &str, partitions: Vec<(String, i32)>) -> (i16, Vec<i16>) {
        let subscribed = {
            let groups = self.groups.borrow();
            match groups.get(group_id) {
                None => return (ec::GROUP_ID_NOT_FOUND, vec![ec::NONE; partitions.len()]),
                Some(g) => g.subscribed_topics(),
            }
        };
        let mut codes = Vec::with_capacity(partitions.len());
        let mut deleted = Vec::new();
        for (topic, partition) in &partitions {
            if !partition_exists(shard, topic, *partition) {
                codes.push(ec::UNKNOWN_TOPIC_OR_PARTITION);
            } else if subscribed.contains(topic) {
                codes.push(ec::GROUP_SUBSCRIBED_TO_TOPIC);
            } else {
                codes.push(ec::NONE);
                deleted.push((topic.clone(), *partition));
            }
        }
        if !deleted.is_empty() {
            if let Err(code) = self.append_durably(shard, group_id, &tombstones(group_id, &deleted)).await {
                return (code, codes);
            }
            let mut groups = self.groups.borrow_mut();
            if let Some(g) = groups.get_mut(group_id) {
                for k in &deleted {
                    g.offsets.remove(k);
                }
            }
        }
        (ec::NONE, codes)
    }

    /// Offsets of empty groups expire `offsets.retention.minutes` after their last commit.
    pub(in crate::groups) async fn expire_offsets(&self, shard: &Rc<Shard>) {
        let now = now_ms() as i64;
        let expired: Vec<(String, Vec<(String, i32)>)> = self
            .groups
            .borrow()
            .iter()
            .filter(|(_, g)| !g.has_members())
            .filter_map(|(id, g)| {
                let empty_since = g.empty_since_ms? as i64;
                let old: Vec<(String, i32)> = g
                    .offsets
                    .iter()
                    .filter(|(_, c)| c.commit_timestamp_ms.max(empty_since) + self.config.offsets_retention_ms <= now)
                    .map(|(k, _)| k.clone())
                    .collect();
                Some((id.clone(), old))
            })
            .filter(|(_, old)| !old.is_empty())
            .collect();
        for (group_id, keys) in expired {
            if self.append_durably(shard, &group_id, &tombstones(&group_id, &keys)).await.is_err() {
                continue;
            }
            let mut groups = self.groups.borrow_mut();
            if let Some(g) = groups.get_mut(&group_id) {
                for k in &keys {
                    g.offsets.remove(k);
                }
                if g.offsets.is_empty() && !g.has_members() {
                    groups.remove(&group_id);
                }
            }
            tracing::info!(group = %group_id, offsets = keys.len(), "expired committed offsets of an empty group");
        }
    }
}
