//! The classic group protocol's state machine, as Kafka's GroupCoordinator runs it:
//! Empty, PreparingRebalance, CompletingRebalance, Stable (and Dead once deleted).
//!
//! A rebalance starts when a member joins, changes its protocols, leaves, or misses its session
//! timeout. It completes when every known member has rejoined, or when the rebalance timeout
//! (the members' `max.poll.interval.ms`) runs out, and the members that did not rejoin are
//! removed. The leader then sends the assignment in SyncGroup. Static members
//! (`group.instance.id`) keep their place across restarts: a rejoin under the same instance id
//! replaces the old member without a rebalance when nothing else changed.
//!
//! Everything runs on the coordinator shard; waiting members hold a oneshot receiver, and one
//! ticker task per shard expires sessions and rebalance deadlines.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use futures::channel::oneshot;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{DescribeGroupsResponse, GroupId, JoinGroupResponse, LeaveGroupResponse, SyncGroupResponse};
use shardlog_protocol::batch::build_batch;
use shardlog_protocol::error_code as ec;
use shardlog_protocol::kafka_protocol;

use super::offsets::{self, CommittedOffset, OFFSETS_TOPIC};
use super::{CommitEntry, FetchedOffset, GroupCall, GroupReply, ListedGroupInfo};
use crate::handlers::str_bytes;
use crate::shard::Shard;
use crate::storage::log::{now_ms, Partition};

/// How often the ticker checks sessions and rebalance deadlines.
const TICK_MS: u64 = 100;

/// Group settings, with Kafka's names and defaults.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// `group.min.session.timeout.ms`
    pub session_timeout_ms_min: i32,
    /// `group.max.session.timeout.ms`
    pub session_timeout_ms_max: i32,
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of an empty group waits
    /// for more members.
    pub initial_rebalance_delay_ms: u64,
    /// `group.max.size`
    pub group_size_max: usize,
    /// `offsets.retention.minutes`, in ms: offsets of an empty group expire this long after
    /// their last commit.
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms`
    pub offsets_retention_check_interval_ms: u64,
    /// `offset.metadata.max.bytes`
    pub offset_metadata_bytes_max: usize,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            session_timeout_ms_min: 6_000,
            session_timeout_ms_max: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            group_size_max: 10_000,
            offsets_retention_ms: 7 * 24 * 3600 * 1000,
            offsets_retention_check_interval_ms: 600_000,
            offset_metadata_bytes_max: 4096,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

struct Member {
    member_id: String,
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout_ms: u64,
    rebalance_timeout_ms: u64,
    protocol_type: String,
    /// (name, metadata) in the member's order of preference.
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    last_heartbeat_ms: u64,
    join_waiter: Option<oneshot::Sender<JoinGroupResponse>>,
    join_version: i16,
    sync_waiter: Option<oneshot::Sender<SyncGroupResponse>>,
}

pub(super) struct Group {
    /// Set for groups of the KIP-848 consumer protocol; their membership lives there.
    pub(super) consumer: Option<super::consumer::ConsumerGroup>,
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// group.instance.id -> member id
    static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with the time they must join by.
    pending_members: HashMap<String, u64>,
    /// When the current rebalance completes even if not everyone has rejoined.
    rebalance_deadline_ms: u64,
    /// The first rebalance of an empty group waits this long for more members.
    initial_delay_until_ms: Option<u64>,
    pub(super) offsets: BTreeMap<(String, i32), CommittedOffset>,
    /// Since when the group has had no members (classic or KIP-848), in ms; None while it has
    /// some. Offsets expire `offsets.retention.minutes` after the later of this and their commit
    /// (KIP-211: a group's offsets live as long as it has members).
    empty_since_ms: Option<u64>,
}

impl Group {
    pub(super) fn new() -> Group {
        Group {
            consumer: None,
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            pending_members: HashMap::new(),
            rebalance_deadline_ms: 0,
            initial_delay_until_ms: None,
            offsets: BTreeMap::new(),
            empty_since_ms: Some(now_ms()),
        }
    }

    fn has_members(&self) -> bool {
        !self.members.is_empty() || self.consumer.as_ref().is_some_and(|c| !c.members.is_empty())
    }

    /// A classic group that has members (so a KIP-848 member may not take the id over).
    pub(super) fn is_classic_in_use(&self) -> bool {
        !self.members.is_empty()
    }

    /// Topics the members subscribe to (consumer protocol), for OffsetDelete and lag.
    fn subscribed_topics(&self) -> Vec<String> {
        let mut topics = Vec::new();
        if let Some(cg) = &self.consumer {
            for m in cg.members.values() {
                for t in &m.subscribed {
                    if !topics.contains(t) {
                        topics.push(t.clone());
                    }
                }
            }
            return topics;
        }
        if self.protocol_type.as_deref() != Some("consumer") {
            return topics;
        }
        for m in self.members.values() {
            let chosen = self.protocol_name.as_deref();
            if let Some((_, metadata)) = m.protocols.iter().find(|(n, _)| Some(n.as_str()) == chosen).or(m.protocols.first()) {
                for t in parse_subscription_topics(metadata) {
                    if !topics.contains(&t) {
                        topics.push(t);
                    }
                }
            }
        }
        topics
    }
}

/// Topics of a consumer-protocol subscription: version i16, then an array of strings.
pub fn parse_subscription_topics(mut metadata: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    if metadata.len() < 6 {
        return out;
    }
    metadata = &metadata[2..];
    let count = i32::from_be_bytes(metadata[0..4].try_into().expect("4 bytes"));
    metadata = &metadata[4..];
    for _ in 0..count.max(0) {
        if metadata.len() < 2 {
            break;
        }
        let len = i16::from_be_bytes([metadata[0], metadata[1]]);
        metadata = &metadata[2..];
        if len < 0 || len as usize > metadata.len() {
            break;
        }
        out.push(String::from_utf8_lossy(&metadata[..len as usize]).into_owned());
        metadata = &metadata[len as usize..];
    }
    out
}

pub struct GroupCoordinator {
    pub(super) groups: RefCell<HashMap<String, Group>>,
    /// Offsets committed inside open transactions, by (offsets partition, producer id): the
    /// commit marker applies them, the abort marker drops them.
    txn_offsets: RefCell<HashMap<(i32, i64), Vec<PendingTxnOffset>>>,
    next_member: Cell<u64>,
    pub config: GroupConfig,
    ticker_started: Cell<bool>,
}

#[derive(Debug, Clone)]
struct PendingTxnOffset {
    group: String,
    topic: String,
    partition: i32,
    committed: CommittedOffset,
}

fn join_error(code: i16, member_id: &str) -> JoinGroupResponse {
    let mut r = JoinGroupResponse::default();
    r.error_code = code;
    r.generation_id = -1;
    r.member_id = str_bytes(member_id);
    r
}

fn sync_error(code: i16) -> SyncGroupResponse {
    let mut r = SyncGroupResponse::default();
    r.error_code = code;
    r
}

impl GroupCoordinator {
    pub fn new(config: GroupConfig) -> GroupCoordinator {
        GroupCoordinator {
            groups: RefCell::new(HashMap::new()),
            txn_offsets: RefCell::new(HashMap::new()),
            next_member: Cell::new(1),
            config,
            ticker_started: Cell::new(false),
        }
    }

    fn new_member_id(&self, client_id: &str) -> String {
        let n = self.next_member.get();
        self.next_member.set(n + 1);
        // Kafka prefixes member ids with the client id; keep only printable characters of it, so
        // that ids are safe to log and to print in tools.
        let prefix: String = client_id.chars().filter(|c| c.is_ascii_graphic()).take(100).collect();
        format!("{prefix}-{}-{n}", uuid::Uuid::new_v4())
    }

    /// Replays the `__consumer_offsets` partitions this shard owns into memory, and starts
    /// the ticker. Called once the shard has its partitions.
    pub fn load(&self, shard: &Rc<Shard>) {
        let partitions: Vec<Rc<Partition>> = shard.partitions.borrow().iter().filter(|((t, _), _)| t == OFFSETS_TOPIC).map(|(_, p)| p.clone()).collect();
        let mut loaded = 0usize;
        for p in partitions {
            crate::internal_log::replay(&p, |h, bytes| {
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
        }
        if loaded > 0 {
            tracing::info!(shard = shard.id, records = loaded, groups = self.groups.borrow().len(), "committed offsets loaded");
        }
        if !self.ticker_started.replace(true) {
            let shard = shard.clone();
            glommio::spawn_local(async move { ticker(shard).await }).detach();
        }
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
        let Some((group, topic, partition)) = key.and_then(offsets::decode_key) else { return };
        let mut groups = self.groups.borrow_mut();
        match value.and_then(offsets::decode_value) {
            Some(committed) => {
                groups.entry(group).or_insert_with(Group::new).offsets.insert((topic, partition), committed);
            }
            None => {
                if let Some(g) = groups.get_mut(&group) {
                    g.offsets.remove(&(topic, partition));
                    if g.offsets.is_empty() && g.state == GroupState::Empty {
                        groups.remove(&group);
                    }
                }
            }
        }
    }

    pub async fn handle(&self, shard: &Rc<Shard>, call: GroupCall) -> GroupReply {
        match call {
            GroupCall::Join { request, version, client_id, client_host } => GroupReply::Join(self.join(request, version, client_id, client_host).await),
            GroupCall::Sync { request, version } => GroupReply::Sync(self.sync(request, version).await),
            GroupCall::Heartbeat { request } => {
                GroupReply::Heartbeat(self.heartbeat(&request.group_id.0, request.generation_id, &request.member_id, request.group_instance_id.as_deref()))
            }
            GroupCall::Leave { request, version } => GroupReply::Leave(self.leave(request, version)),
            GroupCall::Commit { group, generation, member_id, instance_id, offsets } => {
                GroupReply::Commit(self.commit(shard, &group, generation, &member_id, instance_id.as_deref(), offsets).await)
            }
            GroupCall::Fetch { group, topics, require_stable } => {
                let (code, mut list) = self.fetch_offsets(shard, &group, topics);
                if require_stable {
                    for f in list.iter_mut().filter(|f| f.error_code == ec::NONE) {
                        if self.has_pending_txn_offset(&group, &f.topic, f.partition) {
                            f.error_code = ec::UNSTABLE_OFFSET_COMMIT;
                        }
                    }
                }
                GroupReply::Fetch(code, list)
            }
            GroupCall::TxnCommit { group, producer_id, producer_epoch, generation, member_id, instance_id, offsets } => {
                GroupReply::Commit(self.txn_commit(shard, &group, producer_id, producer_epoch, generation, &member_id, instance_id.as_deref(), offsets).await)
            }
            GroupCall::Describe { group } => {
                let meta = shard.metadata.borrow().clone();
                GroupReply::Describe(Box::new(self.describe(&meta, &group)))
            }
            GroupCall::List => GroupReply::List(self.list()),
            GroupCall::ConsumerHeartbeat { request, client_id, client_host } => {
                let meta = shard.metadata.borrow().clone();
                GroupReply::ConsumerHeartbeat(Box::new(self.consumer_heartbeat(&meta, request, client_id, client_host)))
            }
            GroupCall::ConsumerDescribe { group } => {
                let meta = shard.metadata.borrow().clone();
                GroupReply::ConsumerDescribe(Box::new(self.consumer_describe(&meta, &group)))
            }
            GroupCall::Delete { group } => GroupReply::Delete(self.delete(shard, &group).await),
            GroupCall::OffsetDelete { group, partitions } => {
                let (code, list) = self.offset_delete(shard, &group, partitions).await;
                GroupReply::OffsetDelete(code, list)
            }
        }
    }

    async fn join(&self, request: kafka_protocol::messages::JoinGroupRequest, version: i16, client_id: String, client_host: String) -> JoinGroupResponse {
        let group_id = request.group_id.0.to_string();
        let member_id = request.member_id.to_string();
        if group_id.is_empty() {
            return join_error(ec::INVALID_GROUP_ID, &member_id);
        }
        let session_timeout_ms = request.session_timeout_ms;
        if session_timeout_ms < self.config.session_timeout_ms_min || session_timeout_ms > self.config.session_timeout_ms_max {
            return join_error(ec::INVALID_SESSION_TIMEOUT, &member_id);
        }
        let rebalance_timeout_ms = if version >= 1 { request.rebalance_timeout_ms } else { session_timeout_ms };
        let protocol_type = request.protocol_type.to_string();
        let protocols: Vec<(String, Bytes)> = request.protocols.iter().map(|p| (p.name.to_string(), p.metadata.clone())).collect();
        let instance_id = request.group_instance_id.as_ref().map(|s| s.to_string());
        let now = now_ms();
        let (rx, waiting_id) = 'join: {
            let mut groups = self.groups.borrow_mut();
            let group = groups.entry(group_id.clone()).or_insert_with(Group::new);
            if group.state == GroupState::Dead {
                return join_error(ec::COORDINATOR_NOT_AVAILABLE, &member_id);
            }
            if group.consumer.as_ref().is_some_and(|cg| !cg.members.is_empty()) {
                // A KIP-848 consumer group: classic members cannot join it.
                return join_error(ec::INCONSISTENT_GROUP_PROTOCOL, &member_id);
            }
            // The protocol type must match the group's, and the group must share a protocol.
            if protocol_type.is_empty() || protocols.is_empty() {
                return join_error(ec::INCONSISTENT_GROUP_PROTOCOL, &member_id);
            }
            if !group.members.is_empty() {
                if group.protocol_type.as_deref() != Some(protocol_type.as_str()) {
                    return join_error(ec::INCONSISTENT_GROUP_PROTOCOL, &member_id);
                }
                let shared = protocols
                    .iter()
                    .any(|(name, _)| group.members.values().filter(|m| m.member_id != member_id).all(|m| m.protocols.iter().any(|(n, _)| n == name)));
                let others = group.members.values().filter(|m| m.member_id != member_id).count();
                if others > 0 && !shared {
                    return join_error(ec::INCONSISTENT_GROUP_PROTOCOL, &member_id);
                }
            }
            let mut member_id = member_id;
            if member_id.is_empty() {
                // A static member rejoining under a known instance id replaces its old self.
                if let Some(instance) = &instance_id {
                    if let Some(old_id) = group.static_members.get(instance).cloned() {
                        let new_id = self.new_member_id(&client_id);
                        let mut old = group.members.remove(&old_id).expect("static member is a member");
                        if let Some(w) = old.join_waiter.take() {
                            let _ = w.send(join_error(ec::FENCED_INSTANCE_ID, &old_id));
                        }
                        if let Some(w) = old.sync_waiter.take() {
                            let _ = w.send(sync_error(ec::FENCED_INSTANCE_ID));
                        }
                        let unchanged = old.protocols == protocols;
                        old.member_id = new_id.clone();
                        old.protocols = protocols.clone();
                        old.client_id = client_id.clone();
                        old.client_host = client_host.clone();
                        old.session_timeout_ms = session_timeout_ms as u64;
                        old.rebalance_timeout_ms = rebalance_timeout_ms as u64;
                        old.last_heartbeat_ms = now;
                        if group.leader.as_deref() == Some(old_id.as_str()) {
                            group.leader = Some(new_id.clone());
                        }
                        group.static_members.insert(instance.clone(), new_id.clone());
                        group.members.insert(new_id.clone(), old);
                        tracing::info!(group = %group_id, instance = %instance, member = %new_id, "static member rejoined");
                        if unchanged && group.state == GroupState::Stable {
                            // No rebalance: hand back the current generation; the member gets its
                            // assignment from SyncGroup.
                            return self.join_response(group, &new_id, version, false);
                        }
                        let (tx, rx) = oneshot::channel();
                        let m = group.members.get_mut(&new_id).expect("just inserted");
                        m.join_waiter = Some(tx);
                        m.join_version = version;
                        self.prepare_rebalance(&group_id, group, now);
                        self.maybe_complete_join(group, now);
                        break 'join (rx, new_id);
                    }
                }
                if group.members.len() >= self.config.group_size_max {
                    return join_error(ec::GROUP_MAX_SIZE_REACHED, "");
                }
                let new_id = self.new_member_id(&client_id);
                if version >= 4 && instance_id.is_none() {
                    // KIP-394: the client must come back with this id.
                    group.pending_members.insert(new_id.clone(), now + session_timeout_ms as u64);
                    return join_error(ec::MEMBER_ID_REQUIRED, &new_id);
                }
                member_id = new_id;
            } else if !group.members.contains_key(&member_id) {
                if group.pending_members.remove(&member_id).is_none() {
                    return join_error(ec::UNKNOWN_MEMBER_ID, &member_id);
                }
            } else if let Some(instance) = &instance_id {
                if group.static_members.get(instance) != Some(&member_id) {
                    return join_error(ec::FENCED_INSTANCE_ID, &member_id);
                }
            }
            let is_new = !group.members.contains_key(&member_id);
            if is_new && group.members.len() >= self.config.group_size_max {
                return join_error(ec::GROUP_MAX_SIZE_REACHED, &member_id);
            }
            let (tx, rx) = oneshot::channel();
            let changed = match group.members.get_mut(&member_id) {
                Some(m) => {
                    let changed = m.protocols != protocols;
                    m.protocols = protocols;
                    m.session_timeout_ms = session_timeout_ms as u64;
                    m.rebalance_timeout_ms = rebalance_timeout_ms as u64;
                    m.last_heartbeat_ms = now;
                    m.client_id = client_id;
                    m.client_host = client_host;
                    changed
                }
                None => {
                    if group.members.is_empty() {
                        group.protocol_type = Some(protocol_type.clone());
                    }
                    if let Some(instance) = &instance_id {
                        group.static_members.insert(instance.clone(), member_id.clone());
                    }
                    group.members.insert(
                        member_id.clone(),
                        Member {
                            member_id: member_id.clone(),
                            instance_id: instance_id.clone(),
                            client_id,
                            client_host,
                            session_timeout_ms: session_timeout_ms as u64,
                            rebalance_timeout_ms: rebalance_timeout_ms as u64,
                            protocol_type,
                            protocols,
                            assignment: Bytes::new(),
                            last_heartbeat_ms: now,
                            join_waiter: None,
                            join_version: version,
                            sync_waiter: None,
                        },
                    );
                    true
                }
            };
            let is_leader = group.leader.as_deref() == Some(member_id.as_str());
            if !changed && !is_leader && matches!(group.state, GroupState::Stable | GroupState::CompletingRebalance) {
                // A follower rejoining with nothing new: answer with the current generation.
                return self.join_response(group, &member_id, version, false);
            }
            let m = group.members.get_mut(&member_id).expect("member exists");
            if let Some(old) = m.join_waiter.replace(tx) {
                let _ = old.send(join_error(ec::REBALANCE_IN_PROGRESS, &member_id));
            }
            m.join_version = version;
            if group.state != GroupState::PreparingRebalance {
                self.prepare_rebalance(&group_id, group, now);
            } else if let Some(until) = group.initial_delay_until_ms {
                // Each new member of a forming group extends the wait, up to the rebalance timeout.
                let extended = (now + self.config.initial_rebalance_delay_ms).min(group.rebalance_deadline_ms);
                group.initial_delay_until_ms = Some(until.max(extended));
            }
            self.maybe_complete_join(group, now);
            (rx, member_id)
        };
        rx.await.unwrap_or_else(|_| join_error(ec::UNKNOWN_MEMBER_ID, &waiting_id))
    }

    fn prepare_rebalance(&self, group_id: &str, group: &mut Group, now: u64) {
        let timeout = group.members.values().map(|m| m.rebalance_timeout_ms).max().unwrap_or(0);
        // A group forming from empty waits group.initial.rebalance.delay.ms for more members.
        group.initial_delay_until_ms = if group.state == GroupState::Empty && self.config.initial_rebalance_delay_ms > 0 {
            Some(now + self.config.initial_rebalance_delay_ms)
        } else {
            None
        };
        group.rebalance_deadline_ms = now + timeout.max(self.config.initial_rebalance_delay_ms);
        group.state = GroupState::PreparingRebalance;
        for m in group.members.values_mut() {
            if let Some(w) = m.sync_waiter.take() {
                let _ = w.send(sync_error(ec::REBALANCE_IN_PROGRESS));
            }
        }
        tracing::info!(group = group_id, generation = group.generation, members = group.members.len(), "preparing to rebalance");
    }

    /// Completes the join phase when everyone has rejoined (and any initial delay is over), or
    /// when the deadline has passed.
    fn maybe_complete_join(&self, group: &mut Group, now: u64) {
        if group.state != GroupState::PreparingRebalance {
            return;
        }
        let all_joined = group.members.values().all(|m| m.join_waiter.is_some());
        let delay_over = group.initial_delay_until_ms.is_none_or(|t| now >= t);
        if !(all_joined && delay_over) && now < group.rebalance_deadline_ms {
            return;
        }
        // Members that did not rejoin in time are out.
        let gone: Vec<String> = group.members.values().filter(|m| m.join_waiter.is_none()).map(|m| m.member_id.clone()).collect();
        for id in gone {
            tracing::info!(member = %id, "member removed: it did not rejoin within the rebalance timeout");
            self.remove_member(group, &id);
        }
        group.initial_delay_until_ms = None;
        group.generation += 1;
        if group.members.is_empty() {
            group.state = GroupState::Empty;
            group.protocol_name = None;
            group.leader = None;
            return;
        }
        group.protocol_name = select_protocol(group);
        if group.leader.as_ref().is_none_or(|l| !group.members.contains_key(l)) {
            group.leader = group.members.keys().next().cloned();
        }
        group.state = GroupState::CompletingRebalance;
        for m in group.members.values_mut() {
            m.assignment = Bytes::new();
        }
        let ids: Vec<String> = group.members.keys().cloned().collect();
        for id in ids {
            let version = group.members[&id].join_version;
            let response = self.join_response(group, &id, version, true);
            if let Some(w) = group.members.get_mut(&id).and_then(|m| m.join_waiter.take()) {
                let _ = w.send(response);
            }
        }
        tracing::info!(generation = group.generation, members = group.members.len(), protocol = ?group.protocol_name, "rebalance: join complete");
    }

    fn join_response(&self, group: &Group, member_id: &str, version: i16, _rebalanced: bool) -> JoinGroupResponse {
        let mut r = JoinGroupResponse::default();
        r.generation_id = group.generation;
        r.protocol_name = group.protocol_name.as_deref().map(str_bytes);
        if version >= 7 {
            r.protocol_type = group.protocol_type.as_deref().map(str_bytes);
        }
        r.leader = str_bytes(group.leader.as_deref().unwrap_or(""));
        r.member_id = str_bytes(member_id);
        if group.leader.as_deref() == Some(member_id) {
            let chosen = group.protocol_name.clone().unwrap_or_default();
            r.members = group
                .members
                .values()
                .map(|m| {
                    let mut jm = JoinGroupResponseMember::default();
                    jm.member_id = str_bytes(&m.member_id);
                    if version >= 5 {
                        jm.group_instance_id = m.instance_id.as_deref().map(str_bytes);
                    }
                    jm.metadata = m.protocols.iter().find(|(n, _)| *n == chosen).map(|(_, md)| md.clone()).unwrap_or_default();
                    jm
                })
                .collect();
        }
        r
    }

    fn remove_member(&self, group: &mut Group, member_id: &str) {
        if let Some(mut m) = group.members.remove(member_id) {
            if let Some(instance) = &m.instance_id {
                if group.static_members.get(instance).map(String::as_str) == Some(member_id) {
                    group.static_members.remove(instance);
                }
            }
            if let Some(w) = m.join_waiter.take() {
                let _ = w.send(join_error(ec::UNKNOWN_MEMBER_ID, member_id));
            }
            if let Some(w) = m.sync_waiter.take() {
                let _ = w.send(sync_error(ec::UNKNOWN_MEMBER_ID));
            }
        }
        if group.leader.as_deref() == Some(member_id) {
            group.leader = None;
        }
    }

    async fn sync(&self, request: kafka_protocol::messages::SyncGroupRequest, version: i16) -> SyncGroupResponse {
        let group_id = request.group_id.0.to_string();
        let member_id = request.member_id.to_string();
        let rx = {
            let mut groups = self.groups.borrow_mut();
            let Some(group) = groups.get_mut(&group_id) else { return sync_error(ec::UNKNOWN_MEMBER_ID) };
            let Some(member) = group.members.get(&member_id) else { return sync_error(ec::UNKNOWN_MEMBER_ID) };
            if let Some(instance) = &request.group_instance_id {
                if member.instance_id.as_deref() != Some(instance.as_str()) {
                    return sync_error(ec::FENCED_INSTANCE_ID);
                }
            }
            if request.generation_id != group.generation {
                return sync_error(ec::ILLEGAL_GENERATION);
            }
            if version >= 5 {
                let type_ok = request.protocol_type.as_ref().is_none_or(|t| Some(t.as_str()) == group.protocol_type.as_deref());
                let name_ok = request.protocol_name.as_ref().is_none_or(|n| Some(n.as_str()) == group.protocol_name.as_deref());
                if !type_ok || !name_ok {
                    return sync_error(ec::INCONSISTENT_GROUP_PROTOCOL);
                }
            }
            match group.state {
                GroupState::Empty | GroupState::Dead => return sync_error(ec::UNKNOWN_MEMBER_ID),
                GroupState::PreparingRebalance => return sync_error(ec::REBALANCE_IN_PROGRESS),
                GroupState::Stable => return self.sync_response(group, &member_id, version),
                GroupState::CompletingRebalance => {}
            }
            let (tx, rx) = oneshot::channel();
            if let Some(m) = group.members.get_mut(&member_id) {
                m.last_heartbeat_ms = now_ms();
                if let Some(old) = m.sync_waiter.replace(tx) {
                    let _ = old.send(sync_error(ec::REBALANCE_IN_PROGRESS));
                }
            }
            if group.leader.as_deref() == Some(member_id.as_str()) {
                for a in &request.assignments {
                    if let Some(m) = group.members.get_mut(a.member_id.as_str()) {
                        m.assignment = a.assignment.clone();
                    }
                }
                group.state = GroupState::Stable;
                tracing::info!(group = %group_id, generation = group.generation, "rebalance: assignment received; group stable");
                let ids: Vec<String> = group.members.keys().cloned().collect();
                for id in ids {
                    let response = self.sync_response(group, &id, version);
                    if let Some(w) = group.members.get_mut(&id).and_then(|m| m.sync_waiter.take()) {
                        let _ = w.send(response);
                    }
                }
            }
            rx
        };
        rx.await.unwrap_or_else(|_| sync_error(ec::REBALANCE_IN_PROGRESS))
    }

    fn sync_response(&self, group: &Group, member_id: &str, version: i16) -> SyncGroupResponse {
        let mut r = SyncGroupResponse::default();
        if version >= 5 {
            r.protocol_type = group.protocol_type.as_deref().map(str_bytes);
            r.protocol_name = group.protocol_name.as_deref().map(str_bytes);
        }
        r.assignment = group.members.get(member_id).map(|m| m.assignment.clone()).unwrap_or_default();
        r
    }

    fn heartbeat(&self, group_id: &str, generation: i32, member_id: &str, instance_id: Option<&str>) -> i16 {
        let mut groups = self.groups.borrow_mut();
        let Some(group) = groups.get_mut(group_id) else { return ec::UNKNOWN_MEMBER_ID };
        let Some(member) = group.members.get_mut(member_id) else { return ec::UNKNOWN_MEMBER_ID };
        if let Some(instance) = instance_id {
            if member.instance_id.as_deref() != Some(instance) {
                return ec::FENCED_INSTANCE_ID;
            }
        }
        if generation != group.generation {
            return ec::ILLEGAL_GENERATION;
        }
        member.last_heartbeat_ms = now_ms();
        match group.state {
            GroupState::PreparingRebalance => ec::REBALANCE_IN_PROGRESS,
            GroupState::Empty | GroupState::Dead => ec::UNKNOWN_MEMBER_ID,
            _ => ec::NONE,
        }
    }

    fn leave(&self, request: kafka_protocol::messages::LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
        let group_id = request.group_id.0.to_string();
        let mut r = LeaveGroupResponse::default();
        let mut groups = self.groups.borrow_mut();
        let Some(group) = groups.get_mut(&group_id) else {
            r.error_code = ec::UNKNOWN_MEMBER_ID;
            return r;
        };
        let leaving: Vec<(String, Option<String>)> = if version >= 3 {
            request.members.iter().map(|m| (m.member_id.to_string(), m.group_instance_id.as_ref().map(|s| s.to_string()))).collect()
        } else {
            vec![(request.member_id.to_string(), None)]
        };
        let now = now_ms();
        let mut removed_any = false;
        for (member_id, instance) in leaving {
            // A static member may leave by instance id alone.
            let id = match (&instance, member_id.is_empty()) {
                (Some(i), true) => group.static_members.get(i).cloned().unwrap_or_default(),
                _ => member_id.clone(),
            };
            let code = match group.members.get(&id) {
                None => ec::UNKNOWN_MEMBER_ID,
                Some(m) if instance.is_some() && m.instance_id != instance => ec::FENCED_INSTANCE_ID,
                Some(_) => {
                    self.remove_member(group, &id);
                    removed_any = true;
                    tracing::info!(group = %group_id, member = %id, "member left the group");
                    ec::NONE
                }
            };
            if version >= 3 {
                let mut mr = MemberResponse::default();
                mr.member_id = str_bytes(&member_id);
                mr.group_instance_id = instance.as_deref().map(str_bytes);
                mr.error_code = code;
                r.members.push(mr);
            } else {
                r.error_code = code;
            }
        }
        if removed_any {
            self.after_membership_change(&group_id, group, now);
        }
        r
    }

    /// After a member left or expired: rebalance the rest, or go Empty.
    fn after_membership_change(&self, group_id: &str, group: &mut Group, now: u64) {
        if group.members.is_empty() {
            if group.state != GroupState::PreparingRebalance {
                group.generation += 1;
            }
            group.state = GroupState::Empty;
            group.protocol_name = None;
            group.leader = None;
            group.initial_delay_until_ms = None;
            tracing::info!(group = group_id, "group is empty");
        } else if group.state == GroupState::PreparingRebalance {
            self.maybe_complete_join(group, now);
        } else {
            self.prepare_rebalance(group_id, group, now);
        }
    }

    /// Expires sessions and completes rebalances whose deadline passed.
    fn tick(&self) {
        let now = now_ms();
        let mut groups = self.groups.borrow_mut();
        for group in groups.values_mut() {
            match (group.has_members(), group.empty_since_ms) {
                (true, Some(_)) => group.empty_since_ms = None,
                (false, None) => group.empty_since_ms = Some(now),
                _ => {}
            }
        }
        for (group_id, group) in groups.iter_mut() {
            group.pending_members.retain(|_, deadline| *deadline > now);
            // A member waiting in JoinGroup is alive: only check the others.
            let expired: Vec<String> = group
                .members
                .values()
                .filter(|m| m.join_waiter.is_none() && now.saturating_sub(m.last_heartbeat_ms) > m.session_timeout_ms)
                .map(|m| m.member_id.clone())
                .collect();
            for id in &expired {
                tracing::info!(group = %group_id, member = %id, "member removed: session timeout expired");
                self.remove_member(group, id);
            }
            if !expired.is_empty() {
                self.after_membership_change(group_id, group, now);
            }
            self.maybe_complete_join(group, now);
        }
    }

    async fn commit(
        &self,
        shard: &Rc<Shard>,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        entries: Vec<CommitEntry>,
    ) -> Vec<i16> {
        let group_error = self.commit_error(group_id, generation, member_id, instance_id);
        if let Some(code) = group_error {
            return vec![code; entries.len()];
        }
        let (mut codes, records) = self.commit_records(shard, group_id, &entries);
        if records.is_empty() {
            return codes;
        }
        let kv: Vec<(Vec<u8>, Option<Vec<u8>>)> = records.iter().map(|(_, k, v, _)| (k.clone(), v.clone())).collect();
        if let Err(code) = self.append_durably(shard, group_id, &kv).await {
            for (i, _, _, _) in &records {
                codes[*i] = code;
            }
            return codes;
        }
        let mut groups = self.groups.borrow_mut();
        let group = groups.entry(group_id.to_string()).or_insert_with(Group::new);
        for (i, _, _, committed) in records {
            group.offsets.insert((entries[i].topic.clone(), entries[i].partition), committed);
        }
        codes
    }

    /// TxnOffsetCommit: the offsets are written as a transactional batch of the producer, and
    /// take effect when the commit marker reaches this offsets partition.
    #[allow(clippy::too_many_arguments)]
    async fn txn_commit(
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
        let index = offsets::partition_for(group_id, partition_count);
        let Some(p) = shard.local_partition(OFFSETS_TOPIC, index) else { return vec![ec::COORDINATOR_NOT_AVAILABLE; entries.len()] };
        let kv: Vec<shardlog_protocol::batch::KeyValue> = records.iter().map(|(_, k, v, _)| (Some(&k[..]), v.as_deref())).collect();
        let producer = shardlog_protocol::batch::BatchProducer {
            attributes: shardlog_protocol::batch::ATTRIBUTE_TRANSACTIONAL,
            producer_id,
            producer_epoch,
            base_sequence: -1,
        };
        let batch = shardlog_protocol::batch::build_producer_batch(0, now_ms() as i64, &kv, &producer);
        if let Err(code) = crate::internal_log::append_durably(&p, &batch, crate::storage::log::AppendOrigin::Coordinator).await {
            let code = if code == ec::INVALID_PRODUCER_EPOCH { ec::PRODUCER_FENCED } else { code };
            for (i, _, _, _) in &records {
                codes[*i] = code;
            }
            return codes;
        }
        let mut pending = self.txn_offsets.borrow_mut();
        let list = pending.entry((index, producer_id)).or_default();
        for (i, _, _, committed) in records {
            list.push(PendingTxnOffset { group: group_id.to_string(), topic: entries[i].topic.clone(), partition: entries[i].partition, committed });
        }
        codes
    }

    /// Why the member may not commit for the group now, if it may not.
    fn commit_error(&self, group_id: &str, generation: i32, member_id: &str, instance_id: Option<&str>) -> Option<i16> {
        {
            let mut groups = self.groups.borrow_mut();
            if group_id.is_empty() {
                Some(ec::INVALID_GROUP_ID)
            } else {
                match groups.get_mut(group_id) {
                    None if generation < 0 => {
                        groups.insert(group_id.to_string(), Group::new());
                        None
                    }
                    None => Some(ec::ILLEGAL_GENERATION),
                    Some(g) if g.consumer.is_some() => GroupCoordinator::consumer_commit_error(g.consumer.as_ref().expect("checked"), member_id, generation),
                    Some(g) if generation < 0 && member_id.is_empty() => {
                        if g.members.is_empty() {
                            None
                        } else {
                            Some(ec::UNKNOWN_MEMBER_ID)
                        }
                    }
                    Some(g) => match g.members.get_mut(member_id) {
                        None => Some(ec::UNKNOWN_MEMBER_ID),
                        Some(m) if instance_id.is_some() && m.instance_id.as_deref() != instance_id => Some(ec::FENCED_INSTANCE_ID),
                        Some(_) if generation != g.generation => Some(ec::ILLEGAL_GENERATION),
                        Some(_) if g.state == GroupState::CompletingRebalance => Some(ec::REBALANCE_IN_PROGRESS),
                        Some(m) => {
                            m.last_heartbeat_ms = now_ms();
                            None
                        }
                    },
                }
            }
        }
    }

    /// The records of a commit, with a per-entry error code for those that cannot be committed.
    #[allow(clippy::type_complexity)]
    fn commit_records(
        &self,
        shard: &Rc<Shard>,
        group_id: &str,
        entries: &[CommitEntry],
    ) -> (Vec<i16>, Vec<(usize, Vec<u8>, Option<Vec<u8>>, CommittedOffset)>) {
        let now = now_ms() as i64;
        let mut codes = vec![ec::NONE; entries.len()];
        let mut records = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            let exists = shard.metadata.borrow().topics.get(&e.topic).is_some_and(|t| e.partition >= 0 && (e.partition as usize) < t.partitions.len());
            if !exists {
                codes[i] = ec::UNKNOWN_TOPIC_OR_PARTITION;
                continue;
            }
            if e.metadata.as_ref().is_some_and(|m| m.len() > self.config.offset_metadata_bytes_max) {
                codes[i] = ec::OFFSET_METADATA_TOO_LARGE;
                continue;
            }
            let committed =
                CommittedOffset { offset: e.offset, leader_epoch: e.leader_epoch, metadata: e.metadata.clone().unwrap_or_default(), commit_timestamp_ms: now };
            records.push((i, offsets::encode_key(group_id, &e.topic, e.partition), Some(offsets::encode_value(&committed)), committed));
        }
        (codes, records)
    }

    /// Appends records to the group's offsets partition and waits for the fdatasync.
    async fn append_durably(&self, shard: &Rc<Shard>, group_id: &str, kv: &[(Vec<u8>, Option<Vec<u8>>)]) -> Result<(), i16> {
        let partition_count = shard.metadata.borrow().topics.get(OFFSETS_TOPIC).map(|t| t.partitions.len()).unwrap_or(0);
        let index = offsets::partition_for(group_id, partition_count);
        let Some(p) = shard.local_partition(OFFSETS_TOPIC, index) else {
            tracing::error!(group = group_id, partition = index, "offsets partition is not on this shard");
            return Err(ec::COORDINATOR_NOT_AVAILABLE);
        };
        let records: Vec<shardlog_protocol::batch::KeyValue> = kv.iter().map(|(k, v)| (Some(&k[..]), v.as_deref())).collect();
        let batch = build_batch(0, now_ms() as i64, &records);
        crate::internal_log::append_durably(&p, &batch, crate::storage::log::AppendOrigin::Client).await.map(drop).inspect_err(|code| {
            tracing::error!(group = group_id, code, "committed offsets not stored");
        })
    }

    fn fetch_offsets(&self, shard: &Rc<Shard>, group_id: &str, topics: Option<Vec<(String, Vec<i32>)>>) -> (i16, Vec<FetchedOffset>) {
        let groups = self.groups.borrow();
        let group = groups.get(group_id);
        let mut out = Vec::new();
        let lookup = |topic: &str, partition: i32| -> FetchedOffset {
            let committed = group.and_then(|g| g.offsets.get(&(topic.to_string(), partition)));
            let exists = shard.metadata.borrow().topics.get(topic).is_some_and(|t| partition >= 0 && (partition as usize) < t.partitions.len());
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
        (ec::NONE, out)
    }

    fn describe(&self, meta: &crate::metadata::ClusterMetadata, group_id: &str) -> DescribeGroupsResponse {
        let groups = self.groups.borrow();
        let mut d = DescribedGroup::default();
        d.group_id = GroupId(str_bytes(group_id));
        d.authorized_operations = i32::MIN;
        match groups.get(group_id) {
            None => {
                d.group_state = str_bytes("Dead");
            }
            Some(g) if g.consumer.is_some() => {
                // A KIP-848 group, shown the classic way so that classic tools can read it.
                let cg = g.consumer.as_ref().expect("checked");
                d.group_state = str_bytes(cg.state_name());
                d.protocol_type = str_bytes("consumer");
                d.protocol_data = str_bytes(super::consumer::ASSIGNOR_NAME);
                d.members = cg
                    .members
                    .values()
                    .map(|m| {
                        let mut dm = described_member(&m.member_id, m.instance_id.as_deref(), &m.client_id, &m.client_host);
                        dm.member_assignment = super::consumer::encode_consumer_protocol_assignment(&m.assigned, meta);
                        dm
                    })
                    .collect();
            }
            Some(g) => {
                d.group_state = str_bytes(g.state.name());
                d.protocol_type = str_bytes(g.protocol_type.as_deref().unwrap_or(""));
                d.protocol_data = str_bytes(if g.state == GroupState::Stable { g.protocol_name.as_deref().unwrap_or("") } else { "" });
                let chosen = g.protocol_name.clone().unwrap_or_default();
                d.members = g
                    .members
                    .values()
                    .map(|m| {
                        let mut dm = described_member(&m.member_id, m.instance_id.as_deref(), &m.client_id, &m.client_host);
                        dm.member_metadata = m.protocols.iter().find(|(n, _)| *n == chosen).map(|(_, md)| md.clone()).unwrap_or_default();
                        dm.member_assignment = m.assignment.clone();
                        let _ = &m.protocol_type;
                        dm
                    })
                    .collect();
            }
        }
        let mut r = DescribeGroupsResponse::default();
        r.groups = vec![d];
        r
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
            let tombstones: Vec<(Vec<u8>, Option<Vec<u8>>)> = keys.iter().map(|(t, p)| (offsets::encode_key(&group_id, t, *p), None)).collect();
            if let Err(code) = self.append_durably(shard, &group_id, &tombstones).await {
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

    fn list(&self) -> Vec<ListedGroupInfo> {
        self.groups
            .borrow()
            .iter()
            .filter(|(_, g)| g.state != GroupState::Dead)
            .map(|(id, g)| match &g.consumer {
                Some(cg) => ListedGroupInfo { group_id: id.clone(), protocol_type: String::from("consumer"), state: cg.state_name().to_string() },
                None => ListedGroupInfo { group_id: id.clone(), protocol_type: g.protocol_type.clone().unwrap_or_default(), state: g.state.name().to_string() },
            })
            .collect()
    }

    async fn delete(&self, shard: &Rc<Shard>, group_id: &str) -> i16 {
        let keys: Vec<(String, i32)> = {
            let groups = self.groups.borrow();
            match groups.get(group_id) {
                None => return ec::GROUP_ID_NOT_FOUND,
                Some(g) if !g.members.is_empty() || g.state != GroupState::Empty || g.consumer.as_ref().is_some_and(|c| !c.members.is_empty()) => {
                    return ec::NON_EMPTY_GROUP
                }
                Some(g) => g.offsets.keys().cloned().collect(),
            }
        };
        let tombstones: Vec<(Vec<u8>, Option<Vec<u8>>)> = keys.iter().map(|(t, p)| (offsets::encode_key(group_id, t, *p), None)).collect();
        if !tombstones.is_empty() {
            if let Err(code) = self.append_durably(shard, group_id, &tombstones).await {
                return code;
            }
        }
        self.groups.borrow_mut().remove(group_id);
        tracing::info!(group = group_id, offsets = keys.len(), "group deleted");
        ec::NONE
    }

    async fn offset_delete(&self, shard: &Rc<Shard>, group_id: &str, partitions: Vec<(String, i32)>) -> (i16, Vec<i16>) {
        let subscribed = {
            let groups = self.groups.borrow();
            match groups.get(group_id) {
                None => return (ec::GROUP_ID_NOT_FOUND, vec![ec::NONE; partitions.len()]),
                Some(g) => g.subscribed_topics(),
            }
        };
        let mut codes = Vec::with_capacity(partitions.len());
        let mut tombstones = Vec::new();
        for (topic, partition) in &partitions {
            let exists = shard.metadata.borrow().topics.get(topic).is_some_and(|t| *partition >= 0 && (*partition as usize) < t.partitions.len());
            if !exists {
                codes.push(ec::UNKNOWN_TOPIC_OR_PARTITION);
            } else if subscribed.contains(topic) {
                codes.push(ec::GROUP_SUBSCRIBED_TO_TOPIC);
            } else {
                codes.push(ec::NONE);
                tombstones.push((offsets::encode_key(group_id, topic, *partition), None));
            }
        }
        if !tombstones.is_empty() {
            if let Err(code) = self.append_durably(shard, group_id, &tombstones).await {
                return (code, codes);
            }
            let mut groups = self.groups.borrow_mut();
            if let Some(g) = groups.get_mut(group_id) {
                for ((topic, partition), code) in partitions.iter().zip(&codes) {
                    if *code == ec::NONE {
                        g.offsets.remove(&(topic.clone(), *partition));
                    }
                }
            }
        }
        (ec::NONE, codes)
    }

    /// Offsets of empty groups expire `offsets.retention.minutes` after their last commit.
    async fn expire_offsets(&self, shard: &Rc<Shard>) {
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
            let tombstones: Vec<(Vec<u8>, Option<Vec<u8>>)> = keys.iter().map(|(t, p)| (offsets::encode_key(&group_id, t, *p), None)).collect();
            if self.append_durably(shard, &group_id, &tombstones).await.is_err() {
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

/// A DescribeGroups member with the fields both kinds of group share.
fn described_member(member_id: &str, instance_id: Option<&str>, client_id: &str, client_host: &str) -> DescribedGroupMember {
    let mut dm = DescribedGroupMember::default();
    dm.member_id = str_bytes(member_id);
    dm.group_instance_id = instance_id.map(str_bytes);
    dm.client_id = str_bytes(client_id);
    dm.client_host = str_bytes(client_host);
    dm
}

fn select_protocol(group: &Group) -> Option<String> {
    let first = group.members.values().next()?;
    let candidates: Vec<&String> =
        first.protocols.iter().map(|(n, _)| n).filter(|n| group.members.values().all(|m| m.protocols.iter().any(|(x, _)| x == *n))).collect();
    // Each member votes for its most preferred candidate; ties go to the first member's order.
    let mut votes: Vec<(usize, &String)> = candidates.iter().map(|c| (0usize, *c)).collect();
    for m in group.members.values() {
        if let Some((name, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(&n)) {
            if let Some(v) = votes.iter_mut().find(|(_, c)| *c == name) {
                v.0 += 1;
            }
        }
    }
    let best = votes.iter().map(|(n, _)| *n).max()?;
    votes.iter().find(|(n, _)| *n == best).map(|(_, c)| (*c).clone())
}

async fn ticker(shard: Rc<Shard>) {
    let mut since_retention_check = 0u64;
    while !shard.shutting_down.get() {
        glommio::timer::sleep(Duration::from_millis(TICK_MS)).await;
        shard.groups.tick();
        let meta = shard.metadata.borrow().clone();
        shard.groups.tick_consumer_groups(&meta);
        since_retention_check += TICK_MS;
        if since_retention_check >= shard.groups.config.offsets_retention_check_interval_ms {
            since_retention_check = 0;
            shard.groups.expire_offsets(&shard).await;
        }
    }
}
